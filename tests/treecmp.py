#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""treecmp.py - compares two directory trees completely.

    treecmp.py [--no-content] [--no-xattrs] [--no-nlink] [--max-diffs N]
               [--image] [--overlay] EXPECTED ACTUAL

EXPECTED is the source tree, ACTUAL the tree read back (an EROFS mount),
or with --image an EROFS image file read by erofs_reader.py (which also
checks the image's structure and fails on the first violation).
Every entry is compared with lstat (symlinks are never followed): the set
of names in every directory, the file type, the whole st_mode, uid, gid,
mtime (seconds and nanoseconds), link count, rdev of devices, the size of
regular files and symlinks, symlink targets, every xattr of every namespace
(names and values, binary-safe), hard-link groups (two names share an inode
in ACTUAL exactly when they do in EXPECTED) and the bytes of regular files.

With --overlay, EXPECTED is a kernel overlayfs mount of a layer stack
and ACTUAL our merge of the same layers (overlay-layers.md §1.6, §1.12):
names are compared by lookup (a name the kernel lists but cannot lstat,
a whiteout left in a directory of one layer, does not exist), a
directory's link count is not compared (the kernel reports 1 for merged
directories), and a non-directory's link count in ACTUAL must be the
number of names of its hard-link group that stay visible (the kernel
reports the count of the layer it comes from).

Each difference is printed as "path: what: expected X, actual Y".  Exit
status: 0 when the trees match, 1 when they differ, 2 on a usage error.
"""

import argparse
import os
import stat
import sys

CHUNK = 4 << 20
LONG = 3000     # bytes: a longer path is reached through a directory fd


def _open_dir(path):
    """An O_PATH fd of directory path, opened a piece at a time."""
    fd = None
    while path:
        if len(path) < LONG:
            head, path = path, b''
        else:
            cut = path.rfind(b'/', 1, LONG)
            head, path = path[:cut], path[cut + 1:]
        nfd = os.open(head, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW,
                      dir_fd=fd)
        if fd is not None:
            os.close(fd)
        fd = nfd
    return fd


_near = [None, None]    # the last parent reach() opened, and its fd


def reach(path):
    """path, or for one longer than the kernel takes (PATH_MAX) the same
    entry as /proc/self/fd/N/NAME with N its parent directory's fd, valid
    until the next call."""
    if len(path) < LONG:
        return path
    cut = path.rfind(b'/')
    parent, name = path[:cut], path[cut + 1:]
    if _near[0] != parent:
        if _near[1] is not None:
            os.close(_near[1])
        _near[0], _near[1] = None, None
        _near[1] = _open_dir(parent)
        _near[0] = parent
    return b'/proc/self/fd/%d/%s' % (_near[1], name)


def show(path):
    """A printable form of a bytes path relative to the root."""
    if path == b'':
        return '/'
    s = repr(path.decode('utf-8', 'backslashreplace'))[1:-1]
    if len(s) > 120:
        s = '%s...%s (%d bytes)' % (s[:60], s[-40:], len(path))
    return s


class FsTree:
    """A directory tree on a mounted file system."""

    def __init__(self, root, by_lookup=False):
        self.root = os.fsencode(root)
        self.entries = walk(self.root, by_lookup)

    def path(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def readlink(self, rel):
        return os.readlink(reach(self.path(rel)))

    def xattrs(self, rel):
        return xattrs(reach(self.path(rel)))

    def open(self, rel):
        return open(reach(self.path(rel)), 'rb', buffering=0)


class ImageTree:
    """The tree inside an EROFS image, through erofs_reader."""

    def __init__(self, path):
        import erofs_reader
        self.mod = erofs_reader
        self.img = erofs_reader.ErofsImage(path)
        self.entries = self.img.walk()

    def readlink(self, rel):
        ino = self.entries[rel]
        return self.img.read(ino, 0, ino.st_size)

    def xattrs(self, rel):
        return {os.fsdecode(k): v
                for k, v in self.img.xattrs(self.entries[rel]).items()}

    def open(self, rel):
        return self.mod.ErofsFile(self.img, self.entries[rel])


def walk(root, by_lookup=False):
    """Returns {relpath: os.stat_result} for every entry under root.  With
    by_lookup, names that readdir lists but lstat cannot find are left
    out (an overlay mount's stray whiteouts)."""
    entries = {b'': os.lstat(root)}
    stack = [b'']
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        with os.scandir(reach(full)) as it:
            names = [de.name for de in it]
        for name in names:
            r = os.path.join(rel, name) if rel else name
            try:
                st = os.lstat(reach(os.path.join(full, name)))
            except FileNotFoundError:
                if by_lookup:
                    continue
                raise
            entries[r] = st
            if stat.S_ISDIR(st.st_mode):
                stack.append(r)
    return entries


def xattrs(path):
    """Returns {name: value} of every xattr of path (not following links)."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return {'<listxattr error>': str(e).encode()}
    for n in names:
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = ('<getxattr error: %s>' % e).encode()
    return out


def fmt_value(v):
    try:
        s = v.decode('ascii')
        if s.isprintable():
            return repr(s)
    except UnicodeDecodeError:
        pass
    return '0x' + v.hex() if len(v) <= 64 else '0x%s... (%d bytes)' % (v[:32].hex(), len(v))


def read_full(f, buf):
    """Fills buf from f as far as the file goes; returns the byte count."""
    mv = memoryview(buf)
    n = 0
    while n < len(buf):
        got = f.readinto(mv[n:])
        if not got:
            break
        n += got
    return n


def same_content(ta, tb, rel, size):
    """Compares two regular files chunk by chunk.  Returns None or a reason."""
    try:
        fa = ta.open(rel)
    except OSError as e:
        return 'cannot open expected file: %s' % e
    try:
        fb = tb.open(rel)
    except OSError as e:
        fa.close()
        return 'cannot open actual file: %s' % e
    # Preallocated buffers: a fresh 4 MiB object per read costs more than
    # the read itself (page faults), which matters for the 5 GiB file.
    ba = bytearray(min(CHUNK, max(size, 1)))
    bb = bytearray(len(ba))
    with fa, fb:
        off = 0
        while True:
            try:
                na = read_full(fa, ba)
            except OSError as e:
                return 'reading expected at %d: %s' % (off, e)
            try:
                nb = read_full(fb, bb)
            except OSError as e:
                return 'reading actual at %d: %s' % (off, e)
            if na == len(ba) and nb == len(bb):
                same = ba == bb
            else:
                same = na == nb and ba[:na] == bb[:nb]
            if not same:
                n = min(na, nb)
                i = next((i for i in range(n) if ba[i] != bb[i]), n)
                return 'bytes differ at offset %d (expected %s, actual %s)' % (
                    off + i, ba[i:min(i + 8, na)].hex() or 'EOF',
                    bb[i:min(i + 8, nb)].hex() or 'EOF')
            off += na
            if na < len(ba):
                break
        if off != size:
            return 'read %d bytes, size says %d' % (off, size)
    return None


def link_groups(entries):
    """Maps each non-directory path to (first path of its hard-link group,
    group size).  Two trees have the same groups exactly when every path
    maps to the same first path in both (linear, even for 70000 links)."""
    by_ino = {}
    for p, st in entries.items():
        if not stat.S_ISDIR(st.st_mode):
            by_ino.setdefault((st.st_dev, st.st_ino), []).append(p)
    out = {}
    for paths in by_ino.values():
        first = min(paths)
        for p in paths:
            out[p] = (first, len(paths))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--no-content', action='store_true', help='skip file contents')
    ap.add_argument('--no-xattrs', action='store_true', help='skip xattrs')
    ap.add_argument('--no-nlink', action='store_true', help='skip link counts')
    ap.add_argument('--max-content-size', type=int, default=None, metavar='BYTES',
                    help='compare the bytes of files up to this size only')
    ap.add_argument('--max-diffs', type=int, default=50,
                    help='stop printing after this many differences')
    ap.add_argument('--image', action='store_true',
                    help='ACTUAL is an EROFS image file, read with erofs_reader.py')
    ap.add_argument('--overlay', action='store_true',
                    help='EXPECTED is a kernel overlay mount: compare by lookup, '
                    'link counts as a merge must recompute them')
    ap.add_argument('expected')
    ap.add_argument('actual')
    args = ap.parse_args()

    A = FsTree(args.expected, by_lookup=args.overlay)
    if args.image:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import erofs_reader
        try:
            B = ImageTree(args.actual)
        except erofs_reader.ErofsError as e:
            print('%s: structural error: %s' % (args.actual, e))
            return 1
    else:
        B = FsTree(args.actual)
    ta, tb = A.entries, B.entries
    diffs = 0

    def diff(path, what, exp, act):
        nonlocal diffs
        diffs += 1
        if diffs <= args.max_diffs:
            print('%s: %s: expected %s, actual %s' % (show(path), what, exp, act))

    def under_reported(p, reported):
        """Whether an ancestor of p was reported missing or extra already."""
        d = os.path.dirname(p)
        while d:
            if d in reported:
                return True
            d = os.path.dirname(d)
        return False

    missing = set(ta) - set(tb)
    for p in sorted(missing):
        if not under_reported(p, missing):
            diff(p, 'entry', 'present', 'missing')
    extra = set(tb) - set(ta)
    for p in sorted(extra):
        if not under_reported(p, extra):
            diff(p, 'entry', 'absent', 'present (extra)')

    skipped = 0
    ga = link_groups(ta)
    gb = link_groups(tb)
    nfiles = nbytes = 0
    for p in sorted(set(ta) & set(tb)):
        sa, sb = ta[p], tb[p]
        if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
            diff(p, 'type', stat.filemode(sa.st_mode)[0], stat.filemode(sb.st_mode)[0])
            continue
        if sa.st_mode != sb.st_mode:
            diff(p, 'mode', '%07o' % sa.st_mode, '%07o' % sb.st_mode)
        if sa.st_uid != sb.st_uid:
            diff(p, 'uid', sa.st_uid, sb.st_uid)
        if sa.st_gid != sb.st_gid:
            diff(p, 'gid', sa.st_gid, sb.st_gid)
        if sa.st_mtime_ns != sb.st_mtime_ns:
            diff(p, 'mtime', '%d.%09d' % divmod(sa.st_mtime_ns, 10**9),
                 '%d.%09d' % divmod(sb.st_mtime_ns, 10**9))
        if args.overlay:
            # Merged directories say 1; a file says its layer's count.
            if not args.no_nlink and not stat.S_ISDIR(sa.st_mode) and \
                    ga[p][1] != sb.st_nlink:
                diff(p, 'nlink (visible names)', ga[p][1], sb.st_nlink)
        elif not args.no_nlink and sa.st_nlink != sb.st_nlink:
            diff(p, 'nlink', sa.st_nlink, sb.st_nlink)
        if stat.S_ISCHR(sa.st_mode) or stat.S_ISBLK(sa.st_mode):
            ra = (os.major(sa.st_rdev), os.minor(sa.st_rdev))
            rb = sb.st_rdev if isinstance(sb.st_rdev, tuple) else (
                os.major(sb.st_rdev), os.minor(sb.st_rdev))
            if ra != rb:
                diff(p, 'rdev', '%d:%d' % ra, '%d:%d' % rb)
        if stat.S_ISREG(sa.st_mode) or stat.S_ISLNK(sa.st_mode):
            if sa.st_size != sb.st_size:
                diff(p, 'size', sa.st_size, sb.st_size)
        if stat.S_ISLNK(sa.st_mode):
            la, lb = A.readlink(p), B.readlink(p)
            if la != lb:
                diff(p, 'symlink target', show(la)[:100] + ' (%d bytes)' % len(la),
                     show(lb)[:100] + ' (%d bytes)' % len(lb))
        if not stat.S_ISDIR(sa.st_mode) and ga[p] != gb.get(p):
            ra, rb = ga[p], gb.get(p, (p, 1))
            diff(p, 'hard-link group', 'linked with %s (%d names)' % (show(ra[0]), ra[1]),
                 'linked with %s (%d names)' % (show(rb[0]), rb[1]))
        if not args.no_xattrs:
            xa, xb = A.xattrs(p), B.xattrs(p)
            for n in sorted(set(xa) | set(xb)):
                if n not in xb:
                    diff(p, 'xattr %s' % n, fmt_value(xa[n]), 'missing')
                elif n not in xa:
                    diff(p, 'xattr %s' % n, 'absent', fmt_value(xb[n]))
                elif xa[n] != xb[n]:
                    diff(p, 'xattr %s' % n, fmt_value(xa[n]), fmt_value(xb[n]))
        if (not args.no_content and stat.S_ISREG(sa.st_mode) and
                sa.st_size == sb.st_size and ga[p] == gb.get(p)):
            # Hard links: the bytes of a group are compared once.
            if ga[p][1] > 1 and ga[p][0] != p and ga[p][0] in tb:
                continue
            if args.max_content_size is not None and sa.st_size > args.max_content_size:
                skipped += 1
                continue
            why = same_content(A, B, p, sa.st_size)
            if why:
                diff(p, 'content', 'same bytes', why)
            nfiles += 1
            nbytes += sa.st_size

    if diffs > args.max_diffs:
        print('... %d more differences not shown' % (diffs - args.max_diffs))
    print('treecmp: %d entries expected, %d found, %d regular files (%d bytes) '
          'compared%s: %d difference%s' % (
              len(ta), len(tb), nfiles, nbytes,
              ' (%d larger ones not)' % skipped if skipped else '',
              diffs, '' if diffs == 1 else 's'))
    return 1 if diffs else 0


if __name__ == '__main__':
    sys.exit(main())
