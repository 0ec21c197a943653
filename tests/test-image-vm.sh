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
export EROFS_NBD_VM_SOURCE=$TESTS_DIR/vm/tree-to-image.sh
exec "$TESTS_DIR/test-vm.sh"
