/* SPDX-License-Identifier: MIT */
/*
 * test-listen.c - unit tests for server/listen.c: NBD URI formatting and
 * percent-encoding (expected strings written from NBD doc/uri.md and
 * RFC 3986 by hand), --tcp HOST:PORT parsing, size / number / epoch
 * parsing, the runtime directory, and Unix/TCP listeners on real sockets.
 * Also server/sdnotify.c and the vsock and adopted listeners: LISTEN_PID /
 * LISTEN_FDS decisions and LISTEN_FDNAMES splitting as sd_listen_fds(3)
 * describes them, NOTIFY_SOCKET addresses as sd_notify(3) does (sockaddr
 * lengths computed by hand from offsetof(sun_path)), a real datagram
 * received from notify_send(), adopting inherited sockets and refusing
 * what is not a listening stream socket, vsock URIs (libnbd's
 * nbd+vsock://CID:PORT/EXPORT), the pid file, and --user/--group lookups.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/vm_sockets.h>

#include "server/caps.h"
#include "server/listen.h"
#include "server/sdnotify.h"

/* ---- percent-encoding and URIs ---- */

static void check_escape(const char *in, size_t len, const char *want)
{
	char *got = uri_escape(in, len);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_uri_escape(void **state)
{
	check_escape("", 0, "");
	/* RFC 3986 2.3 unreserved characters and '/' stay as they are. */
	check_escape("AZaz09-._~/", 11, "AZaz09-._~/");
	check_escape("hello world", 11, "hello%20world");
	check_escape("%", 1, "%25");
	/* Query delimiters must not end the socket parameter early. */
	check_escape("a&b=c+d?e#f", 11, "a%26b%3Dc%2Bd%3Fe%23f");
	/* vfkit splits its --device option at commas. */
	check_escape("s,1", 3, "s%2C1");
	/* UTF-8 'é' is C3 A9; hex digits are upper case (RFC 3986 2.1). */
	check_escape("\xc3\xa9", 2, "%C3%A9");
	/* An abstract socket name starts with NUL (doc/uri.md). */
	check_escape("\0/abstract", 10, "%00/abstract");
	check_escape("\x7f\x01:@", 4, "%7F%01%3A%40");
}

static void test_uri_unix(void **state)
{
	char *uri = NULL;

	assert_int_equal(uri_format_unix("/run/erofs-nbd.Ab3xYz/nbd.sock", "", &uri), 0);
	assert_string_equal(uri, "nbd+unix:///?socket=/run/erofs-nbd.Ab3xYz/nbd.sock");
	free(uri);

	/* doc/uri.md: nbd+unix:///disk?socket=sock names export "disk". */
	assert_int_equal(uri_format_unix("sock", "disk", &uri), 0);
	assert_string_equal(uri, "nbd+unix:///disk?socket=sock");
	free(uri);

	/* doc/uri.md: export "hello world" is /hello%20world. */
	assert_int_equal(uri_format_unix("/tmp/my dir/s,1.sock", "hello world", &uri), 0);
	assert_string_equal(uri, "nbd+unix:///hello%20world?socket=/tmp/my%20dir/s%2C1.sock");
	free(uri);

	assert_int_equal(uri_format_unix("/t/50%&x=y", "", &uri), 0);
	assert_string_equal(uri, "nbd+unix:///?socket=/t/50%25%26x%3Dy");
	free(uri);
}

static void test_uri_inet(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char *uri = NULL;

	sin.sin_port = htons(10809);
	sin.sin_addr.s_addr = htonl(0x7f000001);
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin, "", &uri), 0);
	assert_string_equal(uri, "nbd://127.0.0.1:10809/");
	free(uri);

	sin.sin_port = htons(1);
	sin.sin_addr.s_addr = htonl(0xc0a80102);	/* 192.168.1.2 */
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin, "disk", &uri), 0);
	assert_string_equal(uri, "nbd://192.168.1.2:1/disk");
	free(uri);

	/* 0.0.0.0 is not something to connect to: loopback is. */
	sin.sin_port = htons(65535);
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin, "", &uri), 0);
	assert_string_equal(uri, "nbd://127.0.0.1:65535/");
	free(uri);

	/* RFC 2732 brackets. */
	sin6.sin6_port = htons(10809);
	sin6.sin6_addr = in6addr_loopback;
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin6, "", &uri), 0);
	assert_string_equal(uri, "nbd://[::1]:10809/");
	free(uri);

	sin6.sin6_addr = in6addr_any;
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin6, "", &uri), 0);
	assert_string_equal(uri, "nbd://[::1]:10809/");
	free(uri);

	assert_int_equal(inet_pton(AF_INET6, "2001:db8::42", &sin6.sin6_addr), 1);
	sin6.sin6_port = htons(4242);
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin6, "a b", &uri), 0);
	assert_string_equal(uri, "nbd://[2001:db8::42]:4242/a%20b");
	free(uri);

	/* RFC 6874 zone: '%' written as %25; an unknown index stays numeric. */
	assert_int_equal(inet_pton(AF_INET6, "fe80::1", &sin6.sin6_addr), 1);
	sin6.sin6_scope_id = 999999;
	assert_int_equal(uri_format_inet((struct sockaddr *)&sin6, "", &uri), 0);
	assert_string_equal(uri, "nbd://[fe80::1%25999999]:4242/");
	free(uri);

	uri = NULL;
	assert_int_equal(uri_format_inet((struct sockaddr *)&sun, "", &uri),
			 -EAFNOSUPPORT);
	assert_null(uri);
}

/* ---- --tcp [HOST:]PORT ---- */

static void check_hostport(const char *arg, const char *want_host, uint16_t want_port)
{
	char *host = NULL;
	uint16_t port = 1234;

	assert_int_equal(listen_parse_hostport(arg, &host, &port), 0);
	assert_non_null(host);
	assert_string_equal(host, want_host);
	assert_int_equal(port, want_port);
	free(host);
}

static void check_hostport_bad(const char *arg)
{
	char *host = NULL;
	uint16_t port = 1234;

	assert_int_equal(listen_parse_hostport(arg, &host, &port), -EINVAL);
	assert_null(host);
	assert_int_equal(port, 1234);
}

static void test_hostport(void **state)
{
	check_hostport("10809", "127.0.0.1", 10809);
	check_hostport("0", "127.0.0.1", 0);
	check_hostport("65535", "127.0.0.1", 65535);
	check_hostport("localhost:80", "localhost", 80);
	check_hostport("0.0.0.0:10809", "0.0.0.0", 10809);
	check_hostport("[::1]:8080", "::1", 8080);
	check_hostport("[::]:0", "::", 0);
	check_hostport("[fe80::1%eth0]:7", "fe80::1%eth0", 7);

	check_hostport_bad("");
	check_hostport_bad("65536");
	check_hostport_bad("99999999999999999999999");
	check_hostport_bad("::1:80");		/* needs brackets */
	check_hostport_bad(":80");
	check_hostport_bad("host:");
	check_hostport_bad("host:-1");
	check_hostport_bad("host:+1");
	check_hostport_bad("host:1x");
	check_hostport_bad("host: 1");
	check_hostport_bad("[::1]");
	check_hostport_bad("[::1]80");
	check_hostport_bad("[::1]:");
	check_hostport_bad("[]:80");
	check_hostport_bad("[::1:80");
	check_hostport_bad("http");
}

/* ---- option values ---- */

static void check_size(const char *s, uint64_t want)
{
	uint64_t v = 7;

	assert_int_equal(opt_parse_size(s, &v), 0);
	assert_int_equal(v, want);
}

static void check_size_bad(const char *s, int err)
{
	uint64_t v = 7;

	assert_int_equal(opt_parse_size(s, &v), err);
	assert_int_equal(v, 7);
}

static void test_parse_size(void **state)
{
	check_size("0", 0);
	check_size("512", 512);
	check_size("4096", 4096);
	check_size("4k", 4096);
	check_size("4K", 4096);
	check_size("4KiB", 4096);
	check_size("64k", 65536);
	check_size("1M", 1048576);
	check_size("2MiB", 2097152);
	check_size("1g", 1073741824);
	check_size("18446744073709551615", UINT64_MAX);
	check_size("17179869183G", 17179869183ULL << 30);

	check_size_bad("", -EINVAL);
	check_size_bad("k", -EINVAL);
	check_size_bad("4kb", -EINVAL);
	check_size_bad("4KB", -EINVAL);
	check_size_bad("4 k", -EINVAL);
	check_size_bad(" 4", -EINVAL);
	check_size_bad("-1", -EINVAL);
	check_size_bad("+1", -EINVAL);
	check_size_bad("0x10", -EINVAL);
	check_size_bad("4T", -EINVAL);
	check_size_bad("18446744073709551616", -ERANGE);
	check_size_bad("17179869184G", -ERANGE);	/* 2^34 GiB = 2^64 */
}

static void test_block_size(void **state)
{
	assert_true(opt_block_size_ok(512));
	assert_true(opt_block_size_ok(1024));
	assert_true(opt_block_size_ok(4096));
	assert_true(opt_block_size_ok(16384));
	assert_true(opt_block_size_ok(65536));
	assert_false(opt_block_size_ok(0));
	assert_false(opt_block_size_ok(1));
	assert_false(opt_block_size_ok(256));
	assert_false(opt_block_size_ok(3000));
	assert_false(opt_block_size_ok(4097));
	assert_false(opt_block_size_ok(131072));
}

static void test_parse_uint_epoch(void **state)
{
	uint64_t v = 0;
	int64_t t = 5;

	assert_int_equal(opt_parse_uint("86400", 86400, &v), 0);
	assert_int_equal(v, 86400);
	assert_int_equal(opt_parse_uint("007", 10, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(opt_parse_uint("86401", 86400, &v), -ERANGE);
	assert_int_equal(opt_parse_uint("", 10, &v), -EINVAL);
	assert_int_equal(opt_parse_uint("1s", 10, &v), -EINVAL);
	assert_int_equal(v, 7);

	assert_int_equal(opt_parse_epoch("0", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(opt_parse_epoch("1700000000", &t), 0);
	assert_int_equal(t, 1700000000);
	assert_int_equal(opt_parse_epoch("9223372036854775807", &t), 0);
	assert_true(t == INT64_MAX);
	assert_int_equal(opt_parse_epoch("9223372036854775808", &t), -ERANGE);
	assert_int_equal(opt_parse_epoch("-1", &t), -EINVAL);
	assert_int_equal(opt_parse_epoch("1.5", &t), -EINVAL);
	assert_int_equal(opt_parse_epoch("", &t), -EINVAL);
	assert_true(t == INT64_MAX);
}

/* ---- runtime directory ---- */

static void test_runtime_dir(void **state)
{
	char base[] = "/tmp/test-listen.XXXXXX";
	char *dir = NULL;
	struct stat st;

	assert_non_null(mkdtemp(base));
	setenv("XDG_RUNTIME_DIR", base, 1);
	assert_string_equal(listen_runtime_base(), base);

	assert_int_equal(listen_runtime_dir(&dir), 0);
	assert_int_equal(strncmp(dir, base, strlen(base)), 0);
	assert_int_equal(strncmp(dir + strlen(base), "/erofs-nbd.", 11), 0);
	assert_int_equal(strlen(dir), strlen(base) + 11 + 6);
	assert_int_equal(lstat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(rmdir(dir), 0);
	free(dir);

	/* Empty XDG_RUNTIME_DIR counts as unset. */
	setenv("XDG_RUNTIME_DIR", "", 1);
	setenv("TMPDIR", "/var/tmp", 1);
	assert_string_equal(listen_runtime_base(), geteuid() == 0 ? "/run" : "/var/tmp");
	unsetenv("XDG_RUNTIME_DIR");
	unsetenv("TMPDIR");
	assert_string_equal(listen_runtime_base(), geteuid() == 0 ? "/run" : "/tmp");

	/* mkdtemp's error comes back. */
	setenv("XDG_RUNTIME_DIR", "/nonexistent-test-listen", 1);
	dir = NULL;
	assert_int_equal(listen_runtime_dir(&dir), -ENOENT);
	assert_null(dir);
	unsetenv("XDG_RUNTIME_DIR");
	assert_int_equal(rmdir(base), 0);
}

/* ---- real sockets ---- */

static int connect_unix(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sun.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static void test_unix(void **state)
{
	char dir[] = "/tmp/test-listen.XXXXXX";
	char path[128], uri_want[160], longpath[200];
	struct listener l = { .fd = -1 }, l2 = { .fd = -1 };
	struct stat st;
	char *uri = NULL;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/nbd.sock", dir);

	assert_int_equal(listen_unix(path, &l), 0);
	assert_int_equal(l.family, AF_UNIX);
	assert_string_equal(l.path, path);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	fd = connect_unix(path);
	assert_true(fd >= 0);
	close(fd);

	snprintf(uri_want, sizeof(uri_want), "nbd+unix:///?socket=%s", path);
	assert_int_equal(listener_uri(&l, "", &uri), 0);
	assert_string_equal(uri, uri_want);
	free(uri);

	/* A live server's socket is not taken over. */
	assert_int_equal(listen_unix(path, &l2), -EADDRINUSE);
	assert_int_equal(lstat(path, &st), 0);

	/* Closing removes the file; twice is harmless. */
	listener_close(&l);
	assert_int_equal(lstat(path, &st), -1);
	listener_close(&l);

	/* A stale socket (its server died without unlinking) is replaced. */
	assert_int_equal(listen_unix(path, &l), 0);
	close(l.fd);
	l.fd = -1;
	assert_int_equal(lstat(path, &st), 0);
	/* Kernels with coarse timestamps need a tick for a new ctime. */
	usleep(20000);
	assert_int_equal(listen_unix(path, &l2), 0);
	fd = connect_unix(path);
	assert_true(fd >= 0);
	close(fd);
	/* l's file was replaced by l2's: closing l must leave it alone. */
	listener_close(&l);
	assert_int_equal(lstat(path, &st), 0);
	listener_close(&l2);
	assert_int_equal(lstat(path, &st), -1);

	/* A regular file is never removed. */
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_int_equal(listen_unix(path, &l), -EEXIST);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 1);
	assert_int_equal(unlink(path), 0);

	/* sun_path holds 107 bytes and a NUL. */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(listen_unix(longpath, &l), -ENAMETOOLONG);
	/*
	 * At the boundary (unix(7): sun_path is 108 bytes with the NUL): a
	 * path of exactly 108 bytes is -ENAMETOOLONG and creates nothing, one
	 * of 107 binds and takes connections.
	 */
	{
		char edge[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
		size_t dl = strlen(dir);

		memcpy(edge, dir, dl);
		edge[dl] = '/';
		memset(edge + dl + 1, 'b', sizeof(edge) - dl - 2);
		edge[sizeof(edge) - 1] = '\0';
		assert_int_equal(strlen(edge), 108);
		assert_int_equal(listen_unix(edge, &l), -ENAMETOOLONG);
		assert_int_equal(lstat(edge, &st), -1);
		edge[107] = '\0';
		assert_int_equal(listen_unix(edge, &l), 0);
		fd = connect_unix(edge);
		assert_true(fd >= 0);
		close(fd);
		listener_close(&l);
		assert_int_equal(lstat(edge, &st), -1);
	}

	/* A relative path is remembered absolute (we chdir("/") later). */
	{
		char cwd[PATH_MAX];
		assert_non_null(getcwd(cwd, sizeof(cwd)));
		assert_int_equal(chdir(dir), 0);
		assert_int_equal(listen_unix("rel.sock", &l), 0);
		assert_int_equal(chdir("/"), 0);
		snprintf(path, sizeof(path), "%s/rel.sock", dir);
		assert_string_equal(l.path, path);
		listener_close(&l);
		assert_int_equal(lstat(path, &st), -1);
		assert_int_equal(chdir(cwd), 0);
	}

	assert_int_equal(rmdir(dir), 0);
}

static void test_tcp(void **state)
{
	struct listener l = { .fd = -1 };
	struct sockaddr_in sin;
	char want[64];
	char *uri = NULL;
	int fd, gai = 0, r;

	assert_int_equal(listen_tcp("127.0.0.1", 0, &l, &gai), 0);
	assert_int_equal(l.family, AF_INET);
	assert_null(l.path);
	memcpy(&sin, &l.addr, sizeof(sin));
	assert_int_not_equal(ntohs(sin.sin_port), 0);
	assert_int_equal(ntohl(sin.sin_addr.s_addr), 0x7f000001);

	snprintf(want, sizeof(want), "nbd://127.0.0.1:%u/", ntohs(sin.sin_port));
	assert_int_equal(listener_uri(&l, "", &uri), 0);
	assert_string_equal(uri, want);
	free(uri);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	close(fd);

	/* The port is taken now. */
	{
		struct listener l2 = { .fd = -1 };
		assert_int_equal(listen_tcp("127.0.0.1", ntohs(sin.sin_port), &l2, NULL),
				 -EADDRINUSE);
	}
	listener_close(&l);
	assert_int_equal(l.fd, -1);

	/* IPv6 loopback, where the host has it. */
	r = listen_tcp("::1", 0, &l, NULL);
	if (r == 0) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, &l.addr, sizeof(sin6));
		assert_int_equal(l.family, AF_INET6);
		snprintf(want, sizeof(want), "nbd://[::1]:%u/", ntohs(sin6.sin6_port));
		assert_int_equal(listener_uri(&l, "", &uri), 0);
		assert_string_equal(uri, want);
		free(uri);
		listener_close(&l);
	} else {
		assert_true(r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT || r == -EINVAL);
	}
}

/* ---- socket activation ---- */

static void test_activation_parse(void **state)
{
	unsigned int n = 99;

	/* Nothing passed. */
	assert_int_equal(activation_parse(NULL, NULL, 1234, &n), 0);
	assert_int_equal(n, 0);
	/* Ours: LISTEN_FDS descriptors from fd 3. */
	assert_int_equal(activation_parse("1234", "1", 1234, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(activation_parse("1234", "3", 1234, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(activation_parse("1234", "0", 1234, &n), 0);
	assert_int_equal(n, 0);
	/* Another process's variables, leaked: ignored, LISTEN_FDS unread. */
	n = 99;
	assert_int_equal(activation_parse("4321", "2", 1234, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(activation_parse("4321", "junk", 1234, &n), 0);
	assert_int_equal(n, 0);
	/* LISTEN_FDS unset: nothing. */
	assert_int_equal(activation_parse("1234", NULL, 1234, &n), 0);
	assert_int_equal(n, 0);
	/* Malformed. */
	assert_int_equal(activation_parse("", "1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("0", "1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("-1234", "1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234 ", "1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("99999999999999999999", "1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234", "", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234", "-1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234", "1x", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234", "+1", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234", "1025", 1234, &n), -EINVAL);
	assert_int_equal(activation_parse("1234", "1024", 1234, &n), 0);
	assert_int_equal(n, 1024);
}

static void test_activation_names(void **state)
{
	char buf[8];

	assert_true(activation_fd_name("nbd", 0, buf, sizeof(buf)));
	assert_string_equal(buf, "nbd");
	assert_false(activation_fd_name("nbd", 1, buf, sizeof(buf)));
	assert_string_equal(buf, "");
	assert_true(activation_fd_name("a:bb:ccc", 1, buf, sizeof(buf)));
	assert_string_equal(buf, "bb");
	assert_true(activation_fd_name("a:bb:ccc", 2, buf, sizeof(buf)));
	assert_string_equal(buf, "ccc");
	/* Empty names are names too. */
	assert_true(activation_fd_name("a::c", 1, buf, sizeof(buf)));
	assert_string_equal(buf, "");
	/* Truncated to the buffer. */
	assert_true(activation_fd_name("averylongname", 0, buf, sizeof(buf)));
	assert_string_equal(buf, "averylo");
	assert_false(activation_fd_name(NULL, 0, buf, sizeof(buf)));
}

static void test_activation_take(void **state)
{
	char pid[16], *names = NULL;
	unsigned int n = 99;

	/* Plays the manager: fd 3 must be ours to fill. */
	if (fcntl(3, F_GETFD) >= 0)
		skip();
	int fd = open("/dev/zero", O_RDONLY);	/* not CLOEXEC: take sets it */
	assert_true(fd >= 0);
	if (fd != 3) {
		assert_int_equal(dup2(fd, 3), 3);
		close(fd);
	}
	assert_int_equal(fcntl(3, F_GETFD) & FD_CLOEXEC, 0);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	setenv("LISTEN_FDNAMES", "nbd", 1);
	setenv("LISTEN_PIDFDID", "42", 1);
	assert_int_equal(activation_take(&n, &names), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names, "nbd");
	free(names);
	assert_int_equal(fcntl(3, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* Consumed: a second call (or a child) sees nothing. */
	assert_null(getenv("LISTEN_PID"));
	assert_null(getenv("LISTEN_FDS"));
	assert_null(getenv("LISTEN_FDNAMES"));
	assert_null(getenv("LISTEN_PIDFDID"));
	assert_int_equal(activation_take(&n, NULL), 0);
	assert_int_equal(n, 0);
	close(3);

	/* A passed fd that is not open; the variables go anyway. */
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	assert_int_equal(activation_take(&n, NULL), -EBADF);
	assert_null(getenv("LISTEN_FDS"));
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "many", 1);
	assert_int_equal(activation_take(&n, NULL), -EINVAL);
	assert_null(getenv("LISTEN_PID"));
}

/* ---- adopting inherited sockets ---- */

static void test_adopt(void **state)
{
	char dir[] = "/tmp/test-listen-adopt.XXXXXX";
	char path[128], want[192];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct listener l = { .fd = -1 };
	struct stat st;
	char *uri = NULL;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/act.sock", dir);
	strcpy(sun.sun_path, path);

	/* A listening Unix socket, as systemd would pass it (no CLOEXEC). */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(listen_adopt(fd, &l), 0);
	assert_int_equal(l.fd, fd);
	assert_int_equal(l.family, AF_UNIX);
	assert_true(l.adopted);
	assert_string_equal(l.path, path);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	snprintf(want, sizeof(want), "nbd+unix:///?socket=%s", path);
	assert_int_equal(listener_uri(&l, "", &uri), 0);
	assert_string_equal(uri, want);
	free(uri);
	/* The manager owns the file: closing leaves it. */
	listener_close(&l);
	assert_int_equal(l.fd, -1);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));

	/* Bound but not listening. */
	assert_int_equal(unlink(path), 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen_adopt(fd, &l), -EINVAL);
	close(fd);
	assert_int_equal(unlink(path), 0);

	/* A datagram socket. */
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_int_equal(listen_adopt(fd, &l), -ESOCKTNOSUPPORT);
	close(fd);

	/* Not a socket at all. */
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0) {
		assert_int_equal(listen_adopt(fd, &l), -ENOTSOCK);
		close(fd);
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_int_equal(listen_adopt(fd, &l), -ENOTSOCK);
	close(fd);

	/* An abstract socket: "@name", URI with %00 (doc/uri.md). */
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, "\0erofs-nbd-t", 12);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(fd, (struct sockaddr *)&sun,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 12)) == 0) {
		assert_int_equal(listen(fd, 8), 0);
		assert_int_equal(listen_adopt(fd, &l), 0);
		assert_string_equal(l.path, "@erofs-nbd-t");
		assert_int_equal(listener_uri(&l, "root", &uri), 0);
		assert_string_equal(uri, "nbd+unix:///root?socket=%00erofs-nbd-t");
		free(uri);
		listener_close(&l);
	} else {
		close(fd);
	}

	/* TCP works too. */
	{
		struct listener t = { .fd = -1 };
		char tcp_want[64];
		struct sockaddr_in sin;

		assert_int_equal(listen_tcp("127.0.0.1", 0, &t, NULL), 0);
		memcpy(&sin, &t.addr, sizeof(sin));
		assert_int_equal(listen_adopt(t.fd, &l), 0);
		assert_int_equal(l.family, AF_INET);
		snprintf(tcp_want, sizeof(tcp_want), "nbd://127.0.0.1:%u/",
			 ntohs(sin.sin_port));
		assert_int_equal(listener_uri(&l, "", &uri), 0);
		assert_string_equal(uri, tcp_want);
		free(uri);
		listener_close(&l);
	}
	assert_int_equal(rmdir(dir), 0);
}

/* ---- vsock ---- */

static void test_vsock(void **state)
{
	struct listener l = { .fd = -1 };
	uint32_t port = 0;
	char *uri = NULL;
	int r;

	assert_int_equal(uri_format_vsock(2, 10809, "", &uri), 0);
	assert_string_equal(uri, "nbd+vsock://2:10809/");
	free(uri);
	assert_int_equal(uri_format_vsock(3, 4294967294U, "disk x", &uri), 0);
	assert_string_equal(uri, "nbd+vsock://3:4294967294/disk%20x");
	free(uri);

	assert_int_equal(listen_parse_vsock_port("10809", &port), 0);
	assert_int_equal(port, 10809);
	assert_int_equal(listen_parse_vsock_port("0", &port), 0);
	assert_int_equal(port, VMADDR_PORT_ANY);
	assert_int_equal(listen_parse_vsock_port("4294967294", &port), 0);
	assert_int_equal(port, 4294967294U);
	assert_int_equal(listen_parse_vsock_port("4294967295", &port), -EINVAL);
	assert_int_equal(listen_parse_vsock_port("", &port), -EINVAL);
	assert_int_equal(listen_parse_vsock_port("-1", &port), -EINVAL);
	assert_int_equal(listen_parse_vsock_port("12ab", &port), -EINVAL);

	/* A real listener, where the kernel has vsock. */
	r = listen_vsock(VMADDR_PORT_ANY, &l);
	if (r == -EAFNOSUPPORT || r == -ENODEV || r == -EADDRNOTAVAIL)
		return;
	assert_int_equal(r, 0);
	{
		const struct sockaddr_vm *svm = (const struct sockaddr_vm *)&l.addr;
		char prefix[32];

		assert_int_equal(l.family, AF_VSOCK);
		assert_int_not_equal(svm->svm_port, VMADDR_PORT_ANY);
		assert_int_equal(listener_uri(&l, "root", &uri), 0);
		assert_true(strncmp(uri, "nbd+vsock://", 12) == 0);
		snprintf(prefix, sizeof(prefix), ":%u/root", svm->svm_port);
		assert_non_null(strstr(uri, prefix));
		free(uri);
	}
	listener_close(&l);
}

/* ---- notification ---- */

static void test_notify_address(void **state)
{
	struct notifier n;
	struct sockaddr_un sun;
	struct sockaddr_vm svm;
	char longpath[120];

	assert_int_equal(notify_parse_address("/run/systemd/notify", &n), 0);
	memcpy(&sun, &n.addr, sizeof(sun));
	assert_int_equal(sun.sun_family, AF_UNIX);
	assert_string_equal(sun.sun_path, "/run/systemd/notify");
	/* 2 bytes of family, 19 of path, its NUL. */
	assert_int_equal(n.addrlen, 2 + 19 + 1);
	assert_int_equal(n.type, SOCK_DGRAM);

	/* Abstract: the '@' becomes a NUL, no terminator counted. */
	assert_int_equal(notify_parse_address("@sd-notify", &n), 0);
	memcpy(&sun, &n.addr, sizeof(sun));
	assert_int_equal(n.addrlen, 2 + 10);
	assert_int_equal(sun.sun_path[0], '\0');
	assert_memory_equal(sun.sun_path + 1, "sd-notify", 9);

	assert_int_equal(notify_parse_address("vsock:2:1234", &n), 0);
	memcpy(&svm, &n.addr, sizeof(svm));
	assert_int_equal(svm.svm_family, AF_VSOCK);
	assert_int_equal(svm.svm_cid, 2);
	assert_int_equal(svm.svm_port, 1234);
	assert_int_equal(n.type, SOCK_SEQPACKET);
	assert_int_equal(notify_parse_address("vsock-stream:3:5", &n), 0);
	assert_int_equal(n.type, SOCK_STREAM);
	assert_int_equal(notify_parse_address("vsock-dgram:3:5", &n), 0);
	assert_int_equal(n.type, SOCK_DGRAM);
	assert_int_equal(notify_parse_address("vsock-seqpacket:3:5", &n), 0);
	assert_int_equal(n.type, SOCK_SEQPACKET);

	assert_int_equal(notify_parse_address("", &n), -EINVAL);
	assert_int_equal(notify_parse_address("relative/path", &n), -EINVAL);
	assert_int_equal(notify_parse_address("@", &n), -EINVAL);
	assert_int_equal(notify_parse_address("vsock:2", &n), -EINVAL);
	assert_int_equal(notify_parse_address("vsock:x:1", &n), -EINVAL);
	assert_int_equal(notify_parse_address("vsock:2:99999999999", &n), -EINVAL);
	assert_int_equal(notify_parse_address("tcp:1.2.3.4:5", &n), -EAFNOSUPPORT);
	/* sun_path holds 108 bytes: a path needs its NUL too. */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[108] = '\0';
	assert_int_equal(notify_parse_address(longpath, &n), -ENAMETOOLONG);
	longpath[107] = '\0';
	assert_int_equal(notify_parse_address(longpath, &n), 0);
}

static void test_notify_send(void **state)
{
	char dir[] = "/tmp/test-listen-notify.XXXXXX";
	char path[128], buf[256];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct notifier n;
	ssize_t len;
	int rfd;

	/* Unset: inert, sending succeeds and does nothing. */
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(notify_open(&n), 0);
	assert_false(notify_enabled(&n));
	assert_int_equal(notify_send(&n, "READY=1"), 0);
	notify_close(&n);

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	strcpy(sun.sun_path, path);
	rfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(rfd >= 0);
	assert_int_equal(bind(rfd, (struct sockaddr *)&sun, sizeof(sun)), 0);

	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(notify_open(&n), 0);
	assert_true(notify_enabled(&n));
	/* Consumed: helpers we start must not notify in our name. */
	assert_null(getenv("NOTIFY_SOCKET"));
	assert_int_equal(notify_send(&n, "READY=1\nSTATUS=Serving"), 0);
	len = recv(rfd, buf, sizeof(buf), MSG_DONTWAIT);
	assert_int_equal(len, 22);
	assert_memory_equal(buf, "READY=1\nSTATUS=Serving", 22);
	assert_int_equal(notify_send(&n, "STOPPING=1"), 0);
	len = recv(rfd, buf, sizeof(buf), MSG_DONTWAIT);
	assert_int_equal(len, 10);
	assert_memory_equal(buf, "STOPPING=1", 10);
	notify_close(&n);
	notify_close(&n);
	assert_false(notify_enabled(&n));

	/* A receiver that went away: an error, not a crash. */
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(notify_open(&n), 0);
	close(rfd);
	assert_int_equal(unlink(path), 0);
	assert_true(notify_send(&n, "READY=1") < 0);
	notify_close(&n);

	/* A malformed NOTIFY_SOCKET: an error, inert, variable gone. */
	setenv("NOTIFY_SOCKET", "not-absolute", 1);
	assert_int_equal(notify_open(&n), -EINVAL);
	assert_false(notify_enabled(&n));
	assert_null(getenv("NOTIFY_SOCKET"));
	assert_int_equal(rmdir(dir), 0);
}

/* ---- pid file, user lookups ---- */

static void test_pidfile(void **state)
{
	char dir[] = "/tmp/test-listen-pid.XXXXXX";
	char path[128], buf[32];
	struct stat st;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/srv.pid", dir);
	assert_int_equal(pidfile_write(path, 4242), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "4242\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	/* Replaced, not appended. */
	assert_int_equal(pidfile_write(path, 7), 0);
	f = fopen(path, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "7\n");
	assert_int_equal(unlink(path), 0);
	/* A directory that does not exist. */
	snprintf(path, sizeof(path), "%s/no/srv.pid", dir);
	assert_int_equal(pidfile_write(path, 1), -ENOENT);
	assert_int_equal(rmdir(dir), 0);
}

static void test_user_lookup(void **state)
{
	uid_t uid = 1;
	gid_t gid = 1;

	/* Every system has root, uid 0, gid 0. */
	assert_int_equal(caps_lookup_user("root", &uid, &gid), 0);
	assert_int_equal(uid, 0);
	assert_int_equal(gid, 0);
	assert_int_equal(caps_lookup_group("root", &gid), 0);
	assert_int_equal(gid, 0);
	/* A number without a passwd entry is taken as it is. */
	assert_int_equal(caps_lookup_user("4000000", &uid, &gid), 0);
	assert_int_equal(uid, 4000000);
	assert_int_equal(gid, (gid_t)-1);
	assert_int_equal(caps_lookup_group("4000001", &gid), 0);
	assert_int_equal(gid, 4000001);
	assert_int_equal(caps_lookup_user("no-such-user-xyz", &uid, &gid), -ENOENT);
	assert_int_equal(caps_lookup_group("no-such-group-xyz", &gid), -ENOENT);
	/* (uid_t)-1 means "unchanged" to setresuid: never accepted. */
	assert_int_equal(caps_lookup_user("4294967295", &uid, &gid), -ENOENT);
	assert_int_equal(caps_lookup_user("-1", &uid, &gid), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_escape),
		cmocka_unit_test(test_uri_unix),
		cmocka_unit_test(test_uri_inet),
		cmocka_unit_test(test_hostport),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_block_size),
		cmocka_unit_test(test_parse_uint_epoch),
		cmocka_unit_test(test_runtime_dir),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_activation_parse),
		cmocka_unit_test(test_activation_names),
		cmocka_unit_test(test_activation_take),
		cmocka_unit_test(test_adopt),
		cmocka_unit_test(test_vsock),
		cmocka_unit_test(test_notify_address),
		cmocka_unit_test(test_notify_send),
		cmocka_unit_test(test_pidfile),
		cmocka_unit_test(test_user_lookup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
