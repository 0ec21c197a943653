#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-os.sh - from an OS tree to a command's output in one command:
# erofs-nbd-launch --vmm qemu --accel tcg --export TREE -- COMMAND on a
# real Debian 12 tree (tests/os/mktree.sh amd64: systemd, openssh-server,
# a dracut initramfs), each run a real boot to sshd, COMMAND over SSH,
# power-off.
# slow: three QEMU boots of a full Debian system under TCG (~1-5 min each)
#
# Runs (each COMMAND is one launcher run, so each is one boot):
#   efi     --boot efi (OVMF, systemd-boot from the served ESP, root by
#           PARTUUID): -- cat /etc/os-release prints the tree's
#           os-release byte for byte and the launcher exits 0
#   kernel  --boot kernel (the tree's kernel and initramfs, root=/dev/vda):
#           the same
#   args    -- sh -c SCRIPT sh ARG: ARG (spaces, both quotes, $, $(...),
#           backquotes, ;, \, a tab, a newline, a glob) arrives byte for
#           byte (compared in hex); files written in the guest's /etc and
#           /root do not appear in the tree (systemd.volatile=overlay);
#           the guest reached multi-user.target and `systemctl
#           is-system-running --wait` says running (or degraded: the
#           failed units are printed); SCRIPT ends with exit 7 and the
#           launcher exits 7
# After every run: no process it started is left (the PIDs its -v log
# names: erofs-nbd, QEMU, ssh-keygen, ssh), and its runtime directory, with
# the throwaway key, known_hosts and sockets, is gone.
#
# One emulator fault is retried, once per run: under TCG a guest vCPU can
# halt and never see its next timer interrupt (QEMU 7.2; seen once in
# about 25 CI runs).  The guest's kernel names it itself, "rcu: ... kthread
# timer wakeup didn't happen", 21 s into the stall; the test watches the
# console for that line, stops the launcher (which must still leave
# nothing behind), prints the console and boots again.  Any other
# failure, or the fault twice, fails the test.
#
# Knobs: EROFS_NBD_VM_ACCEL (default tcg), EROFS_NBD_SSH_TIMEOUT (seconds
# for sshd, default 900), EROFS_NBD_VM_KEEP=1 keeps the work directory.
# Exit: 0 pass, 77 skip (not root, no QEMU/OVMF/ssh, the tree cannot be
# built here), 1 fail.
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"

requires_root
[ "$(uname -m)" = x86_64 ] || skip "x86_64 only"
requires qemu-system-x86_64
requires ssh
requires ssh-keygen
requires test -r /usr/share/OVMF/OVMF_CODE_4M.fd
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at '$EROFS_NBD'"
LAUNCH=${EROFS_NBD_LAUNCH:-$(dirname "$EROFS_NBD")/erofs-nbd-launch}
[ -x "$LAUNCH" ] || fail "no launcher binary at '$LAUNCH'"
accel=${EROFS_NBD_VM_ACCEL:-tcg}
ssh_timeout=${EROFS_NBD_SSH_TIMEOUT:-900}

check "the Debian 12 OS tree (built once per machine)"
tree=$("$TESTS_DIR/os/mktree.sh" amd64) && rc=0 || rc=$?
[ "$rc" = 77 ] && skip "the OS tree cannot be built here (see above)"
[ "$rc" = 0 ] || fail "tests/os/mktree.sh amd64 exited $rc"
echo "tree: $tree"

if [ "${EROFS_NBD_VM_KEEP:-0}" = 1 ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-os.XXXXXX")
	echo "keeping $work"
else
	tmpdir
	work=$T
fi

# launch NAME ARG...: one launcher run in the foreground, bounded; its
# stdout in $work/NAME.out, messages in NAME.err, console in NAME.con;
# sets LRC and SECS.  A TCG lost-timer hang (above) is retried once.
launch() {
	local name=$1
	launch_once "$@"
	[ "$LRC" = hung ] || return 0
	echo "NOTE: $name: the guest's kernel reports a lost timer interrupt (a TCG" \
		"fault, not the export); its console ends:"
	console_tail "$name" 2>&1 | tail -n 12 | sed 's/^/  : /'
	nothing_left "$name"
	local f
	for f in out err con; do mv "$work/$name.$f" "$work/$name.hung.$f"; done
	echo "NOTE: $name: booting again (once)"
	launch_once "$@"
	[ "$LRC" != hung ] || { console_tail "$name"; fail "$name: the TCG lost-timer hang again"; }
}

# launch_once NAME ARG...: one attempt; LRC is "hung" when the console shows
# the lost-timer line and the launcher was stopped for it.
launch_once() {
	local name=$1 start=$SECONDS hung=0
	shift
	"$LAUNCH" -v --server "$EROFS_NBD" --vmm qemu --accel "$accel" --cpus 2 \
		--memory 1024 --ssh-timeout "$ssh_timeout" --runtime-dir "$work/run-$name" \
		--console-log "$work/$name.con" --export "$tree" "$@" </dev/null \
		>"$work/$name.out" 2>"$work/$name.err" &
	local pid=$!
	cleanup_fn kill -TERM "$pid"
	local i
	for ((i = 0; i < (ssh_timeout + 300) * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		if [ "$accel" = tcg ] && ((i % 50 == 0)) &&
			grep -qs "kthread timer wakeup didn't happen" "$work/$name.con"; then
			hung=1
			break
		fi
		sleep 0.1
	done
	# If it still runs: on SIGTERM the launcher powers the guest off (at most
	# 20 s) and stops everything it started; wait blocks until it has.
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" && LRC=0 || LRC=$?
	SECS=$((SECONDS - start))
	echo "--- $name: exit $LRC after $SECS s; launcher messages:"
	sed 's/^/  | /' "$work/$name.err"
	[ "$hung" = 0 ] || LRC=hung
}

# console_tail NAME: the end of the guest's console, for a failure.
console_tail() {
	tr -d '\r' <"$work/$1.con" | sed 's/\x1b\[[0-9;?=]*[A-Za-z]//g' | tail -n 30 >&2
}

# nothing_left NAME: no process from the -v log runs, the runtime directory is gone.
nothing_left() {
	local name=$1 pid
	for pid in $(sed -n 's/^erofs-nbd-launch: started .* (pid \([0-9]*\)).*/\1/p' "$work/$name.err"); do
		kill -0 "$pid" 2>/dev/null &&
			fail "$name: pid $pid ($(ps -o args= -p "$pid")) still runs"
	done
	[ ! -e "$work/run-$name" ] || { ls -la "$work/run-$name" >&2; fail "$name: the runtime directory (key, sockets) is still there"; }
	ok "$name: no process, socket, directory or key left"
}

want=$(cat "$tree/etc/os-release")

for mode in efi kernel; do
	check "$mode: -- cat /etc/os-release (--boot $mode, $accel)"
	launch "$mode" --boot "$mode" -- cat /etc/os-release
	[ "$LRC" = 0 ] || { console_tail "$mode"; fail "$mode: launcher exit status" 0 "$LRC"; }
	if [ "$(cat "$work/$mode.out")" != "$want" ]; then
		diff <(echo "$want") "$work/$mode.out" >&2 || true
		fail "$mode: the output is not the tree's /etc/os-release"
	fi
	grep -q "the guest's sshd answers" "$work/$mode.err" || fail "$mode: no sshd message"
	ok "$mode: the tree's os-release, exit 0, $SECS s from start to power-off"
	nothing_left "$mode"
done

check "args: an argument byte for byte, writes stay in RAM, exit 7"
arg=$'a b  "c" \'d\' $HOME $(id) `id` ; echo pwned \\ \t*\nsecond line'
script='
printf "ARG-HEX=%s\n" "$(printf %s "$1" | od -An -v -tx1 | tr -d " \n")"
echo guest >/etc/erofs-nbd-written && echo guest >/root/erofs-nbd-written &&
	echo WRITE=ok
echo "STATE=$(systemctl is-system-running --wait)"
echo "TARGET=$(systemctl is-active multi-user.target)"
systemctl --failed --no-legend --plain | sed "s/^/FAILED=/"
exit 7'
launch args --boot efi -- sh -c "$script" sh "$arg"
[ "$LRC" = 7 ] || { console_tail args; fail "args: launcher exit status (COMMAND's)" 7 "$LRC"; }
sed 's/^/  > /' "$work/args.out"
want_hex=$(printf %s "$arg" | od -An -v -tx1 | tr -d ' \n')
got_hex=$(sed -n 's/^ARG-HEX=//p' "$work/args.out")
[ "$got_hex" = "$want_hex" ] || fail "args: the argument did not arrive byte for byte" "$want_hex" "$got_hex"
ok "args: the argument arrived byte for byte (${#arg} bytes)"
grep -qx WRITE=ok "$work/args.out" || fail "args: writing /etc and /root in the guest failed"
for f in etc/erofs-nbd-written root/erofs-nbd-written; do
	[ ! -e "$tree/$f" ] || fail "args: /$f written in the guest appeared in the tree"
done
ok "args: files written in the guest are not in the tree"
grep -qx TARGET=active "$work/args.out" || fail "args: multi-user.target is not active"
state=$(sed -n 's/^STATE=//p' "$work/args.out")
case $state in
running) ok "args: systemctl is-system-running: running" ;;
degraded) echo "NOTE: degraded; failed units:"; grep '^FAILED=' "$work/args.out" || true
	ok "args: systemctl is-system-running: degraded (units above)" ;;
*) fail "args: systemctl is-system-running" "running (or degraded)" "$state" ;;
esac
nothing_left args

echo "PASS: $TEST_NAME: COMMANDs over SSH on a Debian 12 tree (EFI and kernel boot, $accel)"
