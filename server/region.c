/* SPDX-License-Identifier: MIT */
/*
 * region.c - the region map (see region.h): append with merging, binary
 * search lookup, and a simple whole-map reader for --write-image and tests.
 */
#include <assert.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "server/cleanup.h"
#include "server/region.h"

void region_map_init(struct region_map *map)
{
	memset(map, 0, sizeof(*map));
}

void region_map_free(struct region_map *map)
{
	if (!map)
		return;
	for (size_t i = 0; i < map->nowned; i++)
		free(map->owned[i]);
	free(map->owned);
	free(map->regions);
	free(map->sources);
	region_map_init(map);
}

/* Grows *vec (of elements of size elem) so that it holds at least n + 1. */
static int grow(void **vec, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 64;
	void *p = reallocarray(*vec, ncap, elem);
	if (!p)
		return -ENOMEM;
	*vec = p;
	*cap = ncap;
	return 0;
}

int region_map_own(struct region_map *map, void *buf)
{
	if (grow((void **)&map->owned, &map->owned_cap, map->nowned,
		 sizeof(*map->owned)) < 0) {
		free(buf);
		return -ENOMEM;
	}
	map->owned[map->nowned++] = buf;
	return 0;
}

int region_add_source(struct region_map *map, const struct region_source *src,
		      uint32_t *ret_id)
{
	if (map->nsources >= UINT32_MAX)
		return -EOVERFLOW;
	if (grow((void **)&map->sources, &map->sources_cap, map->nsources,
		 sizeof(*map->sources)) < 0)
		return -ENOMEM;
	map->sources[map->nsources] = *src;
	*ret_id = (uint32_t)map->nsources++;
	return 0;
}

/* Does r, extended by len bytes, describe exactly the region n? */
static int continues(const struct region *r, const struct region *n)
{
	if (r->type != n->type)
		return 0;
	switch (r->type) {
	case REGION_ZERO:
		return 1;
	case REGION_MEM:
		return r->u.mem + r->len == n->u.mem;
	case REGION_FILE:
		return r->u.file.source == n->u.file.source &&
		       r->u.file.offset + r->len == n->u.file.offset;
	}
	return 0;
}

static int append(struct region_map *map, const struct region *n)
{
	if (n->len == 0)
		return 0;
	if (n->len > UINT64_MAX - map->size)
		return -EOVERFLOW;
	assert(n->start == map->size);

	if (map->nregions > 0) {
		struct region *last = &map->regions[map->nregions - 1];
		assert(last->start + last->len == n->start);
		if (continues(last, n)) {
			last->len += n->len;
			map->size += n->len;
			return 0;
		}
	}
	if (grow((void **)&map->regions, &map->regions_cap, map->nregions,
		 sizeof(*map->regions)) < 0)
		return -ENOMEM;
	map->regions[map->nregions++] = *n;
	map->size += n->len;
	return 0;
}

int region_add_zero(struct region_map *map, uint64_t len)
{
	struct region r = { .start = map->size, .len = len, .type = REGION_ZERO };
	return append(map, &r);
}

int region_add_mem(struct region_map *map, const void *mem, uint64_t len)
{
	struct region r = {
		.start = map->size, .len = len, .type = REGION_MEM, .u.mem = mem,
	};
	return append(map, &r);
}

int region_add_file(struct region_map *map, uint32_t source, uint64_t offset,
		    uint64_t len)
{
	if (source >= map->nsources)
		return -EINVAL;
	const struct region_source *src = &map->sources[source];
	if (offset > src->size || len > src->size - offset)
		return -EINVAL;
	struct region r = {
		.start = map->size, .len = len, .type = REGION_FILE,
		.u.file = { .source = source, .offset = offset },
	};
	return append(map, &r);
}

int region_pad_to(struct region_map *map, uint64_t align)
{
	assert(align && (align & (align - 1)) == 0);
	uint64_t rem = map->size & (align - 1);
	return rem ? region_add_zero(map, align - rem) : 0;
}

int region_append_map(struct region_map *dst, const struct region_map *src)
{
	uint32_t base = (uint32_t)dst->nsources;
	int r;

	if (src->nsources > UINT32_MAX - dst->nsources)
		return -EOVERFLOW;
	for (size_t i = 0; i < src->nsources; i++) {
		uint32_t id;
		r = region_add_source(dst, &src->sources[i], &id);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < src->nregions; i++) {
		struct region n = src->regions[i];
		n.start = dst->size;
		if (n.type == REGION_FILE)
			n.u.file.source += base;
		r = append(dst, &n);
		if (r < 0)
			return r;
	}
	return 0;
}

ssize_t region_find(const struct region_map *map, uint64_t offset)
{
	size_t lo = 0, hi = map->nregions;

	if (offset >= map->size)
		return -1;
	/* Invariant: the answer lies in [lo, hi). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (map->regions[mid].start <= offset)
			lo = mid;
		else
			hi = mid;
	}
	return (ssize_t)lo;
}

int region_source_check_attrs(const struct region_source *src, int fd,
			      uint64_t *ret_attrs)
{
	const unsigned int mask = STATX_TYPE | STATX_SIZE | STATX_MTIME | STATX_CTIME;
	static int null_path_ok = 1;
	struct statx stx;
	int r = -1;

	/*
	 * A NULL path with AT_EMPTY_PATH (Linux 6.11+) spares the kernel
	 * copying in ""; older kernels fail it with EFAULT.
	 */
	if (__atomic_load_n(&null_path_ok, __ATOMIC_RELAXED)) {
		r = (int)syscall(SYS_statx, fd, NULL, AT_EMPTY_PATH, mask, &stx);
		if (r < 0 && errno == EFAULT)
			__atomic_store_n(&null_path_ok, 0, __ATOMIC_RELAXED);
	}
	if (r < 0 && statx(fd, "", AT_EMPTY_PATH, mask, &stx) < 0)
		return -errno;
	if ((stx.stx_mask & mask) != mask)
		return -EIO;
	if (!S_ISREG(stx.stx_mode) || stx.stx_size != src->size ||
	    stx.stx_mtime.tv_sec != src->mtime_sec ||
	    stx.stx_mtime.tv_nsec != src->mtime_nsec)
		return -EIO;
	if ((src->ctime_sec || src->ctime_nsec) &&
	    (stx.stx_ctime.tv_sec != src->ctime_sec ||
	     stx.stx_ctime.tv_nsec != src->ctime_nsec))
		return -EIO;
	if (ret_attrs)
		*ret_attrs = stx.stx_attributes & stx.stx_attributes_mask;
	return 0;
}

int region_source_check(const struct region_source *src, int fd)
{
	return region_source_check_attrs(src, fd, NULL);
}

/* Reads len bytes of source src at offset, all of them or -EIO. */
static int read_source(const struct region_source *src, void *buf,
		       size_t len, uint64_t offset)
{
	_cleanup_close_ int fd = src->open(src);
	if (fd < 0)
		return fd;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(offset + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* the source shrank under us */
		done += (size_t)n;
	}
	/* A file that changed while we read it must not serve mixed bytes. */
	return region_source_check(src, fd);
}

int region_map_pread(const struct region_map *map, void *buf, size_t count,
		     uint64_t offset)
{
	if (offset > map->size || count > map->size - offset)
		return -EINVAL;

	uint8_t *out = buf;
	while (count > 0) {
		ssize_t i = region_find(map, offset);
		assert(i >= 0);
		const struct region *r = &map->regions[i];
		uint64_t skip = offset - r->start;
		size_t n = r->len - skip < count ? (size_t)(r->len - skip) : count;
		int ret;

		switch (r->type) {
		case REGION_ZERO:
			memset(out, 0, n);
			break;
		case REGION_MEM:
			memcpy(out, r->u.mem + skip, n);
			break;
		case REGION_FILE:
			ret = read_source(&map->sources[r->u.file.source], out, n,
					  r->u.file.offset + skip);
			if (ret < 0)
				return ret;
			break;
		}
		out += n;
		offset += n;
		count -= n;
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int region_map_write(const struct region_map *map, int fd)
{
	enum { CHUNK = 1 << 20 };
	_cleanup_free_ uint8_t *buf = malloc(CHUNK);
	struct stat st;
	off_t base = 0;
	bool sparse;
	int r;

	if (!buf)
		return -ENOMEM;
	if (fstat(fd, &st) < 0)
		return -errno;
	/* Holes only in regular files; devices and pipes get the zeros. */
	sparse = S_ISREG(st.st_mode);
	if (sparse && (base = lseek(fd, 0, SEEK_CUR)) < 0)
		return -errno;
	for (size_t i = 0; i < map->nregions; i++) {
		const struct region *reg = &map->regions[i];
		if (reg->type == REGION_ZERO && sparse) {
			/* Leave a hole; the final ftruncate() sets the length. */
			if (lseek(fd, (off_t)reg->len, SEEK_CUR) < 0)
				return -errno;
			continue;
		}
		for (uint64_t done = 0; done < reg->len;) {
			size_t n = reg->len - done < CHUNK ? (size_t)(reg->len - done) : CHUNK;
			r = region_map_pread(map, buf, n, reg->start + done);
			if (r < 0)
				return r;
			r = write_all(fd, buf, n);
			if (r < 0)
				return r;
			done += n;
		}
	}
	if (sparse && ftruncate(fd, base + (off_t)map->size) < 0)
		return -errno;
	return 0;
}
