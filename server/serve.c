/* SPDX-License-Identifier: MIT */
/*
 * serve.c - srv_run(): sets up the per-export state (source fd caches)
 * shared by every connection and runs the io_uring loop (uring.c) or the
 * thread-per-connection loop (plain.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "server/internal.h"
#include "server/log.h"

/*
 * Source fds each export may keep open: half the fd limit, shared by the
 * exports (the other half is for clients), at least SRV_SRC_MAX_OPEN.
 */
static unsigned int src_fd_budget(size_t nexports)
{
	struct rlimit rl;
	uint64_t n = SRV_SRC_MAX_OPEN;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / 2 / nexports > n)
		n = rl.rlim_cur / 2 / nexports;
	return n > (1U << 20) ? 1U << 20 : (unsigned int)n;
}

int srv_ctx_init(struct srv_ctx *srv, const struct srv_config *cfg)
{
	unsigned int max_open;

	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	if (cfg->nexports == 0)
		return 0;
	srv->exports = calloc(cfg->nexports, sizeof(*srv->exports));
	if (!srv->exports)
		return -ENOMEM;
	max_open = src_fd_budget(cfg->nexports);
	for (size_t i = 0; i < cfg->nexports; i++) {
		srv->exports[i].exp = &cfg->exports[i];
		int r = src_cache_init(&srv->exports[i].cache, cfg->exports[i].map,
				       max_open);
		if (r < 0) {
			srv->nexports = i;
			srv_ctx_free(srv);
			return r;
		}
	}
	srv->nexports = cfg->nexports;
	return 0;
}

void srv_ctx_free(struct srv_ctx *srv)
{
	for (size_t i = 0; i < srv->nexports; i++)
		src_cache_free(&srv->exports[i].cache);
	free(srv->exports);
	srv->exports = NULL;
	srv->nexports = 0;
}

bool srv_client_enter(struct srv_ctx *srv)
{
	unsigned int n = __atomic_add_fetch(&srv->nclients, 1, __ATOMIC_RELAXED);
	if (n <= SRV_MAX_CLIENTS)
		return true;
	__atomic_sub_fetch(&srv->nclients, 1, __ATOMIC_RELAXED);
	log_warning("%u clients connected already, refusing another", SRV_MAX_CLIENTS);
	return false;
}

void srv_client_leave(struct srv_ctx *srv)
{
	__atomic_sub_fetch(&srv->nclients, 1, __ATOMIC_RELAXED);
}

void srv_socket_setup(int fd)
{
	int one = 1;

	/* Errors are fine: not every socket is TCP. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int srv_run(const struct srv_config *cfg)
{
	struct srv_ctx srv;
	int r;

	if (cfg->nexports == 0 || cfg->nlisten == 0)
		return -EINVAL;
	r = srv_ctx_init(&srv, cfg);
	if (r < 0)
		return log_errno(r, "setting up the server");
	if (cfg->use_io_uring)
		r = srv_uring_run(&srv);
	else
		r = srv_plain_run(&srv);
	srv_ctx_free(&srv);
	return r;
}
