// SPDX-License-Identifier: MIT
/*
 * main.c - erofs-nbd-launch: command line, checks, and the order of a
 * run: runtime directory, server (started with socket activation and
 * waited for, or connected to), VMM command line, supervision, cleanup.
 * Exit statuses are the EXIT_* values of launch.h (README "Launcher").
 *
 * Never a shell: every program is run from an argv array, and data such
 * as an SSH public key travels as a systemd credential, not in a script
 * (vfkit-launch.md §3.4).  A COMMAND for the guest (-- COMMAND) reaches
 * its remote shell as single-quoted words that give back exactly argv.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fat/bootcfg.h"
#include "launcher/launch.h"
#include "server/cleanup.h"

#ifndef EROFS_NBD_VERSION
#define EROFS_NBD_VERSION "0.1"
#endif

static void usage(FILE *f)
{
	fputs("Usage: erofs-nbd-launch (--export DIR | --image NAME | --lowerdir LIST |\n"
	      "                         --connect URI) [OPTION]...\n"
	      "                        [--ssh] [-- COMMAND [ARG]...]\n"
	      "Boot a virtual machine from an erofs-nbd export: start the server (or\n"
	      "use a running one), start QEMU or vfkit with the export as a read-only\n"
	      "virtio-blk disk, supervise both and clean up.  With a COMMAND, run it\n"
	      "in the guest over SSH as root, power the guest off and exit with its\n"
	      "status; with --ssh and no COMMAND, an interactive session.\n"
	      "\n"
	      "Server:\n"
	      "  --export DIR            start erofs-nbd on DIR (socket activation in a\n"
	      "                          private runtime directory, waits for READY=1)\n"
	      "  --image NAME|ID         start erofs-nbd on a podman image, merged from its\n"
	      "                          layers\n"
	      "  --storage-root DIR      with --image: the store (default: podman's)\n"
	      "  --lowerdir TOP:...:BOTTOM\n"
	      "                          start erofs-nbd on a stack of overlay layers\n"
	      "  --upperdir DIR          with --lowerdir: one more layer on top\n"
	      "  --connect URI           use a running server: nbd+unix:///NAME?socket=PATH\n"
	      "                          or nbd://HOST[:PORT]/NAME (empty NAME: the boot\n"
	      "                          mode's export)\n"
	      "  --server PATH           the erofs-nbd binary (default: next to this\n"
	      "                          program, else $PATH)\n"
	      "  --server-opt ARG        pass ARG on to erofs-nbd (repeatable)\n"
	      "  --ready-timeout SECS    wait at most SECS for the server (default 300)\n"
	      "\n"
	      "Virtual machine:\n"
	      "  --vmm qemu|vfkit        the monitor (default: qemu on Linux, vfkit on macOS)\n"
	      "  --vmm-binary PATH       its program (default qemu-system-ARCH, vfkit)\n"
	      "  --boot efi|kernel       EFI boot of the \"disk\" export (default), or\n"
	      "                          direct kernel boot with the \"root\" export\n"
	      "  --kernel PATH, --initrd PATH\n"
	      "                          kernel boot: host files (default: found in the\n"
	      "                          tree); EFI boot: passed on to erofs-nbd\n"
	      "  --kver VERSION          the tree's kernel to use\n"
	      "  --cmdline ARGS          extra kernel command line\n"
	      "  --arch ARCH             guest architecture (x86_64, aarch64; default: host)\n"
	      "  --efi-loader NAME       passed on to erofs-nbd (EFI boot)\n"
	      "  --ssh-key FILE          an SSH public key for root, passed as the systemd\n"
	      "                          credential ssh.authorized_keys.root\n"
	      "  --ssh                   log in over SSH once sshd answers (a throwaway\n"
	      "                          key, QEMU: 127.0.0.1 forward, vfkit: vsock 22);\n"
	      "                          implied by a COMMAND after --\n"
	      "  --ssh-timeout SECS      wait at most SECS for the guest's sshd (default 600)\n"
	      "  --cpus N                virtual CPUs (default 2)\n"
	      "  --memory MIB            memory in MiB (default 2048)\n"
	      "  --console-log FILE      guest console to FILE (default: this terminal;\n"
	      "                          with --ssh, a file in the runtime directory)\n"
	      "  --accel auto|kvm|tcg    QEMU accelerator (default auto: KVM if usable,\n"
	      "                          once more with TCG if QEMU then fails to start)\n"
	      "  --firmware CODE, --firmware-vars VARS\n"
	      "                          QEMU EFI firmware (default OVMF/AAVMF 4M files)\n"
	      "  --device-id ID          disk serial / vfkit deviceId (default erofsroot)\n"
	      "  --nbd-timeout MS        vfkit NBD timeout (default 15000)\n"
	      "\n"
	      "Running:\n"
	      "  --grace SECS            wait SECS for the guest to power off on a stop\n"
	      "                          request before stopping it hard (default 20)\n"
	      "  --runtime-dir DIR       create exactly DIR (mode 0700) for the sockets\n"
	      "                          (default: a new directory in $XDG_RUNTIME_DIR,\n"
	      "                          /run or $TMPDIR)\n"
	      "  --dry-run               print the VMM command line, one argument per\n"
	      "                          line, and exit without starting anything\n"
	      "  -v, --verbose           say what happens (twice: debug)\n"
	      "  -V, --version           print the version and exit\n"
	      "  -h, --help              print this help and exit\n"
	      "\n"
	      "Exit status: 0 the guest powered off; 1 launch error; 2 bad usage;\n"
	      "3 the server died while the VM ran; 4 the VMM failed; 128+N stopped on\n"
	      "signal N.  With --ssh or a COMMAND: COMMAND's (ssh's) status, 2 for bad\n"
	      "usage, 128+N on signal N, 255 for any other failure (as ssh).\n", f);
}

enum {
	OPT_VMM = 256, OPT_BOOT, OPT_EXPORT, OPT_CONNECT, OPT_SERVER, OPT_SERVER_OPT,
	OPT_KERNEL, OPT_INITRD, OPT_KVER, OPT_CMDLINE, OPT_ARCH, OPT_EFI_LOADER,
	OPT_SSH_KEY, OPT_CPUS, OPT_MEMORY, OPT_CONSOLE_LOG, OPT_ACCEL, OPT_FIRMWARE,
	OPT_FIRMWARE_VARS, OPT_DEVICE_ID, OPT_NBD_TIMEOUT, OPT_GRACE, OPT_RUNTIME_DIR,
	OPT_DRY_RUN, OPT_READY_TIMEOUT, OPT_VMM_BINARY, OPT_SSH, OPT_SSH_TIMEOUT,
	OPT_IMAGE, OPT_STORAGE_ROOT, OPT_LOWERDIR, OPT_UPPERDIR,
};

static const struct option options[] = {
	{ "vmm", required_argument, NULL, OPT_VMM },
	{ "vmm-binary", required_argument, NULL, OPT_VMM_BINARY },
	{ "boot", required_argument, NULL, OPT_BOOT },
	{ "export", required_argument, NULL, OPT_EXPORT },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "storage-root", required_argument, NULL, OPT_STORAGE_ROOT },
	{ "lowerdir", required_argument, NULL, OPT_LOWERDIR },
	{ "upperdir", required_argument, NULL, OPT_UPPERDIR },
	{ "server", required_argument, NULL, OPT_SERVER },
	{ "server-opt", required_argument, NULL, OPT_SERVER_OPT },
	{ "ready-timeout", required_argument, NULL, OPT_READY_TIMEOUT },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "kver", required_argument, NULL, OPT_KVER },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "arch", required_argument, NULL, OPT_ARCH },
	{ "efi-loader", required_argument, NULL, OPT_EFI_LOADER },
	{ "ssh-key", required_argument, NULL, OPT_SSH_KEY },
	{ "ssh", no_argument, NULL, OPT_SSH },
	{ "ssh-timeout", required_argument, NULL, OPT_SSH_TIMEOUT },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "memory", required_argument, NULL, OPT_MEMORY },
	{ "console-log", required_argument, NULL, OPT_CONSOLE_LOG },
	{ "accel", required_argument, NULL, OPT_ACCEL },
	{ "firmware", required_argument, NULL, OPT_FIRMWARE },
	{ "firmware-vars", required_argument, NULL, OPT_FIRMWARE_VARS },
	{ "device-id", required_argument, NULL, OPT_DEVICE_ID },
	{ "nbd-timeout", required_argument, NULL, OPT_NBD_TIMEOUT },
	{ "grace", required_argument, NULL, OPT_GRACE },
	{ "runtime-dir", required_argument, NULL, OPT_RUNTIME_DIR },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "verbose", no_argument, NULL, 'v' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("erofs-nbd-launch: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'erofs-nbd-launch --help' for more information.\n", stderr);
	return EXIT_USAGE;
}

static int number(const char *opt, const char *arg, unsigned int min, unsigned int max,
		  unsigned int *ret)
{
	if (parse_uint(arg, min, max, ret) < 0)
		return usage_error("%s '%s': expected a number from %u to %u", opt, arg,
				   min, max);
	return 0;
}

/* [A-Za-z0-9._-]{1,20}: fits virtio-blk's 20-byte serial and vfkit's
 * deviceId (no '/'), and needs no escaping anywhere. */
static bool device_id_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 20)
		return false;
	for (; *s; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && !strchr("._-", *s))
			return false;
	return true;
}

/* Control characters never belong on a kernel command line. */
static bool cmdline_valid(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* Returns 0 or EXIT_USAGE. */
static int parse_args(struct launch *l, int argc, char **argv)
{
	int c, r = 0, last = 1;

	/* "+": options end at the first non-option, so that COMMAND's own
	 * options are never taken for ours. */
	while ((c = getopt_long(argc, argv, "+vVh", options, NULL)) != -1) {
		switch (c) {
		case OPT_VMM:
			if (!strcmp(optarg, "qemu"))
				l->vmm = VMM_QEMU;
			else if (!strcmp(optarg, "vfkit"))
				l->vmm = VMM_VFKIT;
			else
				return usage_error("--vmm '%s': expected qemu or vfkit", optarg);
			break;
		case OPT_VMM_BINARY: l->vmm_binary = optarg; break;
		case OPT_BOOT:
			if (!strcmp(optarg, "efi"))
				l->boot = BOOT_EFI;
			else if (!strcmp(optarg, "kernel"))
				l->boot = BOOT_KERNEL;
			else
				return usage_error("--boot '%s': expected efi or kernel", optarg);
			break;
		case OPT_EXPORT: l->export_dir = optarg; break;
		case OPT_CONNECT: l->connect_uri = optarg; break;
		case OPT_IMAGE: l->image = optarg; break;
		case OPT_STORAGE_ROOT: l->storage_root = optarg; break;
		case OPT_LOWERDIR: l->lowerdir = optarg; break;
		case OPT_UPPERDIR: l->upperdir = optarg; break;
		case OPT_SERVER: l->server_path = optarg; break;
		case OPT_SERVER_OPT: strv_add(&l->server_opts, optarg); break;
		case OPT_READY_TIMEOUT:
			r = number("--ready-timeout", optarg, 1, 86400, &l->ready_timeout_sec);
			break;
		case OPT_KERNEL: l->kernel = optarg; break;
		case OPT_INITRD: l->initrd = optarg; break;
		case OPT_KVER: l->kver = optarg; break;
		case OPT_CMDLINE: l->cmdline = optarg; break;
		case OPT_ARCH: l->arch = optarg; break;
		case OPT_EFI_LOADER: l->efi_loader = optarg; break;
		case OPT_SSH_KEY: l->ssh_key_file = optarg; break;
		case OPT_SSH: l->ssh = true; break;
		case OPT_SSH_TIMEOUT:
			r = number("--ssh-timeout", optarg, 1, 86400, &l->ssh_timeout_sec);
			break;
		case OPT_CPUS: r = number("--cpus", optarg, 1, 256, &l->cpus); break;
		case OPT_MEMORY: r = number("--memory", optarg, 64, 4194304, &l->memory_mib); break;
		case OPT_CONSOLE_LOG: l->console_log = optarg; break;
		case OPT_ACCEL:
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "tcg"))
				return usage_error("--accel '%s': expected auto, kvm or tcg", optarg);
			l->accel = optarg;
			break;
		case OPT_FIRMWARE: l->firmware_code = optarg; break;
		case OPT_FIRMWARE_VARS: l->firmware_vars = optarg; break;
		case OPT_DEVICE_ID:
			if (!device_id_valid(optarg))
				return usage_error("--device-id '%s': expected 1 to 20 of"
						   " [A-Za-z0-9._-]", optarg);
			l->device_id = optarg;
			break;
		case OPT_NBD_TIMEOUT:
			r = number("--nbd-timeout", optarg, 1, 3600000, &l->nbd_timeout_ms);
			break;
		case OPT_GRACE: r = number("--grace", optarg, 0, 3600, &l->grace_sec); break;
		case OPT_RUNTIME_DIR: l->runtime_dir_opt = optarg; break;
		case OPT_DRY_RUN: l->dry_run = true; break;
		case 'v': l->verbose++; break;
		case 'V':
			printf("erofs-nbd-launch %s\n", EROFS_NBD_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fputs("Try 'erofs-nbd-launch --help' for more information.\n", stderr);
			return EXIT_USAGE;
		}
		if (r)
			return r;
		last = optind;
	}
	if (optind < argc) {
		/* getopt stepped over a "--" exactly when optind moved past it. */
		if (optind != last + 1 || strcmp(argv[last], "--") != 0)
			return usage_error("unexpected argument '%s' (a COMMAND goes after"
					   " '--')", argv[optind]);
		l->command = argv + optind;
		l->ssh = true;
	} else if (optind == last + 1 && !strcmp(argv[last], "--")) {
		return usage_error("'--' but no COMMAND after it");
	}
	if (l->ssh && l->connect_uri && l->boot == BOOT_EFI && l->vmm == VMM_VFKIT)
		return usage_error("--ssh and a COMMAND with --connect and vfkit's EFI boot"
				   " need the key on the running server's ESP: give that"
				   " server the credential, use --boot kernel, or --export");
	if (!!l->export_dir + !!l->image + !!l->lowerdir + !!l->connect_uri != 1)
		return usage_error("give exactly one of --export DIR, --image NAME, --lowerdir"
				   " LIST and --connect URI");
	if (l->storage_root && !l->image)
		return usage_error("--storage-root goes with --image");
	if (l->upperdir && !l->lowerdir)
		return usage_error("--upperdir goes with --lowerdir");
	if (l->connect_uri && (l->server_path || l->server_opts.n))
		return usage_error("--server and --server-opt need --export, --image or --lowerdir");
	/* Only the server merges the layers: there is no tree to look in. */
	if (l->boot == BOOT_KERNEL && (l->image || l->lowerdir) && !l->kernel)
		return usage_error("--boot kernel with --image or --lowerdir needs --kernel"
				   " (and --initrd)");
	if (l->cmdline && !cmdline_valid(l->cmdline))
		return usage_error("--cmdline: control characters are not allowed");
	if (l->cmdline && !bootcfg_quotes_closed(l->cmdline))
		return usage_error("--cmdline: a '\"' is never closed (it would take the"
				   " arguments after it into its value)");
	if (l->vmm == VMM_VFKIT && l->accel)
		return usage_error("--accel is a QEMU option");
	if (l->boot == BOOT_EFI && l->connect_uri &&
	    (l->kernel || l->initrd || l->kver || l->efi_loader || l->cmdline))
		return usage_error("with --boot efi and --connect the running server's ESP"
				   " is used: --kernel, --initrd, --kver, --cmdline and"
				   " --efi-loader are server options");
	return 0;
}

/* Everything before the processes start; returns 0 or an exit status. */
static int prepare(struct launch *l)
{
	int r;

	if (l->export_dir) {
		/* Absolute, so that every path derived from it is too. */
		l->export_real = realpath(l->export_dir, NULL);
		if (!l->export_real || access(l->export_real, R_OK | X_OK) < 0) {
			log_errno(-errno, "--export '%s'", l->export_dir);
			return EXIT_LAUNCH_ERROR;
		}
		l->export_dir = l->export_real;
	}
	if (l->ssh_key_file && l->boot == BOOT_EFI && l->connect_uri && cred_on_cmdline(l)) {
		/* The command line is on the remote server's ESP. */
		log_error("--ssh-key with --boot efi and --connect needs SMBIOS (QEMU):"
			  " give the credential to that server's --cmdline instead");
		return EXIT_USAGE;
	}
	/* The steps below log their own errors, except running out of
	 * memory. */
	r = rundir_create(l);
	if (r < 0)
		goto fail;
	if (l->ssh && ssh_prepare(l) < 0)
		return EXIT_LAUNCH_ERROR;
	if ((l->ssh_key_file || l->ssh) && boot_read_ssh_key(l) < 0)
		return EXIT_LAUNCH_ERROR;
	if (l->boot == BOOT_KERNEL) {
		if (boot_find_kernel(l) < 0 || boot_tree_kargs(l) < 0)
			return EXIT_LAUNCH_ERROR;
		r = boot_make_cmdline(l);
		if (r < 0)
			goto fail;
	}
	r = server_parse_uri(l);
	if (r == -EINVAL)
		return EXIT_USAGE;	/* a malformed --connect URI */
	if (r < 0)
		goto fail;
	if (!l->connect_uri) {
		r = server_build_argv(l);
		if (r < 0)
			goto fail;
	}
	r = l->vmm == VMM_QEMU ? qemu_build_argv(l) : vfkit_build_argv(l);
	if (r < 0)
		goto fail;
	return 0;
fail:
	if (r == -ENOMEM)
		log_errno(r, "preparing the launch");
	return EXIT_LAUNCH_ERROR;
}

/* This program's path, for ssh's ProxyCommand: self_path(), else argv[0]
 * made absolute, else its name (the shell then finds it on $PATH). */
static char *self_exe(const char *argv0)
{
	char *p = self_path();

	if (p)
		return p;
	if (strchr(argv0, '/'))
		return realpath(argv0, NULL);
	return strdup("erofs-nbd-launch");
}

static void print_argv(FILE *f, const char *prefix, const struct strv *a)
{
	for (size_t i = 0; i < a->n; i++)
		fprintf(f, "%s%s\n", prefix, a->v[i]);
}

static int run(struct launch *l)
{
	int r;

	/* Fail before anything starts if the VMM cannot be run. */
	r = find_program(l->vmm_argv.v[0]);
	if (r < 0) {
		log_errno(r, "'%s'%s", l->vmm_argv.v[0], l->vmm_binary ? "" :
			  l->vmm == VMM_QEMU ? " (install QEMU, or give --vmm-binary)" :
			  " (give --vmm-binary)");
		return EXIT_LAUNCH_ERROR;
	}
	if (l->vmm == VMM_QEMU && qemu_prepare(l) < 0)
		return EXIT_LAUNCH_ERROR;
	if (!l->connect_uri) {
		if (l->verbose >= 2)
			print_argv(stderr, "erofs-nbd-launch: server: ", &l->server_argv);
		if (server_start(l) < 0)
			return EXIT_LAUNCH_ERROR;
		r = sup_wait_ready(l);
		if (r)
			return r;
	} else if (server_probe(l) < 0) {
		return EXIT_LAUNCH_ERROR;
	}
	if (l->ssh && l->vmm == VMM_QEMU && qemu_rebuild_argv(l) < 0)
		return EXIT_LAUNCH_ERROR;
	if (l->verbose >= 2)
		print_argv(stderr, "erofs-nbd-launch: vmm: ", &l->vmm_argv);
	return sup_run_vm(l);
}

int main(int argc, char **argv)
{
	struct launch l = {
#ifdef __APPLE__
		.vmm = VMM_VFKIT,
#else
		.vmm = VMM_QEMU,
#endif
		.boot = BOOT_EFI,
		.cpus = 2,
		.memory_mib = 2048,
		.grace_sec = 20,
		.ready_timeout_sec = 300,
		.nbd_timeout_ms = 15000,
		.device_id = "erofsroot",
		.listen_fd = -1,
		.notify_fd = -1,
		.qmp_ev_fd = -1,
		.tree_fd = -1,
		.ssh_timeout_sec = 600,
	};
	int status;

	/* Internal: vfkit's ProxyCommand for ssh (ssh.c). */
	if (argc == 3 && !strcmp(argv[1], "--proxy-unix"))
		return proxy_unix(argv[2]);
	status = parse_args(&l, argc, argv);
	if (!status && l.ssh && l.vmm == VMM_VFKIT)
		l.self_exe = self_exe(argv[0]);
	launch_verbose = l.verbose;
	/* From here on a stop signal is only noted (and acted on once the
	 * processes run), so that the runtime directory is always removed. */
	if (!status && !l.dry_run && sup_init() < 0)
		status = (log_errno(-errno, "setting up signal handling"), EXIT_LAUNCH_ERROR);
	if (!status && l.server_opts.oom)
		status = (log_errno(-ENOMEM, "options"), EXIT_LAUNCH_ERROR);
	if (!status)
		status = prepare(&l);
	if (!status && l.dry_run) {
		if (l.verbose && l.server_argv.n)
			print_argv(stderr, "erofs-nbd-launch: server: ", &l.server_argv);
		print_argv(stdout, "", &l.vmm_argv);
	} else if (!status) {
		status = run(&l);
	}

	sup_stop_server(&l);
	/* With --ssh our own failures read as ssh's (255); bad usage stays 2,
	 * signals 128 + N, and COMMAND's status is what run() returned. */
	if (l.ssh && !l.dry_run && status != 0 && status != EXIT_USAGE && status < 128 &&
	    !l.ssh_done)
		status = EXIT_SSH_FAILED;
	if (l.tree_fd >= 0)
		close(l.tree_fd);
	if (l.listen_fd >= 0)
		close(l.listen_fd);
	if (l.notify_fd >= 0)
		close(l.notify_fd);
	rundir_remove(&l);
	if (l.verbose && !l.dry_run)
		log_info("exit status %d", status);
	strv_free(&l.server_opts);
	strv_free(&l.server_argv);
	strv_free(&l.vmm_argv);
	free(l.run_dir);
	free(l.nbd_sock);
	free(l.notify_sock);
	free(l.qmp_sock);
	free(l.qmp_ev_sock);
	free(l.rest_sock);
	free(l.efi_vars);
	free(l.ssh_sock);
	free(l.addr.socket_path);
	free(l.addr.host);
	free(l.addr.port);
	free(l.addr.export_name);
	free(l.export_real);
	free(l.boot_kernel);
	free(l.boot_initrd);
	free(l.boot_cmdline);
	free(l.ssh_credential);
	free(l.ssh_cred_line);
	free(l.ssh_key);
	free(l.ssh_key_pub);
	free(l.known_hosts);
	free(l.console_file);
	free(l.self_exe);
	free(l.tree_kargs);
	return status;
}
