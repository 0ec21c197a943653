#!/bin/bash
# SPDX-License-Identifier: MIT
# bench/image.sh - section "image" of `make bench` (bench/sec-image.sh):
# start-up on a multi-layer
# podman image (erofs-nbd --image, merging the layers itself) against
# start-up on the image's merged directory (erofs-nbd --export of what
# `podman image mount` shows: the way before --image) and against
# mkfs.erofs of that directory.  Reports only.
#
#   bench/image.sh BIN TREE        (bench/run.sh runs it with the minbase tree)
#
# The image: TREE imported with `podman import`, then six `podman build
# --isolation=chroot` RUN steps that delete, copy, chmod, chown and
# re-create (bench/image.Containerfile), in an isolated store cached in
# ${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests}/podman-bench (built
# once, under a lock; TREE's path, root inode and ctime are recorded next
# to it).  Start-up is from starting the process until its URI line, as
# row a); CPU is the server's time on a CPU by then, all threads (its -v
# "ready:" line; steadier than wall-clock time on a busy machine),
# mkfs.erofs's user + system time (GNU time).  Median of BENCH_RUNS
# (default 9) after one warm-up each, alternating.  Needs root and
# podman; else one line says why the row is missing.
set -euo pipefail
export LC_ALL=C

BIN=$(realpath -e "$1")
TREE=$(realpath -e "$2")
RUNS=${BENCH_RUNS:-9}
here=$(cd "$(dirname "$0")" && pwd)
cache=${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests}
store=$cache/podman-bench
runroot=/run/erofs-nbd-tests/podman-bench
ref=localhost/erofs-bench:multi

skip_row() {
	printf '%-34s | %12s | %-24s | %7s | %s\n' "e) --image start-up" "-" "-" "-" "skipped: $1"
	exit 0
}
[ "$(id -u)" = 0 ] || skip_row "needs root (podman image mount)"
command -v podman >/dev/null || skip_row "no podman (make deps)"
command -v mkfs.erofs >/dev/null || skip_row "no mkfs.erofs"

work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-bench-image.XXXXXX")
cleanup() {
	pod image unmount -a >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

pod() { podman --root "$store" --runroot "$runroot" --storage-driver overlay "$@"; }

# The image, built once per TREE: its path, and its root directory's inode
# and ctime, so that a tree built again at the same path (a new directory
# moved there) builds the image again.
key="$TREE $(stat -c '%i %Z' "$TREE")"
mkdir -p "$cache"
exec 9>"$store.lock"
flock 9
if [ ! -e "$store.done" ] || [ "$(cat "$store.done")" != "$key" ]; then
	echo "bench: building the image $ref from $TREE in $store (once)" >&2
	rm -rf --one-file-system "$store" "$runroot"
	tar --numeric-owner -C "$TREE" -cf "$work/base.tar" . ||
		skip_row "could not tar $TREE"
	pod import "$work/base.tar" localhost/erofs-bench:base >/dev/null 2>&1 ||
		skip_row "podman import failed"
	pod build --isolation=chroot -f "$here/image.Containerfile" -t "$ref" "$here" \
		>"$work/build.log" 2>&1 || { tail -n 5 "$work/build.log" >&2; skip_row "podman build failed"; }
	echo "$key" >"$store.done"
fi
exec 9>&-
layers=$(pod image inspect --format '{{len .RootFS.Layers}}' "$ref")
merged=$(pod image mount "$ref")
entries=$(find "$merged" -xdev | wc -l)

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# start_once ARGS...: erofs-nbd ARGS from start to URI; prints "wall cpu"
# in seconds (cpu: the CPU time of all its threads until then, the walkers
# that have ended included, as its -v "ready:" line says from getrusage();
# the main thread's /proc/PID/schedstat missed the walkers).
start_once() {
	local fifo=$work/out.$BASHPID.$RANDOM uri t0 t1 pid cpu
	mkfifo "$fifo"
	t0=${EPOCHREALTIME/./}
	"$BIN" -v -f --unix "$fifo.sock" "$@" >"$fifo" 2>"$fifo.log" &
	pid=$!
	IFS= read -r -t 300 uri <"$fifo" || true
	t1=${EPOCHREALTIME/./}
	cat "$fifo.log" >>"$work/server.log"
	[ -n "$uri" ] || { tail -n 5 "$fifo.log" >&2; skip_row "erofs-nbd printed no URI"; }
	cpu=$(sed -n 's/.*ready: .* s since the walk began, \([0-9.]*\) s of CPU in all.*/\1/p' \
		"$fifo.log")
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	[ -n "$cpu" ] || { tail -n 5 "$fifo.log" >&2; skip_row "erofs-nbd -v printed no ready: line"; }
	rm -f "$fifo" "$fifo.log"
	awk -v us=$((10#$t1 - 10#$t0)) -v cpu="$cpu" 'BEGIN { printf "%.4f %.4f\n", us / 1e6, cpu }'
}

# mkfs_once: mkfs.erofs of the merged directory; prints "wall cpu".
mkfs_once() {
	rm -f "$work/mkfs.img"
	sync
	/usr/bin/time -f '%e %U %S' -o "$work/time" mkfs.erofs "$work/mkfs.img" "$merged" \
		>/dev/null 2>&1 || skip_row "mkfs.erofs failed"
	awk '{ printf "%.4f %.4f\n", $1, $2 + $3 }' "$work/time"
}

image_args=(--export= --image "$ref" --storage-root "$store")
start_once "${image_args[@]}" >/dev/null	# warm-ups: page cache, dentries
start_once --export "$merged" >/dev/null
mkfs_once >/dev/null
for ((i = 0; i < RUNS; i++)); do
	echo "img $(start_once "${image_args[@]}")"
	echo "dir $(start_once --export "$merged")"
	echo "mkfs $(mkfs_once)"
done >"$work/runs"
med() { awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$work/runs" | median; }
img_s=$(med img 2) img_cpu=$(med img 3)
dir_s=$(med dir 2) dir_cpu=$(med dir 3)
mkfs_s=$(med mkfs 2) mkfs_cpu=$(med mkfs 3)

fmt() { awk -v v="$1" -v d="${2:-3}" 'BEGIN { printf "%.*f", d, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
row() { printf '%-34s | %12s | %-24s | %7s | %s\n' "$@"; }
echo
echo "e) image $ref: $layers layers, $entries entries merged (from $TREE);"
echo "   the merged directory is podman image mount's overlay mount"
row "e) start, s, --image (med. $RUNS)" "$(fmt "$img_s")" "$(fmt "$dir_s") merged dir" \
	"$(ratio "$img_s" "$dir_s")" "<= 1.3"
row "e) start, CPU s, --image" "$(fmt "$img_cpu" 4)" "$(fmt "$dir_cpu" 4) merged dir" \
	"$(ratio "$img_cpu" "$dir_cpu")" "<= 1.3"
row "e) start, s, --image vs mkfs" "$(fmt "$img_s")" "$(fmt "$mkfs_s") mkfs.erofs" \
	"$(ratio "$img_s" "$mkfs_s")" "(info)"
row "e) CPU s, --image vs mkfs" "$(fmt "$img_cpu" 4)" "$(fmt "$mkfs_cpu" 4) mkfs.erofs" \
	"$(ratio "$img_cpu" "$mkfs_cpu")" "(info)"
