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
# ELF e_machine (offset 18, little-endian): EM_AARCH64 is 183 (0xb7).
for b in erofs-nbd erofs-nbd-launch; do
	m=$(od -An -tx1 -j18 -N2 "build-aarch64/$b" | tr -d ' ')
	[ "$m" = b700 ] || fail "build-aarch64/$b: ELF machine" "b700 (aarch64)" "$m"
done
echo "PASS: $TEST_NAME"
