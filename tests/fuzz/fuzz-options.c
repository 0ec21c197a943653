/* SPDX-License-Identifier: MIT */
/*
 * fuzz-options.c - the parsers of the server's command line values and the
 * URIs it prints (server/listen.c): --block-size (opt_parse_size +
 * opt_block_size_ok), --handshake-timeout and friends (opt_parse_uint),
 * SOURCE_DATE_EPOCH (opt_parse_epoch), --tcp [HOST:]PORT
 * (listen_parse_hostport), --vsock PORT, and the NBD URI formatting
 * (uri_escape, uri_format_unix/_inet/_vsock) with export names of any
 * bytes.
 *
 * Each parser is compared with an oracle written here from its contract in
 * listen.h and README.md ("Usage"): the same strings accepted, the same
 * values, the same errors.  Every URI printed must decode back (RFC 3986
 * percent-decoding, done here) to the socket path, host, port and export
 * name it was made from, and hold only unreserved characters, '/' and
 * %XX escapes where the export name and socket path go.
 *
 * Input: a selector byte, then the argument (the rest of the input; a NUL
 * ends it where the parser takes a C string).  Seeds: corpus/options/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/vm_sockets.h>

#include "server/listen.h"
#include "tests/fuzz/fuzz.h"

/* Decimal digits to a value; false on overflow. */
static bool digits(const char *s, size_t n, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (*v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return true;
}

static size_t ndigits(const char *s)
{
	size_t n = 0;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	return n;
}

/*
 * The oracles return 0, -EINVAL (the grammar is broken), -ERANGE (the
 * value is too big) or ANY when both are wrong: listen.h does not say
 * which error wins then.
 */
#define ANY 1

static int both(bool grammar, bool range)
{
	return grammar ? (range ? 0 : -ERANGE) : (range ? -EINVAL : ANY);
}

/* uint: [0-9]+, 0..max. */
static int oracle_uint(const char *s, uint64_t max, uint64_t *v)
{
	size_t n = ndigits(s);
	if (n == 0)
		return -EINVAL;
	bool range = digits(s, n, v) && *v <= max;
	return both(!s[n], range);
}

/* size: [0-9]+ then nothing, or one of kKmMgG and then nothing or "iB". */
static int oracle_size(const char *s, uint64_t *v)
{
	size_t n = ndigits(s);
	unsigned int shift = 0;
	bool grammar = true;
	if (n == 0)
		return -EINVAL;
	switch (s[n]) {
	case '\0': break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	default: grammar = false; break;
	}
	if (shift && strcmp(s + n + 1, "") && strcmp(s + n + 1, "iB"))
		grammar = false;
	bool range = digits(s, n, v) && *v <= (UINT64_MAX >> shift);
	*v <<= shift;
	return both(grammar, range);
}

static bool same_result(int r, int o)
{
	return o == ANY ? r == -EINVAL || r == -ERANGE : r == o;
}

/* The value of an upper-case hex digit, or -1 (listen.h: %XX upper case). */
static int hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* RFC 3986 percent-decoding; false on a malformed escape. */
static bool pct_decode(const char *s, size_t len, char *out, size_t *ret_len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		if (len - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0)
			return false;
		out[n++] = (char)(hex(s[i + 1]) << 4 | hex(s[i + 2]));
		i += 2;
	}
	*ret_len = n;
	return true;
}

/* Only unreserved bytes, '/' and %XX (listen.h). */
static void check_escaped(const char *s, size_t len, const char *what)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			FZ_CHECK(len - i >= 3 && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0,
				 "%s: bad escape in '%.*s'", what, (int)len, s);
			i += 2;
			continue;
		}
		FZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || (c && strchr("-._~/", c)),
			 "%s: byte 0x%02x left unescaped", what, (unsigned char)c);
	}
}

static void check_roundtrip(const char *enc, size_t elen, const char *raw, size_t rlen,
			    const char *what)
{
	char *dec = malloc(elen + 1);
	size_t dlen;
	FZ_CHECK(dec, "out of memory");
	check_escaped(enc, elen, what);
	FZ_CHECK(pct_decode(enc, elen, dec, &dlen) && dlen == rlen && !memcmp(dec, raw, rlen),
		 "%s: '%.*s' does not decode back", what, (int)elen, enc);
	free(dec);
}

/* nbd+unix:///EXPORT?socket=PATH */
static void check_unix_uri(const char *uri, const char *path, const char *exp)
{
	const char *pre = "nbd+unix:///";
	FZ_CHECK(!strncmp(uri, pre, strlen(pre)), "URI '%s'", uri);
	const char *e = uri + strlen(pre), *q = strchr(e, '?');
	FZ_CHECK(q && !strncmp(q, "?socket=", 8), "URI '%s' without ?socket=", uri);
	check_roundtrip(e, (size_t)(q - e), exp, strlen(exp), "export name");
	check_roundtrip(q + 8, strlen(q + 8), path, strlen(path), "socket path");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = { data, size };
	uint8_t sel = fz_u8(&f);
	char *s = malloc(f.n + 1);
	uint64_t v, w;
	int r, o;

	FZ_CHECK(s, "out of memory");
	memcpy(s, f.p, f.n);
	s[f.n] = '\0';

	switch (sel % 8) {
	case 0: {	/* --block-size */
		r = opt_parse_size(s, &v);
		o = oracle_size(s, &w);
		FZ_CHECK(same_result(r, o) && (r < 0 || v == w),
			 "opt_parse_size('%s') = %d/%llu, expected "
			 "%d/%llu", s, r, (unsigned long long)v, o, (unsigned long long)w);
		if (r == 0)
			FZ_CHECK(opt_block_size_ok(v) == (v >= 512 && v <= 65536 && !(v & (v - 1))),
				 "opt_block_size_ok(%llu)", (unsigned long long)v);
		break;
	}
	case 1: {	/* --handshake-timeout, --vsock's digits, ports */
		uint64_t max = sel & 0x80 ? UINT64_MAX : (uint64_t)(sel >> 3) * 4099 + 1;
		r = opt_parse_uint(s, max, &v);
		o = oracle_uint(s, max, &w);
		FZ_CHECK(same_result(r, o) && (r < 0 || v == w),
			 "opt_parse_uint('%s', %llu) = %d, expected %d",
			 s, (unsigned long long)max, r, o);
		break;
	}
	case 2: {	/* SOURCE_DATE_EPOCH */
		int64_t t;
		r = opt_parse_epoch(s, &t);
		o = oracle_uint(s, INT64_MAX, &w);
		FZ_CHECK(same_result(r, o) && (r < 0 || (uint64_t)t == w),
			 "opt_parse_epoch('%s') = %d, "
			 "expected %d", s, r, o);
		break;
	}
	case 3: {	/* --tcp [HOST:]PORT */
		char *host = NULL;
		uint16_t port;
		r = listen_parse_hostport(s, &host, &port);
		/* The oracle: "[H]:P", "H:P" with no ':' in H, or "P"; H non-empty. */
		const char *ps = NULL;
		size_t hl = 0;
		const char *h = NULL;
		bool ok = true;
		if (s[0] == '[') {
			const char *close = strchr(s, ']');
			ok = close && close > s + 1 && close[1] == ':';
			if (ok) {
				h = s + 1;
				hl = (size_t)(close - s - 1);
				ps = close + 2;
			}
		} else {
			const char *colon = strrchr(s, ':');
			if (!colon) {
				h = "127.0.0.1";
				hl = strlen(h);
				ps = s;
			} else {
				ok = colon > s && !memchr(s, ':', (size_t)(colon - s));
				h = s;
				hl = (size_t)(colon - s);
				ps = colon + 1;
			}
		}
		ok = ok && oracle_uint(ps, 65535, &w) == 0;
		FZ_CHECK((r == 0) == ok, "listen_parse_hostport('%s') = %d", s, r);
		if (r == 0) {
			FZ_CHECK(strlen(host) == hl && !memcmp(host, h, hl) && port == w,
				 "listen_parse_hostport('%s'): host '%s' port %u", s, host, port);
			/* Printed back the way README writes it, it parses the same. */
			char again[8200], *host2 = NULL;
			uint16_t port2;
			bool brackets = strchr(host, ':') || host[0] == '[';
			snprintf(again, sizeof(again), brackets ? "[%s]:%u" : "%s:%u", host, port);
			FZ_CHECK(listen_parse_hostport(again, &host2, &port2) == 0 &&
				 !strcmp(host, host2) && port == port2, "'%s' does not parse back",
				 again);
			free(host2);
		}
		free(host);
		break;
	}
	case 4: {	/* --vsock PORT */
		uint32_t port;
		r = listen_parse_vsock_port(s, &port);
		o = oracle_uint(s, 4294967294u, &w);
		FZ_CHECK((r == 0) == (o == 0), "listen_parse_vsock_port('%s') = %d", s, r);
		if (r == 0)
			FZ_CHECK(port == (w == 0 ? VMADDR_PORT_ANY : w), "vsock port %u for '%s'",
				 port, s);
		break;
	}
	case 5: {	/* uri_escape over any bytes, NULs included */
		char *e = uri_escape((const char *)f.p, f.n);
		FZ_CHECK(e, "uri_escape: out of memory");
		check_roundtrip(e, strlen(e), (const char *)f.p, f.n, "uri_escape");
		free(e);
		break;
	}
	case 6: {	/* nbd+unix:// and nbd+vsock:// URIs */
		char *nul = memchr(s, 0, f.n + 1);
		const char *path = s, *exp = nul + 1 <= s + f.n ? nul + 1 : "";
		char *uri = NULL;
		FZ_CHECK(uri_format_unix(path, exp, &uri) == 0, "uri_format_unix");
		check_unix_uri(uri, path, exp);
		free(uri);
		FZ_CHECK(uri_format_vsock((uint32_t)size * 7, (uint32_t)sel << 24, exp, &uri) == 0,
			 "uri_format_vsock");
		char pre[64];
		int pl = snprintf(pre, sizeof(pre), "nbd+vsock://%u:%u/", (uint32_t)size * 7,
				  (uint32_t)sel << 24);
		FZ_CHECK(!strncmp(uri, pre, (size_t)pl), "vsock URI '%s'", uri);
		check_roundtrip(uri + pl, strlen(uri + pl), exp, strlen(exp), "vsock export");
		free(uri);
		break;
	}
	case 7: {	/* nbd://HOST:PORT/EXPORT for IPv4 and IPv6 */
		struct sockaddr_storage ss;
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		uint8_t a[16];
		memset(&ss, 0, sizeof(ss));
		fz_bytes(&f, a, 16);
		uint16_t port = fz_u16(&f);
		const char *exp = (const char *)f.p;
		size_t el = strnlen(exp, f.n);
		char *expz = strndup(exp, el), *uri = NULL, addr[64];
		FZ_CHECK(expz, "out of memory");
		if (sel & 8) {
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, a, 16);
			sin6->sin6_port = htons(port);
		} else {
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, a, 4);
			sin->sin_port = htons(port);
		}
		FZ_CHECK(uri_format_inet((struct sockaddr *)&ss, expz, &uri) == 0,
			 "uri_format_inet");
		FZ_CHECK(!strncmp(uri, "nbd://", 6), "URI '%s'", uri);
		const char *hp = uri + 6, *slash = strchr(hp, '/');
		FZ_CHECK(slash, "URI '%s' without a path", uri);
		check_roundtrip(slash + 1, strlen(slash + 1), expz, el, "export name");
		/* The host part names the address (a wildcard: loopback), then the port. */
		char want[80];
		if (sel & 8) {
			struct in6_addr any = IN6ADDR_ANY_INIT;
			inet_ntop(AF_INET6, memcmp(a, &any,
				  16) ? (void *)a : (void *)&in6addr_loopback,
				  addr, sizeof(addr));
			snprintf(want, sizeof(want), "[%s]:%u/", addr, port);
		} else {
			uint32_t any = 0, lo = htonl(INADDR_LOOPBACK);
			inet_ntop(AF_INET, memcmp(a, &any, 4) ? (void *)a : (void *)&lo, addr,
				  sizeof(addr));
			snprintf(want, sizeof(want), "%s:%u/", addr, port);
		}
		FZ_CHECK(!strncmp(hp, want, strlen(want)), "URI '%s', expected host part '%s'",
			 uri, want);
		free(uri);
		free(expz);
		break;
	}
	}
	free(s);
	return 0;
}
