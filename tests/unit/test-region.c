/* SPDX-License-Identifier: MIT */
/*
 * test-region.c - the region map: append invariants and merging, binary
 * search at every boundary, reads across mixed regions, and a source file
 * that changes after layout giving -EIO.
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

#include "server/region.h"

static char tmpfile_path[] = "/tmp/test-region.XXXXXX";

static int open_tmp(const struct region_source *src)
{
	int fd = open(tmpfile_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = region_source_check(src, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* Writes "0123456789" to the temp file and describes it as a source. */
static void make_source(struct region_source *src)
{
	int fd = mkstemp(tmpfile_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	*src = (struct region_source){
		.open = open_tmp, .name = "tmp", .size = 10,
		.mtime_sec = st.st_mtim.tv_sec, .mtime_nsec = st.st_mtim.tv_nsec,
	};
}

static void test_append_and_merge(void **state)
{
	static const char mem[8] = "ABCDEFGH";
	struct region_map m;

	region_map_init(&m);
	assert_int_equal(region_add_mem(&m, mem, 4), 0);
	assert_int_equal(region_add_mem(&m, mem + 4, 4), 0);	/* continues: merged */
	assert_int_equal(region_add_zero(&m, 0), 0);		/* no-op */
	assert_int_equal(region_add_zero(&m, 100), 0);
	assert_int_equal(region_add_zero(&m, 28), 0);		/* merged */
	assert_int_equal(region_add_mem(&m, mem, 2), 0);	/* not contiguous */
	assert_int_equal(m.nregions, 3);
	assert_int_equal(m.size, 8 + 128 + 2);
	assert_int_equal(m.regions[0].len, 8);
	assert_int_equal(m.regions[1].start, 8);
	assert_int_equal(m.regions[1].type, REGION_ZERO);
	assert_int_equal(m.regions[2].start, 136);

	assert_int_equal(region_pad_to(&m, 4096), 0);
	assert_int_equal(m.size, 4096);
	assert_int_equal(region_pad_to(&m, 4096), 0);		/* already aligned */
	assert_int_equal(m.size, 4096);
	region_map_free(&m);
}

static void test_find_boundaries(void **state)
{
	static const char mem[16];
	struct region_map m;

	region_map_init(&m);
	/* Alternate zero and memory regions of growing length 1, 2, 3, ... */
	uint64_t starts[40];
	for (int i = 0; i < 40; i++) {
		starts[i] = m.size;
		if (i % 2)
			assert_int_equal(region_add_mem(&m, mem, (uint64_t)(i % 16) + 1), 0);
		else
			assert_int_equal(region_add_zero(&m, (uint64_t)i + 1), 0);
	}
	assert_int_equal(m.nregions, 40);
	for (int i = 0; i < 40; i++) {
		assert_int_equal(region_find(&m, starts[i]), i);
		if (i > 0)
			assert_int_equal(region_find(&m, starts[i] - 1), i - 1);
	}
	assert_int_equal(region_find(&m, m.size - 1), 39);
	assert_int_equal(region_find(&m, m.size), -1);
	assert_int_equal(region_find(&m, UINT64_MAX), -1);
	region_map_free(&m);

	region_map_init(&m);
	assert_int_equal(region_find(&m, 0), -1);		/* empty map */
	region_map_free(&m);
}

static void test_pread_mixed_and_changed(void **state)
{
	struct region_map m;
	struct region_source src;
	uint32_t id;
	char buf[32];

	make_source(&src);
	region_map_init(&m);
	assert_int_equal(region_add_source(&m, &src, &id), 0);
	assert_int_equal(region_add_mem(&m, "ab", 2), 0);
	assert_int_equal(region_add_file(&m, id, 3, 4), 0);	/* "3456" */
	assert_int_equal(region_add_file(&m, id, 7, 3), 0);	/* merged: "789" */
	assert_int_equal(region_add_zero(&m, 3), 0);
	assert_int_equal(m.nregions, 3);
	assert_int_equal(region_add_file(&m, id, 8, 3), -EINVAL);	/* past the size */
	assert_int_equal(region_add_file(&m, id + 1, 0, 1), -EINVAL);	/* no such source */

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(region_map_pread(&m, buf, 12, 0), 0);
	assert_memory_equal(buf, "ab3456789\0\0\0", 12);
	assert_int_equal(region_map_pread(&m, buf, 4, 5), 0);
	assert_memory_equal(buf, "6789", 4);
	assert_int_equal(region_map_pread(&m, buf, 13, 0), -EINVAL);

	/* The source grows after layout: reads from it fail, memory still reads. */
	int fd = open(tmpfile_path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "!", 1), 1);
	close(fd);
	assert_int_equal(region_map_pread(&m, buf, 4, 2), -EIO);
	assert_int_equal(region_map_pread(&m, buf, 2, 0), 0);

	/* region_append_map shifts starts and renumbers sources. */
	struct region_map d;
	region_map_init(&d);
	assert_int_equal(region_add_source(&d, &src, &id), 0);
	assert_int_equal(region_add_zero(&d, 5), 0);
	assert_int_equal(region_append_map(&d, &m), 0);
	assert_int_equal(d.size, 5 + 12);
	assert_int_equal(d.nsources, 2);
	assert_int_equal(d.regions[2].type, REGION_FILE);
	assert_int_equal(d.regions[2].start, 7);
	assert_int_equal(d.regions[2].u.file.source, 1);

	region_map_free(&d);
	region_map_free(&m);
	unlink(tmpfile_path);
}

static void test_write_image(void **state)
{
	struct region_map m;
	char path[] = "/tmp/test-region-img.XXXXXX";
	char buf[8200];

	region_map_init(&m);
	assert_int_equal(region_add_mem(&m, "head", 4), 0);
	assert_int_equal(region_add_zero(&m, 8192), 0);
	assert_int_equal(region_add_mem(&m, "tail", 4), 0);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(region_map_write(&m, fd), 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 8200);
	assert_memory_equal(buf, "head", 4);
	for (int i = 4; i < 4 + 8192; i++)
		assert_int_equal(buf[i], 0);
	assert_memory_equal(buf + 8196, "tail", 4);
	close(fd);
	unlink(path);

	/* Not a regular file (here a pipe): zeros are written, not seeked. */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(region_map_write(&m, pfd[1]), 0);
	close(pfd[1]);
	memset(buf, 'x', sizeof(buf));
	size_t got = 0;
	ssize_t n;
	while ((n = read(pfd[0], buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	close(pfd[0]);
	assert_int_equal(got, 8200);
	assert_memory_equal(buf, "head", 4);
	for (int i = 4; i < 4 + 8192; i++)
		assert_int_equal(buf[i], 0);
	assert_memory_equal(buf + 8196, "tail", 4);
	region_map_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_merge),
		cmocka_unit_test(test_find_boundaries),
		cmocka_unit_test(test_pread_mixed_and_changed),
		cmocka_unit_test(test_write_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
