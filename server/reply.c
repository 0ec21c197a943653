/* SPDX-License-Identifier: MIT */
/*
 * reply.c - building replies (nbd-protocol.md A3.4, A7.2, A9, A10):
 * option replies, simple replies, and the structured reply chunks
 * OFFSET_DATA, OFFSET_HOLE, NONE, ERROR and BLOCK_STATUS.  A READ reply is
 * laid out once, with its file data read straight into the reply buffer
 * after the chunk header, so the loops send it with a single send.
 *
 * Zero regions are reported (OFFSET_HOLE, HOLE|ZERO extents) only in whole
 * 512-byte sectors (A10: lengths are multiples of 512 except at the export
 * end or at the edges of an unaligned request); the unaligned head or tail
 * of a zero region travels as data.  READ replies use OFFSET_HOLE only for
 * zero regions of at least SRV_READ_HOLE_MIN bytes: the padding after each
 * file's last block is cheaper to send as data than as a chunk of its own.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/cleanup.h"
#include "server/internal.h"

struct srv_reply *srv_reply_new(struct srv_conn *c)
{
	struct srv_reply *rp = malloc(sizeof(*rp));
	if (!rp)
		return NULL;
	memset(rp, 0, offsetof(struct srv_reply, inline_segs));
	rp->conn = c;
	rp->buf = rp->small;
	rp->segs = rp->inline_segs;
	/* Atomic: plain.c frees replies on its sender thread. */
	__atomic_add_fetch(&c->inflight, 1, __ATOMIC_RELAXED);
	return rp;
}

void srv_reply_free(struct srv_reply *rp)
{
	if (!rp)
		return;
	struct srv_conn *c = rp->conn;
	assert(__atomic_load_n(&c->inflight, __ATOMIC_RELAXED) > 0);
	__atomic_sub_fetch(&c->inflight, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&c->inflight_bytes, rp->cost, __ATOMIC_RELAXED);
	zc_release(rp);
	if (rp->segs != rp->inline_segs)
		free(rp->segs);
	free(rp->heap);
	free(rp);
}

/* Drops the heap buffer (the reply is about to be rebuilt small). */
static void reply_reset(struct srv_reply *rp)
{
	if (rp->heap) {
		__atomic_sub_fetch(&rp->conn->inflight_bytes, rp->cost, __ATOMIC_RELAXED);
		rp->cost = 0;
		free(rp->heap);
		rp->heap = NULL;
		rp->heap_cap = 0;
	}
	rp->buf = rp->small;
	rp->len = 0;
}

uint8_t *srv_reply_append(struct srv_reply *rp, size_t n)
{
	size_t need = rp->len + n;

	if (need < n)
		return NULL;
	if (rp->buf == rp->small && need <= sizeof(rp->small))
		goto out;
	if (!rp->heap || need > rp->heap_cap) {
		size_t cap = rp->heap ? rp->heap_cap : 0;
		cap = cap * 2 > need ? cap * 2 : need;
		uint8_t *p = realloc(rp->heap, cap);
		if (!p)
			return NULL;
		if (!rp->heap)
			memcpy(p, rp->small, rp->len);
		rp->heap = p;
		rp->buf = p;
		__atomic_add_fetch(&rp->conn->inflight_bytes, cap - rp->cost,
				   __ATOMIC_RELAXED);
		rp->cost = cap;
		rp->heap_cap = cap;
	}
out:;
	uint8_t *p = rp->buf + rp->len;
	rp->len = need;
	return p;
}

int srv_reply_option(struct srv_reply *rp, uint32_t option, uint32_t type,
		     const void *payload, size_t len)
{
	uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_option_reply) + len);
	if (!p)
		return -ENOMEM;
	put_be64(p + offsetof(struct nbd_option_reply, magic), NBD_OPT_REPLY_MAGIC);
	put_be32(p + offsetof(struct nbd_option_reply, option), option);
	put_be32(p + offsetof(struct nbd_option_reply, reply), type);
	put_be32(p + offsetof(struct nbd_option_reply, len), (uint32_t)len);
	if (len)
		memcpy(p + sizeof(struct nbd_option_reply), payload, len);
	return 0;
}

void srv_reply_simple(struct srv_reply *rp, uint64_t cookie, uint32_t error)
{
	reply_reset(rp);
	uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_simple_reply));
	put_be32(p + offsetof(struct nbd_simple_reply, magic), NBD_SIMPLE_REPLY_MAGIC);
	put_be32(p + offsetof(struct nbd_simple_reply, error), error);
	put_be64(p + offsetof(struct nbd_simple_reply, cookie), cookie);
}

/* Writes a chunk header at p. */
static void put_chunk_hdr(uint8_t *p, uint16_t flags, uint16_t type,
			  uint64_t cookie, uint32_t len)
{
	put_be32(p + offsetof(struct nbd_chunk_hdr, magic), NBD_STRUCTURED_REPLY_MAGIC);
	put_be16(p + offsetof(struct nbd_chunk_hdr, flags), flags);
	put_be16(p + offsetof(struct nbd_chunk_hdr, type), type);
	put_be64(p + offsetof(struct nbd_chunk_hdr, cookie), cookie);
	put_be32(p + offsetof(struct nbd_chunk_hdr, len), len);
}

/* Error messages stay short: qemu takes at most 1000 bytes (A9). */
#define SRV_ERROR_MSG_MAX 96

void srv_reply_error_chunk(struct srv_reply *rp, uint64_t cookie,
			   uint32_t error, const char *msg)
{
	size_t ml = msg ? strlen(msg) : 0;
	if (ml > SRV_ERROR_MSG_MAX)
		ml = SRV_ERROR_MSG_MAX;
	_Static_assert(sizeof(((struct srv_reply *)0)->small) >=
		       sizeof(struct nbd_chunk_hdr) + sizeof(struct nbd_chunk_error) +
		       SRV_ERROR_MSG_MAX, "error chunks fit the inline buffer");
	reply_reset(rp);
	uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_chunk_hdr) +
				      sizeof(struct nbd_chunk_error) + ml);
	put_chunk_hdr(p, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie,
		      (uint32_t)(sizeof(struct nbd_chunk_error) + ml));
	p += sizeof(struct nbd_chunk_hdr);
	put_be32(p + offsetof(struct nbd_chunk_error, error), error);
	put_be16(p + offsetof(struct nbd_chunk_error, msg_len), (uint16_t)ml);
	if (ml)
		memcpy(p + sizeof(struct nbd_chunk_error), msg, ml);
}

void srv_reply_none(struct srv_reply *rp, uint64_t cookie)
{
	reply_reset(rp);
	uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_chunk_hdr));
	put_chunk_hdr(p, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
}

void srv_reply_error(const struct srv_conn *c, struct srv_reply *rp,
		     const struct srv_request *rq, int err, const char *msg)
{
	rp->cookie = rq->cookie;
	rp->cmd = rq->type;
	if (c->structured &&
	    (rq->type == NBD_CMD_READ || rq->type == NBD_CMD_BLOCK_STATUS))
		srv_reply_error_chunk(rp, rq->cookie, srv_nbd_errno(err), msg);
	else
		srv_reply_simple(rp, rq->cookie, srv_nbd_errno(err));
}

/*
 * The part of zero region r that is reported as zero: its interior in
 * whole 512-byte sectors, or up to the export end.  False if it is
 * empty or shorter than min bytes.
 */
static bool zero_interior(const struct region_map *map, const struct region *r,
			  uint64_t min, uint64_t *zs, uint64_t *ze)
{
	if (r->type != REGION_ZERO)
		return false;
	uint64_t s = ROUND_UP(r->start, (uint64_t)SRV_HOLE_ALIGN);
	uint64_t e = r->start + r->len;
	if (e != map->size)
		e &= ~(uint64_t)(SRV_HOLE_ALIGN - 1);
	if (s >= e || e - s < min)
		return false;
	*zs = s;
	*ze = e;
	return true;
}

/*
 * Classifies the bytes from pos (< end <= map->size): returns true if they
 * start a zero run (of a zero region with an interior of at least min
 * bytes), and sets *ret_end to where the run (of zeros, or of data) ends,
 * at most end.  Each region looked at past the first costs
 * one unit of *budget; at 0 the data run is cut short (still > pos).
 */
static bool next_run(const struct region_map *map, uint64_t pos, uint64_t end,
		     uint64_t min, uint64_t *ret_end, unsigned int *budget)
{
	ssize_t i = region_find(map, pos);
	uint64_t zs, ze;

	assert(i >= 0);
	if (zero_interior(map, &map->regions[i], min, &zs, &ze)) {
		if (pos >= zs && pos < ze) {
			*ret_end = ze < end ? ze : end;
			return true;
		}
		if (pos < zs) {
			*ret_end = zs < end ? zs : end;
			return false;
		}
	}
	for (size_t j = (size_t)i + 1; j < map->nregions; j++) {
		const struct region *n = &map->regions[j];
		if (n->start >= end || *budget == 0) {
			*ret_end = n->start < end ? n->start : end;
			return false;
		}
		(*budget)--;
		if (zero_interior(map, n, min, &zs, &ze)) {
			*ret_end = zs < end ? zs : end;
			return false;
		}
	}
	*ret_end = end;
	return false;
}

/* Adds a file read to rp; 0 or -ENOMEM. */
static int add_seg(struct srv_reply *rp, uint32_t source, uint64_t file_off,
		   size_t buf_off, size_t len)
{
	const size_t ninline = ARRAY_SIZE(rp->inline_segs);

	if (rp->nsegs >= ninline && (rp->nsegs & (rp->nsegs - 1)) == 0) {
		/* Grow at powers of two: ninline, 4, 8, ... */
		size_t cap = rp->nsegs * 2;
		struct srv_read_seg *s;
		if (rp->segs == rp->inline_segs) {
			s = malloc(cap * sizeof(*s));
			if (s)
				memcpy(s, rp->inline_segs, sizeof(rp->inline_segs));
		} else {
			s = reallocarray(rp->segs, cap, sizeof(*s));
		}
		if (!s)
			return -ENOMEM;
		rp->segs = s;
	}
	rp->segs[rp->nsegs++] = (struct srv_read_seg){
		.rp = rp, .source = source, .fd = -1, .file_off = file_off,
		.buf_off = buf_off, .len = len,
	};
	return 0;
}

/* Fills rp->buf[buf_off..] with the export bytes [pos, pos + len). */
static int fill_data(const struct region_map *map, struct srv_reply *rp,
		     size_t buf_off, uint64_t pos, size_t len)
{
	while (len > 0) {
		ssize_t i = region_find(map, pos);
		assert(i >= 0);
		const struct region *r = &map->regions[i];
		uint64_t skip = pos - r->start;
		size_t n = r->len - skip < len ? (size_t)(r->len - skip) : len;
		int ret;

		switch (r->type) {
		case REGION_ZERO:
			memset(rp->buf + buf_off, 0, n);
			break;
		case REGION_MEM:
			memcpy(rp->buf + buf_off, r->u.mem + skip, n);
			break;
		case REGION_FILE:
			ret = add_seg(rp, rp->ex->src_ids[r->u.file.source],
				      r->u.file.offset + skip,
				      buf_off, n);
			if (ret < 0)
				return ret;
			break;
		}
		buf_off += n;
		pos += n;
		len -= n;
	}
	return 0;
}

int srv_read_prepare(const struct srv_conn *c, const struct srv_request *rq,
		     struct srv_reply *rp)
{
	const struct region_map *map = c->ex->exp->map;
	const uint64_t end = rq->offset + rq->len;
	const uint64_t min = SRV_READ_HOLE_MIN;
	uint8_t *p;

	rp->cookie = rq->cookie;
	rp->cmd = NBD_CMD_READ;
	rp->ex = c->ex;

	if (!c->structured) {
		/* A7.2: header, then exactly len bytes. */
		p = srv_reply_append(rp, sizeof(struct nbd_simple_reply) + rq->len);
		if (!p)
			return -ENOMEM;
		put_be32(p, NBD_SIMPLE_REPLY_MAGIC);
		put_be32(p + 4, NBD_SUCCESS);
		put_be64(p + 8, rq->cookie);
		return fill_data(map, rp, sizeof(struct nbd_simple_reply),
				 rq->offset, rq->len);
	}
	if (rq->flags & NBD_CMD_FLAG_DF) {
		/* A9: one OFFSET_DATA chunk, holes sent as zero bytes. */
		p = srv_reply_append(rp, NBD_OFFSET_DATA_HDR + rq->len);
		if (!p)
			return -ENOMEM;
		put_chunk_hdr(p, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
			      rq->cookie, 8 + rq->len);
		put_be64(p + sizeof(struct nbd_chunk_hdr), rq->offset);
		return fill_data(map, rp, NBD_OFFSET_DATA_HDR, rq->offset, rq->len);
	}

	/* Pass 1: size the reply (chunk headers plus data bytes). */
	size_t total = 0;
	unsigned int budget = UINT32_MAX;
	for (uint64_t pos = rq->offset, re; pos < end; pos = re) {
		bool zero = next_run(map, pos, end, min, &re, &budget);
		total += zero ? sizeof(struct nbd_chunk_hdr) + sizeof(struct nbd_chunk_hole)
			      : NBD_OFFSET_DATA_HDR + (size_t)(re - pos);
	}
	p = srv_reply_append(rp, total);
	if (!p)
		return -ENOMEM;

	/* Pass 2: the chunks, DONE on the last one. */
	size_t off = 0, last = 0;
	budget = UINT32_MAX;
	for (uint64_t pos = rq->offset, re; pos < end; pos = re) {
		bool zero = next_run(map, pos, end, min, &re, &budget);
		uint32_t n = (uint32_t)(re - pos);
		last = off;
		if (zero) {
			put_chunk_hdr(rp->buf + off, 0, NBD_REPLY_TYPE_OFFSET_HOLE,
				      rq->cookie, sizeof(struct nbd_chunk_hole));
			off += sizeof(struct nbd_chunk_hdr);
			put_be64(rp->buf + off, pos);
			put_be32(rp->buf + off + 8, n);
			off += sizeof(struct nbd_chunk_hole);
		} else {
			put_chunk_hdr(rp->buf + off, 0, NBD_REPLY_TYPE_OFFSET_DATA,
				      rq->cookie, 8 + n);
			put_be64(rp->buf + off + sizeof(struct nbd_chunk_hdr), pos);
			off += NBD_OFFSET_DATA_HDR;
			int r = fill_data(map, rp, off, pos, n);
			if (r < 0)
				return r;
			off += n;
		}
	}
	assert(off == total);
	put_be16(rp->buf + last + offsetof(struct nbd_chunk_hdr, flags),
		 NBD_REPLY_FLAG_DONE);
	return 0;
}

void srv_read_finish(struct srv_reply *rp)
{
	if (rp->err == 0)
		return;
	struct srv_request rq = { .type = NBD_CMD_READ, .cookie = rp->cookie };
	if (rp->segs != rp->inline_segs)
		free(rp->segs);
	rp->segs = rp->inline_segs;
	rp->nsegs = 0;
	srv_reply_error(rp->conn, rp, &rq, rp->err, "I/O error reading the source");
}

int srv_block_status(const struct srv_conn *c, const struct srv_request *rq,
		     struct srv_reply *rp)
{
	const struct region_map *map = c->ex->exp->map;
	const uint64_t end = rq->offset + rq->len;
	const unsigned int max = rq->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : SRV_MAX_EXTENTS;
	unsigned int budget = SRV_EXTENT_BUDGET, n = 0;
	uint32_t last_status = 0;
	size_t last = 0;

	rp->cookie = rq->cookie;
	rp->cmd = NBD_CMD_BLOCK_STATUS;
	if (!srv_reply_append(rp, sizeof(struct nbd_chunk_hdr) + 4))
		return -ENOMEM;
	for (uint64_t pos = rq->offset, re; pos < end && budget > 0; pos = re) {
		budget--;
		bool zero = next_run(map, pos, end, SRV_HOLE_ALIGN, &re, &budget);
		uint32_t status = zero ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0;
		uint32_t len = (uint32_t)(re - pos);
		if (n > 0 && status == last_status) {
			/* Same status as the previous extent: merge. */
			put_be32(rp->buf + last, get_be32(rp->buf + last) + len);
			continue;
		}
		if (n == max)
			break;
		uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_extent));
		if (!p)
			return -ENOMEM;
		last = (size_t)(p - rp->buf);
		put_be32(p + offsetof(struct nbd_extent, len), len);
		put_be32(p + offsetof(struct nbd_extent, flags), status);
		last_status = status;
		n++;
	}
	assert(n >= 1);
	put_chunk_hdr(rp->buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
		      rq->cookie, (uint32_t)(rp->len - sizeof(struct nbd_chunk_hdr)));
	put_be32(rp->buf + sizeof(struct nbd_chunk_hdr), SRV_META_CONTEXT_ID);
	return 0;
}
