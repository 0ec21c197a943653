#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: boots a QEMU guest through an ssh forward
# tests/test-ssh-connect.sh - the podman machine path in miniature: the
# server listens on a root-only Unix socket "inside the machine" and a
# client on the "host" reaches it through `ssh -L LOCAL.sock:REMOTE.sock`,
# the Unix-socket forward podman machine's ssh connection can carry.
#
# A throwaway sshd on 127.0.0.1 (free port, temporary host key and
# authorized_keys, root login by key only) forwards a local socket to the
# server's; nbdinfo sees the exports through it and nbdcopy of the "root"
# export through the forward equals --write-image byte for byte.  Then, if
# build/erofs-nbd-launch exists and has --connect, it boots the export
# through the same forward (qemu, direct kernel boot) and the guest sees
# the tree.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires ssh
requires ssh-keygen
requires nbdinfo
requires nbdcopy
requires python3
SSHD=$(command -v sshd || true)
[ -n "$SSHD" ] || { [ -x /usr/sbin/sshd ] && SSHD=/usr/sbin/sshd; } || skip "'sshd' not found"
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"

tmpdir
src=$T/src
check "building a tree"
mkdir -p "$src/etc" "$src/data"
echo "erofs-nbd over ssh" >"$src/etc/motd"
head -c 2000000 /dev/urandom >"$src/data/blob"
mkdir -m 0700 "$src/data/private"
echo "root only" >"$src/data/private/secret"
chmod 0600 "$src/data/private/secret"
"$EROFS_NBD" --export "$src" --image-export root --write-image "$T/ref.img" ||
	fail "--write-image failed"

check "starting sshd on 127.0.0.1"
mkdir -p /run/sshd
chmod 0755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$T/host_key" </dev/null
ssh-keygen -q -t ed25519 -N '' -f "$T/client_key" </dev/null
cp "$T/client_key.pub" "$T/authorized_keys"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $T/host_key
PidFile $T/sshd.pid
AuthorizedKeysFile $T/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowStreamLocalForwarding yes
X11Forwarding no
EOF
"$SSHD" -t -f "$T/sshd_config" || fail "sshd -t rejects the configuration"
"$SSHD" -D -e -f "$T/sshd_config" 2>"$T/sshd.log" &
sshd_pid=$!
cleanup_fn kill "$sshd_pid"
for ((i = 0; i < 100; i++)); do
	python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
	kill -0 "$sshd_pid" 2>/dev/null || { cat "$T/sshd.log"; fail "sshd exited"; }
	sleep 0.1
done
ok "sshd on port $port"

check "erofs-nbd on a root-only Unix socket, forwarded with ssh -L"
start_server "$src"
remote=$SRV_SOCK
local_sock=$T/local.sock
ssh -N -F none -i "$T/client_key" -p "$port" \
	-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile="$T/known_hosts" \
	-o ExitOnForwardFailure=yes -o StreamLocalBindUnlink=yes -o StreamLocalBindMask=0177 \
	-L "$local_sock:$remote" root@127.0.0.1 2>"$T/ssh.log" &
ssh_pid=$!
cleanup_fn kill "$ssh_pid"
for ((i = 0; i < 150; i++)); do
	[ -S "$local_sock" ] && break
	kill -0 "$ssh_pid" 2>/dev/null || { cat "$T/ssh.log" "$T/sshd.log"; fail "ssh -L exited"; }
	sleep 0.1
done
[ -S "$local_sock" ] || { cat "$T/ssh.log"; fail "ssh did not create $local_sock in 15 s"; }
ok "forward $local_sock -> $remote"

check "clients through the forward"
timeout 60 nbdinfo --list "nbd+unix:///?socket=$local_sock" >"$T/list" ||
	{ cat "$T/ssh.log" "$T/sshd.log"; fail "nbdinfo --list through ssh failed"; }
grep -q '^export="root":' "$T/list" || fail "no export \"root\" through the forward"
timeout 120 nbdcopy "nbd+unix:///root?socket=$local_sock" "$T/fwd.img" ||
	fail "nbdcopy through ssh failed"
cmp "$T/ref.img" "$T/fwd.img" || fail "bytes through ssh differ from --write-image"
ok "$(stat -c %s "$T/fwd.img") bytes through ssh, equal to --write-image"

# --- the launcher, if it is there --------------------------------------------------------
LAUNCH=${EROFS_NBD_LAUNCH:-$(dirname "$EROFS_NBD")/erofs-nbd-launch}
launch_skip=
[ -x "$LAUNCH" ] || fail "no erofs-nbd-launch at '$LAUNCH'"
if [ "$(uname -m)" != x86_64 ] || ! command -v qemu-system-x86_64 >/dev/null; then
	launch_skip="no qemu-system-x86_64"
elif [ ! -x /bin/busybox ]; then
	launch_skip="no /bin/busybox"
fi
find_host_kernel || launch_skip=${launch_skip:-"no /boot/vmlinuz-*-amd64 with modules"}
if [ -n "$launch_skip" ]; then
	echo "note: not booting through the forward: $launch_skip"
	exit 0
fi

check "building a bootable busybox tree (tests/launcher/root-init)"
marker="ssh-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ktree=$T/ktree
mkdir -p "$ktree"/{bin,dev,proc,sys,etc,boot}
cp /bin/busybox "$ktree/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$ktree/bin/$applet"
done
install -m 0755 "$TESTS_DIR/launcher/root-init" "$ktree/init"
echo "$marker" >"$ktree/marker"
cp "$kernel" "$ktree/boot/vmlinuz-$kver"
"$TESTS_DIR/vm/mkinitramfs.sh" "$kver" "$ktree/boot/initrd.img-$kver" && rc=0 || rc=$?
[ "$rc" = 77 ] && { echo "note: not booting: initramfs prerequisites missing"; exit 0; }
[ "$rc" = 0 ] || fail "mkinitramfs.sh exited $rc"

check "erofs-nbd-launch --connect through the ssh forward boots the tree"
stop_server "$SRV_PID" || fail "erofs-nbd exited non-zero on SIGTERM"
start_server "$ktree"
kill "$ssh_pid" 2>/dev/null || true
wait "$ssh_pid" 2>/dev/null || true
rm -f "$local_sock"
ssh -N -F none -i "$T/client_key" -p "$port" \
	-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile="$T/known_hosts" \
	-o ExitOnForwardFailure=yes -o StreamLocalBindUnlink=yes -o StreamLocalBindMask=0177 \
	-L "$local_sock:$SRV_SOCK" root@127.0.0.1 2>"$T/ssh2.log" &
ssh_pid=$!
cleanup_fn kill "$ssh_pid"
for ((i = 0; i < 150; i++)); do [ -S "$local_sock" ] && break; sleep 0.1; done
[ -S "$local_sock" ] || { cat "$T/ssh2.log"; fail "ssh did not create $local_sock again"; }
# KVM only if a guest kernel really prints something with it (nested
# set-ups may offer a /dev/kvm that does not run guests).
accel=${EROFS_NBD_VM_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		timeout --kill-after=2 6 qemu-system-x86_64 -nodefaults -no-user-config \
			-machine q35 -accel kvm -cpu host -m 256 -smp 1 -display none \
			-monitor none -serial "file:$T/probe.log" -no-reboot \
			-kernel "$kernel" -append "console=ttyS0 panic=-1" \
			</dev/null >"$T/probe.out" 2>&1 || true
		[ -s "$T/probe.log" ] && accel=kvm
	fi
fi
tmo=300
[ "$accel" = kvm ] && tmo=120
rc=0
timeout "$tmo" "$LAUNCH" -v --boot kernel --connect "nbd+unix:///root?socket=$local_sock" \
	--accel "$accel" --cpus 1 --memory 256 --cmdline "panic=-1" \
	--kernel "$ktree/boot/vmlinuz-$kver" --initrd "$ktree/boot/initrd.img-$kver" \
	--console-log "$T/console" --runtime-dir "$T/run-launch" \
	</dev/null >"$T/launch.out" 2>"$T/launch.err" || rc=$?
echo "--- launcher messages:"
sed 's/^/  | /' "$T/launch.err"
echo "--- console (last lines):"
tr -d '\r' <"$T/console" | tail -n 12 | sed 's/^/  | /'
[ $rc = 0 ] || fail "erofs-nbd-launch --connect through ssh" "exit 0" "exit $rc"
got=$(tr -d '\r' <"$T/console" | sed -n 's/^LAUNCH-MARKER=//p' | tail -n1)
[ "$got" = "$marker" ] || fail "the guest did not read the tree through ssh" "$marker" "$got"
got=$(tr -d '\r' <"$T/console" | sed -n 's/^LAUNCH-ROOTFS=//p' | tail -n1)
[ "$got" = erofs ] || fail "the guest's root file system" erofs "$got"
server_alive || fail "the launcher stopped a server it did not start"
stop_server "$SRV_PID" || fail "erofs-nbd exited non-zero on SIGTERM"
ok "booted through ssh ($accel): marker $marker on an erofs root"
