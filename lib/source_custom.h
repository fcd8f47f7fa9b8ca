/*
 * source_custom.h - back ends registered by the application for their own URL schemes.
 */
#ifndef MS_SOURCE_CUSTOM_H
#define MS_SOURCE_CUSTOM_H

#include <stdbool.h>

#include "source.h"

/** The most schemes registered at once. */
#define MS__BACKENDS_MAX 16

/** True if a registered back end handles `location` ("scheme://..."). */
bool ms__source_custom_handles(const char *location);

/** Opens `location` through its registered back end. Errors as the back end says. */
int ms__source_custom_open(ms__source **out, const char *location);

#endif
