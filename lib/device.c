/*
 * device.c - the device stage (device.h): a pump thread between the engine and the
 * caller that copies each extent to the device and recycles its staging when the copy's
 * event completes.
 *
 * Design.
 *  - The pump takes tensors from the engine in plan order. The tensors of one extent form
 *    a batch: their copies are queued on one stream (extents alternate between the
 *    streams), and one event recorded after them says when the whole batch has landed.
 *  - Batches in flight wait in a FIFO of at most EVENTS. Before taking more, the pump
 *    retires every batch whose event has completed: its tensors are released to the
 *    engine (so the ring slot, or the pinned pages of a mapping, go back) and become
 *    deliverable. When the engine has nothing new yet, the pump closes its open batch and
 *    waits for the oldest one instead of for the engine, so that the staging the engine
 *    needs next is freed as soon as it can be; only with nothing in flight does it block
 *    on the engine.
 *  - Mapped delivery pins each extent's pages while its copy runs, with one call per
 *    extent and READ_ONLY (the mapping is read-only). Only whole pages inside the
 *    extent's bytes are pinned, so that two extents sharing a page never pin it twice:
 *    the bytes before the first and after the last whole page (under a page each) are
 *    copied from pageable memory, which the driver stages itself.
 *  - The caller's next() waits for the count of copied tensors to pass its own.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "clock.h"
#include "device.h"
#include "error.h"
#include "sink_cuda.h"

#define COPY_STREAMS 2
#define EVENTS       64 /* batches in flight at most */
#define PAGE         4096u

typedef struct {
	size_t first, end; /* plan tensors [first, end) */
	size_t extent;
	unsigned stream;
	unsigned event;
	const unsigned char *pinned; /* the pages pinned for it (mapped delivery), or NULL */
	const unsigned char *pinned_end;
} batch;

struct ms__device {
	ms__device_options o;
	ms__cuda *cuda;
	ms__engine *engine;
	const ms__plan *plan;
	const ms_tensor *table;
	bool mapped;
	ms_device_copy mode;
	uint64_t arena;      /* the library's device memory, or 0 */
	uint64_t arena_base; /* arena, aligned up to the option */
	uint64_t arena_size;
	uint64_t *ptrs; /* per plan tensor: its device address */
	void *staging;  /* the pinned ring, or NULL */

	pthread_t thread;
	bool thread_started;
	atomic_bool stop;

	pthread_mutex_t lock;
	pthread_cond_t copied_more;
	/* Guarded by lock. */
	size_t copied; /* tensors whose copy has completed, in plan order */
	bool finished; /* the pump has stopped; failed_code says why if not at the end */
	int failed_code;
	char failed_message[MS__ERROR_MAX];

	size_t next_out; /* the caller's next tensor (its thread only) */

	/* Written before the pump starts or by the pump alone; read by stats. */
	char fallback[512];
	atomic_bool has_fallback;
	atomic_uint_fast64_t bytes_to_device;
	atomic_uint_fast64_t pageable_copies;
	atomic_uint_fast64_t pin_ns;

	/* The pump's own. */
	batch queue[EVENTS];
	size_t queue_head, queue_count;
	unsigned next_event;
	batch open;
	bool has_open;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static void set_fallback(ms__device *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Keeps the first reason the device path is slower than it could be. */
static void set_fallback(ms__device *d, const char *fmt, ...)
{
	va_list ap;

	if (atomic_load_explicit(&d->has_fallback, memory_order_relaxed))
		return;
	va_start(ap, fmt);
	vsnprintf(d->fallback, sizeof(d->fallback), fmt, ap);
	va_end(ap);
	atomic_store_explicit(&d->has_fallback, true, memory_order_release);
}

int ms__device_open(ms__device **out, const ms__device_options *o)
{
	ms__device *d;
	int rc;

	*out = NULL;
	if ((d = ms__calloc(1, sizeof(*d))) == NULL)
		return ms__error_set(MS_ENOMEM, "cuda:%d: out of memory", o->index);
	d->o = *o;
	if ((rc = ms__cuda_open(&d->cuda, o->index, COPY_STREAMS, EVENTS)) < 0) {
		ms__free(d);
		return rc;
	}
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->copied_more, NULL);
	atomic_init(&d->stop, false);
	atomic_init(&d->has_fallback, false);
	atomic_init(&d->bytes_to_device, 0);
	atomic_init(&d->pageable_copies, 0);
	atomic_init(&d->pin_ns, 0);
	d->mode = MS_DEVICE_COPY_STAGED;
	*out = d;
	return 0;
}

int ms__device_index(const ms__device *d)
{
	return d->o.index;
}

int ms__device_try_mapped(ms__device *d, const ms__mapping *mappings, const char *const *names,
                          size_t count)
{
	/* One probe: the first whole pages of the first file with any. A driver that pins
	 * one extent of a mapping pins the others. */
	for (size_t i = 0; i < count; i++) {
		size_t n = mappings[i].size / PAGE * PAGE;

		if (n == 0)
			continue;
		if (n > (2u << 20))
			n = 2u << 20;
		if (ms__cuda_register(d->cuda, mappings[i].base, n, true) < 0) {
			set_fallback(d,
			             "%s: the driver refused to register the mapping of %s (%s); "
			             "staging through a pinned ring instead",
			             ms__cuda_name(d->cuda), names[i], ms_error_last()->message);
			return 1;
		}
		ms__cuda_unregister(d->cuda, mappings[i].base);
		break;
	}
	d->mode = MS_DEVICE_COPY_MAPPED;
	return 0;
}

void ms__device_pin_staging(ms__device *d, void *base, size_t size)
{
	if (ms__cuda_register(d->cuda, base, size, false) == 0) {
		d->staging = base;
		d->mode = MS_DEVICE_COPY_STAGED;
		return;
	}
	set_fallback(d,
	             "%s: the driver refused to pin the %zu-byte staging ring (%s); copying "
	             "from pageable memory",
	             ms__cuda_name(d->cuda), size, ms_error_last()->message);
	d->mode = MS_DEVICE_COPY_PAGEABLE;
}

static const ms_tensor *tensor_of(const ms__device *d, size_t k)
{
	return &d->table[d->plan->tensors[k].table_index];
}

/* Finishes the oldest batch if its copies are done (or once they are, with `wait`):
 * unpins its pages, gives its tensors back to the engine and makes them deliverable.
 * Returns 0, 1 (not yet), or an error. */
static int retire_one(ms__device *d, bool wait)
{
	batch *b = &d->queue[d->queue_head];
	uint64_t bytes = 0;
	int rc;

	if ((rc = ms__cuda_done(d->cuda, b->event, wait)) != 0)
		return rc;
	if (b->pinned != NULL) {
		uint64_t t0 = ms__now_ns();

		ms__cuda_unregister(d->cuda, b->pinned);
		atomic_fetch_add_explicit(&d->pin_ns, ms__now_ns() - t0, memory_order_relaxed);
	}
	for (size_t k = b->first; k < b->end; k++) {
		bytes += tensor_of(d, k)->size;
		if ((rc = ms__engine_release(d->engine, k)) < 0)
			return rc;
	}
	atomic_fetch_add_explicit(&d->bytes_to_device, bytes, memory_order_relaxed);
	pthread_mutex_lock(&d->lock);
	d->copied = b->end;
	pthread_cond_broadcast(&d->copied_more);
	pthread_mutex_unlock(&d->lock);
	d->queue_head = (d->queue_head + 1) % EVENTS;
	d->queue_count--;
	return 0;
}

/* Retires every finished batch without waiting. */
static int retire_done(ms__device *d)
{
	int rc = 0;

	while (d->queue_count > 0 && (rc = retire_one(d, false)) == 0)
		;
	return rc < 0 ? rc : 0;
}

/* Closes the open batch: an event after its copies, and into the FIFO. */
static int close_open(ms__device *d)
{
	int rc;

	if (!d->has_open)
		return 0;
	d->open.event = d->next_event++ % EVENTS;
	if ((rc = ms__cuda_record(d->cuda, d->open.event, d->open.stream)) < 0)
		return rc;
	d->queue[(d->queue_head + d->queue_count) % EVENTS] = d->open;
	d->queue_count++;
	d->has_open = false;
	return 0;
}

/* Starts a batch for extent `x`, whose first tensor's bytes are at `data`. */
static int open_batch(ms__device *d, size_t k, size_t x, const void *data)
{
	const ms__extent *e = &d->plan->extents[x];
	int rc;

	while (d->queue_count == EVENTS)
		if ((rc = retire_one(d, true)) < 0)
			return rc;
	d->open =
	    (batch){.first = k, .end = k, .extent = x, .stream = (unsigned)(x % COPY_STREAMS)};
	d->has_open = true;
	if (d->mapped && e->read_count > 0) {
		const ms_tensor *first = tensor_of(d, e->first_tensor);
		const ms_tensor *last = tensor_of(d, e->first_tensor + e->tensor_count - 1);
		uintptr_t start = (uintptr_t)data,
		          end = start + (last->file_offset + last->size - first->file_offset);
		uintptr_t lo = align_up(start, PAGE), hi = end / PAGE * PAGE;

		if (hi > lo) {
			uint64_t t0 = ms__now_ns();

			rc = ms__cuda_register(d->cuda, (const void *)lo, hi - lo, true);
			atomic_fetch_add_explicit(&d->pin_ns, ms__now_ns() - t0,
			                          memory_order_relaxed);
			if (rc == 0) {
				d->open.pinned = (const unsigned char *)lo;
				d->open.pinned_end = (const unsigned char *)hi;
			} else {
				set_fallback(d,
				             "%s: the driver refused to pin part of file %zu (%s); "
				             "those copies go from pageable memory",
				             ms__cuda_name(d->cuda), e->file_index,
				             ms_error_last()->message);
			}
		}
	}
	return 0;
}

/* Queues one piece of a copy. */
static int copy(ms__device *d, uint64_t dst, const unsigned char *src, uint64_t n)
{
	return n == 0 ? 0 : ms__cuda_copy(d->cuda, dst, src, n, d->open.stream);
}

/* Where tensor k goes: the arena's slot, or the caller's buffer. */
static int destination(ms__device *d, size_t k, uint64_t *out)
{
	const ms_tensor *t = tensor_of(d, k);
	char printable[MS__PRINTABLE_MAX];
	int rc, on = -1;

	if (d->o.alloc == NULL) {
		*out = d->ptrs[k];
		return 0;
	}
	*out = 0;
	if ((rc = d->o.alloc(out, t, d->o.index, d->o.alloc_payload)) < 0 ||
	    (*out == 0 && t->size > 0))
		return ms__error_set(
		    rc < 0 ? rc : MS_EINVAL, "%s: tensor '%s': device_alloc gave %s",
		    ms__cuda_name(d->cuda), ms__printable(printable, sizeof(printable), t->name),
		    rc < 0 ? ms_strerror(rc) : "no memory (a zero address)");
	ms__cuda_pointer_device(d->cuda, &on, *out);
	if (on >= 0 && on != d->o.index)
		return ms__error_set(MS_EINVAL,
		                     "%s: tensor '%s': device_alloc gave memory on cuda:%d",
		                     ms__cuda_name(d->cuda),
		                     ms__printable(printable, sizeof(printable), t->name), on);
	d->ptrs[k] = *out;
	return 0;
}

/* Adds tensor k (its host bytes at `data`) to the open batch and queues its copy. */
static int take(ms__device *d, size_t k, const void *data)
{
	const ms_tensor *t = tensor_of(d, k);
	size_t x = d->plan->tensors[k].extent;
	const unsigned char *src = data;
	uint64_t dst;
	int rc;

	if (d->has_open && d->open.extent != x && (rc = close_open(d)) < 0)
		return rc;
	if (!d->has_open && (rc = open_batch(d, k, x, data)) < 0)
		return rc;
	if ((rc = destination(d, k, &dst)) < 0)
		return rc;
	d->open.end = k + 1;
	if (t->size == 0)
		return 0;
	if (d->open.pinned != NULL) {
		/* Three pieces: before the pinned pages, on them, after them (any may be empty).
		 * The extent's bytes lie within [pinned - PAGE, pinned_end + PAGE). */
		const unsigned char *end = src + t->size;
		const unsigned char *a = src < d->open.pinned ? d->open.pinned : src;
		const unsigned char *b = end > d->open.pinned_end ? d->open.pinned_end : end;

		if (a > end)
			a = end;
		if (b < a)
			b = a;
		if ((rc = copy(d, dst, src, (uint64_t)(a - src))) < 0 ||
		    (rc = copy(d, dst + (uint64_t)(a - src), a, (uint64_t)(b - a))) < 0)
			return rc;
		return copy(d, dst + (uint64_t)(b - src), b, (uint64_t)(end - b));
	}
	/* Neither the ring nor the extent's pages are pinned: the driver stages this one. */
	if (d->staging == NULL)
		atomic_fetch_add_explicit(&d->pageable_copies, 1, memory_order_relaxed);
	return copy(d, dst, src, t->size);
}

static void *pump_main(void *arg)
{
	ms__device *d = arg;
	const void *data;
	size_t k;
	int rc = 0;

	for (;;) {
		if (atomic_load_explicit(&d->stop, memory_order_acquire)) {
			rc = ms__error_set(MS_ECANCELED, "streaming was canceled");
			break;
		}
		if ((rc = retire_done(d)) < 0)
			break;
		rc = ms__engine_try_next(d->engine, &k, &data);
		if (rc == 1) {
			/* Nothing new yet: free staging first, then wait for the engine. */
			if ((rc = close_open(d)) < 0)
				break;
			if (d->queue_count > 0) {
				if ((rc = retire_one(d, true)) < 0)
					break;
				continue;
			}
			rc = ms__engine_next(d->engine, &k, &data);
		}
		if (rc == MS_ITER_END) {
			if ((rc = close_open(d)) < 0)
				break;
			while (d->queue_count > 0 && (rc = retire_one(d, true)) >= 0)
				;
			rc = rc < 0 ? rc : MS_ITER_END;
			break;
		}
		if (rc < 0 || (rc = take(d, k, data)) < 0)
			break;
	}
	pthread_mutex_lock(&d->lock);
	if (rc != MS_ITER_END) {
		ms_error saved;

		ms__error_save(&saved, d->failed_message, sizeof(d->failed_message));
		d->failed_code = saved.code < 0 ? saved.code : MS_ERROR;
	}
	d->finished = true;
	pthread_cond_broadcast(&d->copied_more);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

int ms__device_start(ms__device *d, ms__engine *e, const ms__plan *plan, const ms_tensor *table,
                     bool mapped)
{
	uint64_t offset = 0, free_bytes = 0, total = 0;
	int rc, err;

	d->engine = e;
	d->plan = plan;
	d->table = table;
	d->mapped = mapped;
	d->ptrs = ms__calloc(plan->tensor_count + 1, sizeof(*d->ptrs));
	if (d->ptrs == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", ms__cuda_name(d->cuda));
	if (d->o.alloc == NULL) {
		for (size_t k = 0; k < plan->tensor_count; k++) {
			offset = align_up(offset, d->o.alignment);
			d->ptrs[k] = offset;
			offset += tensor_of(d, k)->size;
		}
		/* The driver aligns allocations to 256 bytes at least; more takes slack. */
		if (offset > 0 && d->o.alignment > MS_DEVICE_ALIGNMENT_DEFAULT)
			offset += d->o.alignment;
		if (offset > 0) {
			if ((rc = ms__cuda_memory(d->cuda, &free_bytes, &total)) < 0)
				return rc;
			if (offset > free_bytes)
				return ms__error_set(
				    MS_ELIMIT,
				    "%s: the selected tensors need %llu bytes of device "
				    "memory and %llu of its %llu are free",
				    ms__cuda_name(d->cuda), (unsigned long long)offset,
				    (unsigned long long)free_bytes, (unsigned long long)total);
			if ((rc = ms__cuda_alloc(d->cuda, &d->arena, offset)) < 0)
				return rc;
			d->arena_size = offset;
			d->arena_base = align_up(d->arena, d->o.alignment);
		}
		for (size_t k = 0; k < plan->tensor_count; k++)
			d->ptrs[k] += d->arena_base;
	}
	if ((err = pthread_create(&d->thread, NULL, pump_main, d)) != 0)
		return ms__error_errno(err, "%s: cannot start the copy thread",
		                       ms__cuda_name(d->cuda));
	d->thread_started = true;
	return 0;
}

int ms__device_next(ms__device *d, long timeout_ms, size_t *out_index, uint64_t *out_ptr)
{
	struct timespec until = {0};
	int rc = 0;

	if (timeout_ms > 0) /* no clock read for the untimed wait, once per tensor */
		until = ms__deadline_in((unsigned long)timeout_ms);

	pthread_mutex_lock(&d->lock);
	while (d->next_out >= d->copied && !d->finished &&
	       !atomic_load_explicit(&d->stop, memory_order_acquire)) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&d->copied_more, &d->lock);
		} else if (pthread_cond_timedwait(&d->copied_more, &d->lock, &until) != 0) {
			pthread_mutex_unlock(&d->lock);
			return 1;
		}
	}
	if (atomic_load_explicit(&d->stop, memory_order_acquire)) {
		rc = ms__error_set(MS_ECANCELED, "streaming was canceled");
	} else if (d->failed_code != 0) {
		rc = ms__error_set(d->failed_code, "%s", d->failed_message);
	} else if (d->next_out < d->copied) {
		*out_index = d->next_out;
		*out_ptr = d->ptrs[d->next_out];
		d->next_out++;
	} else {
		rc = MS_ITER_END;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void ms__device_cancel(ms__device *d)
{
	if (d == NULL)
		return;
	atomic_store_explicit(&d->stop, true, memory_order_release);
	pthread_mutex_lock(&d->lock);
	pthread_cond_broadcast(&d->copied_more);
	pthread_mutex_unlock(&d->lock);
}

void ms__device_stats(const ms__device *d, ms_stats *out)
{
	out->device = d->o.index;
	out->device_copy = d->mode;
	out->copy_streams = COPY_STREAMS;
	out->device_bytes = d->arena_size;
	out->bytes_to_device = atomic_load_explicit(&d->bytes_to_device, memory_order_relaxed);
	out->pageable_copies = atomic_load_explicit(&d->pageable_copies, memory_order_relaxed);
	out->pin_ns = atomic_load_explicit(&d->pin_ns, memory_order_relaxed);
}

const char *ms__device_fallback(const ms__device *d)
{
	return atomic_load_explicit(&d->has_fallback, memory_order_acquire) ? d->fallback : NULL;
}

void ms__device_free(ms__device *d, ms__engine *e)
{
	if (d == NULL)
		return;
	atomic_store_explicit(&d->stop, true, memory_order_release);
	if (d->thread_started) {
		bool finished;

		pthread_mutex_lock(&d->lock);
		finished = d->finished;
		pthread_mutex_unlock(&d->lock);
		if (!finished && e != NULL)
			ms__engine_cancel(e); /* wakes a pump waiting for the engine */
		pthread_join(d->thread, NULL);
	}
	/* Copies still in flight read pinned memory: let them land before unpinning. */
	ms__cuda_sync(d->cuda);
	if (d->has_open && d->open.pinned != NULL)
		ms__cuda_unregister(d->cuda, d->open.pinned);
	for (; d->queue_count > 0; d->queue_count--) {
		const batch *b = &d->queue[d->queue_head];

		if (b->pinned != NULL)
			ms__cuda_unregister(d->cuda, b->pinned);
		d->queue_head = (d->queue_head + 1) % EVENTS;
	}
	if (d->staging != NULL)
		ms__cuda_unregister(d->cuda, d->staging);
	ms__cuda_free(d->cuda, d->arena);
	ms__cuda_close(d->cuda);
	ms__free(d->ptrs);
	pthread_cond_destroy(&d->copied_more);
	pthread_mutex_destroy(&d->lock);
	ms__free(d);
}
