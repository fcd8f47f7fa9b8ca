/*
 * status.c - the status store of `modelstream fetch` and `serve`, and the documents the
 * health server renders from it (see status.h for the /progress schema).
 *
 * Design: one mutex guards everything; the fetch threads write small updates and the server
 * thread renders whole documents under the lock, so a document is always one consistent
 * snapshot. Texts are cleaned when they enter (redacted, one line, valid UTF-8, capped), so
 * the renderers never see a secret or a byte that would break a format. Liveness is a
 * last-progress timestamp per model, taken from an injectable monotonic clock.
 *
 * The metrics, in Prometheus text format 0.0.4 (counters end in _total, units are bytes and
 * seconds, only per-model gauges carry a label and it is only the model's name):
 *
 *   modelstream_bytes_fetched_total              counter  bytes downloaded from storage
 *   modelstream_cache_served_bytes_total         counter  bytes of files found in the cache
 *   modelstream_cache_hits_total                 counter  files found in the cache
 *   modelstream_cache_misses_total               counter  files that had to be fetched
 *   modelstream_cache_evictions_total            counter  models evicted from the cache
 *   modelstream_retries_total{reason}            counter  one series per status_retry_reasons
 *   modelstream_throttle_waits_total             counter  reads that admission made wait
 *   modelstream_active_connections               gauge
 *   modelstream_concurrency_window               gauge    adaptive concurrency, process-wide
 *   modelstream_time_to_ready_seconds            gauge    only once every model is ready
 *   modelstream_cache_size_bytes                 gauge
 *   modelstream_cache_budget_bytes               gauge    only when there is a budget
 *   modelstream_ready                            gauge    1 when /readyz answers 200
 *   modelstream_healthy                          gauge    1 when /healthz answers 200
 *   modelstream_models                           gauge    models requested
 *   modelstream_model_ready{model}               gauge
 *   modelstream_model_done_bytes{model}          gauge
 *   modelstream_model_size_bytes{model}          gauge    only once known
 *   modelstream_model_rate_bytes_per_second{model} gauge
 *   modelstream_model_eta_seconds{model}         gauge    only when it can be estimated
 *   modelstream_model_reads_in_flight{model}     gauge
 *   modelstream_model_concurrency_window{model}  gauge
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "alloc.h"

#include "status.h"

const char *const status_retry_reasons[] = {
    "slowdown",      "server_error", "connection", "timeout", "truncated",
    "expired_token", "clock_skew",   "other",      NULL,
};
#define RETRY_REASONS 8
_Static_assert(sizeof(status_retry_reasons) / sizeof(status_retry_reasons[0]) == RETRY_REASONS + 1,
               "one counter per reason, then NULL");

static const char *const state_names[] = {
    [STATUS_QUEUED] = "queued",           [STATUS_RESOLVING] = "resolving",
    [STATUS_DOWNLOADING] = "downloading", [STATUS_WAITING] = "waiting",
    [STATUS_VERIFYING] = "verifying",     [STATUS_READY] = "ready",
    [STATUS_FAILED] = "failed",
};

typedef struct {
	char *path;
	status_state state;
	uint64_t done;
	uint64_t total;
	bool from_cache;
} file_entry;

typedef struct {
	char *key;  /* the name as the caller gave it, for lookups */
	char *name; /* the name as shown: cleaned like every text (see status_redact) */
	char *source;
	char *cache_path;
	char *error; /* NULL unless failed */
	status_progress progress;
	double last_progress; /* clock time of the last change in bytes or state */
	file_entry *files;
	size_t file_count;
	size_t file_capacity;
} model_entry;

struct status {
	/* Set once by status_new(), read without the lock. */
	double stall_deadline;
	status_clock_fn clock;
	void *clock_payload;
	double started;

	pthread_mutex_t lock;
	/* Everything below is guarded by `lock`. */
	model_entry *models;
	size_t model_count;
	size_t model_capacity;
	double last_progress_any;
	double ready_at; /* < 0 until every model is ready */
	uint64_t bytes_fetched;
	uint64_t cache_served_bytes;
	uint64_t cache_hits;
	uint64_t cache_misses;
	uint64_t evictions;
	uint64_t throttle_waits;
	uint64_t retries[RETRY_REASONS];
	uint64_t gauges[2];
	uint64_t cache_size;
	uint64_t cache_budget;
	uint64_t generation;
	status_listener_fn listener;
	void *listener_payload;
};

const char *status_state_name(status_state state)
{
	if ((unsigned)state >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[state];
}

static double monotonic_seconds(void *payload)
{
	struct timespec ts;

	(void)payload;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(const status *s)
{
	return s->clock(s->clock_payload);
}

/* ---------------------------------------------------------------------------------------
 * Text hygiene */

/* The length of the valid UTF-8 sequence at p (at most `left` bytes), or 0. */
static size_t utf8_sequence(const unsigned char *p, size_t left)
{
	size_t n;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) || (n == 4 && c < 0x10000) ||
	    c > 0x10ffff)
		return 0;
	return n;
}

/* Whether `c` ends a URL's authority ("user:pass@host:port"). */
static bool ends_authority(char c)
{
	return c == '\0' || c == '/' || c == '?' || c == '#' || c == ' ' || c == '\'' || c == '"' ||
	       (unsigned char)c < 0x20;
}

/* Copies one UTF-8 character from *p to out[*o] (a '?' for a byte that is not UTF-8, or for
 * one that would not fit), advancing both. */
static void copy_char(char *out, size_t *o, const char **p)
{
	size_t n = utf8_sequence((const unsigned char *)*p, strlen(*p));

	if (n == 0 || *o + n > STATUS_TEXT_MAX) {
		out[(*o)++] = '?';
		(*p)++;
		return;
	}
	memcpy(out + *o, *p, n);
	*o += n;
	*p += n;
}

/* Whether `c` ends a URL's path, where a query would begin. */
static bool ends_url(char c)
{
	return c == '\0' || c == ' ' || c == '\'' || c == '"' || (unsigned char)c < 0x20;
}

char *status_redact(const char *text)
{
	size_t len = text != NULL ? strlen(text) : 0;
	char *out = ms__malloc((len < STATUS_TEXT_MAX ? len : STATUS_TEXT_MAX) + 1);
	size_t o = 0;
	const char *p = text != NULL ? text : "";

	if (out == NULL)
		return NULL;
	while (*p != '\0' && o < STATUS_TEXT_MAX) {
		if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
			/* A URL: keep "://", skip the userinfo, keep host and path, drop the
			 * query and fragment, which is where presigned URLs keep credentials. */
			const char *authority = p + 3;
			const char *end = authority;
			const char *at = NULL;

			while (!ends_authority(*end)) {
				if (*end == '@')
					at = end;
				end++;
			}
			for (const char *q = "://"; *q != '\0' && o < STATUS_TEXT_MAX; q++)
				out[o++] = *q;
			p = at != NULL ? at + 1 : authority;
			while (!ends_url(*p) && *p != '?' && *p != '#' && o < STATUS_TEXT_MAX)
				copy_char(out, &o, &p);
			while (!ends_url(*p))
				p++;
			continue;
		}
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			out[o++] = ' ';
			p++;
			continue;
		}
		copy_char(out, &o, &p);
	}
	out[o] = '\0';
	return out;
}

/* ---------------------------------------------------------------------------------------
 * The store */

status *status_new(double stall_deadline_s, status_clock_fn clock, void *clock_payload)
{
	status *s = ms__calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		ms__free(s);
		return NULL;
	}
	s->stall_deadline = stall_deadline_s > 0 ? stall_deadline_s : STATUS_STALL_DEADLINE_S;
	s->clock = clock != NULL ? clock : monotonic_seconds;
	s->clock_payload = clock_payload;
	s->started = now(s);
	s->last_progress_any = s->started;
	s->ready_at = -1;
	s->cache_budget = STATUS_UNKNOWN;
	return s;
}

static void model_entry_free(model_entry *m)
{
	for (size_t i = 0; i < m->file_count; i++)
		ms__free(m->files[i].path);
	ms__free(m->files);
	ms__free(m->key);
	ms__free(m->name);
	ms__free(m->source);
	ms__free(m->cache_path);
	ms__free(m->error);
}

void status_free(status *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->model_count; i++)
		model_entry_free(&s->models[i]);
	ms__free(s->models);
	pthread_mutex_destroy(&s->lock);
	ms__free(s);
}

void status_set_listener(status *s, status_listener_fn fn, void *payload)
{
	pthread_mutex_lock(&s->lock);
	s->listener = fn;
	s->listener_payload = payload;
	pthread_mutex_unlock(&s->lock);
}

uint64_t status_generation(status *s)
{
	uint64_t g;

	pthread_mutex_lock(&s->lock);
	g = s->generation;
	pthread_mutex_unlock(&s->lock);
	return g;
}

static bool all_ready_locked(const status *s)
{
	for (size_t i = 0; i < s->model_count; i++)
		if (s->models[i].progress.state != STATUS_READY)
			return false;
	return true;
}

/* Records a change of state: time to ready, the generation, the listener. Lock held. */
static void changed_locked(status *s)
{
	if (s->ready_at < 0 && s->model_count > 0 && all_ready_locked(s))
		s->ready_at = now(s);
	s->generation++;
	if (s->listener != NULL)
		s->listener(s->listener_payload);
}

static void progressed_locked(status *s, model_entry *m)
{
	double t = now(s);

	m->last_progress = t;
	s->last_progress_any = t;
}

static model_entry *find_locked(status *s, const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < s->model_count; i++)
		if (strcmp(s->models[i].key, name) == 0)
			return &s->models[i];
	return NULL;
}

int status_add_model(status *s, const char *name, const char *source, const char *cache_path)
{
	model_entry m = {0};
	int rc = -1;

	if (name == NULL)
		return -1;
	m.key = ms__strdup(name);
	m.name = status_redact(name);
	m.source = status_redact(source);
	m.cache_path = status_redact(cache_path);
	if (m.key == NULL || m.name == NULL || m.source == NULL || m.cache_path == NULL)
		goto done;
	m.progress.state = STATUS_QUEUED;
	m.progress.bytes_total = STATUS_UNKNOWN;

	pthread_mutex_lock(&s->lock);
	if (find_locked(s, m.key) == NULL && s->model_count < STATUS_MODELS_MAX &&
	    ms__grow((void **)&s->models, &s->model_capacity, s->model_count + 1,
	             sizeof(*s->models)) == 0) {
		m.last_progress = now(s);
		s->models[s->model_count++] = m;
		memset(&m, 0, sizeof(m));
		s->ready_at = -1;
		changed_locked(s);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
done:
	model_entry_free(&m);
	return rc;
}

bool status_model_failed_now(status *s, const char *name)
{
	model_entry *m;
	bool failed;

	pthread_mutex_lock(&s->lock);
	m = find_locked(s, name);
	failed = m != NULL && m->progress.state == STATUS_FAILED;
	pthread_mutex_unlock(&s->lock);
	return failed;
}

int status_remove_model(status *s, const char *name)
{
	model_entry *m;
	int rc = -1;

	pthread_mutex_lock(&s->lock);
	m = find_locked(s, name);
	if (m != NULL) {
		size_t i = (size_t)(m - s->models);

		model_entry_free(m);
		memmove(m, m + 1, (s->model_count - i - 1) * sizeof(*m));
		s->model_count--;
		changed_locked(s);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int status_model_progress(status *s, const char *name, const status_progress *progress)
{
	model_entry *m;
	int rc = -1;

	pthread_mutex_lock(&s->lock);
	m = find_locked(s, name);
	if (m != NULL) {
		status_progress old = m->progress;

		m->progress = *progress;
		if ((unsigned)m->progress.state > STATUS_FAILED)
			m->progress.state = old.state;
		if (progress->bytes_fetched > old.bytes_fetched)
			s->bytes_fetched += progress->bytes_fetched - old.bytes_fetched;
		else
			m->progress.bytes_fetched = old.bytes_fetched;
		if (m->progress.bytes_done != old.bytes_done ||
		    m->progress.bytes_fetched != old.bytes_fetched ||
		    m->progress.state != old.state)
			progressed_locked(s, m);
		if (m->progress.state != old.state)
			changed_locked(s);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int status_model_state(status *s, const char *name, status_state state)
{
	model_entry *m;
	int rc = -1;

	if ((unsigned)state > STATUS_FAILED)
		return -1;
	pthread_mutex_lock(&s->lock);
	m = find_locked(s, name);
	if (m != NULL) {
		if (m->progress.state != state) {
			m->progress.state = state;
			progressed_locked(s, m);
			changed_locked(s);
		}
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int status_file(status *s, const char *model, const char *path, status_state state, uint64_t done,
                uint64_t total, bool from_cache)
{
	model_entry *m;
	file_entry *f = NULL;
	char *clean = status_redact(path);
	int rc = -1;

	if (clean == NULL || (unsigned)state > STATUS_FAILED) {
		ms__free(clean);
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	m = find_locked(s, model);
	if (m == NULL)
		goto done;
	for (size_t i = 0; i < m->file_count && f == NULL; i++)
		if (strcmp(m->files[i].path, clean) == 0)
			f = &m->files[i];
	if (f == NULL) {
		if (m->file_count >= STATUS_FILES_MAX ||
		    ms__grow((void **)&m->files, &m->file_capacity, m->file_count + 1,
		             sizeof(*m->files)) != 0)
			goto done;
		f = &m->files[m->file_count++];
		*f = (file_entry){.path = clean,
		                  .state = state,
		                  .done = done,
		                  .total = total,
		                  .from_cache = from_cache};
		clean = NULL;
		if (from_cache) {
			s->cache_hits++;
			s->cache_served_bytes += total;
		} else {
			s->cache_misses++;
		}
		progressed_locked(s, m);
		changed_locked(s);
	} else {
		bool state_changed = f->state != state;

		if (f->done != done || state_changed)
			progressed_locked(s, m);
		f->state = state;
		f->done = done;
		f->total = total;
		if (state_changed)
			changed_locked(s);
	}
	rc = 0;
done:
	pthread_mutex_unlock(&s->lock);
	ms__free(clean);
	return rc;
}

int status_model_ready(status *s, const char *name)
{
	return status_model_state(s, name, STATUS_READY);
}

int status_model_failed(status *s, const char *name, const char *message)
{
	char *clean = status_redact(message != NULL ? message : "failed");
	model_entry *m;
	int rc = -1;

	if (clean == NULL)
		return -1;
	pthread_mutex_lock(&s->lock);
	m = find_locked(s, name);
	if (m != NULL) {
		ms__free(m->error);
		m->error = clean;
		clean = NULL;
		m->progress.state = STATUS_FAILED;
		progressed_locked(s, m);
		changed_locked(s);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	ms__free(clean);
	return rc;
}

static size_t retry_index(const char *label)
{
	for (size_t i = 0; label != NULL && i < RETRY_REASONS - 1; i++)
		if (strcmp(label, status_retry_reasons[i]) == 0)
			return i;
	return RETRY_REASONS - 1;
}

void status_counter_add(status *s, status_counter which, const char *label, uint64_t n)
{
	pthread_mutex_lock(&s->lock);
	switch (which) {
	case STATUS_COUNTER_BYTES_FETCHED:
		s->bytes_fetched += n;
		s->last_progress_any = now(s);
		break;
	case STATUS_COUNTER_EVICTIONS:
		s->evictions += n;
		break;
	case STATUS_COUNTER_RETRIES:
		s->retries[retry_index(label)] += n;
		break;
	case STATUS_COUNTER_THROTTLE_WAITS:
		s->throttle_waits += n;
		break;
	}
	pthread_mutex_unlock(&s->lock);
}

void status_gauge_set(status *s, status_gauge which, uint64_t value)
{
	if ((unsigned)which >= sizeof(s->gauges) / sizeof(s->gauges[0]))
		return;
	pthread_mutex_lock(&s->lock);
	s->gauges[which] = value;
	pthread_mutex_unlock(&s->lock);
}

void status_set_cache(status *s, uint64_t size, uint64_t budget)
{
	pthread_mutex_lock(&s->lock);
	s->cache_size = size;
	s->cache_budget = budget;
	pthread_mutex_unlock(&s->lock);
}

static bool is_active(status_state state)
{
	return state == STATUS_RESOLVING || state == STATUS_DOWNLOADING ||
	       state == STATUS_WAITING || state == STATUS_VERIFYING;
}

/* The first stalled model, or NULL; *seconds gets its time without progress. Lock held. */
static const model_entry *stalled_locked(status *s, double t, double *seconds)
{
	for (size_t i = 0; i < s->model_count; i++) {
		const model_entry *m = &s->models[i];
		double idle;

		if (is_active(m->progress.state))
			idle = t - m->last_progress;
		else if (m->progress.state == STATUS_QUEUED)
			idle = t - s->last_progress_any;
		else
			continue;
		if (idle > s->stall_deadline) {
			*seconds = idle;
			return m;
		}
	}
	return NULL;
}

bool status_stalled(status *s, char *name, size_t name_size, double *seconds)
{
	const model_entry *m;
	double idle = 0;

	pthread_mutex_lock(&s->lock);
	m = stalled_locked(s, now(s), &idle);
	if (m != NULL && name != NULL && name_size > 0)
		snprintf(name, name_size, "%s", m->name);
	pthread_mutex_unlock(&s->lock);
	if (seconds != NULL)
		*seconds = m != NULL ? idle : 0;
	return m != NULL;
}

bool status_ready(status *s)
{
	bool ready;

	pthread_mutex_lock(&s->lock);
	ready = all_ready_locked(s);
	pthread_mutex_unlock(&s->lock);
	return ready;
}

double status_eta_seconds(uint64_t done, uint64_t total, double rate)
{
	double left;

	if (total == STATUS_UNKNOWN)
		return -1;
	if (done >= total)
		return 0;
	if (rate < 1 || !isfinite(rate))
		return -1;
	left = (double)(total - done) / rate;
	return left <= STATUS_ETA_MAX ? left : -1;
}

/* Seconds left for a model, or a negative number when it cannot be estimated. */
static double eta_seconds(const status_progress *p)
{
	return p->state == STATUS_READY
	           ? 0
	           : status_eta_seconds(p->bytes_done, p->bytes_total, p->rate);
}

/* ---------------------------------------------------------------------------------------
 * /progress */

/* Seconds to the millisecond: more digits would be noise. Negative stays negative. */
static double ms_round(double seconds)
{
	return seconds < 0 ? seconds : round(seconds * 1000) / 1000;
}

/* Adds `item` (NULL when it could not be made) to `object`; frees it when that fails. */
static bool add_item(cJSON *object, const char *key, cJSON *item)
{
	if (item == NULL)
		return false;
	if (!cJSON_AddItemToObject(object, key, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/* Adds a number, or null for a negative one (the schema's "unknown"). */
static bool add_number(cJSON *object, const char *key, double value)
{
	return add_item(object, key,
	                value >= 0 && isfinite(value) ? cJSON_CreateNumber(value)
	                                              : cJSON_CreateNull());
}

static bool add_bytes(cJSON *object, const char *key, uint64_t value)
{
	return add_number(object, key, value == STATUS_UNKNOWN ? -1 : (double)value);
}

static bool add_string(cJSON *object, const char *key, const char *value)
{
	return add_item(object, key,
	                value != NULL ? cJSON_CreateString(value) : cJSON_CreateNull());
}

static bool add_bool(cJSON *object, const char *key, bool value)
{
	return add_item(object, key, cJSON_CreateBool(value));
}

static cJSON *new_child(cJSON *parent, const char *key, bool array)
{
	cJSON *child = array ? cJSON_CreateArray() : cJSON_CreateObject();

	if (child == NULL)
		return NULL;
	if (key != NULL ? !cJSON_AddItemToObject(parent, key, child)
	                : !cJSON_AddItemToArray(parent, child)) {
		cJSON_Delete(child);
		return NULL;
	}
	return child;
}

static bool render_model_json(cJSON *models, const model_entry *m, double t)
{
	const status_progress *p = &m->progress;
	cJSON *o = new_child(models, NULL, false);
	cJSON *files;
	bool ok;

	if (o == NULL)
		return false;
	ok = add_string(o, "name", m->name) && add_string(o, "source", m->source) &&
	     add_string(o, "cache_path", m->cache_path) &&
	     add_string(o, "state", status_state_name(p->state)) &&
	     add_string(o, "error", p->state == STATUS_FAILED ? m->error : NULL) &&
	     add_bytes(o, "bytes_done", p->bytes_done) &&
	     add_bytes(o, "bytes_total", p->bytes_total) &&
	     add_bytes(o, "bytes_fetched", p->bytes_fetched) &&
	     add_number(o, "rate_bytes_per_second", p->rate > 0 ? p->rate : 0) &&
	     add_number(o, "eta_seconds", ms_round(eta_seconds(p))) &&
	     add_number(o, "retries", (double)p->retries) &&
	     add_number(o, "throttled", (double)p->throttled) &&
	     add_number(o, "reads_in_flight", p->reads_in_flight) &&
	     add_number(o, "concurrency_window", p->window) &&
	     add_number(o, "seconds_since_progress", ms_round(t - m->last_progress));
	files = ok ? new_child(o, "files", true) : NULL;
	if (files == NULL)
		return false;
	for (size_t i = 0; i < m->file_count; i++) {
		const file_entry *f = &m->files[i];
		cJSON *fo = new_child(files, NULL, false);

		if (fo == NULL || !add_string(fo, "path", f->path) ||
		    !add_string(fo, "state", status_state_name(f->state)) ||
		    !add_bytes(fo, "bytes_done", f->done) ||
		    !add_bytes(fo, "bytes_total", f->total) ||
		    !add_bool(fo, "from_cache", f->from_cache))
			return false;
	}
	return true;
}

static bool render_counters_json(cJSON *root, const status *s)
{
	cJSON *c = new_child(root, "counters", false);
	cJSON *r = c != NULL ? new_child(c, "retries", false) : NULL;

	if (r == NULL)
		return false;
	for (size_t i = 0; i < RETRY_REASONS; i++)
		if (!add_number(r, status_retry_reasons[i], (double)s->retries[i]))
			return false;
	return add_number(c, "bytes_fetched", (double)s->bytes_fetched) &&
	       add_number(c, "bytes_served_from_cache", (double)s->cache_served_bytes) &&
	       add_number(c, "cache_hits", (double)s->cache_hits) &&
	       add_number(c, "cache_misses", (double)s->cache_misses) &&
	       add_number(c, "evictions", (double)s->evictions) &&
	       add_number(c, "throttle_waits", (double)s->throttle_waits);
}

char *status_render_progress(status *s)
{
	cJSON *root = NULL;
	cJSON *models;
	cJSON *cache;
	char *text = NULL;
	double t;
	double idle;
	bool ok;

	ms__alloc_init_json();
	pthread_mutex_lock(&s->lock);
	t = now(s);
	root = cJSON_CreateObject();
	if (root == NULL)
		goto done;
	ok = add_number(root, "version", 1) && add_bool(root, "ready", all_ready_locked(s)) &&
	     add_bool(root, "healthy", stalled_locked(s, t, &idle) == NULL) &&
	     add_number(root, "uptime_seconds", ms_round(t - s->started)) &&
	     add_number(root, "time_to_ready_seconds",
	                ms_round(s->ready_at >= 0 ? s->ready_at - s->started : -1));
	models = ok ? new_child(root, "models", true) : NULL;
	if (models == NULL)
		goto done;
	for (size_t i = 0; i < s->model_count; i++)
		if (!render_model_json(models, &s->models[i], t))
			goto done;
	if (!render_counters_json(root, s) ||
	    !add_number(root, "active_connections",
	                (double)s->gauges[STATUS_GAUGE_ACTIVE_CONNECTIONS]) ||
	    !add_number(root, "concurrency_window",
	                (double)s->gauges[STATUS_GAUGE_CONCURRENCY_WINDOW]))
		goto done;
	cache = new_child(root, "cache", false);
	if (cache == NULL || !add_number(cache, "size_bytes", (double)s->cache_size) ||
	    !add_bytes(cache, "budget_bytes", s->cache_budget))
		goto done;
	text = cJSON_PrintUnformatted(root);
done:
	pthread_mutex_unlock(&s->lock);
	cJSON_Delete(root);
	return text;
}

/* ---------------------------------------------------------------------------------------
 * /metrics */

typedef struct {
	char *text;
	size_t len;
	size_t cap;
	bool failed;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->text != NULL ? b->text + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		if (ms__grow((void **)&b->text, &b->cap, b->len + (size_t)n + 1, 1) != 0) {
			b->failed = true;
			return;
		}
	}
}

/* A label value escaped per the text format: backslash, double quote and newline. */
static void sb_label_value(strbuf *b, const char *value)
{
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '\\')
			sb_printf(b, "\\\\");
		else if (*p == '"')
			sb_printf(b, "\\\"");
		else if (*p == '\n')
			sb_printf(b, "\\n");
		else
			sb_printf(b, "%c", *p);
	}
}

static void sb_family(strbuf *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sb_sample(strbuf *b, const char *name, double value)
{
	sb_printf(b, "%s %.17g\n", name, value);
}

static void sb_model_sample(strbuf *b, const char *name, const char *model, double value)
{
	sb_printf(b, "%s{model=\"", name);
	sb_label_value(b, model);
	sb_printf(b, "\"} %.17g\n", value);
}

static void sb_metric(strbuf *b, const char *name, const char *type, const char *help, double value)
{
	sb_family(b, name, type, help);
	sb_sample(b, name, value);
}

/* A per-model gauge; `pick` returns a negative number for "no sample". */
static void sb_model_gauge(strbuf *b, const status *s, const char *name, const char *help,
                           double (*pick)(const model_entry *))
{
	sb_family(b, name, "gauge", help);
	for (size_t i = 0; i < s->model_count; i++) {
		double v = pick(&s->models[i]);

		if (v >= 0)
			sb_model_sample(b, name, s->models[i].name, v);
	}
}

static double pick_ready(const model_entry *m)
{
	return m->progress.state == STATUS_READY ? 1 : 0;
}

static double pick_done(const model_entry *m)
{
	return (double)m->progress.bytes_done;
}

static double pick_size(const model_entry *m)
{
	return m->progress.bytes_total == STATUS_UNKNOWN ? -1 : (double)m->progress.bytes_total;
}

static double pick_rate(const model_entry *m)
{
	return m->progress.rate > 0 && isfinite(m->progress.rate) ? m->progress.rate : 0;
}

static double pick_eta(const model_entry *m)
{
	return eta_seconds(&m->progress);
}

static double pick_reads(const model_entry *m)
{
	return m->progress.reads_in_flight;
}

static double pick_window(const model_entry *m)
{
	return m->progress.window;
}

char *status_render_metrics(status *s)
{
	strbuf b = {0};
	double t;
	double idle;
	bool healthy;

	pthread_mutex_lock(&s->lock);
	t = now(s);
	healthy = stalled_locked(s, t, &idle) == NULL;
	sb_metric(&b, "modelstream_bytes_fetched_total", "counter",
	          "Bytes downloaded from object storage.", (double)s->bytes_fetched);
	sb_metric(&b, "modelstream_cache_served_bytes_total", "counter",
	          "Bytes of files found already in the node cache.", (double)s->cache_served_bytes);
	sb_metric(&b, "modelstream_cache_hits_total", "counter",
	          "Files found already in the node cache.", (double)s->cache_hits);
	sb_metric(&b, "modelstream_cache_misses_total", "counter",
	          "Files that had to be fetched into the node cache.", (double)s->cache_misses);
	sb_metric(&b, "modelstream_cache_evictions_total", "counter",
	          "Models evicted from the node cache to keep within its budget.",
	          (double)s->evictions);
	sb_family(&b, "modelstream_retries_total", "counter",
	          "Requests to object storage retried, by reason.");
	for (size_t i = 0; i < RETRY_REASONS; i++)
		sb_printf(&b, "modelstream_retries_total{reason=\"%s\"} %" PRIu64 "\n",
		          status_retry_reasons[i], s->retries[i]);
	sb_metric(&b, "modelstream_throttle_waits_total", "counter",
	          "Reads that admission control made wait.", (double)s->throttle_waits);
	sb_metric(&b, "modelstream_active_connections", "gauge",
	          "Connections to object storage open now.",
	          (double)s->gauges[STATUS_GAUGE_ACTIVE_CONNECTIONS]);
	sb_metric(&b, "modelstream_concurrency_window", "gauge",
	          "The adaptive concurrency window: reads allowed in flight.",
	          (double)s->gauges[STATUS_GAUGE_CONCURRENCY_WINDOW]);
	sb_family(&b, "modelstream_time_to_ready_seconds", "gauge",
	          "Seconds from start until every model was ready.");
	if (s->ready_at >= 0)
		sb_sample(&b, "modelstream_time_to_ready_seconds", s->ready_at - s->started);
	sb_metric(&b, "modelstream_cache_size_bytes", "gauge", "Bytes in the node cache.",
	          (double)s->cache_size);
	sb_family(&b, "modelstream_cache_budget_bytes", "gauge",
	          "The node cache's budget in bytes (absent: no budget).");
	if (s->cache_budget != STATUS_UNKNOWN)
		sb_sample(&b, "modelstream_cache_budget_bytes", (double)s->cache_budget);
	sb_metric(&b, "modelstream_ready", "gauge", "1 when every model is ready, else 0.",
	          all_ready_locked(s) ? 1 : 0);
	sb_metric(&b, "modelstream_healthy", "gauge", "0 when a fetch has stalled, else 1.",
	          healthy ? 1 : 0);
	sb_metric(&b, "modelstream_models", "gauge", "Models requested.", (double)s->model_count);
	sb_model_gauge(&b, s, "modelstream_model_ready",
	               "1 when the model is complete and verified.", pick_ready);
	sb_model_gauge(&b, s, "modelstream_model_done_bytes", "Bytes of the model in place.",
	               pick_done);
	sb_model_gauge(&b, s, "modelstream_model_size_bytes", "Bytes of the model in all.",
	               pick_size);
	sb_model_gauge(&b, s, "modelstream_model_rate_bytes_per_second",
	               "The model's recent transfer rate.", pick_rate);
	sb_model_gauge(&b, s, "modelstream_model_eta_seconds",
	               "Seconds until the model is in place, at the recent rate.", pick_eta);
	sb_model_gauge(&b, s, "modelstream_model_reads_in_flight", "Reads of the model in flight.",
	               pick_reads);
	sb_model_gauge(&b, s, "modelstream_model_concurrency_window",
	               "The model's adaptive concurrency window.", pick_window);
	pthread_mutex_unlock(&s->lock);
	if (b.failed) {
		ms__free(b.text);
		return NULL;
	}
	return b.text;
}

/* ---------------------------------------------------------------------------------------
 * /readyz and /healthz */

static char *format_text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format_text(const char *fmt, ...)
{
	strbuf b = {0};
	va_list ap;
	char line[STATUS_TEXT_MAX * 2 + 256];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sb_printf(&b, "%s\n", line);
	if (b.failed) {
		ms__free(b.text);
		return NULL;
	}
	return b.text;
}

int status_render_readyz(status *s, char **body)
{
	const model_entry *m = NULL;
	int code = 200;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->model_count && m == NULL; i++)
		if (s->models[i].progress.state != STATUS_READY)
			m = &s->models[i];
	if (m == NULL) {
		*body = format_text("ready");
	} else if (m->progress.state == STATUS_FAILED) {
		code = 503;
		*body = format_text("not ready: model %s failed: %s", m->name,
		                    m->error != NULL ? m->error : "unknown error");
	} else if (m->progress.bytes_total != STATUS_UNKNOWN && m->progress.bytes_total > 0) {
		const status_progress *p = &m->progress;
		code = 503;
		*body = format_text(
		    "not ready: model %s is %s (%" PRIu64 " of %" PRIu64 " bytes, %.0f%%)", m->name,
		    status_state_name(p->state), p->bytes_done, p->bytes_total,
		    100.0 * (double)p->bytes_done / (double)p->bytes_total);
	} else {
		code = 503;
		*body = format_text("not ready: model %s is %s", m->name,
		                    status_state_name(m->progress.state));
	}
	pthread_mutex_unlock(&s->lock);
	return code;
}

int status_render_healthz(status *s, char **body)
{
	char name[STATUS_TEXT_MAX + 1];
	double seconds;

	if (!status_stalled(s, name, sizeof(name), &seconds)) {
		*body = format_text("ok");
		return 200;
	}
	*body = format_text("stalled: model %s made no progress for %.0f s", name, floor(seconds));
	return 503;
}
