/* SPDX-License-Identifier: MIT */
/*
 * tree.c - tree models decoded from fuzz input, for the builders: a
 * struct walk_tree in memory, shaped as overlaywalk/walk.h promises
 * (children sorted bytewise, tree->inodes depth first, hard links sharing
 * an inode, nlink counted), with no file system behind it.
 *
 * Regular files are fake: their bytes are a function of a seed and the
 * offset (fake_byte()), zero outside the data extents of a sparse file,
 * with a PE header in front for kernels and boot loaders.  This file's
 * walk_open_data() replaces overlaywalk's (link-time substitution: the
 * harnesses link this archive member before the library): it returns a
 * memfd that holds the file's head and its data extents at their
 * offsets, holes elsewhere, so SEEK_DATA/SEEK_HOLE and the PE probe of
 * esp.c see what fake_byte() says.
 *
 * The input is a list of operations (see fake_tree_decode()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/cleanup.h"
#include "tests/fuzz/fuzz.h"

#define PE_HEAD		0x48	/* bytes of the fake PE header */
#define MAX_DENTRIES	70000	/* one directory past 65536 entries, not more */
#define FEW_DENTRIES	4096	/* until an input asks for 65536 hard links */
#define HEAD_BYTES	4096	/* what walk_open_data() writes of a file's start */
/* Xattrs of a tree: enough for one inode past the 16-bit icount of its
 * inline area (256 KiB, erofs-format.md §7.1); more only costs time. */
#define MAX_XATTRS	4096
#define MAX_XATTR_BYTES	(384u << 10)

/* ------------------------------------------------------------------ */
/* File contents                                                       */
/* ------------------------------------------------------------------ */

static uint8_t pattern(uint64_t seed, uint64_t off)
{
	uint8_t b = (uint8_t)(fz_mix(seed ^ (off >> 3) * 0x9e3779b97f4a7c15ULL) >> (8 * (off & 7)));
	return b ? b : 0x5a;	/* never 0: a hole read as data shows */
}

static bool in_data(const struct fake_inode *fi, uint64_t off)
{
	if (!fi->sparse)
		return true;
	size_t lo = 0, hi = fi->nextents;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct fake_extent *e = &fi->extents[mid];
		if (off < e->off)
			hi = mid;
		else if (off - e->off >= e->len)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static uint8_t pe_byte(enum fake_kind kind, uint64_t off, uint8_t other)
{
	uint16_t machine = kind == FAKE_PE_X86_64 ? 0x8664 : 0xaa64;

	switch (off) {
	case 0: return 'M';
	case 1: return 'Z';
	case 0x3c: return 0x40;		/* e_lfanew, le32 */
	case 0x3d: case 0x3e: case 0x3f: return 0;
	case 0x40: return 'P';
	case 0x41: return 'E';
	case 0x42: case 0x43: return 0;
	case 0x44: return (uint8_t)machine;
	case 0x45: return (uint8_t)(machine >> 8);
	}
	return other;
}

uint8_t fake_byte(const struct fake_inode *fi, uint64_t off)
{
	if (!in_data(fi, off))
		return 0;
	uint8_t b = pattern(fi->seed, off);
	if (fi->kind != FAKE_PATTERN && off < PE_HEAD)
		b = pe_byte(fi->kind, off, b);
	return b;
}

void fake_read(const struct fake_inode *fi, uint64_t off, void *buf, size_t len)
{
	uint8_t *out = buf;

	FZ_CHECK(off <= fi->wi.size && len <= fi->wi.size - off,
		 "read of %zu bytes at %llu past the end of '%s' (%llu bytes)", len,
		 (unsigned long long)off, fi->path, (unsigned long long)fi->wi.size);
	if (fi->sparse) {
		for (size_t i = 0; i < len; i++)
			out[i] = fake_byte(fi, off + i);
		return;
	}
	size_t i = 0;
	/* Word at a time: reads of megabytes stay cheap. */
	while (i < len) {
		uint64_t o = off + i;
		uint64_t w = fz_mix(fi->seed ^ (o >> 3) * 0x9e3779b97f4a7c15ULL);
		for (unsigned int k = o & 7; k < 8 && i < len; k++, i++) {
			uint8_t b = (uint8_t)(w >> (8 * k));
			out[i] = b ? b : 0x5a;
		}
	}
	if (fi->kind != FAKE_PATTERN)
		for (uint64_t o = off; o < PE_HEAD && o < off + len; o++)
			out[o - off] = pe_byte(fi->kind, o, out[o - off]);
}

/* Writes [off, off + len) of fi into fd at the same offset. */
static int write_range(int fd, const struct fake_inode *fi, uint64_t off, uint64_t len)
{
	uint8_t buf[4096];

	while (len > 0) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		fake_read(fi, off, buf, n);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			return -EIO;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * The substitute for overlaywalk's walk_open_data() (walk.h): a memfd
 * with the fake file's head (or, for a sparse file, its data extents)
 * written at their offsets, holes everywhere else.
 */
int walk_open_data(const struct walk_tree *tree, const struct walk_inode *inode)
{
	const struct fake_inode *fi = fake_of(inode);
	int fd, r = 0;

	if (!tree || !inode || !S_ISREG(inode->mode))
		return -EINVAL;
	if (fi->open_err)
		return fi->open_err;
	fd = memfd_create("fake", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)inode->size) < 0)
		r = -errno;
	if (fi->sparse) {
		for (size_t i = 0; r == 0 && i < fi->nextents; i++)
			r = write_range(fd, fi, fi->extents[i].off, fi->extents[i].len);
	} else if (r == 0) {
		r = write_range(fd, fi, 0, inode->size < HEAD_BYTES ? inode->size : HEAD_BYTES);
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

struct dec {
	struct fz *f;
	const struct tree_limits *lim;
	struct fake_tree *t;
	struct fake_inode **all;	/* creation order */
	size_t nall, all_cap;
	size_t *child_cap;		/* per inode (directories) */
	size_t ndentries;
	bool wide;			/* MAX_DENTRIES, not FEW_DENTRIES */
	struct fake_inode *stack[4096];	/* the current directory and its parents */
	size_t depth;
	struct fake_inode *last;	/* the last inode made */
	uint64_t total_size, total_data, xattr_bytes;
	size_t nxattrs;			/* in the whole tree */
	unsigned int many_next;		/* MANY names count on across operations */
	int64_t base_mtime;
};

static void bad(struct fake_tree *t, const char *why)
{
	if (!t->bad_entry)
		t->bad_why = why;
	t->bad_entry = true;
}

static void *t_alloc(struct fake_tree *t, size_t n)
{
	void *p = calloc(1, n ? n : 1);
	FZ_CHECK(p, "out of memory");
	if (t->nallocs == t->allocs_cap) {
		t->allocs_cap = t->allocs_cap ? 2 * t->allocs_cap : 64;
		t->allocs = realloc(t->allocs, t->allocs_cap * sizeof(*t->allocs));
		FZ_CHECK(t->allocs, "out of memory");
	}
	t->allocs[t->nallocs++] = p;
	return p;
}

static struct fake_inode *new_inode(struct dec *d, uint32_t mode)
{
	if (d->nall == d->all_cap) {
		d->all_cap = d->all_cap ? 2 * d->all_cap : 64;
		d->all = realloc(d->all, d->all_cap * sizeof(*d->all));
		d->child_cap = realloc(d->child_cap, d->all_cap * sizeof(*d->child_cap));
		FZ_CHECK(d->all && d->child_cap, "out of memory");
	}
	struct fake_inode *fi = t_alloc(d->t, sizeof(*fi));
	fi->wi.dev = 1;
	fi->wi.ino = d->nall + 1;
	fi->wi.mode = mode;
	fi->wi.mtime_sec = d->base_mtime;
	fi->seed = fz_mix(0x1234 + d->nall);
	d->child_cap[d->nall] = 0;
	d->all[d->nall++] = fi;
	d->last = fi;
	return fi;
}

static size_t index_of(struct dec *d, const struct fake_inode *fi)
{
	return (size_t)(fi->wi.ino - 1);
}

/* FAT-friendly name bytes, and some multi-byte UTF-8. */
static size_t fat_name_bytes(struct dec *d, char *out, size_t want)
{
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "0123456789._-~ ";
	static const char *const multi[] = { "\xc3\xa9", "\xc3\x89", "\xe6\x97\xa5",
					     "\xf0\x9f\x98\x80", "\xc3\x9f", "+", ",", "[" };
	size_t n = 0;

	while (n < want) {
		uint8_t b = fz_u8(d->f);
		if (b < 0xf0 || (b >= 0xf8 && b < 0xff)) {
			/* Letters, digits and ._-~ stay as they are. */
			out[n++] = b && strchr(alpha, b) ? (char)b : alpha[b % (sizeof(alpha) - 1)];
		} else if (b < 0xf8) {
			const char *m = multi[b - 0xf0];
			size_t ml = strlen(m);
			if (n + ml > want)
				break;
			memcpy(out + n, m, ml);
			n += ml;
		} else {
			out[n++] = (char)fz_u8(d->f);	/* anything at all */
		}
	}
	return n;
}

/*
 * A dentry name: 1..255 bytes of input with '/' and NUL replaced, or (in
 * FAT mode) mostly characters FAT takes.  With lim->invalid, a first byte
 * of 0xfe or 0xff gives a raw name: empty, over 255 bytes, or with any
 * bytes at all.
 */
static char *decode_name(struct dec *d, size_t *ret_len)
{
	uint8_t l = fz_u8(d->f);
	bool raw = d->lim->invalid && l >= 0xfe;
	size_t len = raw ? (l == 0xff ? 256 + fz_u8(d->f) : fz_u8(d->f) % 4) :
		     1 + (l % 64 == 63 ? 254 : l % 64);
	char *name = t_alloc(d->t, len + 1);

	if (raw) {
		fz_bytes(d->f, name, len);
		*ret_len = len;
		return name;
	}
	if (d->lim->fat_names) {
		len = fat_name_bytes(d, name, len);
		if (len == 0)
			name[len++] = 'x';
		/* Names ending in a dot or a space cannot be opened on FAT. */
		if (name[len - 1] == '.' || name[len - 1] == ' ')
			name[len - 1] = 'x';
	} else {
		fz_bytes(d->f, name, len);
	}
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == '\0')
			name[i] = (char)('a' + i % 26);
	name[len] = '\0';
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		name[0] = '_';
	*ret_len = len;
	return name;
}

static void add_dentry(struct dec *d, struct fake_inode *dir, char *name, size_t len,
		       struct fake_inode *child)
{
	size_t di = index_of(d, dir);
	struct walk_inode *w = &dir->wi;

	if (d->ndentries >= (d->wide ? MAX_DENTRIES : FEW_DENTRIES))
		return;		/* a bigger tree only makes the input slow */
	d->ndentries++;

	if (w->nchildren == d->child_cap[di]) {
		size_t cap = d->child_cap[di] ? 2 * d->child_cap[di] : 8;
		struct walk_dentry *c = t_alloc(d->t, cap * sizeof(*c));
		if (w->nchildren)
			memcpy(c, w->children, w->nchildren * sizeof(*c));
		w->children = c;	/* the old array stays allocated: freed at the end */
		d->child_cap[di] = cap;
	}
	w->children[w->nchildren++] = (struct walk_dentry){
		.name = name, .name_len = len, .inode = &child->wi,
	};
}

static struct fake_inode *cwd(struct dec *d)
{
	return d->stack[d->depth];
}

static bool room(struct dec *d)
{
	return d->nall < d->lim->max_inodes;
}

/* A file size: small mostly, near the limits sometimes. */
static uint64_t decode_size(struct dec *d)
{
	uint8_t c = fz_u8(d->f);
	uint64_t s;

	switch (c % 8) {
	case 0: s = 0; break;
	case 1: s = 1 + fz_u8(d->f); break;
	case 2: s = fz_u16(d->f); break;
	case 3: s = 4096 * (uint64_t)fz_u8(d->f) + (fz_u8(d->f) % 3) - 1; break;
	case 4: s = fz_u32(d->f); break;
	case 5: s = fz_u64(d->f) >> 16; break;
	case 6: s = ((1ULL << 32) - fz_u8(d->f)) * 512 + fz_u16(d->f); break;
	default: s = fz_u64(d->f) >> (c >> 3); break;
	}
	if (s > d->lim->max_file_size)
		s = c & 0x80 ? d->lim->max_file_size : s % (d->lim->max_file_size + 1);
	if (s > d->lim->max_total_size - d->total_size)
		s = d->lim->max_total_size - d->total_size;
	d->total_size += s;
	return s;
}

static struct fake_inode *make_file(struct dec *d, uint64_t size, enum fake_kind kind)
{
	struct fake_inode *fi = new_inode(d, S_IFREG | 0644);

	fi->wi.size = size;
	fi->wi.blocks = (size + 511) / 512;
	fi->kind = kind;
	return fi;
}

/* Turns the last regular file sparse: data extents decoded from the input. */
static void make_sparse(struct dec *d, unsigned int n)
{
	struct fake_inode *fi = d->last;
	uint64_t size;

	if (!fi || !S_ISREG(fi->wi.mode) || fi->sparse || fi->wi.size < 2)
		return;
	size = fi->wi.size;
	fi->extents = t_alloc(d->t, n * sizeof(*fi->extents));
	fi->nextents = 0;
	for (unsigned int i = 0; i < n; i++) {
		uint64_t off = (uint64_t)(((unsigned __int128)fz_u32(d->f) * size) >> 32);
		uint64_t len = 1 + (fz_u8(d->f) % 4 == 0 ? fz_u16(d->f) : fz_u8(d->f));
		if (fz_u8(d->f) & 1)
			off &= ~(uint64_t)4095;
		if (len > size - off)
			len = size - off;
		if (len > d->lim->max_data - d->total_data)
			len = d->lim->max_data - d->total_data;
		if (len == 0)
			continue;
		d->total_data += len;
		/* Insert sorted, merging overlaps. */
		size_t k = fi->nextents;
		fi->extents[k] = (struct fake_extent){ off, len };
		while (k > 0 && fi->extents[k - 1].off > off) {
			struct fake_extent tmp = fi->extents[k - 1];
			fi->extents[k - 1] = fi->extents[k];
			fi->extents[k] = tmp;
			k--;
		}
		fi->nextents++;
	}
	size_t m = 0;
	uint64_t data = 0;
	for (size_t i = 0; i < fi->nextents; i++) {
		struct fake_extent e = fi->extents[i];
		if (m && e.off <= fi->extents[m - 1].off + fi->extents[m - 1].len) {
			uint64_t end = e.off + e.len, pend = fi->extents[m - 1].off +
							     fi->extents[m - 1].len;
			if (end > pend)
				fi->extents[m - 1].len = end - fi->extents[m - 1].off;
		} else {
			fi->extents[m++] = e;
		}
	}
	fi->nextents = m;
	for (size_t i = 0; i < m; i++)
		data += fi->extents[i].len;
	/* st_blocks as a file system would count them: fewer than the size needs. */
	uint64_t blocks = (data + 511) / 512;
	if (blocks >= (size + 511) / 512) {
		fi->nextents = 0;	/* not sparse after all */
		return;
	}
	fi->sparse = true;
	fi->wi.blocks = blocks;
}

static const char *const xattr_prefixes[] = {
	"user.", "trusted.", "security.", "system.posix_acl_access",
	"system.posix_acl_default", "user.overlay.", "trusted.overlay.",
	"security.selinux",
};

/* Adds one xattr to inode fi: a known prefix (or a bad one), a suffix and
 * a value of up to 65535 bytes (more when invalid). */
static void add_xattr(struct dec *d, struct fake_inode *fi, bool many, unsigned int k)
{
	struct walk_inode *w = &fi->wi;
	uint8_t pc = fz_u8(d->f);
	const char *prefix = xattr_prefixes[pc % ARRAY_SIZE(xattr_prefixes)];
	char suffix[300];
	size_t sl;

	if (w->nxattrs >= d->lim->max_xattrs || d->nxattrs >= MAX_XATTRS)
		return;
	d->nxattrs++;
	if (d->lim->invalid && pc >= 0xf8)
		prefix = pc & 1 ? "system.nfs4_acl" : "lustre.";
	if (!strncmp(prefix, "system.", 7) || !strcmp(prefix, "security.selinux")) {
		sl = 0;
	} else if (many) {
		sl = (size_t)snprintf(suffix, sizeof(suffix), "x%u", k);
	} else {
		sl = fz_u8(d->f) % 32;
		if (sl == 31)
			sl = 255 + (d->lim->invalid && (fz_u8(d->f) & 1));
		fz_bytes(d->f, suffix, sl);
		for (size_t i = 0; i < sl; i++)
			if (!suffix[i])
				suffix[i] = (char)('a' + i % 26);
	}
	uint8_t vc = fz_u8(d->f);
	size_t vl;
	switch (vc % 4) {
	case 0: vl = vc >> 2; break;
	case 1: vl = fz_u8(d->f); break;
	case 2: vl = fz_u16(d->f); break;
	default: vl = 65535 + (d->lim->invalid && (vc & 0x80)); break;
	}
	if (vl > MAX_XATTR_BYTES - d->xattr_bytes)
		vl = 0;
	d->xattr_bytes += vl;

	size_t pl = strlen(prefix);
	char *name = t_alloc(d->t, pl + sl + 1);
	memcpy(name, prefix, pl);
	memcpy(name + pl, suffix, sl);
	name[pl + sl] = '\0';
	/* The walk has each name once: drop a repeat. */
	for (size_t i = 0; i < w->nxattrs; i++)
		if (!strcmp(w->xattrs[i].name, name))
			return;
	uint8_t *value = t_alloc(d->t, vl);
	uint8_t vseed = fz_u8(d->f);	/* few seeds: values repeat, get shared */
	uint64_t word = 0;
	for (size_t i = 0; i < vl; i++) {
		if (i % 8 == 0)
			word = fz_mix(vseed + i);
		value[i] = (uint8_t)(word >> (8 * (i % 8)));
	}
	struct walk_xattr *x = t_alloc(d->t, (w->nxattrs + 1) * sizeof(*x));
	if (w->nxattrs)
		memcpy(x, w->xattrs, w->nxattrs * sizeof(*x));
	x[w->nxattrs++] = (struct walk_xattr){ name, value, vl };
	w->xattrs = x;

}

/*
 * Whether EROFS can hold inode w (erofs-format.md): a known file type,
 * nanoseconds below 10^9, a symlink of 1..4095 bytes (§9), a device
 * number that fits the 32-bit encoding (§5.4), xattrs with a short name
 * prefix (§7.2), suffixes up to 255 bytes, values up to 65535, and an
 * inline area whose icount fits 16 bits even with nothing shared (§7.1).
 * Returns NULL or what is wrong.
 */
static const char *judge_inode(const struct walk_inode *w)
{
	static const struct { const char *p; bool exact; } known[] = {
		{ "user.", false }, { "trusted.", false }, { "security.", false },
		{ "system.posix_acl_access", true }, { "system.posix_acl_default", true },
	};
	uint64_t isize = 12;

	switch (w->mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFIFO: case S_IFSOCK:
		break;
	case S_IFLNK:
		if (w->size == 0 || w->size > 4095)
			return "symlink length";
		break;
	case S_IFCHR: case S_IFBLK:
		if (w->rdev_major >= 4096 || w->rdev_minor >= 1u << 20)
			return "device number";
		break;
	default:
		return "file type";
	}
	if (w->mtime_nsec > 999999999)
		return "nanoseconds";
	for (size_t i = 0; i < w->nxattrs; i++) {
		const char *name = w->xattrs[i].name;
		size_t suffix = SIZE_MAX;
		for (size_t k = 0; k < ARRAY_SIZE(known) && suffix == SIZE_MAX; k++) {
			size_t n = strlen(known[k].p);
			if (!strncmp(name, known[k].p, n) && (!known[k].exact || !name[n]))
				suffix = strlen(name) - n;
		}
		if (suffix == SIZE_MAX)
			return "xattr prefix";
		if (suffix > 255)
			return "xattr name length";
		if (w->xattrs[i].value_len > 65535)
			return "xattr value size";
		isize += (4 + suffix + w->xattrs[i].value_len + 3) & ~(uint64_t)3;
	}
	if (w->nxattrs && (isize - 12) / 4 + 1 > 0xffff)
		return "xattr area";
	return NULL;
}

/* Whether EROFS can hold a dentry name (§8): 1..255 bytes, no '/' or
 * NUL, not "." or "..". */
static bool name_ok(const char *name, size_t len)
{
	return len >= 1 && len <= 255 && !memchr(name, '/', len) && !memchr(name, 0, len) &&
	       !(len == 1 && name[0] == '.') && !(len == 2 && !memcmp(name, "..", 2));
}

static void judge(struct fake_tree *t)
{
	const struct walk_tree *tree = &t->tree;

	for (size_t i = 0; i < tree->ninodes && !t->bad_entry; i++) {
		const struct walk_inode *w = tree->inodes[i];
		const char *why = judge_inode(w);
		if (why)
			bad(t, why);
		for (size_t k = 0; S_ISDIR(w->mode) && k < w->nchildren; k++)
			if (!name_ok(w->children[k].name, w->children[k].name_len))
				bad(t, "name");
	}
}

static int dentry_cmp(const void *a, const void *b)
{
	const struct walk_dentry *x = a, *y = b;
	int r = fz_memcmp(x->name, y->name,
			  x->name_len < y->name_len ? x->name_len : y->name_len);
	return r ? r : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static int xattr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct walk_xattr *)a)->name, ((const struct walk_xattr *)b)->name);
}

/* Sorts every directory, drops repeated names (unless invalid), and
 * lists the inodes depth first as walk_tree() does, with paths, parents
 * and link counts. */
static void finish(struct dec *d, bool keep_dups)
{
	struct fake_tree *t = d->t;
	struct walk_tree *tree = &t->tree;
	bool *seen = calloc(d->nall, sizeof(*seen));
	struct { struct fake_inode *dir; size_t next; } *st =
		malloc((d->nall + 1) * sizeof(*st));
	FZ_CHECK(seen && st, "out of memory");

	for (size_t i = 0; i < d->nall; i++) {
		struct walk_inode *w = &d->all[i]->wi;
		if (w->nxattrs)
			qsort(w->xattrs, w->nxattrs, sizeof(*w->xattrs), xattr_cmp);
		if (!S_ISDIR(w->mode) || !w->nchildren)
			continue;
		qsort(w->children, w->nchildren, sizeof(*w->children), dentry_cmp);
		size_t m = 0;
		for (size_t k = 0; k < w->nchildren; k++) {
			if (m && !dentry_cmp(&w->children[m - 1], &w->children[k])) {
				if (!keep_dups)
					continue;
				t->bad_shape = true;
			}
			w->children[m++] = w->children[k];
		}
		w->nchildren = m;
	}

	tree->inodes = t_alloc(t, d->nall * sizeof(*tree->inodes));
	struct fake_inode *root = d->all[0];
	root->path = "";
	root->wi.name = "";
	root->wi.parent = &root->wi;
	tree->inodes[tree->ninodes++] = &root->wi;
	seen[0] = true;
	size_t sp = 0;
	st[sp].dir = root;
	st[sp].next = 0;
	sp = 1;
	while (sp > 0) {
		struct fake_inode *dir = st[sp - 1].dir;
		struct walk_inode *w = &dir->wi;
		if (st[sp - 1].next == w->nchildren) {
			sp--;
			continue;
		}
		struct walk_dentry *de = &w->children[st[sp - 1].next++];
		struct fake_inode *c = fake_of(de->inode);
		size_t ci = index_of(d, c);
		c->wi.nlink++;
		if (S_ISDIR(c->wi.mode))
			w->nlink++;
		if (seen[ci]) {
			if (S_ISDIR(c->wi.mode))
				t->bad_shape = true;	/* a directory linked twice */
			continue;
		}
		seen[ci] = true;
		size_t pl = strlen(dir->path);
		char *path = t_alloc(t, pl + 1 + de->name_len + 1);
		memcpy(path, dir->path, pl);
		if (pl)
			path[pl++] = '/';
		memcpy(path + pl, de->name, de->name_len);
		c->path = path;
		c->wi.parent = w;
		c->wi.name = de->name;
		tree->inodes[tree->ninodes++] = &c->wi;
		if (S_ISDIR(c->wi.mode)) {
			c->wi.parent = w;
			c->wi.nlink += 2 - 1;	/* 2 + subdirectories; the +1 above was ours */
			st[sp].dir = c;
			st[sp].next = 0;
			sp++;
		}
	}
	root->wi.nlink += 2;
	tree->root = &root->wi;
	tree->root_fd = -1;
	judge(t);
	free(seen);
	free(st);
}

/*
 * Decodes operations until the input or the inode budget runs out.  Each
 * starts with a byte: op = b % 16, aux = b / 16.
 *   0-1, 15 FILE       name, size (decode_size), attributes byte
 *   2  DIR             name; the new directory becomes the current one
 *   3  UP              back to the parent directory
 *   4  SYMLINK         name, target (1..4095 bytes; 0 or 4096+ if invalid)
 *   5  SPECIAL         name; aux & 3: char, block, FIFO, socket; rdev
 *   6  HARDLINK        name, u16: another dentry for an earlier non-directory;
 *                      with aux >= 8: 1 + u8 * (aux - 7) dentries "hN" for the
 *                      last inode, with aux 15: 1 + u16 (up to 65536: nlink
 *                      past 16 bits).  A tree has at most FEW_DENTRIES
 *                      dentries, MAX_DENTRIES once aux 15 came.
 *   7  XATTR           on the last inode (aux & 1: on the current directory)
 *   8  MANY            1 + u8 * (aux / 4 + 1) entries of kind aux % 4 (files,
 *                      directories, symlinks, FIFOs) named "fN", "dN", ...
 *   9  DEEP            1 + u8 nested directories, entered
 *   10 ATTR            mode, uid, gid, mtime of the last inode
 *   11 MANYX           1 + u8 xattrs "user.xN" on the last inode
 *   12 SPARSE          the last file gets 1 + aux % 8 data extents
 *   13 KERNEL          a file with a PE header (x86-64 or arm64)
 *   14 EMPTY           an empty file
 */
struct fake_tree *fake_tree_decode(struct fz *f, const struct tree_limits *lim)
{
	struct fake_tree *t = calloc(1, sizeof(*t));
	struct dec d = { .f = f, .lim = lim, .t = t };
	bool keep_dups = false;

	FZ_CHECK(t, "out of memory");
	d.base_mtime = 1700000000 + fz_u8(f);
	struct fake_inode *root = new_inode(&d, S_IFDIR | 0755);
	d.stack[0] = root;
	if (lim->invalid)
		keep_dups = fz_u8(f) == 0x5d;

	while (f->n && room(&d)) {
		uint8_t b = fz_u8(f);
		unsigned int op = b % 16, aux = b / 16;
		struct fake_inode *fi = NULL;
		size_t nl;
		char *name;

		switch (op) {
		case 0: case 1: case 15: case 13: case 14: {
			name = decode_name(&d, &nl);
			enum fake_kind kind = op != 13 ? FAKE_PATTERN :
					      aux & 1 ? FAKE_PE_ARM64 : FAKE_PE_X86_64;
			uint64_t size = op == 14 ? 0 : decode_size(&d);
			if (op == 13 && size < 0x48)
				size = 0x48 + fz_u8(f);
			fi = make_file(&d, size, kind);
			fi->wi.mode = S_IFREG | (aux & 1 ? 0755 : 0644);
			if (aux == 15 && lim->invalid)
				fi->open_err = -EIO;	/* vanished since the walk */
			add_dentry(&d, cwd(&d), name, nl, fi);
			break;
		}
		case 2:
			name = decode_name(&d, &nl);
			fi = new_inode(&d, S_IFDIR | 0755);
			add_dentry(&d, cwd(&d), name, nl, fi);
			if (d.depth + 1 < lim->max_depth && d.depth + 1 < ARRAY_SIZE(d.stack))
				d.stack[++d.depth] = fi;
			break;
		case 3:
			for (unsigned int i = 0; i <= aux && d.depth > 0; i++)
				d.depth--;
			break;
		case 4: {
			name = decode_name(&d, &nl);
			uint16_t tl = fz_u16(f);
			size_t len = tl % 4096;
			if (!len)	/* 0 or 4096 bytes only where invalid trees may be */
				len = !lim->invalid ? 1 : tl & 0x8000 ? 4096 : 0;
			char *target = t_alloc(t, len + 1);
			size_t given = fz_u8(f);
			for (size_t i = 0; i < len; i++) {
				char c = i < given ? (char)fz_u8(f) : "../a/b"[i % 6];
				target[i] = c ? c : '/';
			}
			fi = new_inode(&d, S_IFLNK | 0777);
			fi->wi.size = len;
			fi->wi.symlink = target;
			add_dentry(&d, cwd(&d), name, nl, fi);
			break;
		}
		case 5: {
			static const uint32_t types[] = { S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK };
			name = decode_name(&d, &nl);
			fi = new_inode(&d, types[aux & 3] | 0600);
			if (aux < 4) {
				fi->wi.rdev_major = fz_u16(f) % 4096;
				fi->wi.rdev_minor = fz_u32(f) % (1u << 20);
				if (lim->invalid && (aux & 2) == 0 && fz_u8(f) == 0xff) {
					fi->wi.rdev_major = 4096;
				}
			}
			if (aux >= 12 && lim->invalid) {
				fi->wi.mode = 0xe000 | 0600;	/* no such file type */
			}
			add_dentry(&d, cwd(&d), name, nl, fi);
			break;
		}
		case 6: {
			if (aux >= 8) {
				/* Many links to the last inode: nlink past 16 bits
				 * (aux 15), or a few hundred (cheaper, so more often). */
				unsigned int n = aux == 15 ? 1 + fz_u16(f) :
						 1 + fz_u8(f) * (aux - 7);
				struct fake_inode *target = d.last;
				if (S_ISDIR(target->wi.mode))
					break;
				d.wide |= aux == 15;
				for (unsigned int i = 0; i < n; i++) {
					char *nm = t_alloc(t, 16);
					size_t len = (size_t)snprintf(nm, 16, "h%u", d.many_next++);
					add_dentry(&d, cwd(&d), nm, len, target);
				}
				break;
			}
			name = decode_name(&d, &nl);
			uint16_t k = fz_u16(f);
			struct fake_inode *target = d.all[k % d.nall];
			if (S_ISDIR(target->wi.mode)) {
				if (!(lim->invalid && aux == 15))
					break;
				if (target == root)	/* would loop */
					break;
			}
			add_dentry(&d, cwd(&d), name, nl, target);
			break;
		}
		case 7:
			add_xattr(&d, aux & 1 ? cwd(&d) : d.last, false, 0);
			break;
		case 8: {
			unsigned int n = 1 + fz_u8(f) * (aux / 4 + 1), kind = aux & 3;
			for (unsigned int i = 0; i < n && room(&d); i++) {
				char *nm = t_alloc(t, 16);
				size_t len = (size_t)snprintf(nm, 16, "%c%u", "fdls"[kind],
							      d.many_next++);
				if (kind == 0)
					fi = make_file(&d, i % 7 == 0 ? 0 : 1 + i % 5000,
						       FAKE_PATTERN);
				else if (kind == 1)
					fi = new_inode(&d, S_IFDIR | 0755);
				else if (kind == 2) {
					fi = new_inode(&d, S_IFLNK | 0777);
					fi->wi.symlink = nm;
					fi->wi.size = len;
				} else {
					fi = new_inode(&d, S_IFIFO | 0644);
				}
				add_dentry(&d, cwd(&d), nm, len, fi);
			}
			break;
		}
		case 9: {
			unsigned int n = 1 + fz_u8(f);
			for (unsigned int i = 0; i < n && room(&d); i++) {
				if (d.depth + 1 >= lim->max_depth ||
				    d.depth + 1 >= ARRAY_SIZE(d.stack))
					break;
				char *nm = t_alloc(t, 8);
				size_t len = (size_t)snprintf(nm, 8, "d%u", aux);
				fi = new_inode(&d, S_IFDIR | 0755);
				add_dentry(&d, cwd(&d), nm, len, fi);
				d.stack[++d.depth] = fi;
			}
			break;
		}
		case 10: {
			struct walk_inode *w = &d.last->wi;
			w->mode = (w->mode & S_IFMT) | (fz_u16(f) & 07777);
			static const uint32_t ids[] = {
				0, 1, 1000, 65534, 65535, 65536, UINT32_MAX,
			};
			uint8_t u = fz_u8(f);
			w->uid = u < 7 * 16 ? ids[u % 7] : fz_u32(f);
			w->gid = ids[fz_u8(f) % 7];
			uint8_t m = fz_u8(f);
			if (m & 1)
				w->mtime_sec = (int64_t)fz_u64(f);
			else if (m & 2)
				w->mtime_sec = d.base_mtime + (m >> 2);
			w->mtime_nsec = m & 4 ? fz_u32(f) % 1000000000u : 0;
			if (lim->invalid && m == 0xff) {
				w->mtime_nsec = 1000000000u;
			}
			break;
		}
		case 11: {
			unsigned int n = 1 + fz_u8(f);
			for (unsigned int i = 0; i < n; i++)
				add_xattr(&d, d.last, true, i);
			break;
		}
		case 12:
			make_sparse(&d, 1 + aux % 8);
			break;
		}
	}
	finish(&d, keep_dups);
	free(d.all);
	free(d.child_cap);
	return t;
}

void fake_tree_dump(const struct fake_tree *t)
{
	const struct walk_tree *tree = &t->tree;

	fprintf(stderr, "tree: %zu inodes%s%s%s\n", tree->ninodes,
		t->bad_entry ? ", bad entry: " : "", t->bad_entry ? t->bad_why : "",
		t->bad_shape ? ", bad shape" : "");
	for (size_t i = 0; i < tree->ninodes; i++) {
		const struct walk_inode *w = tree->inodes[i];
		const struct fake_inode *fi = fake_of(w);
		fprintf(stderr, "  ino %llu mode 0%o size %llu blocks %llu nlink %u uid %u "
			"gid %u mtime %lld.%u%s%s '", (unsigned long long)w->ino, w->mode,
			(unsigned long long)w->size, (unsigned long long)w->blocks, w->nlink,
			w->uid, w->gid, (long long)w->mtime_sec, w->mtime_nsec,
			fi->sparse ? " sparse" : "", fi->open_err ? " unopenable" : "");
		for (const char *p = fi->path; *p; p++)
			fputs((unsigned char)*p >= 0x20 && *p != '\\' && *p < 0x7f ?
			      (char[]){ *p, 0 } : "?", stderr);
		fprintf(stderr, "'\n");
		for (size_t k = 0; k < w->nxattrs; k++)
			fprintf(stderr, "    xattr '%.40s' (%zu bytes) %zu-byte value\n",
				w->xattrs[k].name, strlen(w->xattrs[k].name),
				w->xattrs[k].value_len);
		for (size_t k = 0; k < fi->nextents; k++)
			fprintf(stderr, "    data [%llu, +%llu)\n",
				(unsigned long long)fi->extents[k].off,
				(unsigned long long)fi->extents[k].len);
	}
}

void fake_tree_free(struct fake_tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nallocs; i++)
		free(t->allocs[i]);
	free(t->allocs);
	free(t);
}
