/*
 * s3_creds_fetch.c - the remote links of the credential chain: STS, container endpoints and
 * EC2 instance metadata, and the parsing of what they answer.
 *
 * Design. Each fetcher makes the requests of one link and hands back one set of
 * credentials; the chain (s3_creds.c) decides which link to ask and when. All requests go
 * through http_perform(), which retries connection failures, timeouts and 5xx/429 answers a
 * fixed number of times and reads the body into one buffer of MS__CREDS_BODY_MAX bytes,
 * failing the transfer as soon as more arrives. STS answers in XML (s3_xml.c reads it; its
 * error documents too, with a looser fallback for moto's shape); container endpoints and
 * IMDS answer in JSON, read here with cJSON.
 *
 * Secrets. Token files are read again on every call (the kubelet and EKS Pod Identity rotate
 * them). Every copy of a token or secret - the token file's text, the form body of an STS
 * call, the header lines, the response body, cJSON's strings - is wiped before it is freed,
 * and messages name the source by the `context` the caller built from settings (role ARNs,
 * paths, URLs), never by a token.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "alloc.h"
#include "error.h"
#include "s3_creds.h"
#include "s3_creds_fetch.h"
#include "s3_sigv4.h"
#include "s3_xml.h"

#define STS_VERSION            "2011-06-15"
#define STS_TIMEOUT_MS         30000
#define STS_CONNECT_TIMEOUT_MS 10000
#define STS_ATTEMPTS           3
#define CONTAINER_TIMEOUT_MS   2000
#define CONTAINER_ATTEMPTS     3
#define IMDS_TOKEN_TTL         "21600"
#define IMDS_TOKEN_MAX         1024
#define IMDS_ROLES_PATH        "/latest/meta-data/iam/security-credentials/"
#define URL_MAX                2048
#define RETRY_PAUSE_MS         100
#define CONTEXT_MAX            MS__ERROR_MAX

static void wipe_free(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		ms__free(s);
	}
}

/* Raises the current error again with "<what>: " in front, for messages from modules that
 * do not know which URL is being opened. */
static int prefix_error(int rc, const char *what)
{
	char message[MS__ERROR_MAX];

	snprintf(message, sizeof(message), "%s", ms_error_last()->message);
	return ms__error_set(rc, "%s: %s", what, message);
}

/* ---------------------------------------------------------------------------------------- */
/* Encoding and parsing                                                                     */
/* ---------------------------------------------------------------------------------------- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static size_t encoded_length(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += unreserved((unsigned char)*s) ? 1 : 3;
	return n;
}

static char *encode_into(char *dst, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (unreserved(c)) {
			*dst++ = (char)c;
		} else {
			*dst++ = '%';
			*dst++ = hex[c >> 4];
			*dst++ = hex[c & 15];
		}
	}
	return dst;
}

int ms__creds_form_encode(char **out, size_t *out_len, const char *const *pairs, size_t pair_count)
{
	size_t total = 0;
	char *body, *at;

	*out = NULL;
	*out_len = 0;
	/* Every input is a setting or a token file capped far below SIZE_MAX / 3. */
	for (size_t i = 0; i < pair_count; i++)
		total += encoded_length(pairs[2 * i]) + 1 + encoded_length(pairs[2 * i + 1]) + 1;
	body = ms__malloc(total + 1);
	if (body == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory encoding an STS request");
	at = body;
	for (size_t i = 0; i < pair_count; i++) {
		if (i > 0)
			*at++ = '&';
		at = encode_into(at, pairs[2 * i]);
		*at++ = '=';
		at = encode_into(at, pairs[2 * i + 1]);
	}
	*at = '\0';
	*out = body;
	*out_len = (size_t)(at - body);
	return 0;
}

/* Zeroes every string value in `item`'s tree: cJSON frees without wiping. */
static void json_wipe(cJSON *item)
{
	for (; item != NULL; item = item->next) {
		if (item->valuestring != NULL)
			explicit_bzero(item->valuestring, strlen(item->valuestring));
		json_wipe(item->child);
	}
}

static const char *json_string(const cJSON *root, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

int ms__creds_parse_json(ms__creds *out, const char *json, size_t len, const char *what)
{
	char *copy = NULL;
	cJSON *root = NULL;
	const char *code, *key_id, *secret, *token, *expiration;
	char safe[MS__PRINTABLE_MAX], safe_message[MS__PRINTABLE_MAX * 2];
	int64_t expires = 0;
	int rc;

	ms__creds_clear(out);
	ms__alloc_init_json();
	if (len > MS__CREDS_BODY_MAX)
		return ms__error_set(
		    MS_EFORMAT, "%s: credentials response of %zu bytes is too large", what, len);
	/* A NUL inside a string would cut it short for the wipe that follows every parse,
	 * leaving the rest of a secret in freed memory; no credentials answer holds one. */
	if (memmem(json, len, "\\u0000", 6) != NULL || memchr(json, '\0', len) != NULL)
		return ms__error_set(MS_EFORMAT, "%s: a credentials response with a NUL character",
		                     what);
	copy = ms__malloc(len + 1);
	if (copy == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", what);
		goto done;
	}
	memcpy(copy, json, len);
	copy[len] = '\0';
	ms__alloc_json_failed(); /* clear a failure left by an earlier parse */
	root = cJSON_ParseWithLength(copy, len);
	if (root == NULL && ms__alloc_json_failed()) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", what);
		goto done;
	}
	if (!cJSON_IsObject(root)) {
		rc = ms__error_set(MS_EFORMAT, "%s: the credentials response is not a JSON object",
		                   what);
		goto done;
	}
	code = json_string(root, "Code");
	if (cJSON_GetObjectItemCaseSensitive(root, "Code") != NULL &&
	    (code == NULL || strcmp(code, "Success") != 0)) {
		const char *message = json_string(root, "Message");

		ms__printable(safe, sizeof(safe), code != NULL ? code : "(not a string)");
		ms__printable(safe_message, sizeof(safe_message), message != NULL ? message : "");
		rc = ms__error_set(MS_EACCES, "%s: Code %s%s%s", what, safe,
		                   safe_message[0] != '\0' ? ": " : "", safe_message);
		goto done;
	}
	key_id = json_string(root, "AccessKeyId");
	secret = json_string(root, "SecretAccessKey");
	token = json_string(root, "Token");
	expiration = json_string(root, "Expiration");
	if (key_id == NULL || secret == NULL || expiration == NULL ||
	    (cJSON_GetObjectItemCaseSensitive(root, "Token") != NULL && token == NULL)) {
		rc = ms__error_set(MS_EFORMAT,
		                   "%s: the credentials response lacks %s (or it is not a string)",
		                   what,
		                   key_id == NULL       ? "AccessKeyId"
		                   : secret == NULL     ? "SecretAccessKey"
		                   : expiration == NULL ? "Expiration"
		                                        : "Token");
		goto done;
	}
	if (ms__s3_time_parse(&expires, expiration, strlen(expiration)) < 0) {
		rc = ms__error_set(MS_EFORMAT,
		                   "%s: Expiration '%s' is not an ISO 8601 time such as "
		                   "2026-01-02T03:04:05Z",
		                   what, ms__printable(safe, sizeof(safe), expiration));
		goto done;
	}
	rc = ms__creds_set(out, key_id, secret, token, expires, MS_EFORMAT, what);
done:
	json_wipe(root);
	cJSON_Delete(root);
	if (copy != NULL) {
		explicit_bzero(copy, len);
		ms__free(copy);
	}
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* HTTP                                                                                     */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	const char *method; /* "GET", "PUT" or "POST" */
	const char *url;
	struct curl_slist *headers;
	const char *body; /* POST and PUT; NULL for none */
	size_t body_len;
	long connect_timeout_ms;
	long timeout_ms;
	unsigned attempts;
	bool no_proxy; /* metadata endpoints: a proxy must never see their tokens */
	const char *ca_bundle;
} http_request;

typedef struct {
	CURL *curl;
	char *body; /* MS__CREDS_BODY_MAX + 1 bytes, NUL-terminated */
	size_t len;
	bool overflow;
	long status;
} http_response;

static size_t on_body(char *data, size_t size, size_t count, void *payload)
{
	http_response *r = payload;
	size_t n = size * count;

	if (n > MS__CREDS_BODY_MAX - r->len) {
		r->overflow = true;
		return 0; /* a hard bound: the transfer fails with CURLE_WRITE_ERROR */
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* Frees a header list after wiping every line: some carry tokens or signatures. */
static void headers_free(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

/* Appends one header line; returns false when memory runs out (the list is kept). */
static bool headers_add(struct curl_slist **list, const char *name, const char *value)
{
	size_t len = strlen(name) + 2 + strlen(value) + 1;
	char *line = ms__malloc(len);
	struct curl_slist *grown = NULL;

	if (line != NULL) {
		/* "Name:" with nothing after it tells curl to send no such header at all. */
		snprintf(line, len, value[0] != '\0' ? "%s: %s" : "%s:", name, value);
		grown = curl_slist_append(*list, line);
		explicit_bzero(line, len);
		ms__free(line);
	}
	if (grown == NULL)
		return false;
	*list = grown;
	return true;
}

static bool transient_curl(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT ||
	       cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR || cc == CURLE_GOT_NOTHING ||
	       cc == CURLE_PARTIAL_FILE || cc == CURLE_COULDNT_RESOLVE_HOST;
}

/*
 * Performs `req`, retrying connection failures, timeouts and 5xx/429 answers up to
 * req->attempts times in all. Returns 0 with r->status and the body, whatever the status;
 * a transfer that never completed raises "<context>: <curl's reason> (after N attempts)".
 */
static int http_perform(const http_request *req, http_response *r, const char *context)
{
	char error[CURL_ERROR_SIZE];
	CURLcode cc = CURLE_OK;
	unsigned attempt;

	r->curl = curl_easy_init();
	if (r->curl == NULL)
		return ms__error_set(MS_ENOMEM, "%s: cannot create an HTTP handle", context);
	for (attempt = 1;; attempt++) {
		CURL *c = r->curl;

		if (attempt > 1)
			usleep(RETRY_PAUSE_MS * 1000);
		error[0] = '\0';
		explicit_bzero(r->body, r->len);
		r->len = 0;
		r->body[0] = '\0';
		r->overflow = false;
		r->status = 0;
		curl_easy_reset(c);
		curl_easy_setopt(c, CURLOPT_URL, req->url);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, req->headers);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
		if (req->ca_bundle != NULL)
			curl_easy_setopt(c, CURLOPT_CAINFO, req->ca_bundle);
		if (req->no_proxy)
			curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
		if (strcmp(req->method, "GET") == 0) {
			curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		} else {
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
			if (strcmp(req->method, "POST") != 0)
				curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
		}
		cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->overflow)
			return ms__error_set(MS_EFORMAT, "%s: the response is larger than %u bytes",
			                     context, MS__CREDS_BODY_MAX);
		if (cc == CURLE_OK && !((r->status >= 500 && r->status <= 599) || r->status == 429))
			return 0;
		if (cc != CURLE_OK && !transient_curl(cc))
			break;
		if (attempt >= req->attempts)
			break;
	}
	if (cc == CURLE_OK)
		return 0; /* a 5xx on the last attempt: the caller reports the status */
	if (cc == CURLE_OUT_OF_MEMORY)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", context);
	return ms__error_set(MS_EIO, "%s: %s (%u attempt%s)", context,
	                     error[0] != '\0' ? error : curl_easy_strerror(cc), attempt,
	                     attempt == 1 ? "" : "s");
}

static int response_init(http_response *r, const char *context)
{
	memset(r, 0, sizeof(*r));
	r->body = ms__malloc(MS__CREDS_BODY_MAX + 1);
	if (r->body == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", context);
	r->body[0] = '\0';
	return 0;
}

static void response_free(http_response *r)
{
	if (r->body != NULL) {
		explicit_bzero(r->body, r->len);
		ms__free(r->body);
	}
	if (r->curl != NULL)
		curl_easy_cleanup(r->curl);
	memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------------------------------- */
/* Token files                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Reads a token file (at most MS__CREDS_TOKEN_FILE_MAX bytes, trailing white space dropped)
 * into a fresh string; `kind` names it in messages ("the web identity token file"). */
static int read_token_file(char **out, const char *path, const char *kind, const char *context)
{
	char *text = NULL;
	char safe[MS__PRINTABLE_MAX * 2];
	size_t len = 0;
	int fd, rc = 0;

	*out = NULL;
	ms__printable(safe, sizeof(safe), path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ms__error_set(errno == ENOMEM ? MS_ENOMEM : MS_EACCES,
		                     "%s: cannot open %s %s: %s", context, kind, safe,
		                     strerror(errno));
	text = ms__malloc(MS__CREDS_TOKEN_FILE_MAX + 2);
	if (text == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", context);
		goto done;
	}
	for (;;) {
		ssize_t n = read(fd, text + len, MS__CREDS_TOKEN_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ms__error_set(MS_EIO, "%s: cannot read %s %s: %s", context, kind, safe,
			                   strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > MS__CREDS_TOKEN_FILE_MAX) {
			rc = ms__error_set(MS_EINVAL, "%s: %s %s is larger than %u bytes", context,
			                   kind, safe, MS__CREDS_TOKEN_FILE_MAX);
			goto done;
		}
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
	                   text[len - 1] == '\t'))
		len--;
	text[len] = '\0';
	if (len == 0) {
		rc = ms__error_set(MS_EACCES, "%s: %s %s is empty", context, kind, safe);
		goto done;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) {
			rc = ms__error_set(MS_EINVAL, "%s: %s %s holds a control character or NUL",
			                   context, kind, safe);
			goto done;
		}
	}
	*out = text;
	text = NULL;
done:
	if (text != NULL) {
		explicit_bzero(text, MS__CREDS_TOKEN_FILE_MAX + 2);
		ms__free(text);
	}
	close(fd);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Fetching                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void count_fetch(const ms__creds_remote *remote)
{
	/* Relaxed: the counter is for tests and orders nothing. */
	atomic_fetch_add_explicit(remote->fetch_count, 1, memory_order_relaxed);
}

/* Copies the text of the first <name>...</name> in `body` into `out` (one line, cut to
 * fit); returns false when there is none. */
static bool xml_text(char *out, size_t size, const char *body, const char *name)
{
	char open[32], close[32];
	const char *start, *end;
	char text[512];
	size_t len;

	snprintf(open, sizeof(open), "<%s>", name);
	snprintf(close, sizeof(close), "</%s>", name);
	if ((start = strstr(body, open)) == NULL)
		return false;
	start += strlen(open);
	if ((end = strstr(start, close)) == NULL)
		return false;
	len = (size_t)(end - start) < sizeof(text) - 1 ? (size_t)(end - start) : sizeof(text) - 1;
	memcpy(text, start, len);
	text[len] = '\0';
	ms__printable(out, size, text);
	return out[0] != '\0';
}

/* Turns a failed STS answer into an error naming `context`. */
static int sts_failure(const http_response *r, const char *context)
{
	ms__s3_error e;

	if (r->len > 0 && ms__s3_error_parse(&e, r->body, r->len, context) == 0)
		return ms__s3_error_raise(&e, (int)r->status, context);
	/* Not STS's own shape: moto, for one, wraps Error in an Errors element. The code and
	 * message are still worth showing; an STS error body never holds a secret. */
	memset(&e, 0, sizeof(e));
	if (r->len > 0 && xml_text(e.code, sizeof(e.code), r->body, "Code")) {
		xml_text(e.message, sizeof(e.message), r->body, "Message");
		xml_text(e.request_id, sizeof(e.request_id), r->body, "RequestId");
		return ms__s3_error_raise(&e, (int)r->status, context);
	}
	return ms__error_set(ms__s3_error_to_code(NULL, (int)r->status), "%s: HTTP %ld", context,
	                     r->status);
}

/*
 * One STS call: `action` with `pair_count` more form fields, signed with `signing` (NULL for
 * AssumeRoleWithWebIdentity, which STS takes unsigned), into `out`.
 */
static int sts_call(const ms__creds_remote *remote, const char *context, const char *action,
                    const char *const *pairs, size_t pair_count, const ms__creds *signing,
                    ms__creds *out)
{
	const char *all[2 * 8];
	char ctx[CONTEXT_MAX], payload_hash[65];
	char *body = NULL;
	size_t body_len = 0;
	struct curl_slist *headers = NULL;
	http_response r = {0};
	http_request req = {0};
	ms__sts_credentials sts = {0};
	ms__sigv4_result sig;
	int rc;

	snprintf(ctx, sizeof(ctx), "%s: STS %s at %s", context, action, remote->sts_url);
	if (pair_count > sizeof(all) / sizeof(all[0]) / 2 - 2)
		return ms__error_set(MS_ERROR, "%s: too many form fields", ctx);
	all[0] = "Action";
	all[1] = action;
	all[2] = "Version";
	all[3] = STS_VERSION;
	for (size_t i = 0; i < 2 * pair_count; i++)
		all[4 + i] = pairs[i];
	if ((rc = ms__creds_form_encode(&body, &body_len, all, pair_count + 2)) < 0) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", ctx);
		goto done;
	}
	if ((rc = response_init(&r, ctx)) < 0)
		goto done;
	if (!headers_add(&headers, "Content-Type",
	                 "application/x-www-form-urlencoded; charset=utf-8") ||
	    !headers_add(&headers, "Host", remote->sts_host) ||
	    !headers_add(&headers, "Expect", "") || !headers_add(&headers, "Accept", "*/*")) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", ctx);
		goto done;
	}
	if (signing != NULL) {
		ms__aws_credentials keys = {signing->access_key_id, signing->secret_access_key,
		                            signing->session_token};
		ms__http_header content_type = {"Content-Type",
		                                "application/x-www-form-urlencoded; charset=utf-8"};
		ms__http_header signed_headers[MS__SIGV4_RESULT_HEADERS];
		ms__sigv4_request sreq = {
		    .method = "POST",
		    .host = remote->sts_host,
		    .path = remote->sts_path,
		    .headers = &content_type,
		    .header_count = 1,
		    .payload_sha256 = payload_hash,
		    .region = remote->sts_region,
		    .service = "sts",
		    .time = (int64_t)time(NULL),
		};
		size_t n;

		if ((rc = ms__sha256_hex(payload_hash, body, body_len)) < 0 ||
		    (rc = ms__sigv4_sign(&sig, &sreq, &keys)) < 0) {
			rc = prefix_error(rc, ctx);
			goto done;
		}
		n = ms__sigv4_headers(signed_headers, &sig);
		for (size_t i = 0; i < n; i++) {
			if (!headers_add(&headers, signed_headers[i].name,
			                 signed_headers[i].value)) {
				rc = ms__error_set(MS_ENOMEM, "%s: out of memory", ctx);
				goto done;
			}
		}
	}
	req.method = "POST";
	req.url = remote->sts_url;
	req.headers = headers;
	req.body = body;
	req.body_len = body_len;
	req.connect_timeout_ms = STS_CONNECT_TIMEOUT_MS;
	req.timeout_ms = STS_TIMEOUT_MS;
	req.attempts = STS_ATTEMPTS;
	req.ca_bundle = remote->ca_bundle;
	count_fetch(remote);
	if ((rc = http_perform(&req, &r, ctx)) < 0)
		goto done;
	if (r.status != 200) {
		rc = sts_failure(&r, ctx);
		goto done;
	}
	if ((rc = ms__sts_credentials_parse(&sts, r.body, r.len, ctx)) < 0)
		goto done;
	rc = ms__creds_set(out, sts.access_key_id, sts.secret_access_key, sts.session_token,
	                   sts.expiration, MS_EFORMAT, ctx);
done:
	explicit_bzero(&sig, sizeof(sig));
	ms__sts_credentials_free(&sts);
	headers_free(headers);
	response_free(&r);
	if (body != NULL) {
		explicit_bzero(body, body_len);
		ms__free(body);
	}
	return rc;
}

/* The RoleSessionName: the configured one, else "modelstream-<unix time>". */
static void session_name_or_default(char out[64], const char *session_name)
{
	if (session_name != NULL)
		snprintf(out, 64, "%s", session_name);
	else
		snprintf(out, 64, "modelstream-%lld", (long long)time(NULL));
}

int ms__creds_fetch_web_identity(ms__creds *out, const ms__creds_remote *remote,
                                 const char *role_arn, const char *session_name,
                                 const char *token_file, const char *context)
{
	char *token = NULL;
	char name[64];
	const char *pairs[6];
	int rc;

	/* Read every time: the kubelet rotates the token behind our back. */
	if ((rc = read_token_file(&token, token_file, "the web identity token file", context)) < 0)
		return rc;
	session_name_or_default(name, session_name);
	pairs[0] = "RoleArn";
	pairs[1] = role_arn;
	pairs[2] = "RoleSessionName";
	pairs[3] = name;
	pairs[4] = "WebIdentityToken";
	pairs[5] = token;
	rc = sts_call(remote, context, "AssumeRoleWithWebIdentity", pairs, 3, NULL, out);
	wipe_free(token);
	return rc;
}

int ms__creds_fetch_assume_role(ms__creds *out, const ms__creds_remote *remote,
                                const char *role_arn, const char *session_name,
                                const char *external_id, const ms__creds *signing,
                                const char *context)
{
	char name[64];
	const char *pairs[6];
	size_t count = 2;

	session_name_or_default(name, session_name);
	pairs[0] = "RoleArn";
	pairs[1] = role_arn;
	pairs[2] = "RoleSessionName";
	pairs[3] = name;
	if (external_id != NULL) {
		pairs[4] = "ExternalId";
		pairs[5] = external_id;
		count++;
	}
	return sts_call(remote, context, "AssumeRole", pairs, count, signing, out);
}

int ms__creds_fetch_container(ms__creds *out, const ms__creds_remote *remote, const char *url,
                              const char *token, const char *token_file, const char *context)
{
	char *file_token = NULL;
	struct curl_slist *headers = NULL;
	http_response r = {0};
	http_request req = {0};
	int rc;

	if (token_file != NULL) {
		/* Read every time: EKS Pod Identity rotates it. */
		if ((rc = read_token_file(&file_token, token_file,
		                          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", context)) < 0)
			return rc;
		token = file_token;
	}
	if ((rc = response_init(&r, context)) < 0)
		goto done;
	if (!headers_add(&headers, "Accept", "application/json") ||
	    (token != NULL && !headers_add(&headers, "Authorization", token))) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", context);
		goto done;
	}
	req.method = "GET";
	req.url = url;
	req.headers = headers;
	req.connect_timeout_ms = CONTAINER_TIMEOUT_MS;
	req.timeout_ms = CONTAINER_TIMEOUT_MS;
	req.attempts = CONTAINER_ATTEMPTS;
	req.no_proxy = true;
	req.ca_bundle = remote->ca_bundle;
	count_fetch(remote);
	if ((rc = http_perform(&req, &r, context)) < 0)
		goto done;
	if (r.status != 200) {
		rc = ms__error_set(r.status == 401 || r.status == 403 ? MS_EACCES : MS_EIO,
		                   "%s: HTTP %ld", context, r.status);
		goto done;
	}
	rc = ms__creds_parse_json(out, r.body, r.len, context);
done:
	headers_free(headers);
	response_free(&r);
	wipe_free(file_token);
	return rc;
}

/* Where IMDS is, and how patiently to ask it. */
typedef struct {
	const char *endpoint; /* without a trailing '/' */
	long timeout_ms;
	unsigned attempts;
} imds_target;

/* One IMDS request; the body is left in `r`. */
static int imds_request(const imds_target *t, http_response *r, const char *method,
                        const char *path, const char *header, const char *value,
                        const char *context)
{
	char url[URL_MAX];
	struct curl_slist *headers = NULL;
	http_request req = {0};
	int rc;

	if (snprintf(url, sizeof(url), "%s%s", t->endpoint, path) >= (int)sizeof(url))
		return ms__error_set(MS_EINVAL, "%s: the metadata URL is too long", context);
	if (!headers_add(&headers, header, value))
		return ms__error_set(MS_ENOMEM, "%s: out of memory", context);
	req.method = method;
	req.url = url;
	req.headers = headers;
	req.connect_timeout_ms = t->timeout_ms;
	req.timeout_ms = t->timeout_ms;
	req.attempts = t->attempts;
	req.no_proxy = true;
	rc = http_perform(&req, r, context);
	headers_free(headers);
	if (r->curl != NULL) {
		curl_easy_cleanup(r->curl);
		r->curl = NULL;
	}
	return rc;
}

static bool role_name_ok(const char *s, size_t len)
{
	if (len == 0 || len > MS__CREDS_IMDS_ROLE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		/* IAM's role name characters: [\w+=,.@-]. */
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      strchr("_+=,.@-", c) != NULL))
			return false;
	}
	return true;
}

int ms__creds_fetch_imds(ms__creds *out, char role[MS__CREDS_IMDS_ROLE_MAX + 1],
                         const ms__creds_remote *remote, const char *endpoint, long timeout_ms,
                         unsigned attempts, const char *context)
{
	char token[IMDS_TOKEN_MAX + 1] = "", name[MS__CREDS_IMDS_ROLE_MAX + 1], path[256];
	char ctx[CONTEXT_MAX];
	const imds_target t = {endpoint, timeout_ms, attempts};
	http_response r = {0};
	size_t len;
	int rc;

	if ((rc = response_init(&r, context)) < 0)
		return rc;
	count_fetch(remote);
	snprintf(ctx, sizeof(ctx), "%s: IMDSv2 token (PUT /latest/api/token)", context);
	if ((rc = imds_request(&t, &r, "PUT", "/latest/api/token",
	                       "X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL, ctx)) < 0)
		goto done;
	if (r.status != 200) {
		rc = ms__error_set(MS_EACCES, "%s: HTTP %ld", ctx, r.status);
		goto done;
	}
	len = r.len;
	while (len > 0 && (r.body[len - 1] == '\n' || r.body[len - 1] == '\r'))
		len--;
	if (len == 0 || len > IMDS_TOKEN_MAX || memchr(r.body, '\0', len) != NULL) {
		rc = ms__error_set(MS_EFORMAT, "%s: a token of %zu bytes is not valid", ctx, len);
		goto done;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)r.body[i] <= 0x20 || r.body[i] == 0x7f) {
			rc = ms__error_set(MS_EFORMAT, "%s: the token holds a control character",
			                   ctx);
			goto done;
		}
	}
	memcpy(token, r.body, len);
	token[len] = '\0';

	snprintf(ctx, sizeof(ctx), "%s: GET %s", context, IMDS_ROLES_PATH);
	if ((rc = imds_request(&t, &r, "GET", IMDS_ROLES_PATH, "X-aws-ec2-metadata-token", token,
	                       ctx)) < 0)
		goto done;
	if (r.status == 404) {
		rc = ms__error_set(MS_EACCES,
		                   "%s: HTTP 404: no IAM role is attached to this instance", ctx);
		goto done;
	}
	if (r.status != 200) {
		rc = ms__error_set(r.status == 401 || r.status == 403 ? MS_EACCES : MS_EIO,
		                   "%s: HTTP %ld", ctx, r.status);
		goto done;
	}
	len = strcspn(r.body, "\r\n");
	if (!role_name_ok(r.body, len)) {
		rc = ms__error_set(MS_EFORMAT, "%s: the first line is not an IAM role name", ctx);
		goto done;
	}
	memcpy(name, r.body, len);
	name[len] = '\0';

	snprintf(path, sizeof(path), "%s%s", IMDS_ROLES_PATH, name);
	snprintf(ctx, sizeof(ctx), "%s: role '%s'", context, name);
	if ((rc = imds_request(&t, &r, "GET", path, "X-aws-ec2-metadata-token", token, ctx)) < 0)
		goto done;
	if (r.status != 200) {
		rc = ms__error_set(r.status == 401 || r.status == 403 || r.status == 404 ? MS_EACCES
		                                                                         : MS_EIO,
		                   "%s: HTTP %ld", ctx, r.status);
		goto done;
	}
	if ((rc = ms__creds_parse_json(out, r.body, r.len, ctx)) < 0)
		goto done;
	memcpy(role, name, len + 1);
done:
	explicit_bzero(token, sizeof(token));
	response_free(&r);
	return rc;
}
