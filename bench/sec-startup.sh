# SPDX-License-Identifier: MIT
# bench/sec-startup.sh - section "startup": erofs-nbd from start until it
# prints its URI (the image laid out, listening), against mkfs.erofs
# writing the image, median of STARTUP_RUNS each, per tree; and the floor
# any walk of the tree has here (bench/walk-floor.c, built by `make bench`
# next to BIN, or BENCH_WALK_FLOOR).
# Defines bench_startup TREE-NAME TREE.

FLOOR_BIN=${BENCH_WALK_FLOOR:-$(dirname "$BIN")/bench/walk-floor}

bench_startup() {
	local t=$1 tree=$2 img=$work/startup.img i ours mkfs rss
	note "startup: tree $t: $STARTUP_RUNS x erofs-nbd, $STARTUP_RUNS x mkfs.erofs"
	tree_stats "$tree"
	result tree "$t" - entries "$N_ENTRIES"
	result tree "$t" - bytes "$N_BYTES"
	srv_ours "$tree"	# warm-up (dentry and inode caches)
	srv_stop
	ours=$(for ((i = 0; i < STARTUP_RUNS; i++)); do
		srv_ours "$tree"
		srv_stop
		awk -v us="$SRV_START_US" 'BEGIN { printf "%.4f\n", us / 1e6 }'
	done | median)
	mkfs=$(for ((i = 0; i < STARTUP_RUNS; i++)); do mkfs_image "$tree" "$img"; done)
	rm -f "$img"
	rss=$(awk '$2 > m { m = $2 } END { print m + 0 }' <<<"$mkfs")
	mkfs=$(awk '{ print $1 }' <<<"$mkfs" | median)
	result startup "$t" erofs-nbd seconds "$ours"
	result startup "$t" mkfs.erofs seconds "$mkfs"
	result startup "$t" mkfs.erofs rss_kib "$rss"
	if [ -x "$FLOOR_BIN" ]; then
		# "entries N", "cpus N", "metadata_cpu_s S", "handles_cpu_s S"
		"$FLOOR_BIN" -r "$STARTUP_RUNS" "$tree" >"$work/floor" ||
			die "$FLOOR_BIN failed on $tree (above): no floor for $t"
		while read -r k v; do result startup "$t" floor "$k" "$v"; done <"$work/floor"
	else
		note "startup: no $FLOOR_BIN (make bench builds it): no floor row"
	fi
}
