/* SPDX-License-Identifier: MIT */
/*
 * nbd-client.h - what the protocol unit tests share: building client
 * messages byte by byte (../shared/docs/nbd-protocol.md A3.3) and feeding
 * them to a connection's protocol state machine.
 */
#ifndef EROFS_NBD_TEST_NBD_CLIENT_H
#define EROFS_NBD_TEST_NBD_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/internal.h"

/*
 * Writes an option request (IHAVEOPT magic, code, length, len bytes of
 * data) to b; returns its length in bytes (16 + len).
 */
size_t nbdt_option(uint8_t *b, uint32_t opt, const void *data, uint32_t len);

/*
 * Feeds n client bytes to srv_conn_step() until it has taken them all or
 * stops.  Returns the bytes consumed, or the first negative value the
 * connection returned (the server drops the client).
 */
ssize_t nbdt_feed(struct srv_conn *conn, const void *p, size_t n);

#endif
