/*
 * test_s3_config.c - the AWS config and credentials files: the dialect the AWS CLI reads,
 * where the files are looked for, which profile is picked, hostile files, and that no
 * message ever carries a secret.
 *
 * The environment is always given through the accessor (a table per test), never through
 * setenv(), so that the tests neither see nor change the real one.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "s3/s3_config.h"
#include "support/testutil.h"

TestSuite(s3_config, .fini = tu_tmpdir_remove, .timeout = 60);

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN  "IQoJb3JpZ2luX2VjEXAMPLETOKENxyz"
#define KEY_ID "AKIAIOSFODNN7EXAMPLE"
#define CONFIG "/home/u/.aws/config"
#define CREDS  "/home/u/.aws/credentials"

/* Parses `text` as one file into a fresh config; returns the result code. */
static int parse(ms__aws_config **out, ms__aws_file_kind kind, const char *text)
{
	cr_assert_eq(ms__aws_config_new(out), 0);
	return ms__aws_config_parse(*out, kind, kind == MS__AWS_FILE_CONFIG ? CONFIG : CREDS, text,
	                            strlen(text));
}

static const char *value_of(const ms__aws_config *cfg, const char *profile, ms__aws_key key)
{
	const ms__aws_profile *p = ms__aws_config_find(cfg, profile);

	cr_assert_not_null(p, "no profile '%s'", profile);
	return p->values[key];
}

static void assert_value(const ms__aws_config *cfg, const char *profile, ms__aws_key key,
                         const char *want)
{
	const char *got = value_of(cfg, profile, key);

	if (want == NULL) {
		cr_assert_null(got, "%s: %s is '%s'", profile, ms__aws_key_name(key), got);
		return;
	}
	cr_assert_not_null(got, "%s: %s unset", profile, ms__aws_key_name(key));
	cr_assert_str_eq(got, want, "%s: %s", profile, ms__aws_key_name(key));
}

/* Asserts a failure with MS_EINVAL whose message starts with "<path>:<line>: ". */
static void assert_syntax_error(int rc, const char *path, unsigned line)
{
	char prefix[256];
	const char *message = ms_error_last()->message;

	snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	cr_assert_eq(rc, MS_EINVAL, "rc %d (%s)", rc, message);
	cr_assert_eq(strncmp(message, prefix, strlen(prefix)), 0, "message '%s', want '%s...'",
	             message, prefix);
	cr_assert_null(strstr(message, SECRET), "the secret leaked: %s", message);
	cr_assert_null(strstr(message, TOKEN), "the token leaked: %s", message);
	cr_assert_null(strchr(message, '\n'));
}

/* Makes <tmpdir>/<dir> and writes <tmpdir>/<dir>/<name>; returns the path in `out`. */
static void write_in(char *out, size_t size, const char *dir, const char *name, const char *text)
{
	char dir_path[2048];

	tu_path(dir_path, sizeof(dir_path), dir);
	mkdir(dir_path, 0700);
	snprintf(out, size, "%s/%s", dir_path, name);
	tu_write_file(out, text, strlen(text));
}

/* ---------------------------------------------------------------------------------------- */
/* The dialect                                                                               */
/* ---------------------------------------------------------------------------------------- */

Test(s3_config, default_section_in_the_config_file)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG, "[default]\nregion = eu-west-1\n"), 0);
	assert_value(cfg, "default", MS__AWS_REGION, "eu-west-1");
	cr_assert(ms__aws_config_find(cfg, "default")->in_config);
	cr_assert_not(ms__aws_config_find(cfg, "default")->in_credentials);
	cr_assert_eq(ms__aws_config_find(cfg, "default")->origins[MS__AWS_REGION],
	             MS__AWS_FILE_CONFIG);
	ms__aws_config_free(cfg);
}

Test(s3_config, profile_sections_in_the_config_file)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile dev]\nregion = us-west-2\n[profile   prod  ]\nregion=x\n"),
	             0);
	assert_value(cfg, "dev", MS__AWS_REGION, "us-west-2");
	assert_value(cfg, "prod", MS__AWS_REGION, "x");
	cr_assert_null(ms__aws_config_find(cfg, "profile dev"));
	cr_assert_eq(cfg->profile_count, 2);
	ms__aws_config_free(cfg);
}

Test(s3_config, profile_default_is_the_default_profile)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[default]\nregion = a\n[profile default]\nendpoint_url = http://h\n"),
	             0);
	cr_assert_eq(cfg->profile_count, 1, "one profile, merged");
	assert_value(cfg, "default", MS__AWS_REGION, "a");
	assert_value(cfg, "default", MS__AWS_ENDPOINT_URL, "http://h");
	ms__aws_config_free(cfg);
}

Test(s3_config, a_bare_section_in_the_config_file_is_not_a_profile)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[dev]\nregion = a\n[profile]\nregion = b\n[profiledev]\nregion = c\n"
	                   "[profile a b]\nregion = d\n"),
	             0);
	cr_assert_eq(cfg->profile_count, 0, "botocore ignores all four");
	ms__aws_config_free(cfg);
}

Test(s3_config, quoted_profile_names)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile \"my dev\"]\nregion = a\n[profile 'x']\nregion = b\n"),
	             0);
	assert_value(cfg, "my dev", MS__AWS_REGION, "a");
	assert_value(cfg, "x", MS__AWS_REGION, "b");
	ms__aws_config_free(cfg);
}

Test(s3_config, credentials_file_sections_are_bare_names)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CREDENTIALS,
	                   "[default]\naws_access_key_id = " KEY_ID "\n"
	                   "aws_secret_access_key = " SECRET "\n"
	                   "[dev]\naws_access_key_id = B\n"
	                   "[profile odd]\naws_access_key_id = C\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_ACCESS_KEY_ID, KEY_ID);
	assert_value(cfg, "default", MS__AWS_SECRET_ACCESS_KEY, SECRET);
	assert_value(cfg, "dev", MS__AWS_ACCESS_KEY_ID, "B");
	/* In the credentials file "profile odd" is the whole name, as in botocore. */
	assert_value(cfg, "profile odd", MS__AWS_ACCESS_KEY_ID, "C");
	cr_assert(ms__aws_config_find(cfg, "dev")->in_credentials);
	ms__aws_config_free(cfg);
}

Test(s3_config, every_known_key)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile p]\n"
	                   "aws_access_key_id = k\n"
	                   "aws_secret_access_key = s\n"
	                   "aws_session_token = t\n"
	                   "region = r\n"
	                   "endpoint_url = http://e\n"
	                   "ca_bundle = /ca.pem\n"
	                   "ignore_configured_endpoint_urls = true\n"
	                   "services = svc\n"
	                   "role_arn = arn:aws:iam::1:role/x\n"
	                   "source_profile = base\n"
	                   "credential_source = Environment\n"
	                   "role_session_name = sess\n"
	                   "external_id = ext\n"
	                   "web_identity_token_file = /token\n"
	                   "credential_process = /bin/creds --json\n"
	                   "sso_session = corp\n"
	                   "sso_start_url = https://corp.awsapps.com/start\n"
	                   "s3 =\n"
	                   "  endpoint_url = http://s3e\n"
	                   "  addressing_style = path\n"
	                   "unknown_key = ignored\n"),
	             0);
	assert_value(cfg, "p", MS__AWS_ACCESS_KEY_ID, "k");
	assert_value(cfg, "p", MS__AWS_SECRET_ACCESS_KEY, "s");
	assert_value(cfg, "p", MS__AWS_SESSION_TOKEN, "t");
	assert_value(cfg, "p", MS__AWS_REGION, "r");
	assert_value(cfg, "p", MS__AWS_ENDPOINT_URL, "http://e");
	assert_value(cfg, "p", MS__AWS_CA_BUNDLE, "/ca.pem");
	assert_value(cfg, "p", MS__AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, "true");
	assert_value(cfg, "p", MS__AWS_SERVICES, "svc");
	assert_value(cfg, "p", MS__AWS_ROLE_ARN, "arn:aws:iam::1:role/x");
	assert_value(cfg, "p", MS__AWS_SOURCE_PROFILE, "base");
	assert_value(cfg, "p", MS__AWS_CREDENTIAL_SOURCE, "Environment");
	assert_value(cfg, "p", MS__AWS_ROLE_SESSION_NAME, "sess");
	assert_value(cfg, "p", MS__AWS_EXTERNAL_ID, "ext");
	assert_value(cfg, "p", MS__AWS_WEB_IDENTITY_TOKEN_FILE, "/token");
	assert_value(cfg, "p", MS__AWS_CREDENTIAL_PROCESS, "/bin/creds --json");
	assert_value(cfg, "p", MS__AWS_SSO_SESSION, "corp");
	assert_value(cfg, "p", MS__AWS_SSO_START_URL, "https://corp.awsapps.com/start");
	assert_value(cfg, "p", MS__AWS_S3_ENDPOINT_URL, "http://s3e");
	assert_value(cfg, "p", MS__AWS_S3_ADDRESSING_STYLE, "path");
	ms__aws_config_free(cfg);
}

Test(s3_config, keys_in_any_case)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[default]\nAWS_Access_Key_ID = k\nREGION = r\nS3 =\n"
	                   "  Addressing_Style = virtual\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_ACCESS_KEY_ID, "k");
	assert_value(cfg, "default", MS__AWS_REGION, "r");
	assert_value(cfg, "default", MS__AWS_S3_ADDRESSING_STYLE, "virtual");
	ms__aws_config_free(cfg);
}

Test(s3_config, section_names_are_case_sensitive)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(
	    parse(&cfg, MS__AWS_FILE_CONFIG, "[profile Dev]\nregion = a\n[Default]\nregion = b\n"),
	    0);
	assert_value(cfg, "Dev", MS__AWS_REGION, "a");
	cr_assert_null(ms__aws_config_find(cfg, "dev"));
	cr_assert_null(ms__aws_config_find(cfg, "default"), "[Default] is not [default]");
	ms__aws_config_free(cfg);
}

Test(s3_config, comments_with_hash_and_semicolon)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "# a comment\n; another\n[default] # after a header\n"
	                   "   # an indented comment\n"
	                   "region = eu-north-1 # inline\n"
	                   "endpoint_url = http://h ; inline too\n"
	                   "credential_process = cmd#1;2\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_REGION, "eu-north-1");
	assert_value(cfg, "default", MS__AWS_ENDPOINT_URL, "http://h");
	/* Without a blank before it, '#' is part of the value. */
	assert_value(cfg, "default", MS__AWS_CREDENTIAL_PROCESS, "cmd#1;2");
	ms__aws_config_free(cfg);
}

Test(s3_config, whitespace_tabs_crlf_and_bom)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "\xef\xbb\xbf[default]\r\n\t region \t=\t us-east-2 \t\r\n\r\n"
	                   "  [profile b]  \r\nregion=x"),
	             0);
	assert_value(cfg, "default", MS__AWS_REGION, "us-east-2");
	assert_value(cfg, "b", MS__AWS_REGION, "x");
	ms__aws_config_free(cfg);
}

Test(s3_config, colon_is_a_delimiter_too)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[default]\nregion: ap-south-1\nendpoint_url = http://h:9000\n"
	                   "role_arn: arn:aws:iam::1:role/r\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_REGION, "ap-south-1");
	assert_value(cfg, "default", MS__AWS_ENDPOINT_URL, "http://h:9000");
	assert_value(cfg, "default", MS__AWS_ROLE_ARN, "arn:aws:iam::1:role/r");
	ms__aws_config_free(cfg);
}

Test(s3_config, s3_sub_section)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile minio]\n"
	                   "endpoint_url = http://global\n"
	                   "s3 =\n"
	                   "    endpoint_url = http://minio:9000 # the s3 one\n"
	                   "\n"
	                   "    # a comment inside\n"
	                   "    addressing_style = path\n"
	                   "region = us-east-1\n"),
	             0);
	assert_value(cfg, "minio", MS__AWS_ENDPOINT_URL, "http://global");
	assert_value(cfg, "minio", MS__AWS_S3_ENDPOINT_URL, "http://minio:9000");
	assert_value(cfg, "minio", MS__AWS_S3_ADDRESSING_STYLE, "path");
	assert_value(cfg, "minio", MS__AWS_REGION, "us-east-1");
	ms__aws_config_free(cfg);
}

Test(s3_config, other_services_sub_sections_are_ignored)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[default]\nsts =\n  endpoint_url = http://sts\n"
	                   "  addressing_style = virtual\nregion = r\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_S3_ENDPOINT_URL, NULL);
	assert_value(cfg, "default", MS__AWS_S3_ADDRESSING_STYLE, NULL);
	assert_value(cfg, "default", MS__AWS_ENDPOINT_URL, NULL);
	assert_value(cfg, "default", MS__AWS_REGION, "r");
	ms__aws_config_free(cfg);
}

Test(s3_config, sub_section_keys_stay_in_the_sub_section)
{
	ms__aws_config *cfg = NULL;

	/* "region" indented under "s3 =" is an s3 setting we do not use, not the region. */
	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[default]\ns3 =\n  region = nope\n  endpoint_url = http://x\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_REGION, NULL);
	assert_value(cfg, "default", MS__AWS_ENDPOINT_URL, NULL);
	assert_value(cfg, "default", MS__AWS_S3_ENDPOINT_URL, "http://x");
	ms__aws_config_free(cfg);
}

Test(s3_config, indented_profile_keys_are_plain_keys)
{
	ms__aws_config *cfg = NULL;

	/* Indentation matters only relative to the key above: configparser's rule. */
	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[default]\n  region = r\n  s3 =\n      addressing_style = path\n"
	                   "  endpoint_url = http://e\n"),
	             0);
	assert_value(cfg, "default", MS__AWS_REGION, "r");
	assert_value(cfg, "default", MS__AWS_S3_ADDRESSING_STYLE, "path");
	assert_value(cfg, "default", MS__AWS_ENDPOINT_URL, "http://e");
	ms__aws_config_free(cfg);
}

Test(s3_config, later_values_win_and_sections_merge)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile a]\nregion = one\nendpoint_url = http://e\n"
	                   "[profile b]\nregion = b\n"
	                   "[profile a]\nregion = two\n"),
	             0);
	cr_assert_eq(cfg->profile_count, 2);
	assert_value(cfg, "a", MS__AWS_REGION, "two");
	assert_value(cfg, "a", MS__AWS_ENDPOINT_URL, "http://e");
	ms__aws_config_free(cfg);
}

Test(s3_config, an_empty_value_unsets)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG, "[default]\nregion = one\nregion =\n"), 0);
	assert_value(cfg, "default", MS__AWS_REGION, NULL);
	cr_assert_eq(ms__aws_config_find(cfg, "default")->origins[MS__AWS_REGION],
	             MS__AWS_FILE_NONE);
	ms__aws_config_free(cfg);
}

Test(s3_config, sso_session_and_other_sections_are_skipped)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile dev]\nregion = r\n"
	                   "[sso-session corp]\nregion = wrong\nsso_start_url = https://x\n"
	                   "[plugins]\nendpoint_url = wrong\n"
	                   "[preview]\nregion = wrong\n"),
	             0);
	cr_assert_eq(cfg->profile_count, 1);
	assert_value(cfg, "dev", MS__AWS_REGION, "r");
	assert_value(cfg, "dev", MS__AWS_SSO_START_URL, NULL);
	assert_value(cfg, "dev", MS__AWS_ENDPOINT_URL, NULL);
	ms__aws_config_free(cfg);
}

Test(s3_config, services_sections_keep_the_s3_endpoint)
{
	ms__aws_config *cfg = NULL;
	const ms__aws_profile *svc;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile dev]\nservices = local\n"
	                   "[services local]\ns3 =\n  endpoint_url = http://localhost:9000\n"
	                   "sts =\n  endpoint_url = http://localhost:9001\n"
	                   "region = not-kept\n"),
	             0);
	cr_assert_eq(cfg->service_count, 1);
	svc = ms__aws_config_find_services(cfg, "local");
	cr_assert_not_null(svc);
	cr_assert_str_eq(svc->values[MS__AWS_S3_ENDPOINT_URL], "http://localhost:9000");
	cr_assert_null(svc->values[MS__AWS_REGION]);
	cr_assert_null(ms__aws_config_find(cfg, "local"), "a services section is no profile");
	assert_value(cfg, "dev", MS__AWS_SERVICES, "local");
	ms__aws_config_free(cfg);
}

Test(s3_config, the_credentials_file_wins_key_by_key)
{
	ms__aws_config *cfg = NULL;
	const ms__aws_profile *p;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG,
	                   "[profile dev]\nregion = from-config\naws_access_key_id = config-id\n"
	                   "endpoint_url = http://config\n"),
	             0);
	cr_assert_eq(
	    ms__aws_config_parse(cfg, MS__AWS_FILE_CREDENTIALS, CREDS,
	                         "[dev]\naws_access_key_id = creds-id\nregion = from-creds\n",
	                         strlen("[dev]\naws_access_key_id = creds-id\nregion = "
	                                "from-creds\n")),
	    0);
	p = ms__aws_config_find(cfg, "dev");
	cr_assert(p->in_config && p->in_credentials);
	assert_value(cfg, "dev", MS__AWS_ACCESS_KEY_ID, "creds-id");
	assert_value(cfg, "dev", MS__AWS_REGION, "from-creds");
	assert_value(cfg, "dev", MS__AWS_ENDPOINT_URL, "http://config");
	cr_assert_eq(p->origins[MS__AWS_ACCESS_KEY_ID], MS__AWS_FILE_CREDENTIALS);
	cr_assert_eq(p->origins[MS__AWS_ENDPOINT_URL], MS__AWS_FILE_CONFIG);
	ms__aws_config_free(cfg);
}

Test(s3_config, an_empty_file_and_only_comments)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG, ""), 0);
	cr_assert_eq(cfg->profile_count, 0);
	ms__aws_config_free(cfg);
	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG, "# nothing\n\n;\n   \n"), 0);
	cr_assert_eq(cfg->profile_count, 0);
	ms__aws_config_free(cfg);
}

Test(s3_config, key_names)
{
	cr_assert_str_eq(ms__aws_key_name(MS__AWS_REGION), "region");
	cr_assert_str_eq(ms__aws_key_name(MS__AWS_S3_ENDPOINT_URL), "s3.endpoint_url");
	cr_assert_str_eq(ms__aws_key_name(MS__AWS_KEY_COUNT_), "?");
}

/* ---------------------------------------------------------------------------------------- */
/* Syntax errors and hostile files                                                           */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	const char *text;
	unsigned line;
} broken_file;

/* Each holds the secret on or near the bad line: no message may show it. */
static const broken_file broken_files[] = {
    {"[default\naws_secret_access_key = " SECRET "\n", 1},
    {"[default]\n[default\n", 2},
    {"[default] " SECRET "\n", 1},
    {"[]\n", 1},
    {"[   ]\n", 1},
    {"aws_secret_access_key = " SECRET "\n[default]\n", 1},
    {"[default]\n" SECRET "\n", 2},
    {"[default]\n= " SECRET "\n", 2},
    {"[default]\naws_secret_access_key = x\n  " SECRET "\n", 3},
    {"[default]\nregion = r\n  more = " SECRET "\n", 3},
    {"[default]\ns3 =\n  " SECRET "\n", 3},
    {"[default]\ns3 =\n  = " SECRET "\n", 3},
    {"[default]\naws_secret_access_key = " SECRET "\x01\n", 2},
    {"[default]\naws_session_token = " TOKEN "\x7f\n", 2},
    {"[default]\naws_secret_access_key = " SECRET "\rregion = x\n", 2},
};

Test(s3_config, syntax_errors_name_the_file_and_line_only)
{
	for (size_t i = 0; i < sizeof(broken_files) / sizeof(broken_files[0]); i++) {
		ms__aws_config *cfg = NULL;
		int rc = parse(&cfg, MS__AWS_FILE_CREDENTIALS, broken_files[i].text);

		cr_log_info("case %zu: %s", i, ms_error_last()->message);
		assert_syntax_error(rc, CREDS, broken_files[i].line);
		ms__aws_config_free(cfg);
	}
}

Test(s3_config, syntax_error_reasons)
{
	static const struct {
		const char *text;
		const char *reason;
	} cases[] = {
	    {"[default\n", "closing ']'"},
	    {"[a] b\n", "after the closing ']'"},
	    {"[]\n", "empty section name"},
	    {"region = r\n", "before the first section"},
	    {"[a]\njunk\n", "neither a section header"},
	    {"[a]\n = v\n", "no key"},
	    {"[a]\nregion = r\n  x = y\n", "continues a value"},
	    {"[a]\ns3 =\n  junk\n", "without '='"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__aws_config *cfg = NULL;
		int rc = parse(&cfg, MS__AWS_FILE_CONFIG, cases[i].text);

		cr_assert_eq(rc, MS_EINVAL, "case %zu", i);
		cr_assert_not_null(strstr(ms_error_last()->message, cases[i].reason),
		                   "case %zu: '%s' lacks '%s'", i, ms_error_last()->message,
		                   cases[i].reason);
		ms__aws_config_free(cfg);
	}
}

Test(s3_config, nul_bytes_are_rejected)
{
	static const char text[] = "[default]\nregion = a\0b\n";
	ms__aws_config *cfg = NULL;
	int rc;

	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	rc = ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, text, sizeof(text) - 1);
	assert_syntax_error(rc, CONFIG, 2);
	cr_assert_not_null(strstr(ms_error_last()->message, "NUL"));
	ms__aws_config_free(cfg);
}

Test(s3_config, a_huge_line_is_rejected)
{
	size_t len = MS__AWS_LINE_MAX + 100;
	char *text = malloc(len + 64);
	ms__aws_config *cfg = NULL;
	int rc;

	cr_assert_not_null(text);
	strcpy(text, "[default]\naws_secret_access_key = ");
	memset(text + strlen(text), 'A', len);
	text[strlen("[default]\naws_secret_access_key = ") + len] = '\0';
	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	rc = ms__aws_config_parse(cfg, MS__AWS_FILE_CREDENTIALS, CREDS, text, strlen(text));
	assert_syntax_error(rc, CREDS, 2);
	cr_assert_null(strstr(ms_error_last()->message, "AAAA"));
	ms__aws_config_free(cfg);
	free(text);
}

Test(s3_config, a_line_at_the_cap_is_accepted)
{
	const char *prefix = "[default]\naws_session_token = ";
	size_t token_len = MS__AWS_LINE_MAX - strlen("aws_session_token = ");
	char *text = malloc(strlen(prefix) + token_len + 2);
	ms__aws_config *cfg = NULL;

	cr_assert_not_null(text);
	strcpy(text, prefix);
	memset(text + strlen(prefix), 'T', token_len);
	strcpy(text + strlen(prefix) + token_len, "\n");
	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CREDENTIALS, CREDS, text, strlen(text)),
	             0, "%s", ms_error_last()->message);
	cr_assert_eq(strlen(value_of(cfg, "default", MS__AWS_SESSION_TOKEN)), token_len);
	ms__aws_config_free(cfg);
	free(text);
}

Test(s3_config, a_file_over_the_size_cap_is_rejected)
{
	size_t len = MS__AWS_FILE_MAX + 1;
	char *text = malloc(len);
	ms__aws_config *cfg = NULL;

	cr_assert_not_null(text);
	for (size_t i = 0; i < len; i++)
		text[i] = i % 2 == 0 ? '#' : '\n';
	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, text, len), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, CONFIG));
	/* At the cap exactly, a file of comments is fine. */
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, text, len - 1), 0);
	ms__aws_config_free(cfg);
	free(text);
}

/* A file of `count` sections "[profile pN]\nregion = r\n". */
static char *many_sections(size_t count, size_t *len)
{
	size_t size = count * 40 + 1, used = 0;
	char *text = malloc(size);

	cr_assert_not_null(text);
	for (size_t i = 0; i < count; i++)
		used +=
		    (size_t)snprintf(text + used, size - used, "[profile p%zu]\nregion = r\n", i);
	*len = used;
	return text;
}

Test(s3_config, ten_thousand_sections_are_over_the_cap)
{
	size_t len;
	char *text = many_sections(10000, &len);
	ms__aws_config *cfg = NULL;
	int rc;

	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	rc = ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, text, len);
	cr_assert_eq(rc, MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "sections"), "%s",
	                   ms_error_last()->message);
	cr_assert_not_null(strstr(ms_error_last()->message, CONFIG ":8193: "), "%s",
	                   ms_error_last()->message);
	ms__aws_config_free(cfg);
	free(text);
}

Test(s3_config, sections_up_to_the_cap_are_fine)
{
	size_t len;
	char *text = many_sections(MS__AWS_SECTIONS_MAX, &len);
	ms__aws_config *cfg = NULL;

	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, text, len), 0);
	cr_assert_eq(cfg->profile_count, MS__AWS_SECTIONS_MAX);
	assert_value(cfg, "p4095", MS__AWS_REGION, "r");
	ms__aws_config_free(cfg);
	free(text);
}

Test(s3_config, repeated_headers_count_toward_the_cap)
{
	size_t count = MS__AWS_SECTIONS_MAX + 1, len = count * 4;
	char *text = malloc(len);
	ms__aws_config *cfg = NULL;

	cr_assert_not_null(text);
	for (size_t i = 0; i < count; i++)
		memcpy(text + 4 * i, "[a]\n", 4);
	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CREDENTIALS, CREDS, text, len),
	             MS_EINVAL);
	ms__aws_config_free(cfg);
	free(text);
}

Test(s3_config, binary_garbage_is_rejected_cleanly)
{
	unsigned seed = 12345;

	for (int round = 0; round < 200; round++) {
		unsigned char garbage[512];
		ms__aws_config *cfg = NULL;
		int rc;

		for (size_t i = 0; i < sizeof(garbage); i++) {
			seed = seed * 1103515245u + 12345u;
			garbage[i] = (unsigned char)(seed >> 16);
		}
		cr_assert_eq(ms__aws_config_new(&cfg), 0);
		rc = ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, (const char *)garbage,
		                          sizeof(garbage));
		cr_assert_eq(rc, MS_EINVAL, "round %d: rc %d", round, rc);
		cr_assert_eq(strncmp(ms_error_last()->message, CONFIG ":", strlen(CONFIG ":")), 0);
		ms__aws_config_free(cfg);
	}
}

Test(s3_config, high_bytes_in_names_and_values_are_kept)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(
	    parse(&cfg, MS__AWS_FILE_CONFIG, "[profile d\xc3\xa9v]\nregion = \xe2\x82\xac\n"), 0);
	assert_value(cfg, "d\xc3\xa9v", MS__AWS_REGION, "\xe2\x82\xac");
	ms__aws_config_free(cfg);
}

Test(s3_config, a_failed_parse_keeps_what_came_before)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(parse(&cfg, MS__AWS_FILE_CONFIG, "[default]\nregion = r\n[broken\n"),
	             MS_EINVAL);
	assert_value(cfg, "default", MS__AWS_REGION, "r");
	ms__aws_config_free(cfg);
}

Test(s3_config, unknown_file_kind)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_NONE, CONFIG, "", 0), MS_EINVAL);
	ms__aws_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* Finding the files and the profile                                                         */
/* ---------------------------------------------------------------------------------------- */

/* A home directory in the test's temporary directory, with the two files. */
static void make_home(char *home, size_t size, const char *config, const char *credentials)
{
	char path[4096];

	tu_path(home, size, "home");
	mkdir(home, 0700);
	if (config != NULL)
		write_in(path, sizeof(path), "home/.aws", "config", config);
	if (credentials != NULL)
		write_in(path, sizeof(path), "home/.aws", "credentials", credentials);
}

static int load(ms__aws_config **out, const char **env, const char *profile)
{
	ms__aws_config_options opts = {
	    .getenv = tu_table_getenv, .getenv_payload = env, .profile = profile};

	return ms__aws_config_load(out, &opts);
}

Test(s3_config, files_under_home_by_default)
{
	char home[4096], home_env[4200], want[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {home_env, NULL};

	make_home(home, sizeof(home), "[default]\nregion = r\n",
	          "[default]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET
	          "\n");
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	snprintf(want, sizeof(want), "%s/.aws/config", home);
	cr_assert_str_eq(cfg->config_path, want);
	snprintf(want, sizeof(want), "%s/.aws/credentials", home);
	cr_assert_str_eq(cfg->credentials_path, want);
	cr_assert_eq(cfg->config_status, MS__AWS_FILE_READ);
	cr_assert_eq(cfg->credentials_status, MS__AWS_FILE_READ);
	cr_assert_str_eq(cfg->profile_name, "default");
	cr_assert_str_eq(cfg->profile_why, "default");
	cr_assert_not_null(cfg->profile);
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "r");
	cr_assert_str_eq(cfg->profile->values[MS__AWS_SECRET_ACCESS_KEY], SECRET);
	cr_assert_str_eq(ms__aws_config_path(cfg, MS__AWS_FILE_CREDENTIALS), want);
	ms__aws_config_free(cfg);
}

Test(s3_config, aws_config_file_overrides_home)
{
	char home[4096], home_env[4200], file[4096], file_env[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {home_env, file_env, NULL};

	make_home(home, sizeof(home), "[default]\nregion = from-home\n", NULL);
	write_in(file, sizeof(file), "elsewhere", "cfg", "[default]\nregion = from-variable\n");
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	snprintf(file_env, sizeof(file_env), "AWS_CONFIG_FILE=%s", file);
	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_str_eq(cfg->config_path, file);
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "from-variable");
	cr_assert_eq(cfg->credentials_status, MS__AWS_FILE_MISSING);
	ms__aws_config_free(cfg);
}

Test(s3_config, aws_shared_credentials_file_overrides_home)
{
	char home[4096], home_env[4200], file[4096], file_env[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {home_env, file_env, NULL};

	make_home(home, sizeof(home), NULL, "[default]\naws_access_key_id = home\n");
	write_in(file, sizeof(file), "elsewhere", "creds", "[default]\naws_access_key_id = var\n");
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	snprintf(file_env, sizeof(file_env), "AWS_SHARED_CREDENTIALS_FILE=%s", file);
	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_str_eq(cfg->credentials_path, file);
	cr_assert_str_eq(cfg->profile->values[MS__AWS_ACCESS_KEY_ID], "var");
	cr_assert_eq(cfg->config_status, MS__AWS_FILE_MISSING);
	ms__aws_config_free(cfg);
}

Test(s3_config, options_override_the_variables)
{
	char a[4096], b[4096], a_env[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {a_env, "HOME=/nonexistent", NULL};
	ms__aws_config_options opts = {.getenv = tu_table_getenv, .getenv_payload = env};

	write_in(a, sizeof(a), "x", "a", "[default]\nregion = from-variable\n");
	write_in(b, sizeof(b), "x", "b", "[default]\nregion = from-option\n");
	snprintf(a_env, sizeof(a_env), "AWS_CONFIG_FILE=%s", a);
	opts.config_file = b;
	cr_assert_eq(ms__aws_config_load(&cfg, &opts), 0, "%s", ms_error_last()->message);
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "from-option");
	cr_assert_str_eq(cfg->credentials_path, "/nonexistent/.aws/credentials");
	ms__aws_config_free(cfg);
}

Test(s3_config, a_tilde_in_the_variable_is_home)
{
	char home[4096], home_env[4200], path[4096];
	ms__aws_config *cfg = NULL;
	const char *env[] = {home_env, "AWS_CONFIG_FILE=~/my/config", NULL};

	make_home(home, sizeof(home), NULL, NULL);
	write_in(path, sizeof(path), "home/my", "config", "[default]\nregion = tilde\n");
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_str_eq(cfg->config_path, path);
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "tilde");
	ms__aws_config_free(cfg);
}

Test(s3_config, no_home_and_no_variables_means_no_files)
{
	ms__aws_config *cfg = NULL;
	const char *env[] = {NULL};

	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_null(cfg->config_path);
	cr_assert_null(cfg->credentials_path);
	cr_assert_eq(cfg->config_status, MS__AWS_FILE_NOT_LOOKED);
	cr_assert_eq(cfg->credentials_status, MS__AWS_FILE_NOT_LOOKED);
	cr_assert_null(cfg->profile);
	cr_assert_str_eq(cfg->profile_name, "default");
	cr_assert_str_eq(ms__aws_config_path(cfg, MS__AWS_FILE_CONFIG), "");
	ms__aws_config_free(cfg);
}

Test(s3_config, missing_files_are_empty)
{
	ms__aws_config *cfg = NULL;
	const char *env[] = {"HOME=/nonexistent-home-for-tests", NULL};

	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_eq(cfg->config_status, MS__AWS_FILE_MISSING);
	cr_assert_eq(cfg->credentials_status, MS__AWS_FILE_MISSING);
	cr_assert_null(cfg->profile);
	ms__aws_config_free(cfg);
}

Test(s3_config, a_directory_counts_as_missing)
{
	char dir[4096], env_var[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {env_var, "HOME=/nonexistent", NULL};

	tu_path(dir, sizeof(dir), "a-directory");
	mkdir(dir, 0700);
	snprintf(env_var, sizeof(env_var), "AWS_CONFIG_FILE=%s", dir);
	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_eq(cfg->config_status, MS__AWS_FILE_MISSING);
	ms__aws_config_free(cfg);
}

Test(s3_config, dev_null_turns_a_file_off)
{
	ms__aws_config *cfg = NULL;
	const char *env[] = {"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	                     NULL};

	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_eq(cfg->config_status, MS__AWS_FILE_READ);
	cr_assert_eq(cfg->profile_count, 0);
	ms__aws_config_free(cfg);
}

/* Loads with `env` and says whether the config file was found unreadable and skipped. */
static bool load_finds_config_unreadable(const char **env)
{
	ms__aws_config *cfg = NULL;
	bool unreadable;

	if (load(&cfg, env, NULL) != 0)
		return false;
	unreadable = cfg->config_status == MS__AWS_FILE_UNREADABLE && cfg->profile == NULL;
	ms__aws_config_free(cfg);
	return unreadable;
}

Test(s3_config, an_unreadable_file_is_skipped)
{
	char home[4096], home_env[4200], path[4200];
	const char *env[] = {home_env, NULL};
	pid_t pid;
	int status = 0;

	make_home(home, sizeof(home), "[default]\nregion = r\n", NULL);
	snprintf(path, sizeof(path), "%s/.aws/config", home);
	cr_assert_eq(chmod(path, 0), 0);
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	if (geteuid() != 0) {
		cr_assert(load_finds_config_unreadable(env), "%s", ms_error_last()->message);
		return;
	}
	/* Root reads every file: check as "nobody" in a child, with the directories above
	 * the file open to it, so that only the file's own mode stops it. */
	cr_assert_eq(chmod(tu_tmpdir(), 0755), 0);
	cr_assert_eq(chmod(home, 0755), 0);
	snprintf(path, sizeof(path), "%s/.aws", home);
	cr_assert_eq(chmod(path, 0755), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(2);
		_exit(load_finds_config_unreadable(env) ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

Test(s3_config, a_big_file_on_disk_is_rejected)
{
	char path[4096], env_var[4200];
	size_t len = MS__AWS_FILE_MAX + 10;
	char *text = malloc(len);
	ms__aws_config *cfg = NULL;
	const char *env[] = {env_var, "HOME=/nonexistent", NULL};

	cr_assert_not_null(text);
	memset(text, '\n', len);
	tu_path(path, sizeof(path), "big");
	tu_write_file(path, text, len);
	snprintf(env_var, sizeof(env_var), "AWS_SHARED_CREDENTIALS_FILE=%s", path);
	cr_assert_eq(load(&cfg, env, NULL), MS_EINVAL);
	cr_assert_null(cfg);
	cr_assert_not_null(strstr(ms_error_last()->message, path));
	cr_assert_not_null(strstr(ms_error_last()->message, "1048576"));
	free(text);
}

Test(s3_config, a_syntax_error_on_disk_fails_the_load)
{
	char home[4096], home_env[4200], want[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {home_env, NULL};

	make_home(home, sizeof(home), "[default]\nregion = r\n",
	          "[default]\naws_secret_access_key " SECRET "\n");
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	snprintf(want, sizeof(want), "%s/.aws/credentials", home);
	cr_assert_eq(load(&cfg, env, NULL), MS_EINVAL);
	cr_assert_null(cfg);
	assert_syntax_error(MS_EINVAL, want, 2);
}

/* The profile-selection table: one test per rule, each with every lower rule present. */
static const char *const profiles_config = "[default]\nregion = d\n[profile env]\nregion = e\n"
                                           "[profile legacy]\nregion = l\n"
                                           "[profile opt]\nregion = o\n";

static ms__aws_config *load_profiles(const char **env, const char *option)
{
	char path[4096];
	const char *full_env[8] = {NULL};
	char config_env[4200];
	ms__aws_config *cfg = NULL;
	size_t n = 0;

	write_in(path, sizeof(path), "p", "config", profiles_config);
	snprintf(config_env, sizeof(config_env), "AWS_CONFIG_FILE=%s", path);
	full_env[n++] = config_env;
	full_env[n++] = "AWS_SHARED_CREDENTIALS_FILE=/nonexistent";
	for (; *env != NULL && n < 7; env++)
		full_env[n++] = *env;
	cr_assert_eq(load(&cfg, full_env, option), 0, "%s", ms_error_last()->message);
	return cfg;
}

Test(s3_config, profile_option_beats_aws_profile)
{
	const char *env[] = {"AWS_PROFILE=env", "AWS_DEFAULT_PROFILE=legacy", NULL};
	ms__aws_config *cfg = load_profiles(env, "opt");

	cr_assert_str_eq(cfg->profile_name, "opt");
	cr_assert_str_eq(cfg->profile_why, "option");
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "o");
	ms__aws_config_free(cfg);
}

Test(s3_config, aws_profile_beats_aws_default_profile)
{
	const char *env[] = {"AWS_PROFILE=env", "AWS_DEFAULT_PROFILE=legacy", NULL};
	ms__aws_config *cfg = load_profiles(env, NULL);

	cr_assert_str_eq(cfg->profile_name, "env");
	cr_assert_str_eq(cfg->profile_why, "AWS_PROFILE");
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "e");
	ms__aws_config_free(cfg);
}

Test(s3_config, aws_default_profile_beats_default)
{
	const char *env[] = {"AWS_DEFAULT_PROFILE=legacy", NULL};
	ms__aws_config *cfg = load_profiles(env, NULL);

	cr_assert_str_eq(cfg->profile_name, "legacy");
	cr_assert_str_eq(cfg->profile_why, "AWS_DEFAULT_PROFILE");
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "l");
	ms__aws_config_free(cfg);
}

Test(s3_config, default_profile_last)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = load_profiles(env, NULL);

	cr_assert_str_eq(cfg->profile_name, "default");
	cr_assert_str_eq(cfg->profile_why, "default");
	cr_assert_str_eq(cfg->profile->values[MS__AWS_REGION], "d");
	ms__aws_config_free(cfg);
}

Test(s3_config, an_empty_aws_profile_is_unset)
{
	const char *env[] = {"AWS_PROFILE=", "AWS_DEFAULT_PROFILE=legacy", NULL};
	ms__aws_config *cfg = load_profiles(env, "");

	cr_assert_str_eq(cfg->profile_name, "legacy");
	ms__aws_config_free(cfg);
}

Test(s3_config, a_missing_named_profile_is_an_error)
{
	char path[4096], config_env[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {config_env, "AWS_PROFILE=typo", "HOME=/nonexistent", NULL};

	write_in(path, sizeof(path), "p", "config", profiles_config);
	snprintf(config_env, sizeof(config_env), "AWS_CONFIG_FILE=%s", path);
	cr_assert_eq(load(&cfg, env, NULL), MS_ENOTFOUND);
	cr_assert_null(cfg);
	cr_assert_not_null(strstr(ms_error_last()->message, "'typo'"));
	cr_assert_not_null(strstr(ms_error_last()->message, "AWS_PROFILE"));
	cr_assert_not_null(strstr(ms_error_last()->message, path));
}

Test(s3_config, a_profile_only_in_the_credentials_file_is_found)
{
	char path[4096], creds_env[4200];
	ms__aws_config *cfg = NULL;
	const char *env[] = {creds_env, "AWS_PROFILE=ci", "HOME=/nonexistent", NULL};

	write_in(path, sizeof(path), "p", "credentials", "[ci]\naws_access_key_id = x\n");
	snprintf(creds_env, sizeof(creds_env), "AWS_SHARED_CREDENTIALS_FILE=%s", path);
	cr_assert_eq(load(&cfg, env, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_not_null(cfg->profile);
	cr_assert_str_eq(cfg->profile->name, "ci");
	ms__aws_config_free(cfg);
}

Test(s3_config, the_default_accessor_reads_the_environment)
{
	cr_assert_not_null(ms__getenv_default("PATH", NULL));
	cr_assert_null(ms__getenv(NULL, NULL, "MS_TEST_SURELY_UNSET_VARIABLE"));
}

Test(s3_config, out_of_memory_at_every_allocation_of_a_load)
{
	char home[4096], home_env[4200];
	const char *env[] = {home_env, "AWS_PROFILE=dev", NULL};
	ms__aws_config *cfg = NULL;
	int rc = -1;

	make_home(home, sizeof(home),
	          "[default]\nregion = r\n[profile dev]\nregion = x\ns3 =\n  endpoint_url = "
	          "http://e\n[services s]\ns3 =\n  endpoint_url = http://s\n",
	          "[dev]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET "\n");
	snprintf(home_env, sizeof(home_env), "HOME=%s", home);
	for (long n = 1; n < 200; n++) {
		long before = ms__alloc_count();

		ms__alloc_fail_at(n, 0);
		rc = load(&cfg, env, NULL);
		ms__alloc_fail_at(0, 0);
		if (rc == 0) {
			cr_assert_not_null(cfg);
			ms__aws_config_free(cfg);
			if (ms__alloc_count() - before < n)
				break; /* the failure was never reached: every path is walked */
			continue;
		}
		cr_assert_eq(rc, MS_ENOMEM, "allocation %ld: %d %s", n, rc,
		             ms_error_last()->message);
		cr_assert_null(cfg);
		cr_assert_null(strstr(ms_error_last()->message, SECRET));
	}
	cr_assert_eq(rc, 0, "the walk ended without a successful load");
	cr_assert_eq(tu_leaks_found(), 0,
	             "a path that failed an allocation leaked (see the report above)");
}

/* ---------------------------------------------------------------------------------------- */
/* How a profile gets credentials                                                            */
/* ---------------------------------------------------------------------------------------- */

/* Parses a config file, then a credentials file, and returns profile "p". */
static const ms__aws_profile *profile_from(ms__aws_config **cfg, const char *config,
                                           const char *credentials)
{
	cr_assert_eq(parse(cfg, MS__AWS_FILE_CONFIG, config), 0);
	(*cfg)->config_path = strdup(CONFIG);
	(*cfg)->credentials_path = strdup(CREDS);
	cr_assert_eq(ms__aws_config_parse(*cfg, MS__AWS_FILE_CREDENTIALS, CREDS, credentials,
	                                  strlen(credentials)),
	             0);
	return ms__aws_config_find(*cfg, "p");
}

static void assert_kind(const char *config, const char *credentials, int want_rc,
                        ms__aws_credentials_kind want, const char *in_message)
{
	ms__aws_config *cfg = NULL;
	ms__aws_credentials_kind kind = MS__AWS_CREDENTIALS_NONE;
	const ms__aws_profile *p = profile_from(&cfg, config, credentials);
	int rc;

	cr_assert_not_null(p);
	rc = ms__aws_profile_credentials_kind(&kind, cfg, p);
	cr_assert_eq(rc, want_rc, "rc %d: %s", rc, ms_error_last()->message);
	cr_assert_eq(kind, want, "kind %d, want %d", kind, want);
	if (in_message != NULL)
		cr_assert_not_null(strstr(ms_error_last()->message, in_message), "'%s' lacks '%s'",
		                   ms_error_last()->message, in_message);
	if (rc != 0) {
		cr_assert_null(strstr(ms_error_last()->message, SECRET));
		cr_assert_null(strstr(ms_error_last()->message, "secret-command"));
	}
	ms__aws_config_free(cfg);
}

Test(s3_config, static_keys)
{
	assert_kind("[profile p]\nregion = r\n",
	            "[p]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET "\n", 0,
	            MS__AWS_CREDENTIALS_STATIC, NULL);
}

Test(s3_config, a_key_id_without_its_secret)
{
	assert_kind("[profile p]\n", "[p]\naws_access_key_id = " KEY_ID "\n", MS_EINVAL,
	            MS__AWS_CREDENTIALS_NONE, "aws_secret_access_key");
}

Test(s3_config, a_secret_without_its_key_id)
{
	assert_kind("[profile p]\n", "[p]\naws_secret_access_key = " SECRET "\n", MS_EINVAL,
	            MS__AWS_CREDENTIALS_NONE, CREDS);
}

Test(s3_config, assume_role_with_source_profile)
{
	assert_kind("[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n"
	            "aws_access_key_id = x\naws_secret_access_key = " SECRET "\n",
	            "", 0, MS__AWS_CREDENTIALS_ASSUME_ROLE, NULL);
}

Test(s3_config, assume_role_with_credential_source)
{
	assert_kind("[profile p]\nrole_arn = arn:aws:iam::1:role/r\n"
	            "credential_source = Ec2InstanceMetadata\n",
	            "", 0, MS__AWS_CREDENTIALS_ASSUME_ROLE, NULL);
}

Test(s3_config, a_role_with_nothing_to_assume_it_from)
{
	assert_kind("[profile p]\nrole_arn = arn:aws:iam::1:role/r\n", "", MS_EINVAL,
	            MS__AWS_CREDENTIALS_ASSUME_ROLE, CONFIG);
}

Test(s3_config, a_role_with_two_sources)
{
	assert_kind("[profile p]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = a\n"
	            "credential_source = Environment\n",
	            "", MS_EINVAL, MS__AWS_CREDENTIALS_ASSUME_ROLE, "exactly one");
}

Test(s3_config, web_identity)
{
	assert_kind("[profile p]\nrole_arn = arn:aws:iam::1:role/r\n"
	            "web_identity_token_file = /var/run/secrets/token\n",
	            "", 0, MS__AWS_CREDENTIALS_WEB_IDENTITY, NULL);
}

Test(s3_config, sso_is_unsupported)
{
	assert_kind("[profile p]\nsso_session = corp\n", "", MS_EUNSUPPORTED,
	            MS__AWS_CREDENTIALS_SSO, "export-credentials --profile p");
}

Test(s3_config, credential_process_is_unsupported)
{
	assert_kind("[profile p]\ncredential_process = /usr/bin/secret-command --key " SECRET "\n",
	            "", MS_EUNSUPPORTED, MS__AWS_CREDENTIALS_PROCESS, "credential_process");
}

Test(s3_config, credentials_file_keys_beat_credential_process)
{
	assert_kind("[profile p]\ncredential_process = /usr/bin/secret-command\n",
	            "[p]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET "\n", 0,
	            MS__AWS_CREDENTIALS_STATIC, NULL);
}

Test(s3_config, credential_process_beats_config_file_keys)
{
	assert_kind("[profile p]\ncredential_process = /usr/bin/secret-command\n"
	            "aws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET "\n",
	            "", MS_EUNSUPPORTED, MS__AWS_CREDENTIALS_PROCESS, NULL);
}

Test(s3_config, nothing_at_all)
{
	ms__aws_credentials_kind kind = MS__AWS_CREDENTIALS_STATIC;

	assert_kind("[profile p]\nregion = r\n", "", 0, MS__AWS_CREDENTIALS_NONE, NULL);
	cr_assert_eq(ms__aws_profile_credentials_kind(&kind, NULL, NULL), 0);
	cr_assert_eq(kind, MS__AWS_CREDENTIALS_NONE);
}
