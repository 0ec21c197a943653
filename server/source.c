/* SPDX-License-Identifier: MIT */
/*
 * source.c - the cache of open source-file fds, one for the whole tree.
 *
 * Every export's REGION_FILE sources are mapped to one table of distinct
 * sources (the disk export re-registers the root export's sources, and
 * both reach the same files): srv_ctx_init() calls src_cache_init() with
 * every map, which dedups sources by their (open, opaque) pair and gives
 * each export an array from its map's source index to the table's.
 *
 * Sources are opened lazily, through their open() callback (which checks
 * that the file is still the one the layout was computed from), on the
 * first read that needs them, and kept open while there are fds to spare.
 * The budget (max_open) comes from RLIMIT_NOFILE, which srv_run() raises
 * to its hard limit.  Trees often have more files than that, so the cache
 * must stay useful when it is full: a sequential pass over N files with
 * room for C < N is the common case (nbdcopy, a guest's first boot), and
 * LRU, CLOCK or random eviction then miss on (nearly) every file of every
 * pass.  Eviction here only replaces fds idle for longer than a pass
 * (evict_one()), which keeps C / N of a scan hitting.  The clock counts
 * the bytes reads ask for, and a pass is every source's bytes: between two
 * passes' reads of a file no other byte is read twice.  A pass gets a file
 * once per request it spans, and twice when its inline tail sits with the
 * metadata, far from its blocks; a clock of gets let fds look idle for
 * longer than a pass before their reuse (usr-share, 14,200 fds cached for
 * 58,000 files: 65,500 opens a pass, against 54,500 now).
 *
 * An fd with reads in flight is pinned (refs > 0) and never closed under
 * them; when no idle fd can be found, a new fd is used for one read and
 * closed after it.  Thread-safe: one mutex, held for table updates only.
 * A miss takes its slot (or one-shot count) under the lock and opens
 * outside it, so the loops do not queue behind each other's open() and
 * close(), and the fd count still never exceeds the budget.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/internal.h"
#include "server/log.h"

#define NONE UINT32_MAX

/* src_entry.flags */
#define SRC_WARNED	0x1	/* "changed since the walk" logged */
#define SRC_ZC		0x2	/* may be spliced: found immutable or verity by a check */

static uint64_t hash_ptr2(const void *a, const void *b)
{
	uint64_t h = (uint64_t)(uintptr_t)a * 0x9e3779b97f4a7c15ULL;
	h ^= (uint64_t)(uintptr_t)b + 0x632be59bd9b4e019ULL + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

/* Two map sources are the same file when they open the same way. */
static bool same_source(const struct region_source *a, const struct region_source *b)
{
	return a->open == b->open && a->opaque == b->opaque && a->opaque != NULL;
}

int src_cache_init(struct src_cache *sc, const struct region_map *const *maps,
		   size_t nmaps, uint32_t **ret_ids, unsigned int max_open)
{
	size_t total = 0, nbuckets = 1;
	uint32_t *buckets = NULL;
	int r = -ENOMEM;

	memset(sc, 0, sizeof(*sc));
	pthread_mutex_init(&sc->lock, NULL);
	sc->max_open = max_open ? max_open : 1;
	sc->max_once = sc->max_open / 3 ? sc->max_open / 3 : 1;
	sc->rnd = 0x2545f491U;
	for (size_t m = 0; m < nmaps; m++) {
		ret_ids[m] = NULL;
		total += maps[m]->nsources;
	}
	if (total >= UINT32_MAX)
		return -EOVERFLOW;
	if (total == 0)
		return 0;
	while (nbuckets < 2 * total)
		nbuckets <<= 1;
	sc->srcs = calloc(total, sizeof(*sc->srcs));
	buckets = malloc(nbuckets * sizeof(*buckets));
	if (!sc->srcs || !buckets)
		goto fail;
	memset(buckets, 0xff, nbuckets * sizeof(*buckets));

	for (size_t m = 0; m < nmaps; m++) {
		const struct region_map *map = maps[m];
		if (map->nsources == 0)
			continue;
		ret_ids[m] = malloc(map->nsources * sizeof(**ret_ids));
		if (!ret_ids[m])
			goto fail;
		for (size_t i = 0; i < map->nsources; i++) {
			const struct region_source *s = &map->sources[i];
			size_t b = hash_ptr2((const void *)s->open, s->opaque) & (nbuckets - 1);
			while (buckets[b] != NONE && !same_source(sc->srcs[buckets[b]], s))
				b = (b + 1) & (nbuckets - 1);
			if (buckets[b] == NONE) {
				buckets[b] = sc->nsources;
				sc->srcs[sc->nsources++] = s;
				sc->pass_bytes += s->size ? s->size : 1;
			}
			ret_ids[m][i] = buckets[b];
		}
	}
	free(buckets);
	buckets = NULL;

	sc->entries = calloc(sc->nsources, sizeof(*sc->entries));
	if (sc->max_open > sc->nsources)
		sc->max_open = sc->nsources;
	sc->slots = malloc(sc->max_open * sizeof(*sc->slots));
	if (!sc->entries || !sc->slots)
		goto fail;
	for (size_t i = 0; i < sc->nsources; i++) {
		sc->entries[i].fd = -1;
		sc->entries[i].slot = NONE;
	}
	return 0;
fail:
	free(buckets);
	for (size_t m = 0; m < nmaps; m++) {
		free(ret_ids[m]);
		ret_ids[m] = NULL;
	}
	src_cache_free(sc);
	return r;
}

void src_cache_free(struct src_cache *sc)
{
	if (sc->entries)
		for (size_t i = 0; i < sc->nsources; i++)
			if (sc->entries[i].fd >= 0)
				close(sc->entries[i].fd);
	free(sc->entries);
	free(sc->slots);
	free(sc->srcs);
	sc->entries = NULL;
	sc->slots = NULL;
	sc->srcs = NULL;
	sc->nsources = 0;
	pthread_mutex_destroy(&sc->lock);
}

/* Logs that source id changed, once per source; caller holds the lock. */
static void warn_once(struct src_cache *sc, uint32_t id, int err)
{
	struct src_entry *e = &sc->entries[id];
	if (e->flags & SRC_WARNED)
		return;
	__atomic_or_fetch(&e->flags, SRC_WARNED, __ATOMIC_RELAXED);
	char path[PATH_MAX];
	region_source_path(sc->srcs[id], path, sizeof(path));
	if (err == -EIO)
		log_warning("'%s' changed since the walk, reads fail with EIO", path);
	else
		log_errno(err, "reading '%s', reads fail with EIO", path);
}

/* xorshift32: cheap, and good enough to pick eviction candidates. */
static uint32_t next_rand(struct src_cache *sc)
{
	uint32_t x = sc->rnd;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return sc->rnd = x;
}

#define EVICT_SAMPLES 4

/*
 * Closes one idle cached fd and returns its now free slot, or NONE.  The
 * candidate is the least recently used of a few random idle slots; it is
 * taken only if it has not been used for longer than a pass, every
 * source's bytes and an eighth for reads that overtake each other (or
 * always, with force).  A cyclic scan of N > max_open files touches each
 * cached fd once a pass, so the fds cached on its first pass stay and the
 * rest are read through one-shot fds: a hit rate of
 * max_open / N, where LRU, CLOCK or plain random eviction get (almost)
 * none.  Working sets that fit are kept as by any policy, and fds left
 * idle for longer than a pass are replaced.  The evicted fd is returned in
 * *ret_fd, for the caller to close once it dropped the lock.
 */
static uint32_t evict_one(struct src_cache *sc, bool force, int *ret_fd)
{
	uint32_t best = NONE;

	for (unsigned int i = 0; i < EVICT_SAMPLES; i++) {
		uint32_t slot = next_rand(sc) % sc->nopen;
		const struct src_entry *e = &sc->entries[sc->slots[slot]];
		if (e->refs == 0 && (best == NONE ||
		    sc->now - e->last_use > sc->now - sc->entries[sc->slots[best]].last_use))
			best = slot;
	}
	if (best == NONE && force) {
		for (uint32_t slot = 0; slot < sc->nopen; slot++)
			if (sc->entries[sc->slots[slot]].refs == 0) {
				best = slot;
				break;
			}
	}
	if (best == NONE)
		return NONE;
	struct src_entry *e = &sc->entries[sc->slots[best]];
	if (!force && sc->now - e->last_use <= sc->pass_bytes + sc->pass_bytes / 8)
		return NONE;
	*ret_fd = e->fd;
	__atomic_store_n(&e->fd, -1, __ATOMIC_RELAXED);
	e->slot = NONE;
	return best;
}

bool src_cache_zc(struct src_cache *sc, uint32_t id)
{
	return sc->all_stable ||
	       (__atomic_load_n(&sc->entries[id].flags, __ATOMIC_RELAXED) & SRC_ZC);
}

/* Frees a slot evict_one() emptied: the last slot moves into it. */
static void slot_release(struct src_cache *sc, uint32_t slot)
{
	if (slot != --sc->nopen) {
		sc->slots[slot] = sc->slots[sc->nopen];
		sc->entries[sc->slots[slot]].slot = slot;
	}
}

int src_cache_try(struct src_cache *sc, uint32_t id, uint64_t len)
{
	struct src_entry *e;
	int fd = SRC_CACHE_MISS;

	if (id >= sc->nsources)
		return -EINVAL;
	e = &sc->entries[id];
	pthread_mutex_lock(&sc->lock);
	sc->now += len ? len : 1;
	e->last_use = sc->now;
	if (e->fd >= 0) {
		e->refs++;
		fd = e->fd;
	}
	pthread_mutex_unlock(&sc->lock);
	return fd;
}

int src_cache_open(struct src_cache *sc, uint32_t id)
{
	const struct region_source *src;
	struct src_entry *e;
	uint32_t slot = NONE;
	int fd, old_fd = -1;

	if (id >= sc->nsources)
		return -EINVAL;
	src = sc->srcs[id];
	e = &sc->entries[id];

	pthread_mutex_lock(&sc->lock);
	if (e->fd >= 0) {
		/* Opened by another thread since src_cache_try(). */
		e->refs++;
		fd = e->fd;
		pthread_mutex_unlock(&sc->lock);
		return fd;
	}
	/*
	 * Where the new fd goes: a free slot, the slot of an fd idle for
	 * longer than a pass, a one-shot fd, or (all of those taken) the
	 * slot of any idle fd.  Every fd pinned: wait.  A source another
	 * thread is opening right now (slot taken, no fd yet) gets a one-shot
	 * fd, or waits.
	 */
	if (e->slot != NONE)
		;
	else if (sc->nopen < sc->max_open)
		slot = sc->nopen++;
	else
		slot = evict_one(sc, false, &old_fd);
	if (slot == NONE && sc->nonce >= sc->max_once && e->slot == NONE)
		slot = evict_one(sc, true, &old_fd);
	if (slot == NONE && sc->nonce >= sc->max_once) {
		pthread_mutex_unlock(&sc->lock);
		return -EAGAIN;
	}
	/*
	 * The slot (or the one-shot count) is taken before the lock is
	 * dropped, so the fds in use never exceed max_open + max_once: the
	 * evicted fd is closed before the new one is opened.  A taken slot is
	 * pinned (refs) so that no one evicts it meanwhile.
	 */
	if (slot != NONE) {
		sc->slots[slot] = id;
		e->slot = slot;
		e->refs = 1;
	} else {
		sc->nonce++;		/* src_cache_put() closes it */
	}
	pthread_mutex_unlock(&sc->lock);

	/* open() and close() outside the lock: the other loops keep going. */
	if (old_fd >= 0)
		close(old_fd);
	fd = src->open(src, REGION_OPEN_CHECK_AFTER);

	pthread_mutex_lock(&sc->lock);
	if (fd < 0) {
		if (slot != NONE) {
			e->refs = 0;
			e->slot = NONE;
			slot_release(sc, slot);
		} else {
			sc->nonce--;
		}
		/* Out of fds (clients took them): the caller waits. */
		if (!src_cache_busy(fd))
			warn_once(sc, id, fd);
	} else if (slot != NONE) {
		__atomic_store_n(&e->fd, fd, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&sc->lock);
	return fd;
}

int src_cache_get(struct src_cache *sc, uint32_t id, uint64_t len)
{
	int fd = src_cache_try(sc, id, len);

	return fd == SRC_CACHE_MISS ? src_cache_open(sc, id) : fd;
}

void src_cache_limit(struct src_cache *sc, unsigned int fds)
{
	unsigned int keep = fds < 2 ? 1 : fds - fds / 4;
	unsigned int once = fds < 2 ? 1 : fds / 4;

	pthread_mutex_lock(&sc->lock);
	/* Only before the first read: the slots above max_open are empty. */
	if (keep < sc->max_open && sc->nopen <= keep)
		sc->max_open = keep;
	if (once < sc->max_once)
		sc->max_once = once ? once : 1;
	pthread_mutex_unlock(&sc->lock);
}

int src_cache_open_wait(struct src_cache *sc, uint32_t id)
{
	static bool said;
	struct timespec nap = { 0, 10 * 1000 * 1000 };
	int fd;

	for (int waited_ms = 0;; waited_ms += 10) {
		fd = src_cache_open(sc, id);
		if (!src_cache_busy(fd) || waited_ms >= SRV_FD_WAIT_SEC * 1000)
			break;
		if (!__atomic_exchange_n(&said, true, __ATOMIC_RELAXED))
			log_warning("out of file descriptors: reads wait for one"
				    " (raise the open file limit), continuing");
		nanosleep(&nap, NULL);
	}
	if (src_cache_busy(fd)) {
		fd = fd == -EAGAIN ? -EMFILE : fd;	/* what the user should see */
		src_cache_give_up(sc, id, fd);
	}
	return fd;
}

int src_cache_get_wait(struct src_cache *sc, uint32_t id, uint64_t len)
{
	int fd = src_cache_try(sc, id, len);

	return fd == SRC_CACHE_MISS ? src_cache_open_wait(sc, id) : fd;
}

void src_cache_give_up(struct src_cache *sc, uint32_t id, int err)
{
	pthread_mutex_lock(&sc->lock);
	warn_once(sc, id, err);
	pthread_mutex_unlock(&sc->lock);
}

void src_cache_put(struct src_cache *sc, uint32_t id, int fd)
{
	struct src_entry *e = &sc->entries[id];

	if (fd < 0)
		return;
	/*
	 * A cached fd stays e->fd while it is pinned, and a one-shot fd never
	 * equals e->fd (both are open): so this read, without the lock, tells
	 * them apart.  A one-shot fd is closed before its count is dropped,
	 * which keeps the fds in use within the budget.
	 */
	if (__atomic_load_n(&e->fd, __ATOMIC_RELAXED) != fd) {
		close(fd);
		pthread_mutex_lock(&sc->lock);
		sc->nonce--;
		pthread_mutex_unlock(&sc->lock);
		return;
	}
	pthread_mutex_lock(&sc->lock);
	e->refs--;
	pthread_mutex_unlock(&sc->lock);
}

int src_cache_check(struct src_cache *sc, uint32_t id, int fd)
{
	uint64_t attrs = 0;
	int r = region_source_check_attrs(sc->srcs[id], fd, &attrs);

	if (r < 0) {
		src_cache_failed(sc, id, fd, r);
		return r;
	}
	/*
	 * Immutable or fs-verity: the contents cannot change, so the file may
	 * be spliced from now on.  Learnt from this check, which also found
	 * the walk's ctime: clearing the attribute moves the ctime, and every
	 * later check (before each splice too) would then fail.  Atomic:
	 * src_cache_zc() reads the flags without the lock.
	 */
	if (!sc->all_stable && (attrs & (STATX_ATTR_IMMUTABLE | STATX_ATTR_VERITY)) &&
	    !(__atomic_load_n(&sc->entries[id].flags, __ATOMIC_RELAXED) & SRC_ZC))
		__atomic_or_fetch(&sc->entries[id].flags, SRC_ZC, __ATOMIC_RELAXED);
	return 0;
}

void src_cache_failed(struct src_cache *sc, uint32_t id, int fd, int err)
{
	pthread_mutex_lock(&sc->lock);
	/*
	 * The fd stays cached: later reads through it fail their check the
	 * same way, and other readers may still hold it.
	 */
	warn_once(sc, id, err);
	pthread_mutex_unlock(&sc->lock);
}
