/* SPDX-License-Identifier: MIT */
/*
 * list.c - listing the directories of a merged directory: getdents64 on
 * each layer's directory, every name kept with its layer position and
 * d_type, the AUFS whiteout files of mount-program stores turned into
 * marks, then one sort by name and layer, so that walk.c decides each name
 * from one run of equal names.  The sort compares the first eight bytes
 * of two names as one integer and calls memcmp() only when they tie:
 * names in one directory mostly differ early.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "overlaywalk/internal.h"
#include "overlaywalk/linux_abi.h"

void walk_names_free(struct name_list *l)
{
	free(l->buf);
	free(l->refs);
	memset(l, 0, sizeof(*l));
}

static int name_list_add(struct name_list *l, const char *name, size_t len,
			 uint32_t pos, uint8_t d_type, bool whiteout)
{
	if (l->buf_len + len + 1 > l->buf_cap) {
		size_t cap = l->buf_cap ? 2 * l->buf_cap : 4096;
		char *p;

		while (cap < l->buf_len + len + 1)
			cap *= 2;
		p = realloc(l->buf, cap);
		if (!p)
			return -ENOMEM;
		l->buf = p;
		l->buf_cap = cap;
	}
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		struct name_ref *p = reallocarray(l->refs, cap, sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->refs = p;
		l->cap = cap;
	}
	l->refs[l->n] = (struct name_ref){
		.off = l->buf_len, .len = len, .pos = pos, .d_type = d_type,
		.whiteout = whiteout,
	};
	l->n++;
	memcpy(l->buf + l->buf_len, name, len);
	l->buf[l->buf_len + len] = '\0';
	l->buf_len += len + 1;
	return 0;
}

uint64_t walk_name_key(const char *name, size_t len)
{
	uint64_t k = 0;

	for (size_t i = 0; i < 8; i++)
		k = k << 8 | (i < len ? (unsigned char)name[i] : 0);
	return k;
}

int walk_name_cmp(const struct name_ref *x, const struct name_ref *y)
{
	size_t n;
	int r;

	/* Names hold no NUL: a zero pad sorts a shorter prefix first. */
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	n = x->len < y->len ? x->len : y->len;
	if (n > 8 && (r = memcmp(x->name + 8, y->name + 8, n - 8)))
		return r;
	return (x->len > y->len) - (x->len < y->len);
}

/* By name, then layer top first; an AUFS whiteout right below the entry
 * of its own layer (it hides only what lies beneath, OCI layer.md). */
static int name_ref_cmp(const struct name_ref *x, const struct name_ref *y)
{
	int r = walk_name_cmp(x, y);

	if (r)
		return r;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return (int)x->whiteout - (int)y->whiteout;
}

/* Sorts v[0..n) by name_ref_cmp(), stably: insertion sort on runs of 16,
 * then merges through tmp (n entries). */
static void sort_refs(struct name_ref *v, size_t n, struct name_ref *tmp)
{
	const size_t run = 16;

	for (size_t lo = 0; lo < n; lo += run) {
		size_t hi = lo + run < n ? lo + run : n;

		for (size_t i = lo + 1; i < hi; i++) {
			struct name_ref x = v[i];
			size_t j = i;

			for (; j > lo && name_ref_cmp(&v[j - 1], &x) > 0; j--)
				v[j] = v[j - 1];
			v[j] = x;
		}
	}
	for (size_t w = run; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, k = lo;

			if (mid == hi || name_ref_cmp(&v[mid - 1], &v[mid]) <= 0) {
				memcpy(tmp + lo, v + lo, (hi - lo) * sizeof(*v));
				continue;	/* in order already */
			}
			while (i < mid && j < hi)
				tmp[k++] = name_ref_cmp(&v[j], &v[i]) < 0 ? v[j++] : v[i++];
			while (i < mid)
				tmp[k++] = v[i++];
			while (j < hi)
				tmp[k++] = v[j++];
		}
		memcpy(v, tmp, n * sizeof(*v));
	}
}

/*
 * Appends every name of dirfd but "." and ".." to *l, as layer position
 * pos.  With aufs, ".wh." names become whiteout marks or are dropped
 * (walk_aufs_classify()).
 */
static int list_dir(int dirfd, struct name_list *l, uint32_t pos, bool aufs)
{
	_Alignas(8) char buf[32768];

	for (;;) {
		long n = syscall(SYS_getdents64, dirfd, buf, sizeof(buf));

		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			size_t max = offsetof(struct linux_dirent64, d_name);
			const char *name = d->d_name;
			size_t len;
			bool wh = false;
			int r;

			if (d->d_reclen <= max || d->d_reclen > n - off)
				return -EIO;	/* a broken record: don't loop */
			max = d->d_reclen - max;
			len = strnlen(d->d_name, max);
			if (len == max)
				return -EIO;	/* not terminated */
			off += d->d_reclen;
			if (!strcmp(name, ".") || !strcmp(name, ".."))
				continue;
			if (aufs) {
				switch (walk_aufs_classify(name, len, &name, &len)) {
				case WALK_AUFS_NONE:
					break;
				case WALK_AUFS_WHITEOUT:
					wh = true;
					break;
				default:
					continue;	/* opacity is checked on open */
				}
			}
			r = name_list_add(l, name, len, pos, d->d_type, wh);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int walk_list_stack(struct walk_ctx *ctx, const struct dir_stack *st,
		    struct name_list *l)
{
	for (size_t i = 0; i < st->n; i++) {
		int r = list_dir(st->v[i].fd, l, (uint32_t)i, ctx->priv->aufs_whiteouts);

		if (r < 0) {
			ctx->cur_layer = st->v[i].layer;
			return r;
		}
	}
	for (size_t i = 0; i < l->n; i++) {
		l->refs[i].name = l->buf + l->refs[i].off;
		l->refs[i].key = walk_name_key(l->refs[i].name, l->refs[i].len);
	}
	if (l->n > 16) {
		struct name_ref *tmp = malloc(l->n * sizeof(*tmp));

		if (!tmp)
			return -ENOMEM;
		sort_refs(l->refs, l->n, tmp);
		free(tmp);
	} else if (l->n > 1) {
		sort_refs(l->refs, l->n, NULL);
	}
	return 0;
}
