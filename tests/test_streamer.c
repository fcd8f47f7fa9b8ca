/*
 * test_streamer.c - the public streamer API around streaming itself: options and their
 * validation, options from the environment, what a streamer says about its files (sizes,
 * metadata, the tensor table in file order), files that cannot be added, error codes and
 * the per-thread last error, NULL-safety, and an allocation-failure walk over the whole
 * public path (curl's "torture" idea: fail allocation 1, then 2, then 3, ...).
 *
 * Streaming itself (every byte, every memory mode, cancel) is in test_engine.c.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "modelstream.h"
#include "support/stgen.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(streamer, .fini = teardown, .timeout = 120);

/*
 * The environment tests start from a clean environment, in case the runner's has these
 * set. Criterion runs each test in its own process, so what a test sets does not leak
 * into the next. (They share the one suite: a second suite run with --jobs 2 makes
 * Criterion's runner leak a 48-byte object, which LeakSanitizer reports.)
 *
 * env_names lists every variable ms_streamer_options_from_env() reads.
 */
static const char *const env_names[] = {
    "RUNAI_STREAMER_CONCURRENCY", "RUNAI_STREAMER_MEMORY_LIMIT", "RUNAI_STREAMER_CHUNK_BYTESIZE",
    "MODELSTREAM_CONCURRENCY",    "MODELSTREAM_MEMORY_LIMIT",    "MODELSTREAM_CHUNK_SIZE",
};

static void env_clear(void)
{
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		cr_assert_eq(unsetenv(env_names[i]), 0);
}

static void assert_options_equal(const ms_streamer_options *a, const ms_streamer_options *b)
{
	cr_assert_eq(a->version, b->version);
	cr_assert_eq(a->concurrency, b->concurrency);
	cr_assert_eq(a->memory_limit, b->memory_limit);
	cr_assert_eq(a->chunk_size, b->chunk_size);
	cr_assert_eq(a->direct_io, b->direct_io);
	cr_assert_eq(a->select, b->select);
	cr_assert_eq(a->select_count, b->select_count);
	cr_assert_eq(a->deliver, b->deliver);
}

/* Writes a model made by stgen; fills `spec` and returns the data section's offset. */
static uint64_t write_model(char *path, size_t path_size, const char *name, stgen_spec *spec)
{
	unsigned char prefix[8];
	uint64_t header_size = 0;
	FILE *f;

	tu_path(path, path_size, name);
	cr_assert_eq(stgen_write(path, spec), 0, "stgen_write %s", path);
	f = fopen(path, "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(prefix, 1, 8, f), 8);
	fclose(f);
	for (int i = 0; i < 8; i++)
		header_size |= (uint64_t)prefix[i] << (8 * i);
	return 8 + header_size;
}

static stgen_spec small_spec(uint64_t seed)
{
	stgen_spec spec = STGEN_SPEC_INIT;

	spec.seed = seed;
	spec.small_count = 40;
	spec.small_max_bytes = 4096;
	spec.large_count = 2;
	spec.large_bytes = 256 * 1024;
	return spec;
}

/* ---------------------------------------------------------------------------------------- */
/* Options                                                                                    */
/* ---------------------------------------------------------------------------------------- */

Test(streamer, options_init_equals_the_macro)
{
	ms_streamer_options from_macro = MS_STREAMER_OPTIONS_INIT, from_function;

	memset(&from_function, 0x5a, sizeof(from_function));
	ms_streamer_options_init(&from_function);
	assert_options_equal(&from_function, &from_macro);
	cr_assert_eq(from_macro.version, MS_STREAMER_OPTIONS_VERSION);
	cr_assert_eq(from_macro.memory_limit, MS_MEMORY_UNLIMITED);
	cr_assert_eq(from_macro.direct_io, MS_DIRECT_IO_AUTO);
}

/* Creates a streamer with `opts`, which must be refused with MS_EINVAL, a NULL *out and
 * a message that holds `needle`. */
static void assert_rejected(const ms_streamer_options *opts, const char *needle)
{
	ms_streamer *s = (ms_streamer *)&s; /* anything but NULL: must be reset */

	cr_assert_eq(ms_streamer_new(&s, opts), MS_EINVAL, "expected '%s' to be rejected", needle);
	cr_assert_null(s);
	cr_assert_eq(ms_error_last()->code, MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, needle) != NULL, "'%s' not in '%s'", needle,
	          ms_error_last()->message);
}

static void assert_accepted(const ms_streamer_options *opts)
{
	ms_streamer *s = NULL;

	cr_assert_eq(ms_streamer_new(&s, opts), 0, "%s", ms_error_last()->message);
	cr_assert_not_null(s);
	ms_streamer_free(s);
}

Test(streamer, new_rejects_bad_options)
{
	const char *patterns[] = {"a*", NULL};
	ms_streamer_options o;

	ms_streamer_options_init(&o);
	o.version = 0;
	assert_rejected(&o, "version");
	o.version = MS_STREAMER_OPTIONS_VERSION + 1;
	assert_rejected(&o, "version");

	ms_streamer_options_init(&o);
	o.concurrency = 257;
	assert_rejected(&o, "concurrency");
	o.concurrency = 256;
	assert_accepted(&o);

	ms_streamer_options_init(&o);
	o.memory_limit = -2;
	assert_rejected(&o, "memory limit");
	o.memory_limit = INT64_MIN;
	assert_rejected(&o, "memory limit");

	ms_streamer_options_init(&o);
	o.chunk_size = 64 * 1024 - 1;
	assert_rejected(&o, "chunk size");
	o.chunk_size = 4096;
	assert_rejected(&o, "chunk size");
	o.chunk_size = (1u << 30) + 1;
	assert_rejected(&o, "chunk size");
	o.chunk_size = SIZE_MAX;
	assert_rejected(&o, "chunk size");
	o.chunk_size = 64 * 1024;
	assert_accepted(&o);
	o.chunk_size = 1u << 30;
	assert_accepted(&o);

	ms_streamer_options_init(&o);
	o.direct_io = (ms_direct_io)3;
	assert_rejected(&o, "direct I/O");
	o.direct_io = (ms_direct_io)-1;
	assert_rejected(&o, "direct I/O");

	ms_streamer_options_init(&o);
	o.select_count = 1;
	assert_rejected(&o, "select");
	o.select = patterns;
	o.select_count = 2;
	assert_rejected(&o, "select pattern 1");
	o.select_count = 1;
	assert_accepted(&o);
}

Test(streamer, new_with_null_options_takes_defaults)
{
	ms_streamer *s = NULL;

	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_not_null(s);
	cr_assert_eq(ms_streamer_file_count(s), 0);
	cr_assert_eq(ms_streamer_tensor_count(s), 0);
	ms_streamer_free(s);
	cr_assert_eq(ms_streamer_new(NULL, NULL), MS_EINVAL);
}

Test(streamer, select_patterns_are_copied)
{
	char pattern[32] = "lm_head.*";
	const char *patterns[] = {pattern};
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	stgen_spec spec = small_spec(3);
	char path[4096];
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int rc, count = 0;

	write_model(path, sizeof(path), "sel.safetensors", &spec);
	opts.select = patterns;
	opts.select_count = 1;
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	/* The caller may reuse its strings at once. */
	snprintf(pattern, sizeof(pattern), "no-such-tensor");
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		cr_assert(strncmp(t->name, "lm_head.", 8) == 0, "%s", t->name);
		ms_tensor_release(s, t);
		count++;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(count, 1, "stgen writes one lm_head tensor");
	ms_streamer_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Options from the environment                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Options with every field away from its default, to see what the environment changed. */
static ms_streamer_options custom_options(void)
{
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;

	o.concurrency = 3;
	o.memory_limit = 12345;
	o.chunk_size = 1 << 20;
	o.direct_io = MS_DIRECT_IO_OFF;
	return o;
}

Test(streamer, env_unset_variables_change_nothing)
{
	ms_streamer_options o = custom_options(), want = custom_options();

	env_clear();
	cr_assert_eq(ms_streamer_options_from_env(&o), 0);
	assert_options_equal(&o, &want);
}

Test(streamer, env_runai_variables_are_honoured)
{
	ms_streamer_options o = custom_options();

	env_clear();
	setenv("RUNAI_STREAMER_CONCURRENCY", "7", 1);
	setenv("RUNAI_STREAMER_CHUNK_BYTESIZE", "131072", 1);
	setenv("RUNAI_STREAMER_MEMORY_LIMIT", "-1", 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), 0, "%s", ms_error_last()->message);
	cr_assert_eq(o.concurrency, 7);
	cr_assert_eq(o.chunk_size, 131072);
	cr_assert_eq(o.memory_limit, MS_MEMORY_UNLIMITED);
	cr_assert_eq(o.direct_io, MS_DIRECT_IO_OFF, "untouched");

	setenv("RUNAI_STREAMER_MEMORY_LIMIT", "0", 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), 0);
	cr_assert_eq(o.memory_limit, MS_MEMORY_MINIMUM);

	setenv("RUNAI_STREAMER_MEMORY_LIMIT", "5368709120", 1); /* 5 GiB: past 32 bits */
	cr_assert_eq(ms_streamer_options_from_env(&o), 0);
	cr_assert_eq(o.memory_limit, 5368709120LL);

	/* The result is accepted by ms_streamer_new(). */
	assert_accepted(&o);
}

Test(streamer, env_modelstream_variables_win)
{
	ms_streamer_options o = custom_options();

	env_clear();
	setenv("RUNAI_STREAMER_CONCURRENCY", "7", 1);
	setenv("MODELSTREAM_CONCURRENCY", "9", 1);
	setenv("RUNAI_STREAMER_MEMORY_LIMIT", "-1", 1);
	setenv("MODELSTREAM_MEMORY_LIMIT", "1048576", 1);
	setenv("RUNAI_STREAMER_CHUNK_BYTESIZE", "131072", 1);
	setenv("MODELSTREAM_CHUNK_SIZE", "262144", 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), 0, "%s", ms_error_last()->message);
	cr_assert_eq(o.concurrency, 9);
	cr_assert_eq(o.memory_limit, 1048576);
	cr_assert_eq(o.chunk_size, 262144);

	/* Each of ours alone works too. */
	env_clear();
	o = custom_options();
	setenv("MODELSTREAM_MEMORY_LIMIT", "0", 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), 0);
	cr_assert_eq(o.memory_limit, 0);
	cr_assert_eq(o.concurrency, 3);
}

/* Sets `name` to `value` (the only variable set) and checks that from_env refuses it. */
static void assert_env_rejected(const char *name, const char *value)
{
	ms_streamer_options o = custom_options(), want = custom_options();

	env_clear();
	setenv(name, value, 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), MS_EINVAL, "%s='%s' accepted", name, value);
	cr_assert_eq(ms_error_last()->code, MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, name) != NULL, "%s", ms_error_last()->message);
	if (value[0] != '\0')
		cr_assert(strstr(ms_error_last()->message, value) != NULL, "%s",
		          ms_error_last()->message);
	cr_assert(strchr(ms_error_last()->message, '\n') == NULL);
	assert_options_equal(&o, &want);
}

Test(streamer, env_garbage_is_rejected_and_changes_nothing)
{
	static const char *const garbage[] = {
	    "12abc", "", "abc", "1.5", "0x10", "12 ", "99999999999999999999999"};

	env_clear();
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		for (size_t j = 0; j < sizeof(garbage) / sizeof(garbage[0]); j++)
			assert_env_rejected(env_names[i], garbage[j]);

	/* Numbers out of range. */
	assert_env_rejected("RUNAI_STREAMER_CONCURRENCY", "-5");
	assert_env_rejected("RUNAI_STREAMER_CONCURRENCY", "0");
	assert_env_rejected("RUNAI_STREAMER_CONCURRENCY", "257");
	assert_env_rejected("MODELSTREAM_CONCURRENCY", "4294967297"); /* 2^32 + 1 */
	assert_env_rejected("RUNAI_STREAMER_MEMORY_LIMIT", "-2");
	assert_env_rejected("MODELSTREAM_MEMORY_LIMIT", "-9223372036854775808");
	assert_env_rejected("RUNAI_STREAMER_CHUNK_BYTESIZE", "1024");
	assert_env_rejected("RUNAI_STREAMER_CHUNK_BYTESIZE", "0");
	assert_env_rejected("MODELSTREAM_CHUNK_SIZE", "2147483648");
}

Test(streamer, env_one_bad_variable_leaves_the_good_ones_unapplied)
{
	ms_streamer_options o = custom_options(), want = custom_options();

	env_clear();
	setenv("RUNAI_STREAMER_CONCURRENCY", "5", 1);
	setenv("RUNAI_STREAMER_CHUNK_BYTESIZE", "131072", 1);
	setenv("MODELSTREAM_MEMORY_LIMIT", "lots", 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "MODELSTREAM_MEMORY_LIMIT=lots") != NULL, "%s",
	          ms_error_last()->message);
	assert_options_equal(&o, &want);

	/* A bad Run:ai value is an error even when ours would override it. */
	env_clear();
	setenv("RUNAI_STREAMER_CONCURRENCY", "many", 1);
	setenv("MODELSTREAM_CONCURRENCY", "4", 1);
	cr_assert_eq(ms_streamer_options_from_env(&o), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "RUNAI_STREAMER_CONCURRENCY") != NULL);
	assert_options_equal(&o, &want);
}

/* ---------------------------------------------------------------------------------------- */
/* Files, metadata and the tensor table                                                       */
/* ---------------------------------------------------------------------------------------- */

Test(streamer, file_info_describes_each_file)
{
	stgen_spec a = small_spec(10), b = small_spec(11);
	char path_a[4096], path_b[4096];
	uint64_t data_a, data_b;
	ms_streamer *s = NULL;
	ms_file_info info = MS_FILE_INFO_INIT;
	struct stat st;
	stgen_tensor *plan = NULL;
	size_t count_a = 0, count_b = 0;

	b.small_count = 7;
	b.metadata = 0;
	data_a = write_model(path_a, sizeof(path_a), "a.safetensors", &a);
	data_b = write_model(path_b, sizeof(path_b), "b.safetensors", &b);
	cr_assert_eq(stgen_plan(&plan, &count_a, &a), 0);
	free(plan);
	cr_assert_eq(stgen_plan(&plan, &count_b, &b), 0);
	free(plan);

	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_file_count(s), 0);
	cr_assert_eq(ms_streamer_file_info(&info, s, 0), MS_EINVAL);
	cr_assert_eq(ms_streamer_add(s, path_a), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_add(s, path_b), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_count(s), 2);

	cr_assert_eq(ms_streamer_file_info(&info, s, 0), 0);
	cr_assert_str_eq(info.path, path_a);
	cr_assert_eq(stat(path_a, &st), 0);
	cr_assert_eq(info.size, (uint64_t)st.st_size);
	cr_assert_eq(info.header_size, data_a - 8);
	cr_assert_eq(info.tensor_count, count_a);
	cr_assert_eq(info.metadata_count, 4);
	cr_assert(info.direct_io == 0 || info.direct_io == 1);

	cr_assert_eq(ms_streamer_file_info(&info, s, 1), 0);
	cr_assert_str_eq(info.path, path_b);
	cr_assert_eq(stat(path_b, &st), 0);
	cr_assert_eq(info.size, (uint64_t)st.st_size);
	cr_assert_eq(info.header_size, data_b - 8);
	cr_assert_eq(info.tensor_count, count_b);
	cr_assert_eq(info.metadata_count, 0);

	cr_assert_eq(ms_streamer_file_info(&info, s, 2), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "2") != NULL);
	cr_assert_eq(ms_streamer_file_info(&info, s, SIZE_MAX), MS_EINVAL);
	cr_assert_eq(ms_streamer_file_info(NULL, s, 0), MS_EINVAL);
	cr_assert_eq(ms_streamer_tensor_count(s), count_a + count_b);
	ms_streamer_free(s);
}

/* stgen's __metadata__, decoded: the order it writes the keys in, with every escape. */
static void check_metadata(const ms_streamer *s, size_t file, uint64_t seed)
{
	char seed_text[32];
	const char *keys[] = {"format", "generator", "seed", "note"};
	const char *values[] = {"pt", "stgen", seed_text,
	                        "quote \" backslash \\ slash / tab \t newline \n e-acute "
	                        "\xc3\xa9 snowman \xe2\x98\x83"};
	const char *key, *value;

	snprintf(seed_text, sizeof(seed_text), "%llu", (unsigned long long)seed);
	for (size_t i = 0; i < 4; i++) {
		key = value = NULL;
		cr_assert_eq(ms_streamer_metadata_at(&key, &value, s, file, i), 0, "%s",
		             ms_error_last()->message);
		cr_assert_str_eq(key, keys[i], "entry %zu", i);
		cr_assert_str_eq(value, values[i], "entry %zu", i);
		value = NULL;
		cr_assert_eq(ms_streamer_metadata_get(&value, s, file, keys[i]), 0);
		cr_assert_str_eq(value, values[i]);
	}
	cr_assert_eq(ms_streamer_metadata_at(&key, &value, s, file, 4), MS_ENOTFOUND);
	cr_assert_eq(ms_streamer_metadata_at(&key, &value, s, file, SIZE_MAX), MS_ENOTFOUND);
}

Test(streamer, metadata_in_header_order)
{
	stgen_spec spec = small_spec(20);
	char path[4096];
	ms_streamer *s = NULL;
	const char *key, *value;

	write_model(path, sizeof(path), "m1.safetensors", &spec);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	check_metadata(s, 0, 20);

	cr_assert_eq(ms_streamer_metadata_get(&value, s, 0, "missing"), MS_ENOTFOUND);
	cr_assert(strstr(ms_error_last()->message, "missing") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, path) != NULL, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_metadata_get(&value, s, 0, "Format"), MS_ENOTFOUND,
	             "keys are case-sensitive");
	cr_assert_eq(ms_streamer_metadata_get(&value, s, 1, "format"), MS_EINVAL);
	cr_assert_eq(ms_streamer_metadata_at(&key, &value, s, 1, 0), MS_EINVAL);
	cr_assert_eq(ms_streamer_metadata_get(&value, s, 0, NULL), MS_EINVAL);
	cr_assert_eq(ms_streamer_metadata_get(NULL, s, 0, "format"), MS_EINVAL);
	cr_assert_eq(ms_streamer_metadata_at(NULL, &value, s, 0, 0), MS_EINVAL);
	ms_streamer_free(s);

	/* Metadata in the middle of a shuffled header keeps its own order. */
	spec.seed = 21;
	spec.json_order = STGEN_JSON_SHUFFLED;
	write_model(path, sizeof(path), "m2.safetensors", &spec);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
	check_metadata(s, 0, 21);
	ms_streamer_free(s);
}

Test(streamer, metadata_of_a_file_without_any)
{
	stgen_spec spec = small_spec(22);
	char path[4096];
	ms_streamer *s = NULL;
	const char *key, *value;

	spec.metadata = 0;
	write_model(path, sizeof(path), "nometa.safetensors", &spec);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0);
	cr_assert_eq(ms_streamer_metadata_at(&key, &value, s, 0, 0), MS_ENOTFOUND);
	cr_assert_eq(ms_streamer_metadata_get(&value, s, 0, "format"), MS_ENOTFOUND);
	ms_streamer_free(s);
}

/* Checks the tensor table of `s` from `first` on against stgen's plan of `spec`, which is
 * in data-offset order whatever order the JSON lists the tensors in. */
static void check_table(const ms_streamer *s, size_t first, size_t file_index,
                        const stgen_spec *spec, uint64_t data_start)
{
	stgen_tensor *want = NULL;
	size_t count = 0;
	ms_tensor t = MS_TENSOR_INIT;

	cr_assert_eq(stgen_plan(&want, &count, spec), 0);
	for (size_t i = 0; i < count; i++) {
		memset(&t, 0x5a, sizeof(t));
		cr_assert_eq(ms_streamer_tensor_at(&t, s, first + i), 0);
		cr_assert_str_eq(t.name, want[i].name, "tensor %zu", first + i);
		cr_assert_null(t.data, "tensor_at never gives data");
		cr_assert_eq(t.size, want[i].end - want[i].begin, "%s", t.name);
		cr_assert_eq(t.file_index, file_index);
		cr_assert_eq(t.file_offset, data_start + want[i].begin, "%s", t.name);
		cr_assert_str_eq(ms_dtype_name(t.dtype), want[i].dtype, "%s", t.name);
		cr_assert_eq(t.ndim, want[i].ndim);
		for (size_t d = 0; d < t.ndim; d++)
			cr_assert_eq((uint64_t)t.shape[d], want[i].shape[d]);
	}
	free(want);
}

Test(streamer, tensor_table_is_in_file_order)
{
	static const stgen_json_order orders[] = {STGEN_JSON_FILE_ORDER, STGEN_JSON_SORTED,
	                                          STGEN_JSON_SHUFFLED};
	char path[4096];

	for (size_t o = 0; o < 3; o++) {
		stgen_spec spec = small_spec(30 + o);
		ms_streamer *s = NULL;
		uint64_t data_start;
		ms_tensor t = MS_TENSOR_INIT;

		spec.small_count = 200;
		spec.json_order = orders[o];
		data_start = write_model(path, sizeof(path), "order.safetensors", &spec);
		cr_assert_eq(ms_streamer_new(&s, NULL), 0);
		cr_assert_eq(ms_streamer_add(s, path), 0, "%s", ms_error_last()->message);
		cr_assert_eq(ms_streamer_tensor_count(s), 202);
		check_table(s, 0, 0, &spec, data_start);
		cr_assert_eq(ms_streamer_tensor_at(&t, s, 202), MS_EINVAL);
		cr_assert_eq(ms_streamer_tensor_at(NULL, s, 0), MS_EINVAL);
		ms_streamer_free(s);
	}
}

Test(streamer, tensor_table_spans_files)
{
	stgen_spec a = small_spec(40), b = small_spec(41);
	char path_a[4096], path_b[4096];
	const char *paths[2] = {path_a, path_b};
	uint64_t data_a, data_b;
	ms_streamer *s = NULL;

	a.json_order = STGEN_JSON_SHUFFLED;
	b.json_order = STGEN_JSON_SORTED;
	b.small_count = 13;
	data_a = write_model(path_a, sizeof(path_a), "ta.safetensors", &a);
	data_b = write_model(path_b, sizeof(path_b), "tb.safetensors", &b);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add_many(s, paths, 2), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_tensor_count(s), 42 + 15);
	check_table(s, 0, 0, &a, data_a);
	check_table(s, 42, 1, &b, data_b);
	ms_streamer_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Files that cannot be added                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Streams every tensor of the streamer's files; returns how many. */
static size_t stream_all(ms_streamer *s)
{
	const ms_tensor *t;
	size_t count = 0;
	int rc;

	while ((rc = ms_streamer_next(&t, s)) == 0) {
		cr_assert_not_null(t->data);
		ms_tensor_release(s, t);
		count++;
	}
	cr_assert_eq(rc, MS_ITER_END, "rc %d: %s", rc, ms_error_last()->message);
	return count;
}

/* Checks that a failed add left the streamer as it was. */
static void assert_unchanged(const ms_streamer *s, size_t files, size_t tensors)
{
	cr_assert_eq(ms_streamer_file_count(s), files);
	cr_assert_eq(ms_streamer_tensor_count(s), tensors);
}

Test(streamer, add_failures_leave_the_streamer_usable)
{
	stgen_spec spec = small_spec(50);
	char good[4096], missing[4096], empty[4096], garbage[4096], dir[4096];
	ms_streamer *s = NULL;
	ms_file_info info = MS_FILE_INFO_INIT;
	int rc;

	write_model(good, sizeof(good), "good.safetensors", &spec);
	tu_path(missing, sizeof(missing), "missing.safetensors");
	tu_path(empty, sizeof(empty), "empty.safetensors");
	tu_write_file(empty, "", 0);
	tu_path(garbage, sizeof(garbage), "garbage.safetensors");
	tu_write_file(garbage, "this is not a safetensors file, not at all", 42);
	tu_path(dir, sizeof(dir), "a-directory.safetensors");
	cr_assert_eq(mkdir(dir, 0755), 0);

	cr_assert_eq(ms_streamer_new(&s, NULL), 0);

	cr_assert_eq(ms_streamer_add(s, missing), MS_ENOTFOUND);
	cr_assert_eq(ms_error_last()->code, MS_ENOTFOUND);
	cr_assert(strstr(ms_error_last()->message, missing) != NULL, "%s",
	          ms_error_last()->message);
	assert_unchanged(s, 0, 0);

	rc = ms_streamer_add(s, dir);
	cr_assert_lt(rc, 0);
	cr_assert(strstr(ms_error_last()->message, dir) != NULL, "%s", ms_error_last()->message);
	assert_unchanged(s, 0, 0);

	cr_assert_eq(ms_streamer_add(s, empty), MS_EFORMAT);
	cr_assert(strstr(ms_error_last()->message, empty) != NULL, "%s", ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, "too short") != NULL, "%s",
	          ms_error_last()->message);
	assert_unchanged(s, 0, 0);

	cr_assert_eq(ms_streamer_add(s, garbage), MS_EFORMAT);
	cr_assert(strstr(ms_error_last()->message, garbage) != NULL, "%s",
	          ms_error_last()->message);
	assert_unchanged(s, 0, 0);

	cr_assert_eq(ms_streamer_add(s, NULL), MS_EINVAL);
	cr_assert_eq(ms_streamer_add(NULL, good), MS_EINVAL);

	/* A good file after all that: added, and streamed in full. */
	cr_assert_eq(ms_streamer_add(s, good), 0, "%s", ms_error_last()->message);
	assert_unchanged(s, 1, 42);
	cr_assert_eq(ms_streamer_file_info(&info, s, 0), 0);
	cr_assert_str_eq(info.path, good);

	/* A failure between two good files changes nothing either. */
	cr_assert_eq(ms_streamer_add(s, missing), MS_ENOTFOUND);
	assert_unchanged(s, 1, 42);
	cr_assert_eq(ms_streamer_add(s, good), 0);
	assert_unchanged(s, 2, 84);
	cr_assert_eq(stream_all(s), 84);

	/* Once streaming has started, no more files. */
	cr_assert_eq(ms_streamer_add(s, good), MS_ESTATE);
	cr_assert(strstr(ms_error_last()->message, good) != NULL);
	assert_unchanged(s, 2, 84);
	ms_streamer_free(s);
}

Test(streamer, add_many_stops_at_the_first_failure)
{
	stgen_spec spec = small_spec(51);
	char good[4096], missing[4096];
	const char *paths[3] = {good, missing, good};
	ms_streamer *s = NULL;

	write_model(good, sizeof(good), "good.safetensors", &spec);
	tu_path(missing, sizeof(missing), "missing.safetensors");
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add_many(s, paths, 3), MS_ENOTFOUND);
	cr_assert(strstr(ms_error_last()->message, missing) != NULL);
	assert_unchanged(s, 1, 42);
	cr_assert_eq(ms_streamer_add_many(s, NULL, 1), MS_EINVAL);
	cr_assert_eq(ms_streamer_add_many(s, NULL, 0), 0);
	cr_assert_eq(stream_all(s), 42);
	ms_streamer_free(s);
}

Test(streamer, add_unreadable_file_is_access_denied)
{
	stgen_spec spec = small_spec(52);
	char path[4096];
	ms_streamer *s = NULL;

	if (geteuid() == 0)
		cr_skip_test("root reads files whatever their mode");
	write_model(path, sizeof(path), "secret.safetensors", &spec);
	cr_assert_eq(chmod(path, 0), 0);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), MS_EACCES);
	cr_assert(strstr(ms_error_last()->message, path) != NULL, "%s", ms_error_last()->message);
	assert_unchanged(s, 0, 0);
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0);
	cr_assert_eq(stream_all(s), 42);
	ms_streamer_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Errors, versions, dtypes, NULL-safety                                                      */
/* ---------------------------------------------------------------------------------------- */

Test(streamer, strerror_is_distinct_for_every_code)
{
	static const int codes[] = {
	    MS_OK,     MS_ERROR,        MS_ENOMEM, MS_EINVAL,    MS_ENOTFOUND,    MS_EACCES,
	    MS_EIO,    MS_EFORMAT,      MS_ELIMIT, MS_ECANCELED, MS_EUNSUPPORTED, MS_ESTATE,
	    MS_ENOSPC, MS_EUNAVAILABLE, MS_EBUSY,  MS_ENODEVICE, MS_ITER_END};
	size_t n = sizeof(codes) / sizeof(codes[0]);
	const char *unknown = ms_strerror(-16);

	cr_assert_not_null(unknown);
	cr_assert_str_eq(ms_strerror(12345), unknown);
	cr_assert_str_eq(ms_strerror(-30), unknown);
	for (size_t i = 0; i < n; i++) {
		const char *text = ms_strerror(codes[i]);

		cr_assert_not_null(text, "code %d", codes[i]);
		cr_assert_gt(strlen(text), 0, "code %d", codes[i]);
		cr_assert(strchr(text, '\n') == NULL);
		cr_assert_str_neq(text, unknown, "code %d reads as unknown", codes[i]);
		for (size_t j = 0; j < i; j++)
			cr_assert_str_neq(text, ms_strerror(codes[j]), "codes %d and %d", codes[i],
			                  codes[j]);
	}
}

typedef struct {
	int code_at_start;
	char message_at_start[64];
	int own_code;
} thread_report;

static void *error_thread(void *arg)
{
	thread_report *r = arg;
	ms_streamer *s = NULL;

	r->code_at_start = ms_error_last()->code;
	snprintf(r->message_at_start, sizeof(r->message_at_start), "%s", ms_error_last()->message);
	/* An error of this thread's own. */
	ms_streamer_add(s, NULL);
	r->own_code = ms_error_last()->code;
	return NULL;
}

Test(streamer, last_error_is_per_thread)
{
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	thread_report r = {0};
	pthread_t thread;

	cr_assert_eq(ms_error_last()->code, MS_OK, "a fresh thread starts without an error");
	cr_assert_str_eq(ms_error_last()->message, "no error");

	o.concurrency = 1000;
	cr_assert_eq(ms_streamer_new(&s, &o), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "concurrency") != NULL);

	cr_assert_eq(pthread_create(&thread, NULL, error_thread, &r), 0);
	pthread_join(thread, NULL);
	cr_assert_eq(r.code_at_start, MS_OK, "this thread's error leaked into another");
	cr_assert_str_eq(r.message_at_start, "no error");
	cr_assert_eq(r.own_code, MS_EINVAL);

	/* This thread's error is as it was. */
	cr_assert_eq(ms_error_last()->code, MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "concurrency") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert_eq(ms_error_last(), ms_error_last(), "a stable pointer");
}

Test(streamer, version_and_dtypes)
{
	cr_assert_str_eq(ms_version(), MS_VERSION_STRING);
	{
		char expected[32];

		snprintf(expected, sizeof(expected), "%d.%d.%d", MS_VERSION_MAJOR, MS_VERSION_MINOR,
		         MS_VERSION_PATCH);
		cr_assert_str_eq(MS_VERSION_STRING, expected);
	}
	for (int d = 0; d < MS_DTYPE_COUNT_; d++) {
		cr_assert_not_null(ms_dtype_name((ms_dtype)d), "dtype %d", d);
		cr_assert_gt(ms_dtype_bits((ms_dtype)d), 0, "dtype %d", d);
		cr_assert_eq(ms_dtype_bits((ms_dtype)d),
		             stgen_dtype_bits(ms_dtype_name((ms_dtype)d)), "dtype %d", d);
	}
	cr_assert_str_eq(ms_dtype_name(MS_DTYPE_BF16), "BF16");
	cr_assert_eq(ms_dtype_bits(MS_DTYPE_F4), 4);
	cr_assert_eq(ms_dtype_bits(MS_DTYPE_F6_E3M2), 6);
	cr_assert_null(ms_dtype_name(MS_DTYPE_COUNT_));
	cr_assert_null(ms_dtype_name((ms_dtype)-1));
	cr_assert_null(ms_dtype_name((ms_dtype)1000));
	cr_assert_eq(ms_dtype_bits(MS_DTYPE_COUNT_), 0);
	cr_assert_eq(ms_dtype_bits((ms_dtype)-1), 0);
	cr_assert_eq(ms_dtype_bits((ms_dtype)1000), 0);
}

Test(streamer, null_arguments_are_safe)
{
	ms_streamer *s = NULL;
	const ms_tensor *t = (const ms_tensor *)&s;
	ms_tensor tensor = MS_TENSOR_INIT;
	ms_file_info info = MS_FILE_INFO_INIT;
	ms_stats st = MS_STATS_INIT;
	const char *key, *value;
	char buf[8];

	ms_streamer_free(NULL);
	ms_streamer_cancel(NULL);
	cr_assert_eq(ms_streamer_file_count(NULL), 0);
	cr_assert_eq(ms_streamer_tensor_count(NULL), 0);
	cr_assert_eq(ms_streamer_next(&t, NULL), MS_EINVAL);
	cr_assert_eq(ms_streamer_file_info(&info, NULL, 0), MS_EINVAL);
	cr_assert_eq(ms_streamer_tensor_at(&tensor, NULL, 0), MS_EINVAL);
	cr_assert_eq(ms_streamer_metadata_at(&key, &value, NULL, 0, 0), MS_EINVAL);
	cr_assert_eq(ms_streamer_metadata_get(&value, NULL, 0, "k"), MS_EINVAL);
	cr_assert_eq(ms_tensor_release(NULL, NULL), MS_EINVAL);
	cr_assert_eq(ms_tensor_copy(buf, sizeof(buf), NULL), MS_EINVAL);
	cr_assert_eq(ms_streamer_stats(&st, NULL), MS_EINVAL);

	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_next(NULL, s), MS_EINVAL);
	cr_assert_eq(ms_error_last()->code, MS_EINVAL);
	/* A streamer with no files streams nothing. */
	cr_assert_eq(ms_streamer_next(&t, s), MS_ITER_END);
	cr_assert_null(t);
	cr_assert_eq(ms_tensor_release(s, NULL), MS_EINVAL);
	cr_assert_eq(ms_streamer_stats(&st, s), 0);
	cr_assert_eq(st.tensors_total, 0);
	/* What the streamer resolved, as it uses it. */
	cr_assert_eq(st.struct_size, sizeof(ms_stats));
	cr_assert_eq(st.chunk_size, 8u << 20);
	cr_assert_eq(st.concurrency, 16);
	cr_assert_eq(st.delivery, MS_DELIVER_COPY);
	/* A struct without its size is refused with a line that says what to do, not
	 * overrun: a caller built against this header always sets it with MS_STATS_INIT. */
	{
		ms_stats zero = {0};

		cr_assert_eq(ms_streamer_stats(&zero, s), MS_EINVAL);
		cr_assert_str_eq(ms_error_last()->message,
		                 "ms_streamer_stats: struct_size is 0; initialise the struct with "
		                 "its _INIT macro");
	}
	ms_streamer_free(s);
}

/*
 * The header promises that *out is NULL after a failure. ms_streamer_next() returns
 * before it resets *out when the streamer is NULL. Disabled until streamer.c resets *out
 * before its argument check.
 */
Test(streamer, next_resets_out_on_a_null_streamer)
{
	const ms_tensor *t = (const ms_tensor *)&t;

	cr_assert_eq(ms_streamer_next(&t, NULL), MS_EINVAL);
	cr_assert_null(t, "*out is left dangling when the streamer is NULL");
}

/* ---------------------------------------------------------------------------------------- */
/* Allocation failures                                                                        */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	const char *paths[2];
	const stgen_spec *specs[2];
	const uint64_t *data_starts;
	size_t tensors; /* in both files */
} torture_case;

/* The whole public path: new, add two files, stream every tensor in a ring of the
 * smallest size, free. Returns 0 or the first error; checks every byte it streams. */
static int run_everything(const torture_case *c)
{
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	unsigned char *expected = NULL;
	size_t delivered = 0;
	int rc;

	opts.memory_limit = MS_MEMORY_MINIMUM;
	opts.concurrency = 2;
	opts.chunk_size = 64 * 1024;
	if ((rc = ms_streamer_new(&s, &opts)) < 0)
		goto done;
	cr_assert_not_null(s);
	for (int i = 0; i < 2; i++)
		if ((rc = ms_streamer_add(s, c->paths[i])) < 0)
			goto done;
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		uint64_t data_offset = t->file_offset - c->data_starts[t->file_index];

		expected = realloc(expected, t->size ? t->size : 1);
		cr_assert_not_null(expected);
		stgen_fill(expected, t->size, c->specs[t->file_index]->seed, data_offset);
		cr_assert(memcmp(expected, t->data, t->size) == 0, "%s: bytes differ", t->name);
		cr_assert_eq(ms_tensor_release(s, t), 0);
		delivered++;
	}
	if (rc == MS_ITER_END) {
		rc = 0;
		cr_assert_eq(delivered, c->tensors);
	}
done:
	ms_streamer_free(s);
	free(expected);
	return rc;
}

Test(streamer, every_allocation_failure_is_clean)
{
	stgen_spec a = small_spec(60), b = small_spec(61);
	char path_a[4096], path_b[4096];
	uint64_t data_starts[2];
	torture_case c;
	long baseline, n;
	int rc = -1;
	size_t failures = 0, by_code[32] = {0};

	a.small_count = 6;
	a.json_order = STGEN_JSON_SHUFFLED;
	b.small_count = 4;
	b.metadata = 0;
	data_starts[0] = write_model(path_a, sizeof(path_a), "ta.safetensors", &a);
	data_starts[1] = write_model(path_b, sizeof(path_b), "tb.safetensors", &b);
	c = (torture_case){.paths = {path_a, path_b},
	                   .specs = {&a, &b},
	                   .data_starts = data_starts,
	                   .tensors = 8 + 6};

	/* Once without failures: it works, and it tells how many allocations to walk. */
	baseline = ms__alloc_count();
	cr_assert_eq(run_everything(&c), 0, "%s", ms_error_last()->message);
	baseline = ms__alloc_count() - baseline;
	cr_assert_gt(baseline, 10);

	for (n = 1; n <= baseline + 1000; n++) {
		long before = ms__alloc_count();

		ms__alloc_fail_at(n, 0);
		rc = run_everything(&c);
		ms__alloc_fail_at(0, 0);
		if (rc == 0) {
			/* Success is fine when the failure hit a path that copes; when it was
			 * never reached, every allocation has been failed once. */
			if (ms__alloc_count() - before < n)
				break;
			continue;
		}
		failures++;
		cr_assert_lt(rc, 0);
		cr_assert_neq(rc, MS_ITER_END);
		by_code[-rc < 32 ? -rc : 0]++;
		cr_assert(strlen(ms_error_last()->message) > 0);
		cr_assert(strchr(ms_error_last()->message, '\n') == NULL);
	}
	cr_assert_eq(rc, 0, "the walk ended at %ld without a clean run", n);
	cr_assert_geq(n, baseline, "walked %ld of %ld allocations", n, baseline);
	cr_assert_gt(failures, 0);
	cr_assert_eq(tu_leaks_found(), 0,
	             "a path that failed an allocation leaked (see the report above)");
	cr_assert_eq(failures, by_code[-MS_ENOMEM] + by_code[-MS_EFORMAT],
	             "a failed allocation is reported as ENOMEM (or, from cJSON, EFORMAT)");
	cr_log_info("allocation walk: %ld allocations, %zu runs failed (ENOMEM %zu, EFORMAT %zu, "
	            "other %zu)",
	            baseline, failures, by_code[-MS_ENOMEM], by_code[-MS_EFORMAT],
	            failures - by_code[-MS_ENOMEM] - by_code[-MS_EFORMAT]);
}

/*
 * cJSON returns NULL both for bad JSON and when an allocation fails, and the parser
 * reports both as MS_EFORMAT ("header is not valid JSON"): out of memory reads as a
 * broken file, and the CLI exits 3 ("bad input") instead of 1. Disabled until
 * safetensors.c can tell the two apart (for instance, by a failure flag set by the
 * allocation hooks that alloc.c installs for cJSON).
 */
Test(streamer, allocation_failure_while_parsing_is_enomem)
{
	stgen_spec spec = small_spec(62);
	char path[4096];
	long n;
	int rc = -1;

	write_model(path, sizeof(path), "p.safetensors", &spec);
	for (n = 1; n < 100000; n++) {
		ms_streamer *s = NULL;
		long before;

		cr_assert_eq(ms_streamer_new(&s, NULL), 0);
		before = ms__alloc_count();
		ms__alloc_fail_at(n, 0);
		rc = ms_streamer_add(s, path);
		ms__alloc_fail_at(0, 0);
		ms_streamer_free(s);
		if (rc == 0 && ms__alloc_count() - before < n)
			break; /* every allocation of add has failed once */
		if (rc != 0)
			cr_assert_eq(rc, MS_ENOMEM, "allocation %ld of add: rc %d: %s", n, rc,
			             ms_error_last()->message);
	}
	cr_assert_eq(rc, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Model directories                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Streams everything `s` holds into one checksum-like fold of names and bytes. */
static uint64_t fold_all(ms_streamer *s)
{
	const ms_tensor *t;
	uint64_t h = 1469598103934665603ull;
	int rc;

	while ((rc = ms_streamer_next(&t, s)) == 0) {
		for (const char *c = t->name; *c != '\0'; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ull;
		for (size_t i = 0; i < t->size; i++)
			h = (h ^ ((const unsigned char *)t->data)[i]) * 1099511628211ull;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	return h;
}

Test(streamer, a_directory_streams_its_weights_in_name_order)
{
	stgen_spec a = small_spec(71), b = small_spec(72);
	char dir[4096], pa[4096], pb[4096], other[4096];
	ms_streamer *from_dir, *from_files;

	tu_path(dir, sizeof(dir), "model");
	cr_assert_eq(mkdir(dir, 0755), 0);
	/* Written in the opposite order to their names: readdir order must not matter. */
	write_model(pb, sizeof(pb), "model/model-00002-of-00002.safetensors", &b);
	write_model(pa, sizeof(pa), "model/model-00001-of-00002.safetensors", &a);
	tu_path(other, sizeof(other), "model/config.json");
	tu_write_file(other, "{}", 2);
	tu_path(other, sizeof(other), "model/sub");
	cr_assert_eq(mkdir(other, 0755), 0);
	tu_path(other, sizeof(other), "model/.hidden.safetensors");
	tu_write_file(other, "junk", 4);

	cr_assert_eq(ms_streamer_new(&from_dir, NULL), 0);
	cr_assert_eq(ms_streamer_new(&from_files, NULL), 0);
	cr_assert_eq(ms_streamer_add(from_dir, dir), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_add(from_files, pa), 0);
	cr_assert_eq(ms_streamer_add(from_files, pb), 0);
	cr_assert_eq(ms_streamer_file_count(from_dir), 2);
	cr_assert_eq(fold_all(from_dir), fold_all(from_files));
	ms_streamer_free(from_dir);
	ms_streamer_free(from_files);
}

Test(streamer, a_directory_with_a_bad_shard_adds_nothing)
{
	stgen_spec a = small_spec(73), keep = small_spec(74);
	char dir[4096], path[4096], bad[4096];
	ms_streamer *s;

	write_model(path, sizeof(path), "kept.safetensors", &keep);
	tu_path(dir, sizeof(dir), "broken");
	cr_assert_eq(mkdir(dir, 0755), 0);
	write_model(bad, sizeof(bad), "broken/a.safetensors", &a);
	tu_path(bad, sizeof(bad), "broken/b.safetensors");
	tu_write_file(bad, "not safetensors at all", 22);
	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0);
	assert_unchanged(s, 1, ms_streamer_tensor_count(s));
	cr_assert_eq(ms_streamer_add(s, dir), MS_EFORMAT);
	cr_assert(strstr(ms_error_last()->message, "b.safetensors") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert_eq(ms_streamer_file_count(s), 1, "the good shard was taken out again");
	fold_all(s); /* the streamer still works */
	ms_streamer_free(s);
}

Test(streamer, a_directory_under_allocation_failures_fails_cleanly)
{
	stgen_spec a = small_spec(75), b = small_spec(76);
	char dir[4096], path[4096];
	long n;
	int rc = -1;

	tu_path(dir, sizeof(dir), "walk");
	cr_assert_eq(mkdir(dir, 0755), 0);
	write_model(path, sizeof(path), "walk/a.safetensors", &a);
	write_model(path, sizeof(path), "walk/b.safetensors", &b);
	for (n = 1; n < 100000; n++) {
		ms_streamer *s = NULL;
		long before;

		cr_assert_eq(ms_streamer_new(&s, NULL), 0);
		before = ms__alloc_count();
		ms__alloc_fail_at(n, 0);
		rc = ms_streamer_add(s, dir);
		ms__alloc_fail_at(0, 0);
		if (rc != 0)
			cr_assert_eq(ms_streamer_file_count(s), 0,
			             "allocation %ld: half a directory", n);
		ms_streamer_free(s);
		if (rc == 0 && ms__alloc_count() - before < n)
			break;
		if (rc != 0)
			cr_assert(rc == MS_ENOMEM || rc == MS_EFORMAT, "allocation %ld: rc %d: %s",
			          n, rc, ms_error_last()->message);
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(tu_leaks_found(), 0, "a failed allocation leaked (see the report above)");
}

/* ms_streamer_next_timeout on the host path: the same tensors, in order, byte for byte,
 * whatever the timeouts in between; a ring that the caller fills still says MS_ELIMIT. */
Test(streamer, next_with_a_timeout_delivers_the_same_tensors)
{
	char path[4096];
	stgen_spec spec = small_spec(77);
	uint64_t data_start = write_model(path, sizeof(path), "t.safetensors", &spec);
	ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	size_t got = 0;
	int rc;

	cr_assert_eq(ms_streamer_new(&s, NULL), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0);
	while ((rc = ms_streamer_next_timeout(&t, s, 1)) >= 0) {
		if (rc == 1)
			continue;
		for (uint64_t i = 0; i < t->size; i++)
			cr_assert_eq(((const unsigned char *)t->data)[i],
			             stgen_byte(77, t->file_offset - data_start + i));
		got++;
	}
	cr_assert_eq(rc, MS_ITER_END, "%s", ms_error_last()->message);
	cr_assert_eq(got, 42);
	ms_streamer_free(s);
	/* The largest tensor (the ring rounds up to a huge page): holding them all runs out. */
	spec.large_count = 3;
	spec.large_bytes = 3u << 20;
	write_model(path, sizeof(path), "big.safetensors", &spec);
	o.memory_limit = 0;
	cr_assert_eq(ms_streamer_new(&s, &o), 0);
	cr_assert_eq(ms_streamer_add(s, path), 0);
	while ((rc = ms_streamer_next_timeout(&t, s, 1)) >= 0)
		; /* nothing released */
	cr_assert_eq(rc, MS_ELIMIT, "%s", ms_error_last()->message);
	ms_streamer_free(s);
	tu_tmpdir_remove();
}
