/* SPDX-License-Identifier: MIT */
/*
 * list.c - listing the directories of a merged directory: getdents64 on
 * each layer's directory, every name kept with its layer position and
 * d_type, the AUFS whiteout files of mount-program stores turned into
 * marks, then one sort by name and layer, so that walk.c decides each name
 * from one run of equal names.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "overlaywalk/internal.h"

void walk_names_free(struct name_list *l)
{
	free(l->buf);
	free(l->refs);
	memset(l, 0, sizeof(*l));
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

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

int walk_name_cmp(const struct name_ref *x, const struct name_ref *y)
{
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->name, y->name, n);

	if (r)
		return r;
	return (x->len > y->len) - (x->len < y->len);
}

/* By name, then layer top first; an AUFS whiteout right below the entry
 * of its own layer (it hides only what lies beneath, OCI layer.md). */
static int name_ref_cmp(const void *a, const void *b)
{
	const struct name_ref *x = a, *y = b;
	int r = walk_name_cmp(x, y);

	if (r)
		return r;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	return (int)x->whiteout - (int)y->whiteout;
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
	for (size_t i = 0; i < l->n; i++)
		l->refs[i].name = l->buf + l->refs[i].off;
	if (l->n > 1)
		qsort(l->refs, l->n, sizeof(*l->refs), name_ref_cmp);
	return 0;
}
