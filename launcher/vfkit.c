// SPDX-License-Identifier: MIT
/*
 * vfkit.c - the vfkit command line (vfkit-launch.md §1, recommended form
 * §1.14) and the graceful stop through its REST API (§1.11).
 *
 * vfkit splits every --device value on each ',' with no quoting (§1.4),
 * so a path with a comma cannot be carried: such paths are refused.  The
 * NBD URI is percent-encoded, so its socket path may contain anything.
 * The linux bootloader's cmdline="..." is quote-aware: the command line
 * may hold commas but no '"'.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/launch.h"
#include "server/cleanup.h"

/* 0 if value can stand inside a vfkit option, else -EINVAL (logged). */
static int vfkit_check(const char *what, const char *value)
{
	if (!strpbrk(value, ",\"\n"))
		return 0;
	log_error("%s '%s' contains a ',', '\"' or newline, which vfkit's option"
		  " syntax cannot carry; use another path", what, value);
	return -EINVAL;
}

/* The NBD URI for vfkit's uri= (NBD doc/uri.md). */
static char *nbd_uri(const struct launch *l)
{
	_cleanup_free_ char *name = uri_encode(l->addr.export_name);
	_cleanup_free_ char *where = NULL;
	char *uri = NULL;

	if (!name)
		return NULL;
	if (l->addr.socket_path) {
		where = uri_encode(l->addr.socket_path);
		if (where && asprintf(&uri, "nbd+unix:///%s?socket=%s", name, where) < 0)
			uri = NULL;
	} else {
		bool v6 = strchr(l->addr.host, ':') != NULL;

		if (asprintf(&uri, "nbd://%s%s%s:%s/%s", v6 ? "[" : "", l->addr.host,
			     v6 ? "]" : "", l->addr.port, name) < 0)
			uri = NULL;
	}
	return uri;
}

int vfkit_build_argv(struct launch *l)
{
	struct strv *a = &l->vmm_argv;
	_cleanup_free_ char *uri = NULL;
	int r = 0;

	if (l->addr.host)
		r = vfkit_check("--connect host", l->addr.host);
	if (!r && console_path(l))
		r = vfkit_check("--console-log", console_path(l));
	if (!r)
		r = vfkit_check("runtime directory", l->run_dir);
	if (!r && l->boot == BOOT_KERNEL) {
		r = vfkit_check("kernel", l->boot_kernel);
		if (!r)
			r = vfkit_check("initramfs", l->boot_initrd);
		if (!r && !strcmp(guest_arch(l), "aarch64"))
			r = boot_check_vfkit_kernel(l);
		if (!r && strpbrk(l->boot_cmdline, "\"\n")) {
			log_error("--cmdline: vfkit's cmdline=\"...\" cannot carry '\"' or a newline");
			r = -EINVAL;
		}
	}
	if (r < 0)
		return r;
	uri = nbd_uri(l);
	if (!uri)
		return -ENOMEM;

	strv_add(a, l->vmm_binary ? l->vmm_binary : "vfkit");
	strv_add(a, "--cpus");
	strv_addf(a, "%u", l->cpus);
	strv_add(a, "--memory");
	strv_addf(a, "%u", l->memory_mib);
	strv_add(a, "--bootloader");
	if (l->boot == BOOT_EFI)
		/* A fresh NVRAM for each run: create overwrites (§1.3). */
		strv_addf(a, "efi,variable-store=%s,create", l->efi_vars);
	else
		strv_addf(a, "linux,kernel=%s,initrd=%s,cmdline=\"%s\"", l->boot_kernel,
			  l->boot_initrd, l->boot_cmdline);
	/* Bare-word booleans: readonly=true would be an error (§1.4). */
	strv_add(a, "--device");
	strv_addf(a, "nbd,uri=%s,deviceId=%s,readonly,timeout=%u,sync=none", uri,
		  l->device_id, l->nbd_timeout_ms);
	strv_add(a, "--device");
	if (console_path(l))
		strv_addf(a, "virtio-serial,logFilePath=%s", console_path(l));
	else
		strv_add(a, "virtio-serial,stdio");
	strv_add(a, "--device");
	strv_add(a, "virtio-rng");
	strv_add(a, "--device");
	strv_add(a, "virtio-net,nat");
	if (l->ssh_credential || l->ssh) {
		/* host -> guest vsock 22: sshd in the guest through
		 * systemd-ssh-generator, no network needed (§1.9). */
		strv_add(a, "--device");
		strv_addf(a, "virtio-vsock,port=22,socketURL=%s,connect", l->ssh_sock);
	}
	strv_add(a, "--restful-uri");
	strv_addf(a, "unix://%s", l->rest_sock);
	return strv_check(a);
}

int vfkit_request_stop(struct launch *l, bool hard)
{
	char body[64], req[512], resp[256];
	long long deadline = now_ms() + 2000;	/* SIGCHLD may interrupt reads */
	_cleanup_close_ int fd = unix_connect(l->rest_sock, 2000);
	size_t got = 0;
	int blen, rlen, r;

	if (fd < 0)
		return fd;
	blen = snprintf(body, sizeof(body), "{\"state\":\"%s\"}", hard ? "HardStop" : "Stop");
	rlen = snprintf(req, sizeof(req),
			"POST /vm/state HTTP/1.1\r\nHost: vfkit\r\n"
			"Content-Type: application/json\r\nContent-Length: %d\r\n"
			"Connection: close\r\n\r\n%s", blen, body);
	r = write_all(fd, req, (size_t)rlen);
	if (r < 0)
		return r;
	while (got < sizeof(resp) - 1) {
		ssize_t n = read_until(fd, resp + got, sizeof(resp) - 1 - got, deadline);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(resp, '\n', got))
			break;
	}
	resp[got] = '\0';
	/* "HTTP/1.1 200 OK" */
	if (strncmp(resp, "HTTP/1.", 7) != 0 || strncmp(resp + 8, " 200", 4) != 0) {
		log_warning("vfkit REST %s: unexpected answer '%.40s'", body, resp);
		return -EIO;
	}
	return 0;
}
