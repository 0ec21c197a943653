#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-podman.sh - erofs-nbd --image on real podman image stores,
# against the kernel's overlay mount of the same layers and against
# `podman image mount`: 0 differences.
# slow: builds image stores with podman (cached, a minute the first time) and a rootless user's store every run
#
# Images come from local files only: a busybox base tarball
# (tests/podman/mkbase.sh) brought in with `podman import`, and a
# multi-layer image on top of it made by `podman build --isolation=chroot`
# with RUN steps that delete, replace, re-create, chmod and chown
# (tests/podman/Containerfile).  Stores:
#   native   rootful, the overlay driver (trusted.overlay.*, 0/0 whiteouts)
#   fuse     rootful with fuse-overlayfs as mount program: layers keep
#            .wh. files on disk (AUFS form)
#   rootless a throwaway user with subordinate ids and "driver = overlay"
#            in its storage.conf (user.overlay.*, files owned by subuids),
#            read inside `podman unshare`, where erofs-nbd finds the
#            store through the same storage.conf and $CONTAINERS_GRAPHROOT
# Every store is isolated (podman --root/--runroot); the rootful ones
# are cached (tests/podman/stores.sh), built under a lock.
#
# For each image: served over NBD, read back with nbdcopy, fsck.erofs,
# mounted with the kernel's EROFS (or, in the user namespace where EROFS
# cannot be mounted, read with tests/erofs_reader.py) and compared by
# lookup (tests/treecmp.py --overlay) with the kernel's overlay mount of
# the layers podman reports (GraphDriver.UpperDir/LowerDir) and with
# `podman image mount`.  Also: the export description names the image,
# its ID and store; the name, short name and ID prefix give the same
# bytes; a rootless store read from outside its namespace is refused.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires podman
requires nbdcopy
requires nbdinfo
requires fsck.erofs
requires python3
requires test -x /bin/busybox
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
EROFS_NBD=$(realpath "$EROFS_NBD")
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || skip "no overlayfs"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || skip "no EROFS in the kernel"

tmpdir
chmod 0755 "$T"	# the rootless user works in here too
# shellcheck source=tests/podman/stores.sh
. "$TESTS_DIR/podman/stores.sh"	# podman_stores, pod, store_dir, $base_img, $multi_img
podman_stores

# compare NAME EXPECTED-DIR IMG: treecmp by lookup, EXPECTED a mount.
compare() {
	local what=$1 exp=$2 img=$3
	mount_image "$img" "$T/ours"
	timeout 600 python3 "$TESTS_DIR/treecmp.py" --overlay "$exp" "$T/ours" ||
		fail "$what: erofs-nbd --image differs (lines above: path: what: expected, ours)"
	umount "$T/ours"
	ok "$what: 0 differences"
}

# serve_image KIND IMAGE OUT: serves IMAGE of the store, nbdcopy to OUT,
# fsck.erofs; leaves the server running (SRV_*).
serve_image() {
	local kind=$1 image=$2 out=$3
	start_server "" --image "$image" --storage-root "$(store_dir $kind)"
	timeout 300 nbdcopy "$(export_uri root)" "$out" || fail "nbdcopy of --image $image failed"
	timeout 300 fsck.erofs "$out" >/dev/null || fail "fsck.erofs rejects --image $image"
}

for kind in native fuse; do
	[ -e "$(store_dir $kind).done" ] || { echo "NOTE: no $kind store (fuse-overlayfs missing)"; continue; }
	for image in "$base_img" "$multi_img"; do
		name=$kind-$(basename "${image%:*}")
		check "$name: --image $image"
		serve_image "$kind" "$image" "$T/$name.img"
		id=$(pod "$kind" image inspect --format '{{.Id}}' "$image")
		nl=$(pod "$kind" image inspect --format '{{len .RootFS.Layers}}' "$image")
		desc=$(nbdinfo --list "$SRV_URI" | sed -n 's/^[[:space:]]*description: //p' |
			grep -m1 'EROFS root file system')
		want="EROFS root file system of image $image (ID ${id:0:12}, $nl layer"
		case $desc in "$want"*"overlay store $(store_dir $kind))") ;;
		*) fail "$name: export description" "$want..., overlay store $(store_dir $kind))" "$desc" ;;
		esac
		stop_server || fail "the server did not exit 0"

		if [ "$kind" = native ]; then
			# The kernel's view of the layers podman reports.
			upper=$(pod "$kind" image inspect --format '{{.GraphDriver.Data.UpperDir}}' "$image")
			lower=$(pod "$kind" image inspect --format '{{.GraphDriver.Data.LowerDir}}' "$image")
			[ "$lower" != "<no value>" ] || lower=	# a one-layer image
			# One layer alone is no overlay: an empty one below, as
			# containers-storage mounts a base layer.
			mkdir -p "$T/k-$name" "$T/empty"
			mount -t overlay overlay -o "ro,lowerdir=$upper:${lower:-$T/empty}" "$T/k-$name" ||
				fail "mount -t overlay of $image's layers failed"
			cleanup_fn _umount "$T/k-$name"
			compare "$name vs the kernel's overlay mount ($nl layers)" "$T/k-$name" "$T/$name.img"
			umount "$T/k-$name"
		fi
		m=$(pod "$kind" image mount "$image") || fail "podman image mount $image failed"
		compare "$name vs podman image mount" "$m" "$T/$name.img"
		pod "$kind" image unmount "$image" >/dev/null

		# Other ways to name it give the same bytes.
		short=$(basename "${image%:*}")
		for ref in "$short" "${id:0:12}" "sha256:$id"; do
			"$EROFS_NBD" --image "$ref" --storage-root "$(store_dir $kind)" --image-export root \
				--write-image "$T/ref.img" 2>/dev/null || fail "--image $ref failed"
			cmp "$T/ref.img" "$T/$name.img" || fail "--image $ref gives other bytes than $image"
		done
		ok "$name: $short, ${id:0:12} and sha256:ID give the same image"
	done
done

# --- rootless ----------------------------------------------------------------------------
check "rootless: a throwaway user with subordinate ids and its own store"
user=erofs-nbd-podman
if ! command -v newuidmap >/dev/null; then
	echo "NOTE: no newuidmap (package uidmap): rootless store not tested"
	echo "PASS: $TEST_NAME"
	exit 0
fi
if ! id "$user" >/dev/null 2>&1; then
	useradd -m -s /bin/sh "$user" || fail "useradd $user failed"
	cleanup_fn userdel -r -f "$user"
fi
grep -q "^$user:" /etc/subuid || usermod --add-subuids 200000-265535 --add-subgids 200000-265535 "$user"
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
R=$T/rootless
mkdir -p "$R" "$home/.config/containers" "$T/xdg-$uid"
chmod 0700 "$T/xdg-$uid"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/store"\nrunroot = "%s/run"\n' "$R" "$R" \
	>"$home/.config/containers/storage.conf"
"$TESTS_DIR/podman/mkbase.sh" "$R/base.tar"
cp "$TESTS_DIR/podman/Containerfile" "$R/"
cp "$EROFS_NBD" "$R/erofs-nbd"	# the build tree may not be reachable for the user
chown -R "$user": "$R" "$home/.config" "$T/xdg-$uid"
# as_user CMD...: runs CMD as the user, in $R, with a login-like environment.
as_user() {
	(cd "$R" && runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin XDG_RUNTIME_DIR="$T/xdg-$uid" "$@")
}
as_user podman import base.tar "$base_img" >/dev/null || fail "rootless podman import failed"
as_user podman build --isolation=chroot -f Containerfile -t "$multi_img" . \
	>"$T/build-rootless.log" 2>&1 || { tail -n 20 "$T/build-rootless.log"; fail "rootless podman build failed"; }
ok "rootless store built"

check "rootless: outside its namespace the store is refused, with the way in"
if as_user ./erofs-nbd --image "$multi_img" --image-export root --write-image "$R/no.img" 2>"$R/no.err"; then
	fail "erofs-nbd read a rootless store outside its user namespace"
fi
grep -q "podman unshare erofs-nbd --image" "$R/no.err" || fail "refusal message" \
	"... podman unshare erofs-nbd --image ..." "$(cat "$R/no.err")"
ok "$(cat "$R/no.err")"

check "rootless: inside podman unshare, served over NBD, compared with the kernel and podman"
cat >"$R/inside.sh" <<'EOS'
#!/bin/sh
# Runs in `podman unshare`: as "root" of the user's namespace.
set -eu
img=$1 tc=$2
./erofs-nbd -f --image "$img" --unix "$PWD/nbd.sock" >uri 2>server.log &
srv=$!
i=0
while [ ! -s uri ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
nbdcopy "nbd+unix:///root?socket=$PWD/nbd.sock" ours.img
nbdinfo --list "nbd+unix:///?socket=$PWD/nbd.sock" | grep 'description: EROFS root' >desc
kill -TERM $srv && wait $srv
upper=$(podman image inspect --format '{{.GraphDriver.Data.UpperDir}}' "$img")
lower=$(podman image inspect --format '{{.GraphDriver.Data.LowerDir}}' "$img")
[ "$lower" != "<no value>" ] || lower=
mkdir -p kern
mkdir -p empty
mount -t overlay overlay -o "ro,userxattr,lowerdir=$upper:${lower:-$PWD/empty}" kern
python3 "$tc" --overlay --image kern ours.img >cmp-kernel.out 2>&1 || { cat cmp-kernel.out; exit 11; }
umount kern
m=$(podman image mount "$img")
python3 "$tc" --overlay --image "$m" ours.img >cmp-podman.out 2>&1 || { cat cmp-podman.out; exit 12; }
podman image unmount "$img" >/dev/null
EOS
chmod 0755 "$R/inside.sh"
cp "$TESTS_DIR/treecmp.py" "$TESTS_DIR/erofs_reader.py" "$R/"
chown "$user": "$R/inside.sh" "$R/treecmp.py" "$R/erofs_reader.py"
rc=0
as_user podman unshare ./inside.sh "$multi_img" "$R/treecmp.py" || rc=$?
case $rc in
0) ;;
11) fail "rootless: our merge differs from the kernel's userxattr overlay mount (above)" ;;
12) fail "rootless: our merge differs from podman image mount (above)" ;;
*) [ -s "$R/server.log" ] && tail -n 5 "$R/server.log"
   fail "rootless: the run inside podman unshare failed ($rc)" ;;
esac
tail -n1 "$R/cmp-kernel.out"
tail -n1 "$R/cmp-podman.out"
grep -q "image $multi_img (ID .*overlay store $R/store)" "$R/desc" ||
	fail "rootless export description" "image $multi_img (ID ..., overlay store $R/store)" "$(cat "$R/desc")"
ok "rootless: 0 differences with the kernel's userxattr mount and with podman image mount"

echo "PASS: $TEST_NAME"
