/* SPDX-License-Identifier: MIT */
/*
 * opendata.c - walk_open_data() (walk.h): a regular file of the tree
 * opened again for its data, through reopen.c's walk_open_stamp() with
 * what the walk recorded.  Its own translation unit, so that a test or
 * fuzz harness that serves files of a tree made by hand can link its own
 * walk_open_data() (tests/fuzz/tree.c) and still use the rest of
 * overlaywalk.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "overlaywalk/internal.h"
#include "server/cleanup.h"

int walk_open_data(const struct walk_tree *tree, const struct walk_inode *inode)
{
	_cleanup_free_ char *path = NULL;

	if (!tree || !inode || !S_ISREG(inode->mode))
		return -EINVAL;
	path = walk_inode_path(inode);
	if (!path)
		return -ENOMEM;
	struct walk_stamp st = {
		.dev = inode->dev, .ino = inode->ino, .size = inode->size,
		.mtime_sec = inode->mtime_sec, .mtime_nsec = inode->mtime_nsec,
		.ctime_sec = inode->ctime_sec, .ctime_nsec = inode->ctime_nsec,
		.uid = inode->uid, .layer = inode->layer,
		.dir = inode->walk_flags & WALK_NOT_IN_DIR ? NULL : inode->reopen,
		.name = inode->name, .path = path,
	};
	return walk_open_stamp(tree->priv, &st);
}
