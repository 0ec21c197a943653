/* SPDX-License-Identifier: MIT */
/*
 * plain.c - the fallback event loop, for hosts where io_uring is refused
 * (seccomp), all blocking calls:
 *
 *   accept loop   polls the listening sockets and stop_fd, starts a
 *                 receiver thread per connection;
 *   receiver      recv, parse and validate (srv_conn_step), build replies;
 *                 READs with file data go to the read pool;
 *   read pool     threads shared by all connections: pread into the reply
 *                 buffer, so the READs one client keeps in flight are read
 *                 in parallel (a cold page cache needs that);
 *   sender        one per connection: sends finished replies in the order
 *                 they finished, each whole (A7.3).
 *
 * The protocol code is the same as the io_uring loop's (srv_conn_step and
 * reply.c); the in-flight budget stops the receiver while the sender is
 * behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/cleanup.h"
#include "server/internal.h"
#include "server/log.h"

struct plain_conn {
	struct srv_conn c;
	int fd;
	struct plain_conn *next;	/* the accept loop's list */
	/* Shared by the receiver (serve) and the sender thread: */
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a reply queued, budget freed, or done */
	struct srv_reply *head, *tail;	/* replies for the sender, in order */
	bool done;			/* the receiver ended: drain, then exit */
	unsigned int reads_pending;	/* READ replies with the read pool */
	int err;			/* first send error: stop serving */
};

/* The threads' bookkeeping, for a clean stop. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct plain_conn *conns;
	unsigned int nthreads;
} plain = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0 };

/*
 * The read pool: threads shared by all connections that pread READ
 * replies' file data, so that one connection's reads run in parallel
 * (clients keep dozens of READs in flight).  Replies then go to their
 * connection's sender in completion order.
 */
#define POOL_PER_CPU 4
#define POOL_MAX 32

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct srv_reply *head, *tail;	/* READ replies waiting for a thread */
	bool quit;
	pthread_t threads[POOL_MAX];
	size_t nthreads;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static int send_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Queues rp for the sender thread (or drops it after a send error). */
static void plain_send(struct srv_conn *c, struct srv_reply *rp)
{
	struct plain_conn *pc = (struct plain_conn *)c;

	pthread_mutex_lock(&pc->lock);
	if (pc->err) {
		pthread_mutex_unlock(&pc->lock);
		srv_reply_free(rp);
		return;
	}
	rp->next = NULL;
	if (pc->tail)
		pc->tail->next = rp;
	else
		pc->head = rp;
	pc->tail = rp;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
}

/*
 * The sender: writes queued replies in order, each whole, so the
 * receiver's pread of the next READ overlaps with this send.
 */
static void *sender_thread(void *arg)
{
	struct plain_conn *pc = arg;

	for (;;) {
		pthread_mutex_lock(&pc->lock);
		while (!pc->head && !(pc->done && pc->reads_pending == 0))
			pthread_cond_wait(&pc->cond, &pc->lock);
		struct srv_reply *rp = pc->head;
		if (!rp) {
			pthread_mutex_unlock(&pc->lock);
			return NULL;
		}
		pc->head = rp->next;
		if (!pc->head)
			pc->tail = NULL;
		int err = pc->err;
		pthread_mutex_unlock(&pc->lock);

		if (err == 0) {
			err = send_all(pc->fd, rp->buf, rp->len);
			if (err < 0) {
				log_debug("client %lu: send: %s", pc->c.id, strerror(-err));
				/* Wakes the receiver if it waits in poll or recv. */
				shutdown(pc->fd, SHUT_RDWR);
			}
		}
		srv_reply_free(rp);
		pthread_mutex_lock(&pc->lock);
		if (err < 0 && pc->err == 0)
			pc->err = err;
		pthread_cond_broadcast(&pc->cond);	/* budget freed */
		pthread_mutex_unlock(&pc->lock);
	}
}

/* Reads one segment into its reply buffer; 0 or -errno (-EIO if short). */
static int read_seg(struct srv_export_ctx *ex, struct srv_read_seg *s)
{
	int fd = src_cache_get_wait(ex->cache, s->source, s->len);
	int r = 0;

	if (fd < 0)
		return fd;
	while (s->done < s->len) {
		ssize_t n = pread(fd, s->rp->buf + s->buf_off + s->done,
				  s->len - s->done, (off_t)(s->file_off + s->done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* A short read: the file shrank under us. */
			r = n < 0 ? -errno : -EIO;
			src_cache_failed(ex->cache, s->source, fd, r);
			break;
		}
		s->done += (size_t)n;
	}
	if (r == 0)
		r = src_cache_check(ex->cache, s->source, fd);
	src_cache_put(ex->cache, s->source, fd);
	return r;
}

/* Does rp's file reads and hands it to its connection's sender. */
static void do_read(struct srv_reply *rp)
{
	struct plain_conn *pc = (struct plain_conn *)rp->conn;

	for (size_t i = 0; i < rp->nsegs && rp->err == 0; i++)
		rp->err = read_seg(rp->ex, &rp->segs[i]);
	srv_read_finish(rp);
	plain_send(&pc->c, rp);
	pthread_mutex_lock(&pc->lock);
	pc->reads_pending--;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
}

static void *pool_thread(void *arg)
{
	for (;;) {
		pthread_mutex_lock(&pool.lock);
		while (!pool.head && !pool.quit)
			pthread_cond_wait(&pool.cond, &pool.lock);
		struct srv_reply *rp = pool.head;
		if (!rp) {
			pthread_mutex_unlock(&pool.lock);
			return NULL;
		}
		pool.head = rp->next;
		if (!pool.head)
			pool.tail = NULL;
		pthread_mutex_unlock(&pool.lock);
		do_read(rp);
	}
}

static void plain_read(struct srv_conn *c, struct srv_reply *rp)
{
	struct plain_conn *pc = (struct plain_conn *)c;

	pthread_mutex_lock(&pc->lock);
	pc->reads_pending++;
	pthread_mutex_unlock(&pc->lock);
	if (pool.nthreads == 0) {
		do_read(rp);	/* no pool: read here */
		return;
	}
	rp->next = NULL;
	pthread_mutex_lock(&pool.lock);
	if (pool.tail)
		pool.tail->next = rp;
	else
		pool.head = rp;
	pool.tail = rp;
	pthread_cond_signal(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
}

/* Starts the read pool; with no threads, reads happen on the receivers. */
static void pool_start(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = ncpu < 1 ? POOL_PER_CPU : (size_t)ncpu * POOL_PER_CPU;
	if (n > POOL_MAX)
		n = POOL_MAX;
	pool.quit = false;
	for (pool.nthreads = 0; pool.nthreads < n; pool.nthreads++) {
		int r = pthread_create(&pool.threads[pool.nthreads], NULL, pool_thread, NULL);
		if (r != 0) {
			log_errno(-r, "starting the read pool");
			break;
		}
	}
}

/* Ends the read pool, once no connection is left to use it. */
static void pool_stop(void)
{
	pthread_mutex_lock(&pool.lock);
	pool.quit = true;
	pthread_cond_broadcast(&pool.cond);
	pthread_mutex_unlock(&pool.lock);
	for (size_t i = 0; i < pool.nthreads; i++)
		pthread_join(pool.threads[i], NULL);
	pool.nthreads = 0;
}

static const struct srv_conn_ops plain_ops = {
	.send = plain_send,
	.read = plain_read,
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until c may take another request (A14 in-flight budget); false
 * once a send failed.
 */
static bool wait_budget(struct plain_conn *pc)
{
	pthread_mutex_lock(&pc->lock);
	while (!pc->err && !srv_conn_can_take(&pc->c))
		pthread_cond_wait(&pc->cond, &pc->lock);
	bool ok = pc->err == 0;
	pthread_mutex_unlock(&pc->lock);
	return ok;
}

static bool send_failed(struct plain_conn *pc)
{
	pthread_mutex_lock(&pc->lock);
	bool failed = pc->err != 0;
	pthread_mutex_unlock(&pc->lock);
	return failed;
}

/* The receiver: handles pc until EOF, error, DISC/ABORT, the deadline or
 * a stop. */
static void receive(struct srv_ctx *srv, struct plain_conn *pc, uint8_t *in)
{
	struct srv_conn *c = &pc->c;
	size_t in_len = 0;
	const int64_t deadline = now_ms() +
		(int64_t)(srv->cfg->handshake_timeout_sec ? srv->cfg->handshake_timeout_sec : 10) * 1000;

	for (;;) {
		/* Handle every whole message received so far. */
		size_t used = 0;
		for (;;) {
			if (c->phase == SRV_PH_TRANSMISSION && !wait_budget(pc))
				return;
			ssize_t n = srv_conn_step(c, in + used, in_len - used);
			if (n < 0)
				return;
			if (n == 0)
				break;
			used += (size_t)n;
		}
		memmove(in, in + used, in_len - used);
		in_len -= used;
		if (c->phase == SRV_PH_CLOSE || c->shutting_down || send_failed(pc))
			return;

		struct pollfd pfd[2] = {
			{ .fd = pc->fd, .events = POLLIN },
			{ .fd = srv->cfg->stop_fd, .events = POLLIN },
		};
		int timeout = -1;
		if (c->phase != SRV_PH_TRANSMISSION) {
			int64_t left = deadline - now_ms();
			if (left <= 0) {
				log_info("client %lu: handshake not finished in time, dropping",
					 c->id);
				return;
			}
			timeout = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		int r = poll(pfd, srv->cfg->stop_fd >= 0 ? 2 : 1, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			log_errno(-errno, "client %lu: poll", c->id);
			return;
		}
		if (srv->cfg->stop_fd >= 0 && pfd[1].revents) {
			/* Stop: answer what was received (A7.4), then close. */
			c->shutting_down = true;
			continue;
		}
		if (r == 0 || !pfd[0].revents)
			continue;
		ssize_t n = recv(pc->fd, in + in_len, SRV_INBUF_SIZE - in_len, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			if (n < 0)
				log_debug("client %lu: recv: %m", c->id);
			return;
		}
		in_len += (size_t)n;
	}
}

/* Serves pc: a receiver (this thread) and a sender thread. */
static void serve(struct srv_ctx *srv, struct plain_conn *pc)
{
	_cleanup_free_ uint8_t *in = malloc(SRV_INBUF_SIZE);
	pthread_t sender;
	int r;

	pthread_mutex_init(&pc->lock, NULL);
	pthread_cond_init(&pc->cond, NULL);
	/* The greeting is queued first; the sender sends it once started. */
	if (!in || srv_conn_start(&pc->c, srv, &plain_ops) < 0) {
		log_error("client: out of memory");
		goto out;
	}
	r = pthread_create(&sender, NULL, sender_thread, pc);
	if (r != 0) {
		log_errno(-r, "client %lu: starting its sender thread", pc->c.id);
		goto out;
	}
	log_info("client %lu: connected", pc->c.id);
	receive(srv, pc, in);
	log_info("client %lu: disconnected", pc->c.id);
	/* Replies in flight still go out (DISC, ABORT's ACK, a stop). */
	pthread_mutex_lock(&pc->lock);
	pc->done = true;
	pthread_cond_broadcast(&pc->cond);
	pthread_mutex_unlock(&pc->lock);
	pthread_join(sender, NULL);
out:
	while (pc->head) {
		struct srv_reply *rp = pc->head;
		pc->head = rp->next;
		srv_reply_free(rp);
	}
	pthread_cond_destroy(&pc->cond);
	pthread_mutex_destroy(&pc->lock);
}

struct plain_thread_arg {
	struct srv_ctx *srv;
	struct plain_conn *pc;
};

static void list_remove(struct plain_conn *pc)
{
	for (struct plain_conn **pp = &plain.conns; *pp; pp = &(*pp)->next)
		if (*pp == pc) {
			*pp = pc->next;
			break;
		}
}

static void *conn_thread(void *arg)
{
	struct plain_thread_arg *a = arg;
	struct plain_conn *pc = a->pc;

	serve(a->srv, pc);
	srv_client_leave(a->srv);
	pthread_mutex_lock(&plain.lock);
	list_remove(pc);
	close(pc->fd);
	plain.nthreads--;
	pthread_cond_broadcast(&plain.idle);
	pthread_mutex_unlock(&plain.lock);
	free(pc);
	free(a);
	return NULL;
}

/* Accepts one connection on lfd and starts its thread. */
static void accept_one(struct srv_ctx *srv, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return;
		/* EMFILE and the like: let connections finish, do not spin. */
		static bool said;
		if (!__atomic_exchange_n(&said, true, __ATOMIC_RELAXED))
			log_errno(-errno, "accept: new clients wait, retrying every second");
		else
			log_debug("accept: %m, retrying in a second");
		sleep(1);
		return;
	}
	if (!srv_client_enter(srv)) {
		close(fd);
		return;
	}
	srv_socket_setup(fd);

	struct plain_conn *pc = calloc(1, sizeof(*pc));
	struct plain_thread_arg *a = malloc(sizeof(*a));
	pthread_attr_t attr;
	pthread_t tid;
	if (!pc || !a) {
		free(pc);
		free(a);
		close(fd);
		srv_client_leave(srv);
		log_error("accept: out of memory");
		return;
	}
	pc->fd = fd;
	a->srv = srv;
	a->pc = pc;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 << 10);
	pthread_mutex_lock(&plain.lock);
	int r = pthread_create(&tid, &attr, conn_thread, a);
	if (r == 0) {
		pc->next = plain.conns;
		plain.conns = pc;
		plain.nthreads++;
	}
	pthread_mutex_unlock(&plain.lock);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		log_errno(-r, "starting a connection thread");
		close(fd);
		srv_client_leave(srv);
		free(pc);
		free(a);
	}
}

int srv_plain_run(struct srv_ctx *srv)
{
	const struct srv_config *cfg = srv->cfg;
	size_t n = cfg->nlisten + 1;
	_cleanup_free_ struct pollfd *pfd = calloc(n, sizeof(*pfd));

	if (!pfd)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nlisten; i++) {
		/* Non-blocking, so a connection gone between poll and accept
		 * cannot block the loop. */
		int fl = fcntl(cfg->listen_fds[i], F_GETFL);
		if (fl >= 0)
			(void)fcntl(cfg->listen_fds[i], F_SETFL, fl | O_NONBLOCK);
		pfd[i] = (struct pollfd){ .fd = cfg->listen_fds[i], .events = POLLIN };
	}
	pfd[cfg->nlisten] = (struct pollfd){ .fd = cfg->stop_fd, .events = POLLIN };
	pool_start();
	srv_client_limit(srv, 0, 1);

	int ret = 0;
	for (;;) {
		/*
		 * With all the clients the fd limit allows, new ones wait in
		 * the backlog: look at the stop fd only, and again soon.
		 */
		bool full = srv_clients_full(srv);
		for (size_t i = 0; i < cfg->nlisten; i++)
			pfd[i].events = full ? 0 : POLLIN;
		int r = poll(pfd, cfg->stop_fd >= 0 ? n : n - 1, full ? 100 : -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = log_errno(-errno, "poll");
			break;
		}
		if (cfg->stop_fd >= 0 && pfd[cfg->nlisten].revents)
			break;
		for (size_t i = 0; i < cfg->nlisten && !full; i++)
			if (pfd[i].revents)
				accept_one(srv, pfd[i].fd);
	}

	/*
	 * Stop: every thread polls stop_fd too and ends after its current
	 * request.  One stuck in send() to a client that does not read is
	 * woken by a shutdown() after a grace period.
	 */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ret < 0 ? 0 : 5;	/* after an error, no grace */
	pthread_mutex_lock(&plain.lock);
	while (plain.nthreads > 0) {
		if (pthread_cond_timedwait(&plain.idle, &plain.lock, &until) == ETIMEDOUT) {
			for (struct plain_conn *pc = plain.conns; pc; pc = pc->next)
				shutdown(pc->fd, SHUT_RDWR);
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 5;
		}
	}
	pthread_mutex_unlock(&plain.lock);
	pool_stop();
	return ret;
}
