/* SPDX-License-Identifier: MIT */
/* source.c - see source.h. */
#include "overlaywalk/source.h"

static int walk_source_open(const struct region_source *src)
{
	const struct walk_source *ws = src->opaque;

	return walk_open_data(ws->tree, ws->inode);
}

void walk_region_source(const struct walk_tree *tree,
			const struct walk_inode *inode, struct walk_source *ws,
			struct region_source *ret)
{
	*ws = (struct walk_source){ .tree = tree, .inode = inode };
	*ret = (struct region_source){
		.open = walk_source_open,
		.opaque = ws,
		.name = inode->path ? inode->path : "",
		.size = inode->size,
		.mtime_sec = inode->mtime_sec,
		.mtime_nsec = inode->mtime_nsec,
		.ctime_sec = inode->ctime_sec,
		.ctime_nsec = inode->ctime_nsec,
	};
}
