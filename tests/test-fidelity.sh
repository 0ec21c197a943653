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
# every namespace, hard-link groups, sizes and bytes).  Then: --write-image
# of the tree and of a copy of it (cp -a, a second later) give identical
# bytes, equal to what nbdcopy fetched;
# --block-size 512/1024 and --no-inline-data images mount and compare;
# 16384/65536 images, which no kernel up to 6.18 mounts on 4 KiB pages
# (blkszbits > PAGE_SHIFT), are checked by tests/erofs_reader.py
# (treecmp.py --image), an independent reader of the format, as all
# variants are.  Last, a tree with a path longer than PATH_MAX: the
# kernel's mount of its image matches it, and the image written as uid
# 65534 (no file handles: every read by path) is the same.
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
requires setpriv
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null ||
	skip "the kernel has no EROFS support"

tmpdir
touch "$T/probe"
setfattr -n user.probe -v 1 "$T/probe" 2>/dev/null && setfacl -m u:1:r "$T/probe" 2>/dev/null ||
	skip "the file system of ${TMPDIR:-/tmp} lacks user xattrs or ACLs (set TMPDIR)"
rm "$T/probe"
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
SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk

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
check "--write-image is deterministic (also for a copy of the tree, a second later) and equals the export"
"$EROFS_NBD" --export "$src" --image-export root --write-image "$T/w1.img" || fail "--write-image failed"
# The copy has other inode numbers, another path and other ctimes: none
# of that may leak into the image; nor may the time of day.
cp -a "$src" "$T/src-copy"
sleep 1
"$EROFS_NBD" --export "$T/src-copy" --image-export root --write-image "$T/w2.img" || fail "--write-image failed"
rm -rf "$T/src-copy"
# imgcmp.py is cmp(1) that skips the holes both files share (5 GiB here).
imgcmp()
{
	timeout 600 python3 "$TESTS_DIR/imgcmp.py" "$@"
}
imgcmp "$T/w1.img" "$T/w2.img" || fail "--write-image of the tree and of its copy differ"
imgcmp "$T/w1.img" "$T/copy.img" || fail "--write-image output differs from nbdcopy of the export" \
	"$(stat -c %s "$T/w1.img") bytes" "$(stat -c %s "$T/copy.img") bytes"
ok "deterministic; --write-image == nbdcopy ($(stat -c %s "$T/w1.img") bytes)"
rm -f "$T/w2.img"

check "the independent reader (treecmp.py --image) agrees with the source at 4 KiB"
treecmp "tests/erofs_reader.py's view of the 4 KiB image" --image "$src" "$T/w1.img"
rm -f "$T/w1.img"

# --- other block sizes, and files never inline ---------------------------------------
page=$(getconf PAGESIZE)
for variant in 512 1024 16384 65536 no-inline-data 512,no-inline-data; do
	bs=${variant%%,*}
	args=()
	case $variant in
	no-inline-data) bs=4096; args=(--no-inline-data) ;;
	*,no-inline-data) args=(--block-size "$bs" --no-inline-data) ;;
	*) args=(--block-size "$bs") ;;
	esac
	check "${args[*]}"
	img=$T/variant.img
	"$EROFS_NBD" --export "$src" "${args[@]}" --image-export root --write-image "$img" ||
		fail "${args[*]} --write-image failed"
	# Every file's bytes are compared except the 5 GiB one's (compared
	# three times at 4 KiB above): reading it again per variant would
	# double the test's time.  Its size and metadata are still compared.
	treecmp "tests/erofs_reader.py's view of the ${args[*]} image" \
		--max-content-size $((1 << 30)) --image "$src" "$img"
	if [ "$bs" = 4096 ]; then
		timeout 300 fsck.erofs "$img" || fail "fsck.erofs rejects the ${args[*]} image"
	fi
	mkdir -p "$T/mnt-variant"
	if [ "$bs" -le "$page" ]; then
		mount_image "$img" "$T/mnt-variant"
		treecmp "the kernel's mount of the ${args[*]} image" \
			--max-content-size $((1 << 30)) "$src" "$T/mnt-variant"
		umount "$T/mnt-variant"
	elif mount -t erofs -o ro,loop "$img" "$T/mnt-variant" 2>/dev/null; then
		cleanup_fn _umount "$T/mnt-variant"
		treecmp "the kernel's mount of the ${args[*]} image" \
			--max-content-size $((1 << 30)) "$src" "$T/mnt-variant"
		umount "$T/mnt-variant"
	else
		echo "NOTE: this kernel (PAGE_SIZE $page) does not mount $bs-byte blocks" \
			"(blkszbits > PAGE_SHIFT); checked with tests/erofs_reader.py only"
	fi
	rm -f "$img"
done

# --- a path longer than PATH_MAX ---------------------------------------------------
# Tools that take whole paths (cp, touch) cannot reach it, so it is a tree
# of its own, not part of mktree.sh's.  Read back by the kernel's mount;
# and written again as uid 65534, who cannot open file handles: the
# server's reads then go by path, one directory at a time past PATH_MAX.
check "a path longer than PATH_MAX (20 levels of 250-byte names)"
chmod 0755 "$T"
lt=$T/long
mkdir "$lt"
(
	cd "$lt"
	for i in $(seq 1 20); do
		n=$(printf 'level%02d-%0241d' "$i" "$i")
		mkdir "$n"
		cd "$n"
	done
	echo "twenty levels down" >file
	head -c 10000 /dev/urandom >blocks
	ln -s ../../.. up
	setfattr -n user.depth -v 20 file
)
"$EROFS_NBD" --export "$lt" --image-export root --write-image "$T/long.img" ||
	fail "--write-image of the long tree failed"
timeout 60 fsck.erofs "$T/long.img" || fail "fsck.erofs rejects the long tree's image"
mount_image "$T/long.img" "$T/mnt-long"
treecmp "the kernel's mount of the long tree" "$lt" "$T/mnt-long"
umount "$T/mnt-long"
mkdir "$T/nobody"
chown 65534:65534 "$T/nobody"
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
	"$EROFS_NBD" --export "$lt" --image-export root --write-image "$T/nobody/long.img" ||
	fail "--write-image of the long tree as uid 65534 failed"
cmp "$T/long.img" "$T/nobody/long.img" ||
	fail "the long tree's image written as uid 65534 (by path) differs from root's (by handle)"
ok "the long tree: mount matches; the same image by path as uid 65534"

echo "PASS: $TEST_NAME"
