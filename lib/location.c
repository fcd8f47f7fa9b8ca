/*
 * location.c - choosing a location's back end, once, and the one lister (see location.h).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "location.h"
#include "s3/source_s3.h"
#include "source_custom.h"

/* The length of `location`'s scheme ("az" of "az://c/m"), or 0 if it has none. */
static size_t scheme_length(const char *location)
{
	size_t n = strspn(location, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                            "0123456789+-.");

	return n > 0 && isalpha((unsigned char)location[0]) && strncmp(location + n, "://", 3) == 0
	           ? n
	           : 0;
}

/*
 * The back end of a scheme no other claims ("az://c/m"): every call fails by naming it,
 * instead of the location being looked for as a local path that cannot be there. is_dir
 * answers yes, so that a caller that would list a directory asks list(), which says why.
 */
static int unclaimed(const char *location)
{
	return ms__error_set(MS_EUNSUPPORTED,
	                     "%s: no back end reads %.*s:// locations (local paths, s3://, gs:// "
	                     "and schemes registered with ms_backend_register())",
	                     location, (int)scheme_length(location), location);
}

static int unclaimed_open(ms__source **out, const char *location, const ms__open_options *o)
{
	(void)o;
	*out = NULL;
	return unclaimed(location);
}

static bool unclaimed_is_dir(const char *location)
{
	(void)location;
	return true;
}

static int unclaimed_list(void **context, const char *location, bool recursive,
                          const ms__open_options *o, ms_list_fn fn, void *payload)
{
	(void)recursive, (void)o, (void)fn, (void)payload;
	*context = NULL;
	return unclaimed(location);
}

static int unclaimed_open_listed(ms__source **out, void *context, const ms_object *obj,
                                 const ms__open_options *o)
{
	(void)context;
	return unclaimed_open(out, obj->location, o);
}

static int unclaimed_exists(const char *location, int *exists, uint64_t *size)
{
	(void)exists, (void)size;
	return unclaimed(location);
}

static int unclaimed_put(void **context, const char *path, const char *location,
                         const ms_push_options *o)
{
	(void)context, (void)path, (void)o;
	return unclaimed(location);
}

static const ms__backend backend_unclaimed = {
    .name = "unclaimed scheme",
    .summary = "has a scheme no back end reads",
    .open = unclaimed_open,
    .is_dir = unclaimed_is_dir,
    .list = unclaimed_list,
    .open_listed = unclaimed_open_listed,
    .exists = unclaimed_exists,
    .put = unclaimed_put,
};

const ms__backend *ms__backend_of(const char *location)
{
	if (ms__source_custom_handles(location))
		return &ms__backend_custom;
	if (ms__source_s3_handles(location))
		return &ms__backend_s3;
	if (scheme_length(location) > 0)
		return &backend_unclaimed;
	return &ms__backend_file;
}

int ms__source_open(ms__source **out, const char *location, const ms__open_options *o)
{
	static const ms__open_options none = {0};

	return ms__backend_of(location)->open(out, location, o != NULL ? o : &none);
}

bool ms__location_is_dir(const char *location)
{
	return ms__backend_of(location)->is_dir(location);
}

int ms__listing_add(ms__listing *l, const char *name, const char *location, const char *etag,
                    uint64_t size, bool is_prefix, const char *what)
{
	ms__entry *e;

	if (l->count == MS__LISTING_MAX)
		return ms__error_set(MS_ELIMIT, "%s: more than %d files", what, MS__LISTING_MAX);
	if (ms__grow((void **)&l->entries, &l->capacity, l->count + 1, sizeof(*l->entries)) < 0)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", what);
	e = &l->entries[l->count++];
	*e = (ms__entry){ms__strdup(name), ms__strdup(location),
	                 ms__strdup(etag != NULL ? etag : ""), size, is_prefix};
	if (e->name == NULL || e->location == NULL || e->etag == NULL) {
		/* No half-made entry stays behind for a sort or a caller to meet. */
		ms__free(e->name);
		ms__free(e->location);
		ms__free(e->etag);
		l->count--;
		return ms__error_set(MS_ENOMEM, "%s: out of memory", what);
	}
	return 0;
}

static int compare_entries(const void *a, const void *b)
{
	return strcmp(((const ms__entry *)a)->name, ((const ms__entry *)b)->name);
}

void ms__listing_sort(ms__listing *l)
{
	if (l->count > 1)
		qsort(l->entries, l->count, sizeof(*l->entries), compare_entries);
}

typedef struct {
	ms__listing *l;
	bool (*keep)(const char *name);
	const char *location;
} collecting;

static int on_object(const ms_object *o, void *payload)
{
	collecting *c = payload;
	size_t n = strlen(o->name);

	/* Keys ending in '/' are "folders" made by consoles, not files. */
	if (o->is_prefix || n == 0 || o->name[n - 1] == '/' || (c->keep && !c->keep(o->name)))
		return 0;
	return ms__listing_add(c->l, o->name, o->location, o->etag, o->size, false, c->location);
}

int ms__listing_collect(ms__listing *out, const char *location, bool recursive,
                        bool (*keep)(const char *name), const ms__open_options *o)
{
	static const ms__open_options none = {0};
	collecting c = {out, keep, location};
	int rc;

	memset(out, 0, sizeof(*out));
	out->backend = ms__backend_of(location);
	rc = out->backend->list(&out->context, location, recursive, o != NULL ? o : &none,
	                        on_object, &c);
	if (rc == 0)
		ms__listing_sort(out);
	if (rc != 0)
		ms__listing_free(out);
	return rc;
}

int ms__listing_open(ms__source **out, const ms__listing *l, size_t i, const ms__open_options *o)
{
	static const ms__open_options none = {0};
	const ms__entry *e = &l->entries[i];
	ms_object obj = {
	    .location = e->location, .name = e->name, .size = e->size, .etag = e->etag};

	return l->backend->open_listed(out, l->context, &obj, o != NULL ? o : &none);
}

void ms__listing_free(ms__listing *l)
{
	for (size_t i = 0; i < l->count; i++) {
		ms__free(l->entries[i].name);
		ms__free(l->entries[i].location);
		ms__free(l->entries[i].etag);
	}
	ms__free(l->entries);
	if (l->context != NULL && l->backend != NULL && l->backend->context_free != NULL)
		l->backend->context_free(l->context);
	memset(l, 0, sizeof(*l));
}
