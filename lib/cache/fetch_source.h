/*
 * fetch_source.h - the files of a fetch's source (see fetch_source.c).
 */
#ifndef MS_FETCH_SOURCE_H
#define MS_FETCH_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "s3/s3_client.h"
#include "source.h"

/* One file of the source. */
typedef struct {
	char *path;     /* relative to the model */
	char *location; /* where it is read from */
	char *s3_key;   /* for object storage */
	char *etag;
	uint64_t size;
	char key[MS__CACHE_KEY_LEN + 1];
} source_file;

typedef struct {
	source_file *files;
	size_t count;
	ms__s3_client *client; /* object storage: shared by every file */
	bool local;            /* files on the local file system */
} source_list;

/**
 * Lists the files of `source`: every object under a prefix (relative paths kept), one
 * object, every regular file under a local directory, one file, or a registered back end's
 * location. Sorted by path. Object storage requests stop when `cancel` (may be NULL)
 * fires. Returns 0; MS_ENOTFOUND for nothing there; MS_EINVAL for a path
 * that climbs out of the model; the errors of listing.
 */
int ms__fetch_list_source(source_list *l, const char *source, const ms_cancel *cancel);

/** Opens file `f` of the listing for reading (object storage shares the list's client). */
int ms__fetch_open_source(ms__source **out, const source_list *l, const source_file *f);

/** Frees the listing. */
void ms__fetch_source_free(source_list *l);

#endif
