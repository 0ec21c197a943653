# SPDX-License-Identifier: MIT
# bench/sec-efi.sh - section "efi": boot a small bootable tree's `disk`
# export through OVMF and systemd-boot to a marker on the console, against
# nbdkit serving a file with the same bytes.  Defines bench_efi.
#
# A bootable busybox tree (tests/efi/mktree.sh: Debian kernel, initramfs,
# systemd-boot) served as a whole GPT disk; QEMU + OVMF boots it through
# systemd-boot to the root's /sbin/init, which prints EFI-MARKER-OK.  The
# peer serves a file with the same bytes (nbdcopy of our `disk` export)
# with nbdkit.  Same QEMU command line for both (tests/efi/vm.sh).
efi_row=		# "ours peer" medians in seconds, or empty
efi_why=		# why the row is missing
efi_info=
# efi_skip WHY: no EFI row, and why.
efi_skip() { efi_why=$1; note "d) EFI boot skipped: $1"; }

# efi_boot SOCK: boots the disk on SOCK once (export "disk"); prints the
# seconds from starting QEMU until the console shows EFI-MARKER-OK, or
# fails.  The console is polled every 20 ms.
efi_boot() {
	local sock=$1 log=$work/efi-console.log t0 t1='' p
	: >"$log"
	cp "$OVMF_VARS" "$work/efi-vars.fd"
	efi_vm_cmd "$EFI_ACCEL" "$efi_tmo" "$log" "$work/efi-vars.fd" "$sock" disk
	t0=${EPOCHREALTIME/./}
	"${VM[@]}" </dev/null >"$work/efi-qemu.out" 2>&1 &
	p=$!
	pids+=("$p")
	while kill -0 "$p" 2>/dev/null; do
		if grep -aq '^EFI-MARKER-OK' "$log"; then
			t1=${EPOCHREALTIME/./}
			break
		fi
		grep -aq -e 'Kernel panic' -e '^EFI-INIT-FAIL' "$log" && break
		sleep 0.02
	done
	wait "$p" 2>/dev/null || true
	if [ -z "$t1" ]; then
		grep -aq '^EFI-MARKER-OK' "$log" || {
			tr -d '\r' <"$log" | tail -n 5 >&2
			return 1
		}
		t1=${EPOCHREALTIME/./}
	fi
	awk -v us=$((10#$t1 - 10#$t0)) 'BEGIN { printf "%.3f\n", us / 1e6 }'
}

# shellcheck source=tests/efi/vm.sh
. "$here/../tests/efi/vm.sh"	# efi_firmware, efi_vm_cmd, efi_pick_accel

bench_efi() {
	if ! [ "$EFI_RUNS" -gt 0 ] 2>/dev/null; then
		efi_skip "BENCH_EFI_RUNS=$EFI_RUNS"
	elif [ "$(uname -m)" != x86_64 ]; then
		efi_skip "x86_64 only"
	elif ! command -v "$EFI_QEMU" >/dev/null; then
		efi_skip "no qemu-system-x86_64"
	elif ! efi_firmware; then
		efi_skip "no OVMF (package ovmf)"
	elif ! grep -q -- --kernel <<<"$("$BIN" --help 2>&1 || true)"; then
		efi_skip "this erofs-nbd has no disk export"
	else
		efi_kver=
		for k in $(printf "%s\n" /boot/vmlinuz-*-amd64 | sort -V -r); do
			kv=${k#/boot/vmlinuz-}
			if [ -r "$k" ] && [ -f "/lib/modules/$kv/modules.dep" ]; then
				efi_kver=$kv
				break
			fi
		done
		efi_tree=$work/efi-tree
		if [ -z "$efi_kver" ]; then
			efi_skip "no /boot/vmlinuz-*-amd64 with modules (linux-image-amd64)"
		elif ! "$here/../tests/efi/mktree.sh" "$efi_kver" "$efi_tree" \
			"bench-$RANDOM$RANDOM" >"$work/efi-tree.log" 2>&1; then
			efi_skip "tests/efi/mktree.sh failed: $(tail -n1 "$work/efi-tree.log")"
		fi
	fi
	if [ -z "$efi_why" ]; then
		efi_pick_accel "$work" "$efi_tree/boot/vmlinuz-$efi_kver" \
			"$efi_tree/boot/initrd.img-$efi_kver"
		efi_tmo=300
		[ "$EFI_ACCEL" = kvm ] && efi_tmo=120
		note "d) EFI boot with OVMF ($EFI_ACCEL): 1 warm-up + $EFI_RUNS boots of each disk," \
			"alternating$([ "$EFI_ACCEL" = tcg ] && echo " (TCG: 15-30 s each)")"
		srv_ours "$efi_tree" --cmdline "console=ttyS0 panic=-1"
		local our_pid=$SRV_PID our_sock=$SRV_SOCK our_fd=$SRV_FD
		efi_disk=$work/efi-disk.img
		efi_ours=() efi_kit=()
		if nbdcopy "nbd+unix:///disk?socket=$our_sock" "$efi_disk"; then
			efi_size=$(stat -c %s "$efi_disk")
			srv_nbdkit file "$efi_disk"
			kit_sock=$SRV_SOCK
			# One warm-up boot (QEMU's and OVMF's files into the page cache;
			# both disks' data is there already: the tree was just built and
			# copied), then alternate so that load changes hit both alike.
			if efi_boot "$our_sock" >/dev/null; then
				for ((i = 0; i < EFI_RUNS; i++)); do
					s=$(efi_boot "$our_sock") ||
						{ efi_skip "a boot from erofs-nbd failed"; break; }
					efi_ours+=("$s")
					s=$(efi_boot "$kit_sock") ||
						{ efi_skip "a boot from nbdkit failed"; break; }
					efi_kit+=("$s")
				done
			else
				efi_skip "the warm-up boot from erofs-nbd failed (console above)"
			fi
			srv_stop
		else
			efi_skip "nbdcopy of our disk export failed"
		fi
		SRV_PID=$our_pid SRV_FD=$our_fd
		srv_stop
		if [ -z "$efi_why" ]; then
			efi_row="$(printf '%s\n' "${efi_ours[@]}" | median) $(printf '%s\n' "${efi_kit[@]}" | median)"
			efi_info="EFI boots to marker, s ($EFI_ACCEL, disk $(mib "$efi_size") MiB):"
			efi_info+=" erofs-nbd ${efi_ours[*]}; nbdkit ${efi_kit[*]}"
		fi
	fi
	if [ -n "$efi_row" ]; then
		read -r a b <<<"$efi_row"
		result efi efi erofs-nbd seconds "$a"
		result efi efi nbdkit-file seconds "$b"
		result efi efi - accel "$EFI_ACCEL"
		result efi efi - boots "$efi_info"
	else
		result efi efi - skipped "$efi_why"
	fi
}
