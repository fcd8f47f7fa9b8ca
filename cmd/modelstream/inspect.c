/*
 * inspect.c - `modelstream inspect PATH [--json]`: a file's tensor table and metadata,
 * read from its header alone (no tensor data is read).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "modelstream.h"

#include "cli.h"

static const char inspect_usage[] =
    "Usage: modelstream inspect PATH [--json]\n"
    "\n"
    "Reads and validates the header of the safetensors file PATH and prints its tensor\n"
    "table (name, dtype, shape, size, data offsets), a summary by dtype, and its\n"
    "__metadata__. Only the header is read.\n"
    "\n"
    "Options:\n"
    "  --json     print one JSON object: {\"path\", \"size\", \"header_size\", \"metadata\",\n"
    "             \"tensors\": [{\"name\", \"dtype\", \"shape\", \"offsets\", \"size\"}]};\n"
    "             offsets are relative to the data section, as in the file\n"
    "  -h, --help show this help\n"
    "\n";

static void format_shape(char *buf, size_t size, const ms_tensor *t)
{
	size_t used = (size_t)snprintf(buf, size, "[");

	for (size_t d = 0; d < t->ndim && used < size; d++)
		used += (size_t)snprintf(buf + used, size - used, "%s%lld", d ? ", " : "",
		                         (long long)t->shape[d]);
	if (used < size)
		snprintf(buf + used, size - used, "]");
}

static int print_json(const ms_streamer *s, const ms_file_info *info)
{
	cJSON *root = cJSON_CreateObject(), *meta, *tensors;
	uint64_t data_start = 8 + info->header_size;
	char *text = NULL;
	int rc = EXIT_OK;

	if (root == NULL)
		goto oom;
	cJSON_AddStringToObject(root, "path", info->path);
	cJSON_AddNumberToObject(root, "size", (double)info->size);
	cJSON_AddNumberToObject(root, "header_size", (double)info->header_size);
	meta = cJSON_AddObjectToObject(root, "metadata");
	tensors = cJSON_AddArrayToObject(root, "tensors");
	if (meta == NULL || tensors == NULL)
		goto oom;
	for (size_t i = 0; i < info->metadata_count; i++) {
		const char *key, *value;

		if (ms_streamer_metadata_at(&key, &value, s, 0, i) == 0 &&
		    cJSON_AddStringToObject(meta, key, value) == NULL)
			goto oom;
	}
	for (size_t i = 0; i < ms_streamer_tensor_count(s); i++) {
		cJSON *t = cJSON_CreateObject(), *shape, *offsets;
		ms_tensor tensor = MS_TENSOR_INIT;

		if (t == NULL || !cJSON_AddItemToArray(tensors, t))
			goto oom;
		ms_streamer_tensor_at(&tensor, s, i);
		cJSON_AddStringToObject(t, "name", tensor.name);
		cJSON_AddStringToObject(t, "dtype", ms_dtype_name(tensor.dtype));
		shape = cJSON_AddArrayToObject(t, "shape");
		offsets = cJSON_AddArrayToObject(t, "offsets");
		if (shape == NULL || offsets == NULL)
			goto oom;
		for (size_t d = 0; d < tensor.ndim; d++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)tensor.shape[d]));
		cJSON_AddItemToArray(offsets,
		                     cJSON_CreateNumber((double)(tensor.file_offset - data_start)));
		cJSON_AddItemToArray(
		    offsets,
		    cJSON_CreateNumber((double)(tensor.file_offset - data_start + tensor.size)));
		cJSON_AddNumberToObject(t, "size", (double)tensor.size);
	}
	text = cJSON_PrintUnformatted(root);
	if (text == NULL)
		goto oom;
	puts(text);
	goto done;
oom:
	fprintf(stderr, "modelstream: %s: out of memory formatting JSON\n", info->path);
	rc = EXIT_FAILURE_OTHER;
done:
	cJSON_free(text);
	cJSON_Delete(root);
	return rc;
}

/* Prints a string from the file on one line: control characters come out escaped. */
static void print_escaped(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c < 0x20 || c == 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void print_text(const ms_streamer *s, const ms_file_info *info)
{
	uint64_t by_dtype_bytes[MS_DTYPE_COUNT_] = {0}, total = 0;
	size_t by_dtype_count[MS_DTYPE_COUNT_] = {0};
	uint64_t data_start = 8 + info->header_size;
	size_t count = ms_streamer_tensor_count(s);
	char a[32], shape[256], name[1024];

	for (size_t i = 0; i < count; i++) {
		ms_tensor t = MS_TENSOR_INIT;

		ms_streamer_tensor_at(&t, s, i);
		by_dtype_bytes[t.dtype] += t.size;
		by_dtype_count[t.dtype]++;
		total += t.size;
	}
	printf("file:      %s\n", info->path);
	printf("size:      %llu bytes (%s)\n", (unsigned long long)info->size,
	       cli_format_bytes(a, sizeof(a), info->size));
	printf("header:    %llu bytes\n", (unsigned long long)info->header_size);
	printf("tensors:   %zu, %s of data\n", count, cli_format_bytes(a, sizeof(a), total));
	for (int d = 0; d < MS_DTYPE_COUNT_; d++)
		if (by_dtype_count[d] > 0)
			printf("  %-8s %6zu tensors  %s\n", ms_dtype_name((ms_dtype)d),
			       by_dtype_count[d],
			       cli_format_bytes(a, sizeof(a), by_dtype_bytes[d]));
	printf("metadata:  %zu entries\n", info->metadata_count);
	for (size_t i = 0; i < info->metadata_count; i++) {
		const char *key, *value;

		if (ms_streamer_metadata_at(&key, &value, s, 0, i) == 0) {
			fputs("  ", stdout);
			print_escaped(key);
			fputs(": ", stdout);
			print_escaped(value);
			putchar('\n');
		}
	}
	printf("\n%-56s %-8s %-24s %12s  %s\n", "NAME", "DTYPE", "SHAPE", "BYTES", "OFFSETS");
	for (size_t i = 0; i < count; i++) {
		ms_tensor t = MS_TENSOR_INIT;

		ms_streamer_tensor_at(&t, s, i);
		format_shape(shape, sizeof(shape), &t);
		printf("%-56s %-8s %-24s %12llu  [%llu, %llu]\n",
		       cli_escape(name, sizeof(name), t.name), ms_dtype_name(t.dtype), shape,
		       (unsigned long long)t.size, (unsigned long long)(t.file_offset - data_start),
		       (unsigned long long)(t.file_offset - data_start + t.size));
	}
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option options[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	ms_file_info info = MS_FILE_INFO_INIT;
	int json = 0, c, rc;

	optind = 1;
	opterr = 0; /* our own one-line messages instead of getopt's */
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'h':
			fputs(inspect_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return EXIT_OK;
		default:
			return cli_option_error("inspect", optopt, argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("inspect takes exactly one PATH (see 'modelstream inspect "
		                       "--help')");
	/* Only the header is read: no O_DIRECT probing is worth it. */
	opts.direct_io = MS_DIRECT_IO_OFF;
	if ((rc = ms_streamer_new(&s, &opts)) < 0 || (rc = ms_streamer_add(s, argv[optind])) < 0) {
		rc = cli_fail(rc);
		goto done;
	}
	ms_streamer_file_info(&info, s, 0);
	if (json)
		rc = print_json(s, &info);
	else
		print_text(s, &info);
done:
	ms_streamer_free(s);
	return rc;
}
