// SPDX-License-Identifier: MIT
/*
 * super.c - the superblock (§2): its fields, the UUID (derived from the
 * image's metadata, so the same tree gives the same UUID), and the
 * CRC32C checksum over the rest of block 0 (§2.2), computed last.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "erofs/internal.h"

/* Reflected CRC32C (Castagnoli) table, built once on first use. */
static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0);
		crc32c_table[i] = c;
	}
}

/*
 * Continues a raw CRC32C (§2.2: reflected polynomial 0x82F63B78, the
 * caller passes 0xFFFFFFFF to start, no final XOR) over len bytes.
 * Thread-safe.
 */
uint32_t erofs_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	pthread_once(&crc32c_once, crc32c_init);
	while (len--)
		crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/*
 * Writes the superblock (§2) at dst (128 bytes, zeroed), with checksum
 * and uuid still zero: erofs_super_finish() fills them in.
 */
void erofs_super_serialise(const struct erofs_ctx *ctx, uint8_t *dst)
{
	uint32_t compat = EROFS_FEATURE_COMPAT_SB_CHKSUM | EROFS_FEATURE_COMPAT_MTIME;
	if (ctx->any_filter)
		compat |= EROFS_FEATURE_COMPAT_XATTR_FILTER;

	struct erofs_super_block sb = {
		.magic = htole32(EROFS_SUPER_MAGIC),
		.feature_compat = htole32(compat),
		.blkszbits = (uint8_t)ctx->blkszbits,
		.root_nid = htole16((uint16_t)ctx->inodes[ctx->root].nid),
		.inos = htole64(ctx->ninodes),
		.build_time = htole64((uint64_t)ctx->build_time),
		.build_time_nsec = htole32(ctx->build_time_nsec),
		.blocks = htole32((uint32_t)ctx->blocks),
		.meta_blkaddr = 0,
		.xattr_blkaddr = 0,
		.feature_incompat = 0,	/* mounts on 5.14+ (§3) */
	};
	if (ctx->opts->volume_name)
		memcpy(sb.volume_name, ctx->opts->volume_name,
		       strnlen(ctx->opts->volume_name, sizeof(sb.volume_name) - 1));
	memcpy(dst, &sb, sizeof(sb));
}

/*
 * Finishes the superblock once the image is complete (map holds it from
 * byte map_start): the UUID is XXH3-128 of every metadata byte built in
 * memory (checksum and uuid still zero), marked as an RFC 9562 version 8
 * (custom) UUID; then the checksum, CRC32C of bytes 1024..crc_end read
 * back through the map (§2.2).  Nothing in that range is a file region
 * (erofs_layout() keeps file tails out), so this reads memory only.
 * Returns 0, -ENOMEM, or -errno from region_map_pread().
 */
int erofs_super_finish(struct erofs_ctx *ctx, const struct region_map *map,
		       uint64_t map_start)
{
	struct erofs_super_block *sb = (struct erofs_super_block *)ctx->membuf;
	XXH3_state_t *st = XXH3_createState();
	uint64_t crc_end = erofs_crc_end(ctx->bs);
	int r;

	if (!st)
		return -ENOMEM;
	XXH3_128bits_reset(st);
	XXH3_128bits_update(st, ctx->membuf, ctx->membuf_size);
	if (ctx->blockbuf_size)
		XXH3_128bits_update(st, ctx->blockbuf, ctx->blockbuf_size);
	XXH128_canonical_t canon;
	XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	memcpy(sb->uuid, canon.digest, sizeof(sb->uuid));
	sb->uuid[6] = (uint8_t)((sb->uuid[6] & 0x0f) | 0x80);	/* version 8 */
	sb->uuid[8] = (uint8_t)((sb->uuid[8] & 0x3f) | 0x80);	/* variant 10 */

	size_t len = (size_t)(crc_end - EROFS_SUPER_OFFSET);
	uint8_t *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	r = region_map_pread(map, buf, len, map_start + EROFS_SUPER_OFFSET);
	if (r == 0) {
		uint32_t crc = erofs_crc32c(0xFFFFFFFFu, buf, len);
		put_le32(&sb->checksum, crc);
	}
	free(buf);
	return r;
}
