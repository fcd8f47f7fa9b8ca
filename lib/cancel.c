/*
 * cancel.c - cancellation tokens: one flag that long calls poll between steps and that
 * their transfers poll as bytes move.
 */
#include "alloc.h"
#include "cancel.h"
#include "error.h"

int ms_cancel_new(ms_cancel **out)
{
	ms_cancel *c;

	if (out == NULL)
		return ms__error_set(MS_EINVAL, "ms_cancel_new: out is NULL");
	*out = NULL;
	if ((c = ms__calloc(1, sizeof(*c))) == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory creating a cancellation token");
	atomic_init(&c->fired, false);
	*out = c;
	return 0;
}

void ms_cancel_fire(ms_cancel *c)
{
	if (c != NULL)
		atomic_store_explicit(&c->fired, true, memory_order_release);
}

int ms_cancel_fired(const ms_cancel *c)
{
	return ms__cancel_fired(c) ? 1 : 0;
}

void ms_cancel_free(ms_cancel *c)
{
	ms__free(c);
}
