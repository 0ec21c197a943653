/* SPDX-License-Identifier: MIT */
/*
 * request.c - the transmission phase (nbd-protocol.md A7, A8, A11):
 * srv_conn_step() splits the byte stream into messages for either phase,
 * srv_validate_request() decides whether a request is acceptable and with
 * which errno it fails, and dispatch() hands valid ones to reply.c.
 * Validation is kept apart from dispatch, and srv_nbd_errno() is the only
 * place that turns errno values into NBD error values.
 */
#include <errno.h>

#include "server/internal.h"
#include "server/log.h"

static const char *cmd_name(uint16_t type)
{
	switch (type) {
	case NBD_CMD_READ: return "READ";
	case NBD_CMD_WRITE: return "WRITE";
	case NBD_CMD_DISC: return "DISC";
	case NBD_CMD_FLUSH: return "FLUSH";
	case NBD_CMD_TRIM: return "TRIM";
	case NBD_CMD_CACHE: return "CACHE";
	case NBD_CMD_WRITE_ZEROES: return "WRITE_ZEROES";
	case NBD_CMD_BLOCK_STATUS: return "BLOCK_STATUS";
	case NBD_CMD_RESIZE: return "RESIZE";
	}
	return "unknown";
}

uint32_t srv_nbd_errno(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return NBD_SUCCESS;
	case EPERM: return NBD_EPERM;
	case EINVAL: return NBD_EINVAL;
	case EOVERFLOW: return NBD_EOVERFLOW;
	case ENOMEM: return NBD_ENOMEM;
	case ENOSPC: return NBD_ENOSPC;
	case ENOTSUP: return NBD_ENOTSUP;
	case ESHUTDOWN: return NBD_ESHUTDOWN;
	case EIO:
	default:
		/* Anything else comes from the backend (open, read). */
		return NBD_EIO;
	}
}

bool srv_conn_can_take(const struct srv_conn *c)
{
	return __atomic_load_n(&c->inflight, __ATOMIC_RELAXED) < SRV_INFLIGHT_MAX &&
	       __atomic_load_n(&c->inflight_bytes, __ATOMIC_RELAXED) < SRV_INFLIGHT_BYTES;
}

int srv_validate_request(const struct srv_conn *c, const struct srv_request *rq)
{
	const uint64_t size = c->ex->exp->map->size;
	uint16_t allowed;

	/* A8 step 4: write-type commands on a read-only export. */
	switch (rq->type) {
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		return -EPERM;
	case NBD_CMD_READ:
		allowed = c->structured ? NBD_CMD_FLAG_DF : 0;
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed = NBD_CMD_FLAG_REQ_ONE;
		break;
	case NBD_CMD_FLUSH:
	case NBD_CMD_CACHE:
		allowed = 0;
		break;
	default:
		/* Step 5: RESIZE (not advertised) and unknown types. */
		return -EINVAL;
	}
	/* Step 6: FUA and PAYLOAD_LEN are never valid here, DF only once
	 * SEND_DF was advertised, REQ_ONE only on BLOCK_STATUS. */
	if (rq->flags & ~allowed)
		return -EINVAL;
	/* Step 7: BLOCK_STATUS needs base:allocation on this export. */
	if (rq->type == NBD_CMD_BLOCK_STATUS && !c->meta_active)
		return -EINVAL;
	/* Step 8. */
	if (rq->type == NBD_CMD_FLUSH)
		return rq->offset == 0 && rq->len == 0 ? 0 : -EINVAL;
	/* Step 9: zero-length requests (our choice). */
	if (rq->len == 0)
		return -EINVAL;
	/* Step 10. */
	if (rq->type == NBD_CMD_READ && rq->len > SRV_MAX_PAYLOAD)
		return -EINVAL;
	/* Step 11, written so that offset + len cannot overflow. */
	if (rq->offset > size || rq->len > size - rq->offset)
		return -EINVAL;
	return 0;
}

/* Queues the error reply for rq; 0 or -ENOMEM. */
static int send_error(struct srv_conn *c, const struct srv_request *rq, int err,
		      const char *msg)
{
	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	srv_reply_error(c, rp, rq, err, msg);
	c->ops->send(c, rp);
	return 0;
}

/* Executes a validated request (A8 step 13). */
static int dispatch(struct srv_conn *c, const struct srv_request *rq)
{
	struct srv_reply *rp = srv_reply_new(c);
	int r;

	if (!rp)
		return -ENOMEM;
	switch (rq->type) {
	case NBD_CMD_READ:
		if (rq->len > c->max_read_seen) {
			c->max_read_seen = rq->len;
			log_debug("client %lu: largest READ so far: %u bytes",
				  c->id, rq->len);
		}
		r = srv_read_prepare(c, rq, rp);
		if (r < 0) {
			srv_reply_free(rp);
			return r;
		}
		if (rp->nsegs) {
			c->ops->read(c, rp);
			return 0;
		}
		break;
	case NBD_CMD_BLOCK_STATUS:
		r = srv_block_status(c, rq, rp);
		if (r < 0) {
			srv_reply_free(rp);
			return r;
		}
		break;
	case NBD_CMD_FLUSH:
		/* Nothing is ever dirty. */
	case NBD_CMD_CACHE:
		/* A hint; the page cache of the source files does the rest. */
		srv_reply_simple(rp, rq->cookie, NBD_SUCCESS);
		break;
	default:
		srv_reply_free(rp);
		return -EINVAL;	/* validation let through what it must not */
	}
	c->ops->send(c, rp);
	return 0;
}

/* Parses one 28-byte request header and handles it (A7.1, A8). */
static ssize_t request_step(struct srv_conn *c, const uint8_t *buf, size_t len)
{
	if (len < sizeof(struct nbd_request_hdr))
		return 0;
	uint32_t magic = get_be32(buf);
	if (magic != NBD_REQUEST_MAGIC) {
		log_info("client %lu: bad request magic 0x%08x, dropping", c->id, magic);
		return -EPROTO;
	}
	struct srv_request rq = {
		.flags = get_be16(buf + offsetof(struct nbd_request_hdr, flags)),
		.type = get_be16(buf + offsetof(struct nbd_request_hdr, type)),
		.cookie = get_be64(buf + offsetof(struct nbd_request_hdr, cookie)),
		.offset = get_be64(buf + offsetof(struct nbd_request_hdr, offset)),
		.len = get_be32(buf + offsetof(struct nbd_request_hdr, len)),
	};
	const ssize_t used = sizeof(struct nbd_request_hdr);
	int r;

	log_debug("client %lu: %s flags 0x%x offset %llu len %u cookie 0x%llx",
		  c->id, cmd_name(rq.type), rq.flags, (unsigned long long)rq.offset,
		  rq.len, (unsigned long long)rq.cookie);

	switch (rq.type) {
	case NBD_CMD_DISC:
		/* A7.4: no reply; the loop drains what is in flight, then closes. */
		c->phase = SRV_PH_CLOSE;
		return used;
	case NBD_CMD_WRITE:
		/* A8 step 3: consume the payload, then answer EPERM. */
		if (rq.len > SRV_WRITE_HARD_CAP) {
			log_info("client %lu: WRITE of %u bytes, dropping", c->id, rq.len);
			return -EPROTO;
		}
		if (rq.len > 0) {
			c->skip = rq.len;
			c->skip_action = SRV_SKIP_WRITE;
			c->skip_cookie = rq.cookie;
			return used;
		}
		break;
	}

	if (c->shutting_down) {
		/* A7.4: received before the stop, answered, not served. */
		r = send_error(c, &rq, -ESHUTDOWN, "server shutting down");
		return r < 0 ? r : used;
	}
	r = srv_validate_request(c, &rq);
	if (r < 0) {
		log_debug("client %lu: %s rejected: %s", c->id, cmd_name(rq.type),
			  r == -EPERM ? "EPERM" : "EINVAL");
		r = send_error(c, &rq, r, r == -EPERM ? "read-only export" :
			       "invalid request");
	} else {
		r = dispatch(c, &rq);
	}
	return r < 0 ? r : used;
}

/* Answers what was waiting for skipped bytes. */
static int skip_done(struct srv_conn *c)
{
	enum srv_skip action = c->skip_action;

	c->skip_action = SRV_SKIP_NONE;
	switch (action) {
	case SRV_SKIP_OPTION:
		return srv_handshake_skipped(c);
	case SRV_SKIP_WRITE: {
		struct srv_request rq = {
			.type = NBD_CMD_WRITE, .cookie = c->skip_cookie,
		};
		return send_error(c, &rq, -EPERM, "read-only export");
	}
	case SRV_SKIP_NONE:
		break;
	}
	return 0;
}

ssize_t srv_conn_step(struct srv_conn *c, const uint8_t *buf, size_t len)
{
	if (c->skip) {
		if (len == 0)
			return 0;
		size_t n = c->skip < len ? (size_t)c->skip : len;
		c->skip -= n;
		if (c->skip == 0) {
			int r = skip_done(c);
			if (r < 0)
				return r;
		}
		return (ssize_t)n;
	}
	switch (c->phase) {
	case SRV_PH_CLIENT_FLAGS:
	case SRV_PH_OPTIONS:
		return srv_handshake_step(c, buf, len);
	case SRV_PH_TRANSMISSION:
		return request_step(c, buf, len);
	case SRV_PH_CLOSE:
		break;
	}
	return 0;
}
