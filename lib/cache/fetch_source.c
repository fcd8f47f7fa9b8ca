/*
 * fetch_source.c - what a fetch's source holds: the files of a directory, a prefix, or the
 * one object a location names, each with its size, ETag and cache key, listed by the
 * location layer's one lister; and opening one of them for reading.
 */
#include <string.h>

#include "alloc.h"
#include "cache.h"
#include "error.h"
#include "fetch_source.h"

void ms__fetch_source_free(source_list *l)
{
	ms__free(l->files);
	ms__listing_free(&l->listing);
	memset(l, 0, sizeof(*l));
}

static bool climbs_out(const char *path)
{
	size_t n = strlen(path);

	return strcmp(path, "..") == 0 || strncmp(path, "../", 3) == 0 ||
	       strstr(path, "/../") != NULL || (n >= 3 && strcmp(path + n - 3, "/..") == 0);
}

int ms__fetch_list_source(source_list *l, const char *source, const ms_cancel *cancel)
{
	ms__open_options o = {.direct_io = MS_DIRECT_IO_OFF, .cancel = cancel};
	bool dir = ms__location_is_dir(source);
	int rc;

	memset(l, 0, sizeof(*l));
	if ((rc = ms__listing_collect(&l->listing, source, true, NULL, &o)) < 0)
		return rc;
	if (l->listing.count == 0) {
		rc =
		    ms__error_set(MS_ENOTFOUND, "%s: no files in this %s", source,
		                  l->listing.backend == &ms__backend_file ? "directory" : "prefix");
		goto done;
	}
	l->files = ms__calloc(l->listing.count, sizeof(*l->files));
	if (l->files == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", source);
		goto done;
	}
	for (size_t i = 0; rc == 0 && i < l->listing.count; i++) {
		const ms__entry *e = &l->listing.entries[i];
		source_file *f = &l->files[l->count++];

		*f = (source_file){e->name, e->location, e->etag, e->size, ""};
		if (dir && climbs_out(e->name))
			rc = ms__error_set(MS_EINVAL,
			                   "%s: a file name that climbs out of the model: %s",
			                   source, e->name);
		else
			rc = ms__cache_key(f->key, e->location, e->etag, e->size);
	}
done:
	if (rc < 0)
		ms__fetch_source_free(l);
	return rc;
}

int ms__fetch_open_source(ms__source **out, const source_list *l, const source_file *f)
{
	ms__open_options o = {.direct_io = MS_DIRECT_IO_OFF};

	return ms__listing_open(out, &l->listing, (size_t)(f - l->files), &o);
}

void ms__fetch_source_counters(const source_list *l, ms__backend_counters *out)
{
	memset(out, 0, sizeof(*out));
	if (l->listing.backend->counters != NULL && l->listing.context != NULL)
		l->listing.backend->counters(l->listing.context, out);
}
