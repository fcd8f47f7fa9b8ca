/*
 * test_s3_url.c - s3:// and gs:// URLs, bucket names, and where requests go: one test per
 * precedence rule (each with every lower rule present, so that a swapped order fails),
 * addressing style, TLS, and the request path with S3's key encoding.
 *
 * The environment is always a table given through the accessor, never setenv().
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3_url.h"
#include "support/testutil.h"

TestSuite(s3_url, .timeout = 30);

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define CONFIG "/home/u/.aws/config"

/* A config parsed from `text`, with profile `profile` selected. */
static ms__aws_config *config_of(const char *text, const char *profile)
{
	ms__aws_config *cfg = NULL;

	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, text, strlen(text)), 0,
	             "%s", ms_error_last()->message);
	cfg->config_path = strdup(CONFIG);
	cfg->profile = ms__aws_config_find(cfg, profile);
	cr_assert_not_null(cfg->profile);
	return cfg;
}

/* Resolves `url` with `env` (NULL-terminated "NAME=value"s) and an optional config. */
static int resolve(ms__s3_location *out, const char *url, const char **env,
                   const ms__aws_config *cfg)
{
	ms__s3_resolve_options opts = {
	    .getenv = tu_table_getenv, .getenv_payload = env, .config = cfg};

	return ms__s3_resolve(out, url, &opts);
}

static void resolve_ok(ms__s3_location *out, const char *url, const char **env,
                       const ms__aws_config *cfg)
{
	int rc = resolve(out, url, env, cfg);

	cr_assert_eq(rc, 0, "%s: rc %d: %s", url, rc, ms_error_last()->message);
}

static void object_url(char *out, const ms__s3_location *loc, const char *key)
{
	cr_assert_eq(ms__s3_object_url(out, MS__S3_URL_MAX, loc, key), 0, "%s",
	             ms_error_last()->message);
}

/* ---------------------------------------------------------------------------------------- */
/* URLs                                                                                      */
/* ---------------------------------------------------------------------------------------- */

Test(s3_url, an_object)
{
	ms__s3_url u;

	cr_assert_eq(ms__s3_url_parse(&u, "s3://my-bucket/models/llama/model.safetensors"), 0);
	cr_assert_eq(u.store, MS__S3_STORE_S3);
	cr_assert_str_eq(u.bucket, "my-bucket");
	cr_assert_str_eq(u.key, "models/llama/model.safetensors");
	cr_assert_not(u.prefix);
}

Test(s3_url, prefixes)
{
	static const struct {
		const char *url;
		const char *key;
	} cases[] = {
	    {"s3://bucket", ""},
	    {"s3://bucket/", ""},
	    {"s3://bucket/models/llama/", "models/llama/"},
	    {"gs://bucket/dir/", "dir/"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__s3_url u;

		cr_assert_eq(ms__s3_url_parse(&u, cases[i].url), 0, "%s", cases[i].url);
		cr_assert_str_eq(u.bucket, "bucket");
		cr_assert_str_eq(u.key, cases[i].key);
		cr_assert(u.prefix, "%s", cases[i].url);
	}
}

Test(s3_url, gs_urls)
{
	ms__s3_url u;

	cr_assert_eq(ms__s3_url_parse(&u, "gs://my_bucket/a/b"), 0);
	cr_assert_eq(u.store, MS__S3_STORE_GCS);
	cr_assert_str_eq(u.bucket, "my_bucket");
	cr_assert_str_eq(u.key, "a/b");
}

Test(s3_url, the_scheme_in_any_case)
{
	ms__s3_url u;

	cr_assert_eq(ms__s3_url_parse(&u, "S3://bucket/k"), 0);
	cr_assert_eq(u.store, MS__S3_STORE_S3);
	cr_assert_eq(ms__s3_url_parse(&u, "Gs://bucket/k"), 0);
	cr_assert_eq(u.store, MS__S3_STORE_GCS);
}

Test(s3_url, keys_are_taken_as_they_are)
{
	ms__s3_url u;

	/* The AWS CLI does not percent-decode: "%20" is three characters of the key. */
	cr_assert_eq(ms__s3_url_parse(&u, "s3://bucket/a%20b?x=1#y"), 0);
	cr_assert_str_eq(u.key, "a%20b?x=1#y");
	cr_assert_eq(ms__s3_url_parse(&u, "s3://bucket//double//slash"), 0);
	cr_assert_str_eq(u.key, "/double//slash");
	cr_assert_eq(ms__s3_url_parse(&u, "s3://bucket/caf\xc3\xa9 \xf0\x9f\xa6\x99.bin"), 0);
	cr_assert_str_eq(u.key, "caf\xc3\xa9 \xf0\x9f\xa6\x99.bin");
}

Test(s3_url, valid_bucket_names)
{
	static const char *const names[] = {
	    "abc",
	    "a-b",
	    "123",
	    "my.bucket.name",
	    "a1.b2-c3",
	    "xn-not-a-prefix",
	    "my-ap-alias-abcdefghij-s3alias",
	    "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc", /* 63 */
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char url[256];
		ms__s3_url u;

		snprintf(url, sizeof(url), "s3://%s/key", names[i]);
		cr_assert_eq(ms__s3_url_parse(&u, url), 0, "%s: %s", url, ms_error_last()->message);
		cr_assert_str_eq(u.bucket, names[i]);
	}
}

Test(s3_url, invalid_bucket_names)
{
	static const struct {
		const char *url;
		const char *reason;
	} cases[] = {
	    {"s3:///key", "no bucket name"},
	    {"s3://", "no bucket name"},
	    {"s3://ab/key", "3 to 63"},
	    {"s3://abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd/k", "3 to 63"},
	    {"s3://MyBucket/key", "lower case"},
	    {"s3://my_bucket/key", "lower-case letters, digits, '.' and '-'"},
	    {"s3://my bucket/key", "lower-case letters"},
	    {"s3://buck\xc3\xa9t/key", "lower-case letters"},
	    {"s3://-bucket/key", "starts and ends"},
	    {"s3://bucket-/key", "starts and ends"},
	    {"s3://.bucket/key", "starts and ends"},
	    {"s3://bucket./key", "starts and ends"},
	    {"s3://my..bucket/key", "two dots"},
	    {"s3://192.168.5.4/key", "IP address"},
	    {"s3://bucket:9000/key", "lower-case letters"},
	    {"s3://user@bucket/key", "lower-case letters"},
	    {"gs://-bucket/key", "starts and ends"},
	    {"gs://Bucket/key", "lower case"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__s3_url u;
		char shown[128];
		int rc = ms__s3_url_parse(&u, cases[i].url);

		cr_assert_eq(rc, MS_EINVAL, "%s: rc %d", cases[i].url, rc);
		cr_assert_not_null(strstr(ms_error_last()->message, cases[i].reason), "%s: '%s'",
		                   cases[i].url, ms_error_last()->message);
		/* The message names the URL (as ms__printable shows it). */
		snprintf(shown, sizeof(shown), "%.10s", cases[i].url);
		if (strchr(shown, '\xc3') == NULL)
			cr_assert_eq(strncmp(ms_error_last()->message, shown, strlen(shown)), 0,
			             "'%s' does not start with the URL", ms_error_last()->message);
	}
}

Test(s3_url, gcs_allows_long_dotted_names)
{
	char name[230], url[300];
	ms__s3_url u;

	/* Four 50-character labels: 203 characters, over S3's limit, within GCS's. */
	memset(name, 'a', 203);
	name[50] = name[101] = name[152] = '.';
	name[203] = '\0';
	snprintf(url, sizeof(url), "gs://%s/k", name);
	cr_assert_eq(ms__s3_url_parse(&u, url), 0, "%s", ms_error_last()->message);
	cr_assert_str_eq(u.bucket, name);
	snprintf(url, sizeof(url), "s3://%s/k", name);
	cr_assert_eq(ms__s3_url_parse(&u, url), MS_EINVAL);
}

Test(s3_url, gcs_labels_are_at_most_63)
{
	char name[80], url[120];
	ms__s3_url u;

	memset(name, 'a', 70);
	name[2] = '.';
	name[70] = '\0';
	snprintf(url, sizeof(url), "gs://%s/k", name);
	cr_assert_eq(ms__s3_url_parse(&u, url), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "63"));
}

Test(s3_url, gcs_name_over_222_is_rejected)
{
	char name[240], url[300];
	ms__s3_url u;

	memset(name, 'a', 223);
	for (int i = 50; i < 223; i += 51)
		name[i] = '.';
	name[223] = '\0';
	snprintf(url, sizeof(url), "gs://%s/k", name);
	cr_assert_eq(ms__s3_url_parse(&u, url), MS_EINVAL);
}

Test(s3_url, not_an_s3_url)
{
	static const char *const urls[] = {"http://bucket/key", "s3:/bucket/key", "bucket/key", "",
	                                   "s3:bucket",         "file:///x"};

	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		ms__s3_url u;

		cr_assert_eq(ms__s3_url_parse(&u, urls[i]), MS_EINVAL, "'%s'", urls[i]);
		cr_assert_not_null(strstr(ms_error_last()->message, "not an s3:// or gs:// URL"));
	}
}

Test(s3_url, unsupported_bucket_kinds)
{
	ms__s3_url u;

	cr_assert_eq(ms__s3_url_parse(&u, "s3://models--usw2-az1--x-s3/k"), MS_EUNSUPPORTED);
	cr_assert_not_null(strstr(ms_error_last()->message, "directory buckets"));
	cr_assert_eq(ms__s3_url_parse(&u, "s3://mfzwi23gnjvgw.mrap/k"), MS_EUNSUPPORTED);
	cr_assert_not_null(strstr(ms_error_last()->message, "multi-region"));
}

Test(s3_url, key_length_cap)
{
	char url[1100];
	ms__s3_url u;

	snprintf(url, sizeof(url), "s3://bucket/");
	memset(url + 12, 'k', 1024);
	url[12 + 1024] = '\0';
	cr_assert_eq(ms__s3_url_parse(&u, url), 0);
	cr_assert_eq(strlen(u.key), 1024);
	url[12 + 1024] = 'k';
	url[12 + 1025] = '\0';
	cr_assert_eq(ms__s3_url_parse(&u, url), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "1025"));
}

Test(s3_url, keys_must_be_utf8)
{
	static const char *const urls[] = {
	    "s3://bucket/\xff",
	    "s3://bucket/\xc3",
	    "s3://bucket/\xc0\xaf",
	    "s3://bucket/\xed\xa0\x80",
	    "s3://bucket/\xf4\x90\x80\x80",
	    "s3://bucket/a\x80z",
	};

	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		ms__s3_url u;

		cr_assert_eq(ms__s3_url_parse(&u, urls[i]), MS_EINVAL, "case %zu", i);
		cr_assert_not_null(strstr(ms_error_last()->message, "UTF-8"));
	}
}

Test(s3_url, a_long_url_is_cut_in_the_message)
{
	char url[3000];
	ms__s3_url u;

	snprintf(url, sizeof(url), "s3://BAD/");
	memset(url + 9, 'k', 2000);
	url[2009] = '\0';
	cr_assert_eq(ms__s3_url_parse(&u, url), MS_EINVAL);
	cr_assert_lt(strlen(ms_error_last()->message), 200);
	cr_assert_not_null(strstr(ms_error_last()->message, "..."));
}

/* ---------------------------------------------------------------------------------------- */
/* Defaults                                                                                  */
/* ---------------------------------------------------------------------------------------- */

Test(s3_url, aws_by_default)
{
	const char *env[] = {NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://bucket/dir/model.safetensors", env, NULL);
	cr_assert_eq(loc.store, MS__S3_STORE_S3);
	cr_assert(loc.tls);
	cr_assert_str_eq(loc.endpoint, "https://s3.us-east-1.amazonaws.com");
	cr_assert_str_eq(loc.endpoint_why, "default for region us-east-1");
	cr_assert_str_eq(loc.region, "us-east-1");
	cr_assert_str_eq(loc.region_why, "default");
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	cr_assert_str_eq(loc.addressing_why, "default for AWS");
	cr_assert_str_eq(loc.host, "bucket.s3.us-east-1.amazonaws.com");
	cr_assert_str_eq(loc.base_path, "");
	cr_assert_str_eq(loc.bucket, "bucket");
	cr_assert_str_eq(loc.key, "dir/model.safetensors");
	cr_assert_not(loc.prefix);
	cr_assert_str_eq(loc.tls_why, "https");
	cr_assert_str_eq(loc.ca_bundle, "");
	cr_assert_not(loc.anonymous);
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "https://bucket.s3.us-east-1.amazonaws.com/dir/model.safetensors");
}

Test(s3_url, the_region_is_in_the_default_host)
{
	const char *env[] = {"AWS_REGION=eu-central-1", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_str_eq(loc.host, "bucket.s3.eu-central-1.amazonaws.com");
	cr_assert_str_eq(loc.endpoint_why, "default for region eu-central-1");
}

Test(s3_url, china_regions_use_their_own_domain)
{
	const char *env[] = {"AWS_REGION=cn-north-1", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_str_eq(loc.endpoint, "https://s3.cn-north-1.amazonaws.com.cn");
}

Test(s3_url, gcs_by_default)
{
	const char *env[] = {NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "gs://my_models/llama/", env, NULL);
	cr_assert_eq(loc.store, MS__S3_STORE_GCS);
	cr_assert_str_eq(loc.endpoint, "https://storage.googleapis.com");
	cr_assert_str_eq(loc.endpoint_why, "default for gs://");
	cr_assert_str_eq(loc.region, "auto");
	cr_assert_str_eq(loc.region_why, "default for gs://");
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_str_eq(loc.addressing_why, "default for gs://");
	cr_assert(loc.prefix);
	object_url(url, &loc, "llama/model.safetensors");
	cr_assert_str_eq(url, "https://storage.googleapis.com/my_models/llama/model.safetensors");
}

Test(s3_url, no_options_at_all)
{
	ms__s3_location loc;

	/* NULL options read the process environment; only check that it works. */
	int rc = ms__s3_resolve(&loc, "s3://bucket/k", NULL);

	cr_assert(rc == 0 || rc == MS_EINVAL, "%d", rc);
}

/* ---------------------------------------------------------------------------------------- */
/* Endpoint precedence: one test per rule, every lower rule present                          */
/* ---------------------------------------------------------------------------------------- */

static const char *const endpoint_profile = "[profile dev]\n"
                                            "services = local\n"
                                            "endpoint_url = http://profile-endpoint:1\n"
                                            "s3 =\n"
                                            "  endpoint_url = http://profile-s3:2\n"
                                            "[services local]\n"
                                            "s3 =\n"
                                            "  endpoint_url = http://services-s3:3\n";

Test(s3_url, endpoint_option_beats_everything)
{
	const char *env[] = {"AWS_ENDPOINT_URL_S3=http://env-s3:4", "AWS_ENDPOINT_URL=http://env:5",
	                     NULL};
	ms__aws_config *cfg = config_of(endpoint_profile, "dev");
	ms__s3_resolve_options opts = {.getenv = tu_table_getenv,
	                               .getenv_payload = env,
	                               .config = cfg,
	                               .endpoint_url = "https://option:6"};
	ms__s3_location loc;

	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0, "%s",
	             ms_error_last()->message);
	cr_assert_str_eq(loc.endpoint, "https://option:6");
	cr_assert_str_eq(loc.endpoint_why, "option");
	ms__aws_config_free(cfg);
}

Test(s3_url, aws_endpoint_url_s3_beats_aws_endpoint_url)
{
	const char *env[] = {"AWS_ENDPOINT_URL_S3=http://env-s3:4", "AWS_ENDPOINT_URL=http://env:5",
	                     NULL};
	ms__aws_config *cfg = config_of(endpoint_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "http://env-s3:4");
	cr_assert_str_eq(loc.endpoint_why, "AWS_ENDPOINT_URL_S3");
	ms__aws_config_free(cfg);
}

Test(s3_url, aws_endpoint_url_beats_the_profile)
{
	const char *env[] = {"AWS_ENDPOINT_URL=http://env:5", NULL};
	ms__aws_config *cfg = config_of(endpoint_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "http://env:5");
	cr_assert_str_eq(loc.endpoint_why, "AWS_ENDPOINT_URL");
	ms__aws_config_free(cfg);
}

Test(s3_url, services_section_beats_the_profile_s3_endpoint)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of(endpoint_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "http://services-s3:3");
	cr_assert_str_eq(loc.endpoint_why,
	                 "services 'local' in " CONFIG ", named by profile 'dev'");
	ms__aws_config_free(cfg);
}

Test(s3_url, profile_s3_endpoint_beats_profile_endpoint)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\n"
	                                "endpoint_url = http://profile-endpoint:1\n"
	                                "services = missing\n"
	                                "s3 =\n"
	                                "  endpoint_url = http://profile-s3:2\n",
	                                "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "http://profile-s3:2");
	cr_assert_str_eq(loc.endpoint_why, "profile 'dev' in " CONFIG);
	ms__aws_config_free(cfg);
}

Test(s3_url, profile_endpoint_beats_the_default)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg =
	    config_of("[profile dev]\nendpoint_url = http://profile-endpoint:1\n", "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "http://profile-endpoint:1");
	cr_assert_str_eq(loc.endpoint_why, "profile 'dev' in " CONFIG);
	ms__aws_config_free(cfg);
}

Test(s3_url, ignore_configured_endpoint_urls_from_the_environment)
{
	const char *env[] = {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true",
	                     "AWS_ENDPOINT_URL=http://env:5", NULL};
	ms__aws_config *cfg = config_of(endpoint_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "https://s3.us-east-1.amazonaws.com");
	cr_assert_not_null(strstr(loc.endpoint_why, "ignored"));
	ms__aws_config_free(cfg);
}

Test(s3_url, ignore_configured_endpoint_urls_from_the_profile)
{
	const char *env[] = {"AWS_ENDPOINT_URL_S3=http://env-s3:4", NULL};
	ms__aws_config *cfg = config_of("[profile dev]\nignore_configured_endpoint_urls = TRUE\n"
	                                "endpoint_url = http://x:1\n",
	                                "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.endpoint, "https://s3.us-east-1.amazonaws.com");
	ms__aws_config_free(cfg);
}

Test(s3_url, ignore_configured_endpoint_urls_keeps_the_option)
{
	const char *env[] = {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true", NULL};
	ms__s3_resolve_options opts = {
	    .getenv = tu_table_getenv, .getenv_payload = env, .endpoint_url = "http://opt:1"};
	ms__s3_location loc;

	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0);
	cr_assert_str_eq(loc.endpoint, "http://opt:1");
}

Test(s3_url, ignore_configured_endpoint_urls_false_ignores_nothing)
{
	const char *env[] = {"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=false",
	                     "AWS_ENDPOINT_URL=http://env:5", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_str_eq(loc.endpoint, "http://env:5");
}

Test(s3_url, an_empty_variable_is_unset)
{
	const char *env[] = {"AWS_ENDPOINT_URL_S3=", "AWS_ENDPOINT_URL=http://env:5",
	                     "AWS_REGION=", "AWS_DEFAULT_REGION=eu-west-3", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_str_eq(loc.endpoint, "http://env:5");
	cr_assert_str_eq(loc.region, "eu-west-3");
}

Test(s3_url, gcs_follows_the_endpoint_variables_too)
{
	const char *env[] = {"AWS_ENDPOINT_URL=http://localhost:4443", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "gs://bucket/k", env, NULL);
	cr_assert_str_eq(loc.endpoint, "http://localhost:4443");
	cr_assert_str_eq(loc.endpoint_why, "AWS_ENDPOINT_URL");
}

Test(s3_url, gcs_through_an_s3_url_and_aws_endpoint_url)
{
	/* Run:ai's documented way to reach GCS: s3:// URLs and AWS_ENDPOINT_URL. */
	const char *env[] = {"AWS_ENDPOINT_URL=https://storage.googleapis.com", NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "https://storage.googleapis.com/bucket/k");
}

/* ---------------------------------------------------------------------------------------- */
/* Region precedence                                                                         */
/* ---------------------------------------------------------------------------------------- */

static const char *const region_profile = "[profile dev]\nregion = from-profile\n";

Test(s3_url, region_option_beats_aws_region)
{
	const char *env[] = {"AWS_REGION=from-region", "AWS_DEFAULT_REGION=from-default", NULL};
	ms__aws_config *cfg = config_of(region_profile, "dev");
	ms__s3_resolve_options opts = {.getenv = tu_table_getenv,
	                               .getenv_payload = env,
	                               .config = cfg,
	                               .region = "from-option"};
	ms__s3_location loc;

	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0);
	cr_assert_str_eq(loc.region, "from-option");
	cr_assert_str_eq(loc.region_why, "option");
	ms__aws_config_free(cfg);
}

Test(s3_url, aws_region_beats_aws_default_region)
{
	const char *env[] = {"AWS_REGION=from-region", "AWS_DEFAULT_REGION=from-default", NULL};
	ms__aws_config *cfg = config_of(region_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.region, "from-region");
	cr_assert_str_eq(loc.region_why, "AWS_REGION");
	ms__aws_config_free(cfg);
}

Test(s3_url, aws_default_region_beats_the_profile)
{
	const char *env[] = {"AWS_DEFAULT_REGION=from-default", NULL};
	ms__aws_config *cfg = config_of(region_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.region, "from-default");
	cr_assert_str_eq(loc.region_why, "AWS_DEFAULT_REGION");
	ms__aws_config_free(cfg);
}

Test(s3_url, profile_region_beats_the_default)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of(region_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.region, "from-profile");
	cr_assert_str_eq(loc.region_why, "profile 'dev' in " CONFIG);
	cr_assert_str_eq(loc.host, "bucket.s3.from-profile.amazonaws.com");
	ms__aws_config_free(cfg);
}

Test(s3_url, a_bad_region_names_its_source)
{
	const char *env[] = {"AWS_REGION=us east 1", NULL};
	ms__s3_location loc;

	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, NULL), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "AWS_REGION"));
	cr_assert_not_null(strstr(ms_error_last()->message, "'us east 1'"));
	cr_assert_str_eq(loc.host, "", "the location is zeroed on failure");
}

Test(s3_url, a_region_that_cannot_be_a_host_name)
{
	const char *env[] = {"AWS_REGION=US_EAST", NULL};
	const char *custom[] = {"AWS_REGION=US_EAST", "AWS_ENDPOINT_URL=http://minio:9000", NULL};
	ms__s3_location loc;

	/* Fine for a custom endpoint, where the region is only signed... */
	resolve_ok(&loc, "s3://bucket/k", custom, NULL);
	cr_assert_str_eq(loc.region, "US_EAST");
	/* ...but not in an AWS host name. */
	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, NULL), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "host name"));
}

Test(s3_url, an_overlong_region)
{
	char region[100];
	const char *env[] = {region, NULL};
	ms__s3_location loc;

	snprintf(region, sizeof(region), "AWS_REGION=%070d", 0);
	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, NULL), MS_EINVAL);
}

/* ---------------------------------------------------------------------------------------- */
/* Addressing style                                                                          */
/* ---------------------------------------------------------------------------------------- */

static const char *const minio_profile = "[profile dev]\nendpoint_url = http://minio.local:9000\n"
                                         "s3 =\n  addressing_style = path\n";

Test(s3_url, addressing_option_beats_the_runai_variable)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=0", NULL};
	ms__aws_config *cfg = config_of(minio_profile, "dev");
	ms__s3_resolve_options opts = {.getenv = tu_table_getenv,
	                               .getenv_payload = env,
	                               .config = cfg,
	                               .addressing = MS__S3_ADDRESSING_ASK_VIRTUAL};
	ms__s3_location loc;

	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	cr_assert_str_eq(loc.addressing_why, "option");
	cr_assert_str_eq(loc.host, "bucket.minio.local:9000");
	ms__aws_config_free(cfg);
}

Test(s3_url, addressing_option_path_on_aws)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__s3_resolve_options opts = {.getenv = tu_table_getenv,
	                               .getenv_payload = env,
	                               .addressing = MS__S3_ADDRESSING_ASK_PATH};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_str_eq(loc.host, "s3.us-east-1.amazonaws.com");
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "https://s3.us-east-1.amazonaws.com/bucket/k");
}

Test(s3_url, runai_variable_beats_the_profile)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__aws_config *cfg = config_of(minio_profile, "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	cr_assert_str_eq(loc.addressing_why, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1");
	ms__aws_config_free(cfg);
}

Test(s3_url, runai_variable_zero_turns_aws_to_path)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=false", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_str_eq(loc.addressing_why, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=false");
}

Test(s3_url, runai_variable_spellings)
{
	static const struct {
		const char *value;
		ms__s3_addressing want;
	} cases[] = {{"0", MS__S3_ADDRESSING_PATH},     {"1", MS__S3_ADDRESSING_VIRTUAL},
	             {"false", MS__S3_ADDRESSING_PATH}, {"true", MS__S3_ADDRESSING_VIRTUAL},
	             {"FALSE", MS__S3_ADDRESSING_PATH}, {"True", MS__S3_ADDRESSING_VIRTUAL}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char var[100];
		const char *env[] = {var, "AWS_ENDPOINT_URL=http://minio:9000", NULL};
		ms__s3_location loc;

		snprintf(var, sizeof(var), "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=%s",
		         cases[i].value);
		resolve_ok(&loc, "s3://bucket/k", env, NULL);
		cr_assert_eq(loc.addressing, cases[i].want, "%s", cases[i].value);
	}
}

Test(s3_url, a_bad_runai_variable)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=yes", NULL};
	ms__s3_location loc;

	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, NULL), MS_EINVAL);
	cr_assert_not_null(
	    strstr(ms_error_last()->message, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=yes"));
}

Test(s3_url, profile_addressing_beats_the_default)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\ns3 =\n  addressing_style = path\n", "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_str_eq(loc.addressing_why, "profile 'dev' in " CONFIG);
	ms__aws_config_free(cfg);
}

Test(s3_url, profile_virtual_on_a_custom_endpoint)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\nendpoint_url = https://minio.example.com\n"
	                                "s3 =\n  addressing_style = virtual\n",
	                                "dev");
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "https://bucket.minio.example.com/k");
	ms__aws_config_free(cfg);
}

Test(s3_url, profile_addressing_auto_is_the_default)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\ns3 =\n  addressing_style = auto\n", "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	cr_assert_str_eq(loc.addressing_why, "default for AWS");
	ms__aws_config_free(cfg);
}

Test(s3_url, a_bad_profile_addressing_style)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\ns3 =\n  addressing_style = sideways\n"
	                                "aws_secret_access_key = " SECRET "\n",
	                                "dev");
	ms__s3_location loc;

	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, cfg), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "profile 'dev' in " CONFIG));
	cr_assert_not_null(strstr(ms_error_last()->message, "'sideways'"));
	cr_assert_null(strstr(ms_error_last()->message, SECRET));
	ms__aws_config_free(cfg);
}

Test(s3_url, custom_endpoints_default_to_path)
{
	const char *env[] = {"AWS_ENDPOINT_URL=https://minio.example.com", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_str_eq(loc.addressing_why, "default for a custom endpoint");
	cr_assert_str_eq(loc.host, "minio.example.com");
}

Test(s3_url, dotted_buckets_get_path_style_on_aws)
{
	const char *env[] = {NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://my.dotted.bucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_not_null(strstr(loc.addressing_why, "dots"));
	cr_assert_not_null(strstr(loc.addressing_why, "default for AWS"));
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "https://s3.us-east-1.amazonaws.com/my.dotted.bucket/k");
}

Test(s3_url, dotted_buckets_get_path_style_even_when_virtual_is_asked)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__s3_resolve_options opts = {.getenv = tu_table_getenv,
	                               .getenv_payload = env,
	                               .addressing = MS__S3_ADDRESSING_ASK_VIRTUAL};
	ms__s3_location loc;

	cr_assert_eq(ms__s3_resolve(&loc, "s3://my.dotted.bucket/k", &opts), 0);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_not_null(strstr(loc.addressing_why, "TLS wildcard certificates"));
	cr_assert_not_null(strstr(loc.addressing_why, "option asked for virtual"));
	cr_assert_str_eq(loc.host, "s3.us-east-1.amazonaws.com");
	/* The variable asking, too. */
	cr_assert_eq(resolve(&loc, "s3://my.dotted.bucket/k", env, NULL), 0);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_not_null(strstr(loc.addressing_why, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"));
}

Test(s3_url, dotted_buckets_may_be_virtual_over_plain_http)
{
	const char *env[] = {"AWS_ENDPOINT_URL=http://minio.lan:9000",
	                     "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__s3_location loc;

	/* No certificate to match: the user asked, and DNS can serve it. */
	resolve_ok(&loc, "s3://my.dotted.bucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	cr_assert_str_eq(loc.host, "my.dotted.bucket.minio.lan:9000");
}

Test(s3_url, underscored_gcs_buckets_cannot_be_virtual)
{
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "gs://my_bucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_not_null(strstr(loc.addressing_why, "'_'"));
	resolve_ok(&loc, "gs://mybucket/k", env, NULL);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_VIRTUAL);
	cr_assert_str_eq(loc.host, "mybucket.storage.googleapis.com");
}

Test(s3_url, ip_address_endpoints_cannot_be_virtual)
{
	static const char *const endpoints[] = {"AWS_ENDPOINT_URL=http://10.0.0.5:9000",
	                                        "AWS_ENDPOINT_URL=http://[fd00::5]:9000"};

	for (size_t i = 0; i < 2; i++) {
		const char *env[] = {endpoints[i], "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1",
		                     NULL};
		ms__s3_location loc;

		resolve_ok(&loc, "s3://bucket/k", env, NULL);
		cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH, "%s", endpoints[i]);
		cr_assert_not_null(strstr(loc.addressing_why, "IP address"));
	}
}

Test(s3_url, addressing_names)
{
	cr_assert_str_eq(ms__s3_addressing_name(MS__S3_ADDRESSING_PATH), "path");
	cr_assert_str_eq(ms__s3_addressing_name(MS__S3_ADDRESSING_VIRTUAL), "virtual");
}

/* ---------------------------------------------------------------------------------------- */
/* Endpoints, TLS, CA bundle, anonymous access                                               */
/* ---------------------------------------------------------------------------------------- */

Test(s3_url, http_to_loopback)
{
	static const char *const endpoints[] = {
	    "AWS_ENDPOINT_URL=http://localhost:9000", "AWS_ENDPOINT_URL=http://127.0.0.1:9000",
	    "AWS_ENDPOINT_URL=http://[::1]:9000", "AWS_ENDPOINT_URL=HTTP://minio.localhost"};

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		const char *env[] = {endpoints[i], NULL};
		ms__s3_location loc;

		resolve_ok(&loc, "s3://bucket/k", env, NULL);
		cr_assert_not(loc.tls);
		cr_assert_not_null(strstr(loc.tls_why, "loopback"), "%s: %s", endpoints[i],
		                   loc.tls_why);
		cr_assert_not_null(strstr(loc.tls_why, "AWS_ENDPOINT_URL"));
	}
}

Test(s3_url, http_elsewhere_is_used_and_flagged)
{
	const char *env[] = {"AWS_ENDPOINT_URL=http://minio.lan:9000", NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_not(loc.tls);
	cr_assert_not_null(strstr(loc.tls_why, "unencrypted"));
	cr_assert_null(strstr(loc.tls_why, "loopback"));
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "http://minio.lan:9000/bucket/k");
}

Test(s3_url, not_loopback_lookalikes)
{
	static const char *const endpoints[] = {"AWS_ENDPOINT_URL=http://127.0.0.1.evil.com",
	                                        "AWS_ENDPOINT_URL=http://notlocalhost",
	                                        "AWS_ENDPOINT_URL=http://localhost.evil.com"};

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		const char *env[] = {endpoints[i], NULL};
		ms__s3_location loc;

		resolve_ok(&loc, "s3://bucket/k", env, NULL);
		cr_assert_null(strstr(loc.tls_why, "loopback"), "%s", endpoints[i]);
	}
}

Test(s3_url, endpoint_ports_and_paths)
{
	static const struct {
		const char *endpoint;
		const char *host;
		const char *base_path;
		const char *url;
	} cases[] = {
	    {"http://minio:9000", "minio:9000", "", "http://minio:9000/bucket/k"},
	    {"http://minio:9000/", "minio:9000", "", "http://minio:9000/bucket/k"},
	    {"https://h:443", "h", "", "https://h/bucket/k"},
	    {"http://h:80/", "h", "", "http://h/bucket/k"},
	    {"http://h:443", "h:443", "", "http://h:443/bucket/k"},
	    {"https://proxy.corp/s3/", "proxy.corp", "/s3", "https://proxy.corp/s3/bucket/k"},
	    {"https://proxy.corp/a/b//", "proxy.corp", "/a/b", "https://proxy.corp/a/b/bucket/k"},
	    {"HTTPS://Mixed.Case:8443", "Mixed.Case:8443", "", "https://Mixed.Case:8443/bucket/k"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__s3_resolve_options opts = {.endpoint_url = cases[i].endpoint};
		ms__s3_location loc;
		char url[MS__S3_URL_MAX];
		const char *env[] = {NULL};

		opts.getenv = tu_table_getenv;
		opts.getenv_payload = env;
		cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0, "%s: %s",
		             cases[i].endpoint, ms_error_last()->message);
		cr_assert_str_eq(loc.host, cases[i].host, "%s", cases[i].endpoint);
		cr_assert_str_eq(loc.base_path, cases[i].base_path, "%s", cases[i].endpoint);
		object_url(url, &loc, NULL);
		cr_assert_str_eq(url, cases[i].url, "%s", cases[i].endpoint);
	}
}

Test(s3_url, a_base_path_with_virtual_style)
{
	const char *env[] = {"AWS_ENDPOINT_URL=https://proxy.corp/s3",
	                     "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	object_url(url, &loc, NULL);
	cr_assert_str_eq(url, "https://bucket.proxy.corp/s3/k");
	cr_assert_str_eq(loc.endpoint, "https://proxy.corp/s3");
}

Test(s3_url, bad_endpoints_name_their_source)
{
	static const struct {
		const char *endpoint;
		const char *reason;
	} cases[] = {
	    {"minio:9000", "not an http:// or https:// URL"},
	    {"ftp://h", "not an http:// or https:// URL"},
	    {"http://", "no host"},
	    {"http:///path", "no host"},
	    {"http://h:", "bad port"},
	    {"http://h:0", "bad port"},
	    {"http://h:65536", "bad port"},
	    {"http://h:123456", "bad port"},
	    {"http://h:12a", "bad port"},
	    {"http://h?x=1", "query or fragment"},
	    {"http://h/p#f", "query or fragment"},
	    {"http://h h", "host name"},
	    {"http://h\r\nX-Injected: 1", "host name"},
	    {"http://[::1", "IPv6"},
	    {"http://[]:1", "IPv6"},
	    {"http://[::g]", "IPv6"},
	    {"http://[::1]x", "bad port"},
	    {"http://h/a b", "URL path"},
	    {"http://h/\x7f", "URL path"},
	    {"http://h/x@y", "password"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char var[200];
		const char *env[] = {var, NULL};
		ms__s3_location loc;

		snprintf(var, sizeof(var), "AWS_ENDPOINT_URL_S3=%s", cases[i].endpoint);
		cr_assert_eq(resolve(&loc, "s3://bucket/k", env, NULL), MS_EINVAL, "%s",
		             cases[i].endpoint);
		cr_assert_not_null(strstr(ms_error_last()->message, cases[i].reason), "%s: '%s'",
		                   cases[i].endpoint, ms_error_last()->message);
		cr_assert_not_null(strstr(ms_error_last()->message, "AWS_ENDPOINT_URL_S3"));
		cr_assert_null(strchr(ms_error_last()->message, '\n'));
	}
}

Test(s3_url, a_bad_endpoint_in_a_profile_names_the_file)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\nendpoint_url = minio:9000\n", "dev");
	ms__s3_location loc;

	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, cfg), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "profile 'dev' in " CONFIG));
	ms__aws_config_free(cfg);
}

Test(s3_url, passwords_in_endpoints_are_refused_and_not_shown)
{
	const char *env[] = {"AWS_ENDPOINT_URL=https://admin:" SECRET "@minio:9000", NULL};
	ms__s3_location loc;

	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, NULL), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "password"));
	cr_assert_null(strstr(ms_error_last()->message, SECRET));
	cr_assert_null(strstr(ms_error_last()->message, "admin"));
}

Test(s3_url, long_endpoints_are_refused)
{
	char endpoint[400];
	ms__s3_resolve_options opts = {.endpoint_url = endpoint};
	const char *env[] = {NULL};
	ms__s3_location loc;

	opts.getenv = tu_table_getenv;
	opts.getenv_payload = env;
	snprintf(endpoint, sizeof(endpoint), "https://");
	memset(endpoint + 8, 'h', 300);
	endpoint[308] = '\0';
	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "longer"));
	snprintf(endpoint, sizeof(endpoint), "https://h/");
	memset(endpoint + 10, 'p', 300);
	endpoint[310] = '\0';
	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), MS_EINVAL);
	cr_assert_not_null(strstr(ms_error_last()->message, "longer"));
}

Test(s3_url, a_long_host_falls_back_to_path_style)
{
	char endpoint[400];
	const char *env[] = {"RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=1", NULL};
	ms__s3_resolve_options opts = {.endpoint_url = endpoint};
	ms__s3_location loc;

	opts.getenv = tu_table_getenv;
	opts.getenv_payload = env;
	snprintf(endpoint, sizeof(endpoint), "https://");
	memset(endpoint + 8, 'h', 250);
	endpoint[258] = '\0';
	cr_assert_eq(ms__s3_resolve(
	                 &loc, "s3://abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij/k", &opts),
	             0, "%s", ms_error_last()->message);
	cr_assert_eq(loc.addressing, MS__S3_ADDRESSING_PATH);
	cr_assert_not_null(strstr(loc.addressing_why, "longer"));
}

Test(s3_url, ca_bundle_variable_beats_the_profile)
{
	const char *env[] = {"AWS_CA_BUNDLE=/etc/ssl/corp.pem", NULL};
	ms__aws_config *cfg = config_of("[profile dev]\nca_bundle = /profile.pem\n", "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.ca_bundle, "/etc/ssl/corp.pem");
	cr_assert_str_eq(loc.ca_bundle_why, "AWS_CA_BUNDLE");
	ms__aws_config_free(cfg);
}

Test(s3_url, ca_bundle_from_the_profile)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\nca_bundle = /profile.pem\n", "dev");
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.ca_bundle, "/profile.pem");
	cr_assert_str_eq(loc.ca_bundle_why, "profile 'dev' in " CONFIG);
	ms__aws_config_free(cfg);
}

Test(s3_url, no_ca_bundle)
{
	const char *env[] = {NULL};
	ms__s3_location loc;

	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_str_eq(loc.ca_bundle, "");
	cr_assert_not_null(strstr(loc.ca_bundle_why, "trust store"));
}

Test(s3_url, anonymous_access)
{
	const char *env[] = {NULL};
	ms__s3_resolve_options opts = {
	    .getenv = tu_table_getenv, .getenv_payload = env, .anonymous = true};
	ms__s3_location loc;

	cr_assert_eq(ms__s3_resolve(&loc, "s3://bucket/k", &opts), 0);
	cr_assert(loc.anonymous);
	cr_assert_not_null(strstr(loc.anonymous_why, "option"));
	resolve_ok(&loc, "s3://bucket/k", env, NULL);
	cr_assert_not(loc.anonymous);
}

Test(s3_url, a_profile_that_is_not_there)
{
	const char *env[] = {NULL};
	ms__aws_config *cfg = config_of("[profile dev]\nregion = r\n", "dev");
	ms__s3_location loc;

	cfg->profile = NULL; /* "default" selected, and no file has it */
	resolve_ok(&loc, "s3://bucket/k", env, cfg);
	cr_assert_str_eq(loc.region, "us-east-1");
	ms__aws_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* Request paths and key encoding                                                            */
/* ---------------------------------------------------------------------------------------- */

static void path_style(ms__s3_location *loc)
{
	const char *env[] = {"AWS_ENDPOINT_URL=https://s3.example.com", NULL};

	resolve_ok(loc, "s3://bucket/", env, NULL);
}

Test(s3_url, key_encoding)
{
	static const struct {
		const char *key;
		const char *path;
	} cases[] = {
	    {"plain.safetensors", "/bucket/plain.safetensors"},
	    {"dir/sub/file", "/bucket/dir/sub/file"},
	    {"a b", "/bucket/a%20b"},
	    {"a+b", "/bucket/a%2Bb"},
	    {"what?", "/bucket/what%3F"},
	    {"#1", "/bucket/%231"},
	    {"100%", "/bucket/100%25"},
	    {"%20", "/bucket/%2520"},
	    {"caf\xc3\xa9", "/bucket/caf%C3%A9"},
	    {"\xf0\x9f\xa6\x99", "/bucket/%F0%9F%A6%99"},
	    {"-._~", "/bucket/-._~"},
	    {"a=b&c;d,e:f@g$h!i*j'k(l)m",
	     "/bucket/a%3Db%26c%3Bd%2Ce%3Af%40g%24h%21i%2Aj%27k%28l%29m"},
	    {"tab\there", "/bucket/tab%09here"},
	    {"new\nline", "/bucket/new%0Aline"},
	    {"back\\slash", "/bucket/back%5Cslash"},
	    {"\"<>[]{}|^`", "/bucket/%22%3C%3E%5B%5D%7B%7D%7C%5E%60"},
	    {"../x/./y", "/bucket/../x/./y"},
	    {"//", "/bucket///"},
	    {"", "/bucket/"},
	};
	ms__s3_location loc;

	path_style(&loc);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[MS__S3_URL_MAX];

		cr_assert_eq(ms__s3_object_path(path, sizeof(path), &loc, cases[i].key), 0);
		cr_assert_str_eq(path, cases[i].path, "key '%s'", cases[i].key);
	}
}

Test(s3_url, every_byte_encodes_as_s3_says)
{
	ms__s3_location loc;

	path_style(&loc);
	for (int byte = 1; byte < 256; byte++) {
		char key[2] = {(char)byte, '\0'};
		char path[MS__S3_URL_MAX], want[16];
		bool keep = (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
		            (byte >= '0' && byte <= '9') || strchr("-._~/", byte) != NULL;

		if (keep)
			snprintf(want, sizeof(want), "/bucket/%c", byte);
		else
			snprintf(want, sizeof(want), "/bucket/%%%02X", byte);
		cr_assert_eq(ms__s3_object_path(path, sizeof(path), &loc, key), 0);
		cr_assert_str_eq(path, want, "byte 0x%02x", byte);
	}
}

Test(s3_url, the_url_key_is_the_default)
{
	const char *env[] = {NULL};
	ms__s3_location loc;
	char path[MS__S3_URL_MAX];

	resolve_ok(&loc, "s3://bucket/my model/v1+2.safetensors", env, NULL);
	cr_assert_eq(ms__s3_object_path(path, sizeof(path), &loc, NULL), 0);
	cr_assert_str_eq(path, "/my%20model/v1%2B2.safetensors");
	cr_assert_eq(ms__s3_object_path(path, sizeof(path), &loc, "other"), 0);
	cr_assert_str_eq(path, "/other");
}

Test(s3_url, a_buffer_that_is_too_small)
{
	const char *env[] = {NULL};
	ms__s3_location loc;
	char url[MS__S3_URL_MAX];
	const char *want = "https://bucket.s3.us-east-1.amazonaws.com/a%20b";
	size_t need = strlen(want) + 1;

	resolve_ok(&loc, "s3://bucket/a b", env, NULL);
	cr_assert_eq(ms__s3_object_url(url, need, &loc, NULL), 0);
	cr_assert_str_eq(url, want);
	cr_assert_eq(ms__s3_object_url(url, need - 1, &loc, NULL), MS_EINVAL);
	cr_assert_eq(ms__s3_object_url(url, 1, &loc, NULL), MS_EINVAL);
	cr_assert_str_eq(url, "");
	cr_assert_eq(ms__s3_object_url(url, 0, &loc, NULL), MS_EINVAL);
	cr_assert_eq(ms__s3_object_path(url, 3, &loc, NULL), MS_EINVAL);
	cr_assert_lt(strlen(url), 3);
}

Test(s3_url, an_overlong_key)
{
	ms__s3_location loc;
	char key[MS__S3_KEY_MAX + 2], path[MS__S3_URL_MAX];

	path_style(&loc);
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	cr_assert_eq(ms__s3_object_path(path, sizeof(path), &loc, key), MS_EINVAL);
	key[MS__S3_KEY_MAX] = '\0';
	cr_assert_eq(ms__s3_object_path(path, sizeof(path), &loc, key), 0);
}

Test(s3_url, the_worst_case_fits_the_url_buffer)
{
	char endpoint[700], bucket_url[300], key[MS__S3_KEY_MAX + 1], url[MS__S3_URL_MAX];
	const char *env[] = {NULL};
	ms__s3_resolve_options opts = {.endpoint_url = endpoint};
	ms__s3_location loc;
	size_t at;

	opts.getenv = tu_table_getenv;
	opts.getenv_payload = env;
	/* The longest host (with a port), base path, GCS bucket name, and a key of bytes that
	 * all take three characters. */
	at = (size_t)snprintf(endpoint, sizeof(endpoint), "http://");
	memset(endpoint + at, 'h', MS__S3_ENDPOINT_HOST_MAX - 6);
	at += MS__S3_ENDPOINT_HOST_MAX - 6;
	at += (size_t)snprintf(endpoint + at, sizeof(endpoint) - at, ":65535/");
	memset(endpoint + at, 'p', MS__S3_BASE_PATH_MAX - 1);
	endpoint[at + MS__S3_BASE_PATH_MAX - 1] = '\0';
	at = (size_t)snprintf(bucket_url, sizeof(bucket_url), "gs://");
	memset(bucket_url + at, 'b', 222);
	for (size_t i = at + 60; i < at + 222; i += 60)
		bucket_url[i] = '.';
	bucket_url[at + 222] = '\0';
	cr_assert_eq(ms__s3_resolve(&loc, bucket_url, &opts), 0, "%s", ms_error_last()->message);
	memset(key, ' ', MS__S3_KEY_MAX);
	key[MS__S3_KEY_MAX] = '\0';
	cr_assert_eq(ms__s3_object_url(url, sizeof(url), &loc, key), 0, "%s",
	             ms_error_last()->message);
	cr_assert_gt(strlen(url), 3500);
}

Test(s3_url, no_message_holds_a_secret)
{
	ms__aws_config *cfg = config_of("[profile dev]\n"
	                                "aws_secret_access_key = " SECRET "\n"
	                                "aws_session_token = " SECRET "\n"
	                                "region = bad region\n",
	                                "dev");
	const char *env[] = {NULL};
	const char *bad_env[] = {"AWS_ENDPOINT_URL=http://u:" SECRET "@h", NULL};
	ms__s3_location loc;

	cr_assert_eq(resolve(&loc, "s3://bucket/k", env, cfg), MS_EINVAL);
	cr_assert_null(strstr(ms_error_last()->message, SECRET));
	cr_assert_not_null(strstr(ms_error_last()->message, "'bad region'"));
	cr_assert_eq(resolve(&loc, "s3://bucket/k", bad_env, NULL), MS_EINVAL);
	cr_assert_null(strstr(ms_error_last()->message, SECRET));
	ms__aws_config_free(cfg);
}
