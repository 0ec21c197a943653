#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""nbd_faults.py - clients that put pressure on the server, for test-faults.sh.

    nbd_faults.py stall --unix SOCK [--export NAME] [--seconds S]
    nbd_faults.py cut --unix SOCK [--export NAME] [--count N]
    nbd_faults.py eio --unix SOCK [--export NAME] --offset B --length B

stall: finishes the handshake, then sends 1 MiB NBD_CMD_READs and never
reads a reply, until the server stops taking requests (its replies fill
both socket buffers, so it stops reading ours) or 4096 are sent; holds
the connection for S seconds, then closes it.  Prints how many requests
the server took.

cut: N times, connects, sends an 8 MiB READ, reads the start of the
reply and hangs up in the middle of it: every other time with a reset
(SO_LINGER 0) instead of a close.

eio: one READ of --length bytes at --offset; succeeds if the server
answers with the error EIO (structured replies), fails if the read
succeeds or fails otherwise.

All exit 0 unless the server misbehaves towards them (a bad handshake).
The protocol pieces are tests/nbd_evil.py's.
"""

import argparse
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import nbd_evil  # noqa: E402
from nbd_evil import CHUNK_ERROR, CHUNK_ERROR_OFFSET, CMD_READ, EIO, Conn  # noqa: E402


def stall(a):
    c = Conn(a.unix)
    c.handshake(name=a.export.encode())
    c.s.settimeout(2.0)
    sent = 0
    try:
        while sent < 4096:
            c.request(CMD_READ, (sent << 20) % max(1, c.size - (1 << 20)), 1 << 20, sent)
            sent += 1
    except (socket.timeout, BlockingIOError):
        pass
    print('stall: the server took %d requests of 1 MiB, none read; holding %d s'
          % (sent, a.seconds), flush=True)
    time.sleep(a.seconds)
    c.close()


def cut(a):
    for i in range(a.count):
        c = Conn(a.unix)
        c.handshake(name=a.export.encode())
        c.request(CMD_READ, 0, min(8 << 20, c.size), i)
        c.recv_exact(64 * 1024 + i % 1000, 'the start of a reply')
        if i % 2:
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        c.close()
    print('cut: %d replies cut short' % a.count)


def eio(a):
    c = Conn(a.unix)
    c.handshake(name=a.export.encode())
    c.request(CMD_READ, a.offset, a.length, 7)
    errors = []
    while True:
        cookie, ctype, payload, done = c.reply()
        if cookie != 7:
            raise nbd_evil.Fail('reply cookie: expected 7, actual %d' % cookie)
        if ctype in (CHUNK_ERROR, CHUNK_ERROR_OFFSET):
            errors.append(struct.unpack('>I', payload[:4])[0])
        if done:
            break
    c.close()
    if errors != [EIO] and set(errors) != {EIO}:
        raise nbd_evil.Fail('READ of %d bytes at %d: expected the error EIO, actual %s'
                            % (a.length, a.offset, errors or 'success'))
    print('eio: READ of %d bytes at %d failed with EIO' % (a.length, a.offset))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('mode', choices=('stall', 'cut', 'eio'))
    ap.add_argument('--unix', required=True)
    ap.add_argument('--export', default='root')
    ap.add_argument('--seconds', type=float, default=20)
    ap.add_argument('--count', type=int, default=100)
    ap.add_argument('--offset', type=int, default=0)
    ap.add_argument('--length', type=int, default=4096)
    a = ap.parse_args()
    try:
        {'stall': stall, 'cut': cut, 'eio': eio}[a.mode](a)
    except nbd_evil.Fail as e:
        print('FAIL %s: %s' % (a.mode, e))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
