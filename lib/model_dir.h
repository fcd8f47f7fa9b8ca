/*
 * model_dir.h - a model directory: the *.safetensors files directly under a local directory
 * or a prefix ("s3://bucket/llama/", "myfs://models/llama/"), in name order.
 *
 * Hugging Face repositories shard weights as model-00001-of-00004.safetensors ...; pointing
 * modelstream at the directory streams every shard, in order, as one model. Other files
 * (config.json, tokenizer) are left to `fetch`; sub-directories are not entered. It is the
 * location layer's one lister with a filter (location.h).
 */
#ifndef MS_MODEL_DIR_H
#define MS_MODEL_DIR_H

#include "location.h"

/**
 * Lists the model's weight files into `out` (open each with ms__listing_open()).
 * @return 0; MS_ENOTFOUND when there is none (the message says what was looked for); the
 *         errors of listing.
 */
int ms__model_dir_open(ms__listing *out, const char *location, const ms__open_options *o);

#endif
