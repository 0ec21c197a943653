/* SPDX-License-Identifier: MIT */
/*
 * fuzz-nbd.c - the NBD protocol state machine (server/handshake.c,
 * request.c, reply.c through srv_conn_step) fed a client byte stream
 * decoded from the input, delivered in pieces split where the input says,
 * the way the loops (plain.c, uring.c) feed it.
 *
 * A model of the protocol as nbd-protocol.md states it (A3-A11, with the
 * erofs-nbd choices it names) parses the same stream in lockstep: after
 * every srv_conn_step() it must agree on how many bytes the message took,
 * whether the client is dropped, and what the replies of that message
 * are.  Every reply is parsed strictly: magics, echoed option codes and
 * cookies, lengths that add up, DONE on exactly the last chunk, chunks
 * inside the request and covering it, data equal to the export's bytes,
 * holes and ZERO extents really zero, error values as the spec assigns
 * them.  The file reads a READ needs are done by this harness (as plain.c
 * does them), checked to stay inside the export's sources, sometimes
 * deferred (replies then come out of order) and sometimes failed (EIO).
 *
 * Input: a config byte (bits 0-1: the set of exports, 2: pad them to
 * 4 KiB, 3-5: fail every Nth read, 6-7: defer reads; 7 in bits 0-2: the
 * shared export of 1.3M regions instead), the exports' region maps
 * (map_decode), then records building the client stream (see
 * decode_record()).  Seeds: corpus/nbd/.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "overlaywalk/source.h"
#include "server/internal.h"
#include "server/log.h"
#include "tests/fuzz/fuzz.h"

#define MAX_EXPORTS	3
#define MAX_STREAM	(1u << 20)	/* bytes of client stream */
#define MAX_DEFERRED	64
#define MAX_REPEATS	128		/* REPEAT copies per input */
/* READ bytes checked per input: past it the client is dropped, so one
 * READ of the 32 MiB maximum still comes, but not one after another. */
#define READ_BUDGET	(4u << 20)

/* ------------------------------------------------------------------ */
/* Exports                                                             */
/* ------------------------------------------------------------------ */

struct world {
	struct srv_export exports[MAX_EXPORTS];
	struct region_map maps[MAX_EXPORTS];
	struct map_pool pools[MAX_EXPORTS];	/* what the maps borrow */
	size_t nexports;
	struct srv_config cfg;
	struct srv_ctx srv;
	unsigned int fail_every, defer_every;
};

static const char *const export_names[][MAX_EXPORTS] = {
	{ "root" },
	{ "disk", "root", "esp" },
	{ "" },
	{ "a", "b\x01z" },
};

/*
 * An export of 1.3 million regions, built once and shared by every input
 * that asks for it (config bits 0-2 all set), so that BLOCK_STATUS hits
 * its limits (SRV_EXTENT_BUDGET regions visited, SRV_MAX_EXTENTS extents)
 * and READs cross many regions:
 *   [0, A)   1.1M times 512 bytes of memory then 64 zero bytes: one long
 *            data run (zero runs under 512 bytes are not holes);
 *   [A, end) 200K times 4 KiB of zeros then 512 bytes of memory: a
 *            hole/data extent pair each.
 * Its regions are read by map_check() once, not per input.
 */
static const struct region_map *many_regions_map(void)
{
	static struct region_map map;
	static uint8_t mem[512];
	static bool built;

	if (built)
		return &map;
	region_map_init(&map);
	for (size_t i = 0; i < sizeof(mem); i++)
		mem[i] = (uint8_t)(i * 7 + 3);
	for (size_t i = 0; i < 1100000; i++)
		FZ_CHECK(region_add_mem(&map, mem, sizeof(mem)) == 0 &&
			 region_add_zero(&map, 64) == 0, "building the many-region map");
	for (size_t i = 0; i < 200000; i++)
		FZ_CHECK(region_add_zero(&map, 4096) == 0 &&
			 region_add_mem(&map, mem, sizeof(mem)) == 0, "building the many-region map");
	map_check(&map);
	built = true;
	return &map;
}

static void world_init(struct world *w, struct fz *f)
{
	uint8_t cfg = fz_u8(f);
	unsigned int set = cfg & 3;

	memset(w, 0, sizeof(*w));
	w->fail_every = (cfg >> 3) & 7;
	w->defer_every = (cfg >> 6) & 3;
	if ((cfg & 7) == 7) {
		w->exports[0] = (struct srv_export){
			.name = "many", .description = "1.3M regions", .map = many_regions_map(),
		};
		w->nexports = 1;
	}
	for (size_t i = 0; i < MAX_EXPORTS && export_names[set][i] && !w->nexports; i++) {
		region_map_init(&w->maps[i]);
		map_decode(f, &w->maps[i], &w->pools[i]);
		if (cfg & 4)
			FZ_CHECK(region_pad_to(&w->maps[i], 4096) == 0, "region_pad_to");
		w->exports[i] = (struct srv_export){
			.name = export_names[set][i],
			.description = i == 1 ? NULL : "an export",
			.map = &w->maps[i],
		};
		w->nexports++;
	}
	w->cfg = (struct srv_config){
		.exports = w->exports,
		.nexports = w->nexports,
		/* main.c names "disk" as the default; NULL means exports[0]. */
		.default_export = set == 1 ? "disk" : NULL,
		.stop_fd = -1,
	};
	for (size_t i = 0; i < w->nexports; i++)
		if (w->exports[i].map == &w->maps[i])
			map_check(&w->maps[i]);
	FZ_CHECK(srv_ctx_init(&w->srv, &w->cfg) == 0, "srv_ctx_init");
}

static void world_free(struct world *w)
{
	srv_ctx_free(&w->srv);
	for (size_t i = 0; i < w->nexports; i++) {
		if (w->exports[i].map != &w->maps[i])
			continue;	/* the shared many-region map */
		region_map_free(&w->maps[i]);
		map_pool_free(&w->pools[i]);
	}
}

/* ------------------------------------------------------------------ */
/* The client stream                                                   */
/* ------------------------------------------------------------------ */

struct stream {
	uint8_t *buf;
	size_t len, cap;
	/* Delivery: the stream is handed to the server in pieces ending here. */
	size_t cuts[256];
	bool cut_shutdown[256], cut_flush[256];
	size_t ncuts;
	size_t last_start, last_len;	/* the previous record, for REPEAT */
	unsigned int repeats;
	uint64_t next_cookie;
};

/* Makes room for n more bytes (fewer at MAX_STREAM); returns how many. */
static size_t reserve(struct stream *s, size_t n)
{
	if (n > MAX_STREAM - s->len)
		n = MAX_STREAM - s->len;
	if (s->len + n > s->cap) {
		s->cap = s->len + n > 2 * s->cap ? s->len + n : 2 * s->cap;
		s->buf = realloc(s->buf, s->cap);
		FZ_CHECK(s->buf, "out of memory");
	}
	return n;
}

static void put(struct stream *s, const void *p, size_t n)
{
	n = reserve(s, n);
	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

static void put8(struct stream *s, uint8_t v) { put(s, &v, 1); }
static void put16(struct stream *s, uint16_t v) { uint8_t b[2]; put_be16(b, v); put(s, b, 2); }
static void put32(struct stream *s, uint32_t v) { uint8_t b[4]; put_be32(b, v); put(s, b, 4); }
static void put64(struct stream *s, uint64_t v) { uint8_t b[8]; put_be64(b, v); put(s, b, 8); }

static void put_bytes_from(struct stream *s, struct fz *f, size_t n)
{
	for (size_t i = 0; i < n && s->len < MAX_STREAM; i++)
		put8(s, fz_u8(f));
}

/* An export name as a record chooses it: known, missing, odd or bad. */
static size_t pick_name(struct fz *f, unsigned int choice, char *out, size_t cap)
{
	static const char *const fixed[] = { "", "root", "disk", "esp", "nope", "b\x01z" };
	size_t n;

	if (choice < ARRAY_SIZE(fixed)) {
		n = strlen(fixed[choice]);
		memcpy(out, fixed[choice], n);
		return n;
	}
	if (choice == 6) {		/* raw bytes, NULs allowed */
		n = fz_u8(f);
		fz_bytes(f, out, n);
		return n;
	}
	n = 4097;			/* over the string limit */
	memset(out, 'x', n < cap ? n : cap);
	return n < cap ? n : cap;
}

/* Option header then data; mode may make the length field lie. */
static void put_option(struct stream *s, uint32_t opt, const uint8_t *data,
		       size_t len, unsigned int mode)
{
	put64(s, NBD_IHAVEOPT);
	put32(s, opt);
	put32(s, (uint32_t)(mode == 1 && len ? len - 1 : mode == 2 ? len + 1 : len));
	put(s, data, len);
}

static uint64_t pick_u64(struct fz *f, unsigned int mode, uint64_t size)
{
	switch (mode & 7) {
	case 0: return 0;
	case 1: return fz_u16(f);
	case 2: return size ? fz_u32(f) % (size + 1) : 0;
	case 3: { uint64_t d = fz_u16(f); return d < size ? size - d : 0; }
	case 4: return size;
	case 5: return size + 1;
	case 6: return fz_u64(f);
	default: return (size / 512) ? 512 * (fz_u32(f) % (size / 512)) : 0;
	}
}

/*
 * Decodes one record and appends what it makes to the stream.  A record
 * is a control byte c, kind = c & 7, aux = c >> 3:
 *   0 RAW      1 + u8 bytes copied from the input, or with aux bit 0,
 *              (1 + u16) * 16 bytes of aux >> 1 (to get through skips)
 *   1 FLAGS    client flags: aux & 3, plus garbage bits if aux & 4
 *   2 OPTION   code aux (or a u32 when aux >= 12), u8 data bytes,
 *              length field exact / short / long (mode u8), or a u32 (aux 31)
 *   3 GO/INFO/EXPORT_NAME with a chosen name and info requests
 *   4 LIST/SET_META_CONTEXT with a chosen name and queries
 *   5 REQUEST  type aux (or u16), flags, cookie, offset and length modes;
 *              WRITE payload bytes
 *   6 CUT      deliver up to here; aux bit 0: then stop the server
 *              (shutting_down), bit 1: then complete deferred reads
 *   7 REPEAT   the previous record, 1 + aux more times
 */
static void decode_record(struct stream *s, struct fz *f, uint64_t size)
{
	uint8_t c = fz_u8(f);
	unsigned int kind = c & 7, aux = c >> 3;
	size_t start = s->len;
	uint8_t data[8192];
	size_t n;

	switch (kind) {
	case 0:
		if (aux & 1) {	/* bulk: enough to finish skipping a huge option */
			n = reserve(s, (1 + (size_t)fz_u16(f)) * 16);
			memset(s->buf + s->len, aux >> 1, n);
			s->len += n;
		} else {
			put_bytes_from(s, f, 1 + (size_t)fz_u8(f));
		}
		break;
	case 1:
		put32(s, (aux & 3) | (aux & 4 ? fz_u32(f) << 2 : 0));
		break;
	case 2: {
		uint32_t opt = aux < 12 ? aux : fz_u32(f);
		unsigned int mode = fz_u8(f);
		n = fz_u8(f);
		fz_bytes(f, data, n);
		if (aux == 31) {	/* a length field of any size */
			put64(s, NBD_IHAVEOPT);
			put32(s, opt);
			put32(s, fz_u32(f));
			put(s, data, n);
		} else {
			put_option(s, opt, data, n, mode % 4);
		}
		break;
	}
	case 3: {
		static const uint32_t opts[] = { NBD_OPT_GO, NBD_OPT_INFO,
						 NBD_OPT_EXPORT_NAME, NBD_OPT_GO };
		uint32_t opt = opts[aux & 3];
		char name[4200];
		size_t nl = pick_name(f, (aux >> 2) & 7, name, sizeof(name));
		if (opt == NBD_OPT_EXPORT_NAME) {
			put_option(s, opt, (uint8_t *)name, nl, fz_u8(f) % 4);
			break;
		}
		unsigned int nreq = fz_u8(f) % 8, mode = fz_u8(f) % 5;
		uint8_t *p = malloc(6 + nl + 2 * nreq + 1);
		FZ_CHECK(p, "out of memory");
		put_be32(p, (uint32_t)nl);
		memcpy(p + 4, name, nl);
		put_be16(p + 4 + nl, (uint16_t)(nreq + (mode == 3)));
		for (unsigned int i = 0; i < nreq; i++) {
			uint8_t r = fz_u8(f);
			put_be16(p + 6 + nl + 2 * i, r < 8 ? r % 4 : r < 16 ? fz_u16(f) : r);
		}
		put_option(s, opt, p, 6 + nl + 2 * nreq, mode == 4 ? 0 : mode % 3);
		free(p);
		break;
	}
	case 4: {
		static const char *const queries[] = {
			"base:allocation", "base:", "qemu:dirty-bitmap:x", "base:other",
			"nocolon",
		};
		uint32_t opt = aux & 1 ? NBD_OPT_SET_META_CONTEXT : NBD_OPT_LIST_META_CONTEXT;
		char name[4200];
		size_t nl = pick_name(f, (aux >> 1) & 7, name, sizeof(name));
		unsigned int nq = fz_u8(f) % 5, mode = fz_u8(f) % 5;
		size_t len = 0;
		uint8_t *p = malloc(8 + nl + nq * (4 + 256) + 8);
		FZ_CHECK(p, "out of memory");
		put_be32(p, (uint32_t)nl);
		memcpy(p + 4, name, nl);
		put_be32(p + 4 + nl, nq + (mode == 3));
		len = 8 + nl;
		for (unsigned int i = 0; i < nq; i++) {
			unsigned int q = fz_u8(f);
			size_t ql;
			if (q % 7 < ARRAY_SIZE(queries)) {
				ql = strlen(queries[q % 7]);
				memcpy(p + len + 4, queries[q % 7], ql);
			} else {
				ql = fz_u8(f);
				fz_bytes(f, p + len + 4, ql);
			}
			put_be32(p + len, (uint32_t)ql);
			len += 4 + ql;
		}
		if (mode == 4)
			p[len++] = 0;	/* trailing garbage */
		put_option(s, opt, p, len, mode % 3);
		free(p);
		break;
	}
	case 5: {
		uint16_t type = aux < 10 ? aux : fz_u16(f);
		uint8_t fl = fz_u8(f);
		uint16_t flags = fl & 0x80 ? fz_u16(f) : fl & 0x3f;
		uint8_t cm = fz_u8(f);
		uint64_t cookie = cm == 0 ? 0 : cm == 1 ? UINT64_MAX : cm == 2 ? fz_u64(f) :
				  fz_mix(++s->next_cookie);
		uint8_t om = fz_u8(f);
		uint64_t offset = pick_u64(f, om, size);
		uint64_t len64;
		switch ((om >> 3) & 7) {
		case 0: len64 = 0; break;
		case 1: len64 = 1 + fz_u8(f); break;
		case 2: len64 = 512 * (1 + (uint64_t)fz_u8(f)); break;
		case 3: len64 = fz_u16(f); break;
		case 4: len64 = fz_u32(f); break;
		case 5: len64 = size > offset ? size - offset : 0; break;
		case 6:	/* the largest READ is slow to check: rarely */
			len64 = fz_u8(f) == 0xff ? SRV_MAX_PAYLOAD : 1 + (uint64_t)fz_u16(f) * 8;
			break;
		default: len64 = SRV_MAX_PAYLOAD + 1; break;
		}
		uint32_t len = len64 > UINT32_MAX ? UINT32_MAX : (uint32_t)len64;
		put32(s, NBD_REQUEST_MAGIC);
		put16(s, flags);
		put16(s, type);
		put64(s, cookie);
		put64(s, offset);
		put32(s, len);
		if (type == NBD_CMD_WRITE && (om & 0x40) && len <= sizeof(data)) {
			memset(data, 0xa5, len);
			put(s, data, len);
		}
		break;
	}
	case 6:
		if (s->ncuts < ARRAY_SIZE(s->cuts)) {
			s->cuts[s->ncuts] = s->len;
			s->cut_shutdown[s->ncuts] = aux & 1;
			s->cut_flush[s->ncuts] = aux & 2;
			s->ncuts++;
		}
		return;
	case 7:
		for (unsigned int i = 0; i <= aux && s->last_len && s->repeats < MAX_REPEATS;
		     i++, s->repeats++) {
			if (reserve(s, s->last_len) < s->last_len)
				break;
			memmove(s->buf + s->len, s->buf + s->last_start, s->last_len);
			s->len += s->last_len;
		}
		return;
	}
	s->last_start = start;
	s->last_len = s->len - start;
}

/* ------------------------------------------------------------------ */
/* The model (nbd-protocol.md)                                         */
/* ------------------------------------------------------------------ */

enum mphase { M_FLAGS, M_OPTIONS, M_TRANS, M_CLOSED };

enum opt_result {
	R_ERR,		/* one error reply, type in errs[] */
	R_ACK,		/* one ACK */
	R_LIST,		/* SERVER per export, ACK */
	R_INFO,		/* INFO replies, ACK */
	R_META,		/* META_CONTEXT (if match), ACK */
};

/* What the replies to one message must be. */
struct expect {
	enum { E_NONE, E_OPT, E_EXPORT_NAME, E_CMD } kind;
	/* E_OPT */
	uint32_t opt;
	enum opt_result res;
	uint32_t errs[2];
	size_t nerrs;
	const struct srv_export *ex;
	bool want_name, want_desc, want_bs, meta_match, meta_list;
	/* E_CMD */
	struct srv_request rq;
	uint32_t err;		/* NBD_E* expected, 0 for success */
	uint32_t alt_err;	/* also acceptable (EOVERFLOW), or 0 */
	bool structured;
	uint32_t meta_id;
	uint16_t eflags;
	uint64_t size;
	const struct region_map *map;
};

struct model {
	const struct world *w;
	enum mphase phase;
	bool fixed, no_zeroes, structured;
	bool meta_selected, meta_active;
	const struct srv_export *meta_export;
	uint32_t meta_id;
	const struct srv_export *ex;
	uint16_t eflags;
	unsigned int noptions, max_options;
	uint64_t skip;
	enum { SK_NONE, SK_OPTION, SK_WRITE } skip_kind;
	uint32_t skip_opt;
	uint64_t skip_cookie;
	bool shutting_down;
};

static const struct srv_export *m_find(const struct model *m, const uint8_t *name,
				       size_t len)
{
	const struct world *w = m->w;

	if (len == 0) {
		if (w->cfg.default_export) {
			name = (const uint8_t *)w->cfg.default_export;
			len = strlen(w->cfg.default_export);
		} else {
			return w->nexports ? &w->exports[0] : NULL;
		}
	}
	for (size_t i = 0; i < w->nexports; i++)
		if (strlen(w->exports[i].name) == len &&
		    memcmp(w->exports[i].name, name, len) == 0)
			return &w->exports[i];
	return NULL;
}

/* A4 string rule: at most 4096 bytes, no NUL. */
static bool m_string_ok(const uint8_t *s, size_t len)
{
	return len <= 4096 && !memchr(s, 0, len);
}

static void e_err(struct expect *e, uint32_t t)
{
	e->res = R_ERR;
	e->errs[0] = t;
	e->nerrs = 1;
}

/*
 * The export an option names, if its data was well formed (ok); else
 * NULL, with the error reply it gets in e: INVALID, or UNKNOWN for a
 * name no export has.
 */
static const struct srv_export *m_export(const struct model *m, bool ok, const uint8_t *name,
					 size_t len, struct expect *e)
{
	const struct srv_export *ex = ok ? m_find(m, name, len) : NULL;

	if (!ex)
		e_err(e, ok ? NBD_REP_ERR_UNKNOWN : NBD_REP_ERR_INVALID);
	return ex;
}

/*
 * Options (A3.3, A4): fills e; returns false to drop the client.  d NULL:
 * the option's len bytes were more than SRV_OPT_SOFT_CAP and skipped.
 */
static bool m_option(struct model *m, uint32_t opt, const uint8_t *d, uint32_t len,
		     struct expect *e)
{
	e->kind = E_OPT;
	e->opt = opt;
	if (m->shutting_down && opt != NBD_OPT_ABORT) {
		if (opt == NBD_OPT_EXPORT_NAME)
			return false;
		e_err(e, NBD_REP_ERR_SHUTDOWN);
		return true;
	}
	if (opt == NBD_OPT_EXPORT_NAME) {
		if (!d)
			return false;	/* never skipped: dropped over 4096 */
		const struct srv_export *ex = m_string_ok(d, len) ? m_find(m, d, len) : NULL;
		if (!ex)
			return false;	/* A3.5: no error path */
		e->kind = E_EXPORT_NAME;
		e->ex = ex;
		m->ex = ex;
		m->meta_active = m->meta_selected && m->meta_export == ex;
		m->phase = M_TRANS;
		return true;
	}
	if (opt == NBD_OPT_ABORT) {
		e->res = R_ACK;
		m->phase = M_CLOSED;
		return true;
	}
	if (!m->fixed) {
		e_err(e, NBD_REP_ERR_INVALID);
		return true;
	}
	if (!d && opt != NBD_OPT_SET_META_CONTEXT) {
		/* Skipped (over SRV_OPT_SOFT_CAP); SET goes on below, where it
		 * forgets the selection first. */
		bool known = opt == NBD_OPT_LIST || opt == NBD_OPT_INFO ||
			     opt == NBD_OPT_GO || opt == NBD_OPT_STRUCTURED_REPLY ||
			     opt == NBD_OPT_LIST_META_CONTEXT;
		e_err(e, known ? NBD_REP_ERR_TOO_BIG : NBD_REP_ERR_UNSUP);
		return true;
	}
	switch (opt) {
	case NBD_OPT_LIST:
		if (len)
			e_err(e, NBD_REP_ERR_INVALID);
		else
			e->res = R_LIST;
		return true;
	case NBD_OPT_INFO:
	case NBD_OPT_GO: {
		if (len < 6) {
			e_err(e, NBD_REP_ERR_INVALID);
			return true;
		}
		uint32_t nl = get_be32(d);
		if (nl > len - 6) {
			e_err(e, NBD_REP_ERR_INVALID);
			return true;
		}
		uint16_t nreq = get_be16(d + 4 + nl);
		const struct srv_export *ex = m_export(m, len == 6 + nl + 2 * (uint32_t)nreq &&
						       m_string_ok(d + 4, nl), d + 4, nl, e);
		if (!ex)
			return true;
		e->res = R_INFO;
		e->ex = ex;
		for (uint16_t i = 0; i < nreq; i++) {
			uint16_t info = get_be16(d + 6 + nl + 2 * i);
			e->want_name |= info == NBD_INFO_NAME;
			e->want_desc |= info == NBD_INFO_DESCRIPTION;
			e->want_bs |= info == NBD_INFO_BLOCK_SIZE;
		}
		if (opt == NBD_OPT_GO) {
			m->ex = ex;
			m->meta_active = m->meta_selected && m->meta_export == ex;
			m->phase = M_TRANS;
		}
		return true;
	}
	case NBD_OPT_STRUCTURED_REPLY:
		if (len || m->structured) {
			e_err(e, NBD_REP_ERR_INVALID);
			return true;
		}
		m->structured = true;
		e->res = R_ACK;
		return true;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT: {
		bool list = opt == NBD_OPT_LIST_META_CONTEXT;
		if (!list) {
			m->meta_selected = false;
			m->meta_export = NULL;
			if (!m->structured) {
				e_err(e, NBD_REP_ERR_INVALID);
				return true;
			}
		}
		if (!d) {
			e_err(e, NBD_REP_ERR_TOO_BIG);
			return true;
		}
		if (len < 8) {
			e_err(e, NBD_REP_ERR_INVALID);
			return true;
		}
		uint32_t nl = get_be32(d);
		if (nl > len - 8 || !m_string_ok(d + 4, nl)) {
			e_err(e, NBD_REP_ERR_INVALID);
			return true;
		}
		uint32_t nq = get_be32(d + 4 + nl), pos = 8 + nl;
		bool match = list && nq == 0;
		for (uint32_t i = 0; i < nq; i++) {
			if (len - pos < 4) {
				e_err(e, NBD_REP_ERR_INVALID);
				return true;
			}
			uint32_t ql = get_be32(d + pos);
			pos += 4;
			if (ql > len - pos || !m_string_ok(d + pos, ql)) {
				e_err(e, NBD_REP_ERR_INVALID);
				return true;
			}
			if ((ql == 15 && !memcmp(d + pos, "base:allocation", 15)) ||
			    (list && ql == 5 && !memcmp(d + pos, "base:", 5)))
				match = true;
			pos += ql;
		}
		const struct srv_export *ex = m_export(m, pos == len, d + 4, nl, e);
		if (!ex)
			return true;
		e->res = R_META;
		e->meta_match = match;
		e->meta_list = list;
		if (!list && match) {
			m->meta_selected = true;
			m->meta_export = ex;
		}
		return true;
	}
	default:
		/* PEEK_EXPORT, STARTTLS, EXTENDED_HEADERS, unknown: A4. */
		e_err(e, NBD_REP_ERR_UNSUP);
		return true;
	}
}

/* A8: the error a request must get, 0 if it must succeed. */
static uint32_t m_validate(const struct model *m, const struct srv_request *rq,
			   uint32_t *alt)
{
	uint64_t size = m->ex->map->size;
	uint16_t allowed;

	*alt = 0;
	switch (rq->type) {
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		return NBD_EPERM;
	case NBD_CMD_READ:
		allowed = m->eflags & NBD_FLAG_SEND_DF ? NBD_CMD_FLAG_DF : 0;
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed = NBD_CMD_FLAG_REQ_ONE;
		break;
	case NBD_CMD_FLUSH:
		if (!(m->eflags & NBD_FLAG_SEND_FLUSH))
			return NBD_EINVAL;
		allowed = 0;
		break;
	case NBD_CMD_CACHE:
		if (!(m->eflags & NBD_FLAG_SEND_CACHE))
			return NBD_EINVAL;
		allowed = 0;
		break;
	default:
		return NBD_EINVAL;
	}
	if (rq->flags & ~allowed)
		return NBD_EINVAL;
	if (rq->type == NBD_CMD_BLOCK_STATUS && !m->meta_active)
		return NBD_EINVAL;
	if (rq->type == NBD_CMD_FLUSH)
		return rq->offset == 0 && rq->len == 0 ? 0 : NBD_EINVAL;
	if (rq->len == 0)
		return NBD_EINVAL;
	if (rq->type == NBD_CMD_READ && rq->len > SRV_MAX_PAYLOAD) {
		*alt = m->structured ? NBD_EOVERFLOW : 0;
		return NBD_EINVAL;
	}
	if (rq->offset > size || rq->len > size - rq->offset)
		return NBD_EINVAL;
	return 0;
}

static void e_cmd(const struct model *m, struct expect *e, const struct srv_request *rq,
		  uint32_t err, uint32_t alt)
{
	e->kind = E_CMD;
	e->rq = *rq;
	e->err = err;
	e->alt_err = alt;
	e->structured = m->structured;
	e->meta_id = m->meta_id;
	e->eflags = m->eflags;
	e->size = m->ex->map->size;
	e->map = m->ex->map;
}

/*
 * The model's view of the message at buf (avail bytes): returns the bytes
 * it takes, 0 if it is not complete yet (or the client is closed), -1 if
 * the server must drop the client.  Fills *e.
 */
static ssize_t m_step(struct model *m, const uint8_t *buf, size_t avail, struct expect *e)
{
	memset(e, 0, sizeof(*e));
	if (m->skip) {
		if (avail == 0)
			return 0;
		size_t n = m->skip < avail ? (size_t)m->skip : avail;
		m->skip -= n;
		if (m->skip == 0) {
			if (m->skip_kind == SK_OPTION) {
				/* Its data was skipped: the checks that need none. */
				if (!m_option(m, m->skip_opt, NULL, 0, e))
					return -1;
			} else if (m->skip_kind == SK_WRITE) {
				struct srv_request rq = { .type = NBD_CMD_WRITE,
							  .cookie = m->skip_cookie };
				e_cmd(m, e, &rq, NBD_EPERM, 0);
			}
			m->skip_kind = SK_NONE;
		}
		return (ssize_t)n;
	}
	switch (m->phase) {
	case M_FLAGS: {
		if (avail < 4)
			return 0;
		uint32_t fl = get_be32(buf);
		if (fl & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
			return -1;	/* A3.2 */
		m->fixed = fl & NBD_FLAG_C_FIXED_NEWSTYLE;
		m->no_zeroes = fl & NBD_FLAG_C_NO_ZEROES;
		m->phase = M_OPTIONS;
		return 4;
	}
	case M_OPTIONS: {
		if (avail < 16)
			return 0;
		uint32_t opt = get_be32(buf + 8), olen = get_be32(buf + 12);
		if (get_be64(buf) != NBD_IHAVEOPT)
			return -1;
		if (++m->noptions > m->max_options)
			return -1;
		if (olen > SRV_OPT_HARD_CAP || (opt == NBD_OPT_EXPORT_NAME && olen > 4096))
			return -1;
		if (olen > SRV_OPT_SOFT_CAP) {
			m->skip = olen;
			m->skip_kind = SK_OPTION;
			m->skip_opt = opt;
			return 16;
		}
		if (avail - 16 < olen)
			return 0;
		if (!m_option(m, opt, buf + 16, olen, e))
			return -1;
		return 16 + (ssize_t)olen;
	}
	case M_TRANS: {
		if (avail < 28)
			return 0;
		if (get_be32(buf) != NBD_REQUEST_MAGIC)
			return -1;
		struct srv_request rq = {
			.flags = get_be16(buf + 4), .type = get_be16(buf + 6),
			.cookie = get_be64(buf + 8), .offset = get_be64(buf + 16),
			.len = get_be32(buf + 24),
		};
		if (rq.type == NBD_CMD_DISC) {
			m->phase = M_CLOSED;	/* A7.4: no reply */
			return 28;
		}
		if (rq.type == NBD_CMD_WRITE) {
			if (rq.len > SRV_WRITE_HARD_CAP)
				return -1;	/* A8 step 3 */
			if (rq.len) {
				m->skip = rq.len;
				m->skip_kind = SK_WRITE;
				m->skip_cookie = rq.cookie;
				return 28;
			}
		}
		uint32_t alt = 0, err = m->shutting_down ? NBD_ESHUTDOWN : m_validate(m, &rq, &alt);
		e_cmd(m, e, &rq, err, alt);
		return 28;
	}
	case M_CLOSED:
		break;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Checking the replies                                                */
/* ------------------------------------------------------------------ */

struct rd {
	const uint8_t *p;
	size_t n, pos;
};

static const uint8_t *take(struct rd *r, size_t n, const char *what)
{
	FZ_CHECK(r->n - r->pos >= n, "reply truncated: %s needs %zu bytes, %zu left",
		 what, n, r->n - r->pos);
	const uint8_t *p = r->p + r->pos;
	r->pos += n;
	return p;
}

/* A6: flags a read-only erofs-nbd export may and must advertise. */
static void check_eflags(uint16_t f, bool structured)
{
	FZ_CHECK((f & NBD_FLAG_HAS_FLAGS) && (f & NBD_FLAG_READ_ONLY),
		 "transmission flags 0x%04x lack HAS_FLAGS or READ_ONLY", f);
	FZ_CHECK(!(f & (NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
			NBD_FLAG_SEND_RESIZE | NBD_FLAG_SEND_FAST_ZERO | 0xf000)),
		 "transmission flags 0x%04x advertise writes or reserved bits", f);
	FZ_CHECK(!!(f & NBD_FLAG_SEND_DF) == structured,
		 "SEND_DF in 0x%04x but structured replies %s", f, structured ? "on" : "off");
}

/* An error message: UTF-8 for humans, no NUL, at most 4096 bytes (A1). */
static void check_msg(const uint8_t *p, size_t n)
{
	FZ_CHECK(n <= 4096 && !memchr(p, 0, n), "error message of %zu bytes with NUL or too long",
		 n);
}

static void check_option_replies(struct model *m, const struct expect *e,
				 const uint8_t *out, size_t len)
{
	struct rd r = { out, len, 0 };
	bool seen_export = false, seen_name = false, seen_desc = false, seen_bs = false;
	bool seen[MAX_EXPORTS] = { false };
	size_t nmeta = 0;

	for (;;) {
		const uint8_t *h = take(&r, 20, "option reply header");
		uint32_t type = get_be32(h + 12), plen = get_be32(h + 16);
		FZ_CHECK(get_be64(h) == NBD_OPT_REPLY_MAGIC, "option reply magic");
		FZ_CHECK(get_be32(h + 8) == e->opt, "option reply for %u answers %u",
			 e->opt, get_be32(h + 8));
		const uint8_t *p = take(&r, plen, "option reply payload");

		if (type & NBD_REP_FLAG_ERROR) {
			bool ok = false;
			for (size_t i = 0; i < e->nerrs; i++)
				ok |= e->res == R_ERR && type == e->errs[i];
			FZ_CHECK(ok, "option %u: error reply 0x%x, expected %s 0x%x", e->opt,
				 type, e->res == R_ERR ? "error" : "success", e->errs[0]);
			check_msg(p, plen);
			FZ_CHECK(r.pos == r.n, "bytes after the final option reply");
			return;
		}
		FZ_CHECK(e->res != R_ERR, "option %u: reply type %u, expected error 0x%x",
			 e->opt, type, e->errs[0]);
		if (type == NBD_REP_ACK) {
			FZ_CHECK(plen == 0, "ACK with a payload");
			FZ_CHECK(r.pos == r.n, "bytes after the ACK");
			break;
		}
		switch (e->res) {
		case R_LIST: {
			FZ_CHECK(type == NBD_REP_SERVER && plen >= 4, "LIST reply type %u len %u",
				 type, plen);
			uint32_t nl = get_be32(p);
			FZ_CHECK(nl <= plen - 4, "REP_SERVER name length past the payload");
			const struct srv_export *ex = NULL;
			for (size_t i = 0; i < m->w->nexports; i++) {
				const struct srv_export *x = &m->w->exports[i];
				if (strlen(x->name) == nl && !memcmp(x->name, p + 4, nl)) {
					FZ_CHECK(!seen[i], "export listed twice");
					seen[i] = true;
					ex = x;
				}
			}
			FZ_CHECK(ex, "LIST names an export that does not exist");
			size_t dl = plen - 4 - nl;
			const char *desc = ex->description ? ex->description : "";
			FZ_CHECK(dl == strlen(desc) && !memcmp(p + 4 + nl, desc, dl),
				 "LIST description");
			break;
		}
		case R_INFO: {
			FZ_CHECK(type == NBD_REP_INFO && plen >= 2, "INFO reply type %u len %u",
				 type, plen);
			uint16_t info = get_be16(p);
			FZ_CHECK(seen_export || info == NBD_INFO_EXPORT,
				 "INFO_EXPORT must come first (got %u)", info);
			if (info == NBD_INFO_EXPORT) {
				FZ_CHECK(!seen_export && plen == 12, "INFO_EXPORT twice or len %u",
					 plen);
				seen_export = true;
				FZ_CHECK(get_be64(p + 2) == e->ex->map->size, "INFO_EXPORT size");
				uint16_t fl = get_be16(p + 10);
				check_eflags(fl, m->structured);
				if (e->opt == NBD_OPT_GO)
					m->eflags = fl;
			} else if (info == NBD_INFO_NAME) {
				FZ_CHECK(e->want_name && !seen_name,
					 "unrequested or repeated INFO_NAME");
				seen_name = true;
				FZ_CHECK(plen - 2 == strlen(e->ex->name) &&
					 !memcmp(p + 2, e->ex->name, plen - 2), "INFO_NAME");
			} else if (info == NBD_INFO_DESCRIPTION) {
				FZ_CHECK(e->want_desc && !seen_desc,
					 "unrequested or repeated DESCRIPTION");
				seen_desc = true;
				const char *desc = e->ex->description ? e->ex->description : "";
				FZ_CHECK(plen - 2 == strlen(desc) && !memcmp(p + 2, desc, plen - 2),
					 "INFO_DESCRIPTION");
			} else if (info == NBD_INFO_BLOCK_SIZE) {
				FZ_CHECK(!seen_bs && plen == 14, "BLOCK_SIZE twice or len %u",
					 plen);
				seen_bs = true;
				uint32_t mn = get_be32(p + 2), pr = get_be32(p + 6);
				uint32_t mx = get_be32(p + 10);
				/* A5: what libnbd and qemu need to use them. */
				FZ_CHECK(mn >= 1 && mn <= 65536 && !(mn & (mn - 1)) &&
					 !(pr & (pr - 1)) && pr >= 512 && pr >= mn && mx >= pr &&
					 (mx % mn == 0 || mx == UINT32_MAX) &&
					 e->ex->map->size % mn == 0,
					 "BLOCK_SIZE %u/%u/%u", mn, pr, mx);
			} else {
				FZ_FAIL("unknown INFO type %u sent", info);
			}
			break;
		}
		case R_META: {
			FZ_CHECK(type == NBD_REP_META_CONTEXT && plen == 4 + 15 &&
				 !memcmp(p + 4, "base:allocation", 15), "META_CONTEXT reply");
			FZ_CHECK(e->meta_match && ++nmeta == 1, "unexpected META_CONTEXT reply");
			if (e->meta_list)
				FZ_CHECK(get_be32(p) == 0, "LIST_META_CONTEXT id must be 0");
			else
				m->meta_id = get_be32(p);
			break;
		}
		default:
			FZ_FAIL("option %u: reply type %u before the ACK", e->opt, type);
		}
	}
	/* Everything that must precede the ACK did. */
	if (e->res == R_LIST)
		for (size_t i = 0; i < m->w->nexports; i++)
			FZ_CHECK(seen[i], "LIST left out export %zu", i);
	if (e->res == R_INFO)
		FZ_CHECK(seen_export && seen_name == e->want_name &&
			 seen_desc == e->want_desc && (seen_bs || !e->want_bs),
			 "INFO replies missing");
	if (e->res == R_META)
		FZ_CHECK(nmeta == (e->meta_match ? 1u : 0u), "META_CONTEXT count");
}

static void check_export_name_reply(struct model *m, const struct expect *e,
				    const uint8_t *out, size_t len)
{
	FZ_CHECK(len == (m->no_zeroes ? 10u : 134u), "EXPORT_NAME reply of %zu bytes", len);
	FZ_CHECK(get_be64(out) == e->ex->map->size, "EXPORT_NAME size");
	m->eflags = get_be16(out + 8);
	check_eflags(m->eflags, m->structured);
	for (size_t i = 10; i < len; i++)
		FZ_CHECK(out[i] == 0, "EXPORT_NAME padding not zero");
}

static int cmp_u64pair(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* A structured READ's chunks (A9): inside the request, covering it, no overlap. */
static void check_read_chunks(const struct expect *e, struct rd *r)
{
	const struct srv_request *rq = &e->rq;
	uint64_t (*iv)[2] = NULL;
	size_t niv = 0, ncontent = 0;
	uint8_t *buf = NULL;

	for (bool done = false; !done;) {
		const uint8_t *h = take(r, 20, "chunk header");
		uint16_t flags = get_be16(h + 4), type = get_be16(h + 6);
		uint32_t plen = get_be32(h + 16);
		FZ_CHECK(get_be32(h) == NBD_STRUCTURED_REPLY_MAGIC, "chunk magic");
		FZ_CHECK(get_be64(h + 8) == rq->cookie, "chunk cookie not echoed");
		FZ_CHECK(!(flags & ~NBD_REPLY_FLAG_DONE), "unknown chunk flags 0x%x", flags);
		done = flags & NBD_REPLY_FLAG_DONE;
		const uint8_t *p = take(r, plen, "chunk payload");
		uint64_t off, n;
		if (type == NBD_REPLY_TYPE_OFFSET_DATA) {
			FZ_CHECK(plen >= 9, "OFFSET_DATA of %u bytes", plen);
			off = get_be64(p);
			n = plen - 8;
		} else if (type == NBD_REPLY_TYPE_OFFSET_HOLE) {
			FZ_CHECK(plen == 12, "OFFSET_HOLE of %u bytes", plen);
			off = get_be64(p);
			n = get_be32(p + 8);
			FZ_CHECK(n > 0, "empty OFFSET_HOLE");
			FZ_CHECK(!(rq->flags & NBD_CMD_FLAG_DF), "OFFSET_HOLE with DF");
		} else {
			FZ_FAIL("READ answered with chunk type 0x%x", type);
		}
		FZ_CHECK(off >= rq->offset && n <= rq->offset + rq->len - off &&
			 off <= rq->offset + rq->len,
			 "chunk [%llu, +%llu) outside the request [%llu, +%u)",
			 (unsigned long long)off, (unsigned long long)n,
			 (unsigned long long)rq->offset, rq->len);
		if (type == NBD_REPLY_TYPE_OFFSET_DATA) {
			buf = realloc(buf, n);
			FZ_CHECK(buf, "out of memory");
			map_read(e->map, off, buf, n);
			FZ_CHECK(!memcmp(buf, p + 8, n),
				 "READ data at %llu differs from the export",
				 (unsigned long long)off);
		} else {
			FZ_CHECK(map_is_zero(e->map, off, n),
				 "OFFSET_HOLE over non-zero bytes at %llu",
				 (unsigned long long)off);
		}
		iv = realloc(iv, (niv + 1) * sizeof(*iv));
		FZ_CHECK(iv, "out of memory");
		iv[niv][0] = off;
		iv[niv][1] = n;
		niv++;
		ncontent++;
	}
	if (rq->flags & NBD_CMD_FLAG_DF)
		FZ_CHECK(ncontent == 1, "READ with DF in %zu chunks", ncontent);
	qsort(iv, niv, sizeof(*iv), cmp_u64pair);
	uint64_t pos = rq->offset;
	for (size_t i = 0; i < niv; i++) {
		FZ_CHECK(iv[i][0] == pos, "READ chunks leave a gap or overlap at %llu",
			 (unsigned long long)pos);
		pos += iv[i][1];
	}
	FZ_CHECK(pos == rq->offset + rq->len, "READ chunks do not cover the request");
	free(iv);
	free(buf);
}

/* BLOCK_STATUS (A10): one chunk, extents from the offset, honest ZERO bits. */
static void check_block_status(const struct expect *e, struct rd *r)
{
	const struct srv_request *rq = &e->rq;
	const uint8_t *h = take(r, 20, "chunk header");
	uint32_t plen = get_be32(h + 16);
	FZ_CHECK(get_be32(h) == NBD_STRUCTURED_REPLY_MAGIC, "chunk magic");
	FZ_CHECK(get_be64(h + 8) == rq->cookie, "chunk cookie not echoed");
	FZ_CHECK(get_be16(h + 4) == NBD_REPLY_FLAG_DONE, "BLOCK_STATUS chunk without DONE");
	FZ_CHECK(get_be16(h + 6) == NBD_REPLY_TYPE_BLOCK_STATUS, "chunk type 0x%x",
		 get_be16(h + 6));
	FZ_CHECK(plen >= 12 && (plen - 4) % 8 == 0, "BLOCK_STATUS payload of %u bytes", plen);
	const uint8_t *p = take(r, plen, "BLOCK_STATUS payload");
	FZ_CHECK(get_be32(p) == e->meta_id, "context id %u, SET gave %u", get_be32(p), e->meta_id);
	size_t n = (plen - 4) / 8;
	FZ_CHECK(n <= (1u << 20), "%zu extents", n);
	if (rq->flags & NBD_CMD_FLAG_REQ_ONE)
		FZ_CHECK(n == 1, "REQ_ONE answered with %zu extents", n);
	uint64_t pos = rq->offset, end = rq->offset + rq->len;
	for (size_t i = 0; i < n; i++) {
		uint32_t len = get_be32(p + 4 + 8 * i), st = get_be32(p + 8 + 8 * i);
		FZ_CHECK(len > 0, "empty extent");
		FZ_CHECK(pos < end, "extent %zu starts at or past the request end", i);
		FZ_CHECK(len <= e->size - pos, "extent past the export end");
		if (rq->flags & NBD_CMD_FLAG_REQ_ONE)
			FZ_CHECK(len <= rq->len, "REQ_ONE extent longer than the request");
		FZ_CHECK(!(st & ~(NBD_STATE_HOLE | NBD_STATE_ZERO)), "status 0x%x", st);
		FZ_CHECK(!(st & NBD_STATE_HOLE) || (st & NBD_STATE_ZERO),
			 "HOLE without ZERO: clients may skip bytes we serve");
		if (st & NBD_STATE_ZERO)
			FZ_CHECK(map_is_zero(e->map, pos, len), "ZERO extent at %llu is not zero",
				 (unsigned long long)pos);
		pos += len;
		/* Lengths in whole sectors except at the edges (A10). */
		if (i + 1 < n)
			FZ_CHECK(pos % 512 == 0, "extent boundary %llu not sector aligned",
				 (unsigned long long)pos);
	}
}

static void check_cmd_reply(const struct expect *e, const uint8_t *out, size_t len,
			    bool injected_eio)
{
	const struct srv_request *rq = &e->rq;
	struct rd r = { out, len, 0 };
	uint32_t err = injected_eio ? NBD_EIO : e->err;
	bool chunks = e->structured &&
		      (rq->type == NBD_CMD_READ || rq->type == NBD_CMD_BLOCK_STATUS);

	FZ_CHECK(len >= 4, "empty reply to command %u", rq->type);
	uint32_t magic = get_be32(out);
	if (err) {
		if (magic == NBD_STRUCTURED_REPLY_MAGIC) {
			FZ_CHECK(e->structured, "structured reply without STRUCTURED_REPLY");
			const uint8_t *h = take(&r, 20, "chunk header");
			uint32_t plen = get_be32(h + 16);
			FZ_CHECK(get_be64(h + 8) == rq->cookie, "cookie not echoed");
			FZ_CHECK(get_be16(h + 4) == NBD_REPLY_FLAG_DONE,
				 "error chunk without DONE");
			FZ_CHECK(get_be16(h + 6) == NBD_REPLY_TYPE_ERROR,
				 "command %u: error expected, chunk type 0x%x", rq->type,
				 get_be16(h + 6));
			/* qemu takes at most 1000 bytes of non-data payload (A9). */
			FZ_CHECK(plen >= 6 && plen <= 1000, "ERROR payload of %u bytes", plen);
			const uint8_t *p = take(&r, plen, "ERROR payload");
			uint32_t v = get_be32(p);
			FZ_CHECK(v == err || (v == e->alt_err && v),
				 "command %u: error %u, expected %u",
				 rq->type, v, err);
			FZ_CHECK(get_be16(p + 4) == plen - 6, "ERROR message length");
			check_msg(p + 6, plen - 6);
		} else {
			FZ_CHECK(!chunks, "command %u answered with a simple reply under "
				 "structured replies", rq->type);
			const uint8_t *h = take(&r, 16, "simple reply");
			FZ_CHECK(magic == NBD_SIMPLE_REPLY_MAGIC, "reply magic 0x%08x", magic);
			FZ_CHECK(get_be64(h + 8) == rq->cookie, "cookie not echoed");
			uint32_t v = get_be32(h + 4);
			FZ_CHECK(v == err || (v == e->alt_err && v),
				 "command %u: error %u, expected %u",
				 rq->type, v, err);
		}
	} else if (rq->type == NBD_CMD_READ && !e->structured) {
		const uint8_t *h = take(&r, 16, "simple reply");
		FZ_CHECK(magic == NBD_SIMPLE_REPLY_MAGIC, "reply magic 0x%08x", magic);
		FZ_CHECK(get_be64(h + 8) == rq->cookie, "cookie not echoed");
		FZ_CHECK(get_be32(h + 4) == 0, "READ failed with %u, expected success",
			 get_be32(h + 4));
		const uint8_t *d = take(&r, rq->len, "READ data");
		uint8_t *buf = malloc(rq->len);
		FZ_CHECK(buf, "out of memory");
		map_read(e->map, rq->offset, buf, rq->len);
		FZ_CHECK(!memcmp(buf, d, rq->len), "READ data differs from the export");
		free(buf);
	} else if (rq->type == NBD_CMD_READ) {
		check_read_chunks(e, &r);
	} else if (rq->type == NBD_CMD_BLOCK_STATUS) {
		check_block_status(e, &r);
	} else {
		/* FLUSH, CACHE: success, simple, or a NONE chunk with DONE. */
		if (magic == NBD_STRUCTURED_REPLY_MAGIC && e->structured) {
			const uint8_t *h = take(&r, 20, "chunk header");
			FZ_CHECK(get_be16(h + 4) == NBD_REPLY_FLAG_DONE &&
				 get_be16(h + 6) == NBD_REPLY_TYPE_NONE && get_be32(h + 16) == 0,
				 "command %u: success chunk must be NONE with DONE", rq->type);
			FZ_CHECK(get_be64(h + 8) == rq->cookie, "cookie not echoed");
		} else {
			const uint8_t *h = take(&r, 16, "simple reply");
			FZ_CHECK(magic == NBD_SIMPLE_REPLY_MAGIC, "reply magic 0x%08x", magic);
			FZ_CHECK(get_be64(h + 8) == rq->cookie, "cookie not echoed");
			FZ_CHECK(get_be32(h + 4) == 0,
				 "command %u failed with %u, expected success",
				 rq->type, get_be32(h + 4));
		}
	}
	FZ_CHECK(r.pos == r.n, "%zu bytes after the reply to command %u", r.n - r.pos,
		 rq->type);
}

/* ------------------------------------------------------------------ */
/* The loop: what plain.c does, with the output captured               */
/* ------------------------------------------------------------------ */

struct deferred {
	struct srv_reply *rp;
	struct expect e;
};

struct session {
	struct world *w;
	struct srv_conn c;
	struct model m;
	/* Replies sent during the current step, back to back. */
	uint8_t *out;
	size_t out_len, out_cap;
	bool injected;		/* a read of this step was failed on purpose */
	struct srv_reply *step_deferred[4];
	size_t nstep_deferred;
	struct deferred deferred[MAX_DEFERRED];
	size_t ndeferred;
	unsigned int nreads;
	uint64_t read_bytes;	/* READ bytes asked for, against READ_BUDGET */
	unsigned int requests;	/* transmission requests, against max_requests */
	unsigned int max_requests;
};

static struct session *g_sess;
static bool trace;	/* FUZZ_TRACE=1: say what each step did */

static void cap_send(struct srv_conn *c, struct srv_reply *rp)
{
	struct session *s = g_sess;

	FZ_CHECK(rp->conn == c, "reply of another connection");
	if (s->out_len + rp->len > s->out_cap) {
		s->out_cap = (s->out_len + rp->len) * 2;
		s->out = realloc(s->out, s->out_cap);
		FZ_CHECK(s->out, "out of memory");
	}
	memcpy(s->out + s->out_len, rp->buf, rp->len);
	s->out_len += rp->len;
	srv_reply_free(rp);
}

/* Fills rp's file segments from the fake files, checking their bounds. */
static void do_reads(struct session *s, struct srv_reply *rp, bool *injected)
{
	const struct region_map *map = rp->ex->exp->map;

	FZ_CHECK(rp->nsegs > 0, "read() called without segments");
	for (size_t i = 0; i < rp->nsegs; i++) {
		struct srv_read_seg *g = &rp->segs[i];
		FZ_CHECK(g->rp == rp && g->source < map->nsources, "segment source %u",
			 g->source);
		const struct region_source *src = &map->sources[g->source];
		FZ_CHECK(g->file_off <= src->size && g->len <= src->size - g->file_off,
			 "read of %zu bytes at %llu past the source's %llu bytes", g->len,
			 (unsigned long long)g->file_off, (unsigned long long)src->size);
		FZ_CHECK(g->buf_off <= rp->len && g->len <= rp->len - g->buf_off,
			 "segment outside the reply buffer");
		fake_read(fake_of(src->opaque), g->file_off, rp->buf + g->buf_off, g->len);
		g->done = g->len;
	}
	s->nreads++;
	if (s->w->fail_every && s->nreads % s->w->fail_every == 0) {
		rp->err = -EIO;
		*injected = true;
	}
	srv_read_finish(rp);
}

static void cap_read(struct srv_conn *c, struct srv_reply *rp)
{
	struct session *s = g_sess;

	if (s->w->defer_every && s->nstep_deferred < ARRAY_SIZE(s->step_deferred) &&
	    (s->nreads + s->ndeferred) % (s->w->defer_every + 1) != 0) {
		s->step_deferred[s->nstep_deferred++] = rp;
		return;
	}
	do_reads(s, rp, &s->injected);
	cap_send(c, rp);
}

static const struct srv_conn_ops cap_ops = { .send = cap_send, .read = cap_read };

/* Completes the oldest deferred READ and checks its reply. */
static void complete_one(struct session *s)
{
	struct deferred d = s->deferred[0];
	bool injected = false;

	memmove(&s->deferred[0], &s->deferred[1], (s->ndeferred - 1) * sizeof(d));
	s->ndeferred--;
	s->out_len = 0;
	do_reads(s, d.rp, &injected);
	cap_send(&s->c, d.rp);
	check_cmd_reply(&d.e, s->out, s->out_len, injected);
	s->out_len = 0;
}

/*
 * Runs one server step on buf and the model's step on the same bytes;
 * returns what the server returned (> 0 consumed, 0 more needed, < 0 drop).
 */
static ssize_t step(struct session *s, const uint8_t *buf, size_t len)
{
	struct expect e;

	s->out_len = 0;
	s->injected = false;
	s->nstep_deferred = 0;
	ssize_t n = srv_conn_step(&s->c, buf, len);
	ssize_t mn = m_step(&s->m, buf, len, &e);

	if (trace)
		fprintf(stderr, "step: %zu bytes buffered, server %zd, model %zd, phase %d, "
			"expect kind %d opt %u res %d cmd %u err %u, %zu reply bytes\n", len, n,
			mn, s->m.phase, e.kind, e.opt, e.res, e.rq.type, e.err, s->out_len);

	if (n < 0 || mn < 0) {
		FZ_CHECK(n < 0 && mn < 0, "server %s the client, the spec says %s",
			 n < 0 ? "dropped" : "kept", mn < 0 ? "drop it" : "keep it");
		FZ_CHECK(s->out_len == 0 && s->nstep_deferred == 0, "replies before a drop");
		return n;
	}
	FZ_CHECK(n == mn, "server took %zd bytes, the message has %zd", n, mn);
	if (e.kind == E_CMD && e.rq.type == NBD_CMD_READ && !e.err)
		s->read_bytes += e.rq.len;
	if (e.kind == E_CMD)
		s->requests++;
	if (n == 0) {
		FZ_CHECK(s->out_len == 0 && s->nstep_deferred == 0, "replies without a message");
		return 0;
	}
	switch (e.kind) {
	case E_NONE:
		FZ_CHECK(s->out_len == 0 && s->nstep_deferred == 0,
			 "%zu reply bytes to a message that takes none", s->out_len);
		break;
	case E_OPT:
		FZ_CHECK(s->nstep_deferred == 0, "file read during the handshake");
		check_option_replies(&s->m, &e, s->out, s->out_len);
		break;
	case E_EXPORT_NAME:
		check_export_name_reply(&s->m, &e, s->out, s->out_len);
		break;
	case E_CMD:
		if (s->nstep_deferred) {
			FZ_CHECK(s->nstep_deferred == 1 && s->out_len == 0,
				 "a request answered twice");
			if (s->ndeferred == MAX_DEFERRED)
				complete_one(s);
			s->deferred[s->ndeferred++] = (struct deferred){
				.rp = s->step_deferred[0], .e = e,
			};
		} else {
			check_cmd_reply(&e, s->out, s->out_len, s->injected);
		}
		break;
	}
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/*
	 * Debug messages on, so that formatting them (client strings
	 * included) is fuzzed too; they go to /dev/null unless FUZZ_TRACE is
	 * set.  Invariant failures and sanitizer reports write to fd 2.
	 */
	log_max_level = LOG_DEBUG;
	trace = getenv("FUZZ_TRACE") != NULL;
	if (!trace)
		stderr = fopen("/dev/null", "w");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	static struct world w;
	struct stream st = { 0 };
	struct session s = { 0 };

	world_init(&w, &f);
	while (f.n && st.len < MAX_STREAM)
		decode_record(&st, &f, w.nexports ? w.exports[0].map->size : 0);

	s.w = &w;
	/* The many-region export is slow to answer: a few requests per input. */
	s.max_requests = w.exports[0].map == &w.maps[0] ? UINT32_MAX : 4;
	s.m = (struct model){ .w = &w, .phase = M_FLAGS };
	s.m.max_options = 4 * w.nexports + 16 > 64 ? (unsigned int)(4 * w.nexports + 16) : 64;
	g_sess = &s;

	/* A3.1: the greeting. */
	FZ_CHECK(srv_conn_start(&s.c, &w.srv, &cap_ops) == 0, "srv_conn_start");
	FZ_CHECK(s.out_len == 18 && get_be64(s.out) == NBD_INIT_PASSWD &&
		 get_be64(s.out + 8) == NBD_IHAVEOPT &&
		 (get_be16(s.out + 16) & NBD_FLAG_FIXED_NEWSTYLE) &&
		 !(get_be16(s.out + 16) & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)),
		 "greeting");
	FZ_CHECK(get_be16(s.out + 16) & NBD_FLAG_NO_ZEROES, "greeting without NO_ZEROES");

	/* Deliver the stream piece by piece, into a receive buffer as plain.c does. */
	static uint8_t in[SRV_INBUF_SIZE];
	size_t in_len = 0, pos = 0, cut = 0;
	bool alive = true;
	while (alive) {
		size_t end = cut < st.ncuts ? st.cuts[cut] : st.len;
		if (end < pos)
			end = pos;
		size_t n = end - pos;
		if (n > SRV_INBUF_SIZE - in_len)
			n = SRV_INBUF_SIZE - in_len;
		if (n)
			memcpy(in + in_len, st.buf + pos, n);
		in_len += n;
		pos += n;

		size_t used = 0;
		for (;;) {
			if (s.m.phase == M_TRANS)
				while (!srv_conn_can_take(&s.c)) {
					FZ_CHECK(s.ndeferred, "in-flight budget exhausted with "
						 "nothing in flight");
					complete_one(&s);
				}
			ssize_t r = s.read_bytes > READ_BUDGET || s.requests > s.max_requests ?
				    -1 : step(&s, in + used, in_len - used);
			if (r < 0) {
				alive = false;
				break;
			}
			if (r == 0)
				break;
			used += (size_t)r;
		}
		memmove(in, in + used, in_len - used);
		in_len -= used;
		if (!alive || s.m.phase == M_CLOSED)
			break;
		if (pos == end && cut < st.ncuts) {
			if (st.cut_flush[cut])
				while (s.ndeferred)
					complete_one(&s);
			if (st.cut_shutdown[cut]) {
				s.c.shutting_down = true;
				s.m.shutting_down = true;
			}
			cut++;
			continue;
		}
		if (pos == st.len)
			break;
		FZ_CHECK(n > 0 || in_len < SRV_INBUF_SIZE, "receive buffer full without progress");
		if (n == 0 && in_len == SRV_INBUF_SIZE)
			break;
	}
	while (s.ndeferred)
		complete_one(&s);
	FZ_CHECK(s.c.inflight == 0 && s.c.inflight_bytes == 0,
		 "in-flight accounting: %u replies, %zu bytes left", s.c.inflight,
		 s.c.inflight_bytes);

	free(s.out);
	free(st.buf);
	world_free(&w);
	return 0;
}
