// SPDX-License-Identifier: MIT
/*
 * check.c - what EROFS can represent: entry names (§8), file types (§8,
 * §9), device numbers (§5.4), xattr names and sizes (§7.1, §7.2), file
 * sizes (§1).  erofs_check_entry() is the walk's check hook; erofs_build()
 * runs the same checks again over the whole tree, so a hand-built tree
 * cannot make the builder misbehave.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "erofs/internal.h"

/* Longest symlink target we store: the kernel's fast path wants < 4096 (§9). */
#define EROFS_SYMLINK_MAX	4095

/* Fills opts with the defaults (erofs.h): 4 KiB blocks, time from the
 * tree, regular files FLAT_PLAIN. */
void erofs_opts_default(struct erofs_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->blkszbits = 12;
	opts->inline_file_tails = true;
}

/* Maps a mode to the dirent file_type (§8); EROFS_FT_UNKNOWN if none. */
uint8_t erofs_file_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:	return EROFS_FT_REG_FILE;
	case S_IFDIR:	return EROFS_FT_DIR;
	case S_IFCHR:	return EROFS_FT_CHRDEV;
	case S_IFBLK:	return EROFS_FT_BLKDEV;
	case S_IFIFO:	return EROFS_FT_FIFO;
	case S_IFSOCK:	return EROFS_FT_SOCK;
	case S_IFLNK:	return EROFS_FT_SYMLINK;
	}
	return EROFS_FT_UNKNOWN;
}

/*
 * Encodes a device number the way i_u stores it (§5.4, the "new" Linux
 * dev_t): minor bits 0-7, major bits 8-19, minor bits 8-19 at 20-31.
 * The caller has checked major < 2^12 and minor < 2^20.
 */
uint32_t erofs_encode_rdev(uint32_t major, uint32_t minor)
{
	return (minor & 0xff) | (major & 0xfff) << 8 | (minor & ~0xffu) << 12;
}

static const struct {
	const char *prefix;
	uint8_t index;
	bool exact;	/* the whole name, empty suffix (ACLs) */
} xattr_prefixes[] = {
	{ "user.", EROFS_XATTR_INDEX_USER, false },
	{ "system.posix_acl_access", EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, true },
	{ "system.posix_acl_default", EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, true },
	{ "trusted.", EROFS_XATTR_INDEX_TRUSTED, false },
	{ "security.", EROFS_XATTR_INDEX_SECURITY, false },
};

/*
 * Splits a full xattr name into its short name index and suffix (§7.2).
 * Returns 0, or -EOPNOTSUPP for a name no index covers (lustre. included:
 * the kernel has no handler for it, so it would be invisible).
 */
int erofs_xattr_name_index(const char *name, uint8_t *ret_index,
			   const char **ret_suffix)
{
	for (size_t i = 0; i < sizeof(xattr_prefixes) / sizeof(xattr_prefixes[0]); i++) {
		size_t n = strlen(xattr_prefixes[i].prefix);
		if (strncmp(name, xattr_prefixes[i].prefix, n) != 0)
			continue;
		if (xattr_prefixes[i].exact && name[n] != '\0')
			continue;
		*ret_index = xattr_prefixes[i].index;
		*ret_suffix = name + n;
		return 0;
	}
	return -EOPNOTSUPP;
}

/*
 * Checks one dentry name: 1..255 bytes, no '/' or NUL, not "." or ".."
 * (the builder adds those itself, §8).  Returns 0, -ENAMETOOLONG or
 * -EINVAL.
 */
int erofs_check_name(const char *name, size_t name_len, const char **ret_what)
{
	if (name_len == 0 || name_len > EROFS_NAME_LEN) {
		*ret_what = "name must be 1 to 255 bytes long";
		return -ENAMETOOLONG;
	}
	if (memchr(name, '/', name_len) || memchr(name, '\0', name_len)) {
		*ret_what = "name contains '/' or NUL";
		return -EINVAL;
	}
	if ((name_len == 1 && name[0] == '.') ||
	    (name_len == 2 && name[0] == '.' && name[1] == '.')) {
		*ret_what = "name '.' or '..' as a real entry";
		return -EINVAL;
	}
	return 0;
}

/*
 * Checks everything about one inode that EROFS limits, for block size
 * 2^blkszbits: file type, size (< 2^32 blocks), symlink target, device
 * number, xattr names, sizes and the inline xattr area (i_xattr_icount is
 * 16 bits, §7.1; the area is sized as if nothing were shared).
 * Returns 0, -EOPNOTSUPP, -ENAMETOOLONG, -E2BIG, -EFBIG or -EINVAL.
 */
int erofs_check_inode(unsigned int blkszbits, const struct walk_inode *wi,
		      const char **ret_what)
{
	uint32_t type = wi->mode & S_IFMT;

	if (erofs_file_type(wi->mode) == EROFS_FT_UNKNOWN || wi->mode > 0xffff) {
		*ret_what = "file type has no EROFS equivalent";
		return -EOPNOTSUPP;
	}
	if (wi->mtime_nsec > 999999999) {
		*ret_what = "mtime nanoseconds out of range";
		return -EINVAL;
	}
	if (type == S_IFREG && (wi->size >> blkszbits) >= (1ull << 32)) {
		*ret_what = "file needs 2^32 blocks or more";
		return -EFBIG;
	}
	if (type == S_IFLNK) {
		if (!wi->symlink || strnlen(wi->symlink, wi->size + 1) != wi->size) {
			*ret_what = "symlink target missing or of the wrong length";
			return -EINVAL;
		}
		if (wi->size == 0 || wi->size > EROFS_SYMLINK_MAX) {
			*ret_what = "symlink target must be 1 to 4095 bytes";
			return -ENAMETOOLONG;
		}
	}
	if ((type == S_IFCHR || type == S_IFBLK) &&
	    (wi->rdev_major >= (1u << 12) || wi->rdev_minor >= (1u << 20))) {
		*ret_what = "device number does not fit EROFS's 32-bit rdev";
		return -EOPNOTSUPP;
	}

	if (wi->nxattrs && !wi->xattrs) {
		*ret_what = "xattr count without xattrs";
		return -EINVAL;
	}
	uint64_t isize = 12;	/* xattr ibody header */
	for (size_t i = 0; i < wi->nxattrs; i++) {
		const struct walk_xattr *x = &wi->xattrs[i];
		const char *suffix;
		uint8_t index;

		if (!x->name || (x->value_len && !x->value)) {
			*ret_what = "xattr without name or value";
			return -EINVAL;
		}
		if (erofs_xattr_name_index(x->name, &index, &suffix) < 0) {
			*ret_what = "xattr name has no EROFS name index (user., trusted., "
				    "security., system.posix_acl_access/default)";
			return -EOPNOTSUPP;
		}
		size_t slen = strlen(suffix);
		if (slen > 255) {
			*ret_what = "xattr name longer than prefix + 255 bytes";
			return -ENAMETOOLONG;
		}
		if (x->value_len > 65535) {
			*ret_what = "xattr value larger than 65535 bytes";
			return -E2BIG;
		}
		isize += erofs_xattr_entry_size(slen, x->value_len);
	}
	/* icount = (xattr_size - 12) / 4 + 1 must fit 16 bits (§7.1). */
	if (wi->nxattrs && (isize - 12) / 4 + 1 > 0xffff) {
		*ret_what = "xattrs too large for the inline xattr area (256 KiB)";
		return -E2BIG;
	}
	return 0;
}

/*
 * The walk's check hook (walk_opts.check): opts is a struct erofs_opts *.
 * The root comes with an empty name.  Returns 0 or -errno with *ret_what
 * a static reason (see erofs_check_name() and erofs_check_inode()).
 */
int erofs_check_entry(void *opts, const struct walk_inode *inode,
		      const char *name, size_t name_len, const char **ret_what)
{
	const struct erofs_opts *o = opts;
	unsigned int blkszbits = o ? o->blkszbits : 12;
	int r;

	if (blkszbits < EROFS_MIN_BLKSZBITS || blkszbits > EROFS_MAX_BLKSZBITS)
		blkszbits = 12;
	if (name_len > 0 || (inode->mode & S_IFMT) != S_IFDIR) {
		r = erofs_check_name(name, name_len, ret_what);
		if (r < 0)
			return r;
	}
	return erofs_check_inode(blkszbits, inode, ret_what);
}
