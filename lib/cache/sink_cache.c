/*
 * sink_cache.c - the cache-file sink: a node-cache download lands in the blob's mapped
 * .partial file, one chunk per extent, and each chunk that lands sets its byte in the
 * download's state file, so that a fetch killed at any point resumes with the chunks
 * already there (fetch.c plans only the others).
 */
#include <errno.h>
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
                       uint64_t state_offset)
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
	*out = &c->base;
	return 0;
}
