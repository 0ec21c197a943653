/* SPDX-License-Identifier: MIT */
/*
 * cleanup.h - scope-bound resource release, after systemd's alloc-util.h
 * and fd-util.h.  Shared by every module; depends on libc only.
 *
 *   _cleanup_free_ char *p = malloc(n);     freed when p leaves scope
 *   _cleanup_close_ int fd = open(...);     closed when fd leaves scope
 *   node->fd = TAKE_FD(fd);                 hand ownership on explicitly
 */
#ifndef EROFS_NBD_CLEANUP_H
#define EROFS_NBD_CLEANUP_H

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;	/* close() must not clobber the caller's errno */
		close(*fd);
		errno = saved;
	}
}

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Return the value and reset the variable so its cleanup does nothing. */
#define TAKE_FD(fd) ({ int _fd = (fd); (fd) = -1; _fd; })
#define TAKE_PTR(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
/* Round up to a power-of-two alignment. */
#define ROUND_UP(n, a) (((n) + ((a) - 1)) & ~((__typeof__(n))(a) - 1))

#endif
