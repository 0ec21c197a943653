#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: two soaks of 90 s each, in the sanitizer build
# tests/test-soak.sh - 64 clients for a minute, 10,000 connections, no
# leak, no wrong byte.
#
# The server is the ASan+UBSan build (use_asan_server), once with the
# io_uring loop and once with --no-io-uring, serving a tree with all three
# exports (disk, root, esp: a kernel and systemd-boot are in it) and a few
# thousand source files.  For each loop:
#
#  1. 64 connections spread over the three exports, each keeping 16
#     NBD_CMD_READs of 512 B to 256 KiB at random offsets in flight for
#     60 s (tests/soak/nbd-soak.c, libnbd); every reply is compared with
#     the export's --write-image, and any error fails the test (no client
#     may see an error it did not cause).  Once every client is gone, the
#     server's heap in use (SIGUSR1's report).
#  2. 10,000 connect / handshake / disconnect cycles, then 64 clients
#     again for 20 s.  Once they are gone, the heap in use must be step
#     1's, give or take 64 KiB: 10,000 connections that each left 7 bytes
#     behind would be more than that.  RSS is printed, not checked: what
#     moves it is the allocator's caches (ASan's quarantine and per-thread
#     bookkeeping, glibc's cached thread stacks), not the server's memory.
#     Measured here over 40,000 cycles without --io-uring: RSS 88 -> 97 MB,
#     heap in use 1,651,474 -> 1,650,834 bytes.
#  3. No connection is left open in the server, it stops cleanly on
#     SIGTERM, and the sanitizers report nothing (leaks included).

# Knobs: EROFS_NBD_SOAK_SECONDS (step 1, default 60), EROFS_NBD_SOAK_CYCLES
# (default 10000).
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root	# mktree.sh makes devices and chowns
requires python3
soak=${EROFS_NBD_SOAK:-$PWD/${O:-build}/tests/nbd-soak}
[ -x "$soak" ] || fail "no soak client at $soak (make check builds it)"
use_asan_server
seconds=${EROFS_NBD_SOAK_SECONDS:-60}
cycles=${EROFS_NBD_SOAK_CYCLES:-10000}

tmpdir
src=$T/src
check "building the tree (all three exports, a few thousand files)"
rc=0
"$TESTS_DIR/soak/mktree.sh" "$src" || rc=$?
[ $rc = 77 ] && skip "no kernel or systemd-boot for the ESP"
[ $rc = 0 ] || fail "tests/soak/mktree.sh failed"
for e in disk root esp; do
	"$EROFS_NBD" --export "$src" --image-export "$e" --write-image "$T/$e.img" 2>/dev/null ||
		fail "--write-image of the $e export failed"
done

# soak_args: the three exports of the running server and their references.
soak_args()
{
	local e
	for e in disk root esp; do
		printf '%s\n' --export "$(export_uri "$e")" --ref "$T/$e.img"
	done
}

rss_kib()
{
	awk '/^VmRSS:/ { print $2 }' "/proc/$SRV_PID/status"
}

# heap_bytes: the server's heap in use, from its SIGUSR1 report (main.c).
heap_bytes()
{
	local before n i
	before=$(grep -c "heap in use:" "$SRV_LOG" || true)
	kill -USR1 "$SRV_PID"
	for ((i = 0; i < 100; i++)); do
		n=$(grep -c "heap in use:" "$SRV_LOG" || true)
		[ "$n" -gt "$before" ] && break
		sleep 0.1
	done
	[ "$n" -gt "$before" ] || fail "no 'heap in use' line 10 s after SIGUSR1"
	sed -n 's/^erofs-nbd: heap in use: \([0-9]*\) bytes$/\1/p' "$SRV_LOG" | tail -n 1
}

for mode in io_uring no-io-uring; do
	if [ $mode = io_uring ]; then
		start_server "$src"
	else
		start_server "$src" --no-io-uring
	fi
	mapfile -t args < <(soak_args)
	socks0=$(server_sockets)

	check "[$mode] 64 clients x 16 reads in flight for $seconds s, every byte checked"
	timeout $((seconds + 120)) "$soak" --conns 64 --depth 16 --seconds "$seconds" \
		--seed 1 "${args[@]}" || fail "[$mode] the soak failed (lines above)"
	server_alive || fail "[$mode] the server died during the soak"
	wait_server_sockets "$socks0" || fail "[$mode] connections left open after the soak" \
		"$socks0 sockets (the listeners)" "$(server_sockets)"
	heap1=$(heap_bytes) rss1=$(rss_kib)
	echo "[$mode] after the first minute: heap in use $heap1 bytes, RSS $rss1 KiB"

	check "[$mode] $cycles connect/handshake/disconnect cycles, then 64 clients for 20 s"
	timeout 600 "$soak" --conns 64 --depth 16 --seconds 20 --cycles "$cycles" \
		--seed 2 "${args[@]}" || fail "[$mode] the second soak failed (lines above)"

	check "[$mode] no connection left open in the server"
	wait_server_sockets "$socks0" || fail "[$mode] connections left open in the server" \
		"$socks0 sockets (the listeners)" "$(server_sockets)"
	heap2=$(heap_bytes) rss2=$(rss_kib)
	echo "[$mode] at the end: heap in use $heap2 bytes, RSS $rss2 KiB"
	[ "$heap2" -le $((heap1 + 65536)) ] ||
		fail "[$mode] the heap in use grew by more than 64 KiB over $cycles connections" \
			"<= $((heap1 + 65536)) bytes" "$heap2 bytes"
	stop_server || fail "[$mode] the server did not stop cleanly (exit $?; sanitizer report above?)"
	ok "[$mode] soak: 0 errors, heap in use $heap1 -> $heap2 bytes (RSS $rss1 -> $rss2 KiB)"
done
