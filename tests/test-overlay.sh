#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-overlay.sh - erofs-nbd --lowerdir/--upperdir against the
# kernel's overlayfs: 0 differences.
#
# Each stack is mounted read-only by the kernel (mount -t overlay, with
# userxattr for user.overlay.* stacks) and served by erofs-nbd; the export
# is read back with nbdcopy, checked with fsck.erofs and mounted with
# mount -t erofs (and once live through nbdfuse), and the two mounts are
# compared by lookup with tests/treecmp.py --overlay: names, types, modes,
# owners, mtimes, sizes, contents, symlink targets, rdev, xattrs (the
# kernel hides its private ones) and hard-link groups, with our link
# counts equal to the names that stay visible.
#
# Stacks (tests/mkstack.py; every rule, 64 layers):
#   trusted   trusted.overlay.* marks, 0/0 and xattr whiteouts, opaque
#             (and once with 500 layers, the kernel's limit, and with an
#             upper dir on them, under a soft limit of 300 fds; and once
#             with 8 layers, the top and one lower on a tmpfs each)
#   user      the same with user.overlay.* (-o userxattr / --userxattr)
#   aufs      .wh. files (--aufs-whiteouts) against the kernel's mount of
#             the same stack in overlay form
#   upper     a container's upper directory made by the kernel itself: an
#             overlay mounted read-write over the trusted stack, changed
#             (rm, rm -r, mkdir over a removed directory, copy-ups by
#             chmod, chown, append, hard links and renames, new files),
#             then served as --upperdir
# Then: the same stack gives the same bytes, also from a copy; the export
# description names the stack; what a read-only merge cannot show
# (metacopy, redirect, data-only layers) and bad command lines fail with a
# message; a layer file changed while served reads as EIO while the rest
# still reads.
#
# Needs root, overlayfs and EROFS in the kernel, loop devices; nbdfuse for
# the live mount.  Takes about a minute.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires nbdcopy
requires nbdinfo
requires fsck.erofs
requires python3
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
	skip "the kernel has no overlayfs"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null ||
	skip "the kernel has no EROFS support"

tmpdir
mkstack() { python3 "$TESTS_DIR/mkstack.py" "$@"; }

# abs_lowerdir DIR LIST: LIST ("00:01:...") made of absolute paths under DIR.
abs_lowerdir() {
	local dir=$1 list=$2 out= l
	IFS=: read -r -a parts <<<"$list"
	for l in "${parts[@]}"; do out+=${out:+:}$dir/$l; done
	echo "$out"
}

# kmount DIR MNT OPTS: a read-only overlay mount; OPTS name layers
# relative to DIR (which keeps 64 of them within a page of options).
kmount() {
	local dir=$1 mnt=$2 opts=$3
	mkdir -p "$mnt"
	(cd "$dir" && mount -t overlay overlay -o "ro,$opts" "$mnt") ||
		fail "mount -t overlay -o ro,$opts failed"
	cleanup_fn _umount "$mnt"
}

# compare NAME KERNEL-MNT SERVER-ARGS...: serves, reads back, compares.
compare() {
	local name=$1 kern=$2 img=$T/$1.img
	shift 2
	local args="$*"
	[ ${#args} -le 100 ] || args="${args:0:60}...${args: -30}"
	check "$name: serve $args and compare with the kernel's mount"
	start_server "" "$@"	# --export "": not given
	timeout 300 nbdcopy "$(export_uri root)" "$img" || fail "$name: nbdcopy failed"
	timeout 300 fsck.erofs "$img" >/dev/null || fail "$name: fsck.erofs rejects the image"
	mount_image "$img" "$T/$name.mnt"
	timeout 600 python3 "$TESTS_DIR/treecmp.py" --overlay "$kern" "$T/$name.mnt" ||
		fail "$name: our merge differs from the kernel's (lines above: path: what: kernel, ours)"
	ok "$name: 0 differences"
	umount "$T/$name.mnt"
}

# --- trusted.overlay.*, 64 layers ---------------------------------------------------
S=$T/trusted
L=$(mkstack --layers 64 "$S")
kmount "$S" "$T/k-trusted" "lowerdir=$L"
LOWER=$(abs_lowerdir "$S" "$L")
compare trusted "$T/k-trusted" --lowerdir "$LOWER"
n=$(find "$T/k-trusted" | wc -l)
[ "$n" -gt 150 ] || fail "the kernel's view of the stack is too small to mean much" ">150 entries" "$n"

check "trusted: the live nbdfuse mount agrees"
if [ -c /dev/fuse ] && command -v nbdfuse >/dev/null; then
	nbdfuse_start "$(export_uri root)" "$T/fuse"
	mount_image "$T/fuse/nbd" "$T/live"
	timeout 600 python3 "$TESTS_DIR/treecmp.py" --overlay "$T/k-trusted" "$T/live" ||
		fail "the live mount differs from the kernel's"
	umount "$T/live"
	fusermount3 -u "$T/fuse"
	ok "live mount: 0 differences"
else
	echo "NOTE: no /dev/fuse or nbdfuse: live mount not tested"
fi

check "the export description names the stack"
desc=$(nbdinfo --list "$SRV_URI" | sed -n 's/^[[:space:]]*description: //p' | grep -m1 'EROFS root file system')
case $desc in
"EROFS root file system of overlay lowerdir=$S/00:$S/01:"*) ok "description: ${desc:0:80}..." ;;
*) fail "export description" "EROFS root file system of overlay lowerdir=$S/00:..." "$desc" ;;
esac
stop_server || fail "the server did not exit 0 on SIGTERM"

# --- the kernel's maximum: 500 layers ------------------------------------------------
# A soft limit of 300, below the layer count: the walk raises it, and
# what it puts back must leave room for the layers' fds it keeps.
check "500 layers (the kernel's limit), and an upper dir on them, under a soft limit of 300 open files"
L=$(mkstack --layers 500 "$T/big")
kmount "$T/big" "$T/k-big" "lowerdir=$L"
(ulimit -Sn 300 && "$EROFS_NBD" --lowerdir "$(abs_lowerdir "$T/big" "$L")" --image-export root \
	--write-image "$T/big.img" 2>"$T/big.err") || { cat "$T/big.err"; fail "500 layers failed"; }
mount_image "$T/big.img" "$T/big.mnt"
timeout 600 python3 "$TESTS_DIR/treecmp.py" --overlay "$T/k-big" "$T/big.mnt" ||
	fail "500 layers: our merge differs from the kernel's"
ok "500 layers: 0 differences"
umount "$T/big.mnt" "$T/k-big"
# overlayfs takes an upper dir above its 500 lowers: so do we.
mkdir -p "$T/big/up/d" "$T/big/work"
echo upper >"$T/big/up/d/upper-file"
kmount "$T/big" "$T/k-big" "upperdir=up,workdir=work,lowerdir=$L"
(ulimit -Sn 300 && "$EROFS_NBD" --lowerdir "$(abs_lowerdir "$T/big" "$L")" --upperdir "$T/big/up" \
	--image-export root --write-image "$T/big.img" 2>"$T/big.err") ||
	{ cat "$T/big.err"; fail "500 layers and an upper dir failed"; }
mount_image "$T/big.img" "$T/big.mnt"
timeout 600 python3 "$TESTS_DIR/treecmp.py" --overlay "$T/k-big" "$T/big.mnt" ||
	fail "500 layers and an upper dir: our merge differs from the kernel's"
ok "500 layers and an upper dir: 0 differences"
umount "$T/big.mnt" "$T/k-big"
# One lower more than the kernel takes: refused, the message naming the limit.
if "$EROFS_NBD" --lowerdir "$(abs_lowerdir "$T/big" "$L"):$T/big/up" --image-export root \
	--write-image "$T/big.img" 2>"$T/big.err"; then
	fail "501 lower layers were accepted"
fi
grep -q "more than 500 layers" "$T/big.err" ||
	{ cat "$T/big.err"; fail "501 lower layers: the message does not name the limit of 500"; }
ok "501 lower layers: refused, naming the limit"
rm -rf "$T/big" "$T/big.img"

# --- layers on file systems of their own ---------------------------------------------
# The top layer and one lower each on a tmpfs of their own, the others on
# $T's file system: each entry is checked against its own layer's mount
# (a file system inside a layer is left out, a layer root on another one
# is not), as the kernel's overlay takes layers from any mounts.
check "layers on mounts of their own: the top and one lower on a tmpfs each"
mkdir -p "$T/mnts/00" "$T/mnts/04"
for l in 00 04; do
	mount -t tmpfs -o mode=0755 erofs-nbd-test "$T/mnts/$l" || fail "mount -t tmpfs failed"
	cleanup_fn _umount "$T/mnts/$l"
done
L=$(mkstack --layers 8 "$T/mnts")
kmount "$T/mnts" "$T/k-mnts" "lowerdir=$L"
"$EROFS_NBD" --lowerdir "$(abs_lowerdir "$T/mnts" "$L")" --image-export root \
	--write-image "$T/mnts.img" 2>"$T/mnts.err" || { cat "$T/mnts.err"; fail "serving layers on tmpfs failed"; }
mount_image "$T/mnts.img" "$T/mnts.mnt"
timeout 600 python3 "$TESTS_DIR/treecmp.py" --overlay "$T/k-mnts" "$T/mnts.mnt" ||
	fail "layers on tmpfs: our merge differs from the kernel's"
ok "layers on tmpfs: 0 differences"
umount "$T/mnts.mnt" "$T/k-mnts" "$T/mnts/00" "$T/mnts/04"
rm -rf "$T/mnts" "$T/mnts.img"

# --- user.overlay.* (rootless stacks) ------------------------------------------------
U=$T/user
L=$(mkstack --ns user --layers 64 "$U")
kmount "$U" "$T/k-user" "userxattr,lowerdir=$L"
compare user "$T/k-user" --lowerdir "$(abs_lowerdir "$U" "$L")" --userxattr
stop_server

# --- AUFS form (stores with a mount program) -------------------------------------------
L=$(mkstack --aufs --layers 64 "$T/aufs")
mkstack --portable --layers 64 "$T/portable" >/dev/null
kmount "$T/portable" "$T/k-aufs" "lowerdir=$L"
compare aufs "$T/k-aufs" --lowerdir "$(abs_lowerdir "$T/aufs" "$L")" --aufs-whiteouts
stop_server

# --- an upper directory the kernel wrote ------------------------------------------------
check "upper: a read-write overlay over a copy of the trusted stack, changed"
cp -a "$S" "$T/u"
mkdir "$T/u/upper" "$T/u/work" "$T/rw"
L=$(cd "$T/u" && ls -d [0-9][0-9] | tr '\n' : | sed 's/:$//')
(cd "$T/u" && mount -t overlay overlay -o "lowerdir=$L,upperdir=upper,workdir=work" "$T/rw") ||
	fail "read-write overlay mount failed"
cleanup_fn _umount "$T/rw"
(
	cd "$T/rw"
	rm m/big h/tri2 names/-dash
	rm -r o many/d03
	mkdir o && echo new >o/fresh
	chmod 0600 m/f1 && chown 7:8 bottom-only
	echo more >>middle-only
	ln h/keep1 h/keep3
	mv m/sparse m/moved
	mv many/d05 d05-moved
	touch -d @1700000000 m
	mkfifo new-fifo
	setfattr -n user.added -v yes h/keep2
)
umount "$T/rw"
kmount "$T/u" "$T/k-upper" "upperdir=upper,workdir=work,lowerdir=$L"
compare upper "$T/k-upper" --upperdir "$T/u/upper" --lowerdir "$(abs_lowerdir "$T/u" "$L")"
getfattr -d -m trusted.overlay -R "$T/u/upper" 2>/dev/null | grep -q trusted.overlay.origin ||
	echo "NOTE: this kernel wrote no overlay.origin into the upper directory"
stop_server

# --- determinism ------------------------------------------------------------------------
check "the same stack gives the same bytes, also from a copy a second later"
"$EROFS_NBD" --lowerdir "$LOWER" --image-export root --write-image "$T/w1.img" 2>/dev/null ||
	fail "--write-image of the stack failed"
cmp "$T/w1.img" "$T/trusted.img" || fail "--write-image differs from nbdcopy of the export"
cp -a "$S" "$T/copy"
sleep 1
"$EROFS_NBD" --lowerdir "$(abs_lowerdir "$T/copy" "$(cd "$S" && ls -d [0-9][0-9] | tr '\n' : | sed 's/:$//')")" \
	--image-export root --write-image "$T/w2.img" 2>/dev/null || fail "--write-image of the copy failed"
cmp "$T/w1.img" "$T/w2.img" || fail "a copy of the stack gives other bytes"
rm -rf "$T/copy" "$T/w2.img"
ok "deterministic"

# --- refusals and bad command lines ------------------------------------------------------
# must_fail STATUS TEXT ARGS...: erofs-nbd exits STATUS and says TEXT.
must_fail() {
	local want=$1 text=$2 rc=0
	shift 2
	"$EROFS_NBD" "$@" --image-export root --write-image "$T/bad.img" >/dev/null 2>"$T/bad.err" || rc=$?
	[ "$rc" = "$want" ] || fail "erofs-nbd $* exited $rc" "$want" "$rc"
	grep -qF -- "$text" "$T/bad.err" || fail "erofs-nbd $*: message" "$text" "$(cat "$T/bad.err")"
	[ ! -e "$T/bad.img" ] || fail "erofs-nbd $* left an image behind"
	ok "refused: $(head -n1 "$T/bad.err")"
}
check "what only metacopy, redirect_dir or data-only layers could show is refused"
B=$T/bad
mkdir -p "$B/top/d" "$B/low/moved" "$B/top/f" "$B/low2"
echo x >"$B/low/moved/x"
setfattr -n trusted.overlay.redirect -v moved "$B/top/d"
must_fail 1 "'$B/top/d': trusted.overlay.redirect" --lowerdir "$B/top:$B/low"
setfattr -x trusted.overlay.redirect "$B/top/d"
rmdir "$B/top/f"
: >"$B/top/f"
echo data >"$B/low/f"
setfattr -n trusted.overlay.metacopy "$B/top/f"
must_fail 1 "'$B/top/f': trusted.overlay.metacopy" --lowerdir "$B/top:$B/low"
must_fail 1 "data-only layers" --lowerdir "$B/top::$B/low"
must_fail 1 "'$B/missing': opening layer: No such file or directory" --lowerdir "$B/low:$B/missing"
must_fail 2 "exactly one of" --lowerdir "$B/low" --export "$B/low"
must_fail 2 "exactly one of" --image x --lowerdir "$B/low"
must_fail 2 "--upperdir goes with --lowerdir" --export "$B/low" --upperdir "$B/top"
must_fail 2 "exactly one of" --export ""
# user.overlay.* marks are data to a trusted merge, and the other way round.
setfattr -x trusted.overlay.metacopy "$B/top/f"
setfattr -n user.overlay.metacopy "$B/top/f"
"$EROFS_NBD" --lowerdir "$B/top:$B/low" --image-export root --write-image "$T/ok.img" 2>/dev/null ||
	fail "user.overlay.metacopy stopped a trusted.overlay merge"
must_fail 1 "user.overlay.metacopy" --lowerdir "$B/top:$B/low" --userxattr

# --- a layer changed while served ---------------------------------------------------------
check "a file of a lower layer changed while served reads as EIO; the rest still reads"
C=$T/chg
mkdir -p "$C/top" "$C/low"
head -c 200000 /dev/urandom >"$C/low/big"
echo small >"$C/top/small"
start_server "" --lowerdir "$C/top:$C/low" --no-inline-data
if [ -c /dev/fuse ] && command -v nbdfuse >/dev/null; then
	nbdfuse_start "$(export_uri root)" "$T/fuse2"
	mount_image "$T/fuse2/nbd" "$T/live2"
	head -c 200000 /dev/urandom >"$C/low/big"	# same size, other bytes and mtime
	if cat "$T/live2/big" >/dev/null 2>"$T/eio.err"; then
		fail "reading a changed layer file succeeded"
	fi
	grep -q "Input/output error" "$T/eio.err" || fail "reading a changed file" "EIO" "$(cat "$T/eio.err")"
	[ "$(cat "$T/live2/small")" = small ] || fail "the unchanged file no longer reads"
	server_alive || fail "the server died"
	grep -q "big" "$SRV_LOG" || fail "the server's log does not name the changed file"
	umount "$T/live2"
	ok "EIO for the changed file, the rest reads, the server lives"
else
	echo "NOTE: no nbdfuse: change detection checked by the unit tests only"
fi
stop_server || fail "the server did not exit 0"

echo "PASS: $TEST_NAME"
