// SPDX-License-Identifier: MIT
/*
 * bootcfg.c - a tree's kernels and kernel arguments (bootcfg.h): the
 * version order of the UAPI Version Format Specification, the kernel
 * discovery rule shared by the ESP builder and the launcher, and a reader
 * for /etc/kernel/cmdline and the subset of TOML that bootc's
 * /usr/lib/bootc/kargs.d/NAME.toml files use.
 *
 * Plain C and POSIX only: the launcher links this file on macOS too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fat/bootcfg.h"

#define KARGS_DIR	"usr/lib/bootc/kargs.d"
#define KERNEL_CMDLINE	"etc/kernel/cmdline"
#define KARGS_FILE_MAX	65536	/* bytes read from one file */

/* ------------------------------------------------------------------ */
/* Version order                                                       */
/* ------------------------------------------------------------------ */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Characters the version format knows; everything else is skipped. */
static bool ver_char(char c)
{
	return is_digit(c) || is_alpha(c) || c == '~' || c == '-' || c == '^' || c == '.';
}

int bootcfg_kver_cmp(const char *a, const char *b)
{
	static const char seps[] = "-^.";	/* oldest first */

	for (;;) {
		while (*a && !ver_char(*a))
			a++;
		while (*b && !ver_char(*b))
			b++;
		if (*a == '~' || *b == '~') {
			if (*a != *b)
				return *a == '~' ? -1 : 1;
			a++;
			b++;
			continue;
		}
		if (!*a || !*b)
			return (*a != '\0') - (*b != '\0');
		for (const char *s = seps; *s; s++) {
			if (*a == *s || *b == *s) {
				if (*a != *b)
					return *a == *s ? -1 : 1;
				a++;
				b++;
			}
		}

		const char *ea = a, *eb = b;

		if (is_digit(*a) || is_digit(*b)) {
			while (is_digit(*ea))
				ea++;
			while (is_digit(*eb))
				eb++;
			if ((ea == a) != (eb == b))
				return ea == a ? -1 : 1;	/* letters < number */
			while (*a == '0' && a + 1 < ea)
				a++;
			while (*b == '0' && b + 1 < eb)
				b++;
			if (ea - a != eb - b)
				return ea - a < eb - b ? -1 : 1;
			int r = memcmp(a, b, (size_t)(ea - a));

			if (r)
				return r < 0 ? -1 : 1;
		} else {
			while (is_alpha(*ea))
				ea++;
			while (is_alpha(*eb))
				eb++;
			size_t la = (size_t)(ea - a), lb = (size_t)(eb - b);
			int r = memcmp(a, b, la < lb ? la : lb);

			if (r)
				return r < 0 ? -1 : 1;
			if (la != lb)
				return la < lb ? -1 : 1;
		}
		a = ea;
		b = eb;
	}
}

bool bootcfg_kver_ok(const char *name)
{
	size_t len = strlen(name);

	/* FAT drops a trailing '.' from a long name (fat32-gpt.md, long
	 * names), so "6.1." could not be the ESP's directory for it. */
	if (len == 0 || len > BOOTCFG_KVER_MAX || name[0] == '.' || name[0] == '-' ||
	    name[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_digit(name[i]) && !is_alpha(name[i]) && !strchr("._+~^-", name[i]))
			return false;
	return strcasecmp(name, "EFI") != 0 && strcasecmp(name, "loader") != 0;
}

long bootcfg_read_fd(int fd, char *buf, size_t size)
{
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (long)got;
}

/* ------------------------------------------------------------------ */
/* Kernels                                                             */
/* ------------------------------------------------------------------ */

struct find_ctx {
	const struct bootcfg_tree *t;
	struct bootcfg_kernels *out;
	size_t cap;
	int err;
};

static void kernel_free(struct bootcfg_kernel *k)
{
	free(k->kver);
	free(k->kernel);
	free(k->initrd);
	free(k->moddir);
}

/* A file or directory at the path printf(fmt, ...) makes: its type, and
 * its symlink-free path in *ret (NULL if absent).  -ENOMEM. */
static int __attribute__((format(printf, 4, 5)))
probe(const struct bootcfg_tree *t, enum bootcfg_type want, char **ret, const char *fmt, ...)
{
	char *p = NULL, *real = NULL;
	va_list ap;
	int r;

	*ret = NULL;
	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = t->resolve(t->ctx, p, &real);
	free(p);
	if (r < 0)
		return r;
	if ((enum bootcfg_type)r == want)
		*ret = real;
	else
		free(real);
	return 0;
}

/* Adds the kernel of version kver, if it has one and is not there yet. */
static int add_kver(struct find_ctx *c, const char *kver)
{
	const struct bootcfg_tree *t = c->t;
	struct bootcfg_kernel k = { 0 };
	int r;

	if (!bootcfg_kver_ok(kver))
		return 0;
	for (size_t i = 0; i < c->out->n; i++)
		if (strcmp(c->out->v[i].kver, kver) == 0)
			return 0;
	r = probe(t, BOOTCFG_DIR, &k.moddir, "usr/lib/modules/%s", kver);
	if (r == 0 && k.moddir)
		r = probe(t, BOOTCFG_FILE, &k.kernel, "%s/vmlinuz", k.moddir);
	if (r == 0 && !k.kernel)
		r = probe(t, BOOTCFG_FILE, &k.kernel, "boot/vmlinuz-%s", kver);
	if (r == 0 && k.kernel && k.moddir)
		r = probe(t, BOOTCFG_FILE, &k.initrd, "%s/initramfs.img", k.moddir);
	if (r == 0 && k.kernel && !k.initrd)
		r = probe(t, BOOTCFG_FILE, &k.initrd, "boot/initrd.img-%s", kver);
	if (r == 0 && k.kernel && !k.initrd)
		r = probe(t, BOOTCFG_FILE, &k.initrd, "boot/initramfs-%s.img", kver);
	if (r < 0 || !k.kernel) {
		kernel_free(&k);
		return r;
	}
	k.kver = strdup(kver);
	if (!k.kver) {
		kernel_free(&k);
		return -ENOMEM;
	}
	if (c->out->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		struct bootcfg_kernel *v = realloc(c->out->v, cap * sizeof(*v));

		if (!v) {
			kernel_free(&k);
			return -ENOMEM;
		}
		c->out->v = v;
		c->cap = cap;
	}
	c->out->v[c->out->n++] = k;
	return 0;
}

static int on_moddir(void *arg, const char *name)
{
	return add_kver(arg, name);
}

static int on_boot(void *arg, const char *name)
{
	if (strncmp(name, "vmlinuz-", 8) != 0)
		return 0;
	return add_kver(arg, name + 8);
}

/* Newest first; equal versions by bytes, so the order is total. */
static int newest_first(const void *pa, const void *pb)
{
	const struct bootcfg_kernel *a = pa, *b = pb;
	int r = bootcfg_kver_cmp(b->kver, a->kver);

	return r ? r : strcmp(b->kver, a->kver);
}

/* Lists the directory named path (symlinks resolved) with fn. */
static int list_dir(const struct bootcfg_tree *t, const char *path,
		    int (*fn)(void *, const char *), void *arg)
{
	char *real = NULL;
	int r = t->resolve(t->ctx, path, &real);

	if (r != BOOTCFG_DIR) {
		free(real);
		return r < 0 ? r : 0;
	}
	r = t->list(t->ctx, real, fn, arg);
	free(real);
	return r == -ENOMEM || r > 0 ? r : 0;	/* unreadable: as if empty */
}

int bootcfg_find_kernels(const struct bootcfg_tree *t, struct bootcfg_kernels *ret)
{
	struct bootcfg_kernels out = { 0 };
	struct find_ctx c = { .t = t, .out = &out };
	int r;

	r = list_dir(t, "usr/lib/modules", on_moddir, &c);
	if (r == 0)
		r = list_dir(t, "boot", on_boot, &c);
	if (r < 0) {
		bootcfg_kernels_free(&out);
		return r;
	}
	if (out.n > 1)
		qsort(out.v, out.n, sizeof(*out.v), newest_first);
	*ret = out;
	return 0;
}

const struct bootcfg_kernel *bootcfg_pick(const struct bootcfg_kernels *k, const char *kver)
{
	for (size_t i = 0; kver && i < k->n; i++)
		if (strcmp(k->v[i].kver, kver) == 0)
			return &k->v[i];
	if (kver)
		return NULL;
	for (size_t i = 0; i < k->n; i++)
		if (k->v[i].initrd)
			return &k->v[i];
	return k->n ? &k->v[0] : NULL;
}

void bootcfg_kernels_free(struct bootcfg_kernels *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++)
		kernel_free(&k->v[i]);
	free(k->v);
	k->v = NULL;
	k->n = 0;
}

/* ------------------------------------------------------------------ */
/* Kernel arguments                                                    */
/* ------------------------------------------------------------------ */

struct kargs {
	char *s;		/* space-separated, NUL-terminated */
	size_t len, cap;
};

/* What one source (or all) says: arguments for the kernel, and those after
 * a "--", which the kernel passes on to init. */
struct kargs_split {
	struct kargs kern, init;
	bool in_init;		/* past this source's "--" */
};

/* Whether arg names what the served disk decides (the root, the boot). */
static bool karg_ours(const char *arg, size_t len)
{
	static const char *const keys[] = { "root", "rootfstype", "rootflags",
					     "initrd", "BOOT_IMAGE" };
	const char *eq = memchr(arg, '=', len);
	size_t klen = eq ? (size_t)(eq - arg) : len;

	if (!eq && ((len == 2 && !memcmp(arg, "ro", 2)) || (len == 2 && !memcmp(arg, "rw", 2))))
		return true;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (eq && strlen(keys[i]) == klen && !memcmp(arg, keys[i], klen))
			return true;
	return false;
}

/* Whether a word of a command line is the kernel's end of its own
 * arguments: "--", quoted or not (the kernel drops a word's enclosing
 * quotes before it looks). */
static bool karg_is_end(const char *w, size_t len)
{
	return (len == 2 && !memcmp(w, "--", 2)) || (len == 4 && !memcmp(w, "\"--\"", 4));
}

static int kargs_append(struct kargs *k, const char *arg, size_t len)
{
	if (len == 0)
		return 0;
	if (k->len + len + 2 > k->cap) {
		size_t cap = (k->cap ? 2 * k->cap : 256) + len;
		char *s = realloc(k->s, cap);

		if (!s)
			return -ENOMEM;
		k->s = s;
		k->cap = cap;
	}
	if (k->len)
		k->s[k->len++] = ' ';
	memcpy(k->s + k->len, arg, len);
	k->len += len;
	k->s[k->len] = '\0';
	return 0;
}

/* One word of a source: the kernel's, unless it names what the disk
 * decides; the first "--" turns to init's, which are kept as they are. */
static int kargs_add(struct kargs_split *k, const char *arg, size_t len)
{
	if (!k->in_init && karg_is_end(arg, len)) {
		k->in_init = true;
		return 0;
	}
	if (k->in_init)
		return kargs_append(&k->init, arg, len);
	return karg_ours(arg, len) ? 0 : kargs_append(&k->kern, arg, len);
}

/* Appends what source src says to k (a "--" of src's own ends at src). */
static int kargs_merge(struct kargs_split *k, const struct kargs_split *src)
{
	int r = kargs_append(&k->kern, src->kern.s, src->kern.len);

	return r < 0 ? r : kargs_append(&k->init, src->init.s, src->init.len);
}

static void kargs_split_free(struct kargs_split *k)
{
	free(k->kern.s);
	free(k->init.s);
}

/* The command line k says: the kernel's arguments, then "-- " and init's
 * if there are any; *ret malloc'ed.  Frees k.  0 or -ENOMEM. */
static int kargs_finish(struct kargs_split *k, char **ret)
{
	int r = 0;

	if (k->init.len) {
		if (asprintf(ret, "%s%s-- %s", k->kern.len ? k->kern.s : "",
			     k->kern.len ? " " : "", k->init.s) < 0)
			r = -ENOMEM;
	} else {
		*ret = k->kern.s ? k->kern.s : strdup("");
		k->kern.s = NULL;
		r = *ret ? 0 : -ENOMEM;
	}
	kargs_split_free(k);
	return r;
}

/* Reads a whole (small) file; *ret NUL-terminated, malloc'ed. */
static int read_all(const struct bootcfg_tree *t, const char *path, char **ret)
{
	char *buf = malloc(KARGS_FILE_MAX + 1);
	long n;

	if (!buf)
		return -ENOMEM;
	n = t->read(t->ctx, path, buf, KARGS_FILE_MAX + 1);
	if (n < 0 || n > KARGS_FILE_MAX) {
		free(buf);
		return n < 0 ? (int)n : -EFBIG;
	}
	buf[n] = '\0';
	*ret = buf;
	return 0;
}

/* --- command-line words ------------------------------------------------ */

/* The kernel's whitespace (isspace()). */
static bool cmdline_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * The next word of a command line from s, as the kernel splits it
 * (whitespace outside "..."): returns its first byte and sets *ret_end to
 * the byte after it, or returns NULL at the end of s.
 */
static const char *cmdline_word(const char *s, const char **ret_end)
{
	bool quoted = false;

	while (cmdline_space(*s))
		s++;
	if (!*s)
		return NULL;
	for (*ret_end = s; **ret_end && (quoted || !cmdline_space(**ret_end)); (*ret_end)++)
		if (**ret_end == '"')
			quoted = !quoted;
	return s;
}

bool bootcfg_quotes_closed(const char *s)
{
	size_t quotes = 0;

	for (; *s; s++)
		quotes += *s == '"';
	return quotes % 2 == 0;
}

/*
 * /etc/kernel/cmdline, read as kernel-install reads it: every run of
 * spaces, tabs and newlines is one space (quoted or not); then words, a
 * "..." holding spaces.  Other control characters are refused, and so is
 * a '"' never closed, which would take every argument after it into its
 * value (--cmdline's too).  s is changed in place.
 */
static int parse_cmdline_file(struct kargs_split *k, char *s, const char **ret_what)
{
	const char *w, *e;
	char *d = s;

	for (const char *p = s; *p;) {
		if (*p == ' ' || *p == '\t' || *p == '\n') {
			while (*p == ' ' || *p == '\t' || *p == '\n')
				p++;
			*d++ = ' ';
		} else if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*ret_what = "contains a control character";
			return -EINVAL;
		} else {
			*d++ = *p++;
		}
	}
	*d = '\0';
	if (!bootcfg_quotes_closed(s)) {
		*ret_what = "has a '\"' that is never closed, which would take "
			    "every argument after it into its value";
		return -EINVAL;
	}
	for (e = s; (w = cmdline_word(e, &e));) {
		int r = kargs_add(k, w, (size_t)(e - w));

		if (r < 0)
			return r;
	}
	return 0;
}

/* --- joining command lines ------------------------------------------- */

/*
 * Finds part's first "--" word outside quotes: sets *ret_at and *ret_after
 * (its first byte and the byte after it) and returns true, else false.
 */
static bool cmdline_find_end(const char *part, const char **ret_at, const char **ret_after)
{
	const char *w, *e;

	for (e = part; (w = cmdline_word(e, &e));) {
		if (karg_is_end(w, (size_t)(e - w))) {
			*ret_at = w;
			*ret_after = e;
			return true;
		}
	}
	return false;
}

/* Appends bytes [b, e) of a part, without the whitespace at either end. */
static int join_add(struct kargs *k, const char *b, const char *e)
{
	while (b < e && cmdline_space(*b))
		b++;
	while (e > b && cmdline_space(e[-1]))
		e--;
	return kargs_append(k, b, (size_t)(e - b));
}

int bootcfg_cmdline_join(const char *const *parts, size_t n, char **ret, size_t *ret_bad)
{
	struct kargs_split k = { 0 };
	bool split = false;
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		const char *at, *after;

		if (parts[i] && !bootcfg_quotes_closed(parts[i])) {
			*ret_bad = i;
			return -EINVAL;
		}
		if (i + 1 < n && parts[i] && cmdline_find_end(parts[i], &at, &after))
			split = true;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		const char *p = parts[i] ? parts[i] : "", *at, *after;

		if (!*p)
			continue;
		if (!split)	/* as given: nothing after it to keep from init */
			r = kargs_append(&k.kern, p, strlen(p));
		else if (cmdline_find_end(p, &at, &after)) {
			r = join_add(&k.kern, p, at);
			if (r == 0)
				r = join_add(&k.init, after, p + strlen(p));
		} else {
			r = join_add(&k.kern, p, p + strlen(p));
		}
	}
	if (r < 0) {
		kargs_split_free(&k);
		return r;
	}
	return kargs_finish(&k, ret);
}

/* --- the TOML subset of bootc's kargs.d files ------------------------- */

struct toml {
	const char *p;
	const char *what;	/* why it failed */
};

/* Skips whitespace, newlines and comments. */
static void toml_space(struct toml *t)
{
	for (;;) {
		while (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r')
			t->p++;
		if (*t->p != '#')
			return;
		while (*t->p && *t->p != '\n')
			t->p++;
	}
}

/* A TOML basic ("...", with \" \\ escapes) or literal ('...') string on
 * one line; the value must be a printable ASCII kernel argument without
 * whitespace or quotes.  *ret points into buf (size bytes). */
static int toml_string(struct toml *t, char *buf, size_t size)
{
	char q = *t->p++;
	size_t n = 0;

	if (q != '"' && q != '\'') {
		t->what = "expected a string";
		return -EINVAL;
	}
	for (;;) {
		char c = *t->p++;

		if (c == q)
			break;
		if (c == '\\' && q == '"') {
			c = *t->p++;
			if (c != '"' && c != '\\') {
				t->what = "unsupported escape in a string";
				return -EINVAL;
			}
		}
		if (c == '\0' || c == '\n') {
			t->what = "unterminated string";
			return -EINVAL;
		}
		if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f || c == '"' || c == '\'') {
			t->what = "a kernel argument with whitespace, a quote or a byte "
				  "outside printable ASCII";
			return -EINVAL;
		}
		if (n + 1 >= size) {
			t->what = "string too long";
			return -EINVAL;
		}
		buf[n++] = c;
	}
	buf[n] = '\0';
	return 0;
}

/*
 * Parses one array of strings ("[ "a", 'b', ]", newlines and comments
 * allowed); calls fn(arg, string) for each.
 */
static int toml_array(struct toml *t, int (*fn)(void *, const char *), void *arg)
{
	char buf[4096];
	int r;

	if (*t->p != '[') {
		t->what = "expected an array";
		return -EINVAL;
	}
	t->p++;
	for (;;) {
		toml_space(t);
		if (*t->p == ']') {
			t->p++;
			return 0;
		}
		r = toml_string(t, buf, sizeof(buf));
		if (r < 0)
			return r;
		r = fn(arg, buf);
		if (r < 0)
			return r;
		toml_space(t);
		if (*t->p == ',')
			t->p++;
		else if (*t->p != ']') {
			t->what = "expected ',' or ']'";
			return -EINVAL;
		}
	}
}

struct kargs_file {
	struct kargs_split args;	/* this file's */
	const char *arch;
	bool arch_listed, arch_match;
};

static int on_karg(void *arg, const char *s)
{
	struct kargs_file *f = arg;

	return kargs_add(&f->args, s, strlen(s));
}

static int on_arch(void *arg, const char *s)
{
	struct kargs_file *f = arg;

	f->arch_listed = true;
	f->arch_match |= strcmp(s, f->arch) == 0;
	return 0;
}

/* One kargs.d file: "kargs = [...]" and "match-architectures = [...]". */
static int parse_kargs_toml(struct kargs_split *k, const char *text, const char *arch,
			    const char **ret_what)
{
	struct kargs_file f = { .arch = arch };
	struct toml t = { .p = text };
	bool seen_kargs = false, seen_arch = false;
	int r = 0;

	for (;;) {
		const char *key;
		size_t klen;

		toml_space(&t);
		if (!*t.p)
			break;
		key = t.p;
		while (is_alpha(*t.p) || is_digit(*t.p) || *t.p == '-' || *t.p == '_')
			t.p++;
		klen = (size_t)(t.p - key);
		while (*t.p == ' ' || *t.p == '\t')
			t.p++;
		if (klen == 0 || *t.p != '=') {
			t.what = "expected KEY = VALUE";
			r = -EINVAL;
			break;
		}
		t.p++;
		while (*t.p == ' ' || *t.p == '\t')
			t.p++;
		if (klen == 5 && !memcmp(key, "kargs", 5) && !seen_kargs) {
			seen_kargs = true;
			r = toml_array(&t, on_karg, &f);
		} else if (klen == 19 && !memcmp(key, "match-architectures", 19) && !seen_arch) {
			seen_arch = true;
			r = toml_array(&t, on_arch, &f);
		} else {
			t.what = "unknown or repeated key (bootc knows kargs and "
				 "match-architectures)";
			r = -EINVAL;
		}
		if (r < 0)
			break;
		while (*t.p == ' ' || *t.p == '\t')
			t.p++;
		if (*t.p == '#')
			continue;
		if (*t.p && *t.p != '\n' && *t.p != '\r') {
			t.what = "expected the end of the line";
			r = -EINVAL;
			break;
		}
	}
	if (r == 0 && !seen_kargs) {
		t.what = "no kargs key";
		r = -EINVAL;
	}
	if (r == 0 && (!f.arch_listed || f.arch_match))
		r = kargs_merge(k, &f.args);
	kargs_split_free(&f.args);
	if (r == -EINVAL)
		*ret_what = t.what;
	return r;
}

struct names {
	char **v;
	size_t n, cap;
};

static int on_name(void *arg, const char *name)
{
	struct names *l = arg;
	size_t len = strlen(name);

	if (len < 6 || strcmp(name + len - 5, ".toml") != 0)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = strdup(name);
	return l->v[l->n++] ? 0 : -ENOMEM;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int bootcfg_kargs(const struct bootcfg_tree *t, const char *arch, char **ret,
		  char **ret_path, const char **ret_what)
{
	struct kargs_split k = { 0 }, file = { 0 };
	struct names files = { 0 };
	char *real = NULL, *text = NULL, *dir = NULL;
	int r;

	*ret_path = NULL;
	*ret_what = NULL;
	r = t->resolve(t->ctx, KERNEL_CMDLINE, &real);
	if (r == BOOTCFG_FILE) {
		r = read_all(t, real, &text);
		if (r == 0)
			r = parse_cmdline_file(&file, text, ret_what);
		if (r == 0)
			r = kargs_merge(&k, &file);
		kargs_split_free(&file);
		if (r < 0 && r != -ENOMEM) {
			*ret_path = real;
			real = NULL;
		}
		free(text);
		text = NULL;
	}
	free(real);
	real = NULL;
	if (r < 0)
		goto out;

	r = t->resolve(t->ctx, KARGS_DIR, &dir);
	if (r == BOOTCFG_DIR)
		r = t->list(t->ctx, dir, on_name, &files);
	if (r < 0 && r != -ENOMEM)
		r = 0;		/* unreadable: as if empty */
	if (r < 0)
		goto out;
	if (files.n)
		qsort(files.v, files.n, sizeof(*files.v), by_name);
	for (size_t i = 0; i < files.n && r >= 0; i++) {
		char *path = NULL;

		if (asprintf(&path, "%s/%s", dir, files.v[i]) < 0) {
			r = -ENOMEM;
			break;
		}
		r = t->resolve(t->ctx, path, &real);
		if (r == BOOTCFG_FILE) {
			r = read_all(t, real, &text);
			if (r == 0)
				r = parse_kargs_toml(&k, text, arch, ret_what);
			free(text);
			text = NULL;
		} else if (r >= 0) {
			r = 0;	/* not a regular file: not a kargs file */
		}
		free(real);
		real = NULL;
		if (r < 0 && r != -ENOMEM)
			*ret_path = path;
		else
			free(path);
	}
out:
	for (size_t i = 0; i < files.n; i++)
		free(files.v[i]);
	free(files.v);
	free(dir);
	if (r < 0) {
		kargs_split_free(&k);
		return r;
	}
	return kargs_finish(&k, ret);
}
