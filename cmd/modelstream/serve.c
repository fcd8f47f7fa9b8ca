/*
 * serve.c - `modelstream serve`: the node agent (a DaemonSet) and the native sidecar.
 *
 * As the node agent (`serve --config FILE --cache DIR`), it owns the node cache: it fetches
 * the models its configuration lists, then keeps answering /healthz, /readyz, /progress and
 * /metrics, and reconciles. Kubernetes updates a mounted ConfigMap in place (a new
 * timestamped directory, then one rename of its `..data` link), so the agent reads the file
 * again every --reconcile-every seconds and compares the bytes: a model added is fetched, a
 * model removed is evicted once --evict-grace seconds have passed and no pod holds it
 * (ms_cache_evict() refuses while a reader holds the model). Models in the cache that the
 * configuration does not list are retired the same way when the agent starts, so a change
 * made while it was down is not missed. A broken new file is reported and the previous
 * configuration kept. This is an operator's reconcile loop without an API-server client.
 *
 * As a native sidecar (`serve --cache DIR --wait-for NAME`) it fetches nothing: on tmpfs the
 * cache's pages are charged to whoever writes them first, so only the agent writes. It
 * waits until the agent has published the model, holds it (ms_cache_hold_new(): a shared
 * lock that survives no crash and needs no write access) while the pod runs, and answers
 * /readyz 200 from then on, which is what the pod's startupProbe waits for.
 *
 * Signals: SIGTERM and SIGINT are taken by a thread of their own. It fires the cancellation
 * token every fetch runs with (the cache's), so a fetch in progress stops within a quarter
 * of a second, leaving its partial download for the next start to resume, and it wakes the
 * main loop, which exits 0.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "modelstream.h"

#include "cli.h"
#include "config.h"
#include "fetch.h"
#include "server.h"
#include "status.h"

static const char serve_usage[] =
    "Usage: modelstream serve --cache DIR [SOURCE...] [--config FILE] [--listen ADDR]\n"
    "       modelstream serve --cache DIR --wait-for NAME... [--listen ADDR]\n"
    "\n"
    "The node agent (a DaemonSet) or a native sidecar (an init container with\n"
    "restartPolicy: Always): serves /healthz, /readyz, /progress, /metrics and a\n"
    "websocket at /ws on --listen (default 0.0.0.0:9090) and keeps answering until\n"
    "SIGTERM. /readyz is 200 once every model is ready.\n"
    "\n"
    "With SOURCEs or a config file's models, it fetches them into the cache the way\n"
    "`fetch` does and shows the models already there. With --config it also reconciles:\n"
    "it reads the file again when it changes (a ConfigMap mounted as a directory is\n"
    "updated in place by the kubelet), fetches models added to it, and evicts models\n"
    "removed from it (and models in the cache it does not list) once no pod holds them.\n"
    "\n"
    "With --wait-for it fetches nothing: it waits until another process (the node agent)\n"
    "has published each NAME in the cache, which may be mounted read-only, then holds the\n"
    "models so that they are not evicted while this process runs.\n"
    "\n"
    "Every option of `fetch` applies (see 'modelstream fetch --help'), and:\n"
    "      --listen ADDR         HOST:PORT to serve on: 0.0.0.0:9090, 127.0.0.1:0, [::]:9090\n"
    "                            (MODELSTREAM_LISTEN; `listen` in the config file)\n"
    "      --stall-deadline S    /healthz turns 503 when a fetch makes no progress for S\n"
    "                            seconds (default 120)\n"
    "      --wait-for NAME       wait for model NAME and hold it (repeatable)\n"
    "      --reconcile-every S   seconds between reads of the config file (default 2)\n"
    "      --evict-grace S       seconds a model removed from the config file stays before\n"
    "                            it is evicted, if no pod holds it (default 60)\n"
    "\n";

#define RETIRING_MAX 256

/* A model the configuration no longer lists, waiting to be evicted. */
typedef struct {
	char name[CLI_CONFIG_NAME_MAX + 32];
	double since;   /* when it was found unlisted */
	bool told_held; /* "held by a pod" was logged */
} retiring;

typedef struct {
	fetch_args *a;
	ms_cache *cache;
	status *st;
	server *srv;
	const cli_config *current; /* what the agent fetches now */
	cli_config owned;          /* a reloaded file; a->cfg is the first one */
	char *config_text;         /* the bytes `current` was read from */
	size_t config_len;
	char *rejected_text; /* a broken file already reported, so it is said once */
	size_t rejected_len;
	retiring retire[RETIRING_MAX];
	size_t retire_count;
	double last_retry; /* when failed models were last fetched again */
} agent;

/* The signal thread's word to the main thread. */
static int wake_pipe[2] = {-1, -1};
static ms_cancel *stop_token; /* fired by the signal thread; the cache's fetches stop */

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One log line: text ("serve: ...") or a JSON object with event, model and message. */
static void serve_log(const fetch_args *a, const char *event, const char *model, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));

static void serve_log(const fetch_args *a, const char *event, const char *model, const char *fmt,
                      ...)
{
	char text[2048], ts[40];
	va_list ap;

	if (a->r.quiet)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (a->r.format == LOG_TEXT) {
		printf("serve: %s\n", text);
	} else {
		fetch_timestamp(ts, sizeof(ts));
		printf("{\"time\":\"%s\",\"event\":\"%s\"", ts, event);
		if (model != NULL) {
			printf(",\"model\":");
			fetch_json_string(stdout, model);
		}
		printf(",\"message\":");
		fetch_json_string(stdout, text);
		printf("}\n");
	}
	fflush(stdout);
}

static void *signal_thread(void *payload)
{
	const sigset_t *set = payload;
	int sig = 0;

	if (sigwait(set, &sig) != 0)
		return NULL;
	ms_cancel_fire(stop_token);
	if (write(wake_pipe[1], "x", 1) < 0)
		_exit(EXIT_OK);
	return NULL;
}

/* Blocks SIGTERM and SIGINT in every thread and starts the one that takes them. */
static int start_signal_thread(pthread_t *thread, sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, set, NULL) != 0 || pipe(wake_pipe) != 0)
		return -1;
	return pthread_create(thread, NULL, signal_thread, set) == 0 ? 0 : -1;
}

/* Sleeps up to `seconds`; true when a signal asked to stop. */
static bool stop_requested(double seconds)
{
	struct pollfd p = {.fd = wake_pipe[0], .events = POLLIN};

	return poll(&p, 1, (int)(seconds * 1000)) > 0;
}

static int start_server(fetch_args *a, status **st, server **srv)
{
	server_options so = {.listen = a->listen};
	char err[512];

	if ((*st = status_new(a->stall_deadline, NULL, NULL)) == NULL)
		return cli_usage_error("out of memory");
	so.status = *st;
	if (server_start(srv, &so, err, sizeof(err)) < 0)
		return cli_usage_error("%s", err);
	serve_log(a, "listening", NULL, "health, progress and metrics on %s (port %d)", a->listen,
	          server_port(*srv));
	return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* The sidecar: wait for models the agent publishes, and hold them                            */
/* ---------------------------------------------------------------------------------------- */

static int serve_wait_for(fetch_args *a)
{
	ms_cache_hold *holds[FETCH_WAIT_FOR_MAX] = {0};
	status *st = NULL;
	server *srv = NULL;
	size_t held = 0;
	double start = now_seconds(), last_said = start;
	int rc;

	if ((rc = start_server(a, &st, &srv)) != EXIT_OK)
		goto done;
	for (size_t i = 0; i < a->wait_for_count; i++) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/models/%s", a->cache, a->wait_for[i]);
		status_add_model(st, a->wait_for[i], "the node agent", path);
		status_model_state(st, a->wait_for[i], STATUS_WAITING);
		serve_log(a, "waiting", a->wait_for[i],
		          "waiting for the node agent to publish model %s in %s", a->wait_for[i],
		          a->cache);
	}
	for (;;) {
		for (size_t i = 0; i < a->wait_for_count; i++) {
			if (holds[i] != NULL)
				continue;
			rc = ms_cache_hold_new(&holds[i], a->cache, a->wait_for[i]);
			if (rc == 0) {
				held++;
				status_model_ready(st, a->wait_for[i]);
				serve_log(
				    a, "ready", a->wait_for[i],
				    "model %s is ready at %s after %.1f s; held while this pod "
				    "runs",
				    a->wait_for[i], ms_cache_hold_path(holds[i]),
				    now_seconds() - start);
			} else if (rc != MS_ENOTFOUND && rc != MS_EBUSY) {
				rc = cli_fail(rc);
				goto done;
			}
		}
		if (held == a->wait_for_count)
			break;
		if (now_seconds() - last_said >= 10) {
			last_said = now_seconds();
			for (size_t i = 0; i < a->wait_for_count; i++)
				if (holds[i] == NULL)
					serve_log(a, "waiting", a->wait_for[i],
					          "still waiting for model %s (%.0f s)",
					          a->wait_for[i], last_said - start);
		}
		if (stop_requested(0.25)) {
			rc = EXIT_OK;
			goto done;
		}
	}
	serve_log(a, "serving", NULL, "%zu models ready; answering until SIGTERM", held);
	while (!stop_requested(3600))
		;
	rc = EXIT_OK;
done:
	for (size_t i = 0; i < a->wait_for_count; i++)
		ms_cache_hold_free(holds[i]);
	server_stop(srv);
	status_free(st);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* The agent: fetch, reconcile, retire                                                        */
/* ---------------------------------------------------------------------------------------- */

/* Reads the whole config file; NULL with *len 0 when it cannot be read. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *text;

	*len = 0;
	if (f == NULL)
		return NULL;
	text = malloc(CLI_CONFIG_FILE_MAX + 1);
	if (text != NULL)
		*len = fread(text, 1, CLI_CONFIG_FILE_MAX + 1, f);
	fclose(f);
	return text;
}

static const cli_model *find_model(const agent *g, const cli_config *cfg, const char *name,
                                   char *buf, size_t size)
{
	for (size_t i = 0; i < cfg->model_count; i++) {
		fetch_model_name(buf, size, g->a, &cfg->models[i], cfg->models[i].source);
		if (strcmp(buf, name) == 0)
			return &cfg->models[i];
	}
	return NULL;
}

static bool same_string(const char *x, const char *y)
{
	return (x == NULL && y == NULL) || (x != NULL && y != NULL && strcmp(x, y) == 0);
}

static void retire(agent *g, const char *name)
{
	for (size_t i = 0; i < g->retire_count; i++)
		if (strcmp(g->retire[i].name, name) == 0)
			return;
	if (g->retire_count == RETIRING_MAX)
		return;
	snprintf(g->retire[g->retire_count].name, sizeof(g->retire[0].name), "%s", name);
	g->retire[g->retire_count].since = now_seconds();
	g->retire[g->retire_count].told_held = false;
	g->retire_count++;
	serve_log(g->a, "retiring", name,
	          "model %s is no longer configured; evicted once no pod holds it (in %.0f s "
	          "at the earliest)",
	          name, g->a->evict_grace);
}

static void unretire(agent *g, const char *name)
{
	for (size_t i = 0; i < g->retire_count; i++)
		if (strcmp(g->retire[i].name, name) == 0) {
			g->retire[i] = g->retire[--g->retire_count];
			return;
		}
}

/* Fetches one configured model; a failure is shown in /readyz and logged, not fatal. */
static void agent_fetch(agent *g, const cli_model *m)
{
	char name[CLI_CONFIG_NAME_MAX + 32];

	fetch_model_name(name, sizeof(name), g->a, m, m->source);
	unretire(g, name);
	fetch_register(g->st, g->cache, name, m->source);
	fetch_model(g->a, g->cache, g->st, name, m->source, m->sha256_manifest);
}

static int retire_unlisted(const ms_cache_model *m, void *payload)
{
	agent *g = payload;
	char buf[CLI_CONFIG_NAME_MAX + 32];

	if (find_model(g, g->current, m->name, buf, sizeof(buf)) == NULL)
		retire(g, m->name);
	return 0;
}

static int show_cached(const ms_cache_model *m, void *payload)
{
	status *st = payload;

	/* The node cache's models are shown as they are; a fetch of one replaces its entry. */
	if (status_add_model(st, m->name, m->source, "") == 0 && m->complete)
		status_model_ready(st, m->name);
	return 0;
}

/* Evicts the retired models whose grace has passed and that no pod holds. */
static void agent_evict(agent *g)
{
	for (size_t i = 0; i < g->retire_count;) {
		retiring *r = &g->retire[i];
		int rc;

		if (now_seconds() - r->since < g->a->evict_grace) {
			i++;
			continue;
		}
		rc = ms_cache_evict(g->cache, r->name);
		if (rc == MS_EBUSY) {
			if (!r->told_held)
				serve_log(
				    g->a, "held", r->name,
				    "model %s is no longer configured but a pod holds it; kept "
				    "until it is released",
				    r->name);
			r->told_held = true;
			i++;
			continue;
		}
		if (rc == 0) {
			ms_cache_collected done = MS_CACHE_COLLECTED_INIT;
			char freed[32];

			ms_cache_collect(&done, g->cache);
			cli_format_bytes(freed, sizeof(freed), done.bytes_freed);
			status_remove_model(g->st, r->name);
			status_counter_add(g->st, STATUS_COUNTER_EVICTIONS, NULL, 1);
			fetch_feed_cache_size(g->st, g->cache, g->a->opts.budget);
			serve_log(g->a, "evicted", r->name,
			          "model %s evicted: no longer configured and no pod holds it (%zu "
			          "files, %s freed)",
			          r->name, done.blobs_removed, freed);
		} else if (rc != MS_ENOTFOUND) {
			serve_log(g->a, "error", r->name, "cannot evict model %s: %s", r->name,
			          ms_error_last()->message);
		}
		*r = g->retire[--g->retire_count];
	}
}

/* Reads the config file again; when its bytes changed and it parses, fetches the models it
 * adds or changes and retires the ones it drops. */
static void agent_reconcile(agent *g)
{
	cli_config next = {0};
	const cli_config *before = g->current;
	char err[512], buf[CLI_CONFIG_NAME_MAX + 32];
	bool fetch[CLI_CONFIG_MODELS_MAX] = {false};
	size_t len;
	char *text = read_file(g->a->config_path, &len);

	if (text == NULL || (len == g->config_len && memcmp(text, g->config_text, len) == 0) ||
	    (g->rejected_text != NULL && len == g->rejected_len &&
	     memcmp(text, g->rejected_text, len) == 0)) {
		free(text);
		return;
	}
	if (cli_config_parse(&next, g->a->config_path, text, len, err, sizeof(err)) < 0) {
		serve_log(g->a, "error", NULL, "%s; keeping the previous configuration", err);
		free(g->rejected_text);
		g->rejected_text = text;
		g->rejected_len = len;
		cli_config_free(&next);
		return;
	}
	serve_log(g->a, "reconcile", NULL, "%s changed: %zu models configured", g->a->config_path,
	          next.model_count);
	if (!same_string(next.cache, before->cache) || !same_string(next.listen, before->listen))
		serve_log(g->a, "reconcile", NULL,
		          "a new cache or listen address takes effect at the next start");
	/* What to fetch (new, or from another source) and what to retire, against `before`. */
	for (size_t i = 0; i < next.model_count; i++) {
		char name[CLI_CONFIG_NAME_MAX + 32];
		const cli_model *m = &next.models[i], *old;

		fetch_model_name(name, sizeof(name), g->a, m, m->source);
		old = find_model(g, before, name, buf, sizeof(buf));
		fetch[i] = old == NULL || !same_string(old->source, m->source) ||
		           !same_string(old->sha256_manifest, m->sha256_manifest);
	}
	for (size_t i = 0; i < before->model_count; i++) {
		char name[CLI_CONFIG_NAME_MAX + 32];

		fetch_model_name(name, sizeof(name), g->a, &before->models[i],
		                 before->models[i].source);
		if (find_model(g, &next, name, buf, sizeof(buf)) == NULL)
			retire(g, name);
	}
	free(g->config_text);
	g->config_text = text;
	g->config_len = len;
	free(g->rejected_text);
	g->rejected_text = NULL;
	g->rejected_len = 0;
	cli_config_free(&g->owned); /* `before` may be it: not used from here on */
	g->owned = next;
	g->current = &g->owned;
	for (size_t i = 0; i < g->current->model_count; i++)
		if (fetch[i])
			agent_fetch(g, &g->current->models[i]);
}

/* Fetches again, every 30 s, the configured models whose fetch failed (a store that was
 * down, credentials that were not there yet). */
static void agent_retry_failed(agent *g)
{
	if (now_seconds() - g->last_retry < 30)
		return;
	g->last_retry = now_seconds();
	for (size_t i = 0; i < g->current->model_count; i++) {
		const cli_model *m = &g->current->models[i];
		char name[CLI_CONFIG_NAME_MAX + 32];

		fetch_model_name(name, sizeof(name), g->a, m, m->source);
		if (status_model_failed_now(g->st, name)) {
			serve_log(g->a, "retry", name, "model %s failed; fetching it again", name);
			agent_fetch(g, m);
		}
	}
}

static int serve_agent(fetch_args *a, int argc, char **argv)
{
	agent g = {.a = a, .current = &a->cfg};
	cli_config from_args = {0};
	cli_model args_models[CLI_CONFIG_MODELS_MAX];
	int rc;

	if ((rc = ms_cache_open(&g.cache, a->cache, &a->opts)) < 0)
		return cli_fail(rc);
	/* SOURCE arguments replace the file's models, as for fetch. */
	if (optind < argc) {
		size_t n = (size_t)(argc - optind);

		if (n > CLI_CONFIG_MODELS_MAX) {
			rc = cli_usage_error("at most %d SOURCEs", CLI_CONFIG_MODELS_MAX);
			goto done;
		}
		for (size_t i = 0; i < n; i++)
			args_models[i] = (cli_model){.source = argv[optind + (int)i]};
		from_args.models = args_models;
		from_args.model_count = n;
		g.current = &from_args;
	}
	/* With a config file, the models are the parse of exactly the bytes that later reads
	 * are compared with: a file changed between fetch_parse_args() and here is then not
	 * taken for unchanged. Should these bytes not parse, the first reconcile reports it. */
	if (a->config_path != NULL && g.current == &a->cfg) {
		char err[512];

		g.config_text = read_file(a->config_path, &g.config_len);
		if (g.config_text != NULL &&
		    cli_config_parse(&g.owned, a->config_path, g.config_text, g.config_len, err,
		                     sizeof(err)) == 0) {
			g.current = &g.owned;
		} else {
			cli_config_free(&g.owned);
			g.owned = (cli_config){0};
			g.config_len = 0; /* so the first reconcile reads and reports the file */
		}
	}
	if ((rc = start_server(a, &g.st, &g.srv)) != EXIT_OK)
		goto done;
	ms_cache_list(g.cache, show_cached, g.st);
	for (size_t i = 0; i < g.current->model_count; i++) {
		char name[CLI_CONFIG_NAME_MAX + 32];
		const cli_model *m = &g.current->models[i];

		fetch_model_name(name, sizeof(name), a, m, m->source);
		fetch_register(g.st, g.cache, name, m->source);
	}
	fetch_feed_cache_size(g.st, g.cache, a->opts.budget);
	if (g.config_text != NULL)
		ms_cache_list(g.cache, retire_unlisted, &g);
	for (size_t i = 0; i < g.current->model_count; i++)
		agent_fetch(&g, &g.current->models[i]);
	g.last_retry = now_seconds();
	serve_log(a, "serving", NULL, "%zu models fetched; answering until SIGTERM%s",
	          g.current->model_count,
	          g.config_text != NULL ? ", and reconciling when the config file changes" : "");
	while (!stop_requested(a->reconcile_every)) {
		if (g.config_text != NULL)
			agent_reconcile(&g);
		agent_evict(&g);
		agent_retry_failed(&g);
	}
	rc = EXIT_OK;
done:
	free(g.config_text);
	free(g.rejected_text);
	cli_config_free(&g.owned);
	server_stop(g.srv);
	status_free(g.st);
	ms_cache_free(g.cache);
	return rc;
}

int cmd_serve(int argc, char **argv)
{
	fetch_args a = {
	    .opts = MS_CACHE_OPTIONS_INIT,
	    .r = {.every = 5},
	    .serve = 1,
	    .reconcile_every = 2,
	    .evict_grace = 60,
	};
	pthread_t thread;
	sigset_t set;
	int rc;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(serve_usage, stdout);
		fputs(cli_exit_codes_help, stdout);
		return EXIT_OK;
	}
	if ((rc = fetch_parse_args(&a, argc, argv)) != 0) {
		cli_config_free(&a.cfg);
		return rc < 0 ? EXIT_OK : rc;
	}
	if (a.listen == NULL)
		a.listen = "0.0.0.0:9090";
	a.r.tty = 0; /* a server's log is read by kubectl logs, not a terminal */
	if (ms_cancel_new(&stop_token) < 0 || start_signal_thread(&thread, &set) != 0) {
		cli_config_free(&a.cfg);
		return cli_usage_error("cannot set up signal handling");
	}
	a.opts.cancel = stop_token;
	rc = a.wait_for_count > 0 ? serve_wait_for(&a) : serve_agent(&a, argc, argv);
	cli_config_free(&a.cfg);
	/* The signal thread may still fire the token: it lives until the process ends. */
	return rc;
}
