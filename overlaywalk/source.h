/* SPDX-License-Identifier: MIT */
/*
 * source.h - a regular file of the tree as a region_source: the bridge
 * every builder (erofs/, fat/esp.c) uses so that file data in a region
 * map is reopened through walk_open_data()'s rules and checked against
 * the walk.  A walk_source holds everything that takes, so the tree
 * model can be freed once the image is laid out
 * (walk_tree_release_model()).
 */
#ifndef EROFS_NBD_WALK_SOURCE_H
#define EROFS_NBD_WALK_SOURCE_H

#include "overlaywalk/walk.h"
#include "server/region.h"

/* What such a region_source's opaque points at; owned by the caller. */
struct walk_source {
	const struct walk_tree *tree;
	const struct walk_reopen *reopen;	/* kept by the tree; NULL: by path */
	const char *path;		/* kept by the tree; also the source's name */
	uint64_t dev, ino;
	uint32_t uid, layer;
};

/*
 * Fills *ws and *ret so that ret->open() reopens inode's data as
 * walk_open_data(tree, inode) would (-EIO once it changed); the name (the
 * path relative to the root), size, mtime and ctime come from the walk.
 * The path and handle are copied into memory the tree keeps until
 * walk_tree_free().  ws must outlive the region map the source is
 * registered in (give it to region_map_own() or an owned array).  Not
 * thread-safe (builders run one at a time).  Returns 0 or -ENOMEM.
 */
int walk_region_source(const struct walk_tree *tree,
		       const struct walk_inode *inode, struct walk_source *ws,
		       struct region_source *ret);

#endif
