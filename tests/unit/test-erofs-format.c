/* SPDX-License-Identifier: MIT */
/*
 * test-erofs-format.c - the EROFS builder's arithmetic against the fact
 * sheet (shared/docs/erofs-format.md): CRC32C test vector (§2.2), xattr
 * bloom filter bits (§7.5), rdev encoding (§5.4), dirent order and block
 * filling (§8), the inline-tail rule (§6.2), entry padding (§7.1), the
 * compact-vs-extended rule (§5.6), and erofs_check_entry()'s verdicts.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cmocka.h>

#include "erofs/internal.h"

static void test_crc32c(void **state)
{
	/* §2.2: magic + zeroed checksum field give 0x5045B54A. */
	static const uint8_t head[8] = { 0xE2, 0xE1, 0xF5, 0xE0, 0, 0, 0, 0 };
	assert_int_equal(erofs_crc32c(0xFFFFFFFFu, head, 8), 0x5045B54Au);
	/* Standard CRC-32C check value 0xE3069283, before the final XOR. */
	assert_int_equal(erofs_crc32c(0xFFFFFFFFu, "123456789", 9), ~0xE3069283u);
	/* Running the CRC in pieces gives the same value. */
	uint32_t c = erofs_crc32c(0xFFFFFFFFu, head, 3);
	assert_int_equal(erofs_crc32c(c, head + 3, 5), 0x5045B54Au);
}

static void test_xxh32_vectors(void **state)
{
	assert_int_equal(XXH32("", 0, 0), 0x02CC5D05u);
	assert_int_equal(XXH32("abc", 3, 0), 0x32D153FFu);
}

static void test_bloom_bits(void **state)
{
	/* §7.5 test vectors, by full name. */
	static const struct {
		const char *name;
		uint32_t bit;
	} v[] = {
		{ "security.selinux", 11 },
		{ "security.ima", 0 },
		{ "security.capability", 29 },
		{ "system.posix_acl_access", 30 },
		{ "system.posix_acl_default", 21 },
		{ "trusted.overlay.opaque", 20 },
		{ "user.overlay.opaque", 10 },
		{ "trusted.overlay.redirect", 17 },
		{ "trusted.overlay.metacopy", 31 },
		{ "trusted.overlay.upper", 5 },
		{ "trusted.overlay.nlink", 2 },
		{ "user.overlay.nlink", 4 },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const char *suffix;
		uint8_t index;
		assert_int_equal(erofs_xattr_name_index(v[i].name, &index, &suffix), 0);
		assert_int_equal(erofs_xattr_filter_bit(index, suffix, strlen(suffix)),
				 v[i].bit);
	}
}

static void test_name_index(void **state)
{
	const char *suffix;
	uint8_t index;

	assert_int_equal(erofs_xattr_name_index("user.foo", &index, &suffix), 0);
	assert_int_equal(index, 1);
	assert_string_equal(suffix, "foo");
	assert_int_equal(erofs_xattr_name_index("system.posix_acl_access", &index,
						&suffix), 0);
	assert_int_equal(index, 2);
	assert_string_equal(suffix, "");
	assert_int_equal(erofs_xattr_name_index("system.posix_acl_default", &index,
						&suffix), 0);
	assert_int_equal(index, 3);
	assert_int_equal(erofs_xattr_name_index("trusted.overlay.opaque", &index,
						&suffix), 0);
	assert_int_equal(index, 4);
	assert_string_equal(suffix, "overlay.opaque");
	assert_int_equal(erofs_xattr_name_index("security.selinux", &index, &suffix), 0);
	assert_int_equal(index, 6);
	assert_int_equal(erofs_xattr_name_index("system.nfs4_acl", &index, &suffix),
			 -EOPNOTSUPP);
	assert_int_equal(erofs_xattr_name_index("system.posix_acl_accessX", &index,
						&suffix), -EOPNOTSUPP);
	assert_int_equal(erofs_xattr_name_index("lustre.x", &index, &suffix),
			 -EOPNOTSUPP);
	assert_int_equal(erofs_xattr_name_index("user", &index, &suffix), -EOPNOTSUPP);
}

static void test_rdev(void **state)
{
	/* §5.4 examples, and a minor above 255 (stat showed 103:11170). */
	assert_int_equal(erofs_encode_rdev(8, 1), 0x801);
	assert_int_equal(erofs_encode_rdev(1, 3), 0x103);
	assert_int_equal(erofs_encode_rdev(259, 70000), 0x11110370u);
	assert_int_equal(erofs_encode_rdev(0, 0), 0);
}

static void test_xattr_entry_size(void **state)
{
	/* §7.1: align4(4 + name + value). */
	assert_int_equal(erofs_xattr_entry_size(0, 0), 4);
	assert_int_equal(erofs_xattr_entry_size(3, 3), 12);	/* user.foo=bar: 10 -> 12 */
	assert_int_equal(erofs_xattr_entry_size(7, 5), 16);
	assert_int_equal(erofs_xattr_entry_size(4, 4), 12);
	assert_int_equal(erofs_xattr_entry_size(255, 65535), (4 + 255 + 65535 + 3) & ~3);
}

static int name_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	return erofs_dirent_cmp((const uint8_t *)x, strlen(x), (const uint8_t *)y,
				strlen(y));
}

static void test_dirent_order(void **state)
{
	const char *names[] = { "a", "..", "\xff", "ab", ".", "-dash", "+plus", "A", "a-" };
	/* §8: unsigned bytewise, shorter prefix first, "." and ".." included. */
	const char *want[] = { "+plus", "-dash", ".", "..", "A", "a", "a-", "ab", "\xff" };

	qsort(names, 9, sizeof(names[0]), name_cmp);
	for (size_t i = 0; i < 9; i++)
		assert_string_equal(names[i], want[i]);
	assert_true(erofs_dirent_cmp((const uint8_t *)"a", 1, (const uint8_t *)"ab", 2) < 0);
	assert_true(erofs_dirent_cmp((const uint8_t *)"\x80", 1, (const uint8_t *)"z", 1) > 0);
	assert_int_equal(erofs_dirent_cmp((const uint8_t *)"ab", 2, (const uint8_t *)"ab", 2), 0);
}

static void test_dir_blocks(void **state)
{
	struct erofs_dentry d[3] = {
		{ .name = (const uint8_t *)".", .name_len = 1 },
		{ .name = (const uint8_t *)"..", .name_len = 2 },
	};
	/* §8: an empty directory is 12*2 + 1 + 2 = 27 bytes. */
	assert_int_equal(erofs_dir_size(d, 2, 4096), 27);

	/* 200 entries of 12 + 20 bytes: 128 fit a 4 KiB block (128*32 = 4096). */
	static struct erofs_dentry many[200];
	static const char name[] = "nnnnnnnnnnnnnnnnnnnn";
	for (size_t i = 0; i < 200; i++)
		many[i] = (struct erofs_dentry){ .name = (const uint8_t *)name,
						 .name_len = 20 };
	assert_int_equal(erofs_dir_block_fill(many, 200, 4096), 128);
	assert_int_equal(erofs_dir_size(many, 200, 4096), 4096 + 72 * 32);
	/* Exactly full: 128 entries take one whole block. */
	assert_int_equal(erofs_dir_size(many, 128, 4096), 4096);
	/* 512-byte blocks: 16 per block, 200 = 12 blocks + 8. */
	assert_int_equal(erofs_dir_block_fill(many, 200, 512), 16);
	assert_int_equal(erofs_dir_size(many, 200, 512), 12 * 512 + 8 * 32);
	/* The greedy fill stops at the first entry that does not fit. */
	many[15].name_len = 21;
	assert_int_equal(erofs_dir_block_fill(many, 200, 512), 15);
}

static void test_tail_rule(void **state)
{
	/* §6.2: (pos % bs) + inode + xattrs + tail <= bs. */
	assert_true(erofs_tail_fits(1152, 32, 0, 4096 - 1152 - 32, 4096));
	assert_false(erofs_tail_fits(1152, 32, 0, 4096 - 1152 - 31, 4096));
	assert_true(erofs_tail_fits(8192, 64, 16, 4096 - 80, 4096));
	assert_false(erofs_tail_fits(8192 + 32, 64, 16, 4096 - 80, 4096));
	assert_true(erofs_tail_fits(65536 + 100 * 32, 32, 0, 100, 65536));
	/* The checksum range (§2.2): rest of block 0, or bs bytes from 1024. */
	assert_int_equal(erofs_crc_end(4096), 4096);
	assert_int_equal(erofs_crc_end(65536), 65536);
	assert_int_equal(erofs_crc_end(1024), 2048);
	assert_int_equal(erofs_crc_end(512), 1536);
}

static void test_extended_rule(void **state)
{
	struct erofs_opts opts;
	struct walk_inode wi = { .mode = S_IFREG | 0644, .mtime_sec = 1000 };
	struct erofs_inode ei = { .nlink = 1 };
	struct erofs_ctx ctx = { .opts = &opts, .build_time = 1000 };

	erofs_opts_default(&opts);
	erofs_inode_init(&ei, &wi);
	assert_false(erofs_needs_extended(&ctx, &ei));
	wi.mtime_nsec = 1;		/* §5.6: nsec differs too */
	erofs_inode_init(&ei, &wi);
	assert_true(erofs_needs_extended(&ctx, &ei));
	wi.mtime_nsec = 0;
	wi.uid = 65535;
	erofs_inode_init(&ei, &wi);
	assert_false(erofs_needs_extended(&ctx, &ei));
	wi.uid = 65536;
	erofs_inode_init(&ei, &wi);
	assert_true(erofs_needs_extended(&ctx, &ei));
	wi.uid = 0;
	wi.gid = 70000;
	erofs_inode_init(&ei, &wi);
	assert_true(erofs_needs_extended(&ctx, &ei));
	wi.gid = 65535;		/* the largest compact gid, as for the uid */
	erofs_inode_init(&ei, &wi);
	assert_false(erofs_needs_extended(&ctx, &ei));
	wi.gid = 65536;
	erofs_inode_init(&ei, &wi);
	assert_true(erofs_needs_extended(&ctx, &ei));
	wi.gid = 0;
	erofs_inode_init(&ei, &wi);
	ei.nlink = 65535;	/* still fits the compact 16-bit i_nlink */
	assert_false(erofs_needs_extended(&ctx, &ei));
	ei.nlink = 65536;
	assert_true(erofs_needs_extended(&ctx, &ei));
	ei.nlink = 1;
	ei.size = 0xFFFFFFFFull;
	assert_false(erofs_needs_extended(&ctx, &ei));
	ei.size = 0x100000000ull;
	assert_true(erofs_needs_extended(&ctx, &ei));
}

static void test_build_time_choice(void **state)
{
	struct walk_inode w[5] = {
		{ .mtime_sec = 50 }, { .mtime_sec = 7, .mtime_nsec = 3 },
		{ .mtime_sec = 7, .mtime_nsec = 3 }, { .mtime_sec = 9 }, { .mtime_sec = 9 },
	};
	struct erofs_inode ei[5] = { 0 };
	struct erofs_opts opts;
	struct erofs_ctx ctx = { .opts = &opts, .inodes = ei, .ninodes = 5 };

	for (int i = 0; i < 5; i++)
		erofs_inode_init(&ei[i], &w[i]);
	erofs_opts_default(&opts);
	/* The most common (sec, nsec); on a tie the earliest. */
	erofs_choose_build_time(&ctx);
	assert_int_equal(ctx.build_time, 7);
	assert_int_equal(ctx.build_time_nsec, 3);
	opts.build_time_set = true;
	opts.build_time = 12345;
	erofs_choose_build_time(&ctx);
	assert_int_equal(ctx.build_time, 12345);
	assert_int_equal(ctx.build_time_nsec, 0);
}

static void test_check_entry(void **state)
{
	struct erofs_opts opts;
	const char *what = NULL;
	struct walk_xattr xa = { .name = "user.ok", .value = (uint8_t *)"v", .value_len = 1 };
	struct walk_inode wi = { .mode = S_IFREG | 0644, .xattrs = &xa, .nxattrs = 1 };
	char longname[300];

	erofs_opts_default(&opts);
	assert_int_equal(opts.blkszbits, 12);
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);

	memset(longname, 'n', sizeof(longname));
	assert_int_equal(erofs_check_entry(&opts, &wi, longname, 255, &what), 0);
	assert_int_equal(erofs_check_entry(&opts, &wi, longname, 256, &what),
			 -ENAMETOOLONG);
	assert_non_null(what);

	xa.name = "system.nfs4_acl";
	what = NULL;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -EOPNOTSUPP);
	assert_non_null(what);

	longname[299] = '\0';
	char xname[300];
	snprintf(xname, sizeof(xname), "user.%.255s", longname);
	xa.name = xname;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);
	snprintf(xname, sizeof(xname), "user.%.256s", longname);
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -ENAMETOOLONG);

	static uint8_t big[65536];
	xa.name = "user.big";
	xa.value = big;
	xa.value_len = 65535;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);
	xa.value_len = 65536;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -E2BIG);

	/* Five 64 KiB values overflow the 16-bit icount (§7.1). */
	struct walk_xattr five[5];
	for (int i = 0; i < 5; i++)
		five[i] = (struct walk_xattr){ .name = "user.x", .value = big,
					       .value_len = 65535 };
	wi.xattrs = five;
	wi.nxattrs = 3;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);
	wi.nxattrs = 5;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -E2BIG);
	wi.nxattrs = 0;

	wi.size = (1ull << 44) - 1;	/* 2^32 blocks of 4 KiB, minus a byte */
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);
	wi.size = 1ull << 44;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -EFBIG);
	opts.blkszbits = 16;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);
	wi.size = 0;

	wi.mode = 0170000 | 0644;	/* not one of the 7 types */
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -EOPNOTSUPP);
	wi.mode = S_IFBLK | 0600;
	wi.rdev_major = 4096;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -EOPNOTSUPP);
	wi.rdev_major = 4095;
	wi.rdev_minor = (1u << 20) - 1;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);

	/* The root comes with an empty name. */
	wi.mode = S_IFDIR | 0755;
	assert_int_equal(erofs_check_entry(&opts, &wi, "", 0, &what), 0);
	wi.mode = S_IFREG | 0644;
	assert_int_equal(erofs_check_entry(&opts, &wi, "", 0, &what), -ENAMETOOLONG);
	assert_int_equal(erofs_check_entry(&opts, &wi, "..", 2, &what), -EINVAL);
	assert_int_equal(erofs_check_entry(&opts, &wi, ".", 1, &what), -EINVAL);
	/* Only "." and "..": other short dot names are ordinary entries. */
	assert_int_equal(erofs_check_entry(&opts, &wi, ".a", 2, &what), 0);
	assert_int_equal(erofs_check_entry(&opts, &wi, "a.", 2, &what), 0);
	assert_int_equal(erofs_check_entry(&opts, &wi, "...", 3, &what), 0);

	/* mtime nanoseconds: 0 to 999,999,999 (a hand-made tree can say more). */
	wi.mtime_nsec = 999999999;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), 0);
	wi.mtime_nsec = 1000000000;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -EINVAL);
	wi.mtime_nsec = 0;

	/* Symlink targets: 1 to 4095 bytes, and as long as size says. */
	static char target[4097];
	memset(target, 't', 4096);
	wi.mode = S_IFLNK | 0777;
	wi.symlink = target + 1;
	wi.size = 4095;
	assert_int_equal(erofs_check_entry(&opts, &wi, "l", 1, &what), 0);
	wi.symlink = target;
	wi.size = 4096;
	assert_int_equal(erofs_check_entry(&opts, &wi, "l", 1, &what), -ENAMETOOLONG);
	wi.symlink = "abc";
	wi.size = 4;	/* the target is shorter than its size */
	assert_int_equal(erofs_check_entry(&opts, &wi, "l", 1, &what), -EINVAL);
	wi.size = 3;
	assert_int_equal(erofs_check_entry(&opts, &wi, "l", 1, &what), 0);
	wi.size = 2;	/* longer */
	assert_int_equal(erofs_check_entry(&opts, &wi, "l", 1, &what), -EINVAL);
	wi.symlink = NULL;
	wi.size = 0;
	wi.mode = S_IFREG | 0644;
	assert_int_equal(erofs_check_entry(&opts, &wi, "a/b", 3, &what), -EINVAL);
	assert_int_equal(erofs_check_entry(&opts, &wi, "a\0b", 3, &what), -EINVAL);
	/* i_mode is 16 bits: a mode with more set is no EROFS file type. */
	wi.mode = 0x10000 | S_IFREG | 0644;
	assert_int_equal(erofs_check_entry(&opts, &wi, "f", 1, &what), -EOPNOTSUPP);
	wi.mode = S_IFREG | 0644;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_xxh32_vectors),
		cmocka_unit_test(test_bloom_bits),
		cmocka_unit_test(test_name_index),
		cmocka_unit_test(test_rdev),
		cmocka_unit_test(test_xattr_entry_size),
		cmocka_unit_test(test_dirent_order),
		cmocka_unit_test(test_dir_blocks),
		cmocka_unit_test(test_tail_rule),
		cmocka_unit_test(test_extended_rule),
		cmocka_unit_test(test_build_time_choice),
		cmocka_unit_test(test_check_entry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
