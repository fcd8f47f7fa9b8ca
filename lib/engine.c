/*
 * engine.c - the worker threads that run every read of the library, and in-order delivery.
 *
 * Design. The plan is a list of extents, each a list of reads. One mutex guards the
 * dispatch cursor, the arena's ring and every extent's state; the reads themselves run
 * outside it, so the lock is held only for bookkeeping between reads (a few per 8 MiB).
 *
 *  - Where bytes land is the sink's business (sink.h): the host arena, a file's mapping,
 *    or a node-cache download. The engine only orders the work.
 *  - Dispatch is strictly in plan order: a worker takes the next read; if that read is the
 *    first of its extent, the worker first reserves the extent's block in the sink. Since
 *    reservations happen in plan order, a ring's order is the plan order, and
 *    releasing "oldest first" is releasing in file order.
 *  - A worker that finds no room waits on `space_freed`; the consumer signals it when a
 *    release lets the ring's tail advance. Storage therefore never idles while there is
 *    room: the next read is issued the moment space frees, not after a drain.
 *  - The consumer waits on `progress` for the extent of its next tensor to be complete.
 *    If that extent has no block yet and would not fit even though everything before it
 *    is complete, only the caller's own releases could make room: rather than wait
 *    forever, next() fails with MS_ELIMIT.
 *  - An extent's block returns to the ring when all its tensors have been delivered and
 *    released and every older extent has returned; tensors may be released in any order.
 *  - The first failed read stops dispatch; its message is saved and replayed to the
 *    consumer on its own thread. Cancel sets an atomic flag, then wakes everyone.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "clock.h"
#include "engine.h"
#include "error.h"

enum { TENSOR_PENDING = 0, TENSOR_DELIVERED, TENSOR_RELEASED };

typedef struct {
	unsigned char *block; /* where the sink put read_start */
	size_t reads_done;
	size_t unreleased; /* tensors not yet released (delivered or not) */
	int reserved;      /* has its block in the sink */
	int complete;      /* every read has finished */
} extent_state;

struct ms__engine {
	pthread_mutex_t lock;
	pthread_cond_t space_freed; /* workers wait here for room in the ring */
	pthread_cond_t progress;    /* the consumer waits here for a complete extent */
	/* Set once by cancel; read without the lock by workers between reads. Release and
	 * acquire order it with the wake-up that follows, though the lock would too. */
	atomic_bool canceled;

	/* Guarded by lock. */
	int started;
	int failed_code;
	char failed_message[MS__ERROR_MAX];
	size_t dispatch_extent; /* the next read to issue is read dispatch_read of this */
	size_t dispatch_read;
	size_t oldest_held;  /* the oldest extent that may still hold space in the sink */
	size_t next_tensor;  /* the next plan tensor to deliver */
	size_t extents_done; /* complete extents, for ms__engine_wait() */
	extent_state *extents;
	unsigned char *tensor_states;

	/* Written by start, read-only afterwards; sources_set says they are there, for the
	 * calls that may come from any thread (cancel, received). */
	const ms__plan *plan;
	ms__source *const *sources;
	size_t source_count;
	atomic_bool sources_set;
	const ms_tensor *table;
	ms__engine_options opts;
	pthread_t *threads;
	size_t thread_count;

	/* Counters read by stats from any thread; relaxed, as they order nothing. */
	atomic_uint_fast64_t bytes_read;
	atomic_uint_fast64_t read_requests;
	atomic_uint_fast64_t bytes_delivered;
	atomic_uint_fast64_t tensors_delivered;
	atomic_uint_fast64_t start_ns;
	atomic_uint_fast64_t first_tensor_ns;
	atomic_uint_fast64_t end_ns;
};

static uint64_t span_of(const ms__extent *x)
{
	return x->read_end - x->read_start;
}

/* Records the calling thread's last error as the engine's failure, if it is the first. */
static void fail_locked(ms__engine *e)
{
	if (e->failed_code == 0) {
		ms_error saved;

		ms__error_save(&saved, e->failed_message, sizeof(e->failed_message));
		e->failed_code = saved.code < 0 ? saved.code : MS_ERROR;
	}
	pthread_cond_broadcast(&e->progress);
	pthread_cond_broadcast(&e->space_freed);
}

static int stopped_locked(const ms__engine *e)
{
	return e->failed_code != 0 || atomic_load_explicit(&e->canceled, memory_order_acquire);
}

/* Finds the next read to issue, reserving its extent's block first if needed. Returns 1
 * with the read in *extent_index / *read_index, 0 when there is nothing left to do. */
static int take_read_locked(ms__engine *e, size_t *extent_index, size_t *read_index)
{
	const ms__plan *plan = e->plan;

	while (!stopped_locked(e) && e->dispatch_extent < plan->extent_count) {
		const ms__extent *x = &plan->extents[e->dispatch_extent];
		extent_state *st = &e->extents[e->dispatch_extent];

		if (x->read_count == 0) { /* empty tensors only: complete from the start */
			e->dispatch_extent++;
			continue;
		}
		if (!st->reserved) {
			int rc = e->opts.sink->ops->reserve(e->opts.sink, x, &st->block);

			if (rc == MS__SINK_FULL) {
				/* Let a waiting consumer check whether it holds the space. */
				pthread_cond_broadcast(&e->progress);
				pthread_cond_wait(&e->space_freed, &e->lock);
				continue;
			}
			if (rc < 0) {
				fail_locked(e);
				return 0;
			}
			st->reserved = 1;
		}
		*extent_index = e->dispatch_extent;
		*read_index = e->dispatch_read++;
		if (e->dispatch_read == x->read_count) {
			e->dispatch_extent++;
			e->dispatch_read = 0;
		}
		return 1;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	ms__engine *e = arg;
	size_t xi, ri;

	pthread_mutex_lock(&e->lock);
	while (take_read_locked(e, &xi, &ri)) {
		const ms__extent *x = &e->plan->extents[xi];
		extent_state *st = &e->extents[xi];
		ms__source *src = e->sources[x->file_index];
		uint64_t offset, length;
		int rc;

		ms__plan_read_range(x, e->opts.chunk_size, ri, &offset, &length);
		pthread_mutex_unlock(&e->lock);
		rc = e->opts.sink->ops->fill(e->opts.sink, src, x->file_index,
		                             st->block + (offset - x->read_start), offset, length);
		atomic_fetch_add_explicit(&e->read_requests, 1, memory_order_relaxed);
		pthread_mutex_lock(&e->lock);
		if (rc < 0) {
			fail_locked(e);
			break;
		}
		/* Count only bytes that exist: the last read may extend past the end. */
		if (offset + length > src->size)
			length = offset < src->size ? src->size - offset : 0;
		atomic_fetch_add_explicit(&e->bytes_read, length, memory_order_relaxed);
		if (++st->reads_done == x->read_count) {
			st->complete = 1;
			e->extents_done++;
			pthread_cond_broadcast(&e->progress);
		}
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

int ms__engine_new(ms__engine **out)
{
	ms__engine *e = ms__calloc(1, sizeof(*e));

	*out = NULL;
	if (e == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory creating a streamer");
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->space_freed, NULL);
	pthread_cond_init(&e->progress, NULL);
	atomic_init(&e->canceled, false);
	atomic_init(&e->sources_set, false);
	*out = e;
	return 0;
}

int ms__engine_start(ms__engine *e, const ms__plan *plan, ms__source *const *sources,
                     size_t source_count, const ms_tensor *table, const ms__engine_options *opts)
{
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	if (atomic_load_explicit(&e->canceled, memory_order_acquire)) {
		rc = ms__error_set(MS_ECANCELED, "streaming was canceled");
		goto done;
	}
	e->plan = plan;
	e->sources = sources;
	e->source_count = source_count;
	atomic_store_explicit(&e->sources_set, true, memory_order_release);
	e->table = table;
	e->opts = *opts;
	e->extents = ms__calloc(plan->extent_count, sizeof(*e->extents));
	e->tensor_states = ms__calloc(plan->tensor_count, 1);
	e->threads = ms__calloc(opts->concurrency, sizeof(*e->threads));
	if (e->extents == NULL || e->tensor_states == NULL || e->threads == NULL) {
		rc = ms__error_set(MS_ENOMEM, "out of memory starting %u workers",
		                   opts->concurrency);
		goto done;
	}
	for (size_t i = 0; i < plan->extent_count; i++) {
		e->extents[i].unreleased = plan->extents[i].tensor_count;
		e->extents[i].complete = plan->extents[i].read_count == 0;
		e->extents_done += e->extents[i].complete;
	}
	atomic_store_explicit(&e->start_ns, ms__now_ns(), memory_order_relaxed);
	e->started = 1;
	for (size_t i = 0; i < opts->concurrency && i < plan->read_count; i++) {
		int err = pthread_create(&e->threads[i], NULL, worker_main, e);

		if (err != 0) {
			/* The workers already running stop at once and are joined by free. */
			rc = ms__error_errno(err, "cannot start worker thread %zu of %u", i + 1,
			                     opts->concurrency);
			fail_locked(e);
			goto done;
		}
		e->thread_count++;
	}
done:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

/* next(), try_next() and next_timed(): `timeout_ms` < 0 waits for as long as it takes;
 * 0 returns 1 instead of waiting (and instead of the MS_ELIMIT that waiting could not
 * end: the caller is about to release what it holds); > 0 returns 1 once that long has
 * passed. */
static int next(ms__engine *e, long timeout_ms, size_t *out_index, const void **out_data)
{
	struct timespec until = {0};
	const ms__plan *plan = e->plan;
	const ms__extent *x;
	extent_state *st;
	size_t index;
	int rc = 0;

	if (timeout_ms > 0) /* no clock read for the untimed wait, once per tensor */
		until = ms__deadline_in((unsigned)timeout_ms);
	pthread_mutex_lock(&e->lock);
	if (!e->started) {
		rc = ms__error_set(MS_ESTATE, "the engine has not been started");
		goto done;
	}
	for (;;) {
		if (atomic_load_explicit(&e->canceled, memory_order_acquire)) {
			rc = ms__error_set(MS_ECANCELED, "streaming was canceled");
			goto done;
		}
		if (e->failed_code != 0) {
			rc = ms__error_set(e->failed_code, "%s", e->failed_message);
			goto done;
		}
		if (e->next_tensor == plan->tensor_count) {
			rc = MS_ITER_END;
			goto done;
		}
		index = e->next_tensor;
		x = &plan->extents[plan->tensors[index].extent];
		st = &e->extents[plan->tensors[index].extent];
		if (st->complete)
			break;
		if (timeout_ms == 0) {
			rc = 1;
			goto done;
		}
		if (!st->reserved && e->opts.sink->ops->fits != NULL &&
		    !e->opts.sink->ops->fits(e->opts.sink, x)) {
			ms_stats arena = {0};

			if (e->opts.sink->ops->stats != NULL)
				e->opts.sink->ops->stats(e->opts.sink, &arena);
			rc = ms__error_set(
			    MS_ELIMIT,
			    "memory limit: the next %llu bytes do not fit in the "
			    "%llu-byte arena while delivered tensors are not released "
			    "(call ms_tensor_release, or raise the memory limit)",
			    (unsigned long long)span_of(x), (unsigned long long)arena.arena_bytes);
			goto done;
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&e->progress, &e->lock);
		} else if (pthread_cond_timedwait(&e->progress, &e->lock, &until) != 0) {
			rc = 1;
			goto done;
		}
	}
	{
		const ms_tensor *t = &e->table[plan->tensors[index].table_index];

		*out_index = index;
		/* An extent of empty tensors has no block; any valid pointer will do. */
		*out_data = x->read_count == 0 ? (const void *)e
		                               : st->block + (t->file_offset - x->read_start);
		e->tensor_states[index] = TENSOR_DELIVERED;
		e->next_tensor++;
		atomic_fetch_add_explicit(&e->bytes_delivered, t->size, memory_order_relaxed);
		if (atomic_fetch_add_explicit(&e->tensors_delivered, 1, memory_order_relaxed) == 0)
			atomic_store_explicit(&e->first_tensor_ns, ms__now_ns(),
			                      memory_order_relaxed);
		if (e->next_tensor == plan->tensor_count)
			atomic_store_explicit(&e->end_ns, ms__now_ns(), memory_order_relaxed);
	}
done:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int ms__engine_next(ms__engine *e, size_t *out_index, const void **out_data)
{
	return next(e, -1, out_index, out_data);
}

int ms__engine_try_next(ms__engine *e, size_t *out_index, const void **out_data)
{
	return next(e, 0, out_index, out_data);
}

int ms__engine_next_timed(ms__engine *e, unsigned timeout_ms, size_t *out_index,
                          const void **out_data)
{
	return next(e, timeout_ms > 0 ? (long)timeout_ms : 1, out_index, out_data);
}

int ms__engine_release(ms__engine *e, size_t index)
{
	const ms__plan *plan = e->plan;
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	if (!e->started || index >= plan->tensor_count ||
	    e->tensor_states[index] != TENSOR_DELIVERED) {
		rc = ms__error_set(MS_EINVAL, "tensor released twice or never delivered");
		goto done;
	}
	e->tensor_states[index] = TENSOR_RELEASED;
	e->extents[plan->tensors[index].extent].unreleased--;
	while (e->oldest_held < plan->extent_count) {
		const ms__extent *x = &plan->extents[e->oldest_held];
		extent_state *st = &e->extents[e->oldest_held];

		if (st->unreleased != 0)
			break;
		if (st->reserved && e->opts.sink->ops->release != NULL)
			e->opts.sink->ops->release(e->opts.sink, x, st->block);
		st->reserved = 0;
		e->oldest_held++;
		pthread_cond_broadcast(&e->space_freed);
	}
done:
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int ms__engine_wait(ms__engine *e, unsigned timeout_ms)
{
	struct timespec until = ms__deadline_in(timeout_ms);
	int rc;

	pthread_mutex_lock(&e->lock);
	for (;;) {
		if (atomic_load_explicit(&e->canceled, memory_order_acquire)) {
			rc = ms__error_set(MS_ECANCELED, "canceled");
			break;
		}
		if (e->failed_code != 0) {
			rc = ms__error_set(e->failed_code, "%s", e->failed_message);
			break;
		}
		if (!e->started || e->extents_done == e->plan->extent_count) {
			rc = e->started
			         ? 0
			         : ms__error_set(MS_ESTATE, "the engine has not been started");
			break;
		}
		if (pthread_cond_timedwait(&e->progress, &e->lock, &until) != 0) {
			rc = 1;
			break;
		}
	}
	pthread_mutex_unlock(&e->lock);
	return rc;
}

uint64_t ms__engine_received(const ms__engine *e)
{
	uint64_t n = atomic_load_explicit(&e->bytes_read, memory_order_relaxed), arriving = 0;

	if (!atomic_load_explicit(&e->sources_set, memory_order_acquire))
		return n;
	for (size_t i = 0; i < e->source_count; i++)
		arriving += ms__source_received(e->sources[i]);
	return arriving > n ? arriving : n;
}

/* Stops dispatch and wakes everyone; reads in flight finish. */
static void stop(ms__engine *e)
{
	atomic_store_explicit(&e->canceled, true, memory_order_release);
	pthread_mutex_lock(&e->lock);
	pthread_cond_broadcast(&e->progress);
	pthread_cond_broadcast(&e->space_freed);
	pthread_mutex_unlock(&e->lock);
}

void ms__engine_cancel(ms__engine *e)
{
	stop(e);
	/* Reads in flight are aborted too, where the back end can (a transfer). */
	if (atomic_load_explicit(&e->sources_set, memory_order_acquire))
		for (size_t i = 0; i < e->source_count; i++)
			ms__source_cancel(e->sources[i]);
}

void ms__engine_stats(const ms__engine *e, ms_stats *out)
{
	uint64_t start = atomic_load_explicit(&e->start_ns, memory_order_relaxed);
	uint64_t first = atomic_load_explicit(&e->first_tensor_ns, memory_order_relaxed);
	uint64_t end = atomic_load_explicit(&e->end_ns, memory_order_relaxed);

	out->bytes_read = atomic_load_explicit(&e->bytes_read, memory_order_relaxed);
	out->read_requests = atomic_load_explicit(&e->read_requests, memory_order_relaxed);
	out->bytes_delivered = atomic_load_explicit(&e->bytes_delivered, memory_order_relaxed);
	out->tensors_delivered = atomic_load_explicit(&e->tensors_delivered, memory_order_relaxed);
	out->time_to_first_tensor_ns = start != 0 && first != 0 ? first - start : 0;
	out->elapsed_ns = start == 0 ? 0 : (end != 0 ? end : ms__now_ns()) - start;
	/* Start writes the arena and the plan under the lock, maybe on another thread. The
	 * const is cast away only to take the lock. */
	pthread_mutex_lock((pthread_mutex_t *)&e->lock);
	if (e->started && e->opts.sink->ops->stats != NULL)
		e->opts.sink->ops->stats(e->opts.sink, out);
	if (e->started) {
		out->bytes_total = e->plan->bytes_total;
		out->tensors_total = e->plan->tensor_count;
	}
	pthread_mutex_unlock((pthread_mutex_t *)&e->lock);
}

void ms__engine_free(ms__engine *e)
{
	if (e == NULL)
		return;
	stop(e);
	for (size_t i = 0; i < e->thread_count; i++)
		pthread_join(e->threads[i], NULL);
	ms__free(e->threads);
	ms__free(e->tensor_states);
	ms__free(e->extents);
	pthread_cond_destroy(&e->progress);
	pthread_cond_destroy(&e->space_freed);
	pthread_mutex_destroy(&e->lock);
	ms__free(e);
}
