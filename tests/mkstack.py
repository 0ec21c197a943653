#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mkstack.py - builds an overlay layer stack that exercises every merge
rule, for differential tests against the kernel's overlayfs
(shared/docs/overlay-layers.md §1).

    mkstack.py [--ns trusted|user] [--layers N] [--aufs | --portable] DIR

Creates DIR/00 (the top layer) ... DIR/NN (the bottom) and prints the
lowerdir= value, top first, relative to DIR ("00:01:...").  Needs root
(devices, chown, trusted.* xattrs).  With --ns user the overlay marks are
user.overlay.* (mount with -o userxattr), and trusted.overlay.* marks are
planted too, which such a mount must ignore.  With --aufs the stack is in
the form of a store with a mount program: ".wh.NAME" and ".wh..wh..opq"
files instead of 0/0 devices and opaque xattrs.  No kernel mounts that: the
test compares it with the same stack built with --portable, the overlay
form of exactly what --aufs can express (no xattr whiteouts, no opaque
values other than "y", no hard-linked or stray whiteouts).

What the layers hold (top = layer 0; "Lk" is layer k):
  whiteouts     0/0 devices over files, directories, symlinks, in the
                bottom layer too, two of them hard-linked (as the kernel
                makes them in an upper); xattr whiteouts (empty files with
                overlay.whiteout) in directories marked opaque "x" and
                not, in the bottom layer too
  opaque        "y" hides lower entries, also in a nested directory; a
                0/0 device inside an opaque directory (listed by the
                kernel, absent by lookup); values "yes", "", "n" and "x"
                that are not opaque; opaque on the top layer's root and
                a middle one's (ignored)
  type changes  file over dir, dir over file over dir (the deep dir must
                not merge), symlink over dir, dir over symlink, FIFO,
                socket and devices over files, whiteout then re-created
                as a directory and as a file
  metadata      a directory's mode, owner, mtime and xattrs differ per
                layer (the top one's count); the roots too; nanosecond
                mtimes; sparse and multi-block files; long names, names
                with bytes >= 0x80, spaces, a leading dash; long symlinks
  xattrs        user.*, trusted.* and security.* values; the overlay's
                private ones (origin, impure, nlink) that must vanish; an
                escaped overlay.overlay.X that shows as overlay.X; the
                other namespace's overlay.* that stays
  hard links    a pair split by an upper layer (one name replaced, one
                whited out), a group of three in one layer, a group whose
                every name stays
  many layers   a directory that every layer changes (add, delete,
                re-create), so that N >= 60 layers all take part
"""

import argparse
import os
import random
import stat
import sys

T0 = 1600000000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--ns', choices=('trusted', 'user'), default='trusted')
    ap.add_argument('--layers', type=int, default=64)
    ap.add_argument('--aufs', action='store_true')
    ap.add_argument('--portable', action='store_true')
    ap.add_argument('dir')
    a = ap.parse_args()
    if a.layers < 8:
        ap.error('--layers must be at least 8')
    Stack(a.dir, a.layers, a.ns, a.aufs, not (a.aufs or a.portable)).build()
    print(':'.join('%02d' % i for i in range(a.layers)))


class Stack:
    def __init__(self, root, n, ns, aufs, rich):
        self.root, self.n, self.aufs, self.rich = root, n, aufs, rich
        self.ovl = ns + '.overlay.'
        self.other = ('user' if ns == 'trusted' else 'trusted') + '.overlay.'
        os.makedirs(root, exist_ok=True)
        for i in range(n):
            os.makedirs(self.p(i, ''), exist_ok=True)

    def p(self, layer, rel):
        return os.path.join(self.root, '%02d' % layer, rel)

    # --- primitives -----------------------------------------------------------
    def d(self, layer, rel, mode=0o755, uid=0, gid=0, t=T0, xattrs=()):
        path = self.p(layer, rel)
        self.parents(layer, rel)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        os.chown(path, uid, gid, follow_symlinks=False)
        for k, v in xattrs:
            os.setxattr(path, k, v, follow_symlinks=False)
        self.times.append((path, t))

    def f(self, layer, rel, data=b'', mode=0o644, uid=0, gid=0, t=T0, xattrs=(),
          sparse=0):
        self.parents(layer, rel)
        path = self.p(layer, rel)
        with open(path, 'wb') as fh:
            if sparse:
                fh.truncate(sparse)
                fh.seek(sparse // 2)
            fh.write(data)
        os.chmod(path, mode)
        os.chown(path, uid, gid)
        for k, v in xattrs:
            os.setxattr(path, k, v)
        self.times.append((path, t))

    def l(self, layer, rel, target, t=T0):
        self.parents(layer, rel)
        os.symlink(target, self.p(layer, rel))
        self.times.append((self.p(layer, rel), t))

    def node(self, layer, rel, kind, dev=0, mode=0o644):
        self.parents(layer, rel)
        os.mknod(self.p(layer, rel), kind | mode, dev)
        os.chmod(self.p(layer, rel), mode)
        self.times.append((self.p(layer, rel), T0))

    def wh(self, layer, rel):
        """A whiteout for rel in layer."""
        if self.aufs:
            d, b = os.path.split(rel)
            self.f(layer, os.path.join(d, '.wh.' + b), mode=0)
        else:
            self.node(layer, rel, stat.S_IFCHR, os.makedev(0, 0), mode=0)

    def xwh(self, layer, rel):
        """An xattr whiteout: an empty file with overlay.whiteout."""
        self.f(layer, rel, xattrs=[(self.ovl + 'whiteout', b'')])

    def opaque(self, layer, rel, value=b'y'):
        if self.aufs and value == b'y':
            self.f(layer, os.path.join(rel, '.wh..wh..opq'), mode=0)
        else:
            os.setxattr(self.p(layer, rel), self.ovl + 'opaque', value)

    def parents(self, layer, rel):
        d = os.path.dirname(rel)
        if d and not os.path.isdir(self.p(layer, d)):
            self.d(layer, d)

    # --- the stack ------------------------------------------------------------------
    def build(self):
        self.times = []
        n, bot = self.n, self.n - 1
        ovl, other = self.ovl, self.other

        # Roots: the top one's metadata counts; opaque on a root is ignored,
        # the top root's too (the kernel never looks a root up); in the
        # AUFS form a .wh..wh..opq there, which is not listed either.
        for i in range(n):
            self.d(i, '', mode=0o755 if i else 0o751, t=T0 + i,
                   xattrs=[('user.root', b'%d' % i)])
        self.opaque(0, '')
        if self.rich:
            self.opaque(n // 2, '')
        self.f(bot, 'bottom-only', b'from the bottom\n')
        self.f(n // 2, 'middle-only', b'from the middle\n')

        # Whiteouts of every kind of entry, and in the bottom layer.
        self.f(bot, 'w/file', b'hidden\n')
        self.d(bot, 'w/dir')
        self.f(bot, 'w/dir/inner', b'hidden\n')
        self.l(bot, 'w/link', 'file')
        self.f(bot, 'w/kept', b'kept\n')
        for name in ('file', 'dir', 'link'):
            self.wh(2, 'w/' + name)
        self.wh(bot, 'w/ghost-at-bottom')
        if self.rich:
            # Kernel-made whiteouts share one inode.
            self.wh(1, 'w/shared1')
            os.link(self.p(1, 'w/shared1'), self.p(1, 'w/shared2'))
            self.f(bot, 'w/shared1', b'x')
            self.f(bot, 'w/shared2', b'y')
            # Whiteout, then the name comes back higher up.
            self.f(bot, 'w/again-dir/old', b'old\n')
            self.wh(3, 'w/again-dir')
            self.d(1, 'w/again-dir', mode=0o700)
            self.f(1, 'w/again-dir/new', b'new\n')
            self.d(bot, 'w/again-file')
            self.wh(3, 'w/again-file')
            self.f(0, 'w/again-file', b'a file now\n')
            # xattr whiteouts: with and without opaque "x" on the directory,
            # in the bottom layer, and not a whiteout when not empty.
            self.f(bot, 'xw/gone', b'gone\n')
            self.f(bot, 'xw/stays', b'stays\n')
            self.d(3, 'xw')
            self.opaque(3, 'xw', b'x')
            self.xwh(3, 'xw/gone')
            self.f(3, 'xw/notempty', b'data', xattrs=[(ovl + 'whiteout', b'')])
            self.f(bot, 'xw2/gone', b'gone\n')
            self.xwh(4, 'xw2/gone')
            self.xwh(bot, 'xw2/bottom-xwh')
            self.f(2, 'xw2/other-ns', xattrs=[(other + 'whiteout', b'')])

        # Opaque directories, nested, and values that are not opaque.
        self.f(bot, 'o/a', b'a\n')
        self.f(bot, 'o/sub/deep', b'deep\n')
        self.d(4, 'o')
        self.opaque(4, 'o')
        self.f(4, 'o/b', b'b\n')
        self.f(bot, 'o2/sub/lower', b'lower\n')
        self.f(3, 'o2/sub/mid', b'mid\n')
        self.d(2, 'o2/sub')
        self.opaque(2, 'o2/sub')
        self.f(2, 'o2/sub/top', b'top\n')
        self.f(1, 'o2/sib', b'sibling\n')
        if self.rich:
            self.wh(2, 'o2/sub/stray')	# listed by readdir, gone by lookup
            for k, v in ((5, b'yes'), (6, b''), (7, b'n')):
                self.f(bot, 'nop%d/lower' % k, b'lower\n')
                self.d(k, 'nop%d' % k)
                os.setxattr(self.p(k, 'nop%d' % k), ovl + 'opaque', v)
                self.f(k, 'nop%d/upper' % k, b'upper\n')
            self.f(bot, 'xop/lower', b'lower\n')
            self.d(3, 'xop')
            self.opaque(3, 'xop', b'x')
            self.f(bot, 'oth/lower', b'lower\n')
            self.d(3, 'oth')
            os.setxattr(self.p(3, 'oth'), other + 'opaque', b'y')

        # Type changes.
        self.d(bot, 't/file-over-dir')
        self.f(bot, 't/file-over-dir/x', b'x\n')
        self.f(3, 't/file-over-dir', b'a file\n')
        self.d(bot, 't/dir-over-file-over-dir')
        self.f(bot, 't/dir-over-file-over-dir/deep', b'must not show\n')
        self.f(4, 't/dir-over-file-over-dir', b'file\n')
        self.d(2, 't/dir-over-file-over-dir')
        self.f(2, 't/dir-over-file-over-dir/top', b'top\n')
        self.d(bot, 't/link-over-dir')
        self.f(bot, 't/link-over-dir/x', b'x\n')
        self.l(2, 't/link-over-dir', '../o')
        self.l(bot, 't/dir-over-link', 'nowhere')
        self.d(2, 't/dir-over-link')
        self.f(2, 't/dir-over-link/x', b'x\n')
        self.f(bot, 't/fifo-over-file', b'file\n')
        self.node(2, 't/fifo-over-file', stat.S_IFIFO)
        self.f(bot, 't/sock-over-file', b'file\n')
        self.node(2, 't/sock-over-file', stat.S_IFSOCK)
        self.f(bot, 't/chr-over-file', b'file\n')
        self.node(2, 't/chr-over-file', stat.S_IFCHR, os.makedev(1, 3), 0o666)
        self.node(2, 't/blk', stat.S_IFBLK, os.makedev(7, 200), 0o660)
        self.node(3, 't/chr-0-5', stat.S_IFCHR, os.makedev(0, 5), 0o600)

        # Metadata from the top-most directory; xattrs of all kinds.
        for i, k in enumerate((bot, 5, 1)):
            self.d(k, 'm', mode=(0o700, 0o750, 0o755)[i], uid=i, gid=10 + i,
                   t=T0 + 1000 * i, xattrs=[('user.layer', b'%d' % k)])
            self.f(k, 'm/f%d' % k, b'%d\n' % k)
        self.f(1, 'm/attrs', b'attrs\n', mode=0o4755, uid=123, gid=456, xattrs=[
            ('user.plain', b'value'), ('trusted.plain', b'\x00\x01binary'),
            ('security.test', b'sec'), (ovl + 'origin', b''),
            (ovl + 'nlink', b'U+0'), (ovl + 'overlay.escaped', b'esc'),
            (other + 'opaque', b'y')])
        os.setxattr(self.p(1, 'm'), ovl + 'impure', b'y')
        self.f(0, 'm/ns', b'x', t=T0 + 0.123456789)
        self.f(3, 'm/sparse', b'middle', sparse=5 << 20)
        self.f(2, 'm/big', random.Random(7).randbytes(300000))
        self.f(4, 'names/' + 'n' * 255, b'long\n')
        self.f(4, 'names/caf\u00e9 s p a c e', b'x')
        self.f(4, 'names/-dash', b'-\n')
        self.l(4, 'names/long-link', 'x' * 3000)

        # Hard links.
        self.f(bot, 'h/pair1', b'pair\n')
        os.link(self.p(bot, 'h/pair1'), self.p(bot, 'h/pair2'))
        os.link(self.p(bot, 'h/pair1'), self.p(bot, 'h/pair3'))
        self.f(2, 'h/pair1', b'replaced\n')
        self.wh(3, 'h/pair3')
        self.f(1, 'h/tri1', b'three\n')
        os.link(self.p(1, 'h/tri1'), self.p(1, 'h/tri2'))
        os.link(self.p(1, 'h/tri1'), self.p(1, 'h/tri3'))
        self.f(4, 'h/keep1', b'kept\n')
        os.link(self.p(4, 'h/keep1'), self.p(4, 'h/keep2'))

        # Every layer changes one directory.
        for i in range(n):
            self.f(i, 'many/L%02d' % i, b'%d\n' % i, t=T0 + i)
            if i + 1 < n:
                self.wh(i, 'many/gone%02d' % (i + 1))
            self.f(i, 'many/gone%02d' % i, b'%d\n' % i)
            if i % 3 == 0:
                self.d(i, 'many/d%02d' % (i // 3), mode=0o755 - i)
                self.f(i, 'many/d%02d/from%02d' % (i // 3, i), b'x')
            if i % 5 == 0 and i + 2 < n:
                self.d(i, 'many/churn')
                self.f(i, 'many/churn/at%02d' % i, b'x')
                if i % 20 == 10:
                    self.opaque(i, 'many/churn')
                elif i % 10 == 5:
                    self.wh(i, 'many/churn/at%02d' % (i + 5))

        for path, t in reversed(self.times):
            sec = int(t)
            ns = int(round((t - sec) * 1e9))
            os.utime(path, ns=(sec * 10**9 + ns, sec * 10**9 + ns), follow_symlinks=False)


if __name__ == '__main__':
    sys.exit(main())
