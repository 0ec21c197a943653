#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-arm64-vm.sh - the Apple silicon path on Linux: arm64 guests
# booted by erofs-nbd-launch --arch aarch64 --accel tcg (qemu-system-aarch64,
# -machine virt) from busybox trees, in both modes:
#   efi     the served `disk` export through AAVMF (qemu-efi-aarch64),
#           systemd-boot for arm64 (BOOTAA64.EFI) from the ESP erofs-nbd
#           built, the arm64 kernel (an uncompressed PE Image) and an
#           initramfs that finds the root by PARTUUID (tests/efi/init);
#           root arm64 partition type on the GPT
#   kernel  direct kernel boot of the `root` export, the kernel and
#           initramfs found in the tree (tests/vm/init)
# Each guest prints its marker from the EROFS root and powers off; the
# launcher exits 0 and leaves nothing behind.
# slow: two arm64 boots emulated with TCG (~1-3 min each)
#
# The arm64 pieces are Debian's own packages, fetched with apt-get
# download (linux-image-arm64's kernel, busybox-static:arm64,
# systemd-boot-efi:arm64) and unpacked once per machine, under an flock,
# in /var/cache/erofs-nbd-tests/arm64-pkgs; modules.dep comes from depmod.
# Exit: 0 pass, 77 skip (no qemu-system-aarch64, AAVMF, the arm64
# packages cannot be fetched, not root), 1 fail.
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"
here=$TESTS_DIR

requires_root
requires qemu-system-aarch64
requires test -r /usr/share/AAVMF/AAVMF_CODE.fd
requires test -x /bin/busybox
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at '$EROFS_NBD'"
LAUNCH=${EROFS_NBD_LAUNCH:-$(dirname "$EROFS_NBD")/erofs-nbd-launch}
[ -x "$LAUNCH" ] || fail "no launcher binary at '$LAUNCH'"

# --- the arm64 packages, once per machine -------------------------------------------
arm64_pkgs
root=$ARM64_ROOT
kv=$ARM64_KVER
akernel=$ARM64_KERNEL
echo "arm64 kernel: $akernel"

tmpdir
work=$T
marker="arm64-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# The applets are listed by the host's busybox-static (the same Debian
# version), so that nothing arm64 has to run here.
export BUSYBOX=$root/bin/busybox BUSYBOX_LIST=/bin/busybox MKINITRAMFS_MODDIR=$root/lib/modules/$kv

check "building the trees"
etree=$work/etree
EFI_KERNEL=$akernel EFI_LOADER=$root/usr/lib/systemd/boot/efi/systemd-bootaa64.efi \
	"$here/efi/mktree.sh" "$kv" "$etree" "$marker" || fail "efi/mktree.sh failed"
ktree=$work/ktree
mkdir -p "$ktree"/{bin,dev,proc,sys,etc,boot}
cp -a "$etree/bin/." "$ktree/bin/"
install -m 0755 "$here/launcher/root-init" "$ktree/init"
echo "$marker" >"$ktree/marker"
cp "$akernel" "$ktree/boot/vmlinuz-$kv"
"$here/vm/mkinitramfs.sh" "$kv" "$ktree/boot/initrd.img-$kv" || fail "mkinitramfs.sh failed"

# boot NAME TREE MODE: one launcher run; its console in $work/NAME.con.
boot() {
	local name=$1 tree=$2 mode=$3 rc start=$SECONDS pid
	check "$name: --arch aarch64 --accel tcg --boot $mode"
	timeout --kill-after=30 900 "$LAUNCH" -v --server "$EROFS_NBD" --arch aarch64 \
		--accel tcg --cpus 2 --memory 512 --boot "$mode" --export "$tree" \
		--cmdline "panic=-1" --runtime-dir "$work/run-$name" \
		--console-log "$work/$name.con" </dev/null >"$work/$name.out" \
		2>"$work/$name.err" && rc=0 || rc=$?
	sed 's/^/  | /' "$work/$name.err"
	tr -d '\r' <"$work/$name.con" | grep -aE '^(EFI|LAUNCH|VM)-|Kernel panic' | sed 's/^/  > /'
	[ "$rc" = 0 ] || fail "$name: launcher exit status" 0 "$rc"
	for pid in $(sed -n 's/^erofs-nbd-launch: started .* (pid \([0-9]*\)).*/\1/p' "$work/$name.err"); do
		kill -0 "$pid" 2>/dev/null && fail "$name: pid $pid still runs"
	done
	[ ! -e "$work/run-$name" ] || fail "$name: the runtime directory is still there"
	ok "$name: exit 0 after $((SECONDS - start)) s, nothing left"
}
value() { tr -d '\r' <"$work/$1.con" | sed -n "s/^$2=//p" | tail -n1; }
expect() {
	local got
	got=$(value "$1" "$2")
	[ "$got" = "$3" ] || fail "$1: console line $2" "$3" "$got"
	ok "$1: $2=$got"
}

boot efi "$etree" efi
expect efi EFI-FIRMWARE uefi
[[ $(value efi EFI-VAR-LoaderInfo) == systemd-boot* ]] || fail "efi: systemd-boot did not run"
expect efi EFI-ROOTFS erofs
expect efi EFI-KERNEL "$kv"
expect efi EFI-MARKER "$marker"
grep -q "console=ttyAMA0" <<<"$(value efi EFI-CMDLINE)" || fail "efi: no console=ttyAMA0"

boot kernel "$ktree" kernel
expect kernel LAUNCH-ROOTFS erofs
expect kernel LAUNCH-MARKER "$marker"

echo "PASS: $TEST_NAME: arm64 guests booted from the disk (AAVMF) and the root (kernel)"
