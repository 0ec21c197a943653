#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-vfkit-dryrun.sh - erofs-nbd-launch --vmm vfkit --dry-run,
# checked on Linux against vfkit's documented command-line syntax
# (shared/docs/vfkit-launch.md §1: the flags of §1.2, the bootloaders of
# §1.3, the comma splitting and bare-word booleans of §1.4, the devices of
# §1.5-§1.10, the REST URI of §1.11, the recommended invocation of §1.14).
#
# Every dry run is checked twice: by a validator that parses the printed
# argv the way vfkit does (tests/launcher/vfkit-syntax.sh) and against
# the exact expected lines for the case.  Cases: EFI boot of the `disk`
# export; direct kernel boot of `root` with the kernel found in a tree
# (newest version, --kver, /usr/lib/modules vs /boot); a console log
# file; --connect over Unix (percent-encoded socket path) and TCP
# (named export, IPv6); an SSH key (as a credential, with the vsock port
# for ssh); the tree's init arguments (after "--") put last; and
# refusals: paths with commas, a '"' in the kernel command line (and one
# never closed, for any VMM), a bad key, and usage errors (options without the one they go
# with, --connect with server options).  A dry run must start nothing and
# create nothing.
#
# Exit: 0 pass, 1 fail (no prerequisites beyond the launcher binary).
set -euo pipefail
# shellcheck source=tests/functions.sh
. "$(dirname "$0")/functions.sh"
# shellcheck source=tests/launcher/vfkit-syntax.sh
. "$TESTS_DIR/launcher/vfkit-syntax.sh"	# vfkit_check_argv

LAUNCH=${EROFS_NBD_LAUNCH:-$(dirname "$EROFS_NBD")/erofs-nbd-launch}
[ -x "$LAUNCH" ] || fail "no launcher binary at '$LAUNCH'"
tmpdir
run=$T/run	# --runtime-dir: never created by a dry run

# A tree with two kernels in /boot and one in /usr/lib/modules.  The
# files only need to exist: nothing boots.
tree=$T/tree
mkdir -p "$tree/boot" "$tree/usr/lib/modules/6.9.1-200.fc40.x86_64"
for v in 6.1.0-9-amd64 6.10.0-1-amd64; do
	echo kernel >"$tree/boot/vmlinuz-$v"
	echo initrd >"$tree/boot/initrd.img-$v"
done
echo kernel >"$tree/usr/lib/modules/6.9.1-200.fc40.x86_64/vmlinuz"
echo initrd >"$tree/usr/lib/modules/6.9.1-200.fc40.x86_64/initramfs.img"
# Only a kernel, no initramfs: must never be picked.
mkdir -p "$tree/usr/lib/modules/6.99.0-1"
echo kernel >"$tree/usr/lib/modules/6.99.0-1/vmlinuz"

# A server that would leave a trace if anything started it.
printf '#!/bin/sh\ntouch "%s/server-ran"\nexit 1\n' "$T" >"$T/server"
chmod +x "$T/server"

# dry NAME ARG...: runs a vfkit dry run; its argv lines in $T/NAME.out.
dry() {
	local name=$1 rc
	shift
	"$LAUNCH" --vmm vfkit --dry-run --server "$T/server" "$@" \
		>"$T/$name.out" 2>"$T/$name.err" && rc=0 || rc=$?
	if [ "$rc" != 0 ]; then
		cat "$T/$name.err" >&2
		fail "$name: erofs-nbd-launch --dry-run exited $rc"
	fi
	[ ! -e "$run" ] || fail "$name: the dry run created '$run'"
	[ ! -e "$T/server-ran" ] || fail "$name: the dry run started the server"
	vfkit_check_argv "$T/$name.out" || fail "$name: not valid vfkit syntax (see above)"
}

# dry_connect NAME ARG...: the same without --server (for --connect).
dry_connect() {
	local name=$1 rc
	shift
	"$LAUNCH" --vmm vfkit --dry-run "$@" >"$T/$name.out" 2>"$T/$name.err" && rc=0 || rc=$?
	[ "$rc" = 0 ] || { cat "$T/$name.err" >&2; fail "$name: exited $rc"; }
	[ ! -e "$run" ] || fail "$name: the dry run created '$run'"
	vfkit_check_argv "$T/$name.out" || fail "$name: not valid vfkit syntax (see above)"
}

# expect NAME: the dry run's lines ($T/NAME.out, or $T/NAME if NAME has
# a dot) equal stdin's.
expect() {
	local f=$T/$1.out
	[[ $1 != *.* ]] || f=$T/$1
	if ! diff -u /dev/stdin "$f" >"$T/$1.diff"; then
		sed 's/^/  /' "$T/$1.diff" >&2
		fail "$1: the command line differs from the expected one (- expected, + actual)"
	fi
	ok "$1: $(wc -l <"$f") arguments as expected"
}

# refused NAME WANT_RC PATTERN ARG...: the launcher refuses with WANT_RC
# and a message matching PATTERN, printing no command line.
refused() {
	local name=$1 want=$2 pat=$3 rc
	shift 3
	"$LAUNCH" --vmm vfkit --dry-run "$@" >"$T/$name.out" 2>"$T/$name.err" && rc=0 || rc=$?
	[ "$rc" = "$want" ] || fail "$name: exit status" "$want" "$rc"
	[ ! -s "$T/$name.out" ] || fail "$name: a command line was printed"
	grep -q -- "$pat" "$T/$name.err" || fail "$name: message" "$pat" "$(cat "$T/$name.err")"
	ok "$name: refused ($(head -n1 "$T/$name.err"))"
}

# --- the validator must reject what vfkit rejects ---------------------------------
check "the syntax checker itself"
bad() {
	printf '%s\n' "$@" >"$T/bad.out"
	if vfkit_check_argv "$T/bad.out" 2>/dev/null; then
		fail "the syntax checker accepted: $*"
	fi
}
bad vfkit --bootloader efi,variable-store=/x,create --device nbd,uri=nbd+unix:///?socket=/s,deviceId=a,readonly=true
bad vfkit --bootloader efi,variable-store=/x,create --device nbd,uri=nbd+unix:///?socket=/s
bad vfkit --bootloader efi,variable-store=/x,create --device nbd,uri=http://x/,deviceId=a
bad vfkit --bootloader efi,variable-store=/x,create --device nbd,uri=nbd+unix:///?socket=/a,b,deviceId=a
bad vfkit --bootloader efi,variable-store=/x,create --device virtio-serial,stdio,logFilePath=/l
bad vfkit --bootloader efi,variable-store=/x,create --device virtio-net,nat,fd=3
bad vfkit --bootloader efi,variable-store=/x,create --restful-uri unix://relative
bad vfkit --device virtio-rng
bad vfkit --bootloader 'linux,kernel=/k,initrd=/i,cmdline="a' --device virtio-rng
bad vfkit --bootloader efi,variable-store=/x,create --frobnicate
ok "the checker rejects readonly=true, missing deviceId, other URI schemes, commas in a value, two consoles, nat+fd, a relative REST path, no bootloader, an open quote, unknown flags"

# --- EFI boot -------------------------------------------------------------------------
check "efi: --boot efi --export (the disk export, §1.14)"
dry efi --boot efi --export "$tree" --runtime-dir "$run"
expect efi <<EOF
vfkit
--cpus
2
--memory
2048
--bootloader
efi,variable-store=$run/efivars,create
--device
nbd,uri=nbd+unix:///disk?socket=$run/nbd.sock,deviceId=erofsroot,readonly,timeout=15000,sync=none
--device
virtio-serial,stdio
--device
virtio-rng
--device
virtio-net,nat
--restful-uri
unix://$run/rest.sock
EOF

dry efi-opts --boot efi --export "$tree" --runtime-dir "$run" --cpus 4 --memory 4096 \
	--console-log "$T/console.log" --device-id bootc_0 --nbd-timeout 30000 \
	--vmm-binary /opt/vfkit/bin/vfkit
expect efi-opts <<EOF
/opt/vfkit/bin/vfkit
--cpus
4
--memory
4096
--bootloader
efi,variable-store=$run/efivars,create
--device
nbd,uri=nbd+unix:///disk?socket=$run/nbd.sock,deviceId=bootc_0,readonly,timeout=30000,sync=none
--device
virtio-serial,logFilePath=$T/console.log
--device
virtio-rng
--device
virtio-net,nat
--restful-uri
unix://$run/rest.sock
EOF

# The server gets the console vfkit provides for its loader entry.
dry efi-server -v --boot efi --export "$tree" --runtime-dir "$run" --kver 6.1.0-9-amd64
sed -n 's/^erofs-nbd-launch: server: //p' "$T/efi-server.err" >"$T/efi-server.argv"
expect efi-server.argv <<EOF
$T/server
--foreground
--export
$tree
--exit-with-parent
--esp
required
--kver
6.1.0-9-amd64
--cmdline
console=hvc0 systemd.volatile=overlay
EOF

# Without --runtime-dir the launcher makes (and removes) a private one.
dry efi-default --boot efi --export "$tree"
rd=$(sed -n 's|^efi,variable-store=\(.*\)/efivars,create$|\1|p' "$T/efi-default.out")
[ -n "$rd" ] || fail "efi-default: no variable store path"
[ ! -e "$rd" ] || fail "efi-default: the runtime directory '$rd' was left behind"
grep -qx "unix://$rd/rest.sock" "$T/efi-default.out" || fail "efi-default: REST socket not in '$rd'"
ok "efi-default: private runtime directory '$rd' (removed)"

# --- direct kernel boot ------------------------------------------------------------------
check "kernel: --boot kernel, the kernel found in the tree"
dry kernel --boot kernel --export "$tree" --runtime-dir "$run" --cmdline "quiet rd.shell=0,1"
expect kernel <<EOF
vfkit
--cpus
2
--memory
2048
--bootloader
linux,kernel=$tree/boot/vmlinuz-6.10.0-1-amd64,initrd=$tree/boot/initrd.img-6.10.0-1-amd64,cmdline="root=/dev/vda rootfstype=erofs ro console=hvc0 systemd.volatile=overlay quiet rd.shell=0,1"
--device
nbd,uri=nbd+unix:///root?socket=$run/nbd.sock,deviceId=erofsroot,readonly,timeout=15000,sync=none
--device
virtio-serial,stdio
--device
virtio-rng
--device
virtio-net,nat
--restful-uri
unix://$run/rest.sock
EOF

# A kernel boot needs no ESP: the server is told so (no warning about it).
dry kernel-server -v --boot kernel --export "$tree" --runtime-dir "$run"
sed -n 's/^erofs-nbd-launch: server: //p' "$T/kernel-server.err" | grep -A1 -x -- --esp |
	tail -n 1 | grep -qx no || fail "kernel-server: the server does not get --esp no" \
	"$(cat "$T/kernel-server.err")"
ok "kernel-server: --esp no"

dry kver --boot kernel --export "$tree" --runtime-dir "$run" --kver 6.9.1-200.fc40.x86_64
grep -qx "linux,kernel=$tree/usr/lib/modules/6.9.1-200.fc40.x86_64/vmlinuz,initrd=$tree/usr/lib/modules/6.9.1-200.fc40.x86_64/initramfs.img,cmdline=\"root=/dev/vda rootfstype=erofs ro console=hvc0 systemd.volatile=overlay\"" \
	"$T/kver.out" || fail "kver: --kver did not pick usr/lib/modules/6.9.1-200.fc40.x86_64"
ok "kver: --kver picks usr/lib/modules/KVER/vmlinuz + initramfs.img"

dry kfiles --boot kernel --export "$tree" --runtime-dir "$run" \
	--kernel "$tree/boot/vmlinuz-6.1.0-9-amd64" --initrd "$tree/boot/initrd.img-6.1.0-9-amd64"
grep -qx "linux,kernel=$tree/boot/vmlinuz-6.1.0-9-amd64,initrd=$tree/boot/initrd.img-6.1.0-9-amd64,cmdline=\"root=/dev/vda rootfstype=erofs ro console=hvc0 systemd.volatile=overlay\"" \
	"$T/kfiles.out" || fail "kfiles: --kernel/--initrd not used"
ok "kfiles: --kernel and --initrd are used as given"

# The tree's own arguments go before ours; its init arguments (after a
# "--", which the kernel hands to init) after --cmdline, so that ours and
# --cmdline's still reach the kernel; --cmdline's own init arguments last.
mkdir -p "$T/tree-init/etc/kernel"
cp -a "$tree/boot" "$T/tree-init/"
printf 'quiet -- single\n' >"$T/tree-init/etc/kernel/cmdline"
dry kinit --boot kernel --export "$T/tree-init" --runtime-dir "$run" --kver 6.1.0-9-amd64 \
	--cmdline "panic=-1 -- emergency"
grep -qx "linux,kernel=$T/tree-init/boot/vmlinuz-6.1.0-9-amd64,initrd=$T/tree-init/boot/initrd.img-6.1.0-9-amd64,cmdline=\"root=/dev/vda rootfstype=erofs ro quiet console=hvc0 systemd.volatile=overlay panic=-1 -- single emergency\"" \
	"$T/kinit.out" || fail "kinit: the tree's init arguments are not last" "$(grep cmdline= "$T/kinit.out")"
ok "kinit: the tree's init arguments after ours and --cmdline's kernel arguments"

# --- --connect --------------------------------------------------------------------------
check "connect: a running server (e.g. through ssh -L)"
dry_connect conn-unix --boot efi --runtime-dir "$run" \
	--connect 'nbd+unix:///?socket=/tmp/fwd%2Cdir/nbd%20sock'
grep -qx 'nbd,uri=nbd+unix:///disk?socket=/tmp/fwd%2Cdir/nbd%20sock,deviceId=erofsroot,readonly,timeout=15000,sync=none' \
	"$T/conn-unix.out" || fail "conn-unix: socket path not carried percent-encoded" \
	"nbd,uri=nbd+unix:///disk?socket=/tmp/fwd%2Cdir/nbd%20sock,..." "$(grep '^nbd,' "$T/conn-unix.out")"
ok "conn-unix: a socket path with ',' and ' ' travels percent-encoded"

dry_connect conn-tcp --boot efi --runtime-dir "$run" --connect 'nbd://127.0.0.1:10810/mydisk'
grep -qx 'nbd,uri=nbd://127.0.0.1:10810/mydisk,deviceId=erofsroot,readonly,timeout=15000,sync=none' \
	"$T/conn-tcp.out" || fail "conn-tcp: $(grep '^nbd,' "$T/conn-tcp.out")"
dry_connect conn-v6 --boot kernel --runtime-dir "$run" --connect 'nbd://[::1]/' \
	--kernel "$tree/boot/vmlinuz-6.1.0-9-amd64" --initrd "$tree/boot/initrd.img-6.1.0-9-amd64"
grep -qx 'nbd,uri=nbd://\[::1\]:10809/root,deviceId=erofsroot,readonly,timeout=15000,sync=none' \
	"$T/conn-v6.out" || fail "conn-v6: $(grep '^nbd,' "$T/conn-v6.out")"
ok "conn-tcp: named export kept, IPv6 bracketed, default port 10809, empty name -> root"

# --- SSH key as data ----------------------------------------------------------------------
check "ssh: the public key becomes a systemd credential"
key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5p0Wc9zQ7xq3Yb8Fh2Lk4Mn6Rt1Uv0Wx9Yz8Ab7Cd6E user@example.org'
printf '%s\n' "$key" >"$T/key.pub"
cred=$(printf '%s\n' "$key" | base64 -w0)
dry ssh-kernel --boot kernel --export "$tree" --runtime-dir "$run" --ssh-key "$T/key.pub"
# (vfkit's cmdline="..." cannot carry quotes: only the base64 form.)
grep -q "cmdline=\"root=/dev/vda rootfstype=erofs ro console=hvc0 systemd.volatile=overlay systemd.set_credential_binary=ssh.authorized_keys.root:$cred\"\$" \
	"$T/ssh-kernel.out" || fail "ssh-kernel: no credential on the kernel command line"
grep -qx "virtio-vsock,port=22,socketURL=$run/ssh.sock,connect" "$T/ssh-kernel.out" ||
	fail "ssh-kernel: no vsock port 22 for ssh"
ok "ssh-kernel: credential on the command line, vsock 22 at $run/ssh.sock"
# EFI boot: the command line is the server's (on the ESP): -v shows the
# server's argv on stderr.
dry ssh-efi -v --boot efi --export "$tree" --runtime-dir "$run" --ssh-key "$T/key.pub" \
	--cmdline "quiet"
# A loader entry carries quotes: the text form too, for systemd 252.
grep -qxF "erofs-nbd-launch: server: console=hvc0 systemd.volatile=overlay systemd.set_credential_binary=ssh.authorized_keys.root:$cred \"systemd.set_credential=ssh.authorized_keys.root:$key\" quiet" \
	"$T/ssh-efi.err" || fail "ssh-efi: the server was not given the credential with --cmdline"
grep -qx "erofs-nbd-launch: server: --exit-with-parent" "$T/ssh-efi.err" ||
	fail "ssh-efi: the server is not started with --exit-with-parent"
ok "ssh-efi: the credential goes to erofs-nbd --cmdline (the ESP's loader entry)"

# --- refusals ------------------------------------------------------------------------------
check "refusals"
refused comma-log 1 "cannot carry" --boot efi --export "$tree" --runtime-dir "$run" \
	--console-log "$T/a,b.log"
refused comma-run 1 "cannot carry" --boot efi --export "$tree" --runtime-dir "$T/run,x"
mkdir -p "$T/tree,2/boot"
cp "$tree"/boot/*-6.1.0-9-amd64 "$T/tree,2/boot/"
refused comma-kernel 1 "cannot carry" --boot kernel --export "$T/tree,2" --runtime-dir "$run"
# The initramfs and a --connect host are checked too, each on its own.
refused comma-initrd 1 "cannot carry" --boot kernel --export "$tree" --runtime-dir "$run" \
	--kernel "$tree/boot/vmlinuz-6.1.0-9-amd64" --initrd "$T/tree,2/boot/initrd.img-6.1.0-9-amd64"
refused comma-host 1 "cannot carry" --boot efi --connect 'nbd://a,b:10809/' --runtime-dir "$run"
refused quote 1 "cannot carry '\"'" --boot kernel --export "$tree" --runtime-dir "$run" \
	--cmdline 'init="/bin/sh"'
# A '"' never closed would take what follows it into its value (any VMM).
refused open-quote 2 "never closed" --boot efi --export "$tree" --runtime-dir "$run" \
	--cmdline 'x="a b'
printf "ssh-ed25519 AAAA' ; rm -rf / ; echo 'x\n" >"$T/evil.pub"
refused evil-key 1 "not one OpenSSH public key line" --boot efi --export "$tree" \
	--runtime-dir "$run" --ssh-key "$T/evil.pub"
printf 'ssh-ed25519 AAAA a\nssh-rsa BBBB b\n' >"$T/two.pub"
refused two-keys 1 "not one OpenSSH public key line" --boot efi --export "$tree" \
	--runtime-dir "$run" --ssh-key "$T/two.pub"
refused no-kernel 1 "no kernel" --boot kernel --export "$T" --runtime-dir "$run"
refused no-initrd 1 "needs --initrd" --boot kernel --export "$tree" --runtime-dir "$run" \
	--kernel "$tree/boot/vmlinuz-6.1.0-9-amd64"
refused accel 2 "QEMU option" --boot efi --export "$tree" --accel kvm
refused nbds 2 "TLS" --boot efi --connect 'nbds://h/'
# A %00 would cut the decoded socket path short: not an NBD URI.
refused nul-socket 2 "not an NBD URI" --boot efi --connect 'nbd+unix:///?socket=/tmp/a%00b'
refused ssh-remote-esp 2 "needs SMBIOS" --boot efi --connect "nbd://127.0.0.1/" --ssh-key "$T/key.pub"
# Usage errors (exit 2), each for its own check:
# only the server merges an image's or a lowerdir's layers, so a kernel
# boot of one needs --kernel (there is no tree to find it in);
refused image-kernel 2 "needs --kernel" --boot kernel --image localhost/x --runtime-dir "$run"
refused lowerdir-kernel 2 "needs --kernel" --boot kernel --lowerdir "$tree" --runtime-dir "$run"
# options that belong with another one;
refused storage-root 2 "storage-root goes with --image" --boot efi --export "$tree" \
	--storage-root "$T"
refused upperdir 2 "upperdir goes with --lowerdir" --boot efi --export "$tree" --upperdir "$T"
refused connect-server 2 "server and --server-opt need" --boot efi --connect "nbd://127.0.0.1/" \
	--server "$T/server"
refused connect-server-opt 2 "server and --server-opt need" --boot efi \
	--connect "nbd://127.0.0.1/" --server-opt=--verbose
# with EFI boot and --connect, the running server's ESP has the kernel
# and its command line, and the key for a COMMAND over ssh.
refused connect-efi-kernel 2 "are server options" --boot efi --connect "nbd://127.0.0.1/" \
	--kernel "$tree/boot/vmlinuz-6.1.0-9-amd64"
refused connect-efi-cmdline 2 "are server options" --boot efi --connect "nbd://127.0.0.1/" \
	--cmdline quiet
refused connect-efi-ssh 2 "need the key on the running server's ESP" --boot efi \
	--connect "nbd://127.0.0.1/" -- true
refused connect-efi-ssh-flag 2 "need the key on the running server's ESP" --boot efi \
	--connect "nbd://127.0.0.1/" --ssh
[ ! -e "$T/run,x" ] || fail "comma-run: the refused runtime directory was created"

# --- arm64 direct kernel boot: vfkit needs an uncompressed Image ----------------------------
check "arm64 kernel boot: compressed kernels refused, an Image accepted"
# kernel_file NAME HEAD: 4 KiB of zeros with HEAD (printf format) at offset 0.
kernel_file() {
	head -c 4096 /dev/zero >"$T/$1"
	printf "$2" | dd of="$T/$1" conv=notrunc status=none
}
kernel_file Image.gz '\x1f\x8b\x08\x00'
kernel_file Image.zst '\x28\xb5\x2f\xfd'
kernel_file vmlinuz.zboot 'MZ\x00\x00zimg'
kernel_file bzImage 'MZ\xea\x07'
kernel_file Image 'MZ'
printf 'ARM\x64' | dd of="$T/Image" bs=1 seek=56 conv=notrunc status=none
echo initrd >"$T/initrd"
for k in Image.gz:gzip Image.zst:zstd vmlinuz.zboot:zboot "bzImage:not an arm64 Image"; do
	refused "arm64-${k%%:*}" 1 "${k#*:}" --boot kernel --arch aarch64 --export "$tree" \
		--runtime-dir "$run" --kernel "$T/${k%%:*}" --initrd "$T/initrd"
	grep -q -- "--boot efi" "$T/arm64-${k%%:*}.err" ||
		fail "arm64-${k%%:*}: the message does not suggest EFI boot"
done
dry arm64-image --boot kernel --arch aarch64 --export "$tree" --runtime-dir "$run" \
	--kernel "$T/Image" --initrd "$T/initrd"
grep -q "^linux,kernel=$T/Image,initrd=$T/initrd," "$T/arm64-image.out" ||
	fail "arm64-image: an uncompressed Image was not booted"
ok "arm64-image: an uncompressed Image ('ARM\\x64' at 0x38) is accepted"

# --- a COMMAND over SSH: vsock 22, the console off the terminal -----------------------------
check "ssh-command: -- COMMAND with vfkit"
dry ssh-cmd --boot efi --export "$tree" --runtime-dir "$run" -- cat /etc/os-release
grep -qx "virtio-vsock,port=22,socketURL=$run/ssh.sock,connect" "$T/ssh-cmd.out" ||
	fail "ssh-cmd: no vsock port 22 for ssh"
grep -qx "virtio-serial,logFilePath=$run/console" "$T/ssh-cmd.out" ||
	fail "ssh-cmd: the console is not in the runtime directory (the terminal is the session's)"
ok "ssh-cmd: vsock 22 at $run/ssh.sock, console to $run/console"
refused no-command 2 "no COMMAND" --boot efi --export "$tree" --
# ssh expands ${VAR} in the key's and known_hosts' paths, with no escape.
refused dollar-rundir 1 'ssh would expand its "\${"' --boot efi --export "$tree" \
	--runtime-dir "$T/run\${HOME}" -- true
refused bare-command 2 "goes after '--'" --boot efi --export "$tree" cat /etc/os-release

echo "PASS: vfkit dry runs follow the documented syntax"
