/* SPDX-License-Identifier: MIT */
/*
 * gpt.h - a GUID partition table disk around partitions given as region
 * maps.  Facts: ../shared/docs/fat32-gpt.md Part B.  The module does not
 * log.
 *
 *   LBA 0          protective MBR (one 0xEE entry, not bootable)
 *   LBA 1          primary GPT header
 *   LBA 2..33      primary entry array (128 entries x 128 bytes)
 *   1 MiB ...      partitions, each starting on a 1 MiB boundary
 *   N-33..N-2      backup entry array
 *   N-1            backup GPT header
 *
 * LBAs are 512-byte sectors; CRC32 is zlib's crc32(); names are UTF-16LE
 * (converted with iconv).
 */
#ifndef EROFS_NBD_GPT_H
#define EROFS_NBD_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "server/region.h"

#define GPT_ATTR_READ_ONLY	(1ULL << 60)	/* B.9: DPS read-only flag */

struct gpt_guid {
	uint8_t b[16];	/* in on-disk (mixed-endian) byte order, B.6 */
};

struct gpt_partition {
	const struct region_map *map;	/* contents; must outlive the disk map */
	struct gpt_guid type;
	struct gpt_guid guid;		/* unique partition GUID (PARTUUID) */
	uint64_t attrs;			/* B.9 attribute bits */
	const char *name;		/* UTF-8, at most 36 UTF-16 code units */
};

/* Partition types (B.8). */
extern const struct gpt_guid gpt_type_esp;
extern const struct gpt_guid gpt_type_root_x86_64;
extern const struct gpt_guid gpt_type_root_aarch64;

/*
 * Builds the disk and appends it to disk (normally empty): MBR, headers,
 * entry arrays with CRC32s, and each partition's map as a sub-map (via
 * region_add_map) at its 1 MiB-aligned first LBA, zeros in the gaps.
 * Stores each partition's first LBA in ret_first_lba[i] when not NULL.
 * Returns 0, or -EINVAL (no partitions, more than 128, a bad name),
 * -ENOMEM.
 */
int gpt_build(const struct gpt_partition *parts, size_t nparts,
	      const struct gpt_guid *disk_guid, struct region_map *disk,
	      uint64_t *ret_first_lba);

/*
 * Derives a GUID from seed bytes and a purpose string ("disk", "esp",
 * "root") with XXH3-128, setting the RFC 4122 version 4 and variant bits,
 * so that the same tree gives the same GUIDs.  Cannot fail.
 */
void gpt_guid_derive(const void *seed, size_t seed_len, const char *purpose,
		     struct gpt_guid *ret);

/* Formats a GUID as 36 lowercase characters plus NUL (B.6 text form). */
void gpt_guid_format(const struct gpt_guid *guid, char out[37]);

#endif
