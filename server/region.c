/* SPDX-License-Identifier: MIT */
/*
 * region.c - the region map (see region.h): append with merging, sub-maps,
 * binary search lookup, the leaf iterator, and a simple whole-map reader
 * for --write-image and tests.
 */
#include <assert.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
	map->depth = 1;
}

void region_map_free(struct region_map *map)
{
	if (!map)
		return;
	for (size_t i = 0; i < map->nowned; i++)
		free(map->owned[i]);
	free(map->owned);
	free(map->subs);
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
		return r->mem + r->len == n->mem;
	case REGION_FILE:
	case REGION_MAP:
		return r->source == n->source && r->offset + r->len == n->offset;
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
		.start = map->size, .len = len, .type = REGION_MEM, .mem = mem,
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
		.source = source, .offset = offset,
	};
	return append(map, &r);
}

int region_pad_to(struct region_map *map, uint64_t align)
{
	assert(align && (align & (align - 1)) == 0);
	uint64_t rem = map->size & (align - 1);
	return rem ? region_add_zero(map, align - rem) : 0;
}

/* Index of sub in map->subs, added if new; -ENOMEM or -ELOOP. */
static int sub_index(struct region_map *map, const struct region_map *sub,
		     uint32_t *ret_idx)
{
	for (size_t i = map->nsubs; i-- > 0;) {
		if (map->subs[i] == sub) {
			*ret_idx = (uint32_t)i;
			return 0;
		}
	}
	if (sub == map || sub->depth + 1 > REGION_MAX_DEPTH)
		return -ELOOP;
	if (grow((void **)&map->subs, &map->subs_cap, map->nsubs, sizeof(*map->subs)) < 0)
		return -ENOMEM;
	map->subs[map->nsubs] = sub;
	*ret_idx = (uint32_t)map->nsubs++;
	if (map->depth < sub->depth + 1)
		map->depth = sub->depth + 1;
	return 0;
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
			n.source += base;
		if (n.type == REGION_MAP) {
			r = sub_index(dst, src->subs[n.source], &n.source);
			if (r < 0)
				return r;
		}
		r = append(dst, &n);
		if (r < 0)
			return r;
	}
	return 0;
}

int region_add_map(struct region_map *dst, const struct region_map *sub,
		   uint64_t offset, uint64_t len)
{
	uint64_t lead = 0, trail = 0;
	struct region_iter it;
	struct region_span sp;
	struct region n;
	int r;

	if (sub == dst || offset > sub->size || len > sub->size - offset)
		return -EINVAL;
	if (len == 0)
		return 0;
	/* The zeros at either end of the window, each one leaf span. */
	if (region_iter_seek(&it, sub, offset, &sp) && sp.type == REGION_ZERO)
		lead = sp.start + sp.len - offset < len ? sp.start + sp.len - offset : len;
	if (lead < len && region_iter_seek(&it, sub, offset + len - 1, &sp) &&
	    sp.type == REGION_ZERO)
		trail = offset + len - (sp.start > offset ? sp.start : offset);
	r = region_add_zero(dst, lead);
	if (r < 0 || lead == len)
		return r;
	n = (struct region){
		.start = dst->size, .len = len - lead - trail, .type = REGION_MAP,
		.offset = offset + lead,
	};
	r = sub_index(dst, sub, &n.source);
	if (r == 0)
		r = append(dst, &n);
	if (r == 0)
		r = region_add_zero(dst, trail);
	return r;
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

/* Fills *ret with the current leaf of it, clipped to its window. */
static void iter_span(const struct region_iter *it, struct region_span *ret)
{
	const struct region_level *l = &it->lv[it->depth - 1];
	const struct region *r = &l->map->regions[l->i];
	uint64_t start = r->start + l->shift, end = start + r->len, skip = 0;

	if (start < l->lo) {
		skip = l->lo - start;
		start = l->lo;
	}
	if (end > l->end)
		end = l->end;
	*ret = (struct region_span){
		.start = start, .len = end - start, .type = r->type,
		.source = r->source, .map = l->map,
	};
	if (r->type == REGION_MEM)
		ret->mem = r->mem + skip;
	else if (r->type == REGION_FILE)
		ret->offset = r->offset + skip;
}

/*
 * Descends from the current region of the innermost level while it is a
 * REGION_MAP, to the leaf holding outer offset pos.
 */
static bool iter_descend(struct region_iter *it, uint64_t pos)
{
	for (;;) {
		struct region_level *l = &it->lv[it->depth - 1];
		const struct region *r = &l->map->regions[l->i];
		const struct region_map *sub;
		uint64_t lo, end;
		ssize_t i;

		if (r->type != REGION_MAP)
			return true;
		if (it->depth == REGION_MAX_DEPTH || r->source >= l->map->nsubs)
			return false;	/* region_add_map() never makes these */
		sub = l->map->subs[r->source];
		lo = r->start + l->shift;
		end = lo + r->len;
		struct region_level *c = &it->lv[it->depth++];
		c->map = sub;
		c->shift = lo - r->offset;
		c->lo = lo > l->lo ? lo : l->lo;
		c->end = end < l->end ? end : l->end;
		i = region_find(sub, pos - c->shift);
		if (i < 0)
			return false;
		c->i = (size_t)i;
	}
}

bool region_iter_seek(struct region_iter *it, const struct region_map *map,
		      uint64_t offset, struct region_span *ret)
{
	ssize_t i = region_find(map, offset);

	if (i < 0)
		return false;
	it->depth = 1;
	it->lv[0] = (struct region_level){
		.map = map, .i = (size_t)i, .shift = 0, .lo = 0, .end = map->size,
	};
	if (!iter_descend(it, offset))
		return false;
	iter_span(it, ret);
	return true;
}

bool region_iter_next(struct region_iter *it, struct region_span *ret)
{
	while (it->depth > 0) {
		struct region_level *l = &it->lv[it->depth - 1];
		const struct region *r = &l->map->regions[l->i];
		uint64_t next = r->start + r->len + l->shift;	/* outer offset */

		if (next < l->end && l->i + 1 < l->map->nregions) {
			l->i++;
			if (!iter_descend(it, next))
				return false;
			iter_span(it, ret);
			return true;
		}
		it->depth--;	/* this window is done: on in the one around it */
	}
	return false;
}

const char *region_source_path(const struct region_source *src, char *buf, size_t size)
{
	const char *dir = src->dir ? src->dir : "";
	const char *name = src->name ? src->name : "?";

	if (size)
		snprintf(buf, size, "%s%s%s", dir, *dir ? "/" : "", name);
	return buf;
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
	_cleanup_close_ int fd = src->open(src, REGION_OPEN_CHECK_AFTER);
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
	struct region_iter it;
	struct region_span sp;
	uint8_t *out = buf;
	bool more;

	if (offset > map->size || count > map->size - offset)
		return -EINVAL;
	for (more = count && region_iter_seek(&it, map, offset, &sp); more && count;
	     more = region_iter_next(&it, &sp)) {
		uint64_t skip = offset - sp.start;
		size_t n = sp.len - skip < count ? (size_t)(sp.len - skip) : count;
		int ret;

		switch (sp.type) {
		case REGION_ZERO:
			memset(out, 0, n);
			break;
		case REGION_MEM:
			memcpy(out, sp.mem + skip, n);
			break;
		case REGION_FILE:
			ret = read_source(&sp.map->sources[sp.source], out, n,
					  sp.offset + skip);
			if (ret < 0)
				return ret;
			break;
		case REGION_MAP:
			return -EIO;	/* never a leaf */
		}
		out += n;
		offset += n;
		count -= n;
	}
	return count ? -EIO : 0;
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
	struct region_iter it;
	struct region_span sp;
	for (bool more = region_iter_seek(&it, map, 0, &sp); more;
	     more = region_iter_next(&it, &sp)) {
		if (sp.type == REGION_ZERO && sparse) {
			/* Leave a hole; the final ftruncate() sets the length. */
			if (lseek(fd, (off_t)sp.len, SEEK_CUR) < 0)
				return -errno;
			continue;
		}
		for (uint64_t done = 0; done < sp.len;) {
			size_t n = sp.len - done < CHUNK ? (size_t)(sp.len - done) : CHUNK;
			r = region_map_pread(map, buf, n, sp.start + done);
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
