/* SPDX-License-Identifier: MIT */
/*
 * storage_locate.c - storage_conf_load(): which storage.conf podman would
 * read for this process, and where its store is without one, as
 * containers-storage decides (types/options.go: DefaultConfigFile,
 * getRootlessStorageOpts, expandEnvPath).  The file itself is read by
 * storage_conf.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "overlaywalk/storage.h"
#include "server/cleanup.h"

#define CONF_MAX_BYTES (1 << 20)

/* Reads a whole small file; -ENOENT if it does not exist. */
static int read_small_file(const char *path, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	_cleanup_free_ char *buf = NULL;
	size_t n = 0, cap = 4096;

	if (fd < 0)
		return -errno;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t k;

		if (n == cap) {
			char *p;

			if (cap >= CONF_MAX_BYTES)
				return -EFBIG;
			p = realloc(buf, cap * 2);
			if (!p)
				return -ENOMEM;
			buf = p;
			cap *= 2;
		}
		k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		n += k;
	}
	*ret = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

/* The uid containers-storage treats as "rootless" (getRootlessUID). */
static uid_t rootless_uid(void)
{
	const char *s = getenv("_CONTAINERS_ROOTLESS_UID");
	char *end;
	unsigned long v;

	if (s && *s) {
		errno = 0;
		v = strtoul(s, &end, 10);
		if (!errno && !*end && v < UINT32_MAX)
			return (uid_t)v;
	}
	return geteuid();
}

static const char *home_dir(uid_t uid)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h && *h)
		return h;
	pw = getpwuid(uid);
	return pw ? pw->pw_dir : NULL;
}

/*
 * Expands $UID, $HOME, $USER and other $VAR / ${VAR} in a path, as
 * containers-storage's expandEnvPath (os.ExpandEnv after replacing $UID).
 * 0 or -EBADMSG (an unterminated ${ or an empty name) / -ENOMEM.
 */
static int expand_path(const char *in, uid_t uid, char **ret)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int r = 0;

	if (!f)
		return -ENOMEM;
	for (const char *p = in; *p && r == 0;) {
		const char *name, *val;
		size_t n;
		char var[128], num[16];

		if (*p != '$') {
			fputc(*p++, f);
			continue;
		}
		p++;
		if (*p == '{') {
			const char *close = strchr(p, '}');

			if (!close) {
				r = -EBADMSG;
				break;
			}
			name = p + 1;
			n = close - name;
			p = close + 1;
		} else {
			name = p;
			while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			       (*p >= '0' && *p <= '9') || *p == '_')
				p++;
			n = p - name;
		}
		if (n == 0 || n >= sizeof(var)) {
			r = -EBADMSG;
			break;
		}
		memcpy(var, name, n);
		var[n] = '\0';
		if (!strcmp(var, "UID")) {
			snprintf(num, sizeof(num), "%u", (unsigned int)uid);
			val = num;
		} else if (!strcmp(var, "HOME")) {
			val = home_dir(uid);
		} else {
			val = getenv(var);
		}
		if (val)
			fputs(val, f);
	}
	if (fclose(f) != 0 && r == 0)
		r = -ENOMEM;
	if (r < 0) {
		free(out);
		return r;
	}
	*ret = out;
	return 0;
}

/* Parses path into conf if it exists: 1 if read, 0 if absent, -errno. */
static int load_file(const char *path, struct storage_conf *conf, char **ret_err)
{
	_cleanup_free_ char *text = NULL;
	unsigned int line = 0;
	size_t len = 0;
	int r;

	r = read_small_file(path, &text, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		if (asprintf(ret_err, "reading '%s': %s", path, strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	r = storage_conf_parse(text, len, conf, &line);
	if (r == -EBADMSG) {
		if (asprintf(ret_err, "'%s' line %u: TOML this reader does not understand "
			     "(give --storage-root DIR to skip storage.conf)", path, line) < 0)
			*ret_err = NULL;
		return r;
	}
	return r < 0 ? r : 1;
}

static char *xdg_path(const char *env, const char *home_rel, uid_t uid, const char *tail)
{
	const char *base = getenv(env), *home;
	char *p;

	if (base && *base && base[0] == '/') {
		if (asprintf(&p, "%s/%s", base, tail) < 0)
			return NULL;
		return p;
	}
	home = home_dir(uid);
	if (!home || asprintf(&p, "%s/%s/%s", home, home_rel, tail) < 0)
		return NULL;
	return p;
}

int storage_conf_load(struct storage_conf *conf, char **ret_graphroot,
		      char **ret_path, char **ret_err)
{
	const char *env = getenv("CONTAINERS_STORAGE_CONF");
	const char *sys = "/usr/share/containers/storage.conf";
	uid_t uid = rootless_uid();
	bool rootless = uid != 0, from_file = false;
	struct storage_conf sysconf = { 0 };
	_cleanup_free_ char *user = NULL, *path = NULL, *graphroot = NULL;
	const char *root = NULL;
	int r;

	*ret_err = NULL;
	memset(conf, 0, sizeof(*conf));
	if (access("/etc/containers/storage.conf", F_OK) == 0)
		sys = "/etc/containers/storage.conf";
	if (env && *env)
		sys = env;	/* it replaces the system file too */
	if (rootless && !(env && *env)) {
		user = xdg_path("XDG_CONFIG_HOME", ".config", uid, "containers/storage.conf");
		if (!user) {
			r = -ENOMEM;
			goto fail;
		}
		r = load_file(user, conf, ret_err);
		if (r < 0)
			goto fail;
		if (r > 0) {
			path = TAKE_PTR(user);
			from_file = true;
		}
	}
	if (!from_file || rootless) {
		/* Root's file; or the system defaults a rootless user starts from. */
		r = load_file(sys, rootless ? &sysconf : conf, ret_err);
		if (r < 0)
			goto fail;
		if (r > 0 && !path)
			path = strdup(sys);
		if (r > 0 && !rootless)
			from_file = true;
		if (rootless && (env && *env)) {
			/* $CONTAINERS_STORAGE_CONF is the rootless user's file too. */
			r = load_file(sys, conf, ret_err);
			if (r < 0)
				goto fail;
			from_file = r > 0;
		} else if (rootless && !from_file) {
			conf->driver = TAKE_PTR(sysconf.driver);
			conf->mount_program = TAKE_PTR(sysconf.mount_program);
			conf->force_mask = TAKE_PTR(sysconf.force_mask);
		}
	}

	if (!rootless)
		root = conf->graphroot && *conf->graphroot ? conf->graphroot :
		       "/var/lib/containers/storage";
	else if (from_file && conf->graphroot && *conf->graphroot)
		root = conf->graphroot;
	else if (from_file && conf->rootless_storage_path && *conf->rootless_storage_path)
		root = conf->rootless_storage_path;
	else if (sysconf.rootless_storage_path && *sysconf.rootless_storage_path)
		root = sysconf.rootless_storage_path;
	if (root)
		r = expand_path(root, uid, &graphroot);
	else {
		graphroot = xdg_path("XDG_DATA_HOME", ".local/share", uid, "containers/storage");
		r = graphroot ? 0 : -ENOMEM;
	}
	if (r < 0)
		goto fail;
	storage_conf_free(&sysconf);
	*ret_graphroot = TAKE_PTR(graphroot);
	*ret_path = TAKE_PTR(path);
	return 0;
fail:
	if (r == -ENOMEM && !*ret_err)
		*ret_err = strdup("reading storage.conf: out of memory");
	else if (r == -EBADMSG && !*ret_err &&
		 asprintf(ret_err, "storage.conf: a path with a malformed $VARIABLE") < 0)
		*ret_err = NULL;
	storage_conf_free(&sysconf);
	storage_conf_free(conf);
	return r;
}
