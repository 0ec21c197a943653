/* SPDX-License-Identifier: MIT */
/*
 * fuzz-uri.c - the NBD URI parser of erofs-nbd-launch --connect
 * (launcher/server.c server_parse_uri, with util.c's uri_decode), fed any
 * string, and the round trip from the server's URIs to the launcher:
 * what erofs-nbd prints (server/listen.c uri_format_unix, uri_format_inet)
 * for a socket path, address and export name the launcher must parse
 * back to exactly those (NBD doc/uri.md).
 *
 * Invariants: a URI the launcher takes names a Unix socket by an absolute
 * path, or a non-empty host with a port 1..65535, and an export name;
 * nothing it decodes holds a NUL; the launcher's uri_encode() output
 * decodes back too.
 *
 * Input: a selector byte, then the URI (or the path, address and export
 * name to format).  Seeds: corpus/uri/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/launch.h"
#include "server/listen.h"
#include "tests/fuzz/fuzz.h"

static void addr_free(struct launch *l)
{
	free(l->addr.socket_path);
	free(l->addr.host);
	free(l->addr.port);
	free(l->addr.export_name);
	memset(&l->addr, 0, sizeof(l->addr));
}

/* Parses uri as --connect does; returns its result, l->addr filled. */
static int parse(struct launch *l, const char *uri)
{
	memset(l, 0, sizeof(*l));
	l->boot = BOOT_EFI;
	l->connect_uri = uri;
	return server_parse_uri(l);
}

static void check_parsed(const struct launch *l, const char *uri)
{
	FZ_CHECK(l->addr.export_name, "'%s': no export name", uri);
	if (l->addr.socket_path) {
		FZ_CHECK(l->addr.socket_path[0] == '/', "'%s': socket path '%s' not absolute", uri,
			 l->addr.socket_path);
	} else {
		FZ_CHECK(l->addr.host && *l->addr.host && l->addr.port, "'%s': no host or port",
			 uri);
		unsigned int p;
		FZ_CHECK(parse_uint(l->addr.port, 1, 65535, &p) == 0, "'%s': port '%s'", uri,
			 l->addr.port);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* The launcher reports every bad URI on stderr: keep that quiet
	 * (invariant failures and sanitizer reports go to fd 2 directly). */
	if (!getenv("FUZZ_TRACE"))
		stderr = fopen("/dev/null", "w");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	uint8_t sel = fz_u8(&f);
	struct launch l;
	char *s = strndup((const char *)f.p, f.n);
	char *uri = NULL;

	FZ_CHECK(s, "out of memory");
	switch (sel % 4) {
	case 0: {	/* any string as --connect */
		if (parse(&l, s) == 0)
			check_parsed(&l, s);
		addr_free(&l);
		break;
	}
	case 1: {	/* erofs-nbd's Unix URI, read by the launcher */
		/* The path up to the first NUL, the export name after it. */
		size_t n = strlen(s);
		char *expz = n < f.n ? strndup((const char *)f.p + n + 1, f.n - n - 1) : strdup("");
		char path[8300];
		FZ_CHECK(expz, "out of memory");
		snprintf(path, sizeof(path), "/%s", s);
		FZ_CHECK(uri_format_unix(path, expz, &uri) == 0, "uri_format_unix");
		FZ_CHECK(parse(&l, uri) == 0, "the launcher refuses erofs-nbd's URI '%s'", uri);
		check_parsed(&l, uri);
		FZ_CHECK(l.addr.socket_path && !strcmp(l.addr.socket_path, path),
			 "'%s': socket path '%s', was '%s'", uri, l.addr.socket_path, path);
		FZ_CHECK(!strcmp(l.addr.export_name, *expz ? expz : "disk"),
			 "'%s': export '%s', was '%s'", uri, l.addr.export_name, expz);
		addr_free(&l);
		free(expz);
		break;
	}
	case 2: {	/* erofs-nbd's TCP URI, read by the launcher */
		struct sockaddr_storage ss;
		uint8_t a[16];
		memset(&ss, 0, sizeof(ss));
		fz_bytes(&f, a, 16);
		uint16_t port = (uint16_t)(fz_u16(&f) | 1);
		char *exp = strndup((const char *)f.p, f.n), host[64];
		FZ_CHECK(exp, "out of memory");
		if (sel & 4) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, a, 16);
			sin6->sin6_port = htons(port);
			if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
				sin6->sin6_addr = in6addr_loopback;
			inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		} else {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, a, 4);
			sin->sin_port = htons(port);
			if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
				sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		}
		FZ_CHECK(uri_format_inet((struct sockaddr *)&ss, exp, &uri) == 0,
			 "uri_format_inet");
		FZ_CHECK(parse(&l, uri) == 0, "the launcher refuses erofs-nbd's URI '%s'", uri);
		check_parsed(&l, uri);
		char want_port[8];
		snprintf(want_port, sizeof(want_port), "%u", port);
		FZ_CHECK(!l.addr.socket_path && !strcmp(l.addr.host, host) &&
			 !strcmp(l.addr.port, want_port), "'%s': host '%s' port '%s'", uri,
			 l.addr.host, l.addr.port);
		FZ_CHECK(!strcmp(l.addr.export_name, *exp ? exp : "disk"), "'%s': export '%s'", uri,
			 l.addr.export_name);
		addr_free(&l);
		free(exp);
		break;
	}
	case 3: {	/* the launcher's own encoder and decoder */
		char *e = uri_encode(s);
		FZ_CHECK(e, "out of memory");
		FZ_CHECK(uri_decode(e) == 0 && !strcmp(e, s), "uri_encode/uri_decode of '%s'", s);
		free(e);
		break;
	}
	}
	free(uri);
	free(s);
	return 0;
}
