/*
 * fuzz_config.c - a libFuzzer target for the configuration file of `modelstream fetch`
 * (cmd/modelstream/config.c, over libyaml's event parser).
 *
 * The whole input is the file. Each input is checked three ways:
 *  1. parsed from a private copy of exactly its bytes (AddressSanitizer catches any read
 *     past it). A success must keep every promise of config.h: budget -1 or more,
 *     concurrency 0 or 1 to 256, log_format unset, "text" or "json", strings non-empty,
 *     capped and free of control characters, at most 256 models, each with a source, and
 *     names that are valid directory names and unique. It is then written back out as
 *     YAML and parsed again, which must give the same settings. A failure must leave the
 *     output unset and give one line that starts with the file name, holds no control
 *     character (C0, DEL or C1) and is valid UTF-8, and that quotes values only briefly.
 *  2. parsed again: the same result and the same message (nothing depends on state).
 *  3. parsed again while allocation N fails, and every one after it (N from the last
 *     byte, 1 to 64), which may only turn the result into "out of memory"; LeakSanitizer
 *     checks that both paths free what they took.
 * Anything else calls abort(), which libFuzzer reports as a crash.
 *
 * Build: clang -g -O1 -std=c11 -D_GNU_SOURCE -Ilib/include -Ilib \
 *          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *          -o build/fuzz_config tests/fuzz/fuzz_config.c cmd/modelstream/config.c \
 *          lib/alloc.c -lyaml -lcjson -pthread
 * Run:   build/fuzz_config -max_len=65536 -timeout=10 build/fuzz-config tests/fuzz/corpus_config
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cmd/modelstream/config.h"
#include "alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.yaml"

/* The longest message: a fixed text, the name and two escaped 32-character excerpts. */
#define MESSAGE_MAX 600

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "fuzz_config: invariant failed at line %d: %s\n", \
			        __LINE__, #cond);                                         \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* Whether s[0, len) is well-formed UTF-8 (no overlongs, surrogates or values past 10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t len)
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
			return false;
		}
		if (i + n >= len)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* No C0, DEL or (UTF-8 encoded) C1 control character. */
static bool no_controls(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;

	for (size_t i = 0; s[i] != '\0'; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			return false;
		if (s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
			return false;
	}
	return true;
}

/* A string value: set, 1 to `max` bytes, no control characters, valid UTF-8. */
static void check_value(const char *s, size_t max)
{
	size_t len;

	CHECK(s != NULL);
	len = strlen(s);
	CHECK(len >= 1 && len <= max);
	CHECK(no_controls(s));
	CHECK(utf8_valid((const unsigned char *)s, len));
}

static bool valid_name(const char *name)
{
	size_t len = strlen(name);

	if (len < 1 || len > CLI_CONFIG_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void check_unset(const cli_config *c)
{
	CHECK(c->cache == NULL && c->log_format == NULL && c->listen == NULL);
	CHECK(c->budget == -1 && c->concurrency == 0);
	CHECK(c->models == NULL && c->model_count == 0);
}

static void check_success(const cli_config *c)
{
	CHECK(c->budget >= -1);
	CHECK(c->concurrency == 0 ||
	      (c->concurrency >= 1 && c->concurrency <= CLI_CONFIG_CONCURRENCY_MAX));
	if (c->cache != NULL)
		check_value(c->cache, CLI_CONFIG_VALUE_MAX);
	if (c->log_format != NULL)
		CHECK(strcmp(c->log_format, "text") == 0 || strcmp(c->log_format, "json") == 0);
	if (c->listen != NULL) {
		check_value(c->listen, CLI_CONFIG_VALUE_MAX);
		CHECK(strrchr(c->listen, ':') != NULL);
	}
	CHECK(c->model_count <= CLI_CONFIG_MODELS_MAX);
	CHECK((c->models != NULL) == (c->model_count > 0));
	for (size_t i = 0; i < c->model_count; i++) {
		const cli_model *m = &c->models[i];

		check_value(m->source, CLI_CONFIG_VALUE_MAX);
		if (m->sha256_manifest != NULL)
			check_value(m->sha256_manifest, CLI_CONFIG_VALUE_MAX);
		if (m->name == NULL)
			continue;
		CHECK(valid_name(m->name));
		for (size_t k = 0; k < i; k++)
			CHECK(c->models[k].name == NULL || strcmp(c->models[k].name, m->name) != 0);
	}
}

static void check_failure(const cli_config *c, const char *err)
{
	size_t len = strlen(err);

	check_unset(c);
	CHECK(strncmp(err, NAME ": ", strlen(NAME ": ")) == 0 ||
	      strncmp(err, NAME ":", strlen(NAME ":")) == 0);
	CHECK(len > strlen(NAME ": ") && len < MESSAGE_MAX);
	CHECK(no_controls(err));
	CHECK(utf8_valid((const unsigned char *)err, len));
}

/* Appends s as a double-quoted YAML string; values hold no control characters. */
static void put_quoted(char **p, const char *s)
{
	*(*p)++ = '"';
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			*(*p)++ = '\\';
		*(*p)++ = *s;
	}
	*(*p)++ = '"';
}

static void put(char **p, const char *s)
{
	size_t len = strlen(s);

	memcpy(*p, s, len);
	*p += len;
}

static bool same_string(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Writes `c` out as YAML and reads it back: the same settings must come back. */
static void check_round_trip(const cli_config *c)
{
	const char *top[] = {c->cache, c->log_format, c->listen};
	size_t cap = 256; /* the keys and numbers of the top level */
	char *text, *p, number[32], err[1024];
	cli_config back;

	/* A string at most doubles when quoted; each line carries its key and indent. */
	for (size_t i = 0; i < 3; i++)
		cap += top[i] != NULL ? 2 * strlen(top[i]) + 32 : 0;
	for (size_t i = 0; i < c->model_count; i++) {
		const cli_model *m = &c->models[i];

		cap += 2 * strlen(m->source) + 32;
		cap += m->name != NULL ? 2 * strlen(m->name) + 32 : 0;
		cap += m->sha256_manifest != NULL ? 2 * strlen(m->sha256_manifest) + 32 : 0;
	}
	text = malloc(cap);
	p = text;
	CHECK(text != NULL);
	if (c->cache != NULL) {
		put(&p, "cache: ");
		put_quoted(&p, c->cache);
		put(&p, "\n");
	}
	if (c->budget >= 0) {
		snprintf(number, sizeof(number), "budget: %lld\n", (long long)c->budget);
		put(&p, number);
	}
	if (c->concurrency != 0) {
		snprintf(number, sizeof(number), "concurrency: %d\n", c->concurrency);
		put(&p, number);
	}
	if (c->log_format != NULL) {
		put(&p, "log_format: ");
		put_quoted(&p, c->log_format);
		put(&p, "\n");
	}
	if (c->listen != NULL) {
		put(&p, "listen: ");
		put_quoted(&p, c->listen);
		put(&p, "\n");
	}
	put(&p, "models:\n");
	for (size_t i = 0; i < c->model_count; i++) {
		put(&p, "  - source: ");
		put_quoted(&p, c->models[i].source);
		put(&p, "\n");
		if (c->models[i].name != NULL) {
			put(&p, "    name: ");
			put_quoted(&p, c->models[i].name);
			put(&p, "\n");
		}
		if (c->models[i].sha256_manifest != NULL) {
			put(&p, "    sha256_manifest: ");
			put_quoted(&p, c->models[i].sha256_manifest);
			put(&p, "\n");
		}
	}
	CHECK((size_t)(p - text) < cap);
	if ((size_t)(p - text) > CLI_CONFIG_FILE_MAX) { /* longer when written out: skip */
		free(text);
		return;
	}
	if (cli_config_parse(&back, NAME, text, (size_t)(p - text), err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_config: the written-out config does not parse: %s\n", err);
		abort();
	}
	CHECK(same_string(back.cache, c->cache));
	CHECK(back.budget == c->budget);
	CHECK(back.concurrency == c->concurrency);
	CHECK(same_string(back.log_format, c->log_format));
	CHECK(same_string(back.listen, c->listen));
	CHECK(back.model_count == c->model_count);
	for (size_t i = 0; i < c->model_count; i++) {
		CHECK(same_string(back.models[i].name, c->models[i].name));
		CHECK(same_string(back.models[i].source, c->models[i].source));
		CHECK(same_string(back.models[i].sha256_manifest, c->models[i].sha256_manifest));
	}
	cli_config_free(&back);
	free(text);
}

static int run(const char *text, size_t len, char *err, size_t err_size)
{
	cli_config c;
	int rc;

	/* Poison: the parser must write a message on failure and clear it on success. */
	memset(err, 0x01, err_size);
	rc = cli_config_parse(&c, NAME, text, len, err, err_size);
	CHECK(rc == 0 || rc == -1);
	CHECK(memchr(err, '\0', err_size) != NULL);
	if (rc == 0) {
		CHECK(err[0] == '\0');
		check_success(&c);
	} else {
		check_failure(&c, err);
	}
	cli_config_free(&c);
	check_unset(&c);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1);
	char first[1024], again[1024], oom[1024];
	int clean, rc;
	long fail_at;

	CHECK(text != NULL);
	if (size > 0)
		memcpy(text, data, size);

	clean = run(text, size, first, sizeof(first));
	if (clean == 0) {
		cli_config c;

		CHECK(cli_config_parse(&c, NAME, text, size, again, sizeof(again)) == 0);
		check_round_trip(&c);
		cli_config_free(&c);
	}

	rc = run(text, size, again, sizeof(again));
	CHECK(rc == clean && strcmp(first, again) == 0);

	fail_at = 1 + (long)((size ? data[size - 1] : 0) % 64);
	ms__alloc_fail_at(fail_at, 1);
	rc = run(text, size, oom, sizeof(oom));
	ms__alloc_fail_at(0, 0);
	if (rc == 0) {
		CHECK(clean == 0);
	} else if (strcmp(oom, first) != 0) {
		const char *tail = ": out of memory";
		size_t len = strlen(oom);

		CHECK(len >= strlen(tail) && strcmp(oom + len - strlen(tail), tail) == 0);
	}
	free(text);
	return 0;
}
