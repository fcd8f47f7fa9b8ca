/*
 * sink_host.c - the host sink: extents land in the streamer's arena (arena.c), one block
 * for everything, or a ring bounded by the memory limit whose oldest extents are
 * recycled once the caller has released their tensors.
 */
#include "alloc.h"
#include "arena.h"
#include "error.h"
#include "sink.h"

typedef struct {
	ms__sink base;
	ms__arena arena;
	int ring;
	size_t alignment;
} host_sink;

static size_t span_of(const ms__extent *x)
{
	return (size_t)(x->read_end - x->read_start);
}

static int host_reserve(ms__sink *k, const ms__extent *x, unsigned char **out)
{
	host_sink *h = (host_sink *)k;
	size_t offset;

	if (ms__arena_reserve(&h->arena, &offset, span_of(x), h->alignment) != 0)
		return MS__SINK_FULL;
	*out = h->arena.base + offset;
	return 0;
}

static bool host_fits(const ms__sink *k, const ms__extent *x)
{
	const host_sink *h = (const host_sink *)k;

	return !h->ring || ms__arena_fits(&h->arena, span_of(x), h->alignment);
}

static int host_fill(ms__sink *k, ms__source *src, size_t file, unsigned char *dst, uint64_t offset,
                     uint64_t length)
{
	(void)k, (void)file;
	return ms__source_read(src, dst, offset, (size_t)length);
}

static void host_release(ms__sink *k, const ms__extent *x, unsigned char *block)
{
	host_sink *h = (host_sink *)k;

	/* One block for everything is never recycled: tensors live until the end. */
	if (h->ring)
		ms__arena_release_oldest(&h->arena, (size_t)(block - h->arena.base), span_of(x));
}

static void host_stats(const ms__sink *k, ms_stats *out)
{
	const host_sink *h = (const host_sink *)k;

	out->arena_bytes = h->arena.size;
	out->arena_huge_pages = h->arena.pages;
}

static void host_free(ms__sink *k)
{
	host_sink *h = (host_sink *)k;

	ms__arena_unmap(&h->arena);
	ms__free(h);
}

static const ms__sink_ops host_ops = {
    .reserve = host_reserve,
    .fits = host_fits,
    .fill = host_fill,
    .release = host_release,
    .stats = host_stats,
    .free = host_free,
};

void ms__sink_host_memory(const ms__sink *k, void **out_base, size_t *out_size)
{
	const host_sink *h = (const host_sink *)k;

	*out_base = h->arena.base;
	*out_size = h->arena.size;
}

int ms__sink_host_new(ms__sink **out, uint64_t size, int ring, uint64_t alignment, int pages)
{
	host_sink *h = ms__calloc(1, sizeof(*h));
	int rc;

	*out = NULL;
	if (h == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory creating the arena");
	if ((rc = ms__arena_map(&h->arena, (size_t)size, pages)) < 0) {
		ms__free(h);
		return rc;
	}
	h->base.ops = &host_ops;
	h->ring = ring;
	h->alignment = (size_t)alignment;
	*out = &h->base;
	return 0;
}
