/*
 * status.h - what `modelstream fetch` and `serve` know about their models while they run, kept
 * in one thread-safe store that the fetch code feeds and the health server reads, and the
 * four documents rendered from it: /progress (JSON), /metrics (Prometheus text), /readyz and
 * /healthz.
 *
 * Threads: every function may be called from any thread at any time, except status_free(),
 * which must run after every other call on the store has returned. One mutex guards the
 * store; renderers take a consistent snapshot under it.
 *
 * Secrets: the store never holds one. Sources and error messages are redacted when they
 * come in: any "user:password@" in a URL and any query string (a presigned URL's signature
 * and security token live there) are removed, so no renderer can leak them.
 *
 * The /progress JSON document (schema version 1; fields are only ever added):
 *
 *   {
 *     "version": 1,
 *     "ready": true|false,              every model is ready (vacuously true with none)
 *     "healthy": true|false,            the same answer as /healthz
 *     "uptime_seconds": 12.5,           since status_new()
 *     "time_to_ready_seconds": 9.8|null,  from status_new() until every model was ready
 *     "models": [ {
 *       "name": "llama", "source": "s3://bucket/llama/", "cache_path": "/cache/llama",
 *       "state": "queued|resolving|downloading|waiting|verifying|ready|failed",
 *       "error": "one line"|null,       set only when the state is "failed"
 *       "bytes_done": 1024, "bytes_total": 4096|null (null while unknown),
 *       "bytes_fetched": 1024,          downloaded from the store for this model
 *       "rate_bytes_per_second": 1.5e8, "eta_seconds": 3.2|null,
 *       "retries": 0, "throttled": 0, "reads_in_flight": 4, "concurrency_window": 8,
 *       "seconds_since_progress": 0.4,
 *       "files": [ { "path": "model.safetensors", "state": "downloading",
 *                    "bytes_done": 10, "bytes_total": 20, "from_cache": false } ]
 *     } ],
 *     "counters": { "bytes_fetched": 0, "bytes_served_from_cache": 0, "cache_hits": 0,
 *                   "cache_misses": 0, "evictions": 0, "throttle_waits": 0,
 *                   "retries": { "slowdown": 0, "server_error": 0, "connection": 0,
 *                                "timeout": 0, "truncated": 0, "expired_token": 0,
 *                                "clock_skew": 0, "other": 0 } },
 *     "active_connections": 3, "concurrency_window": 8,
 *     "cache": { "size_bytes": 0, "budget_bytes": 0|null (null: no budget) }
 *   }
 *
 * The metrics (text format 0.0.4) are listed in status.c next to the code that writes them.
 */
#ifndef MS_CLI_STATUS_H
#define MS_CLI_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caps on what goes in, so that a document's size stays bounded. */
#define STATUS_MODELS_MAX       256
#define STATUS_FILES_MAX        4096 /* per model */
#define STATUS_TEXT_MAX         1024 /* bytes of a name, source, path or message */
#define STATUS_STALL_DEADLINE_S 120.0
#define STATUS_UNKNOWN          UINT64_MAX /* a byte total not known yet */

typedef enum {
	STATUS_QUEUED = 0,
	STATUS_RESOLVING,   /* listing the source, reading headers and manifests */
	STATUS_DOWNLOADING, /* bytes are moving */
	STATUS_WAITING,     /* another process holds the download, or admission is closed */
	STATUS_VERIFYING,   /* checksums */
	STATUS_READY,       /* complete and verified */
	STATUS_FAILED,
} status_state;

/** "queued", "resolving", ...; "unknown" for a value out of range. */
const char *status_state_name(status_state state);

/** The longest ETA shown (a week, in seconds); past it, or with no rate, it is unknown. */
#define STATUS_ETA_MAX (7.0 * 24 * 3600)

/**
 * Seconds until `total` bytes are in at `rate` bytes/s, or -1 when that cannot be said: no
 * total, no rate yet, a rate under 1 B/s (one that decayed while nothing arrived), or more
 * than STATUS_ETA_MAX. The one rule for /progress, /metrics and the fetch log.
 */
double status_eta_seconds(uint64_t done, uint64_t total, double rate);

/** Process-wide counters for status_counter_add(). */
typedef enum {
	STATUS_COUNTER_BYTES_FETCHED = 0, /* bytes not reported through a model's progress */
	STATUS_COUNTER_EVICTIONS,         /* models evicted from the cache */
	STATUS_COUNTER_RETRIES,           /* label: one of the reasons below */
	STATUS_COUNTER_THROTTLE_WAITS,    /* times admission control made a read wait */
} status_counter;

/** Process-wide gauges for status_gauge_set(). */
typedef enum {
	STATUS_GAUGE_ACTIVE_CONNECTIONS = 0,
	STATUS_GAUGE_CONCURRENCY_WINDOW,
} status_gauge;

/**
 * The retry reasons, a bounded label set: a reason not in this list is counted as "other".
 * The array ends with "other" and then NULL.
 */
extern const char *const status_retry_reasons[];

/** A clock in seconds, monotonic; tests pass their own to status_new(). */
typedef double (*status_clock_fn)(void *payload);

/** Called (with the store's lock held: it must not call back into the store) after each
 * change of state, so that pushes need not wait for the next tick. */
typedef void (*status_listener_fn)(void *payload);

typedef struct status status;

/**
 * A model's progress, as status_model_progress() takes it. Counts are cumulative for the
 * model; the store derives the process-wide bytes_fetched counter from the increments of
 * `bytes_fetched` (a value lower than the last one is taken as no change).
 */
typedef struct {
	status_state state;
	uint64_t bytes_done;
	uint64_t bytes_total; /* STATUS_UNKNOWN while unknown */
	uint64_t bytes_fetched;
	double rate; /* bytes per second, over the last few seconds */
	uint64_t retries;
	uint64_t throttled;
	unsigned reads_in_flight;
	unsigned window; /* the adaptive concurrency window */
} status_progress;

/**
 * Makes a store. `stall_deadline_s` <= 0 means STATUS_STALL_DEADLINE_S; `clock` NULL means
 * CLOCK_MONOTONIC (its payload is then unused). Returns NULL when memory runs out.
 */
status *status_new(double stall_deadline_s, status_clock_fn clock, void *clock_payload);

/** Frees the store; accepts NULL. No other call may be running or follow. */
void status_free(status *s);

/** Sets (or with NULL clears) the change listener; at most one at a time. */
void status_set_listener(status *s, status_listener_fn fn, void *payload);

/** A number that grows with every change of state: a pusher compares it with the last. */
uint64_t status_generation(status *s);

/**
 * Adds a model in the queued state. `source` is redacted (see the top of this file);
 * texts longer than STATUS_TEXT_MAX are cut. Later calls name the model by `name` exactly as
 * given here; documents show it cleaned. Returns 0, -1 when memory runs out, the name
 * is already there or STATUS_MODELS_MAX models are.
 */
int status_add_model(status *s, const char *name, const char *source, const char *cache_path);

/** True if model `name` is known and failed. */
bool status_model_failed_now(status *s, const char *name);

/** Forgets a model (evicted from the cache). Returns 0, or -1 for an unknown name. */
int status_remove_model(status *s, const char *name);

/** Updates a model's progress (see status_progress). Returns 0, or -1 for an unknown name. */
int status_model_progress(status *s, const char *name, const status_progress *progress);

/** Sets a model's state alone. Returns 0, or -1 for an unknown name. */
int status_model_state(status *s, const char *name, status_state state);

/**
 * Adds or updates a file of a model. A file reported with `from_cache` counts one cache
 * hit and its `total` as bytes served from the cache; one reported without it counts one
 * miss; each file counts once, the first time it is reported. Returns 0, or -1 for an
 * unknown model, when memory runs out or the model has STATUS_FILES_MAX files.
 */
int status_file(status *s, const char *model, const char *path, status_state state, uint64_t done,
                uint64_t total, bool from_cache);

/** Marks a model ready (complete and verified). Returns 0, or -1 for an unknown name. */
int status_model_ready(status *s, const char *name);

/** Marks a model failed with a one-line `message` (redacted, control characters dropped). */
int status_model_failed(status *s, const char *name, const char *message);

/** Adds `n` to a counter; `label` is the reason for STATUS_COUNTER_RETRIES, else ignored. */
void status_counter_add(status *s, status_counter which, const char *label, uint64_t n);

/** Sets a gauge. */
void status_gauge_set(status *s, status_gauge which, uint64_t value);

/** Sets the cache's size and budget in bytes (budget STATUS_UNKNOWN: none). */
void status_set_cache(status *s, uint64_t size, uint64_t budget);

/**
 * Whether a fetch has stalled: a model in an active state (resolving, downloading, waiting,
 * verifying) whose progress has not moved for longer than the deadline, or a queued model
 * while no model at all has moved for that long. On true, copies the first such model's
 * name into `name` (cut to `name_size`) and its seconds without progress into *seconds;
 * both may be NULL.
 */
bool status_stalled(status *s, char *name, size_t name_size, double *seconds);

/** Whether every model is ready (true with none). */
bool status_ready(status *s);

/** The /progress document (see above), allocated through lib/alloc.h: free it with ms__free().
 * NULL when memory runs out. */
char *status_render_progress(status *s);

/** The /metrics document (text format 0.0.4); free it with ms__free(). NULL without memory. */
char *status_render_metrics(status *s);

/**
 * The /readyz answer: returns 200 with "ready\n", or 503 with "not ready: model NAME is
 * STATE (...)\n" naming the first model not ready. *body is freed with ms__free() (NULL
 * without memory, the status code still returned).
 */
int status_render_readyz(status *s, char **body);

/** The /healthz answer: 200 "ok\n" or 503 "stalled: model NAME made no progress for N s\n". */
int status_render_healthz(status *s, char **body);

/**
 * Copies `text` into a new string without secrets: in each "scheme://" URL inside it, the
 * userinfo ("user:password@") and the query string and fragment are removed; control
 * characters and bytes that are not UTF-8 become '?'; cut to STATUS_TEXT_MAX bytes. Free it
 * with ms__free(); NULL without memory.
 */
char *status_redact(const char *text);

#endif
