/* SPDX-License-Identifier: MIT */
/*
 * plain.c - the fallback event loop, for hosts where io_uring is refused
 * (seccomp): an accept loop polling the listening sockets and stop_fd, and
 * one thread per connection doing blocking recv / pread / send.  Requests
 * of one connection are served one after the other; the protocol code is
 * the same as the io_uring loop's (srv_conn_step and reply.c).
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
	int err;		/* first send error: stop serving */
	bool close_after;	/* ABORT was acked */
	struct plain_conn *next;	/* the accept loop's list */
};

/* The threads' bookkeeping, for a clean stop. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct plain_conn *conns;
	unsigned int nthreads;
} plain = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0 };

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

static void plain_send(struct srv_conn *c, struct srv_reply *rp)
{
	struct plain_conn *pc = (struct plain_conn *)c;

	if (pc->err == 0) {
		int r = send_all(pc->fd, rp->buf, rp->len);
		if (r < 0) {
			pc->err = r;
			log_debug("client %lu: send: %s", c->id, strerror(-r));
		}
	}
	if (rp->close_after)
		pc->close_after = true;
	srv_reply_free(rp);
}

/* Reads one segment into its reply buffer; 0 or -errno (-EIO if short). */
static int read_seg(struct srv_export_ctx *ex, struct srv_read_seg *s)
{
	int fd = src_cache_get(&ex->cache, s->source);
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
			src_cache_failed(&ex->cache, s->source, fd, r);
			break;
		}
		s->done += (size_t)n;
	}
	if (r == 0)
		r = src_cache_check(&ex->cache, s->source, fd);
	src_cache_put(&ex->cache, s->source, fd);
	return r;
}

static void plain_read(struct srv_conn *c, struct srv_reply *rp)
{
	for (size_t i = 0; i < rp->nsegs && rp->err == 0; i++)
		rp->err = read_seg(rp->ex, &rp->segs[i]);
	srv_read_finish(rp);
	plain_send(c, rp);
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

/* Serves pc until EOF, error, DISC/ABORT, the deadline or a stop. */
static void serve(struct srv_ctx *srv, struct plain_conn *pc)
{
	_cleanup_free_ uint8_t *in = malloc(SRV_INBUF_SIZE);
	struct srv_conn *c = &pc->c;
	size_t in_len = 0;
	const int64_t deadline = now_ms() +
		(int64_t)(srv->cfg->handshake_timeout_sec ? srv->cfg->handshake_timeout_sec : 10) * 1000;

	if (!in || srv_conn_start(c, srv, &plain_ops) < 0) {
		log_error("client: out of memory");
		return;
	}
	log_info("client %lu: connected", c->id);
	for (;;) {
		/* Handle every whole message received so far. */
		size_t used = 0;
		for (;;) {
			ssize_t n = srv_conn_step(c, in + used, in_len - used);
			if (n < 0)
				goto out;
			if (n == 0)
				break;
			used += (size_t)n;
		}
		memmove(in, in + used, in_len - used);
		in_len -= used;
		if (pc->err || c->phase == SRV_PH_CLOSE || c->shutting_down)
			goto out;

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
				goto out;
			}
			timeout = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		int r = poll(pfd, srv->cfg->stop_fd >= 0 ? 2 : 1, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			log_errno(-errno, "client %lu: poll", c->id);
			goto out;
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
			goto out;
		}
		in_len += (size_t)n;
	}
out:
	log_info("client %lu: disconnected", c->id);
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

void srv_plain_serve_fd(struct srv_ctx *srv, int fd)
{
	struct plain_conn pc = { .fd = fd };
	serve(srv, &pc);
}

/* Accepts one connection on lfd and starts its thread. */
static void accept_one(struct srv_ctx *srv, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_errno(-errno, "accept");
		if (errno == EMFILE || errno == ENFILE)
			usleep(100 * 1000);	/* let connections finish */
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

	for (;;) {
		int r = poll(pfd, cfg->stop_fd >= 0 ? n : n - 1, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return log_errno(-errno, "poll");
		}
		if (cfg->stop_fd >= 0 && pfd[cfg->nlisten].revents)
			break;
		for (size_t i = 0; i < cfg->nlisten; i++)
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
	until.tv_sec += 5;
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
	return 0;
}
