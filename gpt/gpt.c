// SPDX-License-Identifier: MIT
/*
 * gpt.c - gpt_build(): lays out a GUID partition table disk around
 * partitions given as region maps, then serialises the protective MBR,
 * both headers and the entry array into memory regions of the disk map.
 * Facts: ../shared/docs/fat32-gpt.md Part B (sections cited below).
 *
 * Layout (B.1, B.7), N = disk LBAs:
 *
 *   LBA 0..33        one owned buffer: MBR, primary header, primary array
 *   LBA 34..2047     zeros
 *   first_lba[i]     partition i's regions, then zeros up to the next LBA
 *                    and up to the next 1 MiB boundary (the next partition)
 *   ...              zeros up to N - 33
 *   LBA N-33..N-2    backup array: the same bytes as the primary array
 *   LBA N-1          backup header (a second owned buffer)
 *
 * Partition i spans ceil(map size / 512) LBAs; it is not extended to a
 * 1 MiB multiple, so a FAT volume's total sectors still equal the
 * partition length (A.2).  Callers that want sgdisk's end-alignment
 * caution gone (B.7) pad their map to 1 MiB first.  N is the smallest
 * multiple of 8 (4096 bytes) that leaves room for the 33 backup LBAs after
 * the last partition; the backup header is always the very last LBA.
 *
 * Lifetimes: the disk map shows each partition map as a sub-map
 * (region_add_map), sharing its regions and sources, so every partition
 * map must outlive the disk map.  The GPT's own buffers are
 * owned by the disk map (region_map_own) and freed with it.
 */
#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gpt/gpt.h"
#include "gpt/gpt_fs.h"
#include "server/cleanup.h"

/* Byte offsets inside the primary buffer (LBA 0..33). */
#define PRIMARY_HEADER_OFF	((size_t)1 * GPT_LBA_SIZE)
#define PRIMARY_ARRAY_OFF	((size_t)GPT_PRIMARY_ARRAY_LBA * GPT_LBA_SIZE)
#define PRIMARY_BYTES		((size_t)GPT_FIRST_USABLE_LBA * GPT_LBA_SIZE)

/* Largest disk whose byte size fits in 64 bits. */
#define MAX_DISK_LBAS		(UINT64_MAX / GPT_LBA_SIZE)

struct gpt_layout {
	uint64_t first_lba[GPT_ENTRIES];	/* inclusive */
	uint64_t nlbas[GPT_ENTRIES];		/* partition length in LBAs */
	uint64_t disk_lbas;			/* N */
};

static bool guid_is_zero(const struct gpt_guid *g)
{
	static const struct gpt_guid zero;
	return memcmp(g->b, zero.b, sizeof(zero.b)) == 0;
}

/* Rounds lba up to a multiple of align (a power of two); false on overflow. */
static bool round_up_lba(uint64_t lba, uint64_t align, uint64_t *ret)
{
	uint64_t r;

	if (__builtin_add_overflow(lba, align - 1, &r))
		return false;
	*ret = r & ~(align - 1);
	return true;
}

/*
 * Places the partitions (B.1, B.7): the first at LBA 2048, each next one
 * at the first 1 MiB boundary after the previous one's end; N as described
 * at the top.  Returns 0, -EINVAL for an empty partition or -EOVERFLOW for
 * a disk past 2^64 bytes.
 */
static int gpt_plan(const struct gpt_partition *parts, size_t nparts,
		    struct gpt_layout *lay)
{
	uint64_t lba = GPT_ALIGN_LBAS, end = 0;

	for (size_t i = 0; i < nparts; i++) {
		uint64_t size = parts[i].map->size;
		uint64_t n = size / GPT_LBA_SIZE + (size % GPT_LBA_SIZE != 0);

		if (n == 0)
			return -EINVAL;
		lay->first_lba[i] = lba;
		lay->nlbas[i] = n;
		if (__builtin_add_overflow(lba, n, &end))
			return -EOVERFLOW;
		if (i + 1 < nparts && !round_up_lba(end, GPT_ALIGN_LBAS, &lba))
			return -EOVERFLOW;
	}
	if (__builtin_add_overflow(end, (uint64_t)GPT_BACKUP_LBAS, &end) ||
	    !round_up_lba(end, GPT_DISK_ALIGN_LBAS, &lay->disk_lbas) ||
	    lay->disk_lbas > MAX_DISK_LBAS)
		return -EOVERFLOW;
	return 0;
}

/*
 * Converts a UTF-8 name to at most 36 UTF-16LE code units, zero padded
 * (B.10).  Returns 0 or -EINVAL (too long, invalid or truncated UTF-8).
 */
static int gpt_name_encode(iconv_t cd, const char *name,
			   uint8_t out[GPT_NAME_UNITS * 2])
{
	char *in = (char *)name, *o = (char *)out;
	size_t inleft = name ? strlen(name) : 0, outleft = GPT_NAME_UNITS * 2;

	memset(out, 0, GPT_NAME_UNITS * 2);
	if (inleft == 0)
		return 0;
	(void)iconv(cd, NULL, NULL, NULL, NULL);	/* initial state */
	if (iconv(cd, &in, &inleft, &o, &outleft) == (size_t)-1 || inleft)
		return -EINVAL;
	return 0;
}

/*
 * Checks what gpt_build() cannot repair: a partition map for each entry,
 * non-zero type GUIDs, and non-zero partition GUIDs that are all different
 * (B.6).  Returns 0 or -EINVAL.
 */
static int gpt_check(const struct gpt_partition *parts, size_t nparts)
{
	for (size_t i = 0; i < nparts; i++) {
		const struct gpt_partition *p = &parts[i];

		if (!p->map || guid_is_zero(&p->type) || guid_is_zero(&p->guid))
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (!memcmp(parts[j].guid.b, p->guid.b, sizeof(p->guid.b)))
				return -EINVAL;
	}
	return 0;
}

/*
 * Fills the partition entries (B.4) of the primary array.  Returns 0,
 * -EINVAL for a bad name, or -ENOTSUP/-errno when iconv_open() fails.
 */
static int gpt_fill_entries(const struct gpt_partition *parts, size_t nparts,
			    const struct gpt_layout *lay, uint8_t *array)
{
	iconv_t cd;
	int r = 0;

	cd = iconv_open("UTF-16LE", "UTF-8");
	if (cd == (iconv_t)-1)
		return errno == EINVAL ? -ENOTSUP : -errno;
	for (size_t i = 0; i < nparts; i++) {
		const struct gpt_partition *p = &parts[i];
		struct gpt_entry e = {
			.first_lba = htole64(lay->first_lba[i]),
			.last_lba = htole64(lay->first_lba[i] + lay->nlbas[i] - 1),
			.attrs = htole64(p->attrs),
		};
		uint8_t name[GPT_NAME_UNITS * 2];

		r = gpt_name_encode(cd, p->name, name);
		if (r < 0)
			break;
		memcpy(e.type_guid, p->type.b, sizeof(e.type_guid));
		memcpy(e.part_guid, p->guid.b, sizeof(e.part_guid));
		memcpy(e.name, name, sizeof(e.name));
		memcpy(array + i * GPT_ENTRY_SIZE, &e, sizeof(e));
	}
	iconv_close(cd);
	return r;
}

/* Writes the protective MBR (B.2) into an LBA-sized, zeroed buffer. */
static void gpt_fill_pmbr(uint8_t *lba0, uint64_t disk_lbas)
{
	uint64_t size = disk_lbas - 1;
	struct gpt_pmbr mbr = {
		.record[0] = {
			.boot_indicator = 0x00,
			.start_chs = { 0x00, 0x02, 0x00 },
			.os_type = GPT_MBR_TYPE_PROTECTIVE,
			.end_chs = { 0xff, 0xff, 0xff },
			.start_lba = htole32(1),
			.size_lba = htole32(size > GPT_MBR_MAX_LBAS ?
					    GPT_MBR_MAX_LBAS : (uint32_t)size),
		},
		.signature = htole16(GPT_MBR_SIGNATURE),
	};

	memcpy(lba0, &mbr, sizeof(mbr));
}

/*
 * Writes a GPT header (B.3) for the copy at my_lba into an LBA-sized,
 * zeroed buffer, its CRC last (B.5: over 92 bytes, the field as zero).
 */
static void gpt_fill_header(uint8_t *lba, uint64_t my_lba, uint64_t alternate_lba,
			    uint64_t entries_lba, uint64_t disk_lbas,
			    const struct gpt_guid *disk_guid, uint32_t entries_crc)
{
	struct gpt_header h = {
		.revision = htole32(GPT_REVISION),
		.header_size = htole32(GPT_HEADER_SIZE),
		.header_crc32 = 0,
		.my_lba = htole64(my_lba),
		.alternate_lba = htole64(alternate_lba),
		.first_usable_lba = htole64(GPT_FIRST_USABLE_LBA),
		.last_usable_lba = htole64(disk_lbas - GPT_BACKUP_LBAS - 1),
		.entries_lba = htole64(entries_lba),
		.num_entries = htole32(GPT_ENTRIES),
		.entry_size = htole32(GPT_ENTRY_SIZE),
		.entries_crc32 = htole32(entries_crc),
	};

	memcpy(h.signature, GPT_SIGNATURE, sizeof(h.signature));
	memcpy(h.disk_guid, disk_guid->b, sizeof(h.disk_guid));
	memcpy(lba, &h, sizeof(h));
	put_le32(lba + offsetof(struct gpt_header, header_crc32),
		     (uint32_t)crc32(0L, lba, GPT_HEADER_SIZE));
}

/*
 * Appends the disk to the map: the metadata buffers, each partition's
 * regions at its first LBA and zeros everywhere else (B.1).  Returns 0 or
 * the region map's -ENOMEM / -EOVERFLOW.
 */
static int gpt_emit(const struct gpt_partition *parts, size_t nparts,
		    const struct gpt_layout *lay, const uint8_t *primary,
		    const uint8_t *backup_header, struct region_map *disk)
{
	uint64_t lba = GPT_FIRST_USABLE_LBA;	/* next LBA to append */
	int r;

	r = region_add_mem(disk, primary, PRIMARY_BYTES);
	for (size_t i = 0; i < nparts && r == 0; i++) {
		uint64_t tail = lay->nlbas[i] * GPT_LBA_SIZE - parts[i].map->size;

		r = region_add_zero(disk, (lay->first_lba[i] - lba) * GPT_LBA_SIZE);
		if (r == 0)
			r = region_add_map(disk, parts[i].map, 0, parts[i].map->size);
		if (r == 0)
			r = region_add_zero(disk, tail);	/* to the LBA boundary */
		lba = lay->first_lba[i] + lay->nlbas[i];
	}
	if (r == 0)
		r = region_add_zero(disk, (lay->disk_lbas - GPT_BACKUP_LBAS - lba) *
				    GPT_LBA_SIZE);
	if (r == 0)
		r = region_add_mem(disk, primary + PRIMARY_ARRAY_OFF, GPT_ARRAY_BYTES);
	if (r == 0)
		r = region_add_mem(disk, backup_header, GPT_LBA_SIZE);
	return r;
}

/*
 * Besides the errors gpt.h lists: -EINVAL also for a NULL or empty
 * partition map, an all-zero type, partition or disk GUID, or a partition
 * GUID used twice; -EOVERFLOW for a disk past 2^64 bytes; -ENOTSUP if
 * iconv lacks UTF-16LE.  On failure disk may hold part of the disk (the
 * caller frees it); ret_first_lba is written only on success.
 */
int gpt_build(const struct gpt_partition *parts, size_t nparts,
	      const struct gpt_guid *disk_guid, struct region_map *disk,
	      uint64_t *ret_first_lba)
{
	struct gpt_layout lay;
	_cleanup_free_ uint8_t *primary = NULL;
	_cleanup_free_ uint8_t *backup_header = NULL;
	uint32_t entries_crc;
	uint64_t n;
	int r;

	if (!parts || nparts == 0 || nparts > GPT_ENTRIES || !disk_guid ||
	    guid_is_zero(disk_guid) || !disk)
		return -EINVAL;
	r = gpt_check(parts, nparts);
	if (r == 0)
		r = gpt_plan(parts, nparts, &lay);
	if (r < 0)
		return r;
	n = lay.disk_lbas;

	primary = calloc(1, PRIMARY_BYTES);
	backup_header = calloc(1, GPT_LBA_SIZE);
	if (!primary || !backup_header)
		return -ENOMEM;
	r = gpt_fill_entries(parts, nparts, &lay, primary + PRIMARY_ARRAY_OFF);
	if (r < 0)
		return r;
	/* B.5: the array first, its CRC in both headers, then each header. */
	entries_crc = (uint32_t)crc32(0L, primary + PRIMARY_ARRAY_OFF, GPT_ARRAY_BYTES);
	gpt_fill_pmbr(primary, n);
	gpt_fill_header(primary + PRIMARY_HEADER_OFF, 1, n - 1,
			GPT_PRIMARY_ARRAY_LBA, n, disk_guid, entries_crc);
	gpt_fill_header(backup_header, n - 1, 1, n - GPT_BACKUP_LBAS, n,
			disk_guid, entries_crc);

	/*
	 * The disk map owns both buffers from here on (region_map_own() frees
	 * a buffer itself when it fails); the pointers stay valid for the
	 * regions appended next.
	 */
	const uint8_t *pri = primary, *bak = backup_header;
	r = region_map_own(disk, TAKE_PTR(primary));
	if (r == 0)
		r = region_map_own(disk, TAKE_PTR(backup_header));
	if (r == 0)
		r = gpt_emit(parts, nparts, &lay, pri, bak, disk);
	if (r < 0)
		return r;
	if (ret_first_lba)
		memcpy(ret_first_lba, lay.first_lba, nparts * sizeof(*ret_first_lba));
	return 0;
}
