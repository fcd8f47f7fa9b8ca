/*
 * alloc.h - the library's one allocation front end.
 *
 * Every allocation in the library (and cJSON's, through its hooks) goes through here, so
 * that a test can make the Nth allocation fail and walk every N, as curl's "torture" tests
 * do. Outside tests the functions are thin wrappers around malloc and friends.
 */
#ifndef MS_ALLOC_H
#define MS_ALLOC_H

#include <stddef.h>

void *ms__malloc(size_t size);
void *ms__calloc(size_t count, size_t size);
void *ms__realloc(void *ptr, size_t size);
void ms__free(void *ptr);
char *ms__strdup(const char *s);
char *ms__strndup(const char *s, size_t n);

/**
 * Test hook: make the allocation `n` calls from now fail (1 = the very next one), and
 * every one after it while `sticky` is set. n <= 0 switches failures off.
 */
void ms__alloc_fail_at(long n, int sticky);

/** Test hook: the number of allocation calls since the process started. */
long ms__alloc_count(void);

/**
 * Routes cJSON's allocations through this front end; idempotent and thread-safe. The
 * hooks are process-wide (cJSON has no other kind): an application that also uses cJSON
 * gets malloc-compatible hooks, since ms__malloc is malloc unless a test arms a failure.
 */
void ms__alloc_init_json(void);

/** Whether a cJSON allocation failed on this thread since the last call; clears it. */
int ms__alloc_json_failed(void);

/** Multiplies a * b into *out; returns 0, or -1 if the product does not fit. */
static inline int ms__mul_overflow(size_t *out, size_t a, size_t b)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

/**
 * Makes `*array` (of `element`-byte items, `*capacity` of them) hold at least `needed`,
 * doubling its capacity as needed. Returns 0, or -1 (the array unchanged) when memory or
 * the size's arithmetic fails.
 */
int ms__grow(void **array, size_t *capacity, size_t needed, size_t element);

#endif
