#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-malformed.sh - misbehaving NBD clients neither crash nor wedge
# the server.
#
# Runs every scenario of tests/nbd_evil.py (raw-socket clients: bad client
# flags, wrong option magic, 4 GiB option length, unknown options followed
# by a working GO, truncated options, garbage request magic, huge and
# out-of-range requests, WRITE -> EPERM with the payload consumed, unknown
# commands -> EINVAL, pipelined requests with distinct cookies, structured
# reply chunks checked strictly, READ with DF, BLOCK_STATUS, INFO/LIST/
# LIST_META_CONTEXT field by field, an endless option flood, 60 clients
# at once, DISC with requests in flight, abrupt closes) against one
# server, with both the io_uring loop and --no-io-uring.  After each
# scenario the server must still be running and a well-behaved client
# (nbdinfo, and nbdcopy at the end) must still get the right bytes; at the
# end no connection may be left open in the server.  Then a client that
# stalls in the handshake must be dropped after --handshake-timeout 2, by
# either loop (each keeps its own handshake deadline), while one that
# finished its handshake and then idled past the deadline is still served.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root	# mktree.sh makes devices and chowns
requires python3
requires nbdinfo
requires nbdcopy
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"

tmpdir
src=$T/src
check "building a small tree (plus a 40 MiB file for 32 MiB reads)"
"$TESTS_DIR/mktree.sh" --small "$src"
head -c 40M /dev/urandom >"$src/big-40m"
"$EROFS_NBD" --export "$src" --image-export root --write-image "$T/ref.img" || fail "--write-image failed"
size=$(stat -c %s "$T/ref.img")

scenarios=$(python3 "$TESTS_DIR/nbd_evil.py" --list | awk '$1 != "stall" {print $1}')

healthy()
{
	local why=$1 got
	server_alive || fail "the server died after: $why"
	got=$(timeout 30 nbdinfo --size "$SRV_URI") ||
		fail "a well-behaved client (nbdinfo) failed after: $why"
	[ "$got" = "$size" ] || fail "nbdinfo --size after: $why" "$size" "$got"
}

# Sockets the server holds open (source files may stay open in its fd
# cache, so only connections count).
fdcount()
{
	find "/proc/$SRV_PID/fd" -mindepth 1 -printf '%l\n' | grep -c '^socket:' || true
}

for mode in io_uring no-io-uring; do
	if [ $mode = io_uring ]; then
		start_server "$src"
	else
		start_server "$src" --no-io-uring
	fi
	SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk
	healthy "start-up"
	fds0=$(fdcount)
	for s in $scenarios; do
		check "[$mode] $s"
		if ! timeout 120 python3 "$TESTS_DIR/nbd_evil.py" --unix "$SRV_SOCK" \
			--ref "$T/ref.img" "$s"; then
			fail "[$mode] scenario $s (see the FAIL line above)"
		fi
		healthy "$s"
	done
	check "[$mode] nbdcopy after all the abuse equals --write-image"
	timeout 120 nbdcopy "$SRV_URI" "$T/copy.img" || fail "nbdcopy failed after the abuse"
	cmp "$T/ref.img" "$T/copy.img" || fail "nbdcopy after the abuse differs"
	rm -f "$T/copy.img"

	check "[$mode] no connection (socket fd) leaked"
	fds1=
	for i in $(seq 50); do		# closes may still be in flight
		fds1=$(fdcount)
		[ "$fds1" -le $((fds0 + 1)) ] && break
		sleep 0.1
	done
	[ "$fds1" -le $((fds0 + 1)) ] ||
		fail "[$mode] open fds of the server before and after the scenarios" \
			"$fds0 (+1) sockets" "$fds1 sockets"
	rc=0
	stop_server || rc=$?
	[ $rc = 0 ] || fail "[$mode] exit status after SIGTERM" 0 "$rc"
	ok "[$mode] all scenarios; sockets $fds0 -> $fds1; exit 0"
done

for mode in io_uring no-io-uring; do
	check "[$mode] a stalled client is dropped after --handshake-timeout 2"
	if [ $mode = io_uring ]; then
		start_server "$src" --handshake-timeout 2
	else
		start_server "$src" --handshake-timeout 2 --no-io-uring
	fi
	SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk
	timeout 60 python3 "$TESTS_DIR/nbd_evil.py" --unix "$SRV_SOCK" --ref "$T/ref.img" \
		--stall-timeout 8 stall || fail "[$mode] scenario stall"
	healthy "stall"
	rc=0
	stop_server || rc=$?
	[ $rc = 0 ] || fail "[$mode] exit status after SIGTERM" 0 "$rc"
done

echo "PASS: $TEST_NAME"
