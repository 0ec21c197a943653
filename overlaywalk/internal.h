/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of overlaywalk/ share and nobody else sees:
 * the tree's private state (string arena, mount fds for file handles), the
 * per-file reopen record, and the walk's working context.
 */
#ifndef EROFS_NBD_WALK_INTERNAL_H
#define EROFS_NBD_WALK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "overlaywalk/walk.h"

/*
 * How walk_open_data() finds a regular file again: a file handle
 * (name_to_handle_at) and the index of a mount fd to decode it against.
 * Files without a usable handle have no record (inode->reopen == NULL)
 * and are reopened by path from the root fd.
 */
struct walk_reopen {
	uint32_t mount;		/* index into walk_private.mounts */
	int handle_type;
	uint32_t handle_bytes;
	unsigned char f_handle[];	/* handle_bytes bytes */
};

/* A mount the tree's files live on, with an O_PATH fd inside it. */
struct walk_mount {
	int mnt_id;		/* as name_to_handle_at() reports it */
	int fd;
};

/* One chunk of the arena; allocations are carved from data[]. */
struct walk_chunk {
	struct walk_chunk *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
};

struct walk_private {
	struct walk_chunk *chunks;	/* arena: inodes, names, paths, xattrs */
	struct walk_mount *mounts;
	size_t nmounts, mounts_cap;
	bool cross_mounts;
	/* Set (atomically) once open_by_handle_at() fails with EPERM and
	 * the like, so later opens go by path straight away. */
	int handles_broken;
};

/* Open-addressing hash table of inodes by (dev, ino), for hard links. */
struct walk_links {
	struct walk_inode **slots;	/* cap slots, NULL = free */
	size_t cap, n;			/* cap is 0 or a power of two */
};

/* arena.c */
void *walk_arena_alloc(struct walk_private *priv, size_t size);
char *walk_arena_strndup(struct walk_private *priv, const char *s, size_t len);
void walk_arena_free(struct walk_private *priv);

/* hardlink.c */
/* The inode recorded for (dev, ino), or NULL. */
struct walk_inode *walk_links_find(const struct walk_links *links,
				   uint64_t dev, uint64_t ino);
/* Adds inode (not yet present).  Returns 0 or -ENOMEM. */
int walk_links_add(struct walk_links *links, struct walk_inode *inode);
void walk_links_free(struct walk_links *links);

/* readxattr.c */
/*
 * Reads every xattr of the inode fd refers to into inode->xattrs, sorted
 * by name.  fd may be an O_PATH fd (is_opath): then the calls go through
 * /proc/self/fd/N, which reaches the inode itself even for a symlink.
 * Returns 0 or -errno (-ENOMEM, or the errno of the failing call);
 * file systems without xattr support give 0 xattrs.
 */
int walk_read_xattrs(struct walk_private *priv, int fd, bool is_opath,
		     struct walk_inode *inode);

/* reopen.c */
/*
 * Records a file handle for the regular file opath_fd (an O_PATH fd)
 * refers to, in inode->reopen; dirfd is its parent directory (O_RDONLY),
 * kept as the mount fd for open_by_handle_at().  Leaves inode->reopen
 * NULL when the file system cannot encode handles or the parent is on
 * another mount.  Returns 0 or -ENOMEM / -EMFILE and the like.
 */
int walk_record_handle(struct walk_tree *tree, int dirfd, int opath_fd,
		       struct walk_inode *inode);

#endif
