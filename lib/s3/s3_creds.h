/*
 * s3_creds.h - the AWS credential chain, as the AWS SDKs walk it, with refresh.
 *
 * Pods get credentials in several ways, and users expect modelstream to find them the way
 * `aws s3 cp` does. A provider is built once per URL (or per client) and walks the chain in
 * the AWS SDKs' order, keeping the first source that is configured:
 *
 *  1. environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *  2. web identity (IRSA): AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN
 *     (+ AWS_ROLE_SESSION_NAME): STS AssumeRoleWithWebIdentity, unsigned, the token file
 *     read again on every call (the kubelet rotates it);
 *  3. the selected profile of the shared files: static keys; role_arn + source_profile
 *     (STS AssumeRole signed with the source profile's keys, chains of profiles followed,
 *     cycles refused) or role_arn + credential_source = Environment | EcsContainer |
 *     Ec2InstanceMetadata; role_arn + web_identity_token_file;
 *  4. container credentials (EKS Pod Identity, ECS): AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
 *     (on http://169.254.170.2) or AWS_CONTAINER_CREDENTIALS_FULL_URI (https anywhere, http
 *     only to loopback, 169.254.170.2, 169.254.170.23 and fd00:ec2::23), with the
 *     Authorization header from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read again on every
 *     call) or AWS_CONTAINER_AUTHORIZATION_TOKEN;
 *  5. EC2 instance metadata, IMDSv2 only (a PUT for a session token first), at
 *     AWS_EC2_METADATA_SERVICE_ENDPOINT (default http://169.254.169.254), with a 1 s timeout
 *     and 2 attempts (AWS_METADATA_SERVICE_TIMEOUT, AWS_METADATA_SERVICE_NUM_ATTEMPTS);
 *     skipped when AWS_EC2_METADATA_DISABLED=true.
 *
 * STS is reached at AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL, else the profile's
 * endpoint_url (none of the three when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS or the profile's
 * ignore_configured_endpoint_urls is true), else https://sts.REGION.amazonaws.com
 * (.amazonaws.com.cn for cn- regions; https://sts.amazonaws.com when no region is known or
 * AWS_STS_REGIONAL_ENDPOINTS=legacy). Temporary credentials are refreshed when fewer than
 * MODELSTREAM_CREDENTIALS_REFRESH_SECONDS (default 600) remain before they expire, by
 * whichever thread asks first while the others keep signing with the old ones; if a refresh
 * fails while the old credentials are still valid they are kept and the failure is retried
 * on a later call, but not within a second of the failure.
 *
 * Secrets (secret keys, session tokens, web identity and container tokens) never appear
 * in a message, and every copy is wiped with explicit_bzero() when it is dropped.
 *
 * Thread rules: ms__creds_get() and ms__creds_describe() may be called from any number of
 * threads at once; ms__creds_free() after the last of them.
 */
#ifndef MS_S3_CREDS_H
#define MS_S3_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3_config.h"
#include "s3_sigv4.h"

/** Which link of the chain supplied the credentials. */
typedef enum {
	MS__CREDS_NONE = 0,    /* nothing configured */
	MS__CREDS_ENVIRONMENT, /* AWS_ACCESS_KEY_ID */
	MS__CREDS_WEB_IDENTITY,
	MS__CREDS_PROFILE,             /* static keys in the shared files */
	MS__CREDS_PROFILE_ASSUME_ROLE, /* role_arn + source_profile / credential_source */
	MS__CREDS_PROFILE_WEB_IDENTITY,
	MS__CREDS_CONTAINER,
	MS__CREDS_IMDS,
} ms__creds_kind;

/** One set of credentials, copied out for signing; wipe with ms__creds_clear(). */
typedef struct {
	char access_key_id[MS__SIGV4_ACCESS_KEY_ID_MAX + 1];
	char secret_access_key[MS__SIGV4_SECRET_MAX + 1];
	char session_token[MS__SIGV4_SESSION_TOKEN_MAX + 1]; /* "" if none */
	int64_t expiration; /* seconds since the epoch; 0 for credentials that do not expire */
} ms__creds;

typedef struct ms__creds_provider ms__creds_provider;

typedef struct {
	ms__getenv_fn getenv; /* NULL: the process environment */
	void *getenv_payload;
	/** The loaded shared files; NULL for none. Must outlive the provider. */
	const ms__aws_config *config;
	/** The region, for the STS endpoint; NULL or "" for none. */
	const char *region;
	/** A CA bundle for https STS and container endpoints; NULL or "" for the system's. */
	const char *ca_bundle;
} ms__creds_options;

/**
 * Walks the chain, keeps the first source that is configured and fetches its credentials
 * once, so that a broken source fails here, naming `what` (the URL being opened), the source
 * and the cause: "s3://b/k: web identity (AWS_ROLE_ARN arn:...): STS AssumeRoleWithWebIdentity:
 * AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity".
 * A source that is configured but fails does not fall through to the next one (as in the
 * AWS SDKs), except IMDS, which is last. When nothing is configured, the result is
 * MS_EACCES with a message that lists what was looked for.
 * @return 0; MS_EACCES (no credentials, or the source refused, or a token file that
 *         cannot be read); MS_EINVAL (a bad setting: a FULL_URI to a host that is not
 *         allowed, a role_arn with nothing to assume it from, a profile cycle, a malformed
 *         number or URL); MS_EUNSUPPORTED (SSO, credential_process); MS_EIO (the source could
 *         not be reached, or answered 5xx); MS_EFORMAT (a malformed or oversized answer);
 *         MS_ENOMEM.
 */
int ms__creds_provider_new(ms__creds_provider **out, const ms__creds_options *opts,
                           const char *what);

/**
 * Copies the current credentials into `*out`, first refreshing them if they expire within
 * the refresh window, or unconditionally when `force_refresh` (after an ExpiredToken) -
 * but at most once per second across threads, so that many workers seeing ExpiredToken at
 * once cause one fetch. Static credentials are copied as they are.
 * @return 0; on a failed refresh of credentials that have already expired, the error of
 *         the refresh (as for ms__creds_provider_new()).
 */
int ms__creds_get(ms__creds_provider *p, ms__creds *out, bool force_refresh);

/** The kind of source in use. */
ms__creds_kind ms__creds_kind_of(const ms__creds_provider *p);

/**
 * A line saying which source supplies the credentials and why, never a secret:
 * "environment (AWS_ACCESS_KEY_ID AKIA...)", "web identity: role arn:aws:iam::1:role/r, token
 * file /var/run/secrets/eks.amazonaws.com/serviceaccount/token, STS http://127.0.0.1:5000",
 * "profile 'dev' in /root/.aws/credentials", "container credentials from
 * http://127.0.0.1:8080/creds", "EC2 instance metadata (IMDSv2) role 'node'". Only the first
 * four characters of an access key id are shown. Writes at most `size` bytes.
 */
void ms__creds_describe(const ms__creds_provider *p, char *out, size_t size);

/**
 * How many times the provider asked a remote source (STS, a container endpoint, IMDS) for
 * credentials, successfully or not; a role chain counts each link it fetched (for tests).
 */
unsigned ms__creds_fetch_count(const ms__creds_provider *p);

/** Wipes `c`. */
void ms__creds_clear(ms__creds *c);

/**
 * Copies one set into `out`, checking each part against its buffer: the key id and the
 * secret must be non-empty, and none may be longer than its MS__SIGV4_*_MAX. `token` may be
 * NULL. `out` is wiped first, and stays wiped on failure. Returns 0, or `code` (MS_EINVAL
 * for settings, MS_EFORMAT for responses) with "<context>: ..." naming the part that does
 * not fit, never its value.
 */
int ms__creds_set(ms__creds *out, const char *key_id, const char *secret, const char *token,
                  int64_t expiration, int code, const char *context);

/* The pieces below are internal to s3_creds.c and exposed for its unit tests; the fetchers'
 * (s3_creds_fetch.c) are in s3_creds_fetch.h. */

/** The refresh window when MODELSTREAM_CREDENTIALS_REFRESH_SECONDS is unset, in seconds. */
#define MS__CREDS_REFRESH_DEFAULT 600

/**
 * Checks AWS_CONTAINER_CREDENTIALS_FULL_URI `url` as the AWS SDKs do: https to any host;
 * http only to a loopback address (127.0.0.0/8, ::1, "localhost"), 169.254.170.2,
 * 169.254.170.23 or fd00:ec2::23. Unlike botocore, other host names are not resolved (and
 * so refused for http), and a URL holding a user name or password is refused. Returns 0 or
 * MS_EINVAL ("<what>: ...").
 */
int ms__creds_check_full_uri(const char *url, const char *what);

/**
 * Whether credentials expiring at `expiration` (0: never) are due for refresh at `now`
 * with a window of `window` seconds: true when fewer than `window` seconds remain.
 */
bool ms__creds_refresh_due(int64_t expiration, int64_t now, int64_t window);

/** Frees `p`, wiping every secret it holds. Accepts NULL. */
void ms__creds_free(ms__creds_provider *p);

#endif
