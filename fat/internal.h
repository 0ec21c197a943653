/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of fat/ share (fat/esp.c uses only fat.h).
 *
 * fat_build() (fat.c) runs these phases:
 *   tree      flatten the tree breadth-first, sort children    fat.c
 *   names     check long names, UTF-16, 8.3 names, LFN slots  names.c
 *   geometry  cluster size and count, FAT size (A.6, A.7)     layout.c
 *   clusters  root at 2, other directories, then files        fat.c
 *   serialise boot sector, FSInfo, FAT, directories           layout.c dir.c
 *   emit      regions in volume order                         fat.c
 */
#ifndef EROFS_NBD_FAT_INTERNAL_H
#define EROFS_NBD_FAT_INTERNAL_H

#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fat/fat.h"
#include "fat/fat_fs.h"

/* One node of the tree, flattened breadth-first: ents[0] is the root. */
struct fat_ent {
	const struct fat_node *node;
	size_t parent;			/* index of the parent directory */
	size_t first_child;		/* directories: children are ents[first_child ..] */
	size_t nchildren;		/*   in directory order (bytewise by name) */
	uint16_t *units;		/* long name in UTF-16 (host order) */
	size_t nunits;
	uint8_t short_name[11];
	uint8_t nt_res;			/* case flags when !lfn */
	bool lfn;			/* LFN slots precede the short entry */
	uint32_t nslots;		/* directories: 32-byte slots of content */
	uint32_t cluster;		/* first cluster, 0 for an empty file */
	uint32_t nclusters;
};

/* The builder's state. */
struct fat_ctx {
	const struct fat_opts *opts;
	iconv_t cd;			/* UTF-8 -> UTF-16LE */
	struct fat_ent *ents;
	size_t nents, ents_cap;
	uint8_t label[11];		/* BPB label, "NO NAME    " if none */
	bool has_label;			/* also a label entry in the root */
	uint32_t used_clusters;		/* clusters 2 .. 2 + used - 1 are taken */
	uint32_t dir_clusters;		/* of which directories, from 2 on */
};

/* dir.c */
int fat_flatten(struct fat_ctx *ctx, const struct fat_node *root);
void fat_write_dir(const struct fat_ctx *ctx, size_t d, uint8_t *buf);

/* names.c */

/* One name of one directory, for short-name assignment. */
struct fat_name {
	const char *name;	/* UTF-8 long name (checked by fat_long_name()) */
	uint8_t short_name[11];	/* out: 8 + 3 bytes, space padded */
	uint8_t nt_res;		/* out: FAT_NT_LOWER_* when no LFN is needed */
	bool lfn;		/* out: the long name needs LFN slots */
};

int fat_long_name(iconv_t cd, const char *name, uint16_t **ret_units,
		  size_t *ret_len);
bool fat_fits_83(const char *name, uint8_t ret_short[11], uint8_t *ret_nt_res);
void fat_short_basis(const char *name, char base[9], char ext[4],
		     bool *ret_lossy);
int fat_assign_short_names(struct fat_name *names, size_t n);
int fat_check_case_dups(const uint16_t *const *units, const size_t *lens,
			size_t n);
uint8_t fat_lfn_checksum(const uint8_t short_name[11]);
size_t fat_lfn_nslots(size_t len);
void fat_lfn_fill(void *slots, const uint16_t *units, size_t len,
		  uint8_t chksum);
int fat_check_label(const char *label, uint8_t ret_label[11]);

/* layout.c */

/* Cluster sizes fat_geometry() tries, smallest first (A.7). */
#define FAT_NCLUSTER_SIZES 5
extern const uint32_t fat_cluster_sizes[FAT_NCLUSTER_SIZES];

/* Where everything of a volume lies, in sectors and clusters (A.1). */
struct fat_geom {
	uint32_t cluster_bytes;	/* 512 .. 32768 */
	uint32_t sec_per_clus;
	uint32_t fat_sectors;	/* FATSz32: sectors per FAT copy */
	uint32_t nclusters;	/* N: data clusters 2 .. N+1 */
	uint32_t total_sectors;	/* the whole volume, a multiple of 2048 */
	uint32_t data_sector;	/* first sector of cluster 2 */
};

int fat_geometry(const uint64_t need[FAT_NCLUSTER_SIZES], uint64_t min_bytes,
		 struct fat_geom *ret);
void fat_dos_time(int64_t t, uint16_t *ret_date, uint16_t *ret_time);
void fat_fill_boot(struct fat_boot_sector *bs, const struct fat_geom *g,
		   uint32_t hidden_sectors, uint32_t volume_id,
		   const uint8_t label[11]);
void fat_fill_fsinfo(struct fat_fsinfo *fsi, uint32_t free_count,
		     uint32_t next_free);

#endif
