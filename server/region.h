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
 *                a client reads it.
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
 */
#ifndef EROFS_NBD_REGION_H
#define EROFS_NBD_REGION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum region_type {
	REGION_ZERO = 0,
	REGION_MEM,
	REGION_FILE,
};

/*
 * A source file whose bytes some REGION_FILE regions serve.  The builder
 * fills it in; the map copies it on region_add_source().
 */
struct region_source {
	/*
	 * Opens the source for reading and checks that it is still the file
	 * the layout was computed from (identity, size, ctime).  Returns a
	 * new O_RDONLY|O_CLOEXEC fd, or -errno: -EIO when the file changed.
	 */
	int (*open)(const struct region_source *src);
	const void *opaque;	/* the builder's handle, e.g. a walk_inode */
	const char *name;	/* path relative to the tree, for messages */
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
	union {
		const uint8_t *mem;	/* REGION_MEM: len bytes */
		struct {
			uint32_t source;	/* index into map->sources */
			uint64_t offset;	/* byte offset inside the source */
		} file;			/* REGION_FILE */
	} u;
};

struct region_map {
	struct region *regions;		/* sorted by start, no gaps */
	size_t nregions, regions_cap;
	uint64_t size;			/* bytes: end of the last region */
	struct region_source *sources;
	size_t nsources, sources_cap;
	void **owned;			/* buffers freed with the map */
	size_t nowned, owned_cap;
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
 * Returns the index of the region that contains byte offset, found by
 * binary search, or -1 if offset >= map->size.
 */
ssize_t region_find(const struct region_map *map, uint64_t offset);

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
