#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-fuzz.sh - runs every libFuzzer harness of tests/fuzz/ (the NBD
# protocol state machine, the EROFS, FAT, ESP and GPT builders, the option
# and URI parsers) for a short, bounded time on its committed corpus:
# `make fuzz FUZZ_SECONDS=60`.  A crash, leak, sanitizer report or broken
# invariant fails the test, and tests/fuzz/run.sh prints the reproducer
# (the input in base64 and hex, and the command that reruns it).
# FUZZ_SECONDS overrides the 60 seconds per harness; the harnesses run
# FUZZ_JOBS at a time, one per CPU by default.
#
# slow: builds the library again with clang and the sanitizers, then fuzzes
# each harness for 60 s
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires clang-14
tmpdir
# libFuzzer comes with clang's runtime (libclang-rt-14-dev): probe it.
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }' >"$T/probe.c"
requires clang-14 -fsanitize=fuzzer,address,undefined -o "$T/probe" "$T/probe.c"

cd "$TESTS_DIR/.."
check "make fuzz FUZZ_SECONDS=${FUZZ_SECONDS:-60}"
# A make of our own: not the MAKEFLAGS of a `make check` around us.
export FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)}
env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}" ||
	fail "a fuzz harness failed (reproducer above)"
ok "every harness ran ${FUZZ_SECONDS:-60} s without a failure"
