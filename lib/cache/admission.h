/*
 * admission.h - how many reads a node puts in flight against object storage, and how fast.
 *
 * Two layers, as DESIGN.md has them:
 *
 *  - A node-wide budget shared by every process through files in the cache directory, so
 *    it holds across pods: at most `max_connections` reads in flight (each holds one of that
 *    many byte-range locks on DIR/.admission-slots: open file description locks, released by
 *    the kernel when the holder dies, however it dies) and at most `max_bytes_per_second`
 *    (a token bucket in DIR/.admission-rate, updated under flock).
 *  - Within it, each fetch adapts its own window of reads in flight the way TCP adapts its
 *    congestion window: it doubles while more reads bring more throughput (slow start),
 *    then grows by one per second; it halves on any "slow down" (503, 429, SlowDown) or
 *    timeout, and steps down by one when added reads stop adding throughput (a plateau),
 *    though not below the window it started with.
 *    Halving on congestion and growing additively is what lets many nodes that never talk
 *    to each other converge on fair shares of a shared bottleneck.
 *
 * Thread rules: ms__admission_enter()/leave() from any number of reading threads;
 * ms__admission_tick() from one thread at a time.
 */
#ifndef MS_ADMISSION_H
#define MS_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#define MS__ADMISSION_WORKERS_MAX 256

typedef struct ms__admission ms__admission;

typedef struct {
	unsigned max_connections;      /* node-wide reads in flight; 0 for no limit */
	uint64_t max_bytes_per_second; /* node-wide; 0 for no limit */
	unsigned max_window;           /* this fetch's workers (its concurrency) */
	unsigned initial_window;       /* 0: min(4, max_window) */
	bool adaptive;                 /* false: the window stays at max_window */
	/* The controller's clock in seconds (monotonic); NULL: CLOCK_MONOTONIC. Tests set
	 * one to walk the window through its states without sleeping. */
	double (*clock)(void *payload);
	void *clock_payload;
} ms__admission_options;

/** What a fetch's admission did, for progress and metrics. */
typedef struct {
	unsigned window;      /* reads this fetch may have in flight now */
	uint64_t slot_waits;  /* times a read waited for a node-wide slot */
	uint64_t rate_waits;  /* times a read waited for the node's bytes/s budget */
	uint64_t throttles;   /* congestion signals seen */
	uint64_t window_cuts; /* times the window was halved */
	unsigned in_flight;   /* reads holding a slot (or admitted) now */
} ms__admission_stats;

/** Opens the node's shared state in `dir` (the cache directory). */
int ms__admission_open(ms__admission **out, const char *dir, const ms__admission_options *o);

/**
 * A read wants to start: waits until fewer reads than the window are in flight, then holds
 * a node-wide slot. *token names the admission for ms__admission_leave(). Returns 0;
 * MS_ECANCELED after ms__admission_stop(); MS_EIO if a lock fails.
 */
int ms__admission_enter(ms__admission *a, unsigned *token);

/** Waits until `bytes` more fit the node's bytes/s budget. Returns 0 or MS_EIO. */
int ms__admission_pace(ms__admission *a, uint64_t bytes);

/** The read of `token` is done: frees its slot and its place in the window. */
void ms__admission_leave(ms__admission *a, unsigned token);

/**
 * Feeds the controller from the fetching thread, every few hundred milliseconds: the bytes
 * this fetch has read so far and the congestion signals (throttles) seen so far.
 */
void ms__admission_tick(ms__admission *a, uint64_t bytes, unsigned throttles);

void ms__admission_stats_get(const ms__admission *a, ms__admission_stats *out);

/** Wakes every waiting read for good, which then fails with MS_ECANCELED. */
void ms__admission_stop(ms__admission *a);

void ms__admission_close(ms__admission *a);

#endif
