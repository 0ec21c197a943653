# SPDX-License-Identifier: MIT
"""erofs_reader.py - a small, independent reader of uncompressed EROFS images.

Used by treecmp.py --image to check images the running kernel cannot mount
(block sizes above PAGE_SIZE), as a second opinion on the others, and from
the command line (main()) to say which image blocks hold a file, for the
fault tests.  It reads the format as described in
shared/docs/erofs-format.md (superblock at byte 1024, 32/64-byte inodes
by nid, FLAT_PLAIN / FLAT_INLINE / CHUNK_BASED data, inline and shared
xattrs, directory blocks) and checks
the structural rules the kernel and fsck.erofs enforce while it reads:

  - magic, no unknown incompat bits, dirblkbits 0, 9 <= blkszbits <= 16,
    the superblock CRC32C when the SB_CHKSUM feature is set;
  - every data block and inline tail inside the image, tails not crossing
    a block boundary;
  - directory blocks: nameoff[0] = 12 * N, names packed back to back in
    increasing nameoff, sorted bytewise within and across blocks, no
    duplicates, exactly one '.' (itself) and '..' (its parent), file_type
    matching the inode's mode, zero fill after the last name;
  - xattr areas: entries within the area, known name indexes;
  - directory nlink = 2 + subdirectories.

Violations raise ErofsError naming the inode (nid) and the rule.
"""

import stat
import struct

EROFS_MAGIC = 0xE0F5E1E2
SB_OFFSET = 1024
KNOWN_INCOMPAT = 0x4  # CHUNKED_FILE is the only incompat feature we read

XATTR_PREFIX = {
    1: b'user.',
    2: b'system.posix_acl_access',
    3: b'system.posix_acl_default',
    4: b'trusted.',
    5: b'lustre.',
    6: b'security.',
}

FT_OF_MODE = {
    stat.S_IFREG: 1, stat.S_IFDIR: 2, stat.S_IFCHR: 3, stat.S_IFBLK: 4,
    stat.S_IFIFO: 5, stat.S_IFSOCK: 6, stat.S_IFLNK: 7,
}


class ErofsError(Exception):
    pass


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c_raw(crc, data):
    """CRC32C (Castagnoli, reflected) without the final XOR, as the
    kernel's crc32c(~0, ...) used for the superblock checksum."""
    t = _CRC32C
    for b in data:
        crc = t[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc


class Inode:
    """What the reader knows about one inode; looks like os.stat_result."""

    def __init__(self, nid):
        self.nid = nid
        self.st_ino = nid
        self.st_dev = 0
        self.st_rdev = 0


class ErofsImage:
    def __init__(self, path):
        self.f = open(path, 'rb', buffering=0)
        self.f.seek(0, 2)
        self.size = self.f.tell()
        sb = self.pread(SB_OFFSET, 128)
        (magic, _csum, self.compat, self.blkszbits, extslots, self.root_nid,
         self.inos, self.build_time, self.build_nsec, self.blocks,
         self.meta_blkaddr, self.xattr_blkaddr) = struct.unpack_from(
             '<IIIBBHQQIIII', sb, 0)
        self.incompat = struct.unpack_from('<I', sb, 80)[0]
        self.dirblkbits = sb[90]
        if magic != EROFS_MAGIC:
            raise ErofsError('superblock: bad magic 0x%08x' % magic)
        if self.incompat & ~KNOWN_INCOMPAT:
            raise ErofsError('superblock: unknown incompat features 0x%x' % self.incompat)
        if not 9 <= self.blkszbits <= 16:
            raise ErofsError('superblock: blkszbits %d out of range' % self.blkszbits)
        if self.dirblkbits:
            raise ErofsError('superblock: dirblkbits %d, must be 0' % self.dirblkbits)
        if extslots:
            raise ErofsError('superblock: sb_extslots %d, expected 0' % extslots)
        self.bs = 1 << self.blkszbits
        if self.compat & 1:
            # SB_CHKSUM: over the rest of block 0 from byte 1024 (bs bytes
            # when bs <= 1024), with the checksum field counted as zero.
            n = self.bs - SB_OFFSET if self.bs > SB_OFFSET else self.bs
            blk = bytearray(self.pread(SB_OFFSET, n))
            blk[4:8] = bytes(4)
            want = crc32c_raw(0xffffffff, blk)
            if want != _csum:
                raise ErofsError('superblock checksum 0x%08x, expected 0x%08x'
                                 % (_csum, want))
            self.checksum_ok = True
        if self.size % self.bs:
            raise ErofsError('image size %d is not a multiple of the block size %d'
                             % (self.size, self.bs))
        self.inodes = {}

    def pread(self, off, n):
        if off < 0 or off + n > self.size:
            raise ErofsError('read of %d bytes at %d outside the image (%d bytes)'
                             % (n, off, self.size))
        self.f.seek(off)
        b = self.f.read(n)
        if len(b) != n:
            raise ErofsError('short read at %d' % off)
        return b

    # --- inodes ---------------------------------------------------------------
    def inode(self, nid):
        if nid in self.inodes:
            return self.inodes[nid]
        ino = Inode(nid)
        off = self.meta_blkaddr * self.bs + nid * 32
        raw = self.pread(off, 32)
        fmt, icount, mode = struct.unpack_from('<HHH', raw, 0)
        if fmt & ~0xf:
            raise ErofsError('nid %d: i_format 0x%x has unknown bits' % (nid, fmt))
        ino.extended = fmt & 1
        ino.layout = (fmt >> 1) & 7
        ino.st_mode = mode
        if ino.extended:
            raw = self.pread(off, 64)
            (ino.st_size, ino.i_u, _ino, ino.st_uid, ino.st_gid, mtime, nsec,
             ino.st_nlink) = struct.unpack_from('<QIIIIqII', raw, 8)
            if struct.unpack_from('<H', raw, 6)[0]:
                raise ErofsError('nid %d: extended inode reserved field at 6 not 0' % nid)
            ino.isize = 64
        else:
            (ino.st_nlink, ino.st_size, mtime, ino.i_u, _ino, ino.st_uid,
             ino.st_gid) = struct.unpack_from('<HIIIIHH', raw, 6)
            # 6.15+ adds the compact i_mtime to the epoch; older kernels show
            # the build time.  Both agree when the field is 0.
            mtime = self.build_time + mtime
            nsec = self.build_nsec
            ino.isize = 32
        if nsec > 999999999:
            raise ErofsError('nid %d: mtime nsec %d' % (nid, nsec))
        ino.st_mtime_ns = mtime * 10**9 + nsec
        ino.off = off
        ino.xattr_size = 0 if icount == 0 else 12 + 4 * (icount - 1)
        if icount == 1:
            raise ErofsError('nid %d: i_xattr_icount 1 (header only) is rejected '
                             'by the kernel' % nid)
        t = stat.S_IFMT(mode)
        if t not in FT_OF_MODE:
            raise ErofsError('nid %d: bogus i_mode 0%o' % (nid, mode))
        if t in (stat.S_IFCHR, stat.S_IFBLK):
            u = ino.i_u
            major = (u >> 8) & 0xfff
            minor = (u & 0xff) | ((u >> 12) & 0xfff00)
            ino.st_rdev = (major, minor)
        if ino.layout not in (0, 2, 4):
            raise ErofsError('nid %d: data layout %d not supported' % (nid, ino.layout))
        self.inodes[nid] = ino
        return ino

    # --- data -------------------------------------------------------------------
    def extents(self, ino):
        """Yields (file_offset, image_offset or None for a hole, length)."""
        bs, size = self.bs, ino.st_size
        if size == 0:
            return
        nblocks = -(-size // bs)
        tail_off = ino.off + ino.isize + ino.xattr_size
        if ino.layout == 0:
            yield (0, ino.i_u * bs, size)
        elif ino.layout == 2:
            tail = size - (nblocks - 1) * bs
            if (tail_off % bs) + tail > bs:
                raise ErofsError('nid %d: inline tail of %d bytes at %d crosses a '
                                 'block boundary' % (ino.nid, tail, tail_off))
            if nblocks > 1:
                yield (0, ino.i_u * bs, (nblocks - 1) * bs)
            yield ((nblocks - 1) * bs, tail_off, tail)
        elif ino.layout == 4:
            chunkbits = ino.i_u & 0x1f
            indexes = ino.i_u & 0x20
            chunk = bs << chunkbits
            unit = 8 if indexes else 4
            table = -(-tail_off // unit) * unit
            nchunks = -(-size // chunk)
            raw = self.pread(table, unit * nchunks)
            for i in range(nchunks):
                if indexes:
                    hi, dev, blk = struct.unpack_from('<HHI', raw, i * 8)
                    if hi or dev:
                        raise ErofsError('nid %d: chunk %d has startblk_hi/device' % (ino.nid, i))
                else:
                    blk = struct.unpack_from('<I', raw, i * 4)[0]
                n = min(chunk, size - i * chunk)
                yield (i * chunk, None if blk == 0xffffffff else blk * bs, n)

    def read_into(self, ino, off, buf):
        """Reads up to len(buf) bytes at off of a file's data into buf.
        Returns the byte count (short at EOF)."""
        mv = memoryview(buf)
        end = min(off + len(buf), ino.st_size)
        done = 0
        for foff, ioff, ln in self.extents(ino):
            lo, hi = max(off, foff), min(end, foff + ln)
            if lo >= hi:
                continue
            if done != lo - off:
                raise ErofsError('nid %d: extents leave a gap' % ino.nid)
            if ioff is None:
                mv[done:done + hi - lo] = bytes(hi - lo)
            else:
                start = ioff + lo - foff
                if start + hi - lo > self.size:
                    raise ErofsError('nid %d: data at %d..%d past the image end (%d)'
                                     % (ino.nid, start, start + hi - lo, self.size))
                self.f.seek(start)
                if self.f.readinto(mv[done:done + hi - lo]) != hi - lo:
                    raise ErofsError('nid %d: short read at %d' % (ino.nid, start))
            done += hi - lo
        return done

    def read(self, ino, off, n):
        """Reads n bytes at off of a file's data (short at EOF)."""
        buf = bytearray(max(0, min(n, ino.st_size - off)))
        got = self.read_into(ino, off, buf)
        return bytes(buf[:got])

    def check_block_padding(self, ino):
        """The bytes after i_size in the last data block must be zero."""
        if ino.layout != 0 or ino.st_size % self.bs == 0:
            return
        end = ino.i_u * self.bs + ino.st_size
        pad = self.bs - ino.st_size % self.bs
        if self.pread(end, pad).strip(b'\0'):
            raise ErofsError('nid %d: bytes after i_size in the last block are not zero'
                             % ino.nid)

    # --- xattrs -------------------------------------------------------------------
    def _xattr_entry(self, buf, pos, where):
        if pos + 4 > len(buf):
            raise ErofsError('%s: xattr entry header past the area' % where)
        nlen, index, vlen = struct.unpack_from('<BBH', buf, pos)
        end = pos + 4 + nlen + vlen
        if end > len(buf):
            raise ErofsError('%s: xattr entry past the area' % where)
        name = buf[pos + 4:pos + 4 + nlen]
        value = buf[pos + 4 + nlen:end]
        return index, name, value, pos + ((4 + nlen + vlen + 3) & ~3)

    def xattrs(self, ino):
        out = {}
        if not ino.xattr_size:
            return out
        where = 'nid %d' % ino.nid
        area = self.pread(ino.off + ino.isize, ino.xattr_size)
        shared = area[4]
        pos = 12
        entries = []
        for i in range(shared):
            sid = struct.unpack_from('<I', area, pos)[0]
            pos += 4
            soff = self.xattr_blkaddr * self.bs + sid * 4
            hdr = self.pread(soff, 4)
            nlen, _idx, vlen = struct.unpack('<BBH', hdr)
            buf = self.pread(soff, 4 + nlen + vlen)
            idx, name, value, _ = self._xattr_entry(buf, 0, where + ' shared id %d' % sid)
            entries.append((idx, name, value))
        while pos < len(area):
            idx, name, value, pos = self._xattr_entry(area, pos, where)
            if idx == 0 and not name and not value:
                continue        # zero padding
            entries.append((idx, name, value))
        for idx, name, value in entries:
            if idx not in XATTR_PREFIX:
                raise ErofsError('%s: xattr name index %d unknown' % (where, idx))
            if idx == 5:
                continue        # lustre.*: no kernel handler, never listed
            full = XATTR_PREFIX[idx] + name
            if full in out:
                raise ErofsError('%s: xattr %r twice' % (where, full))
            out[full] = value
        return out

    # --- directories -----------------------------------------------------------------
    def readdir(self, ino, parent_nid):
        """Returns [(name, nid)] without '.' and '..', checking the rules."""
        if ino.st_size == 0:
            raise ErofsError('nid %d: directory of size 0' % ino.nid)
        where = 'dir nid %d' % ino.nid
        out = []
        prev = None
        dots = {}
        bs = self.bs
        for boff in range(0, ino.st_size, bs):
            blen = min(bs, ino.st_size - boff)
            blk = self.read(ino, boff, blen)
            if blen < bs:
                blk += bytes(bs - blen)     # readdir stops at i_size
            nameoff0 = struct.unpack_from('<H', blk, 8)[0]
            if nameoff0 == 0 or nameoff0 % 12 or nameoff0 >= bs:
                raise ErofsError('%s block %d: nameoff[0] = %d' % (where, boff // bs, nameoff0))
            n = nameoff0 // 12
            ents = [struct.unpack_from('<QHBB', blk, i * 12) for i in range(n)]
            for i, (nid, nameoff, ftype, _r) in enumerate(ents):
                if i + 1 < n:
                    end = ents[i + 1][1]
                else:
                    end = blk.find(b'\0', nameoff)
                    if end < 0:
                        end = bs
                    if blk[end:].strip(b'\0'):
                        raise ErofsError('%s block %d: garbage after the last name'
                                         % (where, boff // bs))
                    if boff + bs > ino.st_size and end > blen:
                        raise ErofsError('%s: last name runs past i_size' % where)
                if not nameoff < end <= bs:
                    raise ErofsError('%s block %d: entry %d has nameoff %d..%d'
                                     % (where, boff // bs, i, nameoff, end))
                if i == 0 and nameoff != nameoff0:
                    raise ErofsError('%s: nameoff inconsistent' % where)
                name = blk[nameoff:end]
                if len(name) > 255 or b'/' in name or b'\0' in name:
                    raise ErofsError('%s: bad name %r' % (where, name))
                if prev is not None and not prev < name:
                    raise ErofsError('%s: %r sorted after %r (bytewise order broken)'
                                     % (where, name, prev))
                prev = name
                if ftype >= 8:
                    raise ErofsError('%s: file_type %d for %r' % (where, ftype, name))
                if name in (b'.', b'..'):
                    dots[name] = (nid, ftype)
                    continue
                child = self.inode(nid)
                want = FT_OF_MODE[stat.S_IFMT(child.st_mode)]
                if ftype != want:
                    raise ErofsError('%s: %r has file_type %d, mode says %d'
                                     % (where, name, ftype, want))
                out.append((name, nid))
        if dots.get(b'.') != (ino.nid, 2):
            raise ErofsError('%s: "." is %r, expected nid %d' % (where, dots.get(b'.'), ino.nid))
        if dots.get(b'..') != (parent_nid, 2):
            raise ErofsError('%s: ".." is %r, expected nid %d'
                             % (where, dots.get(b'..'), parent_nid))
        return out

    def walk(self):
        """Returns {relpath: Inode} for the whole tree, checking it."""
        root = self.inode(self.root_nid)
        if not stat.S_ISDIR(root.st_mode):
            raise ErofsError('root nid %d is not a directory' % self.root_nid)
        entries = {b'': root}
        stack = [(b'', root, self.root_nid)]
        seen_dirs = {self.root_nid}
        while stack:
            rel, ino, parent = stack.pop()
            subdirs = 0
            for name, nid in self.readdir(ino, parent):
                child = self.inode(nid)
                r = rel + b'/' + name if rel else name
                entries[r] = child
                if stat.S_ISDIR(child.st_mode):
                    if nid in seen_dirs:
                        raise ErofsError('directory nid %d linked twice' % nid)
                    seen_dirs.add(nid)
                    subdirs += 1
                    stack.append((r, child, ino.nid))
                if stat.S_ISREG(child.st_mode) or stat.S_ISDIR(child.st_mode):
                    self.check_block_padding(child)
            if ino.st_nlink != 2 + subdirs:
                raise ErofsError('dir nid %d: nlink %d, expected 2 + %d subdirectories'
                                 % (ino.nid, ino.st_nlink, subdirs))
        return entries


class ErofsFile:
    """A read-only file object over an inode's data, for treecmp."""

    def __init__(self, img, ino):
        self.img, self.ino, self.pos = img, ino, 0

    def readinto(self, buf):
        n = self.img.read_into(self.ino, self.pos, buf)
        self.pos += n
        return n

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass


def file_blocks(img, ino):
    """Yields (start, end) byte ranges of the image, rounded out to whole
    blocks, that hold a regular file's data, its inline tail included:
    what reads as EIO when the server finds the file changed."""
    bs = img.bs
    for _foff, ioff, ln in img.extents(ino):
        if ioff is not None:
            yield (ioff // bs * bs, -(-(ioff + ln) // bs) * bs)


def main():
    import argparse
    ap = argparse.ArgumentParser(
        description='Prints, for each PATH of the EROFS image IMG, the byte '
        'ranges "START END" (END exclusive, whole blocks, shifted by '
        '--offset) that hold its data and inline tail.')
    ap.add_argument('--offset', type=int, default=0,
                    help='the image\'s byte offset in the export (a partition)')
    ap.add_argument('img')
    ap.add_argument('paths', nargs='+', help='paths relative to the root')
    a = ap.parse_args()
    img = ErofsImage(a.img)
    entries = img.walk()
    for p in a.paths:
        ino = entries.get(p.strip('/').encode())
        if ino is None or not stat.S_ISREG(ino.st_mode):
            raise SystemExit('erofs_reader: %s: no regular file of that name' % p)
        for start, end in file_blocks(img, ino):
            print(a.offset + start, a.offset + end)


if __name__ == '__main__':
    main()
