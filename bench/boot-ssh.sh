#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/boot-ssh.sh - from an OS tree to a command's first output line:
# seconds from starting erofs-nbd-launch --export TREE -- cat /etc/os-release
# until the first line of its output, against the way without us:
# mkfs.erofs of the tree (its time added) plus the same boot from the same
# disk, prebuilt (nbdcopy of our `disk` export, whose ESP already has the
# launcher's kernel command line) and served by `nbdkit file`, reached
# with erofs-nbd-launch --connect.  Median of RUNS of each, alternating,
# after one warm-up run.
# Reports only; there is no pass or fail.
#
#   bench/boot-ssh.sh BIN [TREE]     BIN: build/erofs-nbd (the launcher beside it)
#
# TREE defaults to the Debian 12 OS tree of tests/os/mktree.sh amd64
# (built once per machine, as root).  Knobs: BENCH_SSH_RUNS (default 3),
# EROFS_NBD_VM_ACCEL (default tcg: nested KVM here can be slower or crash),
# TMPDIR (where mkfs.erofs and nbdcopy write).
set -euo pipefail
export LC_ALL=C

die() { echo "boot-ssh: $*" >&2; exit 1; }
note() { echo "boot-ssh: $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 BIN [TREE]" >&2; exit 2; }
BIN=$(realpath -e "$1") || die "no binary '$1'"
LAUNCH=$(dirname "$BIN")/erofs-nbd-launch
[ -x "$LAUNCH" ] || die "no launcher at '$LAUNCH'"
RUNS=${BENCH_SSH_RUNS:-3}
ACCEL=${EROFS_NBD_VM_ACCEL:-tcg}
here=$(cd "$(dirname "$0")" && pwd)
for t in mkfs.erofs nbdkit nbdcopy qemu-system-x86_64 ssh; do
	command -v $t >/dev/null || die "'$t' not found (make deps)"
done
if [ $# -ge 2 ]; then
	TREE=$(realpath -e "$2") || die "no tree '$2'"
else
	TREE=$("$here/../tests/os/mktree.sh" amd64) || die "no OS tree (tests/os/mktree.sh amd64)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-boot-ssh.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
secs() { awk -v us="$1" 'BEGIN { printf "%.2f\n", us / 1e6 }'; }

# first_output ARG...: runs the launcher with ARG... -- cat /etc/os-release;
# prints the seconds from its start to the first line of output.  Runs in
# $(...), a subshell: names come from its own pid.
first_output() {
	local fifo t0 t1 line p n=$BASHPID
	fifo=$work/out.$n
	mkfifo "$fifo"
	t0=${EPOCHREALTIME/./}
	"$LAUNCH" --accel "$ACCEL" --memory 1024 "$@" -- cat /etc/os-release \
		</dev/null >"$fifo" 2>"$work/launch.$n.err" &
	p=$!
	pids+=("$p")
	exec {fd}<"$fifo"
	IFS= read -r -u "$fd" line || true
	t1=${EPOCHREALTIME/./}
	cat <&"$fd" >/dev/null
	exec {fd}<&-
	rm -f "$fifo"
	wait "$p" || { tail -n 20 "$work/launch.$n.err" >&2; die "launcher run $n failed"; }
	[[ $line == *=* ]] || die "run $n: first line '$line' is not os-release's"
	secs $((10#$t1 - 10#$t0))
}

# The command line the launcher gives erofs-nbd for the ESP (-v dry run).
cmdline=$("$LAUNCH" -v --vmm qemu --accel "$ACCEL" --dry-run --export "$TREE" 2>&1 >/dev/null |
	sed -n '/^erofs-nbd-launch: server: --cmdline$/{n;s/^erofs-nbd-launch: server: //p}')
[ -n "$cmdline" ] || die "could not read the launcher's --cmdline for the server"

note "the prebuilt disk: nbdcopy of our disk export (ESP options: $cmdline)"
"$BIN" -f --export "$TREE" --unix "$work/ours.sock" --cmdline "$cmdline" \
	>/dev/null 2>"$work/server.log" &
srv=$!
pids+=("$srv")
# wait_sock PATH: up to 60 s for a Unix socket to appear.
wait_sock() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	die "no socket '$1' after 60 s"
}
wait_sock "$work/ours.sock"
nbdcopy "nbd+unix:///disk?socket=$work/ours.sock" "$work/disk.img" || die "nbdcopy failed"
kill -TERM "$srv"; wait "$srv" 2>/dev/null || true
nbdkit -f -r -U "$work/kit.sock" file "$work/disk.img" 2>"$work/nbdkit.log" &
pids+=("$!")
wait_sock "$work/kit.sock"

# mkfs_once: seconds one mkfs.erofs of the tree takes.
mkfs_once() {
	local t0 t1
	rm -f "$work/mkfs.img"
	sync
	t0=${EPOCHREALTIME/./}
	mkfs.erofs "$work/mkfs.img" "$TREE" >/dev/null 2>"$work/mkfs.log" ||
		{ cat "$work/mkfs.log" >&2; die "mkfs.erofs failed"; }
	t1=${EPOCHREALTIME/./}
	secs $((10#$t1 - 10#$t0))
}

# One warm-up run (QEMU, OVMF and the tree's files into the page cache;
# the prebuilt disk is there already, nbdcopy just wrote it), then
# alternate so that load changes hit both alike.
note "a warm-up run, then $RUNS runs of each, alternating ($ACCEL)"
first_output --export "$TREE" >/dev/null
ours=() kit=() mkfs=()
for ((r = 0; r < RUNS; r++)); do
	ours+=("$(first_output --export "$TREE")")
	mkfs+=("$(mkfs_once)")
	kit+=("$(first_output --connect "nbd+unix:///disk?socket=$work/kit.sock")")
	note "run $((r + 1)): erofs-nbd ${ours[r]} s; mkfs.erofs ${mkfs[r]} s + nbdkit boot ${kit[r]} s"
done
o=$(printf '%s\n' "${ours[@]}" | median)
m=$(printf '%s\n' "${mkfs[@]}" | median)
k=$(printf '%s\n' "${kit[@]}" | median)
peer=$(awk -v m="$m" -v k="$k" 'BEGIN { printf "%.2f", m + k }')
printf '%-34s | %12s | %-24s | %7s | %s\n' \
	"e) launch to first output, s (med $RUNS)" "$o" "$peer mkfs+nbdkit" \
	"$(awk -v a="$o" -v b="$peer" 'BEGIN { printf "%.3f", a / b }')" "<= 1.0"
echo "boot-ssh ($ACCEL, tree $TREE): erofs-nbd ${ours[*]}; mkfs.erofs ${mkfs[*]} (median $m);" \
	"boot from nbdkit file ${kit[*]} (median $k)"
