#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/demo.sh BIN - what `make demo` runs (make builds BIN first).
#
# Serves the bundled tree tests/trees/demo with `BIN -f --export ... --run`
# (nbdkit's captive mode: the server runs exactly as long as the command),
# shows the export with nbdinfo, copies it with nbdcopy, then checks the
# copy with fsck.erofs, extracts it, compares it with the source tree and,
# as root, mounts it.  Prints each step, and at the end how to do it by
# hand.  Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-build/erofs-nbd}
TREE=tests/trees/demo

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold= plain=; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
die() { echo "demo: $*" >&2; exit 1; }

[ -x "$BIN" ] || die "'$BIN' not found: run 'make' first"
for tool in nbdinfo nbdcopy fsck.erofs; do
	command -v "$tool" >/dev/null || die "'$tool' is missing ('make deps' installs it)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-demo.XXXXXX")
mnt=
cleanup()
{
	if [ -n "$mnt" ] && mountpoint -q "$mnt"; then umount "$mnt" || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# The --run command sees $uri (and $unixsocket) from erofs-nbd, and
# DEMO_IMG from here.
export DEMO_IMG="$tmp/demo.img"
run_cmd='
set -e
echo "erofs-nbd is serving $TREE_NAME at: $uri (the default export: a GPT disk)"
root="nbd+unix:///root?socket=$unixsocket"
echo
echo "\$ nbdinfo --list \"\$uri\" | grep -e export= -e description"
nbdinfo --list "$uri" | grep -e export= -e description
echo
echo "\$ nbdinfo \"\$root\"    # the export \"root\": the EROFS alone"
nbdinfo "$root"
echo
echo "\$ nbdcopy \"\$root\" demo.img"
nbdcopy "$root" "$DEMO_IMG"
ls -l "$DEMO_IMG"
'

step "serve $TREE and read it back while the server runs"
echo "\$ $BIN -f --export $TREE --run '<nbdinfo; nbdinfo --list; nbdcopy>'"
status=0
TREE_NAME=$TREE "$BIN" -f --export "$TREE" --run "$run_cmd" || status=$?
[ "$status" = 0 ] || die "erofs-nbd --run exited with status $status"
echo "(the command finished, so erofs-nbd stopped and exited 0)"

step "check the copy with fsck.erofs"
echo "\$ fsck.erofs demo.img"
fsck.erofs "$DEMO_IMG"

step "extract it and compare with the source tree"
echo "\$ fsck.erofs --extract=out demo.img"
fsck.erofs --extract="$tmp/out" "$DEMO_IMG" >/dev/null
(cd "$tmp/out" && find . -mindepth 1 -printf '  %M %-32p %l\n' | sort -k2)
echo "\$ cat out/hello.txt"
cat "$tmp/out/hello.txt"
grep -qx 'hello from erofs-nbd' "$tmp/out/hello.txt" || die "hello marker missing"
if diff -r --no-dereference "$TREE" "$tmp/out"; then
	echo "the extracted tree is identical to $TREE (contents and symlinks)"
else
	die "the extracted tree differs from $TREE"
fi

if [ "$(id -u)" = 0 ]; then
	step "mount it (root only)"
	mnt="$tmp/mnt"
	mkdir -p "$mnt"
	echo "\$ mount -t erofs -o loop,ro demo.img mnt"
	if mount -t erofs -o loop,ro "$DEMO_IMG" "$mnt" 2>"$tmp/mount.err"; then
		ls -l "$mnt"
		echo "\$ mnt/bin/hello"
		"$mnt/bin/hello"
		umount "$mnt"
	else
		echo "(mount not possible here: $(cat "$tmp/mount.err"); skipped)"
	fi
fi

step "demo finished: all steps passed"
cat <<EOF

To do it by hand:

  # terminal 1: serve the tree in the foreground (Ctrl-C stops it)
  $BIN -f --export $TREE --unix /tmp/demo.sock

  # terminal 2: the URI printed by terminal 1 is the default export, a
  # GPT disk; the EROFS alone is the export "root"
  nbdinfo --list 'nbd+unix:///?socket=/tmp/demo.sock'
  nbdcopy 'nbd+unix:///root?socket=/tmp/demo.sock' /tmp/demo.img
  fsck.erofs --extract=/tmp/demo.out /tmp/demo.img

  # or mount the export itself, without copying (root; nbdfuse from libnbd):
  mkdir -p /tmp/nbd /mnt/demo
  nbdfuse -r /tmp/nbd 'nbd+unix:///root?socket=/tmp/demo.sock' &
  mount -t erofs -o loop,ro /tmp/nbd/nbd /mnt/demo
  ls -l /mnt/demo; umount /mnt/demo; fusermount3 -u /tmp/nbd

Without -f, erofs-nbd prints the URI and goes into the background; with no
--unix/--tcp it picks a private socket (see README.md, "Usage").
EOF
