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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/launch.h"
#include "server/cleanup.h"

/* Compares version strings with digit runs as numbers ("6.10" > "6.9"). */
static int version_cmp(const char *a, const char *b)
{
	while (*a && *b) {
		if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
			const char *ea = a, *eb = b;

			while (*a == '0')
				a++;
			while (*b == '0')
				b++;
			for (ea = a; isdigit((unsigned char)*ea); ea++)
				;
			for (eb = b; isdigit((unsigned char)*eb); eb++)
				;
			if (ea - a != eb - b)
				return ea - a < eb - b ? -1 : 1;
			int c = strncmp(a, b, (size_t)(ea - a));

			if (c)
				return c;
			a = ea;
			b = eb;
		} else {
			if (*a != *b)
				return (unsigned char)*a - (unsigned char)*b;
			a++;
			b++;
		}
	}
	return (unsigned char)*a - (unsigned char)*b;
}

/* A regular file (not a symlink: a link in the tree may point at an
 * absolute path meant for the guest, not for the host). */
static bool is_file(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Tries the kernel/initrd pair of one version; 0 and the paths set, or
 * -ENOENT. */
static int try_kver(struct launch *l, const char *kver)
{
	const char *dir = l->export_dir;
	_cleanup_free_ char *k = NULL, *i = NULL;

	/* bootc and Fedora: the kernel lives beside its modules. */
	if (asprintf(&k, "%s/usr/lib/modules/%s/vmlinuz", dir, kver) < 0 ||
	    asprintf(&i, "%s/usr/lib/modules/%s/initramfs.img", dir, kver) < 0)
		return -ENOMEM;
	if (is_file(k) && is_file(i))
		goto found;
	free(k);
	free(i);
	k = i = NULL;
	/* Debian and classic layouts: /boot. */
	if (asprintf(&k, "%s/boot/vmlinuz-%s", dir, kver) < 0 ||
	    asprintf(&i, "%s/boot/initrd.img-%s", dir, kver) < 0)
		return -ENOMEM;
	if (is_file(k) && is_file(i))
		goto found;
	free(i);
	i = NULL;
	if (asprintf(&i, "%s/boot/initramfs-%s.img", dir, kver) < 0)
		return -ENOMEM;
	if (is_file(k) && is_file(i))
		goto found;
	return -ENOENT;
found:
	l->boot_kernel = TAKE_PTR(k);
	l->boot_initrd = TAKE_PTR(i);
	return 0;
}

/* The kernel versions present in the tree, newest first: directory names
 * under usr/lib/modules and vmlinuz-* suffixes in boot. */
static int list_kvers(const struct launch *l, struct strv *out)
{
	const char *subdirs[] = { "usr/lib/modules", "boot" };

	for (size_t s = 0; s < ARRAY_SIZE(subdirs); s++) {
		_cleanup_free_ char *p = path_join(l->export_dir, subdirs[s]);
		DIR *d;
		struct dirent *de;

		if (!p)
			return -ENOMEM;
		d = opendir(p);
		if (!d)
			continue;
		while ((de = readdir(d))) {
			const char *v = de->d_name;

			if (v[0] == '.')
				continue;
			if (s == 1) {
				if (strncmp(v, "vmlinuz-", 8) != 0)
					continue;
				v += 8;
			}
			if (*v)
				strv_add(out, v);
		}
		closedir(d);
	}
	if (out->oom)
		return -ENOMEM;
	/* Insertion sort, newest first; a tree has a handful of kernels. */
	for (size_t i = 1; i < out->n; i++)
		for (size_t j = i; j > 0 && version_cmp(out->v[j - 1], out->v[j]) < 0; j--) {
			char *t = out->v[j];

			out->v[j] = out->v[j - 1];
			out->v[j - 1] = t;
		}
	return 0;
}

int boot_find_kernel(struct launch *l)
{
	struct strv kvers = { 0 };
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
	if (l->kver) {
		if (strchr(l->kver, '/') || !strcmp(l->kver, "..")) {
			log_error("--kver '%s': not a kernel version", l->kver);
			return -EINVAL;
		}
		r = try_kver(l, l->kver);
	} else {
		r = list_kvers(l, &kvers);
		if (r == 0) {
			r = -ENOENT;
			for (size_t i = 0; i < kvers.n && r == -ENOENT; i++)
				r = try_kver(l, kvers.v[i]);
		}
		strv_free(&kvers);
	}
	if (r == -ENOENT)
		log_error("no kernel%s%s with an initramfs in '%s' (looked for"
			  " usr/lib/modules/KVER/vmlinuz + initramfs.img and"
			  " boot/vmlinuz-KVER + initrd.img-KVER or initramfs-KVER.img);"
			  " give --kernel and --initrd", l->kver ? " " : "",
			  l->kver ? l->kver : "", l->export_dir);
	else if (r == 0)
		log_info("kernel '%s', initramfs '%s'", l->boot_kernel, l->boot_initrd);
	return r;
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

int boot_read_ssh_key(struct launch *l)
{
	char buf[16384];
	_cleanup_close_ int fd = open(l->ssh_key_file, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	size_t len = 0;

	if (fd < 0)
		return log_errno(-errno, "--ssh-key '%s'", l->ssh_key_file);
	while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	if (n < 0)
		return log_errno(-errno, "reading '%s'", l->ssh_key_file);
	buf[len] = '\0';
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	if (len == sizeof(buf) - 1 || strlen(buf) != len || !ssh_key_valid(buf)) {
		log_error("--ssh-key '%s': not one OpenSSH public key line"
			  " (TYPE BASE64 [COMMENT], printable ASCII, no quotes,"
			  " backslashes, '$', '`' or ';')", l->ssh_key_file);
		return -EINVAL;
	}
	/* The credential is the authorized_keys file: the line and '\n'. */
	buf[len++] = '\n';
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
	return l->vmm == VMM_VFKIT || strcmp(guest_arch(l), "x86_64") != 0;
}

int boot_make_cmdline(struct launch *l)
{
	const char *console = guest_console(l);
	const char *extra = l->cmdline ? l->cmdline : "";
	bool cred = l->ssh_credential && cred_on_cmdline(l);

	if (asprintf(&l->boot_cmdline,
		     "root=/dev/vda rootfstype=erofs ro console=%s%s%s%s%s", console,
		     *extra ? " " : "", extra,
		     cred ? " systemd.set_credential_binary=ssh.authorized_keys.root:" : "",
		     cred ? l->ssh_credential : "") < 0) {
		l->boot_cmdline = NULL;
		return -ENOMEM;
	}
	return 0;
}
