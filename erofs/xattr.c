// SPDX-License-Identifier: MIT
/*
 * xattr.c - extended attributes (§7): parsing names into short name
 * indexes (§7.2), the shared xattr area (§7.3), inline xattr areas
 * (§7.1) and the per-inode bloom filter (§7.5).
 *
 * Every (name, value) pair carried by two or more inodes is stored once
 * in the shared area, in order of first appearance, and referenced by a
 * 4-byte id; the rest stay inline.  Inline area of one inode:
 *
 *   +--------------------+-------------+-----------------------------+
 *   | header (12 bytes)  | shared ids  | entries: {len, index, vsize}|
 *   | filter, nshared    | le32 each   | suffix, value, pad to 4     |
 *   +--------------------+-------------+-----------------------------+
 *   xattr_size = 12 + 4 * nshared + sum(entries);  icount = (size - 12) / 4 + 1
 *
 * An inode with any xattr has xattr_size >= 16, so icount is never 1.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "erofs/internal.h"

/* Bytes one entry takes: header, suffix, value, padded to 4 (§7.1). */
uint32_t erofs_xattr_entry_size(size_t suffix_len, size_t value_len)
{
	return (uint32_t)((sizeof(struct erofs_xattr_entry) + suffix_len +
			   value_len + 3) & ~(size_t)3);
}

/*
 * Bloom filter bit of an xattr (§7.5): xxh32 of the name suffix, seeded
 * with 0x25BBE08F + the short name index, modulo 32.
 */
uint32_t erofs_xattr_filter_bit(uint8_t index, const void *suffix, size_t len)
{
	return XXH32(suffix, len, EROFS_XATTR_FILTER_SEED + index) & 31;
}

/*
 * Writes one entry (§7.1) at dst: header, suffix, value, zero padding
 * (dst is zeroed already).  Returns the bytes it takes.
 */
size_t erofs_xattr_write_entry(const struct erofs_xattr *x, uint8_t *dst)
{
	struct erofs_xattr_entry e = {
		.e_name_len = x->suffix_len,
		.e_name_index = x->index,
		.e_value_size = htole16(x->value_len),
	};
	memcpy(dst, &e, sizeof(e));
	memcpy(dst + sizeof(e), x->suffix, x->suffix_len);
	if (x->value_len)
		memcpy(dst + sizeof(e) + x->suffix_len, x->value, x->value_len);
	return erofs_xattr_entry_size(x->suffix_len, x->value_len);
}

static uint64_t xattr_hash(const struct erofs_xattr *x)
{
	uint64_t h = XXH3_64bits_withSeed(x->suffix, x->suffix_len, x->index);
	return XXH3_64bits_withSeed(x->value, x->value_len, h);
}

static bool xattr_equal(const struct erofs_xattr *a, const struct erofs_xattr *b)
{
	return a->index == b->index && a->suffix_len == b->suffix_len &&
	       a->value_len == b->value_len &&
	       memcmp(a->suffix, b->suffix, a->suffix_len) == 0 &&
	       (a->value_len == 0 || memcmp(a->value, b->value, a->value_len) == 0);
}

/*
 * Finds every distinct (name, value) pair with an open-addressing hash
 * table (linear in the number of xattrs) and counts its users.
 */
static int count_pairs(struct erofs_ctx *ctx)
{
	size_t cap = 16;
	while (cap < 2 * ctx->nxattrs)
		cap <<= 1;
	uint32_t *table = malloc(cap * sizeof(*table));
	if (!table)
		return -ENOMEM;
	memset(table, 0xff, cap * sizeof(*table));
	ctx->shared = calloc(ctx->nxattrs ? ctx->nxattrs : 1, sizeof(*ctx->shared));
	if (!ctx->shared) {
		free(table);
		return -ENOMEM;
	}

	for (size_t i = 0; i < ctx->nxattrs; i++) {
		struct erofs_xattr *x = &ctx->xattrs[i];
		uint64_t h = xattr_hash(x);
		size_t slot = h & (cap - 1);

		for (;; slot = (slot + 1) & (cap - 1)) {
			uint32_t s = table[slot];
			if (s == EROFS_NO_INDEX) {
				table[slot] = (uint32_t)ctx->nshared;
				ctx->shared[ctx->nshared++] = (struct erofs_shared_xattr){
					.hash = h, .xattr = (uint32_t)i, .users = 1,
				};
				x->shared = table[slot];
				break;
			}
			struct erofs_shared_xattr *sx = &ctx->shared[s];
			if (sx->hash == h && xattr_equal(&ctx->xattrs[sx->xattr], x)) {
				sx->users++;
				x->shared = s;
				break;
			}
		}
	}
	free(table);
	return 0;
}

/*
 * Parses every inode's xattrs, picks the shared ones (users >= 2), and
 * sizes each inode's inline area and filter.  Shared ids are relative to
 * the start of the shared area here; erofs_layout() adds its position.
 * Names were checked by erofs_check_inode().  Returns 0, -ENOMEM, or
 * -E2BIG (an inline area over the 16-bit icount) with *ret_errpath set.
 */
int erofs_xattr_prepare(struct erofs_ctx *ctx, char **ret_errpath,
			const char **ret_what)
{
	size_t total = 0;
	int r;

	for (size_t i = 0; i < ctx->ninodes; i++)
		total += ctx->inodes[i].nxattrs;
	ctx->xattrs = calloc(total ? total : 1, sizeof(*ctx->xattrs));
	if (!ctx->xattrs)
		return -ENOMEM;

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		const struct walk_inode *wi = ei->wi;

		ei->xattr_first = (uint32_t)ctx->nxattrs;
		if (ei->nxattrs == 0)
			continue;	/* the usual case: wi is not touched */
		for (size_t k = 0; k < ei->nxattrs; k++) {
			const char *suffix;
			uint8_t index;

			r = erofs_xattr_name_index(wi->xattrs[k].name, &index, &suffix);
			assert(r == 0);
			(void)r;
			ctx->xattrs[ctx->nxattrs++] = (struct erofs_xattr){
				.suffix = (const uint8_t *)suffix,
				.suffix_len = (uint8_t)strlen(suffix),
				.value = wi->xattrs[k].value,
				.value_len = (uint16_t)wi->xattrs[k].value_len,
				.index = index,
			};
		}
	}

	r = count_pairs(ctx);
	if (r < 0)
		return r;

	/* The shared area: pairs with two or more users, first seen first. */
	uint64_t off = 0;
	for (size_t s = 0; s < ctx->nshared; s++) {
		struct erofs_shared_xattr *sx = &ctx->shared[s];
		if (sx->users < 2)
			continue;
		const struct erofs_xattr *x = &ctx->xattrs[sx->xattr];
		if (off / 4 > UINT32_MAX) {
			*ret_errpath = NULL;
			*ret_what = "shared xattr area larger than 16 GiB";
			return -E2BIG;
		}
		sx->id = (uint32_t)(off / 4);
		off += erofs_xattr_entry_size(x->suffix_len, x->value_len);
	}
	ctx->shared_size = (uint32_t)((off + 31) & ~(uint64_t)31);
	if (ctx->shared_size != ((off + 31) & ~(uint64_t)31)) {
		*ret_what = "shared xattr area larger than 4 GiB";
		return -E2BIG;
	}

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		uint64_t size = sizeof(struct erofs_xattr_ibody_header);
		uint32_t absent = 0;

		if (ei->nxattrs == 0)
			continue;
		for (uint32_t k = 0; k < ei->nxattrs; k++) {
			struct erofs_xattr *x = &ctx->xattrs[ei->xattr_first + k];

			absent |= 1u << erofs_xattr_filter_bit(x->index, x->suffix,
							       x->suffix_len);
			if (ctx->shared[x->shared].users >= 2 &&
			    ei->nshared < EROFS_XATTR_MAX_SHARED) {
				ei->nshared++;
				size += 4;
			} else {
				x->shared = EROFS_NO_INDEX;	/* stored inline */
				size += erofs_xattr_entry_size(x->suffix_len, x->value_len);
			}
		}
		if ((size - 12) / 4 + 1 > 0xffff) {
			*ret_errpath = erofs_errpath(ei->wi, NULL, 0);
			*ret_what = "xattrs too large for the inline xattr area";
			return -E2BIG;
		}
		ei->xattr_size = (uint32_t)size;
		ei->filter = ~absent;
		if (ei->filter)
			ctx->any_filter = true;
	}
	return 0;
}

/* Writes the shared area (§7.3) at its place in membuf (zeroed). */
void erofs_xattr_serialise_shared(struct erofs_ctx *ctx)
{
	uint8_t *base = ctx->membuf + ctx->shared_mem_off;
	uint32_t first = (uint32_t)(ctx->shared_pos / 4);

	for (size_t s = 0; s < ctx->nshared; s++) {
		const struct erofs_shared_xattr *sx = &ctx->shared[s];
		if (sx->users >= 2)
			erofs_xattr_write_entry(&ctx->xattrs[sx->xattr],
						base + (uint64_t)(sx->id - first) * 4);
	}
}

/*
 * Writes inode ei's inline xattr area (§7.1) at dst (zeroed, xattr_size
 * bytes): header with filter and shared count, shared ids, inline entries.
 */
void erofs_xattr_serialise_ibody(const struct erofs_ctx *ctx,
				 const struct erofs_inode *ei, uint8_t *dst)
{
	struct erofs_xattr_ibody_header h = {
		.h_name_filter = htole32(ei->filter),
		.h_shared_count = (uint8_t)ei->nshared,
	};
	const struct erofs_xattr *x = &ctx->xattrs[ei->xattr_first];
	size_t pos = sizeof(h);

	if (ei->nxattrs == 0)
		return;
	memcpy(dst, &h, sizeof(h));
	for (uint32_t k = 0; k < ei->nxattrs; k++) {
		if (x[k].shared == EROFS_NO_INDEX)
			continue;
		put_le32(dst + pos, ctx->shared[x[k].shared].id);
		pos += 4;
	}
	for (uint32_t k = 0; k < ei->nxattrs; k++)
		if (x[k].shared == EROFS_NO_INDEX)
			pos += erofs_xattr_write_entry(&x[k], dst + pos);
	assert(pos == ei->xattr_size);
}
