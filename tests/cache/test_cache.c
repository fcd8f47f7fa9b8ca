/*
 * test_cache.c - the node cache's internals that the shell suites cannot reach: the blob
 * key (lib/cache/cache.c) and what it does when memory runs out.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "alloc.h"
#include "cache/cache.h"
#include "modelstream.h"
#include "support/testutil.h"

TestSuite(cache, .timeout = 30);

Test(cache, the_key_names_source_etag_and_size)
{
	char a[MS__CACHE_KEY_LEN + 1], b[MS__CACHE_KEY_LEN + 1];

	cr_assert_eq(ms__cache_key(a, "s3://models/llama/model.safetensors", "\"e1\"", 100), 0);
	cr_assert_eq(strlen(a), MS__CACHE_KEY_LEN);
	cr_assert_eq(ms__cache_key(b, "s3://models/llama/model.safetensors", "\"e1\"", 100), 0);
	cr_assert_str_eq(a, b, "the same object gets the same key");
	cr_assert_eq(ms__cache_key(b, "s3://models/llama/model.safetensors", "\"e2\"", 100), 0);
	cr_assert_str_neq(a, b, "a changed object is a new blob");
	cr_assert_eq(ms__cache_key(b, "s3://models/llama/model.safetensors", "\"e1\"", 101), 0);
	cr_assert_str_neq(a, b);
	cr_assert_eq(ms__cache_key(b, "s3://models/llama/model.safetensors", NULL, 100), 0);
	cr_assert_str_neq(a, b);
}

/* Before the fix, a failed allocation gave every file the key "000...0": two files would
 * have shared one blob, without an error. */
Test(cache, out_of_memory_is_an_error_not_a_shared_key)
{
	char key[MS__CACHE_KEY_LEN + 1];

	memset(key, 'x', sizeof(key));
	ms__alloc_fail_at(1, 0);
	cr_assert_eq(ms__cache_key(key, "s3://models/a", "\"e\"", 1), MS_ENOMEM);
	ms__alloc_fail_at(0, 0);
	cr_assert_str_eq(key, "");
	cr_assert(strstr(ms_error_last()->message, "s3://models/a") != NULL);
	cr_assert_eq(ms__cache_key(key, "s3://models/a", "\"e\"", 1), 0);
	cr_assert_str_neq(key, "0000000000000000000000000000000000000000");
}

/* ---------------------------------------------------------------------------------------- */
/* Eviction order                                                                             */
/* ---------------------------------------------------------------------------------------- */

static const char one_tensor[] =
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}";

/* Writes a one-file model directory `name` under the test's directory; returns its URL. */
static void source_dir(char *out, size_t size, const char *name, uint64_t seed)
{
	char file[4200];

	snprintf(out, size, "%s/src-%s", tu_tmpdir(), name);
	mkdir(out, 0755);
	snprintf(file, sizeof(file), "%s/model.safetensors", out);
	tu_write_safetensors(file, one_tensor, 4096, seed);
	strcat(out, "/");
}

static bool published(const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/cache/models/%s", tu_tmpdir(), name);
	return lstat(path, &st) == 0;
}

static void teardown(void)
{
	tu_tmpdir_remove();
}

/* A budget that holds two models: the third evicts the least recently used one, and a
 * model fetched again (served from the cache) counts as used. */
Test(cache, the_budget_evicts_the_least_recently_used_model, .fini = teardown)
{
	ms_cache_options opts = MS_CACHE_OPTIONS_INIT;
	char dir[4096], a[4096], b[4096], c[4096];
	ms_cache *cache = NULL;
	struct timespec pause = {0, 20 * 1000 * 1000};

	tu_path(dir, sizeof(dir), "cache");
	mkdir(dir, 0755);
	source_dir(a, sizeof(a), "a", 1);
	source_dir(b, sizeof(b), "b", 2);
	source_dir(c, sizeof(c), "c", 3);
	opts.budget = 2 * 4200; /* two files of 4096 bytes and their headers */
	cr_assert_eq(ms_cache_open(&cache, dir, &opts), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_cache_fetch(cache, a, "a", NULL, NULL), 0, "%s", ms_error_last()->message);
	nanosleep(&pause, NULL);
	cr_assert_eq(ms_cache_fetch(cache, b, "b", NULL, NULL), 0, "%s", ms_error_last()->message);
	nanosleep(&pause, NULL);
	cr_assert_eq(ms_cache_fetch(cache, a, "a", NULL, NULL), 0, "a again: used now");
	nanosleep(&pause, NULL);
	cr_assert_eq(ms_cache_fetch(cache, c, "c", NULL, NULL), 0, "%s", ms_error_last()->message);
	cr_assert(published("a"), "used most recently but one: kept");
	cr_assert(!published("b"), "the least recently used model goes");
	cr_assert(published("c"));
	ms_cache_free(cache);
}
