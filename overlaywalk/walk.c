/* SPDX-License-Identifier: MIT */
/*
 * walk.c - walk_tree() and walk_layers(): reads a directory tree, or a
 * stack of overlay layer directories merged on the fly, into the tree
 * model of walk.h; walk_tree_release_model() and walk_tree_free().
 *
 * Entries.  Every entry is reached by its name in its parent's directory
 * fd, one component, never following a symlink: statx() with
 * AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT; for a non-directory its xattrs
 * by name (readxattr.c), a symlink's target with readlinkat(), a regular
 * file's handle with name_to_handle_at() (no AT_SYMLINK_FOLLOW).  No
 * non-directory is ever opened: opening a FIFO or a device can have side
 * effects, and the open and close of an O_PATH fd per file cost more
 * than all the rest.  A name renamed over between those calls would mix
 * two files' metadata, so once a directory's entries are read its ctime
 * is compared with the one it had when it was opened, before it was
 * listed (verify_dir()): every rename, link or unlink in it moves it.
 * If it moved, each non-directory is statx'ed again and read again if
 * its name shows another or a changed inode.  A directory is opened
 * O_RDONLY | O_DIRECTORY | O_NOFOLLOW (an automount point through "." of
 * an O_PATH fd, so nothing gets mounted) and what is recorded of it
 * (statx, xattrs, the listing) comes from that fd.  The only path
 * strings handed to the kernel are the root paths the caller gives and
 * single names: three system calls per file where opening each cost six.
 *
 * Layers (walk_layers): a directory of the merged tree is a stack of
 * directories, one per layer that contributes to it, top first (the
 * kernel's ovl_entry lower stack).  All of them are listed, and the names
 * sorted together with their layer; each name is then decided as the
 * kernel's ovl_lookup() decides it (overlay-layers.md §1.2): the top-most
 * layer that has the name provides it, unless it is a whiteout (then the
 * name does not exist); a directory gathers the same-named directories of
 * the layers below until a non-directory, a whiteout or an opaque
 * directory stops it.  Only the providing entry is read in full (statx,
 * xattrs, symlink target); a lower directory costs a statx, an open and a
 * listxattr.  merge.c holds the per-entry rules.  The root merges every
 * layer, whatever its opaque marks say, as the kernel's root does.  With
 * one layer and no rules this is walk_tree(), the plain walk.
 *
 * Mounts: without opts->cross_mounts an entry whose mount id (statx
 * STATX_MNT_ID; st_dev for directories on kernels before 5.8) differs
 * from its layer root's is another file system.  A directory there is
 * recorded as an empty directory (a mount point, like tar
 * --one-file-system); any other entry there (a bind-mounted file) is left
 * out.
 *
 * Walkers: a directory, once read and listed, is a task (its open layer
 * directories and sorted names).  Several threads (walk_opts.threads, by
 * default one per CPU) take tasks from a shared last-in-first-out queue,
 * read the entries of one directory into its children array, and queue
 * the subdirectories they find, or walk them at once, depth first, when
 * the queue is long enough or holds too many directory fds (a quarter of
 * RLIMIT_NOFILE).  Each walker allocates from an arena of its own.  Hard
 * links are found with a hash table of (layer, dev, ino) over the
 * non-directory inodes with more than one link, under the queue's lock.
 *
 * Order: each directory's children are sorted bytewise, whoever reads
 * them.  Once every walker is done, one depth-first pass over the
 * children arrays lists tree->inodes in pre-order and gives each inode
 * its first dentry there (walk_inode.parent and .name), so the tree is
 * the same whatever the walkers' timing.  Warnings are reported after the
 * walk, sorted in tree order.  A failed walk with several walkers is
 * walked again by one, so that the error named is always the first in
 * tree order.
 *
 * Resources: the directory fds of the queued tasks, one per layer of each
 * directory level a walker is in (so a tree deeper than RLIMIT_NOFILE
 * allows fails with -EMFILE, naming the path), and memory for the tree
 * only: no fd is kept per file.
 *
 * Splits: arena.c (memory), readxattr.c (xattrs), reopen.c (file handles,
 * reopening), opendata.c (walk_open_data()), hardlink.c (the hash table), list.c (listing a merged
 * directory), layers.c (the layers and their stacks), merge.c (the
 * overlay rules for one entry).
 */
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "overlaywalk/internal.h"
#include "server/cleanup.h"

#define PROGRESS_NSEC 100000000LL	/* at most 10 progress lines a second */
#define ENTRY_TRIES 4			/* reads of an entry that keeps changing */
#define WALK_CHANGED 1			/* the entry changed while read: again */
#define WALK_SEEN 1u			/* walk_flags: placed by order_tree() */

#define _cleanup_stack_ _cleanup_(walk_dir_stack_free)
#define _cleanup_names_ _cleanup_(walk_names_free)

/*
 * Whether our effective capabilities let us open any file for reading
 * (CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE), as root normally can: then
 * the per-file access check of the walk can be skipped.  Asks capget(2)
 * directly rather than linking libcap into the library.
 */
static bool has_cap(unsigned int cap)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };

	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[cap / 32].effective & (1U << (cap % 32));
}

static bool can_read_anything(void)
{
	return has_cap(CAP_DAC_READ_SEARCH) || has_cap(CAP_DAC_OVERRIDE);
}

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

/* Makes ctx->path the path of directory dir (a task's). */
static int path_set(struct walk_ctx *ctx, const struct walk_inode *dir)
{
	_cleanup_free_ char *p = walk_inode_path(dir);

	if (!p)
		return -ENOMEM;
	ctx->path_len = 0;
	return path_push(ctx, p, strlen(p));	/* allocates the buffer too */
}

/* ---- errors, warnings and progress ---- */

/*
 * The path to name in messages: relative to the root for a plain walk,
 * else the current layer's directory joined with it.  malloc'ed; NULL
 * when out of memory.
 */
static char *message_path(const struct walk_ctx *ctx)
{
	const struct walk_layer *l;
	char *p;

	if (!ctx->priv->merge)
		return strdup(ctx->path ? ctx->path : "");
	l = &ctx->priv->layers[ctx->cur_layer];
	if (asprintf(&p, "%s%s%s", l->path, ctx->path_len ? "/" : "",
		     ctx->path_len ? ctx->path : "") < 0)
		return NULL;
	return p;
}

static bool stopped(const struct walk_ctx *ctx)
{
	return __atomic_load_n(&ctx->sh->stop, __ATOMIC_RELAXED);
}

/* Records err as the walk's failure (the first one counts) and stops it. */
static void fail_walk(struct walk_shared *sh, int err, char *errpath, const char *what)
{
	pthread_mutex_lock(&sh->lock);
	if (!sh->err) {
		sh->err = err;
		sh->errpath = errpath;
		sh->what = what;
		errpath = NULL;
	}
	__atomic_store_n(&sh->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
	free(errpath);
}

int walk_fail_here(struct walk_ctx *ctx, int err, const char *what)
{
	fail_walk(ctx->sh, err, message_path(ctx), what);
	return err;
}

int walk_fail_or_skip(struct walk_ctx *ctx, int err, const char *what)
{
	struct walk_shared *sh = ctx->sh;
	struct walk_warning w;

	if (err == -ENOMEM || !ctx->opts->skip_unreadable)
		return walk_fail_here(ctx, err, what);
	if (!ctx->opts->warn)
		return 0;
	w = (struct walk_warning){
		.key = strdup(ctx->path ? ctx->path : ""), .path = message_path(ctx),
		.err = err, .what = what,
	};
	pthread_mutex_lock(&sh->lock);
	if (w.key && w.path && sh->nwarnings == sh->warnings_cap) {
		size_t cap = sh->warnings_cap ? 2 * sh->warnings_cap : 16;
		struct walk_warning *v = reallocarray(sh->warnings, cap, sizeof(*v));

		if (v) {
			sh->warnings = v;
			sh->warnings_cap = cap;
		}
	}
	if (w.key && w.path && sh->nwarnings < sh->warnings_cap) {
		sh->warnings[sh->nwarnings++] = w;
		pthread_mutex_unlock(&sh->lock);
		return 0;
	}
	pthread_mutex_unlock(&sh->lock);
	free(w.key);
	free(w.path);
	return walk_fail_here(ctx, -ENOMEM, what);
}

/*
 * Orders paths as the tree lists them: component by component, each
 * bytewise with the shorter first; a directory before what is in it.
 */
static int tree_order_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		/* End of path < '/' < any byte of a name. */
		int x = *a == '/' ? 1 : *a ? (unsigned char)*a + 1 : 0;
		int y = *b == '/' ? 1 : *b ? (unsigned char)*b + 1 : 0;

		if (x != y)
			return x - y;
		if (!x)
			return 0;
	}
}

static int warning_cmp(const void *pa, const void *pb)
{
	const struct walk_warning *a = pa, *b = pb;
	int r = tree_order_cmp(a->key, b->key);

	/* The same path twice: in the order seen (both from one walker). */
	return r ? r : (a < b ? -1 : a > b);
}

/* Reports the warnings in tree order, and frees them. */
static void flush_warnings(struct walk_shared *sh, const struct walk_opts *opts)
{
	/* qsort is not stable; warning_cmp falls back to the address. */
	if (sh->nwarnings > 1)
		qsort(sh->warnings, sh->nwarnings, sizeof(*sh->warnings), warning_cmp);
	for (size_t i = 0; i < sh->nwarnings; i++) {
		if (opts->warn)
			opts->warn(opts->userdata, sh->warnings[i].path, sh->warnings[i].err,
				   sh->warnings[i].what);
		free(sh->warnings[i].key);
		free(sh->warnings[i].path);
	}
	free(sh->warnings);
	sh->warnings = NULL;
	sh->nwarnings = sh->warnings_cap = 0;
}

#define PROGRESS_BATCH 256	/* entries a walker counts before telling the others */

static void progress_tick(struct walk_ctx *ctx)
{
	struct walk_shared *sh = ctx->sh;
	int64_t last, now_ns;
	struct timespec now;
	size_t n;

	if (++ctx->nentries < PROGRESS_BATCH)
		return;
	n = __atomic_add_fetch(&sh->nentries, ctx->nentries, __ATOMIC_RELAXED);
	ctx->nentries = 0;
	if (!ctx->opts->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	now_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
	last = __atomic_load_n(&sh->last_progress_ns, __ATOMIC_RELAXED);
	if (now_ns - last < PROGRESS_NSEC ||
	    !__atomic_compare_exchange_n(&sh->last_progress_ns, &last, now_ns, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return;
	fprintf(stderr, "\r%zu entries", n);
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
	ino->rdev_major = ino->rdev_minor = 0;
	if (S_ISCHR(stx->stx_mode) || S_ISBLK(stx->stx_mode)) {
		ino->rdev_major = stx->stx_rdev_major;
		ino->rdev_minor = stx->stx_rdev_minor;
	}
	ino->nlink = S_ISDIR(stx->stx_mode) ? 2 : 1;
}

/* Whether stx shows the inode ino was read from, unchanged (its ctime
 * moves with every change: data, xattrs, owner, links, a rename). */
static bool same_entry(const struct walk_inode *ino, const struct statx *stx)
{
	return stx->stx_ino == ino->ino &&
	       makedev(stx->stx_dev_major, stx->stx_dev_minor) == ino->dev &&
	       stx->stx_ctime.tv_sec == ino->ctime_sec &&
	       stx->stx_ctime.tv_nsec == ino->ctime_nsec;
}

/* Reads the target of the symlink name in dirfd into the arena. */
static int read_symlink(struct walk_arena *a, int dirfd, const char *name,
			uint64_t size_hint, struct walk_inode *ino)
{
	size_t cap = size_hint < PATH_MAX ? size_hint + 1 : PATH_MAX;

	for (;;) {
		_cleanup_free_ char *buf = malloc(cap);
		ssize_t n;

		if (!buf)
			return -ENOMEM;
		n = readlinkat(dirfd, name, buf, cap);
		if (n < 0)
			return -errno;
		if ((size_t)n < cap) {
			ino->symlink = walk_arena_strndup(a, buf, n);
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

/* Asks opts->check about the current entry; 0 or walk_fail_or_skip()'s answer,
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
	return walk_fail_or_skip(ctx, r, what ? what : "checking entry");
}

/* Adds a dentry name -> ino to parent (whose children array has room). */
static int add_dentry(struct walk_ctx *ctx, struct walk_inode *parent,
		      struct walk_inode *ino, const char *name, size_t len)
{
	struct walk_dentry *de = &parent->children[parent->nchildren];

	de->name = walk_arena_strndup(&ctx->arena, name, len);
	if (!de->name)
		return -ENOMEM;
	de->name_len = len;
	de->inode = ino;
	parent->nchildren++;
	return 0;
}

/* One more dentry of ino, an inode another dentry holds already. */
static int add_link(struct walk_ctx *ctx, struct walk_inode *parent,
		    struct walk_inode *ino, const char *name, size_t len)
{
	bool rejected;
	int r = run_check(ctx, ino, name, len, &rejected);

	if (r < 0 || rejected)
		return r;
	r = add_dentry(ctx, parent, ino, name, len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&ctx->sh->lock);
	ino->nlink++;
	pthread_mutex_unlock(&ctx->sh->lock);
	return 0;
}

static int walk_dir(struct walk_ctx *ctx, struct walk_inode *dir,
		    const struct dir_stack *st, struct name_list *names);

/*
 * Walks the directory ino (its layer directories st, its names listed):
 * queued for any walker, taking st and names, while the queue is short
 * and its fds are within budget; else here and now.
 */
static int descend(struct walk_ctx *ctx, struct walk_inode *ino,
		   struct dir_stack *st, struct name_list *names, unsigned int nthreads)
{
	struct walk_shared *sh = ctx->sh;
	struct walk_task *t;

	if (nthreads > 1) {
		pthread_mutex_lock(&sh->lock);
		bool room = sh->queued_fds + st->n <= sh->max_queued_fds &&
			    sh->queue_len < 2 * (size_t)nthreads;
		pthread_mutex_unlock(&sh->lock);
		if (room && (t = calloc(1, sizeof(*t)))) {
			t->dir = ino;
			t->st = *st;
			t->names = *names;
			memset(st, 0, sizeof(*st));
			memset(names, 0, sizeof(*names));
			pthread_mutex_lock(&sh->lock);
			t->next = sh->queue;
			sh->queue = t;
			sh->queue_len++;
			sh->queued_fds += t->st.n;
			pthread_cond_signal(&sh->cond);
			pthread_mutex_unlock(&sh->lock);
			return 0;
		}
	}
	return walk_dir(ctx, ino, st, names);
}

/*
 * Reads the entry named by group[0] (a name of the directory whose stack is
 * pst, with parent its inode), whose statx is *stx, and, for a directory,
 * gets what is below it walked; adds its dentry to parent.  group[1..n-1]
 * are the same name in the layers below (merge mode).  Returns 0 also
 * when the entry is left out or turns out to be a whiteout, WALK_CHANGED
 * when it changed while it was read.
 */
static int read_entry(struct walk_ctx *ctx, struct walk_inode *parent,
		      const struct dir_stack *pst, const struct name_ref *group,
		      size_t n, const struct statx *stx)
{
	const struct walk_opts *opts = ctx->opts;
	struct dir_layer *dl = &pst->v[group[0].pos];	/* v is not const */
	const char *name = group[0].name;
	size_t len = group[0].len;
	int dirfd = dl->fd;
	_cleanup_close_ int fd = -1;
	_cleanup_names_ struct name_list names = { 0 };
	_cleanup_stack_ struct dir_stack st = { 0 };
	struct walk_ovl_marks marks = { 0 };
	struct walk_inode *ino, *other;
	struct statx dstx;
	bool is_dir = S_ISDIR(stx->stx_mode), other_mount, rejected, whiteout = false;
	int r;

	if (!type_known(stx->stx_mode))
		return walk_fail_or_skip(ctx, -EOPNOTSUPP, "unknown file type");
	other_mount = walk_on_other_mount(ctx, dl->layer, stx);
	if (other_mount && !opts->cross_mounts && !is_dir)
		return 0;	/* a bind-mounted file: not ours */

	/* Another dentry of an inode already seen (never a whiteout). */
	if (!is_dir && stx->stx_nlink > 1) {
		pthread_mutex_lock(&ctx->sh->lock);
		other = walk_links_find(&ctx->sh->links, dl->layer,
					makedev(stx->stx_dev_major, stx->stx_dev_minor),
					stx->stx_ino);
		pthread_mutex_unlock(&ctx->sh->lock);
		if (other)
			return add_link(ctx, parent, other, name, len);
	}

	ino = walk_arena_alloc(&ctx->arena, sizeof(*ino));
	if (!ino)
		return -ENOMEM;
	fill_inode(ino, stx);
	ino->layer = dl->layer;

	if (is_dir && !(other_mount && !opts->cross_mounts)) {
		fd = walk_open_dir(dirfd, name, stx, &dstx);
		if (fd == -ENOTDIR)
			return WALK_CHANGED;
		if (fd < 0)
			return walk_fail_or_skip(ctx, fd, "opening directory");
		if (dstx.stx_ino != stx->stx_ino || dstx.stx_dev_major != stx->stx_dev_major ||
		    dstx.stx_dev_minor != stx->stx_dev_minor)
			return WALK_CHANGED;	/* another directory by now */
		fill_inode(ino, &dstx);		/* what the fd lists */
		r = walk_read_xattrs(&ctx->arena, fd, -1, NULL, ino);
	} else {
		if (S_ISLNK(stx->stx_mode)) {
			r = read_symlink(&ctx->arena, dirfd, name, stx->stx_size, ino);
			if (r == -EINVAL)
				return WALK_CHANGED;	/* no symlink any more */
			if (r < 0)
				return walk_fail_or_skip(ctx, r, "reading symlink");
		}
		r = walk_read_xattrs(&ctx->arena, -1, dirfd, name, ino);
	}
	if (r < 0)
		return walk_fail_or_skip(ctx, r, "reading xattrs");
	if (ctx->priv->merge) {
		r = walk_overlay_rules(ctx, ino, false, &marks, &whiteout);
		if (r < 0 || whiteout)
			return r;
	}
	if (fd >= 0) {
		bool bottom = dl->layer + 1 == ctx->priv->nlayers, skipped = false;
		bool opaque = ctx->priv->merge && !bottom &&
			      walk_dir_is_opaque(ctx, fd, marks.opaque);

		r = walk_dir_stack_push(&st, dl->layer, TAKE_FD(fd), &dstx);
		if (r < 0)
			return r;
		if (ctx->priv->merge && !opaque) {
			r = walk_gather_lower_dirs(ctx, pst, group, n, &st, &skipped);
			if (r < 0 || skipped)
				return r;
		}
		r = walk_list_stack(ctx, &st, &names);
		if (r < 0)
			return walk_fail_or_skip(ctx, r, "reading directory");
		ctx->cur_layer = dl->layer;
	}
	if (S_ISREG(ino->mode)) {
		/*
		 * File data is read only when a client asks for it: make sure
		 * now that we will be able to (with our effective ids and
		 * capabilities), so that an unreadable file is reported or
		 * skipped here, naming it, instead of failing reads later.
		 */
		if (!ctx->reads_anything &&
		    faccessat(dirfd, name, R_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0)
			return walk_fail_or_skip(ctx, -errno, "opening file");
		/* Found again later by name in its directory, through the
		 * directory's handle (reopen.c): nothing more per file here. */
		if (!dl->handle_taken) {
			r = walk_record_dir_handle(ctx->priv, &ctx->keep, &ctx->mount_hint,
						   dirfd, &dl->handle);
			if (r < 0)
				return walk_fail_or_skip(ctx, r, "encoding a directory's file handle");
			dl->handle_taken = true;
		}
		ino->reopen = (struct walk_reopen *)dl->handle;
	}
	r = run_check(ctx, ino, name, len, &rejected);
	if (r < 0 || rejected)
		return r;

	/* Committed: the entry is in the tree. */
	if (!is_dir && stx->stx_nlink > 1) {
		pthread_mutex_lock(&ctx->sh->lock);
		other = walk_links_find(&ctx->sh->links, ino->layer, ino->dev, ino->ino);
		r = other ? 0 : walk_links_add(&ctx->sh->links, ino);
		pthread_mutex_unlock(&ctx->sh->lock);
		if (r < 0)
			return r;
		if (other)	/* another walker was first */
			return add_link(ctx, parent, other, name, len);
	}
	r = add_dentry(ctx, parent, ino, name, len);
	if (r < 0)
		return r;
	ino->parent = parent;
	ino->name = parent->children[parent->nchildren - 1].name;
	ctx->ninodes++;
	if (!is_dir)
		return 0;

	parent->nlink++;
	if (st.n == 0)
		return 0;	/* mount point: recorded, not entered */
	return descend(ctx, ino, &st, &names, ctx->sh->nthreads);
}

/* read_entry() for the current entry, again while it changes under us. */
static int walk_entry(struct walk_ctx *ctx, struct walk_inode *parent,
		      const struct dir_stack *pst, const struct name_ref *group,
		      size_t n)
{
	const struct dir_layer *dl = &pst->v[group[0].pos];
	struct statx stx;
	int r = WALK_CHANGED;

	progress_tick(ctx);
	if (stopped(ctx))
		return -ECANCELED;
	ctx->cur_layer = dl->layer;
	if (group[0].whiteout)
		return 0;	/* AUFS whiteout in the top-most layer with the name */
	if (group[0].len == 0 || group[0].len > 255)
		return walk_fail_or_skip(ctx, -ENAMETOOLONG, "reading directory");
	for (int tries = 0; r == WALK_CHANGED && tries < ENTRY_TRIES; tries++) {
		if (statx(dl->fd, group[0].name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
			  WALK_STATX_WANT, &stx) < 0)
			return walk_fail_or_skip(ctx, -errno, "statx");
		r = read_entry(ctx, parent, pst, group, n, &stx);
	}
	if (r == WALK_CHANGED)
		return walk_fail_or_skip(ctx, -EAGAIN, "kept changing while it was read");
	return r;
}

/*
 * Reads dir->children[k] (its names group names->refs[g..g+n)) again,
 * in place: the same inode, another one, or none (then the dentry goes).
 * Returns 0 or the walk's error.
 */
static int reread_entry(struct walk_ctx *ctx, struct walk_inode *dir,
			const struct dir_stack *st, const struct name_list *names,
			uint32_t k, size_t g, size_t n)
{
	struct walk_inode *old = dir->children[k].inode;
	uint32_t nchildren = dir->nchildren;
	size_t old_len = ctx->path_len;
	int r;

	r = path_push(ctx, names->refs[g].name, names->refs[g].len);
	if (r < 0)
		return r;
	dir->nchildren = k;	/* walk_entry() adds the dentry at k */
	r = walk_entry(ctx, dir, st, &names->refs[g], n);
	path_pop(ctx, old_len);
	if (dir->nchildren == k) {	/* gone now, or left out */
		memmove(&dir->children[k], &dir->children[k + 1],
			(nchildren - k - 1) * sizeof(*dir->children));
		nchildren--;
	}
	dir->nchildren = nchildren;
	pthread_mutex_lock(&ctx->sh->lock);
	old->nlink--;	/* one dentry less (0: no longer in the tree) */
	pthread_mutex_unlock(&ctx->sh->lock);
	return r;
}

/*
 * Makes sure that what the entries of dir were read from is what their
 * statx showed.  Each non-directory is read by name in several calls; a
 * name renamed over meanwhile would mix two files' metadata.  Every
 * rename, link or unlink in a directory moves its ctime, so a directory
 * whose ctime did not move since it was opened had the same inode behind
 * each name all along: one statx per directory, not one per file.  When
 * it moved, each non-directory is statx'ed again and read again if its
 * name now shows another inode or a changed one.  Returns 0 or the
 * walk's error.
 */
static int verify_dir(struct walk_ctx *ctx, struct walk_inode *dir,
		      const struct dir_stack *st, const struct name_list *names)
{
	struct statx stx;
	bool moved = false;
	size_t g = 0;

	for (size_t i = 0; i < st->n && !moved; i++) {
		if (statx(st->v[i].fd, "", AT_EMPTY_PATH, STATX_CTIME, &stx) < 0)
			return walk_fail_here(ctx, -errno, "statx");
		moved = stx.stx_ctime.tv_sec != st->v[i].ctime_sec ||
			stx.stx_ctime.tv_nsec != st->v[i].ctime_nsec;
	}
	if (!moved)
		return 0;
	for (uint32_t k = 0; k < dir->nchildren;) {
		const struct walk_dentry *de = &dir->children[k];
		struct name_ref want = {
			.name = de->name, .len = de->name_len,
			.key = walk_name_key(de->name, de->name_len),
		};
		size_t n = 1;
		int r;

		/* The group of names de was read from: both lists are sorted. */
		while (g < names->n && walk_name_cmp(&names->refs[g], &want) < 0)
			g++;
		if (g == names->n)
			break;	/* cannot be */
		while (g + n < names->n && !walk_name_cmp(&names->refs[g], &names->refs[g + n]))
			n++;
		if (S_ISDIR(de->inode->mode) ||
		    (statx(st->v[names->refs[g].pos].fd, de->name,
			   AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_INO | STATX_CTIME,
			   &stx) == 0 && same_entry(de->inode, &stx))) {
			k++;	/* directories are read through their fd */
			continue;
		}
		uint32_t before = dir->nchildren;

		r = reread_entry(ctx, dir, st, names, k, g, n);
		if (r < 0)
			return r;
		if (dir->nchildren == before)
			k++;	/* read again; else it is gone and k is the next */
		g += n;
	}
	return 0;
}

/* Walks the sorted names of dir (whose layer directories are st) into
 * dir->children, one entry per distinct name. */
static int walk_dir(struct walk_ctx *ctx, struct walk_inode *dir,
		    const struct dir_stack *st, struct name_list *names)
{
	size_t ngroups = 0;

	for (size_t i = 0; i < names->n; i++)
		if (i == 0 || walk_name_cmp(&names->refs[i - 1], &names->refs[i]))
			ngroups++;
	if (ngroups == 0)
		return 0;
	if (ngroups > UINT32_MAX)
		return walk_fail_here(ctx, -EFBIG, "reading directory");
	dir->children = walk_arena_alloc(&ctx->arena, ngroups * sizeof(*dir->children));
	if (!dir->children)
		return -ENOMEM;
	for (size_t i = 0, j; i < names->n; i = j) {
		size_t old_len = ctx->path_len;
		int r;

		for (j = i + 1; j < names->n && !walk_name_cmp(&names->refs[i], &names->refs[j]); j++)
			;
		r = path_push(ctx, names->refs[i].name, names->refs[i].len);
		if (r < 0)
			return r;
		r = walk_entry(ctx, dir, st, &names->refs[i], j - i);
		path_pop(ctx, old_len);
		if (r < 0)
			return r;
	}
	return verify_dir(ctx, dir, st, names);
}

/* ---- walkers ---- */

static void task_free(struct walk_task *t)
{
	walk_dir_stack_free(&t->st);
	walk_names_free(&t->names);
	free(t);
}

/* Takes tasks until there are none left and no walker could add any. */
static void walker_run(struct walk_ctx *ctx)
{
	struct walk_shared *sh = ctx->sh;

	pthread_mutex_lock(&sh->lock);
	for (;;) {
		struct walk_task *t;
		int r;

		while (!sh->queue && sh->busy > 0 && !sh->stop)
			pthread_cond_wait(&sh->cond, &sh->lock);
		if (!sh->queue || sh->stop)
			break;
		t = sh->queue;
		sh->queue = t->next;
		sh->queue_len--;
		sh->queued_fds -= t->st.n;
		sh->busy++;
		pthread_mutex_unlock(&sh->lock);

		r = path_set(ctx, t->dir);
		if (r == 0)
			r = walk_dir(ctx, t->dir, &t->st, &t->names);
		task_free(t);
		if (r < 0 && r != -ECANCELED)
			fail_walk(sh, r, NULL, NULL);	/* no-op if recorded already */

		pthread_mutex_lock(&sh->lock);
		sh->busy--;
		if (!sh->queue && sh->busy == 0)
			pthread_cond_broadcast(&sh->cond);	/* all done */
	}
	pthread_cond_broadcast(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
}

static void *walker_thread(void *arg)
{
	walker_run(arg);
	return NULL;
}

/* Levels of directories a walker is assumed to hold open at once. */
#define WALK_DEPTH_GUESS 32

/*
 * How many walkers: opts->threads, or one per CPU we may run on.  A
 * walker going depth first holds one fd per layer per level: for deep
 * stacks of many layers fewer walkers, so that together they hold at
 * most half of RLIMIT_NOFILE (one for 500 layers and a limit of 20,000).
 */
static unsigned int walker_count(const struct walk_opts *opts, size_t nlayers)
{
	cpu_set_t set;
	struct rlimit rl;
	int n;

	if (opts->threads)
		return opts->threads;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	else
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (n > WALK_MAX_THREADS)
		n = WALK_MAX_THREADS;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)n * nlayers * WALK_DEPTH_GUESS > rl.rlim_cur / 2)
		n = (int)(rl.rlim_cur / 2 / (nlayers * WALK_DEPTH_GUESS));
	return n < 1 ? 1 : (unsigned int)n;
}

/*
 * Directory fds the queue may hold: a quarter of the soft RLIMIT_NOFILE,
 * so that walking deep (one fd per level) and the caller keep the rest.
 */
static size_t queue_fd_budget(void)
{
	struct rlimit rl;
	uint64_t lim = 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		lim = rl.rlim_cur == RLIM_INFINITY ? (1U << 20) : rl.rlim_cur;
	lim /= 4;
	return lim < 16 ? 16 : (size_t)lim;
}

/*
 * Runs the walkers (the caller is one of them) until the queue is
 * drained; their arenas join the tree's.  Returns the walk's error or 0.
 */
static int run_walkers(struct walk_ctx *main_ctx)
{
	struct walk_shared *sh = main_ctx->sh;
	unsigned int nthreads = sh->nthreads, started = 0;
	_cleanup_free_ pthread_t *tids = NULL;
	_cleanup_free_ struct walk_ctx *ctxs = NULL;

	if (nthreads > 1) {
		tids = calloc(nthreads - 1, sizeof(*tids));
		ctxs = calloc(nthreads - 1, sizeof(*ctxs));
	}
	for (unsigned int i = 0; tids && ctxs && i + 1 < nthreads; i++) {
		ctxs[i] = (struct walk_ctx){
			.sh = sh, .tree = main_ctx->tree, .priv = main_ctx->priv,
			.arena.populate = true,
			.opts = main_ctx->opts, .have_mnt_id = main_ctx->have_mnt_id,
			.reads_anything = main_ctx->reads_anything,
		};
		if (pthread_create(&tids[i], NULL, walker_thread, &ctxs[i]) != 0)
			break;	/* fewer walkers, still correct */
		started++;
	}
	walker_run(main_ctx);
	sh->ninodes = main_ctx->ninodes;
	sh->nentries += main_ctx->nentries;
	for (unsigned int i = 0; i < started; i++) {
		pthread_join(tids[i], NULL);
		walk_arena_join(&main_ctx->arena, &ctxs[i].arena);
		walk_arena_join(&main_ctx->keep, &ctxs[i].keep);
		free(ctxs[i].path);
		sh->ninodes += ctxs[i].ninodes;
		sh->nentries += ctxs[i].nentries;
	}
	while (sh->queue) {	/* left over after a failure */
		struct walk_task *t = sh->queue;

		sh->queue = t->next;
		task_free(t);
	}
	return sh->err;
}

/* ---- the root, and the tree's order ---- */

/* The root cannot be left out: remember its layer as the culprit. */
static int fail_root(struct walk_ctx *ctx, uint32_t layer, int err, const char *what)
{
	ctx->cur_layer = layer;
	return walk_fail_here(ctx, err, what);
}

/* Reads the root (every layer's root merges into it) and queues it. */
static int walk_root(struct walk_ctx *ctx, const struct walk_stack *stack)
{
	const struct walk_opts *opts = ctx->opts;
	struct walk_tree *tree = ctx->tree;
	_cleanup_names_ struct name_list names = { 0 };
	_cleanup_stack_ struct dir_stack st = { 0 };
	struct walk_ovl_marks marks;
	struct walk_inode *root;
	struct walk_task *t;
	struct statx stx;
	bool whiteout;
	int r;

	r = walk_open_layers(ctx, stack, stack->override_stat, &stx);
	if (r < 0)
		return r;
	if (!S_ISDIR(stx.stx_mode))
		return fail_root(ctx, 0, -ENOTDIR, "opening layer");
	ctx->reads_anything = can_read_anything();

	root = walk_arena_alloc(&ctx->arena, sizeof(*root));
	if (!root)
		return -ENOMEM;
	fill_inode(root, &stx);
	root->name = "";
	root->parent = root;

	progress_tick(ctx);
	for (size_t i = 0; i < ctx->priv->nlayers; i++) {
		struct statx rstx;
		int fd = openat(ctx->priv->layers[i].root_fd, ".",
				O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			return fail_root(ctx, i, -errno, "opening directory");
		if (statx(fd, "", AT_EMPTY_PATH, STATX_CTIME, &rstx) < 0) {
			r = -errno;
			close(fd);
			return fail_root(ctx, i, r, "statx");
		}
		r = walk_dir_stack_push(&st, i, fd, &rstx);
		if (r < 0)
			return r;
	}
	r = walk_read_xattrs(&ctx->arena, st.v[0].fd, -1, NULL, root);
	if (r < 0)
		return fail_root(ctx, 0, r, "reading xattrs");
	if (ctx->priv->merge) {
		ctx->cur_layer = 0;
		r = walk_overlay_rules(ctx, root, true, &marks, &whiteout);
		if (r < 0)
			return r;
		if (!S_ISDIR(root->mode))
			return fail_root(ctx, 0, -EBADMSG, "user.containers.override_stat "
					 "makes the root a non-directory");
	}
	r = walk_list_stack(ctx, &st, &names);
	if (r < 0)
		return fail_root(ctx, ctx->cur_layer, r, "reading directory");
	if (opts->check) {
		const char *what = NULL;

		r = opts->check(opts->userdata, root, "", 0, &what);
		if (r < 0)
			return fail_root(ctx, 0, r, what ? what : "checking entry");
	}
	tree->root = root;
	ctx->ninodes = 1;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	*t = (struct walk_task){ .dir = root, .st = st, .names = names };
	memset(&st, 0, sizeof(st));
	memset(&names, 0, sizeof(names));
	ctx->sh->queue = t;
	ctx->sh->queue_len = 1;
	ctx->sh->queued_fds = t->st.n;
	return 0;
}

/*
 * Lists every inode once in tree->inodes, in pre-order of the sorted
 * children, and gives each its first dentry in that order (a hard-linked
 * file's parent and name).  Returns 0 or -ENOMEM.
 */
static int order_tree(struct walk_tree *tree, size_t ninodes)
{
	struct frame {
		struct walk_inode *dir;
		uint32_t next;
	};
	_cleanup_free_ struct frame *stack = NULL;
	size_t depth = 0, cap = 64, n = 0;

	tree->inodes = malloc(ninodes * sizeof(*tree->inodes));
	stack = malloc(cap * sizeof(*stack));
	if (!tree->inodes || !stack)
		return -ENOMEM;
	tree->inodes[n++] = tree->root;
	tree->root->walk_flags |= WALK_SEEN;
	stack[depth++] = (struct frame){ .dir = tree->root };
	while (depth > 0) {
		struct frame *f = &stack[depth - 1];
		struct walk_dentry *de;
		struct walk_inode *ino;

		if (f->next == f->dir->nchildren) {
			depth--;
			continue;
		}
		de = &f->dir->children[f->next++];
		ino = de->inode;
		if (ino->walk_flags & WALK_SEEN)
			continue;	/* a later dentry of a hard-linked file */
		ino->walk_flags |= WALK_SEEN;
		/*
		 * A hard link's first dentry in tree order need not be the one
		 * a walker read it through, whose directory's handle reopen
		 * is: then it is found again by its path instead (the
		 * handle's size still tells how much room its own needs).
		 */
		if (ino->reopen && (ino->parent != f->dir || ino->name != de->name))
			ino->walk_flags |= WALK_NOT_IN_DIR;
		ino->parent = f->dir;
		ino->name = de->name;
		if (n == ninodes)
			return -EIO;	/* cannot be: every inode was counted */
		tree->inodes[n++] = ino;
		if (!S_ISDIR(ino->mode))
			continue;
		if (depth == cap) {
			struct frame *s = reallocarray(stack, 2 * cap, sizeof(*s));

			if (!s)
				return -ENOMEM;
			stack = s;
			cap *= 2;
		}
		stack[depth++] = (struct frame){ .dir = ino };
	}
	tree->ninodes = n;
	return 0;
}

/* walk_private.serial: trees made so far in this process. */
static uint64_t tree_serials;

/* The common part of walk_tree() and walk_layers(), with nthreads walkers. */
static int walk_stack(const struct walk_stack *stack, bool merge,
		      const struct walk_opts *opts, unsigned int nthreads,
		      struct walk_tree **ret_tree, char **ret_errpath,
		      const char **ret_what)
{
	struct walk_shared sh = { .nthreads = nthreads, .max_queued_fds = queue_fd_budget() };
	struct walk_ctx ctx = { .sh = &sh, .opts = opts, .arena.populate = true };
	struct walk_tree *tree;
	struct timespec now;
	int r, walked = 0;

	tree = calloc(1, sizeof(*tree));
	if (!tree)
		return -ENOMEM;
	tree->root_fd = -1;
	tree->priv = calloc(1, sizeof(*tree->priv));
	if (!tree->priv) {
		free(tree);
		return -ENOMEM;
	}
	pthread_mutex_init(&tree->priv->mounts_lock, NULL);
	tree->priv->serial = __atomic_add_fetch(&tree_serials, 1, __ATOMIC_RELAXED);
	pthread_mutex_init(&sh.lock, NULL);
	pthread_cond_init(&sh.cond, NULL);
	tree->priv->cross_mounts = opts->cross_mounts;
	tree->priv->merge = merge;
	tree->priv->ns = stack->ns;
	tree->priv->aufs_whiteouts = merge && stack->aufs_whiteouts;
	ctx.tree = tree;
	ctx.priv = tree->priv;
	if (opts->progress) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		sh.last_progress_ns = now.tv_sec * 1000000000LL + now.tv_nsec;
	}

	r = walk_root(&ctx, stack);
	if (r < 0)
		fail_walk(&sh, r, NULL, NULL);
	else
		r = walked = run_walkers(&ctx);
	walk_arena_join(&tree->priv->model, &ctx.arena);
	walk_arena_join(&tree->priv->keep, &ctx.keep);
	if (r == 0)
		r = order_tree(tree, sh.ninodes);

	if (opts->progress)
		fprintf(stderr, "\r%zu entries\n", sh.nentries);
	walk_links_free(&sh.links);
	free(ctx.path);
	pthread_cond_destroy(&sh.cond);
	pthread_mutex_destroy(&sh.lock);
	if (walked < 0 && nthreads > 1 && walked != -ENOMEM) {
		/* Again with one walker, for the first error in tree order. */
		free(sh.errpath);
		for (size_t i = 0; i < sh.nwarnings; i++) {
			free(sh.warnings[i].key);
			free(sh.warnings[i].path);
		}
		free(sh.warnings);
		walk_tree_free(tree);
		return walk_stack(stack, merge, opts, 1, ret_tree, ret_errpath, ret_what);
	}
	flush_warnings(&sh, opts);
	if (r < 0) {
		walk_tree_free(tree);
		if (ret_errpath && sh.errpath)
			*ret_errpath = TAKE_PTR(sh.errpath);
		if (ret_what && sh.what)
			*ret_what = sh.what;
		free(sh.errpath);
		return r;
	}
	free(sh.errpath);
	*ret_tree = tree;
	return 0;
}

int walk_tree(const char *path, const struct walk_opts *opts,
	      struct walk_tree **ret_tree, char **ret_errpath,
	      const char **ret_what)
{
	static const struct walk_opts no_opts;
	const char *layers[1] = { path };
	struct walk_stack stack = { .layers = layers, .nlayers = 1 };

	if (!path || !ret_tree)
		return -EINVAL;
	if (!opts)
		opts = &no_opts;
	return walk_stack(&stack, false, opts, walker_count(opts, 1), ret_tree,
			  ret_errpath, ret_what);
}

int walk_layers(const struct walk_stack *stack, const struct walk_opts *opts,
		struct walk_tree **ret_tree, char **ret_errpath,
		const char **ret_what)
{
	static const struct walk_opts no_opts;

	if (!stack || !ret_tree || stack->nlayers == 0 ||
	    stack->nlayers > WALK_MAX_LAYERS + 1)
		return -EINVAL;
	for (size_t i = 0; i < stack->nlayers; i++)
		if (!stack->layers[i])
			return -EINVAL;
	if (!opts)
		opts = &no_opts;
	/*
	 * Without CAP_SYS_ADMIN, listxattr() silently leaves out trusted.*:
	 * opaque directories and xattr whiteouts would go unseen and lower
	 * files show through.  Refuse rather than merge wrongly.
	 */
	if (stack->ns == WALK_OVL_TRUSTED && !has_cap(CAP_SYS_ADMIN)) {
		if (ret_errpath)
			*ret_errpath = strdup(stack->layers[0]);
		if (ret_what)
			*ret_what = "reading trusted.overlay.* xattrs needs CAP_SYS_ADMIN "
				    "(the systemd unit: README.md, \"systemd and podman machine\")";
		return -EPERM;
	}
	return walk_stack(stack, true, opts, walker_count(opts, stack->nlayers), ret_tree,
			  ret_errpath, ret_what);
}

void walk_tree_release_model(struct walk_tree *tree)
{
	if (!tree || !tree->priv)
		return;
	walk_arena_free(&tree->priv->model);
	tree->priv->source_dir = NULL;	/* was an inode of the model */
	free(tree->inodes);
	tree->inodes = NULL;
	tree->root = NULL;
	tree->ninodes = 0;
}

void walk_tree_free(struct walk_tree *tree)
{
	if (!tree)
		return;
	if (tree->priv) {
		/* tree->root_fd is layers[0].root_fd. */
		for (size_t i = 0; i < tree->priv->nlayers; i++) {
			if (tree->priv->layers[i].root_fd >= 0)
				close(tree->priv->layers[i].root_fd);
			free(tree->priv->layers[i].path);
		}
		free(tree->priv->layers);
		for (size_t i = 0; i < tree->priv->nmounts; i++)
			close(tree->priv->mounts[i].fd);
		free(tree->priv->mounts);
		pthread_mutex_destroy(&tree->priv->mounts_lock);
		walk_arena_free(&tree->priv->model);
		walk_arena_free(&tree->priv->keep);
		free(tree->priv);
	} else if (tree->root_fd >= 0) {
		close(tree->root_fd);
	}
	free(tree->inodes);
	free(tree);
}
