/*
 * s3_client.h - signed requests to one bucket of an S3-compatible store, with retries.
 *
 * Everything that talks HTTP to object storage goes through here: the source (HEAD and
 * ranged GETs), listings and uploads. A client is opened for one URL: it reads the AWS
 * shared files, resolves the endpoint, region and addressing (s3_url.c), builds the
 * credential chain (s3_creds.c) and keeps a pool of curl easy handles so connections are
 * reused. Each request is signed (s3_sigv4.c) just before it is sent, with the credentials
 * of that moment and the clock offset learnt from the server.
 *
 * Retries follow the AWS SDKs' "standard" mode: connection failures, bodies cut short,
 * stalls, 500/502/503/504, 429 and SlowDown are retried up to MS__S3_ATTEMPTS_MAX attempts
 * with exponential backoff and full jitter, and every retry spends tokens from a budget
 * shared by all requests of the client (5 per retry, 10 after a timeout; a success pays 1
 * back; 500 to start), so a store that fails everything sees a bounded storm, not
 * attempts x requests. A ranged GET that is cut re-requests only the bytes still missing.
 * Two answers get one immediate retry outside that budget: RequestTimeTooSkewed (sign
 * again with the server's clock) and ExpiredToken (refresh the credentials and sign again).
 *
 * Thread rules: any number of threads may issue requests on one client at once.
 */
#ifndef MS_S3_CLIENT_H
#define MS_S3_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cancel.h"
#include "s3_sigv4.h"
#include "s3_url.h"

/** The most attempts one request makes (the first and its retries). */
#define MS__S3_ATTEMPTS_MAX 6
/** The retry budget's capacity and costs, as in the AWS SDKs' standard mode. */
#define MS__S3_RETRY_TOKENS       500
#define MS__S3_RETRY_COST         5
#define MS__S3_RETRY_TIMEOUT_COST 10
/** The largest body kept for an answer read into memory (errors, listings, XML). */
#define MS__S3_BODY_MAX (4u << 20)
/** Room for an ETag, NUL included. */
#define MS__S3_CLIENT_ETAG_SIZE 256

typedef struct ms__s3_client ms__s3_client;

typedef struct {
	/** Overrides (CLI flags); NULL / AUTO for none. */
	const char *endpoint_url;
	const char *region;
	ms__s3_addressing_request addressing;
	/** Unsigned requests; also MODELSTREAM_S3_ANONYMOUS=1. */
	bool anonymous;
	/** Resolve only: no credentials are looked for (for `doctor` on a broken chain). */
	bool no_credentials;
	/** The caller's cancellation token, or NULL: once fired, every request stops. */
	const ms_cancel *cancel;
} ms__s3_client_options;

/**
 * Opens a client for `url` ("s3://bucket/key", "gs://bucket/dir/"). No request is sent
 * except those the credential chain needs.
 * @return 0; MS_EINVAL for a bad URL or setting; MS_EACCES and the other errors of
 *         ms__creds_provider_new(); MS_ENOMEM.
 */
int ms__s3_client_open(ms__s3_client **out, const char *url, const ms__s3_client_options *opts);

/** Takes one more reference to `c` (a source sharing it); returns `c`. */
ms__s3_client *ms__s3_client_retain(ms__s3_client *c);

/** Drops a reference; the last one frees the client, its connections and its credentials.
 * Accepts NULL. */
void ms__s3_client_free(ms__s3_client *c);

/** Where the client's requests go, and why. */
const ms__s3_location *ms__s3_client_location(const ms__s3_client *c);

/** The URL the client was opened for, as given. */
const char *ms__s3_client_url(const ms__s3_client *c);

/** Writes a line naming the credential source (never a secret), or "anonymous". */
void ms__s3_client_describe_credentials(const ms__s3_client *c, char *out, size_t size);

/** One request. Zero-initialise, then set what is needed. */
typedef struct {
	const char *method; /* "GET", "HEAD", "PUT", "POST", "DELETE" */
	/** The object's key, or NULL for the client's own key; "" for the bucket itself. */
	const char *key;
	/** The raw query string without '?', already encoded; NULL for none. */
	const char *query;
	/** What `url` names in messages; NULL: the client's URL. */
	const char *what;
	/** Extra headers to sign and send (content-type); at most 4. */
	const ms__http_header *headers;
	size_t header_count;
	/** A request body (PUT, POST), sent and signed by its SHA-256. */
	const void *body;
	size_t body_len;
	/**
	 * A ranged GET: [offset, offset + capacity) into `dst`, resumed where a cut transfer
	 * stopped, with If-Match on `if_match` when it is non-empty. Without `dst`, a 2xx body
	 * is kept in memory (at most MS__S3_BODY_MAX bytes).
	 */
	void *dst;
	size_t capacity;
	uint64_t offset;
	const char *if_match;
	/** Counts the body bytes of a ranged GET as they arrive (progress); NULL for none. */
	atomic_uint_fast64_t *received;
	/** Sent even after the client was canceled (aborting a multipart upload). */
	bool despite_cancel;
} ms__s3_request;

/** What came back from a request that reached the server. */
typedef struct {
	long status;
	char etag[MS__S3_CLIENT_ETAG_SIZE]; /* as sent, quotes kept; "" if none */
	uint64_t content_length;
	bool have_length;
	/** The body (2xx without dst, or any error body), NUL-terminated; free with
	 * ms__s3_response_free(). */
	char *body;
	size_t body_len;
	/** Retries this request made, by reason, for statistics. */
	unsigned retries;
} ms__s3_response;

/**
 * Sends `req`, retrying as the file comment says. Returns 0 when the final answer is 2xx
 * (and, for a ranged GET, every byte arrived); otherwise raises the error for the final
 * answer, naming the URL and the S3 error code (NoSuchKey, AccessDenied, ... with a hint),
 * and returns its code. `*resp` is filled in both cases (status 0 when no answer came).
 */
int ms__s3_send(ms__s3_client *c, const ms__s3_request *req, ms__s3_response *resp);

/** Frees the body of `resp`. */
void ms__s3_response_free(ms__s3_response *resp);

/**
 * Stops every request of the client, now and from now on: transfers in flight are aborted
 * (curl's progress callback, within a fraction of a second), backoffs end, and
 * ms__s3_send() returns MS_ECANCELED. Any thread, at any time.
 */
void ms__s3_client_cancel(ms__s3_client *c);

/** True once ms__s3_client_cancel() was called or the client's token fired. */
bool ms__s3_client_canceled(const ms__s3_client *c);

/** Requests retried and tokens left in the budget, for tests and statistics. */
unsigned ms__s3_client_retries(const ms__s3_client *c);
int ms__s3_client_budget(const ms__s3_client *c);

/** Answers that said "slow down" (503, 429, SlowDown) and timeouts, for admission control. */
unsigned ms__s3_client_throttles(const ms__s3_client *c);

/** Retries so far by reason (MS_RETRY_* of modelstream.h), into out[MS_RETRY_REASONS]. */
void ms__s3_client_retry_reasons(const ms__s3_client *c, unsigned out[MS_RETRY_REASONS]);

#endif
