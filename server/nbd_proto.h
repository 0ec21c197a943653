/* SPDX-License-Identifier: MIT */
/*
 * nbd_proto.h - NBD wire format: magics, option and command codes, flags,
 * and the fixed-size messages of the fixed-newstyle handshake and of the
 * transmission phase (compact headers).  Facts and section numbers:
 * ../shared/docs/nbd-protocol.md (A1 constants, A3 handshake, A7 framing,
 * A9 chunks).
 *
 * Byte order: every multi-byte integer on the wire is big-endian (network
 * order).  The structs below hold wire bytes; they are converted with the
 * get_be / put_be helpers at the point where a message is parsed or built,
 * never used as host values.
 */
#ifndef EROFS_NBD_NBD_PROTO_H
#define EROFS_NBD_NBD_PROTO_H

#include "server/byteorder.h"
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A1: magic numbers. */
#define NBD_INIT_PASSWD			0x4e42444d41474943ULL	/* "NBDMAGIC" */
#define NBD_IHAVEOPT			0x49484156454F5054ULL	/* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC		0x0003e889045565a9ULL
#define NBD_REQUEST_MAGIC		0x25609513U
#define NBD_SIMPLE_REPLY_MAGIC		0x67446698U
#define NBD_STRUCTURED_REPLY_MAGIC	0x668e33efU

/* A1: handshake flags (server -> client, u16). */
#define NBD_FLAG_FIXED_NEWSTYLE		0x0001
#define NBD_FLAG_NO_ZEROES		0x0002

/* A1: client flags (client -> server, u32). */
#define NBD_FLAG_C_FIXED_NEWSTYLE	0x00000001U
#define NBD_FLAG_C_NO_ZEROES		0x00000002U

/* A1: option codes. */
#define NBD_OPT_EXPORT_NAME		1
#define NBD_OPT_ABORT			2
#define NBD_OPT_LIST			3
#define NBD_OPT_PEEK_EXPORT		4
#define NBD_OPT_STARTTLS		5
#define NBD_OPT_INFO			6
#define NBD_OPT_GO			7
#define NBD_OPT_STRUCTURED_REPLY	8
#define NBD_OPT_LIST_META_CONTEXT	9
#define NBD_OPT_SET_META_CONTEXT	10
#define NBD_OPT_EXTENDED_HEADERS	11

/* A1: option reply types; errors have bit 31 set. */
#define NBD_REP_ACK			1U
#define NBD_REP_SERVER			2U
#define NBD_REP_INFO			3U
#define NBD_REP_META_CONTEXT		4U
#define NBD_REP_FLAG_ERROR		0x80000000U
#define NBD_REP_ERR_UNSUP		0x80000001U
#define NBD_REP_ERR_POLICY		0x80000002U
#define NBD_REP_ERR_INVALID		0x80000003U
#define NBD_REP_ERR_PLATFORM		0x80000004U
#define NBD_REP_ERR_TLS_REQD		0x80000005U
#define NBD_REP_ERR_UNKNOWN		0x80000006U
#define NBD_REP_ERR_SHUTDOWN		0x80000007U
#define NBD_REP_ERR_BLOCK_SIZE_REQD	0x80000008U
#define NBD_REP_ERR_TOO_BIG		0x80000009U

/* A1: NBD_INFO types inside NBD_REP_INFO (u16). */
#define NBD_INFO_EXPORT			0
#define NBD_INFO_NAME			1
#define NBD_INFO_DESCRIPTION		2
#define NBD_INFO_BLOCK_SIZE		3

/* A1, A6: transmission flags (u16). */
#define NBD_FLAG_HAS_FLAGS		0x0001
#define NBD_FLAG_READ_ONLY		0x0002
#define NBD_FLAG_SEND_FLUSH		0x0004
#define NBD_FLAG_SEND_FUA		0x0008
#define NBD_FLAG_ROTATIONAL		0x0010
#define NBD_FLAG_SEND_TRIM		0x0020
#define NBD_FLAG_SEND_WRITE_ZEROES	0x0040
#define NBD_FLAG_SEND_DF		0x0080
#define NBD_FLAG_CAN_MULTI_CONN		0x0100
#define NBD_FLAG_SEND_RESIZE		0x0200
#define NBD_FLAG_SEND_CACHE		0x0400
#define NBD_FLAG_SEND_FAST_ZERO		0x0800

/* A1: command types (u16). */
#define NBD_CMD_READ			0
#define NBD_CMD_WRITE			1
#define NBD_CMD_DISC			2
#define NBD_CMD_FLUSH			3
#define NBD_CMD_TRIM			4
#define NBD_CMD_CACHE			5
#define NBD_CMD_WRITE_ZEROES		6
#define NBD_CMD_BLOCK_STATUS		7
#define NBD_CMD_RESIZE			8

/* A1: command flags (u16). */
#define NBD_CMD_FLAG_FUA		0x0001
#define NBD_CMD_FLAG_NO_HOLE		0x0002
#define NBD_CMD_FLAG_DF			0x0004
#define NBD_CMD_FLAG_REQ_ONE		0x0008
#define NBD_CMD_FLAG_FAST_ZERO		0x0010
#define NBD_CMD_FLAG_PAYLOAD_LEN	0x0020

/* A1, A9: structured reply chunk flags and types (u16). */
#define NBD_REPLY_FLAG_DONE		0x0001
#define NBD_REPLY_TYPE_NONE		0
#define NBD_REPLY_TYPE_OFFSET_DATA	1
#define NBD_REPLY_TYPE_OFFSET_HOLE	2
#define NBD_REPLY_TYPE_BLOCK_STATUS	5
#define NBD_REPLY_TYPE_ERROR		0x8001
#define NBD_REPLY_TYPE_ERROR_OFFSET	0x8002

/* A1: error values (u32), independent of the host's errno numbers. */
#define NBD_SUCCESS			0
#define NBD_EPERM			1
#define NBD_EIO				5
#define NBD_ENOMEM			12
#define NBD_EINVAL			22
#define NBD_ENOSPC			28
#define NBD_EOVERFLOW			75
#define NBD_ENOTSUP			95
#define NBD_ESHUTDOWN			108

/* A1, A10: base:allocation status bits (u32 per extent). */
#define NBD_STATE_HOLE			0x1
#define NBD_STATE_ZERO			0x2

/* A10: the one meta context we serve. */
#define NBD_META_BASE_ALLOCATION	"base:allocation"

/* A3.1: server greeting, 18 bytes, sent on accept. */
struct nbd_greeting {
	uint64_t passwd;	/* 0x00 NBD_INIT_PASSWD */
	uint64_t magic;		/* 0x08 NBD_IHAVEOPT */
	uint16_t flags;		/* 0x10 NBD_FLAG_FIXED_NEWSTYLE | NO_ZEROES */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_greeting) == 18, "nbd_greeting size");

/* A3.3: option request header, 16 bytes, followed by len bytes of data. */
struct nbd_option {
	uint64_t magic;		/* 0x00 NBD_IHAVEOPT */
	uint32_t option;	/* 0x08 NBD_OPT_* */
	uint32_t len;		/* 0x0c bytes of data that follow */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_option) == 16, "nbd_option size");

/* A3.4: option reply header, 20 bytes, followed by len bytes of payload. */
struct nbd_option_reply {
	uint64_t magic;		/* 0x00 NBD_OPT_REPLY_MAGIC */
	uint32_t option;	/* 0x08 the option this answers */
	uint32_t reply;		/* 0x0c NBD_REP_* */
	uint32_t len;		/* 0x10 payload bytes that follow */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_option_reply) == 20, "nbd_option_reply size");

/* A3.5: NBD_OPT_EXPORT_NAME reply; 124 zero bytes follow without NO_ZEROES. */
struct nbd_export_name_reply {
	uint64_t size;		/* 0x00 export size in bytes */
	uint16_t eflags;	/* 0x08 transmission flags */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_export_name_reply) == 10, "export_name_reply size");
#define NBD_EXPORT_NAME_ZEROES		124

/* A4: NBD_REP_INFO / NBD_INFO_EXPORT payload, 12 bytes. */
struct nbd_info_export {
	uint16_t info;		/* 0x00 NBD_INFO_EXPORT */
	uint64_t size;		/* 0x02 export size in bytes */
	uint16_t eflags;	/* 0x0a transmission flags */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_info_export) == 12, "nbd_info_export size");

/* A4, A5: NBD_REP_INFO / NBD_INFO_BLOCK_SIZE payload, 14 bytes. */
struct nbd_info_block_size {
	uint16_t info;		/* 0x00 NBD_INFO_BLOCK_SIZE */
	uint32_t minimum;	/* 0x02 bytes, power of two */
	uint32_t preferred;	/* 0x06 bytes, power of two */
	uint32_t maximum;	/* 0x0a bytes, largest payload accepted */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "nbd_info_block_size size");

/* A7.1: compact request, 28 bytes; len bytes of data follow for WRITE only. */
struct nbd_request_hdr {
	uint32_t magic;		/* 0x00 NBD_REQUEST_MAGIC */
	uint16_t flags;		/* 0x04 NBD_CMD_FLAG_* */
	uint16_t type;		/* 0x06 NBD_CMD_* */
	uint64_t cookie;	/* 0x08 opaque, echoed in the reply */
	uint64_t offset;	/* 0x10 bytes into the export */
	uint32_t len;		/* 0x18 bytes */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_request_hdr) == 28, "nbd_request_hdr size");

/* A7.2: simple reply, 16 bytes; READ data follows on success. */
struct nbd_simple_reply {
	uint32_t magic;		/* 0x00 NBD_SIMPLE_REPLY_MAGIC */
	uint32_t error;		/* 0x04 NBD_E*, 0 on success */
	uint64_t cookie;	/* 0x08 the request's cookie */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "nbd_simple_reply size");

/* A7.2: structured reply chunk header, 20 bytes; len bytes of payload follow. */
struct nbd_chunk_hdr {
	uint32_t magic;		/* 0x00 NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t flags;		/* 0x04 NBD_REPLY_FLAG_DONE on the last chunk */
	uint16_t type;		/* 0x06 NBD_REPLY_TYPE_* */
	uint64_t cookie;	/* 0x08 the request's cookie */
	uint32_t len;		/* 0x10 payload bytes */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_chunk_hdr) == 20, "nbd_chunk_hdr size");

/* A9: OFFSET_DATA payload starts with the absolute offset (u64), then data. */
#define NBD_OFFSET_DATA_HDR	(sizeof(struct nbd_chunk_hdr) + 8)

/* A9: OFFSET_HOLE payload, 12 bytes. */
struct nbd_chunk_hole {
	uint64_t offset;	/* 0x00 absolute offset of the hole */
	uint32_t len;		/* 0x08 hole bytes, > 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_chunk_hole) == 12, "nbd_chunk_hole size");

/* A9: ERROR payload head, 6 bytes; msg_len bytes of UTF-8 follow. */
struct nbd_chunk_error {
	uint32_t error;		/* 0x00 NBD_E*, non-zero */
	uint16_t msg_len;	/* 0x04 bytes of message */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_chunk_error) == 6, "nbd_chunk_error size");

/* A9, A10: one BLOCK_STATUS extent; the payload is a u32 context id + n of these. */
struct nbd_extent {
	uint32_t len;		/* 0x00 bytes, > 0 */
	uint32_t flags;		/* 0x04 NBD_STATE_* */
} __attribute__((packed));
_Static_assert(sizeof(struct nbd_extent) == 8, "nbd_extent size");

#endif
