#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-disk.sh - the bootable disk: the default export "" is a GPT
# disk with an EFI System Partition and the EROFS root partition.
#
# Serves a tree (tests/mktree.sh --small) holding Debian's kernel and
# initrd in /boot and systemd-boot in /usr/lib/systemd/boot/efi, then:
#   - nbdinfo --list names disk, root and esp, with descriptions;
#   - nbdcopy of the disk passes `sgdisk -v` and `sfdisk --verify`; the
#     partition table has the ESP type, the x86-64 DPS root type with the
#     read-only attribute (bit 60), the names, 1 MiB alignment, and the
#     root PARTUUID the server printed;
#   - the export "esp" equals the ESP partition of the disk, passes
#     `fsck.fat -n`, and mtools reads back BOOTX64.EFI, the kernel and the
#     initrd byte for byte, and loader.conf and the entry as expected
#     (the entry's options carry the printed PARTUUID and --cmdline);
#   - the export "root" equals the root partition; the kernel mounts the
#     EROFS at its offset inside the disk (loop device with -o), and the
#     mount matches the tree (treecmp.py);
#   - nbdinfo --map reports the gap after the GPT, free clusters of the ESP
#     and every hole of the EROFS (at its offset) as holes;
#   - --write-image (the disk by default) equals the export, and a second
#     run gives the same bytes.
# The bad trees (no kernel, two kernels, unreadable kernel, bad command
# line) are tests/test-disk-badtree.sh.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root	# mktree.sh, losetup and mount
for t in nbdinfo nbdcopy sgdisk sfdisk fsck.fat mcopy mtype losetup python3; do
	requires "$t"
done
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] || skip "no Debian kernel /boot/vmlinuz-*-amd64 (linux-image-amd64)"
kver=${kernel#/boot/vmlinuz-}
initrd=/boot/initrd.img-$kver
[ -f "$initrd" ] || skip "no $initrd"
sdboot=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f "$sdboot" ] || skip "no $sdboot (systemd-boot-efi)"

tmpdir
src=$T/src
check "building a tree with kernel $kver, its initrd and systemd-boot"
"$TESTS_DIR/mktree.sh" --small "$src"
mkdir -p "$src/boot" "$src/usr/lib/systemd/boot/efi"
cp -p "$kernel" "$initrd" "$src/boot/"
cp -p "$sdboot" "$src/usr/lib/systemd/boot/efi/"
ln -s "boot/vmlinuz-$kver" "$src/vmlinuz"	# as Debian has it
cmdline="console=ttyS0 quiet"

start_server "$src" --cmdline "$cmdline"
disk_uri=$SRV_URI
root_uri=$(export_uri root)
esp_uri=$(export_uri esp)
partuuid=$(sed -n 's/^erofs-nbd: root PARTUUID=\([0-9a-f-]*\)$/\1/p' "$SRV_LOG")
[[ $partuuid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] ||
	fail "the server's root PARTUUID line" "erofs-nbd: root PARTUUID=<v4 GUID>" \
		"$(grep PARTUUID "$SRV_LOG" || echo none)"
ok "root PARTUUID=$partuuid"

# --- exports ---------------------------------------------------------------------------
check "nbdinfo --list: disk, root, esp with descriptions"
timeout 30 nbdinfo --list "$disk_uri" >"$T/list" || fail "nbdinfo --list failed"
cat "$T/list"
for e in disk root esp; do
	grep -q "^export=\"$e\":" "$T/list" || fail "nbdinfo --list: no export '$e'"
	# The line after export= is its description.
	d=$(grep -A1 "^export=\"$e\":" "$T/list" | sed -n 's/^[[:space:]]*description: //p')
	[ -n "$d" ] || fail "export '$e' has no description"
done
grep -q 'description: GPT disk: EFI System Partition + EROFS root of' "$T/list" ||
	fail "the disk's description" "GPT disk: EFI System Partition + EROFS root of DIR" \
		"$(grep -A1 'export="disk"' "$T/list")"
info_name=$(timeout 30 nbdinfo --json "$disk_uri" | python3 -c \
	'import json, sys; print(json.load(sys.stdin)["exports"][0]["export-name"])')
[ "$info_name" = disk ] || fail "the default export \"\"" "disk" "$info_name"
ok "exports listed; \"\" is the disk"

# --- the GPT -----------------------------------------------------------------------------
check "nbdcopy the disk; sgdisk -v and sfdisk --verify"
timeout 300 nbdcopy "$disk_uri" "$T/disk.img" || fail "nbdcopy of the disk failed"
size=$(stat -c %s "$T/disk.img")
[ $((size % 4096)) = 0 ] || fail "disk size is not a multiple of 4096" "k * 4096" "$size"
sgdisk -v "$T/disk.img" >"$T/sgdisk" 2>&1 || fail "sgdisk -v failed: $(cat "$T/sgdisk")"
cat "$T/sgdisk"
grep -q "No problems found" "$T/sgdisk" || fail "sgdisk -v" "No problems found" "$(cat "$T/sgdisk")"
if grep -qi "caution\|warning" "$T/sgdisk"; then
	fail "sgdisk -v has cautions (partitions start and end on 1 MiB boundaries)" \
		"none" "$(cat "$T/sgdisk")"
fi
sfdisk --verify "$T/disk.img" >"$T/sfdisk" 2>&1 || fail "sfdisk --verify failed: $(cat "$T/sfdisk")"
cat "$T/sfdisk"
grep -q "No errors detected" "$T/sfdisk" || fail "sfdisk --verify" "No errors detected" "$(cat "$T/sfdisk")"
if grep -qi "warning\|mismatch" "$T/sfdisk"; then fail "sfdisk --verify warns: $(cat "$T/sfdisk")"; fi
ok "sgdisk and sfdisk find no problems"

check "partition table: types, attributes, names, alignment, PARTUUID"
sfdisk --json "$T/disk.img" >"$T/pt.json" || fail "sfdisk --json failed"
# Prints "start size" (bytes) of the ESP and of the root partition.
read -r esp_off esp_len root_off root_len < <(python3 - "$T/pt.json" "$partuuid" "$size" <<'EOF'
import json, sys
pt = json.load(open(sys.argv[1]))["partitiontable"]
uuid, size = sys.argv[2].upper(), int(sys.argv[3])
def need(cond, what, exp, act):
    if not cond:
        sys.exit("partition table: %s: expected %s, actual %s" % (what, exp, act))
need(pt["label"] == "gpt", "label", "gpt", pt["label"])
need(pt.get("sectorsize", 512) == 512, "sector size", 512, pt.get("sectorsize"))
need(pt["lastlba"] == size // 512 - 34, "last usable LBA", size // 512 - 34, pt["lastlba"])
p = pt["partitions"]
need(len(p) == 2, "partitions", 2, len(p))
esp, root = p
need(esp["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "ESP type", "ESP", esp["type"])
need(root["type"] == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "root type",
     "DPS root x86-64", root["type"])
need(esp.get("name") == "ESP", "ESP name", "ESP", esp.get("name"))
need(root.get("name") == "root", "root name", "root", root.get("name"))
need("GUID:60" in root.get("attrs", ""), "root attributes", "GUID:60 (read-only)",
     root.get("attrs"))
need(not esp.get("attrs"), "ESP attributes", "none", esp.get("attrs"))
need(root["uuid"] == uuid, "root PARTUUID", uuid, root["uuid"])
need(esp["uuid"] not in (uuid, pt["id"]), "ESP PARTUUID", "unique", esp["uuid"])
for x in p:
    need(x["start"] % 2048 == 0, x["node"] + " start", "1 MiB aligned", x["start"])
    need(x["size"] % 2048 == 0, x["node"] + " size", "whole MiB", x["size"])
need(esp["start"] + esp["size"] <= root["start"], "order", "ESP before root", p)
need(root["start"] + root["size"] <= size // 512 - 33, "root end", "before the backup GPT",
     root["start"] + root["size"])
print(esp["start"] * 512, esp["size"] * 512, root["start"] * 512, root["size"] * 512)
EOF
) || fail "partition table check failed (above)"
[ -n "${root_len:-}" ] || fail "partition table check printed nothing"
ok "ESP at $esp_off ($esp_len bytes), root at $root_off ($root_len bytes)"

# --- the ESP -------------------------------------------------------------------------------
check "the export 'esp' is the ESP partition; fsck.fat -n"
timeout 120 nbdcopy "$esp_uri" "$T/esp.img" || fail "nbdcopy of the esp export failed"
esp_size=$(stat -c %s "$T/esp.img")
[ "$esp_size" -le "$esp_len" ] || fail "esp export larger than its partition" "<= $esp_len" "$esp_size"
cmp -n "$esp_size" "$T/esp.img" <(tail -c +$((esp_off + 1)) "$T/disk.img") ||
	fail "the esp export differs from the disk's ESP partition"
fsck.fat -n "$T/esp.img" >"$T/fsck" 2>&1 || fail "fsck.fat -n: $(cat "$T/fsck")"
cat "$T/fsck"
if grep -qiv "^fsck.fat\|files, .* clusters$" "$T/fsck"; then
	fail "fsck.fat -n has remarks" "none" "$(cat "$T/fsck")"
fi
ok "fsck.fat -n clean"

check "mtools reads every file back"
export MTOOLS_SKIP_CHECK=1
mdir -/ -i "$T/esp.img" ::/ | sed 's/^/  /'
mkdir "$T/out"
mcopy -i "$T/esp.img" ::/EFI/BOOT/BOOTX64.EFI "$T/out/BOOTX64.EFI"
mcopy -i "$T/esp.img" "::/$kver/vmlinuz" "$T/out/vmlinuz"
mcopy -i "$T/esp.img" "::/$kver/initrd" "$T/out/initrd"
cmp "$sdboot" "$T/out/BOOTX64.EFI" || fail "\\EFI\\BOOT\\BOOTX64.EFI differs from $sdboot"
cmp "$kernel" "$T/out/vmlinuz" || fail "/$kver/vmlinuz differs from $kernel"
cmp "$initrd" "$T/out/initrd" || fail "/$kver/initrd differs from $initrd"
mtype -i "$T/esp.img" ::/loader/loader.conf >"$T/out/loader.conf"
printf 'timeout 0\ndefault erofs-nbd-%s.conf\n' "$kver" >"$T/expect.conf"
cmp "$T/expect.conf" "$T/out/loader.conf" ||
	fail "loader/loader.conf" "$(cat "$T/expect.conf")" "$(cat "$T/out/loader.conf")"
mtype -i "$T/esp.img" "::/loader/entries/erofs-nbd-$kver.conf" >"$T/out/entry.conf"
cat >"$T/expect-entry.conf" <<EOF
title Linux $kver (erofs-nbd)
version $kver
linux /$kver/vmlinuz
initrd /$kver/initrd
options root=PARTUUID=$partuuid rootfstype=erofs ro $cmdline
EOF
diff -u "$T/expect-entry.conf" "$T/out/entry.conf" || fail "the loader entry differs (diff above)"
[ "$(mtype -i "$T/esp.img" ::/loader/entries.srel)" = type1 ] || fail "loader/entries.srel"
n=$(mdir -/ -b -i "$T/esp.img" ::/ | grep -vc '/$' || true)
[ "$n" = 6 ] || fail "files on the ESP" "6 (loader, entry, srel, boot loader, kernel, initrd)" \
	"$n: $(mdir -/ -b -i "$T/esp.img" ::/)"
ok "BOOTX64.EFI, kernel and initrd byte for byte; loader.conf and entry as expected"

# --- the root partition --------------------------------------------------------------------
check "the export 'root' is the root partition"
timeout 300 nbdcopy "$root_uri" "$T/root.img" || fail "nbdcopy of the root export failed"
root_size=$(stat -c %s "$T/root.img")
[ "$root_size" -le "$root_len" ] || fail "root export larger than its partition" "<= $root_len" "$root_size"
cmp -n "$root_size" "$T/root.img" <(tail -c +$((root_off + 1)) "$T/disk.img") ||
	fail "the root export differs from the disk's root partition"
ok "root export == partition 2 ($root_size bytes)"

check "the kernel mounts the EROFS partition at its offset in the disk"
loop=$(losetup -r -f --show -o "$root_off" --sizelimit "$root_len" "$T/disk.img") ||
	fail "losetup -o $root_off failed"
cleanup_fn losetup -d "$loop"
mkdir "$T/mnt"
timeout 60 mount -t erofs -o ro "$loop" "$T/mnt" || fail "mount -t erofs $loop (offset $root_off) failed"
cleanup_fn _umount "$T/mnt"
timeout 900 python3 "$TESTS_DIR/treecmp.py" "$src" "$T/mnt" ||
	fail "the EROFS partition differs from the tree (lines above)"
umount "$T/mnt"
losetup -d "$loop"
ok "mounted at offset $root_off; matches the tree"

# --- holes -----------------------------------------------------------------------------------
check "nbdinfo --map: the GPT gap, free ESP clusters and the EROFS's holes are holes"
timeout 60 nbdinfo --map --json "$disk_uri" >"$T/disk-map.json" || fail "nbdinfo --map (disk) failed"
timeout 60 nbdinfo --map --json "$root_uri" >"$T/root-map.json" || fail "nbdinfo --map (root) failed"
python3 - "$T/disk-map.json" "$T/root-map.json" "$esp_off" "$esp_len" "$root_off" <<'EOF' ||
import json, sys
disk = json.load(open(sys.argv[1]))
root = json.load(open(sys.argv[2]))
esp_off, esp_len, root_off = map(int, sys.argv[3:6])
def holes(m):
    # type bit 0 = hole, bit 1 = zero (base:allocation)
    return [(e["offset"], e["offset"] + e["length"]) for e in m if e["type"] & 1]
def covered(hs, lo, hi):
    """Whether [lo, hi) lies inside the union of the holes hs."""
    for a, b in sorted(hs):
        if a <= lo < b:
            lo = b
        if lo >= hi:
            return True
    return lo >= hi
dh = holes(disk)
# LBA 34..2047: between the primary entry array and the first partition.
if not covered(dh, 34 * 512 + 4095 & ~4095, esp_off):
    sys.exit("the gap between the GPT and the ESP is not a hole: %s" % dh[:5])
# Clipped to the ESP: the last hole may run on into the next partition.
big = [(max(a, esp_off), min(b, esp_off + esp_len)) for a, b in dh]
big = [(a, b) for a, b in big if b - a >= 65536]
if not big:
    sys.exit("no hole of 64 KiB or more inside the ESP (free clusters)")
rh = holes(root)
if not rh:
    sys.exit("the root export has no hole (the tree has sparse files)")
for a, b in rh:
    if not covered(dh, root_off + a, root_off + b):
        sys.exit("root hole [%d, %d) is not a hole at %d in the disk" % (a, b, root_off + a))
print("ok: GPT gap, %d bytes of free ESP clusters in holes, %d EROFS holes shifted by %d"
      % (sum(b - a for a, b in big), len(rh), root_off))
EOF
	fail "hole check failed (above)"

check "structured reads: OFFSET_HOLE chunks for the GPT gap, free ESP clusters, EROFS holes"
python3 - "$TESTS_DIR" "$SRV_SOCK" "$T/disk.img" "$T/disk-map.json" "$esp_off" "$esp_len" \
	"$root_off" <<'EOF' ||
import json, struct, sys
sys.path.insert(0, sys.argv[1])
import nbd_evil as ne     # its raw NBD client
sock, img = sys.argv[2], open(sys.argv[3], "rb")
dmap = json.load(open(sys.argv[4]))
esp_off, esp_len, root_off = map(int, sys.argv[5:8])
c = ne.Conn(sock)
c.greeting()
c.structured_reply()
size = c.go(b"disk")
def read(off, ln, what):
    """One READ; returns the bytes of its OFFSET_HOLE chunks, checks the data."""
    c.request(ne.CMD_READ, off, ln, 7)
    buf, hole = bytearray(ln), 0
    while True:
        cookie, ctype, payload, done = c.reply()
        if ctype == ne.CHUNK_OFFSET_DATA:
            o = struct.unpack(">Q", payload[:8])[0]
            buf[o - off:o - off + len(payload) - 8] = payload[8:]
        elif ctype == ne.CHUNK_OFFSET_HOLE:
            hole += struct.unpack(">QI", payload)[1]
        elif ctype != ne.CHUNK_NONE:
            sys.exit("%s: READ %d+%d: chunk type %d" % (what, off, ln, ctype))
        if done:
            break
    img.seek(off)
    if bytes(buf) != img.read(ln):
        sys.exit("%s: READ %d+%d differs from the disk image" % (what, off, ln))
    print("%s: READ %d+%d: %d bytes in OFFSET_HOLE chunks" % (what, off, ln, hole))
    return hole
MiB = 1 << 20
if read(0, MiB, "GPT gap") < MiB - 34 * 512 - 4096:
    sys.exit("GPT gap: too few hole bytes")
if read(esp_off + esp_len - MiB, MiB, "end of the ESP (free clusters)") < 64 << 10:
    sys.exit("end of the ESP: too few hole bytes")
rh = [e for e in dmap if e["type"] & 1 and e["offset"] >= root_off and e["length"] >= 8192]
if not rh:
    sys.exit("no hole of 8 KiB or more in the root partition")
o = rh[0]["offset"]
if read(o, min(MiB, size - o), "EROFS hole") < 4096:
    sys.exit("EROFS hole: too few hole bytes")
EOF
	fail "structured read check failed (above)"
ok "holes travel as OFFSET_HOLE chunks; the bytes equal the disk"

# --- determinism and --write-image ------------------------------------------------------------
check "--write-image writes the disk, equal to the export; a second run gives the same bytes"
rc=0
stop_server || rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM" 0 "$rc"
"$EROFS_NBD" --export "$src" --cmdline "$cmdline" --write-image "$T/w1.img" 2>"$T/w1.err" ||
	fail "--write-image failed: $(cat "$T/w1.err")"
cmp "$T/disk.img" "$T/w1.img" || fail "--write-image differs from nbdcopy of the disk"
"$EROFS_NBD" --export "$src" --cmdline "$cmdline" --image-export disk --write-image "$T/w2.img" \
	2>"$T/w2.err" || fail "--write-image failed: $(cat "$T/w2.err")"
cmp "$T/w1.img" "$T/w2.img" || fail "two runs on the same tree give different disks"
grep -qF "root PARTUUID=$partuuid" "$T/w2.err" || fail "the PARTUUID changed between runs"
"$EROFS_NBD" --export "$src" --cmdline "$cmdline" --image-export esp --write-image "$T/w3.img" \
	2>/dev/null || fail "--image-export esp failed"
cmp "$T/esp.img" "$T/w3.img" || fail "--image-export esp differs from the esp export"
ok "deterministic; --write-image == nbdcopy"
