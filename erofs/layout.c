// SPDX-License-Identifier: MIT
/*
 * layout.c - where everything goes: the superblock build time (§5.5),
 * compact or extended inodes (§5.6), FLAT_PLAIN or FLAT_INLINE (§6), nids
 * in the metadata area (§4) and block addresses of data (§6.1).
 *
 * Image layout (meta_blkaddr = xattr_blkaddr = 0):
 *
 *   0      1024  1152                                    meta_end
 *   +------+-----+------+--------+---------------------------+------------+------------+
 *   | zero | sb  | root | shared | inode, xattrs, tail | ... | dir/symlink| file data  |
 *   |      |     | inode| xattrs | (32-byte slots)         | blocks     | blocks     |
 *   +------+-----+------+--------+---------------------------+------------+------------+
 *
 * The root is placed first, so its nid is 36 (or the first slot of block
 * 1 when its inline directory must move): always < 65536 (§4).  The other
 * directories follow, then all other inodes, both in tree->inodes order
 * (depth-first, sorted), each followed by
 * its inline xattrs and inline tail and rounded up to 32 bytes.  A tail
 * that would cross the end of the inode's block moves the inode to the
 * next block, and a tail that cannot fit even there makes the inode
 * FLAT_PLAIN, as mkfs.erofs does (§6.2).  Regular files are FLAT_PLAIN
 * unless opts->inline_file_tails: their tails are served lazily from the
 * source, so none is put in the range the superblock checksum covers
 * (§2.2): such an inode moves past it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"

/* Byte offset where the superblock checksum range ends (§2.2). */
uint64_t erofs_crc_end(uint32_t bs)
{
	return bs > EROFS_SUPER_OFFSET ? bs : (uint64_t)EROFS_SUPER_OFFSET + bs;
}

/*
 * The inline rule (§6.2): an inode at byte offset pos with isize bytes of
 * inode and xattr_size bytes of xattrs may carry a tail of tail bytes only
 * if the tail ends inside the inode's block.
 */
bool erofs_tail_fits(uint64_t pos, uint32_t isize, uint32_t xattr_size,
		     uint32_t tail, uint32_t bs)
{
	return (pos % bs) + isize + xattr_size + (uint64_t)tail <= bs;
}

/* One distinct (mtime, nsec) of the tree and how many inodes have it. */
struct mtime_count {
	int64_t sec;
	uint32_t nsec;
	uint32_t n;		/* 0: a free slot */
};

/* Whether a beats b as the build time: more inodes, then earlier. */
static bool mtime_better(const struct mtime_count *a, const struct mtime_count *b)
{
	if (a->n != b->n)
		return a->n > b->n;
	if (a->sec != b->sec)
		return a->sec < b->sec;
	return a->nsec < b->nsec;
}

/* The slot of (sec, nsec) in table t of cap slots (a power of two): its
 * own, or the free one it goes into. */
static struct mtime_count *mtime_slot(struct mtime_count *t, size_t cap,
				      int64_t sec, uint32_t nsec)
{
	uint64_t h = (uint64_t)sec * 0x9e3779b97f4a7c15ULL ^
		     (uint64_t)nsec * 0xbf58476d1ce4e5b9ULL;
	size_t slot = (h ^ (h >> 29)) & (cap - 1);

	while (t[slot].n && (t[slot].sec != sec || t[slot].nsec != nsec))
		slot = (slot + 1) & (cap - 1);
	return &t[slot];
}

/*
 * Picks the superblock build_time and build_time_nsec (§5.5): the
 * SOURCE_DATE_EPOCH value when given (nsec 0), otherwise the most common
 * (mtime, nsec) pair of the tree, the earliest one on a tie.  Compact
 * inodes show exactly that time on every kernel, so the most common
 * mtime keeps the most inodes compact.  Deterministic for a given tree.
 * The pairs are counted in an open-addressing hash table, grown as it
 * fills: linear time, and memory for the distinct pairs only.
 */
void erofs_choose_build_time(struct erofs_ctx *ctx)
{
	const struct erofs_inode *root = &ctx->inodes[ctx->root];
	struct mtime_count best = { root->mtime_sec, root->mtime_nsec, 0 };
	struct mtime_count *t = NULL;
	size_t cap = 0, used = 0;

	if (ctx->opts->build_time_set) {
		ctx->build_time = ctx->opts->build_time;
		ctx->build_time_nsec = 0;
		return;
	}
	for (size_t i = 0; i < ctx->ninodes; i++) {
		const struct erofs_inode *ei = &ctx->inodes[i];
		struct mtime_count *c;

		if (2 * (used + 1) > cap) {
			size_t ncap = cap ? 2 * cap : 1024;
			struct mtime_count *nt = calloc(ncap, sizeof(*nt));

			if (!nt) {
				/* Still deterministic, merely less compact. */
				free(t);
				ctx->build_time = root->mtime_sec;
				ctx->build_time_nsec = root->mtime_nsec;
				return;
			}
			for (size_t k = 0; k < cap; k++)
				if (t[k].n)
					*mtime_slot(nt, ncap, t[k].sec, t[k].nsec) = t[k];
			free(t);
			t = nt;
			cap = ncap;
		}
		c = mtime_slot(t, cap, ei->mtime_sec, ei->mtime_nsec);
		if (!c->n++) {
			c->sec = ei->mtime_sec;
			c->nsec = ei->mtime_nsec;
			used++;
		}
		if (mtime_better(c, &best))
			best = *c;
	}
	free(t);
	ctx->build_time = best.sec;
	ctx->build_time_nsec = best.nsec;
}

/*
 * The mkfs rule (§5.6): extended when size, uid, gid or nlink do not fit
 * the compact fields, or when the mtime differs from the build time
 * (compact inodes show the build time, §5.5).
 */
bool erofs_needs_extended(const struct erofs_ctx *ctx, const struct erofs_inode *ei)
{
	return ei->size > UINT32_MAX || ei->big_ids || ei->nlink > 0xffff ||
	       ei->mtime_sec != ctx->build_time || ei->mtime_nsec != ctx->build_time_nsec;
}

void erofs_inode_init(struct erofs_inode *ei, struct walk_inode *wi)
{
	uint32_t mode = wi->mode;

	ei->wi = wi;
	ei->mode = (uint16_t)mode;
	ei->size = S_ISREG(mode) || S_ISLNK(mode) ? wi->size : 0;
	ei->sparse = S_ISREG(mode) && wi->size > 0 && wi->blocks < (wi->size + 511) / 512;
	ei->mtime_sec = wi->mtime_sec;
	ei->mtime_nsec = wi->mtime_nsec;
	ei->big_ids = wi->uid > 0xffff || wi->gid > 0xffff;
	ei->nxattrs = (uint32_t)wi->nxattrs;
}

/* Bytes of inode ei's record kept in membuf (see erofs_layout()). */
uint64_t erofs_rec_mem_len(const struct erofs_inode *ei)
{
	uint64_t rec = erofs_inode_isize(ei) + ei->xattr_size;

	if (ei->tail && S_ISREG(ei->mode))
		return rec;		/* the tail is a REGION_FILE after it */
	return (rec + ei->tail + 31) & ~(uint64_t)31;
}

/* Places one inode at the first usable slot at or after *img (§4, §6.2). */
static void place_inode(struct erofs_ctx *ctx, struct erofs_inode *ei,
			uint64_t *img, uint64_t *memcur)
{
	uint32_t bs = ctx->bs;
	uint32_t isize = erofs_inode_isize(ei);
	uint64_t pos = (*img + 31) & ~(uint64_t)31;

	if (ei->tail) {
		if ((uint64_t)isize + ei->xattr_size + ei->tail > bs) {
			/* Cannot fit in any block: FLAT_PLAIN (§6.2). */
			ei->datalayout = EROFS_INODE_FLAT_PLAIN;
			ei->nblocks++;
			ei->tail = 0;
		} else if (S_ISREG(ei->mode) && pos < erofs_crc_end(bs)) {
			pos = erofs_crc_end(bs);	/* no lazy bytes under the CRC */
		} else if (!erofs_tail_fits(pos, isize, ei->xattr_size, ei->tail, bs)) {
			pos = (pos + bs - 1) & ~((uint64_t)bs - 1);
		}
	}

	uint64_t gap = pos - *img;
	ei->pre_pad = 0;
	if (gap > 0 && gap < 32) {	/* slot padding: served from membuf */
		ei->pre_pad = (uint8_t)gap;
		*memcur += gap;
	}
	ei->nid = pos / EROFS_ISLOT_SIZE;
	ei->mem_off = *memcur;
	*memcur += erofs_rec_mem_len(ei);
	if (ei->tail && S_ISREG(ei->mode))
		*img = pos + isize + ei->xattr_size + ei->tail;
	else
		*img = pos + erofs_rec_mem_len(ei);
}

/* Chooses version and data layout of every inode, before placement. */
static void choose_formats(struct erofs_ctx *ctx)
{
	uint32_t bs = ctx->bs;

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		uint32_t mode = ei->mode;

		/* ei->size: erofs_inode_init(); directories: erofs_dir_prepare(). */
		ei->extended = erofs_needs_extended(ctx, ei);
		ei->datalayout = EROFS_INODE_FLAT_PLAIN;
		ei->nblocks = ei->size / bs;
		ei->tail = 0;
		if (S_ISLNK(mode) && ei->size >= bs) {
			/*
			 * Kernels before 6.x take a FLAT_INLINE symlink to be
			 * inline as a whole and fail it otherwise (§9): a
			 * target of bs bytes or more (bs < 4096) is FLAT_PLAIN.
			 */
			ei->nblocks = (ei->size + bs - 1) / bs;
		} else if (S_ISREG(mode) && !ctx->opts->inline_file_tails) {
			/* Lazily read tails stay out of metadata blocks. */
			ei->nblocks = (ei->size + bs - 1) / bs;
		} else if (ei->size % bs) {
			/* A partial last block: inline it if placement allows. */
			ei->datalayout = EROFS_INODE_FLAT_INLINE;
			ei->tail = (uint32_t)(ei->size % bs);
		}
	}
}

/*
 * Lays the image out: build time, inode formats, nids in placement order
 * (ctx->order), the shared xattr area, membuf offsets, data block
 * addresses, and the image size.  Returns 0, -ENOMEM, or -EFBIG when the
 * image would need 2^32 blocks or more, or the shared area 16 GiB.
 */
int erofs_layout(struct erofs_ctx *ctx, char **ret_errpath, const char **ret_what)
{
	uint32_t bs = ctx->bs;
	uint64_t img = EROFS_SUPER_OFFSET + sizeof(struct erofs_super_block);
	uint64_t memcur = sizeof(struct erofs_super_block);	/* sb first */
	size_t n = 0;

	erofs_choose_build_time(ctx);
	choose_formats(ctx);

	ctx->order = malloc(ctx->ninodes * sizeof(*ctx->order));
	if (!ctx->order)
		return -ENOMEM;
	/*
	 * Directories first: their tails are in memory, so they can fill
	 * block 0 (which regular file tails must avoid), and lookups touch
	 * fewer metadata blocks.  Then every other inode, in tree order.
	 */
	ctx->order[n++] = ctx->root;
	for (int dirs = 1; dirs >= 0; dirs--)
		for (size_t i = 0; i < ctx->ninodes; i++)
			if (i != ctx->root && S_ISDIR(ctx->inodes[i].mode) == dirs)
				ctx->order[n++] = (uint32_t)i;

	/* Root first, then the shared xattr area, then everybody else. */
	for (size_t k = 0; k < n; k++) {
		place_inode(ctx, &ctx->inodes[ctx->order[k]], &img, &memcur);
		if (k == 0) {
			ctx->shared_pos = img;	/* 32-byte aligned */
			ctx->shared_mem_off = memcur;
			memcur += ctx->shared_size;
			img += ctx->shared_size;
		}
	}
	if (ctx->inodes[ctx->root].nid > 0xffff) {
		*ret_what = "root nid does not fit 16 bits";
		return -EFBIG;
	}
	if ((ctx->shared_pos + ctx->shared_size) / 4 > UINT32_MAX) {
		*ret_what = "shared xattr area beyond 16 GiB";
		return -EFBIG;
	}
	for (size_t s = 0; s < ctx->nshared; s++)
		if (ctx->shared[s].users >= 2)
			ctx->shared[s].id += (uint32_t)(ctx->shared_pos / 4);
	ctx->membuf_size = memcur;
	ctx->meta_end = (img + bs - 1) & ~((uint64_t)bs - 1);

	/* Data: directory and symlink blocks (memory), then file data. */
	uint64_t blk = ctx->meta_end / bs;
	if (blk > UINT32_MAX) {
		*ret_what = "metadata needs 2^32 blocks or more";
		return -EFBIG;
	}
	ctx->blockbuf_blkaddr = (uint32_t)blk;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < n; k++) {
			struct erofs_inode *ei = &ctx->inodes[ctx->order[k]];
			bool reg = S_ISREG(ei->mode);

			if (ei->nblocks == 0 || reg != (pass == 1))
				continue;
			if (blk + ei->nblocks > UINT32_MAX) {
				*ret_errpath = erofs_errpath(ei->wi, NULL, 0);
				*ret_what = "image needs 2^32 blocks or more";
				return -EFBIG;
			}
			ei->blkaddr = (uint32_t)blk;
			blk += ei->nblocks;
			if (!reg) {
				ei->buf_off = ctx->blockbuf_size;
				ctx->blockbuf_size += ei->nblocks * bs;
			}
		}
	}
	/* At least 4096 bytes, whole blocks. */
	if (blk * bs < 4096)
		blk = 4096 / bs;
	ctx->blocks = blk;
	return 0;
}
