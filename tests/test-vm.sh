#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: boots a QEMU guest (TCG unless KVM works)
# tests/test-vm.sh - boots a real kernel from an erofs-nbd export: the
# Linux stand-in for vfkit's NBD disk attachment.
#
# Builds a small busybox tree (tests/vm/root-init as its /init, a random
# marker, a multi-megabyte data file, a symlink, a large directory),
# serves it with erofs-nbd on a Unix socket and starts QEMU with the
# Debian kernel (/boot/vmlinuz-KVER, modules from /lib/modules/KVER), an
# initramfs from tests/vm/mkinitramfs.sh and the export attached as a
# read-only virtio-blk disk through QEMU's NBD client.  The initramfs
# mounts /dev/vda as EROFS and switch_roots into it; the tree's /init
# prints VM-* lines on the serial console, which must match the tree (and
# the disk the guest saw must be read-only and have the export's size).
#
# KVM is used when /dev/kvm works (a short probe boot decides), else TCG.
# Knobs: EROFS_NBD_VM_ACCEL=kvm|tcg forces one; EROFS_NBD_VM_TIMEOUT=secs
# bounds the boot (default 120 with KVM, 300 with TCG);
# EROFS_NBD_VM_EXPECT overrides the expected marker (to see the test
# fail); EROFS_NBD_VM_SERVER_ARGS adds erofs-nbd options (e.g.
# --no-io-uring); EROFS_NBD_VM_KEEP=1 keeps the work directory;
# EROFS_NBD_VM_SOURCE=CMD serves the tree another way: `CMD TREE WORKDIR`
# prints the erofs-nbd options that serve the same files, one per line
# (tests/test-image-vm.sh: --image of a podman image made of them).
#
# Exit: 0 pass, 77 skip (no kernel, modules, QEMU or busybox), 1 fail.
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"	# requires, skip, fail, cleanup_fn, start_server
here=$TESTS_DIR

# --- prerequisites ----------------------------------------------------------
qemu=$(command -v qemu-system-x86_64) || skip "no qemu-system-x86_64"
[ "$(uname -m)" = x86_64 ] || skip "VM test is x86_64 only"
find_host_kernel || skip "no readable /boot/vmlinuz-*-amd64 with modules (install linux-image-amd64)"
requires test -x /bin/busybox
requires timeout
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at '$EROFS_NBD'"
echo "kernel: $kernel, qemu: $($qemu --version | head -1)"

if [ "${EROFS_NBD_VM_KEEP:-0}" = 1 ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-vm.XXXXXX")
	echo "keeping $work"
else
	tmpdir
	work=$T
fi

# --- initramfs ----------------------------------------------------------------
"$here/vm/mkinitramfs.sh" "$kver" "$work/initramfs.gz" && rc=0 || rc=$?
[ "$rc" = 77 ] && skip "initramfs prerequisites missing"
[ "$rc" = 0 ] || fail "mkinitramfs.sh exited $rc"

# --- the served tree ------------------------------------------------------------
tree=$work/tree
mkdir -p "$tree"/{bin,dev,proc,sys,etc,many}
cp /bin/busybox "$tree/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$tree/bin/$applet"
done
install -m 0755 "$here/vm/root-init" "$tree/init"
marker="erofs-nbd-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
echo "$marker" >"$tree/marker"
# 3 MiB + 123 bytes: many blocks and a partial tail block.
head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$tree/data.bin"
ln -s marker "$tree/link"
for i in $(seq -w 1 300); do echo "$i" >"$tree/many/file-with-a-long-name-$i"; done
echo vmtest >"$tree/etc/hostname"

expect_marker=${EROFS_NBD_VM_EXPECT:-$marker}
expect_md5=$(md5sum "$tree/data.bin" | cut -d' ' -f1)
expect_entries=$(find "$tree" | wc -l)

# --- QEMU ---------------------------------------------------------------------
# vm_cmd ACCEL TIMEOUT LOG APPEND [QEMU-ARGS...]: sets the array VM to the
# command line (timeout + QEMU) that boots the kernel with the initramfs,
# serial console to LOG.  Run as "${VM[@]}", in the background too: $! is
# then timeout's own PID, and SIGTERM to it stops QEMU.
vm_cmd() {
	local accel=$1 t=$2 log=$3 append=$4 cpu=max
	shift 4
	if [ "$accel" = kvm ]; then
		cpu=host
	fi
	VM=(timeout --kill-after=10 "$t" "$qemu" -nodefaults -no-user-config
		-machine q35 -accel "$accel" -cpu "$cpu" -m 256 -smp 1
		-display none -monitor none -serial "file:$log" -no-reboot
		-kernel "$kernel" -initrd "$work/initramfs.gz"
		-append "console=ttyS0 panic=-1 loglevel=4 $append" "$@")
}

# kvm_probe: boots the initramfs under KVM in "probe" mode and succeeds
# if it gets to init within 10 s.  Nested KVM can be missing, broken
# (spinning without output) or slower than TCG; a working KVM prints the
# kernel banner at once, so no output after 4 s ends the probe early.
kvm_probe() {
	local pid i
	vm_cmd kvm 15 "$work/probe.log" "vmtest=probe loglevel=7"
	"${VM[@]}" </dev/null >"$work/probe.out" 2>&1 &
	pid=$!
	for ((i = 1; i <= 100; i++)); do
		sleep 0.1
		grep -q VM-PROBE-OK "$work/probe.log" 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		[ $i -ge 40 ] && [ ! -s "$work/probe.log" ] && break
	done
	kill -TERM $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	grep -q VM-PROBE-OK "$work/probe.log" 2>/dev/null
}

accel=${EROFS_NBD_VM_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		start=$SECONDS
		if kvm_probe; then
			accel=kvm
			echo "KVM probe booted in $((SECONDS - start))s: using KVM"
		else
			echo "KVM probe failed after $((SECONDS - start))s: using TCG"
			tail -n 3 "$work/probe.log" 2>/dev/null || true
		fi
	fi
fi
case $accel in
kvm) tmo=${EROFS_NBD_VM_TIMEOUT:-120} ;;
tcg) tmo=${EROFS_NBD_VM_TIMEOUT:-300} ;;
*) fail "EROFS_NBD_VM_ACCEL must be kvm or tcg, not '$accel'" ;;
esac

# --- serve and boot ----------------------------------------------------------------
read -r -a server_args <<<"${EROFS_NBD_VM_SERVER_ARGS:-}"
if [ -n "${EROFS_NBD_VM_SOURCE:-}" ]; then
	"$EROFS_NBD_VM_SOURCE" "$tree" "$work" >"$work/source.args" ||
		fail "EROFS_NBD_VM_SOURCE '$EROFS_NBD_VM_SOURCE' failed"
	mapfile -t source_args <"$work/source.args"
	start_server "" "${source_args[@]}" ${server_args[@]+"${server_args[@]}"}
else
	start_server "$tree" ${server_args[@]+"${server_args[@]}"}
fi
SRV_URI=$(export_uri root)	# the EROFS; the default export "" is the disk
sock=$SRV_SOCK
[ -S "$sock" ] || fail "no socket at '$sock' (URI '$SRV_URI')"
echo "tree: $expect_entries entries, marker $marker"
expect_sectors=
if command -v nbdinfo >/dev/null; then
	size=$(nbdinfo --size "$SRV_URI") || fail "nbdinfo --size $SRV_URI failed"
	expect_sectors=$((size / 512))
fi

echo "booting with $accel (timeout ${tmo}s)"
start=$SECONDS
vm_cmd "$accel" "$tmo" "$work/console.log" "" \
	-blockdev "driver=nbd,server.type=unix,server.path=$sock,export=root,node-name=n0,read-only=on" \
	-device virtio-blk-pci,drive=n0
"${VM[@]}" </dev/null >"$work/qemu.out" 2>&1 && rc=0 || rc=$?
secs=$((SECONDS - start))
show_console "$work/console.log" "$work/qemu.out" "$secs s, qemu exit $rc"

if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	fail "VM did not finish within ${tmo}s"
fi
[ "$rc" = 0 ] || fail "qemu exited $rc"
server_alive || fail "erofs-nbd died while serving"

# --- compare ----------------------------------------------------------------------
# value KEY: the value of the last "KEY=" line on the console.
value() {
	tr -d '\r' <"$work/console.log" | sed -n "s/^$1=//p" | tail -n1
}
if grep -q 'Kernel panic' "$work/console.log"; then
	fail "the guest kernel panicked: $(grep -m1 'Kernel panic' "$work/console.log" | tr -d '\r')"
fi
if grep -q '^VM-INIT-FAIL' "$work/console.log"; then
	fail "initramfs: $(grep '^VM-INIT-FAIL' "$work/console.log" | tr -d '\r')"
fi
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
[ -z "$expect_sectors" ] || expect_line VM-DISK-SECTORS "$expect_sectors"
expect_line VM-DISK-RO 1
expect_line VM-ROOTFS erofs
expect_line VM-MARKER "$expect_marker"
expect_line VM-DATA-MD5 "$expect_md5"
expect_line VM-LINK marker
expect_line VM-ENTRIES "$expect_entries"
expect_line VM-MANY 300
if ! tr -d '\r' <"$work/console.log" | grep -qx VM-DONE; then
	echo "FAIL VM-DONE line missing"
	errors=$((errors + 1))
fi
[ $errors = 0 ] || fail "$errors of the VM's answers were wrong"
stop_server "$SRV_PID" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "erofs-nbd exited $rc on SIGTERM"
echo "PASS: booted from the EROFS export with $accel in ${secs}s"
