/*
 * plan.h - the read plan: which byte ranges to read, in which order, into how much space.
 *
 * The plan turns the selected tensors into extents: runs of tensors that lie next to each
 * other in one file, merged up to a target size so that thousands of small tensors cost a
 * few large reads, while a tensor larger than the target is an extent of its own and is
 * split into several reads that run in parallel. Each extent occupies one contiguous
 * block of the arena, so every tensor's bytes are contiguous in memory.
 */
#ifndef MS_PLAN_H
#define MS_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"

typedef struct {
	size_t file_index;
	uint64_t read_start; /* file offset, aligned down to the plan's alignment */
	uint64_t read_end;   /* aligned up; may pass the end of the file */
	size_t first_tensor; /* index into ms__plan.tensors */
	size_t tensor_count;
	size_t read_count; /* reads of at most chunk_size bytes */
	uint64_t bytes;    /* bytes of its tensors */
} ms__extent;

typedef struct {
	size_t table_index; /* index into the caller's tensor table */
	size_t extent;      /* index into ms__plan.extents */
} ms__plan_tensor;

typedef struct {
	ms__extent *extents;
	size_t extent_count;
	ms__plan_tensor *tensors; /* selected tensors in file order */
	size_t tensor_count;
	size_t read_count;    /* all reads of all extents */
	uint64_t bytes_total; /* bytes of the selected tensors */
	uint64_t largest_tensor;
	uint64_t largest_span; /* the largest extent's read_end - read_start */
	uint64_t spans_total;  /* every extent's span, added up */
} ms__plan;

typedef struct {
	uint64_t extent_target; /* merge small tensors up to this many bytes */
	uint64_t chunk_size;    /* the largest single read */
	uint64_t alignment;     /* a power of two; read ranges align to it */
} ms__plan_options;

/**
 * Plans reads of the tensors `table[i]` with `selected[i]` set (`selected` may be NULL for
 * all). `table` is in file order (file index, then offset). Returns 0 or MS_ENOMEM; free
 * the plan with ms__plan_free().
 */
int ms__plan_build(ms__plan *out, const ms_tensor *table, size_t count,
                   const unsigned char *selected, const ms__plan_options *opts);

/**
 * Plans a whole-object download: one extent of one read per `chunk_size` bytes of file 0
 * (`size` bytes), leaving out chunk i where `skip[i]` is set (done before; `skip` may be
 * NULL). No tensors. Returns 0 or MS_ENOMEM.
 */
int ms__plan_chunks(ms__plan *out, uint64_t size, uint64_t chunk_size, const unsigned char *skip);

void ms__plan_free(ms__plan *plan);

/** The file range of read `read_index` (0-based) of extent `e`. */
void ms__plan_read_range(const ms__extent *e, uint64_t chunk_size, size_t read_index,
                         uint64_t *out_offset, uint64_t *out_length);

#endif
