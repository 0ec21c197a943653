#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/vm/tree-to-image.sh TREE WORK - makes TREE a podman image of three
# layers (tests/vm/tree-to-oci.py: whiteouts, an opaque directory, a file
# over a directory) in the isolated store WORK/store, and prints the
# erofs-nbd options that serve it by name, one per line.  For
# tests/test-vm.sh's EROFS_NBD_VM_SOURCE (tests/test-image-vm.sh).
set -euo pipefail
tree=$1 work=$2
ref=localhost/erofs-vm-test:latest
python3 "$(dirname "$0")/tree-to-oci.py" "$tree" "$ref" "$work/image.oci.tar"
podman --root "$work/store" --runroot "$work/run" --storage-driver overlay \
	load -i "$work/image.oci.tar" >&2
printf '%s\n' --image "$ref" --storage-root "$work/store"
