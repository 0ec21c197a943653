#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/test-podman-badstore.sh - erofs-nbd --image on broken, busy and
# changing stores: a clear error naming what was looked at (exit 1), or
# EIO for what changed while served; never a crash, never foreign bytes.
#
# Works on a copy of the cached native store (tests/podman/stores.sh):
#   - an image that is not there (the message lists the store's images)
#   - a layer directory gone; a `lower` file cut short, garbled, or
#     naming a missing l/ link
#   - a layer directory we may not read (root without CAP_DAC_*)
#   - a store being written: a writer's lock on layers.lock held past the
#     wait, and a layer flagged "incomplete" in layers.json
#   - storage.conf naming a driver we do not read, or TOML we cannot read
#   - run as the systemd unit runs it (nobody, CAP_DAC_READ_SEARCH): a
#     clear refusal, and success with the README's CAP_SYS_ADMIN drop-in
#   - while served: a layer's file rewritten (EIO for it, the rest
#     reads), a whole layer deleted (EIO), the server alive throughout
# and a store of the vfs driver (each layer a full tree), served from its
# top layer and compared with podman image mount.
set -euo pipefail
. "$(dirname "$0")/functions.sh"

requires_root
requires podman
requires python3
requires setpriv
requires nbdinfo
[ -x "$EROFS_NBD" ] || fail "no erofs-nbd binary at $EROFS_NBD (run make)"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || skip "no EROFS in the kernel"

tmpdir
# shellcheck source=tests/podman/stores.sh
. "$TESTS_DIR/podman/stores.sh"
podman_stores

S=$T/store
cp -a "$(store_dir native)" "$S"
img=$multi_img
top=$(pod native image inspect --format '{{.GraphDriver.Data.UpperDir}}' "$img")
top=$(basename "$(dirname "$top")")	# .../overlay/ID/diff
lower_ids=$({ tr ':' '\n' <"$S/overlay/$top/lower"; echo; } |
	while read -r l; do [ -n "$l" ] && readlink "$S/overlay/$l" | sed 's|^\.\./||; s|/diff$||'; done)
mid=$(sed -n 2p <<<"$lower_ids")
[ -n "$mid" ] || fail "the test image has too few layers"

# expect_error TEXT ARGS...: erofs-nbd --image ... exits 1, says TEXT,
# writes nothing.
expect_error() {
	local text=$1 rc=0
	shift
	timeout 120 "$EROFS_NBD" "$@" --image-export root --write-image "$T/out.img" \
		>/dev/null 2>"$T/err" || rc=$?
	[ "$rc" = 1 ] || fail "erofs-nbd $* exited $rc" 1 "$rc ($(cat "$T/err"))"
	grep -qF -- "$text" "$T/err" || fail "erofs-nbd $*: message" "$text" "$(cat "$T/err")"
	[ ! -e "$T/out.img" ] || fail "an image was written"
	ok "$(grep -m1 error "$T/err")"
}

check "the copy serves as the original"
"$EROFS_NBD" --image "$img" --storage-root "$S" --image-export root --write-image "$T/good.img" \
	2>/dev/null || fail "--image of the store's copy failed"
"$EROFS_NBD" --image "$img" --storage-root "$(store_dir native)" --image-export root \
	--write-image "$T/orig.img" 2>/dev/null || fail "--image of the cached store failed"
cmp "$T/good.img" "$T/orig.img" || fail "the store's copy gives other bytes"
rm "$T/orig.img"

check "an image that is not there"
expect_error "no image 'localhost/nope' (the store has" --image localhost/nope --storage-root "$S"
expect_error "$base_img" --image localhost/nope --storage-root "$S"
expect_error "no container store at '$T/nothing' (--storage-root)" --image "$img" --storage-root "$T/nothing"

check "a layer directory gone"
mv "$S/overlay/$mid/diff" "$S/overlay/$mid/diff.away"
expect_error "layer '$mid' of image '$img': '$S/overlay/$mid/diff': No such file or directory" \
	--image "$img" --storage-root "$S"
mv "$S/overlay/$mid/diff.away" "$S/overlay/$mid/diff"

check "a broken lower file"
cp "$S/overlay/$top/lower" "$T/lower.good"
cut -d: -f1 <"$T/lower.good" | tr -d '\n' >"$S/overlay/$top/lower"
expect_error "'$S/overlay/$top/lower' lists 1 lower layer, but layers.json gives layer '$top'" \
	--image "$img" --storage-root "$S"
printf 'garbage' >"$S/overlay/$top/lower"
expect_error "'$S/overlay/$top/lower': malformed" --image "$img" --storage-root "$S"
sed 's|^l/[A-Z0-9]*|l/NOSUCHLINK|' "$T/lower.good" >"$S/overlay/$top/lower"
expect_error "'$S/overlay/l/NOSUCHLINK' (entry 1 of '$top/lower'): No such file or directory" \
	--image "$img" --storage-root "$S"
rm "$S/overlay/$top/lower"
expect_error "'$S/overlay/$top/lower': No such file or directory" --image "$img" --storage-root "$S"
cp "$T/lower.good" "$S/overlay/$top/lower"

check "a layer directory we may not read (root without CAP_DAC_OVERRIDE/READ_SEARCH)"
chmod 000 "$S/overlay/$mid/diff"
nodac=(setpriv --bounding-set=-dac_override,-dac_read_search --inh-caps=-dac_override,-dac_read_search)
rc=0
"${nodac[@]}" "$EROFS_NBD" --image "$img" --storage-root "$S" --image-export root \
	--write-image "$T/out.img" 2>"$T/err" >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "reading an unreadable layer" "exit 1" "exit $rc: $(cat "$T/err")"
grep -q "'$S/overlay/$mid/diff': opening directory: Permission denied" "$T/err" ||
	fail "unreadable layer: message" "'$S/overlay/$mid/diff': opening directory: Permission denied" \
	"$(cat "$T/err")"
ok "$(grep -m1 error "$T/err")"
chmod 0555 "$S/overlay/$mid/diff"

check "a store being written: a writer's lock held, an incomplete layer"
python3 -c '
import fcntl, os, sys, time
f = open(sys.argv[1], "r+")
fcntl.lockf(f, fcntl.LOCK_EX)	# POSIX record lock, as containers-storage takes it
os.write(int(sys.argv[2]), b"L")
time.sleep(120)
' "$S/overlay-layers/layers.lock" 3 3>"$T/locked" &
locker=$!
cleanup_fn kill "$locker"
for ((i = 0; i < 100; i++)); do [ -s "$T/locked" ] && break; sleep 0.1; done
[ -s "$T/locked" ] || fail "the lock holder did not start"
start=$SECONDS
expect_error "'$S/overlay-layers/layers.lock' is locked for writing by pid $locker: the store is being written" \
	--image "$img" --storage-root "$S"
echo "gave up after $((SECONDS - start)) s"
kill "$locker"
wait "$locker" 2>/dev/null || true
cp "$S/overlay-layers/layers.json" "$T/layers.good"
python3 - "$S/overlay-layers/layers.json" "$mid" <<'EOF'
import json, sys
path, mid = sys.argv[1], sys.argv[2]
layers = json.load(open(path))
for l in layers:
    if l['id'] == mid:
        l.setdefault('flags', {})['incomplete'] = True
json.dump(layers, open(path, 'w'))
EOF
expect_error "layer '$mid' is incomplete: it is being written, or an interrupted pull left it" \
	--image "$img" --storage-root "$S"
cp "$T/layers.good" "$S/overlay-layers/layers.json"

check "storage.conf: a driver we do not read, TOML we cannot read"
printf '[storage]\ndriver = "btrfs"\n' >"$T/storage.conf"
CONTAINERS_STORAGE_CONF=$T/storage.conf CONTAINERS_GRAPHROOT=$S \
	expect_error "the storage driver 'btrfs' set in $T/storage.conf is not supported" --image "$img"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\n\noptions = {x = \n' "$S" >"$T/storage.conf"
CONTAINERS_STORAGE_CONF=$T/storage.conf \
	expect_error "'$T/storage.conf' line 5: TOML this reader does not understand" --image "$img"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\n' "$S" >"$T/storage.conf"
CONTAINERS_STORAGE_CONF=$T/storage.conf "$EROFS_NBD" --image "$img" --image-export root \
	--write-image "$T/conf.img" 2>/dev/null || fail "--image with graphroot from storage.conf failed"
cmp "$T/conf.img" "$T/good.img" || fail "graphroot from storage.conf: other bytes"
ok "graphroot from storage.conf"

check "as the systemd unit runs it: nobody with CAP_DAC_READ_SEARCH alone, then also CAP_SYS_ADMIN"
# systemd/erofs-nbd@.service's ExecStart with EROFS_NBD_EXPORT unset.
unit=(setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs
	--inh-caps=-all,+dac_read_search --ambient-caps=+dac_read_search
	--bounding-set=-all,+dac_read_search)
rc=0
"${unit[@]}" "$EROFS_NBD" -f --export= --image="$img" --storage-root="$S" --image-export root \
	--write-image /dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "reading trusted.overlay.\* xattrs needs CAP_SYS_ADMIN" "$T/err" ||
	fail "--image without CAP_SYS_ADMIN" "exit 1, needs CAP_SYS_ADMIN" "exit $rc: $(cat "$T/err")"
ok "$(grep -m1 error "$T/err")"
unit=("${unit[@]/dac_read_search/dac_read_search,+sys_admin}")
chmod 0711 "$T"
mkdir "$T/nobody"
chown nobody "$T/nobody"
"${unit[@]}" "$EROFS_NBD" -f --export= --image="$img" --storage-root="$S" --image-export root \
	--write-image "$T/nobody/unit.img" 2>"$T/err" || { cat "$T/err"; fail "--image as the unit failed"; }
cmp "$T/nobody/unit.img" "$T/good.img" || fail "--image as the unit gives other bytes"
# Serving, it keeps only CAP_DAC_READ_SEARCH: CAP_SYS_ADMIN was for the walk.
"${unit[@]}" "$EROFS_NBD" -f -v --export= --image="$img" --storage-root="$S" \
	--unix "$T/nobody/nbd.sock" >"$T/nobody/uri" 2>"$T/nobody/log" &
upid=$!
cleanup_fn kill "$upid"
for ((i = 0; i < 300; i++)); do
	grep -q "capabilities left" "$T/nobody/log" 2>/dev/null && break
	kill -0 "$upid" 2>/dev/null || { cat "$T/nobody/log"; fail "the server as the unit exited"; }
	sleep 0.1
done
capeff=$(awk '/^CapEff:/ { print $2 }' "/proc/$upid/status")
[ "$capeff" = 0000000000000004 ] || fail "capabilities of the serving server" \
	"CapEff 0000000000000004 (cap_dac_read_search)" "CapEff $capeff"
[ "$(nbdinfo --size "nbd+unix:///root?socket=$T/nobody/nbd.sock")" = "$(stat -c %s "$T/good.img")" ] ||
	fail "the server as the unit serves another size"
kill -TERM "$upid"
wait "$upid" || fail "the server as the unit did not exit 0"
ok "with the README's drop-in (CAP_SYS_ADMIN, capset) the unit serves the image, then keeps CAP_DAC_READ_SEARCH only"

check "while served: a layer's file rewritten, then a whole layer removed"
if [ -c /dev/fuse ] && command -v nbdfuse >/dev/null; then
	start_server "" --image "$img" --storage-root "$S" --no-inline-data
	nbdfuse_start "$(export_uri root)" "$T/fuse"
	mount_image "$T/fuse/nbd" "$T/live"
	# Not read through the mount before: the guest's page cache would
	# keep serving the bytes it already has.
	base=$S/overlay/$(sed -n '$p' <<<"$lower_ids")/diff
	[ -f "$base/etc/big-line" ] || fail "etc/big-line is not in the base layer"
	printf 'y%.0s' $(seq 1 5000) >"$base/etc/big-line"	# same size, other bytes
	if cat "$T/live/etc/big-line" >"$T/read" 2>"$T/err"; then
		fail "a rewritten layer file still reads" "EIO" "$(head -c 20 "$T/read")..."
	fi
	grep -q "Input/output error" "$T/err" || fail "rewritten file" "EIO" "$(cat "$T/err")"
	[ "$(cat "$T/live/etc/issue")" = replaced ] || fail "an unchanged file no longer reads"
	server_alive || fail "the server died"
	ok "EIO for the rewritten file, the rest reads"
	# Renamed, a layer's files still are the files the walk saw (their
	# handles still open them, rightly); deleted, they are not.
	files=$(cd "$S/overlay/$mid/diff" && find . -type f -size +0 | head -n 5)
	rm -rf "$S/overlay/$mid"
	eio=0
	for f in $files; do
		cat "$T/live/$f" >/dev/null 2>&1 || eio=$((eio + 1))
	done
	[ -z "$files" ] || [ "$eio" -gt 0 ] || fail "files of a removed layer still read"
	server_alive || fail "the server died"
	grep -q "big-line" "$SRV_LOG" || fail "the server log does not name the changed file"
	ok "a removed layer: $eio of $(wc -w <<<"$files") of its files read as EIO, the server lives"
	umount "$T/live"
	fusermount3 -u "$T/fuse"
	stop_server || fail "the server did not exit 0"
else
	echo "NOTE: no nbdfuse: changes while served not tested here (see test-overlay)"
fi

check "a vfs store: each layer a full tree"
V=$T/vfs
vpod() { podman --root "$V/root" --runroot "$V/run" --storage-driver vfs "$@"; }
"$TESTS_DIR/podman/mkbase.sh" "$T/base.tar"
vpod import "$T/base.tar" "$base_img" >/dev/null || fail "podman import into a vfs store failed"
"$EROFS_NBD" --image erofs-test-base --storage-root "$V/root" --image-export root \
	--write-image "$T/vfs.img" 2>"$T/vfs.err" || { cat "$T/vfs.err"; fail "--image of a vfs store failed"; }
m=$(vpod image mount "$base_img")
cleanup_fn podman --root "$V/root" --runroot "$V/run" --storage-driver vfs image unmount -a
mount_image "$T/vfs.img" "$T/vfs-mnt"
timeout 300 python3 "$TESTS_DIR/treecmp.py" --overlay "$m" "$T/vfs-mnt" ||
	fail "the vfs image differs from podman image mount"
ok "vfs: 0 differences with podman image mount"

echo "PASS: $TEST_NAME"
