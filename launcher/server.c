// SPDX-License-Identifier: MIT
/*
 * server.c - the NBD server side of a launch.  With --export the launcher
 * starts erofs-nbd itself the way systemd would: it binds and listens on
 * $RUN/nbd.sock, hands the socket over as fd 3 with LISTEN_FDS=1,
 * LISTEN_PID and LISTEN_FDNAMES=nbd (sd_listen_fds(3), vfkit-launch.md
 * §4.1), and reads READY=1 from a datagram socket named by NOTIFY_SOCKET
 * (sd_notify(3), §4.2).  With --connect it parses the URI of a server
 * already running (NBD doc/uri.md) and checks that it answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "launcher/launch.h"
#include "server/cleanup.h"

static const char *default_export(const struct launch *l)
{
	return l->boot == BOOT_EFI ? "disk" : "root";
}

/* nbd+unix:///NAME?socket=PATH: empty authority, one query key. */
static int parse_unix_uri(struct launch *l, char *rest)
{
	char *q, *key;

	if (rest[0] != '/')
		return -EINVAL;		/* a host part is not allowed */
	q = strchr(rest, '?');
	if (!q)
		return -EINVAL;
	*q++ = '\0';
	l->addr.export_name = strdup(rest + 1);
	for (key = strtok(q, "&"); key; key = strtok(NULL, "&")) {
		if (strncmp(key, "socket=", 7) != 0)
			return -EINVAL;
		free(l->addr.socket_path);
		l->addr.socket_path = strdup(key + 7);
		if (!l->addr.socket_path)
			return -ENOMEM;
		if (uri_decode(l->addr.socket_path) < 0)
			return -EINVAL;
	}
	if (!l->addr.export_name)
		return -ENOMEM;
	if (!l->addr.socket_path || l->addr.socket_path[0] != '/')
		return -EINVAL;
	return uri_decode(l->addr.export_name);
}

/* nbd://HOST[:PORT][/NAME], HOST may be [IPv6]. */
static int parse_tcp_uri(struct launch *l, char *rest)
{
	char *slash = strchr(rest, '/'), *host = rest, *port = NULL;

	if (strchr(rest, '?'))
		return -EINVAL;
	l->addr.export_name = strdup(slash ? slash + 1 : "");
	if (slash)
		*slash = '\0';
	if (host[0] == '[') {
		char *end = strchr(host, ']');

		if (!end)
			return -EINVAL;
		*end = '\0';
		host++;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return -EINVAL;
	} else {
		port = strchr(host, ':');
		if (port)
			*port++ = '\0';
	}
	if (!*host || (port && !*port))
		return -EINVAL;
	l->addr.host = strdup(host);
	l->addr.port = strdup(port ? port : "10809");
	if (!l->addr.host || !l->addr.port || !l->addr.export_name)
		return -ENOMEM;
	unsigned int portno;

	if (parse_uint(l->addr.port, 1, 65535, &portno) < 0)
		return -EINVAL;
	return uri_decode(l->addr.export_name);
}

int server_parse_uri(struct launch *l)
{
	_cleanup_free_ char *u = NULL;
	int r;

	if (l->connect_uri) {
		u = strdup(l->connect_uri);
		if (!u)
			return -ENOMEM;
		if (!strncmp(u, "nbd+unix://", 11)) {
			r = parse_unix_uri(l, u + 11);
		} else if (!strncmp(u, "nbd://", 6)) {
			r = parse_tcp_uri(l, u + 6);
		} else if (!strncmp(u, "nbds", 4)) {
			log_error("--connect '%s': TLS (nbds) is not supported", l->connect_uri);
			return -EINVAL;
		} else {
			r = -EINVAL;
		}
		if (r == -EINVAL)
			log_error("--connect '%s': not an NBD URI (nbd+unix:///NAME?socket=PATH"
				  " or nbd://HOST[:PORT]/NAME)", l->connect_uri);
		if (r < 0)
			return r;
	} else {
		l->addr.socket_path = strdup(l->nbd_sock);
		if (!l->addr.socket_path)
			return -ENOMEM;
	}
	if (!l->addr.export_name || !*l->addr.export_name) {
		free(l->addr.export_name);
		l->addr.export_name = strdup(default_export(l));
		if (!l->addr.export_name)
			return -ENOMEM;
	}
	return 0;
}

/* erofs-nbd next to this program, else from $PATH. */
static char *find_server(void)
{
	_cleanup_free_ char *self = self_path();
	char *slash = self ? strrchr(self, '/') : NULL, *p;

	if (slash) {
		*slash = '\0';
		p = path_join(self, "erofs-nbd");
		if (p && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return strdup("erofs-nbd");
}

/* Adds "OPTION VALUE" for each of the n pairs whose value is set. */
static void add_options(struct strv *a, const char *const pairs[][2], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (pairs[i][1]) {
			strv_add(a, pairs[i][0]);
			strv_add(a, pairs[i][1]);
		}
}

int server_build_argv(struct launch *l)
{
	struct strv *a = &l->server_argv;
	/* What to serve: exactly one of the three was given. */
	const char *const source[][2] = {
		{ "--export", l->export_dir }, { "--image", l->image },
		{ "--storage-root", l->storage_root }, { "--lowerdir", l->lowerdir },
		{ "--upperdir", l->upperdir },
	};

	if (l->server_path)
		strv_add(a, l->server_path);
	else
		strv_push_owned(a, find_server());
	strv_add(a, "--foreground");
	add_options(a, source, ARRAY_SIZE(source));
	strv_add(a, "--exit-with-parent");
	/*
	 * The ESP is built by the server: the EFI boot options are its, and
	 * a disk without one would leave the firmware in its shell, so
	 * none is an error; a kernel boot needs none (and no warning).
	 */
	strv_add(a, "--esp");
	strv_add(a, l->boot == BOOT_EFI ? "required" : "no");
	if (l->boot == BOOT_EFI) {
		const char *const pairs[][2] = {
			{ "--arch", l->arch }, { "--kernel", l->kernel },
			{ "--initrd", l->initrd }, { "--kver", l->kver },
			{ "--efi-loader", l->efi_loader },
		};

		add_options(a, pairs, ARRAY_SIZE(pairs));
		/* What the server adds to its root=PARTUUID=... line and the
		 * tree's own arguments in the loader entry: what the launcher
		 * needs (boot_launcher_args(): the console we wire up,
		 * systemd.volatile=overlay, the SSH credential without SMBIOS;
		 * a BLS "options" line carries quotes), then --cmdline. */
		_cleanup_free_ char *ours = boot_launcher_args(l, true);

		if (!ours)
			return -ENOMEM;
		strv_add(a, "--cmdline");
		strv_addf(a, "%s%s%s", ours, l->cmdline ? " " : "", l->cmdline ? l->cmdline : "");
	}
	for (size_t i = 0; i < l->server_opts.n; i++)
		strv_add(a, l->server_opts.v[i]);
	return strv_check(a);
}

static int bind_unix(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || fd_cloexec(fd, false) < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	/* The directory is 0700 already; the socket itself only for us too. */
	if (chmod(path, 0600) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int server_start(struct launch *l)
{
	_cleanup_free_ char *notify_env = NULL;
	char *env[2] = { NULL, NULL };
	_cleanup_close_ int devnull = -1;
	pid_t pid;
	int fd;

	fd = bind_unix(l->nbd_sock, SOCK_STREAM);
	if (fd < 0)
		return log_errno(fd, "binding '%s'", l->nbd_sock);
	l->listen_fd = fd;
	if (listen(fd, 64) < 0)
		return log_errno(-errno, "listening on '%s'", l->nbd_sock);

	fd = bind_unix(l->notify_sock, SOCK_DGRAM);
	if (fd < 0)
		return log_errno(fd, "binding '%s'", l->notify_sock);
	l->notify_fd = fd;
	if (fd_cloexec(fd, true) < 0)
		return -errno;
#ifdef SO_PASSCRED
	/* Know who sent READY=1: only the server's own messages count. */
	int one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		return log_errno(-errno, "SO_PASSCRED on '%s'", l->notify_sock);
#endif

	if (asprintf(&notify_env, "NOTIFY_SOCKET=%s", l->notify_sock) < 0) {
		notify_env = NULL;
		return -ENOMEM;
	}
	env[0] = notify_env;
	/* stdin and stdout to /dev/null: the URI it prints is not ours to
	 * show, and our stdout may be the guest console. */
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		return log_errno(-errno, "/dev/null");
	pid = sup_spawn(l->server_argv.v, env, devnull, devnull, true, l->listen_fd);
	if (pid < 0)
		return log_errno(pid, "starting '%s'", l->server_argv.v[0]);
	l->server_pid = pid;
	log_info("started erofs-nbd (pid %d) on '%s'", (int)pid, l->nbd_sock);
	/* The server owns the listening socket now. */
	close(l->listen_fd);
	l->listen_fd = -1;
	return 0;
}

int server_read_notify(struct launch *l)
{
	char buf[4096];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
	union {
		struct cmsghdr align;
		char space[256];
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
	ssize_t n;
	int ready = 0;

	n = recvmsg(l->notify_fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	buf[n] = '\0';
#ifdef SCM_CREDENTIALS
	{
		pid_t sender = 0;

		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred uc;

				memcpy(&uc, CMSG_DATA(c), sizeof(uc));
				sender = uc.pid;
			}
		if (sender != l->server_pid) {
			log_debug("ignoring a notification from pid %d", (int)sender);
			return 0;
		}
	}
#endif
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strcmp(line, "READY=1"))
			ready = 1;
		else if (!strncmp(line, "STATUS=", 7))
			log_info("erofs-nbd: %s", line + 7);
		else if (!strncmp(line, "ERRNO=", 6))
			log_info("erofs-nbd reports errno %s", line + 6);
		else
			log_debug("erofs-nbd notification '%s'", line);
	}
	return ready;
}

/* Connects to HOST:PORT with a bounded wait. */
static int tcp_connect(const char *host, const char *port, int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = (timeout_ms % 1000) * 1000 };
	int fd = -1, r;

	r = getaddrinfo(host, port, &hints, &res);
	if (r)
		return -EHOSTUNREACH;
	r = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		r = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : r;
}

int server_probe(struct launch *l)
{
	char magic[8];
	size_t got = 0;
	_cleanup_close_ int fd = -1;

	if (l->addr.socket_path)
		fd = unix_connect(l->addr.socket_path, 5000);
	else
		fd = tcp_connect(l->addr.host, l->addr.port, 5000);
	if (fd < 0)
		return log_errno(fd, "connecting to '%s'", l->connect_uri);
	/* An ssh -L forward accepts even when nothing answers behind it:
	 * wait for the server's greeting (NBD "NBDMAGIC"). */
	while (got < sizeof(magic)) {
		ssize_t n = read(fd, magic + got, sizeof(magic) - got);

		if (n <= 0) {
			log_error("'%s' accepted the connection but sent no NBD greeting",
				  l->connect_uri);
			return -EPROTO;
		}
		got += (size_t)n;
	}
	if (memcmp(magic, "NBDMAGIC", 8) != 0) {
		log_error("'%s' is not an NBD server (no NBDMAGIC greeting)", l->connect_uri);
		return -EPROTO;
	}
	return 0;
}
