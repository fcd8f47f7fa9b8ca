/*
 * wait.c - `modelstream wait URL [--timeout S]`: blocks until a modelstream server's /readyz
 * answers 200. For scripts, and for Kubernetes versions without native sidecars, where the
 * serving container's command starts with `modelstream wait http://localhost:9090 && ...`.
 * `modelstream wait --cache DIR NAME...` blocks until the node agent has published the
 * models in the node cache: the init container of a pod that reads the agent's cache.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "modelstream.h"

#include "cli.h"

static const char wait_usage[] =
    "Usage: modelstream wait URL [--timeout S] [--interval S] [--quiet]\n"
    "       modelstream wait --cache DIR NAME... [--timeout S] [--interval S] [--quiet]\n"
    "\n"
    "Polls URL until it answers 200, then exits 0. URL is a modelstream server\n"
    "(http://127.0.0.1:9090, to which /readyz is added) or a full URL. While it waits it\n"
    "prints the server's reason (\"model llama: downloading\") when it changes.\n"
    "\n"
    "With --cache, waits until every model NAME is published in the node cache DIR (by\n"
    "the node agent, `modelstream serve`); DIR may be mounted read-only. This is the init\n"
    "container of a pod whose node agent fetches for it (Kubernetes without native\n"
    "sidecars); it writes nothing, so none of the cache's memory is charged to the pod.\n"
    "\n"
    "Options:\n"
    "      --cache DIR    wait for models in the node cache DIR instead of a URL\n"
    "      --timeout S    give up after S seconds with exit 7 (default: wait for ever)\n"
    "      --interval S   seconds between polls (default 1)\n"
    "  -q, --quiet        print nothing\n"
    "  -h, --help         show this help\n"
    "\n";

#define BODY_MAX 1024

typedef struct {
	char text[BODY_MAX + 1];
	size_t len;
} body;

static size_t on_body(char *data, size_t size, size_t count, void *payload)
{
	body *b = payload;
	size_t n = size * count, room = BODY_MAX - b->len;

	if (n > room)
		n = room;
	memcpy(b->text + b->len, data, n);
	b->len += n;
	b->text[b->len] = '\0';
	return size * count;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One poll: the HTTP status (0 if no answer) and the first line of the body or the error. */
static long poll_once(CURL *curl, const char *url, char *reason, size_t reason_size)
{
	body b = {.len = 0};
	long status = 0;
	CURLcode cc;

	b.text[0] = '\0';
	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		snprintf(reason, reason_size, "no answer (%s)", curl_easy_strerror(cc));
		return 0;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	b.text[strcspn(b.text, "\r\n")] = '\0';
	cli_escape(reason, reason_size, b.text[0] != '\0' ? b.text : "(no reason given)");
	return status;
}

/* Waits for models in the node cache; returns an exit code. */
static int wait_for_cache(const char *dir, char **names, int count, double timeout, double interval,
                          int quiet)
{
	double start = now_seconds(), last_said = start;
	int done = 0, rc;
	char ready[64] = {0};

	if (count > (int)sizeof(ready))
		return cli_usage_error("wait --cache: at most %zu models", sizeof(ready));
	for (int i = 0; i < count; i++) {
		char shown[512];

		if (!quiet)
			printf("wait: waiting for the node agent to publish model %s in %s\n",
			       cli_escape(shown, sizeof(shown), names[i]), dir);
	}
	fflush(stdout);
	for (;;) {
		for (int i = 0; i < count; i++) {
			ms_cache_hold *hold = NULL;

			if (ready[i])
				continue;
			rc = ms_cache_hold_new(&hold, dir, names[i]);
			if (rc == 0) {
				ready[i] = 1;
				done++;
				if (!quiet)
					printf("wait: model %s is ready at %s after %.1f s\n",
					       names[i], ms_cache_hold_path(hold),
					       now_seconds() - start);
				fflush(stdout);
				ms_cache_hold_free(hold);
			} else if (rc != MS_ENOTFOUND && rc != MS_EBUSY) {
				return cli_fail(rc);
			}
		}
		if (done == count)
			return EXIT_OK;
		if (timeout > 0 && now_seconds() - start + interval > timeout) {
			for (int i = 0; i < count; i++)
				if (!ready[i])
					fprintf(
					    stderr,
					    "modelstream: %s: model %s is not in the cache after "
					    "%.0f s (is the node agent running? see its log)\n",
					    dir, names[i], timeout);
			return EXIT_UNAVAILABLE;
		}
		if (!quiet && now_seconds() - last_said >= 10) {
			last_said = now_seconds();
			for (int i = 0; i < count; i++)
				if (!ready[i])
					printf("wait: still waiting for model %s (%.0f s)\n",
					       names[i], last_said - start);
			fflush(stdout);
		}
		usleep((useconds_t)(interval * 1e6));
	}
}

int cmd_wait(int argc, char **argv)
{
	static const struct option options[] = {
	    {"cache", required_argument, NULL, 'C'},    {"timeout", required_argument, NULL, 't'},
	    {"interval", required_argument, NULL, 'i'}, {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
	};
	double timeout = 0, interval = 1, start;
	const char *cache = NULL;
	char url[2048], reason[BODY_MAX + 64], last[BODY_MAX + 64] = "";
	int quiet = 0, c, rc = EXIT_UNAVAILABLE;
	CURL *curl;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "qh", options, NULL)) != -1) {
		char *end = NULL;

		switch (c) {
		case 'C':
			cache = optarg;
			break;
		case 't':
			timeout = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || timeout <= 0)
				return cli_usage_error(
				    "--timeout must be a number of seconds, not '%s'", optarg);
			break;
		case 'i':
			interval = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || interval < 0.05 || interval > 3600)
				return cli_usage_error(
				    "--interval must be 0.05-3600 seconds, not '%s'", optarg);
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			fputs(wait_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return EXIT_OK;
		default:
			return cli_option_error("wait", optopt, argv[optind - 1]);
		}
	}
	if (cache != NULL) {
		if (optind >= argc)
			return cli_usage_error("wait --cache DIR takes the NAMEs of the models to "
			                       "wait for");
		return wait_for_cache(cache, argv + optind, argc - optind, timeout, interval,
		                      quiet);
	}
	if (argc - optind != 1)
		return cli_usage_error("wait takes one URL (see 'modelstream wait --help')");
	if (strncmp(argv[optind], "http://", 7) != 0 && strncmp(argv[optind], "https://", 8) != 0)
		return cli_usage_error("wait takes an http:// or https:// URL, not '%.80s'",
		                       argv[optind]);
	/* A bare server address means its readiness endpoint. */
	{
		const char *rest = strstr(argv[optind], "://") + 3;
		const char *path = strchr(rest, '/');

		if ((size_t)snprintf(url, sizeof(url), "%s%s", argv[optind],
		                     path == NULL || strcmp(path, "/") == 0
		                         ? (path == NULL ? "/readyz" : "readyz")
		                         : "") >= sizeof(url))
			return cli_usage_error("the URL is too long");
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((curl = curl_easy_init()) == NULL)
		return cli_usage_error("out of memory");
	start = now_seconds();
	for (;;) {
		long status = poll_once(curl, url, reason, sizeof(reason));

		if (status == 200) {
			if (!quiet)
				printf("wait: %s is ready after %.1f s\n", url,
				       now_seconds() - start);
			rc = EXIT_OK;
			break;
		}
		if (!quiet && strcmp(reason, last) != 0) {
			if (status > 0)
				printf("wait: %s answers %ld: %s\n", url, status, reason);
			else
				printf("wait: %s: %s\n", url, reason);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", reason);
		}
		if (timeout > 0 && now_seconds() - start + interval > timeout) {
			fprintf(stderr, "modelstream: %s: not ready after %.0f s (last: %s)\n", url,
			        timeout, reason);
			rc = EXIT_UNAVAILABLE;
			break;
		}
		usleep((useconds_t)(interval * 1e6));
	}
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return rc;
}
