/*
 * s3_creds.c - the AWS credential chain: finding a source, walking it, refreshing.
 *
 * Design. ms__creds_provider_new() turns the environment and the shared files into a small
 * tree of sources. A leaf is static keys, a web identity token file, a container endpoint or
 * IMDS; an assume-role node holds the source whose credentials sign its AssumeRole call, so
 * profiles chained by source_profile become a path of such nodes. The tree is fixed once
 * built and only read afterwards, so fetching needs no lock. A fetch walks the tree from the
 * root: an assume-role node first fetches its source (every time: a chain is refreshed as a
 * whole, which happens once per refresh window), then calls STS. The requests themselves,
 * and the parsing of their answers, are s3_creds_fetch.c's.
 *
 * The provider's mutable state - the current credentials and the refresh bookkeeping - sits
 * behind one mutex. A thread that finds the credentials due for refresh marks a refresh as
 * running and fetches with the mutex released; meanwhile other threads keep signing with the
 * old credentials if they are still valid, and wait on a condition variable if they are not
 * (or if they were told that the old ones were rejected). Forced refreshes are limited to one
 * a second, and a failed refresh is not tried again within a second, so that many workers
 * seeing ExpiredToken at once cause one fetch, not one each.
 *
 * Messages name the source by labels built from settings (role ARNs, paths, URLs), never
 * from tokens or secrets, and every secret the sources hold is wiped when they are freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "alloc.h"
#include "error.h"
#include "s3_config.h"
#include "s3_creds.h"
#include "s3_creds_fetch.h"
#include "s3_sigv4.h"

#define CONTAINER_HOST     "http://169.254.170.2"
#define IMDS_ENDPOINT      "http://169.254.169.254"
#define IMDS_ENDPOINT_IPV6 "http://[fd00:ec2::254]"
#define IMDS_TIMEOUT_MS    1000
#define IMDS_ATTEMPTS      2
#define PROFILE_CHAIN_MAX  16
#define FORCE_INTERVAL_MS  1000
#define FAILURE_RETRY_MS   1000
#define REFRESH_WINDOW_MAX (7 * 24 * 3600)
#define CONTEXT_MAX        MS__ERROR_MAX

typedef enum {
	SOURCE_STATIC,
	SOURCE_WEB_IDENTITY,
	SOURCE_ASSUME_ROLE,
	SOURCE_CONTAINER,
	SOURCE_IMDS,
} source_kind;

/* One node of the source tree; immutable once the provider is built. */
typedef struct source source;
struct source {
	source_kind kind;
	char *label;           /* names the source in messages; never a secret */
	ms__creds static_keys; /* SOURCE_STATIC */
	char *role_arn;        /* SOURCE_WEB_IDENTITY, SOURCE_ASSUME_ROLE */
	char *session_name;    /* NULL: "modelstream-<unix time>" */
	char *external_id;     /* SOURCE_ASSUME_ROLE; NULL for none */
	char *token_file;      /* SOURCE_WEB_IDENTITY; SOURCE_CONTAINER's, NULL for none */
	source *from;          /* SOURCE_ASSUME_ROLE: whose keys sign AssumeRole */
	char *url;             /* SOURCE_CONTAINER: the full URL; SOURCE_IMDS: the endpoint */
	char *auth_token;      /* SOURCE_CONTAINER: AWS_CONTAINER_AUTHORIZATION_TOKEN (secret) */
	long timeout_ms;       /* SOURCE_IMDS */
	unsigned attempts;     /* SOURCE_IMDS */
};

struct ms__creds_provider {
	ms__creds_kind kind;
	source *root;
	char *context;     /* "<what>: <root label>", the prefix of refresh errors */
	char *description; /* for ms__creds_describe(), without the IMDS role */
	char *ca_bundle;   /* NULL for the system's */
	int64_t refresh_window;
	/* STS, resolved when a source needs it. */
	char *sts_url;
	char sts_host[MS__SIGV4_HOST_MAX + 1];
	char *sts_path;
	char sts_region[MS__SIGV4_REGION_MAX + 1];
	/* A counter for tests: relaxed, since it orders nothing. */
	atomic_uint fetch_count;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t refreshed;
	ms__creds current;
	bool refreshing;
	bool last_failed;       /* the last refresh failed; its error is saved below */
	unsigned generation;    /* counts finished refreshes, for waiters */
	int64_t last_start_ms;  /* monotonic time the last refresh began */
	int64_t last_finish_ms; /* monotonic time the last refresh ended */
	int saved_code;
	char saved_message[MS__ERROR_MAX];
	char imds_role[MS__CREDS_IMDS_ROLE_MAX + 1];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		ms__free(s);
	}
}

static char *format_new(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A formatted string from ms__malloc(), or NULL when memory runs out. */
static char *format_new(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (s = ms__malloc((size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* Raises the current error again with "<what>: " in front, for messages from modules that
 * do not know which URL is being opened. */
static int prefix_error(int rc, const char *what)
{
	char message[MS__ERROR_MAX];

	snprintf(message, sizeof(message), "%s", ms_error_last()->message);
	return ms__error_set(rc, "%s: %s", what, message);
}

static bool is_true(const char *value)
{
	return value != NULL && strcasecmp(value, "true") == 0;
}

/* "AKIA..." from an access key id: enough to tell keys apart, not enough to use one. */
static void key_id_prefix(char out[16], const char *key_id)
{
	char first[5], safe[MS__PRINTABLE_MAX];

	snprintf(first, sizeof(first), "%s", key_id);
	ms__printable(safe, sizeof(safe), first);
	snprintf(out, 16, "%.8s...", safe);
}

/* ---------------------------------------------------------------------------------------- */
/* Credentials                                                                              */
/* ---------------------------------------------------------------------------------------- */

void ms__creds_clear(ms__creds *c)
{
	if (c != NULL)
		explicit_bzero(c, sizeof(*c));
}

int ms__creds_set(ms__creds *out, const char *key_id, const char *secret, const char *token,
                  int64_t expiration, int code, const char *context)
{
	size_t key_len, secret_len, token_len = token != NULL ? strlen(token) : 0;

	ms__creds_clear(out);
	key_len = key_id != NULL ? strnlen(key_id, MS__SIGV4_ACCESS_KEY_ID_MAX + 1) : 0;
	secret_len = secret != NULL ? strnlen(secret, MS__SIGV4_SECRET_MAX + 1) : 0;
	if (key_len == 0 || key_len > MS__SIGV4_ACCESS_KEY_ID_MAX)
		return ms__error_set(code, "%s: the access key id is empty or longer than %d bytes",
		                     context, MS__SIGV4_ACCESS_KEY_ID_MAX);
	if (secret_len == 0 || secret_len > MS__SIGV4_SECRET_MAX)
		return ms__error_set(code,
		                     "%s: the secret access key is empty or longer than %d bytes",
		                     context, MS__SIGV4_SECRET_MAX);
	if (token_len > MS__SIGV4_SESSION_TOKEN_MAX)
		return ms__error_set(code, "%s: the session token is longer than %d bytes", context,
		                     MS__SIGV4_SESSION_TOKEN_MAX);
	memcpy(out->access_key_id, key_id, key_len);
	out->access_key_id[key_len] = '\0';
	memcpy(out->secret_access_key, secret, secret_len);
	out->secret_access_key[secret_len] = '\0';
	if (token_len > 0)
		memcpy(out->session_token, token, token_len);
	out->session_token[token_len] = '\0';
	out->expiration = expiration;
	return 0;
}

bool ms__creds_refresh_due(int64_t expiration, int64_t now, int64_t window)
{
	if (expiration == 0)
		return false;
	/* expiration - now < window, without overflow for any inputs. */
	if (now >= expiration)
		return true;
	return (uint64_t)expiration - (uint64_t)now < (uint64_t)(window < 0 ? 0 : window);
}

/* ---------------------------------------------------------------------------------------- */
/* URLs                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* The parts of an http(s) URL that we check or sign; strings from curl_url_get(). */
typedef struct {
	char *scheme;
	char *host; /* IPv6 literals in brackets */
	char *port; /* NULL when the URL names none */
	char *path;
	char *query;
	bool has_userinfo;
} url_parts;

static void url_parts_free(url_parts *u)
{
	curl_free(u->scheme);
	curl_free(u->host);
	curl_free(u->port);
	curl_free(u->path);
	curl_free(u->query);
	memset(u, 0, sizeof(*u));
}

/* Splits `url`; returns 0, or MS_EINVAL naming `setting` (never the URL, which might hold a
 * password) or MS_ENOMEM. Only http and https are accepted. */
static int url_split(url_parts *u, const char *url, const char *setting, const char *what)
{
	CURLU *h = curl_url();
	char *user = NULL, *password = NULL;
	CURLUcode uc;
	int rc = 0;

	memset(u, 0, sizeof(*u));
	if (h == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", what);
	uc = curl_url_set(h, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		rc = ms__error_set(MS_EINVAL, "%s: %s is not a URL: %s", what, setting,
		                   curl_url_strerror(uc));
		goto done;
	}
	curl_url_get(h, CURLUPART_USER, &user, 0);
	curl_url_get(h, CURLUPART_PASSWORD, &password, 0);
	u->has_userinfo = user != NULL || password != NULL;
	if (curl_url_get(h, CURLUPART_SCHEME, &u->scheme, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_HOST, &u->host, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_PATH, &u->path, 0) != CURLUE_OK) {
		rc = ms__error_set(MS_EINVAL, "%s: %s is not a URL with a host", what, setting);
		goto done;
	}
	curl_url_get(h, CURLUPART_PORT, &u->port, 0);
	curl_url_get(h, CURLUPART_QUERY, &u->query, 0);
	if (strcmp(u->scheme, "http") != 0 && strcmp(u->scheme, "https") != 0) {
		rc = ms__error_set(MS_EINVAL, "%s: %s must be an http:// or https:// URL", what,
		                   setting);
		goto done;
	}
	if (u->has_userinfo) {
		rc = ms__error_set(MS_EINVAL, "%s: %s must not hold a user name or password", what,
		                   setting);
		goto done;
	}
done:
	if (password != NULL) {
		explicit_bzero(password, strlen(password));
		curl_free(password);
	}
	curl_free(user);
	curl_url_cleanup(h);
	if (rc < 0)
		url_parts_free(u);
	return rc;
}

static bool host_allowed_for_http(const char *host)
{
	struct in_addr v4;
	struct in6_addr v6, allowed;
	char bare[64];
	size_t len = strlen(host);

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &v4) == 1) {
		uint32_t a = ntohl(v4.s_addr);

		return (a >> 24) == 127 || a == 0xa9feaa02u /* 169.254.170.2 */ ||
		       a == 0xa9feaa17u /* 169.254.170.23 */;
	}
	if (len < 3 || host[0] != '[' || host[len - 1] != ']' || len - 2 >= sizeof(bare))
		return false;
	memcpy(bare, host + 1, len - 2);
	bare[len - 2] = '\0';
	if (inet_pton(AF_INET6, bare, &v6) != 1)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&v6))
		return true;
	inet_pton(AF_INET6, "fd00:ec2::23", &allowed);
	return memcmp(&v6, &allowed, sizeof(v6)) == 0;
}

int ms__creds_check_full_uri(const char *url, const char *what)
{
	url_parts u;
	char host[MS__PRINTABLE_MAX];
	int rc;

	if ((rc = url_split(&u, url, "AWS_CONTAINER_CREDENTIALS_FULL_URI", what)) < 0)
		return rc;
	if (strcmp(u.scheme, "http") == 0 && !host_allowed_for_http(u.host))
		rc =
		    ms__error_set(MS_EINVAL,
		                  "%s: AWS_CONTAINER_CREDENTIALS_FULL_URI names host %s over http, "
		                  "which is allowed only for loopback, 169.254.170.2, "
		                  "169.254.170.23 and fd00:ec2::23 (use https)",
		                  what, ms__printable(host, sizeof(host), u.host));
	url_parts_free(&u);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Fetching                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static int fetch(ms__creds_provider *p, const source *s, const char *context, ms__creds *out);

/* Fetches the source that signs, then assumes the role with its keys. */
static int fetch_assume_role(ms__creds_provider *p, const ms__creds_remote *remote, const source *s,
                             const char *context, ms__creds *out)
{
	ms__creds signing;
	char sub[CONTEXT_MAX];
	int rc;

	snprintf(sub, sizeof(sub), "%s: %s", context, s->from->label);
	if ((rc = fetch(p, s->from, sub, &signing)) < 0)
		return rc;
	rc = ms__creds_fetch_assume_role(out, remote, s->role_arn, s->session_name, s->external_id,
	                                 &signing, context);
	ms__creds_clear(&signing);
	return rc;
}

/* Asks IMDS, and remembers which role it named for ms__creds_describe(). */
static int fetch_imds(ms__creds_provider *p, const ms__creds_remote *remote, const source *s,
                      const char *context, ms__creds *out)
{
	char role[MS__CREDS_IMDS_ROLE_MAX + 1];
	int rc;

	if ((rc = ms__creds_fetch_imds(out, role, remote, s->url, s->timeout_ms, s->attempts,
	                               context)) < 0)
		return rc;
	pthread_mutex_lock(&p->lock);
	memcpy(p->imds_role, role, strlen(role) + 1);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static int fetch(ms__creds_provider *p, const source *s, const char *context, ms__creds *out)
{
	/* Every field but the counter is fixed once the provider is built. */
	const ms__creds_remote remote = {
	    .sts_url = p->sts_url,
	    .sts_host = p->sts_host,
	    .sts_path = p->sts_path,
	    .sts_region = p->sts_region,
	    .ca_bundle = p->ca_bundle,
	    .fetch_count = &p->fetch_count,
	};

	switch (s->kind) {
	case SOURCE_STATIC:
		*out = s->static_keys;
		return 0;
	case SOURCE_WEB_IDENTITY:
		return ms__creds_fetch_web_identity(out, &remote, s->role_arn, s->session_name,
		                                    s->token_file, context);
	case SOURCE_ASSUME_ROLE:
		return fetch_assume_role(p, &remote, s, context, out);
	case SOURCE_CONTAINER:
		return ms__creds_fetch_container(out, &remote, s->url, s->auth_token, s->token_file,
		                                 context);
	case SOURCE_IMDS:
		return fetch_imds(p, &remote, s, context, out);
	}
	return ms__error_set(MS_ERROR, "%s: unknown credential source", context);
}

/* ---------------------------------------------------------------------------------------- */
/* Building the chain                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* What the builders read: the options, the provider being built and the URL for messages. */
typedef struct {
	const ms__creds_options *opts;
	ms__creds_provider *p;
	const char *what;
} builder;

static const char *env(const builder *b, const char *name)
{
	return ms__getenv(b->opts->getenv, b->opts->getenv_payload, name);
}

static void source_free(source *s)
{
	if (s == NULL)
		return;
	source_free(s->from);
	ms__creds_clear(&s->static_keys);
	wipe_free(s->auth_token);
	ms__free(s->label);
	ms__free(s->role_arn);
	ms__free(s->session_name);
	ms__free(s->external_id);
	ms__free(s->token_file);
	ms__free(s->url);
	ms__free(s);
}

static source *source_new(source_kind kind)
{
	source *s = ms__calloc(1, sizeof(*s));

	if (s != NULL)
		s->kind = kind;
	return s;
}

/* Copies `value` (NULL stays NULL) into *out; returns false when memory runs out. */
static bool copy_optional(char **out, const char *value)
{
	*out = value != NULL ? ms__strdup(value) : NULL;
	return value == NULL || *out != NULL;
}

static int out_of_memory(const builder *b)
{
	return ms__error_set(MS_ENOMEM, "%s: out of memory", b->what);
}

/* Static keys from AWS_ACCESS_KEY_ID and friends, labelled `origin`. */
static int build_environment(const builder *b, source **out, const char *origin)
{
	const char *key_id = env(b, "AWS_ACCESS_KEY_ID");
	const char *secret = env(b, "AWS_SECRET_ACCESS_KEY");
	char prefix[16], context[CONTEXT_MAX];
	source *s;
	int rc;

	*out = NULL;
	if (key_id == NULL || secret == NULL)
		return ms__error_set(MS_EINVAL,
		                     "%s: %s: AWS_ACCESS_KEY_ID is set without "
		                     "AWS_SECRET_ACCESS_KEY, or the other way round",
		                     b->what, origin);
	key_id_prefix(prefix, key_id);
	if ((s = source_new(SOURCE_STATIC)) == NULL ||
	    (s->label = format_new("%s (AWS_ACCESS_KEY_ID %s)", origin, prefix)) == NULL) {
		source_free(s);
		return out_of_memory(b);
	}
	snprintf(context, sizeof(context), "%s: %s", b->what, s->label);
	if ((rc = ms__creds_set(&s->static_keys, key_id, secret, env(b, "AWS_SESSION_TOKEN"), 0,
	                        MS_EINVAL, context)) < 0) {
		source_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Makes the STS endpoint known: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, the profile's
 * endpoint_url, else AWS's for the region. Done once, when a source first needs STS. */
static int resolve_sts(const builder *b)
{
	ms__creds_provider *p = b->p;
	const ms__aws_config *cfg = b->opts->config;
	const ms__aws_profile *profile = cfg != NULL ? cfg->profile : NULL;
	const char *region =
	    b->opts->region != NULL && b->opts->region[0] != '\0' ? b->opts->region : NULL;
	const char *configured = NULL, *setting = "the STS endpoint";
	bool ignore =
	    is_true(env(b, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) ||
	    (profile != NULL && is_true(profile->values[MS__AWS_IGNORE_CONFIGURED_ENDPOINT_URLS]));
	url_parts u;
	int rc;

	if (p->sts_url != NULL)
		return 0;
	if (!ignore && (configured = env(b, "AWS_ENDPOINT_URL_STS")) != NULL)
		setting = "AWS_ENDPOINT_URL_STS";
	else if (!ignore && (configured = env(b, "AWS_ENDPOINT_URL")) != NULL)
		setting = "AWS_ENDPOINT_URL";
	else if (!ignore && profile != NULL &&
	         (configured = profile->values[MS__AWS_ENDPOINT_URL]) != NULL)
		setting = "the profile's endpoint_url";
	if (configured != NULL) {
		p->sts_url = ms__strdup(configured);
	} else if (region != NULL && strcasecmp(env(b, "AWS_STS_REGIONAL_ENDPOINTS") != NULL
	                                            ? env(b, "AWS_STS_REGIONAL_ENDPOINTS")
	                                            : "",
	                                        "legacy") != 0) {
		p->sts_url = format_new("https://sts.%s.amazonaws.com%s/", region,
		                        strncmp(region, "cn-", 3) == 0 ? ".cn" : "");
	} else {
		p->sts_url = ms__strdup("https://sts.amazonaws.com/");
	}
	if (p->sts_url == NULL)
		return out_of_memory(b);
	if ((rc = url_split(&u, p->sts_url, setting, b->what)) < 0)
		return rc;
	if (u.query != NULL) {
		rc = ms__error_set(MS_EINVAL, "%s: %s must not have a query string", b->what,
		                   setting);
	} else if (snprintf(p->sts_host, sizeof(p->sts_host), "%s%s%s", u.host,
	                    u.port != NULL ? ":" : "",
	                    u.port != NULL ? u.port : "") >= (int)sizeof(p->sts_host)) {
		rc = ms__error_set(MS_EINVAL, "%s: the host of %s is too long", b->what, setting);
	} else if ((p->sts_path = ms__strdup(u.path)) == NULL) {
		rc = out_of_memory(b);
	}
	snprintf(p->sts_region, sizeof(p->sts_region), "%s", region != NULL ? region : "us-east-1");
	url_parts_free(&u);
	return rc;
}

static int build_web_identity(const builder *b, source **out, const char *label,
                              const char *role_arn, const char *token_file, const char *session)
{
	source *s;
	int rc;

	*out = NULL;
	if ((rc = resolve_sts(b)) < 0)
		return rc;
	if ((s = source_new(SOURCE_WEB_IDENTITY)) == NULL ||
	    (s->label = ms__strdup(label)) == NULL ||
	    (s->role_arn = ms__strdup(role_arn)) == NULL ||
	    (s->token_file = ms__strdup(token_file)) == NULL ||
	    !copy_optional(&s->session_name, session)) {
		source_free(s);
		return out_of_memory(b);
	}
	*out = s;
	return 0;
}

static int build_container(const builder *b, source **out, const char *why)
{
	const char *relative = env(b, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = env(b, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *token = env(b, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
	const char *token_file = env(b, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	char safe[MS__PRINTABLE_MAX * 2];
	source *s;
	int rc;

	*out = NULL;
	if (relative == NULL && full == NULL)
		return ms__error_set(MS_EINVAL,
		                     "%s: %s needs AWS_CONTAINER_CREDENTIALS_RELATIVE_URI "
		                     "or AWS_CONTAINER_CREDENTIALS_FULL_URI, and neither is set",
		                     b->what, why);
	if (relative != NULL && relative[0] != '/')
		return ms__error_set(
		    MS_EINVAL, "%s: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'",
		    b->what);
	if (relative == NULL && (rc = ms__creds_check_full_uri(full, b->what)) < 0)
		return rc;
	if (token_file == NULL && token != NULL && strpbrk(token, "\r\n") != NULL)
		return ms__error_set(
		    MS_EINVAL, "%s: AWS_CONTAINER_AUTHORIZATION_TOKEN holds a line break", b->what);
	if ((s = source_new(SOURCE_CONTAINER)) == NULL ||
	    (s->url = relative != NULL ? format_new("%s%s", CONTAINER_HOST, relative)
	                               : ms__strdup(full)) == NULL ||
	    (s->label = format_new("container credentials from %s",
	                           ms__printable(safe, sizeof(safe), s->url))) == NULL ||
	    !copy_optional(&s->token_file, token_file) ||
	    !copy_optional(&s->auth_token, token_file == NULL ? token : NULL)) {
		source_free(s);
		return out_of_memory(b);
	}
	if (relative != NULL) {
		url_parts u;

		if ((rc = url_split(&u, s->url, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		                    b->what)) < 0) {
			source_free(s);
			return rc;
		}
		url_parts_free(&u);
	}
	*out = s;
	return 0;
}

/* Reads a positive decimal number of seconds (a fraction allowed) as milliseconds. */
static int env_seconds_ms(const builder *b, const char *name, long fallback, long *out)
{
	const char *text = env(b, name);
	char *end = NULL;
	double v;

	*out = fallback;
	if (text == NULL)
		return 0;
	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(v > 0) || v > 3600)
		return ms__error_set(MS_EINVAL,
		                     "%s: %s must be a number of seconds above 0 and at most 3600",
		                     b->what, name);
	*out = (long)(v * 1000);
	if (*out < 1)
		*out = 1;
	return 0;
}

static int env_integer(const builder *b, const char *name, long low, long high, long fallback,
                       long *out)
{
	const char *text = env(b, name);
	char *end = NULL;
	long v;

	*out = fallback;
	if (text == NULL)
		return 0;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < low || v > high)
		return ms__error_set(MS_EINVAL, "%s: %s must be a whole number from %ld to %ld",
		                     b->what, name, low, high);
	*out = v;
	return 0;
}

static int build_imds(const builder *b, source **out)
{
	const char *endpoint = env(b, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
	const char *mode = env(b, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
	char safe[MS__PRINTABLE_MAX * 2];
	long timeout_ms, attempts;
	url_parts u;
	source *s;
	size_t len;
	int rc;

	*out = NULL;
	if ((rc = env_seconds_ms(b, "AWS_METADATA_SERVICE_TIMEOUT", IMDS_TIMEOUT_MS, &timeout_ms)) <
	        0 ||
	    (rc = env_integer(b, "AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1, 20, IMDS_ATTEMPTS,
	                      &attempts)) < 0)
		return rc;
	if (endpoint == NULL)
		endpoint = mode != NULL && strcasecmp(mode, "IPv6") == 0 ? IMDS_ENDPOINT_IPV6
		                                                         : IMDS_ENDPOINT;
	if ((rc = url_split(&u, endpoint, "AWS_EC2_METADATA_SERVICE_ENDPOINT", b->what)) < 0)
		return rc;
	url_parts_free(&u);
	if ((s = source_new(SOURCE_IMDS)) == NULL || (s->url = ms__strdup(endpoint)) == NULL) {
		source_free(s);
		return out_of_memory(b);
	}
	len = strlen(s->url);
	while (len > 0 && s->url[len - 1] == '/')
		s->url[--len] = '\0';
	s->timeout_ms = timeout_ms;
	s->attempts = (unsigned)attempts;
	if ((s->label = format_new("EC2 instance metadata at %s",
	                           ms__printable(safe, sizeof(safe), s->url))) == NULL) {
		source_free(s);
		return out_of_memory(b);
	}
	*out = s;
	return 0;
}

static bool has_static_keys(const ms__aws_profile *profile)
{
	return profile->values[MS__AWS_ACCESS_KEY_ID] != NULL &&
	       profile->values[MS__AWS_SECRET_ACCESS_KEY] != NULL;
}

static int build_profile_static(const builder *b, const ms__aws_profile *profile, source **out)
{
	const ms__aws_config *cfg = b->opts->config;
	const char *const *v = (const char *const *)profile->values;
	char name[MS__PRINTABLE_MAX], context[CONTEXT_MAX];
	source *s;
	int rc;

	*out = NULL;
	ms__printable(name, sizeof(name), profile->name);
	if ((s = source_new(SOURCE_STATIC)) == NULL ||
	    (s->label = format_new(
	         "profile '%s' in %s", name,
	         ms__aws_config_path(cfg, profile->origins[MS__AWS_ACCESS_KEY_ID]))) == NULL) {
		source_free(s);
		return out_of_memory(b);
	}
	snprintf(context, sizeof(context), "%s: %s", b->what, s->label);
	if ((rc = ms__creds_set(&s->static_keys, v[MS__AWS_ACCESS_KEY_ID],
	                        v[MS__AWS_SECRET_ACCESS_KEY], v[MS__AWS_SESSION_TOKEN], 0,
	                        MS_EINVAL, context)) < 0) {
		source_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

/*
 * The source for `profile`, following source_profile links. `visited` holds the profiles
 * already on the path (for cycles); `as_source` is set for a profile named by another's
 * source_profile, where static keys win over a role_arn, as in botocore.
 */
static int build_profile(const builder *b, const ms__aws_profile *profile,
                         const ms__aws_profile **visited, size_t depth, bool as_source,
                         source **out)
{
	const ms__aws_config *cfg = b->opts->config;
	const char *const *v = (const char *const *)profile->values;
	ms__aws_credentials_kind kind = MS__AWS_CREDENTIALS_NONE;
	char name[MS__PRINTABLE_MAX], arn[MS__PRINTABLE_MAX * 2], other[MS__PRINTABLE_MAX];
	const char *path = ms__aws_config_path(cfg, profile->origins[MS__AWS_ROLE_ARN]);
	source *s = NULL, *from = NULL;
	int rc;

	*out = NULL;
	ms__printable(name, sizeof(name), profile->name);
	if (depth >= PROFILE_CHAIN_MAX)
		return ms__error_set(MS_EINVAL,
		                     "%s: profile '%s': source_profile chain longer than %d",
		                     b->what, name, PROFILE_CHAIN_MAX);
	if (as_source && has_static_keys(profile))
		return build_profile_static(b, profile, out);
	if ((rc = ms__aws_profile_credentials_kind(&kind, cfg, profile)) < 0)
		return prefix_error(rc, b->what);
	ms__printable(arn, sizeof(arn), v[MS__AWS_ROLE_ARN] != NULL ? v[MS__AWS_ROLE_ARN] : "");
	switch (kind) {
	case MS__AWS_CREDENTIALS_STATIC:
		return build_profile_static(b, profile, out);
	case MS__AWS_CREDENTIALS_WEB_IDENTITY: {
		char label[CONTEXT_MAX];

		snprintf(label, sizeof(label),
		         "profile '%s' in %s (role %s, web_identity_token_file)", name, path, arn);
		return build_web_identity(b, out, label, v[MS__AWS_ROLE_ARN],
		                          v[MS__AWS_WEB_IDENTITY_TOKEN_FILE],
		                          v[MS__AWS_ROLE_SESSION_NAME]);
	}
	case MS__AWS_CREDENTIALS_ASSUME_ROLE:
		break;
	case MS__AWS_CREDENTIALS_NONE:
		if (as_source)
			return ms__error_set(MS_EINVAL,
			                     "%s: profile '%s', named by a source_profile, has no "
			                     "credentials",
			                     b->what, name);
		return 0; /* nothing here: the chain goes on */
	default:
		return ms__error_set(MS_EUNSUPPORTED, "%s: profile '%s': unsupported credentials",
		                     b->what, name);
	}

	if ((rc = resolve_sts(b)) < 0)
		return rc;
	if (v[MS__AWS_SOURCE_PROFILE] != NULL) {
		const ms__aws_profile *next = ms__aws_config_find(cfg, v[MS__AWS_SOURCE_PROFILE]);

		ms__printable(other, sizeof(other), v[MS__AWS_SOURCE_PROFILE]);
		if (next == NULL)
			return ms__error_set(MS_EINVAL,
			                     "%s: profile '%s' in %s: source_profile '%s' does not "
			                     "exist",
			                     b->what, name, path, other);
		if (next == profile) {
			/* A profile may name itself to say "sign with my own keys". */
			if (!has_static_keys(profile))
				return ms__error_set(
				    MS_EINVAL,
				    "%s: profile '%s' in %s is its own source_profile "
				    "but has no static keys",
				    b->what, name, path);
			rc = build_profile_static(b, profile, &from);
		} else {
			for (size_t i = 0; i < depth; i++)
				if (visited[i] == next)
					return ms__error_set(
					    MS_EINVAL,
					    "%s: profile '%s' in %s: source_profile "
					    "'%s' leads back to itself (a cycle)",
					    b->what, name, path, other);
			visited[depth] = profile;
			rc = build_profile(b, next, visited, depth + 1, true, &from);
		}
		if (rc < 0)
			return rc;
	} else {
		const char *cs = v[MS__AWS_CREDENTIAL_SOURCE];

		ms__printable(other, sizeof(other), cs);
		if (strcmp(cs, "Environment") == 0) {
			rc = build_environment(b, &from, "credential_source Environment");
		} else if (strcmp(cs, "EcsContainer") == 0) {
			rc = build_container(b, &from, "credential_source EcsContainer");
		} else if (strcmp(cs, "Ec2InstanceMetadata") == 0) {
			if (is_true(env(b, "AWS_EC2_METADATA_DISABLED")))
				return ms__error_set(MS_EINVAL,
				                     "%s: profile '%s' in %s: credential_source "
				                     "Ec2InstanceMetadata, but "
				                     "AWS_EC2_METADATA_DISABLED=true",
				                     b->what, name, path);
			rc = build_imds(b, &from);
		} else {
			return ms__error_set(
			    MS_EINVAL,
			    "%s: profile '%s' in %s: credential_source '%s' is not "
			    "Environment, EcsContainer or Ec2InstanceMetadata",
			    b->what, name, path, other);
		}
		if (rc < 0)
			return rc;
	}
	if ((s = source_new(SOURCE_ASSUME_ROLE)) == NULL ||
	    (s->label = format_new("profile '%s' in %s (role %s)", name, path, arn)) == NULL ||
	    (s->role_arn = ms__strdup(v[MS__AWS_ROLE_ARN])) == NULL ||
	    !copy_optional(&s->session_name, v[MS__AWS_ROLE_SESSION_NAME]) ||
	    !copy_optional(&s->external_id, v[MS__AWS_EXTERNAL_ID])) {
		source_free(s);
		source_free(from);
		return out_of_memory(b);
	}
	s->from = from;
	*out = s;
	return 0;
}

/* The files of the no-credentials message: "/h/.aws/config (missing) and ...". */
static void describe_files(char *out, size_t size, const ms__aws_config *cfg)
{
	static const char *const status_text[] = {
	    [MS__AWS_FILE_NOT_LOOKED] = " (not looked for)",
	    [MS__AWS_FILE_READ] = "",
	    [MS__AWS_FILE_MISSING] = " (missing)",
	    [MS__AWS_FILE_UNREADABLE] = " (unreadable)",
	};
	char config[MS__PRINTABLE_MAX * 2], credentials[MS__PRINTABLE_MAX * 2];

	if (cfg == NULL) {
		snprintf(out, size, "the shared files (not loaded)");
		return;
	}
	ms__printable(config, sizeof(config),
	              cfg->config_path != NULL ? cfg->config_path : "~/.aws/config");
	ms__printable(credentials, sizeof(credentials),
	              cfg->credentials_path != NULL ? cfg->credentials_path : "~/.aws/credentials");
	snprintf(out, size, "%s%s and %s%s", config, status_text[cfg->config_status], credentials,
	         status_text[cfg->credentials_status]);
}

static int no_credentials(const builder *b, const char *imds_reason)
{
	const ms__aws_config *cfg = b->opts->config;
	char files[MS__PRINTABLE_MAX * 5], profile[MS__PRINTABLE_MAX];

	describe_files(files, sizeof(files), cfg);
	ms__printable(profile, sizeof(profile),
	              cfg != NULL && cfg->profile_name != NULL ? cfg->profile_name : "default");
	return ms__error_set(MS_EACCES,
	                     "%s: no credentials: looked for AWS_ACCESS_KEY_ID, "
	                     "AWS_WEB_IDENTITY_TOKEN_FILE, profile '%s' in %s, "
	                     "AWS_CONTAINER_CREDENTIALS_*, and EC2 instance metadata (%s); set "
	                     "MODELSTREAM_S3_ANONYMOUS=1 for a public bucket",
	                     b->what, profile, files, imds_reason);
}

/* Picks the first configured source; *out stays NULL when only IMDS is left to try. */
static int choose_source(const builder *b, source **out, ms__creds_kind *kind)
{
	const ms__aws_config *cfg = b->opts->config;
	const char *token_file = env(b, "AWS_WEB_IDENTITY_TOKEN_FILE");
	int rc;

	*out = NULL;
	*kind = MS__CREDS_NONE;
	if (env(b, "AWS_ACCESS_KEY_ID") != NULL || env(b, "AWS_SECRET_ACCESS_KEY") != NULL) {
		*kind = MS__CREDS_ENVIRONMENT;
		return build_environment(b, out, "environment");
	}
	if (token_file != NULL) {
		const char *role_arn = env(b, "AWS_ROLE_ARN");
		char arn[MS__PRINTABLE_MAX * 2], label[CONTEXT_MAX];

		if (role_arn == NULL)
			return ms__error_set(
			    MS_EINVAL,
			    "%s: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN "
			    "is not: web identity needs the role to assume",
			    b->what);
		snprintf(label, sizeof(label), "web identity (AWS_ROLE_ARN %s)",
		         ms__printable(arn, sizeof(arn), role_arn));
		*kind = MS__CREDS_WEB_IDENTITY;
		return build_web_identity(b, out, label, role_arn, token_file,
		                          env(b, "AWS_ROLE_SESSION_NAME"));
	}
	if (cfg != NULL && cfg->profile != NULL) {
		const ms__aws_profile *visited[PROFILE_CHAIN_MAX];

		if ((rc = build_profile(b, cfg->profile, visited, 0, false, out)) < 0)
			return rc;
		if (*out != NULL) {
			*kind = (*out)->kind == SOURCE_STATIC ? MS__CREDS_PROFILE
			        : (*out)->kind == SOURCE_WEB_IDENTITY
			            ? MS__CREDS_PROFILE_WEB_IDENTITY
			            : MS__CREDS_PROFILE_ASSUME_ROLE;
			return 0;
		}
	}
	if (env(b, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != NULL ||
	    env(b, "AWS_CONTAINER_CREDENTIALS_FULL_URI") != NULL) {
		*kind = MS__CREDS_CONTAINER;
		return build_container(b, out, "container credentials");
	}
	return 0;
}

/* The describe() line, fixed when the provider is built. */
static char *make_description(const ms__creds_provider *p)
{
	const source *s = p->root;
	char token_file[MS__PRINTABLE_MAX * 2], arn[MS__PRINTABLE_MAX * 2];

	switch (p->kind) {
	case MS__CREDS_WEB_IDENTITY:
	case MS__CREDS_PROFILE_WEB_IDENTITY:
		ms__printable(arn, sizeof(arn), s->role_arn);
		ms__printable(token_file, sizeof(token_file), s->token_file);
		if (p->kind == MS__CREDS_WEB_IDENTITY)
			return format_new("web identity: role %s, token file %s, STS %s", arn,
			                  token_file, p->sts_url);
		return format_new("%s: token file %s, STS %s", s->label, token_file, p->sts_url);
	case MS__CREDS_PROFILE_ASSUME_ROLE:
		return format_new("%s, assumed with %s, STS %s", s->label, s->from->label,
		                  p->sts_url);
	case MS__CREDS_IMDS:
		return format_new("EC2 instance metadata (IMDSv2) at %s", s->url);
	default:
		return ms__strdup(s->label);
	}
}

/* ---------------------------------------------------------------------------------------- */
/* The provider                                                                             */
/* ---------------------------------------------------------------------------------------- */

static int provider_alloc(ms__creds_provider **out, const char *what)
{
	ms__creds_provider *p = ms__calloc(1, sizeof(*p));

	*out = NULL;
	if (p == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", what);
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		ms__free(p);
		return ms__error_set(MS_ENOMEM, "%s: cannot create a mutex", what);
	}
	if (pthread_cond_init(&p->refreshed, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		ms__free(p);
		return ms__error_set(MS_ENOMEM, "%s: cannot create a condition variable", what);
	}
	atomic_init(&p->fetch_count, 0);
	*out = p;
	return 0;
}

int ms__creds_provider_new(ms__creds_provider **out, const ms__creds_options *opts,
                           const char *what)
{
	static const ms__creds_options defaults = {0};
	ms__creds_provider *p = NULL;
	builder b;
	source *root = NULL;
	ms__creds_kind kind = MS__CREDS_NONE;
	ms__creds fresh;
	long window;
	int rc;

	*out = NULL;
	memset(&fresh, 0, sizeof(fresh));
	what = what != NULL ? what : "S3";
	opts = opts != NULL ? opts : &defaults;
	pthread_once(&curl_once, curl_init_once);
	if ((rc = provider_alloc(&p, what)) < 0)
		return rc;
	b.opts = opts;
	b.p = p;
	b.what = what;
	if ((rc = env_integer(&b, "MODELSTREAM_CREDENTIALS_REFRESH_SECONDS", 0, REFRESH_WINDOW_MAX,
	                      MS__CREDS_REFRESH_DEFAULT, &window)) < 0)
		goto done;
	p->refresh_window = window;
	if (opts->ca_bundle != NULL && opts->ca_bundle[0] != '\0' &&
	    (p->ca_bundle = ms__strdup(opts->ca_bundle)) == NULL) {
		rc = out_of_memory(&b);
		goto done;
	}
	if ((rc = choose_source(&b, &root, &kind)) < 0)
		goto done;
	if (root == NULL) {
		if (is_true(env(&b, "AWS_EC2_METADATA_DISABLED"))) {
			rc = no_credentials(&b, "disabled by AWS_EC2_METADATA_DISABLED");
			goto done;
		}
		if ((rc = build_imds(&b, &root)) < 0)
			goto done;
		kind = MS__CREDS_IMDS;
	}
	p->root = root;
	p->kind = kind;
	if ((p->context = format_new("%s: %s", what, root->label)) == NULL ||
	    (p->description = make_description(p)) == NULL) {
		rc = out_of_memory(&b);
		goto done;
	}
	p->last_start_ms = monotonic_ms();
	if (kind == MS__CREDS_IMDS) {
		/* IMDS is the last resort: when it fails, say what else was looked for. The
		 * reason names the endpoint, without `what` in front. */
		if ((rc = fetch(p, root, root->url, &fresh)) < 0) {
			char reason[MS__ERROR_MAX];

			if (rc == MS_ENOMEM)
				goto done;
			snprintf(reason, sizeof(reason), "%s", ms_error_last()->message);
			rc = no_credentials(&b, reason);
			goto done;
		}
	} else if ((rc = fetch(p, root, p->context, &fresh)) < 0) {
		goto done;
	}
	p->current = fresh;
	p->last_finish_ms = monotonic_ms();
	*out = p;
	p = NULL;
done:
	ms__creds_clear(&fresh);
	if (p != NULL && p->root == NULL)
		source_free(root);
	ms__creds_free(p);
	return rc;
}

int ms__creds_get(ms__creds_provider *p, ms__creds *out, bool force_refresh)
{
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	if (p->root->kind == SOURCE_STATIC)
		goto copy;
	for (;;) {
		int64_t now = (int64_t)time(NULL), mono = monotonic_ms();
		bool expired = p->current.expiration != 0 && p->current.expiration <= now;
		bool want;
		ms__creds fresh;

		if (p->refreshing) {
			unsigned generation = p->generation;

			if (!expired && !force_refresh)
				break; /* keep signing with the old ones meanwhile */
			/* The old ones are useless: wait for the refresh under way. */
			while (p->refreshing && p->generation == generation)
				pthread_cond_wait(&p->refreshed, &p->lock);
			if (p->last_failed && (force_refresh || expired)) {
				rc = ms__error_set(p->saved_code, "%s", p->saved_message);
				goto unlock;
			}
			break;
		}
		want = ms__creds_refresh_due(p->current.expiration, now, p->refresh_window) ||
		       (force_refresh && mono - p->last_start_ms >= FORCE_INTERVAL_MS);
		if (want && p->last_failed && mono - p->last_finish_ms < FAILURE_RETRY_MS) {
			/* It failed a moment ago: do not hammer the source. */
			if (expired || force_refresh) {
				rc = ms__error_set(p->saved_code, "%s", p->saved_message);
				goto unlock;
			}
			want = false;
		}
		if (!want)
			break;
		p->refreshing = true;
		p->last_start_ms = mono;
		pthread_mutex_unlock(&p->lock);
		rc = fetch(p, p->root, p->context, &fresh);
		pthread_mutex_lock(&p->lock);
		p->refreshing = false;
		p->generation++;
		p->last_finish_ms = monotonic_ms();
		if (rc == 0) {
			p->current = fresh;
			p->last_failed = false;
		} else {
			p->last_failed = true;
			p->saved_code = rc;
			snprintf(p->saved_message, sizeof(p->saved_message), "%s",
			         ms_error_last()->message);
		}
		ms__creds_clear(&fresh);
		pthread_cond_broadcast(&p->refreshed);
		if (rc < 0 && (expired || force_refresh))
			goto unlock;
		rc = 0; /* the old credentials are still good; a later call tries again */
		break;
	}
copy:
	*out = p->current;
unlock:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

ms__creds_kind ms__creds_kind_of(const ms__creds_provider *p)
{
	return p != NULL ? p->kind : MS__CREDS_NONE;
}

void ms__creds_describe(const ms__creds_provider *p, char *out, size_t size)
{
	/* The mutex guards only imds_role here; locking it does not change what `p` means. */
	pthread_mutex_t *lock = (pthread_mutex_t *)&p->lock;

	if (size == 0)
		return;
	pthread_mutex_lock(lock);
	if (p->kind == MS__CREDS_IMDS && p->imds_role[0] != '\0')
		snprintf(out, size, "%s, role '%s'", p->description, p->imds_role);
	else
		snprintf(out, size, "%s", p->description);
	pthread_mutex_unlock(lock);
}

unsigned ms__creds_fetch_count(const ms__creds_provider *p)
{
	return atomic_load_explicit(&((ms__creds_provider *)p)->fetch_count, memory_order_relaxed);
}

void ms__creds_free(ms__creds_provider *p)
{
	if (p == NULL)
		return;
	source_free(p->root);
	ms__creds_clear(&p->current);
	explicit_bzero(p->saved_message, sizeof(p->saved_message));
	ms__free(p->context);
	ms__free(p->description);
	ms__free(p->ca_bundle);
	ms__free(p->sts_url);
	ms__free(p->sts_path);
	pthread_cond_destroy(&p->refreshed);
	pthread_mutex_destroy(&p->lock);
	ms__free(p);
}
