/* SPDX-License-Identifier: MIT */
/*
 * uring.c - the io_uring event loops: a few loops per CPU, each a thread
 * with its own ring and its own connections (each loop accepts on every
 * listening socket), every socket operation and source-file read
 * asynchronous.  The protocol is request.c's; this file only moves bytes.
 *
 * Operations and their user_data (a pointer with the op in its low bits):
 *
 *   ACCEPT  struct listener   one plain accept per listening socket, re-armed
 *   RECV    struct uconn      one recv per connection into its input buffer
 *   SEND    struct uconn      one sendmsg per connection: the queued replies;
 *                             or, while uc->pollout_armed, a POLLOUT poll of
 *                             a socket that zero-copy splicing filled
 *   READ    struct srv_read_seg  source-file bytes into a READ reply's buffer
 *   OPENED  -                 read of the loop's eventfd: opener threads
 *                             opened source files for it (on_opened())
 *   STOP    -                 poll on cfg->stop_fd
 *   TICK    -                 1 s timeout: handshake deadlines, accept retry
 *   CANCEL  -                 cancellations, result ignored
 *
 * Ordering (nbd-protocol.md A7.3): replies are queued per connection as
 * they complete, in any order, but at most one send is in flight per
 * socket and a short send is finished before anything else goes out, so
 * the bytes of one reply are contiguous on the stream.
 *
 * Lifetime: a connection counts its operations in flight (nops).  It is
 * freed only once it is closing and nops is 0, at the end of the handler
 * of its last CQE; a buffer belongs to its reply until its send completed.
 *
 * Zero-copy (splice.c): a READ reply whose sources may be spliced and are
 * cached goes through the connection's pipe instead; zc_pump() fills and
 * drains it with synchronous non-blocking calls from this loop, and waits
 * for POLLOUT when the socket is full.  Replies queued behind zero-copy
 * ones go through the pipe or wait for it to empty, so order is kept.
 *
 * Back-pressure: when a connection's in-flight budget is used up
 * (srv_conn_can_take) no recv is armed; parsing resumes as sends complete.
 *
 * Stop: every loop polls stop_fd itself; see begin_stop().
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "server/cleanup.h"
#include "server/internal.h"
#include "server/log.h"

enum ud_op {
	OP_OPENED = 0,		/* no pointer: 0 is free for it */
	OP_ACCEPT,
	OP_RECV,
	OP_SEND,
	OP_READ,
	OP_STOP,
	OP_TICK,
	OP_CANCEL,
};
#define UD_OP_MASK 7ULL

static inline uint64_t ud_pack(enum ud_op op, const void *ptr)
{
	return (uint64_t)(uintptr_t)ptr | (uint64_t)op;
}

static inline enum ud_op ud_op(uint64_t ud)
{
	return (enum ud_op)(ud & UD_OP_MASK);
}

static inline void *ud_ptr(uint64_t ud)
{
	return (void *)(uintptr_t)(ud & ~UD_OP_MASK);
}

#define SEND_MAX_IOV 32		/* replies gathered into one sendmsg */
#define STOP_GRACE_SEC 5	/* after a stop, drop clients that do not read */
#define READ_WINDOW 32		/* file reads in flight per READ reply */
#define SEND_ASYNC_MIN (64u << 10)	/* bytes of a send worth an io-wq hand-off */

struct listener {
	int fd;
	bool armed;		/* an accept is in flight */
	bool retry;		/* re-arm on the next tick (EMFILE...) */
} __attribute__((aligned(8)));

struct uconn {
	struct srv_conn c;
	struct uring_loop *loop;
	struct uconn *prev, *next;	/* loop->conns */
	int fd;
	uint8_t *in;			/* SRV_INBUF_SIZE bytes */
	size_t in_len;
	unsigned int nops;		/* SQEs in flight for this connection */
	bool recv_armed, send_armed;
	bool pollout_armed;		/* the SEND op in flight is a POLLOUT poll */
	struct zc_pipe zp;		/* zero-copy send queue, opened on first use */
	bool zp_failed;			/* no pipe to be had: copy path only */
	bool paused;			/* budget used up: input waits */
	bool eof;			/* read nothing more; close when drained */
	bool closing;			/* dropping: free once nops == 0 */
	unsigned int reads_pending;	/* READ replies waiting for file reads */
	unsigned int nparked;		/* of those, parked on loop->fd_wait */
	int64_t deadline;		/* handshake deadline, CLOCK_MONOTONIC s */
	struct srv_reply *sq_head, *sq_tail;	/* replies to send, in order */
	struct msghdr msg;		/* the send in flight */
	struct iovec iov[SEND_MAX_IOV];
} __attribute__((aligned(8)));

struct uring_loop {
	struct io_uring ring;
	struct srv_ctx *srv;
	struct listener *listeners;
	size_t nlisten;
	struct uconn *conns;
	size_t nconns;
	unsigned int naccepts;		/* accepts in flight */
	bool stopping;
	int64_t stop_time;
	struct __kernel_timespec tick;
	unsigned int ncpu;		/* CPUs online at start (spare_cpu()) */
	/* READ replies waiting for a free fd (out of fds), linked by ->next. */
	struct srv_reply *fd_wait;
	struct __kernel_timespec wake;	/* retry them this soon ... */
	bool wake_armed;		/* ... with this timeout in flight */
	/* Source-cache misses go to the openers (NULL: opened here). */
	struct openers *openers;
	int opened_fd;			/* eventfd: the openers' doorbell */
	unsigned int nopens;		/* segments with the openers */
	struct srv_read_seg *to_open, *to_open_tail;	/* for flush_opens() */
	uint64_t opened_val;		/* its read's buffer */
	pthread_mutex_t opened_lock;	/* guards the list below */
	struct srv_read_seg *opened, *opened_tail;	/* done, by ->next_open */
};

/*
 * The openers: threads shared by all loops that open source files for
 * them.  A source-cache miss costs an open_by_handle_at() (or openat2())
 * and, when an idle fd is evicted, a close().  On a tree of more files
 * than fds that is most files of a sequential pass, and in the loop it
 * bounded one client by what one thread can do: its loop ran at 100% of
 * a CPU while the other CPU had room.  So, while fewer clients are
 * connected than there are CPUs (openers_wanted()), a miss waits on its
 * loop's list (to_open) until the loop has handled its batch of
 * completions, then goes to the queue below in one go (flush_opens()).
 * An opener takes up to OPEN_BATCH segments, opens each with
 * src_cache_open() and hands them back on their loop's opened list,
 * ringing the loop's eventfd when that list was empty; the loop then
 * submits their reads (on_opened()).
 *
 * Only the open moves: the read stays in the ring, where a cold page
 * cache gets the io-wq's parallel reads, and the change check and a
 * one-shot fd's close stay with it.  Measured on usr-share (58,000 files,
 * 14,200 fds cached), nbdcopy -C 1, alternating runs: the openers read
 * 10-16% faster than the loop alone; readers that also did the read
 * (pread) were a little faster still warm, but half as fast from a cold
 * page cache (336-360 MB/s against 495-647).  With a client per CPU the
 * hand-off only added its cost: 10-14% more server CPU per GB
 * sequentially, a fifth to a third fewer 4 KiB random reads.
 */
struct openers {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a job queued, or stop */
	struct srv_read_seg *head, *tail;	/* by ->next_open */
	bool stop;
	size_t n;
	pthread_t tid[];
};

static int64_t now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Returns a free SQE, submitting the queued ones first if the SQ is full. */
static struct io_uring_sqe *get_sqe(struct uring_loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
	while (!sqe) {
		int r = io_uring_submit(&l->ring);
		if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
			log_errno(r, "io_uring_submit");
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static void arm_accept(struct uring_loop *l, struct listener *ls)
{
	struct io_uring_sqe *sqe = get_sqe(l);
	io_uring_prep_accept(sqe, ls->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, ls));
	ls->armed = true;
	ls->retry = false;
	l->naccepts++;
}

/*
 * Arms an accept on ls unless the server has all the clients its fd limit
 * allows (srv_clients_full()): then new clients wait in the backlog, and
 * the accept is armed again when one leaves or on the next tick.
 */
static void arm_accept_if_room(struct uring_loop *l, struct listener *ls)
{
	if (srv_clients_full(l->srv)) {
		ls->retry = true;
		return;
	}
	arm_accept(l, ls);
}

static void arm_tick(struct uring_loop *l)
{
	struct io_uring_sqe *sqe = get_sqe(l);
	io_uring_prep_timeout(sqe, &l->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_TICK, NULL));
}

/* Arms the short timeout that retries parked replies (OP_TICK, &l->wake). */
static void arm_wake(struct uring_loop *l)
{
	if (l->wake_armed)
		return;
	struct io_uring_sqe *sqe = get_sqe(l);
	io_uring_prep_timeout(sqe, &l->wake, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_TICK, &l->wake));
	l->wake_armed = true;
}

static void cancel_op(struct uring_loop *l, uint64_t ud)
{
	struct io_uring_sqe *sqe = get_sqe(l);
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, NULL));
}

static void arm_recv(struct uconn *uc)
{
	if (uc->recv_armed || uc->closing || uc->eof)
		return;
	struct io_uring_sqe *sqe = get_sqe(uc->loop);
	io_uring_prep_recv(sqe, uc->fd, uc->in + uc->in_len,
			   SRV_INBUF_SIZE - uc->in_len, 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, uc));
	uc->recv_armed = true;
	uc->nops++;
}

static void conn_drop(struct uconn *uc);

static void arm_pollout(struct uconn *uc)
{
	struct io_uring_sqe *sqe = get_sqe(uc->loop);
	io_uring_prep_poll_add(sqe, uc->fd, POLLOUT);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, uc));
	uc->send_armed = true;
	uc->pollout_armed = true;
	uc->nops++;
}

/*
 * Moves zero-copy replies at the head of the queue into the pipe and the
 * pipe into the socket, until the queue's head is a copy-path reply (sent
 * by sendmsg once the pipe is empty) or the socket is full (then POLLOUT
 * is awaited).  Returns true if kick_send may go on with a sendmsg.
 */
static bool zc_pump(struct uconn *uc)
{
	int r;

	for (;;) {
		struct srv_reply *rp;
		while ((rp = uc->sq_head) && rp->zc) {
			r = zc_fill(&uc->zp, rp);
			if (r < 0) {
				/* Part of the reply may be queued: only a drop is safe. */
				log_errno(r, "client %lu: splicing a reply, dropping", uc->c.id);
				conn_drop(uc);
				return false;
			}
			if (r == 0)
				break;	/* the pipe is full */
			uc->sq_head = rp->next;
			if (!uc->sq_head)
				uc->sq_tail = NULL;
			srv_reply_free(rp);
		}
		if (uc->zp.queued == 0)
			return uc->sq_head != NULL;
		r = zc_drain(&uc->zp, uc->fd);
		if (r == -EAGAIN) {
			arm_pollout(uc);
			return false;
		}
		if (r < 0) {
			log_debug("client %lu: splice to the socket: %s", uc->c.id, strerror(-r));
			conn_drop(uc);
			return false;
		}
	}
}

/*
 * True while fewer clients are connected than there are CPUs: a loop is
 * one thread, so one busy client leaves the other CPUs idle unless the
 * loop hands work off (openers_wanted(), kick_send()).  With a client
 * per CPU every CPU has a loop to run, and a hand-off only adds its cost.
 */
static bool spare_cpu(const struct uring_loop *l)
{
	return __atomic_load_n(&l->srv->nclients, __ATOMIC_RELAXED) < l->ncpu;
}

/* Sends as many queued replies as fit one sendmsg, if none is in flight. */
static void kick_send(struct uconn *uc)
{
	if (uc->send_armed || uc->closing || (!uc->sq_head && !uc->zp.queued))
		return;
	if ((uc->zp.queued || uc->sq_head->zc) && !zc_pump(uc))
		return;
	size_t n = 0, bytes = 0;
	for (struct srv_reply *rp = uc->sq_head; rp && n < SEND_MAX_IOV && !rp->zc;
	     rp = rp->next) {
		uc->iov[n].iov_base = rp->buf + rp->sent;
		uc->iov[n].iov_len = rp->len - rp->sent;
		bytes += uc->iov[n].iov_len;
		n++;
		if (rp->close_after)
			break;	/* nothing follows ABORT's ACK */
	}
	uc->msg = (struct msghdr){ .msg_iov = uc->iov, .msg_iovlen = n };
	struct io_uring_sqe *sqe = get_sqe(uc->loop);
	/*
	 * MSG_WAITALL: the kernel retries a partial send itself (poll-driven,
	 * 5.19+) and completes once, instead of a CQE, a re-arm and an EAGAIN
	 * each time the socket buffer fills.  A drop's shutdown() still ends
	 * it.
	 */
	io_uring_prep_sendmsg(sqe, uc->fd, &uc->msg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, uc));
	/*
	 * A large send's copy into the socket, on an io-wq worker while a
	 * CPU is spare: the loop meanwhile reads the next replies' data,
	 * where inline it did one copy after the other.  Measured with one
	 * nbdcopy connection (docs/design.md, "Server"): 8% faster for 7-9%
	 * less server CPU; a hand-off per 4 KiB reply cost random reads
	 * more than it saved, hence SEND_ASYNC_MIN.
	 */
	if (bytes >= SEND_ASYNC_MIN && spare_cpu(uc->loop))
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	uc->send_armed = true;
	uc->nops++;
}

/* Drops the connection: no more I/O; freed when its last op completes. */
static void conn_drop(struct uconn *uc)
{
	if (uc->closing)
		return;
	uc->closing = true;
	/* Wakes a recv or send in flight; file reads finish on their own. */
	shutdown(uc->fd, SHUT_RDWR);
}

/* Frees uc if it is closing and idle; true if it was freed. */
static bool conn_reap(struct uconn *uc)
{
	if (!uc->closing && uc->eof && !uc->sq_head && !uc->send_armed && !uc->zp.queued &&
	    uc->reads_pending == 0) {
		/* Drained after DISC, ABORT, EOF or a stop. */
		uc->closing = true;
		if (uc->recv_armed)
			cancel_op(uc->loop, ud_pack(OP_RECV, uc));
	}
	if (!uc->closing || uc->nops > 0 || uc->nparked > 0)
		return false;

	struct uring_loop *l = uc->loop;
	while (uc->sq_head) {
		struct srv_reply *rp = uc->sq_head;
		uc->sq_head = rp->next;
		srv_reply_free(rp);
	}
	close(uc->fd);
	zc_pipe_close(&uc->zp);
	free(uc->in);
	if (uc->prev)
		uc->prev->next = uc->next;
	else
		l->conns = uc->next;
	if (uc->next)
		uc->next->prev = uc->prev;
	l->nconns--;
	srv_client_leave(l->srv);
	log_info("client %lu: disconnected", uc->c.id);
	free(uc);
	/* Room for a client that waits in the backlog, and fds for reads. */
	for (size_t i = 0; i < l->nlisten; i++)
		if (l->listeners[i].retry && !l->stopping)
			arm_accept_if_room(l, &l->listeners[i]);
	return true;
}

/* Feeds the received bytes to the protocol, as far as the budget allows. */
static void process_input(struct uconn *uc)
{
	struct srv_conn *c = &uc->c;
	size_t used = 0;

	uc->paused = false;
	while (!uc->closing && c->phase != SRV_PH_CLOSE) {
		if (c->phase == SRV_PH_TRANSMISSION && !srv_conn_can_take(c)) {
			uc->paused = true;
			break;
		}
		ssize_t n = srv_conn_step(c, uc->in + used, uc->in_len - used);
		if (n < 0) {
			log_debug("client %lu: %s, dropping", c->id, strerror((int)-n));
			conn_drop(uc);
			return;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used) {
		memmove(uc->in, uc->in + used, uc->in_len - used);
		uc->in_len -= used;
	}
	if (c->phase == SRV_PH_CLOSE || c->shutting_down)
		uc->eof = true;
	else if (!uc->paused)
		arm_recv(uc);
}

static void uring_send(struct srv_conn *c, struct srv_reply *rp)
{
	struct uconn *uc = (struct uconn *)c;

	if (uc->closing) {
		srv_reply_free(rp);
		return;
	}
	rp->next = NULL;
	rp->sent = 0;
	if (uc->sq_tail)
		uc->sq_tail->next = rp;
	else
		uc->sq_head = rp;
	uc->sq_tail = rp;
	kick_send(uc);
}

/* The last read of rp is done: finish it and queue it. */
static void read_done(struct uconn *uc, struct srv_reply *rp)
{
	uc->reads_pending--;
	srv_read_finish(rp);
	uring_send(&uc->c, rp);
}

static void submit_read(struct uconn *uc, struct srv_read_seg *s)
{
	struct io_uring_sqe *sqe = get_sqe(uc->loop);
	io_uring_prep_read(sqe, s->fd, s->rp->buf + s->buf_off + s->done,
			   (unsigned int)(s->len - s->done), s->file_off + s->done);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_READ, s));
	uc->nops++;
}

/*
 * Out of fds, with none of rp's reads in flight to free one: parks rp on
 * the loop's fd_wait list, retried on every read completion of the loop
 * and every 10 ms (retry_parked()).  After SRV_FD_WAIT_SEC without progress it gives
 * up instead: err becomes rp's error and false is returned.
 */
static bool park(struct uconn *uc, struct srv_reply *rp, uint32_t source, int err)
{
	static bool said;
	struct uring_loop *l = uc->loop;
	int64_t now = now_sec();

	if (!rp->parked_since) {
		rp->parked_since = now;
		if (!__atomic_exchange_n(&said, true, __ATOMIC_RELAXED))
			log_warning("out of file descriptors: reads wait for one"
				    " (raise the open file limit), continuing");
	} else if (now - rp->parked_since >= SRV_FD_WAIT_SEC) {
		err = err == -EAGAIN ? -EMFILE : err;	/* what the log should say */
		src_cache_give_up(rp->ex->cache, source, err);
		rp->err = err;
		return false;
	}
	rp->next = l->fd_wait;
	l->fd_wait = rp;
	uc->nparked++;
	arm_wake(l);
	return true;
}

/* Appends the chain first..last (by ->next_open) to the queue head, tail. */
static void open_queue_append(struct srv_read_seg **head, struct srv_read_seg **tail,
			      struct srv_read_seg *first, struct srv_read_seg *last)
{
	last->next_open = NULL;
	if (*tail)
		(*tail)->next_open = first;
	else
		*head = first;
	*tail = last;
}

/*
 * Queues s, whose source is not cached, for the openers (struct
 * openers): on the loop's own list, which flush_opens() hands over once
 * per batch of completions.
 */
static void open_async(struct uconn *uc, struct srv_read_seg *s)
{
	struct uring_loop *l = uc->loop;

	open_queue_append(&l->to_open, &l->to_open_tail, s, s);
	uc->nops++;	/* uc stays until on_opened() had it back */
	l->nopens++;
}

/* True if misses should go to the openers (spare_cpu()). */
static bool openers_wanted(const struct uring_loop *l)
{
	return l->openers && spare_cpu(l);
}

/* Hands the loop's queued opens to the openers, waking one. */
static void flush_opens(struct uring_loop *l)
{
	struct openers *o = l->openers;

	if (!l->to_open)
		return;
	pthread_mutex_lock(&o->lock);
	open_queue_append(&o->head, &o->tail, l->to_open, l->to_open_tail);
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
	l->to_open = l->to_open_tail = NULL;
}

/*
 * Starts rp's next file reads, at most READ_WINDOW at a time, so that a
 * READ over thousands of small files never pins thousands of fds.  A
 * source that is not cached goes to the openers first (open_async()).
 * After a failure nothing more starts; the reply ends once its reads in
 * flight are back.  Out of fds (loops without openers), it waits: for its
 * own reads in flight to end, or parked (park()).  Returns true if rp is
 * finished (nothing in flight, not parked).
 */
static bool submit_more(struct uconn *uc, struct srv_reply *rp)
{
	struct src_cache *sc = rp->ex->cache;

	while (rp->err == 0 && rp->next_seg < rp->nsegs && rp->pending < READ_WINDOW &&
	       !uc->closing) {
		struct srv_read_seg *s = &rp->segs[rp->next_seg];
		s->fd = src_cache_try(sc, s->source, s->len);
		if (s->fd == SRC_CACHE_MISS && openers_wanted(uc->loop)) {
			s->fd = -1;
			rp->next_seg++;
			rp->pending++;
			open_async(uc, s);
			continue;
		}
		if (s->fd == SRC_CACHE_MISS)
			s->fd = src_cache_open(sc, s->source);
		if (src_cache_busy(s->fd)) {
			int err = s->fd;
			s->fd = -1;
			if (rp->pending > 0)
				return false;	/* on_read() calls again */
			if (park(uc, rp, s->source, err))
				return false;
			break;
		}
		if (s->fd < 0) {
			rp->err = s->fd;
			break;
		}
		rp->next_seg++;
		rp->parked_since = 0;
		rp->pending++;
		submit_read(uc, s);
	}
	if (rp->err == 0 && rp->next_seg < rp->nsegs && rp->pending == 0)
		rp->err = -ECANCELED;	/* closing: the reply is dropped anyway */
	return rp->pending == 0;
}

/*
 * Zero-copy costs a few synchronous system calls per segment (fd, check,
 * cachestat, splice in and out of the pipe) where the copy path batches
 * its reads in the ring: it pays only for big replies.
 * Measured here with fio (randread, 2 x QD 32): on the Debian minbase
 * tree splice gave 0.5x the copy path's MB/s at 4 KiB and 0.8x at
 * 16 KiB, the same at 32 and 48 KiB (for less server CPU) and 1.2-2.7x
 * from 64 KiB.
 */
#define ZC_MIN_REPLY	(32u << 10)	/* bytes of file data in the reply */

/*
 * True if rp may go zero-copy: big enough (above), its first source may be
 * spliced (a cheap look before zc_prepare() pins every fd), and the pipe
 * is there.
 */
static bool zc_candidate(struct uconn *uc, struct srv_reply *rp)
{
	struct src_cache *sc = rp->ex->cache;
	size_t file_bytes = 0;

	for (size_t i = 0; i < rp->nsegs; i++)
		file_bytes += rp->segs[i].len;
	if (file_bytes < ZC_MIN_REPLY)
		return false;
	if (!sc->all_stable && !src_cache_zc(sc, rp->segs[0].source))
		return false;
	if (uc->zp.rd < 0) {
		if (uc->zp_failed)
			return false;
		/* splice() to the socket must not block this loop. */
		int fl = fcntl(uc->fd, F_GETFL);
		if (fl < 0 || fcntl(uc->fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
		    zc_pipe_open(&uc->zp) < 0) {
			log_debug("client %lu: no zero-copy: %m", uc->c.id);
			uc->zp_failed = true;
			return false;
		}
		log_info("client %lu: sending file data zero-copy (splice)", uc->c.id);
	}
	return true;
}

static void uring_read(struct srv_conn *c, struct srv_reply *rp)
{
	struct uconn *uc = (struct uconn *)c;

	if (zc_candidate(uc, rp)) {
		int z = zc_prepare(rp->ex->cache, rp);
		if (z != 0) {
			if (z < 0)
				srv_read_finish(rp);	/* an error reply */
			uring_send(c, rp);
			return;
		}
	}
	uc->reads_pending++;
	rp->pending = 0;
	rp->next_seg = 0;
	if (submit_more(uc, rp))
		read_done(uc, rp);
}

static const struct srv_conn_ops uring_ops = {
	.send = uring_send,
	.read = uring_read,
};

/* Gives every parked READ reply another go (see park()). */
static void retry_parked(struct uring_loop *l)
{
	struct srv_reply *rp = l->fd_wait;

	l->fd_wait = NULL;
	while (rp) {
		struct srv_reply *next = rp->next;
		struct uconn *uc = (struct uconn *)rp->conn;

		rp->next = NULL;
		uc->nparked--;
		if (submit_more(uc, rp))
			read_done(uc, rp);
		conn_reap(uc);
		rp = next;
	}
}

/*
 * Segment s of its reply is over, its fd unpinned, with err (0 or
 * -errno): records err, then starts the reply's next reads or finishes
 * it.  May free s's connection (conn_reap()).
 */
static void seg_end(struct uring_loop *l, struct srv_read_seg *s, int err)
{
	struct srv_reply *rp = s->rp;
	struct uconn *uc = (struct uconn *)rp->conn;

	if (err < 0 && rp->err == 0)
		rp->err = err;
	s->fd = -1;
	rp->pending--;
	if (submit_more(uc, rp))
		read_done(uc, rp);
	conn_reap(uc);
	if (l->fd_wait)
		retry_parked(l);	/* an fd may have come free */
}

static void on_read(struct srv_read_seg *s, int res)
{
	struct srv_reply *rp = s->rp;
	struct uconn *uc = (struct uconn *)rp->conn;
	struct uring_loop *l = uc->loop;	/* conn_reap() may free uc */
	struct src_cache *sc = rp->ex->cache;
	int err;

	uc->nops--;
	if (res == -EINTR || res == -EAGAIN) {
		submit_read(uc, s);
		return;
	}
	if (res > 0) {
		s->done += (size_t)res;
		if (s->done < s->len && !uc->closing) {
			submit_read(uc, s);	/* a short read: the rest may follow */
			return;
		}
		/* Complete: is it still the file the layout was made from? */
		err = s->done < s->len ? -ECANCELED : src_cache_check(sc, s->source, s->fd);
	} else {
		/* 0 before the end: the file shrank. */
		err = res < 0 ? res : -EIO;
		src_cache_failed(sc, s->source, s->fd, err);
	}
	src_cache_put(sc, s->source, s->fd);
	seg_end(l, s, err);
}

/* An opener is done with s: s->fd is pinned, or the open's -errno. */
static void open_done(struct uring_loop *l, struct srv_read_seg *s)
{
	struct srv_reply *rp = s->rp;
	struct uconn *uc = (struct uconn *)rp->conn;

	l->nopens--;
	uc->nops--;
	if (s->fd >= 0 && rp->err == 0 && !uc->closing) {
		submit_read(uc, s);
		return;
	}
	if (s->fd >= 0)
		src_cache_put(rp->ex->cache, s->source, s->fd);
	seg_end(l, s, s->fd < 0 ? s->fd : 0);
}

/* Takes the segments the openers are done with (l->opened). */
static struct srv_read_seg *take_opened(struct uring_loop *l)
{
	struct srv_read_seg *s;

	pthread_mutex_lock(&l->opened_lock);
	s = l->opened;
	l->opened = l->opened_tail = NULL;
	pthread_mutex_unlock(&l->opened_lock);
	return s;
}

/* The eventfd rang: takes the opened segments, re-arms the read. */
static void on_opened(struct uring_loop *l, int res)
{
	struct srv_read_seg *s;

	if (res < 0 && res != -EINTR && res != -EAGAIN && res != -ECANCELED)
		log_errno(res, "reading the openers' eventfd");
	if (res != -ECANCELED) {
		struct io_uring_sqe *sqe = get_sqe(l);
		io_uring_prep_read(sqe, l->opened_fd, &l->opened_val, sizeof(l->opened_val), 0);
		io_uring_sqe_set_data64(sqe, ud_pack(OP_OPENED, NULL));
	}
	s = take_opened(l);
	while (s) {
		struct srv_read_seg *next = s->next_open;
		open_done(l, s);
		s = next;
	}
}

static void on_send(struct uconn *uc, int res)
{
	uc->nops--;
	uc->send_armed = false;
	if (res == -EINTR || res == -EAGAIN) {
		kick_send(uc);
		return;
	}
	if (res <= 0) {
		/* 0 for a non-empty message would repeat forever: drop too. */
		log_debug("client %lu: send: %s", uc->c.id,
			  res ? strerror(-res) : "nothing sent");
		conn_drop(uc);
		conn_reap(uc);
		return;
	}
	size_t left = (size_t)res;
	while (left > 0 && uc->sq_head) {
		struct srv_reply *rp = uc->sq_head;
		size_t n = rp->len - rp->sent < left ? rp->len - rp->sent : left;
		rp->sent += n;
		left -= n;
		if (rp->sent < rp->len)
			break;	/* short send: resume this reply first */
		uc->sq_head = rp->next;
		if (!uc->sq_head)
			uc->sq_tail = NULL;
		if (rp->close_after)
			uc->eof = true;
		srv_reply_free(rp);
	}
	kick_send(uc);
	if (uc->paused && srv_conn_can_take(&uc->c))
		process_input(uc);
	conn_reap(uc);
}

static void on_pollout(struct uconn *uc, int res)
{
	uc->nops--;
	uc->send_armed = false;
	uc->pollout_armed = false;
	if (res < 0 && res != -EINTR && res != -EAGAIN) {
		log_debug("client %lu: poll: %s", uc->c.id, strerror(-res));
		conn_drop(uc);
	} else {
		kick_send(uc);
		if (uc->paused && srv_conn_can_take(&uc->c))
			process_input(uc);
	}
	conn_reap(uc);
}

static void on_recv(struct uconn *uc, int res)
{
	uc->nops--;
	uc->recv_armed = false;
	if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS) {
		arm_recv(uc);
		return;
	}
	if (res == -ECANCELED) {
		conn_reap(uc);
		return;
	}
	if (res < 0) {
		log_debug("client %lu: recv: %s", uc->c.id, strerror(-res));
		conn_drop(uc);
	} else if (res == 0) {
		/* EOF: quiet at a message boundary, a drop inside one (A7.4). */
		if (uc->in_len || uc->c.skip) {
			log_debug("client %lu: EOF inside a message", uc->c.id);
			conn_drop(uc);
		} else if (uc->c.phase != SRV_PH_TRANSMISSION) {
			conn_drop(uc);
		} else {
			uc->eof = true;
		}
	} else {
		uc->in_len += (size_t)res;
		process_input(uc);
	}
	conn_reap(uc);
}

static void on_accept(struct uring_loop *l, struct listener *ls, int res)
{
	ls->armed = false;
	l->naccepts--;
	if (l->stopping) {
		if (res >= 0)
			close(res);
		return;
	}
	if (res < 0) {
		if (res == -ECANCELED)
			return;
		if (res == -EINTR || res == -EAGAIN || res == -ECONNABORTED) {
			arm_accept(l, ls);
			return;
		}
		/* EMFILE and the like: wait for the next tick, do not spin. */
		static bool said;
		if (!__atomic_exchange_n(&said, true, __ATOMIC_RELAXED))
			log_errno(res, "accept: new clients wait, retrying every second");
		else
			log_debug("accept: %s, retrying in a second", strerror(-res));
		ls->retry = true;
		return;
	}
	arm_accept_if_room(l, ls);
	if (!srv_client_enter(l->srv)) {
		close(res);
		return;
	}

	srv_socket_setup(res);
	struct uconn *uc = calloc(1, sizeof(*uc));
	uint8_t *in = malloc(SRV_INBUF_SIZE);
	if (!uc || !in) {
		free(uc);
		free(in);
		close(res);
		srv_client_leave(l->srv);
		log_error("accept: out of memory");
		return;
	}
	uc->fd = res;
	uc->zp = (struct zc_pipe){ .rd = -1, .wr = -1 };
	uc->in = in;
	uc->loop = l;
	unsigned int t = l->srv->cfg->handshake_timeout_sec;
	uc->deadline = now_sec() + (t ? t : 10);
	uc->next = l->conns;
	if (l->conns)
		l->conns->prev = uc;
	l->conns = uc;
	l->nconns++;
	if (srv_conn_start(&uc->c, l->srv, &uring_ops) < 0) {
		conn_drop(uc);
		conn_reap(uc);
		return;
	}
	log_info("client %lu: connected", uc->c.id);
	arm_recv(uc);
}

/*
 * Stop (A7.4): no new clients and no new input.  What was received is
 * still answered, options with ERR_SHUTDOWN and requests with ESHUTDOWN;
 * replies in flight go out, then each connection closes.
 */
static void begin_stop(struct uring_loop *l)
{
	l->stopping = true;
	l->stop_time = now_sec();
	log_debug("stopping: %zu clients of this loop to finish", l->nconns);
	for (size_t i = 0; i < l->nlisten; i++)
		if (l->listeners[i].armed)
			cancel_op(l, ud_pack(OP_ACCEPT, &l->listeners[i]));
	for (struct uconn *uc = l->conns, *next; uc; uc = next) {
		next = uc->next;
		uc->c.shutting_down = true;
		if (uc->recv_armed)
			cancel_op(l, ud_pack(OP_RECV, uc));
		else if (!uc->closing)
			process_input(uc);
		uc->eof = true;
		conn_reap(uc);
	}
}

static void on_tick(struct uring_loop *l)
{
	int64_t now = now_sec();

	if (l->fd_wait)
		retry_parked(l);

	for (size_t i = 0; i < l->nlisten; i++)
		if (l->listeners[i].retry && !l->stopping)
			arm_accept_if_room(l, &l->listeners[i]);
	for (struct uconn *uc = l->conns, *next; uc; uc = next) {
		next = uc->next;
		bool late = uc->c.phase < SRV_PH_TRANSMISSION && now >= uc->deadline;
		bool stuck = l->stopping && now >= l->stop_time + STOP_GRACE_SEC;
		if ((late || stuck) && !uc->closing) {
			log_info("client %lu: %s, dropping", uc->c.id,
				 late ? "handshake not finished in time"
				      : "still busy after the stop");
			conn_drop(uc);
		}
		conn_reap(uc);
	}
	arm_tick(l);
}

static void handle_cqe(struct uring_loop *l, const struct io_uring_cqe *cqe)
{
	void *ptr = ud_ptr(cqe->user_data);

	switch (ud_op(cqe->user_data)) {
	case OP_ACCEPT:
		on_accept(l, ptr, cqe->res);
		break;
	case OP_RECV:
		on_recv(ptr, cqe->res);
		break;
	case OP_SEND:
		if (((struct uconn *)ptr)->pollout_armed)
			on_pollout(ptr, cqe->res);
		else
			on_send(ptr, cqe->res);
		break;
	case OP_READ:
		on_read(ptr, cqe->res);
		break;
	case OP_OPENED:
		on_opened(l, cqe->res);
		break;
	case OP_STOP:
		if (cqe->res < 0 && cqe->res != -ECANCELED)
			log_errno(cqe->res, "polling the stop fd");
		if (!l->stopping)
			begin_stop(l);
		break;
	case OP_TICK:
		if (ptr == &l->wake) {
			l->wake_armed = false;
			if (l->fd_wait)
				retry_parked(l);
		} else {
			on_tick(l);
		}
		break;
	case OP_CANCEL:
		break;
	}
}

/* Sets the ring up: the fastest flags the kernel takes, then none. */
static int ring_init(struct io_uring *ring, unsigned int entries)
{
	static const unsigned int flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < ARRAY_SIZE(flag_sets); i++) {
		struct io_uring_params p = {
			.flags = flag_sets[i] | IORING_SETUP_CQSIZE,
			.cq_entries = entries * 8,
		};
		r = io_uring_queue_init_params(entries, ring, &p);
		if (r != -EINVAL)
			return r;
	}
	return r;
}

int srv_uring_probe(void)
{
	static const int ops[] = {
		IORING_OP_ACCEPT, IORING_OP_RECV, IORING_OP_SENDMSG,
		IORING_OP_READ, IORING_OP_POLL_ADD, IORING_OP_TIMEOUT,
		IORING_OP_ASYNC_CANCEL,
	};
	struct io_uring ring;
	int r = io_uring_queue_init(8, &ring, 0);
	if (r < 0)
		return r;
	struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
	if (!probe) {
		r = -ENOSYS;
	} else {
		for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
			if (!io_uring_opcode_supported(probe, ops[i]))
				r = -ENOSYS;
		io_uring_free_probe(probe);
	}
	if (r == 0) {
		/* A round trip too: a filter may allow the setup but not
		 * io_uring_enter. */
		struct io_uring_cqe *cqe;
		io_uring_prep_nop(io_uring_get_sqe(&ring));
		r = io_uring_submit_and_wait(&ring, 1);
		if (r >= 0)
			r = io_uring_peek_cqe(&ring, &cqe);
	}
	io_uring_queue_exit(&ring);
	return r < 0 ? r : 0;
}

#define RING_ENTRIES 512	/* SQ entries; the CQ has 8 times as many */
#define CQE_BATCH 128		/* completions handled per CQ advance */

/* Runs one loop on its ring (already set up) until the stop. */
static int loop_run(struct uring_loop *l)
{
	const struct srv_config *cfg = l->srv->cfg;
	int r;

	l->tick.tv_sec = 1;
	l->wake.tv_nsec = 10 * 1000 * 1000;
	l->listeners = calloc(cfg->nlisten, sizeof(*l->listeners));
	if (!l->listeners) {
		io_uring_queue_exit(&l->ring);
		return -ENOMEM;
	}
	l->nlisten = cfg->nlisten;
	for (size_t i = 0; i < l->nlisten; i++) {
		l->listeners[i].fd = cfg->listen_fds[i];
		arm_accept_if_room(l, &l->listeners[i]);
	}
	if (cfg->stop_fd >= 0) {
		struct io_uring_sqe *sqe = get_sqe(l);
		io_uring_prep_poll_add(sqe, cfg->stop_fd, POLLIN);
		io_uring_sqe_set_data64(sqe, ud_pack(OP_STOP, NULL));
	}
	arm_tick(l);
	if (l->openers)
		on_opened(l, 0);	/* arms the eventfd's read */

	r = 0;
	while (!l->stopping || l->nconns > 0 || l->naccepts > 0) {
		if (l->openers)
			flush_opens(l);
		int s = io_uring_submit_and_wait(&l->ring, 1);
		if (s < 0 && s != -EINTR && s != -EAGAIN && s != -EBUSY) {
			r = log_errno(s, "io_uring_submit_and_wait");
			break;
		}
		/*
		 * Copy a batch out and advance the CQ once, before handling:
		 * handlers submit, and the room freed in the CQ lets the kernel
		 * flush any overflowed completions instead of refusing (EBUSY).
		 */
		struct io_uring_cqe *cqes[CQE_BATCH];
		struct io_uring_cqe batch[CQE_BATCH];
		unsigned int n;
		do {
			n = io_uring_peek_batch_cqe(&l->ring, cqes, CQE_BATCH);
			for (unsigned int i = 0; i < n; i++)
				batch[i] = *cqes[i];
			io_uring_cq_advance(&l->ring, n);
			for (unsigned int i = 0; i < n; i++)
				handle_cqe(l, &batch[i]);
		} while (n == CQE_BATCH);
	}

	/*
	 * After a fatal error: drop whatever is left without waiting.  The
	 * ring goes first, so no read can still land in a freed buffer.
	 */
	io_uring_queue_exit(&l->ring);
	if (l->openers)
		flush_opens(l);
	while (l->nopens > 0) {
		/* The openers still hold segments of these connections. */
		uint64_t v;
		if (read(l->opened_fd, &v, sizeof(v)) < 0 && errno != EINTR)
			break;
		for (struct srv_read_seg *s = take_opened(l); s; s = s->next_open) {
			l->nopens--;
			if (s->fd >= 0)
				src_cache_put(s->rp->ex->cache, s->source, s->fd);
		}
	}
	for (struct uconn *uc = l->conns, *next; uc; uc = next) {
		next = uc->next;
		while (uc->sq_head) {
			struct srv_reply *rp = uc->sq_head;
			uc->sq_head = rp->next;
			srv_reply_free(rp);
		}
		close(uc->fd);
		zc_pipe_close(&uc->zp);
		free(uc->in);
		free(uc);
	}
	free(l->listeners);
	return r;
}

#define MAX_OPENERS 8
#define OPEN_BATCH 16	/* opens an opener takes at once */

/* Hands s back to its loop (l->opened), ringing it if the list was empty. */
static void post_opened(struct srv_read_seg *s)
{
	/* s's connection waits for it (nops): its loop is there. */
	struct uring_loop *l = ((struct uconn *)s->rp->conn)->loop;
	bool ring;

	pthread_mutex_lock(&l->opened_lock);
	ring = !l->opened;
	open_queue_append(&l->opened, &l->opened_tail, s, s);
	pthread_mutex_unlock(&l->opened_lock);
	if (ring) {
		uint64_t one = 1;
		while (write(l->opened_fd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
}

/*
 * An opener thread (struct openers): takes up to OPEN_BATCH segments at a
 * time, opens their sources and hands them back, until the stop.
 */
static void *opener_main(void *arg)
{
	struct openers *o = arg;

	pthread_setname_np(pthread_self(), "opener");	/* for top -H */
	pthread_mutex_lock(&o->lock);
	for (;;) {
		struct srv_read_seg *batch[OPEN_BATCH];
		size_t n = 0;
		while (o->head && n < OPEN_BATCH) {
			batch[n++] = o->head;
			o->head = o->head->next_open;
		}
		if (n == 0) {
			if (o->stop)
				break;
			pthread_cond_wait(&o->cond, &o->lock);
			continue;
		}
		if (!o->head)
			o->tail = NULL;
		else
			pthread_cond_signal(&o->cond);	/* more for another opener */
		pthread_mutex_unlock(&o->lock);

		size_t posted = 0;
		for (size_t i = 0; i < n; i++) {
			struct srv_read_seg *s = batch[i];
			struct src_cache *sc = s->rp->ex->cache;
			s->fd = src_cache_open(sc, s->source);
			if (src_cache_busy(s->fd)) {
				/* The fds this batch pinned may be the ones to wait for. */
				for (; posted < i; posted++)
					post_opened(batch[posted]);
				s->fd = src_cache_open_wait(sc, s->source);
			}
		}
		for (; posted < n; posted++)
			post_opened(batch[posted]);
		pthread_mutex_lock(&o->lock);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/*
 * Starts n opener threads, used while a CPU is spare (spare_cpu());
 * NULL if none could be started (the loops then open in place).
 */
static struct openers *openers_start(size_t n)
{
	struct openers *o = calloc(1, sizeof(*o) + n * sizeof(o->tid[0]));

	if (!o)
		return NULL;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	for (; o->n < n; o->n++) {
		int e = pthread_create(&o->tid[o->n], NULL, opener_main, o);
		if (e != 0) {
			log_errno(-e, "starting an opener thread");
			break;
		}
	}
	if (o->n == 0) {
		free(o);
		return NULL;
	}
	return o;
}

/* Stops the openers, once no loop can queue anything more. */
static void openers_stop(struct openers *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->lock);
	o->stop = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	for (size_t i = 0; i < o->n; i++)
		pthread_join(o->tid[i], NULL);
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
	free(o);
}

#ifndef LOOPS_PER_CPU
#define LOOPS_PER_CPU 4
#endif
#define MAX_LOOPS 16

struct loop_thread {
	struct uring_loop loop;
	pthread_t tid;
	bool started;
	int ret;
};

/*
 * An extra loop's thread.  The ring is set up here: with SINGLE_ISSUER
 * only the thread that created a ring may submit to it.
 */
static void *loop_thread_main(void *arg)
{
	struct loop_thread *t = arg;
	int r = ring_init(&t->loop.ring, RING_ENTRIES);
	if (r < 0) {
		log_errno(r, "setting up an extra io_uring loop");
		t->ret = 0;	/* the other loops carry on */
		return NULL;
	}
	t->ret = loop_run(&t->loop);
	return NULL;
}

int srv_uring_run(struct srv_ctx *srv)
{
	/*
	 * LOOPS_PER_CPU loops per CPU: each arms its own accepts on every
	 * listening socket (the kernel hands each new connection to one of
	 * them) and serves its connections alone; the source caches are
	 * shared.  More loops than CPUs: a loop is CPU-bound while it copies
	 * (page cache to buffer, buffer to socket), and with busy clients on
	 * the same host more loops kept more connections moving (fio with 16
	 * jobs: 8 loops on 2 CPUs read 1.4x as fast as 2 loops).
	 */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = ncpu < 1 ? LOOPS_PER_CPU : (size_t)ncpu * LOOPS_PER_CPU;
	if (n > MAX_LOOPS)
		n = MAX_LOOPS;
	_cleanup_free_ struct loop_thread *t = calloc(n, sizeof(*t));
	int r;

	if (!t)
		return -ENOMEM;
	r = ring_init(&t[0].loop.ring, RING_ENTRIES);
	if (r < 0) {
		log_info("io_uring unavailable: %s", strerror(-r));
		return r;
	}
	/*
	 * One opener per CPU (struct openers), each loop with its eventfd:
	 * made before srv_client_limit() counts the fds open.
	 */
	struct openers *o = ncpu < 2 ? NULL :
			    openers_start(ncpu > MAX_OPENERS ? MAX_OPENERS : (size_t)ncpu);
	for (size_t i = 0; i < n; i++) {
		struct uring_loop *l = &t[i].loop;
		l->srv = srv;
		l->ncpu = ncpu < 1 ? 1 : (unsigned int)ncpu;
		pthread_mutex_init(&l->opened_lock, NULL);
		l->opened_fd = o ? eventfd(0, EFD_CLOEXEC) : -1;
		if (l->opened_fd >= 0)
			l->openers = o;
		else if (o)
			log_errno(-errno, "eventfd: this loop opens its source files itself");
	}
	/* n - 1 rings to come; each loop arms an accept per listener. */
	srv_client_limit(srv, (unsigned int)n - 1, (unsigned int)(n * srv->cfg->nlisten));
	for (size_t i = 1; i < n; i++) {
		int e = pthread_create(&t[i].tid, NULL, loop_thread_main, &t[i]);
		if (e != 0) {
			log_errno(-e, "starting an io_uring loop thread");
			break;
		}
		t[i].started = true;
	}
	log_debug("serving with %zu io_uring loops", n);
	r = loop_run(&t[0].loop);
	for (size_t i = 1; i < n; i++) {
		if (!t[i].started)
			continue;
		pthread_join(t[i].tid, NULL);
		if (t[i].ret < 0 && r == 0)
			r = t[i].ret;
	}
	openers_stop(o);
	for (size_t i = 0; i < n; i++) {
		if (t[i].loop.opened_fd >= 0)
			close(t[i].loop.opened_fd);
		pthread_mutex_destroy(&t[i].loop.opened_lock);
	}
	return r;
}
