#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/readme-setup.sh [README] - prints the README's two set-up command
# lines, one per line, exactly as written: the first two non-empty lines
# of the ```sh block under "## Set-up".  .ci/run runs them, and
# tests/test-fresh-root.sh runs the first in a fresh Debian root, so the
# README's lines are what CI proves.  Exits 1 if there are not two.
set -euo pipefail
readme=${1:-$(dirname "$0")/../README.md}
lines=$(awk '
	/^## Set-up/ { in_section = 1; next }
	in_section && /^## / { exit }
	in_section && /^```sh/ { in_block = 1; next }
	in_block && /^```/ { exit }
	in_block && NF { print }' "$readme" | head -n 2)
[ "$(printf '%s\n' "$lines" | grep -c .)" -eq 2 ] || {
	echo "readme-setup: no two set-up lines under '## Set-up' in $readme" >&2
	exit 1
}
printf '%s\n' "$lines"
