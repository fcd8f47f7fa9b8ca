/*
 * sink_cache.c - the cache-file sink: a node-cache download lands in the blob's mapped
 * .partial file, one chunk per extent, and each chunk that lands sets its byte in the
 * download's state file, so that a fetch killed at any point resumes with the chunks
 * already there (fetch.c plans only the others).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "sink.h"

typedef struct {
	ms__sink base;
	unsigned char *map;
	int state_fd;
	uint64_t chunk;
	uint64_t state_offset;
	int allocate_fd; /* >= 0: allocate each chunk's pages before filling it (tmpfs) */
	const char *dir; /* the cache, for messages */
} cache_sink;

static int cache_reserve(ms__sink *k, const ms__extent *x, unsigned char **out)
{
	*out = ((cache_sink *)k)->map + x->read_start;
	return 0;
}

static int cache_fill(ms__sink *k, ms__source *src, size_t file, unsigned char *dst,
                      uint64_t offset, uint64_t length)
{
	cache_sink *c = (cache_sink *)k;
	unsigned char one = 1;
	int rc;

	(void)file;
	/* A write into a mapped tmpfs page that cannot be had is SIGBUS: have the pages first,
	 * so that a full tmpfs is an error naming the cache, and the partial stays resumable. */
	if (c->allocate_fd >= 0) {
		int err = posix_fallocate(c->allocate_fd, (off_t)offset, (off_t)length);

		if (err == ENOSPC || err == EDQUOT)
			return ms__error_set(MS_ENOSPC,
			                     "%s: no space left in the cache %s for %llu bytes at "
			                     "offset %llu: %s",
			                     src->location, c->dir, (unsigned long long)length,
			                     (unsigned long long)offset, strerror(err));
		if (err != 0 && err != EOPNOTSUPP && err != EINVAL)
			return ms__error_errno(err, "%s: allocating %llu bytes in the cache %s",
			                       src->location, (unsigned long long)length, c->dir);
	}
	if ((rc = ms__source_read(src, dst, offset, (size_t)length)) < 0)
		return rc;
	if (pwrite(c->state_fd, &one, 1, (off_t)(c->state_offset + offset / c->chunk)) != 1)
		return ms__error_errno(errno, "%s: writing the download's state", src->location);
	return 0;
}

static void cache_free(ms__sink *k)
{
	ms__free(k);
}

static const ms__sink_ops cache_ops = {
    .reserve = cache_reserve,
    .fill = cache_fill,
    .free = cache_free,
};

int ms__sink_cache_new(ms__sink **out, unsigned char *map, int state_fd, uint64_t chunk,
                       uint64_t state_offset, int allocate_fd, const char *dir)
{
	cache_sink *c = ms__calloc(1, sizeof(*c));

	*out = NULL;
	if (c == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory creating a download");
	c->base.ops = &cache_ops;
	c->map = map;
	c->state_fd = state_fd;
	c->chunk = chunk;
	c->state_offset = state_offset;
	c->allocate_fd = allocate_fd;
	c->dir = dir;
	*out = &c->base;
	return 0;
}
