// SPDX-License-Identifier: MIT
/*
 * build.c - erofs_build(): runs the phases (see internal.h) and appends
 * the image to the region map in ascending order:
 *
 *   ZERO   bytes 0..1024 (never read by EROFS, §1)
 *   MEM    superblock, root inode, shared xattrs, inodes with their
 *          xattrs and directory/symlink tails; FILE regions for regular
 *          file tails in between (read lazily from the source, §6.2)
 *   MEM    directory and symlink blocks
 *   FILE   file data blocks (ZERO for whole blocks inside holes of sparse
 *          files, and after i_size up to the end of the last block, §6.1)
 *   ZERO   padding to whole blocks, 4096 bytes at least
 *
 * The superblock's UUID and checksum are filled in last (super.c).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "erofs/internal.h"
#include "overlaywalk/source.h"
#include "server/cleanup.h"

/*
 * The path of inode wi (walk_inode_path()), joined with an entry name
 * when name is not NULL, for error messages.  Returns a malloc'ed string,
 * or NULL when out of memory.
 */
char *erofs_errpath(const struct walk_inode *wi, const char *name, size_t name_len)
{
	_cleanup_free_ char *path = walk_inode_path(wi);
	char *p = NULL;

	if (!path)
		return NULL;
	if (!name)
		return TAKE_PTR(path);
	if (asprintf(&p, "%s%s%.*s", path, *path ? "/" : "", (int)name_len, name) < 0)
		return NULL;
	return p;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23	/* Linux 5.14 */
#endif

/*
 * Faults in the pages of a large, fresh buffer (len bytes at p) in one
 * system call, instead of one page fault per page as it is first
 * written: a page fault costs more than the zeroing it does.  Only the
 * whole pages inside the buffer; nothing happens on kernels before 5.14.
 */
void erofs_prefault(void *p, size_t len)
{
	uintptr_t start = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
	uintptr_t end = ((uintptr_t)p + len) & ~(uintptr_t)4095;

	if (len >= (1 << 20) && end > start)
		(void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

static void ctx_free(struct erofs_ctx *ctx)
{
	free(ctx->inodes);
	free(ctx->dents);
	free(ctx->xattrs);
	free(ctx->shared);
	free(ctx->order);
}

/* Writes every metadata byte into membuf and blockbuf (both zeroed). */
static void serialise(struct erofs_ctx *ctx)
{
	erofs_super_serialise(ctx, ctx->membuf);
	erofs_xattr_serialise_shared(ctx);
	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		const struct walk_inode *wi = ei->wi;

		erofs_inode_serialise(ctx, ei, ctx->membuf + ei->mem_off);
		if (S_ISDIR(wi->mode)) {
			erofs_dir_serialise(ctx, ei);
		} else if (S_ISLNK(wi->mode) && ei->nblocks) {
			uint64_t n = ei->nblocks * ctx->bs;
			memcpy(ctx->blockbuf + ei->buf_off, wi->symlink,
			       n < ei->size ? n : ei->size);
		}
	}
}

/*
 * Faults in membuf and blockbuf (allocated, zeroed) and serialises into
 * them.  Runs on a thread of its own while the sources are registered and
 * the map is appended to (emit()): serialise() writes only the buffers'
 * bytes, which those read neither.
 */
static void *fill_thread(void *arg)
{
	struct erofs_ctx *ctx = arg;

	erofs_prefault(ctx->membuf, ctx->membuf_size);
	if (ctx->blockbuf)
		erofs_prefault(ctx->blockbuf, ctx->blockbuf_size);
	serialise(ctx);
	return NULL;
}

/*
 * Appends the data blocks of regular file ei: its bytes as one FILE run,
 * except for whole blocks inside holes of a sparse file (found with
 * SEEK_DATA / SEEK_HOLE on a descriptor from walk_open_data()), which
 * become ZERO; then zeros to the end of the last block (§6.1).  If the
 * file cannot be opened or probed now, it is served as plain data.
 */
static int emit_file_data(const struct erofs_ctx *ctx, struct region_map *map,
			  const struct erofs_inode *ei)
{
	uint64_t data_len = ei->nblocks * ctx->bs;
	uint64_t file_len = ei->size < data_len ? ei->size : data_len;
	uint64_t bs = ctx->bs, off = 0;
	int r;

	if (ei->sparse) {
		_cleanup_close_ int fd = walk_open_data(ctx->tree, ei->wi);
		uint64_t cur = 0;

		while (fd >= 0 && cur < file_len) {
			off_t data = lseek(fd, (off_t)cur, SEEK_DATA);
			if (data < 0 && errno != ENXIO)
				break;		/* probing failed: rest as data */
			uint64_t d = data < 0 || (uint64_t)data > file_len
				     ? file_len : (uint64_t)data;
			/* The hole [cur, d): its whole blocks read as zeros. */
			uint64_t zs = (cur + bs - 1) & ~(bs - 1);
			uint64_t ze = d == file_len ? d : d & ~(bs - 1);
			if (zs < ze) {
				r = region_add_file(map, ei->source, off, zs - off);
				if (r < 0)
					return r;
				r = region_add_zero(map, ze - zs);
				if (r < 0)
					return r;
				off = ze;
			}
			if (d >= file_len)
				break;
			off_t hole = lseek(fd, (off_t)d, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole <= d)
				break;
			cur = (uint64_t)hole;
		}
	}
	r = region_add_file(map, ei->source, off, file_len - off);
	if (r < 0)
		return r;
	return region_add_zero(map, data_len - file_len);
}

/* Registers one region source per regular file with data. */
static int add_sources(struct erofs_ctx *ctx, struct region_map *map)
{
	int r;

	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct erofs_inode *ei = &ctx->inodes[i];
		struct region_source src;

		if (!S_ISREG(ei->mode) || !ei->size)
			continue;
		r = walk_region_source(ctx->tree, ei->wi, &src);
		if (r == 0)
			r = region_add_source(map, &src, &ei->source);
		if (r < 0)
			return r;
	}
	return 0;
}

/* add_sources() on a thread of its own. */
struct sources_job {
	struct erofs_ctx *ctx;
	struct region_map *map;
	int r;
};

static void *sources_thread(void *arg)
{
	struct sources_job *job = arg;

	job->r = add_sources(job->ctx, job->map);
	return NULL;
}

/* Appends the whole image to map, in ascending order (see the top). */
static int emit(struct erofs_ctx *ctx, struct region_map *map, uint64_t map_start)
{
	uint64_t img = EROFS_SUPER_OFFSET + sizeof(struct erofs_super_block);
	int r;

	r = region_add_zero(map, EROFS_SUPER_OFFSET);
	if (r == 0)
		r = region_add_mem(map, ctx->membuf, sizeof(struct erofs_super_block));
	for (size_t k = 0; r == 0 && k < ctx->ninodes; k++) {
		const struct erofs_inode *ei = &ctx->inodes[ctx->order[k]];
		uint64_t pos = ei->nid * EROFS_ISLOT_SIZE;
		uint64_t mem_len = erofs_rec_mem_len(ei);

		assert(pos >= img);
		if (ei->pre_pad)
			r = region_add_mem(map, ctx->membuf + ei->mem_off - ei->pre_pad,
					   ei->pre_pad);
		else
			r = region_add_zero(map, pos - img);
		if (r == 0)
			r = region_add_mem(map, ctx->membuf + ei->mem_off, mem_len);
		img = pos + mem_len;
		if (r == 0 && ei->tail && S_ISREG(ei->mode)) {
			r = region_add_file(map, ei->source, ei->size - ei->tail, ei->tail);
			img += ei->tail;
		}
		if (r == 0 && k == 0) {
			assert(img == ctx->shared_pos);
			r = region_add_mem(map, ctx->membuf + ctx->shared_mem_off,
					   ctx->shared_size);
			img += ctx->shared_size;
		}
		assert(r < 0 || map->size - map_start == img);
	}
	if (r < 0)
		return r;
	r = region_add_zero(map, ctx->meta_end - img);
	if (r == 0)
		r = region_add_mem(map, ctx->blockbuf, ctx->blockbuf_size);
	for (size_t k = 0; r == 0 && k < ctx->ninodes; k++) {
		const struct erofs_inode *ei = &ctx->inodes[ctx->order[k]];
		if (!S_ISREG(ei->mode) || !ei->nblocks)
			continue;
		assert(map->size - map_start == (uint64_t)ei->blkaddr * ctx->bs);
		r = emit_file_data(ctx, map, ei);
	}
	if (r < 0)
		return r;
	return region_add_zero(map, map_start + ctx->blocks * ctx->bs - map->size);
}

/* Checks the options and the shape of the tree, and indexes its inodes. */
static int ctx_init(struct erofs_ctx *ctx, const struct walk_tree *tree,
		    const struct erofs_opts *opts, char **ret_errpath,
		    const char **ret_what)
{
	if (!opts || opts->blkszbits < EROFS_MIN_BLKSZBITS ||
	    opts->blkszbits > EROFS_MAX_BLKSZBITS) {
		*ret_what = "block size must be 2^9 to 2^16 bytes";
		return -EINVAL;
	}
	if (opts->volume_name && strlen(opts->volume_name) > 15) {
		*ret_what = "volume name longer than 15 bytes";
		return -EINVAL;
	}
	if (!tree || !tree->root || !tree->inodes || tree->ninodes == 0 ||
	    tree->ninodes >= UINT32_MAX) {
		*ret_what = "empty or malformed tree";
		return -EINVAL;
	}
	ctx->tree = tree;
	ctx->opts = opts;
	ctx->blkszbits = opts->blkszbits;
	ctx->bs = 1u << opts->blkszbits;
	ctx->ninodes = tree->ninodes;
	ctx->inodes = calloc(ctx->ninodes, sizeof(*ctx->inodes));
	if (!ctx->inodes)
		return -ENOMEM;
	erofs_prefault(ctx->inodes, ctx->ninodes * sizeof(*ctx->inodes));
	for (size_t i = 0; i < ctx->ninodes; i++) {
		struct walk_inode *wi = tree->inodes[i];
		if (!wi) {
			*ret_what = "tree->inodes has a NULL entry";
			return -EINVAL;
		}
		/* priv may hold anything: it names an earlier slot only if
		 * that slot holds wi. */
		if (wi->priv < i && ctx->inodes[wi->priv].wi == wi) {
			*ret_errpath = erofs_errpath(wi, NULL, 0);
			*ret_what = "inode listed twice in tree->inodes";
			return -EINVAL;
		}
		wi->priv = i;
		erofs_inode_init(&ctx->inodes[i], wi);
		int r = erofs_check_inode(ctx->blkszbits, wi, ret_what);
		if (r < 0) {
			*ret_errpath = erofs_errpath(wi, NULL, 0);
			return r;
		}
	}
	if (tree->root->priv >= ctx->ninodes ||
	    tree->inodes[tree->root->priv] != tree->root ||
	    !S_ISDIR(tree->root->mode)) {
		*ret_what = "root is not a directory of tree->inodes";
		return -EINVAL;
	}
	ctx->root = (uint32_t)tree->root->priv;
	return 0;
}

/*
 * Lays out the image of tree and appends it to map (see erofs.h for the
 * contract).  On failure the map may hold part of the image and the
 * buffers it owns; the caller frees it.  Returns 0, -EINVAL (options or a
 * malformed tree), -ENAMETOOLONG / -E2BIG / -EOPNOTSUPP / -EFBIG (an
 * entry EROFS cannot hold, named by *ret_errpath), or -ENOMEM.
 */
int erofs_build(const struct walk_tree *tree, const struct erofs_opts *opts,
		struct region_map *map, char **ret_errpath, const char **ret_what)
{
	struct erofs_ctx ctx = { 0 };
	struct sources_job sources = { .ctx = &ctx, .map = map };
	pthread_t sources_th, fill_th;
	bool sources_threaded = false, fill_threaded = false;
	char *errpath = NULL;
	const char *what = NULL;
	uint64_t map_start = map->size;
	int r;

	/*
	 * Two threads from here on, each phase beside one that reads nothing
	 * it writes.  The sources' registration needs only ctx_init()'s
	 * inodes and writes only erofs_inode.source and the map's sources:
	 * it runs beside the directory, xattr and layout phases.  Once laid
	 * out, the buffers are filled (serialise() writes only their bytes)
	 * beside emit(), which reads the sources and appends the regions.  On
	 * a tree of 144,000 entries that takes the layout from 65 to 47 ms
	 * (docs/design.md, "The walk").  Without threads, in order.
	 */
	r = ctx_init(&ctx, tree, opts, &errpath, &what);
	if (r < 0)
		goto out;
	sources_threaded = pthread_create(&sources_th, NULL, sources_thread, &sources) == 0;
	if (!sources_threaded)
		sources_thread(&sources);
	r = erofs_dir_prepare(&ctx, &errpath, &what);
	if (r == 0)
		r = erofs_xattr_prepare(&ctx, &errpath, &what);
	if (r == 0)
		r = erofs_layout(&ctx, &errpath, &what);
	if (r == 0) {
		ctx.membuf = calloc(1, ctx.membuf_size);
		if (ctx.blockbuf_size)
			ctx.blockbuf = calloc(1, ctx.blockbuf_size);
		if (!ctx.membuf || (ctx.blockbuf_size && !ctx.blockbuf)) {
			r = -ENOMEM;
			what = "out of memory";
		}
	}
	if (r == 0) {
		fill_threaded = pthread_create(&fill_th, NULL, fill_thread, &ctx) == 0;
		if (!fill_threaded)
			fill_thread(&ctx);
	}
	if (sources_threaded)
		pthread_join(sources_th, NULL);
	if (r == 0)
		r = sources.r;
	if (r == 0)
		r = emit(&ctx, map, map_start);
	if (fill_threaded)
		pthread_join(fill_th, NULL);
	/* The map frees the buffers from here on (at once if it cannot). */
	if (ctx.membuf && region_map_own(map, ctx.membuf) < 0 && r == 0)
		r = -ENOMEM;
	if (ctx.blockbuf && region_map_own(map, ctx.blockbuf) < 0 && r == 0)
		r = -ENOMEM;
	if (r == 0)
		r = erofs_super_finish(&ctx, map, map_start);
	if (r < 0 && !what)
		what = "appending to the region map";
out:
	ctx_free(&ctx);
	if (r < 0) {
		if (ret_errpath)
			*ret_errpath = errpath;
		else
			free(errpath);
		if (ret_what)
			*ret_what = what ? what : "out of memory";
	}
	return r;
}
