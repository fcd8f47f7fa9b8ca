/*
 * test_backend.c - application back ends for their own URL schemes (ms_backend_register):
 * registration rules, streaming through one, and how its failures reach the caller.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "modelstream.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(backend, .fini = teardown, .timeout = 60);

/* A back end serving one safetensors file from memory: "mem://model". */
typedef struct {
	unsigned char *bytes;
	size_t size;
	atomic_int opened;
	atomic_int reads;
	int fail_reads; /* read returns this code when non-zero */
} memory_store;

static int mem_open(void *data, const char *location, void **handle, uint64_t *size)
{
	memory_store *m = data;

	if (strcasecmp(location, "mem://model") != 0)
		return ms_error_raise(MS_ENOTFOUND, "%s: no such object in memory", location);
	atomic_fetch_add(&m->opened, 1);
	*handle = m;
	*size = m->size;
	return 0;
}

static int mem_read(void *handle, void *dst, uint64_t offset, size_t length)
{
	memory_store *m = handle;

	atomic_fetch_add(&m->reads, 1);
	if (m->fail_reads != 0)
		return m->fail_reads;
	cr_assert_leq(offset + length, m->size, "a read past the size it was given");
	memcpy(dst, m->bytes + offset, length);
	return 0;
}

static void mem_close(void *handle)
{
	memory_store *m = handle;

	atomic_fetch_sub(&m->opened, 1);
}

static void load(memory_store *m, char *path, size_t path_size)
{
	FILE *f;

	tu_path(path, path_size, "m.safetensors");
	tu_write_safetensors(
	    path,
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1000],\"data_offsets\":[0,4000]},"
	    "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[4000,4003]}}",
	    4003, 11);
	f = fopen(path, "rb");
	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	m->size = (size_t)ftell(f);
	rewind(f);
	m->bytes = malloc(m->size);
	cr_assert_eq(fread(m->bytes, 1, m->size, f), m->size);
	fclose(f);
}

static ms_backend backend_for(memory_store *m)
{
	return (ms_backend){MS_BACKEND_VERSION, "mem", mem_open, mem_read, mem_close, m};
}

Test(backend, streams_the_same_tensors_as_the_file)
{
	memory_store m = {0};
	ms_backend b = backend_for(&m);
	char path[4096];
	ms_streamer *from_mem, *from_file;
	const ms_tensor *x, *y;
	int rc;

	load(&m, path, sizeof(path));
	cr_assert_eq(ms_backend_register(&b), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_new(&from_mem, NULL), 0);
	cr_assert_eq(ms_streamer_new(&from_file, NULL), 0);
	cr_assert_eq(ms_streamer_add(from_mem, "MEM://model"), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_add(from_file, path), 0);
	while ((rc = ms_streamer_next(&x, from_mem)) == 0) {
		cr_assert_eq(ms_streamer_next(&y, from_file), 0);
		cr_assert_str_eq(x->name, y->name);
		cr_assert_eq(x->size, y->size);
		cr_assert(memcmp(x->data, y->data, x->size) == 0, "tensor %s differs", x->name);
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_gt(atomic_load(&m.reads), 0);
	ms_streamer_free(from_mem);
	ms_streamer_free(from_file);
	cr_assert_eq(atomic_load(&m.opened), 0, "every handle opened was closed");
	cr_assert_eq(ms_backend_unregister("mem"), 0);
	cr_assert_eq(ms_backend_unregister("mem"), MS_ENOTFOUND);
	free(m.bytes);
}

Test(backend, failures_name_the_location)
{
	memory_store m = {0};
	ms_backend b = backend_for(&m);
	char path[4096];
	ms_streamer *s;
	const ms_tensor *t;

	load(&m, path, sizeof(path));
	cr_assert_eq(ms_backend_register(&b), 0);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	/* The back end's own message is kept. */
	cr_assert_eq(ms_streamer_add(s, "mem://other"), MS_ENOTFOUND);
	cr_assert_str_eq(ms_error_last()->message, "mem://other: no such object in memory");
	/* A code without a message gets one naming the location and the call. */
	m.fail_reads = MS_EIO;
	cr_assert_eq(ms_streamer_add(s, "mem://model"), MS_EIO);
	cr_assert_str_eq(ms_error_last()->message,
	                 "mem://model: the back end's read failed: I/O error");
	m.fail_reads = 0;
	cr_assert_eq(ms_streamer_add(s, "mem://model"), 0);
	m.fail_reads = 77; /* not an MS_E* code: reported as MS_ERROR */
	cr_assert_eq(ms_streamer_next(&t, s), MS_ERROR);
	cr_assert(strstr(ms_error_last()->message, "mem://model") != NULL, "%s",
	          ms_error_last()->message);
	ms_streamer_free(s);
	ms_backend_unregister("mem");
	free(m.bytes);
}

Test(backend, registration_rules)
{
	memory_store m = {0};
	ms_backend b = backend_for(&m), bad;
	char name[8];

	bad = b;
	bad.version = 99;
	cr_assert_eq(ms_backend_register(&bad), MS_EINVAL);
	cr_assert_eq(ms_backend_register(NULL), MS_EINVAL);
	bad = b;
	bad.read = NULL;
	cr_assert_eq(ms_backend_register(&bad), MS_EINVAL);
	for (size_t i = 0; i < 5; i++) {
		static const char *const refused[] = {"s3", "GS", "file", "9p", "a/b"};

		bad = b;
		bad.scheme = refused[i];
		cr_assert_eq(ms_backend_register(&bad), MS_EINVAL, "%s", refused[i]);
		cr_assert(strstr(ms_error_last()->message, refused[i]) != NULL, "%s",
		          ms_error_last()->message);
	}
	cr_assert_eq(ms_backend_register(&b), 0);
	cr_assert_eq(ms_backend_register(&b), MS_ESTATE, "a scheme twice");
	for (int i = 1;; i++) {
		int rc;

		snprintf(name, sizeof(name), "x%d", i);
		bad = b;
		bad.scheme = name; /* copied by the registry: the buffer may change */
		rc = ms_backend_register(&bad);
		if (rc == MS_ELIMIT)
			break;
		cr_assert_eq(rc, 0, "%s", ms_error_last()->message);
		cr_assert_lt(i, 100, "the registry never fills");
	}
	cr_assert_eq(ms_backend_unregister("x3"), 0);
	cr_assert_eq(ms_backend_register(&(ms_backend){MS_BACKEND_VERSION, "x3", mem_open, mem_read,
	                                               mem_close, &m}),
	             0, "a freed slot is reused");
}

/* A back end's bytes are not a local file: mapped delivery says so, auto copies. */
Test(backend, mapped_delivery_needs_a_local_file)
{
	memory_store m = {0};
	ms_backend b = backend_for(&m);
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;
	char path[4096];
	ms_streamer *s;
	const ms_tensor *t;

	load(&m, path, sizeof(path));
	cr_assert_eq(ms_backend_register(&b), 0);
	o.deliver = MS_DELIVER_MAPPED;
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, "mem://model"), 0);
	cr_assert_eq(ms_streamer_next(&t, s), MS_EUNSUPPORTED);
	cr_assert(strstr(ms_error_last()->message, "mem://model: mapped delivery needs a local "
	                                           "file") != NULL,
	          "%s", ms_error_last()->message);
	ms_streamer_free(s);
	o.deliver = MS_DELIVER_AUTO;
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0);
	cr_assert_eq(ms_streamer_add(s, "mem://model"), 0);
	cr_assert_eq(ms_streamer_next(&t, s), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_delivery(s), MS_DELIVER_COPY, "one file is not local");
	ms_streamer_free(s);
	cr_assert_eq(ms_backend_unregister("mem"), 0);
	free(m.bytes);
}
