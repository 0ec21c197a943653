/* SPDX-License-Identifier: MIT */
/*
 * test-storage.c - overlaywalk/storage.h: the lowerdir= syntax (as the
 * kernel splits it), the `lower` file, the storage.conf subset (in the
 * forms podman, distributions and TOML encoders write), the image lookup
 * in images.json/layers.json, and storage_find_image() on stores built
 * here: the stack it returns, and the clear errors for a missing layer, a
 * broken `lower` file or link, a store being written (a lock held, an
 * incomplete layer), a driver we do not read, a rootless store seen from
 * outside its namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "overlaywalk/storage.h"

/* ---- lowerdir= ---- */

static void expect_split(const char *s, int n, ...)
{
	char **dirs = NULL;
	va_list ap;
	int r = storage_parse_lowerdir(s, &dirs);

	if (r != n)
		fail_msg("'%s': %d, expected %d", s, r, n);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(dirs[i], va_arg(ap, const char *));
	va_end(ap);
	if (n > 0)
		storage_strv_free(dirs, n);
}

static void test_lowerdir(void **state)
{
	char big[WALK_MAX_LAYERS * 2 + 2];

	expect_split("a", 1, "a");
	expect_split("/a/b:c:/d e", 3, "/a/b", "c", "/d e");
	expect_split("a\\:b:c", 2, "a:b", "c");
	expect_split("a\\\\:b", 2, "a\\", "b");
	expect_split("\\a\\,b", 1, "a,b");
	expect_split("", -EINVAL);
	expect_split(":a", -EINVAL);
	expect_split("a:", -EINVAL);
	expect_split("a\\", -EINVAL);
	expect_split("a::b", -EOPNOTSUPP);
	expect_split("a:b::c::d", -EOPNOTSUPP);
	expect_split("a:::b", -EOPNOTSUPP);
	assert_int_equal(storage_parse_lowerdir(NULL, NULL), -EINVAL);
	/* At most WALK_MAX_LAYERS layers. */
	for (int i = 0; i < WALK_MAX_LAYERS; i++) {
		big[2 * i] = 'x';
		big[2 * i + 1] = ':';
	}
	big[2 * WALK_MAX_LAYERS - 1] = '\0';
	{
		char **dirs = NULL;

		assert_int_equal(storage_parse_lowerdir(big, &dirs), WALK_MAX_LAYERS);
		storage_strv_free(dirs, WALK_MAX_LAYERS);
	}
	big[2 * WALK_MAX_LAYERS - 1] = ':';
	big[2 * WALK_MAX_LAYERS] = 'y';
	big[2 * WALK_MAX_LAYERS + 1] = '\0';
	expect_split(big, -E2BIG);
}

/* ---- the lower file ---- */

static void expect_lower(const char *s, int n, ...)
{
	char **links = NULL;
	va_list ap;
	int r = storage_parse_lower(s, strlen(s), &links);

	if (r != n)
		fail_msg("'%s': %d, expected %d", s, r, n);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(links[i], va_arg(ap, const char *));
	va_end(ap);
	if (r >= 0)
		storage_strv_free(links, n);
}

static void test_lower_file(void **state)
{
	expect_lower("l/BV2SDTD2FWWKCOZ4RCRTJUMNIC:l/VEMCGH4DYI52WJ7ZGMMFPNVDWR", 2,
		     "BV2SDTD2FWWKCOZ4RCRTJUMNIC", "VEMCGH4DYI52WJ7ZGMMFPNVDWR");
	expect_lower("l/A\n", 1, "A");
	expect_lower("", 0);
	expect_lower("l/", -EBADMSG);
	expect_lower("x/ABC", -EBADMSG);
	expect_lower("l/A:", -EBADMSG);
	expect_lower("l/A::l/B", -EBADMSG);
	expect_lower("l/../x", -EBADMSG);
	expect_lower("l/A/B", -EBADMSG);
	expect_lower("/l/A", -EBADMSG);
	expect_lower("l/A\n\n", -EBADMSG);
	expect_lower("l/A l/B", -EBADMSG);
}

/* ---- storage.conf ---- */

static struct storage_conf parse_ok(const char *text)
{
	struct storage_conf c = { 0 };
	unsigned int line = 0;
	int r = storage_conf_parse(text, strlen(text), &c, &line);

	if (r < 0)
		fail_msg("parse failed at line %u: %d", line, r);
	return c;
}

static void parse_bad(const char *text, unsigned int want_line)
{
	struct storage_conf c = { 0 };
	unsigned int line = 0;

	assert_int_equal(storage_conf_parse(text, strlen(text), &c, &line), -EBADMSG);
	if (line != want_line)
		fail_msg("error reported at line %u, expected %u:\n%s", line, want_line, text);
	storage_conf_free(&c);
}

/* The shape of Fedora's and upstream's /usr/share/containers/storage.conf. */
static const char distro_conf[] =
	"# This file is the configuration file for all tools\n"
	"# that use the containers/storage library.\n"
	"#\n"
	"[storage]\n"
	"\n"
	"# Default Storage Driver, Must be set for proper operation.\n"
	"driver = \"overlay\"\n"
	"\n"
	"# Temporary storage location\n"
	"runroot = \"/run/containers/storage\"\n"
	"\n"
	"# Primary Read/Write location of container storage\n"
	"graphroot = \"/var/lib/containers/storage\"\n"
	"\n"
	"# rootless_storage_path = \"$HOME/.local/share/containers/storage\"\n"
	"\n"
	"# Transient store mode makes all container metadata be saved in temporary storage\n"
	"transient_store = false\n"
	"\n"
	"[storage.options]\n"
	"# Storage options to be passed to underlying storage drivers\n"
	"\n"
	"# AdditionalImageStores is used to pass paths to additional Read/Only image stores\n"
	"additionalimagestores = [\n"
	"]\n"
	"\n"
	"pull_options = {enable_partial_images = \"false\", use_hard_links = \"false\", "
	"ostree_repos=\"\"}\n"
	"\n"
	"# remap-uids = \"0:1668442479:65536\"\n"
	"\n"
	"[storage.options.overlay]\n"
	"# mount_program = \"/usr/bin/fuse-overlayfs\"\n"
	"\n"
	"mountopt = \"nodev,metacopy=on\"\n"
	"\n"
	"# force_mask = \"\"\n"
	"\n"
	"[storage.options.thinpool]\n"
	"# autoextend_percent = \"20\"\n";

/* What containers-storage's TOML encoder writes (indented tables). */
static const char encoded_conf[] =
	"[storage]\n"
	"  driver = \"overlay\"\n"
	"  runroot = \"/run/user/1000/containers\"\n"
	"  graphroot = \"/home/u/.local/share/containers/storage\"\n"
	"  [storage.options]\n"
	"    size = \"\"\n"
	"    remap-uids = \"\"\n"
	"    ignore_chown_errors = \"\"\n"
	"    mount_program = \"/usr/bin/fuse-overlayfs\"\n"
	"    mountopt = \"\"\n"
	"    [storage.options.thinpool]\n"
	"      autoextend_percent = \"\"\n";

static void test_conf_forms(void **state)
{
	struct storage_conf c;

	c = parse_ok(distro_conf);
	assert_string_equal(c.driver, "overlay");
	assert_string_equal(c.graphroot, "/var/lib/containers/storage");
	assert_null(c.rootless_storage_path);
	assert_null(c.mount_program);
	assert_null(c.force_mask);
	assert_int_equal(c.nimage_stores, 0);
	storage_conf_free(&c);

	c = parse_ok(encoded_conf);
	assert_string_equal(c.driver, "overlay");
	assert_string_equal(c.graphroot, "/home/u/.local/share/containers/storage");
	assert_string_equal(c.mount_program, "/usr/bin/fuse-overlayfs");
	storage_conf_free(&c);

	/* The one line the fact sheet wrote for a rootless user (§3.1). */
	c = parse_ok("[storage]\ndriver = \"overlay\"\n");
	assert_string_equal(c.driver, "overlay");
	assert_null(c.graphroot);
	storage_conf_free(&c);

	/* Literal, escaped and multi-line strings; quoted and dotted keys;
	 * CRLF; a byte order mark; an array over lines with comments. */
	c = parse_ok("\xef\xbb\xbf[storage]\r\n"
		     "\"driver\" = 'vfs'\r\n"
		     "graphroot = \"/a\\u00e9\\\\b\\t\" # a comment\r\n"
		     "options.overlay.mount_program = '''\n/usr/bin/fuse-overlayfs'''\n"
		     "options.additionalimagestores = [ # stores\n"
		     "  \"/s1\",\n"
		     "  '/s2', # the second\n"
		     "]\n"
		     "rootless_storage_path = \"\"\"\n$HOME/x\\\n   /y\"\"\"\n");
	assert_string_equal(c.driver, "vfs");
	assert_string_equal(c.graphroot, "/a\xc3\xa9\\b\t");
	assert_string_equal(c.mount_program, "/usr/bin/fuse-overlayfs");
	assert_int_equal(c.nimage_stores, 2);
	assert_string_equal(c.image_stores[0], "/s1");
	assert_string_equal(c.image_stores[1], "/s2");
	assert_string_equal(c.rootless_storage_path, "$HOME/x/y");
	storage_conf_free(&c);

	/* Top-level dotted keys; the overlay table's options win over
	 * [storage.options]' (either order); force_mask as text or octal. */
	c = parse_ok("storage.driver = \"overlay2\"\n"
		     "[storage.options.overlay]\nmount_program = \"/ovl\"\nforce_mask = \"shared\"\n"
		     "[storage.options]\nmount_program = \"/plain\"\nforce_mask = 0700\n");
	assert_string_equal(c.driver, "overlay2");
	assert_string_equal(c.mount_program, "/ovl");
	assert_string_equal(c.force_mask, "shared");
	storage_conf_free(&c);
	c = parse_ok("[storage.options]\nforce_mask = 0700\nmount_program = \"/plain\"\n");
	assert_string_equal(c.force_mask, "0700");
	assert_string_equal(c.mount_program, "/plain");
	storage_conf_free(&c);

	/* Things we read past: numbers, booleans, dates, nested arrays,
	 * inline tables, arrays of tables, keys of other tables. */
	c = parse_ok("title = \"x\"\n"
		     "n = -1_000\nf = 6.02e+23\nb = true\nd = 1979-05-27T07:32:00Z\n"
		     "d2 = 1979-05-27 07:32:00\n"
		     "nested = [[1, 2], [\"a\", {x = 1}], []]\n"
		     "[[storage.bins]]\ndriver = \"not ours\"\n"
		     "[other]\ngraphroot = \"/not/ours\"\n"
		     "[storage]\ngraphroot = \"/ours\"\n");
	assert_string_equal(c.graphroot, "/ours");
	assert_null(c.driver);
	storage_conf_free(&c);

	/* A later value replaces an earlier one (also from another file). */
	c = parse_ok("[storage]\ndriver = \"a\"\n");
	{
		unsigned int line;

		assert_int_equal(storage_conf_parse("[storage]\ndriver = \"b\"\n", 22, &c, &line), 0);
	}
	assert_string_equal(c.driver, "b");
	storage_conf_free(&c);
}

static void test_conf_errors(void **state)
{
	parse_bad("[storage]\ndriver = \"overlay\n", 2);
	parse_bad("[storage]\ndriver =\n", 2);
	parse_bad("[storage]\ndriver = \"a\" junk\n", 2);
	parse_bad("[storage]\n\n\ndriver = \"\\q\"\n", 4);
	parse_bad("[storage\ndriver = \"a\"\n", 1);
	parse_bad("[storage]\ngraphroot = [\"a\", \"b\"]\n", 2);
	parse_bad("[storage]\ndriver = 'a\nb'\n", 2);
	parse_bad("[storage]\ndriver = \"\\u0000\"\n", 2);
	parse_bad("[storage]\ndriver = \"\\ud800\"\n", 2);
	parse_bad("x = [1, 2\n", 2);
	parse_bad("x = {a = 1\n", 1);
	parse_bad("a.b.c.d.e.f.g.h.i = 1\n", 1);
	parse_bad("= 1\n", 1);
	parse_bad("x = \"a\x01\"\n", 1);
	parse_bad("# a comment with a \x01 control character\n", 1);
	parse_bad("[storage]\ndriver = \"a\"\x7f\n", 2);
}

/* storage_conf_load() with $CONTAINERS_STORAGE_CONF, and as a rootless
 * user with ~/.config/containers/storage.conf. */
static void test_conf_load(void **state)
{
	char dir[] = "/tmp/test-storage-conf.XXXXXX", p[PATH_MAX];
	struct storage_conf c;
	char *root = NULL, *path = NULL, *err = NULL;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/storage.conf", dir);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs("[storage]\ndriver = \"overlay\"\ngraphroot = \"$HOME/store-$UID\"\n"
	      "rootless_storage_path = \"/rl/$UID\"\n", f);
	fclose(f);
	setenv("CONTAINERS_STORAGE_CONF", p, 1);
	setenv("HOME", "/home/tester", 1);
	setenv("_CONTAINERS_ROOTLESS_UID", "0", 1);
	assert_int_equal(storage_conf_load(&c, &root, &path, &err), 0);
	assert_string_equal(root, "/home/tester/store-0");
	assert_string_equal(path, p);
	assert_string_equal(c.driver, "overlay");
	storage_conf_free(&c);
	free(root);
	free(path);

	/* The same file for a rootless user: its graphroot still wins. */
	setenv("_CONTAINERS_ROOTLESS_UID", "1000", 1);
	assert_int_equal(storage_conf_load(&c, &root, &path, &err), 0);
	assert_string_equal(root, "/home/tester/store-1000");
	storage_conf_free(&c);
	free(root);
	free(path);

	/* A rootless user's own file, without graphroot. */
	unsetenv("CONTAINERS_STORAGE_CONF");
	snprintf(p, sizeof(p), "%s/containers", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/containers/storage.conf", dir);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs("[storage]\ndriver = \"overlay\"\n", f);
	fclose(f);
	setenv("XDG_CONFIG_HOME", dir, 1);
	setenv("XDG_DATA_HOME", "/xdg/data", 1);
	assert_int_equal(storage_conf_load(&c, &root, &path, &err), 0);
	assert_string_equal(path, p);
	if (access("/etc/containers/storage.conf", F_OK) < 0 &&
	    access("/usr/share/containers/storage.conf", F_OK) < 0)
		assert_string_equal(root, "/xdg/data/containers/storage");
	storage_conf_free(&c);
	free(root);
	free(path);

	/* A file we cannot read names itself and the line. */
	f = fopen(p, "w");
	assert_non_null(f);
	fputs("[storage]\n\ndriver = \"overlay\n", f);
	fclose(f);
	assert_int_equal(storage_conf_load(&c, &root, &path, &err), -EBADMSG);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "line 3"));
	free(err);
	err = NULL;

	unlink(p);
	snprintf(p, sizeof(p), "%s/containers", dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/storage.conf", dir);
	unlink(p);
	rmdir(dir);
	unsetenv("XDG_CONFIG_HOME");
	unsetenv("XDG_DATA_HOME");
	unsetenv("_CONTAINERS_ROOTLESS_UID");
}

/* ---- images.json and layers.json ---- */

#define ID_A "aaaa000000000000000000000000000000000000000000000000000000000001"
#define ID_B "aaab000000000000000000000000000000000000000000000000000000000002"
#define ID_C "cccc000000000000000000000000000000000000000000000000000000000003"
#define ID_D "dddd000000000000000000000000000000000000000000000000000000000004"
#define ID_E "eeee000000000000000000000000000000000000000000000000000000000005"
#define ID_F "ffff000000000000000000000000000000000000000000000000000000000006"
#define DIG1 "sha256:1111000000000000000000000000000000000000000000000000000000000000"
#define DIG2 "sha256:2222000000000000000000000000000000000000000000000000000000000000"

static const char images_json[] =
	"[{\"id\":\"" ID_A "\",\"digest\":\"" DIG1 "\",\"names\":[\"localhost/base:latest\"],"
	"\"layer\":\"L1\"},"
	" {\"id\":\"" ID_B "\",\"names\":[\"registry.example.org/ns/app:1.0\","
	"\"docker.io/library/app:latest\"],\"layer\":\"L3\",\"digests\":[\"" DIG2 "\"]},"
	" {\"id\":\"" ID_C "\",\"names\":[\"quay.io/x/app:latest\"],\"layer\":\"L3\","
	"\"unknown\":{\"kept\":[1,2]}},"
	" {\"id\":\"" ID_D "\",\"layer\":\"L2\"},"
	" {\"id\":\"" ID_E "\",\"names\":[\"localhost/database:latest\"],\"layer\":\"L1\"},"
	" {\"id\":\"" ID_F "\",\"names\":[\"localhost:5000/ns/svc:latest\"],\"layer\":\"L2\"}]";

static const char layers_json[] =
	"[{\"id\":\"L1\",\"created\":\"2024-01-01T00:00:00Z\",\"diff-size\":3},"
	" {\"id\":\"L2\",\"parent\":\"L1\",\"uidset\":[0]},"
	" {\"id\":\"L3\",\"parent\":\"L2\",\"flags\":{\"incomplete\":false}},"
	" {\"id\":\"Lx\",\"parent\":\"L3\",\"flags\":{\"incomplete\":true}},"
	" {\"id\":\"Lloop1\",\"parent\":\"Lloop2\"},{\"id\":\"Lloop2\",\"parent\":\"Lloop1\"},"
	" {\"id\":\"Lorphan\",\"parent\":\"Lmissing\"},{\"id\":\"../evil\"}]";

static int resolve(const char *ref, const char *images, const char *layers,
		   struct storage_chain *c, char **err)
{
	*err = NULL;
	return storage_json_resolve(images, strlen(images), layers, strlen(layers), ref, c, err);
}

static void expect_image(const char *ref, const char *id, const char *name, size_t nlayers)
{
	struct storage_chain c;
	char *err;
	int r = resolve(ref, images_json, layers_json, &c, &err);

	if (r < 0)
		fail_msg("'%s': %d (%s)", ref, r, err ? err : "");
	assert_string_equal(c.image_id, id);
	if (name)
		assert_string_equal(c.image_name, name);
	else
		assert_null(c.image_name);
	assert_int_equal(c.nlayers, nlayers);
	storage_chain_free(&c);
}

static void expect_no_image(const char *ref, int want, const char *msg_part)
{
	struct storage_chain c;
	char *err;
	int r = resolve(ref, images_json, layers_json, &c, &err);

	if (r != want)
		fail_msg("'%s': %d, expected %d (%s)", ref, r, want, err ? err : "");
	assert_non_null(err);
	if (!strstr(err, msg_part))
		fail_msg("'%s': message '%s' lacks '%s'", ref, err, msg_part);
	free(err);
}

static void test_json_lookup(void **state)
{
	struct storage_chain c;
	char *err;

	/* Names, tags, short names, ids, digests. */
	expect_image("localhost/base:latest", ID_A, "localhost/base:latest", 1);
	expect_image("localhost/base", ID_A, "localhost/base:latest", 1);
	expect_image("base", ID_A, "localhost/base:latest", 1);
	expect_image("app:1.0", ID_B, "registry.example.org/ns/app:1.0", 3);
	expect_image("ns/app:1.0", ID_B, "registry.example.org/ns/app:1.0", 3);
	expect_image("docker.io/library/app", ID_B, "docker.io/library/app:latest", 3);
	/* docker.io/NAME is docker.io/library/NAME, as podman normalises it. */
	expect_image("docker.io/app", ID_B, "docker.io/library/app:latest", 3);
	expect_image("docker.io/app:latest", ID_B, "docker.io/library/app:latest", 3);
	expect_image(ID_C, ID_C, NULL, 3);
	expect_image("sha256:" ID_C, ID_C, NULL, 3);
	expect_image("cccc", ID_C, NULL, 3);
	expect_image(DIG1, ID_A, NULL, 1);
	expect_image("localhost/base@" DIG1, ID_A, "localhost/base:latest", 1);
	/* NAME:TAG@DIGEST: the digest decides. */
	expect_image("localhost/base:latest@" DIG1, ID_A, "localhost/base:latest", 1);
	expect_image("localhost/base:other@" DIG1, ID_A, "localhost/base:latest", 1);
	expect_image("docker.io/app@" DIG2, ID_B, "docker.io/library/app:latest", 3);
	expect_image("app@" DIG2, ID_B, "registry.example.org/ns/app:1.0", 3);
	expect_image("dddd", ID_D, NULL, 2);
	/* A short name matches only a whole last component: "base" is not
	 * "localhost/database:latest" (else it would be ambiguous). */
	expect_image("base", ID_A, "localhost/base:latest", 1);
	expect_image("database", ID_E, "localhost/database:latest", 1);
	expect_no_image("ase", -ENOENT, "no image 'ase'");
	/* A registry's port is not a tag: an untagged name with one gets
	 * ":latest". */
	expect_image("localhost:5000/ns/svc", ID_F, "localhost:5000/ns/svc:latest", 2);
	expect_image("localhost:5000/ns/svc:latest", ID_F, "localhost:5000/ns/svc:latest", 2);

	/* Chains: top first. */
	assert_int_equal(resolve("ns/app:1.0", images_json, layers_json, &c, &err), 0);
	assert_string_equal(c.layer_ids[0], "L3");
	assert_string_equal(c.layer_ids[1], "L2");
	assert_string_equal(c.layer_ids[2], "L1");
	storage_chain_free(&c);

	/* Not found, ambiguous. */
	expect_no_image("nothing", -ENOENT, "'localhost/base:latest'");
	expect_no_image("localhost/app", -ENOENT, "no image 'localhost/app'");
	expect_no_image("app", -ENOTUNIQ, "more than one image");
	expect_no_image("aaa", -ENOTUNIQ, "more than one image");
	expect_no_image("registry.example.org/app", -ENOENT, "no image");
	expect_no_image("", -ENOENT, "empty");

	/* Broken chains and files. */
	{
		static const char imgs[] =
			"[{\"id\":\"" ID_A "\",\"names\":[\"inc\"],\"layer\":\"Lx\"},"
			" {\"id\":\"" ID_B "\",\"names\":[\"loop\"],\"layer\":\"Lloop1\"},"
			" {\"id\":\"" ID_C "\",\"names\":[\"orphan\"],\"layer\":\"Lorphan\"},"
			" {\"id\":\"" ID_D "\",\"names\":[\"evil\"],\"layer\":\"../evil\"},"
			" {\"id\":\"eeee\",\"names\":[\"nolayer\"]},"
			" {\"id\":\"ffff\",\"names\":[\"gone\"],\"layer\":\"Lgone\"}]";

		assert_int_equal(resolve("inc", imgs, layers_json, &c, &err), -EBUSY);
		assert_non_null(strstr(err, "'Lx' is incomplete"));
		free(err);
		assert_int_equal(resolve("loop", imgs, layers_json, &c, &err), -EBADMSG);
		assert_non_null(strstr(err, "loop"));
		free(err);
		assert_int_equal(resolve("orphan", imgs, layers_json, &c, &err), -EBADMSG);
		assert_non_null(strstr(err, "'Lmissing' (a parent) is not in layers.json"));
		free(err);
		assert_int_equal(resolve("evil", imgs, layers_json, &c, &err), -EBADMSG);
		assert_non_null(strstr(err, "not a plain name"));
		free(err);
		assert_int_equal(resolve("nolayer", imgs, layers_json, &c, &err), -ENOENT);
		assert_non_null(strstr(err, "has no layers"));
		free(err);
		assert_int_equal(resolve("gone", imgs, layers_json, &c, &err), -EBADMSG);
		free(err);
	}
	assert_int_equal(resolve("x", "[{", layers_json, &c, &err), -EBADMSG);
	assert_non_null(strstr(err, "images.json"));
	free(err);
	assert_int_equal(resolve("x", "{}", layers_json, &c, &err), -EBADMSG);
	free(err);
	assert_int_equal(resolve("base", images_json, "[1", &c, &err), -EBADMSG);
	assert_non_null(strstr(err, "layers.json"));
	free(err);
	assert_int_equal(resolve("base", "[{\"id\":3}]", layers_json, &c, &err), -EBADMSG);
	free(err);
	assert_int_equal(resolve("base", "[{\"id\":\"a\",\"names\":\"base\"}]", layers_json,
				 &c, &err), -EBADMSG);
	free(err);
	assert_int_equal(resolve("base", "[{\"id\":\"a\",\"names\":[\"base\"],\"layer\":\"L1\"},"
				 "{\"id\":\"a\"}]", "[{\"id\":\"L1\",\"id\":\"L2\"}]", &c, &err),
			 -EBADMSG);
	free(err);
}

/* ---- storage_find_image() on stores built here ---- */

static char store[64];

static void write_at(const char *rel, const char *text)
{
	char p[PATH_MAX];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", store, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void mkdir_at(const char *rel)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", store, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static void link_at(const char *target, const char *rel)
{
	char p[PATH_MAX];

	snprintf(p, sizeof(p), "%s/%s", store, rel);
	assert_int_equal(symlink(target, p), 0);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

/*
 * An overlay store with one image "localhost/three:latest" of three
 * layers, T (top) over M over B, and their links.
 */
static int setup_store(void **state)
{
	strcpy(store, "/tmp/test-storage.XXXXXX");
	assert_non_null(mkdtemp(store));
	mkdir_at("overlay-images");
	mkdir_at("overlay-layers");
	mkdir_at("overlay");
	mkdir_at("overlay/l");
	write_at("overlay-images/images.lock", "");
	write_at("overlay-layers/layers.lock", "");
	write_at("overlay-images/images.json",
		 "[{\"id\":\"" ID_A "\",\"names\":[\"localhost/three:latest\"],\"layer\":\"T\"}]");
	write_at("overlay-layers/layers.json",
		 "[{\"id\":\"B\"},{\"id\":\"M\",\"parent\":\"B\"},{\"id\":\"T\",\"parent\":\"M\"}]");
	for (const char *const *id = (const char *const[]){ "B", "M", "T", NULL }; *id; id++) {
		char rel[64], target[64];

		snprintf(rel, sizeof(rel), "overlay/%s", *id);
		mkdir_at(rel);
		snprintf(rel, sizeof(rel), "overlay/%s/diff", *id);
		mkdir_at(rel);
		snprintf(rel, sizeof(rel), "overlay/l/LINK%s", *id);
		snprintf(target, sizeof(target), "../%s/diff", *id);
		link_at(target, rel);
	}
	write_at("overlay/T/lower", "l/LINKM:l/LINKB");
	write_at("overlay/M/lower", "l/LINKB");
	write_at("overlay/.has-mount-program", "false");
	unsetenv("STORAGE_DRIVER");
	return 0;
}

static int teardown_store(void **state)
{
	return nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int find(const char *ref, struct storage_image *img, char **err)
{
	struct storage_opts o = { .storage_root = store, .lock_timeout_ms = 300 };

	return storage_find_image(ref, &o, img, err);
}

static void expect_find_fails(const char *ref, int want, const char *msg_part)
{
	struct storage_image img;
	char *err = NULL;
	int r = find(ref, &img, &err);

	if (r != want)
		fail_msg("'%s': %d, expected %d (%s)", ref, r, want, err ? err : "");
	assert_non_null(err);
	if (!strstr(err, msg_part))
		fail_msg("message '%s' lacks '%s'", err, msg_part);
	free(err);
}

static void test_store_ok(void **state)
{
	struct storage_image img;
	char *err = NULL, want[PATH_MAX];

	assert_int_equal(find("three", &img, &err), 0);
	assert_null(err);
	assert_string_equal(img.driver, "overlay");
	assert_string_equal(img.chain.image_id, ID_A);
	assert_string_equal(img.chain.image_name, "localhost/three:latest");
	assert_int_equal(img.nlayer_dirs, 3);
	snprintf(want, sizeof(want), "%s/overlay/T/diff", store);
	assert_string_equal(img.layer_dirs[0], want);
	snprintf(want, sizeof(want), "%s/overlay/B/diff", store);
	assert_string_equal(img.layer_dirs[2], want);
	assert_false(img.aufs_whiteouts);
	assert_true(img.lock_fds[0] >= 0 && img.lock_fds[1] >= 0);
	storage_image_unlock(&img);
	assert_int_equal(img.lock_fds[0], -1);
	storage_image_free(&img);

	/* diff1 after its diff; a mount program's store. */
	mkdir_at("overlay/M/diff1");
	write_at("overlay/.has-mount-program", "true");
	assert_int_equal(find(ID_A, &img, &err), 0);
	assert_int_equal(img.nlayer_dirs, 4);
	snprintf(want, sizeof(want), "%s/overlay/M/diff1", store);
	assert_string_equal(img.layer_dirs[2], want);
	assert_true(img.aufs_whiteouts);
	storage_image_free(&img);
}

static void test_store_broken(void **state)
{
	char p[PATH_MAX];

	expect_find_fails("nothing", -ENOENT, "no image 'nothing' (the store has 1: "
			  "'localhost/three:latest')");

	/* A missing layer directory. */
	snprintf(p, sizeof(p), "%s/overlay/M/diff", store);
	assert_int_equal(rename(p, strcat(strcpy((char[PATH_MAX]){ 0 }, p), ".gone")), 0);
	expect_find_fails("three", -ENOENT, "layer 'M' of image 'localhost/three:latest': '");
	assert_int_equal(rename(strcat(strcpy((char[PATH_MAX]){ 0 }, p), ".gone"), p), 0);

	/* A layer's diff that is a symlink (to /etc) is refused, not followed. */
	assert_int_equal(rename(p, strcat(strcpy((char[PATH_MAX]){ 0 }, p), ".real")), 0);
	link_at("/etc", "overlay/M/diff");
	expect_find_fails("three", -ENOTDIR, "layer 'M' of image 'localhost/three:latest': '");
	expect_find_fails("three", -ENOTDIR, "/overlay/M/diff': not a directory");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(rename(strcat(strcpy((char[PATH_MAX]){ 0 }, p), ".real"), p), 0);

	/* A composefs layer. */
	mkdir_at("overlay/M/composefs-data");
	write_at("overlay/M/composefs-data/composefs.blob", "");
	expect_find_fails("three", -EOPNOTSUPP, "layer 'M' of image 'localhost/three:latest' "
			  "is a composefs layer");
	snprintf(p, sizeof(p), "%s/overlay/M/composefs-data/composefs.blob", store);
	unlink(p);

	/* The lower file: missing, malformed, disagreeing, a broken link. */
	write_at("overlay/T/lower", "l/LINKM");
	expect_find_fails("three", -EBADMSG, "lists 1 lower layer, but layers.json gives "
			  "layer 'T' 2 parents");
	write_at("overlay/T/lower", "l/LINKB:l/LINKM");
	expect_find_fails("three", -EBADMSG, "entry 1 is layer 'B', but layers.json has 'M'");
	write_at("overlay/T/lower", "l/LINKM:l/NOPE");
	expect_find_fails("three", -EBADMSG, "overlay/l/NOPE' (entry 2 of 'T/lower')");
	write_at("overlay/T/lower", "junk");
	expect_find_fails("three", -EBADMSG, "malformed");
	snprintf(p, sizeof(p), "%s/overlay/T/lower", store);
	unlink(p);
	expect_find_fails("three", -EBADMSG, "overlay/T/lower': No such file or directory");
	write_at("overlay/T/lower", "l/LINKM:l/LINKB");
	snprintf(p, sizeof(p), "%s/overlay/l/LINKB", store);
	unlink(p);
	link_at("/etc", "overlay/l/LINKB");
	expect_find_fails("three", -EBADMSG, "not a link to ../ID/diff");

	/* Metadata files. */
	write_at("overlay-layers/layers.json", "[{\"id\":\"T\"}");
	expect_find_fails("three", -EBADMSG, "layers.json");
	snprintf(p, sizeof(p), "%s/overlay-layers/layers.json", store);
	unlink(p);
	expect_find_fails("three", -ENOENT, "overlay-layers/layers.json': No such file");
}

static void test_store_drivers(void **state)
{
	struct storage_image img;
	char *err = NULL, p[PATH_MAX], want[PATH_MAX];

	setenv("STORAGE_DRIVER", "btrfs", 1);
	expect_find_fails("three", -EOPNOTSUPP, "the storage driver 'btrfs'");
	unsetenv("STORAGE_DRIVER");

	/* A vfs store: the top layer's whole tree. */
	snprintf(p, sizeof(p), "%s/overlay-images/images.json", store);
	unlink(p);
	expect_find_fails("three", -ENOENT, "no image store there");
	mkdir_at("vfs-images");
	mkdir_at("vfs-layers");
	mkdir_at("vfs");
	mkdir_at("vfs/dir");
	write_at("vfs-images/images.json",
		 "[{\"id\":\"" ID_B "\",\"names\":[\"localhost/v:latest\"],\"layer\":\"V2\"}]");
	write_at("vfs-layers/layers.json", "[{\"id\":\"V1\"},{\"id\":\"V2\",\"parent\":\"V1\"}]");
	expect_find_fails("v", -ENOENT, "layer 'V2' of image 'v': '");
	mkdir_at("vfs/dir/V2");
	assert_int_equal(find("v", &img, &err), 0);
	assert_string_equal(img.driver, "vfs");
	assert_int_equal(img.nlayer_dirs, 1);
	snprintf(want, sizeof(want), "%s/vfs/dir/V2", store);
	assert_string_equal(img.layer_dirs[0], want);
	storage_image_free(&img);
}

/*
 * An image of WALK_MAX_LAYERS layers is served, but not when a diff1
 * makes more than WALK_MAX_LAYERS directories: that is refused, naming
 * the image.
 */
static void test_store_max_layers(void **state)
{
	size_t cap = (size_t)WALK_MAX_LAYERS * 64 + 256, off;
	char *layers = malloc(cap), *lower = malloc(cap), rel[64], target[64];
	struct storage_image img;
	char *err = NULL;

	assert_non_null(layers);
	assert_non_null(lower);
	off = (size_t)snprintf(layers, cap, "[{\"id\":\"N0\"}");
	lower[0] = '\0';
	for (int i = 0; i < WALK_MAX_LAYERS; i++) {
		snprintf(rel, sizeof(rel), "overlay/N%d", i);
		mkdir_at(rel);
		snprintf(rel, sizeof(rel), "overlay/N%d/diff", i);
		mkdir_at(rel);
		snprintf(rel, sizeof(rel), "overlay/l/LN%d", i);
		snprintf(target, sizeof(target), "../N%d/diff", i);
		link_at(target, rel);
		if (i > 0)
			off += (size_t)snprintf(layers + off, cap - off,
						",{\"id\":\"N%d\",\"parent\":\"N%d\"}", i, i - 1);
	}
	snprintf(layers + off, cap - off, "]");
	/* The top layer N499's lower file: N498 down to N0. */
	off = 0;
	for (int i = WALK_MAX_LAYERS - 2; i >= 0; i--)
		off += (size_t)snprintf(lower + off, cap - off, "%sl/LN%d", off ? ":" : "", i);
	snprintf(rel, sizeof(rel), "overlay/N%d/lower", WALK_MAX_LAYERS - 1);
	write_at(rel, lower);
	write_at("overlay-layers/layers.json", layers);
	snprintf(rel, sizeof(rel), "N%d", WALK_MAX_LAYERS - 1);
	snprintf(lower, cap, "[{\"id\":\"" ID_B "\",\"names\":[\"localhost/tall:latest\"],"
		 "\"layer\":\"%s\"}]", rel);
	write_at("overlay-images/images.json", lower);

	assert_int_equal(find("tall", &img, &err), 0);
	assert_int_equal(img.nlayer_dirs, WALK_MAX_LAYERS);
	storage_image_free(&img);

	/* One more directory, the top layer's diff1: too many. */
	snprintf(rel, sizeof(rel), "overlay/N%d/diff1", WALK_MAX_LAYERS - 1);
	mkdir_at(rel);
	snprintf(lower, cap, "image '%s' has more than %d layers", ID_B, WALK_MAX_LAYERS);
	expect_find_fails("tall", -EBADMSG, lower);
	free(layers);
	free(lower);
}

/* A writer's lock makes us wait, then give up naming the lock and pid. */
static void test_store_locked(void **state)
{
	struct storage_image img;
	char p[PATH_MAX], *err = NULL, buf[1];
	int pipefd[2];
	pid_t pid;

	snprintf(p, sizeof(p), "%s/overlay-layers/layers.lock", store);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* containers-storage's way: a process-associated write lock. */
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int fd = open(p, O_RDWR);

		if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			_exit(1);
		(void)!write(pipefd[1], "L", 1);
		pause();
		_exit(0);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], buf, 1), 1);
	close(pipefd[0]);
	{
		char want[64];

		snprintf(want, sizeof(want), "locked for writing by pid %d", (int)pid);
		expect_find_fails("three", -EBUSY, want);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(find("three", &img, &err), 0);
	storage_image_free(&img);

	/* Our shared lock keeps a writer out until unlocked. */
	assert_int_equal(find("three", &img, &err), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int fd = open(p, O_RDWR);

		_exit(fd >= 0 && fcntl(fd, F_SETLK, &fl) < 0 && (errno == EAGAIN || errno == EACCES) ?
		      0 : 1);
	}
	{
		int ws;

		assert_int_equal(waitpid(pid, &ws, 0), pid);
		assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	}
	storage_image_free(&img);
}

/* A store whose root is not uid 0 as seen here: a rootless one. */
static void test_store_owner(void **state)
{
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(store, 1000, 1000), 0);
	expect_find_fails("three", -EPERM, "podman unshare erofs-nbd --image");
	assert_int_equal(chown(store, 0, 0), 0);
	{
		struct storage_opts o = { .storage_root = "/nonexistent/store" };
		struct storage_image img;
		char *err = NULL;

		assert_int_equal(storage_find_image("x", &o, &img, &err), -ENOENT);
		assert_non_null(strstr(err, "no container store at '/nonexistent/store' "
				       "(--storage-root)"));
		free(err);
	}
}

/* Without --storage-root: podman unshare's $CONTAINERS_GRAPHROOT. */
static void test_store_from_env(void **state)
{
	struct storage_opts o = { .lock_timeout_ms = 100 };
	struct storage_image img;
	char *err = NULL, conf[PATH_MAX];

	snprintf(conf, sizeof(conf), "%s/empty.conf", store);
	write_at("empty.conf", "# nothing\n");
	setenv("CONTAINERS_STORAGE_CONF", conf, 1);
	setenv("CONTAINERS_GRAPHROOT", store, 1);
	assert_int_equal(storage_find_image("three", &o, &img, &err), 0);
	assert_string_equal(img.graphroot, store);
	assert_string_equal(img.conf_path, conf);
	storage_image_free(&img);
	write_at("empty.conf", "[storage]\ndriver = \"zfs\"\n");
	assert_int_equal(storage_find_image("three", &o, &img, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err, "set in "));
	free(err);
	err = NULL;
	/* $STORAGE_DRIVER wins over storage.conf's driver. */
	setenv("STORAGE_DRIVER", "overlay", 1);
	assert_int_equal(storage_find_image("three", &o, &img, &err), 0);
	assert_string_equal(img.driver, "overlay");
	storage_image_free(&img);
	unsetenv("STORAGE_DRIVER");

	/* storage.conf's mount_program (a fuse-overlayfs store: AUFS
	 * whiteouts) and force_mask (ownership and modes in an xattr) count,
	 * each on its own, even with .has-mount-program "false" or absent. */
	write_at("empty.conf", "[storage]\ndriver = \"overlay\"\n");
	assert_int_equal(storage_find_image("three", &o, &img, &err), 0);
	assert_false(img.aufs_whiteouts);
	assert_false(img.override_stat);
	storage_image_free(&img);
	write_at("empty.conf", "[storage]\ndriver = \"overlay\"\n[storage.options.overlay]\n"
		 "mount_program = \"/usr/bin/fuse-overlayfs\"\n");
	assert_int_equal(storage_find_image("three", &o, &img, &err), 0);
	assert_true(img.aufs_whiteouts);
	assert_false(img.override_stat);
	storage_image_free(&img);
	write_at("empty.conf", "[storage]\ndriver = \"overlay\"\n[storage.options.overlay]\n"
		 "force_mask = \"shared\"\n");
	{
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/overlay/.has-mount-program", store);
		assert_int_equal(unlink(p), 0);
	}
	assert_int_equal(storage_find_image("three", &o, &img, &err), 0);
	assert_false(img.aufs_whiteouts);
	assert_true(img.override_stat);
	storage_image_free(&img);
	unsetenv("CONTAINERS_GRAPHROOT");
	unsetenv("CONTAINERS_STORAGE_CONF");
}

int main(void)
{
#define S(f) cmocka_unit_test_setup_teardown(f, setup_store, teardown_store)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lowerdir),
		cmocka_unit_test(test_lower_file),
		cmocka_unit_test(test_conf_forms),
		cmocka_unit_test(test_conf_errors),
		cmocka_unit_test(test_conf_load),
		cmocka_unit_test(test_json_lookup),
		S(test_store_ok),
		S(test_store_broken),
		S(test_store_drivers),
		S(test_store_max_layers),
		S(test_store_locked),
		S(test_store_owner),
		S(test_store_from_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
