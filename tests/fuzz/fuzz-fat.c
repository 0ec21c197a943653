/* SPDX-License-Identifier: MIT */
/*
 * fuzz-fat.c - the FAT32 builder (fat_build) and the ESP builder
 * (esp_build, which also validates --cmdline) fed tree models decoded
 * from the input (tree.c, mostly with names FAT can hold).
 *
 * fat_build gets the tree's directories and regular files as fat_nodes
 * (files read lazily from their fake sources).  Invariants: it succeeds
 * exactly when every name is valid (UTF-8, no control characters or
 * \ / : * ? " < > |, no trailing dot or space, at most 255 UTF-16 units),
 * no two names of a directory are equal ignoring case, no file reaches
 * 4 GiB and the label is valid; then the map is sound (map_check) and
 * the volume passes check_fat against the tree.
 *
 * esp_build gets the whole tree and a kernel command line from the
 * input: text with a line break or control character, or longer than the
 * kernel takes, must be refused first; an ESP that builds must pass
 * check_fat, and its loader entry must hold exactly one "options" line,
 * the root= prefix plus the command line given.
 *
 * Input: an options byte (bit 0: names of any bytes, bits 1-4: the label,
 * bit 5: a minimum size, bit 6: pass the command line, bit 7: invalid
 * trees too), the command line (a length byte, 255 for a long one), the
 * volume serial (u32), the minimum size (u16, with bit 5: with both top
 * bits set, the big mode, in 4 MiB units; else its low 9 bits in MiB),
 * the architecture and --kver choices (a byte each), then the tree
 * (tree.c).  Files total 16 MiB, or 4 GiB + 1 MiB in the big mode.
 * Seeds: corpus/fat/.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "fat/esp.h"
#include "fat/fat.h"
#include "overlaywalk/source.h"
#include "tests/fuzz/fuzz.h"

#define PARTUUID "0a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9"
#define CMDLINE_PREFIX "root=PARTUUID=" PARTUUID " rootfstype=erofs ro"

/*
 * Volumes built, in bytes (files with hard links counted once per link,
 * plus the minimum size): 512 MiB in the small mode, 72 GiB in the big
 * one (a 64 GiB minimum, 32 KiB clusters, plus a file near 4 GiB).
 */
#define VOLUME_BUDGET		(512ULL << 20)
#define VOLUME_BUDGET_BIG	(72ULL << 30)

/* The fat_node tree of a walk tree: directories and regular files. */
struct conv {
	const struct walk_tree *tree;
	struct region_source *srcs;
	size_t nsrcs;
	struct fat_node **arrays;
	size_t narrays;
	bool too_big;		/* a file of 4 GiB or more */
	uint64_t total;		/* bytes of all files, in 32 KiB clusters */
};

static void convert(struct conv *cv, const struct walk_inode *dir, struct fat_node *out,
		    const char *name)
{
	size_t n = 0;

	*out = (struct fat_node){ .name = name, .is_dir = true, .mtime = dir->mtime_sec };
	for (size_t i = 0; i < dir->nchildren; i++)
		n += S_ISDIR(dir->children[i].inode->mode) || S_ISREG(dir->children[i].inode->mode);
	struct fat_node *kids = calloc(n ? n : 1, sizeof(*kids));
	FZ_CHECK(kids, "out of memory");
	cv->arrays[cv->narrays++] = kids;
	out->children = kids;
	out->nchildren = n;
	n = 0;
	for (size_t i = 0; i < dir->nchildren; i++) {
		const struct walk_dentry *de = &dir->children[i];
		const struct walk_inode *wi = de->inode;
		if (S_ISDIR(wi->mode)) {
			convert(cv, wi, &kids[n++], de->name);
		} else if (S_ISREG(wi->mode)) {
			struct region_source *src = &cv->srcs[cv->nsrcs];
			FZ_CHECK(walk_region_source(cv->tree, wi, src) == 0, "walk_region_source");
			cv->nsrcs++;
			kids[n++] = (struct fat_node){
				.name = de->name, .size = wi->size, .src = src,
				.mtime = wi->mtime_sec,
			};
			cv->too_big |= wi->size > 0xFFFFFFFFu;
			/* Hard links are copies on FAT: each counts. */
			cv->total += (wi->size + 32767) & ~(uint64_t)32767;
		}
	}
}

static void free_conv(struct conv *cv)
{
	for (size_t i = 0; i < cv->narrays; i++)
		free(cv->arrays[i]);
	free(cv->arrays);
	free(cv->srcs);
}

/* A long name FAT takes (A.12), by our own reading of the rules. */
static int name_units(const char *name, uint16_t *u)
{
	size_t n = strlen(name);
	const uint8_t *p = (const uint8_t *)name;

	if (!n || !strcmp(name, ".") || !strcmp(name, ".."))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f || strchr("\\/:*?\"<>|", p[i]))
			return -1;
	if (name[n - 1] == '.' || name[n - 1] == ' ')
		return -1;
	int k = fz_utf16(name, u, 256);
	return k <= 255 ? k : -1;
}

/* ASCII and Latin-1 letters fold (what fat.h documents for duplicates). */
static uint16_t fold(uint16_t c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7))
		return c + 0x20;
	return c;
}

/* A name folded, its units in a pool of the directory's (qsort moves
 * only these 16 bytes: a directory can have 70000 names). */
struct folded {
	const uint16_t *u;
	int n;
};

static int folded_cmp(const void *a, const void *b)
{
	const struct folded *x = a, *y = b;
	for (int i = 0; i < x->n && i < y->n; i++)
		if (x->u[i] != y->u[i])
			return x->u[i] < y->u[i] ? -1 : 1;
	return (x->n > y->n) - (x->n < y->n);
}

/*
 * Whether fat_build must take the tree: every name, no case duplicates,
 * no directory over 65536 slots (A.8; base slots are "." and "..", or in
 * the root the label's).  -1 must refuse, 1 must take, 0 either.
 */
static int fat_holdable(const struct fat_node *d, size_t base)
{
	size_t lo = base, hi = base;
	int verdict = 1;
	struct folded *f = malloc((d->nchildren + 1) * sizeof(*f));
	size_t npool = 0, used = 0;

	for (size_t i = 0; i < d->nchildren; i++)
		npool += strlen(d->children[i].name);	/* UTF-16 units <= bytes */
	uint16_t *pool = malloc((npool + 1) * sizeof(*pool));
	FZ_CHECK(f && pool, "out of memory");
	for (size_t i = 0; i < d->nchildren && verdict >= 0; i++) {
		const struct fat_node *c = &d->children[i];
		uint16_t u[257];
		f[i].n = name_units(c->name, u);
		if (f[i].n < 0) {
			verdict = -1;
			break;
		}
		lo += 1;
		hi += 1 + (size_t)(f[i].n + 12) / 13;
		for (int m = 0; m < f[i].n; m++)
			pool[used + (size_t)m] = fold(u[m]);
		f[i].u = pool + used;
		used += (size_t)f[i].n;
		if (c->is_dir) {
			int r = fat_holdable(c, 2);
			if (r < verdict)
				verdict = r;
		}
	}
	if (verdict >= 0) {
		qsort(f, d->nchildren, sizeof(*f), folded_cmp);
		for (size_t i = 1; i < d->nchildren; i++)
			if (!folded_cmp(&f[i - 1], &f[i]))
				verdict = -1;
	}
	if (verdict >= 0 && lo > 65536)
		verdict = -1;
	else if (verdict > 0 && hi > 65536)
		verdict = 0;
	free(pool);
	free(f);
	return verdict;
}

/* A label fat_build takes (A.10, A.11). */
static bool label_ok(const char *l)
{
	if (!l || !*l)
		return true;
	if (strlen(l) > 11 || l[0] == ' ')
		return false;
	for (const char *p = l; *p; p++) {
		char c = *p >= 'a' && *p <= 'z' ? *p - 32 : *p;
		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' ||
		      (c && strchr("!#$%&'()-@^_`{}~", c))))
			return false;
	}
	return true;
}

struct options {
	uint8_t opts;
	uint32_t volume_id;
	uint64_t min_bytes;
	uint64_t volume_budget;	/* bytes: bigger volumes under 2 TiB are not built */
	enum esp_arch arch;
	const char *kver;
	char cmdline[4200];
};

static void run_fat(const struct fake_tree *t, const struct options *o)
{
	static const char *const labels[] = { NULL, "", "ESP", "efi", "NO NAME", "no name",
					      "ABCDEFGHIJK", "ABCDEFGHIJKL", " X", "A.B",
					      "x~!#$%&'()-" };
	const char *label = labels[((o->opts >> 1) & 15) % ARRAY_SIZE(labels)];
	struct fat_opts fo = {
		.label = label, .volume_id = o->volume_id, .min_bytes = o->min_bytes,
	};
	struct conv cv = { .tree = &t->tree };
	struct fat_node root;

	/* One source per dentry of a file: hard links make a file appear twice. */
	size_t ndentries = 1;
	for (size_t i = 0; i < t->tree.ninodes; i++)
		ndentries += t->tree.inodes[i]->nchildren;
	cv.srcs = calloc(ndentries, sizeof(*cv.srcs));
	cv.arrays = calloc(t->tree.ninodes + 1, sizeof(*cv.arrays));
	FZ_CHECK(cv.srcs && cv.arrays, "out of memory");
	convert(&cv, t->tree.root, &root, "");

	/*
	 * Hard links multiply the volume past the budget the input's sizes
	 * keep to: not worth the seconds it takes to build and check, below
	 * the 2 TiB that fat_build must refuse (cheaply, before any layout).
	 */
	if (cv.total < 2ULL << 40 && cv.total + fo.min_bytes > o->volume_budget) {
		free_conv(&cv);
		return;
	}
	bool has_label = label && *label && strcasecmp(label, "NO NAME");
	int verdict = fat_holdable(&root, has_label ? 1 : 0);
	if (cv.too_big || !label_ok(label))
		verdict = -1;
	/* A.5, A.7: FAT32 ends at 2^32 sectors (2 TiB); near it, either. */
	if (cv.total >= 2ULL << 40)
		verdict = -1;
	else if (cv.total >= 1ULL << 40 && verdict > 0)
		verdict = 0;

	struct region_map map;
	region_map_init(&map);
	int r = fat_build(&root, &fo, &map);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "fat_build: %d, expected %s, %llu bytes\n", r,
			verdict > 0 ? "success" : verdict < 0 ? "failure" : "either",
			(unsigned long long)map.size);
	if (r < 0) {
		FZ_CHECK(r == -EINVAL || r == -ENAMETOOLONG || r == -EEXIST || r == -EFBIG,
			 "fat_build: undocumented error %d", r);
		FZ_CHECK(verdict <= 0, "fat_build refused a tree FAT can hold: %d", r);
	} else {
		FZ_CHECK(verdict >= 0, "fat_build took a tree FAT cannot hold");
		map_check(&map);
		FZ_CHECK(map.size >= fo.min_bytes && map.size % (1 << 20) == 0,
			 "volume of %llu bytes", (unsigned long long)map.size);
		check_fat(&map, 0, map.size, &root, label, fo.volume_id);
	}
	region_map_free(&map);
	free_conv(&cv);
}

/* The regular file at path in the tree (no symlinks followed), or NULL. */
static const struct walk_inode *lookup(const struct walk_tree *tree, const char *path)
{
	const struct walk_inode *cur = tree->root;

	while (*path && cur && S_ISDIR(cur->mode)) {
		const char *slash = strchrnul(path, '/');
		size_t len = (size_t)(slash - path);
		const struct walk_inode *next = NULL;
		for (size_t i = 0; i < cur->nchildren && !next; i++)
			if (cur->children[i].name_len == len &&
			    !memcmp(cur->children[i].name, path, len))
				next = cur->children[i].inode;
		cur = next;
		path = *slash ? slash + 1 : slash;
	}
	return cur;
}

static bool cmdline_ok(const char *s)
{
	size_t quotes = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		quotes += *p == '"';
	}
	/* A '"' never closed would take what follows into its value. */
	return quotes % 2 == 0 && strlen(CMDLINE_PREFIX) + (*s ? 1 : 0) + strlen(s) <= 2047;
}

/* Checks a file on the ESP against the tree's file it must be. */
static void check_esp_file(const struct region_map *map, const char *path,
			   const struct walk_inode *wi)
{
	uint64_t size;
	char *got = fat_read_file(map, 0, path, 4096, &size);
	FZ_CHECK(got, "ESP: '%s' missing", path);
	FZ_CHECK(size == wi->size, "ESP: '%s' of %llu bytes, the tree's file has %llu", path,
		 (unsigned long long)size, (unsigned long long)wi->size);
	size_t n = size < 4096 ? (size_t)size : 4096;
	uint8_t *want = malloc(n + 1);
	FZ_CHECK(want, "out of memory");
	fake_read(fake_of(wi), 0, want, n);
	FZ_CHECK(!memcmp(got, want, n), "ESP: '%s' differs from the tree's file", path);
	free(want);
	free(got);
}

static void run_esp(const struct fake_tree *t, const struct options *o)
{
	struct esp_opts eo = {
		.arch = o->arch, .kver = o->kver, .root_partuuid = PARTUUID,
		.cmdline = o->opts & 0x40 ? o->cmdline : NULL, .volume_id = o->volume_id,
	};
	struct region_map map;
	struct esp_result res = { 0 };
	char *what = NULL;

	region_map_init(&map);
	int r = esp_build(&t->tree, &eo, &map, &res, &what);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "esp_build: %d (%s), kver %s\n", r, what ? what : "ok",
			res.kver ? res.kver : "-");
	if (eo.cmdline && !cmdline_ok(eo.cmdline)) {
		/* Bad text is refused before anything else (esp.h). */
		bool named = what && (strstr(what, "--cmdline") || strstr(what, "command line"));
		FZ_CHECK(r == -EINVAL && named,
			 "esp_build took the command line (%d: %s)", r, what ? what : "");
	} else if (r < 0) {
		FZ_CHECK(what && *what, "esp_build failed (%d) without saying why", r);
	} else {
		map_check(&map);
		check_fat(&map, 0, map.size, NULL, "ESP", eo.volume_id);
		FZ_CHECK(res.kver && res.cmdline, "esp_build: no result");

		/* The entry: exactly these lines, options = prefix + --cmdline. */
		char path[512], *want = NULL;
		snprintf(path, sizeof(path), "loader/entries/erofs-nbd-%s.conf", res.kver);
		uint64_t len;
		char *entry = fat_read_file(&map, 0, path, 1 << 16, &len);
		FZ_CHECK(entry && strlen(entry) == len, "ESP: no entry file '%s'", path);
		FZ_CHECK(asprintf(&want, "%s%s%s", CMDLINE_PREFIX,
				  eo.cmdline && *eo.cmdline ? " " : "",
				  eo.cmdline ? eo.cmdline : "") > 0, "out of memory");
		FZ_CHECK(!strcmp(res.cmdline, want), "esp_build reports command line '%s'",
			 res.cmdline);
		size_t noptions = 0;
		bool has_linux = false;
		for (char *line = entry, *nl; *line; line = nl + 1) {
			nl = strchr(line, '\n');
			FZ_CHECK(nl, "entry file's last line not ended");
			*nl = '\0';
			if (!strncmp(line, "options ", 8)) {
				noptions++;
				FZ_CHECK(!strcmp(line + 8, want),
					 "options line '%s', expected '%s'",
					 line + 8, want);
			} else if (!strncmp(line, "linux ", 6)) {
				FZ_CHECK(!has_linux, "two linux lines");
				has_linux = true;
			} else {
				FZ_CHECK(!strncmp(line, "title ", 6) ||
					 !strncmp(line, "version ", 8) ||
					 !strncmp(line, "initrd ", 7), "entry line '%.80s'", line);
			}
		}
		FZ_CHECK(noptions == 1 && has_linux, "entry with %zu options lines", noptions);
		free(entry);
		free(want);

		/* The kernel on the ESP is the tree's kernel of that version. */
		const struct walk_inode *k;
		snprintf(path, sizeof(path), "usr/lib/modules/%s/vmlinuz", res.kver);
		k = lookup(&t->tree, path);
		if (!k || !S_ISREG(k->mode)) {
			snprintf(path, sizeof(path), "boot/vmlinuz-%s", res.kver);
			k = lookup(&t->tree, path);
		}
		if (k && S_ISREG(k->mode)) {
			snprintf(path, sizeof(path), "%s/vmlinuz", res.kver);
			check_esp_file(&map, path, k);
		}
		const struct walk_inode *l = lookup(&t->tree, res.arch == ESP_ARCH_AARCH64 ?
			"usr/lib/systemd/boot/efi/systemd-bootaa64.efi" :
			"usr/lib/systemd/boot/efi/systemd-bootx64.efi");
		if (l && S_ISREG(l->mode))
			check_esp_file(&map,
				       res.arch == ESP_ARCH_AARCH64 ? "EFI/BOOT/BOOTAA64.EFI" :
				       "EFI/BOOT/BOOTX64.EFI", l);
	}
	free(what);
	esp_result_free(&res);
	region_map_free(&map);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const kvers[] = { NULL, NULL, "6.1.0-10-amd64", "nope", "bad/kver" };
	static struct options o;
	struct fz f = { data, size };

	o.opts = fz_u8(&f);
	/* A command line: input bytes, or a long one. */
	size_t cl = fz_u8(&f);
	if (cl == 255)
		cl = 2000 + fz_u8(&f) % 100;
	for (size_t i = 0; i < cl; i++) {
		uint8_t c = i < 64 ? fz_u8(&f) : 'a';
		o.cmdline[i] = c ? (char)c : ' ';
	}
	o.cmdline[cl] = '\0';
	o.volume_id = fz_u32(&f);
	/*
	 * The cost of an input is the volume's cluster count (the FAT is
	 * built and checked slot by slot), so sizes near the limits come
	 * only in the big mode (bit 5 and the two top bits of the u16): up to
	 * a 64 GiB minimum and files up to 4 GiB each.  Otherwise a minimum
	 * under 512 MiB and 16 MiB of files in all.
	 */
	bool big = false;
	if (o.opts & 0x20) {
		uint16_t v = fz_u16(&f);
		big = (v & 0xc000) == 0xc000;
		o.min_bytes = big ? (uint64_t)(v & 0x3fff) << 22 : (uint64_t)(v & 0x1ff) << 20;
	} else {
		o.min_bytes = 0;
	}
	o.volume_budget = big ? VOLUME_BUDGET_BIG : VOLUME_BUDGET;
	o.arch = (enum esp_arch)(fz_u8(&f) % 3);
	o.kver = kvers[fz_u8(&f) % ARRAY_SIZE(kvers)];

	struct tree_limits lim = {
		.max_inodes = 1000, .max_depth = 60,
		.max_file_size = (1ULL << 32) + 100,
		.max_total_size = big ? (4ULL << 30) + (1 << 20) : 16 << 20,
		.max_data = 1 << 20, .max_xattrs = 4, .fat_names = !(o.opts & 1),
		.invalid = o.opts & 0x80,
	};
	struct fake_tree *t = fake_tree_decode(&f, &lim);
	if (getenv("FUZZ_TRACE"))
		fake_tree_dump(t);

	/* No walk makes a directory cycle: the builders need not cope. */
	if (!t->bad_shape) {
		run_fat(t, &o);
		run_esp(t, &o);
	}
	fake_tree_free(t);
	return 0;
}
