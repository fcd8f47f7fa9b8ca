/*
 * s3_creds_fetch.h - asking remote sources for credentials: STS, container endpoints and
 * EC2 instance metadata.
 *
 * These are the leaves of the credential chain (s3_creds.h): each call makes the requests
 * for one link and returns fresh credentials, or raises an error that starts with the
 * `context` it was given. They know nothing of profiles, of the order of the chain or of
 * refreshing, which s3_creds.c decides, and they keep no state between calls. Every
 * response body is read into one buffer of MS__CREDS_BODY_MAX bytes, refused if larger, and
 * wiped before it is freed, as is every token file, request body and header line that held
 * a token or a signature. Messages quote no token and no secret.
 *
 * Thread rules: any number of calls may run at once, from any threads, provided
 * curl_global_init() has run (ms__creds_provider_new() sees to it).
 */
#ifndef MS_S3_CREDS_FETCH_H
#define MS_S3_CREDS_FETCH_H

#include <stdatomic.h>
#include <stddef.h>

#include "s3_creds.h"

/** The largest response body read from STS, a container endpoint or IMDS; larger is refused. */
#define MS__CREDS_BODY_MAX (64u << 10)
/** The largest web identity or container authorization token file read. */
#define MS__CREDS_TOKEN_FILE_MAX (16u << 10)
/** The longest IAM role name IMDS may name. */
#define MS__CREDS_IMDS_ROLE_MAX 128

/** Where the fetchers connect; fixed once the provider is built, and only read. */
typedef struct {
	const char *sts_url;    /* the STS endpoint ("https://sts.eu-west-1.amazonaws.com/") */
	const char *sts_host;   /* its host[:port], for the Host header and the signature */
	const char *sts_path;   /* its path, for the signature */
	const char *sts_region; /* the region STS requests are signed for */
	const char *ca_bundle;  /* for https STS and container endpoints; NULL: the system's */
	/** Counts the fetches that reached the network, for ms__creds_fetch_count(). */
	atomic_uint *fetch_count;
} ms__creds_remote;

/**
 * STS AssumeRoleWithWebIdentity, unsigned, with the token read from `token_file` (again on
 * every call: the kubelet rotates it) for `role_arn`, as `session_name` (NULL:
 * "modelstream-<unix time>").
 * @return 0; MS_EACCES (the token file is missing or empty); MS_EINVAL (a token file over
 *         MS__CREDS_TOKEN_FILE_MAX or holding a control character); STS's error code mapped
 *         as S3's are (AccessDenied: MS_EACCES); MS_EIO (unreachable, a token file that
 *         cannot be read, 5xx after the retries); MS_EFORMAT; MS_ENOMEM.
 */
int ms__creds_fetch_web_identity(ms__creds *out, const ms__creds_remote *remote,
                                 const char *role_arn, const char *session_name,
                                 const char *token_file, const char *context);

/**
 * STS AssumeRole for `role_arn`, as `session_name` (NULL: "modelstream-<unix time>"), with
 * `external_id` (NULL for none), signed with `signing`.
 * @return as ms__creds_fetch_web_identity(), without the token file's errors.
 */
int ms__creds_fetch_assume_role(ms__creds *out, const ms__creds_remote *remote,
                                const char *role_arn, const char *session_name,
                                const char *external_id, const ms__creds *signing,
                                const char *context);

/**
 * A container endpoint: GET `url`, with an Authorization header from `token_file` (read
 * again on every call), else `token`, else none; no proxy.
 * @return 0; MS_EACCES (the token file as above, HTTP 401 or 403, or a Code other than
 *         Success); MS_EINVAL (the token file as above); MS_EIO (unreachable, or another
 *         status); MS_EFORMAT; MS_ENOMEM.
 */
int ms__creds_fetch_container(ms__creds *out, const ms__creds_remote *remote, const char *url,
                              const char *token, const char *token_file, const char *context);

/**
 * EC2 instance metadata, IMDSv2, at `endpoint` (no trailing '/'): a PUT for a session token,
 * a GET of the role name, a GET of its credentials, each with `timeout_ms` and `attempts`;
 * no proxy. On success the role's name is in `role`.
 * @return 0; MS_EACCES (the token refused, no role attached, HTTP 401/403/404, or a Code
 *         other than Success); MS_EINVAL (an endpoint too long); MS_EIO; MS_EFORMAT (a token
 *         or role name that is not valid, or a malformed answer); MS_ENOMEM.
 */
int ms__creds_fetch_imds(ms__creds *out, char role[MS__CREDS_IMDS_ROLE_MAX + 1],
                         const ms__creds_remote *remote, const char *endpoint, long timeout_ms,
                         unsigned attempts, const char *context);

/* The pieces below are exposed for the unit tests and the fuzz target. */

/**
 * Parses the JSON that container endpoints and IMDS send: {"AccessKeyId", "SecretAccessKey",
 * "Token", "Expiration"} (Token optional; IMDS adds "Code", which must be "Success"), `len`
 * bytes at `json`. `what` prefixes messages. Returns 0; MS_EFORMAT (not such a document, a
 * field missing, over its cap or of the wrong type, Expiration not an ISO 8601 time);
 * MS_EACCES (a Code other than "Success", with its Message); MS_ENOMEM. The secret never
 * appears in a message, and every copy the parser made is wiped.
 */
int ms__creds_parse_json(ms__creds *out, const char *json, size_t len, const char *what);

/**
 * Encodes `pair_count` name/value pairs (pairs[2i], pairs[2i+1]) as an
 * application/x-www-form-urlencoded body, every byte but A-Z a-z 0-9 - . _ ~ as %XX.
 * On success `*out` is a NUL-terminated string from ms__malloc() of `*out_len` bytes; wipe
 * it before freeing when a value was a secret. Returns 0 or MS_ENOMEM.
 */
int ms__creds_form_encode(char **out, size_t *out_len, const char *const *pairs, size_t pair_count);

#endif
