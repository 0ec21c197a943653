#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-change.sh - a source file that changes under the server gives
# read errors, never different bytes.
#
# The image is laid out once, so a file that is truncated, extended,
# rewritten, touched, deleted or replaced (rename over it) after the walk
# no longer matches its layout; so does one rewritten in place with its
# size kept and its mtime set back (utimensat, `touch -r`), which only the
# ctime gives away.  Reading it through the export must fail (NBD EIO; a mounted
# file's read fails with EIO) and the server must log its path, while the
# other files still read correctly.  Checked with raw NBD READs of each
# file's extents (tests/nbd_evil.py's client, extents from
# tests/erofs_reader.py on the --write-image output), with nbdcopy of the
# whole export, and (with fuse) through a live nbdfuse + EROFS mount.
# Also covers a file that changes after the server has already read it
# (and may keep it open).
#
# Run four times: with --no-inline-data every unchanged file must stay
# fully usable through the mount; with the default layout (small files and
# tails inline after their inode, so metadata blocks hold file bytes) a
# changed file may also make the inodes that share its metadata block
# unreadable: there unchanged files must read back right or fail, never
# differ.  The third run takes the zero-copy path (--immutable-sources:
# file data spliced from the page cache, the io_uring loop): a file changed
# before a read must still give EIO there, since the promise covers only
# the time bytes are in flight; the server must say it spliced.  Without
# the promise a mutable file is never spliced, however often it is read.
# The fourth run is the default layout on the plain loop (--no-io-uring:
# threads, pread), which has its own check after each read and its own
# short-read handling: a file that shrank must fail, not hang the request.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires python3
requires nbdcopy
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"

tmpdir

# nbdread FILE...: READs each file's extents in the export over one raw NBD
# connection and prints a line per file, judged against the original copy
# (the file as the walk saw it): "FILE ok" when every extent came back with
# its bytes; "FILE WRONG" when any extent that succeeded has other bytes,
# even if another extent failed (an EIO on a changed file's inline tail
# must not hide its blocks sent with the new bytes); else "FILE error N"
# (N: the first failed extent's NBD error).  A reply not sent within 10 s
# (a read that never ends) or a protocol error ends the connection: "FILE
# FAIL: why", then "FILE not read" for each file after it.
nbdread()
{
	timeout 60 python3 - "$TESTS_DIR" "$SRV_SOCK" "$W/ref.img" "$W/orig" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import erofs_reader, nbd_evil
sock, ref, orig = sys.argv[2:5]
names = sys.argv[5:]
img = erofs_reader.ErofsImage(ref)
entries = img.walk()
c = nbd_evil.Conn(sock)
c.s.settimeout(10)
c.handshake(structured=True)
for k, name in enumerate(names):
    ino = entries[name.encode()]
    want = open('%s/%s' % (orig, name), 'rb').read()
    err = 0
    wrong = False
    covered = 0
    try:
        for i, (foff, ioff, ln) in enumerate(img.extents(ino)):
            c.request(nbd_evil.CMD_READ, ioff, ln, i)
            e, data = nbd_evil.collect(c, {i: (nbd_evil.CMD_READ, ioff, ln)}, None)[i]
            if e:
                err = err or e
            elif data != want[foff:foff + ln]:
                wrong = True
            covered += ln
    except nbd_evil.Fail as f:
        print(name, 'FAIL:', f)
        for n in names[k + 1:]:
            print(n, 'not read')
        break
    if wrong or covered != len(want):
        print(name, 'WRONG')
    elif err:
        print(name, 'error', err)
    else:
        print(name, 'ok')
EOF
}

# expect_read ok|error|notwrong FILE...: nbdread of the files (one
# connection), each file's line checked.
expect_read()
{
	local want=$1 f got out i=0
	local -a lines
	shift
	out=$(nbdread "$@") || fail "[$mode] raw NBD read of $* failed to run" "" "$out"
	echo "$out"
	mapfile -t lines <<<"$out"
	for f in "$@"; do
		got=${lines[i]:-}
		i=$((i + 1))
		case $want in
		ok) [ "$got" = "$f ok" ] || fail "[$mode] reading $f through the export" "$f ok" "$got" ;;
		error) [ "$got" = "$f error 5" ] ||
			fail "[$mode] reading changed $f through the export" "$f error 5 (EIO)" "$got" ;;
		notwrong) [ "$got" = "$f error 5" ] || [ "$got" = "$f ok" ] ||
			fail "[$mode] reading $f through the export" "$f error 5 (EIO) or the original bytes" "$got" ;;
		esac
	done
}

# read_mounted ok|error|notwrong FILE...: the same through the mount.
read_mounted()
{
	local want=$1 f rc
	shift
	for f in "$@"; do
		rc=0
		timeout 60 cat "$W/mnt/$f" >"$W/out" 2>"$W/err" || rc=$?
		[ $rc != 124 ] || fail "[$mode] reading $f through the mount hung"
		if [ $rc = 0 ]; then
			cmp -s "$W/out" "$W/orig/$f" ||
				fail "[$mode] reading $f through the mount" "the original bytes or EIO" "DIFFERENT bytes"
			echo "$f: original bytes"
			[ "$want" != error ] ||
				fail "[$mode] reading changed $f through the mount" "an I/O error" "success (original bytes)"
		else
			grep -q 'Input/output error' "$W/err" ||
				fail "[$mode] error reading $f through the mount" "Input/output error" "$(cat "$W/err")"
			# Whatever came before the error must be the original bytes.
			cmp -s "$W/out" <(head -c "$(stat -c %s "$W/out")" "$W/orig/$f") ||
				fail "[$mode] partial read of $f returned different bytes"
			echo "$f: EIO"
			[ "$want" != ok ] ||
				fail "[$mode] reading unchanged $f through the mount" "the original bytes" "$(cat "$W/err")"
		fi
	done
}

for mode in no-inline-data inline zero-copy plain; do
	W=$T/$mode
	src=$W/src
	mkdir -p "$src"
	args=()
	[ $mode = no-inline-data ] && args=(--no-inline-data)
	[ $mode = zero-copy ] && args=(--immutable-sources -v)
	[ $mode = plain ] && args=(--no-io-uring)
	check "[$mode] building a tree of files to change"
	for f in a-truncate a-extend a-replace a-rewrite a-touch a-delete a-setback b-rewrite \
		b-truncate b-delete b-setback stable1 stable2; do
		head -c $((1024 * 1024 + 123)) /dev/urandom >"$src/$f"
	done
	# A whole number of blocks: no inline tail, so its EIO can only come
	# from its blocks (a tail's EIO cannot stand in for theirs).
	head -c $((1024 * 1024)) /dev/urandom >"$src/b-blocks"
	printf 'small inline file\n' >"$src/a-small"
	printf 'small stable file\n' >"$src/stable-small"
	mkdir "$src/dir"
	head -c 100000 /dev/urandom >"$src/dir/stable3"
	# Without the promise, files with the immutable attribute are spliced:
	# one of them, where chattr works (root, ext4/xfs/btrfs).
	immutable=
	if [ $mode = inline ]; then
		head -c 300000 /dev/urandom >"$src/immutable"
		if chattr +i "$src/immutable" 2>/dev/null; then
			immutable=immutable
			cleanup_fn chattr -i "$src/immutable"
			args=(-v)
		fi
	fi

	cp -a "$src" "$W/orig"
	"$EROFS_NBD" --export "$src" "${args[@]}" --image-export root --write-image "$W/ref.img" 2>/dev/null ||
		fail "--write-image failed"

	start_server "$src" "${args[@]}"
	SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk

	check "[$mode] unchanged files read back correctly"
	expect_read ok stable1 b-rewrite b-truncate b-delete b-setback b-blocks a-small $immutable
	if [ -n "$immutable" ]; then
		# The first read's check learns the attribute, so only a second
		# read can splice; its 992-byte inline tail is copied (replies
		# under 32 KiB always are).
		expect_read ok $immutable
		check "[$mode] a file with the immutable attribute was spliced, the others not"
		[ "$(grep -c 'zero-copy (splice)' "$SRV_LOG")" = 1 ] ||
			fail "[$mode] zero-copy replies" "1 connection splicing (the immutable file's)" \
				"$(grep -c 'zero-copy (splice)' "$SRV_LOG")"
		ok "spliced"
	elif [ $mode = inline ]; then
		echo "NOTE: chattr +i refused here: the immutable-attribute case is skipped"
	fi
	if [ $mode = inline ] || [ $mode = no-inline-data ]; then
		# stable1's first read checked it (and found it mutable): its
		# second read, on a new connection, must still be copied.
		check "[$mode] a mutable file read again is not spliced"
		n0=$(grep -c 'zero-copy (splice)' "$SRV_LOG" || true)
		expect_read ok stable1
		n1=$(grep -c 'zero-copy (splice)' "$SRV_LOG" || true)
		[ "$n1" = "$n0" ] ||
			fail "[$mode] connections splicing after a second read of stable1" "$n0" "$n1"
		ok "not spliced"
	fi

	check "[$mode] changing files under the server: truncate, extend, rewrite, replace, touch, delete, rewrite + mtime set back"
	truncate -s 1000 "$src/a-truncate"
	head -c 4096 /dev/urandom >>"$src/a-extend"
	head -c $((1024 * 1024 + 123)) /dev/urandom >"$W/new"
	mv "$W/new" "$src/a-replace"				# same size, a new inode
	dd if=/dev/urandom of="$src/a-rewrite" bs=4096 count=1 seek=10 conv=notrunc status=none
	touch -d '2001-02-03 04:05:06' "$src/a-touch"		# only the mtime
	printf 'SMALL inline file\n' >"$src/a-small"		# same size
	rm "$src/a-delete"
	# Same size, and mtime (and atime) put back to the walk's: utimensat.
	dd if=/dev/urandom of="$src/a-setback" bs=4096 count=1 seek=5 conv=notrunc status=none
	touch -r "$W/orig/a-setback" "$src/a-setback"
	[ "$(stat -c '%s %y' "$src/a-setback")" = "$(stat -c '%s %y' "$W/orig/a-setback")" ] ||
		fail "touch -r did not set a-setback's mtime back"
	# These were read (and may be held open) by the server already.
	dd if=/dev/urandom of="$src/b-rewrite" bs=4096 count=1 seek=3 conv=notrunc status=none
	dd if=/dev/urandom of="$src/b-setback" bs=4096 count=1 seek=7 conv=notrunc status=none
	touch -r "$W/orig/b-setback" "$src/b-setback"
	truncate -s 4096 "$src/b-truncate"
	dd if=/dev/urandom of="$src/b-blocks" bs=4096 count=1 seek=100 conv=notrunc status=none
	rm "$src/b-delete"

	check "[$mode] changed files give EIO, never other bytes"
	expect_read error a-truncate a-extend a-replace a-rewrite a-touch a-delete a-setback \
		b-rewrite b-truncate b-setback b-blocks
	# An open fd still reads a deleted file's original bytes: either is fine.
	expect_read notwrong b-delete a-small
	check "[$mode] the other files still read fine"
	expect_read ok stable1 stable2 stable-small dir/stable3
	server_alive || fail "the server died"

	if [ $mode = zero-copy ]; then
		check "[$mode] the server spliced"
		grep -q 'zero-copy (splice)' "$SRV_LOG" ||
			fail "[$mode] no zero-copy reply" "a 'zero-copy (splice)' line" "none"
		ok "spliced"
	fi

	check "[$mode] the server logged the changed paths"
	for f in a-truncate a-extend a-replace a-rewrite a-setback b-rewrite b-setback b-blocks; do
		grep -qF "$f" "$SRV_LOG" || fail "the server's log does not name $f" \
			"a line naming $f" "$(tail -n 5 "$SRV_LOG" | tr '\n' '|')"
	done
	grep -F a-truncate "$SRV_LOG" | head -n 2
	ok "paths logged"

	check "[$mode] nbdcopy of the whole export fails (and does not hang)"
	rc=0
	timeout 120 nbdcopy "$SRV_URI" "$W/copy.img" 2>"$W/nbdcopy.err" || rc=$?
	[ $rc != 0 ] || fail "nbdcopy of an export with changed files" "an error" "success"
	[ $rc != 124 ] || fail "nbdcopy hung"
	head -n 3 "$W/nbdcopy.err"
	rm -f "$W/copy.img"
	ok "nbdcopy failed with $rc"

	if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && command -v nbdfuse >/dev/null &&
		grep -qw erofs /proc/filesystems; then
		check "[$mode] through a live mount: changed files fail with EIO"
		nbdfuse_start "$SRV_URI" "$W/fuse"
		mount_image "$W/fuse/nbd" "$W/mnt"
		read_mounted error a-truncate a-extend a-replace a-rewrite a-touch a-delete a-setback \
			b-rewrite b-setback b-blocks
		if [ $mode = no-inline-data ]; then
			check "[$mode] unchanged files stay fully usable through the mount"
			for f in stable1 stable2 stable-small dir/stable3; do
				stat "$W/mnt/$f" >/dev/null 2>"$W/err" ||
					fail "[$mode] stat of unchanged $f through the mount" "success" "$(cat "$W/err")"
			done
			read_mounted ok stable1 stable2 stable-small dir/stable3
		else
			check "[$mode] unchanged files read right or fail (a changed inline tail shares their metadata block), never differ"
			read_mounted notwrong stable1 stable2 stable-small dir/stable3
		fi
		umount "$W/mnt"
		fusermount3 -u "$W/fuse"
	else
		echo "NOTE: no root/fuse/EROFS: live-mount part skipped"
	fi

	server_alive || fail "the server died"
	rc=0
	stop_server || rc=$?
	[ $rc = 0 ] || fail "exit status after SIGTERM" 0 "$rc"
	ok "[$mode] done"
done
echo "PASS: $TEST_NAME"
