/* SPDX-License-Identifier: MIT */
/*
 * bootcfg.h - what a tree says about booting it: its kernels (the one
 * rule that both the ESP builder, fat/esp.c, and the launcher's direct
 * kernel boot, launcher/boot.c, follow) and its own kernel arguments.
 *
 * It lives in fat/ beside its main user, the ESP builder, and depends on
 * nothing but libc, so that the launcher (a program of its own, which
 * also runs on macOS) links this one object file without the server's
 * library.  The tree is reached through struct bootcfg_tree: the ESP
 * builder answers from the tree model, the launcher from the host's file
 * system; both resolve symlinks inside the tree, as if it were '/'.
 *
 * Kernels (bootc and Fedora: /usr/lib/modules/KVER/vmlinuz; Debian and
 * classic layouts: /boot/vmlinuz-KVER).  For each KVER the kernel is
 * usr/lib/modules/KVER/vmlinuz, else boot/vmlinuz-KVER; its initramfs
 * usr/lib/modules/KVER/initramfs.img, else boot/initrd.img-KVER, else
 * boot/initramfs-KVER.img.  Only names that bootcfg_kver_ok() accepts
 * count.  The one to boot is --kver's, else the newest (bootcfg_kver_cmp)
 * of those with an initramfs, else the newest of all.
 *
 * Kernel arguments: /etc/kernel/cmdline (kernel-install's), then every
 * /usr/lib/bootc/kargs.d/NAME.toml in name order (bootc's: a kargs array of
 * strings, and an optional match-architectures array).  Arguments that
 * name the root file system or the boot itself (root=, rootfstype=,
 * rootflags=, ro, rw, initrd=, BOOT_IMAGE=) are dropped: the disk we
 * serve decides those.  What follows a file's "--" is init's, kept as it
 * is and put after every file's kernel arguments.
 *
 * Functions return 0 or -errno and do not log; file-level errors come
 * with a static description in *ret_what and the path in *ret_path.
 */
#ifndef EROFS_NBD_BOOTCFG_H
#define EROFS_NBD_BOOTCFG_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Reads from fd until size bytes or the end of the file, retrying EINTR:
 * the byte count, or -errno.  For the read callbacks of both users.
 */
long bootcfg_read_fd(int fd, char *buf, size_t size);

/* Longest kernel version we accept (it becomes a FAT name on the ESP). */
#define BOOTCFG_KVER_MAX	200

enum bootcfg_type { BOOTCFG_NONE = 0, BOOTCFG_FILE, BOOTCFG_DIR };

/* How the rule sees a tree.  Paths are relative to the tree's root,
 * '/'-separated, without a leading '/'. */
struct bootcfg_tree {
	/*
	 * Resolves path inside the tree, following symlinks as if the root
	 * were '/' (never leaving it).  Returns BOOTCFG_FILE (a regular file)
	 * or BOOTCFG_DIR, and then, if ret_path is not NULL, the symlink-free
	 * path (malloc'ed); BOOTCFG_NONE if it is missing, of another type or
	 * a link loop; -ENOMEM.
	 */
	int (*resolve)(void *ctx, const char *path, char **ret_path);
	/*
	 * Calls fn(arg, name) for each entry of the directory at the
	 * symlink-free path dir (not "." or ".."), in any order, stopping at
	 * the first non-zero return, which it returns.  0, or -errno if the
	 * directory cannot be read (-ENOENT if it is missing).
	 */
	int (*list)(void *ctx, const char *dir, int (*fn)(void *arg, const char *name),
		    void *arg);
	/*
	 * Reads up to size bytes of the regular file at the symlink-free
	 * path into buf; returns the count, or -errno.
	 */
	long (*read)(void *ctx, const char *path, char *buf, size_t size);
	void *ctx;
};

/* One kernel of a tree; every path is symlink-free, relative to the root. */
struct bootcfg_kernel {
	char *kver;
	char *kernel;
	char *initrd;		/* or NULL */
	char *moddir;		/* usr/lib/modules/KVER when a directory, or NULL */
};

struct bootcfg_kernels {
	struct bootcfg_kernel *v;	/* newest first (bootcfg_kver_cmp, then bytes) */
	size_t n;
};

/*
 * Compares two version strings by the UAPI Version Format Specification
 * (systemd's strverscmp_improved(), what systemd-boot sorts entries by;
 * for kernel versions the same order as `sort -V`): runs of digits
 * compare as numbers (leading zeros ignored), runs of letters bytewise;
 * '~' sorts before everything, even the end (123~rc1 < 123); then the
 * end of the string; then '-' < '^' < '.' < a segment; a number is newer
 * than letters; other bytes are skipped.  6.1.0-9-amd64 < 6.1.0-10-amd64.
 * Returns -1, 0 or 1.  A total preorder: antisymmetric and transitive,
 * and 0 only for strings that differ in skipped bytes or leading zeros.
 * Any bytes are accepted (NUL-terminated strings).
 */
int bootcfg_kver_cmp(const char *a, const char *b);

/*
 * Whether name can be a kernel version: 1..BOOTCFG_KVER_MAX bytes of
 * letters, digits and "._+~^-", not starting with '.' or '-', not
 * ending with '.' (which a FAT long name cannot keep), and not "EFI" or
 * "loader" in any case (the ESP's own top-level directories).
 */
bool bootcfg_kver_ok(const char *name);

/*
 * Collects the kernels of a tree by the rule above, newest first.
 * Returns 0 (possibly with none) or -ENOMEM; unreadable directories count
 * as empty.  Free with bootcfg_kernels_free().
 */
int bootcfg_find_kernels(const struct bootcfg_tree *t, struct bootcfg_kernels *ret);

/*
 * The kernel to boot: the one named kver (NULL if there is none), else
 * the newest with an initramfs, else the newest; NULL for an empty list.
 */
const struct bootcfg_kernel *bootcfg_pick(const struct bootcfg_kernels *k,
					  const char *kver);

/* Frees what bootcfg_find_kernels() filled.  Accepts a zeroed struct. */
void bootcfg_kernels_free(struct bootcfg_kernels *k);

/*
 * The tree's kernel arguments for a kernel of architecture arch
 * ("x86_64", "aarch64": bootc's match-architectures names), as one
 * space-separated string (malloc'ed; "" when there are none), in the
 * order above, then "-- " and init's arguments if any file has some.
 * Errors: -EINVAL for a file that is not what its format says (a
 * /etc/kernel/cmdline with a control character or a '"' never closed; a
 * kargs.d file that is not the TOML subset bootc writes: a "kargs" array
 * of strings and an optional "match-architectures" array; an argument
 * with a control character, whitespace or a quote), with
 * *ret_path (malloc'ed) and *ret_what (static) saying which and why;
 * -EFBIG for a file over 64 KiB; the read's -errno; -ENOMEM.
 */
int bootcfg_kargs(const struct bootcfg_tree *t, const char *arch, char **ret,
		  char **ret_path, const char **ret_what);

/*
 * Whether every '"' of the command line s is closed (an even number of
 * them): the kernel takes what follows one never closed, the rest of the
 * line, into one value.
 */
bool bootcfg_quotes_closed(const char *s);

/*
 * Joins the kernel command lines parts[0..n) (NULL or "" ones left out)
 * into one, *ret (malloc'ed), so that what each says keeps its meaning:
 * the kernel hands everything after the first "--" word (quoted or not)
 * to init, so when a part other than the last has a "--", the words after
 * each part's first "--" move to the end, after one "--", in the parts'
 * order: "a -- b", "c -- d" give "a c -- b d".  Otherwise the parts are
 * joined as given, one space between them.  Errors: -EINVAL when a part
 * has an odd number of '"' (the kernel would take the rest of the line
 * into one value), with its index in *ret_bad; -ENOMEM.
 */
int bootcfg_cmdline_join(const char *const *parts, size_t n, char **ret, size_t *ret_bad);

#endif
