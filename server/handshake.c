/* SPDX-License-Identifier: MIT */
/*
 * handshake.c - the fixed-newstyle handshake (nbd-protocol.md A3, A4):
 * greeting, client flags, and option haggling one option at a time until
 * NBD_OPT_GO / NBD_OPT_EXPORT_NAME enter transmission or NBD_OPT_ABORT
 * ends the connection.  Supported: EXPORT_NAME, ABORT, LIST, INFO, GO,
 * STRUCTURED_REPLY, LIST/SET_META_CONTEXT (base:allocation); everything
 * else is answered ERR_UNSUP after its data was consumed.
 *
 * Input arrives as whole messages (srv_handshake_step gets the option
 * header and all its data in one buffer); oversized option data is
 * skipped by request.c's skip logic and answered from there.
 */
#include <errno.h>
#include <string.h>

#include "server/internal.h"
#include "server/log.h"

static const char *option_name(uint32_t opt)
{
	switch (opt) {
	case NBD_OPT_EXPORT_NAME: return "EXPORT_NAME";
	case NBD_OPT_ABORT: return "ABORT";
	case NBD_OPT_LIST: return "LIST";
	case NBD_OPT_PEEK_EXPORT: return "PEEK_EXPORT";
	case NBD_OPT_STARTTLS: return "STARTTLS";
	case NBD_OPT_INFO: return "INFO";
	case NBD_OPT_GO: return "GO";
	case NBD_OPT_STRUCTURED_REPLY: return "STRUCTURED_REPLY";
	case NBD_OPT_LIST_META_CONTEXT: return "LIST_META_CONTEXT";
	case NBD_OPT_SET_META_CONTEXT: return "SET_META_CONTEXT";
	case NBD_OPT_EXTENDED_HEADERS: return "EXTENDED_HEADERS";
	}
	return "unknown";
}

int srv_conn_start(struct srv_conn *c, struct srv_ctx *srv,
		   const struct srv_conn_ops *ops)
{
	memset(c, 0, sizeof(*c));
	c->srv = srv;
	c->ops = ops;
	c->id = __atomic_add_fetch(&srv->next_client_id, 1, __ATOMIC_RELAXED);
	c->phase = SRV_PH_CLIENT_FLAGS;
	c->max_options = SRV_OPT_MIN_COUNT;
	if (srv->nexports <= (SIZE_MAX - 16) / 4 &&
	    4 * srv->nexports + 16 > c->max_options)
		c->max_options = (unsigned int)(4 * srv->nexports + 16);

	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_greeting));
	put_be64(p + offsetof(struct nbd_greeting, passwd), NBD_INIT_PASSWD);
	put_be64(p + offsetof(struct nbd_greeting, magic), NBD_IHAVEOPT);
	put_be16(p + offsetof(struct nbd_greeting, flags),
		 NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	c->ops->send(c, rp);
	return 0;
}

uint16_t srv_eflags(const struct srv_conn *c)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY |
		     NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN |
		     NBD_FLAG_SEND_CACHE;
	if (c->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

struct srv_export_ctx *srv_find_export(struct srv_ctx *srv, const char *name,
				       size_t len)
{
	if (len == 0) {
		const char *def = srv->cfg->default_export;
		if (!def)
			return srv->nexports ? &srv->exports[0] : NULL;
		name = def;
		len = strlen(def);
	}
	for (size_t i = 0; i < srv->nexports; i++) {
		const char *n = srv->exports[i].exp->name;
		if (strlen(n) == len && memcmp(n, name, len) == 0)
			return &srv->exports[i];
	}
	return NULL;
}

/*
 * Copies a client's string for a log line: at most 64 bytes, anything
 * but printable ASCII as '?', so no client can forge log lines.
 */
static const char *loggable(const uint8_t *s, size_t len, char out[static 68])
{
	size_t n = len < 64 ? len : 64;
	for (size_t i = 0; i < n; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
	strcpy(out + n, len > n ? "..." : "");
	return out;
}

/* A4 string rules: at most 4096 bytes, no NUL. */
static bool string_ok(const uint8_t *s, size_t len)
{
	return len <= SRV_STRING_MAX && !memchr(s, 0, len);
}

/* Queues one reply with an optional payload; -ENOMEM drops the client. */
static int send_option_reply(struct srv_conn *c, uint32_t opt, uint32_t type,
			     const void *payload, size_t len)
{
	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	if (srv_reply_option(rp, opt, type, payload, len) < 0) {
		srv_reply_free(rp);
		return -ENOMEM;
	}
	c->ops->send(c, rp);
	return 0;
}

/* An error reply: type has bit 31 set; msg is for humans (A1). */
static int option_error(struct srv_conn *c, uint32_t opt, uint32_t type,
			const char *msg)
{
	log_debug("client %lu: option %s (%u): error 0x%x: %s", c->id,
		  option_name(opt), opt, type, msg);
	return send_option_reply(c, opt, type, msg, strlen(msg));
}

/* Appends an NBD_REP_INFO of info type with payload to rp. */
static int append_info(struct srv_reply *rp, uint32_t opt, uint16_t info,
		       const void *data, size_t len)
{
	uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_option_reply) + 2 + len);
	if (!p)
		return -ENOMEM;
	put_be64(p, NBD_OPT_REPLY_MAGIC);
	put_be32(p + 8, opt);
	put_be32(p + 12, NBD_REP_INFO);
	put_be32(p + 16, (uint32_t)(2 + len));
	put_be16(p + 20, info);
	if (len)
		memcpy(p + 22, data, len);
	return 0;
}

/* NBD_OPT_EXPORT_NAME (A3.5): no error path, so failures disconnect. */
static int opt_export_name(struct srv_conn *c, const uint8_t *d, uint32_t len)
{
	if (!string_ok(d, len)) {
		log_debug("client %lu: EXPORT_NAME with a bad name, dropping", c->id);
		return -EPROTO;
	}
	struct srv_export_ctx *ex = srv_find_export(c->srv, (const char *)d, len);
	if (!ex) {
		char name[68];
		log_info("client %lu: EXPORT_NAME '%s': no such export, dropping",
			 c->id, loggable(d, len, name));
		return -EPROTO;
	}
	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	size_t n = sizeof(struct nbd_export_name_reply) +
		   (c->no_zeroes ? 0 : NBD_EXPORT_NAME_ZEROES);
	uint8_t *p = srv_reply_append(rp, n);
	if (!p) {
		srv_reply_free(rp);
		return -ENOMEM;
	}
	memset(p, 0, n);
	put_be64(p, ex->exp->map->size);
	put_be16(p + 8, srv_eflags(c));
	c->ex = ex;
	c->meta_active = c->meta_selected && c->meta_export == ex;
	c->phase = SRV_PH_TRANSMISSION;
	log_debug("client %lu: EXPORT_NAME '%s': transmission, flags 0x%04x%s",
		  c->id, ex->exp->name, srv_eflags(c),
		  c->no_zeroes ? ", no zeroes" : "");
	c->ops->send(c, rp);
	return 0;
}

/* NBD_OPT_LIST (A4): one REP_SERVER per export, then ACK. */
static int opt_list(struct srv_conn *c, uint32_t len)
{
	if (len != 0)
		return option_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
				    "LIST takes no data");
	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	for (size_t i = 0; i < c->srv->nexports; i++) {
		const struct srv_export *e = c->srv->exports[i].exp;
		size_t nl = strlen(e->name);
		size_t dl = e->description ? strlen(e->description) : 0;
		uint8_t *p = srv_reply_append(rp, sizeof(struct nbd_option_reply) +
					      4 + nl + dl);
		if (!p) {
			srv_reply_free(rp);
			return -ENOMEM;
		}
		put_be64(p, NBD_OPT_REPLY_MAGIC);
		put_be32(p + 8, NBD_OPT_LIST);
		put_be32(p + 12, NBD_REP_SERVER);
		put_be32(p + 16, (uint32_t)(4 + nl + dl));
		put_be32(p + 20, (uint32_t)nl);
		memcpy(p + 24, e->name, nl);
		if (dl)
			memcpy(p + 24 + nl, e->description, dl);
	}
	if (srv_reply_option(rp, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0) < 0) {
		srv_reply_free(rp);
		return -ENOMEM;
	}
	log_debug("client %lu: LIST: %zu exports", c->id, c->srv->nexports);
	c->ops->send(c, rp);
	return 0;
}

/* NBD_OPT_INFO and NBD_OPT_GO (A4): validate, INFO replies, ACK. */
static int opt_info_go(struct srv_conn *c, uint32_t opt, const uint8_t *d,
		       uint32_t len)
{
	if (len < 6)
		return option_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
	uint32_t nl = get_be32(d);
	if (nl > len - 6)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "name length past the option end");
	uint16_t nreq = get_be16(d + 4 + nl);
	if (len != 6 + nl + 2 * (uint32_t)nreq)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "option length does not match its requests");
	if (!string_ok(d + 4, nl))
		return option_error(c, opt, NBD_REP_ERR_INVALID, "bad export name");

	struct srv_export_ctx *ex = srv_find_export(c->srv, (const char *)d + 4, nl);
	if (!ex)
		return option_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");

	bool want_name = false, want_desc = false, want_bs = false;
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t info = get_be16(d + 6 + nl + 2 * i);
		if (info == NBD_INFO_NAME)
			want_name = true;
		else if (info == NBD_INFO_DESCRIPTION)
			want_desc = true;
		else if (info == NBD_INFO_BLOCK_SIZE)
			want_bs = true;
		/* Unknown info types MUST be ignored. */
	}

	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	const struct srv_export *e = ex->exp;
	uint8_t exp_info[10];
	put_be64(exp_info, e->map->size);
	put_be16(exp_info + 8, srv_eflags(c));
	uint8_t bs[12];
	put_be32(bs, SRV_BLOCK_MIN);
	put_be32(bs + 4, SRV_BLOCK_PREF);
	put_be32(bs + 8, SRV_MAX_PAYLOAD);
	const char *desc = e->description ? e->description : "";
	/* INFO_EXPORT first, always; BLOCK_SIZE even unrequested (A4). */
	if (append_info(rp, opt, NBD_INFO_EXPORT, exp_info, sizeof(exp_info)) < 0 ||
	    (want_name &&
	     append_info(rp, opt, NBD_INFO_NAME, e->name, strlen(e->name)) < 0) ||
	    (want_desc &&
	     append_info(rp, opt, NBD_INFO_DESCRIPTION, desc, strlen(desc)) < 0) ||
	    append_info(rp, opt, NBD_INFO_BLOCK_SIZE, bs, sizeof(bs)) < 0 ||
	    srv_reply_option(rp, opt, NBD_REP_ACK, NULL, 0) < 0) {
		srv_reply_free(rp);
		return -ENOMEM;
	}
	log_debug("client %lu: %s '%s'%s%s%s (%u info requests): size %llu, flags 0x%04x",
		  c->id, option_name(opt), e->name, want_name ? " +name" : "",
		  want_desc ? " +description" : "", want_bs ? " +block_size" : "",
		  nreq, (unsigned long long)e->map->size, srv_eflags(c));
	if (opt == NBD_OPT_GO) {
		c->ex = ex;
		c->meta_active = c->meta_selected && c->meta_export == ex;
		c->phase = SRV_PH_TRANSMISSION;
		log_debug("client %lu: transmission: structured replies %s, "
			  "base:allocation %s", c->id, c->structured ? "on" : "off",
			  c->meta_active ? "on" : "off");
	}
	c->ops->send(c, rp);
	return 0;
}

/* Does query (len bytes) name base:allocation, exactly or as "base:"? */
static bool query_matches(const uint8_t *q, uint32_t len, bool list)
{
	static const char full[] = NBD_META_BASE_ALLOCATION;
	if (len == sizeof(full) - 1 && memcmp(q, full, len) == 0)
		return true;
	/* A LIST query of the bare namespace is a wildcard. */
	return list && len == 5 && memcmp(q, "base:", 5) == 0;
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT (A4); d NULL: skipped. */
static int opt_meta_context(struct srv_conn *c, uint32_t opt, const uint8_t *d,
			    uint32_t len)
{
	bool list = opt == NBD_OPT_LIST_META_CONTEXT;

	if (!list) {
		/* SET replaces the selection, even when it fails. */
		c->meta_selected = false;
		c->meta_export = NULL;
		if (!c->structured)
			return option_error(c, opt, NBD_REP_ERR_INVALID,
					    "SET_META_CONTEXT needs structured replies");
	}
	if (!d)		/* skipped: too large to look at */
		return option_error(c, opt, NBD_REP_ERR_TOO_BIG, "option data too large");
	if (len < 8)
		return option_error(c, opt, NBD_REP_ERR_INVALID, "option too short");
	uint32_t nl = get_be32(d);
	if (nl > len - 8)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "name length past the option end");
	if (!string_ok(d + 4, nl))
		return option_error(c, opt, NBD_REP_ERR_INVALID, "bad export name");
	uint32_t nq = get_be32(d + 4 + nl);
	uint32_t pos = 8 + nl;
	bool match = list && nq == 0;
	for (uint32_t i = 0; i < nq; i++) {
		if (len - pos < 4)
			return option_error(c, opt, NBD_REP_ERR_INVALID,
					    "query past the option end");
		uint32_t ql = get_be32(d + pos);
		pos += 4;
		if (ql > len - pos)
			return option_error(c, opt, NBD_REP_ERR_INVALID,
					    "query past the option end");
		if (!string_ok(d + pos, ql))
			return option_error(c, opt, NBD_REP_ERR_INVALID, "bad query");
		if (query_matches(d + pos, ql, list))
			match = true;
		if (log_max_level >= LOG_DEBUG) {
			char q[68];
			log_debug("client %lu: %s query '%s'", c->id, option_name(opt),
				  loggable(d + pos, ql, q));
		}
		pos += ql;
	}
	if (pos != len)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "trailing bytes after the queries");
	struct srv_export_ctx *ex = srv_find_export(c->srv, (const char *)d + 4, nl);
	if (!ex)
		return option_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export");

	struct srv_reply *rp = srv_reply_new(c);
	if (!rp)
		return -ENOMEM;
	if (match) {
		static const char name[] = NBD_META_BASE_ALLOCATION;
		uint8_t payload[4 + sizeof(name) - 1];
		put_be32(payload, list ? 0 : SRV_META_CONTEXT_ID);
		memcpy(payload + 4, name, sizeof(name) - 1);
		if (srv_reply_option(rp, opt, NBD_REP_META_CONTEXT, payload,
				     sizeof(payload)) < 0) {
			srv_reply_free(rp);
			return -ENOMEM;
		}
		if (!list) {
			c->meta_selected = true;
			c->meta_export = ex;
		}
	}
	if (srv_reply_option(rp, opt, NBD_REP_ACK, NULL, 0) < 0) {
		srv_reply_free(rp);
		return -ENOMEM;
	}
	log_debug("client %lu: %s '%s': %u queries, base:allocation %s", c->id,
		  option_name(opt), ex->exp->name, nq, match ? "yes" : "no");
	c->ops->send(c, rp);
	return 0;
}

/*
 * Answers an option whose data (more than SRV_OPT_SOFT_CAP bytes) was
 * skipped, after handle_option()'s checks that need no data: ERR_TOO_BIG
 * for an option we know, ERR_UNSUP for others.  (SET_META_CONTEXT goes to
 * opt_meta_context(), which forgets the selection first.)
 */
static int option_skipped(struct srv_conn *c, uint32_t opt)
{
	switch (opt) {
	case NBD_OPT_LIST:
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
	case NBD_OPT_STRUCTURED_REPLY:
	case NBD_OPT_LIST_META_CONTEXT:
		return option_error(c, opt, NBD_REP_ERR_TOO_BIG, "option data too large");
	default:
		return option_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
	}
}

/*
 * Handles one whole option (header already checked), or with d NULL one
 * whose len bytes of data were skipped (srv_handshake_skipped()).
 */
static int handle_option(struct srv_conn *c, uint32_t opt, const uint8_t *d,
			 uint32_t len)
{
	log_debug("client %lu: option %s (%u), %u bytes%s", c->id,
		  option_name(opt), opt, len, d ? "" : ", skipped");

	if (c->shutting_down && opt != NBD_OPT_ABORT) {
		/* A7.4; EXPORT_NAME has no error reply. */
		if (opt == NBD_OPT_EXPORT_NAME)
			return -ESHUTDOWN;
		return option_error(c, opt, NBD_REP_ERR_SHUTDOWN, "server shutting down");
	}
	if (opt == NBD_OPT_EXPORT_NAME)		/* never skipped: SRV_STRING_MAX */
		return d ? opt_export_name(c, d, len) : -EPROTO;
	if (opt == NBD_OPT_ABORT) {
		/* ACK, then close; any data is ignored (A4). */
		struct srv_reply *rp = srv_reply_new(c);
		if (!rp)
			return -ENOMEM;
		if (srv_reply_option(rp, opt, NBD_REP_ACK, NULL, 0) < 0) {
			srv_reply_free(rp);
			return -ENOMEM;
		}
		rp->close_after = true;
		c->phase = SRV_PH_CLOSE;
		c->ops->send(c, rp);
		return 0;
	}
	/* A3.2: a plain-newstyle client may only send EXPORT_NAME. */
	if (!c->fixed_newstyle)
		return option_error(c, opt, NBD_REP_ERR_INVALID,
				    "fixed newstyle was not negotiated");
	if (!d && opt != NBD_OPT_SET_META_CONTEXT)
		return option_skipped(c, opt);

	switch (opt) {
	case NBD_OPT_LIST:
		return opt_list(c, len);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info_go(c, opt, d, len);
	case NBD_OPT_STRUCTURED_REPLY:
		if (len != 0)
			return option_error(c, opt, NBD_REP_ERR_INVALID,
					    "STRUCTURED_REPLY takes no data");
		if (c->structured)
			return option_error(c, opt, NBD_REP_ERR_INVALID,
					    "structured replies already negotiated");
		c->structured = true;
		return send_option_reply(c, opt, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return opt_meta_context(c, opt, d, len);
	default:
		/* STARTTLS, PEEK_EXPORT, EXTENDED_HEADERS and unknown ones. */
		return option_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
	}
}

ssize_t srv_handshake_step(struct srv_conn *c, const uint8_t *buf, size_t len)
{
	if (c->phase == SRV_PH_CLIENT_FLAGS) {
		if (len < 4)
			return 0;
		uint32_t flags = get_be32(buf);
		/* A3.2: unknown bits (we offer NO_ZEROES) => hard disconnect. */
		if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
			log_info("client %lu: unknown client flags 0x%08x, dropping",
				 c->id, flags);
			return -EPROTO;
		}
		c->fixed_newstyle = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
		c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
		c->phase = SRV_PH_OPTIONS;
		log_debug("client %lu: client flags 0x%08x", c->id, flags);
		return 4;
	}

	if (len < sizeof(struct nbd_option))
		return 0;
	uint64_t magic = get_be64(buf);
	uint32_t opt = get_be32(buf + 8);
	uint32_t olen = get_be32(buf + 12);
	if (magic != NBD_IHAVEOPT) {
		log_info("client %lu: bad option magic 0x%016llx, dropping", c->id,
			 (unsigned long long)magic);
		return -EPROTO;
	}
	if (++c->noptions > c->max_options) {
		log_info("client %lu: more than %u options, dropping", c->id,
			 c->max_options);
		return -EPROTO;
	}
	if (olen > SRV_OPT_HARD_CAP ||
	    (opt == NBD_OPT_EXPORT_NAME && olen > SRV_STRING_MAX)) {
		log_info("client %lu: option %u with %u bytes of data, dropping",
			 c->id, opt, olen);
		return -EPROTO;
	}
	if (olen > SRV_OPT_SOFT_CAP) {
		/* Discard the data; request.c answers once it is gone. */
		c->skip = olen;
		c->skip_option = opt;
		c->skip_option_len = olen;
		c->skip_action = SRV_SKIP_OPTION;
		return sizeof(struct nbd_option);
	}
	if (len - sizeof(struct nbd_option) < olen)
		return 0;
	int r = handle_option(c, opt, buf + sizeof(struct nbd_option), olen);
	if (r < 0)
		return r;
	return (ssize_t)(sizeof(struct nbd_option) + olen);
}

int srv_handshake_skipped(struct srv_conn *c)
{
	return handle_option(c, c->skip_option, NULL, c->skip_option_len);
}
