/* SPDX-License-Identifier: MIT */
/*
 * serve.c - srv_run(): sets up the state shared by every connection (the
 * exports and the tree's source fd cache) and runs the io_uring loop
 * (uring.c) or the thread-per-connection loop (plain.c).
 */
#include <dirent.h>
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
 * Raises the soft RLIMIT_NOFILE to the hard limit, as systemd suggests for
 * programs that need many fds (its default hard limit is 524288): every
 * source fd kept open saves an open_by_handle_at() + fstat() + close() per
 * file on the next pass.  Programs started later (--run's command) were
 * started before this.  Failure only costs speed.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_debug("raising the open file limit from %llu: %m, ignoring",
			  (unsigned long long)old);
	else
		log_debug("open file limit raised from %llu to %llu",
			  (unsigned long long)old, (unsigned long long)rl.rlim_cur);
}

/*
 * Source fds the cache may keep: the fd limit less a reserve for clients
 * (a socket and a splice pipe each), listeners, rings and logs: a quarter
 * of the limit, at most 3 per possible client plus 64.  At least
 * SRV_SRC_MAX_OPEN; an fd the cache cannot get is taken back from it
 * (source.c), so the reserve only has to be roughly right.
 */
static unsigned int src_fd_budget(void)
{
	struct rlimit rl;
	uint64_t n = SRV_SRC_MAX_OPEN;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		uint64_t lim = rl.rlim_cur == RLIM_INFINITY ? (1U << 20) : rl.rlim_cur;
		uint64_t reserve = lim / 4;
		if (reserve > 3ULL * SRV_MAX_CLIENTS + 64)
			reserve = 3ULL * SRV_MAX_CLIENTS + 64;
		if (lim - reserve > n)
			n = lim - reserve;
	}
	return n > (1U << 20) ? 1U << 20 : (unsigned int)n;
}

int srv_ctx_init(struct srv_ctx *srv, const struct srv_config *cfg)
{
	const struct region_map **maps;
	uint32_t **ids;
	int r = -ENOMEM;

	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	srv->max_clients = SRV_MAX_CLIENTS;	/* until a loop knows its fds */
	if (cfg->nexports == 0)
		return 0;
	srv->exports = calloc(cfg->nexports, sizeof(*srv->exports));
	maps = calloc(cfg->nexports, sizeof(*maps));
	ids = calloc(cfg->nexports, sizeof(*ids));
	if (!srv->exports || !maps || !ids)
		goto out;
	for (size_t i = 0; i < cfg->nexports; i++)
		maps[i] = cfg->exports[i].map;
	r = src_cache_init(&srv->cache, maps, cfg->nexports, ids, src_fd_budget());
	if (r < 0)
		goto out;
	srv->cache.all_stable = cfg->immutable_sources;
	for (size_t i = 0; i < cfg->nexports; i++) {
		srv->exports[i].exp = &cfg->exports[i];
		srv->exports[i].cache = &srv->cache;
		srv->exports[i].src_ids = ids[i];
	}
	srv->nexports = cfg->nexports;
	log_debug("%u distinct source files, up to %u kept open",
		  srv->cache.nsources, srv->cache.max_open);
out:
	free(maps);
	free(ids);
	if (r < 0) {
		free(srv->exports);
		srv->exports = NULL;
	}
	return r;
}

void srv_ctx_free(struct srv_ctx *srv)
{
	if (srv->exports)
		src_cache_free(&srv->cache);
	for (size_t i = 0; i < srv->nexports; i++)
		free(srv->exports[i].src_ids);
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

/* The fds this process has open, from /proc/self/fd; -1 if unknown. */
static int fds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = -1;		/* the directory's own fd */

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

void srv_client_limit(struct srv_ctx *srv, unsigned int extra_fds, unsigned int accept_slack)
{
	struct rlimit rl = { 0, 0 };
	int open_now = fds_open();
	uint64_t avail, clients = SRV_MAX_CLIENTS, sources;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return;
	/*
	 * What is free once the loops run: the limit less what is open now
	 * and still to come, accepts in flight that may land past the limit,
	 * and a few for splice pipes, a source read once and the like.  Half
	 * of it for clients (at most SRV_MAX_CLIENTS), the rest for the
	 * source cache, which then evicts before the process runs out.
	 */
	uint64_t used = (open_now < 0 ? 64 : (uint64_t)open_now) + extra_fds + accept_slack + 8;
	avail = rl.rlim_cur > used + 2 * SRV_SRC_MIN_FDS ? rl.rlim_cur - used : 2 * SRV_SRC_MIN_FDS;
	if (clients > avail / 2)
		clients = avail / 2;
	sources = avail - clients;
	srv->max_clients = (unsigned int)clients;
	src_cache_limit(&srv->cache, sources > UINT32_MAX ? UINT32_MAX : (unsigned int)sources);
	log_debug("up to %u clients at once and %u source fds kept open (open file"
		  " limit %llu, %d fds open)", srv->max_clients, srv->cache.max_open,
		  (unsigned long long)rl.rlim_cur, open_now);
}

bool srv_clients_full(struct srv_ctx *srv)
{
	return __atomic_load_n(&srv->nclients, __ATOMIC_RELAXED) >= srv->max_clients;
}

void srv_socket_setup(int fd)
{
	static bool warned;
	int one = 1, want = SRV_SNDBUF, got = 0;
	socklen_t len = sizeof(got);

	/* Errors are fine: not every socket is TCP. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	/*
	 * The kernel clamps the request to net.core.wmem_max and doubles it
	 * (socket(7)); getsockopt reports the doubled value.
	 */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) < 0)
		return;
	if (got < want && !__atomic_exchange_n(&warned, true, __ATOMIC_RELAXED))
		log_warning("socket send buffer is %d bytes, not %d: raise "
			    "net.core.wmem_max to %d for faster reads, continuing",
			    got / 2, want, want);
}

int srv_run(const struct srv_config *cfg)
{
	struct srv_ctx srv;
	int r;

	if (cfg->nexports == 0 || cfg->nlisten == 0)
		return -EINVAL;
	raise_nofile();
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
