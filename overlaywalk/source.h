/* SPDX-License-Identifier: MIT */
/*
 * source.h - a regular file of the tree as a region_source: the bridge
 * every builder (erofs/, fat/esp.c) uses so that file data in a region
 * map is reopened through walk_open_data()'s rules and checked against
 * the walk.  What that takes (path, handle, identity) is kept by the
 * tree apart from its model, so the model can be freed once the image is
 * laid out (walk_tree_release_model()).
 */
#ifndef EROFS_NBD_WALK_SOURCE_H
#define EROFS_NBD_WALK_SOURCE_H

#include "overlaywalk/walk.h"
#include "server/region.h"

/*
 * Fills *ret so that ret->open() reopens inode's data as
 * walk_open_data(tree, inode) would: -EIO once it changed, except that
 * with REGION_OPEN_CHECK_AFTER a reopen by handle leaves that to the
 * caller's region_source_check().  The directory (its path relative to
 * the root; one string for each run of a directory's files), name, size,
 * mtime and ctime come from the walk.
 * What ret->opaque, ret->dir and ret->name point at is kept by the tree until
 * walk_tree_free(), which must come after the region map's last use.
 * For a tree made by hand (tree->priv NULL: tests, fuzzing) ret->opaque is
 * the inode itself, ret->name its own name and ret->open() fails with
 * -EINVAL.
 * Not thread-safe (builders run one at a time).  Returns 0, -ENOMEM, or
 * -EINVAL for an inode without a parent and a name (the root).
 */
int walk_region_source(const struct walk_tree *tree,
		       const struct walk_inode *inode, struct region_source *ret);

#endif
