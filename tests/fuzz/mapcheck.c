/* SPDX-License-Identifier: MIT */
/*
 * mapcheck.c - region map invariants (server/region.h) and a reader of
 * maps written apart from region.c, so that the checkers do not trust the
 * code they check: its own search, and FILE regions read straight from
 * the fake files of tree.c.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "overlaywalk/source.h"
#include "tests/fuzz/fuzz.h"

static const struct fake_inode *source_file(const struct region_map *map, uint32_t id)
{
	FZ_CHECK(id < map->nsources, "FILE region of source %u, the map has %zu", id,
		 map->nsources);
	const struct region_source *src = &map->sources[id];
	FZ_CHECK(src->open && src->opaque, "source %u without open() or opaque", id);
	return fake_of(src->opaque);	/* walk_region_source() of a tree made by hand */
}

void map_check(const struct region_map *map)
{
	uint64_t pos = 0;
	volatile uint8_t sink = 0;

	FZ_CHECK(map->nregions <= map->regions_cap, "nregions past the capacity");
	for (size_t i = 0; i < map->nregions; i++) {
		const struct region *r = &map->regions[i];

		FZ_CHECK(r->start == pos, "region %zu starts at %llu, expected %llu (gap or "
			 "overlap)", i, (unsigned long long)r->start, (unsigned long long)pos);
		FZ_CHECK(r->len > 0 && r->len <= UINT64_MAX - pos, "region %zu of length %llu",
			 i, (unsigned long long)r->len);
		switch (r->type) {
		case REGION_ZERO:
			break;
		case REGION_MEM: {
			/* Every byte must be readable: ASan stops an overread here. */
			uint8_t x = 0;
			for (uint64_t k = 0; k < r->len; k++)
				x ^= r->mem[k];
			sink ^= x;
			break;
		}
		case REGION_FILE: {
			const struct fake_inode *fi = source_file(map, r->source);
			uint64_t ssize = map->sources[r->source].size;
			FZ_CHECK(ssize == fi->wi.size, "source %u records %llu bytes, the file "
				 "has %llu", r->source, (unsigned long long)ssize,
				 (unsigned long long)fi->wi.size);
			FZ_CHECK(r->offset <= ssize && r->len <= ssize - r->offset,
				 "FILE region [%llu, +%llu) past its source's %llu bytes",
				 (unsigned long long)r->offset, (unsigned long long)r->len,
				 (unsigned long long)ssize);
			break;
		}
		case REGION_MAP: {
			/* A window inside a sub-map, checked whole (once per region:
			 * disks hold a few). */
			FZ_CHECK(r->source < map->nsubs, "MAP region of sub-map %u, the map has %zu",
				 r->source, map->nsubs);
			const struct region_map *sub = map->subs[r->source];
			FZ_CHECK(sub && sub != map && r->offset <= sub->size &&
				 r->len <= sub->size - r->offset,
				 "MAP region [%llu, +%llu) outside its sub-map",
				 (unsigned long long)r->offset, (unsigned long long)r->len);
			map_check(sub);
			break;
		}
		default:
			FZ_FAIL("region %zu of type %d", i, (int)r->type);
		}
		pos += r->len;
	}
	FZ_CHECK(pos == map->size, "regions end at %llu, map size %llu",
		 (unsigned long long)pos, (unsigned long long)map->size);
	(void)sink;
}

/* The region holding byte off (< map->size): a binary search of our own. */
static size_t find(const struct region_map *map, uint64_t off)
{
	size_t lo = 0, hi = map->nregions;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (map->regions[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

void map_read(const struct region_map *map, uint64_t off, void *buf, size_t len)
{
	uint8_t *out = buf;

	FZ_CHECK(off <= map->size && len <= map->size - off,
		 "read of %zu bytes at %llu outside the map (%llu bytes)", len,
		 (unsigned long long)off, (unsigned long long)map->size);
	if (len == 0)
		return;
	for (size_t i = find(map, off); len > 0; i++) {
		FZ_CHECK(i < map->nregions, "map ends early");
		const struct region *r = &map->regions[i];
		uint64_t skip = off - r->start;
		size_t n = r->len - skip < len ? (size_t)(r->len - skip) : len;

		switch (r->type) {
		case REGION_ZERO:
			memset(out, 0, n);
			break;
		case REGION_MEM:
			memcpy(out, r->mem + skip, n);
			break;
		case REGION_FILE:
			fake_read(source_file(map, r->source), r->offset + skip, out, n);
			break;
		case REGION_MAP:
			map_read(map->subs[r->source], r->offset + skip, out, n);
			break;
		}
		out += n;
		off += n;
		len -= n;
	}
}

bool map_is_zero(const struct region_map *map, uint64_t off, uint64_t len)
{
	FZ_CHECK(off <= map->size && len <= map->size - off, "zero check outside the map");
	for (size_t i = len ? find(map, off) : 0; len > 0; i++) {
		const struct region *r = &map->regions[i];
		uint64_t skip = off - r->start;
		uint64_t n = r->len - skip < len ? r->len - skip : len;

		if (r->type == REGION_MEM) {
			for (uint64_t k = 0; k < n; k++)
				if (r->mem[skip + k])
					return false;
		} else if (r->type == REGION_FILE) {
			const struct fake_inode *fi = source_file(map, r->source);
			for (uint64_t k = 0; k < n; k++)
				if (fake_byte(fi, r->offset + skip + k))
					return false;
		} else if (r->type == REGION_MAP) {
			if (!map_is_zero(map->subs[r->source], r->offset + skip, n))
				return false;
		}
		off += n;
		len -= n;
	}
	return true;
}

void map_decode(struct fz *f, struct region_map *map, struct map_pool *pool)
{
	unsigned int n = 1 + fz_below(f, 8);

	memset(pool, 0, sizeof(*pool));
	for (unsigned int i = 0; i < n; i++) {
		uint8_t ctl = fz_u8(f);
		unsigned int type = (ctl & 3) % 3, cls = (ctl >> 2) & 3;
		uint64_t len;

		switch (cls) {
		case 0: len = 1 + fz_u8(f); break;
		case 1: len = 512 * (1 + (uint64_t)fz_u8(f)); break;
		case 2: len = 1 + (uint64_t)fz_u16(f) * 16; break;
		default: len = 1 + ((uint64_t)fz_u32(f) << 4); break;
		}
		if (type == REGION_MEM && len > 8192)
			len = 1 + len % 8192;	/* metadata-sized: cheap to fill */
		if (type == REGION_MEM && pool->nmem < ARRAY_SIZE(pool->mem)) {
			uint8_t *p = malloc(len);
			FZ_CHECK(p, "out of memory");
			uint64_t seed = fz_mix(ctl + len), word = 0;
			for (uint64_t k = 0; k < len; k++) {
				if (k % 8 == 0)
					word = fz_mix(seed + k);
				p[k] = (uint8_t)(word >> 8 * (k % 8));
			}
			pool->mem[pool->nmem++] = p;
			FZ_CHECK(region_add_mem(map, p, len) == 0, "region_add_mem");
		} else if (type == REGION_FILE && pool->nfiles < ARRAY_SIZE(pool->files)) {
			struct fake_inode *fi = &pool->files[pool->nfiles];
			struct region_source src;
			uint32_t id;
			uint64_t off = 512 * (uint64_t)fz_u8(f);

			fi->wi.mode = S_IFREG | 0644;
			fi->wi.size = off + len + fz_u8(f);
			fi->path = "file";
			fi->wi.name = "file";
			fi->wi.parent = &fi->wi;
			fi->seed = fz_mix(off ^ len << 8 ^ pool->nfiles);
			FZ_CHECK(walk_region_source(&pool->tree, &fi->wi, &src) == 0,
				 "walk_region_source");
			pool->nfiles++;
			FZ_CHECK(region_add_source(map, &src, &id) == 0, "region_add_source");
			FZ_CHECK(region_add_file(map, id, off, len) == 0, "region_add_file");
		} else {
			FZ_CHECK(region_add_zero(map, len) == 0, "region_add_zero");
		}
	}
}

void map_pool_free(struct map_pool *pool)
{
	for (size_t i = 0; i < pool->nmem; i++)
		free(pool->mem[i]);
	pool->nmem = 0;
}
