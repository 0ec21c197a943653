/* SPDX-License-Identifier: MIT */
/*
 * check-erofs.c - checks an EROFS image (a region map) against the tree it
 * was built from, reading it the way tests/erofs_reader.py and the kernel
 * do, with the rules of shared/docs/erofs-format.md (section numbers
 * below).  It trusts nothing of erofs/: the superblock, every inode, xattr
 * area and directory block are parsed from the image's bytes.
 *
 *   §2   magic, block size, features, reserved bytes, CRC32C, label, counts
 *   §5   i_format, reserved fields, mode, owner, times (compact inodes show
 *        the build time), nlink, size, rdev
 *   §6   FLAT_PLAIN / FLAT_INLINE extents inside the image, tails inside
 *        their block, zeros after i_size; no two structures share bytes
 *   §7   xattr areas parsed and equal to the tree's, shared entries, the
 *        bloom filter never hides a name
 *   §8   directory blocks: nameoff, packed names, zero fill, global sort,
 *        "." and "..", file types, names equal to the tree's, and every
 *        name found by the kernel's lookup (block then dirent bisection)
 *   §9   symlink targets; sampled bytes of regular files equal the files
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "erofs/erofs.h"
#include "server/byteorder.h"
#include "tests/fuzz/fuzz.h"

#define SB_OFF		1024
#define ISLOT		32

struct span {
	uint64_t start, len;
	const char *what;
	uint64_t nid;
};

struct einode {
	uint64_t nid, off;
	const struct walk_inode *wi;	/* the tree's inode */
	unsigned int isize, xattr_size, layout;
	bool extended;
	uint16_t mode;
	uint32_t nlink, uid, gid, i_u;
	uint64_t size;
};

struct ck {
	const struct region_map *map;
	const struct fake_tree *t;
	const struct erofs_opts *opts;
	struct fz *sample;
	uint32_t bs;
	uint64_t size;
	uint32_t compat, meta_blkaddr, xattr_blkaddr;
	int64_t build_time;
	uint32_t build_nsec;
	/* nid of each tree inode (by tree_index()), 0 = not seen. */
	uint64_t *nid_of;
	uint64_t max_ino;
	/* Every structure's bytes, to find overlaps. */
	struct span *spans;
	size_t nspans, spans_cap;
	size_t nvisited;
};

/* ------------------------------------------------------------------ */

static void rd(const struct ck *c, uint64_t off, void *buf, size_t len, const char *what)
{
	FZ_CHECK(off <= c->size && len <= c->size - off,
		 "%s: %zu bytes at %llu past the image end (%llu)", what, len,
		 (unsigned long long)off, (unsigned long long)c->size);
	map_read(c->map, off, buf, len);
}

static void add_span(struct ck *c, uint64_t start, uint64_t len, const char *what,
		     uint64_t nid)
{
	if (len == 0)
		return;
	if (c->nspans == c->spans_cap) {
		c->spans_cap = c->spans_cap ? 2 * c->spans_cap : 256;
		c->spans = realloc(c->spans, c->spans_cap * sizeof(*c->spans));
		FZ_CHECK(c->spans, "out of memory");
	}
	c->spans[c->nspans++] = (struct span){ start, len, what, nid };
}

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->len < y->len ? -1 : x->len > y->len;
}

/* §1: nothing the image references may share bytes with anything else. */
static void check_spans(struct ck *c)
{
	qsort(c->spans, c->nspans, sizeof(*c->spans), span_cmp);
	for (size_t i = 1; i < c->nspans; i++) {
		const struct span *a = &c->spans[i - 1], *b = &c->spans[i];
		if (a->start == b->start && a->len == b->len && a->what == b->what &&
		    !strcmp(a->what, "shared xattr"))
			continue;	/* one shared entry, referenced twice */
		FZ_CHECK(b->start >= a->start + a->len,
			 "%s of nid %llu [%llu, +%llu) overlaps %s of nid %llu [%llu, +%llu)",
			 b->what, (unsigned long long)b->nid, (unsigned long long)b->start,
			 (unsigned long long)b->len, a->what, (unsigned long long)a->nid,
			 (unsigned long long)a->start, (unsigned long long)a->len);
	}
}

/* CRC32C (Castagnoli, reflected 0x82F63B78), no final XOR: §2.2. */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t len)
{
	static uint32_t table[256];
	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;
			for (int k = 0; k < 8; k++)
				v = v & 1 ? (v >> 1) ^ 0x82F63B78u : v >> 1;
			table[i] = v;
		}
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* Our own numbering of the tree's inodes (tree.c: ino = 1, 2, ...). */
static size_t tree_index(const struct ck *c, const struct walk_inode *wi)
{
	FZ_CHECK(wi->ino >= 1 && wi->ino <= c->max_ino, "inode number %llu",
		 (unsigned long long)wi->ino);
	return (size_t)(wi->ino - 1);
}

/* ------------------------------------------------------------------ */
/* §2 superblock                                                       */
/* ------------------------------------------------------------------ */

static uint64_t check_super(struct ck *c)
{
	uint8_t sb[128];
	rd(c, SB_OFF, sb, sizeof(sb), "superblock");

	FZ_CHECK(get_le32(sb) == 0xE0F5E1E2u, "superblock magic 0x%08x", get_le32(sb));
	FZ_CHECK(sb[12] == c->opts->blkszbits, "blkszbits %u, asked for %u", sb[12],
		 c->opts->blkszbits);
	FZ_CHECK(sb[13] == 0, "sb_extslots %u", sb[13]);
	c->compat = get_le32(sb + 8);
	FZ_CHECK(!(c->compat & ~7u), "unknown compat features 0x%x", c->compat);
	FZ_CHECK(get_le32(sb + 80) == 0, "incompat features 0x%x: no 5.14 kernel mounts it",
		 get_le32(sb + 80));
	for (int i = 84; i < 128; i++)
		FZ_CHECK(sb[i] == 0, "superblock byte %d (reserved, dirblkbits, prefixes, "
			 "packed_nid, filter_reserved, rootnid_8b) is 0x%02x", i, sb[i]);
	FZ_CHECK(memchr(sb + 64, 0, 16), "volume name without a NUL (kernels up to 6.12)");
	const char *label = c->opts->volume_name ? c->opts->volume_name : "";
	FZ_CHECK(!strcmp((const char *)sb + 64, label), "volume name '%.16s', asked for '%s'",
		 sb + 64, label);
	uint8_t zero_uuid[16] = { 0 };
	FZ_CHECK(memcmp(sb + 48, zero_uuid, 16), "all-zero UUID");

	c->build_time = (int64_t)get_le64(sb + 24);
	c->build_nsec = get_le32(sb + 32);
	FZ_CHECK(c->build_nsec <= 999999999, "build_time_nsec %u", c->build_nsec);
	if (c->opts->build_time_set)
		FZ_CHECK(c->build_time == c->opts->build_time && c->build_nsec == 0,
			 "build time %lld, SOURCE_DATE_EPOCH %lld", (long long)c->build_time,
			 (long long)c->opts->build_time);
	FZ_CHECK(get_le64(sb + 16) == c->t->tree.ninodes, "inos %llu, the tree has %zu",
		 (unsigned long long)get_le64(sb + 16), c->t->tree.ninodes);
	FZ_CHECK(c->size % c->bs == 0 && c->size >= 4096,
		 "image of %llu bytes: not whole blocks of %u", (unsigned long long)c->size,
		 c->bs);
	FZ_CHECK(get_le32(sb + 36) == c->size / c->bs, "blocks %u, image has %llu",
		 get_le32(sb + 36), (unsigned long long)(c->size / c->bs));
	c->meta_blkaddr = get_le32(sb + 40);
	c->xattr_blkaddr = get_le32(sb + 44);

	if (c->compat & 1) {
		/* §2.2: the rest of block 0 (bs bytes when bs <= 1024), checksum as 0. */
		size_t n = c->bs > SB_OFF ? c->bs - SB_OFF : c->bs;
		uint8_t *blk = malloc(n);
		FZ_CHECK(blk, "out of memory");
		rd(c, SB_OFF, blk, n, "checksummed range");
		memset(blk + 4, 0, 4);
		uint32_t want = crc32c(0xFFFFFFFFu, blk, n);
		FZ_CHECK(want == get_le32(sb + 4), "superblock checksum 0x%08x, computed 0x%08x",
			 get_le32(sb + 4), want);
		free(blk);
	}
	add_span(c, SB_OFF, 128, "superblock", 0);
	return get_le16(sb + 14);
}

/* ------------------------------------------------------------------ */
/* §5 inodes                                                           */
/* ------------------------------------------------------------------ */

static const uint8_t ft_of_mode[16] = {
	[S_IFREG >> 12] = 1, [S_IFDIR >> 12] = 2, [S_IFCHR >> 12] = 3,
	[S_IFBLK >> 12] = 4, [S_IFIFO >> 12] = 5, [S_IFSOCK >> 12] = 6,
	[S_IFLNK >> 12] = 7,
};

static void read_inode(struct ck *c, uint64_t nid, const struct walk_inode *wi,
		       struct einode *ei)
{
	uint8_t raw[64];
	uint64_t off = (uint64_t)c->meta_blkaddr * c->bs + nid * ISLOT;

	memset(ei, 0, sizeof(*ei));
	ei->nid = nid;
	ei->off = off;
	ei->wi = wi;
	rd(c, off, raw, 32, "inode");
	uint16_t fmt = get_le16(raw);
	FZ_CHECK(!(fmt & ~0xfu), "nid %llu: i_format 0x%x has bits a 5.14 kernel rejects",
		 (unsigned long long)nid, fmt);
	ei->extended = fmt & 1;
	ei->layout = (fmt >> 1) & 7;
	FZ_CHECK(ei->layout == 0 || ei->layout == 2, "nid %llu: data layout %u",
		 (unsigned long long)nid, ei->layout);
	uint16_t icount = get_le16(raw + 2);
	FZ_CHECK(icount != 1, "nid %llu: i_xattr_icount 1 (§7.1: rejected)",
		 (unsigned long long)nid);
	ei->xattr_size = icount ? 12 + 4 * (icount - 1) : 0;
	ei->mode = get_le16(raw + 4);
	int64_t mtime;
	uint32_t nsec;
	if (ei->extended) {
		rd(c, off, raw, 64, "extended inode");
		FZ_CHECK(get_le16(raw + 6) == 0, "nid %llu: extended i_nb not 0 (6.15+ reads "
			 "it as startblk_hi)", (unsigned long long)nid);
		for (int i = 48; i < 64; i++)
			FZ_CHECK(raw[i] == 0, "nid %llu: extended reserved byte %d",
				 (unsigned long long)nid, i);
		ei->isize = 64;
		ei->size = get_le64(raw + 8);
		ei->i_u = get_le32(raw + 16);
		ei->uid = get_le32(raw + 24);
		ei->gid = get_le32(raw + 28);
		mtime = (int64_t)get_le64(raw + 32);
		nsec = get_le32(raw + 40);
		ei->nlink = get_le32(raw + 44);
		FZ_CHECK(!(ei->size >> 63), "nid %llu: negative i_size", (unsigned long long)nid);
	} else {
		ei->isize = 32;
		ei->nlink = get_le16(raw + 6);
		ei->size = get_le32(raw + 8);
		FZ_CHECK(get_le32(raw + 12) == 0, "nid %llu: compact i_mtime not 0 (§5.5: "
			 "6.15+ adds it to the epoch)", (unsigned long long)nid);
		ei->i_u = get_le32(raw + 16);
		ei->uid = get_le16(raw + 24);
		ei->gid = get_le16(raw + 26);
		FZ_CHECK(get_le32(raw + 28) == 0, "nid %llu: compact reserved bytes",
			 (unsigned long long)nid);
		mtime = c->build_time;
		nsec = c->build_nsec;
	}
	FZ_CHECK(ft_of_mode[ei->mode >> 12], "nid %llu: bogus i_mode 0%o",
		 (unsigned long long)nid, ei->mode);

	/* The tree's inode, as a client of the mounted image would see it. */
	const char *path = fake_of(wi)->path;
	FZ_CHECK(ei->mode == (wi->mode & 0xffff), "'%s': mode 0%o, tree 0%o", path, ei->mode,
		 wi->mode);
	FZ_CHECK(ei->uid == wi->uid && ei->gid == wi->gid, "'%s': owner %u:%u, tree %u:%u",
		 path, ei->uid, ei->gid, wi->uid, wi->gid);
	FZ_CHECK(mtime == wi->mtime_sec && nsec == wi->mtime_nsec,
		 "'%s': mtime %lld.%09u, tree %lld.%09u", path, (long long)mtime, nsec,
		 (long long)wi->mtime_sec, wi->mtime_nsec);
	FZ_CHECK(ei->nlink == wi->nlink, "'%s': nlink %u, tree %u", path, ei->nlink, wi->nlink);
	switch (wi->mode & S_IFMT) {
	case S_IFREG:
	case S_IFLNK:
		FZ_CHECK(ei->size == wi->size, "'%s': i_size %llu, tree %llu", path,
			 (unsigned long long)ei->size, (unsigned long long)wi->size);
		break;
	case S_IFDIR:
		FZ_CHECK(ei->size > 0, "'%s': empty directory data", path);
		break;
	case S_IFCHR:
	case S_IFBLK: {
		/* §5.4: minor bits 0-7, major 8-19, minor 8-19 at 20-31. */
		uint32_t major = (ei->i_u >> 8) & 0xfff;
		uint32_t minor = (ei->i_u & 0xff) | ((ei->i_u >> 12) & 0xfff00);
		FZ_CHECK(major == wi->rdev_major && minor == wi->rdev_minor,
			 "'%s': rdev %u:%u, tree %u:%u", path, major, minor, wi->rdev_major,
			 wi->rdev_minor);
	}
		__attribute__((fallthrough));
	default:
		FZ_CHECK(ei->size == 0 && ei->layout == 0, "'%s': special file with data", path);
	}

	/* The record must not cover the superblock (§4). */
	uint64_t rec = ei->isize + (uint64_t)ei->xattr_size;
	FZ_CHECK(off >= SB_OFF + 128 || off + rec <= SB_OFF, "nid %llu overlaps the superblock",
		 (unsigned long long)nid);
}

/* Where file byte x lives: the inline tail or the blocks (§6). */
static uint64_t data_off(const struct ck *c, const struct einode *ei, uint64_t x)
{
	uint64_t nblocks = (ei->size + c->bs - 1) / c->bs;
	if (ei->layout == 2 && x >= (nblocks - 1) * c->bs)
		return ei->off + ei->isize + ei->xattr_size + (x - (nblocks - 1) * c->bs);
	return (uint64_t)ei->i_u * c->bs + x;
}

/* Checks ei's data layout (§6) and records its bytes as spans. */
static void check_layout(struct ck *c, const struct einode *ei)
{
	uint64_t nblocks = (ei->size + c->bs - 1) / c->bs;
	uint64_t tail = 0, rec = ei->isize + (uint64_t)ei->xattr_size;
	const char *path = fake_of(ei->wi)->path;

	if (ei->layout == 2 && ei->size) {
		tail = ei->size - (nblocks - 1) * c->bs;
		uint64_t tail_off = ei->off + rec;
		FZ_CHECK(tail_off % c->bs + tail <= c->bs,
			 "'%s': inline tail of %llu bytes at %llu crosses a block (§6.2)", path,
			 (unsigned long long)tail, (unsigned long long)tail_off);
		nblocks--;
	}
	add_span(c, ei->off, rec + tail, "inode record", ei->nid);
	FZ_CHECK(ei->off + rec + tail <= c->size, "'%s': inode record past the image end", path);
	if (nblocks) {
		uint64_t start = (uint64_t)ei->i_u * c->bs;
		FZ_CHECK(start >= SB_OFF + 128 && start <= c->size &&
			 nblocks <= (c->size - start) / c->bs,
			 "'%s': %llu data blocks at block %u outside the image (%llu bytes)", path,
			 (unsigned long long)nblocks, ei->i_u, (unsigned long long)c->size);
		add_span(c, start, nblocks * c->bs, "data blocks", ei->nid);
		/* §6.1: zeros after i_size in the last block. */
		if (ei->layout == 0 && ei->size % c->bs) {
			uint64_t end = start + ei->size;
			FZ_CHECK(map_is_zero(c->map, end, c->bs - ei->size % c->bs),
				 "'%s': bytes after i_size in its last block are not zero", path);
		}
	} else if (ei->layout == 0 && (S_ISREG(ei->mode) || S_ISDIR(ei->mode) ||
				       S_ISLNK(ei->mode))) {
		FZ_CHECK(ei->size == 0, "'%s': data without blocks", path);
	}
}

/* ------------------------------------------------------------------ */
/* §7 xattrs                                                           */
/* ------------------------------------------------------------------ */

static const char *const xattr_prefix[] = {
	[1] = "user.", [2] = "system.posix_acl_access", [3] = "system.posix_acl_default",
	[4] = "trusted.", [6] = "security.",
};

struct xent {
	char name[300];
	const uint8_t *value;
	size_t value_len;
	uint8_t index;
	const uint8_t *suffix;
	size_t suffix_len;
};

/* Parses one entry at p (avail bytes); returns its padded size. */
static size_t parse_xentry(const uint8_t *p, size_t avail, struct xent *x, const char *path)
{
	FZ_CHECK(avail >= 4, "'%s': xattr entry header past its area", path);
	size_t nl = p[0], vl = get_le16(p + 2);
	x->index = p[1];
	FZ_CHECK(4 + nl + vl <= avail, "'%s': xattr entry past its area (§7.1)", path);
	FZ_CHECK(x->index < ARRAY_SIZE(xattr_prefix) && xattr_prefix[x->index],
		 "'%s': xattr name index %u", path, x->index);
	snprintf(x->name, sizeof(x->name), "%s%.*s", xattr_prefix[x->index], (int)nl,
		 (const char *)p + 4);
	FZ_CHECK(strlen(xattr_prefix[x->index]) + nl == strlen(x->name),
		 "'%s': xattr name with a NUL", path);
	x->suffix = p + 4;
	x->suffix_len = nl;
	x->value = p + 4 + nl;
	x->value_len = vl;
	return (4 + nl + vl + 3) & ~(size_t)3;
}

static void check_xattrs(struct ck *c, const struct einode *ei)
{
	const struct walk_inode *wi = ei->wi;
	const char *path = fake_of(wi)->path;

	if (!ei->xattr_size) {
		FZ_CHECK(wi->nxattrs == 0, "'%s': %u xattrs lost", path, wi->nxattrs);
		return;
	}
	FZ_CHECK(ei->xattr_size >= 16, "'%s': xattr area of %u bytes", path, ei->xattr_size);
	uint8_t *area = malloc(ei->xattr_size);
	FZ_CHECK(area, "out of memory");
	rd(c, ei->off + ei->isize, area, ei->xattr_size, "xattr area");
	uint32_t filter = get_le32(area);
	unsigned int nshared = area[4];
	for (int i = 5; i < 12; i++)
		FZ_CHECK(area[i] == 0, "'%s': xattr header reserved byte", path);
	FZ_CHECK(12 + 4 * nshared <= ei->xattr_size, "'%s': shared ids past the area", path);

	size_t n = 0, cap = wi->nxattrs + 1;
	struct xent *xs = calloc(cap, sizeof(*xs));
	uint8_t **bufs = calloc(nshared + 1, sizeof(*bufs));
	FZ_CHECK(xs && bufs, "out of memory");
	for (unsigned int i = 0; i < nshared; i++) {
		uint32_t id = get_le32(area + 12 + 4 * i);
		uint64_t pos = (uint64_t)c->xattr_blkaddr * c->bs + (uint64_t)id * 4;
		uint8_t hdr[4];
		rd(c, pos, hdr, 4, "shared xattr");
		size_t len = 4 + hdr[0] + get_le16(hdr + 2);
		bufs[i] = malloc(len);
		FZ_CHECK(bufs[i], "out of memory");
		rd(c, pos, bufs[i], len, "shared xattr");
		FZ_CHECK(n < cap, "'%s': more xattrs than the tree has", path);
		parse_xentry(bufs[i], len, &xs[n++], path);
		add_span(c, pos, len, "shared xattr", 0);
	}
	size_t pos = 12 + 4 * (size_t)nshared;
	while (pos < ei->xattr_size) {
		FZ_CHECK(n < cap, "'%s': more xattrs than the tree has", path);
		pos += parse_xentry(area + pos, ei->xattr_size - pos, &xs[n++], path);
	}
	FZ_CHECK(pos == ei->xattr_size, "'%s': xattr area not sized to its entries", path);

	/* The same set as the tree: every name once, every value equal. */
	FZ_CHECK(n == wi->nxattrs, "'%s': %zu xattrs, tree has %u", path, n, wi->nxattrs);
	for (size_t i = 0; i < n; i++) {
		const struct walk_xattr *tx = NULL;
		for (size_t k = 0; k < wi->nxattrs && !tx; k++)
			if (!strcmp(wi->xattrs[k].name, xs[i].name))
				tx = &wi->xattrs[k];
		FZ_CHECK(tx, "'%s': xattr '%s' not in the tree", path, xs[i].name);
		FZ_CHECK(tx->value_len == xs[i].value_len &&
			 (!tx->value_len || !memcmp(tx->value, xs[i].value, tx->value_len)),
			 "'%s': xattr '%s' has another value", path, xs[i].name);
		for (size_t k = 0; k < i; k++)
			FZ_CHECK(strcmp(xs[k].name, xs[i].name), "'%s': xattr '%s' twice", path,
				 xs[i].name);
		/* §7.5: a set bit means absent. */
		if (c->compat & 4) {
			uint32_t bit = XXH32(xs[i].suffix, xs[i].suffix_len,
					     0x25BBE08Fu + xs[i].index) & 31;
			FZ_CHECK(!(filter & (1u << bit)), "'%s': the bloom filter hides '%s'",
				 path, xs[i].name);
		}
	}
	for (unsigned int i = 0; i <= nshared; i++)
		free(bufs[i]);
	free(bufs);
	free(xs);
	free(area);
}

/* ------------------------------------------------------------------ */
/* §8 directories                                                      */
/* ------------------------------------------------------------------ */

struct dent {
	const uint8_t *name;
	size_t len;
	uint64_t nid;
	uint8_t ft;
};

struct dblock {
	uint8_t *buf;
	struct dent *d;
	size_t n;
};

static int name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int r = fz_memcmp(a, b, al < bl ? al : bl);
	return r ? r : (al > bl) - (al < bl);
}

/* Parses directory block k of ei (blen bytes count for i_size) into b. */
static void parse_dblock(struct ck *c, const struct einode *ei, uint64_t k, size_t blen,
			 struct dblock *b)
{
	const char *path = fake_of(ei->wi)->path;
	uint32_t bs = c->bs;

	b->buf = calloc(1, bs);
	FZ_CHECK(b->buf, "out of memory");
	rd(c, data_off(c, ei, k * bs), b->buf, blen, "directory block");
	/* The rest of a full block is on disk too, and lookup reads it (§8). */
	if (blen < bs && !(ei->layout == 2 && (k + 1) * bs >= ei->size))
		rd(c, data_off(c, ei, k * bs) + blen, b->buf + blen, bs - blen, "directory block");
	uint16_t nameoff0 = get_le16(b->buf + 8);
	FZ_CHECK(nameoff0 && nameoff0 % 12 == 0 && nameoff0 < bs && nameoff0 <= blen,
		 "'%s' block %llu: nameoff[0] = %u", path, (unsigned long long)k, nameoff0);
	b->n = nameoff0 / 12;
	b->d = calloc(b->n, sizeof(*b->d));
	FZ_CHECK(b->d, "out of memory");
	for (size_t i = 0; i < b->n; i++) {
		uint16_t no = get_le16(b->buf + 12 * i + 8);
		size_t end;
		if (i + 1 < b->n) {
			end = get_le16(b->buf + 12 * (i + 1) + 8);
		} else {
			const uint8_t *z = memchr(b->buf + no, 0, no < bs ? bs - no : 0);
			end = z ? (size_t)(z - b->buf) : bs;
			for (size_t k2 = end; k2 < bs; k2++)
				FZ_CHECK(b->buf[k2] == 0, "'%s': garbage after the last name",
					 path);
			FZ_CHECK(end <= blen, "'%s': last name runs past i_size", path);
			/* i_size = (nblocks - 1) * bs + bytes used in the last block. */
			if ((k + 1) * bs >= ei->size)
				FZ_CHECK(end == blen, "'%s': i_size %llu, its names end at %llu",
					 path,
					 (unsigned long long)ei->size,
					 (unsigned long long)(k * bs + end));
		}
		FZ_CHECK(no < end && end <= bs, "'%s': entry %zu has nameoff %u..%zu", path, i,
			 no, end);
		FZ_CHECK(i > 0 || no == nameoff0, "'%s': nameoff[0]", path);
		FZ_CHECK(i == 0 || no == (size_t)(b->d[i - 1].name + b->d[i - 1].len - b->buf),
			 "'%s': names not packed back to back", path);
		FZ_CHECK(b->buf[12 * i + 11] == 0, "'%s': dirent reserved byte", path);
		b->d[i] = (struct dent){
			.name = b->buf + no, .len = end - no,
			.nid = get_le64(b->buf + 12 * i), .ft = b->buf[12 * i + 10],
		};
		FZ_CHECK(b->d[i].len >= 1 && b->d[i].len <= 255 &&
			 !memchr(b->d[i].name, '/', b->d[i].len) &&
			 !memchr(b->d[i].name, 0, b->d[i].len), "'%s': bad name", path);
	}
}

/* The kernel's lookup (§8, namei.c): bisect blocks by their first name,
 * then the dirents of the candidate block.  Returns the nid or UINT64_MAX. */
static uint64_t kernel_lookup(struct dblock *blocks, size_t nblocks, const uint8_t *name,
			      size_t len)
{
	ssize_t head = 0, back = (ssize_t)nblocks - 1;
	ssize_t cand = -1;

	while (head <= back) {
		ssize_t mid = head + (back - head) / 2;
		const struct dent *first = &blocks[mid].d[0];
		int r = name_cmp(name, len, first->name, first->len);
		if (r == 0)
			return first->nid;
		if (r < 0) {
			back = mid - 1;
		} else {
			cand = mid;
			head = mid + 1;
		}
	}
	if (cand < 0)
		return UINT64_MAX;
	const struct dblock *b = &blocks[cand];
	ssize_t lo = 0, hi = (ssize_t)b->n - 1;
	while (lo <= hi) {
		ssize_t mid = lo + (hi - lo) / 2;
		int r = name_cmp(name, len, b->d[mid].name, b->d[mid].len);
		if (r == 0)
			return b->d[mid].nid;
		if (r < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return UINT64_MAX;
}

static void visit(struct ck *c, uint64_t nid, const struct walk_inode *wi,
		  uint64_t parent_nid);

/* Binds a tree inode to a nid: hard links share one, nothing else does. */
static bool bind(struct ck *c, const struct walk_inode *wi, uint64_t nid)
{
	size_t ti = tree_index(c, wi);
	if (c->nid_of[ti]) {
		FZ_CHECK(c->nid_of[ti] == nid, "'%s': linked under nids %llu and %llu", fake_of(wi)->path,
			 (unsigned long long)c->nid_of[ti], (unsigned long long)nid);
		return false;
	}
	c->nid_of[ti] = nid;
	return true;
}

static void check_dir(struct ck *c, const struct einode *ei, uint64_t parent_nid)
{
	const struct walk_inode *wi = ei->wi;
	uint32_t bs = c->bs;
	size_t nblocks = (size_t)((ei->size + bs - 1) / bs);
	struct dblock *blocks = calloc(nblocks, sizeof(*blocks));
	const uint8_t *prev = NULL;
	size_t prev_len = 0, child = 0, subdirs = 0;
	bool dot = false, dotdot = false;

	FZ_CHECK(blocks, "out of memory");
	for (size_t k = 0; k < nblocks; k++) {
		size_t blen = (uint64_t)(k + 1) * bs <= ei->size ? bs : (size_t)(ei->size % bs);
		parse_dblock(c, ei, k, blen, &blocks[k]);
		for (size_t i = 0; i < blocks[k].n; i++) {
			const struct dent *d = &blocks[k].d[i];
			FZ_CHECK(!prev || name_cmp(prev, prev_len, d->name, d->len) < 0,
				 "'%s': '%.*s' after '%.*s': bytewise order broken (§8)", fake_of(wi)->path,
				 (int)d->len, d->name, (int)prev_len, prev);
			prev = d->name;
			prev_len = d->len;
			FZ_CHECK(d->ft < 8, "'%s': file_type %u", fake_of(wi)->path, d->ft);
			if (d->len == 1 && d->name[0] == '.') {
				FZ_CHECK(d->nid == ei->nid && d->ft == 2, "'%s': '.'", fake_of(wi)->path);
				dot = true;
				continue;
			}
			if (d->len == 2 && !memcmp(d->name, "..", 2)) {
				FZ_CHECK(d->nid == parent_nid && d->ft == 2, "'%s': '..' is %llu, "
					 "parent %llu", fake_of(wi)->path, (unsigned long long)d->nid,
					 (unsigned long long)parent_nid);
				dotdot = true;
				continue;
			}
			/* Sorted the same way: the i-th name is the tree's i-th child. */
			FZ_CHECK(child < wi->nchildren, "'%s': more entries than the tree has",
				 fake_of(wi)->path);
			const struct walk_dentry *de = &wi->children[child++];
			FZ_CHECK(d->len == de->name_len && !fz_memcmp(d->name, de->name, d->len),
				 "'%s': entry '%.*s', tree has '%s'", fake_of(wi)->path, (int)d->len,
				 d->name, de->name);
			FZ_CHECK(d->ft == ft_of_mode[(de->inode->mode & S_IFMT) >> 12],
				 "'%s/%s': file_type %u does not match the mode", fake_of(wi)->path,
				 de->name, d->ft);
			subdirs += S_ISDIR(de->inode->mode);
		}
	}
	FZ_CHECK(dot && dotdot, "'%s': '.' or '..' missing", fake_of(wi)->path);
	FZ_CHECK(child == wi->nchildren, "'%s': %zu entries, tree has %u", fake_of(wi)->path, child,
		 wi->nchildren);
	FZ_CHECK(ei->nlink == 2 + subdirs, "'%s': nlink %u, 2 + %zu subdirectories", fake_of(wi)->path,
		 ei->nlink, subdirs);

	/* Every name must be found the way the kernel looks it up. */
	for (size_t i = 0; i < wi->nchildren; i++) {
		const struct walk_dentry *de = &wi->children[i];
		uint64_t nid = kernel_lookup(blocks, nblocks, (const uint8_t *)de->name,
					     de->name_len);
		FZ_CHECK(nid != UINT64_MAX, "'%s/%s': lookup finds nothing (§8)", fake_of(wi)->path,
			 de->name);
		if (bind(c, de->inode, nid))
			visit(c, nid, de->inode, ei->nid);
	}
	for (const char *dots[] = { ".", ".." }, **p = dots; p < dots + 2; p++)
		FZ_CHECK(kernel_lookup(blocks, nblocks, (const uint8_t *)*p, strlen(*p)) ==
			 (p == dots ? ei->nid : parent_nid), "'%s': lookup of '%s'", fake_of(wi)->path, *p);
	for (size_t k = 0; k < nblocks; k++) {
		free(blocks[k].buf);
		free(blocks[k].d);
	}
	free(blocks);
}

/* ------------------------------------------------------------------ */
/* §9 file data                                                        */
/* ------------------------------------------------------------------ */

static void check_bytes(struct ck *c, const struct einode *ei, uint64_t x, size_t len)
{
	uint8_t got[64], want[64];
	const struct fake_inode *fi = fake_of(ei->wi);

	if (x >= ei->size)
		return;
	if (len > ei->size - x)
		len = (size_t)(ei->size - x);
	if (len > sizeof(got))
		len = sizeof(got);
	/* Stay inside one block: the extents are per block. */
	if (x / c->bs != (x + len - 1) / c->bs)
		len = (size_t)(c->bs - x % c->bs);
	rd(c, data_off(c, ei, x), got, len, "file data");
	fake_read(fi, x, want, len);
	FZ_CHECK(!memcmp(got, want, len), "'%s': bytes at %llu differ from the file",
		 fake_of(ei->wi)->path, (unsigned long long)x);
}

static void check_file(struct ck *c, const struct einode *ei)
{
	const struct fake_inode *fi = fake_of(ei->wi);

	if (!ei->size)
		return;
	check_bytes(c, ei, 0, 64);
	check_bytes(c, ei, ei->size - 1, 1);
	check_bytes(c, ei, ei->size & ~(uint64_t)(c->bs - 1), 64);
	for (size_t i = 0; i < fi->nextents; i++) {
		const struct fake_extent *e = &fi->extents[i];
		check_bytes(c, ei, e->off ? e->off - 1 : 0, 64);
		check_bytes(c, ei, e->off + e->len - 1, 2);
	}
	for (int i = 0; i < 4; i++)
		check_bytes(c, ei, fz_u64(c->sample) % ei->size, 16);
}

static void check_symlink(struct ck *c, const struct einode *ei)
{
	const struct walk_inode *wi = ei->wi;
	char *buf = malloc(ei->size + 1);
	uint64_t done = 0;

	FZ_CHECK(buf && ei->size && ei->size < 4096, "'%s': symlink of %llu bytes", fake_of(wi)->path,
		 (unsigned long long)ei->size);
	while (done < ei->size) {
		size_t n = (size_t)(c->bs - done % c->bs);
		if (n > ei->size - done)
			n = (size_t)(ei->size - done);
		rd(c, data_off(c, ei, done), buf + done, n, "symlink target");
		done += n;
	}
	FZ_CHECK(!memcmp(buf, wi->symlink, ei->size), "'%s': symlink target differs", fake_of(wi)->path);
	free(buf);
}

static void visit(struct ck *c, uint64_t nid, const struct walk_inode *wi,
		  uint64_t parent_nid)
{
	struct einode ei;

	read_inode(c, nid, wi, &ei);
	c->nvisited++;
	check_layout(c, &ei);
	check_xattrs(c, &ei);
	if (S_ISDIR(ei.mode))
		check_dir(c, &ei, parent_nid);
	else if (S_ISLNK(ei.mode))
		check_symlink(c, &ei);
	else if (S_ISREG(ei.mode))
		check_file(c, &ei);
}

void check_erofs(const struct region_map *map, const struct fake_tree *t,
		 const struct erofs_opts *opts, struct fz *sample)
{
	struct ck c = {
		.map = map, .t = t, .opts = opts, .sample = sample,
		.bs = 1u << opts->blkszbits, .size = map->size,
	};
	const struct walk_tree *tree = &t->tree;

	for (size_t i = 0; i < tree->ninodes; i++)
		if (tree->inodes[i]->ino > c.max_ino)
			c.max_ino = tree->inodes[i]->ino;
	c.nid_of = calloc(c.max_ino, sizeof(*c.nid_of));
	FZ_CHECK(c.nid_of, "out of memory");
	uint64_t root = check_super(&c);
	bind(&c, tree->root, root);
	struct einode ei;
	read_inode(&c, root, tree->root, &ei);
	FZ_CHECK(S_ISDIR(ei.mode), "root nid %llu is not a directory", (unsigned long long)root);
	visit(&c, root, tree->root, root);
	FZ_CHECK(c.nvisited == tree->ninodes, "%zu inodes reachable, the tree has %zu",
		 c.nvisited, tree->ninodes);
	check_spans(&c);
	free(c.spans);
	free(c.nid_of);
}
