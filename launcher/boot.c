// SPDX-License-Identifier: MIT
/*
 * boot.c - what the guest boots with, decided on the host: for direct
 * kernel boot the kernel and initramfs files (given, or found in the
 * served tree where the ESP builder looks too) and the kernel command
 * line; for every mode the SSH public key, validated and turned into a
 * systemd credential so that it travels as data, never inside a script
 * (vfkit-launch.md §3.3, §3.4).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fat/bootcfg.h"
#include "launcher/launch.h"
#include "server/cleanup.h"

/* ------------------------------------------------------------------ */
/* The served tree as bootcfg.h sees it, from the host                 */
/* ------------------------------------------------------------------ */

#define SYMLINK_HOPS 40		/* as Linux's MAXSYMLINKS */

/*
 * Resolves path under the tree's root fd the way the kernel would inside
 * a chroot at the root: component by component with fstatat(...,
 * AT_SYMLINK_NOFOLLOW), a symlink's target read with readlinkat() and
 * walked in its place (absolute targets from the root, ".." never above
 * it).  The path handed out never contains a symlink, so nothing on the
 * host (QEMU, vfkit) ever follows one out of the tree.
 */
static int host_resolve(void *ctx, const char *path, char **ret_path)
{
	const struct launch *l = ctx;
	_cleanup_free_ char *done = strdup(""), *rest = strdup(path);
	struct stat st;
	int hops = 0;

	if (!done || !rest)
		return -ENOMEM;
	for (;;) {
		size_t skip = strspn(rest, "/"), len = strcspn(rest + skip, "/");
		char comp[NAME_MAX + 1], *cand = NULL;

		if (len == 0)
			break;
		if (len > NAME_MAX)
			return BOOTCFG_NONE;
		memcpy(comp, rest + skip, len);
		comp[len] = '\0';
		memmove(rest, rest + skip + len, strlen(rest + skip + len) + 1);
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			char *slash = strrchr(done, '/');

			*(slash ? slash : done) = '\0';
			continue;
		}
		if (asprintf(&cand, "%s%s%s", done, *done ? "/" : "", comp) < 0)
			return -ENOMEM;
		if (fstatat(l->tree_fd, cand, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			free(cand);
			return BOOTCFG_NONE;
		}
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(l->tree_fd, cand, target, sizeof(target) - 1);
			char *next = NULL;

			free(cand);
			if (n <= 0 || ++hops > SYMLINK_HOPS)
				return BOOTCFG_NONE;
			target[n] = '\0';
			if (target[0] == '/')
				done[0] = '\0';
			if (asprintf(&next, "%s/%s", target, rest) < 0)
				return -ENOMEM;
			free(rest);
			rest = next;
			continue;
		}
		free(done);
		done = cand;
	}
	if (fstatat(l->tree_fd, *done ? done : ".", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return BOOTCFG_NONE;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return BOOTCFG_NONE;
	if (ret_path)
		*ret_path = TAKE_PTR(done);
	return S_ISREG(st.st_mode) ? BOOTCFG_FILE : BOOTCFG_DIR;
}

static int host_list(void *ctx, const char *dir, int (*fn)(void *, const char *), void *arg)
{
	const struct launch *l = ctx;
	int fd = openat(l->tree_fd, *dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			O_CLOEXEC);
	DIR *d;
	struct dirent *de;
	int r = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	while (!r && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			r = fn(arg, de->d_name);
	closedir(d);
	return r;
}

static long host_read(void *ctx, const char *path, char *buf, size_t size)
{
	const struct launch *l = ctx;
	_cleanup_close_ int fd = openat(l->tree_fd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
					O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return bootcfg_read_fd(fd, buf, size);
}

/* Opens the tree's root for the bootcfg_tree callbacks. */
static int tree_open(struct launch *l, struct bootcfg_tree *t)
{
	if (l->tree_fd < 0) {
		l->tree_fd = open(l->export_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (l->tree_fd < 0)
			return log_errno(-errno, "opening '%s'", l->export_dir);
	}
	*t = (struct bootcfg_tree){ .resolve = host_resolve, .list = host_list,
				    .read = host_read, .ctx = l };
	return 0;
}

int boot_find_kernel(struct launch *l)
{
	struct bootcfg_kernels kernels = { 0 };
	const struct bootcfg_kernel *k;
	struct bootcfg_tree t;
	int r;

	if (l->kernel) {
		if (access(l->kernel, R_OK) < 0)
			return log_errno(-errno, "--kernel '%s'", l->kernel);
		if (l->initrd && access(l->initrd, R_OK) < 0)
			return log_errno(-errno, "--initrd '%s'", l->initrd);
		if (!l->initrd && l->vmm == VMM_VFKIT) {
			log_error("vfkit's linux bootloader needs --initrd with --kernel");
			return -EINVAL;
		}
		l->boot_kernel = strdup(l->kernel);
		l->boot_initrd = l->initrd ? strdup(l->initrd) : NULL;
		if (!l->boot_kernel || (l->initrd && !l->boot_initrd))
			return -ENOMEM;
		return 0;
	}
	if (!l->export_dir) {
		log_error("--boot kernel with --connect needs --kernel and --initrd"
			  " (the tree is not on this host)");
		return -EINVAL;
	}
	if (l->kver && !bootcfg_kver_ok(l->kver)) {
		log_error("--kver '%s': not a kernel version", l->kver);
		return -EINVAL;
	}
	r = tree_open(l, &t);
	if (r < 0)
		return r;
	r = bootcfg_find_kernels(&t, &kernels);
	if (r < 0)
		return log_errno(r, "looking for kernels in '%s'", l->export_dir);
	k = bootcfg_pick(&kernels, l->kver);
	if (!k) {
		log_error("no kernel%s%s in '%s' (looked for usr/lib/modules/KVER/vmlinuz"
			  " and boot/vmlinuz-KVER); give --kernel and --initrd",
			  l->kver ? " " : "", l->kver ? l->kver : "", l->export_dir);
		r = -ENOENT;
	} else if (!k->initrd && l->vmm == VMM_VFKIT) {
		log_error("kernel %s in '%s' has no initramfs (usr/lib/modules/KVER/"
			  "initramfs.img, boot/initrd.img-KVER or boot/initramfs-KVER.img),"
			  " which vfkit's linux bootloader needs", k->kver, l->export_dir);
		r = -ENOENT;
	} else {
		l->boot_kernel = path_join(l->export_dir, k->kernel);
		l->boot_initrd = k->initrd ? path_join(l->export_dir, k->initrd) : NULL;
		if (!l->boot_kernel || (k->initrd && !l->boot_initrd))
			r = -ENOMEM;
		else
			log_info("kernel '%s', initramfs '%s'", l->boot_kernel,
				 l->boot_initrd ? l->boot_initrd : "(none)");
	}
	bootcfg_kernels_free(&kernels);
	return r;
}

int boot_tree_kargs(struct launch *l)
{
	struct bootcfg_tree t;
	_cleanup_free_ char *path = NULL;
	const char *what;
	int r;

	if (!l->export_dir)
		return 0;	/* the tree is elsewhere: its server built the ESP */
	r = tree_open(l, &t);
	if (r < 0)
		return r;
	r = bootcfg_kargs(&t, guest_arch(l), &l->tree_kargs, &path, &what);
	if (r < 0 && path)
		return log_errno(r, "'%s/%s'%s%s", l->export_dir, path,
				 what ? ": " : "", what ? what : "");
	if (r < 0)
		return log_errno(r, "reading the kernel arguments of '%s'", l->export_dir);
	if (*l->tree_kargs)
		log_info("the tree's kernel arguments: %s", l->tree_kargs);
	return 0;
}

static char *base64(const unsigned char *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		unsigned int v = (unsigned int)p[i] << 16;

		if (i + 1 < n)
			v |= (unsigned int)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = tab[v >> 18 & 63];
		*o++ = tab[v >> 12 & 63];
		*o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* One OpenSSH public key line: "TYPE BASE64 [COMMENT]", printable ASCII
 * without quotes, backslashes or shell/GRUB metacharacters ($ ` ;). */
static bool ssh_key_valid(const char *line)
{
	const char *p = line, *sp;

	for (const char *c = line; *c; c++)
		if (*c < 0x20 || *c > 0x7e || strchr("'\"\\`$;", *c))
			return false;
	sp = strchr(p, ' ');
	if (!sp || sp == p)
		return false;
	for (; p < sp; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-@._", *p))
			return false;
	p = sp + 1;
	if (!*p || *p == ' ')
		return false;
	for (; *p && *p != ' '; p++)
		if (!isalnum((unsigned char)*p) && !strchr("+/=", *p))
			return false;
	return true;
}

/* Reads one public key line from path into buf (size bytes), trailing
 * newline and blanks removed, and checks it.  Length, or -errno (logged). */
static int read_key_line(const char *what, const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t len = 0;

	if (fd < 0)
		return log_errno(-errno, "%s '%s'", what, path);
	while ((n = read(fd, buf + len, size - 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0)
		return log_errno(-errno, "reading '%s'", path);
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (len == size - 1 || strlen(buf) != len || !ssh_key_valid(buf)) {
		log_error("%s '%s': not one OpenSSH public key line"
			  " (TYPE BASE64 [COMMENT], printable ASCII, no quotes,"
			  " backslashes, '$', '`' or ';')", what, path);
		return -EINVAL;
	}
	return (int)len;
}

int boot_read_ssh_key(struct launch *l)
{
	char buf[2 * 8192 + 2];
	size_t len = 0;
	int r;

	/* The credential is the authorized_keys file: one line per key. */
	if (l->ssh_key_file) {
		r = read_key_line("--ssh-key", l->ssh_key_file, buf, 8192);
		if (r < 0)
			return r;
		free(l->ssh_cred_line);
		l->ssh_cred_line = strndup(buf, (size_t)r);
		len = (size_t)r;
		buf[len++] = '\n';
	}
	if (l->ssh && !l->dry_run) {
		r = read_key_line("throwaway key", l->ssh_key_pub, buf + len, 8192);
		if (r < 0)
			return r;
		free(l->ssh_cred_line);
		l->ssh_cred_line = strndup(buf + len, (size_t)r);
		len += (size_t)r;
		buf[len++] = '\n';
	}
	if (!len)
		return 0;
	if (!l->ssh_cred_line)
		return -ENOMEM;
	l->ssh_credential = base64((const unsigned char *)buf, len);
	return l->ssh_credential ? 0 : -ENOMEM;
}

const char *guest_console(const struct launch *l)
{
	if (l->vmm == VMM_VFKIT)
		return "hvc0";		/* virtio-serial (vfkit-launch.md §1.7) */
	return strcmp(guest_arch(l), "x86_64") ? "ttyAMA0" : "ttyS0";
}

bool cred_on_cmdline(const struct launch *l)
{
	return l->vmm == VMM_VFKIT ||
	       (l->boot == BOOT_KERNEL && strcmp(guest_arch(l), "x86_64") != 0);
}

char *boot_launcher_args(const struct launch *l, bool quotes_ok)
{
	bool cred = l->ssh_credential && cred_on_cmdline(l);
	char *s;

	/* The binary form first: where both are known the first one wins
	 * (systemd ignores a credential set twice). */
	if (asprintf(&s, "console=%s systemd.volatile=overlay%s%s%s%s%s",
		     guest_console(l),
		     cred ? " systemd.set_credential_binary=ssh.authorized_keys.root:" : "",
		     cred ? l->ssh_credential : "",
		     cred && quotes_ok ? " \"systemd.set_credential=ssh.authorized_keys.root:" : "",
		     cred && quotes_ok ? l->ssh_cred_line : "",
		     cred && quotes_ok ? "\"" : "") < 0)
		return NULL;
	return s;
}

int boot_make_cmdline(struct launch *l)
{
	/* vfkit's cmdline="..." cannot carry a '"'. */
	_cleanup_free_ char *ours = boot_launcher_args(l, l->vmm != VMM_VFKIT);
	const char *parts[] = { "root=/dev/vda rootfstype=erofs ro", l->tree_kargs, ours,
				l->cmdline };
	size_t bad;
	int r;

	if (!ours)
		return -ENOMEM;
	/* Every part has its quotes closed: bootcfg_kargs() and
	 * parse_args() saw to the tree's and --cmdline, ours are ours. */
	r = bootcfg_cmdline_join(parts, ARRAY_SIZE(parts), &l->boot_cmdline, &bad);
	if (r < 0) {
		l->boot_cmdline = NULL;
		return log_errno(r, "the kernel command line");
	}
	return 0;
}

int boot_check_vfkit_kernel(const struct launch *l)
{
	unsigned char h[0x40];
	_cleanup_close_ int fd = open(l->boot_kernel, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	const char *what;

	if (fd < 0)
		return log_errno(-errno, "kernel '%s'", l->boot_kernel);
	n = read(fd, h, sizeof(h));
	if (n < 0)
		return log_errno(-errno, "reading '%s'", l->boot_kernel);
	/* arm64 Image header (Documentation/arch/arm64/booting.rst): the
	 * magic "ARM\x64" at 0x38; vfkit checks the same. */
	if (n == (ssize_t)sizeof(h) && !memcmp(h + 0x38, "ARM\x64", 4))
		return 0;
	if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b)
		what = "gzip-compressed (Image.gz)";
	else if (n >= 4 && !memcmp(h, "\x28\xb5\x2f\xfd", 4))
		what = "zstd-compressed";
	else if (n >= 8 && !memcmp(h, "MZ", 2) && !memcmp(h + 4, "zimg", 4))
		what = "an EFI zboot image (a compressed kernel inside a PE stub)";
	else
		what = "not an arm64 Image";
	log_error("kernel '%s' is %s: vfkit's linux bootloader on Apple silicon needs"
		  " an uncompressed arm64 Image; boot with --boot efi (the default:"
		  " the firmware and systemd-boot handle any kernel), or give --kernel"
		  " an uncompressed Image", l->boot_kernel, what);
	return -EINVAL;
}
