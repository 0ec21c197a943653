#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/mktree.sh - builds a directory tree that covers every inode type and
# metadata corner EROFS has to represent, for the fidelity tests.
#
#   tests/mktree.sh [--small] DIR
#
# DIR must not exist yet (or be empty).  --small leaves out the slow parts
# (the 5 GiB sparse file and the 3000-entry directory) for tests that only
# need some content.  Needs root (devices, chown, trusted.* xattrs) and a
# file system with user/trusted/security xattrs and ACLs (ext4, xfs, tmpfs).
#
# What is in it:
#   sizes/        regular files of 0, 1, 4095, 4096, 4097 ... bytes, a few MB;
#                 tails that fit inline after the inode and ones that can't
#   sparse/       a 5 GiB file with data at a few offsets (extended inode,
#                 holes, data past 4 GiB), holes in the middle, a file that
#                 is all hole, one with a trailing hole
#   names/        names that stress the dirent sort order and nameoff:
#                 '+plus', '-dash', ' space', bytes >= 0x80, 255-byte names,
#                 prefixes of each other, a newline
#   many/         3000 entries (many directory blocks), each with the same
#                 security.selinux label (shared xattr)
#   empty/, deep/ empty directories, nested
#   links/        symlinks: short, ~4000 bytes, 4095 bytes, dangling,
#                 absolute, pointing outside the tree, with an xattr
#   hard1/ hard2/ hard-link groups, also across directories, of a symlink,
#                 of a fifo and of an empty file
#   special/      fifo, socket, char and block devices (also big major and
#                 minor numbers), the overlay whiteout (char 0:0)
#   modes/        setuid, setgid, sticky, 000, 777, dir 000, dir 1777
#   owners/       uid/gid 0, 1000, 65534, 65535, 65536, 100000, 4294967294
#   times/        mtimes with nanoseconds, before 1970, far future
#   xattrs/       user.*, trusted.*, security.* (selinux, capability),
#                 ACLs (access + default), binary and empty values, long
#                 names, many xattrs on one inode, xattrs on a dir, symlink,
#                 device and fifo
set -euo pipefail

small=0
if [ "${1:-}" = --small ]; then
	small=1
	shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--small] DIR" >&2; exit 2; }
D=$1
mkdir -p "$D"
D=$(cd "$D" && pwd)
cd "$D"

# Writes N pseudo-random bytes (deterministic per name) to a file.
randfile()
{
	local path=$1 n=$2
	python3 - "$path" "$n" <<'EOF'
import hashlib, sys
path, n = sys.argv[1], int(sys.argv[2])
seed = hashlib.sha256(path.encode()).digest()
out = bytearray()
i = 0
while len(out) < n:
	out += hashlib.sha256(seed + i.to_bytes(8, 'little')).digest()
	i += 1
with open(path, 'wb') as f:
	f.write(out[:n])
EOF
}

# Writes bytes at a byte offset of an existing file, without truncating it.
poke()
{
	local path=$1 off=$2 data=$3
	printf '%s' "$data" | dd of="$path" seek="$off" oflag=seek_bytes conv=notrunc status=none
}

# --- sizes/: regular files of interesting sizes ----------------------------
mkdir sizes
: > sizes/empty
printf 'x' > sizes/one
for n in 100 4095 4096 4097 8160 8161 8191 8192 12287 12289 65535 65537; do
	randfile "sizes/s$n" "$n"
done
randfile sizes/three-mb $((3 * 1024 * 1024 + 123))
# Tail of 4000 bytes after a big inode (many xattrs): cannot be inline.
randfile sizes/tail-no-inline $((4096 + 4000))
for i in $(seq 1 40); do
	setfattr -n "user.pad$i" -v "$(printf '%064d' "$i")" sizes/tail-no-inline
done
# Tail of 10 bytes: fits inline after the inode.
randfile sizes/tail-inline $((2 * 4096 + 10))
# A file full of zero bytes, written (not sparse).
head -c 20000 /dev/zero > sizes/zeros-written

# --- sparse/: holes -----------------------------------------------------------
mkdir sparse
if [ $small = 0 ]; then
	truncate -s 5G sparse/big5g
	randfile sparse/.chunk 4096
	dd if=sparse/.chunk of=sparse/big5g conv=notrunc status=none
	poke sparse/big5g $((2 * 1024 * 1024 * 1024 + 1234)) "data at 2 GiB + 1234"
	poke sparse/big5g $((4 * 1024 * 1024 * 1024 - 5)) "across the 4 GiB line"
	poke sparse/big5g $((5 * 1024 * 1024 * 1024 - 10)) "last bytes"
	rm sparse/.chunk
fi
# 8 MiB: data, hole, data in the middle, hole, data at the end.
truncate -s 8M sparse/middle-holes
randfile sparse/.c 8192
dd if=sparse/.c of=sparse/middle-holes conv=notrunc status=none
dd if=sparse/.c of=sparse/middle-holes bs=4096 seek=1024 conv=notrunc status=none
poke sparse/middle-holes $((8 * 1024 * 1024 - 7)) "the end"
rm sparse/.c
truncate -s 1M sparse/all-hole
printf 'head' > sparse/trailing-hole
truncate -s 3M sparse/trailing-hole
truncate -s 10000 sparse/small-hole	# a hole smaller than 3 blocks, odd size

# --- names/: sort order and name lengths ------------------------------------
mkdir names
for n in '+plus' '-dash' ' space' 'space ' 'a' 'a.b' 'ab' 'abc' 'abcd' 'abcde' \
	'a b' 'A' 'Z' '_' '~tilde' '.hidden' '..dots' '...' '#hash' '%pct' \
	'@at' '=eq' 'back\slash' 'star*' 'colon:' 'q?' 'brace{}' \
	$'tab\tname' $'new\nline' $'\x01ctrl' $'\x7fdel' \
	$'\x80' $'\xff' $'\xff\xfe' $'\xc3\xa9t\xc3\xa9' $'\xe2\x82\xac' $'\xf0\x9f\x98\x80' \
	"$(printf 'x%.0s' $(seq 255))" "$(printf 'y%.0s' $(seq 254))" \
	"$(printf '\xe9%.0s' $(seq 255))"; do
	printf '%s' "$n" > "names/$n"
done
mkdir names/long
for i in $(seq 1 40); do
	# 255-byte names: about 15 per 4 KiB directory block.
	n=$(printf 'n%03d' "$i")$(printf 'z%.0s' $(seq 251))
	: > "names/long/$n"
done
mkdir names/dir-and-file-prefix names/dir-and-file-prefix.d
: > names/dir-and-file-prefix.txt

# --- many/: a directory spanning many blocks --------------------------------
mkdir many
if [ $small = 0 ]; then
	nmany=3000
else
	nmany=300
fi
(
	cd many
	for i in $(seq 1 $nmany); do
		: > "entry-$(printf %04d "$i")-$((i * 7919 % 1000))"
	done
	mkdir sub
	: > sub/x
)
# The same label on every entry: a candidate for a shared xattr.
find many -mindepth 1 -print0 |
	xargs -0 setfattr -h -n security.selinux -v 'system_u:object_r:usr_t:s0'

# --- empty directories --------------------------------------------------------
mkdir empty
mkdir -p deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p

# --- links/: symlinks ---------------------------------------------------------
mkdir links
ln -s a links/short
ln -s ../sizes/one links/relative
ln -s "$(printf 'L%.0s' $(seq 4000))" links/long4000
ln -s "/$(printf 'p/%.0s' $(seq 2046))x" links/long4095	# 4095 bytes
ln -s does-not-exist links/dangling
ln -s /etc/passwd links/absolute
ln -s ../../../../../../outside/of/the/tree links/outside
ln -s . links/self
ln -s "$(printf '\xff\xfe')"' target with spaces' links/odd-bytes
ln -s short links/with-xattr
setfattr -h -n trusted.symlink -v on-a-symlink links/with-xattr
setfattr -h -n security.selinux -v 'system_u:object_r:usr_t:s0' links/with-xattr

# --- hard links -----------------------------------------------------------------
mkdir hard1 hard2
randfile hard1/data 5000
ln hard1/data hard1/data-link
ln hard1/data hard2/data-elsewhere
: > hard1/empty
ln hard1/empty hard2/empty-link
ln -s target hard1/symlink
ln -P hard1/symlink hard2/symlink-link
mkfifo hard1/fifo
ln hard1/fifo hard2/fifo-link
printf 'single' > hard2/single

# --- special/: fifo, socket, devices -------------------------------------------
mkdir special
mkfifo special/fifo
python3 -c 'import os, socket, sys; os.chdir(sys.argv[1]); socket.socket(socket.AF_UNIX).bind("socket")' special
mknod special/null c 1 3
mknod special/sda1 b 8 1
mknod special/bigmajor c 4095 1048575	# 12-bit major, 20-bit minor
mknod special/blkbig b 259 65536
mknod special/whiteout c 0 0		# overlayfs whiteout
chmod 0000 special/whiteout

# --- modes/ ---------------------------------------------------------------------
mkdir modes
for m in 4755 2755 6755 1755 0000 0777 0444 0111 0600 7777; do
	printf '%s' "$m" > "modes/f$m"
	chmod "$m" "modes/f$m"
done
mkdir modes/dir000 modes/dir1777 modes/dir2775 modes/dir0700
: > modes/dir000/inside
chmod 0000 modes/dir000
chmod 1777 modes/dir1777
chmod 2775 modes/dir2775
chmod 0700 modes/dir0700
mkfifo -m 0606 modes/fifo606

# --- owners/ --------------------------------------------------------------------
mkdir owners
for id in 0 1 1000 65534 65535 65536 100000 2147483648 4294967294; do
	printf '%s' "$id" > "owners/u$id"
	chown "$id:$((id == 0 ? 0 : id - 1))" "owners/u$id"
done
mkdir owners/dir-bigid
chown 123456:654321 owners/dir-bigid
ln -s u0 owners/link-bigid
chown -h 70000:70001 owners/link-bigid
mknod owners/dev-bigid c 1 5
chown 99999:99998 owners/dev-bigid

# --- times/ (set below, after everything else) --------------------------------
mkdir times
for f in nsec pre1970 epoch-1 zero future y2038 y2106 dirtime; do
	printf '%s' "$f" > "times/$f"
done
ln -s nsec times/link-time
mkdir times/dir-time

# --- xattrs/ --------------------------------------------------------------------
mkdir xattrs
printf 'x' > xattrs/file
setfattr -n user.plain -v hello xattrs/file
setfattr -n user.empty xattrs/file
setfattr -n user.binary -v 0x00ff00fe7f80c3 xattrs/file
setfattr -n trusted.overlay.opaque -v y xattrs/file
setfattr -n trusted.zero-bytes -v 0x0000000000 xattrs/file
setfattr -n security.foo -v bar xattrs/file
setfattr -n security.selinux -v 'system_u:object_r:etc_t:s0' xattrs/file
setfattr -n "user.$(printf 'n%.0s' $(seq 250))" -v long-name xattrs/file
setfattr -n user.bigvalue -v "$(printf 'v%.0s' $(seq 1500))" xattrs/file
printf 'y' > xattrs/cap
if command -v setcap >/dev/null; then
	setcap cap_net_raw,cap_net_bind_service+ep xattrs/cap
else
	setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 xattrs/cap
fi
printf 'z' > xattrs/acl
setfacl -m u:1234:r,g:4321:rw,m::rw xattrs/acl
mkdir xattrs/acldir
setfacl -m u:1234:rx xattrs/acldir
setfacl -d -m u:1234:rx,g:99:r xattrs/acldir
printf 'inherits' > xattrs/acldir/child
printf 'm' > xattrs/many
for i in $(seq 1 60); do
	setfattr -n "user.k$i" -v "value number $i" xattrs/many
done
mkdir xattrs/dir
setfattr -n user.on-dir -v d xattrs/dir
setfattr -n trusted.overlay.redirect -v /somewhere xattrs/dir
mknod xattrs/dev c 1 7
setfattr -n trusted.on-dev -v dev xattrs/dev
setfattr -n security.selinux -v 'system_u:object_r:null_device_t:s0' xattrs/dev
mkfifo xattrs/fifo
setfattr -n trusted.on-fifo -v fifo xattrs/fifo
# Same value, different names and namespaces.
printf 's' > xattrs/same-values
for ns in user trusted security; do
	setfattr -n "$ns.same" -v same-value xattrs/same-values
done

# --- the root's own metadata ------------------------------------------------------
setfattr -n user.root-xattr -v root .
chmod 0755 .

# --- mtimes last: creating entries changes their directory's mtime ----------------
settime()
{
	touch -h -d "$1" "$2"
}
settime '2021-05-06 07:08:09.123456789 UTC' times/nsec
settime '1960-02-29 12:00:00.5 UTC' times/pre1970
settime '1969-12-31 23:59:59.999999999 UTC' times/epoch-1
settime '1970-01-01 00:00:00 UTC' times/zero
settime '2400-01-01 00:00:00.000000001 UTC' times/future
settime '2038-01-19 03:14:08 UTC' times/y2038
settime '2106-02-07 06:28:16 UTC' times/y2106
settime '2001-01-01 00:00:00.000000123 UTC' times/link-time
settime '1999-12-31 23:59:59.987654321 UTC' times/dir-time
settime '2010-10-10 10:10:10.101010101 UTC' times/dirtime
# Every directory, deepest first, gets a distinct time with nanoseconds.
i=0
find . -depth -type d -print0 | while IFS= read -r -d '' d; do
	i=$((i + 1))
	[ "$d" = ./times/dir-time ] && continue
	touch -h -d "@$((1600000000 + i * 3601)).$(printf '%09d' $((i * 7654321 % 1000000000)))" "$d"
done
