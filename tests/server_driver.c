/*
 * server_driver.c - the health server (cmd/modelstream/server.c) over a simulated fetch, for
 * tests/server_tests.sh: starts the server, writes its port to a file, then walks one model
 * from queued to ready over a few seconds (and one more found in the cache at once), and
 * keeps serving until SIGTERM or SIGINT.
 *
 * The simulated source carries the values of AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN in
 * its userinfo and query string, and a failure message repeats them, so that the script can
 * check that no endpoint ever shows them.
 *
 * Usage: server_driver --port-file FILE [--listen ADDR] [--bytes N] [--seconds S]
 *                      [--stall-at FRACTION] [--deadline S] [--max-connections N]
 *                      [--header-timeout S] [--fail] [--wait-file FILE]
 * --wait-file holds the simulated fetch (the model stays queued) until FILE exists.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cmd/modelstream/server.h"
#include "../cmd/modelstream/status.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (!stop_requested && nanosleep(&ts, &ts) != 0)
		;
}

static int usage(void)
{
	fprintf(stderr, "usage: server_driver --port-file FILE [--listen ADDR] [--bytes N] "
	                "[--seconds S] [--stall-at FRACTION] [--deadline S] "
	                "[--max-connections N] [--header-timeout S] [--fail] [--wait-file FILE]\n");
	return 2;
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : fallback;
}

int main(int argc, char **argv)
{
	const char *port_file = NULL;
	const char *wait_file = NULL;
	const char *listen_at = "127.0.0.1:0";
	uint64_t bytes = 64ull << 20;
	double seconds = 5;
	double stall_at = -1;
	double deadline = 0;
	unsigned max_connections = 0;
	unsigned header_timeout = 0;
	bool fail = false;
	char source[1024];
	char message[1024];
	char err[256];
	status *st = NULL;
	server *srv = NULL;
	struct sigaction sa;
	FILE *f;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--fail") == 0) {
			fail = true;
			continue;
		}
		if (v == NULL)
			return usage();
		i++;
		if (strcmp(a, "--port-file") == 0)
			port_file = v;
		else if (strcmp(a, "--wait-file") == 0)
			wait_file = v;
		else if (strcmp(a, "--listen") == 0)
			listen_at = v;
		else if (strcmp(a, "--bytes") == 0)
			bytes = strtoull(v, NULL, 10);
		else if (strcmp(a, "--seconds") == 0)
			seconds = strtod(v, NULL);
		else if (strcmp(a, "--stall-at") == 0)
			stall_at = strtod(v, NULL);
		else if (strcmp(a, "--deadline") == 0)
			deadline = strtod(v, NULL);
		else if (strcmp(a, "--max-connections") == 0)
			max_connections = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--header-timeout") == 0)
			header_timeout = (unsigned)strtoul(v, NULL, 10);
		else
			return usage();
	}
	if (port_file == NULL || bytes < 2 || seconds <= 0)
		return usage();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	snprintf(source, sizeof(source),
	         "s3://AKIAEXAMPLE:%s@models/llama/?X-Amz-Security-Token=%s",
	         env_or("AWS_SECRET_ACCESS_KEY", "none"), env_or("AWS_SESSION_TOKEN", "none"));
	snprintf(
	    message, sizeof(message),
	    "GET https://user:%s@s3.example.com/models/llama/model.safetensors?token=%s failed: "
	    "403 AccessDenied",
	    env_or("AWS_SECRET_ACCESS_KEY", "none"), env_or("AWS_SESSION_TOKEN", "none"));

	st = status_new(deadline, NULL, NULL);
	if (st == NULL ||
	    status_add_model(st, "cached", "s3://models/cached/", "/cache/cached") != 0 ||
	    status_add_model(st, "llama", source, "/cache/llama") != 0) {
		fprintf(stderr, "server_driver: out of memory\n");
		goto done;
	}
	status_set_cache(st, 0, 8ull << 30);

	server_options opts = {.listen = listen_at,
	                       .status = st,
	                       .max_connections = max_connections,
	                       .header_timeout_s = header_timeout};
	if (server_start(&srv, &opts, err, sizeof(err)) != 0) {
		fprintf(stderr, "server_driver: %s\n", err);
		goto done;
	}
	f = fopen(port_file, "w");
	if (f == NULL || fprintf(f, "%d\n", server_port(srv)) < 0 || fclose(f) != 0) {
		perror(port_file);
		goto done;
	}
	fprintf(stderr, "server_driver: listening on port %d\n", server_port(srv));

	while (wait_file != NULL && access(wait_file, F_OK) != 0 && !stop_requested)
		sleep_ms(50);

	/* The cached model: found in the cache at once. */
	status_file(st, "cached", "model.safetensors", STATUS_READY, 4096, 4096, true);
	status_model_progress(
	    st, "cached",
	    &(status_progress){.state = STATUS_READY, .bytes_done = 4096, .bytes_total = 4096});
	status_model_ready(st, "cached");

	/* The fetched model: queued, resolving, then two files over `seconds`, verified. */
	sleep_ms(300);
	status_model_state(st, "llama", STATUS_RESOLVING);
	sleep_ms(300);
	{
		const int steps = (int)(seconds * 10);
		const uint64_t half = bytes / 2;
		status_progress p = {
		    .state = STATUS_DOWNLOADING, .bytes_total = bytes, .window = 8};

		status_gauge_set(st, STATUS_GAUGE_CONCURRENCY_WINDOW, 8);
		status_gauge_set(st, STATUS_GAUGE_ACTIVE_CONNECTIONS, 4);
		status_file(st, "llama", "model-00001-of-00002.safetensors", STATUS_DOWNLOADING, 0,
		            half, false);
		status_file(st, "llama", "model-00002-of-00002.safetensors", STATUS_QUEUED, 0,
		            bytes - half, false);
		for (int i = 1; i <= steps && !stop_requested; i++) {
			uint64_t done = bytes * (uint64_t)i / (uint64_t)steps;

			if (stall_at >= 0 && (double)done >= stall_at * (double)bytes) {
				fprintf(stderr, "server_driver: stalled at %llu bytes\n",
				        (unsigned long long)p.bytes_done);
				while (!stop_requested)
					sleep_ms(100);
				break;
			}
			p.bytes_done = done;
			p.bytes_fetched = done;
			p.rate = (double)bytes / seconds;
			p.reads_in_flight = 4;
			if (i % 10 == 0) {
				p.retries++;
				status_counter_add(st, STATUS_COUNTER_RETRIES,
				                   i % 20 == 0 ? "slowdown" : "no-such-reason", 1);
				status_counter_add(st, STATUS_COUNTER_THROTTLE_WAITS, NULL, 1);
			}
			status_model_progress(st, "llama", &p);
			status_file(st, "llama", "model-00001-of-00002.safetensors",
			            done >= half ? STATUS_READY : STATUS_DOWNLOADING,
			            done >= half ? half : done, half, false);
			if (done > half)
				status_file(st, "llama", "model-00002-of-00002.safetensors",
				            done >= bytes ? STATUS_READY : STATUS_DOWNLOADING,
				            done - half, bytes - half, false);
			status_set_cache(st, done + 4096, 8ull << 30);
			sleep_ms(100);
		}
		if (!stop_requested) {
			p.state = STATUS_VERIFYING;
			p.rate = 0;
			p.reads_in_flight = 0;
			status_model_progress(st, "llama", &p);
			status_gauge_set(st, STATUS_GAUGE_ACTIVE_CONNECTIONS, 0);
			sleep_ms(500);
		}
	}
	if (!stop_requested) {
		if (fail)
			status_model_failed(st, "llama", message);
		else
			status_model_ready(st, "llama");
		fprintf(stderr, "server_driver: %s\n", fail ? "failed" : "ready");
	}
	while (!stop_requested)
		sleep_ms(100);
	rc = 0;
done:
	server_stop(srv);
	status_free(st);
	fprintf(stderr, "server_driver: stopped\n");
	return rc;
}
