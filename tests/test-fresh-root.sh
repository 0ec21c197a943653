#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: installs every package of `make deps` into a fresh Debian 12 root
# tests/test-fresh-root.sh - the README's first set-up line on a fresh
# Debian 12 machine.
#
# CI's machine already has every package, so a Makefile that only works
# when the packages were there before make started (flags read at parse
# time, a target that forgets a package) passes CI and fails every new
# user.  This test gives the first line a machine that has nothing:
#
#  - a debootstrap minbase root of Debian 12 (cached, read-only, in
#    /var/cache/erofs-nbd-tests/fresh-base; built once per machine),
#    under a throwaway overlayfs upper layer, with /proc, /sys and /dev
#    bound in and the sources of a standard Debian 12 installation
#    (bookworm, -updates, -security);
#  - a clean `git clone` of this repository's HEAD inside it;
#  - the README's first set-up line (tests/readme-setup.sh), run in the
#    clone as root, with nothing but a plain PATH and HOME;
#
# and checks that it exits 0 and that the demo ran to its end.  The
# host's /var/cache/apt/archives is bound in as apt's download cache,
# so packages the host already fetched are not downloaded again: only
# downloads are saved, installing is as on any fresh machine.  Services
# are not started inside the root (policy-rc.d 101, the usual chroot
# rule).  Uncommitted changes are not part of the clone.
#
# Knobs: EROFS_NBD_FRESH_MIRROR (default http://deb.debian.org/debian),
# EROFS_NBD_FRESH_TIMEOUT (seconds for the set-up line, default 2400).
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires debootstrap
requires git

top=$(cd "$TESTS_DIR/.." && pwd)
git -C "$top" rev-parse HEAD >/dev/null 2>&1 || skip "$top is not a git repository"
mirror=${EROFS_NBD_FRESH_MIRROR:-http://deb.debian.org/debian}
base=${EROFS_NBD_TEST_CACHE_DIR:-/var/cache/erofs-nbd-tests}/fresh-base
# (Not through head -n1: with pipefail, the writer's SIGPIPE would fail it.)
lines=$("$TESTS_DIR/readme-setup.sh" "$top/README.md") ||
	fail "cannot read the set-up lines from README.md"
line=${lines%%$'\n'*}

# build_base DIR: debootstrap a Debian 12 minbase root into DIR.
build_base()
{
	check "building a Debian 12 minbase root in $base (once per machine)"
	if ! timeout 1500 debootstrap --variant=minbase bookworm "$1" "$mirror" \
		>"$base.log" 2>&1; then
		tail -n 20 "$base.log"
		rm -rf --one-file-system "$1"
		skip "debootstrap bookworm from $mirror failed (log in $base.log)"
	fi
}
cached_build "$base" build_base

tmpdir
root=$T/root
mkdir -p "$T/upper" "$T/work" "$root"
mount -t overlay overlay -o "lowerdir=$base,upperdir=$T/upper,workdir=$T/work" "$root" ||
	fail "cannot mount an overlay over $base"
cleanup_fn umount -R -l "$root"

# What a fresh installation has and debootstrap leaves out.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
for m in proc sys dev; do
	mount --rbind "/$m" "$root/$m"
	mount --make-rslave "$root/$m"
done
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mkdir -p "$root/var/cache/apt/archives"
mount --bind /var/cache/apt/archives "$root/var/cache/apt/archives"

check "cloning $(git -C "$top" rev-parse --short HEAD) into the fresh root"
git clone --quiet --no-hardlinks "$top" "$root/root/erofs-nbd" ||
	fail "git clone failed"
[ -z "$(git -C "$top" status --porcelain --untracked-files=no)" ] ||
	echo "note: uncommitted changes in $top are not part of the clone"

check "running the README's first set-up line in it: $line"
export line
rc=0
timeout "${EROFS_NBD_FRESH_TIMEOUT:-2400}" \
	chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	line="$line" /bin/bash -c 'cd /root/erofs-nbd && /bin/bash -euo pipefail -c "$line"' \
	</dev/null >"$T/setup.log" 2>&1 || rc=$?
# apt's progress is long: keep what tells what happened.
grep -avE '^(Get|Preparing|Unpacking|Selecting|Setting up|Processing|Created symlink|Adding|update-alternatives)' \
	"$T/setup.log" | tail -n 60
[ "$rc" -eq 0 ] || fail "the README's first set-up line failed in a fresh Debian 12 root (exit $rc)"

# The demo's own checks passed (it exits non-zero otherwise); make sure
# it really ran to its end and built what it served.
grep -q 'demo finished: all steps passed' "$T/setup.log" ||
	fail "the set-up line exited 0 but the demo did not report success"
[ -x "$root/root/erofs-nbd/build/erofs-nbd" ] || fail "no build/erofs-nbd in the clone"
ok "a fresh Debian 12 root: '$line' installed, built and ran the demo in one run"
