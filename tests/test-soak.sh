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
#     may see an error it did not cause).  Then the server's RSS.
#  2. 10,000 connect / handshake / disconnect cycles, then 64 clients
#     again for 20 s.  The server's RSS now must be within 10% of step 1's
#     (it holds no per-connection memory once a client has gone).
#  3. No connection is left open in the server, it stops cleanly on
#     SIGTERM, and the sanitizers report nothing (leaks included).
#
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
	rss1=$(rss_kib)
	echo "[$mode] RSS after the first minute: $rss1 KiB"

	check "[$mode] $cycles connect/handshake/disconnect cycles, then 64 clients for 20 s"
	timeout 600 "$soak" --conns 64 --depth 16 --seconds 20 --cycles "$cycles" \
		--seed 2 "${args[@]}" || fail "[$mode] the second soak failed (lines above)"
	rss2=$(rss_kib)
	echo "[$mode] RSS at the end: $rss2 KiB"
	[ "$rss2" -le $((rss1 * 110 / 100)) ] ||
		fail "[$mode] RSS grew by more than 10% after the first minute" \
			"<= $((rss1 * 110 / 100)) KiB" "$rss2 KiB"

	check "[$mode] no connection left open in the server"
	wait_server_sockets "$socks0" || fail "[$mode] connections left open in the server" \
		"$socks0 sockets (the listeners)" "$(server_sockets)"
	stop_server || fail "[$mode] the server did not stop cleanly (exit $?; sanitizer report above?)"
	ok "[$mode] soak: 0 errors, RSS $rss1 -> $rss2 KiB"
done
