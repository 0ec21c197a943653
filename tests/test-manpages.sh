#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-manpages.sh - the manuals say what the programs do.
#
# For erofs-nbd (server/erofs-nbd.1) and erofs-nbd-launch
# (launcher/erofs-nbd-launch.1), three lists of options must be the same
# set: the program's getopt table (long options of `struct option`, short
# ones of the optstring), its `--help` (the option column), and the manual
# (the tags of .TP/.TQ items).  An option documented in one and missing
# from another fails the test, naming it.  Then the manuals must render
# without a warning (`groff -ww -z -man`, and `mandoc -T lint -W warning`
# when mandoc is installed), and `make install` must install them.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires python3
requires groff
top=$(cd "$TESTS_DIR/.." && pwd)
bindir=$(dirname "$EROFS_NBD")

tmpdir

# options_of SOURCE HELP MANUAL: compares the three sets; prints what
# differs and returns 1.
options_of()
{
	python3 - "$@" <<'PY'
import re, sys
src, helptext, manual = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]

code = open(src).read()
table = re.search(r'struct option \w+\[\] = \{(.*?)\n\};', code, re.S)
longs = set('--' + n for n in re.findall(r'\{\s*"([a-z0-9-]+)"', table.group(1)))
optstring = re.search(r'getopt_long\([^,]+,[^,]+,\s*"([^"]*)"', code).group(1)
shorts = set('-' + c for c in optstring if c.isalnum())
in_code = longs | shorts

in_help = set()
for line in helptext.splitlines():
    m = re.match(r'  (-[^ ].*?)(?:  |$)', line)
    if m:
        in_help |= set(re.findall(r'(?<![\w-])(--?[A-Za-z0-9][\w-]*)', m.group(1)))

in_man = set()
lines = open(manual).read().splitlines()
for i, line in enumerate(lines):
    if line in ('.TP', '.TQ') and i + 1 < len(lines):
        tag = lines[i + 1].replace('\\-', '-')
        if tag.startswith('.'):
            in_man |= set(re.findall(r'(?<![\w-])(--?[A-Za-z0-9][\w-]*)', tag))

bad = 0
names = {'code': in_code, 'help': in_help, 'manual': in_man}
every = in_code | in_help | in_man
for opt in sorted(every):
    where = [n for n, s in names.items() if opt in s]
    if len(where) != 3:
        missing = [n for n in names if n not in where]
        print('%s: in %s, missing from %s' % (opt, ' and '.join(where), ' and '.join(missing)))
        bad = 1
print('%d options in all three' % len(in_code & in_help & in_man))
sys.exit(bad)
PY
}

for prog in erofs-nbd:server/main.c:server/erofs-nbd.1 \
	erofs-nbd-launch:launcher/main.c:launcher/erofs-nbd-launch.1; do
	IFS=: read -r bin src manual <<<"$prog"
	[ -x "$bindir/$bin" ] || fail "no $bindir/$bin (run make)"
	[ -f "$top/$manual" ] || fail "no manual $manual"
	check "$bin: the option table, --help and $manual list the same options"
	"$bindir/$bin" --help >"$T/help" || fail "$bin --help failed"
	options_of "$top/$src" "$T/help" "$top/$manual" ||
		fail "$bin: the option lists differ (above)"

	check "$bin: $manual renders without warnings"
	out=$(groff -ww -z -man "$top/$manual" 2>&1) || fail "groff failed on $manual: $out"
	[ -z "$out" ] || fail "groff warns about $manual" "nothing" "$out"
	if command -v mandoc >/dev/null; then
		out=$(mandoc -T lint -W warning "$top/$manual" 2>&1) || true
		[ -z "$out" ] || fail "mandoc -T lint warns about $manual" "nothing" "$out"
	fi
	ok "$bin: manual and --help agree"
done

check "make install installs both manuals"
make -C "$top" --no-print-directory O="${O:-build}" install \
	DESTDIR="$T/root" PREFIX=/usr >/dev/null || fail "make install failed"
for m in erofs-nbd erofs-nbd-launch; do
	[ -s "$T/root/usr/share/man/man1/$m.1" ] || fail "make install did not install $m.1"
done
ok "man1/erofs-nbd.1 and man1/erofs-nbd-launch.1 installed"
