#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/os/check-arm64.sh - make check-arm64-os: the arm64 Debian 12 OS
# tree (tests/os/mktree.sh arm64: debootstrap --arch=arm64 through
# qemu-user-static, ~40 min once per machine) booted as on Apple silicon:
# erofs-nbd-launch --arch aarch64 --accel tcg --export TREE (the `disk`
# export, AAVMF, systemd-boot from the served ESP, the SSH key in SMBIOS
# type 11) and a COMMAND over SSH that prints the tree's os-release, the
# guest's architecture and `systemctl is-system-running --wait`.  Too slow
# for CI (a boot under TCG emulating arm64 takes ~5 min): run by hand.
#
# Checked: exit status 0 (COMMAND's), the os-release byte for byte,
# aarch64, running or degraded (failed units printed), a graceful power-off
# (no hard stop), nothing left behind.
# Env: O (build dir, default build), EROFS_NBD_SSH_TIMEOUT (default 2400).
set -euo pipefail
cd "$(dirname "$0")/../.."
O=${O:-build}
LAUNCH=$O/erofs-nbd-launch
die() { echo "check-arm64-os: FAIL: $*" >&2; exit 1; }
[ -x "$LAUNCH" ] || die "no $LAUNCH (make)"
[ -r /usr/share/AAVMF/AAVMF_CODE.fd ] || die "no AAVMF (make deps: qemu-efi-aarch64)"
command -v qemu-system-aarch64 >/dev/null || die "no qemu-system-aarch64 (make deps)"

start=$SECONDS
tree=$(tests/os/mktree.sh arm64) || die "tests/os/mktree.sh arm64 failed"
echo "tree: $tree (built in $(cat "$tree.seconds" 2>/dev/null || echo '?') s)"
work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-arm64-os.XXXXXX")
trap 'rm -rf "$work"' EXIT
script='cat /etc/os-release; echo "ARCH=$(uname -m)"
echo "STATE=$(systemctl is-system-running --wait)"
systemctl --failed --no-legend --plain | sed "s/^/FAILED=/"'
boot=$SECONDS
# --grace 180: systemd's shutdown takes more than the default 20 s when
# arm64 is emulated.
"$LAUNCH" -v --server "$O/erofs-nbd" --arch aarch64 --accel tcg --memory 2048 --grace 180 \
	--ssh-timeout "${EROFS_NBD_SSH_TIMEOUT:-2400}" --runtime-dir "$work/run" \
	--console-log "$work/console.log" --export "$tree" -- sh -c "$script" \
	</dev/null >"$work/out" 2>"$work/err" && rc=0 || rc=$?
secs=$((SECONDS - boot))
sed 's/^/  | /' "$work/err"
sed 's/^/  > /' "$work/out"
[ "$rc" = 0 ] || { tr -d '\r' <"$work/console.log" | tail -n 40; die "launcher exit status $rc"; }
head -n "$(wc -l <"$tree/etc/os-release")" "$work/out" | cmp -s - "$tree/etc/os-release" ||
	die "the output does not start with the tree's os-release"
grep -qx ARCH=aarch64 "$work/out" || die "the guest is not aarch64"
state=$(sed -n 's/^STATE=//p' "$work/out")
case $state in running | degraded) ;; *) die "is-system-running: '$state'" ;; esac
grep -q "did not power off" "$work/err" && die "the guest did not power off by itself"
for pid in $(sed -n 's/^erofs-nbd-launch: started .* (pid \([0-9]*\)).*/\1/p' "$work/err"); do
	kill -0 "$pid" 2>/dev/null && die "pid $pid still runs"
done
[ ! -e "$work/run" ] || die "the runtime directory is still there"
echo "PASS: check-arm64-os: arm64 Debian 12 booted with AAVMF under TCG, COMMAND over SSH," \
	"$state; $secs s from launch to power-off ($((SECONDS - start)) s in all)"
