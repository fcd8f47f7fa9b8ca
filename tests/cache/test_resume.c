/*
 * test_resume.c - the resume state of a node-cache download (lib/cache/fetch.c and
 * sink_cache.c): a fetch that fails half-way leaves its partial file and a state byte per
 * chunk; the next fetch reads only the chunks that are missing; a state written for another
 * chunk size, or on another boot on a disk cache, is not trusted.
 *
 * The source is a registered back end ("res://") whose reads can be made to fail from a
 * chosen offset, and which counts the reads it serves.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "modelstream.h"
#include "support/testutil.h"

#define CHUNK  (64u << 10)
#define CHUNKS 10
#define SIZE   (CHUNK * CHUNKS - 1000) /* the last chunk is short */

typedef struct {
	unsigned char bytes[SIZE];
	atomic_int reads;
	atomic_ullong fail_from; /* reads at or past this offset fail; ~0 for none */
} store;

static store the_store;

static int res_open(void *data, const char *location, void **handle, uint64_t *size)
{
	if (strcmp(location, "res://m/weights.bin") != 0)
		return ms_error_raise(MS_ENOTFOUND, "%s: not here", location);
	*handle = data;
	*size = SIZE;
	return 0;
}

static int res_read(void *handle, void *dst, uint64_t offset, size_t length)
{
	store *s = handle;

	if (offset >= atomic_load(&s->fail_from))
		return ms_error_raise(MS_EIO, "res://m/weights.bin: the disk broke at %llu",
		                      (unsigned long long)offset);
	atomic_fetch_add(&s->reads, 1);
	memcpy(dst, s->bytes + offset, length);
	return 0;
}

static void res_close(void *handle)
{
	(void)handle;
}

static int res_list(void *data, const char *location, ms_list_fn fn, void *payload)
{
	ms_object o = {.name = "weights.bin", .size = SIZE, .etag = "\"v1\""};

	(void)data, (void)location;
	return fn(&o, payload);
}

static char cache_dir[4096];

static void setup(void)
{
	ms_backend b = {.version = MS_BACKEND_VERSION,
	                .scheme = "res",
	                .open = res_open,
	                .read = res_read,
	                .close = res_close,
	                .data = &the_store,
	                .list = res_list};

	for (size_t i = 0; i < SIZE; i++)
		the_store.bytes[i] = (unsigned char)(i * 2654435761u >> 13);
	atomic_store(&the_store.reads, 0);
	atomic_store(&the_store.fail_from, ~0ull);
	cr_assert_eq(ms_backend_register(&b), 0, "%s", ms_error_last()->message);
	tu_path(cache_dir, sizeof(cache_dir), "cache");
	cr_assert_eq(mkdir(cache_dir, 0755), 0);
}

static void teardown(void)
{
	ms_backend_unregister("res");
	tu_tmpdir_remove();
}

TestSuite(resume, .init = setup, .fini = teardown, .timeout = 60);

static ms_cache *open_cache(uint64_t chunk)
{
	ms_cache_options o = MS_CACHE_OPTIONS_INIT;
	ms_cache *c;

	o.chunk_size = chunk;
	o.concurrency = 1; /* chunks in order: the failure point decides what is done */
	cr_assert_eq(ms_cache_open(&c, cache_dir, &o), 0, "%s", ms_error_last()->message);
	return c;
}

/* The path of the one file with `suffix` under DIR/blobs, or "" when there is none. */
static void blob_with(char *out, size_t size, const char *suffix)
{
	char blobs[4200];
	struct dirent *e;
	DIR *d;

	snprintf(blobs, sizeof(blobs), "%s/blobs", cache_dir);
	out[0] = '\0';
	cr_assert_not_null(d = opendir(blobs));
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name), k = strlen(suffix);

		if (n > k && strcmp(e->d_name + n - k, suffix) == 0)
			snprintf(out, size, "%s/%s", blobs, e->d_name);
	}
	closedir(d);
}

/* The chunks the state file marks done. */
static int chunks_done(void)
{
	char path[8400];
	unsigned char buf[4096];
	struct stat st;
	ssize_t n;
	int fd, done = 0;

	blob_with(path, sizeof(path), ".state");
	cr_assert_neq(path[0], '\0', "no state file");
	cr_assert_geq(fd = open(path, O_RDONLY), 0);
	cr_assert_eq(fstat(fd, &st), 0);
	n = pread(fd, buf, sizeof(buf), st.st_size - CHUNKS);
	close(fd);
	cr_assert_eq(n, CHUNKS);
	for (int i = 0; i < CHUNKS; i++)
		done += buf[i] == 1;
	return done;
}

static void fail_half_way(ms_cache *c)
{
	atomic_store(&the_store.fail_from, 5ull * CHUNK);
	cr_assert_eq(ms_cache_fetch(c, "res://m/", "m", NULL, NULL), MS_EIO);
	cr_assert(strstr(ms_error_last()->message, "the disk broke") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert_eq(chunks_done(), 5, "the five chunks before the failure are recorded");
	atomic_store(&the_store.fail_from, ~0ull);
	atomic_store(&the_store.reads, 0);
}

static void assert_published(void)
{
	char path[4200];
	FILE *f;
	static unsigned char got[SIZE];

	snprintf(path, sizeof(path), "%s/models/m/weights.bin", cache_dir);
	cr_assert_not_null(f = fopen(path, "rb"), "%s", path);
	cr_assert_eq(fread(got, 1, SIZE, f), SIZE);
	fclose(f);
	cr_assert(memcmp(got, the_store.bytes, SIZE) == 0, "the published bytes differ");
	blob_with(path, sizeof(path), ".partial");
	cr_assert_eq(path[0], '\0', "a partial file stayed after publishing");
	blob_with(path, sizeof(path), ".state");
	cr_assert_eq(path[0], '\0', "a state file stayed after publishing");
}

Test(resume, the_next_fetch_reads_only_the_missing_chunks)
{
	ms_cache *c = open_cache(CHUNK);

	fail_half_way(c);
	cr_assert_eq(ms_cache_fetch(c, "res://m/", "m", NULL, NULL), 0, "%s",
	             ms_error_last()->message);
	cr_assert_eq(atomic_load(&the_store.reads), CHUNKS - 5, "only the missing chunks move");
	assert_published();
	ms_cache_free(c);
}

Test(resume, a_state_for_another_chunk_size_starts_over)
{
	ms_cache *c = open_cache(CHUNK);

	fail_half_way(c);
	ms_cache_free(c);
	c = open_cache(2 * CHUNK);
	cr_assert_eq(ms_cache_fetch(c, "res://m/", "m", NULL, NULL), 0, "%s",
	             ms_error_last()->message);
	cr_assert_eq(atomic_load(&the_store.reads), CHUNKS / 2, "every chunk again, 128 KiB each");
	assert_published();
	ms_cache_free(c);
}

/* On a disk cache, pages not yet written back when the machine went down are lost: a state
 * file from another boot cannot vouch for them. On tmpfs the file went down with it. */
Test(resume, a_state_from_another_boot_is_trusted_only_on_tmpfs)
{
	ms_cache *c = open_cache(CHUNK);
	char path[8400];
	int fd;

	fail_half_way(c);
	blob_with(path, sizeof(path), ".state");
	cr_assert_geq(fd = open(path, O_WRONLY), 0);
	/* The header: magic, size, chunk size, chunks (8 bytes each), then the boot id. */
	cr_assert_eq(pwrite(fd, "00000000-another-boot", 21, 32), 21);
	close(fd);
	cr_assert_eq(ms_cache_fetch(c, "res://m/", "m", NULL, NULL), 0, "%s",
	             ms_error_last()->message);
	if (ms_cache_medium_of(c) == MS_CACHE_DISK)
		cr_assert_eq(atomic_load(&the_store.reads), CHUNKS, "disk: every chunk again");
	else
		cr_assert_eq(atomic_load(&the_store.reads), CHUNKS - 5, "tmpfs: the state holds");
	assert_published();
	ms_cache_free(c);
}

/* A fired token stops a fetch before it reads anything. (That a fetch canceled half-way
 * keeps what it fetched, and resumes from it, is shown by tests/cache_tests.sh with
 * SIGTERM against a slow origin.) */
Test(resume, a_fired_token_stops_the_fetch_before_any_read)
{
	ms_cache_options o = MS_CACHE_OPTIONS_INIT;
	ms_cancel *cancel;
	ms_cache *c;

	cr_assert_eq(ms_cancel_new(&cancel), 0);
	ms_cancel_fire(cancel);
	cr_assert_eq(ms_cancel_fired(cancel), 1);
	o.chunk_size = CHUNK;
	o.cancel = cancel;
	cr_assert_eq(ms_cache_open(&c, cache_dir, &o), 0);
	cr_assert_eq(ms_cache_fetch(c, "res://m/", "m", NULL, NULL), MS_ECANCELED);
	cr_assert(strstr(ms_error_last()->message, "canceled") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert_eq(atomic_load(&the_store.reads), 0, "nothing was read after the token fired");
	ms_cache_free(c);
	ms_cancel_free(cancel);
}
