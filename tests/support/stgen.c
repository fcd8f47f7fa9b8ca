/*
 * stgen.c - writes safetensors test files from a seed.
 *
 * A file is planned first: the tensor list in data-offset order, each with a realistic
 * name, a dtype, a shape and its offsets. Every choice comes from one seeded generator, so
 * a spec always gives the same plan. Writing then renders the JSON header and streams the
 * data section through one large buffer, filled by stgen_fill(); that costs a couple of
 * multiplications per 8 bytes, so a file of gigabytes takes seconds and the disk, not the
 * generator, sets the pace.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
/* open(2) with O_CLOEXEC is POSIX 2008; strict -std=c11 hides it without this. */
#define _POSIX_C_SOURCE 200809L
#endif

#include "stgen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The data section is written in pieces of this size: large enough that write(2) calls
 * cost nothing, small enough to stay in the cache's reach. A multiple of 8, so that every
 * piece starts on a content word. */
#define WRITE_BUFFER_SIZE (8u * 1024 * 1024)

/* Offsets must survive a trip through JSON readers that hold numbers in doubles. */
#define MAX_DATA_BYTES (1ULL << 53)

/* A plan holds one entry per tensor in memory; far beyond any test, and it keeps the
 * position arithmetic below free of overflow. */
#define MAX_TENSORS (1ULL << 31)

/* Widest columns of a large tensor: [rows, 8192] reads like a real weight matrix. */
#define LARGE_MAX_COLUMNS 8192

/* Every dtype of the format, in the order of its specification; sub-byte types last. */
const char *const stgen_all_dtypes[] = {
    "BOOL", "U8",  "I8",  "U16", "I16",     "F16",     "BF16",    "U32", "I32",     "F32",
    "U64",  "I64", "F64", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2",
};

#define DTYPE_COUNT (sizeof(stgen_all_dtypes) / sizeof(stgen_all_dtypes[0]))

const size_t stgen_all_dtype_count = DTYPE_COUNT;

/* Element sizes in bits, index for index with the names above. */
static const unsigned dtype_bits[] = {
    8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64, 8, 8, 8, 4, 6, 6,
};

_Static_assert(sizeof(dtype_bits) / sizeof(dtype_bits[0]) == DTYPE_COUNT,
               "every dtype name needs its size");

/* The parts of one transformer layer, in the order a writer would emit them. Small
 * tensors take these names; a large one lands wherever its position falls. */
static const char *const layer_parts[] = {
    "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias",   "self_attn.v_proj.weight",
    "self_attn.v_proj.bias",   "self_attn.o_proj.weight", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight",
};

#define LAYER_PART_COUNT (sizeof(layer_parts) / sizeof(layer_parts[0]))

/* ---------------------------------------------------------------------------------------- */
/* Randomness and content                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* SplitMix64's finaliser: a cheap bijection whose output looks random even for
 * consecutive inputs, which is what both the planner and the content need. */
static uint64_t mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return mix64(*state);
}

/* A value in [0, bound); the slight modulo bias does not matter for test fixtures. */
static uint64_t rng_below(uint64_t *state, uint64_t bound)
{
	return rng_next(state) % bound;
}

/* The content stream of a seed starts at a seed-dependent point of mix64's input space,
 * so that different seeds give unrelated bytes at the same offset. */
static uint64_t content_base(uint64_t seed)
{
	return mix64(seed ^ 0x5354474e5354474eULL);
}

static uint64_t content_word(uint64_t base, uint64_t word_index)
{
	return mix64(base + word_index);
}

uint8_t stgen_byte(uint64_t seed, uint64_t data_offset)
{
	uint64_t word = content_word(content_base(seed), data_offset / 8);

	return (uint8_t)(word >> (8 * (data_offset % 8)));
}

/* Spelled out byte by byte so that the content does not depend on the host's byte order;
 * compilers turn this into one store. */
static void store_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void stgen_fill(void *buf, size_t len, uint64_t seed, uint64_t data_offset)
{
	unsigned char *p = buf;
	uint64_t base = content_base(seed);

	/* The unaligned head and tail go byte by byte; the middle goes a word at a time. */
	while (len > 0 && data_offset % 8 != 0) {
		*p++ = stgen_byte(seed, data_offset++);
		len--;
	}
	uint64_t word_index = data_offset / 8;
	for (; len >= 8; len -= 8, p += 8, word_index++)
		store_le64(p, content_word(base, word_index));
	data_offset = word_index * 8;
	for (; len > 0; len--)
		*p++ = stgen_byte(seed, data_offset++);
}

/* ---------------------------------------------------------------------------------------- */
/* Planning                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* The index of a dtype in stgen_all_dtypes, or -1 if the name is unknown. */
static int dtype_index(const char *name)
{
	for (size_t i = 0; name != NULL && i < DTYPE_COUNT; i++)
		if (strcmp(stgen_all_dtypes[i], name) == 0)
			return (int)i;
	return -1;
}

unsigned stgen_dtype_bits(const char *dtype)
{
	int i = dtype_index(dtype);

	return i < 0 ? 0 : dtype_bits[i];
}

/* The fewest elements that fill whole bytes: 4 for a 6-bit type, 2 for a 4-bit one. */
static uint64_t element_granule(unsigned bits)
{
	uint64_t g = 1;

	while (g * bits % 8 != 0)
		g++;
	return g;
}

static uint64_t granule_bytes(unsigned bits)
{
	return element_granule(bits) * bits / 8;
}

/*
 * The dtypes that small (large == 0) or large tensors of `spec` may use, as indexes into
 * stgen_all_dtypes; returns how many. `out` has room for DTYPE_COUNT entries, and a list
 * longer than that is cut short. Returns 0 if the list names an unknown dtype.
 */
static size_t usable_dtypes(int *out, const stgen_spec *spec, int large)
{
	int all = spec->dtypes == NULL || spec->dtype_count == 0;
	size_t listed = all ? DTYPE_COUNT : spec->dtype_count, n = 0;

	for (size_t i = 0; i < listed; i++) {
		int d = all ? (int)i : dtype_index(spec->dtypes[i]);
		if (d < 0)
			return 0;
		/* A large tensor must be a whole number of elements; a small one needs room
		 * for the fewest elements that fill whole bytes. */
		uint64_t unit = granule_bytes(dtype_bits[d]);
		int ok = large ? spec->large_bytes % unit == 0 : unit <= spec->small_max_bytes;
		if (ok && n < DTYPE_COUNT)
			out[n++] = d;
	}
	return n;
}

const char *stgen_spec_problem(const stgen_spec *spec)
{
	int usable[DTYPE_COUNT];

	if (spec == NULL)
		return "no spec was given";
	for (size_t i = 0; spec->dtypes != NULL && i < spec->dtype_count; i++)
		if (dtype_index(spec->dtypes[i]) < 0)
			return "the dtype list names a dtype that safetensors does not define";
	if (spec->small_count > MAX_TENSORS || spec->large_count > MAX_TENSORS ||
	    spec->small_count + spec->large_count > MAX_TENSORS)
		return "too many tensors (at most 2^31)";
	if (spec->small_count > 0 && spec->small_max_bytes == 0)
		return "small tensors need a nonzero maximum size";
	if (spec->small_count > 0 && usable_dtypes(usable, spec, 0) == 0)
		return "the small maximum size is below one element of every allowed dtype "
		       "(F6 types need 3 bytes)";
	if (spec->large_count > 0 && spec->large_bytes == 0)
		return "large tensors need a nonzero size";
	if (spec->large_count > 0 && usable_dtypes(usable, spec, 1) == 0)
		return "the large size is not a whole number of elements of any allowed dtype";
	/* Bound the worst case, every small tensor at its maximum, in two steps that cannot
	 * overflow themselves. */
	if (spec->large_bytes > MAX_DATA_BYTES / (spec->large_count + 1) ||
	    spec->small_max_bytes > MAX_DATA_BYTES / (spec->small_count + 1) ||
	    spec->large_bytes * spec->large_count + spec->small_max_bytes * spec->small_count >
	        MAX_DATA_BYTES)
		return "the data section could exceed 2^53 bytes, beyond exact JSON numbers";
	return NULL;
}

/*
 * The name at `position` of `total`: the embedding first, the final norm and the output
 * head last, and whole transformer layers in between.
 */
static void tensor_name(char *out, size_t size, size_t position, size_t total)
{
	if (position == 0) {
		snprintf(out, size, "model.embed_tokens.weight");
	} else if (total >= 2 && position == total - 1) {
		snprintf(out, size, "lm_head.weight");
	} else if (total >= 3 && position == total - 2) {
		snprintf(out, size, "model.norm.weight");
	} else {
		size_t k = position - 1;
		snprintf(out, size, "model.layers.%zu.%s", k / LAYER_PART_COUNT,
		         layer_parts[k % LAYER_PART_COUNT]);
	}
}

/* A random divisor of n (n > 0), found by trial division: cheap enough for the element
 * counts of small tensors, which are at most 2 * small_max_bytes. */
static uint64_t random_divisor(uint64_t *rng, uint64_t n)
{
	uint64_t count = 0, pick, d;

	for (d = 1; d <= n / d; d++)
		if (n % d == 0)
			count++;
	pick = rng_below(rng, count);
	for (d = 1; d <= n / d; d++)
		if (n % d == 0 && pick-- == 0)
			break;
	return rng_below(rng, 2) ? d : n / d;
}

/*
 * A random shape of 1 to 3 dimensions with exactly `elements` elements, whose last
 * dimension is a multiple of `granule`: sub-byte types are packed along it, and readers
 * such as PyTorch refuse an F4 tensor whose rows end inside a byte.
 */
static void small_shape(stgen_tensor *t, uint64_t *rng, uint64_t elements, uint64_t granule)
{
	uint64_t units = elements / granule;

	t->ndim = 1 + (size_t)rng_below(rng, 3);
	if (t->ndim == 1) {
		t->shape[0] = units;
	} else if (t->ndim == 2) {
		uint64_t cols = random_divisor(rng, units);
		t->shape[0] = units / cols;
		t->shape[1] = cols;
	} else {
		uint64_t inner = random_divisor(rng, units);
		uint64_t middle = random_divisor(rng, units / inner);
		t->shape[0] = units / inner / middle;
		t->shape[1] = middle;
		t->shape[2] = inner;
	}
	t->shape[t->ndim - 1] *= granule;
}

/* A random size of 1..max bytes, spread evenly over the powers of two (most tensors of a
 * real model are tiny norms and biases), and now and then exactly max. */
static uint64_t small_target_bytes(uint64_t *rng, uint64_t max)
{
	unsigned top = 0, k;
	uint64_t low, high;

	if (rng_below(rng, 16) == 0)
		return max;
	while (top < 63 && (1ULL << (top + 1)) <= max)
		top++;
	k = (unsigned)rng_below(rng, top + 1);
	low = 1ULL << k;
	high = k == 63 ? UINT64_MAX : (1ULL << (k + 1)) - 1;
	if (high > max)
		high = max;
	return low + rng_below(rng, high - low + 1);
}

static void plan_small(stgen_tensor *t, uint64_t *rng, const int *usable, size_t usable_count,
                       uint64_t max_bytes)
{
	int d = usable[rng_below(rng, usable_count)];
	unsigned bits = dtype_bits[d];
	uint64_t granule = element_granule(bits);
	uint64_t elements = small_target_bytes(rng, max_bytes) * 8 / bits;

	/* Round down to whole bytes; the dtype was chosen so that one granule fits. */
	elements -= elements % granule;
	if (elements == 0)
		elements = granule;
	t->dtype = stgen_all_dtypes[d];
	small_shape(t, rng, elements, granule);
	t->end = t->begin + elements * bits / 8;
}

static void plan_large(stgen_tensor *t, uint64_t *rng, const int *usable, size_t usable_count,
                       uint64_t bytes)
{
	int d = usable[rng_below(rng, usable_count)];
	uint64_t elements = bytes * 8 / dtype_bits[d], cols = LARGE_MAX_COLUMNS;

	/* The widest power-of-two row that divides the tensor, as weight matrices have; it
	 * is a multiple of the sub-byte granule, since that is 2 or 4 and divides too. */
	while (elements % cols != 0)
		cols /= 2;
	t->dtype = stgen_all_dtypes[d];
	t->ndim = 2;
	t->shape[0] = elements / cols;
	t->shape[1] = cols;
	t->end = t->begin + bytes;
}

int stgen_plan(stgen_tensor **out, size_t *out_count, const stgen_spec *spec)
{
	int small[DTYPE_COUNT], large[DTYPE_COUNT];
	size_t small_count, large_count, total, next_large = 0;
	stgen_tensor *tensors;
	uint64_t rng, cursor = 0;

	if (out == NULL || out_count == NULL || stgen_spec_problem(spec) != NULL) {
		errno = EINVAL;
		return -1;
	}
	small_count = usable_dtypes(small, spec, 0);
	large_count = usable_dtypes(large, spec, 1);
	total = spec->small_count + spec->large_count;

	/* Never malloc(0): an empty file is a valid plan too, and free() must work on it. */
	tensors = calloc(total ? total : 1, sizeof(*tensors));
	if (tensors == NULL) {
		errno = ENOMEM;
		return -1;
	}
	rng = spec->seed;
	for (size_t i = 0; i < total; i++) {
		stgen_tensor *t = &tensors[i];
		/* Large tensor j sits at j * (total - 1) / (large_count - 1): the first and the
		 * last positions, and evenly between them. MAX_TENSORS keeps this in range. */
		size_t large_at = total;
		if (next_large < spec->large_count)
			large_at = spec->large_count == 1
			               ? 0
			               : next_large * (total - 1) / (spec->large_count - 1);

		tensor_name(t->name, sizeof(t->name), i, total);
		t->begin = cursor;
		if (i == large_at) {
			plan_large(t, &rng, large, large_count, spec->large_bytes);
			next_large++;
		} else {
			plan_small(t, &rng, small, small_count, spec->small_max_bytes);
		}
		cursor = t->end;
	}
	*out = tensors;
	*out_count = total;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The JSON header                                                                            */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	char *data;
	size_t len;
	size_t cap;
	int failed; /* set once an allocation fails; later appends do nothing */
} text;

static void text_append(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_append(text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	while (!t->failed) {
		va_start(ap, fmt);
		n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
		} else if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		} else {
			size_t cap = (t->cap + (size_t)n + 1) * 2;
			char *grown = realloc(t->data, cap);
			if (grown == NULL) {
				t->failed = 1;
			} else {
				t->data = grown;
				t->cap = cap;
			}
		}
	}
}

/* Metadata whose values need JSON escapes (\" \\ \/ \t \n \u00e9) and hold raw UTF-8, so
 * that a reader that copies strings without decoding them shows up in a cross-check. */
static void append_metadata(text *t, uint64_t seed)
{
	text_append(t,
	            "\"__metadata__\":{\"format\":\"pt\",\"generator\":\"stgen\","
	            "\"seed\":\"%llu\",\"note\":\"quote \\\" backslash \\\\ slash \\/ tab \\t "
	            "newline \\n e-acute \\u00e9 snowman \xe2\x98\x83\"}",
	            (unsigned long long)seed);
}

static void append_tensor(text *t, const stgen_tensor *tensor)
{
	text_append(t, "\"%s\":{\"dtype\":\"%s\",\"shape\":[", tensor->name, tensor->dtype);
	for (size_t d = 0; d < tensor->ndim; d++)
		text_append(t, "%s%llu", d ? "," : "", (unsigned long long)tensor->shape[d]);
	text_append(t, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)tensor->begin,
	            (unsigned long long)tensor->end);
}

static int by_name(const void *a, const void *b)
{
	const stgen_tensor *x = *(const stgen_tensor *const *)a;
	const stgen_tensor *y = *(const stgen_tensor *const *)b;

	return strcmp(x->name, y->name);
}

/*
 * Renders the 8-byte prefix and the JSON header, padded with spaces so that the data
 * section starts at a multiple of 8. On success *out is a malloc'ed buffer of *out_len
 * bytes.
 */
static int render_header(char **out, size_t *out_len, const stgen_tensor *tensors, size_t count,
                         const stgen_spec *spec)
{
	const stgen_tensor **order = NULL;
	text t = {0};
	size_t metadata_at = 0;
	uint64_t rng = mix64(spec->seed ^ 0x4a534f4e4f524452ULL);
	int comma = 0, rc = -1;

	order = malloc((count ? count : 1) * sizeof(*order));
	t.cap = 256 + count * 128; /* about one entry's length; text_append grows it anyway */
	t.data = malloc(t.cap);
	if (order == NULL || t.data == NULL)
		goto done;
	for (size_t i = 0; i < count; i++)
		order[i] = &tensors[i];
	if (spec->json_order == STGEN_JSON_SORTED) {
		qsort(order, count, sizeof(*order), by_name);
	} else if (spec->json_order == STGEN_JSON_SHUFFLED) {
		for (size_t i = count; i > 1; i--) {
			size_t j = (size_t)rng_below(&rng, i);
			const stgen_tensor *swap = order[i - 1];
			order[i - 1] = order[j];
			order[j] = swap;
		}
		metadata_at = (size_t)rng_below(&rng, count + 1);
	}

	/* Eight bytes for the length, patched in once the JSON's size is known. */
	text_append(&t, "12345678{");
	for (size_t i = 0; i <= count; i++) {
		if (i == metadata_at && spec->metadata) {
			text_append(&t, "%s", comma ? "," : "");
			append_metadata(&t, spec->seed);
			comma = 1;
		}
		if (i == count)
			break;
		text_append(&t, "%s", comma ? "," : "");
		append_tensor(&t, order[i]);
		comma = 1;
	}
	text_append(&t, "}");
	while (!t.failed && t.len % 8 != 0)
		text_append(&t, " ");
	if (t.failed)
		goto done;
	store_le64((unsigned char *)t.data, (uint64_t)t.len - 8);
	*out = t.data;
	*out_len = t.len;
	t.data = NULL;
	rc = 0;
done:
	free(t.data);
	free(order);
	if (rc != 0)
		errno = ENOMEM;
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes `prefix`, then `data_len` content bytes. A file left half written would look
 * like a hostile fixture to the next test, so it is removed if anything fails; only a
 * regular file, though, since the path may be a device such as /dev/full. */
static int write_file(const char *path, const void *prefix, size_t prefix_len, uint64_t data_len,
                      uint64_t seed)
{
	unsigned char *buf = NULL;
	uint64_t offset = 0;
	int fd = -1, regular = 0, rc = -1, saved_errno;
	struct stat st;

	buf = malloc(WRITE_BUFFER_SIZE);
	if (buf == NULL) {
		errno = ENOMEM;
		goto done;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto done;
	regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (write_all(fd, prefix, prefix_len) != 0)
		goto done;
	while (offset < data_len) {
		size_t n = data_len - offset < WRITE_BUFFER_SIZE ? (size_t)(data_len - offset)
		                                                 : WRITE_BUFFER_SIZE;
		stgen_fill(buf, n, seed, offset);
		if (write_all(fd, buf, n) != 0)
			goto done;
		offset += n;
	}
	/* close(2) can report a deferred write error (NFS, quotas); it counts. */
	rc = close(fd);
	fd = -1;
done:
	saved_errno = errno;
	if (fd >= 0)
		close(fd);
	if (rc != 0 && regular)
		unlink(path);
	free(buf);
	errno = saved_errno;
	return rc;
}

int stgen_write(const char *path, const stgen_spec *spec)
{
	stgen_tensor *tensors = NULL;
	size_t count = 0, header_len = 0;
	char *header = NULL;
	int rc = -1, saved_errno;

	if (path == NULL) {
		errno = EINVAL;
		return -1;
	}
	if (stgen_plan(&tensors, &count, spec) != 0)
		goto done;
	if (render_header(&header, &header_len, tensors, count, spec) != 0)
		goto done;
	rc = write_file(path, header, header_len, count ? tensors[count - 1].end : 0, spec->seed);
done:
	saved_errno = errno;
	free(header);
	free(tensors);
	errno = saved_errno;
	return rc;
}

int stgen_write_raw(const char *path, const void *prefix_and_header, size_t len, uint64_t data_len,
                    uint64_t seed)
{
	if (path == NULL || (prefix_and_header == NULL && len > 0)) {
		errno = EINVAL;
		return -1;
	}
	return write_file(path, prefix_and_header, len, data_len, seed);
}
