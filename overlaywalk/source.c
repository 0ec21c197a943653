/* SPDX-License-Identifier: MIT */
/*
 * source.c - see source.h.  One record per file in the tree's keep
 * arena: what walk_open_stamp() needs beyond the region_source's own
 * size and times, room for the file's own handle (learnt at its first
 * open, as large as its directory's), then the file's name; its
 * directory's path is one string for all the directory's files (each
 * run of them in tree order).  About 80 bytes for a file of /usr/share.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/source.h"

/* walk_source.fh_state */
enum { FH_NONE, FH_FILLING, FH_READY };

struct walk_source {
	const struct walk_private *priv;
	const struct walk_reopen *dir;	/* its directory's handle, or NULL */
	uint64_t dev, ino;
	uint32_t uid;
	uint16_t layer;
	uint16_t mount;			/* the file's own handle, once READY */
	uint8_t fh_state;		/* FH_* (atomic): the handle below */
	uint8_t handle_type, handle_bytes, room;	/* room: bytes at data[0] */
	unsigned char data[];	/* room bytes for the handle, then the name and a NUL */
};

/*
 * Keeps the handle a first open learnt, if it fits and no other thread is
 * at it; readers see it once fh_state is FH_READY (release / acquire).
 */
static void keep_handle(struct walk_source *ws, const struct walk_reopen *h)
{
	uint8_t expect = FH_NONE;

	if (h->handle_bytes == 0 || h->handle_bytes > ws->room ||
	    !__atomic_compare_exchange_n(&ws->fh_state, &expect, FH_FILLING, false,
					 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return;
	ws->mount = h->mount;
	ws->handle_type = h->handle_type;
	ws->handle_bytes = h->handle_bytes;
	memcpy(ws->data, h->f_handle, h->handle_bytes);
	__atomic_store_n(&ws->fh_state, FH_READY, __ATOMIC_RELEASE);
}

static int walk_source_open(const struct region_source *src, unsigned int flags)
{
	/* The record is the tree's, in its keep arena; only fh_state and what
	 * it guards change after the walk. */
	struct walk_source *ws = (struct walk_source *)src->opaque;
	_Alignas(struct walk_reopen) unsigned char ro_buf[sizeof(struct walk_reopen) + MAX_HANDLE_SZ];
	struct walk_reopen *ro = (struct walk_reopen *)ro_buf;
	struct walk_stamp st = {
		.dev = ws->dev, .ino = ws->ino, .size = src->size,
		.mtime_sec = src->mtime_sec, .mtime_nsec = src->mtime_nsec,
		.ctime_sec = src->ctime_sec, .ctime_nsec = src->ctime_nsec,
		.uid = ws->uid, .layer = ws->layer,
		/* the path route's, should a handle fail */
		.dir_path = src->dir, .name = src->name,
		.check_after = (flags & REGION_OPEN_CHECK_AFTER) != 0,
	};
	int fd;

	if (__atomic_load_n(&ws->fh_state, __ATOMIC_ACQUIRE) == FH_READY) {
		ro->mount = ws->mount;
		ro->handle_type = ws->handle_type;
		ro->handle_bytes = ws->handle_bytes;
		memcpy(ro->f_handle, ws->data, ws->handle_bytes);
		st.fh = ro;
		return walk_open_stamp(ws->priv, &st);
	}
	st.dir = ws->dir;
	st.learn = ws->room ? ro : NULL;
	fd = walk_open_stamp(ws->priv, &st);
	if (fd >= 0 && st.learn)
		keep_handle(ws, ro);
	return fd;
}

/* A tree made by hand has no layer to reopen a file from. */
static int by_hand_open(const struct region_source *src, unsigned int flags)
{
	(void)src;
	(void)flags;
	return -EINVAL;
}

/*
 * The path of inode's directory, in keep: the last one's again while the
 * files come from one directory, as they do in tree order.  NULL when out
 * of memory.
 */
static const char *dir_path(struct walk_private *priv, const struct walk_inode *dir)
{
	size_t len, depth;
	char *p;

	if (dir == priv->source_dir)
		return priv->source_dir_path;
	len = walk_path_len(dir, &depth);
	p = walk_arena_chars(&priv->keep, len + 1);
	if (!p)
		return NULL;
	walk_path_fill(dir, len, depth, p);
	priv->source_dir = dir;
	priv->source_dir_path = p;
	return p;
}

int walk_region_source(const struct walk_tree *tree,
		       const struct walk_inode *inode, struct region_source *ret)
{
	const struct walk_reopen *dir = inode->reopen;
	size_t room = dir ? dir->handle_bytes : 0, name_len;
	struct walk_source *ws;
	const char *dpath;
	char *name;

	if (!tree->priv) {
		/* A tree made by hand (tests): no layer to reopen from, and
		 * nowhere to keep a path: the name is the inode's own, and
		 * opaque the inode, so that a test finds its file again. */
		*ret = (struct region_source){
			.open = by_hand_open, .opaque = inode,
			.name = inode->name ? inode->name : "",
			.size = inode->size, .mtime_sec = inode->mtime_sec,
			.mtime_nsec = inode->mtime_nsec,
		};
		return 0;
	}
	if (!inode->parent || inode->parent == inode || !inode->name)
		return -EINVAL;		/* the root is no regular file */
	dpath = dir_path(tree->priv, inode->parent);
	if (!dpath)
		return -ENOMEM;
	name_len = strlen(inode->name);
	ws = walk_arena_alloc8(&tree->priv->keep,
			       offsetof(struct walk_source, data) + room + name_len + 1);
	if (!ws)
		return -ENOMEM;
	*ws = (struct walk_source){
		.priv = tree->priv,
		.dir = inode->walk_flags & WALK_NOT_IN_DIR ? NULL : dir,
		.dev = inode->dev, .ino = inode->ino,
		.uid = inode->uid, .layer = (uint16_t)inode->layer,
		.room = (uint8_t)room,
	};
	name = (char *)ws->data + room;
	memcpy(name, inode->name, name_len + 1);
	*ret = (struct region_source){
		.open = walk_source_open,
		.opaque = ws,
		.dir = dpath,
		.name = name,
		.size = inode->size,
		.mtime_sec = inode->mtime_sec,
		.mtime_nsec = inode->mtime_nsec,
		.ctime_sec = inode->ctime_sec,
		.ctime_nsec = inode->ctime_nsec,
	};
	return 0;
}
