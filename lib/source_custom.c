/*
 * source_custom.c - the registry of application back ends, and the source that wraps one.
 *
 * The registry is a small table under a mutex: registration is rare, lookups happen once
 * per opened file. A back end's functions are called without the lock held.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "error.h"
#include "source_custom.h"

#define SCHEME_MAX 32

typedef struct {
	ms_backend backend;
	char scheme[SCHEME_MAX + 1];
} entry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static entry registry[MS__BACKENDS_MAX];
static size_t registry_count;

typedef struct {
	ms__source base;
	ms_backend backend;
	void *handle;
	char *location;
} custom_source;

/* Length of the scheme of "scheme://...", or 0 when `location` has none. */
static size_t scheme_length(const char *location)
{
	size_t n = 0;

	if (!isalpha((unsigned char)location[0]))
		return 0;
	while (isalnum((unsigned char)location[n]) || location[n] == '+' || location[n] == '-' ||
	       location[n] == '.')
		n++;
	return strncmp(location + n, "://", 3) == 0 && n <= SCHEME_MAX ? n : 0;
}

/* Finds the entry for `location`'s scheme and copies its back end. Lock held. */
static bool find(const char *location, ms_backend *out)
{
	size_t n = scheme_length(location);

	for (size_t i = 0; n > 0 && i < registry_count; i++)
		if (strlen(registry[i].scheme) == n &&
		    strncasecmp(registry[i].scheme, location, n) == 0) {
			*out = registry[i].backend;
			return true;
		}
	return false;
}

bool ms__source_custom_handles(const char *location)
{
	ms_backend b;
	bool found;

	pthread_mutex_lock(&registry_lock);
	found = find(location, &b);
	pthread_mutex_unlock(&registry_lock);
	return found;
}

int ms_backend_register(const ms_backend *backend)
{
	char probe[SCHEME_MAX + 8];
	ms_backend existing;
	int rc = 0;

	if (backend == NULL || backend->version != MS_BACKEND_VERSION || backend->scheme == NULL ||
	    backend->open == NULL || backend->read == NULL || backend->close == NULL)
		return ms__error_set(MS_EINVAL,
		                     "ms_backend_register: the back end is NULL, of another "
		                     "version, or lacks scheme, open, read or close");
	snprintf(probe, sizeof(probe), "%s://", backend->scheme);
	if (strlen(backend->scheme) > SCHEME_MAX || scheme_length(probe) != strlen(backend->scheme))
		return ms__error_set(MS_EINVAL,
		                     "ms_backend_register: '%.40s' is not a scheme (a letter, "
		                     "then letters, digits, '+', '-' or '.'; at most %d)",
		                     backend->scheme, SCHEME_MAX);
	if (strcasecmp(backend->scheme, "s3") == 0 || strcasecmp(backend->scheme, "gs") == 0 ||
	    strcasecmp(backend->scheme, "file") == 0)
		return ms__error_set(MS_EINVAL, "ms_backend_register: '%s' is built in",
		                     backend->scheme);
	pthread_mutex_lock(&registry_lock);
	if (find(probe, &existing))
		rc = ms__error_set(MS_ESTATE, "ms_backend_register: '%s' is registered already",
		                   backend->scheme);
	else if (registry_count == MS__BACKENDS_MAX)
		rc = ms__error_set(MS_ELIMIT, "ms_backend_register: %d schemes are registered",
		                   MS__BACKENDS_MAX);
	else {
		entry *e = &registry[registry_count++];

		e->backend = *backend;
		snprintf(e->scheme, sizeof(e->scheme), "%s", backend->scheme);
		e->backend.scheme = e->scheme;
	}
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

int ms_backend_unregister(const char *scheme)
{
	int rc = MS_ENOTFOUND;

	if (scheme == NULL)
		return ms__error_set(MS_EINVAL, "ms_backend_unregister: scheme is NULL");
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < registry_count; i++)
		if (strcasecmp(registry[i].scheme, scheme) == 0) {
			registry[i] = registry[--registry_count];
			registry[i].backend.scheme = registry[i].scheme;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
	if (rc < 0)
		return ms__error_set(rc, "ms_backend_unregister: '%.40s' is not registered",
		                     scheme);
	return 0;
}

int ms_error_raise(int code, const char *fmt, ...)
{
	char message[MS__ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt != NULL ? fmt : "", ap);
	va_end(ap);
	return ms__error_set(code, "%s", message);
}

/* Makes sure a failure of the back end has a message naming the location. */
static int failed(const char *location, const char *call, int rc)
{
	const ms_error *e = ms_error_last();

	if (rc > 0 || rc == MS_ITER_END || rc < MS_ESTATE)
		rc = MS_ERROR;
	if (e->code == rc && strstr(e->message, location) != NULL)
		return rc;
	if (e->code == rc)
		return ms__error_set(rc, "%s: %s", location, e->message);
	return ms__error_set(rc, "%s: the back end's %s failed: %s", location, call,
	                     ms_strerror(rc));
}

static int custom_read(ms__source *src, void *dst, uint64_t offset, size_t length)
{
	custom_source *s = (custom_source *)src;
	int rc;

	if (offset >= src->size)
		return 0;
	if (length > src->size - offset)
		length = (size_t)(src->size - offset);
	ms__error_set(MS_OK, "no error");
	rc = s->backend.read(s->handle, dst, offset, length);
	return rc == 0 ? 0 : failed(s->location, "read", rc);
}

static void custom_close(ms__source *src)
{
	custom_source *s = (custom_source *)src;

	if (s->handle != NULL)
		s->backend.close(s->handle);
	ms__free(s->location);
	ms__free(s);
}

static const ms__source_ops custom_ops = {
    .read_range = custom_read,
    .close = custom_close,
};

int ms__source_custom_open(ms__source **out, const char *location)
{
	custom_source *s;
	bool found;
	int rc;

	*out = NULL;
	s = ms__calloc(1, sizeof(*s));
	if (s == NULL || (s->location = ms__strdup(location)) == NULL) {
		ms__free(s);
		return ms__error_set(MS_ENOMEM, "%s: out of memory", location);
	}
	pthread_mutex_lock(&registry_lock);
	found = find(location, &s->backend);
	pthread_mutex_unlock(&registry_lock);
	if (!found) {
		custom_close(&s->base);
		return ms__error_set(MS_EUNSUPPORTED, "%s: no back end is registered for it",
		                     location);
	}
	ms__error_set(MS_OK, "no error");
	rc = s->backend.open(s->backend.data, location, &s->handle, &s->base.size);
	if (rc != 0) {
		rc = failed(location, "open", rc);
		s->handle = NULL;
		custom_close(&s->base);
		return rc;
	}
	s->base.ops = &custom_ops;
	s->base.location = s->location;
	s->base.read_alignment = 1;
	*out = &s->base;
	return 0;
}
