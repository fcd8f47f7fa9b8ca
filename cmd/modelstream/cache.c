/*
 * cache.c - `modelstream cache ls|gc|verify|rm --cache DIR`: looking after the node cache.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modelstream.h"

#include "cli.h"

static const char cache_usage[] =
    "Usage: modelstream cache COMMAND --cache DIR [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  ls [--json]                the models in the cache: name, files, size, complete,\n"
    "                             when fetched, source\n"
    "  gc [--budget B]            remove files no model names, downloads nobody is\n"
    "                             continuing, and least recently used files beyond the\n"
    "                             budget; never a file a process holds open\n"
    "  verify NAME... [--content] check the models' files again (sizes, safetensors\n"
    "                             headers; with --content every byte against its ETag)\n"
    "  rm NAME...                 remove models (their files go at the next gc)\n"
    "  prepare DIR --medium M     make DIR a node cache: mount tmpfs with huge pages\n"
    "                             (tmpfs-huge, with --size) or use the disk, and give it\n"
    "                             to --owner UID:GID (needs root; see prepare --help)\n"
    "\n"
    "--cache DIR defaults to MODELSTREAM_CACHE_DIR.\n"
    "\n";

typedef struct {
	int json;
	int first;
} ls_state;

static int print_model(const ms_cache_model *m, void *payload)
{
	ls_state *st = payload;
	char size[32], when[32], source[1024], name[512];
	struct tm tm;
	time_t t = (time_t)m->fetched;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (st->json) {
		printf("%s{\"name\":\"%s\",\"files\":%zu,\"bytes\":%llu,\"complete\":%s,"
		       "\"fetched\":\"%s\",\"source\":\"",
		       st->first ? "" : ",", cli_escape(name, sizeof(name), m->name), m->files,
		       (unsigned long long)m->bytes, m->complete ? "true" : "false", when);
		for (const char *p = m->source; *p != '\0'; p++)
			if (*p == '"' || *p == '\\')
				printf("\\%c", *p);
			else if ((unsigned char)*p < 0x20)
				printf("\\u%04x", (unsigned char)*p);
			else
				putchar(*p);
		printf("\"}");
		st->first = 0;
		return 0;
	}
	cli_format_bytes(size, sizeof(size), m->bytes);
	printf("%-32s %6zu %12s  %-10s %s  %s\n", cli_escape(name, sizeof(name), m->name), m->files,
	       size, m->complete ? "complete" : "INCOMPLETE", when,
	       cli_escape(source, sizeof(source), m->source));
	return 0;
}

int cmd_cache(int argc, char **argv)
{
	static const struct option options[] = {
	    {"cache", required_argument, NULL, 'C'},  {"json", no_argument, NULL, 'j'},
	    {"budget", required_argument, NULL, 'b'}, {"content", no_argument, NULL, 'x'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	ms_cache_options opts = MS_CACHE_OPTIONS_INIT;
	const char *dir = getenv("MODELSTREAM_CACHE_DIR"), *sub;
	ms_cache *cache = NULL;
	ls_state st = {0, 1};
	int content = 0, c, rc = 0;
	int64_t size;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(cache_usage, argc < 2 ? stderr : stdout);
		fputs(cli_exit_codes_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	sub = argv[1];
	if (strcmp(sub, "prepare") == 0)
		return cmd_cache_prepare(argc - 1, argv + 1);
	if (strcmp(sub, "ls") != 0 && strcmp(sub, "gc") != 0 && strcmp(sub, "verify") != 0 &&
	    strcmp(sub, "rm") != 0)
		return cli_usage_error("unknown cache command '%s' (ls, gc, verify, rm, prepare)",
		                       sub);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, "h", options, NULL)) != -1) {
		switch (c) {
		case 'C':
			dir = optarg;
			break;
		case 'j':
			st.json = 1;
			break;
		case 'b':
			if (cli_parse_size(&size, optarg) < 0 || size < 0)
				return cli_usage_error(
				    "--budget must be a size like 200G, not '%s'", optarg);
			opts.budget = (uint64_t)size;
			break;
		case 'x':
			content = 1;
			break;
		case 'h':
			fputs(cache_usage, stdout);
			return EXIT_OK;
		default:
			return cli_option_error("cache", optopt, argv[optind]);
		}
	}
	if (dir == NULL || dir[0] == '\0')
		return cli_usage_error("cache %s needs --cache DIR (or MODELSTREAM_CACHE_DIR)",
		                       sub);
	if ((strcmp(sub, "verify") == 0 || strcmp(sub, "rm") == 0) && optind + 1 >= argc)
		return cli_usage_error("cache %s needs at least one model NAME", sub);
	if ((rc = ms_cache_open(&cache, dir, &opts)) < 0)
		return cli_fail(rc);
	if (strcmp(sub, "ls") == 0) {
		if (st.json)
			printf("[");
		rc = ms_cache_list(cache, print_model, &st);
		if (st.json)
			printf("]\n");
	} else if (strcmp(sub, "gc") == 0) {
		ms_cache_collected got = MS_CACHE_COLLECTED_INIT;
		char freed[32];

		if ((rc = ms_cache_collect(&got, cache)) == 0) {
			cli_format_bytes(freed, sizeof(freed), got.bytes_freed);
			printf("cache gc: removed %zu files (%s) and %zu unfinished downloads; "
			       "kept %zu "
			       "files in use\n",
			       got.blobs_removed, freed, got.partials_removed, got.blobs_in_use);
		}
	} else {
		for (int i = optind + 1; i < argc && rc == 0; i++) {
			char name[512];

			rc = strcmp(sub, "rm") == 0 ? ms_cache_remove(cache, argv[i])
			                            : ms_cache_verify(cache, argv[i], content);
			if (rc == 0)
				printf("cache %s %s: ok\n", sub,
				       cli_escape(name, sizeof(name), argv[i]));
		}
	}
	ms_cache_free(cache);
	return rc < 0 ? cli_fail(rc) : EXIT_OK;
}
