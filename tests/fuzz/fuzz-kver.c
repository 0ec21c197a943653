/* SPDX-License-Identifier: MIT */
/*
 * fuzz-kver.c - libFuzzer target for bootcfg_kver_cmp() (fat/bootcfg.c),
 * the version order that picks the kernel to boot.  The input is split
 * at NUL bytes into up to three strings a, b, c (missing ones are "").
 * Checked, aborting on a violation: the result is -1, 0 or 1; a string
 * equals itself; the order is antisymmetric (cmp(a,b) == -cmp(b,a)) and
 * transitive (a <= b <= c implies a <= c; a == b == c implies a == c);
 * and any bytes are read without going past a string's end (ASan).
 *
 * Seeds: tests/fuzz/corpus/kver/.  Build and run: make fuzz.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fat/bootcfg.h"
#include "tests/fuzz/fuzz.h"

static int cmp(const char *a, const char *b)
{
	int r = bootcfg_kver_cmp(a, b);

	if (r < -1 || r > 1)
		abort();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s[3], *buf = fz_strings(data, size, s, 3);

	if (!buf)
		return 0;

	for (int i = 0; i < 3; i++) {
		if (cmp(s[i], s[i]) != 0)
			abort();
		for (int j = 0; j < 3; j++) {
			int ij = cmp(s[i], s[j]);

			if (ij != -cmp(s[j], s[i]))
				abort();
			for (int k = 0; k < 3; k++) {
				int jk = cmp(s[j], s[k]), ik = cmp(s[i], s[k]);

				if (ij <= 0 && jk <= 0 && ik > 0)
					abort();
				if (ij == 0 && jk == 0 && ik != 0)
					abort();
			}
		}
	}
	free(buf);
	return 0;
}
