/* SPDX-License-Identifier: MIT */
/*
 * readxattr.c - reads every extended attribute of an entry, in every
 * namespace (user., trusted., security., system.posix_acl_*, ...).
 *
 * Directories are read through their O_RDONLY fd (flistxattr/fgetxattr).
 * Other entries are only ever opened O_PATH, so that opening a FIFO or a
 * device has no side effect, and f*xattr() refuses O_PATH fds (EBADF).
 * For those the calls go through "/proc/self/fd/N" with the *following*
 * variants (listxattr/getxattr): the magic link jumps to exactly the inode
 * the fd holds - for a symlink, the symlink itself, not its target - and
 * no name is resolved that someone else could swap.  (The l* variants
 * would look at the /proc link itself.)
 *
 * Lists and values can change size between the sizing call and the
 * reading call; ERANGE means "try again", ENODATA on a listed name means
 * it was removed meanwhile and is skipped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "overlaywalk/internal.h"
#include "server/cleanup.h"

#define XATTR_RETRIES 16	/* ERANGE retries before giving up */

struct xattr_fd {
	int fd;
	bool is_opath;
	char procpath[40];	/* "/proc/self/fd/N" when is_opath */
};

static ssize_t xfd_list(const struct xattr_fd *x, char *buf, size_t size)
{
	if (x->is_opath)
		return listxattr(x->procpath, buf, size);
	return flistxattr(x->fd, buf, size);
}

static ssize_t xfd_get(const struct xattr_fd *x, const char *name, void *buf,
		       size_t size)
{
	if (x->is_opath)
		return getxattr(x->procpath, name, buf, size);
	return fgetxattr(x->fd, name, buf, size);
}

static bool errno_is_unsupported(int err)
{
	return err == ENOTSUP || err == EOPNOTSUPP || err == ENOSYS;
}

/*
 * Reads the name list into a malloc'ed *ret_buf of *ret_len bytes (a
 * sequence of NUL-terminated names).  An empty list gives NULL, 0.
 */
static int read_list(const struct xattr_fd *x, char **ret_buf, size_t *ret_len)
{
	for (int tries = 0; tries < XATTR_RETRIES; tries++) {
		_cleanup_free_ char *buf = NULL;
		ssize_t n, m;

		n = xfd_list(x, NULL, 0);
		if (n < 0)
			return errno_is_unsupported(errno) ? 0 : -errno;
		if (n == 0) {
			*ret_buf = NULL;
			*ret_len = 0;
			return 0;
		}
		buf = malloc(n);
		if (!buf)
			return -ENOMEM;
		m = xfd_list(x, buf, n);
		if (m < 0 && errno == ERANGE)
			continue;	/* grew meanwhile */
		if (m < 0)
			return errno_is_unsupported(errno) ? 0 : -errno;
		if (m > 0 && buf[m - 1] != '\0')
			return -EIO;	/* the kernel always terminates names */
		*ret_buf = TAKE_PTR(buf);
		*ret_len = m;
		return 0;
	}
	return -ERANGE;		/* keeps changing under us */
}

/*
 * Reads one value into the arena.  Returns 1 with *ret_value and *ret_len,
 * 0 when the attribute vanished (ENODATA), or -errno.
 */
static int read_value(struct walk_private *priv, const struct xattr_fd *x,
		      const char *name, uint8_t **ret_value, size_t *ret_len)
{
	for (int tries = 0; tries < XATTR_RETRIES; tries++) {
		_cleanup_free_ uint8_t *buf = NULL;
		ssize_t n, m;

		n = xfd_get(x, name, NULL, 0);
		if (n < 0)
			return errno == ENODATA ? 0 : -errno;
		buf = malloc(n > 0 ? n : 1);
		if (!buf)
			return -ENOMEM;
		m = n > 0 ? xfd_get(x, name, buf, n) : 0;
		if (m < 0 && errno == ERANGE)
			continue;
		if (m < 0)
			return errno == ENODATA ? 0 : -errno;
		*ret_value = walk_arena_alloc(priv, m);
		if (!*ret_value)
			return -ENOMEM;
		memcpy(*ret_value, buf, m);
		*ret_len = m;
		return 1;
	}
	return -ERANGE;
}

static int xattr_cmp(const void *a, const void *b)
{
	const struct walk_xattr *xa = a, *xb = b;

	return strcmp(xa->name, xb->name);
}

int walk_read_xattrs(struct walk_private *priv, int fd, bool is_opath,
		     struct walk_inode *inode)
{
	struct xattr_fd x = { .fd = fd, .is_opath = is_opath };
	_cleanup_free_ char *list = NULL;
	size_t len, count = 0, n = 0;
	int r;

	if (is_opath)
		snprintf(x.procpath, sizeof(x.procpath), "/proc/self/fd/%d", fd);

	r = read_list(&x, &list, &len);
	if (r < 0)
		return r;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1)
		count++;
	if (count == 0)
		return 0;

	inode->xattrs = walk_arena_alloc(priv, count * sizeof(*inode->xattrs));
	if (!inode->xattrs)
		return -ENOMEM;
	for (size_t off = 0; off < len; off += strlen(list + off) + 1) {
		const char *name = list + off;
		struct walk_xattr *xa = &inode->xattrs[n];

		if (!*name)
			continue;
		r = read_value(priv, &x, name, &xa->value, &xa->value_len);
		if (r < 0)
			return r;
		if (r == 0)
			continue;	/* removed since it was listed */
		xa->name = walk_arena_strndup(priv, name, strlen(name));
		if (!xa->name)
			return -ENOMEM;
		n++;
	}
	inode->nxattrs = n;
	qsort(inode->xattrs, n, sizeof(*inode->xattrs), xattr_cmp);
	return 0;
}
