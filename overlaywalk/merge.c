/* SPDX-License-Identifier: MIT */
/*
 * merge.c - the overlay's rules for one entry of one layer, as the kernel
 * overlayfs applies them on lookup (shared/docs/overlay-layers.md §1) and
 * containers-storage writes them (§2): which xattrs mark a whiteout or an
 * opaque directory, which are the overlay's private ones, what
 * user.containers.override_stat says and how it changes the entry, and
 * the AUFS-form names of mount-program stores.
 *
 * The walk (walk.c) decides with these which layer provides a name; this
 * file holds no state and does no I/O, so each rule is unit-tested alone.
 *
 * Kernel details followed here:
 *   - overlay.opaque is read into a one-byte buffer (ovl_get_dir_xattr_val):
 *     only a value of exactly one byte counts, "yes" or "" do not;
 *   - overlay.whiteout marks a whiteout by its presence, on a regular file
 *     of size 0 (ovl_path_check_xwhiteout_xattr);
 *   - an empty overlay.redirect is invalid and ignored (ovl_check_redirect);
 *   - listxattr never shows the active namespace's "overlay." names, but
 *     shows an escaped "overlay.overlay.X" as "overlay.X" (6.7+,
 *     overlayfs.rst "Nesting overlayfs mounts").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "overlaywalk/internal.h"

#define OVL_SUFFIX "overlay."
#define AUFS_PREFIX ".wh."
#define AUFS_META_PREFIX ".wh..wh."

static const char *ns_prefix(enum walk_ovl_ns ns)
{
	return ns == WALK_OVL_USER ? "user." OVL_SUFFIX : "trusted." OVL_SUFFIX;
}

static int xattr_cmp(const void *a, const void *b)
{
	const struct walk_xattr *x = a, *y = b;

	return strcmp(x->name, y->name);
}

void walk_ovl_scan_xattrs(enum walk_ovl_ns ns, bool take_override,
			  struct walk_inode *inode, struct walk_ovl_marks *ret)
{
	const char *prefix = ns_prefix(ns);
	size_t plen = strlen(prefix), n = 0;
	bool renamed = false;

	*ret = (struct walk_ovl_marks){ 0 };
	for (size_t i = 0; i < inode->nxattrs; i++) {
		struct walk_xattr *xa = &inode->xattrs[i];
		const char *rest;

		if (take_override && !strcmp(xa->name, WALK_OVERRIDE_XATTR)) {
			ret->override = xa->value;
			ret->override_len = xa->value_len;
			continue;
		}
		if (strncmp(xa->name, prefix, plen)) {
			inode->xattrs[n++] = *xa;
			continue;
		}
		rest = xa->name + plen;
		if (!strncmp(rest, OVL_SUFFIX, strlen(OVL_SUFFIX))) {
			/* Escaped: shown one level down without one "overlay.".
			 * The name lives in the arena; shift it in place. */
			memmove(xa->name + plen, rest + strlen(OVL_SUFFIX),
				strlen(rest) - strlen(OVL_SUFFIX) + 1);
			inode->xattrs[n++] = *xa;
			renamed = true;
			continue;
		}
		if (!strcmp(rest, "opaque"))
			ret->opaque = xa->value_len == 1 ? (char)xa->value[0] : 0;
		else if (!strcmp(rest, "whiteout"))
			ret->whiteout = true;
		else if (!strcmp(rest, "redirect"))
			ret->redirect = xa->value_len > 0;
		else if (!strcmp(rest, "metacopy"))
			ret->metacopy = true;
		/* private: dropped */
	}
	inode->nxattrs = n;
	if (n == 0)
		inode->xattrs = NULL;
	if (renamed && n > 1)
		qsort(inode->xattrs, n, sizeof(*inode->xattrs), xattr_cmp);
}

bool walk_ovl_is_whiteout(const struct walk_inode *inode,
			  const struct walk_ovl_marks *marks)
{
	if (S_ISCHR(inode->mode))
		return inode->rdev_major == 0 && inode->rdev_minor == 0;
	return S_ISREG(inode->mode) && inode->size == 0 && marks->whiteout;
}

/* ---- user.containers.override_stat ---- */

/*
 * Parses [s, end) as an unsigned number in base (8 or 10) no larger than
 * max, with at least one digit and nothing else.  Returns 0 or -EBADMSG.
 */
static int parse_num(const char *s, const char *end, unsigned int base,
		     uint32_t max, uint32_t *ret)
{
	uint64_t v = 0;

	if (s == end)
		return -EBADMSG;
	for (; s < end; s++) {
		unsigned int d = (unsigned char)*s - '0';

		if (d >= base)
			return -EBADMSG;
		v = v * base + d;
		if (v > max)
			return -EBADMSG;
	}
	*ret = (uint32_t)v;
	return 0;
}

/* "MAJ-MIN" of a device TYPE; containers-storage ignores further fields. */
static int parse_dev(const char *s, const char *end, struct walk_override *o)
{
	const char *dash = memchr(s, '-', end - s), *dash2;

	if (!dash)
		return -EBADMSG;
	dash2 = memchr(dash + 1, '-', end - dash - 1);
	if (parse_num(s, dash, 10, 0xfff, &o->rdev_major) < 0 ||
	    parse_num(dash + 1, dash2 ? dash2 : end, 10, 0xfffff, &o->rdev_minor) < 0)
		return -EBADMSG;
	return 0;
}

static bool field_is(const char *s, const char *end, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(end - s) == n && !memcmp(s, word, n);
}

static bool field_starts(const char *s, const char *end, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(end - s) > n && !memcmp(s, word, n);
}

int walk_override_parse(const uint8_t *value, size_t len, struct walk_override *ret)
{
	const char *s = (const char *)value, *end = s + len;
	const char *f[5];	/* field starts; f[i + 1] - 1 ends field i */
	struct walk_override o = { 0 };
	uint32_t mode;
	size_t nf = 1;

	if (!value || len == 0 || len > 128)
		return -EBADMSG;
	f[0] = s;
	for (const char *p = s; p < end; p++) {
		if (*p == '\0')
			return -EBADMSG;
		if (*p == ':') {
			if (nf == 4)
				return -EBADMSG;	/* more than 4 fields */
			f[nf++] = p + 1;
		}
	}
	if (nf < 3)
		return -EBADMSG;
	f[nf] = end + 1;
	if (parse_num(f[0], f[1] - 1, 10, UINT32_MAX - 1, &o.uid) < 0 ||
	    parse_num(f[1], f[2] - 1, 10, UINT32_MAX - 1, &o.gid) < 0 ||
	    parse_num(f[2], f[3] - 1, 8, 07777, &mode) < 0)
		return -EBADMSG;
	o.mode = mode;
	if (nf == 4) {
		const char *t = f[3], *te = end;

		if (field_is(t, te, "file"))
			o.mode |= S_IFREG;
		else if (field_is(t, te, "dir"))
			o.mode |= S_IFDIR;
		else if (field_is(t, te, "symlink"))
			o.mode |= S_IFLNK;
		else if (field_is(t, te, "pipe"))
			o.mode |= S_IFIFO;
		else if (field_is(t, te, "socket"))
			o.mode |= S_IFSOCK;
		else if (field_starts(t, te, "block-")) {
			o.mode |= S_IFBLK;
			if (parse_dev(t + 6, te, &o) < 0)
				return -EBADMSG;
		} else if (field_starts(t, te, "char-")) {
			o.mode |= S_IFCHR;
			if (parse_dev(t + 5, te, &o) < 0)
				return -EBADMSG;
		} else {
			return -EBADMSG;
		}
	}
	*ret = o;
	return 0;
}

int walk_override_apply(struct walk_inode *inode, const struct walk_override *o)
{
	uint32_t have = inode->mode & S_IFMT, want = o->mode & S_IFMT;

	if (want && want != have) {
		/* Only what force_mask extraction turns into empty files. */
		if (have != S_IFREG || want == S_IFDIR || want == S_IFLNK)
			return -EBADMSG;
		inode->size = 0;
		inode->blocks = 0;
		inode->reopen = NULL;
		if (want == S_IFCHR || want == S_IFBLK) {
			inode->rdev_major = o->rdev_major;
			inode->rdev_minor = o->rdev_minor;
		}
	} else {
		want = have;
	}
	inode->mode = want | (o->mode & 07777);
	inode->uid = o->uid;
	inode->gid = o->gid;
	return 0;
}

/* ---- AUFS-form names ---- */

enum walk_aufs_kind walk_aufs_classify(const char *name, size_t len,
				       const char **ret_name, size_t *ret_len)
{
	size_t plen = strlen(AUFS_PREFIX);

	if (len < plen || memcmp(name, AUFS_PREFIX, plen))
		return WALK_AUFS_NONE;
	if (len == strlen(WALK_AUFS_OPAQUE_NAME) && !memcmp(name, WALK_AUFS_OPAQUE_NAME, len))
		return WALK_AUFS_OPAQUE;
	if (len >= strlen(AUFS_META_PREFIX) &&
	    !memcmp(name, AUFS_META_PREFIX, strlen(AUFS_META_PREFIX)))
		return WALK_AUFS_META;
	/* ".wh." alone, ".wh..", ".wh..." name nothing that can exist. */
	if (len == plen || (len == plen + 1 && name[plen] == '.') ||
	    (len == plen + 2 && name[plen] == '.' && name[plen + 1] == '.'))
		return WALK_AUFS_META;
	*ret_name = name + plen;
	*ret_len = len - plen;
	return WALK_AUFS_WHITEOUT;
}
