/*
 * source_custom.c - the registry of application back ends, and the source that wraps one.
 *
 * The registry is a small table under a mutex: registration is rare, lookups happen once
 * per opened file. A back end's functions are called without the lock held.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "location.h"
#include "sink_mapped.h"
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

	if (backend == NULL || backend->version < 1 || backend->version > MS_BACKEND_VERSION ||
	    backend->scheme == NULL || backend->open == NULL || backend->read == NULL ||
	    backend->close == NULL)
		return ms__error_set(MS_EINVAL,
		                     "ms_backend_register: the back end is NULL, of a version "
		                     "this library does not know (1 to %d), or lacks scheme, "
		                     "open, read or close",
		                     MS_BACKEND_VERSION);
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

		/* A version 1 struct ends before list: the rest stays NULL. */
		memset(&e->backend, 0, sizeof(e->backend));
		memcpy(&e->backend, backend,
		       backend->version == 1 ? offsetof(ms_backend, list) : sizeof(*backend));
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

/* ---------------------------------------------------------------------------------------- */
/* The location layer's operations on registered schemes                                      */
/* ---------------------------------------------------------------------------------------- */

/* Copies the back end of `location`; MS_EUNSUPPORTED (raised) when none is registered. */
static int backend_for(const char *location, ms_backend *out)
{
	bool found;

	pthread_mutex_lock(&registry_lock);
	found = find(location, out);
	pthread_mutex_unlock(&registry_lock);
	return found ? 0
	             : ms__error_set(MS_EUNSUPPORTED, "%s: no back end is registered for it",
	                             location);
}

static bool custom_is_dir(const char *location)
{
	size_t n = strlen(location);

	return n > 0 && location[n - 1] == '/';
}

static int custom_open_location(ms__source **out, const char *location, const ms__open_options *o)
{
	(void)o;
	return ms__source_custom_open(out, location);
}

typedef struct {
	ms__listing l;
	const char *prefix;
} collected;

static int collect(const ms_object *o, void *payload)
{
	collected *c = payload;
	char *location = NULL;
	int rc;

	if (o == NULL || o->name == NULL || o->name[0] == '\0' || o->name[0] == '/')
		return ms__error_set(MS_EFORMAT,
		                     "%s: the back end listed an object without a relative name",
		                     c->prefix);
	if (o->location == NULL) {
		size_t n = strlen(c->prefix) + strlen(o->name) + 1;

		if ((location = ms__malloc(n)) == NULL)
			return ms__error_set(MS_ENOMEM, "%s: out of memory", c->prefix);
		snprintf(location, n, "%s%s", c->prefix, o->name);
	}
	rc = ms__listing_add(&c->l, o->name, o->location != NULL ? o->location : location, o->etag,
	                     o->size, false, c->prefix);
	ms__free(location);
	return rc;
}

/* Lists through the back end's list, sorted; without `recursive`, what lies in a
 * sub-prefix is reported once as that sub-prefix, as object stores do. */
static int custom_list(void **context, const char *location, bool recursive,
                       const ms__open_options *o, ms_list_fn fn, void *payload)
{
	collected c = {.prefix = location};
	char last[1024] = "";
	ms_backend b;
	int rc;

	(void)o;
	*context = NULL;
	if ((rc = backend_for(location, &b)) < 0)
		return rc;
	if (!custom_is_dir(location)) {
		ms__source *src = NULL;
		const char *base = strrchr(location, '/');
		ms_object obj = {.location = location,
		                 .name = base != NULL && base[1] ? base + 1 : location};

		if ((rc = ms__source_custom_open(&src, location)) < 0)
			return rc;
		obj.size = src->size;
		ms__source_close(src);
		return fn(&obj, payload);
	}
	if (b.list == NULL)
		return ms__error_set(MS_EUNSUPPORTED,
		                     "%s: its back end cannot list prefixes (it registered no list "
		                     "function)",
		                     location);
	ms__error_set(MS_OK, "no error");
	rc = b.list(b.data, location, collect, &c);
	if (rc != 0 && ms_error_last()->code == MS_OK)
		rc = failed(location, "list", rc);
	if (rc == 0)
		ms__listing_sort(&c.l);
	for (size_t i = 0; rc == 0 && i < c.l.count; i++) {
		const ms__entry *e = &c.l.entries[i];
		const char *slash = recursive ? NULL : strchr(e->name, '/');
		ms_object obj = {.location = e->location,
		                 .name = e->name,
		                 .size = e->size,
		                 .etag = e->etag[0] ? e->etag : NULL};

		if (slash != NULL) {
			size_t n = (size_t)(slash - e->name) + 1;

			if (n >= sizeof(last) ||
			    (strncmp(last, e->name, n) == 0 && last[n] == '\0'))
				continue; /* this sub-prefix was reported already */
			memcpy(last, e->name, n);
			last[n] = '\0';
			obj = (ms_object){.location = e->location, .name = last, .is_prefix = 1};
		}
		rc = fn(&obj, payload);
	}
	ms__listing_free(&c.l);
	return rc;
}

static int custom_open_listed(ms__source **out, void *context, const ms_object *obj,
                              const ms__open_options *o)
{
	(void)context, (void)o;
	return ms__source_custom_open(out, obj->location);
}

static int custom_exists(const char *location, int *exists, uint64_t *size)
{
	ms__source *src = NULL;
	ms_backend b;
	int rc;

	if ((rc = backend_for(location, &b)) < 0)
		return rc;
	if (b.exists != NULL) {
		ms__error_set(MS_OK, "no error");
		rc = b.exists(b.data, location, exists, size);
		return rc == 0 ? 0 : failed(location, "exists", rc);
	}
	if ((rc = ms__source_custom_open(&src, location)) == MS_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	*exists = 1;
	if (size != NULL)
		*size = src->size;
	ms__source_close(src);
	return 0;
}

static int custom_put(void **context, const char *path, const char *location,
                      const ms_push_options *o)
{
	ms__mapping m = {0};
	ms_backend b;
	struct stat st;
	int fd, rc;

	(void)context, (void)o;
	if ((rc = backend_for(location, &b)) < 0)
		return rc;
	if (b.put == NULL)
		return ms__error_set(MS_EUNSUPPORTED,
		                     "%s: its back end cannot store objects (it registered no put "
		                     "function)",
		                     location);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ms__error_errno(errno, "%s", path);
	if (fstat(fd, &st) != 0)
		rc = ms__error_errno(errno, "%s", path);
	else
		rc = ms__mapping_open(&m, fd, (uint64_t)st.st_size, path);
	close(fd);
	if (rc < 0)
		return rc;
	ms__error_set(MS_OK, "no error");
	rc = b.put(b.data, location, m.base != NULL ? m.base : (const void *)"", m.size);
	ms__mapping_close(&m);
	return rc == 0 ? 0 : failed(location, "put", rc);
}

const ms__backend ms__backend_custom = {
    .name = "registered back end",
    .summary = "is read through the back end the application registered for its scheme",
    .open = custom_open_location,
    .is_dir = custom_is_dir,
    .list = custom_list,
    .open_listed = custom_open_listed,
    .exists = custom_exists,
    .put = custom_put,
};
