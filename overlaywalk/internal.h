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
#include <sys/stat.h>
#include <time.h>

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

/* ---- the walk's working state, shared by walk.c, list.c and layers.c ---- */

struct walk_ovl_marks;

#define WALK_STATX_WANT (STATX_BASIC_STATS | STATX_MNT_ID)

/* One walk_tree() or walk_layers() call. */
struct walk_ctx {
	struct walk_tree *tree;
	struct walk_private *priv;
	const struct walk_opts *opts;
	size_t inodes_cap;

	bool have_mnt_id;		/* the kernel fills stx_mnt_id */
	bool reads_anything;		/* CAP_DAC_READ_SEARCH or _OVERRIDE in effect */

	struct walk_links links;	/* hard-link candidates */

	char *path;			/* current entry, relative to the root */
	size_t path_len, path_cap;
	uint32_t cur_layer;		/* the layer being read, for messages */

	size_t nentries;		/* progress */
	struct timespec last_progress;

	char *errpath;			/* the entry that failed the walk */
	const char *what;
};

/* One directory of one layer, in a merged directory's stack. */
struct dir_layer {
	uint32_t layer;			/* index into priv->layers */
	int fd;				/* O_RDONLY | O_DIRECTORY, owned */
};

/* A merged directory's stack of layer directories, top first. */
struct dir_stack {
	struct dir_layer *v;
	size_t n, cap;
};

/* A merged directory's names, sorted by name, then layer. */
struct name_list {
	char *buf;		/* names, each NUL-terminated */
	size_t buf_len, buf_cap;
	struct name_ref {
		union {
			size_t off;	/* while listing */
			const char *name;	/* once sorted */
		};
		size_t len;
		uint32_t pos;		/* index into the directory's dir_stack */
		uint8_t d_type;		/* from getdents64: DT_DIR, ..., DT_UNKNOWN */
		bool whiteout;		/* AUFS ".wh.NAME" of pos: name is NAME */
	} *refs;
	size_t n, cap;
};

/* walk.c */
/* The walk fails at the current entry: remembers its path (the layer's
 * directory joined with it, when merging) and what; returns err. */
int walk_fail_here(struct walk_ctx *ctx, int err, const char *what);
/* As walk_fail_here(), unless opts->skip_unreadable: then warns and
 * returns 0 (the caller leaves the entry out).  -ENOMEM is never skipped. */
int walk_fail_or_skip(struct walk_ctx *ctx, int err, const char *what);

/* list.c */
void walk_names_free(struct name_list *l);
/* Bytewise: memcmp on the common prefix, then the shorter name first. */
int walk_name_cmp(const struct name_ref *x, const struct name_ref *y);
/*
 * Lists every layer directory of st into *l and sorts it by name, then
 * layer (AUFS whiteouts right after their own layer's entry).  0 or
 * -errno, with ctx->cur_layer set to the layer that failed.
 */
int walk_list_stack(struct walk_ctx *ctx, const struct dir_stack *st,
		    struct name_list *l);

/* layers.c */
void walk_dir_stack_free(struct dir_stack *st);
/* Appends (layer, fd), taking fd; closes it on failure.  0 or -ENOMEM. */
int walk_dir_stack_push(struct dir_stack *st, uint32_t layer, int fd);
/* Whether the entry statx'ed as stx lies on another mount than its
 * layer's root. */
bool walk_on_other_mount(const struct walk_ctx *ctx, uint32_t layer,
			 const struct statx *stx);
/*
 * Opens the root of every layer of stack, notes its mount and (merging)
 * whether its files carry user.containers.override_stat; *ret_top is the
 * top root's statx.  0 or the walk's error.
 */
int walk_open_layers(struct walk_ctx *ctx, const struct walk_stack *stack,
		     bool force_override, struct statx *ret_top);
/*
 * The overlay rules for an entry just read from layer ino->layer: takes
 * the overlay's own xattrs out of ino (into *marks), applies
 * user.containers.override_stat where it counts, sets *ret_whiteout for a
 * whiteout.  0 or the walk's error (a refused or malformed mark fails the
 * walk even with skip_unreadable: leaving the name out could show what it
 * hides).
 */
int walk_overlay_rules(struct walk_ctx *ctx, struct walk_inode *ino,
		       struct walk_ovl_marks *marks, bool *ret_whiteout);
/* Whether the directory open as fd stops the merge below it:
 * overlay.opaque = "y", or in AUFS form a ".wh..wh..opq" inside. */
bool walk_dir_is_opaque(const struct walk_ctx *ctx, int fd, char opaque);
/*
 * Adds to *st the directories named like the current entry in the layers
 * below the one that provides it (group[1..n-1], positions in the parent's
 * stack pst), until a non-directory, a whiteout or an opaque directory
 * stops the merge.  0, also when a lower directory is left out with
 * skip_unreadable (*ret_skipped set), or the walk's error.
 */
int walk_gather_lower_dirs(struct walk_ctx *ctx, const struct dir_stack *pst,
			   const struct name_ref *group, size_t n,
			   struct dir_stack *st, bool *ret_skipped);

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
