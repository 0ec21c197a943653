#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""nbd_evil.py - raw-socket NBD clients that misbehave, for test-malformed.sh.

    nbd_evil.py --unix SOCK --ref IMAGE [--stall-timeout SECS] SCENARIO...
    nbd_evil.py --list

Each scenario speaks the NBD protocol byte by byte (Python socket +
struct; facts from shared/docs/nbd-protocol.md), abuses the server in one
way and checks the answer the spec (and our fact sheet, parts A13/A14 and
C) asks for: an error reply and a usable connection, or a prompt close.
Data read back is compared with IMAGE (the --write-image output of the
same tree).  Prints "PASS name: ..." or "FAIL name: expected ..., actual
..." per scenario; exits 1 if any failed.  Every socket read has a
timeout, so no scenario hangs.
"""

import argparse
import os
import random
import socket
import struct
import sys
import time

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x0003e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668e33ef

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_PEEK, OPT_STARTTLS, OPT_INFO, OPT_GO, \
    OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META = range(1, 11)
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
REP_ERR_UNSUP, REP_ERR_INVALID, REP_ERR_UNKNOWN = 0x80000001, 0x80000003, 0x80000006

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, \
    CMD_BLOCK_STATUS = range(8)
FLAG_DONE = 1
CHUNK_NONE, CHUNK_OFFSET_DATA, CHUNK_OFFSET_HOLE, CHUNK_BLOCK_STATUS = 0, 1, 2, 5
CHUNK_ERROR, CHUNK_ERROR_OFFSET = 0x8001, 0x8002
EPERM, EIO, EINVAL = 1, 5, 22

TIMEOUT = 10.0


class Fail(Exception):
    pass


def expect(cond, what, exp, act):
    if not cond:
        raise Fail('%s: expected %s, actual %s' % (what, exp, act))


class Conn:
    def __init__(self, addr):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(TIMEOUT)
        self.s.connect(addr)
        self.structured = False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, b):
        self.s.sendall(b)

    def recv_exact(self, n, what='data'):
        buf = bytearray()
        while len(buf) < n:
            try:
                b = self.s.recv(n - len(buf))
            except socket.timeout:
                raise Fail('%s: expected %d bytes, actual %d then nothing for %.0f s'
                           % (what, n, len(buf), self.s.gettimeout()))
            except ConnectionResetError:
                raise Fail('%s: expected %d bytes, actual connection reset' % (what, n))
            if not b:
                raise Fail('%s: expected %d bytes, actual EOF after %d' % (what, n, len(buf)))
            buf += b
        return bytes(buf)

    def expect_close(self, within, what):
        """The server must close without sending anything more."""
        self.s.settimeout(within)
        t0 = time.monotonic()
        try:
            b = self.s.recv(65536)
        except socket.timeout:
            raise Fail('%s: expected the server to close within %.0f s, actual still open'
                       % (what, within))
        except ConnectionResetError:
            b = b''
        expect(b == b'', what, 'close without data', '%d bytes: %s' % (len(b), b[:32].hex()))
        return time.monotonic() - t0

    # --- handshake -------------------------------------------------------------------
    def greeting(self, client_flags=1):
        g = self.recv_exact(18, 'greeting')
        magic, opt, flags = struct.unpack('>QQH', g)
        expect(magic == NBDMAGIC and opt == IHAVEOPT, 'greeting magic',
               'NBDMAGIC IHAVEOPT', g[:16].hex())
        expect(flags & 1 and not flags & ~3, 'handshake flags', '0x0001 or 0x0003', hex(flags))
        self.hflags = flags
        if client_flags is not None:
            self.send(struct.pack('>I', client_flags))

    def opt(self, code, data=b''):
        self.send(struct.pack('>QII', IHAVEOPT, code, len(data)) + data)

    def opt_reply(self, code):
        h = self.recv_exact(20, 'option reply header')
        magic, opt, rtype, ln = struct.unpack('>QIII', h)
        expect(magic == OPT_REPLY_MAGIC, 'option reply magic', hex(OPT_REPLY_MAGIC), hex(magic))
        expect(opt == code, 'option reply echoes the option', hex(code), hex(opt))
        expect(ln <= 65536, 'option reply length', '<= 64 KiB', ln)
        return rtype, self.recv_exact(ln, 'option reply data')

    def structured_reply(self):
        self.opt(OPT_STRUCTURED_REPLY)
        rtype, data = self.opt_reply(OPT_STRUCTURED_REPLY)
        expect(rtype == REP_ACK and data == b'', 'STRUCTURED_REPLY', 'ACK', hex(rtype))
        self.structured = True

    def go(self, name=b'root', infos=()):
        data = struct.pack('>I', len(name)) + name + struct.pack('>H', len(infos))
        data += b''.join(struct.pack('>H', i) for i in infos)
        self.opt(OPT_GO, data)
        size = None
        while True:
            rtype, d = self.opt_reply(OPT_GO)
            if rtype == REP_ACK:
                break
            if rtype & 0x80000000:
                raise Fail('GO %r: expected ACK, actual error 0x%x %r' % (name, rtype, d))
            expect(rtype == REP_INFO, 'GO reply type', 'INFO or ACK', hex(rtype))
            itype = struct.unpack('>H', d[:2])[0]
            if itype == 0:
                expect(len(d) == 12, 'NBD_INFO_EXPORT length', 12, len(d))
                size, self.tflags = struct.unpack('>QH', d[2:])
        expect(size is not None, 'GO', 'an NBD_INFO_EXPORT reply', 'none')
        expect(self.tflags & 3 == 3, 'transmission flags', 'HAS_FLAGS|READ_ONLY',
               hex(self.tflags))
        self.size = size
        return size

    def handshake(self, structured=True, name=b'root'):
        self.greeting()
        if structured:
            self.structured_reply()
        return self.go(name)

    # --- transmission --------------------------------------------------------------------
    def request(self, cmd, offset, length, cookie, flags=0, payload=b''):
        self.send(struct.pack('>IHHQQI', REQUEST_MAGIC, flags, cmd, cookie, offset, length)
                  + payload)

    def reply(self, want_len=0):
        """Reads one simple reply or one structured chunk.
        Returns (cookie, error, chunks-or-data, done)."""
        magic = struct.unpack('>I', self.recv_exact(4, 'reply magic'))[0]
        if magic == SIMPLE_REPLY_MAGIC:
            err, cookie = struct.unpack('>IQ', self.recv_exact(12, 'simple reply'))
            return cookie, err, None, True
        expect(magic == STRUCTURED_REPLY_MAGIC and self.structured, 'reply magic',
               'simple%s' % (' or structured' if self.structured else ''), hex(magic))
        flags, ctype, cookie, ln = struct.unpack('>HHQI', self.recv_exact(16, 'chunk header'))
        expect(not flags & ~FLAG_DONE, 'chunk flags', 'only DONE', hex(flags))
        expect(ln <= (32 << 20) + 64, 'chunk length', '<= 32 MiB + header', ln)
        payload = self.recv_exact(ln, 'chunk payload')
        return cookie, ctype, payload, bool(flags & FLAG_DONE)


def collect(conn, pending, ref):
    """Reads replies until every cookie in pending {cookie: (cmd, off, len)}
    is answered.  Returns {cookie: (error, data)}; checks the framing."""
    out = {}
    parts = {}
    while pending:
        cookie, a, b, done = conn.reply()
        expect(cookie in pending, 'reply cookie', 'one of the requests in flight',
               '0x%016x' % cookie)
        cmd, off, ln = pending[cookie]
        if not conn.structured or b is None:
            # A simple reply.  Once structured replies are negotiated the
            # spec forbids it for READ (and BLOCK_STATUS is chunks only).
            expect(not conn.structured or cmd not in (CMD_READ, CMD_BLOCK_STATUS),
                   'reply to command %d in structured mode' % cmd, 'structured chunks',
                   'a simple reply (error %d)' % a)
            err = a
            data = b''
            if cmd == CMD_READ and err == 0:
                expect(ln <= 32 << 20, 'READ of %d bytes' % ln, 'an error', 'success')
                data = conn.recv_exact(ln, 'read data')
            out[cookie] = (err, data)
            del pending[cookie]
            continue
        ctype, payload = a, b
        st = parts.setdefault(cookie, {'err': 0, 'pieces': [], 'covered': []})
        if ctype == CHUNK_OFFSET_DATA:
            expect(len(payload) >= 9, 'OFFSET_DATA length', '>= 9', len(payload))
            o = struct.unpack('>Q', payload[:8])[0]
            d = payload[8:]
            expect(off <= o and o + len(d) <= off + ln, 'OFFSET_DATA range',
                   'inside [%d, %d)' % (off, off + ln), '[%d, %d)' % (o, o + len(d)))
            st['pieces'].append((o, d))
            st['covered'].append((o, o + len(d)))
        elif ctype == CHUNK_OFFSET_HOLE:
            expect(len(payload) == 12, 'OFFSET_HOLE length', 12, len(payload))
            o, hl = struct.unpack('>QI', payload)
            expect(hl > 0 and off <= o and o + hl <= off + ln, 'OFFSET_HOLE range',
                   'inside [%d, %d)' % (off, off + ln), '[%d, %d)' % (o, o + hl))
            st['covered'].append((o, o + hl))
        elif ctype == CHUNK_NONE:
            expect(payload == b'' and done, 'NONE chunk', 'empty with DONE',
                   '%d bytes done=%s' % (len(payload), done))
        elif ctype in (CHUNK_ERROR, CHUNK_ERROR_OFFSET):
            expect(len(payload) >= 6, 'error chunk length', '>= 6', len(payload))
            err, mlen = struct.unpack('>IH', payload[:6])
            expect(err != 0, 'error chunk errno', 'non-zero', err)
            expect(6 + mlen <= len(payload), 'error chunk message length',
                   '<= payload', mlen)
            st['err'] = err
        elif ctype == CHUNK_BLOCK_STATUS:
            expect(cmd == CMD_BLOCK_STATUS, 'BLOCK_STATUS chunk', 'only for BLOCK_STATUS', cmd)
            st['bs'] = payload
        else:
            raise Fail('chunk type: expected a known type, actual %d' % ctype)
        if done:
            data = b''
            if cmd == CMD_READ and st['err'] == 0:
                expect(ln <= 32 << 20, 'READ of %d bytes' % ln, 'an error', 'success')
                cov = sorted(st['covered'])
                pos = off
                for lo, hi in cov:
                    expect(lo == pos, 'READ chunks cover the range without gap/overlap',
                           'next chunk at %d' % pos, 'chunk at %d' % lo)
                    pos = hi
                expect(pos == off + ln, 'READ chunks cover the range', 'up to %d' % (off + ln), pos)
                buf = bytearray(ln)     # holes stay zero
                for o, d in st['pieces']:
                    buf[o - off:o - off + len(d)] = d
                data = bytes(buf)
            out[cookie] = (st['err'], data if 'bs' not in st else st['bs'])
            del pending[cookie]
    return out


def ref_bytes(ref, off, ln):
    ref.seek(off)
    return ref.read(ln)


# --- scenarios ------------------------------------------------------------------------------
SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def bad_client_flags(a):
    """Client flags with reserved bits set: the server must drop us."""
    c = Conn(a.unix)
    c.greeting(client_flags=0xfffffff1)
    c.expect_close(5, 'after client flags 0xfffffff1')
    return 'dropped'


@scenario
def bad_option_magic(a):
    """An option with the wrong magic cannot be resynchronised: close."""
    c = Conn(a.unix)
    c.greeting()
    c.send(struct.pack('>QII', 0x1122334455667788, OPT_GO, 0))
    c.expect_close(5, 'after a bad option magic')
    return 'dropped'


@scenario
def huge_option_length(a):
    """GO with data length 4 GiB - 1, nothing sent: close promptly (hard cap)."""
    c = Conn(a.unix)
    c.greeting()
    c.send(struct.pack('>QII', IHAVEOPT, OPT_GO, 0xffffffff) + b'\0' * 16)
    t = c.expect_close(5, 'after an option of length 0xffffffff')
    return 'dropped after %.1f s' % t


@scenario
def big_unknown_option(a):
    """An unknown option with 100 KiB of data: an error reply, then GO works."""
    c = Conn(a.unix)
    c.greeting()
    c.opt(0x0fedcba9, os.urandom(100 << 10))
    rtype, _ = c.opt_reply(0x0fedcba9)
    expect(rtype & 0x80000000, 'reply to a 100 KiB unknown option', 'an error', hex(rtype))
    c.structured_reply()
    c.go()
    return 'error 0x%x, then GO ok' % rtype


@scenario
def unknown_options(a):
    """Unknown/unsupported option codes get ERR_UNSUP and the connection
    stays usable: then GO and a READ work."""
    c = Conn(a.unix)
    c.greeting()
    got = []
    for code, data in ((0x07654321, b'abcd'), (OPT_PEEK, b''), (12, b''), (0xffff, b'x' * 100),
                       (0x7fffffff, b''), (OPT_STARTTLS, b'')):
        c.opt(code, data)
        rtype, _ = c.opt_reply(code)
        if code == OPT_STARTTLS:
            expect(rtype in (REP_ERR_UNSUP, 0x80000002), 'STARTTLS reply',
                   'ERR_UNSUP or ERR_POLICY', hex(rtype))
        else:
            expect(rtype == REP_ERR_UNSUP, 'reply to option 0x%x' % code, 'ERR_UNSUP', hex(rtype))
        got.append(hex(code))
    # Bad syntax of known options: ERR_INVALID, still usable.
    c.opt(OPT_LIST, b'junk')
    rtype, _ = c.opt_reply(OPT_LIST)
    expect(rtype == REP_ERR_INVALID, 'LIST with data', 'ERR_INVALID', hex(rtype))
    c.opt(OPT_GO, struct.pack('>I', 1000) + b'root')   # name length past the data
    rtype, _ = c.opt_reply(OPT_GO)
    expect(rtype == REP_ERR_INVALID, 'GO with a name length past the data', 'ERR_INVALID',
           hex(rtype))
    c.opt(OPT_GO, struct.pack('>I', 7) + b'missing' + struct.pack('>H', 0))
    rtype, _ = c.opt_reply(OPT_GO)
    expect(rtype == REP_ERR_UNKNOWN, 'GO for a missing export', 'ERR_UNKNOWN', hex(rtype))
    c.structured_reply()
    size = c.go(b'root', infos=(1, 2, 3, 0x1234))
    c.request(CMD_READ, 0, 4096, 7)
    res = collect(c, {7: (CMD_READ, 0, 4096)}, a.ref)
    expect(res[7] == (0, ref_bytes(a.ref, 0, 4096)), 'READ after the abuse', 'image bytes',
           'error %d' % res[7][0])
    return 'ERR_UNSUP for %s, then GO (size %d) and READ ok' % (' '.join(got), size)


@scenario
def truncated_option(a):
    """An option header announcing 100 bytes, 10 sent, then close."""
    c = Conn(a.unix)
    c.greeting()
    c.send(struct.pack('>QII', IHAVEOPT, OPT_GO, 100) + b'0123456789')
    c.close()
    c = Conn(a.unix)
    c.greeting()
    c.send(struct.pack('>QI', IHAVEOPT, OPT_GO))   # header cut short
    c.close()
    c = Conn(a.unix)
    c.close()                                      # before the greeting is read
    return 'three truncated handshakes'


@scenario
def stall(a):
    """A client that connects and sends nothing is dropped after the
    handshake deadline; so is one that stops mid-handshake.  One that
    finished its handshake is not: the deadline is the handshake's only,
    and an idle client in transmission is still served after it."""
    done = Conn(a.unix)
    done.handshake(structured=False)
    c = Conn(a.unix)
    c.greeting(client_flags=None)
    t = c.expect_close(a.stall_timeout, 'silent client after the handshake deadline')
    c2 = Conn(a.unix)
    c2.greeting()
    c2.opt(OPT_LIST)
    while c2.opt_reply(OPT_LIST)[0] != REP_ACK:
        pass
    t2 = c2.expect_close(a.stall_timeout, 'client stalled after LIST')
    # Idle for two deadlines by now.
    done.request(CMD_READ, 0, 4096, 9)
    res = collect(done, {9: (CMD_READ, 0, 4096)}, a.ref)
    expect(res[9] == (0, ref_bytes(a.ref, 0, 4096)),
           'READ by a client idle in transmission past the handshake deadline',
           'image bytes', 'error %d' % res[9][0])
    done.close()
    return ('silent client dropped after %.1f s, mid-handshake after %.1f s; '
            'the one in transmission still served' % (t, t2))


@scenario
def abort(a):
    """NBD_OPT_ABORT: ACK, then the server closes."""
    c = Conn(a.unix)
    c.greeting()
    c.opt(OPT_ABORT)
    rtype, d = c.opt_reply(OPT_ABORT)
    expect(rtype == REP_ACK and d == b'', 'ABORT reply', 'ACK', hex(rtype))
    c.expect_close(5, 'after ABORT')
    return 'ACK then close'


@scenario
def export_name(a):
    """Old-style end of handshake: EXPORT_NAME, 134 or 10 bytes, simple replies."""
    for flags, n in ((1, 134), (3, 10), (0, 134)):
        c = Conn(a.unix)
        c.greeting(client_flags=flags)
        c.opt(OPT_EXPORT_NAME, b'root')
        d = c.recv_exact(n, 'EXPORT_NAME reply with client flags %d' % flags)
        size, tflags = struct.unpack('>QH', d[:10])
        expect(size == a.size, 'EXPORT_NAME size', a.size, size)
        expect(d[10:] == bytes(n - 10), 'EXPORT_NAME padding', 'zeros', d[10:].hex())
        c.request(CMD_READ, a.size - 512, 512, 1)
        res = collect(c, {1: (CMD_READ, a.size - 512, 512)}, a.ref)
        expect(res[1] == (0, ref_bytes(a.ref, a.size - 512, 512)), 'READ after EXPORT_NAME',
               'image bytes', 'error %d' % res[1][0])
        c.close()
    c = Conn(a.unix)
    c.greeting()
    c.opt(OPT_EXPORT_NAME, b'no-such-export')
    c.expect_close(5, 'EXPORT_NAME of a missing export')
    return '134/10-byte replies; missing export dropped'


@scenario
def garbage_request_magic(a):
    """A request with a wrong magic: the stream is unparseable, close."""
    c = Conn(a.unix)
    c.handshake()
    c.send(struct.pack('>IHHQQI', 0xdeadbeef, 0, CMD_READ, 1, 0, 512))
    c.expect_close(5, 'after a request with magic 0xdeadbeef')
    c = Conn(a.unix)
    c.handshake()
    c.send(os.urandom(28))
    c.expect_close(5, 'after 28 random bytes as a request')
    return 'dropped'


def bad_requests(a, structured):
    c = Conn(a.unix)
    size = c.handshake(structured=structured)
    cases = [
        ('READ past the end', CMD_READ, size, 1, 0, EINVAL),
        ('READ crossing the end', CMD_READ, size - 1, 2, 0, EINVAL),
        ('READ offset 2^64-1', CMD_READ, 2**64 - 1, 1, 0, EINVAL),
        ('READ overflowing u64', CMD_READ, 2**64 - 512, 1024, 0, EINVAL),
        ('READ of length 0', CMD_READ, 0, 0, 0, EINVAL),
        ('READ of 4 GiB - 1', CMD_READ, 0, 0xffffffff, 0, None),
        ('READ of 32 MiB + 1', CMD_READ, 0, (32 << 20) + 1, 0, None),
        ('READ with unknown flag 0x8000', CMD_READ, 0, 512, 0x8000, EINVAL),
        ('READ with FUA (not advertised)', CMD_READ, 0, 512, 1, EINVAL),
        ('TRIM', CMD_TRIM, 0, 4096, 0, EPERM),
        ('WRITE_ZEROES', CMD_WRITE_ZEROES, 0, 4096, 0, EPERM),
        ('RESIZE (8)', 8, 0, 0, 0, EINVAL),
        ('unknown command 9', 9, 0, 512, 0, EINVAL),
        ('unknown command 0x1234', 0x1234, 0, 512, 0, EINVAL),
        ('unknown command 0xffff', 0xffff, 0, 0, 0, EINVAL),
        ('BLOCK_STATUS without a meta context', CMD_BLOCK_STATUS, 0, 4096, 0, EINVAL),
        ('FLUSH', CMD_FLUSH, 0, 0, 0, 0),
        ('FLUSH with a length', CMD_FLUSH, 0, 512, 0, EINVAL),
    ]
    for i, (what, cmd, off, ln, flags, want) in enumerate(cases):
        cookie = 0x1000 + i
        c.request(cmd, off, ln, cookie, flags)
        res = collect(c, {cookie: (cmd, off, ln)}, a.ref)
        err = res[cookie][0]
        if want is None:
            expect(err in (EINVAL, 75), what, 'EINVAL or EOVERFLOW', err)
        else:
            expect(err == want, what, want, err)
    # WRITE: payload consumed, EPERM, and the connection still parses.
    payload = os.urandom(4096)
    c.request(CMD_WRITE, 0, len(payload), 0xabc, payload=payload)
    c.request(CMD_READ, 0, 4096, 0xabd)
    res = collect(c, {0xabc: (CMD_WRITE, 0, 4096), 0xabd: (CMD_READ, 0, 4096)}, a.ref)
    expect(res[0xabc][0] == EPERM, 'WRITE', 'EPERM', res[0xabc][0])
    expect(res[0xabd] == (0, ref_bytes(a.ref, 0, 4096)), 'READ after WRITE',
           'image bytes (payload consumed)', 'error %d or other bytes' % res[0xabd][0])
    # WRITE past the end with payload: EPERM or EINVAL, payload consumed.
    c.request(CMD_WRITE, size, 512, 0xabe, payload=b'\xee' * 512)
    c.request(CMD_READ, size - 4096, 4096, 0xabf)
    res = collect(c, {0xabe: (CMD_WRITE, size, 512), 0xabf: (CMD_READ, size - 4096, 4096)}, a.ref)
    expect(res[0xabe][0] in (EPERM, EINVAL), 'WRITE past the end', 'EPERM or EINVAL',
           res[0xabe][0])
    expect(res[0xabf] == (0, ref_bytes(a.ref, size - 4096, 4096)), 'READ of the last block',
           'image bytes', 'error %d or other bytes' % res[0xabf][0])
    # DISC: no reply, then close.
    c.request(CMD_DISC, 0, 0, 0xdead)
    c.expect_close(5, 'after NBD_CMD_DISC')
    return '%d bad requests answered; WRITE EPERM with payload consumed' % (len(cases) + 2)


@scenario
def bad_requests_simple(a):
    """Invalid requests get error replies (simple replies) and the
    connection survives: out of range, overflow, length 0, huge, unknown
    commands and flags, writes (EPERM, payload consumed)."""
    return bad_requests(a, structured=False)


@scenario
def bad_requests_structured(a):
    """The same with structured replies: errors come as error chunks."""
    return bad_requests(a, structured=True)


@scenario
def huge_write(a):
    """WRITE announcing a 2 GiB payload that never comes: the server must
    not wait for or buffer it (hard cap): it closes or answers EPERM/EINVAL
    and then closes."""
    c = Conn(a.unix)
    c.handshake()
    c.request(CMD_WRITE, 0, 0x7fffffff, 5, payload=b'\0' * 4096)
    c.s.settimeout(5)
    try:
        b = c.s.recv(65536)
    except socket.timeout:
        raise Fail('WRITE of 2 GiB: expected a close (or error) within 5 s, actual still open')
    except ConnectionResetError:
        b = b''
    if b:
        c.expect_close(5, 'after the reply to a 2 GiB WRITE')
        return 'replied, then closed'
    return 'dropped'


def pipelined(a, structured, n):
    c = Conn(a.unix)
    size = c.handshake(structured=structured)
    rnd = random.Random(1234 + structured)
    pending = {}
    cookies = [0, 2**64 - 1, 0x8000000000000000, 1] + [rnd.getrandbits(64) for _ in range(n)]
    cookies = list(dict.fromkeys(cookies))
    reqs = b''
    for ck in cookies:
        ln = rnd.choice([1, 511, 512, 4096, 65536, 1 << 20, rnd.randrange(1, 200000)])
        off = rnd.randrange(0, size - ln + 1)
        pending[ck] = (CMD_READ, off, ln)
        reqs += struct.pack('>IHHQQI', REQUEST_MAGIC, 0, CMD_READ, ck, off, ln)
    want = dict(pending)
    c.send(reqs)    # all at once: the server must cope with a burst
    res = collect(c, pending, a.ref)
    for ck, (_, off, ln) in want.items():
        err, data = res[ck]
        expect(err == 0, 'READ cookie 0x%016x' % ck, 'success', 'error %d' % err)
        expect(data == ref_bytes(a.ref, off, ln), 'READ cookie 0x%016x (%d bytes at %d)'
               % (ck, ln, off), 'image bytes', 'different bytes')
    # The whole export with 32 MiB reads in flight at once.
    pending = {}
    reqs = b''
    for i, off in enumerate(range(0, size, 32 << 20)):
        ln = min(32 << 20, size - off)
        pending[0x5000 + i] = (CMD_READ, off, ln)
        reqs += struct.pack('>IHHQQI', REQUEST_MAGIC, 0, CMD_READ, 0x5000 + i, off, ln)
    want = dict(pending)
    c.send(reqs)
    res = collect(c, pending, a.ref)
    for ck, (_, off, ln) in want.items():
        expect(res[ck] == (0, ref_bytes(a.ref, off, ln)), '32 MiB READ at %d' % off,
               'image bytes', 'error %d or other bytes' % res[ck][0])
    c.request(CMD_DISC, 0, 0, 0)
    c.expect_close(5, 'after DISC')
    return '%d pipelined READs with distinct cookies, %d x 32 MiB, all correct' % (
        len(cookies), len(want))


@scenario
def pipelined_simple(a):
    """Many READs in flight (cookies 0, 2^64-1, random) with simple
    replies: each answered once, with the right bytes."""
    return pipelined(a, False, 124)


@scenario
def pipelined_structured(a):
    """The same with structured replies: chunks well-formed (OFFSET_DATA /
    OFFSET_HOLE inside the range, covering it exactly, DONE last)."""
    return pipelined(a, True, 124)


@scenario
def block_status(a):
    """base:allocation via SET_META_CONTEXT, then BLOCK_STATUS: one
    well-formed chunk with our context id, extents > 0, inside the export."""
    c = Conn(a.unix)
    c.greeting()
    # SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID.
    q = b'base:allocation'
    data = struct.pack('>I', 4) + b'root' + struct.pack('>I', 1) + struct.pack('>I', len(q)) + q
    c.opt(OPT_SET_META, data)
    rtype, _ = c.opt_reply(OPT_SET_META)
    expect(rtype == REP_ERR_INVALID, 'SET_META_CONTEXT before STRUCTURED_REPLY', 'ERR_INVALID',
           hex(rtype))
    c.structured_reply()
    c.opt(OPT_SET_META, data)
    ctx = None
    while True:
        rtype, d = c.opt_reply(OPT_SET_META)
        if rtype == REP_ACK:
            break
        expect(rtype == REP_META, 'SET_META_CONTEXT reply', 'META_CONTEXT or ACK', hex(rtype))
        ctx = struct.unpack('>I', d[:4])[0]
        expect(d[4:] == q, 'meta context name', q, d[4:])
    expect(ctx is not None, 'SET_META_CONTEXT', 'a META_CONTEXT reply', 'none')
    size = c.go(b'root')
    for i, (off, ln, flags) in enumerate(((0, min(size, 0xffffffff), 0), (4096, 4096, 8),
                                          (size - 512, 512, 0))):
        c.request(CMD_BLOCK_STATUS, off, ln, 0x77 + i, flags)
        res = collect(c, {0x77 + i: (CMD_BLOCK_STATUS, off, ln)}, a.ref)
        err, payload = res[0x77 + i]
        expect(err == 0, 'BLOCK_STATUS(%d, %d)' % (off, ln), 'success', 'error %d' % err)
        expect(len(payload) >= 12 and (len(payload) - 4) % 8 == 0, 'BLOCK_STATUS payload',
               '4 + 8n bytes', len(payload))
        cid = struct.unpack('>I', payload[:4])[0]
        expect(cid == ctx, 'BLOCK_STATUS context id', ctx, cid)
        ext = [struct.unpack('>II', payload[j:j + 8]) for j in range(4, len(payload), 8)]
        total = 0
        for k, (el, st) in enumerate(ext):
            expect(el > 0, 'extent length', '> 0', el)
            expect(not st & ~3, 'extent status', 'HOLE/ZERO bits only', hex(st))
            if k < len(ext) - 1:
                total += el
        expect(total < ln, 'all extents but the last', '< request length', total)
        expect(off + total + ext[-1][0] <= size, 'extents', 'inside the export',
               off + total + ext[-1][0])
        if flags & 8:
            expect(len(ext) == 1 and ext[0][0] <= ln, 'REQ_ONE', 'one extent <= length', ext)
    c.request(CMD_BLOCK_STATUS, size, 4096, 0x99)
    res = collect(c, {0x99: (CMD_BLOCK_STATUS, size, 4096)}, a.ref)
    expect(res[0x99][0] == EINVAL, 'BLOCK_STATUS past the end', EINVAL, res[0x99][0])
    return 'context id %d, extents well-formed' % ctx


@scenario
def disc_in_flight(a):
    """DISC with READs in flight: all answered, then close."""
    c = Conn(a.unix)
    size = c.handshake()
    pending = {}
    reqs = b''
    for i in range(32):
        off = (i * 1048576) % max(size - 65536, 1)
        pending[100 + i] = (CMD_READ, off, 65536)
        reqs += struct.pack('>IHHQQI', REQUEST_MAGIC, 0, CMD_READ, 100 + i, off, 65536)
    reqs += struct.pack('>IHHQQI', REQUEST_MAGIC, 0, CMD_DISC, 999, 0, 0)
    c.send(reqs)
    want = dict(pending)
    res = collect(c, pending, a.ref)
    for ck, (_, off, ln) in want.items():
        expect(res[ck] == (0, ref_bytes(a.ref, off, ln)), 'READ before DISC', 'image bytes',
               'error %d' % res[ck][0])
    c.expect_close(5, 'after DISC')
    return '32 READs answered, then closed'


@scenario
def close_mid_request(a):
    """Clients vanishing mid-request, mid-payload and with replies pending."""
    c = Conn(a.unix)
    c.handshake()
    c.send(struct.pack('>IHH', REQUEST_MAGIC, 0, CMD_READ))    # half a header
    c.close()
    c = Conn(a.unix)
    c.handshake()
    c.request(CMD_WRITE, 0, 65536, 1, payload=b'x' * 1000)    # payload cut short
    c.close()
    # Replies never read: the connection goes while its file reads are in
    # flight, so the last read to complete frees it; a few sizes, so that
    # the close lands at different points of the reads.
    for n, ln in ((64, 1 << 20), (16, 65536), (4, 4096), (128, 1 << 16)):
        c = Conn(a.unix)
        c.handshake()
        for i in range(n):
            c.request(CMD_READ, (i * 7919 * 4096) % max(a.size - ln, 1), ln, i)
        c.close()
    return 'six abrupt closes'


def check_infos(infos, size, what):
    """Checks the NBD_REP_INFO payloads of an INFO/GO reply (fact sheet
    A4/A5, checklist 19-22)."""
    types = [struct.unpack('>H', d[:2])[0] for d in infos]
    expect(types and types[0] == 0, '%s: first INFO' % what, 'NBD_INFO_EXPORT', types)
    for d in infos:
        t = struct.unpack('>H', d[:2])[0]
        if t == 0:
            expect(len(d) == 12, '%s: INFO_EXPORT length' % what, 12, len(d))
            sz, fl = struct.unpack('>QH', d[2:])
            expect(sz == size, '%s: export size' % what, size, sz)
            expect(fl & 3 == 3 and not fl & (0x08 | 0x20 | 0x40 | 0x200 | 0x800 | 0x1000),
                   '%s: transmission flags' % what,
                   'HAS_FLAGS|READ_ONLY, no FUA/TRIM/WRITE_ZEROES/RESIZE/FAST_ZERO', hex(fl))
        elif t == 3:
            expect(len(d) == 14, '%s: INFO_BLOCK_SIZE length' % what, 14, len(d))
            mn, pref, mx = struct.unpack('>III', d[2:])
            pow2 = lambda x: x and not x & (x - 1)
            expect(pow2(mn) and mn <= 65536 and pow2(pref) and pref >= max(mn, 512) and
                   mx >= pref and mx % mn == 0 and size % mn == 0,
                   '%s: block sizes' % what, 'consistent min/preferred/max (checklist 22)',
                   (mn, pref, mx))
        elif t in (1, 2):
            expect(len(d) >= 2, '%s: INFO_NAME/DESCRIPTION length' % what, '>= 2', len(d))
    return types


def info_request(c, code, name, reqs):
    data = struct.pack('>I', len(name)) + name + struct.pack('>H', len(reqs))
    data += b''.join(struct.pack('>H', r) for r in reqs)
    c.opt(code, data)
    infos = []
    while True:
        rtype, d = c.opt_reply(code)
        if rtype == REP_ACK:
            return infos
        expect(rtype == REP_INFO, 'reply to INFO/GO %r' % name, 'INFO or ACK', hex(rtype))
        infos.append(d)


@scenario
def info_and_lists(a):
    """NBD_OPT_INFO (stays in haggling), GO with NAME/DESCRIPTION/BLOCK_SIZE
    requests, LIST and LIST_META_CONTEXT, all checked field by field."""
    c = Conn(a.unix)
    c.greeting()
    infos = info_request(c, OPT_INFO, b'root', (1, 2, 3, 0x1234))
    types = check_infos(infos, a.size, 'INFO "root"')
    expect(3 in types, 'INFO with a BLOCK_SIZE request', 'an INFO_BLOCK_SIZE reply', types)
    for d in infos:
        if struct.unpack('>H', d[:2])[0] == 1:
            expect(d[2:] == b'root', 'INFO_NAME of export root', "b'root'", d[2:])
    # The default export "" is the GPT disk, not the EROFS (--ref).
    for d in info_request(c, OPT_INFO, b'', (1,)):
        if struct.unpack('>H', d[:2])[0] == 1:
            expect(d[2:] == b'disk', 'INFO_NAME of the default export', "b'disk'", d[2:])
    # LIST: one REP_SERVER per export, well-formed, then ACK.
    c.opt(OPT_LIST)
    names = []
    while True:
        rtype, d = c.opt_reply(OPT_LIST)
        if rtype == REP_ACK:
            break
        expect(rtype == REP_SERVER, 'LIST reply', 'REP_SERVER or ACK', hex(rtype))
        n = struct.unpack('>I', d[:4])[0]
        expect(n + 4 <= len(d), 'REP_SERVER name length', '<= payload - 4', n)
        names.append(d[4:4 + n])
    expect(b'root' in names and b'disk' in names, 'LIST', "exports b'root' and b'disk'", names)
    # LIST_META_CONTEXT with no queries: base:allocation.
    c.opt(OPT_LIST_META, struct.pack('>I', 4) + b'root' + struct.pack('>I', 0))
    ctxs = []
    while True:
        rtype, d = c.opt_reply(OPT_LIST_META)
        if rtype == REP_ACK:
            break
        expect(rtype == REP_META, 'LIST_META_CONTEXT reply', 'META_CONTEXT or ACK', hex(rtype))
        ctxs.append(d[4:])
    expect(b'base:allocation' in ctxs, 'LIST_META_CONTEXT', 'base:allocation', ctxs)
    # INFO for a missing export: ERR_UNKNOWN, no INFO before it.
    c.opt(OPT_INFO, struct.pack('>I', 4) + b'nope' + struct.pack('>H', 0))
    rtype, _ = c.opt_reply(OPT_INFO)
    expect(rtype == REP_ERR_UNKNOWN, 'INFO for a missing export', 'ERR_UNKNOWN', hex(rtype))
    # Still haggling: GO with requests, then transmission.
    c.structured_reply()
    infos = info_request(c, OPT_GO, b'root', (3, 1, 2))
    types = check_infos(infos, a.size, 'GO "root"')
    expect(sorted(set(types)) == sorted(types), 'GO replies', 'each INFO type once', types)
    c.structured = True
    c.request(CMD_READ, 1024, 4096, 1, flags=0)
    res = collect(c, {1: (CMD_READ, 1024, 4096)}, a.ref)
    expect(res[1] == (0, ref_bytes(a.ref, 1024, 4096)), 'READ after INFO/LIST/GO',
           'image bytes', 'error %d' % res[1][0])
    return 'INFO types %s; exports %s; contexts %s' % (types, names, ctxs)


@scenario
def read_df(a):
    """READ with NBD_CMD_FLAG_DF (structured replies): one content chunk
    per request, also across padding and holes, up to 32 MiB."""
    c = Conn(a.unix)
    size = c.handshake(structured=True)
    expect(c.tflags & 0x80, 'transmission flags with structured replies', 'SEND_DF', hex(c.tflags))
    rnd = random.Random(99)
    for i in range(40):
        ln = rnd.choice([1, 4096, 100000, 1 << 20, min(32 << 20, size)])
        off = rnd.randrange(0, size - ln + 1)
        c.request(CMD_READ, off, ln, 500 + i, flags=4)
        chunks = 0
        while True:
            cookie, ctype, payload, done = c.reply()
            expect(cookie == 500 + i, 'DF reply cookie', 500 + i, cookie)
            if ctype in (CHUNK_OFFSET_DATA, CHUNK_OFFSET_HOLE):
                chunks += 1
                if ctype == CHUNK_OFFSET_DATA:
                    o = struct.unpack('>Q', payload[:8])[0]
                    expect(o == off and len(payload) - 8 == ln, 'DF data chunk',
                           'the whole range at once', (o, len(payload) - 8))
                    expect(payload[8:] == ref_bytes(a.ref, off, ln), 'DF data', 'image bytes',
                           'other bytes')
                else:
                    o, hl = struct.unpack('>QI', payload)
                    expect(o == off and hl == ln and ref_bytes(a.ref, off, ln) == bytes(ln),
                           'DF hole chunk', 'the whole (zero) range', (o, hl))
            else:
                expect(ctype == CHUNK_NONE, 'DF chunk type', 'data, hole or none', ctype)
            if done:
                break
        expect(chunks == 1, 'content chunks for a DF read of %d at %d' % (ln, off), 1, chunks)
    return '40 DF reads, one chunk each'


@scenario
def option_flood(a):
    """Options without end (LIST after LIST): the server must cap them and
    close the connection (fact sheet A14), not serve them forever."""
    c = Conn(a.unix)
    c.greeting()
    for i in range(1, 5001):
        try:
            c.opt(OPT_LIST)
            while c.opt_reply(OPT_LIST)[0] != REP_ACK:
                pass
        except (Fail, OSError):
            expect(i > 16, 'options served before the cap', 'more than 16', i - 1)
            return 'closed after %d options' % (i - 1)
    raise Fail('option flood: expected a close after a capped number of options, '
               'actual 5000 LISTs answered')


@scenario
def many_connections(a):
    """60 clients at once, half idle after GO, half stuck mid-handshake: a
    new client still gets a handshake and correct data."""
    held = []
    for i in range(30):
        c = Conn(a.unix)
        c.handshake()
        held.append(c)
        c = Conn(a.unix)
        c.greeting()
        held.append(c)
    c = Conn(a.unix)
    c.handshake()
    c.request(CMD_READ, 0, 65536, 42)
    res = collect(c, {42: (CMD_READ, 0, 65536)}, a.ref)
    expect(res[42] == (0, ref_bytes(a.ref, 0, 65536)), 'READ with 60 other clients connected',
           'image bytes', 'error %d' % res[42][0])
    for h in held:
        h.close()
    c.close()
    return '61 connections served'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--unix', help='server socket')
    ap.add_argument('--ref', help='the image (--write-image output)')
    ap.add_argument('--stall-timeout', type=float, default=15,
                    help='seconds to wait for the handshake deadline to drop a client')
    ap.add_argument('--list', action='store_true', help='list the scenarios')
    ap.add_argument('scenarios', nargs='*')
    a = ap.parse_args()
    if a.list:
        for name, fn in SCENARIOS.items():
            print('%-24s %s' % (name, fn.__doc__.split('\n')[0]))
        return 0
    if not a.unix or not a.ref or not a.scenarios:
        ap.error('--unix, --ref and a scenario are needed')
    a.ref = open(a.ref, 'rb')
    a.ref.seek(0, 2)
    a.size = a.ref.tell()
    failed = 0
    for name in a.scenarios:
        if name not in SCENARIOS:
            print('FAIL %s: no such scenario' % name)
            failed += 1
            continue
        try:
            detail = SCENARIOS[name](a)
            print('PASS %s: %s' % (name, detail))
        except Fail as e:
            print('FAIL %s: %s' % (name, e))
            failed += 1
        except OSError as e:
            print('FAIL %s: unexpected socket error: %s' % (name, e))
            failed += 1
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
