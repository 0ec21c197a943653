// SPDX-License-Identifier: MIT
/*
 * layout.c - the shape of a FAT32 volume: cluster size and count, FAT size
 * and total size (A.5-A.7), DOS timestamps (A.8), and the reserved area's
 * boot sector and FSInfo sector (A.2, A.3).  Facts:
 * ../shared/docs/fat32-gpt.md Part A.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <endian.h>

#include "fat/internal.h"
#include "server/cleanup.h"

const uint32_t fat_cluster_sizes[FAT_NCLUSTER_SIZES] = {
	512, 4096, 8192, 16384, 32768,
};

/*
 * Largest volume, in bytes, for each cluster size: Microsoft's format
 * defaults that mkfs.fat mirrors (A.7).  The last size takes the rest.
 */
static const uint64_t cluster_size_limit[FAT_NCLUSTER_SIZES] = {
	260ull << 20, 8ull << 30, 16ull << 30, 32ull << 30, UINT64_MAX,
};

#define SECTORS_PER_MIB		2048
#define FAT_ALIGN_SECTORS	8	/* FAT sizes in 4 KiB: data stays page aligned */
#define MAX_TOTAL_SECTORS	(UINT32_MAX & ~(uint64_t)(SECTORS_PER_MIB - 1))

/* Sectors one FAT copy needs for n data clusters, rounded to 4 KiB (A.5). */
static uint64_t fat_sectors_for(uint64_t n)
{
	uint64_t s = DIV_ROUND_UP((n + 2) * 4, FAT_SECTOR_SIZE);
	return ROUND_UP(s, (uint64_t)FAT_ALIGN_SECTORS);
}

/* Tries one cluster size; returns false if the volume would not suit it. */
static bool try_cluster_size(unsigned i, uint64_t need, uint64_t min_bytes,
			     struct fat_geom *g)
{
	uint64_t spc = fat_cluster_sizes[i] / FAT_SECTOR_SIZE;
	uint64_t n0 = need, fat, tot, n;

	if (n0 < FAT32_MIN_CLUSTERS + FAT32_MIN_MARGIN)
		n0 = FAT32_MIN_CLUSTERS + FAT32_MIN_MARGIN;
	if (n0 > FAT32_MAX_CLUSTERS)
		return false;
	fat = fat_sectors_for(n0);
	tot = FAT_RSVD_SECTORS + FAT_NUM_FATS * fat + n0 * spc;
	if (tot < DIV_ROUND_UP(min_bytes, FAT_SECTOR_SIZE))
		tot = DIV_ROUND_UP(min_bytes, FAT_SECTOR_SIZE);
	/* A whole number of MiB keeps the next partition aligned (A.7). */
	tot = ROUND_UP(tot, (uint64_t)SECTORS_PER_MIB);
	if (tot > MAX_TOTAL_SECTORS || tot * FAT_SECTOR_SIZE > cluster_size_limit[i])
		return false;

	/* Fill the volume with clusters; a bigger FAT leaves fewer of them. */
	for (;;) {
		n = (tot - FAT_RSVD_SECTORS - FAT_NUM_FATS * fat) / spc;
		if (n > FAT32_MAX_CLUSTERS)
			n = FAT32_MAX_CLUSTERS;
		uint64_t f = fat_sectors_for(n);
		if (f <= fat)
			break;
		fat = f;
	}
	if (n < n0)
		return false;

	g->cluster_bytes = fat_cluster_sizes[i];
	g->sec_per_clus = (uint32_t)spc;
	g->fat_sectors = (uint32_t)fat;
	g->nclusters = (uint32_t)n;
	g->total_sectors = (uint32_t)tot;
	g->data_sector = (uint32_t)(FAT_RSVD_SECTORS + FAT_NUM_FATS * fat);
	return true;
}

/*
 * Chooses the volume's geometry (A.6, A.7).  need[i] is the number of
 * clusters the content takes with clusters of fat_cluster_sizes[i] bytes.
 * Takes the smallest cluster size whose volume stays within Microsoft's
 * default range for it, with N >= 65525 + 16 clusters so that every
 * driver sees FAT32, the total at least min_bytes and rounded up to whole
 * MiB, and the spare sectors turned into clusters.  Returns 0, or -EFBIG
 * when no FAT32 volume (2^32 - 1 sectors, 2^28 clusters) can hold it.
 */
int fat_geometry(const uint64_t need[FAT_NCLUSTER_SIZES], uint64_t min_bytes,
		 struct fat_geom *ret)
{
	struct fat_geom g;

	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++) {
		if (try_cluster_size(i, need[i], min_bytes, &g)) {
			*ret = g;
			return 0;
		}
	}
	return -EFBIG;
}

/* 1980-01-01 00:00:00 and 2107-12-31 23:59:58 UTC, the DOS range (A.8). */
#define DOS_EPOCH_MIN	315532800ll
#define DOS_EPOCH_MAX	4354819198ll

/*
 * Converts seconds since the epoch to a DOS date and time (A.8), in UTC so
 * that the output does not depend on the host's time zone, clamped to
 * 1980..2107; seconds are rounded down to even.
 */
void fat_dos_time(int64_t t, uint16_t *ret_date, uint16_t *ret_time)
{
	struct tm tm;

	if (t < DOS_EPOCH_MIN)
		t = DOS_EPOCH_MIN;
	if (t > DOS_EPOCH_MAX)
		t = DOS_EPOCH_MAX;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	*ret_date = (uint16_t)((tm.tm_year + 1900 - 1980) << 9 |
			       (tm.tm_mon + 1) << 5 | tm.tm_mday);
	*ret_time = (uint16_t)(tm.tm_hour << 11 | tm.tm_min << 5 | tm.tm_sec / 2);
}

/*
 * Fills the boot sector (A.2) for geometry g.  hidden_sectors is where the
 * volume starts on its disk, label the 11-byte label ("NO NAME    " when
 * there is none).
 */
void fat_fill_boot(struct fat_boot_sector *bs, const struct fat_geom *g,
		   uint32_t hidden_sectors, uint32_t volume_id,
		   const uint8_t label[11])
{
	/* int 18h (boot failed, try the next device), then spin. */
	static const uint8_t boot_code[] = { 0xCD, 0x18, 0xEB, 0xFE };

	memset(bs, 0, sizeof(*bs));
	memcpy(bs->jmp_boot, "\xEB\x58\x90", 3);
	memcpy(bs->oem_name, "MSWIN4.1", 8);
	bs->byts_per_sec = htole16(FAT_SECTOR_SIZE);
	bs->sec_per_clus = (uint8_t)g->sec_per_clus;
	bs->rsvd_sec_cnt = htole16(FAT_RSVD_SECTORS);
	bs->num_fats = FAT_NUM_FATS;
	bs->media = FAT_MEDIA;
	bs->sec_per_trk = htole16(63);
	bs->num_heads = htole16(255);
	bs->hidd_sec = htole32(hidden_sectors);
	bs->tot_sec32 = htole32(g->total_sectors);
	bs->fat_sz32 = htole32(g->fat_sectors);
	bs->root_clus = htole32(FAT_ROOT_CLUSTER);
	bs->fs_info = htole16(FAT_FSINFO_SECTOR);
	bs->bk_boot_sec = htole16(FAT_BACKUP_BOOT_SECTOR);
	bs->drv_num = 0x80;
	bs->boot_sig = FAT_EXT_BOOT_SIG;
	bs->vol_id = htole32(volume_id);
	memcpy(bs->vol_lab, label, 11);
	memcpy(bs->fil_sys_type, "FAT32   ", 8);
	memcpy(bs->boot_code, boot_code, sizeof(boot_code));
	bs->signature = htole16(FAT_BOOT_SIGNATURE);
}

/* Fills the FSInfo sector (A.3) with the exact free count and hint. */
void fat_fill_fsinfo(struct fat_fsinfo *fsi, uint32_t free_count,
		     uint32_t next_free)
{
	memset(fsi, 0, sizeof(*fsi));
	fsi->lead_sig = htole32(FAT_FSINFO_LEAD_SIG);
	fsi->struc_sig = htole32(FAT_FSINFO_STRUC_SIG);
	fsi->free_count = htole32(free_count);
	fsi->nxt_free = htole32(next_free);
	fsi->trail_sig = htole32(FAT_FSINFO_TRAIL_SIG);
}
