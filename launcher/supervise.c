// SPDX-License-Identifier: MIT
/*
 * supervise.c - starting and watching the two child processes, the NBD
 * server and the VMM, with plain POSIX (a self-pipe written by the signal
 * handlers, poll(), waitpid(WNOHANG)) so that it works on macOS too.
 *
 * Policy (README "Launcher"):
 *   - the server must send READY=1 in time, else the launch fails;
 *   - the VMM ending ends the run: exit 0 if it exited 0, else failure;
 *   - the server dying while the VM runs stops the VM hard (its disk is
 *     gone) and the launcher exits EXIT_SERVER_DIED;
 *   - SIGINT, SIGTERM, SIGHUP or SIGQUIT ask the guest to power off (QMP
 *     system_powerdown, vfkit REST "Stop"); after --grace seconds, or on
 *     a second signal, the VMM is stopped hard (SIGTERM / REST
 *     "HardStop"), then killed 5 s later.  Exit 128 + signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "launcher/launch.h"
#include "server/cleanup.h"

#define HARD_STOP_MS 5000	/* from the hard stop to SIGKILL */
#define SERVER_STOP_MS 10000	/* from SIGTERM to SIGKILL for the server */

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;

	(void)!write(sig_pipe[1], &c, 1);
	errno = saved;
}

int sup_init(void)
{
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
	const int sigs[] = { SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT };

	if (pipe(sig_pipe) < 0)
		return -errno;
	if (fd_cloexec(sig_pipe[0], true) < 0 || fd_cloexec(sig_pipe[1], true) < 0)
		return -errno;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
		sa.sa_flags = SA_RESTART | (sigs[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

pid_t sup_spawn(char *const argv[], char *const env[], int stdin_fd, int stdout_fd,
		bool own_pgrp, int listen_fd)
{
	pid_t parent = getpid(), pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		/* Also in the parent, so that no signal can reach a child
		 * before it is in its group. */
		if (own_pgrp)
			setpgid(pid, pid);
		return pid;
	}

	/* The child: back to default signal handling. */
	const int sigs[] = { SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
	sigset_t none;

	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef __linux__
	/* A launcher killed with SIGKILL must not leave its children. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
		_exit(127);
#else
	(void)parent;
#endif
	if (own_pgrp)
		setpgid(0, 0);
	if (stdin_fd >= 0 && dup2(stdin_fd, 0) < 0)
		_exit(127);
	if (stdout_fd >= 0 && dup2(stdout_fd, 1) < 0)
		_exit(127);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("LISTEN_PIDFDID");
	unsetenv("NOTIFY_SOCKET");
	if (listen_fd >= 0) {
		char pidbuf[32];

		/* sd_listen_fds(3): the first passed fd is 3. */
		if (listen_fd != 3) {
			if (dup2(listen_fd, 3) < 0)
				_exit(127);
		} else if (fcntl(3, F_SETFD, 0) < 0) {
			_exit(127);
		}
		snprintf(pidbuf, sizeof(pidbuf), "%d", (int)getpid());
		if (setenv("LISTEN_FDS", "1", 1) < 0 || setenv("LISTEN_PID", pidbuf, 1) < 0 ||
		    setenv("LISTEN_FDNAMES", "nbd", 1) < 0)
			_exit(127);
	}
	for (size_t i = 0; env && env[i]; i++)
		if (putenv(env[i]) < 0)
			_exit(127);
	execvp(argv[0], argv);
	fprintf(stderr, "erofs-nbd-launch: error: executing '%s': %s\n", argv[0],
		strerror(errno));
	_exit(127);
}

static void describe(int status, char *buf, size_t size)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "status 0x%x", status);
}

/* Reaps whichever of our children has exited. */
static void reap(struct launch *l)
{
	char what[80];
	int st;

	if (l->server_pid > 0 && !l->server_exited &&
	    waitpid(l->server_pid, &st, WNOHANG) == l->server_pid) {
		l->server_exited = true;
		l->server_status = st;
		describe(st, what, sizeof(what));
		log_info("erofs-nbd (pid %d) ended: %s", (int)l->server_pid, what);
	}
	if (l->ssh_pid > 0 && !l->ssh_exited &&
	    waitpid(l->ssh_pid, &st, WNOHANG) == l->ssh_pid) {
		l->ssh_exited = true;
		l->ssh_status = st;
		describe(st, what, sizeof(what));
		log_info("ssh (pid %d) ended: %s", (int)l->ssh_pid, what);
	}
	if (l->vmm_pid > 0 && !l->vmm_exited &&
	    waitpid(l->vmm_pid, &st, WNOHANG) == l->vmm_pid) {
		l->vmm_exited = true;
		l->vmm_status = st;
		describe(st, what, sizeof(what));
		log_info("%s (pid %d) ended: %s", l->vmm_argv.v[0], (int)l->vmm_pid, what);
	}
}

/*
 * Waits until something happens or until deadline (now_ms() time, -1 for
 * none): a child ended (reaped here), a notification arrived (*ready set
 * on READY=1, if ready is not NULL) or a stop signal came.  Returns the
 * stop signal's number or 0.
 */
static int sup_poll(struct launch *l, long long deadline, bool *ready)
{
	struct pollfd p[3] = { { .fd = sig_pipe[0], .events = POLLIN },
			       { .fd = ready ? l->notify_fd : -1, .events = POLLIN },
			       { .fd = l->qmp_ev_fd, .events = POLLIN } };
	int timeout = -1, stop_sig = 0;

	if (deadline >= 0) {
		long long left = deadline - now_ms();

		timeout = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
	}
	if (poll(p, 3, timeout) < 0 && errno != EINTR)
		log_warning("poll: %s", strerror(errno));
	if (p[2].revents)
		qemu_events_read(l);	/* before reap(): the SHUTDOWN comes first */
	if (p[0].revents & POLLIN) {
		unsigned char sigs[64];
		ssize_t n;

		while ((n = read(sig_pipe[0], sigs, sizeof(sigs))) > 0)
			for (ssize_t i = 0; i < n; i++)
				if (sigs[i] != SIGCHLD)
					stop_sig = sigs[i];
	}
	reap(l);
	if (ready && (p[1].revents & POLLIN)) {
		int r = server_read_notify(l);

		if (r > 0)
			*ready = true;
		else if (r < 0)
			log_warning("reading '%s': %s", l->notify_sock, strerror(-r));
	}
	return stop_sig;
}

int sup_wait_ready(struct launch *l)
{
	long long deadline = now_ms() + (long long)l->ready_timeout_sec * 1000;
	bool ready = false;

	for (;;) {
		int sig;

		if (ready) {
			log_info("erofs-nbd is ready");
			return 0;
		}
		if (l->server_exited) {
			char what[80];

			describe(l->server_status, what, sizeof(what));
			log_error("erofs-nbd exited before it was ready (%s)", what);
			return EXIT_LAUNCH_ERROR;
		}
		if (now_ms() >= deadline) {
			log_error("erofs-nbd did not report READY=1 within %u s"
				  " (--ready-timeout)", l->ready_timeout_sec);
			return EXIT_LAUNCH_ERROR;
		}
		sig = sup_poll(l, deadline, &ready);
		if (sig) {
			log_info("%s while erofs-nbd was starting; stopping", strsignal(sig));
			return 128 + sig;
		}
	}
}

enum stop_stage { RUNNING, GRACEFUL, HARD, KILLED };
/* With --ssh: waiting for sshd, the session running, the session over. */
enum ssh_stage { SSH_WAIT, SSH_RUN, SSH_DONE };

#define SSH_PROBE_MS 1000	/* between two tries to reach sshd */
#define STARTUP_MS 10000	/* QEMU failing this soon failed to start */

/* Stops the VMM hard: vfkit's REST HardStop or SIGTERM (QEMU exits at
 * once on SIGTERM, vfkit hard-stops within 5 s). */
static void hard_stop(struct launch *l)
{
	if (l->vmm == VMM_VFKIT && vfkit_request_stop(l, true) == 0)
		return;
	kill(l->vmm_pid, SIGTERM);
}

/* Asks the guest to power off; false if the request could not be made. */
static bool graceful_stop(struct launch *l)
{
	int r = l->vmm == VMM_QEMU ? qemu_request_stop(l) : vfkit_request_stop(l, false);

	if (r < 0) {
		log_warning("could not ask the guest to power off (%s); stopping it hard",
			    strerror(-r));
		return false;
	}
	log_info("asked the guest to power off; waiting up to %u s", l->grace_sec);
	return true;
}

/* Moves to the hard stop: HardStop/SIGTERM now, SIGKILL HARD_STOP_MS later. */
static void escalate(struct launch *l, enum stop_stage *stage, long long *deadline)
{
	hard_stop(l);
	*stage = HARD;
	*deadline = now_ms() + HARD_STOP_MS;
}

/* Asks the guest to power off within --grace, else stops it hard now. */
static void begin_stop(struct launch *l, enum stop_stage *stage, long long *deadline)
{
	if (!graceful_stop(l)) {
		escalate(l, stage, deadline);
		return;
	}
	*stage = GRACEFUL;
	*deadline = now_ms() + (long long)l->grace_sec * 1000;
}

/* Prints the last lines of the console file, to show why sshd never came. */
static void console_tail(const struct launch *l, int lines)
{
	char buf[8192];
	const char *path = console_path(l);
	_cleanup_close_ int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	off_t size;
	ssize_t n;
	int seen = 0;
	char *p;

	if (fd < 0 || (size = lseek(fd, 0, SEEK_END)) <= 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, size > (off_t)sizeof(buf) - 1 ?
		  size - (off_t)sizeof(buf) + 1 : 0);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (p = buf + n; p > buf && seen <= lines; p--)
		if (p[-1] == '\n')
			seen++;
	fprintf(stderr, "erofs-nbd-launch: the guest's console ended with:\n%s%s",
		p, buf[n - 1] == '\n' ? "" : "\n");
}

/* Starts ssh for the session or COMMAND, in our process group with our
 * stdio: it is the foreground program. */
static int start_ssh(struct launch *l)
{
	struct strv a = { 0 };
	int r = ssh_build_argv(l, &a);
	pid_t pid;

	if (r < 0) {
		strv_free(&a);
		return log_errno(r, "the ssh command line");
	}
	if (l->verbose >= 2)
		for (size_t i = 0; i < a.n; i++)
			log_debug("ssh: %s", a.v[i]);
	pid = sup_spawn(a.v, NULL, -1, -1, false, -1);
	strv_free(&a);
	if (pid < 0)
		return log_errno(pid, "starting ssh");
	l->ssh_pid = pid;
	log_info("started ssh (pid %d)", (int)pid);
	return 0;
}

/*
 * One VMM run.  Returns the launcher's exit status, or -EAGAIN when QEMU
 * with KVM chosen by --accel auto failed during start-up and should be
 * tried once more with TCG.
 */
static int run_vm_once(struct launch *l, bool may_retry)
{
	enum stop_stage stage = RUNNING;
	enum ssh_stage sstage = SSH_WAIT;
	long long deadline = -1, started, ssh_deadline, next_probe;
	int result = -1;
	/* With the console on our terminal the VMM must stay in our
	 * foreground process group; otherwise it gets a group of its own so
	 * that a terminal's Ctrl-C reaches only us, and we stop it properly. */
	bool interactive = !console_path(l) && isatty(0);
	_cleanup_close_ int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	pid_t pid;

	pid = sup_spawn(l->vmm_argv.v, NULL, console_path(l) ? devnull : -1,
			l->ssh ? devnull : -1, !interactive, -1);
	if (pid < 0) {
		log_errno(pid, "starting '%s'", l->vmm_argv.v[0]);
		return EXIT_LAUNCH_ERROR;
	}
	l->vmm_pid = pid;
	l->vmm_exited = false;
	l->vmm_host_signal = false;
	l->qmp_ev_next_try = 0;
	started = now_ms();
	ssh_deadline = started + (long long)l->ssh_timeout_sec * 1000;
	next_probe = started + SSH_PROBE_MS;
	log_info("started %s (pid %d)", l->vmm_argv.v[0], (int)pid);

	for (;;) {
		long long wake = deadline;
		int sig;

		if (l->server_pid > 0 && l->server_exited && result < 0) {
			char what[80];

			describe(l->server_status, what, sizeof(what));
			log_error("erofs-nbd ended (%s) while the VM was running;"
				  " stopping the VM", what);
			result = EXIT_SERVER_DIED;
			if (!l->vmm_exited)
				escalate(l, &stage, &deadline);
		}
		if (l->vmm_exited)
			break;
		/* QEMU's events tell its exit on a signal from a power-off. */
		if (l->vmm == VMM_QEMU && l->qmp_ev_fd < 0 && now_ms() - started < STARTUP_MS) {
			(void)qemu_events_connect(l);
			if (l->qmp_ev_fd < 0 && (wake < 0 || l->qmp_ev_next_try < wake))
				wake = l->qmp_ev_next_try;
		}
		if (l->ssh && sstage == SSH_WAIT && stage == RUNNING && result < 0) {
			if (now_ms() >= next_probe) {
				if (ssh_probe(l) == 0) {
					log_info("the guest's sshd answers (%lld s after start)",
						 (now_ms() - started) / 1000);
					sstage = SSH_RUN;
					if (start_ssh(l) < 0)
						result = EXIT_LAUNCH_ERROR;
				} else if (now_ms() >= ssh_deadline) {
					log_error("the guest's sshd did not answer within %u s"
						  " (--ssh-timeout)", l->ssh_timeout_sec);
					console_tail(l, 25);
					result = EXIT_LAUNCH_ERROR;
				}
				next_probe = now_ms() + SSH_PROBE_MS;
			}
			if (result < 0 && sstage == SSH_WAIT)
				wake = deadline < 0 || next_probe < deadline ? next_probe : deadline;
		}
		if (sstage == SSH_RUN && l->ssh_exited) {
			sstage = SSH_DONE;
			l->ssh_done = true;
			if (result < 0)
				result = WIFEXITED(l->ssh_status) ? WEXITSTATUS(l->ssh_status) :
					 128 + WTERMSIG(l->ssh_status);
			log_info("ssh ended with status %d; powering the guest off", result);
		}
		/* The session is over (or never came): power the guest off. */
		if (l->ssh && stage == RUNNING && result >= 0) {
			begin_stop(l, &stage, &deadline);
			wake = deadline;
		}
		if (deadline >= 0 && now_ms() >= deadline) {
			if (stage == GRACEFUL) {
				log_warning("the guest did not power off within %u s;"
					    " stopping it hard", l->grace_sec);
				escalate(l, &stage, &deadline);
			} else if (stage == HARD) {
				log_warning("%s did not stop; killing it", l->vmm_argv.v[0]);
				kill(l->vmm_pid, SIGKILL);
				stage = KILLED;
				deadline = -1;
			}
			wake = deadline;
		}
		sig = sup_poll(l, wake, NULL);
		if (!sig)
			continue;
		if (result < 0)
			result = 128 + sig;	/* also if the VMM ended meanwhile */
		if (l->vmm_exited)
			continue;
		if (l->ssh_pid > 0 && !l->ssh_exited)
			kill(l->ssh_pid, SIGTERM);	/* the session ends with the run */
		if (stage == RUNNING) {
			log_info("%s: stopping the VM", strsignal(sig));
			begin_stop(l, &stage, &deadline);
		} else if (stage == GRACEFUL) {
			log_info("%s again: stopping the VM hard", strsignal(sig));
			escalate(l, &stage, &deadline);
		}
	}

	/* What QEMU said before it went (still queued on the socket). */
	qemu_events_read(l);
	qemu_events_close(l);
	/* The VM is gone: so is the session. */
	if (l->ssh_pid > 0 && !l->ssh_exited) {
		kill(l->ssh_pid, SIGTERM);
		if (waitpid(l->ssh_pid, &l->ssh_status, 0) == l->ssh_pid)
			l->ssh_exited = true;
		if (result < 0) {
			log_error("the VM ended while the ssh session ran");
			result = EXIT_VMM_FAILED;
		}
	}
	if (result < 0) {
		char what[80];

		if (WIFEXITED(l->vmm_status) && WEXITSTATUS(l->vmm_status) == 0 &&
		    l->vmm_host_signal) {
			/* QEMU exits 0 on SIGTERM, SIGINT or SIGHUP: not ours. */
			log_error("%s was stopped by a signal the launcher did not send",
				  l->vmm_argv.v[0]);
			return EXIT_VMM_FAILED;
		}
		if (WIFEXITED(l->vmm_status) && WEXITSTATUS(l->vmm_status) == 0) {
			if (!l->ssh)
				return EXIT_VM_OK;
			log_error("the guest powered off before its sshd answered");
			return EXIT_LAUNCH_ERROR;
		}
		describe(l->vmm_status, what, sizeof(what));
		if (may_retry && now_ms() - started < STARTUP_MS) {
			log_warning("%s with KVM failed during start-up: %s", l->vmm_argv.v[0],
				    what);
			return -EAGAIN;
		}
		log_error("%s failed: %s", l->vmm_argv.v[0], what);
		return EXIT_VMM_FAILED;
	}
	return result;
}

int sup_run_vm(struct launch *l)
{
	bool may_retry = l->vmm == VMM_QEMU && l->kvm_auto;
	int r = run_vm_once(l, may_retry);

	if (r == -EAGAIN) {
		/* Nested KVM can crash QEMU as the vCPUs start (seen:
		 * "kvm_buf_set_msrs: Assertion ... failed"), where
		 * -accel kvm -accel tcg does not help: KVM initialised. */
		log_warning("trying once more with TCG (--accel kvm forbids this,"
			    " --accel tcg skips KVM)");
		l->accel = "tcg";
		if (qemu_rebuild_argv(l) < 0 || qemu_prepare(l) < 0)
			return EXIT_LAUNCH_ERROR;
		if (l->verbose >= 2)
			for (size_t i = 0; i < l->vmm_argv.n; i++)
				log_debug("vmm: %s", l->vmm_argv.v[i]);
		r = run_vm_once(l, false);
	}
	return r;
}

void sup_stop_server(struct launch *l)
{
	long long deadline;

	if (l->server_pid <= 0 || l->server_exited)
		return;
	kill(l->server_pid, SIGTERM);
	deadline = now_ms() + SERVER_STOP_MS;
	while (!l->server_exited && now_ms() < deadline)
		if (sup_poll(l, deadline, NULL))
			break;	/* another signal: do not wait any longer */
	if (!l->server_exited) {
		log_warning("erofs-nbd (pid %d) did not stop; killing it", (int)l->server_pid);
		kill(l->server_pid, SIGKILL);
		if (waitpid(l->server_pid, &l->server_status, 0) == l->server_pid)
			l->server_exited = true;
	} else if (!WIFEXITED(l->server_status) || WEXITSTATUS(l->server_status) != 0) {
		char what[80];

		describe(l->server_status, what, sizeof(what));
		log_warning("erofs-nbd ended with %s after SIGTERM", what);
	}
}
