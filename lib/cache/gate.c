/*
 * gate.c - admission and patience around a source's reads (see gate.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "gate.h"

#define DEFAULT_PATIENCE 600

struct ms__gate {
	ms__admission *adm;
	double patience;
	atomic_bool canceled;
	atomic_uint_fast64_t bytes; /* moved through the gate, for the controller */
	atomic_uint throttles;      /* congestion signals seen by the wrapped sources */
	atomic_uint seed_seq;       /* spreads the jitter of concurrent waits */
	pthread_mutex_t lock;       /* guards unavailable_since and tick */
	double unavailable_since;   /* monotonic seconds; 0 while the store answers */
};

typedef struct {
	ms__source base;
	ms__source *inner;
	ms__gate *gate;
	atomic_uint seen_throttles; /* inner's count when last added to the gate's */
} gated_source;

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ms__gate_open(ms__gate **out, const char *dir, const ms__admission_options *o,
                  unsigned patience_seconds)
{
	ms__gate *g = ms__calloc(1, sizeof(*g));
	int rc;

	*out = NULL;
	if (g == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
	if ((rc = ms__admission_open(&g->adm, dir, o)) < 0) {
		ms__free(g);
		return rc;
	}
	g->patience = patience_seconds > 0 ? patience_seconds : DEFAULT_PATIENCE;
	atomic_init(&g->canceled, false);
	pthread_mutex_init(&g->lock, NULL);
	*out = g;
	return 0;
}

void ms__gate_tick(ms__gate *g)
{
	pthread_mutex_lock(&g->lock);
	ms__admission_tick(g->adm, atomic_load(&g->bytes), atomic_load(&g->throttles));
	pthread_mutex_unlock(&g->lock);
}

int ms__gate_enter(ms__gate *g, unsigned *token)
{
	if (atomic_load(&g->canceled))
		return ms__error_set(MS_ECANCELED, "canceled");
	return ms__admission_enter(g->adm, token);
}

void ms__gate_leave(ms__gate *g, unsigned token)
{
	ms__admission_leave(g->adm, token);
}

void ms__gate_stats(ms__gate *g, ms__admission_stats *out)
{
	ms__admission_stats_get(g->adm, out);
}

void ms__gate_cancel(ms__gate *g)
{
	atomic_store(&g->canceled, true);
	ms__admission_stop(g->adm);
}

void ms__gate_close(ms__gate *g)
{
	if (g == NULL)
		return;
	ms__admission_close(g->adm);
	pthread_mutex_destroy(&g->lock);
	ms__free(g);
}

/* Adds the congestion signals `s`'s source saw since last time to the gate's count. */
static void count_throttles(gated_source *s)
{
	unsigned now = ms__source_throttles(s->inner);
	unsigned before = atomic_exchange(&s->seen_throttles, now);

	if (now > before)
		atomic_fetch_add(&s->gate->throttles, now - before);
}

/* Sleeps 1 s, 2 s, 4 s ... up to 30 s, with full jitter, never past `until`, waking early
 * on cancel. */
static void patience_sleep(ms__gate *g, unsigned attempt, unsigned *seed, double until)
{
	double cap = attempt < 5 ? (double)(1u << attempt) : 30.0;
	double end = now_mono() + cap * (double)rand_r(seed) / (double)RAND_MAX;

	if (end > until)
		end = until;
	while (now_mono() < end && !atomic_load(&g->canceled))
		usleep(20000);
}

/* How long the store has been unavailable, through every read of the gate; a success
 * anywhere resets it. */
static double unavailable_for(ms__gate *g, int rc)
{
	double now = now_mono(), since;

	pthread_mutex_lock(&g->lock);
	if (rc != MS_EUNAVAILABLE)
		g->unavailable_since = 0;
	else if (g->unavailable_since == 0)
		g->unavailable_since = now;
	since = g->unavailable_since;
	pthread_mutex_unlock(&g->lock);
	return since == 0 ? 0 : now - since;
}

static int gated_read(ms__source *src, void *dst, uint64_t offset, size_t length)
{
	gated_source *s = (gated_source *)src;
	ms__gate *g = s->gate;
	unsigned seed = (unsigned)getpid() ^ (atomic_fetch_add(&g->seed_seq, 1) * 2654435761u);
	int rc;

	for (unsigned patient = 0;; patient++) {
		unsigned token;

		if (atomic_load(&g->canceled))
			return ms__error_set(MS_ECANCELED, "%s: canceled", src->location);
		if ((rc = ms__admission_enter(g->adm, &token)) < 0)
			return rc == MS_ECANCELED ? ms__error_set(rc, "%s: canceled", src->location)
			                          : rc;
		rc = ms__admission_pace(g->adm, length);
		if (rc == 0)
			rc = ms__source_read(s->inner, dst, offset, length);
		ms__admission_leave(g->adm, token);
		count_throttles(s);
		if (rc == 0)
			atomic_fetch_add(&g->bytes, length);
		ms__gate_tick(g);
		/* The store kept saying "slow down" (or could not be reached) through all of
		 * one read's retries. The reader waits, with the window halved meanwhile, up
		 * to the gate's patience, rather than fail the pod. */
		double waited = unavailable_for(g, rc);

		if (rc != MS_EUNAVAILABLE || waited >= g->patience || atomic_load(&g->canceled))
			return rc;
		/* Never past the patience: the store has been unavailable for `waited`. */
		patience_sleep(g, patient, &seed, now_mono() + (g->patience - waited));
	}
}

static void gated_close(ms__source *src)
{
	gated_source *s = (gated_source *)src;

	ms__source_close(s->inner);
	ms__free(s);
}

static uint64_t gated_received(ms__source *src)
{
	return ms__source_received(((gated_source *)src)->inner);
}

static void gated_cancel(ms__source *src)
{
	gated_source *s = (gated_source *)src;

	ms__gate_cancel(s->gate);
	ms__source_cancel(s->inner);
}

static unsigned gated_throttles(ms__source *src)
{
	return ms__source_throttles(((gated_source *)src)->inner);
}

static const ms__source_ops gated_ops = {
    .read_range = gated_read,
    .close = gated_close,
    .received = gated_received,
    .cancel = gated_cancel,
    .throttles = gated_throttles,
};

int ms__gate_wrap(ms__source **out, ms__gate *g, ms__source *inner)
{
	gated_source *s = ms__calloc(1, sizeof(*s));

	*out = NULL;
	if (s == NULL) {
		int rc = ms__error_set(MS_ENOMEM, "%s: out of memory", inner->location);

		ms__source_close(inner);
		return rc;
	}
	s->base = *inner;
	s->base.ops = &gated_ops;
	s->inner = inner;
	s->gate = g;
	atomic_init(&s->seen_throttles, ms__source_throttles(inner));
	*out = &s->base;
	return 0;
}
