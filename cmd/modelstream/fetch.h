/*
 * fetch.h - what `fetch` shares with `serve`: the parsed options, and fetching one model
 * into the node cache with its progress reported to the log and the health server's store.
 */
#ifndef MS_CLI_FETCH_H
#define MS_CLI_FETCH_H

#include <stdint.h>

#include "modelstream.h"

#include "config.h"
#include "status.h"

typedef enum { LOG_TEXT, LOG_JSON } log_format;

/* The progress reporter of one model's fetch. */
typedef struct {
	log_format format;
	int tty;
	int quiet;
	double every;
	double last_line;   /* seconds of the last progress line */
	uint64_t last_done; /* for the rate */
	double last_time;
	double rate; /* bytes/s, smoothed */
	ms_fetch_state last_state;
	ms_fetch_progress final; /* the DONE snapshot, for the summary */
	status *st;              /* the health server's store, NULL without --listen */
	const char *model;       /* the model's name as the store knows it */
	unsigned last_reasons[MS_RETRY_REASONS];
	unsigned last_evicted;
	uint64_t last_slot_waits;
} reporter;

#define FETCH_WAIT_FOR_MAX 64

typedef struct {
	const char *cache;
	const char *name;
	const char *manifest;
	const char *config_path; /* --config or MODELSTREAM_CONFIG; NULL: none */
	ms_cache_options opts;
	reporter r;
	cli_config cfg; /* the --config file's settings, the lowest layer */
	int have_cfg;
	const char *listen;    /* the health server's address; NULL: none */
	double stall_deadline; /* seconds without progress before /healthz says 503 */
	int serve;             /* `modelstream serve`: keep answering after the fetch */
	/* serve only: models another process (the node agent) publishes, which this one
	 * waits for and holds instead of fetching; how often the config file is read again;
	 * how long a model removed from it stays before it is evicted. */
	const char *wait_for[FETCH_WAIT_FOR_MAX];
	size_t wait_for_count;
	double reconcile_every;
	double evict_grace;
} fetch_args;

/* Reads the config file, the environment and the flags into `a`, in that order of
 * precedence. Returns 0, -1 after --help, or an exit code. */
int fetch_parse_args(fetch_args *a, int argc, char **argv);

/* The model's name: --name, the config file's, or one made from the source. */
void fetch_model_name(char *out, size_t size, const fetch_args *a, const cli_model *m,
                      const char *source);

/* Fetches one model into the cache, logging its progress and feeding `st` (NULL: no
 * server). Returns an exit code; on failure the error has been printed. */
int fetch_model(const fetch_args *a, ms_cache *cache, status *st, const char *name,
                const char *source, const char *manifest);

/* Makes model `name` known to the store as queued (the name /readyz waits for), with its
 * source and its path in the cache. A model already known keeps its entry. */
void fetch_register(status *st, const ms_cache *cache, const char *name, const char *source);

/* Tells the store how much the cache holds now. */
void fetch_feed_cache_size(status *st, ms_cache *cache, uint64_t budget);

/* A timestamp for JSON log lines: 2026-12-03T11:40:25.123Z. */
void fetch_timestamp(char *out, size_t size);

/* Writes `s` to `out` as a JSON string. */
void fetch_json_string(FILE *out, const char *s);

#endif
