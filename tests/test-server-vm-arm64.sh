#!/bin/bash
# SPDX-License-Identifier: MIT
# slow: boots an arm64 QEMU guest (TCG) in which the aarch64 server runs
# tests/test-server-vm-arm64.sh - tests/test-server-vm.sh with an arm64
# guest: the aarch64 build of erofs-nbd (podman machine on Apple silicon
# runs it there) on Debian 12's arm64 kernel, where qemu-user's unit
# tests (tests/test-cross-aarch64.sh) cannot reach io_uring, splice or a
# real file system.  That script says what is checked and what it needs.
SERVER_VM_ARCH=aarch64 exec "$(dirname "$0")/test-server-vm.sh"
