/* SPDX-License-Identifier: MIT */
/*
 * storage_json.c - storage_json_resolve(): an image reference to its layer
 * chain, through containers-storage's images.json and layers.json
 * (overlay-layers.md §3.3, §3.4), parsed with jansson.
 *
 * images.json is an array of {"id", "names", "digest", "digests",
 * "layer", ...}; layers.json an array of {"id", "parent", "flags", ...}.
 * Unknown members are ignored, as containers-storage ignores them; a
 * member we use that has the wrong type makes the file malformed.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/storage.h"
#include "server/cleanup.h"

#define LIST_MAX 8	/* names listed in a "not found" message */

void storage_chain_free(struct storage_chain *c)
{
	if (!c)
		return;
	free(c->image_id);
	free(c->image_name);
	storage_strv_free(c->layer_ids, c->nlayers);
	memset(c, 0, sizeof(*c));
}

static int __attribute__((format(printf, 3, 4)))
fail(char **ret_err, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(ret_err, fmt, ap) < 0)
		*ret_err = NULL;
	va_end(ap);
	return err;
}

static bool is_hex(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* A layer id that can safely become a directory name. */
static bool plain_id(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* The string member key of obj, NULL if absent; *bad if present but not
 * a string. */
static const char *str_member(const json_t *obj, const char *key, bool *bad)
{
	const json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*bad = true;
		return NULL;
	}
	return json_string_value(v);
}

/* Whether the string array member key of obj holds s; *bad on wrong types. */
static bool array_has(const json_t *obj, const char *key, const char *s, bool *bad)
{
	const json_t *a = json_object_get(obj, key), *v;
	size_t i;

	if (!a || json_is_null(a))
		return false;
	if (!json_is_array(a)) {
		*bad = true;
		return false;
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v)) {
			*bad = true;
			return false;
		}
		if (!strcmp(json_string_value(v), s))
			return true;
	}
	return false;
}

/* The repository part of a name: without ":tag" of its last component. */
static size_t repo_len(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *colon = strrchr(slash ? slash : name, ':');

	return colon ? (size_t)(colon - name) : strlen(name);
}

/* Whether a reference's first component names a registry (docker's rule). */
static bool has_domain(const char *ref)
{
	const char *slash = strchr(ref, '/');
	size_t n = slash ? (size_t)(slash - ref) : 0;

	if (!slash)
		return false;
	return memchr(ref, '.', n) || memchr(ref, ':', n) ||
	       (n == 9 && !memcmp(ref, "localhost", 9));
}

/* Whether name equals want, or (short) ends with "/" + want. */
static bool name_matches(const char *name, const char *want, bool short_name)
{
	size_t n = strlen(name), w = strlen(want);

	if (!strcmp(name, want))
		return true;
	return short_name && n > w && name[n - w - 1] == '/' && !strcmp(name + n - w, want);
}

struct match {
	const json_t *image;
	const char *name;	/* the names[] entry that matched, if any */
};

/*
 * Collects the images of arr whose names match want (name_matches()) into
 * m (up to 2; *count gets the real number).  With digest, only images
 * with that manifest digest, want then matching a name's repository
 * (want NULL: any image with the digest).
 */
static int match_names(const json_t *arr, const char *want, bool short_name,
		       const char *digest, struct match m[2], size_t *count)
{
	const json_t *img;
	size_t i;

	*count = 0;
	json_array_foreach(arr, i, img) {
		const json_t *names = json_object_get(img, "names"), *v;
		bool bad = false;
		size_t k;

		if (digest) {
			const char *d = str_member(img, "digest", &bad);

			if (!((d && !strcmp(d, digest)) || array_has(img, "digests", digest, &bad)))
				continue;
		}
		if (bad)
			return -EBADMSG;
		if (!want) {
			/* A bare digest: the image, whatever its names. */
			if (*count < 2)
				m[*count] = (struct match){ .image = img };
			(*count)++;
			continue;
		}
		if (!names || json_is_null(names))
			continue;
		if (!json_is_array(names))
			return -EBADMSG;
		json_array_foreach(names, k, v) {
			const char *n = json_string_value(v);
			char repo[4096];
			size_t rl;

			if (!json_is_string(v))
				return -EBADMSG;
			if (digest) {
				/* NAME@DIGEST matches the repository of a name. */
				rl = repo_len(n);
				if (rl >= sizeof(repo))
					continue;
				memcpy(repo, n, rl);
				repo[rl] = '\0';
				if (!name_matches(repo, want, short_name))
					continue;
			} else if (!name_matches(n, want, short_name)) {
				continue;
			}
			if (*count < 2)
				m[*count] = (struct match){ .image = img, .name = n };
			(*count)++;
			break;
		}
	}
	return 0;
}

/* Images whose id is, or starts with, id. */
static int match_ids(const json_t *arr, const char *id, bool prefix,
		     struct match m[2], size_t *count)
{
	const json_t *img;
	size_t i, n = strlen(id);

	*count = 0;
	json_array_foreach(arr, i, img) {
		bool bad = false;
		const char *v = str_member(img, "id", &bad);

		if (bad || !v)
			return -EBADMSG;
		if (prefix ? strncmp(v, id, n) : strcmp(v, id))
			continue;
		if (*count < 2)
			m[*count] = (struct match){ .image = img };
		(*count)++;
	}
	return 0;
}

/* A short description of an image for messages: its first name, or its id. */
static const char *image_label(const json_t *img)
{
	const json_t *names = json_object_get(img, "names");

	if (json_is_array(names) && json_array_size(names) &&
	    json_is_string(json_array_get(names, 0)))
		return json_string_value(json_array_get(names, 0));
	return json_is_string(json_object_get(img, "id")) ?
	       json_string_value(json_object_get(img, "id")) : "?";
}

static int not_found(const json_t *arr, const char *ref, char **ret_err)
{
	char list[1024] = "";
	size_t n = json_array_size(arr), named = 0, off = 0;

	/* Named images by their first name; unnamed ones (build steps) only
	 * counted. */
	for (size_t i = 0; i < n; i++) {
		const json_t *names = json_object_get(json_array_get(arr, i), "names");
		int k;

		if (!json_is_array(names) || !json_array_size(names))
			continue;
		if (named++ >= LIST_MAX)
			continue;
		k = snprintf(list + off, sizeof(list) - off, "%s'%s'", off ? ", " : "",
			     image_label(json_array_get(arr, i)));
		if (k > 0 && (size_t)k < sizeof(list) - off)
			off += k;
	}
	if (n == 0)
		return fail(ret_err, -ENOENT, "no image '%s': the store has no images", ref);
	if (named == n)
		return fail(ret_err, -ENOENT, "no image '%s' (the store has %zu: %s%s)", ref, n,
			    list, named > LIST_MAX ? ", ..." : "");
	return fail(ret_err, -ENOENT, "no image '%s' (the store has %zu: %s%s%s%zu unnamed)",
		    ref, n, list, named > LIST_MAX ? ", ..." : "", off ? "; " : "", n - named);
}

static int ambiguous(const struct match m[2], const char *ref, char **ret_err)
{
	return fail(ret_err, -ENOTUNIQ, "'%s' matches more than one image ('%s', '%s', ...): "
		    "give the full name or the image ID", ref,
		    m[0].name ? m[0].name : image_label(m[0].image),
		    m[1].name ? m[1].name : image_label(m[1].image));
}

/* Finds the image ref names; *ret_match on success. */
static int find_image(const json_t *arr, const char *ref, struct match *ret_match,
		      char **ret_err)
{
	struct match m[2];
	size_t count = 0;
	char norm[4096];

	/* docker.io/NAME is docker.io/library/NAME, as podman stores it. */
	if (!strncmp(ref, "docker.io/", 10) && !memchr(ref + 10, '/', strcspn(ref + 10, "@")) &&
	    snprintf(norm, sizeof(norm), "docker.io/library/%s", ref + 10) < (int)sizeof(norm))
		ref = norm;

	const char *at = strchr(ref, '@');
	const char *last = strrchr(ref, '/');
	bool tagged = strchr(last ? last : ref, ':') != NULL;
	char buf[4096];
	int r;

	/* "sha256:<64 hex>": an image id as podman prints it. */
	if (!strncmp(ref, "sha256:", 7) && strlen(ref) == 7 + 64 && is_hex(ref + 7, 64)) {
		r = match_ids(arr, ref + 7, false, m, &count);
		if (r == 0 && count == 0)
			r = match_names(arr, NULL, false, ref, m, &count);	/* a digest */
		goto done;
	}
	r = match_ids(arr, ref, false, m, &count);
	if (r < 0 || count)
		goto done;
	if (at) {
		/* NAME@DIGEST. */
		size_t n = at - ref;

		if (n == 0 || n >= sizeof(buf))
			goto done;
		memcpy(buf, ref, n);
		buf[n] = '\0';
		/* NAME:TAG@DIGEST: the digest decides, as for podman. */
		char *tag = strrchr(buf, ':');
		if (tag && !strchr(tag, '/'))
			*tag = '\0';
		r = match_names(arr, buf, false, at + 1, m, &count);
		if (r == 0 && count == 0 && !has_domain(buf))
			r = match_names(arr, buf, true, at + 1, m, &count);
		goto done;
	}
	r = match_names(arr, ref, false, NULL, m, &count);
	if (r < 0 || count)
		goto done;
	if (!tagged && snprintf(buf, sizeof(buf), "%s:latest", ref) < (int)sizeof(buf)) {
		r = match_names(arr, buf, false, NULL, m, &count);
		if (r < 0 || count)
			goto done;
	} else {
		snprintf(buf, sizeof(buf), "%s", ref);
	}
	if (!has_domain(ref)) {
		/* A short name: any registry's image of that name. */
		r = match_names(arr, buf, true, NULL, m, &count);
		if (r < 0 || count)
			goto done;
	}
	if (is_hex(ref, strlen(ref)))
		r = match_ids(arr, ref, true, m, &count);
done:
	if (r < 0)
		return fail(ret_err, -EBADMSG, "images.json: malformed image entry");
	if (count == 0)
		return not_found(arr, ref, ret_err);
	if (count > 1)
		return ambiguous(m, ref, ret_err);
	*ret_match = m[0];
	return 0;
}

/* layers.json's entries by id, for the chain walk. */
struct layer_index {
	const char *id;
	const json_t *obj;
};

static int layer_index_cmp(const void *a, const void *b)
{
	return strcmp(((const struct layer_index *)a)->id,
		      ((const struct layer_index *)b)->id);
}

static int follow_chain(const json_t *layers, const char *top, struct storage_chain *c,
			char **ret_err)
{
	size_t n = json_array_size(layers), i;
	_cleanup_free_ struct layer_index *idx = calloc(n ? n : 1, sizeof(*idx));
	const json_t *l;
	const char *id = top;

	if (!idx)
		return -ENOMEM;
	json_array_foreach(layers, i, l) {
		bool bad = false;

		idx[i].obj = l;
		idx[i].id = json_is_object(l) ? str_member(l, "id", &bad) : NULL;
		if (bad || !idx[i].id)
			return fail(ret_err, -EBADMSG, "layers.json: entry %zu has no \"id\"", i);
	}
	qsort(idx, n, sizeof(*idx), layer_index_cmp);
	c->layer_ids = calloc(WALK_MAX_LAYERS + 1, sizeof(*c->layer_ids));
	if (!c->layer_ids)
		return -ENOMEM;
	while (id) {
		struct layer_index key = { .id = id }, *hit;
		const json_t *flags, *inc;
		bool bad = false;

		hit = bsearch(&key, idx, n, sizeof(*idx), layer_index_cmp);
		if (!hit)
			return fail(ret_err, -EBADMSG, "layer '%s'%s is not in layers.json", id,
				    c->nlayers ? " (a parent)" : " (the image's top layer)");
		if (!plain_id(id))
			return fail(ret_err, -EBADMSG, "layers.json: layer id '%s' is not a "
				    "plain name", id);
		flags = json_object_get(hit->obj, "flags");
		inc = json_is_object(flags) ? json_object_get(flags, "incomplete") : NULL;
		if (json_is_true(inc))
			return fail(ret_err, -EBUSY, "layer '%s' is incomplete: it is being "
				    "written, or an interrupted pull left it (podman system "
				    "check, or remove the image and pull it again)", id);
		if (c->nlayers == WALK_MAX_LAYERS)
			return fail(ret_err, -EBADMSG, "layer '%s': more than %d layers, or "
				    "a loop of parents in layers.json", top, WALK_MAX_LAYERS);
		c->layer_ids[c->nlayers] = strdup(id);
		if (!c->layer_ids[c->nlayers])
			return -ENOMEM;
		c->nlayers++;
		id = str_member(hit->obj, "parent", &bad);
		if (bad)
			return fail(ret_err, -EBADMSG, "layers.json: layer '%s' has a "
				    "malformed \"parent\"", c->layer_ids[c->nlayers - 1]);
		if (id && !*id)
			id = NULL;
	}
	return 0;
}

int storage_json_resolve(const char *images, size_t ilen, const char *layers,
			 size_t llen, const char *ref, struct storage_chain *ret,
			 char **ret_err)
{
	json_auto_t *ij = NULL, *lj = NULL;
	struct storage_chain c = { 0 };
	json_error_t jerr;
	struct match m;
	const char *top, *id;
	bool bad = false;
	int r;

	*ret_err = NULL;
	if (!ref || !*ref)
		return fail(ret_err, -ENOENT, "an empty image name");
	ij = json_loadb(images, ilen, JSON_REJECT_DUPLICATES, &jerr);
	if (!ij || !json_is_array(ij))
		return fail(ret_err, -EBADMSG, "images.json: %s (line %d)",
			    ij ? "not a JSON array" : jerr.text, ij ? 0 : jerr.line);
	r = find_image(ij, ref, &m, ret_err);
	if (r < 0)
		return r;
	id = str_member(m.image, "id", &bad);
	top = str_member(m.image, "layer", &bad);
	if (bad || !id)
		return fail(ret_err, -EBADMSG, "images.json: malformed entry for '%s'", ref);
	if (!top || !*top)
		return fail(ret_err, -ENOENT, "image '%s' (%s) has no layers", ref, id);

	lj = json_loadb(layers, llen, JSON_REJECT_DUPLICATES, &jerr);
	if (!lj || !json_is_array(lj))
		return fail(ret_err, -EBADMSG, "layers.json: %s (line %d)",
			    lj ? "not a JSON array" : jerr.text, lj ? 0 : jerr.line);
	c.image_id = strdup(id);
	c.image_name = m.name ? strdup(m.name) : NULL;
	if (!c.image_id || (m.name && !c.image_name)) {
		r = -ENOMEM;
		goto out;
	}
	r = follow_chain(lj, top, &c, ret_err);
out:
	if (r < 0) {
		if (r == -ENOMEM && !*ret_err)
			*ret_err = strdup("out of memory");
		storage_chain_free(&c);
		return r;
	}
	*ret = c;
	return 0;
}
