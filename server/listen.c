/* SPDX-License-Identifier: MIT */
/*
 * listen.c - listening sockets, the private runtime directory, NBD URIs
 * and option-value parsing for the program (see listen.h).
 *
 * URIs follow NetworkBlockDevice/nbd doc/uri.md on top of RFC 3986: the
 * export name is the path after the leading '/', a Unix socket is the
 * "socket" query parameter, IPv6 literals go in brackets (RFC 2732).
 * vsock listeners use libnbd's "nbd+vsock://CID:PORT/EXPORT" form.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "server/cleanup.h"
#include "server/listen.h"

/* ------------------------------------------------------------------ */
/* Unix listeners                                                      */
/* ------------------------------------------------------------------ */

/* Fills a sockaddr_un with path; -ENAMETOOLONG if it does not fit. */
static int make_sockaddr_un(const char *path, struct sockaddr_un *sun,
			    socklen_t *ret_len)
{
	size_t len = strlen(path);

	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, len + 1);
	*ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	return 0;
}

/*
 * Removes a socket left at path by a server that is gone.  Returns 0 when
 * path is free now, -EADDRINUSE if something answers there, -EEXIST if
 * path is not a socket, or another -errno.
 */
static int remove_stale_socket(const char *path, const struct sockaddr_un *sun,
			       socklen_t len)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;

	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A live server accepts, or its backlog is full (EAGAIN). */
	if (connect(fd, (const struct sockaddr *)sun, len) == 0 || errno == EAGAIN)
		return -EADDRINUSE;
	if (errno != ECONNREFUSED)
		return errno == ENOENT ? 0 : -errno;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int absolute_path(const char *path, char **ret)
{
	char *abs;

	if (path[0] == '/') {
		abs = strdup(path);
	} else {
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		if (!cwd)
			return -errno;
		if (asprintf(&abs, "%s/%s", cwd, path) < 0)
			abs = NULL;
	}
	if (!abs)
		return -ENOMEM;
	*ret = abs;
	return 0;
}

int listen_unix(const char *path, struct listener *ret)
{
	struct sockaddr_un sun;
	socklen_t len;
	struct stat st;
	mode_t old_umask;
	int r;

	r = make_sockaddr_un(path, &sun, &len);
	if (r < 0)
		return r;
	_cleanup_free_ char *abs = NULL;
	r = absolute_path(path, &abs);
	if (r < 0)
		return r;
	r = remove_stale_socket(path, &sun, len);
	if (r < 0)
		return r;

	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/*
	 * The socket file gets 0777 & ~umask: only our user may connect.
	 * main is single-threaded here, so changing the umask is safe.
	 */
	old_umask = umask(0177);
	r = bind(fd, (const struct sockaddr *)&sun, len) < 0 ? -errno : 0;
	umask(old_umask);
	if (r < 0)
		return r;
	if (lstat(path, &st) < 0 || listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		(void)unlink(path);
		return r;
	}

	memset(ret, 0, sizeof(*ret));
	ret->family = AF_UNIX;
	ret->dev = st.st_dev;
	ret->ino = st.st_ino;
	ret->ctime = st.st_ctim;
	ret->path = TAKE_PTR(abs);
	ret->fd = TAKE_FD(fd);
	return 0;
}

/* ------------------------------------------------------------------ */
/* TCP listeners                                                       */
/* ------------------------------------------------------------------ */

int listen_tcp(const char *host, uint16_t port, struct listener *ret,
	       int *ret_gai_err)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	char service[8];
	int r, gai;

	snprintf(service, sizeof(service), "%u", port);
	gai = getaddrinfo(host, service, &hints, &res);
	if (gai != 0) {
		if (ret_gai_err)
			*ret_gai_err = gai;
		if (gai == EAI_MEMORY)
			return -ENOMEM;
		if (gai == EAI_SYSTEM)
			return errno ? -errno : -EINVAL;
		return -EINVAL;
	}

	r = -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int one = 1;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		_cleanup_close_ int fd = socket(ai->ai_family,
						SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		/* Restart without waiting for TIME_WAIT connections to end. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, SOMAXCONN) < 0) {
			r = -errno;
			continue;
		}
		struct listener l = { .fd = -1, .family = ai->ai_family };
		l.addrlen = sizeof(l.addr);
		if (getsockname(fd, (struct sockaddr *)&l.addr, &l.addrlen) < 0) {
			r = -errno;
			continue;
		}
		l.fd = TAKE_FD(fd);
		*ret = l;
		r = 0;
		break;
	}
	freeaddrinfo(res);
	return r;
}

/* ------------------------------------------------------------------ */
/* vsock listeners                                                     */
/* ------------------------------------------------------------------ */

int listen_vsock(uint32_t port, struct listener *ret)
{
	struct sockaddr_vm svm = {
		.svm_family = AF_VSOCK,
		.svm_cid = VMADDR_CID_ANY,
		.svm_port = port,
	};

	_cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno == EINVAL || errno == EPROTONOSUPPORT ?
			-EAFNOSUPPORT : -errno;
	if (bind(fd, (const struct sockaddr *)&svm, sizeof(svm)) < 0 ||
	    listen(fd, SOMAXCONN) < 0)
		return -errno;

	struct listener l = { .fd = -1, .family = AF_VSOCK };
	l.addrlen = sizeof(l.addr);
	if (getsockname(fd, (struct sockaddr *)&l.addr, &l.addrlen) < 0)
		return -errno;
	l.fd = TAKE_FD(fd);
	*ret = l;
	return 0;
}

int listen_parse_vsock_port(const char *arg, uint32_t *ret_port)
{
	uint64_t v;

	if (opt_parse_uint(arg, VMADDR_PORT_ANY - 1, &v) < 0)
		return -EINVAL;
	*ret_port = v == 0 ? VMADDR_PORT_ANY : (uint32_t)v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Sockets a service manager passed us (socket activation)             */
/* ------------------------------------------------------------------ */

int listen_adopt(int fd, struct listener *ret)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss), optlen;
	struct stat st;
	int type, acceptconn, fl;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	optlen = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0)
		return -errno;
	if (type != SOCK_STREAM)
		return -ESOCKTNOSUPPORT;
	optlen = sizeof(acceptconn);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acceptconn, &optlen) < 0)
		return -errno;
	if (!acceptconn)
		return -EINVAL;
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;

	struct listener l = { .fd = -1, .family = ss.ss_family, .adopted = true };
	switch (ss.ss_family) {
	case AF_UNIX: {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
		size_t n = len > offsetof(struct sockaddr_un, sun_path) ?
			len - offsetof(struct sockaddr_un, sun_path) : 0;

		if (n > 0 && sun->sun_path[0] == '\0') {
			/* Abstract: a NUL, then n - 1 bytes; shown as "@name". */
			l.path = malloc(n + 1);
			if (l.path) {
				l.path[0] = '@';
				memcpy(l.path + 1, sun->sun_path + 1, n - 1);
				l.path[n] = '\0';
			}
		} else {
			l.path = strndup(sun->sun_path, n);
		}
		if (!l.path)
			return -ENOMEM;
		break;
	}
	case AF_INET:
	case AF_INET6:
	case AF_VSOCK:
		l.addr = ss;
		l.addrlen = len;
		break;
	default:
		return -EAFNOSUPPORT;
	}
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) {
		int r = -errno;
		free(l.path);
		return r;
	}
	l.fd = fd;
	*ret = l;
	return 0;
}

void listener_close(struct listener *l)
{
	struct stat st;

	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
	}
	if (l->path) {
		/*
		 * Remove the file only if it is ours (an activated socket
		 * belongs to the service manager) and nobody replaced it since.
		 */
		if (!l->adopted && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
		    st.st_dev == l->dev && st.st_ino == l->ino &&
		    st.st_ctim.tv_sec == l->ctime.tv_sec &&
		    st.st_ctim.tv_nsec == l->ctime.tv_nsec)
			(void)unlink(l->path);
		free(l->path);
		l->path = NULL;
	}
}

/* This machine's vsock CID, or VMADDR_CID_LOCAL if /dev/vsock does not say. */
static uint32_t local_vsock_cid(void)
{
	uint32_t cid = VMADDR_CID_LOCAL;
	_cleanup_close_ int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);

	if (fd >= 0 && ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
		cid = VMADDR_CID_LOCAL;
	if (cid == VMADDR_CID_ANY)
		cid = VMADDR_CID_LOCAL;
	return cid;
}

int listener_uri(const struct listener *l, const char *export_name,
		 char **ret_uri)
{
	if (l->family == AF_UNIX && l->path[0] == '@') {
		/* An abstract socket: the name starts with a NUL (doc/uri.md). */
		_cleanup_free_ char *name = strdup(l->path);
		_cleanup_free_ char *exp = uri_escape(export_name, strlen(export_name));
		_cleanup_free_ char *sock = NULL;

		if (!name || !exp)
			return -ENOMEM;
		name[0] = '\0';
		sock = uri_escape(name, strlen(l->path));
		if (!sock)
			return -ENOMEM;
		if (asprintf(ret_uri, "nbd+unix:///%s?socket=%s", exp, sock) < 0)
			return -ENOMEM;
		return 0;
	}
	if (l->family == AF_UNIX)
		return uri_format_unix(l->path, export_name, ret_uri);
	if (l->family == AF_VSOCK) {
		const struct sockaddr_vm *svm = (const struct sockaddr_vm *)&l->addr;
		uint32_t cid = svm->svm_cid;

		if (cid == VMADDR_CID_ANY)
			cid = local_vsock_cid();
		return uri_format_vsock(cid, svm->svm_port, export_name, ret_uri);
	}
	return uri_format_inet((const struct sockaddr *)&l->addr, export_name,
			       ret_uri);
}

/* ------------------------------------------------------------------ */
/* NBD URIs                                                            */
/* ------------------------------------------------------------------ */

static bool uri_keep(unsigned char c)
{
	/* RFC 3986 section 2.3 unreserved, plus '/' (path and query allow it). */
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~' || c == '/';
}

char *uri_escape(const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *p;

	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	out = malloc(len * 3 + 1);
	if (!out)
		return NULL;
	p = out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (uri_keep(c)) {
			*p++ = (char)c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = '\0';
	return out;
}

int uri_format_unix(const char *socket_path, const char *export_name,
		    char **ret_uri)
{
	_cleanup_free_ char *exp = uri_escape(export_name, strlen(export_name));
	_cleanup_free_ char *sock = uri_escape(socket_path, strlen(socket_path));

	if (!exp || !sock)
		return -ENOMEM;
	if (asprintf(ret_uri, "nbd+unix:///%s?socket=%s", exp, sock) < 0)
		return -ENOMEM;
	return 0;
}

int uri_format_vsock(uint32_t cid, uint32_t port, const char *export_name,
		     char **ret_uri)
{
	_cleanup_free_ char *exp = uri_escape(export_name, strlen(export_name));

	if (!exp)
		return -ENOMEM;
	if (asprintf(ret_uri, "nbd+vsock://%" PRIu32 ":%" PRIu32 "/%s", cid, port,
		     exp) < 0)
		return -ENOMEM;
	return 0;
}

int uri_format_inet(const struct sockaddr *sa, const char *export_name,
		    char **ret_uri)
{
	char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 8];
	unsigned int port;

	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, sa, sizeof(sin));
		/* A wildcard listener is reachable locally on loopback. */
		if (sin.sin_addr.s_addr == htonl(INADDR_ANY))
			sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (!inet_ntop(AF_INET, &sin.sin_addr, host, sizeof(host)))
			return -errno;
		port = ntohs(sin.sin_port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		char addr[INET6_ADDRSTRLEN], ifname[IF_NAMESIZE];

		memcpy(&sin6, sa, sizeof(sin6));
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr))
			sin6.sin6_addr = in6addr_loopback;
		if (!inet_ntop(AF_INET6, &sin6.sin6_addr, addr, sizeof(addr)))
			return -errno;
		if (sin6.sin6_scope_id == 0)
			snprintf(host, sizeof(host), "[%s]", addr);
		else if (if_indextoname(sin6.sin6_scope_id, ifname))
			/* RFC 6874: the zone's '%' is itself escaped. */
			snprintf(host, sizeof(host), "[%s%%25%s]", addr, ifname);
		else
			snprintf(host, sizeof(host), "[%s%%25%u]", addr,
				 sin6.sin6_scope_id);
		port = ntohs(sin6.sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}

	_cleanup_free_ char *exp = uri_escape(export_name, strlen(export_name));
	if (!exp)
		return -ENOMEM;
	if (asprintf(ret_uri, "nbd://%s:%u/%s", host, port, exp) < 0)
		return -ENOMEM;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Option values                                                       */
/* ------------------------------------------------------------------ */

/*
 * Parses the leading decimal digits of s (at least one) into *ret and
 * points *ret_end past them.  Returns 0, -EINVAL or -ERANGE.
 */
static int parse_digits(const char *s, uint64_t *ret, const char **ret_end)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned int d = (unsigned int)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	*ret_end = p;
	return 0;
}

int opt_parse_uint(const char *s, uint64_t max, uint64_t *ret)
{
	const char *end;
	uint64_t v;
	int r;

	r = parse_digits(s, &v, &end);
	if (r < 0)
		return r;
	if (*end)
		return -EINVAL;
	if (v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int opt_parse_size(const char *s, uint64_t *ret_bytes)
{
	unsigned int shift = 0;
	const char *end;
	uint64_t v;
	int r;

	r = parse_digits(s, &v, &end);
	if (r < 0)
		return r;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		end++;
		if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0)
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -ERANGE;
		v <<= shift;
	}
	*ret_bytes = v;
	return 0;
}

int opt_parse_epoch(const char *s, int64_t *ret_sec)
{
	uint64_t v;
	int r;

	r = opt_parse_uint(s, INT64_MAX, &v);
	if (r < 0)
		return r;
	*ret_sec = (int64_t)v;
	return 0;
}

bool opt_block_size_ok(uint64_t bytes)
{
	return bytes >= 512 && bytes <= 65536 && (bytes & (bytes - 1)) == 0;
}

int listen_parse_hostport(const char *arg, char **ret_host, uint16_t *ret_port)
{
	_cleanup_free_ char *host = NULL;
	const char *port_str;
	uint64_t port;
	int r;

	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');

		if (!close || close == arg + 1 || close[1] != ':')
			return -EINVAL;
		host = strndup(arg + 1, (size_t)(close - arg - 1));
		port_str = close + 2;
	} else {
		const char *colon = strrchr(arg, ':');

		if (!colon) {
			host = strdup(LISTEN_DEFAULT_HOST);
			port_str = arg;
		} else {
			/* An IPv6 literal needs brackets; an empty host is a typo. */
			if (colon == arg || memchr(arg, ':', (size_t)(colon - arg)))
				return -EINVAL;
			host = strndup(arg, (size_t)(colon - arg));
			port_str = colon + 1;
		}
	}
	if (!host)
		return -ENOMEM;
	r = opt_parse_uint(port_str, 65535, &port);
	if (r < 0)
		return -EINVAL;
	*ret_host = TAKE_PTR(host);
	*ret_port = (uint16_t)port;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Runtime directory                                                   */
/* ------------------------------------------------------------------ */

const char *listen_runtime_base(void)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");

	if (dir && *dir)
		return dir;
	if (geteuid() == 0)
		return "/run";
	dir = getenv("TMPDIR");
	if (dir && *dir)
		return dir;
	return "/tmp";
}

int listen_runtime_dir(char **ret_dir)
{
	char *dir;

	if (asprintf(&dir, "%s/erofs-nbd.XXXXXX", listen_runtime_base()) < 0)
		return -ENOMEM;
	/* mkdtemp() creates the directory mode 0700. */
	if (!mkdtemp(dir)) {
		int r = -errno;
		free(dir);
		return r;
	}
	*ret_dir = dir;
	return 0;
}
