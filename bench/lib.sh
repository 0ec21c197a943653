# SPDX-License-Identifier: MIT
# bench/lib.sh - helpers shared by the bench sections (bench/sec-*.sh),
# sourced by bench/run.sh.  Nothing here prints results: sections record
# them with `result` and bench/report.py turns them into the table.
#
#   result SECTION TREE SERVER METRIC VALUE   append one line to $RESULTS
#   tree_minbase / tree_usr_share / tree_large  print a cached tree's path,
#                     building it once under an flock
#   tree_stats TREE   sets N_ENTRIES N_FILES N_BYTES (and warms the cache)
#   mkfs_image TREE IMG   mkfs.erofs IMG TREE (for the peers)
#   srv_ours TREE [ARG...]        erofs-nbd, export root   } set SRV_PID,
#   srv_nbdkit PLUGIN ARG...      nbdkit -r                } SRV_URI,
#   srv_qemu IMG                  qemu-nbd -r              } SRV_START_US
#   srv_stop                      stop the server started last
#   seq_pass URI PID [NBDCOPY-OPT...]   one nbdcopy pass of URI to null:
#                     "WALL_US SRV_CPU_NS CLI_SECONDS"
#   fio_pass URI PID FIELD FIO-ARG...   one fio nbd run:
#                     "FIELD RUNTIME_MS SRV_CPU_NS CLI_SECONDS"
#   rand_pass URI PID SECS   fio nbd 4 KiB randread, 2 jobs x QD 32:
#                     "READS RUNTIME_MS SRV_CPU_NS CLI_SECONDS"
#   steady_pass URI PID SECS   fio nbd sequential, 4 jobs x QD 16, 256 KiB:
#                     "BYTES RUNTIME_MS SRV_CPU_NS CLI_SECONDS"
# CPU time (user + system) to the microsecond, by bench/cputime.c
# ($CPUTIME): the server's from its process CPU clock (every thread, the
# ended ones included), the client's from wait4()'s rusage.  /proc/PID/stat
# and time(1) count 10 ms ticks, ~8 of them in a pass over minbase.
# Wall-clock on a shared 2-core machine is noisy; CPU per GB is steadier
# and shows where the time goes.

cache=${EROFS_NBD_TEST_CACHE:-/var/cache/erofs-nbd-tests}

result() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# --- trees ----------------------------------------------------------------

# debian_mirror: the first Debian archive URI apt is configured with.
debian_mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	echo "${m:-http://deb.debian.org/debian}"
}

# cached_tree NAME BUILD-FUNCTION: $cache/NAME, built once by
# BUILD-FUNCTION TMPDIR under $cache/NAME.lock; NAME.done marks it complete
# (the integration tests use the same convention).
cached_tree() {
	local name=$1 build=$2 dir=$cache/$1 tmp lockfd
	if [ ! -e "$dir.done" ]; then
		[ "$(id -u)" = 0 ] || die "building $dir needs root (or set BENCH_TREES)"
		mkdir -p "$cache"
		exec {lockfd}>"$dir.lock"
		flock "$lockfd"
		if [ ! -e "$dir.done" ]; then
			[ -e "$dir" ] && die "'$dir' exists without '$dir.done': still being" \
				"built elsewhere, or broken (then remove it)"
			tmp=$dir.tmp.$$
			rm -rf "$tmp"
			note "building $dir (once)"
			"$build" "$tmp" >"$tmp.log" 2>&1 ||
				{ tail -n 20 "$tmp.log" >&2; die "building $dir failed"; }
			rm -f "$tmp.log"
			mv "$tmp" "$dir"
			sync	# its writeback must not run beside what is timed next
			touch "$dir.done"
		fi
		exec {lockfd}>&-
	fi
	echo "$dir"
}

build_minbase() {
	command -v debootstrap >/dev/null || die "no debootstrap (make deps)"
	debootstrap --variant=minbase bookworm "$1" "$(debian_mirror)"
}
# Many small files: a copy of this machine's /usr/share (documentation,
# locales, icons: 60,000+ entries, median file ~1.5 KiB on Debian 12).
build_usr_share() {
	mkdir "$1" && cp -a --one-file-system /usr/share/. "$1"/
}
# 100,000+ entries for the start-up ratio: two copies of the usr-share
# tree and /usr/include.
build_large() {
	local src
	src=$(cached_tree usr-share build_usr_share)
	mkdir -p "$1/a" "$1/b" "$1/include"
	cp -a "$src/." "$1/a/" && cp -a "$src/." "$1/b/" &&
		cp -a --one-file-system /usr/include/. "$1/include/"
}
tree_minbase() { cached_tree debian-minbase build_minbase; }
tree_usr_share() { cached_tree usr-share build_usr_share; }
tree_large() { cached_tree large build_large; }

# tree_stats TREE: entries, regular files, bytes of file data; reads every
# file once so that all servers start from a warm page cache.
tree_stats() {
	read -r N_ENTRIES N_FILES N_BYTES < <(find "$1" -xdev -printf '%y %s\n' |
		awk '{ n++ } $1 == "f" { f++; b += $2 } END { printf "%d %d %.0f\n", n, f, b }')
	find "$1" -xdev -type f -readable -print0 | xargs -0 -r cat >/dev/null 2>&1 || true
}

# mkfs_image TREE IMG: prints "SECONDS MAXRSS_KIB" (mkfs.erofs from exec to
# exit, each after a sync; the image is synced after the clock stops).
mkfs_image() {
	local t0 t1
	rm -f "$2"
	sync
	t0=${EPOCHREALTIME/./}
	/usr/bin/time -f '%M' -o "$work/mkfs.time" mkfs.erofs "$2" "$1" >/dev/null 2>"$work/mkfs.log" ||
		{ cat "$work/mkfs.log" >&2; die "mkfs.erofs failed"; }
	t1=${EPOCHREALTIME/./}
	sync	# the image's writeback must not run beside what is timed next
	echo "$(awk -v us=$((10#$t1 - 10#$t0)) 'BEGIN { printf "%.4f", us / 1e6 }') $(tail -n1 "$work/mkfs.time")"
}

# --- servers ----------------------------------------------------------------
n_srv=0
# wait_sock SOCK PID: until SOCK exists (at most 300 s).
wait_sock() {
	local i
	for ((i = 0; i < 6000; i++)); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# srv_ours TREE [ARG...]: erofs-nbd serving TREE; SRV_URI names the root
# export (the EROFS).  SRV_START_US: start until the URI line.
srv_ours() {
	local tree=$1 fifo t0 t1 uri=
	shift
	n_srv=$((n_srv + 1))
	# $BASHPID too: start-up runs happen in $(...) subshells.
	fifo=$work/out.$BASHPID.$n_srv
	SRV_SOCK=$work/ours.$BASHPID.$n_srv.sock
	SRV_LOG=$work/ours.$BASHPID.$n_srv.log	# this server's messages alone
	mkfifo "$fifo"
	t0=${EPOCHREALTIME/./}
	"$BIN" --export "$tree" -f --unix "$SRV_SOCK" "$@" >"$fifo" 2>"$SRV_LOG" &
	SRV_PID=$!
	pids+=("$SRV_PID")
	exec {SRV_FD}<"$fifo"
	rm -f "$fifo"
	IFS= read -r -t 600 -u "$SRV_FD" uri || true
	t1=${EPOCHREALTIME/./}
	[ -n "$uri" ] || { tail -n 20 "$SRV_LOG" >&2; die "erofs-nbd printed no URI"; }
	SRV_URI="nbd+unix:///root?socket=$SRV_SOCK"
	SRV_START_US=$((10#$t1 - 10#$t0))
}

# srv_peer NAME CMD...: starts CMD, in which the word SOCK stands for the
# Unix socket it must listen on, and waits for the socket.
srv_peer() {
	local name=$1
	shift
	n_srv=$((n_srv + 1))
	SRV_SOCK=$work/$name.$BASHPID.$n_srv.sock
	"${@/#SOCK/$SRV_SOCK}" 2>>"$work/$name.log" &
	SRV_PID=$!
	pids+=("$SRV_PID")
	SRV_FD=
	wait_sock "$SRV_SOCK" "$SRV_PID" || die "$* did not start"
	SRV_URI="nbd+unix:///?socket=$SRV_SOCK"
}

# srv_nbdkit PLUGIN ARG...: nbdkit -r on a Unix socket.
srv_nbdkit() { srv_peer nbdkit nbdkit -f -r -U SOCK "$@"; }

# srv_qemu IMG: qemu-nbd, read-only, up to 64 connections (so it offers
# multi-conn, like the others), writeback cache (the page cache, as ours).
srv_qemu() { srv_peer qemu qemu-nbd -r -t -e 64 -f raw -k SOCK "$1"; }

srv_stop() {
	kill -TERM "$SRV_PID" 2>/dev/null || true
	{ wait "$SRV_PID"; } 2>/dev/null || true
	[ -z "${SRV_FD:-}" ] || exec {SRV_FD}<&-
	SRV_FD=
}

# pid_cpu_ns PID: the CPU time PID has used so far, in nanoseconds.
pid_cpu_ns() { "$CPUTIME" "$1" || die "no CPU time for process $1"; }
srv_rss_kib() { awk "/^$2:/ { print \$2 }" "/proc/$1/status"; }

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# trimmed_mean: the mean of the numbers on stdin without the lowest and the
# highest (all of them when fewer than 3).
trimmed_mean() {
	sort -g | awk '{ v[NR] = $1 }
		END { lo = NR < 3 ? 1 : 2; hi = NR < 3 ? NR : NR - 1
		      for (i = lo; i <= hi; i++) s += v[i]
		      print (hi >= lo ? s / (hi - lo + 1) : 0) }'
}

# seq_pass URI PID [NBDCOPY-OPT...]: one nbdcopy --no-extents URI null:
# pass, with PID the server.  Prints "WALL-US SERVER-CPU-NS CLIENT-SECONDS".
seq_pass() {
	local uri=$1 pid=$2 t0 t1 s0 s1
	shift 2
	s0=$(pid_cpu_ns "$pid")
	t0=${EPOCHREALTIME/./}
	"$CPUTIME" -o "$work/seq.cpu" \
		nbdcopy --no-extents "$@" "$uri" null: || die "nbdcopy $* $uri failed"
	t1=${EPOCHREALTIME/./}
	s1=$(pid_cpu_ns "$pid")
	echo "$((10#$t1 - 10#$t0)) $((s1 - s0)) $(awk '{ print $1 + $2 }' "$work/seq.cpu")"
}

# fio_pass URI PID FIELD FIO-ARG...: one fio nbd run on URI with PID the
# server; prints "FIELD RUNTIME-MS SERVER-CPU-NS CLIENT-SECONDS", FIELD
# being a key of fio's JSON read results (total_ios, io_bytes).
fio_pass() {
	local uri=$1 pid=$2 field=$3 s0 s1 out=$work/fio.json
	shift 3
	s0=$(pid_cpu_ns "$pid")
	"$CPUTIME" -o "$work/fio.cpu" fio --ioengine=nbd --uri="$uri" \
		--group_reporting --output-format=json --output="$out" "$@" >/dev/null \
		2>"$work/fio.err" || { cat "$work/fio.err" >&2; die "fio $* on $uri failed"; }
	s1=$(pid_cpu_ns "$pid")
	python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print(r[sys.argv[2]], r["runtime"], end=" ")' "$out" "$field"
	echo "$((s1 - s0)) $(awk '{ print $1 + $2 }' "$work/fio.cpu")"
}

# rand_pass URI PID SECS: fio's nbd engine, 4 KiB random reads over the
# whole export, 2 jobs x iodepth 32, for SECS seconds, with PID the server.
# Prints "READS RUNTIME-MS SERVER-CPU-NS CLIENT-SECONDS".
rand_pass() {
	fio_pass "$1" "$2" total_ios --name=rand --rw=randread --bs=4k --numjobs=2 \
		--iodepth=32 --time_based --runtime="$3"
}

# steady_pass URI PID SECS: sequential reads with no pass to start or end:
# fio's nbd engine, 4 connections (nbdcopy's default) each reading its
# quarter of the export in 256 KiB requests, 16 in flight, over and over
# for SECS seconds.  What a pass of nbdcopy costs once (its start, the
# handshakes, a server's per-connection threads) is not in it.  Prints
# "BYTES RUNTIME-MS SERVER-CPU-NS CLIENT-SECONDS".
steady_pass() {
	local size per inc
	size=$(nbdinfo --size "$1")
	per=$(( size / 4 / 262144 * 262144 )) inc=$per
	((per > 0)) || per=$size inc=0	# under 1 MiB: each reads it all
	fio_pass "$1" "$2" io_bytes --name=steady --rw=read --bs=256k --numjobs=4 \
		--iodepth=16 --size="$per" --offset_increment="$inc" --time_based --runtime="$3"
}

# many_conns URI N: N concurrent fio nbd clients (one connection each),
# each reading its 1/N of the export sequentially in 256 KiB requests,
# QD 4, over and over for $MANY_SECS s after a 1 s ramp (steady state:
# with one pass each, 64 clients read 3 MiB apiece on minbase and fio's
# start-up and stagger dominated; even nbdkit null fell to 0.33x).
# Prints the aggregate MB/s.
many_conns() {
	local uri=$1 n=$2 size
	size=$(nbdinfo --size "$uri")
	local per=$(( size / n / 262144 * 262144 ))
	fio --name=seq --ioengine=nbd --uri="$uri" --rw=read --bs=256k --iodepth=4 \
		--numjobs="$n" --size="$per" --offset_increment="$per" --group_reporting \
		--time_based --runtime="$MANY_SECS" --ramp_time=1 \
		--output-format=json --output="$work/many.json" >/dev/null 2>"$work/fio.err" ||
		{ cat "$work/fio.err" >&2; die "fio ($n connections) failed"; }
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.1f" % (r["bw_bytes"] / 1e6))' \
		"$work/many.json"
}

mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1048576 }'; }
