/* SPDX-License-Identifier: MIT */
/*
 * bench/cputime.c - CPU time to the microsecond for the bench, where
 * /proc/PID/stat and time(1) give it in clock ticks (10 ms here, ~8 of
 * them in a pass of nbdcopy over minbase).
 *
 *   cputime PID                   the CPU time (user + system) that process
 *                                 PID has used so far, every thread of it,
 *                                 the ones that have ended included:
 *                                 "NANOSECONDS" on stdout
 *   cputime -o FILE CMD [ARG]...  run CMD, write "USER SYS" (seconds, six
 *                                 decimals) of it and of the children it
 *                                 waited for to FILE, as time(1)'s
 *                                 -f '%U %S' does; exit with CMD's status
 *
 * The first reads the process's CPU clock (clock_getcpuclockid(3)), which
 * the kernel keeps in nanoseconds; the second is wait4(2)'s rusage.
 *
 * Exit status: 0 (or CMD's status; 128 + N when a signal N ended it),
 * 1 when PID is gone or CMD cannot be run, 2 on bad usage.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: cputime PID | cputime -o FILE CMD [ARG]...\n");
	return 2;
}

static int pid_cputime(const char *arg)
{
	struct timespec ts;
	clockid_t clk;
	char *end;
	long pid;
	int err;

	errno = 0;
	pid = strtol(arg, &end, 10);
	if (errno || end == arg || *end || pid <= 0 || pid > INT_MAX)
		return usage();
	err = clock_getcpuclockid((pid_t)pid, &clk);
	if (err) {
		fprintf(stderr, "cputime: process %ld: %s\n", pid, strerror(err));
		return 1;
	}
	if (clock_gettime(clk, &ts) < 0) {
		fprintf(stderr, "cputime: process %ld: %s\n", pid, strerror(errno));
		return 1;
	}
	printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	return 0;
}

static int run_cputime(const char *file, char **argv)
{
	struct rusage ru;
	FILE *out;
	pid_t pid;
	int status;

	pid = fork();
	if (pid < 0) {
		perror("cputime: fork");
		return 1;
	}
	if (pid == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "cputime: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("cputime: wait4");
			return 1;
		}
	}
	out = fopen(file, "w");
	if (!out) {
		fprintf(stderr, "cputime: %s: %s\n", file, strerror(errno));
		return 1;
	}
	fprintf(out, "%ld.%06ld %ld.%06ld\n",
		(long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
		(long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
	if (fclose(out) != 0) {
		fprintf(stderr, "cputime: %s: %s\n", file, strerror(errno));
		return 1;
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	if (argc == 2)
		return pid_cputime(argv[1]);
	if (argc >= 4 && strcmp(argv[1], "-o") == 0)
		return run_cputime(argv[2], argv + 3);
	return usage();
}
