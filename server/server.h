/* SPDX-License-Identifier: MIT */
/*
 * server.h - the NBD server: fixed-newstyle handshake and transmission
 * phase for read-only exports described by region maps.  Protocol facts:
 * ../shared/docs/nbd-protocol.md.  The server knows nothing of EROFS: it
 * serves bytes from region maps (server/region.h).
 */
#ifndef EROFS_NBD_SERVER_H
#define EROFS_NBD_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "server/region.h"

struct srv_export {
	const char *name;		/* "root", "disk", ...: what NBD_OPT_GO names */
	const char *description;	/* for NBD_OPT_LIST and NBD_INFO_DESCRIPTION */
	const struct region_map *map;	/* the bytes; size padded to 4 KiB by the caller */
};

struct srv_config {
	const struct srv_export *exports;
	size_t nexports;
	const char *default_export;	/* the export the name "" selects */
	const int *listen_fds;		/* listening sockets (Unix, TCP, vsock) */
	size_t nlisten;
	/*
	 * The server stops once this fd becomes readable (a signalfd or
	 * eventfd the caller owns; the server never reads it): it stops
	 * accepting, finishes the replies in flight, closes every connection
	 * and returns.  -1 for none.
	 */
	int stop_fd;
	bool use_io_uring;		/* false: the plain (thread-per-connection) loop */
	/*
	 * The operator promises that no source file changes while served
	 * (e.g. a containers-storage image layer): file data may then be
	 * sent zero-copy (splice) from the page cache.  Without it only files
	 * with the immutable or fs-verity attribute are.
	 */
	bool immutable_sources;
	unsigned int handshake_timeout_sec;	/* 10 by default */
};

/*
 * Serves until cfg->stop_fd becomes readable.  Returns 0 after a graceful
 * stop, -ENOSYS/-EPERM when io_uring was asked for but is unavailable (the
 * caller then retries with use_io_uring = false), or another -errno for a
 * fatal error.  Per-client errors are logged and never returned.
 */
int srv_run(const struct srv_config *cfg);

/*
 * Checks whether io_uring with the operations the server needs can be set
 * up here (it fails under some seccomp profiles).  Returns 0 or -errno.
 */
int srv_uring_probe(void);

#endif
