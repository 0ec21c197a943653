/* SPDX-License-Identifier: MIT */
/*
 * fat.h - a general FAT32 builder: a tree of directories and files in,
 * a region map out.  Files are backed by memory or by a region_source
 * (read on demand, like EROFS file data); every file is one contiguous
 * cluster run; free clusters are REGION_ZERO (reported as holes).
 * Facts: ../shared/docs/fat32-gpt.md Part A.  The module does not log.
 *
 * Valid for EDK2 (UEFI firmware) by construction: FAT32 always, so the
 * volume has at least 65525 clusters (A.6), and clean under fsck.fat -n:
 * BPB, FSInfo with the exact free count, backup boot sector, two mirrored
 * FATs, volume label, long file names where the 8.3 form would lose
 * anything, correct "." and "..".
 */
#ifndef EROFS_NBD_FAT_H
#define EROFS_NBD_FAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/region.h"

struct fat_node {
	const char *name;	/* UTF-8 long name, no '/', NUL-terminated ("" for the root) */
	bool is_dir;
	/* Directories: children (any order; the builder sorts them). */
	struct fat_node *children;
	size_t nchildren;
	/* Files: size bytes from mem, or from src at offset 0 (src wins). */
	uint64_t size;
	const void *mem;			/* must outlive the map */
	const struct region_source *src;	/* copied into the map */
	int64_t mtime;		/* seconds since the epoch, for the dir entry */
};

struct fat_opts {
	const char *label;	/* volume label, at most 11 bytes, upper-cased */
	uint32_t volume_id;	/* BPB volume serial; derive it from content */
	uint64_t min_bytes;	/* volume at least this big (0: just enough) */
};

/*
 * Builds a FAT32 volume holding root's tree and appends it to map
 * (normally empty), in 512-byte sectors from map->size on.  Picks the
 * cluster size and count (A.7) so that there are at least 65525 clusters
 * and all files fit; the spare clusters are zero regions.
 * Returns 0, or -EINVAL (bad name, label), -ENAMETOOLONG, -EEXIST (two
 * names equal ignoring case), -EFBIG (a file of 4 GiB or more, or a
 * volume past FAT32's limits), -ENOTSUP (iconv cannot convert UTF-8 to
 * UTF-16LE: a C library without its converters), -ENOMEM.
 */
int fat_build(const struct fat_node *root, const struct fat_opts *opts,
	      struct region_map *map);

#endif
