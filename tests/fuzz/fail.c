/* SPDX-License-Identifier: MIT */
/* fail.c - fz_fail(): how a harness reports a broken invariant (fuzz.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"

void fz_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	/* Straight to fd 2: a harness may point stdio's stderr elsewhere. */
	dprintf(STDERR_FILENO, "\n==== invariant failed at %s:%d: ", file, line);
	va_start(ap, fmt);
	vdprintf(STDERR_FILENO, fmt, ap);
	va_end(ap);
	dprintf(STDERR_FILENO, " ====\n");
	/* libFuzzer saves the input and reports a crash (deadly signal). */
	abort();
}
