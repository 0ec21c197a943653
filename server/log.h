/* SPDX-License-Identifier: MIT */
/*
 * log.h - the server's messages, on stderr (or the journal via stderr).
 * Only server/ logs; the builders return -errno and let their caller log
 * once.  Messages read "what: 'path': reason".
 *
 *   return log_errno(r, "opening '%s'", path);   logs "...: <strerror>", returns r
 */
#ifndef EROFS_NBD_LOG_H
#define EROFS_NBD_LOG_H

#include <syslog.h>	/* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/*
 * LOG_NOTICE by default (errors, warnings, and what the operator asked
 * for, such as the SIGUSR1 report); -v raises it to LOG_INFO, -v -v to
 * LOG_DEBUG.
 */
extern int log_max_level;

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Logs at LOG_ERR with ": strerror(-err)" appended; returns err (< 0). */
int log_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
/* Checks the level before formatting anything. */
#define log_debug(...) \
	do { if (log_max_level >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
