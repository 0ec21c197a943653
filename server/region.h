/* SPDX-License-Identifier: MIT */
/*
 * region.h - the region map: the one type the builders and the server share.
 *
 * An export is a byte array described by a sorted, gap-free vector of
 * regions.  Each region is backed by one of
 *
 *   REGION_ZERO  bytes that read as zero and cost nothing (padding, holes,
 *                free clusters); reported to clients as holes;
 *   REGION_MEM   bytes in memory the map owns or borrows (metadata);
 *   REGION_FILE  a byte range of a source file, opened and read only when
 *                a client reads it;
 *   REGION_MAP   a byte range of another region map (a sub-map), shown
 *                without copying its regions: a partition inside a disk.
 *
 * Builders (erofs/, fat/, gpt/) append regions in ascending order; the
 * server (server/) only looks regions up and reads them.  This header
 * depends on libc alone.
 *
 *   region[0]            region[1]               region[2]
 *   +--------------------+-----------------------+-----------------+
 *   | MEM  (superblock,  | FILE src 3 @ 0        | ZERO (padding)  |
 *   |       inodes)      |                       |                 |
 *   +--------------------+-----------------------+-----------------+
 *   0                  start                  start          map->size
 *
 * Invariants, asserted on every append: regions[0].start == 0,
 * regions[i+1].start == regions[i].start + regions[i].len, len > 0.
 * Offsets and lengths are in bytes throughout.
 *
 * Sub-maps.  A REGION_MAP region shows len bytes of the map subs[source]
 * from byte offset there.  The sub-map's regions are not copied: a disk
 * that holds a 140,000-file EROFS costs a handful of regions, not
 * another 300,000.  The sub-map's FILE regions keep their own source
 * numbers (sub->sources), so a reader resolves a leaf region together
 * with the map it belongs to: region_iter_*() walks the leaves of a map
 * through its sub-maps (at most REGION_MAX_DEPTH levels) as region_span
 * values in the outer map's offsets.  region_add_map() keeps the zeros
 * at either end of the window out of the REGION_MAP region (they become
 * ZERO regions of the outer map), so that every run of zeros a reader
 * sees is one leaf span, as in a map without sub-maps.
 *
 *   disk map:  | MEM gpt | ZERO | MAP esp @0 | ZERO | MAP root @1024 | ZERO | MEM gpt |
 *                                    |                    |
 *   esp map:   | MEM | FILE | ...  <-+     root map: | ZERO | MEM sb | FILE | ...
 *
 * The server reads a sub-map's FILE regions through the export that
 * serves that map (server.h): every sub-map with sources is exported too.
 */
#ifndef EROFS_NBD_REGION_H
#define EROFS_NBD_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum region_type {
	REGION_ZERO = 0,
	REGION_MEM,
	REGION_FILE,
	REGION_MAP,
};

/*
 * region_source.open() flag: the caller checks the fd with
 * region_source_check() after every read through it, before it uses the
 * bytes, and before anything is spliced from it.  open() may then leave
 * out its own comparison of size and times where it knows the identity
 * without a look (a file handle names the very inode); identity is always
 * checked.  The server's source cache opens this way: a reopen by handle
 * spares a statx() that the read's check repeats.
 */
#define REGION_OPEN_CHECK_AFTER	(1u << 0)

/* Sub-maps nest at most this deep (a map with sub-maps is depth 2). */
#define REGION_MAX_DEPTH 4

/*
 * A source file whose bytes some REGION_FILE regions serve.  The builder
 * fills it in; the map copies it on region_add_source().
 */
struct region_source {
	/*
	 * Opens the source for reading and checks that it is still the file
	 * the layout was computed from (identity, size, ctime).  Returns a
	 * new O_RDONLY|O_CLOEXEC fd, or -errno: -EIO when the file changed.
	 * flags: 0 or REGION_OPEN_CHECK_AFTER (above).
	 */
	int (*open)(const struct region_source *src, unsigned int flags);
	const void *opaque;	/* the builder's handle, e.g. a walk_inode */
	/*
	 * For messages (region_source_path()): the file's directory relative
	 * to the tree ("" or NULL: the top; one string for all its files)
	 * and its name there.
	 */
	const char *dir;
	const char *name;
	uint64_t size;		/* bytes the layout expects the file to hold */
	int64_t mtime_sec;	/* mtime recorded by the walk, for re-checks */
	uint32_t mtime_nsec;
	/*
	 * ctime recorded by the walk, for re-checks; 0/0 if the builder did
	 * not record it (then only size and mtime are compared).  Unlike the
	 * mtime, no one can set it back: every write, truncate, utimensat,
	 * chmod or rename of the inode moves it.
	 */
	uint32_t ctime_nsec;
	int64_t ctime_sec;
};

struct region {
	uint64_t start;		/* byte offset of the first byte in the export */
	uint64_t len;		/* bytes, > 0; the region ends before start + len */
	enum region_type type;
	/* REGION_FILE: index into map->sources; REGION_MAP: into map->subs */
	uint32_t source;
	union {
		const uint8_t *mem;	/* REGION_MEM: len bytes */
		uint64_t offset;	/* REGION_FILE: byte offset inside the source;
					 * REGION_MAP: inside the sub-map */
	};
};

struct region_map {
	struct region *regions;		/* sorted by start, no gaps */
	size_t nregions, regions_cap;
	uint64_t size;			/* bytes: end of the last region */
	struct region_source *sources;
	size_t nsources, sources_cap;
	void **owned;			/* buffers freed with the map */
	size_t nowned, owned_cap;
	const struct region_map **subs;	/* maps REGION_MAP regions show (borrowed) */
	size_t nsubs, subs_cap;
	unsigned int depth;		/* 1, or 1 + the deepest sub-map's depth */
};

/* Initialises an empty map (size 0).  Cannot fail. */
void region_map_init(struct region_map *map);

/* Frees the vectors and every buffer handed over with region_map_own(). */
void region_map_free(struct region_map *map);

/*
 * Hands a malloc'ed buffer to the map, to be freed by region_map_free().
 * On failure (-ENOMEM) the buffer is freed here, so callers need not.
 */
int region_map_own(struct region_map *map, void *buf);

/*
 * Registers a source file and returns its index in *ret_id.  The struct is
 * copied; the strings and opaque pointer it points at must outlive the map.
 * Returns 0, -ENOMEM, or -EOVERFLOW past 2^32 - 1 sources.
 */
int region_add_source(struct region_map *map, const struct region_source *src,
		      uint32_t *ret_id);

/*
 * Appends a region of len bytes at map->size.  len == 0 is a no-op that
 * returns 0.  An appended region that continues the previous one (zeros
 * after zeros, the next bytes of the same buffer or source) is merged into
 * it.  REGION_MEM buffers are borrowed: they must outlive the map (give
 * them to region_map_own() if the map should free them).  REGION_FILE
 * ranges must lie inside the source's recorded size.
 * Returns 0, -ENOMEM, -EINVAL (bad source or range) or -EOVERFLOW.
 */
int region_add_zero(struct region_map *map, uint64_t len);
int region_add_mem(struct region_map *map, const void *mem, uint64_t len);
int region_add_file(struct region_map *map, uint32_t source, uint64_t offset,
		    uint64_t len);

/*
 * Appends zeros until map->size is a multiple of align bytes (a power of
 * two).  Returns 0 or -ENOMEM.
 */
int region_pad_to(struct region_map *map, uint64_t align);

/*
 * Appends every region of src, shifted to start at dst->size, registering
 * src's sources in dst (their strings and opaque pointers are shared, not
 * copied; memory regions stay borrowed from src, which must outlive dst).
 * Returns 0 or -ENOMEM / -EOVERFLOW.
 */
int region_append_map(struct region_map *dst, const struct region_map *src);

/*
 * Appends len bytes of sub from byte offset (a partition's contents, say)
 * as a REGION_MAP region, sharing sub's regions and sources instead of
 * copying them: sub must outlive dst and not change any more.  Zeros at
 * either end of the window are appended as ZERO regions instead, so a
 * window of nothing but zeros costs no sub-map at all.  len == 0 is a
 * no-op.  Returns 0, -EINVAL (the window is not inside sub, or sub is dst),
 * -ELOOP (sub-maps would nest deeper than REGION_MAX_DEPTH), -ENOMEM or
 * -EOVERFLOW.
 */
int region_add_map(struct region_map *dst, const struct region_map *sub,
		   uint64_t offset, uint64_t len);

/*
 * Returns the index of the region that contains byte offset, found by
 * binary search, or -1 if offset >= map->size.
 */
ssize_t region_find(const struct region_map *map, uint64_t offset);

/*
 * A leaf of a map seen through its sub-maps: a ZERO, MEM or FILE region,
 * or the part of one that a sub-map window shows, in the outer map's
 * offsets.
 */
struct region_span {
	uint64_t start;		/* byte offset in the outer map */
	uint64_t len;		/* bytes, > 0 */
	enum region_type type;	/* REGION_ZERO, REGION_MEM or REGION_FILE */
	uint32_t source;	/* REGION_FILE: index into map->sources */
	const struct region_map *map;	/* the map the leaf region belongs to */
	union {
		const uint8_t *mem;	/* REGION_MEM: the byte at start */
		uint64_t offset;	/* REGION_FILE: source offset of the byte at start */
	};
};

/* A cursor over the leaf spans of a map, in ascending order. */
struct region_iter {
	unsigned int depth;	/* levels in use */
	struct region_level {
		const struct region_map *map;
		size_t i;		/* current region of map */
		uint64_t shift;		/* outer offset = offset in map + shift (mod 2^64) */
		uint64_t lo, end;	/* the window this level shows, in outer offsets */
	} lv[REGION_MAX_DEPTH];
};

/*
 * Positions it on the leaf span of map that contains byte offset and
 * stores that span in *ret.  Returns false (and leaves *ret alone) if
 * offset >= map->size.  One binary search per level.
 */
bool region_iter_seek(struct region_iter *it, const struct region_map *map,
		      uint64_t offset, struct region_span *ret);

/*
 * Moves it to the next leaf span and stores it in *ret; false at the end
 * of the map.
 */
bool region_iter_next(struct region_iter *it, struct region_span *ret);

/*
 * Checks an fd opened through src->open() against the layout again: it
 * must still be a regular file of src->size bytes with src->mtime and
 * src->ctime (when recorded).  One statx() with the least mask.  The
 * server calls it after reads so that a file changed after it was opened
 * gives EIO instead of wrong bytes: a write() updates the times before it
 * changes any byte, so unchanged times after the read mean the bytes read
 * predate any change.  Returns 0, -EIO, or -errno of statx.
 */
int region_source_check(const struct region_source *src, int fd);

/*
 * The same, also returning the file's statx attributes that its file
 * system reports (STATX_ATTR_IMMUTABLE, STATX_ATTR_VERITY, ...) in
 * *ret_attrs on success.
 */
int region_source_check_attrs(const struct region_source *src, int fd,
			      uint64_t *ret_attrs);

/*
 * Writes src's path relative to the tree ("dir/name", or the name alone
 * at the top) for messages into buf, size bytes with the NUL, cut short
 * if longer, and returns buf.
 */
const char *region_source_path(const struct region_source *src, char *buf, size_t size);

/*
 * Copies count bytes at offset into buf, reading source files through
 * their open() callbacks (opened and closed per call: this is the simple
 * path used by --write-image and the tests, not by the server's hot path).
 * Returns 0, -EINVAL if the range is outside the map, -EIO when a source
 * changed or came up short, or another -errno from open/pread.
 */
int region_map_pread(const struct region_map *map, void *buf, size_t count,
		     uint64_t offset);

/*
 * Writes the whole export to fd from its current position.  In a regular
 * file zero regions become holes; to anything else (a block device, a
 * pipe) they are written as zeros.
 * Returns 0 or -errno as region_map_pread() does, or the write's error.
 */
int region_map_write(const struct region_map *map, int fd);

#endif
