/* SPDX-License-Identifier: MIT */
/*
 * test-bootcfg.c - fat/bootcfg.c, the rule the ESP builder and the
 * launcher share: the version order (checked against the order `sort -V`
 * prints for kernel names and the UAPI Version Format Specification's
 * rules, and for antisymmetry and transitivity on every triple), version
 * names, kernel discovery on in-memory trees (bootc, Debian and classic
 * Fedora layouts, which kernel is picked), and the tree's kernel
 * arguments (/etc/kernel/cmdline, bootc kargs.d TOML, refusals).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fat/bootcfg.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Version order                                                       */
/* ------------------------------------------------------------------ */

/* Each list is ascending; every pair is checked both ways. */
static void check_ascending(const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			int r = bootcfg_kver_cmp(v[i], v[j]);
			int want = i < j ? -1 : i > j;

			if (r != want)
				fail_msg("bootcfg_kver_cmp(\"%s\", \"%s\") = %d, expected %d",
					 v[i], v[j], r, want);
		}
}

static void test_kver_kernels(void **state)
{
	/* The order `sort -V` prints for these names (and systemd-boot's). */
	static const char *const v[] = {
		"5.10.0-28-amd64",
		"6.1.0-9-amd64",
		"6.1.0-9-cloud-amd64",
		"6.1.0-10-amd64",
		"6.1.76",
		"6.9.12-200.fc40.x86_64",
		"6.10.0-0.rc1",
		"6.10.1",
	};
	check_ascending(v, N(v));
	assert_int_equal(bootcfg_kver_cmp("6.1.0-10", "6.1.0-9"), 1);
	assert_int_equal(bootcfg_kver_cmp("6.1.0-9", "6.1.0-10"), -1);
}

static void test_kver_uapi(void **state)
{
	/* '~' before the end, the end before '-', '-' before '^', '^'
	 * before '.', letters before numbers, leading zeros ignored. */
	static const char *const v[] = {
		"122.9", "123~rc1", "123", "123-a", "123-a1", "123-3",
		"123^1", "123.1", "123a", "0124",
	};
	check_ascending(v, N(v));
	assert_int_equal(bootcfg_kver_cmp("0010", "10"), 0);
	assert_int_equal(bootcfg_kver_cmp("6.1+x", "6.1x"), 0);	/* '+' is skipped */
	assert_int_equal(bootcfg_kver_cmp("1_2", "12"), -1);		/* 1, 2 < 12 */
	assert_int_equal(bootcfg_kver_cmp("1.0", "1"), 1);
	assert_int_equal(bootcfg_kver_cmp("", ""), 0);
	assert_int_equal(bootcfg_kver_cmp("~", ""), -1);
	assert_int_equal(bootcfg_kver_cmp("\xff\x80", "a"), -1);	/* skipped bytes */
}

/*
 * Letter runs compare bytewise and, when one is a prefix of the other,
 * the shorter run is older (UAPI Version Format Specification: "ab" is
 * a shorter alphabetical string than "abc", strcmp order): "1.ab" <
 * "1.abc" < "1.abd", and a prefix run followed by more is still ordered
 * by the run first ("1.ab.9" < "1.abc.1").
 */
static void test_kver_alpha_prefix(void **state)
{
	static const char *const v[] = {
		"1.a", "1.ab", "1.ab.9", "1.abc", "1.abc.1", "1.abd", "1.b",
	};
	assert_true(bootcfg_kver_cmp("1.ab", "1.abc") < 0);
	assert_true(bootcfg_kver_cmp("1.abc", "1.ab") > 0);
	assert_true(bootcfg_kver_cmp("6.1.0-rc", "6.1.0-rcx") < 0);
	check_ascending(v, N(v));
}

/* The order is antisymmetric and transitive over every triple of a
 * set that mixes every kind of segment (the fuzz target checks more). */
static void test_kver_order_laws(void **state)
{
	static const char *const v[] = {
		"", "~", "~~", "0", "00", "1", "1~", "1~a", "1-", "1-0", "1^", "1.",
		"1.0", "1a", "a", "a1", "A", "1.a", "1-a", "-", ".", "^", "1..1",
		"1-.1", "6.1.0-10-amd64", "6.1.0-9-amd64", "x-~", "+", "1+1",
	};
	for (size_t i = 0; i < N(v); i++)
		for (size_t j = 0; j < N(v); j++) {
			int ab = bootcfg_kver_cmp(v[i], v[j]);

			assert_int_equal(ab, -bootcfg_kver_cmp(v[j], v[i]));
			for (size_t k = 0; k < N(v); k++) {
				int bc = bootcfg_kver_cmp(v[j], v[k]);

				if (ab <= 0 && bc <= 0 && bootcfg_kver_cmp(v[i], v[k]) > 0)
					fail_msg("not transitive: \"%s\" <= \"%s\" <= \"%s\"",
						 v[i], v[j], v[k]);
			}
		}
}

static void test_kver_names(void **state)
{
	assert_true(bootcfg_kver_ok("6.1.0-10-amd64"));
	assert_true(bootcfg_kver_ok("6.9.12-200.fc40.x86_64"));
	assert_true(bootcfg_kver_ok("linux+debug~1^2"));
	assert_false(bootcfg_kver_ok(""));
	assert_false(bootcfg_kver_ok(".."));
	assert_false(bootcfg_kver_ok("-x"));
	assert_false(bootcfg_kver_ok("6.1."));		/* no FAT name keeps the dot */
	assert_false(bootcfg_kver_ok("6.1 x"));
	assert_false(bootcfg_kver_ok("a/b"));
	assert_false(bootcfg_kver_ok("efi"));
	assert_false(bootcfg_kver_ok("Loader"));
}

/* ------------------------------------------------------------------ */
/* An in-memory tree                                                   */
/* ------------------------------------------------------------------ */

struct node {
	const char *path;	/* relative, no symlinks */
	const char *data;	/* NULL: a directory */
};

struct mtree {
	const struct node *v;
	size_t n;
};

static const struct node *lookup(const struct mtree *t, const char *path)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].path, path))
			return &t->v[i];
	return NULL;
}

static int m_resolve(void *ctx, const char *path, char **ret)
{
	const struct node *n = lookup(ctx, path);

	if (!n)
		return BOOTCFG_NONE;
	if (ret) {
		*ret = strdup(path);
		assert_non_null(*ret);
	}
	return n->data ? BOOTCFG_FILE : BOOTCFG_DIR;
}

static int m_list(void *ctx, const char *dir, int (*fn)(void *, const char *), void *arg)
{
	const struct mtree *t = ctx;
	size_t len = strlen(dir);

	for (size_t i = 0; i < t->n; i++) {
		const char *p = t->v[i].path;

		if (!strncmp(p, dir, len) && p[len] == '/' && !strchr(p + len + 1, '/')) {
			int r = fn(arg, p + len + 1);

			if (r)
				return r;
		}
	}
	return 0;
}

static long m_read(void *ctx, const char *path, char *buf, size_t size)
{
	const struct node *n = lookup(ctx, path);
	size_t len;

	if (!n || !n->data)
		return -ENOENT;
	len = strlen(n->data);
	if (len > size)
		len = size;
	memcpy(buf, n->data, len);
	return (long)len;
}

static struct bootcfg_tree tree_of(struct mtree *t)
{
	return (struct bootcfg_tree){ .resolve = m_resolve, .list = m_list,
				      .read = m_read, .ctx = t };
}

#define TREE(...) \
	const struct node nodes_[] = { __VA_ARGS__ }; \
	struct mtree mt = { nodes_, N(nodes_) }; \
	struct bootcfg_tree t = tree_of(&mt)

/* ------------------------------------------------------------------ */
/* Kernels                                                             */
/* ------------------------------------------------------------------ */

static void test_find_layouts(void **state)
{
	TREE({ "boot", NULL },
	     { "boot/vmlinuz-6.1.0-9-amd64", "k" },
	     { "boot/initrd.img-6.1.0-9-amd64", "i" },
	     { "boot/vmlinuz-6.1.0-10-amd64", "k" },
	     { "boot/initrd.img-6.1.0-10-amd64", "i" },
	     { "boot/config-6.1.0-10-amd64", "c" },
	     { "boot/vmlinuz-bad name", "k" },
	     { "usr", NULL }, { "usr/lib", NULL }, { "usr/lib/modules", NULL },
	     /* bootc: kernel and initramfs beside the modules */
	     { "usr/lib/modules/6.8.5-301.fc40.x86_64", NULL },
	     { "usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz", "k" },
	     { "usr/lib/modules/6.8.5-301.fc40.x86_64/initramfs.img", "i" },
	     /* classic Fedora: vmlinuz beside the modules, initramfs in /boot */
	     { "usr/lib/modules/6.7.0-1.fc39.x86_64", NULL },
	     { "usr/lib/modules/6.7.0-1.fc39.x86_64/vmlinuz", "k" },
	     { "boot/initramfs-6.7.0-1.fc39.x86_64.img", "i" },
	     /* Debian: modules only; the kernel is in /boot */
	     { "usr/lib/modules/6.1.0-10-amd64", NULL },
	     /* modules without any kernel */
	     { "usr/lib/modules/6.20.0-1", NULL });
	struct bootcfg_kernels k;

	assert_int_equal(bootcfg_find_kernels(&t, &k), 0);
	assert_int_equal(k.n, 4);
	assert_string_equal(k.v[0].kver, "6.8.5-301.fc40.x86_64");
	assert_string_equal(k.v[0].kernel, "usr/lib/modules/6.8.5-301.fc40.x86_64/vmlinuz");
	assert_string_equal(k.v[0].initrd, "usr/lib/modules/6.8.5-301.fc40.x86_64/initramfs.img");
	assert_string_equal(k.v[0].moddir, "usr/lib/modules/6.8.5-301.fc40.x86_64");
	assert_string_equal(k.v[1].kver, "6.7.0-1.fc39.x86_64");
	assert_string_equal(k.v[1].kernel, "usr/lib/modules/6.7.0-1.fc39.x86_64/vmlinuz");
	assert_string_equal(k.v[1].initrd, "boot/initramfs-6.7.0-1.fc39.x86_64.img");
	assert_string_equal(k.v[2].kver, "6.1.0-10-amd64");
	assert_string_equal(k.v[2].kernel, "boot/vmlinuz-6.1.0-10-amd64");
	assert_string_equal(k.v[2].initrd, "boot/initrd.img-6.1.0-10-amd64");
	assert_string_equal(k.v[2].moddir, "usr/lib/modules/6.1.0-10-amd64");
	assert_string_equal(k.v[3].kver, "6.1.0-9-amd64");
	assert_null(k.v[3].moddir);
	assert_ptr_equal(bootcfg_pick(&k, NULL), &k.v[0]);
	assert_ptr_equal(bootcfg_pick(&k, "6.1.0-9-amd64"), &k.v[3]);
	assert_null(bootcfg_pick(&k, "6.1.0-11-amd64"));
	bootcfg_kernels_free(&k);
	bootcfg_kernels_free(&k);	/* twice: a no-op */
}

static void test_pick_prefers_initramfs(void **state)
{
	TREE({ "boot", NULL },
	     { "boot/vmlinuz-6.1.0-9-amd64", "k" },
	     { "boot/initrd.img-6.1.0-9-amd64", "i" },
	     { "boot/vmlinuz-6.99.0-1", "k" });
	struct bootcfg_kernels k;
	const struct bootcfg_kernel *p;

	assert_int_equal(bootcfg_find_kernels(&t, &k), 0);
	assert_int_equal(k.n, 2);
	p = bootcfg_pick(&k, NULL);
	assert_string_equal(p->kver, "6.1.0-9-amd64");	/* newest with an initramfs */
	p = bootcfg_pick(&k, "6.99.0-1");
	assert_null(p->initrd);
	bootcfg_kernels_free(&k);
}

static void test_pick_without_initramfs(void **state)
{
	TREE({ "boot", NULL },
	     { "boot/vmlinuz-6.1.0-9-amd64", "k" },
	     { "boot/vmlinuz-6.1.0-10-amd64", "k" });
	struct bootcfg_kernels k;

	assert_int_equal(bootcfg_find_kernels(&t, &k), 0);
	assert_string_equal(bootcfg_pick(&k, NULL)->kver, "6.1.0-10-amd64");
	bootcfg_kernels_free(&k);
}

static void test_find_empty(void **state)
{
	TREE({ "etc", NULL });
	struct bootcfg_kernels k;

	assert_int_equal(bootcfg_find_kernels(&t, &k), 0);
	assert_int_equal(k.n, 0);
	assert_null(bootcfg_pick(&k, NULL));
	bootcfg_kernels_free(&k);
}

/* ------------------------------------------------------------------ */
/* Kernel arguments                                                    */
/* ------------------------------------------------------------------ */

static int kargs_of(struct bootcfg_tree *t, const char *arch, char **ret, char **path,
		    const char **what)
{
	return bootcfg_kargs(t, arch, ret, path, what);
}

static void test_kargs(void **state)
{
	TREE({ "etc", NULL }, { "etc/kernel", NULL },
	     { "etc/kernel/cmdline",
	       "root=UUID=1234 ro quiet \"x=a b\"\trootflags=subvol=@ BOOT_IMAGE=/v\n" },
	     { "usr", NULL }, { "usr/lib", NULL }, { "usr/lib/bootc", NULL },
	     { "usr/lib/bootc/kargs.d", NULL },
	     { "usr/lib/bootc/kargs.d/20-console.toml",
	       "# consoles\nkargs = [\"console=ttyS0,115200n8\", 'console=hvc0']\n" },
	     { "usr/lib/bootc/kargs.d/10-arm.toml",
	       "kargs = [\n  \"arm=yes\", # only there\n]\nmatch-architectures = [\"aarch64\"]\n" },
	     { "usr/lib/bootc/kargs.d/30-x86.toml",
	       "match-architectures = [ \"x86_64\" ]\nkargs = [\"mitigations=auto\"]\n" },
	     { "usr/lib/bootc/kargs.d/README", "not toml" });
	char *k, *path;
	const char *what;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), 0);
	/* root=, ro, rootflags=, BOOT_IMAGE= are the disk's to say. */
	assert_string_equal(k, "quiet \"x=a b\" console=ttyS0,115200n8 console=hvc0 "
			    "mitigations=auto");
	free(k);
	assert_int_equal(kargs_of(&t, "aarch64", &k, &path, &what), 0);
	assert_string_equal(k, "quiet \"x=a b\" arm=yes console=ttyS0,115200n8 console=hvc0");
	free(k);
}

/* What follows a source's first "--" is init's: kept as it is (ro too),
 * and after every source's kernel arguments. */
static void test_kargs_init(void **state)
{
	TREE({ "etc", NULL }, { "etc/kernel", NULL },
	     { "etc/kernel/cmdline", "quiet -- single ro -- x\n" },
	     { "usr", NULL }, { "usr/lib", NULL }, { "usr/lib/bootc", NULL },
	     { "usr/lib/bootc/kargs.d", NULL },
	     { "usr/lib/bootc/kargs.d/10-a.toml", "kargs = [\"a\", \"--\", \"b=1\", \"root=x\"]\n" },
	     { "usr/lib/bootc/kargs.d/20-b.toml", "kargs = [\"c\", \"ro\"]\n" });
	char *k, *path;
	const char *what;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), 0);
	assert_string_equal(k, "quiet a c -- single ro -- x b=1 root=x");
	free(k);
}

/* The kernel drops a word's enclosing quotes: "--" quoted ends it too. */
static void test_kargs_init_quoted(void **state)
{
	TREE({ "etc", NULL }, { "etc/kernel", NULL },
	     { "etc/kernel/cmdline", "\"x=a -- b\" \"--\" single\n" });
	char *k, *path;
	const char *what;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), 0);
	assert_string_equal(k, "\"x=a -- b\" -- single");
	free(k);
}

/* As kernel-install reads the file: runs of spaces, tabs and newlines are
 * one space, inside quotes too. */
static void test_kargs_file_spaces(void **state)
{
	TREE({ "etc", NULL }, { "etc/kernel", NULL },
	     { "etc/kernel/cmdline", "  quiet\t\t\"x=a\n\tb\"\n\nsplash \n" });
	char *k, *path;
	const char *what;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), 0);
	assert_string_equal(k, "quiet \"x=a b\" splash");
	free(k);
}

/* A '"' never closed would take every argument after it, --cmdline's
 * included, into its value. */
static void test_kargs_open_quote(void **state)
{
	TREE({ "etc", NULL }, { "etc/kernel", NULL },
	     { "etc/kernel/cmdline", "quiet x=\"a b\n" });
	char *k = NULL, *path = NULL;
	const char *what = NULL;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), -EINVAL);
	assert_null(k);
	assert_string_equal(path, "etc/kernel/cmdline");
	assert_non_null(strstr(what, "never closed"));
	free(path);
}

static void check_join(const char *p1, const char *p2, const char *want)
{
	const char *parts[] = { "root=x ro", p1, p2 };
	char *got = NULL;
	size_t bad = 99;

	assert_int_equal(bootcfg_cmdline_join(parts, 3, &got, &bad), 0);
	if (strcmp(got, want))
		fail_msg("'%s' + '%s': got '%s', expected '%s'", p1 ? p1 : "(null)",
			 p2 ? p2 : "(null)", got, want);
	free(got);
}

static void test_cmdline_join(void **state)
{
	const char *parts[] = { "a", "b \"c", "d" };
	char *got = NULL;
	size_t bad = 99;

	/* Nothing to move: the parts as given, one space apart. */
	check_join(NULL, "u", "root=x ro u");
	check_join("", NULL, "root=x ro");
	check_join("k  k2", "u  --  v", "root=x ro k  k2 u  --  v");
	/* Init's arguments of a part but the last go to the end. */
	check_join("k -- i", "u", "root=x ro k u -- i");
	check_join("k -- i", "u -- v", "root=x ro k u -- i v");
	check_join("-- i", NULL, "root=x ro -- i");
	check_join("k -- i -- j", "u", "root=x ro k u -- i -- j");
	check_join("\"--\" i", "u", "root=x ro u -- i");
	check_join("k --", "u", "root=x ro k u");
	check_join("x=\"a -- b\"", "u -- v", "root=x ro x=\"a -- b\" u -- v");
	/* An odd number of '"': which part. */
	assert_int_equal(bootcfg_cmdline_join(parts, 3, &got, &bad), -EINVAL);
	assert_int_equal(bad, 1);
	assert_null(got);
}

static void test_kargs_none(void **state)
{
	TREE({ "etc", NULL });
	char *k, *path;
	const char *what;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), 0);
	assert_string_equal(k, "");
	free(k);
}

static void check_bad(const char *text, const char *why)
{
	TREE({ "usr", NULL }, { "usr/lib", NULL }, { "usr/lib/bootc", NULL },
	     { "usr/lib/bootc/kargs.d", NULL },
	     { "usr/lib/bootc/kargs.d/50-bad.toml", text });
	char *k = NULL, *path = NULL;
	const char *what = NULL;

	assert_int_equal(kargs_of(&t, "x86_64", &k, &path, &what), -EINVAL);
	assert_null(k);
	assert_string_equal(path, "usr/lib/bootc/kargs.d/50-bad.toml");
	if (!what || !strstr(what, why))
		fail_msg("'%s': expected a reason with '%s', got '%s'", text, why,
			 what ? what : "(none)");
	free(path);
}

static void test_kargs_bad(void **state)
{
	check_bad("kargs = [\"a b\"]\n", "whitespace");
	check_bad("kargs = [\"a\\\"b\"]\n", "quote");
	check_bad("kargs = [\"a\\nb\"]\n", "escape");
	check_bad("kargs = [\"ab]\n", "unterminated");
	check_bad("kargs = \"ab\"\n", "array");
	check_bad("kargs = [\"a\"] x\n", "end of the line");
	check_bad("kargs = [\"a\" \"b\"]\n", "','");
	check_bad("other = [\"a\"]\n", "unknown");
	check_bad("kargs = [\"a\"]\nkargs = [\"b\"]\n", "repeated");
	check_bad("match-architectures = [\"x86_64\"]\n", "no kargs");
	check_bad("[section]\n", "KEY = VALUE");
	check_bad("kargs = [\"\x01\"]\n", "printable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kver_kernels),
		cmocka_unit_test(test_kver_uapi),
		cmocka_unit_test(test_kver_alpha_prefix),
		cmocka_unit_test(test_kver_order_laws),
		cmocka_unit_test(test_kver_names),
		cmocka_unit_test(test_find_layouts),
		cmocka_unit_test(test_pick_prefers_initramfs),
		cmocka_unit_test(test_pick_without_initramfs),
		cmocka_unit_test(test_find_empty),
		cmocka_unit_test(test_kargs),
		cmocka_unit_test(test_kargs_init),
		cmocka_unit_test(test_kargs_init_quoted),
		cmocka_unit_test(test_kargs_file_spaces),
		cmocka_unit_test(test_kargs_open_quote),
		cmocka_unit_test(test_cmdline_join),
		cmocka_unit_test(test_kargs_none),
		cmocka_unit_test(test_kargs_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
