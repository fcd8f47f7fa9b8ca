/*
 * test_alloc.c - the allocation front end and its failure hook, which every allocation
 * walk in the other tests relies on: if the hook misfired, those walks would prove
 * nothing.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"

static void reset(void)
{
	ms__alloc_fail_at(0, 0);
}

TestSuite(alloc, .fini = reset, .timeout = 30);

Test(alloc, fails_exactly_the_nth_call)
{
	void *a, *b, *c;

	ms__alloc_fail_at(2, 0);
	a = ms__malloc(16);
	b = ms__malloc(16);
	c = ms__malloc(16);
	cr_assert_not_null(a, "the first call succeeds");
	cr_assert_null(b, "the second call fails");
	cr_assert_not_null(c, "a single failure does not stick");
	ms__free(a);
	ms__free(c);
}

Test(alloc, sticky_failure_fails_every_later_call)
{
	void *a;

	ms__alloc_fail_at(1, 1);
	cr_assert_null(ms__malloc(1));
	cr_assert_null(ms__calloc(1, 1));
	cr_assert_null(ms__realloc(NULL, 1));
	cr_assert_null(ms__strdup("x"));
	ms__alloc_fail_at(0, 0);
	a = ms__malloc(1);
	cr_assert_not_null(a, "switching the hook off restores allocation");
	ms__free(a);
}

Test(alloc, counts_every_kind_of_call)
{
	long before = ms__alloc_count();
	void *a = ms__malloc(1), *b = ms__calloc(2, 2), *c = ms__realloc(NULL, 3);
	char *d = ms__strndup("hello", 3);

	cr_assert_eq(ms__alloc_count() - before, 4);
	cr_assert_str_eq(d, "hel");
	ms__free(a);
	ms__free(b);
	ms__free(c);
	ms__free(d);
}

Test(alloc, zero_sizes_return_freeable_memory)
{
	void *a = ms__malloc(0), *b = ms__calloc(0, 8);

	cr_assert_not_null(a);
	cr_assert_not_null(b);
	ms__free(a);
	ms__free(b);
	ms__free(NULL);
}

Test(alloc, overflow_checked_multiply)
{
	size_t out = 0;

	cr_assert_eq(ms__mul_overflow(&out, 3, 5), 0);
	cr_assert_eq(out, 15);
	cr_assert_eq(ms__mul_overflow(&out, SIZE_MAX, 2), -1);
}

Test(alloc, cjson_allocation_failure_is_reported_once)
{
	cJSON *root;

	ms__alloc_init_json();
	ms__alloc_json_failed();
	ms__alloc_fail_at(1, 1);
	root = cJSON_Parse("{\"a\": [1, 2, 3]}");
	ms__alloc_fail_at(0, 0);
	cr_assert_null(root, "cJSON allocates through the hook");
	cr_assert_eq(ms__alloc_json_failed(), 1, "the failure is seen");
	cr_assert_eq(ms__alloc_json_failed(), 0, "and cleared by reading it");
	root = cJSON_Parse("{\"a\": 1}");
	cr_assert_not_null(root);
	cr_assert_eq(ms__alloc_json_failed(), 0, "a good parse leaves it clear");
	cJSON_Delete(root);
}
