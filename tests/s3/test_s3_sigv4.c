/*
 * test_s3_sigv4.c - AWS Signature Version 4 (lib/s3_sigv4.c): byte-for-byte agreement with
 * botocore on every vector of tests/fixtures/sigv4_vectors.json (made by
 * tests/support/sigv4_vectors.py; tests/check_sigv4_vectors.sh keeps it current), the
 * examples of the AWS S3 documentation, and the signer's own rules: session tokens,
 * header trimming, caps on every input, inputs unfit for the wire, and error messages that
 * never carry a secret.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "s3/s3_sigv4.h"

TestSuite(s3_sigv4, .timeout = 30);

#define VECTORS_PATH "tests/fixtures/sigv4_vectors.json"
/* The committed file has this many vectors; fewer means it was cut or emptied. */
#define VECTORS_MIN 17
#define SECRET      "SeCrEt-DO-NOT-LEAK-wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
#define TOKEN       "ToKeN-DO-NOT-LEAK-IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJH"
/* 2024-01-02T03:04:05Z */
#define TIME_2024 1704164645

static const ms__aws_credentials example_creds = {
    .access_key_id = "AKIAIOSFODNN7EXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};

static const ms__http_header range_header[] = {{"Range", "bytes=0-9"}};

/* A plain S3 GET of one range, which each test bends to its purpose. */
static ms__sigv4_request get_request(void)
{
	return (ms__sigv4_request){
	    .method = "GET",
	    .host = "my-bucket.s3.us-east-1.amazonaws.com",
	    .path = "/model.safetensors",
	    .headers = range_header,
	    .header_count = 1,
	    .region = "us-east-1",
	    .service = "s3",
	    .time = TIME_2024,
	};
}

/* The canonical request of `req`, or the test fails. */
static const char *canonical(char *buffer, size_t size, const ms__sigv4_request *req,
                             const ms__aws_credentials *creds)
{
	size_t len;
	int rc = ms__sigv4_canonical_request(buffer, size, &len, req, creds);

	cr_assert_eq(rc, 0, "canonical request failed: %s", ms_error_last()->message);
	cr_assert_eq(len, strlen(buffer));
	return buffer;
}

/* The Signature=... part of an Authorization value. */
static const char *signature_of(const ms__sigv4_result *r)
{
	const char *s = strstr(r->authorization, "Signature=");

	cr_assert_not_null(s);
	cr_assert_eq(strlen(s + 10), 64);
	return s + 10;
}

static void assert_result_empty(const ms__sigv4_result *r)
{
	cr_assert_eq(r->authorization[0], '\0');
	cr_assert_eq(r->amz_date[0], '\0');
	cr_assert_eq(r->string_to_sign[0], '\0');
	cr_assert_null(r->security_token);
}

/* ---------------------------------------------------------------------------------------- */
/* Agreement with botocore and AWS                                                            */
/* ---------------------------------------------------------------------------------------- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *text;
	long size;

	cr_assert_not_null(f, "cannot open %s (tests run from the repository root)", path);
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	cr_assert_gt(size, 0);
	cr_assert_eq(fseek(f, 0, SEEK_SET), 0);
	text = malloc((size_t)size + 1);
	cr_assert_not_null(text);
	cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
	text[size] = '\0';
	fclose(f);
	return text;
}

static const char *string_or_null(const cJSON *object, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

	if (cJSON_IsNull(item))
		return NULL;
	cr_assert(cJSON_IsString(item), "vector field %s is not a string", key);
	return item->valuestring;
}

static const char *string_field(const cJSON *object, const char *key)
{
	const char *s = string_or_null(object, key);

	cr_assert_not_null(s, "vector field %s is null", key);
	return s;
}

static void check_vector(const cJSON *v)
{
	const char *name = string_field(v, "name");
	const cJSON *expected = cJSON_GetObjectItemCaseSensitive(v, "expected");
	const cJSON *headers = cJSON_GetObjectItemCaseSensitive(v, "headers");
	const cJSON *when = cJSON_GetObjectItemCaseSensitive(v, "time");
	const char *body = string_or_null(v, "body");
	const char *token = string_or_null(expected, "x_amz_security_token");
	ms__http_header header_list[MS__SIGV4_HEADERS_MAX];
	ms__aws_credentials creds = {
	    .access_key_id = string_field(v, "access_key_id"),
	    .secret_access_key = string_field(v, "secret_access_key"),
	    .session_token = string_or_null(v, "session_token"),
	};
	ms__sigv4_request req = {
	    .method = string_field(v, "method"),
	    .host = string_field(v, "host"),
	    .path = string_field(v, "path"),
	    .query = string_field(v, "query"),
	    .headers = header_list,
	    .payload_sha256 = string_or_null(v, "payload_sha256"),
	    .region = string_field(v, "region"),
	    .service = string_field(v, "service"),
	};
	char body_sha256[65];
	char text[16384];
	ms__sigv4_result result;
	ms__http_header added[MS__SIGV4_RESULT_HEADERS];
	size_t header_count = 0;
	int rc;

	cr_assert(cJSON_IsObject(expected) && cJSON_IsArray(headers) && cJSON_IsNumber(when),
	          "%s: malformed vector", name);
	req.time = (int64_t)when->valuedouble;
	for (const cJSON *h = headers->child; h != NULL; h = h->next) {
		cr_assert_lt(req.header_count, MS__SIGV4_HEADERS_MAX);
		cr_assert_eq(cJSON_GetArraySize(h), 2, "%s: a header is not [name, value]", name);
		header_list[req.header_count].name = cJSON_GetArrayItem(h, 0)->valuestring;
		header_list[req.header_count].value = cJSON_GetArrayItem(h, 1)->valuestring;
		req.header_count++;
	}
	if (body != NULL) {
		cr_assert_eq(ms__sha256_hex(body_sha256, body, strlen(body)), 0);
		cr_expect_str_eq(body_sha256, string_field(v, "body_sha256"), "%s: body hash",
		                 name);
		req.payload_sha256 = body_sha256;
	}

	rc = ms__sigv4_canonical_request(text, sizeof(text), &(size_t){0}, &req, &creds);
	cr_assert_eq(rc, 0, "%s: %s", name, ms_error_last()->message);
	cr_expect_str_eq(text, string_field(expected, "canonical_request"),
	                 "%s: canonical request differs from botocore's", name);

	rc = ms__sigv4_sign(&result, &req, &creds);
	cr_assert_eq(rc, 0, "%s: %s", name, ms_error_last()->message);
	cr_expect_str_eq(result.string_to_sign, string_field(expected, "string_to_sign"),
	                 "%s: string to sign", name);
	cr_expect_str_eq(result.authorization, string_field(expected, "authorization"),
	                 "%s: Authorization", name);
	cr_expect_str_eq(result.amz_date, string_field(expected, "x_amz_date"), "%s: x-amz-date",
	                 name);
	cr_expect_str_eq(result.content_sha256, string_field(expected, "x_amz_content_sha256"),
	                 "%s: x-amz-content-sha256", name);
	if (token == NULL)
		cr_expect_null(result.security_token, "%s: x-amz-security-token", name);
	else
		cr_expect_str_eq(result.security_token, token, "%s: x-amz-security-token", name);

	/* Every header botocore added is listed, and nothing else. */
	header_count = ms__sigv4_headers(added, &result);
	cr_expect_eq(header_count, 2 + (result.content_sha256[0] != '\0') + (token != NULL),
	             "%s: header count", name);
}

Test(s3_sigv4, matches_botocore_on_every_vector)
{
	char *text = read_file(VECTORS_PATH);
	cJSON *document = cJSON_Parse(text);
	const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(document, "vectors");
	int checked = 0;

	cr_assert(cJSON_IsArray(vectors), VECTORS_PATH " has no \"vectors\" array");
	for (const cJSON *v = vectors->child; v != NULL; v = v->next) {
		check_vector(v);
		checked++;
	}
	cr_assert_geq(checked, VECTORS_MIN, "only %d vectors in " VECTORS_PATH, checked);
	cJSON_Delete(document);
	free(text);
}

/* The GET Object and ListObjects examples of the S3 documentation ("Signature Calculations
 * for the Authorization Header"), a check that does not depend on botocore. */
Test(s3_sigv4, matches_the_aws_documentation_examples)
{
	ms__sigv4_request req = {
	    .method = "GET",
	    .host = "examplebucket.s3.amazonaws.com",
	    .path = "/test.txt",
	    .headers = range_header,
	    .header_count = 1,
	    .region = "us-east-1",
	    .service = "s3",
	    .time = 1369353600, /* 2013-05-24T00:00:00Z */
	};
	ms__sigv4_result r;
	char text[1024];

	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), 0);
	cr_assert_str_eq(
	    canonical(text, sizeof(text), &req, &example_creds),
	    "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
	    "x-amz-content-sha256:"
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
	    "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	cr_assert_str_eq(r.string_to_sign,
	                 "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
	                 "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	cr_assert_str_eq(signature_of(&r),
	                 "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

	req.path = "/";
	req.query = "max-keys=2&prefix=J";
	req.header_count = 0;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), 0);
	cr_assert_str_eq(signature_of(&r),
	                 "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

Test(s3_sigv4, sha256_hex_known_answers)
{
	char hex[65];

	cr_assert_eq(ms__sha256_hex(hex, "", 0), 0);
	cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	cr_assert_eq(ms__sha256_hex(hex, "abc", 3), 0);
	cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* ---------------------------------------------------------------------------------------- */
/* The signer's rules                                                                         */
/* ---------------------------------------------------------------------------------------- */

Test(s3_sigv4, session_token_is_signed_only_when_present)
{
	ms__sigv4_request req = get_request();
	ms__aws_credentials creds = example_creds;
	ms__sigv4_result without, empty, with;
	ms__http_header added[MS__SIGV4_RESULT_HEADERS];
	char text[2048];

	cr_assert_eq(ms__sigv4_sign(&without, &req, &creds), 0);
	cr_assert_null(without.security_token);
	cr_assert_null(strstr(without.authorization, "x-amz-security-token"));
	cr_assert_null(strstr(canonical(text, sizeof(text), &req, &creds), "x-amz-security-token"));
	cr_assert_eq(ms__sigv4_headers(added, &without), 3);

	/* An empty token is no token, as in botocore. */
	creds.session_token = "";
	cr_assert_eq(ms__sigv4_sign(&empty, &req, &creds), 0);
	cr_assert_str_eq(empty.authorization, without.authorization);
	cr_assert_null(empty.security_token);

	creds.session_token = TOKEN;
	cr_assert_eq(ms__sigv4_sign(&with, &req, &creds), 0);
	cr_assert_eq(with.security_token, creds.session_token, "the caller's string, not a copy");
	cr_assert_not_null(strstr(with.authorization,
	                          "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;"
	                          "x-amz-security-token, "));
	cr_assert_not_null(strstr(canonical(text, sizeof(text), &req, &creds),
	                          "\nx-amz-security-token:" TOKEN "\n"));
	cr_assert_str_neq(signature_of(&with), signature_of(&without));
	cr_assert_eq(ms__sigv4_headers(added, &with), 4);
	cr_assert_str_eq(added[0].name, "Authorization");
	cr_assert_eq(added[0].value, with.authorization);
	cr_assert_str_eq(added[1].name, "x-amz-date");
	cr_assert_str_eq(added[1].value, "20240102T030405Z");
	cr_assert_str_eq(added[2].name, "x-amz-content-sha256");
	cr_assert_str_eq(added[3].name, "x-amz-security-token");
	cr_assert_str_eq(added[3].value, TOKEN);
}

Test(s3_sigv4, header_values_are_trimmed_and_names_lowered)
{
	const ms__http_header messy[] = {{"X-Amz-Meta-Note", "  a   b\t\t c  "},
	                                 {"x-amz-meta-blank", " \t "}};
	const ms__http_header tidy[] = {{"x-amz-meta-note", "a b c"}, {"X-AMZ-META-BLANK", ""}};
	ms__sigv4_request req = get_request();
	ms__sigv4_result r_messy, r_tidy;
	char text[2048];

	req.headers = messy;
	req.header_count = 2;
	canonical(text, sizeof(text), &req, &example_creds);
	cr_assert_not_null(strstr(text, "\nx-amz-meta-blank:\nx-amz-meta-note:a b c\n"), "%s",
	                   text);
	cr_assert_not_null(strstr(text, "x-amz-date;x-amz-meta-blank;x-amz-meta-note\n"));
	cr_assert_eq(ms__sigv4_sign(&r_messy, &req, &example_creds), 0);

	/* The same headers written tidily sign the same: only the trimmed form counts. */
	req.headers = tidy;
	cr_assert_eq(ms__sigv4_sign(&r_tidy, &req, &example_creds), 0);
	cr_assert_str_eq(r_messy.authorization, r_tidy.authorization);
}

Test(s3_sigv4, inputs_at_the_caps_pass_and_over_them_fail)
{
	static char long_path[MS__SIGV4_PATH_MAX + 2];
	static char long_query[MS__SIGV4_QUERY_MAX + 2];
	static char long_value[MS__SIGV4_HEADER_VALUE_MAX + 2];
	static char long_token[MS__SIGV4_SESSION_TOKEN_MAX + 2];
	static char long_secret[MS__SIGV4_SECRET_MAX + 2];
	static char many_params[MS__SIGV4_QUERY_PARAMS_MAX * 4 + 8];
	ms__http_header many_headers[MS__SIGV4_HEADERS_MAX + 1];
	char names[MS__SIGV4_HEADERS_MAX + 1][16];
	ms__http_header one_header[1];
	ms__aws_credentials creds = example_creds;
	ms__sigv4_request req;
	ms__sigv4_result r;

	/* Path: exactly the cap signs; one byte more does not. */
	req = get_request();
	long_path[0] = '/';
	memset(long_path + 1, 'p', MS__SIGV4_PATH_MAX - 1);
	req.path = long_path;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	long_path[MS__SIGV4_PATH_MAX] = 'p';
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	assert_result_empty(&r);
	cr_assert_not_null(strstr(ms_error_last()->message, "path is longer than 4096"), "%s",
	                   ms_error_last()->message);

	/* Query string. */
	req = get_request();
	memset(long_query, 'q', MS__SIGV4_QUERY_MAX);
	req.query = long_query;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	long_query[MS__SIGV4_QUERY_MAX] = 'q';
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	assert_result_empty(&r);

	/* Query parameters: 64 pass, 65 do not. */
	req = get_request();
	for (int i = 0; i < MS__SIGV4_QUERY_PARAMS_MAX; i++)
		memcpy(many_params + 4 * i, "a=1&", 4);
	req.query = many_params;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	many_params[4 * MS__SIGV4_QUERY_PARAMS_MAX] = 'b';
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "more than 64 parameters"));

	/* Headers: 32 pass, 33 do not. */
	req = get_request();
	for (int i = 0; i <= MS__SIGV4_HEADERS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "x-amz-meta-%d", i);
		many_headers[i] = (ms__http_header){names[i], "v"};
	}
	req.headers = many_headers;
	req.header_count = MS__SIGV4_HEADERS_MAX;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	req.header_count = MS__SIGV4_HEADERS_MAX + 1;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	assert_result_empty(&r);

	/* One header's value. */
	req = get_request();
	memset(long_value, 'v', MS__SIGV4_HEADER_VALUE_MAX);
	one_header[0] = (ms__http_header){"x-amz-meta-long", long_value};
	req.headers = one_header;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	long_value[MS__SIGV4_HEADER_VALUE_MAX] = 'v';
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);

	/* Session token and secret key. */
	req = get_request();
	memset(long_token, 't', MS__SIGV4_SESSION_TOKEN_MAX);
	creds.session_token = long_token;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	long_token[MS__SIGV4_SESSION_TOKEN_MAX] = 't';
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	assert_result_empty(&r);
	creds.session_token = NULL;
	memset(long_secret, 's', MS__SIGV4_SECRET_MAX);
	creds.secret_access_key = long_secret;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	long_secret[MS__SIGV4_SECRET_MAX] = 's';
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	assert_result_empty(&r);
}

Test(s3_sigv4, error_messages_never_hold_the_secret_token_or_signature)
{
	static char long_secret[4 * sizeof(SECRET)];
	ms__aws_credentials creds = {"AKIAIOSFODNN7EXAMPLE", SECRET, TOKEN};
	ms__http_header secret_value[] = {{"x-amz-meta-key", "HeaderValue-DO-NOT-LEAK\r\n"}};
	ms__http_header reserved[] = {{"Authorization", "AWS4-HMAC-SHA256 DO-NOT-LEAK"}};
	ms__sigv4_request req = get_request();
	ms__sigv4_result r;
	char signature[65];
	char small[16];
	size_t needed;

	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0);
	memcpy(signature, signature_of(&r), sizeof(signature));

	/* Each case fails in its own way; none may echo a secret in its message. */
	for (int step = 0;; step++) {
		ms__sigv4_request bad = req;
		ms__aws_credentials bad_creds = creds;
		int rc;

		switch (step) {
		case 0:
			bad.path = "/has space";
			break;
		case 1:
			bad.headers = secret_value;
			break;
		case 2:
			bad.headers = reserved;
			break;
		case 3:
			bad.payload_sha256 = "not-a-hash";
			break;
		case 4:
			bad.region = "us east 1";
			break;
		case 5:
			bad.time = -1;
			break;
		case 6:
			for (size_t i = 0; i + sizeof(SECRET) <= sizeof(long_secret);
			     i += sizeof(SECRET) - 1)
				memcpy(long_secret + i, SECRET, sizeof(SECRET));
			bad_creds.secret_access_key = long_secret;
			break;
		case 7:
			bad_creds.session_token = TOKEN "\r\nx-evil: 1";
			break;
		case 8:
			bad_creds.access_key_id = "AKIA/" SECRET;
			break;
		case 9:
			bad.query = "a=%zz" SECRET;
			break;
		default:
			goto out;
		}
		if (step == 9) {
			/* The canonical request holds the token; a cut copy must not leak it
			 * either. */
			rc = ms__sigv4_canonical_request(small, sizeof(small), &needed, &req,
			                                 &creds);
			cr_assert_eq(rc, MS_EINVAL);
			cr_assert_null(strstr(ms_error_last()->message, TOKEN));
		}
		rc = ms__sigv4_sign(&r, &bad, &bad_creds);
		cr_assert_eq(rc, MS_EINVAL, "step %d signed", step);
		assert_result_empty(&r);
		cr_assert_null(strstr(ms_error_last()->message, "DO-NOT-LEAK"), "step %d: %s", step,
		               ms_error_last()->message);
		cr_assert_null(strstr(ms_error_last()->message, signature), "step %d", step);
	}
out:;
}

Test(s3_sigv4, caller_may_not_set_the_signers_headers_or_repeat_one)
{
	static const char *const owned[] = {
	    "Host",       "authorization",        "DATE",
	    "X-Amz-Date", "x-amz-content-sha256", "X-Amz-Security-Token"};
	ms__http_header h[2];
	ms__sigv4_request req = get_request();
	ms__sigv4_result r;

	req.headers = h;
	req.header_count = 1;
	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
		h[0] = (ms__http_header){owned[i], "x"};
		cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL, "%s", owned[i]);
		cr_assert_not_null(strstr(ms_error_last()->message, "set by the signer"));
	}
	h[0] = (ms__http_header){"Range", "bytes=0-1"};
	h[1] = (ms__http_header){"range", "bytes=2-3"};
	req.header_count = 2;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "given twice"));
	h[1] = (ms__http_header){"bad name", "x"};
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL);
	h[1] = (ms__http_header){"x-amz-meta-a", "line\nbreak"};
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL);
	h[1] = (ms__http_header){"x-amz-meta-a", "caf\xc3\xa9"};
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL, "non-ASCII value");
}

Test(s3_sigv4, query_is_decoded_before_it_is_encoded)
{
	ms__sigv4_request req = get_request();
	ms__sigv4_result r;
	char text[2048];

	/* Lower-case escapes are upper-cased, unreserved ones decoded, '+' is a plus. */
	req.query = "prefix=a%2fb%7e+c&delimiter=%2F&z";
	canonical(text, sizeof(text), &req, &example_creds);
	cr_assert_not_null(
	    strstr(text, "\n/model.safetensors\ndelimiter=%2F&prefix=a%2Fb~%2Bc&z=\n"), "%s", text);

	/* Nothing the wire cannot carry as it is, and no broken escapes. */
	static const char *const bad[] = {"a=%zz",    "a=%2",   "a=%",          "a b=1",
	                                  "a=1#frag", "a=\x01", "a=caf\xc3\xa9"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.query = bad[i];
		cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL, "query %zu", i);
	}
}

Test(s3_sigv4, paths_are_signed_as_sent_in_s3_only)
{
	ms__sigv4_request req = get_request();
	ms__sigv4_result r;
	char text[2048];

	/* S3 signs dot segments and doubled slashes as they are. */
	req.path = "/b/./k/../x//y";
	canonical(text, sizeof(text), &req, &example_creds);
	cr_assert_eq(strncmp(text, "GET\n/b/./k/../x//y\n", 19), 0, "%s", text);

	/* Elsewhere they would be normalised away, so they are refused. */
	req.service = "sts";
	static const char *const not_normal[] = {"/b/./k", "/b/../k", "/b//k", "//", "/.."};
	for (size_t i = 0; i < sizeof(not_normal) / sizeof(not_normal[0]); i++) {
		req.path = not_normal[i];
		cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL, "%s",
		             not_normal[i]);
	}
	req.path = "/a%2Fb/";
	canonical(text, sizeof(text), &req, &example_creds);
	cr_assert_eq(strncmp(text, "GET\n/a%252Fb/\n", 14), 0, "%s", text);
	cr_assert_null(strstr(text, "x-amz-content-sha256"), "S3's header only");

	req.service = "s3";
	static const char *const bad[] = {"", "model", "/a b", "/a?b", "/a#b", "/%zz", "/\xc3\xa9"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req.path = bad[i];
		cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL, "path %zu", i);
	}
}

Test(s3_sigv4, other_fields_are_checked)
{
	ms__sigv4_request req = get_request();
	ms__aws_credentials creds = example_creds;
	ms__sigv4_result r;

	req.method = "get";
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	req = get_request();
	req.host = "evil/host";
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	req = get_request();
	req.service = "s3/x";
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	req = get_request();
	req.payload_sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL, "upper-case hex is not a hash");
	req.payload_sha256 = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0);
	cr_assert_str_eq(r.content_sha256, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
	req = get_request();
	creds.access_key_id = "";
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	creds = example_creds;
	creds.secret_access_key = NULL;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), MS_EINVAL);
	cr_assert_eq(ms__sigv4_sign(&r, &req, NULL), MS_EINVAL);
	cr_assert_eq(ms__sigv4_sign(&r, NULL, &example_creds), MS_EINVAL);
	req.headers = NULL;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL, "count 1, no array");
}

Test(s3_sigv4, time_covers_1970_to_9999)
{
	ms__sigv4_request req = get_request();
	ms__sigv4_result r;

	req.time = 0;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), 0);
	cr_assert_str_eq(r.amz_date, "19700101T000000Z");
	req.time = INT64_C(253402300799);
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), 0);
	cr_assert_str_eq(r.amz_date, "99991231T235959Z");
	cr_assert_not_null(strstr(r.authorization, "/99991231/us-east-1/s3/aws4_request"));
	req.time = INT64_C(253402300800);
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL);
	req.time = -1;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL);
	req.time = INT64_MIN;
	cr_assert_eq(ms__sigv4_sign(&r, &req, &example_creds), MS_EINVAL);
}

Test(s3_sigv4, canonical_request_buffer_too_small_reports_the_size)
{
	ms__sigv4_request req = get_request();
	char full[2048], cut[64];
	size_t len, needed;
	int rc;

	canonical(full, sizeof(full), &req, &example_creds);
	len = strlen(full);
	rc = ms__sigv4_canonical_request(cut, sizeof(cut), &needed, &req, &example_creds);
	cr_assert_eq(rc, MS_EINVAL);
	cr_assert_eq(needed, len);
	cr_assert_eq(strlen(cut), sizeof(cut) - 1, "a NUL-terminated prefix");
	cr_assert_eq(strncmp(cut, full, sizeof(cut) - 1), 0);

	/* Exactly the text and its NUL fit. */
	char *exact = malloc(len + 1);
	cr_assert_not_null(exact);
	cr_assert_eq(ms__sigv4_canonical_request(exact, len + 1, &needed, &req, &example_creds), 0);
	cr_assert_str_eq(exact, full);
	cr_assert_eq(ms__sigv4_canonical_request(exact, len, &needed, &req, &example_creds),
	             MS_EINVAL);
	free(exact);
}

Test(s3_sigv4, signing_never_uses_the_allocator)
{
	ms__sigv4_request req = get_request();
	ms__aws_credentials creds = example_creds;
	ms__sigv4_result r;
	long before;

	creds.session_token = TOKEN;
	req.query = "list-type=2&prefix=a%2Fb";
	before = ms__alloc_count();
	/* Every allocation through lib/alloc.h would fail now; signing must not notice. */
	ms__alloc_fail_at(1, 1);
	cr_assert_eq(ms__sigv4_sign(&r, &req, &creds), 0, "%s", ms_error_last()->message);
	ms__alloc_fail_at(0, 0);
	cr_assert_eq(ms__alloc_count(), before);
}
