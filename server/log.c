/* SPDX-License-Identifier: MIT */
/* log.c - see log.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/log.h"

int log_max_level = LOG_NOTICE;

static void __attribute__((format(printf, 3, 0)))
vlog(int level, int err, const char *fmt, va_list ap)
{
	static const char *const prefix[] = {
		[LOG_ERR] = "error: ", [LOG_WARNING] = "warning: ",
		[LOG_INFO] = "", [LOG_DEBUG] = "debug: ",
	};
	char buf[1024];
	int saved = errno;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One fprintf per message, so lines from threads do not interleave. */
	if (err)
		fprintf(stderr, "erofs-nbd: %s%s: %s\n",
			level <= LOG_DEBUG && prefix[level] ? prefix[level] : "",
			buf, strerror(-err));
	else
		fprintf(stderr, "erofs-nbd: %s%s\n",
			level <= LOG_DEBUG && prefix[level] ? prefix[level] : "", buf);
	errno = saved;
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_max_level)
		return;
	va_start(ap, fmt);
	vlog(level, 0, fmt, ap);
	va_end(ap);
}

int log_errno(int err, const char *fmt, ...)
{
	va_list ap;

	if (err > 0)
		err = -err;
	va_start(ap, fmt);
	vlog(LOG_ERR, err, fmt, ap);
	va_end(ap);
	return err;
}
