/*
 * s3_list.c - ListObjectsV2 over every page, for `ls`, exists and model directories.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "s3_list.h"
#include "s3_xml.h"

int ms__s3_query_encode(char *out, size_t size, const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		             (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
		             *p == '~';

		if (n + (plain ? 1 : 3) >= size)
			return ms__error_set(MS_EINVAL, "a query value of %zu bytes is too long",
			                     strlen(in));
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	if (size == 0)
		return ms__error_set(MS_EINVAL, "no room for a query value");
	out[n] = '\0';
	return 0;
}

/* Reports one entry: builds its full URL and name relative to the prefix. */
static int report(const ms__s3_client *c, const char *prefix, const char *key, uint64_t size,
                  const char *etag, const char *modified, bool is_prefix, ms_list_fn fn,
                  void *payload)
{
	const ms__s3_location *loc = ms__s3_client_location(c);
	const char *scheme = loc->store == MS__S3_STORE_GCS ? "gs" : "s3";
	size_t need = strlen(scheme) + 3 + strlen(loc->bucket) + 1 + strlen(key) + 1;
	char *location = ms__malloc(need);
	ms_object o;
	int rc;

	if (location == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", ms__s3_client_url(c));
	snprintf(location, need, "%s://%s/%s", scheme, loc->bucket, key);
	o = (ms_object){
	    .location = location,
	    .name = key + strlen(prefix),
	    .size = size,
	    .etag = etag,
	    .last_modified = modified,
	    .is_prefix = is_prefix,
	};
	rc = fn(&o, payload);
	ms__free(location);
	return rc;
}

/* Merges one page's objects and common prefixes in key order, as S3 orders them. */
static int report_page(const ms__s3_client *c, const char *prefix, const ms__s3_list *page,
                       ms_list_fn fn, void *payload)
{
	size_t i = 0, j = 0;
	int rc = 0;

	while (rc == 0 && (i < page->object_count || j < page->common_prefix_count)) {
		bool take_object = j == page->common_prefix_count ||
		                   (i < page->object_count &&
		                    strcmp(page->objects[i].key, page->common_prefixes[j]) < 0);

		if (take_object) {
			const ms__s3_object *o = &page->objects[i++];

			/* A "directory marker" object equal to the prefix itself is not a file. */
			if (strcmp(o->key, prefix) == 0)
				continue;
			rc = report(c, prefix, o->key, o->size, o->etag, o->last_modified, false,
			            fn, payload);
		} else {
			rc = report(c, prefix, page->common_prefixes[j++], 0, NULL, NULL, true, fn,
			            payload);
		}
	}
	return rc;
}

int ms__s3_list_each(ms__s3_client *c, const char *prefix, bool recursive, ms_list_fn fn,
                     void *payload)
{
	const char *url = ms__s3_client_url(c);
	char *query = ms__malloc(MS__SIGV4_QUERY_MAX + 1);
	char *token = ms__calloc(1, MS__SIGV4_QUERY_MAX / 2);
	char encoded[3 * 1024 + 1];
	int rc = 0;

	if (prefix == NULL)
		prefix = ms__s3_client_location(c)->key;
	if (query == NULL || token == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", url);
		goto done;
	}
	if ((rc = ms__s3_query_encode(encoded, sizeof(encoded), prefix)) < 0)
		goto done;
	for (unsigned pages = 0;; pages++) {
		ms__s3_request req = {.method = "GET", .key = "", .query = query};
		ms__s3_response resp;
		ms__s3_list page;
		bool more;
		size_t n;

		if (pages == MS__S3_LIST_PAGES_MAX) {
			rc = ms__error_set(MS_ELIMIT, "%s: more than %d pages of keys", url,
			                   MS__S3_LIST_PAGES_MAX);
			break;
		}
		n = (size_t)snprintf(query, MS__SIGV4_QUERY_MAX + 1, "list-type=2&prefix=%s%s",
		                     encoded, recursive ? "" : "&delimiter=%2F");
		if (token[0] != '\0') {
			char enc[MS__SIGV4_QUERY_MAX];

			if ((rc = ms__s3_query_encode(enc, MS__SIGV4_QUERY_MAX - n - 24, token)) <
			    0)
				break;
			memcpy(query + n, "&continuation-token=", 20);
			memcpy(query + n + 20, enc, strlen(enc) + 1);
		}
		rc = ms__s3_send(c, &req, &resp);
		if (rc < 0) {
			ms__s3_response_free(&resp);
			break;
		}
		rc = ms__s3_list_parse(&page, resp.body != NULL ? resp.body : "", resp.body_len,
		                       url);
		ms__s3_response_free(&resp);
		if (rc < 0)
			break;
		rc = report_page(c, prefix, &page, fn, payload);
		if (rc == 0 && page.is_truncated) {
			if (strcmp(token, page.next_continuation_token) == 0 ||
			    strlen(page.next_continuation_token) >= MS__SIGV4_QUERY_MAX / 2)
				rc = ms__error_set(
				    MS_EFORMAT,
				    "%s: the listing's continuation token repeats or is "
				    "too long",
				    url);
			else
				snprintf(token, MS__SIGV4_QUERY_MAX / 2, "%s",
				         page.next_continuation_token);
		}
		more = page.is_truncated;
		ms__s3_list_free(&page);
		if (rc != 0 || !more)
			break;
	}
done:
	ms__free(query);
	ms__free(token);
	return rc;
}
