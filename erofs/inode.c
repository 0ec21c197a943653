// SPDX-License-Identifier: MIT
/*
 * inode.c - serialises inodes (§5): compact (32 bytes) or extended (64
 * bytes), followed by the inline xattr area (§7.1) and, for directories
 * and symlinks, the inline tail (§6.2).  Regular file tails are not
 * written here: the region map serves them from the source file.
 */
#include <assert.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"

/* The i_u union (§5.4): start block, encoded rdev, or 0. */
static uint32_t inode_i_u(const struct erofs_inode *ei)
{
	const struct walk_inode *wi = ei->wi;

	switch (wi->mode & S_IFMT) {
	case S_IFCHR:
	case S_IFBLK:
		return erofs_encode_rdev(wi->rdev_major, wi->rdev_minor);
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
		if (ei->nblocks)
			return ei->blkaddr;
		/* Every byte inline: mkfs writes the null address (§5.4). */
		return ei->tail ? EROFS_NULL_ADDR : 0;
	}
	return 0;	/* FIFO, socket */
}

/*
 * Writes inode ei at dst (zeroed, erofs_rec_mem_len() bytes): the inode,
 * its xattr area, and a directory's or symlink's inline tail.  i_ino is
 * the inode's index + 1 (the kernel ignores it, §4).
 */
void erofs_inode_serialise(const struct erofs_ctx *ctx, const struct erofs_inode *ei,
			   uint8_t *dst)
{
	const struct walk_inode *wi = ei->wi;
	uint16_t format = EROFS_I_FORMAT(ei->datalayout, ei->extended);
	uint16_t icount = ei->xattr_size ? (uint16_t)((ei->xattr_size - 12) / 4 + 1) : 0;
	uint32_t ino = (uint32_t)(wi->priv + 1);

	assert(ei->xattr_size == 0 || ei->xattr_size >= 16);
	if (ei->extended) {
		struct erofs_inode_extended e = {
			.i_format = htole16(format),
			.i_xattr_icount = htole16(icount),
			.i_mode = htole16((uint16_t)wi->mode),
			.i_size = htole64(ei->size),
			.i_u = htole32(inode_i_u(ei)),
			.i_ino = htole32(ino),
			.i_uid = htole32(wi->uid),
			.i_gid = htole32(wi->gid),
			.i_mtime = htole64((uint64_t)wi->mtime_sec),
			.i_mtime_nsec = htole32(wi->mtime_nsec),
			.i_nlink = htole32(ei->nlink),
		};
		memcpy(dst, &e, sizeof(e));
	} else {
		struct erofs_inode_compact c = {
			.i_format = htole16(format),
			.i_xattr_icount = htole16(icount),
			.i_mode = htole16((uint16_t)wi->mode),
			.i_nlink = htole16((uint16_t)ei->nlink),
			.i_size = htole32((uint32_t)ei->size),
			.i_mtime = 0,	/* §5.5: time = build_time on every kernel */
			.i_u = htole32(inode_i_u(ei)),
			.i_ino = htole32(ino),
			.i_uid = htole16((uint16_t)wi->uid),
			.i_gid = htole16((uint16_t)wi->gid),
		};
		memcpy(dst, &c, sizeof(c));
	}

	uint8_t *p = dst + erofs_inode_isize(ei);
	erofs_xattr_serialise_ibody(ctx, ei, p);
	p += ei->xattr_size;

	if (S_ISLNK(wi->mode) && ei->tail)
		memcpy(p, wi->symlink + ei->nblocks * ctx->bs, ei->tail);
	/* Directory tails: erofs_dir_serialise(). */
}
