/*
 * source_s3.c - objects in S3-compatible storage as a source, over libcurl.
 *
 * Design. The engine already runs `concurrency` worker threads, each issuing one read at
 * a time; this source turns each read into one signed, ranged GET on a curl easy handle
 * taken from a small pool (connections stay open between reads). So exactly K transfers
 * are in flight, and the ring's back-pressure applies to the network as it does to disks,
 * with no second event loop to keep in step with the engine.
 *
 *  - open: read the AWS shared files (s3_config.c), resolve the endpoint, region and
 *    addressing (s3_url.c), take credentials from the environment or the profile's static
 *    keys, and HEAD the object for its size and ETag.
 *  - read: GET with Range and If-Match on the ETag, so an object replaced mid-read fails
 *    clearly (412) instead of mixing versions. Bytes land straight in the arena, and the
 *    write callback refuses anything past the requested range.
 *  - clock skew: a RequestTimeTooSkewed 403 (or a HEAD 403 from a server whose Date is
 *    minutes away) teaches the source the server's clock, and the request is signed
 *    again once with it.
 *  - retries: connection failures, truncated bodies, 500/502/503/504 and SlowDown are
 *    retried with exponential backoff and full jitter, re-requesting only the bytes still
 *    missing; a transfer slower than 1 KiB/s for the stall timeout is cut and retried.
 *
 * The credential chain beyond environment variables, listing and uploads come with the
 * rest of the object-storage work.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "alloc.h"
#include "error.h"
#include "s3_config.h"
#include "s3_sigv4.h"
#include "s3_url.h"
#include "s3_xml.h"
#include "source.h"
#include "source_s3.h"

#define POOL_MAX              256
#define ERROR_BODY_MAX        (64 * 1024)
#define ATTEMPTS_MAX          6
#define BACKOFF_BASE_MS       50
#define BACKOFF_CAP_MS        5000
#define DEFAULT_STALL_SECONDS 20

typedef struct {
	ms__source base;
	char *url; /* as the user gave it, for messages */
	ms__s3_location loc;
	char path[MS__S3_URL_MAX];        /* the object's wire path */
	char request_url[MS__S3_URL_MAX]; /* scheme, host and path */
	char etag[256];
	char *key_id;
	char *secret;
	char *token;
	long stall_seconds;
	/* Server time minus ours, learnt from RequestTimeTooSkewed; read by every worker as
	 * it signs. Relaxed: a stale value costs one more retry, nothing else. */
	atomic_llong clock_offset;

	pthread_mutex_t pool_lock; /* guards pool and pool_count */
	CURL *pool[POOL_MAX];
	size_t pool_count;
} s3_source;

/* One transfer's state, for the callbacks. */
typedef struct {
	CURL *curl;
	char *dst; /* where a 2xx body goes, at most `capacity` bytes */
	size_t capacity;
	size_t received;
	bool overflow;
	char *error_body; /* a non-2xx body, kept for its XML error */
	size_t error_len;
	char etag[256];
	uint64_t content_length;
	bool have_length;
	time_t server_date; /* the Date header, 0 if none */
} transfer;

static void global_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static long response_status(CURL *curl)
{
	long status = 0;

	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

static size_t on_body(char *data, size_t size, size_t count, void *payload)
{
	transfer *t = payload;
	size_t n = size * count;
	long status = response_status(t->curl);

	if (status >= 200 && status < 300) {
		/* A hard bound: a server sending more than it was asked for is refused. */
		if (n > t->capacity - t->received) {
			t->overflow = true;
			return 0;
		}
		memcpy(t->dst + t->received, data, n);
		t->received += n;
		return n;
	}
	if (t->error_len + n > ERROR_BODY_MAX)
		n = ERROR_BODY_MAX - t->error_len;
	if (n > 0) {
		char *grown = ms__realloc(t->error_body, t->error_len + n + 1);

		if (grown == NULL)
			return 0;
		t->error_body = grown;
		memcpy(t->error_body + t->error_len, data, n);
		t->error_len += n;
		t->error_body[t->error_len] = '\0';
	}
	return size * count;
}

static size_t on_header(char *data, size_t size, size_t count, void *payload)
{
	transfer *t = payload;
	size_t n = size * count;

	if (n > 5 && strncasecmp(data, "etag:", 5) == 0) {
		const char *v = data + 5;
		size_t len = n - 5;

		while (len > 0 && (*v == ' ' || *v == '\t'))
			v++, len--;
		while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
			len--;
		if (len < sizeof(t->etag)) {
			memcpy(t->etag, v, len);
			t->etag[len] = '\0';
		}
	} else if (n > 5 && strncasecmp(data, "date:", 5) == 0) {
		char text[64];
		size_t len = n - 5 < sizeof(text) - 1 ? n - 5 : sizeof(text) - 1;

		memcpy(text, data + 5, len);
		text[len] = '\0';
		t->server_date = curl_getdate(text, NULL);
		if (t->server_date < 0)
			t->server_date = 0;
	} else if (n > 15 && strncasecmp(data, "content-length:", 15) == 0) {
		char text[32];
		size_t len = n - 15 < sizeof(text) - 1 ? n - 15 : sizeof(text) - 1;
		char *end = NULL;
		unsigned long long v;

		memcpy(text, data + 15, len);
		text[len] = '\0';
		errno = 0;
		v = strtoull(text, &end, 10);
		if (errno == 0 && end != text) {
			t->content_length = v;
			t->have_length = true;
		}
	}
	return n;
}

static CURL *pool_take(s3_source *s)
{
	CURL *curl = NULL;

	pthread_mutex_lock(&s->pool_lock);
	if (s->pool_count > 0)
		curl = s->pool[--s->pool_count];
	pthread_mutex_unlock(&s->pool_lock);
	return curl != NULL ? curl : curl_easy_init();
}

static void pool_give(s3_source *s, CURL *curl)
{
	pthread_mutex_lock(&s->pool_lock);
	if (s->pool_count < POOL_MAX) {
		s->pool[s->pool_count++] = curl;
		curl = NULL;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (curl != NULL)
		curl_easy_cleanup(curl);
}

/* Maps a failed HTTP response to an error naming the URL; returns the code. */
static int http_error(const s3_source *s, long status, const transfer *t)
{
	ms__s3_error e;

	if (t->error_body != NULL &&
	    ms__s3_error_parse(&e, t->error_body, t->error_len, s->url) == 0)
		return ms__s3_error_raise(&e, (int)status, s->url);
	switch (status) {
	case 404:
		return ms__error_set(MS_ENOTFOUND,
		                     "%s: 404 Not Found (no such bucket or key; without "
		                     "s3:ListBucket permission a missing key also looks like 403)",
		                     s->url);
	case 403:
		return ms__error_set(
		    MS_EACCES,
		    "%s: 403 Forbidden (check the credentials: AWS_ACCESS_KEY_ID, "
		    "AWS_PROFILE; a missing key without s3:ListBucket also gives 403)",
		    s->url);
	case 412:
		return ms__error_set(MS_EIO,
		                     "%s: 412 Precondition Failed: the object changed while it was "
		                     "being read (its ETag is no longer %s)",
		                     s->url, s->etag);
	default:
		return ms__error_set(MS_EIO, "%s: HTTP %ld", s->url, status);
	}
}

static bool retryable_status(long status)
{
	return status == 500 || status == 502 || status == 503 || status == 504 || status == 429;
}

static void backoff(unsigned attempt, unsigned *seed)
{
	unsigned long cap = BACKOFF_BASE_MS << (attempt < 10 ? attempt : 10);
	unsigned long ms;

	if (cap > BACKOFF_CAP_MS)
		cap = BACKOFF_CAP_MS;
	/* Full jitter: many clients backing off at once spread out instead of returning
	 * together. */
	ms = (unsigned long)rand_r(seed) % (cap + 1);
	usleep((useconds_t)(ms * 1000));
}

/*
 * One signed request: HEAD (dst NULL) or a GET of [offset, offset + length) into dst.
 * Returns 0 with *out_status and the transfer filled, or a curl failure as -1 with
 * *out_curl set; never raises (the caller decides what is retried).
 */
static int perform(s3_source *s, transfer *t, const char *method, uint64_t offset, size_t length,
                   long *out_status, CURLcode *out_curl)
{
	ms__aws_credentials creds = {s->key_id, s->secret, s->token};
	ms__http_header extra[2], signed_headers[MS__SIGV4_RESULT_HEADERS];
	ms__sigv4_request req = {0};
	ms__sigv4_result sig;
	struct curl_slist *list = NULL;
	char range[80], if_match[300], line[MS__SIGV4_AUTHORIZATION_SIZE + 64];
	size_t extra_count = 0, n;
	int rc = 0;

	*out_curl = CURLE_OK;
	*out_status = 0;
	if (t->dst != NULL) {
		snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)offset,
		         (unsigned long long)(offset + length - 1));
		extra[extra_count++] = (ms__http_header){"Range", range};
		if (s->etag[0] != '\0') {
			snprintf(if_match, sizeof(if_match), "%s", s->etag);
			extra[extra_count++] = (ms__http_header){"If-Match", if_match};
		}
	}
	for (size_t i = 0; i < extra_count; i++) {
		snprintf(line, sizeof(line), "%s: %s", extra[i].name, extra[i].value);
		list = curl_slist_append(list, line);
	}
	if (!s->loc.anonymous) {
		req.method = method;
		req.host = s->loc.host;
		req.path = s->path;
		req.headers = extra;
		req.header_count = extra_count;
		req.region = s->loc.region;
		req.service = "s3";
		req.time = (int64_t)time(NULL) +
		           atomic_load_explicit(&s->clock_offset, memory_order_relaxed);
		if ((rc = ms__sigv4_sign(&sig, &req, &creds)) < 0)
			goto done;
		n = ms__sigv4_headers(signed_headers, &sig);
		for (size_t i = 0; i < n; i++) {
			snprintf(line, sizeof(line), "%s: %s", signed_headers[i].name,
			         signed_headers[i].value);
			list = curl_slist_append(list, line);
		}
	}
	curl_easy_reset(t->curl);
	curl_easy_setopt(t->curl, CURLOPT_URL, s->request_url);
	curl_easy_setopt(t->curl, CURLOPT_PATH_AS_IS, 1L); /* signed as sent: no rewriting */
	curl_easy_setopt(t->curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(t->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(t->curl, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(t->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(t->curl, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(t->curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(t->curl, CURLOPT_LOW_SPEED_TIME, s->stall_seconds);
	curl_easy_setopt(t->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(t->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->loc.ca_bundle[0] != '\0')
		curl_easy_setopt(t->curl, CURLOPT_CAINFO, s->loc.ca_bundle);
	if (t->dst == NULL)
		curl_easy_setopt(t->curl, CURLOPT_NOBODY, 1L);
	*out_curl = curl_easy_perform(t->curl);
	*out_status = response_status(t->curl);
	if (*out_curl != CURLE_OK)
		rc = -1;
done:
	curl_slist_free_all(list);
	/* The Authorization header was in `line` and `sig`: neither outlives the call. */
	memset(line, 0, sizeof(line));
	return rc;
}

/*
 * After a 403, decides whether it was our clock: S3 says RequestTimeTooSkewed (with its
 * ServerTime), or, for a HEAD that has no body, its Date is minutes away from ours. Then
 * the offset is learnt for every later signature and the request is worth one retry.
 */
static bool correct_clock_skew(s3_source *s, const transfer *t)
{
	ms__s3_error e;
	int64_t server = 0;
	long long offset;

	if (t->error_body != NULL && t->error_len > 0) {
		if (ms__s3_error_parse(&e, t->error_body, t->error_len, s->url) != 0 ||
		    strcmp(e.code, "RequestTimeTooSkewed") != 0)
			return false;
		if (e.server_time[0] != '\0')
			ms__s3_time_parse(&server, e.server_time, strlen(e.server_time));
	}
	if (server == 0)
		server = (int64_t)t->server_date;
	if (server == 0)
		return false;
	offset = (long long)(server - (int64_t)time(NULL));
	if (t->error_body == NULL && (offset < 300 && offset > -300))
		return false; /* a plain 403 from a server whose clock agrees with ours */
	atomic_store_explicit(&s->clock_offset, offset, memory_order_relaxed);
	return true;
}

static int s3_read_range(ms__source *src, void *dst, uint64_t offset, size_t length)
{
	s3_source *s = (s3_source *)src;
	transfer t = {0};
	unsigned seed = (unsigned)(offset ^ (uint64_t)time(NULL) ^ (uintptr_t)&t);
	unsigned attempt = 0;
	bool skew_corrected = false;
	size_t done_bytes = 0;
	int rc = 0;

	if (offset >= src->size)
		return 0;
	if (length > src->size - offset)
		length = (size_t)(src->size - offset);
	t.curl = pool_take(s);
	if (t.curl == NULL)
		return ms__error_set(MS_ENOMEM, "%s: cannot create an HTTP handle", s->url);
	while (done_bytes < length) {
		long status;
		CURLcode cc;

		t.dst = (char *)dst + done_bytes;
		t.capacity = length - done_bytes;
		t.received = 0;
		t.overflow = false;
		t.error_len = 0;
		rc = perform(s, &t, "GET", offset + done_bytes, length - done_bytes, &status, &cc);
		done_bytes += t.received; /* keep what arrived; ask only for the rest */
		if (rc == 0 && status == 206 && done_bytes == length)
			break;
		if (t.overflow) {
			rc = ms__error_set(MS_EIO,
			                   "%s: the server sent more than the %zu bytes asked "
			                   "for at offset %llu",
			                   s->url, length, (unsigned long long)offset);
			break;
		}
		if (rc == 0 && status == 403 && !skew_corrected && correct_clock_skew(s, &t)) {
			skew_corrected = true;
			continue;
		}
		if (rc == 0 && status != 206 && status != 200 && !retryable_status(status)) {
			rc = http_error(s, status, &t);
			break;
		}
		if (rc == 0 && status == 200) {
			rc = ms__error_set(MS_EIO, "%s: the server ignored the Range header",
			                   s->url);
			break;
		}
		if (++attempt >= ATTEMPTS_MAX) {
			if (rc < 0)
				rc = ms__error_set(MS_EIO,
				                   "%s: %s after %u attempts (reading %zu bytes at "
				                   "offset %llu)",
				                   s->url, curl_easy_strerror(cc), attempt, length,
				                   (unsigned long long)offset);
			else if (retryable_status(status))
				rc = http_error(s, status, &t);
			else
				rc = ms__error_set(MS_EIO, "%s: the body ended early %u times",
				                   s->url, attempt);
			break;
		}
		rc = 0;
		backoff(attempt, &seed);
	}
	ms__free(t.error_body);
	pool_give(s, t.curl);
	return rc;
}

static void s3_close(ms__source *src)
{
	s3_source *s = (s3_source *)src;

	for (size_t i = 0; i < s->pool_count; i++)
		curl_easy_cleanup(s->pool[i]);
	pthread_mutex_destroy(&s->pool_lock);
	if (s->secret != NULL)
		explicit_bzero(s->secret, strlen(s->secret));
	if (s->token != NULL)
		explicit_bzero(s->token, strlen(s->token));
	ms__free(s->key_id);
	ms__free(s->secret);
	ms__free(s->token);
	ms__free(s->url);
	ms__free(s);
}

static const ms__source_ops s3_ops = {
    .read_range = s3_read_range,
    .close = s3_close,
};

bool ms__source_s3_handles(const char *location)
{
	return strncasecmp(location, "s3://", 5) == 0 || strncasecmp(location, "gs://", 5) == 0;
}

static int copy_credentials(s3_source *s, const char *id, const char *secret, const char *token)
{
	s->key_id = ms__strdup(id);
	s->secret = ms__strdup(secret);
	s->token = token != NULL && token[0] != '\0' ? ms__strdup(token) : NULL;
	if (s->key_id == NULL || s->secret == NULL ||
	    (token != NULL && token[0] != '\0' && s->token == NULL))
		return ms__error_set(MS_ENOMEM, "%s: out of memory", s->url);
	return 0;
}

/*
 * Credentials in the AWS SDKs' order, as far as this source goes yet: the environment,
 * then static keys of the selected profile in the shared files. Roles, web identity,
 * container credentials and IMDS come with the rest of the chain.
 */
static int take_credentials(s3_source *s, const ms__aws_config *cfg)
{
	const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
	ms__aws_credentials_kind kind = MS__AWS_CREDENTIALS_NONE;
	int rc;

	if (s->loc.anonymous)
		return 0;
	if (id != NULL && secret != NULL && id[0] != '\0' && secret[0] != '\0')
		return copy_credentials(s, id, secret, getenv("AWS_SESSION_TOKEN"));
	if (cfg != NULL && cfg->profile != NULL) {
		if ((rc = ms__aws_profile_credentials_kind(&kind, cfg, cfg->profile)) < 0)
			return rc;
		if (kind == MS__AWS_CREDENTIALS_STATIC)
			return copy_credentials(s, cfg->profile->values[MS__AWS_ACCESS_KEY_ID],
			                        cfg->profile->values[MS__AWS_SECRET_ACCESS_KEY],
			                        cfg->profile->values[MS__AWS_SESSION_TOKEN]);
		if (kind != MS__AWS_CREDENTIALS_NONE)
			return ms__error_set(
			    MS_EUNSUPPORTED,
			    "%s: profile '%s' gets its credentials from a role or web "
			    "identity, which modelstream does not support yet; export "
			    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
			    s->url, cfg->profile_name);
	}
	return ms__error_set(MS_EACCES,
	                     "%s: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
	                     "or keys in profile '%s' of the AWS credentials file, or "
	                     "MODELSTREAM_S3_ANONYMOUS=1 for a public bucket",
	                     s->url,
	                     cfg != NULL && cfg->profile_name ? cfg->profile_name : "default");
}

int ms__source_s3_open(ms__source **out, const char *url)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	ms__s3_resolve_options opts = {0};
	ms__aws_config *cfg = NULL;
	const char *anonymous = getenv("MODELSTREAM_S3_ANONYMOUS");
	const char *stall = getenv("MODELSTREAM_S3_STALL_SECONDS");
	s3_source *s = NULL;
	transfer t = {0};
	bool skew_corrected = false;
	long status = 0;
	CURLcode cc;
	int rc;

	*out = NULL;
	pthread_once(&once, global_init_once);
	s = ms__calloc(1, sizeof(*s));
	if (s == NULL || (s->url = ms__strdup(url)) == NULL) {
		ms__free(s);
		return ms__error_set(MS_ENOMEM, "%s: out of memory", url);
	}
	pthread_mutex_init(&s->pool_lock, NULL);
	if ((rc = ms__aws_config_load(&cfg, NULL)) < 0)
		goto done;
	opts.config = cfg;
	s->stall_seconds = stall != NULL ? strtol(stall, NULL, 10) : 0;
	if (s->stall_seconds <= 0)
		s->stall_seconds = DEFAULT_STALL_SECONDS;
	opts.anonymous = anonymous != NULL && strcmp(anonymous, "1") == 0;
	if ((rc = ms__s3_resolve(&s->loc, url, &opts)) < 0)
		goto done;
	if (s->loc.prefix) {
		rc = ms__error_set(MS_EUNSUPPORTED,
		                   "%s: names a prefix; streaming a model directory comes with "
		                   "listing support",
		                   url);
		goto done;
	}
	if ((rc = ms__s3_object_path(s->path, sizeof(s->path), &s->loc, NULL)) < 0 ||
	    (rc = ms__s3_object_url(s->request_url, sizeof(s->request_url), &s->loc, NULL)) < 0)
		goto done;
	if ((rc = take_credentials(s, cfg)) < 0)
		goto done;
	t.curl = pool_take(s);
	if (t.curl == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: cannot create an HTTP handle", url);
		goto done;
	}
	for (unsigned attempt = 1;; attempt++) {
		t.error_len = 0;
		rc = perform(s, &t, "HEAD", 0, 0, &status, &cc);
		if (rc == 0 && status == 403 && !skew_corrected && correct_clock_skew(s, &t)) {
			skew_corrected = true;
			continue;
		}
		if (rc == 0 && !retryable_status(status))
			break;
		if (attempt >= ATTEMPTS_MAX) {
			rc = rc < 0 ? ms__error_set(MS_EIO, "%s: %s (endpoint %s, from %s)", url,
			                            curl_easy_strerror(cc), s->loc.endpoint,
			                            s->loc.endpoint_why)
			            : http_error(s, status, &t);
			goto done;
		}
		backoff(attempt, &(unsigned){(unsigned)attempt});
	}
	pool_give(s, t.curl);
	t.curl = NULL;
	if (status != 200) {
		rc = http_error(s, status, &t);
		goto done;
	}
	if (!t.have_length) {
		rc = ms__error_set(MS_EIO, "%s: HEAD gave no Content-Length", url);
		goto done;
	}
	snprintf(s->etag, sizeof(s->etag), "%s", t.etag);
	s->base.ops = &s3_ops;
	s->base.location = s->url;
	s->base.size = t.content_length;
	s->base.read_alignment = 1;
	s->base.direct_io = 0;
	*out = &s->base;
	s = NULL;
done:
	if (t.curl != NULL)
		curl_easy_cleanup(t.curl);
	ms__free(t.error_body);
	if (s != NULL)
		s3_close(&s->base);
	ms__aws_config_free(cfg);
	return rc;
}
