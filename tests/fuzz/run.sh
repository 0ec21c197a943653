#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/fuzz/run.sh - runs libFuzzer harnesses for a bounded time each:
# what `make fuzz` does after building them.
#
#	tests/fuzz/run.sh SECONDS HARNESS...
#
# HARNESS is a built binary named fuzz-NAME.  It runs for SECONDS on its
# committed seed corpus tests/fuzz/corpus/NAME/ (only read) plus a scratch
# corpus $FUZZ_WORK/NAME/ outside the tree, where the new inputs it finds
# go (FUZZ_WORK defaults to ${TMPDIR:-/tmp}/erofs-nbd-fuzz-UID/ plus a
# hash of this checkout).  ASan and UBSan are built in; a crash, leak,
# sanitizer report, broken invariant, timeout (FUZZ_TIMEOUT, 60 s per
# input) or running out of memory (FUZZ_RSS_MB, 3072) stops the harness.
#
# Prints per harness the executions and exec/s; for a failure, the report,
# the input in base64 and hex and the command that reruns it.  FUZZ_JOBS=N
# runs N harnesses at once (default 1).  Exit status: 0, or 1 if any failed.
set -u
cd "$(dirname "$0")/../.."
secs=$1
shift
top=$PWD
work=${FUZZ_WORK:-${TMPDIR:-/tmp}/erofs-nbd-fuzz-$(id -u)/$(printf %s "$top" | cksum | cut -d' ' -f1)}
mkdir -p "$work"
# Readable stack traces with or without the llvm (unversioned) package.
if ! command -v llvm-symbolizer >/dev/null && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
	export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one()
{
	local bin=$1 name=${1##*/fuzz-}
	local log=$work/$name.log corpus=$top/tests/fuzz/corpus/$name
	mkdir -p "$work/$name"
	rm -f "$work/$name".crash-* "$work/$name".leak-* "$work/$name".timeout-* \
		"$work/$name".oom-*
	[ -d "$corpus" ] || corpus=
	"$bin" -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-60}" \
		-rss_limit_mb="${FUZZ_RSS_MB:-3072}" -print_final_stats=1 \
		-artifact_prefix="$work/$name." "$work/$name" $corpus >"$log" 2>&1
	local rc=$? execs rate
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
	if [ $rc -eq 0 ]; then
		printf 'fuzz-%-10s ok      %10s executions, %6s exec/s, corpus %s\n' "$name" \
			"${execs:-?}" "${rate:-?}" "$work/$name"
		return 0
	fi
	printf 'fuzz-%-10s FAILED  (exit %d) after %s executions; log %s\n' "$name" "$rc" \
		"${execs:-?}" "$log"
	grep -v -e '^#[0-9]' -e '^INFO:' -e '^stat::' -e '^MS:' "$log" | tail -n 60 | sed 's/^/    | /'
	local f
	for f in "$work/$name".{crash,leak,timeout,oom}-*; do
		[ -f "$f" ] || continue
		echo "    reproducer: $f ($(stat -c %s "$f") bytes)"
		echo "    base64: $(base64 -w0 "$f")"
		echo "    hex: $(od -An -tx1 -v "$f" | tr -d ' \n')"
		echo "    rerun: $bin $f"
		echo "    recreate: echo '$(base64 -w0 "$f")' | base64 -d >$name.crash"
		echo "    keep it: cp $f tests/fuzz/corpus/$name/ (after the fix, as a regression test)"
	done
	return 1
}

status=0 running=0
for bin in "$@"; do
	if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
		run_one "$bin" >"$work/${bin##*/}.out" &
		running=$((running + 1))
		if [ $running -ge "$FUZZ_JOBS" ]; then
			wait -n || status=1
			running=$((running - 1))
		fi
	else
		run_one "$bin" || status=1
	fi
done
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
	while [ $running -gt 0 ]; do
		wait -n || status=1
		running=$((running - 1))
	done
	for bin in "$@"; do
		cat "$work/${bin##*/}.out"
	done
fi
exit $status
