/* SPDX-License-Identifier: MIT */
/*
 * gpt_fs.h - the GUID partition table on-disk format as erofs-nbd writes
 * it: the protective MBR, the GPT header and the partition entry.  Offsets,
 * values and checks follow ../shared/docs/fat32-gpt.md Part B (section
 * numbers below refer to it), itself written from the UEFI specification's
 * GPT chapter.
 *
 * Every multi-byte integer is stored little-endian (the le* typedefs only
 * document that); the builder keeps host values and converts with
 * put_le*() (server/byteorder.h) when serialising.  GUIDs are 16 bytes in the mixed-endian
 * on-disk order (B.6).  Sizes and offsets are checked at compile time.
 *
 * Disk map, N = total LBAs of 512 bytes (B.1):
 *
 *   LBA 0        protective MBR              struct gpt_pmbr
 *   LBA 1        primary header              struct gpt_header + zeros
 *   LBA 2..33    primary entry array         128 x struct gpt_entry
 *   LBA 34..     unused, then partitions from LBA 2048 (1 MiB aligned)
 *   LBA N-33..   backup entry array          same bytes as the primary
 *   LBA N-1      backup header
 */
#ifndef EROFS_NBD_GPT_FS_H
#define EROFS_NBD_GPT_FS_H

#include "server/byteorder.h"
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t gpt_le16;	/* stored little-endian */
typedef uint32_t gpt_le32;
typedef uint64_t gpt_le64;

#define GPT_LBA_SIZE		512		/* bytes per LBA (sector) */
#define GPT_ENTRIES		128		/* entries in each array (B.3) */
#define GPT_ENTRY_SIZE		128		/* bytes per entry (B.4) */
#define GPT_ARRAY_BYTES		(GPT_ENTRIES * GPT_ENTRY_SIZE)	/* 16384 */
#define GPT_ARRAY_LBAS		(GPT_ARRAY_BYTES / GPT_LBA_SIZE)	/* 32 */
#define GPT_PRIMARY_ARRAY_LBA	2		/* B.1 */
#define GPT_FIRST_USABLE_LBA	(GPT_PRIMARY_ARRAY_LBA + GPT_ARRAY_LBAS)	/* 34 */
#define GPT_BACKUP_LBAS		(GPT_ARRAY_LBAS + 1)	/* 33: backup array + header */
#define GPT_ALIGN_LBAS		2048		/* 1 MiB partition alignment (B.7) */
#define GPT_DISK_ALIGN_LBAS	8		/* disk size: a multiple of 4096 bytes */
#define GPT_NAME_UNITS		36		/* UTF-16 code units in a name (B.10) */

#define GPT_SIGNATURE		"EFI PART"	/* 8 bytes, no NUL on disk */
#define GPT_REVISION		0x00010000u	/* 1.0 (B.3) */
#define GPT_HEADER_SIZE		92		/* bytes covered by header_crc32 */

#define GPT_MBR_TYPE_PROTECTIVE	0xEE		/* B.2 */
#define GPT_MBR_SIGNATURE	0xAA55		/* bytes 55 AA at 0x1FE */
#define GPT_MBR_MAX_LBAS	0xFFFFFFFFu	/* largest size_lba in a record */

/* One MBR partition record (B.2), 16 bytes. */
struct gpt_mbr_record {
	uint8_t boot_indicator;	/* 0x00 0x00: never active (EDK2 refuses 0x80) */
	uint8_t start_chs[3];	/* 0x01 00 02 00: CHS of LBA 1 */
	uint8_t os_type;	/* 0x04 GPT_MBR_TYPE_PROTECTIVE */
	uint8_t end_chs[3];	/* 0x05 FF FF FF: not representable */
	gpt_le32 start_lba;	/* 0x08 1 */
	gpt_le32 size_lba;	/* 0x0c LBAs: min(N - 1, 0xFFFFFFFF) */
} __attribute__((packed));
_Static_assert(sizeof(struct gpt_mbr_record) == 16, "gpt_mbr_record size");
_Static_assert(offsetof(struct gpt_mbr_record, os_type) == 0x04, "gpt_mbr_record.os_type");
_Static_assert(offsetof(struct gpt_mbr_record, start_lba) == 0x08, "gpt_mbr_record.start_lba");
_Static_assert(offsetof(struct gpt_mbr_record, size_lba) == 0x0c, "gpt_mbr_record.size_lba");

/* Protective MBR at LBA 0 (B.2), 512 bytes. */
struct gpt_pmbr {
	uint8_t boot_code[440];		/* 0x000 zeros: firmware never runs it */
	gpt_le32 disk_signature;	/* 0x1b8 0: unused with GPT */
	gpt_le16 reserved;		/* 0x1bc 0 */
	struct gpt_mbr_record record[4];	/* 0x1be [0] protective, [1..3] zero */
	gpt_le16 signature;		/* 0x1fe GPT_MBR_SIGNATURE (55 AA) */
} __attribute__((packed));
_Static_assert(sizeof(struct gpt_pmbr) == GPT_LBA_SIZE, "gpt_pmbr size");
_Static_assert(offsetof(struct gpt_pmbr, disk_signature) == 0x1b8, "gpt_pmbr.disk_signature");
_Static_assert(offsetof(struct gpt_pmbr, record) == 0x1be, "gpt_pmbr.record");
_Static_assert(offsetof(struct gpt_pmbr, signature) == 0x1fe, "gpt_pmbr.signature");

/*
 * GPT header at LBA 1 (primary) and LBA N-1 (backup), B.3.  Only the first
 * 92 bytes are the header; the rest of its LBA is zero.  The two copies
 * differ in my_lba, alternate_lba, entries_lba and so header_crc32.
 */
struct gpt_header {
	char signature[8];		/* 0x00 GPT_SIGNATURE */
	gpt_le32 revision;		/* 0x08 GPT_REVISION */
	gpt_le32 header_size;		/* 0x0c bytes: GPT_HEADER_SIZE */
	gpt_le32 header_crc32;		/* 0x10 CRC32 of bytes 0..91, this field 0 (B.5) */
	gpt_le32 reserved;		/* 0x14 0 */
	gpt_le64 my_lba;		/* 0x18 1, or N-1 in the backup */
	gpt_le64 alternate_lba;		/* 0x20 N-1, or 1 in the backup */
	gpt_le64 first_usable_lba;	/* 0x28 34 */
	gpt_le64 last_usable_lba;	/* 0x30 N-34, inclusive */
	uint8_t disk_guid[16];		/* 0x38 on-disk order (B.6), non-zero */
	gpt_le64 entries_lba;		/* 0x48 2, or N-33 in the backup */
	gpt_le32 num_entries;		/* 0x50 GPT_ENTRIES */
	gpt_le32 entry_size;		/* 0x54 bytes: GPT_ENTRY_SIZE */
	gpt_le32 entries_crc32;		/* 0x58 CRC32 of the whole array (B.5) */
} __attribute__((packed));
_Static_assert(sizeof(struct gpt_header) == GPT_HEADER_SIZE, "gpt_header size");
_Static_assert(offsetof(struct gpt_header, header_crc32) == 0x10, "gpt_header.header_crc32");
_Static_assert(offsetof(struct gpt_header, my_lba) == 0x18, "gpt_header.my_lba");
_Static_assert(offsetof(struct gpt_header, first_usable_lba) == 0x28, "gpt_header.first_usable_lba");
_Static_assert(offsetof(struct gpt_header, disk_guid) == 0x38, "gpt_header.disk_guid");
_Static_assert(offsetof(struct gpt_header, entries_lba) == 0x48, "gpt_header.entries_lba");
_Static_assert(offsetof(struct gpt_header, num_entries) == 0x50, "gpt_header.num_entries");
_Static_assert(offsetof(struct gpt_header, entries_crc32) == 0x58, "gpt_header.entries_crc32");

/* Partition entry (B.4), 128 bytes; all zero = unused. */
struct gpt_entry {
	uint8_t type_guid[16];		/* 0x00 on-disk order (B.6, B.8) */
	uint8_t part_guid[16];		/* 0x10 PARTUUID, on-disk order */
	gpt_le64 first_lba;		/* 0x20 512-byte LBAs, inclusive */
	gpt_le64 last_lba;		/* 0x28 inclusive */
	gpt_le64 attrs;			/* 0x30 B.9 */
	gpt_le16 name[GPT_NAME_UNITS];	/* 0x38 UTF-16LE, zero padded (B.10) */
} __attribute__((packed));
_Static_assert(sizeof(struct gpt_entry) == GPT_ENTRY_SIZE, "gpt_entry size");
_Static_assert(offsetof(struct gpt_entry, part_guid) == 0x10, "gpt_entry.part_guid");
_Static_assert(offsetof(struct gpt_entry, first_lba) == 0x20, "gpt_entry.first_lba");
_Static_assert(offsetof(struct gpt_entry, last_lba) == 0x28, "gpt_entry.last_lba");
_Static_assert(offsetof(struct gpt_entry, attrs) == 0x30, "gpt_entry.attrs");
_Static_assert(offsetof(struct gpt_entry, name) == 0x38, "gpt_entry.name");

#endif
