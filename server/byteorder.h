/* SPDX-License-Identifier: MIT */
/*
 * byteorder.h - loads and stores of fixed-width integers in a given byte
 * order at any address (memcpy-based, so no alignment is needed).  The
 * one place the formats convert: EROFS, GPT and FAT are little-endian,
 * NBD is big-endian (network order).  Builders keep host values and
 * convert only when they serialise.
 */
#ifndef EROFS_NBD_BYTEORDER_H
#define EROFS_NBD_BYTEORDER_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define BYTEORDER_DEFINE(bits, order)						\
static inline void put_##order##bits(void *p, uint##bits##_t v)		\
{										\
	v = hto##order##bits(v);						\
	memcpy(p, &v, sizeof(v));						\
}										\
static inline uint##bits##_t get_##order##bits(const void *p)		\
{										\
	uint##bits##_t v;							\
	memcpy(&v, p, sizeof(v));						\
	return order##bits##toh(v);						\
}

/* put_le16(p, v), get_le16(p), ... put_be64(p, v), get_be64(p) */
BYTEORDER_DEFINE(16, le)
BYTEORDER_DEFINE(32, le)
BYTEORDER_DEFINE(64, le)
BYTEORDER_DEFINE(16, be)
BYTEORDER_DEFINE(32, be)
BYTEORDER_DEFINE(64, be)

#undef BYTEORDER_DEFINE

#endif
