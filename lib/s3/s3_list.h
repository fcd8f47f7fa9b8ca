/*
 * s3_list.h - listing a prefix with ListObjectsV2, every page.
 */
#ifndef MS_S3_LIST_H
#define MS_S3_LIST_H

#include <stdbool.h>

#include "modelstream.h"
#include "s3_client.h"

/** The most pages one listing follows (1000 keys each): ten million keys. */
#define MS__S3_LIST_PAGES_MAX 10000

/**
 * Lists the keys under `prefix` (NULL: the client's key, which must be a prefix) on the
 * client's bucket, calling `fn` for each object (and each common prefix when not
 * `recursive`), page after page, in key order. The ms_object's location and name point
 * into the page and are valid during the call only.
 * @return 0; what `fn` returned when non-zero; the errors of ms__s3_send(); MS_EFORMAT
 *         for a page that does not parse, or a continuation token that repeats.
 */
int ms__s3_list_each(ms__s3_client *c, const char *prefix, bool recursive, ms_list_fn fn,
                     void *payload);

/**
 * Writes `in` into `out` percent-encoded for a query string (everything but A-Z a-z 0-9
 * - _ . ~). Returns 0 or MS_EINVAL when `out` (of `size` bytes) is too small.
 */
int ms__s3_query_encode(char *out, size_t size, const char *in);

#endif
