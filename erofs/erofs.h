/* SPDX-License-Identifier: MIT */
/*
 * erofs.h - lays an EROFS image out from a tree model (overlaywalk) as a
 * region map (server/region.h).  Metadata (superblock, inodes, xattrs,
 * directories, inline tails of symlinks) is built in memory; file data
 * becomes REGION_FILE regions read from the source files on demand, and
 * holes of sparse files become REGION_ZERO.  Format: ../shared/docs/
 * erofs-format.md; the on-disk structs are in erofs/erofs_fs.h.
 *
 * The image mounts on Linux 5.14 and later: feature_incompat = 0,
 * FLAT_PLAIN and FLAT_INLINE layouts only.  The module does not log.
 */
#ifndef EROFS_NBD_EROFS_H
#define EROFS_NBD_EROFS_H

#include <stdbool.h>
#include <stdint.h>

#include "overlaywalk/walk.h"
#include "server/region.h"

struct erofs_opts {
	unsigned int blkszbits;	/* log2 of the block size: 12 (default), 14, 16 */
	bool build_time_set;	/* use build_time (SOURCE_DATE_EPOCH) */
	int64_t build_time;	/* seconds since the epoch */
	const char *volume_name;	/* at most 15 bytes; NULL for none */
	/*
	 * Store small files and the partial last block of regular files
	 * inline after the inode (FLAT_INLINE, §6.2), served lazily from the
	 * source.  On by default, as mkfs.erofs does: a guest reading a small
	 * file needs no block beyond its inode's.  The price: the tail shares
	 * a metadata block with other inodes, so a file that changes after
	 * the walk makes that whole block (its neighbours' inodes too) read
	 * as EIO.  Off (--no-inline-data): every regular file is FLAT_PLAIN,
	 * in blocks of its own.
	 */
	bool inline_file_tails;
};

/*
 * Fills opts with the defaults: 4 KiB blocks, time from the tree, no
 * volume name, inline file tails.
 */
void erofs_opts_default(struct erofs_opts *opts);

/*
 * Checks that EROFS can represent an entry (opts is a struct erofs_opts *,
 * for the block size): name length, xattr names (a known prefix: user.,
 * trusted., security., system.posix_acl_*), xattr sizes, file size and
 * type.  Fits walk_opts.check.  Returns 0 or -errno with *ret_what saying
 * what is wrong ("xattr 'system.nfs4_acl' has no EROFS name index").
 */
int erofs_check_entry(void *opts, const struct walk_inode *inode,
		      const char *name, size_t name_len, const char **ret_what);

/*
 * Lays out the image of tree and appends it to map (normally empty),
 * registering one region_source per regular file with data; each source's
 * open() goes through walk_open_data() on tree, which must outlive map.
 * The same tree and options give a byte-identical image.
 *
 * Returns 0, or -errno: -EINVAL for bad options, -ENAMETOOLONG / -E2BIG /
 * -EOPNOTSUPP / -EFBIG for an entry EROFS cannot represent (then
 * *ret_errpath names it: a malloc'ed path the caller frees, and *ret_what
 * says why), -ENOMEM.
 */
int erofs_build(const struct walk_tree *tree, const struct erofs_opts *opts,
		struct region_map *map, char **ret_errpath, const char **ret_what);

#endif
