/* SPDX-License-Identifier: MIT */
/*
 * test-fat.c - the FAT32 builder against the fact sheet
 * (shared/docs/fat32-gpt.md Part A) and real tools: LFN checksums and slot
 * bytes as mtools writes them (A.12), DOS date/time encoding (A.8), the
 * 8.3 rule and numeric tails (A.11), long-name checks, the cluster-count
 * rule and geometry (A.6, A.7), and whole volumes read back through the
 * region map: BPB, backup, FSInfo free count, FAT chains, directory
 * entries, file bytes, determinism and the errors fat_build() returns.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/byteorder.h"

#include "fat/internal.h"

static void test_lfn_checksum(void **state)
{
	/* A.12 example; the second value is what mtools 4.0 wrote for
	 * initramfs.img on a mkfs.fat volume. */
	assert_int_equal(fat_lfn_checksum((const uint8_t *)"LOADER~1CON"), 0xB6);
	assert_int_equal(fat_lfn_checksum((const uint8_t *)"INITRA~1IMG"), 0xB8);
}

static void test_lfn_slots(void **state)
{
	/* The slot mtools writes for "loader.conf" (11 units: one slot,
	 * a 0x0000 terminator, then 0xFFFF). */
	static const uint8_t mtools[32] = {
		0x41, 0x6c, 0x00, 0x6f, 0x00, 0x61, 0x00, 0x64, 0x00, 0x65, 0x00,
		0x0f, 0x00, 0xb6, 0x72, 0x00, 0x2e, 0x00, 0x63, 0x00, 0x6f, 0x00,
		0x6e, 0x00, 0x66, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
	};
	static const uint16_t name[] = { 'l', 'o', 'a', 'd', 'e', 'r', '.',
					 'c', 'o', 'n', 'f' };
	uint8_t buf[3 * 32];

	assert_int_equal(fat_lfn_nslots(11), 1);
	fat_lfn_fill(buf, name, 11, 0xB6);
	assert_memory_equal(buf, mtools, 32);

	/* 13 units fill one slot exactly: no terminator, no padding. */
	uint16_t u[27];
	for (int i = 0; i < 27; i++)
		u[i] = (uint16_t)('A' + i % 26);
	assert_int_equal(fat_lfn_nslots(13), 1);
	fat_lfn_fill(buf, u, 13, 0x11);
	assert_int_equal(buf[0], 0x41);
	assert_int_equal(get_le16(buf + 0x1c), 'L');
	assert_int_equal(get_le16(buf + 0x1e), 'M');

	/* 27 units: three slots, highest ordinal first with 0x40. */
	assert_int_equal(fat_lfn_nslots(27), 3);
	fat_lfn_fill(buf, u, 27, 0x22);
	assert_int_equal(buf[0], 0x43);
	assert_int_equal(buf[32], 0x02);
	assert_int_equal(buf[64], 0x01);
	for (int s = 0; s < 3; s++) {
		assert_int_equal(buf[32 * s + 0x0b], 0x0f);
		assert_int_equal(buf[32 * s + 0x0c], 0);
		assert_int_equal(buf[32 * s + 0x0d], 0x22);
		assert_int_equal(get_le16(buf + 32 * s + 0x1a), 0);
	}
	/* Slot 3 holds unit 27 ('A'), then 0x0000, then 0xFFFF. */
	assert_int_equal(get_le16(buf + 1), 'A');
	assert_int_equal(get_le16(buf + 3), 0x0000);
	assert_int_equal(get_le16(buf + 5), 0xFFFF);
	assert_int_equal(get_le16(buf + 0x1e), 0xFFFF);
	/* Slot 1 (last on disk) starts the name. */
	assert_int_equal(get_le16(buf + 64 + 1), 'A');
	assert_int_equal(get_le16(buf + 64 + 0x0e), 'F');
}

static void test_dos_time(void **state)
{
	uint16_t d, t;

	/* A.8: 2024-05-17 13:45:30 UTC (date -u -d ... +%s) */
	fat_dos_time(1715953530, &d, &t);
	assert_int_equal(d, 0x58B1);
	assert_int_equal(t, 0x6DAF);
	/* Before 1980: clamped to 1980-01-01 00:00:00 (date 0x0021). */
	fat_dos_time(0, &d, &t);
	assert_int_equal(d, 0x0021);
	assert_int_equal(t, 0);
	fat_dos_time(-5000000000ll, &d, &t);
	assert_int_equal(d, 0x0021);
	/* After 2107: 2107-12-31 23:59:58 = (127<<9|12<<5|31, 23<<11|59<<5|29). */
	fat_dos_time(INT64_MAX, &d, &t);
	assert_int_equal(d, 0xFF9F);
	assert_int_equal(t, 0xBF7D);
	/* Odd seconds round down: 1980-01-01 00:00:03 -> 1 (2-second units). */
	fat_dos_time(315532803, &d, &t);
	assert_int_equal(t, 1);
}

static void check_fits(const char *name, const char *sn, uint8_t nt)
{
	uint8_t got[11], got_nt = 0xff;

	if (!sn) {
		assert_false(fat_fits_83(name, got, &got_nt));
		return;
	}
	assert_true(fat_fits_83(name, got, &got_nt));
	assert_memory_equal(got, sn, 11);
	assert_int_equal(got_nt, nt);
}

static void test_fits_83(void **state)
{
	check_fits("vmlinuz", "VMLINUZ    ", FAT_NT_LOWER_BASE);
	check_fits("grub.cfg", "GRUB    CFG", FAT_NT_LOWER_BASE | FAT_NT_LOWER_EXT);
	check_fits("EFI", "EFI        ", 0);
	check_fits("BOOTX64.EFI", "BOOTX64 EFI", 0);
	check_fits("entries", "ENTRIES    ", FAT_NT_LOWER_BASE);
	check_fits("README.md", "README  MD ", FAT_NT_LOWER_EXT);
	check_fits("A~1.B", "A~1     B  ", 0);
	check_fits("12345678.123", "12345678123", 0);
	check_fits("Linux", NULL, 0);		/* mixed case */
	check_fits("loader.conf", NULL, 0);	/* extension too long */
	check_fits("initramfs", NULL, 0);	/* base too long */
	check_fits("a.b.c", NULL, 0);
	check_fits(".hidden", NULL, 0);
	check_fits("my file", NULL, 0);
	check_fits("a+b", NULL, 0);		/* '+' is not a short-name char */
	check_fits("\xc3\x9c.txt", NULL, 0);	/* non-ASCII */
}

static void check_names(const char *const *in, const char *const *want,
			const bool *lfn, size_t n)
{
	struct fat_name names[16];

	memset(names, 0, sizeof(names));
	for (size_t i = 0; i < n; i++)
		names[i].name = in[i];
	assert_int_equal(fat_assign_short_names(names, n), 0);
	for (size_t i = 0; i < n; i++) {
		if (memcmp(names[i].short_name, want[i], 11))
			fail_msg("'%s': got '%.11s', want '%s'", in[i],
				 names[i].short_name, want[i]);
		assert_int_equal(names[i].lfn, lfn[i]);
	}
}

static void test_short_names(void **state)
{
	/* A.11's examples. */
	static const char *const in1[] = { "loader.conf", "initramfs.img",
					   "entries", "Linux", "vmlinuz" };
	static const char *const want1[] = { "LOADER~1CON", "INITRA~1IMG",
					     "ENTRIES    ", "LINUX      ",
					     "VMLINUZ    " };
	static const bool lfn1[] = { true, true, false, true, false };
	check_names(in1, want1, lfn1, 5);

	/* Lossy conversions: spaces and extra dots dropped, leading dots
	 * dropped, '+' and non-ASCII (one '_' per character) replaced. */
	static const char *const in2[] = { "my file.txt", "a.b.c.d", ".hidden",
					   "a+b", "\xc3\x9cn\xc3\xafode.txt",
					   ".tar.gz" };
	static const char *const want2[] = { "MYFILE~1TXT", "ABC~1   D  ",
					     "HIDDEN~1   ", "A_B~1      ",
					     "_N_ODE~1TXT", "TAR~1   GZ " };
	static const bool lfn2[] = { true, true, true, true, true, true };
	check_names(in2, want2, lfn2, 6);

	/* Tails count up; from ~10 on the base loses one more character.
	 * An exact 8.3 name is taken first, so a generated one skips it. */
	static const char *const in3[] = {
		"verylongname1.txt", "verylongname2.txt", "VERYLO~2.TXT",
		"verylongname3.txt", "verylongname4.txt", "verylongname5.txt",
		"verylongname6.txt", "verylongname7.txt", "verylongname8.txt",
		"verylongname9.txt", "verylongname10.txt", "verylongname11.txt",
	};
	static const char *const want3[] = {
		"VERYLO~1TXT", "VERYLO~3TXT", "VERYLO~2TXT", "VERYLO~4TXT",
		"VERYLO~5TXT", "VERYLO~6TXT", "VERYLO~7TXT", "VERYLO~8TXT",
		"VERYLO~9TXT", "VERYL~10TXT", "VERYL~11TXT", "VERYL~12TXT",
	};
	static const bool lfn3[] = { true, true, false, true, true, true,
				     true, true, true, true, true, true };
	check_names(in3, want3, lfn3, 12);

	/* A truncated extension needs a tail even with a short base. */
	static const char *const in4[] = { "a.html", "A.HTM" };
	static const char *const want4[] = { "A~1     HTM", "A       HTM" };
	static const bool lfn4[] = { true, false };
	check_names(in4, want4, lfn4, 2);
}

static void test_long_name(void **state)
{
	iconv_t cd = iconv_open("UTF-16LE", "UTF-8");
	uint16_t *u = NULL;
	size_t len = 0;
	char buf[600];

	assert_true(cd != (iconv_t)-1);
	static const char *const bad[] = {
		"", ".", "..", "a/b", "a\\b", "a:b", "a*b", "a?b", "a\"b", "a<b",
		"a>b", "a|b", "a\x01", "a\x7f", "abc.", "abc ", "\xff", "\xc3",
		"\xed\xa0\x80",		/* UTF-8-encoded surrogate */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (fat_long_name(cd, bad[i], &u, &len) != -EINVAL)
			fail_msg("name %zu accepted", i);

	/* "Ünïcode" in UTF-16: U+00DC n U+00EF c o d e. */
	assert_int_equal(fat_long_name(cd, "\xc3\x9cn\xc3\xaf" "code", &u, &len), 0);
	static const uint16_t want[] = { 0xDC, 'n', 0xEF, 'c', 'o', 'd', 'e' };
	assert_int_equal(len, 7);
	assert_memory_equal(u, want, sizeof(want));
	free(u);
	/* Outside the BMP: a surrogate pair (U+1F600 = D83D DE00). */
	assert_int_equal(fat_long_name(cd, "\xf0\x9f\x98\x80", &u, &len), 0);
	assert_int_equal(len, 2);
	assert_int_equal(u[0], 0xD83D);
	assert_int_equal(u[1], 0xDE00);
	free(u);

	memset(buf, 'a', 255);
	buf[255] = '\0';
	assert_int_equal(fat_long_name(cd, buf, &u, &len), 0);
	assert_int_equal(len, 255);
	free(u);
	buf[255] = 'a';
	buf[256] = '\0';
	assert_int_equal(fat_long_name(cd, buf, &u, &len), -ENAMETOOLONG);
	/* Units count, not bytes: 255 x U+00E9 (510 bytes) fit, 256 don't. */
	for (int i = 0; i < 256; i++)
		memcpy(buf + 2 * i, "\xc3\xa9", 2);
	buf[510] = '\0';
	assert_int_equal(fat_long_name(cd, buf, &u, &len), 0);
	assert_int_equal(len, 255);
	assert_int_equal(u[254], 0xE9);
	free(u);
	buf[510] = '\xc3';
	buf[512] = '\0';
	assert_int_equal(fat_long_name(cd, buf, &u, &len), -ENAMETOOLONG);
	iconv_close(cd);
}

static void test_case_dups(void **state)
{
	static const uint16_t a[] = { 'a', '.', 't' }, b[] = { 'A', '.', 'T' };
	static const uint16_t c[] = { 0xE9 }, d[] = { 0xC9 }, e[] = { 'a' };
	const uint16_t *u[] = { a, e, b };
	size_t l[] = { 3, 1, 3 };

	assert_int_equal(fat_check_case_dups(u, l, 2), 0);
	assert_int_equal(fat_check_case_dups(u, l, 3), -EEXIST);
	const uint16_t *v[] = { c, d };
	size_t m[] = { 1, 1 };
	assert_int_equal(fat_check_case_dups(v, m, 2), -EEXIST);
}

static void test_geometry(void **state)
{
	struct fat_geom g;
	uint64_t need[FAT_NCLUSTER_SIZES] = { 3, 3, 3, 3, 3 };

	/* A tiny tree, worked by hand: N0 = 65541, FAT = ceil(65543*4/512)
	 * = 513 -> 520 (4 KiB), 32 + 1040 + 65541 = 66613 sectors -> 33 MiB
	 * = 67584; N = 67584 - 1072 = 66512, which needs 520 FAT sectors. */
	assert_int_equal(fat_geometry(need, 0, &g), 0);
	assert_int_equal(g.cluster_bytes, 512);
	assert_int_equal(g.sec_per_clus, 1);
	assert_int_equal(g.total_sectors, 67584);
	assert_int_equal(g.fat_sectors, 520);
	assert_int_equal(g.data_sector, 1072);
	assert_int_equal(g.nclusters, 66512);

	/* A 60 MB kernel + initramfs: still 512-byte clusters (<= 260 MiB). */
	need[0] = 60000000 / 512 + 10;
	need[1] = 60000000 / 4096 + 10;
	assert_int_equal(fat_geometry(need, 0, &g), 0);
	assert_int_equal(g.cluster_bytes, 512);
	assert_true(g.nclusters >= need[0]);

	/* 1 GiB: 4 KiB clusters (<= 8 GiB); every rule of A.5-A.7 holds. */
	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
		need[i] = (1ull << 30) / fat_cluster_sizes[i] + 100;
	assert_int_equal(fat_geometry(need, 0, &g), 0);
	assert_int_equal(g.cluster_bytes, 4096);
	assert_true(g.nclusters >= need[1]);
	assert_true(g.nclusters >= FAT32_MIN_CLUSTERS);
	assert_true((uint64_t)g.fat_sectors * 128 >= g.nclusters + 2ull);
	assert_int_equal(g.total_sectors % 2048, 0);
	assert_int_equal(g.data_sector, 32 + 2 * g.fat_sectors);
	assert_true(g.total_sectors - g.data_sector - g.nclusters * 8ull < 8);

	/* min_bytes: a 1 GiB volume for a tiny tree, 4 KiB clusters. */
	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
		need[i] = 3;
	assert_int_equal(fat_geometry(need, 1ull << 30, &g), 0);
	assert_int_equal(g.total_sectors, 2097152);
	assert_int_equal(g.cluster_bytes, 4096);

	/* More than FAT32 can address. */
	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
		need[i] = 1ull << 40;
	assert_int_equal(fat_geometry(need, 0, &g), -EFBIG);
	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
		need[i] = 3;
	assert_int_equal(fat_geometry(need, 3ull << 40, &g), -EFBIG);
}

/* --- whole volumes ------------------------------------------------------ */

static uint8_t *read_map(const struct region_map *m, uint64_t off, size_t len)
{
	uint8_t *b = malloc(len);
	assert_non_null(b);
	assert_int_equal(region_map_pread(m, b, len, off), 0);
	return b;
}

static const char data1[] = "hello, FAT\n";
static uint8_t data2[1300];		/* three 512-byte clusters */

/*
 * /
 *   EFI/BOOT/BOOTX64.EFI  (data1)
 *   loader.conf           (data2)
 *   empty                 (0 bytes)
 */
static struct fat_node boot_files[] = {
	{ .name = "BOOTX64.EFI", .size = sizeof(data1) - 1, .mem = data1,
	  .mtime = 1715953530 },
};
static struct fat_node efi_dirs[] = {
	{ .name = "BOOT", .is_dir = true, .children = boot_files,
	  .nchildren = 1, .mtime = 1715953530 },
};
static struct fat_node root_children[] = {
	{ .name = "loader.conf", .size = sizeof(data2), .mem = data2,
	  .mtime = 1715953530 },
	{ .name = "EFI", .is_dir = true, .children = efi_dirs, .nchildren = 1,
	  .mtime = 1715953530 },
	{ .name = "empty", .mtime = 1715953530 },
};
static struct fat_node root = {
	.name = "", .is_dir = true, .children = root_children, .nchildren = 3,
	.mtime = 1715953530,
};

static void test_build_volume(void **state)
{
	struct fat_opts o = { .label = "esp", .volume_id = 0xC0FFEE11 };
	struct region_map m;

	for (size_t i = 0; i < sizeof(data2); i++)
		data2[i] = (uint8_t)(i * 7);
	region_map_init(&m);
	assert_int_equal(fat_build(&root, &o, &m), 0);
	assert_int_equal(m.size, 67584ull * 512);	/* test_geometry's volume */

	uint8_t *rsvd = read_map(&m, 0, 32 * 512);
	const uint8_t *bs = rsvd;
	assert_memory_equal(bs, "\xEB\x58\x90", 3);
	assert_int_equal(get_le16(bs + 0x0b), 512);
	assert_int_equal(bs[0x0d], 1);
	assert_int_equal(get_le16(bs + 0x0e), 32);
	assert_int_equal(bs[0x10], 2);
	assert_int_equal(get_le16(bs + 0x11), 0);
	assert_int_equal(get_le16(bs + 0x13), 0);
	assert_int_equal(bs[0x15], 0xF8);
	assert_int_equal(get_le16(bs + 0x16), 0);
	assert_int_equal(get_le32(bs + 0x1c), 0);
	assert_int_equal(get_le32(bs + 0x20), 67584);
	assert_int_equal(get_le32(bs + 0x24), 520);
	assert_int_equal(get_le16(bs + 0x28), 0);
	assert_int_equal(get_le16(bs + 0x2a), 0);
	assert_int_equal(get_le32(bs + 0x2c), 2);
	assert_int_equal(get_le16(bs + 0x30), 1);
	assert_int_equal(get_le16(bs + 0x32), 6);
	assert_int_equal(bs[0x41], 0);
	assert_int_equal(bs[0x42], 0x29);
	assert_int_equal(get_le32(bs + 0x43), 0xC0FFEE11);
	assert_memory_equal(bs + 0x47, "ESP        ", 11);
	assert_memory_equal(bs + 0x52, "FAT32   ", 8);
	assert_int_equal(bs[0x1fe], 0x55);
	assert_int_equal(bs[0x1ff], 0xAA);
	/* Backups at 6 and 7, zeros elsewhere. */
	assert_memory_equal(rsvd + 6 * 512, rsvd, 1024);
	for (size_t i = 2 * 512; i < 6 * 512; i++)
		assert_int_equal(rsvd[i], 0);

	/* Used clusters: directories breadth-first (root 2, EFI 3, BOOT 4),
	 * then files in the same order: loader.conf 5-7 (1300 bytes),
	 * BOOTX64.EFI 8; 66512 - 7 free, the first at 9. */
	const uint8_t *fsi = rsvd + 512;
	assert_int_equal(get_le32(fsi), 0x41615252);
	assert_int_equal(get_le32(fsi + 0x1e4), 0x61417272);
	assert_int_equal(get_le32(fsi + 0x1e8), 66512 - 7);
	assert_int_equal(get_le32(fsi + 0x1ec), 9);
	assert_int_equal(get_le32(fsi + 0x1fc), 0xAA550000);
	free(rsvd);

	uint8_t *fat1 = read_map(&m, 32 * 512, 520 * 512);
	uint8_t *fat2 = read_map(&m, (32 + 520) * 512, 520 * 512);
	assert_memory_equal(fat1, fat2, 520 * 512);
	static const uint32_t slots[] = { 0x0FFFFFF8, 0x0FFFFFFF, 0x0FFFFFFF,
		0x0FFFFFFF, 0x0FFFFFFF, 6, 7, 0x0FFFFFFF, 0x0FFFFFFF, 0 };
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++)
		assert_int_equal(get_le32(fat1 + 4 * i), slots[i]);
	for (size_t i = 10 * 4; i < 520 * 512; i++)
		assert_int_equal(fat1[i], 0);
	free(fat1);
	free(fat2);
	/* Slots of free clusters are holes, in both copies. */
	for (int i = 0; i < 2; i++) {
		ssize_t ri = region_find(&m, (32 + 520 * i) * 512 + 1024);
		assert_true(ri >= 0);
		assert_int_equal(m.regions[ri].type, REGION_ZERO);
	}

	/* Root: label entry, then EFI, empty, loader.conf (LFN slot +
	 * LOADER~1.CON): bytewise order puts 'E' before 'e' before 'l'. */
	const uint64_t data = 1072 * 512;
	uint8_t *dir = read_map(&m, data, 512);
	assert_memory_equal(dir, "ESP        ", 11);
	assert_int_equal(dir[11], 0x08);
	assert_memory_equal(dir + 32, "EFI        ", 11);
	assert_int_equal(dir[32 + 11], 0x10);
	assert_int_equal(get_le16(dir + 32 + 0x1a), 3);
	assert_int_equal(get_le16(dir + 32 + 0x18), 0x58B1);	/* write date */
	assert_int_equal(get_le16(dir + 32 + 0x16), 0x6DAF);	/* write time */
	assert_memory_equal(dir + 64, "EMPTY      ", 11);
	assert_int_equal(dir[64 + 0x0c], 0x08);		/* lower-case base */
	assert_int_equal(get_le16(dir + 64 + 0x1a), 0);		/* no cluster */
	assert_int_equal(get_le32(dir + 64 + 0x1c), 0);
	assert_int_equal(dir[96], 0x41);			/* LFN slot */
	assert_int_equal(dir[96 + 0x0b], 0x0f);
	assert_int_equal(dir[96 + 0x0d], 0xB6);
	assert_memory_equal(dir + 128, "LOADER~1CON", 11);
	assert_int_equal(dir[128 + 11], 0x20);
	assert_int_equal(get_le16(dir + 128 + 0x1a), 5);
	assert_int_equal(get_le32(dir + 128 + 0x1c), 1300);
	assert_int_equal(dir[160], 0);				/* end */
	free(dir);

	/* EFI: "." = 3, ".." = 0 (parent is the root), BOOT = 4. */
	dir = read_map(&m, data + 512, 512);
	assert_memory_equal(dir, ".          ", 11);
	assert_int_equal(get_le16(dir + 0x1a), 3);
	assert_memory_equal(dir + 32, "..         ", 11);
	assert_int_equal(get_le16(dir + 32 + 0x1a), 0);
	assert_memory_equal(dir + 64, "BOOT       ", 11);
	assert_int_equal(get_le16(dir + 64 + 0x1a), 4);
	free(dir);
	/* BOOT: ".." = 3. */
	dir = read_map(&m, data + 2 * 512, 512);
	assert_int_equal(get_le16(dir + 32 + 0x1a), 3);
	assert_memory_equal(dir + 64, "BOOTX64 EFI", 11);
	assert_int_equal(get_le16(dir + 64 + 0x1a), 8);
	free(dir);

	/* File bytes, zero to the end of the last cluster. */
	uint8_t *f = read_map(&m, data + 3 * 512, 3 * 512);
	assert_memory_equal(f, data2, sizeof(data2));
	assert_int_equal(f[3 * 512 - 1], 0);
	free(f);
	f = read_map(&m, data + 6 * 512, 512);
	assert_memory_equal(f, data1, sizeof(data1) - 1);
	assert_int_equal(f[sizeof(data1) - 1], 0);
	free(f);

	/* The free clusters are holes: the last region is a zero region. */
	assert_int_equal(m.regions[m.nregions - 1].type, REGION_ZERO);
	assert_true(m.regions[m.nregions - 1].len >= 66000ull * 512);

	/* Deterministic: a second build gives the same metadata bytes. */
	struct region_map m2;
	region_map_init(&m2);
	assert_int_equal(fat_build(&root, &o, &m2), 0);
	assert_int_equal(m2.size, m.size);
	uint8_t *a = read_map(&m, 0, data + 8 * 512);
	uint8_t *b = read_map(&m2, 0, data + 8 * 512);
	assert_memory_equal(a, b, data + 8 * 512);
	free(a);
	free(b);
	region_map_free(&m2);
	region_map_free(&m);
}

static void test_build_no_label(void **state)
{
	struct fat_opts o = { .volume_id = 1 };
	struct region_map m;

	region_map_init(&m);
	/* Starts after one sector: hidden sectors = 1. */
	assert_int_equal(region_add_zero(&m, 512), 0);
	assert_int_equal(fat_build(&root, &o, &m), 0);
	uint8_t *bs = read_map(&m, 512, 512);
	assert_memory_equal(bs + 0x47, "NO NAME    ", 11);
	assert_int_equal(get_le32(bs + 0x1c), 1);
	free(bs);
	uint8_t *dir = read_map(&m, 512 + 1072 * 512, 32);
	assert_memory_equal(dir, "EFI        ", 11);	/* no label entry */
	free(dir);
	region_map_free(&m);

	/* Not sector aligned. */
	region_map_init(&m);
	assert_int_equal(region_add_zero(&m, 100), 0);
	assert_int_equal(fat_build(&root, &o, &m), -EINVAL);
	region_map_free(&m);
}

static void test_label(void **state)
{
	uint8_t l[11];

	assert_int_equal(fat_check_label(NULL, l), 0);
	assert_memory_equal(l, "NO NAME    ", 11);
	assert_int_equal(fat_check_label("", l), 0);
	assert_int_equal(fat_check_label("No Name", l), 0);
	assert_int_equal(fat_check_label("efi-sys 1", l), 1);
	assert_memory_equal(l, "EFI-SYS 1  ", 11);
	assert_int_equal(fat_check_label("ABCDEFGHIJK", l), 1);
	assert_int_equal(fat_check_label("ABCDEFGHIJKL", l), -EINVAL);
	assert_int_equal(fat_check_label(" LEAD", l), -EINVAL);
	assert_int_equal(fat_check_label("A.B", l), -EINVAL);
	assert_int_equal(fat_check_label("A*B", l), -EINVAL);
	assert_int_equal(fat_check_label("A\tB", l), -EINVAL);
	assert_int_equal(fat_check_label("\xc3\x9c", l), -EINVAL);
}

static int build_children(struct fat_node *kids, size_t n, const char *label)
{
	struct fat_node r = { .name = "", .is_dir = true, .children = kids,
			      .nchildren = n };
	struct fat_opts o = { .label = label };
	struct region_map m;

	region_map_init(&m);
	int ret = fat_build(&r, &o, &m);
	region_map_free(&m);
	return ret;
}

static int dummy_open(const struct region_source *src, unsigned int flags)
{
	(void)src;
	(void)flags;
	return -EIO;
}

static void test_build_errors(void **state)
{
	static struct region_source big = { .open = dummy_open, .name = "big",
					    .size = 1ull << 32 };
	struct fat_node k[2];

	memset(k, 0, sizeof(k));
	k[0].name = "ok.txt";
	assert_int_equal(build_children(k, 1, NULL), 0);
	assert_int_equal(build_children(k, 1, "bad/label"), -EINVAL);
	assert_int_equal(build_children(k, 1, "twelve chars"), -EINVAL);

	k[1].name = "OK.TXT";
	assert_int_equal(build_children(k, 2, NULL), -EEXIST);
	k[1].name = "a:b";
	assert_int_equal(build_children(k, 2, NULL), -EINVAL);
	k[1].name = NULL;
	assert_int_equal(build_children(k, 2, NULL), -EINVAL);

	char longname[300];
	memset(longname, 'x', 256);
	longname[256] = '\0';
	k[1].name = longname;
	assert_int_equal(build_children(k, 2, NULL), -ENAMETOOLONG);

	/* 4 GiB: too big; 4 GiB - 1: fine (only the layout, not read). */
	k[1].name = "big";
	k[1].src = &big;
	k[1].size = 1ull << 32;
	assert_int_equal(build_children(k, 2, NULL), -EFBIG);
	k[1].size = (1ull << 32) - 1;
	assert_int_equal(build_children(k, 2, NULL), 0);
	/* A source shorter than the file. */
	big.size = 100;
	assert_int_equal(build_children(k, 2, NULL), -EINVAL);
	/* Memory file without memory. */
	k[1].src = NULL;
	k[1].size = 10;
	assert_int_equal(build_children(k, 2, NULL), -EINVAL);

	/* Root must be a directory; the same errors one level down. */
	struct fat_node file = { .name = "" };
	struct fat_opts o = { 0 };
	struct region_map m;
	region_map_init(&m);
	assert_int_equal(fat_build(&file, &o, &m), -EINVAL);
	region_map_free(&m);
	k[1].size = 0;
	k[1].name = "Ok.Txt";
	struct fat_node sub = { .name = "sub", .is_dir = true, .children = k,
				.nchildren = 2 };
	assert_int_equal(build_children(&sub, 1, NULL), -EEXIST);
}

/* --- more volumes, read back through the BPB ---------------------------- */

/* A built volume and where its parts lie, from its own BPB (A.1, A.2). */
struct vol {
	struct region_map m;
	uint32_t fat_sectors, sec_per_clus, data_sector, nclusters;
};

static void vol_build(struct vol *v, const struct fat_node *r, const char *label)
{
	struct fat_opts o = { .label = label, .volume_id = 7 };

	region_map_init(&v->m);
	assert_int_equal(fat_build(r, &o, &v->m), 0);
	uint8_t *bs = read_map(&v->m, 0, 512);
	v->sec_per_clus = bs[0x0d];
	v->fat_sectors = get_le32(bs + 0x24);
	v->data_sector = 32 + 2 * v->fat_sectors;
	v->nclusters = (get_le32(bs + 0x20) - v->data_sector) / v->sec_per_clus;
	assert_int_equal(get_le32(bs + 0x2c), FAT_ROOT_CLUSTER);
	free(bs);
}

/* FAT slot c, checked to be the same in both copies (A.5). */
static uint32_t vol_fat(const struct vol *v, uint32_t c)
{
	uint8_t a[4], b[4];

	assert_int_equal(region_map_pread(&v->m, a, 4, 32 * 512 + 4ull * c), 0);
	assert_int_equal(region_map_pread(&v->m, b, 4,
					  (32ull + v->fat_sectors) * 512 + 4ull * c), 0);
	assert_memory_equal(a, b, 4);
	return get_le32(a);
}

/* A copy of cluster c (free() it). */
static uint8_t *vol_cluster(const struct vol *v, uint32_t c)
{
	uint64_t cb = (uint64_t)v->sec_per_clus * 512;
	return read_map(&v->m, (v->data_sector + (uint64_t)(c - 2) * v->sec_per_clus) * 512, cb);
}

/* Clusters in the chain from c, asserting it is contiguous (A.5). */
static uint32_t vol_chain_len(const struct vol *v, uint32_t c)
{
	uint32_t n = 1;

	for (;;) {
		uint32_t next = vol_fat(v, c) & 0x0FFFFFFF;
		if (next >= 0x0FFFFFF8)
			return n;
		if (next != c + 1)
			fail_msg("FAT[%u] = %#x, want %u or EOC", c, next, c + 1);
		c = next;
		n++;
	}
}

static uint32_t dirent_cluster(const uint8_t *de)
{
	return (uint32_t)get_le16(de + 0x14) << 16 | get_le16(de + 0x1a);
}

static uint8_t bigdata[255 * 512];

/*
 * The FAT buffer covers slots 0, 1 (reserved) and one slot per used
 * cluster 2 .. used + 1 (A.5: slots 0 .. N+1).  Used-cluster counts
 * around a FAT-sector boundary (128 slots of 4 bytes per 512-byte
 * sector): 126, 127, 128, 129, 255, 256 (root + one file of used - 1 x
 * 512 bytes, 512-byte clusters): the file's chain is whole and its last
 * cluster holds EOC (0x0FFFFFF8 and up), the next slot is free, and
 * FSInfo's free count and next free cluster (A.3) agree.
 */
static void test_build_fat_sector_boundary(void **state)
{
	static const uint32_t used[] = { 126, 127, 128, 129, 255, 256 };

	for (size_t i = 0; i < sizeof(bigdata); i++)
		bigdata[i] = (uint8_t)(i * 13 + 1);
	for (size_t t = 0; t < sizeof(used) / sizeof(used[0]); t++) {
		uint32_t k = used[t] - 1;		/* file clusters */
		struct fat_node f = { .name = "DATA.BIN", .size = k * 512ull,
				      .mem = bigdata, .mtime = 1715953530 };
		struct fat_node r = { .name = "", .is_dir = true, .children = &f,
				      .nchildren = 1, .mtime = 1715953530 };
		struct vol v;

		vol_build(&v, &r, NULL);
		assert_int_equal(v.sec_per_clus, 1);
		assert_int_equal(vol_fat(&v, 0), FAT_ENTRY0);
		assert_int_equal(vol_fat(&v, 1), FAT_ENTRY1);
		assert_true((vol_fat(&v, 2) & 0x0FFFFFFF) >= 0x0FFFFFF8);	/* root */
		uint8_t *rd = vol_cluster(&v, 2);
		assert_memory_equal(rd, "DATA    BIN", 11);
		assert_int_equal(dirent_cluster(rd), 3);
		free(rd);
		assert_int_equal(vol_chain_len(&v, 3), k);
		uint32_t last = 2 + used[t] - 1;
		if ((vol_fat(&v, last) & 0x0FFFFFFF) < 0x0FFFFFF8)
			fail_msg("used %u: FAT[%u] = %#x, not EOC", used[t], last,
				 vol_fat(&v, last));
		assert_int_equal(vol_fat(&v, last + 1), FAT_ENTRY_FREE);
		uint8_t *c = vol_cluster(&v, last);
		assert_memory_equal(c, bigdata + (k - 1) * 512, 512);
		free(c);
		uint8_t *fsi = read_map(&v.m, 512, 512);
		assert_int_equal(get_le32(fsi + 0x1e8), v.nclusters - used[t]);
		assert_int_equal(get_le32(fsi + 0x1ec), last + 1);
		free(fsi);
		region_map_free(&v.m);
	}
}

/* One geometry's invariants (A.5-A.7); fails with the inputs. */
static void check_geom(const uint64_t need[FAT_NCLUSTER_SIZES], uint64_t min_bytes)
{
	struct fat_geom g;

	if (fat_geometry(need, min_bytes, &g) != 0)
		fail_msg("need %llu, min %llu: no geometry",
			 (unsigned long long)need[0], (unsigned long long)min_bytes);
	unsigned i = 0;
	while (fat_cluster_sizes[i] != g.cluster_bytes)
		i++;
	/* A.5: FATSz32 covers slots 0 .. N+1, i.e. N + 2 slots of 4 bytes. */
	if ((uint64_t)g.fat_sectors * (FAT_SECTOR_SIZE / 4) < g.nclusters + 2ull)
		fail_msg("need %llu, min %llu: %u FAT sectors for %u clusters + 2",
			 (unsigned long long)need[0], (unsigned long long)min_bytes,
			 g.fat_sectors, g.nclusters);
	if (g.nclusters < need[i] || g.nclusters < FAT32_MIN_CLUSTERS + FAT32_MIN_MARGIN)
		fail_msg("need %llu: %u clusters", (unsigned long long)need[i],
			 g.nclusters);
	if (g.data_sector != 32 + 2 * g.fat_sectors ||
	    (uint64_t)g.data_sector + (uint64_t)g.nclusters * g.sec_per_clus >
	    g.total_sectors || g.total_sectors % 2048 ||
	    (uint64_t)g.total_sectors * 512 < min_bytes)
		fail_msg("need %llu, min %llu: inconsistent layout",
			 (unsigned long long)need[0], (unsigned long long)min_bytes);
}

/*
 * Every data cluster and the two reserved entries have a FAT slot:
 * FATSz32 * 128 >= N + 2 (A.5, "FATSz32 = ceil((N + 2) * 4 / 512)").
 * Swept over cluster needs from the FAT32 minimum (A.6) to past 260 MiB
 * (where 4 KiB clusters take over, A.7), needs just below multiples of
 * 1024 (a 4 KiB-aligned FAT's capacity), and minimum sizes in MiB steps.
 */
static void test_geometry_fat_covers_clusters(void **state)
{
	uint64_t need[FAT_NCLUSTER_SIZES];

	for (uint64_t n = 65541; n <= 600000; n++) {
		for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
			need[i] = (n * 512 + fat_cluster_sizes[i] - 1) / fat_cluster_sizes[i];
		check_geom(need, 0);
	}
	for (uint64_t k = 64; k < 4096; k++)
		for (uint64_t d = 1; d <= 3; d++) {
			for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
				need[i] = k * 1024 - d;
			check_geom(need, 0);
		}
	for (unsigned i = 0; i < FAT_NCLUSTER_SIZES; i++)
		need[i] = 3;
	for (uint64_t mib = 1; mib <= 2048; mib++)
		check_geom(need, mib << 20);
	for (uint64_t mib = 2048; mib <= (40ull << 10); mib += 61)
		check_geom(need, mib << 20);
}

/*
 * Each child's short entry carries its own mtime (A.8: creation, last
 * access and last write date/time), not its directory's: two files with
 * different mtimes and a subdirectory with a third, in a root with a
 * fourth; inside the subdirectory a file with a fifth, "." with the
 * subdirectory's and ".." with the root's (A.9).
 */
static void test_build_child_mtimes(void **state)
{
	static const int64_t t_root = 1600000000, t_a = 1715953530,
		t_b = 1500000001, t_d = 1000000000, t_x = 1234567890;
	struct fat_node sub[] = {
		{ .name = "X.TXT", .mtime = t_x },
	};
	struct fat_node kids[] = {
		{ .name = "b.txt", .mtime = t_b },
		{ .name = "a.txt", .mtime = t_a },
		{ .name = "D", .is_dir = true, .children = sub, .nchildren = 1,
		  .mtime = t_d },
	};
	struct fat_node r = { .name = "", .is_dir = true, .children = kids,
			      .nchildren = 3, .mtime = t_root };
	/* Bytewise order: "D" < "a.txt" < "b.txt". */
	static const struct { uint32_t cluster; unsigned slot; const char *name;
			      int64_t t; } want[] = {
		{ 2, 0, "D          ", 1000000000 },
		{ 2, 1, "A       TXT", 1715953530 },
		{ 2, 2, "B       TXT", 1500000001 },
		{ 3, 0, ".          ", 1000000000 },
		{ 3, 1, "..         ", 1600000000 },
		{ 3, 2, "X       TXT", 1234567890 },
	};
	struct vol v;

	vol_build(&v, &r, NULL);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		uint8_t *c = vol_cluster(&v, want[i].cluster);
		const uint8_t *de = c + 32 * want[i].slot;
		uint16_t d, t;

		fat_dos_time(want[i].t, &d, &t);
		assert_memory_equal(de, want[i].name, 11);
		if (get_le16(de + 0x18) != d || get_le16(de + 0x16) != t)
			fail_msg("'%.11s': write %04x %04x, want %04x %04x", de,
				 get_le16(de + 0x18), get_le16(de + 0x16), d, t);
		assert_int_equal(get_le16(de + 0x10), d);	/* creation */
		assert_int_equal(get_le16(de + 0x0e), t);
		free(c);
	}
	region_map_free(&v.m);
}

/*
 * Every short entry's last access date (A.8, LstAccDate) is its mtime's
 * date, like the creation and write dates; 0 would be no valid date
 * (A.8: the smallest is 0x0021).  Label entry (A.10), ".", ".." (A.9),
 * a directory and a file.
 */
static void test_build_access_date(void **state)
{
	static const int64_t t1 = 1715953530, t2 = 1500000001, t3 = 1234567890;
	struct fat_node sub[] = {
		{ .name = "F.TXT", .mtime = t3 },
	};
	struct fat_node kids[] = {
		{ .name = "D", .is_dir = true, .children = sub, .nchildren = 1,
		  .mtime = t2 },
	};
	struct fat_node r = { .name = "", .is_dir = true, .children = kids,
			      .nchildren = 1, .mtime = t1 };
	struct vol v;
	uint16_t d1, d2, d3, t;

	fat_dos_time(t1, &d1, &t);
	fat_dos_time(t2, &d2, &t);
	fat_dos_time(t3, &d3, &t);
	vol_build(&v, &r, "ESP");
	uint8_t *rd = vol_cluster(&v, 2), *dir = vol_cluster(&v, 3);
	const struct { const uint8_t *de; uint16_t date; } want[] = {
		{ rd, d1 }, { rd + 32, d2 },		/* label, D */
		{ dir, d2 }, { dir + 32, d1 }, { dir + 64, d3 },	/* ., .., F.TXT */
	};
	assert_memory_equal(rd, "ESP        ", 11);
	assert_memory_equal(dir + 64, "F       TXT", 11);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const uint8_t *de = want[i].de;
		if (get_le16(de + 0x12) != want[i].date)
			fail_msg("'%.11s': access date %04x, want %04x", de,
				 get_le16(de + 0x12), want[i].date);
		assert_int_equal(get_le16(de + 0x12), get_le16(de + 0x18));
		assert_int_equal(get_le16(de + 0x12), get_le16(de + 0x10));
	}
	free(rd);
	free(dir);
	region_map_free(&v.m);
}

/*
 * The volume label entry is a root slot (A.10) and counts toward the
 * root's size: with 512-byte clusters (16 slots), label + 15 children
 * fill exactly one cluster and label + 16 children need two.  Every entry
 * reads back in order, the root's chain has that many clusters (A.5), and
 * the subdirectory after it (A.9: "." and "..") is intact.
 */
static void test_build_label_fills_root(void **state)
{
	static char names[16][8];
	struct fat_node sub_kids[] = { { .name = "IN.TXT" } };
	struct fat_node kids[16];

	for (unsigned nk = 15; nk <= 16; nk++) {
		/* nk - 1 empty files F00.., then directory SUB last. */
		memset(kids, 0, sizeof(kids));
		for (unsigned i = 0; i + 1 < nk; i++) {
			snprintf(names[i], sizeof(names[i]), "F%02u", i);
			kids[i].name = names[i];
		}
		kids[nk - 1] = (struct fat_node){ .name = "SUB", .is_dir = true,
						  .children = sub_kids, .nchildren = 1 };
		struct fat_node r = { .name = "", .is_dir = true, .children = kids,
				      .nchildren = nk };
		uint32_t root_clusters = nk == 15 ? 1 : 2, sub_cl = 2 + root_clusters;
		struct vol v;

		vol_build(&v, &r, "ESP");
		assert_int_equal(v.sec_per_clus, 1);
		if (vol_chain_len(&v, 2) != root_clusters)
			fail_msg("label + %u children: root of %u clusters, want %u",
				 nk, vol_chain_len(&v, 2), root_clusters);
		uint8_t *rd = read_map(&v.m, v.data_sector * 512ull,
					 root_clusters * 512);
		assert_memory_equal(rd, "ESP        ", 11);
		assert_int_equal(rd[11], FAT_ATTR_VOLUME_ID);
		for (unsigned i = 0; i + 1 < nk; i++) {
			char want[12];
			snprintf(want, sizeof(want), "F%02u        ", i);
			assert_memory_equal(rd + 32 * (1 + i), want, 11);
			assert_int_equal(rd[32 * (1 + i) + 11], FAT_ATTR_ARCHIVE);
		}
		const uint8_t *s = rd + 32 * nk;
		assert_memory_equal(s, "SUB        ", 11);
		assert_int_equal(s[11], FAT_ATTR_DIRECTORY);
		assert_int_equal(dirent_cluster(s), sub_cl);
		free(rd);

		uint8_t *sub = vol_cluster(&v, sub_cl);
		assert_memory_equal(sub, ".          ", 11);
		assert_int_equal(dirent_cluster(sub), sub_cl);
		assert_memory_equal(sub + 32, "..         ", 11);
		assert_int_equal(dirent_cluster(sub + 32), 0);
		assert_memory_equal(sub + 64, "IN      TXT", 11);
		assert_int_equal(sub[96], 0);
		free(sub);
		assert_true((vol_fat(&v, sub_cl) & 0x0FFFFFFF) >= 0x0FFFFFF8);
		assert_int_equal(vol_fat(&v, sub_cl + 1), FAT_ENTRY_FREE);
		region_map_free(&v.m);
	}
}

/*
 * An empty root without a label entry still owns cluster 2 (A.2: the
 * BPB's root cluster; A.8: the root is a cluster chain): FAT[2] is EOC,
 * the cluster reads as zeros (an empty directory, A.8), and FSInfo counts
 * it as used (A.3).  Same with a label entry.
 */
static void test_build_empty_root(void **state)
{
	struct fat_node r = { .name = "", .is_dir = true, .mtime = 1715953530 };

	for (int lab = 0; lab < 2; lab++) {
		struct vol v;

		vol_build(&v, &r, lab ? "ESP" : NULL);
		if ((vol_fat(&v, 2) & 0x0FFFFFFF) < 0x0FFFFFF8)
			fail_msg("label %d: FAT[2] = %#x, not EOC", lab, vol_fat(&v, 2));
		assert_int_equal(vol_fat(&v, 3), FAT_ENTRY_FREE);
		uint8_t *c = vol_cluster(&v, 2);
		if (lab)
			assert_memory_equal(c, "ESP        ", 11);
		for (size_t i = lab ? 32 : 0; i < 512; i++)
			assert_int_equal(c[i], 0);
		free(c);
		uint8_t *fsi = read_map(&v.m, 512, 512);
		assert_int_equal(get_le32(fsi + 0x1e8), v.nclusters - 1);
		assert_int_equal(get_le32(fsi + 0x1ec), 3);
		free(fsi);
		region_map_free(&v.m);
	}
}

/*
 * Case folding for duplicate names (A.11: lookups ignore case) maps
 * Latin-1 capitals U+00C0..U+00DE to U+00E0..U+00FE except U+00D7 (the
 * multiplication sign), whose +0x20 partner U+00F7 (division sign) is
 * another symbol: "a\u00d7b" and "a\u00f7b" are different names, also
 * in a whole volume.  Real case pairs such as "A\u00c0" and "a\u00e0"
 * stay duplicates (-EEXIST).
 */
static void test_case_dups_latin1(void **state)
{
	static const uint16_t times[] = { 'a', 0xD7, 'b' }, div[] = { 'a', 0xF7, 'b' };
	static const uint16_t up[] = { 'A', 0xC0 }, low[] = { 'a', 0xE0 };
	static const uint16_t thorn[] = { 0xDE }, thorn_l[] = { 0xFE };
	const uint16_t *u[] = { times, div };
	size_t l[] = { 3, 3 };

	assert_int_equal(fat_check_case_dups(u, l, 2), 0);
	const uint16_t *v[] = { up, low };
	size_t m[] = { 2, 2 };
	assert_int_equal(fat_check_case_dups(v, m, 2), -EEXIST);
	const uint16_t *w[] = { thorn, thorn_l };
	size_t n[] = { 1, 1 };
	assert_int_equal(fat_check_case_dups(w, n, 2), -EEXIST);
	const uint16_t *x[] = { times, up, div, low };
	size_t o[] = { 3, 2, 3, 2 };
	assert_int_equal(fat_check_case_dups(x, o, 4), -EEXIST);
	assert_int_equal(fat_check_case_dups(x, o, 3), 0);

	struct fat_node k[2];
	memset(k, 0, sizeof(k));
	k[0].name = "a\xc3\x97" "b";		/* U+00D7 */
	k[1].name = "a\xc3\xb7" "b";		/* U+00F7 */
	assert_int_equal(build_children(k, 2, NULL), 0);
	k[0].name = "A\xc3\x80";		/* U+00C0 */
	k[1].name = "a\xc3\xa0";		/* U+00E0 */
	assert_int_equal(build_children(k, 2, NULL), -EEXIST);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lfn_checksum),
		cmocka_unit_test(test_lfn_slots),
		cmocka_unit_test(test_dos_time),
		cmocka_unit_test(test_fits_83),
		cmocka_unit_test(test_short_names),
		cmocka_unit_test(test_long_name),
		cmocka_unit_test(test_case_dups),
		cmocka_unit_test(test_geometry),
		cmocka_unit_test(test_label),
		cmocka_unit_test(test_build_volume),
		cmocka_unit_test(test_build_no_label),
		cmocka_unit_test(test_build_errors),
		cmocka_unit_test(test_build_fat_sector_boundary),
		cmocka_unit_test(test_geometry_fat_covers_clusters),
		cmocka_unit_test(test_build_child_mtimes),
		cmocka_unit_test(test_build_access_date),
		cmocka_unit_test(test_build_label_fills_root),
		cmocka_unit_test(test_build_empty_root),
		cmocka_unit_test(test_case_dups_latin1),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
