#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-badtree.sh - trees erofs-nbd cannot serve are refused with a
# message naming the path; --skip-unreadable leaves such entries out with
# a warning; the limits that still fit are served faithfully.
#
#   - --export of a nonexistent path, of a regular file: exit 1, the path
#     in the message, no URI printed (serving mode) and no image written;
#   - an xattr value of 65536 bytes (tmpfs allows it; EROFS's e_value_size
#     is 16-bit): exit 1 naming the file; with --skip-unreadable a warning
#     and the file left out;
#   - xattrs that overflow the inline xattr area (5 x 65535 bytes): exit 1
#     naming the file; 3 x 65535 bytes and a 65535-byte value still fit
#     and read back exactly (kernel mount and tests/erofs_reader.py);
#   - 70000 hard links to one file (more than a compact inode's 16-bit
#     i_nlink) read back exactly;
#   - as an unprivileged user: a directory it cannot open and a file it
#     cannot read: exit 1 naming them; with --skip-unreadable a warning
#     for each, exit 0, and the image holds exactly the rest; the same
#     for a lower layer's directory under the top's (--lowerdir): the
#     error names the lower one, and the merged directory is left out;
#   - a file system mounted inside the tree: left empty by default,
#     descended into with --cross-mounts.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires python3
requires setpriv
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"

tmpdir
chmod 0755 "$T"

# must_fail WHAT NEEDLE ARGS...: erofs-nbd ARGS must exit non-zero and
# name NEEDLE on stderr.
must_fail()
{
	local what=$1 needle=$2 rc=0
	shift 2
	timeout 60 "$EROFS_NBD" "$@" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/err"
	[ $rc != 0 ] || fail "$what: exit status" "non-zero" 0
	[ $rc != 124 ] || fail "$what: erofs-nbd hung"
	grep -qF -- "$needle" "$T/err" || fail "$what: error message" "naming '$needle'" "$(cat "$T/err")"
	if grep -q '^nbd' "$T/out"; then
		fail "$what: printed a URI" "no URI" "$(cat "$T/out")"
	fi
	ok "$what: exit $rc, message names '$needle'"
}

check "--export of a nonexistent path"
must_fail "nonexistent path, --write-image" "$T/does-not-exist" \
	--export "$T/does-not-exist" --image-export root --write-image "$T/x.img"
[ ! -e "$T/x.img" ] || fail "an image was written for a nonexistent tree"
must_fail "nonexistent path, serving" "$T/does-not-exist" \
	--export "$T/does-not-exist" -f --unix "$T/sock"

check "--export of a regular file"
echo data >"$T/plain-file"
must_fail "regular file, --write-image" "$T/plain-file" --export "$T/plain-file" --image-export root --write-image "$T/x.img"
must_fail "regular file, serving" "$T/plain-file" --export "$T/plain-file" -f --unix "$T/sock"
rm -f "$T/x.img"

# --- xattr limits (tmpfs takes values up to 64 KiB) -------------------------------
mkdir "$T/tmpfs"
mount -t tmpfs -o mode=0755 tmpfs "$T/tmpfs"
cleanup_fn umount -l "$T/tmpfs"
x=$T/tmpfs/xattr
mkdir -p "$x/sub"
echo ok >"$x/fine"
echo big >"$x/sub/value-65536"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.big", b"v" * 65536)' "$x/sub/value-65536" ||
	skip "tmpfs refuses a 65536-byte xattr"

check "an xattr value of 65536 bytes"
must_fail "65536-byte xattr" "sub/value-65536" --export "$x" --image-export root --write-image "$T/x.img"

check "... with --skip-unreadable: warned about and left out"
rc=0
"$EROFS_NBD" --export "$x" --skip-unreadable --image-export root --write-image "$T/x.img" 2>"$T/err" || rc=$?
cat "$T/err"
[ $rc = 0 ] || fail "--skip-unreadable with a 65536-byte xattr: exit status" 0 "$rc"
grep -qF sub/value-65536 "$T/err" || fail "--skip-unreadable: warning" "naming sub/value-65536" "$(cat "$T/err")"
cp -a "$x" "$T/expect-x"
rm "$T/expect-x/sub/value-65536"
touch -r "$x/sub" "$T/expect-x/sub"
timeout 900 python3 "$TESTS_DIR/treecmp.py" --image "$T/expect-x" "$T/x.img" ||
	fail "the image with the entry skipped differs from the tree without it"
rm -f "$T/x.img"

check "xattrs that overflow the inline xattr area (5 x 65535 bytes)"
echo many >"$x/sub/too-many"
python3 -c '
import os, sys
for i in range(5):
    os.setxattr(sys.argv[1], "trusted.v%d" % i, bytes([i]) * 65535)' "$x/sub/too-many"
rm "$x/sub/value-65536"
must_fail "5 x 65535-byte xattrs" "sub/too-many" --export "$x" --image-export root --write-image "$T/x.img"
rm "$x/sub/too-many"

check "the largest xattrs that fit: 65535 bytes, 3 x 65535 bytes on one file"
echo a >"$x/max-one"
python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.max", os.urandom(65535))' "$x/max-one"
echo b >"$x/max-three"
python3 -c '
import os, sys
for i in range(3):
    os.setxattr(sys.argv[1], "trusted.m%d" % i, os.urandom(65535))' "$x/max-three"
"$EROFS_NBD" --export "$x" --image-export root --write-image "$T/x.img" || fail "--write-image of the largest xattrs failed"
timeout 900 python3 "$TESTS_DIR/treecmp.py" --image "$x" "$T/x.img" || fail "the reader's view of the large xattrs differs"
if grep -qw erofs /proc/filesystems; then
	mount_image "$T/x.img" "$T/mnt-x"
	timeout 900 python3 "$TESTS_DIR/treecmp.py" "$x" "$T/mnt-x" || fail "the kernel's view of the large xattrs differs"
	umount "$T/mnt-x"
fi
rm -f "$T/x.img"
ok "65535-byte xattrs served exactly"

check "70000 hard links to one file (nlink > 65535: extended inode; tmpfs allows it)"
h=$T/tmpfs/links
mkdir -p "$h/d1" "$h/d2"
printf 'linked 70000 times' >"$h/d1/target"
python3 -c '
import os, sys
os.chdir(sys.argv[1])
for i in range(69999):
	os.link("d1/target", "d%d/l%05d" % (1 + i % 2, i))' "$h"
"$EROFS_NBD" --export "$h" --image-export root --write-image "$T/h.img" || fail "--write-image with 70000 links failed"
timeout 900 python3 "$TESTS_DIR/treecmp.py" --image "$h" "$T/h.img" || fail "the reader's view of 70000 links differs"
if grep -qw erofs /proc/filesystems; then
	mount_image "$T/h.img" "$T/mnt-h"
	timeout 900 python3 "$TESTS_DIR/treecmp.py" "$h" "$T/mnt-h" || fail "the kernel's view of 70000 links differs"
	umount "$T/mnt-h"
fi
rm -rf "$h" "$T/h.img"
ok "nlink 70000"

# --- unreadable entries, as an unprivileged user -----------------------------------
check "as uid 65534: an unreadable directory and an unreadable file"
u=$T/tmpfs/unreadable
mkdir -p "$u/dir" "$u/secret" "$T/out-nobody"
chmod 1777 "$T/out-nobody"
echo ok >"$u/ok"
echo ok >"$u/dir/ok2"
echo inner >"$u/secret/inner"
chmod 0700 "$u/secret"
echo private >"$u/locked"
chmod 0600 "$u/locked"
nobody()
{
	setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
# nobody_fails NAME: erofs-nbd run as uid 65534 must fail naming NAME.
nobody_fails()
{
	local rc=0
	nobody "$EROFS_NBD" --export "$u" --image-export root --write-image "$T/out-nobody/x.img" 2>"$T/err" || rc=$?
	cat "$T/err"
	[ $rc != 0 ] || fail "unreadable '$1' without --skip-unreadable: exit status" "non-zero" 0
	grep -qF "'$1'" "$T/err" || fail "unreadable '$1': error message" "naming '$1'" "$(cat "$T/err")"
	rm -f "$T/out-nobody/x.img"
}
chmod 0644 "$u/locked"
nobody_fails secret
chmod 0600 "$u/locked"
chmod 0755 "$u/secret"
nobody_fails locked
chmod 0700 "$u/secret"

check "... with --skip-unreadable: a warning for each, exit 0, the rest served"
rc=0
nobody "$EROFS_NBD" --export "$u" --skip-unreadable --image-export root --write-image "$T/out-nobody/x.img" \
	2>"$T/err" || rc=$?
cat "$T/err"
[ $rc = 0 ] || fail "--skip-unreadable with an unreadable dir and file: exit status" 0 \
	"$rc (stderr: $(tr '\n' ' ' <"$T/err"))"
grep -qF "'secret'" "$T/err" || fail "--skip-unreadable: warning" "naming 'secret'" "$(cat "$T/err")"
grep -qF "'locked'" "$T/err" || fail "--skip-unreadable: warning" \
	"naming 'locked' (a file uid 65534 cannot read)" "$(cat "$T/err")"
cp -a "$u" "$T/expect-u"
rm -rf "$T/expect-u/secret" "$T/expect-u/locked"
touch -r "$u" "$T/expect-u"
timeout 900 python3 "$TESTS_DIR/treecmp.py" --image "$T/expect-u" "$T/out-nobody/x.img" ||
	fail "the image with unreadable entries skipped differs from the readable rest"
ok "--skip-unreadable"

# A lower layer's directory that uid 65534 cannot open, under a readable
# directory of the same name in the top layer: the error names the lower
# one (not the top's), and --skip-unreadable leaves the whole merged
# directory out (not the top's half of it).
check "as uid 65534: --lowerdir top:low where low/d cannot be opened"
o=$T/tmpfs/ovl
mkdir -p "$o/top/d" "$o/low/d"
echo top >"$o/top/d/a"
echo low >"$o/low/d/b"
echo f >"$o/top/f"
chmod 0700 "$o/low/d"
rc=0
nobody "$EROFS_NBD" --lowerdir "$o/top:$o/low" --userxattr --image-export root \
	--write-image "$T/out-nobody/o.img" 2>"$T/err" || rc=$?
cat "$T/err"
[ $rc != 0 ] || fail "unreadable lower directory: exit status" "non-zero" 0
grep -qF "'$o/low/d'" "$T/err" || fail "unreadable lower directory: error message" \
	"naming '$o/low/d'" "$(cat "$T/err")"
rm -f "$T/out-nobody/o.img"
rc=0
nobody "$EROFS_NBD" --lowerdir "$o/top:$o/low" --userxattr --skip-unreadable --image-export root \
	--write-image "$T/out-nobody/o.img" 2>"$T/err" || rc=$?
cat "$T/err"
[ $rc = 0 ] || fail "--skip-unreadable with an unreadable lower directory: exit status" 0 "$rc"
grep -qF "'$o/low/d'" "$T/err" || fail "--skip-unreadable: warning" "naming '$o/low/d'" "$(cat "$T/err")"
timeout 300 python3 - "$TESTS_DIR" "$T/out-nobody/o.img" <<'EOF' || fail "--skip-unreadable: the merged directory d"
import sys
sys.path.insert(0, sys.argv[1])
import erofs_reader
a = sorted(erofs_reader.ErofsImage(sys.argv[2]).walk())
print('image:', a)
if a != [b'', b'f']:
    print("expected [b'', b'f']: d left out, not served with the top layer's half")
    sys.exit(1)
EOF
rm -f "$T/out-nobody/o.img"
ok "unreadable lower directory"

# --- mounts inside the tree --------------------------------------------------------------
check "a file system mounted inside the tree: empty by default, included with --cross-mounts"
c=$T/cross
mkdir -p "$c/mnt"
echo outside >"$c/file"
mount -t tmpfs -o mode=0755 tmpfs "$c/mnt"
cleanup_fn umount -l "$c/mnt"
echo inside >"$c/mnt/inner"
"$EROFS_NBD" --export "$c" --image-export root --write-image "$T/c1.img" || fail "--write-image with a mount inside failed"
"$EROFS_NBD" --export "$c" --cross-mounts --image-export root --write-image "$T/c2.img" || fail "--cross-mounts --write-image failed"
timeout 300 python3 - "$TESTS_DIR" "$T/c1.img" "$T/c2.img" <<'EOF' || fail "--cross-mounts"
import sys
sys.path.insert(0, sys.argv[1])
import erofs_reader
a = sorted(erofs_reader.ErofsImage(sys.argv[2]).walk())
b = sorted(erofs_reader.ErofsImage(sys.argv[3]).walk())
print('default:', a)
print('--cross-mounts:', b)
ok = a == [b'', b'file', b'mnt'] and b == [b'', b'file', b'mnt', b'mnt/inner']
if not ok:
    print("expected [b'', b'file', b'mnt'] and [b'', b'file', b'mnt', b'mnt/inner']")
sys.exit(0 if ok else 1)
EOF
timeout 900 python3 "$TESTS_DIR/treecmp.py" --image "$c" "$T/c2.img" || fail "--cross-mounts image differs from the tree"
ok "mount points"

echo "PASS: $TEST_NAME"
