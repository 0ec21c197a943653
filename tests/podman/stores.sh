# SPDX-License-Identifier: MIT
# tests/podman/stores.sh - the podman image stores the --image tests serve,
# sourced after tests/functions.sh (and tmpdir: $T must exist).
#
#   podman_stores          makes sure the cached rootful stores exist,
#                          building them under a lock if not:
#                            native  the overlay driver
#                            fuse    the overlay driver with fuse-overlayfs
#                                    as mount program (AUFS-form layers;
#                                    left out without fuse-overlayfs)
#                          each holding $base_img (podman import of
#                          tests/podman/mkbase.sh's tarball) and $multi_img
#                          (podman build --isolation=chroot of
#                          tests/podman/Containerfile on top of it).
#   pod KIND ARGS...       podman on that store.
#   store_dir KIND         the store's graphroot.
#
# Stores live in $EROFS_NBD_TEST_CACHE_DIR/podman-stores (default
# /var/cache/erofs-nbd-tests); podman's runroot in /run/erofs-nbd-tests
# (its path is recorded in the store, and tmpfs forgets mounts on reboot).
# Nothing here touches the machine's own podman store.

podman_cache=${EROFS_NBD_TEST_CACHE_DIR:-/var/cache/erofs-nbd-tests}/podman-stores
podman_runroot=/run/erofs-nbd-tests/podman-stores
base_img=localhost/erofs-test-base:latest
multi_img=localhost/erofs-test-multi:latest

store_dir() { echo "$podman_cache/$1"; }

pod() {
	local kind=$1
	shift
	podman --root "$podman_cache/$kind" --runroot "$podman_runroot/$kind" "$@"
}

_build_store() {
	local kind=$1 opts=() log=$T/build-$1.log
	[ "$kind" = fuse ] && opts=(--storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs)
	check "building the $kind podman store in $podman_cache/$kind (once)"
	rm -rf --one-file-system "${podman_cache:?}/$kind" "${podman_runroot:?}/$kind"
	"$TESTS_DIR/podman/mkbase.sh" "$T/base.tar"
	pod "$kind" --storage-driver overlay "${opts[@]}" import "$T/base.tar" "$base_img" >"$log" 2>&1 ||
		{ cat "$log"; fail "podman import failed"; }
	pod "$kind" --storage-driver overlay "${opts[@]}" build --isolation=chroot \
		-f "$TESTS_DIR/podman/Containerfile" -t "$multi_img" "$TESTS_DIR/podman" >>"$log" 2>&1 ||
		{ tail -n 20 "$log"; fail "podman build failed"; }
	touch "$podman_cache/$kind.done"
}

podman_stores() {
	local kind
	mkdir -p "$podman_cache"
	exec 9>"$podman_cache.lock"
	timeout 1800 flock 9 || fail "timed out waiting for $podman_cache.lock"
	for kind in native fuse; do
		[ "$kind" = fuse ] && ! command -v fuse-overlayfs >/dev/null && continue
		[ -e "$podman_cache/$kind.done" ] || _build_store "$kind"
	done
	exec 9>&-
	cleanup_fn pod native image unmount -a
	[ ! -e "$podman_cache/fuse.done" ] || cleanup_fn pod fuse image unmount -a
}
