#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/podman/mkbase.sh OUT.tar - the base layer of the test images: a
# busybox root file system made from local files only (busybox-static),
# with what later layers delete, replace, re-create, chmod and chown
# (tests/podman/Containerfile).  Deterministic: fixed mtimes.
set -euo pipefail
out=$1
root=$(mktemp -d "${TMPDIR:-/tmp}/erofs-nbd-mkbase.XXXXXX")
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
cd "$root"
mkdir -p bin etc srv/owned usr/share/doomed/sub usr/share/moveme var/many opt/tree \
	opt/dir-to-file tmp
cp /bin/busybox bin/busybox
for a in sh ls cat rm mkdir chmod chown ln echo touch mv cp seq find mknod true; do
	ln -s busybox "bin/$a"
done
echo "welcome" >etc/motd
echo "Debian-ish" >etc/issue
echo "base" >etc/hostname
for i in $(seq 1 40); do echo "doomed $i" >"usr/share/doomed/f$i"; done
echo deep >usr/share/doomed/sub/deep
echo move >usr/share/moveme/a
echo owned >srv/owned/file
echo tree >opt/tree/leaf
echo was-dir >opt/dir-to-file/x
echo pair >bin/hl-a
ln bin/hl-a bin/hl-b
ln bin/hl-a bin/hl-c
cp /bin/busybox bin/suid-me
for i in $(seq 1 20); do echo "$i" >"var/many/old$i"; done
ln -s ../etc/issue usr/issue-link
mkfifo tmp/fifo
mknod tmp/null c 1 3
printf 'x%.0s' $(seq 1 5000) >etc/big-line
chmod 1777 tmp
chmod 0644 etc/*
find . -exec touch -h -d @1600000000 {} +
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out" .
