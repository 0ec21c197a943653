#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-fidelity.sh - the image erofs-nbd serves is a faithful EROFS
# copy of the source tree, as the real kernel and erofs-utils read it.
#
# Builds the corner-case tree (tests/mktree.sh), serves it, and reads the
# export back with real clients:
#   (a) nbdcopy URI img; fsck.erofs img; mount -t erofs -o ro,loop img;
#   (b) nbdfuse -r DIR URI; mount -t erofs -o ro,loop DIR/nbd (a live mount
#       whose every read goes to the server);
# and compares each mount with the source (tests/treecmp.py: names, types,
# modes, owners, mtimes with nsec, nlink, rdev, symlink targets, xattrs of
# every namespace, hard-link groups, sizes and bytes).  Then: two
# --write-image runs give identical bytes, equal to what nbdcopy fetched;
# --block-size 512/1024 images mount and compare; 16384/65536 images,
# which no kernel up to 6.18 mounts on 4 KiB pages (blkszbits >
# PAGE_SHIFT), are checked by tests/erofs_reader.py (treecmp.py --image),
# an independent reader of the format.
#
# Needs root (devices, chown, trusted.* xattrs, mount), loop devices and
# EROFS in the kernel; fuse for (b).  Takes about a minute.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires nbdcopy
requires fsck.erofs
requires python3
requires setfattr
requires setfacl
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null ||
	skip "the kernel has no EROFS support"

tmpdir
src=$T/src
check "building the corner-case tree in $src"
"$TESTS_DIR/mktree.sh" "$src"
echo "$(find "$src" | wc -l) entries, $(du -sh --apparent-size "$src" | cut -f1) apparent"

treecmp()
{
	local what=$1
	shift
	if ! timeout 900 python3 "$TESTS_DIR/treecmp.py" "$@"; then
		fail "$what differs from the source tree (lines above: path: what: expected, actual)"
	fi
	ok "$what matches the source tree"
}

start_server "$src"

# --- (a) nbdcopy, fsck.erofs, loop mount ---------------------------------------
check "(a) nbdcopy $SRV_URI -> image"
timeout 300 nbdcopy "$SRV_URI" "$T/copy.img" || fail "nbdcopy failed"
ls -ls "$T/copy.img"

check "(a) fsck.erofs on the copied image"
timeout 300 fsck.erofs "$T/copy.img" || fail "fsck.erofs rejects the image"
ok "fsck.erofs"

check "(a) mount -t erofs -o ro,loop and compare with the source"
mount_image "$T/copy.img" "$T/mnt-copy"
treecmp "the loop mount of the nbdcopy image" "$src" "$T/mnt-copy"

# --- (b) nbdfuse live mount -------------------------------------------------------
if [ -c /dev/fuse ] && command -v nbdfuse >/dev/null && command -v fusermount3 >/dev/null; then
	check "(b) nbdfuse -r live mount, mount -t erofs on it, compare"
	nbdfuse_start "$SRV_URI" "$T/fuse"
	mount_image "$T/fuse/nbd" "$T/mnt-live"
	treecmp "the live mount through nbdfuse" "$src" "$T/mnt-live"
	umount "$T/mnt-live"
	fusermount3 -u "$T/fuse"
else
	echo "NOTE: no /dev/fuse or nbdfuse: live mount (b) not tested"
fi

check "the server survived and stops with status 0 on SIGTERM"
server_alive || fail "the server died while serving"
rc=0
stop_server || rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM" 0 "$rc"
ok "server exited 0"

# --- determinism ------------------------------------------------------------------
check "two --write-image runs give identical bytes, equal to the export"
"$EROFS_NBD" --export "$src" --write-image "$T/w1.img" || fail "--write-image failed"
"$EROFS_NBD" --export "$src" --write-image "$T/w2.img" || fail "--write-image failed"
cmp "$T/w1.img" "$T/w2.img" || fail "two --write-image runs differ"
cmp "$T/w1.img" "$T/copy.img" || fail "--write-image output differs from nbdcopy of the export" \
	"$(stat -c %s "$T/w1.img") bytes" "$(stat -c %s "$T/copy.img") bytes"
ok "deterministic; --write-image == nbdcopy ($(stat -c %s "$T/w1.img") bytes)"
rm -f "$T/w2.img"

check "the independent reader (treecmp.py --image) agrees with the source at 4 KiB"
treecmp "tests/erofs_reader.py's view of the 4 KiB image" --image "$src" "$T/w1.img"
rm -f "$T/w1.img"

# --- other block sizes -------------------------------------------------------------
page=$(getconf PAGESIZE)
for bs in 512 1024 16384 65536; do
	check "--block-size $bs"
	img=$T/bs$bs.img
	"$EROFS_NBD" --export "$src" --block-size $bs --write-image "$img" ||
		fail "--block-size $bs --write-image failed"
	treecmp "tests/erofs_reader.py's view of the $bs-byte-block image" --image "$src" "$img"
	if [ $bs -le "$page" ]; then
		mount_image "$img" "$T/mnt-$bs"
		treecmp "the kernel's mount of the $bs-byte-block image" --no-content "$src" "$T/mnt-$bs"
		umount "$T/mnt-$bs"
	elif mkdir -p "$T/mnt-copy2" && mount -t erofs -o ro,loop "$img" "$T/mnt-copy2" 2>/dev/null; then
		cleanup_fn _umount "$T/mnt-copy2"
		treecmp "the kernel's mount of the $bs-byte-block image" --no-content "$src" "$T/mnt-copy2"
		umount "$T/mnt-copy2"
	else
		echo "NOTE: this kernel (PAGE_SIZE $page) does not mount $bs-byte blocks" \
			"(blkszbits > PAGE_SHIFT); checked with tests/erofs_reader.py only"
	fi
	rm -f "$img"
done

echo "PASS: $TEST_NAME"
