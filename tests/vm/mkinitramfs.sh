#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/vm/mkinitramfs.sh - builds the small initramfs the VM test boots:
# a static busybox, tests/vm/init as /init, and the kernel modules needed
# to reach an EROFS root on a virtio-blk disk (virtio_pci, virtio_blk,
# erofs and everything modules.dep says they need), decompressed, with
# /modules.list giving their load order.
#
#   tests/vm/mkinitramfs.sh KVER OUT.cpio.gz
#
# KVER names /lib/modules/KVER (e.g. 6.1.0-56-amd64).  Exits 77 when
# something it needs (busybox, modules, cpio) is missing, 1 on error.
# Environment (all optional; tests/test-efi.sh and tests/test-arm64-vm.sh use them):
#   BUSYBOX=PATH, BUSYBOX_LIST=PATH  the busybox to install (default
#                             /bin/busybox) and one this machine can run
#                             to list its applets (default: the same)
#   MKINITRAMFS_MODDIR=DIR    the modules of KVER (default /lib/modules/KVER;
#                             another architecture's, extracted from its package)
#   MKINITRAMFS_INIT=PATH     the script to install as /init (default
#                             tests/vm/init next to this script)
#   MKINITRAMFS_MODULES=NAMES more modules to include (space-separated,
#                             e.g. "efivarfs"), after the default ones
set -euo pipefail

die() { echo "mkinitramfs: $*" >&2; exit 1; }
skip() { echo "mkinitramfs: SKIP: $*" >&2; exit 77; }

[ $# -eq 2 ] || die "usage: $0 KVER OUT.cpio.gz"
kver=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
moddir=${MKINITRAMFS_MODDIR:-/lib/modules/$kver}
busybox=${BUSYBOX:-/bin/busybox}
init=${MKINITRAMFS_INIT:-$here/init}
[ -r "$init" ] || die "no init script '$init'"

[ -f "$moddir/modules.dep" ] || skip "no $moddir/modules.dep"
[ -x "$busybox" ] || skip "no $busybox (install busybox-static)"
# ldd fails (exit 1) on a static binary, saying so.
case $(ldd "$busybox" 2>&1 || true) in
*"not a dynamic executable"* | *"statically linked"*) ;;
*) skip "$busybox is not statically linked (install busybox-static)" ;;
esac
command -v cpio >/dev/null || skip "no cpio"

# The wanted modules, roots first.  crc32c_generic is libcrc32c's softdep
# ("pre: crc32c"): without modprobe in the initramfs nothing would load
# it, and erofs -> libcrc32c fails to initialise.  Modules built into the
# kernel are simply absent from modules.dep and skipped.
wanted=(crc32c_generic virtio_pci virtio_blk erofs)
read -r -a extra <<<"${MKINITRAMFS_MODULES:-}"
wanted+=(${extra[@]+"${extra[@]}"})

# modpath NAME: the modules.dep key (relative path) of module NAME, or
# nothing when the module is built in.  Names may use - or _.
modpath() {
	local n=${1//-/[-_]}
	n=${n//_/[-_]}
	awk -F: -v re="/${n}[.]ko([.](xz|zst|gz))?$" \
		'$1 ~ re { print $1; exit }' "$moddir/modules.dep"
}

# moddeps PATH: the dependencies modules.dep lists for PATH.
moddeps() {
	awk -F: -v k="$1" '$1 == k { sub(/^ +/, "", $2); print $2; exit }' \
		"$moddir/modules.dep"
}

order=()
declare -A seen=()
# add PATH: appends PATH after its dependencies (depth first).
add() {
	local p=$1 d deps
	[ -n "${seen[$p]:-}" ] && return 0
	seen[$p]=1
	deps=$(moddeps "$p")
	for d in $deps; do
		add "$d"
	done
	order+=("$p")
}

for m in "${wanted[@]}"; do
	p=$(modpath "$m")
	if [ -z "$p" ]; then
		grep -qE "/${m}[.]ko" "$moddir/modules.builtin" 2>/dev/null ||
			echo "mkinitramfs: note: module $m not found, assuming built in" >&2
		continue
	fi
	add "$p"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/mkinitramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,newroot,lib/modules}

cp "$busybox" "$root/bin/busybox"
for applet in $("${BUSYBOX_LIST:-$busybox}" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$init" "$root/init"

: >"$root/modules.list"
for p in "${order[@]}"; do
	src=$moddir/$p
	name=$(basename "$p")
	case $name in
	*.ko.xz) name=${name%.xz}; xz -dc "$src" >"$root/lib/modules/$name" ;;
	*.ko.zst) name=${name%.zst}; zstd -qdc "$src" >"$root/lib/modules/$name" ;;
	*.ko.gz) name=${name%.gz}; gzip -dc "$src" >"$root/lib/modules/$name" ;;
	*.ko) cp "$src" "$root/lib/modules/$name" ;;
	*) die "unexpected module file '$p'" ;;
	esac
	echo "$name" >>"$root/modules.list"
done

# The kernel opens /dev/console for init's stdio before init runs; make
# the node when we may (root), else init reopens it from devtmpfs.
mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
(cd "$root" && { echo .; find . -mindepth 1; } | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0) >"$work/initramfs.cpio"
gzip -9 -c "$work/initramfs.cpio" >"$out"
echo "mkinitramfs: $(wc -l <"$root/modules.list") modules:" \
	"$(tr '\n' ' ' <"$root/modules.list")" >&2
