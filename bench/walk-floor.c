/* SPDX-License-Identifier: MIT */
/*
 * bench/walk-floor.c - the start-up's floor on a tree: the CPU time of
 * the system calls that any program must make to lay a tree out as an
 * EROFS image without reading its files, with nothing else around them.
 *
 *   walk-floor [-r RUNS] TREE
 *
 * Per directory: open (O_RDONLY | O_DIRECTORY | O_NOFOLLOW), getdents64
 * until the end, close.  Per entry, by its name in that directory, never
 * following a symlink: statx (the inode), the xattr list and each value
 * (listxattrat/getxattrat on Linux 6.13+, else llistxattr/lgetxattr on
 * "/proc/self/fd/DIRFD/NAME", as the walk does), readlinkat for a
 * symlink.  A second pass ("handles") adds name_to_handle_at for each
 * regular file, which erofs-nbd's walk made until 12-04 so as to reopen
 * sources by handle (it now takes one per directory: overlaywalk/reopen.c).
 *
 * One thread, warm caches (a first pass is not counted), RUNS passes of
 * each kind alternating (default 3), CLOCK_PROCESS_CPUTIME_ID.  Prints
 * key-value lines for bench/sec-startup.sh: "entries N", "cpus N",
 * "metadata_cpu_s S" and "handles_cpu_s S" (medians).  The floor of a
 * walk spread perfectly over every CPU is the CPU time over "cpus": no
 * design that makes these calls on this machine starts sooner.
 *
 * Exit status: 0, or 1 when TREE cannot be walked (the message names the
 * path).  Entries that vanish meanwhile are counted as far as they got.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "overlaywalk/linux_abi.h"

static bool have_xattrat = true;
static bool with_handles;
static unsigned long n_entries;

/* The proc path of NAME in DIRFD for the l*xattr() fallback. */
static const char *proc_path(char *buf, size_t size, int dirfd, const char *name)
{
	if (snprintf(buf, size, "/proc/self/fd/%d/%s", dirfd, name) >= (int)size)
		return NULL;
	return buf;
}

/* Lists NAME's xattrs and reads each value, as a walk must. */
static void read_xattrs(int dirfd, const char *name)
{
	char list[4096], value[4096], path[4352];
	ssize_t n = -1;

	if (have_xattrat) {
		n = syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW,
			    list, sizeof(list));
		if (n < 0 && errno == ENOSYS)
			have_xattrat = false;
	}
	if (!have_xattrat) {
		if (!proc_path(path, sizeof(path), dirfd, name))
			return;
		n = llistxattr(path, list, sizeof(list));
	}
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1) {
		if (have_xattrat) {
			struct xattr_args_v0 args = {
				.value = (uintptr_t)value, .size = sizeof(value),
			};

			syscall(SYS_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW,
				list + i, &args, sizeof(args));
		} else {
			lgetxattr(path, list + i, value, sizeof(value));
		}
	}
}

static void visit_entry(int dirfd, const char *name)
{
	struct statx stx;
	char target[4096];

	n_entries++;
	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
		  STATX_BASIC_STATS | STATX_BTIME, &stx) < 0)
		return;
	read_xattrs(dirfd, name);
	if (S_ISLNK(stx.stx_mode))
		(void)!readlinkat(dirfd, name, target, sizeof(target));
	if (with_handles && S_ISREG(stx.stx_mode)) {
		struct {
			struct file_handle fh;
			unsigned char f_handle[MAX_HANDLE_SZ];
		} h = { .fh.handle_bytes = MAX_HANDLE_SZ };
		int mnt_id;

		name_to_handle_at(dirfd, name, &h.fh, &mnt_id, 0);
	}
}

/*
 * Walks the directory NAME in DIRFD (the tree's root: AT_FDCWD and its
 * path).  A directory it cannot open or read, at any depth, is an error
 * (-errno, its name on stderr): a floor that skipped a subtree would be
 * too low.
 */
static int walk_dir(int dirfd, const char *name)
{
	char buf[32768];
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	long n = 0;
	int r = 0;

	if (fd < 0) {
		r = -errno;
		fprintf(stderr, "walk-floor: directory '%s': %s\n", name, strerror(-r));
		return r;
	}
	while (r == 0 && (n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n && r == 0;) {
			struct linux_dirent64 *d = (void *)(buf + off);

			off += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			visit_entry(fd, d->d_name);
			if (d->d_type == DT_DIR)
				r = walk_dir(fd, d->d_name);
		}
	}
	if (r == 0 && n < 0) {
		r = -errno;
		fprintf(stderr, "walk-floor: reading directory '%s': %s\n", name, strerror(-r));
	}
	close(fd);
	return r;
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One pass over TREE: its CPU seconds, or a negative errno. */
static double pass(const char *tree, bool handles, int *ret_err)
{
	double t0;

	with_handles = handles;
	n_entries = 1;	/* the root */
	t0 = cpu_seconds();
	*ret_err = walk_dir(AT_FDCWD, tree);
	return cpu_seconds() - t0;
}

static int usage(void)
{
	fprintf(stderr, "usage: walk-floor [-r RUNS (1-64)] TREE\n");
	return 2;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double meta[64], handles[64];
	int runs = 3, opt, err;

	while ((opt = getopt(argc, argv, "r:")) != -1) {
		if (opt != 'r' || (runs = atoi(optarg)) < 1 || runs > 64)
			return usage();
	}
	if (optind + 1 != argc)
		return usage();
	pass(argv[optind], true, &err);	/* warm-up */
	if (err < 0)
		return 1;	/* walk_dir() named the directory */
	for (int i = 0; i < runs && err == 0; i++) {
		meta[i] = pass(argv[optind], false, &err);
		if (err == 0)
			handles[i] = pass(argv[optind], true, &err);
	}
	if (err < 0)
		return 1;	/* the tree changed since the warm-up */
	qsort(meta, (size_t)runs, sizeof(double), cmp_double);
	qsort(handles, (size_t)runs, sizeof(double), cmp_double);
	printf("entries %lu\ncpus %ld\nmetadata_cpu_s %.4f\nhandles_cpu_s %.4f\n",
	       n_entries, sysconf(_SC_NPROCESSORS_ONLN), meta[runs / 2],
	       handles[runs / 2]);
	return 0;
}
