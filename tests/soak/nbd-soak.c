/* SPDX-License-Identifier: MIT */
/*
 * nbd-soak - many NBD clients reading at random, every byte checked.
 *
 *   nbd-soak [--conns N] [--depth D] [--seconds S] [--min-len B]
 *            [--max-len B] [--seed X] [--cycles N]
 *            --export URI --ref FILE [--allow-eio FILE] [--export ...]
 *
 * Opens N connections (libnbd, one thread each), spread round-robin over
 * the exports given, and keeps D NBD_CMD_READ requests in flight on each
 * for S seconds: random byte offsets and lengths from --min-len to
 * --max-len, each reply compared byte for byte with the export's
 * reference image (--ref: the server's --write-image of that export).
 *
 * Every reply must be the reference's bytes.  An error is acceptable only
 * where the test says a source file was changed on purpose: --allow-eio
 * names a file of "START END" lines (byte offsets in that export, END
 * exclusive); a request that overlaps one of them may fail with EIO, any
 * other failure is a test failure.  Successful reads are checked even in
 * those ranges: the server must never return a changed file's new bytes.
 *
 * With --cycles N, first runs N connect / handshake / disconnect cycles
 * (nbd_connect_uri, then nbd_shutdown), spread over the connections'
 * threads, each with its own handle.
 *
 * Prints one summary line ("soak: ... reads, ... MiB, ... allowed EIO,
 * 0 failures") and exits 0, or prints each failure (at most 20) and
 * exits 1.  Exit 2: bad usage or set-up.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

struct range {
	uint64_t start, end;	/* bytes, end exclusive */
};

struct export {
	const char *uri;
	const uint8_t *ref;	/* the reference image, mapped */
	uint64_t size;		/* bytes */
	struct range *allow;	/* where EIO is acceptable */
	size_t nallow;
};

struct slot {
	uint8_t *buf;
	uint64_t off;
	size_t len;
	bool busy, done;
	int err;
};

static struct export *exports;
static size_t nexports;
static unsigned nconns = 8, depth = 16, seconds = 10, cycles;
static size_t min_len = 512, max_len = 256 * 1024;
static uint64_t seed = 1;

static atomic_uint_fast64_t total_reads, total_bytes, total_allowed, total_cycles;
static atomic_uint failures;

static void failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failure(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&failures, 1) >= 20)
		return;
	va_start(ap, fmt);
	fputs("soak: FAIL: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool allowed(const struct export *e, uint64_t off, size_t len)
{
	for (size_t i = 0; i < e->nallow; i++)
		if (off < e->allow[i].end && e->allow[i].start < off + len)
			return true;
	return false;
}

static int read_done(void *user_data, int *error)
{
	struct slot *s = user_data;

	s->err = *error;
	s->done = true;
	return 1;	/* retire the command */
}

static struct nbd_handle *connect_one(const struct export *e)
{
	struct nbd_handle *h = nbd_create();

	if (!h) {
		failure("nbd_create: %s", nbd_get_error());
		return NULL;
	}
	if (nbd_connect_uri(h, e->uri) == -1) {
		failure("connecting to %s: %s", e->uri, nbd_get_error());
		nbd_close(h);
		return NULL;
	}
	if ((uint64_t)nbd_get_size(h) != e->size) {
		failure("%s: size %" PRId64 ", the reference has %" PRIu64,
			e->uri, nbd_get_size(h), e->size);
		nbd_close(h);
		return NULL;
	}
	return h;
}

static void check_slot(const struct export *e, struct slot *s)
{
	if (s->err) {
		if (s->err == EIO && allowed(e, s->off, s->len))
			atomic_fetch_add(&total_allowed, 1);
		else
			failure("%s: read of %zu bytes at %" PRIu64 ": %s", e->uri,
				s->len, s->off, strerror(s->err));
		return;
	}
	if (memcmp(s->buf, e->ref + s->off, s->len)) {
		size_t i = 0;

		while (s->buf[i] == e->ref[s->off + i])
			i++;
		failure("%s: read of %zu bytes at %" PRIu64 ": byte %" PRIu64
			" is 0x%02x, the reference has 0x%02x", e->uri, s->len,
			s->off, s->off + i, s->buf[i], e->ref[s->off + i]);
		return;
	}
	atomic_fetch_add(&total_reads, 1);
	atomic_fetch_add(&total_bytes, s->len);
}

struct worker {
	pthread_t tid;
	unsigned idx;
};

static void run_cycles(unsigned idx)
{
	unsigned share = cycles / nconns + (idx < cycles % nconns);

	for (unsigned i = 0; i < share; i++) {
		const struct export *e = &exports[(idx + i) % nexports];
		struct nbd_handle *h = connect_one(e);

		if (!h)
			return;
		if (nbd_shutdown(h, 0) == -1)
			failure("%s: nbd_shutdown: %s", e->uri, nbd_get_error());
		nbd_close(h);
		atomic_fetch_add(&total_cycles, 1);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct export *e = &exports[w->idx % nexports];
	uint64_t rng = seed * 0x9e3779b97f4a7c15ull + w->idx + 1;
	struct slot *slots = calloc(depth, sizeof(*slots));
	struct nbd_handle *h;
	double deadline;

	if (!slots)
		abort();
	if (cycles)
		run_cycles(w->idx);
	h = connect_one(e);
	if (!h)
		goto out;
	for (unsigned i = 0; i < depth; i++) {
		slots[i].buf = malloc(max_len);
		if (!slots[i].buf)
			abort();
	}
	deadline = now() + seconds;
	for (;;) {
		bool stop = now() >= deadline || atomic_load(&failures);
		unsigned busy = 0;

		for (unsigned i = 0; i < depth; i++) {
			struct slot *s = &slots[i];

			if (s->busy && s->done) {
				check_slot(e, s);
				s->busy = s->done = false;
			}
			if (!s->busy && !stop) {
				size_t span = max_len - min_len + 1;

				s->len = min_len + xorshift(&rng) % span;
				if (s->len > e->size)
					s->len = e->size;
				s->off = xorshift(&rng) % (e->size - s->len + 1);
				s->err = 0;
				if (nbd_aio_pread(h, s->buf, s->len, s->off,
						  (nbd_completion_callback){
							  .callback = read_done,
							  .user_data = s },
						  0) == -1) {
					failure("%s: nbd_aio_pread: %s", e->uri,
						nbd_get_error());
					goto close;
				}
				s->busy = true;
			}
			busy += s->busy;
		}
		if (stop && !busy)
			break;
		if (nbd_poll(h, 1000) == -1) {
			failure("%s: nbd_poll: %s", e->uri, nbd_get_error());
			goto close;
		}
	}
	if (nbd_shutdown(h, 0) == -1)
		failure("%s: nbd_shutdown: %s", e->uri, nbd_get_error());
close:
	nbd_close(h);
	for (unsigned i = 0; i < depth; i++)
		free(slots[i].buf);
out:
	free(slots);
	return NULL;
}

static int load_ranges(struct export *e, const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned long long a, b;

	if (!f) {
		fprintf(stderr, "soak: %s: %m\n", path);
		return -1;
	}
	while (fscanf(f, "%llu %llu", &a, &b) == 2) {
		struct range *r = realloc(e->allow, (e->nallow + 1) * sizeof(*r));

		if (!r)
			abort();
		e->allow = r;
		e->allow[e->nallow++] = (struct range){ a, b };
	}
	fclose(f);
	return 0;
}

static int load_ref(struct export *e, const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "soak: %s: %m\n", path);
		return -1;
	}
	e->size = st.st_size;
	e->ref = mmap(NULL, st.st_size ? st.st_size : 1, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (e->ref == MAP_FAILED || !e->size) {
		fprintf(stderr, "soak: %s: cannot map (or empty)\n", path);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: nbd-soak [--conns N] [--depth D] [--seconds S] "
		"[--min-len B] [--max-len B] [--seed X] [--cycles N] "
		"--export URI --ref FILE [--allow-eio FILE] ...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "conns", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "seconds", required_argument, NULL, 's' },
		{ "min-len", required_argument, NULL, 'm' },
		{ "max-len", required_argument, NULL, 'M' },
		{ "seed", required_argument, NULL, 'S' },
		{ "cycles", required_argument, NULL, 'C' },
		{ "export", required_argument, NULL, 'e' },
		{ "ref", required_argument, NULL, 'r' },
		{ "allow-eio", required_argument, NULL, 'a' },
		{ NULL, 0, NULL, 0 },
	};
	struct worker *workers;
	double t0;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': nconns = strtoul(optarg, NULL, 0); break;
		case 'd': depth = strtoul(optarg, NULL, 0); break;
		case 's': seconds = strtoul(optarg, NULL, 0); break;
		case 'm': min_len = strtoull(optarg, NULL, 0); break;
		case 'M': max_len = strtoull(optarg, NULL, 0); break;
		case 'S': seed = strtoull(optarg, NULL, 0); break;
		case 'C': cycles = strtoul(optarg, NULL, 0); break;
		case 'e':
			exports = realloc(exports, (nexports + 1) * sizeof(*exports));
			if (!exports)
				abort();
			exports[nexports++] = (struct export){ .uri = optarg };
			break;
		case 'r':
			if (!nexports || exports[nexports - 1].ref ||
			    load_ref(&exports[nexports - 1], optarg) < 0)
				usage();
			break;
		case 'a':
			if (!nexports || load_ranges(&exports[nexports - 1], optarg) < 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !nexports || !nconns || !depth ||
	    !min_len || min_len > max_len)
		usage();
	for (size_t i = 0; i < nexports; i++)
		if (!exports[i].ref)
			usage();

	workers = calloc(nconns, sizeof(*workers));
	if (!workers)
		abort();
	t0 = now();
	for (unsigned i = 0; i < nconns; i++) {
		workers[i].idx = i;
		if (pthread_create(&workers[i].tid, NULL, worker_main, &workers[i])) {
			fprintf(stderr, "soak: pthread_create failed\n");
			return 2;
		}
	}
	for (unsigned i = 0; i < nconns; i++)
		pthread_join(workers[i].tid, NULL);

	printf("soak: %u connections x %u in flight over %zu exports, %.1f s: "
	       "%" PRIuFAST64 " cycles, %" PRIuFAST64 " reads checked, %.1f MiB, "
	       "%" PRIuFAST64 " allowed EIO, %u failures\n",
	       nconns, depth, nexports, now() - t0, atomic_load(&total_cycles),
	       atomic_load(&total_reads), atomic_load(&total_bytes) / 1048576.0,
	       atomic_load(&total_allowed), atomic_load(&failures));
	return atomic_load(&failures) ? 1 : 0;
}
