/*
 * test_config.c - the configuration file of `modelstream fetch` (cmd/modelstream/config.c):
 * the documented example, every rule with its exact message, hostile files (huge, deep,
 * not UTF-8, full of control characters, aliases), reading from disk, and that every
 * failure frees what it took, down to each failed allocation.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../cmd/modelstream/config.h"
#include "alloc.h"
#include "support/testutil.h"

TestSuite(config, .fini = tu_tmpdir_remove, .timeout = 60);

#define NAME     "config.yaml"
#define FIXTURES "tests/fixtures/config/"

/* Whether `c` is in the unset state, owning nothing. */
static void assert_unset(const cli_config *c)
{
	cr_assert_null(c->cache);
	cr_assert_eq(c->budget, -1);
	cr_assert_eq(c->concurrency, 0);
	cr_assert_null(c->log_format);
	cr_assert_null(c->listen);
	cr_assert_null(c->models);
	cr_assert_eq(c->model_count, 0);
}

/* A message is one line of printable text. */
static void assert_one_line(const char *message)
{
	for (const unsigned char *p = (const unsigned char *)message; *p != '\0'; p++)
		cr_assert(*p >= 0x20 && *p != 0x7f, "control byte 0x%02x in '%s'", *p, message);
}

/* Parses `len` bytes of `text`, which must fail with exactly `want`. */
static void expect_error_len(const char *text, size_t len, const char *want)
{
	cli_config c;
	char err[512];
	int rc;

	memset(err, 'x', sizeof(err));
	rc = cli_config_parse(&c, NAME, text, len, err, sizeof(err));
	cr_assert_eq(rc, -1, "'%s' parsed, want '%s'", text, want);
	cr_assert(strcmp(err, want) == 0, "for '%s':\n got  %s\n want %s", text, err, want);
	assert_one_line(err);
	assert_unset(&c);
	cli_config_free(&c);
}

static void expect_error(const char *text, const char *want)
{
	expect_error_len(text, strlen(text), want);
}

/* Parses `text`, which must succeed; free `out` with cli_config_free(). */
static void parse_ok(cli_config *out, const char *text)
{
	char err[512] = "";

	cr_assert_eq(cli_config_parse(out, NAME, text, strlen(text), err, sizeof(err)), 0,
	             "'%s': %s", text, err);
	cr_assert_str_eq(err, "");
}

/* ---------------------------------------------------------------------------------------- */
/* Files that are fine                                                                       */
/* ---------------------------------------------------------------------------------------- */

Test(config, example_file)
{
	cli_config c;
	char err[256] = "";

	cr_assert_eq(cli_config_load(&c, FIXTURES "example.yaml", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.cache, "/var/cache/modelstream");
	cr_assert_eq(c.budget, INT64_C(200) << 30);
	cr_assert_eq(c.concurrency, 16);
	cr_assert_str_eq(c.log_format, "text");
	cr_assert_str_eq(c.listen, "0.0.0.0:9090");
	cr_assert_eq(c.model_count, 2);
	cr_assert_str_eq(c.models[0].name, "llama-3-8b");
	cr_assert_str_eq(c.models[0].source, "s3://models/llama-3-8b/");
	cr_assert_null(c.models[0].sha256_manifest);
	cr_assert_null(c.models[1].name);
	cr_assert_str_eq(c.models[1].source, "s3://models/mistral/model.safetensors");
	cr_assert_str_eq(c.models[1].sha256_manifest, "s3://models/mistral/SHA256SUMS");
	cli_config_free(&c);
	assert_unset(&c);
	cli_config_free(&c); /* twice is harmless */
	cli_config_free(NULL);
}

Test(config, minimal_file)
{
	cli_config c;
	char err[256] = "";

	cr_assert_eq(cli_config_load(&c, FIXTURES "minimal.yaml", err, sizeof(err)), 0, "%s", err);
	cr_assert_null(c.cache);
	cr_assert_eq(c.budget, -1);
	cr_assert_eq(c.concurrency, 0);
	cr_assert_eq(c.model_count, 1);
	cr_assert_str_eq(c.models[0].source, "/mnt/models/tiny.safetensors");
	cli_config_free(&c);
}

/* An empty file, or one of comments, sets nothing: flags and the environment decide. */
Test(config, empty_and_comment_only_files)
{
	static const char *const paths[] = {FIXTURES "empty.yaml", FIXTURES "comments-only.yaml"};
	static const char *const texts[] = {"",    "# only a comment", "# a\n\n# b\n", "---\n",
	                                    "~\n", "---\n...\n",       "\n\n\n"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		cli_config c;
		char err[256] = "";

		cr_assert_eq(cli_config_load(&c, paths[i], err, sizeof(err)), 0, "%s: %s", paths[i],
		             err);
		assert_unset(&c);
		cli_config_free(&c);
	}
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		cli_config c;

		parse_ok(&c, texts[i]);
		assert_unset(&c);
		cli_config_free(&c);
	}
}

/* A key with no value, as a template that renders nothing leaves it, is unset. */
Test(config, null_values_are_unset)
{
	cli_config c;
	char err[256] = "";

	cr_assert_eq(cli_config_load(&c, FIXTURES "helm-rendered.yaml", err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_str_eq(c.cache, "/var/cache/modelstream");
	cr_assert_eq(c.budget, -1);
	cr_assert_eq(c.concurrency, 0);
	cr_assert_null(c.log_format);
	cr_assert_null(c.listen);
	cr_assert_eq(c.model_count, 1);
	cr_assert_str_eq(c.models[0].name, "qwen2.5-7b");
	cr_assert_str_eq(c.models[0].source, "s3://models/qwen2.5-7b/");
	cr_assert_null(c.models[0].sha256_manifest);
	cli_config_free(&c);

	parse_ok(&c, "cache:\nmodels: ~\n");
	assert_unset(&c);
	cli_config_free(&c);
}

Test(config, flow_style_bom_and_crlf)
{
	cli_config c;

	parse_ok(&c, "{cache: /c, budget: 1K, models: [{source: /m, name: \"x\"}, {source: 'y'}]}");
	cr_assert_str_eq(c.cache, "/c");
	cr_assert_eq(c.budget, 1024);
	cr_assert_eq(c.model_count, 2);
	cr_assert_str_eq(c.models[0].name, "x");
	cr_assert_str_eq(c.models[1].source, "y");
	cli_config_free(&c);

	parse_ok(&c, "\xef\xbb\xbf"
	             "cache: /c\r\nlisten: ':80'\r\nmodels: []\r\n");
	cr_assert_str_eq(c.cache, "/c");
	cr_assert_str_eq(c.listen, ":80");
	cr_assert_eq(c.model_count, 0);
	cr_assert_null(c.models);
	cli_config_free(&c);

	/* Quoted keys, a document end marker and UTF-8 in values are fine. */
	parse_ok(&c, "---\n\"cache\": /var/cache/m\xc3\xb6\x64\x65ls\n...\n");
	cr_assert_str_eq(c.cache, "/var/cache/m\xc3\xb6\x64\x65ls");
	cli_config_free(&c);
}

/* ---------------------------------------------------------------------------------------- */
/* Values                                                                                    */
/* ---------------------------------------------------------------------------------------- */

Test(config, sizes)
{
	static const struct {
		const char *text;
		int64_t bytes;
	} good[] = {
	    {"0", 0},
	    {"1073741824", INT64_C(1073741824)},
	    {"200G", INT64_C(200) << 30},
	    {"200g", INT64_C(200) << 30},
	    {"200Gi", INT64_C(200) << 30},
	    {"200GiB", INT64_C(200) << 30},
	    {"200GB", INT64_C(200) << 30},
	    {"512MiB", INT64_C(512) << 20},
	    {"512M", INT64_C(512) << 20},
	    {"4k", 4096},
	    {"3T", INT64_C(3) << 40},
	    {"100B", 100},
	    {"'64M'", INT64_C(64) << 20},
	    {"9223372036854775807", INT64_MAX},
	    {"8388607T", INT64_C(8388607) << 40},
	};
	static const char *const bad[] = {
	    "lots",
	    "-1",
	    "+5",
	    "1.5G",
	    "200 G",
	    "200X",
	    "200GiBB",
	    "200iB",
	    "G",
	    "1e9",
	    "0x10",
	    "200Gib",
	    "8388608T",
	    "9223372036854775808",
	    "99999999999999999999999",
	    "1_000",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cli_config c;
		char text[64];

		snprintf(text, sizeof(text), "budget: %s\n", good[i].text);
		parse_ok(&c, text);
		cr_assert_eq(c.budget, good[i].bytes, "%s: %lld", good[i].text,
		             (long long)c.budget);
		cli_config_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64], want[160];

		snprintf(text, sizeof(text), "budget: %s\n", bad[i]);
		snprintf(want, sizeof(want),
		         NAME ":1:9: 'budget' must be a size like 200G, not '%s'", bad[i]);
		expect_error(text, want);
	}
	expect_error("budget: [1]", NAME ":1:9: 'budget' must be a size like 200G, not a list");
}

Test(config, concurrency)
{
	static const char *const bad[] = {"0", "257", "-1", "16.0", "016", "abc", "1000", "+3"};
	cli_config c;

	parse_ok(&c, "concurrency: 1");
	cr_assert_eq(c.concurrency, 1);
	cli_config_free(&c);
	parse_ok(&c, "concurrency: 256");
	cr_assert_eq(c.concurrency, 256);
	cli_config_free(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64], want[160];

		snprintf(text, sizeof(text), "concurrency: %s", bad[i]);
		snprintf(want, sizeof(want),
		         NAME ":1:14: 'concurrency' must be a whole number from 1 to 256, not '%s'",
		         bad[i]);
		expect_error(text, want);
	}
}

Test(config, log_format)
{
	cli_config c;

	parse_ok(&c, "log_format: json");
	cr_assert_str_eq(c.log_format, "json");
	cli_config_free(&c);
	parse_ok(&c, "log_format: 'text'");
	cr_assert_str_eq(c.log_format, "text");
	cli_config_free(&c);
	expect_error("log_format: xml",
	             NAME ":1:13: 'log_format' must be 'text' or 'json', not 'xml'");
	expect_error("log_format: JSON",
	             NAME ":1:13: 'log_format' must be 'text' or 'json', not 'JSON'");
}

Test(config, listen)
{
	static const char *const good[] = {"0.0.0.0:9090",     "127.0.0.1:1", ":9090",
	                                   "localhost:65535",  "'[::]:9090'", "'[::1]:80'",
	                                   "health.local:8080"};
	static const char *const bad[] = {"9090",     "0.0.0.0",  "0.0.0.0:0", "0.0.0.0:65536",
	                                  "::1:9090", "'[]:80'",  "host:80a",  "'host:'",
	                                  "h_st:80",  "'[::1]:'", "a b:80",    "1.2.3.4:123456"};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cli_config c;
		char text[64], want[64];
		size_t len = strlen(good[i]);

		snprintf(text, sizeof(text), "listen: %s", good[i]);
		parse_ok(&c, text);
		if (good[i][0] == '\'')
			snprintf(want, sizeof(want), "%.*s", (int)(len - 2), good[i] + 1);
		else
			snprintf(want, sizeof(want), "%s", good[i]);
		cr_assert_str_eq(c.listen, want);
		cli_config_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64], want[200], value[64];
		size_t len = strlen(bad[i]);

		if (bad[i][0] == '\'')
			snprintf(value, sizeof(value), "%.*s", (int)(len - 2), bad[i] + 1);
		else
			snprintf(value, sizeof(value), "%s", bad[i]);
		snprintf(text, sizeof(text), "listen: %s", bad[i]);
		snprintf(want, sizeof(want),
		         NAME
		         ":1:9: 'listen' must be an address like 0.0.0.0:9090 or [::]:9090, not "
		         "'%s'",
		         value);
		expect_error(text, want);
	}
}

Test(config, strings)
{
	expect_error("cache: ''", NAME ":1:8: 'cache' must not be empty");
	expect_error("cache: {a: b}", NAME ":1:8: 'cache' must be a directory path, not a mapping");
	expect_error("cache: [a]", NAME ":1:8: 'cache' must be a directory path, not a list");
	expect_error("cache: \"/a\\nb\"",
	             NAME ":1:8: 'cache' must not contain control characters ('/a\\nb')");
	expect_error("cache: \"\\0\"", NAME ":1:8: 'cache' must not contain control characters "
	                                    "('\\x00')");
	expect_error("cache: \"\\x85\\u2028\\e\\t\\x7f\"",
	             NAME ":1:8: 'cache' must not contain control characters "
	                  "('\\u0085\\u2028\\x1b\\t\\x7f')");
	/* A plain scalar folds a blank line into a newline, which is refused too. */
	expect_error("cache: /a\n\n  b\n",
	             NAME ":1:8: 'cache' must not contain control characters ('/a\\nb')");
}

Test(config, value_length_cap)
{
	tu_strbuf doc = {0};
	cli_config c;
	char want[256];

	tu_sb_puts(&doc, "cache: /");
	for (int i = 1; i < CLI_CONFIG_VALUE_MAX; i++)
		tu_sb_puts(&doc, "a");
	parse_ok(&c, doc.text);
	cr_assert_eq(strlen(c.cache), CLI_CONFIG_VALUE_MAX);
	cli_config_free(&c);

	tu_sb_puts(&doc, "a");
	snprintf(want, sizeof(want),
	         NAME
	         ":1:8: 'cache' is longer than 4096 bytes ('/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...')");
	expect_error(doc.text, want);
	free(doc.text);
}

/* ---------------------------------------------------------------------------------------- */
/* Keys                                                                                      */
/* ---------------------------------------------------------------------------------------- */

Test(config, unknown_keys)
{
	expect_error("cache: /c\ncach: /d",
	             NAME ":2:1: unknown key 'cach' (did you mean 'cache'?)");
	expect_error("log-format: json", NAME ":1:1: unknown key 'log-format' (did you mean "
	                                      "'log_format'?)");
	expect_error("logFormat: json", NAME ":1:1: unknown key 'logFormat' (did you mean "
	                                     "'log_format'?)");
	expect_error("Budget: 1G", NAME ":1:1: unknown key 'Budget' (did you mean 'budget'?)");
	expect_error("bugdet: 1G", NAME ":1:1: unknown key 'bugdet' (did you mean 'budget'?)");
	expect_error("model:\n  - source: x",
	             NAME ":1:1: unknown key 'model' (did you mean 'models'?)");
	expect_error("foo: 1", NAME ":1:1: unknown key 'foo' (the keys are cache, budget, "
	                            "concurrency, log_format, listen and models)");
	expect_error("models:\n  - source: x\n    sha256: y",
	             NAME ":3:5: unknown key 'sha256' in a model (a model has name, source and "
	                  "sha256_manifest)");
	expect_error("models:\n  - sorce: x",
	             NAME ":2:5: unknown key 'sorce' in a model (did you mean 'source'?)");
	expect_error("models: [{source: x, SOURCE: y}]",
	             NAME ":1:22: unknown key 'SOURCE' in a model (did you mean 'source'?)");
	/* A key is quoted escaped, and only in part. */
	expect_error("\"a\\x01\\nb\": 1",
	             NAME ":1:1: unknown key 'a\\x01\\nb' (the keys are cache, "
	                  "budget, concurrency, log_format, listen and models)");
	expect_error("? [a]\n: b", NAME ":1:3: keys must be strings, not a list");
	expect_error("models: [{[a]: b}]",
	             NAME ":1:11: keys in a model must be strings, not a list");
}

Test(config, long_key_is_cut)
{
	tu_strbuf doc = {0};
	cli_config c;
	char err[512];

	/* YAML's longest implicit key is 1024 characters. */
	for (int i = 0; i < 1000; i++)
		tu_sb_puts(&doc, "k");
	tu_sb_puts(&doc, ": 1\n");
	cr_assert_eq(cli_config_parse(&c, NAME, doc.text, doc.len, err, sizeof(err)), -1);
	cr_assert_str_eq(err, NAME
	                 ":1:1: unknown key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...' (the "
	                 "keys are cache, budget, concurrency, log_format, listen and models)");
	free(doc.text);

	/* Past that, the line is one long string, quoted just as briefly. */
	doc = (tu_strbuf){0};
	for (int i = 0; i < 100000; i++)
		tu_sb_puts(&doc, "k");
	tu_sb_puts(&doc, ": 1\n");
	cr_assert_eq(cli_config_parse(&c, NAME, doc.text, doc.len, err, sizeof(err)), -1);
	cr_assert_str_eq(err, NAME ":1:1: the top level must be a mapping of settings like 'cache: "
	                           "/var/cache/modelstream', not a string "
	                           "('kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...')");
	free(doc.text);
}

Test(config, duplicate_keys)
{
	expect_error("cache: a\nbudget: 1\ncache: b",
	             NAME ":3:1: duplicate key 'cache' (first given at line 1)");
	/* Even when the first gave no value. */
	expect_error("budget:\nbudget: 1G", NAME ":2:1: duplicate key 'budget' (first given at "
	                                         "line 1)");
	expect_error("models: []\nmodels: []",
	             NAME ":2:1: duplicate key 'models' (first given at line 1)");
	expect_error("models:\n  - source: a\n    name: x\n    source: b",
	             NAME ":4:5: duplicate key 'source' in a model (first given at line 2)");
}

/* ---------------------------------------------------------------------------------------- */
/* Structure                                                                                 */
/* ---------------------------------------------------------------------------------------- */

Test(config, top_level_must_be_a_mapping)
{
	expect_error("hello", NAME ":1:1: the top level must be a mapping of settings like 'cache: "
	                           "/var/cache/modelstream', not a string ('hello')");
	expect_error("- a\n- b", NAME ":1:1: the top level must be a mapping of settings like "
	                              "'cache: /var/cache/modelstream', not a list");
	expect_error("\"a\\nb\"", NAME ":1:1: the top level must be a mapping of settings like "
	                               "'cache: /var/cache/modelstream', not a string ('a\\nb')");
}

Test(config, one_document)
{
	expect_error("cache: a\n---\ncache: b",
	             NAME ":2:1: only one YAML document is allowed (found a second '---')");
	expect_error("---\n---\n",
	             NAME ":2:1: only one YAML document is allowed (found a second '---')");
}

Test(config, models)
{
	cli_config c;

	expect_error("models: s3://a/",
	             NAME ":1:9: 'models' must be a list of models, not a string");
	expect_error("models: {source: x}",
	             NAME ":1:9: 'models' must be a list of models, not a mapping");
	expect_error("models:\n  - s3://a/", NAME ":2:5: each entry of 'models' must be a mapping "
	                                          "with a 'source', not a string");
	expect_error("models:\n  - name: a\n  - source: b",
	             NAME ":2:5: model 1 has no 'source' (where to fetch it from)");
	expect_error("models:\n  - source: b\n  - {}",
	             NAME ":3:5: model 2 has no 'source' (where to fetch it from)");
	expect_error("models:\n  - source:\n    name: a", NAME ":2:12: 'source' must not be empty");
	expect_error("models:\n  - source: ''", NAME ":2:13: 'source' must not be empty");
	expect_error("models:\n  - source: [a]", NAME
	             ":2:13: 'source' must be a path or URL like s3://bucket/dir/, not a list");
	expect_error("models:\n  - source: a\n    sha256_manifest: {}",
	             NAME ":3:22: 'sha256_manifest' must be a path or URL, not a mapping");
	expect_error("models: [[[[[[]]]]]]", NAME ":1:10: each entry of 'models' must be a mapping "
	                                          "with a 'source', not a list");

	parse_ok(&c, "models:\n");
	cr_assert_eq(c.model_count, 0);
	cli_config_free(&c);
}

Test(config, model_names)
{
	static const char *const good[] = {"a", "llama-3-8b", "Qwen2.5_7B", "a.", "_x", "-x", "0"};
	static const char *const bad[] = {".",   "..",          ".hidden", "a/b",
	                                  "a b", "caf\xc3\xa9", "a:b",     "'x\\y'"};
	char long_name[CLI_CONFIG_NAME_MAX + 2];
	cli_config c;
	char text[256], want[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "models: [{name: %s, source: x}]", good[i]);
		parse_ok(&c, text);
		cr_assert_str_eq(c.models[0].name, good[i]);
		cli_config_free(&c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char value[64];
		size_t len = strlen(bad[i]);

		if (bad[i][0] == '\'' || bad[i][0] == '"')
			snprintf(value, sizeof(value), "%.*s", (int)(len - 2), bad[i] + 1);
		else
			snprintf(value, sizeof(value), "%s", bad[i]);
		snprintf(text, sizeof(text), "models:\n  - name: %s\n    source: x", bad[i]);
		snprintf(want, sizeof(want),
		         NAME ":2:11: model name '%s' may hold only letters, digits, '.', '_' and "
		              "'-', and may not start with '.'",
		         value);
		expect_error(text, want);
	}
	expect_error("models: [{name: '', source: x}]", NAME ":1:17: 'name' must not be empty");
	expect_error("models: [{name: \"a\\tb\", source: x}]",
	             NAME ":1:17: 'name' must not contain control characters ('a\\tb')");

	memset(long_name, 'n', CLI_CONFIG_NAME_MAX);
	long_name[CLI_CONFIG_NAME_MAX] = '\0';
	snprintf(text, sizeof(text), "models: [{name: %s, source: x}]", long_name);
	parse_ok(&c, text);
	cr_assert_eq(strlen(c.models[0].name), CLI_CONFIG_NAME_MAX);
	cli_config_free(&c);
	long_name[CLI_CONFIG_NAME_MAX] = 'n';
	long_name[CLI_CONFIG_NAME_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "models: [{name: %s, source: x}]", long_name);
	expect_error(text, NAME ":1:17: model name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...' is longer "
	                        "than 128 characters");
}

Test(config, model_names_unique)
{
	cli_config c;

	expect_error(
	    "models:\n  - name: a\n    source: x\n  - source: y\n  - name: a\n    source: z",
	    NAME ":5:11: model name 'a' is already used by model 1 (line 2)");
	/* Unnamed models and names that differ only in case are not duplicates here. */
	parse_ok(&c,
	         "models: [{source: x}, {source: x}, {name: A, source: y}, {name: a, source: y}]");
	cr_assert_eq(c.model_count, 4);
	cli_config_free(&c);
}

Test(config, models_cap)
{
	tu_strbuf doc = {0};
	cli_config c;
	char line[64];

	tu_sb_puts(&doc, "models:\n");
	for (int i = 0; i < CLI_CONFIG_MODELS_MAX; i++) {
		snprintf(line, sizeof(line), "  - {name: m%d, source: s3://b/m%d/}\n", i, i);
		tu_sb_puts(&doc, line);
	}
	parse_ok(&c, doc.text);
	cr_assert_eq(c.model_count, CLI_CONFIG_MODELS_MAX);
	cr_assert_str_eq(c.models[255].name, "m255");
	cr_assert_str_eq(c.models[255].source, "s3://b/m255/");
	cli_config_free(&c);

	tu_sb_puts(&doc, "  - {source: s3://b/one-too-many/}\n");
	expect_error(doc.text, NAME ":258:5: 'models' lists more than 256 models");
	free(doc.text);
}

/* ---------------------------------------------------------------------------------------- */
/* YAML features that are refused                                                            */
/* ---------------------------------------------------------------------------------------- */

Test(config, aliases_anchors_tags)
{
	expect_error("cache: &dir /a\nmodels: [{source: *dir}]",
	             NAME ":1:8: YAML anchors ('&dir') are not supported");
	expect_error("cache: *dir", NAME ":1:8: YAML aliases ('*dir') are not supported; write the "
	                                 "value out");
	expect_error("models:\n  - *m", NAME ":2:5: YAML aliases ('*m') are not supported; write "
	                                     "the value out");
	expect_error("cache: !!str /a",
	             NAME ":1:8: YAML tags ('tag:yaml.org,2002:str') are not supported");
	expect_error("cache: !local /a", NAME ":1:8: YAML tags ('!local') are not supported");
	expect_error("!!map {cache: /a}",
	             NAME ":1:1: YAML tags ('tag:yaml.org,2002:map') are not supported");
	expect_error("&top\ncache: /a", NAME ":1:1: YAML anchors ('&top') are not supported");
}

/* The classic exponential-expansion file fails at its first anchor, expanding nothing. */
Test(config, billion_laughs)
{
	expect_error(
	    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
	    NAME ":1:1: unknown key 'a' (the keys are cache, budget, concurrency, "
	         "log_format, listen and models)");
	expect_error("models: &a [{source: x}, *a]",
	             NAME ":1:9: YAML anchors ('&a') are not supported");
}

/* ---------------------------------------------------------------------------------------- */
/* Hostile and broken files                                                                  */
/* ---------------------------------------------------------------------------------------- */

Test(config, tabs)
{
	cli_config c;
	char err[256];

	cr_assert_eq(cli_config_load(&c, FIXTURES "tabs.yaml", err, sizeof(err)), -1);
	cr_assert_str_eq(err, FIXTURES "tabs.yaml:3:1: a tab character where YAML allows only "
	                               "spaces (indent with spaces)");
	assert_unset(&c);
	expect_error("cache: a\n\tbudget: 1\n", NAME
	             ":2:1: a tab character where YAML allows only spaces (indent with spaces)");
	/* A tab between a key and its value is only whitespace. */
	parse_ok(&c, "cache:\t/a\t# note\n");
	cr_assert_str_eq(c.cache, "/a");
	cli_config_free(&c);
}

Test(config, syntax_errors)
{
	expect_error("{cache: x", NAME ":2:1: invalid YAML: did not find expected ',' or '}' "
	                               "(while parsing a flow mapping at line 1)");
	expect_error("cache: 'open", NAME ":1:13: invalid YAML: found unexpected end of stream "
	                                  "(while scanning a quoted scalar at line 1)");
	expect_error("cache: a\n budget: 1\n",
	             NAME ":2:8: invalid YAML: mapping values are not allowed in this context");
	expect_error("cache: a\n- b\n", NAME ":2:1: invalid YAML: did not find expected key (while "
	                                     "parsing a block mapping at line 1)");
}

Test(config, invalid_utf8)
{
	expect_error("cache: /a\nbudget: \xff\xfe\n",
	             NAME ":2:9: not valid UTF-8 (byte 0xff); save the file as UTF-8");
	expect_error("cache: caf\xc3\n", NAME ":1:11: not valid UTF-8 (byte 0xc3); save the file "
	                                      "as UTF-8");
	/* An overlong encoding of '/', and a UTF-16 surrogate. */
	expect_error("cache: \xc0\xaf", NAME ":1:8: not valid UTF-8 (byte 0xc0); save the file as "
	                                     "UTF-8");
	expect_error("cache: \xed\xa0\x80", NAME ":1:8: not valid UTF-8 (byte 0xed); save the file "
	                                         "as UTF-8");
}

Test(config, control_characters_and_nul)
{
	expect_error("cache: a\x01"
	             "b",
	             NAME ":1:9: control character 0x01 is not allowed in YAML");
	expect_error_len("cache: a\0b", 10,
	                 NAME ":1:9: control character 0x00 is not allowed in "
	                      "YAML");
	expect_error("\x1b[31mcache: a",
	             NAME ":1:1: control character 0x1b is not allowed in YAML");
	expect_error("cache: a\xc2\x80", NAME ":1:9: character U+0080 is not allowed in YAML");
	expect_error("cache: a\xef\xbf\xbe", NAME ":1:9: character U+FFFE is not allowed in YAML");
}

/* Whatever the file and its name hold, a message is one line, cut to the buffer. */
Test(config, messages_stay_one_line_and_fit)
{
	cli_config c;
	char err[512], small[24];

	cr_assert_eq(
	    cli_config_parse(&c, "evil\n\x1b[2Jname\xff.yaml", "foo: 1", 6, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "evil\\n\\x1b[2Jname\\xff.yaml:1:1: unknown key 'foo' (the keys are "
	                      "cache, budget, concurrency, log_format, listen and models)");

	memset(small, 'x', sizeof(small));
	cr_assert_eq(cli_config_parse(&c, NAME, "foo: 1", 6, small, sizeof(small)), -1);
	cr_assert_str_eq(small, NAME ":1:1: unknow");

	/* A cut never leaves half a UTF-8 character behind. */
	cr_assert_eq(cli_config_parse(&c, "\xc3\xa9\xc3\xa9", "- a", 3, small, 4), -1);
	cr_assert_str_eq(small, "\xc3\xa9");
	cr_assert_eq(cli_config_parse(&c, "\xc3\xa9\xc3\xa9", "- a", 3, small, 5), -1);
	cr_assert_str_eq(small, "\xc3\xa9\xc3\xa9");

	/* No name, no text and no buffer are all fine. */
	cr_assert_eq(cli_config_parse(&c, NULL, "- a", 3, err, sizeof(err)), -1);
	cr_assert(strncmp(err, "configuration:1:1: the top level", 32) == 0, "%s", err);
	cr_assert_eq(cli_config_parse(&c, NAME, NULL, 0, err, sizeof(err)), 0);
	assert_unset(&c);
	cr_assert_eq(cli_config_parse(&c, NAME, "foo: 1", 6, NULL, 0), -1);
	cr_assert_eq(cli_config_parse(&c, NAME, "foo: 1", 6, small, 0), -1);
	assert_unset(&c);
}

/* A failure after some settings were read leaves nothing behind. */
Test(config, failure_frees_partial_config)
{
	expect_error("cache: /c\nlisten: :1\nlog_format: json\nmodels:\n  - {name: a, source: x, "
	             "sha256_manifest: y}\n  - {name: b, source: y}\nbudget: lots\n",
	             NAME ":7:9: 'budget' must be a size like 200G, not 'lots'");
	cr_assert_eq(tu_leaks_found(), 0);
}

/* Deep nesting is refused at the first level the format does not have. */
Test(config, deep_nesting)
{
	tu_strbuf doc = {0};

	tu_sb_puts(&doc, "models: ");
	for (int i = 0; i < 200000; i++)
		tu_sb_puts(&doc, "[");
	expect_error(doc.text, NAME ":1:10: each entry of 'models' must be a mapping with a "
	                            "'source', not a list");
	free(doc.text);

	doc = (tu_strbuf){0};
	for (int i = 0; i < 200000; i++)
		tu_sb_puts(&doc, "{a: ");
	expect_error(doc.text, NAME ":1:2: unknown key 'a' (the keys are cache, budget, "
	                            "concurrency, log_format, listen and models)");
	free(doc.text);

	doc = (tu_strbuf){0};
	for (int i = 0; i < 20000; i++) {
		char line[32];

		snprintf(line, sizeof(line), "%*s- \n", i % 2000, "");
		tu_sb_puts(&doc, line);
	}
	expect_error(doc.text,
	             NAME ":1:1: the top level must be a mapping of settings like 'cache: "
	                  "/var/cache/modelstream', not a list");
	free(doc.text);
}

Test(config, size_cap)
{
	tu_strbuf doc = {0};
	cli_config c;
	char path[4096], err[512];

	/* Exactly 1 MiB is read (a comment pads it); one byte more is refused unread. */
	tu_sb_puts(&doc, "cache: /c\n#");
	while (doc.len < CLI_CONFIG_FILE_MAX - 1)
		tu_sb_puts(&doc, "x");
	tu_sb_puts(&doc, "\n");
	cr_assert_eq(doc.len, CLI_CONFIG_FILE_MAX);
	tu_path(path, sizeof(path), "exactly-1MiB.yaml");
	tu_write_file(path, doc.text, doc.len);
	cr_assert_eq(cli_config_load(&c, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c.cache, "/c");
	cli_config_free(&c);

	tu_sb_puts(&doc, "\n");
	expect_error_len(doc.text, doc.len,
	                 NAME ": larger than 1 MiB, the limit for a "
	                      "configuration file");
	tu_path(path, sizeof(path), "huge.yaml");
	tu_write_file(path, doc.text, doc.len);
	cr_assert_eq(cli_config_load(&c, path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "huge.yaml: larger than 1 MiB, the limit for a configuration file"),
	          "%s", err);
	assert_unset(&c);
	free(doc.text);

	/* A huge file of many small keys stops at the first bad one. */
	doc = (tu_strbuf){0};
	while (doc.len < CLI_CONFIG_FILE_MAX - 16)
		tu_sb_puts(&doc, "cache: /c\n");
	expect_error_len(doc.text, doc.len,
	                 NAME ":2:1: duplicate key 'cache' (first given at line 1)");
	free(doc.text);
}

/* ---------------------------------------------------------------------------------------- */
/* Files on disk                                                                             */
/* ---------------------------------------------------------------------------------------- */

Test(config, missing_file)
{
	cli_config c;
	char err[512];

	cr_assert_eq(cli_config_load(&c, "/nonexistent/dir/config.yaml", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "/nonexistent/dir/config.yaml: cannot open the configuration file: "
	                      "No such file or directory");
	assert_unset(&c);
}

Test(config, unreadable_paths)
{
	cli_config c;
	char path[4096], want[4200], err[512];

	cr_assert_eq(cli_config_load(&c, tu_tmpdir(), err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: cannot read the configuration file: Is a directory",
	         tu_tmpdir());
	cr_assert_str_eq(err, want);
	assert_unset(&c);

	if (geteuid() != 0) {
		tu_path(path, sizeof(path), "secret.yaml");
		tu_write_file(path, "cache: /c\n", 10);
		cr_assert_eq(chmod(path, 0), 0);
		cr_assert_eq(cli_config_load(&c, path, err, sizeof(err)), -1);
		snprintf(want, sizeof(want),
		         "%s: cannot open the configuration file: Permission denied", path);
		cr_assert_str_eq(err, want);
	}

	/* The path is escaped in messages like any other text. */
	cr_assert_eq(cli_config_load(&c, "/nonexistent/a\nb.yaml", err, sizeof(err)), -1);
	cr_assert_str_eq(err,
	                 "/nonexistent/a\\nb.yaml: cannot open the configuration file: No such "
	                 "file or directory");
}

Test(config, load_reports_position)
{
	cli_config c;
	char path[4096], want[4200], err[512];

	tu_path(path, sizeof(path), "config.yaml");
	tu_write_file(path, "cache: /c\nbudget: lots\n", 23);
	cr_assert_eq(cli_config_load(&c, path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2:9: 'budget' must be a size like 200G, not 'lots'", path);
	cr_assert_str_eq(err, want);
	assert_unset(&c);
}

/* ---------------------------------------------------------------------------------------- */
/* Out of memory                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* Fails each allocation in turn: every failure is "out of memory" and frees everything. */
Test(config, allocation_failures)
{
	static const char *const paths[] = {FIXTURES "example.yaml", FIXTURES "helm-rendered.yaml"};
	tu_strbuf doc = {0};
	char line[64];
	long walked = 0;

	/* Enough models to make the list grow more than once. */
	tu_sb_puts(&doc, "cache: /c\nlisten: :1\nlog_format: json\nmodels:\n");
	for (int i = 0; i < 40; i++) {
		snprintf(line, sizeof(line), "  - {name: m%d, source: s%d, sha256_manifest: x}\n",
		         i, i);
		tu_sb_puts(&doc, line);
	}
	for (size_t p = 0; p <= sizeof(paths) / sizeof(paths[0]); p++) {
		int rc = -1;

		for (long n = 1; n < 1000; n++) {
			cli_config c;
			char err[512];
			long before = ms__alloc_count();

			ms__alloc_fail_at(n, 1);
			if (p < sizeof(paths) / sizeof(paths[0]))
				rc = cli_config_load(&c, paths[p], err, sizeof(err));
			else
				rc =
				    cli_config_parse(&c, NAME, doc.text, doc.len, err, sizeof(err));
			ms__alloc_fail_at(0, 0);
			walked++;
			if (rc == 0) {
				cli_config_free(&c);
				if (ms__alloc_count() - before < n)
					break; /* the failure was never reached: every path is
					          walked */
				continue;
			}
			if (n == 1 && p < sizeof(paths) / sizeof(paths[0]))
				cr_assert(strstr(err, "cannot read the configuration file: Cannot "
				                      "allocate memory"),
				          "%s", err);
			else
				cr_assert(strstr(err, ": out of memory"), "allocation %ld: %s", n,
				          err);
			assert_unset(&c);
		}
		cr_assert_eq(rc, 0, "the walk ended without a successful parse");
	}
	cr_assert_gt(walked, 60);
	cr_assert_eq(tu_leaks_found(), 0,
	             "a path that failed an allocation leaked (see the report above)");
	free(doc.text);
}
