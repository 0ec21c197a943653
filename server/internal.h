/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the server's files share: limits, the per-connection
 * protocol state, replies, the source fd cache, and the two event loops.
 *
 * The protocol is loop-independent.  An event loop owns the sockets and
 * feeds the bytes it received to srv_conn_step(), which parses one message
 * at a time (handshake option, request, or skipped payload), validates it
 * and builds the reply.  Replies go back to the loop through two hooks in
 * struct srv_conn_ops: send() queues a finished reply, read() performs the
 * source-file reads a READ reply still needs and then calls
 * srv_read_finish() and send().  uring.c does that with io_uring, plain.c
 * with threads and blocking calls; only the I/O differs.
 */
#ifndef EROFS_NBD_SERVER_INTERNAL_H
#define EROFS_NBD_SERVER_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/nbd_proto.h"
#include "server/server.h"

/* Limits (nbd-protocol.md A5, A12, A14). */
#define SRV_MAX_PAYLOAD		(32U << 20)	/* bytes: largest READ, advertised maximum */
#define SRV_BLOCK_MIN		1U		/* bytes: advertised minimum block */
#define SRV_BLOCK_PREF		4096U		/* bytes: advertised preferred block */
#define SRV_STRING_MAX		4096U		/* bytes: names, queries */
#define SRV_OPT_SOFT_CAP	(64U << 10)	/* option data above: skipped, ERR_TOO_BIG */
#define SRV_OPT_HARD_CAP	(1U << 20)	/* option data above: disconnect */
#define SRV_OPT_MIN_COUNT	64U		/* options before GO: max(this, 4 * nexports + 16) */
#define SRV_WRITE_HARD_CAP	(2ULL * SRV_MAX_PAYLOAD)	/* WRITE payload above: disconnect */
#define SRV_MAX_EXTENTS		(1U << 16)	/* extents per BLOCK_STATUS reply */
#define SRV_EXTENT_BUDGET	(1U << 20)	/* regions visited per BLOCK_STATUS */
#define SRV_INFLIGHT_MAX	512U		/* requests in flight per connection */
/*
 * Reply bytes in flight per connection (at least one request is always
 * taken).  Small on purpose: a READ's buffer is then still in the CPU
 * cache when it is sent; more made nbdcopy slower, not faster.
 */
#define SRV_INFLIGHT_BYTES	(2ULL << 20)
#define SRV_INBUF_SIZE		(128U << 10)	/* bytes: receive buffer per connection */
#define SRV_MAX_CLIENTS		1024U		/* connections at once; more are closed */
#define SRV_SRC_MIN_FDS		8U		/* fds kept free of clients for source files */
#define SRV_FD_WAIT_SEC		30		/* a read waits this long for a free fd */
/*
 * Socket send buffer (SO_SNDBUF) of each connection.  The default 208 KiB
 * holds less than one 256 KiB reply: the sender then sleeps mid-reply and
 * the reader is woken per 32 KiB skb, which doubled the client's cost with
 * zero-copy (fast-path.md 1.9).  QEMU asks 2 MiB for NBD Unix sockets.
 */
#ifndef SRV_SNDBUF
#define SRV_SNDBUF		(2 << 20)
#endif
#define SRV_SRC_MAX_OPEN	256U		/* source fds kept open per export, at least */
#define SRV_META_CONTEXT_ID	1U		/* id of base:allocation after SET */
#define SRV_HOLE_ALIGN		512U		/* zero runs are reported in whole sectors */
/*
 * Smallest zero region a READ reply sends as OFFSET_HOLE; smaller ones go
 * as data.  Each chunk costs the client two more recv calls: with holes
 * down to 512 bytes (every file's tail padding), nbdcopy of a Debian tree
 * took 1.15x as long as with this minimum.
 */
#define SRV_READ_HOLE_MIN	(64U << 10)

_Static_assert(SRV_INBUF_SIZE >= sizeof(struct nbd_option) + SRV_OPT_SOFT_CAP,
	       "a whole option must fit the receive buffer");

/* source.c: the cache of open source fds, one for every export. */
struct src_entry {
	uint64_t last_use;	/* src_cache.now at the last get */
	int fd;			/* cached fd, or -1 */
	uint32_t refs;		/* reads in flight on fd */
	uint32_t slot;		/* index in src_cache.slots, or UINT32_MAX */
	uint32_t flags;		/* SRC_* in source.c */
};

struct src_cache {
	pthread_mutex_t lock;
	const struct region_source **srcs;	/* distinct sources of all maps */
	struct src_entry *entries;		/* one per srcs[] */
	uint32_t nsources;
	uint32_t *slots;		/* ids of the sources with a cached fd */
	unsigned int nopen, max_open;	/* slots used, fds the cache may keep */
	unsigned int nonce, max_once;	/* one-shot fds (not cached) open, allowed */
	uint64_t now;			/* bytes asked of sources so far: the clock of last_use */
	uint64_t pass_bytes;		/* bytes of every source: one pass, on that clock */
	bool all_stable;		/* --immutable-sources: every source may be spliced */
	uint32_t rnd;			/* eviction's random state */
};

/* The server as srv_run() set it up: one context per export. */
struct srv_export_ctx {
	const struct srv_export *exp;
	struct src_cache *cache;	/* the tree's, shared by every export */
	uint32_t *src_ids;		/* exp->map->sources[i] is cache->srcs[src_ids[i]] */
};

struct srv_ctx {
	const struct srv_config *cfg;
	struct srv_export_ctx *exports;
	size_t nexports;
	struct src_cache cache;		/* source fds of every export */
	unsigned long next_client_id;	/* atomic (__atomic builtins) */
	unsigned int nclients;		/* atomic: connections open */
	unsigned int max_clients;	/* accepting pauses at this many (the fd
					 * limit, srv_client_limit()) */
};

/* A transmission request, host byte order (A7.1). */
struct srv_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t len;
};

/* One source-file read that fills part of a READ reply. */
struct srv_read_seg {
	struct srv_reply *rp;	/* the reply it belongs to */
	uint32_t source;	/* index into the cache's srcs[] (not the map's) */
	int fd;			/* pinned in the cache while the read runs */
	uint64_t file_off;	/* bytes into the source */
	size_t buf_off;		/* bytes into rp->buf */
	size_t len;		/* bytes to read */
	size_t done;		/* bytes read so far */
	struct srv_read_seg *next_open;	/* the openers' queues (uring.c) */
};

/*
 * One message to send: an option reply, a simple reply or a run of
 * structured chunks, its bytes contiguous in buf.  A READ reply also
 * carries the file reads that still have to fill buf.
 */
struct srv_reply {
	struct srv_reply *next;		/* the loop's send queue */
	struct srv_conn *conn;
	uint8_t *buf;			/* small[] or heap */
	size_t len;			/* bytes to send */
	size_t sent;			/* bytes sent (loops) */
	uint8_t *heap;			/* malloc'ed buffer or NULL */
	size_t heap_cap;
	size_t cost;			/* bytes counted in conn->inflight_bytes */
	uint64_t cookie;
	uint16_t cmd;			/* NBD_CMD_* for requests */
	bool close_after;		/* ABORT's ACK: close once sent */
	struct srv_export_ctx *ex;
	struct srv_read_seg *segs;	/* inline_segs[] or heap */
	size_t nsegs;
	unsigned int pending;		/* reads in flight (uring.c) */
	size_t next_seg;		/* first segment not started (uring.c) */
	int64_t parked_since;		/* waiting for a free fd since (uring.c), or 0 */
	int err;			/* -errno of the first failed read */
	bool zc;			/* segs are spliced (splice.c), fds pinned */
	struct srv_read_seg inline_segs[2];
	uint8_t small[128];
};

enum srv_phase {
	SRV_PH_CLIENT_FLAGS,	/* greeting sent, waiting for the client flags */
	SRV_PH_OPTIONS,		/* option haggling */
	SRV_PH_TRANSMISSION,	/* requests */
	SRV_PH_CLOSE,		/* ABORT or DISC seen: read nothing more */
};

/* What to answer once srv_conn.skip bytes have been discarded. */
enum srv_skip {
	SRV_SKIP_NONE,
	SRV_SKIP_OPTION,	/* oversized option data: ERR_TOO_BIG / ERR_UNSUP */
	SRV_SKIP_WRITE,		/* WRITE payload: EPERM */
};

struct srv_conn;

/* What an event loop provides to the protocol code. */
struct srv_conn_ops {
	/* Queues a finished reply for sending; the loop owns it now. */
	void (*send)(struct srv_conn *c, struct srv_reply *rp);
	/*
	 * Performs rp's file reads (rp->segs), then calls srv_read_finish()
	 * and send().  May complete later (io_uring) or before returning.
	 */
	void (*read)(struct srv_conn *c, struct srv_reply *rp);
};

/* Per-connection protocol state, embedded in each loop's connection. */
struct srv_conn {
	struct srv_ctx *srv;
	const struct srv_conn_ops *ops;
	unsigned long id;		/* client id in log lines */
	enum srv_phase phase;
	bool fixed_newstyle;		/* client set C_FIXED_NEWSTYLE */
	bool no_zeroes;			/* client set C_NO_ZEROES */
	bool structured;		/* STRUCTURED_REPLY acked */
	bool meta_selected;		/* SET_META_CONTEXT chose base:allocation ... */
	const struct srv_export_ctx *meta_export;	/* ... for this export */
	bool meta_active;		/* ... and GO chose the same export */
	struct srv_export_ctx *ex;	/* the export in transmission */
	unsigned int noptions, max_options;
	uint64_t skip;			/* bytes still to discard */
	enum srv_skip skip_action;	/* what to answer once skipped */
	uint32_t skip_option, skip_option_len;	/* an option being skipped */
	uint64_t skip_cookie;
	bool shutting_down;		/* the server stops: ERR_SHUTDOWN, ESHUTDOWN */
	uint32_t max_read_seen;		/* largest READ, for the debug log */
	unsigned int inflight;		/* replies not yet freed (atomic) */
	size_t inflight_bytes;		/* their heap bytes (atomic) */
};

/* handshake.c: A3, A4. */

/* Sets c up for a new client and queues the 18-byte greeting (A3.1).
 * Returns 0 or -ENOMEM. */
int srv_conn_start(struct srv_conn *c, struct srv_ctx *srv,
		   const struct srv_conn_ops *ops);

/*
 * Parses one handshake message at the start of buf (client flags, or one
 * option with its data) and queues the replies.  Returns bytes consumed,
 * 0 if buf does not hold the whole message yet, or -errno to drop the
 * connection (-EPROTO for input that must not be answered, -ENOMEM).
 */
ssize_t srv_handshake_step(struct srv_conn *c, const uint8_t *buf, size_t len);

/*
 * Answers an oversized option once its data was skipped, as
 * srv_handshake_step() answers one that fits, where the data does not
 * matter (shutdown, ABORT, plain newstyle, SET_META_CONTEXT forgetting its
 * selection), else with ERR_TOO_BIG (ERR_UNSUP for options we do not
 * know).  0 or -errno as srv_handshake_step().
 */
int srv_handshake_skipped(struct srv_conn *c);

/* Transmission flags for c's export, given what was negotiated (A6). */
uint16_t srv_eflags(const struct srv_conn *c);

/* Returns the export called name (len bytes; "" = default) or NULL. */
struct srv_export_ctx *srv_find_export(struct srv_ctx *srv, const char *name,
				       size_t len);

/* request.c: A7, A8, A11. */

/*
 * Parses and handles the next message at the start of buf, in whatever
 * phase c is: returns bytes consumed, 0 if more bytes are needed (or the
 * phase is SRV_PH_CLOSE), -errno to drop the connection.
 */
ssize_t srv_conn_step(struct srv_conn *c, const uint8_t *buf, size_t len);

/*
 * Checks a request against the negotiated state and the export (A8 steps
 * 4-12).  Returns 0, or the -errno to answer with: -EPERM for write-type
 * commands, -EINVAL otherwise.
 */
int srv_validate_request(const struct srv_conn *c, const struct srv_request *rq);

/* Maps a (positive or negative) errno to the NBD error value (A11). */
uint32_t srv_nbd_errno(int err);

/* True while c may take one more request (in-flight budget, A14). */
bool srv_conn_can_take(const struct srv_conn *c);

/* reply.c: A7.2, A9, A10. */

/* Allocates an empty reply for c, counted in its in-flight budget. */
struct srv_reply *srv_reply_new(struct srv_conn *c);

/* Frees rp and returns its budget to its connection.  NULL is fine. */
void srv_reply_free(struct srv_reply *rp);

/* Makes room for n more bytes at rp->buf + rp->len; returns them or NULL. */
uint8_t *srv_reply_append(struct srv_reply *rp, size_t n);

/* Appends an option reply (A3.4) with payload; 0 or -ENOMEM. */
int srv_reply_option(struct srv_reply *rp, uint32_t option, uint32_t type,
		     const void *payload, size_t len);

/* Fills rp with a simple reply (A7.2), replacing what it held. */
void srv_reply_simple(struct srv_reply *rp, uint64_t cookie, uint32_t error);

/* Fills rp with one ERROR chunk carrying DONE (A9); msg may be NULL. */
void srv_reply_error_chunk(struct srv_reply *rp, uint64_t cookie,
			   uint32_t error, const char *msg);

/* Fills rp with one NONE chunk carrying DONE (A9). */
void srv_reply_none(struct srv_reply *rp, uint64_t cookie);

/*
 * Fills rp with the error reply for a request: an ERROR chunk for READ
 * and BLOCK_STATUS once structured replies are on, a simple reply
 * otherwise (A7.2).  err is -errno.
 */
void srv_reply_error(const struct srv_conn *c, struct srv_reply *rp,
		     const struct srv_request *rq, int err, const char *msg);

/*
 * Lays out the reply to a validated READ in rp: a simple reply header and
 * the data, or OFFSET_DATA / OFFSET_HOLE chunks (one OFFSET_DATA with DF),
 * with memory and zero regions copied in and rp->segs listing the file
 * reads still to do.  Returns 0 or -ENOMEM.
 */
int srv_read_prepare(const struct srv_conn *c, const struct srv_request *rq,
		     struct srv_reply *rp);

/* After the file reads: turns rp into an EIO error reply if one failed. */
void srv_read_finish(struct srv_reply *rp);

/*
 * Fills rp with the BLOCK_STATUS chunk for base:allocation (A10): zero
 * regions are HOLE|ZERO in whole 512-byte sectors, everything else 0,
 * neighbours of one status merged, at most SRV_MAX_EXTENTS (1 with
 * REQ_ONE).  Returns 0 or -ENOMEM.
 */
int srv_block_status(const struct srv_conn *c, const struct srv_request *rq,
		     struct srv_reply *rp);

/* source.c: lazily opened source fds. */

/*
 * Sets up one cache for the sources of nmaps maps.  Sources of different
 * maps with the same open() and opaque are one source.  On success
 * ret_ids[m] (malloc'ed, NULL for a map without sources) maps
 * maps[m]->sources[i] to its id in the cache.  At most max_open fds are
 * kept open.  Returns 0, -ENOMEM or -EOVERFLOW.
 */
int src_cache_init(struct src_cache *sc, const struct region_map *const *maps,
		   size_t nmaps, uint32_t **ret_ids, unsigned int max_open);

/* Closes every cached fd and frees the cache. */
void src_cache_free(struct src_cache *sc);

/*
 * Fits the cache to fds source files may use at once (>= 2): at most
 * three quarters are kept open, the rest are for one-shot reads.  Only
 * lowers the limits set by src_cache_init(); call it before the first read.
 */
void src_cache_limit(struct src_cache *sc, unsigned int fds);

/*
 * Returns an fd for source id, pinned until src_cache_put(), for a read of
 * len bytes (the cache's clock counts bytes): src_cache_try(), then on a
 * miss src_cache_open().  Errors: src_cache_open()'s.
 */
int src_cache_get(struct src_cache *sc, uint32_t id, uint64_t len);

/* src_cache_try()'s "not cached": src_cache_open() gets the fd. */
#define SRC_CACHE_MISS (-ENOENT)

/*
 * The cheap half of src_cache_get(), which never blocks for long (one
 * mutex, no system call): ticks the clock by len bytes and returns the
 * cached fd for source id, pinned until src_cache_put(), or
 * SRC_CACHE_MISS.  -EINVAL for a bad id.
 */
int src_cache_try(struct src_cache *sc, uint32_t id, uint64_t len);

/*
 * The miss half of src_cache_get(), after src_cache_try() returned
 * SRC_CACHE_MISS: a new fd from the source's open() (or the cached one,
 * if another thread opened it meanwhile), pinned until src_cache_put(),
 * cached (in a free slot, or in place of an fd left idle for longer than
 * a pass over every source's bytes, closed here) or else used for this
 * read only (one-shot).  Source fds never exceed max_open + max_once: with
 * every slot pinned and no one-shot fd to be had, returns -EAGAIN and the
 * caller waits for a read to end (so does it on -EMFILE or -ENFILE, when
 * the process ran out of fds anyway).  Other errors: -errno from open(),
 * -EIO (logged once per source) when the source changed.  Blocks in
 * open() and close(): the io_uring loops call it from their opener
 * threads (uring.c).
 */
int src_cache_open(struct src_cache *sc, uint32_t id);

/* True for src_cache_open()'s "no fd now, wait for a read to end" errors. */
static inline bool src_cache_busy(int err)
{
	return err == -EAGAIN || err == -EMFILE || err == -ENFILE;
}

/*
 * src_cache_open(), but while no fd can be had (src_cache_busy(): every
 * fd pinned by a read in flight) it waits for one, up to SRV_FD_WAIT_SEC,
 * instead of failing; then logs the failure once per source (the error is
 * -EMFILE for "every fd pinned").  For threads that may block: the plain
 * loop's read pool and the io_uring loops' openers; a loop without
 * openers parks the reply instead (uring.c).
 */
int src_cache_open_wait(struct src_cache *sc, uint32_t id);

/* src_cache_try(), then on a miss src_cache_open_wait(). */
int src_cache_get_wait(struct src_cache *sc, uint32_t id, uint64_t len);

/* src_cache_get()'s failure err for source id, logged once per source. */
void src_cache_give_up(struct src_cache *sc, uint32_t id, int err);

/* Unpins fd from src_cache_get(); closes it if the cache does not keep it. */
void src_cache_put(struct src_cache *sc, uint32_t id, int fd);

/*
 * Checks, after a read, that fd still is the file the layout used
 * (region_source_check), and notes an immutable or fs-verity file.  On
 * failure logs the path once.  Returns 0 or -errno (-EIO when the file
 * changed).
 */
int src_cache_check(struct src_cache *sc, uint32_t id, int fd);

/* Records a failed or short read (err < 0): logs the path once. */
void src_cache_failed(struct src_cache *sc, uint32_t id, int fd, int err);

/*
 * True if source id may be spliced (zero-copy): it was promised immutable
 * (--immutable-sources), or a src_cache_check() found the immutable or
 * fs-verity attribute with the walk's ctime (so until its first read, the
 * copy path's, a file is not spliced).
 */
bool src_cache_zc(struct src_cache *sc, uint32_t id);

/* splice.c: zero-copy READ replies through a per-connection pipe. */
struct zc_pipe {
	int rd, wr;		/* both ends non-blocking; -1 before zc_pipe_open */
	size_t queued;		/* bytes in the pipe, not yet in the socket */
};

/* Opens the pipe (1 MiB if allowed); 0 or -errno. */
int zc_pipe_open(struct zc_pipe *zp);
/* Closes it; fine on a closed one. */
void zc_pipe_close(struct zc_pipe *zp);

/*
 * Decides whether READ reply rp (laid out by srv_read_prepare, with file
 * segments) goes zero-copy: every segment's source may be spliced
 * (src_cache_zc), still matches the walk (region_source_check) and its
 * range is in the page cache (cachestat, else RWF_NOWAIT probes).  Returns
 * 1 with rp->zc set and every segment's fd pinned; 0 for the copy path
 * (nothing pinned); -1 with rp->err set when a source failed (an open
 * error, or -EIO: it changed), nothing pinned.
 */
int zc_prepare(struct src_cache *sc, struct srv_reply *rp);

/* Unpins a zero-copy reply's fds (once filled, or when dropped). */
void zc_release(struct srv_reply *rp);

/*
 * Moves rp's bytes from rp->sent on into the pipe: buffer bytes (headers,
 * metadata, padding) by write(), file segments by splice().  Returns 1
 * when all of rp is in the pipe, 0 when the pipe is full, -errno on error
 * (-EIO: a source came up short); then the connection must be dropped,
 * since part of the reply may be queued already.
 */
int zc_fill(struct zc_pipe *zp, struct srv_reply *rp);

/*
 * Splices the pipe's bytes into the socket sock (O_NONBLOCK).  Returns 0
 * once the pipe is empty, -EAGAIN when the socket is full, or -errno.
 * zc_drain_blocking() is the same for a blocking socket.
 */
int zc_drain(struct zc_pipe *zp, int sock);
int zc_drain_blocking(struct zc_pipe *zp, int sock);

/* serve.c / uring.c / plain.c: the loops. */

/* Runs the io_uring loop (uring.c); -ENOSYS/-EPERM if io_uring is refused. */
int srv_uring_run(struct srv_ctx *srv);

/* Runs the thread-per-connection loop (plain.c). */
int srv_plain_run(struct srv_ctx *srv);

/*
 * Socket options for an accepted connection (serve.c): TCP_NODELAY and
 * SO_KEEPALIVE (A2, A14), and a send buffer of SRV_SNDBUF bytes (warns
 * once when net.core.wmem_max clamps it).
 */
void srv_socket_setup(int fd);

/*
 * Counts a new connection (serve.c): false, with a warning, when
 * SRV_MAX_CLIENTS are open already; the caller then closes it.
 * srv_client_leave() uncounts one.
 */
bool srv_client_enter(struct srv_ctx *srv);
void srv_client_leave(struct srv_ctx *srv);

/*
 * Sets srv->max_clients from RLIMIT_NOFILE (serve.c), once the loop's own
 * fds exist but for extra_fds still to come (rings of loops not started
 * yet): the limit less the fds open now, less extra_fds, less a reserve
 * for source files (SRV_SRC_MIN_FDS), splice pipes and accepts already
 * armed (accept_slack).  Between 1 and SRV_MAX_CLIENTS.  A loop stops
 * accepting while srv_clients_full(): new clients wait in the listen
 * backlog instead of taking the fds every open connection's reads need.
 */
void srv_client_limit(struct srv_ctx *srv, unsigned int extra_fds, unsigned int accept_slack);
bool srv_clients_full(struct srv_ctx *srv);

/* Sets srv up from cfg (serve.c); 0 or -ENOMEM.  srv_ctx_free undoes it. */
int srv_ctx_init(struct srv_ctx *srv, const struct srv_config *cfg);
void srv_ctx_free(struct srv_ctx *srv);

#endif
