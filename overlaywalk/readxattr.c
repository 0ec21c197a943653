/* SPDX-License-Identifier: MIT */
/*
 * readxattr.c - reads every extended attribute of an entry, in every
 * namespace (user., trusted., security., system.posix_acl_*, ...).
 *
 * Directories are read through their O_RDONLY fd (flistxattr/fgetxattr).
 * Other entries are never opened (opening a FIFO or a device can have
 * side effects) and are read by name in their directory: listxattrat(2)
 * and getxattrat(2) with AT_SYMLINK_NOFOLLOW (Linux 6.13), else
 * llistxattr/lgetxattr on "/proc/self/fd/DIRFD/NAME", where the magic
 * link is the directory itself and NAME the one component resolved in
 * it, not followed if it is a symlink.  Either way a symlink's own xattrs
 * are read, never its target's.  A name renamed over meanwhile moves the
 * directory's ctime, which the walk checks afterwards (walk.c).
 *
 * Most entries have no xattr at all and most values are short: each call
 * first tries a buffer on the stack, and asks the size only when that
 * was too small.  Lists and values can change size between the sizing
 * call and the reading call; ERANGE means "try again", ENODATA on a
 * listed name means it was removed meanwhile and is skipped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/linux_abi.h"
#include "server/cleanup.h"

#ifndef AT_SYMLINK_NOFOLLOW
#define AT_SYMLINK_NOFOLLOW 0x100
#endif

#define XATTR_RETRIES 16	/* ERANGE retries before giving up */
#define XATTR_STACK 4096	/* bytes tried before asking the size */

/* Where the xattrs are read from. */
struct xattr_src {
	int fd;			/* an O_RDONLY fd, or -1: by name */
	int dirfd;
	const char *name;
	char procpath[300];	/* "/proc/self/fd/DIRFD/NAME" without *xattrat */
};

/* 1: the kernel has the *xattrat calls, 0: it has not, -1: not known yet. */
static int have_xattrat = -1;

void walk_xattrat_disable(bool on)
{
	__atomic_store_n(&have_xattrat, on ? 0 : -1, __ATOMIC_RELAXED);
}

static bool errno_is_unsupported(int err)
{
	return err == ENOTSUP || err == EOPNOTSUPP || err == ENOSYS;
}

/* The proc path for the l*xattr() calls; false if it does not fit. */
static bool proc_path(struct xattr_src *x)
{
	if (x->procpath[0])
		return true;
	return snprintf(x->procpath, sizeof(x->procpath), "/proc/self/fd/%d/%s",
			x->dirfd, x->name) < (int)sizeof(x->procpath);
}

static ssize_t xsrc_list(struct xattr_src *x, char *buf, size_t size)
{
	int known = __atomic_load_n(&have_xattrat, __ATOMIC_RELAXED);
	bool probing = false;
	ssize_t n;

	if (x->fd >= 0)
		return flistxattr(x->fd, buf, size);
	if (known != 0) {
		n = syscall(SYS_listxattrat, x->dirfd, x->name, AT_SYMLINK_NOFOLLOW,
			    buf, size);
		if (n >= 0 && known < 0)
			__atomic_store_n(&have_xattrat, 1, __ATOMIC_RELAXED);
		/*
		 * ENOSYS: an older kernel.  EPERM before it ever worked: a
		 * seccomp filter that does not know the call (systemd's
		 * SystemCallFilter= answers EPERM).  Both: the fallback.
		 */
		if (n >= 0 || !(errno == ENOSYS || (errno == EPERM && known < 0)))
			return n;
		probing = true;
	}
	if (!proc_path(x)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	n = llistxattr(x->procpath, buf, size);
	if (probing && (n >= 0 || errno == ERANGE))
		__atomic_store_n(&have_xattrat, 0, __ATOMIC_RELAXED);
	return n;
}

static ssize_t xsrc_get(struct xattr_src *x, const char *name, void *buf, size_t size)
{
	if (x->fd >= 0)
		return fgetxattr(x->fd, name, buf, size);
	if (__atomic_load_n(&have_xattrat, __ATOMIC_RELAXED) == 1) {
		struct xattr_args_v0 args = {
			.value = (uintptr_t)buf, .size = (uint32_t)size,
		};

		return syscall(SYS_getxattrat, x->dirfd, x->name, AT_SYMLINK_NOFOLLOW,
			       name, &args, sizeof(args));
	}
	if (!proc_path(x)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return lgetxattr(x->procpath, name, buf, size);
}

/*
 * Reads the name list into *ret_buf (stack, when it fits, else malloc'ed
 * into *ret_heap) of *ret_len bytes: a sequence of NUL-terminated names.
 * An empty list gives 0 bytes.
 */
static int read_list(struct xattr_src *x, char *stack, char **ret_heap,
		     const char **ret_buf, size_t *ret_len)
{
	ssize_t m = xsrc_list(x, stack, XATTR_STACK);

	if (m < 0 && errno_is_unsupported(errno))
		m = 0;
	if (m >= 0) {
		*ret_buf = stack;
		goto check;
	}
	if (errno != ERANGE)
		return -errno;
	for (int tries = 0; tries < XATTR_RETRIES; tries++) {
		ssize_t n = xsrc_list(x, NULL, 0);

		if (n < 0)
			return errno_is_unsupported(errno) ? 0 : -errno;
		free(*ret_heap);
		*ret_heap = malloc(n > 0 ? n : 1);
		if (!*ret_heap)
			return -ENOMEM;
		m = xsrc_list(x, *ret_heap, n);
		if (m < 0 && errno == ERANGE)
			continue;	/* grew meanwhile */
		if (m < 0)
			return errno_is_unsupported(errno) ? 0 : -errno;
		*ret_buf = *ret_heap;
		goto check;
	}
	return -ERANGE;		/* keeps changing under us */
check:
	if (m > 0 && (*ret_buf)[m - 1] != '\0')
		return -EIO;	/* the kernel always terminates names */
	*ret_len = m;
	return 0;
}

/*
 * Reads one value into arena a.  Returns 1 with *ret_value and *ret_len,
 * 0 when the attribute vanished (ENODATA), or -errno.
 */
static int read_value(struct walk_arena *a, struct xattr_src *x, const char *name,
		      uint8_t **ret_value, size_t *ret_len)
{
	uint8_t stack[XATTR_STACK];
	_cleanup_free_ uint8_t *heap = NULL;
	const uint8_t *buf = stack;
	ssize_t m = xsrc_get(x, name, stack, sizeof(stack));

	for (int tries = 0; m < 0 && errno == ERANGE; tries++) {
		ssize_t n;

		if (tries == XATTR_RETRIES)
			return -ERANGE;
		n = xsrc_get(x, name, NULL, 0);
		if (n < 0)
			break;
		free(heap);
		heap = malloc(n > 0 ? n : 1);
		if (!heap)
			return -ENOMEM;
		buf = heap;
		m = n > 0 ? xsrc_get(x, name, heap, n) : 0;
	}
	if (m < 0)
		return errno == ENODATA ? 0 : -errno;
	*ret_value = walk_arena_alloc(a, m);
	if (!*ret_value)
		return -ENOMEM;
	memcpy(*ret_value, buf, m);
	*ret_len = m;
	return 1;
}

static int xattr_cmp(const void *a, const void *b)
{
	const struct walk_xattr *xa = a, *xb = b;

	return strcmp(xa->name, xb->name);
}

int walk_read_xattrs(struct walk_arena *a, int fd, int dirfd, const char *name,
		     struct walk_inode *inode)
{
	struct xattr_src x = { .fd = fd, .dirfd = dirfd, .name = name };
	char stack[XATTR_STACK];
	_cleanup_free_ char *heap = NULL;
	const char *list = NULL;
	size_t len = 0, count = 0, n = 0;
	int r;

	r = read_list(&x, stack, &heap, &list, &len);
	if (r < 0)
		return r;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1)
		count++;
	if (count == 0)
		return 0;

	inode->xattrs = walk_arena_alloc(a, count * sizeof(*inode->xattrs));
	if (!inode->xattrs)
		return -ENOMEM;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1) {
		const char *xname = list + off;
		struct walk_xattr *xa = &inode->xattrs[n];

		if (!*xname)
			continue;
		r = read_value(a, &x, xname, &xa->value, &xa->value_len);
		if (r < 0)
			return r;
		if (r == 0)
			continue;	/* removed since it was listed */
		xa->name = walk_arena_strndup(a, xname, strlen(xname));
		if (!xa->name)
			return -ENOMEM;
		n++;
	}
	inode->nxattrs = n;
	if (n > 1)
		qsort(inode->xattrs, n, sizeof(*inode->xattrs), xattr_cmp);
	return 0;
}
