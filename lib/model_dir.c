/*
 * model_dir.c - the weights of a model directory, local or in a bucket.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "error.h"
#include "model_dir.h"
#include "s3/s3_list.h"
#include "s3/s3_url.h"
#include "s3/source_s3.h"

#define SUFFIX ".safetensors"
/** The most weight files one directory may hold. */
#define FILES_MAX 100000

static bool is_weights(const char *name)
{
	size_t n = strlen(name), k = strlen(SUFFIX);

	return n > k && strcmp(name + n - k, SUFFIX) == 0 && name[0] != '.';
}

bool ms__model_dir_is(const char *location)
{
	struct stat st;
	ms__s3_url u;

	if (ms__source_s3_handles(location))
		return ms__s3_url_parse(&u, location) == 0 && u.prefix;
	return stat(location, &st) == 0 && S_ISDIR(st.st_mode);
}

static int add(ms__model_dir *d, size_t *capacity, const char *location, const char *key,
               uint64_t size, const char *etag)
{
	ms__model_file *f;

	if (d->count == FILES_MAX)
		return ms__error_set(MS_ELIMIT, "%s: more than %d weight files", location,
		                     FILES_MAX);
	if (ms__grow((void **)&d->files, capacity, d->count + 1, sizeof(*d->files)) < 0)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", location);
	f = &d->files[d->count];
	*f = (ms__model_file){ms__strdup(location), key ? ms__strdup(key) : NULL, size,
	                      etag ? ms__strdup(etag) : NULL};
	d->count++;
	if (f->location == NULL || (key != NULL && f->key == NULL) ||
	    (etag != NULL && f->etag == NULL))
		return ms__error_set(MS_ENOMEM, "%s: out of memory", location);
	return 0;
}

typedef struct {
	ms__model_dir *dir;
	size_t capacity;
	const char *prefix_key;
} listing;

static int on_object(const ms_object *o, void *payload)
{
	listing *l = payload;
	char key[MS__S3_KEY_MAX + 1];

	if (o->is_prefix || !is_weights(o->name))
		return 0;
	snprintf(key, sizeof(key), "%s%s", l->prefix_key, o->name);
	return add(l->dir, &l->capacity, o->location, key, o->size, o->etag);
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int open_local(ms__model_dir *d, const char *path)
{
	DIR *dir = opendir(path);
	char **names = NULL;
	size_t count = 0, cap = 0, capacity = 0;
	struct dirent *e;
	int rc = 0;

	if (dir == NULL)
		return ms__error_errno(errno, "%s", path);
	while (rc == 0 && (e = readdir(dir)) != NULL) {
		if (!is_weights(e->d_name))
			continue;
		if (ms__grow((void **)&names, &cap, count + 1, sizeof(*names)) < 0) {
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
			break;
		}
		if ((names[count] = ms__strdup(e->d_name)) == NULL)
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
		else
			count++;
	}
	closedir(dir);
	if (count > 0)
		qsort(names, count, sizeof(*names), compare_names);
	for (size_t i = 0; i < count; i++) {
		size_t n = strlen(path) + 1 + strlen(names[i]) + 1;
		char *full = rc == 0 ? ms__malloc(n) : NULL;

		if (rc == 0 && full == NULL)
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
		if (rc == 0) {
			bool slash = path[0] != '\0' && path[strlen(path) - 1] == '/';

			snprintf(full, n, "%s%s%s", path, slash ? "" : "/", names[i]);
			rc = add(d, &capacity, full, NULL, 0, NULL);
		}
		ms__free(full);
		ms__free(names[i]);
	}
	ms__free(names);
	return rc;
}

int ms__model_dir_open(ms__model_dir *out, const char *location)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!ms__source_s3_handles(location)) {
		rc = open_local(out, location);
	} else if ((rc = ms__s3_client_open(&out->client, location, NULL)) == 0) {
		listing l = {out, 0, ms__s3_client_location(out->client)->key};

		rc = ms__s3_list_each(out->client, NULL, false, on_object, &l);
	}
	if (rc == 0 && out->count == 0)
		rc = ms__error_set(MS_ENOTFOUND, "%s: no *" SUFFIX " files in this %s", location,
		                   out->client != NULL ? "prefix" : "directory");
	if (rc < 0)
		ms__model_dir_free(out);
	return rc;
}

int ms__model_dir_source(ms__source **out, const ms__model_dir *d, size_t i, ms_direct_io direct_io)
{
	const ms__model_file *f = &d->files[i];

	if (d->client == NULL)
		return ms__source_file_open(out, f->location, direct_io);
	return ms__source_s3_open_listed(out, d->client, f->location, f->key, f->size, f->etag);
}

void ms__model_dir_free(ms__model_dir *d)
{
	for (size_t i = 0; i < d->count; i++) {
		ms__free(d->files[i].location);
		ms__free(d->files[i].key);
		ms__free(d->files[i].etag);
	}
	ms__free(d->files);
	ms__s3_client_free(d->client);
	memset(d, 0, sizeof(*d));
}
