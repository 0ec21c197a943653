/* SPDX-License-Identifier: MIT */
/*
 * lowerdir.c - storage_parse_lowerdir(): the overlay mount syntax for a
 * stack of layers, "TOP:...:BOTTOM" (storage.h).
 *
 * Follows the kernel's splitting (fs/overlayfs/params.c,
 * ovl_parse_param_split_lowerdirs): a backslash escapes the character
 * after it, whatever it is; an unescaped colon ends a layer; two colons
 * start the data-only layers, which we refuse (they are only reachable
 * through metacopy redirects, overlay-layers.md §1.9); a trailing colon
 * or an empty layer is an error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/storage.h"

void storage_strv_free(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n && (n != SIZE_MAX || v[i]); i++)
		free(v[i]);
	free(v);
}

int storage_parse_lowerdir(const char *s, char ***ret_dirs)
{
	size_t len, n = 0;
	char **dirs = NULL, *cur;
	int r = -EINVAL;

	if (!s || !*s)
		return -EINVAL;
	len = strlen(s);
	/* At most one layer per colon plus one. */
	dirs = calloc(len / 2 + 2, sizeof(*dirs));
	cur = malloc(len + 1);
	if (!dirs || !cur) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0, c = 0;; i++) {
		if (s[i] == '\\') {
			if (!s[i + 1])
				goto fail;	/* nothing to escape */
			cur[c++] = s[++i];
			continue;
		}
		if (s[i] == ':' || !s[i]) {
			if (c == 0)
				goto fail;	/* a leading colon */
			if (n == WALK_MAX_LAYERS) {
				r = -E2BIG;
				goto fail;
			}
			cur[c] = '\0';
			dirs[n] = strdup(cur);
			if (!dirs[n]) {
				r = -ENOMEM;
				goto fail;
			}
			n++;
			c = 0;
			if (!s[i])
				break;
			if (!s[i + 1])
				goto fail;	/* a trailing colon */
			if (s[i + 1] == ':') {
				r = -EOPNOTSUPP;	/* "::": data-only layers */
				goto fail;
			}
			continue;
		}
		cur[c++] = s[i];
	}
	free(cur);
	*ret_dirs = dirs;
	return (int)n;
fail:
	free(cur);
	storage_strv_free(dirs, n);
	return r;
}
