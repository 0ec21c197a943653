#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""imgcmp.py - cmp for big sparse image files.

    imgcmp.py FILE1 FILE2

Like cmp(1): exit 0 when the files hold the same bytes, 1 (printing the
first differing offset) when they do not, 2 on an error.  Holes read as
zeros, as always; only the union of the two files' data ranges
(SEEK_DATA/SEEK_HOLE) is read, so two 5 GiB images that are mostly holes
compare in a moment.  Where a file system does not report holes the whole
file is data and this is a plain cmp.
"""

import os
import sys

CHUNK = 4 << 20


def data_ranges(fd, size):
    """Yields (start, end) of the data ranges of fd."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:         # ENXIO: only a hole is left
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        off = end


def merged(ra, rb):
    """The union of two sorted lists of ranges."""
    out = []
    for lo, hi in sorted(ra + rb):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().split('\n')[2], file=sys.stderr)
        return 2
    a, b = sys.argv[1:]
    try:
        fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
        sa, sb = os.fstat(fa).st_size, os.fstat(fb).st_size
        size = min(sa, sb)
        ranges = merged(list(data_ranges(fa, size)), list(data_ranges(fb, size)))
        for lo, hi in ranges:
            off = lo
            while off < hi:
                n = min(CHUNK, hi - off)
                ba, bb = os.pread(fa, n, off), os.pread(fb, n, off)
                if ba != bb:
                    i = next(i for i in range(min(len(ba), len(bb))) if ba[i] != bb[i])
                    print('%s %s differ: byte %d' % (a, b, off + i + 1))
                    return 1
                off += n
    except OSError as e:
        print('imgcmp: %s' % e, file=sys.stderr)
        return 2
    if sa != sb:
        print('imgcmp: EOF on %s after byte %d' % (a if sa < sb else b, size))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
