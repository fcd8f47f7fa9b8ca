/*
 * stgen.h - writes safetensors test files from a seed.
 *
 * Tests need safetensors files of every shape and size, from one tiny tensor to many
 * gigabytes, and checking in such files would bloat the repository. stgen makes them
 * instead: the same spec always gives the same file, byte for byte. Tensor names follow a
 * realistic transformer layout ("model.layers.12.mlp.up_proj.weight"), and the content of
 * the data section is a cheap function of (seed, offset), so a test can check any byte it
 * reads with stgen_byte() without keeping a reference copy.
 *
 * Everything here uses only libc. Functions return 0, or -1 with errno set: EINVAL for a
 * spec that cannot be met, ENOMEM, or whatever open(2) and write(2) reported. No function
 * keeps state between calls, so all of them may run from any thread.
 */
#ifndef STGEN_H
#define STGEN_H

#include <stddef.h>
#include <stdint.h>

/** How the tensor entries are ordered in the JSON header. */
typedef enum {
	/** In data-offset order, as a naive writer would produce. */
	STGEN_JSON_FILE_ORDER = 0,
	/** Sorted by name, while the offsets keep another order, as real files often are. */
	STGEN_JSON_SORTED = 1,
	/** A random (seeded) order, with "__metadata__" somewhere in the middle. */
	STGEN_JSON_SHUFFLED = 2,
} stgen_json_order;

/** What to generate. Start from STGEN_SPEC_INIT and change what matters to the test. */
typedef struct {
	/** Decides every choice and the data content; the same spec gives the same file. */
	uint64_t seed;
	/** Tensors of random dtype and shape (1 to 3 dimensions), sized 1..small_max_bytes. */
	size_t small_count;
	uint64_t small_max_bytes;
	/** Tensors of exactly large_bytes each, spread evenly among the small ones. The
	 * first and last tensors of the file are large when there are any. */
	size_t large_count;
	uint64_t large_bytes;
	/** Nonzero: write a "__metadata__" map, whose values use JSON escapes. */
	int metadata;
	/** The dtypes to use, by their header names ("F16"); NULL or 0 means every dtype. A
	 * large tensor takes a dtype of which large_bytes holds a whole number of elements
	 * (for F6 types, whole groups of 4 elements in 3 bytes). */
	const char *const *dtypes;
	size_t dtype_count;
	stgen_json_order json_order;
} stgen_spec;

/* The defaults of the mkmodel command: about 160 MB, of which 128 MiB in two tensors. */
#define STGEN_SPEC_INIT                                                                           \
	{                                                                                         \
		.seed = 1, .small_count = 2000, .small_max_bytes = 64 * 1024, .large_count = 2,   \
		.large_bytes = 64 * 1024 * 1024, .metadata = 1, .dtypes = NULL, .dtype_count = 0, \
		.json_order = STGEN_JSON_FILE_ORDER,                                              \
	}

/** One tensor of a planned file. Tensors are packed back to back with no alignment, so
 * an F64 tensor may start at an odd offset: the format allows it, and readers that use
 * O_DIRECT must cope. */
typedef struct {
	char name[80];
	const char *dtype; /* a static string, such as "BF16" */
	size_t ndim;       /* 1 to 3 */
	uint64_t shape[3];
	uint64_t begin; /* offsets into the data section; end - begin is the size */
	uint64_t end;
} stgen_tensor;

/** Every dtype of the current safetensors format, by header name, in a fixed order. */
extern const char *const stgen_all_dtypes[];
extern const size_t stgen_all_dtype_count;

/** The element size of a dtype in bits (16 for "BF16", 4 for "F4"), or 0 if unknown. */
unsigned stgen_dtype_bits(const char *dtype);

/**
 * Says why `spec` cannot be generated ("an unknown dtype is listed"), or returns NULL if
 * it can. The message is a static string. stgen_plan() and stgen_write() fail with EINVAL
 * exactly when this returns a message, so a command can explain the failure.
 */
const char *stgen_spec_problem(const stgen_spec *spec);

/**
 * Plans the file that stgen_write() would write for `spec`, without writing it. On
 * success *out is a malloc'ed array of *out_count tensors in data-offset order (the
 * caller frees it with free()); on failure both are left untouched. Returns 0 or -1.
 */
int stgen_plan(stgen_tensor **out, size_t *out_count, const stgen_spec *spec);

/**
 * Writes the file for `spec` to `path`, replacing any file there. On failure a partly
 * written file is removed. Returns 0 or -1 with errno set.
 */
int stgen_write(const char *path, const stgen_spec *spec);

/**
 * The content byte at offset `data_offset` of the data section of every file written
 * with `seed`. Each aligned 8-byte word is distinct, so misplaced reads show up.
 */
uint8_t stgen_byte(uint64_t seed, uint64_t data_offset);

/**
 * Fills `buf` with the `len` content bytes that start at `data_offset`, as
 * stgen_byte() would give them one by one, but fast.
 */
void stgen_fill(void *buf, size_t len, uint64_t seed, uint64_t data_offset);

/**
 * Writes a file of any shape, for hostile cases: the `len` bytes of `prefix_and_header`
 * verbatim (the 8-byte length, the JSON, whatever the test wants), then `data_len`
 * content bytes, where the first is stgen_byte(seed, 0). Returns 0 or -1 with errno set.
 */
int stgen_write_raw(const char *path, const void *prefix_and_header, size_t len, uint64_t data_len,
                    uint64_t seed);

#endif
