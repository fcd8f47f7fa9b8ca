/*
 * sink_cuda.h - CUDA devices, as the rest of the library sees them: by index and opaque
 * handles, with no CUDA type in sight. Everything that knows CUDA exists is in
 * sink_cuda.c, which loads the driver API (libcuda.so.1) at run time, so the library needs
 * no CUDA toolkit to build and images need no CUDA runtime.
 *
 * A session (ms__cuda) is one device's primary context with its copy streams and a pool
 * of events. Every call makes the context current on the calling thread for its own
 * duration (push, call, pop), so any thread may use a session; device addresses are
 * uint64_t (CUdeviceptr).
 *
 * Thread rules: the device functions (parse, check, count, copy_back) from any thread;
 * the driver is loaded once per process. A session's calls may come from several threads
 * at once, except close, which must be the last.
 */
#ifndef MS_SINK_CUDA_H
#define MS_SINK_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Checks that CUDA device `index` can be used: the driver loads and initialises and the
 * device exists. Returns 0, or MS_ENODEVICE with one line: "cuda:0: no NVIDIA driver:
 * libcuda.so.1 not found", "cuda:3: no such device, 1 present", or the driver's own words.
 * MODELSTREAM_CUDA_DRIVER names another driver library (tests use a fake one).
 */
int ms__cuda_device_check(int index);

/** The number of CUDA devices (0 without a driver), for messages and tests. */
int ms__cuda_device_count(void);

/**
 * Copies `size` bytes at device address `src` on device `device` into host memory `dst`,
 * synchronously. Returns 0, MS_ENODEVICE or MS_EIO with the driver's words.
 */
int ms__cuda_copy_back(void *dst, int device, uint64_t src, uint64_t size);

typedef struct ms__cuda ms__cuda;

/**
 * Opens a session on device `index` with `streams` copy streams (at least 1) and `events`
 * events (at least 1), numbered from 0. Returns 0, MS_ENODEVICE, or MS_ENOMEM / MS_EIO
 * with the driver's words.
 */
int ms__cuda_open(ms__cuda **out, int index, unsigned streams, unsigned events);

/** "cuda:0 (NVIDIA H200)", for messages. */
const char *ms__cuda_name(const ms__cuda *c);

/** The device's free and total memory in bytes. Returns 0 or MS_EIO. */
int ms__cuda_memory(const ms__cuda *c, uint64_t *out_free, uint64_t *out_total);

/** Allocates `size` bytes of device memory. Returns 0, or MS_ELIMIT naming the size. */
int ms__cuda_alloc(ms__cuda *c, uint64_t *out, uint64_t size);

/** Frees what ms__cuda_alloc() returned; accepts 0. */
void ms__cuda_free(ms__cuda *c, uint64_t ptr);

/**
 * The device that device address `ptr` belongs to, in *out, or -1 where the driver cannot
 * tell (memory it did not allocate). Returns 0.
 */
int ms__cuda_pointer_device(const ms__cuda *c, int *out, uint64_t ptr);

/**
 * Pins `size` bytes at `p` (page-aligned) for the copy engine (cuMemHostRegister;
 * `read_only` for a read-only mapping). Returns 0, or MS_EUNSUPPORTED with the driver's
 * words in the message when it refuses.
 */
int ms__cuda_register(ms__cuda *c, const void *p, size_t size, bool read_only);

/** Undoes ms__cuda_register() at `p`. */
void ms__cuda_unregister(ms__cuda *c, const void *p);

/**
 * Queues a copy of `size` host bytes at `src` to device address `dst` on stream `stream`.
 * From pinned memory the call returns at once; from pageable memory the driver may stage
 * it before returning. Returns 0 or MS_EIO with the driver's words.
 */
int ms__cuda_copy(ms__cuda *c, uint64_t dst, const void *src, uint64_t size, unsigned stream);

/** Records event `event` on stream `stream`: it completes once the copies queued on the
 * stream before it have. Returns 0 or MS_EIO. */
int ms__cuda_record(ms__cuda *c, unsigned event, unsigned stream);

/**
 * Whether event `event` has completed: 0 yes, 1 not yet. With `wait`, blocks until it has.
 * Returns 0, 1, or MS_EIO (a copy failed).
 */
int ms__cuda_done(ms__cuda *c, unsigned event, bool wait);

/** Waits until every copy queued on every stream has finished. */
void ms__cuda_sync(ms__cuda *c);

/** Waits for every stream, then frees the streams, events and context. Accepts NULL. */
void ms__cuda_close(ms__cuda *c);

#endif
