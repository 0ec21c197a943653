# SPDX-License-Identifier: MIT
# bench/sec-image.sh - section "image": start-up on a 7-layer podman image
# (--image) against its merged directory (`podman image mount`) and
# against mkfs.erofs of it, built from the minbase tree.  bench/image.sh
# does the work (it also runs on its own); this records its lines for the
# report.  Defines bench_image.

bench_image() {
	local out=$work/image.out line
	if [ "$(id -u)" != 0 ] || ! command -v podman >/dev/null; then
		result image minbase - skipped "needs root and podman"
	elif ! "$here/image.sh" "$BIN" "${TREE[minbase]:-$(tree_minbase)}" >"$out"; then
		result image minbase - skipped "bench/image.sh failed"
	else
		while IFS= read -r line; do
			result image minbase - line "$line"
		done <"$out"
	fi
}
