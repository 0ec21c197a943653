/* SPDX-License-Identifier: MIT */
/*
 * test-walk.c - overlaywalk: builds a small tree in a temporary directory
 * (files, directories, symlinks to a directory and out of the tree, a
 * FIFO, hard links, a device node when root, names with bytes >= 0x80 and
 * a leading '-', user.* xattrs, a nanosecond mtime, a sparse file), walks
 * it and checks every recorded field against what the test set up and
 * what lstat() says; then sort order, hard-link counts, walk_open_data()
 * on unchanged, modified, replaced and moved files (through the
 * directory's handle, by the file's own learnt handle and by path, also
 * past PATH_MAX, and a FIFO swapped in), the check hook with and without
 * skip_unreadable, errors and warnings in tree order, ENOTDIR, large
 * xattrs, many hard-linked inodes, progress output, mount points, renames
 * while a directory is read (also in a lower layer of a merge), and
 * several walkers giving the tree one walker gives.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
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
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/source.h"
#include "overlaywalk/walk.h"

#define HIGH_NAME "\xc3\xa9t\xc3\xa9"	/* "été" in UTF-8: bytes >= 0x80 */
#define F1_SEC 1234567890
#define F1_NSEC 123456789
#define SPARSE_SIZE (1 << 20)

/* The longest name Linux allows: 255 'x'. */
#define X5 "xxxxx"
#define X25 X5 X5 X5 X5 X5
#define LONG_NAME X25 X25 X25 X25 X25 X25 X25 X25 X25 X25 X5

static char root_dir[64];
static bool as_root;

/* walk_inode_path() of ino, in a buffer that the next call reuses. */
static const char *path_of(const struct walk_inode *ino)
{
	static char buf[PATH_MAX];
	char *p = walk_inode_path(ino);

	assert_non_null(p);
	snprintf(buf, sizeof(buf), "%s", p);
	free(p);
	return buf;
}

/* ---- building and removing the tree ---- */

static void at(char *buf, size_t size, const char *rel)
{
	snprintf(buf, size, "%s/%s", root_dir, rel);
}

static void make_file(const char *rel, const char *data, mode_t mode)
{
	char p[PATH_MAX];
	int fd;

	at(p, sizeof(p), rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(fchmod(fd, mode), 0);	/* umask aside */
	close(fd);
}

static void make_dir(const char *rel)
{
	char p[PATH_MAX];

	at(p, sizeof(p), rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void make_symlink(const char *target, const char *rel)
{
	char p[PATH_MAX];

	at(p, sizeof(p), rel);
	assert_int_equal(symlink(target, p), 0);
}

static void make_link(const char *old_rel, const char *rel)
{
	char p[PATH_MAX], q[PATH_MAX];

	at(p, sizeof(p), old_rel);
	at(q, sizeof(q), rel);
	assert_int_equal(link(p, q), 0);
}

/*
 * root/
 *   -dash            file "dash\n"
 *   Zed              file ""            (uppercase sorts before 'a')
 *   a/               user.dir xattr
 *   a/f1             file "hello" 0640, user.b, user.a, mtime with nsec,
 *                    owner 1234:5678 when root; hard links hl and b/hl2
 *   a/sparse         1 MiB hole
 *   ab               file "ab"
 *   b/c/             empty directory
 *   b/hl2            hard link to a/f1
 *   dirlink -> a     symlink to a directory (trusted.t when root)
 *   fifo             FIFO (trusted.f when root)
 *   hl               hard link to a/f1
 *   null             character device 1:3 (root only)
 *   outside -> /etc/passwd
 *   xxx...x          file "", a 255-byte name
 *   été              file "x"
 */
static int setup_tree(void **state)
{
	struct timespec ts[2] = {
		{ .tv_sec = F1_SEC, .tv_nsec = F1_NSEC },
		{ .tv_sec = F1_SEC, .tv_nsec = F1_NSEC },
	};
	char p[PATH_MAX];
	int fd;

	strcpy(root_dir, "/tmp/test-walk.XXXXXX");
	assert_non_null(mkdtemp(root_dir));
	as_root = geteuid() == 0;

	make_file("-dash", "dash\n", 0644);
	make_file("Zed", "", 0600);
	make_dir("a");
	at(p, sizeof(p), "a");
	assert_int_equal(setxattr(p, "user.dir", "D", 1, 0), 0);
	make_file("a/f1", "hello", 0640);
	at(p, sizeof(p), "a/f1");
	assert_int_equal(setxattr(p, "user.b", "2", 1, 0), 0);
	assert_int_equal(setxattr(p, "user.a", "one", 3, 0), 0);
	if (as_root)
		assert_int_equal(chown(p, 1234, 5678), 0);
	assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
	at(p, sizeof(p), "a/sparse");
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, SPARSE_SIZE), 0);
	close(fd);
	make_file("ab", "ab", 0644);
	make_dir("b");
	make_dir("b/c");
	make_link("a/f1", "b/hl2");
	make_symlink("a", "dirlink");
	at(p, sizeof(p), "fifo");
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(chmod(p, 0600), 0);
	if (as_root) {
		assert_int_equal(lsetxattr(p, "trusted.f", "F", 1, 0), 0);
		at(p, sizeof(p), "dirlink");
		assert_int_equal(lsetxattr(p, "trusted.t", "L", 1, 0), 0);
	}
	make_link("a/f1", "hl");
	if (as_root) {
		at(p, sizeof(p), "null");
		assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
		assert_int_equal(chmod(p, 0666), 0);	/* umask aside */
	}
	make_symlink("/etc/passwd", "outside");
	make_file(LONG_NAME, "", 0644);
	make_file(HIGH_NAME, "x", 0644);
	return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	return remove(p);
}

/*
 * Removes name in dfd and all below it, by fds: nftw() cannot take down
 * a tree whose paths are longer than PATH_MAX (test_open_data_long_path).
 */
static void rm_at(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0) {
		(void)unlinkat(dfd, name, 0);
		return;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_at(dirfd(d), de->d_name);
	closedir(d);
	(void)unlinkat(dfd, name, AT_REMOVEDIR);
}

static int teardown_tree(void **state)
{
	char p[PATH_MAX];

	at(p, sizeof(p), "deep");
	rm_at(AT_FDCWD, p);
	at(p, sizeof(p), "mnt");
	(void)umount2(p, MNT_DETACH);
	at(p, sizeof(p), "ab");
	(void)umount2(p, MNT_DETACH);
	return nftw(root_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ---- */

static struct walk_tree *walk_ok(const struct walk_opts *opts)
{
	struct walk_tree *tree = NULL;
	char *errpath = NULL;
	const char *what = NULL;
	int r = walk_tree(root_dir, opts, &tree, &errpath, &what);

	if (r < 0)
		print_error("walk_tree: %s: '%s': %s\n", what ? what : "?",
			    errpath ? errpath : "", strerror(-r));
	assert_int_equal(r, 0);
	assert_null(errpath);
	assert_non_null(tree);
	return tree;
}

static const struct walk_dentry *child(const struct walk_inode *dir,
				       const char *name)
{
	for (size_t i = 0; i < dir->nchildren; i++)
		if (dir->children[i].name_len == strlen(name) &&
		    !memcmp(dir->children[i].name, name, strlen(name)))
			return &dir->children[i];
	return NULL;
}

/* The inode at a relative path ("a/f1"), following dentries. */
static const struct walk_inode *lookup(const struct walk_tree *tree,
				       const char *path)
{
	const struct walk_inode *ino = tree->root;
	char buf[PATH_MAX], *save = NULL;

	strcpy(buf, path);
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		const struct walk_dentry *d = child(ino, c);

		if (!d)
			return NULL;
		ino = d->inode;
	}
	return ino;
}

/* Compares what the walk recorded with lstat() of the same entry. */
static void check_against_lstat(const struct walk_inode *ino, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	at(p, sizeof(p), rel);
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(ino->dev, st.st_dev);
	assert_int_equal(ino->ino, st.st_ino);
	assert_int_equal(ino->mode, st.st_mode);
	assert_int_equal(ino->uid, st.st_uid);
	assert_int_equal(ino->gid, st.st_gid);
	assert_int_equal(ino->blocks, st.st_blocks);
	assert_int_equal(ino->mtime_sec, st.st_mtim.tv_sec);
	assert_int_equal(ino->mtime_nsec, st.st_mtim.tv_nsec);
	if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode))
		assert_int_equal(ino->size, st.st_size);
	else
		assert_int_equal(ino->size, 0);
	assert_int_equal(ino->priv, 0);
}

static size_t count_user_xattrs(const struct walk_inode *ino)
{
	size_t n = 0;

	for (size_t i = 0; i < ino->nxattrs; i++)
		if (!strncmp(ino->xattrs[i].name, "user.", 5))
			n++;
	return n;
}

static const struct walk_xattr *find_xattr(const struct walk_inode *ino,
					   const char *name)
{
	for (size_t i = 0; i < ino->nxattrs; i++)
		if (!strcmp(ino->xattrs[i].name, name))
			return &ino->xattrs[i];
	return NULL;
}

static void expect_xattr(const struct walk_inode *ino, const char *name,
			 const char *value)
{
	const struct walk_xattr *xa = find_xattr(ino, name);

	assert_non_null(xa);
	assert_int_equal(xa->value_len, strlen(value));
	assert_memory_equal(xa->value, value, strlen(value));
}

/* ---- tests ---- */

/* Every field of every entry, xattrs read with listxattrat(2) or, as on
 * kernels before 6.13 (xattrs_by_proc), through /proc/self/fd/DIR/NAME. */
static void check_fields(bool xattrs_by_proc)
{
	walk_xattrat_disable(xattrs_by_proc);
	struct walk_tree *tree = walk_ok(NULL);
	walk_xattrat_disable(false);
	const struct walk_inode *root = tree->root, *a, *f1, *ino;
	const struct walk_xattr *xa;

	/* Root: "" path, its own parent, 2 + subdirectories a and b. */
	assert_ptr_equal(tree->inodes[0], root);
	assert_string_equal(path_of(root), "");
	assert_ptr_equal(root->parent, root);
	assert_true(S_ISDIR(root->mode));
	assert_int_equal(root->nlink, 4);
	check_against_lstat(root, ".");
	assert_true(tree->root_fd >= 0);

	a = lookup(tree, "a");
	assert_non_null(a);
	assert_ptr_equal(a->parent, root);
	assert_int_equal(a->nlink, 2);
	assert_int_equal(a->nchildren, 2);
	assert_null(a->symlink);
	check_against_lstat(a, "a");
	assert_int_equal(count_user_xattrs(a), 1);
	expect_xattr(a, "user.dir", "D");
	ino = lookup(tree, "b");
	assert_int_equal(ino->nlink, 3);	/* b/c */
	assert_ptr_equal(lookup(tree, "b/c")->parent, ino);
	assert_int_equal(lookup(tree, "b/c")->nlink, 2);
	assert_int_equal(lookup(tree, "b/c")->nchildren, 0);

	/* a/f1: everything the setup wrote. */
	f1 = lookup(tree, "a/f1");
	assert_non_null(f1);
	check_against_lstat(f1, "a/f1");
	assert_int_equal(f1->mode, S_IFREG | 0640);
	assert_int_equal(f1->size, 5);
	assert_int_equal(f1->mtime_sec, F1_SEC);
	assert_int_equal(f1->mtime_nsec, F1_NSEC);
	if (as_root) {
		assert_int_equal(f1->uid, 1234);
		assert_int_equal(f1->gid, 5678);
	}
	assert_string_equal(path_of(f1), "a/f1");
	assert_null(f1->symlink);
	assert_int_equal(f1->nchildren, 0);
	assert_int_equal(count_user_xattrs(f1), 2);
	for (size_t i = 1; i < f1->nxattrs; i++)
		assert_true(strcmp(f1->xattrs[i - 1].name, f1->xattrs[i].name) < 0);
	for (size_t i = 0; i < f1->nxattrs; i++) {
		xa = &f1->xattrs[i];
		if (!strcmp(xa->name, "user.a")) {
			assert_int_equal(xa->value_len, 3);
			assert_memory_equal(xa->value, "one", 3);
			/* user.a sorts right before user.b */
			assert_true(i + 1 < f1->nxattrs);
			assert_string_equal(f1->xattrs[i + 1].name, "user.b");
			assert_int_equal(f1->xattrs[i + 1].value_len, 1);
			assert_memory_equal(f1->xattrs[i + 1].value, "2", 1);
		}
	}

	/* Sparse: 1 MiB, (almost) no blocks. */
	ino = lookup(tree, "a/sparse");
	assert_int_equal(ino->size, SPARSE_SIZE);
	assert_true(ino->blocks < SPARSE_SIZE / 512);
	check_against_lstat(ino, "a/sparse");

	/* Symlinks are recorded, never followed. */
	ino = lookup(tree, "dirlink");
	assert_int_equal(ino->mode & S_IFMT, S_IFLNK);
	assert_string_equal(ino->symlink, "a");
	assert_int_equal(ino->size, 1);
	assert_int_equal(ino->nchildren, 0);
	assert_null(ino->children);
	check_against_lstat(ino, "dirlink");
	/* Its own xattrs, not those of the directory it points to. */
	assert_int_equal(count_user_xattrs(ino), 0);
	if (as_root) {
		assert_int_equal(ino->nxattrs, 1);
		expect_xattr(ino, "trusted.t", "L");
	}
	ino = lookup(tree, "outside");
	assert_int_equal(ino->mode & S_IFMT, S_IFLNK);
	assert_string_equal(ino->symlink, "/etc/passwd");
	assert_int_equal(ino->size, 11);
	check_against_lstat(ino, "outside");

	ino = lookup(tree, "fifo");
	assert_int_equal(ino->mode, S_IFIFO | 0600);
	check_against_lstat(ino, "fifo");
	assert_null(ino->reopen);
	if (as_root)
		expect_xattr(ino, "trusted.f", "F");

	ino = lookup(tree, LONG_NAME);
	assert_non_null(ino);
	assert_int_equal(strlen(path_of(ino)), 255);
	check_against_lstat(ino, LONG_NAME);

	ino = lookup(tree, HIGH_NAME);
	assert_non_null(ino);
	assert_int_equal(ino->size, 1);
	assert_string_equal(path_of(ino), HIGH_NAME);
	check_against_lstat(ino, HIGH_NAME);
	ino = lookup(tree, "-dash");
	assert_int_equal(ino->size, 5);
	check_against_lstat(ino, "-dash");
	ino = lookup(tree, "Zed");
	assert_int_equal(ino->mode, S_IFREG | 0600);
	assert_int_equal(ino->size, 0);

	if (as_root) {
		ino = lookup(tree, "null");
		assert_non_null(ino);
		assert_int_equal(ino->mode, S_IFCHR | 0666);
		assert_int_equal(ino->rdev_major, 1);
		assert_int_equal(ino->rdev_minor, 3);
		check_against_lstat(ino, "null");
	} else {
		assert_null(lookup(tree, "null"));
	}
	walk_tree_free(tree);
}

static void test_fields(void **state)
{
	check_fields(false);
}

static void test_fields_proc(void **state)
{
	check_fields(true);
}

/*
 * xattr lists and values larger than the 4 KiB first tried on the stack
 * (readxattr.c): sized, then read whole, for a file (by name, both ways)
 * and a directory (by its fd).  On a tmpfs, where user.* values may be
 * that large (ext4 keeps a value within a block).
 */
static void test_xattrs_large(void **state)
{
	char dir[64] = "/dev/shm/test-walk-x.XXXXXX", p[PATH_MAX], xname[64];
	static char big[10000];
	int fd;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 23);
	if (!mkdtemp(dir))
		skip();
	snprintf(p, sizeof(p), "%s/f", dir);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	if (setxattr(p, "user.big", big, sizeof(big), 0) < 0 ||
	    setxattr(dir, "user.big", big, sizeof(big), 0) < 0) {
		print_message("skipping: large user xattrs: %s\n", strerror(errno));
		snprintf(p, sizeof(p), "%s/f", dir);
		unlink(p);
		rmdir(dir);
		skip();
	}
	/* 200 names of 40 bytes: a list of 8,200 bytes. */
	for (int i = 0; i < 200; i++) {
		snprintf(xname, sizeof(xname), "user.a-rather-long-attribute-name-%05d", i);
		assert_int_equal(strlen(xname), 39);
		assert_int_equal(setxattr(p, xname, "v", 1, 0), 0);
		assert_int_equal(setxattr(dir, xname, "v", 1, 0), 0);
	}
	for (int by_proc = 0; by_proc < 2; by_proc++) {
		struct walk_tree *tree = NULL;
		char *errpath = NULL;
		const char *what = NULL;

		walk_xattrat_disable(by_proc);
		assert_int_equal(walk_tree(dir, NULL, &tree, &errpath, &what), 0);
		walk_xattrat_disable(false);
		const struct walk_inode *ino[2] = { tree->root, lookup(tree, "f") };

		for (int k = 0; k < 2; k++) {
			const struct walk_xattr *xa = find_xattr(ino[k], "user.big");

			assert_int_equal(count_user_xattrs(ino[k]), 201);
			assert_non_null(xa);
			assert_int_equal(xa->value_len, sizeof(big));
			assert_memory_equal(xa->value, big, sizeof(big));
			expect_xattr(ino[k], "user.a-rather-long-attribute-name-00199", "v");
		}
		walk_tree_free(tree);
	}
	unlink(p);
	rmdir(dir);
}

static void test_order(void **state)
{
	/* Bytewise: '-' 0x2d < 'Z' 0x5a < 'a' < "ab" < ... < 0xc3. */
	static const char *const top[] = {
		"-dash", "Zed", "a", "ab", "b", "dirlink", "fifo", "hl",
		"null", "outside", LONG_NAME, HIGH_NAME,
	};
	/* Pre-order, sorted, each inode once (hl, b/hl2 are a/f1). */
	static const char *const order[] = {
		"", "-dash", "Zed", "a", "a/f1", "a/sparse", "ab", "b", "b/c",
		"dirlink", "fifo", "null", "outside", LONG_NAME, HIGH_NAME,
	};
	struct walk_tree *tree = walk_ok(NULL);
	const struct walk_inode *root = tree->root;
	size_t n = 0;

	for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
		if (!as_root && !strcmp(top[i], "null"))
			continue;
		assert_true(n < root->nchildren);
		assert_string_equal(root->children[n].name, top[i]);
		assert_int_equal(root->children[n].name_len, strlen(top[i]));
		n++;
	}
	assert_int_equal(root->nchildren, n);

	n = 0;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!as_root && !strcmp(order[i], "null"))
			continue;
		assert_true(n < tree->ninodes);
		assert_string_equal(path_of(tree->inodes[n]), order[i]);
		n++;
	}
	assert_int_equal(tree->ninodes, n);
	walk_tree_free(tree);
}

static void test_hardlinks(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	const struct walk_inode *f1 = lookup(tree, "a/f1");

	assert_ptr_equal(lookup(tree, "hl"), f1);
	assert_ptr_equal(lookup(tree, "b/hl2"), f1);
	assert_int_equal(f1->nlink, 3);
	assert_string_equal(path_of(f1), "a/f1");	/* first in walk order */
	assert_int_equal(lookup(tree, "-dash")->nlink, 1);
	walk_tree_free(tree);

	/* Two names (st_nlink 2, the most common case) are one inode too. */
	make_file("two", "2", 0644);
	make_link("two", "b/two");
	tree = walk_ok(NULL);
	assert_ptr_equal(lookup(tree, "two"), lookup(tree, "b/two"));
	assert_int_equal(lookup(tree, "two")->nlink, 2);
	walk_tree_free(tree);
}

/*
 * More hard-linked inodes than the link table's first size (256 slots,
 * at most half full): it grows, keeps what it held, and never fills up
 * (a full table would make a lookup probe forever: the alarm fails it).
 */
static void test_many_hardlinks(void **state)
{
	struct walk_tree *tree;
	char rel[64], rel2[64];

	make_dir("links");
	for (int i = 0; i < 300; i++) {
		snprintf(rel, sizeof(rel), "links/f%03d", i);
		snprintf(rel2, sizeof(rel2), "links/g%03d", i);
		make_file(rel, "", 0644);
		make_link(rel, rel2);
	}
	alarm(60);
	tree = walk_ok(NULL);
	alarm(0);
	assert_int_equal(lookup(tree, "links")->nchildren, 600);
	for (int i = 0; i < 300; i++) {
		snprintf(rel, sizeof(rel), "links/f%03d", i);
		snprintf(rel2, sizeof(rel2), "links/g%03d", i);
		assert_ptr_equal(lookup(tree, rel), lookup(tree, rel2));
		assert_int_equal(lookup(tree, rel)->nlink, 2);
	}
	walk_tree_free(tree);
}

static void write_at(const char *rel, const char *data)
{
	char p[PATH_MAX];
	int fd;

	at(p, sizeof(p), rel);
	fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void read_expect(int fd, const char *data)
{
	char buf[64] = "";
	ssize_t n;

	assert_true(fd >= 0);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	assert_int_equal(n, (ssize_t)strlen(data));
	assert_memory_equal(buf, data, n);
	assert_int_equal(fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDONLY);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

/* Unchanged files open, by handle and by path; changed ones give -EIO. */
static void test_open_data(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	struct walk_inode *f1 = (struct walk_inode *)lookup(tree, "a/f1");
	struct walk_inode *dash = (struct walk_inode *)lookup(tree, "-dash");
	struct walk_inode *zed = (struct walk_inode *)lookup(tree, "Zed");
	struct walk_inode *high = (struct walk_inode *)lookup(tree, HIGH_NAME);
	struct walk_reopen *saved;
	char p[PATH_MAX], q[PATH_MAX];
	struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
				  { .tv_sec = F1_SEC, .tv_nsec = F1_NSEC + 1 } };

	read_expect(walk_open_data(tree, f1), "hello");
	read_expect(walk_open_data(tree, dash), "dash\n");
	/* Not regular files. */
	assert_int_equal(walk_open_data(tree, tree->root), -EINVAL);
	assert_int_equal(walk_open_data(tree, lookup(tree, "fifo")), -EINVAL);

	/* By path from the root fd (as without CAP_DAC_READ_SEARCH). */
	saved = f1->reopen;
	f1->reopen = NULL;
	read_expect(walk_open_data(tree, f1), "hello");
	f1->reopen = saved;

	/* Size changed, mtime put back as it was. */
	write_at("-dash", "more");
	at(p, sizeof(p), "-dash");
	{
		struct timespec old[2] = {
			{ .tv_nsec = UTIME_OMIT },
			{ .tv_sec = dash->mtime_sec, .tv_nsec = dash->mtime_nsec },
		};
		assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
	}
	assert_int_equal(walk_open_data(tree, dash), -EIO);

	/* Only the mtime nanoseconds changed. */
	at(p, sizeof(p), "a/f1");
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	assert_int_equal(walk_open_data(tree, f1), -EIO);

	/* Replaced by rename with a same-size file: another inode. */
	make_file("Zed.new", "", 0600);
	at(p, sizeof(p), "Zed.new");
	at(q, sizeof(q), "Zed");
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(walk_open_data(tree, zed), -EIO);
	zed->reopen = NULL;
	assert_int_equal(walk_open_data(tree, zed), -EIO);

	/* Removed. */
	at(p, sizeof(p), HIGH_NAME);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(walk_open_data(tree, high), -EIO);
	high->reopen = NULL;
	assert_int_equal(walk_open_data(tree, high), -EIO);
	walk_tree_free(tree);
}

/* A directory on the path swapped for a symlink: the path route refuses. */
static void test_open_data_swapped_dir(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	struct walk_inode *sparse = (struct walk_inode *)lookup(tree, "a/sparse");
	char p[PATH_MAX], q[PATH_MAX];
	int fd;

	at(p, sizeof(p), "a");
	at(q, sizeof(q), "a2");
	assert_int_equal(rename(p, q), 0);
	make_symlink("a2", "a");
	/*
	 * The handle still names the same, unchanged inode.  As root we have
	 * CAP_DAC_READ_SEARCH, so the handle must really be decoded: a path
	 * fallback would fail here, which is what caught a mount fd opened
	 * O_PATH (open_by_handle_at refuses those with EBADF).
	 */
	if (sparse->reopen && geteuid() == 0) {
		fd = walk_open_data(tree, sparse);
		assert_true(fd >= 0);
		close(fd);
	}
	sparse->reopen = NULL;
	assert_int_equal(walk_open_data(tree, sparse), -EIO);
	walk_tree_free(tree);
}

/*
 * REGION_OPEN_CHECK_AFTER: a file changed after the walk still opens by
 * its handle (the same inode), and the caller's check after the read
 * says -EIO; without the flag, or by path, open() says it at once.
 */
static void test_source_check_after(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	const struct walk_inode *dash = lookup(tree, "-dash");
	const struct walk_inode *f1 = lookup(tree, "a/f1");
	struct region_source src, src1;
	int fd;

	assert_int_equal(walk_region_source(tree, dash, &src), 0);
	assert_int_equal(walk_region_source(tree, f1, &src1), 0);

	/* Unchanged: either way an fd that passes the check. */
	fd = src.open(&src, REGION_OPEN_CHECK_AFTER);
	assert_true(fd >= 0);
	assert_int_equal(region_source_check(&src, fd), 0);
	close(fd);

	write_at("-dash", "more");
	assert_int_equal(src.open(&src, 0), -EIO);
	fd = src.open(&src, REGION_OPEN_CHECK_AFTER);
	if (dash->reopen && geteuid() == 0) {
		assert_true(fd >= 0);	/* by handle: the same inode */
		assert_int_equal(region_source_check(&src, fd), -EIO);
		close(fd);
	} else {
		assert_int_equal(fd, -EIO);	/* by path: identity checked */
	}
	/* The flag never lets another inode through. */
	{
		char p[PATH_MAX], q[PATH_MAX];

		make_file("f1.new", "hello", 0644);
		at(p, sizeof(p), "f1.new");
		at(q, sizeof(q), "a/f1");
		assert_int_equal(rename(p, q), 0);
		fd = src1.open(&src1, REGION_OPEN_CHECK_AFTER);
		if (fd >= 0) {
			/* By handle: the walk's inode (still linked as hl). */
			struct stat st;

			assert_true(f1->reopen && geteuid() == 0);
			assert_int_equal(fstat(fd, &st), 0);
			assert_true(st.st_ino == f1->ino);
			close(fd);
		} else {
			assert_int_equal(fd, -EIO);
		}
	}
	walk_tree_free(tree);
}

/*
 * A region source names its file by its directory and its name; the files
 * of one directory share the directory's string.
 */
static void test_source_path(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	struct region_source dash, f1, sparse, hl2;
	char buf[PATH_MAX];

	assert_int_equal(walk_region_source(tree, lookup(tree, "-dash"), &dash), 0);
	assert_int_equal(walk_region_source(tree, lookup(tree, "a/f1"), &f1), 0);
	assert_int_equal(walk_region_source(tree, lookup(tree, "a/sparse"), &sparse), 0);
	assert_int_equal(walk_region_source(tree, lookup(tree, "b/hl2"), &hl2), 0);
	assert_string_equal(region_source_path(&dash, buf, sizeof(buf)), "-dash");
	assert_string_equal(dash.dir, "");
	assert_string_equal(region_source_path(&f1, buf, sizeof(buf)), "a/f1");
	assert_string_equal(f1.name, "f1");
	assert_string_equal(region_source_path(&sparse, buf, sizeof(buf)), "a/sparse");
	assert_ptr_equal(f1.dir, sparse.dir);
	/* A hard link's source is its first dentry in tree order. */
	assert_string_equal(region_source_path(&hl2, buf, sizeof(buf)), "a/f1");
	/* Cut short, never past the buffer. */
	assert_string_equal(region_source_path(&sparse, buf, 4), "a/s");
	walk_tree_free(tree);
}

/*
 * A file is found again by its name in its directory, through the
 * directory's handle, until a first open through a region source learns
 * the file's own handle; from then on it reopens by that.  A rename moves
 * the file's ctime, so either way it then reads as EIO; but by its own
 * handle the open still finds the inode (REGION_OPEN_CHECK_AFTER leaves
 * the verdict to the check), while a record never opened finds no such
 * name.  A hard link whose first dentry in tree order is not the one it
 * was read through opens by path.
 */
static void test_source_learns_handle(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	const struct walk_inode *dash = lookup(tree, "-dash");
	const struct walk_inode *hl = lookup(tree, "hl");
	struct region_source src, fresh, link;
	char p[PATH_MAX], q[PATH_MAX];
	struct stat st;
	int fd;

	assert_int_equal(walk_region_source(tree, dash, &src), 0);
	assert_int_equal(walk_region_source(tree, dash, &fresh), 0);
	assert_int_equal(walk_region_source(tree, hl, &link), 0);
	assert_true(src.opaque != fresh.opaque);	/* two records */
	read_expect(src.open(&src, REGION_OPEN_CHECK_AFTER), "dash\n");
	read_expect(link.open(&link, 0), "hello");
	read_expect(link.open(&link, REGION_OPEN_CHECK_AFTER), "hello");

	at(p, sizeof(p), "-dash");
	at(q, sizeof(q), "-dash.moved");
	assert_int_equal(rename(p, q), 0);
	fd = src.open(&src, REGION_OPEN_CHECK_AFTER);
	if (dash->reopen && geteuid() == 0) {
		/* Its own handle, learnt by the first open: the same inode. */
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_true(st.st_ino == dash->ino);
		assert_int_equal(region_source_check(&src, fd), -EIO);
		close(fd);
	} else {
		assert_int_equal(fd, -EIO);
	}
	assert_int_equal(src.open(&src, 0), -EIO);
	/* Never opened: its name leads nowhere, by directory or by path. */
	assert_int_equal(fresh.open(&fresh, REGION_OPEN_CHECK_AFTER), -EIO);
	assert_int_equal(walk_open_data(tree, dash), -EIO);

	/* A directory handle that no longer decodes (ESTALE): by path. */
	if (hl->reopen && geteuid() == 0) {
		struct walk_inode *ab = (struct walk_inode *)lookup(tree, "ab");
		struct walk_reopen *saved = ab->reopen;
		size_t size = sizeof(*saved) + saved->handle_bytes;
		_Alignas(struct walk_reopen) unsigned char buf[sizeof(struct walk_reopen) + 128];
		struct walk_reopen *bad = (struct walk_reopen *)buf;

		assert_true(size <= sizeof(buf));
		memcpy(bad, saved, size);
		bad->f_handle[bad->handle_bytes - 1] ^= 0x5a;	/* the generation */
		assert_false(ab->walk_flags & WALK_NOT_IN_DIR);
		ab->reopen = bad;
		read_expect(walk_open_data(tree, ab), "ab");
		ab->reopen = saved;
	}
	walk_tree_free(tree);
}

/*
 * A FIFO put in a file's place after the walk: the reopen, through the
 * directory's handle or by path, says -EIO at once and never blocks
 * waiting for a writer (the alarm fails a blocked open).
 */
static void test_open_data_fifo_swapped(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	struct walk_inode *dash = (struct walk_inode *)lookup(tree, "-dash");
	char p[PATH_MAX];

	at(p, sizeof(p), "-dash");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkfifo(p, 0644), 0);
	alarm(10);
	assert_int_equal(walk_open_data(tree, dash), -EIO);
	dash->reopen = NULL;	/* by path */
	assert_int_equal(walk_open_data(tree, dash), -EIO);
	alarm(0);
	walk_tree_free(tree);
}

#define DEEP_LEVELS 17		/* 17 * 251 bytes: a path past PATH_MAX */

/*
 * A file whose path is longer than PATH_MAX: openat2() says ENAMETOOLONG
 * and the path is walked one component at a time; a directory on that
 * path swapped for a symlink to where it went is not followed either.
 */
static void test_open_data_long_path(void **state)
{
	char name[251], p[PATH_MAX];
	int fds[DEEP_LEVELS + 1];
	struct walk_tree *tree;
	struct walk_inode *ino;

	memset(name, 'd', 250);
	name[250] = '\0';
	make_dir("deep");
	at(p, sizeof(p), "deep");
	fds[0] = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fds[0] >= 0);
	for (int i = 1; i <= DEEP_LEVELS; i++) {
		assert_int_equal(mkdirat(fds[i - 1], name, 0755), 0);
		fds[i] = openat(fds[i - 1], name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(fds[i] >= 0);
	}
	{
		int fd = openat(fds[DEEP_LEVELS], "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "deep", 4), 4);
		close(fd);
	}

	tree = walk_ok(NULL);
	ino = (struct walk_inode *)lookup(tree, "deep");
	for (int i = 1; i <= DEEP_LEVELS; i++) {
		assert_int_equal(ino->nchildren, 1);
		ino = ino->children[0].inode;
	}
	ino = (struct walk_inode *)child(ino, "f")->inode;
	{
		char *path = walk_inode_path(ino);

		assert_true(strlen(path) > PATH_MAX);
		free(path);
	}
	ino->reopen = NULL;	/* by path */
	read_expect(walk_open_data(tree, ino), "deep");

	/* Level 8 moved aside, a symlink to it in its place. */
	assert_int_equal(renameat(fds[7], name, fds[7], "moved"), 0);
	assert_int_equal(symlinkat("moved", fds[7], name), 0);
	assert_int_equal(walk_open_data(tree, ino), -EIO);
	walk_tree_free(tree);
	for (int i = 0; i <= DEEP_LEVELS; i++)
		close(fds[i]);
}

/*
 * A region source with no directory handle (as when handles cannot be
 * encoded) goes by its directory's path and name: "" and the name for a
 * file at the root, "a" and "f1" below it.
 */
static void test_source_by_path(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	struct walk_inode *dash = (struct walk_inode *)lookup(tree, "-dash");
	struct walk_inode *f1 = (struct walk_inode *)lookup(tree, "a/f1");
	struct region_source src;

	dash->reopen = NULL;
	f1->reopen = NULL;
	assert_int_equal(walk_region_source(tree, dash, &src), 0);
	assert_string_equal(src.dir, "");
	read_expect(src.open(&src, 0), "dash\n");
	assert_int_equal(walk_region_source(tree, f1, &src), 0);
	read_expect(src.open(&src, 0), "hello");
	walk_tree_free(tree);
}

/* Open fds of this process, from /proc/self/fd. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* the DIR's own */
}

struct opener {
	const struct walk_tree *tree;
	const struct walk_inode *inode;
	const char *data;
	int failures;
};

static void *open_many(void *arg)
{
	struct opener *o = arg;
	char buf[16];

	for (int i = 0; i < 200; i++) {
		int fd = walk_open_data(o->tree, o->inode);

		if (fd < 0 || pread(fd, buf, sizeof(buf), 0) != (ssize_t)strlen(o->data) ||
		    memcmp(buf, o->data, strlen(o->data)))
			o->failures++;
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

/* Whether fd was opened with O_NOATIME. */
static bool has_noatime(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	assert_true(fl >= 0);
	return (fl & O_NOATIME) != 0;
}

/*
 * O_NOATIME is asked for on the files the effective uid owns, and only
 * those: as root on -dash, not on a/f1 (1234); after a switch to 1234 and
 * walk_creds_changed() (what --user does), on a/f1 and not on -dash.
 * The child exits 0 if all holds, else the number of the failed step.
 */
static void test_open_noatime(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	const struct walk_inode *dash = lookup(tree, "-dash");
	const struct walk_inode *f1 = lookup(tree, "a/f1");
	int fd, status;
	pid_t pid;

	if (!as_root) {
		walk_tree_free(tree);
		skip();
	}
	fd = walk_open_data(tree, dash);
	assert_true(fd >= 0);
	assert_true(has_noatime(fd));
	close(fd);
	fd = walk_open_data(tree, f1);
	assert_true(fd >= 0);
	assert_false(has_noatime(fd));
	close(fd);

	/* Without the capability the child goes by path: let it search. */
	assert_int_equal(chmod(root_dir, 0755), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int step = 0, fl;

		if (setresgid(5678, 5678, 5678) < 0 || setresuid(1234, 1234, 1234) < 0)
			_exit(100);
		walk_creds_changed();
		fd = walk_open_data(tree, f1);
		step++;
		if (fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || !(fl & O_NOATIME))
			_exit(step);
		close(fd);
		fd = walk_open_data(tree, dash);
		step++;
		if (fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_NOATIME))
			_exit(step);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	walk_tree_free(tree);
}

/* Several threads reopening files at once (the server's pattern). */
static void test_open_data_threads(void **state)
{
	struct walk_tree *tree = walk_ok(NULL);
	struct opener o[4];
	pthread_t th[4];
	int fds = count_fds();

	for (int i = 0; i < 4; i++) {
		o[i] = (struct opener){ .tree = tree, .failures = 0,
			.inode = lookup(tree, i % 2 ? "ab" : "hl"),
			.data = i % 2 ? "ab" : "hello" };
		assert_int_equal(pthread_create(&th[i], NULL, open_many, &o[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(o[i].failures, 0);
	}
	/* Each thread's directory fd (reopen.c) went with its thread. */
	assert_int_equal(count_fds(), fds);
	walk_tree_free(tree);
}

/* ---- the check hook, skip_unreadable ---- */

struct check_ctx {
	const char *reject;	/* name to reject */
	bool saw_root;
	size_t nwarn;
	char warn_path[64];
	int warn_err;
	const char *warn_what;
};

static int check_reject(void *userdata, const struct walk_inode *inode,
			const char *name, size_t name_len, const char **ret_what)
{
	struct check_ctx *c = userdata;

	assert_non_null(inode);
	assert_int_equal(strlen(name), name_len);
	if (name_len == 0) {
		assert_string_equal(path_of(inode), "");
		c->saw_root = true;
	}
	if (!strcmp(name, c->reject)) {
		*ret_what = "rejected by test";
		return -EPERM;
	}
	return 0;
}

static void warn_record(void *userdata, const char *path, int err,
			const char *what)
{
	struct check_ctx *c = userdata;

	c->nwarn++;
	snprintf(c->warn_path, sizeof(c->warn_path), "%s", path);
	c->warn_err = err;
	c->warn_what = what;
}

static void test_check_fails(void **state)
{
	struct check_ctx c = { .reject = "c" };
	struct walk_opts opts = { .check = check_reject, .warn = warn_record,
				  .userdata = &c };
	struct walk_tree *tree = NULL;
	char *errpath = NULL;
	const char *what = NULL;

	assert_int_equal(walk_tree(root_dir, &opts, &tree, &errpath, &what), -EPERM);
	assert_null(tree);
	assert_non_null(errpath);
	assert_string_equal(errpath, "b/c");
	assert_string_equal(what, "rejected by test");
	assert_true(c.saw_root);
	assert_int_equal(c.nwarn, 0);
	free(errpath);
}

static void test_check_skips(void **state)
{
	struct check_ctx c = { .reject = "b" };
	struct walk_opts opts = { .check = check_reject, .warn = warn_record,
				  .userdata = &c, .skip_unreadable = true };
	struct walk_tree *tree = walk_ok(&opts);

	/* b and all below it are gone; one warning, for b. */
	assert_int_equal(c.nwarn, 1);
	assert_string_equal(c.warn_path, "b");
	assert_int_equal(c.warn_err, -EPERM);
	assert_string_equal(c.warn_what, "rejected by test");
	assert_null(lookup(tree, "b"));
	assert_int_equal(tree->root->nlink, 3);	/* only a is left */
	assert_int_equal(lookup(tree, "a/f1")->nlink, 2);	/* no b/hl2 */
	for (size_t i = 0; i < tree->ninodes; i++)
		assert_true(strcmp(path_of(tree->inodes[i]), "b"));
	assert_null(lookup(tree, "b/c"));
	walk_tree_free(tree);

	/* A rejected second dentry of a hard link: the inode stays. */
	memset(&c, 0, sizeof(c));
	c.reject = "hl";
	tree = walk_ok(&opts);
	assert_int_equal(c.nwarn, 1);
	assert_string_equal(c.warn_path, "hl");
	assert_null(lookup(tree, "hl"));
	assert_int_equal(lookup(tree, "a/f1")->nlink, 2);
	walk_tree_free(tree);

	/* A rejected first dentry of a hard link: the next one is first. */
	memset(&c, 0, sizeof(c));
	c.reject = "f1";
	tree = walk_ok(&opts);
	assert_int_equal(c.nwarn, 1);
	assert_string_equal(c.warn_path, "a/f1");
	assert_null(lookup(tree, "a/f1"));
	assert_ptr_equal(lookup(tree, "hl"), lookup(tree, "b/hl2"));
	assert_string_equal(path_of(lookup(tree, "hl")), "b/hl2");
	assert_int_equal(lookup(tree, "hl")->nlink, 2);
	walk_tree_free(tree);

	/* The root cannot be skipped. */
	memset(&c, 0, sizeof(c));
	c.reject = "";
	{
		struct walk_tree *t = NULL;
		char *errpath = NULL;
		const char *what = NULL;

		assert_int_equal(walk_tree(root_dir, &opts, &t, &errpath, &what),
				 -EPERM);
		assert_null(t);
		assert_string_equal(errpath, "");
		free(errpath);
	}
}

/* Rejects "f3", "x" and "w-b"; records every warning, in order. */
struct order_ctx {
	size_t nwarn;
	char warn[64][64];
};

static int check_order(void *userdata, const struct walk_inode *inode,
		       const char *name, size_t name_len, const char **ret_what)
{
	if (!strcmp(name, "f3") || !strcmp(name, "x") || !strcmp(name, "w-b")) {
		*ret_what = "rejected by test";
		return -EPERM;
	}
	return 0;
}

static void warn_all(void *userdata, const char *path, int err, const char *what)
{
	struct order_ctx *c = userdata;

	assert_true(c->nwarn < 64);
	snprintf(c->warn[c->nwarn++], sizeof(c->warn[0]), "%s", path);
}

/*
 * With several walkers, the error named is the first in tree order, and
 * warnings come in tree order: a directory's contents right after it,
 * before the names it is a prefix of ("w/x" before "w-b", though '-' <
 * '/'), whichever walker met them first.
 */
static void test_errors_in_tree_order(void **state)
{
	struct order_ctx c = { 0 };
	struct walk_opts opts = { .check = check_order, .warn = warn_all,
				  .userdata = &c, .threads = 4 };
	char rel[64];

	make_dir("ord");
	for (int d = 0; d < 24; d++) {
		snprintf(rel, sizeof(rel), "ord/d%02d", d);
		make_dir(rel);
		for (int f = 0; f < 6; f++) {
			snprintf(rel, sizeof(rel), "ord/d%02d/f%d", d, f);
			make_file(rel, "", 0644);
		}
	}
	make_dir("w");
	make_file("w/x", "", 0644);
	make_file("w-b", "", 0644);

	for (int round = 0; round < 5; round++) {
		struct walk_tree *tree = NULL;
		char *errpath = NULL;
		const char *what = NULL;

		assert_int_equal(walk_tree(root_dir, &opts, &tree, &errpath, &what), -EPERM);
		assert_null(tree);
		assert_string_equal(errpath, "ord/d00/f3");
		free(errpath);
	}
	opts.skip_unreadable = true;
	for (int round = 0; round < 5; round++) {
		memset(&c, 0, sizeof(c));
		walk_tree_free(walk_ok(&opts));
		assert_int_equal(c.nwarn, 26);
		for (int d = 0; d < 24; d++) {
			snprintf(rel, sizeof(rel), "ord/d%02d/f3", d);
			assert_string_equal(c.warn[d], rel);
		}
		assert_string_equal(c.warn[24], "w/x");
		assert_string_equal(c.warn[25], "w-b");
	}
}

static void test_not_dir(void **state)
{
	struct walk_tree *tree = NULL;
	char p[PATH_MAX], *errpath = NULL;
	const char *what = NULL;

	at(p, sizeof(p), "ab");
	assert_int_equal(walk_tree(p, NULL, &tree, &errpath, &what), -ENOTDIR);
	assert_null(tree);
	at(p, sizeof(p), "missing");
	assert_int_equal(walk_tree(p, NULL, &tree, &errpath, &what), -ENOENT);
	assert_null(tree);
	walk_tree_free(NULL);
}

/* Runs a walk with fd 2 sent to a file; returns what it printed. */
static void walk_capture_stderr(bool progress, char *out, size_t size)
{
	struct walk_opts opts = { .progress = progress };
	FILE *f = tmpfile();
	int saved = dup(2);
	ssize_t n;

	assert_non_null(f);
	fflush(stderr);
	assert_int_equal(dup2(fileno(f), 2), 2);
	walk_tree_free(walk_ok(&opts));
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	n = pread(fileno(f), out, size - 1, 0);
	assert_true(n >= 0);
	out[n] = '\0';
	fclose(f);
}

static void test_progress(void **state)
{
	char out[PATH_MAX], want[32];

	walk_capture_stderr(false, out, sizeof(out));
	assert_string_equal(out, "");
	walk_capture_stderr(true, out, sizeof(out));
	/* the root and the 15 entries below it (16 with the device node) */
	snprintf(want, sizeof(want), "\r%d entries\n", as_root ? 17 : 16);
	assert_true(strlen(out) >= strlen(want));
	assert_string_equal(out + strlen(out) - strlen(want), want);
}

/* A tmpfs mounted inside: an empty mount point unless cross_mounts. */
static void test_mounts(void **state)
{
	/* One walker: the files of the root are read before those of mnt. */
	struct walk_opts opts = { .cross_mounts = true, .threads = 1 };
	struct walk_tree *tree;
	const struct walk_inode *mnt;
	char p[PATH_MAX];
	int fd;

	make_dir("mnt");
	at(p, sizeof(p), "mnt");
	if (mount("test-walk", p, "tmpfs", 0, "mode=0711") < 0) {
		print_message("skipping mount test: mount: %s\n", strerror(errno));
		skip();
	}
	at(p, sizeof(p), "mnt/inner");
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "in", 2), 2);
	close(fd);
	make_dir("mnt/sub");
	make_file("mnt/sub/f", "sub", 0644);

	/* A file bind-mounted over ab: another mount, left out. */
	at(p, sizeof(p), "ab");
	{
		char src[PATH_MAX];

		at(src, sizeof(src), "-dash");
		assert_int_equal(mount(src, p, NULL, MS_BIND, NULL), 0);
	}

	tree = walk_ok(NULL);
	assert_null(lookup(tree, "ab"));
	assert_non_null(lookup(tree, "-dash"));
	mnt = lookup(tree, "mnt");
	assert_non_null(mnt);
	assert_int_equal(mnt->mode, S_IFDIR | 0711);	/* the tmpfs root */
	assert_int_equal(mnt->nchildren, 0);
	assert_int_equal(mnt->nlink, 2);
	assert_null(lookup(tree, "mnt/inner"));
	walk_tree_free(tree);

	tree = walk_ok(&opts);
	assert_non_null(lookup(tree, "mnt/inner"));
	/*
	 * A directory in the mount, moved after the walk: its files are
	 * found by its handle, decoded against the mount it is on (not the
	 * one of the files read before it), where their paths fail.
	 */
	if (lookup(tree, "mnt/sub/f")->reopen) {
		char q[PATH_MAX];

		at(p, sizeof(p), "mnt/sub");
		at(q, sizeof(q), "mnt/sub2");
		assert_int_equal(rename(p, q), 0);
		read_expect(walk_open_data(tree, lookup(tree, "mnt/sub/f")), "sub");
		assert_int_equal(rename(q, p), 0);
	}
	/*
	 * Crossing: ab is -dash seen through a bind mount.  With one link
	 * it is not looked up as a hard link: two inodes, one identity.
	 */
	assert_non_null(lookup(tree, "ab"));
	assert_int_equal(lookup(tree, "ab")->ino, lookup(tree, "-dash")->ino);
	read_expect(walk_open_data(tree, lookup(tree, "ab")), "dash\n");
	read_expect(walk_open_data(tree, lookup(tree, "mnt/inner")), "in");
	{
		struct walk_inode *in = (struct walk_inode *)lookup(tree, "mnt/inner");

		in->reopen = NULL;	/* by path, crossing into the mount */
		read_expect(walk_open_data(tree, in), "in");
	}
	walk_tree_free(tree);

	at(p, sizeof(p), "mnt");
	assert_int_equal(umount2(p, MNT_DETACH), 0);
	at(p, sizeof(p), "ab");
	assert_int_equal(umount2(p, MNT_DETACH), 0);
}

/*
 * Renames in a directory while its entries are read: the check hook of
 * its last entry replaces the file "a", read already, with another (moved
 * in from a directory walked before), turns the file "b" into a
 * directory and removes the file "c".  The walk notices (the directory's
 * ctime moved) and reads them again: no entry keeps the old inode's
 * metadata, and the one that went leaves no hole.
 */
struct swap_ctx {
	bool done;
};

static int check_swap(void *userdata, const struct walk_inode *inode,
		      const char *name, size_t name_len, const char **ret_what)
{
	struct swap_ctx *c = userdata;
	char p[PATH_MAX], q[PATH_MAX];

	if (c->done || strcmp(name, "z"))
		return 0;
	c->done = true;
	at(p, sizeof(p), "aaa/newer");
	at(q, sizeof(q), "chg/a");
	assert_int_equal(rename(p, q), 0);
	at(p, sizeof(p), "chg/b");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(p, 0700), 0);
	at(p, sizeof(p), "chg/c");
	assert_int_equal(unlink(p), 0);
	return 0;
}

static void test_changed_while_walked(void **state)
{
	struct swap_ctx c = { 0 };
	/* skip_unreadable: chg/c, removed, is left out (else: ENOENT). */
	struct walk_opts opts = { .check = check_swap, .userdata = &c, .threads = 1,
				  .skip_unreadable = true };
	const struct walk_inode *a, *b;
	struct walk_tree *tree;
	struct stat st;
	char p[PATH_MAX];

	make_dir("chg");
	make_dir("aaa");	/* walked before chg */
	make_file("aaa/keep", "old a", 0644);
	make_link("aaa/keep", "chg/a");	/* a hard link, replaced */
	make_file("chg/b", "old b", 0644);
	make_file("chg/c", "c", 0644);	/* removed */
	make_file("chg/d", "d", 0644);
	make_file("chg/z", "z", 0644);
	make_file("aaa/newer", "new a!", 0600);
	tree = walk_ok(&opts);
	assert_true(c.done);
	a = lookup(tree, "chg/a");
	at(p, sizeof(p), "chg/a");
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(a->ino, st.st_ino);
	assert_int_equal(a->size, 6);
	assert_int_equal(a->mode, S_IFREG | 0600);
	read_expect(walk_open_data(tree, a), "new a!");
	b = lookup(tree, "chg/b");
	assert_true(S_ISDIR(b->mode));
	assert_int_equal(b->nchildren, 0);
	assert_int_equal(lookup(tree, "chg")->nlink, 3);
	assert_non_null(lookup(tree, "chg/z"));
	/* The dentry of chg/c went, the ones after it moved up. */
	assert_null(lookup(tree, "chg/c"));
	assert_int_equal(lookup(tree, "chg")->nchildren, 4);
	assert_string_equal(lookup(tree, "chg")->children[2].name, "d");
	assert_string_equal(lookup(tree, "chg")->children[3].name, "z");
	read_expect(walk_open_data(tree, lookup(tree, "chg/d")), "d");
	/* Read before it moved: that was the tree then. */
	assert_non_null(lookup(tree, "aaa/newer"));
	/* chg/a is no longer a name of aaa/keep's inode. */
	assert_int_equal(lookup(tree, "aaa/keep")->nlink, 1);
	walk_tree_free(tree);
}

/*
 * The same in a merge, where the change is in a lower layer: each layer
 * directory a merged directory was read from is checked, not only the
 * top one (walk.c verify_dir; shared/docs/overlay-layers.md: the merged
 * directory is every collected layer's).  The check hook of "z", from the
 * top layer, puts another file at L1's "a" (read already) and turns L1's
 * "b" into a directory; both are read again.
 */
static int check_swap_lower(void *userdata, const struct walk_inode *inode,
			    const char *name, size_t name_len, const char **ret_what)
{
	struct swap_ctx *c = userdata;
	char p[PATH_MAX], q[PATH_MAX];

	if (c->done || strcmp(name, "z"))
		return 0;
	c->done = true;
	at(p, sizeof(p), "spare");	/* outside the layers */
	at(q, sizeof(q), "L1/chg/a");
	assert_int_equal(rename(p, q), 0);
	at(p, sizeof(p), "L1/chg/b");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(p, 0700), 0);
	return 0;
}

static void test_changed_while_walked_layers(void **state)
{
	struct swap_ctx c = { 0 };
	struct walk_opts opts = { .check = check_swap_lower, .userdata = &c, .threads = 1 };
	char l0[PATH_MAX], l1[PATH_MAX], p[PATH_MAX];
	const char *layers[2] = { l0, l1 };
	struct walk_stack stack = { .layers = layers, .nlayers = 2, .ns = WALK_OVL_USER };
	const struct walk_inode *a, *b;
	struct walk_tree *tree = NULL;
	char *errpath = NULL;
	const char *what = NULL;
	struct stat st;

	make_dir("L0");
	make_dir("L0/chg");
	make_file("L0/chg/z", "z", 0644);
	make_dir("L1");
	make_dir("L1/chg");
	make_file("L1/chg/a", "old a", 0644);
	make_file("L1/chg/b", "old b", 0644);
	make_file("spare", "new a!", 0600);
	at(l0, sizeof(l0), "L0");
	at(l1, sizeof(l1), "L1");
	assert_int_equal(walk_layers(&stack, &opts, &tree, &errpath, &what), 0);
	assert_true(c.done);
	a = lookup(tree, "chg/a");
	assert_int_equal(a->layer, 1);
	at(p, sizeof(p), "L1/chg/a");
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(a->ino, st.st_ino);
	assert_int_equal(a->size, 6);
	assert_int_equal(a->mode, S_IFREG | 0600);
	read_expect(walk_open_data(tree, a), "new a!");
	b = lookup(tree, "chg/b");
	assert_true(S_ISDIR(b->mode));
	assert_int_equal(b->nchildren, 0);
	assert_int_equal(lookup(tree, "chg")->nlink, 3);
	assert_non_null(lookup(tree, "chg/z"));
	walk_tree_free(tree);
}

/*
 * Several walkers give the tree one walker gives: the same inodes in the
 * same order, the same first dentries (paths), link counts and sharing,
 * also for hard links spread over directories the walkers read at once.
 */
static void test_walkers_agree(void **state)
{
	struct walk_opts one = { .threads = 1 }, many = { .threads = 4 };
	struct walk_tree *a, *b;
	char rel[64], p[PATH_MAX];

	make_dir("many");
	for (int d = 0; d < 24; d++) {
		snprintf(rel, sizeof(rel), "many/d%02d", d);
		make_dir(rel);
		for (int f = 0; f < 8; f++) {
			snprintf(rel, sizeof(rel), "many/d%02d/f%d", d, f);
			if (d == 0) {
				make_file(rel, "shared", 0644);
				continue;
			}
			snprintf(p, sizeof(p), "many/d00/f%d", f);
			make_link(p, rel);	/* 24 names per inode, in 24 directories */
		}
		snprintf(rel, sizeof(rel), "many/d%02d/own", d);
		make_file(rel, "own", 0644);
	}
	a = walk_ok(&one);
	for (int round = 0; round < 5; round++) {
		b = walk_ok(&many);
		assert_int_equal(a->ninodes, b->ninodes);
		for (size_t i = 0; i < a->ninodes; i++) {
			const struct walk_inode *x = a->inodes[i], *y = b->inodes[i];
			char *px = walk_inode_path(x), *py = walk_inode_path(y);

			assert_string_equal(px, py);
			free(px);
			free(py);
			assert_int_equal(x->ino, y->ino);
			assert_int_equal(x->nlink, y->nlink);
			assert_int_equal(x->nchildren, y->nchildren);
			for (uint32_t c = 0; c < x->nchildren; c++) {
				assert_string_equal(x->children[c].name, y->children[c].name);
				assert_int_equal(x->children[c].inode->ino,
						 y->children[c].inode->ino);
			}
		}
		assert_ptr_equal(lookup(b, "many/d07/f3"), lookup(b, "many/d00/f3"));
		assert_int_equal(lookup(b, "many/d00/f3")->nlink, 24);
		walk_tree_free(b);
	}
	walk_tree_free(a);
}

/* Bytewise with the shorter first: the order walk.h promises. */
static int bytewise_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t lx = strlen(x), ly = strlen(y);
	int r = memcmp(x, y, lx < ly ? lx : ly);

	return r ? r : (lx > ly) - (lx < ly);
}

/*
 * Children come out sorted bytewise, shorter first, also in directories
 * big enough to be merge-sorted and for names that tie on their first 8
 * bytes (the sort's integer key) or end right at them.
 */
static void test_sort_big_dir(void **state)
{
	static const char *const fixed[] = {
		"abcdefg", "abcdefgh", "abcdefghi", "abcdefgh\x80", "abcdefgh-",
		"abcdefgi", "abcdefgh\x01", "abcdefgh\xff\xff", "a", "b", "\x80",
		"\xff", "-", "0", "abcdefghabcdefgh", "abcdefghabcdefgg",
	};
	const char *names[64];
	struct walk_tree *tree;
	const struct walk_inode *d;
	char rel[64];
	size_t n = 0;

	make_dir("big");
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		names[n++] = fixed[i];
	for (unsigned int i = 0; n < 64; i++) {
		static char extra[48][16];

		snprintf(extra[i], sizeof(extra[i]), "%c%c%c%02u", "zqa\xc3"[i % 4],
			 "xyz"[i % 3], 'a' + (i * 7) % 26, (i * 37) % 100);
		names[n++] = extra[i];
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(rel, sizeof(rel), "big/%s", names[i]);
		make_file(rel, "", 0644);
	}
	qsort(names, n, sizeof(names[0]), bytewise_cmp);
	tree = walk_ok(NULL);
	d = lookup(tree, "big");
	assert_int_equal(d->nchildren, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(d->children[i].name, names[i]);
	walk_tree_free(tree);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_tree, teardown_tree)
	const struct CMUnitTest tests[] = {
		T(test_fields),
		T(test_fields_proc),
		T(test_xattrs_large),
		T(test_order),
		T(test_hardlinks),
		T(test_many_hardlinks),
		T(test_open_data),
		T(test_open_data_swapped_dir),
		T(test_open_data_fifo_swapped),
		T(test_open_data_long_path),
		T(test_source_by_path),
		T(test_source_check_after),
		T(test_source_learns_handle),
		T(test_source_path),
		T(test_open_data_threads),
		T(test_open_noatime),
		T(test_check_fails),
		T(test_check_skips),
		T(test_errors_in_tree_order),
		T(test_not_dir),
		T(test_progress),
		T(test_mounts),
		T(test_changed_while_walked),
		T(test_changed_while_walked_layers),
		T(test_walkers_agree),
		T(test_sort_big_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
