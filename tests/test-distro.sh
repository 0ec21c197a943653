#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-distro.sh - a real distribution tree survives the round trip.
#
# Serves a Debian bookworm minbase tree (debootstrap) and reads it back:
# nbdcopy -> fsck.erofs --extract -> mount -t erofs -o ro,loop -> treecmp.py against
# the tree, the same through a live nbdfuse mount, and the image through
# the independent reader (treecmp.py --image).
#
# The tree is built once and reused: $EROFS_NBD_TEST_CACHE (default
# /var/cache/erofs-nbd-tests/debian-minbase), complete when
# $EROFS_NBD_TEST_CACHE.done exists.  The first build takes a few minutes
# and uses the Debian mirror apt is configured with (override with
# EROFS_NBD_TEST_MIRROR).  Skips (77) when the mirror cannot be reached.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires nbdcopy
requires fsck.erofs
requires python3
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null ||
	skip "the kernel has no EROFS support"

cache=${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests/debian-minbase}
suite=bookworm

. "$(dirname "$0")/apt-mirror.sh"

# build_tree DIR: debootstrap the $suite minbase tree into DIR.
build_tree()
{
	local mirror=${EROFS_NBD_TEST_MIRROR:-$(apt_mirror)}
	requires debootstrap
	check "building the $suite minbase tree in $cache (once; mirror $mirror)"
	if command -v curl >/dev/null; then
		timeout 30 curl -sfI "$mirror/dists/$suite/Release" >/dev/null ||
			skip "Debian mirror $mirror unreachable; cannot debootstrap"
	elif command -v wget >/dev/null; then
		timeout 30 wget -q --spider "$mirror/dists/$suite/Release" ||
			skip "Debian mirror $mirror unreachable; cannot debootstrap"
	fi
	if ! timeout 1500 debootstrap --variant=minbase "$suite" "$1" "$mirror" \
		>"$cache.log" 2>&1; then
		tail -n 20 "$cache.log"
		rm -rf --one-file-system "$1"
		skip "debootstrap $suite from $mirror failed (see above; log in $cache.log)"
	fi
}
cached_build "$cache" build_tree
echo "tree: $cache ($(find "$cache" -xdev | wc -l) entries, $(du -sh "$cache" | cut -f1))"

tmpdir
start_server "$cache"
SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk

check "nbdcopy the export, fsck.erofs --extract (decodes every file)"
timeout 300 nbdcopy "$SRV_URI" "$T/img" || fail "nbdcopy failed"
# (--extract reads each file in one piece: fine here, while erofs-utils
# 1.5 fails on files of 2 GiB or more, so test-fidelity runs plain fsck.)
timeout 300 fsck.erofs --extract "$T/img" || fail "fsck.erofs --extract rejects the image"
ok "fsck.erofs"

check "mount -t erofs -o ro,loop and compare with the tree"
mount_image "$T/img" "$T/mnt"
timeout 900 python3 "$TESTS_DIR/treecmp.py" "$cache" "$T/mnt" ||
	fail "the mounted image differs from $cache (lines above)"
umount "$T/mnt"

check "the independent reader agrees"
timeout 900 python3 "$TESTS_DIR/treecmp.py" --image "$cache" "$T/img" ||
	fail "erofs_reader.py's view differs from $cache (lines above)"

check "the live nbdfuse mount agrees"
if [ -c /dev/fuse ] && command -v nbdfuse >/dev/null; then
	nbdfuse_start "$SRV_URI" "$T/fuse"
	mount_image "$T/fuse/nbd" "$T/live"
	timeout 900 python3 "$TESTS_DIR/treecmp.py" "$cache" "$T/live" ||
		fail "the live mount differs from $cache (lines above)"
	umount "$T/live"
	fusermount3 -u "$T/fuse"
else
	echo "NOTE: no /dev/fuse or nbdfuse; live mount skipped"
fi

check "--write-image equals the export"
"$EROFS_NBD" --export "$cache" --image-export root --write-image "$T/w.img" || fail "--write-image failed"
cmp "$T/w.img" "$T/img" || fail "--write-image differs from nbdcopy of the export"

server_alive || fail "the server died"
rc=0
stop_server || rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM" 0 "$rc"
echo "PASS: $TEST_NAME"
