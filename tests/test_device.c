/*
 * test_device.c - streaming into device memory (lib/device.c over lib/sink_cuda.c) with
 * the stand-in driver (tests/support/fake_cuda.c): the bytes of every tensor on the
 * "device" equal the file's, through the pinned staging ring, through registered mappings,
 * into the library's arena and into the caller's buffers; a ring slot is never reused
 * before its copy has run (copies are slowed down to make that visible); copies overlap
 * on two streams; two devices at once; the fallbacks and errors; nothing leaks.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/fake_cuda.h"
#include "modelstream.h"
#include "support/stgen.h"
#include "support/testutil.h"

TestSuite(device, .timeout = 60);

static char driver_path[PATH_MAX];

static void use_fake_driver(const char *devices)
{
	tu_use_fake_cuda(driver_path, sizeof(driver_path), devices);
}

/* The driver the library loaded, for its counters and for the caller's own memory. */
static void *driver(void)
{
	void *lib = dlopen(driver_path, RTLD_NOW | RTLD_NOLOAD);

	cr_assert_not_null(lib, "the library loaded the fake driver");
	return lib;
}

static fake_cuda_counters counters(void)
{
	void (*get)(fake_cuda_counters *);
	void *p = dlsym(driver(), "fake_cuda_get_counters");
	fake_cuda_counters c;

	memcpy(&get, &p, sizeof(p));
	get(&c);
	return c;
}

typedef struct {
	char path[PATH_MAX];
	uint64_t seed;
	uint64_t data_start;
} model;

static void make_model(model *m, const char *name, uint64_t seed, size_t small, uint64_t small_max,
                       size_t large, uint64_t large_bytes)
{
	stgen_spec spec = STGEN_SPEC_INIT;

	spec.seed = seed;
	spec.small_count = small;
	spec.small_max_bytes = small_max;
	spec.large_count = large;
	spec.large_bytes = large_bytes;
	tu_path(m->path, sizeof(m->path), name);
	m->seed = seed;
	cr_assert_eq(stgen_write(m->path, &spec), 0, "stgen_write %s", m->path);
}

/* Streams `files` to the device as `o` says and checks every tensor's bytes there. */
static ms_stats stream_and_check(model *files, size_t count, ms_streamer_options *o,
                                 uint64_t alignment)
{
	ms_streamer *s = NULL;
	const ms_tensor *t;
	ms_stats st = MS_STATS_INIT;
	size_t seen = 0;
	int rc;

	cr_assert_eq(ms_streamer_new(&s, o), 0, "%s", ms_error_last()->message);
	for (size_t i = 0; i < count; i++) {
		ms_file_info info = MS_FILE_INFO_INIT;

		cr_assert_eq(ms_streamer_add(s, files[i].path), 0, "%s", ms_error_last()->message);
		cr_assert_eq(ms_streamer_file_info(&info, s, i), 0);
		files[i].data_start = 8 + info.header_size;
	}
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		const model *m = &files[t->file_index];
		unsigned char *back = malloc(t->size + 1);

		cr_assert_eq(t->device, o->device, "%s is on the device", t->name);
		cr_assert_null(t->data, "%s: no host pointer for a device tensor", t->name);
		if (alignment > 0 && t->size > 0)
			cr_assert_eq(t->device_ptr % alignment, 0, "%s at %#llx", t->name,
			             (unsigned long long)t->device_ptr);
		cr_assert_eq(ms_tensor_copy(back, t->size, t), 0, "%s", ms_error_last()->message);
		for (uint64_t i = 0; i < t->size; i++)
			if (back[i] != stgen_byte(m->seed, t->file_offset - m->data_start + i))
				cr_assert_fail("%s: byte %llu of %llu differs on the device",
				               t->name, (unsigned long long)i,
				               (unsigned long long)t->size);
		free(back);
		cr_assert_eq(ms_tensor_release(s, t), 0);
		seen++;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_stats(&st, s), 0);
	cr_assert_eq(st.tensors_delivered, seen);
	cr_assert_eq(st.bytes_to_device, st.bytes_total);
	ms_streamer_free(s);
	return st;
}

static void assert_nothing_left(void)
{
	fake_cuda_counters c = counters();

	cr_assert_eq(c.live_allocations, 0, "device memory freed");
	cr_assert_eq(c.live_registrations, 0, "everything pinned unpinned");
	cr_assert_eq(c.live_streams, 0);
	cr_assert_eq(c.live_events, 0);
	cr_assert_eq(c.retained_contexts, 0, "contexts released");
}

static ms_streamer_options device_options(int device)
{
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;

	o.device = device;
	o.concurrency = 4;
	o.chunk_size = 256 << 10;
	return o;
}

Test(device, staged_bytes_equal_the_files_for_several_files_and_odd_sizes)
{
	model m[3];
	ms_streamer_options o = device_options(0);
	ms_stats st;
	fake_cuda_counters c;

	use_fake_driver("1");
	make_model(&m[0], "a.safetensors", 11, 300, 5003, 2, 1000003);
	make_model(&m[1], "b.safetensors", 12, 1, 1, 0, 0);
	make_model(&m[2], "c.safetensors", 13, 100, 70001, 1, 3 << 20);
	st = stream_and_check(m, 3, &o, MS_DEVICE_ALIGNMENT_DEFAULT);
	c = counters();
	cr_assert_eq(st.device, 0);
	cr_assert_eq(st.device_copy, MS_DEVICE_COPY_STAGED);
	cr_assert_geq(st.copy_streams, 2);
	cr_assert_geq(st.device_bytes, st.bytes_total);
	cr_assert_eq(st.pageable_copies, 0);
	cr_assert_gt(c.pinned_copies, 0);
	cr_assert_eq(c.pageable_copies, 0, "every copy came from the pinned ring");
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, the_alignment_is_an_option)
{
	model m;
	ms_streamer_options o = device_options(0);

	use_fake_driver("1");
	make_model(&m, "a.safetensors", 21, 50, 999, 1, 70001);
	o.device_alignment = 4096;
	stream_and_check(&m, 1, &o, 4096);
	assert_nothing_left();
	tu_tmpdir_remove();
}

/* A 1 MiB ring recycled many times under copies slowed to 1 ms each: a slot handed back
 * before its copy ran would leave wrong bytes on the device. */
Test(device, a_small_ring_is_reused_only_after_its_copies_land)
{
	model m;
	ms_streamer_options o = device_options(0);
	ms_stats st;

	use_fake_driver("1");
	setenv("FAKE_CUDA_COPY_DELAY_US", "1000", 1);
	make_model(&m, "a.safetensors", 31, 200, 20000, 6, 700001);
	o.memory_limit = 1 << 20;
	st = stream_and_check(&m, 1, &o, MS_DEVICE_ALIGNMENT_DEFAULT);
	cr_assert_geq(st.arena_bytes, 1 << 20, "the staging ring is the memory limit");
	cr_assert_leq(st.arena_bytes, 2 << 20, "(rounded up to a huge page at most)");
	cr_assert_gt(st.bytes_total, 2 * st.arena_bytes, "the ring went round several times");
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, copies_overlap_on_two_streams)
{
	model m;
	ms_streamer_options o = device_options(0);

	use_fake_driver("1");
	setenv("FAKE_CUDA_COPY_DELAY_US", "3000", 1);
	make_model(&m, "a.safetensors", 41, 0, 1, 16, 300000);
	stream_and_check(&m, 1, &o, MS_DEVICE_ALIGNMENT_DEFAULT);
	cr_assert_geq(counters().most_streams_busy, 2, "two streams copied at once");
	assert_nothing_left();
	tu_tmpdir_remove();
}

typedef struct {
	int device;  /* where to allocate */
	int fail_at; /* the call that fails, or -1 */
	size_t calls;
	uint64_t ptrs[4096];
} buffers;

/* The caller's own device memory, from the driver the library uses. */
static int caller_alloc(uint64_t *out, const ms_tensor *t, int device, void *payload)
{
	buffers *b = payload;
	int (*retain)(void **, int), (*release)(int), (*push)(void *), (*pop)(void **),
	    (*alloc)(uint64_t *, size_t);
	void *lib = driver(), *ctx = NULL, *p;
	int rc;

	cr_assert_eq(device, 0);
	if ((int)b->calls == b->fail_at)
		return MS_ENOMEM;
	p = dlsym(lib, "cuDevicePrimaryCtxRetain");
	memcpy(&retain, &p, sizeof(p));
	p = dlsym(lib, "cuDevicePrimaryCtxRelease_v2");
	memcpy(&release, &p, sizeof(p));
	p = dlsym(lib, "cuCtxPushCurrent_v2");
	memcpy(&push, &p, sizeof(p));
	p = dlsym(lib, "cuCtxPopCurrent_v2");
	memcpy(&pop, &p, sizeof(p));
	p = dlsym(lib, "cuMemAlloc_v2");
	memcpy(&alloc, &p, sizeof(p));
	cr_assert_eq(retain(&ctx, b->device), 0);
	cr_assert_eq(push(ctx), 0);
	rc = alloc(out, t->size > 0 ? t->size : 1);
	pop(&ctx);
	cr_assert_eq(rc, 0);
	b->ptrs[b->calls++] = *out;
	release(b->device);
	return 0;
}

Test(device, tensors_land_in_the_callers_buffers)
{
	model m;
	buffers b = {.device = 0, .fail_at = -1};
	ms_streamer_options o = device_options(0);
	ms_stats st;

	use_fake_driver("1");
	make_model(&m, "a.safetensors", 51, 40, 3001, 1, 100003);
	o.device_alloc = caller_alloc;
	o.device_alloc_payload = &b;
	st = stream_and_check(&m, 1, &o, 0);
	cr_assert_eq(b.calls, st.tensors_total, "one buffer per tensor");
	cr_assert_eq(st.device_bytes, 0, "the library allocated nothing");
	cr_assert_eq(counters().live_allocations, b.calls, "the buffers stay the caller's");
	tu_tmpdir_remove();
}

Test(device, a_failing_callback_stops_the_stream_naming_the_tensor)
{
	model m;
	buffers b = {.device = 0, .fail_at = 5};
	ms_streamer_options o = device_options(0);
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int rc, n = 0;

	use_fake_driver("1");
	make_model(&m, "a.safetensors", 52, 40, 3001, 0, 0);
	o.device_alloc = caller_alloc;
	o.device_alloc_payload = &b;
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	while ((rc = ms_streamer_next(&t, s)) == 0)
		n++;
	cr_assert_eq(rc, MS_ENOMEM, "the callback's code: %d", rc);
	cr_assert(strstr(ms_error_last()->message, "cuda:0 (Fake GPU 0): tensor '") != NULL &&
	              strstr(ms_error_last()->message, "': device_alloc gave out of memory") !=
	                  NULL,
	          "%s", ms_error_last()->message);
	cr_assert_leq(n, 5);
	ms_streamer_free(s);
	tu_tmpdir_remove();
}

Test(device, memory_on_another_device_is_refused)
{
	model m;
	buffers b = {.device = 1, .fail_at = -1};
	ms_streamer_options o = device_options(0);
	ms_streamer *s = NULL;
	const ms_tensor *t;

	use_fake_driver("2");
	make_model(&m, "a.safetensors", 53, 4, 301, 0, 0);
	o.device_alloc = caller_alloc;
	o.device_alloc_payload = &b;
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "device_alloc gave memory on cuda:1") != NULL,
	          "%s", ms_error_last()->message);
	ms_streamer_free(s);
	tu_tmpdir_remove();
}

Test(device, mapped_files_are_read_by_the_copy_engine_directly)
{
	model m[2];
	ms_streamer_options o = device_options(0);
	ms_stats st;
	fake_cuda_counters c;

	use_fake_driver("1");
	make_model(&m[0], "a.safetensors", 61, 300, 5003, 2, 1000003);
	make_model(&m[1], "b.safetensors", 62, 30, 9001, 1, 1 << 20);
	o.deliver = MS_DELIVER_MAPPED;
	st = stream_and_check(m, 2, &o, MS_DEVICE_ALIGNMENT_DEFAULT);
	c = counters();
	cr_assert_eq(st.delivery, MS_DELIVER_MAPPED);
	cr_assert_eq(st.device_copy, MS_DEVICE_COPY_MAPPED);
	cr_assert_eq(st.arena_bytes, 0, "no staging");
	cr_assert_gt(st.pin_ns, 0, "the time spent pinning is counted");
	cr_assert_gt(c.read_only_registrations, 1, "each extent's pages were pinned read-only");
	cr_assert_gt(c.pinned_copies, c.pageable_copies,
	             "most bytes went from pinned pages (%zu pinned, %zu pageable copies)",
	             c.pinned_copies, c.pageable_copies);
	assert_nothing_left();
	tu_tmpdir_remove();
}

/* A fresh stream of `m` says nothing before its first tensor, then a fallback line
 * holding `a` and `b`. */
static void assert_fallback_says(const model *m, const ms_streamer_options *o, const char *a,
                                 const char *b)
{
	ms_streamer *s = NULL;
	const ms_tensor *t;
	const char *why;

	cr_assert_eq(ms_streamer_new(&s, o), 0);
	cr_assert_eq(ms_streamer_add(s, m->path), 0);
	cr_assert_null(ms_streamer_fallback(s), "nothing decided before the first next()");
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	why = ms_streamer_fallback(s);
	cr_assert(why != NULL && strstr(why, a) != NULL && strstr(why, b) != NULL, "%s",
	          why ? why : "no fallback");
	ms_streamer_free(s);
}

Test(device, a_driver_that_will_not_pin_a_mapping_falls_back_to_staging)
{
	model m;
	ms_streamer_options o = device_options(0);
	ms_stats st;

	use_fake_driver("1");
	setenv("FAKE_CUDA_REFUSE_READ_ONLY", "801", 1);
	make_model(&m, "a.safetensors", 71, 100, 5003, 1, 1 << 20);
	o.deliver = MS_DELIVER_MAPPED;
	st = stream_and_check(&m, 1, &o, MS_DEVICE_ALIGNMENT_DEFAULT);
	cr_assert_eq(st.delivery, MS_DELIVER_COPY);
	cr_assert_eq(st.device_copy, MS_DEVICE_COPY_STAGED);
	cr_assert_eq(counters().pageable_copies, 0);
	assert_fallback_says(
	    &m, &o, "cuda:0 (Fake GPU 0): the driver refused to register the mapping of ",
	    "a.safetensors (operation not supported); staging through a pinned ring "
	    "instead");
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, a_driver_that_pins_nothing_copies_from_pageable_memory)
{
	model m;
	ms_streamer_options o = device_options(0);
	ms_stats st;

	use_fake_driver("1");
	setenv("FAKE_CUDA_REGISTER_ERROR", "801", 1);
	make_model(&m, "a.safetensors", 81, 100, 5003, 1, 1 << 20);
	st = stream_and_check(&m, 1, &o, MS_DEVICE_ALIGNMENT_DEFAULT);
	cr_assert_eq(st.device_copy, MS_DEVICE_COPY_PAGEABLE);
	cr_assert_gt(st.pageable_copies, 0);
	assert_fallback_says(&m, &o, "-byte staging ring (operation not supported); ",
	                     "copying from pageable memory");
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, two_devices_in_one_process)
{
	model m[2];
	ms_streamer_options o0 = device_options(0), o1 = device_options(1);
	ms_streamer *s[2] = {NULL, NULL};
	const ms_tensor *t;
	size_t got[2] = {0, 0};
	int done = 0;

	use_fake_driver("2");
	make_model(&m[0], "a.safetensors", 91, 100, 5003, 2, 300001);
	make_model(&m[1], "b.safetensors", 92, 100, 7001, 2, 200003);
	cr_assert_eq(ms_streamer_new(&s[0], &o0), 0);
	cr_assert_eq(ms_streamer_new(&s[1], &o1), 0);
	for (int i = 0; i < 2; i++) {
		ms_file_info info = MS_FILE_INFO_INIT;

		cr_assert_eq(ms_streamer_add(s[i], m[i].path), 0);
		cr_assert_eq(ms_streamer_file_info(&info, s[i], 0), 0);
		m[i].data_start = 8 + info.header_size;
	}
	/* Interleaved, so that both devices' copies are in flight together. */
	while (done != 3) {
		for (int i = 0; i < 2; i++) {
			unsigned char buf[1 << 20];
			int rc;

			if (done & (1 << i))
				continue;
			rc = ms_streamer_next(&t, s[i]);
			if (rc == MS_ITER_END) {
				done |= 1 << i;
				continue;
			}
			cr_assert_eq(rc, 0, "%s", ms_error_last()->message);
			cr_assert_eq(t->device, i);
			cr_assert_leq(t->size, sizeof(buf));
			cr_assert_eq(ms_tensor_copy(buf, sizeof(buf), t), 0);
			for (uint64_t k = 0; k < t->size; k++)
				cr_assert_eq(
				    buf[k],
				    stgen_byte(m[i].seed, t->file_offset - m[i].data_start + k));
			got[i]++;
		}
	}
	cr_assert_eq(got[0], 102);
	cr_assert_eq(got[1], 102);
	ms_streamer_free(s[0]);
	ms_streamer_free(s[1]);
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, without_a_driver_the_streamer_is_not_made)
{
	ms_streamer_options o = device_options(0);
	ms_streamer *s = NULL;

	setenv("MODELSTREAM_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
	cr_assert_eq(ms_streamer_new(&s, &o), MS_ENODEVICE);
	cr_assert_null(s);
	cr_assert_str_eq(ms_error_last()->message,
	                 "cuda:0: no NVIDIA driver: /nonexistent/libcuda.so.1 not found");
}

Test(device, no_such_device)
{
	ms_streamer_options o = device_options(3);
	ms_streamer *s = NULL;

	use_fake_driver("1");
	cr_assert_eq(ms_streamer_new(&s, &o), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message, "cuda:3: no such device, 1 present");
}

Test(device, too_little_device_memory_names_both_sizes)
{
	model m;
	ms_streamer_options o = device_options(0);
	ms_streamer *s = NULL;
	const ms_tensor *t;

	use_fake_driver("1");
	setenv("FAKE_CUDA_MEMORY", "100000", 1);
	make_model(&m, "a.safetensors", 101, 10, 1000, 1, 200000);
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), MS_ELIMIT);
	cr_assert(
	    strstr(ms_error_last()->message, "cuda:0 (Fake GPU 0): the selected tensors need ") &&
	        strstr(ms_error_last()->message,
	               " bytes of device memory and 100000 of its 100000 are free"),
	    "%s", ms_error_last()->message);
	ms_streamer_free(s);
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, cancel_stops_a_device_stream)
{
	model m;
	ms_streamer_options o = device_options(0);
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int rc, n = 0;

	use_fake_driver("1");
	setenv("FAKE_CUDA_COPY_DELAY_US", "2000", 1);
	make_model(&m, "a.safetensors", 111, 500, 5003, 2, 1 << 20);
	o.memory_limit = 1 << 20;
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	ms_streamer_cancel(s);
	while ((rc = ms_streamer_next(&t, s)) == 0)
		n++;
	cr_assert_eq(rc, MS_ECANCELED, "%d after %d more: %s", rc, n, ms_error_last()->message);
	ms_streamer_free(s);
	assert_nothing_left();
	tu_tmpdir_remove();
}

Test(device, bad_device_options)
{
	ms_streamer_options o = device_options(-2);
	ms_streamer *s = NULL;
	buffers b = {0};

	cr_assert_eq(ms_streamer_new(&s, &o), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "device -2 is invalid"));
	o = device_options(0);
	o.device_alignment = 48;
	cr_assert_eq(ms_streamer_new(&s, &o), MS_EINVAL);
	cr_assert_str_eq(ms_error_last()->message, "device alignment 48 is not a power of two");
	o = device_options(MS_DEVICE_CPU);
	o.device_alloc = caller_alloc;
	o.device_alloc_payload = &b;
	cr_assert_eq(ms_streamer_new(&s, &o), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "device_alloc needs a device"));
}

/* Host streams report no device, and the table's tensors say they are on the host. */
Test(device, host_streams_say_cpu)
{
	model m;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	ms_tensor at = MS_TENSOR_INIT;
	ms_stats st = MS_STATS_INIT;

	make_model(&m, "a.safetensors", 121, 3, 100, 0, 0);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	cr_assert_eq(ms_streamer_tensor_at(&at, s, 0), 0);
	cr_assert_eq(at.device, MS_DEVICE_CPU);
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	cr_assert_eq(t->device, MS_DEVICE_CPU);
	cr_assert_not_null(t->data);
	cr_assert_eq(ms_streamer_stats(&st, s), 0);
	cr_assert_eq(st.device, MS_DEVICE_CPU);
	cr_assert_eq(st.device_copy, MS_DEVICE_COPY_NONE);
	cr_assert_null(ms_streamer_fallback(s));
	ms_streamer_free(s);
	tu_tmpdir_remove();
}

/* ms_streamer_next_timeout: 1 while copies are slow, then every tensor, in order. */
Test(device, next_with_a_timeout_says_not_yet)
{
	model m;
	ms_streamer_options o = device_options(0);
	ms_streamer *s = NULL;
	const ms_tensor *t;
	size_t got = 0, not_yet = 0;
	int rc;

	use_fake_driver("1");
	setenv("FAKE_CUDA_COPY_DELAY_US", "20000", 1);
	make_model(&m, "a.safetensors", 131, 20, 1000, 2, 100000);
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, m.path), 0);
	while ((rc = ms_streamer_next_timeout(&t, s, 2)) >= 0) {
		if (rc == 1) {
			cr_assert_null(t);
			not_yet++;
			continue;
		}
		got++;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(got, 22);
	cr_assert_gt(not_yet, 0, "a 20 ms copy is not ready within 2 ms");
	ms_streamer_free(s);
	tu_tmpdir_remove();
}
