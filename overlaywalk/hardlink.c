/* SPDX-License-Identifier: MIT */
/*
 * hardlink.c - finds the inode already recorded for a (layer, dev, ino)
 * triple, so that hard links become several dentries of one walk_inode.
 * The layer is part of the key: names of two layers never form one image
 * inode, even where deduplication (containers-storage's use_hard_links)
 * made them share a disk inode (overlay-layers.md §3.7).  Only
 * non-directories with st_nlink > 1 go in, which keeps the table small; an
 * open-addressing table with linear probing, at most half full, keeps a
 * walk of a million entries linear.
 */
#include <errno.h>
#include <stdlib.h>

#include "overlaywalk/internal.h"

/* A 64-bit mix (splitmix64's finalizer) of the identity. */
static size_t link_hash(uint32_t layer, uint64_t dev, uint64_t ino)
{
	uint64_t x = ino ^ (dev * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)layer << 40);

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (size_t)x;
}

struct walk_inode *walk_links_find(const struct walk_links *links, uint32_t layer,
				   uint64_t dev, uint64_t ino)
{
	size_t mask, i;

	if (!links->cap)
		return NULL;
	mask = links->cap - 1;
	for (i = link_hash(layer, dev, ino) & mask; links->slots[i]; i = (i + 1) & mask) {
		struct walk_inode *p = links->slots[i];

		if (p->dev == dev && p->ino == ino && p->layer == layer)
			return p;
	}
	return NULL;
}

static void links_insert(struct walk_inode **slots, size_t cap,
			 struct walk_inode *inode)
{
	size_t mask = cap - 1, i;

	for (i = link_hash(inode->layer, inode->dev, inode->ino) & mask; slots[i];
	     i = (i + 1) & mask)
		;
	slots[i] = inode;
}

int walk_links_add(struct walk_links *links, struct walk_inode *inode)
{
	if (2 * (links->n + 1) > links->cap) {
		size_t cap = links->cap ? 2 * links->cap : 256;
		struct walk_inode **slots = calloc(cap, sizeof(*slots));

		if (!slots)
			return -ENOMEM;
		for (size_t i = 0; i < links->cap; i++)
			if (links->slots[i])
				links_insert(slots, cap, links->slots[i]);
		free(links->slots);
		links->slots = slots;
		links->cap = cap;
	}
	links_insert(links->slots, links->cap, inode);
	links->n++;
	return 0;
}

void walk_links_free(struct walk_links *links)
{
	free(links->slots);
	links->slots = NULL;
	links->cap = links->n = 0;
}
