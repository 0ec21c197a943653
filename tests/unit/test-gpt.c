// SPDX-License-Identifier: MIT
/*
 * test-gpt.c - the GPT disk builder (gpt/gpt.h) against independent
 * expectations: header and array CRCs of the same disk made by sgdisk
 * 1.0.9, the protective MBR byte for byte from fat32-gpt.md B.2, the GUID
 * byte-order table of B.6, the XXH3-128 test vector of the empty input,
 * and alignment arithmetic done by hand (B.1, B.7).
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>
#include <zlib.h>

#include "gpt/gpt.h"
#include "gpt/gpt_fs.h"

/* Parses a text GUID into on-disk order, independently of gpt/guid.c. */
static struct gpt_guid guid_from_text(const char *s)
{
	/* On-disk byte i comes from text byte order[i] (B.6). */
	static const int order[16] = { 3, 2, 1, 0, 5, 4, 7, 6,
				       8, 9, 10, 11, 12, 13, 14, 15 };
	uint8_t text[16];
	struct gpt_guid g;
	unsigned v;
	size_t n = 0;

	for (const char *p = s; *p && n < 16; ) {
		if (*p == '-') {
			p++;
			continue;
		}
		assert_int_equal(sscanf(p, "%2x", &v), 1);
		text[n++] = (uint8_t)v;
		p += 2;
	}
	assert_int_equal(n, 16);
	for (int i = 0; i < 16; i++)
		g.b[i] = text[order[i]];
	return g;
}

static void read_lba(const struct region_map *disk, uint64_t lba, void *buf,
		     size_t nlbas)
{
	assert_int_equal(region_map_pread(disk, buf, nlbas * 512, lba * 512), 0);
}

/* --- the sgdisk golden disk --------------------------------------------- */

/*
 * Made with sgdisk 1.0.9 on a file of 10184 LBAs:
 *   sgdisk -o -U 01234567-89ab-4def-8123-456789abcdef \
 *     -n 1:2048:8191 -t 1:EF00 -u 1:a1b2c3d4-e5f6-4789-9abc-def012345678 \
 *     -c 1:"EFI System Partition" \
 *     -n 2:8192:10145 -t 2:4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 \
 *     -u 2:0f1e2d3c-4b5a-4968-b786-a5b4c3d2e1f0 -c 2:"root-é€😀" \
 *     -A 2:set:60 g.img
 * and the CRC fields read back with python3 (zlib.crc32 agreed).
 */
#define GOLDEN_LBAS		10184
#define GOLDEN_PRIMARY_CRC	0x8c6fc0beu
#define GOLDEN_BACKUP_CRC	0x00da3556u
#define GOLDEN_ARRAY_CRC	0xc282663fu

struct golden {
	struct region_map p1, p2, disk;
	struct gpt_partition parts[2];
	struct gpt_guid disk_guid;
	uint64_t first_lba[2];
};

static const char p1_data[] = "ESP first bytes";
static const char p2_data[] = "EROFS tail, not a whole LBA";

/* 3 MiB and 1,000,000 bytes: 6144 and 1954 (1953.125 rounded up) LBAs. */
static void golden_build(struct golden *g)
{
	region_map_init(&g->p1);
	region_map_init(&g->p2);
	region_map_init(&g->disk);
	assert_int_equal(region_add_mem(&g->p1, p1_data, sizeof(p1_data)), 0);
	assert_int_equal(region_add_zero(&g->p1, 3 * 1048576 - sizeof(p1_data)), 0);
	assert_int_equal(region_add_zero(&g->p2, 1000000 - sizeof(p2_data)), 0);
	assert_int_equal(region_add_mem(&g->p2, p2_data, sizeof(p2_data)), 0);

	g->parts[0] = (struct gpt_partition){
		.map = &g->p1, .type = gpt_type_esp,
		.guid = guid_from_text("a1b2c3d4-e5f6-4789-9abc-def012345678"),
		.name = "EFI System Partition",
	};
	g->parts[1] = (struct gpt_partition){
		.map = &g->p2, .type = gpt_type_root_x86_64,
		.guid = guid_from_text("0f1e2d3c-4b5a-4968-b786-a5b4c3d2e1f0"),
		.attrs = GPT_ATTR_READ_ONLY,
		.name = "root-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",	/* root-é€😀 */
	};
	g->disk_guid = guid_from_text("01234567-89ab-4def-8123-456789abcdef");
	assert_int_equal(gpt_build(g->parts, 2, &g->disk_guid, &g->disk,
				   g->first_lba), 0);
}

static void golden_free(struct golden *g)
{
	region_map_free(&g->disk);
	region_map_free(&g->p1);
	region_map_free(&g->p2);
}

static void test_golden_sgdisk(void **state)
{
	struct golden g;
	uint8_t hdr[512], arr[16384], barr[16384];
	const uint64_t n = GOLDEN_LBAS;

	golden_build(&g);
	assert_int_equal(g.disk.size, n * 512);
	assert_int_equal(g.first_lba[0], 2048);
	assert_int_equal(g.first_lba[1], 8192);

	read_lba(&g.disk, 1, hdr, 1);
	assert_memory_equal(hdr, "EFI PART\x00\x00\x01\x00\x5c\x00\x00\x00", 16);
	assert_int_equal(get_le32(hdr + 0x10), GOLDEN_PRIMARY_CRC);
	assert_int_equal(get_le32(hdr + 0x58), GOLDEN_ARRAY_CRC);
	assert_int_equal(get_le64(hdr + 0x18), 1);
	assert_int_equal(get_le64(hdr + 0x20), n - 1);
	assert_int_equal(get_le64(hdr + 0x28), 34);
	assert_int_equal(get_le64(hdr + 0x30), n - 34);
	assert_int_equal(get_le64(hdr + 0x48), 2);
	for (size_t i = 92; i < 512; i++)
		assert_int_equal(hdr[i], 0);

	read_lba(&g.disk, n - 1, hdr, 1);
	assert_int_equal(get_le32(hdr + 0x10), GOLDEN_BACKUP_CRC);
	assert_int_equal(get_le32(hdr + 0x58), GOLDEN_ARRAY_CRC);
	assert_int_equal(get_le64(hdr + 0x18), n - 1);
	assert_int_equal(get_le64(hdr + 0x20), 1);
	assert_int_equal(get_le64(hdr + 0x48), n - 33);

	read_lba(&g.disk, 2, arr, 32);
	read_lba(&g.disk, n - 33, barr, 32);
	assert_memory_equal(arr, barr, sizeof(arr));
	assert_int_equal(crc32(0L, arr, sizeof(arr)), GOLDEN_ARRAY_CRC);
	golden_free(&g);
}

/* Partition contents at their LBAs, zeros around them, gaps as holes. */
static void test_contents_and_holes(void **state)
{
	struct golden g;
	uint8_t *buf;
	ssize_t idx;

	golden_build(&g);
	buf = malloc(g.disk.size);
	assert_non_null(buf);
	assert_int_equal(region_map_pread(&g.disk, buf, g.disk.size, 0), 0);
	assert_memory_equal(buf + 2048 * 512, p1_data, sizeof(p1_data));
	assert_memory_equal(buf + 8192 * 512 + 1000000 - sizeof(p2_data),
			    p2_data, sizeof(p2_data));
	/* After p2's last byte: zeros up to the backup array. */
	for (uint64_t o = 8192 * 512 + 1000000; o < (GOLDEN_LBAS - 33) * 512; o++)
		assert_int_equal(buf[o], 0);
	free(buf);

	/* The gaps are ZERO regions, which the server reports as holes. */
	const uint64_t gaps[] = { 34 * 512, 2047 * 512, 8191 * 512 + 100,
				  8192 * 512 + 1000000, (GOLDEN_LBAS - 34) * 512 };
	for (size_t i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
		idx = region_find(&g.disk, gaps[i]);
		assert_true(idx >= 0);
		assert_int_equal(g.disk.regions[idx].type, REGION_ZERO);
	}
	idx = region_find(&g.disk, (GOLDEN_LBAS - 1) * 512);
	assert_int_equal(g.disk.regions[idx].type, REGION_MEM);
	golden_free(&g);
}

/* --- protective MBR (B.2) ----------------------------------------------- */

static void check_pmbr(const struct region_map *disk, uint32_t size_lba)
{
	uint8_t mbr[512], want[512] = { 0 };
	static const uint8_t rec[12] = {
		0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff, 0x01, 0, 0, 0,
	};

	memcpy(want + 0x1be, rec, sizeof(rec));
	want[0x1ca] = (uint8_t)size_lba;
	want[0x1cb] = (uint8_t)(size_lba >> 8);
	want[0x1cc] = (uint8_t)(size_lba >> 16);
	want[0x1cd] = (uint8_t)(size_lba >> 24);
	want[0x1fe] = 0x55;
	want[0x1ff] = 0xaa;
	read_lba(disk, 0, mbr, 1);
	assert_memory_equal(mbr, want, sizeof(want));
}

static void test_pmbr(void **state)
{
	struct golden g;

	golden_build(&g);
	check_pmbr(&g.disk, GOLDEN_LBAS - 1);
	golden_free(&g);
}

/* A 3 TiB partition: the MBR record saturates, the LBAs pass 2^32. */
static void test_big_disk(void **state)
{
	struct region_map part, disk;
	struct gpt_partition p = {
		.map = &part, .type = gpt_type_root_aarch64,
		.guid = guid_from_text("5fa94f1c-91b1-4a8c-9e3b-2d1c0f9e8a7b"),
	};
	struct gpt_guid dg = guid_from_text("8a6b2c1d-3e4f-4a5b-8c6d-7e8f9a0b1c2d");
	uint64_t first, n = 2048 + (3ULL << 31) + 40;	/* +33 rounded to 8 */
	uint8_t hdr[512];

	region_map_init(&part);
	region_map_init(&disk);
	assert_int_equal(region_add_zero(&part, 3ULL << 40), 0);
	assert_int_equal(gpt_build(&p, 1, &dg, &disk, &first), 0);
	assert_int_equal(disk.size, n * 512);
	check_pmbr(&disk, 0xffffffffu);
	read_lba(&disk, n - 1, hdr, 1);
	assert_memory_equal(hdr, "EFI PART", 8);
	assert_int_equal(get_le64(hdr + 0x18), n - 1);
	region_map_free(&disk);
	region_map_free(&part);
}

/* --- alignment (B.1, B.7) ----------------------------------------------- */

static void test_alignment(void **state)
{
	/* Sizes 1, 1 MiB, 1 MiB + 1 and 512 bytes: 1, 2048, 2049, 1 LBAs. */
	static const uint64_t sizes[4] = { 1, 1048576, 1048577, 512 };
	static const uint64_t want_first[4] = { 2048, 4096, 6144, 10240 };
	static const uint64_t want_last[4] = { 2048, 6143, 8192, 10240 };
	const uint64_t n = 10280;	/* 10241 + 33 = 10274, up to a multiple of 8 */
	struct region_map maps[4], disk;
	struct gpt_partition parts[4];
	struct gpt_guid dg;
	uint64_t first[4];
	uint8_t hdr[512], arr[16384];
	char name[8];

	gpt_guid_derive("align", 5, "disk", &dg);
	region_map_init(&disk);
	for (int i = 0; i < 4; i++) {
		region_map_init(&maps[i]);
		assert_int_equal(region_add_zero(&maps[i], sizes[i]), 0);
		snprintf(name, sizeof(name), "p%d", i);
		parts[i] = (struct gpt_partition){
			.map = &maps[i], .type = gpt_type_esp, .name = "x",
		};
		gpt_guid_derive("align", 5, name, &parts[i].guid);
	}
	assert_int_equal(gpt_build(parts, 4, &dg, &disk, first), 0);
	assert_int_equal(disk.size, n * 512);
	assert_int_equal(disk.size % 4096, 0);

	read_lba(&disk, 2, arr, 32);
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = arr + i * 128;

		assert_int_equal(first[i], want_first[i]);
		assert_int_equal(first[i] % 2048, 0);
		assert_int_equal(get_le64(e + 0x20), want_first[i]);
		assert_int_equal(get_le64(e + 0x28), want_last[i]);
		assert_memory_equal(e + 0x38, "x\0\0\0", 4);
	}
	for (size_t i = 4 * 128; i < sizeof(arr); i++)	/* unused entries */
		assert_int_equal(arr[i], 0);

	read_lba(&disk, 1, hdr, 1);
	assert_int_equal(get_le64(hdr + 0x20), n - 1);
	assert_int_equal(get_le64(hdr + 0x30), n - 34);
	assert_int_equal(get_le32(hdr + 0x58), crc32(0L, arr, sizeof(arr)));
	/* Header CRC: recomputed over 92 bytes with the field zeroed (B.5). */
	uint32_t stored = get_le32(hdr + 0x10);
	memset(hdr + 0x10, 0, 4);
	assert_int_equal(crc32(0L, hdr, 92), stored);
	read_lba(&disk, n - 1, hdr, 1);
	assert_int_equal(get_le64(hdr + 0x18), n - 1);
	assert_int_equal(get_le64(hdr + 0x48), n - 33);

	region_map_free(&disk);
	for (int i = 0; i < 4; i++)
		region_map_free(&maps[i]);
}

/* 2048 + 7 + 33 = 2088 is already a multiple of 8: no padding at all. */
static void test_no_padding(void **state)
{
	struct region_map part, disk;
	struct gpt_partition p = { .map = &part, .type = gpt_type_esp };
	struct gpt_guid dg;
	uint8_t hdr[512];

	gpt_guid_derive(NULL, 0, "disk", &dg);
	gpt_guid_derive(NULL, 0, "esp", &p.guid);
	region_map_init(&part);
	region_map_init(&disk);
	assert_int_equal(region_add_zero(&part, 7 * 512), 0);
	assert_int_equal(gpt_build(&p, 1, &dg, &disk, NULL), 0);
	assert_int_equal(disk.size, 2088 * 512);
	read_lba(&disk, 2087, hdr, 1);
	assert_int_equal(get_le64(hdr + 0x18), 2087);
	assert_int_equal(get_le64(hdr + 0x30), 2054);	/* = last partition LBA */
	region_map_free(&disk);
	region_map_free(&part);
}

/* --- GUIDs (B.6, B.8) --------------------------------------------------- */

static void test_guid_sheet(void **state)
{
	/* The B.6 table: text form and bytes on disk. */
	static const struct {
		const char *text;
		uint8_t disk[16];
		const struct gpt_guid *constant;
	} rows[] = {
		{ "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
		  { 0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11,
		    0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B }, &gpt_type_esp },
		{ "0fc63daf-8483-4772-8e79-3d69d8477de4",
		  { 0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47,
		    0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4 }, NULL },
		{ "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
		  { 0xE3, 0xBC, 0x68, 0x4F, 0xCD, 0xE8, 0xB1, 0x4D,
		    0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7, 0x09 }, &gpt_type_root_x86_64 },
		{ "b921b045-1df0-41c3-af44-4c6f280d3fae",
		  { 0x45, 0xB0, 0x21, 0xB9, 0xF0, 0x1D, 0xC3, 0x41,
		    0xAF, 0x44, 0x4C, 0x6F, 0x28, 0x0D, 0x3F, 0xAE }, &gpt_type_root_aarch64 },
	};
	char out[37];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct gpt_guid g;

		memcpy(g.b, rows[i].disk, 16);
		gpt_guid_format(&g, out);
		assert_string_equal(out, rows[i].text);
		if (rows[i].constant)
			assert_memory_equal(rows[i].constant->b, rows[i].disk, 16);
	}
}

static void test_guid_derive(void **state)
{
	struct gpt_guid a, b;
	char text[37], want[37];
	uint8_t buf[64];
	XXH128_canonical_t c;

	/* XXH3-128 of no bytes is 99aa06d3014798d8 6001c324468d497f (xxHash's
	 * test vector); version nibble 9 -> 4, variant byte 60 -> a0. */
	gpt_guid_derive(NULL, 0, "", &a);
	gpt_guid_format(&a, text);
	assert_string_equal(text, "99aa06d3-0147-48d8-a001-c324468d497f");

	/* seed || purpose, hashed in one call here, streamed in gpt/guid.c. */
	gpt_guid_derive("tree-digest", 11, "root", &a);
	memcpy(buf, "tree-digestroot", 15);
	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, 15));
	c.digest[6] = (c.digest[6] & 0x0f) | 0x40;
	c.digest[8] = (c.digest[8] & 0x3f) | 0x80;
	snprintf(want, sizeof(want),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 c.digest[0], c.digest[1], c.digest[2], c.digest[3], c.digest[4],
		 c.digest[5], c.digest[6], c.digest[7], c.digest[8], c.digest[9],
		 c.digest[10], c.digest[11], c.digest[12], c.digest[13],
		 c.digest[14], c.digest[15]);
	gpt_guid_format(&a, text);
	assert_string_equal(text, want);
	/* The text parses back to the same on-disk bytes. */
	b = guid_from_text(text);
	assert_memory_equal(a.b, b.b, 16);
	/* Version 4 in text position 14, variant 8..b in position 19. */
	assert_int_equal(text[14], '4');
	assert_non_null(strchr("89ab", text[19]));

	/* Deterministic; purpose and seed both matter. */
	gpt_guid_derive("tree-digest", 11, "root", &b);
	assert_memory_equal(a.b, b.b, 16);
	gpt_guid_derive("tree-digest", 11, "esp", &b);
	assert_memory_not_equal(a.b, b.b, 16);
	gpt_guid_derive("tree-digesT", 11, "root", &b);
	assert_memory_not_equal(a.b, b.b, 16);
}

/* --- bad input ---------------------------------------------------------- */

static int build_one(const char *name, const struct gpt_guid *type)
{
	struct region_map part, disk;
	struct gpt_partition p = { .map = &part, .type = *type, .name = name };
	struct gpt_guid dg;
	int r;

	gpt_guid_derive("n", 1, "disk", &dg);
	gpt_guid_derive("n", 1, "part", &p.guid);
	region_map_init(&part);
	region_map_init(&disk);
	assert_int_equal(region_add_zero(&part, 4096), 0);
	r = gpt_build(&p, 1, &dg, &disk, NULL);
	region_map_free(&disk);
	region_map_free(&part);
	return r;
}

static void test_names(void **state)
{
	char name[80];

	memset(name, 'a', 36);
	name[36] = '\0';
	assert_int_equal(build_one(name, &gpt_type_esp), 0);
	name[36] = 'a';
	name[37] = '\0';
	assert_int_equal(build_one(name, &gpt_type_esp), -EINVAL);
	/* 18 characters outside the BMP are 36 code units; 19 are 38. */
	name[0] = '\0';
	for (int i = 0; i < 18; i++)
		strcat(name, "\xf0\x9f\x98\x80");
	assert_int_equal(build_one(name, &gpt_type_esp), 0);
	strcat(name, "\xf0\x9f\x98\x80");
	assert_int_equal(build_one(name, &gpt_type_esp), -EINVAL);
	assert_int_equal(build_one("bad \xff utf-8", &gpt_type_esp), -EINVAL);
	assert_int_equal(build_one("cut \xc3", &gpt_type_esp), -EINVAL);
	assert_int_equal(build_one("", &gpt_type_esp), 0);
	assert_int_equal(build_one(NULL, &gpt_type_esp), 0);
}

static void test_bad_input(void **state)
{
	static const struct gpt_guid zero;
	struct region_map part, empty, disk;
	struct gpt_partition parts[129];
	struct gpt_guid dg;

	assert_int_equal(build_one("z", &zero), -EINVAL);	/* zero type */

	gpt_guid_derive("b", 1, "disk", &dg);
	region_map_init(&part);
	region_map_init(&empty);
	region_map_init(&disk);
	assert_int_equal(region_add_zero(&part, 512), 0);
	for (int i = 0; i < 129; i++) {
		char purpose[8];
		snprintf(purpose, sizeof(purpose), "%d", i);
		parts[i] = (struct gpt_partition){ .map = &part, .type = gpt_type_esp };
		gpt_guid_derive("b", 1, purpose, &parts[i].guid);
	}
	assert_int_equal(gpt_build(parts, 0, &dg, &disk, NULL), -EINVAL);
	assert_int_equal(gpt_build(parts, 129, &dg, &disk, NULL), -EINVAL);
	assert_int_equal(gpt_build(parts, 1, &zero, &disk, NULL), -EINVAL);
	assert_int_equal(gpt_build(parts, 1, NULL, &disk, NULL), -EINVAL);
	assert_int_equal(disk.size, 0);

	/* 128 partitions is the most; the same map may back several. */
	assert_int_equal(gpt_build(parts, 128, &dg, &disk, NULL), 0);
	region_map_free(&disk);
	region_map_init(&disk);

	parts[1].guid = parts[0].guid;				/* duplicate */
	assert_int_equal(gpt_build(parts, 2, &dg, &disk, NULL), -EINVAL);
	region_map_free(&disk);
	region_map_init(&disk);
	gpt_guid_derive("b", 1, "1", &parts[1].guid);
	parts[1].map = &empty;					/* no bytes */
	assert_int_equal(gpt_build(parts, 2, &dg, &disk, NULL), -EINVAL);
	parts[1].map = NULL;
	assert_int_equal(gpt_build(parts, 2, &dg, &disk, NULL), -EINVAL);

	region_map_free(&disk);
	region_map_free(&empty);
	region_map_free(&part);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_sgdisk),
		cmocka_unit_test(test_contents_and_holes),
		cmocka_unit_test(test_pmbr),
		cmocka_unit_test(test_big_disk),
		cmocka_unit_test(test_alignment),
		cmocka_unit_test(test_no_padding),
		cmocka_unit_test(test_guid_sheet),
		cmocka_unit_test(test_guid_derive),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
