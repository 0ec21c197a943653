/* SPDX-License-Identifier: MIT */
/*
 * fat_fs.h - the FAT32 on-disk format as far as fat_build() writes it:
 * boot sector with the FAT32 BPB, FSInfo sector, 32-byte directory entry
 * and long-file-name slot.  Field names follow the Microsoft FAT
 * specification (fatgen103); offsets, values and the checks consumers
 * make follow ../shared/docs/fat32-gpt.md Part A (section numbers below
 * refer to it).
 *
 * Every multi-byte field is stored little-endian (the le* typedefs only
 * document that); builders keep host values and convert with htole16/32
 * when filling a struct.  The structs are packed and checked at compile
 * time.
 *
 * Volume layout (A.1), in 512-byte sectors from the volume start
 * (F = FATSz32, S = sectors per cluster):
 *
 *   sector 0      boot sector (BPB)          sector 6   its backup
 *   sector 1      FSInfo                     sector 7   its backup
 *   32 .. 32+F-1  FAT #1    32+F .. 32+2F-1  FAT #2, identical
 *   32+2F ..      data area: cluster c at 32 + 2F + (c - 2) * S,
 *                 the root directory's chain starting at cluster 2
 */
#ifndef EROFS_NBD_FAT_FS_H
#define EROFS_NBD_FAT_FS_H

#include <stddef.h>
#include <stdint.h>

typedef uint16_t le16;	/* stored little-endian */
typedef uint32_t le32;

#define FAT_SECTOR_SIZE		512		/* bytes; the only size we write */
#define FAT_RSVD_SECTORS	32		/* reserved area, sectors (A.2, A.4) */
#define FAT_NUM_FATS		2
#define FAT_MEDIA		0xF8		/* fixed disk (A.2) */
#define FAT_FSINFO_SECTOR	1
#define FAT_BACKUP_BOOT_SECTOR	6		/* FSInfo copy at 7 (A.4) */
#define FAT_ROOT_CLUSTER	2

/* Cluster counts (A.6, A.5). */
#define FAT32_MIN_CLUSTERS	65525		/* fewer: EDK2 fails a FAT32 volume */
#define FAT32_MIN_MARGIN	16		/* keep away from the boundary */
#define FAT32_MAX_CLUSTERS	0x0FFFFFF0u	/* 28-bit cluster numbers, as dosfstools */

/* FAT slot values (A.5): only the low 28 bits count. */
#define FAT_ENTRY_FREE		0x00000000u
#define FAT_ENTRY_EOC		0x0FFFFFFFu
#define FAT_ENTRY0		(0x0FFFFF00u | FAT_MEDIA)
#define FAT_ENTRY1		0x0FFFFFFFu	/* bit 27 clean, bit 26 no I/O error */

/* Directory entry attributes (A.8). */
#define FAT_ATTR_READ_ONLY	0x01
#define FAT_ATTR_HIDDEN		0x02
#define FAT_ATTR_SYSTEM		0x04
#define FAT_ATTR_VOLUME_ID	0x08
#define FAT_ATTR_DIRECTORY	0x10
#define FAT_ATTR_ARCHIVE	0x20
#define FAT_ATTR_LFN		0x0F

/* nt_res case flags (A.8, A.11): stored upper case, shown lower case. */
#define FAT_NT_LOWER_BASE	0x08
#define FAT_NT_LOWER_EXT	0x10

#define FAT_DIRENT_SIZE		32		/* bytes per directory slot */
#define FAT_MAX_DIR_SLOTS	65536		/* 2 MiB of slots per directory (A.8) */
#define FAT_LFN_CHARS		13		/* UTF-16 units per LFN slot (A.12) */
#define FAT_LFN_MAX_UNITS	255		/* UTF-16 units per long name */
#define FAT_LFN_LAST		0x40		/* ordinal flag of the final slot */
#define FAT_MAX_FILE_SIZE	0xFFFFFFFFu	/* bytes: 32-bit size field */

/* Boot sector with the FAT32 BPB (A.2): sector 0 and its copy at 6. */
struct fat_boot_sector {
	uint8_t jmp_boot[3];	/* 0x000 EB 58 90 */
	char oem_name[8];	/* 0x003 "MSWIN4.1" */
	le16 byts_per_sec;	/* 0x00b 512 */
	uint8_t sec_per_clus;	/* 0x00d sectors per cluster, power of two */
	le16 rsvd_sec_cnt;	/* 0x00e reserved sectors, 32 */
	uint8_t num_fats;	/* 0x010 2 */
	le16 root_ent_cnt;	/* 0x011 0 on FAT32 */
	le16 tot_sec16;		/* 0x013 0: the 32-bit field counts */
	uint8_t media;		/* 0x015 F8 */
	le16 fat_sz16;		/* 0x016 0: this is what makes it FAT32 */
	le16 sec_per_trk;	/* 0x018 geometry, unused with LBA */
	le16 num_heads;		/* 0x01a geometry, unused with LBA */
	le32 hidd_sec;		/* 0x01c sectors before the volume on the disk */
	le32 tot_sec32;		/* 0x020 volume size in sectors */
	le32 fat_sz32;		/* 0x024 sectors per FAT copy */
	le16 ext_flags;		/* 0x028 0: FATs mirrored */
	le16 fs_ver;		/* 0x02a 0 (EDK2 refuses others) */
	le32 root_clus;		/* 0x02c first cluster of the root, 2 */
	le16 fs_info;		/* 0x030 FSInfo sector, 1 */
	le16 bk_boot_sec;	/* 0x032 backup boot sector, 6 */
	uint8_t reserved[12];	/* 0x034 0 */
	uint8_t drv_num;	/* 0x040 0x80 */
	uint8_t reserved1;	/* 0x041 0: bit 0 would be the dirty flag */
	uint8_t boot_sig;	/* 0x042 0x29: the next three fields exist */
	le32 vol_id;		/* 0x043 volume serial (blkid's UUID) */
	uint8_t vol_lab[11];	/* 0x047 label, space padded, or "NO NAME    " */
	char fil_sys_type[8];	/* 0x052 "FAT32   ", informational */
	uint8_t boot_code[420];	/* 0x05a never run by firmware */
	le16 signature;		/* 0x1fe 0xAA55 (bytes 55 AA) */
} __attribute__((packed));
_Static_assert(sizeof(struct fat_boot_sector) == 512, "fat_boot_sector size");
_Static_assert(offsetof(struct fat_boot_sector, sec_per_clus) == 0x0d, "sec_per_clus");
_Static_assert(offsetof(struct fat_boot_sector, media) == 0x15, "media");
_Static_assert(offsetof(struct fat_boot_sector, tot_sec32) == 0x20, "tot_sec32");
_Static_assert(offsetof(struct fat_boot_sector, root_clus) == 0x2c, "root_clus");
_Static_assert(offsetof(struct fat_boot_sector, drv_num) == 0x40, "drv_num");
_Static_assert(offsetof(struct fat_boot_sector, vol_id) == 0x43, "vol_id");
_Static_assert(offsetof(struct fat_boot_sector, vol_lab) == 0x47, "vol_lab");
_Static_assert(offsetof(struct fat_boot_sector, boot_code) == 0x5a, "boot_code");
_Static_assert(offsetof(struct fat_boot_sector, signature) == 0x1fe, "signature");

#define FAT_BOOT_SIGNATURE	0xAA55
#define FAT_EXT_BOOT_SIG	0x29

/* FSInfo sector (A.3): sector 1 and its copy at 7. */
struct fat_fsinfo {
	le32 lead_sig;		/* 0x000 0x41615252 "RRaA" */
	uint8_t reserved1[480];	/* 0x004 0 */
	le32 struc_sig;		/* 0x1e4 0x61417272 "rrAa" */
	le32 free_count;	/* 0x1e8 free clusters, exact */
	le32 nxt_free;		/* 0x1ec first free cluster, or 0xFFFFFFFF */
	uint8_t reserved2[12];	/* 0x1f0 0 */
	le32 trail_sig;		/* 0x1fc 0xAA550000 (bytes 00 00 55 AA) */
} __attribute__((packed));
_Static_assert(sizeof(struct fat_fsinfo) == 512, "fat_fsinfo size");
_Static_assert(offsetof(struct fat_fsinfo, struc_sig) == 0x1e4, "struc_sig");
_Static_assert(offsetof(struct fat_fsinfo, free_count) == 0x1e8, "free_count");
_Static_assert(offsetof(struct fat_fsinfo, trail_sig) == 0x1fc, "trail_sig");

#define FAT_FSINFO_LEAD_SIG	0x41615252u
#define FAT_FSINFO_STRUC_SIG	0x61417272u
#define FAT_FSINFO_TRAIL_SIG	0xAA550000u
#define FAT_FSINFO_UNKNOWN	0xFFFFFFFFu

/* Short directory entry (A.8). */
struct fat_dirent {
	uint8_t name[11];	/* 0x00 8 + 3 bytes, space padded, no dot */
	uint8_t attr;		/* 0x0b FAT_ATTR_* */
	uint8_t nt_res;		/* 0x0c FAT_NT_LOWER_* case flags */
	uint8_t crt_time_tenth;	/* 0x0d 10 ms units, 0..199 */
	le16 crt_time;		/* 0x0e DOS time */
	le16 crt_date;		/* 0x10 DOS date */
	le16 lst_acc_date;	/* 0x12 DOS date */
	le16 fst_clus_hi;	/* 0x14 first cluster, high 16 bits */
	le16 wrt_time;		/* 0x16 DOS time: hour<<11 | min<<5 | sec/2 */
	le16 wrt_date;		/* 0x18 DOS date: (year-1980)<<9 | month<<5 | day */
	le16 fst_clus_lo;	/* 0x1a first cluster, low 16 bits (0: empty file) */
	le32 file_size;		/* 0x1c bytes; 0 for directories */
} __attribute__((packed));
_Static_assert(sizeof(struct fat_dirent) == FAT_DIRENT_SIZE, "fat_dirent size");
_Static_assert(offsetof(struct fat_dirent, attr) == 0x0b, "attr");
_Static_assert(offsetof(struct fat_dirent, fst_clus_hi) == 0x14, "fst_clus_hi");
_Static_assert(offsetof(struct fat_dirent, wrt_time) == 0x16, "wrt_time");
_Static_assert(offsetof(struct fat_dirent, fst_clus_lo) == 0x1a, "fst_clus_lo");
_Static_assert(offsetof(struct fat_dirent, file_size) == 0x1c, "file_size");

/* Long-file-name slot (A.12): 13 UTF-16LE units of the long name. */
struct fat_lfn_slot {
	uint8_t ord;		/* 0x00 1..20, | FAT_LFN_LAST on the final piece */
	le16 name1[5];		/* 0x01 units 1-5 */
	uint8_t attr;		/* 0x0b FAT_ATTR_LFN */
	uint8_t type;		/* 0x0c 0 */
	uint8_t chksum;		/* 0x0d checksum of the short name */
	le16 name2[6];		/* 0x0e units 6-11 */
	le16 fst_clus_lo;	/* 0x1a 0 */
	le16 name3[2];		/* 0x1c units 12-13 */
} __attribute__((packed));
_Static_assert(sizeof(struct fat_lfn_slot) == FAT_DIRENT_SIZE, "fat_lfn_slot size");
_Static_assert(offsetof(struct fat_lfn_slot, name1) == 0x01, "name1");
_Static_assert(offsetof(struct fat_lfn_slot, attr) == 0x0b, "lfn attr");
_Static_assert(offsetof(struct fat_lfn_slot, chksum) == 0x0d, "chksum");
_Static_assert(offsetof(struct fat_lfn_slot, name2) == 0x0e, "name2");
_Static_assert(offsetof(struct fat_lfn_slot, fst_clus_lo) == 0x1a, "lfn fst_clus_lo");
_Static_assert(offsetof(struct fat_lfn_slot, name3) == 0x1c, "name3");

#endif
