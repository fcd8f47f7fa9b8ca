/*
 * location.c - choosing a location's back end, once, and the one lister (see location.h).
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "location.h"
#include "s3/source_s3.h"
#include "source_custom.h"

const ms__backend *ms__backend_of(const char *location)
{
	if (ms__source_custom_handles(location))
		return &ms__backend_custom;
	if (ms__source_s3_handles(location))
		return &ms__backend_s3;
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

typedef struct {
	ms__listing *l;
	bool (*keep)(const char *name);
	size_t max;
	const char *location;
} collecting;

static int on_object(const ms_object *o, void *payload)
{
	collecting *c = payload;
	ms__listing *l = c->l;
	ms__entry *e;
	size_t n = strlen(o->name);

	/* Keys ending in '/' are "folders" made by consoles, not files. */
	if (o->is_prefix || n == 0 || o->name[n - 1] == '/' || (c->keep && !c->keep(o->name)))
		return 0;
	if (l->count == c->max)
		return ms__error_set(MS_ELIMIT, "%s: more than %zu files", c->location, c->max);
	if (ms__grow((void **)&l->entries, &l->capacity, l->count + 1, sizeof(*l->entries)) < 0)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", c->location);
	e = &l->entries[l->count++];
	*e = (ms__entry){ms__strdup(o->name), ms__strdup(o->location),
	                 ms__strdup(o->etag != NULL ? o->etag : ""), o->size};
	if (e->name == NULL || e->location == NULL || e->etag == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", c->location);
	return 0;
}

static int compare_entries(const void *a, const void *b)
{
	return strcmp(((const ms__entry *)a)->name, ((const ms__entry *)b)->name);
}

int ms__listing_collect(ms__listing *out, const char *location, bool recursive,
                        bool (*keep)(const char *name), size_t max, const ms__open_options *o)
{
	static const ms__open_options none = {0};
	collecting c = {out, keep, max, location};
	int rc;

	memset(out, 0, sizeof(*out));
	out->backend = ms__backend_of(location);
	rc = out->backend->list(&out->context, location, recursive, o != NULL ? o : &none,
	                        on_object, &c);
	if (rc == 0 && out->count > 1)
		qsort(out->entries, out->count, sizeof(*out->entries), compare_entries);
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
