/*
 * test_engine.c - streaming end to end through the public API: every byte of every tensor
 * in every memory mode, delivery order, the ring's promise never to overwrite a held
 * tensor, cancel from another thread, and failures in the middle of a stream.
 *
 * Files come from stgen, whose content is a function of (seed, offset): each delivered
 * tensor is compared with what stgen says its bytes must be.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelstream.h"
#include "support/stgen.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(engine, .fini = teardown, .timeout = 120);

typedef struct {
	char path[4096];
	stgen_spec spec;
	stgen_tensor *tensors;
	size_t count;
	uint64_t data_start; /* file offset of the data section */
} model;

static void model_make(model *m, const char *name, uint64_t seed, size_t small, size_t large,
                       uint64_t large_bytes)
{
	stgen_spec spec = STGEN_SPEC_INIT;
	FILE *f;
	unsigned char prefix[8];

	spec.seed = seed;
	spec.small_count = small;
	spec.small_max_bytes = 16 * 1024;
	spec.large_count = large;
	spec.large_bytes = large_bytes;
	spec.json_order = STGEN_JSON_SORTED;
	m->spec = spec;
	tu_path(m->path, sizeof(m->path), name);
	cr_assert_eq(stgen_write(m->path, &m->spec), 0, "stgen_write %s", m->path);
	cr_assert_eq(stgen_plan(&m->tensors, &m->count, &m->spec), 0);
	f = fopen(m->path, "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(prefix, 1, 8, f), 8);
	fclose(f);
	m->data_start = 8;
	for (int i = 0; i < 8; i++)
		m->data_start += (uint64_t)prefix[i] << (8 * i);
}

static void model_free(model *m)
{
	free(m->tensors);
	m->tensors = NULL;
}

/* Checks a delivered tensor against the model: name, size, offset and every byte. */
static void check_tensor(const model *m, size_t index, const ms_tensor *t)
{
	const stgen_tensor *want = &m->tensors[index];
	unsigned char *expected;

	cr_assert_str_eq(t->name, want->name, "tensor %zu", index);
	cr_assert_eq(t->size, want->end - want->begin, "%s size", t->name);
	cr_assert_eq(t->file_offset, m->data_start + want->begin, "%s offset", t->name);
	cr_assert_str_eq(ms_dtype_name(t->dtype), want->dtype);
	cr_assert_eq(t->ndim, want->ndim);
	for (size_t d = 0; d < t->ndim; d++)
		cr_assert_eq((uint64_t)t->shape[d], want->shape[d]);
	cr_assert_not_null(t->data, "%s has no data", t->name);
	if (t->size == 0)
		return;
	expected = malloc(t->size);
	cr_assert_not_null(expected);
	stgen_fill(expected, t->size, m->spec.seed, want->begin);
	cr_assert(memcmp(expected, t->data, t->size) == 0, "%s: bytes differ", t->name);
	free(expected);
}

/* Streams the whole model with the given options and checks every tensor. */
static void stream_and_check(const model *m, ms_streamer_options *opts)
{
	ms_streamer *s = NULL;
	const ms_tensor *t;
	size_t delivered = 0;
	ms_stats st = MS_STATS_INIT;
	int rc;

	cr_assert_eq(ms_streamer_new(&s, opts), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_add(s, m->path), 0, "%s", ms_error_last()->message);
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		cr_assert_lt(delivered, m->count);
		check_tensor(m, delivered, t);
		cr_assert_eq(ms_tensor_release(s, t), 0);
		delivered++;
	}
	cr_assert_eq(rc, MS_ITER_END, "next: %d %s", rc, ms_error_last()->message);
	cr_assert_eq(ms_streamer_next(&t, s), MS_ITER_END, "the end is sticky");
	cr_assert_eq(delivered, m->count);
	ms_streamer_stats(&st, s);
	cr_assert_eq(st.tensors_delivered, m->count);
	cr_assert_eq(st.tensors_total, m->count);
	cr_assert_eq(st.bytes_delivered, st.bytes_total);
	cr_assert_geq(st.bytes_read, st.bytes_total);
	cr_assert_gt(st.read_requests, 0);
	cr_assert_gt(st.elapsed_ns, 0);
	if (opts->memory_limit > 0)
		cr_assert_leq(st.arena_bytes, (uint64_t)opts->memory_limit + (4u << 20),
		              "the arena respects the limit (up to huge-page rounding)");
	if (opts->arena_pages == MS_ARENA_PAGES_AUTO &&
	    strcmp(getenv("MS_TEST_HUGEPAGES") ? getenv("MS_TEST_HUGEPAGES") : "", "reserved") == 0)
		cr_assert_eq(st.arena_huge_pages, 2, "reserved huge pages are used when there");
	ms_streamer_free(s);
}

Test(engine, unlimited_memory_every_byte)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;

	model_make(&m, "a.safetensors", 11, 500, 3, 6u << 20);
	stream_and_check(&m, &opts);
	opts.concurrency = 1;
	stream_and_check(&m, &opts);
	model_free(&m);
}

Test(engine, ring_minimum_and_limited)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;

	model_make(&m, "b.safetensors", 12, 400, 4, 4u << 20);
	opts.memory_limit = MS_MEMORY_MINIMUM;
	stream_and_check(&m, &opts);
	opts.memory_limit = 3 * (4u << 20);
	opts.concurrency = 8;
	stream_and_check(&m, &opts);
	/* Small reads: many per extent, many extents in flight, the ring wraps often. */
	opts.chunk_size = 64 * 1024;
	opts.memory_limit = 5 * (4u << 20) + 12345;
	stream_and_check(&m, &opts);
	model_free(&m);
}

Test(engine, small_tensors_only_ring_wraps)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;

	model_make(&m, "c.safetensors", 13, 3000, 0, 0);
	opts.memory_limit = 256 * 1024; /* extents of 64 KiB, the ring wraps dozens of times */
	opts.chunk_size = 64 * 1024;
	opts.concurrency = 4;
	stream_and_check(&m, &opts);
	model_free(&m);
}

Test(engine, direct_io_on_and_off)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	ms_file_info info = MS_FILE_INFO_INIT;

	model_make(&m, "d.safetensors", 14, 200, 2, 3u << 20);
	opts.direct_io = MS_DIRECT_IO_OFF;
	stream_and_check(&m, &opts);
	opts.direct_io = MS_DIRECT_IO_ON;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	if (ms_streamer_add(s, m.path) == 0) {
		cr_assert_eq(ms_streamer_file_info(&info, s, 0), 0);
		cr_assert_eq(info.direct_io, 1);
		ms_streamer_free(s);
		/* Unaligned tensors, aligned reads: O_DIRECT must still give exact bytes. */
		stream_and_check(&m, &opts);
	} else {
		/* A file system without O_DIRECT (tmpfs) must say so, naming the file. */
		cr_assert(strstr(ms_error_last()->message, "O_DIRECT") != NULL);
		ms_streamer_free(s);
	}
	model_free(&m);
}

Test(engine, several_files_in_order_with_selection)
{
	model a, b;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	const char *patterns[] = {"*.mlp.*", "lm_head.weight"};
	const char *paths[2];
	ms_streamer *s = NULL;
	const ms_tensor *t;
	size_t expected = 0, got = 0;
	int rc;

	model_make(&a, "e1.safetensors", 21, 300, 1, 1u << 20);
	model_make(&b, "e2.safetensors", 22, 300, 1, 1u << 20);
	for (size_t i = 0; i < a.count; i++)
		expected += strstr(a.tensors[i].name, ".mlp.") != NULL ||
		            strcmp(a.tensors[i].name, "lm_head.weight") == 0;
	for (size_t i = 0; i < b.count; i++)
		expected += strstr(b.tensors[i].name, ".mlp.") != NULL ||
		            strcmp(b.tensors[i].name, "lm_head.weight") == 0;
	cr_assert_gt(expected, 0);
	opts.select = patterns;
	opts.select_count = 2;
	opts.memory_limit = MS_MEMORY_MINIMUM;
	paths[0] = a.path;
	paths[1] = b.path;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add_many(s, paths, 2), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_count(s), 2);
	{
		size_t ia = 0, ib = 0;

		while ((rc = ms_streamer_next(&t, s)) == 0) {
			const model *m = t->file_index == 0 ? &a : &b;
			size_t *cursor = t->file_index == 0 ? &ia : &ib;

			/* File order: every tensor of file 0 comes before any of file 1. */
			if (t->file_index == 1)
				cr_assert(ia > 0 || expected == 0);
			else
				cr_assert_eq(ib, 0, "file 0 tensor after a file 1 tensor");
			while (*cursor < m->count && strcmp(m->tensors[*cursor].name, t->name) != 0)
				(*cursor)++;
			cr_assert_lt(*cursor, m->count, "%s delivered out of order", t->name);
			check_tensor(m, *cursor, t);
			(*cursor)++;
			ms_tensor_release(s, t);
			got++;
		}
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(got, expected);
	ms_streamer_free(s);
	model_free(&a);
	model_free(&b);
}

Test(engine, held_tensors_are_never_overwritten)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *held[8];
	size_t index[8];
	size_t n = 0, next = 0;
	const ms_tensor *t;
	int rc;

	model_make(&m, "f.safetensors", 31, 2000, 0, 0);
	opts.memory_limit = 512 * 1024;
	opts.chunk_size = 64 * 1024;
	opts.concurrency = 8;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	/* Hold a window of 8 tensors; release them newest first; check each before. */
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		held[n] = t;
		index[n] = next++;
		if (++n == 8) {
			while (n > 0) {
				n--;
				check_tensor(&m, index[n], held[n]);
				cr_assert_eq(ms_tensor_release(s, held[n]), 0);
			}
		}
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	while (n > 0) {
		n--;
		check_tensor(&m, index[n], held[n]);
		ms_tensor_release(s, held[n]);
	}
	ms_streamer_free(s);
	model_free(&m);
}

Test(engine, holding_too_much_fails_with_elimit)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int rc;

	model_make(&m, "g.safetensors", 41, 10, 4, 2u << 20);
	opts.memory_limit = MS_MEMORY_MINIMUM;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	/* Never release: the ring holds one large tensor, so a later one cannot fit. */
	while ((rc = ms_streamer_next(&t, s)) == 0)
		;
	cr_assert_eq(rc, MS_ELIMIT, "rc %d: %s", rc, ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, "ms_tensor_release") != NULL);
	ms_streamer_free(s);
	model_free(&m);
}

Test(engine, limit_below_largest_tensor_is_rejected)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;

	model_make(&m, "h.safetensors", 51, 10, 1, 2u << 20);
	opts.memory_limit = 1u << 20;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), MS_ELIMIT);
	cr_assert(strstr(ms_error_last()->message, "smaller than tensor") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, m.path) != NULL);
	/* The failure is sticky and says the same each time. */
	cr_assert_eq(ms_streamer_next(&t, s), MS_ELIMIT);
	cr_assert_eq(ms_streamer_add(s, m.path), MS_ESTATE);
	ms_streamer_free(s);
	model_free(&m);
}

typedef struct {
	ms_streamer *s;
	useconds_t delay;
} canceler;

static void *cancel_later(void *arg)
{
	canceler *c = arg;

	usleep(c->delay);
	ms_streamer_cancel(c->s);
	ms_streamer_cancel(c->s); /* any number of times */
	return NULL;
}

Test(engine, cancel_from_another_thread)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	canceler c;
	pthread_t thread;
	int rc;

	model_make(&m, "i.safetensors", 61, 100, 2, 4u << 20);
	opts.memory_limit = MS_MEMORY_MINIMUM;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	/* Take one tensor and hold it: the engine stalls on the ring; the consumer never
	 * asks again, and a second thread cancels. */
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	c.s = s;
	c.delay = 20000;
	cr_assert_eq(pthread_create(&thread, NULL, cancel_later, &c), 0);
	pthread_join(thread, NULL);
	rc = ms_streamer_next(&t, s);
	cr_assert_eq(rc, MS_ECANCELED, "rc %d: %s", rc, ms_error_last()->message);
	ms_streamer_free(s);

	/* Cancel while the consumer is blocked inside next(). */
	opts.memory_limit = MS_MEMORY_UNLIMITED;
	opts.concurrency = 1;
	opts.chunk_size = 64 * 1024;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	c.s = s;
	c.delay = 1000;
	cr_assert_eq(pthread_create(&thread, NULL, cancel_later, &c), 0);
	while ((rc = ms_streamer_next(&t, s)) == 0)
		;
	pthread_join(thread, NULL);
	cr_assert(rc == MS_ECANCELED || rc == MS_ITER_END, "rc %d", rc);
	ms_streamer_free(s);

	/* Cancel before streaming starts. */
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	ms_streamer_cancel(s);
	cr_assert_eq(ms_streamer_next(&t, s), MS_ECANCELED);
	ms_streamer_free(s);
	model_free(&m);
}

Test(engine, free_while_streaming_joins_cleanly)
{
	model m;
	ms_streamer *s = NULL;
	const ms_tensor *t;

	model_make(&m, "j.safetensors", 71, 500, 2, 4u << 20);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	ms_streamer_free(s); /* workers still reading: free stops and joins them */
	model_free(&m);
}

Test(engine, file_truncated_after_add_fails_clearly)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int rc;

	model_make(&m, "k.safetensors", 81, 50, 2, 2u << 20);
	opts.direct_io = MS_DIRECT_IO_OFF;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(truncate(m.path, (off_t)(m.data_start + 4096)), 0);
	while ((rc = ms_streamer_next(&t, s)) == 0)
		;
	cr_assert_eq(rc, MS_EIO, "rc %d: %s", rc, ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, m.path) != NULL, "%s", ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, "truncated") != NULL, "%s",
	          ms_error_last()->message);
	/* The error is replayed, not turned into the end of the stream. */
	cr_assert_eq(ms_streamer_next(&t, s), MS_EIO);
	ms_streamer_free(s);
	model_free(&m);
}

Test(engine, release_misuse_is_rejected)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	ms_tensor fake;

	model_make(&m, "l.safetensors", 91, 20, 0, 0);
	opts.memory_limit = MS_MEMORY_MINIMUM;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_tensor_release(s, NULL), MS_EINVAL);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	memset(&fake, 0, sizeof(fake));
	cr_assert_eq(ms_tensor_release(s, &fake), MS_EINVAL);
	cr_assert_eq(ms_tensor_release(s, t), 0);
	cr_assert_eq(ms_tensor_release(s, t), MS_EINVAL, "double release");
	ms_streamer_free(s);
	model_free(&m);
}

Test(engine, copy_outlives_the_streamer)
{
	model m;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	unsigned char *copy;
	uint64_t size;
	unsigned char *expected;

	model_make(&m, "n.safetensors", 101, 5, 1, 1u << 20);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	size = t->size;
	copy = malloc(size);
	cr_assert_eq(ms_tensor_copy(copy, size - 1, t), MS_EINVAL, "too small a buffer");
	cr_assert_eq(ms_tensor_copy(copy, size, t), 0);
	ms_streamer_free(s);
	expected = malloc(size);
	stgen_fill(expected, size, m.spec.seed, m.tensors[0].begin);
	cr_assert(memcmp(copy, expected, size) == 0);
	free(copy);
	free(expected);
	model_free(&m);
}

Test(engine, empty_and_zero_size_tensors)
{
	char path[4096];
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int count = 0, rc;

	tu_path(path, sizeof(path), "empty.safetensors");
	tu_write_safetensors(path, "{}      ", 0, 1);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_next(&t, s), MS_ITER_END);
	ms_streamer_free(s);

	tu_path(path, sizeof(path), "zero.safetensors");
	tu_write_safetensors(path,
	                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
	                     "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
	                     "\"c\":{\"dtype\":\"F16\",\"shape\":[2,0],\"data_offsets\":[3,3]},"
	                     "\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[3,4]}}",
	                     4, 5);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		cr_assert_not_null(t->data, "even an empty tensor has a valid pointer");
		if (strcmp(t->name, "b") == 0)
			for (int i = 0; i < 3; i++)
				cr_assert_eq(((const unsigned char *)t->data)[i],
				             stgen_byte(5, (uint64_t)i));
		if (strcmp(t->name, "s") == 0) {
			cr_assert_eq(t->ndim, 0);
			cr_assert_null(t->shape);
			cr_assert_eq(((const unsigned char *)t->data)[0], stgen_byte(5, 3));
		}
		count++;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(count, 4);
	ms_streamer_free(s);
}

Test(engine, arena_page_kind_follows_the_option)
{
	model m;
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	ms_stats st = MS_STATS_INIT;
	const char *mode = getenv("MS_TEST_HUGEPAGES");

	model_make(&m, "p.safetensors", 111, 50, 1, 4u << 20);
	opts.arena_pages = MS_ARENA_PAGES_SMALL;
	stream_and_check(&m, &opts);
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	ms_streamer_stats(&st, s);
	cr_assert_eq(st.arena_huge_pages, 0, "small pages were asked for");
	ms_streamer_free(s);

	opts.arena_pages = MS_ARENA_PAGES_RESERVED;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	if (mode != NULL && strcmp(mode, "reserved") == 0) {
		cr_assert_eq(ms_streamer_next(&t, s), 0, "%s", ms_error_last()->message);
		ms_streamer_stats(&st, s);
		cr_assert_eq(st.arena_huge_pages, 2);
	} else if (mode != NULL && strcmp(mode, "none") == 0) {
		cr_assert_eq(ms_streamer_next(&t, s), MS_ENOMEM);
		cr_assert(strstr(ms_error_last()->message, "nr_hugepages") != NULL, "%s",
		          ms_error_last()->message);
	}
	ms_streamer_free(s);
	model_free(&m);
}
