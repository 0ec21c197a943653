// SPDX-License-Identifier: MIT
/*
 * ssh.c - reaching the guest over SSH for --ssh and -- COMMAND: a
 * throwaway key pair made with ssh-keygen in the private runtime
 * directory, the public key handed to the guest as the systemd credential
 * ssh.authorized_keys.root (systemd's tmpfiles provision.conf writes it
 * to /root/.ssh/authorized_keys), a free loopback port for QEMU's
 * user-mode forward to guest port 22 (vfkit: its virtio-vsock port 22 on
 * $RUN/ssh.sock, reached through this program's --proxy-unix), the wait
 * for sshd's banner, and the ssh command line with COMMAND quoted for
 * the remote shell.
 *
 * A fresh known_hosts file per run ($RUN/known_hosts, accept-new): the
 * guest's host key is learnt on the first connection of the run and the
 * file goes with the runtime directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "launcher/launch.h"
#include "server/cleanup.h"

char *shell_quote_argv(char *const argv[])
{
	size_t len = 1;
	char *out, *o;

	for (size_t i = 0; argv[i]; i++) {
		len += 3;	/* quotes, space */
		for (const char *p = argv[i]; *p; p++)
			len += *p == '\'' ? 4 : 1;
	}
	out = malloc(len);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; argv[i]; i++) {
		if (i)
			*o++ = ' ';
		*o++ = '\'';
		for (const char *p = argv[i]; *p; p++) {
			if (*p == '\'') {
				memcpy(o, "'\\''", 4);	/* end quote, \', reopen */
				o += 4;
			} else {
				*o++ = *p;
			}
		}
		*o++ = '\'';
	}
	*o = '\0';
	return out;
}

/* Runs argv to completion with stdin and stdout on /dev/null; returns its
 * wait status, or -errno. */
static int run_quiet(char *const argv[])
{
	_cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	int st;
	pid_t pid;

	if (devnull < 0)
		return -errno;
	pid = sup_spawn(argv, NULL, devnull, devnull, false, -1);
	if (pid < 0)
		return pid;
	log_info("started %s (pid %d)", argv[0], (int)pid);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return st;
}

/* A free TCP port on 127.0.0.1 (the kernel's pick; QEMU binds it next). */
static int free_port(unsigned int *ret)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	*ret = ntohs(sa.sin_port);
	return 0;
}

int ssh_pick_port(struct launch *l)
{
	int r = free_port(&l->ssh_port);

	return r < 0 ? log_errno(r, "finding a free port on 127.0.0.1") : 0;
}

int ssh_prepare(struct launch *l)
{
	char *keygen[] = { "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
			   "erofs-nbd-launch", "-f", l->ssh_key, NULL };
	int st, r;

	if (l->vmm == VMM_QEMU && (r = ssh_pick_port(l)) < 0)
		return r;
	if (l->dry_run)
		return 0;	/* no key: a dry run starts nothing */
	r = find_program(keygen[0]);
	if (r < 0)
		return log_errno(r, "'ssh-keygen' (install openssh-client)");
	/* Not after a boot of minutes: ssh itself must be there too. */
	r = find_program("ssh");
	if (r < 0)
		return log_errno(r, "'ssh' (install openssh-client)");
	st = run_quiet(keygen);
	if (st < 0)
		return log_errno(st, "running ssh-keygen");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		log_error("ssh-keygen failed (status 0x%x) making '%s'", st, l->ssh_key);
		return -EIO;
	}
	log_debug("throwaway key pair '%s'", l->ssh_key);
	return 0;
}

/* Connects to where the guest's sshd is reached; fd or -errno. */
static int ssh_connect(const struct launch *l, int timeout_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = timeout_ms / 1000,
			      .tv_usec = (timeout_ms % 1000) * 1000 };
	_cleanup_close_ int fd = -1;

	if (l->vmm == VMM_VFKIT)
		return unix_connect(l->ssh_sock, timeout_ms);
	sa.sin_port = htons((uint16_t)l->ssh_port);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || fd_cloexec(fd, false) < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int ssh_probe(const struct launch *l)
{
	char buf[256];
	size_t got = 0;
	_cleanup_close_ int fd = ssh_connect(l, 3000);

	if (fd < 0)
		return fd;
	/* QEMU's user-mode network (and vfkit's vsock proxy) accept the
	 * connection before the guest does: only sshd's identification
	 * string (RFC 4253 §4.2, "SSH-2.0-...") proves it is there. */
	while (got < 4) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		got += (size_t)n;
	}
	return memcmp(buf, "SSH-", 4) == 0 ? 0 : -EPROTO;
}

/*
 * s with each '%' doubled, malloc'ed: ssh expands % tokens in
 * IdentityFile, UserKnownHostsFile and ProxyCommand (ssh_config(5)
 * TOKENS), and "%%" is its literal '%'.  NULL when out of memory.
 */
static char *ssh_percent_escape(const char *s)
{
	char *e = malloc(2 * strlen(s) + 1);
	size_t n = 0;

	if (!e)
		return NULL;
	for (; *s; s++) {
		e[n++] = *s;
		if (*s == '%')
			e[n++] = '%';
	}
	e[n] = '\0';
	return e;
}

int ssh_build_argv(struct launch *l, struct strv *a)
{
	strv_add(a, "ssh");
	strv_add(a, "-F");
	strv_add(a, "none");	/* no user or system configuration */
	/* -o IdentityFile, not -i: ssh checks an -i path as written, before
	 * its % expansion, so a path with a '%' could not pass both. */
	_cleanup_free_ char *key = ssh_percent_escape(l->ssh_key);
	if (!key)
		return -ENOMEM;
	strv_add(a, "-o");
	strv_addf(a, "IdentityFile=%s", key);
	const char *opts[] = {
		"IdentitiesOnly=yes", "IdentityAgent=none", "BatchMode=yes",
		"GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=accept-new",
		"CheckHostIP=no", "LogLevel=ERROR", "ControlMaster=no", "ControlPath=none",
		"ConnectTimeout=60", "ServerAliveInterval=15", "ServerAliveCountMax=8",
	};
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		strv_add(a, "-o");
		strv_add(a, opts[i]);
	}
	_cleanup_free_ char *kh = ssh_percent_escape(l->known_hosts);
	if (!kh)
		return -ENOMEM;
	strv_add(a, "-o");
	strv_addf(a, "UserKnownHostsFile=%s", kh);
	if (l->vmm == VMM_VFKIT) {
		/* ssh runs ProxyCommand with the user's shell: both paths
		 * quoted, then '%' doubled. */
		char *pv[] = { l->self_exe, "--proxy-unix", l->ssh_sock, NULL };
		_cleanup_free_ char *q = shell_quote_argv(pv);
		_cleanup_free_ char *e = q ? ssh_percent_escape(q) : NULL;

		if (!e)
			return -ENOMEM;
		strv_add(a, "-o");
		strv_addf(a, "ProxyCommand=%s", e);
	} else {
		strv_add(a, "-p");
		strv_addf(a, "%u", l->ssh_port);
	}
	if (l->command)
		strv_add(a, "-T");	/* a command's bytes as they are, no pty */
	strv_add(a, "-l");
	strv_add(a, "root");
	strv_add(a, l->vmm == VMM_VFKIT ? "erofs-nbd-guest" : "127.0.0.1");
	if (l->command) {
		strv_add(a, "--");
		strv_push_owned(a, shell_quote_argv(l->command));
	}
	return strv_check(a);
}

int proxy_unix(const char *path)
{
	char buf[65536];
	int fd = unix_connect(path, 10000);
	struct pollfd p[2];
	bool in_open = true;

	if (fd < 0) {
		fprintf(stderr, "erofs-nbd-launch: proxy: connecting to '%s': %s\n", path,
			strerror(-fd));
		return 255;
	}
	{	/* no timeouts while relaying */
		struct timeval tv = { 0 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	for (;;) {
		p[0] = (struct pollfd){ .fd = in_open ? 0 : -1, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 255;
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(0, buf, sizeof(buf));

			if (n <= 0) {
				in_open = false;
				shutdown(fd, SHUT_WR);
			} else if (write_all(fd, buf, (size_t)n) < 0) {
				return 255;
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n <= 0)
				return 0;
			if (write_all(1, buf, (size_t)n) < 0)
				return 255;
		}
	}
}
