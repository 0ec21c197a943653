/* SPDX-License-Identifier: MIT */
/*
 * check-gpt.c - checks a GPT disk (a region map) the way Linux
 * (block/partitions/efi.c), EDK2 and sgdisk -v look at it, with the
 * rules of shared/docs/fat32-gpt.md Part B, against the partitions it was
 * built from:
 *
 *   B.2   protective MBR: one 0xEE record, not active, from LBA 1, size
 *         min(N - 1, 2^32 - 1), signature
 *   B.3   both headers: signature, revision, size, CRC32, my/alternate
 *         LBAs, usable range, disk GUID, entry array place, count, size
 *         and CRC32; backup header at the very last LBA
 *   B.4   entries: the given types, GUIDs, attributes, UTF-16LE names;
 *         first <= last, inside the usable range, no overlaps, unused
 *         entries all zero; both arrays identical
 *   B.7   partitions start on 1 MiB boundaries
 *   and every partition holds its map's bytes (sampled), zeros after them
 *   up to its last LBA, and the gaps between partitions read as zeros.
 * CRC32 (B.5) is computed here, not with zlib.
 */
#include <stdlib.h>
#include <string.h>

#include "gpt/gpt.h"
#include "server/byteorder.h"
#include "tests/fuzz/fuzz.h"

#define LBA 512u

/* CRC-32 (reflected 0xEDB88320, init and final XOR 0xFFFFFFFF): B.5. */
static uint32_t crc32_ieee(const uint8_t *p, size_t len)
{
	static uint32_t table[256];
	uint32_t crc = 0xFFFFFFFFu;

	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
			table[i] = c;
		}
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc ^ 0xFFFFFFFFu;
}

static void check_header(const uint8_t *h, uint64_t my, uint64_t alt, uint64_t entries,
			 uint64_t n, const struct gpt_guid *disk_guid, uint32_t *ret_crc)
{
	const char *which = my == 1 ? "primary" : "backup";
	uint8_t tmp[92];

	FZ_CHECK(!memcmp(h, "EFI PART", 8), "%s header signature", which);
	FZ_CHECK(get_le32(h + 8) == 0x00010000 && get_le32(h + 12) == 92,
		 "%s header revision or size", which);
	memcpy(tmp, h, 92);
	memset(tmp + 16, 0, 4);
	FZ_CHECK(crc32_ieee(tmp, 92) == get_le32(h + 16), "%s header CRC32", which);
	FZ_CHECK(get_le32(h + 20) == 0, "%s header reserved", which);
	FZ_CHECK(get_le64(h + 24) == my && get_le64(h + 32) == alt,
		 "%s header: my LBA %llu, alternate %llu (expected %llu, %llu)", which,
		 (unsigned long long)get_le64(h + 24), (unsigned long long)get_le64(h + 32),
		 (unsigned long long)my, (unsigned long long)alt);
	FZ_CHECK(get_le64(h + 40) == 34 && get_le64(h + 48) == n - 34,
		 "%s header usable LBAs %llu..%llu", which, (unsigned long long)get_le64(h + 40),
		 (unsigned long long)get_le64(h + 48));
	FZ_CHECK(!memcmp(h + 56, disk_guid->b, 16), "%s header disk GUID", which);
	FZ_CHECK(get_le64(h + 72) == entries, "%s entry array at LBA %llu, expected %llu",
		 which, (unsigned long long)get_le64(h + 72), (unsigned long long)entries);
	FZ_CHECK(get_le32(h + 80) == 128 && get_le32(h + 84) == 128,
		 "%s header: %u entries of %u bytes", which, get_le32(h + 80), get_le32(h + 84));
	for (int i = 92; i < (int)LBA; i++)
		FZ_CHECK(h[i] == 0, "%s header byte %d not zero", which, i);
	*ret_crc = get_le32(h + 88);
}

static int range_cmp(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;
	return x[0] < y[0] ? -1 : x[0] > y[0];
}

void check_gpt(const struct region_map *disk, const struct gpt_partition *parts,
	       size_t nparts, const struct gpt_guid *disk_guid, struct fz *sample)
{
	uint8_t mbr[LBA], h1[LBA], h2[LBA];
	uint8_t *a1 = malloc(32 * LBA), *a2 = malloc(32 * LBA);
	FZ_CHECK(a1 && a2, "out of memory");

	FZ_CHECK(disk->size % LBA == 0 && disk->size / LBA >= 68, "disk of %llu bytes",
		 (unsigned long long)disk->size);
	uint64_t n = disk->size / LBA;

	/* B.2 */
	map_read(disk, 0, mbr, LBA);
	for (int i = 0; i < 446; i++)
		FZ_CHECK(mbr[i] == 0, "MBR byte %d not zero", i);
	const uint8_t *r = mbr + 446;
	FZ_CHECK(r[0] == 0x00, "protective MBR record active (EDK2 refuses it)");
	FZ_CHECK(r[4] == 0xEE && get_le32(r + 8) == 1, "protective record type 0x%02x from %u",
		 r[4], get_le32(r + 8));
	FZ_CHECK(get_le32(r + 12) == (n - 1 > 0xFFFFFFFF ? 0xFFFFFFFF : (uint32_t)(n - 1)),
		 "protective record of %u LBAs, disk has %llu", get_le32(r + 12),
		 (unsigned long long)n);
	for (int i = 462; i < 510; i++)
		FZ_CHECK(mbr[i] == 0, "MBR records 2-4 not empty (hybrid MBR)");
	FZ_CHECK(mbr[510] == 0x55 && mbr[511] == 0xAA, "MBR signature");

	/* B.3 */
	uint32_t crc1, crc2;
	map_read(disk, LBA, h1, LBA);
	map_read(disk, (n - 1) * LBA, h2, LBA);
	check_header(h1, 1, n - 1, 2, n, disk_guid, &crc1);
	check_header(h2, n - 1, 1, n - 33, n, disk_guid, &crc2);
	map_read(disk, 2 * LBA, a1, 32 * LBA);
	map_read(disk, (n - 33) * LBA, a2, 32 * LBA);
	FZ_CHECK(!memcmp(a1, a2, 32 * LBA), "primary and backup entry arrays differ");
	FZ_CHECK(crc1 == crc2 && crc1 == crc32_ieee(a1, 32 * LBA), "entry array CRC32");

	/* B.4, B.7 */
	uint64_t (*rg)[2] = malloc((nparts + 1) * sizeof(*rg));
	FZ_CHECK(rg, "out of memory");
	for (size_t i = 0; i < 128; i++) {
		const uint8_t *e = a1 + i * 128;
		if (i >= nparts) {
			for (int k = 0; k < 128; k++)
				FZ_CHECK(e[k] == 0, "unused entry %zu not zero", i);
			continue;
		}
		const struct gpt_partition *p = &parts[i];
		FZ_CHECK(!memcmp(e, p->type.b, 16) && !memcmp(e + 16, p->guid.b, 16),
			 "entry %zu: type or GUID", i);
		FZ_CHECK(get_le64(e + 48) == p->attrs, "entry %zu: attributes", i);
		uint16_t u[40] = { 0 };
		fz_utf16(p->name, u, 36);	/* the harness checked it */
		for (int k = 0; k < 36; k++)
			FZ_CHECK(get_le16(e + 56 + 2 * k) == u[k], "entry %zu: name unit %d", i, k);
		uint64_t first = get_le64(e + 32), last = get_le64(e + 40);
		FZ_CHECK(first % 2048 == 0 && first >= 34 && first <= last && last <= n - 34,
			 "entry %zu: LBAs %llu..%llu (usable 34..%llu)", i,
			 (unsigned long long)first, (unsigned long long)last,
			 (unsigned long long)(n - 34));
		uint64_t size = p->map->size;
		FZ_CHECK(last - first + 1 == (size + LBA - 1) / LBA,
			 "entry %zu: %llu LBAs for %llu bytes", i,
			 (unsigned long long)(last - first + 1), (unsigned long long)size);
		rg[i][0] = first;
		rg[i][1] = last;

		/* The partition holds its map's bytes, zeros to its last LBA. */
		uint64_t offs[5] = { 0, size - 1, size / 2, size & ~(uint64_t)4095,
				     fz_u64(sample) % size };
		for (int k = 0; k < 5; k++) {
			uint8_t got[64], want[64];
			uint64_t off = offs[k];
			size_t len = size - off < sizeof(got) ? (size_t)(size - off) : sizeof(got);
			map_read(disk, first * LBA + off, got, len);
			map_read(p->map, off, want, len);
			FZ_CHECK(!memcmp(got, want, len), "partition %zu: bytes at %llu differ", i,
				 (unsigned long long)off);
		}
		FZ_CHECK(map_is_zero(disk, first * LBA + size,
			 (last + 1) * LBA - first * LBA - size),
			 "partition %zu: bytes after its map not zero", i);
	}
	qsort(rg, nparts, sizeof(*rg), range_cmp);
	uint64_t free_from = 34;
	for (size_t i = 0; i < nparts; i++) {
		FZ_CHECK(rg[i][0] >= free_from, "partitions overlap at LBA %llu",
			 (unsigned long long)rg[i][0]);
		FZ_CHECK(map_is_zero(disk, free_from * LBA, (rg[i][0] - free_from) * LBA),
			 "gap before LBA %llu not zero", (unsigned long long)rg[i][0]);
		free_from = rg[i][1] + 1;
	}
	FZ_CHECK(map_is_zero(disk, free_from * LBA, (n - 33 - free_from) * LBA),
		 "gap before the backup array not zero");
	free(rg);
	free(a1);
	free(a2);
}
