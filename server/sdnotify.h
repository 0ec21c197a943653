/* SPDX-License-Identifier: MIT */
/*
 * sdnotify.h - what a service manager and the program say to each other,
 * without libsystemd: socket activation (sd_listen_fds(3): LISTEN_PID,
 * LISTEN_FDS, LISTEN_FDNAMES), readiness and status notification
 * (sd_notify(3): NOTIFY_SOCKET, READY=1, STATUS=, STOPPING=1), the pid
 * file and the parent-death signal (--pidfile, --exit-with-parent).
 * Facts: ../shared/docs/vfkit-launch.md section 4.1 and 4.2.
 *
 * Nothing here logs: functions return 0 or -errno and main.c reports.
 */
#ifndef EROFS_NBD_SDNOTIFY_H
#define EROFS_NBD_SDNOTIFY_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The first passed descriptor (SD_LISTEN_FDS_START). */
#define ACTIVATION_FDS_START 3
/* More passed descriptors than this are refused as malformed. */
#define ACTIVATION_FDS_MAX 1024U

/*
 * Decides, from the values of LISTEN_PID and LISTEN_FDS (either may be
 * NULL: unset), how many descriptors starting at ACTIVATION_FDS_START were
 * passed to the process self, in the order sd_listen_fds(3) checks them:
 * LISTEN_PID unset: none; not a decimal number > 0: -EINVAL; naming
 * another process (the variables were meant for a parent that exec'ed us
 * without clearing them): none, LISTEN_FDS not even looked at; then
 * LISTEN_FDS unset: none; not a decimal number 0..ACTIVATION_FDS_MAX:
 * -EINVAL.  Returns 0 with *ret_n (0: none) or -EINVAL.
 */
int activation_parse(const char *listen_pid, const char *listen_fds, pid_t self,
		     unsigned int *ret_n);

/*
 * Takes the descriptors passed to this process: parses the environment
 * with activation_parse(), checks that each of fds 3..3+n-1 is open, sets
 * FD_CLOEXEC on each, and unsets LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
 * and LISTEN_PIDFDID whatever the outcome, so that no child inherits them
 * (sd_listen_fds(unset_environment = 1)).  Sets *ret_n (0: none) and, if
 * ret_names is not NULL, *ret_names to a malloc'ed copy of LISTEN_FDNAMES
 * (colon-separated, one name per fd) or NULL.  Returns 0, -EINVAL
 * (malformed variables), -EBADF (a descriptor is not open) or -ENOMEM.
 */
int activation_take(unsigned int *ret_n, char **ret_names);

/*
 * Copies the idx-th colon-separated name of names (LISTEN_FDNAMES) into
 * buf (size bytes, truncated, always NUL-terminated).  Returns true if
 * there is such a name, false (buf = "") otherwise or for names == NULL.
 */
bool activation_fd_name(const char *names, unsigned int idx, char *buf,
			size_t size);

/* Where notifications go: NOTIFY_SOCKET, resolved once at start-up. */
struct notifier {
	int fd;				/* AF_UNIX datagram socket, or -1 */
	struct sockaddr_storage addr;	/* the manager's socket */
	socklen_t addrlen;		/* 0: nothing to notify */
	int type;			/* socket type; AF_VSOCK connects per message */
	bool connected;			/* fd is connected to addr */
};

/*
 * Parses a NOTIFY_SOCKET value: "/path" (AF_UNIX), "@name" (Linux abstract
 * namespace: the '@' becomes a NUL and the address length covers exactly
 * the name, no trailing NUL), "vsock:CID:PORT" or "vsock-stream:",
 * "vsock-dgram:", "vsock-seqpacket:" (AF_VSOCK of that type; plain
 * "vsock:" is SOCK_SEQPACKET, the type systemd tries first).  Fills *ret
 * and returns 0, or -EINVAL (empty, relative, malformed CID/PORT),
 * -ENAMETOOLONG (longer than sun_path) or -EAFNOSUPPORT (other forms).
 */
int notify_parse_address(const char *value, struct notifier *ret);

/*
 * Reads NOTIFY_SOCKET, unsets it (helpers we start must not notify in our
 * name) and, for an AF_UNIX address, creates the close-on-exec datagram
 * socket messages are sent from, now, before privileges are dropped.
 * The AF_UNIX socket is connected to the address right away, so that
 * messages still go through once the process switched user.
 * With NOTIFY_SOCKET unset or empty, *ret is left inert (notify_send()
 * then does nothing).  Returns 0 or -errno from notify_parse_address()
 * or socket(); *ret is inert on failure too.
 */
int notify_open(struct notifier *ret);

/*
 * Sends one notification: state is newline-separated KEY=VALUE lines
 * ("READY=1\nSTATUS=Serving 1 export"), sent as one datagram (sendto with
 * MSG_NOSIGNAL) or, for vsock, over one connection.  Does nothing and
 * returns 0 for an inert notifier.  Returns 0 or -errno.  sd_notify(3).
 */
int notify_send(const struct notifier *n, const char *state);

/* Closes the notifier's socket and makes it inert.  Safe to call twice. */
void notify_close(struct notifier *n);

/* True when notify_send() would send something. */
bool notify_enabled(const struct notifier *n);

/*
 * Writes "PID\n" to path, atomically: a temporary file in the same
 * directory (mode 0644) renamed over path, so a reader never sees a
 * partial pid.  Returns 0 or -errno of open/write/fsync/rename (the
 * temporary file is removed on failure).
 */
int pidfile_write(const char *path, pid_t pid);

/*
 * Asks the kernel to send SIGTERM to this process when its parent
 * exits (PR_SET_PDEATHSIG), then checks that the parent is still
 * expected_ppid: it may have exited before the request was made.  The
 * kernel sends the signal when the thread that forked us exits, and
 * clears the setting when this process changes its uid or gid, so call
 * this again after switching user.  Returns 0, -ESRCH when the parent is
 * already gone, or -errno of prctl.  prctl(2).
 */
int parent_death_arm(pid_t expected_ppid);

#endif
