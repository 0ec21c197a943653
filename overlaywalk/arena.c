/* SPDX-License-Identifier: MIT */
/*
 * arena.c - the tree's memory: inodes, names, paths, symlink targets,
 * xattrs and children arrays are carved out of large chunks and freed all
 * at once with the tree.  A container root file system has hundreds of
 * thousands of entries; one malloc per string would cost more in
 * allocator overhead than the strings themselves.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/internal.h"

#define WALK_CHUNK_SIZE (256 * 1024)	/* bytes of data per ordinary chunk */

/* A new chunk for at least size bytes, linked into the arena. */
static struct walk_chunk *chunk_new(struct walk_private *priv, size_t size)
{
	size_t csize = size > WALK_CHUNK_SIZE / 4 ? size : WALK_CHUNK_SIZE;
	struct walk_chunk *c;

	if (csize > SIZE_MAX - sizeof(*c))
		return NULL;
	c = malloc(sizeof(*c) + csize);
	if (!c)
		return NULL;
	c->used = 0;
	c->size = csize;
	if (csize != WALK_CHUNK_SIZE && priv->chunks) {
		/* A big one-off: keep filling the current chunk. */
		c->next = priv->chunks->next;
		priv->chunks->next = c;
	} else {
		c->next = priv->chunks;
		priv->chunks = c;
	}
	return c;
}

/* size bytes aligned to align (a power of two, at most 16), zeroed. */
static void *arena_alloc(struct walk_private *priv, size_t size, size_t align)
{
	struct walk_chunk *c = priv->chunks;
	size_t start = 0;
	void *p;

	if (c)
		start = (c->used + align - 1) & ~(align - 1);
	if (!c || start > c->size || c->size - start < size) {
		c = chunk_new(priv, size);
		if (!c)
			return NULL;
		start = 0;
	}
	p = c->data + start;
	c->used = start + size;
	memset(p, 0, size);
	return p;
}

/*
 * Returns size bytes (zeroed, 16-byte aligned) that live until the tree
 * is freed, or NULL when out of memory.  Requests larger than a quarter
 * chunk get a chunk of their own so little space is wasted.
 */
void *walk_arena_alloc(struct walk_private *priv, size_t size)
{
	return arena_alloc(priv, size, 16);
}

/* Copies len bytes of s and a NUL into the arena; NULL when out of memory. */
char *walk_arena_strndup(struct walk_private *priv, const char *s, size_t len)
{
	char *p;

	if (len == SIZE_MAX)
		return NULL;
	p = arena_alloc(priv, len + 1, 1);	/* strings need no alignment */
	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Frees every chunk; the arena is empty afterwards. */
void walk_arena_free(struct walk_private *priv)
{
	struct walk_chunk *c = priv->chunks;

	while (c) {
		struct walk_chunk *next = c->next;

		free(c);
		c = next;
	}
	priv->chunks = NULL;
}
