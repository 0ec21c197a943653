#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-systemd.sh - erofs-nbd under a service manager, without
# needing systemd as PID 1.
#
# systemd-analyze verify accepts systemd/erofs-nbd@.socket and
# erofs-nbd@.service (ExecStart pointed at the built binary) without a
# single message, and systemd-analyze security rates the service 2.0 or
# better.  systemd-socket-activate then runs the server the way the units
# do (-f, socket passed as fd 3 with LISTEN_FDNAMES=nbd, NOTIFY_SOCKET set,
# here an abstract one): READY=1 with a STATUS= naming the activated socket
# arrives, a client reads the export and gets the --write-image bytes,
# SIGTERM brings STOPPING=1 and exit 0, and the socket file, which belongs
# to the manager, is left in place.  --run under activation shows that
# LISTEN_* and NOTIFY_SOCKET are not passed on.  LISTEN_PID naming another
# process is ignored; a malformed LISTEN_FDS is an error.  Activation
# implies -f: without it the process started is still the one serving.
#
# The hardened unit in miniature: setpriv gives the server what the unit
# gives it (uid nobody, CAP_DAC_READ_SEARCH ambient and alone in the
# bounding set, no_new_privs) and a seccomp filter refuses io_uring_setup
# and capset with EPERM (the unit's ~@privileged, and a drop-in refusing
# io_uring); the server falls back to its plain loop, still reads the
# root-only files of the tree, and keeps only CAP_DAC_READ_SEARCH.
#
# --pidfile (background mode: the serving process's pid, which READY=1
# also names as MAINPID=; removed on exit) and --exit-with-parent (the
# server stops when its parent exits, and cleans up; also after --user
# nobody, whose uid change clears the parent-death signal, and READY=1
# still reaches a NOTIFY_SOCKET only root may write to).
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires systemd-analyze
requires systemd-socket-activate
requires setpriv
requires nbdinfo
requires nbdcopy
requires python3
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
EROFS_NBD=$(realpath "$EROFS_NBD")
UNITS=$TESTS_DIR/../systemd

tmpdir
# The notify receivers and the servers run as nobody in places: T must be
# reachable for them (mktemp made it 0700).
chmod 0755 "$T"

# --- the unit files --------------------------------------------------------------------
check "systemd-analyze verify on the units"
mkdir "$T/units"
for f in erofs-nbd@.socket erofs-nbd@.service; do
	[ -f "$UNITS/$f" ] || fail "missing $UNITS/$f"
	sed "s|/usr/local/bin/erofs-nbd|$EROFS_NBD|" "$UNITS/$f" >"$T/units/$f"
	# An instance, as systemctl start erofs-nbd@test.service loads it.
	cp "$T/units/$f" "$T/units/${f/@./@test.}"
done
grep -q "^ExecStart=$EROFS_NBD -f " "$T/units/erofs-nbd@.service" ||
	fail "ExecStart of erofs-nbd@.service does not run /usr/local/bin/erofs-nbd -f"
(cd "$T/units" && systemd-analyze verify --man=no ./erofs-nbd@.socket ./erofs-nbd@.service \
	./erofs-nbd@test.socket ./erofs-nbd@test.service) >"$T/verify.log" 2>&1 ||
	{ cat "$T/verify.log"; fail "systemd-analyze verify failed"; }
# Unknown keys and bad values are only warnings: there must be none.
if [ -s "$T/verify.log" ]; then
	cat "$T/verify.log"
	fail "systemd-analyze verify printed messages" "(nothing)" "$(head -n1 "$T/verify.log")"
fi
# Must fail: the check sees a missing executable.
sed "s|^ExecStart=[^ ]*|ExecStart=$T/no-such-binary|" "$T/units/erofs-nbd@test.service" \
	>"$T/units/broken@test.service"
if (cd "$T/units" && systemd-analyze verify --man=no ./broken@test.service) >/dev/null 2>&1; then
	fail "systemd-analyze verify accepted a unit whose binary does not exist"
fi
ok "units verify cleanly"

check "systemd-analyze security: exposure 2.0 or better"
(cd "$T/units" && systemd-analyze security --offline=yes --threshold=20 \
	./erofs-nbd@test.service) >"$T/security.log" 2>&1 ||
	{ tail -n 30 "$T/security.log"; fail "systemd-analyze security above 2.0"; }
grep 'Overall exposure' "$T/security.log"
for key in CapabilityBoundingSet=CAP_DAC_READ_SEARCH NoNewPrivileges=yes ProtectSystem=strict \
	PrivateNetwork=yes RestrictAddressFamilies=AF_UNIX Type=notify; do
	grep -qx "$key" "$UNITS/erofs-nbd@.service" || fail "erofs-nbd@.service lacks $key"
done
ok "hardening settings present"

# --- a tree with root-only files -------------------------------------------------------
src=$T/src
check "building a tree with root-only files"
# Not tests/mktree.sh: its trusted.* xattrs are invisible to a server
# without CAP_SYS_ADMIN, so the hardened image would differ.
mkdir -p "$src/dir/sub" "$src/empty"
head -c 3000000 /dev/urandom >"$src/dir/big"
echo hello >"$src/dir/sub/small"
ln -s dir/sub/small "$src/link"
setfattr -n user.test -v value "$src/dir/big" 2>/dev/null || true
mkdir -m 0700 "$src/private"
head -c 100000 /dev/urandom >"$src/private/secret"
echo "root only" >"$src/private/small"
chmod 0600 "$src/private/secret" "$src/private/small"
# The EROFS export "root": the disk around it has random GUIDs.
"$EROFS_NBD" --export "$src" --image-export root --write-image "$T/ref.img" ||
	fail "--write-image failed"
size=$(stat -c %s "$T/ref.img")
echo "reference image: $size bytes"

# A datagram receiver: prints each notification on one line, with the
# time, flushed; stops after STOPPING=1 or 120 s.  ADDR "@name" is
# abstract.  A ready file appears once it is bound.
cat >"$T/notify.py" <<'EOF'
import os, socket, sys, time
addr, ready = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
if not addr.startswith("@"):
    os.chmod(addr, 0o777)  # as systemd's /run/systemd/notify
open(ready, "w").close()
s.settimeout(120)
while True:
    try:
        msg = s.recv(65536).decode()
    except socket.timeout:
        break
    print("%.3f %s" % (time.time(), msg.replace("\n", "|")), flush=True)
    if "STOPPING=1" in msg.split("\n"):
        break
EOF

# start_notify ADDR LOG: runs the receiver in the background.
start_notify()
{
	python3 "$T/notify.py" "$1" "$2.ready" >"$2" 2>&1 &
	local pid=$! i
	cleanup_fn kill "$pid"
	for ((i = 0; i < 100; i++)); do
		[ -e "$2.ready" ] && return 0
		sleep 0.1
	done
	fail "the notify receiver did not start"
}

# wait_for_line FILE PATTERN SECS: waits until a line of FILE matches.
wait_for_line()
{
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# wait_for_socket PATH: systemd-socket-activate binds it in the background.
wait_for_socket()
{
	local i
	for ((i = 0; i < 100; i++)); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	fail "systemd-socket-activate did not create $1 within 10 s"
}

# --- socket activation with readiness notification -------------------------------------
check "systemd-socket-activate runs the server as the unit does"
sock=$T/activated.sock
nsock="@erofs-nbd-test-$$-$RANDOM"
start_notify "$nsock" "$T/notify.log"
systemd-socket-activate -l "$sock" --fdname=nbd -E NOTIFY_SOCKET="$nsock" \
	"$EROFS_NBD" -f -v --export "$src" >"$T/act.out" 2>"$T/act.err" &
act_pid=$!
SRV_LOG=$T/act.err
cleanup_fn stop_server "$act_pid"
wait_for_socket "$sock"
# systemd-socket-activate starts the server on the first connection, as
# systemd does: this client waits in the backlog until the server is ready.
uri="nbd+unix:///root?socket=$sock"
got=$(timeout 120 nbdinfo --size "$uri") || fail "nbdinfo on the activated socket failed"
client_done=$(date +%s.%N)
[ "$got" = "$size" ] || fail "nbdinfo --size" "$size" "$got"
wait_for_line "$T/notify.log" 'READY=1' 10 || fail "no READY=1"
cat "$T/notify.log"
ready_at=$(awk '/READY=1/ {print $1; exit}' "$T/notify.log")
awk -v r="$ready_at" -v c="$client_done" 'BEGIN { exit !(r <= c) }' ||
	fail "READY=1 came after the first client was served" "<= $client_done" "$ready_at"
grep -q "STATUS=Serving [0-9] exports on nbd+unix:///?socket=$sock" "$T/notify.log" ||
	fail "READY=1 without a STATUS naming the activated socket" \
	"STATUS=Serving [0-9] exports on nbd+unix:///?socket=$sock" "$(cat "$T/notify.log")"
grep -q "cap_dac_read_search=ep" "$T/notify.log" || fail "STATUS does not show the capability kept"
[ "$(head -n1 "$T/act.out")" = "nbd+unix:///?socket=$sock" ] ||
	fail "the printed URI is not the activated socket's" "nbd+unix:///?socket=$sock" "$(cat "$T/act.out")"
# Activation implies -f and makes no private runtime directory.
grep -q 'erofs-nbd\.' "$T/act.out" && fail "a private runtime directory was used"
timeout 60 nbdcopy "$uri" "$T/act.img" || fail "nbdcopy from the activated socket failed"
cmp "$T/ref.img" "$T/act.img" || fail "bytes read differ from --write-image"
ok "READY=1 before the first client's answer; $size bytes equal to --write-image"

check "SIGTERM: STOPPING=1, exit 0, the manager's socket left alone"
stop_server "$act_pid" || fail "the server exited with $? on SIGTERM"
wait_for_line "$T/notify.log" 'STOPPING=1' 10 || fail "no STOPPING=1"
ready_line=$(grep -n 'READY=1' "$T/notify.log" | cut -d: -f1)
stop_line=$(grep -n 'STOPPING=1' "$T/notify.log" | cut -d: -f1)
[ "$ready_line" -lt "$stop_line" ] || fail "STOPPING=1 came before READY=1"
[ -S "$sock" ] || fail "the server removed the socket systemd owns"
ok "stopped cleanly"

check "--run under activation: children see no LISTEN_* or NOTIFY_SOCKET"
rm -f "$sock"
start_notify "$T/notify2.sock" "$T/notify2.log"
# The command waits for the triggering client to be done: the server
# stops when the command ends, and would drop that client mid-handshake.
timeout 120 systemd-socket-activate -l "$sock" --fdname=nbd -E NOTIFY_SOCKET="$T/notify2.sock" \
	"$EROFS_NBD" --export "$src" --run "env >'$T/env'; nbdinfo --size \"\$uri\" >'$T/run.size'
		while [ ! -e '$T/trigger.done' ]; do sleep 0.1; done" \
	>/dev/null 2>"$T/run.err" &
run_pid=$!
cleanup_fn kill "$run_pid"
wait_for_socket "$sock"
# The first connection starts it.
timeout 110 nbdinfo --size "nbd+unix:///root?socket=$sock" >/dev/null ||
	fail "--run under activation: the triggering client failed"
touch "$T/trigger.done"
wait "$run_pid" || { cat "$T/run.err"; fail "--run under activation failed"; }
grep -Eqx '[0-9]+' "$T/run.size" || fail "--run: nbdinfo --size \$uri" "a size" "$(cat "$T/run.size")"
if grep -E '^(LISTEN_(PID|FDS|FDNAMES|PIDFDID)|NOTIFY_SOCKET)=' "$T/env"; then
	fail "the --run command inherited the service manager's variables"
fi
grep -q "^uri=nbd+unix:///?socket=$sock\$" "$T/env" || fail "--run: \$uri is not the activated socket"
wait_for_line "$T/notify2.log" 'STOPPING=1' 10 || fail "--run: no STOPPING=1"
ok "variables consumed, not inherited"

check "LISTEN_PID of another process is ignored; a malformed LISTEN_FDS is an error"
# fd 3 is a regular file here: taking it would fail the start.
LISTEN_PID=1 LISTEN_FDS=1 start_server "$src" 3<"$T/ref.img"
timeout 30 nbdinfo --size "$SRV_URI" >/dev/null || fail "server with a foreign LISTEN_PID does not serve"
stop_server "$SRV_PID" || fail "stopping the server"
# exec: LISTEN_PID=$$ is then the server's own pid.
rc=0
bash -c 'LISTEN_PID=$$ LISTEN_FDS=junk exec "$@"' _ "$EROFS_NBD" -f --export "$src" \
	--unix "$T/x.sock" >/dev/null 2>"$T/bad.err" || rc=$?
cat "$T/bad.err"
[ $rc = 1 ] || fail "malformed LISTEN_FDS for our pid" "exit 1" "exit $rc"
grep -q 'LISTEN_FDS' "$T/bad.err" || fail "no message naming LISTEN_FDS"
rc=0
bash -c 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"' _ "$EROFS_NBD" -f --export "$src" \
	--unix "$T/x.sock" 3<"$T/ref.img" >/dev/null 2>"$T/bad.err" || rc=$?
cat "$T/bad.err"
[ $rc = 1 ] || fail "a passed fd that is not a socket" "exit 1" "exit $rc"
ok "foreign LISTEN_PID ignored, malformed LISTEN_FDS and non-socket fds refused"

check "socket activation implies -f: without it, the process started serves"
sock=$T/fg.sock
rm -f "$sock"
systemd-socket-activate -l "$sock" "$EROFS_NBD" --export "$src" >/dev/null 2>"$T/fg.err" &
fg_pid=$!
SRV_LOG=$T/fg.err
cleanup_fn stop_server "$fg_pid"
wait_for_socket "$sock"
timeout 120 nbdinfo --size "nbd+unix:///root?socket=$sock" >/dev/null ||
	fail "activation without -f: nbdinfo failed"
[ "$(readlink "/proc/$fg_pid/exe")" = "$EROFS_NBD" ] ||
	fail "activation without -f: the server went into the background"
stop_server "$fg_pid" || fail "activation without -f: exit status $? on SIGTERM"
ok "stayed in the foreground"

# --- the hardened unit in miniature ----------------------------------------------------
check "as the unit runs it: nobody, CAP_DAC_READ_SEARCH ambient, io_uring and capset refused"
[ "$(uname -m)" = x86_64 ] || skip "the seccomp filter below is written for x86_64"
# A seccomp filter: io_uring_setup (425) and capset (126) fail with EPERM,
# everything else is allowed.  Then exec the command.
cat >"$T/deny.py" <<'EOF'
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
AUDIT_ARCH_X86_64, ALLOW, EPERM = 0xC000003E, 0x7FFF0000, 0x00050000 | 1
ins = [(0x20, 0, 0, 4), (0x15, 1, 0, AUDIT_ARCH_X86_64), (0x06, 0, 0, ALLOW),
       (0x20, 0, 0, 0)]
for nr in (425, 126):                   # io_uring_setup, capset
    ins += [(0x15, 0, 1, nr), (0x06, 0, 0, EPERM)]
ins.append((0x06, 0, 0, ALLOW))
buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in ins))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Fprog(len(ins), ctypes.addressof(buf))
if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
EOF
sock=$T/hardened.sock
rm -f "$sock"
start_notify "$T/notify3.sock" "$T/notify3.log"
# The real interpreter, not a shim script nobody may not be able to run.
py=$(python3 -c 'import sys; print(sys.executable)')
systemd-socket-activate -l "$sock" --fdname=nbd -E NOTIFY_SOCKET="$T/notify3.sock" \
	setpriv --reuid=65534 --regid=65534 --clear-groups \
	--inh-caps=-all,+dac_read_search --ambient-caps=+dac_read_search \
	--bounding-set=-all,+dac_read_search --no-new-privs -- \
	"$py" "$T/deny.py" "$EROFS_NBD" -f -v --export "$src" >/dev/null 2>"$T/hard.err" &
hard_pid=$!
SRV_LOG=$T/hard.err
cleanup_fn stop_server "$hard_pid"
wait_for_socket "$sock"
timeout 120 nbdinfo --size "nbd+unix:///root?socket=$sock" >/dev/null ||
	fail "hardened: nbdinfo failed"
wait_for_line "$T/notify3.log" 'READY=1' 120 || fail "hardened: no READY=1 within 120 s"
grep -q 'io_uring is not available' "$T/hard.err" ||
	fail "hardened: no fallback from io_uring logged" "io_uring is not available" "$(cat "$T/hard.err")"
grep -q 'serving with the plain loop' "$T/hard.err" || fail "hardened: not serving with the plain loop"
# The process that serves is the exec'ed server (same pid all along).
status=/proc/$hard_pid/status
grep -E '^(Uid|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' "$status"
[ "$(awk '/^Uid:/ {print $2}' "$status")" = 65534 ] || fail "hardened: not running as nobody"
for set in CapPrm CapEff CapBnd; do
	got=$(awk -v k="$set:" '$1 == k {print $2}' "$status")
	[ "$got" = 0000000000000004 ] || fail "hardened: $set" 0000000000000004 "$got"
done
got=$(awk '$1 == "CapAmb:" {print $2}' "$status")
[ "$got" = 0000000000000000 ] || fail "hardened: the ambient set was not cleared" 0 "$got"
timeout 60 nbdcopy "nbd+unix:///root?socket=$sock" "$T/hard.img" || fail "hardened: nbdcopy failed"
cmp "$T/ref.img" "$T/hard.img" || fail "hardened: bytes differ from --write-image (root-only files?)"
stop_server "$hard_pid" || fail "hardened: exit status $? on SIGTERM"
wait_for_line "$T/notify3.log" 'STOPPING=1' 10 || fail "hardened: no STOPPING=1"
ok "plain loop, nobody + CAP_DAC_READ_SEARCH only, all bytes read"

# --- --pidfile and --exit-with-parent --------------------------------------------------
check "--pidfile in background mode names the serving process; removed on exit"
pidfile=$T/srv.pid
start_notify "$T/notify4.sock" "$T/notify4.log"
uri=$(NOTIFY_SOCKET=$T/notify4.sock "$EROFS_NBD" --export "$src" --unix "$T/bg.sock" \
	--pidfile "$pidfile") || fail "background start failed"
for ((i = 0; i < 100; i++)); do [ -s "$pidfile" ] && break; sleep 0.1; done
[ -s "$pidfile" ] || fail "no pid file within 10 s"
pid=$(cat "$pidfile")
cleanup_fn kill "$pid"
[[ $pid =~ ^[0-9]+$ ]] || fail "pid file content" "a pid" "$pid"
[ "$(readlink "/proc/$pid/exe")" = "$EROFS_NBD" ] || fail "the pid file does not name erofs-nbd"
timeout 30 nbdinfo --size "$uri" >/dev/null || fail "the background server does not serve"
# After the fork the serving process is a new one: READY=1 says which.
wait_for_line "$T/notify4.log" 'READY=1' 10 || fail "background mode: no READY=1"
grep -q "MAINPID=$pid|READY=1" "$T/notify4.log" ||
	fail "background mode: READY=1 without the serving pid" "MAINPID=$pid|READY=1" \
	"$(cat "$T/notify4.log")"
kill -TERM "$pid"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the background server ignored SIGTERM"
[ -e "$pidfile" ] && fail "the pid file was left behind"
ok "pid $pid (also MAINPID=), file removed"

check "--exit-with-parent: the server stops when its parent exits"
rm -f "$T/ewp.pid"
# The parent starts the server, waits until it serves, then exits.
bash -c '"$1" --export "$2" --unix "$3" --exit-with-parent >/dev/null 2>"$4" &
	echo $! >"$5"
	for ((i = 0; i < 1200; i++)); do [ -S "$3" ] && exit 0; sleep 0.1; done
	exit 1' _ "$EROFS_NBD" "$src" "$T/ewp.sock" "$T/ewp.err" "$T/ewp.pid" ||
	fail "the parent did not see the server start"
pid=$(cat "$T/ewp.pid")
cleanup_fn kill "$pid"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the server outlived its parent by 10 s"
[ -e "$T/ewp.sock" ] && fail "the server did not remove its socket on the way out"
ok "stopped with its parent and cleaned up"

check "--exit-with-parent --user nobody: stops with its parent; READY=1 to a root-only socket"
start_notify "$T/notify5.sock" "$T/notify5.log"
chmod 0600 "$T/notify5.sock"	# connected as root: nobody may not write to it
# The parent waits until the server has switched to nobody, then exits.
bash -c 'NOTIFY_SOCKET=$6 "$1" -v --export "$2" --unix "$3" --exit-with-parent \
	--user nobody >/dev/null 2>"$4" &
	echo $! >"$5"
	for ((i = 0; i < 1200; i++)); do
		grep -q "capabilities left" "$4" 2>/dev/null && exit 0
		sleep 0.1
	done
	exit 1' _ "$EROFS_NBD" "$src" "$T/ewp2.sock" "$T/ewp2.err" "$T/ewp2.pid" \
	"$T/notify5.sock" || fail "the parent did not see the server drop privileges"
pid=$(cat "$T/ewp2.pid")
cleanup_fn kill "$pid"
for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "--user nobody: the server outlived its parent by 10 s"
wait_for_line "$T/notify5.log" 'READY=1' 10 ||
	fail "--user nobody: no READY=1 on a socket only root may write" "READY=1" \
	"$(cat "$T/notify5.log"; tail -n 3 "$T/ewp2.err")"
ok "stopped with its parent after the uid change; READY=1 sent"
