# SPDX-License-Identifier: MIT
# tests/efi/vm.sh - QEMU + OVMF command lines for booting a served GPT
# disk through UEFI, shared by tests/test-efi.sh and bench/run.sh.  Source
# it (bash); it defines functions only:
#
#   efi_firmware         find OVMF (Debian's ovmf package: 4 MiB
#                        OVMF_CODE_4M.fd + OVMF_VARS_4M.fd, else the 2 MiB
#                        pair); sets OVMF_CODE and OVMF_VARS, or returns 1.
#   efi_vm_cmd ACCEL TIMEOUT LOG VARS SOCK EXPORT [QEMU-ARG...]
#                        set the array VM to a command (timeout + QEMU) that
#                        boots the NBD export EXPORT on the Unix socket SOCK
#                        as a read-only virtio-blk disk (bootindex 0) with
#                        OVMF, its variable store VARS a writable copy of
#                        $OVMF_VARS (one per boot: a fresh store has no
#                        Boot#### entries, so the firmware takes the
#                        removable-media path \EFI\BOOT\BOOTX64.EFI), serial
#                        console to the file LOG, and -no-reboot so that a
#                        panic (with panic=-1) or reboot ends QEMU at once.
#                        Run it as "${VM[@]}"; in the background $! is
#                        timeout's PID and SIGTERM to it stops QEMU.
#   efi_pick_accel WORK KERNEL INITRD
#                        sets EFI_ACCEL to kvm when a short KVM boot of
#                        KERNEL + INITRD (tests/efi/init, efitest=probe)
#                        prints EFI-PROBE-OK within seconds, else tcg;
#                        EROFS_NBD_VM_ACCEL=kvm|tcg forces it.  Nested KVM
#                        can be missing, broken or slower than TCG, as
#                        tests/test-vm.sh explains.
#
# Needs $EFI_QEMU (default: qemu-system-x86_64 on $PATH).
# shellcheck disable=SC2034,SC2054	# OVMF_*, VM are for the caller; -device x,y

: "${EFI_QEMU:=$(command -v qemu-system-x86_64 || echo qemu-system-x86_64)}"

efi_firmware() {
	local d=/usr/share/OVMF
	if [ -r $d/OVMF_CODE_4M.fd ] && [ -r $d/OVMF_VARS_4M.fd ]; then
		OVMF_CODE=$d/OVMF_CODE_4M.fd
		OVMF_VARS=$d/OVMF_VARS_4M.fd
	elif [ -r $d/OVMF_CODE.fd ] && [ -r $d/OVMF_VARS.fd ]; then
		OVMF_CODE=$d/OVMF_CODE.fd
		OVMF_VARS=$d/OVMF_VARS.fd
	else
		return 1
	fi
}

efi_vm_cmd() {
	local accel=$1 t=$2 log=$3 vars=$4 sock=$5 export=$6 cpu=max
	shift 6
	[ "$accel" = kvm ] && cpu=host
	VM=(timeout --kill-after=10 "$t" "$EFI_QEMU" -nodefaults -no-user-config
		-machine q35 -accel "$accel" -cpu "$cpu" -m 1024 -smp 1
		-display none -monitor none -serial "file:$log" -no-reboot
		-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
		-drive "if=pflash,format=raw,unit=1,file=$vars"
		-blockdev "driver=nbd,server.type=unix,server.path=$sock,export=$export,node-name=d0,read-only=on"
		-device virtio-blk-pci,drive=d0,bootindex=0 "$@")
}

efi_pick_accel() {
	local work=$1 kernel=$2 initrd=$3 pid i log
	EFI_ACCEL=${EROFS_NBD_VM_ACCEL:-}
	[ -n "$EFI_ACCEL" ] && return 0
	EFI_ACCEL=tcg
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || return 0
	log=$work/probe.log
	timeout --kill-after=5 15 "$EFI_QEMU" -nodefaults -no-user-config \
		-machine q35 -accel kvm -cpu host -m 256 -smp 1 -display none \
		-monitor none -serial "file:$log" -no-reboot \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 efitest=probe" \
		</dev/null >"$work/probe.out" 2>&1 &
	pid=$!
	for ((i = 1; i <= 100; i++)); do
		sleep 0.1
		grep -q EFI-PROBE-OK "$log" 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		[ $i -ge 40 ] && [ ! -s "$log" ] && break
	done
	kill -TERM $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	grep -q EFI-PROBE-OK "$log" 2>/dev/null && EFI_ACCEL=kvm
	return 0
}
