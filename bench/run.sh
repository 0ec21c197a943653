#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/run.sh - erofs-nbd against its peers in one run: mkfs.erofs +
# nbdkit file, qemu-nbd, and the transport's ceiling.  Reports only: there
# is no pass or fail.  What each number means: bench/README.md.
#
#   bench/run.sh BIN          (make bench runs bench/run.sh build/erofs-nbd)
#
# Sections, one file each (bench/sec-NAME.sh defines bench_NAME), run in
# this order; BENCH_SECTIONS picks some ("read startup").  A section
# records results with `result` (bench/lib.sh); bench/report.py prints the
# table from them and bench/plot.gp draws bench.png.
#
#   read     sequential (nbdcopy) and 4 KiB random (fio) reads per tree and
#            server, the ceiling, CPU per GB, memory
#   many     1 vs 64 concurrent connections
#   startup  start to serving vs mkfs.erofs, per tree
#   efi      an EFI boot from the disk export vs nbdkit
#   image    a 7-layer podman image served with --image vs its merged
#            directory (bench/image.sh) and vs mkfs.erofs
#   ssh      a real OS to a command's first output over SSH
#            (bench/boot-ssh.sh) vs mkfs.erofs + the same boot from nbdkit
#
# Trees (cached in ${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests},
# built once under an flock): minbase (Debian 12 debootstrap minbase),
# usr-share (a copy of /usr/share: many small files), large (100,000+
# entries, for start-up).  BENCH_TREES="name=DIR ..." replaces them.
#
# Knobs: BENCH_OUT (results, table, plot; default build/bench),
# BENCH_READ_RUNS (rounds of sequential passes, default 5),
# BENCH_FIO_SECS (rounds of 1 s random reads, 5), BENCH_STEADY_SECS
# (seconds of each steady sequential round, 2),
# BENCH_MANY_SECS (seconds of each 1-or-64-client read, 8),
# BENCH_RUNS (start-up runs, default 3), BENCH_EFI_RUNS (3; 0 skips),
# BENCH_SSH_RUNS (3; 0 skips), EROFS_NBD_VM_ACCEL (kvm|tcg), TMPDIR
# (where images are written).
set -euo pipefail
export LC_ALL=C	# decimal points for awk, sort -g and $EPOCHREALTIME

usage() { echo "usage: $0 BIN" >&2; exit 2; }
die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ $# -eq 1 ] || usage
BIN=$(realpath -e "$1") || die "no binary '$1'"
[ -x "$BIN" ] || die "'$BIN' is not executable"
READ_RUNS=${BENCH_READ_RUNS:-5}
FIO_SECS=${BENCH_FIO_SECS:-5}
MANY_SECS=${BENCH_MANY_SECS:-8}
STEADY_SECS=${BENCH_STEADY_SECS:-2}
STARTUP_RUNS=${BENCH_RUNS:-3}
EFI_RUNS=${BENCH_EFI_RUNS:-3}
SECTIONS=${BENCH_SECTIONS:-read many startup image efi ssh}
here=$(cd "$(dirname "$0")" && pwd)
OUT=$(realpath -m "${BENCH_OUT:-$here/../build/bench}")

for t in mkfs.erofs nbdkit nbdcopy nbdinfo fio qemu-nbd python3 /usr/bin/time; do
	command -v $t >/dev/null || die "'$t' not found (make deps)"
done
CPUTIME=${BENCH_CPUTIME:-$(dirname "$BIN")/bench/cputime}
[ -x "$CPUTIME" ] || die "no $CPUTIME (make bench builds it; BENCH_CPUTIME names another)"

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

# shellcheck source=bench/lib.sh
. "$here/lib.sh"
for s in $SECTIONS; do
	[ -f "$here/sec-$s.sh" ] || die "no section '$s' (bench/sec-$s.sh)"
	# shellcheck disable=SC1090
	. "$here/sec-$s.sh"
done

mkdir -p "$OUT"
rm -f "$OUT/read.dat" "$OUT/startup.dat" "$OUT/bench.png"
RESULTS=$OUT/results.tsv
: >"$RESULTS"

# The trees: name=dir pairs.
declare -A TREE
if [ -n "${BENCH_TREES:-}" ]; then
	for nd in $BENCH_TREES; do TREE[${nd%%=*}]=$(realpath -e "${nd#*=}"); done
else
	TREE[minbase]=$(tree_minbase)
	TREE[usr-share]=$(tree_usr_share)
	case " $SECTIONS " in *" startup "*) TREE[large]=$(tree_large) ;; esac
fi
read_trees=() startup_trees=()
for t in minbase usr-share "${!TREE[@]}"; do
	[ -n "${TREE[$t]:-}" ] || continue
	case " ${read_trees[*]} ${startup_trees[*]} " in *" $t "*) continue ;; esac
	[ "$t" = large ] || read_trees+=("$t")
	startup_trees+=("$t")
done

# erofs-nbd's memory with an empty tree: the base for bytes per entry.
mkdir -p "$work/empty"
srv_ours "$work/empty"
nbdinfo --size "$SRV_URI" >/dev/null	# measured as sec-read.sh does: once it answers
result mem empty erofs-nbd rss_start_kib "$(srv_rss_kib "$SRV_PID" VmRSS)"
srv_stop

for s in $SECTIONS; do
	case $s in
	read | many)
		for t in "${read_trees[@]}"; do "bench_$s" "$t" "${TREE[$t]}"; done ;;
	startup)
		for t in "${startup_trees[@]}"; do bench_startup "$t" "${TREE[$t]}"; done ;;
	*)
		"bench_$s" ;;
	esac
done

{
	echo "erofs-nbd bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo "binary: $BIN ($("$BIN" --version 2>&1 | head -n1))"
	echo "peers:  $( (mkfs.erofs --version 2>&1 || true) | grep -m1 -o 'mkfs.erofs [0-9.]*')," \
		"$(nbdkit --version | head -n1), $(qemu-nbd --version | head -n1);" \
		"clients $(nbdcopy --version | head -n1), $(fio --version)"
	echo "reads:  nbdcopy --no-extents URI null: ($READ_RUNS passes each, median; -C 1: one connection);" \
		"fio --ioengine=nbd --rw=randread --bs=4k --numjobs=2 --iodepth=32 (${FIO_SECS} x 1 s);" \
		"every server of a tree up at once, one pass from each per round"
	echo "load:   $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine skews wall-clock numbers; CPU per GB less so)"
	echo
	python3 "$here/report.py" "$RESULTS" "$OUT"
} | tee "$OUT/bench.txt"
if command -v gnuplot >/dev/null && grep -qv '^#' "$OUT/read.dat" 2>/dev/null &&
	grep -qv '^#' "$OUT/startup.dat" 2>/dev/null; then
	gnuplot -e "out='$OUT'" "$here/plot.gp" 2>"$work/gnuplot.log" ||
		{ cat "$work/gnuplot.log" >&2; note "gnuplot failed"; }
fi
note "table: $OUT/bench.txt; plot (read and startup sections): $OUT/bench.png;" \
	"raw results: $RESULTS"
