/*
 * cancel.h - the cancellation token (ms_cancel of modelstream.h), as the library reads it.
 */
#ifndef MS_CANCEL_H
#define MS_CANCEL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "modelstream.h"

struct ms_cancel {
	atomic_bool fired;
};

/** True once `c` has fired; false for NULL. Any thread; async-signal-safe. */
static inline bool ms__cancel_fired(const ms_cancel *c)
{
	return c != NULL && atomic_load_explicit(&c->fired, memory_order_acquire);
}

#endif
