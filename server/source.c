/* SPDX-License-Identifier: MIT */
/*
 * source.c - the per-export cache of open source-file fds.  REGION_FILE
 * sources are opened lazily, through their open() callback (which checks
 * that the file is still the one the layout was computed from), on the
 * first read that needs them.  At most max_open fds stay cached; the
 * least recently used idle one is closed to make room.  An fd with reads
 * in flight is pinned (refs > 0) and never closed under them; when every
 * cached fd is pinned, a new fd is used for one read and closed after it.
 *
 * Thread-safe (the plain loop has a thread per connection).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/internal.h"
#include "server/log.h"

#define NONE UINT32_MAX

int src_cache_init(struct src_cache *sc, const struct region_map *map,
		   unsigned int max_open)
{
	memset(sc, 0, sizeof(*sc));
	sc->map = map;
	sc->max_open = max_open ? max_open : 1;
	sc->idle_head = sc->idle_tail = NONE;
	if (map->nsources) {
		sc->entries = calloc(map->nsources, sizeof(*sc->entries));
		if (!sc->entries)
			return -ENOMEM;
	}
	for (size_t i = 0; i < map->nsources; i++) {
		sc->entries[i].fd = -1;
		sc->entries[i].prev = sc->entries[i].next = NONE;
	}
	pthread_mutex_init(&sc->lock, NULL);
	return 0;
}

void src_cache_free(struct src_cache *sc)
{
	if (!sc->entries)
		goto out;
	for (size_t i = 0; i < sc->map->nsources; i++)
		if (sc->entries[i].fd >= 0)
			close(sc->entries[i].fd);
	free(sc->entries);
	sc->entries = NULL;
out:
	pthread_mutex_destroy(&sc->lock);
}

static void idle_unlink(struct src_cache *sc, uint32_t id)
{
	struct src_entry *e = &sc->entries[id];
	if (e->prev != NONE)
		sc->entries[e->prev].next = e->next;
	else
		sc->idle_head = e->next;
	if (e->next != NONE)
		sc->entries[e->next].prev = e->prev;
	else
		sc->idle_tail = e->prev;
	e->prev = e->next = NONE;
}

static void idle_push(struct src_cache *sc, uint32_t id)
{
	struct src_entry *e = &sc->entries[id];
	e->prev = NONE;
	e->next = sc->idle_head;
	if (sc->idle_head != NONE)
		sc->entries[sc->idle_head].prev = id;
	else
		sc->idle_tail = id;
	sc->idle_head = id;
}

/* Logs that source id changed, once per source; caller holds the lock. */
static void warn_once(struct src_cache *sc, uint32_t id, int err)
{
	struct src_entry *e = &sc->entries[id];
	if (e->warned)
		return;
	e->warned = true;
	const char *name = sc->map->sources[id].name;
	if (err == -EIO)
		log_warning("'%s' changed since the walk, reads fail with EIO",
			    name ? name : "?");
	else
		log_errno(err, "reading '%s', reads fail with EIO", name ? name : "?");
}

int src_cache_get(struct src_cache *sc, uint32_t id)
{
	const struct region_source *src;
	struct src_entry *e;
	int fd;

	if (id >= sc->map->nsources)
		return -EINVAL;
	src = &sc->map->sources[id];
	e = &sc->entries[id];

	pthread_mutex_lock(&sc->lock);
	if (e->fd >= 0) {
		if (e->refs++ == 0)
			idle_unlink(sc, id);
		fd = e->fd;
		pthread_mutex_unlock(&sc->lock);
		return fd;
	}
	/*
	 * Open under the lock: it keeps the count of open fds exact, and
	 * opens are rare next to reads.
	 */
	fd = src->open(src);
	if (fd < 0) {
		warn_once(sc, id, fd == -EIO ? -EIO : fd);
		pthread_mutex_unlock(&sc->lock);
		return fd;
	}
	if (sc->nopen >= sc->max_open && sc->idle_tail != NONE) {
		uint32_t victim = sc->idle_tail;
		idle_unlink(sc, victim);
		close(sc->entries[victim].fd);
		sc->entries[victim].fd = -1;
		sc->nopen--;
	}
	if (sc->nopen < sc->max_open) {
		/* Cache it; otherwise it is used once (src_cache_put closes it). */
		e->fd = fd;
		e->refs = 1;
		sc->nopen++;
	}
	pthread_mutex_unlock(&sc->lock);
	return fd;
}

void src_cache_put(struct src_cache *sc, uint32_t id, int fd)
{
	struct src_entry *e = &sc->entries[id];

	pthread_mutex_lock(&sc->lock);
	if (e->fd == fd && fd >= 0) {
		if (--e->refs == 0)
			idle_push(sc, id);
	} else if (fd >= 0) {
		close(fd);
	}
	pthread_mutex_unlock(&sc->lock);
}

int src_cache_check(struct src_cache *sc, uint32_t id, int fd)
{
	int r = region_source_check(&sc->map->sources[id], fd);
	if (r < 0)
		src_cache_failed(sc, id, fd, r);
	return r;
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
