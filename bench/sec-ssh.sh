# SPDX-License-Identifier: MIT
# bench/sec-ssh.sh - section "ssh": a real OS tree (tests/os/mktree.sh
# amd64) from starting erofs-nbd-launch to the first line a COMMAND prints
# over SSH, against mkfs.erofs of the tree plus the same boot from a
# prebuilt disk served by nbdkit.  bench/boot-ssh.sh does the work (it
# also runs on its own); this records its lines for the report.  Defines
# bench_ssh.  BENCH_SSH_RUNS=0 leaves the section out.

bench_ssh() {
	local out=$work/boot-ssh.out line
	if ! [ "${BENCH_SSH_RUNS:-3}" -gt 0 ] 2>/dev/null; then
		result ssh os - skipped "BENCH_SSH_RUNS=${BENCH_SSH_RUNS:-}"
	elif [ "$(id -u)" != 0 ]; then
		result ssh os - skipped "needs root (the OS tree is built with debootstrap)"
	elif ! "$here/boot-ssh.sh" "$BIN" >"$out"; then
		result ssh os - skipped "bench/boot-ssh.sh failed"
	else
		while IFS= read -r line; do
			result ssh os - line "$line"
		done <"$out"
	fi
}
