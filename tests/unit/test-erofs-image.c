/* SPDX-License-Identifier: MIT */
/*
 * test-erofs-image.c - erofs_build() on hand-made trees, read back with a
 * small independent parser written from the fact sheet
 * (shared/docs/erofs-format.md): superblock and checksum (§2), inodes
 * (§5), directories across blocks (§8), xattrs and the shared area (§7),
 * inline tails served from the source (§6.2), block sizes 4/16/64 KiB,
 * determinism, and the errors a bad tree gives.
 *
 * REGION_FILE bytes are never read (the trees are fake, there is nothing
 * to open): the reader fills them with 0xAA and the tests check the
 * regions themselves.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cmocka.h>

#include "server/byteorder.h"

#include "erofs/erofs.h"
#include "erofs/erofs_fs.h"

/* ---- hand-made trees ---- */

struct tb {
	struct walk_tree tree;
	struct walk_inode *list[2048];
	size_t n;
};

/* An inode; its path (for error messages) comes from its first tb_link(). */
static struct walk_inode *tb_inode(struct tb *t, uint32_t mode, const char *path)
{
	struct walk_inode *wi = calloc(1, sizeof(*wi));
	assert_non_null(wi);
	assert_true(t->n < 2048);
	wi->mode = mode;
	wi->mtime_sec = 1000;
	wi->nlink = 1;
	(void)path;
	wi->ino = t->n + 1;
	t->list[t->n++] = wi;
	return wi;
}

static void tb_link(struct walk_inode *dir, const char *name, struct walk_inode *child)
{
	dir->children = realloc(dir->children, (dir->nchildren + 1) * sizeof(*dir->children));
	assert_non_null(dir->children);
	dir->children[dir->nchildren++] = (struct walk_dentry){
		.name = strdup(name), .name_len = strlen(name), .inode = child,
	};
	if (!child->parent) {
		child->parent = dir;
		child->name = dir->children[dir->nchildren - 1].name;
	}
}

static struct walk_inode *tb_init(struct tb *t)
{
	memset(t, 0, sizeof(*t));
	struct walk_inode *root = tb_inode(t, S_IFDIR | 0755, "");
	root->parent = root;
	root->name = "";
	t->tree.root = root;
	t->tree.inodes = t->list;
	return root;
}

static void tb_free(struct tb *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct walk_inode *wi = t->list[i];
		for (size_t c = 0; c < wi->nchildren; c++)
			free(wi->children[c].name);
		free(wi->children);
		free(wi);
	}
}

/* ---- reading the image back ---- */

struct img {
	struct region_map map;
	uint8_t *b;		/* whole image, FILE bytes as 0xAA */
	uint64_t size;
	uint32_t bs;
};

static int build(struct tb *t, const struct erofs_opts *opts, struct img *im)
{
	char *errpath = NULL;
	const char *what = NULL;

	t->tree.ninodes = t->n;
	region_map_init(&im->map);
	int r = erofs_build(&t->tree, opts, &im->map, &errpath, &what);
	if (r < 0) {
		free(errpath);
		region_map_free(&im->map);
		return r;
	}
	im->size = im->map.size;
	im->b = malloc(im->size);
	assert_non_null(im->b);
	for (size_t i = 0; i < im->map.nregions; i++) {
		const struct region *rg = &im->map.regions[i];
		if (rg->type == REGION_MEM)
			memcpy(im->b + rg->start, rg->mem, rg->len);
		else
			memset(im->b + rg->start, rg->type == REGION_FILE ? 0xAA : 0, rg->len);
	}
	im->bs = 1u << im->b[1024 + 12];
	return 0;
}

static void img_free(struct img *im)
{
	free(im->b);
	region_map_free(&im->map);
}


/* Bitwise CRC32C, written apart from the builder's table version. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return crc;
}

struct ino {
	uint64_t off;		/* byte offset of the inode */
	int extended, layout;
	uint32_t isize, xsize, icount;
	uint16_t mode;
	uint64_t size;
	uint32_t u, nlink, uid, gid;
	int64_t mtime;
	uint32_t mtime_nsec, compact_mtime;
};

static struct ino rd_inode(const struct img *im, uint64_t nid)
{
	struct ino i = { .off = nid * 32 };
	const uint8_t *p = im->b + i.off;
	uint16_t fmt = get_le16(p);

	assert_true(i.off + 64 <= im->size);
	assert_int_equal(fmt & ~0xfu, 0);	/* §5.1: bits >= 4 clear */
	i.extended = fmt & 1;
	i.layout = fmt >> 1;
	i.icount = get_le16(p + 2);
	assert_int_not_equal(i.icount, 1);	/* §7.1 */
	i.xsize = i.icount ? 12 + 4 * (i.icount - 1) : 0;
	i.mode = get_le16(p + 4);
	if (i.extended) {
		i.isize = 64;
		assert_int_equal(get_le16(p + 6), 0);
		i.size = get_le64(p + 8);
		i.u = get_le32(p + 16);
		i.uid = get_le32(p + 24);
		i.gid = get_le32(p + 28);
		i.mtime = (int64_t)get_le64(p + 32);
		i.mtime_nsec = get_le32(p + 40);
		i.nlink = get_le32(p + 44);
		for (int k = 48; k < 64; k++)
			assert_int_equal(p[k], 0);
	} else {
		i.isize = 32;
		i.nlink = get_le16(p + 6);
		i.size = get_le32(p + 8);
		i.compact_mtime = get_le32(p + 12);
		i.u = get_le32(p + 16);
		i.uid = get_le16(p + 24);
		i.gid = get_le16(p + 26);
		assert_int_equal(get_le32(p + 28), 0);
	}
	return i;
}

/* Byte offset of data byte x of inode i (§6.1, §6.2). */
static uint64_t data_off(const struct img *im, const struct ino *i, uint64_t x)
{
	uint64_t full = i->size / im->bs;
	if (i->layout == 2) {
		uint64_t nblocks = (i->size + im->bs - 1) / im->bs;
		full = nblocks - 1;
		if (x >= full * im->bs) {
			uint64_t tail = i->off + i->isize + i->xsize;
			uint64_t tlen = i->size - full * im->bs;
			/* §6.2: the tail ends inside the inode's block. */
			assert_true((tail % im->bs) + tlen <= im->bs);
			return tail + (x - full * im->bs);
		}
	} else {
		assert_int_equal(i->layout, 0);
	}
	return (uint64_t)i->u * im->bs + x;
}

struct ent {
	char name[256];
	uint64_t nid;
	uint8_t type;
};

/*
 * Reads a whole directory: checks every block's layout (§8: nameoff[0] =
 * 12 N, names packed, zero-filled rest), and the global order.
 */
static size_t rd_dir(const struct img *im, uint64_t nid, struct ent *out, size_t max,
		     size_t *ret_blocks)
{
	struct ino d = rd_inode(im, nid);
	size_t n = 0, blocks = 0;

	assert_true(S_ISDIR(d.mode));
	for (uint64_t pos = 0; pos < d.size; pos += im->bs, blocks++) {
		uint64_t len = d.size - pos < im->bs ? d.size - pos : im->bs;
		const uint8_t *blk = im->b + data_off(im, &d, pos);
		uint16_t nameoff0 = get_le16(blk + 8);
		assert_true(nameoff0 > 0 && nameoff0 % 12 == 0 && nameoff0 < len);
		size_t cnt = nameoff0 / 12;
		size_t end = 0;
		for (size_t k = 0; k < cnt; k++) {
			uint16_t no = get_le16(blk + 12 * k + 8);
			uint16_t next = k + 1 < cnt ? get_le16(blk + 12 * (k + 1) + 8) : 0;
			if (k + 1 == cnt) {	/* last name ends at NUL or block end */
				next = no;
				while (next < len && blk[next])
					next++;
			}
			assert_true(next > no && next - no <= 255 && next <= len);
			assert_true(n < max);
			memcpy(out[n].name, blk + no, next - no);
			out[n].name[next - no] = '\0';
			out[n].nid = get_le64(blk + 12 * k);
			out[n].type = blk[12 * k + 10];
			assert_int_equal(blk[12 * k + 11], 0);
			if (n > 0) {	/* strictly increasing, across blocks too */
				size_t a = strlen(out[n - 1].name), b = next - no;
				int c = memcmp(out[n - 1].name, out[n].name, a < b ? a : b);
				assert_true(c < 0 || (c == 0 && a < b));
			}
			n++;
			end = next;
		}
		/* zero-filled up to the end of the block (an inline tail ends
		 * at i_size); i_size counts the used bytes of the last block */
		bool last = pos + im->bs >= d.size;
		uint64_t blk_end = last && d.layout == 2 ? len : im->bs;
		for (uint64_t k = end; k < blk_end; k++)
			assert_int_equal(blk[k], 0);
		if (last)
			assert_int_equal(end, len);
	}
	if (ret_blocks)
		*ret_blocks = blocks;
	return n;
}

static uint64_t lookup(const struct img *im, uint64_t dir, const char *name)
{
	static struct ent e[4096];
	size_t n = rd_dir(im, dir, e, 4096, NULL);
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].name, name) == 0)
			return e[i].nid;
	fail_msg("'%s' not found", name);
	return 0;
}

static void check_super(const struct img *im, const struct tb *t)
{
	const uint8_t *sb = im->b + 1024;
	uint8_t copy[65536];
	uint64_t crc_end = im->bs > 1024 ? im->bs : 1024 + im->bs;

	assert_int_equal(get_le32(sb), 0xE0F5E1E2u);
	assert_int_equal(get_le32(sb + 0x50), 0);		/* incompat */
	assert_int_equal(get_le32(sb + 8) & 3, 3);	/* SB_CHKSUM | MTIME */
	assert_int_equal(get_le64(sb + 0x10), t->n);	/* inos */
	assert_int_equal((uint64_t)get_le32(sb + 0x24) * im->bs, im->size);
	assert_true(im->size >= 4096 && im->size % im->bs == 0);
	assert_int_equal(sb[0x5a], 0);			/* dirblkbits */
	assert_int_equal(sb[0x0d], 0);
	for (int k = 0x54; k < 0x5a; k++)
		assert_int_equal(sb[k], 0);
	for (int k = 0x5b; k < 0x80; k++)
		assert_int_equal(sb[k], 0);
	/* §2.2: CRC32C of 1024..crc_end with the checksum field zero. */
	memcpy(copy, im->b + 1024, crc_end - 1024);
	memset(copy + 4, 0, 4);
	assert_int_equal(crc32c_bitwise(0xFFFFFFFFu, copy, crc_end - 1024), get_le32(sb + 4));
	/* No lazily read bytes under the checksum. */
	for (size_t i = 0; i < im->map.nregions; i++)
		if (im->map.regions[i].type == REGION_FILE)
			assert_true(im->map.regions[i].start >= crc_end);
	/* Root: a directory, nid < 65536, ".." pointing at itself. */
	uint16_t root = get_le16(sb + 0x0e);
	assert_true(S_ISDIR(rd_inode(im, root).mode));
}

static uint64_t root_nid(const struct img *im)
{
	return get_le16(im->b + 1024 + 0x0e);
}

/* ---- tests ---- */

static void test_small_tree(void **state)
{
	struct tb t;
	struct img im, im2;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);

	static const char *const names[] = { "ab", "\xff", "+plus", "-dash" };
	for (size_t i = 0; i < 4; i++)
		tb_link(root, names[i], tb_inode(&t, S_IFREG | 0644, names[i]));
	struct walk_inode *a = tb_inode(&t, S_IFREG | 0644, "a");
	tb_link(root, "a", a);
	struct walk_inode *sub = tb_inode(&t, S_IFDIR | 0750, "sub");
	tb_link(root, "sub", sub);
	tb_link(sub, "x", a);		/* hard link */
	struct walk_inode *cdev = tb_inode(&t, S_IFCHR | 0600, "cdev");
	cdev->rdev_major = 8;
	cdev->rdev_minor = 1;
	tb_link(root, "cdev", cdev);
	struct walk_inode *bdev = tb_inode(&t, S_IFBLK | 0600, "bdev");
	bdev->rdev_major = 259;
	bdev->rdev_minor = 70000;
	tb_link(root, "bdev", bdev);
	tb_link(root, "fifo", tb_inode(&t, S_IFIFO | 0644, "fifo"));
	tb_link(root, "sock", tb_inode(&t, S_IFSOCK | 0644, "sock"));
	struct walk_inode *lnk = tb_inode(&t, S_IFLNK | 0777, "link");
	lnk->symlink = "target";
	lnk->size = 6;
	tb_link(root, "link", lnk);

	erofs_opts_default(&opts);
	opts.volume_name = "vol";
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	assert_int_equal(root_nid(&im), 36);	/* right after the superblock */
	assert_string_equal((const char *)im.b + 1024 + 0x40, "vol");
	assert_int_equal(get_le64(im.b + 1024 + 0x18), 1000);	/* every mtime */

	struct ent e[32];
	size_t n = rd_dir(&im, 36, e, 32, NULL);
	static const char *const want[] = { "+plus", "-dash", ".", "..", "a", "ab",
		"bdev", "cdev", "fifo", "link", "sock", "sub", "\xff" };
	static const uint8_t types[] = { 1, 1, 2, 2, 1, 1, 4, 3, 5, 7, 6, 2, 1 };
	assert_int_equal(n, 13);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(e[i].name, want[i]);
		assert_int_equal(e[i].type, types[i]);
	}
	assert_int_equal(e[2].nid, 36);
	assert_int_equal(e[3].nid, 36);

	struct ino ri = rd_inode(&im, 36);
	assert_int_equal(ri.nlink, 3);		/* §5.7: 2 + one subdirectory */
	assert_int_equal(ri.layout, 2);
	assert_int_equal(ri.u, 0xFFFFFFFFu);
	assert_int_equal(ri.mode, S_IFDIR | 0755);
	assert_int_equal(ri.extended, 0);
	assert_int_equal(ri.compact_mtime, 0);

	uint64_t subnid = lookup(&im, 36, "sub");
	assert_int_equal(lookup(&im, subnid, ".."), 36);
	assert_int_equal(lookup(&im, subnid, "."), subnid);
	assert_int_equal(lookup(&im, subnid, "x"), lookup(&im, 36, "a"));
	assert_int_equal(rd_inode(&im, subnid).nlink, 2);
	assert_int_equal(rd_inode(&im, subnid).mode, S_IFDIR | 0750);
	assert_int_equal(rd_dir(&im, subnid, e, 32, NULL), 3);
	struct ino ai = rd_inode(&im, lookup(&im, 36, "a"));
	assert_int_equal(ai.nlink, 2);
	assert_int_equal(ai.size, 0);
	assert_int_equal(ai.layout, 0);
	assert_int_equal(ai.u, 0);

	struct ino ci = rd_inode(&im, lookup(&im, 36, "cdev"));
	assert_int_equal(ci.u, 0x801);
	assert_int_equal(ci.mode, S_IFCHR | 0600);
	assert_int_equal(ci.size, 0);
	assert_int_equal(rd_inode(&im, lookup(&im, 36, "bdev")).u, 0x11110370u);
	assert_int_equal(rd_inode(&im, lookup(&im, 36, "fifo")).u, 0);

	struct ino li = rd_inode(&im, lookup(&im, 36, "link"));
	assert_int_equal(li.layout, 2);
	assert_int_equal(li.size, 6);
	assert_memory_equal(im.b + data_off(&im, &li, 0), "target", 6);
	assert_int_equal(li.u, 0xFFFFFFFFu);

	/* Same tree, same options: the same bytes, UUID included. */
	assert_int_equal(build(&t, &opts, &im2), 0);
	assert_int_equal(im.size, im2.size);
	assert_memory_equal(im.b, im2.b, im.size);
	int nonzero = 0;
	for (int k = 0; k < 16; k++)
		nonzero |= im.b[1024 + 0x30 + k];
	assert_true(nonzero);
	img_free(&im2);
	/* A different tree gives a different UUID. */
	lnk->symlink = "tarGet";
	assert_int_equal(build(&t, &opts, &im2), 0);
	assert_memory_not_equal(im.b + 1024 + 0x30, im2.b + 1024 + 0x30, 16);
	img_free(&im2);

	img_free(&im);
	tb_free(&t);
}

static void big_dir(unsigned int blkszbits, size_t nfiles, size_t want_blocks)
{
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);
	static struct ent e[2048];
	char name[64];

	/* Names both below and above "." / "..", in scrambled order. */
	for (size_t i = 0; i < nfiles; i++) {
		size_t k = (i * 7919) % nfiles;
		snprintf(name, sizeof(name), "%c%04zu-some-longer-name", k % 2 ? '+' : 'f', k);
		tb_link(root, name, tb_inode(&t, S_IFREG | 0644, name));
	}
	erofs_opts_default(&opts);
	opts.blkszbits = blkszbits;
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);

	size_t blocks;
	size_t n = rd_dir(&im, root_nid(&im), e, 2048, &blocks);
	assert_int_equal(n, nfiles + 2);
	assert_int_equal(blocks, want_blocks);
	/* "." sits between the '+' names and the 'f' names. */
	assert_string_equal(e[nfiles / 2].name, ".");
	assert_string_equal(e[nfiles / 2 + 1].name, "..");
	/* Greedy fill: each block but the last could not take one more entry. */
	struct ino ri = rd_inode(&im, root_nid(&im));
	size_t idx = 0;
	for (size_t b = 0; b + 1 < blocks; b++) {
		const uint8_t *blk = im.b + data_off(&im, &ri, (uint64_t)b * im.bs);
		size_t cnt = get_le16(blk + 8) / 12;
		size_t used = 0;
		for (size_t k = 0; k < cnt; k++)
			used += 12 + strlen(e[idx + k].name);
		idx += cnt;
		assert_true(used + 12 + strlen(e[idx].name) > im.bs);
	}
	img_free(&im);
	tb_free(&t);
}

static void test_big_dir_4k(void **state)
{
	/* 1000 * (12 + 22) + 2 * 12 + 3 = 34027 bytes, 120 entries of 34 bytes
	 * per block (a few more with "." and ".."): 9 blocks of 4 KiB. */
	big_dir(12, 1000, 9);
}

static void test_big_dir_512(void **state)
{
	/* 15 entries of 34 bytes per 512-byte block: 1002 entries, 67 blocks. */
	big_dir(9, 1000, 67);
}

static void test_big_dir_16k_64k(void **state)
{
	big_dir(14, 1000, 3);
	big_dir(16, 1000, 1);
	big_dir(16, 2000, 2);
}

static uint32_t bit(uint8_t index, const char *suffix)
{
	return XXH32(suffix, strlen(suffix), 0x25BBE08Fu + index) & 31;
}

static void test_xattrs(void **state)
{
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);
	static uint8_t acl[28] = { 2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff };
	struct walk_xattr x1[2] = {
		{ "user.foo", (uint8_t *)"bar", 3 },
		{ "user.shared", (uint8_t *)"same", 4 },
	};
	struct walk_xattr x2[2] = {
		{ "security.selinux", (uint8_t *)"ctx\0", 4 },
		{ "user.shared", (uint8_t *)"same", 4 },
	};
	struct walk_xattr x3[1] = { { "system.posix_acl_access", acl, 28 } };
	struct walk_xattr x4[1] = { { "trusted.overlay.opaque", (uint8_t *)"y", 1 } };

	struct walk_inode *f1 = tb_inode(&t, S_IFREG | 0644, "f1");
	f1->xattrs = x1;
	f1->nxattrs = 2;
	struct walk_inode *f2 = tb_inode(&t, S_IFREG | 0644, "f2");
	f2->xattrs = x2;
	f2->nxattrs = 2;
	struct walk_inode *f3 = tb_inode(&t, S_IFREG | 0644, "f3");
	f3->xattrs = x3;
	f3->nxattrs = 1;
	root->xattrs = x4;
	root->nxattrs = 1;
	tb_link(root, "f1", f1);
	tb_link(root, "f2", f2);
	tb_link(root, "f3", f3);

	erofs_opts_default(&opts);
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	assert_int_equal(get_le32(im.b + 1024 + 8) & 4, 4);	/* XATTR_FILTER */
	uint32_t xattr_blkaddr = get_le32(im.b + 1024 + 0x2c);

	/* f1: one shared id and "foo"="bar" inline (4 + 3 + 3 -> 12). */
	struct ino i1 = rd_inode(&im, lookup(&im, root_nid(&im), "f1"));
	const uint8_t *h = im.b + i1.off + i1.isize;
	assert_int_equal(i1.xsize, 12 + 4 + 12);
	assert_int_equal(i1.icount, 5);
	assert_int_equal(h[4], 1);			/* h_shared_count */
	for (int k = 5; k < 12; k++)
		assert_int_equal(h[k], 0);
	assert_int_equal(get_le32(h), ~((1u << bit(1, "foo")) | (1u << bit(1, "shared"))));
	uint32_t id = get_le32(h + 12);
	const uint8_t *ent = h + 16;
	assert_int_equal(ent[0], 3);
	assert_int_equal(ent[1], 1);
	assert_int_equal(get_le16(ent + 2), 3);
	assert_memory_equal(ent + 4, "foobar", 6);
	assert_int_equal(ent[10], 0);
	assert_int_equal(ent[11], 0);
	/* The shared entry, at xattr_blkaddr * bs + id * 4 (§7.3). */
	const uint8_t *se = im.b + (uint64_t)xattr_blkaddr * im.bs + (uint64_t)id * 4;
	assert_int_equal(se[0], 6);
	assert_int_equal(se[1], 1);
	assert_int_equal(get_le16(se + 2), 4);
	assert_memory_equal(se + 4, "sharedsame", 10);

	/* f2: the same shared id, selinux inline; bit 11 per §7.5. */
	struct ino i2 = rd_inode(&im, lookup(&im, root_nid(&im), "f2"));
	h = im.b + i2.off + i2.isize;
	assert_int_equal(h[4], 1);
	assert_int_equal(get_le32(h + 12), id);
	assert_int_equal(get_le32(h), ~((1u << 11) | (1u << bit(1, "shared"))));
	assert_int_equal(i2.xsize, 12 + 4 + 16);	/* 4 + 7 + 4 = 15 -> 16 */
	assert_int_equal(h[16], 7);
	assert_int_equal(h[17], 6);

	/* f3: an ACL has an empty suffix (§7.2), bit 30. */
	struct ino i3 = rd_inode(&im, lookup(&im, root_nid(&im), "f3"));
	h = im.b + i3.off + i3.isize;
	assert_int_equal(i3.icount, 9);		/* 12 + 32 bytes */
	assert_int_equal(h[4], 0);
	assert_int_equal(get_le32(h), ~(1u << 30));
	assert_int_equal(h[12], 0);
	assert_int_equal(h[13], 2);
	assert_int_equal(get_le16(h + 14), 28);
	assert_memory_equal(h + 16, acl, 28);

	/* Root: trusted.overlay.opaque (bit 20) before its inline dirents. */
	struct ino ri = rd_inode(&im, root_nid(&im));
	h = im.b + ri.off + ri.isize;
	assert_int_equal(ri.xsize, 12 + 20);	/* 4 + 14 + 1 = 19 -> 20 */
	assert_int_equal(get_le32(h), ~(1u << 20));

	/* No filter bits when nothing has xattrs. */
	img_free(&im);
	f1->nxattrs = f2->nxattrs = f3->nxattrs = root->nxattrs = 0;
	assert_int_equal(build(&t, &opts, &im), 0);
	assert_int_equal(get_le32(im.b + 1024 + 8) & 4, 0);
	assert_int_equal(rd_inode(&im, root_nid(&im)).icount, 0);
	img_free(&im);
	tb_free(&t);
}

static void test_extended_inodes(void **state)
{
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);

	struct walk_inode *same = tb_inode(&t, S_IFREG | 0644, "same");
	struct walk_inode *newer = tb_inode(&t, S_IFREG | 0644, "newer");
	newer->mtime_sec = 2000;
	newer->mtime_nsec = 5;
	struct walk_inode *nsec = tb_inode(&t, S_IFREG | 0644, "nsec");
	nsec->mtime_nsec = 1;
	struct walk_inode *uid = tb_inode(&t, S_IFREG | 0644, "uid");
	uid->uid = 70000;
	uid->gid = 65535;
	struct walk_inode *old = tb_inode(&t, S_IFREG | 0644, "old");
	old->mtime_sec = -5;
	tb_link(root, "same", same);
	tb_link(root, "newer", newer);
	tb_link(root, "nsec", nsec);
	tb_link(root, "uid", uid);
	tb_link(root, "old", old);

	erofs_opts_default(&opts);
	opts.build_time_set = true;
	opts.build_time = 1000;
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	assert_int_equal(get_le64(im.b + 1024 + 0x18), 1000);
	assert_int_equal(get_le32(im.b + 1024 + 0x20), 0);
	uint64_t r = root_nid(&im);

	struct ino i = rd_inode(&im, lookup(&im, r, "same"));
	assert_int_equal(i.extended, 0);
	assert_int_equal(i.compact_mtime, 0);
	i = rd_inode(&im, lookup(&im, r, "newer"));
	assert_int_equal(i.extended, 1);
	assert_int_equal(i.mtime, 2000);
	assert_int_equal(i.mtime_nsec, 5);
	assert_int_equal(i.nlink, 1);
	i = rd_inode(&im, lookup(&im, r, "nsec"));
	assert_int_equal(i.extended, 1);
	assert_int_equal(i.mtime_nsec, 1);
	i = rd_inode(&im, lookup(&im, r, "uid"));
	assert_int_equal(i.extended, 1);
	assert_int_equal(i.uid, 70000);
	assert_int_equal(i.gid, 65535);
	i = rd_inode(&im, lookup(&im, r, "old"));
	assert_int_equal(i.extended, 1);
	assert_int_equal(i.mtime, -5);
	img_free(&im);

	/* Without SOURCE_DATE_EPOCH: the most common mtime (1000) wins. */
	opts.build_time_set = false;
	assert_int_equal(build(&t, &opts, &im), 0);
	assert_int_equal(get_le64(im.b + 1024 + 0x18), 1000);
	assert_int_equal(rd_inode(&im, lookup(&im, root_nid(&im), "same")).extended, 0);
	img_free(&im);
	tb_free(&t);
}

/* The region that holds byte off of the image. */
static const struct region *region_at(const struct img *im, uint64_t off)
{
	ssize_t i = region_find(&im->map, off);
	assert_true(i >= 0);
	return &im->map.regions[i];
}

static void check_file_data(const struct img *im, const struct ino *i, uint32_t src)
{
	uint64_t full = i->layout == 2 ? i->size / im->bs : (i->size + im->bs - 1) / im->bs;

	for (uint64_t b = 0; b < full; b++) {
		uint64_t off = data_off(im, i, b * im->bs);
		const struct region *rg = region_at(im, off);
		assert_int_equal(off % im->bs, 0);
		assert_int_equal(rg->type, REGION_FILE);
		assert_int_equal(rg->source, src);
		assert_int_equal(rg->offset + (off - rg->start), b * im->bs);
	}
	if (i->layout == 0 && i->size % im->bs) {
		/* zeros after i_size up to the end of the last block (§6.1) */
		uint64_t end = data_off(im, i, i->size - 1) + 1;
		assert_int_equal(region_at(im, end)->type, REGION_ZERO);
	}
	if (i->layout == 2) {
		uint64_t tail = i->size % im->bs;
		uint64_t off = data_off(im, i, i->size - tail);
		const struct region *rg = region_at(im, off);
		assert_int_equal(rg->type, REGION_FILE);
		assert_int_equal(rg->source, src);
		assert_int_equal(rg->offset + (off - rg->start), i->size - tail);
		assert_true(rg->start + rg->len >= off + tail);
	}
}

static void test_file_layout(void **state)
{
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);
	static const uint64_t sizes[] = { 1, 3000, 4095, 4096, 5000, 8192, 12288 + 4000,
					  100000 };
	char name[32];
	static uint8_t big[3000];
	struct walk_xattr fat = { "user.fat", big, sizeof(big) };

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		snprintf(name, sizeof(name), "f%zu", k);
		struct walk_inode *f = tb_inode(&t, S_IFREG | 0644, name);
		f->size = sizes[k];
		f->blocks = (sizes[k] + 511) / 512;
		tb_link(root, name, f);
	}
	/* 3000 bytes of xattrs + a 3000-byte tail fit no block: FLAT_PLAIN. */
	struct walk_inode *fx = tb_inode(&t, S_IFREG | 0644, "fx");
	fx->size = 3000;
	fx->blocks = 8;
	fx->xattrs = &fat;
	fx->nxattrs = 1;
	tb_link(root, "fx", fx);

	/* --no-inline-data: every regular file FLAT_PLAIN, no file bytes in metadata. */
	erofs_opts_default(&opts);
	assert_true(opts.inline_file_tails);	/* the default, as mkfs.erofs */
	opts.inline_file_tails = false;
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	assert_int_equal(im.map.nsources, 9);
	uint64_t meta_end = UINT64_MAX;
	for (size_t k = 0; k < im.map.nsources; k++) {
		const struct region_source *s = &im.map.sources[k];
		struct ino i = rd_inode(&im, lookup(&im, root_nid(&im), s->name));
		assert_int_equal(i.layout, 0);
		check_file_data(&im, &i, (uint32_t)k);
		if ((uint64_t)i.u * im.bs < meta_end)
			meta_end = (uint64_t)i.u * im.bs;
	}
	for (size_t k = 0; k < im.map.nregions; k++)
		if (im.map.regions[k].type == REGION_FILE)
			assert_true(im.map.regions[k].start >= meta_end);
	img_free(&im);

	/* inline_file_tails: partial last blocks inline, served from the file. */
	opts.inline_file_tails = true;
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	assert_int_equal(im.map.nsources, 9);

	for (size_t k = 0; k < im.map.nsources; k++) {
		const struct region_source *s = &im.map.sources[k];
		uint64_t nid = lookup(&im, root_nid(&im), s->name);
		struct ino i = rd_inode(&im, nid);
		assert_int_equal(i.size, s->size);
		assert_int_equal(s->mtime_sec, 1000);
		assert_non_null(s->open);
		if (strcmp(s->name, "fx") == 0) {
			assert_int_equal(i.layout, 0);
			/* 12 + align4(4 + 3 + 3000) = 3020 bytes: icount 753 */
			assert_int_equal(i.icount, 753);
		} else if (s->size % 4096 == 0 || 32 + s->size % 4096 > 4096) {
			/* no tail, or a tail no block can hold (4095) */
			assert_int_equal(i.layout, 0);
		} else {
			assert_int_equal(i.layout, 2);
			if (s->size < 4096)
				assert_int_equal(i.u, 0xFFFFFFFFu);
		}
		check_file_data(&im, &i, (uint32_t)k);
	}
	img_free(&im);

	/* 64 KiB blocks: 100000 = 1 block + 34464 inline; the rest inline. */
	opts.blkszbits = 16;
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	for (size_t k = 0; k < im.map.nsources; k++) {
		const struct region_source *s = &im.map.sources[k];
		struct ino i = rd_inode(&im, lookup(&im, root_nid(&im), s->name));
		if (i.layout != 2)
			fail_msg("%s: layout %d", s->name, i.layout);
		check_file_data(&im, &i, (uint32_t)k);
	}
	img_free(&im);
	tb_free(&t);
}

/*
 * Small blocks: the superblock checksum covers 1024 .. 1024 + bs when bs
 * is 512 or 1024 (§2.2), a range the first inodes would fall in.  A file's
 * inline tail is read from its source at request time, so it must land
 * past that range (check_super() asserts no REGION_FILE starts below it),
 * while a directory's inline data, built in memory, may stay.
 */
static void test_small_block_tails(void **state)
{
	for (uint8_t bits = 9; bits <= 12; bits++) {
		struct tb t;
		struct img im;
		struct erofs_opts opts;
		struct walk_inode *root = tb_init(&t);
		struct walk_inode *f = tb_inode(&t, S_IFREG | 0644, "f");

		f->size = 100;
		f->blocks = 1;
		tb_link(root, "f", f);
		erofs_opts_default(&opts);
		opts.blkszbits = bits;
		assert_int_equal(build(&t, &opts, &im), 0);
		check_super(&im, &t);
		struct ino i = rd_inode(&im, lookup(&im, root_nid(&im), "f"));
		assert_int_equal(i.layout, 2);		/* FLAT_INLINE */
		check_file_data(&im, &i, 0);
		img_free(&im);
		tb_free(&t);
	}
}

static void test_root_moves(void **state)
{
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);
	char name[32];

	/* 100 entries of 12 + 24 bytes = 3627 bytes: past the end of block 0. */
	for (int k = 0; k < 100; k++) {
		snprintf(name, sizeof(name), "entry-%03d-0123456789abcd", k);
		tb_link(root, name, tb_inode(&t, S_IFREG | 0644, name));
	}
	erofs_opts_default(&opts);
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	assert_int_equal(root_nid(&im), 4096 / 32);
	struct ent e[128];
	assert_int_equal(rd_dir(&im, root_nid(&im), e, 128, NULL), 102);
	img_free(&im);
	tb_free(&t);
}

static void test_bad_trees(void **state)
{
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t);
	char *errpath = NULL;
	const char *what = NULL;
	char longname[300];

	struct walk_inode *d = tb_inode(&t, S_IFDIR | 0755, "d");
	tb_link(root, "d", d);
	struct walk_inode *f = tb_inode(&t, S_IFREG | 0644, "d/f");
	tb_link(d, "f", f);
	t.tree.ninodes = t.n;

	erofs_opts_default(&opts);
	opts.blkszbits = 8;
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	opts.blkszbits = 17;
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	opts.blkszbits = 12;
	opts.volume_name = "0123456789abcdef";
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	opts.volume_name = "0123456789abcde";
	assert_int_equal(build(&t, &opts, &im), 0);
	img_free(&im);

	struct walk_xattr bad = { "system.nfs4_acl", (uint8_t *)"x", 1 };
	f->xattrs = &bad;
	f->nxattrs = 1;
	struct region_map map;
	region_map_init(&map);
	assert_int_equal(erofs_build(&t.tree, &opts, &map, &errpath, &what), -EOPNOTSUPP);
	assert_string_equal(errpath, "d/f");
	assert_non_null(what);
	free(errpath);
	region_map_free(&map);
	f->nxattrs = 0;

	memset(longname, 'n', sizeof(longname));
	longname[256] = '\0';
	tb_link(d, longname, tb_inode(&t, S_IFREG | 0644, "d/long"));
	t.tree.ninodes = t.n;
	region_map_init(&map);
	assert_int_equal(erofs_build(&t.tree, &opts, &map, &errpath, &what),
			 -ENAMETOOLONG);
	assert_int_equal(strncmp(errpath, "d/nnnn", 6), 0);
	free(errpath);
	region_map_free(&map);
	d->nchildren--;
	free(d->children[d->nchildren].name);

	/* At the root: the name alone, no leading '/'. */
	tb_link(root, longname, t.list[t.n - 1]);	/* the inode of d/long */
	region_map_init(&map);
	assert_int_equal(erofs_build(&t.tree, &opts, &map, &errpath, &what),
			 -ENAMETOOLONG);
	assert_int_equal(strncmp(errpath, "nnnn", 4), 0);
	free(errpath);
	region_map_free(&map);
	root->nchildren--;
	free(root->children[root->nchildren].name);

	tb_link(d, "f", f);	/* duplicate name */
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	d->nchildren--;
	free(d->children[d->nchildren].name);

	tb_link(root, "d2", d);	/* directory linked twice */
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	root->nchildren--;
	free(root->children[root->nchildren].name);

	struct walk_inode stray = { .mode = S_IFREG | 0644 };
	tb_link(d, "stray", &stray);	/* not in tree->inodes */
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	d->nchildren--;
	free(d->children[d->nchildren].name);

	t.list[t.n++] = f;	/* an inode listed twice in tree->inodes */
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	t.n--;

	root->mode = S_IFREG | 0644;	/* a root that is no directory */
	assert_int_equal(build(&t, &opts, &im), -EINVAL);
	root->mode = S_IFDIR | 0755;

	assert_int_equal(build(&t, &opts, &im), 0);	/* fine again */
	img_free(&im);

	/* Two files of 2^31 - 8 blocks of 512 bytes fit; 16 blocks more and
	 * the image would need 2^32 blocks (§1). */
	opts.blkszbits = 9;
	f->size = ((1ull << 31) - 8) * 512;
	f->blocks = f->size / 512;
	struct walk_inode *g = tb_inode(&t, S_IFREG | 0644, "g");
	g->size = f->size;
	g->blocks = f->blocks;
	tb_link(root, "g", g);
	t.tree.ninodes = t.n;
	region_map_init(&map);	/* no data read: the files are fake */
	assert_int_equal(erofs_build(&t.tree, &opts, &map, &errpath, &what), 0);
	uint8_t sb[128];
	assert_int_equal(region_map_pread(&map, sb, sizeof(sb), 1024), 0);
	assert_int_equal(get_le32(sb + 0x24), map.size / 512);
	assert_true(map.size / 512 > (1ull << 32) - 16);
	region_map_free(&map);
	g->size += 16 * 512;
	g->blocks = g->size / 512;
	t.tree.ninodes = t.n;
	region_map_init(&map);
	assert_int_equal(erofs_build(&t.tree, &opts, &map, &errpath, &what), -EFBIG);
	assert_non_null(what);
	free(errpath);
	region_map_free(&map);
	tb_free(&t);
}

/* xorshift64: a fixed pseudo-random sequence. */
static uint64_t rnd_state;
static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

/* Counts the xattrs of inode i by parsing its ibody (§7.1). */
static uint32_t count_xattrs(const struct img *im, const struct ino *i)
{
	if (!i->xsize)
		return 0;
	const uint8_t *h = im->b + i->off + i->isize;
	uint32_t n = h[4], pos = 12 + 4 * h[4];
	while (pos < i->xsize) {
		const uint8_t *e = h + pos;
		assert_true(e[1] >= 1 && e[1] <= 6);
		pos += (4 + e[0] + get_le16(e + 2) + 3) & ~3u;
		n++;
	}
	assert_int_equal(pos, i->xsize);
	return n;
}

/*
 * More shared xattrs than h_shared_count (a u8) can count: two files with
 * the same 300 xattrs share 255 of them and keep the other 45 inline
 * (§7.1), and every one of the 300 parses back, the shared ones from the
 * shared area (§7.3).
 */
static void test_many_shared_xattrs(void **state)
{
	enum { N = 300 };
	static char names[N][16], values[N][8];
	static struct walk_xattr xs[N];
	struct tb t;
	struct img im;
	struct erofs_opts opts;
	struct walk_inode *root = tb_init(&t), *f[2];

	for (int k = 0; k < N; k++) {
		snprintf(names[k], sizeof(names[k]), "user.k%d", k);
		snprintf(values[k], sizeof(values[k]), "v%d", k);
		xs[k] = (struct walk_xattr){ names[k], (uint8_t *)values[k], strlen(values[k]) };
	}
	for (int i = 0; i < 2; i++) {
		f[i] = tb_inode(&t, S_IFREG | 0644, i ? "b" : "a");
		f[i]->xattrs = xs;
		f[i]->nxattrs = N;
		tb_link(root, i ? "b" : "a", f[i]);
	}
	erofs_opts_default(&opts);
	assert_int_equal(build(&t, &opts, &im), 0);
	check_super(&im, &t);
	uint32_t xattr_blkaddr = get_le32(im.b + 1024 + 0x2c);
	for (int i = 0; i < 2; i++) {
		struct ino in = rd_inode(&im, lookup(&im, root_nid(&im), i ? "b" : "a"));
		const uint8_t *h = im.b + in.off + in.isize;
		bool seen[N] = { false };

		assert_int_equal(h[4], 255);			/* h_shared_count */
		assert_int_equal(count_xattrs(&im, &in), N);
		/* Each shared id names one of the 300, each once. */
		for (int k = 0; k < 255; k++) {
			const uint8_t *se = im.b + (uint64_t)xattr_blkaddr * im.bs +
					    (uint64_t)get_le32(h + 12 + 4 * k) * 4;
			int n;

			assert_int_equal(se[1], 1);		/* EROFS_XATTR_INDEX_USER */
			assert_int_equal(sscanf((const char *)se + 5, "%d", &n), 1);
			assert_true(se[4] == 'k' && n >= 0 && n < N && !seen[n]);
			seen[n] = true;
		}
	}
	img_free(&im);
	tb_free(&t);
}

/*
 * Random trees (names with any byte but '/' and NUL, hard links, every
 * file type, shared and inline xattrs, sizes around block boundaries),
 * every block size, both tail modes: every entry resolves to an inode
 * that matches the tree.
 */
static void test_random_trees(void **state)
{
	static struct walk_xattr pool[6] = {
		{ "user.a", (uint8_t *)"1", 1 },
		{ "security.selinux", (uint8_t *)"system_u:object_r:x_t:s0", 25 },
		{ "trusted.overlay.opaque", (uint8_t *)"y", 1 },
		{ "user.big", NULL, 700 },
		{ "system.posix_acl_default", (uint8_t *)"\2\0\0\0", 4 },
		{ "user.empty", (uint8_t *)"", 0 },
	};
	static uint8_t big[700];
	pool[3].value = big;

	for (int round = 0; round < 16; round++) {
		struct tb t;
		struct img im;
		struct erofs_opts opts;
		struct walk_inode *dirs[64];
		size_t ndirs = 1;
		char name[64];

		rnd_state = 0x9E3779B97F4A7C15ull * (round + 1);
		dirs[0] = tb_init(&t);
		for (int k = 0; k < 300; k++) {
			struct walk_inode *parent = dirs[rnd(ndirs)];
			size_t len = 1 + rnd(20);
			for (size_t c = 0; c < len; c++) {
				do
					name[c] = (char)(1 + rnd(255));
				while (name[c] == '/');
			}
			snprintf(name + len, sizeof(name) - len, "%d", k);
			if (k > 10 && rnd(10) == 0) {	/* hard link */
				struct walk_inode *o = t.list[1 + rnd((uint32_t)t.n - 1)];
				if (!S_ISDIR(o->mode)) {
					tb_link(parent, name, o);
					continue;
				}
			}
			static const uint32_t types[] = { S_IFREG, S_IFREG, S_IFREG, S_IFDIR,
				S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK };
			uint32_t type = types[rnd(9)];
			if (type == S_IFDIR && ndirs == 64)
				type = S_IFREG;
			struct walk_inode *wi = tb_inode(&t, type | 0644, name);
			wi->mtime_sec = 1000 + rnd(3);
			wi->uid = rnd(4) ? 0 : 70000;
			if (type == S_IFREG) {
				static const uint64_t sz[] = { 0, 1, 511, 512, 4095, 4096,
					4097, 16384, 65535, 65537, 200000 };
				wi->size = sz[rnd(11)];
				wi->blocks = (wi->size + 511) / 512;
			} else if (type == S_IFLNK) {
				static char target[4096];
				memset(target, 't', sizeof(target) - 1);
				wi->size = 1 + rnd(rnd(2) ? 100 : 4095);
				wi->symlink = target + sizeof(target) - 1 - wi->size;
			} else if (type == S_IFCHR || type == S_IFBLK) {
				wi->rdev_major = rnd(4096);
				wi->rdev_minor = rnd(1u << 20);
			} else if (type == S_IFDIR) {
				dirs[ndirs++] = wi;
			}
			/* a sorted (by pool order) subset of the pool */
			static struct walk_xattr sets[300][6];
			size_t nx = 0;
			for (size_t x = 0; x < 6; x++)
				if (rnd(3) == 0)
					sets[k][nx++] = pool[x];
			wi->xattrs = sets[k];
			wi->nxattrs = nx;
			tb_link(parent, name, wi);
		}

		erofs_opts_default(&opts);
		opts.build_time_set = true;
		opts.build_time = 1000;
		opts.blkszbits = 9 + rnd(8);
		opts.inline_file_tails = rnd(2);
		assert_int_equal(build(&t, &opts, &im), 0);
		check_super(&im, &t);

		/* Walk the image from the root and match every entry. */
		struct {
			struct walk_inode *wi;
			uint64_t nid;
		} stack[64];
		size_t sp = 0;
		stack[sp].wi = dirs[0];
		stack[sp++].nid = root_nid(&im);
		static struct ent e[512];
		while (sp > 0) {
			sp--;
			struct walk_inode *dw = stack[sp].wi;
			uint64_t dnid = stack[sp].nid;
			size_t n = rd_dir(&im, dnid, e, 512, NULL);
			assert_int_equal(n, dw->nchildren + 2);
			for (size_t c = 0; c < dw->nchildren; c++) {
				const struct walk_dentry *de = &dw->children[c];
				struct walk_inode *wi = de->inode;
				uint64_t nid = lookup(&im, dnid, de->name);
				struct ino i = rd_inode(&im, nid);
				assert_int_equal(i.mode, wi->mode);
				if (!S_ISDIR(wi->mode))
					assert_int_equal(i.size, wi->size);
				assert_int_equal(count_xattrs(&im, &i), wi->nxattrs);
				assert_int_equal(i.extended, wi->mtime_sec != 1000 ||
							     wi->uid > 65535);
				if (S_ISLNK(wi->mode))
					assert_memory_equal(im.b + data_off(&im, &i, 0),
							    wi->symlink, wi->size);
				if (S_ISCHR(wi->mode) || S_ISBLK(wi->mode))
					assert_int_equal(i.u, (wi->rdev_minor & 0xff) |
						wi->rdev_major << 8 |
						(wi->rdev_minor >> 8) << 20);
				if (S_ISDIR(wi->mode)) {
					assert_int_equal(lookup(&im, nid, ".."), dnid);
					assert_true(sp < 64);
					stack[sp].wi = wi;
					stack[sp++].nid = nid;
				}
			}
		}
		img_free(&im);
		tb_free(&t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_tree),
		cmocka_unit_test(test_big_dir_4k),
		cmocka_unit_test(test_big_dir_512),
		cmocka_unit_test(test_big_dir_16k_64k),
		cmocka_unit_test(test_xattrs),
		cmocka_unit_test(test_many_shared_xattrs),
		cmocka_unit_test(test_extended_inodes),
		cmocka_unit_test(test_file_layout),
		cmocka_unit_test(test_small_block_tails),
		cmocka_unit_test(test_root_moves),
		cmocka_unit_test(test_bad_trees),
		cmocka_unit_test(test_random_trees),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
