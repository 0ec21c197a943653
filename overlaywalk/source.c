/* SPDX-License-Identifier: MIT */
/*
 * source.c - see source.h.  One record per file in the tree's keep
 * arena: what walk_open_stamp() needs beyond the region_source's own
 * size and times, then the handle, then the path (also the source's
 * name): about 85 bytes for a file of /usr/share.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/source.h"

struct walk_source {
	const struct walk_private *priv;
	uint64_t dev, ino;
	uint32_t uid;
	uint16_t layer;
	uint8_t handle_type, handle_bytes;	/* handle_bytes 0: no handle */
	uint16_t mount;
	unsigned char data[];	/* handle_bytes of handle, then the path and a NUL */
};

static int walk_source_open(const struct region_source *src, unsigned int flags)
{
	const struct walk_source *ws = src->opaque;
	_Alignas(struct walk_reopen) unsigned char ro_buf[sizeof(struct walk_reopen) + 255];
	struct walk_reopen *ro = (struct walk_reopen *)ro_buf;
	struct walk_stamp st = {
		.dev = ws->dev, .ino = ws->ino, .size = src->size,
		.mtime_sec = src->mtime_sec, .mtime_nsec = src->mtime_nsec,
		.ctime_sec = src->ctime_sec, .ctime_nsec = src->ctime_nsec,
		.uid = ws->uid, .layer = ws->layer, .path = src->name,
		.check_after = (flags & REGION_OPEN_CHECK_AFTER) != 0,
	};

	if (ws->handle_bytes) {
		ro->mount = ws->mount;
		ro->handle_type = ws->handle_type;
		ro->handle_bytes = ws->handle_bytes;
		memcpy(ro->f_handle, ws->data, ws->handle_bytes);
		st.reopen = ro;
	}
	return walk_open_stamp(ws->priv, &st);
}

/* A tree made by hand has no layer to reopen a file from. */
static int by_hand_open(const struct region_source *src, unsigned int flags)
{
	(void)src;
	(void)flags;
	return -EINVAL;
}

int walk_region_source(const struct walk_tree *tree,
		       const struct walk_inode *inode, struct region_source *ret)
{
	const struct walk_reopen *ro = inode->reopen;
	size_t hb = ro ? ro->handle_bytes : 0, len, depth;
	struct walk_source *ws;
	char *path;

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
	len = walk_path_len(inode, &depth);
	ws = walk_arena_alloc8(&tree->priv->keep,
			       offsetof(struct walk_source, data) + hb + len + 1);
	if (!ws)
		return -ENOMEM;
	*ws = (struct walk_source){
		.priv = tree->priv, .dev = inode->dev, .ino = inode->ino,
		.uid = inode->uid, .layer = (uint16_t)inode->layer,
		.handle_type = ro ? ro->handle_type : 0, .handle_bytes = (uint8_t)hb,
		.mount = ro ? ro->mount : 0,
	};
	if (hb)
		memcpy(ws->data, ro->f_handle, hb);
	path = (char *)ws->data + hb;
	walk_path_fill(inode, len, depth, path);
	*ret = (struct region_source){
		.open = walk_source_open,
		.opaque = ws,
		.name = path,
		.size = inode->size,
		.mtime_sec = inode->mtime_sec,
		.mtime_nsec = inode->mtime_nsec,
		.ctime_sec = inode->ctime_sec,
		.ctime_nsec = inode->ctime_nsec,
	};
	return 0;
}
