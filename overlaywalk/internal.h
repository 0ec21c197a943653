/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of overlaywalk/ share and nobody else sees:
 * the tree's private state (arenas, mount fds for file handles, the
 * layers' root fds), the per-file reopen record, the walk's shared and
 * per-thread state, and the overlay rules of merge.c.
 */
#ifndef EROFS_NBD_WALK_INTERNAL_H
#define EROFS_NBD_WALK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "overlaywalk/walk.h"

/*
 * A file handle (name_to_handle_at) and the index of a mount fd to decode
 * it against.  The walk takes one per directory that holds regular files
 * (of each layer: the directory a file is listed in), in the keep arena,
 * and a regular file's inode->reopen points at its directory's: the walk
 * spends no system call on a file's own handle.  A file is found again
 * by its name in that directory, opened by handle, then by its own handle
 * once a first open has learnt it (source.c).  Files without a record
 * (inode->reopen == NULL: no handles on that file system, no
 * CAP_DAC_READ_SEARCH) are reopened by path from their layer's root fd.
 */
/* walk_inode.walk_flags: reopen is not the directory of inode->name (a
 * hard link), so that name is not looked up there.  (Bit 0 is walk.c's.) */
#define WALK_NOT_IN_DIR 2u

struct walk_reopen {
	uint16_t mount;		/* index into walk_private.mounts */
	uint8_t handle_type;	/* the kernel's FILEID_* (all fit a byte) */
	uint8_t handle_bytes;	/* at most MAX_HANDLE_SZ (128) */
	unsigned char f_handle[];	/* handle_bytes bytes */
};

/* A mount the tree's files live on, with an fd inside it. */
struct walk_mount {
	int mnt_id;		/* as name_to_handle_at() reports it */
	int fd;
};

/* One chunk of an arena; allocations are carved from data[]. */
struct walk_chunk {
	struct walk_chunk *next;
	size_t used, size;	/* bytes of data[] */
	size_t map_len;		/* bytes mmap'ed for the chunk */
	_Alignas(16) unsigned char data[];
};

/* Memory freed all at once (arena.c); one per walker thread while walking. */
struct walk_arena {
	struct walk_chunk *chunks;	/* the current chunk first */
	bool populate;			/* map chunks populated (soon filled, freed early) */
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
	struct walk_arena model;	/* inodes, dentries, names, xattrs, symlinks */
	struct walk_arena keep;		/* directory handles; what walk_region_source() hands out */
	struct walk_layer *layers;	/* nlayers, [0] is the top */
	size_t nlayers;
	bool merge;			/* walk_layers(): apply the overlay rules */
	bool aufs_whiteouts;		/* walk_stack.aufs_whiteouts */
	enum walk_ovl_ns ns;
	pthread_mutex_t mounts_lock;	/* mounts, while walkers add to it */
	struct walk_mount *mounts;
	size_t nmounts, mounts_cap;
	bool cross_mounts;
	/* Set (atomically) once open_by_handle_at() fails with EPERM and
	 * the like, so later opens go by path straight away. */
	int handles_broken;
	/* This tree among all trees of the process, never reused: what
	 * reopen.c's per-thread directory fd is keyed on. */
	uint64_t serial;
	/* walk_region_source()'s last directory and its path, in keep:
	 * the files of a directory share one path string. */
	const struct walk_inode *source_dir;
	const char *source_dir_path;
};

/* Open-addressing hash table of inodes by (layer, dev, ino), for hard links. */
struct walk_links {
	struct walk_inode **slots;	/* cap slots, NULL = free */
	size_t cap, n;			/* cap is 0 or a power of two */
};

/* arena.c */
/*
 * Returns size bytes (zeroed, 16-byte aligned) that live until the arena
 * is freed, or NULL when out of memory.
 */
void *walk_arena_alloc(struct walk_arena *a, size_t size);
/* The same, 8-byte aligned. */
void *walk_arena_alloc8(struct walk_arena *a, size_t size);
/* n bytes for characters (unaligned, zeroed); NULL when out of memory. */
char *walk_arena_chars(struct walk_arena *a, size_t n);
/* Copies len bytes of s and a NUL into the arena; NULL when out of memory. */
char *walk_arena_strndup(struct walk_arena *a, const char *s, size_t len);
/* Moves every chunk of from into to (from is empty afterwards). */
void walk_arena_join(struct walk_arena *to, struct walk_arena *from);
/* Frees every chunk; the arena is empty afterwards. */
void walk_arena_free(struct walk_arena *a);

/* hardlink.c */
/* The inode recorded for (layer, dev, ino), or NULL. */
struct walk_inode *walk_links_find(const struct walk_links *links, uint32_t layer,
				   uint64_t dev, uint64_t ino);
/* Adds inode (not yet present).  Returns 0 or -ENOMEM. */
int walk_links_add(struct walk_links *links, struct walk_inode *inode);
void walk_links_free(struct walk_links *links);

/* readxattr.c */
/*
 * Reads every xattr of an entry into inode->xattrs (in arena a), sorted
 * by name: of the directory open as fd when fd >= 0, else of name in
 * dirfd itself, never following a symlink (listxattrat(2) and
 * getxattrat(2) where the kernel has them, else the l*xattr() calls on
 * "/proc/self/fd/DIRFD/NAME").  Returns 0 or -errno (-ENOMEM, or the
 * errno of the failing call); file systems without xattr support give 0
 * xattrs.
 */
int walk_read_xattrs(struct walk_arena *a, int fd, int dirfd, const char *name,
		     struct walk_inode *inode);
/* For tests: read by name through /proc as kernels before 6.13 must (on),
 * or use the *xattrat calls again when the kernel has them (off). */
void walk_xattrat_disable(bool on);

/* reopen.c */
/* The mount a walker found last, so that it need not take mounts_lock. */
struct walk_mount_hint {
	int mnt_id;
	uint32_t idx;		/* index into walk_private.mounts */
	bool valid;
};

/*
 * Records a file handle for the directory open as dirfd (O_RDONLY, kept as
 * the mount fd for open_by_handle_at() when its mount is new) in *ret,
 * allocated in a (the keep arena: it outlives the model).  Sets *ret to
 * NULL when the file system cannot encode handles.  hint is the calling
 * walker's own.  Returns 0 or -ENOMEM / -EMFILE and the like.
 * Thread-safe.
 */
int walk_record_dir_handle(struct walk_private *priv, struct walk_arena *a,
			   struct walk_mount_hint *hint, int dirfd,
			   const struct walk_reopen **ret);

/*
 * What walk_open_data() checks a reopened file against, and how it finds
 * it: the walk's identity and times, its layer, its own handle when known
 * (fh), else the handle of its directory (dir) and its name there, and its
 * path from the layer's root.  check_after: the caller compares size and
 * times itself after reading (REGION_OPEN_CHECK_AFTER), so a file opened
 * by its own handle, which is that inode, is not looked at again.  learn:
 * NULL, or room for a handle of MAX_HANDLE_SZ bytes that a first open
 * through dir fills with the file's own handle (handle_bytes 0 if none).
 */
struct walk_stamp {
	uint64_t dev, ino, size;
	int64_t mtime_sec, ctime_sec;
	uint32_t mtime_nsec, ctime_nsec;
	uint32_t uid, layer;
	const struct walk_reopen *fh, *dir;
	const char *name;	/* in dir; with dir_path, the path if path is NULL */
	const char *dir_path;	/* relative to the layer's root; "" or NULL: the root */
	const char *path;	/* relative to the layer's root */
	struct walk_reopen *learn;
	bool check_after;
};
/* walk_inode_path() in two steps: its length (no NUL) and depth ... */
size_t walk_path_len(const struct walk_inode *inode, size_t *ret_depth);
/* ... and the path itself, len bytes and a NUL, at p. */
void walk_path_fill(const struct walk_inode *inode, size_t len, size_t depth, char *p);

/* walk_open_data() for a stamp; the same contract but for check_after. */
int walk_open_stamp(const struct walk_private *priv, const struct walk_stamp *st);

/* ---- the walk's working state, shared by walk.c, list.c and layers.c ---- */

struct walk_ovl_marks;

#define WALK_STATX_WANT (STATX_BASIC_STATS | STATX_MNT_ID)

/* One directory of one layer, in a merged directory's stack. */
struct dir_layer {
	uint32_t layer;			/* index into priv->layers */
	int fd;				/* O_RDONLY | O_DIRECTORY, owned */
	/* Its ctime when opened, before it was listed: a rename, link or
	 * unlink in it since moves it (walk.c, verify_dir()). */
	int64_t ctime_sec;
	uint32_t ctime_nsec;
	/* Its handle (walk_record_dir_handle()), taken for its first regular
	 * file; NULL without handles.  Only the walker reading it sets it. */
	const struct walk_reopen *handle;
	bool handle_taken;
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
		uint64_t key;		/* the first 8 bytes, big-endian, zero-padded */
		uint32_t pos;		/* index into the directory's dir_stack */
		uint8_t d_type;		/* from getdents64: DT_DIR, ..., DT_UNKNOWN */
		bool whiteout;		/* AUFS ".wh.NAME" of pos: name is NAME */
	} *refs;
	size_t n, cap;
};

/* A directory read but not yet walked: its layer directories and names. */
struct walk_task {
	struct walk_task *next;		/* in walk_shared.queue */
	struct walk_inode *dir;
	struct dir_stack st;
	struct name_list names;
};

/* An entry left out with skip_unreadable, reported after the walk. */
struct walk_warning {
	char *key;			/* the merged path: sorts in tree order */
	char *path;			/* what the message names */
	int err;
	const char *what;
};

/* What the walkers of one walk_tree() or walk_layers() call share. */
struct walk_shared {
	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t cond;		/* queue grew, or the walk is over */
	struct walk_task *queue;	/* directories to walk, last in first out */
	size_t queue_len;
	unsigned int nthreads;		/* walkers */
	unsigned int busy;		/* walkers walking a directory */
	size_t queued_fds, max_queued_fds;	/* directory fds held by the queue */
	struct walk_links links;	/* hard-link candidates */
	struct walk_warning *warnings;
	size_t nwarnings, warnings_cap;
	int err;			/* the walk's failure, or 0 */
	char *errpath;
	const char *what;
	bool stop;			/* a walker failed: the others stop (atomic) */
	size_t nentries;		/* progress, in steps of a walker's batch (atomic) */
	size_t ninodes;			/* inodes in the tree, once the walkers are done */
	int64_t last_progress_ns;	/* (atomic) */
};

/* One walker's state (one thread). */
struct walk_ctx {
	struct walk_shared *sh;
	struct walk_tree *tree;
	struct walk_private *priv;
	const struct walk_opts *opts;
	struct walk_arena arena;	/* joined into priv->model at the end */
	struct walk_arena keep;		/* joined into priv->keep at the end */

	bool have_mnt_id;		/* the kernel fills stx_mnt_id */
	bool reads_anything;		/* CAP_DAC_READ_SEARCH or _OVERRIDE in effect */

	char *path;			/* current entry, relative to the root */
	size_t path_len, path_cap;
	uint32_t cur_layer;		/* the layer being read, for messages */
	struct walk_mount_hint mount_hint;
	/* Counted here, not in walk_shared: a cache line every walker wrote
	 * per entry would bounce between their CPUs. */
	size_t nentries;		/* entries not yet added to sh->nentries */
	size_t ninodes;			/* inodes this walker added to the tree */
};

/* walk.c */
/* The walk fails at the current entry: remembers its path (the layer's
 * directory joined with it, when merging) and what; returns err. */
int walk_fail_here(struct walk_ctx *ctx, int err, const char *what);
/* As walk_fail_here(), unless opts->skip_unreadable: then records a
 * warning and returns 0 (the caller leaves the entry out).  -ENOMEM is
 * never skipped. */
int walk_fail_or_skip(struct walk_ctx *ctx, int err, const char *what);

/* list.c */
void walk_names_free(struct name_list *l);
/* name_ref.key of a name of len bytes: its first 8 bytes, big-endian,
 * zero-padded. */
uint64_t walk_name_key(const char *name, size_t len);
/* Bytewise: memcmp on the common prefix, then the shorter name first.
 * Both keys must be set. */
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
/* Appends (layer, fd) whose statx is *stx, taking fd; closes it on
 * failure.  0 or -ENOMEM. */
int walk_dir_stack_push(struct dir_stack *st, uint32_t layer, int fd,
			const struct statx *stx);
/* Whether the entry statx'ed as stx lies on another mount than its
 * layer's root. */
bool walk_on_other_mount(const struct walk_ctx *ctx, uint32_t layer,
			 const struct statx *stx);
/*
 * Opens the directory name in dirfd (O_RDONLY, never through a symlink)
 * and statx'es the open fd into *stx, which then describes what the fd
 * lists.  An automount point (not mounted yet) is opened through "." of
 * an O_PATH fd, so nothing is mounted.  Returns the fd or -errno
 * (-ENOTDIR if it is no directory any more).
 */
int walk_open_dir(int dirfd, const char *name, const struct statx *seen,
		  struct statx *stx);
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
 * whiteout.  is_root: the root is never looked up, so its redirect is
 * not read either.  0 or the walk's error (a refused or malformed mark
 * fails the walk even with skip_unreadable: leaving the name out could
 * show what it hides).
 */
int walk_overlay_rules(struct walk_ctx *ctx, struct walk_inode *ino, bool is_root,
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
