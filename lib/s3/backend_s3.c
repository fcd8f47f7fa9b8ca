/*
 * backend_s3.c - S3-compatible object storage (s3://, gs://) as a back end of the location
 * layer: objects open as sources (source_s3.c), prefixes list through ListObjectsV2
 * (s3_list.c), local files upload as objects (s3_push.c). A listing's client is shared by
 * the sources of its entries, so a model of many files costs one credential chain and one
 * pool of connections.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "location.h"
#include "s3_client.h"
#include "s3_list.h"
#include "s3_push.h"
#include "s3_url.h"
#include "source_s3.h"

static bool s3_is_dir(const char *location)
{
	ms__s3_url u;

	return ms__s3_url_parse(&u, location) == 0 && u.prefix;
}

static int s3_open(ms__source **out, const char *location, const ms__open_options *o)
{
	return ms__source_s3_open(out, location, o->cancel);
}

static int s3_list(void **context, const char *location, bool recursive, const ms__open_options *o,
                   ms_list_fn fn, void *payload)
{
	ms__s3_client_options copts = {.cancel = o->cancel};
	ms__s3_client *c = NULL;
	const ms__s3_location *loc;
	int rc;

	*context = NULL;
	if ((rc = ms__s3_client_open(&c, location, &copts)) < 0)
		return rc;
	*context = c;
	loc = ms__s3_client_location(c);
	if (loc->prefix) {
		rc = ms__s3_list_each(c, NULL, recursive, fn, payload);
	} else {
		char etag[MS__S3_CLIENT_ETAG_SIZE];
		const char *base = strrchr(loc->key, '/');
		ms_object obj = {.location = location, .etag = etag};

		obj.name = base != NULL ? base + 1 : loc->key;
		if ((rc = ms__source_s3_stat(c, NULL, NULL, &obj.size, etag, sizeof(etag))) == 0)
			rc = fn(&obj, payload);
	}
	return rc;
}

static int s3_open_listed(ms__source **out, void *context, const ms_object *obj,
                          const ms__open_options *o)
{
	ms__s3_url u;
	int rc;

	(void)o; /* the client was opened with the listing's options */
	if ((rc = ms__s3_url_parse(&u, obj->location)) < 0)
		return rc;
	return ms__source_s3_open_listed(out, context, obj->location, u.key, obj->size, obj->etag);
}

static int any_object(const ms_object *o, void *payload)
{
	(void)o;
	*(int *)payload = 1;
	return 1; /* one is enough */
}

static int s3_exists(const char *location, int *exists, uint64_t *size)
{
	ms__s3_client *c = NULL;
	uint64_t n = 0;
	int rc, found = 0;

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

static int s3_put(void **context, const char *path, const char *location, const ms_push_options *o)
{
	ms__s3_client *c = *context;
	ms__s3_url u;
	int rc;

	if ((rc = ms__s3_url_parse(&u, location)) < 0)
		return rc;
	if (u.prefix)
		return ms__error_set(MS_EINVAL, "%s: names a prefix, not an object", location);
	/* One client for every file of a push, while they stay in its bucket. */
	if (c != NULL && strcmp(ms__s3_client_location(c)->bucket, u.bucket) != 0) {
		ms__s3_client_free(c);
		*context = c = NULL;
	}
	if (c == NULL) {
		ms__s3_client_options copts = {.cancel = o->version >= 2 ? o->cancel : NULL};

		if ((rc = ms__s3_client_open(&c, location, &copts)) < 0)
			return rc;
		*context = c;
	}
	return ms__s3_push_file(c, path, u.key, location, o);
}

static void s3_context_free(void *context)
{
	ms__s3_client_free(context);
}

/* Explains the URL's endpoint, region, addressing, TLS and credential source. */
static int s3_explain(char *out, size_t size, const char *location)
{
	ms__s3_client_options opts = {.no_credentials = true};
	ms__s3_client *c = NULL, *full = NULL;
	const ms__s3_location *l;
	char creds[512];
	size_t n;
	int rc;

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

static void s3_counters(void *context, ms__backend_counters *out)
{
	out->retries = ms__s3_client_retries(context);
	out->throttles = ms__s3_client_throttles(context);
	ms__s3_client_retry_reasons(context, out->retries_by_reason);
}

const ms__backend ms__backend_s3 = {
    .name = "object storage",
    .remote = true,
    .counters = s3_counters,
    .open = s3_open,
    .is_dir = s3_is_dir,
    .list = s3_list,
    .open_listed = s3_open_listed,
    .exists = s3_exists,
    .put = s3_put,
    .context_free = s3_context_free,
    .explain = s3_explain,
};
