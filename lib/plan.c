/*
 * plan.c - building the read plan from the selected tensors.
 *
 * A tensor joins the current extent when it is in the same file, starts where the
 * previous selected tensor ended (no unselected bytes in between: those would be read for
 * nothing), and the merged size stays within the target. Reads of an extent are cut at
 * chunk_size boundaries measured from the extent's aligned start, so all but the last
 * are full, aligned chunks.
 */
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "plan.h"

static uint64_t align_down(uint64_t v, uint64_t align)
{
	return v & ~(align - 1);
}

static uint64_t align_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static size_t reads_for(uint64_t span, uint64_t chunk)
{
	return span == 0 ? 0 : (size_t)((span + chunk - 1) / chunk);
}

static void close_extent(ms__plan *p, ms__extent *e, uint64_t end, const ms__plan_options *o)
{
	uint64_t span;

	/* An extent of empty tensors needs no read and no memory. */
	e->read_end = e->bytes == 0 ? e->read_start : align_up(end, o->alignment);
	span = e->read_end - e->read_start;
	e->read_count = reads_for(span, o->chunk_size);
	p->read_count += e->read_count;
	p->spans_total += span;
	if (span > p->largest_span)
		p->largest_span = span;
}

int ms__plan_build(ms__plan *out, const ms_tensor *table, size_t count,
                   const unsigned char *selected, const ms__plan_options *opts)
{
	ms__plan p;
	ms__extent *e = NULL;
	uint64_t end = 0;
	int rc = 0;

	memset(&p, 0, sizeof(p));
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < count; i++)
		if (selected == NULL || selected[i])
			p.tensor_count++;
	if (p.tensor_count == 0)
		return 0;
	/* At most one extent per selected tensor; the plan is small next to the data. */
	p.tensors = ms__calloc(p.tensor_count, sizeof(*p.tensors));
	p.extents = ms__calloc(p.tensor_count, sizeof(*p.extents));
	if (p.tensors == NULL || p.extents == NULL) {
		rc = ms__error_set(MS_ENOMEM, "out of memory planning reads of %zu tensors",
		                   p.tensor_count);
		goto done;
	}
	p.tensor_count = 0;
	for (size_t i = 0; i < count; i++) {
		const ms_tensor *t = &table[i];
		uint64_t t_end = t->file_offset + t->size;

		if (selected != NULL && !selected[i])
			continue;
		if (e == NULL || t->file_index != e->file_index || t->file_offset != end ||
		    t_end - e->read_start > opts->extent_target) {
			if (e != NULL)
				close_extent(&p, e, end, opts);
			e = &p.extents[p.extent_count++];
			e->file_index = t->file_index;
			e->read_start = align_down(t->file_offset, opts->alignment);
			e->first_tensor = p.tensor_count;
		}
		p.tensors[p.tensor_count].table_index = i;
		p.tensors[p.tensor_count].extent = p.extent_count - 1;
		p.tensor_count++;
		e->tensor_count++;
		e->bytes += t->size;
		end = t_end;
		p.bytes_total += t->size;
		if (t->size > p.largest_tensor)
			p.largest_tensor = t->size;
	}
	close_extent(&p, e, end, opts);
	*out = p;
	memset(&p, 0, sizeof(p));
done:
	ms__plan_free(&p);
	return rc;
}

void ms__plan_free(ms__plan *plan)
{
	ms__free(plan->tensors);
	ms__free(plan->extents);
	memset(plan, 0, sizeof(*plan));
}

void ms__plan_read_range(const ms__extent *e, uint64_t chunk_size, size_t read_index,
                         uint64_t *out_offset, uint64_t *out_length)
{
	uint64_t offset = e->read_start + (uint64_t)read_index * chunk_size;
	uint64_t left = e->read_end - offset;

	*out_offset = offset;
	*out_length = left < chunk_size ? left : chunk_size;
}

int ms__plan_chunks(ms__plan *out, uint64_t size, uint64_t chunk_size, const unsigned char *skip)
{
	uint64_t chunks = chunk_size > 0 ? (size + chunk_size - 1) / chunk_size : 0;

	memset(out, 0, sizeof(*out));
	if (chunks > SIZE_MAX / sizeof(*out->extents))
		return ms__error_set(MS_ENOMEM, "a plan of %llu chunks",
		                     (unsigned long long)chunks);
	out->extents = ms__calloc(chunks > 0 ? (size_t)chunks : 1, sizeof(*out->extents));
	if (out->extents == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory planning %llu chunks",
		                     (unsigned long long)chunks);
	for (uint64_t i = 0; i < chunks; i++) {
		ms__extent *x;

		if (skip != NULL && skip[i])
			continue;
		x = &out->extents[out->extent_count++];
		x->read_start = i * chunk_size;
		x->read_end = size - x->read_start < chunk_size ? size : x->read_start + chunk_size;
		x->read_count = 1;
		x->bytes = x->read_end - x->read_start;
		out->read_count++;
		out->bytes_total += x->bytes;
		out->spans_total += x->bytes;
		if (x->bytes > out->largest_span)
			out->largest_span = x->bytes;
	}
	return 0;
}
