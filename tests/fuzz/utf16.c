/* SPDX-License-Identifier: MIT */
/* utf16.c - fz_utf16(): strict UTF-8 to UTF-16, for the FAT and GPT checks. */
#include "tests/fuzz/fuzz.h"

int fz_utf16(const char *s, uint16_t *out, size_t cap)
{
	static const uint32_t min[] = { 0, 0x80, 0x800, 0x10000 };
	const uint8_t *p = (const uint8_t *)s;
	size_t n = 0;

	while (p && *p) {
		uint32_t cp;
		int more;

		if (*p < 0x80) {
			cp = *p;
			more = 0;
		} else if ((*p & 0xe0) == 0xc0) {
			cp = *p & 0x1f;
			more = 1;
		} else if ((*p & 0xf0) == 0xe0) {
			cp = *p & 0x0f;
			more = 2;
		} else if ((*p & 0xf8) == 0xf0) {
			cp = *p & 0x07;
			more = 3;
		} else {
			return -1;
		}
		p++;
		for (int i = 0; i < more; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return -1;
			cp = cp << 6 | (*p & 0x3f);
		}
		/* No overlong forms, surrogates or code points past U+10FFFF. */
		if (cp < min[more] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return -1;
		if (n + (cp >= 0x10000 ? 2 : 1) > cap)
			return (int)cap + 1;
		if (cp >= 0x10000) {
			out[n++] = (uint16_t)(0xD800 | (cp - 0x10000) >> 10);
			out[n++] = (uint16_t)(0xDC00 | ((cp - 0x10000) & 0x3ff));
		} else {
			out[n++] = (uint16_t)cp;
		}
	}
	return (int)n;
}
