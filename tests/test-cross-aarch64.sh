#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-cross-aarch64.sh - the server and the launcher build for
# aarch64 (gcc-aarch64-linux-gnu against the :arm64 -dev packages) and
# every unit test passes under qemu-user: `make check-aarch64`, in its
# own build directory (build-aarch64).
# slow: a whole cross build and the unit tests under emulation (~1-2 min)
#
# Exit: 0 pass, 77 skip (no cross compiler, :arm64 libraries or
# qemu-user-static: make deps installs them), 1 fail.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires aarch64-linux-gnu-gcc
requires qemu-aarch64-static
requires test -e /usr/lib/aarch64-linux-gnu/pkgconfig/liburing.pc
requires test -e /usr/lib/aarch64-linux-gnu/pkgconfig/cmocka.pc
cd "$TESTS_DIR/.."
check "make check-aarch64"
make --no-print-directory check-aarch64 || fail "make check-aarch64 failed (above)"
file build-aarch64/erofs-nbd | grep -q 'ARM aarch64' ||
	fail "build-aarch64/erofs-nbd is not an aarch64 binary: $(file build-aarch64/erofs-nbd)"
file build-aarch64/erofs-nbd-launch | grep -q 'ARM aarch64' ||
	fail "build-aarch64/erofs-nbd-launch is not an aarch64 binary"
echo "PASS: $TEST_NAME"
