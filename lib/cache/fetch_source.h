/*
 * fetch_source.h - the files of a fetch's source (see fetch_source.c).
 */
#ifndef MS_FETCH_SOURCE_H
#define MS_FETCH_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "location.h"
#include "source.h"

/* One file of the source; the strings point into the listing. */
typedef struct {
	const char *path;     /* relative to the model */
	const char *location; /* where it is read from */
	const char *etag;
	uint64_t size;
	char key[MS__CACHE_KEY_LEN + 1];
} source_file;

typedef struct {
	source_file *files;
	size_t count;
	ms__listing listing; /* files[i] is listing.entries[i] */
} source_list;

/**
 * Lists the files of `source` through the location layer: every object under a directory
 * or prefix (relative paths kept), or the one file or object it names. Sorted by path.
 * Requests stop when `cancel` (may be NULL) fires. Returns 0; MS_ENOTFOUND for nothing
 * there; MS_EINVAL for a path that climbs out of the model; the errors of listing.
 */
int ms__fetch_list_source(source_list *l, const char *source, const ms_cancel *cancel);

/** Opens file `f` of the listing for reading (object storage shares the list's client). */
int ms__fetch_open_source(ms__source **out, const source_list *l, const source_file *f);

/** Retries, throttles and retries by reason of the listing's client so far (zeros for
 * back ends without one). */
void ms__fetch_source_counters(const source_list *l, ms__backend_counters *out);

/** Frees the listing. */
void ms__fetch_source_free(source_list *l);

#endif
