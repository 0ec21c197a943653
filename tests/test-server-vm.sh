#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: boots a QEMU guest (TCG) in which the server runs
# tests/test-server-vm.sh - erofs-nbd on Debian 12's own kernel.
#
# The other tests run the server on the machine's kernel, which may be
# far newer than the 6.1 a Debian 12 host boots; the server has paths
# for older kernels (xattrs read through /proc/self/fd before
# listxattrat, statx of "" before a NULL path, page-cache probes before
# cachestat, splice into a Unix socket before MSG_SPLICE_PAGES).  Here
# QEMU boots the Debian kernel with a root tree served by erofs-nbd on
# this machine: a static busybox, the erofs-nbd under test and
# tests/soak/nbd-soak.c's client with the libraries they need (readelf's
# NEEDED, recursively), and tests/vm/server-init as /init.  A second
# disk, ext4, holds tests/mktree.sh's corner-case tree (--small) and
# tests/mkstack.py's stack of 64 layers as this machine's kernel wrote
# them.  In the guest, erofs-nbd must write the same images of both as
# this machine's server, serve the tree's byte for byte to nbd-soak
# with the io_uring loop, the plain loop and --immutable-sources, and
# answer EIO for a file rewritten in place with its size and mtime kept,
# naming it in its log; then the kernel's own NBD client (Debian's
# nbd-client, fetched with apt-get download once per machine, and the nbd
# module) must read the root export's bytes and mount the tree, after
# NBD_OPT_GO and after NBD_OPT_EXPORT_NAME (tests/vm/server-init says how).
#
# SERVER_VM_ARCH picks the guest (tests/test-server-vm-arm64.sh sets it):
#   x86_64   (default) /boot/vmlinuz-KVER, the linux-image-amd64 of
#            tests/test-vm.sh, and $EROFS_NBD itself;
#   aarch64  the arm64 kernel of arm64_pkgs (tests/functions.sh) on
#            qemu-system-aarch64 -machine virt, the server of `make
#            all-aarch64` (build-aarch64/), as podman machine on Apple
#            silicon runs it; nbd-soak cross-built against Debian's
#            libnbd0:arm64 and the libraries it needs, fetched with
#            apt-get download once per machine (libnbd-dev:arm64 cannot
#            be installed beside the amd64 one).
#
# TCG unless EROFS_NBD_VM_ACCEL=kvm (x86_64 only); EROFS_NBD_VM_TIMEOUT=secs
# bounds the guest (default 600).  Needs root (loop mount, mktree.sh),
# QEMU, the kernel and busybox-static; about 1 (x86_64) to 3 (aarch64)
# minutes.
# Exit: 0 pass, 77 skip, 1 fail.
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"
here=$TESTS_DIR

arch=${SERVER_VM_ARCH:-x86_64}
requires_root
requires mkfs.ext4
requires python3
requires sfdisk
requires readelf
requires test -x /bin/busybox
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at '$EROFS_NBD'"
accel=${EROFS_NBD_VM_ACCEL:-tcg}
tmo=${EROFS_NBD_VM_TIMEOUT:-600}
tmpdir

case $arch in
x86_64)
	qemu=$(command -v qemu-system-x86_64) || skip "no qemu-system-x86_64"
	[ "$(uname -m)" = x86_64 ] || skip "x86_64 only"
	find_host_kernel || skip "no readable /boot/vmlinuz-*-amd64 with modules (install linux-image-amd64)"
	soak=${EROFS_NBD_SOAK:-$PWD/${O:-build}/tests/nbd-soak}
	[ -x "$soak" ] || fail "no soak client at $soak (make check builds it)"
	server=$EROFS_NBD
	triplet=x86_64-linux-gnu
	machine=q35 console=ttyS0
	debs=/var/cache/erofs-nbd-tests/amd64-clients
	cached_build "$debs" fetch_debs nbd-client:amd64 libnl-3-200:amd64 \
		libnl-genl-3-200:amd64
	libdirs=("$debs/root/usr/lib/$triplet" "$debs/root/lib/$triplet" "/lib/$triplet" "/usr/lib/$triplet")
	;;
aarch64)
	[ "$accel" = tcg ] || skip "the aarch64 guest runs under TCG only"
	qemu=$(command -v qemu-system-aarch64) || skip "no qemu-system-aarch64"
	requires aarch64-linux-gnu-gcc
	requires test -e /usr/lib/aarch64-linux-gnu/pkgconfig/liburing.pc
	requires test -e /lib/ld-linux-aarch64.so.1
	requires test -e /usr/include/libnbd.h
	arm64_pkgs
	kernel=$ARM64_KERNEL kver=$ARM64_KVER
	export BUSYBOX=$ARM64_ROOT/bin/busybox BUSYBOX_LIST=/bin/busybox
	export MKINITRAMFS_MODDIR=$ARM64_ROOT/lib/modules/$kver
	check "make all-aarch64"
	make -C "$here/.." all-aarch64 >"$T/make.log" 2>&1 ||
		{ tail -n 20 "$T/make.log"; fail "make all-aarch64 failed"; }
	server=$here/../build-aarch64/erofs-nbd
	# libnbd0:arm64 and what it needs (Debian 12's names; readelf below
	# names any that is missing), for nbd-soak, and nbd-client.
	debs=/var/cache/erofs-nbd-tests/arm64-clients
	cached_build "$debs" fetch_debs libnbd0:arm64 libgnutls30:arm64 \
		libxml2:arm64 libp11-kit0:arm64 libidn2-0:arm64 libunistring2:arm64 \
		libtasn1-6:arm64 libnettle8:arm64 libhogweed6:arm64 libgmp10:arm64 \
		libffi8:arm64 libicu72:arm64 liblzma5:arm64 libstdc++6:arm64 \
		libgcc-s1:arm64 zlib1g:arm64 nbd-client:arm64 libnl-3-200:arm64 \
		libnl-genl-3-200:arm64
	triplet=aarch64-linux-gnu
	libdirs=("$debs/root/usr/lib/$triplet" "$debs/root/lib/$triplet" "/lib/$triplet" "/usr/lib/$triplet")
	soak=$T/nbd-soak
	aarch64-linux-gnu-gcc -O2 -Wall -o "$soak" "$here/soak/nbd-soak.c" \
		-L"$debs/root/usr/lib/$triplet" -l:libnbd.so.0 \
		-Wl,-rpath-link,"$debs/root/usr/lib/$triplet:$debs/root/lib/$triplet" -lpthread ||
		fail "cross-building nbd-soak for aarch64"
	machine=virt console=ttyAMA0
	;;
*)
	fail "SERVER_VM_ARCH must be x86_64 or aarch64, not '$arch'"
	;;
esac
echo "guest: $arch, kernel $kernel; server: $server; accel: $accel"

# --- initramfs: the VM test's, with ext4 for the second disk and nbd -------------------
MKINITRAMFS_MODULES="ext4 nbd" "$here/vm/mkinitramfs.sh" "$kver" "$T/initramfs.gz" && rc=0 || rc=$?
[ "$rc" = 77 ] && skip "initramfs prerequisites missing"
[ "$rc" = 0 ] || fail "mkinitramfs.sh exited $rc"

# --- the source disk ---------------------------------------------------------------
check "the source tree on ext4, and its images as this machine's server writes them"
truncate -s 256M "$T/src.ext4"
mkfs.ext4 -q -F -b 4096 "$T/src.ext4" || fail "mkfs.ext4"
S=$T/mnt
mkdir -p "$S"
mount -o loop "$T/src.ext4" "$S" || skip "cannot loop-mount an ext4 image"
cleanup_fn umount "$S"
"$here/mktree.sh" --small "$S/tree" >"$T/mktree.log" 2>&1 ||
	{ cat "$T/mktree.log"; fail "tests/mktree.sh failed"; }
runs=(uring plain splice)
mkdir -p "$S/tree/chg" "$S/orig" "$S/ranges"
for r in "${runs[@]}"; do
	# 300,000 bytes: whole blocks and an inline tail.  A whole-second
	# mtime, which busybox's touch -r copies exactly.
	head -c 300000 /dev/urandom >"$S/orig/$r.bin"
	touch -d @1700000000 "$S/orig/$r.bin"
	cp -p "$S/orig/$r.bin" "$S/tree/chg/$r.bin"
done
for e in disk root; do
	"$EROFS_NBD" --export "$S/tree" --arch "$arch" --image-export $e --write-image "$T/$e.img" \
		2>"$T/write.log" || { cat "$T/write.log"; fail "--write-image of the $e export"; }
done
sha256sum "$T/disk.img" "$T/root.img" | cut -d' ' -f1 >"$S/expect"
python3 "$here/mkstack.py" --layers 64 "$S/stack" >"$S/stack.lowerdir" ||
	fail "tests/mkstack.py failed"
"$EROFS_NBD" --lowerdir "$(sed "s|[^:][^:]*|$S/stack/&|g" "$S/stack.lowerdir")" \
	--image-export root --write-image "$T/stack.img" 2>"$T/write.log" ||
	{ cat "$T/write.log"; fail "--write-image of the layer stack"; }
sha256sum "$T/stack.img" | cut -d' ' -f1 >"$S/expect-stack"
root_off=$(disk_root_offset "$T/disk.img")
for r in "${runs[@]}"; do
	python3 "$here/erofs_reader.py" "$T/root.img" "chg/$r.bin" >"$S/ranges/$r.root"
	python3 "$here/erofs_reader.py" --offset "$root_off" "$T/root.img" "chg/$r.bin" \
		>"$S/ranges/$r.disk"
	[ -s "$S/ranges/$r.root" ] || fail "no extents for chg/$r.bin"
done
umount "$S"
ok "$(find "$T" -maxdepth 1 -name '*.img' | wc -l) images, root partition at byte $root_off"

# --- the guest's root: busybox, the programs and their libraries -----------------------
R=$T/root
mkdir -p "$R"/{bin,dev,mnt,proc,sys,tmp,srv,usr/bin} "$R/lib/$triplet"
cp "${BUSYBOX:-/bin/busybox}" "$R/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
install -m 0755 "$server" "$R/usr/bin/erofs-nbd"
install -m 0755 "$soak" "$R/usr/bin/nbd-soak"
nbdclient=$debs/root/sbin/nbd-client
[ -x "$nbdclient" ] || fail "no nbd-client in $debs"
install -m 0755 "$nbdclient" "$R/bin/nbd-client"
# The loader, every library the programs need (NEEDED, recursively) from
# libdirs into /lib/TRIPLET, where the guest's loader looks, and glibc's
# UTF-16 converter (the GPT's and FAT's names go through iconv).
interp=$(readelf -l "$server" | sed -n 's/.*program interpreter: \(.*\)]$/\1/p')
[ -e "$interp" ] || fail "no ELF interpreter '$interp' here"
mkdir -p "$R$(dirname "$interp")"
cp -L "$interp" "$R$interp"
declare -A seen=()
todo=("$server" "$soak" "$nbdclient")
while [ ${#todo[@]} -gt 0 ]; do
	f=${todo[0]}
	todo=("${todo[@]:1}")
	for so in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
		[ -z "${seen[$so]:-}" ] || continue
		seen[$so]=1
		found=
		for d in "${libdirs[@]}"; do
			[ -e "$d/$so" ] && { found=$d/$so; break; }
		done
		[ -n "$found" ] || fail "no $so (needed by $f) in ${libdirs[*]}"
		cp -L "$found" "$R/lib/$triplet/$so"
		todo+=("$found")
	done
done
gconv=/usr/lib/$triplet/gconv	# glibc's ${libdir}/gconv
for f in "$gconv/gconv-modules.cache" "$gconv/UTF-16.so"; do
	[ -e "$f" ] || fail "missing '$f'"
	mkdir -p "$R$gconv"
	cp -L "$f" "$R$f"
done
install -m 0755 "$here/vm/server-init" "$R/init"
echo "guest root: ${#seen[@]} libraries, $(du -sh "$R" | cut -f1)"

# --- boot ------------------------------------------------------------------------------
start_server "$R"
sock=$SRV_SOCK
check "booting $arch $kver with $accel (timeout ${tmo}s): the server in the guest"
start=$SECONDS
cpu=max
[ "$accel" = kvm ] && cpu=host
timeout --kill-after=10 "$tmo" "$qemu" -nodefaults -no-user-config \
	-machine "$machine" -accel "$accel" -cpu "$cpu" -m 1536 -smp 2 \
	-display none -monitor none -serial "file:$T/console.log" -no-reboot \
	-kernel "$kernel" -initrd "$T/initramfs.gz" \
	-append "console=$console panic=-1 loglevel=4" \
	-blockdev "driver=nbd,server.type=unix,server.path=$sock,export=root,node-name=n0,read-only=on" \
	-device virtio-blk-pci,drive=n0 \
	-blockdev "driver=file,filename=$T/src.ext4,node-name=s0" \
	-blockdev "driver=raw,file=s0,node-name=s1" \
	-device virtio-blk-pci,drive=s1 \
	</dev/null >"$T/qemu.out" 2>&1 && rc=0 || rc=$?
secs=$((SECONDS - start))
show_console "$T/console.log" "$T/qemu.out" "$secs s, qemu exit $rc"
[ "$rc" = 124 ] || [ "$rc" = 137 ] && fail "the guest did not finish within ${tmo}s"
[ "$rc" = 0 ] || fail "qemu exited $rc"
server_alive || fail "the host's erofs-nbd died while serving the guest's root"

con() { tr -d '\r' <"$T/console.log"; }
if con | grep -q '^VM-INIT-FAIL'; then
	fail "initramfs: $(con | grep -m1 '^VM-INIT-FAIL')"
fi
if con | grep -q '^K-FAIL'; then
	fail "in the guest: $(con | grep -m1 '^K-FAIL')"
fi
con | grep -qx K-DONE || fail "the guest did not get to K-DONE"
gk=$(con | sed -n 's/^K-KERNEL=//p')
[ "$gk" = "$kver" ] || fail "the guest ran kernel '$gk', not $kver"
con | grep -qx K-SAME-IMAGE || fail "no K-SAME-IMAGE line"
con | grep -qx K-SAME-STACK || fail "no K-SAME-STACK line"
loop=$(con | sed -n 's/^K-LOOP\[uring\]=//p')
case $loop in
*io_uring*) ;;
*) fail "the default loop in the guest was '$loop', not io_uring" ;;
esac
for r in "${runs[@]}"; do
	con | grep -qx "K-OK\[$r\]" || fail "no K-OK[$r] line"
done
for how in go export-name; do
	con | grep -q "^K-KNBD\[$how\]=" || fail "no K-KNBD[$how] line"
done
stop_server || fail "the host's erofs-nbd did not stop cleanly"
ok "on $arch $kver: the same images, three runs read back right, a rewritten file read as EIO ($(con | grep '^K-EIO' | tr '\n' ' '))"
echo "PASS: erofs-nbd on $arch $kver in ${secs}s"
