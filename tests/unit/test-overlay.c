/* SPDX-License-Identifier: MIT */
/*
 * test-overlay.c - walk_layers(): each merge rule of the kernel's
 * overlayfs (shared/docs/overlay-layers.md §1, §2), on layer directories
 * built here, one small stack per rule; and merge.c's parsers alone.
 *
 * Expected results are the kernel's (§1.7's table, §1.3-1.6, §1.11-1.13),
 * which tests/test-overlay.sh also checks against a real overlay mount of
 * bigger stacks.  Most cases need root (device nodes, chown, trusted.*
 * xattrs) and are skipped without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/source.h"
#include "overlaywalk/walk.h"

#define MAX_LAYERS 8

static char base[64];
static char layer_paths[MAX_LAYERS][96];
static const char *layers[MAX_LAYERS];

/* ---- building layers ---- */

static void lp(char *buf, size_t size, int layer, const char *rel)
{
	snprintf(buf, size, "%s/%s", layer_paths[layer], rel);
}

/* Creates the parent directories of rel in layer (mode 0755). */
static void parents(int layer, const char *rel)
{
	char p[PATH_MAX], *s;

	lp(p, sizeof(p), layer, rel);
	for (s = p + strlen(layer_paths[layer]) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		if (mkdir(p, 0755) < 0)
			assert_int_equal(errno, EEXIST);
		*s = '/';
	}
}

static void mkd(int layer, const char *rel, mode_t mode)
{
	char p[PATH_MAX];

	parents(layer, rel);
	lp(p, sizeof(p), layer, rel);
	assert_int_equal(mkdir(p, mode), 0);
	assert_int_equal(chmod(p, mode), 0);
}

static void mkf(int layer, const char *rel, const char *data)
{
	char p[PATH_MAX];
	int fd;

	parents(layer, rel);
	lp(p, sizeof(p), layer, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void mkl(int layer, const char *rel, const char *target)
{
	char p[PATH_MAX];

	parents(layer, rel);
	lp(p, sizeof(p), layer, rel);
	assert_int_equal(symlink(target, p), 0);
}

static void mkn(int layer, const char *rel, mode_t type, unsigned int ma, unsigned int mi)
{
	char p[PATH_MAX];

	parents(layer, rel);
	lp(p, sizeof(p), layer, rel);
	assert_int_equal(mknod(p, type | 0644, makedev(ma, mi)), 0);
}

/* A classic whiteout: a character device 0/0. */
static void whiteout(int layer, const char *rel)
{
	mkn(layer, rel, S_IFCHR, 0, 0);
}

static void xattr(int layer, const char *rel, const char *name, const void *v, size_t n)
{
	char p[PATH_MAX];

	lp(p, sizeof(p), layer, rel);
	assert_int_equal(lsetxattr(p, name, v, n, 0), 0);
}

static void xattr_s(int layer, const char *rel, const char *name, const char *v)
{
	xattr(layer, rel, name, v, strlen(v));
}

static void hardlink(int layer, const char *old_rel, const char *rel)
{
	char p[PATH_MAX], q[PATH_MAX];

	lp(p, sizeof(p), layer, old_rel);
	lp(q, sizeof(q), layer, rel);
	assert_int_equal(link(p, q), 0);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

/* A fresh base directory with n empty layers; layer 0 is the top. */
static int setup(void **state)
{
	strcpy(base, "/tmp/test-overlay.XXXXXX");
	assert_non_null(mkdtemp(base));
	for (int i = 0; i < MAX_LAYERS; i++) {
		snprintf(layer_paths[i], sizeof(layer_paths[i]), "%s/L%d", base, i);
		assert_int_equal(mkdir(layer_paths[i], 0755), 0);
		layers[i] = layer_paths[i];
	}
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < MAX_LAYERS; i++)
		(void)umount2(layer_paths[i], MNT_DETACH);	/* test_layer_mounts */
	return nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void need_root(void)
{
	if (geteuid() != 0)
		skip();
}

/* ---- walking and looking ---- */

/* Directory walkers for merge_ns() (walk_opts.threads; 0: one per CPU). */
static unsigned int walkers;

static struct walk_tree *merge_ns(size_t n, enum walk_ovl_ns ns, bool aufs)
{
	struct walk_stack st = { .layers = layers, .nlayers = n, .ns = ns,
				 .aufs_whiteouts = aufs };
	struct walk_opts opts = { .threads = walkers };
	struct walk_tree *tree = NULL;
	char *errpath = NULL;
	const char *what = NULL;
	int r = walk_layers(&st, &opts, &tree, &errpath, &what);

	if (r < 0)
		print_error("walk_layers: '%s': %s: %s\n", errpath ? errpath : "",
			    what ? what : "?", strerror(-r));
	assert_int_equal(r, 0);
	assert_null(errpath);
	return tree;
}

static struct walk_tree *merge(size_t n)
{
	return merge_ns(n, WALK_OVL_TRUSTED, false);
}

/* walk_layers() must fail with err; returns the error path (caller frees). */
static char *merge_fails(size_t n, enum walk_ovl_ns ns, int err, const char *what_part)
{
	struct walk_stack st = { .layers = layers, .nlayers = n, .ns = ns };
	struct walk_tree *tree = NULL;
	char *errpath = NULL;
	const char *what = NULL;

	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), err);
	assert_null(tree);
	if (what_part) {
		assert_non_null(what);
		if (!strstr(what, what_part))
			fail_msg("'%s' does not mention '%s'", what, what_part);
	}
	return errpath;
}

static const struct walk_inode *child(const struct walk_inode *dir, const char *name)
{
	for (size_t i = 0; i < dir->nchildren; i++)
		if (dir->children[i].name_len == strlen(name) &&
		    !memcmp(dir->children[i].name, name, strlen(name)))
			return dir->children[i].inode;
	return NULL;
}

static const struct walk_inode *lookup(const struct walk_tree *tree, const char *path)
{
	const struct walk_inode *ino = tree->root;
	char buf[PATH_MAX], *save = NULL;

	strcpy(buf, path);
	for (char *c = strtok_r(buf, "/", &save); c && ino; c = strtok_r(NULL, "/", &save))
		ino = child(ino, c);
	return ino;
}

/* The names of directory path, sorted, joined with spaces. */
static const char *names(const struct walk_tree *tree, const char *path)
{
	static char out[1024];
	const struct walk_inode *d = lookup(tree, path);
	size_t off = 0;

	assert_non_null(d);
	out[0] = '\0';
	for (size_t i = 0; i < d->nchildren; i++)
		off += snprintf(out + off, sizeof(out) - off, "%s%.*s", i ? " " : "",
				(int)d->children[i].name_len, d->children[i].name);
	return out;
}

static const struct walk_xattr *find_xattr(const struct walk_inode *ino, const char *name)
{
	for (size_t i = 0; i < ino->nxattrs; i++)
		if (!strcmp(ino->xattrs[i].name, name))
			return &ino->xattrs[i];
	return NULL;
}

/* The file's data, read through walk_open_data(): from its layer. */
static const char *data_of(const struct walk_tree *tree, const char *path)
{
	static char buf[256];
	const struct walk_inode *ino = lookup(tree, path);
	int fd;
	ssize_t n;

	assert_non_null(ino);
	fd = walk_open_data(tree, ino);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

/* ---- rules ---- */

/* Per name the top-most layer that has it decides; directories merge. */
static void test_top_most_wins(void **state)
{
	struct walk_tree *tree;

	mkf(2, "f", "bottom");
	mkf(1, "f", "middle");
	mkf(0, "f", "top");
	mkf(2, "only2", "2");
	mkf(1, "d/m", "m");
	mkf(2, "d/b", "b");
	mkf(0, "d/t", "t");
	tree = merge(3);
	assert_string_equal(names(tree, ""), "d f only2");
	assert_string_equal(names(tree, "d"), "b m t");
	assert_string_equal(data_of(tree, "f"), "top");
	assert_string_equal(data_of(tree, "only2"), "2");
	assert_string_equal(data_of(tree, "d/b"), "b");
	assert_int_equal(lookup(tree, "f")->layer, 0);
	assert_int_equal(lookup(tree, "only2")->layer, 2);
	assert_int_equal(lookup(tree, "d/m")->layer, 1);
	/* The merged directory is the top-most one; nlink counts what stays. */
	assert_int_equal(lookup(tree, "d")->layer, 0);
	assert_int_equal(lookup(tree, "")->nlink, 3);
	assert_int_equal(tree->ninodes, 7);
	walk_tree_free(tree);
}

/* A 0/0 character device hides the name below, whatever it is, and is
 * not part of the tree itself; other devices are just devices. */
static void test_whiteout_device(void **state)
{
	struct walk_tree *tree;

	need_root();
	mkf(2, "file", "x");
	mkf(2, "dir/inner", "x");
	mkl(2, "link", "file");
	mkf(2, "kept", "x");
	whiteout(1, "file");
	whiteout(1, "dir");
	whiteout(1, "link");
	whiteout(0, "nothing-below");
	whiteout(2, "at-bottom");
	mkn(1, "null", S_IFCHR, 1, 3);
	mkn(1, "zero-five", S_IFCHR, 0, 5);
	mkn(1, "blk00", S_IFBLK, 0, 0);
	tree = merge(3);
	assert_string_equal(names(tree, ""), "blk00 kept null zero-five");
	assert_int_equal(lookup(tree, "null")->rdev_major, 1);
	assert_int_equal(lookup(tree, "zero-five")->rdev_minor, 5);
	walk_tree_free(tree);

	/* walk_tree() reads the same layer as a plain tree: a device. */
	{
		struct walk_tree *plain = NULL;

		assert_int_equal(walk_tree(layers[1], NULL, &plain, NULL, NULL), 0);
		assert_non_null(lookup(plain, "file"));
		assert_true(S_ISCHR(lookup(plain, "file")->mode));
		walk_tree_free(plain);
	}
}

/* An empty regular file with overlay.whiteout is a whiteout too, with or
 * without overlay.opaque "x" on its directory; one with data is not. */
static void test_xattr_whiteout(void **state)
{
	struct walk_tree *tree;
	const struct walk_inode *ino;

	need_root();
	mkf(2, "x/gone", "lower");
	mkf(2, "x/stays", "lower");
	mkf(2, "y/gone", "lower");
	mkf(1, "x/gone", "");
	xattr(1, "x/gone", "trusted.overlay.whiteout", "", 0);
	xattr_s(1, "x", "trusted.overlay.opaque", "x");
	mkf(1, "x/data", "data");
	xattr(1, "x/data", "trusted.overlay.whiteout", "", 0);
	mkf(1, "y/gone", "");
	xattr(1, "y/gone", "trusted.overlay.whiteout", "anything", 8);
	mkf(1, "y/user", "");
	xattr(1, "y/user", "user.overlay.whiteout", "", 0);
	mkf(2, "y/at-bottom", "");
	xattr(2, "y/at-bottom", "trusted.overlay.whiteout", "", 0);
	tree = merge(3);
	assert_string_equal(names(tree, "x"), "data stays");
	assert_string_equal(names(tree, "y"), "user");
	/* Not a whiteout: the mark is private and dropped; the other
	 * namespace's is an ordinary xattr. */
	assert_int_equal(lookup(tree, "x/data")->nxattrs, 0);
	ino = lookup(tree, "y/user");
	assert_non_null(find_xattr(ino, "user.overlay.whiteout"));
	/* "x" is not opaque: x merges with the layer below. */
	assert_int_equal(lookup(tree, "x")->nxattrs, 0);
	walk_tree_free(tree);
}

/* overlay.whiteout makes only a regular file a whiteout (§1.3;
 * ovl_path_check_xwhiteout_xattr): a directory carrying it is an ordinary
 * directory, listed and merged with the one below, the mark dropped. */
static void test_xattr_whiteout_dir(void **state)
{
	struct walk_tree *tree;

	need_root();
	mkf(2, "wd/below", "lower");
	mkd(1, "wd", 0755);
	xattr(1, "wd", "trusted.overlay.whiteout", "", 0);
	mkf(1, "wd/here", "x");
	mkf(2, "only-lower", "x");
	mkd(0, "top-wd", 0755);
	xattr(0, "top-wd", "trusted.overlay.whiteout", "", 0);
	tree = merge(3);
	assert_string_equal(names(tree, ""), "only-lower top-wd wd");
	assert_string_equal(names(tree, "wd"), "below here");
	assert_int_equal(lookup(tree, "wd")->layer, 1);
	assert_int_equal(lookup(tree, "wd")->nxattrs, 0);	/* private */
	walk_tree_free(tree);
}

/* overlay.opaque = "y" (exactly one byte) stops the merge, for the whole
 * subtree; other values do not; the root is never opaque. */
static void test_opaque(void **state)
{
	struct walk_tree *tree;

	need_root();
	mkf(3, "o/a", "a");
	mkf(3, "o/sub/deep", "deep");
	mkd(1, "o", 0755);
	xattr_s(1, "o", "trusted.overlay.opaque", "y");
	mkf(1, "o/b", "b");
	mkf(0, "o/c", "c");
	static const char *const vals[] = { "yes", "", "n", "Y" };
	for (int k = 0; k < 4; k++) {
		char rel[32], f[40];

		snprintf(rel, sizeof(rel), "nop%d", k);
		snprintf(f, sizeof(f), "%s/lower", rel);
		mkf(3, f, "lower");
		mkd(1, rel, 0755);
		xattr(1, rel, "trusted.overlay.opaque", vals[k], strlen(vals[k]));
	}
	mkf(3, "bottom-only", "x");
	xattr_s(2, "", "trusted.overlay.opaque", "y");	/* a root: ignored */
	mkf(3, "nested/keep/lower", "x");
	mkf(2, "nested/keep/mid", "x");
	mkd(1, "nested/keep/opq", 0755);
	mkf(3, "nested/keep/opq/hidden", "x");
	xattr_s(1, "nested/keep/opq", "trusted.overlay.opaque", "y");
	tree = merge(4);
	assert_string_equal(names(tree, "o"), "b c");
	assert_null(lookup(tree, "o/sub"));
	for (int k = 0; k < 4; k++) {
		char rel[32];

		snprintf(rel, sizeof(rel), "nop%d", k);
		assert_string_equal(names(tree, rel), "lower");
		assert_int_equal(lookup(tree, rel)->nxattrs, 0);	/* private */
	}
	assert_non_null(lookup(tree, "bottom-only"));
	assert_string_equal(names(tree, "nested/keep"), "lower mid opq");
	assert_string_equal(names(tree, "nested/keep/opq"), "");
	walk_tree_free(tree);
}

/*
 * The root is the stack of every layer root, whatever their opaque marks,
 * the top layer's included (design.md; the kernel never looks the root
 * up, so ovl_lookup() never reads its opaque xattr): names only lower
 * layers have are still listed at "/".  The same for an AUFS
 * .wh..wh..opq in the top root, itself not listed.
 */
static void test_root_opaque(void **state)
{
	struct walk_tree *tree;
	char p[PATH_MAX];

	mkf(2, "bottom-only", "x");
	mkf(1, "middle-only", "x");
	mkf(1, "d/lower", "x");
	mkf(0, "d/top", "x");
	mkf(0, ".wh..wh..opq", "");
	tree = merge_ns(3, WALK_OVL_TRUSTED, true);
	assert_string_equal(names(tree, ""), "bottom-only d middle-only");
	assert_string_equal(names(tree, "d"), "lower top");
	walk_tree_free(tree);

	need_root();
	lp(p, sizeof(p), 0, ".wh..wh..opq");
	assert_int_equal(unlink(p), 0);
	xattr_s(0, "", "trusted.overlay.opaque", "y");
	tree = merge(3);
	assert_string_equal(names(tree, ""), "bottom-only d middle-only");
	assert_string_equal(names(tree, "d"), "lower top");
	assert_int_equal(tree->root->nxattrs, 0);	/* private: dropped */
	walk_tree_free(tree);
}

/* §1.7: type changes across layers. */
static void test_type_changes(void **state)
{
	struct walk_tree *tree;

	need_root();
	mkf(3, "file-over-dir/x", "x");
	mkf(1, "file-over-dir", "file");
	mkf(3, "dofod/deep", "must not show");
	mkf(2, "dofod", "file");
	mkf(1, "dofod/top", "top");
	mkf(3, "link-over-dir/x", "x");
	mkl(1, "link-over-dir", "target");
	mkl(3, "dir-over-link", "nowhere");
	mkf(1, "dir-over-link/x", "x");
	mkf(3, "fifo-over-file", "file");
	mkn(1, "fifo-over-file", S_IFIFO, 0, 0);
	/* Whited out, then re-created higher up: not merged with below. */
	mkf(3, "again/old", "old");
	whiteout(2, "again");
	mkf(1, "again/new", "new");
	mkf(3, "again-file/old", "old");
	whiteout(2, "again-file");
	mkf(1, "again-file", "now a file");
	tree = merge(4);
	assert_true(S_ISREG(lookup(tree, "file-over-dir")->mode));
	assert_string_equal(data_of(tree, "file-over-dir"), "file");
	assert_string_equal(names(tree, "dofod"), "top");
	assert_true(S_ISLNK(lookup(tree, "link-over-dir")->mode));
	assert_string_equal(lookup(tree, "link-over-dir")->symlink, "target");
	assert_string_equal(names(tree, "dir-over-link"), "x");
	assert_true(S_ISFIFO(lookup(tree, "fifo-over-file")->mode));
	assert_string_equal(names(tree, "again"), "new");
	assert_string_equal(data_of(tree, "again-file"), "now a file");
	walk_tree_free(tree);
}

/* The top-most object's metadata and xattrs; private ones dropped,
 * escaped ones unescaped (and the list kept sorted). */
static void test_metadata_and_xattrs(void **state)
{
	struct walk_tree *tree;
	const struct walk_inode *d, *f;
	struct timespec ts[2] = { { .tv_sec = 1234, .tv_nsec = 5 }, { .tv_sec = 1234, .tv_nsec = 5 } };
	char p[PATH_MAX];

	need_root();
	mkd(1, "d", 0700);
	xattr_s(1, "d", "user.layer", "1");
	mkd(0, "d", 0751);
	lp(p, sizeof(p), 0, "d");
	assert_int_equal(chown(p, 12, 34), 0);
	xattr_s(0, "d", "user.layer", "0");
	xattr_s(0, "d", "trusted.overlay.impure", "y");
	xattr_s(0, "d", "trusted.overlay.origin", "");
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	mkf(0, "f", "x");
	xattr_s(0, "f", "trusted.overlay.overlay.whiteout", "esc");
	xattr_s(0, "f", "trusted.overlay.nlink", "U+1");
	xattr_s(0, "f", "trusted.a", "a");
	xattr_s(0, "f", "trusted.z", "z");
	xattr_s(0, "f", "user.overlay.opaque", "y");
	tree = merge(2);
	d = lookup(tree, "d");
	assert_int_equal(d->mode, S_IFDIR | 0751);
	assert_int_equal(d->uid, 12);
	assert_int_equal(d->gid, 34);
	assert_int_equal(d->mtime_sec, 1234);
	assert_int_equal(d->mtime_nsec, 5);
	assert_int_equal(d->nxattrs, 1);
	assert_string_equal(d->xattrs[0].name, "user.layer");
	assert_memory_equal(d->xattrs[0].value, "0", 1);
	f = lookup(tree, "f");
	assert_int_equal(f->nxattrs, 4);
	assert_string_equal(f->xattrs[0].name, "trusted.a");
	assert_string_equal(f->xattrs[1].name, "trusted.overlay.whiteout");
	assert_memory_equal(f->xattrs[1].value, "esc", 3);
	assert_string_equal(f->xattrs[2].name, "trusted.z");
	assert_string_equal(f->xattrs[3].name, "user.overlay.opaque");
	walk_tree_free(tree);
}

/*
 * Only names under the namespace's "overlay." (with the dot) are the
 * overlay's (overlayfs.rst "Non-standard behavior": the kernel hides
 * exactly the "trusted.overlay." / "user.overlay." prefix): a name that
 * merely starts with "overlay", such as trusted.overlayx or
 * user.overlayfoo, is an ordinary xattr and kept, in either namespace.
 */
static void test_private_prefix(void **state)
{
	struct walk_tree *tree;
	const struct walk_inode *f;

	need_root();
	mkf(1, "f", "x");
	xattr_s(1, "f", "trusted.overlayx", "t");
	xattr_s(1, "f", "user.overlayfoo", "u");
	xattr_s(1, "f", "trusted.overlay.origin", "");
	xattr_s(1, "f", "user.overlay.origin", "");
	tree = merge(2);
	f = lookup(tree, "f");
	assert_int_equal(f->nxattrs, 3);
	assert_string_equal(f->xattrs[0].name, "trusted.overlayx");
	assert_memory_equal(f->xattrs[0].value, "t", 1);
	assert_string_equal(f->xattrs[1].name, "user.overlay.origin");
	assert_string_equal(f->xattrs[2].name, "user.overlayfoo");
	walk_tree_free(tree);

	tree = merge_ns(2, WALK_OVL_USER, false);
	f = lookup(tree, "f");
	assert_int_equal(f->nxattrs, 3);
	assert_string_equal(f->xattrs[0].name, "trusted.overlay.origin");
	assert_string_equal(f->xattrs[1].name, "trusted.overlayx");
	assert_string_equal(f->xattrs[2].name, "user.overlayfoo");
	assert_memory_equal(f->xattrs[2].value, "u", 1);
	walk_tree_free(tree);
}

/* -o userxattr: user.overlay.* marks count, trusted.overlay.* are data. */
static void test_user_namespace(void **state)
{
	struct walk_tree *tree;

	need_root();
	mkf(2, "o/lower", "x");
	mkd(1, "o", 0755);
	xattr_s(1, "o", "user.overlay.opaque", "y");
	mkf(2, "t/lower", "x");
	mkd(1, "t", 0755);
	xattr_s(1, "t", "trusted.overlay.opaque", "y");
	mkf(2, "gone", "x");
	mkf(1, "gone", "");
	xattr(1, "gone", "user.overlay.whiteout", "", 0);
	whiteout(1, "gone2");
	mkf(2, "gone2", "x");
	tree = merge_ns(3, WALK_OVL_USER, false);
	assert_string_equal(names(tree, ""), "o t");
	assert_string_equal(names(tree, "o"), "");
	assert_int_equal(lookup(tree, "o")->nxattrs, 0);
	assert_string_equal(names(tree, "t"), "lower");
	assert_non_null(find_xattr(lookup(tree, "t"), "trusted.overlay.opaque"));
	walk_tree_free(tree);
}

/* Hard links join names of one layer; nlink counts the names that stay. */
static void test_hard_links(void **state)
{
	struct walk_tree *tree;
	const struct walk_inode *a, *b;
	char p[PATH_MAX], q[PATH_MAX];

	need_root();
	mkf(2, "h/pair1", "pair");
	hardlink(2, "h/pair1", "h/pair2");
	hardlink(2, "h/pair1", "h/pair3");
	mkf(1, "h/pair1", "replaced");
	whiteout(1, "h/pair3");
	mkf(0, "h/tri1", "three");
	hardlink(0, "h/tri1", "h/tri2");
	hardlink(0, "h/tri1", "h/tri3");
	/* One disk inode in two layers (containers-storage's dedup): two
	 * image inodes. */
	mkf(2, "h/shared-a", "same");
	lp(p, sizeof(p), 2, "h/shared-a");
	lp(q, sizeof(q), 1, "h/shared-b");
	assert_int_equal(link(p, q), 0);
	tree = merge(3);
	assert_string_equal(names(tree, "h"), "pair1 pair2 shared-a shared-b tri1 tri2 tri3");
	assert_int_equal(lookup(tree, "h/pair2")->nlink, 1);
	assert_int_equal(lookup(tree, "h/pair1")->nlink, 1);
	assert_ptr_not_equal(lookup(tree, "h/pair1"), lookup(tree, "h/pair2"));
	a = lookup(tree, "h/tri1");
	assert_int_equal(a->nlink, 3);
	assert_ptr_equal(lookup(tree, "h/tri3"), a);
	a = lookup(tree, "h/shared-a");
	b = lookup(tree, "h/shared-b");
	assert_ptr_not_equal(a, b);
	assert_int_equal(a->nlink, 1);
	assert_int_equal(b->layer, 1);
	walk_tree_free(tree);
}

/* Stores with a mount program keep the OCI/AUFS whiteout files. */
static void test_aufs(void **state)
{
	struct walk_tree *tree;

	mkf(2, "d/gone", "x");
	mkf(2, "d/kept", "x");
	mkf(1, "d/.wh.gone", "");
	mkf(1, "d/.wh..wh.plnk", "");
	mkf(2, "o/hidden", "x");
	mkf(1, "o/.wh..wh..opq", "");	/* opaque, whatever the order */
	mkf(1, "o/a", "x");
	mkf(1, "o/z", "x");
	mkf(2, "same/f", "lower");
	mkf(1, "same/f", "this layer's");
	mkf(1, "same/.wh.f", "");	/* never hides its own layer */
	mkf(2, "rec/old", "x");
	mkf(1, ".wh.rec", "");
	mkf(1, "rec/new", "x");
	tree = merge_ns(3, WALK_OVL_TRUSTED, true);
	assert_string_equal(names(tree, "d"), "kept");
	assert_string_equal(names(tree, "o"), "a z");
	assert_string_equal(data_of(tree, "same/f"), "this layer's");
	assert_string_equal(names(tree, "rec"), "new");
	walk_tree_free(tree);

	/* Without the option they are ordinary files, as for the kernel. */
	tree = merge(3);
	assert_string_equal(names(tree, "d"), ".wh..wh.plnk .wh.gone gone kept");
	assert_string_equal(names(tree, "o"), ".wh..wh..opq a hidden z");
	walk_tree_free(tree);
}

/* user.containers.override_stat: where the layer root carries it (or the
 * stack says so), owner, mode and type come from it. */
static void test_override_stat(void **state)
{
	struct walk_stack st = { .layers = layers, .nlayers = 2 };
	struct walk_tree *tree = NULL;
	const struct walk_inode *ino;
	char *errpath = NULL;
	const char *what = NULL;

	mkd(0, "d", 0700);
	xattr_s(0, "", "user.containers.override_stat", "0:0:0555:dir");
	xattr_s(0, "d", "user.containers.override_stat", "12:34:2755:dir");
	mkf(0, "dev", "");
	xattr_s(0, "dev", "user.containers.override_stat", "0:6:0660:block-8-1");
	mkf(0, "fifo", "");
	xattr_s(0, "fifo", "user.containers.override_stat", "0:0:0600:pipe");
	mkf(0, "plain", "data");
	xattr_s(0, "plain", "user.containers.override_stat", "1000:1000:4711");
	mkf(0, "wh", "");
	xattr_s(0, "wh", "user.containers.override_stat", "0:0:0:char-0-0");
	mkf(1, "wh", "lower");
	mkf(1, "lower-has-none", "x");
	xattr_s(1, "lower-has-none", "user.containers.override_stat", "7:7:0777:file");
	if (geteuid() == 0)
		st.ns = WALK_OVL_TRUSTED;
	else
		st.ns = WALK_OVL_USER;
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), 0);
	ino = tree->root;
	assert_int_equal(ino->mode, S_IFDIR | 0555);
	ino = lookup(tree, "d");
	assert_int_equal(ino->mode, S_IFDIR | 02755);
	assert_int_equal(ino->uid, 12);
	assert_int_equal(ino->gid, 34);
	assert_null(find_xattr(ino, "user.containers.override_stat"));
	ino = lookup(tree, "dev");
	assert_int_equal(ino->mode, S_IFBLK | 0660);
	assert_int_equal(ino->rdev_major, 8);
	assert_int_equal(ino->rdev_minor, 1);
	assert_int_equal(ino->gid, 6);
	assert_int_equal(lookup(tree, "fifo")->mode, S_IFIFO | 0600);
	ino = lookup(tree, "plain");
	assert_int_equal(ino->mode, S_IFREG | 04711);
	assert_int_equal(ino->uid, 1000);
	assert_int_equal(ino->size, 4);
	assert_null(lookup(tree, "wh"));	/* char 0/0 after the override */
	/* Layer 1's root has no override: its files keep theirs as data. */
	ino = lookup(tree, "lower-has-none");
	assert_int_equal(ino->mode & 07777, 0644);
	assert_non_null(find_xattr(ino, "user.containers.override_stat"));
	walk_tree_free(tree);

	/* force_mask in storage.conf: every layer. */
	st.override_stat = true;
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), 0);
	assert_int_equal(lookup(tree, "lower-has-none")->mode, S_IFREG | 0777);
	assert_int_equal(lookup(tree, "lower-has-none")->uid, 7);
	walk_tree_free(tree);

	/* Malformed, or a type the file cannot become: an error naming it. */
	xattr_s(0, "plain", "user.containers.override_stat", "0:0:0999");
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), -EBADMSG);
	assert_non_null(strstr(errpath, "/L0/plain"));
	assert_non_null(strstr(what, "override_stat"));
	free(errpath);
	errpath = NULL;
	xattr_s(0, "plain", "user.containers.override_stat", "0:0:0755:dir");
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), -EBADMSG);
	free(errpath);
}

/*
 * override_stat is decided per layer, by each layer's own root (walk.h
 * struct walk_stack; fuse-overlayfs reads it per layer): a lower layer
 * whose root carries it has its files take the override's owner and
 * mode, under a top layer whose root does not.
 */
static void test_override_stat_lower(void **state)
{
	struct walk_stack st = { .layers = layers, .nlayers = 2 };
	struct walk_tree *tree = NULL;
	const struct walk_inode *ino;
	char *errpath = NULL;
	const char *what = NULL;

	mkf(0, "top-has-none", "x");
	xattr_s(0, "top-has-none", "user.containers.override_stat", "5:5:0700:file");
	xattr_s(1, "", "user.containers.override_stat", "0:0:0755:dir");
	mkf(1, "lower", "x");
	xattr_s(1, "lower", "user.containers.override_stat", "7:8:0777:file");
	st.ns = geteuid() == 0 ? WALK_OVL_TRUSTED : WALK_OVL_USER;
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), 0);
	ino = lookup(tree, "lower");
	assert_int_equal(ino->layer, 1);
	assert_int_equal(ino->mode, S_IFREG | 0777);
	assert_int_equal(ino->uid, 7);
	assert_int_equal(ino->gid, 8);
	assert_null(find_xattr(ino, "user.containers.override_stat"));
	ino = lookup(tree, "top-has-none");
	assert_int_equal(ino->mode & 07777, 0644);
	assert_non_null(find_xattr(ino, "user.containers.override_stat"));
	walk_tree_free(tree);
}

/* What only a mount with metacopy or redirect_dir could show: refused,
 * naming the path and the xattr; where the kernel would not look at the
 * mark, accepted. */
static void test_refused(void **state)
{
	struct walk_tree *tree;
	char *errpath;

	need_root();
	mkf(2, "f", "data");
	mkf(0, "f", "");
	xattr(0, "f", "trusted.overlay.metacopy", "", 0);
	errpath = merge_fails(3, WALK_OVL_TRUSTED, -EOPNOTSUPP, "trusted.overlay.metacopy");
	assert_non_null(strstr(errpath, "/L0/f"));
	free(errpath);
	assert_int_equal(lremovexattr(strcat(strcpy((char[PATH_MAX]){ 0 }, layer_paths[0]), "/f"),
				      "trusted.overlay.metacopy"), 0);

	mkf(2, "moved/x", "x");
	mkd(1, "d", 0755);
	xattr_s(1, "d", "trusted.overlay.redirect", "moved");
	errpath = merge_fails(3, WALK_OVL_TRUSTED, -EOPNOTSUPP, "trusted.overlay.redirect");
	assert_non_null(strstr(errpath, "/L1/d"));
	free(errpath);
	/* Opaque: the redirect is not followed. */
	xattr_s(1, "d", "trusted.overlay.opaque", "y");
	tree = merge(3);
	walk_tree_free(tree);
	/* In the bottom layer it is never read; the user.* one is data. */
	xattr(1, "d", "trusted.overlay.opaque", "n", 1);
	tree = merge(2);
	walk_tree_free(tree);
	tree = merge_ns(3, WALK_OVL_USER, false);
	walk_tree_free(tree);
	/* A lower directory's redirect counts too. */
	mkd(0, "d", 0755);
	errpath = merge_fails(3, WALK_OVL_TRUSTED, -EOPNOTSUPP, "redirect");
	assert_non_null(strstr(errpath, "/L1/d"));
	free(errpath);
}

/* Files reopen from their layer, by handle or by path from that layer's
 * root, and a change gives EIO. */
static void test_reopen(void **state)
{
	struct walk_tree *tree;
	struct walk_inode *ino;
	char p[PATH_MAX];
	int fd;

	mkf(2, "a/b/file", "from layer 2");
	mkf(0, "a/top", "top");
	tree = merge(3);
	ino = (struct walk_inode *)lookup(tree, "a/b/file");
	assert_int_equal(ino->layer, 2);
	assert_string_equal(data_of(tree, "a/b/file"), "from layer 2");
	ino->reopen = NULL;	/* as without CAP_DAC_READ_SEARCH */
	assert_string_equal(data_of(tree, "a/b/file"), "from layer 2");
	{
		/* The server's region source goes by path from the same layer. */
		struct region_source src;
		char buf[32] = "";

		assert_int_equal(walk_region_source(tree, ino, &src), 0);
		fd = src.open(&src, 0);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, buf, sizeof(buf) - 1, 0), 12);
		assert_string_equal(buf, "from layer 2");
		close(fd);
	}
	/* Layer 0 has a/ but no a/b/: the path must not be tried there. */
	mkf(0, "a/b/file", "an impostor in layer 0");
	assert_string_equal(data_of(tree, "a/b/file"), "from layer 2");
	lp(p, sizeof(p), 2, "a/b/file");
	fd = open(p, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "!", 1), 1);
	close(fd);
	assert_int_equal(walk_open_data(tree, ino), -EIO);
	walk_tree_free(tree);
}

/*
 * Layers on file systems of their own (a lower on a tmpfs, the top on
 * another): each entry is checked against its own layer's mount, not the
 * top layer's (design.md: a directory on another mount than its layer
 * root is another file system; the kernel's overlay takes layers from
 * any mounts).  Every layer's files stay.
 */
static void test_layer_mounts(void **state)
{
	struct walk_tree *tree;

	need_root();
	if (mount("test-overlay", layer_paths[0], "tmpfs", 0, "mode=0755") < 0 ||
	    mount("test-overlay", layer_paths[2], "tmpfs", 0, "mode=0755") < 0) {
		print_message("skipping: mount tmpfs: %s\n", strerror(errno));
		skip();
	}
	mkf(0, "d/top", "top");
	mkf(1, "d/mid", "mid");
	mkf(2, "d/bottom", "bottom");
	mkf(1, "only1", "1");
	mkf(2, "only2", "2");
	tree = merge(3);
	assert_string_equal(names(tree, ""), "d only1 only2");
	assert_string_equal(names(tree, "d"), "bottom mid top");
	assert_string_equal(data_of(tree, "d/bottom"), "bottom");
	assert_string_equal(data_of(tree, "only1"), "1");
	assert_int_equal(lookup(tree, "d/bottom")->layer, 2);
	walk_tree_free(tree);
	assert_int_equal(umount2(layer_paths[0], MNT_DETACH), 0);
	assert_int_equal(umount2(layer_paths[2], MNT_DETACH), 0);
}

static void test_errors(void **state)
{
	struct walk_stack st = { .layers = layers, .nlayers = 0 };
	struct walk_tree *tree = NULL;
	char *errpath = NULL;
	const char *what = NULL;
	const char *bad[2] = { layer_paths[0], NULL };

	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), -EINVAL);
	st.nlayers = WALK_MAX_LAYERS + 2;	/* 500 lowers and an upper at most */
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), -EINVAL);
	st.layers = bad;
	st.nlayers = 2;
	assert_int_equal(walk_layers(&st, NULL, &tree, &errpath, &what), -EINVAL);

	if (geteuid() != 0)
		return;
	/* A missing layer, a layer that is a file: named. */
	mkf(1, "file", "x");
	snprintf(layer_paths[2], sizeof(layer_paths[2]), "%s/missing", base);
	errpath = merge_fails(3, WALK_OVL_TRUSTED, -ENOENT, NULL);
	assert_string_equal(errpath, layer_paths[2]);
	free(errpath);
	snprintf(layer_paths[2], sizeof(layer_paths[2]), "%s/L1/file", base);
	errpath = merge_fails(3, WALK_OVL_TRUSTED, -ENOTDIR, NULL);
	assert_string_equal(errpath, layer_paths[2]);
	free(errpath);
	snprintf(layer_paths[2], sizeof(layer_paths[2]), "%s/L2", base);
}

/*
 * The same stack always gives the same tree, inode for inode, whether
 * one walker reads it or several.
 */
static void test_deterministic(void **state)
{
	struct walk_tree *a, *b;

	for (int i = 0; i < 5; i++) {
		char rel[32];

		snprintf(rel, sizeof(rel), "d%d/f%d", i % 2, i);
		mkf(i, rel, "x");
		snprintf(rel, sizeof(rel), "top%d", 4 - i);
		mkf(i, rel, "y");
		for (int j = 0; j < 20; j++) {
			snprintf(rel, sizeof(rel), "w%d/s%d/f", j, i);
			mkf(i, rel, "z");
		}
	}
	walkers = 1;
	a = merge(5);
	walkers = 4;
	b = merge(5);
	walkers = 0;
	assert_int_equal(a->ninodes, b->ninodes);
	for (size_t i = 0; i < a->ninodes; i++) {
		char *pa = walk_inode_path(a->inodes[i]), *pb = walk_inode_path(b->inodes[i]);

		assert_string_equal(pa, pb);
		free(pa);
		free(pb);
		assert_int_equal(a->inodes[i]->layer, b->inodes[i]->layer);
		assert_int_equal(a->inodes[i]->nlink, b->inodes[i]->nlink);
	}
	assert_string_equal(names(a, ""), "d0 d1 top0 top1 top2 top3 top4 w0 w1 w10 "
			    "w11 w12 w13 w14 w15 w16 w17 w18 w19 w2 w3 w4 w5 w6 w7 w8 w9");
	walk_tree_free(a);
	walk_tree_free(b);
}

/* ---- merge.c alone ---- */

#define BAD(s) { s, -EBADMSG, 0, 0, 0, 0, 0 }
static void test_override_parse(void **state)
{
	static const struct {
		const char *s;
		int r;
		uint32_t uid, gid, mode, ma, mi;
	} cases[] = {
		{ "0:0:0755:dir", 0, 0, 0, S_IFDIR | 0755, 0, 0 },
		{ "1000:100:4755", 0, 1000, 100, 04755, 0, 0 },
		{ "0:0:0644:file", 0, 0, 0, S_IFREG | 0644, 0, 0 },
		{ "0:0:0777:symlink", 0, 0, 0, S_IFLNK | 0777, 0, 0 },
		{ "0:0:0600:socket", 0, 0, 0, S_IFSOCK | 0600, 0, 0 },
		{ "5:6:0660:char-4095-1048575", 0, 5, 6, S_IFCHR | 0660, 4095, 1048575 },
		{ "0:0:0660:block-8-1-ignored", 0, 0, 0, S_IFBLK | 0660, 8, 1 },
		{ "4294967294:0:7777", 0, 4294967294u, 0, 07777, 0, 0 },
		BAD("4294967295:0:0755"),
		BAD("0:0:10000"),
		BAD("0:0:0958"),
		BAD("0:0"),
		BAD("0:0:"),
		BAD(":0:0755"),
		BAD("-1:0:0755"),
		BAD("0:0:0755:dir:x"),
		BAD("0:0:0755:door"),
		BAD("0:0:0755:char-"),
		BAD("0:0:0755:char-1"),
		BAD("0:0:0755:char-4096-0"),
		BAD("0:0:0755:Dir"),
		BAD(" 0:0:0755"),
	};
	struct walk_override o;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = walk_override_parse((const uint8_t *)cases[i].s, strlen(cases[i].s), &o);

		if (r != cases[i].r)
			fail_msg("'%s': %d, expected %d", cases[i].s, r, cases[i].r);
		if (r == 0) {
			assert_int_equal(o.uid, cases[i].uid);
			assert_int_equal(o.gid, cases[i].gid);
			assert_int_equal(o.mode, cases[i].mode);
			assert_int_equal(o.rdev_major, cases[i].ma);
			assert_int_equal(o.rdev_minor, cases[i].mi);
		}
	}
	assert_int_equal(walk_override_parse((const uint8_t *)"0:0\0:0755", 9, &o), -EBADMSG);
	assert_int_equal(walk_override_parse(NULL, 0, &o), -EBADMSG);
}

static void test_aufs_classify(void **state)
{
	static const struct {
		const char *s;
		enum walk_aufs_kind k;
		const char *name;
	} cases[] = {
		{ "plain", WALK_AUFS_NONE, NULL },
		{ ".wh", WALK_AUFS_NONE, NULL },
		{ ".whx", WALK_AUFS_NONE, NULL },
		{ ".wh.foo", WALK_AUFS_WHITEOUT, "foo" },
		{ ".wh..hidden", WALK_AUFS_WHITEOUT, ".hidden" },
		{ ".wh..wh..opq", WALK_AUFS_OPAQUE, NULL },
		{ ".wh..wh.plnk", WALK_AUFS_META, NULL },
		{ ".wh..wh.aufs", WALK_AUFS_META, NULL },
		{ ".wh.", WALK_AUFS_META, NULL },
		{ ".wh..", WALK_AUFS_META, NULL },
		{ ".wh...", WALK_AUFS_META, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = NULL;
		size_t len = 0;
		enum walk_aufs_kind k = walk_aufs_classify(cases[i].s, strlen(cases[i].s),
							   &name, &len);

		if (k != cases[i].k)
			fail_msg("'%s': kind %d, expected %d", cases[i].s, k, cases[i].k);
		if (cases[i].name) {
			assert_int_equal(len, strlen(cases[i].name));
			assert_memory_equal(name, cases[i].name, len);
		}
	}
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_top_most_wins),
		T(test_whiteout_device),
		T(test_xattr_whiteout),
		T(test_xattr_whiteout_dir),
		T(test_opaque),
		T(test_root_opaque),
		T(test_type_changes),
		T(test_metadata_and_xattrs),
		T(test_private_prefix),
		T(test_user_namespace),
		T(test_hard_links),
		T(test_aufs),
		T(test_override_stat),
		T(test_override_stat_lower),
		T(test_refused),
		T(test_reopen),
		T(test_layer_mounts),
		T(test_errors),
		T(test_deterministic),
		cmocka_unit_test(test_override_parse),
		cmocka_unit_test(test_aufs_classify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
