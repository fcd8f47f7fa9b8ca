/*
 * test_s3_creds.c - the credential chain: which source is chosen, the FULL_URI allow-list,
 * the JSON of container and IMDS answers, the refresh window, form encoding, describe()
 * and messages that never carry a secret, out-of-memory walks, and the refresh rules under
 * threads (one fetch for many forced refreshes, old credentials kept while one thread
 * refreshes, a failed refresh kept quiet until the credentials expire).
 *
 * The environment is always a table given through the accessor. Sources that need a server
 * (STS, IMDS answering) are covered by tests/creds_tests.sh; here a tiny container
 * credentials server runs on a thread of the test itself, on 127.0.0.1, so that the
 * refresh rules can be driven from many threads at once.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "s3/s3_config.h"
#include "s3/s3_creds.h"
#include "s3/s3_creds_fetch.h"
#include "support/testutil.h"

#define SECRET    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN     "IQoJb3JpZ2luX2VjEXAMPLETOKENxyz"
#define KEY_ID    "AKIAIOSFODNN7EXAMPLE"
#define BEARER    "Bearer container-token-secret"
#define WHAT      "s3://bucket/key"
#define CONFIG    "/home/u/.aws/config"
#define CREDS     "/home/u/.aws/credentials"
#define NO_IMDS   "AWS_EC2_METADATA_DISABLED=true"
#define THREADS_N 8

static void reset(void)
{
	ms__alloc_fail_at(0, 0);
	tu_tmpdir_remove();
}

TestSuite(s3_creds, .fini = reset, .timeout = 60);

static void assert_clean_message(void)
{
	const char *m = ms_error_last()->message;

	cr_assert_null(strstr(m, SECRET), "the secret leaked: %s", m);
	cr_assert_null(strstr(m, TOKEN), "the token leaked: %s", m);
	cr_assert_null(strstr(m, "container-token-secret"), "the bearer token leaked: %s", m);
	cr_assert_null(strchr(m, '\n'), "more than one line: %s", m);
	cr_assert_eq(strncmp(m, WHAT ": ", strlen(WHAT) + 2), 0, "does not name the URL: %s", m);
}

/* The shared files of a test, as ms__aws_config_load() would leave them; NULL for none. */
static ms__aws_config *make_config(const char **env, const char *config, const char *credentials)
{
	const char *name = tu_table_getenv("AWS_PROFILE", env);
	ms__aws_config *cfg = NULL;

	if (config == NULL && credentials == NULL)
		return NULL;
	cr_assert_eq(ms__aws_config_new(&cfg), 0);
	if (config != NULL)
		cr_assert_eq(
		    ms__aws_config_parse(cfg, MS__AWS_FILE_CONFIG, CONFIG, config, strlen(config)),
		    0);
	if (credentials != NULL)
		cr_assert_eq(ms__aws_config_parse(cfg, MS__AWS_FILE_CREDENTIALS, CREDS, credentials,
		                                  strlen(credentials)),
		             0);
	cfg->config_path = ms__strdup(CONFIG);
	cfg->credentials_path = ms__strdup(CREDS);
	cfg->config_status = cfg->credentials_status = MS__AWS_FILE_READ;
	cfg->profile_name = ms__strdup(name != NULL ? name : "default");
	cfg->profile = ms__aws_config_find(cfg, cfg->profile_name);
	return cfg;
}

static int provider_with(ms__creds_provider **out, const char **env, const ms__aws_config *cfg)
{
	ms__creds_options opts = {.getenv = tu_table_getenv, .getenv_payload = env, .config = cfg};

	return ms__creds_provider_new(out, &opts, WHAT);
}

/* Builds a provider from an environment table and (optionally) files' text. */
static int provider(ms__creds_provider **out, const char **env, const char *config,
                    const char *credentials)
{
	static ms__aws_config *cfg; /* kept until the next call: the provider reads it */

	ms__aws_config_free(cfg);
	cfg = make_config(env, config, credentials);
	return provider_with(out, env, cfg);
}

/* ---------------------------------------------------------------------------------------- */
/* A container credentials server on a thread                                               */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
	int listener;
	int port;
	pthread_t thread;
	atomic_int requests;
	atomic_int rejected;
	atomic_long expires_in; /* seconds from now */
	atomic_int status;      /* 200, or an error status to send */
	atomic_int delay_ms;
	atomic_bool stop;
} server;

static void *serve(void *payload)
{
	server *s = payload;

	while (!atomic_load(&s->stop)) {
		char request[8192], body[1024], reply[2048], when[32];
		size_t len = 0;
		int fd = accept(s->listener, NULL, NULL);
		time_t t;
		int n, status;

		if (fd < 0)
			continue;
		while (len < sizeof(request) - 1) {
			ssize_t got = read(fd, request + len, sizeof(request) - 1 - len);

			if (got <= 0)
				break;
			len += (size_t)got;
			request[len] = '\0';
			if (strstr(request, "\r\n\r\n") != NULL)
				break;
		}
		request[len] = '\0';
		if (atomic_load(&s->stop)) {
			close(fd);
			break;
		}
		usleep((useconds_t)atomic_load(&s->delay_ms) * 1000);
		status = atomic_load(&s->status);
		if (strstr(request, "\r\nAuthorization: " BEARER "\r\n") == NULL) {
			atomic_fetch_add(&s->rejected, 1);
			status = 401;
		}
		n = atomic_fetch_add(&s->requests, 1) + 1;
		t = time(NULL) + (time_t)atomic_load(&s->expires_in);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		snprintf(body, sizeof(body),
		         "{\"AccessKeyId\":\"ASIATEST%04d\",\"SecretAccessKey\":\"" SECRET
		         "\",\"Token\":\"" TOKEN "\",\"Expiration\":\"%s\"}",
		         n, when);
		if (status != 200)
			body[0] = '\0';
		snprintf(reply, sizeof(reply),
		         "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
		         "%zu\r\nConnection: close\r\n\r\n%s",
		         status, strlen(body), body);
		cr_assert_eq(write(fd, reply, strlen(reply)), (ssize_t)strlen(reply));
		close(fd);
	}
	return NULL;
}

static void server_start(server *s, long expires_in)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t addr_len = sizeof(addr);

	memset(s, 0, sizeof(*s));
	atomic_store(&s->expires_in, expires_in);
	atomic_store(&s->status, 200);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->listener = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(s->listener, 0);
	cr_assert_eq(bind(s->listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
	cr_assert_eq(listen(s->listener, 64), 0);
	cr_assert_eq(getsockname(s->listener, (struct sockaddr *)&addr, &addr_len), 0);
	s->port = ntohs(addr.sin_port);
	cr_assert_eq(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(server *s)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	atomic_store(&s->stop, true);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons((uint16_t)s->port);
	connect(fd, (struct sockaddr *)&addr, sizeof(addr)); /* wakes accept() */
	close(fd);
	pthread_join(s->thread, NULL);
	close(s->listener);
}

/* The environment of a provider that reads the server's container credentials. */
typedef struct {
	char uri[128];
	const char *env[6];
} container_env;

static void container_env_init(container_env *e, const server *s, const char *window)
{
	snprintf(e->uri, sizeof(e->uri), "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:%d/c",
	         s->port);
	e->env[0] = e->uri;
	e->env[1] = "AWS_CONTAINER_AUTHORIZATION_TOKEN=" BEARER;
	e->env[2] = NO_IMDS;
	e->env[3] = window;
	e->env[4] = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Which source is chosen                                                                    */
/* ---------------------------------------------------------------------------------------- */

Test(s3_creds, environment_keys_are_used_as_they_are)
{
	const char *env[] = {"AWS_ACCESS_KEY_ID=" KEY_ID, "AWS_SECRET_ACCESS_KEY=" SECRET,
	                     "AWS_SESSION_TOKEN=" TOKEN, NULL};
	ms__creds_provider *p = NULL;
	ms__creds c;

	cr_assert_eq(provider(&p, env, NULL, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms__creds_kind_of(p), MS__CREDS_ENVIRONMENT);
	cr_assert_eq(ms__creds_get(p, &c, false), 0);
	cr_assert_str_eq(c.access_key_id, KEY_ID);
	cr_assert_str_eq(c.secret_access_key, SECRET);
	cr_assert_str_eq(c.session_token, TOKEN);
	cr_assert_eq(c.expiration, 0);
	cr_assert_eq(ms__creds_get(p, &c, true), 0, "forcing static keys changes nothing");
	cr_assert_str_eq(c.access_key_id, KEY_ID);
	cr_assert_eq(ms__creds_fetch_count(p), 0);
	ms__creds_clear(&c);
	cr_assert_eq(c.secret_access_key[0], '\0');
	ms__creds_free(p);
}

Test(s3_creds, environment_beats_web_identity_profile_and_container)
{
	const char *env[] = {"AWS_ACCESS_KEY_ID=" KEY_ID,
	                     "AWS_SECRET_ACCESS_KEY=" SECRET,
	                     "AWS_WEB_IDENTITY_TOKEN_FILE=/nonexistent/token",
	                     "AWS_ROLE_ARN=arn:aws:iam::1:role/r",
	                     "AWS_PROFILE=dev",
	                     "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/c",
	                     NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(provider(&p, env, NULL,
	                      "[dev]\naws_access_key_id = AKIDPROFILE\n"
	                      "aws_secret_access_key = x\n"),
	             0, "%s", ms_error_last()->message);
	cr_assert_eq(ms__creds_kind_of(p), MS__CREDS_ENVIRONMENT);
	ms__creds_free(p);
}

Test(s3_creds, half_of_an_environment_key_pair_is_an_error)
{
	const char *env[] = {"AWS_SECRET_ACCESS_KEY=" SECRET, NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EINVAL);
	cr_assert_null(p);
	cr_assert(strstr(ms_error_last()->message, "AWS_ACCESS_KEY_ID") != NULL);
	assert_clean_message();
}

Test(s3_creds, oversized_environment_keys_are_refused)
{
	char long_id[300];
	char entry[400];
	const char *env[] = {entry, "AWS_SECRET_ACCESS_KEY=" SECRET, NULL};
	ms__creds_provider *p = NULL;

	memset(long_id, 'A', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	snprintf(entry, sizeof(entry), "AWS_ACCESS_KEY_ID=%s", long_id);
	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "access key id") != NULL);
	assert_clean_message();
}

Test(s3_creds, web_identity_beats_the_profile_and_reads_its_token_file)
{
	const char *env[] = {"AWS_WEB_IDENTITY_TOKEN_FILE=/nonexistent/token",
	                     "AWS_ROLE_ARN=arn:aws:iam::1:role/r", "AWS_PROFILE=dev",
	                     "AWS_ENDPOINT_URL_STS=http://127.0.0.1:1", NULL};
	ms__creds_provider *p = NULL;
	const char *m;

	cr_assert_eq(provider(&p, env, NULL,
	                      "[dev]\naws_access_key_id = AKIDPROFILE\n"
	                      "aws_secret_access_key = x\n"),
	             MS_EACCES);
	m = ms_error_last()->message;
	cr_assert(strstr(m, "web identity (AWS_ROLE_ARN arn:aws:iam::1:role/r)") != NULL, "%s", m);
	cr_assert(strstr(m, "/nonexistent/token") != NULL, "%s", m);
	assert_clean_message();
}

Test(s3_creds, web_identity_token_reaches_sts_or_names_it)
{
	char path[4096], env_file[4200];
	const char *env[] = {env_file, "AWS_ROLE_ARN=arn:aws:iam::1:role/r",
	                     "AWS_ENDPOINT_URL_STS=http://127.0.0.1:1", NULL};
	ms__creds_provider *p = NULL;
	const char *m;

	tu_path(path, sizeof(path), "token");
	tu_write_file(path, TOKEN "\n", strlen(TOKEN) + 1);
	snprintf(env_file, sizeof(env_file), "AWS_WEB_IDENTITY_TOKEN_FILE=%s", path);
	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EIO);
	m = ms_error_last()->message;
	cr_assert(strstr(m, "STS AssumeRoleWithWebIdentity at http://127.0.0.1:1") != NULL, "%s",
	          m);
	cr_assert(strstr(m, "3 attempts") != NULL, "%s", m);
	assert_clean_message();

	tu_write_file(path, "", 0);
	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EACCES);
	cr_assert(strstr(ms_error_last()->message, "is empty") != NULL);
}

Test(s3_creds, web_identity_needs_a_role)
{
	const char *env[] = {"AWS_WEB_IDENTITY_TOKEN_FILE=/t", NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "AWS_ROLE_ARN") != NULL);
	assert_clean_message();
}

Test(s3_creds, profile_static_keys)
{
	const char *env[] = {"AWS_PROFILE=dev", NO_IMDS, NULL};
	ms__creds_provider *p = NULL;
	char line[512];
	ms__creds c;

	cr_assert_eq(provider(&p, env, "[profile dev]\nregion = r\n",
	                      "[dev]\naws_access_key_id = " KEY_ID
	                      "\naws_secret_access_key = " SECRET "\naws_session_token = " TOKEN
	                      "\n"),
	             0, "%s", ms_error_last()->message);
	cr_assert_eq(ms__creds_kind_of(p), MS__CREDS_PROFILE);
	ms__creds_describe(p, line, sizeof(line));
	cr_assert_str_eq(line, "profile 'dev' in " CREDS);
	cr_assert_eq(ms__creds_get(p, &c, false), 0);
	cr_assert_str_eq(c.secret_access_key, SECRET);
	cr_assert_str_eq(c.session_token, TOKEN);
	ms__creds_free(p);
}

Test(s3_creds, profile_source_profile_cycle_is_refused)
{
	const char *env[] = {"AWS_PROFILE=a", NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(provider(&p, env,
	                      "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
	                      "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = c\n"
	                      "[profile c]\nrole_arn = arn:aws:iam::1:role/c\nsource_profile = a\n",
	                      NULL),
	             MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "cycle") != NULL, "%s",
	          ms_error_last()->message);
	assert_clean_message();
}

Test(s3_creds, profile_chain_errors_name_the_profile)
{
	const char *env[] = {"AWS_PROFILE=a", NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(
	    provider(&p, env, "[profile a]\nrole_arn = r\nsource_profile = missing\n", NULL),
	    MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "source_profile 'missing' does not exist"));
	assert_clean_message();

	cr_assert_eq(provider(&p, env,
	                      "[profile a]\nrole_arn = r\nsource_profile = b\n[profile b]\n"
	                      "region = x\n",
	                      NULL),
	             MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "has no credentials"));

	cr_assert_eq(
	    provider(&p, env, "[profile a]\nrole_arn = r\ncredential_source = Magic\n", NULL),
	    MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "credential_source 'Magic'"));

	cr_assert_eq(provider(&p, env, "[profile a]\nrole_arn = r\n", NULL), MS_EINVAL);
	assert_clean_message();

	cr_assert_eq(provider(&p, env, "[profile a]\ncredential_process = /bin/true\n", NULL),
	             MS_EUNSUPPORTED);
	assert_clean_message();
}

Test(s3_creds, assume_role_signs_with_the_source_and_names_sts)
{
	const char *env[] = {"AWS_PROFILE=a", "AWS_ENDPOINT_URL_STS=http://127.0.0.1:1/sts", NULL};
	ms__creds_provider *p = NULL;
	const char *m;

	cr_assert_eq(
	    provider(&p, env, "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n",
	             "[b]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET "\n"),
	    MS_EIO);
	m = ms_error_last()->message;
	cr_assert(strstr(m, "profile 'a' in " CONFIG " (role arn:aws:iam::1:role/a): STS "
	                    "AssumeRole at http://127.0.0.1:1/sts: ") != NULL,
	          "%s", m);
	assert_clean_message();
}

Test(s3_creds, nothing_configured_lists_what_was_looked_for)
{
	const char *env[] = {NO_IMDS, NULL};
	ms__creds_provider *p = NULL;
	const char *m;

	cr_assert_eq(provider(&p, env, "", ""), MS_EACCES);
	m = ms_error_last()->message;
	cr_assert_str_eq(m, WHAT ": no credentials: looked for AWS_ACCESS_KEY_ID, "
	                         "AWS_WEB_IDENTITY_TOKEN_FILE, profile 'default' in " CONFIG
	                         " and " CREDS ", AWS_CONTAINER_CREDENTIALS_*, and EC2 instance "
	                         "metadata (disabled by AWS_EC2_METADATA_DISABLED); set "
	                         "MODELSTREAM_S3_ANONYMOUS=1 for a public bucket");
	cr_assert_null(p);
}

Test(s3_creds, unreachable_imds_is_the_reason_for_no_credentials)
{
	const char *env[] = {"AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1", NULL};
	ms__creds_provider *p = NULL;
	const char *m;

	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EACCES);
	m = ms_error_last()->message;
	cr_assert(strstr(m, "no credentials") != NULL, "%s", m);
	cr_assert(strstr(m, "EC2 instance metadata (http://127.0.0.1:1: IMDSv2 token") != NULL,
	          "%s", m);
	cr_assert(strstr(m, "the shared files (not loaded)") != NULL, "%s", m);
	assert_clean_message();
}

Test(s3_creds, bad_settings_are_named)
{
	const char *window[] = {"MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=ten", NO_IMDS, NULL};
	const char *attempts[] = {"AWS_METADATA_SERVICE_NUM_ATTEMPTS=0", NULL};
	const char *relative[] = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=creds", NULL};
	const char *newline[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/",
	                         "AWS_CONTAINER_AUTHORIZATION_TOKEN=a\r\nX-Injected: 1", NULL};
	const char *sts[] = {"AWS_WEB_IDENTITY_TOKEN_FILE=/t", "AWS_ROLE_ARN=r",
	                     "AWS_ENDPOINT_URL_STS=ftp://sts.example", NULL};
	const char *sts_password[] = {"AWS_WEB_IDENTITY_TOKEN_FILE=/t", "AWS_ROLE_ARN=r",
	                              "AWS_ENDPOINT_URL_STS=https://u:secret-password@sts.example",
	                              NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(provider(&p, window, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "MODELSTREAM_CREDENTIALS_REFRESH_SECONDS"));
	cr_assert_eq(provider(&p, attempts, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "AWS_METADATA_SERVICE_NUM_ATTEMPTS"));
	cr_assert_eq(provider(&p, relative, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "must start with '/'"));
	cr_assert_eq(provider(&p, newline, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "line break"));
	cr_assert_eq(provider(&p, sts, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "AWS_ENDPOINT_URL_STS must be an http"));
	cr_assert_eq(provider(&p, sts_password, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "user name or password"));
	cr_assert_null(strstr(ms_error_last()->message, "secret-password"));
	assert_clean_message();
}

/* ---------------------------------------------------------------------------------------- */
/* The FULL_URI allow-list                                                                   */
/* ---------------------------------------------------------------------------------------- */

Test(s3_creds, full_uri_allow_list)
{
	static const char *const allowed[] = {
	    "http://127.0.0.1/creds",
	    "http://127.0.0.1:8080/creds",
	    "http://127.1.2.3/x",
	    "http://localhost:80/x",
	    "http://LOCALHOST/x",
	    "http://[::1]:8080/x",
	    "http://169.254.170.2/v2/creds",
	    "http://169.254.170.23/v1/credentials",
	    "http://[fd00:ec2::23]/v1/creds",
	    "https://anything.example.com/creds",
	    "https://203.0.113.9:443/c",
	};
	static const char *const refused[] = {
	    "http://169.254.169.254/latest",
	    "http://example.com/creds",
	    "http://10.0.0.1/creds",
	    "http://[fd00:ec2::24]/x",
	    "http://128.0.0.1/x",
	    "http://localhost.evil/x",
	    "ftp://127.0.0.1/x",
	    "file:///etc/passwd",
	    "not a url",
	    "http://u:p@127.0.0.1/x",
	};

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		cr_expect_eq(ms__creds_check_full_uri(allowed[i], WHAT), 0, "%s: %s", allowed[i],
		             ms_error_last()->message);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		cr_expect_eq(ms__creds_check_full_uri(refused[i], WHAT), MS_EINVAL, "%s",
		             refused[i]);
		cr_expect_eq(strncmp(ms_error_last()->message, WHAT ": ", strlen(WHAT) + 2), 0);
	}
	cr_assert_null(strstr(ms_error_last()->message, ":p@"), "a password in a URL is not shown");
}

Test(s3_creds, full_uri_to_a_refused_host_fails_the_provider)
{
	const char *env[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.169.254/creds",
	                     "AWS_CONTAINER_AUTHORIZATION_TOKEN=" BEARER, NULL};
	ms__creds_provider *p = NULL;

	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EINVAL);
	cr_assert(strstr(ms_error_last()->message, "169.254.169.254") != NULL);
	assert_clean_message();
}

/* ---------------------------------------------------------------------------------------- */
/* Container and IMDS JSON                                                                  */
/* ---------------------------------------------------------------------------------------- */

static int parse(ms__creds *c, const char *json)
{
	return ms__creds_parse_json(c, json, strlen(json), WHAT);
}

Test(s3_creds, json_container_and_imds_answers)
{
	ms__creds c;

	cr_assert_eq(parse(&c, "{\"AccessKeyId\":\"" KEY_ID "\",\"SecretAccessKey\":\"" SECRET
	                       "\",\"Token\":\"" TOKEN
	                       "\",\"Expiration\":\"2030-01-02T03:04:05Z\",\"RoleArn\":\"x\"}"),
	             0, "%s", ms_error_last()->message);
	cr_assert_str_eq(c.access_key_id, KEY_ID);
	cr_assert_str_eq(c.secret_access_key, SECRET);
	cr_assert_str_eq(c.session_token, TOKEN);
	cr_assert_eq(c.expiration, 1893553445);
	cr_assert_eq(parse(&c, "{\"Code\":\"Success\",\"LastUpdated\":\"2030-01-01T00:00:00Z\","
	                       "\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":"
	                       "\"S\",\"Expiration\":\"2030-01-02T03:04:05.123Z\"}"),
	             0, "%s", ms_error_last()->message);
	cr_assert_str_eq(c.session_token, "", "Token is optional");
	cr_assert_eq(c.expiration, 1893553445);
}

Test(s3_creds, json_refusals_never_show_the_secret)
{
	static const struct {
		const char *json;
		int code;
		const char *needle;
	} cases[] = {
	    {"[1]", MS_EFORMAT, "not a JSON object"},
	    {"{", MS_EFORMAT, "not a JSON object"},
	    {"", MS_EFORMAT, "not a JSON object"},
	    {"{\"SecretAccessKey\":\"" SECRET "\",\"Expiration\":\"2030-01-02T03:04:05Z\"}",
	     MS_EFORMAT, "lacks AccessKeyId"},
	    {"{\"AccessKeyId\":\"A\",\"Expiration\":\"2030-01-02T03:04:05Z\"}", MS_EFORMAT,
	     "lacks SecretAccessKey"},
	    {"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\"}", MS_EFORMAT,
	     "lacks Expiration"},
	    {"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET
	     "\",\"Token\":5,\"Expiration\":\"2030-01-02T03:04:05Z\"}",
	     MS_EFORMAT, "lacks Token"},
	    {"{\"AccessKeyId\":7,\"SecretAccessKey\":\"" SECRET
	     "\",\"Expiration\":\"2030-01-02T03:04:05Z\"}",
	     MS_EFORMAT, "lacks AccessKeyId"},
	    {"{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET
	     "\",\"Expiration\":\"tomorrow\"}",
	     MS_EFORMAT, "Expiration 'tomorrow'"},
	    {"{\"AccessKeyId\":\"\",\"SecretAccessKey\":\"" SECRET
	     "\",\"Expiration\":\"2030-01-02T03:04:05Z\"}",
	     MS_EFORMAT, "access key id is empty"},
	    {"{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"no role\"}", MS_EACCES,
	     "Code AssumeRoleUnauthorizedAccess: no role"},
	    {"{\"Code\":3}", MS_EACCES, "Code (not a string)"},
	};
	ms__creds c;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(&c, cases[i].json);

		cr_expect_eq(rc, cases[i].code, "%s: %d %s", cases[i].json, rc,
		             ms_error_last()->message);
		cr_expect(strstr(ms_error_last()->message, cases[i].needle) != NULL, "%s: '%s'",
		          cases[i].json, ms_error_last()->message);
		assert_clean_message();
		cr_expect_eq(c.secret_access_key[0], '\0', "nothing is left behind on failure");
	}
}

/* A NUL inside a string would hide the rest of a secret from the wipe: refused. */
Test(s3_creds, json_with_a_nul_is_refused)
{
	static const char escaped[] = "{\"AccessKeyId\":\"" KEY_ID "\",\"SecretAccessKey\":"
	                              "\"ab\\u0000HiddenSecretTail\",\"Token\":\"t\","
	                              "\"Expiration\":\"2030-01-02T03:04:05Z\"}";
	static const char raw[] = "{\"AccessKeyId\":\"" KEY_ID "\",\"SecretAccessKey\":\"ab\0cd\"}";
	ms__creds c;

	cr_assert_eq(parse(&c, escaped), MS_EFORMAT);
	cr_assert(strstr(ms_error_last()->message, "NUL") != NULL, "%s", ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, "HiddenSecretTail") == NULL);
	cr_assert_eq(ms__creds_parse_json(&c, raw, sizeof(raw) - 1, WHAT), MS_EFORMAT);
	cr_assert_str_eq(c.secret_access_key, "");
}

Test(s3_creds, json_caps)
{
	static char big[MS__CREDS_BODY_MAX + 2];
	char json[8192 + 256], secret[200];
	ms__creds c;

	memset(big, ' ', sizeof(big) - 1);
	cr_assert_eq(ms__creds_parse_json(&c, big, sizeof(big) - 1, WHAT), MS_EFORMAT);
	memset(secret, 's', sizeof(secret) - 1);
	secret[sizeof(secret) - 1] = '\0';
	snprintf(json, sizeof(json),
	         "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"%s\",\"Expiration\":"
	         "\"2030-01-02T03:04:05Z\"}",
	         secret);
	cr_assert_eq(parse(&c, json), MS_EFORMAT);
	cr_assert(strstr(ms_error_last()->message, "secret access key is empty or longer") != NULL);
	cr_assert_null(strstr(ms_error_last()->message, "sssss"));
}

/* ---------------------------------------------------------------------------------------- */
/* Refresh window, form encoding, describe                                                   */
/* ---------------------------------------------------------------------------------------- */

Test(s3_creds, refresh_window_math)
{
	const int64_t now = 1700000000;

	cr_assert_not(ms__creds_refresh_due(0, now, 600), "static credentials never refresh");
	cr_assert_not(ms__creds_refresh_due(now + 601, now, 600));
	cr_assert_not(ms__creds_refresh_due(now + 600, now, 600), "exactly 600 s left: not yet");
	cr_assert(ms__creds_refresh_due(now + 599, now, 600));
	cr_assert(ms__creds_refresh_due(now, now, 600), "expired now");
	cr_assert(ms__creds_refresh_due(now - 1, now, 0), "expired");
	cr_assert_not(ms__creds_refresh_due(now + 1, now, 0), "window 0: only at expiry");
	cr_assert(ms__creds_refresh_due(INT64_MIN + 1, INT64_MAX, 600), "no overflow");
	cr_assert_not(ms__creds_refresh_due(INT64_MAX, INT64_MIN, 600), "no overflow");
}

Test(s3_creds, form_encoding)
{
	const char *pairs[] = {"Action",  "AssumeRole", "RoleArn", "arn:aws:iam::1:role/a b+c",
	                       "Token",   "x=y&z~._-",  "Empty",   "",
	                       "Unicode", "\xc3\xa9"};
	char *body = NULL;
	size_t len = 0;

	cr_assert_eq(ms__creds_form_encode(&body, &len, pairs, 5), 0);
	cr_assert_str_eq(body, "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa%20b%2Bc"
	                       "&Token=x%3Dy%26z~._-&Empty=&Unicode=%C3%A9");
	cr_assert_eq(len, strlen(body));
	ms__free(body);
	cr_assert_eq(ms__creds_form_encode(&body, &len, pairs, 0), 0);
	cr_assert_str_eq(body, "");
	ms__free(body);
}

Test(s3_creds, describe_shows_four_characters_of_the_key_and_no_secret)
{
	const char *env[] = {"AWS_ACCESS_KEY_ID=" KEY_ID, "AWS_SECRET_ACCESS_KEY=" SECRET,
	                     "AWS_SESSION_TOKEN=" TOKEN, NULL};
	ms__creds_provider *p = NULL;
	char line[512], small[12];

	cr_assert_eq(provider(&p, env, NULL, NULL), 0);
	ms__creds_describe(p, line, sizeof(line));
	cr_assert_str_eq(line, "environment (AWS_ACCESS_KEY_ID AKIA...)");
	cr_assert_null(strstr(line, "AKIAI"));
	cr_assert_null(strstr(line, SECRET));
	cr_assert_null(strstr(line, TOKEN));
	ms__creds_describe(p, small, sizeof(small));
	cr_assert_str_eq(small, "environment");
	ms__creds_describe(p, small, 0); /* writes nothing */
	ms__creds_free(p);
	ms__creds_free(NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Container credentials and the refresh rules, with a server on a thread                    */
/* ---------------------------------------------------------------------------------------- */

Test(s3_creds, container_credentials_and_describe)
{
	server s;
	container_env e;
	ms__creds_provider *p = NULL;
	ms__creds c;
	char line[256], want[256];

	server_start(&s, 3600);
	container_env_init(&e, &s, NULL);
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms__creds_kind_of(p), MS__CREDS_CONTAINER);
	cr_assert_eq(ms__creds_get(p, &c, false), 0);
	cr_assert_str_eq(c.access_key_id, "ASIATEST0001");
	cr_assert_str_eq(c.secret_access_key, SECRET);
	cr_assert_str_eq(c.session_token, TOKEN);
	cr_assert_geq(c.expiration, (int64_t)time(NULL) + 3590);
	ms__creds_describe(p, line, sizeof(line));
	snprintf(want, sizeof(want), "container credentials from http://127.0.0.1:%d/c", s.port);
	cr_assert_str_eq(line, want);
	cr_assert_eq(ms__creds_fetch_count(p), 1);
	cr_assert_eq(atomic_load(&s.rejected), 0);
	ms__creds_free(p);
	server_stop(&s);
}

Test(s3_creds, container_refusal_is_one_line_without_the_token)
{
	server s;
	char uri[128];
	const char *env[] = {uri, "AWS_CONTAINER_AUTHORIZATION_TOKEN=Bearer wrong-" TOKEN, NULL};
	ms__creds_provider *p = NULL;
	char want[256];

	server_start(&s, 3600);
	snprintf(uri, sizeof(uri), "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:%d/c",
	         s.port);
	cr_assert_eq(provider(&p, env, NULL, NULL), MS_EACCES);
	snprintf(want, sizeof(want),
	         WHAT ": container credentials from http://127.0.0.1:%d/c: HTTP 401", s.port);
	cr_assert_str_eq(ms_error_last()->message, want);
	assert_clean_message();
	server_stop(&s);
}

Test(s3_creds, credentials_inside_the_window_refresh_on_every_get)
{
	server s;
	container_env e;
	ms__creds_provider *p = NULL;
	ms__creds c;

	server_start(&s, 300); /* 300 s left < the 600 s window */
	container_env_init(&e, &s, NULL);
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0, "%s", ms_error_last()->message);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ms__creds_get(p, &c, false), 0);
	cr_assert_str_eq(c.access_key_id, "ASIATEST0004");
	cr_assert_eq(ms__creds_fetch_count(p), 4);
	ms__creds_free(p);

	container_env_init(&e, &s, "MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=60");
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ms__creds_get(p, &c, false), 0);
	cr_assert_eq(ms__creds_fetch_count(p), 1, "a 60 s window keeps 300 s credentials");
	ms__creds_free(p);
	server_stop(&s);
}

typedef struct {
	ms__creds_provider *p;
	bool force;
	pthread_barrier_t *barrier;
	int rc;
	char key[MS__SIGV4_ACCESS_KEY_ID_MAX + 1];
} getter;

static void *get_on_thread(void *payload)
{
	getter *g = payload;
	ms__creds c;

	pthread_barrier_wait(g->barrier);
	g->rc = ms__creds_get(g->p, &c, g->force);
	snprintf(g->key, sizeof(g->key), "%s", c.access_key_id);
	ms__creds_clear(&c);
	return NULL;
}

/* Runs ms__creds_get() on THREADS_N threads released at once. */
static void get_from_threads(getter *g, ms__creds_provider *p, bool force)
{
	pthread_t threads[THREADS_N];
	pthread_barrier_t barrier;

	pthread_barrier_init(&barrier, NULL, THREADS_N);
	for (int i = 0; i < THREADS_N; i++) {
		g[i] = (getter){.p = p, .force = force, .barrier = &barrier};
		cr_assert_eq(pthread_create(&threads[i], NULL, get_on_thread, &g[i]), 0);
	}
	for (int i = 0; i < THREADS_N; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&barrier);
}

Test(s3_creds, many_forced_refreshes_at_once_cause_one_fetch)
{
	server s;
	container_env e;
	ms__creds_provider *p = NULL;
	getter g[THREADS_N];

	server_start(&s, 3600);
	atomic_store(&s.delay_ms, 200);
	container_env_init(&e, &s, NULL);
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0, "%s", ms_error_last()->message);
	usleep(1100 * 1000); /* past the one-a-second limit of the first fetch */
	get_from_threads(g, p, true);
	for (int i = 0; i < THREADS_N; i++) {
		cr_assert_eq(g[i].rc, 0);
		cr_assert_str_eq(g[i].key, "ASIATEST0002", "thread %d kept %s", i, g[i].key);
	}
	cr_assert_eq(ms__creds_fetch_count(p), 2);
	get_from_threads(g, p, true);
	cr_assert_eq(ms__creds_fetch_count(p), 2, "forced again within a second: no fetch");
	ms__creds_free(p);
	server_stop(&s);
}

Test(s3_creds, others_keep_valid_credentials_while_one_thread_refreshes)
{
	server s;
	container_env e;
	ms__creds_provider *p = NULL;
	getter g[THREADS_N];
	int old = 0, fresh = 0;

	server_start(&s, 3600);
	container_env_init(&e, &s, "MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=4000");
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0, "%s", ms_error_last()->message);
	atomic_store(&s.delay_ms, 500);
	get_from_threads(g, p, false);
	for (int i = 0; i < THREADS_N; i++) {
		cr_assert_eq(g[i].rc, 0);
		old += strcmp(g[i].key, "ASIATEST0001") == 0;
		fresh += strcmp(g[i].key, "ASIATEST0002") == 0;
	}
	cr_assert_eq(fresh, 1, "one thread refreshed (%d old, %d fresh)", old, fresh);
	cr_assert_eq(old, THREADS_N - 1, "the others signed with the old, valid credentials");
	cr_assert_eq(ms__creds_fetch_count(p), 2);
	ms__creds_free(p);
	server_stop(&s);
}

Test(s3_creds, failed_refresh_keeps_valid_credentials_and_fails_expired_ones)
{
	server s;
	container_env e;
	ms__creds_provider *p = NULL;
	ms__creds c;
	char want[256];

	server_start(&s, 300);
	container_env_init(&e, &s, NULL);
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0, "%s", ms_error_last()->message);
	atomic_store(&s.status, 403);
	cr_assert_eq(ms__creds_get(p, &c, false), 0, "the old credentials are still valid");
	cr_assert_str_eq(c.access_key_id, "ASIATEST0001");
	cr_assert_eq(ms__creds_fetch_count(p), 2);
	cr_assert_eq(ms__creds_get(p, &c, false), 0);
	cr_assert_eq(ms__creds_fetch_count(p), 2, "no second try within a second");
	cr_assert_eq(ms__creds_get(p, &c, true), MS_EACCES,
	             "a forced refresh right after a failure reports it");
	snprintf(want, sizeof(want),
	         WHAT ": container credentials from http://127.0.0.1:%d/c: HTTP 403", s.port);
	cr_assert_str_eq(ms_error_last()->message, want);
	ms__creds_free(p);

	atomic_store(&s.status, 200);
	atomic_store(&s.expires_in, -10); /* handed out already expired */
	cr_assert_eq(provider(&p, e.env, NULL, NULL), 0);
	atomic_store(&s.status, 500);
	cr_assert_eq(ms__creds_get(p, &c, false), MS_EIO);
	snprintf(want, sizeof(want),
	         WHAT ": container credentials from http://127.0.0.1:%d/c: HTTP 500", s.port);
	cr_assert_str_eq(ms_error_last()->message, want);
	atomic_store(&s.status, 200);
	cr_assert_eq(ms__creds_get(p, &c, false), MS_EIO, "within a second: the same error");
	usleep(1100 * 1000);
	cr_assert_eq(ms__creds_get(p, &c, false), 0, "%s", ms_error_last()->message);
	ms__creds_free(p);
	server_stop(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* Out of memory                                                                              */
/* ---------------------------------------------------------------------------------------- */

/* Fails each allocation of `build` in turn until one run gets through; every failed run
 * must report MS_ENOMEM (or `other`, an error the walk may reach first) and leak nothing. */
static void walk(int (*build)(void *), void *payload, const char *name)
{
	int rc = -1;

	for (long n = 1; n < 400; n++) {
		long before = ms__alloc_count();

		ms__alloc_fail_at(n, 0);
		rc = build(payload);
		ms__alloc_fail_at(0, 0);
		if (rc == 0) {
			if (ms__alloc_count() - before < n)
				break;
			continue;
		}
		cr_assert_eq(rc, MS_ENOMEM, "%s, allocation %ld: %d %s", name, n, rc,
		             ms_error_last()->message);
		assert_clean_message();
	}
	cr_assert_eq(rc, 0, "%s: the walk ended without a success", name);
	cr_assert_eq(tu_leaks_found(), 0, "%s: a failed allocation leaked", name);
}

typedef struct {
	const char **env;
	const ms__aws_config *cfg;
} walk_case;

static int build_and_free(void *payload)
{
	const walk_case *w = payload;
	ms__creds_provider *p = NULL;
	ms__creds c;
	int rc = provider_with(&p, w->env, w->cfg);

	if (rc == 0) {
		char line[256];

		rc = ms__creds_get(p, &c, false);
		ms__creds_describe(p, line, sizeof(line));
		ms__creds_free(p);
	}
	return rc;
}

Test(s3_creds, out_of_memory_at_every_allocation)
{
	const char *env_keys[] = {"AWS_ACCESS_KEY_ID=" KEY_ID, "AWS_SECRET_ACCESS_KEY=" SECRET,
	                          NULL};
	const char *env_profile[] = {"AWS_PROFILE=dev", NULL};
	ms__aws_config *cfg = make_config(env_profile, "[profile dev]\nregion = r\n",
	                                  "[dev]\naws_access_key_id = " KEY_ID
	                                  "\naws_secret_access_key = " SECRET "\n");
	walk_case case_env = {env_keys, NULL}, case_profile = {env_profile, cfg};
	server s;
	container_env e;
	walk_case case_container = {e.env, NULL};

	walk(build_and_free, &case_env, "environment");
	walk(build_and_free, &case_profile, "profile");
	server_start(&s, 300); /* inside the window: the get refreshes too */
	container_env_init(&e, &s, NULL);
	walk(build_and_free, &case_container, "container");
	server_stop(&s);
	ms__aws_config_free(cfg);
}

static int parse_for_walk(void *payload)
{
	ms__creds c;

	(void)payload;
	return parse(&c, "{\"Code\":\"Success\",\"AccessKeyId\":\"" KEY_ID
	                 "\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN
	                 "\",\"Expiration\":\"2030-01-02T03:04:05Z\"}");
}

Test(s3_creds, out_of_memory_while_parsing_json)
{
	walk(parse_for_walk, NULL, "json");
}
