# SPDX-License-Identifier: MIT
# bench/sec-read.sh - section "read": sequential and 4 KiB random reads of
# one tree's EROFS, from erofs-nbd (each loop and path) and from its peers
# serving the mkfs.erofs image; the transport ceiling; erofs-nbd's memory.
# Defines bench_read TREE-NAME TREE (sourced by bench/run.sh).
#
# Every server of the tree runs at once and their passes alternate: round
# i reads once from each, starting with the i-th, so that a burst of other
# work on the machine falls on all of them alike instead of on whichever
# server was being measured then (run one after the other, nbdkit's own
# sequential figure moved by 40% between runs here).

# Per server label, in start order: its URI, PID, export size, and the fd
# of its output (ours; empty for the peers).
declare -a R_LABELS
declare -A R_URI R_PID R_SIZE R_FD

# read_add LABEL: records the server srv_* just started under LABEL.
read_add() {
	R_LABELS+=("$1")
	R_URI[$1]=$SRV_URI
	R_PID[$1]=$SRV_PID
	R_FD[$1]=${SRV_FD:-}
	R_SIZE[$1]=$(nbdinfo --size "$SRV_URI")
}

read_stop_all() {
	local s
	for s in "${R_LABELS[@]}"; do
		SRV_PID=${R_PID[$s]} SRV_FD=${R_FD[$s]}
		srv_stop
	done
	R_LABELS=()
}

# alternate LABELS OUT ROUNDS FN [ARG...]: for each label of the array
# named LABELS, one warm-up "FN URI PID ARG...", then ROUNDS rounds that
# run it once per label, round i starting with the i-th, every other round
# in reverse order (so no label always follows the same one: what a
# server leaves behind lands on different servers).  A label's lines go
# to $work/OUT.LABEL.
alternate() {
	local -n alt_labels=$1
	local out=$2 rounds=$3 fn=$4 i j s n
	shift 4
	n=${#alt_labels[@]}
	for s in "${alt_labels[@]}"; do
		"$fn" "${R_URI[$s]}" "${R_PID[$s]}" "$@" >/dev/null
		: >"$work/$out.$s"
	done
	for ((i = 0; i < rounds; i++)); do
		for ((j = 0; j < n; j++)); do
			if ((i % 2)); then
				s=${alt_labels[(i + n - j) % n]}
			else
				s=${alt_labels[(i + j) % n]}
			fi
			"$fn" "${R_URI[$s]}" "${R_PID[$s]}" "$@" >>"$work/$out.$s"
		done
	done
}

# seq_rounds TREE-NAME METRIC [NBDCOPY-OPT...]: READ_RUNS alternating
# rounds of seq_pass.  Records, per server, "MB/s server-ms/GB
# client-ms/GB": MB/s of its median pass; CPU per GB as the mean of its
# passes without the cheapest and the dearest (from 3 passes up): one
# slow pass (here 1 in 4-6 took 1.5-2.5x the CPU, any server) moved a
# plain sum by a third.
seq_rounds() {
	local t=$1 metric=$2 s f gb us st cli
	shift 2
	alternate R_LABELS seq "$READ_RUNS" seq_pass "$@"
	for s in "${R_LABELS[@]}"; do
		f=$work/seq.$s gb=$(awk -v b="${R_SIZE[$s]}" 'BEGIN { print b / 1e9 }')
		us=$(cut -d' ' -f1 "$f" | median)
		st=$(awk -v gb="$gb" '{ print $2 / 1e6 / gb }' "$f" | trimmed_mean)
		cli=$(awk -v gb="$gb" '{ print $3 * 1000 / gb }' "$f" | trimmed_mean)
		result read "$t" "$s" "$metric" "$(awk -v size="${R_SIZE[$s]}" -v us="$us" \
			-v st="$st" -v cli="$cli" 'BEGIN { printf "%.1f %.0f %.0f\n", size / us, st, cli }')"
	done
}

# rand_rounds TREE-NAME: FIO_SECS alternating rounds of 1 s of rand_pass,
# every server but the ceiling.  Records, per server, "IOPS
# server-ms-per-1000-reads client-ms-per-1000-reads" over all its rounds.
rand_rounds() {
	local t=$1 s labels=()
	for s in "${R_LABELS[@]}"; do
		[ "$s" = ceiling ] || labels+=("$s")
	done
	alternate labels rand "$FIO_SECS" rand_pass 1
	for s in "${labels[@]}"; do
		result read "$t" "$s" rand "$(awk '
			{ ops += $1; ms += $2; st += $3; cli += $4 }
			END { printf "%.0f %.1f %.1f\n", ops * 1000 / ms,
				     st / 1e6 / ops * 1000, cli * 1000 / ops * 1000 }' \
			"$work/rand.$s")"
	done
}

# steady_rounds TREE-NAME: BENCH_READ_RUNS alternating rounds of
# STEADY_SECS of steady_pass, every server.  Records, per server, "MB/s
# server-ms/GB client-ms/GB" over all its rounds.
steady_rounds() {
	local t=$1 s
	alternate R_LABELS steady "$READ_RUNS" steady_pass "$STEADY_SECS"
	for s in "${R_LABELS[@]}"; do
		result read "$t" "$s" steady "$(awk '
			{ b += $1; ms += $2; st += $3; cli += $4 }
			END { printf "%.1f %.0f %.0f\n", b / ms / 1000,
				     st / 1e6 / (b / 1e9), cli * 1000 / (b / 1e9) }' \
			"$work/steady.$s")"
	done
}

bench_read() {
	local t=$1 tree=$2 img=$work/$1.img meta s
	note "read: tree $t ($tree)"
	tree_stats "$tree"
	result tree "$t" - entries "$N_ENTRIES"
	result tree "$t" - files "$N_FILES"
	result tree "$t" - bytes "$N_BYTES"
	mkfs_image "$tree" "$img" >/dev/null
	result tree "$t" - mkfs_size "$(stat -c %s "$img")"

	# erofs-nbd, the default: io_uring; zero-copy only for immutable files.
	# Its -v log says which loop it serves with: a fallback to the plain
	# loop would make this row the next one's twin, so it stops the bench.
	srv_ours "$tree" -v
	read_add erofs-nbd
	grep -q "serving with io_uring" "$SRV_LOG" ||
		{ tail -n 20 "$SRV_LOG" >&2; die "erofs-nbd's default row is not served by io_uring"; }
	# RSS at start: once the server answers (it sets up its source cache
	# after printing the URI), before any read.
	local rss
	rss=$(srv_rss_kib "$SRV_PID" VmRSS)
	result mem "$t" erofs-nbd rss_start_kib "$rss"
	meta=$(grep -o "[0-9]* metadata bytes" "$SRV_LOG" | tail -n1 | cut -d' ' -f1)
	[ -n "$meta" ] || die "erofs-nbd -v printed no metadata bytes for $t"
	result tree "$t" - meta_bytes "$meta"
	result tree "$t" - export_size "${R_SIZE[erofs-nbd]}"
	# The same with the operator's promise: every file spliced (zero-copy).
	if "$BIN" --help 2>&1 | grep -q -- --immutable-sources; then
		srv_ours "$tree" --immutable-sources
		read_add erofs-nbd-zc
	fi
	srv_ours "$tree" --no-io-uring
	read_add erofs-nbd-plain
	srv_nbdkit file "$img"
	read_add nbdkit-file
	srv_qemu "$img"
	read_add qemu-nbd
	# The ceiling: nbdkit's null plugin, the same size, no extents: a
	# server that reads nothing (zeros from memset) and only sends.
	srv_nbdkit null "size=${R_SIZE[erofs-nbd]}"
	read_add ceiling

	note "  ${R_LABELS[*]}: sequential, $READ_RUNS alternating rounds"
	seq_rounds "$t" seq
	note "  the same, one connection (-C 1)"
	seq_rounds "$t" seq1 -C 1
	note "  4 KiB random, $FIO_SECS alternating rounds of 1 s"
	rand_rounds "$t"
	note "  sequential steady state, $READ_RUNS alternating rounds of $STEADY_SECS s"
	steady_rounds "$t"

	for s in "${R_LABELS[@]}"; do
		[ "$s" = ceiling ] && continue
		rss=$(srv_rss_kib "${R_PID[$s]}" VmHWM)
		result mem "$t" "$s" rss_after_kib "$rss"
	done
	read_stop_all
	rm -f "$img"
}
