/*
 * test_cache_hold.c - holds on published models (lib/cache/cache_hold.c) and ms_cache_evict():
 * a held model is never evicted, by name or for the budget; a released one is.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelstream.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(cache_hold, .fini = teardown, .timeout = 60);

static const char header[] =
    "{\"w\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}";

/* A cache in the test's directory with model `name` fetched from a local directory. */
static ms_cache *cache_with(const char *name, uint64_t budget)
{
	char src[4096], file[4200], dir[4096];
	ms_cache_options opts = MS_CACHE_OPTIONS_INIT;
	ms_cache *c = NULL;

	tu_path(dir, sizeof(dir), "cache");
	mkdir(dir, 0755);
	snprintf(src, sizeof(src), "%s/src-%s", tu_tmpdir(), name);
	mkdir(src, 0755);
	snprintf(file, sizeof(file), "%s/model.safetensors", src);
	tu_write_safetensors(file, header, 4096, (uint64_t)name[0]);
	opts.budget = budget;
	cr_assert_eq(ms_cache_open(&c, dir, &opts), 0, "%s", ms_error_last()->message);
	strcat(src, "/");
	cr_assert_eq(ms_cache_fetch(c, src, name, NULL, NULL), 0, "%s", ms_error_last()->message);
	return c;
}

static bool published(const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/cache/models/%s", tu_tmpdir(), name);
	return lstat(path, &st) == 0;
}

Test(cache_hold, a_held_model_is_not_evicted_and_a_released_one_is)
{
	ms_cache *c = cache_with("v1", 0);
	ms_cache_hold *h = NULL;
	char dir[4096];

	tu_path(dir, sizeof(dir), "cache");
	cr_assert_eq(ms_cache_hold_new(&h, dir, "v1"), 0, "%s", ms_error_last()->message);
	cr_assert_not_null(h);
	cr_assert(strstr(ms_cache_hold_path(h), "/models/v1") != NULL);
	cr_assert_eq(ms_cache_evict(c, "v1"), MS_EBUSY);
	cr_assert(strstr(ms_error_last()->message, "held") != NULL, "%s", ms_error_last()->message);
	cr_assert(published("v1"), "a refused eviction changed nothing");
	ms_cache_hold_free(h);
	cr_assert_eq(ms_cache_evict(c, "v1"), 0, "%s", ms_error_last()->message);
	cr_assert(!published("v1"));
	cr_assert_eq(ms_cache_evict(c, "v1"), MS_ENOTFOUND);
	ms_cache_free(c);
}

Test(cache_hold, two_holds_share_and_the_last_release_frees)
{
	ms_cache *c = cache_with("v1", 0);
	ms_cache_hold *a = NULL, *b = NULL;
	char dir[4096];

	tu_path(dir, sizeof(dir), "cache");
	cr_assert_eq(ms_cache_hold_new(&a, dir, "v1"), 0);
	cr_assert_eq(ms_cache_hold_new(&b, dir, "v1"), 0, "holds are shared, not exclusive");
	ms_cache_hold_free(a);
	cr_assert_eq(ms_cache_evict(c, "v1"), MS_EBUSY);
	ms_cache_hold_free(b);
	cr_assert_eq(ms_cache_evict(c, "v1"), 0);
	ms_cache_free(c);
}

Test(cache_hold, missing_models_and_bad_names)
{
	ms_cache *c = cache_with("v1", 0);
	ms_cache_hold *h = (ms_cache_hold *)&h;
	char dir[4096];

	tu_path(dir, sizeof(dir), "cache");
	cr_assert_eq(ms_cache_hold_new(&h, dir, "v2"), MS_ENOTFOUND);
	cr_assert_null(h);
	cr_assert(strstr(ms_error_last()->message, "v2") != NULL);
	cr_assert_eq(ms_cache_hold_new(&h, dir, "../v1"), MS_EINVAL);
	cr_assert_eq(ms_cache_hold_new(&h, dir, ".hidden"), MS_EINVAL);
	cr_assert_eq(ms_cache_hold_new(&h, "/nonexistent/cache", "v1"), MS_ENOTFOUND);
	cr_assert_eq(ms_cache_evict(c, "../v1"), MS_EINVAL);
	ms_cache_hold_free(NULL);
	ms_cache_free(c);
}

Test(cache_hold, budget_eviction_passes_over_a_held_model)
{
	ms_cache *c = cache_with("a", 0), *small = NULL;
	ms_cache_options opts = MS_CACHE_OPTIONS_INIT;
	ms_cache_hold *h = NULL;
	char dir[4096], src[4096], file[4200];

	tu_path(dir, sizeof(dir), "cache");
	cr_assert_eq(ms_cache_hold_new(&h, dir, "a"), 0);
	/* A budget that holds one model: fetching a second must evict the first, which is
	 * held, so the fetch fails for space and the held model stays. */
	opts.budget = 6000;
	cr_assert_eq(ms_cache_open(&small, dir, &opts), 0);
	snprintf(src, sizeof(src), "%s/src-b", tu_tmpdir());
	mkdir(src, 0755);
	snprintf(file, sizeof(file), "%s/model.safetensors", src);
	tu_write_safetensors(file, header, 4096, 7);
	strcat(src, "/");
	cr_assert_eq(ms_cache_fetch(small, src, "b", NULL, NULL), MS_ENOSPC);
	cr_assert(published("a"));
	ms_cache_hold_free(h);
	cr_assert_eq(ms_cache_fetch(small, src, "b", NULL, NULL), 0, "%s",
	             ms_error_last()->message);
	cr_assert(!published("a"), "released, it was evicted for the budget");
	cr_assert(published("b"));
	ms_cache_free(small);
	ms_cache_free(c);
}

/* That a hold needs no write access is tested through a read-only bind mount, as root, in
 * tests/agent_tests.sh (the sidecar's case). */
