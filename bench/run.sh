#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/run.sh - compares erofs-nbd with the usual way of serving a tree as
# EROFS over NBD (mkfs.erofs writes an image, nbdkit serves the file), on
# one real tree, in one run.  Reports only: there is no pass or fail.
# What each number means: bench/README.md.
#
#   bench/run.sh BIN [TREE]        (make bench runs bench/run.sh build/erofs-nbd)
#
# TREE defaults to the Debian minbase tree the integration tests cache in
# ${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests}/debian-minbase; it is
# built with debootstrap when missing (needs root and the network, once).
# Knobs: BENCH_RUNS (start-up runs, default 9), BENCH_READ_RUNS (read runs,
# default 9), BENCH_EFI_RUNS (EFI boots of each disk, default 3; 0 leaves
# the EFI row out), EROFS_NBD_VM_ACCEL (kvm|tcg, else probed), TMPDIR
# (where mkfs.erofs writes its image).
set -euo pipefail
export LC_ALL=C	# decimal points for awk, sort -g and $EPOCHREALTIME

usage() { echo "usage: $0 BIN [TREE]" >&2; exit 2; }
die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
BIN=$(realpath -e "$1") || die "no binary '$1'"
[ -x "$BIN" ] || die "'$BIN' is not executable"
RUNS=${BENCH_RUNS:-9}
READ_RUNS=${BENCH_READ_RUNS:-9}
EFI_RUNS=${BENCH_EFI_RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd)

for t in mkfs.erofs nbdkit nbdcopy nbdinfo; do
	command -v $t >/dev/null || die "'$t' not found (make deps)"
done
TIME=
if [ -x /usr/bin/time ]; then
	TIME=/usr/bin/time	# GNU time (package "time") for mkfs.erofs's max RSS
else
	note "no /usr/bin/time (package 'time'): mkfs.erofs's peak RSS is sampled instead"
fi

# --- the tree -------------------------------------------------------------
cache=${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests}

# debian_mirror: the first Debian archive URI apt is configured with.
debian_mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	echo "${m:-http://deb.debian.org/debian}"
}

# build_minbase DIR: debootstraps bookworm minbase into DIR, atomically (a
# DIR.done stamp marks it complete, as the integration tests expect).
build_minbase() {
	local dir=$1 tmp mirror
	[ "$(id -u)" = 0 ] || die "building $dir needs root (or pass a TREE)"
	command -v debootstrap >/dev/null || die "no debootstrap (make deps)"
	mkdir -p "$(dirname "$dir")"
	exec 9>"$dir.lock"
	flock 9
	if [ -e "$dir.done" ]; then
		exec 9>&-
		return 0
	fi
	# Never delete a tree someone else may be building (without our lock).
	[ -e "$dir" ] && die "'$dir' exists without '$dir.done': still being" \
		"built elsewhere, or broken (then remove it); or pass a TREE"
	mirror=$(debian_mirror)
	tmp=$dir.tmp.$$
	rm -rf "$tmp"
	note "building $dir with debootstrap from $mirror (once, a few minutes)"
	debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1 ||
		{ tail -n 20 "$tmp.log" >&2; die "debootstrap failed"; }
	rm -f "$tmp.log"
	mv "$tmp" "$dir"
	touch "$dir.done"
	exec 9>&-
}

if [ $# -ge 2 ]; then
	TREE=$(realpath -e "$2") || die "no tree '$2'"
else
	TREE=$cache/debian-minbase
	[ -e "$TREE.done" ] || build_minbase "$TREE"
fi
[ -d "$TREE" ] || die "'$TREE' is not a directory"

work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-bench.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------
# Times are taken from $EPOCHREALTIME (bash 5: seconds with microseconds,
# read without forking) as integer microseconds: us=${EPOCHREALTIME/./}.

# median: the median of the numbers on stdin (the lower middle one for an
# even count: no invented values).
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# vm_hwm_kib PID: peak resident set size of PID in KiB (VmHWM).
vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# start_ours [ARGS...]: starts erofs-nbd on a fresh Unix socket and waits
# (blocking on its stdout, no polling) for the URI line.  Serves $OUR_TREE
# (default $TREE).  Sets OUR_PID, OUR_URI, OUR_SOCK, OUR_US (start to URI,
# microseconds).  Its stdout fifo stays open on fd OUR_FD until stop_pid.
n_srv=0
start_ours() {
	local fifo sock t0 t1
	n_srv=$((n_srv + 1))
	fifo=$work/out.$BASHPID.$n_srv
	sock=$work/ours.$BASHPID.$n_srv.sock
	mkfifo "$fifo"
	t0=${EPOCHREALTIME/./}
	OUR_SOCK=$sock
	"$BIN" --export "${OUR_TREE:-$TREE}" -f --unix "$sock" "$@" >"$fifo" 2>>"$work/ours.log" &
	OUR_PID=$!
	pids+=("$OUR_PID")
	exec {OUR_FD}<"$fifo"
	OUR_URI=
	IFS= read -r -t 300 -u "$OUR_FD" OUR_URI || true
	t1=${EPOCHREALTIME/./}
	[ -n "$OUR_URI" ] || { tail -n 20 "$work/ours.log" >&2; die "erofs-nbd printed no URI"; }
	OUR_URI="nbd+unix:///root?socket=$sock"	# the EROFS; "" is the GPT disk
	OUR_US=$((10#$t1 - 10#$t0))
}

# stop_pid PID: SIGTERM and reap.
stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	{ wait "$1"; } 2>/dev/null || true
}

# start_nbdkit IMG: nbdkit serving IMG read-only; sets KIT_PID, KIT_URI.
start_nbdkit() {
	local sock=$work/nbdkit.sock i
	rm -f "$sock"
	nbdkit -f -r -U "$sock" file "$1" 2>>"$work/nbdkit.log" &
	KIT_PID=$!
	pids+=("$KIT_PID")
	for ((i = 0; i < 300; i++)); do
		[ -S "$sock" ] && break
		kill -0 "$KIT_PID" 2>/dev/null || die "nbdkit exited"
		sleep 0.02
	done
	[ -S "$sock" ] || die "nbdkit did not start"
	KIT_URI="nbd+unix:///?socket=$sock"
}

# read_all URI [NBDCOPY-OPTION...]: reads the whole export once with
# nbdcopy, all bytes (no extent skipping); prints the seconds it took.
read_all() {
	local uri=$1 t0 t1
	shift
	t0=${EPOCHREALTIME/./}
	nbdcopy --no-extents "$@" "$uri" null: || die "nbdcopy $* $uri failed"
	t1=${EPOCHREALTIME/./}
	awk -v us=$((10#$t1 - 10#$t0)) 'BEGIN { printf "%.4f\n", us / 1e6 }'
}

# read_median URI [NBDCOPY-OPTION...]: one warm-up read, then the median
# seconds of READ_RUNS reads.
read_median() {
	local i
	read_all "$@" >/dev/null
	for ((i = 0; i < READ_RUNS; i++)); do
		read_all "$@"
	done | median
}

# multi_conn URI: "yes" when the server allows multi-conn (nbdcopy then
# opens 4 connections), else "no".
multi_conn() { if nbdinfo --can multi-conn "$1" >/dev/null 2>&1; then echo yes; else echo no; fi; }

fmt() { awk -v v="$1" -v d="${2:-2}" 'BEGIN { printf "%.*f", d, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1048576 }'; }

# --- the tree's size ------------------------------------------------------------
note "tree $TREE: counting (also warms the page cache)"
read -r n_entries n_files n_bytes < <(find "$TREE" -xdev -printf '%y %s\n' |
	awk '{ n++ } $1 == "f" { f++; b += $2 } END { printf "%d %d %d\n", n, f, b }')
# Warm the page cache with every file's data, for both contestants alike.
find "$TREE" -xdev -type f -readable -print0 | xargs -0 -r cat >/dev/null 2>&1 || true

# --- a) start-up: erofs-nbd until its URI line vs mkfs.erofs --------------------
note "a) start-up: $RUNS x erofs-nbd (start until URI), $RUNS x mkfs.erofs"
start_ours	# warm-up
stop_pid "$OUR_PID"
exec {OUR_FD}<&-
ours_start=$(for ((i = 0; i < RUNS; i++)); do
	start_ours
	stop_pid "$OUR_PID"
	exec {OUR_FD}<&-
	awk -v us="$OUR_US" 'BEGIN { printf "%.4f\n", us / 1e6 }'
done | median)

img=$work/mkfs.img
mkfs_rss_kib=0
# mkfs_once: one mkfs.erofs run; prints seconds and max RSS (KiB).
mkfs_once() {
	local t0 t1 rss=0
	rm -f "$img"
	sync	# the previous image's writeback must not slow this run
	t0=${EPOCHREALTIME/./}
	if [ -n "$TIME" ]; then
		$TIME -f '%M' -o "$work/time.out" mkfs.erofs "$img" "$TREE" >/dev/null 2>"$work/mkfs.log" ||
			{ cat "$work/mkfs.log" >&2; die "mkfs.erofs failed"; }
		rss=$(tail -n1 "$work/time.out")
	else
		mkfs.erofs "$img" "$TREE" >/dev/null 2>"$work/mkfs.log" &
		local p=$! r
		while kill -0 $p 2>/dev/null; do
			r=$(vm_hwm_kib $p 2>/dev/null || echo 0)
			[ "${r:-0}" -gt "$rss" ] && rss=$r
			sleep 0.01
		done
		wait $p || { cat "$work/mkfs.log" >&2; die "mkfs.erofs failed"; }
	fi
	t1=${EPOCHREALTIME/./}
	awk -v us=$((10#$t1 - 10#$t0)) -v rss="$rss" 'BEGIN { printf "%.4f %d\n", us / 1e6, rss }'
}
mkfs_once >/dev/null	# warm-up
mkfs_runs=$(for ((i = 0; i < RUNS; i++)); do mkfs_once; done)
mkfs_start=$(awk '{ print $1 }' <<<"$mkfs_runs" | median)
mkfs_rss_kib=$(awk '$2 > m { m = $2 } END { print m + 0 }' <<<"$mkfs_runs")
mkfs_size=$(stat -c %s "$img")

# --- b) + c) reading the whole export; peak RSS after the reads ----------------
# Each server is read with nbdcopy's defaults (4 connections when the
# server allows multi-conn) and with one connection (-C 1).
note "b) read: nbdcopy --no-extents [-C 1] URI null:, 1 warm-up + median of $READ_RUNS, each server"
start_ours
ours_size=$(nbdinfo --size "$OUR_URI")
ours_mc=$(multi_conn "$OUR_URI")
ours_read=$(read_median "$OUR_URI")
ours_read1=$(read_median "$OUR_URI" -C 1)
ours_rss_kib=$(vm_hwm_kib "$OUR_PID")
stop_pid "$OUR_PID"
exec {OUR_FD}<&-

start_ours --no-io-uring
plain_read=$(read_median "$OUR_URI")
plain_read1=$(read_median "$OUR_URI" -C 1)
plain_rss_kib=$(vm_hwm_kib "$OUR_PID")
stop_pid "$OUR_PID"
exec {OUR_FD}<&-

start_nbdkit "$img"
kit_size=$(nbdinfo --size "$KIT_URI")
kit_mc=$(multi_conn "$KIT_URI")
kit_read=$(read_median "$KIT_URI")
kit_read1=$(read_median "$KIT_URI" -C 1)
kit_rss_kib=$(vm_hwm_kib "$KIT_PID")
stop_pid "$KIT_PID"

# --- d) EFI boot: our disk export vs nbdkit serving the same bytes ----------------
# A bootable busybox tree (tests/efi/mktree.sh: Debian kernel, initramfs,
# systemd-boot) served as a whole GPT disk; QEMU + OVMF boots it through
# systemd-boot to the root's /sbin/init, which prints EFI-MARKER-OK.  The
# peer serves a file with the same bytes (nbdcopy of our `disk` export)
# with nbdkit.  Same QEMU command line for both (tests/efi/vm.sh).
efi_row=		# "ours peer" medians in seconds, or empty
efi_why=		# why the row is missing
efi_info=
# efi_skip WHY: no EFI row, and why.
efi_skip() { efi_why=$1; note "d) EFI boot skipped: $1"; }

# efi_boot SOCK: boots the disk on SOCK once (export "disk"); prints the
# seconds from starting QEMU until the console shows EFI-MARKER-OK, or
# fails.  The console is polled every 20 ms.
efi_boot() {
	local sock=$1 log=$work/efi-console.log t0 t1='' p
	: >"$log"
	cp "$OVMF_VARS" "$work/efi-vars.fd"
	efi_vm_cmd "$EFI_ACCEL" "$efi_tmo" "$log" "$work/efi-vars.fd" "$sock" disk
	t0=${EPOCHREALTIME/./}
	"${VM[@]}" </dev/null >"$work/efi-qemu.out" 2>&1 &
	p=$!
	pids+=("$p")
	while kill -0 "$p" 2>/dev/null; do
		if grep -aq '^EFI-MARKER-OK' "$log"; then
			t1=${EPOCHREALTIME/./}
			break
		fi
		grep -aq -e 'Kernel panic' -e '^EFI-INIT-FAIL' "$log" && break
		sleep 0.02
	done
	wait "$p" 2>/dev/null || true
	if [ -z "$t1" ]; then
		grep -aq '^EFI-MARKER-OK' "$log" || {
			tr -d '\r' <"$log" | tail -n 5 >&2
			return 1
		}
		t1=${EPOCHREALTIME/./}
	fi
	awk -v us=$((10#$t1 - 10#$t0)) 'BEGIN { printf "%.3f\n", us / 1e6 }'
}

# shellcheck source=tests/efi/vm.sh
. "$here/../tests/efi/vm.sh"	# efi_firmware, efi_vm_cmd, efi_pick_accel
if ! [ "$EFI_RUNS" -gt 0 ] 2>/dev/null; then
	efi_skip "BENCH_EFI_RUNS=$EFI_RUNS"
elif [ "$(uname -m)" != x86_64 ]; then
	efi_skip "x86_64 only"
elif ! command -v "$EFI_QEMU" >/dev/null; then
	efi_skip "no qemu-system-x86_64"
elif ! efi_firmware; then
	efi_skip "no OVMF (package ovmf)"
elif ! grep -q -- --kernel <<<"$("$BIN" --help 2>&1 || true)"; then
	efi_skip "this erofs-nbd has no disk export"
else
	efi_kver=
	for k in $(printf "%s\n" /boot/vmlinuz-*-amd64 | sort -V -r); do
		kv=${k#/boot/vmlinuz-}
		if [ -r "$k" ] && [ -f "/lib/modules/$kv/modules.dep" ]; then
			efi_kver=$kv
			break
		fi
	done
	efi_tree=$work/efi-tree
	if [ -z "$efi_kver" ]; then
		efi_skip "no /boot/vmlinuz-*-amd64 with modules (linux-image-amd64)"
	elif ! "$here/../tests/efi/mktree.sh" "$efi_kver" "$efi_tree" \
		"bench-$RANDOM$RANDOM" >"$work/efi-tree.log" 2>&1; then
		efi_skip "tests/efi/mktree.sh failed: $(tail -n1 "$work/efi-tree.log")"
	fi
fi
if [ -z "$efi_why" ]; then
	efi_pick_accel "$work" "$efi_tree/boot/vmlinuz-$efi_kver" \
		"$efi_tree/boot/initrd.img-$efi_kver"
	efi_tmo=300
	[ "$EFI_ACCEL" = kvm ] && efi_tmo=120
	note "d) EFI boot with OVMF ($EFI_ACCEL): 1 warm-up + $EFI_RUNS boots of each disk," \
		"alternating$([ "$EFI_ACCEL" = tcg ] && echo " (TCG: 15-30 s each)")"
	OUR_TREE=$efi_tree start_ours --cmdline "console=ttyS0 panic=-1"
	efi_disk=$work/efi-disk.img
	efi_ours=() efi_kit=()
	if nbdcopy "nbd+unix:///disk?socket=$OUR_SOCK" "$efi_disk"; then
		efi_size=$(stat -c %s "$efi_disk")
		start_nbdkit "$efi_disk"
		kit_sock=${KIT_URI#*socket=}
		# One warm-up boot (QEMU's and OVMF's files into the page cache;
		# both disks' data is there already: the tree was just built and
		# copied), then alternate so that load changes hit both alike.
		if efi_boot "$OUR_SOCK" >/dev/null; then
			for ((i = 0; i < EFI_RUNS; i++)); do
				s=$(efi_boot "$OUR_SOCK") ||
					{ efi_skip "a boot from erofs-nbd failed"; break; }
				efi_ours+=("$s")
				s=$(efi_boot "$kit_sock") ||
					{ efi_skip "a boot from nbdkit failed"; break; }
				efi_kit+=("$s")
			done
		else
			efi_skip "the warm-up boot from erofs-nbd failed (console above)"
		fi
		stop_pid "$KIT_PID"
	else
		efi_skip "nbdcopy of our disk export failed"
	fi
	stop_pid "$OUR_PID"
	exec {OUR_FD}<&-
	if [ -z "$efi_why" ]; then
		efi_row="$(printf '%s\n' "${efi_ours[@]}" | median) $(printf '%s\n' "${efi_kit[@]}" | median)"
		efi_info="EFI boots to marker, s ($EFI_ACCEL, disk $(mib "$efi_size") MiB):"
		efi_info+=" erofs-nbd ${efi_ours[*]}; nbdkit ${efi_kit[*]}"
	fi
fi

# --- report --------------------------------------------------------------------
# MiB/s, unrounded (the table rounds): bytes served / median seconds.
mibs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.6f", b / 1048576 / s }'; }
ours_mibs=$(mibs "$ours_size" "$ours_read")
plain_mibs=$(mibs "$ours_size" "$plain_read")
kit_mibs=$(mibs "$kit_size" "$kit_read")
ours_mibs1=$(mibs "$ours_size" "$ours_read1")
plain_mibs1=$(mibs "$ours_size" "$plain_read1")
kit_mibs1=$(mibs "$kit_size" "$kit_read1")

row() { printf '%-34s | %12s | %-24s | %7s | %s\n' "$@"; }
echo
echo "erofs-nbd bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "binary: $BIN"
echo "tree:   $TREE: $n_entries entries, $n_files regular files," \
	"$(mib "$n_bytes") MiB of file data ($n_bytes bytes)"
mkfs_version=$(mkfs.erofs --version 2>&1 || true)	# 1.5 prints it, then fails
mkfs_version=$(grep -m1 -o 'mkfs.erofs [0-9][0-9.]*' <<<"$mkfs_version" || echo mkfs.erofs)
echo "peers:  $mkfs_version," \
	"$(nbdkit --version | head -1)," \
	"client $(nbdcopy --version | head -1)"
echo "reads:  nbdcopy --no-extents URI null: (4 connections with multi-conn: erofs-nbd" \
	"$ours_mc, nbdkit $kit_mc) and with -C 1"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every number)"
echo
row "metric" "erofs-nbd" "peer" "ratio" "target"
row "----------------------------------" "------------" "------------------------" "-------" "------"
row "a) start to serving, s (median $RUNS)" "$(fmt "$ours_start" 3)" "$(fmt "$mkfs_start" 3) mkfs.erofs" \
	"$(ratio "$ours_start" "$mkfs_start")" "<= 0.10"
row "b) read all, MiB/s (median $READ_RUNS)" "$(fmt "$ours_mibs" 1)" "$(fmt "$kit_mibs" 1) nbdkit file" \
	"$(ratio "$ours_mibs" "$kit_mibs")" ">= 1.0"
row "b) same, --no-io-uring" "$(fmt "$plain_mibs" 1)" "$(fmt "$kit_mibs" 1) nbdkit file" \
	"$(ratio "$plain_mibs" "$kit_mibs")" ">= 1.0"
row "b) read all, 1 connection" "$(fmt "$ours_mibs1" 1)" "$(fmt "$kit_mibs1" 1) nbdkit file" \
	"$(ratio "$ours_mibs1" "$kit_mibs1")" ">= 1.0"
row "b) same, --no-io-uring" "$(fmt "$plain_mibs1" 1)" "$(fmt "$kit_mibs1" 1) nbdkit file" \
	"$(ratio "$plain_mibs1" "$kit_mibs1")" ">= 1.0"
row "   image size, MiB" "$(mib "$ours_size")" "$(mib "$mkfs_size") mkfs.erofs" \
	"$(ratio "$ours_size" "$mkfs_size")" "(info)"
row "c) peak RSS after reads, MiB" "$(mib $((ours_rss_kib * 1024)))" \
	"$(mib $((kit_rss_kib * 1024))) nbdkit" \
	"$(ratio "$ours_rss_kib" "$kit_rss_kib")" "(info)"
row "c) same, --no-io-uring" "$(mib $((plain_rss_kib * 1024)))" \
	"$(mib $((kit_rss_kib * 1024))) nbdkit" \
	"$(ratio "$plain_rss_kib" "$kit_rss_kib")" "(info)"
row "c) peak RSS vs building the image" "$(mib $((ours_rss_kib * 1024)))" \
	"$(mib $((mkfs_rss_kib * 1024))) mkfs.erofs" \
	"$(ratio "$ours_rss_kib" "$mkfs_rss_kib")" "(info)"
if [ -n "$efi_row" ]; then
	read -r efi_o efi_k <<<"$efi_row"
	row "d) EFI boot to marker, s (med. $EFI_RUNS)" "$(fmt "$efi_o" 2)" \
		"$(fmt "$efi_k" 2) nbdkit file" "$(ratio "$efi_o" "$efi_k")" "~1.0"
else
	row "d) EFI boot to marker, s" "-" "-" "-" "skipped: $efi_why"
fi
echo
echo "medians, s: erofs-nbd start $ours_start, mkfs.erofs $mkfs_start;" \
	"read ($ours_size B) io_uring $ours_read / -C 1 $ours_read1," \
	"--no-io-uring $plain_read / $plain_read1;" \
	"nbdkit ($kit_size B) $kit_read / $kit_read1"
[ -z "$efi_info" ] || echo "$efi_info"
echo "mkfs.erofs writes to $(df --output=source,fstype "$work" | tail -n1 | tr -s ' ')"

# --- e) a multi-layer podman image (--image) vs its merged directory ---------------
# Self-contained, with its own lines: bench/image.sh, bench/README.md.
"$here/image.sh" "$BIN" "$TREE" || note "e) bench/image.sh failed"
