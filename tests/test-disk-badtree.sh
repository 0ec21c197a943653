#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-disk-badtree.sh - trees and options that cannot give a
# bootable ESP: each must give either a valid disk and a clear warning,
# or a clear error and no disk, never a broken disk.
#
#   - no kernel: a warning says why there is no ESP; the disk holds only
#     the root partition and passes sgdisk -v; there is no export "esp";
#     with --esp required it is an error; --esp no gives a disk without
#     an ESP and no warning for a tree that has a kernel;
#   - a kernel but no systemd-boot: the same warning, naming
#     --efi-loader; with --efi-loader the ESP is there;
#   - two kernels (6.1.0-9 and 6.1.0-10): the newest by version order is
#     booted (not the last in byte order); --kver picks the other;
#     bootc's /usr/lib/modules/<kver>/vmlinuz is found too;
#   - a kernel version ending in '.' is no kernel (FAT drops the dot), and
#     --kver naming one is refused; a 4 GiB initrd is refused, named, and
#     one of 4 GiB - 1 goes on the ESP;
#   - a kernel that can't be read: --kernel naming a file uid 65534 cannot
#     read, a missing --kernel, a kernel in the tree that is not an EFI
#     executable, and one uid 65534 cannot read: exit 1, the file named;
#   - relative --kernel/--initrd/--efi-loader/--pidfile for a server in
#     the background (which serves from "/"); a background server that
#     fails before serving exits 1 and prints no URI;
#   - --cmdline with a newline or a control character, a bad --kver, a bad
#     --arch, and --arch aarch64 with an x86-64 kernel: refused.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root	# setpriv to uid 65534
for t in sgdisk sfdisk mcopy mtype setpriv; do
	requires "$t"
done
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || skip "no Debian kernel /boot/vmlinuz-*-amd64 (linux-image-amd64)"
sdboot=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f "$sdboot" ] || skip "no $sdboot (systemd-boot-efi)"
export MTOOLS_SKIP_CHECK=1

tmpdir
chmod 0755 "$T"

# image DIR ARGS...: --write-image of the disk to $T/disk.img; stderr in $T/err.
image()
{
	local dir=$1 rc=0
	shift
	rm -f "$T/disk.img"
	timeout 120 "$EROFS_NBD" --export "$dir" "$@" --write-image "$T/disk.img" \
		>"$T/out" 2>"$T/err" || rc=$?
	cat "$T/err"
	# A sanitizer build (make SANITIZE=1) reports errors on stderr.
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/err"; then
		fail "sanitizer report: erofs-nbd --export $dir $*"
	fi
	return $rc
}

# must_fail WHAT NEEDLE DIR ARGS...: exit 1, NEEDLE on stderr, no image.
must_fail()
{
	local what=$1 needle=$2 rc=0
	shift 2
	image "$@" || rc=$?
	[ $rc = 1 ] || fail "$what: exit status" 1 "$rc"
	grep -qF -- "$needle" "$T/err" || fail "$what: error message" "naming '$needle'" "$(cat "$T/err")"
	[ ! -e "$T/disk.img" ] || fail "$what: a disk image was written"
	ok "$what: exit 1, names '$needle'"
}

# verify_disk NPARTS: sgdisk -v and sfdisk --verify clean, NPARTS partitions.
verify_disk()
{
	sgdisk -v "$T/disk.img" >"$T/sgdisk" 2>&1 || fail "sgdisk -v failed: $(cat "$T/sgdisk")"
	grep -q "No problems found" "$T/sgdisk" || fail "sgdisk -v" "No problems found" "$(cat "$T/sgdisk")"
	if grep -qi "caution\|warning" "$T/sgdisk"; then
		fail "sgdisk -v cautions" "none" "$(cat "$T/sgdisk")"
	fi
	sfdisk --verify "$T/disk.img" >"$T/sfdisk" 2>&1 || fail "sfdisk --verify: $(cat "$T/sfdisk")"
	local n
	n=$(sfdisk -d "$T/disk.img" | grep -c '^/')
	[ "$n" = "$1" ] || fail "partitions on the disk" "$1" "$n: $(sfdisk -d "$T/disk.img")"
}

# esp_file PATH: prints a file of the disk's ESP (partition 1).
esp_file()
{
	local off
	off=$(sfdisk -d "$T/disk.img" | sed -n 's/^.*1 : start= *\([0-9]*\),.*/\1/p')
	mtype -i "$T/disk.img@@$((off * 512))" "::$1"
}

# --- no kernel -----------------------------------------------------------------------------
check "a tree without a kernel: warning, a disk with the root partition only"
nok=$T/no-kernel
mkdir -p "$nok/etc" "$nok/boot"
echo hello >"$nok/etc/hostname"
image "$nok" || fail "a tree without a kernel: exit status" 0 "non-zero"
grep -q "warning: .*no kernel found.*the disk has no EFI System Partition" "$T/err" ||
	fail "warning for a tree without a kernel" "no kernel found ... no EFI System Partition" \
		"$(cat "$T/err")"
verify_disk 1
sfdisk -d "$T/disk.img" | grep -q 'type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709' ||
	fail "the only partition is not the x86-64 root"
start_server "$nok"
timeout 30 nbdinfo --list "$SRV_URI" >"$T/list" || fail "nbdinfo --list failed"
grep -q '^export="disk":' "$T/list" && grep -q '^export="root":' "$T/list" ||
	fail "nbdinfo --list" "disk and root" "$(cat "$T/list")"
if grep -q '^export="esp":' "$T/list"; then fail "an esp export without an ESP"; fi
if timeout 30 nbdinfo --size "$(export_uri esp)" 2>/dev/null; then
	fail "the export esp was served for a tree without a kernel"
fi
stop_server || fail "server exit status after SIGTERM"
must_fail "--image-export esp without an ESP" "no EFI System Partition" "$nok" --image-export esp
must_fail "--esp required without a kernel" "building the EFI System Partition: no kernel found" \
	"$nok" --esp required
ok "warning; valid disk with one partition; no esp export; --esp required: an error"

check "--arch aarch64 without a kernel: the arm64 root type"
image "$nok" --arch arm64 >/dev/null 2>&1 || fail "--arch arm64 failed: $(cat "$T/err")"
sfdisk -d "$T/disk.img" | grep -q 'type=B921B045-1DF0-41C3-AF44-4C6F280D3FAE' ||
	fail "--arch arm64: root partition type" "B921B045-... (root arm64)" "$(sfdisk -d "$T/disk.img")"
ok "root arm64"

# --- a kernel but no boot loader -------------------------------------------------------------
check "a kernel but no systemd-boot: warning naming --efi-loader; --efi-loader gives an ESP"
nol=$T/no-loader
mkdir -p "$nol/boot"
cp "$kernel" "$nol/boot/vmlinuz-6.1.0-10-amd64"
image "$nol" || fail "a tree without a boot loader: exit status" 0 "non-zero"
grep -q "warning: .*no boot loader.*--efi-loader" "$T/err" ||
	fail "warning for a tree without systemd-boot" "no boot loader ... --efi-loader" "$(cat "$T/err")"
verify_disk 1
image "$nol" --efi-loader "$sdboot" || fail "--efi-loader failed"
verify_disk 2
esp_file /EFI/BOOT/BOOTX64.EFI >"$T/boot.efi"
cmp "$sdboot" "$T/boot.efi" || fail "--efi-loader: BOOTX64.EFI differs from $sdboot"
ok "warning without; ESP with --efi-loader"

# --- two kernels ---------------------------------------------------------------------------------
check "two kernels: the newest by version order; --kver picks the other"
two=$T/two
mkdir -p "$two/boot" "$two/usr/lib/systemd/boot/efi"
cp "$sdboot" "$two/usr/lib/systemd/boot/efi/"
# In byte order 6.1.0-9 sorts last; by version 6.1.0-10 is newer.
cp "$kernel" "$two/boot/vmlinuz-6.1.0-10-amd64"
cp "$kernel" "$two/boot/vmlinuz-6.1.0-9-amd64"
echo initrd-ten >"$two/boot/initrd.img-6.1.0-10-amd64"
echo initrd-nine >"$two/boot/initrd.img-6.1.0-9-amd64"
image "$two" || fail "two kernels: exit status" 0 "non-zero"
verify_disk 2
esp_file /loader/loader.conf | grep -qx 'default erofs-nbd-6.1.0-10-amd64.conf' ||
	fail "two kernels: loader.conf default" "erofs-nbd-6.1.0-10-amd64.conf" \
		"$(esp_file /loader/loader.conf)"
[ "$(esp_file /6.1.0-10-amd64/initrd)" = initrd-ten ] || fail "two kernels: the initrd of 6.1.0-10"
image "$two" --kver 6.1.0-9-amd64 || fail "--kver 6.1.0-9-amd64: exit status" 0 "non-zero"
verify_disk 2
esp_file /loader/entries/erofs-nbd-6.1.0-9-amd64.conf >"$T/entry"
grep -qx 'linux /6.1.0-9-amd64/vmlinuz' "$T/entry" || fail "--kver: entry" "linux /6.1.0-9-amd64/vmlinuz" "$(cat "$T/entry")"
[ "$(esp_file /6.1.0-9-amd64/initrd)" = initrd-nine ] || fail "--kver: the initrd of 6.1.0-9"
must_fail "--kver of a kernel not in the tree" "--kver '6.2.0-1-amd64'" "$two" --kver 6.2.0-1-amd64

# bootc's layout: usr/lib/modules/<kver>/vmlinuz beats nothing, and is newer here.
mkdir -p "$two/usr/lib/modules/6.1.0-11-amd64"
cp "$kernel" "$two/usr/lib/modules/6.1.0-11-amd64/vmlinuz"
echo initramfs-eleven >"$two/usr/lib/modules/6.1.0-11-amd64/initramfs.img"
image "$two" || fail "bootc layout: exit status" 0 "non-zero"
[ "$(esp_file /6.1.0-11-amd64/initrd)" = initramfs-eleven ] ||
	fail "bootc layout: /usr/lib/modules/6.1.0-11-amd64 not booted"
ok "6.1.0-10 over 6.1.0-9; --kver; bootc's 6.1.0-11 over both"

check "--esp no: a disk without an ESP and without a warning, though the tree has a kernel"
image "$two" --esp no || fail "--esp no: exit status" 0 "non-zero"
if grep -q "warning" "$T/err"; then fail "--esp no: a warning" "none" "$(cat "$T/err")"; fi
verify_disk 1
rc=0
"$EROFS_NBD" --export "$two" --esp no --kver 6.1.0-9-amd64 --write-image "$T/disk.img" \
	2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q -- "--esp no takes no" "$T/err" ||
	fail "--esp no --kver" "exit 2, '--esp no takes no ...'" "exit $rc: $(cat "$T/err")"
rc=0
"$EROFS_NBD" --export "$two" --esp maybe --write-image "$T/disk.img" 2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q -- "--esp 'maybe'" "$T/err" ||
	fail "--esp maybe" "exit 2, naming --esp 'maybe'" "exit $rc: $(cat "$T/err")"
image "$two" --esp required || fail "--esp required with a kernel: exit status" 0 "non-zero"
verify_disk 2
ok "--esp no: one partition, no warning; refused with --kver; --esp maybe refused"

# A version ending in '.' has no FAT directory name (FAT drops the dot):
# not a kernel, so the tree has none; --kver naming it is refused.
check "a kernel version ending in '.': not a kernel"
dot=$T/dot
mkdir -p "$dot/usr/lib/modules/6.1." "$dot/usr/lib/systemd/boot/efi"
cp "$sdboot" "$dot/usr/lib/systemd/boot/efi/"
cp "$kernel" "$dot/usr/lib/modules/6.1./vmlinuz"
image "$dot" || fail "version '6.1.': exit status" 0 "non-zero"
grep -q "warning: .*no kernel found" "$T/err" ||
	fail "version '6.1.': warning" "no kernel found" "$(cat "$T/err")"
verify_disk 1
must_fail "--kver 6.1." "--kver '6.1.': not a kernel version" "$dot" --kver 6.1.
ok "'6.1.' is no kernel: a disk without an ESP, and --kver 6.1. refused"

# FAT32 keeps a file's size in 32 bits: a sparse 4 GiB initrd is refused,
# named; 4 GiB - 1 fits.
check "an initrd of 4 GiB: refused, named"
big=$T/big-initrd
mkdir -p "$big/boot" "$big/usr/lib/systemd/boot/efi"
cp "$sdboot" "$big/usr/lib/systemd/boot/efi/"
cp "$kernel" "$big/boot/vmlinuz-6.1.0-10-amd64"
truncate -s 4G "$big/boot/initrd.img-6.1.0-10-amd64"
must_fail "an initrd of 4 GiB" "'boot/initrd.img-6.1.0-10-amd64': 4294967296 bytes" "$big"
truncate -s $((4 * 1024 * 1024 * 1024 - 1)) "$big/boot/initrd.img-6.1.0-10-amd64"
# (Written to /dev/null: the check is that it builds and reads back whole.)
timeout 120 "$EROFS_NBD" --export "$big" --write-image /dev/null 2>"$T/err" ||
	fail "an initrd of 4 GiB - 1" "exit 0" "$(cat "$T/err")"
ok "4 GiB refused naming the initrd; 4 GiB - 1 goes on the ESP"

# --- kernels that can't be read ------------------------------------------------------------------
check "kernels that can't be read: exit 1 naming the file"
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
cp "$kernel" "$T/locked-vmlinuz"
chmod 0600 "$T/locked-vmlinuz"
mkdir -p "$T/nobody-out"
chown 65534:65534 "$T/nobody-out"
rc=0
nobody "$EROFS_NBD" --export "$two" --kernel "$T/locked-vmlinuz" \
	--write-image "$T/nobody-out/disk.img" 2>"$T/err" || rc=$?
cat "$T/err"
[ $rc = 1 ] || fail "--kernel unreadable by uid 65534: exit status" 1 "$rc"
grep -qF "$T/locked-vmlinuz" "$T/err" && grep -q "Permission denied" "$T/err" ||
	fail "--kernel unreadable: message" "naming the file and 'Permission denied'" "$(cat "$T/err")"
[ ! -e "$T/nobody-out/disk.img" ] || fail "an image was written with an unreadable --kernel"
ok "--kernel unreadable: exit 1, named"

must_fail "--kernel that does not exist" "$T/no-such-vmlinuz" "$two" --kernel "$T/no-such-vmlinuz"
must_fail "--initrd that is a directory" "not a regular file" "$two" --initrd "$T"

bad=$T/bad-kernel
mkdir -p "$bad/boot" "$bad/usr/lib/systemd/boot/efi"
cp "$sdboot" "$bad/usr/lib/systemd/boot/efi/"
head -c 100000 /dev/urandom | gzip >"$bad/boot/vmlinuz-6.1.0-10-amd64"
must_fail "a gzip-compressed kernel in the tree" "not an EFI executable" "$bad"
printf '' >"$bad/boot/vmlinuz-6.1.0-10-amd64"
must_fail "an empty kernel in the tree" "boot/vmlinuz-6.1.0-10-amd64" "$bad"

cp "$kernel" "$bad/boot/vmlinuz-6.1.0-10-amd64"
chmod 0600 "$bad/boot/vmlinuz-6.1.0-10-amd64"
rc=0
nobody "$EROFS_NBD" --export "$bad" --write-image "$T/nobody-out/disk.img" 2>"$T/err" || rc=$?
cat "$T/err"
[ $rc = 1 ] || fail "a kernel in the tree unreadable by uid 65534: exit status" 1 "$rc"
grep -qF "boot/vmlinuz-6.1.0-10-amd64" "$T/err" ||
	fail "unreadable kernel in the tree: message" "naming boot/vmlinuz-6.1.0-10-amd64" "$(cat "$T/err")"
[ ! -e "$T/nobody-out/disk.img" ] || fail "an image was written with an unreadable kernel"
ok "a kernel in the tree unreadable: exit 1, named"

# --- command line and options ---------------------------------------------------------------------
check "--cmdline with a newline or control character, bad --kver/--arch: refused"
must_fail "--cmdline with a newline" "line break" "$two" --cmdline $'quiet\ninitrd /evil'
must_fail "--cmdline with a tab" "control character" "$two" --cmdline $'quiet\tx'
must_fail "--cmdline with a newline, tree without a kernel" "line break" "$nok" --cmdline $'a\nb'
must_fail "--kver with a slash" "--kver '../x'" "$two" --kver ../x
must_fail "--arch aarch64 with an x86-64 kernel" \
	"'usr/lib/modules/6.1.0-11-amd64/vmlinuz': the kernel is built for x86_64" "$two" --arch aarch64
rc=0
"$EROFS_NBD" --export "$two" --arch sparc --write-image "$T/disk.img" 2>"$T/err" || rc=$?
[ $rc = 2 ] && grep -q -- "--arch 'sparc'" "$T/err" ||
	fail "--arch sparc" "exit 2, naming --arch 'sparc'" "exit $rc: $(cat "$T/err")"
rc=0
"$EROFS_NBD" --export "$two" --image-export swap --write-image "$T/disk.img" 2>"$T/err" || rc=$?
[ $rc = 2 ] || fail "--image-export swap: exit status" 2 "$rc"
ok "refused"

# --- relative paths in the background -------------------------------------------------------------
# The server serves from "/" once in the background; files it reads (or
# writes) after that, given relative to where it started, must still be
# found there: the ESP's kernel, initrd and loader, and the pid file.
check "relative --kernel, --initrd, --efi-loader and --pidfile, server in the background"
cp "$kernel" "$T/rel-vmlinuz"
echo rel-initrd >"$T/rel-initrd"
cp "$sdboot" "$T/rel-loader.efi"
( cd "$T" && "$EROFS_NBD" --export "$nok" --kernel rel-vmlinuz --initrd rel-initrd \
	--efi-loader rel-loader.efi --image-export esp --write-image "$T/esp-fg.img" 2>/dev/null ) ||
	fail "relative paths, --write-image: exit status" 0 "non-zero"
rm -f "$T/rel.pid"
( cd "$T" && "$EROFS_NBD" --export "$nok" --kernel rel-vmlinuz --initrd rel-initrd \
	--efi-loader rel-loader.efi --unix rel.sock --pidfile rel.pid >"$T/rel.uri" 2>"$T/err" ) ||
	fail "relative paths, background server: exit status" 0 "non-zero: $(cat "$T/err")"
[ -s "$T/rel.pid" ] || fail "--pidfile rel.pid was not written in the directory it was given in"
bgpid=$(cat "$T/rel.pid")
cleanup_fn kill "$bgpid"
timeout 60 nbdcopy "nbd+unix:///esp?socket=$T/rel.sock" "$T/esp-bg.img" ||
	fail "reading the esp export of the background server"
cmp "$T/esp-fg.img" "$T/esp-bg.img" || fail "the background server's ESP differs from --write-image's"
kill "$bgpid"
ok "relative paths: the background server's ESP is --write-image's; the pid file where it was asked"

# The parent waits for the server to be ready: a failure after the fork
# (the pid file cannot be written) is exit 1 with the message, no URI.
check "background server that fails before serving: exit 1, no URI"
rc=0
"$EROFS_NBD" --export "$nok" --esp no --unix "$T/fail.sock" --pidfile "$T/no-such-dir/x.pid" \
	>"$T/fail.uri" 2>"$T/err" || rc=$?
[ $rc = 1 ] || fail "--pidfile in a missing directory, background: exit status" 1 "$rc"
[ ! -s "$T/fail.uri" ] || fail "a URI was printed for a server that failed: $(cat "$T/fail.uri")"
grep -q -- "--pidfile '$T/no-such-dir/x.pid'" "$T/err" || fail "no message naming the pid file" \
	"$(cat "$T/err")"
ok "exit 1, the pid file named, no URI"
