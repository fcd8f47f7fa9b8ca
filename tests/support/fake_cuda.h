/*
 * fake_cuda.h - what the stand-in driver (fake_cuda.c) counts, for the tests that load it:
 * they look fake_cuda_get_counters up with dlsym in the library it was loaded as.
 */
#ifndef FAKE_CUDA_H
#define FAKE_CUDA_H

#include <stddef.h>

typedef struct {
	size_t pinned_copies;     /* from registered memory: asynchronous */
	size_t pageable_copies;   /* from memory that is not: staged by the "driver" */
	size_t bytes;             /* copied to devices */
	size_t most_streams_busy; /* the most streams copying at one moment */
	size_t registrations;     /* cuMemHostRegister calls that succeeded */
	size_t read_only_registrations;
	size_t live_allocations; /* device allocations not freed */
	size_t live_registrations;
	size_t live_streams;
	size_t live_events;
	size_t retained_contexts;
} fake_cuda_counters;

void fake_cuda_get_counters(fake_cuda_counters *out);

#endif
