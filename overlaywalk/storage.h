/* SPDX-License-Identifier: MIT */
/*
 * storage.h - where layer stacks come from: the overlay mount syntax
 * (lowerdir=) and containers-storage's image store, as podman keeps it
 * (shared/docs/overlay-layers.md §1.1, §3).
 *
 * storage_find_image() turns "NAME or ID" into the stack of layer
 * directories walk_layers() merges, the way containers-storage mounts an
 * image: images.json names the top layer, its `lower` file (checked
 * against the parent chain of layers.json) lists the rest.  The store is
 * the one podman would use (storage.conf: storage_locate.c picks the
 * file, storage_conf.c reads it), and it is read under containers-
 * storage's own shared locks, which the caller keeps until the walk is
 * done (storage_image_unlock()).
 *
 * The parsers (lowerdir strings, `lower` files, the storage.conf subset,
 * the JSON lookup) are pure functions over buffers, fuzzed by
 * tests/fuzz/fuzz-storage.c.  Nothing here logs: errors are -errno plus
 * a malloc'ed message that names what was looked at.
 */
#ifndef EROFS_NBD_STORAGE_H
#define EROFS_NBD_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "overlaywalk/walk.h"

/* ---- lowerdir.c ---- */

/*
 * Splits an overlay lowerdir= value, "TOP:...:BOTTOM", as the kernel does
 * (overlayfs.rst "Multiple lower layers"; params.c): a backslash takes
 * the next character literally ("\:" is a colon in a name, "\\" a
 * backslash), an unescaped ':' separates layers.  Returns the number of
 * layers (1..WALK_MAX_LAYERS) and *ret_dirs, a malloc'ed array of
 * malloc'ed strings (free with storage_strv_free()); or -EINVAL for an
 * empty string or layer, a trailing colon or backslash; -E2BIG for more
 * than WALK_MAX_LAYERS layers (the kernel's own limit); -EOPNOTSUPP for
 * "::" (data-only layers follow); -ENOMEM.
 */
int storage_parse_lowerdir(const char *s, char ***ret_dirs);

/* Frees a NULL-terminated or counted array of strings (n, or until NULL
 * when n is SIZE_MAX).  Accepts NULL. */
void storage_strv_free(char **v, size_t n);

/* ---- storage_conf.c: the storage.conf subset ---- */

/* The keys of containers-storage.conf(5) we read; NULL when not set. */
struct storage_conf {
	char *driver;			/* [storage] driver */
	char *graphroot;		/* [storage] graphroot */
	char *rootless_storage_path;	/* [storage] rootless_storage_path */
	char *mount_program;		/* [storage.options(.overlay)] mount_program */
	char *force_mask;		/* [storage.options(.overlay)] force_mask */
	char **image_stores;		/* [storage.options] additionalimagestores */
	size_t nimage_stores;
};

/*
 * Parses a storage.conf text of len bytes into *conf (fields it names are
 * replaced, the others kept).  Understands the TOML that podman, the
 * distributions and toml encoders write: comments, [tables] and
 * [dotted.tables], bare, quoted and dotted keys, basic and literal
 * strings (also multi-line), integers, booleans, arrays and inline
 * tables; only the keys of struct storage_conf are kept.  Returns 0, or
 * -EBADMSG with *ret_line the 1-based line of the first thing it cannot
 * read, or -ENOMEM.
 */
int storage_conf_parse(const char *text, size_t len, struct storage_conf *conf,
		       unsigned int *ret_line);

void storage_conf_free(struct storage_conf *conf);

/* storage_locate.c */

/*
 * Loads the storage.conf containers-storage would use for this process
 * (containers-storage's types/options.go): $CONTAINERS_STORAGE_CONF if
 * set; for root /etc/containers/storage.conf, else
 * /usr/share/containers/storage.conf; for a rootless user
 * ($_CONTAINERS_ROOTLESS_UID, else the euid, is not 0)
 * $XDG_CONFIG_HOME/containers/storage.conf (~/.config/...) if it exists,
 * else the system file's driver, rootless_storage_path and mount
 * options.  Fills *conf, *ret_graphroot (never NULL: the default
 * /var/lib/containers/storage, or $XDG_DATA_HOME/containers/storage,
 * ~/.local/share/containers/storage) and *ret_path (the file read, NULL
 * if none).  Returns 0, or -errno with *ret_err.
 */
int storage_conf_load(struct storage_conf *conf, char **ret_graphroot,
		      char **ret_path, char **ret_err);

/* ---- storage_json.c: images.json and layers.json ---- */

/* An image and its layer chain as the JSON files describe them. */
struct storage_chain {
	char *image_id;		/* 64 hex digits */
	char *image_name;	/* the names[] entry that matched, or NULL */
	char **layer_ids;	/* top first: the image's layer, its parent, ... */
	size_t nlayers;
};

/*
 * Finds ref in images.json (ilen bytes at images) and follows the top
 * layer's parent chain through layers.json (llen bytes at layers).  ref
 * is matched as containers-storage and podman do: a full image id (also
 * as "sha256:ID"), an exact name, the name with ":latest" added, a short
 * name ("fedora" for "registry.fedoraproject.org/fedora:latest", when
 * only one image matches), a manifest digest ("NAME@sha256:..."), or a
 * unique prefix of an id.  Returns 0 and *ret (free with
 * storage_chain_free()), or with *ret_err: -ENOENT (no such image),
 * -ENOTUNIQ (several match), -EBADMSG (malformed JSON, a layer missing
 * from layers.json, a parent loop, more than WALK_MAX_LAYERS layers),
 * -EBUSY (a layer is flagged incomplete: being written, or left by an
 * interrupted pull), -ENOMEM.
 */
int storage_json_resolve(const char *images, size_t ilen, const char *layers,
			 size_t llen, const char *ref, struct storage_chain *ret,
			 char **ret_err);

void storage_chain_free(struct storage_chain *c);

/* ---- storage.c: the store on disk ---- */

/*
 * Parses an overlay layer's `lower` file (len bytes): "l/LINK:l/LINK:...",
 * top first, LINK being [A-Za-z0-9]+; one trailing newline is allowed.
 * Returns the number of entries and *ret_links (the LINK names,
 * malloc'ed; free with storage_strv_free()), or -EBADMSG / -ENOMEM.
 */
int storage_parse_lower(const char *text, size_t len, char ***ret_links);

struct storage_opts {
	const char *storage_root;	/* --storage-root, or NULL: podman's store */
	unsigned int lock_timeout_ms;	/* wait this long for a writer to finish */
};

/* An image found in a store: the stack to walk, and the locks held. */
struct storage_image {
	char *graphroot;		/* the store */
	char *driver;			/* "overlay" or "vfs" */
	char *conf_path;		/* the storage.conf read, or NULL */
	struct storage_chain chain;	/* image id, matched name, layer ids */
	char **layer_dirs;		/* what to walk, top first */
	size_t nlayer_dirs;
	/* For walk_layers() (overlay driver); a vfs image is one plain tree. */
	enum walk_ovl_ns ns;
	bool aufs_whiteouts;		/* the store uses a mount program */
	bool override_stat;		/* force_mask is set */
	int lock_fds[4];		/* shared locks held, -1 = none */
};

/*
 * Finds the image ref (see storage_json_resolve()) in the store opts
 * names, or the one podman uses, and fills *ret.  The store's
 * images.lock and layers.lock are taken shared (waiting at most
 * opts->lock_timeout_ms for a writer) and kept until
 * storage_image_unlock().  Returns 0, or -errno with *ret_err (malloc'ed)
 * naming what was looked at: -ENOENT (no store, no image, a missing
 * layer), -EOPNOTSUPP (a driver other than overlay and vfs, a composefs
 * layer), -EBUSY (the
 * store is being written), -EBADMSG (broken metadata: JSON, a `lower`
 * file, a link in l/), -EPERM (a rootless store read from outside its
 * user namespace), -ENOMEM, or another errno of the failing call.
 */
int storage_find_image(const char *ref, const struct storage_opts *opts,
		       struct storage_image *ret, char **ret_err);

/* Releases the store's locks (idempotent). */
void storage_image_unlock(struct storage_image *img);

/* Releases the locks and frees *img.  Accepts a zeroed or half-built one. */
void storage_image_free(struct storage_image *img);

/* The namespace of overlay xattrs a stack made by this process would use:
 * trusted.overlay.* in the initial user namespace, user.overlay.* in any
 * other (podman unshare), as containers-storage decides (§2.2). */
enum walk_ovl_ns storage_default_ns(void);

#endif
