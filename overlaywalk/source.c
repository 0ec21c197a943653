/* SPDX-License-Identifier: MIT */
/* source.c - see source.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/source.h"

static int walk_source_open(const struct region_source *src)
{
	const struct walk_source *ws = src->opaque;
	const struct walk_stamp st = {
		.dev = ws->dev, .ino = ws->ino, .size = src->size,
		.mtime_sec = src->mtime_sec, .mtime_nsec = src->mtime_nsec,
		.ctime_sec = src->ctime_sec, .ctime_nsec = src->ctime_nsec,
		.uid = ws->uid, .layer = ws->layer, .reopen = ws->reopen,
		.path = ws->path,
	};

	if (!ws->tree->priv)
		return -EINVAL;	/* a tree made by hand: nothing to open */
	return walk_open_stamp(ws->tree->priv, &st);
}

int walk_region_source(const struct walk_tree *tree,
		       const struct walk_inode *inode, struct walk_source *ws,
		       struct region_source *ret)
{
	struct walk_reopen *ro = NULL;
	struct walk_arena *keep;
	char *path;

	if (!tree->priv) {
		/* A tree made by hand (tests): no layer to reopen from, and
		 * nowhere to keep a path: the name is the inode's own. */
		const char *name = inode->name ? inode->name : "";

		*ws = (struct walk_source){ .tree = tree, .path = name };
		*ret = (struct region_source){
			.open = walk_source_open, .opaque = ws, .name = name,
			.size = inode->size, .mtime_sec = inode->mtime_sec,
			.mtime_nsec = inode->mtime_nsec,
		};
		return 0;
	}
	keep = &tree->priv->keep;
	path = walk_arena_path(keep, inode);
	if (!path)
		return -ENOMEM;
	if (inode->reopen) {
		size_t n = sizeof(*ro) + inode->reopen->handle_bytes;

		ro = walk_arena_alloc(keep, n);
		if (!ro)
			return -ENOMEM;
		memcpy(ro, inode->reopen, n);
	}
	*ws = (struct walk_source){
		.tree = tree, .reopen = ro, .path = path, .dev = inode->dev,
		.ino = inode->ino, .uid = inode->uid, .layer = inode->layer,
	};
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
