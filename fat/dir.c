// SPDX-License-Identifier: MIT
/*
 * dir.c - directories of a FAT volume: flattening the caller's tree
 * breadth-first with each directory's children sorted and named (A.11,
 * A.12), and serialising a directory's clusters: the volume label entry in
 * the root (A.10), "." and ".." elsewhere (A.9), then per child its LFN
 * slots and short entry (A.8).  Facts: ../shared/docs/fat32-gpt.md Part A.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>

#include "fat/internal.h"
#include "server/cleanup.h"

/* More nodes than clusters could ever exist: a cycle or a runaway tree. */
#define FAT_MAX_NODES	((size_t)FAT32_MAX_CLUSTERS)

static int name_cmp(const void *a, const void *b)
{
	const struct fat_node *x = *(const struct fat_node *const *)a;
	const struct fat_node *y = *(const struct fat_node *const *)b;
	return strcmp(x->name, y->name);
}

static int check_file(const struct fat_node *n)
{
	if (n->size > FAT_MAX_FILE_SIZE)
		return -EFBIG;
	if (n->src)
		return n->src->open && n->src->size >= n->size ? 0 : -EINVAL;
	return n->size && !n->mem ? -EINVAL : 0;
}

static int grow_ents(struct fat_ctx *ctx, size_t n)
{
	if (n > FAT_MAX_NODES - ctx->nents)
		return -EFBIG;
	if (ctx->nents + n <= ctx->ents_cap)
		return 0;
	size_t cap = ctx->ents_cap ? ctx->ents_cap : 64;
	while (cap < ctx->nents + n)
		cap *= 2;
	struct fat_ent *e = reallocarray(ctx->ents, cap, sizeof(*e));
	if (!e)
		return -ENOMEM;
	ctx->ents = e;
	ctx->ents_cap = cap;
	return 0;
}

/* Appends directory d's children, sorted, named, and counts its slots. */
static int add_children(struct fat_ctx *ctx, size_t d)
{
	const struct fat_node *dir = ctx->ents[d].node;
	size_t n = dir->nchildren;
	int r;

	if (n && !dir->children)
		return -EINVAL;
	if (n > FAT_MAX_DIR_SLOTS)
		return -EFBIG;
	r = grow_ents(ctx, n);
	if (r < 0)
		return r;

	_cleanup_free_ const struct fat_node **sorted = calloc(n ? n : 1, sizeof(*sorted));
	_cleanup_free_ const uint16_t **units = calloc(n ? n : 1, sizeof(*units));
	_cleanup_free_ size_t *lens = calloc(n ? n : 1, sizeof(*lens));
	_cleanup_free_ struct fat_name *names = calloc(n ? n : 1, sizeof(*names));
	if (!sorted || !units || !lens || !names)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		sorted[i] = &dir->children[i];
		if (!sorted[i]->name)
			return -EINVAL;
	}
	qsort(sorted, n, sizeof(*sorted), name_cmp);

	size_t first = ctx->nents;
	for (size_t i = 0; i < n; i++) {
		struct fat_ent *e = &ctx->ents[ctx->nents];

		memset(e, 0, sizeof(*e));
		e->node = sorted[i];
		e->parent = d;
		ctx->nents++;		/* now freed with the context */
		r = fat_long_name(ctx->cd, e->node->name, &e->units, &e->nunits);
		if (r < 0)
			return r;
		if (e->node->is_dir) {
			if (e->node->nchildren && !e->node->children)
				return -EINVAL;
		} else {
			r = check_file(e->node);
			if (r < 0)
				return r;
		}
		units[i] = e->units;
		lens[i] = e->nunits;
		names[i].name = e->node->name;
	}

	r = fat_check_case_dups(units, lens, n);
	if (r < 0)
		return r;
	r = fat_assign_short_names(names, n);
	if (r < 0)
		return r;

	uint64_t slots = d == 0 ? (ctx->has_label ? 1 : 0) : 2;
	for (size_t i = 0; i < n; i++) {
		struct fat_ent *e = &ctx->ents[first + i];
		memcpy(e->short_name, names[i].short_name, 11);
		e->nt_res = names[i].nt_res;
		e->lfn = names[i].lfn;
		slots += 1 + (e->lfn ? fat_lfn_nslots(e->nunits) : 0);
	}
	if (slots > FAT_MAX_DIR_SLOTS)
		return -EFBIG;
	ctx->ents[d].first_child = first;
	ctx->ents[d].nchildren = n;
	ctx->ents[d].nslots = (uint32_t)slots;
	return 0;
}

/*
 * Flattens the tree under root into ctx->ents breadth-first (ents[0] is
 * the root; a directory's children are consecutive, sorted bytewise by
 * long name), checking every node and naming every child.  Returns 0, or
 * -EINVAL (root not a directory, bad name, file without data), -EEXIST,
 * -ENAMETOOLONG, -EFBIG (file of 4 GiB or more, directory past 65536
 * slots), -ENOMEM.
 */
int fat_flatten(struct fat_ctx *ctx, const struct fat_node *root)
{
	int r;

	if (!root || !root->is_dir || (root->nchildren && !root->children))
		return -EINVAL;
	r = grow_ents(ctx, 1);
	if (r < 0)
		return r;
	memset(&ctx->ents[0], 0, sizeof(ctx->ents[0]));
	ctx->ents[0].node = root;
	ctx->nents = 1;

	for (size_t i = 0; i < ctx->nents; i++) {
		if (!ctx->ents[i].node->is_dir)
			continue;
		r = add_children(ctx, i);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Writes one short directory entry (A.8). */
static void put_dirent(uint8_t *p, const uint8_t name[11], uint8_t attr,
		       uint8_t nt_res, uint32_t cluster, uint32_t size,
		       int64_t mtime)
{
	struct fat_dirent de;
	uint16_t date, time;

	fat_dos_time(mtime, &date, &time);
	memset(&de, 0, sizeof(de));
	memcpy(de.name, name, 11);
	de.attr = attr;
	de.nt_res = nt_res;
	de.crt_time = htole16(time);
	de.crt_date = htole16(date);
	de.lst_acc_date = htole16(date);
	de.fst_clus_hi = htole16((uint16_t)(cluster >> 16));
	de.wrt_time = htole16(time);
	de.wrt_date = htole16(date);
	de.fst_clus_lo = htole16((uint16_t)cluster);
	de.file_size = htole32(size);
	memcpy(p, &de, sizeof(de));
}

/*
 * Serialises directory ents[d] into buf, its nclusters clusters (zeroed by
 * the caller: a 0x00 first byte ends the directory, A.8).  Clusters must
 * have been assigned.
 */
void fat_write_dir(const struct fat_ctx *ctx, size_t d, uint8_t *buf)
{
	const struct fat_ent *dir = &ctx->ents[d];
	uint8_t *p = buf;

	if (d == 0) {
		if (ctx->has_label) {
			put_dirent(p, ctx->label, FAT_ATTR_VOLUME_ID, 0, 0, 0,
				   dir->node->mtime);
			p += FAT_DIRENT_SIZE;
		}
	} else {
		const struct fat_ent *parent = &ctx->ents[dir->parent];
		/* ".." of a child of the root points at cluster 0 (A.9). */
		uint32_t up = dir->parent == 0 ? 0 : parent->cluster;

		put_dirent(p, (const uint8_t *)".          ", FAT_ATTR_DIRECTORY,
			   0, dir->cluster, 0, dir->node->mtime);
		p += FAT_DIRENT_SIZE;
		put_dirent(p, (const uint8_t *)"..         ", FAT_ATTR_DIRECTORY,
			   0, up, 0, parent->node->mtime);
		p += FAT_DIRENT_SIZE;
	}

	for (size_t i = 0; i < dir->nchildren; i++) {
		const struct fat_ent *e = &ctx->ents[dir->first_child + i];
		bool is_dir = e->node->is_dir;

		if (e->lfn) {
			fat_lfn_fill(p, e->units, e->nunits,
				     fat_lfn_checksum(e->short_name));
			p += fat_lfn_nslots(e->nunits) * FAT_DIRENT_SIZE;
		}
		put_dirent(p, e->short_name,
			   is_dir ? FAT_ATTR_DIRECTORY : FAT_ATTR_ARCHIVE,
			   e->nt_res, e->cluster,
			   is_dir ? 0 : (uint32_t)e->node->size, e->node->mtime);
		p += FAT_DIRENT_SIZE;
	}
}
