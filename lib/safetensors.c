/*
 * safetensors.c - the safetensors header parser.
 *
 * The header is the one part of a model file that an outsider fully controls, and every
 * later step (planning reads, sizing the arena, handing pointers to the caller) trusts
 * the table built here. So validation is strict and happens in one place:
 *
 *  - the length prefix is capped (100 MB, as in the reference implementation) and must
 *    fit in the file;
 *  - the JSON is a UTF-8 object without a byte order mark, raw control characters or NUL
 *    escapes, parsed by cJSON (depth-limited) from a private NUL-terminated copy of all
 *    its bytes; only whitespace may follow;
 *  - each tensor has a known dtype, a shape of non-negative integers, and data_offsets
 *    [begin, end] with begin <= end; numbers are integers below 2^53, the range a JSON
 *    number holds exactly;
 *  - element count x element bits is computed with overflow checks and must equal the
 *    byte span (and be a whole number of bytes for the sub-byte float types);
 *  - sorted by offset, tensors tile the data section exactly: no gap, no overlap, and
 *    the last one ends at the end of the file (a file without tensors has no data);
 *  - names are unique, and so are the keys of each tensor entry (cJSON would take the
 *    first of two, other parsers the last); __metadata__ maps strings to strings, also
 *    without duplicates.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "error.h"
#include "safetensors.h"

typedef struct {
	const char *name;
	unsigned bits;
} dtype_entry;

/* Indexed by ms_dtype; the order must follow the enum in modelstream.h. */
static const dtype_entry dtype_table[MS_DTYPE_COUNT_] = {
    [MS_DTYPE_BOOL] = {"BOOL", 8},       [MS_DTYPE_U8] = {"U8", 8},
    [MS_DTYPE_I8] = {"I8", 8},           [MS_DTYPE_U16] = {"U16", 16},
    [MS_DTYPE_I16] = {"I16", 16},        [MS_DTYPE_F16] = {"F16", 16},
    [MS_DTYPE_BF16] = {"BF16", 16},      [MS_DTYPE_U32] = {"U32", 32},
    [MS_DTYPE_I32] = {"I32", 32},        [MS_DTYPE_F32] = {"F32", 32},
    [MS_DTYPE_U64] = {"U64", 64},        [MS_DTYPE_I64] = {"I64", 64},
    [MS_DTYPE_F64] = {"F64", 64},        [MS_DTYPE_C64] = {"C64", 64},
    [MS_DTYPE_F8_E4M3] = {"F8_E4M3", 8}, [MS_DTYPE_F8_E5M2] = {"F8_E5M2", 8},
    [MS_DTYPE_F8_E8M0] = {"F8_E8M0", 8}, [MS_DTYPE_F4] = {"F4", 4},
    [MS_DTYPE_F6_E2M3] = {"F6_E2M3", 6}, [MS_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
};

const char *ms_dtype_name(ms_dtype dtype)
{
	if ((unsigned)dtype >= MS_DTYPE_COUNT_)
		return NULL;
	return dtype_table[dtype].name;
}

unsigned ms_dtype_bits(ms_dtype dtype)
{
	if ((unsigned)dtype >= MS_DTYPE_COUNT_)
		return 0;
	return dtype_table[dtype].bits;
}

int ms__dtype_from_name(ms_dtype *out, const char *name)
{
	for (unsigned i = 0; i < MS_DTYPE_COUNT_; i++) {
		if (strcmp(dtype_table[i].name, name) == 0) {
			*out = (ms_dtype)i;
			return 0;
		}
	}
	return -1;
}

int ms__st_prefix_parse(uint64_t *out, const unsigned char prefix[8], uint64_t file_size,
                        const char *name)
{
	uint64_t n = 0;

	if (file_size < 8)
		return ms__error_set(MS_EFORMAT,
		                     "%s: file is %llu bytes, too short for a safetensors header",
		                     name, (unsigned long long)file_size);
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | prefix[i];
	if (n > MS__ST_HEADER_MAX)
		return ms__error_set(MS_EFORMAT,
		                     "%s: header length %llu exceeds the %llu-byte limit (not a "
		                     "safetensors file?)",
		                     name, (unsigned long long)n, MS__ST_HEADER_MAX);
	if (n > file_size - 8)
		return ms__error_set(
		    MS_EFORMAT,
		    "%s: header length %llu runs past the end of the %llu-byte file "
		    "(truncated file?)",
		    name, (unsigned long long)n, (unsigned long long)file_size);
	if (n < 2)
		return ms__error_set(MS_EFORMAT,
		                     "%s: header length %llu is too short for a JSON object", name,
		                     (unsigned long long)n);
	*out = n;
	return 0;
}

/* Returns the length of the UTF-8 sequence at p (at most `left` bytes), or 0 if invalid. */
static size_t utf8_sequence_length(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (left < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* Reject overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Checks what cJSON does not: valid UTF-8, no raw control characters (JSON forbids them
 * in strings and only allows space, tab, CR and LF between tokens) and no "\u0000"
 * escape, which would silently cut a C string short and let two names collide.
 */
static int check_header_bytes(const char *json, size_t len, const char *name)
{
	const unsigned char *p = (const unsigned char *)json;
	int in_string = 0, escaped = 0;

	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t seq;

		if (c < 0x20 && !(c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
			return ms__error_set(MS_EFORMAT,
			                     "%s: header holds control byte 0x%02x at offset %zu",
			                     name, c, i);
		}
		if (c < 0x20 && in_string)
			return ms__error_set(MS_EFORMAT,
			                     "%s: header string holds a raw control character at "
			                     "offset %zu",
			                     name, i);
		if (escaped) {
			/* The byte after a backslash is checked like any other, so that a raw NUL
			 * or control byte cannot hide behind one; only a quote there does not
			 * end the string. */
			escaped = 0;
		} else if (c == '"') {
			in_string = !in_string;
		} else if (c == '\\' && in_string) {
			if (i + 5 < len && memcmp(p + i + 1, "u0000", 5) == 0)
				return ms__error_set(MS_EFORMAT,
				                     "%s: header string holds a NUL character "
				                     "(\\u0000) at offset %zu",
				                     name, i);
			escaped = 1;
		}
		seq = utf8_sequence_length(p + i, len - i);
		if (seq == 0)
			return ms__error_set(
			    MS_EFORMAT, "%s: header is not valid UTF-8 at offset %zu", name, i);
		i += seq;
	}
	return 0;
}

/* Reads a JSON number that must be an integer in [0, 2^53]. */
static int json_uint(uint64_t *out, const cJSON *item)
{
	double v;

	if (!cJSON_IsNumber(item))
		return -1;
	v = item->valuedouble;
	if (!isfinite(v) || v < 0 || v > (double)MS__ST_NUMBER_MAX || floor(v) != v)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int tensor_error(const char *file, const char *tensor, const char *what)
{
	char printable[MS__PRINTABLE_MAX];

	return ms__error_set(MS_EFORMAT, "%s: tensor '%s': %s", file,
	                     ms__printable(printable, sizeof(printable), tensor), what);
}

static int parse_tensor(ms__st_tensor *t, const cJSON *entry, const char *file)
{
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
	const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
	const cJSON *item;
	uint64_t elements = 1, bits, dim;
	size_t i = 0;
	char why[160];

	if (!cJSON_IsObject(entry))
		return tensor_error(file, t->name, "entry is not a JSON object");
	/* cJSON returns the first of two equal keys, other parsers the last: refuse both. */
	cJSON_ArrayForEach(item, entry)
	{
		if (strcmp(item->string, "dtype") == 0 || strcmp(item->string, "shape") == 0 ||
		    strcmp(item->string, "data_offsets") == 0) {
			if (item != cJSON_GetObjectItemCaseSensitive(entry, item->string)) {
				snprintf(why, sizeof(why), "\"%s\" appears twice", item->string);
				return tensor_error(file, t->name, why);
			}
		}
	}
	if (!cJSON_IsString(dtype))
		return tensor_error(file, t->name, "\"dtype\" is missing or not a string");
	if (ms__dtype_from_name(&t->dtype, dtype->valuestring) != 0) {
		char printable[MS__PRINTABLE_MAX];

		snprintf(why, sizeof(why), "unknown dtype \"%s\"",
		         ms__printable(printable, 40, dtype->valuestring));
		return tensor_error(file, t->name, why);
	}
	if (!cJSON_IsArray(shape))
		return tensor_error(file, t->name, "\"shape\" is missing or not an array");
	t->ndim = (size_t)cJSON_GetArraySize(shape);
	if (t->ndim > MS_MAX_NDIM) {
		snprintf(why, sizeof(why), "shape has %zu dimensions, more than the limit of %d",
		         t->ndim, MS_MAX_NDIM);
		return tensor_error(file, t->name, why);
	}
	if (t->ndim > 0) {
		t->shape = ms__calloc(t->ndim, sizeof(*t->shape));
		if (t->shape == NULL)
			return ms__error_set(MS_ENOMEM, "%s: out of memory parsing the header",
			                     file);
	}
	cJSON_ArrayForEach(item, shape)
	{
		if (json_uint(&dim, item) != 0)
			return tensor_error(file, t->name,
			                    "shape holds something other than a non-negative "
			                    "integer below 2^53");
		t->shape[i++] = (int64_t)dim;
		if (__builtin_mul_overflow(elements, dim, &elements))
			return tensor_error(file, t->name, "shape's element count overflows");
	}
	if (__builtin_mul_overflow(elements, (uint64_t)ms_dtype_bits(t->dtype), &bits))
		return tensor_error(file, t->name, "shape's size in bits overflows");
	if (bits % 8 != 0) {
		snprintf(why, sizeof(why),
		         "%llu-element %s tensor is %llu bits, not a whole number "
		         "of bytes",
		         (unsigned long long)elements, ms_dtype_name(t->dtype),
		         (unsigned long long)bits);
		return tensor_error(file, t->name, why);
	}
	if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
	    json_uint(&t->begin, cJSON_GetArrayItem(offsets, 0)) != 0 ||
	    json_uint(&t->end, cJSON_GetArrayItem(offsets, 1)) != 0)
		return tensor_error(
		    file, t->name,
		    "\"data_offsets\" must be two non-negative integers [begin, end]");
	if (t->begin > t->end) {
		snprintf(why, sizeof(why), "data_offsets [%llu, %llu] end before they begin",
		         (unsigned long long)t->begin, (unsigned long long)t->end);
		return tensor_error(file, t->name, why);
	}
	if (t->end - t->begin != bits / 8) {
		snprintf(why, sizeof(why),
		         "shape and dtype %s need %llu bytes but data_offsets [%llu, %llu] span "
		         "%llu",
		         ms_dtype_name(t->dtype), (unsigned long long)(bits / 8),
		         (unsigned long long)t->begin, (unsigned long long)t->end,
		         (unsigned long long)(t->end - t->begin));
		return tensor_error(file, t->name, why);
	}
	return 0;
}

static int compare_by_offset(const void *a, const void *b)
{
	const ms__st_tensor *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Finds a name that occurs twice; `names` is sorted in place. Returns it or NULL. */
static const char *find_duplicate(char **names, size_t count)
{
	qsort(names, count, sizeof(*names), compare_strings);
	for (size_t i = 1; i < count; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			return names[i];
	return NULL;
}

/* The tensors, sorted by offset, must tile the data section [0, data_size) exactly. */
static int check_layout(const ms__st_header *h, uint64_t data_size, const char *file)
{
	char printable[MS__PRINTABLE_MAX], other[MS__PRINTABLE_MAX];
	uint64_t expected = 0;

	for (size_t i = 0; i < h->tensor_count; i++) {
		const ms__st_tensor *t = &h->tensors[i];

		if (t->begin < expected)
			return ms__error_set(
			    MS_EFORMAT, "%s: tensor '%s' at [%llu, %llu] overlaps tensor '%s'",
			    file, ms__printable(printable, sizeof(printable), t->name),
			    (unsigned long long)t->begin, (unsigned long long)t->end,
			    ms__printable(other, sizeof(other), h->tensors[i - 1].name));
		if (t->begin > expected)
			return ms__error_set(MS_EFORMAT,
			                     "%s: %llu unreferenced bytes before tensor '%s' at "
			                     "offset %llu (gaps are not allowed)",
			                     file, (unsigned long long)(t->begin - expected),
			                     ms__printable(printable, sizeof(printable), t->name),
			                     (unsigned long long)t->begin);
		if (t->end > data_size)
			return ms__error_set(
			    MS_EFORMAT,
			    "%s: tensor '%s' ends at data offset %llu, past the end of the "
			    "%llu-byte data section (truncated file?)",
			    file, ms__printable(printable, sizeof(printable), t->name),
			    (unsigned long long)t->end, (unsigned long long)data_size);
		expected = t->end;
	}
	if (expected != data_size)
		return ms__error_set(MS_EFORMAT,
		                     "%s: tensors cover %llu bytes but the data section holds %llu "
		                     "(trailing bytes are not allowed)",
		                     file, (unsigned long long)expected,
		                     (unsigned long long)data_size);
	return 0;
}

static int parse_metadata(ms__st_header *h, const cJSON *meta, const char *file)
{
	const cJSON *item;
	const char *dup;
	char **sorted = NULL;
	size_t n = 0;
	int rc = 0;

	if (!cJSON_IsObject(meta))
		return ms__error_set(MS_EFORMAT, "%s: \"__metadata__\" is not a JSON object", file);
	cJSON_ArrayForEach(item, meta) n++;
	if (n == 0)
		return 0;
	h->metadata_keys = ms__calloc(n, sizeof(char *));
	h->metadata_values = ms__calloc(n, sizeof(char *));
	sorted = ms__calloc(n, sizeof(char *));
	if (h->metadata_keys == NULL || h->metadata_values == NULL || sorted == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory parsing the header", file);
		goto done;
	}
	cJSON_ArrayForEach(item, meta)
	{
		char printable[MS__PRINTABLE_MAX];

		if (!cJSON_IsString(item)) {
			rc = ms__error_set(
			    MS_EFORMAT, "%s: __metadata__ entry '%s' is not a string", file,
			    ms__printable(printable, sizeof(printable), item->string));
			goto done;
		}
		h->metadata_keys[h->metadata_count] = ms__strdup(item->string);
		h->metadata_values[h->metadata_count] = ms__strdup(item->valuestring);
		if (h->metadata_keys[h->metadata_count] == NULL ||
		    h->metadata_values[h->metadata_count] == NULL) {
			h->metadata_count++; /* so that ms__st_header_free() frees the pair */
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory parsing the header", file);
			goto done;
		}
		sorted[h->metadata_count] = h->metadata_keys[h->metadata_count];
		h->metadata_count++;
	}
	dup = find_duplicate(sorted, n);
	if (dup != NULL) {
		char printable[MS__PRINTABLE_MAX];

		rc = ms__error_set(MS_EFORMAT, "%s: __metadata__ key '%s' appears twice", file,
		                   ms__printable(printable, sizeof(printable), dup));
	}
done:
	ms__free(sorted);
	return rc;
}

static int build_table(ms__st_header *h, const cJSON *root, const char *file)
{
	const cJSON *item, *meta = NULL;
	char **names = NULL;
	const char *dup;
	size_t n = 0;
	int rc = 0;

	cJSON_ArrayForEach(item, root)
	{
		if (strcmp(item->string, "__metadata__") == 0) {
			if (meta != NULL)
				return ms__error_set(MS_EFORMAT,
				                     "%s: \"__metadata__\" appears twice", file);
			meta = item;
		} else {
			n++;
		}
	}
	if (meta != NULL && (rc = parse_metadata(h, meta, file)) < 0)
		return rc;
	/* Without tensors the data section must be empty too: its bytes would be unowned. */
	if (n == 0)
		return check_layout(h, h->file_size - h->data_start, file);
	h->tensors = ms__calloc(n, sizeof(*h->tensors));
	names = ms__calloc(n, sizeof(*names));
	if (h->tensors == NULL || names == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory parsing the header", file);
		goto done;
	}
	cJSON_ArrayForEach(item, root)
	{
		ms__st_tensor *t = &h->tensors[h->tensor_count];

		if (item == meta)
			continue;
		t->name = ms__strdup(item->string);
		if (t->name == NULL) {
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory parsing the header", file);
			goto done;
		}
		names[h->tensor_count] = t->name;
		h->tensor_count++; /* counted before parsing so that free sees its shape */
		if ((rc = parse_tensor(t, item, file)) < 0)
			goto done;
		if (t->end - t->begin > h->largest_tensor)
			h->largest_tensor = t->end - t->begin;
	}
	dup = find_duplicate(names, n);
	if (dup != NULL) {
		char printable[MS__PRINTABLE_MAX];

		rc = ms__error_set(MS_EFORMAT, "%s: tensor name '%s' appears twice", file,
		                   ms__printable(printable, sizeof(printable), dup));
		goto done;
	}
	qsort(h->tensors, h->tensor_count, sizeof(*h->tensors), compare_by_offset);
	rc = check_layout(h, h->file_size - h->data_start, file);
done:
	ms__free(names);
	return rc;
}

int ms__st_header_parse(ms__st_header **out, const char *json, size_t json_len, uint64_t file_size,
                        const char *name)
{
	ms__st_header *h = NULL;
	cJSON *root = NULL;
	char *copy = NULL;
	const char *end = NULL;
	int rc;

	*out = NULL;
	ms__alloc_init_json();
	if (json_len > MS__ST_HEADER_MAX || json_len > file_size - 8 || file_size < 8)
		return ms__error_set(MS_EFORMAT, "%s: header length %zu does not fit the file",
		                     name, json_len);
	if ((rc = check_header_bytes(json, json_len, name)) < 0)
		return rc;
	/* cJSON skips a byte order mark; JSON forbids one and the reference parser refuses it. */
	if (json_len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0)
		return ms__error_set(MS_EFORMAT, "%s: header starts with a UTF-8 byte order mark",
		                     name);
	/* cJSON gets a private NUL-terminated copy of all json_len bytes, so it cannot read
	 * past the header. (ms__strndup() would stop at a NUL byte and leave cJSON a
	 * buffer shorter than the length it is told.) */
	copy = ms__malloc(json_len + 1);
	if (copy != NULL) {
		memcpy(copy, json, json_len);
		copy[json_len] = '\0';
	}
	h = ms__calloc(1, sizeof(*h));
	if (copy == NULL || h == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory parsing a %zu-byte header", name,
		                   json_len);
		goto done;
	}
	h->header_size = json_len;
	h->data_start = 8 + (uint64_t)json_len;
	h->file_size = file_size;
	ms__alloc_json_failed(); /* clear a failure left by an earlier parse */
	root = cJSON_ParseWithLengthOpts(copy, json_len, &end, 0);
	if (root == NULL && ms__alloc_json_failed()) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory parsing a %zu-byte header", name,
		                   json_len);
		goto done;
	}
	if (root == NULL) {
		size_t at = end != NULL && end >= copy ? (size_t)(end - copy) : 0;

		rc = ms__error_set(MS_EFORMAT, "%s: header is not valid JSON (near byte %zu)", name,
		                   at);
		goto done;
	}
	for (; end != NULL && *end != '\0'; end++) {
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
			rc = ms__error_set(MS_EFORMAT,
			                   "%s: header has bytes after its JSON object (byte %zu)",
			                   name, (size_t)(end - copy));
			goto done;
		}
	}
	if (!cJSON_IsObject(root)) {
		rc = ms__error_set(MS_EFORMAT, "%s: header is JSON but not an object", name);
		goto done;
	}
	if ((rc = build_table(h, root, name)) < 0)
		goto done;
	*out = h;
	h = NULL;
done:
	cJSON_Delete(root);
	ms__free(copy);
	ms__st_header_free(h);
	return rc;
}

void ms__st_header_free(ms__st_header *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->tensor_count; i++) {
		ms__free(h->tensors[i].name);
		ms__free(h->tensors[i].shape);
	}
	for (size_t i = 0; i < h->metadata_count; i++) {
		ms__free(h->metadata_keys[i]);
		ms__free(h->metadata_values[i]);
	}
	ms__free(h->tensors);
	ms__free(h->metadata_keys);
	ms__free(h->metadata_values);
	ms__free(h);
}
