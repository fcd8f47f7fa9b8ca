/*
 * safetensors.h - parsing and validating safetensors headers.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON, then
 * the data section. The JSON maps tensor names to {"dtype", "shape", "data_offsets"} and
 * may hold "__metadata__", a string-to-string map. This module turns those bytes into a
 * validated tensor table, and rejects anything the format forbids: the rest of the
 * library trusts every number in the table.
 */
#ifndef MS_SAFETENSORS_H
#define MS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"

/** The largest JSON header accepted, as in the reference implementation (100 MB). */
#define MS__ST_HEADER_MAX 100000000ULL
/** How much of a file is read in the first round trip; the header usually fits. */
#define MS__ST_FIRST_READ (1024 * 1024)
/** Numbers in a header must be integers no larger than this (exact in a double). */
#define MS__ST_NUMBER_MAX 9007199254740992ULL /* 2^53 */

typedef struct {
	char *name;
	ms_dtype dtype;
	int64_t *shape; /* NULL when ndim == 0 */
	size_t ndim;
	uint64_t begin; /* offsets relative to the start of the data section */
	uint64_t end;
} ms__st_tensor;

typedef struct {
	uint64_t header_size; /* N, the JSON length */
	uint64_t data_start;  /* 8 + N: the file offset of the data section */
	uint64_t file_size;
	ms__st_tensor *tensors; /* sorted by begin (file order) */
	size_t tensor_count;
	char **metadata_keys; /* in header order */
	char **metadata_values;
	size_t metadata_count;
	uint64_t largest_tensor; /* bytes */
} ms__st_header;

/**
 * Validates the 8-byte prefix of a file of `file_size` bytes and returns the header
 * length N in *out: N must be at most MS__ST_HEADER_MAX and 8 + N at most file_size.
 * `name` only serves the message. Returns 0 or MS_EFORMAT.
 */
int ms__st_prefix_parse(uint64_t *out, const unsigned char prefix[8], uint64_t file_size,
                        const char *name);

/**
 * Parses and validates the JSON header `json` (exactly `json_len` bytes, not necessarily
 * NUL-terminated, trailing spaces allowed) of a file of `file_size` bytes. On success
 * *out owns a new table; free it with ms__st_header_free(). Returns 0, MS_EFORMAT with a
 * message "<name>: <what is wrong>", or MS_ENOMEM.
 */
int ms__st_header_parse(ms__st_header **out, const char *json, size_t json_len, uint64_t file_size,
                        const char *name);

void ms__st_header_free(ms__st_header *h);

/** Looks up a dtype by its header spelling; returns 0 or -1 if unknown. */
int ms__dtype_from_name(ms_dtype *out, const char *name);

#endif
