#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/soak/mktree.sh DIR - the tree the soak and fault tests serve.
#
# All three exports exist for it: the host's Debian kernel (and initrd,
# when readable) sit in /boot and systemd-boot in /usr/lib/systemd/boot,
# so erofs-nbd builds an ESP and a GPT disk around the EROFS.  Around
# them: tests/mktree.sh --small (every inode type and metadata corner),
# 3,000 small files of random sizes in 30 directories (many sources, so
# the server's source-fd cache turns over), a few files of some MiB,
# and a sparse file.  DIR must not exist.  Exits 77 when the kernel or
# systemd-boot is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
[ ! -e "$dir" ] || { echo "soak/mktree: '$dir' exists" >&2; exit 1; }
kernel=$(printf '%s\n' /boot/vmlinuz-* | sort -V | tail -n1)
sdboot=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -r "$kernel" ] || { echo "soak/mktree: SKIP: no kernel in /boot" >&2; exit 77; }
[ -r "$sdboot" ] || { echo "soak/mktree: SKIP: no $sdboot" >&2; exit 77; }

"$here/mktree.sh" --small "$dir"
kver=${kernel#/boot/vmlinuz-}
mkdir -p "$dir/boot" "$dir/usr/lib/systemd/boot/efi"
cp "$kernel" "$dir/boot/vmlinuz-$kver"
[ -r "/boot/initrd.img-$kver" ] && cp "/boot/initrd.img-$kver" "$dir/boot/initrd.img-$kver"
cp "$sdboot" "$dir/usr/lib/systemd/boot/efi/"

python3 - "$dir/soak" <<'PY'
import os, random, sys
top = sys.argv[1]
rng = random.Random(7)
for d in range(30):
    path = os.path.join(top, 'd%02d' % d)
    os.makedirs(path)
    for f in range(100):
        size = int(rng.lognormvariate(8, 1.6)) % (512 * 1024)
        with open(os.path.join(path, 'f%03d' % f), 'wb') as fh:
            fh.write(rng.randbytes(size))
big = os.path.join(top, 'big')
os.makedirs(big)
for i, mib in enumerate((1, 3, 8)):
    with open(os.path.join(big, 'b%d' % i), 'wb') as fh:
        fh.write(rng.randbytes(mib << 20))
with open(os.path.join(big, 'sparse'), 'wb') as fh:
    for off in (0, 5 << 20, 17 << 20):
        fh.seek(off)
        fh.write(rng.randbytes(70000))
PY
