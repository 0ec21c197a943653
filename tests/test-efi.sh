#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: boots a QEMU guest through OVMF
# tests/test-efi.sh - boots a whole served GPT disk through UEFI firmware:
# OVMF (Debian's ovmf package) reads the `disk` export over QEMU's NBD
# client on a Unix socket, runs systemd-boot from the ESP erofs-nbd built,
# systemd-boot loads the kernel and initramfs with the BLS entry's
# options, the initramfs finds the EROFS root by root=PARTUUID= and
# switch_roots into it, and the root's /sbin/init prints a random marker
# and powers the VM off.
#
# The bootable tree comes from Debian packages only (tests/efi/mktree.sh:
# busybox-static, linux-image-amd64's kernel, systemd-boot-efi, an
# initramfs from tests/vm/mkinitramfs.sh with tests/efi/init).  erofs-nbd
# is given nothing but the tree and --cmdline "console=ttyS0 panic=-1":
# it must find the kernel, initramfs and systemd-boot in the tree itself.
#
# Checked: the root PARTUUID erofs-nbd prints on stderr is partition entry
# N's unique GUID in the exported GPT (sgdisk on a copy), whose type is
# the DPS x86-64 root, next to an ESP; it is on the kernel command line
# the guest got; systemd-boot ran (the guest reads its LoaderInfo EFI
# variable, and LoaderDevicePartUUID names the ESP); the initramfs found
# /dev/vdaN by that PARTUUID and mounted it read-only as EROFS; the
# marker; a clean power-off.  A kernel panic or an initramfs failure ends
# the boot at once (fail fast, no timeout wait).
#
# KVM is used when a short probe boot works, else TCG (tests/efi/vm.sh).
# Knobs: EROFS_NBD_VM_ACCEL=kvm|tcg; EROFS_NBD_VM_TIMEOUT=secs (default
# 120 KVM, 300 TCG); EROFS_NBD_VM_EXPECT overrides the expected marker (to
# see the test fail); EROFS_NBD_VM_SERVER_ARGS adds erofs-nbd options;
# EROFS_NBD_VM_KEEP=1 keeps the work directory.
#
# Exit: 0 pass, 77 skip (no QEMU, OVMF, kernel, systemd-boot, busybox,
# sgdisk, or an erofs-nbd without the disk export), 1 fail.
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"	# requires, skip, fail, cleanup_fn, start_server
here=$TESTS_DIR
# shellcheck source=tests/efi/vm.sh
. "$here/efi/vm.sh"			# efi_firmware, efi_vm_cmd, efi_pick_accel

# --- prerequisites ----------------------------------------------------------
[ "$(uname -m)" = x86_64 ] || skip "EFI test is x86_64 only"
command -v "$EFI_QEMU" >/dev/null || skip "no qemu-system-x86_64"
efi_firmware || skip "no OVMF firmware in /usr/share/OVMF (install ovmf)"
find_host_kernel || skip "no readable /boot/vmlinuz-*-amd64 with modules (install linux-image-amd64)"
requires test -r /usr/lib/systemd/boot/efi/systemd-bootx64.efi
requires test -x /bin/busybox
requires timeout
requires sgdisk
requires nbdcopy
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at '$EROFS_NBD'"
echo "kernel: $kernel, firmware: $OVMF_CODE, qemu: $("$EFI_QEMU" --version | head -1)"

if [ "${EROFS_NBD_VM_KEEP:-0}" = 1 ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-efi.XXXXXX")
	echo "keeping $work"
else
	tmpdir
	work=$T
fi

# --- the bootable tree ---------------------------------------------------------
check "building the bootable tree"
marker="erofs-nbd-efi-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
tree=$work/tree
"$here/efi/mktree.sh" "$kver" "$tree" "$marker" && rc=0 || rc=$?
[ "$rc" = 77 ] && skip "bootable tree prerequisites missing"
[ "$rc" = 0 ] || fail "efi/mktree.sh exited $rc"
expect_marker=${EROFS_NBD_VM_EXPECT:-$marker}

efi_pick_accel "$work" "$tree/boot/vmlinuz-$kver" "$tree/boot/initrd.img-$kver"
accel=$EFI_ACCEL
case $accel in
kvm) tmo=${EROFS_NBD_VM_TIMEOUT:-120} ;;
tcg) tmo=${EROFS_NBD_VM_TIMEOUT:-300} ;;
*) fail "EROFS_NBD_VM_ACCEL must be kvm or tcg, not '$accel'" ;;
esac

# --- serve the disk ------------------------------------------------------------
check "serving the tree as a disk"
read -r -a server_args <<<"${EROFS_NBD_VM_SERVER_ARGS:-}"
start_server "$tree" --cmdline "console=ttyS0 panic=-1" \
	${server_args[@]+"${server_args[@]}"}
sock=$SRV_SOCK
[ -S "$sock" ] || fail "no socket at '$sock' (URI '$SRV_URI')"
disk_uri="nbd+unix:///disk?socket=$sock"

# The PARTUUID the server printed ("root PARTUUID=<guid>") shows up on
# stderr right after start-up, before or with the URI line.
root_uuid=
for ((i = 0; i < 50; i++)); do
	root_uuid=$(sed -n 's/.*root PARTUUID=\([0-9A-Fa-f-]\{36\}\).*/\1/p' "$SRV_LOG" | head -n1)
	[ -n "$root_uuid" ] && break
	sleep 0.1
done
[ -n "$root_uuid" ] || fail "erofs-nbd printed no 'root PARTUUID=<guid>' on stderr"
root_uuid=$(tr A-F a-f <<<"$root_uuid")
echo "root PARTUUID (server): $root_uuid"

# The exported GPT, read back with sgdisk from a copy: which entry is the
# root (that GUID) and which the ESP (type EF00).
nbdcopy "$disk_uri" "$work/disk.img" || fail "nbdcopy $disk_uri failed"
sgdisk -p "$work/disk.img" | sed 's/^/  /'
root_part='' root_type='' esp_part='' esp_uuid=''
for n in $(sgdisk -p "$work/disk.img" | awk '$1 ~ /^[0-9]+$/ { print $1 }'); do
	info=$(sgdisk -i "$n" "$work/disk.img")
	u=$(sed -n 's/^Partition unique GUID: //p' <<<"$info" | tr A-F a-f)
	if [ "$u" = "$root_uuid" ]; then
		root_part=$n
		root_type=$(sed -n 's/^Partition GUID code: \([0-9A-F-]*\).*/\1/p' <<<"$info")
	fi
	if grep -q '^Partition GUID code: C12A7328-F81F-11D2-BA4B-00A0C93EC93B' <<<"$info"; then
		esp_part=$n
		esp_uuid=$u
	fi
done
[ -n "$root_part" ] || fail "no GPT entry has the printed root PARTUUID $root_uuid"
[ -n "$esp_part" ] || fail "the exported GPT has no EFI System Partition"
# Discoverable Partitions Specification: "Root Partition (x86-64)".
[ "$root_type" = 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 ] ||
	fail "root partition type" 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 "$root_type"
echo "GPT: ESP is partition $esp_part ($esp_uuid), root is partition $root_part"

# --- boot -----------------------------------------------------------------------
check "booting with OVMF and $accel (timeout ${tmo}s)"
cp "$OVMF_VARS" "$work/vars.fd"
console=$work/console.log
: >"$console"
efi_vm_cmd "$accel" "$tmo" "$console" "$work/vars.fd" "$sock" disk
start=$SECONDS
"${VM[@]}" </dev/null >"$work/qemu.out" 2>&1 &
vm=$!
cleanup_fn kill -TERM "$vm"
# Fail fast: stop QEMU as soon as the guest panics or the initramfs gives
# up, whatever the kernel's panic= setting.
# boot_failure: the first panic or initramfs failure line on the console.
boot_failure() {
	{ grep -a -m1 -e 'Kernel panic' -e '^EFI-INIT-FAIL' "$console" || true; } |
		tr -d '\r'
}
while kill -0 "$vm" 2>/dev/null; do
	if [ -n "$(boot_failure)" ]; then
		kill -TERM "$vm" 2>/dev/null || true
		break
	fi
	sleep 0.2
done
wait "$vm" && rc=0 || rc=$?
why=$(boot_failure)
secs=$((SECONDS - start))
show_console "$console" "$work/qemu.out" "$secs s, qemu exit $rc; ANSI escapes removed"

[ -z "$why" ] || fail "boot failed: $why"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	fail "VM did not finish within ${tmo}s"
fi
[ "$rc" = 0 ] || fail "qemu exited $rc"
server_alive || fail "erofs-nbd died while serving"

# --- compare --------------------------------------------------------------------
# value KEY: the value of the last "KEY=" line on the console.
value() {
	tr -d '\r' <"$console" | sed -n "s/^$1=//p" | tail -n1
}
errors=0
expect_line() {
	local key=$1 want=$2 got
	got=$(value "$key" || true)
	if [ "$got" = "$want" ]; then
		echo "ok   $key = '$got'"
	else
		echo "FAIL $key: expected '$want', got '$got'"
		errors=$((errors + 1))
	fi
}
# expect_match KEY GLOB: the value matches the shell pattern GLOB.
expect_match() {
	local key=$1 glob=$2 got
	got=$(value "$key" || true)
	# shellcheck disable=SC2053
	if [[ $got == $glob ]]; then
		echo "ok   $key = '$got'"
	else
		echo "FAIL $key: expected '$glob', got '$got'"
		errors=$((errors + 1))
	fi
}
expect_line EFI-FIRMWARE uefi
# systemd-boot ran: only it sets these variables (Boot Loader Interface).
expect_match EFI-VAR-LoaderInfo 'systemd-boot *'
expect_line EFI-VAR-LoaderDevicePartUUID "$(tr a-f A-F <<<"$esp_uuid")"
expect_match EFI-VAR-LoaderEntrySelected '?*'
# The BLS entry's options reached the kernel.
expect_match EFI-CMDLINE "*root=PARTUUID=$root_uuid rootfstype=erofs ro*"
expect_match EFI-CMDLINE "*console=ttyS0*"
# The initramfs found the root by PARTUUID.
expect_line EFI-ROOT-FOUND "PARTUUID $root_uuid is GPT entry $root_part of /dev/vda"
expect_line EFI-ROOT-DEV "/dev/vda$root_part"
expect_line EFI-ROOT-RO 1
# The root's own init ran from the EROFS partition.
expect_line EFI-ROOTFS erofs
expect_match EFI-ROOT-LINE "/dev/vda$root_part / erofs ro,*"
expect_line EFI-KERNEL "$kver"
expect_line EFI-MARKER "$expect_marker"
if tr -d '\r' <"$console" | grep -qx EFI-MARKER-OK &&
	grep -aq 'reboot: Power down' "$console"; then
	echo "ok   the marker was printed and the VM powered off"
else
	echo "FAIL EFI-MARKER-OK or the power-off ('reboot: Power down') missing"
	errors=$((errors + 1))
fi
[ $errors = 0 ] || fail "$errors of the VM's answers were wrong"
stop_server "$SRV_PID" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "erofs-nbd exited $rc on SIGTERM"
echo "PASS: booted the served disk through OVMF + systemd-boot with $accel in ${secs}s"
