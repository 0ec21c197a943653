/* SPDX-License-Identifier: MIT */
/*
 * test-request.c - the transmission phase (server/request.c, reply.c,
 * source.c) driven with byte buffers over a small hand-made region map,
 * and both event loops (io_uring, plain) driven over a Unix socket.
 *
 * The map, 143360 bytes:
 *
 *   [0, 4096)          MEM   byte i = i * 7 + 1
 *   [4096, 135168)     ZERO  128 KiB
 *   [135168, 140168)   FILE  5000 bytes, byte i = i * 13 + 5
 *   [140168, 143360)   ZERO  (padding to 4 KiB)
 *
 * Expected replies are worked out by hand from nbd-protocol.md (A7, A9,
 * A10) and the two rules of reply.c: zero runs are reported in whole
 * 512-byte sectors (block status: the padding is data up to 140288, zero
 * from there), and READ replies use OFFSET_HOLE only for zero regions of
 * at least 64 KiB (the 128 KiB region; the padding goes as data).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/internal.h"
#include "tests/unit/nbd-client.h"

#define SIZE 143360
#define FILE_START 135168
#define FILE_LEN 5000

static uint8_t out[1 << 20];
static size_t out_len, out_pos;

static void cap_send(struct srv_conn *c, struct srv_reply *rp)
{
	assert_true(out_len + rp->len <= sizeof(out));
	memcpy(out + out_len, rp->buf, rp->len);
	out_len += rp->len;
	srv_reply_free(rp);
}

/* The file reads, done synchronously the way plain.c does them. */
static void cap_read(struct srv_conn *c, struct srv_reply *rp)
{
	for (size_t i = 0; i < rp->nsegs && !rp->err; i++) {
		struct srv_read_seg *s = &rp->segs[i];
		int fd = src_cache_get(rp->ex->cache, s->source, s->len);
		if (fd < 0) {
			rp->err = fd;
			break;
		}
		ssize_t n = pread(fd, rp->buf + s->buf_off, s->len, (off_t)s->file_off);
		if (n != (ssize_t)s->len) {
			rp->err = -EIO;
			src_cache_failed(rp->ex->cache, s->source, fd, -EIO);
		} else {
			rp->err = src_cache_check(rp->ex->cache, s->source, fd);
		}
		src_cache_put(rp->ex->cache, s->source, fd);
	}
	srv_read_finish(rp);
	cap_send(c, rp);
}

static const struct srv_conn_ops cap_ops = { .send = cap_send, .read = cap_read };

static struct region_map map;
static uint8_t mem[4096];
static uint8_t expect[SIZE];	/* the export's bytes, from the table above */
static char path[64];
/*
 * A second export, "many": the file's first 5000 bytes as 100 regions of
 * 50 bytes, each from a source of its own (so none merge), then zeros to
 * 8192: a READ of it needs 100 file reads.
 */
static struct region_map many;
/*
 * A third export, "odd": a zero span that ends off a sector boundary in
 * the middle of the export, then the file:
 *
 *   [0, 4096)          MEM
 *   [4096, 9096)       ZERO  5000 bytes, ending 400 bytes into a sector
 *   [9096, 14096)      FILE  5000 bytes
 *   [14096, 16384)     ZERO  (padding to 4 KiB)
 */
static struct region_map odd;
static struct srv_export exps[3] = {
	{ .name = "root", .description = "r", .map = &map },
	{ .name = "many", .description = "m", .map = &many },
	{ .name = "odd", .description = "o", .map = &odd },
};
static struct srv_config cfg = {
	.exports = exps, .nexports = 3, .default_export = "root", .stop_fd = -1,
	.handshake_timeout_sec = 10,
};
static struct srv_ctx srv;
static struct srv_conn conn;

/*
 * While hold_opens is set, open_source() waits (held counts the waiters):
 * the reads that need the file stay in flight for as long as a test wants.
 */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static bool hold_opens;
static unsigned int held;

static int open_source(const struct region_source *src, unsigned int flags)
{
	(void)flags;
	pthread_mutex_lock(&hold_lock);
	held++;
	pthread_cond_broadcast(&hold_cond);
	while (hold_opens)
		pthread_cond_wait(&hold_cond, &hold_lock);
	held--;
	pthread_mutex_unlock(&hold_lock);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = region_source_check(src, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static int setup(void **state)
{
	struct stat st;
	uint8_t file[FILE_LEN];
	uint32_t id;

	for (size_t i = 0; i < sizeof(mem); i++)
		mem[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < FILE_LEN; i++)
		file[i] = (uint8_t)(i * 13 + 5);
	memset(expect, 0, sizeof(expect));
	memcpy(expect, mem, sizeof(mem));
	memcpy(expect + FILE_START, file, FILE_LEN);

	strcpy(path, "/tmp/test-request-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, file, FILE_LEN), FILE_LEN);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);

	region_map_init(&map);
	struct region_source src = {
		.open = open_source, .name = "usr/bin/test", .size = FILE_LEN,
		.mtime_sec = st.st_mtim.tv_sec, .mtime_nsec = (uint32_t)st.st_mtim.tv_nsec,
	};
	assert_int_equal(region_add_mem(&map, mem, sizeof(mem)), 0);
	assert_int_equal(region_add_zero(&map, 128 << 10), 0);
	assert_int_equal(region_add_source(&map, &src, &id), 0);
	assert_int_equal(region_add_file(&map, id, 0, FILE_LEN), 0);
	assert_int_equal(region_pad_to(&map, 4096), 0);
	assert_int_equal(map.size, SIZE);
	region_map_init(&many);
	for (uint32_t i = 0; i < 100; i++) {
		assert_int_equal(region_add_source(&many, &src, &id), 0);
		assert_int_equal(region_add_file(&many, id, i * 50, 50), 0);
	}
	assert_int_equal(region_pad_to(&many, 4096), 0);
	assert_int_equal(many.nregions, 101);
	assert_int_equal(many.size, 8192);
	region_map_init(&odd);
	assert_int_equal(region_add_source(&odd, &src, &id), 0);
	assert_int_equal(region_add_mem(&odd, mem, sizeof(mem)), 0);
	assert_int_equal(region_add_zero(&odd, 5000), 0);
	assert_int_equal(region_add_file(&odd, id, 0, FILE_LEN), 0);
	assert_int_equal(region_pad_to(&odd, 4096), 0);
	assert_int_equal(odd.size, 16384);
	assert_int_equal(srv_ctx_init(&srv, &cfg), 0);
	out_len = out_pos = 0;
	return 0;
}

static int teardown(void **state)
{
	srv_ctx_free(&srv);
	region_map_free(&map);
	region_map_free(&many);
	region_map_free(&odd);
	unlink(path);
	return 0;
}

/*
 * Builds the client side of a handshake ending in GO name into b; with
 * meta, SET_META_CONTEXT names the same export.
 */
static size_t mkhandshake_export(uint8_t *b, const char *name, bool structured,
				 bool meta)
{
	uint8_t d[64];
	uint32_t nl = (uint32_t)strlen(name);
	size_t n = 4;
	put_be32(b, 3);
	if (structured)
		n += nbdt_option(b + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	if (meta) {
		put_be32(d, nl);
		memcpy(d + 4, name, nl);
		put_be32(d + 4 + nl, 1);
		put_be32(d + 8 + nl, 15);
		memcpy(d + 12 + nl, "base:allocation", 15);
		n += nbdt_option(b + n, NBD_OPT_SET_META_CONTEXT, d, 27 + nl);
	}
	put_be32(d, nl);
	memcpy(d + 4, name, nl);
	put_be16(d + 4 + nl, 0);
	n += nbdt_option(b + n, NBD_OPT_GO, d, 6 + nl);
	return n;
}

/* Builds the client side of a handshake ending in GO "" into b. */
static size_t mkhandshake(uint8_t *b, bool structured, bool meta)
{
	return mkhandshake_export(b, "", structured, meta);
}

/*
 * Runs the handshake for export name; afterwards out holds only
 * transmission replies.
 */
static void go_export(const char *name, bool structured, bool meta)
{
	uint8_t b[256];
	assert_int_equal(srv_conn_start(&conn, &srv, &cap_ops), 0);
	size_t n = mkhandshake_export(b, name, structured, meta);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
	assert_int_equal(conn.meta_active, meta);
	out_len = out_pos = 0;
}

/* Runs the handshake for the default export "root". */
static void go(bool structured, bool meta)
{
	go_export("", structured, meta);
}

static size_t mkreq(uint8_t *b, uint16_t flags, uint16_t type, uint64_t cookie,
		    uint64_t offset, uint32_t len)
{
	put_be32(b, 0x25609513);
	put_be16(b + 4, flags);
	put_be16(b + 6, type);
	put_be64(b + 8, cookie);
	put_be64(b + 16, offset);
	put_be32(b + 24, len);
	return 28;
}

static void request(uint16_t flags, uint16_t type, uint64_t cookie,
		    uint64_t offset, uint32_t len)
{
	uint8_t b[28];
	assert_int_equal(nbdt_feed(&conn, b, mkreq(b, flags, type, cookie, offset, len)), 28);
}

/* Checks a simple reply header; the data, if any, follows at out_pos. */
static void expect_simple(uint64_t cookie, uint32_t error)
{
	static const uint8_t magic[4] = { 0x67, 0x44, 0x66, 0x98 };
	assert_true(out_len - out_pos >= 16);
	assert_memory_equal(out + out_pos, magic, 4);
	assert_int_equal(get_be32(out + out_pos + 4), error);
	assert_int_equal(get_be64(out + out_pos + 8), cookie);
	out_pos += 16;
}

/* Checks a chunk header; returns its payload length. */
static uint32_t expect_chunk(uint16_t flags, uint16_t type, uint64_t cookie)
{
	static const uint8_t magic[4] = { 0x66, 0x8e, 0x33, 0xef };
	assert_true(out_len - out_pos >= 20);
	assert_memory_equal(out + out_pos, magic, 4);
	assert_int_equal(get_be16(out + out_pos + 4), flags);
	assert_int_equal(get_be16(out + out_pos + 6), type);
	assert_int_equal(get_be64(out + out_pos + 8), cookie);
	uint32_t len = get_be32(out + out_pos + 16);
	out_pos += 20;
	assert_true(out_len - out_pos >= len);
	return len;
}

static void expect_error_chunk(uint64_t cookie, uint32_t error)
{
	uint32_t len = expect_chunk(1, 0x8001, cookie);
	assert_true(len >= 6);
	assert_int_equal(get_be32(out + out_pos), error);
	assert_int_equal(get_be16(out + out_pos + 4), len - 6);
	out_pos += len;
}

static void expect_data_chunk(uint16_t flags, uint64_t cookie, uint64_t off, uint32_t n)
{
	assert_int_equal(expect_chunk(flags, 1, cookie), 8 + n);
	assert_int_equal(get_be64(out + out_pos), off);
	assert_memory_equal(out + out_pos + 8, expect + off, n);
	out_pos += 8 + n;
}

static void expect_hole_chunk(uint16_t flags, uint64_t cookie, uint64_t off, uint32_t n)
{
	assert_int_equal(expect_chunk(flags, 2, cookie), 12);
	assert_int_equal(get_be64(out + out_pos), off);
	assert_int_equal(get_be32(out + out_pos + 8), n);
	out_pos += 12;
}

static void test_simple_read(void **state)
{
	static const struct { uint64_t off; uint32_t len; } reads[] = {
		{ 0, SIZE }, { 1, 1 }, { 4000, 9000 }, { 12287, 511 }, { 135000, 5000 },
		{ FILE_START + 4999, 512 }, { SIZE - 1, 1 },
	};
	go(false, false);
	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		request(0, NBD_CMD_READ, i, reads[i].off, reads[i].len);
		expect_simple(i, 0);
		assert_int_equal(out_len - out_pos, reads[i].len);
		assert_memory_equal(out + out_pos, expect + reads[i].off, reads[i].len);
		out_pos += reads[i].len;
	}
	/* Cross-check against the map's own simple reader. */
	static uint8_t ref[SIZE];
	assert_int_equal(region_map_pread(&map, ref, SIZE, 0), 0);
	assert_memory_equal(ref, expect, SIZE);
}

static void test_structured_read(void **state)
{
	go(true, false);
	request(0, NBD_CMD_READ, 0xffffffffffffffffULL, 0, SIZE);
	expect_data_chunk(0, UINT64_MAX, 0, 4096);
	expect_hole_chunk(0, UINT64_MAX, 4096, 131072);
	expect_data_chunk(1, UINT64_MAX, FILE_START, 8192);
	assert_int_equal(out_pos, out_len);

	/* Inside a hole, unaligned: one hole chunk exactly the request. */
	request(0, NBD_CMD_READ, 7, 5000, 100);
	expect_hole_chunk(1, 7, 5000, 100);
	/* Data then the head of a hole. */
	request(0, NBD_CMD_READ, 8, 4000, 1000);
	expect_data_chunk(0, 8, 4000, 96);
	expect_hole_chunk(1, 8, 4096, 904);
	/* Only the small padding: no hole chunk, data with the zeros. */
	request(0, NBD_CMD_READ, 9, 140288, 3072);
	expect_data_chunk(1, 9, 140288, 3072);
	assert_int_equal(out_pos, out_len);
}

static void test_df_read(void **state)
{
	go(true, false);
	request(NBD_CMD_FLAG_DF, NBD_CMD_READ, 5, 0, SIZE);
	expect_data_chunk(1, 5, 0, SIZE);
	assert_int_equal(out_pos, out_len);
}

/* Checks a BLOCK_STATUS chunk against n (length, status) pairs. */
static void expect_extents(uint64_t cookie, const uint32_t *ext, size_t n)
{
	assert_int_equal(expect_chunk(1, 5, cookie), 4 + 8 * n);
	assert_int_equal(get_be32(out + out_pos), SRV_META_CONTEXT_ID);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(get_be32(out + out_pos + 4 + 8 * i), ext[2 * i]);
		assert_int_equal(get_be32(out + out_pos + 8 + 8 * i), ext[2 * i + 1]);
	}
	out_pos += 4 + 8 * n;
}

static void test_block_status(void **state)
{
	go(true, true);
	static const uint32_t all[] = { 4096, 0, 131072, 3, 5120, 0, 3072, 3 };
	request(0, NBD_CMD_BLOCK_STATUS, 1, 0, SIZE);
	expect_extents(1, all, 4);
	/* The same question gets the same answer. */
	request(0, NBD_CMD_BLOCK_STATUS, 1, 0, SIZE);
	expect_extents(1, all, 4);
	static const uint32_t one[] = { 4096, 0 };
	request(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 2, 0, SIZE);
	expect_extents(2, one, 1);
	static const uint32_t mid[] = { 200, 0 };
	request(0, NBD_CMD_BLOCK_STATUS, 3, 100, 200);
	expect_extents(3, mid, 1);
	static const uint32_t tail[] = { 1000, 3 };
	request(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 4, 5000, 1000);
	expect_extents(4, tail, 1);
	/* Past the end and zero length: ERROR chunks with EINVAL. */
	request(0, NBD_CMD_BLOCK_STATUS, 5, SIZE, 1);
	expect_error_chunk(5, 22);
	request(0, NBD_CMD_BLOCK_STATUS, 6, 0, 0);
	expect_error_chunk(6, 22);
	assert_int_equal(out_pos, out_len);
}

/*
 * A zero span that ends mid-sector in the middle of the export is
 * reported only up to its last whole sector; the sector it ends in is
 * data: every extent but the last (which ends at the export end) is a
 * multiple of 512 (A10 "Lengths SHOULD be multiples of 512 except at the
 * edges of an unaligned query or at EOF"; checklist 69).
 */
static void test_block_status_unaligned_zero_end(void **state)
{
	/* Zero [4096, 8704): 9096 rounded down; data [8704, 14336); the
	 * padding from 14096 rounded up, to the end. */
	static const uint32_t all[] = { 4096, 0, 4608, 3, 5632, 0, 2048, 3 };
	go_export("odd", true, true);
	request(0, NBD_CMD_BLOCK_STATUS, 1, 0, 16384);
	size_t at = out_pos;
	uint32_t len = expect_chunk(1, 5, 1);
	assert_true(len >= 4 + 8 && (len - 4) % 8 == 0);
	for (size_t i = 0; i + 1 < (len - 4) / 8; i++)
		assert_int_equal(get_be32(out + out_pos + 4 + 8 * i) % 512, 0);
	out_pos = at;
	expect_extents(1, all, 4);
	/* From inside the zero span (an unaligned request edge): the rest of
	 * its interior, then data. */
	static const uint32_t mid[] = { 3608, 3, 5632, 0 };
	request(0, NBD_CMD_BLOCK_STATUS, 2, 5096, 9240);
	expect_extents(2, mid, 2);
	assert_int_equal(out_pos, out_len);
}

static void test_block_status_without_context(void **state)
{
	go(true, false);
	request(0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096);
	expect_error_chunk(1, 22);
}

static void test_invalid_simple(void **state)
{
	static const struct {
		uint16_t flags, type;
		uint64_t off;
		uint32_t len, err;
	} cases[] = {
		{ 0, NBD_CMD_READ, SIZE - 1, 2, 22 },		/* past the end */
		{ 0, NBD_CMD_READ, SIZE + 1, 1, 22 },		/* offset past the end */
		{ 0, NBD_CMD_READ, UINT64_MAX, 2, 22 },	/* offset + len overflows */
		{ 0, NBD_CMD_READ, 0, 0, 22 },			/* zero length */
		{ 0, NBD_CMD_READ, 0, (32 << 20) + 1, 22 },	/* above 32 MiB */
		{ NBD_CMD_FLAG_FUA, NBD_CMD_READ, 0, 1, 22 },
		{ NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, 0, 1, 22 },
		{ 0x8000, NBD_CMD_READ, 0, 1, 22 },
		{ NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 1, 22 },	/* DF without SEND_DF */
		{ NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_READ, 0, 1, 22 },
		{ 0, NBD_CMD_TRIM, 0, 4096, 1 },
		{ 0, NBD_CMD_WRITE_ZEROES, 0, 4096, 1 },
		{ 0, NBD_CMD_RESIZE, 0, 0, 22 },
		{ 0, 9, 0, 0, 22 },
		{ 0, 0x1234, 0, 0, 22 },
		{ 0, 0xffff, 0, 0, 22 },
		{ 0, NBD_CMD_FLUSH, 0, 0, 0 },
		{ 0, NBD_CMD_FLUSH, 1, 0, 22 },
		{ 0, NBD_CMD_FLUSH, 0, 1, 22 },
		{ 0, NBD_CMD_CACHE, 0, SIZE, 0 },
		{ 0, NBD_CMD_CACHE, 1, SIZE, 22 },
		{ 0, NBD_CMD_BLOCK_STATUS, 0, 1, 22 },		/* no context */
	};
	go(false, false);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		request(cases[i].flags, cases[i].type, 1000 + i, cases[i].off, cases[i].len);
		expect_simple(1000 + i, cases[i].err);
		assert_int_equal(out_pos, out_len);
	}
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
}

static void test_invalid_structured_read(void **state)
{
	go(true, false);
	/* READ errors are ERROR chunks once structured replies are on. */
	request(0, NBD_CMD_READ, 1, SIZE - 1, 2);
	expect_error_chunk(1, 22);
	request(NBD_CMD_FLAG_FUA, NBD_CMD_READ, 2, 0, 1);
	expect_error_chunk(2, 22);
	request(0, NBD_CMD_READ, 3, 0, (32 << 20) + 1);
	expect_error_chunk(3, 22);
	assert_int_equal(out_pos, out_len);
}

static void test_write_eperm(void **state)
{
	static uint8_t b[28 + 1000 + 28];
	go(false, false);
	mkreq(b, 0, NBD_CMD_WRITE, 42, 0, 1000);
	memset(b + 28, 0xee, 1000);
	mkreq(b + 28 + 1000, 0, NBD_CMD_READ, 43, 0, 16);
	assert_int_equal(nbdt_feed(&conn, b, sizeof(b)), (ssize_t)sizeof(b));
	expect_simple(42, 1);		/* EPERM once the payload was consumed */
	expect_simple(43, 0);		/* the next request parsed correctly */
	assert_memory_equal(out + out_pos, expect, 16);
	out_pos += 16;
	assert_int_equal(out_pos, out_len);

	/* A payload above the hard cap cannot be skipped: drop. */
	mkreq(b, 0, NBD_CMD_WRITE, 44, 0, 0x7fffffff);
	assert_true(srv_conn_step(&conn, b, 28) < 0);
}

static void test_framing(void **state)
{
	uint8_t b[28];
	go(false, false);
	/* DISC: no reply, nothing read afterwards. */
	request(0, NBD_CMD_DISC, 1, 0, 0);
	assert_int_equal(out_len, 0);
	assert_int_equal(conn.phase, SRV_PH_CLOSE);
	assert_int_equal(srv_conn_step(&conn, b, mkreq(b, 0, NBD_CMD_READ, 2, 0, 1)), 0);
	/* A bad magic drops the connection. */
	go(false, false);
	mkreq(b, 0, NBD_CMD_READ, 2, 0, 1);
	b[0] = 0x12;
	assert_true(srv_conn_step(&conn, b, 28) < 0);
	/* A partial header waits for more. */
	go(false, false);
	assert_int_equal(srv_conn_step(&conn, b, 27), 0);
}

static void test_source_changed(void **state)
{
	go(true, false);
	/* Give the file another mtime: reads of it fail with EIO, the rest
	 * still works. */
	struct timespec ts[2] = { { .tv_sec = 1000 }, { .tv_sec = 1000 } };
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	request(0, NBD_CMD_READ, 1, FILE_START, 100);
	expect_error_chunk(1, 5);
	request(0, NBD_CMD_READ, 2, 0, 100);
	expect_data_chunk(1, 2, 0, 100);
	assert_int_equal(out_pos, out_len);
}

static void test_source_shrank(void **state)
{
	go(false, false);
	/* The fd is cached by a first read, then the file shrinks. */
	request(0, NBD_CMD_READ, 1, FILE_START, 100);
	expect_simple(1, 0);
	out_pos += 100;
	assert_int_equal(truncate(path, 10), 0);
	request(0, NBD_CMD_READ, 2, FILE_START + 4000, 100);
	expect_simple(2, 5);
	assert_int_equal(out_pos, out_len);
}

static void test_shutting_down(void **state)
{
	go(true, false);
	conn.shutting_down = true;
	/* A7.4: requests received before the stop get ESHUTDOWN. */
	request(0, NBD_CMD_READ, 1, 0, 100);
	expect_error_chunk(1, 108);
	request(0, NBD_CMD_FLUSH, 2, 0, 0);
	expect_simple(2, 108);
	assert_int_equal(out_pos, out_len);
}

static void test_errno_map(void **state)
{
	assert_int_equal(srv_nbd_errno(0), 0);
	assert_int_equal(srv_nbd_errno(-EPERM), 1);
	assert_int_equal(srv_nbd_errno(-EIO), 5);
	assert_int_equal(srv_nbd_errno(-ENOENT), 5);
	assert_int_equal(srv_nbd_errno(-EINVAL), 22);
	assert_int_equal(srv_nbd_errno(EINVAL), 22);
	assert_int_equal(srv_nbd_errno(-EOVERFLOW), 75);
	assert_int_equal(srv_nbd_errno(-ESHUTDOWN), 108);
}

/* The loops, end to end over a Unix socket. */

struct loop_arg {
	struct srv_config cfg;
	int ret;
};

static void *loop_thread(void *p)
{
	struct loop_arg *a = p;
	a->ret = srv_run(&a->cfg);
	return NULL;
}

static void read_exact(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		assert_true(r > 0);
		p += r;
		n -= (size_t)r;
	}
}

static void run_loop(bool uring)
{
	char sock[108];
	snprintf(sock, sizeof(sock), "%s.sock", path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	int efd = eventfd(0, EFD_CLOEXEC);

	struct loop_arg a = { .cfg = cfg };
	a.cfg.listen_fds = &lfd;
	a.cfg.nlisten = 1;
	a.cfg.stop_fd = efd;
	a.cfg.use_io_uring = uring;
	pthread_t tid;
	assert_int_equal(pthread_create(&tid, NULL, loop_thread, &a), 0);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	uint8_t greet[18];
	read_exact(fd, greet, 18);
	assert_memory_equal(greet, "NBDMAGICIHAVEOPT\0\3", 18);

	/*
	 * Handshake and 256 pipelined READs of 20000 bytes in one write:
	 * 5 MB of replies, more than the in-flight budget and the socket
	 * buffers, so the loop pauses input and resumes short sends.
	 */
	enum { NREQ = 256, LEN = 20000 };
	static uint8_t b[256 + NREQ * 28];
	size_t n = mkhandshake(b, false, false);
	for (unsigned int i = 0; i < NREQ; i++)
		n += mkreq(b + n, 0, NBD_CMD_READ, 0x1000 + i, (i * 97) % (SIZE - LEN + 1), LEN);
	n += mkreq(b + n, 0, NBD_CMD_DISC, 0, 0, 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);

	/* GO: INFO_EXPORT (20 + 12), BLOCK_SIZE (20 + 14), ACK (20). */
	uint8_t hs[86];
	read_exact(fd, hs, sizeof(hs));
	assert_int_equal(get_be32(hs + 12), NBD_REP_INFO);
	assert_int_equal(get_be64(hs + 22), SIZE);
	assert_int_equal(get_be32(hs + 66 + 12), NBD_REP_ACK);

	/* Replies in any order, each whole, each cookie once. */
	bool seen[NREQ] = { false };
	static uint8_t data[LEN];
	for (unsigned int i = 0; i < NREQ; i++) {
		uint8_t h[16];
		read_exact(fd, h, 16);
		assert_int_equal(get_be32(h), 0x67446698);
		assert_int_equal(get_be32(h + 4), 0);
		uint64_t k = get_be64(h + 8) - 0x1000;
		assert_true(k < NREQ && !seen[k]);
		seen[k] = true;
		read_exact(fd, data, LEN);
		assert_memory_equal(data, expect + (k * 97) % (SIZE - LEN + 1), LEN);
	}
	/* After DISC the server closes. */
	assert_int_equal(read(fd, b, 1), 0);
	close(fd);

	/* GO "many", one READ made of 100 file reads. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	read_exact(fd, greet, 18);
	uint8_t d[10];
	put_be32(b, 3);
	put_be32(d, 4);
	memcpy(d + 4, "many", 4);
	put_be16(d + 8, 0);
	n = 4 + nbdt_option(b + 4, NBD_OPT_GO, d, 10);
	n += mkreq(b + n, 0, NBD_CMD_READ, 7, 0, 8192);
	n += mkreq(b + n, 0, NBD_CMD_DISC, 0, 0, 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	read_exact(fd, hs, sizeof(hs));
	assert_int_equal(get_be64(hs + 22), 8192);
	uint8_t h[16];
	read_exact(fd, h, 16);
	assert_int_equal(get_be32(h + 4), 0);
	assert_int_equal(get_be64(h + 8), 7);
	read_exact(fd, data, 8192);
	assert_memory_equal(data, expect + FILE_START, FILE_LEN);
	for (size_t i = FILE_LEN; i < 8192; i++)
		assert_int_equal(data[i], 0);
	assert_int_equal(read(fd, b, 1), 0);
	close(fd);

	/* A client that stays in the handshake when the stop comes. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	read_exact(fd, greet, 18);
	uint64_t one = 1;
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(a.ret, 0);
	assert_int_equal(read(fd, b, 1), 0);
	close(fd);
	close(efd);
	close(lfd);
	unlink(sock);
}

static void test_uring_loop(void **state)
{
	if (srv_uring_probe() < 0)
		skip();
	run_loop(true);
}

static void test_plain_loop(void **state)
{
	run_loop(false);
}

/*
 * The plain loop after DISC: the replies to READs still in flight when it
 * came (here: held in the source's open) must all be sent before the
 * server closes (A7.4), not dropped with their connection freed under them.
 */
static void test_plain_disc_drain(void **state)
{
	char sock[108];
	snprintf(sock, sizeof(sock), "%s.sock", path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	int efd = eventfd(0, EFD_CLOEXEC);

	struct loop_arg a = { .cfg = cfg };
	a.cfg.listen_fds = &lfd;
	a.cfg.nlisten = 1;
	a.cfg.stop_fd = efd;
	a.cfg.use_io_uring = false;
	hold_opens = true;
	pthread_t tid;
	assert_int_equal(pthread_create(&tid, NULL, loop_thread, &a), 0);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	uint8_t greet[18];
	read_exact(fd, greet, 18);

	/* Handshake, NREQ READs of the file, DISC: in one write. */
	enum { NREQ = 8, LEN = 100 };
	uint8_t b[256 + (NREQ + 1) * 28];
	size_t n = mkhandshake(b, false, false);
	for (unsigned int i = 0; i < NREQ; i++)
		n += mkreq(b + n, 0, NBD_CMD_READ, 0x2000 + i, FILE_START + i * LEN, LEN);
	n += mkreq(b + n, 0, NBD_CMD_DISC, 0, 0, 0);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	uint8_t hs[86];
	read_exact(fd, hs, sizeof(hs));
	assert_int_equal(get_be32(hs + 66 + 12), NBD_REP_ACK);

	/* A read waits in open(); the server sends nothing, nor closes. */
	pthread_mutex_lock(&hold_lock);
	while (held == 0)
		pthread_cond_wait(&hold_cond, &hold_lock);
	pthread_mutex_unlock(&hold_lock);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 200), 0);

	pthread_mutex_lock(&hold_lock);
	hold_opens = false;
	pthread_cond_broadcast(&hold_cond);
	pthread_mutex_unlock(&hold_lock);

	/* Every reply, with the file's bytes, then EOF. */
	bool seen[NREQ] = { false };
	uint8_t data[LEN];
	for (unsigned int i = 0; i < NREQ; i++) {
		uint8_t h[16];
		read_exact(fd, h, 16);
		assert_int_equal(get_be32(h), 0x67446698);
		assert_int_equal(get_be32(h + 4), 0);
		uint64_t k = get_be64(h + 8) - 0x2000;
		assert_true(k < NREQ && !seen[k]);
		seen[k] = true;
		read_exact(fd, data, LEN);
		assert_memory_equal(data, expect + FILE_START + k * LEN, LEN);
	}
	assert_int_equal(read(fd, b, 1), 0);
	close(fd);

	uint64_t one = 1;
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(a.ret, 0);
	close(efd);
	close(lfd);
	unlink(sock);
}

/* A loop serving cfg on a fresh Unix socket, in a thread of its own. */
struct test_server {
	struct loop_arg a;
	struct sockaddr_un sa;
	pthread_t tid;
	int lfd, efd;
};

static void server_start(struct test_server *s, bool uring)
{
	s->sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	snprintf(s->sa.sun_path, sizeof(s->sa.sun_path), "%s.sock", path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&s->sa, sizeof(s->sa)), 0);
	assert_int_equal(listen(s->lfd, 16), 0);
	s->efd = eventfd(0, EFD_CLOEXEC);
	s->a = (struct loop_arg){ .cfg = cfg };
	s->a.cfg.listen_fds = &s->lfd;
	s->a.cfg.nlisten = 1;
	s->a.cfg.stop_fd = s->efd;
	s->a.cfg.use_io_uring = uring;
	assert_int_equal(pthread_create(&s->tid, NULL, loop_thread, &s->a), 0);
}

/* Connects, runs the simple-reply handshake for "root"; returns the fd. */
static int server_client(struct test_server *s)
{
	uint8_t b[256], hs[18 + 86];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&s->sa, sizeof(s->sa)), 0);
	size_t n = mkhandshake(b, false, false);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	read_exact(fd, hs, sizeof(hs));
	assert_int_equal(get_be32(hs + 18 + 66 + 12), NBD_REP_ACK);
	return fd;
}

/* Signals the stop; the loop must have returned 0 within secs seconds. */
static void server_stop(struct test_server *s, int secs)
{
	uint64_t one = 1;
	struct timespec ts;
	assert_int_equal(write(s->efd, &one, sizeof(one)), sizeof(one));
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	assert_int_equal(pthread_timedjoin_np(s->tid, NULL, &ts), 0);
	assert_int_equal(s->a.ret, 0);
	close(s->efd);
	close(s->lfd);
	unlink(s->sa.sun_path);
}

/*
 * A client that half-closes (shutdown SHUT_WR) right after its requests,
 * at a message boundary: EOF ends the input, not the connection, so every
 * READ in flight is still answered before the server closes (A7.4), as
 * after DISC.
 */
static void run_half_close(bool uring)
{
	enum { NREQ = 64, LEN = 1000 };
	struct test_server s;
	uint8_t b[NREQ * 28], data[LEN];
	bool seen[NREQ] = { false };
	size_t n = 0;

	server_start(&s, uring);
	int fd = server_client(&s);
	for (unsigned int i = 0; i < NREQ; i++)
		n += mkreq(b + n, 0, NBD_CMD_READ, 0x3000 + i, i * 50, LEN);
	assert_int_equal(write(fd, b, n), (ssize_t)n);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	for (unsigned int i = 0; i < NREQ; i++) {
		uint8_t h[16];
		read_exact(fd, h, 16);
		assert_int_equal(get_be32(h), 0x67446698);
		assert_int_equal(get_be32(h + 4), 0);
		uint64_t k = get_be64(h + 8) - 0x3000;
		assert_true(k < NREQ && !seen[k]);
		seen[k] = true;
		read_exact(fd, data, LEN);
		assert_memory_equal(data, expect + k * 50, LEN);
	}
	assert_int_equal(read(fd, b, 1), 0);
	close(fd);
	server_stop(&s, 10);
}

static void test_uring_half_close(void **state)
{
	if (srv_uring_probe() < 0)
		skip();
	run_half_close(true);
}

static void test_plain_half_close(void **state)
{
	run_half_close(false);
}

/*
 * The io_uring loop's back-pressure and its stop:
 *
 *   - a client that sends READs and never reads a reply: once its
 *     in-flight budget is used up the server stops taking its input, so
 *     the client can write only what the socket and the server's input
 *     buffer hold (well under 1 MiB here), not the 4 MiB of requests
 *     (and 75 MiB of replies the server would queue) it tries;
 *   - on the stop an idle client (handshake done, nothing in flight) is
 *     closed at once, not only after the stop's grace period (5 s);
 *   - the client that does not read is dropped after that grace period:
 *     the loop returns within 15 s, where it would wait for it forever.
 */
static void test_uring_backpressure_stop(void **state)
{
	enum { LEN = 512, CHUNK = 1024 * 28, TOTAL = 150 * CHUNK };
	static uint8_t b[CHUNK];
	struct test_server s;
	size_t written = 0;
	int sndbuf = 64 << 10;

	if (srv_uring_probe() < 0)
		skip();
	server_start(&s, true);
	int fd = server_client(&s);
	int idle = server_client(&s);
	for (size_t n = 0; n < CHUNK; n += 28)
		mkreq(b + n, 0, NBD_CMD_READ, n, 0, LEN);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	while (written < TOTAL) {
		ssize_t w = write(fd, b + written % CHUNK, CHUNK - written % CHUNK);
		if (w > 0) {
			written += (size_t)w;
			continue;
		}
		assert_true(w < 0 && errno == EAGAIN);
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, 500) == 0)
			break;	/* the server takes no more */
	}
	assert_true(written < (1 << 20));

	struct timespec t0, t1;
	uint64_t one = 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(write(s.efd, &one, sizeof(one)), sizeof(one));
	struct pollfd pfd = { .fd = idle, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 3000), 1);
	assert_int_equal(read(idle, b, 1), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 3);
	close(idle);
	/* server_stop() signals again: the eventfd only counts up. */
	server_stop(&s, 15);
	close(fd);
}

/*
 * srv_client_limit() under a low open file limit: what is free is shared
 * between clients (half) and the source cache, so neither can take every
 * fd; a cache left with none would reopen every file on every read.
 */
static void test_client_limit(void **state)
{
	struct rlimit old, low;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	if (old.rlim_max < 256)
		skip();
	low = (struct rlimit){ .rlim_cur = 256, .rlim_max = old.rlim_max };
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	srv_client_limit(&srv, 0, 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_true(srv.max_clients >= 1 && srv.max_clients <= 128);
	assert_true(srv.cache.max_open >= 32 && srv.cache.max_open < 256);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_simple_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_structured_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_df_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_status_unaligned_zero_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_status_without_context, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_simple, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_structured_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_eperm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_framing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_changed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_shrank, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutting_down, setup, teardown),
		cmocka_unit_test(test_errno_map),
		cmocka_unit_test_setup_teardown(test_uring_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_disc_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uring_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_half_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uring_backpressure_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_limit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
