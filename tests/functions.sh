# SPDX-License-Identifier: MIT
# tests/functions.sh - helpers shared by the integration tests (tests/test-*.sh).
# Source it after `set -euo pipefail`:
#
#	. "$(dirname "$0")/functions.sh"
#
# Stable API (tests/test-vm.sh and bench/ use it too; keep it compatible):
#
#   requires CMD [ARG...]  With only CMD: skip (exit 77) unless CMD is on
#                          $PATH.  With ARGs: run CMD ARG... quietly and skip
#                          unless it succeeds.  Prints "SKIP: <test>: ...".
#   requires_root          skip unless running as root.
#   skip "why"             print "SKIP: <test>: why" and exit 77.
#   cleanup_fn CMD [ARG...]  register a command to run when the script exits
#                          (normally or on a signal); they run last-registered
#                          first, each once, failures ignored.
#   tmpdir                 create a fresh directory under ${TMPDIR:-/tmp},
#                          removed on exit; its path is left in $T.  Call it
#                          in the main shell, not in $(...), so that the
#                          cleanup is registered.
#   start_server DIR [ARG...]
#                          start "$EROFS_NBD" -f --export DIR --unix SOCK
#                          ARG... in the background (--unix is left out when
#                          ARG has --tcp) and wait, at most
#                          $SERVER_START_TIMEOUT seconds (default 120), for
#                          the URI line on its stdout.  Sets and exports
#                          SRV_URI (nbd+unix:///?socket=... or nbd://...),
#                          SRV_PID, SRV_SOCK (empty for TCP) and SRV_LOG (the
#                          server's stderr).  Fails the test if the server
#                          exits or prints nothing in time.  The server is
#                          stopped on exit.  One server at a time per set of
#                          SRV_* variables; save them to run several.
#   stop_server [PID]      send SIGTERM to the server (default $SRV_PID), wait
#                          at most 10 s (then SIGKILL) and return its exit
#                          status (0 expected; 125 when it exited 0 but its
#                          stderr has a sanitizer report).
#   server_alive [PID]     succeed if the server process still runs.
#   fail "msg" [EXPECTED ACTUAL]
#                          print "FAIL: <test>: msg" (and expected/actual lines, plus
#                          the tail of $SRV_LOG if a server ran) and exit 1.
#   check "what"           print "CHECK: [elapsed] what" (progress in the log).
#   ok "what"              print "ok: what".
#   mount_image IMG MNT    mount an EROFS image read-only (loop), unmounted
#                          on exit.
#   nbdfuse_start URI DIR  expose the export as DIR/nbd with nbdfuse -r
#                          (bounded wait), unmounted on exit.
#   use_asan_server        point EROFS_NBD at the ASan+UBSan build of the
#                          server, whatever O is (the soak and fault tests
#                          run it): $EROFS_NBD itself if it is one, else
#                          build-asan/erofs-nbd, made first with `make
#                          SANITIZE=1` (a no-op when it is up to date).
#                          Sets ASAN_OPTIONS for servers: leaks are errors,
#                          a small quarantine.
#   server_sockets [PID]   print how many sockets the server holds open
#                          (listeners + connections; source files may stay
#                          open in its fd cache, so only sockets count).
#   wait_server_sockets N [PID]
#                          wait (at most 10 s) until the server holds at
#                          most N sockets; fails (returns 1) otherwise.
#   export_uri NAME [URI]  print URI (default $SRV_URI) naming export NAME
#                          instead: nbd+unix:///NAME?socket=... or
#                          nbd://HOST:PORT/NAME.  The default export "" is
#                          the GPT disk; the EROFS alone is "root":
#                          SRV_URI=$(export_uri root).
#   cached_build DIR FN [ARG...]
#                          make sure DIR, a cache kept across tests and runs
#                          (/var/cache/erofs-nbd-tests/...), is complete:
#                          under an flock on DIR.lock (one builder at a time,
#                          also across parallel runs; at most 30 min of
#                          waiting), unless DIR.done exists and DIR is a
#                          directory, remove DIR and DIR.tmp and run
#                          FN DIR.tmp ARG..., which fills DIR.tmp (or calls
#                          skip / fail); then DIR.tmp becomes DIR and
#                          DIR.done is written.  A build that was cut short
#                          leaves no DIR.done, so the next caller starts over.
#   find_host_kernel       set kernel (a path) and kver to the newest readable
#                          /boot/vmlinuz-*-amd64 whose modules are installed
#                          (Debian's linux-image-amd64), for the tests that
#                          boot a VM.  Returns 1 if none.
#   fetch_debs DIR PKG...  apt-get download Debian's packages PKG... and unpack
#                          them (dpkg-deb -x) in DIR/root, the download's
#                          output in DIR.log (DIR without .tmp); skips when
#                          the download fails.  A cached_build FN.
#   disk_root_offset IMG   print the byte offset of the partition named
#                          "root" in the GPT disk image IMG (sfdisk).
#   show_console LOG OUT WHAT
#                          print a guest's serial console LOG (CRs and ANSI
#                          escapes removed) under "--- serial console (WHAT)
#                          ---", then QEMU's output OUT, indented.
#   arm64_pkgs             Debian's arm64 kernel (modules.dep made by
#                          depmod), busybox-static and systemd-boot-efi,
#                          fetched with apt-get download and unpacked once
#                          per machine (cached_build) in
#                          /var/cache/erofs-nbd-tests/arm64-pkgs/root; sets
#                          ARM64_ROOT, ARM64_KVER and ARM64_KERNEL (an
#                          uncompressed Image).  Skips without dpkg's arm64
#                          architecture (make deps adds it) or the packages.
#
# Variables: EROFS_NBD (the binary; tests/run.sh sets it, default
# build/erofs-nbd), TESTS_DIR (this folder), TEST_NAME.

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=$(basename "$0" .sh)
: "${EROFS_NBD:=$TESTS_DIR/../build/erofs-nbd}"
export EROFS_NBD

skip()
{
	echo "SKIP: $TEST_NAME: $*"
	exit 77
}

requires()
{
	if [ $# -eq 1 ]; then
		command -v "$1" >/dev/null 2>&1 || skip "'$1' not found"
	else
		"$@" >/dev/null 2>&1 </dev/null || skip "'$*' failed"
	fi
}

requires_root()
{
	[ "$(id -u)" = 0 ] || skip "needs root"
}

check()
{
	echo "CHECK: [${SECONDS}s] $*"
}

ok()
{
	echo "ok: $*"
}

fail()
{
	echo "FAIL: $TEST_NAME: $1" >&2
	if [ $# -ge 3 ]; then
		echo "  expected: $2" >&2
		echo "  actual:   $3" >&2
	fi
	if [ -n "${SRV_LOG:-}" ] && [ -s "$SRV_LOG" ]; then
		echo "--- last lines of the server's stderr ($SRV_LOG):" >&2
		tail -n 20 "$SRV_LOG" >&2
	fi
	exit 1
}

# Cleanups are kept as eval'able strings, run in reverse order.
_cleanups=()
cleanup_fn()
{
	local q
	q=$(printf '%q ' "$@")
	_cleanups+=("$q")
}

_run_cleanups()
{
	local rc=$? i
	trap - EXIT INT TERM
	set +e
	for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
		eval "${_cleanups[i]}" >/dev/null 2>&1
	done
	_cleanups=()
	exit $rc
}
trap _run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmpdir()
{
	T=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-$TEST_NAME.XXXXXX")
	cleanup_fn rm -rf --one-file-system "$T"
}

server_alive()
{
	local pid=${1:-${SRV_PID:-}}
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

_server_dir=
declare -A _srv_logs
start_server()
{
	local dir=$1 out tcp=0 a i
	shift
	for a in "$@"; do [ "$a" = --tcp ] && tcp=1; done
	if [ -z "$_server_dir" ]; then
		_server_dir=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-srv.XXXXXX")
		cleanup_fn rm -rf "$_server_dir"
	fi
	SRV_N=$(( ${SRV_N:-0} + 1 ))
	SRV_SOCK=
	out=$_server_dir/out.$SRV_N
	SRV_LOG=$_server_dir/log.$SRV_N
	if [ $tcp = 1 ]; then
		"$EROFS_NBD" -f --export "$dir" "$@" >"$out" 2>"$SRV_LOG" &
	else
		SRV_SOCK=$_server_dir/sock.$SRV_N
		"$EROFS_NBD" -f --export "$dir" --unix "$SRV_SOCK" "$@" \
			>"$out" 2>"$SRV_LOG" &
	fi
	SRV_PID=$!
	_srv_logs[$SRV_PID]=$SRV_LOG
	cleanup_fn stop_server "$SRV_PID"
	SRV_URI=
	for ((i = 0; i < ${SERVER_START_TIMEOUT:-120} * 10; i++)); do
		if [ -s "$out" ] && SRV_URI=$(grep -m1 '^nbd' "$out"); then
			break
		fi
		if ! server_alive "$SRV_PID"; then
			wait "$SRV_PID" && a=0 || a=$?
			fail "server exited ($a) before printing its URI: $EROFS_NBD -f --export $dir $*"
		fi
		sleep 0.1
	done
	[ -n "$SRV_URI" ] || fail "server printed no URI within ${SERVER_START_TIMEOUT:-120} s"
	export SRV_URI SRV_PID SRV_SOCK SRV_LOG
	echo "server $SRV_PID serving '$dir' at $SRV_URI"
}

stop_server()
{
	local pid=${1:-${SRV_PID:-}} i rc
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "server $pid ignored SIGTERM for 10 s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid" && rc=0 || rc=$?
	# A sanitizer build (make SANITIZE=1) reports errors on stderr.
	local log=${_srv_logs[$pid]:-}
	if [ $rc = 0 ] && [ -n "$log" ] &&
		grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$log"; then
		echo "server $pid: sanitizer report in $log:" >&2
		grep -m5 -E 'Sanitizer|runtime error:' "$log" >&2
		rc=125
	fi
	return $rc
}

mount_image()
{
	local img=$1 mnt=$2
	mkdir -p "$mnt"
	timeout 60 mount -t erofs -o ro,loop "$img" "$mnt" ||
		fail "mount -t erofs -o ro,loop $img $mnt failed"
	cleanup_fn _umount "$mnt"
}

_umount()
{
	umount "$1" 2>/dev/null || umount -l "$1"
}

nbdfuse_start()
{
	local uri=$1 dir=$2 i
	mkdir -p "$dir"
	nbdfuse -r "$dir" "$uri" &
	local pid=$!
	cleanup_fn kill "$pid"
	cleanup_fn fusermount3 -u -z "$dir"
	for ((i = 0; i < 300; i++)); do
		[ -e "$dir/nbd" ] && return 0
		kill -0 "$pid" 2>/dev/null || fail "nbdfuse -r $dir $uri exited"
		sleep 0.1
	done
	fail "nbdfuse did not expose $dir/nbd within 30 s"
}

use_asan_server()
{
	local top
	top=$(cd "$TESTS_DIR/.." && pwd)
	if ! ldd "$EROFS_NBD" 2>/dev/null | grep -q libasan; then
		check "building the sanitizer build (make SANITIZE=1) for this test"
		make -C "$top" -j2 --no-print-directory SANITIZE=1 build-asan/erofs-nbd \
			>/dev/null || fail "make SANITIZE=1 failed"
		EROFS_NBD=$top/build-asan/erofs-nbd
	fi
	ldd "$EROFS_NBD" | grep -q libasan || fail "$EROFS_NBD is not a sanitizer build"
	export EROFS_NBD
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=16:abort_on_error=0}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
}

server_sockets()
{
	local pid=${1:-$SRV_PID}
	find "/proc/$pid/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -c '^socket:' || true
}

wait_server_sockets()
{
	local n=$1 pid=${2:-$SRV_PID} i
	for ((i = 0; i < 100; i++)); do
		[ "$(server_sockets "$pid")" -le "$n" ] && return 0
		sleep 0.1
	done
	return 1
}

export_uri()
{
	local name=$1 uri=${2:-$SRV_URI} hostport
	case $uri in
	nbd+unix://*)
		echo "nbd+unix:///$name?${uri#*\?}" ;;
	*)
		hostport=${uri#*://}
		echo "${uri%%://*}://${hostport%%/*}/$name" ;;
	esac
}

cached_build()
{
	local dir=$1 fn=$2 fd
	shift 2
	mkdir -p "$(dirname "$dir")"
	exec {fd}>"$dir.lock"
	timeout 1800 flock "$fd" || fail "timed out waiting for $dir.lock"
	if [ ! -e "$dir.done" ] || [ ! -d "$dir" ]; then
		rm -f "$dir.done"
		rm -rf --one-file-system "$dir.tmp" "$dir"
		"$fn" "$dir.tmp" "$@"
		[ -d "$dir.tmp" ] || fail "$fn left no $dir.tmp"
		mv "$dir.tmp" "$dir"
		touch "$dir.done"
	fi
	exec {fd}>&-
}

find_host_kernel() {
	local k kv
	kernel= kver=
	for k in $(printf "%s\n" /boot/vmlinuz-*-amd64 | sort -V -r); do
		kv=${k#/boot/vmlinuz-}
		if [ -r "$k" ] && [ -f "/lib/modules/$kv/modules.dep" ]; then
			kernel=$k kver=$kv
			return 0
		fi
	done
	return 1
}

fetch_debs()
{
	local dir=$1 d
	shift
	check "fetching and unpacking $* (once)"
	mkdir -p "$dir/debs" "$dir/root"
	(cd "$dir/debs" && timeout 900 apt-get download "$@") >"${dir%.tmp}.log" 2>&1 ||
		{ tail -n 5 "${dir%.tmp}.log"; skip "apt-get download of $* failed"; }
	for d in "$dir"/debs/*.deb; do
		dpkg-deb -x "$d" "$dir/root"
	done
	rm -rf "$dir/debs"
}

disk_root_offset()
{
	sfdisk --json "$1" | python3 -c '
import json, sys
parts = json.load(sys.stdin)["partitiontable"]["partitions"]
print([p for p in parts if p.get("name") == "root"][0]["start"] * 512)'
}

show_console()
{
	echo "--- serial console ($3) ---"
	tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?=]*[A-Za-z]//g; s/^/  /'
	echo "--- qemu ---"
	sed 's/^/  /' "$2"
	echo "--- end ---"
}

_arm64_fetch()
{
	local kpkg kv
	kpkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -n1)
	[ -n "$kpkg" ] || skip "no linux-image-arm64:arm64 in apt's lists (apt-get update)"
	fetch_debs "$1" "$kpkg:arm64" busybox-static:arm64 systemd-boot-efi:arm64
	kv=$(basename "$(ls -d "$1"/root/lib/modules/*)")
	depmod -b "$1/root" "$kv"
}

arm64_pkgs()
{
	local pkgs=/var/cache/erofs-nbd-tests/arm64-pkgs
	requires depmod
	requires dpkg-deb
	dpkg --print-foreign-architectures | grep -qx arm64 ||
		skip "dpkg has no arm64 architecture (make deps)"
	cached_build "$pkgs" _arm64_fetch
	ARM64_ROOT=$pkgs/root
	ARM64_KVER=$(basename "$(ls -d "$ARM64_ROOT"/lib/modules/*)")
	ARM64_KERNEL=$ARM64_ROOT/boot/vmlinuz-$ARM64_KVER
	[ -r "$ARM64_KERNEL" ] || fail "no arm64 kernel $ARM64_KERNEL"
	# The arm64 Image header: "ARM\x64" at 0x38 (uncompressed, as vfkit needs).
	[ "$(od -An -c -j56 -N3 "$ARM64_KERNEL" | tr -d ' ')" = ARM ] ||
		fail "$ARM64_KERNEL is not an uncompressed arm64 Image"
}
