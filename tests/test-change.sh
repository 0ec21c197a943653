#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-change.sh - a source file that changes under the server gives
# read errors, never different bytes.
#
# The image is laid out once, so a file that is truncated, extended,
# rewritten, touched, deleted or replaced (rename over it) after the walk
# no longer matches
# its layout.  Reading it through the export must fail (NBD EIO; a mounted
# file's read fails with EIO) and the server must log its path, while the
# other files still read correctly.  Checked with raw NBD READs of each
# file's extents (tests/nbd_evil.py's client, extents from
# tests/erofs_reader.py on the --write-image output), with nbdcopy of the
# whole export, and (with fuse) through a live nbdfuse + EROFS mount.
# Also covers a file that changes after the server has already read it
# (and may keep it open).
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires python3
requires nbdcopy
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"

tmpdir
src=$T/src
mkdir "$src"
check "building a tree of files to change"
for f in a-truncate a-extend a-replace a-rewrite a-touch a-delete b-rewrite b-truncate b-delete \
	stable1 stable2; do
	head -c $((1024 * 1024 + 123)) /dev/urandom >"$src/$f"
done
printf 'small inline file\n' >"$src/a-small"
printf 'small stable file\n' >"$src/stable-small"
mkdir "$src/dir"
head -c 100000 /dev/urandom >"$src/dir/stable3"
cp -a "$src" "$T/orig"
"$EROFS_NBD" --export "$src" --write-image "$T/ref.img" || fail "--write-image failed"

start_server "$src"

# nbdread FILE...: READs each file's extents in the export over a raw NBD
# connection; prints "FILE ok" when the bytes match the original copy,
# "FILE error N" on an NBD error, "FILE WRONG" on different bytes.
nbdread()
{
	timeout 60 python3 - "$TESTS_DIR" "$SRV_SOCK" "$T/ref.img" "$T/orig" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import erofs_reader, nbd_evil
sock, ref, orig = sys.argv[2:5]
img = erofs_reader.ErofsImage(ref)
entries = img.walk()
c = nbd_evil.Conn(sock)
c.handshake(structured=True)
for name in sys.argv[5:]:
    ino = entries[name.encode()]
    want = open('%s/%s' % (orig, name), 'rb').read()
    got = bytearray()
    err = 0
    for i, (foff, ioff, ln) in enumerate(img.extents(ino)):
        c.request(nbd_evil.CMD_READ, ioff, ln, i)
        e, data = nbd_evil.collect(c, {i: (nbd_evil.CMD_READ, ioff, ln)}, None)[i]
        if e:
            err = e
            break
        got += data
    if err:
        print(name, 'error', err)
    elif bytes(got) == want:
        print(name, 'ok')
    else:
        print(name, 'WRONG')
EOF
}

expect_read()
{
	local want=$1 f got
	shift
	for f in "$@"; do
		got=$(nbdread "$f") || fail "raw NBD read of $f failed to run"
		echo "$got"
		case $want in
		ok) [ "$got" = "$f ok" ] || fail "reading $f through the export" "$f ok" "$got" ;;
		error) [ "$got" = "$f error 5" ] ||
			fail "reading changed $f through the export" "$f error 5 (EIO)" "$got" ;;
		notwrong) [ "$got" = "$f error 5" ] || [ "$got" = "$f ok" ] ||
			fail "reading $f through the export" "$f error 5 (EIO) or the original bytes" "$got" ;;
		esac
	done
}

check "unchanged files read back correctly"
expect_read ok stable1 b-rewrite b-truncate b-delete a-small

check "changing files under the server: truncate, extend, rewrite, replace, touch"
truncate -s 1000 "$src/a-truncate"
head -c 4096 /dev/urandom >>"$src/a-extend"
head -c $((1024 * 1024 + 123)) /dev/urandom >"$T/new"
mv "$T/new" "$src/a-replace"				# same size, a new inode
dd if=/dev/urandom of="$src/a-rewrite" bs=4096 count=1 seek=10 conv=notrunc status=none	# same size and inode
touch -d '2001-02-03 04:05:06' "$src/a-touch"		# only the mtime
printf 'SMALL inline file\n' >"$src/a-small"		# same size
rm "$src/a-delete"
# These were read (and may be held open) by the server already.
dd if=/dev/urandom of="$src/b-rewrite" bs=4096 count=1 seek=3 conv=notrunc status=none
truncate -s 4096 "$src/b-truncate"
rm "$src/b-delete"

check "changed files give EIO, never other bytes"
expect_read error a-truncate a-extend a-replace a-rewrite a-touch a-delete b-rewrite b-truncate
# An open fd still reads a deleted file's original bytes, and a file that
# fits inline may have been copied into the metadata: either is fine.
expect_read notwrong b-delete a-small
check "the other files still read fine"
expect_read ok stable1 stable2 stable-small dir/stable3
server_alive || fail "the server died"

check "the server logged the changed paths"
for f in a-truncate a-extend a-replace a-rewrite b-rewrite; do
	grep -qF "$f" "$SRV_LOG" || fail "the server's log does not name $f" \
		"a line naming $f" "$(tail -n 5 "$SRV_LOG" | tr '\n' '|')"
done
grep -F a-truncate "$SRV_LOG" | head -n 2
ok "paths logged"

check "nbdcopy of the whole export fails (and does not hang)"
rc=0
timeout 120 nbdcopy "$SRV_URI" "$T/copy.img" 2>"$T/nbdcopy.err" || rc=$?
[ $rc != 0 ] || fail "nbdcopy of an export with changed files" "an error" "success"
[ $rc != 124 ] || fail "nbdcopy hung"
head -n 3 "$T/nbdcopy.err"
ok "nbdcopy failed with $rc"

if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && command -v nbdfuse >/dev/null &&
	grep -qw erofs /proc/filesystems; then
	check "through a live mount: changed files fail with EIO, others read fine"
	nbdfuse_start "$SRV_URI" "$T/fuse"
	mount_image "$T/fuse/nbd" "$T/mnt"
	for f in a-truncate a-extend a-replace a-rewrite a-touch a-delete b-rewrite; do
		if timeout 60 cat "$T/mnt/$f" >"$T/out" 2>"$T/err"; then
			cmp -s "$T/out" "$T/orig/$f" && what="the original bytes" || what="DIFFERENT bytes"
			fail "reading changed $f through the mount" "an I/O error" "success with $what"
		fi
		grep -q 'Input/output error' "$T/err" ||
			fail "error reading changed $f" "Input/output error" "$(cat "$T/err")"
		# A partial read must not have produced bytes that differ.
		cmp -s "$T/out" <(head -c "$(stat -c %s "$T/out")" "$T/orig/$f") ||
			fail "partial read of $f returned different bytes"
	done
	# Unchanged files must stay fully usable: their inodes and inline
	# tails may share metadata blocks with a changed file's inline tail.
	for f in stable1 stable2 stable-small dir/stable3; do
		stat "$T/mnt/$f" >/dev/null 2>"$T/err" ||
			fail "stat of unchanged $f through the mount" "success" "$(cat "$T/err")"
		cmp "$T/mnt/$f" "$T/orig/$f" 2>"$T/err" ||
			fail "reading unchanged $f through the mount" "the original bytes" "$(cat "$T/err")"
	done
	ok "EIO for changed files, stable files intact"
	umount "$T/mnt"
	fusermount3 -u "$T/fuse"
else
	echo "NOTE: no root/fuse/EROFS: live-mount part skipped"
fi

server_alive || fail "the server died"
rc=0
stop_server || rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM" 0 "$rc"
echo "PASS: $TEST_NAME"
