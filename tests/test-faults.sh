#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: three fault campaigns under load, both loops, sanitizer build
# tests/test-faults.sh - the server under load while things go wrong.
#
# The server is the ASan+UBSan build (use_asan_server), with the io_uring
# loop and with --no-io-uring, serving tests/soak/mktree.sh's tree; load
# is tests/soak/nbd-soak.c: clients pipelining random READs on the disk
# and root exports, every successful reply compared byte for byte with
# --write-image of the tree as it was when the server started.
#
# 1. The tree changes under load.  Files are truncated, grown, rewritten
#    in place, rewritten with their mtime set back (utimensat), replaced
#    by rename, made unreadable, deleted, and a parent directory is
#    swapped for a symlink to a directory outside the tree that holds
#    files of the same names and sizes.  Reads that touch the blocks of
#    those files may fail with EIO; any other failure, and any byte that
#    differs from the original tree (new bytes, bytes from outside), fails
#    the test.  Afterwards the files whose bytes changed (truncated, grown,
#    rewritten, set back) must read as EIO, each with a log line naming
#    it, and the rest of the export still reads correctly.
# 2. Clients that misbehave while others work: one stops reading with its
#    socket buffers full (tests/soak/nbd_faults.py stall), others hang up
#    in the middle of replies, 200 times (cut); 32 well-behaved clients
#    must see no error meanwhile, and no connection may be left behind.
# 3. A low open-file limit: the server runs with RLIMIT_NOFILE 64 (soft
#    and hard) while 64 clients read; none may see an error (connections
#    may wait to be accepted), and afterwards a full nbdcopy still equals
#    the reference.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root	# mktree.sh makes devices and chowns
requires python3
requires nbdcopy
requires prlimit
requires sfdisk
soak=${EROFS_NBD_SOAK:-$PWD/${O:-build}/tests/nbd-soak}
[ -x "$soak" ] || fail "no soak client at $soak (make check builds it)"
use_asan_server
faults=$TESTS_DIR/soak/nbd_faults.py

tmpdir

# new_tree: a fresh copy of the soak tree in $src and its reference images
# ($T/root.img, $T/disk.img), and $root_off, the byte offset of the EROFS
# partition in the disk.
new_tree()
{
	local rc=0
	src=$T/src
	rm -rf --one-file-system "$src" "$T/outside"
	"$TESTS_DIR/soak/mktree.sh" "$src" >/dev/null || rc=$?
	[ $rc = 77 ] && skip "no kernel or systemd-boot for the ESP"
	[ $rc = 0 ] || fail "tests/soak/mktree.sh failed"
	for e in disk root; do
		"$EROFS_NBD" --export "$src" --image-export "$e" --write-image "$T/$e.img" \
			2>/dev/null || fail "--write-image of the $e export failed"
	done
	root_off=$(disk_root_offset "$T/disk.img")
}

# ranges FILE PATH...: the blocks of the root export and of the disk that
# hold PATH's data, appended to FILE.root and FILE.disk.
ranges()
{
	local f=$1
	shift
	python3 "$TESTS_DIR/erofs_reader.py" "$T/root.img" "$@" >>"$f.root"
	python3 "$TESTS_DIR/erofs_reader.py" --offset "$root_off" "$T/root.img" "$@" >>"$f.disk"
}

# load SECONDS CONNS [ALLOW]: the soak client on the root and disk exports.
load()
{
	local secs=$1 conns=$2 allow=${3:-}
	local args=(--export "$(export_uri root)" --ref "$T/root.img")
	[ -n "$allow" ] && args+=(--allow-eio "$allow.root")
	args+=(--export "$(export_uri disk)" --ref "$T/disk.img")
	[ -n "$allow" ] && args+=(--allow-eio "$allow.disk")
	timeout $((secs + 300)) "$soak" --conns "$conns" --depth 8 --seconds "$secs" "${args[@]}"
}

# expect_eio PATH: a read of PATH's first block in the root export fails
# with EIO, and the server's log names PATH.
expect_eio()
{
	local path=$1 start end
	read -r start end < <(python3 "$TESTS_DIR/erofs_reader.py" "$T/root.img" "$path" | head -n1)
	timeout 60 python3 "$faults" eio --unix "$SRV_SOCK" --offset "$start" \
		--length $((end - start)) ||
		fail "a read of '$path' (changed under the server) did not fail with EIO"
	grep -qF "$path" "$SRV_LOG" || fail "no log line names '$path'"
}

for mode in io_uring no-io-uring; do
	opt=()
	[ $mode = no-io-uring ] && opt=(--no-io-uring)

	check "[$mode] 1. the tree changes under load"
	new_tree
	start_server "$src" "${opt[@]}"
	allow=$T/allow
	rm -f "$allow".*
	d=soak/d00
	ranges "$allow" soak/big/b0 soak/big/b1 $d/f000 $d/f001 $d/f002 $d/f003 $d/f004 soak/d01/f0{00..99}
	load 40 32 "$allow" >"$T/load.out" 2>&1 &
	loadpid=$!
	sleep 5
	truncate -s 300000 "$src/soak/big/b0"				# truncated
	sleep 1; head -c 1000 /dev/urandom >>"$src/soak/big/b1"		# grown
	sleep 1; n=$(stat -c %s "$src/$d/f000")			# rewritten in place
	head -c "$n" /dev/urandom | dd of="$src/$d/f000" conv=notrunc status=none
	sleep 1; n=$(stat -c %s "$src/$d/f004") t=$(stat -c %y "$src/$d/f004")
	head -c "$n" /dev/urandom | dd of="$src/$d/f004" conv=notrunc status=none
	touch -d "$t" "$src/$d/f004"				# ... and the mtime set back
	sleep 1; head -c 5000 /dev/urandom >"$src/$d/f001.new"	# replaced by rename
	mv "$src/$d/f001.new" "$src/$d/f001"
	sleep 1; chmod 000 "$src/$d/f002"				# made unreadable
	sleep 1; rm "$src/$d/f003"					# deleted
	sleep 1; mkdir "$T/outside"				# parent swapped for a symlink out
	for f in "$src"/soak/d01/*; do
		head -c "$(stat -c %s "$f")" /dev/urandom >"$T/outside/${f##*/}"
	done
	mv "$src/soak/d01" "$src/soak/d01.away"
	ln -s "$T/outside" "$src/soak/d01"
	wait $loadpid || { cat "$T/load.out"; fail "[$mode] a read outside the changed files failed, or bytes differed (above)"; }
	cat "$T/load.out"
	for p in soak/big/b0 soak/big/b1 $d/f000 $d/f004; do
		expect_eio "$p"
	done
	load 10 8 "$allow" || fail "[$mode] the export no longer reads correctly around the changed files"
	server_alive || fail "[$mode] the server died"
	stop_server || fail "[$mode] the server did not stop cleanly (exit $?)"
	ok "[$mode] changed files read as EIO or as they were; no other byte changed"

	check "[$mode] 2. a client stops reading, others hang up mid-reply, under load"
	new_tree
	start_server "$src" "${opt[@]}"
	socks0=$(server_sockets)
	timeout 120 python3 "$faults" stall --unix "$SRV_SOCK" --seconds 25 >"$T/stall.out" 2>&1 &
	stallpid=$!
	timeout 300 python3 "$faults" cut --unix "$SRV_SOCK" --count 200 >"$T/cut.out" 2>&1 &
	cutpid=$!
	load 20 32 || fail "[$mode] well-behaved clients saw errors while others misbehaved"
	wait $cutpid || { cat "$T/cut.out"; fail "[$mode] the cut client failed"; }
	wait $stallpid || { cat "$T/stall.out"; fail "[$mode] the stalled client failed"; }
	cat "$T/stall.out" "$T/cut.out"
	wait_server_sockets "$socks0" ||
		fail "[$mode] connections left open" "$socks0" "$(server_sockets)"
	load 5 4 || fail "[$mode] the server does not serve after the pressure"
	stop_server || fail "[$mode] the server did not stop cleanly (exit $?)"
	ok "[$mode] misbehaving clients hurt nobody else"

	check "[$mode] 3. RLIMIT_NOFILE 64 under 64 clients"
	real=$EROFS_NBD
	cat >"$T/prlimit-server" <<-EOF
	#!/bin/sh
	exec prlimit --nofile=64:64 "$real" "\$@"
	EOF
	chmod +x "$T/prlimit-server"
	EROFS_NBD=$T/prlimit-server
	start_server "$src" "${opt[@]}"
	EROFS_NBD=$real
	grep -q 'Max open files *64 *64' "/proc/$SRV_PID/limits" || fail "the limit did not apply"
	load 20 64 || fail "[$mode] clients saw errors with the open-file limit at 64"
	timeout 300 nbdcopy "$(export_uri root)" "$T/copy.img" || fail "[$mode] nbdcopy failed after the pressure"
	cmp "$T/root.img" "$T/copy.img" || fail "[$mode] nbdcopy after the pressure differs"
	rm -f "$T/copy.img"
	# One client: with io_uring on 2+ CPUs its misses go to the openers,
	# whose batches must not hold the few fds they wait for.
	timeout 300 nbdcopy -C 1 "$(export_uri root)" "$T/copy.img" ||
		fail "[$mode] nbdcopy -C 1 failed after the pressure"
	cmp "$T/root.img" "$T/copy.img" || fail "[$mode] nbdcopy -C 1 after the pressure differs"
	rm -f "$T/copy.img"
	stop_server || fail "[$mode] the server did not stop cleanly (exit $?)"
	ok "[$mode] 64 clients with 64 fds: no error, and full copies after"
done
