/*
 * source_s3.h - S3-compatible object storage as a source (s3:// and gs:// URLs).
 */
#ifndef MS_SOURCE_S3_H
#define MS_SOURCE_S3_H

#include <stdbool.h>

#include "source.h"

/** True if `location` is an object-storage URL this back end reads. */
bool ms__source_s3_handles(const char *location);

/**
 * Opens the object at `url`: resolves the endpoint, takes credentials from the
 * environment, and HEADs the object for its size and ETag. Returns 0, or MS_ENOTFOUND,
 * MS_EACCES, MS_EINVAL (a bad URL), MS_EIO (the store cannot be reached after retries),
 * MS_EUNSUPPORTED (a prefix), MS_ENOMEM, with a message naming the URL and never a secret.
 */
int ms__source_s3_open(ms__source **out, const char *url);

#endif
