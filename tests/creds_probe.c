/*
 * creds_probe.c - builds a credential provider from the real environment and shared files
 * and prints what it found, for tests/creds_tests.sh.
 *
 * Usage: creds_probe LABEL [--refresh-loop N SECONDS] [--force]
 * Prints "describe: ...", "kind: N", "access_key_id: ...", "secret_sha256: <12 hex>",
 * "session_token: yes|no", "expires_in: S" and "fetches: N"; with --refresh-loop, N more
 * gets SECONDS apart (forced with --force), each printing "get I: access_key_id K fetches
 * F". The secret itself is never printed. Exit 0, or 1 with the library's message on
 * stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "s3/s3_config.h"
#include "s3/s3_creds.h"
#include "s3/s3_sigv4.h"

static int fail(void)
{
	fprintf(stderr, "%s\n", ms_error_last()->message);
	return 1;
}

static void print_creds(const ms__creds *c)
{
	char hash[65];

	ms__sha256_hex(hash, c->secret_access_key, strlen(c->secret_access_key));
	printf("access_key_id: %s\n", c->access_key_id);
	printf("secret_sha256: %.12s\n", hash);
	printf("session_token: %s\n", c->session_token[0] != '\0' ? "yes" : "no");
	printf("expires_in: %lld\n",
	       c->expiration != 0 ? (long long)(c->expiration - (int64_t)time(NULL)) : -1LL);
}

int main(int argc, char **argv)
{
	ms__aws_config *cfg = NULL;
	ms__creds_provider *p = NULL;
	ms__creds_options opts = {0};
	ms__creds c;
	char line[1024];
	const char *region;
	long loops = 0;
	double seconds = 0;
	int force = 0, rc = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: creds_probe LABEL [--refresh-loop N SECONDS] [--force]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--refresh-loop") == 0 && i + 2 < argc) {
			loops = strtol(argv[i + 1], NULL, 10);
			seconds = strtod(argv[i + 2], NULL);
			i += 2;
		} else if (strcmp(argv[i], "--force") == 0) {
			force = 1;
		} else {
			fprintf(stderr, "creds_probe: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (ms__aws_config_load(&cfg, NULL) < 0)
		return fail();
	region = getenv("AWS_REGION");
	if (region == NULL || region[0] == '\0')
		region = getenv("AWS_DEFAULT_REGION");
	if ((region == NULL || region[0] == '\0') && cfg->profile != NULL)
		region = cfg->profile->values[MS__AWS_REGION];
	opts.config = cfg;
	opts.region = region;
	if (ms__creds_provider_new(&p, &opts, argv[1]) < 0) {
		rc = fail();
		goto done;
	}
	ms__creds_describe(p, line, sizeof(line));
	printf("describe: %s\n", line);
	printf("kind: %d\n", (int)ms__creds_kind_of(p));
	if (ms__creds_get(p, &c, false) < 0) {
		rc = fail();
		goto done;
	}
	print_creds(&c);
	printf("fetches: %u\n", ms__creds_fetch_count(p));
	for (long i = 1; i <= loops; i++) {
		usleep((useconds_t)(seconds * 1e6));
		if (ms__creds_get(p, &c, force != 0) < 0) {
			rc = fail();
			goto done;
		}
		printf("get %ld: access_key_id %s fetches %u\n", i, c.access_key_id,
		       ms__creds_fetch_count(p));
		fflush(stdout);
	}
	rc = 0;
done:
	ms__creds_clear(&c);
	ms__creds_free(p);
	ms__aws_config_free(cfg);
	return rc;
}
