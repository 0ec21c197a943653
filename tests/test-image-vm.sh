#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-image-vm.sh - a VM boots from a podman image served by name:
# tests/test-vm.sh's tree and checks, with the tree made a podman image
# of three layers whose merge is that tree (tests/vm/tree-to-image.sh:
# whiteouts, an opaque directory, a file over a directory, in an isolated
# store) and served with erofs-nbd --image NAME --storage-root DIR.
# slow: boots a VM (a minute or more under TCG)
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires podman
requires python3

# erofs-nbd-launch passes --image and --storage-root on to the server.
launch=$(dirname "$EROFS_NBD")/erofs-nbd-launch
if [ -x "$launch" ]; then
	T=$(mktemp -d)	# not tmpdir: the exec below would skip its cleanup
	"$launch" --dry-run -v --vmm qemu --image localhost/x:1 --storage-root "$T/s" \
		>/dev/null 2>"$T/dry" || { cat "$T/dry"; fail "erofs-nbd-launch --image --dry-run failed"; }
	args=$(sed -n 's/^erofs-nbd-launch: server: //p' "$T/dry" | tr '\n' ' ')
	case $args in
	*" --image localhost/x:1 --storage-root $T/s "*) ok "the launcher passes --image on: $args" ;;
	*) fail "erofs-nbd-launch server command line" "... --image localhost/x:1 --storage-root $T/s ..." "$args" ;;
	esac
	"$launch" --dry-run -v --vmm qemu --lowerdir "$T/a:$T/b" --upperdir "$T/u" >/dev/null 2>"$T/dry" ||
		{ cat "$T/dry"; fail "erofs-nbd-launch --lowerdir --dry-run failed"; }
	grep -q "server: --lowerdir" "$T/dry" && grep -q "server: $T/u" "$T/dry" ||
		fail "erofs-nbd-launch does not pass --lowerdir/--upperdir on"
	rm -rf "$T"
fi
export EROFS_NBD_VM_SOURCE=$TESTS_DIR/vm/tree-to-image.sh
exec "$TESTS_DIR/test-vm.sh"
