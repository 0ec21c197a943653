/* SPDX-License-Identifier: MIT */
/*
 * main.c - the erofs-nbd program: parses options, walks the tree or
 * merges the layer stack (overlaywalk/; --image finds the stack in
 * containers-storage, overlaywalk/storage.h), lays out the EROFS image as
 * a region map (erofs/),
 * the EFI System Partition (fat/esp.c) and the GPT disk around both
 * (gpt/), opens the listeners (listen.c) and serves the maps over NBD
 * (srv_run) as the exports "disk" (also ""), "root" and "esp".
 *
 * The command line and run modes are modelled on nbdkit and qemu-nbd:
 *
 *   default      print the URI on stdout, then fork into the background
 *                (setsid, chdir /, stdio to /dev/null), as nbdkit does;
 *   -f           stay in the foreground (qemu-nbd's default);
 *   --run CMD    nbdkit's captive mode: run CMD with $uri set, serve while
 *                it runs, then stop and exit with its status;
 *   --write-image FILE   write an export (the disk, or --image-export)
 *                and exit (debugging only).
 *
 * Under a service manager (sdnotify.c): sockets passed by socket
 * activation are served (and imply -f), and READY=1 goes to NOTIFY_SOCKET
 * once serving can start.  Order: walk and lay out, listen, print the
 * URI, daemonize, pid file, --run, drop privileges (caps.c: only
 * CAP_DAC_READ_SEARCH and no_new_privs, optionally --user/--group),
 * READY=1, serve, STOPPING=1.
 *
 * Signals: SIGINT and SIGTERM (and SIGCHLD with --run) are blocked and
 * read through a signalfd, which is the server's stop_fd.  SIGUSR1 is
 * blocked too and taken by a thread of its own (report_thread), which
 * logs the heap in use: neither serving loop knows of it.  SIGPIPE is
 * ignored.  Every exit path removes the sockets and the runtime directory
 * this process created and frees the map and the tree.
 *
 * Exit status: 0 success, 1 error, 2 bad usage, or CMD's status with --run.
 * The option reference is README.md ("Usage").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* The sanitizers' runtime has it; GCC ships no header for it. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#include "erofs/erofs.h"
#include "fat/esp.h"
#include "gpt/gpt.h"
#include "overlaywalk/storage.h"
#include "overlaywalk/walk.h"
#include "server/caps.h"
#include "server/cleanup.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/region.h"
#include "server/sdnotify.h"
#include "server/server.h"

#ifndef EROFS_NBD_VERSION
#define EROFS_NBD_VERSION "unknown"
#endif

#define EXIT_USAGE 2
#define EXPORT_NAME "root"
/* Bytes the export size is padded to, whatever the EROFS block size. */
#define EXPORT_ALIGN 4096

extern char **environ;

/* One --unix, --tcp or --vsock, in command-line order. */
struct listen_arg {
	bool is_unix;
	bool is_vsock;
	const char *arg;	/* as given, for messages */
	char *host;		/* --tcp: parsed host (malloc'ed) */
	uint16_t port;		/* --tcp: parsed port */
	uint32_t vsock_port;	/* --vsock: parsed port */
};

struct options {
	/* The tree: exactly one of export_dir, lowerdir, image. */
	const char *export_dir;
	const char *lowerdir, *upperdir;	/* --lowerdir, --upperdir */
	const char *image, *storage_root;	/* --image, --storage-root */
	bool userxattr, aufs_whiteouts;		/* --userxattr, --aufs-whiteouts */
	struct listen_arg *listens;
	size_t nlistens;
	bool cross_mounts;
	bool skip_unreadable;
	bool foreground;
	bool use_io_uring;
	bool immutable_sources;
	unsigned int blkszbits;
	const char *label;
	bool no_inline_data;
	const char *write_image;
	const char *image_export;	/* --image-export: what --write-image writes */
	/* The disk's EFI System Partition (fat/esp.h). */
	enum { ESP_AUTO, ESP_REQUIRED, ESP_NO } esp;	/* --esp */
	enum esp_arch arch;		/* --arch, or ESP_ARCH_AUTO */
	const char *efi_loader, *kernel, *initrd, *kver, *cmdline;
	const char *run_cmd;
	unsigned int handshake_timeout_sec;
	bool build_time_set;
	int64_t build_time;
	const char *pidfile;		/* --pidfile */
	/* Those of --kernel, --initrd, --efi-loader and --pidfile made
	 * absolute (absolute_options()), which the above then point to. */
	char *abs_paths[4];
	bool exit_with_parent;		/* --exit-with-parent */
	const char *user, *group;	/* --user, --group */
	struct caps_opts caps;		/* what --user/--group resolved to */
};

/* Everything a run owns, released by program_free() on every path. */
struct program {
	/* What is served, for messages ("DIR", "image 'NAME'") and for the
	 * export descriptions (DIR made absolute, the image and its ID, the
	 * stack). */
	char *source_name, *source_desc;
	struct walk_tree *tree;
	struct region_map map;
	bool map_init;
	/* The bootable disk: the ESP (if built) and the GPT disk around both. */
	struct region_map esp_map, disk_map;
	struct region_map root_part;	/* the EROFS (a sub-map) + zeros to 1 MiB: partition 2 */
	bool disk_init;		/* esp_map, root_part and disk_map initialised */
	bool has_esp;		/* the tree gave an ESP: export "esp" exists */
	char *esp_description, *disk_description;
	struct listener *listeners;
	size_t nlisteners;
	char *runtime_dir;	/* the private directory we created, or NULL */
	char *uri;		/* the default export's URI on listeners[0] */
	char *description;
	int sigfd;
	pid_t run_pid;		/* --run: the command, or 0 */
	struct notifier notify;	/* NOTIFY_SOCKET, or inert */
	unsigned int nactivated;	/* sockets passed by socket activation */
	char *activated_names;	/* their LISTEN_FDNAMES, or NULL */
	const char *pidfile;	/* the pid file we wrote, removed on exit */
	pid_t parent;		/* --exit-with-parent: the parent at start */
};

enum {
	OPT_EXPORT = 256,
	OPT_TCP,
	OPT_CROSS_MOUNTS,
	OPT_SKIP_UNREADABLE,
	OPT_BLOCK_SIZE,
	OPT_LABEL,
	OPT_WRITE_IMAGE,
	OPT_IMAGE_EXPORT,
	OPT_ARCH,
	OPT_ESP,
	OPT_EFI_LOADER,
	OPT_KERNEL,
	OPT_INITRD,
	OPT_KVER,
	OPT_CMDLINE,
	OPT_RUN,
	OPT_NO_IO_URING,
	OPT_IMMUTABLE_SOURCES,
	OPT_NO_INLINE_DATA,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_VSOCK,
	OPT_PIDFILE,
	OPT_EXIT_WITH_PARENT,
	OPT_USER,
	OPT_GROUP,
	OPT_LOWERDIR,
	OPT_UPPERDIR,
	OPT_IMAGE,
	OPT_STORAGE_ROOT,
	OPT_USERXATTR,
	OPT_AUFS_WHITEOUTS,
};

static const struct option long_options[] = {
	{ "export", required_argument, NULL, OPT_EXPORT },
	{ "lowerdir", required_argument, NULL, OPT_LOWERDIR },
	{ "upperdir", required_argument, NULL, OPT_UPPERDIR },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "storage-root", required_argument, NULL, OPT_STORAGE_ROOT },
	{ "userxattr", no_argument, NULL, OPT_USERXATTR },
	{ "aufs-whiteouts", no_argument, NULL, OPT_AUFS_WHITEOUTS },
	{ "unix", required_argument, NULL, 'U' },
	{ "tcp", required_argument, NULL, OPT_TCP },
	{ "cross-mounts", no_argument, NULL, OPT_CROSS_MOUNTS },
	{ "skip-unreadable", no_argument, NULL, OPT_SKIP_UNREADABLE },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "label", required_argument, NULL, OPT_LABEL },
	{ "write-image", required_argument, NULL, OPT_WRITE_IMAGE },
	{ "image-export", required_argument, NULL, OPT_IMAGE_EXPORT },
	{ "arch", required_argument, NULL, OPT_ARCH },
	{ "esp", required_argument, NULL, OPT_ESP },
	{ "efi-loader", required_argument, NULL, OPT_EFI_LOADER },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "kver", required_argument, NULL, OPT_KVER },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "run", required_argument, NULL, OPT_RUN },
	{ "foreground", no_argument, NULL, 'f' },
	{ "no-io-uring", no_argument, NULL, OPT_NO_IO_URING },
	{ "immutable-sources", no_argument, NULL, OPT_IMMUTABLE_SOURCES },
	{ "no-inline-data", no_argument, NULL, OPT_NO_INLINE_DATA },
	{ "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
	{ "vsock", required_argument, NULL, OPT_VSOCK },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "exit-with-parent", no_argument, NULL, OPT_EXIT_WITH_PARENT },
	{ "user", required_argument, NULL, OPT_USER },
	{ "group", required_argument, NULL, OPT_GROUP },
	{ "verbose", no_argument, NULL, 'v' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static void usage(void)
{
	printf(
"Usage: erofs-nbd (--export DIR | --lowerdir TOP:...:BOTTOM | --image NAME)\n"
"                 [OPTION]...\n"
"Serve the directory tree DIR, a stack of overlay layers or a container\n"
"image as a read-only EROFS file system over NBD, inside a bootable GPT\n"
"disk with an EFI System Partition (systemd-boot, the tree's kernel and\n"
"initramfs).  The images are laid out in memory; file data is read from\n"
"the tree or the layers on demand.\n"
"\n"
"Tree (exactly one of --export, --lowerdir, --image):\n"
"  --export DIR            the tree to serve.  Exports: \"disk\" (the GPT\n"
"                          disk, also the default export \"\"), \"root\"\n"
"                          (the EROFS alone), \"esp\" (the FAT ESP)\n"
"  --lowerdir TOP:...:BOTTOM  merge these layer directories as a read-only\n"
"                          overlay mount would (\\: for a colon in a name)\n"
"  --upperdir DIR          with --lowerdir: one more layer on top (a\n"
"                          container's upper directory)\n"
"  --image NAME|ID         serve an image of podman's containers-storage,\n"
"                          merged from its layers\n"
"  --storage-root DIR      with --image: the store (default: podman's, from\n"
"                          storage.conf)\n"
"  --userxattr             the layers' overlay marks are user.overlay.*\n"
"                          (default: trusted.overlay.*, but user.overlay.*\n"
"                          inside a user namespace such as podman unshare)\n"
"  --aufs-whiteouts        with --lowerdir: also honour .wh.NAME and\n"
"                          .wh..wh..opq files (fuse-overlayfs stores)\n"
"  --cross-mounts          descend into other mounted file systems\n"
"                          (default: stay on DIR's file system)\n"
"  --skip-unreadable       warn about and leave out entries that cannot be\n"
"                          read or represented (default: fail)\n"
"  --block-size BYTES      EROFS block size, a power of two 512..65536;\n"
"                          k/K suffix allowed (default: 4096)\n"
"  --label NAME            volume name, at most 15 bytes (default: none)\n"
"  --no-inline-data        keep every file's data in blocks of its own,\n"
"                          never inline after its inode (default: inline\n"
"                          small files and tails, as mkfs.erofs does)\n"
"  --write-image FILE      write an export to FILE and exit, without serving\n"
"                          (for debugging and comparison)\n"
"  --image-export NAME     what --write-image writes: disk (default), root\n"
"                          or esp\n"
"\n"
"Boot (the disk's EFI System Partition):\n"
"  --esp MODE              auto (default): an ESP if DIR has a kernel and a\n"
"                          boot loader, else a warning and none; required:\n"
"                          none is an error; no: none, and no warning\n"
"  --arch ARCH             x86_64 (amd64) or aarch64 (arm64): the root\n"
"                          partition type and boot loader (default: what\n"
"                          the kernel is built for)\n"
"  --kernel PATH           the kernel (default: the newest in DIR, from\n"
"                          /usr/lib/modules/KVER/vmlinuz or /boot/vmlinuz-KVER)\n"
"  --initrd PATH           the initramfs (default: the kernel's in DIR)\n"
"  --kver VERSION          pick this kernel version of DIR\n"
"  --efi-loader PATH       the EFI boot loader (default: DIR's systemd-boot,\n"
"                          /usr/lib/systemd/boot/efi/systemd-boot*.efi)\n"
"  --cmdline TEXT          added to \"root=PARTUUID=... rootfstype=erofs ro\"\n"
"  A tree without a kernel or boot loader gives a disk with the root\n"
"  partition only, and a warning (--esp auto).\n"
"\n"
"Listening (several allowed; the URI printed is the first one's):\n"
"  -U, --unix PATH         Unix socket PATH, mode 0600\n"
"  --tcp [HOST:]PORT       TCP on HOST (default 127.0.0.1, loopback only);\n"
"                          [IPV6]:PORT for IPv6; PORT 0 picks a free port\n"
"  --vsock PORT            AF_VSOCK PORT on every local CID (0: a free one)\n"
"  (none)                  a Unix socket nbd.sock in a private directory\n"
"                          under $XDG_RUNTIME_DIR, /run (root) or $TMPDIR\n"
"  Sockets passed by socket activation (LISTEN_FDS) are used first and\n"
"  imply -f; no private directory is made for them.\n"
"\n"
"Running:\n"
"  -f, --foreground        stay in the foreground (default: print the URI,\n"
"                          then go into the background)\n"
"  --run CMD               run CMD with /bin/sh -c, $uri, $unixsocket and\n"
"                          $port set; serve until it exits, then exit with\n"
"                          its status\n"
"  --no-io-uring           use the thread-per-connection loop, not io_uring\n"
"  --immutable-sources     promise that no file served changes: send file\n"
"                          data zero-copy (splice) from the page cache\n"
"  --handshake-timeout SECS  drop clients that do not finish the handshake\n"
"                          in SECS seconds (default: 10)\n"
"  --pidfile FILE          write the server's pid to FILE once it serves;\n"
"                          removed on exit\n"
"  --exit-with-parent      stop when the parent process exits (implies -f)\n"
"  --user USER, --group GROUP  switch to USER (and its group, or GROUP)\n"
"                          once the listeners are open; needs root\n"
"  -v, --verbose           more messages (repeat for debug)\n"
"  -V, --version           print the version and exit\n"
"  -h, --help              print this help and exit\n"
"\n"
"Once listening, erofs-nbd keeps only CAP_DAC_READ_SEARCH and sets\n"
"no_new_privs.  Under systemd (NOTIFY_SOCKET) it reports READY=1 once\n"
"it serves and STOPPING=1 when it stops.\n"
"\n"
"Environment: SOURCE_DATE_EPOCH sets the image's build time.\n"
"Exit status: 0 ok, 1 error, 2 bad usage; with --run, CMD's status.\n"
"On success the NBD URI of the default export is printed on stdout:\n"
"  nbd+unix:///?socket=PATH   or   nbd://HOST:PORT/\n");
}

/* Prints a usage error and the hint; returns EXIT_USAGE. */
static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "erofs-nbd: %s\nTry 'erofs-nbd --help' for more information.\n",
		msg);
	return EXIT_USAGE;
}

static void options_free(struct options *o)
{
	for (size_t i = 0; i < ARRAY_SIZE(o->abs_paths); i++)
		free(o->abs_paths[i]);
	for (size_t i = 0; i < o->nlistens; i++)
		free(o->listens[i].host);
	free(o->listens);
	o->listens = NULL;
	o->nlistens = 0;
}

/*
 * The files read after the server went to the background, which serves
 * from "/" (the ESP's kernel, initrd and loader, read when a client reads
 * them; the pid file, written once it serves): made absolute now.  0 or
 * -errno.
 */
static int absolute_options(struct options *o)
{
	const char **paths[] = { &o->kernel, &o->initrd, &o->efi_loader, &o->pidfile };

	for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
		if (!*paths[i] || (*paths[i])[0] == '/')
			continue;
		int r = absolute_path(*paths[i], &o->abs_paths[i]);
		if (r < 0)
			return r;
		*paths[i] = o->abs_paths[i];
	}
	return 0;
}

static int add_listen(struct options *o, bool is_unix, const char *arg)
{
	struct listen_arg *v = reallocarray(o->listens, o->nlistens + 1, sizeof(*v));
	struct listen_arg *l;
	int r;

	if (!v)
		return -ENOMEM;
	o->listens = v;
	l = &v[o->nlistens];
	*l = (struct listen_arg){ .is_unix = is_unix, .arg = arg };
	if (!is_unix) {
		r = listen_parse_hostport(arg, &l->host, &l->port);
		if (r < 0)
			return r;
	}
	o->nlistens++;
	return 0;
}

/*
 * Resolves --user and --group into o->caps (--user alone also takes the
 * user's primary group).  Returns -1 to go on, or EXIT_USAGE.
 */
static int parse_identity(struct options *o)
{
	gid_t gid = (gid_t)-1;
	int r;

	if (o->user) {
		r = caps_lookup_user(o->user, &o->caps.uid, &gid);
		if (r < 0)
			return usage_error("--user '%s': %s", o->user, r == -ENOENT ?
					   "no such user" : strerror(-r));
		o->caps.set_uid = true;
	}
	if (o->group) {
		r = caps_lookup_group(o->group, &gid);
		if (r < 0)
			return usage_error("--group '%s': %s", o->group, r == -ENOENT ?
					   "no such group" : strerror(-r));
	}
	/*
	 * A uid with no passwd entry has no primary group to take: rather
	 * than keep ours (root's, and our supplementary groups), refuse, as
	 * systemd's User= does; --group names one.
	 */
	if (o->user && gid == (gid_t)-1)
		return usage_error("--user '%s': uid %u has no passwd entry, so no primary "
				   "group: give --group too", o->user, (unsigned int)o->caps.uid);
	if (gid != (gid_t)-1) {
		o->caps.set_gid = true;
		o->caps.gid = gid;
	}
	return -1;
}

/*
 * Parses argv into *o.  Returns -1 to go on, or an exit status: 0 after
 * --help/--version, EXIT_USAGE (message printed) or 1 (out of memory).
 */
static int parse_options(int argc, char **argv, struct options *o)
{
	const char *sde;
	uint64_t v;
	int c, r;

	*o = (struct options){
		.use_io_uring = true,
		.blkszbits = 12,
		.handshake_timeout_sec = 10,
	};
	opterr = 0;	/* we print our own messages */
	while ((c = getopt_long(argc, argv, ":fvhVU:", long_options, NULL)) != -1) {
		switch (c) {
		case OPT_EXPORT:
		case OPT_LOWERDIR:
		case OPT_UPPERDIR:
		case OPT_IMAGE:
		case OPT_STORAGE_ROOT: {
			const char **slot = c == OPT_EXPORT ? &o->export_dir :
					    c == OPT_LOWERDIR ? &o->lowerdir :
					    c == OPT_UPPERDIR ? &o->upperdir :
					    c == OPT_IMAGE ? &o->image : &o->storage_root;
			if (*slot)
				return usage_error("%s given twice", argv[optind - 1]);
			/* Empty counts as not given, so that a systemd unit can
			 * pass --export=${A} --image=${B} and set one of them. */
			*slot = *optarg ? optarg : NULL;
			break;
		}
		case OPT_USERXATTR:
			o->userxattr = true;
			break;
		case OPT_AUFS_WHITEOUTS:
			o->aufs_whiteouts = true;
			break;
		case 'U':
			if (!*optarg)
				return usage_error("--unix: empty path");
			if (add_listen(o, true, optarg) < 0)
				return 1;
			break;
		case OPT_TCP:
			r = add_listen(o, false, optarg);
			if (r == -ENOMEM)
				return 1;
			if (r < 0)
				return usage_error("--tcp '%s': expected [HOST:]PORT or [IPV6]:PORT, "
						   "PORT 0..65535", optarg);
			break;
		case OPT_CROSS_MOUNTS:
			o->cross_mounts = true;
			break;
		case OPT_SKIP_UNREADABLE:
			o->skip_unreadable = true;
			break;
		case OPT_BLOCK_SIZE:
			if (opt_parse_size(optarg, &v) < 0 || !opt_block_size_ok(v))
				return usage_error("--block-size '%s': expected a power of two "
						   "from 512 to 65536", optarg);
			o->blkszbits = (unsigned int)__builtin_ctzll(v);
			break;
		case OPT_LABEL:
			if (strlen(optarg) > 15)
				return usage_error("--label '%s': at most 15 bytes", optarg);
			o->label = *optarg ? optarg : NULL;
			break;
		case OPT_WRITE_IMAGE:
			if (!*optarg)
				return usage_error("--write-image: empty path");
			o->write_image = optarg;
			break;
		case OPT_IMAGE_EXPORT:
			if (strcmp(optarg, "disk") && strcmp(optarg, "root") &&
			    strcmp(optarg, "esp"))
				return usage_error("--image-export '%s': expected disk, root "
						   "or esp", optarg);
			o->image_export = optarg;
			break;
		case OPT_ARCH:
			if (!strcmp(optarg, "x86_64") || !strcmp(optarg, "x86-64") ||
			    !strcmp(optarg, "amd64"))
				o->arch = ESP_ARCH_X86_64;
			else if (!strcmp(optarg, "aarch64") || !strcmp(optarg, "arm64"))
				o->arch = ESP_ARCH_AARCH64;
			else
				return usage_error("--arch '%s': expected x86_64 (amd64) or "
						   "aarch64 (arm64)", optarg);
			break;
		case OPT_ESP:
			if (!strcmp(optarg, "auto"))
				o->esp = ESP_AUTO;
			else if (!strcmp(optarg, "required"))
				o->esp = ESP_REQUIRED;
			else if (!strcmp(optarg, "no"))
				o->esp = ESP_NO;
			else
				return usage_error("--esp '%s': expected auto, required or no",
						   optarg);
			break;
		case OPT_EFI_LOADER:
		case OPT_KERNEL:
		case OPT_INITRD:
		case OPT_KVER:
			if (!*optarg)
				return usage_error("%s: empty argument", argv[optind - 1]);
			if (c == OPT_EFI_LOADER)
				o->efi_loader = optarg;
			else if (c == OPT_KERNEL)
				o->kernel = optarg;
			else if (c == OPT_INITRD)
				o->initrd = optarg;
			else
				o->kver = optarg;
			break;
		case OPT_CMDLINE:
			o->cmdline = optarg;
			break;
		case OPT_RUN:
			o->run_cmd = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case OPT_NO_INLINE_DATA:
			o->no_inline_data = true;
			break;
		case OPT_NO_IO_URING:
			o->use_io_uring = false;
			break;
		case OPT_IMMUTABLE_SOURCES:
			o->immutable_sources = true;
			break;
		case OPT_HANDSHAKE_TIMEOUT:
			if (opt_parse_uint(optarg, 86400, &v) < 0 || v == 0)
				return usage_error("--handshake-timeout '%s': expected seconds, "
						   "1..86400", optarg);
			o->handshake_timeout_sec = (unsigned int)v;
			break;
		case OPT_VSOCK: {
			uint32_t port;
			if (listen_parse_vsock_port(optarg, &port) < 0)
				return usage_error("--vsock '%s': expected a port, 0..4294967294",
						   optarg);
			/* Added as a Unix one, which has no host to parse. */
			if (add_listen(o, true, optarg) < 0)
				return 1;
			o->listens[o->nlistens - 1].is_unix = false;
			o->listens[o->nlistens - 1].is_vsock = true;
			o->listens[o->nlistens - 1].vsock_port = port;
			break;
		}
		case OPT_PIDFILE:
			if (!*optarg)
				return usage_error("--pidfile: empty path");
			o->pidfile = optarg;
			break;
		case OPT_EXIT_WITH_PARENT:
			o->exit_with_parent = true;
			break;
		case OPT_USER:
			o->user = optarg;
			break;
		case OPT_GROUP:
			o->group = optarg;
			break;
		case 'v':
			if (log_max_level < LOG_DEBUG)
				log_max_level = log_max_level < LOG_INFO ? LOG_INFO : LOG_DEBUG;
			break;
		case 'V':
			printf("erofs-nbd %s\n", EROFS_NBD_VERSION);
			return 0;
		case 'h':
			usage();
			return 0;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			if (optopt && optopt < 256)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!!o->export_dir + !!o->lowerdir + !!o->image != 1)
		return usage_error("give exactly one of --export DIR, --lowerdir TOP:...:BOTTOM "
				   "and --image NAME");
	if (o->upperdir && !o->lowerdir)
		return usage_error("--upperdir goes with --lowerdir");
	if (o->storage_root && !o->image)
		return usage_error("--storage-root goes with --image");
	if (o->aufs_whiteouts && !o->lowerdir)
		return usage_error("--aufs-whiteouts goes with --lowerdir (--image "
				   "reads it from the store)");
	if (o->userxattr && o->export_dir)
		return usage_error("--userxattr goes with --lowerdir or --image");
	if (o->image_export && !o->write_image)
		return usage_error("--image-export goes with --write-image");
	if (o->esp == ESP_NO && (o->kernel || o->initrd || o->kver || o->efi_loader ||
				 o->cmdline))
		return usage_error("--esp no takes no --kernel, --initrd, --kver, "
				   "--efi-loader or --cmdline");
	if (o->write_image && (o->run_cmd || o->nlistens))
		return usage_error("--write-image does not serve: it takes no --run, "
				   "--unix, --tcp or --vsock");
	r = parse_identity(o);
	if (r >= 0)
		return r;
	/* The parent we watch is the one that started us, not init. */
	if (o->exit_with_parent)
		o->foreground = true;
	r = absolute_options(o);
	if (r < 0) {
		log_errno(r, "making paths absolute");
		return 1;
	}

	/* reproducible-builds.org: a malformed value must fail the build. */
	sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde) {
		if (opt_parse_epoch(sde, &o->build_time) < 0)
			return usage_error("SOURCE_DATE_EPOCH='%s': expected seconds since "
					   "1970-01-01 00:00 UTC", sde);
		o->build_time_set = true;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* Building the image                                                  */
/* ------------------------------------------------------------------ */

static void walk_warn(void *userdata, const char *path, int err, const char *what)
{
	log_warning("skipping '%s': %s: %s", path, what ? what : "reading",
		    strerror(err < 0 ? -err : err));
}

/*
 * Logs "'path': what: reason" for a builder error, with path the entry to
 * blame, or else "source: what: reason" (source is p->source_name, quoted
 * already); what is the failing step if known.  Returns err.
 */
static int log_build_error(int err, const char *source, const char *errpath,
			   const char *what)
{
	if (errpath && *errpath)
		return what ? log_errno(err, "'%s': %s", errpath, what) :
			      log_errno(err, "'%s'", errpath);
	return what ? log_errno(err, "%s: %s", source, what) : log_errno(err, "%s", source);
}

/* How long --image waits for a podman pull or build to release the store. */
#define STORE_LOCK_TIMEOUT_MS 10000

/* path made absolute if it can be, with '\\' and ':' escaped as lowerdir=
 * needs them; malloc'ed, NULL when out of memory. */
static char *lowerdir_escape(const char *path)
{
	_cleanup_free_ char *real = realpath(path, NULL);
	const char *s = real ? real : path;
	char *out = malloc(2 * strlen(s) + 1), *d = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ':' || *s == '\\')
			*d++ = '\\';
		*d++ = *s;
	}
	*d = '\0';
	return out;
}

/*
 * Sets p->source_name (for messages) and, except for --image, whose
 * description needs the store, p->source_desc (for the export
 * descriptions NBD_OPT_LIST shows).  Logs its errors.
 */
static int describe_source(const struct options *o, struct program *p)
{
	_cleanup_free_ char *upper = NULL, *real = NULL;
	char **dirs = NULL;
	int n, r = 0;

	if (o->export_dir) {
		real = realpath(o->export_dir, NULL);
		if (asprintf(&p->source_name, "'%s'", o->export_dir) < 0 ||
		    !(p->source_desc = strdup(real ? real : o->export_dir)))
			r = -ENOMEM;
	} else if (o->image) {
		if (asprintf(&p->source_name, "--image '%s'", o->image) < 0)
			r = -ENOMEM;
	} else {
		/* The stack, absolute, in the syntax it was given in. */
		n = storage_parse_lowerdir(o->lowerdir, &dirs);
		if (n == -ENOMEM)
			return log_errno(n, "--lowerdir");
		if (n == -E2BIG)
			return log_errno(n, "--lowerdir '%.64s...': more than %d layers "
					 "(overlayfs's limit too)", o->lowerdir, WALK_MAX_LAYERS);
		if (n < 0)
			return log_errno(n, "--lowerdir '%s': %s", o->lowerdir, n == -EOPNOTSUPP ?
					 "data-only layers (\"::\") are not supported" :
					 "expected TOP:...:BOTTOM, non-empty layers, "
					 "\\: for a colon in a name");
		if (asprintf(&p->source_name, "--lowerdir '%s'", o->lowerdir) < 0)
			r = -ENOMEM;
		p->source_desc = strdup("overlay lowerdir=");
		for (int i = 0; r == 0 && p->source_desc && i < n; i++) {
			_cleanup_free_ char *e = lowerdir_escape(dirs[i]);
			char *d = NULL;

			if (!e || asprintf(&d, "%s%s%s", p->source_desc, i ? ":" : "", e) < 0)
				r = -ENOMEM;
			free(p->source_desc);
			p->source_desc = d;
		}
		storage_strv_free(dirs, n);
		if (r == 0 && p->source_desc && o->upperdir) {
			char *d = NULL;

			real = realpath(o->upperdir, NULL);
			if (asprintf(&d, "%s,upperdir=%s", p->source_desc,
				     real ? real : o->upperdir) < 0)
				r = -ENOMEM;
			free(p->source_desc);
			p->source_desc = d;
		}
		if (!p->source_desc)
			r = -ENOMEM;
	}
	if (r < 0)
		return log_errno(r, "starting");
	return 0;
}

/*
 * walk_layers() with the soft RLIMIT_NOFILE raised to the hard one for
 * the walk: it keeps a directory fd per layer per level it is in (500
 * layers sharing a few directories need more than the usual 1024), then
 * the limit is put back (--run's command inherits it), but never below
 * what the layers' root fds, kept for reopening files, and the start-up's
 * own files need (a soft limit of 300 under 500 layers left iconv no fd
 * for its modules).
 */
static int walk_layers_nofile(const struct walk_stack *st, const struct walk_opts *wo,
			      struct walk_tree **ret_tree, char **ret_errpath,
			      const char **ret_what)
{
	struct rlimit old, raised;
	bool changed = false;
	int r;

	if (getrlimit(RLIMIT_NOFILE, &old) == 0 && old.rlim_cur < old.rlim_max) {
		raised = (struct rlimit){ .rlim_cur = old.rlim_max, .rlim_max = old.rlim_max };
		changed = setrlimit(RLIMIT_NOFILE, &raised) == 0;
	}
	r = walk_layers(st, wo, ret_tree, ret_errpath, ret_what);
	if (changed) {
		rlim_t need = (rlim_t)st->nlayers + 64;

		if (old.rlim_cur < need)
			old.rlim_cur = need < old.rlim_max ? need : old.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &old);
	}
	return r;
}

/* --lowerdir [--upperdir]: merges the stack into p->tree.  Logs its errors. */
static int walk_lowerdir(const struct options *o, struct program *p,
			 const struct walk_opts *wo)
{
	_cleanup_free_ const char **layers = NULL;
	struct walk_stack st = {
		.ns = o->userxattr ? WALK_OVL_USER : storage_default_ns(),
		.aufs_whiteouts = o->aufs_whiteouts,
	};
	char **dirs = NULL, *errpath = NULL;
	const char *what = NULL;
	size_t k = 0;
	int n, r;

	n = storage_parse_lowerdir(o->lowerdir, &dirs);
	if (n < 0)
		return log_errno(n, "--lowerdir");	/* describe_source() parsed it */
	layers = calloc(n + 1, sizeof(*layers));
	if (!layers) {
		storage_strv_free(dirs, n);
		return log_errno(-ENOMEM, "--lowerdir");
	}
	if (o->upperdir)
		layers[k++] = o->upperdir;
	for (int i = 0; i < n; i++)
		layers[k++] = dirs[i];
	st.layers = layers;
	st.nlayers = k;	/* at most WALK_MAX_LAYERS lowers (storage_parse_lowerdir()) */
	log_info("%s: %zu layers, overlay marks in %s.overlay.*%s", p->source_name,
		 st.nlayers, st.ns == WALK_OVL_USER ? "user" : "trusted",
		 st.aufs_whiteouts ? ", AUFS whiteouts" : "");
	r = walk_layers_nofile(&st, wo, &p->tree, &errpath, &what);
	if (r < 0)
		log_build_error(r, p->source_name, errpath, what);
	free(errpath);
	storage_strv_free(dirs, n);
	return r;
}

/* --image: finds the image in the store and merges its layers into
 * p->tree, under the store's locks.  Logs its errors. */
static int walk_image(const struct options *o, struct program *p,
		      const struct walk_opts *wo)
{
	struct storage_opts so = {
		.storage_root = o->storage_root,
		.lock_timeout_ms = STORE_LOCK_TIMEOUT_MS,
	};
	struct storage_image img;
	const struct storage_chain *c = &img.chain;
	char *err = NULL, *errpath = NULL;
	const char *what = NULL;
	int r;

	r = storage_find_image(o->image, &so, &img, &err);
	if (r < 0) {
		/* The message says what failed and why. */
		log_error("--image '%s': %s", o->image, err ? err : strerror(-r));
		free(err);
		return r;
	}
	r = asprintf(&p->source_desc, "image %s (ID %.12s, %zu layer%s, %s store %s)",
		     c->image_name ? c->image_name : o->image, c->image_id, c->nlayers,
		     c->nlayers == 1 ? "" : "s", img.driver, img.graphroot);
	if (r < 0) {
		p->source_desc = NULL;
		storage_image_free(&img);
		return log_errno(-ENOMEM, "--image");
	}
	log_info("--image '%s': %s; storage.conf %s%s%s", o->image, p->source_desc,
		 img.conf_path ? img.conf_path : "(none)",
		 img.aufs_whiteouts ? ", AUFS whiteouts (mount program)" : "",
		 img.override_stat ? ", force_mask" : "");
	if (!strcmp(img.driver, "vfs")) {
		r = walk_tree(img.layer_dirs[0], wo, &p->tree, &errpath, &what);
	} else {
		struct walk_stack st = {
			.layers = (const char *const *)img.layer_dirs,
			.nlayers = img.nlayer_dirs,
			.ns = o->userxattr ? WALK_OVL_USER : img.ns,
			.aufs_whiteouts = img.aufs_whiteouts,
			.override_stat = img.override_stat,
		};
		r = walk_layers_nofile(&st, wo, &p->tree, &errpath, &what);
	}
	if (r < 0)
		log_build_error(r, p->source_name, errpath, what);
	free(errpath);
	/* The walk is done: podman may change the store again. */
	storage_image_free(&img);
	return r;
}

/* The EROFS superblock's UUID (erofs-format.md: superblock at byte 1024, uuid at 0x30). */
#define EROFS_UUID_OFFSET (1024 + 0x30)
/* Partitions start and end on 1 MiB boundaries (fat32-gpt.md B.7). */
#define PART_ALIGN (1024 * 1024)

/* The root partition type when neither --arch nor a kernel says. */
#if defined(__aarch64__)
#define HOST_ARCH ESP_ARCH_AARCH64
#else
#define HOST_ARCH ESP_ARCH_X86_64
#endif

/*
 * Builds the bootable disk around p->map (the EROFS): the EFI System
 * Partition (fat/esp.h) into p->esp_map when the tree has a kernel and a
 * boot loader (--esp: an error if not when required, never when no),
 * then the GPT disk (gpt/gpt.h) into p->disk_map.  The
 * GUIDs and the FAT serial are derived from the EROFS superblock's UUID,
 * a digest of the tree, so the same tree gives the same disk.  Prints
 * the root PARTUUID on stderr.  Logs its errors.
 */
static int build_disk(const struct options *o, struct program *p)
{
	/* Options that ask for an ESP: then a missing piece is an error. */
	bool asked = o->esp == ESP_REQUIRED || o->kernel || o->initrd || o->kver ||
		     o->efi_loader;
	struct gpt_guid disk_guid, esp_guid, root_guid, serial;
	struct esp_result er = { 0 };
	struct gpt_partition parts[2];
	uint64_t first_lba[2];
	enum esp_arch arch = o->arch;
	char root_uuid[37], *what = NULL;
	uint8_t seed[16];
	size_t n = 0;
	int r;

	region_map_init(&p->esp_map);
	region_map_init(&p->root_part);
	region_map_init(&p->disk_map);
	p->disk_init = true;

	r = region_map_pread(&p->map, seed, sizeof(seed), EROFS_UUID_OFFSET);
	if (r < 0)
		return log_errno(r, "reading the EROFS UUID");
	gpt_guid_derive(seed, sizeof(seed), "disk", &disk_guid);
	gpt_guid_derive(seed, sizeof(seed), "esp", &esp_guid);
	gpt_guid_derive(seed, sizeof(seed), "root", &root_guid);
	gpt_guid_derive(seed, sizeof(seed), "esp-serial", &serial);
	gpt_guid_format(&root_guid, root_uuid);

	struct esp_opts eo = {
		.arch = o->arch,
		.efi_loader = o->efi_loader,
		.kernel = o->kernel,
		.initrd = o->initrd,
		.kver = o->kver,
		.root_partuuid = root_uuid,
		.cmdline = o->cmdline,
		.volume_id = (uint32_t)serial.b[0] | (uint32_t)serial.b[1] << 8 |
			     (uint32_t)serial.b[2] << 16 | (uint32_t)serial.b[3] << 24,
	};
	if (o->esp == ESP_NO)
		r = -ENOENT;	/* none, as asked: no warning either */
	else
		r = esp_build(p->tree, &eo, &p->esp_map, &er, &what);
	if (r == -ENOENT && !asked) {
		if (o->esp != ESP_NO)
			log_warning("%s: %s: the disk has no EFI System Partition",
				    p->source_name, what ? what : "no kernel");
		region_map_free(&p->esp_map);
		region_map_init(&p->esp_map);
	} else if (r < 0) {
		log_error("%s: building the EFI System Partition: %s", p->source_name,
			  what ? what : strerror(-r));
		free(what);
		return r;
	} else {
		p->has_esp = true;
		arch = er.arch;
		/* fat_build() sizes the volume in whole MiB: normally a no-op. */
		r = region_pad_to(&p->esp_map, EXPORT_ALIGN);
		if (r < 0) {
			esp_result_free(&er);
			return log_errno(r, "building the EFI System Partition");
		}
		log_info("export 'esp': %" PRIu64 " bytes, kernel %s for %s, command "
			 "line '%s'", p->esp_map.size, er.kver,
			 arch == ESP_ARCH_AARCH64 ? "aarch64" : "x86_64", er.cmdline);
		parts[n++] = (struct gpt_partition){
			.map = &p->esp_map,
			.type = gpt_type_esp,
			.guid = esp_guid,
			.name = "ESP",
		};
	}
	free(what);
	esp_result_free(&er);

	if (arch == ESP_ARCH_AUTO)
		arch = HOST_ARCH;
	/*
	 * Partitions end on 1 MiB boundaries too (sgdisk cautions otherwise),
	 * without changing the size of the export "root".
	 */
	r = region_add_map(&p->root_part, &p->map, 0, p->map.size);
	if (r == 0)
		r = region_pad_to(&p->root_part, PART_ALIGN);
	if (r < 0)
		return log_errno(r, "building the GPT disk");
	parts[n++] = (struct gpt_partition){
		.map = &p->root_part,
		.type = arch == ESP_ARCH_AARCH64 ? gpt_type_root_aarch64 :
						   gpt_type_root_x86_64,
		.guid = root_guid,
		.attrs = GPT_ATTR_READ_ONLY,
		.name = "root",
	};
	r = gpt_build(parts, n, &disk_guid, &p->disk_map, first_lba);
	if (r == -ENOTSUP)
		return log_errno(r, "building the GPT disk: iconv cannot convert "
				 "UTF-8 to UTF-16LE (glibc's gconv modules missing?)");
	if (r < 0)
		return log_errno(r, "building the GPT disk");
	/* Shown by default: it goes on the kernel command line of other setups. */
	fprintf(stderr, "erofs-nbd: root PARTUUID=%s\n", root_uuid);
	if (p->has_esp)
		log_info("export 'disk': %" PRIu64 " bytes; EFI System Partition at byte %"
			 PRIu64 ", root partition at byte %" PRIu64, p->disk_map.size,
			 first_lba[0] * 512, first_lba[1] * 512);
	else
		log_info("export 'disk': %" PRIu64 " bytes; root partition at byte %" PRIu64
			 ", no EFI System Partition", p->disk_map.size, first_lba[0] * 512);

	r = asprintf(&p->disk_description, "GPT disk: %sEROFS root of %s",
		     p->has_esp ? "EFI System Partition + " : "", p->source_desc);
	if (r < 0)
		p->disk_description = NULL;
	if (r >= 0 && p->has_esp)
		r = asprintf(&p->esp_description, "EFI System Partition (FAT32) for %s",
			     p->source_desc);
	if (r < 0) {
		p->esp_description = NULL;	/* asprintf() leaves it undefined */
		return log_errno(-ENOMEM, "building the disk");
	}
	return 0;
}

/*
 * Logs at level how long start-up took so far, wall clock and CPU of every
 * thread (getrusage(), exited walkers included), once step is done: where
 * the time goes (bench/README.md).
 */
static void log_step_at(int level, const char *step)
{
	static struct timespec t0;
	struct timespec now;
	struct rusage ru;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!t0.tv_sec && !t0.tv_nsec) {
		t0 = now;
		return;
	}
	if (level > log_max_level || getrusage(RUSAGE_SELF, &ru) < 0)
		return;
	log_msg(level, "%s: %.3f s since the walk began, %.3f s of CPU in all", step,
		  (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9,
		  (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		  (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
}

/* log_step_at() for the steps -vv shows. */
static void log_step(const char *step)
{
	log_step_at(LOG_DEBUG, step);
}

/* Walks the tree and lays the image out in p->map.  Logs its errors. */
static int build_export(const struct options *o, struct program *p)
{
	struct erofs_opts eo;
	struct walk_opts wo;
	char *errpath = NULL;
	const char *what = NULL;
	int r;

	erofs_opts_default(&eo);
	eo.blkszbits = o->blkszbits;
	eo.build_time_set = o->build_time_set;
	eo.build_time = o->build_time;
	eo.volume_name = o->label;
	eo.inline_file_tails = !o->no_inline_data;

	wo = (struct walk_opts){
		.cross_mounts = o->cross_mounts,
		.skip_unreadable = o->skip_unreadable,
		.progress = isatty(STDERR_FILENO) == 1,
		.warn = walk_warn,
		.check = erofs_check_entry,
		.userdata = &eo,
	};
	log_step("start");
	if (o->image)
		r = walk_image(o, p, &wo);
	else if (o->lowerdir)
		r = walk_lowerdir(o, p, &wo);
	else {
		r = walk_tree(o->export_dir, &wo, &p->tree, &errpath, &what);
		if (r < 0)
			log_build_error(r, p->source_name, errpath, what);
		free(errpath);
	}
	if (r < 0)
		return r;

	log_step("walk");
	region_map_init(&p->map);
	p->map_init = true;
	errpath = NULL;
	what = NULL;
	r = erofs_build(p->tree, &eo, &p->map, &errpath, &what);
	if (r < 0) {
		log_build_error(r, p->source_name, errpath,
				what ? what : "building the EROFS image");
		free(errpath);
		return r;
	}
	r = region_pad_to(&p->map, EXPORT_ALIGN);
	if (r < 0)
		return log_errno(r, "building the EROFS image");

	uint64_t meta = 0;
	for (size_t i = 0; i < p->map.nregions; i++)
		if (p->map.regions[i].type == REGION_MEM)
			meta += p->map.regions[i].len;
	log_info("export '%s': %" PRIu64 " bytes (%" PRIu64 " KiB), %zu inodes, "
		 "%zu files with data, %zu regions, %" PRIu64 " metadata bytes",
		 EXPORT_NAME, p->map.size, p->map.size >> 10, p->tree->ninodes,
		 p->map.nsources, p->map.nregions, meta);
	log_step("EROFS layout");
	r = build_disk(o, p);
	if (r < 0)
		return r;
	/*
	 * Laid out: serving needs the sources walk_region_source() made,
	 * no more.  The model and the layout's scratch go back to the kernel.
	 */
	walk_tree_release_model(p->tree);
	malloc_trim(0);
	log_step("disk");
	return 0;
}

/*
 * The first source of map or of its sub-maps that fails to open, in
 * *ret_src, and the error; 0 if every one opens.
 */
static int failing_source(const struct region_map *map,
			  const struct region_source **ret_src)
{
	for (size_t i = 0; i < map->nsources; i++) {
		const struct region_source *src = &map->sources[i];
		int fd = src->open(src, 0);
		if (fd < 0) {
			*ret_src = src;
			return fd;
		}
		close(fd);
	}
	for (size_t i = 0; i < map->nsubs; i++) {
		int r = failing_source(map->subs[i], ret_src);
		if (r < 0)
			return r;
	}
	return 0;
}

/* --write-image: writes the whole map to path.  Logs its errors. */
static int write_image(const struct region_map *map, const char *path)
{
	int fd, r;

	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		return log_errno(-errno, "opening '%s'", path);
	r = region_map_write(map, fd);
	if (r < 0) {
		struct stat st;

		/*
		 * No partial image left behind, as a compiler does; but only a
		 * regular file: never unlink a device such as /dev/null.
		 */
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
			unlink(path);
		close(fd);
		/*
		 * The error may come from a source file (unreadable, changed
		 * since the walk); region_map_write() does not say which, so
		 * find the first that fails to open and name it.
		 */
		const struct region_source *src = NULL;
		int err = failing_source(map, &src);
		char name[PATH_MAX];
		if (err < 0)
			return log_errno(err, "writing '%s': '%s'", path,
					 region_source_path(src, name, sizeof(name)));
		return log_errno(r, "writing '%s'", path);
	}
	if (close(fd) < 0)
		return log_errno(-errno, "writing '%s'", path);
	log_info("wrote %" PRIu64 " bytes to '%s'", map->size, path);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Listening                                                           */
/* ------------------------------------------------------------------ */

static int open_listener(struct program *p, const struct listen_arg *a)
{
	struct listener *l = &p->listeners[p->nlisteners];
	int r, gai = 0;

	if (a->is_unix) {
		r = listen_unix(a->arg, l);
		if (r == -EEXIST)
			log_error("--unix '%s': exists and is not a socket, refusing to "
				  "replace it", a->arg);
		else if (r == -EADDRINUSE)
			log_error("--unix '%s': a server is already listening there", a->arg);
		else if (r < 0)
			log_errno(r, "--unix '%s'", a->arg);
	} else if (a->is_vsock) {
		r = listen_vsock(a->vsock_port, l);
		if (r < 0)
			log_errno(r, "--vsock '%s'", a->arg);
	} else {
		r = listen_tcp(a->host, a->port, l, &gai);
		if (r < 0 && gai && gai != EAI_SYSTEM)
			log_error("--tcp '%s': %s", a->arg, gai_strerror(gai));
		else if (r < 0)
			log_errno(r, "--tcp '%s'", a->arg);
	}
	if (r < 0)
		return r;
	p->nlisteners++;
	return 0;
}

/* Adopts the sockets passed by socket activation (sd_listen_fds(3)). */
static int adopt_listeners(struct program *p)
{
	for (unsigned int i = 0; i < p->nactivated; i++) {
		int fd = ACTIVATION_FDS_START + (int)i;
		char name[64];
		int r;

		activation_fd_name(p->activated_names, i, name, sizeof(name));
		r = listen_adopt(fd, &p->listeners[p->nlisteners]);
		if (r < 0)
			return log_errno(r, "socket activation: fd %d ('%s')", fd, name);
		log_debug("socket activation: fd %d ('%s')", fd, name);
		p->nlisteners++;
	}
	return 0;
}

/*
 * Opens every listener after the activated ones, or, when there is none
 * at all, the default one in a private directory.
 */
static int open_listeners(const struct options *o, struct program *p)
{
	size_t n = p->nactivated + o->nlistens ? p->nactivated + o->nlistens : 1;
	int r;

	p->listeners = calloc(n, sizeof(*p->listeners));
	if (!p->listeners)
		return log_errno(-ENOMEM, "listening");
	r = adopt_listeners(p);
	if (r < 0)
		return r;
	if (o->nlistens == 0 && p->nactivated == 0) {
		_cleanup_free_ char *sock = NULL;
		struct listen_arg a = { .is_unix = true };

		r = listen_runtime_dir(&p->runtime_dir);
		if (r < 0)
			return log_errno(r, "creating a runtime directory in '%s'",
					 listen_runtime_base());
		if (asprintf(&sock, "%s/nbd.sock", p->runtime_dir) < 0)
			return log_errno(-ENOMEM, "listening");
		a.arg = sock;
		return open_listener(p, &a);
	}
	for (size_t i = 0; i < o->nlistens; i++) {
		r = open_listener(p, &o->listens[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Running                                                             */
/* ------------------------------------------------------------------ */

/*
 * nbdkit's daemon mode: detach from the terminal and the session.  The
 * parent waits until the child is ready to serve (daemon_ready(): the pid
 * file written, privileges dropped), then prints uri and exits 0; if the
 * child fails first, its error is on the terminal still and the parent
 * exits 1.  In the child, returns the fd to pass to daemon_ready(), or
 * -errno (logged).
 */
static int daemonize(const char *uri)
{
	int pipefd[2];
	pid_t pid;
	char c;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return log_errno(-errno, "pipe");
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return log_errno(-errno, "fork");
	if (pid > 0) {
		/* The child owns the sockets now: no cleanup here. */
		ssize_t n;

		close(pipefd[1]);
		while ((n = read(pipefd[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			_exit(EXIT_FAILURE);
		printf("%s\n", uri);
		_exit(fflush(stdout) == EOF ? EXIT_FAILURE : EXIT_SUCCESS);
	}
	close(pipefd[0]);
	if (setsid() < 0)
		return log_errno(-errno, "setsid");
	if (chdir("/") < 0)
		return log_errno(-errno, "chdir '/'");
	return pipefd[1];
}

/* The child of daemonize() is ready: stdio to /dev/null, the parent told. */
static int daemon_ready(int ready_fd)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return log_errno(-errno, "opening '/dev/null'");
	for (int i = 0; i < 3; i++)
		if (dup2(fd, i) < 0)
			return log_errno(-errno, "redirecting stdio");
	if (fd > 2)
		close(fd);
	if (write(ready_fd, "", 1) != 1)
		log_debug("telling the parent: %m (gone?), serving anyway");
	close(ready_fd);
	return 0;
}

/*
 * --run: sets $uri, $unixsocket and $port as nbdkit does and starts CMD
 * with /bin/sh -c, its signal mask and dispositions back to normal.
 */
static int start_command(const struct options *o, struct program *p)
{
	char *argv[] = { "sh", "-c", (char *)o->run_cmd, NULL };
	posix_spawnattr_t attr;
	sigset_t none, deflt;
	bool unix_set = false, port_set = false;
	char port[8];
	int r;

	/* Ours, not whatever the caller's environment held (nbdkit's too). */
	if (setenv("uri", p->uri, 1) < 0 || unsetenv("unixsocket") < 0 ||
	    unsetenv("port") < 0)
		return log_errno(-errno, "setenv");
	for (size_t i = 0; i < p->nlisteners; i++) {
		const struct listener *l = &p->listeners[i];
		if (l->family == AF_UNIX && !unix_set) {
			if (setenv("unixsocket", l->path, 1) < 0)
				return log_errno(-errno, "setenv");
			unix_set = true;
		} else if ((l->family == AF_INET || l->family == AF_INET6) && !port_set) {
			const struct sockaddr_in *sin = (const void *)&l->addr;
			const struct sockaddr_in6 *sin6 = (const void *)&l->addr;
			snprintf(port, sizeof(port), "%u", ntohs(l->family == AF_INET ?
							    sin->sin_port : sin6->sin6_port));
			if (setenv("port", port, 1) < 0)
				return log_errno(-errno, "setenv");
			port_set = true;
		}
	}

	sigemptyset(&none);
	sigemptyset(&deflt);
	sigaddset(&deflt, SIGINT);
	sigaddset(&deflt, SIGTERM);
	sigaddset(&deflt, SIGCHLD);
	sigaddset(&deflt, SIGPIPE);
	sigaddset(&deflt, SIGUSR1);
	r = posix_spawnattr_init(&attr);
	if (r)
		return log_errno(-r, "--run");
	r = posix_spawnattr_setsigmask(&attr, &none);
	if (!r)
		r = posix_spawnattr_setsigdefault(&attr, &deflt);
	if (!r)
		r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
					     POSIX_SPAWN_SETSIGDEF);
	if (!r)
		r = posix_spawn(&p->run_pid, "/bin/sh", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	if (r) {
		p->run_pid = 0;
		return log_errno(-r, "--run: starting /bin/sh");
	}
	log_debug("--run: started '%s' as pid %d", o->run_cmd, (int)p->run_pid);
	return 0;
}

/*
 * Bytes of heap in use: what malloc has handed out and not got back
 * (mallinfo2's uordblks + hblkhd), or, in a sanitizer build, what the
 * sanitizer's allocator has (freed chunks in its quarantine and its own
 * bookkeeping are not counted).  Caches of the allocator and the C
 * library's cached thread stacks are not in it either, which is why it,
 * not RSS, shows whether memory stays behind once clients have gone.
 */
static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
#endif
}

/*
 * Waits for SIGUSR1 (blocked in every thread) and logs, at LOG_NOTICE, the
 * heap in use, as "heap in use: N bytes".  Runs until the process exits.
 */
static void *report_thread(void *arg)
{
	const sigset_t *set = arg;
	int sig;

	for (;;)
		if (sigwait(set, &sig) == 0)
			log_notice("heap in use: %zu bytes", heap_in_use());
	return NULL;
}

/* Starts report_thread; a failure costs only the report, so it is logged. */
static void start_report_thread(void)
{
	static sigset_t usr1;
	pthread_attr_t attr;
	pthread_t tid;
	int r;

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 << 10);
	r = pthread_create(&tid, &attr, report_thread, &usr1);
	pthread_attr_destroy(&attr);
	if (r)
		log_warning("starting the SIGUSR1 report thread: %s, ignoring", strerror(r));
}

/* Reads every pending signal; returns the last SIGINT/SIGTERM or 0. */
static int drain_signals(int sigfd, bool *ret_child)
{
	struct signalfd_siginfo si;
	int stop_sig = 0;

	while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			*ret_child = true;
		else
			stop_sig = (int)si.ssi_signo;
	}
	return stop_sig;
}

/* Waits for the --run command; returns the exit status it maps to. */
static int wait_command(pid_t pid)
{
	int ws;

	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR) {
			log_errno(-errno, "--run: waiting for the command");
			return 1;
		}
	}
	if (WIFEXITED(ws))
		return WEXITSTATUS(ws);
	if (WIFSIGNALED(ws))
		return 128 + WTERMSIG(ws);
	return 1;
}

/* Serves until a signal (or the --run command) says stop. */
static int serve(const struct options *o, struct program *p)
{
	/* The disk first: "" selects it, and NBD_OPT_LIST shows it first. */
	struct srv_export exp[3] = {
		{ .name = "disk", .description = p->disk_description, .map = &p->disk_map },
		{ .name = EXPORT_NAME, .description = p->description, .map = &p->map },
		{ .name = "esp", .description = p->esp_description, .map = &p->esp_map },
	};
	_cleanup_free_ int *fds = calloc(p->nlisteners, sizeof(*fds));
	struct srv_config cfg = {
		.exports = exp,
		.nexports = p->has_esp ? 3 : 2,
		.default_export = "disk",
		.listen_fds = fds,
		.nlisten = p->nlisteners,
		.stop_fd = p->sigfd,
		.use_io_uring = o->use_io_uring,
		.immutable_sources = o->immutable_sources,
		.handshake_timeout_sec = o->handshake_timeout_sec,
	};
	int r;

	if (!fds)
		return log_errno(-ENOMEM, "serving");
	for (size_t i = 0; i < p->nlisteners; i++)
		fds[i] = p->listeners[i].fd;
	if (cfg.use_io_uring) {
		r = srv_uring_probe();
		if (r < 0) {
			log_info("io_uring is not available (%s): using the plain loop",
				 strerror(-r));
			cfg.use_io_uring = false;
		}
	}
	log_info("serving with %s", cfg.use_io_uring ? "io_uring" : "the plain loop");
	r = srv_run(&cfg);
	if (cfg.use_io_uring && (r == -ENOSYS || r == -EPERM)) {
		log_info("io_uring failed (%s): using the plain loop", strerror(-r));
		cfg.use_io_uring = false;
		r = srv_run(&cfg);
	}
	if (r < 0)
		return log_errno(r, "serving");
	return 0;
}

/*
 * Takes what the service manager passed (NOTIFY_SOCKET, LISTEN_FDS) out
 * of the environment, so that no child sees it, and arms
 * --exit-with-parent.  Logs its errors.
 */
static int take_environment(struct options *o, struct program *p)
{
	int r;

	r = notify_open(&p->notify);
	if (r < 0)
		log_warning("NOTIFY_SOCKET: %s, ignoring", strerror(-r));
	r = activation_take(&p->nactivated, &p->activated_names);
	if (r < 0)
		return log_errno(r, "socket activation (LISTEN_FDS)");
	/* The manager waits for us (Type=notify) and owns the sockets. */
	if (p->nactivated)
		o->foreground = true;
	if (o->exit_with_parent) {
		p->parent = getppid();
		r = parent_death_arm(p->parent);
		if (r == -ESRCH)
			return log_errno(r, "--exit-with-parent: the parent exited");
		if (r < 0)
			return log_errno(r, "--exit-with-parent");
	}
	return 0;
}

/*
 * Once listening, before serving: writes the pid file, gives up every
 * privilege but CAP_DAC_READ_SEARCH (and switches user), then tells the
 * service manager we are ready.  Logs its errors.
 */
static int go_ready(const struct options *o, struct program *p)
{
	_cleanup_free_ char *caps = NULL, *state = NULL, *mainpid = NULL;
	const char *what = NULL;
	int r;

	if (o->pidfile) {
		r = pidfile_write(o->pidfile, getpid());
		if (r < 0)
			return log_errno(r, "--pidfile '%s'", o->pidfile);
		p->pidfile = o->pidfile;
	}
	r = caps_confine(&o->caps, &caps, &what);
	if (r == -EPERM && (o->caps.set_uid || o->caps.set_gid))
		return log_errno(r, "--user/--group: %s (needs root)", what);
	if (r < 0)
		return log_errno(r, "dropping privileges: %s", what);
	walk_creds_changed();	/* --user: another owner for O_NOATIME */
	log_info("capabilities left: %s, uid %d, gid %d, no_new_privs", caps,
		 (int)getuid(), (int)getgid());
	/* A uid or gid change cleared the parent-death signal: set it again. */
	if (o->exit_with_parent) {
		r = parent_death_arm(p->parent);
		if (r < 0)
			return log_errno(r, "--exit-with-parent");
	}
	if (!notify_enabled(&p->notify))
		return 0;
	/*
	 * After daemonize() the process that serves is a new one: say so
	 * (the manager accepts it with NotifyAccess=all; units run -f).
	 */
	if (!o->foreground && asprintf(&state, "MAINPID=%d\n", (int)getpid()) < 0)
		return log_errno(-ENOMEM, "notifying");
	mainpid = TAKE_PTR(state);
	/* The export count as serve() sets it up: disk, root and maybe esp. */
	if (asprintf(&state, "%sREADY=1\nSTATUS=Serving %d exports on %s (capabilities: %s)",
		     mainpid ? mainpid : "", p->has_esp ? 3 : 2, p->uri, caps) < 0)
		return log_errno(-ENOMEM, "notifying");
	r = notify_send(&p->notify, state);
	if (r < 0)
		log_warning("notifying the service manager (READY=1): %s, ignoring",
			    strerror(-r));
	return 0;
}

static void program_free(struct program *p)
{
	for (size_t i = 0; i < p->nlisteners; i++)
		listener_close(&p->listeners[i]);
	free(p->listeners);
	if (p->runtime_dir && rmdir(p->runtime_dir) < 0 && errno != ENOENT)
		log_warning("removing '%s': %s, ignoring", p->runtime_dir, strerror(errno));
	free(p->runtime_dir);
	free(p->uri);
	free(p->description);
	free(p->source_name);
	free(p->source_desc);
	if (p->sigfd >= 0)
		close(p->sigfd);
	if (p->pidfile && unlink(p->pidfile) < 0 && errno != ENOENT)
		log_warning("removing '%s': %s, ignoring", p->pidfile, strerror(errno));
	notify_close(&p->notify);
	free(p->activated_names);
	/*
	 * The disk map shows the ESP and root maps (sub-maps), whose sources
	 * point into the tree: free in that order.
	 */
	if (p->disk_init) {
		region_map_free(&p->disk_map);
		region_map_free(&p->root_part);
		region_map_free(&p->esp_map);
	}
	free(p->disk_description);
	free(p->esp_description);
	if (p->map_init)
		region_map_free(&p->map);
	walk_tree_free(p->tree);
}

int main(int argc, char **argv)
{
	struct options o;
	struct program p = { .sigfd = -1, .notify = { .fd = -1 } };
	sigset_t mask, blocked;
	bool child_exited = false;
	int status = 1, stop_sig = 0, serve_r = -1, ready_fd = -1, r;

	r = parse_options(argc, argv, &o);
	if (r >= 0) {
		options_free(&o);
		return r;
	}

	/* A client that hangs up must not kill us with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);

	if (take_environment(&o, &p) < 0)
		goto out;
	if (describe_source(&o, &p) < 0)
		goto out;
	if (build_export(&o, &p) < 0)
		goto out;
	if (o.write_image) {
		/* --image-export: the disk by default, like the export "". */
		const char *name = o.image_export ? o.image_export : "disk";
		const struct region_map *m = !strcmp(name, "root") ? &p.map :
					     !strcmp(name, "esp") ? &p.esp_map : &p.disk_map;
		if (!strcmp(name, "esp") && !p.has_esp)
			log_error("--image-export esp: the disk has no EFI System Partition");
		else if (write_image(m, o.write_image) == 0)
			status = 0;
		goto out;
	}

	r = asprintf(&p.description, "EROFS root file system of %s", p.source_desc);
	if (r < 0) {
		p.description = NULL;
		log_errno(-ENOMEM, "starting");
		goto out;
	}

	/*
	 * Block the stop signals before the first socket exists, so that no
	 * signal can end us without removing it; every thread the server
	 * starts inherits the mask.
	 */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (o.run_cmd)
		sigaddset(&mask, SIGCHLD);
	/* SIGUSR1 is not in the signalfd: report_thread takes it. */
	blocked = mask;
	sigaddset(&blocked, SIGUSR1);
	r = sigprocmask(SIG_BLOCK, &blocked, NULL);
	if (r < 0) {
		log_errno(-errno, "sigprocmask");
		goto out;
	}

	if (open_listeners(&o, &p) < 0)
		goto out;
	r = listener_uri(&p.listeners[0], "", &p.uri);
	if (r < 0) {
		log_errno(r, "formatting the URI");
		goto out;
	}
	for (size_t i = 0; i < p.nlisteners; i++) {
		_cleanup_free_ char *u = NULL;
		if (listener_uri(&p.listeners[i], "", &u) == 0)
			log_info("listening on %s", u);
	}
	/* -v: the whole start-up's cost, before the URI says it is over. */
	log_step_at(LOG_INFO, "ready");

	/* With --run, CMD gets the URI in $uri instead of on stdout. */
	if (!o.run_cmd && o.foreground) {
		printf("%s\n", p.uri);
		if (fflush(stdout) == EOF)
			log_warning("printing the URI: %s, ignoring", strerror(errno));
	} else if (!o.run_cmd) {
		ready_fd = daemonize(p.uri);	/* the parent prints it */
		if (ready_fd < 0)
			goto out;
	}

	/* After fork(): the signalfd must belong to the process that serves. */
	p.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (p.sigfd < 0) {
		log_errno(-errno, "signalfd");
		goto out;
	}
	if (o.run_cmd && start_command(&o, &p) < 0)
		goto out;
	if (go_ready(&o, &p) < 0)
		goto out;
	if (ready_fd >= 0 && daemon_ready(ready_fd) < 0)
		goto out;
	/* After go_ready(): capabilities are dropped before any thread starts. */
	start_report_thread();

	serve_r = serve(&o, &p);
	(void)notify_send(&p.notify, "STOPPING=1");
	status = serve_r < 0 ? 1 : 0;
	stop_sig = drain_signals(p.sigfd, &child_exited);
	if (stop_sig)
		log_info("stopping on SIG%s", sigabbrev_np(stop_sig));

out:
	if (p.run_pid > 0) {
		/* The server stopped first (signal or error): stop CMD too. */
		if (!child_exited)
			(void)kill(p.run_pid, stop_sig ? stop_sig : SIGTERM);
		status = wait_command(p.run_pid);
		if (serve_r < 0 && status == 0)
			status = 1;
	}
	program_free(&p);
	options_free(&o);
	return status;
}
