/*
 * fuzz_creds_json.c - a libFuzzer target for the credentials JSON parser
 * (ms__creds_parse_json), which reads what container endpoints (ECS, EKS Pod Identity) and
 * EC2 instance metadata send: {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}, with
 * "Code" (and "Message") from IMDS.
 *
 * The whole input is the response body. Each body is checked three ways:
 *  1. parsed from a private copy of exactly its bytes (AddressSanitizer catches any read
 *     past the end). The result must be 0, MS_EFORMAT or MS_EACCES. A success must match
 *     what cJSON itself reads from the body: the same key id, secret and token, each
 *     non-empty where required, within its cap and NUL-terminated inside its buffer, and the
 *     expiration that ms__s3_time_parse() gives for Expiration; a Code, if any, is
 *     "Success". A failure leaves the output zeroed and raises its code with a one-line
 *     message, free of control bytes, that starts with the source's name;
 *  2. on a failure whose message holds the text of SecretAccessKey or Token (8 bytes or
 *     more), the body is printed again by cJSON with every letter and digit of both values
 *     changed, and parsed again: the result must be the same, and the text must still be in
 *     the message, which shows that it came from another field (a Code or Message that
 *     quotes it, or the message's own words) and not from the secret;
 *  3. parsed again while allocation N fails (N from the last byte, 1 to 32, every later one
 *     failing too), which may only turn the result into MS_ENOMEM; LeakSanitizer checks
 *     that every path frees what it took.
 * Anything else calls abort(), which libFuzzer reports as a crash.
 *
 * Build (with every lib/ source file, as the Makefile's fuzz rule does):
 *        clang -g -O1 -std=c11 -D_GNU_SOURCE -Ilib/include -Ilib
 *        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 *        -o build/fuzz_creds_json tests/fuzz/fuzz_creds_json.c lib/\*.c
 *        -lcurl -lcjson -lexpat -lcrypto -lm -pthread
 * Run:   build/fuzz_creds_json -max_len=65536 -timeout=10 build/fuzz-corpus-creds_json
 *        tests/fuzz/corpus_creds_json
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "error.h"
#include "s3/s3_creds_fetch.h"
#include "s3/s3_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WHAT "fuzz-creds-json"

/* Secrets shorter than this may well be in a message by chance ("Code", "Success"). */
#define SECRET_MIN 8

#define CHECK(cond)                                                                           \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "fuzz_creds_json: invariant failed at line %d: %s\n", \
			        __LINE__, #cond);                                             \
			abort();                                                              \
		}                                                                             \
	} while (0)

static bool is_zero(const void *p, size_t size)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < size; i++)
		if (b[i] != 0)
			return false;
	return true;
}

/* A string field of the output: NUL-terminated inside its buffer, of a length in range. */
static void check_field(const char *field, size_t size, size_t min)
{
	const char *nul = memchr(field, '\0', size);

	CHECK(nul != NULL);
	CHECK((size_t)(nul - field) >= min);
}

/* The last error is `rc`, on one line without control bytes, and names the source. */
static void check_message(int rc)
{
	const ms_error *e = ms_error_last();

	CHECK(e->code == rc);
	CHECK(strncmp(e->message, WHAT ": ", strlen(WHAT ": ")) == 0);
	for (const unsigned char *c = (const unsigned char *)e->message; *c != '\0'; c++)
		CHECK(*c >= 0x20 && *c != 0x7f);
}

/* Parses `len` bytes from a buffer of exactly that size. */
static int parse_copy(ms__creds *out, const char *body, size_t len)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	CHECK(copy != NULL);
	if (len > 0)
		memcpy(copy, body, len);
	rc = ms__creds_parse_json(out, copy, len, WHAT);
	free(copy);
	return rc;
}

/* The body as cJSON reads it, for comparing; NULL when it is not an object. */
static cJSON *reference(const char *body, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(body, len);

	if (root != NULL && !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		root = NULL;
	}
	return root;
}

static const char *string_of(const cJSON *root, const char *name)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* A success must give exactly what the document holds. */
static void check_success(const ms__creds *c, const cJSON *root)
{
	const char *code = string_of(root, "Code"), *token = string_of(root, "Token");
	const char *expiration = string_of(root, "Expiration");
	int64_t expires = -1;

	check_field(c->access_key_id, sizeof(c->access_key_id), 1);
	check_field(c->secret_access_key, sizeof(c->secret_access_key), 1);
	check_field(c->session_token, sizeof(c->session_token), 0);
	CHECK(root != NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(root, "Code") == NULL ||
	      (code != NULL && strcmp(code, "Success") == 0));
	CHECK(strcmp(c->access_key_id, string_of(root, "AccessKeyId")) == 0);
	CHECK(strcmp(c->secret_access_key, string_of(root, "SecretAccessKey")) == 0);
	CHECK(strcmp(c->session_token, token != NULL ? token : "") == 0);
	CHECK(expiration != NULL);
	CHECK(ms__s3_time_parse(&expires, expiration, strlen(expiration)) == 0);
	CHECK(c->expiration == expires);
	CHECK(c->expiration >= 0 && c->expiration <= INT64_C(253402300800));
}

/* Changes every letter and digit of the string `name` in place; false if it has none. */
static bool change_value(cJSON *root, const char *name)
{
	cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
	bool changed = false;

	if (!cJSON_IsString(item))
		return false;
	for (char *c = item->valuestring; *c != '\0'; c++) {
		if ((*c >= 'a' && *c < 'z') || (*c >= 'A' && *c < 'Z') || (*c >= '0' && *c < '9'))
			*c = (char)(*c + 1);
		else if (*c == 'z' || *c == 'Z')
			*c = (char)(*c - 25);
		else if (*c == '9')
			*c = '0';
		else
			continue;
		changed = true;
	}
	return changed;
}

/*
 * After a failure: if the message holds the secret key or the session token of the
 * document, parses the document again with both changed, and checks that the text is still
 * there (so it came from elsewhere).
 */
static void check_no_secret(int rc, cJSON *root)
{
	static const char *const secrets[] = {"SecretAccessKey", "Token"};
	char message[MS__ERROR_MAX];
	char *printed;
	ms__creds again;
	int rc_again;

	if (root == NULL)
		return;
	snprintf(message, sizeof(message), "%s", ms_error_last()->message);
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
		const char *secret = string_of(root, secrets[i]);
		bool changed_key, changed_token;
		char *saved;

		if (secret == NULL || strlen(secret) < SECRET_MIN ||
		    memmem(message, strlen(message), secret, strlen(secret)) == NULL)
			continue;
		saved = strdup(secret);
		CHECK(saved != NULL);
		changed_key = change_value(root, "SecretAccessKey");
		changed_token = change_value(root, "Token");
		if (!changed_key && !changed_token) {
			free(saved);
			return; /* nothing to change: cannot tell where the text came from */
		}
		printed = cJSON_PrintUnformatted(root);
		CHECK(printed != NULL);
		rc_again = parse_copy(&again, printed, strlen(printed));
		cJSON_free(printed);
		CHECK(rc_again == rc);
		/* The secret's text must not have left with the secret. */
		CHECK(memmem(ms_error_last()->message, strlen(ms_error_last()->message), saved,
		             strlen(saved)) != NULL);
		free(saved);
		return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	ms__creds c, oom;
	cJSON *root;
	long fail_at;
	int rc, rc_oom;

	/* 1. The parse itself, checked against cJSON's own reading. */
	rc = parse_copy(&c, body, size);
	CHECK(rc == 0 || rc == MS_EFORMAT || rc == MS_EACCES);
	root = size <= MS__CREDS_BODY_MAX ? reference(body, size) : NULL;
	if (rc == 0) {
		check_success(&c, root);
	} else {
		check_message(rc);
		CHECK(is_zero(&c, sizeof(c)));
		CHECK(rc != MS_EACCES || cJSON_GetObjectItemCaseSensitive(root, "Code") != NULL);
		/* 2. No secret in the message. */
		check_no_secret(rc, root);
	}
	cJSON_Delete(root);

	/* 3. Out of memory from allocation N on. */
	fail_at = 1 + (long)(size > 0 ? data[size - 1] % 32 : 0);
	ms__alloc_fail_at(fail_at, 1);
	rc_oom = parse_copy(&oom, body, size);
	ms__alloc_fail_at(0, 0);
	CHECK(rc_oom == rc || rc_oom == MS_ENOMEM);
	if (rc_oom == MS_ENOMEM) {
		check_message(rc_oom);
		CHECK(is_zero(&oom, sizeof(oom)));
	} else if (rc_oom == 0) {
		CHECK(memcmp(&oom, &c, sizeof(c)) == 0);
	}
	ms__creds_clear(&c);
	ms__creds_clear(&oom);
	return 0;
}
