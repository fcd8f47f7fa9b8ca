/*
 * s3_sigv4.c - AWS Signature Version 4: the canonical request, the string to sign, the
 * signing key and the Authorization header, with OpenSSL's SHA-256 and HMAC.
 *
 * Design. Signing runs in two steps. prepare() checks every input against its cap and
 * against what may go on the wire, then sorts the query parameters and the headers into
 * their canonical order without copying them: it keeps pointers and lengths only. Then
 * write_canonical_request() writes the canonical request through a writer that either
 * appends to a caller's buffer (ms__sigv4_canonical_request(), for tests and debugging)
 * or feeds SHA-256 (ms__sigv4_sign()). One function produces both, so the tests that
 * compare the text with botocore's also cover the bytes that are hashed, and signing
 * needs no buffer the size of the request.
 *
 * Query parameters are sorted by their canonical encoding (AWS sorts after encoding, so
 * "a%20b" comes before "a-b"), which is never stored: an encoder yields the encoded bytes
 * of a raw name or value one at a time, and the sort compares two such streams.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "s3_sigv4.h"

#define ALGORITHM    "AWS4-HMAC-SHA256"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* host, x-amz-content-sha256, x-amz-date, x-amz-security-token. */
#define OWN_HEADERS 4
/* The signed header list: every name and a ';' after each but the last, plus the NUL. */
#define SIGNED_HEADERS_SIZE \
	((MS__SIGV4_HEADERS_MAX + OWN_HEADERS) * (MS__SIGV4_HEADER_NAME_MAX + 1))
/* 9999-12-31T23:59:59Z: x-amz-date has four digits for the year. */
#define TIME_MAX INT64_C(253402300799)

_Static_assert(sizeof(ALGORITHM " Credential=") - 1 + MS__SIGV4_ACCESS_KEY_ID_MAX +
                       sizeof("/YYYYMMDD/") - 1 + MS__SIGV4_REGION_MAX + 1 + MS__SIGV4_SERVICE_MAX +
                       sizeof("/aws4_request, SignedHeaders=") - 1 + SIGNED_HEADERS_SIZE - 1 +
                       sizeof(", Signature=") - 1 + 64 + 1 <=
                   MS__SIGV4_AUTHORIZATION_SIZE,
               "the longest Authorization value must fit its buffer");
_Static_assert(sizeof(ALGORITHM "\nYYYYMMDDTHHMMSSZ\nYYYYMMDD/") - 1 + MS__SIGV4_REGION_MAX + 1 +
                       MS__SIGV4_SERVICE_MAX + sizeof("/aws4_request\n") - 1 + 64 + 1 <=
                   MS__SIGV4_STRING_TO_SIGN_SIZE,
               "the longest string to sign must fit its buffer");
_Static_assert(sizeof("x-amz-content-sha256") - 1 <= MS__SIGV4_HEADER_NAME_MAX,
               "the signer's own header names obey the cap on names");

static const char hex_upper[] = "0123456789ABCDEF";
static const char hex_lower[] = "0123456789abcdef";

typedef struct {
	const char *text;
	size_t len;
} span;

typedef struct {
	span name;
	span value;
} pair;

/* A request checked and put in canonical order; it points into the caller's strings. */
typedef struct {
	pair params[MS__SIGV4_QUERY_PARAMS_MAX]; /* raw, sorted by their canonical encoding */
	size_t param_count;
	pair headers[MS__SIGV4_HEADERS_MAX + OWN_HEADERS]; /* sorted by lower-case name */
	size_t header_count;
	char amz_date[17];
	span payload;
	const char *session_token; /* NULL when there is none */
	int is_s3;
} prepared;

/* ---------------------------------------------------------------------------------------- */
/* Characters                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static int is_alnum(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 3986's unreserved characters, the only ones SigV4 leaves unencoded. */
static int is_unreserved(unsigned char c)
{
	return is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static int is_visible(unsigned char c)
{
	return c > 0x20 && c < 0x7f;
}

/* RFC 9110's token characters, the only ones a header name may hold. */
static int is_token(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static unsigned char to_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static void hex_encode(char *out, const unsigned char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex_lower[data[i] >> 4];
		out[2 * i + 1] = hex_lower[data[i] & 15];
	}
	out[2 * len] = '\0';
}

/*
 * Measures `s` without reading more than `max + 1` bytes of it, so a string that is not
 * terminated where it should be costs a bounded scan. Returns -1 if it is longer than max.
 */
static int bounded_length(size_t *out, const char *s, size_t max)
{
	*out = strnlen(s, max + 1);
	return *out > max ? -1 : 0;
}

/*
 * Whether `len` bytes of a URL path or query are fit to send as they are: visible ASCII
 * only, never '#' (or `also_forbidden`), and every '%' starts a two-digit escape. Both
 * botocore and S3 would read a broken escape differently from us, so it is refused.
 */
static int uri_text_ok(const char *s, size_t len, char also_forbidden)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!is_visible(c) || c == '#' || c == (unsigned char)also_forbidden)
			return 0;
		if (c == '%') {
			if (len - i < 3 || hex_value((unsigned char)s[i + 1]) < 0 ||
			    hex_value((unsigned char)s[i + 2]) < 0)
				return 0;
			i += 2;
		}
	}
	return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Query parameters                                                                           */
/* ---------------------------------------------------------------------------------------- */

/* Yields the canonical encoding of a raw query name or value, one byte at a time. */
typedef struct {
	const char *next;
	const char *end;
	char pending[2]; /* the hex digits still owed after a '%' */
	size_t pending_count;
} encoder;

static void encoder_start(encoder *e, span s)
{
	e->next = s.text;
	e->end = s.text + s.len;
	e->pending_count = 0;
}

/* The next encoded byte, or -1 at the end. The raw text was checked by uri_text_ok(). */
static int encoder_next(encoder *e)
{
	unsigned char c;

	if (e->pending_count > 0)
		return (unsigned char)e->pending[2 - e->pending_count--];
	if (e->next == e->end)
		return -1;
	c = (unsigned char)*e->next;
	if (c == '%') {
		c = (unsigned char)(hex_value((unsigned char)e->next[1]) << 4 |
		                    hex_value((unsigned char)e->next[2]));
		e->next += 3;
	} else {
		e->next++;
	}
	if (is_unreserved(c))
		return c;
	e->pending[0] = hex_upper[c >> 4];
	e->pending[1] = hex_upper[c & 15];
	e->pending_count = 2;
	return '%';
}

/* Compares the canonical encodings of `a` and `b` as byte strings (a prefix sorts first). */
static int compare_encoded(span a, span b)
{
	encoder ea, eb;
	int ca, cb;

	encoder_start(&ea, a);
	encoder_start(&eb, b);
	do {
		ca = encoder_next(&ea);
		cb = encoder_next(&eb);
	} while (ca == cb && ca >= 0);
	return ca - cb;
}

/* AWS orders parameters by encoded name, then by encoded value. */
static int compare_params(const pair *a, const pair *b)
{
	int c = compare_encoded(a->name, b->name);

	return c != 0 ? c : compare_encoded(a->value, b->value);
}

/* Compares header names without regard to case (a prefix sorts first). */
static int compare_header_names(const pair *a, const pair *b)
{
	size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;

	for (size_t i = 0; i < n; i++) {
		int c = to_lower((unsigned char)a->name.text[i]) -
		        to_lower((unsigned char)b->name.text[i]);

		if (c != 0)
			return c;
	}
	return a->name.len < b->name.len ? -1 : a->name.len > b->name.len;
}

/* An insertion sort: the arrays are short (the caps are 64 and 36), and it is stable. */
static void sort_pairs(pair *items, size_t count, int (*compare)(const pair *, const pair *))
{
	for (size_t i = 1; i < count; i++) {
		pair item = items[i];
		size_t j = i;

		for (; j > 0 && compare(&items[j - 1], &item) > 0; j--)
			items[j] = items[j - 1];
		items[j] = item;
	}
}

static int parse_query(prepared *p, const char *query)
{
	size_t len;
	const char *s, *end;

	if (query == NULL)
		return 0;
	if (bounded_length(&len, query, MS__SIGV4_QUERY_MAX) < 0)
		return ms__error_set(MS_EINVAL, "sigv4: the query string is longer than %d bytes",
		                     MS__SIGV4_QUERY_MAX);
	/* '?' may appear inside a query (RFC 3986), so only '#' is forbidden there. */
	if (!uri_text_ok(query, len, '#'))
		return ms__error_set(MS_EINVAL,
		                     "sigv4: the query string holds a byte that cannot be sent as "
		                     "it is, or a broken %%-escape");
	for (s = query, end = query + len; s < end;) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *stop = amp != NULL ? amp : end;
		const char *equals = memchr(s, '=', (size_t)(stop - s));
		pair *param;

		if (stop == s) { /* an empty pair, as in "a=1&&b=2" */
			s = stop + 1;
			continue;
		}
		if (p->param_count == MS__SIGV4_QUERY_PARAMS_MAX)
			return ms__error_set(MS_EINVAL,
			                     "sigv4: the query string has more than %d parameters",
			                     MS__SIGV4_QUERY_PARAMS_MAX);
		param = &p->params[p->param_count++];
		param->name.text = s;
		param->name.len = (size_t)((equals != NULL ? equals : stop) - s);
		param->value.text = equals != NULL ? equals + 1 : stop;
		param->value.len = (size_t)(stop - param->value.text);
		s = stop + 1;
	}
	sort_pairs(p->params, p->param_count, compare_params);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Headers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int is_reserved_header(const char *name, size_t len)
{
	static const char *const reserved[] = {
	    "host",       "authorization",        "date",
	    "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
	};

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		size_t rlen = strlen(reserved[i]);
		size_t k = 0;

		while (k < len && k < rlen && to_lower((unsigned char)name[k]) == reserved[i][k])
			k++;
		if (k == len && k == rlen)
			return 1;
	}
	return 0;
}

static void add_header(prepared *p, const char *name, const char *value, size_t value_len)
{
	pair *h = &p->headers[p->header_count++];

	h->name.text = name;
	h->name.len = strlen(name);
	h->value.text = value;
	h->value.len = value_len;
}

static int check_caller_header(const ms__http_header *h, size_t index)
{
	char printable[MS__PRINTABLE_MAX];
	size_t name_len, value_len;

	if (h->name == NULL || h->value == NULL)
		return ms__error_set(MS_EINVAL, "sigv4: header %zu has no name or no value", index);
	if (bounded_length(&name_len, h->name, MS__SIGV4_HEADER_NAME_MAX) < 0 || name_len == 0)
		return ms__error_set(MS_EINVAL,
		                     "sigv4: header %zu: the name is empty or longer than %d bytes",
		                     index, MS__SIGV4_HEADER_NAME_MAX);
	for (size_t i = 0; i < name_len; i++)
		if (!is_token((unsigned char)h->name[i]))
			return ms__error_set(MS_EINVAL,
			                     "sigv4: header name \"%s\" is not an HTTP token",
			                     ms__printable(printable, sizeof(printable), h->name));
	if (is_reserved_header(h->name, name_len))
		return ms__error_set(
		    MS_EINVAL, "sigv4: header %s is set by the signer, not the caller", h->name);
	/* The value is never quoted in a message: a caller may sign a header that is secret. */
	if (bounded_length(&value_len, h->value, MS__SIGV4_HEADER_VALUE_MAX) < 0)
		return ms__error_set(MS_EINVAL,
		                     "sigv4: header %s: the value is longer than %d bytes", h->name,
		                     MS__SIGV4_HEADER_VALUE_MAX);
	for (size_t i = 0; i < value_len; i++) {
		unsigned char c = (unsigned char)h->value[i];

		if (!(is_visible(c) || c == ' ' || c == '\t'))
			return ms__error_set(
			    MS_EINVAL,
			    "sigv4: header %s: the value holds a control or non-ASCII "
			    "byte",
			    h->name);
	}
	return 0;
}

static int collect_headers(prepared *p, const ms__sigv4_request *req, size_t host_len)
{
	int rc;

	if (req->header_count > MS__SIGV4_HEADERS_MAX)
		return ms__error_set(MS_EINVAL, "sigv4: %zu headers to sign, more than %d",
		                     req->header_count, MS__SIGV4_HEADERS_MAX);
	if (req->header_count > 0 && req->headers == NULL)
		return ms__error_set(MS_EINVAL, "sigv4: header_count is %zu but headers is NULL",
		                     req->header_count);
	for (size_t i = 0; i < req->header_count; i++) {
		rc = check_caller_header(&req->headers[i], i);
		if (rc < 0)
			return rc;
		add_header(p, req->headers[i].name, req->headers[i].value,
		           strlen(req->headers[i].value));
	}
	add_header(p, "host", req->host, host_len);
	add_header(p, "x-amz-date", p->amz_date, 16);
	/* botocore's SigV4Auth sends x-amz-content-sha256 to S3 only; other services hash the
	 * payload into the canonical request without the header. */
	if (p->is_s3)
		add_header(p, "x-amz-content-sha256", p->payload.text, p->payload.len);
	if (p->session_token != NULL)
		add_header(p, "x-amz-security-token", p->session_token, strlen(p->session_token));
	sort_pairs(p->headers, p->header_count, compare_header_names);
	for (size_t i = 1; i < p->header_count; i++)
		if (compare_header_names(&p->headers[i - 1], &p->headers[i]) == 0)
			return ms__error_set(MS_EINVAL, "sigv4: header %.*s is given twice",
			                     (int)p->headers[i].name.len, p->headers[i].name.text);
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Checking the request                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* A region or service name: letters, digits, '-' and '_', so it cannot break the scope. */
static int check_scope_part(const char *s, size_t max, const char *what)
{
	size_t len;

	if (s == NULL || bounded_length(&len, s, max) < 0 || len == 0)
		return ms__error_set(MS_EINVAL, "sigv4: the %s is missing or longer than %zu bytes",
		                     what, max);
	for (size_t i = 0; i < len; i++)
		if (!is_alnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return ms__error_set(
			    MS_EINVAL, "sigv4: the %s may hold only letters, digits, '-' and '_'",
			    what);
	return 0;
}

static int check_credentials(prepared *p, const ms__aws_credentials *creds)
{
	size_t len;

	if (creds == NULL || creds->access_key_id == NULL || creds->secret_access_key == NULL)
		return ms__error_set(MS_EINVAL, "sigv4: no access key id or secret access key");
	if (bounded_length(&len, creds->access_key_id, MS__SIGV4_ACCESS_KEY_ID_MAX) < 0 || len == 0)
		return ms__error_set(MS_EINVAL,
		                     "sigv4: the access key id is empty or longer than %d bytes",
		                     MS__SIGV4_ACCESS_KEY_ID_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)creds->access_key_id[i];

		if (!is_visible(c) || c == '/' || c == ',')
			return ms__error_set(
			    MS_EINVAL,
			    "sigv4: the access key id holds a space, control, '/' or ',' "
			    "byte");
	}
	if (bounded_length(&len, creds->secret_access_key, MS__SIGV4_SECRET_MAX) < 0 || len == 0)
		return ms__error_set(
		    MS_EINVAL, "sigv4: the secret access key is empty or longer than %d bytes",
		    MS__SIGV4_SECRET_MAX);
	/* botocore treats an empty token as none; so do we. */
	p->session_token = NULL;
	if (creds->session_token == NULL || creds->session_token[0] == '\0')
		return 0;
	if (bounded_length(&len, creds->session_token, MS__SIGV4_SESSION_TOKEN_MAX) < 0)
		return ms__error_set(MS_EINVAL, "sigv4: the session token is longer than %d bytes",
		                     MS__SIGV4_SESSION_TOKEN_MAX);
	for (size_t i = 0; i < len; i++)
		if (!is_visible((unsigned char)creds->session_token[i]))
			return ms__error_set(MS_EINVAL,
			                     "sigv4: the session token holds a space, control or "
			                     "non-ASCII byte");
	p->session_token = creds->session_token;
	return 0;
}

static int check_payload(prepared *p, const char *payload)
{
	size_t len;
	int hex = 1, literal = 1, has_dash = 0;

	if (payload == NULL)
		payload = EMPTY_SHA256;
	if (bounded_length(&len, payload, 64) < 0 || len == 0)
		return ms__error_set(MS_EINVAL, "sigv4: the payload hash is empty or too long");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)payload[i];

		hex = hex && hex_value(c) >= 0 && !(c >= 'A' && c <= 'F');
		literal = literal && ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-');
		has_dash = has_dash || c == '-';
	}
	/* Every literal AWS defines has a '-'; requiring one keeps upper-case hex out, which S3
	 * would compare with its lower-case hash and refuse. */
	if (!(hex && len == 64) && !(literal && has_dash))
		return ms__error_set(MS_EINVAL,
		                     "sigv4: the payload hash is neither 64 lower-case hex digits "
		                     "nor a literal such as UNSIGNED-PAYLOAD");
	p->payload.text = payload;
	p->payload.len = len;
	return 0;
}

/*
 * Outside S3, AWS normalises the path before signing it, removing empty, "." and ".."
 * segments. A path that normalising would change is refused rather than normalised, since
 * the request would then go to one path and be signed for another.
 */
static int check_path_is_normal(const char *path, size_t len)
{
	char printable[MS__PRINTABLE_MAX];
	size_t start = 1;

	if (len == 1)
		return 0;
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		size_t seg = i - start;
		int dots = (seg == 1 && path[start] == '.') ||
		           (seg == 2 && path[start] == '.' && path[start + 1] == '.');
		/* An empty last segment is a trailing '/', which botocore keeps. */
		if (dots || (seg == 0 && i < len))
			return ms__error_set(
			    MS_EINVAL,
			    "sigv4: path \"%s\" has an empty, \".\" or \"..\" segment, "
			    "which only S3 signs as it is",
			    ms__printable(printable, sizeof(printable), path));
		start = i + 1;
	}
	return 0;
}

static int check_time(prepared *p, int64_t seconds)
{
	struct tm tm;
	time_t t = (time_t)seconds;

	if (seconds < 0 || seconds > TIME_MAX || (int64_t)t != seconds || gmtime_r(&t, &tm) == NULL)
		return ms__error_set(MS_EINVAL,
		                     "sigv4: time %lld is outside 1970-01-01 to 9999-12-31",
		                     (long long)seconds);
	if (strftime(p->amz_date, sizeof(p->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
		return ms__error_set(MS_EINVAL, "sigv4: time %lld cannot be formatted",
		                     (long long)seconds);
	return 0;
}

static int prepare(prepared *p, const ms__sigv4_request *req, const ms__aws_credentials *creds)
{
	char printable[MS__PRINTABLE_MAX];
	size_t len, host_len;
	int rc;

	memset(p, 0, sizeof(*p));
	if (req == NULL || req->method == NULL || req->host == NULL || req->path == NULL)
		return ms__error_set(MS_EINVAL, "sigv4: no request, method, host or path");
	rc = check_credentials(p, creds);
	if (rc < 0)
		return rc;
	if (bounded_length(&len, req->method, MS__SIGV4_METHOD_MAX) < 0 || len == 0)
		return ms__error_set(MS_EINVAL,
		                     "sigv4: the method is empty or longer than %d bytes",
		                     MS__SIGV4_METHOD_MAX);
	for (size_t i = 0; i < len; i++)
		if (req->method[i] < 'A' || req->method[i] > 'Z')
			return ms__error_set(
			    MS_EINVAL, "sigv4: method \"%s\" is not upper-case letters",
			    ms__printable(printable, sizeof(printable), req->method));
	if (bounded_length(&host_len, req->host, MS__SIGV4_HOST_MAX) < 0 || host_len == 0)
		return ms__error_set(MS_EINVAL, "sigv4: the host is empty or longer than %d bytes",
		                     MS__SIGV4_HOST_MAX);
	for (size_t i = 0; i < host_len; i++)
		if (!is_visible((unsigned char)req->host[i]) || req->host[i] == '/')
			return ms__error_set(
			    MS_EINVAL, "sigv4: host \"%s\" holds a byte a host cannot",
			    ms__printable(printable, sizeof(printable), req->host));
	rc = check_scope_part(req->region, MS__SIGV4_REGION_MAX, "region");
	if (rc < 0)
		return rc;
	rc = check_scope_part(req->service, MS__SIGV4_SERVICE_MAX, "service");
	if (rc < 0)
		return rc;
	p->is_s3 = strcmp(req->service, "s3") == 0;
	if (bounded_length(&len, req->path, MS__SIGV4_PATH_MAX) < 0)
		return ms__error_set(MS_EINVAL, "sigv4: the path is longer than %d bytes",
		                     MS__SIGV4_PATH_MAX);
	if (len == 0 || req->path[0] != '/' || !uri_text_ok(req->path, len, '?'))
		return ms__error_set(
		    MS_EINVAL,
		    "sigv4: path \"%s\" does not start with '/', holds a byte that "
		    "cannot be sent as it is, or a broken %%-escape",
		    ms__printable(printable, sizeof(printable), req->path));
	if (!p->is_s3) {
		rc = check_path_is_normal(req->path, len);
		if (rc < 0)
			return rc;
	}
	rc = check_payload(p, req->payload_sha256);
	if (rc < 0)
		return rc;
	rc = check_time(p, req->time);
	if (rc < 0)
		return rc;
	rc = parse_query(p, req->query);
	if (rc < 0)
		return rc;
	return collect_headers(p, req, host_len);
}

/* ---------------------------------------------------------------------------------------- */
/* Writing the canonical request                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Where text goes: a caller's buffer (text mode), or a SHA-256 context (digest mode). */
typedef struct {
	char *buffer; /* NULL in digest mode */
	size_t size;
	size_t length; /* what was written, or would have been had the buffer been larger */
	EVP_MD_CTX *digest;
	int digest_failed;
} writer;

static void put(writer *w, const char *data, size_t len)
{
	if (w->digest != NULL) {
		if (len > 0 && EVP_DigestUpdate(w->digest, data, len) != 1)
			w->digest_failed = 1;
	} else if (w->length < w->size) {
		/* Keep one byte for the NUL; what does not fit is counted but dropped. */
		size_t room = w->size - 1 - w->length;

		memcpy(w->buffer + w->length, data, len < room ? len : room);
	}
	w->length += len;
}

static void put_char(writer *w, char c)
{
	put(w, &c, 1);
}

static void put_span(writer *w, span s)
{
	put(w, s.text, s.len);
}

/* Writes a query name or value in its canonical encoding, a small batch at a time. */
static void put_encoded(writer *w, span s)
{
	char batch[128];
	size_t n = 0;
	encoder e;
	int c;

	encoder_start(&e, s);
	while ((c = encoder_next(&e)) >= 0) {
		batch[n++] = (char)c;
		if (n == sizeof(batch)) {
			put(w, batch, n);
			n = 0;
		}
	}
	put(w, batch, n);
}

/* Outside S3 the path is encoded a second time: each byte but unreserved ones and '/'. */
static void put_path_encoded_again(writer *w, const char *path)
{
	for (const unsigned char *c = (const unsigned char *)path; *c != '\0'; c++) {
		if (is_unreserved(*c) || *c == '/') {
			put_char(w, (char)*c);
		} else {
			char escape[3] = {'%', hex_upper[*c >> 4], hex_upper[*c & 15]};

			put(w, escape, sizeof(escape));
		}
	}
}

static void put_lower(writer *w, span s)
{
	for (size_t i = 0; i < s.len; i++)
		put_char(w, (char)to_lower((unsigned char)s.text[i]));
}

/* SigV4's Trimall: no leading or trailing blanks, and each inner run of them one space. */
static void put_trimmed(writer *w, span s)
{
	size_t i = 0, end = s.len;

	while (i < end && (s.text[i] == ' ' || s.text[i] == '\t'))
		i++;
	while (end > i && (s.text[end - 1] == ' ' || s.text[end - 1] == '\t'))
		end--;
	while (i < end) {
		size_t run = i;

		while (run < end && s.text[run] != ' ' && s.text[run] != '\t')
			run++;
		put(w, s.text + i, run - i);
		if (run == end)
			break;
		put_char(w, ' ');
		for (i = run; s.text[i] == ' ' || s.text[i] == '\t'; i++)
			;
	}
}

static void put_signed_headers(writer *w, const prepared *p)
{
	for (size_t i = 0; i < p->header_count; i++) {
		if (i > 0)
			put_char(w, ';');
		put_lower(w, p->headers[i].name);
	}
}

static void write_canonical_request(writer *w, const prepared *p, const ms__sigv4_request *req)
{
	put(w, req->method, strlen(req->method));
	put_char(w, '\n');
	if (p->is_s3)
		put(w, req->path, strlen(req->path));
	else
		put_path_encoded_again(w, req->path);
	put_char(w, '\n');
	for (size_t i = 0; i < p->param_count; i++) {
		if (i > 0)
			put_char(w, '&');
		put_encoded(w, p->params[i].name);
		put_char(w, '=');
		put_encoded(w, p->params[i].value);
	}
	put_char(w, '\n');
	for (size_t i = 0; i < p->header_count; i++) {
		put_lower(w, p->headers[i].name);
		put_char(w, ':');
		put_trimmed(w, p->headers[i].value);
		put_char(w, '\n');
	}
	put_char(w, '\n');
	put_signed_headers(w, p);
	put_char(w, '\n');
	put_span(w, p->payload);
}

/* ---------------------------------------------------------------------------------------- */
/* Signing                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static int hmac_sha256(unsigned char out[32], const void *key, size_t key_len, const char *data,
                       size_t data_len)
{
	unsigned int out_len = 0;

	if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, data_len, out,
	         &out_len) == NULL ||
	    out_len != 32)
		return ms__error_set(MS_ERROR, "sigv4: HMAC-SHA256 failed in OpenSSL");
	return 0;
}

/* The signing key: HMAC("AWS4" + secret, date), then region, service, "aws4_request". */
static int derive_signing_key(unsigned char out[32], const char *secret, const char *date,
                              const ms__sigv4_request *req)
{
	unsigned char key[4 + MS__SIGV4_SECRET_MAX];
	unsigned char step[32];
	size_t secret_len = strlen(secret); /* checked against the cap by prepare() */
	int rc;

	memcpy(key, "AWS4", 4);
	memcpy(key + 4, secret, secret_len);
	rc = hmac_sha256(step, key, 4 + secret_len, date, 8);
	if (rc < 0)
		goto done;
	rc = hmac_sha256(out, step, sizeof(step), req->region, strlen(req->region));
	if (rc < 0)
		goto done;
	rc = hmac_sha256(step, out, 32, req->service, strlen(req->service));
	if (rc < 0)
		goto done;
	rc = hmac_sha256(out, step, sizeof(step), "aws4_request", 12);
done:
	/* The secret and every key derived from it are wiped, whatever happened. */
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(step, sizeof(step));
	if (rc < 0)
		OPENSSL_cleanse(out, 32);
	return rc;
}

int ms__sigv4_sign(ms__sigv4_result *out, const ms__sigv4_request *req,
                   const ms__aws_credentials *creds)
{
	prepared p;
	EVP_MD_CTX *md = NULL;
	unsigned char hash[32], signing_key[32], signature[32];
	char hash_hex[65], signature_hex[65];
	char signed_headers[SIGNED_HEADERS_SIZE];
	writer w;
	int rc, n;

	memset(out, 0, sizeof(*out));
	rc = prepare(&p, req, creds);
	if (rc < 0)
		goto done;

	md = EVP_MD_CTX_new();
	if (md == NULL) {
		rc = ms__error_set(MS_ENOMEM, "sigv4: OpenSSL could not allocate a digest");
		goto done;
	}
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		rc = ms__error_set(MS_ERROR, "sigv4: OpenSSL could not start SHA-256");
		goto done;
	}
	w = (writer){.digest = md};
	write_canonical_request(&w, &p, req);
	if (w.digest_failed || EVP_DigestFinal_ex(md, hash, NULL) != 1) {
		rc = ms__error_set(MS_ERROR, "sigv4: SHA-256 failed in OpenSSL");
		goto done;
	}
	hex_encode(hash_hex, hash, sizeof(hash));

	/* The static assertions at the top guarantee these fit; the checks keep it honest. */
	n = snprintf(out->string_to_sign, sizeof(out->string_to_sign),
	             ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s", p.amz_date, p.amz_date,
	             req->region, req->service, hash_hex);
	if (n < 0 || (size_t)n >= sizeof(out->string_to_sign)) {
		rc = ms__error_set(MS_EINVAL, "sigv4: the string to sign does not fit");
		goto done;
	}
	rc = derive_signing_key(signing_key, creds->secret_access_key, p.amz_date, req);
	if (rc < 0)
		goto done;
	rc = hmac_sha256(signature, signing_key, sizeof(signing_key), out->string_to_sign,
	                 (size_t)n);
	if (rc < 0)
		goto done;
	hex_encode(signature_hex, signature, sizeof(signature));

	w = (writer){.buffer = signed_headers, .size = sizeof(signed_headers)};
	put_signed_headers(&w, &p);
	signed_headers[w.length < w.size ? w.length : w.size - 1] = '\0';
	n = snprintf(out->authorization, sizeof(out->authorization),
	             ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
	                       "Signature=%s",
	             creds->access_key_id, p.amz_date, req->region, req->service, signed_headers,
	             signature_hex);
	if (w.length >= w.size || n < 0 || (size_t)n >= sizeof(out->authorization)) {
		rc = ms__error_set(MS_EINVAL, "sigv4: the Authorization header does not fit");
		goto done;
	}
	memcpy(out->amz_date, p.amz_date, sizeof(out->amz_date));
	if (p.is_s3)
		memcpy(out->content_sha256, p.payload.text, p.payload.len + 1);
	out->security_token = p.session_token;
	rc = 0;
done:
	EVP_MD_CTX_free(md);
	OPENSSL_cleanse(signing_key, sizeof(signing_key));
	OPENSSL_cleanse(signature, sizeof(signature));
	OPENSSL_cleanse(signature_hex, sizeof(signature_hex));
	if (rc < 0)
		OPENSSL_cleanse(out, sizeof(*out));
	return rc;
}

size_t ms__sigv4_headers(ms__http_header out[MS__SIGV4_RESULT_HEADERS],
                         const ms__sigv4_result *result)
{
	size_t n = 0;

	out[n++] = (ms__http_header){"Authorization", result->authorization};
	out[n++] = (ms__http_header){"x-amz-date", result->amz_date};
	if (result->content_sha256[0] != '\0')
		out[n++] = (ms__http_header){"x-amz-content-sha256", result->content_sha256};
	if (result->security_token != NULL)
		out[n++] = (ms__http_header){"x-amz-security-token", result->security_token};
	return n;
}

int ms__sigv4_canonical_request(char *out, size_t out_size, size_t *out_len,
                                const ms__sigv4_request *req, const ms__aws_credentials *creds)
{
	prepared p;
	writer w = {.buffer = out, .size = out_size};
	int rc;

	*out_len = 0;
	if (out_size > 0)
		out[0] = '\0';
	rc = prepare(&p, req, creds);
	if (rc < 0)
		return rc;
	write_canonical_request(&w, &p, req);
	*out_len = w.length;
	if (out_size > 0)
		out[w.length < out_size ? w.length : out_size - 1] = '\0';
	if (w.length >= out_size)
		return ms__error_set(
		    MS_EINVAL,
		    "sigv4: the canonical request needs %zu bytes, the buffer holds "
		    "%zu",
		    w.length + 1, out_size);
	return 0;
}

int ms__sha256_hex(char out[65], const void *data, size_t len)
{
	unsigned char hash[32];

	out[0] = '\0';
	if (EVP_Digest(data, len, hash, NULL, EVP_sha256(), NULL) != 1)
		return ms__error_set(MS_ERROR, "sigv4: SHA-256 failed in OpenSSL");
	hex_encode(out, hash, sizeof(hash));
	return 0;
}
