/*
 * engine.h - the workers that execute a read plan into a sink, and delivery in order.
 *
 * The engine is the only code in the library that creates reader threads: streaming into
 * the host arena, mapped delivery and node-cache downloads all run through it, each with
 * its sink (sink.h).
 *
 * Thread rules: ms__engine_cancel() and ms__engine_received() may be called from any
 * thread at any time while the engine exists. Every other call comes from the thread that
 * owns the engine.
 */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"
#include "plan.h"
#include "sink.h"
#include "source.h"

typedef struct ms__engine ms__engine;

typedef struct {
	unsigned concurrency; /* worker threads, at least 1 */
	uint64_t chunk_size;  /* as given to the plan */
	uint64_t alignment;   /* as given to the plan */
	ms__sink *sink;       /* where bytes land; the caller owns it and frees it after */
} ms__engine_options;

/** Creates an idle engine; only cancel and free are valid until start. */
int ms__engine_new(ms__engine **out);

/**
 * Starts the workers on `plan`. `plan`, `sources` (`source_count` of them, indexed by
 * file), `table` (the tensor table the plan indexes; NULL for a plan without tensors) and
 * the sink must outlive the engine. Returns 0, MS_ENOMEM (threads), MS_ECANCELED.
 */
int ms__engine_start(ms__engine *e, const ms__plan *plan, ms__source *const *sources,
                     size_t source_count, const ms_tensor *table, const ms__engine_options *opts);

/**
 * Waits up to `timeout_ms` for every read of the plan to finish (a plan without tensors:
 * a download). Returns 0 when all are done, 1 on timeout, or the error that stopped the
 * engine (MS_ECANCELED after cancel).
 */
int ms__engine_wait(ms__engine *e, unsigned timeout_ms);

/**
 * Bytes read so far, counting the reads still in progress where the source counts bytes
 * as they arrive (object storage), for progress that moves during a long read.
 */
uint64_t ms__engine_received(const ms__engine *e);

/**
 * Waits until the next tensor of the plan is in memory. Returns 0 with its index in
 * plan->tensors and its bytes in *out_data; MS_ITER_END when all are delivered; or the
 * error that stopped the engine (replayed on every call), MS_ELIMIT when the ring cannot
 * fit the next extent because the caller holds too much, MS_ECANCELED.
 */
int ms__engine_next(ms__engine *e, size_t *out_index, const void **out_data);

/** As ms__engine_next(), but returns 1 at once when the next tensor is not in memory yet
 * (never MS_ELIMIT: the caller holds tensors it is about to release). */
int ms__engine_try_next(ms__engine *e, size_t *out_index, const void **out_data);

/** As ms__engine_next(), but returns 1 once `timeout_ms` (at least 1) has passed with no
 * tensor ready. */
int ms__engine_next_timed(ms__engine *e, unsigned timeout_ms, size_t *out_index,
                          const void **out_data);

/** Releases delivered tensor `index`; returns 0 or MS_EINVAL (not delivered / twice). */
int ms__engine_release(ms__engine *e, size_t index);

/** Stops the engine: no read starts, reads in flight are aborted where the source can
 * (ms__source_cancel). See the thread rules above. */
void ms__engine_cancel(ms__engine *e);

/** Fills the counters the engine owns. */
void ms__engine_stats(const ms__engine *e, ms_stats *out);

/** Stops dispatch, joins the workers (reads in flight finish) and frees the engine.
 * Accepts NULL. */
void ms__engine_free(ms__engine *e);

#endif
