/*
 * cache.h - the node cache's layout, shared by cache.c (open, publish, list, gc, verify,
 * eviction) and fetch.c (downloading blobs with single flight and resume).
 *
 * Layout of a cache directory DIR:
 *
 *   DIR/.modelstream-cache            marker: "modelstream cache 1"
 *   DIR/.lock                          flock: publishing, removing and collecting
 *   DIR/blobs/KEY                      a complete, verified file (mode 0444)
 *   DIR/blobs/KEY.json                 what it is: source, ETag, size, when fetched
 *   DIR/blobs/KEY.partial              a download in progress, sized in full up front
 *   DIR/blobs/KEY.state                which chunks of the partial are done (for resume)
 *   DIR/blobs/KEY.lock                 flock: held by the one process downloading KEY
 *                                      (exclusive) or reading it (shared)
 *   DIR/models/NAME                    symlink -> .snapshots/NAME.GEN
 *   DIR/models/.snapshots/NAME.GEN/    the model's files, as relative symlinks to blobs
 *   DIR/models/.meta/NAME.json         the model: source, files, keys, sizes
 *
 * KEY is the SHA-256 (hex, 40 characters kept) of the source URL, its ETag and its size:
 * a changed object is a new blob, never an overwrite of one a reader may have open. Blobs
 * appear under their final name only once complete and verified (rename is atomic), and a
 * model's link only once all its blobs are there, so a reader sees a whole model or none.
 * Links are relative, so the cache works mounted read-only at another path in a pod.
 */
#ifndef MS_CACHE_H
#define MS_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "modelstream.h"

#define MS__CACHE_KEY_LEN             40
#define MS__CACHE_NAME_MAX            128
#define MS__CACHE_DEFAULT_CHUNK       (8u << 20)
#define MS__CACHE_DEFAULT_CONCURRENCY 16

struct ms_cache {
	char *dir;
	int dir_fd;
	ms_cache_medium medium;
	ms_cache_options opts;
};

/** Writes the key of (source, etag, size) as 40 hex characters and a NUL.
 * @return 0; MS_ENOMEM (out is then "", never a key that could name another blob). */
int ms__cache_key(char out[MS__CACHE_KEY_LEN + 1], const char *source, const char *etag,
                  uint64_t size);

/** True if `name` can be a model name: 1..128 of [A-Za-z0-9._-], not starting with '.'. */
bool ms__cache_name_ok(const char *name);

/** Writes DIR/blobs/KEY + suffix into out. Returns 0 or MS_EINVAL if it does not fit. */
int ms__cache_blob_path(const ms_cache *c, const char *key, const char *suffix, char *out,
                        size_t size);

/** Writes `text` to `path` through a temporary file and rename; fsyncs on disk media. */
int ms__cache_write_atomic(const ms_cache *c, const char *path, const char *text, size_t len);

/** Reads one of the cache's JSON records; NULL with the error raised on failure. */
struct cJSON *ms__cache_read_json(const char *path);

/** The blob's record, written once it is complete. */
typedef struct {
	const char *source;
	const char *etag;
	uint64_t size;
	int64_t fetched_at;
} ms__cache_blob_info;

/** Writes DIR/blobs/KEY.json. */
int ms__cache_blob_record(const ms_cache *c, const char *key, const ms__cache_blob_info *info);

/** One file of a model as published. */
typedef struct {
	const char *path; /* relative: "config.json", "original/params.json" */
	const char *key;
	uint64_t size;
	const char *etag;
	const char *source;
} ms__cache_file;

/**
 * Publishes model `name`: a fresh snapshot directory of relative links to the files'
 * blobs, DIR/models/.meta/NAME.json, then DIR/models/NAME swapped to it atomically.
 * Nothing is changed if the model already points at exactly these blobs.
 */
int ms__cache_publish(ms_cache *c, const char *name, const char *source,
                      const ms__cache_file *files, size_t count);

/**
 * Makes room for `needed` more bytes within the budget, evicting the least recently used
 * blobs that no process holds and that `keep` (count keys) does not name.
 * @return 0; MS_ENOSPC when even then the budget cannot hold it.
 */
int ms__cache_make_room(ms_cache *c, uint64_t needed, const char *const *keep, size_t count,
                        size_t *models_evicted);

/** Marks a blob used now (for least-recently-used eviction). */
void ms__cache_touch(const ms_cache *c, const char *key);

/**
 * Writes DIR/models/.snapshots/GEN, the snapshot DIR/models/NAME points at, into `out`.
 * @return 0; MS_ENOTFOUND (not published); MS_EFORMAT (a link the cache did not make);
 *         MS_EINVAL (too long).
 */
int ms__cache_snapshot_of(const char *dir, const char *name, char *out, size_t size);

/**
 * Locks model `name`'s snapshot exclusively if no reader holds it (see cache_hold.c).
 * @return the locked descriptor, to close once the model is unpublished; -1 if nothing is
 *         published under the name; -2 if a reader holds it.
 */
int ms__cache_model_lock(const ms_cache *c, const char *name);

/** True if a process holds the blob: its lock, or an open descriptor or mapping on it. */
bool ms__cache_blob_in_use(const ms_cache *c, const char *key);

#endif
