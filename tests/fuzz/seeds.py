#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""seeds.py - writes the seed corpora of the harnesses in tests/fuzz/.

The harnesses decode their inputs as each fuzz-NAME.c describes; these
seeds are inputs that reach deep at once (a whole NBD session, a tree with
a kernel in it, ...), so that fuzzing starts from there instead of from
empty bytes.  Run it after changing an input format:

    tests/fuzz/seeds.py            # rewrites tests/fuzz/corpus/*/seed-*

Seeds are named seed-*; other files in the corpus directories are inputs
that found crashes (regression tests) and are left alone.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(harness, name, data):
    d = os.path.join(HERE, 'corpus', harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'seed-' + name), 'wb') as f:
        f.write(bytes(data))


# --- fuzz-nbd --------------------------------------------------------------

def nbd_config(exports=1, pad=True, fail_every=0, defer=0):
    return bytes([exports | (4 if pad else 0) | fail_every << 3 | defer << 6])


def nbd_map(regions):
    """regions: (type, cls, lenbytes, [file extras]); type 0 ZERO 1 MEM 2 FILE."""
    out = bytes([len(regions) - 1])
    for r in regions:
        t, cls, lb = r[0], r[1], r[2]
        out += bytes([t | cls << 2]) + lb
        if t == 2:
            out += bytes(r[3] if len(r) > 3 else [0, 7])
    return out


# A map: 4 KiB of metadata, 192 KiB of holes, 20 KiB of file, zeros.
MAP = nbd_map([(1, 1, b'\x07'), (0, 2, struct.pack('<H', 12288)),
               (2, 2, struct.pack('<H', 1280)), (0, 0, b'\x10')])


def flags(f):
    return bytes([1 | (f & 3) << 3])


def opt(code, data=b'', mode=0):
    return bytes([2 | code << 3, mode, len(data)]) + data


def opt_raw(code, data, length):
    """An option of any code with a length field of any value."""
    return (bytes([2 | 31 << 3]) + struct.pack('<I', code) + bytes([0, len(data)]) + data +
            struct.pack('<I', length))


def bulk(n, byte=0):
    return bytes([0 | (1 | byte << 1) << 3]) + struct.pack('<H', n // 16 - 1)


def go(name_choice, reqs=(), which=0, mode=0, raw=b''):
    """GO (which 0), INFO (1) or EXPORT_NAME (2); name_choice 6 takes raw."""
    out = bytes([3 | (which | name_choice << 2) << 3])
    if name_choice == 6:
        out += bytes([len(raw)]) + raw
    if which == 2:
        return out + bytes([mode])
    return out + bytes([len(reqs), mode]) + bytes(reqs)


def meta(set_, name_choice, queries, mode=0, raw=b''):
    out = bytes([4 | (int(set_) | name_choice << 1) << 3])
    if name_choice == 6:
        out += bytes([len(raw)]) + raw
    return out + bytes([len(queries), mode]) + bytes(queries)


def req(type_, om, fl=0, cookie=3, extra=b''):
    return bytes([5 | type_ << 3, fl, cookie, om]) + extra


def cut(shutdown=False, flush=False):
    return bytes([6 | (int(shutdown) | int(flush) << 1) << 3])


def repeat(n):
    return bytes([7 | (n - 1) << 3])


READ, WRITE, DISC, FLUSH, TRIM, CACHE, WZ, BS = range(8)


def nbd_seeds():
    # libnbd/qemu-like: structured replies, base:allocation, GO with info.
    modern = (nbd_config(1) + MAP + MAP + MAP + flags(3) + opt(8) +
              meta(True, 2, [0]) + meta(False, 0, []) + go(2, [1, 2, 3]) +
              req(BS, 5 << 3) + req(BS, 5 << 3, fl=8) +
              req(READ, 2 << 3, extra=b'\x07') + req(READ, (6 << 3) | 0, fl=4) +
              req(READ, 5 << 3) + req(CACHE, 2 << 3, extra=b'\x00') +
              req(FLUSH, 0) + req(READ, (4 << 3) | 4, extra=b'\xff\xff\x00\x00') +
              cut() + req(DISC, 0))
    write('nbd', 'modern', modern)
    # The kernel / Apple: no structured replies, GO on the default export.
    simple = (nbd_config(0) + MAP + flags(1) + go(0) + req(READ, 2 << 3, extra=b'\x01') +
              req(WRITE, (1 << 3) | 0x40, extra=b'\x20') + req(TRIM, 2 << 3, extra=b'\x01') +
              req(WZ, 2 << 3, extra=b'\x01') + req(READ, 5 << 3, fl=4) +
              req(9, 2 << 3, extra=b'\x01') + req(READ, 7 << 3) + req(DISC, 0))
    write('nbd', 'simple', simple)
    # nbd-client -g: plain newstyle, EXPORT_NAME, 124 zero bytes.
    old = (nbd_config(0) + MAP + flags(0) + opt(3) + go(1, which=2) +
           req(READ, 1 << 3, extra=b'\x10') + req(READ, (5 << 3) | 4) + req(DISC, 0))
    write('nbd', 'oldstyle', old)
    # nbdinfo --list: LIST, INFO of every export, LIST_META, ABORT.
    lst = (nbd_config(1) + MAP + MAP + MAP + flags(3) + opt(3) + go(1, [0, 1, 2, 3], which=1) +
           go(2, [2], which=1) + go(4, [], which=1) + meta(False, 3, [1, 2, 3]) +
           opt(2))
    write('nbd', 'list', lst)
    # Unsupported and malformed options, huge ones skipped, then a GO.
    odd = (nbd_config(3) + MAP + MAP + flags(3) + opt(5) + opt(11) + opt(4, b'abcd') +
           opt(8, b'x') + opt(8) + opt(8) + meta(True, 0, [0, 1], mode=3) +
           go(6, [], mode=3, raw=b'r\x00t') + go(7, []) + go(4, [1, 0x20]) +
           opt_raw(0x12345678, b'', 70000) + bulk(70000) +
           opt_raw(6, b'', 100000) + bulk(100000) +
           opt_raw(9, b'', 2 << 20) + go(5, [3]))
    write('nbd', 'odd-options', odd)
    # Pipelined reads, deferred and failed, then a stop with requests pending.
    pipe = (nbd_config(1, fail_every=3, defer=2) + MAP + MAP + MAP + flags(3) + opt(8) +
            go(1, [3]) + req(READ, (2 << 3) | 7, extra=b'\x01\x00\x00\x00\x03') +
            repeat(20) + cut(flush=True) + req(READ, 3 << 3, extra=b'\x00\x10') +
            repeat(8) + cut(shutdown=True) + req(READ, 2 << 3, extra=b'\x01') +
            opt(3) + req(FLUSH, 0))
    write('nbd', 'pipeline', pipe)
    # Shutdown during the handshake; bytes split at every place.
    stop = (nbd_config(0) + MAP + flags(3) + cut() + bytes([0, 3]) + b'IHA' + cut() +
            cut(shutdown=True) + opt(3) + go(1) + opt(2))
    write('nbd', 'shutdown', stop)
    # The shared export of 1.3M regions: BLOCK_STATUS up to its limits.
    many = (bytes([7]) + flags(3) + opt(8) + meta(True, 0, [0]) + go(0, [3]) +
            req(BS, 5 << 3) + req(BS, 4 << 3 | 1, extra=b'\x00\x00' + b'\xff\xff\xff\xff') +
            req(READ, 6 << 3, extra=b'\xff') + req(BS, 5 << 3 | 3, fl=8, extra=b'\x00\x80') +
            req(READ, 4 << 3 | 3, extra=b'\x00\x90' + b'\x00\x00\x10\x00') + req(DISC, 0))
    write('nbd', 'many-regions', many)
    # Options over SRV_OPT_SOFT_CAP, skipped and then answered by the
    # checks that need no data (handle_option()): ABORT still ACKs and
    # closes; a plain-newstyle client gets ERR_INVALID; an oversized SET
    # still forgets the selection, so BLOCK_STATUS then fails.
    small = nbd_config(0, pad=False) + nbd_map([(1, 1, b'\x07')])
    write('nbd', 'skipped-abort', small + flags(3) + opt_raw(2, b'', 0x20000) + bulk(0x20000))
    write('nbd', 'skipped-plain',
          small + flags(2) + opt_raw(3, b'', 0x20000) + bulk(0x20000) + go(1))
    write('nbd', 'skipped-set-meta',
          small + flags(3) + opt(8) + meta(True, 1, [0]) + opt_raw(10, b'', 0x20000) +
          bulk(0x20000) + go(1) + req(BS, 2 << 3, extra=b'\x00') + req(DISC, 0))


# --- trees (tree.c) ---------------------------------------------------------

class Tree:
    """Encodes fake_tree_decode() operations (see tree.c)."""

    def __init__(self, mtime=0, invalid_lim=False):
        self.b = bytearray([mtime])
        if invalid_lim:
            self.b.append(0)        # keep_dups byte: not 0x5d

    @staticmethod
    def name(n):
        n = n.encode() if isinstance(n, str) else n
        assert 1 <= len(n) <= 63
        return bytes([len(n) - 1]) + n

    @staticmethod
    def size(n):
        if n == 0:
            return b'\x00'
        if n <= 256:
            return bytes([1, n - 1])
        if n < 65536:
            return b'\x02' + struct.pack('<H', n)
        if n < 1 << 32:
            return b'\x04' + struct.pack('<I', n)
        return b'\x05' + struct.pack('<Q', n << 16)

    def file(self, name, size, exe=False):
        self.b += bytes([0 | int(exe) << 4]) + self.name(name) + self.size(size)
        return self

    def kernel(self, name, size, arm=False):
        self.b += bytes([13 | int(arm) << 4]) + self.name(name) + self.size(size)
        return self

    def empty(self, name):
        self.b += bytes([14]) + self.name(name)
        return self

    def dir(self, name):
        self.b += bytes([2]) + self.name(name)
        return self

    def up(self, n=1):
        self.b += bytes([3 | (n - 1) << 4])
        return self

    def symlink(self, name, target):
        target = target.encode()
        self.b += (bytes([4]) + self.name(name) + struct.pack('<H', len(target)) +
                   bytes([len(target)]) + target)
        return self

    def special(self, name, kind, major=0, minor=0):
        self.b += bytes([5 | kind << 4]) + self.name(name)
        self.b += struct.pack('<HI', major, minor)
        return self

    def link(self, name, k):
        self.b += bytes([6]) + self.name(name) + struct.pack('<H', k)
        return self

    @staticmethod
    def value(vl, seed):
        if vl < 64:
            v = bytes([vl << 2])
        elif vl < 256:
            v = bytes([1, vl])
        elif vl < 65535:
            v = b'\x02' + struct.pack('<H', vl)
        else:
            v = b'\x03'
        return v + bytes([seed])

    def xattr(self, prefix, suffix, vl, seed=1, on_dir=False):
        # prefix: index into tree.c's xattr_prefixes[]
        self.b += bytes([7 | int(on_dir) << 4, prefix])
        if prefix in (0, 1, 2, 5, 6):
            self.b += bytes([len(suffix)]) + suffix.encode()
        self.b += self.value(vl, seed)
        return self

    def many(self, kind, count):
        while count > 0:
            n = min(count, 1021)
            mult = (n - 1 + 254) // 255 or 1
            per = (n - 1) // mult
            self.b += bytes([8 | (kind | (mult - 1) << 2) << 4, per])
            count -= 1 + per * mult
        return self

    def deep(self, n):
        self.b += bytes([9, n - 1])
        return self

    def attr(self, mode, uid=0, gid=0, mtime=None, nsec=None):
        self.b += bytes([10]) + struct.pack('<H', mode)
        self.b += bytes([uid, gid])
        m = (1 if mtime is not None else 0) | (4 if nsec is not None else 0)
        self.b.append(m)
        if mtime is not None:
            self.b += struct.pack('<q', mtime)
        if nsec is not None:
            self.b += struct.pack('<I', nsec)
        return self

    def manyx(self, n, vl=8):
        self.b += bytes([11, n - 1])
        for i in range(n):
            self.b += bytes([0]) + self.value(vl, i % 3)
        return self

    def sparse(self, extents):
        self.b.append(12 | (len(extents) - 1) << 4)
        for frac, ln in extents:
            self.b += struct.pack('<I', frac)
            self.b += (bytes([1, ln - 1]) if ln <= 256 else
                       b'\x00' + struct.pack('<H', ln - 1))
            self.b.append(1)      # align to 4 KiB
        return self

    def bytes(self):
        return bytes(self.b)


def rootfs():
    """A small root file system: kernel, boot loader, odd names, links."""
    t = Tree()
    t.dir('boot').file('config-6.1.0-10-amd64', 300).up()
    t.dir('etc').file('hostname', 7).file('passwd', 900).xattr(2, 'selinux', 30)
    t.symlink('localtime', '/usr/share/zoneinfo/UTC').up()
    t.dir('usr').dir('lib').dir('modules').dir('6.1.0-10-amd64')
    t.kernel('vmlinuz', 70000).file('initramfs.img', 300000).up(2)
    t.dir('systemd').dir('boot').dir('efi')
    t.kernel('systemd-bootx64.efi', 90000).up(4)
    t.dir('bin').file('ls', 140000, exe=True).xattr(2, 'capability', 20)
    t.link('dir', 13).symlink('sh', 'bash').file('bash', 1200000, exe=True).up()
    t.up()
    t.dir('dev').special('null', 0, 1, 3).special('sda', 1, 8, 0).special('fifo', 2)
    t.special('sock', 3).up()
    t.dir('names').empty('+plus').empty('-dash').empty(' space').empty('\xe9t\xe9')
    t.empty('.hidden').empty('A').empty('a').empty('~').empty('x' * 63).up()
    t.dir('var').dir('big').file('sparse', 1 << 40).sparse([(0, 100), (1 << 31, 4096)])
    t.file('huge', (1 << 32) + 5).up(2)
    return t


def erofs_seeds():
    for name, opts in (('bs4096', 0x08), ('bs512', 0x00), ('bs65536', 0x07),
                       ('noinline', 0x18), ('epoch-label', 0x68)):
        pre = bytes([opts])
        if opts & 0x20:
            pre += struct.pack('<Q', 1700000000 << 1)
        if opts & 0x40:
            pre += bytes([6]) + b'rootfs'
        write('erofs', 'rootfs-' + name, pre + rootfs().bytes())
    # Wide directories (several blocks), deep ones, many xattrs.
    t = Tree().dir('wide').many(0, 5000).up().dir('links').many(2, 600).up()
    write('erofs', 'wide', b'\x09' + t.bytes())
    t = Tree().deep(200).file('bottom', 5000).up(16).dir('x').many(1, 100)
    write('erofs', 'deep', b'\x0c' + t.bytes())
    t = Tree().file('f', 100).manyx(200, 300).file('g', 100).manyx(200, 300)
    t.xattr(0, 'big', 65535).xattr(3, '', 28).xattr(4, '', 44).attr(0o4755, 200, 250)
    t.dir('d').xattr(6, 'opaque', 1, on_dir=True).file('times', 10).attr(0o600, 255, 255, -5, 999999999)
    write('erofs', 'xattrs', b'\x0a' + t.bytes())
    # Hard links and nlink counts; an invalid tree (bad names, xattrs).
    t = Tree().file('a', 10).dir('d').link('b', 1).link('c', 1).up().link('e', 1)
    write('erofs', 'hardlinks', b'\x08' + t.bytes())
    # 65536 + 1 links: nlink past the compact inode's 16 bits (§5.6).
    t = Tree().dir('links').file('target', 5000)
    t.b += bytes([6 | 15 << 4]) + struct.pack('<H', 65535) + bytes([3])
    write('erofs', 'nlink', b'\x08' + t.bytes())
    t = Tree(invalid_lim=True).file('ok', 5)
    t.b += bytes([0, 0xfe, 2]) + b'..' + Tree.size(1)       # a raw name ".."
    t.xattr(0xf8, 'x', 3)
    write('erofs', 'invalid', b'\x88' + t.bytes())


def fat_seeds():
    # minsize: MiB (under 512), or BIG | 4 MiB units for the big mode
    # (files up to 4 GiB).
    BIG = 0xc000

    def pre(opts, cmdline=b'', volume_id=0x12345678, arch=0, kver=0, minsize=300):
        out = bytes([opts, len(cmdline)]) + cmdline + struct.pack('<I', volume_id)
        if opts & 0x20:
            out += struct.pack('<H', minsize)
        return out + bytes([arch, kver])
    write('fat', 'esp', pre(0x44, b'quiet console=ttyS0') + rootfs().bytes())
    write('fat', 'esp-badcmdline', pre(0x44, b'quiet\ninitrd /evil') + rootfs().bytes())
    write('fat', 'esp-longcmdline', pre(0x44) [:1] + bytes([255, 50]) + b'a' * 64 +
          struct.pack('<I', 1) + bytes([0, 0]) + rootfs().bytes())
    t = Tree()
    t.dir('EFI').dir('BOOT').kernel('BOOTAA64.EFI', 90000, arm=True).up(2)
    t.dir('usr').dir('lib').dir('modules').dir('6.6.0-arm').kernel('vmlinuz', 5000, arm=True)
    t.up(2).dir('systemd').dir('boot').dir('efi')
    t.kernel('systemd-bootaa64.efi', 9000, arm=True).up(5)
    t.dir('boot').kernel('vmlinuz-6.1.0-9-amd64', 8000).file('initrd.img-6.1.0-9-amd64', 600)
    write('fat', 'esp-arm64', pre(0x46, b'ro', arch=2) + t.bytes())
    # Plain FAT: names that need LFN, 8.3 names, case clashes, big files.
    t = Tree().dir('loader').file('loader.conf', 40).file('Linux', 3).file('README.TXT', 9)
    t.file('readme.txt2', 1).file('very long name with spaces.tar.gz', 1000).up()
    t.dir('Wide').many(0, 700).up().file('big', (1 << 32) - 1)
    # tree.c's UTF-8 picks: 0xf0 "é" (2 bytes), 0xf2 "日" (3), 0xf3 "😀" (4).
    t.b += bytes([14, 4]) + b'caf\xf0' + bytes([14, 6]) + b'\xf2\xf3'
    write('fat', 'names', pre(0x24, minsize=BIG | 75) + t.bytes())
    write('fat', 'small-min', pre(0x24) + Tree().file('a', 1).bytes())
    write('fat', 'toobig', pre(0x24, minsize=BIG) + Tree().file('max', 1 << 32).bytes())
    write('fat', 'casedup', pre(0x04) + Tree().empty('Linux').empty('LINUX').bytes())
    t = Tree().dir('a').dir('b').dir('c').file('d', 1).up(3).empty('x.y.z').empty('.dot')
    write('fat', 'nested', pre(0x06) + t.bytes())


def gpt_seeds():
    # nparts in the low bits (1 + b % 4); disk GUID mode; per partition.
    def part(type_, name_idx, guid_mode=3, attrs=0x20, mapbytes=MAP):
        return bytes([type_ | attrs]) + mapbytes + bytes([name_idx, guid_mode])
    disk = bytes([1, 3]) + part(0, 2) + part(1, 3, guid_mode=4)
    write('gpt', 'esp-root', disk)
    many = bytes([0x80 | 0, 127, 3]) + b''.join(part(i % 3, i % 14, 3 + i % 5) for i in range(127))
    write('gpt', 'many', many)
    big = (bytes([0, 5]) + bytes([1]) + nbd_map([(0, 3, struct.pack('<I', 0xffffffff))]) +
           bytes([7, 6]))
    write('gpt', 'huge', big)


def options_seeds():
    for i, arg in enumerate([b'4096', b'16k', b'64KiB', b'512', b'1G', b'18446744073709551615',
                             b'4096x', b'-1', b'+4', b'4 k']):
        write('options', 'size-%d' % i, bytes([0]) + arg)
    write('options', 'uint', bytes([1 | 3 << 3]) + b'86400')
    write('options', 'epoch', bytes([2]) + b'1700000000')
    for i, arg in enumerate([b'10809', b'[::1]:10809', b'localhost:0', b'0.0.0.0:1',
                             b'::1:10809', b':80', b'[]:1', b'host:65536']):
        write('options', 'tcp-%d' % i, bytes([3]) + arg)
    write('options', 'vsock', bytes([4]) + b'4294967294')
    write('options', 'escape', bytes([5]) + b'a b/c?d&e=f%g+h#i\x00\xff')
    write('options', 'unix-uri', bytes([6]) + b'/run/erofs nbd/nbd.sock\x00root?x')
    write('options', 'inet6-uri', bytes([7 | 8]) + bytes(15) + b'\x01' + b'\x29\x2a' + b'disk')


def uri_seeds():
    for i, u in enumerate([b'nbd+unix:///disk?socket=/run/x.sock', b'nbd://127.0.0.1:10809/root',
                           b'nbd://[::1]/', b'nbd+unix:///?socket=%2Frun&socket=/b',
                           b'nbds://h/', b'nbd://h:0/x', b'nbd+unix://host/x?socket=/s',
                           b'nbd://h/a%00b', b'nbd://[::1/']):
        write('uri', 'connect-%d' % i, bytes([0]) + u)
    write('uri', 'unix', bytes([1]) + b'run/erofs-nbd.X/nbd.sock\x00root')
    write('uri', 'inet', bytes([2 | 4]) + bytes(15) + b'\x01\x29\x2a' + b'd%isk')
    write('uri', 'encode', bytes([3]) + b'a,b c%d')


def kargs_seeds():
    """/etc/kernel/cmdline, NUL, a kargs.d TOML file, NUL, --cmdline."""
    for i, (cmdline, toml, user) in enumerate([
            (b'root=UUID=1 ro quiet "x=a b"\tsplash\n', b'kargs = ["console=ttyS0"]\n',
             b'panic=-1'),
            (b'quiet -- single ro\n', b'kargs = ["a", "--", "b=1", \'root=x\']\n',
             b'console=hvc0 -- emergency'),
            (b'"--" x "y=-- z"\n', b'# c\nmatch-architectures = ["aarch64"]\nkargs = [\n "arm",\n]\n',
             b'a"b'),
            (b'x="a\n b" rw\n', b'kargs = ["a\\\\b"] # c\r\n', b''),
            (b'quiet x="open\n', b'kargs = []\n', b'--'),
            (b'', b'match-architectures = ["x86_64"]\nkargs = ["--", "ro"]\n', b'-- x -- y')]):
        write('kargs', 'seed-%d' % i, cmdline + b'\0' + toml + b'\0' + user)


def main():
    nbd_seeds()
    kargs_seeds()
    erofs_seeds()
    fat_seeds()
    gpt_seeds()
    options_seeds()
    uri_seeds()
    return 0


if __name__ == '__main__':
    sys.exit(main())
