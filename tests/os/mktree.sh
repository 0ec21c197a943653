#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/os/mktree.sh - a real Debian 12 OS tree to boot over SSH, cached
# once per machine:
#
#   tests/os/mktree.sh ARCH        ARCH: amd64 or arm64; prints the tree's path
#
# The tree is what a container OS image holds once a kernel is in it:
# debootstrap (minbase) with systemd as init (systemd, systemd-sysv, udev,
# dbus and libpam-systemd, so that logind powers off on the ACPI power
# button), openssh-server, kmod, iproute2, systemd-boot-efi, then dracut
# and linux-image-ARCH inside the tree, so that the kernel's postinst
# builds a dracut initramfs.  dracut is configured (generic, not
# host-only) to carry systemd, the erofs and overlay modules and the
# virtio drivers: systemd's initrd mounts an EROFS root found by
# root=PARTUUID= (EFI boot) or root=/dev/vda (direct kernel boot), and
# systemd-volatile-root puts a tmpfs overlay over it
# (systemd.volatile=overlay).  systemd-networkd does DHCP on every
# Ethernet NIC (QEMU's user-mode network), /etc/machine-id is left empty
# (a new one each boot), and apt's lists and caches are removed.
#
# ARCH other than the host's goes through qemu-user-static and
# binfmt_misc: debootstrap's second stage and dracut then run emulated
# (arm64 on x86-64: about 40 minutes).
#
# Cache: ${EROFS_NBD_TEST_CACHE_DIR:-/var/cache/erofs-nbd-tests}/debian-os-ARCH,
# complete when debian-os-ARCH.done exists; built under an flock on
# debian-os-ARCH.lock (parallel test runs wait), log in debian-os-ARCH.log.
# The mirror is the Debian one apt uses (EROFS_NBD_TEST_MIRROR overrides).
# All mounts are made in a private mount namespace (unshare -m), so none
# outlives the build.
#
# Exit: 0 (path on stdout), 77 when a prerequisite is missing (root,
# debootstrap, unshare, the mirror, binfmt for a foreign ARCH), 1 on error.
set -euo pipefail

die() { echo "os/mktree: $*" >&2; exit 1; }
skip() { echo "os/mktree: SKIP: $*" >&2; exit 77; }

[ $# -eq 1 ] || die "usage: $0 amd64|arm64"
arch=$1
case $arch in
amd64) qemu_arch=x86_64 ;;
arm64) qemu_arch=aarch64 ;;
*) die "ARCH must be amd64 or arm64, not '$arch'" ;;
esac
suite=bookworm
cache_dir=${EROFS_NBD_TEST_CACHE_DIR:-/var/cache/erofs-nbd-tests}
tree=$cache_dir/debian-os-$arch

[ "$(id -u)" = 0 ] || skip "needs root"
command -v debootstrap >/dev/null || skip "no debootstrap"
command -v unshare >/dev/null || skip "no unshare"

. "$(dirname "$0")/../apt-mirror.sh"

# foreign_ok: the host runs ARCH binaries through binfmt_misc (F flag).
foreign_ok() {
	[ "$(dpkg --print-architecture)" = "$arch" ] && return 0
	local bm=/proc/sys/fs/binfmt_misc
	mountpoint -q $bm || mount -t binfmt_misc binfmt_misc $bm 2>/dev/null || return 1
	if [ ! -e "$bm/qemu-$qemu_arch" ] && command -v update-binfmts >/dev/null; then
		update-binfmts --enable "qemu-$qemu_arch" >/dev/null 2>&1 || true
	fi
	grep -q '^enabled' "$bm/qemu-$qemu_arch" 2>/dev/null &&
		grep -q '^flags:.*F' "$bm/qemu-$qemu_arch"
}

# The chroot steps, run inside "unshare -m": proc, sys and dev mounted for
# apt and dracut, services never started (policy-rc.d).
in_tree() {
	local root=$1
	shift
	unshare -m --propagation private /bin/sh -euc '
		root=$1; shift
		mount -t proc proc "$root/proc"
		mount -t sysfs sysfs "$root/sys"
		mount --rbind /dev "$root/dev"
		exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
	' sh "$root" "$@"
}

build() {
	local tmp=$tree.tmp mirror start
	mirror=${EROFS_NBD_TEST_MIRROR:-$(apt_mirror)}
	foreign_ok || skip "cannot run $arch binaries (install qemu-user-static and binfmt-support)"
	if command -v curl >/dev/null; then
		timeout 30 curl -sfI "$mirror/dists/$suite/Release" >/dev/null ||
			skip "Debian mirror $mirror unreachable"
	fi
	start=$SECONDS
	echo "os/mktree: building $tree from $mirror (once per machine; log $tree.log)" >&2
	rm -rf --one-file-system "$tmp"
	debootstrap --variant=minbase --arch="$arch" \
		--include=systemd,systemd-sysv,udev,dbus,libpam-systemd,openssh-server,kmod,iproute2,systemd-boot-efi \
		"$suite" "$tmp" "$mirror" ||
		die "debootstrap failed"

	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 0755 "$tmp/usr/sbin/policy-rc.d"
	mkdir -p "$tmp/etc/dracut.conf.d"
	cat >"$tmp/etc/dracut.conf.d/50-erofs-nbd.conf" <<-'EOF'
	# erofs-nbd tests: a generic initramfs whose systemd mounts an EROFS
	# root on virtio-blk (root=PARTUUID= or root=/dev/vda) and can put a
	# tmpfs overlay over it (systemd.volatile=overlay).
	hostonly="no"
	add_dracutmodules+=" systemd "
	add_drivers+=" erofs overlay virtio_pci virtio_blk virtio_net virtio_rng "
	install_items+=" /usr/lib/systemd/systemd-volatile-root /usr/lib/systemd/system/systemd-volatile-root.service "
	EOF
	in_tree "$tmp" apt-get install -y --no-install-recommends dracut ||
		die "installing dracut failed"
	in_tree "$tmp" apt-get install -y --no-install-recommends "linux-image-$arch" ||
		die "installing linux-image-$arch failed"

	# What booting it needs: DHCP on the NIC, a name, an empty machine-id.
	mkdir -p "$tmp/etc/systemd/network"
	cat >"$tmp/etc/systemd/network/20-erofs-nbd-dhcp.network" <<-'EOF'
	[Match]
	Type=ether

	[Network]
	DHCP=yes
	EOF
	in_tree "$tmp" systemctl enable systemd-networkd.service
	echo erofs-nbd-os >"$tmp/etc/hostname"
	: >"$tmp/etc/machine-id"
	rm -f "$tmp/var/lib/dbus/machine-id" "$tmp/usr/sbin/policy-rc.d"
	in_tree "$tmp" apt-get clean
	rm -rf "$tmp/var/lib/apt/lists/"*

	ls "$tmp"/boot/vmlinuz-* >/dev/null 2>&1 || die "no kernel in $tmp/boot"
	ls "$tmp"/boot/initrd.img-* >/dev/null 2>&1 || die "no initramfs in $tmp/boot"
	mv "$tmp" "$tree"
	echo "$((SECONDS - start))" >"$tree.seconds"
	touch "$tree.done"
	echo "os/mktree: built $tree in $((SECONDS - start)) s" >&2
}

mkdir -p "$cache_dir"
exec 9>"$tree.lock"
timeout 7200 flock 9 || die "timed out waiting for $tree.lock"
if [ ! -e "$tree.done" ] || [ ! -d "$tree" ]; then
	rm -f "$tree.done"
	build >"$tree.log" 2>&1 || { rc=$?; tail -n 30 "$tree.log" >&2; exit $rc; }
fi
exec 9>&-
echo "$tree"
