/* SPDX-License-Identifier: MIT */
/*
 * test-handshake.c - the fixed-newstyle handshake (server/handshake.c)
 * driven with byte buffers: each test feeds client bytes to
 * srv_conn_step() and compares the server's bytes with values written out
 * by hand from ../shared/docs/nbd-protocol.md (A3, A4), not from the
 * server's own output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/internal.h"
#include "tests/unit/nbd-client.h"

/* Everything the server sent, in order. */
static uint8_t out[1 << 16];
static size_t out_len, out_pos;

static void cap_send(struct srv_conn *c, struct srv_reply *rp)
{
	assert_true(out_len + rp->len <= sizeof(out));
	memcpy(out + out_len, rp->buf, rp->len);
	out_len += rp->len;
	srv_reply_free(rp);
}

static void cap_read(struct srv_conn *c, struct srv_reply *rp)
{
	fail_msg("no READ in handshake tests");
}

static const struct srv_conn_ops cap_ops = { .send = cap_send, .read = cap_read };

static struct region_map map;
static uint8_t mem[8192];
static struct srv_export exps[2] = {
	{ .name = "root", .description = "the root fs", .map = &map },
	{ .name = "disk", .description = NULL, .map = &map },
};
static struct srv_config cfg = {
	.exports = exps, .nexports = 2, .default_export = "root", .stop_fd = -1,
};
static struct srv_ctx srv;
static struct srv_conn conn;

static int setup(void **state)
{
	region_map_init(&map);
	assert_int_equal(region_add_mem(&map, mem, sizeof(mem)), 0);	/* 8192 bytes */
	assert_int_equal(srv_ctx_init(&srv, &cfg), 0);
	out_len = out_pos = 0;
	assert_int_equal(srv_conn_start(&conn, &srv, &cap_ops), 0);
	return 0;
}

static int teardown(void **state)
{
	srv_ctx_free(&srv);
	region_map_free(&map);
	return 0;
}

static void send_flags(uint32_t flags)
{
	uint8_t b[4];
	put_be32(b, flags);
	assert_int_equal(nbdt_feed(&conn, b, 4), 4);
}

/* Checks the next option reply header; returns its payload length. */
static uint32_t expect_reply(uint32_t opt, uint32_t type)
{
	static const uint8_t magic[8] = { 0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9 };
	assert_true(out_len - out_pos >= 20);
	assert_memory_equal(out + out_pos, magic, 8);
	assert_int_equal(get_be32(out + out_pos + 8), opt);
	assert_int_equal(get_be32(out + out_pos + 12), type);
	uint32_t len = get_be32(out + out_pos + 16);
	assert_true(out_len - out_pos - 20 >= len);
	out_pos += 20;
	return len;
}

static void skip_greeting(void)
{
	out_pos = 18;
}

static void test_greeting(void **state)
{
	/* A3.1: NBDMAGIC, IHAVEOPT, flags 0x0003. */
	static const uint8_t want[18] = {
		0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43,
		0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, 0x00, 0x03,
	};
	assert_int_equal(out_len, 18);
	assert_memory_equal(out, want, 18);
}

static void test_bad_client_flags(void **state)
{
	uint8_t b[4] = { 0, 0, 0, 0x07 };	/* bit 2 is reserved */
	assert_true(nbdt_feed(&conn, b, 4) < 0);
	assert_int_equal(out_len, 18);		/* nothing after the greeting */
}

static void test_unknown_option_then_next(void **state)
{
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, 0x07654321, "abcd", 4);
	n += nbdt_option(b + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	uint32_t len = expect_reply(0x07654321, 0x80000001);	/* ERR_UNSUP */
	out_pos += len;
	assert_int_equal(expect_reply(NBD_OPT_STRUCTURED_REPLY, 1), 0);	/* ACK */
	assert_int_equal(out_pos, out_len);
	assert_true(conn.structured);
}

static void test_unsupported_known_options(void **state)
{
	uint8_t b[64];
	static const uint32_t opts[] = { 4, 5, 11, 12, 0xffff };
	send_flags(3);
	skip_greeting();
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		size_t n = nbdt_option(b, opts[i], NULL, 0);
		assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
		out_pos += expect_reply(opts[i], 0x80000001);
	}
	assert_int_equal(conn.phase, SRV_PH_OPTIONS);
}

static void test_bad_option_magic(void **state)
{
	uint8_t b[16] = { 'X' };
	send_flags(1);
	assert_true(nbdt_feed(&conn, b, sizeof(b)) < 0);
	assert_int_equal(out_len, 18);
}

static void test_go_with_infos(void **state)
{
	uint8_t d[64], b[128];
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	/* GO "root", 4 requests: NAME, DESCRIPTION, BLOCK_SIZE, unknown 0x1234. */
	put_be32(d, 4);
	memcpy(d + 4, "root", 4);
	put_be16(d + 8, 4);
	put_be16(d + 10, 1);
	put_be16(d + 12, 2);
	put_be16(d + 14, 3);
	put_be16(d + 16, 0x1234);
	n += nbdt_option(b + n, NBD_OPT_GO, d, 18);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(8, 1), 0);

	/* INFO_EXPORT: type 0, size 8192, flags HAS_FLAGS|READ_ONLY|SEND_FLUSH|
	 * SEND_DF|CAN_MULTI_CONN|SEND_CACHE = 0x0587. */
	static const uint8_t info_export[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0x05, 0x87,
	};
	assert_int_equal(expect_reply(NBD_OPT_GO, 3), 12);
	assert_memory_equal(out + out_pos, info_export, 12);
	out_pos += 12;
	static const uint8_t info_name[6] = { 0, 1, 'r', 'o', 'o', 't' };
	assert_int_equal(expect_reply(NBD_OPT_GO, 3), 6);
	assert_memory_equal(out + out_pos, info_name, 6);
	out_pos += 6;
	assert_int_equal(expect_reply(NBD_OPT_GO, 3), 2 + 11);
	assert_memory_equal(out + out_pos, "\0\2the root fs", 13);
	out_pos += 13;
	/* BLOCK_SIZE: 1 / 4096 / 32 MiB. */
	static const uint8_t info_bs[14] = {
		0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0,
	};
	assert_int_equal(expect_reply(NBD_OPT_GO, 3), 14);
	assert_memory_equal(out + out_pos, info_bs, 14);
	out_pos += 14;
	assert_int_equal(expect_reply(NBD_OPT_GO, 1), 0);
	assert_int_equal(out_pos, out_len);	/* no padding after the ACK */
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
}

static void test_info_default_and_unknown(void **state)
{
	uint8_t d[64], b[128];
	send_flags(3);
	skip_greeting();
	/* INFO "nope" => ERR_UNKNOWN, nothing before it. */
	put_be32(d, 4);
	memcpy(d + 4, "nope", 4);
	put_be16(d + 8, 0);
	size_t n = nbdt_option(b, NBD_OPT_INFO, d, 10);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_INFO, 0x80000006);
	/* INFO "" => the default export, flags without SEND_DF: 0x0507. */
	put_be32(d, 0);
	put_be16(d + 4, 0);
	n = nbdt_option(b, NBD_OPT_INFO, d, 6);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_INFO, 3), 12);
	assert_int_equal(get_be16(out + out_pos + 10), 0x0507);
	out_pos += 12;
	out_pos += expect_reply(NBD_OPT_INFO, 3);	/* BLOCK_SIZE, unrequested */
	assert_int_equal(expect_reply(NBD_OPT_INFO, 1), 0);
	assert_int_equal(conn.phase, SRV_PH_OPTIONS);	/* INFO changes nothing */
	/* Name length past the data, and a length that is not 6 + N + 2R. */
	put_be32(d, 50);
	n = nbdt_option(b, NBD_OPT_GO, d, 10);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_GO, 0x80000003);
	put_be32(d, 0);
	put_be16(d + 4, 1);
	n = nbdt_option(b, NBD_OPT_GO, d, 7);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_GO, 0x80000003);
	assert_int_equal(out_pos, out_len);
}

static void test_list(void **state)
{
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	/* REP_SERVER: u32 name length, name, description. */
	assert_int_equal(expect_reply(NBD_OPT_LIST, 2), 4 + 4 + 11);
	assert_memory_equal(out + out_pos, "\0\0\0\4rootthe root fs", 19);
	out_pos += 19;
	assert_int_equal(expect_reply(NBD_OPT_LIST, 2), 4 + 4);
	assert_memory_equal(out + out_pos, "\0\0\0\4disk", 8);
	out_pos += 8;
	assert_int_equal(expect_reply(NBD_OPT_LIST, 1), 0);
	/* LIST with data => ERR_INVALID, still usable. */
	n = nbdt_option(b, NBD_OPT_LIST, "x", 1);
	n += nbdt_option(b + n, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_LIST, 0x80000003);
	out_pos += expect_reply(NBD_OPT_LIST, 2);
}

static void test_export_name(void **state)
{
	uint8_t b[64];
	/* Flags 1: 8-byte size, 2-byte flags, 124 zeroes = 134 bytes. */
	send_flags(1);
	size_t n = nbdt_option(b, NBD_OPT_EXPORT_NAME, "disk", 4);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(out_len, 18 + 134);
	static const uint8_t head[10] = { 0, 0, 0, 0, 0, 0, 0x20, 0, 0x05, 0x07 };
	assert_memory_equal(out + 18, head, 10);
	for (size_t i = 28; i < out_len; i++)
		assert_int_equal(out[i], 0);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
	assert_string_equal(conn.ex->exp->name, "disk");
}

static void test_export_name_no_zeroes_and_missing(void **state)
{
	uint8_t b[64];
	send_flags(3);
	size_t n = nbdt_option(b, NBD_OPT_EXPORT_NAME, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(out_len, 18 + 10);
	assert_string_equal(conn.ex->exp->name, "root");	/* "" = default */

	/* A missing export cannot be answered: drop. */
	out_len = 0;
	assert_int_equal(srv_conn_start(&conn, &srv, &cap_ops), 0);
	send_flags(3);
	n = nbdt_option(b, NBD_OPT_EXPORT_NAME, "nope", 4);
	assert_true(nbdt_feed(&conn, b, n) < 0);
	assert_int_equal(out_len, 18);
}

static void test_plain_newstyle(void **state)
{
	uint8_t b[64];
	send_flags(0);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_LIST, 0x80000003);
	n = nbdt_option(b, NBD_OPT_EXPORT_NAME, "root", 4);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(out_len - out_pos, 134);
}

static void test_abort(void **state)
{
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_ABORT, "junk", 4);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_ABORT, 1), 0);
	assert_int_equal(conn.phase, SRV_PH_CLOSE);
	/* Nothing more is read. */
	n = nbdt_option(b, NBD_OPT_LIST, NULL, 0);
	assert_int_equal(srv_conn_step(&conn, b, n), 0);
}

/* Builds META_CONTEXT data: export name, queries. */
static uint32_t mkmeta(uint8_t *d, const char *name, int nq, const char **q)
{
	uint32_t p = 0;
	put_be32(d, (uint32_t)strlen(name));
	memcpy(d + 4, name, strlen(name));
	p = 4 + (uint32_t)strlen(name);
	put_be32(d + p, (uint32_t)nq);
	p += 4;
	for (int i = 0; i < nq; i++) {
		put_be32(d + p, (uint32_t)strlen(q[i]));
		memcpy(d + p + 4, q[i], strlen(q[i]));
		p += 4 + (uint32_t)strlen(q[i]);
	}
	return p;
}

static void test_meta_context(void **state)
{
	uint8_t d[256], b[512];
	const char *ba[] = { "base:allocation" }, *other[] = { "qemu:dirty-bitmap:x", "x-foo:bar" };
	const char *wild[] = { "base:" };
	send_flags(3);
	skip_greeting();

	/* SET before STRUCTURED_REPLY => ERR_INVALID. */
	size_t n = nbdt_option(b, NBD_OPT_SET_META_CONTEXT, d, mkmeta(d, "root", 1, ba));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_SET_META_CONTEXT, 0x80000003);

	/* LIST with no queries => base:allocation with id 0, then ACK. */
	n = nbdt_option(b, NBD_OPT_LIST_META_CONTEXT, d, mkmeta(d, "root", 0, NULL));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_LIST_META_CONTEXT, 4), 4 + 15);
	assert_memory_equal(out + out_pos, "\0\0\0\0base:allocation", 19);
	out_pos += 19;
	assert_int_equal(expect_reply(NBD_OPT_LIST_META_CONTEXT, 1), 0);

	/* LIST "base:" => base:allocation; unknown namespaces => just ACK. */
	n = nbdt_option(b, NBD_OPT_LIST_META_CONTEXT, d, mkmeta(d, "root", 1, wild));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_LIST_META_CONTEXT, 4);
	assert_int_equal(expect_reply(NBD_OPT_LIST_META_CONTEXT, 1), 0);
	n = nbdt_option(b, NBD_OPT_LIST_META_CONTEXT, d, mkmeta(d, "root", 2, other));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_LIST_META_CONTEXT, 1), 0);

	/* A query running past the option end => ERR_INVALID. */
	uint32_t l = mkmeta(d, "root", 1, ba);
	put_be32(d + 12, 100);
	n = nbdt_option(b, NBD_OPT_LIST_META_CONTEXT, d, l);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_LIST_META_CONTEXT, 0x80000003);

	/* STRUCTURED_REPLY, then SET "root" base:allocation => one context. */
	n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	n += nbdt_option(b + n, NBD_OPT_SET_META_CONTEXT, d, mkmeta(d, "root", 1, ba));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_STRUCTURED_REPLY, 1), 0);
	assert_int_equal(expect_reply(NBD_OPT_SET_META_CONTEXT, 4), 19);
	assert_int_equal(get_be32(out + out_pos), SRV_META_CONTEXT_ID);
	assert_memory_equal(out + out_pos + 4, "base:allocation", 15);
	out_pos += 19;
	assert_int_equal(expect_reply(NBD_OPT_SET_META_CONTEXT, 1), 0);
	assert_true(conn.meta_selected);

	/* A second STRUCTURED_REPLY => ERR_INVALID, never a drop. */
	n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_STRUCTURED_REPLY, 0x80000003);

	/* GO "disk": the context was for "root", so none is active. */
	put_be32(d, 4);
	memcpy(d + 4, "disk", 4);
	put_be16(d + 8, 0);
	n = nbdt_option(b, NBD_OPT_GO, d, 10);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
	assert_false(conn.meta_active);
}

static void test_option_caps(void **state)
{
	static uint8_t big[SRV_OPT_SOFT_CAP + 100];
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	/* Above the soft cap: consumed without a whole-buffer read, then
	 * answered ERR_TOO_BIG, and the next option works. */
	nbdt_option(big, NBD_OPT_INFO, NULL, 0);
	put_be32(big + 12, sizeof(big) - 16);
	assert_int_equal(nbdt_feed(&conn, big, sizeof(big)), (ssize_t)sizeof(big));
	out_pos += expect_reply(NBD_OPT_INFO, 0x80000009);
	size_t n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_STRUCTURED_REPLY, 1), 0);
	/* Above the hard cap: drop at once. */
	nbdt_option(b, 0x99, NULL, 0);
	put_be32(b + 12, SRV_OPT_HARD_CAP + 1);
	assert_true(srv_conn_step(&conn, b, 16) < 0);
}

/* Feeds option opt with SRV_OPT_SOFT_CAP + 100 bytes of data (skipped). */
static void feed_oversized(uint32_t opt)
{
	static uint8_t big[SRV_OPT_SOFT_CAP + 100];

	nbdt_option(big, opt, NULL, 0);
	put_be32(big + 12, sizeof(big) - 16);
	assert_int_equal(nbdt_feed(&conn, big, sizeof(big)), (ssize_t)sizeof(big));
}

/*
 * An oversized option gets what its data does not decide as if it fitted:
 * SET_META_CONTEXT still drops the selection, ABORT still ACKs and
 * closes, a plain-newstyle client still gets ERR_INVALID.
 */
static void test_oversized_options(void **state)
{
	uint8_t d[64], b[128];
	const char *ba[] = { "base:allocation" };
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_STRUCTURED_REPLY, 1);
	n = nbdt_option(b, NBD_OPT_SET_META_CONTEXT, d, mkmeta(d, "root", 1, ba));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_SET_META_CONTEXT, 4);
	out_pos += expect_reply(NBD_OPT_SET_META_CONTEXT, 1);
	assert_true(conn.meta_selected);

	feed_oversized(NBD_OPT_SET_META_CONTEXT);
	out_pos += expect_reply(NBD_OPT_SET_META_CONTEXT, 0x80000009);
	assert_false(conn.meta_selected);
	assert_null(conn.meta_export);
	feed_oversized(0x99);
	out_pos += expect_reply(0x99, 0x80000001);

	feed_oversized(NBD_OPT_ABORT);
	assert_int_equal(expect_reply(NBD_OPT_ABORT, 1), 0);
	assert_int_equal(conn.phase, SRV_PH_CLOSE);
}

static void test_oversized_plain_newstyle(void **state)
{
	send_flags(0);
	skip_greeting();
	feed_oversized(0x99);
	out_pos += expect_reply(0x99, 0x80000003);
	feed_oversized(NBD_OPT_INFO);
	out_pos += expect_reply(NBD_OPT_INFO, 0x80000003);
	assert_int_equal(out_pos, out_len);
}

static void test_option_count(void **state)
{
	uint8_t b[64];
	unsigned int i;
	send_flags(3);
	size_t n = nbdt_option(b, 0x99, NULL, 0);
	for (i = 0; i < 1000; i++)
		if (srv_conn_step(&conn, b, n) < 0)
			break;
	/* max(64, 4 * 2 exports + 16) = 64 options are answered, the 65th drops. */
	assert_int_equal(i, 64);
}

static void test_shutting_down(void **state)
{
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	conn.shutting_down = true;
	/* A7.4: options get ERR_SHUTDOWN, except ABORT. */
	size_t n = nbdt_option(b, NBD_OPT_LIST, NULL, 0);
	n += nbdt_option(b + n, NBD_OPT_ABORT, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_LIST, 0x80000007);
	assert_int_equal(expect_reply(NBD_OPT_ABORT, 1), 0);
	assert_int_equal(out_pos, out_len);
}

/*
 * Checks the next NBD_REP_INFO for opt: type info, then the n bytes of
 * data after the type.
 */
static void expect_info(uint32_t opt, uint16_t info, const void *data, uint32_t n)
{
	assert_int_equal(expect_reply(opt, 3), 2 + n);
	assert_int_equal(get_be16(out + out_pos), info);
	assert_memory_equal(out + out_pos + 2, data, n);
	out_pos += 2 + n;
}

/* INFO_EXPORT of the 8192-byte map, flags 0x0507 (no SEND_DF), and BLOCK_SIZE. */
static const uint8_t export_plain[10] = { 0, 0, 0, 0, 0, 0, 0x20, 0, 0x05, 0x07 };
static const uint8_t block_size[12] = { 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0 };

/* Builds INFO/GO data: export name, then n info requests; returns its length. */
static uint32_t mkinfo(uint8_t *d, const char *name, int n, const uint16_t *req)
{
	uint32_t nl = (uint32_t)strlen(name);
	put_be32(d, nl);
	memcpy(d + 4, name, nl);
	put_be16(d + 4 + nl, (uint16_t)n);
	for (int i = 0; i < n; i++)
		put_be16(d + 6 + nl + 2 * i, req[i]);
	return 6 + nl + 2 * (uint32_t)n;
}

/*
 * GO's info requests are the u16 codes after the count (A4 INFO/GO table:
 * codes at 6+N), not the count itself: DESCRIPTION alone gets no NAME, and
 * DESCRIPTION + NAME get both, in the server's fixed order EXPORT, NAME,
 * DESCRIPTION, BLOCK_SIZE (checklist 21, 26).
 */
static void test_go_info_requests_exact(void **state)
{
	static const uint16_t desc[] = { NBD_INFO_DESCRIPTION };
	static const uint16_t desc_name[] = { NBD_INFO_DESCRIPTION, NBD_INFO_NAME };
	uint8_t d[64], b[128];

	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_GO, d, mkinfo(d, "root", 1, desc));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	expect_info(NBD_OPT_GO, NBD_INFO_EXPORT, export_plain, 10);
	expect_info(NBD_OPT_GO, NBD_INFO_DESCRIPTION, "the root fs", 11);
	expect_info(NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, block_size, 12);
	assert_int_equal(expect_reply(NBD_OPT_GO, 1), 0);
	assert_int_equal(out_pos, out_len);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);

	/* A new connection: GO "" (the default export) asking for both. */
	out_len = 0;
	assert_int_equal(srv_conn_start(&conn, &srv, &cap_ops), 0);
	send_flags(3);
	skip_greeting();
	n = nbdt_option(b, NBD_OPT_GO, d, mkinfo(d, "", 2, desc_name));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	expect_info(NBD_OPT_GO, NBD_INFO_EXPORT, export_plain, 10);
	expect_info(NBD_OPT_GO, NBD_INFO_NAME, "root", 4);
	expect_info(NBD_OPT_GO, NBD_INFO_DESCRIPTION, "the root fs", 11);
	expect_info(NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, block_size, 12);
	assert_int_equal(expect_reply(NBD_OPT_GO, 1), 0);
	assert_int_equal(out_pos, out_len);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
}

/*
 * INFO/GO data longer than 6 + N + 2R (trailing bytes after the info
 * requests) is ERR_INVALID with nothing else sent, and the connection
 * stays in haggling and usable (A4 INFO/GO validation; checklist 25).
 */
static void test_info_go_trailing_bytes(void **state)
{
	static const uint16_t name[] = { NBD_INFO_NAME };
	uint8_t d[64], b[128];

	send_flags(3);
	skip_greeting();
	uint32_t l = mkinfo(d, "root", 1, name);
	d[l] = 0xaa;
	size_t n = nbdt_option(b, NBD_OPT_INFO, d, l + 1);	/* 1 extra byte */
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_INFO, 0x80000003);
	put_be16(d + l, NBD_INFO_DESCRIPTION);
	n = nbdt_option(b, NBD_OPT_GO, d, l + 2);	/* a 2nd code R does not count */
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_GO, 0x80000003);
	assert_int_equal(out_pos, out_len);
	assert_int_equal(conn.phase, SRV_PH_OPTIONS);
	assert_null(conn.ex);

	/* Still usable: the same GO without the extra bytes succeeds. */
	n = nbdt_option(b, NBD_OPT_GO, d, l);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	expect_info(NBD_OPT_GO, NBD_INFO_EXPORT, export_plain, 10);
	expect_info(NBD_OPT_GO, NBD_INFO_NAME, "root", 4);
	expect_info(NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, block_size, 12);
	assert_int_equal(expect_reply(NBD_OPT_GO, 1), 0);
	assert_int_equal(out_pos, out_len);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
}

/* Sends a transmission request (A7.1) of type with cookie, offset, len. */
static void send_request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t len)
{
	uint8_t b[28];
	put_be32(b, 0x25609513);
	put_be16(b + 4, 0);
	put_be16(b + 6, type);
	put_be64(b + 8, cookie);
	put_be64(b + 16, offset);
	put_be32(b + 24, len);
	assert_int_equal(nbdt_feed(&conn, b, sizeof(b)), (ssize_t)sizeof(b));
}

/*
 * Checks the next reply: one chunk (A9) with DONE, of type, for cookie;
 * returns its payload length.
 */
static uint32_t expect_done_chunk(uint16_t type, uint64_t cookie)
{
	static const uint8_t magic[4] = { 0x66, 0x8e, 0x33, 0xef };
	assert_true(out_len - out_pos >= 20);
	assert_memory_equal(out + out_pos, magic, 4);
	assert_int_equal(get_be16(out + out_pos + 4), 1);
	assert_int_equal(get_be16(out + out_pos + 6), type);
	assert_int_equal(get_be64(out + out_pos + 8), cookie);
	uint32_t len = get_be32(out + out_pos + 16);
	out_pos += 20;
	assert_true(out_len - out_pos >= len);
	return len;
}

/* BLOCK_STATUS of the whole export is an ERROR chunk with NBD_EINVAL (A10). */
static void expect_block_status_einval(uint64_t cookie)
{
	send_request(NBD_CMD_BLOCK_STATUS, cookie, 0, 8192);
	uint32_t len = expect_done_chunk(0x8001, cookie);
	assert_true(len >= 6);
	assert_int_equal(get_be32(out + out_pos), 22);
	out_pos += len;
	assert_int_equal(out_pos, out_len);
}

/* SET_META_CONTEXT "root" with queries q[0..nq), expecting just an ACK. */
static void set_meta_ack_only(int nq, const char **q)
{
	uint8_t d[256], b[512];
	size_t n = nbdt_option(b, NBD_OPT_SET_META_CONTEXT, d, mkmeta(d, "root", nq, q));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_SET_META_CONTEXT, 1), 0);
	assert_int_equal(out_pos, out_len);
	assert_false(conn.meta_selected);
}

/* STRUCTURED_REPLY, then SET "root" base:allocation: one context (ACKed). */
static void select_base_allocation(void)
{
	const char *ba[] = { "base:allocation" };
	uint8_t d[64], b[128];
	size_t n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	n += nbdt_option(b + n, NBD_OPT_SET_META_CONTEXT, d, mkmeta(d, "root", 1, ba));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_STRUCTURED_REPLY, 1), 0);
	out_pos += expect_reply(NBD_OPT_SET_META_CONTEXT, 4);
	assert_int_equal(expect_reply(NBD_OPT_SET_META_CONTEXT, 1), 0);
	assert_true(conn.meta_selected);
}

/* GO "root" with no info requests; the replies are skipped. */
static void go_root(void)
{
	uint8_t d[16], b[64];
	size_t n = nbdt_option(b, NBD_OPT_GO, d, mkinfo(d, "root", 0, NULL));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_GO, 3);		/* EXPORT */
	out_pos += expect_reply(NBD_OPT_GO, 3);		/* BLOCK_SIZE */
	assert_int_equal(expect_reply(NBD_OPT_GO, 1), 0);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
}

/*
 * SET_META_CONTEXT with zero queries selects nothing: ACK only, no
 * META_CONTEXT reply, and it replaces an earlier selection, so BLOCK_STATUS
 * after GO is EINVAL (A4 meta context table "(Q = 0)"; checklist 36, 65).
 */
static void test_set_meta_zero_queries(void **state)
{
	send_flags(3);
	skip_greeting();
	select_base_allocation();
	set_meta_ack_only(0, NULL);
	go_root();
	assert_false(conn.meta_active);
	expect_block_status_einval(1);
}

/*
 * SET_META_CONTEXT with the bare namespace "base:" is ignored (only LIST
 * treats it as a wildcard): ACK only, nothing selected, BLOCK_STATUS
 * EINVAL (A4 meta context table, row "base:"; checklist 65).
 */
static void test_set_meta_namespace_only(void **state)
{
	const char *wild[] = { "base:" };
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_STRUCTURED_REPLY, 1), 0);
	set_meta_ack_only(1, wild);
	go_root();
	assert_false(conn.meta_active);
	expect_block_status_einval(1);
}

/*
 * LIST/SET_META_CONTEXT with trailing bytes after the last query are
 * ERR_INVALID (A4 meta context validation: "trailing garbage"); the failed
 * SET still drops the selection, and the connection stays usable.
 */
static void test_meta_context_trailing_bytes(void **state)
{
	const char *ba[] = { "base:allocation" };
	uint8_t d[64], b[128];
	send_flags(3);
	skip_greeting();
	select_base_allocation();

	uint32_t l = mkmeta(d, "root", 1, ba);
	memcpy(d + l, "xyz", 3);
	size_t n = nbdt_option(b, NBD_OPT_LIST_META_CONTEXT, d, l + 3);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_LIST_META_CONTEXT, 0x80000003);
	assert_int_equal(out_pos, out_len);
	n = nbdt_option(b, NBD_OPT_SET_META_CONTEXT, d, l + 3);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_SET_META_CONTEXT, 0x80000003);
	assert_int_equal(out_pos, out_len);
	assert_false(conn.meta_selected);

	/* The same LIST without the extra bytes works. */
	n = nbdt_option(b, NBD_OPT_LIST_META_CONTEXT, d, l);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(expect_reply(NBD_OPT_LIST_META_CONTEXT, 4), 19);
	assert_memory_equal(out + out_pos, "\0\0\0\0base:allocation", 19);
	out_pos += 19;
	assert_int_equal(expect_reply(NBD_OPT_LIST_META_CONTEXT, 1), 0);
	assert_int_equal(out_pos, out_len);
}

/*
 * STRUCTURED_REPLY with data is ERR_INVALID and does not enable
 * structured replies: a GO after it advertises no SEND_DF (A4
 * STRUCTURED_REPLY; checklist 29, 31).
 */
static void test_structured_reply_with_data(void **state)
{
	uint8_t d[16], b[64];
	send_flags(3);
	skip_greeting();
	size_t n = nbdt_option(b, NBD_OPT_STRUCTURED_REPLY, "abcd", 4);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos += expect_reply(NBD_OPT_STRUCTURED_REPLY, 0x80000003);
	assert_int_equal(out_pos, out_len);
	assert_false(conn.structured);

	n = nbdt_option(b, NBD_OPT_GO, d, mkinfo(d, "root", 0, NULL));
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	expect_info(NBD_OPT_GO, NBD_INFO_EXPORT, export_plain, 10);	/* 0x0507 */
	expect_info(NBD_OPT_GO, NBD_INFO_BLOCK_SIZE, block_size, 12);
	assert_int_equal(expect_reply(NBD_OPT_GO, 1), 0);
	assert_int_equal(out_pos, out_len);
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
	assert_false(conn.structured);
}

/*
 * EXPORT_NAME, like GO, activates a context only for the export that
 * SET_META_CONTEXT named: SET "root" then EXPORT_NAME "disk" leaves none,
 * BLOCK_STATUS is EINVAL; EXPORT_NAME "root" keeps it (A4 SET semantics
 * "Remember the export name"; checklist 38).
 */
static void test_export_name_meta_other_export(void **state)
{
	uint8_t b[64];
	send_flags(3);
	skip_greeting();
	select_base_allocation();
	size_t n = nbdt_option(b, NBD_OPT_EXPORT_NAME, "disk", 4);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	assert_int_equal(out_len - out_pos, 10);
	out_pos = out_len;
	assert_int_equal(conn.phase, SRV_PH_TRANSMISSION);
	assert_false(conn.meta_active);
	expect_block_status_einval(1);

	/* The export SET named: the context is active, one data extent. */
	out_len = 0;
	assert_int_equal(srv_conn_start(&conn, &srv, &cap_ops), 0);
	send_flags(3);
	skip_greeting();
	select_base_allocation();
	n = nbdt_option(b, NBD_OPT_EXPORT_NAME, "root", 4);
	assert_int_equal(nbdt_feed(&conn, b, n), (ssize_t)n);
	out_pos = out_len;
	assert_true(conn.meta_active);
	send_request(NBD_CMD_BLOCK_STATUS, 2, 0, 8192);
	assert_int_equal(expect_done_chunk(5, 2), 12);
	assert_int_equal(get_be32(out + out_pos), SRV_META_CONTEXT_ID);
	assert_int_equal(get_be32(out + out_pos + 4), 8192);
	assert_int_equal(get_be32(out + out_pos + 8), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_greeting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_client_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_option_then_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsupported_known_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_option_magic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_go_with_infos, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info_default_and_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_name_no_zeroes_and_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_newstyle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_context, setup, teardown),
		cmocka_unit_test_setup_teardown(test_option_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversized_plain_newstyle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_option_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutting_down, setup, teardown),
		cmocka_unit_test_setup_teardown(test_go_info_requests_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info_go_trailing_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_meta_zero_queries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_meta_namespace_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_context_trailing_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_structured_reply_with_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_name_meta_other_export, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
