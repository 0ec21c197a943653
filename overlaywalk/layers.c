/* SPDX-License-Identifier: MIT */
/*
 * layers.c - the layers of a merged directory (walk_layers()): opening the
 * layer roots, the stack of layer directories a merged directory is made
 * of, applying merge.c's rules to the entry that provides a name, and
 * gathering the same-named directories below it down to what stops the
 * merge (overlay-layers.md §1.2, the kernel's ovl_lookup_single()).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "overlaywalk/internal.h"
#include "server/cleanup.h"

void walk_dir_stack_free(struct dir_stack *st)
{
	for (size_t i = 0; i < st->n; i++)
		close(st->v[i].fd);
	free(st->v);
	memset(st, 0, sizeof(*st));
}

int walk_dir_stack_push(struct dir_stack *st, uint32_t layer, int fd)
{
	if (st->n == st->cap) {
		size_t cap = st->cap ? 2 * st->cap : 4;
		struct dir_layer *v = reallocarray(st->v, cap, sizeof(*v));

		if (!v) {
			close(fd);
			return -ENOMEM;
		}
		st->v = v;
		st->cap = cap;
	}
	st->v[st->n++] = (struct dir_layer){ .layer = layer, .fd = fd };
	return 0;
}

bool walk_on_other_mount(const struct walk_ctx *ctx, uint32_t layer,
			 const struct statx *stx)
{
	const struct walk_layer *l = &ctx->priv->layers[layer];

	if (ctx->have_mnt_id && (stx->stx_mask & STATX_MNT_ID) && stx->stx_mnt_id)
		return stx->stx_mnt_id != l->mnt_id;
	return S_ISDIR(stx->stx_mode) &&
	       makedev(stx->stx_dev_major, stx->stx_dev_minor) != l->dev;
}

/* A layer root cannot be left out: the walk fails naming it. */
static int fail_layer(struct walk_ctx *ctx, uint32_t layer, int err, const char *what)
{
	ctx->cur_layer = layer;
	return walk_fail_here(ctx, err, what);
}

int walk_open_layers(struct walk_ctx *ctx, const struct walk_stack *stack,
		     bool force_override, struct statx *ret_top)
{
	struct walk_private *priv = ctx->priv;

	priv->layers = calloc(stack->nlayers, sizeof(*priv->layers));
	if (!priv->layers)
		return -ENOMEM;
	for (size_t i = 0; i < stack->nlayers; i++) {
		struct walk_layer *l = &priv->layers[i];
		struct statx stx;
		char v[1];

		l->root_fd = -1;
		l->path = strdup(stack->layers[i]);
		if (!l->path)
			return -ENOMEM;
		priv->nlayers = i + 1;
		l->root_fd = open(l->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (l->root_fd < 0 && !priv->merge)
			return -errno;	/* the caller names the path it gave */
		if (l->root_fd < 0)
			return fail_layer(ctx, i, -errno, "opening layer");
		if (statx(l->root_fd, "", AT_EMPTY_PATH | AT_NO_AUTOMOUNT,
			  WALK_STATX_WANT, &stx) < 0)
			return fail_layer(ctx, i, -errno, "statx");
		if (i == 0) {
			/*
			 * Mount ids start at 1; a 0 with the mask bit set
			 * (qemu-user's statx emulation) means unknown.
			 */
			ctx->have_mnt_id = (stx.stx_mask & STATX_MNT_ID) &&
					   stx.stx_mnt_id != 0;
			*ret_top = stx;
		}
		l->mnt_id = stx.stx_mnt_id;
		l->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
		l->override_stat = force_override;
		if (priv->merge && !force_override) {
			char proc[40];

			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", l->root_fd);
			l->override_stat = getxattr(proc, WALK_OVERRIDE_XATTR, v, 0) >= 0;
		}
	}
	ctx->tree->root_fd = priv->layers[0].root_fd;
	return 0;
}

int walk_overlay_rules(struct walk_ctx *ctx, struct walk_inode *ino,
		       struct walk_ovl_marks *marks, bool *ret_whiteout)
{
	const struct walk_layer *l = &ctx->priv->layers[ino->layer];
	/* The root is never looked up: its redirect is not read either. */
	bool bottom = ino->layer + 1 == ctx->priv->nlayers || ino->parent == ino;
	struct walk_override o;

	walk_ovl_scan_xattrs(ctx->priv->ns, l->override_stat, ino, marks);
	if (marks->override) {
		if (walk_override_parse(marks->override, marks->override_len, &o) < 0)
			return walk_fail_here(ctx, -EBADMSG,
					 "malformed user.containers.override_stat");
		if (walk_override_apply(ino, &o) < 0)
			return walk_fail_here(ctx, -EBADMSG, "user.containers.override_stat "
					 "names a type the file cannot have");
	}
	*ret_whiteout = walk_ovl_is_whiteout(ino, marks);
	if (*ret_whiteout)
		return 0;
	if (S_ISREG(ino->mode) && marks->metacopy)
		return walk_fail_here(ctx, -EOPNOTSUPP, ctx->priv->ns == WALK_OVL_USER ?
				 "user.overlay.metacopy: metadata-only copy-ups are not supported" :
				 "trusted.overlay.metacopy: metadata-only copy-ups are not supported");
	/* The kernel follows a directory's redirect unless it is opaque or in
	 * the bottom layer (ovl_lookup_single). */
	if (S_ISDIR(ino->mode) && marks->redirect && marks->opaque != 'y' && !bottom)
		return walk_fail_here(ctx, -EOPNOTSUPP, ctx->priv->ns == WALK_OVL_USER ?
				 "user.overlay.redirect: redirected directories are not supported" :
				 "trusted.overlay.redirect: redirected directories are not supported");
	return 0;
}

/* The bottom layer is never asked (nothing lies below it). */
bool walk_dir_is_opaque(const struct walk_ctx *ctx, int fd, char opaque)
{
	struct stat st;

	if (opaque == 'y')
		return true;
	return ctx->priv->aufs_whiteouts &&
	       fstatat(fd, WALK_AUFS_OPAQUE_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * Reads the overlay marks of a lower directory (open as fd).  One
 * flistxattr() when, as almost always, it has no xattrs at all.
 * 0 or -errno.
 */
static int lower_dir_marks(struct walk_ctx *ctx, int fd, struct walk_ovl_marks *ret)
{
	struct walk_inode tmp = { 0 };
	ssize_t n = flistxattr(fd, NULL, 0);
	int r;

	*ret = (struct walk_ovl_marks){ 0 };
	if (n == 0 || (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)))
		return 0;
	if (n < 0)
		return -errno;
	r = walk_read_xattrs(ctx->priv, fd, false, &tmp);
	if (r < 0)
		return r;
	walk_ovl_scan_xattrs(ctx->priv->ns, false, &tmp, ret);
	return 0;
}

int walk_gather_lower_dirs(struct walk_ctx *ctx, const struct dir_stack *pst,
			   const struct name_ref *group, size_t n,
			   struct dir_stack *st, bool *ret_skipped)
{
	uint32_t top_layer = ctx->cur_layer;
	int r = 0;

	*ret_skipped = false;
	for (size_t i = 1; i < n; i++) {
		const struct name_ref *g = &group[i];
		const struct dir_layer *dl = &pst->v[g->pos];
		_cleanup_close_ int opath = -1, fd = -1;
		struct walk_ovl_marks marks;
		struct statx stx;
		bool bottom = dl->layer + 1 == ctx->priv->nlayers;

		if (g->whiteout)
			break;
		if (g->d_type != DT_DIR && g->d_type != DT_UNKNOWN)
			break;	/* a non-directory (or a 0/0 whiteout) below a directory */
		ctx->cur_layer = dl->layer;
		opath = openat(dl->fd, g->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (opath < 0)
			r = -errno;
		else if (statx(opath, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
			       WALK_STATX_WANT, &stx) < 0)
			r = -errno;
		if (r < 0)
			goto fail;
		if (!S_ISDIR(stx.stx_mode))
			break;
		if (!ctx->opts->cross_mounts && walk_on_other_mount(ctx, dl->layer, &stx))
			break;	/* a mount point in this layer: nothing of it merges */
		fd = openat(opath, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			goto fail;
		}
		r = lower_dir_marks(ctx, fd, &marks);
		if (r < 0)
			goto fail;
		if (!bottom && marks.redirect && marks.opaque != 'y') {
			return walk_fail_here(ctx, -EOPNOTSUPP, ctx->priv->ns == WALK_OVL_USER ?
					 "user.overlay.redirect: redirected directories are not supported" :
					 "trusted.overlay.redirect: redirected directories are not supported");
		}
		r = walk_dir_stack_push(st, dl->layer, TAKE_FD(fd));
		if (r < 0)
			return r;
		if (!bottom && walk_dir_is_opaque(ctx, st->v[st->n - 1].fd, marks.opaque))
			break;
	}
	ctx->cur_layer = top_layer;
	return 0;
fail:
	r = walk_fail_or_skip(ctx, r, "opening a lower layer's directory");
	ctx->cur_layer = top_layer;
	*ret_skipped = r == 0;
	return r;
}
