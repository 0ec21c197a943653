/* SPDX-License-Identifier: MIT */
/*
 * test-esp.c - fat/esp.c (the version order and kernel rule it shares
 * with the launcher are tested in test-bootcfg.c): command-line
 * validation, the PE header check (on headers built here from the PE/COFF
 * layout, and on the real systemd-boot and kernel when installed), name
 * checks, symlink resolution inside the tree model, and esp_build() on
 * small trees made in a temporary directory: newest kernel, --kver,
 * bootc and Debian layouts, no kernel, no boot loader, a loader for the
 * wrong architecture, a bad command line.
 *
 * The file includes fat/esp.c to reach its static helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fat/esp.c"

#define PARTUUID "4f1c5d2a-0b7e-4c3d-9a8b-112233445566"

/* ------------------------------------------------------------------ */
/* Command line, names, PE headers                                     */
/* ------------------------------------------------------------------ */

static void test_cmdline(void **state)
{
	const char *why = NULL;
	char *big;

	assert_int_equal(esp_cmdline_check("", &why), 0);
	assert_int_equal(esp_cmdline_check("console=ttyS0 quiet \"x=a b\" é", &why), 0);
	assert_int_equal(esp_cmdline_check("quiet\nlinux /evil", &why), -EINVAL);
	assert_non_null(strstr(why, "line break"));
	assert_int_equal(esp_cmdline_check("a\rb", &why), -EINVAL);
	assert_int_equal(esp_cmdline_check("a\tb", &why), -EINVAL);
	assert_non_null(strstr(why, "control"));
	assert_int_equal(esp_cmdline_check("a\x7f", &why), -EINVAL);
	assert_int_equal(esp_cmdline_check("x=\"a b\" y=\"c", &why), -EINVAL);
	assert_non_null(strstr(why, "never closed"));

	big = malloc(ESP_CMDLINE_MAX + 2);
	assert_non_null(big);
	memset(big, 'x', ESP_CMDLINE_MAX);
	big[ESP_CMDLINE_MAX] = '\0';
	assert_int_equal(esp_cmdline_check(big, &why), 0);
	strcpy(big + ESP_CMDLINE_MAX, "y");
	assert_int_equal(esp_cmdline_check(big, &why), -EINVAL);
	free(big);
}

static void test_names(void **state)
{
	assert_true(esp_name_ok("6.1.0-10-amd64"));
	assert_true(esp_name_ok("6.9.12-200.fc40.x86_64"));
	assert_true(esp_name_ok("linux+debug~1^2"));
	assert_false(esp_name_ok(""));
	assert_false(esp_name_ok(".."));
	assert_false(esp_name_ok("-x"));
	assert_false(esp_name_ok("6.1 x"));
	assert_false(esp_name_ok("a/b"));
	assert_false(esp_name_ok("a:b"));
	assert_false(esp_name_ok("efi"));
	assert_false(esp_name_ok("Loader"));
}

/* A minimal PE image head: DOS "MZ", e_lfanew = pe_off, "PE\0\0", Machine. */
static void make_pe(uint8_t *buf, size_t len, uint32_t pe_off, uint16_t machine)
{
	memset(buf, 0, len);
	buf[0] = 'M';
	buf[1] = 'Z';
	buf[0x3c] = (uint8_t)pe_off;
	buf[0x3d] = (uint8_t)(pe_off >> 8);
	buf[0x3e] = (uint8_t)(pe_off >> 16);
	buf[0x3f] = (uint8_t)(pe_off >> 24);
	if ((uint64_t)pe_off + 6 <= len) {
		memcpy(buf + pe_off, "PE\0\0", 4);
		buf[pe_off + 4] = (uint8_t)machine;
		buf[pe_off + 5] = (uint8_t)(machine >> 8);
	}
}

static void test_pe_arch(void **state)
{
	uint8_t b[512];
	enum esp_arch a = ESP_ARCH_AUTO;

	make_pe(b, sizeof(b), 0x80, 0x8664);
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), 0);
	assert_int_equal(a, ESP_ARCH_X86_64);

	/* arm64 Image: "ARM\x64" at 0x38, PE header at 0x40. */
	make_pe(b, sizeof(b), 0x40, 0xaa64);
	memcpy(b + 0x38, "ARM\x64", 4);
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), 0);
	assert_int_equal(a, ESP_ARCH_AARCH64);

	make_pe(b, sizeof(b), 0x80, 0x014c);	/* i386 */
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), -ENOEXEC);
	make_pe(b, sizeof(b), 0x1fc, 0x8664);	/* header cut off at the end */
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), -ENOEXEC);
	make_pe(b, sizeof(b), 0xfffffffe, 0x8664);	/* offset overflow */
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), -ENOEXEC);
	make_pe(b, sizeof(b), 0x80, 0x8664);
	assert_int_equal(esp_pe_arch(b, 0x3f, &a), -ENOEXEC);	/* too short */
	b[0] = 0x1f;	/* gzip */
	b[1] = 0x8b;
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), -ENOEXEC);
	make_pe(b, sizeof(b), 0x80, 0x8664);
	b[0x81] = 'X';
	assert_int_equal(esp_pe_arch(b, sizeof(b), &a), -ENOEXEC);
}

/* The real x86-64 systemd-boot and Debian kernel, if this host has them. */
static void test_pe_arch_real(void **state)
{
	const char *paths[] = { "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
				"/usr/lib/systemd/boot/efi/linuxx64.efi.stub" };
	uint8_t b[ESP_HEAD_BYTES];
	int tested = 0;

	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		enum esp_arch a = ESP_ARCH_AUTO;
		if (fd < 0)
			continue;
		ssize_t n = read(fd, b, sizeof(b));
		close(fd);
		assert_true(n > 0);
		assert_int_equal(esp_pe_arch(b, (size_t)n, &a), 0);
		assert_int_equal(a, ESP_ARCH_X86_64);
		tested++;
	}
	if (!tested)
		skip();
}

/* ------------------------------------------------------------------ */
/* Trees on disk                                                       */
/* ------------------------------------------------------------------ */

struct fixture {
	char dir[64];
	struct walk_tree *tree;
	struct region_map map;
	bool have_fat;		/* fat_build() works (the FAT builder exists) */
};

static void put(const char *dir, const char *rel, const void *data, size_t len)
{
	char path[512];

	for (const char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/')) {
		snprintf(path, sizeof(path), "%s/%.*s", dir, (int)(s - rel), rel);
		(void)mkdir(path, 0755);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void put_pe(const char *dir, const char *rel, uint16_t machine)
{
	uint8_t b[1024];

	make_pe(b, sizeof(b), 0x80, machine);
	put(dir, rel, b, sizeof(b));
}

static void link_at(const char *dir, const char *target, const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	assert_int_equal(symlink(target, path), 0);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test-esp.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	region_map_init(&fx->map);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	region_map_free(&fx->map);
	walk_tree_free(fx->tree);
	nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void walk(struct fixture *fx)
{
	struct walk_opts wo = { 0 };
	char *errpath = NULL;
	const char *what = NULL;

	walk_tree_free(fx->tree);
	fx->tree = NULL;
	assert_int_equal(walk_tree(fx->dir, &wo, &fx->tree, &errpath, &what), 0);
	region_map_free(&fx->map);
	region_map_init(&fx->map);
}

/* Runs esp_build(); returns its result, with *res and *what filled. */
static int build(struct fixture *fx, struct esp_opts *o, struct esp_result *res,
		 char **what)
{
	*what = NULL;
	*res = (struct esp_result){ 0 };
	o->root_partuuid = PARTUUID;
	region_map_free(&fx->map);
	region_map_init(&fx->map);
	return esp_build(fx->tree, o, &fx->map, res, what);
}

/* Debian layout with two kernels, plus symlinks that try to leave the tree. */
static void debian_tree(struct fixture *fx)
{
	put_pe(fx->dir, "boot/vmlinuz-6.1.0-9-amd64", 0x8664);
	put_pe(fx->dir, "boot/vmlinuz-6.1.0-10-amd64", 0x8664);
	put(fx->dir, "boot/initrd.img-6.1.0-10-amd64", "initrd", 6);
	put(fx->dir, "boot/config-6.1.0-10-amd64", "x", 1);
	put_pe(fx->dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi", 0x8664);
	link_at(fx->dir, "boot/vmlinuz-6.1.0-10-amd64", "vmlinuz");
	link_at(fx->dir, "/../../../../etc", "escape");
	link_at(fx->dir, "loop2", "loop1");
	link_at(fx->dir, "loop1", "loop2");
	walk(fx);
}

static void test_tree_resolve(void **state)
{
	struct fixture *fx = *state;
	const struct walk_inode *in;

	debian_tree(fx);
	in = tree_lookup(fx->tree, fx->tree->root, "vmlinuz");
	assert_non_null(in);
	char *path = walk_inode_path(in);
	assert_string_equal(path, "boot/vmlinuz-6.1.0-10-amd64");
	free(path);
	/* "/../../.." stays at the root of the tree: there is no etc in it. */
	assert_null(tree_lookup(fx->tree, fx->tree->root, "escape"));
	assert_ptr_equal(tree_lookup(fx->tree, fx->tree->root, "boot/../.."),
			 fx->tree->root);
	assert_null(tree_lookup(fx->tree, fx->tree->root, "loop1"));
	assert_null(tree_lookup(fx->tree, fx->tree->root, "boot/config-6.1.0-10-amd64/x"));
	assert_null(tree_file(fx->tree, fx->tree->root, "boot"));
}

/*
 * Names that are prefixes of their siblings, as in a real /usr: lookups
 * binary-search a directory's children in the tree's order (a name sorts
 * before every longer name it is a prefix of), so each must be found and
 * a prefix or extension that is not there must not.
 */
static void test_tree_prefix_siblings(void **state)
{
	static const char *const names[] = { "bin", "games", "include", "lib", "lib32",
					     "lib64", "libexec", "libx32", "local", "sbin",
					     "share", "src" };
	static const char *const absent[] = { "li", "lib3", "lib6", "libe", "libexec2",
					      "l", "s", "shar", "shared" };
	struct fixture *fx = *state;
	char path[64];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "usr/%s/f", names[i]);
		put(fx->dir, path, "x", 1);
	}
	walk(fx);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct walk_inode *in;
		char *got;

		snprintf(path, sizeof(path), "usr/%s/f", names[i]);
		in = tree_file(fx->tree, fx->tree->root, path);
		if (!in)
			fail_msg("%s not found", path);
		got = walk_inode_path(in);
		assert_string_equal(got, path);
		free(got);
	}
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
		snprintf(path, sizeof(path), "usr/%s", absent[i]);
		if (tree_lookup(fx->tree, fx->tree->root, path))
			fail_msg("%s found", path);
	}
}

static void test_build_debian(void **state)
{
	struct fixture *fx = *state;
	struct esp_opts o = { 0 };
	struct esp_result res;
	char *what;
	int r;

	debian_tree(fx);
	r = build(fx, &o, &res, &what);
	if (r == -ENOSYS || (r < 0 && what && strstr(what, "FAT"))) {
		free(what);
		skip();		/* fat_build() not there yet */
	}
	if (r < 0)
		fail_msg("esp_build: %d: %s", r, what);
	assert_string_equal(res.kver, "6.1.0-10-amd64");
	assert_int_equal(res.arch, ESP_ARCH_X86_64);
	assert_string_equal(res.cmdline, "root=PARTUUID=" PARTUUID " rootfstype=erofs ro");
	assert_true(fx->map.size >= 65525ULL * 512);
	assert_int_equal(fx->map.nsources, 3);	/* kernel, initrd, loader */
	esp_result_free(&res);

	/* --kver picks the older one, which has no initrd. */
	o.kver = "6.1.0-9-amd64";
	o.cmdline = "console=ttyS0 quiet";
	assert_int_equal(build(fx, &o, &res, &what), 0);
	assert_string_equal(res.kver, "6.1.0-9-amd64");
	assert_string_equal(res.cmdline, "root=PARTUUID=" PARTUUID
			    " rootfstype=erofs ro console=ttyS0 quiet");
	assert_int_equal(fx->map.nsources, 2);
	esp_result_free(&res);

	o.kver = "6.1.0-11-amd64";
	assert_int_equal(build(fx, &o, &res, &what), -ENOENT);
	assert_non_null(strstr(what, "--kver"));
	free(what);

	o.kver = "bad/kver";
	assert_int_equal(build(fx, &o, &res, &what), -EINVAL);
	free(what);

	o.kver = NULL;
	o.cmdline = "quiet\ninitrd /x";
	assert_int_equal(build(fx, &o, &res, &what), -EINVAL);
	assert_non_null(strstr(what, "--cmdline"));
	free(what);

	o.cmdline = NULL;
	o.arch = ESP_ARCH_AARCH64;
	assert_int_equal(build(fx, &o, &res, &what), -ENOEXEC);
	assert_non_null(strstr(what, "x86_64"));
	free(what);
}

/* The tree's own kernel arguments go between "root=... ro" and --cmdline. */
static void test_build_kargs(void **state)
{
	struct fixture *fx = *state;
	struct esp_opts o = { .cmdline = "console=ttyS0" };
	struct esp_result res;
	static const char cmdline[] = "root=UUID=x ro quiet\n";
	static const char toml[] = "kargs = [\"mitigations=auto\"]\n"
				   "match-architectures = [\"x86_64\"]\n";
	static const char arm[] = "kargs = [\"arm=1\"]\nmatch-architectures = [\"aarch64\"]\n";
	static const char bad[] = "kargs = [\"a b\"]\n";
	char *what;

	put_pe(fx->dir, "boot/vmlinuz-6.1.0-10-amd64", 0x8664);
	put(fx->dir, "boot/initrd.img-6.1.0-10-amd64", "initrd", 6);
	put_pe(fx->dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi", 0x8664);
	put(fx->dir, "etc/kernel/cmdline", cmdline, sizeof(cmdline) - 1);
	put(fx->dir, "usr/lib/bootc/kargs.d/10-x86.toml", toml, sizeof(toml) - 1);
	put(fx->dir, "usr/lib/bootc/kargs.d/20-arm.toml", arm, sizeof(arm) - 1);
	walk(fx);
	if (build(fx, &o, &res, &what) < 0)
		fail_msg("esp_build: %s", what);
	assert_string_equal(res.cmdline, "root=PARTUUID=" PARTUUID " rootfstype=erofs ro"
			    " quiet mitigations=auto console=ttyS0");
	esp_result_free(&res);

	put(fx->dir, "usr/lib/bootc/kargs.d/30-bad.toml", bad, sizeof(bad) - 1);
	walk(fx);
	assert_int_equal(build(fx, &o, &res, &what), -EINVAL);
	assert_non_null(strstr(what, "usr/lib/bootc/kargs.d/30-bad.toml"));
	assert_non_null(strstr(what, "whitespace"));
	free(what);
}

/*
 * The kernel hands what follows the first "--" to init: the tree's init
 * arguments go after --cmdline, which so still reaches the kernel (the
 * entry's "options" line is res.cmdline); --cmdline's own come after them.
 */
static void test_build_kargs_init(void **state)
{
	struct fixture *fx = *state;
	struct esp_opts o = { .cmdline = "console=ttyS0 -- emergency" };
	struct esp_result res;
	static const char cmdline[] = "quiet -- single ro\n";
	static const char open_quote[] = "quiet x=\"a b\n";
	char *what;

	put_pe(fx->dir, "boot/vmlinuz-6.1.0-10-amd64", 0x8664);
	put_pe(fx->dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi", 0x8664);
	put(fx->dir, "etc/kernel/cmdline", cmdline, sizeof(cmdline) - 1);
	walk(fx);
	if (build(fx, &o, &res, &what) < 0)
		fail_msg("esp_build: %s", what);
	assert_string_equal(res.cmdline, "root=PARTUUID=" PARTUUID " rootfstype=erofs ro"
			    " quiet console=ttyS0 -- single ro emergency");
	esp_result_free(&res);

	/* A '"' never closed, in the tree or in --cmdline, is refused. */
	put(fx->dir, "etc/kernel/cmdline", open_quote, sizeof(open_quote) - 1);
	walk(fx);
	assert_int_equal(build(fx, &o, &res, &what), -EINVAL);
	assert_non_null(strstr(what, "etc/kernel/cmdline"));
	assert_non_null(strstr(what, "never closed"));
	free(what);
	o.cmdline = "console=ttyS0 x=\"";
	assert_int_equal(build(fx, &o, &res, &what), -EINVAL);
	assert_non_null(strstr(what, "--cmdline"));
	assert_non_null(strstr(what, "never closed"));
	free(what);
}

static void test_build_bootc(void **state)
{
	struct fixture *fx = *state;
	struct esp_opts o = { 0 };
	struct esp_result res;
	char *what;
	int r;

	/* bootc keeps kernels under usr/lib/modules; /lib is a symlink. */
	put_pe(fx->dir, "usr/lib/modules/6.8.5-301.fc40.aarch64/vmlinuz", 0xaa64);
	put(fx->dir, "usr/lib/modules/6.8.5-301.fc40.aarch64/initramfs.img", "i", 1);
	put_pe(fx->dir, "usr/lib/modules/6.8.5-301.fc40.aarch64/6.8.5.efi", 0xaa64);
	put_pe(fx->dir, "usr/lib/modules/6.8.5-301.fc40.aarch64/x86.efi", 0x8664);
	put_pe(fx->dir, "usr/lib/modules/6.12.0/vmlinux-but-no-vmlinuz", 0xaa64);
	put_pe(fx->dir, "usr/lib/systemd/boot/efi/systemd-bootaa64.efi", 0xaa64);
	put_pe(fx->dir, "usr/lib/systemd/boot/efi/systemd-bootx64.efi", 0x8664);
	link_at(fx->dir, "usr/lib", "lib");
	walk(fx);

	r = build(fx, &o, &res, &what);
	if (r < 0 && what && strstr(what, "FAT")) {
		free(what);
		skip();
	}
	if (r < 0)
		fail_msg("esp_build: %d: %s", r, what);
	assert_string_equal(res.kver, "6.8.5-301.fc40.aarch64");
	assert_int_equal(res.arch, ESP_ARCH_AARCH64);
	/* kernel, initrd, loader, the arm64 UKI (the x86-64 one is left out) */
	assert_int_equal(fx->map.nsources, 4);
	esp_result_free(&res);
}

static void test_build_missing(void **state)
{
	struct fixture *fx = *state;
	struct esp_opts o = { 0 };
	struct esp_result res;
	char *what;
	char path[128];

	put(fx->dir, "etc/hostname", "x\n", 2);
	walk(fx);
	assert_int_equal(build(fx, &o, &res, &what), -ENOENT);
	assert_non_null(strstr(what, "no kernel"));
	free(what);

	/* A kernel but no systemd-boot. */
	put_pe(fx->dir, "boot/vmlinuz-6.1.0-10-amd64", 0x8664);
	walk(fx);
	assert_int_equal(build(fx, &o, &res, &what), -ENOENT);
	assert_non_null(strstr(what, "--efi-loader"));
	free(what);

	/* --efi-loader for the wrong architecture; then one that is missing. */
	snprintf(path, sizeof(path), "%s/etc/aa64.efi", fx->dir);
	put_pe(fx->dir, "etc/aa64.efi", 0xaa64);
	o.efi_loader = path;
	assert_int_equal(build(fx, &o, &res, &what), -ENOEXEC);
	assert_non_null(strstr(what, "aarch64"));
	free(what);
	snprintf(path, sizeof(path), "%s/etc/none.efi", fx->dir);
	assert_int_equal(build(fx, &o, &res, &what), -ENOENT);
	assert_non_null(strstr(what, "--efi-loader"));
	free(what);

	/* A kernel that is not an EFI executable (gzip). */
	put(fx->dir, "boot/vmlinuz-6.1.0-10-amd64", "\x1f\x8b\x08\x00", 4);
	walk(fx);
	o.efi_loader = NULL;
	assert_int_equal(build(fx, &o, &res, &what), -ENOEXEC);
	assert_non_null(strstr(what, "gzip"));
	free(what);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmdline),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_pe_arch),
		cmocka_unit_test(test_pe_arch_real),
		cmocka_unit_test_setup_teardown(test_tree_prefix_siblings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tree_resolve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_debian, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_kargs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_kargs_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_bootc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_build_missing, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
