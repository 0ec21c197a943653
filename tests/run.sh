#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/run.sh - runs the whole suite: every unit test binary in $O/tests/
# (cmocka), then every tests/test-*.sh integration script.  A script exits
# 0 (pass), 77 (skip: a prerequisite is missing) or anything else (fail).
# Each test's output goes to $O/tests/logs/NAME.log and is printed when it
# fails.  The last line is "N passed, N failed, N skipped".
#
# A script whose header has a line "# slow: WHY" is a slow system check (a
# VM boot, a fresh-root set-up, a soak, fuzzing).  QUICK=1 leaves those out
# (they are listed as skipped), so that CI runs them once per run rather
# than once per build variant.
#
#   O=build tests/run.sh [NAME-PATTERN...]    e.g. tests/run.sh vm protocol
#   QUICK=1 O=build-asan tests/run.sh         all but the slow checks
set -u
cd "$(dirname "$0")/.."
O=${O:-build}
QUICK=${QUICK:-0}
export EROFS_NBD="$PWD/$O/erofs-nbd"
export O
logs="$O/tests/logs"
mkdir -p "$logs"

tests=()
for t in "$O"/tests/test-* tests/test-*.sh; do
	[ -x "$t" ] || continue
	name=$(basename "$t" .sh)
	if [ $# -gt 0 ]; then
		keep=0
		for pat in "$@"; do [[ $name == *"$pat"* ]] && keep=1; done
		[ $keep = 1 ] || continue
	fi
	tests+=("$t")
done

pass=0 fail=0 skip=0 failed=()
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	case $t in *.sh) kind=integration ;; *) kind=unit ;; esac
	log="$logs/$name.log"
	if [ "$QUICK" = 1 ] && [[ $t == *.sh ]] && head -n 30 "$t" | grep -q '^# slow:'; then
		skip=$((skip + 1))
		printf 'SKIP  %-32s %-11s %s\n' "$name" "$kind" "slow check left out (QUICK=1)"
		continue
	fi
	start=$SECONDS
	"$t" >"$log" 2>&1 </dev/null
	rc=$?
	secs=$((SECONDS - start))
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS  %-32s %-11s %4ss\n' "$name" "$kind" "$secs" ;;
	77) skip=$((skip + 1)); printf 'SKIP  %-32s %-11s %s\n' "$name" "$kind" \
		"$(grep -m1 -i 'skip' "$log" | cut -c1-60)" ;;
	*) fail=$((fail + 1)); failed+=("$name")
	   printf 'FAIL  %-32s %-11s %4ss (exit %d)\n' "$name" "$kind" "$secs" "$rc"
	   sed 's/^/    | /' "$log" | tail -n 60 ;;
	esac
done

# Each failure's reason again at the end, where a truncated CI log keeps it.
for name in "${failed[@]}"; do
	why=$(grep -m1 -E '^(FAIL|ERROR)|==[0-9]+==ERROR|^\[  ERROR' "$logs/$name.log" | cut -c1-200)
	echo "failed: $name: ${why:-see $logs/$name.log}"
done
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $pass -gt 0 ]
