/*
 * s3_url.h - where an S3 request goes: parsing s3:// and gs:// URLs and resolving the
 * endpoint, region, addressing style and TLS settings for them.
 *
 * Everything here is pure: the environment comes through an ms__getenv_fn and the AWS
 * files through an already loaded ms__aws_config, so every precedence rule is a unit test
 * and no request is made. Each decision is returned with the reason it was taken ("why"
 * strings such as "AWS_ENDPOINT_URL_S3" or "profile 'dev' in /root/.aws/config"), which
 * `modelstream doctor` and --verbose print, because "which endpoint did it use, and why?"
 * is the first question of every S3 support request.
 *
 * Precedence, highest first:
 *  - endpoint: the option; AWS_ENDPOINT_URL_S3; AWS_ENDPOINT_URL; the s3 endpoint_url of
 *    the [services x] section that the profile names; the profile's "s3 = endpoint_url";
 *    the profile's endpoint_url; then https://s3.<region>.amazonaws.com (amazonaws.com.cn
 *    for cn-* regions), or https://storage.googleapis.com for gs://. As in the AWS SDKs,
 *    AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true or the profile's
 *    ignore_configured_endpoint_urls=true skips every variable and file setting.
 *  - region: the option; AWS_REGION; AWS_DEFAULT_REGION; the profile's region; then
 *    "us-east-1" ("auto" for gs://, which is what GCS's S3 interface expects).
 *  - addressing style: the option (a CLI flag); RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING
 *    (0/1/false/true, as Run:ai Model Streamer users already set it); the profile's
 *    "s3 = addressing_style"; then virtual-hosted for AWS and path style for custom
 *    endpoints and gs://. Whatever was asked, a bucket whose name is not one DNS label
 *    (dots, underscores) over https, or an endpoint that is an IP address, gets path style:
 *    TLS wildcard certificates match one label only, and an address has no subdomains.
 *  - CA bundle: AWS_CA_BUNDLE, then the profile's ca_bundle.
 * Plain http:// is never chosen by default; it is used only when an endpoint given by the
 * option, a variable or a profile says so, and tls_why says which (and whether the host is
 * loopback, the one case where it is harmless).
 *
 * Thread rules: pure functions; any thread.
 */
#ifndef MS_S3_URL_H
#define MS_S3_URL_H

#include <stdbool.h>
#include <stddef.h>

#include "s3_config.h"

/** S3 object keys are at most 1024 bytes of UTF-8. */
#define MS__S3_KEY_MAX 1024
/** S3 bucket names are 3 to 63 bytes; GCS allows 222 when the name has dots. */
#define MS__S3_BUCKET_MAX 222
/** An endpoint's host[:port]; with a bucket in front it must still fit a Host header. */
#define MS__S3_ENDPOINT_HOST_MAX 255
/** The Host header: the s3_sigv4 module's cap. */
#define MS__S3_HOST_MAX 300
/** The path an endpoint URL may carry ("http://proxy/s3" gives "/s3"). */
#define MS__S3_BASE_PATH_MAX 256
#define MS__S3_REGION_MAX    64
/** Room for any URL ms__s3_object_url() builds, NUL included. */
#define MS__S3_URL_MAX 4096
/** Room for a "why" string, NUL included; a long file path is cut. */
#define MS__S3_WHY_MAX 384

/** The storage a URL names. */
typedef enum {
	MS__S3_STORE_S3 = 0, /* s3:// */
	MS__S3_STORE_GCS,    /* gs://, through GCS's S3-compatible XML API */
} ms__s3_store;

typedef enum {
	MS__S3_ADDRESSING_PATH = 0, /* https://host/bucket/key */
	MS__S3_ADDRESSING_VIRTUAL,  /* https://bucket.host/key */
} ms__s3_addressing;

/** An addressing style asked for by the caller (a CLI flag). */
typedef enum {
	MS__S3_ADDRESSING_ASK_AUTO = 0, /* follow the environment, the profile, the default */
	MS__S3_ADDRESSING_ASK_PATH,
	MS__S3_ADDRESSING_ASK_VIRTUAL,
} ms__s3_addressing_request;

/** A parsed s3:// or gs:// URL. */
typedef struct {
	ms__s3_store store;
	char bucket[MS__S3_BUCKET_MAX + 1];
	char key[MS__S3_KEY_MAX + 1]; /* "" for the whole bucket */
	/** The URL names a directory of objects: its key is empty or ends with '/'. */
	bool prefix;
} ms__s3_url;

/**
 * Parses "s3://bucket/key" or "gs://bucket/key" (scheme in any case). The key is taken
 * as it is, with no percent-decoding, as the AWS CLI does; "s3://bucket" and
 * "s3://bucket/dir/" are prefixes.
 *
 * @return 0; MS_EINVAL with a message naming the URL and the rule it breaks (bucket
 *         name, key length, UTF-8); MS_EUNSUPPORTED for S3 directory buckets ("--x-s3")
 *         and multi-region access points (".mrap").
 */
int ms__s3_url_parse(ms__s3_url *out, const char *url);

/** Options for ms__s3_resolve(). Zero-initialise, then set what is needed. */
typedef struct {
	ms__getenv_fn getenv; /* NULL: the process environment */
	void *getenv_payload;
	/** The loaded AWS files; NULL to use none. Its selected profile is used. */
	const ms__aws_config *config;
	/** Overrides of everything else (CLI flags); NULL / AUTO for none. */
	const char *endpoint_url;
	const char *region;
	ms__s3_addressing_request addressing;
	/** Send unsigned requests (public buckets), as `aws --no-sign-request`. */
	bool anonymous;
} ms__s3_resolve_options;

/** Where requests for one URL go, and why. Holds no pointers: it may be copied. */
typedef struct {
	ms__s3_store store;
	bool tls;                       /* https */
	char endpoint[MS__S3_URL_MAX];  /* the endpoint as resolved, "https://host[:port]/base" */
	char host[MS__S3_HOST_MAX + 1]; /* the Host header: bucket.host for virtual style */
	char base_path[MS__S3_BASE_PATH_MAX + 1]; /* "" or the endpoint's path, "/s3" */
	char bucket[MS__S3_BUCKET_MAX + 1];
	char key[MS__S3_KEY_MAX + 1];
	bool prefix;
	char region[MS__S3_REGION_MAX + 1];
	ms__s3_addressing addressing;
	bool anonymous;
	char ca_bundle[MS__S3_URL_MAX]; /* "" for the system's trust store */
	/* Why each was chosen: "option", "AWS_ENDPOINT_URL_S3", "profile 'dev' in
	 * /root/.aws/config", "default", ... */
	char endpoint_why[MS__S3_WHY_MAX];
	char region_why[MS__S3_WHY_MAX];
	char addressing_why[MS__S3_WHY_MAX];
	char tls_why[MS__S3_WHY_MAX];
	char ca_bundle_why[MS__S3_WHY_MAX];
	char anonymous_why[MS__S3_WHY_MAX];
} ms__s3_location;

/**
 * Parses `url` and resolves where its requests go.
 *
 * @param out   filled on success; zeroed on failure.
 * @param url   "s3://bucket/key" or "gs://bucket/key".
 * @param opts  may be NULL for the process environment and no AWS files.
 * @return 0; MS_EINVAL for a bad URL or a bad setting (the message names the variable or
 *         the profile and file it came from, never a secret); MS_EUNSUPPORTED as for
 *         ms__s3_url_parse().
 */
int ms__s3_resolve(ms__s3_location *out, const char *url, const ms__s3_resolve_options *opts);

/**
 * Writes the path of the request for object `key` (NULL: loc->key) as sent on the wire
 * and signed: base path, then "/bucket" in path style, then "/" and the key with every
 * byte other than A-Z a-z 0-9 - . _ ~ and '/' written as %XX (upper-case hex).
 *
 * @return 0; MS_EINVAL if `key` is longer than MS__S3_KEY_MAX or `out` is too small (a
 *         buffer of MS__S3_URL_MAX bytes is always large enough).
 */
int ms__s3_object_path(char *out, size_t size, const ms__s3_location *loc, const char *key);

/**
 * Writes the full URL of object `key` (NULL: loc->key): "https://" or "http://", the
 * Host, then what ms__s3_object_path() writes. Errors as ms__s3_object_path().
 */
int ms__s3_object_url(char *out, size_t size, const ms__s3_location *loc, const char *key);

/** "path" or "virtual". */
const char *ms__s3_addressing_name(ms__s3_addressing addressing);

#endif
