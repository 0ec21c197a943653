/* SPDX-License-Identifier: MIT */
/*
 * storage.c - storage_find_image(): an image of a containers-storage store
 * (podman's), as the stack of layer directories to merge (storage.h).
 *
 * On disk (overlay-layers.md §3.2-3.4, seen with podman 4.3):
 *
 *   GRAPHROOT/overlay-images/images.json   images: id, names, top "layer"
 *   GRAPHROOT/overlay-images/images.lock   fcntl record lock
 *   GRAPHROOT/overlay-layers/layers.json   layers: id, "parent", "flags"
 *   GRAPHROOT/overlay-layers/layers.lock
 *   GRAPHROOT/overlay/ID/diff              a layer's files (the top: its diff)
 *   GRAPHROOT/overlay/ID/lower             "l/LINK:l/LINK:..." every lower, top first
 *   GRAPHROOT/overlay/l/LINK -> ../ID/diff  short names that fit a mount's options
 *   GRAPHROOT/overlay/.has-mount-program   "true" when layers are AUFS-form
 *   GRAPHROOT/vfs/dir/ID                   vfs driver: a layer's whole tree
 *   GRAPHROOT/overlay/ID/composefs-data/   composefs layers: refused
 *
 * The stack is what containers-storage mounts: the top layer's diff, then
 * each `lower` entry's (with any diff1..diffN after a diff).  The `lower`
 * file must agree with the parent chain of layers.json; anything else
 * means the store is broken, and we say where instead of guessing.
 *
 * Locks: containers-storage takes POSIX record locks on images.lock and
 * layers.lock, exclusive while it writes.  We take shared ones (open file
 * description locks, which conflict with those) before reading the JSON
 * and keep them until the caller has walked the layers, so that no pull,
 * build or rmi changes the store halfway through.  A writer that holds on
 * longer than opts->lock_timeout_ms is reported as "being written".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "overlaywalk/storage.h"
#include "server/cleanup.h"

#define JSON_MAX_BYTES (256u << 20)	/* images.json of a big store is a few MiB */
#define LOCK_POLL_MS 50

static int __attribute__((format(printf, 3, 4)))
fail(char **ret_err, int err, const char *fmt, ...)
{
	va_list ap;

	free(*ret_err);
	va_start(ap, fmt);
	if (vasprintf(ret_err, fmt, ap) < 0)
		*ret_err = NULL;
	va_end(ap);
	return err;
}

enum walk_ovl_ns storage_default_ns(void)
{
	_cleanup_close_ int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
	char buf[256];
	unsigned long a, b, c;
	ssize_t n;
	int used = 0;

	if (fd < 0)
		return WALK_OVL_TRUSTED;	/* no /proc: assume the host */
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return WALK_OVL_TRUSTED;
	buf[n] = '\0';
	/* The initial namespace maps everything onto itself in one line. */
	if (sscanf(buf, " %lu %lu %lu %n", &a, &b, &c, &used) == 3 &&
	    a == 0 && b == 0 && c == 4294967295UL && buf[used] == '\0')
		return WALK_OVL_TRUSTED;
	return WALK_OVL_USER;
}

int storage_parse_lower(const char *text, size_t len, char ***ret_links)
{
	char **links;
	size_t n = 0, cap;

	if (len && text[len - 1] == '\n')
		len--;
	cap = len / 3 + 2;	/* "l/X" is the shortest entry */
	links = calloc(cap, sizeof(*links));
	if (!links)
		return -ENOMEM;
	for (size_t i = 0; i < len;) {
		size_t j = i;

		if (len - i < 3 || text[i] != 'l' || text[i + 1] != '/')
			goto bad;
		i += 2;
		for (j = i; j < len && text[j] != ':'; j++) {
			char c = text[j];

			if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			      (c >= '0' && c <= '9')))
				goto bad;
		}
		if (j == i || j - i > 64 || n == WALK_MAX_LAYERS)
			goto bad;
		links[n] = strndup(text + i, j - i);
		if (!links[n]) {
			storage_strv_free(links, n);
			return -ENOMEM;
		}
		n++;
		if (j < len && j + 1 == len)
			goto bad;	/* a trailing colon */
		i = j + 1;
	}
	*ret_links = links;
	return (int)n;
bad:
	storage_strv_free(links, n);
	return -EBADMSG;
}

/* Reads a file of at most max bytes, relative to dirfd, not following a
 * final symlink. */
static int read_file_at(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
					O_NOCTTY | O_NONBLOCK);
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t n = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	buf = malloc(st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (n < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + n, st.st_size - n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;	/* shrank: take what is there */
		n += k;
	}
	buf[n] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/*
 * Takes a shared lock on the lock file path (under dirfd) and returns its
 * fd, or -1 when there is no such file (a store on read-only media).
 */
static int lock_shared(int dirfd, const char *graphroot, const char *path,
		       unsigned int timeout_ms, int *ret_fd, char **ret_err)
{
	_cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
	long long deadline = now_ms() + timeout_ms;

	*ret_fd = -1;
	if (fd < 0)
		return errno == ENOENT ? 0 : fail(ret_err, -errno, "opening '%s/%s': %s",
						  graphroot, path, strerror(errno));
	for (;;) {
		if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
			break;
		if (errno != EAGAIN && errno != EACCES && errno != EINTR)
			return fail(ret_err, -errno, "locking '%s/%s': %s", graphroot,
				    path, strerror(errno));
		if (now_ms() >= deadline) {
			struct flock who = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
			char pid[32] = "";

			if (fcntl(fd, F_OFD_GETLK, &who) == 0 && who.l_type != F_UNLCK &&
			    who.l_pid > 0)
				snprintf(pid, sizeof(pid), " by pid %d", (int)who.l_pid);
			return fail(ret_err, -EBUSY, "'%s/%s' is locked for writing%s: "
				    "the store is being written (a pull, build or removal); "
				    "try again once it is done", graphroot, path, pid);
		}
		usleep(LOCK_POLL_MS * 1000);
		fl = (struct flock){ .l_type = F_RDLCK, .l_whence = SEEK_SET };
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

void storage_image_unlock(struct storage_image *img)
{
	for (size_t i = 0; i < sizeof(img->lock_fds) / sizeof(img->lock_fds[0]); i++) {
		if (img->lock_fds[i] >= 0)
			close(img->lock_fds[i]);
		img->lock_fds[i] = -1;
	}
}

void storage_image_free(struct storage_image *img)
{
	if (!img)
		return;
	storage_image_unlock(img);
	free(img->graphroot);
	free(img->driver);
	free(img->conf_path);
	storage_chain_free(&img->chain);
	storage_strv_free(img->layer_dirs, img->nlayer_dirs);
	memset(img, 0, sizeof(*img));
	for (size_t i = 0; i < sizeof(img->lock_fds) / sizeof(img->lock_fds[0]); i++)
		img->lock_fds[i] = -1;
}

/* Appends a malloc'ed "GRAPHROOT/fmt..." to img->layer_dirs. */
static int __attribute__((format(printf, 2, 3)))
add_dir(struct storage_image *img, const char *fmt, ...)
{
	char *rel, *p, **v;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vasprintf(&rel, fmt, ap);
	va_end(ap);
	if (k < 0)
		return -ENOMEM;
	k = asprintf(&p, "%s/%s", img->graphroot, rel);
	free(rel);
	if (k < 0)
		return -ENOMEM;
	v = reallocarray(img->layer_dirs, img->nlayer_dirs + 1, sizeof(*v));
	if (!v) {
		free(p);
		return -ENOMEM;
	}
	v[img->nlayer_dirs++] = p;
	img->layer_dirs = v;
	return 0;
}

/* Adds ID/diff (which must be a directory) and any ID/diff1..diffN. */
static int add_layer(struct storage_image *img, int ovl_fd, const char *id,
		     char **ret_err)
{
	char rel[300];
	struct stat st;
	int r;

	snprintf(rel, sizeof(rel), "%s/diff", id);
	if (fstatat(ovl_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return fail(ret_err, -errno, "layer '%s' of image '%s': '%s/overlay/%s': %s",
			    id, img->chain.image_name ? img->chain.image_name :
			    img->chain.image_id, img->graphroot, rel, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(ret_err, -ENOTDIR, "layer '%s' of image '%s': '%s/overlay/%s': "
			    "not a directory", id, img->chain.image_name ?
			    img->chain.image_name : img->chain.image_id, img->graphroot, rel);
	/* A composefs layer's diff/ is an object store by digest; its tree is
	 * in an EROFS blob only an overlay mount with metacopy reads. */
	snprintf(rel, sizeof(rel), "%s/composefs-data/composefs.blob", id);
	if (fstatat(ovl_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return fail(ret_err, -EOPNOTSUPP, "layer '%s' of image '%s' is a composefs layer "
			    "('%s/overlay/%s'): not supported (use_composefs stores)", id,
			    img->chain.image_name ? img->chain.image_name : img->chain.image_id,
			    img->graphroot, rel);
	snprintf(rel, sizeof(rel), "%s/diff", id);
	r = add_dir(img, "overlay/%s", rel);
	for (unsigned int k = 1; r == 0 && img->nlayer_dirs < WALK_MAX_LAYERS; k++) {
		snprintf(rel, sizeof(rel), "%s/diff%u", id, k);
		if (fstatat(ovl_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
			break;
		r = add_dir(img, "overlay/%s", rel);
	}
	return r;
}

/* The layer id a link l/LINK points to ("../ID/diff"), into id[256]. */
static int link_target(int ovl_fd, const char *link, char id[256])
{
	char rel[80], target[512];
	ssize_t n;
	size_t len;

	snprintf(rel, sizeof(rel), "l/%s", link);
	n = readlinkat(ovl_fd, rel, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	len = (size_t)n;
	if (len < 9 || strncmp(target, "../", 3) || strcmp(target + len - 5, "/diff"))
		return -EBADMSG;
	len -= 8;
	if (len >= 256 || memchr(target + 3, '/', len))
		return -EBADMSG;
	memcpy(id, target + 3, len);
	id[len] = '\0';
	return 0;
}

/* The overlay driver: the stack from the top layer's `lower` file,
 * checked against the parent chain. */
static int overlay_stack(struct storage_image *img, int root_fd, char **ret_err)
{
	const struct storage_chain *c = &img->chain;
	_cleanup_close_ int ovl_fd = openat(root_fd, "overlay", O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *text = NULL;
	char **links = NULL, rel[300];
	size_t len = 0;
	int n, r;

	if (ovl_fd < 0)
		return fail(ret_err, -errno, "'%s/overlay': %s", img->graphroot, strerror(errno));
	snprintf(rel, sizeof(rel), "%s/lower", c->layer_ids[0]);
	r = read_file_at(ovl_fd, rel, 1 << 20, &text, &len);
	if (r == -ENOENT && c->nlayers == 1)
		n = 0;	/* a base layer has no lower file */
	else if (r < 0)
		return fail(ret_err, r == -ENOENT ? -EBADMSG : r,
			    "'%s/overlay/%s': %s (layers.json gives layer '%s' %zu parent%s)",
			    img->graphroot, rel, r == -EBADMSG ? "not a regular file" : strerror(-r),
			    c->layer_ids[0], c->nlayers - 1, c->nlayers == 2 ? "" : "s");
	else {
		n = storage_parse_lower(text, len, &links);
		if (n == -ENOMEM)
			return -ENOMEM;
		if (n < 0)
			return fail(ret_err, -EBADMSG, "'%s/overlay/%s': malformed (expected "
				    "\"l/LINK:l/LINK...\")", img->graphroot, rel);
	}
	if ((size_t)n + 1 != c->nlayers) {
		r = fail(ret_err, -EBADMSG, "'%s/overlay/%s' lists %d lower layer%s, but "
			 "layers.json gives layer '%s' %zu parent%s", img->graphroot, rel,
			 n, n == 1 ? "" : "s", c->layer_ids[0], c->nlayers - 1,
			 c->nlayers == 2 ? "" : "s");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char id[256];

		r = link_target(ovl_fd, links[i], id);
		if (r < 0) {
			r = fail(ret_err, -EBADMSG, "'%s/overlay/l/%s' (entry %d of '%s'): %s",
				 img->graphroot, links[i], i + 1, rel,
				 r == -EBADMSG ? "not a link to ../ID/diff" : strerror(-r));
			goto out;
		}
		if (strcmp(id, c->layer_ids[i + 1])) {
			r = fail(ret_err, -EBADMSG, "'%s/overlay/%s' entry %d is layer '%s', "
				 "but layers.json has '%s' there", img->graphroot, rel, i + 1,
				 id, c->layer_ids[i + 1]);
			goto out;
		}
	}
	for (size_t i = 0; i < c->nlayers; i++) {
		r = add_layer(img, ovl_fd, c->layer_ids[i], ret_err);
		if (r < 0)
			goto out;
	}
	if (img->nlayer_dirs > WALK_MAX_LAYERS)
		r = fail(ret_err, -EBADMSG, "image '%s' has more than %d layers",
			 c->image_id, WALK_MAX_LAYERS);
out:
	storage_strv_free(links, n > 0 ? (size_t)n : 0);
	return r;
}

/* Whether GRAPHROOT/overlay/.has-mount-program says "true". */
static bool has_mount_program(int root_fd)
{
	_cleanup_free_ char *text = NULL;
	size_t len;

	if (read_file_at(root_fd, "overlay/.has-mount-program", 64, &text, &len) < 0)
		return false;
	return !strncmp(text, "true", 4);
}

/* Picks the driver: storage.conf's (or $STORAGE_DRIVER), else the one
 * whose images.json the store has. */
static int pick_driver(struct storage_image *img, int root_fd, const char *conf_driver,
		       char **ret_err)
{
	const char *d = getenv("STORAGE_DRIVER");
	struct stat st;

	if (!d || !*d)
		d = conf_driver;
	if (d && !strcmp(d, "overlay2"))
		d = "overlay";
	if (d && *d && strcmp(d, "overlay") && strcmp(d, "vfs"))
		return fail(ret_err, -EOPNOTSUPP, "'%s': the storage driver '%s'%s%s is not "
			    "supported (overlay and vfs are)", img->graphroot, d,
			    img->conf_path ? " set in " : "", img->conf_path ? img->conf_path : "");
	if (!d || !*d) {
		if (fstatat(root_fd, "overlay-images/images.json", &st, 0) == 0)
			d = "overlay";
		else if (fstatat(root_fd, "vfs-images/images.json", &st, 0) == 0)
			d = "vfs";
		else
			return fail(ret_err, -ENOENT, "'%s': no image store there (looked for "
				    "overlay-images/images.json and vfs-images/images.json)",
				    img->graphroot);
	}
	img->driver = strdup(d);
	return img->driver ? 0 : -ENOMEM;
}

int storage_find_image(const char *ref, const struct storage_opts *opts,
		       struct storage_image *ret, char **ret_err)
{
	struct storage_image img = { .lock_fds = { -1, -1, -1, -1 } };
	struct storage_conf conf = { 0 };
	_cleanup_free_ char *images = NULL, *layers = NULL, *conf_root = NULL;
	_cleanup_close_ int root_fd = -1;
	const char *env_root = getenv("CONTAINERS_GRAPHROOT");
	char path[64], *jerr = NULL;
	size_t ilen = 0, llen = 0;
	struct stat st;
	int r;

	*ret_err = NULL;
	if (opts->storage_root) {
		img.graphroot = strdup(opts->storage_root);
	} else {
		r = storage_conf_load(&conf, &conf_root, &img.conf_path, ret_err);
		if (r < 0)
			goto out;
		/* podman unshare tells its command which store it uses. */
		img.graphroot = strdup(env_root && *env_root ? env_root : conf_root);
	}
	if (!img.graphroot) {
		r = -ENOMEM;
		goto out;
	}
	root_fd = open(img.graphroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0 || fstat(root_fd, &st) < 0) {
		const char *from = opts->storage_root ? " (--storage-root)" :
				   env_root && *env_root ? " ($CONTAINERS_GRAPHROOT)" :
				   img.conf_path ? " (graphroot of " : " (the default store)";

		r = fail(ret_err, -errno, "no container store at '%s'%s%s%s: %s", img.graphroot,
			 from, !strcmp(from, " (graphroot of ") ? img.conf_path : "",
			 !strcmp(from, " (graphroot of ") ? ")" : "", strerror(errno));
		goto out;
	}
	if (st.st_uid != 0) {
		/* Seen from here, the store's root is not its owner's uid 0: its
		 * files carry a rootless user's subordinate ids. */
		r = fail(ret_err, -EPERM, "'%s' belongs to uid %u, not to root as seen here: "
			 "a rootless store must be read inside its user namespace "
			 "(podman unshare erofs-nbd --image ...)", img.graphroot,
			 (unsigned int)st.st_uid);
		goto out;
	}
	r = pick_driver(&img, root_fd, conf.driver, ret_err);
	if (r < 0)
		goto out;

	snprintf(path, sizeof(path), "%s-images/images.lock", img.driver);
	r = lock_shared(root_fd, img.graphroot, path, opts->lock_timeout_ms, &img.lock_fds[0], ret_err);
	if (r < 0)
		goto out;
	snprintf(path, sizeof(path), "%s-layers/layers.lock", img.driver);
	r = lock_shared(root_fd, img.graphroot, path, opts->lock_timeout_ms, &img.lock_fds[1], ret_err);
	if (r < 0)
		goto out;
	snprintf(path, sizeof(path), "%s-images/images.json", img.driver);
	r = read_file_at(root_fd, path, JSON_MAX_BYTES, &images, &ilen);
	if (r == 0) {
		snprintf(path, sizeof(path), "%s-layers/layers.json", img.driver);
		r = read_file_at(root_fd, path, JSON_MAX_BYTES, &layers, &llen);
	}
	if (r < 0) {
		r = fail(ret_err, r, "'%s/%s': %s%s", img.graphroot, path,
			 r == -EBADMSG ? "not a regular file" : strerror(-r),
			 r == -ENOENT && conf.nimage_stores ?
			 " (additionalimagestores are not searched)" : "");
		goto out;
	}
	r = storage_json_resolve(images, ilen, layers, llen, ref, &img.chain, &jerr);
	if (r < 0) {
		/* Not found, or a parent layer that may live in another store. */
		bool elsewhere = r == -ENOENT || (jerr && strstr(jerr, "not in layers.json"));

		r = fail(ret_err, r, "'%s' (%s driver): %s%s", img.graphroot, img.driver,
			 jerr ? jerr : strerror(-r),
			 elsewhere && conf.nimage_stores ?
			 " (additionalimagestores are not searched)" : "");
		free(jerr);
		goto out;
	}
	if (!strcmp(img.driver, "vfs")) {
		/* Each vfs layer is the whole tree: serve the top one. */
		r = add_dir(&img, "vfs/dir/%s", img.chain.layer_ids[0]);
		if (r == 0 && stat(img.layer_dirs[0], &st) < 0)
			r = fail(ret_err, -errno, "layer '%s' of image '%s': '%s': %s",
				 img.chain.layer_ids[0], ref, img.layer_dirs[0], strerror(errno));
		else if (r == 0 && !S_ISDIR(st.st_mode))
			r = fail(ret_err, -ENOTDIR, "layer '%s' of image '%s': '%s': not a "
				 "directory", img.chain.layer_ids[0], ref, img.layer_dirs[0]);
	} else {
		r = overlay_stack(&img, root_fd, ret_err);
		img.aufs_whiteouts = (conf.mount_program && *conf.mount_program) ||
				     has_mount_program(root_fd);
		img.override_stat = conf.force_mask && *conf.force_mask;
	}
	if (r < 0)
		goto out;
	img.ns = storage_default_ns();
	*ret = img;
	img = (struct storage_image){ .lock_fds = { -1, -1, -1, -1 } };
out:
	if (r == -ENOMEM && !*ret_err)
		*ret_err = strdup("out of memory");
	storage_image_free(&img);
	storage_conf_free(&conf);
	return r;
}
