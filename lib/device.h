/*
 * device.h - the device stage: what the engine delivers in host memory, copied into
 * device memory in file order, with the copies of one extent overlapping the reads of
 * the next ones.
 *
 * The engine fills a host sink as for any stream: a staging ring (the host arena, pinned
 * once), or the files' own mappings (mapped delivery; each extent's pages are pinned
 * while its copy runs, so the copy engine reads the page cache or a tmpfs node cache
 * directly). A pump thread takes the engine's tensors in order, queues each extent's
 * copies on one of the copy streams, records an event after them, and hands the extent's
 * staging back to the engine only when that event has completed: a ring slot is reused
 * once its bytes are on the device, whatever the caller does with the device tensors.
 * Tensors are delivered to the caller in order, each once its copy has completed.
 *
 * The device is reached through sink_cuda.h; nothing here knows CUDA's types.
 *
 * Thread rules: next(), stats() and fallback() from the streamer's threads as its own
 * calls are; free() once, after everything else.
 */
#ifndef MS_DEVICE_H
#define MS_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "modelstream.h"
#include "plan.h"
#include "sink_mapped.h"

typedef struct ms__device ms__device;

typedef struct {
	int index;                /* the CUDA device */
	uint64_t alignment;       /* of each tensor in the library's arena, a power of two */
	ms_device_alloc_fn alloc; /* NULL: the library's arena */
	void *alloc_payload;
} ms__device_options;

/** Opens device `o->index` (one line and MS_ENODEVICE without it). */
int ms__device_open(ms__device **out, const ms__device_options *o);

/**
 * Mapped delivery: whether the driver pins these mappings (`count` of them, named by
 * `names` for the message). Returns 0 (it does), 1 (it refused: stage instead; the reason
 * is kept for ms__device_fallback()), or an error.
 */
int ms__device_try_mapped(ms__device *d, const ms__mapping *mappings, const char *const *names,
                          size_t count);

/**
 * Staged delivery: pins the staging ring at `base` (`size` bytes) once. A refusal is not
 * an error: copies then go from pageable memory, and the reason is kept.
 */
void ms__device_pin_staging(ms__device *d, void *base, size_t size);

/**
 * Lays the plan's tensors out on the device (the arena, after checking free memory; or
 * nothing, with a callback) and starts the pump on engine `e`, which must be started.
 * `mapped`: the engine's sink is the files' mappings. Returns 0, MS_ELIMIT (too little
 * device memory, both sizes named), MS_ENOMEM.
 */
int ms__device_start(ms__device *d, ms__engine *e, const ms__plan *plan, const ms_tensor *table,
                     bool mapped);

/**
 * Waits until the next tensor's copy has completed (`timeout_ms` < 0: however long it
 * takes; otherwise at most that long, then 1). Returns 0 with its plan index and device
 * address, 1, MS_ITER_END, or the error that stopped the stream (replayed).
 */
int ms__device_next(ms__device *d, long timeout_ms, size_t *out_index, uint64_t *out_ptr);

/** Makes next() return MS_ECANCELED from now on, and stops the pump; any thread. The
 * engine is canceled by its owner. Accepts NULL. */
void ms__device_cancel(ms__device *d);

/** Fills the device fields of `out`. */
void ms__device_stats(const ms__device *d, ms_stats *out);

/** Why the device path is slower than it could be, or NULL. */
const char *ms__device_fallback(const ms__device *d);

/** The device index, for the tensors delivered. */
int ms__device_index(const ms__device *d);

/**
 * Stops the pump (canceling engine `e` if it still runs), waits for the copies in flight,
 * unpins what was pinned and frees the device memory. Call before the engine and the
 * sink are freed. Accepts NULL.
 */
void ms__device_free(ms__device *d, ms__engine *e);

#endif
