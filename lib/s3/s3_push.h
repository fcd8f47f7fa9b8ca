/*
 * s3_push.h - uploading a local file to an object: one PUT, or a parallel multipart upload.
 */
#ifndef MS_S3_PUSH_H
#define MS_S3_PUSH_H

#include "modelstream.h"
#include "s3_client.h"

/** S3's limits: parts of at least 5 MiB (but the last), at most 10000 parts. */
#define MS__S3_PART_MIN   (5ull << 20)
#define MS__S3_PART_MAX   (5ull << 30)
#define MS__S3_PARTS_MAX  10000
#define MS__S3_OBJECT_MAX (5ull << 40)

/**
 * Uploads local file `path` to object `key` of the client's bucket (`url` names it in
 * messages), then HEADs it to check its size. Files up to one part go in one PUT; larger
 * ones as a multipart upload with opts->concurrency parts in flight, aborted on failure.
 */
int ms__s3_push_file(ms__s3_client *c, const char *path, const char *key, const char *url,
                     const ms_push_options *opts);

#endif
