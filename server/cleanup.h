/* SPDX-License-Identifier: MIT */
/*
 * cleanup.h - scope-bound resource release, after systemd's alloc-util.h
 * and fd-util.h.  Shared by every module; depends on libc only.
 *
 *   _cleanup_free_ char *p = malloc(n);     freed when p leaves scope
 *   _cleanup_close_ int fd = open(...);     closed when fd leaves scope
 *   node->fd = TAKE_FD(fd);                 hand ownership on explicitly
 *   r = write_all(fd, buf, len);            every byte, or -errno
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

/*
 * Writes all len bytes of buf to fd, retrying after EINTR and short
 * writes.  Returns 0, or -errno (-EIO if write(2) returned 0).
 */
static inline int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
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
