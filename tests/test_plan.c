/*
 * test_plan.c - the read plan: merging small neighbours, splitting large tensors into
 * aligned reads, skipping unselected bytes, and keeping files apart.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "plan.h"

TestSuite(plan, .timeout = 30);

static ms_tensor tensor(size_t file, uint64_t offset, uint64_t size)
{
	ms_tensor t;

	memset(&t, 0, sizeof(t));
	t.name = "t";
	t.file_index = file;
	t.file_offset = offset;
	t.size = size;
	return t;
}

static const ms__plan_options opts = {
    .extent_target = 1 << 20, .chunk_size = 1 << 20, .alignment = 4096};

Test(plan, merges_small_neighbours_up_to_the_target)
{
	ms_tensor table[100];
	ms__plan p;
	uint64_t offset = 100; /* an unaligned start, as after a header */

	for (int i = 0; i < 100; i++) {
		table[i] = tensor(0, offset, 100 * 1024);
		offset += 100 * 1024;
	}
	cr_assert_eq(ms__plan_build(&p, table, 100, NULL, &opts), 0);
	cr_assert_eq(p.tensor_count, 100);
	/* 10 tensors of 100 KiB fit in 1 MiB: 10 extents of 10 tensors. */
	cr_assert_eq(p.extent_count, 10, "extents: %zu", p.extent_count);
	cr_assert_eq(p.extents[0].tensor_count, 10);
	cr_assert_eq(p.extents[0].read_start, 0, "aligned down");
	for (size_t i = 0; i < p.extent_count; i++) {
		cr_assert_eq(p.extents[i].read_start % 4096, 0);
		cr_assert_eq(p.extents[i].read_end % 4096, 0);
		cr_assert_leq(p.extents[i].read_end - p.extents[i].read_start, (1 << 20) + 8192);
	}
	cr_assert_eq(p.bytes_total, 100 * 100 * 1024);
	ms__plan_free(&p);
}

Test(plan, splits_a_large_tensor_into_chunks)
{
	ms_tensor table[3] = {tensor(0, 8, 1000), tensor(0, 1008, 5u << 20),
	                      tensor(0, 1008 + (5u << 20), 1000)};
	ms__plan p;
	uint64_t off, len, covered = 0;

	cr_assert_eq(ms__plan_build(&p, table, 3, NULL, &opts), 0);
	cr_assert_eq(p.extent_count, 3, "large tensors stand alone");
	cr_assert_eq(p.extents[1].tensor_count, 1);
	cr_assert_eq(p.extents[1].read_count, 6);
	for (size_t r = 0; r < p.extents[1].read_count; r++) {
		ms__plan_read_range(&p.extents[1], opts.chunk_size, r, &off, &len);
		cr_assert_eq(off % 4096, 0);
		cr_assert_eq(off, p.extents[1].read_start + covered);
		covered += len;
	}
	cr_assert_eq(covered, p.extents[1].read_end - p.extents[1].read_start);
	cr_assert_leq(p.extents[1].read_start, 1008);
	cr_assert_geq(p.extents[1].read_end, 1008 + (5u << 20));
	cr_assert_eq(p.largest_tensor, 5u << 20);
	ms__plan_free(&p);
}

Test(plan, unselected_tensors_split_extents)
{
	ms_tensor table[4] = {tensor(0, 0, 4096), tensor(0, 4096, 4096), tensor(0, 8192, 4096),
	                      tensor(0, 12288, 4096)};
	unsigned char selected[4] = {1, 0, 1, 1};
	ms__plan p;

	cr_assert_eq(ms__plan_build(&p, table, 4, selected, &opts), 0);
	cr_assert_eq(p.tensor_count, 3);
	cr_assert_eq(p.extent_count, 2, "the unselected tensor is not read");
	cr_assert_eq(p.tensors[1].table_index, 2);
	cr_assert_eq(p.extents[1].read_start, 8192);
	cr_assert_eq(p.bytes_total, 3 * 4096);
	ms__plan_free(&p);
}

Test(plan, files_never_share_an_extent)
{
	ms_tensor table[2] = {tensor(0, 8, 100), tensor(1, 108, 100)};
	ms__plan p;

	cr_assert_eq(ms__plan_build(&p, table, 2, NULL, &opts), 0);
	cr_assert_eq(p.extent_count, 2);
	cr_assert_eq(p.extents[1].file_index, 1);
	ms__plan_free(&p);
}

Test(plan, empty_tensors_need_no_read)
{
	ms_tensor table[2] = {tensor(0, 100, 0), tensor(0, 100, 0)};
	ms__plan p;

	cr_assert_eq(ms__plan_build(&p, table, 2, NULL, &opts), 0);
	cr_assert_eq(p.extent_count, 1);
	cr_assert_eq(p.extents[0].read_count, 0);
	cr_assert_eq(p.read_count, 0);
	cr_assert_eq(p.spans_total, 0);
	ms__plan_free(&p);
}

Test(plan, nothing_selected)
{
	ms_tensor table[1] = {tensor(0, 0, 10)};
	unsigned char selected[1] = {0};
	ms__plan p;

	cr_assert_eq(ms__plan_build(&p, table, 1, selected, &opts), 0);
	cr_assert_eq(p.tensor_count, 0);
	cr_assert_eq(p.extent_count, 0);
	ms__plan_free(&p);
}
