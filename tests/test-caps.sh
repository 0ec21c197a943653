#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-caps.sh - the privileges a running server keeps.
#
# Started as root with --unix, the serving process has only
# CAP_DAC_READ_SEARCH (bit 2) in its permitted, effective and bounding
# sets, nothing inheritable or ambient, and NoNewPrivs set (read from
# /proc/PID/status); it still serves a tree whose files are root-owned
# mode 0600 in a mode 0700 directory, byte for byte as --write-image
# (which runs with full privileges) lays it out.  With --user nobody it
# runs as uid/gid 65534 with the same capability sets and still reads
# those files (file handles and the kept capability), and the
# supplementary groups it was started with are gone; --group with --user
# picks the gid; --user 65534 (a number) takes nobody's group as the name
# does; a uid with no passwd entry needs --group (no group to take) and
# runs with it.  --group alone changes only the gid.  Must fail: --user as
# a non-root user, an unknown user.  A non-root server without capabilities runs and serves, and sets
# NoNewPrivs too.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires setpriv
requires nbdcopy
requires nbdinfo
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
getent passwd nobody >/dev/null || skip "no user 'nobody'"

tmpdir
chmod 0755 "$T"
src=$T/src
check "building a tree of root-only files"
mkdir -p "$src/open"
mkdir -m 0700 "$src/private" "$src/private/deeper"
head -c 200000 /dev/urandom >"$src/private/secret"
echo "tiny root-only file" >"$src/private/deeper/tiny"
head -c 5000 /dev/urandom >"$src/open/readable"
chmod 0600 "$src/private/secret" "$src/private/deeper/tiny"
chmod 0444 "$src/open/readable"
"$EROFS_NBD" --export "$src" --image-export root --write-image "$T/ref.img" ||
	fail "--write-image failed"

# check_caps PID UID: the server's status shows only CAP_DAC_READ_SEARCH.
check_caps()
{
	local status=/proc/$1/status set want got
	grep -E '^(Uid|Gid|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' "$status"
	got=$(awk '$1 == "Uid:" {print $2 "," $3 "," $4 "," $5}' "$status")
	[ "$got" = "$2,$2,$2,$2" ] || fail "real, effective, saved, fs uid" "$2,$2,$2,$2" "$got"
	for set in CapPrm:4 CapEff:4 CapBnd:4 CapInh:0 CapAmb:0; do
		want=$(printf '%016x' "${set#*:}")
		got=$(awk -v k="${set%:*}:" '$1 == k {print $2}' "$status")
		[ "$got" = "$want" ] || fail "${set%:*} of the server" "$want" "$got"
	done
	got=$(awk '$1 == "NoNewPrivs:" {print $2}' "$status")
	[ "$got" = 1 ] || fail "NoNewPrivs of the server" 1 "$got"
}

# read_back URI NAME: the root export equals --write-image.
read_back()
{
	timeout 60 nbdcopy "$1" "$T/$2.img" || fail "nbdcopy $1 failed"
	cmp "$T/ref.img" "$T/$2.img" || fail "$2: the bytes served differ from --write-image"
}

check "as root: only CAP_DAC_READ_SEARCH left, no_new_privs, root-only files served"
start_server "$src" -v
check_caps "$SRV_PID" 0
grep -q 'capabilities left: cap_dac_read_search=ep' "$SRV_LOG" || fail "no log line on the capabilities"
read_back "nbd+unix:///root?socket=$SRV_SOCK" root
stop_server || fail "exit status $? on SIGTERM"
ok "CapPrm=CapEff=CapBnd=0x4, served all bytes"

check "--user nobody: uid 65534, the capability kept, files still read"
# Started with supplementary groups (as from a login shell): they go too.
printf '#!/bin/sh\nexec setpriv --groups 4,24 -- "%s" "$@"\n' "$EROFS_NBD" >"$T/groups.sh"
chmod +x "$T/groups.sh"
EROFS_NBD=$T/groups.sh start_server "$src" -v --user nobody
check_caps "$SRV_PID" 65534
got=$(awk '$1 == "Gid:" {print $2}' "/proc/$SRV_PID/status")
want=$(id -g nobody)
[ "$got" = "$want" ] || fail "--user nobody: gid" "$want" "$got"
got=$(awk '$1 == "Groups:" {print $2}' "/proc/$SRV_PID/status")
[ -z "$got" ] || fail "--user nobody: supplementary groups left" "(none)" "$got"
read_back "nbd+unix:///root?socket=$SRV_SOCK" user
stop_server || fail "--user: exit status $? on SIGTERM"
ok "nobody with CAP_DAC_READ_SEARCH served all bytes"

check "--user nobody --group 24: the group given, not nobody's"
EROFS_NBD=$T/groups.sh start_server "$src" --user nobody --group 24
check_caps "$SRV_PID" 65534
got=$(awk '$1 == "Gid:" {print $2 "," $3 "," $4 "," $5}' "/proc/$SRV_PID/status")
[ "$got" = "24,24,24,24" ] || fail "--user nobody --group 24: gids" "24,24,24,24" "$got"
got=$(awk '$1 == "Groups:" {print $2}' "/proc/$SRV_PID/status")
[ -z "$got" ] || fail "--user nobody --group 24: supplementary groups left" "(none)" "$got"
stop_server || fail "--user --group: exit status $? on SIGTERM"
ok "uid 65534, gid 24, no supplementary groups"

check "--user 65534 (a number): nobody's group, no supplementary groups"
EROFS_NBD=$T/groups.sh start_server "$src" --user 65534
check_caps "$SRV_PID" 65534
got=$(awk '$1 == "Gid:" {print $2 "," $3 "," $4 "," $5}' "/proc/$SRV_PID/status")
want=$(id -g nobody)
[ "$got" = "$want,$want,$want,$want" ] || fail "--user 65534: gids" "$want (nobody's)" "$got"
got=$(awk '$1 == "Groups:" {print $2}' "/proc/$SRV_PID/status")
[ -z "$got" ] || fail "--user 65534: supplementary groups left" "(none)" "$got"
stop_server || fail "--user 65534: exit status $? on SIGTERM"
ok "a number with a passwd entry gets its group"

check "--user with a uid that has no passwd entry: --group needed"
free=54321
while getent passwd "$free" >/dev/null; do free=$((free + 1)); done
rc=0
"$EROFS_NBD" -f --export "$src" --user "$free" >/dev/null 2>"$T/nog.err" || rc=$?
cat "$T/nog.err"
[ $rc = 2 ] || fail "--user $free (no entry) without --group" "exit 2" "exit $rc"
grep -q -- "--group" "$T/nog.err" || fail "--user $free: the message does not ask for --group"
EROFS_NBD=$T/groups.sh start_server "$src" --user "$free" --group "$free"
got=$(awk '$1 == "Uid:" || $1 == "Gid:" {printf "%s,%s,%s,%s;", $2, $3, $4, $5}' "/proc/$SRV_PID/status")
[ "$got" = "$free,$free,$free,$free;$free,$free,$free,$free;" ] ||
	fail "--user $free --group $free: ids" "all $free" "$got"
got=$(awk '$1 == "Groups:" {print $2}' "/proc/$SRV_PID/status")
[ -z "$got" ] || fail "--user $free --group $free: supplementary groups left" "(none)" "$got"
stop_server || fail "--user $free --group $free: exit status $? on SIGTERM"
ok "refused without --group; with it, uid and gid $free and no other groups"

check "--group alone changes only the gid"
start_server "$src" --group 65534
check_caps "$SRV_PID" 0
got=$(awk '$1 == "Gid:" {print $2 "," $3}' "/proc/$SRV_PID/status")
[ "$got" = "65534,65534" ] || fail "--group 65534: real, effective gid" "65534,65534" "$got"
read_back "nbd+unix:///root?socket=$SRV_SOCK" group
stop_server || fail "--group: exit status $? on SIGTERM"
ok "gid 65534, uid 0"

check "must fail: --user as non-root, an unknown user"
mkdir -m 0777 "$T/np"
rc=0
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all -- \
	"$EROFS_NBD" -f --export "$src/open" --unix "$T/np/x.sock" --user 0 \
	>/dev/null 2>"$T/np.err" || rc=$?
cat "$T/np.err"
[ $rc = 1 ] || fail "--user as non-root" "exit 1" "exit $rc"
grep -q 'needs root' "$T/np.err" || fail "--user as non-root: no 'needs root' message"
rc=0
"$EROFS_NBD" -f --export "$src" --user no-such-user-here >/dev/null 2>"$T/nu.err" || rc=$?
cat "$T/nu.err"
[ $rc = 2 ] || fail "unknown --user" "exit 2" "exit $rc"
ok "refused"

check "non-root without capabilities: serves what it may read, NoNewPrivs set"
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all -- \
	"$EROFS_NBD" -f -v --export "$src/open" --unix "$T/np/sock" >"$T/np/out" 2>"$T/np/err" &
np_pid=$!
cleanup_fn stop_server "$np_pid"
SRV_LOG=$T/np/err
for ((i = 0; i < 300; i++)); do [ -s "$T/np/out" ] && break; sleep 0.1; done
[ -s "$T/np/out" ] || fail "the non-root server did not start"
timeout 30 nbdinfo --size "nbd+unix:///root?socket=$T/np/sock" >/dev/null ||
	fail "the non-root server does not serve"
status=/proc/$np_pid/status
grep -E '^(Uid|CapPrm|CapEff|NoNewPrivs):' "$status"
[ "$(awk '$1 == "CapEff:" {print $2}' "$status")" = 0000000000000000 ] ||
	fail "non-root server has capabilities"
[ "$(awk '$1 == "NoNewPrivs:" {print $2}' "$status")" = 1 ] || fail "non-root: NoNewPrivs not set"
stop_server "$np_pid" || fail "non-root: exit status $? on SIGTERM"
ok "non-root server unaffected"
