/*
 * fuzz_header.c - a libFuzzer target for the safetensors header parser.
 *
 * Each input is used three ways, so that the fuzzer reaches every check whether or not it
 * has learnt the length prefix yet:
 *  1. as a whole file: the first 8 bytes go to ms__st_prefix_parse() with the input's size
 *     as the file size, and the header they announce to ms__st_header_parse(), with the
 *     rest of the input as the data section (so valid files parse);
 *  2. as a bare JSON header, with an empty data section and with a huge one (the prefix
 *     check is skipped; the layout checks still run);
 *  3. as the bare header again while allocation N fails (N taken from the input), to walk
 *     the out-of-memory paths; LeakSanitizer checks that they free what they took.
 * The parser always gets a private copy of exactly the header's bytes, so AddressSanitizer
 * catches any read past its end. A success must give a table that keeps every promise of
 * safetensors.h (sorted, tiling the data section, sizes that match shapes and dtypes,
 * unique names); a failure must give MS_EFORMAT or MS_ENOMEM with a one-line message that
 * names the file. Anything else calls abort(), which libFuzzer reports as a crash.
 *
 * Build: make build/fuzz_header    Run: make fuzz FUZZ_SECONDS=600
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.safetensors"

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "fuzz_header: invariant failed at line %d: %s\n", \
			        __LINE__, #cond);                                         \
			abort();                                                          \
		}                                                                         \
	} while (0)

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Aborts unless `count` strings are all distinct. */
static void check_unique(char *const *strings, size_t count)
{
	char **sorted;

	if (count < 2)
		return;
	sorted = malloc(count * sizeof(*sorted));
	CHECK(sorted != NULL);
	memcpy(sorted, strings, count * sizeof(*sorted));
	qsort(sorted, count, sizeof(*sorted), compare_strings);
	for (size_t i = 1; i < count; i++)
		CHECK(strcmp(sorted[i - 1], sorted[i]) != 0);
	free(sorted);
}

/* Every promise of a parsed table, recomputed from scratch. */
static void check_table(const ms__st_header *h, size_t json_len, uint64_t file_size)
{
	uint64_t data_size, expected = 0, largest = 0;
	char **names;

	CHECK(h->header_size == json_len);
	CHECK(h->data_start == 8 + (uint64_t)json_len);
	CHECK(h->file_size == file_size);
	CHECK(h->data_start <= file_size);
	data_size = file_size - h->data_start;
	CHECK(h->tensor_count == 0 || h->tensors != NULL);
	for (size_t i = 0; i < h->tensor_count; i++) {
		const ms__st_tensor *t = &h->tensors[i];
		uint64_t elements = 1, bits;

		CHECK(t->name != NULL);
		CHECK(strcmp(t->name, "__metadata__") != 0);
		CHECK((unsigned)t->dtype < MS_DTYPE_COUNT_);
		CHECK(t->ndim <= MS_MAX_NDIM);
		CHECK((t->ndim == 0) == (t->shape == NULL));
		for (size_t d = 0; d < t->ndim; d++) {
			CHECK(t->shape[d] >= 0 && (uint64_t)t->shape[d] <= MS__ST_NUMBER_MAX);
			CHECK(!__builtin_mul_overflow(elements, (uint64_t)t->shape[d], &elements));
		}
		CHECK(!__builtin_mul_overflow(elements, (uint64_t)ms_dtype_bits(t->dtype), &bits));
		CHECK(bits % 8 == 0);
		/* Sorted and tiling: each tensor starts where the one before it ended. */
		CHECK(t->begin == expected);
		CHECK(t->begin <= t->end);
		CHECK(t->end - t->begin == bits / 8);
		CHECK(t->end <= MS__ST_NUMBER_MAX);
		expected = t->end;
		if (t->end - t->begin > largest)
			largest = t->end - t->begin;
	}
	CHECK(expected == data_size);
	CHECK(largest == h->largest_tensor);

	names = malloc((h->tensor_count + 1) * sizeof(*names));
	CHECK(names != NULL);
	for (size_t i = 0; i < h->tensor_count; i++)
		names[i] = h->tensors[i].name;
	check_unique(names, h->tensor_count);
	free(names);

	CHECK(h->metadata_count == 0 || (h->metadata_keys != NULL && h->metadata_values != NULL));
	for (size_t i = 0; i < h->metadata_count; i++)
		CHECK(h->metadata_keys[i] != NULL && h->metadata_values[i] != NULL);
	check_unique(h->metadata_keys, h->metadata_count);
}

/* A failure: the right codes, *out cleared, and a one-line message naming the file. */
static void check_failure(int rc, const ms__st_header *h)
{
	const ms_error *e = ms_error_last();

	CHECK(rc == MS_EFORMAT || rc == MS_ENOMEM);
	CHECK(h == NULL);
	CHECK(e->code == rc);
	CHECK(strncmp(e->message, NAME ": ", strlen(NAME ": ")) == 0);
	CHECK(strchr(e->message, '\n') == NULL && strchr(e->message, '\r') == NULL);
}

/* Parses `len` bytes copied to a buffer of exactly that size; returns the result code. */
static int parse_copy(const uint8_t *json, size_t len, uint64_t file_size)
{
	ms__st_header *h = (ms__st_header *)&h; /* anything but NULL: the parser must clear it */
	char *copy = malloc(len ? len : 1);
	int rc;

	CHECK(copy != NULL);
	if (len > 0)
		memcpy(copy, json, len);
	rc = ms__st_header_parse(&h, copy, len, file_size, NAME);
	if (rc == 0) {
		CHECK(h != NULL);
		check_table(h, len, file_size);
		ms__st_header_free(h);
	} else {
		check_failure(rc, h);
	}
	free(copy);
	return rc;
}

static void fuzz_as_file(const uint8_t *data, size_t size)
{
	unsigned char prefix[8] = {0};
	uint64_t n = UINT64_MAX;
	int rc;

	memcpy(prefix, data, size < 8 ? size : 8);
	rc = ms__st_prefix_parse(&n, prefix, size, NAME);
	if (rc != 0) {
		check_failure(rc, NULL);
		CHECK(rc == MS_EFORMAT);
		return;
	}
	CHECK(size >= 8 && n >= 2 && n <= MS__ST_HEADER_MAX && n <= size - 8);
	parse_copy(data + 8, (size_t)n, size);
}

static void fuzz_as_json(const uint8_t *data, size_t size)
{
	int empty_data, huge_data, oom;
	long fail_at;

	if (size > MS__ST_HEADER_MAX)
		return;
	empty_data = parse_copy(data, size, 8 + (uint64_t)size);
	/* A data section far larger than any tensor: only the layout checks can fail. */
	huge_data = parse_copy(data, size, 8 + (uint64_t)size + (1ULL << 62));
	CHECK(huge_data != 0 || empty_data != 0); /* the data section has one size */

	/* Allocation N fails, and every one after it; N from the input, 1 to 64. */
	fail_at = 1 + (long)((size > 0 ? data[size - 1] : 0) % 64);
	ms__alloc_fail_at(fail_at, 1);
	oom = parse_copy(data, size, 8 + (uint64_t)size);
	ms__alloc_fail_at(0, 0);
	/* Out of memory can only turn a success into MS_ENOMEM (cJSON's failures included),
	 * never a failure into a success. */
	CHECK(oom != 0 || empty_data == 0);
	CHECK(oom == 0 || oom == MS_ENOMEM || oom == MS_EFORMAT);
	CHECK(!(empty_data == 0 && oom == MS_EFORMAT));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_as_file(data, size);
	fuzz_as_json(data, size);
	return 0;
}
