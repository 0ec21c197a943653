// SPDX-License-Identifier: MIT
/*
 * esp.c - esp_build(): the EFI System Partition for a tree, as a FAT32
 * volume built with fat_build() (fat.h).  Facts: ../shared/docs/
 * fat32-gpt.md Part C; Boot Loader Specification (BLS) Type #1 entries;
 * the UAPI version format for "newest kernel".
 *
 * Phases:
 *   find     kernel candidates in the tree model (bootc's
 *            usr/lib/modules/<kver>/{vmlinuz,initramfs.img}, Debian's
 *            boot/vmlinuz-<kver> + boot/initrd.img-<kver>), following
 *            symlinks inside the model only, never on the host
 *   pick     --kver, else the newest by version order (esp_vercmp)
 *   open     one region_source per file: in-tree files reopen through
 *            walk_open_data(); --kernel/--initrd/--efi-loader paths reopen
 *            by path and are checked against dev/ino/size/mtime
 *   check    the PE headers of kernel and loader give the architecture
 *   compose  loader/loader.conf and loader/entries/erofs-nbd-<kver>.conf
 *   emit     the FAT tree, appended to the map by fat_build()
 *
 * The ESP:
 *   /EFI/BOOT/BOOTX64.EFI (BOOTAA64.EFI)   systemd-boot
 *   /EFI/Linux/<name>.efi                  unified kernel images, if any
 *   /loader/loader.conf                    timeout 0, default our entry
 *   /loader/entries.srel                   "type1"
 *   /loader/entries/erofs-nbd-<kver>.conf  linux, initrd, options
 *   /<kver>/vmlinuz, /<kver>/initrd        kernel and initramfs
 *
 * Everything the map must keep (sources, names, generated files) is
 * handed to it with region_map_own().  The module does not log.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fat/esp.h"
#include "fat/bootcfg.h"
#include "overlaywalk/source.h"
#include "server/byteorder.h"
#include "fat/fat.h"
#include "server/cleanup.h"

/* COMMAND_LINE_SIZE is 2048 on x86-64 and arm64, the NUL included. */
#define ESP_CMDLINE_MAX		2047
/* Symlinks followed while resolving one path, as Linux's MAXSYMLINKS. */
#define ESP_SYMLINK_HOPS	40
/* Bytes read from a kernel or loader to find its PE header. */
#define ESP_HEAD_BYTES		4096
/* Longest kernel version or UKI name we put on the ESP (FAT: 255). */

/* PE/COFF (Microsoft PE format, "MS-DOS stub" and "COFF file header"). */
#define PE_DOS_MAGIC		"MZ"
#define PE_LFANEW_OFF		0x3c	/* le32: offset of "PE\0\0" */
#define PE_MACHINE_X86_64	0x8664
#define PE_MACHINE_ARM64	0xaa64

/*
 * What the opaque of a source outside the tree (--kernel etc.) points at:
 * reopened by path, then checked.  Files in the tree use walk_region_source().
 */
struct esp_src {
	const char *path;
	uint64_t dev, ino;
};

struct esp_ctx {
	const struct walk_tree *tree;
	const struct esp_opts *opts;
	struct region_map *map;
	char *what;			/* the first error's message */
	struct bootcfg_kernels kernels;	/* the tree's, newest first */
};

/* Records "what went wrong" (the first message wins) and returns err. */
static int __attribute__((format(printf, 3, 4)))
esp_fail(struct esp_ctx *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (!c->what) {
		va_start(ap, fmt);
		if (vasprintf(&c->what, fmt, ap) < 0)
			c->what = NULL;
		va_end(ap);
	}
	return err;
}

/* Copies s into a buffer the map owns.  Returns it, or NULL (ENOMEM). */
static char *map_strdup(struct region_map *map, const char *s)
{
	char *d = strdup(s);

	if (!d || region_map_own(map, d) < 0)
		return NULL;
	return d;
}

/* ------------------------------------------------------------------ */
/* Checks on names, command lines and PE headers                       */
/* ------------------------------------------------------------------ */

/*
 * Whether name can be a kernel version or UKI file name on the ESP and
 * in the entry file: what bootcfg_kver_ok() accepts (1..BOOTCFG_KVER_MAX
 * bytes of letters, digits and "._+~^-", not starting with '.' or '-',
 * not ending with '.', not "EFI" or "loader" in any case).
 */
static bool esp_name_ok(const char *name)
{
	return bootcfg_kver_ok(name);
}

/*
 * Checks --cmdline text before it goes on the entry's "options" line: a
 * newline would start a new BLS key (say, another "linux"), and other
 * control characters have no place on a kernel command line; a '"' never
 * closed would take the arguments after it into its value.  Returns 0,
 * or -EINVAL with *ret_what (static) saying why.
 */
static int esp_cmdline_check(const char *s, const char **ret_what)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\n' || *p == '\r') {
			*ret_what = "contains a line break, which would end the entry's "
				    "\"options\" line";
			return -EINVAL;
		}
		if (*p < 0x20 || *p == 0x7f) {
			*ret_what = "contains a control character";
			return -EINVAL;
		}
	}
	if (!bootcfg_quotes_closed(s)) {
		*ret_what = "has a '\"' that is never closed, which would take every "
			    "argument after it into its value";
		return -EINVAL;
	}
	if (strlen(s) > ESP_CMDLINE_MAX) {
		*ret_what = "is longer than the kernel's 2047-byte command line";
		return -EINVAL;
	}
	return 0;
}

/*
 * Tells the architecture of a PE/COFF image (an EFI application, or a
 * kernel with the EFI stub: x86 bzImage, arm64 Image, zboot) from its
 * first len bytes: "MZ", the PE header offset at 0x3c, "PE\0\0" there and
 * the COFF Machine field after it (0x8664 x86-64, 0xaa64 arm64).  The PE
 * header must lie within the len bytes.  Returns 0 and *ret, or -ENOEXEC
 * (not PE: e.g. a gzip-compressed Image, or a machine we do not boot).
 */
static int esp_pe_arch(const uint8_t *buf, size_t len, enum esp_arch *ret)
{
	uint32_t pe;
	uint16_t machine;

	if (len < PE_LFANEW_OFF + 4 || memcmp(buf, PE_DOS_MAGIC, 2) != 0)
		return -ENOEXEC;
	pe = get_le32(buf + PE_LFANEW_OFF);
	if (pe > len || len - pe < 6 || memcmp(buf + pe, "PE\0\0", 4) != 0)
		return -ENOEXEC;
	machine = (uint16_t)(buf[pe + 4] | buf[pe + 5] << 8);
	switch (machine) {
	case PE_MACHINE_X86_64:
		*ret = ESP_ARCH_X86_64;
		return 0;
	case PE_MACHINE_ARM64:
		*ret = ESP_ARCH_AARCH64;
		return 0;
	default:
		return -ENOEXEC;
	}
}

static const char *arch_name(enum esp_arch arch)
{
	return arch == ESP_ARCH_AARCH64 ? "aarch64" : "x86_64";
}

/* ------------------------------------------------------------------ */
/* Finding files in the tree model                                     */
/* ------------------------------------------------------------------ */

/* The child of dir called name[0..len), by binary search, or NULL. */
static const struct walk_inode *tree_child(const struct walk_inode *dir,
					   const char *name, size_t len)
{
	size_t lo = 0, hi = dir->nchildren;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct walk_dentry *d = &dir->children[mid];
		size_t n = d->name_len < len ? d->name_len : len;
		int r = memcmp(d->name, name, n);
		if (r == 0)
			r = d->name_len < len ? -1 : d->name_len > len;
		if (r == 0)
			return d->inode;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Resolves a '/'-separated path starting at dir in the tree model,
 * following symlinks (absolute ones from the tree's root, ".." stopping
 * at the root) as the kernel would inside a chroot, so nothing ever
 * leaves the tree.  *hops counts symlinks followed.  Returns the inode,
 * or NULL if some component is missing or not a directory, or the links
 * loop.
 */
static const struct walk_inode *tree_resolve(const struct walk_tree *tree,
					     const struct walk_inode *dir,
					     const char *path, int *hops)
{
	const struct walk_inode *cur = *path == '/' ? tree->root : dir;

	while (*path) {
		const char *end = strchrnul(path, '/');
		size_t len = (size_t)(end - path);
		const struct walk_inode *next;

		if (!S_ISDIR(cur->mode))
			return NULL;
		if (len == 0 || (len == 1 && path[0] == '.'))
			next = cur;
		else if (len == 2 && path[0] == '.' && path[1] == '.')
			next = cur->parent;
		else
			next = tree_child(cur, path, len);
		if (!next)
			return NULL;
		if (S_ISLNK(next->mode)) {
			if (++*hops > ESP_SYMLINK_HOPS || !next->symlink)
				return NULL;
			next = tree_resolve(tree, cur, next->symlink, hops);
			if (!next)
				return NULL;
		}
		cur = next;
		path = *end ? end + 1 : end;
	}
	return cur;
}

static const struct walk_inode *tree_lookup(const struct walk_tree *tree,
					    const struct walk_inode *dir,
					    const char *path)
{
	int hops = 0;

	return tree_resolve(tree, dir, path, &hops);
}

/* A regular file at path under dir (symlinks followed in the tree), or NULL. */
static const struct walk_inode *tree_file(const struct walk_tree *tree,
					  const struct walk_inode *dir,
					  const char *path)
{
	const struct walk_inode *in = tree_lookup(tree, dir, path);

	return in && S_ISREG(in->mode) ? in : NULL;
}

/* ------------------------------------------------------------------ */
/* The tree model as bootcfg.h sees a tree                             */
/* ------------------------------------------------------------------ */

static int model_resolve(void *ctx, const char *path, char **ret_path)
{
	const struct walk_tree *t = ctx;
	const struct walk_inode *in = tree_lookup(t, t->root, path);
	int type;

	if (!in)
		return BOOTCFG_NONE;
	type = S_ISREG(in->mode) ? BOOTCFG_FILE : S_ISDIR(in->mode) ? BOOTCFG_DIR :
	       BOOTCFG_NONE;
	if (type != BOOTCFG_NONE && ret_path) {
		*ret_path = walk_inode_path(in);
		if (!*ret_path)
			return -ENOMEM;
	}
	return type;
}

static int model_list(void *ctx, const char *dir, int (*fn)(void *, const char *),
		      void *arg)
{
	const struct walk_tree *t = ctx;
	const struct walk_inode *in = tree_lookup(t, t->root, dir);

	if (!in || !S_ISDIR(in->mode))
		return -ENOENT;
	for (size_t i = 0; i < in->nchildren; i++) {
		int r = fn(arg, in->children[i].name);

		if (r)
			return r;
	}
	return 0;
}

/* Reads a tree file through walk_open_data(): checked against the walk. */
static long model_read(void *ctx, const char *path, char *buf, size_t size)
{
	const struct walk_tree *t = ctx;
	const struct walk_inode *in = tree_lookup(t, t->root, path);
	_cleanup_close_ int fd = -1;

	if (!in || !S_ISREG(in->mode))
		return -ENOENT;
	fd = walk_open_data(t, in);
	if (fd < 0)
		return fd;
	return bootcfg_read_fd(fd, buf, size);
}

static struct bootcfg_tree model_tree(const struct walk_tree *t)
{
	return (struct bootcfg_tree){ .resolve = model_resolve, .list = model_list,
				      .read = model_read, .ctx = (void *)t };
}

/* ------------------------------------------------------------------ */
/* Sources                                                             */
/* ------------------------------------------------------------------ */

/*
 * Reopens a file given by path and checks it is still the one measured
 * at start-up: same dev/ino (not replaced), size and mtime (not changed),
 * whatever the flags: a path proves no identity by itself.
 */
static int esp_src_open_path(const struct region_source *src, unsigned int flags)
{
	const struct esp_src *s = src->opaque;
	struct stat st;
	int r;
	(void)flags;
	_cleanup_close_ int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY |
				      O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_dev != s->dev || st.st_ino != s->ino)
		return -EIO;
	r = region_source_check(src, fd);
	if (r < 0)
		return r;
	return TAKE_FD(fd);
}

/* Fills *ret with a source for an in-tree regular file. */
static int src_from_tree(struct esp_ctx *c, const struct walk_inode *in,
			 struct region_source *ret)
{
	return walk_region_source(c->tree, in, ret);
}

/*
 * Fills *ret with a source for a file outside the tree (opt names the
 * option, for messages): it must be a regular file we can open now.
 */
static int src_from_path(struct esp_ctx *c, const char *opt, const char *path,
			 struct region_source *ret)
{
	struct esp_src *s;
	struct stat st;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY |
				      O_NONBLOCK);

	if (fd < 0 || fstat(fd, &st) < 0)
		return esp_fail(c, -errno, "%s '%s': %s", opt, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return esp_fail(c, -EINVAL, "%s '%s': not a regular file", opt, path);
	s = calloc(1, sizeof(*s));
	if (!s || region_map_own(c->map, s) < 0)
		return -ENOMEM;
	s->path = map_strdup(c->map, path);
	if (!s->path)
		return -ENOMEM;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	*ret = (struct region_source){
		.open = esp_src_open_path,
		.opaque = s,
		.name = s->path,
		.size = (uint64_t)st.st_size,
		.mtime_sec = st.st_mtim.tv_sec,
		.mtime_nsec = (uint32_t)st.st_mtim.tv_nsec,
	};
	return 0;
}

/*
 * Reads the first bytes of a source (up to ESP_HEAD_BYTES) through its
 * open(), which proves it readable, and tells its architecture.  what
 * names the file's role ("kernel") for messages.  Returns 0, -ENOEXEC
 * (not a PE image for x86-64 or arm64) or the read's -errno.
 */
static int src_arch(struct esp_ctx *c, const struct region_source *src,
		    const char *what, enum esp_arch *ret)
{
	uint8_t buf[ESP_HEAD_BYTES];
	size_t want = src->size < sizeof(buf) ? (size_t)src->size : sizeof(buf);
	size_t got = 0;
	char path[PATH_MAX];
	_cleanup_close_ int fd = src->open(src, 0);

	region_source_path(src, path, sizeof(path));
	if (fd < 0)
		return esp_fail(c, fd, "'%s': reading the %s: %s", path, what,
				fd == -EIO ? "the file changed since it was found" :
				strerror(-fd));
	while (got < want) {
		ssize_t n = pread(fd, buf + got, want - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return esp_fail(c, -errno, "'%s': reading the %s: %s",
					path, what, strerror(errno));
		if (n == 0)
			return esp_fail(c, -EIO, "'%s': reading the %s: the file shrank",
					path, what);
		got += (size_t)n;
	}
	if (esp_pe_arch(buf, got, ret) < 0)
		return esp_fail(c, -ENOEXEC, "'%s': the %s is not an EFI executable "
				"for x86-64 or arm64 (no PE header%s)", path, what,
				got >= 2 && buf[0] == 0x1f && buf[1] == 0x8b ?
				"; it is gzip-compressed" : "");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Building                                                            */
/* ------------------------------------------------------------------ */

/* Where the pieces of one ESP come from. */
struct esp_plan {
	const char *kver;
	struct region_source kernel, initrd, loader;
	bool has_initrd;
	struct region_source *ukis;	/* unified kernel images */
	const char **uki_names;
	size_t nukis;
	enum esp_arch arch;
	const struct walk_inode *moddir;
};

/* The kernel version to use with --kernel PATH: --kver, vmlinuz-<kver>, "linux". */
static const char *kver_of_path(const char *kver, const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	if (kver)
		return kver;
	if (strncmp(base, "vmlinuz-", 8) == 0 && esp_name_ok(base + 8))
		return base + 8;
	return "linux";
}

/* "--kver 'X': no such kernel in the tree (it has: A, B)". */
static int fail_kver(struct esp_ctx *c)
{
	char list[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < c->kernels.n && len < sizeof(list); i++) {
		int n = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
				 c->kernels.v[i].kver);
		if (n < 0)
			break;
		len += (size_t)n;
	}
	if (len >= sizeof(list))
		strcpy(list + sizeof(list) - 4, "...");
	return esp_fail(c, -ENOENT, "--kver '%s': no such kernel in the tree (it has: %s)",
			c->opts->kver, c->kernels.n ? list : "none");
}

/* Chooses the kernel and initrd and opens their sources. */
static int plan_kernel(struct esp_ctx *c, struct esp_plan *pl)
{
	const struct esp_opts *o = c->opts;
	const struct bootcfg_kernel *k = NULL;
	const struct walk_inode *kin = NULL, *iin = NULL;
	int r;

	if (o->kver && !esp_name_ok(o->kver))
		return esp_fail(c, -EINVAL, "--kver '%s': not a kernel version (1-%d "
				"letters, digits and ._+~^-, not starting with . or -, "
				"not ending with .)", o->kver, BOOTCFG_KVER_MAX);
	if (o->kernel) {
		pl->kver = kver_of_path(o->kver, o->kernel);
		r = src_from_path(c, "--kernel", o->kernel, &pl->kernel);
		if (r < 0)
			return r;
	} else {
		struct bootcfg_tree bt = model_tree(c->tree);

		r = bootcfg_find_kernels(&bt, &c->kernels);
		if (r < 0)
			return r;
		k = bootcfg_pick(&c->kernels, o->kver);
		if (!k && o->kver)
			return fail_kver(c);
		if (!k)
			return esp_fail(c, -ENOENT, "no kernel found (looked for "
					"usr/lib/modules/*/vmlinuz and boot/vmlinuz-*)");
		pl->kver = k->kver;
		pl->moddir = k->moddir ? tree_lookup(c->tree, c->tree->root, k->moddir) : NULL;
		kin = tree_file(c->tree, c->tree->root, k->kernel);
		if (k->initrd)
			iin = tree_file(c->tree, c->tree->root, k->initrd);
		if (!kin)
			return esp_fail(c, -ENOENT, "'%s': gone from the tree model", k->kernel);
		r = src_from_tree(c, kin, &pl->kernel);
		if (r < 0)
			return r;
	}
	if (o->initrd) {
		r = src_from_path(c, "--initrd", o->initrd, &pl->initrd);
		if (r < 0)
			return r;
		pl->has_initrd = true;
	} else if (iin) {
		r = src_from_tree(c, iin, &pl->initrd);
		if (r < 0)
			return r;
		pl->has_initrd = true;
	}
	return 0;
}

/* Finds systemd-boot for pl->arch (or --efi-loader) and checks it. */
static int plan_loader(struct esp_ctx *c, struct esp_plan *pl)
{
	const char *file = pl->arch == ESP_ARCH_AARCH64 ? "systemd-bootaa64.efi" :
							  "systemd-bootx64.efi";
	const struct walk_inode *dir, *in;
	enum esp_arch arch;
	int r;

	if (c->opts->efi_loader) {
		r = src_from_path(c, "--efi-loader", c->opts->efi_loader, &pl->loader);
	} else {
		dir = tree_lookup(c->tree, c->tree->root, "usr/lib/systemd/boot/efi");
		in = dir && S_ISDIR(dir->mode) ? tree_file(c->tree, dir, file) : NULL;
		if (!in)
			return esp_fail(c, -ENOENT, "no boot loader: the tree has no "
					"usr/lib/systemd/boot/efi/%s (systemd-boot); "
					"give one with --efi-loader PATH", file);
		r = src_from_tree(c, in, &pl->loader);
	}
	if (r < 0)
		return r;
	r = src_arch(c, &pl->loader, "boot loader", &arch);
	if (r < 0)
		return r;
	if (arch != pl->arch) {
		char path[PATH_MAX];

		return esp_fail(c, -ENOEXEC, "'%s': the boot loader is built for %s, "
				"the kernel for %s",
				region_source_path(&pl->loader, path, sizeof(path)),
				arch_name(arch), arch_name(pl->arch));
	}
	return 0;
}

/* Adds the .efi files of dir (UKIs) for pl->arch, skipping names taken. */
static int plan_ukis_in(struct esp_ctx *c, struct esp_plan *pl,
			const struct walk_inode *dir)
{
	int r;

	for (size_t i = 0; dir && S_ISDIR(dir->mode) && i < dir->nchildren; i++) {
		const struct walk_dentry *d = &dir->children[i];
		const struct walk_inode *in = tree_file(c->tree, dir, d->name);
		struct region_source src;
		enum esp_arch arch;
		bool taken = false;

		if (!in || d->name_len < 5 || !esp_name_ok(d->name) ||
		    strcasecmp(d->name + d->name_len - 4, ".efi") != 0)
			continue;
		for (size_t j = 0; j < pl->nukis; j++)
			taken |= strcasecmp(pl->uki_names[j], d->name) == 0;
		if (taken)
			continue;
		r = src_from_tree(c, in, &src);
		if (r < 0)
			return r;
		r = src_arch(c, &src, "unified kernel image", &arch);
		if (r < 0)
			return r;
		if (arch != pl->arch)
			continue;	/* not bootable here: leave it out */

		struct region_source *vs = reallocarray(pl->ukis, pl->nukis + 1,
							sizeof(*vs));
		if (!vs)
			return -ENOMEM;
		pl->ukis = vs;
		const char **vn = reallocarray(pl->uki_names, pl->nukis + 1,
					       sizeof(*vn));
		if (!vn)
			return -ENOMEM;
		pl->uki_names = vn;
		vs[pl->nukis] = src;
		vn[pl->nukis++] = d->name;
	}
	return 0;
}

/*
 * Every file the ESP takes from the tree fits a FAT directory entry's
 * 32-bit size (fat32-gpt.md, directory entries): else -EFBIG, naming it.
 */
static int check_sizes(struct esp_ctx *c, const struct esp_plan *pl)
{
	const struct region_source *big = NULL;

	if (pl->kernel.size > UINT32_MAX)
		big = &pl->kernel;
	else if (pl->has_initrd && pl->initrd.size > UINT32_MAX)
		big = &pl->initrd;
	else if (pl->loader.size > UINT32_MAX)
		big = &pl->loader;
	for (size_t i = 0; !big && i < pl->nukis; i++)
		if (pl->ukis[i].size > UINT32_MAX)
			big = &pl->ukis[i];
	if (!big)
		return 0;

	char path[PATH_MAX];

	return esp_fail(c, -EFBIG, "'%s': %" PRIu64 " bytes; a file on the FAT32 "
			"EFI System Partition holds at most 4 GiB - 1",
			region_source_path(big, path, sizeof(path)), big->size);
}

/* Renders the loader.conf and entry files; returns 0 or -ENOMEM. */
static int compose(struct esp_ctx *c, const struct esp_plan *pl,
		   const char *cmdline, char **ret_conf, char **ret_entry)
{
	char *conf = NULL, *entry = NULL;

	if (asprintf(&conf, "timeout 0\ndefault erofs-nbd-%s.conf\n", pl->kver) < 0)
		return -ENOMEM;
	if (region_map_own(c->map, conf) < 0)
		return -ENOMEM;
	if (asprintf(&entry,
		     "title Linux %s (erofs-nbd)\n"
		     "version %s\n"
		     "linux /%s/vmlinuz\n"
		     "%s%s%s"
		     "options %s\n",
		     pl->kver, pl->kver, pl->kver,
		     pl->has_initrd ? "initrd /" : "", pl->has_initrd ? pl->kver : "",
		     pl->has_initrd ? "/initrd\n" : "", cmdline) < 0)
		return -ENOMEM;
	if (region_map_own(c->map, entry) < 0)
		return -ENOMEM;
	*ret_conf = conf;
	*ret_entry = entry;
	return 0;
}

static struct fat_node file_node(const char *name, const struct region_source *src)
{
	return (struct fat_node){ .name = name, .size = src->size, .src = src,
				  .mtime = src->mtime_sec };
}

static struct fat_node mem_node(const char *name, const char *text, int64_t mtime)
{
	return (struct fat_node){ .name = name, .size = strlen(text), .mem = text,
				  .mtime = mtime };
}

static struct fat_node dir_node(const char *name, struct fat_node *children,
				size_t n, int64_t mtime)
{
	return (struct fat_node){ .name = name, .is_dir = true, .children = children,
				  .nchildren = n, .mtime = mtime };
}

/* Lays the planned ESP out as a FAT tree and appends it to the map. */
static int emit(struct esp_ctx *c, const struct esp_plan *pl, const char *conf,
		const char *entry)
{
	/* Generated files get the kernel's mtime: deterministic, and meaningful. */
	int64_t t = pl->kernel.mtime_sec;
	struct fat_node boot[1], efi[2], entries[1], loader[3], kdir[2], root[3];
	_cleanup_free_ struct fat_node *linux_dir = NULL;
	char *entry_name = NULL, *kver = map_strdup(c->map, pl->kver);
	size_t nefi = 1;
	int r;

	if (!kver || asprintf(&entry_name, "erofs-nbd-%s.conf", pl->kver) < 0 ||
	    region_map_own(c->map, entry_name) < 0)
		return -ENOMEM;

	boot[0] = file_node(pl->arch == ESP_ARCH_AARCH64 ? "BOOTAA64.EFI" :
			    "BOOTX64.EFI", &pl->loader);
	efi[0] = dir_node("BOOT", boot, 1, t);
	if (pl->nukis) {
		linux_dir = calloc(pl->nukis, sizeof(*linux_dir));
		if (!linux_dir)
			return -ENOMEM;
		for (size_t i = 0; i < pl->nukis; i++)
			linux_dir[i] = file_node(pl->uki_names[i], &pl->ukis[i]);
		efi[nefi++] = dir_node("Linux", linux_dir, pl->nukis, t);
	}
	entries[0] = mem_node(entry_name, entry, t);
	loader[0] = mem_node("loader.conf", conf, t);
	loader[1] = mem_node("entries.srel", "type1\n", t);
	loader[2] = dir_node("entries", entries, 1, t);
	kdir[0] = file_node("vmlinuz", &pl->kernel);
	if (pl->has_initrd)
		kdir[1] = file_node("initrd", &pl->initrd);
	root[0] = dir_node("EFI", efi, nefi, t);
	root[1] = dir_node("loader", loader, 3, t);
	root[2] = dir_node(kver, kdir, pl->has_initrd ? 2 : 1, t);

	struct fat_node top = dir_node("", root, 3, t);
	struct fat_opts fo = { .label = "ESP", .volume_id = c->opts->volume_id };
	r = fat_build(&top, &fo, c->map);
	if (r == -ENOTSUP)
		return esp_fail(c, r, "building the FAT file system: iconv cannot "
				"convert UTF-8 to UTF-16LE (glibc's gconv modules missing?)");
	if (r < 0)
		return esp_fail(c, r, "building the FAT file system: %s", strerror(-r));
	return 0;
}

/*
 * Replaces *cmdline with the entry's command line: prefix ("root=PARTUUID=...
 * rootfstype=erofs ro"), the tree's own kernel arguments (bootcfg_kargs():
 * /etc/kernel/cmdline, bootc's kargs.d), then --cmdline, which so has the
 * last word; init's arguments (after a "--") go last
 * (bootcfg_cmdline_join()).
 */
static int add_tree_kargs(struct esp_ctx *c, enum esp_arch arch, const char *prefix,
			  char **cmdline)
{
	const struct esp_opts *o = c->opts;
	struct bootcfg_tree bt = model_tree(c->tree);
	_cleanup_free_ char *kargs = NULL, *path = NULL;
	const char *what, *why;
	size_t bad;
	char *s;
	int r;

	r = bootcfg_kargs(&bt, arch_name(arch), &kargs, &path, &what);
	if (r < 0 && path)
		return esp_fail(c, r, "'%s': %s", path,
				r == -EINVAL && what ? what : strerror(-r));
	if (r < 0)
		return r;
	const char *parts[] = { prefix, kargs, o->cmdline };
	r = bootcfg_cmdline_join(parts, 3, &s, &bad);
	if (r == -EINVAL)	/* not from bootcfg_kargs() or esp_cmdline_check() */
		return esp_fail(c, r, "the kernel command line has a '\"' never closed");
	if (r < 0)
		return r;
	free(*cmdline);
	*cmdline = s;
	if (esp_cmdline_check(*cmdline, &why) < 0)
		return esp_fail(c, -EINVAL, "the kernel command line%s %s",
				*kargs ? " with the tree's arguments" : "", why);
	return 0;
}

static int esp_run(struct esp_ctx *c, struct esp_result *ret)
{
	const struct esp_opts *o = c->opts;
	struct esp_plan pl = { 0 };
	_cleanup_free_ char *cmdline = NULL, *prefix = NULL;
	char *conf, *entry;
	const char *why;
	enum esp_arch karch;
	char path[PATH_MAX];
	size_t bad;
	int r;

	/* Bad text is refused first, whatever else the tree holds. */
	if (o->cmdline && esp_cmdline_check(o->cmdline, &why) < 0)
		return esp_fail(c, -EINVAL, "--cmdline %s", why);
	if (!o->root_partuuid)
		return esp_fail(c, -EINVAL, "no root PARTUUID");
	if (asprintf(&prefix, "root=PARTUUID=%s rootfstype=erofs ro", o->root_partuuid) < 0) {
		prefix = NULL;
		return -ENOMEM;
	}
	/* The length as early: --cmdline alone may be too long. */
	const char *parts[] = { prefix, o->cmdline };
	r = bootcfg_cmdline_join(parts, 2, &cmdline, &bad);
	if (r < 0)	/* -EINVAL: o->cmdline was checked */
		return r;
	if (esp_cmdline_check(cmdline, &why) < 0)
		return esp_fail(c, -EINVAL, "the kernel command line %s", why);

	r = plan_kernel(c, &pl);
	if (r < 0)
		goto out;
	r = src_arch(c, &pl.kernel, "kernel", &karch);
	if (r < 0)
		goto out;
	if (o->arch != ESP_ARCH_AUTO && o->arch != karch) {
		r = esp_fail(c, -ENOEXEC, "'%s': the kernel is built for %s, not %s",
			     region_source_path(&pl.kernel, path, sizeof(path)),
			     arch_name(karch), arch_name(o->arch));
		goto out;
	}
	pl.arch = karch;
	r = add_tree_kargs(c, karch, prefix, &cmdline);
	if (r < 0)
		goto out;
	if (pl.has_initrd) {
		/* Unreadable now means unbootable later: find out at start-up. */
		_cleanup_close_ int fd = pl.initrd.open(&pl.initrd, 0);
		if (fd < 0) {
			r = esp_fail(c, fd, "'%s': reading the initrd: %s",
				     region_source_path(&pl.initrd, path, sizeof(path)),
				     strerror(-fd));
			goto out;
		}
	}
	r = plan_loader(c, &pl);
	if (r < 0)
		goto out;
	if (!o->kernel) {
		r = plan_ukis_in(c, &pl, pl.moddir);
		if (r == 0)
			r = plan_ukis_in(c, &pl, tree_lookup(c->tree, c->tree->root,
							     "boot/EFI/Linux"));
		if (r < 0)
			goto out;
	}
	r = check_sizes(c, &pl);
	if (r < 0)
		goto out;
	r = compose(c, &pl, cmdline, &conf, &entry);
	if (r < 0)
		goto out;
	r = emit(c, &pl, conf, entry);
	if (r < 0)
		goto out;

	ret->kver = strdup(pl.kver);
	if (!ret->kver) {
		r = -ENOMEM;
		goto out;
	}
	ret->arch = pl.arch;
	ret->cmdline = TAKE_PTR(cmdline);
out:
	free(pl.ukis);
	free(pl.uki_names);
	return r;
}

int esp_build(const struct walk_tree *tree, const struct esp_opts *opts,
	      struct region_map *map, struct esp_result *ret, char **ret_what)
{
	struct esp_ctx c = { .tree = tree, .opts = opts, .map = map };
	struct esp_result res = { 0 };
	int r;

	r = esp_run(&c, &res);
	bootcfg_kernels_free(&c.kernels);
	if (r < 0) {
		esp_result_free(&res);
		if (!c.what)
			c.what = strdup(strerror(-r));
		*ret_what = c.what;
		return r;
	}
	free(c.what);
	*ret = res;
	return 0;
}

void esp_result_free(struct esp_result *res)
{
	if (!res)
		return;
	free(res->kver);
	free(res->cmdline);
	res->kver = NULL;
	res->cmdline = NULL;
}
