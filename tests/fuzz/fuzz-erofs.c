/* SPDX-License-Identifier: MIT */
/*
 * fuzz-erofs.c - the EROFS builder (erofs_build) fed tree models decoded
 * from the input (tree.c: names of any bytes but '/' and NUL, deep and
 * wide directories, hard links, many and large xattrs, files up to the
 * format's limits, sparse files), with every block size and option.
 *
 * Invariants: a tree the format can hold builds (erofs_check_entry() is
 * the walk's filter: what passes it must build), one it cannot hold
 * fails with a documented error; the region map is sorted, gap-free and
 * inside its sources (map_check); the image parses and matches the tree
 * (check_erofs: superblock, inodes, xattrs, directories with the kernel's
 * lookup, file bytes); and building again gives the same image.
 *
 * Input: an options byte (block size 2^(9..16), inline tails,
 * SOURCE_DATE_EPOCH, volume name, whether the tree may be invalid), then
 * the tree (tree.c).  Seeds: corpus/erofs/.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/erofs.h"
#include "overlaywalk/source.h"
#include "tests/fuzz/fuzz.h"

/* The walk's own filter, applied to every entry of the decoded tree. */
static bool walk_would_take(const struct walk_tree *tree, struct erofs_opts *o,
			    const char **what)
{
	for (size_t i = 0; i < tree->ninodes; i++) {
		const struct walk_inode *wi = tree->inodes[i];
		if (wi == tree->root && erofs_check_entry(o, wi, "", 0, what) < 0)
			return false;
		for (size_t k = 0; S_ISDIR(wi->mode) && k < wi->nchildren; k++) {
			const struct walk_dentry *de = &wi->children[k];
			/* "" is the root's name only: no directory entry has it. */
			if (de->name_len == 0 ||
			    erofs_check_entry(o, de->inode, de->name, de->name_len, what) < 0)
				return false;
		}
	}
	return true;
}

/* Two builds of one tree must give the same regions and bytes. */
static void check_same(const struct region_map *a, const struct region_map *b)
{
	FZ_CHECK(a->size == b->size && a->nregions == b->nregions &&
		 a->nsources == b->nsources, "two builds of one tree differ in shape");
	for (size_t i = 0; i < a->nregions; i++) {
		const struct region *x = &a->regions[i], *y = &b->regions[i];
		FZ_CHECK(x->start == y->start && x->len == y->len && x->type == y->type,
			 "two builds differ at region %zu", i);
		if (x->type == REGION_MEM)
			FZ_CHECK(!memcmp(x->mem, y->mem, x->len), "two builds differ in "
				 "the metadata at %llu", (unsigned long long)x->start);
		if (x->type == REGION_FILE)
			FZ_CHECK(x->source == y->source && x->offset == y->offset, "two builds differ in "
				 "the file regions at %llu", (unsigned long long)x->start);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	struct erofs_opts o;
	char label[20];
	uint8_t b = fz_u8(&f);

	erofs_opts_default(&o);
	o.blkszbits = b & 8 ? 12 : 9 + (b & 7);
	o.inline_file_tails = !(b & 0x10);
	if (b & 0x20) {
		o.build_time_set = true;
		o.build_time = (int64_t)(fz_u64(&f) >> 1);
	}
	if (b & 0x40) {
		size_t n = fz_u8(&f) % 17;	/* 16: one too many */
		fz_bytes(&f, label, n);
		label[n] = '\0';
		o.volume_name = label;
	}
	struct tree_limits lim = {
		.max_inodes = 3000, .max_depth = 600,
		.max_file_size = 1ULL << 50, .max_total_size = 1ULL << 53,
		.max_data = 1 << 20, .max_xattrs = 300, .invalid = b & 0x80,
	};
	struct fake_tree *t = fake_tree_decode(&f, &lim);
	if (getenv("FUZZ_TRACE"))
		fake_tree_dump(t);
	uint64_t sample_seed = fz_mix(size);
	for (size_t i = 0; i < size; i += 64)
		sample_seed = fz_mix(sample_seed ^ data[i]);

	/*
	 * What the walk's filter, the builder and the decoder must agree on:
	 * the decoder knows what it broke; file sizes depend on the block
	 * size (§1: 2^32 blocks).
	 */
	uint64_t data_blocks = 0, bs = 1u << o.blkszbits;
	bool sizes_ok = true;
	for (size_t i = 0; i < t->tree.ninodes; i++) {
		const struct walk_inode *wi = t->tree.inodes[i];
		if (S_ISREG(wi->mode) || S_ISLNK(wi->mode))
			data_blocks += (wi->size + bs - 1) / bs;
		if (S_ISREG(wi->mode) && wi->size >> o.blkszbits >= 1ULL << 32)
			sizes_ok = false;
	}
	const char *why = NULL;
	bool entries_ok = !t->bad_entry && sizes_ok;
	bool filter_ok = walk_would_take(&t->tree, &o, &why);
	FZ_CHECK(entries_ok == filter_ok, "erofs_check_entry() %s an entry the format %s (%s)",
		 filter_ok ? "takes" : "refuses", entries_ok ? "can hold" : "cannot hold",
		 why ? why : "-");
	bool holdable = entries_ok && !t->bad_shape &&
			(!o.volume_name || strlen(o.volume_name) <= 15);

	struct region_map map;
	char *errpath = NULL;
	const char *what = NULL;
	region_map_init(&map);
	int r = erofs_build(&t->tree, &o, &map, &errpath, &what);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "erofs_build: %d (%s%s%s), image %llu bytes\n", r,
			what ? what : "ok", errpath ? ": " : "", errpath ? errpath : "",
			(unsigned long long)map.size);
	if (r < 0) {
		FZ_CHECK(r == -EINVAL || r == -ENAMETOOLONG || r == -E2BIG ||
			 r == -EOPNOTSUPP || r == -EFBIG, "erofs_build: undocumented error %d", r);
		/* Only an image past 2^32 blocks may fail for a holdable tree. */
		FZ_CHECK(!holdable || (r == -EFBIG && data_blocks + 4 * t->tree.ninodes >=
						       (1ULL << 32) - (1ULL << 24)),
			 "erofs_build refused a tree the walk accepts: %s: '%s' (%d)",
			 what ? what : "?", errpath ? errpath : "", r);
		FZ_CHECK(what, "erofs_build failed without saying why");
	} else {
		FZ_CHECK(holdable, "erofs_build took a tree it cannot hold (%s)",
			 why ? why : t->bad_shape ? "repeated name or directory" : "label");
		map_check(&map);
		struct fz sample = { NULL, 0 };
		uint8_t sbuf[256];
		for (size_t i = 0; i < sizeof(sbuf); i++)
			sbuf[i] = (uint8_t)fz_mix(sample_seed + i);
		sample.p = sbuf;
		sample.n = sizeof(sbuf);
		check_erofs(&map, t, &o, &sample);

		/* Reproducible: for some inputs, build again and compare. */
		if (sample_seed % 4 == 0) {
			struct region_map again;
			region_map_init(&again);
			FZ_CHECK(erofs_build(&t->tree, &o, &again, NULL, NULL) == 0,
				 "second build failed");
			check_same(&map, &again);
			region_map_free(&again);
		}
	}
	free(errpath);
	region_map_free(&map);
	fake_tree_free(t);
	return 0;
}
