/* SPDX-License-Identifier: MIT */
/*
 * reopen.c - finding a regular file again after the walk, for its data.
 *
 * During the walk each directory that holds regular files gets a file
 * handle (name_to_handle_at of the open directory) and the index of a mount
 * fd of its mount; the tree keeps one fd per mount, never one per file or
 * directory.  A file is first reopened by its name in that directory,
 * which open_by_handle_at() finds again wherever it was moved to; a
 * caller that keeps the file's own handle then learns it from that fd
 * (walk_stamp.learn; source.c does) and reopens by it from then on.  The
 * walk so spends no system call on the handle of a file no client reads
 * (the start-up's share of it was 65 of 281 ms on the bench's large
 * tree).  Decoding needs CAP_DAC_READ_SEARCH and a file system that can
 * decode handles (ext4, xfs, btrfs, tmpfs do; overlayfs only with
 * nfs_export=on).  Otherwise it
 * resolves its path (walk_inode_path(), or the one walk_region_source()
 * kept) from the root fd of the inode's layer (the
 * merged path is the path inside the layer that provides the file: no
 * redirects are followed) with openat2() and
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS (and
 * RESOLVE_NO_XDEV unless the walk crossed mounts), so a swapped-in
 * symlink or mount cannot lead it out of the tree.
 *
 * Either way the result is then checked against the walk: a regular file
 * with the same dev, ino, size, mtime and ctime (seconds and nanoseconds;
 * the ctime cannot be set back, unlike the mtime), or the caller gets
 * -EIO (a file opened by its own handle is that inode: its size and
 * times may be left to the caller, walk_stamp.check_after).  Nothing here
 * is modified after the walk except the atomic handles_broken flag and
 * each thread's own directory fd (dir_fd()), so any number of threads may
 * call walk_open_data() at once.  During the walk, the walkers add mounts
 * under mounts_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "overlaywalk/internal.h"
#include "server/cleanup.h"

/* A file_handle with room for the largest handle the kernel encodes. */
struct handle_buf {
	struct file_handle fh;
	unsigned char room[MAX_HANDLE_SZ];
};

/*
 * name_to_handle_at() of name in dirfd ("" with AT_EMPTY_PATH: dirfd
 * itself) into *h, and whether the handle fits a struct walk_reopen.
 */
static bool encode_handle(int dirfd, const char *name, int flags,
			  struct handle_buf *h, int *ret_mnt_id)
{
	h->fh.handle_bytes = MAX_HANDLE_SZ;
	return name_to_handle_at(dirfd, name, &h->fh, ret_mnt_id, flags) == 0 &&
	       h->fh.handle_bytes <= MAX_HANDLE_SZ && h->fh.handle_bytes <= UINT8_MAX &&
	       h->fh.handle_type >= 0 && h->fh.handle_type <= UINT8_MAX;
}

/* Index of mnt_id in priv->mounts, or -1. */
static ssize_t find_mount(const struct walk_private *priv, int mnt_id)
{
	for (size_t i = 0; i < priv->nmounts; i++)
		if (priv->mounts[i].mnt_id == mnt_id)
			return (ssize_t)i;
	return -1;
}

/*
 * Index of mnt_id in priv->mounts, adding it with a dup of dirfd if new;
 * priv->mounts_lock held.  The mount fd must be a real open file, not
 * O_PATH: open_by_handle_at() looks it up with fdget(), which ignores
 * O_PATH fds (EBADF).  dirfd is the directory whose handle is taken,
 * opened O_RDONLY by the walk; it is used only when statx() agrees that it
 * is on that mount.  Returns
 * 0, -EXDEV (no usable fd: the caller reopens its files by path) or
 * -errno.
 */
static int mount_index(struct walk_private *priv, int mnt_id, int dirfd,
		       uint32_t *ret_idx)
{
	ssize_t i = find_mount(priv, mnt_id);
	struct walk_mount *m;
	struct statx stx;

	if (i >= 0) {
		*ret_idx = (uint32_t)i;
		return 0;
	}
	if (priv->nmounts > UINT16_MAX)
		return -EXDEV;	/* struct walk_reopen has 16 bits for it */
	if (priv->nmounts == priv->mounts_cap) {
		size_t cap = priv->mounts_cap ? 2 * priv->mounts_cap : 4;

		m = realloc(priv->mounts, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		priv->mounts = m;
		priv->mounts_cap = cap;
	}
	if (statx(dirfd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & STATX_MNT_ID) || stx.stx_mnt_id != (uint64_t)mnt_id)
		return -EXDEV;
	m = &priv->mounts[priv->nmounts];
	m->fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (m->fd < 0)
		return -errno;
	m->mnt_id = mnt_id;
	*ret_idx = priv->nmounts++;
	return 0;
}

int walk_record_dir_handle(struct walk_private *priv, struct walk_arena *a,
			   struct walk_mount_hint *hint, int dirfd,
			   const struct walk_reopen **ret)
{
	struct handle_buf h;
	struct walk_reopen *ro;
	uint32_t idx = 0;
	int mnt_id, r;

	*ret = NULL;
	if (!encode_handle(dirfd, "", AT_EMPTY_PATH, &h, &mnt_id))
		return 0;	/* no handles here: reopen by path */

	if (hint->valid && hint->mnt_id == mnt_id) {
		idx = hint->idx;	/* mounts[] only grows: still right */
	} else {
		pthread_mutex_lock(&priv->mounts_lock);
		r = mount_index(priv, mnt_id, dirfd, &idx);
		pthread_mutex_unlock(&priv->mounts_lock);
		if (r == -EXDEV)
			return 0;	/* reopen by path */
		if (r < 0)
			return r;
		*hint = (struct walk_mount_hint){ .mnt_id = mnt_id, .idx = idx, .valid = true };
	}
	ro = walk_arena_alloc(a, sizeof(*ro) + h.fh.handle_bytes);
	if (!ro)
		return -ENOMEM;
	ro->mount = (uint16_t)idx;
	ro->handle_type = (uint8_t)h.fh.handle_type;
	ro->handle_bytes = (uint8_t)h.fh.handle_bytes;
	memcpy(ro->f_handle, h.fh.f_handle, h.fh.handle_bytes);
	*ret = ro;
	return 0;
}

/* Opens by handle; -errno when that is not possible. */
static int open_by_handle(const struct walk_private *priv,
			  const struct walk_reopen *ro, int flags)
{
	struct handle_buf h;
	int fd;

	if (__atomic_load_n((int *)&priv->handles_broken, __ATOMIC_RELAXED))
		return -EOPNOTSUPP;
	if (ro->mount >= priv->nmounts || ro->handle_bytes > MAX_HANDLE_SZ)
		return -EINVAL;
	h.fh.handle_bytes = ro->handle_bytes;
	h.fh.handle_type = ro->handle_type;
	memcpy(h.fh.f_handle, ro->f_handle, ro->handle_bytes);
	fd = open_by_handle_at(priv->mounts[ro->mount].fd, &h.fh, flags);
	if (fd >= 0)
		return fd;
	/*
	 * No capability or no decoding: don't try again for every read.
	 * (With O_NOATIME, EPERM may mean only that we don't own the file.)
	 */
	if ((errno == EPERM && !(flags & O_NOATIME)) || errno == EOPNOTSUPP ||
	    errno == ENOSYS)
		__atomic_store_n((int *)&priv->handles_broken, 1, __ATOMIC_RELAXED);
	return -errno;
}

/*
 * Each thread keeps the directory it last opened a file in, by handle, so
 * that a pass over a directory's files decodes its handle once: (tree
 * serial, record) name it, and a serial is never reused, so a freed tree's
 * record cannot be taken for a new one's.  One fd per thread (the server's
 * loops, openers and read pool), closed when the thread exits or moves on.
 */
struct dir_fd_cache {
	uint64_t serial;
	const struct walk_reopen *dir;
	int fd;
};

static __thread struct dir_fd_cache dcache = { .fd = -1 };
static pthread_key_t dcache_key;
static pthread_once_t dcache_once = PTHREAD_ONCE_INIT;

static void dcache_close(void *arg)
{
	struct dir_fd_cache *c = arg;

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->dir = NULL;
}

static void dcache_key_init(void)
{
	(void)pthread_key_create(&dcache_key, dcache_close);
}

/* An O_PATH fd of dir, borrowed from this thread's cache; -errno. */
static int dir_fd(const struct walk_private *priv, const struct walk_reopen *dir)
{
	int fd;

	if (dcache.fd >= 0 && dcache.dir == dir && dcache.serial == priv->serial)
		return dcache.fd;
	fd = open_by_handle(priv, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return fd;
	if (dcache.fd < 0) {
		/* First use in this thread: close it when the thread ends. */
		(void)pthread_once(&dcache_once, dcache_key_init);
		(void)pthread_setspecific(dcache_key, &dcache);
	} else {
		close(dcache.fd);
	}
	dcache = (struct dir_fd_cache){ .serial = priv->serial, .dir = dir, .fd = fd };
	return fd;
}

/*
 * Opens st->name in its directory dfd; the caller checks the result.
 * O_NONBLOCK: a FIFO swapped in under that name cannot block us.
 */
static int open_in_dir(int dfd, const struct walk_stamp *st, int flags)
{
	int fd = openat(dfd, st->name, flags | O_NONBLOCK);

	return fd < 0 ? -errno : fd;
}

/*
 * Fills learn (zeroed by the caller) with fd's own handle, when it can be
 * decoded against one of the tree's mount fds (mounts[] no longer changes
 * after the walk).
 */
static void learn_handle(const struct walk_private *priv, int fd, struct walk_reopen *learn)
{
	struct handle_buf h;
	ssize_t i;
	int mnt_id;

	if (!encode_handle(fd, "", AT_EMPTY_PATH, &h, &mnt_id) ||
	    (i = find_mount(priv, mnt_id)) < 0)
		return;
	learn->mount = (uint16_t)i;
	learn->handle_type = (uint8_t)h.fh.handle_type;
	memcpy(learn->f_handle, h.fh.f_handle, h.fh.handle_bytes);
	learn->handle_bytes = (uint8_t)h.fh.handle_bytes;
}

/*
 * For kernels without openat2 (before 5.6) or paths longer than PATH_MAX:
 * one component at a time from the root fd, never following a symlink.
 * Our paths hold names read from directories, so no "." or "..".
 */
static int open_by_components(int root_fd, const char *path, int flags)
{
	_cleanup_close_ int dfd = -1;
	int cur = root_fd;

	for (;;) {
		const char *slash = strchr(path, '/');
		char name[256];
		size_t len = slash ? (size_t)(slash - path) : strlen(path);
		int fd;

		if (len == 0 || len >= sizeof(name))
			return -EINVAL;
		memcpy(name, path, len);
		name[len] = '\0';
		if (!slash) {
			fd = openat(cur, name, flags);
			return fd < 0 ? -errno : fd;
		}
		fd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		closep(&dfd);
		dfd = fd;
		cur = dfd;
		path = slash + 1;
	}
}

static int open_by_path(const struct walk_private *priv,
			const struct walk_stamp *st, int flags)
{
	struct open_how how = {
		.flags = flags,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
			   RESOLVE_NO_MAGICLINKS,
	};
	_cleanup_free_ char *joined = NULL;
	const char *path = st->path;
	int root_fd, fd;

	if (!path && st->name && st->dir_path && *st->dir_path) {
		if (asprintf(&joined, "%s/%s", st->dir_path, st->name) < 0)
			return -ENOMEM;
		path = joined;
	} else if (!path) {
		path = st->name;
	}
	if (st->layer >= priv->nlayers || !path || !*path)
		return -EINVAL;
	root_fd = priv->layers[st->layer].root_fd;
	if (!priv->cross_mounts)
		how.resolve |= RESOLVE_NO_XDEV;
	fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
	if (fd >= 0)
		return fd;
	if (errno == ENOSYS || errno == ENAMETOOLONG)
		return open_by_components(root_fd, path, flags);
	return -errno;
}

/* The file is the one the walk saw, unchanged. */
static bool same_file(int fd, const struct walk_stamp *st)
{
	const unsigned int mask = STATX_TYPE | STATX_INO | STATX_SIZE |
				  STATX_MTIME | STATX_CTIME;
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, mask, &stx) < 0 ||
	    (stx.stx_mask & mask) != mask)
		return false;
	return S_ISREG(stx.stx_mode) &&
	       makedev(stx.stx_dev_major, stx.stx_dev_minor) == st->dev &&
	       stx.stx_ino == st->ino && stx.stx_size == st->size &&
	       stx.stx_mtime.tv_sec == st->mtime_sec &&
	       stx.stx_mtime.tv_nsec == st->mtime_nsec &&
	       stx.stx_ctime.tv_sec == st->ctime_sec &&
	       stx.stx_ctime.tv_nsec == st->ctime_nsec;
}

/* Takes O_NONBLOCK off fd again (io_uring would fail its reads with EAGAIN). */
static int clear_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* A name or path that no longer leads to a file the way it did. */
static bool gone(int err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -ELOOP || err == -EXDEV ||
	       err == -ENXIO || err == -ESTALE;
}

/*
 * The effective uid, as walk_creds_changed() or the first open read it:
 * (uid_t)-1, never a real id, until then.
 */
static uid_t cached_euid = (uid_t)-1;

void walk_creds_changed(void)
{
	__atomic_store_n(&cached_euid, geteuid(), __ATOMIC_RELAXED);
}

/*
 * O_NOATIME spares an atime update per read; the kernel allows it only to
 * the file's owner (or CAP_FOWNER), so it is asked for only then.  The
 * effective uid is read once, not per open (a system call for each of the
 * server's 56,000 reopens a pass over usr-share); a stale one costs an
 * EPERM and a retry without the flag, or the flag.
 */
static int noatime_flag(uint32_t owner)
{
	uid_t euid = __atomic_load_n(&cached_euid, __ATOMIC_RELAXED);

	if (euid == (uid_t)-1) {
		euid = geteuid();
		__atomic_store_n(&cached_euid, euid, __ATOMIC_RELAXED);
	}
	return owner == (uint32_t)euid ? O_NOATIME : 0;
}

int walk_open_stamp(const struct walk_private *priv, const struct walk_stamp *st)
{
	const int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
	const int noatime = noatime_flag(st->uid);
	_cleanup_close_ int fd = -1;
	int dfd, r;

	if (st->learn)
		st->learn->handle_bytes = 0;
	if (st->fh) {
		/*
		 * A handle names this very inode: it cannot be a FIFO, nor
		 * another file.  Whether it changed, the caller's check after
		 * its reads tells when it asked to (the server: a statx less
		 * per reopen, 54,500 a pass over usr-share).
		 */
		fd = open_by_handle(priv, st->fh, flags | noatime);
		if (fd == -EPERM && noatime)
			fd = open_by_handle(priv, st->fh, flags);
		if (fd >= 0)
			return st->check_after || same_file(fd, st) ? TAKE_FD(fd) : -EIO;
	}
	/*
	 * Through the directory's handle.  If it cannot be decoded (no
	 * capability, a file system that encodes but cannot decode, the
	 * directory gone: ESTALE), the path below decides.
	 */
	dfd = !st->fh && st->dir && st->name ? dir_fd(priv, st->dir) : -ENOENT;
	if (dfd >= 0) {
		fd = open_in_dir(dfd, st, flags | noatime);
		if (fd == -EPERM && noatime)
			fd = open_in_dir(dfd, st, flags);
		if (fd >= 0) {
			if (!same_file(fd, st))
				return -EIO;
			r = clear_nonblock(fd);
			if (r < 0)
				return r;
			if (st->learn)
				learn_handle(priv, fd, st->learn);
			return TAKE_FD(fd);
		}
		if (gone(fd))
			return -EIO;	/* renamed or removed: not the walk's file */
	}
	fd = open_by_path(priv, st, flags | noatime | O_NONBLOCK);
	if (fd == -EPERM && noatime)
		fd = open_by_path(priv, st, flags | O_NONBLOCK);
	if (fd < 0)
		return gone(fd) ? -EIO : fd;
	if (!same_file(fd, st))
		return -EIO;
	r = clear_nonblock(fd);
	if (r < 0)
		return r;
	if (st->learn && !__atomic_load_n((int *)&priv->handles_broken, __ATOMIC_RELAXED))
		learn_handle(priv, fd, st->learn);
	return TAKE_FD(fd);
}

size_t walk_path_len(const struct walk_inode *inode, size_t *ret_depth)
{
	const struct walk_inode *i;
	size_t len = 0, depth = 0;

	/* The root is its own parent; a malformed chain stops at 4096 levels. */
	for (i = inode; i->parent && i->parent != i && depth < 4096; i = i->parent, depth++)
		len += strlen(i->name ? i->name : "") + 1;
	*ret_depth = depth;
	return len ? len - 1 : 0;
}

void walk_path_fill(const struct walk_inode *inode, size_t len, size_t depth, char *p)
{
	char *end = p + len;

	*end = '\0';
	for (const struct walk_inode *i = inode; depth-- > 0; i = i->parent) {
		const char *name = i->name ? i->name : "";
		size_t n = strlen(name);

		end -= n;
		memcpy(end, name, n);
		if (end > p)
			*--end = '/';
	}
}

char *walk_inode_path(const struct walk_inode *inode)
{
	size_t depth, len;
	char *p;

	if (!inode)
		return NULL;
	len = walk_path_len(inode, &depth);
	p = malloc(len + 1);
	if (p)
		walk_path_fill(inode, len, depth, p);
	return p;
}
