#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: boots several QEMU guests
# tests/test-launcher.sh - erofs-nbd-launch with QEMU: boots real guests
# in both modes and checks that every run leaves nothing behind.
#
# Trees: a busybox tree whose /init is tests/launcher/root-init, with the
# Debian kernel and an initramfs from tests/vm/mkinitramfs.sh (tests/vm/
# init, plus the ACPI button and evdev modules) in /boot, where the
# launcher must find them itself (--boot kernel, `root` export); and the
# bootable tree of tests/efi/mktree.sh (--boot efi, `disk` export,
# OVMF + systemd-boot from the served ESP).
#
# Cases, each a real launch (erofs-nbd started by socket activation,
# READY=1 awaited, QEMU supervised):
#   kernel     the guest prints its marker and powers off: exit 0; the
#              --ssh-key credential is in the guest's SMBIOS type 11
#   efi        the same through OVMF and systemd-boot: exit 0
#   sigterm    SIGTERM to the launcher while the guest waits for the
#              power button: QMP system_powerdown reaches the guest,
#              which powers off: exit 143
#   grace      the same with a guest that ignores the power button:
#              after --grace the VM is stopped hard: exit 143
#   qemu-term  SIGTERM to QEMU from outside (QEMU then exits 0): exit 4,
#              as QMP's SHUTDOWN event says "host-signal"
#   kill       erofs-nbd killed (SIGKILL) right after QEMU started: the
#              launcher stops the VM and exits 3
#   connect    --connect to a server the test started: exit 0, and that
#              server is left running
#   vf-*       --vmm vfkit with tests/launcher/fake-vfkit as the program:
#              it reads the export through the uri= it was given (nbdinfo)
#              and serves vfkit's REST API; SIGTERM must POST "Stop", a
#              guest that ignores it must get "HardStop" after --grace, and
#              a dead server must bring "HardStop" at once (exit 3); with
#              --ssh, SIGQUIT while COMMAND runs must still POST "Stop"
#              (answered late: no interrupted request), exit 131
#   kvm-*      (with /dev/kvm) a stand-in QEMU that aborts under KVM:
#              --accel auto retries with TCG (also an EFI boot, with a
#              fresh variable store), --accel kvm does not, nor does a
#              failure after the first 10 s (exit 4)
#   vf-twice   a second signal while the guest ignores Stop: HardStop at
#              once, not after --grace; vf-refused: the same when vfkit
#              answers Stop with an error; vf-sigkill: the launcher
#              killed with SIGKILL takes its children along; vf-ssh7:
#              COMMAND's status, --ssh-key and the throwaway key both
#              authorized, ssh run with -T -l root
#   stubborn   a VMM that ignores SIGTERM is killed 5 s after the hard stop
#   no-sshd    a forward that accepts with no sshd behind it: ssh is not
#              started, --ssh-timeout ends the run (255)
#   q-*        QEMU dry runs: pflash pair, read-only NBD blockdev, QMP,
#              doubled commas (also in the socket path and export name),
#              --connect over TCP, SMBIOS credential, -cpu host with
#              --accel kvm, ssh forwarded from 127.0.0.1 only, aarch64
#              kernel boot (ttyAMA0, the key on the command line, TCG)
#   errors     usage errors (2), a server that dies before READY=1, one
#              that never sends it and one whose child sends it (1), a
#              signal while waiting for READY=1 (128+N), a server deaf
#              to SIGTERM (killed 10 s later), --connect to a non-NBD
#              server (1), --boot efi on a tree with no boot loader (1,
#              before QEMU starts)
# After every launch: no process it started is left (PIDs from its -v
# log, never by name), its runtime directory and sockets are gone.
#
# KVM is used when a short probe boot works (tests/efi/vm.sh), else TCG.
# Knobs: EROFS_NBD_VM_ACCEL=kvm|tcg forces it; EROFS_NBD_VM_TIMEOUT=secs
# bounds each boot (default 120 KVM, 300 TCG); EROFS_NBD_LAUNCH is the
# launcher binary (default: erofs-nbd-launch next to $EROFS_NBD);
# EROFS_NBD_VM_KEEP=1 keeps the work directory.
#
# Exit: 0 pass, 77 skip (no QEMU, kernel, busybox or launcher), 1 fail.
# The efi case alone is skipped (with a message) when systemd-boot or
# OVMF is missing.
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"
here=$TESTS_DIR
# shellcheck source=tests/efi/vm.sh
. "$here/efi/vm.sh"			# efi_firmware, efi_pick_accel

# --- prerequisites ----------------------------------------------------------
[ "$(uname -m)" = x86_64 ] || skip "launcher VM test is x86_64 only"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"
find_host_kernel || skip "no readable /boot/vmlinuz-*-amd64 with modules (install linux-image-amd64)"
requires test -x /bin/busybox
requires timeout
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at '$EROFS_NBD'"
LAUNCH=${EROFS_NBD_LAUNCH:-$(dirname "$EROFS_NBD")/erofs-nbd-launch}
[ -x "$LAUNCH" ] || fail "no launcher binary at '$LAUNCH'"

if [ "${EROFS_NBD_VM_KEEP:-0}" = 1 ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-launcher.XXXXXX")
	echo "keeping $work"
else
	tmpdir
	work=$T
fi

# --- trees ----------------------------------------------------------------------
check "building the kernel-boot tree"
marker="launch-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ktree=$work/ktree
mkdir -p "$ktree"/{bin,dev,proc,sys,etc,boot}
cp /bin/busybox "$ktree/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$ktree/bin/$applet"
done
install -m 0755 "$here/launcher/root-init" "$ktree/init"
echo "$marker" >"$ktree/marker"
cp "$kernel" "$ktree/boot/vmlinuz-$kver"
MKINITRAMFS_MODULES="button evdev" \
	"$here/vm/mkinitramfs.sh" "$kver" "$ktree/boot/initrd.img-$kver" && rc=0 || rc=$?
[ "$rc" = 77 ] && skip "initramfs prerequisites missing"
[ "$rc" = 0 ] || fail "mkinitramfs.sh exited $rc"

efi_skip=
# (Not "| grep -q": with pipefail, grep quitting early fails the pipe.)
server_help=$("$EROFS_NBD" --help 2>&1 || true)
if [[ $server_help != *--efi-loader* ]]; then
	efi_skip="this erofs-nbd has no disk export"
elif ! efi_firmware; then
	efi_skip="no OVMF firmware (install ovmf)"
else
	check "building the EFI tree"
	etree=$work/etree
	"$here/efi/mktree.sh" "$kver" "$etree" "$marker" && rc=0 || rc=$?
	[ "$rc" = 77 ] && efi_skip="bootable tree prerequisites missing (tests/efi/mktree.sh)"
	[ "$rc" = 0 ] || [ "$rc" = 77 ] || fail "efi/mktree.sh exited $rc"
fi

if [ -z "$efi_skip" ]; then
	efi_pick_accel "$work" "$etree/boot/vmlinuz-$kver" "$etree/boot/initrd.img-$kver"
	accel=$EFI_ACCEL
else
	accel=${EROFS_NBD_VM_ACCEL:-tcg}
fi
case $accel in
kvm) tmo=${EROFS_NBD_VM_TIMEOUT:-120} ;;
tcg) tmo=${EROFS_NBD_VM_TIMEOUT:-300} ;;
*) fail "EROFS_NBD_VM_ACCEL must be kvm or tcg, not '$accel'" ;;
esac
echo "accelerator: $accel (timeout ${tmo}s per boot)"

# --- helpers ----------------------------------------------------------------------
# launch NAME [ARG...]: starts the launcher in the background (-v, console
# to $work/NAME.con, messages to $work/NAME.err); sets LPID.
launch() {
	local name=$1 a server=() acc=(--accel "$accel")
	shift
	for a in "$@"; do
		[ "$a" = --export ] && server=(--server "$EROFS_NBD")
		[ "$a" = vfkit ] && acc=()
	done
	: >"$work/$name.con"
	"$LAUNCH" -v ${server[@]+"${server[@]}"} ${acc[@]+"${acc[@]}"} --cpus 1 \
		--console-log "$work/$name.con" "$@" </dev/null >"$work/$name.out" \
		2>"$work/$name.err" &
	LPID=$!
	cleanup_fn kill -KILL "$LPID"
}

# finish NAME: waits (bounded) for the launcher; sets LRC.  Prints its
# messages and the console.
finish() {
	local name=$1 i
	for ((i = 0; i < tmo * 10; i++)); do
		kill -0 "$LPID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$LPID" 2>/dev/null; then
		kill -TERM "$LPID" 2>/dev/null || true
		sleep 5
		kill -KILL "$LPID" 2>/dev/null || true
		LRC=timeout
	else
		wait "$LPID" && LRC=0 || LRC=$?
	fi
	echo "--- $name: launcher exit $LRC; its messages:"
	sed 's/^/  | /' "$work/$name.err"
	echo "--- $name: console (last lines):"
	tr -d '\r' <"$work/$name.con" | sed 's/\x1b\[[0-9;?=]*[A-Za-z]//g' | tail -n 12 | sed 's/^/  | /'
	[ "$LRC" != timeout ] || fail "$name: the launcher did not end within ${tmo}s"
}

# wait_log NAME PATTERN FILE: waits (bounded) until FILE has a line
# matching the extended regex PATTERN.
wait_log() {
	local name=$1 pat=$2 file=$3 i
	for ((i = 0; i < tmo * 10; i++)); do
		tr -d '\r' <"$file" 2>/dev/null | grep -qE "$pat" && return 0
		kill -0 "$LPID" 2>/dev/null || fail "$name: the launcher ended before '$pat' appeared in $file"
		sleep 0.1
	done
	fail "$name: no '$pat' in $file within ${tmo}s"
}

# pid_of NAME PROGRAM: the pid the launcher logged for PROGRAM.
pid_of() {
	sed -n "s/^erofs-nbd-launch: started $2 (pid \([0-9]*\)).*/\1/p" "$work/$1.err" | head -n1
}

# nothing_left NAME [RUNDIR]: every process the launcher logged is gone,
# and its runtime directory (RUNDIR, else the one it logged) is removed.
nothing_left() {
	local name=$1 dir=${2:-} pid
	for pid in $(sed -n 's/^erofs-nbd-launch: started .* (pid \([0-9]*\)).*/\1/p' "$work/$name.err"); do
		if kill -0 "$pid" 2>/dev/null; then
			fail "$name: pid $pid ($(ps -o args= -p "$pid")) is still running after the launcher ended"
		fi
	done
	if [ -z "$dir" ]; then
		dir=$(sed -n "s/^erofs-nbd-launch: started erofs-nbd (pid [0-9]*) on '\(.*\)\/nbd.sock'$/\1/p" \
			"$work/$name.err" | head -n1)
	fi
	if [ -n "$dir" ] && [ -e "$dir" ]; then
		ls -la "$dir" >&2 || true
		fail "$name: the runtime directory '$dir' is still there"
	fi
	ok "$name: no process, socket or runtime directory left${dir:+ ($dir)}"
}

# value NAME KEY: the value of the last "KEY=" line on NAME's console.
value() {
	tr -d '\r' <"$work/$1.con" | sed -n "s/^$2=//p" | tail -n1
}

expect_value() {
	local name=$1 key=$2 want=$3 got
	got=$(value "$name" "$key")
	[ "$got" = "$want" ] || fail "$name: console line $key" "$want" "$got"
	ok "$name: $key=$got"
}

expect_rc() {
	[ "$LRC" = "$2" ] || fail "$1: launcher exit status" "$2" "$LRC"
	ok "$1: exit status $LRC"
}

# --- kernel: direct kernel boot, normal end ------------------------------------------
check "kernel: --boot kernel, kernel and initramfs found in the tree, an SSH key"
key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5p0Wc9zQ7xq3Yb8Fh2Lk4Mn6Rt1Uv0Wx9Yz8Ab7Cd6E test@launcher'
printf '%s\n' "$key" >"$work/key.pub"
cred=$(printf '%s\n' "$key" | base64 -w0)
launch kernel --boot kernel --export "$ktree" --memory 256 --cmdline "panic=-1" \
	--ssh-key "$work/key.pub"
finish kernel
expect_rc kernel 0
grep -q "kernel '$ktree/boot/vmlinuz-$kver', initramfs '$ktree/boot/initrd.img-$kver'" \
	"$work/kernel.err" || fail "kernel: the launcher did not pick the tree's kernel and initramfs"
grep -q "erofs-nbd is ready" "$work/kernel.err" || fail "kernel: no READY=1 from the server"
expect_value kernel LAUNCH-ROOTFS erofs
expect_value kernel LAUNCH-MARKER "$marker"
# The key reached the guest as data: a systemd credential in SMBIOS.
expect_value kernel LAUNCH-SMBIOS11 "io.systemd.credential.binary:ssh.authorized_keys.root=$cred"
[ ! -s "$work/kernel.out" ] || fail "kernel: the launcher's stdout is not empty: $(head -c 200 "$work/kernel.out")"
nothing_left kernel

# --- efi: OVMF + systemd-boot from the served disk -----------------------------------
if [ -n "$efi_skip" ]; then
	echo "SKIP (efi case only): $efi_skip"
else
	check "efi: --boot efi, the disk export through OVMF and systemd-boot"
	# No console=: the launcher adds console=ttyS0 to the loader entry.
	launch efi --boot efi --export "$etree" --memory 1024 \
		--cmdline "panic=-1" --runtime-dir "$work/run-efi"
	finish efi
	expect_rc efi 0
	expect_value efi EFI-FIRMWARE uefi
	[[ $(value efi EFI-VAR-LoaderInfo) == systemd-boot* ]] ||
		fail "efi: systemd-boot did not run (LoaderInfo '$(value efi EFI-VAR-LoaderInfo)')"
	[[ $(value efi EFI-CMDLINE) == *" console=ttyS0 systemd.volatile=overlay panic=-1"* ]] ||
		fail "efi: kernel command line" "*console=ttyS0 systemd.volatile=overlay panic=-1*" "$(value efi EFI-CMDLINE)"
	expect_value efi EFI-ROOTFS erofs
	expect_value efi EFI-MARKER "$marker"
	nothing_left efi "$work/run-efi"
fi

# --- sigterm: graceful stop through QMP system_powerdown -------------------------------
check "sigterm: SIGTERM while the guest waits for the power button"
launch sigterm --boot kernel --export "$ktree" --memory 256 \
	--cmdline "panic=-1 launchtest=hold" --grace 60 --runtime-dir "$work/run-sigterm"
wait_log sigterm '^LAUNCH-HOLD=/dev/input/' "$work/sigterm.con"
if [ ! -S "$work/run-sigterm/nbd.sock" ] || [ ! -S "$work/run-sigterm/qmp.sock" ]; then
	fail "sigterm: no nbd.sock and qmp.sock in the runtime directory"
fi
[ "$(stat -c %a "$work/run-sigterm")" = 700 ] ||
	fail "sigterm: runtime directory mode" 700 "$(stat -c %a "$work/run-sigterm")"
kill -TERM "$LPID"
finish sigterm
expect_rc sigterm 143
tr -d '\r' <"$work/sigterm.con" | grep -qx LAUNCH-POWER-BUTTON ||
	fail "sigterm: the guest never saw the power button (no graceful stop)"
ok "sigterm: the guest got the ACPI power button and powered off"
nothing_left sigterm "$work/run-sigterm"

# --- grace: a guest that ignores the power button ----------------------------------------
check "grace: SIGINT, the guest ignores the power button, --grace 2"
launch grace --boot kernel --export "$ktree" --memory 256 \
	--cmdline "panic=-1 launchtest=stuck" --grace 2 --runtime-dir "$work/run-grace"
wait_log grace '^LAUNCH-MARKER=' "$work/grace.con"
sleep 1
kill -INT "$LPID"
finish grace
expect_rc grace 130
grep -q "did not power off within 2 s" "$work/grace.err" ||
	fail "grace: no hard stop after the grace period"
nothing_left grace "$work/run-grace"

# --- qemu-term: QEMU stopped by a signal the launcher did not send -------------------
# QEMU exits 0 on SIGTERM; the launcher must not take that for a power-off.
check "qemu-term: SIGTERM to QEMU from elsewhere: exit 4, not 0"
launch qemu-term --boot kernel --export "$ktree" --memory 256 \
	--cmdline "panic=-1 launchtest=hold" --grace 60 --runtime-dir "$work/run-qemu-term"
wait_log qemu-term '^LAUNCH-HOLD=/dev/input/' "$work/qemu-term.con"
kill -TERM "$(pid_of qemu-term qemu-system-x86_64)"
finish qemu-term
expect_rc qemu-term 4
grep -q "stopped by a signal the launcher did not send" "$work/qemu-term.err" ||
	fail "qemu-term: the launcher did not say why"
nothing_left qemu-term "$work/run-qemu-term"

# --- kill: the server dies mid-boot -------------------------------------------------
check "kill: erofs-nbd killed right after QEMU started"
launch kill --boot kernel --export "$ktree" --memory 256 \
	--cmdline "panic=-1 launchtest=hold" --grace 60 --runtime-dir "$work/run-kill"
wait_log kill '^erofs-nbd-launch: started qemu-system-x86_64' "$work/kill.err"
srv=$(pid_of kill erofs-nbd)
[ -n "$srv" ] || fail "kill: no erofs-nbd pid in the launcher's messages"
kill -KILL "$srv"
start=$SECONDS
finish kill
expect_rc kill 3
[ $((SECONDS - start)) -le 30 ] || fail "kill: the launcher took $((SECONDS - start)) s to stop the VM"
grep -q "while the VM was running; stopping the VM" "$work/kill.err" ||
	fail "kill: the launcher did not say the server died"
nothing_left kill "$work/run-kill"

# --- connect: a server the launcher did not start -------------------------------------
check "connect: --connect to a running server"
start_server "$ktree"
launch connect --boot kernel --connect "$SRV_URI" --memory 256 --cmdline "panic=-1" \
	--kernel "$ktree/boot/vmlinuz-$kver" --initrd "$ktree/boot/initrd.img-$kver" \
	--runtime-dir "$work/run-connect"
finish connect
expect_rc connect 0
expect_value connect LAUNCH-MARKER "$marker"
server_alive || fail "connect: the launcher stopped a server it did not start"
ok "connect: the server is still running"
nothing_left connect "$work/run-connect"
stop_server "$SRV_PID" || fail "erofs-nbd exited non-zero on SIGTERM"

# --- kvm-retry: QEMU with KVM dies during start-up: once more with TCG ---------------
# A stand-in QEMU that dies the way QEMU does on some nested KVM hosts
# (an assertion in kvm_buf_set_msrs, SIGABRT) whenever it is given KVM,
# and runs the real QEMU otherwise.
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	check "kvm-retry: KVM chosen by --accel auto dies at start: retried with TCG"
	fakeq=$work/fake-qemu
	cat >"$fakeq" <<'EOF_FAKE'
#!/bin/sh
for a in "$@"; do
	if [ "$a" = kvm ]; then
		echo "qemu-system-x86_64: ../accel/kvm/kvm-all.c:1706: kvm_buf_set_msrs: Assertion \`ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
		kill -ABRT $$
	fi
done
exec qemu-system-x86_64 "$@"
EOF_FAKE
	chmod +x "$fakeq"
	for mode in auto kvm; do
		name=kvm-$mode
		: >"$work/$name.con"
		"$LAUNCH" -v --server "$EROFS_NBD" --vmm-binary "$fakeq" --accel "$mode" --cpus 1 \
			--memory 256 --console-log "$work/$name.con" --boot kernel --export "$ktree" \
			--cmdline "panic=-1" --runtime-dir "$work/run-$name" </dev/null \
			>"$work/$name.out" 2>"$work/$name.err" &
		LPID=$!
		cleanup_fn kill -KILL "$LPID"
		finish "$name"
		if [ "$mode" = auto ]; then expect_rc "$name" 0; else expect_rc "$name" 4; fi
		nothing_left "$name" "$work/run-$name"
	done
	grep -q "killed by signal 6" "$work/kvm-auto.err" || fail "kvm-auto: the stand-in did not abort under KVM"
	grep -q "trying once more with TCG" "$work/kvm-auto.err" ||
		fail "kvm-auto: the launcher did not say it retries with TCG"
	[ "$(grep -c "^erofs-nbd-launch: started $fakeq" "$work/kvm-auto.err")" = 2 ] ||
		fail "kvm-auto: QEMU was not started exactly twice"
	expect_value kvm-auto LAUNCH-MARKER "$marker"
	ok "kvm-auto: QEMU aborted under KVM, the launcher said so and booted with TCG"
	grep -q "trying once more with TCG" "$work/kvm-kvm.err" &&
		fail "kvm-kvm: --accel kvm was retried with TCG"
	grep -q "failed: killed by signal 6" "$work/kvm-kvm.err" ||
		fail "kvm-kvm: no message about QEMU's failure"
	ok "kvm-kvm: with --accel kvm there is no retry"

	# kvm-efi: the retry of an EFI boot gets a fresh copy of the variable
	# store (the first run left its copy in the runtime directory).  The
	# stand-in aborts under KVM and otherwise only compares its unit=1
	# pflash file with the template; no guest boots.
	check "kvm-efi: the TCG retry of an EFI boot, a fresh variable store"
	head -c 65536 /dev/urandom >"$work/fw-vars.fd"
	: >"$work/fw-code.fd"
	fakee=$work/fake-qemu-efi
	cat >"$fakee" <<EOF_FAKE
#!/bin/sh
for a in "\$@"; do
	case \$a in
	kvm) kill -ABRT \$\$ ;;
	if=pflash,*unit=1,file=*) cmp -s "\${a#*file=}" "$work/fw-vars.fd" || exit 9 ;;
	esac
done
exit 0
EOF_FAKE
	chmod +x "$fakee"
	"$LAUNCH" -v --server "$EROFS_NBD" --vmm-binary "$fakee" --accel auto --boot efi \
		--export "$ktree" --server-opt --esp --server-opt auto \
		--firmware "$work/fw-code.fd" --firmware-vars "$work/fw-vars.fd" \
		--console-log "$work/kvm-efi.con" --runtime-dir "$work/run-kvm-efi" </dev/null \
		>"$work/kvm-efi.out" 2>"$work/kvm-efi.err" && LRC=0 || LRC=$?
	sed 's/^/  | /' "$work/kvm-efi.err"
	expect_rc kvm-efi 0
	[ "$(grep -c "^erofs-nbd-launch: started $fakee" "$work/kvm-efi.err")" = 2 ] ||
		fail "kvm-efi: QEMU was not started exactly twice"
	nothing_left kvm-efi "$work/run-kvm-efi"

	# kvm-late: QEMU with KVM failing after its first 10 s is not a
	# start-up failure: no retry, exit 4.
	check "kvm-late: QEMU with KVM fails 11 s after its start: no retry"
	fakel=$work/fake-qemu-late
	cat >"$fakel" <<'EOF_LATE'
#!/bin/sh
for a in "$@"; do [ "$a" = kvm ] && { sleep 11; exit 1; }; done
exit 0
EOF_LATE
	chmod +x "$fakel"
	"$LAUNCH" -v --server "$EROFS_NBD" --vmm-binary "$fakel" --accel auto --boot kernel \
		--export "$ktree" --console-log "$work/kvm-late.con" \
		--runtime-dir "$work/run-kvm-late" </dev/null >"$work/kvm-late.out" \
		2>"$work/kvm-late.err" && LRC=0 || LRC=$?
	sed 's/^/  | /' "$work/kvm-late.err"
	expect_rc kvm-late 4
	grep -q "trying once more with TCG" "$work/kvm-late.err" &&
		fail "kvm-late: a failure after the start-up window was retried"
	nothing_left kvm-late "$work/run-kvm-late"
else
	echo "SKIP (kvm-retry cases only): no usable /dev/kvm, so --accel auto never picks KVM"
fi

# --- vfkit: the launcher's side of vfkit, with a stand-in ---------------------------
# tests/launcher/fake-vfkit reads the NBD export it is given with nbdinfo
# and serves vfkit's REST API; the launcher must stop it through that API.
if command -v nbdinfo >/dev/null && command -v python3 >/dev/null; then
	fake=$here/launcher/fake-vfkit

	check "vfkit-stop: SIGTERM -> REST {\"state\":\"Stop\"}"
	launch vf-stop --vmm vfkit --vmm-binary "$fake" --boot kernel --export "$ktree" \
		--runtime-dir "$work/run-vf-stop" --grace 30
	wait_log vf-stop '^FAKE-VFKIT-READY' "$work/vf-stop.con"
	[ -S "$work/run-vf-stop/rest.sock" ] || fail "vf-stop: no rest.sock in the runtime directory"
	# The launcher's own sockets are its only (0600), not just by the directory.
	for s in nbd.sock notify; do
		[ "$(stat -c %a "$work/run-vf-stop/$s")" = 600 ] ||
			fail "vf-stop: mode of $s" 600 "$(stat -c %a "$work/run-vf-stop/$s")"
	done
	kill -TERM "$LPID"
	finish vf-stop
	expect_rc vf-stop 143
	expect_value vf-stop FAKE-VFKIT-NBD-EXPORT root
	# nbdinfo read the export through the URI given to vfkit.
	[[ $(value vf-stop FAKE-VFKIT-NBD-SIZE) =~ ^[1-9][0-9]*$ ]] ||
		fail "vf-stop: nbdinfo --size on vfkit's uri=" "a size" "$(value vf-stop FAKE-VFKIT-NBD-SIZE)"
	expect_value vf-stop FAKE-VFKIT-STATE Stop
	nothing_left vf-stop "$work/run-vf-stop"

	check "vfkit-hard: the guest ignores Stop: HardStop after --grace"
	# (ktree has no boot loader: --esp auto lets the server make the disk
	# without an ESP, which the stand-in only measures.)
	FAKE_VFKIT_IGNORE_STOP=1 launch vf-hard --vmm vfkit --vmm-binary "$fake" --boot efi \
		--export "$ktree" --runtime-dir "$work/run-vf-hard" --grace 1 \
		--server-opt --esp --server-opt auto
	wait_log vf-hard '^FAKE-VFKIT-READY' "$work/vf-hard.con"
	kill -INT "$LPID"
	finish vf-hard
	expect_rc vf-hard 130
	expect_value vf-hard FAKE-VFKIT-NBD-EXPORT disk
	expect_value vf-hard FAKE-VFKIT-STATE HardStop
	nothing_left vf-hard "$work/run-vf-hard"

	check "vfkit-twice: the guest ignores Stop, a second signal: HardStop at once"
	FAKE_VFKIT_IGNORE_STOP=1 launch vf-twice --vmm vfkit --vmm-binary "$fake" --boot kernel \
		--export "$ktree" --runtime-dir "$work/run-vf-twice" --grace 60
	wait_log vf-twice '^FAKE-VFKIT-READY' "$work/vf-twice.con"
	kill -TERM "$LPID"
	wait_log vf-twice '^FAKE-VFKIT-STATE=Stop' "$work/vf-twice.con"
	kill -HUP "$LPID"
	start=$SECONDS
	finish vf-twice
	expect_rc vf-twice 143		# the first signal's
	[ $((SECONDS - start)) -le 20 ] ||
		fail "vf-twice: the second signal did not stop the VM hard (took $((SECONDS - start)) s)"
	expect_value vf-twice FAKE-VFKIT-STATE HardStop
	nothing_left vf-twice "$work/run-vf-twice"

	check "vfkit-refused: vfkit answers Stop with 500: HardStop at once"
	FAKE_VFKIT_REFUSE_STOP=1 launch vf-refused --vmm vfkit --vmm-binary "$fake" --boot kernel \
		--export "$ktree" --runtime-dir "$work/run-vf-refused" --grace 60
	wait_log vf-refused '^FAKE-VFKIT-READY' "$work/vf-refused.con"
	kill -TERM "$LPID"
	start=$SECONDS
	finish vf-refused
	expect_rc vf-refused 143
	[ $((SECONDS - start)) -le 20 ] ||
		fail "vf-refused: a refused Stop was taken for accepted (took $((SECONDS - start)) s)"
	grep -q "could not ask the guest to power off" "$work/vf-refused.err" ||
		fail "vf-refused: no message about the failed request"
	expect_value vf-refused FAKE-VFKIT-STATE HardStop
	nothing_left vf-refused "$work/run-vf-refused"

	# The launcher killed with SIGKILL cannot stop anything: its
	# children must go by themselves (PR_SET_PDEATHSIG); the runtime
	# directory stays (README).
	check "vfkit-sigkill: the launcher killed with SIGKILL: its children end too"
	launch vf-sigkill --vmm vfkit --vmm-binary "$fake" --boot kernel --export "$ktree" \
		--runtime-dir "$work/run-vf-sigkill" --grace 30
	wait_log vf-sigkill '^FAKE-VFKIT-READY' "$work/vf-sigkill.con"
	kill -KILL "$LPID"
	wait "$LPID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		alive=()
		for pid in $(sed -n 's/^erofs-nbd-launch: started .* (pid \([0-9]*\)).*/\1/p' "$work/vf-sigkill.err"); do
			kill -0 "$pid" 2>/dev/null && alive+=("$pid")
		done
		[ ${#alive[@]} = 0 ] && break
		sleep 0.1
	done
	if [ ${#alive[@]} != 0 ]; then
		kill -KILL "${alive[@]}" 2>/dev/null || true
		fail "vf-sigkill: still running 10 s after the launcher's SIGKILL: ${alive[*]}"
	fi
	rm -rf "$work/run-vf-sigkill"
	nothing_left vf-sigkill

	check "vfkit-kill: erofs-nbd dies: HardStop at once, exit 3"
	launch vf-kill --vmm vfkit --vmm-binary "$fake" --boot kernel --export "$ktree" \
		--runtime-dir "$work/run-vf-kill" --grace 30
	wait_log vf-kill '^FAKE-VFKIT-READY' "$work/vf-kill.con"
	kill -KILL "$(pid_of vf-kill erofs-nbd)"
	finish vf-kill
	expect_rc vf-kill 3
	expect_value vf-kill FAKE-VFKIT-STATE HardStop
	nothing_left vf-kill "$work/run-vf-kill"

	# The SSH path on vfkit: the key as a credential on the command
	# line, vsock 22 through --proxy-unix, COMMAND quoted, its status.
	if command -v sshd >/dev/null || [ -x /usr/sbin/sshd ]; then
		check "vf-ssh: -- COMMAND through vfkit's vsock port 22 (sshd -i in the stand-in)"
		weird=$'a b  "c" \'d\' $HOME ; `id` \\ *\nline 2'
		launch vf-ssh --vmm vfkit --vmm-binary "$fake" --boot kernel --export "$ktree" \
			--runtime-dir "$work/run-vf-ssh" --grace 30 -- printf '%s' "$weird"
		finish vf-ssh
		expect_rc vf-ssh 0
		expect_value vf-ssh FAKE-VFKIT-SSH-KEYS 1
		[ "$(cat "$work/vf-ssh.out"; echo x)" = "${weird}x" ] ||
			fail "vf-ssh: the argument did not come back byte for byte" "$weird" "$(cat "$work/vf-ssh.out")"
		expect_value vf-ssh FAKE-VFKIT-STATE Stop
		nothing_left vf-ssh "$work/run-vf-ssh"
		# With --ssh-key both keys are authorized (one line each).
		launch vf-ssh7 -v --vmm vfkit --vmm-binary "$fake" --boot kernel --export "$ktree" \
			--runtime-dir "$work/run-vf-ssh7" --grace 30 --ssh-key "$work/key.pub" \
			-- sh -c 'exit 7'
		finish vf-ssh7
		expect_rc vf-ssh7 7
		# (-vv shows ssh's argv.)  No terminal for COMMAND even when
		# stdin is one (-T), and the guest's root, whoever runs this.
		sshargs=$'\1'$(sed -n 's/^erofs-nbd-launch: debug: ssh: //p' "$work/vf-ssh7.err" | tr '\n' '\1')
		[[ $sshargs == *$'\1-T\1-l\1root\1erofs-nbd-guest\1--\1'* ]] ||
			fail "vf-ssh7: ssh's argv lacks '-T -l root erofs-nbd-guest --'" "$(tr '\1' ' ' <<<"$sshargs")"
		expect_value vf-ssh7 FAKE-VFKIT-SSH-KEYS 2
		nothing_left vf-ssh7 "$work/run-vf-ssh7"
		# '%' in the runtime directory: ssh would expand %h in the key's,
		# known_hosts' and ProxyCommand's paths unless doubled.
		launch vf-ssh-pct --vmm vfkit --vmm-binary "$fake" --boot kernel --export "$ktree" \
			--runtime-dir "$work/run-vf%h%%ssh" --grace 30 -- sh -c 'exit 7'
		finish vf-ssh-pct
		expect_rc vf-ssh-pct 7
		nothing_left vf-ssh-pct "$work/run-vf%h%%ssh"
		ok "vf-ssh: COMMAND's bytes and exit status through vsock 22"

		# A signal while COMMAND runs: ssh ends first, and its SIGCHLD
		# must not cut short the Stop request (answered 0.5 s later):
		# the guest is asked to power off, not stopped hard.
		check "vf-ssh-sig: SIGQUIT during COMMAND -> Stop, exit 131"
		FAKE_VFKIT_STOP_DELAY=0.5 launch vf-ssh-sig --vmm vfkit --vmm-binary "$fake" \
			--boot kernel --export "$ktree" --runtime-dir "$work/run-vf-ssh-sig" --grace 30 \
			-- sh -c "echo \$\$ >'$work/vf-ssh-sig.pid'; echo CMD-STARTED; exec sleep 600"
		wait_log vf-ssh-sig '^CMD-STARTED' "$work/vf-ssh-sig.out"
		kill -QUIT "$LPID"
		finish vf-ssh-sig
		kill "$(cat "$work/vf-ssh-sig.pid")" 2>/dev/null || true	# sshd -i's, on this host
		expect_rc vf-ssh-sig 131
		grep -q "asked the guest to power off" "$work/vf-ssh-sig.err" &&
			! grep -q "could not ask the guest to power off" "$work/vf-ssh-sig.err" ||
			fail "vf-ssh-sig: the Stop request failed (interrupted?)"
		expect_value vf-ssh-sig FAKE-VFKIT-STATE Stop
		nothing_left vf-ssh-sig "$work/run-vf-ssh-sig"
	else
		echo "SKIP (vf-ssh cases only): no sshd"
	fi
else
	echo "SKIP (vfkit stand-in cases only): no nbdinfo or python3"
fi

# --- stubborn: a VMM that ignores SIGTERM -------------------------------------------------
# A stand-in QEMU with no QMP socket (so the power-off request fails and
# the hard stop comes at once) that ignores SIGTERM: SIGKILL 5 s later.
check "stubborn: a VMM that ignores SIGTERM is killed"
stub=$work/stubborn-qemu
printf '#!/bin/sh\ntrap "" TERM\nexec sleep 600\n' >"$stub"
chmod +x "$stub"
launch stubborn --vmm-binary "$stub" --boot kernel --export "$ktree" \
	--runtime-dir "$work/run-stubborn" --grace 60
wait_log stubborn "^erofs-nbd-launch: started $stub" "$work/stubborn.err"
sleep 0.5
kill -TERM "$LPID"
start=$SECONDS
finish stubborn
expect_rc stubborn 143
[ $((SECONDS - start)) -le 20 ] || fail "stubborn: the launcher took $((SECONDS - start)) s"
grep -q "did not stop; killing it" "$work/stubborn.err" ||
	fail "stubborn: the VMM was not killed after the hard stop"
nothing_left stubborn "$work/run-stubborn"

# --- no-sshd: a forward that accepts, with no sshd behind it ---------------------------
# QEMU's user-mode forward accepts (and closes) connections before the
# guest's sshd runs: only sshd's banner may start ssh.
if command -v python3 >/dev/null && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; then
	check "no-sshd: a port that accepts and closes is no sshd: --ssh-timeout, 255"
	nosshd=$work/accepting-qemu
	cat >"$nosshd" <<'EOF_NOSSHD'
#!/usr/bin/python3
# Listens where QEMU's hostfwd would, and closes each connection at once.
import re, socket, sys
port = [int(m.group(1)) for a in sys.argv
        for m in [re.search(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:22", a)] if m][0]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(8)
while True:
    s.accept()[0].close()
EOF_NOSSHD
	chmod +x "$nosshd"
	launch no-sshd --vmm-binary "$nosshd" --boot kernel --export "$ktree" \
		--runtime-dir "$work/run-no-sshd" --ssh-timeout 3 -- true
	finish no-sshd
	expect_rc no-sshd 255
	grep -q "sshd did not answer within 3 s" "$work/no-sshd.err" ||
		fail "no-sshd: no --ssh-timeout message"
	grep -q "started ssh (pid" "$work/no-sshd.err" && fail "no-sshd: ssh was started with no sshd banner"
	nothing_left no-sshd "$work/run-no-sshd"
fi

# --- QEMU dry runs ------------------------------------------------------------------------
check "dry runs: the QEMU command line"
# qdry NAME ARG...: a QEMU dry run, one argument per line in $work/NAME.out.
qdry() {
	local name=$1 rc
	shift
	"$LAUNCH" --vmm qemu --dry-run --accel tcg "$@" >"$work/$name.out" \
		2>"$work/$name.err" && rc=0 || rc=$?
	[ "$rc" = 0 ] || { cat "$work/$name.err" >&2; fail "$name: --dry-run exited $rc"; }
	[ ! -e "$work/run-dry" ] || fail "$name: the dry run created its runtime directory"
}
# has NAME LINE...: the dry run printed these lines, consecutively.
has() {
	local name=$1 hay want
	shift
	hay=$'\1'$(tr '\n' '\1' <"$work/$name.out")
	want=$'\1'$(printf '%s\1' "$@")
	[[ $hay == *"$want"* ]] || fail "$name: no consecutive lines: $*"
}
run=$work/run-dry
qdry q-efi --boot efi --export "$ktree" --runtime-dir "$run" --console-log "$work/a,b.log"
has q-efi -machine q35 -accel tcg -cpu max
has q-efi -chardev "file,id=con0,path=$work/a,,b.log" -serial chardev:con0
has q-efi -chardev "socket,id=qmp0,server=on,wait=off,path=$run/qmp.sock" -mon chardev=qmp0,mode=control
has q-efi -chardev "socket,id=qmp1,server=on,wait=off,path=$run/qmp-ev.sock" -mon chardev=qmp1,mode=control
has q-efi -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
	-drive "if=pflash,format=raw,unit=1,file=$run/vars.fd"
has q-efi -blockdev "driver=nbd,node-name=disk0,server.type=unix,server.path=$run/nbd.sock,export=disk,read-only=on" \
	-device virtio-blk-pci,drive=disk0,serial=erofsroot,bootindex=1
has q-efi -no-reboot
ok "q-efi: OVMF pflash pair, the disk export read-only, QMP, commas doubled"
qdry q-tcp --boot efi --connect 'nbd://[::1]:10810/' --runtime-dir "$run" --ssh-key "$work/key.pub"
has q-tcp -blockdev "driver=nbd,node-name=disk0,server.type=inet,server.host=::1,server.port=10810,export=disk,read-only=on"
has q-tcp -smbios "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=$cred"
ok "q-tcp: --connect over TCP, the SSH key in SMBIOS type 11"
qdry q-kernel --boot kernel --export "$ktree" --runtime-dir "$run" --cmdline "quiet"
has q-kernel -kernel "$ktree/boot/vmlinuz-$kver" -initrd "$ktree/boot/initrd.img-$kver" \
	-append "root=/dev/vda rootfstype=erofs ro console=ttyS0 systemd.volatile=overlay quiet"
has q-kernel -blockdev "driver=nbd,node-name=disk0,server.type=unix,server.path=$run/nbd.sock,export=root,read-only=on"
ok "q-kernel: the tree's kernel, the root export"
qdry q-kvm --boot kernel --export "$ktree" --runtime-dir "$run" --accel kvm
has q-kvm -machine q35 -accel kvm -cpu host
ok "q-kvm: --accel kvm, the host's CPU model"
# Commas in the socket path and the export name are doubled too.
qdry q-commas --boot efi --connect 'nbd+unix:///a,b?socket=/tmp/x,y/nbd.sock' --runtime-dir "$run"
has q-commas -blockdev "driver=nbd,node-name=disk0,server.type=unix,server.path=/tmp/x,,y/nbd.sock,export=a,,b,read-only=on"
ok "q-commas: socket path and export name escaped for -blockdev"
# A COMMAND: guest port 22 forwarded from loopback only, the console
# off the terminal (which is the session's).
qdry q-ssh --boot kernel --export "$ktree" --runtime-dir "$run" -- true
grep -qxE 'user,model=virtio-net-pci,hostfwd=tcp:127\.0\.0\.1:[0-9]+-:22' "$work/q-ssh.out" ||
	fail "q-ssh: ssh forward" "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:PORT-:22" \
	"$(grep hostfwd "$work/q-ssh.out")"
has q-ssh -chardev "file,id=con0,path=$run/console" -serial chardev:con0
ok "q-ssh: hostfwd from 127.0.0.1 only, the console in the runtime directory"
# aarch64 direct kernel boot (no firmware, no SMBIOS): the key goes on the
# command line in both forms, the console is ttyAMA0, and --accel auto
# never picks KVM for a guest of another architecture.
qdry q-arm64 --arch aarch64 --boot kernel --export "$ktree" --runtime-dir "$run" \
	--kernel "$ktree/boot/vmlinuz-$kver" --initrd "$ktree/boot/initrd.img-$kver" \
	--ssh-key "$work/key.pub" --accel auto
has q-arm64 qemu-system-aarch64
has q-arm64 -machine virt -accel tcg -cpu max
has q-arm64 -append "root=/dev/vda rootfstype=erofs ro console=ttyAMA0 systemd.volatile=overlay systemd.set_credential_binary=ssh.authorized_keys.root:$cred \"systemd.set_credential=ssh.authorized_keys.root:$key\""
grep -qx -- -smbios "$work/q-arm64.out" && fail "q-arm64: -smbios without firmware to install it"
ok "q-arm64: ttyAMA0, the key on the kernel command line, TCG"

# --- errors ------------------------------------------------------------------------------
check "errors: usage and start-up failures"
# usage_rc WANT ARG...: the launcher exits WANT with ARG... (no VM).
usage_rc() {
	local want=$1 rc
	shift
	"$LAUNCH" "$@" </dev/null >/dev/null 2>"$work/usage.err" && rc=0 || rc=$?
	[ "$rc" = "$want" ] || fail "exit status of erofs-nbd-launch $*" "$want" "$rc"
}
usage_rc 2 --boot kernel
usage_rc 2 --export "$ktree" --connect "nbd://127.0.0.1/"
usage_rc 2 --export "$ktree" --vmm bochs
usage_rc 2 --export "$ktree" --boot pxe
usage_rc 2 --export "$ktree" --cpus 0
usage_rc 2 --export "$ktree" --device-id "a/b"
usage_rc 2 --connect "http://example.invalid/" --dry-run
usage_rc 2 --export "$ktree" --cmdline "$(printf 'a\nb')"
# A kernel boot of an image (the server merges its layers: no tree to
# find a kernel in) needs --kernel, also for QEMU.
usage_rc 2 --boot kernel --image localhost/x
# Bad usage with -- COMMAND (not a dry run) is still 2, not ssh's 255.
usage_rc 2 --export "$ktree" --image x -- true
usage_rc 2 --boot kernel --lowerdir "$ktree" -- true
ok "errors: usage errors exit 2"

# A server that exits at once, and one that never says READY=1.
printf '#!/bin/sh\nexit 7\n' >"$work/dies"
printf '#!/bin/sh\nexec sleep 600\n' >"$work/mute"
chmod +x "$work/dies" "$work/mute"
for s in dies mute; do
	"$LAUNCH" -v --server "$work/$s" --export "$ktree" --boot kernel --accel tcg \
		--ready-timeout 2 --runtime-dir "$work/run-$s" </dev/null >/dev/null \
		2>"$work/$s.err" && rc=0 || rc=$?
	sed 's/^/  | /' "$work/$s.err"
	[ "$rc" = 1 ] || fail "$s: launcher exit status" 1 "$rc"
	grep -q "started qemu" "$work/$s.err" && fail "$s: QEMU was started without READY=1"
	nothing_left "$s" "$work/run-$s"
done
grep -q "exited before it was ready (exit status 7)" "$work/dies.err" ||
	fail "dies: no 'exited before it was ready' message"
grep -q "did not report READY=1 within 2 s" "$work/mute.err" ||
	fail "mute: no READY=1 timeout message"
# READY=1 from a child of the server, not from the server's pid, does
# not count ("false" as the VMM: were it started, it would fail at once).
if command -v python3 >/dev/null; then
	cat >"$work/stranger" <<'EOF_STRANGER'
#!/bin/sh
python3 -c 'import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])'
exec sleep 600
EOF_STRANGER
	chmod +x "$work/stranger"
	"$LAUNCH" -v --server "$work/stranger" --vmm-binary false --export "$ktree" --boot kernel \
		--ready-timeout 2 --runtime-dir "$work/run-stranger" </dev/null >/dev/null \
		2>"$work/stranger.err" && rc=0 || rc=$?
	sed 's/^/  | /' "$work/stranger.err"
	[ "$rc" = 1 ] || fail "stranger: launcher exit status" 1 "$rc"
	grep -q "did not report READY=1 within 2 s" "$work/stranger.err" ||
		fail "stranger: another process's READY=1 was taken for the server's"
	nothing_left stranger "$work/run-stranger"
fi
# A stop signal while waiting for READY=1: 128+N, the server stopped.
launch mute-sig --server "$work/mute" --export "$ktree" --boot kernel \
	--runtime-dir "$work/run-mute-sig"
wait_log mute-sig '^erofs-nbd-launch: started erofs-nbd' "$work/mute-sig.err"
kill -TERM "$LPID"
finish mute-sig
expect_rc mute-sig 143
grep -q "while erofs-nbd was starting" "$work/mute-sig.err" ||
	fail "mute-sig: no message about the signal"
grep -q "started qemu" "$work/mute-sig.err" && fail "mute-sig: QEMU was started"
nothing_left mute-sig "$work/run-mute-sig"
ok "errors: a dead or mute server fails the launch (exit 1)"

# A server that ignores SIGTERM (and never gets ready) is killed 10 s
# after it.
printf '#!/bin/sh\ntrap "" TERM\nexec sleep 600\n' >"$work/deaf"
chmod +x "$work/deaf"
timeout -k 5 40 "$LAUNCH" -v --server "$work/deaf" --export "$ktree" --boot kernel \
	--accel tcg --ready-timeout 1 --runtime-dir "$work/run-deaf" </dev/null >/dev/null \
	2>"$work/deaf.err" && rc=0 || rc=$?
deaf=$(pid_of deaf erofs-nbd)
[ -z "$deaf" ] || cleanup_fn kill -KILL "$deaf"
[ "$rc" = 1 ] || fail "deaf: launcher exit status" 1 "$rc"
grep -q "erofs-nbd (pid [0-9]*) did not stop; killing it" "$work/deaf.err" ||
	fail "deaf: the server was not killed after SIGTERM"
nothing_left deaf "$work/run-deaf"

# --connect to something that answers, but not as an NBD server (what an
# ssh -L forward may reach): refused before the VMM starts.
if command -v python3 >/dev/null; then
	python3 - "$work/notnbd.sock" <<'EOF_NOTNBD' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
while True:
    c = s.accept()[0]
    c.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    c.close()
EOF_NOTNBD
	notnbd=$!
	cleanup_fn kill "$notnbd"
	for ((i = 0; i < 50; i++)); do [ -S "$work/notnbd.sock" ] && break; sleep 0.1; done
	"$LAUNCH" --vmm-binary false --connect "nbd+unix:///?socket=$work/notnbd.sock" \
		--boot kernel --kernel "$ktree/boot/vmlinuz-$kver" --initrd "$ktree/boot/initrd.img-$kver" \
		--runtime-dir "$work/run-notnbd" </dev/null >/dev/null 2>"$work/notnbd.err" && rc=0 || rc=$?
	kill "$notnbd"
	[ "$rc" = 1 ] || fail "notnbd: launcher exit status" 1 "$rc"
	grep -q "is not an NBD server (no NBDMAGIC greeting)" "$work/notnbd.err" ||
		fail "notnbd: message" "not an NBD server" "$(cat "$work/notnbd.err")"
	[ ! -e "$work/run-notnbd" ] || fail "notnbd: the runtime directory was left"
	ok "errors: --connect to a non-NBD server fails the launch (exit 1)"
fi

# ssh missing (ssh-keygen there): refused before anything starts.
if command -v ssh-keygen >/dev/null; then
	mkdir -p "$work/nossh"
	ln -sf "$(command -v ssh-keygen)" "$work/nossh/ssh-keygen"
	ln -sf "$(command -v qemu-system-x86_64)" "$work/nossh/qemu-system-x86_64"
	PATH=$work/nossh "$LAUNCH" -v --export "$ktree" --boot kernel --accel tcg \
		--runtime-dir "$work/run-nossh" -- true </dev/null >/dev/null 2>"$work/nossh.err" &&
		rc=0 || rc=$?
	[ "$rc" = 255 ] || fail "nossh: launcher exit status" 255 "$rc"
	grep -q "'ssh' (install openssh-client)" "$work/nossh.err" || fail "nossh: no message naming ssh"
	grep -q "started qemu\|started erofs-nbd" "$work/nossh.err" && fail "nossh: something was started"
	nothing_left nossh "$work/run-nossh"
	ok "errors: no ssh program: refused before the server or the VM starts (255)"
fi

# --boot efi (the default) on a tree the server builds no ESP for (this
# one has a kernel but no systemd-boot): the launch fails before QEMU
# starts, where OVMF would wait in its shell for ever.
if [ -z "$efi_skip" ] || [ "$efi_skip" = "bootable tree prerequisites missing (tests/efi/mktree.sh)" ]; then
	"$LAUNCH" -v --export "$ktree" --accel tcg --runtime-dir "$work/run-noesp" \
		</dev/null >/dev/null 2>"$work/noesp.err" && rc=0 || rc=$?
	sed 's/^/  | /' "$work/noesp.err"
	[ "$rc" = 1 ] || fail "noesp: launcher exit status" 1 "$rc"
	grep -q "started qemu" "$work/noesp.err" && fail "noesp: QEMU was started for a disk without an ESP"
	grep -q "building the EFI System Partition: no boot loader" "$work/noesp.err" ||
		fail "noesp: no message from the server naming the missing boot loader"
	nothing_left noesp "$work/run-noesp"
	ok "errors: --boot efi without an ESP fails the launch (exit 1), QEMU not started"
fi

echo "PASS: erofs-nbd-launch booted and stopped QEMU guests, leaving nothing behind${efi_skip:+ (efi case skipped: $efi_skip)}"
