/* SPDX-License-Identifier: MIT */
/*
 * fuzz-kargs.c - libFuzzer target for a tree's kernel arguments
 * (fat/bootcfg.c): bootcfg_kargs() reading /etc/kernel/cmdline and one
 * bootc kargs.d TOML file, and bootcfg_cmdline_join() putting them
 * between "root=... ro" and a --cmdline.  The input is split at NUL bytes
 * into the cmdline file, the TOML file and the --cmdline (missing ones
 * are ""); a tree of those two files answers bootcfg_kargs().
 *
 * Checked, aborting on a violation, for both architectures:
 *   - bootcfg_kargs() gives 0 or -EINVAL, the latter naming one of the
 *     two files and a reason;
 *   - what it gives has no control character, an even number of '"', no
 *     space at either end or twice in a row, and before its first "--"
 *     word none of the arguments the disk decides (root=, ro, ...);
 *   - the join fails exactly when the --cmdline has an odd number of '"'
 *     (naming it), and else, compared word by word (an oracle apart from
 *     the join's own code): the kernel's words are the prefix's, the
 *     tree's and --cmdline's up to each one's first "--", in that order;
 *     then, if the tree has any, "--" and the init words of both.  When
 *     the tree has no "--", the result is the three joined as given.
 *
 * Seeds: tests/fuzz/corpus/kargs/ (tests/fuzz/seeds.py).  make fuzz.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fat/bootcfg.h"
#include "tests/fuzz/fuzz.h"

#define PREFIX		"root=PARTUUID=x rootfstype=erofs ro"
#define CMDLINE_PATH	"etc/kernel/cmdline"
#define KARGS_DIR	"usr/lib/bootc/kargs.d"
#define TOML_PATH	KARGS_DIR "/10-fuzz.toml"

struct files {
	const char *cmdline, *toml;
};

static int t_resolve(void *ctx, const char *path, char **ret_path)
{
	int type = !strcmp(path, KARGS_DIR) ? BOOTCFG_DIR :
		   !strcmp(path, CMDLINE_PATH) || !strcmp(path, TOML_PATH) ? BOOTCFG_FILE :
		   BOOTCFG_NONE;

	(void)ctx;
	if (type != BOOTCFG_NONE && ret_path) {
		*ret_path = strdup(path);
		if (!*ret_path)
			return -ENOMEM;
	}
	return type;
}

static int t_list(void *ctx, const char *dir, int (*fn)(void *arg, const char *name), void *arg)
{
	(void)ctx;
	FZ_CHECK(!strcmp(dir, KARGS_DIR), "listed '%s'", dir);
	return fn(arg, "10-fuzz.toml");
}

static long t_read(void *ctx, const char *path, char *buf, size_t size)
{
	const struct files *f = ctx;
	const char *s = !strcmp(path, CMDLINE_PATH) ? f->cmdline : f->toml;
	size_t n = strlen(s);

	FZ_CHECK(!strcmp(path, CMDLINE_PATH) || !strcmp(path, TOML_PATH), "read '%s'", path);
	n = n < size ? n : size;
	memcpy(buf, s, n);
	return (long)n;
}

/* The kernel's whitespace (isspace()). */
#define SPACES " \t\n\r\v\f"

/* The words of a command line as the kernel splits it (whitespace outside
 * "..."); words[] point into a copy of s (caller frees *ret_copy). */
static size_t split(const char *s, char ***ret_words, char **ret_copy)
{
	char *c = strdup(s), **w = calloc(strlen(s) / 2 + 2, sizeof(*w));
	size_t n = 0;

	FZ_CHECK(c && w, "out of memory");
	for (char *p = c; *p;) {
		bool quoted = false;

		while (*p && strchr(SPACES, *p))
			p++;
		if (!*p)
			break;
		w[n++] = p;
		while (*p && (quoted || !strchr(SPACES, *p))) {
			quoted ^= *p == '"';
			p++;
		}
		if (*p)
			*p++ = '\0';
	}
	*ret_words = w;
	*ret_copy = c;
	return n;
}

static bool is_end(const char *w)
{
	return !strcmp(w, "--") || !strcmp(w, "\"--\"");
}

/* Where words[0..n) has its first "--" (n if none). */
static size_t end_of(char **words, size_t n)
{
	size_t i = 0;

	while (i < n && !is_end(words[i]))
		i++;
	return i;
}

static bool disk_says(const char *w)
{
	static const char *const keys[] = { "root=", "rootfstype=", "rootflags=", "initrd=",
					     "BOOT_IMAGE=" };

	if (!strcmp(w, "ro") || !strcmp(w, "rw"))
		return true;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strncmp(w, keys[i], strlen(keys[i])))
			return true;
	return false;
}

static size_t quotes(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '"';
	return n;
}

static void check_kargs(const char *k)
{
	char **w, *copy;
	size_t n = split(k, &w, &copy), end = end_of(w, n);

	for (const unsigned char *p = (const unsigned char *)k; *p; p++)
		FZ_CHECK(*p >= 0x20 && *p != 0x7f, "kargs '%s': a control character", k);
	FZ_CHECK(quotes(k) % 2 == 0, "kargs '%s': a '\"' never closed", k);
	FZ_CHECK(!strstr(k, "  ") && k[0] != ' ' && (!*k || k[strlen(k) - 1] != ' '),
		 "kargs '%s': spaces", k);
	for (size_t i = 0; i < end; i++)
		FZ_CHECK(!disk_says(w[i]), "kargs '%s': '%s' is the disk's", k, w[i]);
	FZ_CHECK(end == n || end + 1 < n, "kargs '%s': nothing after its \"--\"", k);
	free(w);
	free(copy);
}

static void check_join(const char *k, const char *user)
{
	const char *parts[] = { PREFIX, k, user };
	char *got = NULL, **gw, **kw, **uw, **pw, *c1, *c2, *c3, *c4;
	size_t bad = 99;
	int r = bootcfg_cmdline_join(parts, 3, &got, &bad);

	if (quotes(user) % 2) {
		FZ_CHECK(r == -EINVAL && bad == 2, "join took '%s' (%d, part %zu)", user, r, bad);
		return;
	}
	FZ_CHECK(r == 0, "join failed: %d", r);
	size_t np = split(PREFIX, &pw, &c1), nk = split(k, &kw, &c2), nu = split(user, &uw, &c3);
	size_t ng = split(got, &gw, &c4), ek = end_of(kw, nk), eu = end_of(uw, nu), g = 0;

	if (ek == nk) {
		/* No "--" in the tree's: the three as given. */
		char *want = NULL;
		FZ_CHECK(asprintf(&want, "%s%s%s%s%s", PREFIX, *k ? " " : "", k,
				  *user ? " " : "", user) > 0, "out of memory");
		FZ_CHECK(!strcmp(got, want), "join '%s' + '%s' gave '%s'", k, user, got);
		free(want);
	} else {
		char **lists[] = { pw, kw, uw };
		size_t from[] = { 0, 0, 0 }, to[] = { np, ek, eu };
		size_t after[] = { 0, ek + 1, eu + 1 }, len[] = { 0, nk, nu };
		bool init = ek + 1 < nk || eu + 1 < nu;

		for (int i = 0; i < 3; i++)
			for (size_t j = from[i]; j < to[i]; j++, g++)
				FZ_CHECK(g < ng && !strcmp(gw[g], lists[i][j]),
					 "join '%s' + '%s' gave '%s': word %zu", k, user, got, g);
		if (init) {
			FZ_CHECK(g < ng && !strcmp(gw[g], "--"), "join '%s' + '%s' gave '%s': no --",
				 k, user, got);
			g++;
		}
		for (int i = 1; i < 3; i++)
			for (size_t j = after[i]; j < len[i]; j++, g++)
				FZ_CHECK(g < ng && !strcmp(gw[g], lists[i][j]),
					 "join '%s' + '%s' gave '%s': init word %zu", k, user, got, g);
		FZ_CHECK(g == ng, "join '%s' + '%s' gave '%s': %zu words more", k, user, got,
			 ng - g);
	}
	free(got);
	free(pw);
	free(kw);
	free(uw);
	free(gw);
	free(c1);
	free(c2);
	free(c3);
	free(c4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s[3], *buf = fz_strings(data, size, s, 3);

	if (!buf)
		return 0;

	struct files f = { .cmdline = s[0], .toml = s[1] };
	struct bootcfg_tree t = { .resolve = t_resolve, .list = t_list, .read = t_read, .ctx = &f };
	static const char *const arches[] = { "x86_64", "aarch64" };

	for (int a = 0; a < 2; a++) {
		char *k = NULL, *path = NULL;
		const char *what = NULL;
		int r = bootcfg_kargs(&t, arches[a], &k, &path, &what);

		if (getenv("FUZZ_TRACE"))
			fprintf(stderr, "%s: %d %s %s '%s'\n", arches[a], r, path ? path : "-",
				what ? what : "-", k ? k : "");
		if (r == -EINVAL) {
			FZ_CHECK(path && what && (!strcmp(path, CMDLINE_PATH) ||
						  !strcmp(path, TOML_PATH)),
				 "-EINVAL without the file or the reason");
			FZ_CHECK(!k, "-EINVAL with a result");
			free(path);
			continue;
		}
		FZ_CHECK(r == 0 && k && !path, "bootcfg_kargs: %d", r);
		check_kargs(k);
		check_join(k, s[2]);
		free(k);
	}
	free(buf);
	return 0;
}
