/*
 * test_backend.c - application back ends for their own URL schemes (ms_backend_register):
 * registration rules, streaming through one, how its failures reach the caller, and the
 * whole storage interface (list, exists, put) through push, ls, exists, stream and fetch.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

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
	return (ms_backend){.version = MS_BACKEND_VERSION,
	                    .scheme = "mem",
	                    .open = mem_open,
	                    .read = mem_read,
	                    .close = mem_close,
	                    .data = m};
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
	cr_assert_eq(ms_backend_register(&(ms_backend){.version = MS_BACKEND_VERSION,
	                                               .scheme = "x3",
	                                               .open = mem_open,
	                                               .read = mem_read,
	                                               .close = mem_close,
	                                               .data = &m}),
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

/* ---------------------------------------------------------------------------------------- */
/* myfs://: a whole store (open, read, list, exists, put) from memory                       */
/* ---------------------------------------------------------------------------------------- */

#define MYFS_MAX 32

typedef struct {
	char location[256];
	unsigned char *bytes;
	size_t size;
} myfs_object;

typedef struct {
	pthread_mutex_t lock;
	myfs_object objects[MYFS_MAX];
	size_t count;
	atomic_int lists, puts, exists_calls;
} myfs;

static myfs_object *myfs_find(myfs *fs, const char *location)
{
	for (size_t i = 0; i < fs->count; i++)
		if (strcmp(fs->objects[i].location, location) == 0)
			return &fs->objects[i];
	return NULL;
}

static int myfs_open(void *data, const char *location, void **handle, uint64_t *size)
{
	myfs *fs = data;
	myfs_object *o;

	pthread_mutex_lock(&fs->lock);
	o = myfs_find(fs, location);
	pthread_mutex_unlock(&fs->lock);
	if (o == NULL)
		return ms_error_raise(MS_ENOTFOUND, "%s: no such object in myfs", location);
	*handle = o;
	*size = o->size;
	return 0;
}

static int myfs_read(void *handle, void *dst, uint64_t offset, size_t length)
{
	myfs_object *o = handle;

	memcpy(dst, o->bytes + offset, length);
	return 0;
}

static void myfs_close(void *handle)
{
	(void)handle;
}

static int myfs_list(void *data, const char *location, ms_list_fn fn, void *payload)
{
	myfs *fs = data;
	size_t n = strlen(location);
	int rc = 0;

	atomic_fetch_add(&fs->lists, 1);
	/* In reverse order of creation: the library must not rely on the store's order. */
	for (size_t i = fs->count; rc == 0 && i-- > 0;) {
		const myfs_object *o = &fs->objects[i];
		char etag[32];
		ms_object obj = {.name = o->location + n, .size = o->size, .etag = etag};

		if (strncmp(o->location, location, n) != 0)
			continue;
		snprintf(etag, sizeof(etag), "\"v%zu-%zu\"", i, o->size);
		rc = fn(&obj, payload);
	}
	return rc;
}

static int myfs_exists(void *data, const char *location, int *exists, uint64_t *size)
{
	myfs *fs = data;
	const myfs_object *o;

	atomic_fetch_add(&fs->exists_calls, 1);
	pthread_mutex_lock(&fs->lock);
	o = myfs_find(fs, location);
	pthread_mutex_unlock(&fs->lock);
	*exists = o != NULL;
	if (o != NULL && size != NULL)
		*size = o->size;
	return 0;
}

static int myfs_put(void *data, const char *location, const void *bytes, uint64_t size)
{
	myfs *fs = data;
	myfs_object *o;
	int rc = 0;

	atomic_fetch_add(&fs->puts, 1);
	pthread_mutex_lock(&fs->lock);
	if ((o = myfs_find(fs, location)) == NULL && fs->count < MYFS_MAX) {
		o = &fs->objects[fs->count++];
		snprintf(o->location, sizeof(o->location), "%s", location);
	}
	if (o == NULL) {
		rc = ms_error_raise(MS_ENOSPC, "%s: myfs is full", location);
	} else {
		free(o->bytes);
		o->bytes = malloc(size > 0 ? size : 1);
		memcpy(o->bytes, bytes, size);
		o->size = size;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

static ms_backend myfs_backend(myfs *fs)
{
	return (ms_backend){.version = MS_BACKEND_VERSION,
	                    .scheme = "myfs",
	                    .open = myfs_open,
	                    .read = myfs_read,
	                    .close = myfs_close,
	                    .data = fs,
	                    .list = myfs_list,
	                    .exists = myfs_exists,
	                    .put = myfs_put};
}

static void myfs_free(myfs *fs)
{
	for (size_t i = 0; i < fs->count; i++)
		free(fs->objects[i].bytes);
}

typedef struct {
	char names[MYFS_MAX][256];
	int prefix[MYFS_MAX];
	size_t count;
} names;

static int collect_name(const ms_object *o, void *payload)
{
	names *n = payload;

	cr_assert_lt(n->count, MYFS_MAX);
	snprintf(n->names[n->count], sizeof(n->names[0]), "%s", o->name);
	n->prefix[n->count++] = o->is_prefix;
	return 0;
}

/* A local model directory: two shards, a config, and a file in a sub-directory. */
static void local_model(char *dir, size_t size)
{
	char path[8192];

	tu_path(dir, size, "model");
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/sub", dir);
	cr_assert_eq(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", dir);
	tu_write_safetensors(
	    path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1000],\"data_offsets\":[0,4000]}}", 4000,
	    1);
	snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
	tu_write_safetensors(
	    path, "{\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, 2);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	tu_write_file(path, "{\"dim\": 8}\n", 11);
	snprintf(path, sizeof(path), "%s/sub/params.json", dir);
	tu_write_file(path, "{}\n", 3);
}

static bool same_file(const char *a, const unsigned char *bytes, size_t size)
{
	FILE *f = fopen(a, "rb");
	unsigned char buf[8192];
	size_t n;

	cr_assert_not_null(f, "%s", a);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	return n == size && memcmp(buf, bytes, size) == 0;
}

/* push, ls, exists, stream and fetch: every storage call works on a registered scheme. */
Test(backend, myfs_through_push_ls_exists_stream_and_fetch)
{
	myfs fs = {.lock = PTHREAD_MUTEX_INITIALIZER};
	ms_backend b = myfs_backend(&fs);
	char dir[4096], cache_dir[4096], path[8192];
	names all = {0}, top = {0};
	ms_cache *cache;
	ms_streamer *s;
	const ms_tensor *t;
	uint64_t size = 0;
	int exists = -1;

	local_model(dir, sizeof(dir));
	cr_assert_eq(ms_backend_register(&b), 0, "%s", ms_error_last()->message);

	/* push: the directory, each file under its relative name. */
	cr_assert_eq(ms_storage_push(dir, "myfs://models/llama/", NULL), 0, "%s",
	             ms_error_last()->message);
	cr_assert_eq(fs.count, 4);
	cr_assert_eq(atomic_load(&fs.puts), 4);
	cr_assert_not_null(myfs_find(&fs, "myfs://models/llama/sub/params.json"));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	cr_assert(same_file(path, myfs_find(&fs, "myfs://models/llama/config.json")->bytes,
	                    myfs_find(&fs, "myfs://models/llama/config.json")->size));
	/* A file to a prefix goes under its base name. */
	cr_assert_eq(ms_storage_push(path, "myfs://other/", NULL), 0, "%s",
	             ms_error_last()->message);
	cr_assert_not_null(myfs_find(&fs, "myfs://other/config.json"));

	/* ls: sorted whatever the store's order; sub-prefixes once without --recursive. */
	cr_assert_eq(
	    ms_storage_list("myfs://models/llama/", MS_LIST_RECURSIVE, NULL, collect_name, &all), 0,
	    "%s", ms_error_last()->message);
	cr_assert_eq(all.count, 4);
	cr_assert_str_eq(all.names[0], "config.json");
	cr_assert_str_eq(all.names[1], "model-00001-of-00002.safetensors");
	cr_assert_str_eq(all.names[3], "sub/params.json");
	cr_assert_eq(ms_storage_list("myfs://models/llama/", 0, NULL, collect_name, &top), 0);
	cr_assert_eq(top.count, 4);
	cr_assert_str_eq(top.names[3], "sub/");
	cr_assert_eq(top.prefix[3], 1);
	cr_assert_eq(
	    ms_storage_list("myfs://models/llama/config.json", 0, NULL, collect_name, &top),
	    MS_EINVAL, "an object is not a prefix");

	/* exists: through the back end's own function. */
	cr_assert_eq(ms_storage_exists(&exists, &size, "myfs://models/llama/config.json"), 0);
	cr_assert_eq(exists, 1);
	cr_assert_eq(size, 11);
	cr_assert_eq(ms_storage_exists(&exists, &size, "myfs://models/llama/none"), 0);
	cr_assert_eq(exists, 0);
	cr_assert_eq(atomic_load(&fs.exists_calls), 2);

	/* stream: the prefix is a model directory, its shards in name order. */
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, "myfs://models/llama/"), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_count(s), 2);
	cr_assert_eq(ms_streamer_next(&t, s), 0, "%s", ms_error_last()->message);
	cr_assert_str_eq(t->name, "a");
	cr_assert_eq(ms_streamer_next(&t, s), 0);
	cr_assert_str_eq(t->name, "b");
	cr_assert_eq(ms_streamer_next(&t, s), MS_ITER_END);
	ms_streamer_free(s);

	/* fetch: every file into the cache, verified and published. */
	tu_path(cache_dir, sizeof(cache_dir), "cache");
	cr_assert_eq(mkdir(cache_dir, 0755), 0);
	cr_assert_eq(ms_cache_open(&cache, cache_dir, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_cache_fetch(cache, "myfs://models/llama/", "llama", NULL, NULL), 0, "%s",
	             ms_error_last()->message);
	for (size_t i = 0; i < fs.count; i++) {
		const myfs_object *o = &fs.objects[i];
		const char *rel = o->location + strlen("myfs://models/llama/");

		if (strncmp(o->location, "myfs://models/llama/", 20) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/models/llama/%s", cache_dir, rel);
		cr_assert(same_file(path, o->bytes, o->size), "%s differs in the cache", rel);
	}
	ms_cache_free(cache);
	cr_assert_eq(ms_backend_unregister("myfs"), 0);
	myfs_free(&fs);
}

/* A back end of version 1 (open, read, close) still registers; what it lacks is refused
 * with one line that says so. */
Test(backend, version_1_without_list_or_put)
{
	memory_store m = {0};
	ms_backend b = backend_for(&m);
	names n = {0};
	int exists = -1;
	char path[4096];

	load(&m, path, sizeof(path));
	b.version = 1;
	b.list = (int (*)(void *, const char *, ms_list_fn, void *))0x1; /* past a v1 struct */
	cr_assert_eq(ms_backend_register(&b), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_storage_list("mem://", 0, NULL, collect_name, &n), MS_EUNSUPPORTED);
	cr_assert_str_eq(ms_error_last()->message,
	                 "mem://: its back end cannot list prefixes (it registered no list "
	                 "function)");
	cr_assert_eq(ms_storage_push(path, "mem://copy", NULL), MS_EUNSUPPORTED);
	cr_assert(strstr(ms_error_last()->message, "cannot store objects") != NULL, "%s",
	          ms_error_last()->message);
	/* exists without its function: asked by opening. */
	cr_assert_eq(ms_storage_exists(&exists, NULL, "mem://model"), 0);
	cr_assert_eq(exists, 1);
	cr_assert_eq(ms_storage_exists(&exists, NULL, "mem://other"), 0);
	cr_assert_eq(exists, 0);
	cr_assert_eq(ms_backend_unregister("mem"), 0);
	free(m.bytes);
}
