// SPDX-License-Identifier: MIT
/*
 * dir.c - directories (§8) and link counts (§5.7).
 *
 * erofs_dir_prepare() links the tree: it counts nlink, finds each
 * directory's parent, and gathers every directory's entries, "." and ".."
 * included, sorted the way lookup's binary search expects: bytewise
 * unsigned, a shorter prefix first, across the whole directory.  Blocks
 * are then filled greedily in that order (an entry never spans blocks),
 * which fixes each directory's i_size before any nid is known: dirents
 * are 12 bytes whatever the nid.  erofs_dir_serialise() writes the blocks
 * once nids are assigned.
 *
 * Block (or inline tail) layout:
 *   +---------+---------+-----+---------+-------+-------+-----+------------+
 *   | dirent0 | dirent1 | ... | direntN | name0 | name1 | ... | zeros      |
 *   +---------+---------+-----+---------+-------+-------+-----+------------+
 *   nameoff0 = 12 * N, nameoff(i+1) = nameoff(i) + len(i), no NULs.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"

/*
 * Compares two names the way EROFS lookup does (§8): unsigned bytes, and
 * when one is a prefix of the other the shorter comes first.  Returns <0,
 * 0 or >0.
 */
int erofs_dirent_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int r = memcmp(a, b, alen < blen ? alen : blen);
	if (r)
		return r;
	return alen < blen ? -1 : alen > blen;
}

static int dentry_cmp(const void *pa, const void *pb)
{
	const struct erofs_dentry *a = pa, *b = pb;
	return erofs_dirent_cmp(a->name, a->name_len, b->name, b->name_len);
}

/*
 * Returns how many of the n sorted entries d[] fit in one block of bs
 * bytes, filling greedily (§8).  At least 1 when n > 0 (12 + 255 < 512).
 */
size_t erofs_dir_block_fill(const struct erofs_dentry *d, size_t n, uint32_t bs)
{
	uint32_t used = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		uint32_t need = sizeof(struct erofs_dirent) + d[i].name_len;
		if (used + need > bs)
			break;
		used += need;
	}
	return i;
}

/* Bytes of the entries d[0..n) in one block: dirents then names. */
static uint32_t dir_block_bytes(const struct erofs_dentry *d, size_t n)
{
	uint32_t used = 0;
	for (size_t i = 0; i < n; i++)
		used += sizeof(struct erofs_dirent) + d[i].name_len;
	return used;
}

/*
 * Returns the i_size in bytes of a directory holding the sorted entries
 * d[0..n): (nblocks - 1) * bs + bytes used in the last block (§8).
 */
uint64_t erofs_dir_size(const struct erofs_dentry *d, size_t n, uint32_t bs)
{
	uint64_t size = 0;

	while (n > 0) {
		size_t k = erofs_dir_block_fill(d, n, bs);
		uint32_t used = dir_block_bytes(d, k);
		d += k;
		n -= k;
		size += n ? bs : used;
	}
	return size;
}

/*
 * Writes the n entries d[] as one directory block starting at dst (a
 * block, or an inline tail: nameoff counts from dst).  The caller has
 * zeroed the rest of the block.  Returns the bytes written.
 */
size_t erofs_dir_write_block(const struct erofs_ctx *ctx,
			     const struct erofs_dentry *d, size_t n, uint8_t *dst)
{
	size_t nameoff = n * sizeof(struct erofs_dirent);

	for (size_t i = 0; i < n; i++) {
		struct erofs_dirent de = {
			.nid = htole64(ctx->inodes[d[i].ino].nid),
			.nameoff = htole16((uint16_t)nameoff),
			.file_type = d[i].file_type,
		};
		memcpy(dst + i * sizeof(de), &de, sizeof(de));
		memcpy(dst + nameoff, d[i].name, d[i].name_len);
		nameoff += d[i].name_len;
	}
	return nameoff;
}

/*
 * Writes directory ei's blocks: ei->nblocks whole blocks into blockbuf,
 * then the FLAT_INLINE tail, if any, right after the inode's xattrs in
 * membuf.  Both buffers are zero-filled already.
 */
void erofs_dir_serialise(struct erofs_ctx *ctx, const struct erofs_inode *ei)
{
	const struct erofs_dentry *d = &ctx->dents[ei->dent_first];
	size_t n = ei->ndents;

	for (uint64_t k = 0; k < ei->nblocks; k++) {
		size_t cnt = erofs_dir_block_fill(d, n, ctx->bs);
		erofs_dir_write_block(ctx, d, cnt,
				      ctx->blockbuf + ei->buf_off + k * ctx->bs);
		d += cnt;
		n -= cnt;
	}
	if (ei->tail) {
		uint8_t *dst = ctx->membuf + ei->mem_off + erofs_inode_isize(ei) +
			       ei->xattr_size;
		size_t used = erofs_dir_write_block(ctx, d, n, dst);
		assert(used == ei->tail);
		(void)used;
		n = 0;
	}
	assert(n == 0);
}

/* Checks that child is an inode of the tree; returns its index or -1. */
static int64_t inode_index(const struct erofs_ctx *ctx, const struct walk_inode *wi)
{
	if (!wi || wi->priv >= ctx->ninodes || ctx->tree->inodes[wi->priv] != wi)
		return -1;
	return (int64_t)wi->priv;
}

static void set_err(char **ret_errpath, const char **ret_what, const struct walk_inode *wi,
		    const char *name, size_t name_len, const char *what)
{
	if (ret_errpath)
		*ret_errpath = erofs_errpath(wi, name, name_len);
	if (ret_what)
		*ret_what = what;
}

/*
 * Sorts a directory's n entries d[]: its children, then "." and "..".
 * Children in order already (as the walk lists them) cost one pass: the
 * dots are merged in from the end.  Returns -1, or the index of an entry
 * equal to the one before it.
 */
static ssize_t sort_dents(struct erofs_dentry *d, size_t n)
{
	size_t nc = n - 2, k = 1;
	struct erofs_dentry dots[2] = { d[n - 2], d[n - 1] };

	while (k < nc && dentry_cmp(&d[k - 1], &d[k]) < 0)
		k++;
	if (k >= nc) {
		/* Sorted, no two equal; no child is "." or "..". */
		size_t i = nc, j = 2, out = n;

		while (j > 0) {
			if (i > 0 && dentry_cmp(&d[i - 1], &dots[j - 1]) > 0)
				d[--out] = d[--i];
			else
				d[--out] = dots[--j];
		}
		return -1;
	}
	qsort(d, n, sizeof(*d), dentry_cmp);
	for (k = 1; k < n; k++)
		if (dentry_cmp(&d[k - 1], &d[k]) == 0)
			return (ssize_t)k;
	return -1;
}

/*
 * Links the tree (§5.7, §8): nlink of every inode, parent of every
 * directory, and every directory's entries sorted, with its i_size.
 * Returns 0, -ENOMEM, or -EINVAL / -ENAMETOOLONG for a malformed tree
 * (a child not in tree->inodes, a directory linked twice, a duplicate or
 * invalid name), with *ret_errpath / *ret_what set.
 */
int erofs_dir_prepare(struct erofs_ctx *ctx, char **ret_errpath,
		      const char **ret_what)
{
	size_t total = 0;
	int r;

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		ei->parent = EROFS_NO_INDEX;
		if (S_ISDIR(ei->mode)) {
			ei->nlink = 2;
			total += ei->wi->nchildren + 2;
		}
	}
	ctx->inodes[ctx->root].parent = ctx->root;

	ctx->dents = calloc(total ? total : 1, sizeof(*ctx->dents));
	if (!ctx->dents)
		return -ENOMEM;
	erofs_prefault(ctx->dents, total * sizeof(*ctx->dents));

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		const struct walk_inode *wi = ei->wi;

		if (!S_ISDIR(wi->mode))
			continue;
		if (wi->nchildren && !wi->children) {
			set_err(ret_errpath, ret_what, wi, NULL, 0,
				"directory without its children array");
			return -EINVAL;
		}
		ei->dent_first = (uint32_t)ctx->ndents;
		for (size_t c = 0; c < wi->nchildren; c++) {
			const struct walk_dentry *de = &wi->children[c];
			const char *what;
			int64_t ci = inode_index(ctx, de->inode);

			if (!de->name) {
				set_err(ret_errpath, ret_what, wi, NULL, 0,
					"entry without a name");
				return -EINVAL;
			}
			r = erofs_check_name(de->name, de->name_len, &what);
			if (r < 0) {
				set_err(ret_errpath, ret_what, wi, de->name,
					de->name_len, what);
				return r;
			}
			if (ci < 0) {
				set_err(ret_errpath, ret_what, wi, de->name,
					de->name_len, "entry's inode is not in tree->inodes");
				return -EINVAL;
			}
			struct erofs_inode *ci_ei = &ctx->inodes[ci];
			if (S_ISDIR(ci_ei->mode)) {
				if (ci_ei->parent != EROFS_NO_INDEX) {
					set_err(ret_errpath, ret_what, wi, de->name,
						de->name_len, "directory linked twice");
					return -EINVAL;
				}
				ci_ei->parent = (uint32_t)i;
				ei->nlink++;
			} else {
				ci_ei->nlink++;
			}
			ctx->dents[ctx->ndents++] = (struct erofs_dentry){
				.name = (const uint8_t *)de->name,
				.name_len = (uint8_t)de->name_len,
				.ino = (uint32_t)ci,
				.file_type = erofs_file_type(ci_ei->mode),
			};
		}
		ctx->dents[ctx->ndents++] = (struct erofs_dentry){
			.name = (const uint8_t *)".", .name_len = 1,
			.ino = (uint32_t)i, .file_type = EROFS_FT_DIR,
		};
		/* ".." gets its inode once every parent is known, below. */
		ctx->dents[ctx->ndents++] = (struct erofs_dentry){
			.name = (const uint8_t *)"..", .name_len = 2,
			.ino = EROFS_NO_INDEX, .file_type = EROFS_FT_DIR,
		};
		ei->ndents = (uint32_t)(ctx->ndents - ei->dent_first);
	}

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];

		if (!S_ISDIR(ei->mode)) {
			if (ei->nlink == 0)	/* not reachable: keep it sane */
				ei->nlink = 1;
			continue;
		}
		if (ei->parent == EROFS_NO_INDEX)	/* unreachable directory */
			ei->parent = (uint32_t)i;
		struct erofs_dentry *d = &ctx->dents[ei->dent_first];
		d[ei->ndents - 1].ino = ei->parent;
		ssize_t dup = sort_dents(d, ei->ndents);
		if (dup >= 0) {
			set_err(ret_errpath, ret_what, ei->wi, (const char *)d[dup].name,
				d[dup].name_len, "duplicate name in directory");
			return -EINVAL;
		}
		ei->size = erofs_dir_size(d, ei->ndents, ctx->bs);
	}
	return 0;
}
