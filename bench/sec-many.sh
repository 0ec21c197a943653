# SPDX-License-Identifier: MIT
# bench/sec-many.sh - section "many": aggregate sequential throughput of
# 64 concurrent clients (one connection each, fio's nbd engine, each its
# 1/64 of the export) against one client, and erofs-nbd's memory per
# connection.  Defines bench_many TREE-NAME TREE.

bench_many() {
	local t=$1 tree=$2 one many rss0 hwm
	note "many: tree $t: 1 vs 64 concurrent connections"
	srv_ours "$tree"
	many_conns "$SRV_URI" 1 >/dev/null	# warm-up
	one=$(many_conns "$SRV_URI" 1)
	rss0=$(srv_rss_kib "$SRV_PID" VmRSS)
	many=$(many_conns "$SRV_URI" 64)
	hwm=$(srv_rss_kib "$SRV_PID" VmHWM)
	srv_stop
	result many "$t" erofs-nbd conns1_mbs "$one"
	result many "$t" erofs-nbd conns64_mbs "$many"
	result mem "$t" erofs-nbd per_conn_kib "$(( (hwm - rss0) / 64 ))"
}
