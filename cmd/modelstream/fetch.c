/*
 * fetch.c - `modelstream fetch SOURCE... --cache DIR`: the init container's job. Fills the
 * node cache and reports progress the way `kubectl logs` shows it best: a line every few
 * seconds per model, a line per file, a summary; a live bar on a terminal; JSON lines with
 * --log-format json.
 */
#include <ctype.h>
#include <getopt.h>
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

static const char fetch_usage[] =
    "Usage: modelstream fetch SOURCE... --cache DIR [OPTIONS]\n"
    "       modelstream fetch --config FILE [OPTIONS]\n"
    "\n"
    "Fetches each SOURCE into the node cache DIR, once per node however many processes\n"
    "ask: an object (s3://bucket/model.safetensors), a model directory (s3://bucket/llama/,\n"
    "every file under it: weights, config, tokenizer), a local file or directory. The model\n"
    "appears at DIR/models/NAME with the source's file names, only once every file is\n"
    "complete and verified (safetensors headers parsed, tensors tiling each file). A fetch\n"
    "killed half-way is resumed by the next one; when several run at once, one downloads\n"
    "and the others wait for it.\n"
    "\n"
    "Options:\n"
    "      --config FILE         a YAML file (a ConfigMap) with cache, budget,\n"
    "                            concurrency, log_format and the models to fetch\n"
    "                            (MODELSTREAM_CONFIG); flags, then the environment, win\n"
    "                            over it; SOURCE arguments replace its models\n"
    "      --cache DIR           the cache directory (MODELSTREAM_CACHE_DIR)\n"
    "  -n, --name NAME           the model's name (one SOURCE only; default: the last\n"
    "                            part of the source, 'llama' for s3://bucket/llama/)\n"
    "      --budget B            bytes the cache may hold (200G); least recently used\n"
    "                            files that nobody holds are evicted (MODELSTREAM_CACHE_BUDGET)\n"
    "  -c, --concurrency N       reads in flight per file, 1-256 (default 16)\n"
    "      --chunk-size B        bytes per read (default 16M from object storage, 8M\n"
    "                            from files)\n"
    "      --verify-content      also hash every byte (MD5 against single-part ETags)\n"
    "      --manifest LOCATION   a sha256sum-format list (URL or path) the files must\n"
    "                            match before the model is published (one SOURCE)\n"
    "      --node-connections N  reads in flight against object storage for the whole\n"
    "                            node, all processes together (default 64;\n"
    "                            MODELSTREAM_NODE_CONNECTIONS)\n"
    "      --node-rate B         bytes per second for the whole node (250M; default no\n"
    "                            limit; MODELSTREAM_NODE_RATE)\n"
    "      --fixed-concurrency   keep --concurrency reads in flight instead of adapting:\n"
    "                            by default a fetch grows its reads while they add\n"
    "                            throughput and halves them on SlowDown, 503 or timeouts\n"
    "      --patience S          seconds to wait out a store that keeps failing (SlowDown\n"
    "                            after every retry, refused connections) before exit 7\n"
    "                            (default 600; MODELSTREAM_FETCH_PATIENCE)\n"
    "      --log-format F        text (default) or json: one JSON object per line\n"
    "                            (MODELSTREAM_LOG_FORMAT)\n"
    "      --listen ADDR         serve /healthz, /readyz, /progress, /metrics and a\n"
    "                            websocket at /ws on HOST:PORT while fetching\n"
    "                            (MODELSTREAM_LISTEN; `listen` in the config file)\n"
    "      --stall-deadline S    /healthz turns 503 after S seconds without progress\n"
    "                            (default 120)\n"
    "      --progress-every S    seconds between progress lines when not on a terminal\n"
    "                            (default 5)\n"
    "  -q, --quiet               only errors\n"
    "  -h, --help                show this help\n"
    "\n";

static status_state store_state(ms_fetch_state s)
{
	switch (s) {
	case MS_FETCH_RESOLVING:
		return STATUS_RESOLVING;
	case MS_FETCH_WAITING:
		return STATUS_WAITING;
	case MS_FETCH_VERIFYING:
		return STATUS_VERIFYING;
	case MS_FETCH_DONE:
		return STATUS_READY;
	default:
		return STATUS_DOWNLOADING;
	}
}

/* The store's names for the library's MS_RETRY_* reasons, in that order. */
static const char *const retry_reason_names[MS_RETRY_REASONS] = {
    "slowdown", "server_error", "connection", "timeout", "truncated", "expired_token", "clock_skew",
};

void fetch_register(status *st, const ms_cache *cache, const char *name, const char *source)
{
	char path[4096];

	ms_cache_model_path(path, sizeof(path), cache, name);
	status_add_model(st, name, source, path);
	status_model_state(st, name, STATUS_QUEUED);
}

void fetch_feed_cache_size(status *st, ms_cache *cache, uint64_t budget)
{
	uint64_t used = 0;

	if (ms_cache_usage(&used, cache) == 0)
		status_set_cache(st, used, budget > 0 ? budget : STATUS_UNKNOWN);
}

/* Feeds the health server's store: the model's progress, its files, the counters. */
static void feed_status(reporter *r, const ms_fetch_progress *p)
{
	status_progress sp = {
	    .state = store_state(p->state),
	    .bytes_done = p->bytes_done,
	    .bytes_total = p->state == MS_FETCH_RESOLVING ? STATUS_UNKNOWN : p->bytes_total,
	    .bytes_fetched = p->bytes_fetched,
	    .rate = r->rate,
	    .retries = p->retries,
	    .throttled = p->throttled,
	    .reads_in_flight = p->reads_in_flight,
	    .window = p->window,
	};

	if (p->state == MS_FETCH_DONE)
		return; /* ready once published: the caller says so */
	if (p->state == MS_FETCH_FILE_DONE) {
		sp.state = STATUS_DOWNLOADING;
		status_file(r->st, r->model, p->file, STATUS_READY, p->file_bytes_total,
		            p->file_bytes_total, p->from_cache != 0);
	} else if (p->file != NULL) {
		status_file(r->st, r->model, p->file, sp.state, p->file_bytes_done,
		            p->file_bytes_total, false);
	}
	status_model_progress(r->st, r->model, &sp);
	/* Retries by reason, from the increments (the library's reasons are the store's). */
	for (int i = 0; i < MS_RETRY_REASONS; i++) {
		if (p->retries_by_reason[i] > r->last_reasons[i])
			status_counter_add(r->st, STATUS_COUNTER_RETRIES, retry_reason_names[i],
			                   p->retries_by_reason[i] - r->last_reasons[i]);
		r->last_reasons[i] = p->retries_by_reason[i];
	}
	if (p->slot_waits > r->last_slot_waits)
		status_counter_add(r->st, STATUS_COUNTER_THROTTLE_WAITS, NULL,
		                   p->slot_waits - r->last_slot_waits);
	if (p->models_evicted > r->last_evicted)
		status_counter_add(r->st, STATUS_COUNTER_EVICTIONS, NULL,
		                   p->models_evicted - r->last_evicted);
	r->last_evicted = p->models_evicted;
	r->last_slot_waits = p->slot_waits;
	status_gauge_set(r->st, STATUS_GAUGE_CONCURRENCY_WINDOW, p->window);
	status_gauge_set(r->st, STATUS_GAUGE_ACTIVE_CONNECTIONS, p->reads_in_flight);
}

static double wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void fetch_timestamp(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char base[32];

	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, size, "%.20s.%03dZ", base, (int)(ts.tv_nsec / 1000000) % 1000);
}

static const char *state_name(ms_fetch_state s)
{
	switch (s) {
	case MS_FETCH_RESOLVING:
		return "resolving";
	case MS_FETCH_DOWNLOADING:
		return "downloading";
	case MS_FETCH_WAITING:
		return "waiting";
	case MS_FETCH_VERIFYING:
		return "verifying";
	case MS_FETCH_FILE_DONE:
		return "file-done";
	case MS_FETCH_DONE:
		return "done";
	}
	return "unknown";
}

void fetch_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(out, "\\u%04x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

static void json_line(const reporter *r, const ms_fetch_progress *p, const char *event)
{
	char ts[40];

	fetch_timestamp(ts, sizeof(ts));
	printf("{\"time\":\"%s\",\"event\":\"%s\",\"model\":", ts, event);
	fetch_json_string(stdout, p->model);
	if (p->file != NULL) {
		printf(",\"file\":");
		fetch_json_string(stdout, p->file);
	}
	printf(",\"state\":\"%s\",\"bytes_done\":%llu,\"bytes_total\":%llu,"
	       "\"bytes_fetched\":%llu,\"files_done\":%zu,\"files_total\":%zu,\"retries\":%u,"
	       "\"seconds\":%.3f,\"rate_bytes_per_second\":%.0f,\"throttled\":%u,"
	       "\"reads_in_flight\":%u,\"window\":%u,\"slot_waits\":%llu",
	       state_name(p->state), (unsigned long long)p->bytes_done,
	       (unsigned long long)p->bytes_total, (unsigned long long)p->bytes_fetched,
	       p->files_done, p->files_total, p->retries, p->seconds, r->rate, p->throttled,
	       p->reads_in_flight, p->window, (unsigned long long)p->slot_waits);
	if (p->state == MS_FETCH_FILE_DONE)
		printf(",\"from_cache\":%s", p->from_cache ? "true" : "false");
	if (p->state == MS_FETCH_WAITING)
		printf(",\"waiting_for_pid\":%d", p->waiting_pid);
	printf("}\n");
	fflush(stdout);
}

static void eta_text(char *out, size_t size, const reporter *r, const ms_fetch_progress *p)
{
	double left = status_eta_seconds(p->bytes_done, p->bytes_total, r->rate);

	if (p->bytes_done >= p->bytes_total) {
		snprintf(out, size, "-");
		return;
	}
	if (left < 0) {
		snprintf(out, size, "unknown");
		return;
	}
	if (left < 60)
		snprintf(out, size, "%.0fs", left);
	else if (left < 3600)
		snprintf(out, size, "%.0fm%02.0fs", left / 60 - 0.5, (double)((long)left % 60));
	else
		snprintf(out, size, "%.1fh", left / 3600);
}

static void progress_line(reporter *r, const ms_fetch_progress *p)
{
	char done[32], total[32], eta[32], name[512];
	double pct =
	    p->bytes_total > 0 ? 100.0 * (double)p->bytes_done / (double)p->bytes_total : 100;

	cli_format_bytes(done, sizeof(done), p->bytes_done);
	cli_format_bytes(total, sizeof(total), p->bytes_total);
	eta_text(eta, sizeof(eta), r, p);
	cli_escape(name, sizeof(name), p->file != NULL ? p->file : "");
	if (r->tty) {
		int width = 30, filled = (int)(pct / 100 * width);

		fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %s/%s %.2f GB/s ETA %s %s%s\033[K",
		        p->model, filled, "##############################", width - filled, "", pct,
		        done, total, r->rate / 1e9, eta,
		        p->state == MS_FETCH_WAITING ? "waiting for another process: " : "", name);
		return;
	}
	if (p->state == MS_FETCH_WAITING)
		printf("fetch %s: waiting for process %d, which is downloading %s: %s of %s "
		       "(%.0f%%)\n",
		       p->model, p->waiting_pid, name, done, total, pct);
	else
		printf("fetch %s: %s %s of %s (%.0f%%) at %.2f GB/s, ETA %s, file %zu of %zu %s, "
		       "%u reads in flight (window %u), %u retries, %u throttled\n",
		       p->model, state_name(p->state), done, total, pct, r->rate / 1e9, eta,
		       p->files_done + 1 > p->files_total ? p->files_total : p->files_done + 1,
		       p->files_total, name, p->reads_in_flight, p->window, p->retries,
		       p->throttled);
	fflush(stdout);
}

static void on_progress(const ms_fetch_progress *p, void *payload)
{
	reporter *r = payload;
	double now = p->seconds;

	/* A rate smoothed over about two seconds, from what has landed (here or elsewhere). */
	if (now - r->last_time >= 0.5) {
		double instant = (double)(p->bytes_done - r->last_done) / (now - r->last_time);

		r->rate = r->rate <= 0 ? instant : 0.7 * r->rate + 0.3 * instant;
		r->last_done = p->bytes_done;
		r->last_time = now;
	}
	if (p->state == MS_FETCH_DONE)
		r->final = *p;
	if (r->st != NULL)
		feed_status(r, p);
	if (r->quiet)
		return;
	if (p->state == MS_FETCH_FILE_DONE) {
		char size[32], name[512];

		if (r->format == LOG_JSON) {
			json_line(r, p, "file");
			return;
		}
		if (r->tty)
			fputc('\n', stderr);
		cli_escape(name, sizeof(name), p->file);
		cli_format_bytes(size, sizeof(size), p->bytes_done);
		printf("fetch %s: %s ready (%zu of %zu files, %s of the model; %s)\n", p->model,
		       name, p->files_done, p->files_total, size,
		       p->from_cache ? "already in the cache" : "fetched and verified");
		fflush(stdout);
		return;
	}
	if (p->state == MS_FETCH_DONE || p->state == MS_FETCH_RESOLVING)
		return;
	if (p->state != r->last_state && p->state == MS_FETCH_WAITING) {
		r->last_state = p->state;
		r->last_line = now; /* say it at once */
		if (r->format == LOG_JSON)
			json_line(r, p, "waiting");
		else if (!r->tty)
			progress_line(r, p);
		return;
	}
	r->last_state = p->state;
	if (r->tty) {
		if (now - r->last_line >= 0.2) {
			r->last_line = now;
			progress_line(r, p);
		}
		return;
	}
	if (now - r->last_line < r->every)
		return;
	r->last_line = now;
	if (r->format == LOG_JSON)
		json_line(r, p, "progress");
	else
		progress_line(r, p);
}

/* The name a source gets without --name: its last path part, made a valid name. */
static void derive_name(char *out, size_t size, const char *source)
{
	size_t n = strlen(source), start, len, j = 0;
	const char *dot;

	while (n > 0 && source[n - 1] == '/')
		n--;
	start = n;
	while (start > 0 && source[start - 1] != '/')
		start--;
	len = n - start;
	dot = memchr(source + start, '.', len);
	if (dot != NULL && len > 12 && strncmp(source + n - 12, ".safetensors", 12) == 0)
		len -= 12;
	for (size_t i = 0; i < len && j + 1 < size && j < 128; i++) {
		char ch = source[start + i];

		out[j++] =
		    isalnum((unsigned char)ch) || ch == '.' || ch == '_' || ch == '-' ? ch : '-';
	}
	out[j] = '\0';
	while (out[0] == '.')
		memmove(out, out + 1, strlen(out));
	if (out[0] == '\0')
		snprintf(out, size, "model");
}

/* Finds --config FILE (or MODELSTREAM_CONFIG) before the other options are read, and loads
 * it as the base that the environment and the flags override. */
static int load_config(fetch_args *a, int argc, char **argv)
{
	const char *path = getenv("MODELSTREAM_CONFIG");
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			path = argv[i] + 9;
	}
	if (path == NULL || path[0] == '\0')
		return 0;
	if (cli_config_load(&a->cfg, path, err, sizeof(err)) < 0)
		return cli_usage_error("%s", err);
	a->have_cfg = 1;
	a->config_path = path;
	if (a->cfg.cache != NULL)
		a->cache = a->cfg.cache;
	if (a->cfg.budget >= 0)
		a->opts.budget = (uint64_t)a->cfg.budget;
	if (a->cfg.concurrency > 0)
		a->opts.concurrency = a->cfg.concurrency;
	if (a->cfg.log_format != NULL)
		a->r.format = strcmp(a->cfg.log_format, "json") == 0 ? LOG_JSON : LOG_TEXT;
	if (a->cfg.listen != NULL)
		a->listen = a->cfg.listen;
	return 0;
}

/* The options only `serve` takes. Returns 0 or an exit code. */
static int serve_option(fetch_args *a, int option, const char *value)
{
	char *end = NULL;
	double seconds;

	if (option == 'W') {
		if (a->wait_for_count == FETCH_WAIT_FOR_MAX)
			return cli_usage_error("--wait-for: at most %d models", FETCH_WAIT_FOR_MAX);
		a->wait_for[a->wait_for_count++] = value;
		return 0;
	}
	seconds = strtod(value, &end);
	if (end == value || *end != '\0' || seconds < (option == 'g' ? 0 : 0.1) || seconds > 86400)
		return cli_usage_error("--%s must be %s-86400 seconds, not '%s'",
		                       option == 'g' ? "evict-grace" : "reconcile-every",
		                       option == 'g' ? "0" : "0.1", value);
	if (option == 'g')
		a->evict_grace = seconds;
	else
		a->reconcile_every = seconds;
	return 0;
}

int fetch_parse_args(fetch_args *a, int argc, char **argv)
{
	static const struct option options[] = {
	    {"cache", required_argument, NULL, 'C'},
	    {"config", required_argument, NULL, 'G'},
	    {"manifest", required_argument, NULL, 'M'},
	    {"name", required_argument, NULL, 'n'},
	    {"budget", required_argument, NULL, 'b'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"chunk-size", required_argument, NULL, 'k'},
	    {"verify-content", no_argument, NULL, 'V'},
	    {"node-connections", required_argument, NULL, 'N'},
	    {"node-rate", required_argument, NULL, 'R'},
	    {"fixed-concurrency", no_argument, NULL, 'F'},
	    {"patience", required_argument, NULL, 'P'},
	    {"listen", required_argument, NULL, 'L'},
	    {"stall-deadline", required_argument, NULL, 'D'},
	    {"log-format", required_argument, NULL, 'l'},
	    {"progress-every", required_argument, NULL, 'e'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {"wait-for", required_argument, NULL, 'W'},
	    {"reconcile-every", required_argument, NULL, 'r'},
	    {"evict-grace", required_argument, NULL, 'g'},
	    {NULL, 0, NULL, 0},
	};
	const char *env;
	int64_t size;
	unsigned n;
	int c;

	/* The file first, then the environment, then the flags. */
	if ((c = load_config(a, argc, argv)) != 0)
		return c;
	if ((env = getenv("MODELSTREAM_CACHE_DIR")) != NULL && env[0] != '\0')
		a->cache = env;
	if ((env = getenv("MODELSTREAM_LISTEN")) != NULL && env[0] != '\0')
		a->listen = env;
	if ((env = getenv("MODELSTREAM_CACHE_BUDGET")) != NULL && env[0] != '\0') {
		if (cli_parse_size(&size, env) < 0 || size < 0)
			return cli_usage_error("MODELSTREAM_CACHE_BUDGET must be a size like 200G, "
			                       "not '%.40s'",
			                       env);
		a->opts.budget = (uint64_t)size;
	}
	if ((env = getenv("MODELSTREAM_NODE_CONNECTIONS")) != NULL && env[0] != '\0') {
		if (cli_parse_uint(&n, env, 1, 4096) < 0)
			return cli_usage_error("MODELSTREAM_NODE_CONNECTIONS must be 1-4096, not "
			                       "'%.40s'",
			                       env);
		a->opts.node_connections = n;
	}
	if ((env = getenv("MODELSTREAM_FETCH_PATIENCE")) != NULL && env[0] != '\0') {
		if (cli_parse_uint(&n, env, 1, 86400) < 0)
			return cli_usage_error(
			    "MODELSTREAM_FETCH_PATIENCE must be 1-86400 seconds, "
			    "not '%.40s'",
			    env);
		a->opts.patience_seconds = n;
	}
	if ((env = getenv("MODELSTREAM_NODE_RATE")) != NULL && env[0] != '\0') {
		if (cli_parse_size(&size, env) < 0 || size < 1)
			return cli_usage_error(
			    "MODELSTREAM_NODE_RATE must be bytes per second like "
			    "250M, not '%.40s'",
			    env);
		a->opts.node_bytes_per_second = (uint64_t)size;
	}
	if ((env = getenv("MODELSTREAM_LOG_FORMAT")) != NULL && env[0] != '\0') {
		if (strcmp(env, "json") != 0 && strcmp(env, "text") != 0)
			return cli_usage_error("MODELSTREAM_LOG_FORMAT must be text or json, not "
			                       "'%.40s'",
			                       env);
		a->r.format = strcmp(env, "json") == 0 ? LOG_JSON : LOG_TEXT;
	}
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "n:c:qh", options, NULL)) != -1) {
		switch (c) {
		case 'C':
			a->cache = optarg;
			break;
		case 'G':
			break; /* read by load_config() */
		case 'M':
			a->manifest = optarg;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 'b':
			if (cli_parse_size(&size, optarg) < 0 || size < 0)
				return cli_usage_error(
				    "--budget must be a size like 200G, not '%s'", optarg);
			a->opts.budget = (uint64_t)size;
			break;
		case 'c':
			if (cli_parse_uint(&n, optarg, 1, 256) < 0)
				return cli_usage_error("--concurrency must be 1-256, not '%s'",
				                       optarg);
			a->opts.concurrency = (int)n;
			break;
		case 'k':
			if (cli_parse_size(&size, optarg) < 0 || size < 65536 || size > (1LL << 30))
				return cli_usage_error("--chunk-size must be 64K-1G, not '%s'",
				                       optarg);
			a->opts.chunk_size = (uint64_t)size;
			break;
		case 'V':
			a->opts.verify_content = 1;
			break;
		case 'N':
			if (cli_parse_uint(&n, optarg, 1, 4096) < 0)
				return cli_usage_error(
				    "--node-connections must be 1-4096, not '%s'", optarg);
			a->opts.node_connections = n;
			break;
		case 'R':
			if (cli_parse_size(&size, optarg) < 0 || size < 1)
				return cli_usage_error(
				    "--node-rate must be bytes per second like 250M, not "
				    "'%s'",
				    optarg);
			a->opts.node_bytes_per_second = (uint64_t)size;
			break;
		case 'F':
			a->opts.fixed_concurrency = 1;
			break;
		case 'L':
			a->listen = optarg;
			break;
		case 'D':
			a->stall_deadline = strtod(optarg, NULL);
			if (a->stall_deadline < 1 || a->stall_deadline > 86400)
				return cli_usage_error(
				    "--stall-deadline must be 1-86400 seconds, not '%s'", optarg);
			break;
		case 'P':
			if (cli_parse_uint(&n, optarg, 1, 86400) < 0)
				return cli_usage_error(
				    "--patience must be 1-86400 seconds, not '%s'", optarg);
			a->opts.patience_seconds = n;
			break;
		case 'l':
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0)
				return cli_usage_error(
				    "--log-format must be text or json, not '%s'", optarg);
			a->r.format = strcmp(optarg, "json") == 0 ? LOG_JSON : LOG_TEXT;
			break;
		case 'e':
			a->r.every = strtod(optarg, NULL);
			if (a->r.every <= 0 || a->r.every > 3600)
				return cli_usage_error(
				    "--progress-every must be 0.1-3600 seconds, not "
				    "'%s'",
				    optarg);
			break;
		case 'q':
			a->r.quiet = 1;
			break;
		case 'W':
		case 'r':
		case 'g':
			if (!a->serve)
				return cli_usage_error("%s is an option of `modelstream serve`",
				                       argv[optind - 1]);
			if ((c = serve_option(a, c, optarg)) != 0)
				return c;
			break;
		case 'h':
			fputs(fetch_usage, stdout);
			fputs(cli_exit_codes_help, stdout);
			return -1;
		default:
			return cli_option_error("fetch", optopt, argv[optind - 1]);
		}
	}
	if (optind >= argc && !(a->have_cfg && a->cfg.model_count > 0) && !a->serve)
		return cli_usage_error("fetch needs at least one SOURCE, or --config FILE listing "
		                       "models (see 'modelstream fetch --help')");
	if (a->name != NULL && optind >= argc && a->cfg.model_count > 1)
		return cli_usage_error("--name names one model; the config file lists %zu",
		                       a->cfg.model_count);
	if (a->manifest != NULL && argc - optind != 1)
		return cli_usage_error("--manifest goes with exactly one SOURCE");
	if (a->cache == NULL || a->cache[0] == '\0')
		return cli_usage_error("%s needs --cache DIR (or MODELSTREAM_CACHE_DIR)",
		                       a->serve ? "serve" : "fetch");
	if (a->wait_for_count > 0 && (optind < argc || a->cfg.model_count > 0))
		return cli_usage_error("--wait-for waits for models the node agent fetches; give "
		                       "no SOURCE and no models in the config file with it");
	if (a->name != NULL && argc - optind > 1)
		return cli_usage_error(
		    "--name names one model; give one SOURCE per fetch, or none");
	return 0;
}

/* The model's name: --name, the config file's, or one made from the source. */
void fetch_model_name(char *out, size_t size, const fetch_args *a, const cli_model *m,
                      const char *source)
{
	if (a->name != NULL || (m != NULL && m->name != NULL))
		snprintf(out, size, "%s", a->name != NULL ? a->name : m->name);
	else
		derive_name(out, size, source);
}

int fetch_model(const fetch_args *a, ms_cache *cache, status *st, const char *name,
                const char *source, const char *manifest)
{
	char path[4096], size[32], shown[512];
	double start = wall_seconds(), seconds;
	reporter r = a->r;
	int rc;

	r.st = st;
	r.model = name;
	cli_escape(shown, sizeof(shown), source);
	if (!r.quiet && r.format == LOG_TEXT) {
		printf("fetch %s: from %s into %s (%s)\n", name, shown, a->cache,
		       ms_cache_medium_name(ms_cache_medium_of(cache)));
		fflush(stdout);
	}
	rc = ms_cache_fetch_verified(cache, source, name, manifest, on_progress, &r);
	if (r.tty)
		fputc('\n', stderr);
	if (rc < 0) {
		if (st != NULL)
			status_model_failed(st, name, ms_error_last()->message);
		if (r.format == LOG_JSON) {
			char ts[40];

			fetch_timestamp(ts, sizeof(ts));
			printf("{\"time\":\"%s\",\"event\":\"error\",\"model\":", ts);
			fetch_json_string(stdout, name);
			printf(",\"code\":\"%s\",\"message\":", ms_strerror(rc));
			fetch_json_string(stdout, ms_error_last()->message);
			printf("}\n");
			fflush(stdout);
		}
		return cli_fail(rc);
	}
	if (st != NULL) {
		status_model_ready(st, name);
		fetch_feed_cache_size(st, cache, a->opts.budget);
	}
	seconds = wall_seconds() - start;
	ms_cache_model_path(path, sizeof(path), cache, name);
	if (!r.quiet && r.format == LOG_TEXT) {
		char fetched[32], other[32];

		cli_format_bytes(size, sizeof(size), r.final.bytes_total);
		cli_format_bytes(fetched, sizeof(fetched), r.final.bytes_fetched);
		cli_format_bytes(other, sizeof(other), r.final.bytes_total - r.final.bytes_fetched);
		printf("fetch %s: ready at %s: %zu files, %s in %.1f s (%.2f GB/s); %s "
		       "downloaded by this process, %s already cached or fetched by another; "
		       "%u retries, %u throttled\n",
		       name, path, r.final.files_total, size, seconds,
		       seconds > 0 ? (double)r.final.bytes_fetched / seconds / 1e9 : 0.0, fetched,
		       other, r.final.retries, r.final.throttled);
		fflush(stdout);
	} else if (!r.quiet) {
		char ts[40];

		fetch_timestamp(ts, sizeof(ts));
		printf("{\"time\":\"%s\",\"event\":\"done\",\"model\":", ts);
		fetch_json_string(stdout, name);
		printf(",\"path\":");
		fetch_json_string(stdout, path);
		printf(",\"files\":%zu,\"bytes_total\":%llu,\"bytes_fetched\":%llu,"
		       "\"retries\":%u,\"throttled\":%u,\"seconds\":%.3f}\n",
		       r.final.files_total, (unsigned long long)r.final.bytes_total,
		       (unsigned long long)r.final.bytes_fetched, r.final.retries,
		       r.final.throttled, seconds);
		fflush(stdout);
	}
	return EXIT_OK;
}

int cmd_fetch(int argc, char **argv)
{
	ms_cancel *stop_token;
	fetch_args a = {.opts = MS_CACHE_OPTIONS_INIT, .r = {.every = 5}};
	ms_cache *cache = NULL;
	status *st = NULL;
	server *srv = NULL;
	char err[512];
	size_t jobs;
	int rc;

	if ((rc = fetch_parse_args(&a, argc, argv)) != 0) {
		cli_config_free(&a.cfg);
		return rc < 0 ? EXIT_OK : rc;
	}
	a.r.tty = a.r.format == LOG_TEXT && isatty(STDERR_FILENO) && isatty(STDOUT_FILENO);
	/* SIGTERM or SIGINT: the fetch stops within a quarter of a second, leaving what it
	 * has downloaded for the next fetch to resume. */
	if ((stop_token = cli_cancel_on_signals()) == NULL) {
		rc = cli_fail(MS_ENOMEM);
		goto done;
	}
	a.opts.cancel = stop_token;
	if ((rc = ms_cache_open(&cache, a.cache, &a.opts)) < 0) {
		rc = cli_fail(rc);
		goto done;
	}
	jobs = optind < argc ? (size_t)(argc - optind) : a.cfg.model_count;
	if (a.listen != NULL) {
		server_options so = {.listen = a.listen};

		if ((st = status_new(a.stall_deadline, NULL, NULL)) == NULL) {
			rc = cli_usage_error("out of memory");
			goto done;
		}
		/* Every model is known (queued) from the start, so /readyz names what it waits
		 * for. */
		for (size_t j = 0; j < jobs; j++) {
			const cli_model *m = optind < argc ? NULL : &a.cfg.models[j];
			const char *source = m != NULL ? m->source : argv[optind + (int)j];
			char name[160];

			fetch_model_name(name, sizeof(name), &a, m, source);
			fetch_register(st, cache, name, source);
		}
		fetch_feed_cache_size(st, cache, a.opts.budget);
		so.status = st;
		if (server_start(&srv, &so, err, sizeof(err)) < 0) {
			rc = cli_usage_error("%s", err);
			goto done;
		}
		if (!a.r.quiet && a.r.format == LOG_TEXT)
			printf("fetch: health, progress and metrics on %s (port %d)\n", a.listen,
			       server_port(srv));
		fflush(stdout);
	}
	for (size_t j = 0; j < jobs && rc == EXIT_OK; j++) {
		const cli_model *m = optind < argc ? NULL : &a.cfg.models[j];
		const char *source = m != NULL ? m->source : argv[optind + (int)j];
		char name[160];

		fetch_model_name(name, sizeof(name), &a, m, source);
		/* An init container fails at the first model that fails. */
		rc = fetch_model(&a, cache, st, name, source,
		                 m != NULL ? m->sha256_manifest : a.manifest);
	}
done:
	if (ms_cancel_fired(stop_token))
		rc = EXIT_CANCELED;
	server_stop(srv);
	status_free(st);
	ms_cache_free(cache);
	cli_config_free(&a.cfg);
	return rc;
}
