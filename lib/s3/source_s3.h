/*
 * source_s3.h - S3-compatible object storage as a source (s3:// and gs:// URLs).
 */
#ifndef MS_SOURCE_S3_H
#define MS_SOURCE_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3_client.h"
#include "source.h"

/** True if `location` is an object-storage URL this back end reads. */
bool ms__source_s3_handles(const char *location);

/**
 * Opens the object at `url`: opens a client (endpoint, credential chain) and HEADs the
 * object for its size and ETag. Returns 0, or MS_ENOTFOUND, MS_EACCES, MS_EINVAL (a bad
 * URL, or a prefix), MS_EIO (the store cannot be reached after retries), MS_ENOMEM, with a
 * message naming the URL and never a secret. Its requests stop when `cancel` (or NULL)
 * fires.
 */
int ms__source_s3_open(ms__source **out, const char *url, const ms_cancel *cancel);

/**
 * HEADs object `key` (NULL: the client's own) for its size and ETag (`etag` may be NULL).
 * `what` names it in messages (NULL: the client's URL). Errors as ms__source_s3_open().
 */
int ms__source_s3_stat(ms__s3_client *client, const char *key, const char *what, uint64_t *size,
                       char *etag, size_t etag_size);

/**
 * A source for object `key` found by listing with `client` (which it shares): size and ETag
 * come from the listing, so no HEAD is sent. `url` names it in messages.
 */
int ms__source_s3_open_listed(ms__source **out, ms__s3_client *client, const char *url,
                              const char *key, uint64_t size, const char *etag);

#endif
