# SPDX-License-Identifier: MIT
# bench/sec-read.sh - section "read": sequential and 4 KiB random reads of
# one tree's EROFS, from erofs-nbd (each loop and path) and from its peers
# serving the mkfs.erofs image; the transport ceiling; erofs-nbd's memory.
# Defines bench_read TREE-NAME TREE (sourced by bench/run.sh).

# read_row TREE-NAME SERVER-LABEL: the three reads of SRV_URI.
read_row() {
	local t=$1 s=$2 r
	note "  $s: sequential (default, -C 1), random"
	r=$(seq_read "$SRV_URI")
	result read "$t" "$s" seq "$r"
	r=$(seq_read "$SRV_URI" -C 1)
	result read "$t" "$s" seq1 "$r"
	if [ "$s" != ceiling ]; then
		r=$(rand_read "$SRV_URI")
		result read "$t" "$s" rand "$r"
	fi
}

bench_read() {
	local t=$1 tree=$2 img=$work/$1.img size meta rss0 hwm
	note "read: tree $t ($tree)"
	tree_stats "$tree"
	result tree "$t" - entries "$N_ENTRIES"
	result tree "$t" - files "$N_FILES"
	result tree "$t" - bytes "$N_BYTES"
	mkfs_image "$tree" "$img" >/dev/null
	result tree "$t" - mkfs_size "$(stat -c %s "$img")"

	# erofs-nbd, the default: io_uring; zero-copy only for immutable files.
	srv_ours "$tree" -v
	rss0=$(srv_rss_kib "$SRV_PID" VmRSS)
	meta=$(grep -o "[0-9]* metadata bytes" "$work/ours.log" | tail -n1 | cut -d' ' -f1 || true)
	size=$(nbdinfo --size "$SRV_URI")
	result tree "$t" - meta_bytes "${meta:-0}"
	result tree "$t" - export_size "$size"
	read_row "$t" "erofs-nbd"
	hwm=$(srv_rss_kib "$SRV_PID" VmHWM)
	result mem "$t" erofs-nbd rss_start_kib "$rss0"
	result mem "$t" erofs-nbd rss_after_kib "$hwm"
	srv_stop
	# The same with the operator's promise: every file spliced (zero-copy).
	if "$BIN" --help 2>&1 | grep -q -- --immutable-sources; then
		srv_ours "$tree" --immutable-sources
		read_row "$t" "erofs-nbd-zc"
		result mem "$t" erofs-nbd-zc rss_after_kib "$(srv_rss_kib "$SRV_PID" VmHWM)"
		srv_stop
	fi
	srv_ours "$tree" --no-io-uring
	read_row "$t" "erofs-nbd-plain"
	result mem "$t" erofs-nbd-plain rss_after_kib "$(srv_rss_kib "$SRV_PID" VmHWM)"
	srv_stop

	srv_nbdkit file "$img"
	read_row "$t" "nbdkit-file"
	result mem "$t" nbdkit-file rss_after_kib "$(srv_rss_kib "$SRV_PID" VmHWM)"
	srv_stop
	srv_qemu "$img"
	read_row "$t" "qemu-nbd"
	result mem "$t" qemu-nbd rss_after_kib "$(srv_rss_kib "$SRV_PID" VmHWM)"
	srv_stop
	# The ceiling: nbdkit's null plugin, the same size, no extents: a
	# server that reads nothing (zeros from memset) and only sends.
	srv_nbdkit null "size=$size"
	read_row "$t" ceiling
	srv_stop
	rm -f "$img"
}
