/*
 * fetch_source.c - what a fetch's source holds: the files of one object, a prefix, a local
 * file or directory, or an application back end's location, each with its size, ETag and
 * cache key; and opening one of them for reading.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "cache.h"
#include "error.h"
#include "fetch_source.h"
#include "s3/s3_list.h"
#include "s3/s3_url.h"
#include "source_custom.h"
#include "s3/source_s3.h"

/** The most files one source may hold. */
#define FILES_MAX 100000

void ms__fetch_source_free(source_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		ms__free(l->files[i].path);
		ms__free(l->files[i].location);
		ms__free(l->files[i].s3_key);
		ms__free(l->files[i].etag);
	}
	ms__free(l->files);
	ms__s3_client_free(l->client);
	memset(l, 0, sizeof(*l));
}

static int add_file(source_list *l, size_t *cap, const char *path, const char *location,
                    const char *s3_key, const char *etag, uint64_t size)
{
	source_file *f;

	if (l->count == FILES_MAX)
		return ms__error_set(MS_ELIMIT, "%s: more than %d files", location, FILES_MAX);
	if (ms__grow((void **)&l->files, cap, l->count + 1, sizeof(*l->files)) < 0)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", location);
	f = &l->files[l->count++];
	memset(f, 0, sizeof(*f));
	f->path = ms__strdup(path);
	f->location = ms__strdup(location);
	f->s3_key = s3_key != NULL ? ms__strdup(s3_key) : NULL;
	f->etag = ms__strdup(etag != NULL ? etag : "");
	f->size = size;
	if (f->path == NULL || f->location == NULL || f->etag == NULL ||
	    (s3_key != NULL && f->s3_key == NULL))
		return ms__error_set(MS_ENOMEM, "%s: out of memory", location);
	return ms__cache_key(f->key, location, f->etag, size);
}

typedef struct {
	source_list *list;
	size_t cap;
	const char *prefix_key;
} listing;

static int on_object(const ms_object *o, void *payload)
{
	listing *l = payload;
	char key[MS__S3_KEY_MAX + 1];

	/* Keys ending in '/' are "folders" made by consoles, not files. */
	if (o->is_prefix || o->name[0] == '\0' || o->name[strlen(o->name) - 1] == '/')
		return 0;
	snprintf(key, sizeof(key), "%s%s", l->prefix_key, o->name);
	return add_file(l->list, &l->cap, o->name, o->location, key, o->etag, o->size);
}

/* An ETag for a local file: changes whenever the file could have. */
static void local_etag(char *out, size_t size, const struct stat *st)
{
	snprintf(out, size, "local-%llx-%llx-%llx.%09ld", (unsigned long long)st->st_ino,
	         (unsigned long long)st->st_size, (unsigned long long)st->st_mtim.tv_sec,
	         st->st_mtim.tv_nsec);
}

static __thread struct {
	source_list *list;
	size_t cap;
	size_t root;
	int rc;
} walk;

static int on_local(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	char etag[128];

	(void)ftw;
	if (type == FTW_DNR || type == FTW_NS) {
		walk.rc = ms__error_set(MS_EACCES, "%s: cannot be read", path);
		return 1;
	}
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	local_etag(etag, sizeof(etag), st);
	walk.rc = add_file(walk.list, &walk.cap, path + walk.root, path, NULL, etag,
	                   (uint64_t)st->st_size);
	return walk.rc != 0;
}

static int compare_files(const void *a, const void *b)
{
	return strcmp(((const source_file *)a)->path, ((const source_file *)b)->path);
}

int ms__fetch_list_source(source_list *l, const char *source, const ms_cancel *cancel)
{
	ms__s3_client_options copts = {.cancel = cancel};
	size_t cap = 0;
	struct stat st;
	int rc;

	memset(l, 0, sizeof(*l));
	if (ms__source_s3_handles(source)) {
		const ms__s3_location *loc;

		if ((rc = ms__s3_client_open(&l->client, source, &copts)) < 0)
			return rc;
		loc = ms__s3_client_location(l->client);
		if (loc->prefix) {
			listing ls = {l, 0, loc->key};

			rc = ms__s3_list_each(l->client, NULL, true, on_object, &ls);
			if (rc == 0 && l->count == 0)
				rc = ms__error_set(MS_ENOTFOUND, "%s: no objects under this prefix",
				                   source);
		} else {
			char etag[MS__S3_CLIENT_ETAG_SIZE];
			uint64_t size;
			const char *base = strrchr(loc->key, '/');

			rc = ms__source_s3_stat(l->client, NULL, NULL, &size, etag, sizeof(etag));
			if (rc == 0)
				rc = add_file(l, &cap, base != NULL ? base + 1 : loc->key, source,
				              loc->key, etag, size);
		}
	} else if (ms__source_custom_handles(source)) {
		ms__source *src = NULL;
		const char *base = strrchr(source, '/');

		if ((rc = ms__source_custom_open(&src, source)) == 0)
			rc = add_file(l, &cap, base != NULL && base[1] ? base + 1 : "file", source,
			              NULL, "", src->size);
		ms__source_close(src);
	} else if (stat(source, &st) != 0) {
		return ms__error_errno(errno, "%s", source);
	} else if (S_ISDIR(st.st_mode)) {
		size_t root = strlen(source);

		while (root > 1 && source[root - 1] == '/')
			root--;
		l->local = true;
		walk.list = l;
		walk.cap = 0;
		walk.root = root + 1;
		walk.rc = 0;
		if (nftw(source, on_local, 32, FTW_PHYS) < 0 && walk.rc == 0)
			walk.rc = ms__error_errno(errno, "%s", source);
		rc = walk.rc;
		if (rc == 0 && l->count == 0)
			rc = ms__error_set(MS_ENOTFOUND, "%s: no files in this directory", source);
	} else {
		char etag[128];
		const char *base = strrchr(source, '/');

		l->local = true;
		local_etag(etag, sizeof(etag), &st);
		rc = add_file(l, &cap, base != NULL ? base + 1 : source, source, NULL, etag,
		              (uint64_t)st.st_size);
	}
	if (rc == 0 && l->count > 1)
		qsort(l->files, l->count, sizeof(*l->files), compare_files);
	for (size_t i = 0; rc == 0 && i < l->count; i++)
		if (strstr(l->files[i].path, "..") != NULL &&
		    (strncmp(l->files[i].path, "../", 3) == 0 ||
		     strstr(l->files[i].path, "/../") != NULL))
			rc = ms__error_set(MS_EINVAL,
			                   "%s: a file name that climbs out of the model: %s",
			                   source, l->files[i].path);
	if (rc < 0)
		ms__fetch_source_free(l);
	return rc;
}

int ms__fetch_open_source(ms__source **out, const source_list *l, const source_file *f)
{
	if (l->client != NULL)
		return ms__source_s3_open_listed(out, l->client, f->location, f->s3_key, f->size,
		                                 f->etag);
	if (!l->local)
		return ms__source_custom_open(out, f->location);
	return ms__source_file_open(out, f->location, MS_DIRECT_IO_OFF);
}
