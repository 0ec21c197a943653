/* SPDX-License-Identifier: MIT */
/*
 * listen.h - the program's listening sockets and what it tells clients
 * about them: Unix and TCP listeners, the private runtime directory used
 * when no listener is given, NBD URI formatting (NetworkBlockDevice/nbd
 * doc/uri.md, RFC 3986), and the option-value parsers main.c uses (kept
 * here, in the library, so that tests/unit/test-listen.c can reach them).
 *
 * It also adopts sockets a service manager opened for us (socket
 * activation, see sdnotify.h) and listens on AF_VSOCK (vsock(7)), the
 * host-guest transport of virtual machines.
 *
 * Behaviour follows nbdkit and qemu-nbd: TCP listens on loopback unless
 * told otherwise, a Unix socket is created mode 0600, a stale socket left
 * by a dead server is replaced but a live one or a non-socket never is.
 *
 * Nothing here logs: functions return 0 or -errno and main.c reports.
 */
#ifndef EROFS_NBD_LISTEN_H
#define EROFS_NBD_LISTEN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/* The NBD port assigned by IANA, used when a URI leaves the port out. */
#define NBD_DEFAULT_PORT 10809

/* What --tcp listens on when no HOST is given: loopback only. */
#define LISTEN_DEFAULT_HOST "127.0.0.1"

struct listener {
	int fd;				/* listening socket, -1 once closed */
	int family;			/* AF_UNIX, AF_INET, AF_INET6 or AF_VSOCK */
	/*
	 * Inherited from a service manager (socket activation): its file
	 * belongs to the manager and is never removed.  For AF_UNIX, path
	 * is then the bound path as getsockname() reports it (for the URI).
	 */
	bool adopted;
	/*
	 * AF_UNIX: absolute path of the socket file we created (so it can be
	 * removed after chdir("/")), and its identity: listener_close()
	 * removes the file only if it is still that socket.  The change
	 * time is part of it because ext4 hands a freed inode number to the
	 * next file, e.g. a socket another server bound after removing ours.
	 */
	char *path;
	dev_t dev;
	ino_t ino;
	struct timespec ctime;
	/* AF_INET / AF_INET6 / AF_VSOCK: the bound address, real port. */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

/*
 * Makes path absolute against the working directory (a server in the
 * background serves from "/"): *ret is a malloc'ed copy, the working
 * directory and path joined with '/' unless path starts with one.
 * Returns 0, -ENOMEM, or getcwd()'s -errno.
 */
int absolute_path(const char *path, char **ret);

/*
 * Creates a listening Unix stream socket at path, mode 0600 (bound under
 * umask 0177), close-on-exec.  An existing socket nobody answers on (a
 * stale one: connect() gives ECONNREFUSED) is removed first.  Fills *ret.
 * Returns 0, or -EADDRINUSE (a server answers on path), -EEXIST (path
 * exists and is not a socket), -ENAMETOOLONG (longer than sun_path), or
 * the errno of socket/bind/listen/getcwd.
 */
int listen_unix(const char *path, struct listener *ret);

/*
 * Creates a listening TCP socket on host:port (numeric port; 0 picks an
 * ephemeral one, which *ret->addr then shows), with SO_REUSEADDR,
 * close-on-exec.  host is a literal address or a name; the first address
 * getaddrinfo() returns that binds is used.  TCP_NODELAY is set by the
 * server on each accepted connection, not here.  Returns 0, -EINVAL
 * (host does not resolve; *ret_gai_err then holds the getaddrinfo()
 * code if ret_gai_err is not NULL), or the errno of socket/bind/listen.
 */
int listen_tcp(const char *host, uint16_t port, struct listener *ret,
	       int *ret_gai_err);

/*
 * Creates a listening AF_VSOCK stream socket on port (VMADDR_PORT_ANY,
 * 0xffffffff, picks a free one) of every local CID (VMADDR_CID_ANY),
 * close-on-exec.  Returns 0, -EAFNOSUPPORT when the kernel has no vsock
 * support, or the errno of socket/bind/listen.  vsock(7).
 */
int listen_vsock(uint32_t port, struct listener *ret);

/*
 * Adopts an inherited listening socket (socket activation, sd_listen_fds(3)):
 * checks that fd is a socket (fstat S_ISSOCK) of type SOCK_STREAM that
 * listens (SO_ACCEPTCONN), of family AF_UNIX, AF_INET, AF_INET6 or
 * AF_VSOCK, sets close-on-exec and fills *ret with ret->adopted set.  A
 * Unix socket's path comes from getsockname(); an abstract one ("@name")
 * or an unnamed one is accepted, its path then starts with '@' or is "".
 * Returns 0, -ENOTSOCK, -ESOCKTNOSUPPORT (not a stream socket),
 * -EINVAL (not listening), -EAFNOSUPPORT, -ENOMEM or the errno of
 * fstat/getsockopt/getsockname/fcntl.  The fd is not closed on failure.
 */
int listen_adopt(int fd, struct listener *ret);

/*
 * Parses a --vsock PORT argument: decimal 0..4294967294 (0xffffffff is
 * VMADDR_PORT_ANY; "0" also picks a free port, as --tcp 0 does).
 * Returns 0 with the port (VMADDR_PORT_ANY for 0) or -EINVAL.
 */
int listen_parse_vsock_port(const char *arg, uint32_t *ret_port);

/*
 * Closes the socket and, for a Unix listener, removes its file if it is
 * still the socket we bound (same device, inode and change time).  Frees l->path.
 * Safe to call twice and on a zeroed struct with fd = -1.
 */
void listener_close(struct listener *l);

/*
 * Formats the NBD URI of export_name ("" for the default export) on l:
 * "nbd+unix:///EXPORT?socket=PATH", "nbd://HOST:PORT/EXPORT" (wildcard
 * addresses 0.0.0.0 and :: print as the loopback address of the same
 * family, which is what a local client can connect to) or
 * "nbd+vsock://CID:PORT/EXPORT" (libnbd's scheme; VMADDR_CID_ANY prints
 * as this machine's CID from /dev/vsock, else as 1, VMADDR_CID_LOCAL).
 * An abstract Unix socket prints as its "@name" form.  Returns 0 and a
 * malloc'ed string in *ret_uri, -ENOMEM or -EAFNOSUPPORT.
 */
int listener_uri(const struct listener *l, const char *export_name,
		 char **ret_uri);

/*
 * URI formatting, per NBD doc/uri.md and RFC 3986.  The export name is the
 * URI path after its leading '/'; the socket path is the "socket" query
 * parameter.  Every byte outside RFC 3986's unreserved set (ALPHA DIGIT
 * "-" "." "_" "~") and "/" is percent-encoded as %XX (upper-case hex), so
 * "&", "=", "+", "%", "?", "#", ",", spaces and non-ASCII bytes are
 * always safe.  An IPv6 host goes in brackets (RFC 2732), with a zone as
 * "%25" + interface (RFC 6874).  Return 0 with a malloc'ed string, or
 * -ENOMEM; uri_format_inet() also -EAFNOSUPPORT for other families.
 */
int uri_format_unix(const char *socket_path, const char *export_name,
		    char **ret_uri);
int uri_format_inet(const struct sockaddr *sa, const char *export_name,
		    char **ret_uri);
int uri_format_vsock(uint32_t cid, uint32_t port, const char *export_name,
		     char **ret_uri);

/*
 * Percent-encodes len bytes of s as above; returns a malloc'ed string or
 * NULL when out of memory.
 */
char *uri_escape(const char *s, size_t len);

/*
 * Parses a --tcp argument: "PORT", "HOST:PORT" or "[IPV6]:PORT".  HOST
 * defaults to LISTEN_DEFAULT_HOST; an unbracketed host may not contain
 * ':' (so "::1:10809" is refused: write "[::1]:10809").  PORT is decimal,
 * 0..65535.  Returns 0 with a malloc'ed host in *ret_host and the port in
 * *ret_port, -EINVAL for a malformed argument, or -ENOMEM.
 */
int listen_parse_hostport(const char *arg, char **ret_host, uint16_t *ret_port);

/*
 * Picks the directory a private runtime directory goes in, from the
 * environment: $XDG_RUNTIME_DIR if set and not empty; else /run when
 * running as root (euid 0); else $TMPDIR if set and not empty; else /tmp.
 * The string returned points into the environment or is a literal.
 */
const char *listen_runtime_base(void);

/*
 * Creates a private directory BASE/erofs-nbd.XXXXXX, mode 0700 (mkdtemp),
 * with BASE from listen_runtime_base().  Returns 0 and the malloc'ed path
 * in *ret_dir, or -ENOMEM or the errno of mkdtemp.
 */
int listen_runtime_dir(char **ret_dir);

/*
 * Option-value parsers.  Each takes the whole string and refuses empty
 * input, signs, spaces and trailing junk.
 *
 * opt_parse_size: a byte count, decimal, with an optional binary suffix
 * k/K (KiB), m/M (MiB), g/G (GiB), optionally followed by "iB" ("4k",
 * "4K", "4KiB" are all 4096).  Returns 0 or -EINVAL, -ERANGE on overflow.
 *
 * opt_parse_uint: decimal, 0..max.  Returns 0, -EINVAL or -ERANGE.
 *
 * opt_parse_epoch: SOURCE_DATE_EPOCH, decimal seconds since the epoch,
 * 0..INT64_MAX (reproducible-builds.org/specs/source-date-epoch).
 * Returns 0, -EINVAL or -ERANGE.
 */
int opt_parse_size(const char *s, uint64_t *ret_bytes);
int opt_parse_uint(const char *s, uint64_t max, uint64_t *ret);
int opt_parse_epoch(const char *s, int64_t *ret_sec);

/*
 * Returns true if bytes is a power of two in 512..65536, the block sizes
 * --block-size accepts.
 */
bool opt_block_size_ok(uint64_t bytes);

#endif
