/*
 * fuzz_aws_config.c - a libFuzzer target for the AWS config and credentials parser, and
 * for the endpoint resolution that reads what it parsed.
 *
 * The first byte of an input holds flags, the rest is the file:
 *   bit 0     parse as a credentials file (else a config file);
 *   bits 1-2  the addressing style asked for when resolving (auto, path, virtual, auto);
 *   bits 3-4  which environment the resolution sees (none, a region, a loopback endpoint,
 *             RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1);
 *   bit 7     also take the file's first line as an s3:// or gs:// URL and resolve it.
 * Each input is checked four ways:
 *  1. parsed from a private copy of exactly its bytes (AddressSanitizer catches any read
 *     past the end): the result must be 0, or MS_EINVAL with a one-line message that
 *     starts with the path; every value kept must be non-empty, trimmed, free of control
 *     bytes and within the line cap;
 *  2. parsed again with every letter and digit after the first '=' or ':' of each line
 *     replaced: since messages name only the file and line, both parses must give the same
 *     code and the same message, so a message that quoted a value (a secret) would differ;
 *  3. parsed again while allocation N fails (N from the input), which may only turn the
 *     result into MS_ENOMEM; LeakSanitizer checks that the failure paths free everything;
 *  4. after a successful parse, each profile's values are resolved into endpoints for a
 *     few URLs, and its kind of credentials is asked for; then both again with the
 *     secrets overwritten: the same codes and messages both times (no secret in a
 *     message), and every location must build a URL.
 * Anything else calls abort(), which libFuzzer reports as a crash.
 *
 * Build (with every lib/ source file, as the Makefile's fuzz_header rule does):
 *        clang -g -O1 -std=c11 -D_GNU_SOURCE -Ilib/include -Ilib
 *        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
 *        -o build/fuzz_aws_config tests/fuzz/fuzz_aws_config.c $(ls lib/[a-z]*.c)
 *        -lcjson -lexpat -lcrypto -lm -pthread
 * Run:   build/fuzz_aws_config -max_len=8192 build/fuzz-aws-corpus tests/fuzz/corpus_aws_config
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "s3/s3_config.h"
#include "s3/s3_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATH "fuzz-aws-config"

#define CHECK(cond)                                                                           \
	do {                                                                                  \
		if (!(cond)) {                                                                \
			fprintf(stderr, "fuzz_aws_config: invariant failed at line %d: %s\n", \
			        __LINE__, #cond);                                             \
			abort();                                                              \
		}                                                                             \
	} while (0)

static const char *const environments[4][3] = {
    {NULL},
    {"AWS_REGION=eu-west-1", NULL},
    {"AWS_ENDPOINT_URL=http://localhost:9000", NULL},
    {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL},
};

static const char *table_getenv(const char *name, void *payload)
{
	const char *const *entry = payload;
	size_t n = strlen(name);

	for (; entry != NULL && *entry != NULL; entry++)
		if (strncmp(*entry, name, n) == 0 && (*entry)[n] == '=')
			return *entry + n + 1;
	return NULL;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void check_printable_line(const char *s)
{
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++)
		CHECK(*c >= 0x20 || *c == '\t');
}

static void check_message(int rc)
{
	const ms_error *e = ms_error_last();

	CHECK(e->code == rc);
	CHECK(strchr(e->message, '\n') == NULL && strchr(e->message, '\r') == NULL);
}

static void check_section(const ms__aws_profile *p, bool services)
{
	CHECK(p->name != NULL && p->name[0] != '\0');
	check_printable_line(p->name);
	for (size_t k = 0; k < MS__AWS_KEY_COUNT_; k++) {
		const char *v = p->values[k];
		size_t len;

		if (v == NULL) {
			CHECK(p->origins[k] == MS__AWS_FILE_NONE);
			continue;
		}
		CHECK(!services || k == MS__AWS_S3_ENDPOINT_URL);
		CHECK(p->origins[k] == MS__AWS_FILE_CONFIG ||
		      p->origins[k] == MS__AWS_FILE_CREDENTIALS);
		len = strlen(v);
		CHECK(len > 0 && len <= MS__AWS_LINE_MAX);
		CHECK(!is_blank(v[0]) && !is_blank(v[len - 1]));
		check_printable_line(v);
	}
}

static void check_config(const ms__aws_config *cfg)
{
	CHECK(cfg->profile_count + cfg->service_count <= MS__AWS_SECTIONS_MAX);
	for (size_t i = 0; i < cfg->profile_count; i++) {
		check_section(&cfg->profiles[i], false);
		CHECK(cfg->profiles[i].in_config || cfg->profiles[i].in_credentials);
		CHECK(ms__aws_config_find(cfg, cfg->profiles[i].name) == &cfg->profiles[i]);
	}
	for (size_t i = 0; i < cfg->service_count; i++) {
		check_section(&cfg->services[i], true);
		CHECK(ms__aws_config_find_services(cfg, cfg->services[i].name) ==
		      &cfg->services[i]);
	}
}

/* Parses `len` bytes from a buffer of exactly that size into a new config. */
static int parse_copy(ms__aws_config **out, ms__aws_file_kind kind, const char *text, size_t len)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	CHECK(copy != NULL);
	memcpy(copy, text, len);
	*out = NULL;
	rc = ms__aws_config_new(out);
	if (rc == 0)
		rc = ms__aws_config_parse(*out, kind, PATH, copy, len);
	free(copy);
	return rc;
}

/* Replaces each letter and digit after the first '=' or ':' of every line with 'Z'. */
static char *mask_values(const char *text, size_t len)
{
	char *masked = malloc(len ? len : 1);
	bool after_delimiter = false;

	CHECK(masked != NULL);
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (c == '\n')
			after_delimiter = false;
		else if (after_delimiter && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		                             (c >= '0' && c <= '9')))
			c = 'Z';
		else if (c == '=' || c == ':')
			after_delimiter = true;
		masked[i] = c;
	}
	return masked;
}

/* Overwrites the letters and digits of a profile's secrets in place. */
static void mask_secrets(ms__aws_profile *p)
{
	static const ms__aws_key secrets[] = {MS__AWS_ACCESS_KEY_ID, MS__AWS_SECRET_ACCESS_KEY,
	                                      MS__AWS_SESSION_TOKEN};

	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		for (char *c = p->values[secrets[i]]; c != NULL && *c != '\0'; c++)
			if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			    (*c >= '0' && *c <= '9'))
				*c = *c == 'Q' ? 'R' : 'Q';
}

static void check_location(const ms__s3_location *loc)
{
	char url[MS__S3_URL_MAX], path[MS__S3_URL_MAX];
	size_t bucket_len = strlen(loc->bucket);

	CHECK(loc->host[0] != '\0' && strlen(loc->host) <= MS__S3_HOST_MAX);
	CHECK(loc->region[0] != '\0');
	CHECK(bucket_len >= 3);
	CHECK(loc->endpoint_why[0] != '\0' && loc->region_why[0] != '\0');
	CHECK(loc->addressing_why[0] != '\0' && loc->tls_why[0] != '\0');
	CHECK(strpbrk(loc->host, " \t\r\n/?#@") == NULL);
	CHECK(strpbrk(loc->region, " \t\r\n/") == NULL);
	if (loc->addressing == MS__S3_ADDRESSING_VIRTUAL)
		CHECK(strncmp(loc->host, loc->bucket, bucket_len) == 0 &&
		      loc->host[bucket_len] == '.' && strchr(loc->bucket, '_') == NULL);
	CHECK(ms__s3_object_url(url, sizeof(url), loc, NULL) == 0);
	CHECK(ms__s3_object_path(path, sizeof(path), loc, NULL) == 0);
	CHECK(path[0] == '/');
	CHECK(strstr(url, path) != NULL);
	CHECK(strpbrk(path, " \t\r\n?#") == NULL);
}

/* Resolves `url` with every profile of `cfg`, then again with the secrets overwritten. */
static void resolve_profiles(ms__aws_config *cfg, const char *url, uint8_t flags)
{
	ms__s3_resolve_options opts = {
	    .getenv = table_getenv,
	    .getenv_payload = (void *)environments[(flags >> 3) & 3],
	    .config = cfg,
	    .addressing = (ms__s3_addressing_request)(((flags >> 1) & 3) % 3),
	};
	size_t count = cfg->profile_count < 8 ? cfg->profile_count : 8;

	for (size_t i = 0; i < count; i++) {
		ms__s3_location loc;
		ms__aws_credentials_kind kind = MS__AWS_CREDENTIALS_NONE, kind_again;
		char first[MS__ERROR_MAX], kind_message[MS__ERROR_MAX];
		int rc, again, kind_rc;

		cfg->profile = &cfg->profiles[i];
		rc = ms__s3_resolve(&loc, url, &opts);
		CHECK(rc == 0 || rc == MS_EINVAL);
		if (rc == 0) {
			check_location(&loc);
		} else {
			check_message(rc);
			CHECK(loc.host[0] == '\0');
		}
		snprintf(first, sizeof(first), "%s", ms_error_last()->message);
		kind_rc = ms__aws_profile_credentials_kind(&kind, cfg, cfg->profile);
		CHECK(kind_rc == 0 || kind_rc == MS_EINVAL || kind_rc == MS_EUNSUPPORTED);
		CHECK((unsigned)kind <= MS__AWS_CREDENTIALS_PROCESS);
		snprintf(kind_message, sizeof(kind_message), "%s", ms_error_last()->message);

		mask_secrets(&cfg->profiles[i]);
		again = ms__s3_resolve(&loc, url, &opts);
		CHECK(again == rc);
		if (rc != 0)
			CHECK(strcmp(first, ms_error_last()->message) == 0);
		CHECK(ms__aws_profile_credentials_kind(&kind_again, cfg, cfg->profile) == kind_rc);
		CHECK(kind_again == kind);
		if (kind_rc != 0)
			CHECK(strcmp(kind_message, ms_error_last()->message) == 0);
	}
	cfg->profile = NULL;
}

/* Takes the first line (without its newline) as a URL and resolves it with no config. */
static void fuzz_url(const char *text, size_t len, uint8_t flags)
{
	const char *newline = memchr(text, '\n', len);
	size_t n = newline != NULL ? (size_t)(newline - text) : len;
	char *url = malloc(n + 1);
	ms__s3_resolve_options opts = {
	    .getenv = table_getenv,
	    .getenv_payload = (void *)environments[(flags >> 3) & 3],
	    .addressing = (ms__s3_addressing_request)(((flags >> 1) & 3) % 3),
	};
	ms__s3_location loc;
	ms__s3_url parsed;
	int rc;

	CHECK(url != NULL);
	memcpy(url, text, n);
	url[n] = '\0';
	rc = ms__s3_url_parse(&parsed, url);
	CHECK(rc == 0 || rc == MS_EINVAL || rc == MS_EUNSUPPORTED);
	if (rc == 0) {
		CHECK(strlen(parsed.bucket) >= 3 && strlen(parsed.key) <= MS__S3_KEY_MAX);
		CHECK(parsed.prefix ==
		      (parsed.key[0] == '\0' || parsed.key[strlen(parsed.key) - 1] == '/'));
	} else {
		check_message(rc);
	}
	rc = ms__s3_resolve(&loc, url, &opts);
	CHECK(rc == 0 || rc == MS_EINVAL || rc == MS_EUNSUPPORTED);
	if (rc == 0)
		check_location(&loc);
	free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const urls[] = {"s3://bucket/dir/model.safetensors", "gs://my_bucket/m/",
	                                   "s3://my.dotted.bucket/k"};
	ms__aws_config *cfg = NULL, *again = NULL;
	ms__aws_file_kind kind;
	const char *text;
	char first[MS__ERROR_MAX];
	char *masked;
	uint8_t flags;
	size_t len;
	long fail_at;
	int rc, rc_masked, rc_oom;

	if (size == 0)
		return 0;
	flags = data[0];
	text = (const char *)data + 1;
	len = size - 1;
	kind = (flags & 1) ? MS__AWS_FILE_CREDENTIALS : MS__AWS_FILE_CONFIG;

	/* 1. The parse itself. */
	rc = parse_copy(&cfg, kind, text, len);
	CHECK(rc == 0 || rc == MS_EINVAL);
	if (rc == 0) {
		check_config(cfg);
	} else {
		check_message(rc);
		CHECK(strncmp(ms_error_last()->message, PATH ":", strlen(PATH ":")) == 0);
	}
	snprintf(first, sizeof(first), "%s", ms_error_last()->message);

	/* 2. Values never reach a message. */
	masked = mask_values(text, len);
	rc_masked = parse_copy(&again, kind, masked, len);
	free(masked);
	CHECK(rc_masked == rc);
	if (rc != 0)
		CHECK(strcmp(first, ms_error_last()->message) == 0);
	ms__aws_config_free(again);

	/* 3. Out of memory from allocation N on. */
	fail_at = 1 + (long)(data[size - 1] % 48);
	ms__alloc_fail_at(fail_at, 1);
	rc_oom = parse_copy(&again, kind, text, len);
	ms__alloc_fail_at(0, 0);
	CHECK(rc_oom == rc || rc_oom == MS_ENOMEM);
	ms__aws_config_free(again);

	/* 4. Resolution with every profile read, and no secret in its messages. */
	if (rc == 0) {
		for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
			resolve_profiles(cfg, urls[i], flags);
	}
	ms__aws_config_free(cfg);
	if (flags & 0x80)
		fuzz_url(text, len, flags);
	return 0;
}
