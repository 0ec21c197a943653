// SPDX-License-Identifier: MIT
/*
 * util.c - the launcher's small helpers: messages, argument vectors,
 * URI and QEMU option escaping, number parsing, and the private runtime
 * directory that holds the sockets of one run (vfkit-launch.md: $RUN,
 * mode 0700, short because of the 104-byte Unix socket limit, §1.4).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "launcher/launch.h"
#include "server/cleanup.h"

int launch_verbose;

/*
 * log_line: writes "erofs-nbd-launch: [LEVEL: ]", FMT formatted with AP,
 * SUFFIX and a newline to stderr in one write(2), so that a child sharing
 * our stderr (erofs-nbd, the VMM) cannot land its own message inside one
 * of ours.  A line longer than the buffer is cut and ends in "...".
 */
static void __attribute__((format(printf, 3, 0)))
log_line(const char *level, const char *suffix, const char *fmt, va_list ap)
{
	char msg[4096], line[sizeof(msg) + 256];
	int n;

	if (vsnprintf(msg, sizeof(msg), fmt, ap) >= (int)sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4);
	n = snprintf(line, sizeof(line), "erofs-nbd-launch: %s%s%s%s\n", level ? level : "",
		     level ? ": " : "", msg, suffix);
	if (n < 0)
		return;
	if (n >= (int)sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	fflush(stderr);
	write_all(STDERR_FILENO, line, (size_t)n);
}

void log_msg(const char *level, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_line(level, "", fmt, ap);
	va_end(ap);
	errno = saved;
}

int log_errno(int err, const char *fmt, ...)
{
	char suffix[128];
	va_list ap;

	snprintf(suffix, sizeof(suffix), ": %s", strerror(err < 0 ? -err : err));
	va_start(ap, fmt);
	log_line("error", suffix, fmt, ap);
	va_end(ap);
	return err < 0 ? err : -err;
}

void strv_push_owned(struct strv *s, char *p)
{
	if (!p) {
		s->oom = true;
		return;
	}
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		char **v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			free(p);
			s->oom = true;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = p;
	s->v[s->n] = NULL;
}

void strv_add(struct strv *s, const char *arg)
{
	strv_push_owned(s, strdup(arg));
}

void strv_addf(struct strv *s, const char *fmt, ...)
{
	char *p = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		p = NULL;
	va_end(ap);
	strv_push_owned(s, p);
}

int strv_check(const struct strv *s)
{
	return s->oom || !s->v ? -ENOMEM : 0;
}

void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){ 0 };
}

char *path_join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

char *uri_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(3 * strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int uri_decode(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p != '%') {
			*o++ = *p;
			continue;
		}
		int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -EINVAL;
		*o++ = (char)(hi << 4 | lo);
		p += 2;
	}
	*o = '\0';
	return 0;
}

char *qemu_escape(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		*o++ = *s;
		if (*s == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

int parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *ret)
{
	unsigned long long v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned int)(*p - '0');
		if (v > UINT_MAX)
			return -ERANGE;
	}
	if (v < min || v > max)
		return -ERANGE;
	*ret = (unsigned int)v;
	return 0;
}

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fd_cloexec(int fd, bool nonblock)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	if (nonblock) {
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -errno;
	}
	return 0;
}

/* Every socket path must fit sockaddr_un on macOS too (104 bytes with
 * the NUL, §1.4), so the check is the same on Linux. */
#define SOCK_PATH_MAX 103

static int rundir_paths(struct launch *l)
{
	char **paths[] = { &l->nbd_sock, &l->notify_sock, &l->qmp_sock,
			   &l->qmp_ev_sock, &l->rest_sock, &l->efi_vars, &l->ssh_sock,
			   &l->ssh_key, &l->ssh_key_pub, &l->known_hosts,
			   &l->console_file };
	const char *names[] = { "nbd.sock", "notify", "qmp.sock", "qmp-ev.sock",
				"rest.sock", l->vmm == VMM_QEMU ? "vars.fd" : "efivars",
				"ssh.sock", "ssh_key", "ssh_key.pub", "known_hosts",
				"console" };

	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		*paths[i] = path_join(l->run_dir, names[i]);
		if (!*paths[i])
			return -ENOMEM;
	}
	/* ssh expands ${VAR} in the key's and known_hosts' paths and has no
	 * escape for it ('%' it has: ssh_build_argv() doubles those). */
	if (l->ssh && strstr(l->run_dir, "${")) {
		log_error("runtime directory '%s': ssh would expand its \"${\"; use --runtime-dir",
			  l->run_dir);
		return -EINVAL;
	}
	/* qmp-ev.sock is the longest socket name. */
	if (strlen(l->qmp_ev_sock) > SOCK_PATH_MAX) {
		log_error("runtime directory '%s' is too long for Unix socket paths"
			  " (at most %d bytes with the socket name); use --runtime-dir",
			  l->run_dir, SOCK_PATH_MAX);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* The parent of the runtime directory: $XDG_RUNTIME_DIR, /run when root
 * can write it, else $TMPDIR or /tmp (what erofs-nbd itself does). */
static const char *rundir_parent(const struct launch *l)
{
	const char *p;

	if (l->runtime_parent)
		return l->runtime_parent;
	p = getenv("XDG_RUNTIME_DIR");
	if (p && *p == '/')
		return p;
	if (geteuid() == 0 && access("/run", W_OK) == 0)
		return "/run";
	p = getenv("TMPDIR");
	if (p && *p == '/')
		return p;
	return "/tmp";
}

int rundir_create(struct launch *l)
{
	if (l->runtime_dir_opt) {
		if (l->runtime_dir_opt[0] != '/') {
			log_error("--runtime-dir '%s': must be an absolute path",
				  l->runtime_dir_opt);
			return -EINVAL;
		}
		l->run_dir = strdup(l->runtime_dir_opt);
		if (!l->run_dir)
			return -ENOMEM;
		if (!l->dry_run) {
			if (mkdir(l->run_dir, 0700) < 0)
				return log_errno(-errno, "creating runtime directory '%s'",
						 l->run_dir);
			l->run_dir_created = true;
		}
	} else {
		const char *parent = rundir_parent(l);

		if (asprintf(&l->run_dir, "%s/erofs-nbd-launch.XXXXXX", parent) < 0) {
			l->run_dir = NULL;
			return -ENOMEM;
		}
		if (!mkdtemp(l->run_dir))
			return log_errno(-errno, "creating a runtime directory in '%s'", parent);
		l->run_dir_created = true;
	}
	/* mkdir honours the umask; make the mode exactly 0700. */
	if (l->run_dir_created && chmod(l->run_dir, 0700) < 0)
		return log_errno(-errno, "chmod '%s'", l->run_dir);
	log_debug("runtime directory '%s'", l->run_dir);
	return rundir_paths(l);
}

void rundir_remove(struct launch *l)
{
	DIR *d;
	struct dirent *de;

	if (!l->run_dir_created)
		return;
	d = opendir(l->run_dir);
	if (d) {
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
				log_warning("removing '%s/%s': %s, ignoring", l->run_dir,
					    de->d_name, strerror(errno));
		}
		closedir(d);
	}
	if (rmdir(l->run_dir) < 0 && errno != ENOENT)
		log_warning("removing runtime directory '%s': %s", l->run_dir,
			    strerror(errno));
	else
		log_debug("removed runtime directory '%s'", l->run_dir);
	l->run_dir_created = false;
}

char *self_path(void)
{
#ifdef __linux__
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);

	if (n > 0) {
		buf[n] = '\0';
		return strdup(buf);
	}
#endif
	return NULL;
}

const char *console_path(const struct launch *l)
{
	if (l->console_log)
		return l->console_log;
	return l->ssh ? l->console_file : NULL;
}

int unix_connect(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = (timeout_ms % 1000) * 1000 };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	if (fd_cloexec(fd, false) < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

ssize_t read_until(int fd, void *buf, size_t size, long long deadline)
{
	for (;;) {
		ssize_t n = read(fd, buf, size);

		if (n >= 0)
			return n;
		if (errno != EINTR || now_ms() >= deadline)
			return -errno;
	}
}

int find_program(const char *name)
{
	const char *path = getenv("PATH");

	if (strchr(name, '/'))
		return access(name, X_OK) < 0 ? -errno : 0;
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		_cleanup_free_ char *p = NULL;

		if (asprintf(&p, "%.*s/%s", (int)n, n ? path : ".", name) < 0) {
			p = NULL;
			return -ENOMEM;
		}
		if (access(p, X_OK) == 0)
			return 0;
		path += n;
		if (*path == ':')
			path++;
	}
	return -ENOENT;
}
