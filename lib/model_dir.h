/*
 * model_dir.h - a model directory: the *.safetensors files directly under a local directory
 * or an object-storage prefix ("s3://bucket/llama/"), in name order.
 *
 * Hugging Face repositories shard weights as model-00001-of-00004.safetensors ...; pointing
 * modelstream at the directory streams every shard, in order, as one model. Other files
 * (config.json, tokenizer) are left to `fetch`; sub-directories are not entered.
 */
#ifndef MS_MODEL_DIR_H
#define MS_MODEL_DIR_H

#include <stdbool.h>
#include <stdint.h>

#include "modelstream.h"
#include "s3/s3_client.h"
#include "source.h"

typedef struct {
	char *location; /* the file's path or URL */
	char *key;      /* its key, for object storage; NULL for local files */
	uint64_t size;
	char *etag;
} ms__model_file;

typedef struct {
	ms__model_file *files;
	size_t count;
	ms__s3_client *client; /* shared by the files' sources; NULL for a local directory */
} ms__model_dir;

/** True if `location` is a local directory or an object-storage prefix URL. */
bool ms__model_dir_is(const char *location);

/**
 * Lists the model's files. @return 0; MS_ENOTFOUND when there is none (the message says
 * what was looked for); the errors of listing or opendir.
 */
int ms__model_dir_open(ms__model_dir *out, const char *location);

/** Opens file `i` as a source (object-storage files share the directory's client). */
int ms__model_dir_source(ms__source **out, const ms__model_dir *d, size_t i,
                         ms_direct_io direct_io);

/** Frees the listing. Accepts a zeroed struct. */
void ms__model_dir_free(ms__model_dir *d);

#endif
