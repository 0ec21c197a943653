/* SPDX-License-Identifier: MIT */
/*
 * launch.h - erofs-nbd-launch, the program that boots a VM from an
 * erofs-nbd export: it starts (or connects to) the server, starts the
 * virtual machine monitor (QEMU on Linux, vfkit on macOS) with the export
 * attached as a read-only virtio-blk disk, supervises both and cleans up;
 * with --ssh or -- COMMAND it also logs in over SSH (ssh.c), runs COMMAND
 * and powers the guest off.
 * Facts it follows: ../shared/docs/vfkit-launch.md (§1 vfkit command
 * line, §4.1-4.2 socket activation and sd_notify, §5 QEMU).
 *
 * Internal header: one struct for the whole run and the prototypes of
 * each file, grouped under a line naming the file.  Functions return 0 or
 * -errno unless said otherwise; the callers in main.c log.
 *
 * Portability: the vfkit path (--connect to a server in podman machine)
 * runs on macOS, so everything outside #ifdef __linux__ sticks to POSIX
 * (no signalfd, pidfd or pipe2).
 */
#ifndef EROFS_NBD_LAUNCH_H
#define EROFS_NBD_LAUNCH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Exit statuses of erofs-nbd-launch (README "Launcher"). */
enum {
	EXIT_VM_OK = 0,		/* the guest powered off, the VMM exited 0 */
	EXIT_LAUNCH_ERROR = 1,	/* set-up failed (server not ready, VMM not started...) */
	EXIT_USAGE = 2,		/* bad command line */
	EXIT_SERVER_DIED = 3,	/* the server exited while the VM ran; the VM was stopped */
	EXIT_VMM_FAILED = 4,	/* the VMM exited non-zero or was killed on its own */
	/* 128 + N: stopped on signal N (SIGINT 130, SIGTERM 143, SIGHUP 129) */
	/* With --ssh or a COMMAND: COMMAND's (ssh's) status, and for every
	 * failure of ours other than bad usage EXIT_SSH_FAILED, as ssh does. */
	EXIT_SSH_FAILED = 255,
};

enum vmm_kind { VMM_QEMU, VMM_VFKIT };
enum boot_kind { BOOT_EFI, BOOT_KERNEL };

/* A growing NULL-terminated argument vector.  An allocation failure is
 * remembered in oom and reported by strv_check(), so building code need
 * not check every call. */
struct strv {
	char **v;
	size_t n, cap;
	bool oom;
};

/* Where the NBD export is: a Unix socket path or a TCP host and port. */
struct nbd_addr {
	char *socket_path;	/* Unix socket, or NULL for TCP */
	char *host;		/* TCP host without brackets */
	char *port;		/* TCP port as text ("10809" by default) */
	char *export_name;	/* the NBD export the VM attaches ("disk", "root") */
};

struct launch {
	/* --- options (main.c) --- */
	enum vmm_kind vmm;
	enum boot_kind boot;
	const char *export_dir;		/* --export: start erofs-nbd on this tree */
	/* Or on a podman image, or a stack of layers (passed through). */
	const char *image, *storage_root;	/* --image, --storage-root */
	const char *lowerdir, *upperdir;	/* --lowerdir, --upperdir */
	const char *connect_uri;	/* --connect: use a running server */
	const char *server_path;	/* --server, else next to this program */
	struct strv server_opts;	/* --server-opt ARG..., passed through */
	const char *kernel, *initrd;	/* --kernel/--initrd */
	const char *kver, *cmdline, *arch, *efi_loader;
	const char *ssh_key_file;	/* --ssh-key: a public key, passed as data */
	const char *console_log;	/* --console-log, NULL: console on stdio */
	const char *vmm_binary;		/* --vmm-binary */
	const char *accel;		/* --accel auto|kvm|tcg (QEMU) */
	const char *firmware_code, *firmware_vars;	/* --firmware, --firmware-vars */
	const char *device_id;		/* --device-id: vfkit deviceId / QEMU serial */
	const char *runtime_parent;	/* where the runtime directory goes */
	const char *runtime_dir_opt;	/* --runtime-dir: exact path */
	unsigned int cpus, memory_mib;
	unsigned int grace_sec;		/* graceful stop, then hard */
	unsigned int ready_timeout_sec;	/* server READY=1 wait */
	unsigned int nbd_timeout_ms;	/* vfkit nbd timeout= */
	bool dry_run;
	int verbose;
	char **command;			/* -- COMMAND [ARG]...: NULL-terminated, or NULL */
	bool ssh;			/* --ssh or a COMMAND: a session over SSH */
	unsigned int ssh_timeout_sec;	/* --ssh-timeout: wait for sshd */

	/* --- computed --- */
	char *export_real;		/* realpath of --export; export_dir points here */
	char *run_dir;			/* private 0700 runtime directory */
	bool run_dir_created;
	char *nbd_sock;			/* $RUN/nbd.sock (--export) */
	char *notify_sock;		/* $RUN/notify (--export) */
	char *qmp_sock;			/* $RUN/qmp.sock (QEMU) */
	char *qmp_ev_sock;		/* $RUN/qmp-ev.sock (QEMU): events only */
	char *rest_sock;		/* $RUN/rest.sock (vfkit) */
	char *efi_vars;			/* $RUN/efivars or $RUN/vars.fd */
	char *ssh_sock;			/* $RUN/ssh.sock (vfkit, with --ssh-key) */
	struct nbd_addr addr;		/* what the VM attaches */
	char *boot_kernel, *boot_initrd;	/* --boot kernel: host files */
	char *boot_cmdline;		/* --boot kernel: the kernel command line */
	char *ssh_credential;		/* base64 of the authorized_keys lines */
	char *ssh_cred_line;		/* one key line, for systemd 252's text form */
	char *ssh_key;			/* $RUN/ssh_key: the throwaway private key */
	char *ssh_key_pub;		/* $RUN/ssh_key.pub */
	char *known_hosts;		/* $RUN/known_hosts: this run's only */
	char *console_file;		/* $RUN/console: the console with --ssh */
	unsigned int ssh_port;		/* QEMU: 127.0.0.1:PORT -> guest port 22 */
	char *self_exe;			/* this program (vfkit's ProxyCommand) */
	char *tree_kargs;		/* the tree's own kernel arguments (bootcfg.h) */
	int tree_fd;			/* the tree's root, for bootcfg's callbacks */
	bool kvm_auto;			/* QEMU: KVM chosen by --accel auto */
	struct strv server_argv;
	struct strv vmm_argv;

	/* --- processes (supervise.c) --- */
	pid_t server_pid, vmm_pid, ssh_pid;
	int server_status, vmm_status, ssh_status;	/* wait() statuses, once exited */
	bool server_exited, vmm_exited, ssh_exited;
	bool ssh_done;			/* the session or COMMAND ran to its end */
	int listen_fd, notify_fd;
	/* QEMU's events (qemu_events_*()): the monitor on $RUN/qmp-ev.sock,
	 * -1 until connected, what it said of the shutdown. */
	int qmp_ev_fd;
	long long qmp_ev_next_try;	/* now_ms() of the next connect */
	char qmp_ev_buf[4096];
	size_t qmp_ev_len;
	bool vmm_host_signal;		/* SHUTDOWN, reason "host-signal" */
};

/* util.c */
extern int launch_verbose;
/*
 * Logs "erofs-nbd-launch: [LEVEL: ]message" on stderr.  Each message goes
 * out in one write(2): erofs-nbd and the VMM share our stderr, and a
 * message written in pieces could be split by one of theirs.
 */
void log_msg(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg("error", __VA_ARGS__)
#define log_warning(...) log_msg("warning", __VA_ARGS__)
#define log_info(...) do { if (launch_verbose >= 1) log_msg(NULL, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (launch_verbose >= 2) log_msg("debug", __VA_ARGS__); } while (0)
/* Logs "error: ...: strerror(-err)" and returns err (< 0). */
int log_errno(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Appends a copy of arg to s (argv[] for posix_spawn, kept NULL-terminated).
 * Out of memory is recorded in s, not returned: strv_check() reports it
 * once after a run of adds.
 */
void strv_add(struct strv *s, const char *arg);
/* Appends p and takes ownership (NULL: records the failed allocation). */
void strv_push_owned(struct strv *s, char *p);
/* Appends the printf-formatted string; out of memory as for strv_add(). */
void strv_addf(struct strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 0, or -ENOMEM if any add failed. */
int strv_check(const struct strv *s);
/* Frees every string and the array; s is left empty and may be reused. */
void strv_free(struct strv *s);

/* malloc'd "dir/name", NULL on ENOMEM. */
char *path_join(const char *dir, const char *name);
/* Percent-encodes s for an NBD URI (RFC 3986: unreserved bytes and '/'
 * kept); malloc'd, NULL on ENOMEM. */
char *uri_encode(const char *s);
/* Decodes %XX in place; -EINVAL on a malformed escape or a NUL byte. */
int uri_decode(char *s);
/* Doubles every ',' (QEMU's key=value option syntax); malloc'd. */
char *qemu_escape(const char *s);
/* Parses a decimal unsigned in [min, max]; -EINVAL/-ERANGE. */
int parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *ret);
/* Monotonic clock in milliseconds. */
long long now_ms(void);
/* Sets FD_CLOEXEC (and O_NONBLOCK if asked) on fd. */
int fd_cloexec(int fd, bool nonblock);
/* Creates the private runtime directory (mode 0700) and sets the socket
 * paths in l.  With --dry-run nothing is created on disk when
 * --runtime-dir names the path. */
int rundir_create(struct launch *l);
/* Removes every entry of the runtime directory (it has no subdirectories)
 * and the directory itself; safe to call twice. */
void rundir_remove(struct launch *l);
/* 0 if name (a path, or a program on $PATH as execvp searches it) can
 * be executed, else -ENOENT/-EACCES. */
int find_program(const char *name);
/* This program's absolute path (/proc/self/exe on Linux), malloc'ed, or
 * NULL where it cannot be known. */
char *self_path(void);
/* Where the guest's console goes: --console-log, else with --ssh
 * $RUN/console (the terminal belongs to the session), else NULL: the
 * terminal. */
const char *console_path(const struct launch *l);
/* Connects a blocking Unix stream socket to path with send/receive
 * timeouts of timeout_ms; returns the fd or -errno. */
int unix_connect(const char *path, int timeout_ms);
/*
 * read(2) on a socket from unix_connect(), retried when a signal (a child
 * ending: SIGCHLD) interrupts it, which SA_RESTART does not prevent on a
 * socket with a receive timeout (signal(7)), until deadline (now_ms()).
 * Returns bytes read, 0 at EOF, or -errno (-EAGAIN: the timeout).
 */
ssize_t read_until(int fd, void *buf, size_t size, long long deadline);

/* boot.c */
/* Fills l->boot_kernel/boot_initrd for --boot kernel: --kernel/--initrd,
 * else the tree's kernel by the rule of fat/bootcfg.h (symlinks resolved
 * inside the tree).  -ENOENT if there is none (logged). */
int boot_find_kernel(struct launch *l);
/* Sets l->tree_kargs to the tree's own kernel arguments (bootcfg_kargs();
 * "" without --export).  0 or -errno (logged, naming the file). */
int boot_tree_kargs(struct launch *l);
/* Builds the SSH credential from the --ssh-key file (one "type base64
 * [comment]" line, printable ASCII, no quotes, backslashes, '$', '`' or
 * ';') and, with --ssh, the throwaway $RUN/ssh_key.pub: l->ssh_credential
 * (base64 of the authorized_keys lines) and l->ssh_cred_line (the
 * throwaway key's line, else --ssh-key's).  -EINVAL if bad (logged). */
int boot_read_ssh_key(struct launch *l);
/* Whether the SSH credential travels on the kernel command line: vfkit
 * has no SMBIOS, nor has QEMU's direct kernel boot off x86 (no firmware
 * to install the tables).  Else it goes in SMBIOS type 11. */
bool cred_on_cmdline(const struct launch *l);
/* The launcher's additions to the kernel command line, after the tree's
 * own arguments and before --cmdline: console=, systemd.volatile=overlay
 * (writes to RAM over the read-only root) and, if cred_on_cmdline(), the
 * credential: systemd.set_credential_binary= (base64) and, where the
 * carrier allows quotes (quotes_ok), "systemd.set_credential=NAME:LINE"
 * for systemd 252, which knows only the text form.  malloc'ed, NULL on
 * ENOMEM. */
char *boot_launcher_args(const struct launch *l, bool quotes_ok);
/* Builds l->boot_cmdline: root=/dev/vda rootfstype=erofs ro, the tree's
 * arguments, boot_launcher_args(), --cmdline, with init's arguments (after
 * a "--") last (bootcfg_cmdline_join()).  0, or -ENOMEM (logged). */
int boot_make_cmdline(struct launch *l);
/* For vfkit's linux bootloader on arm64: 0 if the kernel is an
 * uncompressed arm64 Image ("ARM\x64" at 0x38), else -EINVAL with a
 * message saying what it is (gzip, zstd, EFI zboot) and to use EFI boot. */
int boot_check_vfkit_kernel(const struct launch *l);
/* The guest's console device for console=: hvc0 (vfkit's virtio-serial),
 * ttyS0 (QEMU x86 serial), ttyAMA0 (QEMU aarch64 PL011). */
const char *guest_console(const struct launch *l);

/* server.c */
/* Parses --connect URI (nbd+unix:///NAME?socket=PATH, nbd://HOST[:PORT]/NAME;
 * NBD doc/uri.md) into l->addr, or takes $RUN/nbd.sock for --export; an
 * empty export name becomes the boot mode's ("disk" or "root").  -EINVAL
 * for a malformed URI (logged), -ENOMEM. */
int server_parse_uri(struct launch *l);
/* Builds the erofs-nbd command line in l->server_argv: --foreground
 * --export DIR (or --image NAME [--storage-root DIR], or --lowerdir LIST
 * [--upperdir DIR]) --exit-with-parent, for EFI boot the ESP options
 * (--cmdline with console= first), then --server-opt.  0 or -ENOMEM. */
int server_build_argv(struct launch *l);
/* Binds the listening socket and the notify socket, forks and execs the
 * server with LISTEN_FDS=1 (sd_listen_fds(3), §4.1) and NOTIFY_SOCKET
 * (§4.2).  Sets l->server_pid.  0 or -errno (logged). */
int server_start(struct launch *l);
/* Handles one datagram on the notify socket: 1 for READY=1 from the
 * server's pid, 0 for anything else (STATUS= is logged with -v), -errno
 * if reading failed. */
int server_read_notify(struct launch *l);
/* Checks that a --connect server accepts a connection and sends the NBD
 * greeting (NBDMAGIC), within 5 s.  0 or -errno (logged). */
int server_probe(struct launch *l);

/* qemu.c */
/* The guest architecture in QEMU's spelling (x86_64, aarch64): --arch,
 * else the host's. */
const char *guest_arch(const struct launch *l);
/* Builds the QEMU command line in l->vmm_argv (§5.2 kernel boot, §5.3
 * EFI boot); values in key=value options have ',' doubled.  0 or -ENOMEM. */
int qemu_build_argv(struct launch *l);
/*
 * Builds l->vmm_argv again right before QEMU starts (after --accel
 * changed), with a newly picked SSH port under --ssh: one picked before a
 * long walk may have been taken meanwhile.  0 or -errno (logged).
 */
int qemu_rebuild_argv(struct launch *l);
/* Asks the guest to power off: QMP qmp_capabilities, system_powerdown on
 * $RUN/qmp.sock, 2 s per step.  0 or -errno. */
int qemu_request_stop(struct launch *l);
/*
 * QEMU's events, on a QMP monitor of their own ($RUN/qmp-ev.sock; the
 * other one takes the stop request, and a monitor serves one client at
 * a time): qemu_events_connect() tries to connect and negotiate once
 * the socket is there (no-op when connected or tried within 200 ms, 0 or
 * -errno); qemu_events_read() reads what is there without blocking and
 * notes a SHUTDOWN event whose reason is "host-signal" (QEMU exits 0 on
 * SIGTERM, SIGINT or SIGHUP, so only the event tells a signal from a
 * guest's power-off); qemu_events_close() closes the monitor.
 */
int qemu_events_connect(struct launch *l);
void qemu_events_read(struct launch *l);
void qemu_events_close(struct launch *l);
/* For EFI boot, copies the OVMF/AAVMF variable store template to
 * $RUN/vars.fd (mode 0600).  0 or -errno (logged). */
int qemu_prepare(struct launch *l);

/* ssh.c */
/* Quotes every argument for a POSIX shell ('...', a quote as '\'') and
 * joins them with spaces: the remote shell gives back exactly argv.
 * malloc'ed, NULL on ENOMEM. */
char *shell_quote_argv(char *const argv[]);
/* Makes the throwaway key pair (ssh-keygen -t ed25519) and, for QEMU,
 * picks the free loopback port to forward.  0 or -errno (logged). */
int ssh_prepare(struct launch *l);
/*
 * Picks again the free loopback port QEMU forwards to the guest's port 22
 * (l->ssh_port): right before QEMU starts, since a port picked before a
 * long walk may have been taken meanwhile.  0 or -errno (logged).
 */
int ssh_pick_port(struct launch *l);
/* One try to reach the guest's sshd: 0 once its "SSH-" identification
 * string arrives, else -errno (-ECONNRESET: closed before it). */
int ssh_probe(const struct launch *l);
/* The ssh client's command line for the session or COMMAND, the paths in
 * it escaped for ssh's % tokens (a "${", which ssh also expands, is kept
 * out of the runtime directory by rundir_create()).  0 or -ENOMEM. */
int ssh_build_argv(struct launch *l, struct strv *a);
/* --proxy-unix PATH: relays stdin/stdout to a Unix socket (vfkit's vsock
 * port for ssh's ProxyCommand).  Returns the exit status. */
int proxy_unix(const char *path);

/* vfkit.c */
/* Builds the vfkit command line in l->vmm_argv (§1.14).  -EINVAL (logged)
 * for a value vfkit's option syntax cannot carry (§1.4), -ENOMEM. */
int vfkit_build_argv(struct launch *l);
/* POSTs {"state":"Stop"} (hard: "HardStop") to vfkit's REST API on
 * $RUN/rest.sock (§1.11).  0 on HTTP 200, else -errno. */
int vfkit_request_stop(struct launch *l, bool hard);

/* supervise.c */
/* Installs the SIGCHLD/SIGINT/SIGTERM/SIGHUP handlers (self-pipe) and
 * ignores SIGPIPE.  0 or -errno. */
int sup_init(void);
/* Forks and execs argv[0] with argv (PATH search if it has no '/');
 * stdin/stdout as given (-1: inherit), own process group if asked, the
 * extra environment env (NULL-terminated "K=V", may be NULL) and, if
 * listen_fd >= 0, that fd as fd 3.  Returns the pid or -errno. */
pid_t sup_spawn(char *const argv[], char *const env[], int stdin_fd, int stdout_fd,
		bool own_pgrp, int listen_fd);
/* Waits for the server's READY=1.  Returns 0, or the exit status the
 * launcher should end with. */
int sup_wait_ready(struct launch *l);
/* Runs the VM until it ends; returns the launcher's exit status. */
int sup_run_vm(struct launch *l);
/* Stops the server (SIGTERM, then SIGKILL after 10 s) and reaps it. */
void sup_stop_server(struct launch *l);

#endif
