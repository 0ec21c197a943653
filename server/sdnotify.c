/* SPDX-License-Identifier: MIT */
/*
 * sdnotify.c - socket activation, readiness notification, the pid file and
 * the parent-death signal (see sdnotify.h), implemented from the protocol
 * descriptions in sd_listen_fds(3) and sd_notify(3) without libsystemd.
 *
 * Activation: the manager binds the sockets, then execs us with them as
 * fds 3.. and LISTEN_PID = our pid, LISTEN_FDS = their count.  A pid that
 * is not ours means the variables leaked from an ancestor: ignore them.
 *
 * Notification: one datagram of "KEY=VALUE\n..." lines per message to the
 * AF_UNIX socket NOTIFY_SOCKET names; the kernel attaches our credentials,
 * which is how the manager knows the message comes from the main pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "server/cleanup.h"
#include "server/sdnotify.h"

/* ------------------------------------------------------------------ */
/* Socket activation                                                   */
/* ------------------------------------------------------------------ */

/* Parses a whole decimal number 0..max; no sign, space or junk. */
static int parse_decimal(const char *s, unsigned long max, unsigned long *ret)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v > (max - (unsigned long)(*p - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	*ret = v;
	return 0;
}

int activation_parse(const char *listen_pid, const char *listen_fds, pid_t self,
		     unsigned int *ret_n)
{
	unsigned long pid, n;

	*ret_n = 0;
	if (!listen_pid)
		return 0;
	if (parse_decimal(listen_pid, INT_MAX, &pid) < 0 || pid == 0)
		return -EINVAL;
	/* Meant for another process (sd_listen_fds(3)): not ours to judge. */
	if ((pid_t)pid != self || !listen_fds)
		return 0;
	if (parse_decimal(listen_fds, ACTIVATION_FDS_MAX, &n) < 0)
		return -EINVAL;
	*ret_n = (unsigned int)n;
	return 0;
}

int activation_take(unsigned int *ret_n, char **ret_names)
{
	const char *names = getenv("LISTEN_FDNAMES");
	_cleanup_free_ char *names_copy = NULL;
	unsigned int n = 0;
	int r;

	r = activation_parse(getenv("LISTEN_PID"), getenv("LISTEN_FDS"), getpid(), &n);
	if (r == 0 && n > 0 && names && ret_names) {
		names_copy = strdup(names);
		if (!names_copy)
			r = -ENOMEM;
	}
	/* Whatever happens, children must not see them. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("LISTEN_PIDFDID");
	if (r < 0)
		return r;

	for (unsigned int i = 0; i < n; i++) {
		int fd = ACTIVATION_FDS_START + (int)i;
		int fl = fcntl(fd, F_GETFD);

		if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
			return -errno;
	}
	*ret_n = n;
	if (ret_names)
		*ret_names = TAKE_PTR(names_copy);
	return 0;
}

bool activation_fd_name(const char *names, unsigned int idx, char *buf,
			size_t size)
{
	const char *p = names, *end;
	size_t len;

	if (size)
		buf[0] = '\0';
	if (!names)
		return false;
	for (unsigned int i = 0; i < idx; i++) {
		p = strchr(p, ':');
		if (!p)
			return false;
		p++;
	}
	end = strchrnul(p, ':');
	len = (size_t)(end - p);
	if (size) {
		if (len >= size)
			len = size - 1;
		memcpy(buf, p, len);
		buf[len] = '\0';
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Notification                                                        */
/* ------------------------------------------------------------------ */

/* Parses "CID:PORT" (decimal, each 0..UINT32_MAX) into an AF_VSOCK address. */
static int parse_vsock_address(const char *s, struct notifier *ret)
{
	struct sockaddr_vm svm = { .svm_family = AF_VSOCK };
	const char *colon = strchr(s, ':');
	unsigned long cid, port;
	char cid_s[16];

	if (!colon || (size_t)(colon - s) >= sizeof(cid_s))
		return -EINVAL;
	memcpy(cid_s, s, (size_t)(colon - s));
	cid_s[colon - s] = '\0';
	if (parse_decimal(cid_s, UINT32_MAX, &cid) < 0 ||
	    parse_decimal(colon + 1, UINT32_MAX, &port) < 0)
		return -EINVAL;
	svm.svm_cid = (unsigned int)cid;
	svm.svm_port = (unsigned int)port;
	memcpy(&ret->addr, &svm, sizeof(svm));
	ret->addrlen = sizeof(svm);
	return 0;
}

int notify_parse_address(const char *value, struct notifier *ret)
{
	static const struct {
		const char *prefix;
		int type;
	} vsock_forms[] = {
		{ "vsock:", SOCK_SEQPACKET },
		{ "vsock-stream:", SOCK_STREAM },
		{ "vsock-dgram:", SOCK_DGRAM },
		{ "vsock-seqpacket:", SOCK_SEQPACKET },
	};
	struct notifier n = { .fd = -1 };
	size_t len;

	if (!value || !*value)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(vsock_forms); i++) {
		size_t plen = strlen(vsock_forms[i].prefix);

		if (strncmp(value, vsock_forms[i].prefix, plen) == 0) {
			int r = parse_vsock_address(value + plen, &n);
			if (r < 0)
				return r;
			n.type = vsock_forms[i].type;
			*ret = n;
			return 0;
		}
	}
	if (value[0] != '/' && value[0] != '@')
		return value[0] && strchr(value, ':') ? -EAFNOSUPPORT : -EINVAL;

	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	len = strlen(value);
	if (len > sizeof(sun.sun_path) || (value[0] == '/' && len == sizeof(sun.sun_path)))
		return -ENAMETOOLONG;
	if (len == 1 && value[0] == '@')
		return -EINVAL;
	memcpy(sun.sun_path, value, len);
	if (value[0] == '@') {
		/* Abstract: NUL first; the length counts the name, no terminator. */
		sun.sun_path[0] = '\0';
		n.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		n.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	memcpy(&n.addr, &sun, sizeof(sun));
	n.type = SOCK_DGRAM;
	*ret = n;
	return 0;
}

int notify_open(struct notifier *ret)
{
	const char *value = getenv("NOTIFY_SOCKET");
	struct notifier n = { .fd = -1 };
	int r = 0;

	*ret = n;
	if (!value || !*value) {
		unsetenv("NOTIFY_SOCKET");
		return 0;
	}
	r = notify_parse_address(value, &n);
	unsetenv("NOTIFY_SOCKET");
	if (r < 0)
		return r;
	if (n.addr.ss_family == AF_UNIX) {
		n.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (n.fd < 0)
			return -errno;
		/*
		 * Connect now: the kernel checks write permission on the
		 * socket file at connect (and at each unconnected sendto),
		 * and after --user we may no longer have it.  If connecting
		 * fails, every message is tried with sendto() instead.
		 */
		n.connected = connect(n.fd, (const struct sockaddr *)&n.addr,
				      n.addrlen) == 0;
	}
	*ret = n;
	return 0;
}

bool notify_enabled(const struct notifier *n)
{
	return n->addrlen > 0;
}

/* vsock: one connection per message, as systemd's own client does. */
static int notify_send_vsock(const struct notifier *n, const char *state)
{
	size_t len = strlen(state);
	_cleanup_close_ int fd = socket(AF_VSOCK, n->type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&n->addr, n->addrlen) < 0)
		return -errno;
	ssize_t w = send(fd, state, len, MSG_NOSIGNAL);
	if (w < 0)
		return -errno;
	return (size_t)w == len ? 0 : -EIO;
}

int notify_send(const struct notifier *n, const char *state)
{
	size_t len = strlen(state);
	ssize_t w;

	if (!notify_enabled(n))
		return 0;
	if (n->addr.ss_family == AF_VSOCK)
		return notify_send_vsock(n, state);
	if (n->fd < 0)
		return -EBADF;
	do {
		if (n->connected)
			w = send(n->fd, state, len, MSG_NOSIGNAL);
		else
			w = sendto(n->fd, state, len, MSG_NOSIGNAL,
				   (const struct sockaddr *)&n->addr, n->addrlen);
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return -errno;
	/* A datagram goes whole or not at all. */
	return (size_t)w == len ? 0 : -EIO;
}

void notify_close(struct notifier *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	n->addrlen = 0;
}

/* ------------------------------------------------------------------ */
/* Pid file and parent death                                           */
/* ------------------------------------------------------------------ */

int pidfile_write(const char *path, pid_t pid)
{
	_cleanup_free_ char *tmp = NULL;
	char buf[32];
	int len, r = 0;

	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return -ENOMEM;
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	errno = 0;
	if (fchmod(fd, 0644) < 0 || write(fd, buf, (size_t)len) != len ||
	    fsync(fd) < 0)
		r = errno ? -errno : -EIO;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

int parent_death_arm(pid_t expected_ppid)
{
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0)
		return -errno;
	/* The parent may have gone before the request: we are re-parented. */
	if (getppid() != expected_ppid)
		return -ESRCH;
	return 0;
}
