#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/efi/mktree.sh - builds the bootable tree that tests/test-efi.sh and
# bench/run.sh serve as a whole GPT disk, from Debian packages only:
#
#   /bin/busybox + one symlink per applet     busybox-static
#   /sbin/init -> tests/efi/root-init         prints the marker, powers off
#   /marker                                   MARKER
#   /boot/vmlinuz-KVER                        linux-image-amd64 (EFI stub)
#   /boot/initrd.img-KVER                     tests/vm/mkinitramfs.sh with
#                                             tests/efi/init (finds the root
#                                             by PARTUUID) + efivarfs
#   /usr/lib/systemd/boot/efi/systemd-bootx64.efi   systemd-boot-efi
#   /dev /proc /sys /tmp /run /newroot        empty mount points
#
# Kernel and initramfs sit where Debian keeps them, so erofs-nbd finds
# them in the tree and puts them on the ESP.
#
#   tests/efi/mktree.sh KVER TREE MARKER
#
# TREE must not exist yet.  EFI_LOADER, BUSYBOX (BUSYBOX_LIST: one that runs
# here, to list the applets) and EFI_KERNEL override the
# boot loader, busybox and kernel copied in (MKINITRAMFS_MODDIR the modules:
# tests/test-arm64-vm.sh builds an arm64 tree this way).  Exits 77 when a prerequisite is missing
# (kernel, modules, systemd-boot, busybox), 1 on error.
set -euo pipefail

die() { echo "efi/mktree: $*" >&2; exit 1; }
skip() { echo "efi/mktree: SKIP: $*" >&2; exit 77; }

[ $# -eq 3 ] || die "usage: $0 KVER TREE MARKER"
kver=$1
tree=$2
marker=$3
here=$(cd "$(dirname "$0")" && pwd)
kernel=${EFI_KERNEL:-/boot/vmlinuz-$kver}
sdboot=${EFI_LOADER:-/usr/lib/systemd/boot/efi/systemd-bootx64.efi}
busybox=${BUSYBOX:-/bin/busybox}

[ -r "$kernel" ] || skip "no readable $kernel (install linux-image-amd64)"
[ -r "$sdboot" ] || skip "no $sdboot (install systemd-boot-efi)"
[ -x "$busybox" ] || skip "no $busybox (install busybox-static)"
[ ! -e "$tree" ] || die "'$tree' exists"

mkdir -p "$tree"/{bin,sbin,boot,dev,proc,sys,tmp,run,newroot,etc}
mkdir -p "$tree/usr/lib/systemd/boot/efi"
cp "$busybox" "$tree/bin/busybox"
for applet in $("${BUSYBOX_LIST:-$busybox}" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$tree/bin/$applet"
done
install -m 0755 "$here/root-init" "$tree/sbin/init"
echo "$marker" >"$tree/marker"
echo efitest >"$tree/etc/hostname"
cp "$kernel" "$tree/boot/vmlinuz-$kver"
cp "$sdboot" "$tree/usr/lib/systemd/boot/efi/$(basename "$sdboot")"

MKINITRAMFS_INIT=$here/init MKINITRAMFS_MODULES=efivarfs \
	"$here/../vm/mkinitramfs.sh" "$kver" "$tree/boot/initrd.img-$kver" &&
	rc=0 || rc=$?
[ "$rc" = 77 ] && skip "initramfs prerequisites missing"
[ "$rc" = 0 ] || die "mkinitramfs.sh exited $rc"
exit 0
