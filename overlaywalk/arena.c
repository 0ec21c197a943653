/* SPDX-License-Identifier: MIT */
/*
 * arena.c - the tree's memory: inodes, names, symlink targets, xattrs,
 * children arrays and handles are carved out of large chunks and freed
 * all at once.  A container root file system has hundreds of thousands of
 * entries; one malloc per string would cost more in allocator overhead
 * than the strings themselves.
 *
 * Chunks are mmap'ed, not malloc'ed: freeing the model after the layout
 * (walk_tree_release_model()) then gives the memory back to the kernel at
 * once, whatever malloc's heap looks like by then.  The model's chunks
 * are populated when mapped (MAP_POPULATE): one system call instead of a
 * page fault for each of their 256 pages, which cost a tenth of the
 * start-up in faults.  Each walker thread fills an arena of its own;
 * walk_arena_join() hands its chunks over.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "overlaywalk/internal.h"

#define WALK_CHUNK_SIZE (1024 * 1024)	/* bytes mmap'ed per ordinary chunk */

/* A new chunk for at least size bytes, linked into the arena. */
static struct walk_chunk *chunk_new(struct walk_arena *a, size_t size)
{
	size_t hdr = offsetof(struct walk_chunk, data), len;
	struct walk_chunk *c;
	void *p;

	if (size > SIZE_MAX - hdr - 4095)
		return NULL;
	len = size + hdr <= WALK_CHUNK_SIZE / 4 ? WALK_CHUNK_SIZE : (size + hdr + 4095) & ~(size_t)4095;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
		 (a->populate ? MAP_POPULATE : 0), -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	c = p;
	c->used = 0;
	c->size = len - hdr;
	c->map_len = len;
	if (len != WALK_CHUNK_SIZE && a->chunks) {
		/* A big one-off: keep filling the current chunk. */
		c->next = a->chunks->next;
		a->chunks->next = c;
	} else {
		c->next = a->chunks;
		a->chunks = c;
	}
	return c;
}

/* size bytes aligned to align (a power of two, at most 16), zeroed. */
static void *arena_alloc(struct walk_arena *a, size_t size, size_t align)
{
	struct walk_chunk *c = a->chunks;
	size_t start = 0;
	void *p;

	if (c)
		start = (c->used + align - 1) & ~(align - 1);
	if (!c || start > c->size || c->size - start < size) {
		c = chunk_new(a, size);
		if (!c)
			return NULL;
		start = 0;
	}
	p = c->data + start;
	c->used = start + size;
	return p;	/* fresh mmap'ed memory is zero, and never reused */
}

void *walk_arena_alloc(struct walk_arena *a, size_t size)
{
	return arena_alloc(a, size, 16);
}

void *walk_arena_alloc8(struct walk_arena *a, size_t size)
{
	return arena_alloc(a, size, 8);
}

char *walk_arena_chars(struct walk_arena *a, size_t n)
{
	return arena_alloc(a, n, 1);	/* strings need no alignment */
}

char *walk_arena_strndup(struct walk_arena *a, const char *s, size_t len)
{
	char *p;

	if (len == SIZE_MAX)
		return NULL;
	p = arena_alloc(a, len + 1, 1);	/* strings need no alignment */
	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void walk_arena_join(struct walk_arena *to, struct walk_arena *from)
{
	struct walk_chunk *last = from->chunks;

	if (!last)
		return;
	while (last->next)
		last = last->next;
	/* from's chunks go behind to's current one, which keeps filling. */
	if (to->chunks) {
		last->next = to->chunks->next;
		to->chunks->next = from->chunks;
	} else {
		to->chunks = from->chunks;
	}
	from->chunks = NULL;
}

void walk_arena_free(struct walk_arena *a)
{
	struct walk_chunk *c = a->chunks;

	while (c) {
		struct walk_chunk *next = c->next;

		munmap(c, c->map_len);
		c = next;
	}
	a->chunks = NULL;
}
