/* SPDX-License-Identifier: MIT */
/* nbd-client.c - see nbd-client.h. */
#include <string.h>

#include "tests/unit/nbd-client.h"

size_t nbdt_option(uint8_t *b, uint32_t opt, const void *data, uint32_t len)
{
	static const uint8_t ihaveopt[8] = { 'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T' };

	memcpy(b, ihaveopt, sizeof(ihaveopt));
	put_be32(b + 8, opt);
	put_be32(b + 12, len);
	if (len)
		memcpy(b + 16, data, len);
	return 16 + (size_t)len;
}

ssize_t nbdt_feed(struct srv_conn *conn, const void *p, size_t n)
{
	size_t used = 0;

	while (used < n) {
		ssize_t r = srv_conn_step(conn, (const uint8_t *)p + used, n - used);
		if (r <= 0)
			return r < 0 ? r : (ssize_t)used;
		used += (size_t)r;
	}
	return (ssize_t)used;
}
