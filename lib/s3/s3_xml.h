/*
 * s3_xml.h - reading the XML documents that S3 and STS send back.
 *
 * The S3 back end receives five kinds of XML body: a ListObjectsV2 page, an S3 error
 * document, the results of initiating and completing a multipart upload, and STS's answer
 * to AssumeRole / AssumeRoleWithWebIdentity. Each parse function here turns one body into a
 * plain C struct, trusting nothing in it: the document, every text field and every array has
 * a hard cap, DTDs are refused outright (so no entity can expand), and numbers and times
 * are validated before anyone downstream sees them.
 *
 * Every parse function has the same contract:
 *  - `xml` is `len` bytes, not necessarily NUL-terminated; `what` names the request (its
 *    URL) and only serves messages. Leading whitespace is skipped.
 *  - It returns 0, MS_EFORMAT with the message "<what>: malformed S3 response: <reason>"
 *    ("STS" instead of "S3" for STS documents), or MS_ENOMEM ("<what>: out of memory").
 *  - Any parser other than ms__s3_error_parse() also accepts an error document in place of
 *    the one it expects (S3 answers CompleteMultipartUpload with HTTP 200 and an `Error`
 *    body when it fails after sending the status line). It then sets `out->service_error`,
 *    fills `out->error`, raises the error as ms__s3_error_raise() does with no HTTP status,
 *    and returns that code (MS_ENOTFOUND, MS_EACCES, MS_EINVAL or MS_EIO).
 *  - On any failure the rest of `*out` is cleared and owns nothing.
 * The functions are reentrant and keep no state between calls; any thread may call them.
 */
#ifndef MS_S3_XML_H
#define MS_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"

/** The largest ListObjectsV2 body accepted: 1000 keys of 1024 bytes, escaped, fit easily. */
#define MS__S3_XML_LIST_MAX (16u << 20)
/** The largest body of any other document (errors, multipart results, STS). */
#define MS__S3_XML_SMALL_MAX (64u << 10)
/** The deepest element nesting accepted; real documents reach 4. */
#define MS__S3_XML_DEPTH_MAX 16
/** S3 keys are at most 1024 bytes of UTF-8; so are prefixes, which are parts of keys. */
#define MS__S3_XML_KEY_MAX 1024
/** The most Contents plus CommonPrefixes in one page: S3 sends at most 1000; the slack
 * tolerates compatible servers that overshoot a little without letting one grow us freely. */
#define MS__S3_LIST_ENTRIES_MAX 1100
/** The longest bucket name accepted (S3 allows 63; compatible servers allow more). */
#define MS__S3_XML_BUCKET_MAX 255
/** The longest continuation token accepted (S3's are a few hundred bytes). */
#define MS__S3_TOKEN_MAX 4096
/** The longest ETag accepted, quotes included (S3's are at most 40 bytes). */
#define MS__S3_ETAG_MAX 256
/** The longest timestamp string accepted ("2026-11-25T21:00:00.000Z" is 24). */
#define MS__S3_TIME_MAX 64
/** The largest object size accepted: sizes must stay valid as signed 64-bit offsets. */
#define MS__S3_SIZE_MAX ((uint64_t)INT64_MAX)
/** The longest multipart upload id accepted (S3's are about 100 bytes). */
#define MS__S3_UPLOAD_ID_MAX 1024
/** The longest Location accepted: an endpoint plus a percent-encoded 1024-byte key fits. */
#define MS__S3_LOCATION_MAX 4096
/** The longest access key id and secret access key accepted (AWS's are 20 and 40). */
#define MS__STS_KEY_MAX 256
/** The longest STS session token accepted. AWS promises no size; real ones are 1-3 KiB. */
#define MS__STS_TOKEN_MAX (16u << 10)

/** One object of a listing. */
typedef struct {
	char *key;           /**< UTF-8, entity-decoded, 1..MS__S3_XML_KEY_MAX bytes, no NUL */
	uint64_t size;       /**< bytes, at most MS__S3_SIZE_MAX */
	char *etag;          /**< as sent, quotes kept; NULL if absent */
	char *last_modified; /**< as sent ("2026-11-25T21:00:00.000Z"); NULL if absent */
} ms__s3_object;

/**
 * An S3 error document. Every field is copied, cut to its buffer at a UTF-8 boundary (with
 * "..." marking the cut) and made one line (control characters become spaces); a field the
 * document lacks is "". Fixed buffers: nothing to free.
 */
typedef struct {
	char code[64];         /**< "NoSuchKey"; never "" after a successful parse */
	char message[512];     /**< "The specified key does not exist." */
	char request_id[128];  /**< RequestId */
	char resource[512];    /**< Resource, where S3 sends it */
	char server_time[64];  /**< ServerTime, sent with RequestTimeTooSkewed */
	char request_time[64]; /**< RequestTime, sent with RequestTimeTooSkewed */
	char endpoint[256];    /**< Endpoint, sent with PermanentRedirect */
	char region[64];       /**< Region, sent with AuthorizationHeaderMalformed */
} ms__s3_error;

/** One ListObjectsV2 page. Free with ms__s3_list_free(). */
typedef struct {
	char *name;                    /**< the bucket; NULL if absent */
	char *prefix;                  /**< the Prefix asked for; NULL if absent, "" if empty */
	uint64_t key_count;            /**< KeyCount as sent (0 if absent); not cross-checked */
	uint64_t max_keys;             /**< MaxKeys as sent (0 if absent) */
	bool is_truncated;             /**< always sent by S3; required */
	char *next_continuation_token; /**< non-empty when is_truncated; else NULL if absent */
	ms__s3_object *objects;        /**< object_count entries, in document order */
	size_t object_count;
	char **common_prefixes; /**< common_prefix_count non-empty strings, in document order */
	size_t common_prefix_count;
	bool service_error; /**< the body was an error document; see the file comment */
	ms__s3_error error;
} ms__s3_list;

/** The result of CreateMultipartUpload (InitiateMultipartUploadResult). */
typedef struct {
	char upload_id[MS__S3_UPLOAD_ID_MAX + 1]; /**< never "" after a successful parse */
	bool service_error;
	ms__s3_error error;
} ms__s3_initiate;

/** The result of CompleteMultipartUpload (CompleteMultipartUploadResult). */
typedef struct {
	char location[MS__S3_LOCATION_MAX + 1]; /**< "" if absent */
	char etag[MS__S3_ETAG_MAX + 1];         /**< as sent, quotes kept; never "" on success */
	bool service_error; /**< S3 failed after its 200: see the file comment */
	ms__s3_error error;
} ms__s3_complete;

/**
 * Temporary credentials from STS. Free with ms__sts_credentials_free(), which zeroes the
 * strings first: they are secrets (the session token too, since it is half of one).
 */
typedef struct {
	char *access_key_id;     /**< non-empty */
	char *secret_access_key; /**< non-empty; never appears in any message */
	char *session_token;     /**< non-empty */
	int64_t expiration;      /**< seconds since the epoch, UTC */
	bool service_error;      /**< the body was an STS ErrorResponse */
	ms__s3_error error;
} ms__sts_credentials;

/**
 * Parses a ListObjectsV2 page (root ListBucketResult) of at most MS__S3_XML_LIST_MAX bytes.
 * Rejects a key or prefix that is empty or longer than MS__S3_XML_KEY_MAX, a Contents without
 * Key or Size, a Size that is not a decimal number up to MS__S3_SIZE_MAX, more than
 * MS__S3_LIST_ENTRIES_MAX entries, a missing IsTruncated, and IsTruncated true without a
 * NextContinuationToken. Elements it does not know (Owner, StorageClass, ...) are skipped.
 * Keys that XML 1.0 cannot carry (control characters) need encoding-type=url, which this
 * parser does not decode: such a listing fails with MS_EFORMAT.
 * On success `*out` owns its arrays: free them with ms__s3_list_free().
 */
int ms__s3_list_parse(ms__s3_list *out, const char *xml, size_t len, const char *what);

/** Frees what a parsed listing owns and clears it. Accepts NULL. */
void ms__s3_list_free(ms__s3_list *list);

/**
 * Parses the body of a failed S3 request (root Error) or STS request (root ErrorResponse
 * holding Error), of at most MS__S3_XML_SMALL_MAX bytes. A Code is required; every other
 * field is optional. Returns 0 when the body is such a document; it raises nothing, so
 * that the caller can add the HTTP status with ms__s3_error_raise().
 */
int ms__s3_error_parse(ms__s3_error *out, const char *xml, size_t len, const char *what);

/** Parses an InitiateMultipartUploadResult; UploadId is required. */
int ms__s3_initiate_parse(ms__s3_initiate *out, const char *xml, size_t len, const char *what);

/**
 * Parses a CompleteMultipartUploadResult; ETag is required. Check the return value even
 * when the HTTP status was 200: an Error body returns its mapped code and sets
 * out->service_error (out->error.code says whether a retry may help: InternalError,
 * SlowDown).
 */
int ms__s3_complete_parse(ms__s3_complete *out, const char *xml, size_t len, const char *what);

/**
 * Parses an AssumeRoleWithWebIdentityResponse or AssumeRoleResponse; the four credential
 * fields are required and Expiration must be an ISO 8601 UTC time. An ErrorResponse is
 * returned as a service error (see the file comment) with "STS" in the message.
 * On success free `*out` with ms__sts_credentials_free(). The secret is never copied into a
 * message, and every buffer that held it (the parser's included) is zeroed before it is
 * freed; the caller must zero its own copy of the body.
 */
int ms__sts_credentials_parse(ms__sts_credentials *out, const char *xml, size_t len,
                              const char *what);

/** Zeroes and frees the strings of `creds` and clears it. Accepts NULL. */
void ms__sts_credentials_free(ms__sts_credentials *creds);

/**
 * Maps an S3 or STS error code (and the HTTP status, 0 if unknown) to an MS_E* code:
 * missing keys, buckets and uploads to MS_ENOTFOUND; refused credentials, signatures,
 * tokens and clocks to MS_EACCES; a wrong bucket name or region to MS_EINVAL; everything
 * else (throttling, internal errors) to MS_EIO. Unknown codes fall back on the status:
 * 403 is MS_EACCES, 404 MS_ENOTFOUND, anything else MS_EIO.
 */
int ms__s3_error_to_code(const char *code, int http_status);

/**
 * Records `error` as this thread's last error and returns its mapped code. The message
 * reads "<what>: 403 AccessDenied: Access Denied (request id X)" (no status when
 * http_status is 0), with the server's time for RequestTimeTooSkewed and the endpoint or
 * region the bucket needs for PermanentRedirect and AuthorizationHeaderMalformed.
 */
int ms__s3_error_raise(const ms__s3_error *error, int http_status, const char *what);

/**
 * Parses an ISO 8601 UTC time as AWS writes it, "2026-11-25T21:00:00Z", optionally with a
 * fraction of a second ("2026-11-25T21:00:00.123456Z", dropped), into seconds since the
 * epoch. `text` is `len` bytes. Years 1970 to 9999 only. Returns 0, or -1 (raising nothing)
 * if it is not such a time.
 */
int ms__s3_time_parse(int64_t *out, const char *text, size_t len);

#endif
