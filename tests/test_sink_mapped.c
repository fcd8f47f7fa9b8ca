/*
 * test_sink_mapped.c - zero-copy delivery (lib/sink_mapped.c, MS_DELIVER_MAPPED and
 * MS_DELIVER_AUTO): the same tensors as copy delivery, pointers into the file's own pages,
 * no arena and no ring limit, and the rules for what can and cannot be mapped.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "modelstream.h"
#include "support/stgen.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(sink_mapped, .fini = teardown, .timeout = 60);

static void model(char *path, size_t size, const char *name, uint64_t seed)
{
	stgen_spec spec = STGEN_SPEC_INIT;

	spec.seed = seed;
	spec.small_count = 300;
	spec.small_max_bytes = 8192;
	spec.large_count = 3;
	spec.large_bytes = 3 << 20;
	tu_path(path, size, name);
	cr_assert_eq(stgen_write(path, &spec), 0);
}

static ms_streamer *streamer(ms_deliver deliver, int64_t memory_limit, const char *path)
{
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;

	o.deliver = deliver;
	o.memory_limit = memory_limit;
	o.concurrency = 4;
	cr_assert_eq(ms_streamer_new(&s, &o), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	return s;
}

Test(sink_mapped, the_same_tensors_as_copy_delivery_with_no_arena)
{
	char a[4096], b[4096];
	ms_streamer *copy, *mapped;
	const ms_tensor *x, *y;
	ms_stats st = MS_STATS_INIT;
	size_t n = 0;
	int rc;

	model(a, sizeof(a), "a.safetensors", 3);
	model(b, sizeof(b), "b.safetensors", 4);
	copy = streamer(MS_DELIVER_COPY, MS_MEMORY_UNLIMITED, a);
	mapped = streamer(MS_DELIVER_MAPPED, MS_MEMORY_UNLIMITED, a);
	cr_assert_eq(ms_streamer_add(copy, b), 0);
	cr_assert_eq(ms_streamer_add(mapped, b), 0);
	cr_assert_eq(ms_streamer_delivery(mapped), MS_DELIVER_AUTO, "undecided before next()");
	while ((rc = ms_streamer_next(&x, mapped)) == 0) {
		cr_assert_eq(ms_streamer_next(&y, copy), 0);
		cr_assert_str_eq(x->name, y->name);
		cr_assert_eq(x->size, y->size);
		cr_assert_eq(x->file_index, y->file_index);
		cr_assert(x->size == 0 || memcmp(x->data, y->data, x->size) == 0, "%s differs",
		          x->name);
		cr_assert_neq(x->data, y->data);
		n++;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_next(&y, copy), MS_ITER_END);
	cr_assert_gt(n, 600);
	cr_assert_eq(ms_streamer_delivery(mapped), MS_DELIVER_MAPPED);
	cr_assert_eq(ms_streamer_delivery(copy), MS_DELIVER_COPY);
	ms_streamer_stats(&st, mapped);
	cr_assert_eq(st.arena_bytes, 0, "mapped delivery maps no arena");
	cr_assert_eq(st.tensors_delivered, n);
	ms_streamer_stats(&st, copy);
	cr_assert_gt(st.arena_bytes, 0);
	ms_streamer_free(mapped);
	ms_streamer_free(copy);
}

/* The tensor's data is the file's byte at its offset: nothing was copied. */
Test(sink_mapped, data_points_into_the_file)
{
	char a[4096];
	ms_streamer *s;
	const ms_tensor *t, *first = NULL;
	int rc;

	model(a, sizeof(a), "a.safetensors", 5);
	s = streamer(MS_DELIVER_MAPPED, MS_MEMORY_UNLIMITED, a);
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		if (first == NULL) {
			first = t;
			continue;
		}
		cr_assert_eq((const unsigned char *)t->data - (const unsigned char *)first->data,
		             (ptrdiff_t)(t->file_offset - first->file_offset),
		             "tensors sit at their file offsets in one mapping");
	}
	cr_assert_eq(rc, MS_ITER_END);
	ms_streamer_free(s);
}

/* No ring: holding every tensor at the smallest memory limit is fine, where copy
 * delivery would report MS_ELIMIT. */
Test(sink_mapped, a_memory_limit_does_not_bound_the_files_pages)
{
	char a[4096];
	ms_streamer *s;
	const ms_tensor *t;
	size_t held = 0;
	int rc;

	model(a, sizeof(a), "a.safetensors", 6);
	s = streamer(MS_DELIVER_MAPPED, MS_MEMORY_MINIMUM, a);
	while ((rc = ms_streamer_next(&t, s)) == 0)
		held++; /* never released */
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_gt(held, 300);
	ms_streamer_free(s);
}

Test(sink_mapped, auto_maps_a_file_in_the_page_cache)
{
	char a[4096];
	ms_streamer *s;
	const ms_tensor *t;

	model(a, sizeof(a), "a.safetensors", 7); /* just written: every page is cached */
	s = streamer(MS_DELIVER_AUTO, MS_MEMORY_UNLIMITED, a);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	cr_assert_eq(ms_streamer_delivery(s), MS_DELIVER_MAPPED);
	ms_streamer_free(s);
}

Test(sink_mapped, a_bad_mode_is_refused_and_version_1_options_copy)
{
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	char a[4096];
	/* A caller built against version 1 of the header: its struct ends before deliver. */
	unsigned char v1[sizeof(ms_streamer_options)];

	o.deliver = (ms_deliver)9;
	cr_assert_eq(ms_streamer_new(&s, &o), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "delivery mode 9") != NULL);
	model(a, sizeof(a), "a.safetensors", 8);
	o = (ms_streamer_options)MS_STREAMER_OPTIONS_INIT;
	o.version = 1;
	memset(v1, 0x7f, sizeof(v1)); /* what lies past a version-1 struct: garbage */
	memcpy(v1, &o, offsetof(ms_streamer_options, deliver));
	cr_assert_eq(ms_streamer_new(&s, (const ms_streamer_options *)v1), 0, "%s",
	             ms_error_last()->message);
	cr_assert_eq(ms_streamer_add(s, a), 0);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	cr_assert_eq(ms_streamer_delivery(s), MS_DELIVER_COPY, "version 1 knows only copy");
	ms_streamer_free(s);
}
