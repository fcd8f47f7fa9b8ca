/*
 * test_status.c - the status store of the health server (cmd/modelstream/status.c): model
 * and file states, counters, the /progress JSON schema, the Prometheus text it renders
 * (checked line by line against the 0.0.4 format, label escaping included), /readyz and
 * /healthz transitions, stall detection on an injected clock, that no secret in a source
 * or a message survives, and that every failed allocation is handled without a leak.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../cmd/modelstream/status.h"
#include "alloc.h"
#include "support/testutil.h"

TestSuite(status, .timeout = 60);

/* A clock the test moves by hand. */
typedef struct {
	double now;
} fake_clock;

static double fake_now(void *payload)
{
	return ((fake_clock *)payload)->now;
}

static status_progress downloading(uint64_t done, uint64_t total)
{
	return (status_progress){.state = STATUS_DOWNLOADING,
	                         .bytes_done = done,
	                         .bytes_total = total,
	                         .bytes_fetched = done,
	                         .rate = 1000,
	                         .reads_in_flight = 2,
	                         .window = 4};
}

static int readyz(status *s, char *out, size_t size)
{
	char *body = NULL;
	int code = status_render_readyz(s, &body);

	cr_assert_not_null(body);
	snprintf(out, size, "%s", body);
	ms__free(body);
	return code;
}

static int healthz(status *s, char *out, size_t size)
{
	char *body = NULL;
	int code = status_render_healthz(s, &body);

	cr_assert_not_null(body);
	snprintf(out, size, "%s", body);
	ms__free(body);
	return code;
}

static cJSON *progress_json(status *s)
{
	char *text = status_render_progress(s);
	cJSON *doc;

	cr_assert_not_null(text);
	doc = cJSON_Parse(text);
	cr_assert_not_null(doc, "not JSON: %s", text);
	ms__free(text);
	return doc;
}

static cJSON *model_json(cJSON *doc, size_t i)
{
	cJSON *models = cJSON_GetObjectItemCaseSensitive(doc, "models");

	cr_assert(cJSON_IsArray(models));
	return cJSON_GetArrayItem(models, (int)i);
}

static double number(cJSON *object, const char *key)
{
	cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	cr_assert(cJSON_IsNumber(item), "'%s' is not a number", key);
	return item->valuedouble;
}

static const char *string(cJSON *object, const char *key)
{
	cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	cr_assert(cJSON_IsString(item), "'%s' is not a string", key);
	return item->valuestring;
}

static bool is_null(cJSON *object, const char *key)
{
	return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(object, key));
}

Test(status, no_models_is_ready_and_healthy)
{
	status *s = status_new(0, NULL, NULL);
	char body[256];

	cr_assert_not_null(s);
	cr_assert(status_ready(s));
	cr_assert_eq(readyz(s, body, sizeof(body)), 200);
	cr_assert_str_eq(body, "ready\n");
	cr_assert_eq(healthz(s, body, sizeof(body)), 200);
	cr_assert_str_eq(body, "ok\n");
	status_free(s);
	status_free(NULL);
}

Test(status, readyz_flips_only_when_every_model_is_ready)
{
	fake_clock clock = {100};
	status *s = status_new(0, fake_now, &clock);
	status_progress p = downloading(0, 2000);
	char body[256];

	cr_assert_eq(status_add_model(s, "a", "s3://b/a/", "/cache/a"), 0);
	cr_assert_eq(status_add_model(s, "b", "s3://b/b/", "/cache/b"), 0);
	cr_assert_eq(status_add_model(s, "a", "s3://b/a/", "/cache/a"), -1, "a duplicate name");
	cr_assert_eq(readyz(s, body, sizeof(body)), 503);
	cr_assert_str_eq(body, "not ready: model a is queued\n");

	cr_assert_eq(status_model_progress(s, "a", &p), 0);
	p.bytes_done = 500;
	cr_assert_eq(status_model_progress(s, "a", &p), 0);
	cr_assert_eq(readyz(s, body, sizeof(body)), 503);
	cr_assert_str_eq(body, "not ready: model a is downloading (500 of 2000 bytes, 25%)\n");

	p.bytes_done = 2000;
	p.state = STATUS_VERIFYING;
	cr_assert_eq(status_model_progress(s, "a", &p), 0);
	cr_assert_eq(readyz(s, body, sizeof(body)), 503, "verifying is not ready");
	cr_assert_eq(status_model_ready(s, "a"), 0);
	cr_assert_eq(readyz(s, body, sizeof(body)), 503);
	cr_assert_str_eq(body, "not ready: model b is queued\n");
	cr_assert_not(status_ready(s));

	clock.now = 107.5;
	cr_assert_eq(status_model_ready(s, "b"), 0);
	cr_assert_eq(readyz(s, body, sizeof(body)), 200);
	cr_assert(status_ready(s));

	cJSON *doc = progress_json(s);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "ready")));
	cr_assert_float_eq(number(doc, "time_to_ready_seconds"), 7.5, 1e-9);
	cJSON_Delete(doc);

	cr_assert_eq(status_model_ready(s, "nope"), -1);
	cr_assert_eq(status_model_progress(s, "nope", &p), -1);
	status_free(s);
}

Test(status, failed_model_keeps_readyz_503_with_its_message)
{
	status *s = status_new(0, NULL, NULL);
	char body[512];

	status_add_model(s, "a", "s3://b/a/", "/cache/a");
	cr_assert_eq(status_model_failed(s, "a", "s3://b/a/x: 403 AccessDenied\nsecond line"), 0);
	cr_assert_eq(readyz(s, body, sizeof(body)), 503);
	cr_assert_str_eq(body,
	                 "not ready: model a failed: s3://b/a/x: 403 AccessDenied second line\n");
	cr_assert_eq(healthz(s, body, sizeof(body)), 200, "a failure is not a stall");

	cJSON *doc = progress_json(s);
	cJSON *m = model_json(doc, 0);
	cr_assert_str_eq(string(m, "state"), "failed");
	cr_assert_str_eq(string(m, "error"), "s3://b/a/x: 403 AccessDenied second line");
	cJSON_Delete(doc);
	status_free(s);
}

Test(status, stall_turns_healthz_503_and_progress_heals_it)
{
	fake_clock clock = {0};
	status *s = status_new(10, fake_now, &clock);
	status_progress p = downloading(100, 1000);
	char body[256];
	char name[16];
	double seconds = -1;

	status_add_model(s, "slow", "s3://b/slow/", "/cache/slow");
	status_add_model(s, "later", "s3://b/later/", "/cache/later");
	status_model_progress(s, "slow", &p);

	clock.now = 9.9;
	cr_assert_eq(healthz(s, body, sizeof(body)), 200);
	clock.now = 10.5;
	cr_assert_eq(healthz(s, body, sizeof(body)), 503);
	cr_assert_str_eq(body, "stalled: model slow made no progress for 10 s\n");
	cr_assert(status_stalled(s, name, sizeof(name), &seconds));
	cr_assert_str_eq(name, "slow");
	cr_assert_float_eq(seconds, 10.5, 1e-9);

	/* The same numbers again are no progress; more bytes are. */
	status_model_progress(s, "slow", &p);
	cr_assert_eq(healthz(s, body, sizeof(body)), 503);
	p.bytes_done = 200;
	status_model_progress(s, "slow", &p);
	cr_assert_eq(healthz(s, body, sizeof(body)), 200);

	/* A file's bytes count as progress too. */
	clock.now = 30;
	cr_assert_eq(healthz(s, body, sizeof(body)), 503);
	status_file(s, "slow", "f", STATUS_DOWNLOADING, 1, 10, false);
	cr_assert_eq(healthz(s, body, sizeof(body)), 200);

	/* A queued model stalls only when nothing at all moves. */
	status_model_ready(s, "slow");
	clock.now = 39;
	cr_assert_eq(healthz(s, body, sizeof(body)), 200);
	clock.now = 41;
	cr_assert_eq(healthz(s, body, sizeof(body)), 503);
	cr_assert_str_eq(body, "stalled: model later made no progress for 11 s\n");

	cJSON *doc = progress_json(s);
	cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "healthy")));
	cJSON_Delete(doc);
	char *metrics = status_render_metrics(s);
	cr_assert_not_null(strstr(metrics, "\nmodelstream_healthy 0\n"));
	ms__free(metrics);

	status_model_ready(s, "later");
	cr_assert_eq(healthz(s, body, sizeof(body)), 200, "ready models never stall");
	clock.now = 1000;
	cr_assert_eq(healthz(s, body, sizeof(body)), 200);
	status_free(s);
}

Test(status, progress_json_follows_the_schema)
{
	fake_clock clock = {5};
	status *s = status_new(0, fake_now, &clock);
	status_progress p = downloading(250, 1000);

	status_add_model(s, "m", "s3://bucket/m/", "/cache/m");
	status_add_model(s, "unknown", "gs://bucket/u/", "/cache/u");
	p.retries = 3;
	p.throttled = 2;
	status_model_progress(s, "m", &p);
	status_file(s, "m", "a.safetensors", STATUS_DOWNLOADING, 250, 500, false);
	status_file(s, "m", "b.safetensors", STATUS_READY, 500, 500, true);
	status_counter_add(s, STATUS_COUNTER_RETRIES, "slowdown", 2);
	status_counter_add(s, STATUS_COUNTER_RETRIES, "made_up", 1);
	status_counter_add(s, STATUS_COUNTER_RETRIES, NULL, 1);
	status_counter_add(s, STATUS_COUNTER_EVICTIONS, NULL, 4);
	status_counter_add(s, STATUS_COUNTER_THROTTLE_WAITS, NULL, 6);
	status_gauge_set(s, STATUS_GAUGE_ACTIVE_CONNECTIONS, 7);
	status_gauge_set(s, STATUS_GAUGE_CONCURRENCY_WINDOW, 9);
	status_set_cache(s, 12345, STATUS_UNKNOWN);
	clock.now = 6.25;

	cJSON *doc = progress_json(s);
	cr_assert_eq(number(doc, "version"), 1);
	cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "ready")));
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "healthy")));
	cr_assert_float_eq(number(doc, "uptime_seconds"), 1.25, 1e-9);
	cr_assert(is_null(doc, "time_to_ready_seconds"));

	cJSON *m = model_json(doc, 0);
	cr_assert_str_eq(string(m, "name"), "m");
	cr_assert_str_eq(string(m, "source"), "s3://bucket/m/");
	cr_assert_str_eq(string(m, "cache_path"), "/cache/m");
	cr_assert_str_eq(string(m, "state"), "downloading");
	cr_assert(is_null(m, "error"));
	cr_assert_eq(number(m, "bytes_done"), 250);
	cr_assert_eq(number(m, "bytes_total"), 1000);
	cr_assert_eq(number(m, "bytes_fetched"), 250);
	cr_assert_eq(number(m, "rate_bytes_per_second"), 1000);
	cr_assert_float_eq(number(m, "eta_seconds"), 0.75, 1e-9);
	cr_assert_eq(number(m, "retries"), 3);
	cr_assert_eq(number(m, "throttled"), 2);
	cr_assert_eq(number(m, "reads_in_flight"), 2);
	cr_assert_eq(number(m, "concurrency_window"), 4);
	cr_assert_float_eq(number(m, "seconds_since_progress"), 1.25, 1e-9);
	cJSON *files = cJSON_GetObjectItemCaseSensitive(m, "files");
	cr_assert_eq(cJSON_GetArraySize(files), 2);
	cJSON *f = cJSON_GetArrayItem(files, 1);
	cr_assert_str_eq(string(f, "path"), "b.safetensors");
	cr_assert_str_eq(string(f, "state"), "ready");
	cr_assert_eq(number(f, "bytes_done"), 500);
	cr_assert_eq(number(f, "bytes_total"), 500);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "from_cache")));

	cJSON *u = model_json(doc, 1);
	cr_assert_str_eq(string(u, "state"), "queued");
	cr_assert(is_null(u, "bytes_total"), "an unknown total is null");
	cr_assert(is_null(u, "eta_seconds"));
	cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(u, "files")), 0);

	cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "counters");
	cr_assert_eq(number(c, "bytes_fetched"), 250);
	cr_assert_eq(number(c, "bytes_served_from_cache"), 500);
	cr_assert_eq(number(c, "cache_hits"), 1);
	cr_assert_eq(number(c, "cache_misses"), 1);
	cr_assert_eq(number(c, "evictions"), 4);
	cr_assert_eq(number(c, "throttle_waits"), 6);
	cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "retries");
	cr_assert_eq(cJSON_GetArraySize(r), 8);
	cr_assert_eq(number(r, "slowdown"), 2);
	cr_assert_eq(number(r, "other"), 2);
	cr_assert_eq(number(r, "clock_skew"), 0);
	cr_assert_eq(number(doc, "active_connections"), 7);
	cr_assert_eq(number(doc, "concurrency_window"), 9);
	cJSON *cache = cJSON_GetObjectItemCaseSensitive(doc, "cache");
	cr_assert_eq(number(cache, "size_bytes"), 12345);
	cr_assert(is_null(cache, "budget_bytes"));
	cJSON_Delete(doc);
	status_free(s);
}

Test(status, counters_count_each_thing_once)
{
	status *s = status_new(0, NULL, NULL);
	status_progress p = downloading(100, 1000);

	status_add_model(s, "m", "s3://b/m/", "/c/m");
	status_model_progress(s, "m", &p);
	p.bytes_fetched = 300;
	status_model_progress(s, "m", &p);
	p.bytes_fetched = 200; /* lower: ignored, not subtracted */
	status_model_progress(s, "m", &p);
	status_counter_add(s, STATUS_COUNTER_BYTES_FETCHED, NULL, 11);
	for (int i = 0; i < 3; i++) {
		status_file(s, "m", "hit", STATUS_READY, 40, 40, true);
		status_file(s, "m", "miss", STATUS_DOWNLOADING, (uint64_t)i, 40, false);
	}
	cr_assert_eq(status_file(s, "nope", "x", STATUS_READY, 1, 1, false), -1);

	cJSON *doc = progress_json(s);
	cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "counters");
	cr_assert_eq(number(c, "bytes_fetched"), 311);
	cr_assert_eq(number(c, "cache_hits"), 1);
	cr_assert_eq(number(c, "cache_misses"), 1);
	cr_assert_eq(number(c, "bytes_served_from_cache"), 40);
	cr_assert_eq(number(model_json(doc, 0), "bytes_fetched"), 300);
	cJSON_Delete(doc);
	status_free(s);
}

/* ---------------------------------------------------------------------------------------
 * Prometheus text format 0.0.4 */

static regex_t help_re, type_re, sample_re;

static void compile_regexes(void)
{
	cr_assert_eq(regcomp(&help_re, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n]+$", REG_EXTENDED),
	             0);
	cr_assert_eq(regcomp(&type_re,
	                     "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|untyped)$",
	                     REG_EXTENDED),
	             0);
	/* name, optional {label="value",...} where a value is escaped, then a float. */
	cr_assert_eq(regcomp(&sample_re,
	                     "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
	                     "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
	                     "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\")*\\})?"
	                     " (-?[0-9.eE+-]+|NaN|[+-]Inf)$",
	                     REG_EXTENDED),
	             0);
}

static void free_regexes(void)
{
	regfree(&help_re);
	regfree(&type_re);
	regfree(&sample_re);
}

/* Checks every line of `text` and returns the number of samples. */
static int check_exposition(const char *text)
{
	char family[128] = "";
	char type[16] = "";
	int samples = 0;
	const char *line = text;

	cr_assert(text[0] != '\0' && text[strlen(text) - 1] == '\n', "ends with a newline");
	while (*line != '\0') {
		const char *eol = strchr(line, '\n');
		char buf[4096];
		regmatch_t m[3];
		size_t len = (size_t)(eol - line);

		cr_assert_lt(len, sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (strncmp(buf, "# HELP ", 7) == 0) {
			cr_assert_eq(regexec(&help_re, buf, 3, m, 0), 0, "bad HELP: %s", buf);
			snprintf(family, sizeof(family), "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
			         buf + m[1].rm_so);
			cr_assert(strncmp(family, "modelstream_", 12) == 0, "%s", family);
			type[0] = '\0';
		} else if (strncmp(buf, "# TYPE ", 7) == 0) {
			cr_assert_eq(regexec(&type_re, buf, 3, m, 0), 0, "bad TYPE: %s", buf);
			cr_assert(strncmp(buf + 7, family, strlen(family)) == 0 &&
			              buf[7 + strlen(family)] == ' ',
			          "TYPE for another family than HELP: %s", buf);
			snprintf(type, sizeof(type), "%s", buf + 8 + strlen(family));
			size_t fl = strlen(family);
			bool total = fl > 6 && strcmp(family + fl - 6, "_total") == 0;
			cr_assert_eq(total, strcmp(type, "counter") == 0,
			             "counters and only counters end in _total: %s", family);
		} else {
			cr_assert_eq(regexec(&sample_re, buf, 3, m, 0), 0, "bad sample: '%s'", buf);
			cr_assert(type[0] != '\0', "sample without TYPE: %s", buf);
			cr_assert(strncmp(buf, family, strlen(family)) == 0 &&
			              (buf[strlen(family)] == ' ' || buf[strlen(family)] == '{'),
			          "sample outside its family: %s", buf);
			samples++;
		}
		line = eol + 1;
	}
	return samples;
}

Test(status, metrics_are_valid_exposition_format, .init = compile_regexes, .fini = free_regexes)
{
	status *s = status_new(0, NULL, NULL);
	status_progress p = downloading(10, 100);

	status_add_model(s, "plain", "s3://b/p/", "/c/p");
	status_add_model(s, "we\"ird\\na\nme", "s3://b/w/", "/c/w");
	status_model_progress(s, "plain", &p);
	status_counter_add(s, STATUS_COUNTER_RETRIES, "timeout", 5);
	status_set_cache(s, 10, 1000);

	char *text = status_render_metrics(s);
	cr_assert_not_null(text);
	cr_assert_gt(check_exposition(text), 20);
	/* The newline inside the name was made a space when it came in; quote and backslash
	 * are escaped in the label. */
	cr_assert_not_null(
	    strstr(text, "modelstream_model_done_bytes{model=\"we\\\"ird\\\\na me\"} 0\n"), "%s",
	    text);
	cr_assert_not_null(strstr(text, "\nmodelstream_model_done_bytes{model=\"plain\"} 10\n"));
	cr_assert_not_null(strstr(text, "\nmodelstream_retries_total{reason=\"timeout\"} 5\n"));
	cr_assert_not_null(strstr(text, "\nmodelstream_retries_total{reason=\"other\"} 0\n"));
	cr_assert_not_null(strstr(text, "\nmodelstream_bytes_fetched_total 10\n"));
	cr_assert_not_null(strstr(text, "\nmodelstream_cache_budget_bytes 1000\n"));
	cr_assert_not_null(strstr(text, "\nmodelstream_ready 0\n"));
	cr_assert_null(strstr(text, "\nmodelstream_time_to_ready_seconds "), "not ready yet");
	/* Only per-model gauges carry the model label. */
	for (const char *q = text; (q = strstr(q, "model=\"")) != NULL; q++) {
		const char *bol = q;
		while (bol > text && bol[-1] != '\n')
			bol--;
		cr_assert(strncmp(bol, "modelstream_model_", 18) == 0, "%.60s", bol);
	}
	ms__free(text);

	status_model_ready(s, "plain");
	status_model_ready(s, "we\"ird\\na\nme");
	text = status_render_metrics(s);
	check_exposition(text);
	cr_assert_not_null(strstr(text, "\nmodelstream_time_to_ready_seconds "));
	cr_assert_not_null(strstr(text, "\nmodelstream_ready 1\n"));
	ms__free(text);
	status_free(s);
}

/* ---------------------------------------------------------------------------------------
 * Secrets */

Test(status, redact_strips_userinfo_and_queries)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
	    {"s3://bucket/key", "s3://bucket/key"},
	    {"s3://AKIA:secret@bucket/key", "s3://bucket/key"},
	    {"https://user:p%40ss@host:9000/path/x?X-Amz-Signature=abc&X-Amz-Security-Token=t#f",
	     "https://host:9000/path/x"},
	    {"https://a@b@host/p", "https://host/p"},
	    {"https://host?token=x", "https://host"},
	    {"fetch https://u:p@h/a failed: 403", "fetch https://h/a failed: 403"},
	    {"two: s3://k:s@a/x and gs://k2:s2@b/y?sig=1 done", "two: s3://a/x and gs://b/y done"},
	    {"/local/path?with=query", "/local/path?with=query"},
	    {"line\none\ttab", "line one tab"},
	    {"bad \xff utf8 \xc3\xa9", "bad ? utf8 \xc3\xa9"},
	    {"", ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = status_redact(cases[i].in);

		cr_assert_not_null(out);
		cr_assert_str_eq(out, cases[i].out, "case %zu", i);
		ms__free(out);
	}
	char *empty = status_redact(NULL);
	cr_assert_str_eq(empty, "");
	ms__free(empty);

	char long_text[STATUS_TEXT_MAX * 3];
	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	char *cut = status_redact(long_text);
	cr_assert_eq(strlen(cut), STATUS_TEXT_MAX);
	ms__free(cut);
}

Test(status, no_document_shows_a_secret)
{
	static const char *const secrets[] = {"wJalrXUtnFEMI", "FwoGZXIvYXdzEJr", "hunter2"};
	status *s = status_new(0, NULL, NULL);
	char *docs[4];
	char *body = NULL;

	status_add_model(s, "m",
	                 "s3://AKIA:wJalrXUtnFEMI@bucket/m/?X-Amz-Security-Token=FwoGZXIvYXdzEJr",
	                 "/cache/m");
	status_file(s, "m", "https://u:hunter2@h/f?sig=FwoGZXIvYXdzEJr", STATUS_DOWNLOADING, 1, 2,
	            false);
	status_add_model(s, "n", "s3://bucket/n/", "/cache/n");
	status_model_failed(s, "n", "https://x:hunter2@host/n?X-Amz-Signature=wJalrXUtnFEMI: 403");
	docs[0] = status_render_progress(s);
	docs[1] = status_render_metrics(s);
	status_render_readyz(s, &body);
	docs[2] = body;
	status_render_healthz(s, &body);
	docs[3] = body;
	for (size_t d = 0; d < 4; d++) {
		cr_assert_not_null(docs[d]);
		for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
			cr_assert_null(strstr(docs[d], secrets[i]), "document %zu shows %s: %s", d,
			               secrets[i], docs[d]);
		ms__free(docs[d]);
	}
	status_free(s);
}

/* ---------------------------------------------------------------------------------------
 * Change notification and limits */

static void count_calls(void *payload)
{
	(*(int *)payload)++;
}

Test(status, listener_hears_state_changes_not_bytes)
{
	status *s = status_new(0, NULL, NULL);
	status_progress p = downloading(1, 10);
	int calls = 0;
	uint64_t g0;

	status_set_listener(s, count_calls, &calls);
	g0 = status_generation(s);
	status_add_model(s, "m", "s3://b/m/", "/c/m");
	cr_assert_eq(calls, 1);
	status_model_progress(s, "m", &p); /* queued -> downloading */
	cr_assert_eq(calls, 2);
	p.bytes_done = 5;
	status_model_progress(s, "m", &p); /* bytes only */
	cr_assert_eq(calls, 2);
	status_file(s, "m", "f", STATUS_DOWNLOADING, 1, 10, false); /* a new file */
	status_file(s, "m", "f", STATUS_DOWNLOADING, 2, 10, false); /* bytes only */
	status_file(s, "m", "f", STATUS_READY, 10, 10, false);
	cr_assert_eq(calls, 4);
	status_model_ready(s, "m");
	cr_assert_eq(calls, 5);
	cr_assert_eq(status_generation(s), g0 + 5);
	status_set_listener(s, NULL, NULL);
	status_model_state(s, "m", STATUS_VERIFYING);
	cr_assert_eq(calls, 5);
	cr_assert_eq(status_model_state(s, "m", (status_state)42), -1);
	cr_assert_str_eq(status_state_name((status_state)42), "unknown");
	status_free(s);
}

Test(status, caps_on_models_and_files)
{
	status *s = status_new(0, NULL, NULL);
	char name[32];

	for (int i = 0; i < STATUS_MODELS_MAX; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		cr_assert_eq(status_add_model(s, name, "s3://b/", "/c"), 0);
	}
	cr_assert_eq(status_add_model(s, "one-too-many", "s3://b/", "/c"), -1);
	for (int i = 0; i < STATUS_FILES_MAX; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(status_file(s, "m0", name, STATUS_QUEUED, 0, 1, false), 0);
	}
	cr_assert_eq(status_file(s, "m0", "one-too-many", STATUS_QUEUED, 0, 1, false), -1);
	cr_assert_eq(status_file(s, "m0", "f7", STATUS_READY, 1, 1, false), 0,
	             "updates still work");
	char *json = status_render_progress(s);
	char *metrics = status_render_metrics(s);
	cr_assert_not_null(json);
	cr_assert_not_null(metrics);
	ms__free(json);
	ms__free(metrics);
	status_free(s);
}

/* Every allocation of a store's life, made to fail in turn: no crash, no leak, and the
 * calls that could not allocate say so. */
Test(status, every_failed_allocation_is_handled)
{
	for (long n = 1;; n++) {
		status *s;
		char *docs[4] = {NULL, NULL, NULL, NULL};
		int failures = 0;

		ms__alloc_fail_at(n, 0);
		s = status_new(0, NULL, NULL);
		if (s == NULL) {
			failures++;
		} else {
			status_progress p = downloading(5, 10);

			failures += status_add_model(s, "m", "s3://u:p@b/m/", "/c/m") != 0;
			failures += status_model_progress(s, "m", &p) != 0;
			failures += status_file(s, "m", "f", STATUS_DOWNLOADING, 5, 10, false) != 0;
			failures += status_model_failed(s, "m", "boom") != 0;
			docs[0] = status_render_progress(s);
			docs[1] = status_render_metrics(s);
			status_render_readyz(s, &docs[2]);
			status_render_healthz(s, &docs[3]);
			for (int d = 0; d < 4; d++)
				failures += docs[d] == NULL;
		}
		ms__alloc_fail_at(0, 0);
		for (int d = 0; d < 4; d++)
			ms__free(docs[d]);
		status_free(s);
		cr_assert_eq(tu_leaks_found(), 0, "leak with allocation %ld failing", n);
		if (failures == 0)
			break; /* n went past the last allocation */
		cr_assert_lt(n, 10000);
	}
}

/* A rate that decayed while no bytes arrived gave ETAs such as 728998102652471573964033884160
 * seconds; past a week, or with no rate, the ETA is unknown (null, and no sample). */
Test(status, an_eta_from_a_rate_that_says_nothing_is_unknown)
{
	status *s = status_new(0, NULL, NULL);
	status_progress slow = {
	    .state = STATUS_DOWNLOADING, .bytes_done = 1, .bytes_total = 16u << 20, .rate = 1e-20};
	status_progress week = {
	    .state = STATUS_DOWNLOADING, .bytes_done = 0, .bytes_total = 1000000000, .rate = 1000};
	status_progress fine = {
	    .state = STATUS_DOWNLOADING, .bytes_done = 0, .bytes_total = 1000, .rate = 100};

	cr_assert_eq(status_add_model(s, "slow", "s3://b/slow/", "/c/slow"), 0);
	cr_assert_eq(status_add_model(s, "week", "s3://b/week/", "/c/week"), 0);
	cr_assert_eq(status_add_model(s, "fine", "s3://b/fine/", "/c/fine"), 0);
	status_model_progress(s, "slow", &slow);
	status_model_progress(s, "week", &week);
	status_model_progress(s, "fine", &fine);
	cJSON *doc = progress_json(s);
	cr_assert(is_null(model_json(doc, 0), "eta_seconds"));
	cr_assert(is_null(model_json(doc, 1), "eta_seconds"), "1e6 s is past a week");
	cr_assert_float_eq(number(model_json(doc, 2), "eta_seconds"), 10, 1e-9);
	char *metrics = status_render_metrics(s);
	cr_assert_null(strstr(metrics, "modelstream_model_eta_seconds{model=\"slow\"}"));
	cr_assert_null(strstr(metrics, "modelstream_model_eta_seconds{model=\"week\"}"));
	cr_assert_not_null(strstr(metrics, "modelstream_model_eta_seconds{model=\"fine\"} 10"));
	free(metrics);
	cJSON_Delete(doc);
	status_free(s);
}
