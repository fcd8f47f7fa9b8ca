/*
 * storage.c - the public object-storage calls: ms_list, ms_exists, ms_push.
 *
 * Each opens a client for its URL (s3_client.c) and hands the work to s3_list.c or
 * s3_push.c; a local path is answered from the file system where that makes sense.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "error.h"
#include "s3/s3_client.h"
#include "s3/s3_list.h"
#include "s3/s3_push.h"
#include "s3/s3_url.h"
#include "s3/source_s3.h"

int ms_list(const char *prefix_url, int flags, ms_list_fn fn, void *payload)
{
	ms__s3_client *c = NULL;
	ms__s3_url u;
	int rc;

	if (prefix_url == NULL || fn == NULL)
		return ms__error_set(MS_EINVAL, "ms_list: url or callback is NULL");
	if (!ms__source_s3_handles(prefix_url))
		return ms__error_set(MS_EUNSUPPORTED,
		                     "%s: listing is for s3:// and gs:// prefixes; use ls(1) for "
		                     "local directories",
		                     prefix_url);
	if ((rc = ms__s3_url_parse(&u, prefix_url)) < 0)
		return rc;
	if (!u.prefix)
		return ms__error_set(MS_EINVAL,
		                     "%s: names an object, not a prefix (end it with '/' to list "
		                     "what is under it)",
		                     prefix_url);
	if ((rc = ms__s3_client_open(&c, prefix_url, NULL)) < 0)
		return rc;
	rc = ms__s3_list_each(c, NULL, (flags & MS_LIST_RECURSIVE) != 0, fn, payload);
	ms__s3_client_free(c);
	return rc;
}

static int any_object(const ms_object *o, void *payload)
{
	(void)o;
	*(int *)payload = 1;
	return 1; /* one is enough */
}

int ms_exists(const char *location, int *exists, uint64_t *size)
{
	ms__s3_client *c = NULL;
	struct stat st;
	uint64_t n = 0;
	int rc, found = 0;

	if (location == NULL || exists == NULL)
		return ms__error_set(MS_EINVAL, "ms_exists: location or exists is NULL");
	*exists = 0;
	if (!ms__source_s3_handles(location)) {
		if (stat(location, &st) == 0) {
			*exists = 1;
			if (size != NULL)
				*size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
			return 0;
		}
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		return ms__error_errno(errno, "%s", location);
	}
	if ((rc = ms__s3_client_open(&c, location, NULL)) < 0)
		return rc;
	if (ms__s3_client_location(c)->prefix) {
		rc = ms__s3_list_each(c, NULL, true, any_object, &found);
		if (rc == 1)
			rc = 0;
		*exists = found;
		if (rc == 0 && size != NULL)
			*size = 0;
	} else {
		rc = ms__source_s3_stat(c, NULL, NULL, &n, NULL, 0);
		if (rc == MS_ENOTFOUND) {
			rc = 0;
		} else if (rc == 0) {
			*exists = 1;
			if (size != NULL)
				*size = n;
		}
	}
	ms__s3_client_free(c);
	return rc;
}

int ms_explain(const char *location, char *out, size_t size)
{
	ms__s3_client_options opts = {.no_credentials = true};
	ms__s3_client *c = NULL, *full = NULL;
	const ms__s3_location *l;
	char creds[512];
	size_t n;
	int rc;

	if (location == NULL || out == NULL || size == 0)
		return ms__error_set(MS_EINVAL, "ms_explain: location or out is NULL");
	out[0] = '\0';
	if (!ms__source_s3_handles(location)) {
		snprintf(out, size,
		         "local: %s is read from the file system (pread, O_DIRECT for "
		         "large uncached files)\n",
		         location);
		return 0;
	}
	if ((rc = ms__s3_client_open(&c, location, &opts)) < 0)
		return rc;
	l = ms__s3_client_location(c);
	n = (size_t)snprintf(out, size,
	                     "url: %s\n"
	                     "bucket: %s\n"
	                     "key: %s%s\n"
	                     "endpoint: %s (%s)\n"
	                     "region: %s (%s)\n"
	                     "addressing: %s (%s)\n"
	                     "tls: %s (%s)\n"
	                     "ca bundle: %s (%s)\n",
	                     location, l->bucket, l->key, l->prefix ? " (a prefix)" : "",
	                     l->endpoint, l->endpoint_why, l->region, l->region_why,
	                     ms__s3_addressing_name(l->addressing), l->addressing_why,
	                     l->tls ? "on, certificates verified" : "off (plain http)", l->tls_why,
	                     l->ca_bundle[0] ? l->ca_bundle : "the system's", l->ca_bundle_why);
	if (l->anonymous) {
		ms__s3_client_describe_credentials(c, creds, sizeof(creds));
		rc = 0;
	} else if ((rc = ms__s3_client_open(&full, location, NULL)) == 0) {
		ms__s3_client_describe_credentials(full, creds, sizeof(creds));
	} else {
		snprintf(creds, sizeof(creds), "error: %s", ms_error_last()->message);
	}
	if (n < size)
		snprintf(out + n, size - n, "credentials: %s\n", creds);
	ms__s3_client_free(full);
	ms__s3_client_free(c);
	return rc;
}

void ms_push_options_init(ms_push_options *opts)
{
	if (opts != NULL)
		*opts = (ms_push_options)MS_PUSH_OPTIONS_INIT;
}

/* The files of a directory, collected by nftw (which takes no payload). */
static __thread struct {
	char **paths;
	size_t count, capacity;
	int rc;
} walk;

static int on_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_DNR || type == FTW_NS) {
		walk.rc = ms__error_set(MS_EACCES, "%s: cannot be read", path);
		return 1;
	}
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0; /* directories, links to elsewhere, devices */
	if (ms__grow((void **)&walk.paths, &walk.capacity, walk.count + 1, sizeof(*walk.paths)) <
	    0) {
		walk.rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
		return 1;
	}
	if ((walk.paths[walk.count] = ms__strdup(path)) == NULL) {
		walk.rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
		return 1;
	}
	walk.count++;
	return 0;
}

static int compare_paths(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Uploads one file to prefix + name (or to the client's key when `name` is NULL). */
static int push_one(ms__s3_client *c, const char *path, const char *name,
                    const ms_push_options *opts)
{
	const ms__s3_location *loc = ms__s3_client_location(c);
	char key[MS__S3_KEY_MAX + 1], url[MS__S3_URL_MAX];

	if (name == NULL)
		snprintf(key, sizeof(key), "%s", loc->key);
	else if ((size_t)snprintf(key, sizeof(key), "%s%s", loc->key, name) >= sizeof(key))
		return ms__error_set(MS_EINVAL, "%s: its key would be longer than %d bytes", path,
		                     MS__S3_KEY_MAX);
	snprintf(url, sizeof(url), "%s://%s/%s", loc->store == MS__S3_STORE_GCS ? "gs" : "s3",
	         loc->bucket, key);
	return ms__s3_push_file(c, path, key, url, opts);
}

int ms_push(const char *local, const char *url, const ms_push_options *opts)
{
	static const ms_push_options defaults = MS_PUSH_OPTIONS_INIT;
	ms__s3_client *c = NULL;
	struct stat st;
	int rc;

	if (local == NULL || url == NULL)
		return ms__error_set(MS_EINVAL, "ms_push: local or url is NULL");
	if (opts == NULL)
		opts = &defaults;
	if (opts->version != MS_PUSH_OPTIONS_VERSION)
		return ms__error_set(MS_EINVAL,
		                     "ms_push: options of version %d (this library is %d)",
		                     opts->version, MS_PUSH_OPTIONS_VERSION);
	if (!ms__source_s3_handles(url))
		return ms__error_set(MS_EUNSUPPORTED, "%s: push uploads to s3:// or gs:// URLs",
		                     url);
	if (stat(local, &st) != 0)
		return ms__error_errno(errno, "%s", local);
	if ((rc = ms__s3_client_open(&c, url, NULL)) < 0)
		return rc;
	if (S_ISREG(st.st_mode)) {
		const char *base = strrchr(local, '/');

		base = base != NULL ? base + 1 : local;
		rc = push_one(c, local, ms__s3_client_location(c)->prefix ? base : NULL, opts);
	} else if (!S_ISDIR(st.st_mode)) {
		rc = ms__error_set(MS_EINVAL, "%s: neither a file nor a directory", local);
	} else if (!ms__s3_client_location(c)->prefix) {
		rc = ms__error_set(MS_EINVAL,
		                   "%s: a directory goes to a prefix; end the URL with '/' (%s/)",
		                   local, url);
	} else {
		size_t root = strlen(local);

		while (root > 1 && local[root - 1] == '/')
			root--;
		walk.paths = NULL;
		walk.count = walk.capacity = 0;
		walk.rc = 0;
		if (nftw(local, on_entry, 32, FTW_PHYS) < 0 && walk.rc == 0)
			walk.rc = ms__error_errno(errno, "%s", local);
		rc = walk.rc;
		if (walk.count > 0)
			qsort(walk.paths, walk.count, sizeof(*walk.paths), compare_paths);
		for (size_t i = 0; i < walk.count; i++) {
			if (rc == 0)
				rc = push_one(c, walk.paths[i], walk.paths[i] + root + 1, opts);
			ms__free(walk.paths[i]);
		}
		ms__free(walk.paths);
		if (rc == 0 && walk.count == 0)
			rc = ms__error_set(MS_ENOTFOUND, "%s: no files to upload", local);
	}
	ms__s3_client_free(c);
	return rc;
}
