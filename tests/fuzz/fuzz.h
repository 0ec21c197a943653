/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what the libFuzzer harnesses under tests/fuzz/ share: a reader
 * that decodes values from the fuzz input (zeros once it runs out, so every
 * input decodes to something), FZ_CHECK for invariants (a failed one prints
 * why and aborts, which libFuzzer reports as a crash with the input saved),
 * and the helper modules' interfaces:
 *
 *   tree.c       tree models decoded from the input (struct walk_tree in
 *                memory, no file system) and the fake file contents their
 *                regular files have; walk_open_data() for those trees
 *   mapcheck.c   region map invariants and an independent map reader
 *   check-erofs.c, check-fat.c, check-gpt.c   image checkers
 *
 * Harness convention (TEAM.md): tests/fuzz/fuzz-NAME.c defines
 * LLVMFuzzerTestOneInput(); its seed corpus is tests/fuzz/corpus/NAME/.
 */
#ifndef EROFS_NBD_FUZZ_H
#define EROFS_NBD_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/source.h"
#include "overlaywalk/walk.h"
#include "server/cleanup.h"
#include "server/region.h"

/* libFuzzer's entry points (the harness defines the first, maybe both). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ------------------------------------------------------------------ */
/* Decoding the input                                                  */
/* ------------------------------------------------------------------ */

struct fz {
	const uint8_t *p;
	size_t n;		/* bytes left */
};

static inline uint8_t fz_u8(struct fz *f)
{
	if (f->n == 0)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t v = fz_u8(f);
	return (uint16_t)(v | fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t v = fz_u16(f);
	return v | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t v = fz_u32(f);
	return v | (uint64_t)fz_u32(f) << 32;
}

static inline bool fz_bool(struct fz *f)
{
	return fz_u8(f) & 1;
}

/* A value in [0, n) (n > 0), from one byte when n <= 256. */
static inline uint32_t fz_below(struct fz *f, uint32_t n)
{
	return (n <= 256 ? fz_u8(f) : fz_u32(f)) % n;
}

/* Copies up to len bytes of input to out, zero-filling the rest. */
static inline void fz_bytes(struct fz *f, void *out, size_t len)
{
	uint8_t *o = out;
	for (size_t i = 0; i < len; i++)
		o[i] = fz_u8(f);
}

/*
 * Splits the input at its first n - 1 NUL bytes into the strings s[0..n)
 * (missing ones are ""), which point into a NUL-padded copy: returns it
 * (free it after), or NULL if out of memory.
 */
static inline char *fz_strings(const uint8_t *data, size_t size, char **s, size_t n)
{
	char *buf = malloc(size + n);
	size_t k = 0;

	if (!buf)
		return NULL;
	memcpy(buf, data, size);
	memset(buf + size, 0, n);
	s[0] = buf;
	for (size_t i = 0; i < size + n - 1 && k + 1 < n; i++)
		if (buf[i] == '\0')
			s[++k] = buf + i + 1;
	while (k + 1 < n)
		s[++k] = buf + size + n - 1;	/* "" */
	return buf;
}

/* ------------------------------------------------------------------ */
/* Invariants                                                          */
/* ------------------------------------------------------------------ */

void fz_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));

#define FZ_FAIL(...) fz_fail(__FILE__, __LINE__, __VA_ARGS__)
#define FZ_CHECK(cond, ...) do { if (!(cond)) FZ_FAIL(__VA_ARGS__); } while (0)

/*
 * memcmp() for the harnesses' own hot loops (sorting names, lookups):
 * libFuzzer intercepts every memcmp() call to learn from it, which costs
 * more than the comparison; the product's calls should stay the ones it
 * learns from.
 */
static inline int fz_memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

/* A deterministic 64-bit mix (splitmix64's finaliser). */
static inline uint64_t fz_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Converts NUL-terminated UTF-8 to UTF-16 units (surrogate pairs past the
 * BMP) in out.  Strict: overlong forms, surrogates and code points past
 * U+10FFFF are invalid.  Returns the unit count, -1 for invalid UTF-8, or
 * cap + 1 when out is too small.  (utf16.c)
 */
int fz_utf16(const char *s, uint16_t *out, size_t cap);

/* ------------------------------------------------------------------ */
/* tree.c: tree models                                                 */
/* ------------------------------------------------------------------ */

/* What a regular file of a fake tree holds. */
enum fake_kind {
	FAKE_PATTERN,		/* byte at x: never 0, from the seed and x */
	FAKE_PE_X86_64,		/* a PE header (machine 0x8664), then pattern */
	FAKE_PE_ARM64,		/* a PE header (machine 0xaa64), then pattern */
};

/* One data extent of a sparse file: bytes outside every extent are 0. */
struct fake_extent {
	uint64_t off, len;
};

/* A walk_inode of a fake tree with what its data is. */
struct fake_inode {
	struct walk_inode wi;	/* first: container_of by cast */
	const char *path;	/* from the root ("" for it), for messages */
	uint64_t seed;
	enum fake_kind kind;
	bool sparse;		/* data only inside extents[] */
	struct fake_extent *extents;	/* sorted, disjoint, inside the size */
	size_t nextents;
	int open_err;		/* walk_open_data() fails with this (-errno), or 0 */
};

/* What tree_decode() may put in a tree. */
struct tree_limits {
	size_t max_inodes;	/* inodes, the root included */
	size_t max_depth;	/* directories below the root */
	uint64_t max_file_size;	/* bytes, per regular file */
	uint64_t max_total_size;	/* bytes, all regular files together */
	uint64_t max_data;	/* bytes of sparse data extents, all files */
	size_t max_xattrs;	/* per inode */
	bool fat_names;		/* mostly names FAT takes (letters, digits, ._-) */
	bool invalid;		/* also entries no format can hold (empty or
				 * over-long names, '/', duplicates, bad xattrs) */
};

/*
 * A tree model decoded from the input: tree->inodes in the walk's order
 * (root first, depth first, children sorted bytewise), hard links sharing
 * inodes, every inode a struct fake_inode.  What the decoder knows it put
 * in that EROFS cannot hold (tree.c decides this on its own, from the
 * format's rules):
 *   bad_entry  an entry the walk's erofs_check_entry() filter must refuse:
 *              a bad name, xattr, symlink, device number, type or time
 *              (file sizes are left to the harness: they depend on the
 *              block size);
 *   bad_shape  a shape no walk produces: a name twice in a directory, a
 *              directory linked twice.
 */
struct fake_tree {
	struct walk_tree tree;
	bool bad_entry, bad_shape;
	const char *bad_why;	/* the first bad entry's problem */
	/* Everything allocated for the tree, freed by fake_tree_free(). */
	void **allocs;
	size_t nallocs, allocs_cap;
};

/* Decodes a tree from f within lim.  Returns NULL only when out of memory. */
struct fake_tree *fake_tree_decode(struct fz *f, const struct tree_limits *lim);
void fake_tree_free(struct fake_tree *t);

/* Prints the tree on stderr (FUZZ_TRACE=1 in the harnesses). */
void fake_tree_dump(const struct fake_tree *t);

static inline struct fake_inode *fake_of(const struct walk_inode *wi)
{
	return (struct fake_inode *)wi;
}

/* The byte at offset off of the fake file fi (off < its size). */
uint8_t fake_byte(const struct fake_inode *fi, uint64_t off);

/* Fills buf with len bytes of fi from off (off + len <= its size). */
void fake_read(const struct fake_inode *fi, uint64_t off, void *buf, size_t len);

/* ------------------------------------------------------------------ */
/* mapcheck.c: region maps                                             */
/* ------------------------------------------------------------------ */

/*
 * Checks a map's invariants (region.h): regions sorted and gap-free from
 * 0 to map->size, lengths > 0, every FILE region inside its source's
 * recorded size, every MEM region readable to its end (ASan checks), and
 * every source's size equal to its fake file's.  Fails via FZ_CHECK.
 */
void map_check(const struct region_map *map);

/*
 * Reads len bytes at off of map into buf with a lookup of its own (not
 * region_find), file regions from their fake files (every source must be
 * walk_region_source() of a fake tree: its opaque is the inode), sub-maps
 * read through.  The range must lie inside the map.
 */
void map_read(const struct region_map *map, uint64_t off, void *buf, size_t len);

/*
 * A region map decoded from the input, for harnesses that need a map but
 * no tree: up to 8 regions of zeros, memory (exactly as long as the
 * region: ASan sees overreads) and fake files, each from a byte to 2^36
 * bytes long.  The pool owns what the map borrows; free it after the map.
 */
struct map_pool {
	struct fake_inode files[8];
	size_t nfiles;
	void *mem[8];
	size_t nmem;
	struct walk_tree tree;
};
void map_decode(struct fz *f, struct region_map *map, struct map_pool *pool);
void map_pool_free(struct map_pool *pool);

/* True if map's bytes [off, off + len) are all zero. */
bool map_is_zero(const struct region_map *map, uint64_t off, uint64_t len);

/* ------------------------------------------------------------------ */
/* Image checkers                                                      */
/* ------------------------------------------------------------------ */

struct erofs_opts;

/*
 * Checks the EROFS image in map against the tree it was built from, with
 * the rules of tests/erofs_reader.py and the kernel's lookup as
 * erofs-format.md describes it (§2-§9); samples read from the image's
 * files must equal the fake files.  Fails via FZ_CHECK.
 */
void check_erofs(const struct region_map *map, const struct fake_tree *t,
		 const struct erofs_opts *opts, struct fz *sample);

struct fat_node;
/*
 * Checks the FAT32 volume at byte base of map (size bytes) against the
 * tree root it was built from, or only its structure when root is NULL
 * (fat32-gpt.md Part A): BPB, FSInfo, backup sectors, both FATs, chains,
 * directories with long and short names, and sampled file bytes.  label
 * and volume_id are what fat_opts asked for.  Fails via FZ_CHECK.
 */
void check_fat(const struct region_map *map, uint64_t base, uint64_t size,
	       const struct fat_node *root, const char *label, uint32_t volume_id);

/*
 * Reads the first max bytes (at most) of a file of the FAT volume at byte
 * base of map, by its path ("loader/loader.conf", case-insensitive), NUL
 * terminated; *ret_size is the file's size.  NULL if missing.  Caller
 * frees.
 */
char *fat_read_file(const struct region_map *map, uint64_t base, const char *path,
		    size_t max, uint64_t *ret_size);

struct gpt_partition;
struct gpt_guid;
/*
 * Checks the GPT disk in map built from parts (fat32-gpt.md Part B): the
 * protective MBR, both headers and entry arrays with their CRC32s,
 * partition bounds and alignment, names, and that each partition holds
 * its map's bytes.  Fails via FZ_CHECK.
 */
void check_gpt(const struct region_map *disk, const struct gpt_partition *parts,
	       size_t nparts, const struct gpt_guid *disk_guid, struct fz *sample);

#endif
