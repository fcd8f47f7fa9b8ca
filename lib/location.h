/*
 * location.h - the location layer: the one place that turns a location into a back end.
 *
 * A location is a local path, an s3:// or gs:// URL, or "SCHEME://..." of a back end the
 * application registered. ms__backend_of() chooses the back end once, and everything above
 * it (the streamer, model directories, fetch, ms_storage_list, _exists, _push) calls the back
 * end's operations without knowing which one it has:
 *
 *   open         one object, for reading (a source);
 *   list         the objects under a directory or prefix, or the one object a location
 *                names; its context (an S3 client) is shared by the sources of its entries;
 *   open_listed  an entry of a listing, reusing what the listing learnt (no HEAD);
 *   exists       whether an object or a prefix exists, and its size;
 *   put          stores a local file at a location (uploads).
 *
 * A location is a directory (a prefix) when it is a local directory, or a URL whose key is
 * empty or ends in '/'.
 *
 * Thread rules: every operation may run on any thread; a listing's context is used by the
 * sources opened from it from many threads at once, and freed after them.
 */
#ifndef MS_LOCATION_H
#define MS_LOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"
#include "source.h"

/** How sources are opened. */
typedef struct {
	ms_direct_io direct_io;  /* local files */
	const ms_cancel *cancel; /* requests stop when it fires; NULL for none */
} ms__open_options;

/** What a back end's client has counted, for progress and metrics. */
typedef struct {
	unsigned retries;
	unsigned throttles; /* "slow down" answers and timeouts */
	unsigned retries_by_reason[MS_RETRY_REASONS];
} ms__backend_counters;

typedef struct {
	const char *name; /* for messages: "local", "object storage", "registered back end" */
	/* Reads cross the network and share the node's admission budget (gate.h). */
	bool remote;
	/** Opens the object `location` names. */
	int (*open)(ms__source **out, const char *location, const ms__open_options *o);
	/** True if `location` is a directory or prefix (listed, not opened). */
	bool (*is_dir)(const char *location);
	/**
	 * Calls `fn` for every object under directory `location` (with sub-prefixes as
	 * is_prefix entries when not `recursive`), in name order, or for the one object a
	 * location that is not a directory names (its name: the base name). *context
	 * receives what open_listed() needs (freed with context_free; may be NULL).
	 * Returns 0, what `fn` returned when it stopped, MS_ENOTFOUND, or a back-end error.
	 */
	int (*list)(void **context, const char *location, bool recursive, const ms__open_options *o,
	            ms_list_fn fn, void *payload);
	/** Opens listed object `obj` (its location, size and ETag as listed). */
	int (*open_listed)(ms__source **out, void *context, const ms_object *obj,
	                   const ms__open_options *o);
	/** Sets *exists (and *size when not NULL) for `location`. NULL: open() is asked. */
	int (*exists)(const char *location, int *exists, uint64_t *size);
	/**
	 * Stores local file `path` at `location`. *context is created by the first call and
	 * reused by the next ones of one push (a directory), then freed with context_free.
	 * NULL: the back end cannot store.
	 */
	int (*put)(void **context, const char *path, const char *location,
	           const ms_push_options *o);
	void (*context_free)(void *context);
	/** Optional: writes "name: value (why)" lines on how `location` is reached (never a
	 * secret). NULL: one line, "<name>: <location> <summary>". */
	int (*explain)(char *out, size_t size, const char *location);
	const char *summary;
	/** Optional: what a listing's context (client) has counted. */
	void (*counters)(void *context, ms__backend_counters *out);
} ms__backend;

/**
 * The back end of `location`. Never NULL: a location without a scheme is a local path, and
 * one whose scheme nothing claims gets a back end that refuses it by name (MS_EUNSUPPORTED).
 */
const ms__backend *ms__backend_of(const char *location);

/** Opens the object `location` names, through its back end. */
int ms__source_open(ms__source **out, const char *location, const ms__open_options *o);

/** True if `location` is a directory or prefix. */
bool ms__location_is_dir(const char *location);

/** The most entries one listing holds (MS_ELIMIT beyond). */
#define MS__LISTING_MAX 100000

/** One object (or sub-prefix) of a collected listing. */
typedef struct {
	char *name;     /* relative to the listed location ("sub/file.bin", "sub/") */
	char *location; /* the full path or URL */
	char *etag;     /* "" when the back end has none */
	uint64_t size;
	bool is_prefix;
} ms__entry;

/** A listing collected in memory: the entries in name order, and the back end's context. */
typedef struct {
	const ms__backend *backend;
	void *context;
	ms__entry *entries;
	size_t count;
	size_t capacity;
} ms__listing;

/**
 * The one lister: lists `location` (recursively or not), keeping the objects (never the
 * sub-prefixes, nor "folder" keys ending in '/') for which `keep(name)` is true (`keep`
 * may be NULL for all), in name order. A model directory is this with a filter on
 * *.safetensors. Returns 0 (an empty listing is not an error here), MS_ELIMIT past
 * MS__LISTING_MAX entries, or the errors of the back end's list. Free with
 * ms__listing_free().
 */
int ms__listing_collect(ms__listing *out, const char *location, bool recursive,
                        bool (*keep)(const char *name), const ms__open_options *o);

/**
 * For back ends that gather before they report (a directory walk, a store that lists in
 * any order): appends a copy of an entry to `l` (`etag` may be NULL; MS_ELIMIT past
 * MS__LISTING_MAX, MS_ENOMEM, naming `what`), and sorts the entries by name.
 */
int ms__listing_add(ms__listing *l, const char *name, const char *location, const char *etag,
                    uint64_t size, bool is_prefix, const char *what);
void ms__listing_sort(ms__listing *l);

/** Opens entry `i` of the listing (object storage shares the listing's client). */
int ms__listing_open(ms__source **out, const ms__listing *l, size_t i, const ms__open_options *o);

/** Frees the listing. Accepts a zeroed struct. */
void ms__listing_free(ms__listing *l);

/* The back ends. */
extern const ms__backend ms__backend_file;
extern const ms__backend ms__backend_s3;
extern const ms__backend ms__backend_custom;

#endif
