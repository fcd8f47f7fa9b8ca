/*
 * gate.h - admission control and patience as a source wrapper, for every path that reads
 * object storage: fetches into the node cache and `stream s3://` alike.
 *
 * A gate holds one admission controller (admission.h: the node-wide slots and byte rate,
 * and this process's adaptive window). Wrapping a source in it makes every read of that
 * source
 *  - wait for the window and a node-wide slot, and for the byte budget, before it starts;
 *  - feed the controller when it ends (bytes moved, congestion signals seen);
 *  - wait out a store that keeps answering "slow down" or cannot be reached, for up to the
 *    gate's patience, with the window halved meanwhile, instead of failing at once.
 * The engine above sees a source like any other.
 *
 * Thread rules: reads from any number of threads; ms__gate_cancel() from any thread at any
 * time; the other calls from the thread that owns the gate.
 */
#ifndef MS_GATE_H
#define MS_GATE_H

#include "admission.h"
#include "source.h"

typedef struct ms__gate ms__gate;

/**
 * Opens a gate on the node state in `dir` (a cache directory, shared by every process that
 * uses it). `patience_seconds` 0 means 600. Returns 0 or the errors of
 * ms__admission_open().
 */
int ms__gate_open(ms__gate **out, const char *dir, const ms__admission_options *o,
                  unsigned patience_seconds);

/**
 * Wraps `inner` so that its reads pass the gate. Takes `inner` over, also on failure
 * (closing it). The wrapper keeps inner's location, size, alignment and preferred chunk.
 * The gate must outlive the wrapper. Returns 0 or MS_ENOMEM.
 */
int ms__gate_wrap(ms__source **out, ms__gate *g, ms__source *inner);

/**
 * Holds one of the gate's places for a request that is not a read of a wrapped source (a
 * listing, the HEAD that opens an object), so that every request of the process to the
 * store counts against the node's budget. Returns 0 with *token set, or MS_ECANCELED.
 */
int ms__gate_enter(ms__gate *g, unsigned *token);

/** Gives back the place of ms__gate_enter(). */
void ms__gate_leave(ms__gate *g, unsigned token);

/** Feeds the controller between reads (every few hundred milliseconds). */
void ms__gate_tick(ms__gate *g);

/** The controller's figures, for progress and metrics. */
void ms__gate_stats(ms__gate *g, ms__admission_stats *out);

/** Stops every wait of the gate for good: waiting reads fail with MS_ECANCELED. */
void ms__gate_cancel(ms__gate *g);

/** Closes the gate; no wrapper may be reading. Accepts NULL. */
void ms__gate_close(ms__gate *g);

#endif
