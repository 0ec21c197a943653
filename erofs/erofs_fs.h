/* SPDX-License-Identifier: MIT */
/*
 * erofs_fs.h - the EROFS on-disk format as far as erofs-nbd writes it:
 * superblock, compact and extended inodes, xattr header and entries,
 * directory entries.  Field names follow the kernel's fs/erofs/erofs_fs.h;
 * offsets, units and allowed values follow ../shared/docs/erofs-format.md
 * (section numbers below refer to it).
 *
 * Every multi-byte field is stored little-endian (the le* typedefs only
 * document that); builders keep host values and convert with put_le*()
 * when serialising.  The structs are packed and checked at compile time.
 *
 * Image addressing (§1, §4):
 *
 *   byte 0          1024        1152                       bs
 *   +---------------+-----------+---------------------------+---- ...
 *   | unused (zero) | superblock| inodes, xattrs, tails ... | data blocks
 *   +---------------+-----------+---------------------------+---- ...
 *   inode offset = meta_blkaddr * bs + nid * 32
 *   shared xattr = xattr_blkaddr * bs + id * 4
 *   data block   = blkaddr * bs
 */
#ifndef EROFS_NBD_EROFS_FS_H
#define EROFS_NBD_EROFS_FS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "server/byteorder.h"

typedef uint16_t le16;	/* stored little-endian */
typedef uint32_t le32;
typedef uint64_t le64;

#define EROFS_SUPER_MAGIC	0xE0F5E1E2u
#define EROFS_SUPER_OFFSET	1024		/* bytes (§2) */
#define EROFS_ISLOT_SIZE	32		/* bytes per nid (§4) */
#define EROFS_NULL_ADDR		0xFFFFFFFFu	/* i_u of an inline-only inode (§5.4) */
#define EROFS_NAME_LEN		255		/* bytes (§8) */
#define EROFS_MIN_BLKSZBITS	9
#define EROFS_MAX_BLKSZBITS	16

/* feature_compat bits (§2.1) */
#define EROFS_FEATURE_COMPAT_SB_CHKSUM		0x00000001
#define EROFS_FEATURE_COMPAT_MTIME		0x00000002
#define EROFS_FEATURE_COMPAT_XATTR_FILTER	0x00000004

/* i_format (§5.1) = (datalayout << 1) | version */
#define EROFS_INODE_LAYOUT_COMPACT	0
#define EROFS_INODE_LAYOUT_EXTENDED	1
#define EROFS_INODE_FLAT_PLAIN		0
#define EROFS_INODE_FLAT_INLINE		2
#define EROFS_I_FORMAT(layout, version)	((uint16_t)((layout) << 1 | (version)))

/* Superblock (§2): 128 bytes at byte 1024, sb_extslots = 0. */
struct erofs_super_block {
	le32 magic;		/* 0x00 EROFS_SUPER_MAGIC */
	le32 checksum;		/* 0x04 CRC32C of bytes 1024..bs, this field as 0 (§2.2) */
	le32 feature_compat;	/* 0x08 §2.1 */
	uint8_t blkszbits;	/* 0x0c log2(block size in bytes), 9..16 */
	uint8_t sb_extslots;	/* 0x0d 0 */
	le16 root_nid;		/* 0x0e nid of the root directory, < 65536 */
	le64 inos;		/* 0x10 number of inodes */
	le64 build_time;	/* 0x18 seconds: time of every compact inode (6.15+: epoch) */
	le32 build_time_nsec;	/* 0x20 nanoseconds of every compact inode */
	le32 blocks;		/* 0x24 image size in blocks (statfs only) */
	le32 meta_blkaddr;	/* 0x28 block of nid 0 */
	le32 xattr_blkaddr;	/* 0x2c block of shared xattr id 0 */
	uint8_t uuid[16];	/* 0x30 */
	uint8_t volume_name[16];	/* 0x40 NUL-terminated label, <= 15 bytes */
	le32 feature_incompat;	/* 0x50 0: mounts on 5.14+ */
	le16 u1;		/* 0x54 available_compr_algs: 0 */
	le16 extra_devices;	/* 0x56 0 */
	le16 devt_slotoff;	/* 0x58 0 */
	uint8_t dirblkbits;	/* 0x5a must be 0 */
	uint8_t xattr_prefix_count;	/* 0x5b 0: no long prefixes */
	le32 xattr_prefix_start;	/* 0x5c 0 */
	le64 packed_nid;	/* 0x60 0 */
	uint8_t xattr_filter_reserved;	/* 0x68 0, or filters are ignored */
	uint8_t ishare_xattr_prefix_id;	/* 0x69 0 */
	uint8_t reserved[2];	/* 0x6a 0 */
	le32 build_time_new;	/* 0x6c 6.15+ informational: 0 */
	le64 rootnid_8b;	/* 0x70 0 (48BIT only) */
	uint8_t reserved2[8];	/* 0x78 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct erofs_super_block) == 128, "erofs_super_block size");
_Static_assert(offsetof(struct erofs_super_block, root_nid) == 0x0e, "sb.root_nid");
_Static_assert(offsetof(struct erofs_super_block, build_time) == 0x18, "sb.build_time");
_Static_assert(offsetof(struct erofs_super_block, uuid) == 0x30, "sb.uuid");
_Static_assert(offsetof(struct erofs_super_block, volume_name) == 0x40, "sb.volume_name");
_Static_assert(offsetof(struct erofs_super_block, feature_incompat) == 0x50, "sb.incompat");
_Static_assert(offsetof(struct erofs_super_block, dirblkbits) == 0x5a, "sb.dirblkbits");
_Static_assert(offsetof(struct erofs_super_block, packed_nid) == 0x60, "sb.packed_nid");
_Static_assert(offsetof(struct erofs_super_block, xattr_filter_reserved) == 0x68,
	       "sb.xattr_filter_reserved");
_Static_assert(offsetof(struct erofs_super_block, rootnid_8b) == 0x70, "sb.rootnid_8b");

/* Compact inode (§5.2): 32 bytes, one nid slot. */
struct erofs_inode_compact {
	le16 i_format;		/* 0x00 §5.1, version 0 */
	le16 i_xattr_icount;	/* 0x02 §7.1: 0 or >= 2 */
	le16 i_mode;		/* 0x04 st_mode */
	le16 i_nlink;		/* 0x06 */
	le32 i_size;		/* 0x08 bytes */
	le32 i_mtime;		/* 0x0c 0: time comes from the superblock (§5.5) */
	le32 i_u;		/* 0x10 §5.4: raw_blkaddr or rdev */
	le32 i_ino;		/* 0x14 ignored by the kernel; sequential */
	le16 i_uid;		/* 0x18 */
	le16 i_gid;		/* 0x1a */
	le32 i_reserved;	/* 0x1c 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct erofs_inode_compact) == 32, "erofs_inode_compact size");
_Static_assert(offsetof(struct erofs_inode_compact, i_u) == 0x10, "compact.i_u");
_Static_assert(offsetof(struct erofs_inode_compact, i_uid) == 0x18, "compact.i_uid");

/* Extended inode (§5.3): 64 bytes, two nid slots. */
struct erofs_inode_extended {
	le16 i_format;		/* 0x00 §5.1, version 1 */
	le16 i_xattr_icount;	/* 0x02 */
	le16 i_mode;		/* 0x04 */
	le16 i_nb;		/* 0x06 must be 0 (6.15+: startblk_hi) */
	le64 i_size;		/* 0x08 bytes */
	le32 i_u;		/* 0x10 §5.4 */
	le32 i_ino;		/* 0x14 ignored */
	le32 i_uid;		/* 0x18 */
	le32 i_gid;		/* 0x1c */
	le64 i_mtime;		/* 0x20 seconds, signed */
	le32 i_mtime_nsec;	/* 0x28 0..999999999 */
	le32 i_nlink;		/* 0x2c */
	uint8_t i_reserved2[16];	/* 0x30 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct erofs_inode_extended) == 64, "erofs_inode_extended size");
_Static_assert(offsetof(struct erofs_inode_extended, i_mtime) == 0x20, "extended.i_mtime");
_Static_assert(offsetof(struct erofs_inode_extended, i_nlink) == 0x2c, "extended.i_nlink");

/* Inline xattr area header (§7.1): 12 bytes, then h_shared_count ids. */
struct erofs_xattr_ibody_header {
	le32 h_name_filter;	/* 0x00 bloom filter, a set bit = absent (§7.5) */
	uint8_t h_shared_count;	/* 0x04 number of le32 shared ids that follow */
	uint8_t h_reserved2[7];	/* 0x05 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct erofs_xattr_ibody_header) == 12, "xattr header size");

/* Xattr entry (§7.1): 4 bytes, then the name suffix and the value, padded to 4. */
struct erofs_xattr_entry {
	uint8_t e_name_len;	/* 0x00 suffix bytes, no NUL */
	uint8_t e_name_index;	/* 0x01 §7.2 */
	le16 e_value_size;	/* 0x02 bytes */
} __attribute__((packed));
_Static_assert(sizeof(struct erofs_xattr_entry) == 4, "xattr entry size");

/* Xattr name indexes (§7.2) */
#define EROFS_XATTR_INDEX_USER			1
#define EROFS_XATTR_INDEX_POSIX_ACL_ACCESS	2
#define EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT	3
#define EROFS_XATTR_INDEX_TRUSTED		4
#define EROFS_XATTR_INDEX_SECURITY		6
#define EROFS_XATTR_FILTER_SEED			0x25BBE08Fu	/* §7.5 */
#define EROFS_XATTR_MAX_SHARED			255		/* ids per inode */

/* Directory entry (§8): 12 bytes; a block holds N dirents, then N names. */
struct erofs_dirent {
	le64 nid;		/* 0x00 */
	le16 nameoff;		/* 0x08 bytes from the start of the block */
	uint8_t file_type;	/* 0x0a EROFS_FT_* */
	uint8_t reserved;	/* 0x0b 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct erofs_dirent) == 12, "erofs_dirent size");
_Static_assert(offsetof(struct erofs_dirent, nameoff) == 0x08, "dirent.nameoff");

/* Dirent file_type (§8) */
enum {
	EROFS_FT_UNKNOWN = 0,
	EROFS_FT_REG_FILE = 1,
	EROFS_FT_DIR = 2,
	EROFS_FT_CHRDEV = 3,
	EROFS_FT_BLKDEV = 4,
	EROFS_FT_FIFO = 5,
	EROFS_FT_SOCK = 6,
	EROFS_FT_SYMLINK = 7,
};

#endif
