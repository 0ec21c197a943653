# SPDX-License-Identifier: MIT
# bench/sec-many.sh - section "many": aggregate sequential throughput of
# 64 concurrent clients (one connection each, fio's nbd engine, each its
# 1/64 of the export) against one client, and erofs-nbd's memory per
# connection; the same for the plain loop, nbdkit file and nbdkit null.
# Defines bench_many TREE-NAME TREE.

bench_many() {
	local t=$1 tree=$2 img=$work/$1.img one many rss0 hwm size
	note "many: tree $t: 1 vs 64 concurrent connections"
	srv_ours "$tree"
	size=$(nbdinfo --size "$SRV_URI")
	many_conns "$SRV_URI" 1 >/dev/null	# warm-up
	one=$(many_conns "$SRV_URI" 1)
	rss0=$(srv_rss_kib "$SRV_PID" VmRSS)
	many=$(many_conns "$SRV_URI" 64)
	hwm=$(srv_rss_kib "$SRV_PID" VmHWM)
	srv_stop
	result many "$t" erofs-nbd conns1_mbs "$one"
	result many "$t" erofs-nbd conns64_mbs "$many"
	result mem "$t" erofs-nbd per_conn_kib "$(( (hwm - rss0) / 64 ))"

	# The same clients against the plain loop, nbdkit file on the
	# mkfs.erofs image, and nbdkit null (no I/O at all: what 64 fio
	# processes on these cores allow any server).
	srv_ours "$tree" --no-io-uring
	many_peer "$t" erofs-nbd-plain
	mkfs_image "$tree" "$img" >/dev/null
	srv_nbdkit file "$img"
	many_peer "$t" nbdkit-file
	srv_nbdkit null "size=$size"
	many_peer "$t" ceiling
	rm -f "$img"
}

# many_peer TREE-NAME NAME: 1 and 64 clients against the running server,
# recorded under NAME; stops the server.
many_peer() {
	many_conns "$SRV_URI" 1 >/dev/null	# warm-up
	local one many
	one=$(many_conns "$SRV_URI" 1)
	many=$(many_conns "$SRV_URI" 64)
	result many "$1" "$2" conns1_mbs "$one"
	result many "$1" "$2" conns64_mbs "$many"
	srv_stop
}
