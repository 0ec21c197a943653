/* SPDX-License-Identifier: MIT */
/*
 * esp.h - what goes on the EFI System Partition for a tree: systemd-boot
 * as \EFI\BOOT\BOOT<ARCH>.EFI, loader/loader.conf, one Boot Loader
 * Specification entry with linux, initrd and options, and the kernel and
 * initramfs themselves (served from the source files).  Uses only the
 * public fat.h API.  Facts: ../shared/docs/fat32-gpt.md Part C.
 * The module does not log.
 */
#ifndef EROFS_NBD_ESP_H
#define EROFS_NBD_ESP_H

#include <stdint.h>

#include "overlaywalk/walk.h"
#include "server/region.h"

enum esp_arch {
	ESP_ARCH_AUTO = 0,	/* what the tree's kernel is built for */
	ESP_ARCH_X86_64,
	ESP_ARCH_AARCH64,
};

struct esp_opts {
	enum esp_arch arch;
	const char *efi_loader;	/* --efi-loader PATH outside the tree, or NULL */
	const char *kernel;	/* --kernel PATH, or NULL: found in the tree */
	const char *initrd;	/* --initrd PATH, or NULL */
	const char *kver;	/* --kver: pick this kernel version */
	const char *root_partuuid;	/* text GUID for root=PARTUUID= */
	const char *cmdline;	/* --cmdline additions, or NULL */
	uint32_t volume_id;	/* FAT volume serial, content-derived */
};

struct esp_result {
	enum esp_arch arch;	/* chosen architecture */
	char *kver;		/* chosen kernel version (malloc'ed) */
	char *cmdline;		/* the full kernel command line (malloc'ed) */
};

/*
 * Finds the kernel, initramfs and boot loader (in the tree: bootc's
 * /usr/lib/modules/<kver>/{vmlinuz,initramfs.img}, Debian's
 * /boot/vmlinuz-* and /boot/initrd.img-*, a UKI; the newest by version
 * order unless opts->kver; or the paths given), builds the ESP's FAT32
 * volume and appends it to map.  Returns 0 and fills *ret, or -errno with
 * *ret_what saying why (malloc'ed): -ENOENT when the tree has no kernel
 * (the caller then makes a disk without an ESP and warns), -EINVAL for a
 * command line that could break the entry file (newlines, control
 * characters) or the command line itself (a '"' never closed, in
 * opts->cmdline or the tree's own arguments), -EACCES/-EIO for a kernel
 * that can't be read.
 */
int esp_build(const struct walk_tree *tree, const struct esp_opts *opts,
	      struct region_map *map, struct esp_result *ret, char **ret_what);

/* Frees what esp_build() put in *res.  Accepts a zeroed struct. */
void esp_result_free(struct esp_result *res);

#endif
