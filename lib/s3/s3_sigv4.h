/*
 * s3_sigv4.h - AWS Signature Version 4 for the S3 back end, signed with OpenSSL.
 *
 * We sign requests ourselves instead of using libcurl's CURLOPT_AWS_SIGV4 because the
 * libcurl that Debian ships (7.88) does not send x-amz-content-sha256, does not sort the
 * query string and cannot correct for clock skew. The output matches botocore's
 * S3SigV4Auth byte for byte for service "s3" (tests/fixtures/sigv4_vectors.json, made by
 * tests/support/sigv4_vectors.py), and botocore's SigV4Auth for any other service ("sts").
 *
 * Every input has a hard size cap (the MS__SIGV4_*_MAX macros) so that the result fits in
 * fixed buffers and signing never allocates through lib/alloc.h. An input over a cap, or
 * holding a byte that cannot go on the wire, is rejected with MS_EINVAL; the message names
 * the field and never contains a secret key, a session token, a header value or a
 * signature.
 *
 * Thread rules: every function here is pure (no shared state) and may run on any thread.
 */
#ifndef MS_S3_SIGV4_H
#define MS_S3_SIGV4_H

#include <stddef.h>
#include <stdint.h>

/* Caps on the inputs, in bytes without the terminating NUL (or in entries). */
#define MS__SIGV4_ACCESS_KEY_ID_MAX 128
#define MS__SIGV4_SECRET_MAX        128
#define MS__SIGV4_SESSION_TOKEN_MAX 8192
#define MS__SIGV4_METHOD_MAX        16
#define MS__SIGV4_HOST_MAX          300
#define MS__SIGV4_PATH_MAX          4096
#define MS__SIGV4_QUERY_MAX         4096
#define MS__SIGV4_QUERY_PARAMS_MAX  64
#define MS__SIGV4_HEADERS_MAX       32 /* headers the caller adds; the signer adds up to 4 */
#define MS__SIGV4_HEADER_NAME_MAX   64
#define MS__SIGV4_HEADER_VALUE_MAX  4096
#define MS__SIGV4_REGION_MAX        64
#define MS__SIGV4_SERVICE_MAX       32

/* Sizes of the result's buffers, NUL included; s3_sigv4.c proves the worst case fits. */
#define MS__SIGV4_AUTHORIZATION_SIZE  3072
#define MS__SIGV4_STRING_TO_SIGN_SIZE 256

/** The payload hash of a request whose body is not signed (S3 only). */
#define MS__SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

typedef struct {
	const char *access_key_id;     /* visible ASCII without '/' or ',' */
	const char *secret_access_key; /* any bytes, not empty */
	const char *session_token;     /* NULL or "" if none; visible ASCII */
} ms__aws_credentials;

typedef struct {
	const char *name;
	const char *value;
} ms__http_header;

typedef struct {
	/** "GET", "HEAD", "PUT", "POST": upper case letters. */
	const char *method;
	/** host[:port] exactly as sent in the Host header ("127.0.0.1:9000"). */
	const char *host;
	/**
	 * The request path exactly as sent on the wire, already URI-encoded
	 * ("/bucket/dir/my%20key"). For "s3" it is signed as it is: S3 neither encodes it again
	 * nor removes "." and ".." segments. Other services encode it a second time, as AWS
	 * requires, and there a path with an empty, "." or ".." segment is rejected.
	 */
	const char *path;
	/**
	 * The raw query string without '?', as sent on the wire; NULL or "" for none
	 * ("list-type=2&prefix=a%2Fb"). The signer decodes each name and value, encodes it
	 * again the AWS way and sorts the pairs, so already-encoded input is not encoded twice
	 * and lower-case escapes are fine. '+' is a literal plus, not a space: encode spaces
	 * as %20. A name without '=' signs as "name=". Empty pairs ("a=1&&b=2") are skipped.
	 */
	const char *query;
	/**
	 * Extra headers to sign and send (range, if-match, content-type, x-amz-meta-*), in any
	 * case and order. Values are trimmed and inner runs of spaces and tabs collapsed when
	 * signed; send them as given. Each name at most once, and none of the headers the
	 * signer owns: host, authorization, date, x-amz-date, x-amz-content-sha256,
	 * x-amz-security-token.
	 */
	const ms__http_header *headers;
	size_t header_count;
	/**
	 * The hex SHA-256 of the body (ms__sha256_hex()), MS__SIGV4_UNSIGNED_PAYLOAD, or
	 * another literal AWS defines (upper-case letters, digits and at least one '-'). NULL
	 * means the hash of the empty body.
	 */
	const char *payload_sha256;
	const char *region;  /* "us-east-1": letters, digits, '-' and '_' */
	const char *service; /* "s3" or "sts": the same characters */
	/** Seconds since the epoch, already corrected for clock skew by the caller. */
	int64_t time;
} ms__sigv4_request;

/**
 * What to add to the request. The strings live in the struct (except security_token,
 * which is the caller's session token), so it holds no pointer into itself and may be
 * copied. ms__sigv4_headers() lists them as headers.
 */
typedef struct {
	char authorization[MS__SIGV4_AUTHORIZATION_SIZE]; /* the Authorization value */
	char amz_date[17];                                /* x-amz-date: "20240102T030405Z" */
	/** x-amz-content-sha256, sent for "s3" only: "" for other services. */
	char content_sha256[65];
	const char *security_token; /* x-amz-security-token, or NULL */
	/** What was signed, for comparing with the StringToSign of an S3
	 * SignatureDoesNotMatch error. Holds no secret. */
	char string_to_sign[MS__SIGV4_STRING_TO_SIGN_SIZE];
} ms__sigv4_result;

/** The most headers ms__sigv4_headers() returns. */
#define MS__SIGV4_RESULT_HEADERS 4

/**
 * Signs `req` with `creds` and fills `out`. Neither allocates nor keeps any pointer
 * except out->security_token (creds->session_token).
 *
 * Returns 0; MS_EINVAL for an input over a cap or not fit for the wire (the message names
 * the field, never a secret); MS_ERROR if OpenSSL fails. On failure `*out` is zeroed.
 */
int ms__sigv4_sign(ms__sigv4_result *out, const ms__sigv4_request *req,
                   const ms__aws_credentials *creds);

/**
 * Lists the headers that `result` says to add, pointing into `result` and the caller's
 * credentials: Authorization, x-amz-date, then x-amz-content-sha256 and
 * x-amz-security-token where they apply. Returns how many (3 or 4; 2 or 3 outside S3).
 */
size_t ms__sigv4_headers(ms__http_header out[MS__SIGV4_RESULT_HEADERS],
                         const ms__sigv4_result *result);

/**
 * Writes the canonical request that ms__sigv4_sign() would hash, NUL-terminated, into
 * `out` of `out_size` bytes, and its length (without the NUL) into *out_len. Only
 * creds->session_token is read from `creds`. For tests and for debugging signature
 * mismatches; signing itself streams the text into SHA-256 and never holds it.
 *
 * Returns 0; MS_EINVAL for bad input, as ms__sigv4_sign(), or when `out` is too small, in
 * which case *out_len is the size needed without the NUL and `out` holds a cut prefix.
 */
int ms__sigv4_canonical_request(char *out, size_t out_size, size_t *out_len,
                                const ms__sigv4_request *req, const ms__aws_credentials *creds);

/** Writes the lower-case hex SHA-256 of `len` bytes at `data`. Returns 0 or MS_ERROR. */
int ms__sha256_hex(char out[65], const void *data, size_t len);

#endif
