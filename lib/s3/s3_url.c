/*
 * s3_url.c - s3:// and gs:// URLs, and the endpoint, region, addressing style and TLS
 * settings their requests use.
 *
 * Resolution is a chain of small steps, each of which writes its result and the reason
 * for it into the location: region first (the default endpoint needs it), then the
 * endpoint, then the addressing style (which depends on whether the endpoint is AWS's),
 * then the Host header, TLS, the CA bundle and signing. A setting that comes from the
 * environment or a file is checked where it is used, and a bad one is reported with the
 * variable, or the profile and file, it came from.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "s3_url.h"

/* The longest URL ms__s3_object_url() can build: scheme, Host, base path, bucket (path
 * style), two slashes, every key byte as %XX, and the NUL. */
_Static_assert(8 + MS__S3_HOST_MAX + MS__S3_BASE_PATH_MAX + MS__S3_BUCKET_MAX + 2 +
                       3 * MS__S3_KEY_MAX + 1 <=
                   MS__S3_URL_MAX,
               "MS__S3_URL_MAX cannot hold the longest request URL");

/* An endpoint URL taken apart. */
typedef struct {
	bool tls;
	char host[MS__S3_ENDPOINT_HOST_MAX + 1]; /* host[:port], default port dropped */
	char base_path[MS__S3_BASE_PATH_MAX + 1];
	bool host_is_address; /* an IPv4 or IPv6 literal: no bucket can go in front */
	bool loopback;
	bool is_default; /* the AWS or GCS endpoint, not one the user configured */
} endpoint;

/* What every step of a resolution reads. */
typedef struct {
	const ms__s3_resolve_options *opts;
	const ms__aws_config *cfg;
	const ms__aws_profile *profile; /* NULL when there is none */
} context;

const char *ms__s3_addressing_name(ms__s3_addressing addressing)
{
	return addressing == MS__S3_ADDRESSING_VIRTUAL ? "virtual" : "path";
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_unreserved(char c)
{
	return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Formats into a fixed buffer; a long file path in a "why" is cut, which is fine. */
__attribute__((format(printf, 3, 4))) static void format_why(char *out, size_t size,
                                                             const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, size, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------------------------------- */
/* URLs                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF). */
static bool is_utf8(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t extra;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			extra = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			extra = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			extra = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (len - i <= extra)
			return false;
		for (size_t k = 1; k <= extra; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += extra + 1;
	}
	return true;
}

/* Whether the name is four dot-separated decimal numbers, which S3 forbids. */
static bool looks_like_ipv4(const char *s, size_t len)
{
	size_t dots = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.')
			dots++;
		else if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return dots == 3;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
	size_t n = strlen(suffix);

	return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* The reason a bucket name breaks the rules of `store`, or NULL when it is valid. */
static const char *bucket_problem(const char *name, size_t len, ms__s3_store store)
{
	bool gcs = store == MS__S3_STORE_GCS;
	bool dotted = memchr(name, '.', len) != NULL;
	size_t label = 0;

	if (len == 0)
		return "there is no bucket name";
	if (len < 3 || (len > 63 && !(gcs && dotted)) || len > MS__S3_BUCKET_MAX)
		return gcs ? "a bucket name has 3 to 63 characters (222 with dots)"
		           : "a bucket name has 3 to 63 characters";
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			return "bucket names are lower case";
		if (!is_lower_alnum(c) && c != '.' && c != '-' && !(gcs && c == '_'))
			return gcs ? "a bucket name holds only lower-case letters, digits, '.', "
			             "'-' "
			             "and '_'"
			           : "a bucket name holds only lower-case letters, digits, '.' and "
			             "'-'";
		label = c == '.' ? 0 : label + 1;
		if (label > 63)
			return "each dot-separated part of a bucket name has at most 63 characters";
	}
	if (!is_lower_alnum(name[0]) || !is_lower_alnum(name[len - 1]))
		return "a bucket name starts and ends with a letter or a digit";
	for (size_t i = 1; i < len; i++)
		if (name[i] == '.' && name[i - 1] == '.')
			return "a bucket name cannot have two dots in a row";
	if (looks_like_ipv4(name, len))
		return "a bucket name cannot be an IP address";
	return NULL;
}

int ms__s3_url_parse(ms__s3_url *out, const char *url)
{
	char shown[MS__PRINTABLE_MAX];
	const char *rest, *slash, *key, *problem;
	size_t bucket_len, key_len;

	memset(out, 0, sizeof(*out));
	ms__printable(shown, sizeof(shown), url);
	if (strncasecmp(url, "s3://", 5) == 0) {
		out->store = MS__S3_STORE_S3;
	} else if (strncasecmp(url, "gs://", 5) == 0) {
		out->store = MS__S3_STORE_GCS;
	} else {
		return ms__error_set(MS_EINVAL, "%s: not an s3:// or gs:// URL", shown);
	}
	rest = url + 5;
	slash = strchr(rest, '/');
	bucket_len = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
	problem = bucket_problem(rest, bucket_len, out->store);
	if (problem != NULL)
		return ms__error_set(MS_EINVAL, "%s: %s", shown, problem);
	if (out->store == MS__S3_STORE_S3 && ends_with(rest, bucket_len, "--x-s3"))
		return ms__error_set(MS_EUNSUPPORTED,
		                     "%s: S3 Express One Zone directory buckets are not supported",
		                     shown);
	if (out->store == MS__S3_STORE_S3 && ends_with(rest, bucket_len, ".mrap"))
		return ms__error_set(MS_EUNSUPPORTED,
		                     "%s: multi-region access points are not supported", shown);
	key = slash != NULL ? slash + 1 : "";
	key_len = strlen(key);
	if (key_len > MS__S3_KEY_MAX)
		return ms__error_set(MS_EINVAL, "%s: the key has %zu bytes; S3 allows %d", shown,
		                     key_len, MS__S3_KEY_MAX);
	if (!is_utf8((const unsigned char *)key, key_len))
		return ms__error_set(MS_EINVAL, "%s: the key is not valid UTF-8", shown);
	memcpy(out->bucket, rest, bucket_len);
	memcpy(out->key, key, key_len + 1);
	out->prefix = key_len == 0 || key[key_len - 1] == '/';
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Endpoints                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static bool is_path_char(char c)
{
	return is_unreserved(c) || strchr("!$&'()*+,;=:@%/", c) != NULL;
}

static bool is_loopback(const char *host, size_t len)
{
	static const char localhost[] = "localhost";
	size_t n = sizeof(localhost) - 1;

	if (len == n && strncasecmp(host, localhost, n) == 0)
		return true;
	if (len > n && host[len - n - 1] == '.' && strncasecmp(host + len - n, localhost, n) == 0)
		return true;
	if (len == 5 && memcmp(host, "[::1]", 5) == 0)
		return true;
	return looks_like_ipv4(host, len) && strncmp(host, "127.", 4) == 0;
}

/*
 * Takes apart "http[s]://host[:port][/path]". `from` says where the text came from, for
 * messages. The text is shown in messages unless it has a user name or password in it.
 */
static int endpoint_parse(endpoint *out, const char *text, const char *from)
{
	char shown[MS__PRINTABLE_MAX];
	const char *authority, *end, *host_end, *path;
	size_t host_len, path_len;
	unsigned long port = 0;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(text, "https://", 8) == 0) {
		out->tls = true;
		authority = text + 8;
	} else if (strncasecmp(text, "http://", 7) == 0) {
		authority = text + 7;
	} else {
		return ms__error_set(MS_EINVAL,
		                     "endpoint '%s' (from %s) is not an http:// or https:// URL",
		                     ms__printable(shown, sizeof(shown), text), from);
	}
	/* Any '@' is refused, not only one in the authority: a password may hold an
	 * unescaped '/', which would make the rest of it look like a path that the message
	 * below would show. */
	if (strchr(authority, '@') != NULL)
		return ms__error_set(MS_EINVAL,
		                     "the endpoint from %s has a user name or password in it (not "
		                     "shown); give credentials through the AWS variables or files "
		                     "instead",
		                     from);
	end = authority + strcspn(authority, "/?#");
	ms__printable(shown, sizeof(shown), text);
	if (strpbrk(authority, "?#") != NULL)
		return ms__error_set(MS_EINVAL, "endpoint '%s' (from %s) has a query or fragment",
		                     shown, from);

	/* The host: a bracketed IPv6 literal or a name (or IPv4 address). */
	if (authority[0] == '[') {
		const char *close = memchr(authority, ']', (size_t)(end - authority));

		if (close == NULL || close == authority + 1)
			return ms__error_set(MS_EINVAL,
			                     "endpoint '%s' (from %s) has a bad IPv6 address",
			                     shown, from);
		for (const char *c = authority + 1; c < close; c++)
			if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
			      (*c >= 'A' && *c <= 'F') || *c == ':' || *c == '.'))
				return ms__error_set(
				    MS_EINVAL, "endpoint '%s' (from %s) has a bad IPv6 address",
				    shown, from);
		host_end = close + 1;
		out->host_is_address = true;
	} else {
		host_end = authority;
		while (host_end < end && *host_end != ':') {
			if (!is_alnum(*host_end) && *host_end != '-' && *host_end != '.' &&
			    *host_end != '_')
				return ms__error_set(
				    MS_EINVAL,
				    "endpoint '%s' (from %s): the host name has a "
				    "character other than letters, digits, '-', '.', '_'",
				    shown, from);
			host_end++;
		}
		out->host_is_address = looks_like_ipv4(authority, (size_t)(host_end - authority));
	}
	host_len = (size_t)(host_end - authority);
	if (host_len == 0)
		return ms__error_set(MS_EINVAL, "endpoint '%s' (from %s) has no host", shown, from);
	out->loopback = is_loopback(authority, host_len);
	if (host_end < end) {
		const char *digit = host_end + 1;

		if (*host_end != ':' || digit == end || end - digit > 5)
			return ms__error_set(MS_EINVAL, "endpoint '%s' (from %s) has a bad port",
			                     shown, from);
		for (; digit < end; digit++) {
			if (*digit < '0' || *digit > '9')
				return ms__error_set(MS_EINVAL,
				                     "endpoint '%s' (from %s) has a bad port",
				                     shown, from);
			port = port * 10 + (unsigned long)(*digit - '0');
		}
		if (port == 0 || port > 65535)
			return ms__error_set(MS_EINVAL, "endpoint '%s' (from %s) has a bad port",
			                     shown, from);
	}
	/* A default port is dropped so that the Host header, and so the signature, is the
	 * same whether or not the user wrote it. */
	if ((out->tls && port == 443) || (!out->tls && port == 80))
		port = 0;
	if (host_len + (port != 0 ? 6 : 0) > MS__S3_ENDPOINT_HOST_MAX)
		return ms__error_set(MS_EINVAL, "the endpoint host from %s is longer than %d bytes",
		                     from, MS__S3_ENDPOINT_HOST_MAX);
	if (port != 0)
		snprintf(out->host, sizeof(out->host), "%.*s:%lu", (int)host_len, authority, port);
	else
		snprintf(out->host, sizeof(out->host), "%.*s", (int)host_len, authority);

	path = end;
	path_len = strlen(path);
	while (path_len > 0 && path[path_len - 1] == '/')
		path_len--;
	if (path_len > MS__S3_BASE_PATH_MAX)
		return ms__error_set(MS_EINVAL, "the endpoint path from %s is longer than %d bytes",
		                     from, MS__S3_BASE_PATH_MAX);
	for (size_t i = 0; i < path_len; i++)
		if (!is_path_char(path[i]))
			return ms__error_set(MS_EINVAL,
			                     "endpoint '%s' (from %s) has a character that a URL "
			                     "path cannot hold",
			                     shown, from);
	memcpy(out->base_path, path, path_len);
	out->base_path[path_len] = '\0';
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Resolution                                                                                */
/* ---------------------------------------------------------------------------------------- */

static const char *env(const context *ctx, const char *name)
{
	return ms__getenv(ctx->opts->getenv, ctx->opts->getenv_payload, name);
}

static const char *profile_value(const context *ctx, ms__aws_key key)
{
	return ctx->profile != NULL ? ctx->profile->values[key] : NULL;
}

/* "profile 'dev' in /root/.aws/config" for the file that `key` came from. */
static void profile_why(char *out, size_t size, const context *ctx, ms__aws_key key)
{
	char name[MS__PRINTABLE_MAX];
	const char *path = ms__aws_config_path(ctx->cfg, ctx->profile->origins[key]);

	ms__printable(name, sizeof(name), ctx->profile->name);
	if (path[0] != '\0')
		format_why(out, size, "profile '%s' in %s", name, path);
	else
		format_why(out, size, "profile '%s'", name);
}

static bool is_true(const char *value)
{
	return value != NULL && strcasecmp(value, "true") == 0;
}

/* Parses a Run:ai-style boolean; returns 0, or -1 for anything but 0/1/false/true. */
static int parse_bool(bool *out, const char *value)
{
	if (strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0)
		*out = true;
	else if (strcmp(value, "0") == 0 || strcasecmp(value, "false") == 0)
		*out = false;
	else
		return -1;
	return 0;
}

static int resolve_region(ms__s3_location *out, const context *ctx)
{
	const char *region = NULL;
	char shown[MS__PRINTABLE_MAX];
	size_t len;

	if (ctx->opts->region != NULL && ctx->opts->region[0] != '\0') {
		region = ctx->opts->region;
		format_why(out->region_why, sizeof(out->region_why), "option");
	} else if ((region = env(ctx, "AWS_REGION")) != NULL) {
		format_why(out->region_why, sizeof(out->region_why), "AWS_REGION");
	} else if ((region = env(ctx, "AWS_DEFAULT_REGION")) != NULL) {
		format_why(out->region_why, sizeof(out->region_why), "AWS_DEFAULT_REGION");
	} else if ((region = profile_value(ctx, MS__AWS_REGION)) != NULL) {
		profile_why(out->region_why, sizeof(out->region_why), ctx, MS__AWS_REGION);
	} else if (out->store == MS__S3_STORE_GCS) {
		/* GCS's XML API takes any region in a signature; "auto" is its documented one. */
		region = "auto";
		format_why(out->region_why, sizeof(out->region_why), "default for gs://");
	} else {
		region = "us-east-1";
		format_why(out->region_why, sizeof(out->region_why), "default");
	}
	/* The region goes into the signature's scope and perhaps a host name: the same
	 * characters as the SigV4 signer accepts. */
	len = strlen(region);
	if (len == 0 || len > MS__S3_REGION_MAX ||
	    strspn(region, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
	        len)
		return ms__error_set(
		    MS_EINVAL,
		    "region '%s' (from %s) is not a region name: up to %d letters, "
		    "digits, '-' and '_'",
		    ms__printable(shown, sizeof(shown), region), out->region_why,
		    MS__S3_REGION_MAX);
	memcpy(out->region, region, len + 1);
	return 0;
}

/* The endpoint a user configured, or NULL; sets endpoint_why. */
static const char *configured_endpoint(ms__s3_location *out, const context *ctx, bool *ignored)
{
	const char *value, *services_name;
	const ms__aws_profile *services;

	*ignored = false;
	if (ctx->opts->endpoint_url != NULL && ctx->opts->endpoint_url[0] != '\0') {
		format_why(out->endpoint_why, sizeof(out->endpoint_why), "option");
		return ctx->opts->endpoint_url;
	}
	/* The AWS SDKs' switch for ignoring every configured endpoint, to reach AWS itself. */
	if (is_true(env(ctx, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) ||
	    is_true(profile_value(ctx, MS__AWS_IGNORE_CONFIGURED_ENDPOINT_URLS))) {
		*ignored = true;
		return NULL;
	}
	if ((value = env(ctx, "AWS_ENDPOINT_URL_S3")) != NULL) {
		format_why(out->endpoint_why, sizeof(out->endpoint_why), "AWS_ENDPOINT_URL_S3");
		return value;
	}
	if ((value = env(ctx, "AWS_ENDPOINT_URL")) != NULL) {
		format_why(out->endpoint_why, sizeof(out->endpoint_why), "AWS_ENDPOINT_URL");
		return value;
	}
	services_name = profile_value(ctx, MS__AWS_SERVICES);
	services = services_name != NULL && ctx->cfg != NULL
	               ? ms__aws_config_find_services(ctx->cfg, services_name)
	               : NULL;
	if (services != NULL && (value = services->values[MS__AWS_S3_ENDPOINT_URL]) != NULL) {
		char name[MS__PRINTABLE_MAX];
		char profile_name[MS__PRINTABLE_MAX];

		format_why(
		    out->endpoint_why, sizeof(out->endpoint_why),
		    "services '%s' in %s, named by profile '%s'",
		    ms__printable(name, sizeof(name), services->name),
		    ms__aws_config_path(ctx->cfg, services->origins[MS__AWS_S3_ENDPOINT_URL]),
		    ms__printable(profile_name, sizeof(profile_name), ctx->profile->name));
		return value;
	}
	if ((value = profile_value(ctx, MS__AWS_S3_ENDPOINT_URL)) != NULL) {
		profile_why(out->endpoint_why, sizeof(out->endpoint_why), ctx,
		            MS__AWS_S3_ENDPOINT_URL);
		return value;
	}
	if ((value = profile_value(ctx, MS__AWS_ENDPOINT_URL)) != NULL) {
		profile_why(out->endpoint_why, sizeof(out->endpoint_why), ctx,
		            MS__AWS_ENDPOINT_URL);
		return value;
	}
	return NULL;
}

static int resolve_endpoint(endpoint *ep, ms__s3_location *out, const context *ctx)
{
	bool ignored;
	const char *text = configured_endpoint(out, ctx, &ignored);
	const char *domain = "amazonaws.com";
	int rc;

	if (text != NULL) {
		rc = endpoint_parse(ep, text, out->endpoint_why);
		if (rc != 0)
			return rc;
	} else {
		memset(ep, 0, sizeof(*ep));
		ep->tls = true;
		ep->is_default = true;
		if (out->store == MS__S3_STORE_GCS) {
			snprintf(ep->host, sizeof(ep->host), "storage.googleapis.com");
			format_why(out->endpoint_why, sizeof(out->endpoint_why),
			           "default for gs://%s",
			           ignored ? " (configured endpoints ignored by "
			                     "ignore_configured_endpoint_urls)"
			                   : "");
		} else {
			/* The region becomes part of a DNS name here, so it must be one label. */
			for (const char *c = out->region; *c != '\0'; c++)
				if (!is_lower_alnum(*c) && *c != '-')
					return ms__error_set(
					    MS_EINVAL,
					    "region '%s' (from %s) cannot be part of an "
					    "AWS host name: lower-case letters, digits "
					    "and '-' only",
					    out->region, out->region_why);
			if (strncmp(out->region, "cn-", 3) == 0)
				domain = "amazonaws.com.cn";
			snprintf(ep->host, sizeof(ep->host), "s3.%s.%s", out->region, domain);
			format_why(out->endpoint_why, sizeof(out->endpoint_why),
			           "default for region %s%s", out->region,
			           ignored ? " (configured endpoints ignored by "
			                     "ignore_configured_endpoint_urls)"
			                   : "");
		}
	}
	snprintf(out->base_path, sizeof(out->base_path), "%s", ep->base_path);
	snprintf(out->endpoint, sizeof(out->endpoint), "%s://%s%s", ep->tls ? "https" : "http",
	         ep->host, ep->base_path);
	out->tls = ep->tls;
	if (ep->tls)
		format_why(out->tls_why, sizeof(out->tls_why), "https");
	else if (ep->loopback)
		format_why(out->tls_why, sizeof(out->tls_why),
		           "plain http to a loopback address, as the endpoint from %s says",
		           out->endpoint_why);
	else
		format_why(out->tls_why, sizeof(out->tls_why),
		           "plain http, unencrypted, as the endpoint from %s says",
		           out->endpoint_why);
	return 0;
}

/* Whether the bucket name can be one DNS label in front of the endpoint's host. */
static bool bucket_is_dns_label(const char *bucket)
{
	return strchr(bucket, '.') == NULL && strchr(bucket, '_') == NULL;
}

static int resolve_addressing(ms__s3_location *out, const endpoint *ep, const context *ctx)
{
	const char *value;
	char asked[MS__S3_WHY_MAX];
	char shown[MS__PRINTABLE_MAX];
	bool virtual_style;

	if (ctx->opts->addressing != MS__S3_ADDRESSING_ASK_AUTO) {
		virtual_style = ctx->opts->addressing == MS__S3_ADDRESSING_ASK_VIRTUAL;
		format_why(asked, sizeof(asked), "option");
	} else if ((value = env(ctx, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING")) != NULL) {
		if (parse_bool(&virtual_style, value) != 0)
			return ms__error_set(
			    MS_EINVAL,
			    "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=%s: expected 0, "
			    "1, false or true",
			    ms__printable(shown, sizeof(shown), value));
		format_why(asked, sizeof(asked), "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=%s",
		           value);
	} else if ((value = profile_value(ctx, MS__AWS_S3_ADDRESSING_STYLE)) != NULL &&
	           strcasecmp(value, "auto") != 0) {
		profile_why(asked, sizeof(asked), ctx, MS__AWS_S3_ADDRESSING_STYLE);
		if (strcasecmp(value, "path") == 0)
			virtual_style = false;
		else if (strcasecmp(value, "virtual") == 0)
			virtual_style = true;
		else
			return ms__error_set(
			    MS_EINVAL, "%s: s3 addressing_style '%s' is not path, virtual or auto",
			    asked, ms__printable(shown, sizeof(shown), value));
	} else if (!ep->is_default) {
		/* MinIO, Ceph and most other S3 servers answer path style out of the box. */
		virtual_style = false;
		format_why(asked, sizeof(asked), "default for a custom endpoint");
	} else if (out->store == MS__S3_STORE_GCS) {
		virtual_style = false;
		format_why(asked, sizeof(asked), "default for gs://");
	} else {
		virtual_style = true;
		format_why(asked, sizeof(asked), "default for AWS");
	}

	out->addressing = virtual_style ? MS__S3_ADDRESSING_VIRTUAL : MS__S3_ADDRESSING_PATH;
	if (!virtual_style) {
		format_why(out->addressing_why, sizeof(out->addressing_why), "%s", asked);
		return 0;
	}
	/* Virtual-hosted style puts the bucket in the host name, which is not always
	 * possible; then path style works everywhere, so use it and say why. */
	out->addressing = MS__S3_ADDRESSING_PATH;
	if (ep->host_is_address)
		format_why(out->addressing_why, sizeof(out->addressing_why),
		           "the endpoint is an IP address, which cannot take a bucket in front "
		           "(%s asked for virtual)",
		           asked);
	else if (strchr(out->bucket, '_') != NULL)
		format_why(out->addressing_why, sizeof(out->addressing_why),
		           "the bucket name has '_', which a host name cannot hold (%s asked for "
		           "virtual)",
		           asked);
	else if (!bucket_is_dns_label(out->bucket) && ep->tls)
		format_why(out->addressing_why, sizeof(out->addressing_why),
		           "the bucket name has dots, which TLS wildcard certificates do not match "
		           "(%s asked for virtual)",
		           asked);
	else if (strlen(out->bucket) + 1 + strlen(ep->host) > MS__S3_HOST_MAX)
		format_why(out->addressing_why, sizeof(out->addressing_why),
		           "bucket and host together are longer than a Host header may be here "
		           "(%s asked for virtual)",
		           asked);
	else {
		out->addressing = MS__S3_ADDRESSING_VIRTUAL;
		format_why(out->addressing_why, sizeof(out->addressing_why), "%s", asked);
	}
	return 0;
}

static int resolve_rest(ms__s3_location *out, const context *ctx)
{
	const char *bundle = env(ctx, "AWS_CA_BUNDLE");

	if (bundle != NULL) {
		format_why(out->ca_bundle_why, sizeof(out->ca_bundle_why), "AWS_CA_BUNDLE");
	} else if ((bundle = profile_value(ctx, MS__AWS_CA_BUNDLE)) != NULL) {
		profile_why(out->ca_bundle_why, sizeof(out->ca_bundle_why), ctx, MS__AWS_CA_BUNDLE);
	} else {
		format_why(out->ca_bundle_why, sizeof(out->ca_bundle_why),
		           "default: the system's trust store");
	}
	if (bundle != NULL) {
		if (strlen(bundle) >= sizeof(out->ca_bundle))
			return ms__error_set(MS_EINVAL,
			                     "the CA bundle path from %s is longer than %zu bytes",
			                     out->ca_bundle_why, sizeof(out->ca_bundle) - 1);
		snprintf(out->ca_bundle, sizeof(out->ca_bundle), "%s", bundle);
	}
	out->anonymous = ctx->opts->anonymous;
	format_why(out->anonymous_why, sizeof(out->anonymous_why), "%s",
	           out->anonymous ? "option: requests are not signed"
	                          : "default: requests are signed");
	return 0;
}

int ms__s3_resolve(ms__s3_location *out, const char *url, const ms__s3_resolve_options *opts)
{
	static const ms__s3_resolve_options defaults = {0};
	ms__s3_url parsed;
	endpoint ep;
	context ctx;
	int rc;

	memset(out, 0, sizeof(*out));
	if (opts == NULL)
		opts = &defaults;
	ctx.opts = opts;
	ctx.cfg = opts->config;
	ctx.profile = opts->config != NULL ? opts->config->profile : NULL;

	rc = ms__s3_url_parse(&parsed, url);
	if (rc != 0)
		goto done;
	out->store = parsed.store;
	memcpy(out->bucket, parsed.bucket, sizeof(out->bucket));
	memcpy(out->key, parsed.key, sizeof(out->key));
	out->prefix = parsed.prefix;

	rc = resolve_region(out, &ctx);
	if (rc == 0)
		rc = resolve_endpoint(&ep, out, &ctx);
	if (rc == 0)
		rc = resolve_addressing(out, &ep, &ctx);
	if (rc == 0)
		rc = resolve_rest(out, &ctx);
	if (rc != 0)
		goto done;
	if (out->addressing == MS__S3_ADDRESSING_VIRTUAL)
		snprintf(out->host, sizeof(out->host), "%s.%s", out->bucket, ep.host);
	else
		snprintf(out->host, sizeof(out->host), "%s", ep.host);
done:
	if (rc != 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Request URLs                                                                              */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	char *out;
	size_t size;
	size_t used;
	bool overflow;
} writer;

static void put(writer *w, const char *s, size_t len)
{
	if (w->overflow || len >= w->size - w->used) {
		w->overflow = true;
		return;
	}
	memcpy(w->out + w->used, s, len);
	w->used += len;
	w->out[w->used] = '\0';
}

static void put_string(writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* S3's encoding of an object key in a path: '/' stays, every byte that is not unreserved
 * becomes %XX, so that the path is the same string we send and sign. */
static void put_encoded_key(writer *w, const char *key)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const char *c = key; *c != '\0'; c++) {
		unsigned char byte = (unsigned char)*c;
		char escape[3] = {'%', hex[byte >> 4], hex[byte & 15]};

		if (is_unreserved(*c) || *c == '/')
			put(w, c, 1);
		else
			put(w, escape, 3);
	}
}

static int write_path(writer *w, const ms__s3_location *loc, const char *key)
{
	if (key == NULL)
		key = loc->key;
	if (strlen(key) > MS__S3_KEY_MAX)
		return ms__error_set(MS_EINVAL, "s3://%s: a key of %zu bytes; S3 allows %d",
		                     loc->bucket, strlen(key), MS__S3_KEY_MAX);
	put_string(w, loc->base_path);
	if (loc->addressing == MS__S3_ADDRESSING_PATH) {
		put(w, "/", 1);
		put_string(w, loc->bucket);
	}
	put(w, "/", 1);
	put_encoded_key(w, key);
	if (w->overflow)
		return ms__error_set(MS_EINVAL,
		                     "s3://%s: the request URL does not fit in %zu bytes",
		                     loc->bucket, w->size);
	return 0;
}

int ms__s3_object_path(char *out, size_t size, const ms__s3_location *loc, const char *key)
{
	writer w = {out, size, 0, size == 0};

	if (size > 0)
		out[0] = '\0';
	return write_path(&w, loc, key);
}

int ms__s3_object_url(char *out, size_t size, const ms__s3_location *loc, const char *key)
{
	writer w = {out, size, 0, size == 0};

	if (size > 0)
		out[0] = '\0';
	put_string(&w, loc->tls ? "https://" : "http://");
	put_string(&w, loc->host);
	return write_path(&w, loc, key);
}
