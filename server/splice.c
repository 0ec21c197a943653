/* SPDX-License-Identifier: MIT */
/*
 * splice.c - zero-copy READ replies: a per-connection pipe as the send
 * queue.  The reply's headers, metadata and padding are written into the
 * pipe; its file data is spliced from the page cache into the pipe (page
 * references, no copy); the pipe is spliced into the socket, which on
 * Linux 6.5+ (MSG_SPLICE_PAGES) hands the same pages to an AF_UNIX or TCP
 * peer, so the only copy left is the client's recv().  All calls are
 * synchronous and non-blocking, made from the loop that owns the
 * connection (io_uring's SPLICE op would run each one in an io-wq
 * thread).  See ../shared/docs/fast-path.md sections 1 and 3.4.
 *
 * Soundness: a spliced page is the live page-cache page, read by the
 * client after we are done with it.  A change to the file while the bytes
 * are queued would reach the client, and no check of ours can come after
 * that.  So only sources that cannot change while in flight are spliced:
 * those the operator promised immutable (--immutable-sources) and files
 * with the immutable or fs-verity attribute.  Everything else, and data not
 * in the page cache (file->pipe splice would block the loop on I/O), goes
 * the copy path, with its check after the read.  Before a reply is
 * spliced, every source in it is checked against the walk (size, mtime,
 * ctime), so a change made before the read still gives EIO.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server/internal.h"
#include "server/log.h"

#ifndef SYS_cachestat
#define SYS_cachestat 451	/* the same number on every architecture */
#endif

#define ZC_PIPE_SIZE	(1U << 20)	/* bytes: pipe-max-size for unprivileged users */

int zc_pipe_open(struct zc_pipe *zp)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	/*
	 * A bigger pipe means fewer fill/drain rounds per reply.  Refused
	 * past pipe-user-pages-soft (many connections): the default 64 KiB
	 * works too, in more rounds.
	 */
	(void)fcntl(fds[1], F_SETPIPE_SZ, ZC_PIPE_SIZE);
	zp->rd = fds[0];
	zp->wr = fds[1];
	zp->queued = 0;
	return 0;
}

void zc_pipe_close(struct zc_pipe *zp)
{
	if (zp->rd >= 0)
		close(zp->rd);
	if (zp->wr >= 0)
		close(zp->wr);
	zp->rd = zp->wr = -1;
	zp->queued = 0;
}

/* True when every page of [off, off + len) of fd is in the page cache. */
static bool range_cached(int fd, uint64_t off, uint64_t len)
{
	static int have_cachestat = 1;
	char c;
	struct iovec iov = { &c, 1 };

	if (__atomic_load_n(&have_cachestat, __ATOMIC_RELAXED)) {
		/* cachestat(2), Linux 6.5: counts cached pages of a range. */
		struct { uint64_t off, len; } range = { off, len };
		struct { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted,
			 nr_recently_evicted; } cs;
		static uint64_t page;

		if (!page)
			page = (uint64_t)sysconf(_SC_PAGESIZE);
		if (syscall(SYS_cachestat, fd, &range, &cs, 0) == 0)
			return cs.nr_cache >= (off + len - 1) / page - off / page + 1;
		if (errno != ENOSYS)
			return false;
		__atomic_store_n(&have_cachestat, 0, __ATOMIC_RELAXED);
	}
	/* Older kernels: probe the first and the last byte without blocking. */
	return preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT) == 1 &&
	       preadv2(fd, &iov, 1, (off_t)(off + len - 1), RWF_NOWAIT) == 1;
}

int zc_prepare(struct src_cache *sc, struct srv_reply *rp)
{
	size_t i;
	int r = 1;

	for (i = 0; i < rp->nsegs; i++) {
		struct srv_read_seg *s = &rp->segs[i];
		int fd = src_cache_get(sc, s->source, s->len);
		if (src_cache_busy(fd)) {
			r = 0;		/* no fd now: the copy path waits for one */
			break;
		}
		if (fd < 0) {
			rp->err = fd;
			r = -1;
			break;
		}
		s->fd = fd;
		if (!src_cache_zc(sc, s->source)) {
			r = 0;
			i++;
			break;
		}
		int e = src_cache_check(sc, s->source, fd);
		if (e < 0) {
			rp->err = e;
			r = -1;
			i++;
			break;
		}
		if (!range_cached(fd, s->file_off, s->len)) {
			r = 0;
			i++;
			break;
		}
	}
	if (r <= 0) {
		/* Not this time: unpin what was pinned. */
		for (size_t j = 0; j < i && j < rp->nsegs; j++) {
			struct srv_read_seg *s = &rp->segs[j];
			if (s->fd >= 0)
				src_cache_put(sc, s->source, s->fd);
			s->fd = -1;
		}
		return r;
	}
	rp->zc = true;
	rp->next_seg = 0;
	return 1;
}

void zc_release(struct srv_reply *rp)
{
	if (!rp->zc)
		return;
	for (size_t j = 0; j < rp->nsegs; j++) {
		struct srv_read_seg *s = &rp->segs[j];
		if (s->fd >= 0)
			src_cache_put(rp->ex->cache, s->source, s->fd);
		s->fd = -1;
	}
	rp->zc = false;
}

int zc_fill(struct zc_pipe *zp, struct srv_reply *rp)
{
	while (rp->sent < rp->len) {
		/* The next piece: buffer bytes up to the next segment, or it. */
		while (rp->next_seg < rp->nsegs &&
		       rp->segs[rp->next_seg].buf_off + rp->segs[rp->next_seg].len <= rp->sent)
			rp->next_seg++;
		const struct srv_read_seg *s =
			rp->next_seg < rp->nsegs ? &rp->segs[rp->next_seg] : NULL;
		ssize_t n;

		if (s && rp->sent >= s->buf_off) {
			loff_t off = (loff_t)(s->file_off + (rp->sent - s->buf_off));
			size_t want = s->buf_off + s->len - rp->sent;
			n = splice(s->fd, &off, zp->wr, NULL, want,
				   SPLICE_F_NONBLOCK);
			if (n == 0)
				return -EIO;	/* the file shrank: a broken promise */
		} else {
			size_t end = s ? s->buf_off : rp->len;
			n = write(zp->wr, rp->buf + rp->sent, end - rp->sent);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;	/* the pipe is full */
			return -errno;
		}
		rp->sent += (size_t)n;
		zp->queued += (size_t)n;
	}
	return 1;
}

int zc_drain(struct zc_pipe *zp, int sock)
{
	while (zp->queued > 0) {
		ssize_t n = splice(zp->rd, NULL, sock, NULL, zp->queued,
				   SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;	/* -EAGAIN: the socket is full */
		}
		if (n == 0)
			return -EPIPE;
		zp->queued -= (size_t)n;
	}
	return 0;
}

int zc_drain_blocking(struct zc_pipe *zp, int sock)
{
	while (zp->queued > 0) {
		/* The pipe end is non-blocking, the socket is not. */
		ssize_t n = splice(zp->rd, NULL, sock, NULL, zp->queued, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		zp->queued -= (size_t)n;
	}
	return 0;
}
