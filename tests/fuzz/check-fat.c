/* SPDX-License-Identifier: MIT */
/*
 * check-fat.c - checks a FAT32 volume (inside a region map) the way
 * fsck.fat, Linux vfat and EDK2 look at it, with the rules of
 * shared/docs/fat32-gpt.md Part A (sections below), and against the tree
 * it was built from:
 *
 *   A.2  BPB fields, FAT32 by fat_sz16 = 0, hidden sectors, label, serial
 *   A.3  FSInfo signatures, the exact free count, a next-free hint that is
 *        free
 *   A.4  backup boot sector and FSInfo, zero reserved sectors
 *   A.5  both FATs identical, entries 0 and 1, zero top bits, zero slots
 *        past the last cluster, chains that end, no cross links, every
 *        allocated cluster in some chain, chain lengths = sizes
 *   A.6  at least 65525 clusters (EDK2)
 *   A.8-A.12  directory entries: ".", "..", the label in the root, LFN
 *        ordinals and checksums, short names legal and unique, long names
 *        and case flags giving exactly the tree's names, DOS dates
 *   file bytes sampled through the chains equal the tree's files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "fat/fat.h"
#include "overlaywalk/source.h"
#include "server/byteorder.h"
#include "tests/fuzz/fuzz.h"

#define SEC 512u

struct vol {
	const struct region_map *map;
	uint64_t base, size;
	uint32_t spc, cbytes, rsvd, fatsz, tot, data, nclus;
	uint32_t *fat;		/* FAT #1 up to its last non-zero entry */
	size_t nfat;		/* entries in fat[]; the rest are 0 (free) */
	uint8_t *used;		/* per cluster < nfat: in a chain already */
};

static void vread(const struct vol *v, uint64_t off, void *buf, size_t len, const char *what)
{
	FZ_CHECK(off <= v->size && len <= v->size - off, "%s: %zu bytes at %llu past the "
		 "volume end (%llu)", what, len, (unsigned long long)off,
		 (unsigned long long)v->size);
	map_read(v->map, v->base + off, buf, len);
}

static uint64_t clus_off(const struct vol *v, uint32_t c)
{
	return ((uint64_t)v->data + (uint64_t)(c - 2) * v->spc) * SEC;
}

/* Follows the chain from c (A.5): returns its clusters (malloc'ed), marks
 * them used, fails on loops, cross links, free or bad entries. */
static uint32_t *chain(struct vol *v, uint32_t c, size_t *ret_n, const char *what)
{
	size_t n = 0, cap = 16;
	uint32_t *out = malloc(cap * sizeof(*out));

	FZ_CHECK(out, "out of memory");
	for (;;) {
		FZ_CHECK(c >= 2 && c < v->nclus + 2, "%s: cluster %u outside 2..%u", what, c,
			 v->nclus + 1);
		FZ_CHECK(c < v->nfat, "%s: chain reaches free cluster %u", what, c);
		FZ_CHECK(!v->used[c], "%s: cluster %u cross-linked or looping", what, c);
		v->used[c] = 1;
		if (n == cap) {
			cap *= 2;
			out = realloc(out, cap * sizeof(*out));
			FZ_CHECK(out, "out of memory");
		}
		out[n++] = c;
		uint32_t next = v->fat[c] & 0x0FFFFFFF;
		if (next >= 0x0FFFFFF8)
			break;
		FZ_CHECK(next != 0 && next != 0x0FFFFFF7, "%s: chain of cluster %u ends in "
			 "0x%08x", what, c, next);
		c = next;
	}
	*ret_n = n;
	return out;
}

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

/* A.11: bytes a short name may hold (besides >= 0x80, OEM code page). */
static bool sfn_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80 ||
	       (c && strchr("!#$%&'()-@^_`{}~", c));
}

static uint8_t lfn_sum(const uint8_t sn[11])
{
	uint8_t s = 0;
	for (int i = 0; i < 11; i++)
		s = (uint8_t)(((s & 1) << 7) + (s >> 1) + sn[i]);
	return s;
}

/* The name a short entry shows without LFN: case flags applied (A.8). */
static int short_display(const uint8_t sn[11], uint8_t nt, uint16_t *out)
{
	int n = 0, bl = 8, el = 3;
	while (bl > 0 && sn[bl - 1] == ' ')
		bl--;
	while (el > 0 && sn[8 + el - 1] == ' ')
		el--;
	for (int i = 0; i < bl; i++) {
		uint8_t c = i == 0 && sn[0] == 0x05 ? 0xE5 : sn[i];
		out[n++] = (nt & 0x08) && c >= 'A' && c <= 'Z' ? c + 32 : c;
	}
	if (el) {
		out[n++] = '.';
		for (int i = 0; i < el; i++) {
			uint8_t c = sn[8 + i];
			out[n++] = (nt & 0x10) && c >= 'A' && c <= 'Z' ? c + 32 : c;
		}
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* Directories                                                         */
/* ------------------------------------------------------------------ */

struct fent {
	uint16_t name[260];
	int nlen;
	uint8_t sn[11];
	uint8_t attr;
	uint32_t cluster, size;
	uint16_t wdate, wtime;
};

/* Parses a directory's bytes into entries (A.8, A.12). */
static struct fent *parse_dir(const uint8_t *buf, size_t len, size_t *ret_n,
			      const char *path)
{
	size_t n = 0, cap = 16;
	struct fent *out = malloc(cap * sizeof(*out));
	uint16_t lfn[260];
	int lfn_left = 0, lfn_total = 0;
	uint8_t lfn_chk = 0;
	bool ended = false;

	FZ_CHECK(out, "out of memory");
	for (size_t off = 0; off + 32 <= len; off += 32) {
		const uint8_t *e = buf + off;
		if (ended) {
			FZ_CHECK(e[0] == 0, "'%s': entries after the end marker", path);
			continue;
		}
		if (e[0] == 0) {
			FZ_CHECK(!lfn_left, "'%s': LFN slots without their entry", path);
			for (int i = 0; i < 32; i++)
				FZ_CHECK(e[i] == 0, "'%s': end marker slot not all zero", path);
			ended = true;
			continue;
		}
		FZ_CHECK(e[0] != 0xE5, "'%s': deleted entry in a fresh volume", path);
		if (e[11] == 0x0F) {
			uint8_t ord = e[0];
			FZ_CHECK(e[12] == 0 && get_le16(e + 26) == 0, "'%s': LFN type or cluster",
				 path);
			if (ord & 0x40) {
				FZ_CHECK(!lfn_left, "'%s': LFN sequence interrupted", path);
				lfn_total = lfn_left = ord & 0x3f;
				FZ_CHECK(lfn_left >= 1 && lfn_left <= 20, "'%s': LFN ordinal %u",
					 path,
					 ord);
				lfn_chk = e[13];
				for (int i = 0; i < 260; i++)
					lfn[i] = 0xFFFF;
			} else {
				FZ_CHECK(lfn_left && ord == lfn_left,
					 "'%s': LFN ordinal %u, expected "
					 "%d", path, ord, lfn_left);
				FZ_CHECK(e[13] == lfn_chk, "'%s': LFN checksums differ", path);
			}
			static const int pos[13] = {	/* byte offsets of the 13 units */
				1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30,
			};
			for (int k = 0; k < 13; k++)
				lfn[(lfn_left - 1) * 13 + k] = get_le16(e + pos[k]);
			lfn_left--;
			continue;
		}
		FZ_CHECK(!(lfn_left > 0), "'%s': short entry inside an LFN sequence", path);
		if (n == cap) {
			cap *= 2;
			out = realloc(out, cap * sizeof(*out));
			FZ_CHECK(out, "out of memory");
		}
		struct fent *f = &out[n++];
		memset(f, 0, sizeof(*f));
		memcpy(f->sn, e, 11);
		f->attr = e[11];
		f->cluster = (uint32_t)get_le16(e + 20) << 16 | get_le16(e + 26);
		f->size = get_le32(e + 28);
		f->wtime = get_le16(e + 22);
		f->wdate = get_le16(e + 24);
		FZ_CHECK(!(e[12] & ~0x18), "'%s': NT case byte 0x%02x", path, e[12]);
		if (lfn_total) {
			FZ_CHECK(lfn_sum(f->sn) == lfn_chk, "'%s': LFN checksum 0x%02x, short name "
				 "'%.11s' gives 0x%02x", path, lfn_chk, f->sn, lfn_sum(f->sn));
			int l = 0;
			while (l < lfn_total * 13 && lfn[l] != 0 && lfn[l] != 0xFFFF)
				l++;
			/* A.12: one 0x0000 after a short last piece, then 0xFFFF. */
			for (int k = l; k < lfn_total * 13; k++)
				FZ_CHECK(lfn[k] == (k == l ? 0 : 0xFFFF), "'%s': LFN padding",
					 path);
			FZ_CHECK(l > (lfn_total - 1) * 13 && l <= 255, "'%s': LFN length %d in %d "
				 "slots", path, l, lfn_total);
			memcpy(f->name, lfn, (size_t)l * 2);
			f->nlen = l;
			lfn_total = 0;
			FZ_CHECK(e[12] == 0, "'%s': case flags with LFN", path);
		} else if (memcmp(f->sn, ".          ", 11) && memcmp(f->sn, "..         ", 11)) {
			f->nlen = short_display(f->sn, e[12], f->name);
		}
		if (!(f->attr & 0x08) && memcmp(f->sn, ".          ", 11) &&
		    memcmp(f->sn, "..         ", 11)) {
			FZ_CHECK(f->sn[0] != ' ', "'%s': short name starts with a space", path);
			for (int i = 0; i < 11; i++)
				FZ_CHECK(sfn_char(f->sn[i]) || f->sn[i] == ' ' ||
					 (i == 0 && f->sn[i] == 0x05),
					 "'%s': short name '%.11s' has byte 0x%02x", path, f->sn,
					 f->sn[i]);
		}
		/* A.8: a valid DOS date and time. */
		unsigned int mon = (f->wdate >> 5) & 15, day = f->wdate & 31;
		FZ_CHECK(mon >= 1 && mon <= 12 && day >= 1 && (f->wtime >> 11) < 24 &&
			 ((f->wtime >> 5) & 63) < 60 && (f->wtime & 31) < 30,
			 "'%s': DOS date 0x%04x time 0x%04x", path, f->wdate, f->wtime);
	}
	FZ_CHECK(!lfn_left, "'%s': LFN slots at the directory end", path);
	*ret_n = n;
	return out;
}

/* Reads the clusters of a chain into one buffer. */
static uint8_t *read_chain(const struct vol *v, const uint32_t *cl, size_t n, size_t *ret_len)
{
	size_t len = n * v->cbytes;
	uint8_t *buf = malloc(len ? len : 1);
	FZ_CHECK(buf, "out of memory");
	for (size_t i = 0; i < n; i++)
		vread(v, clus_off(v, cl[i]), buf + i * v->cbytes, v->cbytes, "directory cluster");
	*ret_len = len;
	return buf;
}

/* Reads len bytes at off of a file through its chain (sampling). */
static void file_bytes(const struct vol *v, const uint32_t *cl, uint64_t off, void *buf,
		       size_t len)
{
	uint8_t *o = buf;
	while (len > 0) {
		uint64_t ci = off / v->cbytes, in = off % v->cbytes;
		size_t n = v->cbytes - in < len ? (size_t)(v->cbytes - in) : len;
		vread(v, clus_off(v, cl[ci]) + in, o, n, "file data");
		o += n;
		off += n;
		len -= n;
	}
}

static void check_file_data(const struct vol *v, const uint32_t *cl, const struct fat_node *fn,
			    const char *path)
{
	uint64_t offs[4] = { 0, fn->size - 1, fn->size / 2, fn->size - fn->size % v->cbytes };
	for (int i = 0; i < 4; i++) {
		uint8_t got[32], want[32];
		uint64_t off = offs[i] < fn->size ? offs[i] : 0;
		size_t n = fn->size - off < sizeof(got) ? (size_t)(fn->size - off) : sizeof(got);
		file_bytes(v, cl, off, got, n);
		if (fn->src) {
			fake_read(fake_of(fn->src->opaque), off, want, n);
		} else {
			memcpy(want, (const uint8_t *)fn->mem + off, n);
		}
		FZ_CHECK(!memcmp(got, want, n), "'%s': bytes at %llu differ", path,
			 (unsigned long long)off);
	}
}

/* 1980..2107 UTC, seconds rounded down to even (what fat_dos_time() says
 * it does; recomputed here with gmtime). */
static void dos_time(int64_t t, uint16_t *date, uint16_t *tim)
{
	struct tm tm;
	if (t < 315532800)
		t = 315532800;
	if (t > 4354819198LL)
		t = 4354819198LL;
	time_t tt = (time_t)t;
	gmtime_r(&tt, &tm);
	*date = (uint16_t)((tm.tm_year - 80) << 9 | (tm.tm_mon + 1) << 5 | tm.tm_mday);
	*tim = (uint16_t)(tm.tm_hour << 11 | tm.tm_min << 5 | tm.tm_sec / 2);
}

static uint16_t fold(uint16_t u)
{
	if (u >= 'a' && u <= 'z')
		return u - 32;
	return u;
}

static int sn_cmp(const void *a, const void *b)
{
	return memcmp((*(struct fent *const *)a)->sn, (*(struct fent *const *)b)->sn, 11);
}

static int units_cmp(const struct fent *x, const struct fent *y, bool folded)
{
	for (int i = 0; i < x->nlen && i < y->nlen; i++) {
		uint16_t a = folded ? fold(x->name[i]) : x->name[i];
		uint16_t b = folded ? fold(y->name[i]) : y->name[i];
		if (a != b)
			return a < b ? -1 : 1;
	}
	return (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

static int folded_cmp(const void *a, const void *b)
{
	return units_cmp(*(struct fent *const *)a, *(struct fent *const *)b, true);
}

static int exact_cmp(const void *a, const void *b)
{
	return units_cmp(*(struct fent *const *)a, *(struct fent *const *)b, false);
}

/* Checks directory d (chain cl) and recurses; dn is its tree node or NULL. */
static void check_dir(struct vol *v, const uint32_t *cl, size_t ncl, const struct fat_node *dn,
		      bool root, uint32_t self, uint32_t parent, const uint8_t label[11],
		      const char *path, int depth)
{
	size_t len, n;
	uint8_t *buf = read_chain(v, cl, ncl, &len);
	struct fent *ents = parse_dir(buf, len, &n, path);
	size_t first = 0;

	FZ_CHECK(depth < 10000, "directories nested too deep");
	if (root) {
		bool has_label = memcmp(label, "NO NAME    ", 11) != 0;
		for (size_t i = 0; i < n; i++)
			if (ents[i].attr & 0x08) {
				FZ_CHECK(i == 0 && has_label && !memcmp(ents[i].sn, label, 11) &&
					 ents[i].cluster == 0 && ents[i].size == 0,
					 "root: label entry '%.11s' (BPB says '%.11s')", ents[i].sn,
					 label);
				first = 1;
			}
		FZ_CHECK(!has_label || first == 1, "root: BPB label without its entry");
	} else {
		FZ_CHECK(n >= 2 && !memcmp(ents[0].sn, ".          ", 11) &&
			 !memcmp(ents[1].sn, "..         ", 11) && ents[0].attr == 0x10 &&
			 ents[1].attr == 0x10, "'%s': no '.' and '..' first", path);
		FZ_CHECK(ents[0].cluster == self, "'%s': '.' points at %u, not %u", path,
			 ents[0].cluster, self);
		/* A.9: ".." of a child of the root is cluster 0. */
		FZ_CHECK(ents[1].cluster == parent, "'%s': '..' points at %u, not %u", path,
			 ents[1].cluster, parent);
		first = 2;
	}
	/* Unique short names, and long names unique ignoring case (A.11). */
	size_t ne = n - first;
	struct fent **byname = malloc((ne + 1) * sizeof(*byname));
	FZ_CHECK(byname, "out of memory");
	for (size_t i = 0; i < ne; i++)
		byname[i] = &ents[first + i];
	qsort(byname, ne, sizeof(*byname), sn_cmp);
	for (size_t i = 1; i < ne; i++)
		FZ_CHECK(memcmp(byname[i - 1]->sn, byname[i]->sn, 11), "'%s': short name '%.11s' "
			 "twice", path, byname[i]->sn);
	qsort(byname, ne, sizeof(*byname), folded_cmp);
	for (size_t i = 1; i < ne; i++)
		FZ_CHECK(folded_cmp(&byname[i - 1], &byname[i]), "'%s': two names equal ignoring "
			 "case", path);

	/* The tree's names in UTF-16, sorted the same way as the entries. */
	size_t nm = dn ? dn->nchildren : 0;
	struct fent *model = calloc(nm + 1, sizeof(*model));
	struct fent **mby = malloc((nm + 1) * sizeof(*mby));
	FZ_CHECK(model && mby, "out of memory");
	for (size_t k = 0; k < nm; k++) {
		model[k].nlen = fz_utf16(dn->children[k].name, model[k].name, 256);
		model[k].size = (uint32_t)k;	/* the child's index */
		mby[k] = &model[k];
	}
	qsort(mby, nm, sizeof(*mby), exact_cmp);
	if (dn) {
		FZ_CHECK(ne == nm, "'%s': %zu entries, the tree has %zu", path, ne, nm);
		qsort(byname, ne, sizeof(*byname), exact_cmp);
	}

	for (size_t i = 0; i < ne; i++) {
		struct fent *e = byname[i];
		FZ_CHECK(!(e->attr & 0x08) && (e->attr == 0x10 || e->attr == 0x20),
			 "'%s': entry attributes 0x%02x", path, e->attr);
		const struct fat_node *c = NULL;
		char cpath[600];
		snprintf(cpath, sizeof(cpath), "%.300s/%.11s", path, e->sn);
		if (dn) {
			FZ_CHECK(!exact_cmp(&e, &mby[i]), "'%s': entry '%.11s' is no name of the "
				 "tree", path, e->sn);
			c = &dn->children[mby[i]->size];
			snprintf(cpath, sizeof(cpath), "%.300s/%.250s", path, c->name);
			FZ_CHECK(c->is_dir == (e->attr == 0x10), "'%s': file/directory mixed up",
				 cpath);
			uint16_t date, tim;
			dos_time(c->mtime, &date, &tim);
			FZ_CHECK(e->wdate == date && e->wtime == tim,
				 "'%s': DOS time 0x%04x 0x%04x, "
				 "expected 0x%04x 0x%04x", cpath, e->wdate, e->wtime, date, tim);
		}
		if (e->attr == 0x10) {
			FZ_CHECK(e->size == 0, "'%s': directory with a size", cpath);
			size_t nc;
			uint32_t *cc = chain(v, e->cluster, &nc, cpath);
			check_dir(v, cc, nc, c, false, e->cluster, root ? 0 : self, label, cpath,
				  depth + 1);
			free(cc);
		} else {
			if (c)
				FZ_CHECK(e->size == c->size, "'%s': size %u, tree %llu", cpath,
					 e->size,
					 (unsigned long long)c->size);
			if (e->size == 0) {
				FZ_CHECK(e->cluster == 0, "'%s': empty file with a cluster", cpath);
				continue;
			}
			size_t nc;
			uint32_t *cc = chain(v, e->cluster, &nc, cpath);
			FZ_CHECK(nc == (e->size + (uint64_t)v->cbytes - 1) / v->cbytes,
				 "'%s': %zu clusters for %u bytes", cpath, nc, e->size);
			if (c)
				check_file_data(v, cc, c, cpath);
			free(cc);
		}
	}
	free(byname);
	free(model);
	free(mby);
	free(ents);
	free(buf);
}

/* ------------------------------------------------------------------ */

/*
 * Reads FAT #1 up to its last non-zero entry into v->fat, a chunk at a
 * time (the free tail is a zero region: cheap); with both, checks FAT #2
 * is the same and the bytes past the last cluster are zero (A.5).
 */
static void load_fat(struct vol *v, bool both)
{
	const size_t chunk = 64 << 10;
	uint64_t fatbytes = (uint64_t)v->fatsz * SEC, fat1 = (uint64_t)v->rsvd * SEC;
	uint64_t slots_end = ((uint64_t)v->nclus + 2) * 4;
	uint8_t *c1 = malloc(chunk), *c2 = malloc(chunk);
	size_t cap = 0;
	FZ_CHECK(c1 && c2, "out of memory");
	v->nfat = 0;
	for (uint64_t off = 0; off < (both ? fatbytes : slots_end); off += chunk) {
		size_t n = fatbytes - off < chunk ? (size_t)(fatbytes - off) : chunk;
		if (map_is_zero(v->map, v->base + fat1 + off, n)) {
			FZ_CHECK(!both || map_is_zero(v->map, v->base + fat1 + fatbytes + off, n),
				 "FATs differ");
			continue;
		}
		vread(v, fat1 + off, c1, n, "FAT");
		if (both) {
			vread(v, fat1 + fatbytes + off, c2, n, "FAT copy");
			FZ_CHECK(!memcmp(c1, c2, n), "FATs differ");
		}
		for (size_t i = 0; i < n; i += 4) {
			uint64_t slot = (off + i) / 4;
			uint32_t e = get_le32(c1 + i);
			if (off + i >= slots_end) {
				FZ_CHECK(e == 0, "FAT bytes past cluster %u not zero",
					 v->nclus + 1);
				continue;
			}
			if (!e)
				continue;
			if (slot + 1 > cap) {
				size_t ncap = cap ? cap : 4096;
				while (ncap < slot + 1)
					ncap *= 2;
				v->fat = realloc(v->fat, ncap * sizeof(*v->fat));
				FZ_CHECK(v->fat, "out of memory");
				memset(v->fat + cap, 0, (ncap - cap) * sizeof(*v->fat));
				cap = ncap;
			}
			v->fat[slot] = e;
			if (slot + 1 > v->nfat)
				v->nfat = (size_t)slot + 1;
		}
	}
	free(c1);
	free(c2);
	FZ_CHECK(v->nfat >= 2, "FAT entries 0 and 1 are zero");
	v->used = calloc(v->nfat, 1);
	FZ_CHECK(v->used, "out of memory");
}

static void open_vol(struct vol *v, const struct region_map *map, uint64_t base, uint64_t size)
{
	uint8_t bs[SEC];

	memset(v, 0, sizeof(*v));
	v->map = map;
	v->base = base;
	v->size = size;
	vread(v, 0, bs, SEC, "boot sector");
	FZ_CHECK(bs[0] == 0xEB ? bs[2] == 0x90 : bs[0] == 0xE9, "boot sector jump");
	FZ_CHECK(get_le16(bs + 0x0b) == SEC, "bytes per sector %u", get_le16(bs + 0x0b));
	v->spc = bs[0x0d];
	FZ_CHECK(v->spc && !(v->spc & (v->spc - 1)) && v->spc <= 64, "sectors per cluster %u",
		 v->spc);
	v->cbytes = v->spc * SEC;
	v->rsvd = get_le16(bs + 0x0e);
	FZ_CHECK(v->rsvd >= 8 && bs[0x10] == 2, "reserved sectors %u, FATs %u", v->rsvd,
		 bs[0x10]);
	FZ_CHECK(get_le16(bs + 0x11) == 0 && get_le16(bs + 0x13) == 0 && get_le16(bs + 0x16) == 0,
		 "not a FAT32 BPB (root entries, tot_sec16, fat_sz16)");
	FZ_CHECK(bs[0x15] == 0xF0 || bs[0x15] >= 0xF8, "media 0x%02x", bs[0x15]);
	FZ_CHECK(get_le32(bs + 0x1c) == base / SEC, "hidden sectors %u, volume at sector %llu",
		 get_le32(bs + 0x1c), (unsigned long long)(base / SEC));
	v->tot = get_le32(bs + 0x20);
	FZ_CHECK((uint64_t)v->tot * SEC == size, "total sectors %u for %llu bytes", v->tot,
		 (unsigned long long)size);
	v->fatsz = get_le32(bs + 0x24);
	FZ_CHECK(get_le16(bs + 0x28) == 0 && get_le16(bs + 0x2a) == 0,
		 "ext_flags or fs_ver (EDK2 refuses them)");
	FZ_CHECK(get_le32(bs + 0x2c) == 2 && get_le16(bs + 0x30) == 1 && get_le16(bs + 0x32) == 6,
		 "root cluster, FSInfo or backup sector");
	for (int i = 0x34; i < 0x40; i++)
		FZ_CHECK(bs[i] == 0, "BPB reserved bytes");
	FZ_CHECK(bs[0x41] == 0, "dirty flag set");
	FZ_CHECK(bs[0x42] == 0x29 && !memcmp(bs + 0x52, "FAT32   ", 8), "extended boot signature");
	FZ_CHECK(bs[510] == 0x55 && bs[511] == 0xAA, "boot sector signature");
	v->data = v->rsvd + 2 * v->fatsz;
	FZ_CHECK(v->data < v->tot, "no data area");
	v->nclus = (v->tot - v->data) / v->spc;
	FZ_CHECK(v->nclus >= 65525, "%u clusters: EDK2 fails a FAT32 volume below 65525",
		 v->nclus);
	FZ_CHECK(v->nclus <= 0x0FFFFFF5, "%u clusters", v->nclus);
	FZ_CHECK((uint64_t)v->fatsz * SEC / 4 >= (uint64_t)v->nclus + 2, "FAT too small for %u "
		 "clusters", v->nclus);

	/* A.4: backups and zero reserved sectors. */
	uint8_t s[SEC], fsi[SEC];
	vread(v, 1 * SEC, fsi, SEC, "FSInfo");
	vread(v, 6 * SEC, s, SEC, "backup boot sector");
	FZ_CHECK(!memcmp(s, bs, SEC), "backup boot sector differs");
	vread(v, 7 * SEC, s, SEC, "backup FSInfo");
	FZ_CHECK(!memcmp(s, fsi, SEC), "backup FSInfo differs");
	for (uint32_t k = 2; k < v->rsvd; k++)
		if (k != 6 && k != 7)
			FZ_CHECK(map_is_zero(map, base + (uint64_t)k * SEC, SEC),
				 "reserved sector %u not zero", k);

	load_fat(v, true);
	FZ_CHECK((v->fat[0] & 0x0FFFFFFF) == (0x0FFFFF00u | bs[0x15]), "FAT[0] 0x%08x", v->fat[0]);
	FZ_CHECK((v->fat[1] & 0x0FFFFFFF) == 0x0FFFFFFF, "FAT[1] 0x%08x: dirty or I/O error bits",
		 v->fat[1]);
	for (size_t i = 2; i < v->nfat; i++)
		FZ_CHECK(!(v->fat[i] & 0xF0000000), "FAT[%zu] has reserved top bits", i);
}

void check_fat(const struct region_map *map, uint64_t base, uint64_t size,
	       const struct fat_node *root, const char *label, uint32_t volume_id)
{
	struct vol v;
	uint8_t bs[SEC], fsi[SEC], lab[11];

	open_vol(&v, map, base, size);
	vread(&v, 0, bs, SEC, "boot sector");
	FZ_CHECK(get_le32(bs + 0x43) == volume_id, "volume serial");
	memset(lab, ' ', 11);
	if (!label || !*label)
		memcpy(lab, "NO NAME    ", 11);
	else
		for (size_t i = 0; label[i] && i < 11; i++)
			lab[i] = (uint8_t)(label[i] >= 'a' && label[i] <= 'z' ? label[i] - 32 :
					   label[i]);
	FZ_CHECK(!memcmp(bs + 0x47, lab, 11), "BPB label '%.11s', asked for '%s'", bs + 0x47,
		 label ? label : "");

	size_t nc;
	uint32_t *rc = chain(&v, 2, &nc, "root directory");
	check_dir(&v, rc, nc, root, true, 2, 0, lab, "", 0);
	free(rc);

	/* A.3, A.5: the free count is exact; nothing allocated outside a chain. */
	uint32_t nfree = v.nclus + 2 - (uint32_t)v.nfat;
	for (uint32_t c = 2; c < v.nfat; c++) {
		if (!v.used[c]) {
			FZ_CHECK(v.fat[c] == 0, "cluster %u allocated (0x%08x) but in no chain", c,
				 v.fat[c]);
			nfree++;
		}
	}
	vread(&v, SEC, fsi, SEC, "FSInfo");
	FZ_CHECK(get_le32(fsi) == 0x41615252 && get_le32(fsi + 0x1e4) == 0x61417272 &&
		 get_le32(fsi + 0x1fc) == 0xAA550000, "FSInfo signatures");
	FZ_CHECK(get_le32(fsi + 0x1e8) == nfree, "FSInfo free count %u, really %u",
		 get_le32(fsi + 0x1e8), nfree);
	uint32_t hint = get_le32(fsi + 0x1ec);
	FZ_CHECK(hint == 0xFFFFFFFF || (hint >= 2 && hint < v.nclus + 2 &&
					(hint >= v.nfat || !v.used[hint])),
		 "FSInfo next-free hint %u is not free", hint);
	free(v.fat);
	free(v.used);
}

char *fat_read_file(const struct region_map *map, uint64_t base, const char *path,
		    size_t max, uint64_t *ret_size)
{
	struct vol v;
	uint8_t bs[SEC];

	/* Only the BPB is needed; the full checks ran in check_fat(). */
	memset(&v, 0, sizeof(v));
	v.map = map;
	v.base = base;
	v.size = map->size - base;
	vread(&v, 0, bs, SEC, "boot sector");
	v.spc = bs[0x0d];
	v.cbytes = v.spc * SEC;
	v.rsvd = get_le16(bs + 0x0e);
	v.fatsz = get_le32(bs + 0x24);
	v.data = v.rsvd + 2 * v.fatsz;
	v.tot = get_le32(bs + 0x20);
	v.nclus = (v.tot - v.data) / v.spc;
	load_fat(&v, false);

	uint32_t cur = 2;
	char *out = NULL;
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t plen = slash ? (size_t)(slash - p) : strlen(p);
		size_t nc, len, n;
		memset(v.used, 0, v.nfat);
		uint32_t *cl = chain(&v, cur, &nc, path);
		uint8_t *buf = read_chain(&v, cl, nc, &len);
		struct fent *ents = parse_dir(buf, len, &n, path);
		const struct fent *hit = NULL;
		for (size_t i = 0; i < n && !hit; i++) {
			bool same = (size_t)ents[i].nlen == plen;
			for (size_t u = 0; same && u < plen; u++)
				same = fold(ents[i].name[u]) == fold((uint8_t)p[u]);
			if (same && !(ents[i].attr & 0x08))
				hit = &ents[i];
		}
		free(cl);
		free(buf);
		if (!hit) {
			free(ents);
			break;
		}
		if (slash) {
			cur = hit->cluster;
			free(ents);
			p = slash + 1;
			continue;
		}
		size_t want = hit->size < max ? hit->size : max;
		out = malloc(want + 1);
		FZ_CHECK(out, "out of memory");
		if (want) {
			memset(v.used, 0, v.nfat);
			uint32_t *fc = chain(&v, hit->cluster, &nc, path);
			file_bytes(&v, fc, 0, out, want);
			free(fc);
		}
		out[want] = '\0';
		*ret_size = hit->size;
		free(ents);
		break;
	}
	free(v.fat);
	free(v.used);
	return out;
}
