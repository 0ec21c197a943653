/* SPDX-License-Identifier: MIT */
/*
 * walk.c - walk_tree() and walk_layers(): reads a directory tree, or a
 * stack of overlay layer directories merged on the fly, into the tree
 * model of walk.h; and walk_tree_free().
 *
 * Every entry is reached from its parent's directory fd only: openat()
 * with O_PATH | O_NOFOLLOW, then statx() on that fd.  O_PATH has no side
 * effect on FIFOs and devices and triggers no automount; a symlink is
 * opened as itself and never followed.  What the walk records comes from
 * the fd, so a name swapped between readdir and openat cannot mix two
 * files' metadata.  A directory is then reopened O_RDONLY through "." of
 * its O_PATH fd to list it and read its xattrs.  The only path strings
 * handed to the kernel are the root paths the caller gives.
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
 * Order: each directory is listed in full, sorted bytewise and walked in
 * that order, depth first, so tree->inodes comes out in pre-order and the
 * first dentry of a hard-linked inode is the first in that order.  Hard
 * links are found with a hash table of (layer, dev, ino) over the
 * non-directory inodes with more than one link only.
 *
 * Resources: one open directory fd per layer of each directory level
 * being walked (so a tree deeper than RLIMIT_NOFILE allows fails with
 * -EMFILE, naming the path), and memory for the tree only: no fd is kept
 * per file.
 *
 * Splits: arena.c (memory), readxattr.c (xattrs), reopen.c (file handles and
 * walk_open_data()), hardlink.c (the hash table), list.c (listing a merged
 * directory), layers.c (the layers and their stacks), merge.c (the
 * overlay rules for one entry).
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

#define PROGRESS_NSEC 100000000LL	/* at most 10 progress lines a second */

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

/* ---- errors and progress ---- */

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

int walk_fail_here(struct walk_ctx *ctx, int err, const char *what)
{
	free(ctx->errpath);
	ctx->errpath = message_path(ctx);
	ctx->what = what;
	return err;
}

int walk_fail_or_skip(struct walk_ctx *ctx, int err, const char *what)
{
	if (err != -ENOMEM && ctx->opts->skip_unreadable) {
		if (ctx->opts->warn) {
			_cleanup_free_ char *p = message_path(ctx);

			ctx->opts->warn(ctx->opts->userdata, p ? p : ctx->path, err, what);
		}
		return 0;
	}
	return walk_fail_here(ctx, err, what);
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
		struct walk_inode **p = reallocarray(tree->inodes, cap, sizeof(*p));

		if (!p)
			return -ENOMEM;
		tree->inodes = p;
		ctx->inodes_cap = cap;
	}
	tree->inodes[tree->ninodes++] = ino;
	return 0;
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

static int walk_dir(struct walk_ctx *ctx, struct walk_inode *dir,
		    const struct dir_stack *st, struct name_list *names);

/*
 * Reads the entry named by group[0] (a name of the directory whose stack is
 * pst, with parent its inode) and, for a directory, everything below it;
 * adds its dentry to parent.  group[1..n-1] are the same name in the
 * layers below (merge mode).  Returns 0 also when the entry is left out or
 * turns out to be a whiteout.
 */
static int walk_entry(struct walk_ctx *ctx, struct walk_inode *parent,
		      const struct dir_stack *pst, const struct name_ref *group,
		      size_t n)
{
	const struct walk_opts *opts = ctx->opts;
	const struct name_ref *top = &group[0];
	const struct dir_layer *dl = &pst->v[top->pos];
	const char *name = top->name;
	size_t len = top->len;
	int dirfd = dl->fd;
	_cleanup_close_ int opath = -1, fd = -1;
	_cleanup_names_ struct name_list names = { 0 };
	_cleanup_stack_ struct dir_stack st = { 0 };
	struct walk_ovl_marks marks = { 0 };
	struct walk_inode *ino;
	struct walk_dentry *de;
	struct statx stx;
	bool is_dir, other_mount, rejected, whiteout = false;
	int r;

	progress_tick(ctx);
	ctx->cur_layer = dl->layer;
	if (top->whiteout)
		return 0;	/* AUFS whiteout in the top-most layer with the name */
	if (len == 0 || len > 255)
		return walk_fail_or_skip(ctx, -ENAMETOOLONG, "reading directory");

	opath = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (opath < 0)
		return walk_fail_or_skip(ctx, -errno, "opening");
	if (statx(opath, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW |
		  AT_NO_AUTOMOUNT, WALK_STATX_WANT, &stx) < 0)
		return walk_fail_or_skip(ctx, -errno, "statx");
	if (!type_known(stx.stx_mode))
		return walk_fail_or_skip(ctx, -EOPNOTSUPP, "unknown file type");
	is_dir = S_ISDIR(stx.stx_mode);

	other_mount = walk_on_other_mount(ctx, dl->layer, &stx);
	if (other_mount && !opts->cross_mounts && !is_dir)
		return 0;	/* a bind-mounted file: not ours */

	/* Another dentry of an inode already seen (never a whiteout). */
	if (!is_dir && stx.stx_nlink > 1) {
		ino = walk_links_find(&ctx->links, dl->layer,
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
	ino->layer = dl->layer;
	ino->path = walk_arena_strndup(ctx->priv, ctx->path, ctx->path_len);
	if (!ino->path)
		return -ENOMEM;

	if (S_ISLNK(stx.stx_mode)) {
		r = read_symlink(ctx->priv, opath, stx.stx_size, ino);
		if (r < 0)
			return walk_fail_or_skip(ctx, r, "reading symlink");
	}
	if (is_dir && !(other_mount && !opts->cross_mounts)) {
		/* "." of the O_PATH fd: the very directory we statx'ed. */
		fd = openat(opath, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return walk_fail_or_skip(ctx, -errno, "opening directory");
		r = walk_read_xattrs(ctx->priv, fd, false, ino);
	} else {
		r = walk_read_xattrs(ctx->priv, opath, true, ino);
	}
	if (r < 0)
		return walk_fail_or_skip(ctx, r, "reading xattrs");
	if (ctx->priv->merge) {
		r = walk_overlay_rules(ctx, ino, &marks, &whiteout);
		if (r < 0 || whiteout)
			return r;
	}
	if (fd >= 0) {
		bool bottom = dl->layer + 1 == ctx->priv->nlayers, skipped = false;
		bool opaque = ctx->priv->merge && !bottom &&
			      walk_dir_is_opaque(ctx, fd, marks.opaque);

		r = walk_dir_stack_push(&st, dl->layer, TAKE_FD(fd));
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
		r = walk_record_handle(ctx->tree, dirfd, opath, ino);
		if (r < 0)
			return walk_fail_or_skip(ctx, r, "encoding file handle");
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
	if (st.n == 0)
		return 0;	/* mount point: recorded, not entered */
	closep(&opath);
	opath = -1;
	return walk_dir(ctx, ino, &st, &names);
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
	dir->children = walk_arena_alloc(ctx->priv, ngroups * sizeof(*dir->children));
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
	return 0;
}

/* ---- the root ---- */

/* The root cannot be left out: remember its layer as the culprit. */
static int fail_root(struct walk_ctx *ctx, uint32_t layer, int err, const char *what)
{
	ctx->cur_layer = layer;
	return walk_fail_here(ctx, err, what);
}

static int walk_root(struct walk_ctx *ctx, const struct walk_stack *stack)
{
	const struct walk_opts *opts = ctx->opts;
	struct walk_tree *tree = ctx->tree;
	_cleanup_names_ struct name_list names = { 0 };
	_cleanup_stack_ struct dir_stack st = { 0 };
	struct walk_ovl_marks marks;
	struct walk_inode *root;
	struct statx stx;
	bool whiteout;
	int r;

	r = walk_open_layers(ctx, stack, stack->override_stat, &stx);
	if (r < 0)
		return r;
	if (!S_ISDIR(stx.stx_mode))
		return fail_root(ctx, 0, -ENOTDIR, "opening layer");
	ctx->reads_anything = can_read_anything();

	root = walk_arena_alloc(ctx->priv, sizeof(*root));
	if (!root)
		return -ENOMEM;
	fill_inode(root, &stx);
	root->path = walk_arena_strndup(ctx->priv, "", 0);
	if (!root->path)
		return -ENOMEM;
	root->parent = root;

	progress_tick(ctx);
	/* Every layer's root directory merges into the root. */
	for (size_t i = 0; i < ctx->priv->nlayers; i++) {
		int fd = openat(ctx->priv->layers[i].root_fd, ".",
				O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			return fail_root(ctx, i, -errno, "opening directory");
		r = walk_dir_stack_push(&st, i, fd);
		if (r < 0)
			return r;
	}
	r = walk_read_xattrs(ctx->priv, st.v[0].fd, false, root);
	if (r < 0)
		return fail_root(ctx, 0, r, "reading xattrs");
	if (ctx->priv->merge) {
		ctx->cur_layer = 0;
		r = walk_overlay_rules(ctx, root, &marks, &whiteout);
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
	r = append_inode(ctx, root);
	if (r < 0)
		return r;
	tree->root = root;
	return walk_dir(ctx, root, &st, &names);
}

/* The common part of walk_tree() and walk_layers(). */
static int walk_stack(const struct walk_stack *stack, bool merge,
		      const struct walk_opts *opts, struct walk_tree **ret_tree,
		      char **ret_errpath, const char **ret_what)
{
	static const struct walk_opts no_opts;
	struct walk_ctx ctx = { .opts = opts ? opts : &no_opts };
	struct walk_tree *tree;
	int r;

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
	tree->priv->merge = merge;
	tree->priv->ns = stack->ns;
	tree->priv->aufs_whiteouts = merge && stack->aufs_whiteouts;
	ctx.tree = tree;
	ctx.priv = tree->priv;
	if (ctx.opts->progress)
		clock_gettime(CLOCK_MONOTONIC, &ctx.last_progress);

	r = walk_root(&ctx, stack);

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

int walk_tree(const char *path, const struct walk_opts *opts,
	      struct walk_tree **ret_tree, char **ret_errpath,
	      const char **ret_what)
{
	const char *layers[1] = { path };
	struct walk_stack stack = { .layers = layers, .nlayers = 1 };

	if (!path || !ret_tree)
		return -EINVAL;
	return walk_stack(&stack, false, opts, ret_tree, ret_errpath, ret_what);
}

int walk_layers(const struct walk_stack *stack, const struct walk_opts *opts,
		struct walk_tree **ret_tree, char **ret_errpath,
		const char **ret_what)
{
	if (!stack || !ret_tree || stack->nlayers == 0 ||
	    stack->nlayers > WALK_MAX_LAYERS)
		return -EINVAL;
	for (size_t i = 0; i < stack->nlayers; i++)
		if (!stack->layers[i])
			return -EINVAL;
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
	return walk_stack(stack, true, opts, ret_tree, ret_errpath, ret_what);
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
		walk_arena_free(tree->priv);
		free(tree->priv);
	} else if (tree->root_fd >= 0) {
		close(tree->root_fd);
	}
	free(tree->inodes);
	free(tree);
}
