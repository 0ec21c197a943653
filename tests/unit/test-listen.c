/* SPDX-License-Identifier: MIT */
/*
 * test-listen.c - unit tests for server/listen.c: NBD URI formatting and
 * percent-encoding (expected strings written from NBD doc/uri.md and
 * RFC 3986 by hand), --tcp HOST:PORT parsing, size / number / epoch
 * parsing, the runtime directory, and Unix/TCP listeners on real sockets.
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

#include "server/listen.h"

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
