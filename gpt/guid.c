// SPDX-License-Identifier: MIT
/*
 * guid.c - GUIDs for the GPT: the partition type constants (B.8), GUIDs
 * derived from a seed so that the same tree gives the same disk (B.6),
 * and the text form that sgdisk, blkid and root=PARTUUID= use.
 *
 * Two byte orders are in play (../shared/docs/fat32-gpt.md B.6).  The text
 * form AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE reads the 16 bytes in "text
 * order"; on disk the first three groups are stored byte-reversed (little
 * endian) and the last two as written.  struct gpt_guid always holds the
 * on-disk order; the conversion is its own inverse.
 */
#include <stdint.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY	/* XXH3_state_t on the stack: cannot fail */
#include <xxhash.h>

#include "gpt/gpt.h"

/* B.8, stored in the B.6 on-disk order (the sheet's byte table). */
const struct gpt_guid gpt_type_esp = { {	/* C12A7328-F81F-11D2-BA4B-00A0C93EC93B */
	0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11,
	0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
} };
const struct gpt_guid gpt_type_root_x86_64 = { {	/* 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 */
	0xe3, 0xbc, 0x68, 0x4f, 0xcd, 0xe8, 0xb1, 0x4d,
	0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09,
} };
const struct gpt_guid gpt_type_root_aarch64 = { {	/* B921B045-1DF0-41C3-AF44-4C6F280D3FAE */
	0x45, 0xb0, 0x21, 0xb9, 0xf0, 0x1d, 0xc3, 0x41,
	0xaf, 0x44, 0x4c, 0x6f, 0x28, 0x0d, 0x3f, 0xae,
} };

/*
 * Converts between text order and on-disk order (B.6): reverses the
 * 4-byte and the two 2-byte groups, copies the last 8 bytes.  Applying it
 * twice gives the input back.
 */
static void guid_swap(const uint8_t in[16], uint8_t out[16])
{
	out[0] = in[3];
	out[1] = in[2];
	out[2] = in[1];
	out[3] = in[0];
	out[4] = in[5];
	out[5] = in[4];
	out[6] = in[7];
	out[7] = in[6];
	memcpy(out + 8, in + 8, 8);
}

/*
 * The hash's canonical (big-endian) bytes are taken as the text order, so
 * the version nibble is the first hex digit of the third group and the
 * variant bits the top of the fourth (RFC 9562 section 4.1, 4.2), exactly
 * where blkid and sgdisk print them.  Then converted to on-disk order.
 */
void gpt_guid_derive(const void *seed, size_t seed_len, const char *purpose,
		     struct gpt_guid *ret)
{
	XXH3_state_t st;
	XXH128_canonical_t canon;
	uint8_t text[16];

	XXH3_INITSTATE(&st);
	(void)XXH3_128bits_reset(&st);
	if (seed_len)
		(void)XXH3_128bits_update(&st, seed, seed_len);
	if (purpose && *purpose)
		(void)XXH3_128bits_update(&st, purpose, strlen(purpose));
	XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(&st));

	memcpy(text, canon.digest, sizeof(text));
	text[6] = (uint8_t)((text[6] & 0x0f) | 0x40);	/* version 4 */
	text[8] = (uint8_t)((text[8] & 0x3f) | 0x80);	/* variant 10xx */
	guid_swap(text, ret->b);
}

void gpt_guid_format(const struct gpt_guid *guid, char out[37])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t text[16];
	size_t o = 0;

	guid_swap(guid->b, text);
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[text[i] >> 4];
		out[o++] = hex[text[i] & 0x0f];
	}
	out[o] = '\0';
}
