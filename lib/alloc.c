/*
 * alloc.c - the allocation front end, with a failure hook for tests.
 *
 * The hook is the one piece of process-wide mutable state in the library. It exists so
 * that tests can fail the Nth allocation and prove that every path frees what it took;
 * production code never sets it, and with it off each call costs one relaxed atomic add.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc.h"

/* Relaxed ordering: the counters order nothing else; a test sets them from one thread. */
static atomic_long alloc_calls;
static atomic_long alloc_fail_at_call; /* 0: never fail */
static atomic_int alloc_fail_sticky;

static int should_fail(void)
{
	long call = atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed) + 1;
	long fail_at = atomic_load_explicit(&alloc_fail_at_call, memory_order_relaxed);

	if (fail_at <= 0)
		return 0;
	if (call == fail_at)
		return 1;
	return call > fail_at && atomic_load_explicit(&alloc_fail_sticky, memory_order_relaxed);
}

void ms__alloc_fail_at(long n, int sticky)
{
	long now = atomic_load_explicit(&alloc_calls, memory_order_relaxed);

	atomic_store_explicit(&alloc_fail_sticky, sticky, memory_order_relaxed);
	atomic_store_explicit(&alloc_fail_at_call, n > 0 ? now + n : 0, memory_order_relaxed);
}

long ms__alloc_count(void)
{
	return atomic_load_explicit(&alloc_calls, memory_order_relaxed);
}

void *ms__malloc(size_t size)
{
	if (should_fail())
		return NULL;
	return malloc(size == 0 ? 1 : size);
}

void *ms__calloc(size_t count, size_t size)
{
	if (should_fail())
		return NULL;
	return calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
}

void *ms__realloc(void *ptr, size_t size)
{
	if (should_fail())
		return NULL;
	return realloc(ptr, size == 0 ? 1 : size);
}

void ms__free(void *ptr)
{
	free(ptr);
}

char *ms__strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *copy = ms__malloc(len + 1);

	if (copy == NULL)
		return NULL;
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

char *ms__strdup(const char *s)
{
	return ms__strndup(s, strlen(s));
}

/* cJSON reports running out of memory as a parse error; this per-thread flag lets the
 * parser tell the two apart. Thread-local: parses on other threads do not disturb it. */
static _Thread_local int json_allocation_failed;

static void *json_malloc(size_t size)
{
	void *p = ms__malloc(size);

	if (p == NULL)
		json_allocation_failed = 1;
	return p;
}

int ms__alloc_json_failed(void)
{
	int failed = json_allocation_failed;

	json_allocation_failed = 0;
	return failed;
}

static void json_hooks_install(void)
{
	cJSON_Hooks hooks = {.malloc_fn = json_malloc, .free_fn = ms__free};

	cJSON_InitHooks(&hooks);
}

void ms__alloc_init_json(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, json_hooks_install);
}

int ms__grow(void **array, size_t *capacity, size_t needed, size_t element)
{
	size_t cap = *capacity;
	size_t bytes;
	void *p;

	if (needed <= cap)
		return 0;
	while (cap < needed)
		cap = cap == 0 ? 8 : cap * 2;
	if (ms__mul_overflow(&bytes, cap, element) != 0)
		return -1;
	p = ms__realloc(*array, bytes);
	if (p == NULL)
		return -1;
	*array = p;
	*capacity = cap;
	return 0;
}
