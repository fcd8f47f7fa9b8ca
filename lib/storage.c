/*
 * storage.c - the public storage calls: ms_storage_list, _exists, _get, _push and _explain.
 *
 * Each hands its location to the back end the location layer chooses (location.h): local
 * paths, object storage, or a registered scheme, with no back end named here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "cancel.h"
#include "error.h"
#include "location.h"

/** The longest URL a push composes. */
#define MS__LOCATION_MAX 4096

int ms_storage_list(const char *prefix_url, int flags, const ms_cancel *cancel, ms_list_fn fn,
                    void *payload)
{
	ms__open_options o = {.cancel = cancel};
	const ms__backend *b;
	void *context = NULL;
	int rc;

	if (prefix_url == NULL || fn == NULL)
		return ms__error_set(MS_EINVAL, "ms_storage_list: url or callback is NULL");
	b = ms__backend_of(prefix_url);
	if (!b->is_dir(prefix_url)) {
		if (b == &ms__backend_file && access(prefix_url, F_OK) != 0)
			return ms__error_errno(errno, "%s", prefix_url);
		return ms__error_set(MS_EINVAL,
		                     "%s: names an object, not a prefix (end it with '/' to list "
		                     "what is under it)",
		                     prefix_url);
	}
	rc = b->list(&context, prefix_url, (flags & MS_LIST_RECURSIVE) != 0, &o, fn, payload);
	if (context != NULL && b->context_free != NULL)
		b->context_free(context);
	return rc;
}

int ms_storage_exists(int *exists, uint64_t *size, const char *location)
{
	const ms__backend *b;

	if (location == NULL || exists == NULL)
		return ms__error_set(MS_EINVAL,
		                     "ms_storage_exists: location or out_exists is NULL");
	*exists = 0;
	b = ms__backend_of(location);
	return b->exists(location, exists, size);
}

int ms_storage_explain(char *out, size_t size, const char *location)
{
	const ms__backend *b;

	if (location == NULL || out == NULL || size == 0)
		return ms__error_set(MS_EINVAL, "ms_storage_explain: location or out is NULL");
	out[0] = '\0';
	b = ms__backend_of(location);
	if (b->explain != NULL)
		return b->explain(out, size, location);
	snprintf(out, size, "%s: %s %s\n", b->name, location, b->summary);
	return 0;
}

void ms_push_options_init(ms_push_options *opts)
{
	if (opts != NULL)
		*opts = (ms_push_options)MS_PUSH_OPTIONS_INIT;
}

int ms_storage_push(const char *local, const char *url, const ms_push_options *opts)
{
	ms_push_options o = MS_PUSH_OPTIONS_INIT;
	const ms__backend *dst;
	ms__listing files;
	void *context = NULL;
	bool to_prefix;
	const char *join;
	struct stat st;
	int rc;

	if (local == NULL || url == NULL)
		return ms__error_set(MS_EINVAL, "ms_storage_push: local or url is NULL");
	if (opts != NULL && (opts->version < 1 || opts->version > MS_PUSH_OPTIONS_VERSION))
		return ms__error_set(MS_EINVAL,
		                     "ms_storage_push: options of version %d (this library knows 1 "
		                     "to %d)",
		                     opts->version, MS_PUSH_OPTIONS_VERSION);
	/* A caller built against an older header passes a shorter struct. */
	if (opts != NULL)
		memcpy(&o, opts,
		       opts->version == 1 ? offsetof(ms_push_options, cancel) : sizeof(o));
	o.version = MS_PUSH_OPTIONS_VERSION;
	dst = ms__backend_of(url);
	to_prefix = dst->is_dir(url);
	join = to_prefix && url[strlen(url) - 1] != '/' ? "/" : "";
	if (dst->put == NULL)
		return ms__error_set(MS_EUNSUPPORTED,
		                     "%s: push uploads to object storage (s3://, gs://) or to a "
		                     "registered scheme whose back end can store",
		                     url);
	if (stat(local, &st) != 0)
		return ms__error_errno(errno, "%s", local);
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return ms__error_set(MS_EINVAL, "%s: neither a file nor a directory", local);
	if (S_ISDIR(st.st_mode) && !to_prefix)
		return ms__error_set(MS_EINVAL,
		                     "%s: a directory goes to a prefix; end the URL with '/' (%s/)",
		                     local, url);
	/* The files, by the one lister: a file is a listing of itself, named by its base. */
	if ((rc = ms__listing_collect(&files, local, true, NULL, NULL)) < 0)
		return rc;
	if (files.count == 0)
		rc = ms__error_set(MS_ENOTFOUND, "%s: no files to upload", local);
	for (size_t i = 0; rc == 0 && i < files.count; i++) {
		const ms__entry *e = &files.entries[i];
		char target[MS__LOCATION_MAX];

		if (ms__cancel_fired(o.cancel)) {
			rc = ms__error_set(MS_ECANCELED, "%s: canceled", url);
			break;
		}
		if ((size_t)snprintf(target, sizeof(target), "%s%s%s", url, join,
		                     to_prefix ? e->name : "") >= sizeof(target)) {
			rc = ms__error_set(MS_EINVAL,
			                   "%s: the URL for it would be longer than %d bytes",
			                   e->location, MS__LOCATION_MAX - 1);
			break;
		}
		rc = dst->put(&context, e->location, target, &o);
	}
	if (context != NULL && dst->context_free != NULL)
		dst->context_free(context);
	ms__listing_free(&files);
	return rc;
}

/* Reads all of `src` into the open file `fd`, in reads of CHUNK bytes. */
static int copy_source(ms__source *src, int fd, const char *tmp, const ms_cancel *cancel)
{
	enum { CHUNK = 8u << 20 };
	unsigned char *buf = ms__malloc(CHUNK);
	int rc = 0;

	if (buf == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", src->location);
	for (uint64_t off = 0; off < src->size && rc == 0; off += CHUNK) {
		size_t n = src->size - off < CHUNK ? (size_t)(src->size - off) : CHUNK;
		size_t done = 0;

		if (ms__cancel_fired(cancel)) {
			rc = ms__error_set(MS_ECANCELED, "%s: canceled", src->location);
			break;
		}
		if ((rc = ms__source_read(src, buf, off, n)) < 0)
			break;
		while (done < n && rc == 0) {
			ssize_t w = write(fd, buf + done, n - done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				rc = ms__error_errno(errno, "%s", tmp);
			else
				done += (size_t)w;
		}
	}
	ms__free(buf);
	return rc;
}

int ms_storage_get(const char *location, const char *local, const ms_cancel *cancel)
{
	ms__open_options o = {.cancel = cancel};
	ms__source *src = NULL;
	char tmp[MS__LOCATION_MAX + 32];
	int fd, rc;

	if (location == NULL || local == NULL)
		return ms__error_set(MS_EINVAL, "ms_storage_get: location or local path is NULL");
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.partial.%d", local, (int)getpid()) >=
	    sizeof(tmp))
		return ms__error_set(MS_EINVAL, "%s: the path is too long", local);
	if ((rc = ms__source_open(&src, location, &o)) < 0)
		return rc;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = ms__error_errno(errno, "%s", tmp);
		ms__source_close(src);
		return rc;
	}
	rc = copy_source(src, fd, tmp, cancel);
	ms__source_close(src);
	if (rc == 0 && fsync(fd) != 0)
		rc = ms__error_errno(errno, "%s", tmp);
	if (close(fd) != 0 && rc == 0)
		rc = ms__error_errno(errno, "%s", tmp);
	/* Whole or not at all: the file appears under its name only once complete. */
	if (rc == 0 && rename(tmp, local) != 0)
		rc = ms__error_errno(errno, "%s", local);
	if (rc < 0)
		unlink(tmp);
	return rc;
}
