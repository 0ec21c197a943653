/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of erofs/ share: the builder context, the
 * per-inode layout record, and the prototypes of each phase.
 *
 * erofs_build() runs these phases (build.c):
 *   check     every inode and name is representable      check.c
 *   dir       nlink, parents, sorted dirents, dir sizes   dir.c
 *   xattr     name indexes, shared area, inline sizes     xattr.c
 *   layout    build time, inode versions, nids, blkaddrs  layout.c
 *   serialise superblock, inodes, xattrs, dirents         super.c inode.c dir.c xattr.c
 *   emit      regions in image order                      build.c
 * Every inode of the tree is tree->inodes[i]; walk_inode.priv holds i.
 */
#ifndef EROFS_NBD_EROFS_INTERNAL_H
#define EROFS_NBD_EROFS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "erofs/erofs.h"
#include "erofs/erofs_fs.h"

#define EROFS_NO_INDEX	UINT32_MAX

/* One directory entry of the image, "." and ".." included (§8). */
struct erofs_dentry {
	const uint8_t *name;
	uint32_t ino;		/* index into tree->inodes */
	uint8_t name_len;	/* 1..255 */
	uint8_t file_type;	/* EROFS_FT_* */
};

/* One xattr of one inode, parsed (§7.1, §7.2). */
struct erofs_xattr {
	const uint8_t *suffix;	/* name after the prefix */
	const uint8_t *value;
	uint16_t value_len;
	uint8_t suffix_len;
	uint8_t index;		/* EROFS_XATTR_INDEX_* */
	uint32_t shared;	/* index into ctx->shared, or EROFS_NO_INDEX */
};

/* A (name, value) pair stored once in the shared area (§7.3). */
struct erofs_shared_xattr {
	uint64_t hash;
	uint32_t xattr;		/* first occurrence, index into ctx->xattrs */
	uint32_t users;		/* inodes carrying it */
	uint32_t id;		/* byte offset from xattr_blkaddr * bs, / 4 */
};

/* Layout of one inode. */
struct erofs_inode {
	struct walk_inode *wi;
	uint64_t nid;
	uint64_t size;		/* i_size in bytes (directories: computed) */
	uint64_t nblocks;	/* whole data blocks at blkaddr (not the tail) */
	uint64_t mem_off;	/* membuf offset of inode + xattrs (+ memory tail) */
	uint64_t buf_off;	/* dir/symlink FLAT blocks: offset in ctx->blockbuf */
	uint32_t blkaddr;	/* first data block, if nblocks > 0 */
	uint32_t tail;		/* FLAT_INLINE tail bytes; 0 for FLAT_PLAIN */
	uint32_t xattr_size;	/* inline xattr area bytes (§7.1) */
	uint32_t xattr_first;	/* index into ctx->xattrs */
	uint32_t nxattrs;
	uint32_t nshared;	/* of those, how many are shared refs */
	uint32_t filter;	/* h_name_filter (§7.5) */
	uint32_t nlink;		/* §5.7, counted from the tree */
	uint32_t parent;	/* directories: index of the parent */
	uint32_t dent_first;	/* directories: index into ctx->dents */
	uint32_t ndents;
	uint32_t source;	/* regular files with data: region source id */
	/* Copied from wi by erofs_inode_init(), so that the phases before
	 * serialising read a dense array, not one walk_inode each. */
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint16_t mode;		/* wi->mode (checked to fit) */
	bool big_ids;		/* uid or gid above 0xffff */
	uint8_t extended;	/* inode version (§5.6) */
	uint8_t datalayout;	/* EROFS_INODE_FLAT_PLAIN / _INLINE */
	uint8_t pre_pad;	/* zero bytes in membuf just before mem_off */
	bool sparse;		/* blocks * 512 < size: look for holes */
};

struct erofs_ctx {
	const struct walk_tree *tree;
	const struct erofs_opts *opts;
	unsigned int blkszbits;
	uint32_t bs;			/* block size in bytes */
	size_t ninodes;
	uint32_t root;			/* index of the root inode */
	struct erofs_inode *inodes;	/* ninodes */

	struct erofs_dentry *dents;	/* every directory's entries, sorted */
	size_t ndents;

	struct erofs_xattr *xattrs;	/* every inode's xattrs, inode by inode */
	size_t nxattrs;
	struct erofs_shared_xattr *shared;	/* distinct pairs; users >= 2: stored */
	size_t nshared;
	uint64_t shared_pos;		/* image byte offset of the shared area */
	uint64_t shared_mem_off;	/* its offset in membuf */
	uint32_t shared_size;		/* bytes, multiple of 32 */
	bool any_filter;

	int64_t build_time;		/* seconds (§5.5) */
	uint32_t build_time_nsec;

	uint32_t *order;		/* inode indexes in placement order */
	uint64_t meta_end;		/* bytes: end of metadata area, block aligned */
	uint64_t blocks;		/* image size in blocks */
	uint8_t *membuf;		/* metadata bytes the map serves */
	uint64_t membuf_size;
	uint8_t *blockbuf;		/* directory and symlink FLAT blocks */
	uint64_t blockbuf_size;
	uint32_t blockbuf_blkaddr;	/* first block of blockbuf */
};

/* build.c */
void erofs_prefault(void *p, size_t len);
char *erofs_errpath(const struct walk_inode *wi, const char *name, size_t name_len);

/* check.c */
int erofs_check_inode(unsigned int blkszbits, const struct walk_inode *wi,
		      const char **ret_what);
int erofs_check_name(const char *name, size_t name_len, const char **ret_what);
int erofs_xattr_name_index(const char *name, uint8_t *ret_index,
			   const char **ret_suffix);
uint32_t erofs_encode_rdev(uint32_t major, uint32_t minor);
uint8_t erofs_file_type(uint32_t mode);

/* dir.c */
int erofs_dir_prepare(struct erofs_ctx *ctx, char **ret_errpath,
		      const char **ret_what);
int erofs_dirent_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
size_t erofs_dir_block_fill(const struct erofs_dentry *d, size_t n, uint32_t bs);
uint64_t erofs_dir_size(const struct erofs_dentry *d, size_t n, uint32_t bs);
size_t erofs_dir_write_block(const struct erofs_ctx *ctx,
			     const struct erofs_dentry *d, size_t n, uint8_t *dst);
void erofs_dir_serialise(struct erofs_ctx *ctx, const struct erofs_inode *ei);

/* xattr.c */
int erofs_xattr_prepare(struct erofs_ctx *ctx, char **ret_errpath,
			const char **ret_what);
uint32_t erofs_xattr_filter_bit(uint8_t index, const void *suffix, size_t len);
uint32_t erofs_xattr_entry_size(size_t suffix_len, size_t value_len);
size_t erofs_xattr_write_entry(const struct erofs_xattr *x, uint8_t *dst);
void erofs_xattr_serialise_shared(struct erofs_ctx *ctx);
void erofs_xattr_serialise_ibody(const struct erofs_ctx *ctx,
				 const struct erofs_inode *ei, uint8_t *dst);

/* layout.c */
/* Sets ei up for wi: what the layout reads of it (mode, size, mtime, ids,
 * sparseness, xattr count). */
void erofs_inode_init(struct erofs_inode *ei, struct walk_inode *wi);
void erofs_choose_build_time(struct erofs_ctx *ctx);
bool erofs_needs_extended(const struct erofs_ctx *ctx, const struct erofs_inode *ei);
int erofs_layout(struct erofs_ctx *ctx, char **ret_errpath, const char **ret_what);
bool erofs_tail_fits(uint64_t pos, uint32_t isize, uint32_t xattr_size,
		     uint32_t tail, uint32_t bs);
uint64_t erofs_crc_end(uint32_t bs);
uint64_t erofs_rec_mem_len(const struct erofs_inode *ei);

/* inode.c */
void erofs_inode_serialise(const struct erofs_ctx *ctx, const struct erofs_inode *ei,
			   uint8_t *dst);
static inline uint32_t erofs_inode_isize(const struct erofs_inode *ei)
{
	return ei->extended ? sizeof(struct erofs_inode_extended)
			    : sizeof(struct erofs_inode_compact);
}

/* super.c */
uint32_t erofs_crc32c(uint32_t crc, const void *data, size_t len);
void erofs_super_serialise(const struct erofs_ctx *ctx, uint8_t *dst);
int erofs_super_finish(struct erofs_ctx *ctx, const struct region_map *map,
		       uint64_t map_start);

#endif
