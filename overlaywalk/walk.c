/* SPDX-License-Identifier: MIT */
/*
 * walk.c - walk_tree(): reads a directory tree into the tree model of
 * walk.h, and walk_tree_free().
 *
 * Every entry is reached from its parent's directory fd only: openat()
 * with O_PATH | O_NOFOLLOW, then statx() on that fd.  O_PATH has no side
 * effect on FIFOs and devices and triggers no automount; a symlink is
 * opened as itself and never followed.  What the walk records comes from
 * the fd, so a name swapped between readdir and openat cannot mix two
 * files' metadata.  A directory is then reopened O_RDONLY through "." of
 * its O_PATH fd to list it and read its xattrs.  The only path string
 * handed to the kernel is the root path the caller gives.
 *
 * Mounts: without opts->cross_mounts an entry whose mount id (statx
 * STATX_MNT_ID; st_dev for directories on kernels before 5.8) differs
 * from the root's is another file system.  A directory there is recorded
 * as an empty directory (a mount point, like tar --one-file-system); any
 * other entry there (a bind-mounted file) is left out.
 *
 * Order: each directory is listed in full, sorted bytewise and walked in
 * that order, depth first, so tree->inodes comes out in pre-order and the
 * first dentry of a hard-linked inode is the first in that order.  Hard
 * links are found with a hash table of (dev, ino) over the non-directory
 * inodes with more than one link only.
 *
 * Resources: one open directory fd per level of the directory being
 * walked (so a tree deeper than RLIMIT_NOFILE fails with -EMFILE, naming
 * the path), and memory for the tree only: no fd is kept per file.
 *
 * Splits: arena.c (memory), readxattr.c (xattrs), reopen.c (file handles and
 * walk_open_data()), hardlink.c (the hash table).
 */
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "overlaywalk/internal.h"
#include "server/cleanup.h"

#define STATX_WANT (STATX_BASIC_STATS | STATX_MNT_ID)
#define PROGRESS_NSEC 100000000LL	/* at most 10 progress lines a second */

struct walk_ctx {
	struct walk_tree *tree;
	struct walk_private *priv;
	const struct walk_opts *opts;
	size_t inodes_cap;

	bool have_mnt_id;		/* the kernel fills stx_mnt_id */
	bool reads_anything;		/* CAP_DAC_READ_SEARCH or _OVERRIDE in effect */
	uint64_t root_mnt_id;
	uint64_t root_dev;

	struct walk_links links;	/* hard-link candidates */

	char *path;			/* current entry, relative to the root */
	size_t path_len, path_cap;

	size_t nentries;		/* progress */
	struct timespec last_progress;

	char *errpath;			/* the entry that failed the walk */
	const char *what;
};

/*
 * Whether our effective capabilities let us open any file for reading
 * (CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE), as root normally can: then
 * the per-file access check of the walk can be skipped.  Asks capget(2)
 * directly rather than linking libcap into the library.
 */
static bool can_read_anything(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };

	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[0].effective & ((1U << CAP_DAC_READ_SEARCH) | (1U << CAP_DAC_OVERRIDE));
}

/* A directory's names, sorted. */
struct name_list {
	char *buf;		/* names, each NUL-terminated */
	size_t buf_len, buf_cap;
	struct name_ref {
		union {
			size_t off;	/* while listing */
			const char *name;	/* once sorted */
		};
		size_t len;
	} *refs;
	size_t n, cap;
};

static void name_list_free(struct name_list *l)
{
	free(l->buf);
	free(l->refs);
	memset(l, 0, sizeof(*l));
}

#define _cleanup_names_ _cleanup_(name_list_free)

/* ---- path of the current entry ---- */

static int path_push(struct walk_ctx *ctx, const char *name, size_t len)
{
	size_t need = ctx->path_len + 1 + len + 1;

	if (need > ctx->path_cap) {
		size_t cap = ctx->path_cap ? ctx->path_cap : 256;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(ctx->path, cap);
		if (!p)
			return -ENOMEM;
		ctx->path = p;
		ctx->path_cap = cap;
	}
	if (ctx->path_len)
		ctx->path[ctx->path_len++] = '/';
	memcpy(ctx->path + ctx->path_len, name, len);
	ctx->path_len += len;
	ctx->path[ctx->path_len] = '\0';
	return 0;
}

static void path_pop(struct walk_ctx *ctx, size_t old_len)
{
	ctx->path_len = old_len;
	ctx->path[old_len] = '\0';
}

/* ---- errors and progress ---- */

/*
 * The current entry cannot be had (err < 0, what says which step): with
 * skip_unreadable warn and return 0 so the caller leaves it out, else
 * remember the path and return err.  Running out of memory is never
 * skipped.
 */
static int fail_or_skip(struct walk_ctx *ctx, int err, const char *what)
{
	if (err != -ENOMEM && ctx->opts->skip_unreadable) {
		if (ctx->opts->warn)
			ctx->opts->warn(ctx->opts->userdata, ctx->path, err, what);
		return 0;
	}
	free(ctx->errpath);
	ctx->errpath = strdup(ctx->path);
	ctx->what = what;
	return err;
}

static void progress_tick(struct walk_ctx *ctx)
{
	struct timespec now;
	long long dt;

	ctx->nentries++;
	if (!ctx->opts->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	dt = (now.tv_sec - ctx->last_progress.tv_sec) * 1000000000LL +
	     (now.tv_nsec - ctx->last_progress.tv_nsec);
	if (dt < PROGRESS_NSEC)
		return;
	ctx->last_progress = now;
	fprintf(stderr, "\r%zu entries", ctx->nentries);
}

/* ---- directory listing ---- */

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int name_list_add(struct name_list *l, const char *name, size_t len)
{
	if (l->buf_len + len + 1 > l->buf_cap) {
		size_t cap = l->buf_cap ? 2 * l->buf_cap : 4096;
		char *p;

		while (cap < l->buf_len + len + 1)
			cap *= 2;
		p = realloc(l->buf, cap);
		if (!p)
			return -ENOMEM;
		l->buf = p;
		l->buf_cap = cap;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct name_ref *p = realloc(l->refs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->refs = p;
		l->cap = cap;
	}
	l->refs[l->n].off = l->buf_len;
	l->refs[l->n].len = len;
	l->n++;
	memcpy(l->buf + l->buf_len, name, len + 1);
	l->buf_len += len + 1;
	return 0;
}

/* Bytewise: memcmp on the common prefix, then the shorter name first. */
static int name_ref_cmp(const void *a, const void *b)
{
	const struct name_ref *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->name, y->name, n);

	if (r)
		return r;
	return (x->len > y->len) - (x->len < y->len);
}

/* Reads every name of dirfd but "." and "..", sorted, into *l. */
static int list_dir(int dirfd, struct name_list *l)
{
	_Alignas(8) char buf[32768];

	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, sizeof(buf));

		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			size_t max = offsetof(struct linux_dirent64, d_name);
			size_t len;
			int r;

			if (d->d_reclen <= max || d->d_reclen > n - off)
				return -EIO;	/* a broken record: don't loop */
			max = d->d_reclen - max;
			len = strnlen(d->d_name, max);
			if (len == max)
				return -EIO;	/* not terminated */
			off += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			r = name_list_add(l, d->d_name, len);
			if (r < 0)
				return r;
		}
	}
	for (size_t i = 0; i < l->n; i++)
		l->refs[i].name = l->buf + l->refs[i].off;
	if (l->n > 1)
		qsort(l->refs, l->n, sizeof(*l->refs), name_ref_cmp);
	return 0;
}

/* ---- entries ---- */

static bool type_known(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR:
	case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		return true;
	}
	return false;
}

static void fill_inode(struct walk_inode *ino, const struct statx *stx)
{
	ino->dev = makedev(stx->stx_dev_major, stx->stx_dev_minor);
	ino->ino = stx->stx_ino;
	ino->mode = stx->stx_mode;
	ino->uid = stx->stx_uid;
	ino->gid = stx->stx_gid;
	ino->size = S_ISREG(stx->stx_mode) ? stx->stx_size : 0;
	ino->blocks = stx->stx_blocks;
	ino->mtime_sec = stx->stx_mtime.tv_sec;
	ino->mtime_nsec = stx->stx_mtime.tv_nsec;
	ino->ctime_sec = stx->stx_ctime.tv_sec;
	ino->ctime_nsec = stx->stx_ctime.tv_nsec;
	if (S_ISCHR(stx->stx_mode) || S_ISBLK(stx->stx_mode)) {
		ino->rdev_major = stx->stx_rdev_major;
		ino->rdev_minor = stx->stx_rdev_minor;
	}
	ino->nlink = S_ISDIR(stx->stx_mode) ? 2 : 1;
}

/* Reads the target of the symlink fd (O_PATH) into the arena. */
static int read_symlink(struct walk_private *priv, int fd, uint64_t size_hint,
			struct walk_inode *ino)
{
	size_t cap = size_hint < PATH_MAX ? size_hint + 1 : PATH_MAX;

	for (;;) {
		_cleanup_free_ char *buf = malloc(cap);
		ssize_t n;

		if (!buf)
			return -ENOMEM;
		n = readlinkat(fd, "", buf, cap);
		if (n < 0)
			return -errno;
		if ((size_t)n < cap) {
			ino->symlink = walk_arena_strndup(priv, buf, n);
			if (!ino->symlink)
				return -ENOMEM;
			ino->size = n;
			return 0;
		}
		if (cap >= 1024 * 1024)
			return -ENAMETOOLONG;
		cap *= 2;
	}
}

static int append_inode(struct walk_ctx *ctx, struct walk_inode *ino)
{
	struct walk_tree *tree = ctx->tree;

	if (tree->ninodes == ctx->inodes_cap) {
		size_t cap = ctx->inodes_cap ? 2 * ctx->inodes_cap : 1024;
		struct walk_inode **p = realloc(tree->inodes, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		tree->inodes = p;
		ctx->inodes_cap = cap;
	}
	tree->inodes[tree->ninodes++] = ino;
	return 0;
}

/* Asks opts->check about the current entry; 0 or fail_or_skip()'s answer,
 * with *ret_rejected set when it must be left out. */
static int run_check(struct walk_ctx *ctx, const struct walk_inode *ino,
		     const char *name, size_t len, bool *ret_rejected)
{
	const char *what = NULL;
	int r;

	*ret_rejected = false;
	if (!ctx->opts->check)
		return 0;
	r = ctx->opts->check(ctx->opts->userdata, ino, name, len, &what);
	if (r >= 0)
		return 0;
	*ret_rejected = true;
	return fail_or_skip(ctx, r, what ? what : "checking entry");
}

static int walk_dir(struct walk_ctx *ctx, struct walk_inode *dir, int dirfd,
		    struct name_list *names);

/*
 * Reads entry name of the directory dirfd (whose inode is parent) and,
 * for a directory, everything below it; adds its dentry to parent.
 * Returns 0 also when the entry is left out.
 */
static int walk_entry(struct walk_ctx *ctx, struct walk_inode *parent,
		      int dirfd, const char *name, size_t len)
{
	const struct walk_opts *opts = ctx->opts;
	_cleanup_close_ int opath = -1, fd = -1;
	_cleanup_names_ struct name_list names = { 0 };
	struct walk_inode *ino;
	struct walk_dentry *de;
	struct statx stx;
	bool is_dir, other_mount, rejected;
	int r;

	progress_tick(ctx);
	if (len == 0 || len > 255)
		return fail_or_skip(ctx, -ENAMETOOLONG, "reading directory");

	opath = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (opath < 0)
		return fail_or_skip(ctx, -errno, "opening");
	if (statx(opath, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW |
		  AT_NO_AUTOMOUNT, STATX_WANT, &stx) < 0)
		return fail_or_skip(ctx, -errno, "statx");
	if (!type_known(stx.stx_mode))
		return fail_or_skip(ctx, -EOPNOTSUPP, "unknown file type");
	is_dir = S_ISDIR(stx.stx_mode);

	if (ctx->have_mnt_id && (stx.stx_mask & STATX_MNT_ID))
		other_mount = stx.stx_mnt_id != ctx->root_mnt_id;
	else
		other_mount = is_dir && makedev(stx.stx_dev_major,
				stx.stx_dev_minor) != ctx->root_dev;
	if (other_mount && !opts->cross_mounts && !is_dir)
		return 0;	/* a bind-mounted file: not ours */

	/* Another dentry of an inode already seen. */
	if (!is_dir && stx.stx_nlink > 1) {
		ino = walk_links_find(&ctx->links,
				      makedev(stx.stx_dev_major, stx.stx_dev_minor),
				      stx.stx_ino);
		if (ino) {
			r = run_check(ctx, ino, name, len, &rejected);
			if (r < 0 || rejected)
				return r;
			de = &parent->children[parent->nchildren];
			de->name = walk_arena_strndup(ctx->priv, name, len);
			if (!de->name)
				return -ENOMEM;
			de->name_len = len;
			de->inode = ino;
			parent->nchildren++;
			ino->nlink++;
			return 0;
		}
	}

	ino = walk_arena_alloc(ctx->priv, sizeof(*ino));
	if (!ino)
		return -ENOMEM;
	fill_inode(ino, &stx);
	ino->path = walk_arena_strndup(ctx->priv, ctx->path, ctx->path_len);
	if (!ino->path)
		return -ENOMEM;

	if (S_ISLNK(stx.stx_mode)) {
		r = read_symlink(ctx->priv, opath, stx.stx_size, ino);
		if (r < 0)
			return fail_or_skip(ctx, r, "reading symlink");
	}
	if (is_dir && !(other_mount && !opts->cross_mounts)) {
		/* "." of the O_PATH fd: the very directory we statx'ed. */
		fd = openat(opath, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return fail_or_skip(ctx, -errno, "opening directory");
		r = walk_read_xattrs(ctx->priv, fd, false, ino);
		if (r < 0)
			return fail_or_skip(ctx, r, "reading xattrs");
		r = list_dir(fd, &names);
		if (r < 0)
			return fail_or_skip(ctx, r, "reading directory");
	} else {
		r = walk_read_xattrs(ctx->priv, opath, true, ino);
		if (r < 0)
			return fail_or_skip(ctx, r, "reading xattrs");
	}
	if (S_ISREG(stx.stx_mode)) {
		/*
		 * File data is read only when a client asks for it: make sure
		 * now that we will be able to (with our effective ids and
		 * capabilities), so that an unreadable file is reported or
		 * skipped here, naming it, instead of failing reads later.
		 */
		if (!ctx->reads_anything &&
		    faccessat(dirfd, name, R_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0)
			return fail_or_skip(ctx, -errno, "opening file");
		r = walk_record_handle(ctx->tree, dirfd, opath, ino);
		if (r < 0)
			return fail_or_skip(ctx, r, "encoding file handle");
	}

	r = run_check(ctx, ino, name, len, &rejected);
	if (r < 0 || rejected)
		return r;

	/* Committed: the entry is in the tree. */
	r = append_inode(ctx, ino);
	if (r == 0 && !is_dir && stx.stx_nlink > 1)
		r = walk_links_add(&ctx->links, ino);
	if (r < 0)
		return r;
	de = &parent->children[parent->nchildren++];
	/* The dentry name is the tail of the path: no second copy. */
	de->name = ino->path + ctx->path_len - len;
	de->name_len = len;
	de->inode = ino;
	if (!is_dir)
		return 0;

	ino->parent = parent;
	parent->nlink++;
	if (fd < 0)
		return 0;	/* mount point: recorded, not entered */
	closep(&opath);
	opath = -1;
	return walk_dir(ctx, ino, fd, &names);
}

/* Walks the sorted names of dir (open as dirfd) into dir->children. */
static int walk_dir(struct walk_ctx *ctx, struct walk_inode *dir, int dirfd,
		    struct name_list *names)
{
	if (names->n == 0)
		return 0;
	dir->children = walk_arena_alloc(ctx->priv,
					 names->n * sizeof(*dir->children));
	if (!dir->children)
		return -ENOMEM;
	for (size_t i = 0; i < names->n; i++) {
		size_t old_len = ctx->path_len;
		int r;

		r = path_push(ctx, names->refs[i].name, names->refs[i].len);
		if (r < 0)
			return r;
		r = walk_entry(ctx, dir, dirfd, names->refs[i].name,
			       names->refs[i].len);
		path_pop(ctx, old_len);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- the root ---- */

/* The root cannot be left out: remember it ("") as the culprit. */
static int fail_root(struct walk_ctx *ctx, int err, const char *what)
{
	free(ctx->errpath);
	ctx->errpath = strdup("");
	ctx->what = what;
	return err;
}

static int walk_root(struct walk_ctx *ctx, const char *path)
{
	const struct walk_opts *opts = ctx->opts;
	struct walk_tree *tree = ctx->tree;
	_cleanup_close_ int fd = -1;
	_cleanup_names_ struct name_list names = { 0 };
	struct walk_inode *root;
	struct statx stx;
	int r;

	/* The one path we resolve, and the user chose it: follow symlinks. */
	tree->root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (tree->root_fd < 0)
		return -errno;
	if (statx(tree->root_fd, "", AT_EMPTY_PATH | AT_NO_AUTOMOUNT,
		  STATX_WANT, &stx) < 0)
		return fail_root(ctx, -errno, "statx");
	ctx->have_mnt_id = stx.stx_mask & STATX_MNT_ID;
	ctx->reads_anything = can_read_anything();
	ctx->root_mnt_id = stx.stx_mnt_id;
	ctx->root_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);

	root = walk_arena_alloc(ctx->priv, sizeof(*root));
	if (!root)
		return -ENOMEM;
	fill_inode(root, &stx);
	root->path = walk_arena_strndup(ctx->priv, "", 0);
	if (!root->path)
		return -ENOMEM;
	root->parent = root;

	progress_tick(ctx);
	fd = openat(tree->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return fail_root(ctx, -errno, "opening directory");
	r = walk_read_xattrs(ctx->priv, fd, false, root);
	if (r < 0)
		return fail_root(ctx, r, "reading xattrs");
	r = list_dir(fd, &names);
	if (r < 0)
		return fail_root(ctx, r, "reading directory");
	if (opts->check) {
		const char *what = NULL;

		r = opts->check(opts->userdata, root, "", 0, &what);
		if (r < 0)
			return fail_root(ctx, r, what ? what : "checking entry");
	}
	r = append_inode(ctx, root);
	if (r < 0)
		return r;
	tree->root = root;
	return walk_dir(ctx, root, fd, &names);
}

int walk_tree(const char *path, const struct walk_opts *opts,
	      struct walk_tree **ret_tree, char **ret_errpath,
	      const char **ret_what)
{
	static const struct walk_opts no_opts;
	struct walk_ctx ctx = { .opts = opts ? opts : &no_opts };
	struct walk_tree *tree;
	int r;

	if (!path || !ret_tree)
		return -EINVAL;
	tree = calloc(1, sizeof(*tree));
	if (!tree)
		return -ENOMEM;
	tree->root_fd = -1;
	tree->priv = calloc(1, sizeof(*tree->priv));
	if (!tree->priv) {
		free(tree);
		return -ENOMEM;
	}
	tree->priv->cross_mounts = ctx.opts->cross_mounts;
	ctx.tree = tree;
	ctx.priv = tree->priv;
	if (ctx.opts->progress)
		clock_gettime(CLOCK_MONOTONIC, &ctx.last_progress);

	r = walk_root(&ctx, path);

	if (ctx.opts->progress)
		fprintf(stderr, "\r%zu entries\n", ctx.nentries);
	walk_links_free(&ctx.links);
	free(ctx.path);
	if (r < 0) {
		walk_tree_free(tree);
		if (ret_errpath && ctx.errpath)
			*ret_errpath = TAKE_PTR(ctx.errpath);
		if (ret_what && ctx.what)
			*ret_what = ctx.what;
		free(ctx.errpath);
		return r;
	}
	free(ctx.errpath);
	*ret_tree = tree;
	return 0;
}

void walk_tree_free(struct walk_tree *tree)
{
	if (!tree)
		return;
	if (tree->root_fd >= 0)
		close(tree->root_fd);
	if (tree->priv) {
		for (size_t i = 0; i < tree->priv->nmounts; i++)
			close(tree->priv->mounts[i].fd);
		free(tree->priv->mounts);
		walk_arena_free(tree->priv);
		free(tree->priv);
	}
	free(tree->inodes);
	free(tree);
}
