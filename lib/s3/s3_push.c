/*
 * s3_push.c - parallel multipart uploads.
 *
 * CreateMultipartUpload gives an upload id; `concurrency` threads then take part numbers
 * from a shared counter, read their part with pread into their own buffer and PUT it, each
 * part signed with its SHA-256 so the store checks every byte it keeps; CompleteMultipartUpload
 * lists the parts' ETags. The first failure stops the other threads, and the upload is
 * aborted so no parts are left behind to be billed. A HEAD at the end checks the size.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "s3_list.h"
#include "s3_push.h"
#include "s3_xml.h"
#include "source_s3.h"

#define DEFAULT_PART_SIZE   (16ull << 20)
#define DEFAULT_CONCURRENCY 8
#define CONCURRENCY_MAX     64

typedef struct {
	ms__s3_client *c;
	const ms_push_options *opts;
	int fd;
	const char *path;
	const char *key;
	const char *url;
	uint64_t size;
	uint64_t part_size;
	unsigned parts;
	char upload_query[3 * MS__S3_UPLOAD_ID_MAX + 16]; /* "uploadId=..." */
	char (*etags)[MS__S3_ETAG_MAX + 1];
	atomic_uint next;
	atomic_bool failed;
	atomic_ullong done;
	pthread_mutex_t lock; /* guards error */
	ms_error error;
	char error_text[MS__ERROR_MAX];
} upload;

/* Reads [offset, offset + length) of the file fully. */
static int read_part(const upload *u, char *buf, uint64_t offset, size_t length)
{
	size_t got = 0;

	while (got < length) {
		ssize_t n = pread(u->fd, buf + got, length - got, (off_t)(offset + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ms__error_errno(errno, "%s: reading %zu bytes at offset %llu",
			                       u->path, length, (unsigned long long)offset);
		if (n == 0)
			return ms__error_set(
			    MS_EIO, "%s: the file shrank while it was being uploaded", u->path);
		got += (size_t)n;
	}
	return 0;
}

static void fail(upload *u)
{
	pthread_mutex_lock(&u->lock);
	if (!atomic_load(&u->failed))
		ms__error_save(&u->error, u->error_text, sizeof(u->error_text));
	atomic_store(&u->failed, true);
	pthread_mutex_unlock(&u->lock);
}

static void *part_worker(void *payload)
{
	upload *u = payload;
	char *buf = ms__malloc(u->part_size);
	char query[sizeof(u->upload_query) + 32];

	if (buf == NULL) {
		ms__error_set(MS_ENOMEM, "%s: cannot allocate a part of %llu bytes", u->path,
		              (unsigned long long)u->part_size);
		fail(u);
		return NULL;
	}
	while (!atomic_load(&u->failed)) {
		unsigned i = atomic_fetch_add(&u->next, 1);
		uint64_t offset = (uint64_t)i * u->part_size;
		size_t length;
		ms__s3_request req = {.method = "PUT", .key = u->key, .what = u->url};
		ms__s3_response resp;
		int rc;

		if (i >= u->parts)
			break;
		length =
		    (size_t)(u->size - offset < u->part_size ? u->size - offset : u->part_size);
		if (read_part(u, buf, offset, length) < 0) {
			fail(u);
			break;
		}
		snprintf(query, sizeof(query), "partNumber=%u&%s", i + 1, u->upload_query);
		req.query = query;
		req.body = buf;
		req.body_len = length;
		rc = ms__s3_send(u->c, &req, &resp);
		if (rc == 0 && resp.etag[0] == '\0')
			rc = ms__error_set(MS_EFORMAT, "%s: part %u was stored without an ETag",
			                   u->url, i + 1);
		if (rc == 0)
			snprintf(u->etags[i], sizeof(u->etags[i]), "%s", resp.etag);
		ms__s3_response_free(&resp);
		if (rc < 0) {
			fail(u);
			break;
		}
		uint64_t done = atomic_fetch_add(&u->done, length) + length;

		/* The last call, done == total, comes once the upload is complete and checked. */
		if (u->opts->progress != NULL && done < u->size)
			u->opts->progress(u->url, done, u->size, u->opts->progress_payload);
	}
	ms__free(buf);
	return NULL;
}

/* The CompleteMultipartUpload document, written into a buffer sized for the worst case. */
typedef struct {
	char *text;
	size_t len, cap;
} doc;

static void put(doc *d, const char *s)
{
	size_t n = strlen(s);

	if (d->len + n < d->cap) {
		memcpy(d->text + d->len, s, n + 1);
		d->len += n;
	}
}

/* Appends `text`, escaping what XML needs escaped. */
static void put_escaped(doc *d, const char *text)
{
	for (; *text != '\0'; text++) {
		char one[2] = {*text, '\0'};

		put(d, *text == '&'   ? "&amp;"
		       : *text == '<' ? "&lt;"
		       : *text == '>' ? "&gt;"
		       : *text == '"' ? "&quot;"
		                      : one);
	}
}

static int complete(upload *u)
{
	doc d = {NULL, 0, 64 + (size_t)u->parts * (64 + 6 * MS__S3_ETAG_MAX)};
	ms__s3_request req = {.method = "POST", .key = u->key, .what = u->url};
	ms__s3_response resp;
	ms__s3_complete done;
	char number[48];
	int rc;

	if ((d.text = ms__malloc(d.cap)) == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", u->url);
	d.text[0] = '\0';
	put(&d, "<CompleteMultipartUpload>");
	for (unsigned i = 0; i < u->parts; i++) {
		snprintf(number, sizeof(number), "<Part><PartNumber>%u</PartNumber><ETag>", i + 1);
		put(&d, number);
		put_escaped(&d, u->etags[i]);
		put(&d, "</ETag></Part>");
	}
	put(&d, "</CompleteMultipartUpload>");
	req.query = u->upload_query;
	req.body = d.text;
	req.body_len = d.len;
	rc = ms__s3_send(u->c, &req, &resp);
	if (rc == 0) {
		rc = ms__s3_complete_parse(&done, resp.body != NULL ? resp.body : "", resp.body_len,
		                           u->url);
		/* S3 may fail after its 200: the error is in the body. */
		if (rc < 0 && done.service_error)
			rc = ms__s3_error_raise(&done.error, 200, u->url);
	}
	ms__s3_response_free(&resp);
	ms__free(d.text);
	return rc;
}

static void abort_upload(upload *u)
{
	/* Sent even when the upload was canceled: no parts may be left behind. */
	ms__s3_request req = {
	    .method = "DELETE", .key = u->key, .what = u->url, .despite_cancel = true};
	ms__s3_response resp;
	ms_error saved;
	char text[MS__ERROR_MAX];

	ms__error_save(&saved, text, sizeof(text)); /* the abort must not hide the cause */
	req.query = u->upload_query;
	ms__s3_send(u->c, &req, &resp);
	ms__s3_response_free(&resp);
	ms__error_set(saved.code, "%s", text);
}

static int multipart(upload *u)
{
	ms__s3_request req = {.method = "POST", .key = u->key, .what = u->url, .query = "uploads"};
	ms__s3_response resp;
	ms__s3_initiate init;
	pthread_t threads[CONCURRENCY_MAX];
	unsigned n =
	    u->opts->concurrency > 0 ? (unsigned)u->opts->concurrency : DEFAULT_CONCURRENCY;
	unsigned started = 0;
	int rc;

	if (n > CONCURRENCY_MAX)
		n = CONCURRENCY_MAX;
	if (n > u->parts)
		n = u->parts;
	rc = ms__s3_send(u->c, &req, &resp);
	if (rc == 0)
		rc = ms__s3_initiate_parse(&init, resp.body != NULL ? resp.body : "", resp.body_len,
		                           u->url);
	ms__s3_response_free(&resp);
	if (rc < 0)
		return rc;
	memcpy(u->upload_query, "uploadId=", 9);
	if ((rc = ms__s3_query_encode(u->upload_query + 9, sizeof(u->upload_query) - 9,
	                              init.upload_id)) < 0)
		return rc;
	u->etags = ms__calloc(u->parts, sizeof(*u->etags));
	if (u->etags == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", u->url);
		abort_upload(u);
		return rc;
	}
	for (; started < n; started++)
		if (pthread_create(&threads[started], NULL, part_worker, u) != 0)
			break;
	if (started == 0) {
		ms__error_set(MS_ERROR, "%s: cannot start an upload thread", u->url);
		fail(u);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (atomic_load(&u->failed))
		rc = ms__error_set(u->error.code, "%s", u->error_text);
	else
		rc = complete(u);
	if (rc < 0)
		abort_upload(u);
	ms__free(u->etags);
	return rc;
}

static int single_put(upload *u)
{
	char *buf = ms__malloc(u->size > 0 ? u->size : 1);
	ms__s3_request req = {.method = "PUT", .key = u->key, .what = u->url};
	ms__s3_response resp;
	int rc;

	if (buf == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", u->path);
	rc = read_part(u, buf, 0, u->size);
	if (rc == 0) {
		req.body = buf;
		req.body_len = u->size;
		rc = ms__s3_send(u->c, &req, &resp);
		ms__s3_response_free(&resp);
	}
	ms__free(buf);
	return rc;
}

int ms__s3_push_file(ms__s3_client *c, const char *path, const char *key, const char *url,
                     const ms_push_options *opts)
{
	upload u = {.c = c, .opts = opts, .path = path, .key = key, .url = url};
	struct stat st;
	uint64_t stored = 0;
	int rc;

	u.part_size = opts->part_size > 0 ? opts->part_size : DEFAULT_PART_SIZE;
	if (u.part_size < MS__S3_PART_MIN || u.part_size > MS__S3_PART_MAX)
		return ms__error_set(MS_EINVAL,
		                     "%s: a part size of %llu bytes (S3 takes 5 MiB to 5 GiB)", url,
		                     (unsigned long long)u.part_size);
	u.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (u.fd < 0)
		return ms__error_errno(errno, "%s", path);
	if (fstat(u.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = ms__error_set(MS_EINVAL, "%s: not a regular file", path);
		goto done;
	}
	u.size = (uint64_t)st.st_size;
	if (u.size > MS__S3_OBJECT_MAX) {
		rc = ms__error_set(MS_EINVAL, "%s: %llu bytes; an S3 object holds at most 5 TiB",
		                   path, (unsigned long long)u.size);
		goto done;
	}
	/* Grow the parts (in MiB) until they fit in 10000. */
	while ((u.size + u.part_size - 1) / u.part_size > MS__S3_PARTS_MAX)
		u.part_size += 1u << 20;
	u.parts = (unsigned)((u.size + u.part_size - 1) / u.part_size);
	pthread_mutex_init(&u.lock, NULL);
	rc = u.parts <= 1 ? single_put(&u) : multipart(&u);
	pthread_mutex_destroy(&u.lock);
	if (rc == 0 && (rc = ms__source_s3_stat(c, key, url, &stored, NULL, 0)) == 0 &&
	    stored != u.size)
		rc = ms__error_set(MS_EIO, "%s: stored %llu bytes of the %llu of %s", url,
		                   (unsigned long long)stored, (unsigned long long)u.size, path);
	if (rc == 0 && opts->progress != NULL)
		opts->progress(url, u.size, u.size, opts->progress_payload);
done:
	close(u.fd);
	return rc;
}
