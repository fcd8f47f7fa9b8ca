/*
 * mkmodel.c - a command that writes a deterministic safetensors file with stgen.
 *
 * Benchmarks and the Python cross-check need model-like files on disk, of sizes chosen on
 * the command line. mkmodel is a thin front end to stgen_write(): it parses options,
 * explains bad ones, and exits 0 on success, 1 when writing fails and 2 on a usage error.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
/* strdup(3) and stat(2) are POSIX; strict -std=c11 hides them without this. */
#define _POSIX_C_SOURCE 200809L
#endif

#include "stgen.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_USAGE 2

/* More than enough for every dtype, each listed once. */
#define MAX_DTYPES 64

static void usage(FILE *to)
{
	fprintf(to,
	        "usage: mkmodel [OPTIONS] OUT\n"
	        "\n"
	        "Writes a safetensors file whose every byte follows from the options, for tests\n"
	        "and benchmarks: small tensors of random dtype and shape, and large tensors of\n"
	        "an exact size spread among them, under realistic transformer names.\n"
	        "\n"
	        "  --seed N              decides every choice and the data content (default 1)\n"
	        "  --small-count N       how many small tensors (default 2000)\n"
	        "  --small-max-bytes B   the largest size of a small tensor (default 64K)\n"
	        "  --large-count N       how many large tensors (default 2)\n"
	        "  --large-bytes B       the exact size of each large tensor (default 64M)\n"
	        "  --metadata            write a __metadata__ map (the default)\n"
	        "  --no-metadata         leave __metadata__ out\n"
	        "  --dtypes LIST         the dtypes to use, comma-separated (default: all of\n"
	        "                        them); a large tensor takes one that divides B exactly\n"
	        "  --shuffle             order the JSON header's entries at random\n"
	        "  --sorted              order the JSON header's entries by name, as many real\n"
	        "                        files do; by default they follow the data offsets\n"
	        "  --help                show this and exit\n"
	        "\n"
	        "Sizes take a suffix K, M or G (powers of 1024). The dtypes are:\n ");
	for (size_t i = 0; i < stgen_all_dtype_count; i++)
		fprintf(to, "%s %s", i > 0 && i % 10 == 0 ? "\n " : "", stgen_all_dtypes[i]);
	fprintf(to, "\n\nExit status: 0 written, 1 writing failed, 2 bad usage.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Explains a usage error on stderr and returns the exit status for it. */
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mkmodel: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'mkmodel --help'.\n");
	return EXIT_USAGE;
}

/* Parses a decimal number with an optional K, M or G suffix; returns 0 or -1. */
static int parse_size(uint64_t *out, const char *s, int allow_suffix)
{
	unsigned long long value;
	unsigned shift = 0;
	char *end;

	/* strtoull accepts a sign and leading blanks, which a size should not have. */
	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	value = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (allow_suffix && *end != '\0' && end[1] == '\0') {
		switch (*end) {
		case 'K':
		case 'k':
			shift = 10;
			break;
		case 'M':
		case 'm':
			shift = 20;
			break;
		case 'G':
		case 'g':
			shift = 30;
			break;
		default:
			return -1;
		}
		end++;
	}
	if (*end != '\0' || value > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)value << shift;
	return 0;
}

/* Splits `list` (modified in place) at commas into `out`; returns the count or -1. */
static int split_dtypes(const char **out, char *list)
{
	int n = 0;

	for (char *item = list;; n++) {
		char *comma = strchr(item, ',');
		if (comma != NULL)
			*comma = '\0';
		if (n == MAX_DTYPES || stgen_dtype_bits(item) == 0)
			return -1;
		out[n] = item;
		if (comma == NULL)
			return n + 1;
		item = comma + 1;
	}
}

int main(int argc, char **argv)
{
	stgen_spec spec = STGEN_SPEC_INIT;
	const char *dtypes[MAX_DTYPES], *out = NULL, *problem;
	char *dtype_list = NULL;
	int rc = EXIT_USAGE, options_done = 0;
	struct stat st;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value = NULL, *eq;
		char name[32];
		uint64_t number;

		if (options_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
			if (out != NULL) {
				rc = usage_error("more than one output file given ('%s')", arg);
				goto done;
			}
			out = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = 1;
			continue;
		}
		/* Options take "--name value" and "--name=value" alike. */
		eq = strchr(arg, '=');
		snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
		if (eq != NULL)
			value = eq + 1;

		if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
			usage(stdout);
			rc = 0;
			goto done;
		}
		if (strcmp(name, "--metadata") == 0 || strcmp(name, "--no-metadata") == 0 ||
		    strcmp(name, "--shuffle") == 0 || strcmp(name, "--sorted") == 0) {
			if (value != NULL) {
				rc = usage_error("option '%s' takes no value", name);
				goto done;
			}
			if (strcmp(name, "--metadata") == 0)
				spec.metadata = 1;
			else if (strcmp(name, "--no-metadata") == 0)
				spec.metadata = 0;
			else if (strcmp(name, "--shuffle") == 0)
				spec.json_order = STGEN_JSON_SHUFFLED;
			else
				spec.json_order = STGEN_JSON_SORTED;
			continue;
		}
		if (strcmp(name, "--seed") != 0 && strcmp(name, "--small-count") != 0 &&
		    strcmp(name, "--small-max-bytes") != 0 && strcmp(name, "--large-count") != 0 &&
		    strcmp(name, "--large-bytes") != 0 && strcmp(name, "--dtypes") != 0) {
			rc = usage_error("unknown option '%s'", arg);
			goto done;
		}
		if (value == NULL) {
			if (i + 1 == argc) {
				rc = usage_error("option '%s' needs a value", name);
				goto done;
			}
			value = argv[++i];
		}

		if (strcmp(name, "--dtypes") == 0) {
			int n;
			free(dtype_list);
			dtype_list = strdup(value);
			if (dtype_list == NULL) {
				fprintf(stderr, "mkmodel: out of memory\n");
				rc = 1;
				goto done;
			}
			n = split_dtypes(dtypes, dtype_list);
			if (n < 0) {
				rc = usage_error("bad --dtypes '%s': give known dtypes separated "
				                 "by commas, such as F16,BF16,F32",
				                 value);
				goto done;
			}
			spec.dtypes = dtypes;
			spec.dtype_count = (size_t)n;
			continue;
		}
		/* Counts and the seed are plain numbers; only byte sizes take suffixes. */
		if (parse_size(&number, value, strstr(name, "bytes") != NULL) != 0 ||
		    (strstr(name, "count") != NULL && number > SIZE_MAX)) {
			rc = usage_error("bad number '%s'", value);
			goto done;
		}
		if (strcmp(name, "--seed") == 0)
			spec.seed = number;
		else if (strcmp(name, "--small-count") == 0)
			spec.small_count = (size_t)number;
		else if (strcmp(name, "--small-max-bytes") == 0)
			spec.small_max_bytes = number;
		else if (strcmp(name, "--large-count") == 0)
			spec.large_count = (size_t)number;
		else
			spec.large_bytes = number;
	}
	if (out == NULL) {
		rc = usage_error("no output file given");
		goto done;
	}
	problem = stgen_spec_problem(&spec);
	if (problem != NULL) {
		rc = usage_error("%s", problem);
		goto done;
	}

	if (stgen_write(out, &spec) != 0) {
		fprintf(stderr, "mkmodel: %s: %s\n", out, strerror(errno));
		rc = 1;
		goto done;
	}
	if (stat(out, &st) == 0)
		printf("%s: %zu tensors, %lld bytes\n", out, spec.small_count + spec.large_count,
		       (long long)st.st_size);
	rc = 0;
done:
	free(dtype_list);
	return rc;
}
