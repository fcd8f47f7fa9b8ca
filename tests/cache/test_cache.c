/*
 * test_cache.c - the node cache's internals that the shell suites cannot reach: the blob
 * key (lib/cache/cache.c) and what it does when memory runs out.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "alloc.h"
#include "cache/cache.h"
#include "modelstream.h"

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
