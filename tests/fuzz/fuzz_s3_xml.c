/*
 * fuzz_s3_xml.c - a libFuzzer target for the S3 and STS XML readers (lib/s3/s3_xml.c).
 *
 * The first byte of an input picks what reads the rest (its value modulo 6):
 *  0 ms__s3_list_parse, 1 ms__s3_error_parse, 2 ms__s3_initiate_parse,
 *  3 ms__s3_complete_parse, 4 ms__sts_credentials_parse, 5 ms__s3_time_parse.
 * Each body is parsed twice: once normally, and once while allocation N fails (N from the
 * last byte, 1 to 64, every later one failing too), to walk the out-of-memory paths, expat's
 * included; LeakSanitizer checks that both free what they took. The parser always gets a
 * private copy of exactly the body's bytes, so AddressSanitizer catches any read past it.
 *
 * A success must keep every promise of s3_xml.h (caps, non-empty required fields, sizes
 * in range, a token when truncated, one-line error fields); a failure must give MS_EFORMAT,
 * MS_ENOMEM, or, for an error document where another was expected, a mapped code with
 * service_error set, always with a one-line message that names the request, and an output
 * that owns nothing. Out of memory may turn any result into MS_ENOMEM and nothing else.
 * Anything else calls abort(), which libFuzzer reports as a crash.
 *
 * Build: clang -g -O1 -std=c11 -D_GNU_SOURCE -Ilib/include -Ilib \
 *          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *          -o build/fuzz_s3_xml tests/fuzz/fuzz_s3_xml.c lib/\*.c \
 *          -lcjson -lexpat -lcrypto -lm -pthread
 * Run:   build/fuzz_s3_xml -max_len=65536 -timeout=10 build/fuzz-s3-xml tests/fuzz/corpus_s3_xml
 * Seeds: tests/fuzz/make_s3_xml_corpus.py
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "error.h"
#include "s3/s3_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz://bucket/key"

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "fuzz_s3_xml: invariant failed at line %d: %s\n", \
			        __LINE__, #cond);                                         \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* A string that exists, is NUL-terminated and at most `max` bytes. */
static void check_string(const char *s, size_t min, size_t max)
{
	size_t len;

	CHECK(s != NULL);
	len = strlen(s);
	CHECK(len >= min && len <= max);
}

/* Whether s[0, len) is well-formed UTF-8 (no overlongs, surrogates or values past 10FFFF). */
static int utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + n >= len)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* An error field: inside its buffer, one line, no C1 controls, valid UTF-8. */
static void check_error_field(const char *field, size_t size)
{
	const unsigned char *s = (const unsigned char *)field;
	size_t len;

	CHECK(memchr(field, '\0', size) != NULL);
	len = strlen(field);
	for (size_t i = 0; i < len; i++) {
		CHECK(s[i] >= 0x20 && s[i] != 0x7f);
		CHECK(!(s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f));
	}
	CHECK(len == 0 || s[len - 1] != ' ');
	CHECK(utf8_valid(s, len));
}

static void check_error(const ms__s3_error *e)
{
	CHECK(e->code[0] != '\0');
	check_error_field(e->code, sizeof(e->code));
	check_error_field(e->message, sizeof(e->message));
	check_error_field(e->request_id, sizeof(e->request_id));
	check_error_field(e->resource, sizeof(e->resource));
	check_error_field(e->server_time, sizeof(e->server_time));
	check_error_field(e->request_time, sizeof(e->request_time));
	check_error_field(e->endpoint, sizeof(e->endpoint));
	check_error_field(e->region, sizeof(e->region));
}

static int is_zero(const void *p, size_t size)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < size; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* The last error is `rc`, one line, and names the request. */
static void check_message(int rc)
{
	const ms_error *e = ms_error_last();

	CHECK(e->code == rc);
	CHECK(strncmp(e->message, NAME ": ", strlen(NAME ": ")) == 0);
	CHECK(strchr(e->message, '\n') == NULL && strchr(e->message, '\r') == NULL);
}

/* A failure of a parser that may meet an error document instead of its own. */
static void check_failure(int rc, bool service_error, const ms__s3_error *error)
{
	check_message(rc);
	if (service_error) {
		CHECK(rc == MS_ENOTFOUND || rc == MS_EACCES || rc == MS_EINVAL || rc == MS_EIO);
		CHECK(rc == ms__s3_error_to_code(error->code, 0));
		check_error(error);
	} else {
		CHECK(rc == MS_EFORMAT || rc == MS_ENOMEM);
		CHECK(is_zero(error, sizeof(*error)));
	}
}

static int run_list(const char *body, size_t len)
{
	ms__s3_list list;
	int rc = ms__s3_list_parse(&list, body, len, NAME);

	if (rc != 0) {
		check_failure(rc, list.service_error, &list.error);
		CHECK(list.objects == NULL && list.object_count == 0);
		CHECK(list.common_prefixes == NULL && list.common_prefix_count == 0);
		CHECK(list.name == NULL && list.prefix == NULL);
		CHECK(list.next_continuation_token == NULL);
		ms__s3_list_free(&list);
		return rc;
	}
	CHECK(!list.service_error);
	CHECK(list.object_count + list.common_prefix_count <= MS__S3_LIST_ENTRIES_MAX);
	CHECK(list.object_count == 0 || list.objects != NULL);
	for (size_t i = 0; i < list.object_count; i++) {
		const ms__s3_object *o = &list.objects[i];

		check_string(o->key, 1, MS__S3_XML_KEY_MAX);
		CHECK(utf8_valid((const unsigned char *)o->key, strlen(o->key)));
		CHECK(o->size <= MS__S3_SIZE_MAX);
		if (o->etag != NULL)
			check_string(o->etag, 0, MS__S3_ETAG_MAX);
		if (o->last_modified != NULL)
			check_string(o->last_modified, 0, MS__S3_TIME_MAX);
	}
	CHECK(list.common_prefix_count == 0 || list.common_prefixes != NULL);
	for (size_t i = 0; i < list.common_prefix_count; i++)
		check_string(list.common_prefixes[i], 1, MS__S3_XML_KEY_MAX);
	if (list.name != NULL)
		check_string(list.name, 0, MS__S3_XML_BUCKET_MAX);
	if (list.prefix != NULL)
		check_string(list.prefix, 0, MS__S3_XML_KEY_MAX);
	if (list.next_continuation_token != NULL)
		check_string(list.next_continuation_token, 0, MS__S3_TOKEN_MAX);
	if (list.is_truncated)
		check_string(list.next_continuation_token, 1, MS__S3_TOKEN_MAX);
	CHECK(is_zero(&list.error, sizeof(list.error)));
	ms__s3_list_free(&list);
	CHECK(list.objects == NULL && list.object_count == 0 && list.name == NULL);
	return 0;
}

static int run_error(const char *body, size_t len)
{
	ms__s3_error error;
	int rc = ms__s3_error_parse(&error, body, len, NAME);
	int raised;

	if (rc != 0) {
		check_message(rc);
		CHECK(rc == MS_EFORMAT || rc == MS_ENOMEM);
		CHECK(is_zero(&error, sizeof(error)));
		return rc;
	}
	check_error(&error);
	raised = ms__s3_error_raise(&error, 403, NAME);
	check_message(raised);
	CHECK(raised == ms__s3_error_to_code(error.code, 403));
	CHECK(raised == MS_ENOTFOUND || raised == MS_EACCES || raised == MS_EINVAL ||
	      raised == MS_EIO);
	return 0;
}

static int run_initiate(const char *body, size_t len)
{
	ms__s3_initiate initiate;
	int rc = ms__s3_initiate_parse(&initiate, body, len, NAME);

	if (rc != 0) {
		check_failure(rc, initiate.service_error, &initiate.error);
		CHECK(initiate.upload_id[0] == '\0');
		return rc;
	}
	CHECK(!initiate.service_error);
	CHECK(memchr(initiate.upload_id, '\0', sizeof(initiate.upload_id)) != NULL);
	CHECK(initiate.upload_id[0] != '\0');
	return 0;
}

static int run_complete(const char *body, size_t len)
{
	ms__s3_complete complete;
	int rc = ms__s3_complete_parse(&complete, body, len, NAME);

	if (rc != 0) {
		check_failure(rc, complete.service_error, &complete.error);
		CHECK(complete.etag[0] == '\0' && complete.location[0] == '\0');
		return rc;
	}
	CHECK(!complete.service_error);
	CHECK(memchr(complete.location, '\0', sizeof(complete.location)) != NULL);
	CHECK(memchr(complete.etag, '\0', sizeof(complete.etag)) != NULL);
	CHECK(complete.etag[0] != '\0');
	return 0;
}

static bool is_secret_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/' || c == '=';
}

/* Another character of the same class, so that the document's structure stays the same. */
static char other_secret_char(char c)
{
	if (c == 'z' || c == 'Z' || c == '9')
		return (char)(c - (c == '9' ? 9 : 25));
	if ((c >= 'a' && c < 'z') || (c >= 'A' && c < 'Z') || (c >= '0' && c < '9'))
		return (char)(c + 1);
	return c;
}

/*
 * The text of the body's first SecretAccessKey must be in no message. A message may hold
 * the same characters for other reasons (it quotes element names, and "WithWebIdentit" is
 * part of one), so when it does, the body is parsed again with every character of the
 * secret changed: if the characters came from the secret, they are gone from the new
 * message. Only secrets that look like real ones (8 or more base64 characters, ended by a
 * tag) are checked, so that the change cannot alter the document's structure.
 */
static void check_secret_unquoted(const char *body, size_t len)
{
	static const char open[] = "<SecretAccessKey>";
	const char *start = memmem(body, len, open, sizeof(open) - 1), *end;
	char secret[MS__STS_KEY_MAX + 1];
	ms__sts_credentials creds;
	size_t secret_len, offset;
	char *other;

	if (start == NULL)
		return;
	start += sizeof(open) - 1;
	end = memchr(start, '<', len - (size_t)(start - body));
	if (end == NULL)
		return;
	secret_len = (size_t)(end - start);
	if (secret_len < 8 || secret_len > MS__STS_KEY_MAX)
		return;
	for (size_t i = 0; i < secret_len; i++)
		if (!is_secret_char(start[i]))
			return;
	memcpy(secret, start, secret_len);
	secret[secret_len] = '\0';
	if (strstr(ms_error_last()->message, secret) == NULL)
		return;
	other = malloc(len);
	CHECK(other != NULL);
	memcpy(other, body, len);
	offset = (size_t)(start - body);
	for (size_t i = 0; i < secret_len; i++)
		other[offset + i] = other_secret_char(other[offset + i]);
	if (ms__sts_credentials_parse(&creds, other, len, NAME) == 0)
		ms__sts_credentials_free(&creds);
	CHECK(strstr(ms_error_last()->message, secret) != NULL);
	free(other);
}

static int run_sts(const char *body, size_t len)
{
	ms__sts_credentials creds;
	int rc = ms__sts_credentials_parse(&creds, body, len, NAME);

	if (rc != 0) {
		check_failure(rc, creds.service_error, &creds.error);
		CHECK(creds.access_key_id == NULL && creds.secret_access_key == NULL);
		CHECK(creds.session_token == NULL && creds.expiration == 0);
		check_secret_unquoted(body, len);
		return rc;
	}
	CHECK(!creds.service_error);
	check_string(creds.access_key_id, 1, MS__STS_KEY_MAX);
	check_string(creds.secret_access_key, 1, MS__STS_KEY_MAX);
	check_string(creds.session_token, 1, MS__STS_TOKEN_MAX);
	CHECK(creds.expiration >= 0 && creds.expiration <= INT64_C(253402300800));
	CHECK(is_zero(&creds.error, sizeof(creds.error)));
	ms__sts_credentials_free(&creds);
	CHECK(creds.secret_access_key == NULL);
	return 0;
}

/* A time that parses must print back as the same date and time (a leap second aside). */
static int run_time(const char *body, size_t len)
{
	int64_t value = -7;
	struct tm tm;
	time_t t;
	char back[32];

	if (ms__s3_time_parse(&value, body, len) != 0) {
		CHECK(value == -7);
		return -1;
	}
	CHECK(len >= 20 && body[len - 1] == 'Z');
	CHECK(value >= 0 && value <= INT64_C(253402300800));
	if (len >= 19 && body[17] == '6' && body[18] == '0')
		return 0;
	t = (time_t)value;
	CHECK(gmtime_r(&t, &tm) != NULL);
	CHECK(strftime(back, sizeof(back), "%Y-%m-%dT%H:%M:%S", &tm) == 19);
	CHECK(memcmp(back, body, 19) == 0);
	return 0;
}

static int run(unsigned which, const char *body, size_t len)
{
	switch (which) {
	case 0:
		return run_list(body, len);
	case 1:
		return run_error(body, len);
	case 2:
		return run_initiate(body, len);
	case 3:
		return run_complete(body, len);
	case 4:
		return run_sts(body, len);
	default:
		return run_time(body, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned which;
	size_t len;
	char *body;
	int clean, oom;
	long fail_at;

	if (size == 0)
		return 0;
	which = data[0] % 6;
	len = size - 1;
	body = malloc(len ? len : 1);
	CHECK(body != NULL);
	if (len > 0)
		memcpy(body, data + 1, len);

	clean = run(which, body, len);
	if (which < 5) {
		/* Allocation N fails, and every one after it; N from the input, 1 to 64. */
		fail_at = 1 + (long)(data[size - 1] % 64);
		ms__alloc_fail_at(fail_at, 1);
		oom = run(which, body, len);
		ms__alloc_fail_at(0, 0);
		CHECK(oom == clean || oom == MS_ENOMEM);
	}
	free(body);
	return 0;
}
