/* SPDX-License-Identifier: MIT */
/*
 * fuzz-storage.c - the parsers behind --lowerdir and --image
 * (overlaywalk/storage.h, merge.c): the lowerdir= syntax, containers-
 * storage's `lower` files, the storage.conf subset, the image lookup in
 * images.json/layers.json, and user.containers.override_stat values.
 *
 * Input: one byte picks the parser (its low 3 bits), the rest is its text.
 * For the JSON lookup the text is "REF\0IMAGES\0LAYERS".  Beyond not
 * crashing, each accepted input must satisfy what the callers rely on:
 *   lowerdir   1..WALK_MAX_LAYERS non-empty layers, and escaping them
 *              again (\: and \\) parses back to the same list
 *   lower      every link [A-Za-z0-9]{1,64}; joined again, the same list
 *   conf       the same result when parsed twice (values replace), no
 *              value longer than the text
 *   json       an image id, 1..WALK_MAX_LAYERS layer ids that are plain
 *              names, and the same answer twice
 *   override   formatted again as containers-storage writes it, the same
 *              owner, mode, type and device
 * Seeds: corpus/storage/.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/storage.h"

#define MAX_INPUT (256u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *cstr(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void fuzz_lowerdir(const uint8_t *p, size_t n)
{
	char *s = cstr(p, n), **dirs = NULL, **again = NULL, *joined, *o;
	int k = storage_parse_lowerdir(s, &dirs), k2;
	size_t len = 0;

	free(s);
	if (k < 0) {
		if (k != -EINVAL && k != -EOPNOTSUPP && k != -ENOMEM)
			abort();
		return;
	}
	if (k == 0 || k > WALK_MAX_LAYERS)
		abort();
	for (int i = 0; i < k; i++) {
		if (!dirs[i][0])
			abort();
		len += 2 * strlen(dirs[i]) + 1;
	}
	joined = o = malloc(len + 1);
	if (!joined)
		abort();
	for (int i = 0; i < k; i++) {
		if (i)
			*o++ = ':';
		for (const char *c = dirs[i]; *c; c++) {
			if (*c == ':' || *c == '\\')
				*o++ = '\\';
			*o++ = *c;
		}
	}
	*o = '\0';
	k2 = storage_parse_lowerdir(joined, &again);
	if (k2 != k)
		abort();
	for (int i = 0; i < k; i++)
		if (strcmp(dirs[i], again[i]))
			abort();
	free(joined);
	storage_strv_free(dirs, k);
	storage_strv_free(again, k);
}

static void fuzz_lower(const uint8_t *p, size_t n)
{
	char **links = NULL, **again = NULL, *joined, *o;
	int k = storage_parse_lower((const char *)p, n, &links), k2;

	if (k < 0) {
		if (k != -EBADMSG && k != -ENOMEM)
			abort();
		return;
	}
	joined = o = malloc(n + 2);
	if (!joined)
		abort();
	for (int i = 0; i < k; i++) {
		size_t l = strlen(links[i]);

		if (l == 0 || l > 64 || strspn(links[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					       "abcdefghijklmnopqrstuvwxyz0123456789") != l)
			abort();
		o += sprintf(o, "%sl/%s", i ? ":" : "", links[i]);
	}
	k2 = storage_parse_lower(joined, o - joined, &again);
	if (k2 != k)
		abort();
	for (int i = 0; i < k; i++)
		if (strcmp(links[i], again[i]))
			abort();
	free(joined);
	storage_strv_free(links, k);
	storage_strv_free(again, k);
}

static void same_str(const char *a, const char *b, size_t max)
{
	if (!a != !b || (a && (strcmp(a, b) || strlen(a) > max)))
		abort();
}

static void fuzz_conf(const uint8_t *p, size_t n)
{
	struct storage_conf a = { 0 }, b = { 0 };
	unsigned int line = 0, line2 = 0;
	int r = storage_conf_parse((const char *)p, n, &a, &line);
	int r2;

	if (r < 0) {
		if ((r != -EBADMSG || line == 0) && r != -ENOMEM)
			abort();
		storage_conf_free(&a);
		return;
	}
	/* Parsed again into the result of the first parse: values replace. */
	b = a;
	memset(&a, 0, sizeof(a));
	r2 = storage_conf_parse((const char *)p, n, &a, &line2);
	if (r2 != r)
		abort();
	same_str(a.driver, b.driver, n);
	same_str(a.graphroot, b.graphroot, n);
	same_str(a.rootless_storage_path, b.rootless_storage_path, n);
	same_str(a.mount_program, b.mount_program, n);
	same_str(a.force_mask, b.force_mask, n);
	if (a.nimage_stores != b.nimage_stores)
		abort();
	for (size_t i = 0; i < a.nimage_stores; i++)
		same_str(a.image_stores[i], b.image_stores[i], n);
	storage_conf_free(&a);
	storage_conf_free(&b);
}

static void fuzz_json(const uint8_t *p, size_t n)
{
	const uint8_t *z1 = memchr(p, 0, n), *z2;
	struct storage_chain c = { 0 }, c2 = { 0 };
	char *ref, *err = NULL, *err2 = NULL;
	int r, r2;

	if (!z1)
		return;
	z2 = memchr(z1 + 1, 0, n - (z1 + 1 - p));
	if (!z2)
		return;
	ref = cstr(p, z1 - p);
	r = storage_json_resolve((const char *)z1 + 1, z2 - z1 - 1, (const char *)z2 + 1,
				 n - (z2 + 1 - p), ref, &c, &err);
	r2 = storage_json_resolve((const char *)z1 + 1, z2 - z1 - 1, (const char *)z2 + 1,
				  n - (z2 + 1 - p), ref, &c2, &err2);
	free(ref);
	if (r != r2)
		abort();
	if (r < 0) {
		if (r != -ENOENT && r != -ENOTUNIQ && r != -EBADMSG && r != -EBUSY && r != -ENOMEM)
			abort();
		if (!err || !err2 || strcmp(err, err2))
			abort();
		free(err);
		free(err2);
		return;
	}
	if (err || !c.image_id || c.nlayers == 0 || c.nlayers > WALK_MAX_LAYERS ||
	    c.nlayers != c2.nlayers || strcmp(c.image_id, c2.image_id))
		abort();
	for (size_t i = 0; i < c.nlayers; i++) {
		const char *id = c.layer_ids[i];

		if (!*id || strchr(id, '/') || !strcmp(id, ".") || !strcmp(id, "..") ||
		    strcmp(id, c2.layer_ids[i]))
			abort();
	}
	storage_chain_free(&c);
	storage_chain_free(&c2);
}

static void fuzz_override(const uint8_t *p, size_t n)
{
	struct walk_override o, o2;
	char buf[128];
	const char *type = "";
	char dev[48] = "";

	if (walk_override_parse(p, n, &o) < 0)
		return;
	switch (o.mode & S_IFMT) {
	case 0: break;
	case S_IFREG: type = ":file"; break;
	case S_IFDIR: type = ":dir"; break;
	case S_IFLNK: type = ":symlink"; break;
	case S_IFIFO: type = ":pipe"; break;
	case S_IFSOCK: type = ":socket"; break;
	case S_IFBLK:
	case S_IFCHR:
		snprintf(dev, sizeof(dev), ":%s-%u-%u", S_ISBLK(o.mode) ? "block" : "char",
			 o.rdev_major, o.rdev_minor);
		break;
	default: abort();
	}
	if ((o.mode & ~(S_IFMT | 07777)) || (!S_ISBLK(o.mode) && !S_ISCHR(o.mode) &&
					     (o.rdev_major || o.rdev_minor)))
		abort();
	snprintf(buf, sizeof(buf), "%u:%u:%04o%s%s", o.uid, o.gid, o.mode & 07777, type, dev);
	if (walk_override_parse((const uint8_t *)buf, strlen(buf), &o2) < 0 ||
	    memcmp(&o, &o2, sizeof(o)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > MAX_INPUT)
		return 0;
	switch (data[0] & 7) {
	case 0: fuzz_lowerdir(data + 1, size - 1); break;
	case 1: fuzz_lower(data + 1, size - 1); break;
	case 2: fuzz_conf(data + 1, size - 1); break;
	case 3: fuzz_json(data + 1, size - 1); break;
	case 4: fuzz_override(data + 1, size - 1); break;
	default: break;
	}
	return 0;
}
