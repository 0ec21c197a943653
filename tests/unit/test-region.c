/* SPDX-License-Identifier: MIT */
/*
 * test-region.c - the region map: append invariants and merging, binary
 * search at every boundary, reads across mixed regions, a source file
 * that changes after layout giving -EIO, and sub-maps (REGION_MAP): their
 * windows, trimmed zeros, nesting and the leaf iterator, checked against
 * the same bytes laid out flat.
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

static int open_tmp(const struct region_source *src, unsigned int flags)
{
	(void)flags;
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
	strcpy(tmpfile_path, "/tmp/test-region.XXXXXX");	/* a template again */
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
	assert_int_equal(d.regions[2].source, 1);

	region_map_free(&d);
	region_map_free(&m);
	unlink(tmpfile_path);
}

/* buf holds head, then zeros bytes of zeros, then tail. */
static void expect_framed(const char *buf, const char *head, size_t zeros,
			  const char *tail)
{
	size_t h = strlen(head);

	assert_memory_equal(buf, head, h);
	for (size_t i = h; i < h + zeros; i++)
		assert_int_equal(buf[i], 0);
	assert_memory_equal(buf + h + zeros, tail, strlen(tail));
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
	expect_framed(buf, "head", 8192, "tail");
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
	expect_framed(buf, "head", 8192, "tail");
	region_map_free(&m);
}

/*
 * The spans of map from offset 0, checked for the iterator's promises:
 * contiguous, leaves only, inside the map; no two zero spans in a row.
 * Returns how many there are.
 */
static size_t check_spans(const struct region_map *map)
{
	struct region_iter it;
	struct region_span sp;
	uint64_t pos = 0;
	size_t n = 0;
	bool prev_zero = false;

	for (bool more = region_iter_seek(&it, map, 0, &sp); more;
	     more = region_iter_next(&it, &sp)) {
		assert_int_equal(sp.start, pos);
		assert_true(sp.len > 0);
		assert_true(sp.type == REGION_ZERO || sp.type == REGION_MEM ||
			    sp.type == REGION_FILE);
		assert_false(prev_zero && sp.type == REGION_ZERO);
		prev_zero = sp.type == REGION_ZERO;
		if (sp.type == REGION_FILE) {
			assert_true(sp.source < sp.map->nsources);
			assert_true(sp.offset + sp.len <= sp.map->sources[sp.source].size);
		}
		pos += sp.len;
		n++;
	}
	assert_int_equal(pos, map->size);
	return n;
}

/* Every byte range of a and b reads the same (both small). */
static void assert_same_bytes(const struct region_map *a, const struct region_map *b)
{
	char x[64], y[64];

	assert_int_equal(a->size, b->size);
	assert_true(a->size <= sizeof(x));
	for (uint64_t off = 0; off < a->size; off++) {
		for (uint64_t len = 1; off + len <= a->size; len++) {
			struct region_iter it;
			struct region_span sp;

			memset(x, 'x', sizeof(x));
			memset(y, 'y', sizeof(y));
			assert_int_equal(region_map_pread(a, x, len, off), 0);
			assert_int_equal(region_map_pread(b, y, len, off), 0);
			assert_memory_equal(x, y, len);
			/* The span that holds off starts at or before it. */
			assert_true(region_iter_seek(&it, a, off, &sp));
			assert_true(sp.start <= off && off < sp.start + sp.len);
		}
	}
}

/*
 * Sub-maps: a window shows the sub-map's bytes without copying its
 * regions, the zeros at its edges become the outer map's, windows nest,
 * and every read matches the same bytes appended flat.
 */
static void test_submap(void **state)
{
	struct region_map sub, mid, top, flat;
	struct region_source src;
	uint32_t id;

	make_source(&src);
	region_map_init(&sub);
	/* sub: 3 zeros, "AB", file "2345", 2 zeros, "CD", 4 zeros: 17 bytes */
	assert_int_equal(region_add_source(&sub, &src, &id), 0);
	assert_int_equal(region_add_zero(&sub, 3), 0);
	assert_int_equal(region_add_mem(&sub, "AB", 2), 0);
	assert_int_equal(region_add_file(&sub, id, 2, 4), 0);
	assert_int_equal(region_add_zero(&sub, 2), 0);
	assert_int_equal(region_add_mem(&sub, "CD", 2), 0);
	assert_int_equal(region_add_zero(&sub, 4), 0);
	assert_int_equal(sub.size, 17);

	/* The whole of it after "x" and 2 zeros: the edge zeros are top's. */
	region_map_init(&top);
	assert_int_equal(region_add_mem(&top, "x", 1), 0);
	assert_int_equal(region_add_zero(&top, 2), 0);
	assert_int_equal(region_add_map(&top, &sub, 0, sub.size), 0);
	assert_int_equal(region_add_mem(&top, "y", 1), 0);
	assert_int_equal(top.nregions, 5);	/* MEM, ZERO 2+3, MAP, ZERO 4, MEM */
	assert_int_equal(top.regions[1].type, REGION_ZERO);
	assert_int_equal(top.regions[1].len, 5);
	assert_int_equal(top.regions[2].type, REGION_MAP);
	assert_int_equal(top.regions[2].offset, 3);
	assert_int_equal(top.regions[2].len, 10);
	assert_int_equal(top.regions[3].len, 4);
	assert_int_equal(top.nsources, 0);	/* shared, not copied */
	assert_int_equal(top.nsubs, 1);
	assert_int_equal(top.depth, 2);
	assert_int_equal(check_spans(&top), 8);

	region_map_init(&flat);
	assert_int_equal(region_add_mem(&flat, "x", 1), 0);
	assert_int_equal(region_add_zero(&flat, 2), 0);
	assert_int_equal(region_append_map(&flat, &sub), 0);
	assert_int_equal(region_add_mem(&flat, "y", 1), 0);
	assert_same_bytes(&top, &flat);
	region_map_free(&flat);
	region_map_free(&top);

	/*
	 * Nested, and windows that cut regions: mid shows sub[4, 6) and
	 * sub[6, 13) (one region: the second continues the first), then
	 * sub[4, 14) (its last byte a zero of mid's), then sub[9, 10) (a zero
	 * only: no sub-map at all); top shows mid[1, 20) between two bytes.
	 */
	region_map_init(&mid);
	assert_int_equal(region_add_map(&mid, &sub, 4, 2), 0);
	assert_int_equal(region_add_map(&mid, &sub, 6, 7), 0);
	assert_int_equal(mid.nregions, 1);
	assert_int_equal(region_add_map(&mid, &sub, 4, 10), 0);
	assert_int_equal(region_add_map(&mid, &sub, 9, 1), 0);
	assert_int_equal(mid.nregions, 3);
	assert_int_equal(mid.regions[2].type, REGION_ZERO);
	assert_int_equal(mid.regions[2].len, 2);
	assert_int_equal(mid.size, 20);
	region_map_init(&top);
	assert_int_equal(region_add_mem(&top, "<", 1), 0);
	assert_int_equal(region_add_map(&top, &mid, 1, 19), 0);
	assert_int_equal(region_add_mem(&top, ">", 1), 0);
	assert_int_equal(top.depth, 3);
	check_spans(&top);

	region_map_init(&flat);
	char want[20];
	assert_int_equal(region_map_pread(&mid, want, 20, 0), 0);
	assert_memory_equal(want, "B2345\0\0CDB2345\0\0CD\0\0", 20);
	assert_int_equal(region_add_mem(&flat, "<", 1), 0);
	assert_int_equal(region_add_mem(&flat, want + 1, 19), 0);
	assert_int_equal(region_add_mem(&flat, ">", 1), 0);
	assert_same_bytes(&top, &flat);

	/* A file that changed reads as EIO through the sub-map too. */
	int fd = open(tmpfile_path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "!", 1), 1);
	close(fd);
	char buf[4];
	assert_int_equal(region_map_pread(&top, buf, 2, 2), -EIO);
	assert_int_equal(region_map_pread(&top, buf, 1, 0), 0);

	/* Refused: a window outside the sub-map, the map itself, too deep. */
	assert_int_equal(region_add_map(&top, &sub, 10, 8), -EINVAL);
	assert_int_equal(region_add_map(&top, &top, 0, 1), -EINVAL);
	struct region_map deep[REGION_MAX_DEPTH];
	region_map_init(&deep[0]);
	assert_int_equal(region_add_mem(&deep[0], "z", 1), 0);
	for (int i = 1; i < REGION_MAX_DEPTH; i++) {
		region_map_init(&deep[i]);
		assert_int_equal(region_add_map(&deep[i], &deep[i - 1], 0, 1), 0);
		assert_int_equal(deep[i].depth, (unsigned int)i + 1);
	}
	assert_int_equal(region_add_map(&flat, &deep[REGION_MAX_DEPTH - 1], 0, 1), -ELOOP);
	assert_int_equal(region_map_pread(&deep[REGION_MAX_DEPTH - 1], buf, 1, 0), 0);
	assert_int_equal(buf[0], 'z');
	for (int i = REGION_MAX_DEPTH; i-- > 0;)
		region_map_free(&deep[i]);

	region_map_free(&flat);
	region_map_free(&top);
	region_map_free(&mid);
	region_map_free(&sub);
	unlink(tmpfile_path);
}

/*
 * A window that ends inside a sub-map's file region: the iterator clips
 * the leaf span to the window, so the span lengths add up and a read of
 * the window's tail gets the window's bytes, then the outer map's, not
 * more of the file (region.h: spans in the outer map's offsets).
 */
static void test_submap_window_end(void **state)
{
	struct region_map sub, top;
	struct region_source src;
	struct region_iter it;
	struct region_span sp;
	uint32_t id;
	char buf[8];

	make_source(&src);
	region_map_init(&sub);
	region_map_init(&top);
	/* sub: "AB", file "0123456789": 12 bytes; top: sub[0, 9), "yz". */
	assert_int_equal(region_add_source(&sub, &src, &id), 0);
	assert_int_equal(region_add_mem(&sub, "AB", 2), 0);
	assert_int_equal(region_add_file(&sub, id, 0, 10), 0);
	assert_int_equal(region_add_map(&top, &sub, 0, sub.size - 3), 0);
	assert_int_equal(region_add_mem(&top, "yz", 2), 0);
	assert_int_equal(top.size, 11);
	assert_int_equal(check_spans(&top), 3);

	/* The file span: top[2, 9), file offset 0, 7 bytes. */
	assert_true(region_iter_seek(&it, &top, 5, &sp));
	assert_int_equal(sp.type, REGION_FILE);
	assert_int_equal(sp.start, 2);
	assert_int_equal(sp.len, 7);
	assert_int_equal(sp.offset, 0);
	assert_true(region_iter_next(&it, &sp));
	assert_int_equal(sp.type, REGION_MEM);
	assert_int_equal(sp.start, 9);
	assert_int_equal(sp.len, 2);
	assert_false(region_iter_next(&it, &sp));

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(region_map_pread(&top, buf, 6, 5), 0);
	assert_memory_equal(buf, "3456yz", 6);
	char all[11];
	assert_int_equal(region_map_pread(&top, all, 11, 0), 0);
	assert_memory_equal(all, "AB0123456yz", 11);

	region_map_free(&top);
	region_map_free(&sub);
	unlink(tmpfile_path);
}

/* region_map_write() of a map with a sub-map: its zeros are holes too. */
static void test_write_submap(void **state)
{
	struct region_map sub, top;
	char path[] = "/tmp/test-region-sub.XXXXXX";
	char buf[3 * 4096];
	struct stat st;

	region_map_init(&sub);
	region_map_init(&top);
	assert_int_equal(region_add_mem(&sub, "in", 2), 0);
	assert_int_equal(region_add_zero(&sub, 8192), 0);
	assert_int_equal(region_add_mem(&sub, "out", 3), 0);
	assert_int_equal(region_add_zero(&top, 4096), 0);
	assert_int_equal(region_add_map(&top, &sub, 0, sub.size), 0);
	assert_int_equal(region_pad_to(&top, 4096), 0);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(region_map_write(&top, fd), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 4 * 4096);
	/* 2 of the 4 blocks hold data, at most (file systems may round up). */
	assert_true(st.st_blocks * 512 <= 3 * 4096);
	assert_int_equal(pread(fd, buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
	expect_framed(buf, "in", 8192, "out");
	close(fd);
	unlink(path);
	region_map_free(&top);
	region_map_free(&sub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_merge),
		cmocka_unit_test(test_find_boundaries),
		cmocka_unit_test(test_pread_mixed_and_changed),
		cmocka_unit_test(test_write_image),
		cmocka_unit_test(test_submap),
		cmocka_unit_test(test_submap_window_end),
		cmocka_unit_test(test_write_submap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
