// SPDX-License-Identifier: MIT
/*
 * fat.c - fat_build(): runs the phases (see internal.h) and appends the
 * volume to the region map in ascending order (A.1):
 *
 *   MEM    boot sector + FSInfo (sectors 0-1)
 *   ZERO   sectors 2-5
 *   MEM    the same two sectors again as the backups at 6-7 (A.4)
 *   ZERO   sectors 8-31
 *   MEM    FAT #1 up to the last used cluster's slot; ZERO for the rest
 *   MEM    FAT #2: the same buffer (A.5: the copies are identical); ZERO
 *   MEM    every directory, root first at cluster 2, breadth-first
 *   FILE   each file's bytes from its source (or MEM from memory), ZERO
 *          to the end of its last cluster: one contiguous run per file
 *   ZERO   the free clusters and the sectors after the last cluster
 *
 * Nothing is appended until the whole layout has been computed.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>

#include "fat/internal.h"
#include "server/cleanup.h"

static void ctx_free(struct fat_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nents; i++)
		free(ctx->ents[i].units);
	free(ctx->ents);
	if (ctx->cd != (iconv_t)-1)
		iconv_close(ctx->cd);
}

/* Clusters a node takes with clusters of cbytes bytes. */
static uint64_t node_clusters(const struct fat_ent *e, uint64_t cbytes)
{
	if (e->node->is_dir) {
		uint64_t c = DIV_ROUND_UP((uint64_t)e->nslots * FAT_DIRENT_SIZE, cbytes);
		return c ? c : 1;
	}
	return DIV_ROUND_UP(e->node->size, cbytes);
}

/* Picks the geometry and gives every node its cluster run. */
static int assign_clusters(struct fat_ctx *ctx, struct fat_geom *g)
{
	uint64_t need[FAT_NCLUSTER_SIZES] = { 0 };
	int r;

	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
		for (size_t k = 0; k < ctx->nents; k++)
			need[i] += node_clusters(&ctx->ents[k], fat_cluster_sizes[i]);
	r = fat_geometry(need, ctx->opts->min_bytes, g);
	if (r < 0)
		return r;

	/* Directories first, from the root cluster on, then the files. */
	uint32_t next = FAT_ROOT_CLUSTER;
	for (int files = 0; files < 2; files++) {
		for (size_t k = 0; k < ctx->nents; k++) {
			struct fat_ent *e = &ctx->ents[k];
			if (e->node->is_dir == !!files)
				continue;
			e->nclusters = (uint32_t)node_clusters(e, g->cluster_bytes);
			e->cluster = e->nclusters ? next : 0;
			next += e->nclusters;
		}
		if (!files)
			ctx->dir_clusters = next - FAT_ROOT_CLUSTER;
	}
	ctx->used_clusters = next - FAT_ROOT_CLUSTER;
	assert(ctx->used_clusters <= g->nclusters);
	return 0;
}

static void put_slot(uint8_t *fat, uint32_t cluster, uint32_t value)
{
	uint32_t v = htole32(value);
	memcpy(fat + (size_t)cluster * 4, &v, 4);
}

/* The used part of the FAT: slots 0 .. 2 + used - 1, whole sectors (A.5). */
static uint8_t *make_fat(const struct fat_ctx *ctx, size_t *ret_len)
{
	size_t nslots = FAT_ROOT_CLUSTER + ctx->used_clusters;
	size_t len = ROUND_UP(nslots * 4, (size_t)FAT_SECTOR_SIZE);
	uint8_t *fat = calloc(1, len);

	if (!fat)
		return NULL;
	put_slot(fat, 0, FAT_ENTRY0);
	put_slot(fat, 1, FAT_ENTRY1);
	for (size_t k = 0; k < ctx->nents; k++) {
		const struct fat_ent *e = &ctx->ents[k];
		for (uint32_t c = 0; c < e->nclusters; c++) {
			uint32_t here = e->cluster + c;
			put_slot(fat, here, c + 1 < e->nclusters ? here + 1 : FAT_ENTRY_EOC);
		}
	}
	*ret_len = len;
	return fat;
}

/* Every directory's clusters, in cluster order from 2 on. */
static uint8_t *make_dirs(const struct fat_ctx *ctx, const struct fat_geom *g,
			  size_t *ret_len)
{
	size_t len = (size_t)ctx->dir_clusters * g->cluster_bytes;
	uint8_t *buf = calloc(1, len);

	if (!buf)
		return NULL;
	for (size_t k = 0; k < ctx->nents; k++) {
		const struct fat_ent *e = &ctx->ents[k];
		if (e->node->is_dir)
			fat_write_dir(ctx, k, buf + (size_t)(e->cluster - FAT_ROOT_CLUSTER) *
					   g->cluster_bytes);
	}
	*ret_len = len;
	return buf;
}

/* Hands buf to the map and appends len bytes of it. */
static int add_owned(struct region_map *map, void *buf, size_t len)
{
	int r = region_map_own(map, buf);
	return r < 0 ? r : region_add_mem(map, buf, len);
}

/* Appends the file data: one run per file, padded to whole clusters. */
static int emit_files(const struct fat_ctx *ctx, const struct fat_geom *g,
		      struct region_map *map)
{
	for (size_t k = 0; k < ctx->nents; k++) {
		const struct fat_node *n = ctx->ents[k].node;
		uint64_t run = (uint64_t)ctx->ents[k].nclusters * g->cluster_bytes;
		int r;

		if (n->is_dir || !n->size)
			continue;
		if (n->src) {
			uint32_t id;
			r = region_add_source(map, n->src, &id);
			if (r >= 0)
				r = region_add_file(map, id, 0, n->size);
		} else {
			r = region_add_mem(map, n->mem, n->size);
		}
		if (r >= 0)
			r = region_add_zero(map, run - n->size);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Appends the computed volume to map (see the top of this file).  Returns
 * 0, -ENOMEM or -EOVERFLOW; on failure map may hold part of the volume.
 */
static int emit(const struct fat_ctx *ctx, const struct fat_geom *g,
		uint32_t hidden, struct region_map *map)
{
	const uint64_t sec = FAT_SECTOR_SIZE;
	uint64_t start = map->size;
	size_t fat_len, dirs_len;
	int r;

	/* Reserved area: boot sector and FSInfo, twice (A.2-A.4). */
	uint8_t *rsvd = calloc(2, FAT_SECTOR_SIZE);
	if (!rsvd)
		return -ENOMEM;
	uint32_t free_count = g->nclusters - ctx->used_clusters;
	uint32_t next_free = free_count ? FAT_ROOT_CLUSTER + ctx->used_clusters
					: FAT_FSINFO_UNKNOWN;
	fat_fill_boot((struct fat_boot_sector *)rsvd, g, hidden,
		      ctx->opts->volume_id, ctx->label);
	fat_fill_fsinfo((struct fat_fsinfo *)(rsvd + sec), free_count, next_free);
	r = add_owned(map, rsvd, 2 * sec);
	if (r >= 0)
		r = region_add_zero(map, (FAT_BACKUP_BOOT_SECTOR - 2) * sec);
	if (r >= 0)
		r = region_add_mem(map, rsvd, 2 * sec);
	if (r >= 0)
		r = region_add_zero(map, (FAT_RSVD_SECTORS - FAT_BACKUP_BOOT_SECTOR - 2) * sec);
	if (r < 0)
		return r;

	/* Two identical FATs; the slots of free clusters are zeros (A.5). */
	uint8_t *fat = make_fat(ctx, &fat_len);
	if (!fat)
		return -ENOMEM;
	assert(fat_len <= g->fat_sectors * sec);
	r = region_map_own(map, fat);
	for (int i = 0; i < FAT_NUM_FATS && r >= 0; i++) {
		r = region_add_mem(map, fat, fat_len);
		if (r >= 0)
			r = region_add_zero(map, g->fat_sectors * sec - fat_len);
	}
	if (r < 0)
		return r;

	/* Data area: directories, files, free clusters, spare sectors. */
	assert(map->size - start == g->data_sector * sec);
	uint8_t *dirs = make_dirs(ctx, g, &dirs_len);
	if (!dirs)
		return -ENOMEM;
	r = add_owned(map, dirs, dirs_len);
	if (r >= 0)
		r = emit_files(ctx, g, map);
	if (r >= 0)
		r = region_add_zero(map, (uint64_t)free_count * g->cluster_bytes);
	if (r >= 0)
		r = region_add_zero(map, start + g->total_sectors * sec - map->size);
	if (r < 0)
		return r;
	assert(map->size - start == g->total_sectors * sec);
	return 0;
}

/*
 * Builds a FAT32 volume holding root's tree and appends it to map (see
 * fat.h).  map->size must be a multiple of 512: the volume starts there,
 * and map->size / 512 becomes the BPB's hidden-sector count.  Follows
 * fat32-gpt.md Part A.  Returns 0, -EINVAL (bad name or label, root not a
 * directory, a file without data, map not sector aligned), -ENAMETOOLONG,
 * -EEXIST, -EFBIG, -ENOMEM; on failure map may hold part of the volume.
 */
int fat_build(const struct fat_node *root, const struct fat_opts *opts,
	      struct region_map *map)
{
	struct fat_ctx ctx = { .opts = opts, .cd = (iconv_t)-1 };
	struct fat_geom g;
	int r;

	if (!root || !opts || !map || map->size % FAT_SECTOR_SIZE)
		return -EINVAL;
	if (map->size / FAT_SECTOR_SIZE > UINT32_MAX)
		return -EFBIG;
	r = fat_check_label(opts->label, ctx.label);
	if (r < 0)
		return r;
	ctx.has_label = r > 0;

	ctx.cd = iconv_open("UTF-16LE", "UTF-8");
	if (ctx.cd == (iconv_t)-1) {
		r = errno == ENOMEM ? -ENOMEM : -ENOTSUP;
		goto out;
	}
	r = fat_flatten(&ctx, root);
	if (r >= 0)
		r = assign_clusters(&ctx, &g);
	if (r >= 0)
		r = emit(&ctx, &g, (uint32_t)(map->size / FAT_SECTOR_SIZE), map);
out:
	ctx_free(&ctx);
	return r;
}
