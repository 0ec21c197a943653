/* SPDX-License-Identifier: MIT */
/*
 * test-erofs-sparse.c - erofs_build() on a real directory (walked with
 * walk_tree()): holes of a sparse file become REGION_ZERO blocks, data
 * stays REGION_FILE, and reading the image back through the region map
 * gives the file's exact bytes (FLAT_PLAIN, §6.1).  A non-sparse file is
 * one FILE run followed by zeros to the end of its last block.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/byteorder.h"

#include "erofs/erofs.h"

#define SPARSE_SIZE	(1024 * 1024 + 100)
#define DATA_OFF	300000

static char dir[] = "/tmp/test-erofs-sparse.XXXXXX";
static char path_sparse[64], path_plain[64];

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	snprintf(path_sparse, sizeof(path_sparse), "%s/sparse", dir);
	snprintf(path_plain, sizeof(path_plain), "%s/plain", dir);

	int fd = open(path_sparse, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SPARSE_SIZE), 0);
	assert_int_equal(pwrite(fd, "0123456789", 10, DATA_OFF), 10);
	assert_int_equal(pwrite(fd, "end", 3, SPARSE_SIZE - 3), 3);
	close(fd);

	fd = open(path_plain, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	static char buf[10000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)('a' + i % 26);
	assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	unlink(path_sparse);
	unlink(path_plain);
	rmdir(dir);
	return 0;
}

/* Finds a regular file's source index by name. */
static uint32_t source_of(const struct region_map *map, const char *name)
{
	for (size_t i = 0; i < map->nsources; i++)
		if (strcmp(map->sources[i].name, name) == 0)
			return (uint32_t)i;
	fail_msg("no source '%s'", name);
	return 0;
}

/* First byte of the image served from source src (the data's blkaddr * bs). */
static uint64_t data_start(const struct region_map *map, uint32_t src)
{
	for (size_t i = 0; i < map->nregions; i++)
		if (map->regions[i].type == REGION_FILE &&
		    map->regions[i].source == src)
			return map->regions[i].start - map->regions[i].offset;
	fail_msg("source %u has no region", src);
	return 0;
}

static void read_back(const struct region_map *map, const char *path, uint64_t start,
		      uint64_t size)
{
	uint8_t *want = malloc(size), *got = malloc(size);
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, want, size, 0), (ssize_t)size);
	close(fd);
	assert_int_equal(region_map_pread(map, got, size, start), 0);
	assert_memory_equal(got, want, size);
	free(want);
	free(got);
}

static void test_sparse(void **state)
{
	struct walk_opts wopts = { 0 };
	struct walk_tree *tree = NULL;
	struct erofs_opts opts;
	struct region_map map;
	char *errpath = NULL;
	const char *what = NULL;
	struct stat st;

	assert_int_equal(stat(path_sparse, &st), 0);
	if ((uint64_t)st.st_blocks * 512 >= SPARSE_SIZE)
		skip();		/* this file system stored no hole */

	assert_int_equal(walk_tree(dir, &wopts, &tree, &errpath, &what), 0);
	erofs_opts_default(&opts);
	opts.inline_file_tails = false;	/* the whole file in data blocks */
	region_map_init(&map);
	assert_int_equal(erofs_build(tree, &opts, &map, &errpath, &what), 0);

	uint32_t src = source_of(&map, "sparse");
	uint64_t start = data_start(&map, src);
	uint64_t end = start + ((SPARSE_SIZE + 4095) & ~4095ull);
	assert_int_equal(start % 4096, 0);

	/* Whole blocks of the hole before the data are zero regions. */
	uint64_t zero = 0, file = 0;
	for (size_t i = 0; i < map.nregions; i++) {
		/* Zero regions may merge with the padding around the data. */
		const struct region *r = &map.regions[i];
		uint64_t a = r->start > start ? r->start : start;
		uint64_t b = r->start + r->len < end ? r->start + r->len : end;
		if (a >= b)
			continue;
		if (r->type == REGION_ZERO)
			zero += b - a;
		else if (r->type == REGION_FILE)
			file += b - a;
		else
			fail_msg("memory region inside file data");
	}
	assert_int_equal(zero + file, end - start);
	assert_true(zero >= (uint64_t)(DATA_OFF / 4096) * 4096);
	ssize_t i = region_find(&map, start + DATA_OFF);
	assert_int_equal(map.regions[i].type, REGION_FILE);
	i = region_find(&map, start + SPARSE_SIZE - 1);
	assert_int_equal(map.regions[i].type, REGION_FILE);
	i = region_find(&map, start);
	assert_int_equal(map.regions[i].type, REGION_ZERO);
	read_back(&map, path_sparse, start, SPARSE_SIZE);

	/* The plain file: one FILE run, then zeros to its block's end. */
	src = source_of(&map, "plain");
	start = data_start(&map, src);
	i = region_find(&map, start);
	assert_int_equal(map.regions[i].type, REGION_FILE);
	assert_int_equal(map.regions[i].start, start);
	assert_int_equal(map.regions[i].len, 10000);
	assert_int_equal(map.regions[i + 1].type, REGION_ZERO);
	assert_true(map.regions[i + 1].len >= 3 * 4096 - 10000);
	read_back(&map, path_plain, start, 10000);

	/* The whole image reads, and the superblock checksum is flagged. */
	uint8_t *img = malloc(map.size);
	assert_int_equal(region_map_pread(&map, img, map.size, 0), 0);
	assert_int_equal(get_le32(img + 1024), 0xE0F5E1E2u);
	assert_int_equal(get_le32(img + 1024 + 8) & 1, 1);
	free(img);

	region_map_free(&map);
	walk_tree_free(tree);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sparse),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
