/* SPDX-License-Identifier: MIT */
/*
 * source.h - a regular file of the tree as a region_source: the bridge
 * every builder (erofs/, fat/esp.c) uses so that file data in a region
 * map is reopened through walk_open_data() and checked against the walk.
 */
#ifndef EROFS_NBD_WALK_SOURCE_H
#define EROFS_NBD_WALK_SOURCE_H

#include "overlaywalk/walk.h"
#include "server/region.h"

/* What such a region_source's opaque points at; owned by the caller. */
struct walk_source {
	const struct walk_tree *tree;
	const struct walk_inode *inode;
};

/*
 * Fills *ws and *ret so that ret->open() reopens inode's data with
 * walk_open_data(tree, inode) (-EIO once it changed); name, size, mtime
 * and ctime come from the walk.  ws must outlive the region map the source
 * is registered in (give it to region_map_own() or an owned array).
 * Cannot fail.
 */
void walk_region_source(const struct walk_tree *tree,
			const struct walk_inode *inode, struct walk_source *ws,
			struct region_source *ret);

#endif
