/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of overlaywalk/ share and nobody else sees:
 * the tree's private state (string arena, mount fds for file handles, the
 * layers' root fds), the per-file reopen record, and the overlay rules of
 * merge.c.
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

/* One layer of the stack; walk_tree() has one, read without overlay rules. */
struct walk_layer {
	char *path;		/* as the caller gave it, for messages (malloc'ed) */
	int root_fd;		/* O_PATH | O_DIRECTORY */
	uint64_t mnt_id;	/* of the root, when the kernel reports mount ids */
	uint64_t dev;		/* of the root */
	bool override_stat;	/* user.containers.override_stat applies here */
};

struct walk_private {
	struct walk_chunk *chunks;	/* arena: inodes, names, paths, xattrs */
	struct walk_layer *layers;	/* nlayers, [0] is the top */
	size_t nlayers;
	bool merge;			/* walk_layers(): apply the overlay rules */
	bool aufs_whiteouts;		/* walk_stack.aufs_whiteouts */
	enum walk_ovl_ns ns;
	struct walk_mount *mounts;
	size_t nmounts, mounts_cap;
	bool cross_mounts;
	/* Set (atomically) once open_by_handle_at() fails with EPERM and
	 * the like, so later opens go by path straight away. */
	int handles_broken;
};

/* Open-addressing hash table of inodes by (layer, dev, ino), for hard links. */
struct walk_links {
	struct walk_inode **slots;	/* cap slots, NULL = free */
	size_t cap, n;			/* cap is 0 or a power of two */
};

/* arena.c */
void *walk_arena_alloc(struct walk_private *priv, size_t size);
char *walk_arena_strndup(struct walk_private *priv, const char *s, size_t len);
void walk_arena_free(struct walk_private *priv);

/* hardlink.c */
/* The inode recorded for (layer, dev, ino), or NULL. */
struct walk_inode *walk_links_find(const struct walk_links *links, uint32_t layer,
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

/* merge.c: the overlay's rules for one entry (overlay-layers.md §1-2) */

/* What the overlay's own xattrs on an entry say. */
struct walk_ovl_marks {
	char opaque;		/* overlay.opaque if exactly one byte, else 0 */
	bool whiteout;		/* overlay.whiteout is present (any value) */
	bool redirect;		/* overlay.redirect with a value */
	bool metacopy;		/* overlay.metacopy is present */
	/* user.containers.override_stat's value (in the arena), or NULL */
	const uint8_t *override;
	size_t override_len;
};

/* What user.containers.override_stat records: "UID:GID:MODE[:TYPE]". */
struct walk_override {
	uint32_t uid, gid;
	uint32_t mode;		/* S_IFMT bits of TYPE (0 if absent) | 07777 bits */
	uint32_t rdev_major, rdev_minor;	/* block-MAJ-MIN, char-MAJ-MIN */
};

/*
 * Reads the overlay marks of inode's xattrs into *ret and removes from
 * inode->xattrs the overlay's private ones (prefix ns + "overlay."),
 * renaming escaped ones (ns + "overlay.overlay.X" -> ns + "overlay.X")
 * and keeping the list sorted; with take_override, also takes out
 * user.containers.override_stat.  Cannot fail.
 */
void walk_ovl_scan_xattrs(enum walk_ovl_ns ns, bool take_override,
			  struct walk_inode *inode, struct walk_ovl_marks *ret);

/*
 * Parses an override_stat value (len bytes, no NUL needed), as
 * containers-storage writes it.  Returns 0 or -EBADMSG.
 */
int walk_override_parse(const uint8_t *value, size_t len, struct walk_override *ret);

/*
 * Gives inode the owner, mode and type of *o: a regular file may become a
 * FIFO, socket or device (force_mask stores keep those as empty files);
 * any other change of type is -EBADMSG.  Returns 0 or -EBADMSG.
 */
int walk_override_apply(struct walk_inode *inode, const struct walk_override *o);

/* Whether the entry (after any override) is a whiteout: a character device
 * 0/0, or an empty regular file carrying overlay.whiteout. */
bool walk_ovl_is_whiteout(const struct walk_inode *inode,
			  const struct walk_ovl_marks *marks);

/*
 * Classifies a name read from a layer directory of an AUFS-form stack:
 * WALK_AUFS_NONE (an ordinary name), WALK_AUFS_OPAQUE (".wh..wh..opq"),
 * WALK_AUFS_META (another ".wh..wh." name, AUFS bookkeeping: ignored) or
 * WALK_AUFS_WHITEOUT (".wh.NAME": *ret_name, *ret_len are NAME).
 */
enum walk_aufs_kind { WALK_AUFS_NONE, WALK_AUFS_OPAQUE, WALK_AUFS_META, WALK_AUFS_WHITEOUT };
enum walk_aufs_kind walk_aufs_classify(const char *name, size_t len,
				       const char **ret_name, size_t *ret_len);

#define WALK_AUFS_OPAQUE_NAME ".wh..wh..opq"
#define WALK_OVERRIDE_XATTR "user.containers.override_stat"

#endif
