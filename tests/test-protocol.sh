#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-protocol.sh - erofs-nbd speaks NBD the way real clients expect.
#
# Against a served tree (tests/mktree.sh --small plus an 80 MiB file):
# nbdinfo --list shows the "root" export (the default export "" is the
# GPT disk, tests/test-disk.sh; here every client names "root"), --size matches the image,
# --is/--can report read-only and multi-conn; nbdinfo --map and qemu-img
# map report the holes of sparse files as zero; the whole export fetched
# by nbdcopy and by qemu-img convert (nbd+unix:///root) equals --write-image byte for byte; fio's nbd engine
# runs randread 4k/iodepth 32 and read 32m without errors, with io_uring
# and with --no-io-uring; 8 concurrent nbdcopy clients all get identical
# bytes; SIGTERM ends the server with 0, also while fio is reading;
# --tcp 127.0.0.1:0 serves the same bytes; --run runs a client with $uri
# and passes its exit status on (128 + N for a signal), with no $port
# without a TCP listener, and SIGTERM to the server reaches it; option
# values and combinations README.md does not allow are refused (exit 2);
# -v logs the start-up's time and CPU in a ready: line.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires nbdinfo
requires nbdcopy
requires python3
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"

tmpdir
src=$T/src
check "building a small tree"
"$TESTS_DIR/mktree.sh" --small "$src"
# Bigger than one 32 MiB request, so fio --bs=32m has room.
head -c 80M /dev/urandom >"$src/big-80m"
"$EROFS_NBD" --export "$src" --image-export root --write-image "$T/ref.img" || fail "--write-image failed"
size=$(stat -c %s "$T/ref.img")
echo "reference image: $size bytes"

start_server "$src" -v
SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk

# -v: what the start-up cost, before the URI (bench/image.sh reads it).
check "-v logs a ready: line with the start-up's time and CPU"
cpu=$(sed -n 's/^erofs-nbd: ready: [0-9.]* s since the walk began, \([0-9.]*\) s of CPU in all$/\1/p' \
	"$SRV_LOG")
[ -n "$cpu" ] || { cat "$SRV_LOG"; fail "no ready: line in the -v log"; }
awk -v c="$cpu" 'BEGIN { exit !(c > 0 && c < 60) }' || fail "ready: CPU time" "0 < s < 60" "$cpu"
ok "ready: $cpu s of CPU"

# --- nbdinfo -------------------------------------------------------------------------
check "nbdinfo --list shows the export 'root'"
timeout 30 nbdinfo --list "$SRV_URI" >"$T/list" || fail "nbdinfo --list failed"
cat "$T/list"
grep -q '^export="root":' "$T/list" || fail "nbdinfo --list: no export \"root\""

check "nbdinfo --size on 'root'"
got=$(timeout 30 nbdinfo --size "$SRV_URI") || fail "nbdinfo --size failed"
[ "$got" = "$size" ] || fail "nbdinfo --size (export root)" "$size" "$got"
root_uri="nbd+unix:///root?socket=$SRV_SOCK"
got=$(timeout 30 nbdinfo --size "$root_uri") || fail "nbdinfo --size $root_uri failed"
[ "$got" = "$size" ] || fail "nbdinfo --size (export root)" "$size" "$got"
[ $((size % 4096)) = 0 ] || fail "export size is not a multiple of 4096" "multiple of 4096" "$size"
if timeout 30 nbdinfo --size "nbd+unix:///no-such-export?socket=$SRV_SOCK" 2>/dev/null; then
	fail "a nonexistent export name was accepted"
fi
ok "size $size; unknown export refused"

check "nbdinfo --is readonly, --can multi-conn, not --can write"
timeout 30 nbdinfo --is readonly "$SRV_URI" || fail "export is not read-only"
timeout 30 nbdinfo --can multi-conn "$SRV_URI" || fail "export does not advertise multi-conn"
if timeout 30 nbdinfo --can write "$SRV_URI"; then fail "export claims to be writable"; fi
ok "read-only, multi-conn"

# check_map MAP.json FORMAT: the map (nbdinfo --map --json, or qemu-img map
# --output=json) covers the export and reports the sparse files' holes as
# zero and their data as data.
check_map()
{
	timeout 300 python3 - "$TESTS_DIR" "$src" "$T/ref.img" "$1" "$2" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
import erofs_reader
src, img_path, map_path, fmt = sys.argv[2:6]
img = erofs_reader.ErofsImage(img_path)
entries = img.walk()
extents = json.load(open(map_path))
if fmt == 'qemu':
    # qemu-img map: zero -> NBD_STATE_ZERO (2), no data -> NBD_STATE_HOLE (1)
    extents = [{'offset': e['start'], 'length': e['length'],
                'type': (2 if e['zero'] else 0) | (0 if e['data'] else 1)} for e in extents]
# The map must cover the export exactly, without gaps.
pos = 0
for e in extents:
    assert e['offset'] == pos, 'map gap/overlap at %d: %r' % (pos, e)
    pos += e['length']
assert pos == img.size, 'map covers %d bytes, export has %d' % (pos, img.size)

def status(lo, hi):
    """Types of all extents overlapping [lo, hi)."""
    return {e['type'] for e in extents if e['offset'] < hi and e['offset'] + e['length'] > lo}

def check_zero(path, flo, fhi):
    ino = entries[path.encode()]
    bad = []
    for foff, ioff, ln in img.extents(ino):
        lo, hi = max(flo, foff), min(fhi, foff + ln)
        if lo >= hi or ioff is None:
            continue
        ilo, ihi = ioff + lo - foff, ioff + hi - foff
        types = status(ilo, ihi)
        print('%s bytes %d..%d = image %d..%d: map types %s' % (path, lo, hi, ilo, ihi, sorted(types)))
        if any(not t & 2 for t in types):
            bad.append((path, lo, hi, sorted(types)))
    return bad

bs = img.bs
bad = check_zero('sparse/middle-holes', 2 * 4096, 4 << 20)
bad += check_zero('sparse/middle-holes', (4 << 20) + 8192, (8 << 20) - 4096)
bad += check_zero('sparse/all-hole', 0, 1 << 20)
# And data is not reported as zero where it is not.
ino = entries[b'sparse/middle-holes']
for foff, ioff, ln in img.extents(ino):
    if foff == 0:
        t = status(ioff, ioff + 4096)
        print('sparse/middle-holes first block: map types', sorted(t))
        if any(x & 2 for x in t):
            bad.append(('data block reported as zero', sorted(t)))
if bad:
    print('expected ZERO (type & 2) on every hole extent; actual:', bad)
    sys.exit(1)
EOF
}

check "nbdinfo --map: the holes of sparse/middle-holes and sparse/all-hole read as zero"
timeout 60 nbdinfo --map --json "$SRV_URI" >"$T/map.json" || fail "nbdinfo --map failed"
check_map "$T/map.json" nbdinfo || fail "base:allocation (nbdinfo --map) does not report the holes"
ok "holes are reported as zero"

# --- whole-export copies ----------------------------------------------------------------
check "nbdcopy of the export equals --write-image"
timeout 120 nbdcopy "$SRV_URI" "$T/copy.img" || fail "nbdcopy failed"
cmp "$T/ref.img" "$T/copy.img" || fail "nbdcopy output differs from --write-image"
rm -f "$T/copy.img"
timeout 120 nbdcopy --no-extents --connections=1 "$root_uri" "$T/copy.img" ||
	fail "nbdcopy --no-extents failed"
cmp "$T/ref.img" "$T/copy.img" || fail "nbdcopy --no-extents of export root differs"
rm -f "$T/copy.img"
ok "nbdcopy == --write-image"

if command -v qemu-img >/dev/null; then
	check "qemu-img info and convert (qemu's NBD client)"
	timeout 60 qemu-img info -f raw "$root_uri" | tee "$T/qinfo" || fail "qemu-img info failed"
	grep -q "virtual size: .*($size bytes)" "$T/qinfo" ||
		fail "qemu-img info: virtual size" "$size bytes" "$(grep 'virtual size' "$T/qinfo")"
	timeout 60 qemu-img map --output=json -f raw "$root_uri" >"$T/qmap.json" ||
		fail "qemu-img map failed"
	check_map "$T/qmap.json" qemu || fail "qemu-img map does not report the holes as zero"
	timeout 120 qemu-img convert -f raw -O raw "$root_uri" "$T/q.img" || fail "qemu-img convert failed"
	cmp "$T/ref.img" "$T/q.img" || fail "qemu-img convert of nbd+unix:///root differs"
	rm -f "$T/q.img"
		ok "qemu-img convert == --write-image"
else
	echo "NOTE: no qemu-img; qemu client not tested"
fi

# --- many clients at once ------------------------------------------------------------------
check "8 concurrent nbdcopy clients get identical bytes"
pids=()
for i in 1 2 3 4 5 6 7 8; do
	timeout 120 nbdcopy "$SRV_URI" "$T/par$i.img" &
	pids+=($!)
done
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || fail "concurrent nbdcopy #$((i + 1)) failed"
done
for i in 1 2 3 4 5 6 7 8; do
	cmp "$T/ref.img" "$T/par$i.img" || fail "concurrent nbdcopy #$i got different bytes"
	rm -f "$T/par$i.img"
done
ok "8 concurrent copies identical"

# --- fio -------------------------------------------------------------------------------------
run_fio()
{
	local uri=$1 what=$2
	shift 2
	check "fio nbd $what: $*"
	if ! timeout 60 fio --name=t --ioengine=nbd --uri="$uri" "$@" \
		--output="$T/fio.out" >/dev/null 2>&1; then
		cat "$T/fio.out" 2>/dev/null
		fail "fio $* failed"
	fi
	grep -E 'err= *[1-9]|error' "$T/fio.out" && fail "fio reported errors: $*"
	grep -E '^ +READ:' "$T/fio.out" || fail "fio printed no READ summary"
}
if command -v fio >/dev/null && fio --enghelp=nbd >/dev/null 2>&1; then
	run_fio "$SRV_URI" "(io_uring server)" --rw=randread --bs=4k --iodepth=32 --runtime=5 --time_based
	run_fio "$SRV_URI" "(io_uring server)" --rw=read --bs=32m --iodepth=4 --runtime=3 --time_based
	server_alive || fail "server died under fio"
	stop_server || fail "server exited non-zero after SIGTERM"

	start_server "$src" --no-io-uring
	SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk
	run_fio "$SRV_URI" "(--no-io-uring)" --rw=randread --bs=4k --iodepth=32 --runtime=5 --time_based
	run_fio "$SRV_URI" "(--no-io-uring)" --rw=read --bs=32m --iodepth=4 --runtime=3 --time_based
	timeout 120 nbdcopy "$SRV_URI" "$T/copy.img" || fail "nbdcopy (--no-io-uring) failed"
	cmp "$T/ref.img" "$T/copy.img" || fail "nbdcopy with --no-io-uring differs"
	rm -f "$T/copy.img"
	ok "--no-io-uring serves the same bytes"
else
	echo "NOTE: fio without the nbd engine; fio runs skipped"
fi
server_alive || fail "server died"
rc=0
stop_server || rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM" 0 "$rc"

# --- SIGTERM while clients are busy -------------------------------------------------------
if command -v fio >/dev/null && fio --enghelp=nbd >/dev/null 2>&1; then
	for mode in io_uring no-io-uring; do
	check "[$mode] SIGTERM while fio reads: the server exits 0 promptly, the client does not hang"
	if [ $mode = io_uring ]; then start_server "$src"; else start_server "$src" --no-io-uring; fi
	SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk
	timeout 60 fio --name=t --ioengine=nbd --uri="$SRV_URI" --rw=randread --bs=64k \
		--iodepth=16 --runtime=30 --time_based --output="$T/fio-term.out" >/dev/null 2>&1 &
	fio_pid=$!
	sleep 2
	t0=$SECONDS
	rc=0
	stop_server || rc=$?
	[ $rc = 0 ] || fail "exit status after SIGTERM under load" 0 "$rc"
	rc=0
	wait $fio_pid || rc=$?
	[ $rc != 124 ] || fail "fio hung after the server stopped"
	ok "[$mode] server stopped in $((SECONDS - t0)) s under load; fio exited $rc"
	done
fi

# --- TCP -------------------------------------------------------------------------------------
check "--tcp 127.0.0.1:0"
start_server "$src" --tcp 127.0.0.1:0
[[ $SRV_URI =~ ^nbd://127\.0\.0\.1:[0-9]+/?$ ]] ||
	fail "URI printed for --tcp 127.0.0.1:0" "nbd://127.0.0.1:PORT/" "$SRV_URI"
[[ $SRV_URI =~ :0/?$ ]] && fail "the URI names port 0, not the port picked" "a real port" "$SRV_URI"
SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk
timeout 120 nbdcopy "$SRV_URI" "$T/tcp.img" || fail "nbdcopy over TCP failed"
cmp "$T/ref.img" "$T/tcp.img" || fail "export over TCP differs"
rm -f "$T/tcp.img"
rc=0
stop_server || rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM (tcp)" 0 "$rc"
ok "TCP export identical"

# --- --run -----------------------------------------------------------------------------------
check "--run CMD gets \$uri and its exit status is passed on"
got=$(timeout 60 "$EROFS_NBD" --export "$src" --unix "$T/run.sock" \
	--run 'nbdinfo --size "${uri%%\?*}root?${uri#*\?}"') ||
	fail "--run 'nbdinfo --size <\$uri naming root>' failed"
[ "$got" = "$size" ] || fail "--run output" "$size" "$got"
rc=0
timeout 60 "$EROFS_NBD" --export "$src" --unix "$T/run2.sock" --run 'exit 3' >/dev/null || rc=$?
[ $rc = 3 ] || fail "--run 'exit 3' exit status" 3 "$rc"
# $unixsocket and $port are the server's, whatever the caller's
# environment held; a vsock listener has no $port.
got=$(unixsocket=/bogus port=1 timeout 60 "$EROFS_NBD" --export "$src" --esp no \
	--tcp 127.0.0.1:0 --unix "$T/run3.sock" --run 'echo "$unixsocket $port $uri"') ||
	fail "--run with \$unixsocket and \$port set by the caller failed"
read -r us port uri <<<"$got"
[ "$us" = "$T/run3.sock" ] || fail "--run: \$unixsocket" "$T/run3.sock" "$us"
[ "$uri" = "nbd://127.0.0.1:$port/" ] || fail "--run: \$port against \$uri" "nbd://127.0.0.1:$port/" "$uri"
ok "--run works; \$unixsocket and \$port are the server's"

check "--run: no \$port without TCP; a signal's status; SIGTERM to the server reaches CMD"
# The caller's $port is not passed on when there is no TCP listener.
got=$(port=1 timeout 60 "$EROFS_NBD" --export "$src" --esp no --unix "$T/run4.sock" \
	--run 'echo "[${port-unset}]"') || fail "--run with only --unix failed"
[ "$got" = "[unset]" ] || fail "--run without --tcp: \$port" "[unset]" "$got"
rc=0
timeout 60 "$EROFS_NBD" --export "$src" --esp no --unix "$T/run5.sock" \
	--run 'kill -KILL $$' >/dev/null || rc=$?
[ $rc = 137 ] || fail "--run CMD killed by SIGKILL: exit status" 137 "$rc"
# The server passes its SIGTERM on to CMD (whose signals it unblocked),
# waits for it and exits with its status.
"$EROFS_NBD" --export "$src" --esp no --unix "$T/run6.sock" \
	--run "touch '$T/run6.started'; exec sleep 60" >/dev/null 2>"$T/run6.err" &
run_pid=$!
cleanup_fn kill "$run_pid"
for ((i = 0; i < 600; i++)); do [ -e "$T/run6.started" ] && break; sleep 0.1; done
[ -e "$T/run6.started" ] || fail "--run 'exec sleep 60' did not start"
sleep 0.5	# from touch to exec
t0=$SECONDS
kill -TERM "$run_pid"
rc=0
# Running: not a zombie waiting for wait below.
running() { grep -qs '^State:[[:space:]]*[^Z]' "/proc/$1/status"; }
for ((i = 0; i < 100; i++)); do running "$run_pid" || break; sleep 0.1; done
running "$run_pid" && fail "the server with --run CMD still runs 10 s after SIGTERM"
wait "$run_pid" || rc=$?
[ $rc = 143 ] || fail "SIGTERM to the server while --run CMD runs: exit status" 143 "$rc"
ok "\$port unset, 137 for SIGKILL, SIGTERM passed on (exit 143 in $((SECONDS - t0)) s)"

check "usage errors: exit 2"
# usage_rc ARG...: erofs-nbd exits 2 (bad usage) with ARG..., serving nothing.
usage_rc()
{
	local rc=0
	timeout 30 "$EROFS_NBD" "$@" >/dev/null 2>"$T/usage.err" </dev/null || rc=$?
	[ $rc = 2 ] || fail "erofs-nbd $*: exit status" 2 "$rc: $(cat "$T/usage.err")"
}
usage_rc --export "$src" --handshake-timeout 0 --unix "$T/u.sock"
usage_rc --export "$src" --handshake-timeout 86401 --unix "$T/u.sock"
usage_rc --export "$src" --export "$T" --unix "$T/u.sock"
usage_rc --export "$src" --write-image "$T/u.img" --unix "$T/u.sock"
usage_rc --export "$src" --write-image "$T/u.img" --tcp 0
usage_rc --export "$src" --label 0123456789abcdef --write-image "$T/u.img"
SOURCE_DATE_EPOCH=yesterday usage_rc --export "$src" --write-image "$T/u.img"
usage_rc --export "$src" --aufs-whiteouts --write-image "$T/u.img"
usage_rc --export "$src" --storage-root "$T" --write-image "$T/u.img"
usage_rc --export "$src" --userxattr --write-image "$T/u.img"
usage_rc --export "$src" stray-argument --write-image "$T/u.img"
[ ! -e "$T/u.img" ] || fail "a usage error wrote an image"
[ ! -e "$T/u.sock" ] || fail "a usage error left a socket"
ok "bad --handshake-timeout, --export twice, --write-image with a listener, a 16-byte --label, bad SOURCE_DATE_EPOCH, options without the tree they go with, a stray argument"

echo "PASS: $TEST_NAME"
