// SPDX-License-Identifier: MIT
/*
 * qemu.c - the Linux stand-in for vfkit (vfkit-launch.md §5): the QEMU
 * command line for EFI boot of the `disk` export with OVMF/AAVMF (§5.3)
 * or direct kernel boot with the `root` export (§5.2), the export always
 * attached read-only through QEMU's NBD client as a virtio-blk disk
 * (§5.1, §5.4), and the graceful stop through QMP system_powerdown.
 * Values inside QEMU's key=value options have their commas doubled.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "launcher/launch.h"
#include "server/cleanup.h"

const char *guest_arch(const struct launch *l)
{
	static struct utsname u;
	const char *a = l->arch;

	if (!a) {
		if (uname(&u) < 0)
			return "x86_64";
		a = u.machine;
	}
	if (!strcmp(a, "arm64"))
		return "aarch64";
	if (!strcmp(a, "amd64"))
		return "x86_64";
	return a;
}

static bool is_x86(const struct launch *l)
{
	return !strcmp(guest_arch(l), "x86_64");
}

/* Debian's firmware files (ovmf, qemu-efi-aarch64), §5.3. */
static const char *default_code(const struct launch *l)
{
	return is_x86(l) ? "/usr/share/OVMF/OVMF_CODE_4M.fd" : "/usr/share/AAVMF/AAVMF_CODE.fd";
}

static const char *default_vars(const struct launch *l)
{
	return is_x86(l) ? "/usr/share/OVMF/OVMF_VARS_4M.fd" : "/usr/share/AAVMF/AAVMF_VARS.fd";
}

/*
 * KVM helps only when the guest has the host's architecture and /dev/kvm
 * is usable; "-accel kvm -accel tcg" still falls back to TCG if QEMU
 * cannot initialise KVM.  What this cannot see is a nested KVM that runs
 * guest code, only far slower than TCG (shadow paging: a kernel's
 * decompressor takes minutes); a probe running a few instructions passes
 * there too, so none is made: --accel tcg is the answer on such hosts.
 */
static bool kvm_usable(const struct launch *l)
{
	struct utsname u;
	bool ok;

	if (uname(&u) < 0 || strcmp(guest_arch(l), u.machine) != 0) {
		log_info("accelerator: TCG (the guest is not the host's architecture)");
		return false;
	}
	ok = access("/dev/kvm", R_OK | W_OK) == 0;
	log_info("accelerator: %s", ok ? "KVM, TCG if it cannot be initialised"
				       : "TCG (no usable /dev/kvm)");
	return ok;
}

/* Adds "PREFIX" + escaped value as one argument. */
static void add_kv(struct strv *a, const char *prefix, const char *value)
{
	_cleanup_free_ char *e = qemu_escape(value);

	if (!e) {
		a->oom = true;
		return;
	}
	strv_addf(a, "%s%s", prefix, e);
}

int qemu_build_argv(struct launch *l)
{
	struct strv *a = &l->vmm_argv;
	const char *accel = l->accel ? l->accel : "auto";
	bool x86 = is_x86(l);
	int r;

	if (l->vmm_binary)
		strv_add(a, l->vmm_binary);
	else
		strv_addf(a, "qemu-system-%s", guest_arch(l));
	strv_add(a, "-nodefaults");
	strv_add(a, "-no-user-config");
	strv_add(a, "-name");
	strv_add(a, "erofs-nbd");
	strv_add(a, "-machine");
	strv_add(a, x86 ? "q35" : "virt");
	if (!strcmp(accel, "auto"))
		accel = kvm_usable(l) ? "kvm:tcg" : "tcg";
	l->kvm_auto = !strcmp(accel, "kvm:tcg");
	if (!strcmp(accel, "kvm:tcg")) {
		strv_add(a, "-accel");
		strv_add(a, "kvm");
		strv_add(a, "-accel");
		strv_add(a, "tcg");
		strv_add(a, "-cpu");
		strv_add(a, "max");
	} else {
		strv_add(a, "-accel");
		strv_add(a, accel);
		strv_add(a, "-cpu");
		strv_add(a, !strcmp(accel, "kvm") ? "host" : "max");
	}
	strv_add(a, "-smp");
	strv_addf(a, "%u", l->cpus);
	strv_add(a, "-m");
	strv_addf(a, "%u", l->memory_mib);
	strv_add(a, "-display");
	strv_add(a, "none");
	/* A guest reboot ends the run (with panic=-1 a panic does too). */
	strv_add(a, "-no-reboot");

	/* Console: the first serial port, to a file or to our terminal.
	 * signal=off: on an interactive console Ctrl-C belongs to the guest. */
	strv_add(a, "-chardev");
	if (console_path(l))
		add_kv(a, "file,id=con0,path=", console_path(l));
	else
		strv_add(a, "stdio,id=con0,signal=off");
	strv_add(a, "-serial");
	strv_add(a, "chardev:con0");

	/* QMP, for system_powerdown on a graceful stop; and a second
	 * monitor the launcher keeps open for QEMU's events. */
	strv_add(a, "-chardev");
	add_kv(a, "socket,id=qmp0,server=on,wait=off,path=", l->qmp_sock);
	strv_add(a, "-mon");
	strv_add(a, "chardev=qmp0,mode=control");
	strv_add(a, "-chardev");
	add_kv(a, "socket,id=qmp1,server=on,wait=off,path=", l->qmp_ev_sock);
	strv_add(a, "-mon");
	strv_add(a, "chardev=qmp1,mode=control");

	if (l->boot == BOOT_EFI) {
		strv_add(a, "-drive");
		add_kv(a, "if=pflash,format=raw,unit=0,readonly=on,file=",
		       l->firmware_code ? l->firmware_code : default_code(l));
		strv_add(a, "-drive");
		add_kv(a, "if=pflash,format=raw,unit=1,file=", l->efi_vars);
	} else {
		strv_add(a, "-kernel");
		strv_add(a, l->boot_kernel);
		if (l->boot_initrd) {
			strv_add(a, "-initrd");
			strv_add(a, l->boot_initrd);
		}
		strv_add(a, "-append");
		strv_add(a, l->boot_cmdline);
	}

	/* The export, read-only (§5.1: -blockdev refuses a read-write open
	 * of a read-only export, and nothing should ever try to write). */
	{
		_cleanup_free_ char *name = qemu_escape(l->addr.export_name);
		_cleanup_free_ char *where = NULL;

		if (l->addr.socket_path) {
			_cleanup_free_ char *p = qemu_escape(l->addr.socket_path);

			if (p && asprintf(&where, "server.type=unix,server.path=%s", p) < 0)
				where = NULL;
		} else {
			_cleanup_free_ char *h = qemu_escape(l->addr.host);

			if (h && asprintf(&where, "server.type=inet,server.host=%s,server.port=%s",
					  h, l->addr.port) < 0)
				where = NULL;
		}
		if (!name || !where)
			return -ENOMEM;
		strv_add(a, "-blockdev");
		strv_addf(a, "driver=nbd,node-name=disk0,%s,export=%s,read-only=on", where, name);
	}
	/* serial= is --device-id, checked to be [A-Za-z0-9._-]{1,20}. */
	strv_add(a, "-device");
	strv_addf(a, "virtio-blk-pci,drive=disk0,serial=%s%s", l->device_id,
		  l->boot == BOOT_EFI ? ",bootindex=1" : "");
	strv_add(a, "-device");
	strv_add(a, "virtio-rng-pci");
	strv_add(a, "-nic");
	if (l->ssh)
		/* sshd through user-mode networking, from loopback only. */
		strv_addf(a, "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%u-:22",
			  l->ssh_port);
	else
		strv_add(a, "user,model=virtio-net-pci");
	/* The SSH key as a systemd credential in SMBIOS type 11 (OVMF,
	 * SeaBIOS and AAVMF install the tables; without firmware, arm64
	 * kernel boot, it is on the kernel command line). */
	if (l->ssh_credential && !cred_on_cmdline(l)) {
		strv_add(a, "-smbios");
		strv_addf(a, "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=%s",
			  l->ssh_credential);
	}
	r = strv_check(a);
	return r;
}

int qemu_prepare(struct launch *l)
{
	const char *src = l->firmware_vars ? l->firmware_vars : default_vars(l);
	_cleanup_close_ int in = -1, out = -1;
	char buf[65536];
	ssize_t n;

	if (l->boot != BOOT_EFI)
		return 0;
	if (!l->firmware_code && access(default_code(l), R_OK) < 0)
		return log_errno(-errno, "EFI firmware '%s' (install ovmf, or give --firmware)",
				 default_code(l));
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return log_errno(-errno, "EFI variable store template '%s'", src);
	(void)unlink(l->efi_vars);	/* a retry's: the directory is ours */
	out = open(l->efi_vars, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return log_errno(-errno, "creating '%s'", l->efi_vars);
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		int r = write_all(out, buf, (size_t)n);

		if (r < 0)
			return log_errno(r, "writing '%s'", l->efi_vars);
	}
	if (n < 0)
		return log_errno(-errno, "reading '%s'", src);
	return 0;
}

int qemu_rebuild_argv(struct launch *l)
{
	int r;

	strv_free(&l->vmm_argv);
	if (l->ssh) {
		r = ssh_pick_port(l);
		if (r < 0)
			return r;
	}
	r = qemu_build_argv(l);
	return r < 0 ? log_errno(r, "the QEMU command line") : 0;
}

/* Reads one QMP line (a JSON object) into buf by deadline; 0 or -errno. */
static int qmp_read_line(int fd, char *buf, size_t size, long long deadline)
{
	size_t len = 0;

	while (len + 1 < size) {
		ssize_t n = read_until(fd, buf + len, 1, deadline);

		if (n <= 0)
			return n < 0 ? (int)n : -ECONNRESET;
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return 0;
		}
		len++;
	}
	return -EMSGSIZE;
}

/* Sends one command and waits for its reply, skipping events. */
static int qmp_execute(int fd, const char *cmd, long long deadline)
{
	char line[8192];
	size_t len = strlen(cmd);
	int r;

	r = write_all(fd, cmd, len);
	if (r < 0)
		return r;
	for (;;) {
		r = qmp_read_line(fd, line, sizeof(line), deadline);
		if (r < 0)
			return r;
		if (strstr(line, "\"event\""))
			continue;	/* asynchronous, not our reply */
		if (strstr(line, "\"return\""))
			return 0;
		if (strstr(line, "\"error\"")) {
			log_warning("QMP %.*s: %s", (int)len - 1, cmd, line);
			return -EIO;
		}
	}
}

/*
 * Connects to the QMP monitor on path and negotiates capabilities (after
 * which events flow), by deadline; returns the fd or -errno.
 */
static int qmp_open(const char *path, long long deadline)
{
	char line[8192];
	_cleanup_close_ int fd = unix_connect(path, 2000);
	int r;

	if (fd < 0)
		return fd;
	r = qmp_read_line(fd, line, sizeof(line), deadline);	/* the greeting */
	if (r < 0)
		return r;
	if (!strstr(line, "\"QMP\""))
		return -EPROTO;
	r = qmp_execute(fd, "{\"execute\":\"qmp_capabilities\"}\n", deadline);
	return r < 0 ? r : TAKE_FD(fd);
}

int qemu_request_stop(struct launch *l)
{
	/* The signal that brought us here ends ssh too: its SIGCHLD must
	 * not cut the request short (read_until()). */
	long long deadline = now_ms() + 2000;
	_cleanup_close_ int fd = qmp_open(l->qmp_sock, deadline);

	if (fd < 0)
		return fd;
	return qmp_execute(fd, "{\"execute\":\"system_powerdown\"}\n", deadline);
}

int qemu_events_connect(struct launch *l)
{
	_cleanup_close_ int fd = -1;

	if (l->qmp_ev_fd >= 0 || now_ms() < l->qmp_ev_next_try)
		return 0;
	l->qmp_ev_next_try = now_ms() + 200;
	if (access(l->qmp_ev_sock, F_OK) < 0)
		return -errno;		/* QEMU is not that far yet */
	fd = qmp_open(l->qmp_ev_sock, now_ms() + 2000);
	if (fd < 0)
		return fd;
	if (fd_cloexec(fd, true) < 0)
		return -errno;
	l->qmp_ev_len = 0;
	l->qmp_ev_fd = TAKE_FD(fd);
	log_debug("listening to QEMU's events on '%s'", l->qmp_ev_sock);
	return 0;
}

/* Looks at one event line. */
static void qemu_event(struct launch *l, const char *line)
{
	if (!strstr(line, "\"SHUTDOWN\""))
		return;
	log_debug("QEMU: %s", line);
	if (strstr(line, "\"host-signal\""))
		l->vmm_host_signal = true;
}

void qemu_events_read(struct launch *l)
{
	for (;;) {
		size_t room = sizeof(l->qmp_ev_buf) - 1 - l->qmp_ev_len;
		ssize_t n;
		char *nl;

		if (l->qmp_ev_fd < 0)
			return;
		if (room == 0)
			l->qmp_ev_len = 0;	/* a line longer than ours: not one we want */
		n = read(l->qmp_ev_fd, l->qmp_ev_buf + l->qmp_ev_len,
			 sizeof(l->qmp_ev_buf) - 1 - l->qmp_ev_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN)
				qemu_events_close(l);	/* QEMU is gone */
			return;
		}
		l->qmp_ev_len += (size_t)n;
		l->qmp_ev_buf[l->qmp_ev_len] = '\0';
		while ((nl = strchr(l->qmp_ev_buf, '\n'))) {
			*nl = '\0';
			qemu_event(l, l->qmp_ev_buf);
			l->qmp_ev_len -= (size_t)(nl + 1 - l->qmp_ev_buf);
			memmove(l->qmp_ev_buf, nl + 1, l->qmp_ev_len + 1);
		}
	}
}

void qemu_events_close(struct launch *l)
{
	if (l->qmp_ev_fd >= 0)
		close(l->qmp_ev_fd);
	l->qmp_ev_fd = -1;
}
