/*
 * engine.h - the workers that execute a read plan into the arena, and delivery in order.
 *
 * Thread rules: ms__engine_cancel() may be called from any thread at any time while the
 * engine exists. Every other call comes from the thread that owns the streamer.
 */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"
#include "plan.h"
#include "sink_mapped.h"
#include "source.h"

typedef struct ms__engine ms__engine;

typedef struct {
	unsigned concurrency; /* worker threads, at least 1 */
	uint64_t chunk_size;  /* as given to the plan */
	uint64_t alignment;   /* as given to the plan */
	int ring;             /* 0: one block for everything; 1: a ring of ring_size bytes */
	uint64_t ring_size;
	int arena_pages; /* an ms_arena_pages value */
	/* Mapped delivery when not NULL: one mapping per file (indexed like `sources`).
	 * No arena then; each read populates its range of the mapping, and a tensor's data
	 * points into it (see sink_mapped.h). */
	const ms__mapping *mapped;
} ms__engine_options;

/** Creates an idle engine; only cancel and free are valid until start. */
int ms__engine_new(ms__engine **out);

/**
 * Maps the arena and starts the workers on `plan`. `plan`, `sources` (indexed by file)
 * and `table` (the tensor table the plan indexes) must outlive the engine. Returns 0,
 * MS_ENOMEM (arena or threads), MS_ECANCELED.
 */
int ms__engine_start(ms__engine *e, const ms__plan *plan, ms__source *const *sources,
                     const ms_tensor *table, const ms__engine_options *opts);

/**
 * Waits until the next tensor of the plan is in memory. Returns 0 with its index in
 * plan->tensors and its bytes in *out_data; MS_ITER_END when all are delivered; or the
 * error that stopped the engine (replayed on every call), MS_ELIMIT when the ring cannot
 * fit the next extent because the caller holds too much, MS_ECANCELED.
 */
int ms__engine_next(ms__engine *e, size_t *out_index, const void **out_data);

/** Releases delivered tensor `index`; returns 0 or MS_EINVAL (not delivered / twice). */
int ms__engine_release(ms__engine *e, size_t index);

/** Stops the engine; see the thread rules above. */
void ms__engine_cancel(ms__engine *e);

/** Fills the counters the engine owns. */
void ms__engine_stats(const ms__engine *e, ms_stats *out);

/** Cancels, joins the workers, unmaps the arena and frees the engine. Accepts NULL. */
void ms__engine_free(ms__engine *e);

#endif
