/*
 * storage.c - the object-storage commands: `ls`, `exists`, `push` and `doctor`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "modelstream.h"

#include "cli.h"

static const char ls_usage[] =
    "Usage: modelstream ls URL [--recursive] [--json]\n"
    "\n"
    "Lists the objects under the prefix URL (s3://bucket/dir/, s3://bucket), every page\n"
    "of it, in key order: size, last modified, name. Without --recursive, objects in\n"
    "sub-prefixes show as one 'PRE sub/' line each, as in `aws s3 ls`.\n"
    "\n"
    "Options:\n"
    "  -r, --recursive   every object under the prefix\n"
    "      --json        one JSON array: [{\"name\", \"url\", \"size\", \"etag\",\n"
    "                    \"last_modified\", \"prefix\"}]\n"
    "  -h, --help        show this help\n"
    "\n";

static const char exists_usage[] =
    "Usage: modelstream exists LOCATION\n"
    "\n"
    "Says whether the object, prefix (any object under it) or local path exists: exit 0\n"
    "and 'LOCATION: exists (N bytes)' if it does, exit 4 and 'LOCATION: not found' if not.\n"
    "Without s3:ListBucket permission S3 answers 403 for a missing key: that is exit 5.\n"
    "\n";

static const char push_usage[] =
    "Usage: modelstream push LOCAL URL [OPTIONS]\n"
    "\n"
    "Uploads the file or directory LOCAL. A file goes to the object URL, or to URL + its\n"
    "name when URL ends in '/'. A directory goes, with every file under it (weights,\n"
    "config, tokenizer), to the prefix URL, which must end in '/'. Files larger than a\n"
    "part are sent as parallel multipart uploads; every part is signed with its SHA-256 so\n"
    "the store verifies each byte; a failed upload is aborted and leaves no parts behind.\n"
    "\n"
    "Options:\n"
    "  -c, --concurrency N   parts in flight, 1-64 (default 8)\n"
    "      --part-size B     bytes per part, 5M-5G (default 16M; grown to fit 10000 parts)\n"
    "  -q, --quiet           no line per file\n"
    "  -h, --help            show this help\n"
    "\n";

static const char doctor_usage[] =
    "Usage: modelstream doctor LOCATION\n"
    "\n"
    "Says how LOCATION is reached and why: endpoint, region, addressing style, TLS, CA\n"
    "bundle and the credential source, each with the setting it came from (flag, variable,\n"
    "profile and file, default); then tries it (HEAD for an object, a listing for a\n"
    "prefix). Secrets are never printed.\n"
    "\n";

typedef struct {
	int json;
	cJSON *array;
	unsigned long count;
} ls_state;

static int print_object(const ms_object *o, void *payload)
{
	ls_state *st = payload;
	char name[1024], size[32];

	st->count++;
	if (st->json) {
		cJSON *item = cJSON_CreateObject();

		if (item == NULL || !cJSON_AddItemToArray(st->array, item))
			return MS_ENOMEM;
		cJSON_AddStringToObject(item, "name", o->name);
		cJSON_AddStringToObject(item, "url", o->location);
		cJSON_AddNumberToObject(item, "size", (double)o->size);
		if (o->etag != NULL)
			cJSON_AddStringToObject(item, "etag", o->etag);
		if (o->last_modified != NULL)
			cJSON_AddStringToObject(item, "last_modified", o->last_modified);
		cJSON_AddBoolToObject(item, "prefix", o->is_prefix);
		return 0;
	}
	cli_escape(name, sizeof(name), o->name);
	if (o->is_prefix) {
		printf("%30s %s\n", "PRE", name);
		return 0;
	}
	snprintf(size, sizeof(size), "%llu", (unsigned long long)o->size);
	printf("%.10s %.8s %10s %s\n", o->last_modified != NULL ? o->last_modified : "          ",
	       o->last_modified != NULL && strlen(o->last_modified) >= 19 ? o->last_modified + 11
	                                                                  : "        ",
	       size, name);
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option options[] = {
	    {"recursive", no_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	ls_state st = {0};
	ms_cancel *cancel;
	int recursive = 0, c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "rh", options, NULL)) != -1) {
		switch (c) {
		case 'r':
			recursive = 1;
			break;
		case 'j':
			st.json = 1;
			break;
		case 'h':
			fputs(ls_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return EXIT_OK;
		default:
			return cli_option_error("ls", optopt, argv[optind - 1]);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("ls takes one URL (see 'modelstream ls --help')");
	if (st.json && (st.array = cJSON_CreateArray()) == NULL)
		return cli_usage_error("out of memory");
	cancel = cli_cancel_on_signals();
	rc = ms_storage_list(argv[optind], recursive ? MS_LIST_RECURSIVE : 0, cancel, print_object,
	                     &st);
	if (rc < 0 && ms_cancel_fired(cancel)) {
		cli_fail(rc);
		return EXIT_CANCELED;
	}
	if (rc == MS_ENOMEM && st.json)
		ms_error_raise(MS_ENOMEM, "%s: out of memory building the JSON listing",
		               argv[optind]);
	if (rc == 0 && st.json) {
		char *text = cJSON_PrintUnformatted(st.array);

		if (text == NULL)
			rc = ms_error_raise(MS_ENOMEM, "out of memory printing the listing");
		else
			printf("%s\n", text);
		free(text);
	}
	cJSON_Delete(st.array);
	return rc < 0 ? cli_fail(rc) : EXIT_OK;
}

int cmd_exists(int argc, char **argv)
{
	char name[1024], size_text[32];
	uint64_t size = 0;
	int exists = 0, rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(exists_usage, stdout);
		fputs(cli_exit_codes_help, stdout);
		return EXIT_OK;
	}
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error(
		    "exists takes one location (see 'modelstream exists --help')");
	if ((rc = ms_storage_exists(&exists, &size, argv[1])) < 0)
		return cli_fail(rc);
	cli_escape(name, sizeof(name), argv[1]);
	if (!exists) {
		printf("%s: not found\n", name);
		return EXIT_NOT_FOUND;
	}
	cli_format_bytes(size_text, sizeof(size_text), size);
	printf("%s: exists (%llu bytes, %s)\n", name, (unsigned long long)size, size_text);
	return EXIT_OK;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
	double start;
	int quiet;
} push_state;

static void on_progress(const char *location, uint64_t done, uint64_t total, void *payload)
{
	const push_state *st = payload;
	char name[1024], size[32];
	double seconds;

	if (st->quiet || done != total)
		return;
	seconds = now_seconds() - st->start;
	cli_escape(name, sizeof(name), location);
	cli_format_bytes(size, sizeof(size), total);
	fprintf(stderr, "uploaded %s (%s, %.2f GB/s since the start)\n", name, size,
	        seconds > 0 ? (double)total / seconds / 1e9 : 0.0);
}

int cmd_push(int argc, char **argv)
{
	static const struct option options[] = {
	    {"concurrency", required_argument, NULL, 'c'},
	    {"part-size", required_argument, NULL, 'p'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	ms_push_options opts = MS_PUSH_OPTIONS_INIT;
	push_state st = {0};
	unsigned concurrency;
	int64_t part;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "c:qh", options, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (cli_parse_uint(&concurrency, optarg, 1, 64) < 0)
				return cli_usage_error("--concurrency must be 1-64, not '%s'",
				                       optarg);
			opts.concurrency = (int)concurrency;
			break;
		case 'p':
			if (cli_parse_size(&part, optarg) < 0 || part < (5 << 20) ||
			    part > (5LL << 30))
				return cli_usage_error("--part-size must be 5M-5G, not '%s'",
				                       optarg);
			opts.part_size = (uint64_t)part;
			break;
		case 'q':
			st.quiet = 1;
			break;
		case 'h':
			fputs(push_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return EXIT_OK;
		default:
			return cli_option_error("push", optopt, argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error("push takes LOCAL and URL (see 'modelstream push --help')");
	opts.progress = on_progress;
	opts.progress_payload = &st;
	/* Ctrl-C or SIGTERM: the upload stops, a multipart upload is aborted on the store. */
	opts.cancel = cli_cancel_on_signals();
	st.start = now_seconds();
	rc = ms_storage_push(argv[optind], argv[optind + 1], &opts);
	if (rc < 0 && ms_cancel_fired(opts.cancel)) {
		cli_fail(rc);
		return EXIT_CANCELED;
	}
	return rc < 0 ? cli_fail(rc) : EXIT_OK;
}

/* "s3://bucket" or ".../dir/": what ms_exists() answers for with any object under it. */
static int is_prefix(const char *location)
{
	const char *bucket = strstr(location, "://");
	size_t n = strlen(location);

	if (bucket == NULL)
		return 0;
	return location[n - 1] == '/' || strchr(bucket + 3, '/') == NULL;
}

int cmd_doctor(int argc, char **argv)
{
	char text[4096], size_text[32];
	uint64_t size = 0;
	int exists = 0, rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(doctor_usage, stdout);
		fputs(cli_exit_codes_help, stdout);
		return EXIT_OK;
	}
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error(
		    "doctor takes one location (see 'modelstream doctor --help')");
	rc = ms_storage_explain(text, sizeof(text), argv[1]);
	fputs(text, stdout);
	if (rc < 0)
		return cli_fail(rc);
	if ((rc = ms_storage_exists(&exists, &size, argv[1])) < 0) {
		printf("access: error: %s\n", ms_error_last()->message);
		return cli_exit_code(rc);
	}
	if (!exists) {
		printf("access: ok, but nothing is there (not found)\n");
		return EXIT_NOT_FOUND;
	}
	if (is_prefix(argv[1])) {
		printf("access: ok (the prefix holds objects)\n");
		return EXIT_OK;
	}
	cli_format_bytes(size_text, sizeof(size_text), size);
	printf("access: ok (%llu bytes, %s)\n", (unsigned long long)size, size_text);
	return EXIT_OK;
}
