/*
 * test_safetensors.c - the header parser: dtype names, the length prefix, valid headers
 * of every shape, every hostile input we know of (with its exact error code and the
 * distinctive part of its message), the same hostile files through ms_streamer_add(), and
 * an allocation-failure walk over the parser and the streamer.
 *
 * The hostile cases live in one table, `hostile_cases`, which serves two tests: the
 * parser called directly, and the public API on a real file. docs/hostile-inputs.md lists
 * the same cases with the full messages they produce: a new row here needs one there.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "modelstream.h"
#include "safetensors.h"
#include "support/stgen.h"
#include "support/testutil.h"

static void teardown(void)
{
	ms__alloc_fail_at(0, 0);
	tu_tmpdir_remove();
}

/* The timeout only guards against a parser that hangs or turns quadratic on a large
 * header; it is far above what any test here needs, even under valgrind. */
TestSuite(safetensors, .fini = teardown, .timeout = 300);

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Parses `json` as the header of a file whose data section holds `data_len` bytes. */
static int parse_len(ms__st_header **out, const char *json, size_t len, uint64_t data_len)
{
	return ms__st_header_parse(out, json, len, 8 + (uint64_t)len + data_len, "FILE");
}

static int parse(ms__st_header **out, const char *json, uint64_t data_len)
{
	return parse_len(out, json, strlen(json), data_len);
}

/* The hostile case under test, for failure messages (each test runs in its own process). */
static const char *current_case = "";

/* Asserts that the last error has `code` and that its message holds `part`. */
static void assert_error(int rc, int code, const char *part)
{
	const ms_error *e = ms_error_last();

	cr_assert_eq(rc, code, "%s: rc %d (%s), expected %d; message: %s", current_case, rc,
	             ms_strerror(rc), code, e->message);
	cr_assert_eq(e->code, code, "%s: ms_error_last()->code %d, expected %d", current_case,
	             e->code, code);
	cr_assert_not_null(strstr(e->message, part), "%s: message \"%s\" lacks \"%s\"",
	                   current_case, e->message, part);
	cr_assert_null(strchr(e->message, '\n'), "message is not one line: %s", e->message);
}

/* Parses a header that must be valid and returns its table. */
static ms__st_header *parse_ok(const char *json, uint64_t data_len)
{
	ms__st_header *h = NULL;
	int rc = parse(&h, json, data_len);

	cr_assert_eq(rc, 0, "rc %d: %s\nheader: %s", rc, ms_error_last()->message, json);
	cr_assert_not_null(h);
	return h;
}

static const ms__st_tensor *find_tensor(const ms__st_header *h, const char *name)
{
	for (size_t i = 0; i < h->tensor_count; i++)
		if (strcmp(h->tensors[i].name, name) == 0)
			return &h->tensors[i];
	cr_assert_fail("no tensor '%s'", name);
	return NULL;
}

static void sb_repeat(tu_strbuf *b, const char *s, size_t times)
{
	for (size_t i = 0; i < times; i++)
		tu_sb_puts(b, s);
}

/* A well-formed tensor entry. */
#define ENTRY(dtype, shape, offsets) \
	"{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

/* ---------------------------------------------------------------------------------------- */
/* Dtypes                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* The safetensors specification's dtypes, written out independently of the library. */
static const struct {
	ms_dtype dtype;
	const char *name;
	unsigned bits;
} spec_dtypes[] = {
    {MS_DTYPE_BOOL, "BOOL", 8},       {MS_DTYPE_U8, "U8", 8},
    {MS_DTYPE_I8, "I8", 8},           {MS_DTYPE_U16, "U16", 16},
    {MS_DTYPE_I16, "I16", 16},        {MS_DTYPE_F16, "F16", 16},
    {MS_DTYPE_BF16, "BF16", 16},      {MS_DTYPE_U32, "U32", 32},
    {MS_DTYPE_I32, "I32", 32},        {MS_DTYPE_F32, "F32", 32},
    {MS_DTYPE_U64, "U64", 64},        {MS_DTYPE_I64, "I64", 64},
    {MS_DTYPE_F64, "F64", 64},        {MS_DTYPE_C64, "C64", 64},
    {MS_DTYPE_F8_E4M3, "F8_E4M3", 8}, {MS_DTYPE_F8_E5M2, "F8_E5M2", 8},
    {MS_DTYPE_F8_E8M0, "F8_E8M0", 8}, {MS_DTYPE_F4, "F4", 4},
    {MS_DTYPE_F6_E2M3, "F6_E2M3", 6}, {MS_DTYPE_F6_E3M2, "F6_E3M2", 6},
};
#define SPEC_DTYPE_COUNT (sizeof(spec_dtypes) / sizeof(spec_dtypes[0]))

Test(safetensors, dtype_names_round_trip)
{
	cr_assert_eq(SPEC_DTYPE_COUNT, (size_t)MS_DTYPE_COUNT_);
	for (size_t i = 0; i < SPEC_DTYPE_COUNT; i++) {
		ms_dtype parsed = MS_DTYPE_COUNT_;

		cr_assert_str_eq(ms_dtype_name(spec_dtypes[i].dtype), spec_dtypes[i].name);
		cr_assert_eq(ms_dtype_bits(spec_dtypes[i].dtype), spec_dtypes[i].bits, "%s",
		             spec_dtypes[i].name);
		cr_assert_eq(ms__dtype_from_name(&parsed, spec_dtypes[i].name), 0);
		cr_assert_eq(parsed, spec_dtypes[i].dtype, "%s", spec_dtypes[i].name);
		/* stgen, which writes the test files, must agree with the library. */
		cr_assert_eq(stgen_dtype_bits(spec_dtypes[i].name), spec_dtypes[i].bits);
	}
	cr_assert_eq(stgen_all_dtype_count, (size_t)MS_DTYPE_COUNT_);
	for (size_t i = 0; i < stgen_all_dtype_count; i++) {
		ms_dtype parsed;

		cr_assert_eq(ms__dtype_from_name(&parsed, stgen_all_dtypes[i]), 0, "%s",
		             stgen_all_dtypes[i]);
	}
}

Test(safetensors, dtype_out_of_range_and_unknown_names)
{
	static const char *const unknown[] = {"",     "f32",     "F32 ",      " F32",
	                                      "F8",   "F128",    "F8_E4M3FN", "BF16\n",
	                                      "Q4_0", "BOOLEAN", "U8\x01",    "I4"};

	cr_assert_null(ms_dtype_name(MS_DTYPE_COUNT_));
	cr_assert_null(ms_dtype_name((ms_dtype)-1));
	cr_assert_null(ms_dtype_name((ms_dtype)1000));
	cr_assert_eq(ms_dtype_bits(MS_DTYPE_COUNT_), 0);
	cr_assert_eq(ms_dtype_bits((ms_dtype)-1), 0);
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		ms_dtype untouched = MS_DTYPE_F64;

		cr_assert_eq(ms__dtype_from_name(&untouched, unknown[i]), -1, "'%s'", unknown[i]);
		cr_assert_eq(untouched, MS_DTYPE_F64, "out changed for '%s'", unknown[i]);
	}
}

/* One tensor of every dtype in one header: each parses back to its dtype and size. */
Test(safetensors, every_dtype_in_a_header)
{
	tu_strbuf json = {0};
	uint64_t offset = 0;
	ms__st_header *h;
	char entry[256];

	tu_sb_puts(&json, "{");
	for (size_t i = 0; i < SPEC_DTYPE_COUNT; i++) {
		/* 8 elements are a whole number of bytes for every dtype: `bits` bytes. */
		uint64_t size = spec_dtypes[i].bits;

		snprintf(
		    entry, sizeof(entry),
		    "%s\"t_%s\":{\"dtype\":\"%s\",\"shape\":[2,4],\"data_offsets\":[%llu,%llu]}",
		    i ? "," : "", spec_dtypes[i].name, spec_dtypes[i].name,
		    (unsigned long long)offset, (unsigned long long)(offset + size));
		tu_sb_puts(&json, entry);
		offset += size;
	}
	tu_sb_puts(&json, "}");
	h = parse_ok(json.text, offset);
	cr_assert_eq(h->tensor_count, SPEC_DTYPE_COUNT);
	for (size_t i = 0; i < SPEC_DTYPE_COUNT; i++) {
		const ms__st_tensor *t = &h->tensors[i];

		snprintf(entry, sizeof(entry), "t_%s", spec_dtypes[i].name);
		cr_assert_str_eq(t->name, entry);
		cr_assert_eq(t->dtype, spec_dtypes[i].dtype);
		cr_assert_eq(t->ndim, 2);
		cr_assert_eq(t->shape[0], 2);
		cr_assert_eq(t->shape[1], 4);
		cr_assert_eq(t->end - t->begin, spec_dtypes[i].bits);
	}
	cr_assert_eq(h->largest_tensor, 64);
	ms__st_header_free(h);
	free(json.text);
}

/* ---------------------------------------------------------------------------------------- */
/* The 8-byte length prefix                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void put_le64(unsigned char out[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(v >> (8 * i));
}

static int prefix_of(uint64_t *out, uint64_t n, uint64_t file_size)
{
	unsigned char prefix[8];

	put_le64(prefix, n);
	return ms__st_prefix_parse(out, prefix, file_size, "FILE");
}

Test(safetensors, prefix_is_little_endian)
{
	static const unsigned char prefix[8] = {0x02, 0x01, 0, 0, 0, 0, 0, 0};
	uint64_t n = 0;

	cr_assert_eq(ms__st_prefix_parse(&n, prefix, 8 + 0x102, "FILE"), 0);
	cr_assert_eq(n, 0x102);
}

Test(safetensors, prefix_limits_accepted)
{
	uint64_t n = 0;

	/* The smallest JSON object, "{}", filling the file exactly. */
	cr_assert_eq(prefix_of(&n, 2, 10), 0);
	cr_assert_eq(n, 2);
	/* A header that ends exactly at the end of the file. */
	cr_assert_eq(prefix_of(&n, 1000, 1008), 0);
	cr_assert_eq(n, 1000);
	/* Exactly the cap, in a file much larger still. */
	cr_assert_eq(prefix_of(&n, MS__ST_HEADER_MAX, UINT64_MAX), 0);
	cr_assert_eq(n, MS__ST_HEADER_MAX);
}

Test(safetensors, prefix_limits_refused)
{
	uint64_t n = 0;

	assert_error(prefix_of(&n, 0, 0), MS_EFORMAT, "FILE: file is 0 bytes, too short");
	assert_error(prefix_of(&n, 0, 7), MS_EFORMAT, "FILE: file is 7 bytes, too short");
	assert_error(prefix_of(&n, 0, 8), MS_EFORMAT, "header length 0 is too short");
	assert_error(prefix_of(&n, 1, 9), MS_EFORMAT, "header length 1 is too short");
	assert_error(prefix_of(&n, 3, 10), MS_EFORMAT,
	             "header length 3 runs past the end of the 10-byte file");
	assert_error(prefix_of(&n, 1001, 1008), MS_EFORMAT, "header length 1001 runs past");
	assert_error(prefix_of(&n, MS__ST_HEADER_MAX + 1, UINT64_MAX), MS_EFORMAT,
	             "header length 100000001 exceeds the 100000000-byte limit");
	assert_error(prefix_of(&n, UINT64_MAX, UINT64_MAX), MS_EFORMAT,
	             "header length 18446744073709551615 exceeds");
	/* Where both apply, the cap is reported: it says "not a safetensors file". */
	assert_error(prefix_of(&n, MS__ST_HEADER_MAX + 1, 100), MS_EFORMAT, "exceeds the");
	cr_assert_eq(n, 0, "out written on failure");
}

/* ---------------------------------------------------------------------------------------- */
/* Valid headers                                                                            */
/* ---------------------------------------------------------------------------------------- */

Test(safetensors, empty_object_with_empty_data)
{
	ms__st_header *h = parse_ok("{}", 0);

	cr_assert_eq(h->tensor_count, 0);
	cr_assert_eq(h->metadata_count, 0);
	cr_assert_eq(h->header_size, 2);
	cr_assert_eq(h->data_start, 10);
	cr_assert_eq(h->file_size, 10);
	cr_assert_eq(h->largest_tensor, 0);
	ms__st_header_free(h);
}

Test(safetensors, metadata_kept_in_header_order)
{
	ms__st_header *h = parse_ok("{\"__metadata__\":{\"format\":\"pt\",\"a\":\"\",\"quote\":"
	                            "\"say \\\"hi\\\"\\n\",\"accent\":\"\\u00e9t\\u00e9\"},"
	                            "\"w\":" ENTRY("U8", "[2]", "[0,2]") "}",
	                            2);

	cr_assert_eq(h->metadata_count, 4);
	cr_assert_str_eq(h->metadata_keys[0], "format");
	cr_assert_str_eq(h->metadata_values[0], "pt");
	cr_assert_str_eq(h->metadata_keys[1], "a");
	cr_assert_str_eq(h->metadata_values[1], "");
	cr_assert_str_eq(h->metadata_keys[2], "quote");
	cr_assert_str_eq(h->metadata_values[2], "say \"hi\"\n");
	cr_assert_str_eq(h->metadata_keys[3], "accent");
	cr_assert_str_eq(h->metadata_values[3], "\xc3\xa9t\xc3\xa9");
	cr_assert_eq(h->tensor_count, 1);
	ms__st_header_free(h);
}

Test(safetensors, metadata_only_and_empty_metadata)
{
	ms__st_header *h = parse_ok("{\"__metadata__\":{\"k\":\"v\"}}", 0);

	cr_assert_eq(h->tensor_count, 0);
	cr_assert_eq(h->metadata_count, 1);
	ms__st_header_free(h);
	h = parse_ok("{\"__metadata__\":{},\"w\":" ENTRY("U8", "[1]", "[0,1]") "}", 1);
	cr_assert_eq(h->metadata_count, 0);
	cr_assert_eq(h->tensor_count, 1);
	ms__st_header_free(h);
}

Test(safetensors, scalar_has_no_shape)
{
	ms__st_header *h = parse_ok("{\"s\":" ENTRY("F64", "[]", "[0,8]") "}", 8);

	cr_assert_eq(h->tensor_count, 1);
	cr_assert_eq(h->tensors[0].ndim, 0);
	cr_assert_null(h->tensors[0].shape);
	cr_assert_eq(h->tensors[0].end, 8);
	ms__st_header_free(h);
}

Test(safetensors, zero_size_tensors)
{
	/* Empty tensors sit anywhere a boundary is: at the start, between two tensors, at
	 * the end, and several at one offset. */
	ms__st_header *h = parse_ok(
	    "{\"z0\":" ENTRY(
	        "F32", "[0]",
	        "[0,0]") ","
	                 "\"a\":" ENTRY(
	                     "F32", "[1]",
	                     "[0,4]") ","
	                              "\"z1\":" ENTRY(
	                                  "BF16", "[3,0,5]",
	                                  "[4,4]") ","
	                                           "\"z2\":" ENTRY(
	                                               "F4", "[0,7]",
	                                               "[4,4]") ","
	                                                        "\"b\":" ENTRY(
	                                                            "U8", "[4]",
	                                                            "[4,8]") ","
	                                                                     "\"z3\":" ENTRY(
	                                                                         "I64", "[0]",
	                                                                         "[8,8]") "}",
	    8);

	cr_assert_eq(h->tensor_count, 6);
	cr_assert_str_eq(h->tensors[0].name, "z0");
	cr_assert_str_eq(h->tensors[1].name, "a");
	cr_assert_str_eq(h->tensors[5].name, "z3");
	cr_assert_eq(find_tensor(h, "z1")->ndim, 3);
	cr_assert_eq(find_tensor(h, "z1")->shape[1], 0);
	cr_assert_eq(h->largest_tensor, 4);
	ms__st_header_free(h);
	/* A file of nothing but an empty tensor. */
	h = parse_ok("{\"z\":" ENTRY("F16", "[0]", "[0,0]") "}", 0);
	cr_assert_eq(h->tensor_count, 1);
	cr_assert_eq(h->largest_tensor, 0);
	ms__st_header_free(h);
}

Test(safetensors, json_order_differs_from_offset_order)
{
	ms__st_header *h =
	    parse_ok("{\"c\":" ENTRY("U8", "[3]",
	                             "[3,6]") ","
	                                      "\"__metadata__\":{\"k\":\"v\"},"
	                                      "\"a\":" ENTRY("I16", "[2,2]",
	                                                     "[6,14]") ","
	                                                               "\"b\":" ENTRY("U8", "[1,3]",
	                                                                              "[0,3]") "}",
	             14);

	cr_assert_eq(h->tensor_count, 3);
	cr_assert_str_eq(h->tensors[0].name, "b");
	cr_assert_str_eq(h->tensors[1].name, "c");
	cr_assert_str_eq(h->tensors[2].name, "a");
	cr_assert_eq(h->tensors[2].dtype, MS_DTYPE_I16);
	cr_assert_eq(h->tensors[2].begin, 6);
	cr_assert_eq(h->tensors[2].end, 14);
	cr_assert_eq(h->largest_tensor, 8);
	cr_assert_eq(h->metadata_count, 1);
	ms__st_header_free(h);
}

Test(safetensors, whitespace_around_and_inside)
{
	/* The reference writer pads the header with spaces to an 8-byte boundary. */
	ms__st_header *h = parse_ok("{\"a\":" ENTRY("U8", "[1]", "[0,1]") "}       ", 1);

	cr_assert_eq(h->header_size, strlen("{\"a\":" ENTRY("U8", "[1]", "[0,1]") "}       "));
	ms__st_header_free(h);
	h = parse_ok(" \t\r\n{ \"a\" :\n{\"dtype\" : \"U8\" ,\t\"shape\":[ 1 ],\"data_offsets\":"
	             "[ 0 , 1 ] } }\r\n\t ",
	             1);
	cr_assert_eq(h->tensor_count, 1);
	ms__st_header_free(h);
}

Test(safetensors, numbers_in_other_spellings)
{
	/* JSON allows exponents and "-0"; each is still a whole number in range. */
	ms__st_header *h = parse_ok("{\"a\":" ENTRY("U8", "[1e1]", "[-0,1.0E1]") "}", 10);

	cr_assert_eq(h->tensors[0].shape[0], 10);
	cr_assert_eq(h->tensors[0].begin, 0);
	cr_assert_eq(h->tensors[0].end, 10);
	ms__st_header_free(h);
}

Test(safetensors, largest_numbers_accepted)
{
	/* 2^53 is the largest accepted number; the file size is only claimed, never read. */
	const char *json = "{\"a\":" ENTRY("U8", "[9007199254740992]", "[0,9007199254740992]") "}";
	ms__st_header *h = NULL;

	cr_assert_eq(ms__st_header_parse(&h, json, strlen(json),
	                                 8 + strlen(json) + 9007199254740992ULL, "FILE"),
	             0, "%s", ms_error_last()->message);
	cr_assert_eq(h->tensors[0].shape[0], 9007199254740992LL);
	cr_assert_eq(h->largest_tensor, 9007199254740992ULL);
	ms__st_header_free(h);
}

Test(safetensors, thirty_two_dimensions_accepted)
{
	ms__st_header *h = parse_ok("{\"a\":" ENTRY("U8",
	                                            "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
	                                            "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2]",
	                                            "[0,2]") "}",
	                            2);

	cr_assert_eq(h->tensors[0].ndim, MS_MAX_NDIM);
	cr_assert_eq(h->tensors[0].shape[31], 2);
	ms__st_header_free(h);
}

Test(safetensors, sub_byte_dtypes_in_whole_bytes)
{
	ms__st_header *h = parse_ok(
	    "{\"f4\":" ENTRY("F4", "[3,2]",
	                     "[0,3]") ","
	                              "\"f6\":" ENTRY("F6_E2M3", "[4]",
	                                              "[3,6]") ","
	                                                       "\"g6\":" ENTRY("F6_E3M2", "[2,2,2]",
	                                                                       "[6,12]") "}",
	    12);

	cr_assert_eq(h->tensor_count, 3);
	cr_assert_eq(find_tensor(h, "f4")->end, 3);
	cr_assert_eq(find_tensor(h, "g6")->begin, 6);
	ms__st_header_free(h);
}

Test(safetensors, unicode_names_and_extra_keys)
{
	/* Names are any UTF-8, escaped or not; keys the format does not define are ignored,
	 * as the reference implementation does. */
	ms__st_header *h = parse_ok(
	    "{\"\xe6\xa8\xa1\xe5\x9e\x8b.w\":" ENTRY(
	        "U8", "[1]",
	        "[0,1]") ","
	                 "\"caf\\u00e9\\ud83d\\ude00\":" ENTRY(
	                     "U8", "[1]",
	                     "[1,2]") ","
	                              "\"\":" ENTRY("U8", "[1]",
	                                            "[2,3]") ","
	                                                     "\"x\":{\"dtype\":\"U8\",\"shape\":[1]"
	                                                     ",\"data_offsets\":[3,4],"
	                                                     "\"extra\":{\"nested\":[1,2,3]}}}",
	    4);

	cr_assert_str_eq(h->tensors[0].name, "\xe6\xa8\xa1\xe5\x9e\x8b.w");
	cr_assert_str_eq(h->tensors[1].name, "caf\xc3\xa9\xf0\x9f\x98\x80");
	cr_assert_str_eq(h->tensors[2].name, "");
	cr_assert_str_eq(h->tensors[3].name, "x");
	ms__st_header_free(h);
}

Test(safetensors, header_not_nul_terminated)
{
	/* The parser must stop at json_len even when garbage follows in memory. */
	const char text[] = "{}GARBAGE";
	ms__st_header *h = NULL;

	cr_assert_eq(parse_len(&h, text, 2, 0), 0, "%s", ms_error_last()->message);
	cr_assert_eq(h->header_size, 2);
	ms__st_header_free(h);
}

Test(safetensors, many_tensors)
{
	/* 200000 one-byte tensors listed in reverse offset order: the parse must stay
	 * O(n log n) (sorting, duplicate check) and build a sorted table. */
	const size_t count = 200000;
	tu_strbuf json = {0};
	ms__st_header *h;
	char entry[160];

	tu_sb_puts(&json, "{");
	for (size_t i = count; i-- > 0;) {
		snprintf(entry, sizeof(entry),
		         "%s\"model.layers.%zu.w\":{\"dtype\":\"U8\",\"shape\":[1],"
		         "\"data_offsets\":[%zu,%zu]}",
		         i == count - 1 ? "" : ",", i, i, i + 1);
		tu_sb_puts(&json, entry);
	}
	tu_sb_puts(&json, "}");
	h = parse_ok(json.text, count);
	cr_assert_eq(h->tensor_count, count);
	for (size_t i = 0; i < count; i++) {
		snprintf(entry, sizeof(entry), "model.layers.%zu.w", i);
		cr_assert_eq(h->tensors[i].begin, i);
		if (i % 9973 == 0)
			cr_assert_str_eq(h->tensors[i].name, entry);
	}
	ms__st_header_free(h);
	free(json.text);
}

Test(safetensors, many_metadata_entries)
{
	const size_t count = 100000;
	tu_strbuf json = {0};
	ms__st_header *h;
	char entry[64];

	tu_sb_puts(&json, "{\"__metadata__\":{");
	for (size_t i = 0; i < count; i++) {
		snprintf(entry, sizeof(entry), "%s\"k%zu\":\"v%zu\"", i ? "," : "", count - i, i);
		tu_sb_puts(&json, entry);
	}
	tu_sb_puts(&json, "}}");
	h = parse_ok(json.text, 0);
	cr_assert_eq(h->metadata_count, count);
	cr_assert_str_eq(h->metadata_keys[0], "k100000");
	cr_assert_str_eq(h->metadata_values[count - 1], "v99999");
	ms__st_header_free(h);
	free(json.text);
}

/* ---------------------------------------------------------------------------------------- */
/* Hostile inputs                                                                           */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	const char *what;    /* the case, as docs/hostile-inputs.md names it */
	const char *bytes;   /* the JSON header; with `raw`, the whole start of the file */
	size_t len;          /* bytes in `bytes`; 0: strlen(bytes) */
	int raw;             /* 1: `bytes` is written as is, with no length prefix */
	uint64_t data_len;   /* content bytes written after `bytes` */
	int code;            /* the expected error */
	const char *message; /* the distinctive part of its message */
} hostile_case;

/* A header with tensor "a" holding `entry`. */
#define ONE(entry) "{\"a\":" entry "}"

static const hostile_case hostile_cases[] = {
    /* The length prefix. */
    {"file shorter than 8 bytes", "\x02\0\0\0\0\0\0", 7, 1, 0, MS_EFORMAT,
     "file is 7 bytes, too short for a safetensors header"},
    {"header length past the end of the file", "\x64\0\0\0\0\0\0\0{}", 10, 1, 0, MS_EFORMAT,
     "header length 100 runs past the end of the 10-byte file (truncated file?)"},
    {"header length above the 100 MB cap", "\x01\xe1\xf5\x05\0\0\0\0{}", 10, 1, 0, MS_EFORMAT,
     "header length 100000001 exceeds the 100000000-byte limit (not a safetensors file?)"},
    {"header length 2^64 - 1", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, 1, 0, MS_EFORMAT,
     "header length 18446744073709551615 exceeds the 100000000-byte limit"},
    {"a text file", "hello, this is not a model\n", 0, 1, 0, MS_EFORMAT,
     "exceeds the 100000000-byte limit (not a safetensors file?)"},
    {"header length 0", "\0\0\0\0\0\0\0\0", 8, 1, 0, MS_EFORMAT,
     "header length 0 is too short for a JSON object"},
    {"header length 1", "\x01\0\0\0\0\0\0\0{", 9, 1, 0, MS_EFORMAT,
     "header length 1 is too short for a JSON object"},

    /* JSON syntax and encoding. */
    {"invalid JSON", "{\"a\":", 0, 0, 0, MS_EFORMAT, "header is not valid JSON (near byte"},
    {"only spaces", "    ", 0, 0, 0, MS_EFORMAT, "header is not valid JSON"},
    {"JSON array instead of an object", "[]", 0, 0, 0, MS_EFORMAT,
     "header is JSON but not an object"},
    {"JSON string instead of an object", "\"abc\"", 0, 0, 0, MS_EFORMAT,
     "header is JSON but not an object"},
    {"JSON number instead of an object", "42", 0, 0, 0, MS_EFORMAT,
     "header is JSON but not an object"},
    {"trailing garbage after the object", "{} x", 0, 0, 0, MS_EFORMAT,
     "header has bytes after its JSON object (byte 3)"},
    {"two objects", "{}{}", 0, 0, 0, MS_EFORMAT, "header has bytes after its JSON object"},
    {"invalid UTF-8 byte", "{\"\xff\":1}", 0, 0, 0, MS_EFORMAT,
     "header is not valid UTF-8 at offset 2"},
    {"overlong UTF-8", "{\"\xc0\xaf\":1}", 0, 0, 0, MS_EFORMAT,
     "header is not valid UTF-8 at offset 2"},
    {"UTF-8-encoded surrogate", "{\"\xed\xa0\x80\":1}", 0, 0, 0, MS_EFORMAT,
     "header is not valid UTF-8 at offset 2"},
    {"code point above U+10FFFF", "{\"\xf4\x90\x80\x80\":1}", 0, 0, 0, MS_EFORMAT,
     "header is not valid UTF-8 at offset 2"},
    {"truncated UTF-8 sequence", "{\"a\xe2\x82\":1}", 0, 0, 0, MS_EFORMAT,
     "header is not valid UTF-8 at offset 3"},
    {"UTF-8 cut by the end of the header", "{}  \xe2\x82", 0, 0, 0, MS_EFORMAT,
     "header is not valid UTF-8 at offset 4"},
    {"raw control byte", "{\x01}", 0, 0, 0, MS_EFORMAT,
     "header holds control byte 0x01 at offset 1"},
    {"NUL byte", "{\0}", 3, 0, 0, MS_EFORMAT, "header holds control byte 0x00 at offset 1"},
    /* Found by the fuzzer: the byte after a backslash went unchecked, and a NUL there
     * cut the private copy short, so cJSON read past it (tests/fuzz/corpus/regress-*). */
    {"NUL byte after a backslash", "{\"\\\0\":1}", 8, 0, 0, MS_EFORMAT,
     "header holds control byte 0x00 at offset 3"},
    {"control byte after a backslash", "{\"\\\x01\":1}", 0, 0, 0, MS_EFORMAT,
     "header holds control byte 0x01 at offset 3"},
    {"raw tab after a backslash", "{\"a\\\t\":1}", 0, 0, 0, MS_EFORMAT,
     "header string holds a raw control character at offset 4"},
    {"raw tab inside a string", "{\"a\tb\":1}", 0, 0, 0, MS_EFORMAT,
     "header string holds a raw control character at offset 3"},
    {"raw newline inside a string", "{\"a\nb\":1}", 0, 0, 0, MS_EFORMAT,
     "header string holds a raw control character at offset 3"},
    {"\\u0000 in a name", "{\"a\\u0000b\":" ENTRY("U8", "[1]", "[0,1]") "}", 0, 0, 1, MS_EFORMAT,
     "header string holds a NUL character (\\u0000) at offset 3"},
    {"\\u0000 in a metadata value", "{\"__metadata__\":{\"k\":\"\\u0000\"}}", 0, 0, 0, MS_EFORMAT,
     "NUL character (\\u0000) at offset 22"},
    {"lone UTF-16 surrogate escape", "{\"\\ud800\":" ENTRY("U8", "[1]", "[0,1]") "}", 0, 0, 1,
     MS_EFORMAT, "header is not valid JSON"},
    {"invalid escape", "{\"\\x41\":" ENTRY("U8", "[1]", "[0,1]") "}", 0, 0, 1, MS_EFORMAT,
     "header is not valid JSON"},
    {"byte order mark", "\xef\xbb\xbf{}", 0, 0, 0, MS_EFORMAT,
     "header starts with a UTF-8 byte order mark"},

    /* Tensor entries. */
    {"tensor entry not an object", "{\"a\":5}", 0, 0, 0, MS_EFORMAT,
     "tensor 'a': entry is not a JSON object"},
    {"tensor entry an array", "{\"a\":[\"U8\",[1],[0,1]]}", 0, 0, 1, MS_EFORMAT,
     "tensor 'a': entry is not a JSON object"},
    {"unknown dtype", ONE(ENTRY("F33", "[1]", "[0,4]")), 0, 0, 4, MS_EFORMAT,
     "tensor 'a': unknown dtype \"F33\""},
    {"dtype in lower case", ONE(ENTRY("f32", "[1]", "[0,4]")), 0, 0, 4, MS_EFORMAT,
     "unknown dtype \"f32\""},
    {"dtype not a string", ONE("{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}"), 0, 0, 4,
     MS_EFORMAT, "tensor 'a': \"dtype\" is missing or not a string"},
    {"dtype missing", ONE("{\"shape\":[1],\"data_offsets\":[0,4]}"), 0, 0, 4, MS_EFORMAT,
     "tensor 'a': \"dtype\" is missing or not a string"},
    {"shape missing", ONE("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), 0, 0, 4, MS_EFORMAT,
     "tensor 'a': \"shape\" is missing or not an array"},
    {"shape not an array", ONE(ENTRY("F32", "4", "[0,16]")), 0, 0, 16, MS_EFORMAT,
     "tensor 'a': \"shape\" is missing or not an array"},
    {"shape an object", ONE(ENTRY("F32", "{\"0\":4}", "[0,16]")), 0, 0, 16, MS_EFORMAT,
     "\"shape\" is missing or not an array"},
    {"data_offsets missing", ONE("{\"dtype\":\"F32\",\"shape\":[1]}"), 0, 0, 4, MS_EFORMAT,
     "tensor 'a': \"data_offsets\" must be two non-negative integers [begin, end]"},
    {"\"dtype\" twice in an entry",
     ONE("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"dtype\":\"I32\"}"), 0, 0, 4,
     MS_EFORMAT, "tensor 'a': \"dtype\" appears twice"},
    {"\"shape\" twice in an entry",
     ONE("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"shape\":[2,2]}"), 0, 0, 4,
     MS_EFORMAT, "tensor 'a': \"shape\" appears twice"},
    {"\"data_offsets\" twice in an entry",
     ONE("{\"dtype\":\"U8\",\"data_offsets\":[0,4],\"shape\":[4],\"data_offsets\":[4,8]}"), 0, 0, 8,
     MS_EFORMAT, "tensor 'a': \"data_offsets\" appears twice"},

    /* Shapes. */
    {"negative dimension", ONE(ENTRY("U8", "[-1]", "[0,0]")), 0, 0, 0, MS_EFORMAT,
     "tensor 'a': shape holds something other than a non-negative integer below 2^53"},
    {"fractional dimension", ONE(ENTRY("U8", "[1.5]", "[0,1]")), 0, 0, 1, MS_EFORMAT,
     "shape holds something other than a non-negative integer below 2^53"},
    {"dimension above 2^53", ONE(ENTRY("U8", "[18014398509481984]", "[0,1]")), 0, 0, 1, MS_EFORMAT,
     "shape holds something other than a non-negative integer below 2^53"},
    {"dimension overflowing a double", ONE(ENTRY("U8", "[1e999]", "[0,1]")), 0, 0, 1, MS_EFORMAT,
     "shape holds something other than a non-negative integer below 2^53"},
    {"dimension as a string", ONE(ENTRY("U8", "[\"4\"]", "[0,4]")), 0, 0, 4, MS_EFORMAT,
     "shape holds something other than a non-negative integer below 2^53"},
    {"dimension null", ONE(ENTRY("U8", "[null]", "[0,4]")), 0, 0, 4, MS_EFORMAT,
     "shape holds something other than a non-negative integer below 2^53"},
    {"dimension a nested array", ONE(ENTRY("U8", "[[4]]", "[0,4]")), 0, 0, 4, MS_EFORMAT,
     "shape holds something other than a non-negative integer below 2^53"},
    {"33 dimensions",
     ONE(ENTRY("U8", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
               "[0,1]")),
     0, 0, 1, MS_EFORMAT, "tensor 'a': shape has 33 dimensions, more than the limit of 32"},
    {"element count overflow", ONE(ENTRY("U8", "[4294967296,4294967296,4294967296]", "[0,1]")), 0,
     0, 1, MS_EFORMAT, "tensor 'a': shape's element count overflows"},
    {"size in bits overflow", ONE(ENTRY("F64", "[4294967296,1073741824]", "[0,1]")), 0, 0, 1,
     MS_EFORMAT, "tensor 'a': shape's size in bits overflows"},
    {"F4 with an odd element count", ONE(ENTRY("F4", "[3]", "[0,2]")), 0, 0, 2, MS_EFORMAT,
     "tensor 'a': 3-element F4 tensor is 12 bits, not a whole number of bytes"},
    {"F6 not filling whole bytes", ONE(ENTRY("F6_E3M2", "[1,5]", "[0,4]")), 0, 0, 4, MS_EFORMAT,
     "tensor 'a': 5-element F6_E3M2 tensor is 30 bits, not a whole number"},

    /* data_offsets. */
    {"data_offsets with one number", ONE(ENTRY("U8", "[4]", "[4]")), 0, 0, 4, MS_EFORMAT,
     "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets with three numbers", ONE(ENTRY("U8", "[4]", "[0,4,8]")), 0, 0, 8, MS_EFORMAT,
     "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets negative", ONE(ENTRY("U8", "[4]", "[-4,0]")), 0, 0, 4, MS_EFORMAT,
     "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets fractional", ONE(ENTRY("U8", "[4]", "[0,4.5]")), 0, 0, 4, MS_EFORMAT,
     "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets above 2^53", ONE(ENTRY("U8", "[4]", "[0,18014398509481984]")), 0, 0, 4,
     MS_EFORMAT, "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets not an array", ONE(ENTRY("U8", "[4]", "4")), 0, 0, 4, MS_EFORMAT,
     "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets as strings", ONE(ENTRY("U8", "[4]", "[\"0\",\"4\"]")), 0, 0, 4, MS_EFORMAT,
     "\"data_offsets\" must be two non-negative integers [begin, end]"},
    {"data_offsets begin after end", ONE(ENTRY("U8", "[4]", "[8,4]")), 0, 0, 8, MS_EFORMAT,
     "tensor 'a': data_offsets [8, 4] end before they begin"},
    {"size of shape x dtype differs from the span", ONE(ENTRY("F32", "[2]", "[0,4]")), 0, 0, 4,
     MS_EFORMAT, "tensor 'a': shape and dtype F32 need 8 bytes but data_offsets [0, 4] span 4"},

    /* Layout of the data section. */
    {"overlapping tensors",
     "{\"a\":" ENTRY("F32", "[2]", "[0,8]") ",\"b\":" ENTRY("F32", "[2]", "[4,12]") "}", 0, 0, 12,
     MS_EFORMAT, "tensor 'b' at [4, 12] overlaps tensor 'a'"},
    {"two tensors at the same offsets",
     "{\"a\":" ENTRY("F32", "[2]", "[0,8]") ",\"b\":" ENTRY("F32", "[2]", "[0,8]") "}", 0, 0, 8,
     MS_EFORMAT, "at [0, 8] overlaps tensor"},
    {"empty tensor inside another",
     "{\"a\":" ENTRY("F32", "[2]", "[0,8]") ",\"z\":" ENTRY("F32", "[0]", "[4,4]") "}", 0, 0, 8,
     MS_EFORMAT, "tensor 'z' at [4, 4] overlaps tensor 'a'"},
    {"gap between tensors",
     "{\"a\":" ENTRY("U8", "[4]", "[0,4]") ",\"b\":" ENTRY("U8", "[4]", "[8,12]") "}", 0, 0, 12,
     MS_EFORMAT, "4 unreferenced bytes before tensor 'b' at offset 8 (gaps are not allowed)"},
    {"first tensor not at offset 0", ONE(ENTRY("U8", "[4]", "[4,8]")), 0, 0, 8, MS_EFORMAT,
     "4 unreferenced bytes before tensor 'a' at offset 4"},
    {"tensor past the end of the data", ONE(ENTRY("U8", "[8]", "[0,8]")), 0, 0, 4, MS_EFORMAT,
     "tensor 'a' ends at data offset 8, past the end of the 4-byte data section (truncated "
     "file?)"},
    {"trailing unreferenced bytes", ONE(ENTRY("U8", "[4]", "[0,4]")), 0, 0, 8, MS_EFORMAT,
     "tensors cover 4 bytes but the data section holds 8 (trailing bytes are not allowed)"},
    {"no tensors but a data section", "{}", 0, 0, 4, MS_EFORMAT,
     "tensors cover 0 bytes but the data section holds 4"},
    {"only metadata but a data section", "{\"__metadata__\":{\"k\":\"v\"}}", 0, 0, 1, MS_EFORMAT,
     "tensors cover 0 bytes but the data section holds 1"},

    /* Names and metadata. */
    {"duplicate tensor names",
     "{\"a\":" ENTRY("U8", "[4]", "[0,4]") ",\"a\":" ENTRY("U8", "[4]", "[4,8]") "}", 0, 0, 8,
     MS_EFORMAT, "tensor name 'a' appears twice"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, 0, MS_EFORMAT,
     "\"__metadata__\" appears twice"},
    {"__metadata__ not an object", "{\"__metadata__\":[]}", 0, 0, 0, MS_EFORMAT,
     "\"__metadata__\" is not a JSON object"},
    {"__metadata__ a string", "{\"__metadata__\":\"pt\"}", 0, 0, 0, MS_EFORMAT,
     "\"__metadata__\" is not a JSON object"},
    {"metadata value a number", "{\"__metadata__\":{\"epoch\":3}}", 0, 0, 0, MS_EFORMAT,
     "__metadata__ entry 'epoch' is not a string"},
    {"metadata value null", "{\"__metadata__\":{\"k\":null}}", 0, 0, 0, MS_EFORMAT,
     "__metadata__ entry 'k' is not a string"},
    {"metadata value an object", "{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, 0, 0, MS_EFORMAT,
     "__metadata__ entry 'k' is not a string"},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0, 0, 0,
     MS_EFORMAT, "__metadata__ key 'k' appears twice"},
    {"control characters in a name are escaped in the message", "{\"a\\u0001\\nb\":5}", 0, 0, 0,
     MS_EFORMAT, "tensor 'a\\x01\\x0ab': entry is not a JSON object"},
    {"deep nesting (cJSON stops at depth 1000)", "{\"a\":[[[[...]]]]} (100000 '[')", 0, 0, 0,
     MS_EFORMAT, "header is not valid JSON"},
};
#define HOSTILE_COUNT (sizeof(hostile_cases) / sizeof(hostile_cases[0]))

/* The bytes of a case's file start, made in `buf` (freed by the caller). */
static size_t hostile_bytes(char **out, const hostile_case *c)
{
	size_t len = c->len ? c->len : strlen(c->bytes);

	if (strstr(c->bytes, "(100000 '[')") != NULL) {
		/* The deep-nesting case is too big for the table: build it here. */
		tu_strbuf b = {0};

		tu_sb_puts(&b, "{\"a\":");
		sb_repeat(&b, "[", 100000);
		sb_repeat(&b, "]", 100000);
		tu_sb_puts(&b, "}");
		*out = b.text;
		return b.len;
	}
	*out = malloc(len + 1);
	cr_assert_not_null(*out);
	memcpy(*out, c->bytes, len);
	(*out)[len] = '\0';
	return len;
}

static size_t hostile_indices[HOSTILE_COUNT];

static struct criterion_test_params hostile_parameters(void)
{
	for (size_t i = 0; i < HOSTILE_COUNT; i++)
		hostile_indices[i] = i;
	return cr_make_param_array(size_t, hostile_indices, HOSTILE_COUNT);
}

ParameterizedTestParameters(safetensors, hostile_parse)
{
	return hostile_parameters();
}

/* Each case through the parser's own functions, as the streamer calls them. */
ParameterizedTest(size_t *index, safetensors, hostile_parse)
{
	const hostile_case *c = &hostile_cases[*index];
	ms__st_header *h = (ms__st_header *)&h; /* anything but NULL: the parser clears it */
	unsigned char prefix[8] = {0};
	char *bytes = NULL;
	size_t len = hostile_bytes(&bytes, c);
	uint64_t n = 0;
	int rc;

	current_case = c->what;
	if (c->raw) {
		uint64_t file_size = len + c->data_len;

		memcpy(prefix, bytes, len < 8 ? len : 8);
		rc = ms__st_prefix_parse(&n, prefix, file_size, "FILE");
		if (rc == 0)
			rc = ms__st_header_parse(&h, bytes + 8, (size_t)n, file_size, "FILE");
	} else {
		put_le64(prefix, len);
		cr_assert_eq(ms__st_prefix_parse(&n, prefix, 8 + len + c->data_len, "FILE"), 0,
		             "%s", ms_error_last()->message);
		cr_assert_eq(n, len);
		rc = parse_len(&h, bytes, len, c->data_len);
		cr_assert_null(h, "*out not cleared on failure");
	}
	assert_error(rc, c->code, c->message);
	cr_assert_eq(strncmp(ms_error_last()->message, "FILE: ", 6), 0, "message: %s",
	             ms_error_last()->message);
	free(bytes);
}

ParameterizedTestParameters(safetensors, hostile_file)
{
	return hostile_parameters();
}

/* Each case as a file given to ms_streamer_add(): the error names the file, and the
 * streamer is unchanged and still usable afterwards. */
ParameterizedTest(size_t *index, safetensors, hostile_file)
{
	const hostile_case *c = &hostile_cases[*index];
	char path[PATH_MAX], good[PATH_MAX];
	ms_streamer *s = NULL;
	char *bytes = NULL, *file = NULL;
	size_t len = hostile_bytes(&bytes, c);
	size_t path_len;
	int rc;

	current_case = c->what;
	tu_path(path, sizeof(path), "hostile.safetensors");
	if (c->raw) {
		cr_assert_eq(stgen_write_raw(path, bytes, len, c->data_len, 1), 0);
	} else {
		file = malloc(8 + len);
		cr_assert_not_null(file);
		put_le64((unsigned char *)file, len);
		memcpy(file + 8, bytes, len);
		cr_assert_eq(stgen_write_raw(path, file, 8 + len, c->data_len, 1), 0);
	}
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	rc = ms_streamer_add(s, path);
	assert_error(rc, c->code, c->message);
	path_len = strlen(path);
	cr_assert_eq(strncmp(ms_error_last()->message, path, path_len), 0, "message: %s",
	             ms_error_last()->message);
	cr_assert_eq(strncmp(ms_error_last()->message + path_len, ": ", 2), 0);
	cr_assert_eq(ms_streamer_file_count(s), 0);
	cr_assert_eq(ms_streamer_tensor_count(s), 0);
	tu_path(good, sizeof(good), "good.safetensors");
	tu_write_safetensors(good, ONE(ENTRY("U8", "[3]", "[0,3]")), 3, 7);
	cr_assert_eq(ms_streamer_add(s, good), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_count(s), 1);
	cr_assert_eq(ms_streamer_tensor_count(s), 1);
	ms_streamer_free(s);
	free(file);
	free(bytes);
}

/* Deep nesting in other places: it must fail cleanly, never exhaust the stack. */
Test(safetensors, deep_nesting_everywhere)
{
	static const char *const openers[] = {"[", "{\"a\":", "[{\"a\":"};
	ms__st_header *h = NULL;

	for (size_t i = 0; i < sizeof(openers) / sizeof(openers[0]); i++) {
		tu_strbuf b = {0};

		sb_repeat(&b, openers[i], 100000);
		assert_error(parse(&h, b.text, 0), MS_EFORMAT, "header is not valid JSON");
		free(b.text);
	}
	{
		/* Within cJSON's limit, but where a tensor's shape should be. */
		tu_strbuf b = {0};

		tu_sb_puts(&b, "{\"a\":{\"dtype\":\"U8\",\"shape\":");
		sb_repeat(&b, "[", 900);
		sb_repeat(&b, "]", 900);
		tu_sb_puts(&b, ",\"data_offsets\":[0,0]}}");
		assert_error(parse(&h, b.text, 0), MS_EFORMAT,
		             "shape holds something other than a non-negative integer");
		free(b.text);
	}
}

Test(safetensors, long_names_are_cut_in_messages)
{
	tu_strbuf b = {0};
	ms__st_header *h = NULL;

	tu_sb_puts(&b, "{\"");
	sb_repeat(&b, "x", 5000);
	tu_sb_puts(&b, "\":5}");
	assert_error(parse(&h, b.text, 0), MS_EFORMAT, "xxx...': entry is not a JSON object");
	cr_assert_lt(strlen(ms_error_last()->message), 200);
	free(b.text);
}

Test(safetensors, header_length_beyond_the_file_in_parse)
{
	ms__st_header *h = NULL;

	/* The parser checks the length against the file on its own, too. */
	assert_error(ms__st_header_parse(&h, "{}", 2, 9, "FILE"), MS_EFORMAT,
	             "FILE: header length 2 does not fit the file");
	assert_error(ms__st_header_parse(&h, "{}", 2, 0, "FILE"), MS_EFORMAT,
	             "header length 2 does not fit the file");
	cr_assert_null(h);
}

/* ---------------------------------------------------------------------------------------- */
/* Files through the public API                                                             */
/* ---------------------------------------------------------------------------------------- */

Test(safetensors, file_valid_through_the_api)
{
	char path[PATH_MAX];
	ms_streamer *s = NULL;
	ms_file_info info = MS_FILE_INFO_INIT;
	ms_tensor t = MS_TENSOR_INIT;
	const char *key, *value;
	const char *json =
	    "{\"__metadata__\":{\"format\":\"pt\"},"
	    "\"b\":" ENTRY("BF16", "[2,3]", "[4,16]") ","
	                                              "\"a\":" ENTRY("F32", "[]", "[0,4]") "}  ";

	tu_path(path, sizeof(path), "valid.safetensors");
	tu_write_safetensors(path, json, 16, 3);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_info(&info, s, 0), 0);
	cr_assert_str_eq(info.path, path);
	cr_assert_eq(info.size, 8 + strlen(json) + 16);
	cr_assert_eq(info.header_size, strlen(json));
	cr_assert_eq(info.tensor_count, 2);
	cr_assert_eq(info.metadata_count, 1);
	cr_assert_eq(ms_streamer_metadata_at(&key, &value, s, 0, 0), 0);
	cr_assert_str_eq(key, "format");
	cr_assert_str_eq(value, "pt");
	cr_assert_eq(ms_streamer_tensor_at(&t, s, 0), 0);
	cr_assert_str_eq(t.name, "a");
	cr_assert_eq(t.ndim, 0);
	cr_assert_null(t.shape);
	cr_assert_eq(t.file_offset, 8 + strlen(json));
	cr_assert_eq(ms_streamer_tensor_at(&t, s, 1), 0);
	cr_assert_str_eq(t.name, "b");
	cr_assert_eq(t.dtype, MS_DTYPE_BF16);
	cr_assert_eq(t.size, 12);
	cr_assert_eq(t.file_offset, 8 + strlen(json) + 4);
	ms_streamer_free(s);
}

Test(safetensors, file_header_larger_than_the_first_read)
{
	/* A header over MS__ST_FIRST_READ takes the second read in load_header(). */
	char path[PATH_MAX];
	ms_streamer *s = NULL;
	ms_file_info info = MS_FILE_INFO_INIT;
	const char *value = NULL;
	tu_strbuf b = {0};

	tu_sb_puts(&b, "{\"__metadata__\":{\"big\":\"");
	sb_repeat(&b, "0123456789abcdef", (MS__ST_FIRST_READ + 4096) / 16);
	tu_sb_puts(&b, "\"},\"w\":" ENTRY("U8", "[5]", "[0,5]") "}");
	tu_path(path, sizeof(path), "bigheader.safetensors");
	tu_write_safetensors(path, b.text, 5, 9);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_info(&info, s, 0), 0);
	cr_assert_eq(info.header_size, b.len);
	cr_assert_eq(ms_streamer_metadata_get(&value, s, 0, "big"), 0);
	cr_assert_eq(strlen(value), (MS__ST_FIRST_READ + 4096) / 16 * 16);
	cr_assert_eq(ms_streamer_tensor_count(s), 1);
	ms_streamer_free(s);
	free(b.text);
}

Test(safetensors, file_large_header_truncated)
{
	/* The same large header, but the file stops inside it. */
	char path[PATH_MAX];
	ms_streamer *s = NULL;
	unsigned char *file;
	size_t header = 3 * MS__ST_FIRST_READ;

	file = calloc(1, 8 + 2 * MS__ST_FIRST_READ);
	cr_assert_not_null(file);
	put_le64(file, header);
	memset(file + 8, ' ', 2 * MS__ST_FIRST_READ);
	tu_path(path, sizeof(path), "cut.safetensors");
	cr_assert_eq(stgen_write_raw(path, file, 8 + 2 * MS__ST_FIRST_READ, 0, 1), 0);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	assert_error(ms_streamer_add(s, path), MS_EFORMAT,
	             "header length 3145728 runs past the end of the 2097160-byte file");
	ms_streamer_free(s);
	free(file);
}

Test(safetensors, file_empty)
{
	char path[PATH_MAX];
	ms_streamer *s = NULL;

	tu_path(path, sizeof(path), "empty.safetensors");
	tu_write_file(path, "", 0);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	assert_error(ms_streamer_add(s, path), MS_EFORMAT,
	             "empty.safetensors: file is 0 bytes, too short for a safetensors header");
	cr_assert_eq(ms_streamer_file_count(s), 0);
	ms_streamer_free(s);
}

Test(safetensors, file_not_found)
{
	char path[PATH_MAX];
	ms_streamer *s = NULL;

	tu_path(path, sizeof(path), "no-such.safetensors");
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	assert_error(ms_streamer_add(s, path), MS_ENOTFOUND, "No such file or directory");
	cr_assert_eq(strncmp(ms_error_last()->message, path, strlen(path)), 0);
	cr_assert_eq(ms_streamer_file_count(s), 0);
	ms_streamer_free(s);
}

Test(safetensors, file_is_a_directory)
{
	char path[PATH_MAX];
	ms_streamer *s = NULL;
	int rc;

	tu_path(path, sizeof(path), "dir.safetensors");
	cr_assert_eq(mkdir(path, 0755), 0);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	rc = ms_streamer_add(s, path);
	cr_assert_lt(rc, 0);
	/* A directory is a model directory: this one holds no weights. */
	assert_error(rc, MS_ENOTFOUND, "dir.safetensors: no *.safetensors files in this directory");
	cr_assert_eq(ms_streamer_file_count(s), 0);
	ms_streamer_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Allocation failures                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* A realistic header: metadata, tensors of several ranks out of offset order, a scalar,
 * an empty tensor and an escaped name, so that every allocation site is on the path. */
static const char realistic_header[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9\"},"
    "\"model.embed.weight\":" ENTRY(
        "BF16", "[4,8]",
        "[8,72]") ","
                  "\"model.norm.scale\":" ENTRY(
                      "F32", "[]",
                      "[72,76]") ","
                                 "\"model.layers.0.mlp.up_proj.weight\":" ENTRY(
                                     "F16", "[2,2]",
                                     "[0,8]") ","
                                              "\"model.empty\":" ENTRY(
                                                  "I64", "[0,3]",
                                                  "[76,76]") ","
                                                             "\"lm_head.\\\"q\\\"\":" ENTRY(
                                                                 "F4", "[2,2,2]", "[76,80]") "}   ";
#define REALISTIC_DATA 80

/* Fails allocation n (and with `sticky` every later one) for n = 1, 2, ... until the
 * parse succeeds with nothing left to fail. Returns how many n were walked. */
static long walk_parse(int sticky)
{
	long n;

	for (n = 1;; n++) {
		ms__st_header *h = NULL;
		int rc;

		ms__alloc_fail_at(n, sticky);
		rc = parse(&h, realistic_header, REALISTIC_DATA);
		ms__alloc_fail_at(0, 0);
		if (rc == 0) {
			/* Every allocation's failure is reported, so success means that n is
			 * past the last allocation of a parse. */
			cr_assert_not_null(h);
			cr_assert_eq(h->tensor_count, 5);
			cr_assert_eq(h->metadata_count, 2);
			ms__st_header_free(h);
			break;
		}
		/* The header is valid, so every failure is the allocator's, cJSON's included. */
		cr_assert_null(h);
		assert_error(rc, MS_ENOMEM, "FILE: out of memory");
		cr_assert_lt(n, 100000, "the walk does not end");
	}
	cr_assert_gt(n, 20, "a parse of this header makes only %ld allocations", n - 1);
	return n;
}

Test(safetensors, allocation_failure_walk_parse)
{
	long before = ms__alloc_count(), calls, walked;
	ms__st_header *h = NULL;

	/* How many allocations one clean parse makes: the walk must reach every one. */
	cr_assert_eq(parse(&h, realistic_header, REALISTIC_DATA), 0);
	calls = ms__alloc_count() - before;
	ms__st_header_free(h);
	walked = walk_parse(1);
	cr_assert_eq(walked, calls + 1, "walked %ld of %ld allocations", walked - 1, calls);
}

Test(safetensors, allocation_failure_walk_parse_single)
{
	long before = ms__alloc_count(), calls;
	ms__st_header *h = NULL;

	cr_assert_eq(parse(&h, realistic_header, REALISTIC_DATA), 0);
	calls = ms__alloc_count() - before;
	ms__st_header_free(h);
	cr_assert_eq(walk_parse(0), calls + 1);
}

static void write_realistic(char *path, size_t size)
{
	tu_path(path, size, "realistic.safetensors");
	tu_write_safetensors(path, realistic_header, REALISTIC_DATA, 5);
}

/* new() and add() under a failing allocator, with every later allocation failing too. */
Test(safetensors, allocation_failure_walk_streamer)
{
	char path[PATH_MAX];
	long n;

	write_realistic(path, sizeof(path));
	for (n = 1;; n++) {
		ms_streamer *s = NULL;
		int rc;

		ms__alloc_fail_at(n, 1);
		rc = ms_streamer_new(&s, NULL);
		if (rc == 0)
			rc = ms_streamer_add(s, path);
		ms__alloc_fail_at(0, 0);
		if (rc == 0) {
			cr_assert_eq(ms_streamer_tensor_count(s), 5);
			ms_streamer_free(s);
			break;
		}
		/* The file is valid, so every failure is the allocator's. */
		assert_error(rc, MS_ENOMEM, "out of memory");
		/* add() failed: the streamer is unchanged (using it further is the business of
		 * the walks below). */
		cr_assert(s == NULL || ms_streamer_file_count(s) == 0);
		ms_streamer_free(s);
		cr_assert_lt(n, 100000, "the walk does not end");
	}
	cr_assert_gt(n, 20, "new() and add() make only %ld allocations", n - 1);
}

/* A streamer that already holds files, so that add() grows its arrays. Only one
 * allocation fails each time, and the streamer must go on working after it. */
static void walk_streamer_grow(size_t files_before)
{
	char path[PATH_MAX];
	int failures = 0;

	write_realistic(path, sizeof(path));
	for (long n = 1;; n++) {
		ms_streamer *s = NULL;
		int rc;

		cr_assert_eq(ms_streamer_new(&s, NULL), 0);
		for (size_t i = 0; i < files_before; i++)
			cr_assert_eq(ms_streamer_add(s, path), 0);
		ms__alloc_fail_at(n, 0);
		rc = ms_streamer_add(s, path);
		ms__alloc_fail_at(0, 0);
		if (rc != 0) {
			failures++;
			assert_error(rc, MS_ENOMEM, "out of memory");
			cr_assert_eq(ms_streamer_file_count(s), files_before);
		}
		/* More files after the failure: whatever grew must still be consistent. */
		for (int i = 0; i < 10; i++)
			cr_assert_eq(ms_streamer_add(s, path), 0, "n=%ld: %s", n,
			             ms_error_last()->message);
		cr_assert_eq(ms_streamer_tensor_count(s), 5 * ms_streamer_file_count(s));
		ms_streamer_free(s);
		if (rc == 0)
			break; /* n is past the last allocation of add() */
	}
	cr_assert_gt(failures, 5);
}

/*
 * Disabled until lib/streamer.c is fixed. ms_streamer_add() grows `files` and `sources`
 * with one capacity, file_capacity: when `files` grows and `sources` then fails to,
 * file_capacity already holds the new size, so the next add() skips growing `sources` and
 * writes past its end (or, for the first file, through NULL: UBSan "store to null pointer
 * of type 'struct ms__source *'" at the `s->sources[s->file_count] = src` line). The
 * public header promises that after a failed add() the streamer "may still be used".
 * 8 files fill the first capacity, so the 9th add() grows the arrays again.
 */
Test(safetensors, allocation_failure_walk_streamer_first_file)
{
	walk_streamer_grow(0);
}

Test(safetensors, allocation_failure_walk_streamer_growing)
{
	walk_streamer_grow(8);
}
