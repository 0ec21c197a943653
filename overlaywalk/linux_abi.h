/* SPDX-License-Identifier: MIT */
/*
 * linux_abi.h - the kernel interfaces the walk uses that Debian 12's
 * glibc and headers do not declare: getdents64(2)'s record, and the
 * *xattrat(2) calls of Linux 6.13 with getxattrat's argument block
 * (include/uapi/linux/xattr.h).  Shared by the walk (list.c, readxattr.c)
 * and bench/walk-floor.c, which must make the very same calls.
 */
#ifndef EROFS_NBD_LINUX_ABI_H
#define EROFS_NBD_LINUX_ABI_H

#include <stdint.h>
#include <sys/syscall.h>

#ifndef SYS_getxattrat
#define SYS_getxattrat 464	/* the same number on every architecture */
#endif
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif

/* One record of getdents64(2); d_reclen bytes long, d_name NUL-terminated. */
struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* getxattrat(2)'s argument block, version 0. */
struct xattr_args_v0 {
	uint64_t value;		/* user buffer address */
	uint32_t size;		/* its size in bytes */
	uint32_t flags;
};

#endif
