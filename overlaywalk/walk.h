/* SPDX-License-Identifier: MIT */
/*
 * walk.h - overlaywalk: the tree model.
 *
 * walk_tree() reads a directory tree (the merged view of a container root
 * file system) into memory: every entry's name, type, mode, owner, size,
 * mtime with nanoseconds, rdev, hard-link identity, symlink target and
 * every xattr in every namespace.  File contents are not read; each regular
 * file keeps what walk_open_data() needs to reopen it later without a
 * path-based race, and to notice that it changed.
 *
 * The walk resolves nothing but single names relative to directory fds
 * (statx and listxattrat with AT_SYMLINK_NOFOLLOW, openat with
 * O_NOFOLLOW; name_to_handle_at only of a directory's own fd): it never
 * follows a symlink, never leaves the tree, and does not cross into other
 * mounted file systems unless asked to.  Several threads walk different directories at once; the result
 * does not depend on their timing.
 *
 * Inodes and dentries are separate, as in the kernel: hard links are
 * several dentries pointing at one walk_inode.  Everything is deterministic
 * for a given tree: children are sorted bytewise (memcmp, shorter prefix
 * first) and tree->inodes lists inodes in depth-first, sorted order.
 *
 * walk_layers() reads a stack of overlay layer directories (a container
 * image's layers as containers-storage keeps them, or any lowerdir= list)
 * and merges them into the same tree model with the kernel overlayfs's
 * lookup rules (whiteouts, opaque directories, type changes; see
 * docs/design.md, "Layer stacks").  Builders cannot tell the two apart:
 * each inode remembers which layer provides it (walk_inode.layer) and
 * walk_open_data() reopens it there.
 *
 * The module does not log; errors come back as -errno plus the offending
 * path, and warnings (--skip-unreadable) go to a callback.
 */
#ifndef EROFS_NBD_WALK_H
#define EROFS_NBD_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct walk_inode;

struct walk_xattr {
	char *name;		/* full name, NUL-terminated: "security.selinux" */
	uint8_t *value;		/* value_len bytes, not NUL-terminated */
	size_t value_len;
};

struct walk_dentry {
	char *name;		/* 1..255 bytes, neither '/' nor NUL; NUL-terminated */
	size_t name_len;
	struct walk_inode *inode;
};

struct walk_inode {
	/* Identity of the source inode, for hard links and change checks. */
	uint64_t dev, ino;

	uint64_t size;		/* bytes: regular file size, symlink target length, else 0 */
	uint64_t blocks;	/* st_blocks (512-byte units), to spot sparse files */
	int64_t mtime_sec;
	int64_t ctime_sec;	/* status change time: for change checks only */
	uint32_t mtime_nsec;	/* 0..999999999 */
	uint32_t ctime_nsec;
	uint32_t mode;		/* st_mode: S_IFMT type bits and permissions */
	uint32_t uid, gid;
	uint32_t rdev_major, rdev_minor;	/* character and block devices */

	/*
	 * Links inside the tree: for non-directories the number of dentries
	 * pointing here; for directories 2 + the number of subdirectories.
	 */
	uint32_t nlink;

	uint32_t nchildren;	/* S_IFDIR: entries in children */
	uint32_t nxattrs;
	struct walk_xattr *xattrs;	/* sorted by name (strcmp) */
	struct walk_dentry *children;	/* S_IFDIR: sorted bytewise, no "." / ".." */
	char *symlink;		/* S_IFLNK: target, size bytes, NUL-terminated */

	/*
	 * Where the inode is: the directory holding its first dentry (in
	 * tree->inodes order) and that dentry's name.  The root's parent is
	 * itself and its name "".  walk_inode_path() joins them.
	 */
	struct walk_inode *parent;
	const char *name;

	/*
	 * The layer that provides this inode: an index into the stack given
	 * to walk_layers() (0 = the top layer); 0 for walk_tree().
	 */
	uint32_t layer;
	uint32_t walk_flags;	/* private to overlaywalk */

	/* Private to overlaywalk: how walk_open_data() finds the file again. */
	struct walk_reopen *reopen;

	/* Free for the builder's use (e.g. the EROFS nid); walk sets 0. */
	uint64_t priv;
};

struct walk_tree {
	struct walk_inode *root;
	struct walk_inode **inodes;	/* every inode once, root first, depth-first in sorted order */
	size_t ninodes;
	int root_fd;			/* O_PATH|O_DIRECTORY fd of the root (of the
					 * top layer for walk_layers()) */
	/* Private state (mount fd for file handles and the like) follows. */
	struct walk_private *priv;
};

struct walk_opts {
	bool cross_mounts;	/* descend into other mounted file systems */
	bool skip_unreadable;	/* warn and leave out what can't be read */
	bool progress;		/* print progress to stderr (caller checks isatty) */
	/*
	 * Directory walkers at once: 0 for one per CPU (at most
	 * WALK_MAX_THREADS, and fewer where a stack of many layers would
	 * hold more than half of RLIMIT_NOFILE), 1 for none besides the
	 * caller.
	 */
	unsigned int threads;
	/*
	 * Called once per entry left out with skip_unreadable, after the walk,
	 * in tree order (from the calling thread); may be NULL.
	 */
	void (*warn)(void *userdata, const char *path, int err, const char *what);
	/*
	 * Called for every entry once it has been read (name is its dentry
	 * name, "" for the root).  A negative errno rejects an entry the
	 * target format cannot represent, and *ret_what says why: with
	 * skip_unreadable it is left out with a warning, otherwise the walk
	 * fails naming it.  May be NULL.  Called from several threads at
	 * once: it must be thread-safe.  main passes erofs_check_entry().
	 */
	int (*check)(void *userdata, const struct walk_inode *inode,
		     const char *name, size_t name_len, const char **ret_what);
	void *userdata;
};

/* The most directory walkers walk_opts.threads = 0 starts. */
#define WALK_MAX_THREADS 8

/*
 * Walks the directory at path.  On success returns 0 and *ret_tree; free it
 * with walk_tree_free().  On failure returns -errno and, when a particular
 * entry is to blame, sets *ret_errpath to a malloc'ed path relative to the
 * root (caller frees) and *ret_what to a static description of the step
 * that failed ("reading xattrs", "statx", ...): the first such entry in
 * tree order, whatever the walkers' timing.  Errors: -ENOTDIR (path is
 * not a directory), -ENOMEM, -EAGAIN (an entry kept changing while it was
 * read), or the errno of the failing call.
 */
int walk_tree(const char *path, const struct walk_opts *opts,
	      struct walk_tree **ret_tree, char **ret_errpath,
	      const char **ret_what);

/* The most lower layers a stack may have: the kernel's limit
 * (OVL_MAX_STACK), which containers-storage also enforces; an upper
 * layer may come on top, as overlayfs allows. */
#define WALK_MAX_LAYERS 500

/* Which xattr namespace carries a stack's overlay metadata (overlayfs.rst
 * "Non-standard behavior"; the kernel's userxattr mount option). */
enum walk_ovl_ns {
	WALK_OVL_TRUSTED,	/* trusted.overlay.* (rootful stores) */
	WALK_OVL_USER,		/* user.overlay.* (rootless stores, -o userxattr) */
};

/* A stack of layer directories for walk_layers(). */
struct walk_stack {
	const char *const *layers;	/* directories, top first (the order of
					 * lowerdir=, an upper dir first) */
	size_t nlayers;			/* 1..WALK_MAX_LAYERS + 1 (an upper) */
	enum walk_ovl_ns ns;
	/*
	 * Also honour the OCI/AUFS whiteout files that stores with a mount
	 * program (fuse-overlayfs) keep on disk: ".wh.NAME" hides NAME in the
	 * layers below its own, ".wh..wh..opq" makes its directory opaque,
	 * and no ".wh."-name is ever part of the tree.
	 */
	bool aufs_whiteouts;
	/*
	 * Apply user.containers.override_stat (containers-storage's
	 * force_mask) in every layer.  Without it, only in layers whose root
	 * directory carries that xattr, as fuse-overlayfs decides.
	 */
	bool override_stat;
};

/*
 * Merges the layers of stack into one tree, as a read-only overlay mount
 * of them would show it (docs/design.md, "Layer stacks";
 * shared/docs/overlay-layers.md §1): per name, the top-most layer that has
 * it decides; a whiteout (character device 0/0, or an empty regular file
 * with overlay.whiteout) hides the name; only directories merge, down to
 * the first opaque directory (overlay.opaque = "y"), non-directory or
 * whiteout; the overlay's private xattrs of stack->ns are dropped and
 * escaped ones (overlay.overlay.X) unescaped.  Hard links join names that
 * share an inode within one layer; nlink counts the names that stay.
 * user.containers.override_stat replaces owner, mode and type where it
 * applies (see struct walk_stack) and is dropped.
 *
 * Errors as walk_tree(), with *ret_errpath the layer directory joined
 * with the entry's path, plus: -EINVAL (no layers, too many),
 * -EOPNOTSUPP for what only a mount with redirect_dir, metacopy or
 * data-only layers could show (*ret_what names the xattr), -EBADMSG for
 * an override_stat value that cannot be parsed or applied.
 */
int walk_layers(const struct walk_stack *stack, const struct walk_opts *opts,
		struct walk_tree **ret_tree, char **ret_errpath,
		const char **ret_what);

/* Frees a tree and closes its fds.  Accepts NULL. */
void walk_tree_free(struct walk_tree *tree);

/*
 * Frees the tree model (every walk_inode, dentry, name, xattr and symlink
 * target; tree->root and tree->inodes become NULL and ninodes 0) once the
 * builders are done with it.  What walk_region_source() handed out stays
 * valid until walk_tree_free(): the server needs nothing else.
 */
void walk_tree_release_model(struct walk_tree *tree);

/*
 * Returns inode's path relative to the root ("" for the root,
 * "usr/bin/ls"), malloc'ed, for messages; NULL when out of memory.
 */
char *walk_inode_path(const struct walk_inode *inode);

/*
 * Reopens a regular file's data for reading, without following a path that
 * could have been swapped (by its name in its directory, found by the
 * directory's file handle, where possible, else by walking
 * from the root fd of the inode's layer with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV), then checks that it is the same
 * file: dev, ino, size, mtime and ctime must match the walk.  Returns an
 * O_RDONLY|O_CLOEXEC fd, or
 * -EIO if the file was replaced or changed, or another -errno.
 * Thread-safe: the server calls it from several threads.
 */
int walk_open_data(const struct walk_tree *tree, const struct walk_inode *inode);

/*
 * Tells the reopens (walk_open_data(), walk_region_source()'s open()) that
 * the process's effective uid changed (setresuid(), as --user does): they
 * ask for O_NOATIME on the files that uid owns, and read it once rather
 * than per open.  Without this call after a change they still open every
 * file, but may ask for the flag in vain (EPERM, then again without it)
 * or not ask for it.  Thread-safe.
 */
void walk_creds_changed(void);

#endif
