/*
 * test_source_file.c - local files as a source (lib/source_file.c, behind lib/source.h):
 * errors on open, exact bytes for any range, the end of the file, O_DIRECT reads that
 * give the same bytes as buffered ones, the auto mode's choice between the two from the
 * page cache, concurrent reads, and a file that shrinks under an open source.
 *
 * File content comes from stgen_fill(), a function of (seed, offset), so any range read
 * can be checked without a reference copy.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "sink_mapped.h"
#include "source.h"
#include "support/stgen.h"
#include "support/testutil.h"

#define SEED 7

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(source_file, .fini = teardown, .timeout = 120);

/* Criterion does not run .fini for a skipped test: remove the files (80 MiB) first. */
#define SKIP(...)                          \
	do {                               \
		tu_tmpdir_remove();        \
		cr_skip_test(__VA_ARGS__); \
	} while (0)

/* Writes `size` bytes of stgen content for SEED to `name` in the test directory. */
static void make_file(char *path, size_t path_size, const char *name, size_t size)
{
	unsigned char *data = malloc(size ? size : 1);

	cr_assert_not_null(data);
	stgen_fill(data, size, SEED, 0);
	tu_path(path, path_size, name);
	tu_write_file(path, data, size);
	free(data);
}

/* Reads [offset, offset + length) and checks it against stgen, and that the read wrote
 * nothing it should not have. */
static void check_range(ms__source *src, uint64_t offset, size_t length)
{
	size_t align = src->read_alignment;
	size_t cap = length + align;
	unsigned char *buf = NULL, *expected = malloc(length ? length : 1);
	size_t valid = 0;

	cr_assert_eq(posix_memalign((void **)&buf, align < 64 ? 64 : align, cap), 0);
	cr_assert_not_null(expected);
	memset(buf, 0xa5, cap);
	if (offset < src->size)
		valid = (size_t)(src->size - offset < length ? src->size - offset : length);
	stgen_fill(expected, valid, SEED, offset);
	cr_assert_eq(ms__source_read(src, buf, offset, length), 0, "read %zu at %llu: %s", length,
	             (unsigned long long)offset, ms_error_last()->message);
	cr_assert(memcmp(buf, expected, valid) == 0, "bytes differ: %zu at %llu", length,
	          (unsigned long long)offset);
	/* O_DIRECT transfers whole blocks, so the rest of the last block may be written with
	 * whatever the device holds there; a buffered read copies only the file's bytes.
	 * Nothing is ever written past `length`. */
	for (size_t i = src->direct_io ? length : valid; i < cap; i++)
		cr_assert_eq(buf[i], 0xa5, "byte %zu past the end was written (read %zu at %llu)",
		             i, length, (unsigned long long)offset);
	free(buf);
	free(expected);
}

/* The fraction of the file's pages that are in the page cache, as the source sees it. */
static double cached_fraction(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	long page = sysconf(_SC_PAGESIZE);
	size_t pages, resident = 0;
	unsigned char *vec;
	void *map;

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	pages = ((size_t)st.st_size + (size_t)page - 1) / (size_t)page;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	cr_assert_neq(map, MAP_FAILED);
	vec = malloc(pages);
	cr_assert_not_null(vec);
	cr_assert_eq(mincore(map, (size_t)st.st_size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		resident += vec[i] & 1;
	free(vec);
	munmap(map, (size_t)st.st_size);
	close(fd);
	return (double)resident / (double)pages;
}

/* Reads the whole file through the page cache, so that it is cached afterwards. */
static void read_whole_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	char *buf = malloc(1 << 20);
	ssize_t n;

	cr_assert_geq(fd, 0);
	cr_assert_not_null(buf);
	while ((n = read(fd, buf, 1 << 20)) > 0)
		;
	cr_assert_eq(n, 0);
	free(buf);
	close(fd);
}

/* Writes back and drops the file's cached pages; returns 0 if the kernel accepted it. */
static int evict_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	int rc;

	cr_assert_geq(fd, 0);
	rc = fsync(fd);
	if (rc == 0)
		rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return rc;
}

Test(source_file, open_missing_file_is_not_found)
{
	char path[4096];
	ms__source *src = (ms__source *)&path; /* must be reset to NULL */

	tu_path(path, sizeof(path), "does-not-exist.safetensors");
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), MS_ENOTFOUND);
	cr_assert_null(src);
	cr_assert_eq(ms_error_last()->code, MS_ENOTFOUND);
	cr_assert(strstr(ms_error_last()->message, path) != NULL, "%s", ms_error_last()->message);

	/* A path through a regular file as if it were a directory is "not found" too. */
	make_file(path, sizeof(path), "plain", 16);
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/child");
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_AUTO), MS_ENOTFOUND);
	cr_assert_null(src);
}

Test(source_file, open_directory_is_refused)
{
	ms__source *src = NULL;
	int rc = ms__source_file_open(&src, tu_tmpdir(), MS_DIRECT_IO_OFF);

	cr_assert_lt(rc, 0);
	cr_assert_null(src);
	cr_assert(strstr(ms_error_last()->message, tu_tmpdir()) != NULL, "%s",
	          ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, "not a regular file") != NULL, "%s",
	          ms_error_last()->message);
}

Test(source_file, describes_the_file)
{
	char path[4096];
	ms__source *src = NULL;

	make_file(path, sizeof(path), "a.bin", 12345);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), 0, "%s",
	             ms_error_last()->message);
	cr_assert_not_null(src);
	cr_assert_eq(src->size, 12345);
	cr_assert_str_eq(src->location, path);
	cr_assert_eq(src->direct_io, 0);
	cr_assert_eq(src->read_alignment, 1);
	ms__source_close(src);
	ms__source_close(NULL); /* accepted, like every _free */

	/* Auto mode never bothers with O_DIRECT for a small file. */
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_AUTO), 0);
	cr_assert_eq(src->direct_io, 0);
	ms__source_close(src);
}

Test(source_file, buffered_reads_give_exact_bytes)
{
	static const struct {
		uint64_t offset;
		size_t length;
	} ranges[] = {
	    {0, 1},         {0, 8},
	    {1, 7},         {3, 100},
	    {4095, 2},      {4096, 4096},
	    {12345, 65536}, {0, (1 << 20) + 123},
	    {1 << 20, 123}, {(1 << 20) + 100, 23},
	    {0, 0},
	};
	size_t size = (1 << 20) + 123;
	char path[4096];
	ms__source *src = NULL;

	make_file(path, sizeof(path), "b.bin", size);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), 0);
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		check_range(src, ranges[i].offset, ranges[i].length);
	ms__source_close(src);
}

Test(source_file, reads_stop_at_end_of_file)
{
	size_t size = 10000;
	char path[4096];
	ms__source *src = NULL;

	make_file(path, sizeof(path), "c.bin", size);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), 0);
	check_range(src, 0, 16384);     /* the whole file and more */
	check_range(src, 9990, 100);    /* the last 10 bytes */
	check_range(src, 8192, 8192);   /* an aligned read across the end */
	check_range(src, size, 4096);   /* exactly at the end: nothing to copy */
	check_range(src, size + 1, 10); /* past the end: nothing to copy, no error */
	ms__source_close(src);
}

Test(source_file, direct_io_gives_the_same_bytes)
{
	size_t size = (3 << 20) + 4567; /* the last block is partial */
	char path[4096];
	ms__source *src = NULL;
	int rc;

	make_file(path, sizeof(path), "d.bin", size);
	rc = ms__source_file_open(&src, path, MS_DIRECT_IO_ON);
	if (rc != 0) {
		/* tmpfs and some overlay set-ups refuse O_DIRECT: the message must say so. */
		cr_assert(strstr(ms_error_last()->message, "O_DIRECT") != NULL, "%s",
		          ms_error_last()->message);
		cr_assert(strstr(ms_error_last()->message, path) != NULL);
		cr_assert_null(src);
		SKIP("the file system refuses O_DIRECT: %s", ms_error_last()->message);
	}
	cr_assert_eq(src->direct_io, 1);
	cr_assert_geq(src->read_alignment, 512);
	cr_assert_eq(src->read_alignment & (src->read_alignment - 1), 0, "a power of two");
	cr_assert_eq(src->size, size);
	check_range(src, 0, 4096);
	check_range(src, 4096, 8192);
	check_range(src, 1 << 20, 1 << 20);
	check_range(src, 0, size / 4096 * 4096 + 4096);    /* the whole file, rounded up */
	check_range(src, size / 4096 * 4096, 4096);        /* the partial last block */
	check_range(src, size / 4096 * 4096 + 4096, 4096); /* past the end */
	ms__source_close(src);
}

Test(source_file, auto_mode_follows_the_page_cache)
{
	size_t size = 80u << 20;
	char path[4096];
	ms__source *src = NULL;
	double fraction;

	make_file(path, sizeof(path), "e.bin", size);
	read_whole_file(path);
	/* Just written and read: cached, so buffered reads are a memory copy. */
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_AUTO), 0, "%s",
	             ms_error_last()->message);
	cr_assert_eq(src->direct_io, 0, "cached file (%.0f%% resident) read with O_DIRECT",
	             100 * cached_fraction(path));
	check_range(src, 12345, 1 << 20);
	ms__source_close(src);

	if (evict_file(path) != 0)
		SKIP("cannot drop the file from the page cache: %s", strerror(errno));
	fraction = cached_fraction(path);
	if (fraction >= 0.5)
		SKIP("the file system kept %.0f%% of the file cached after "
		     "POSIX_FADV_DONTNEED",
		     100 * fraction);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_AUTO), 0, "%s",
	             ms_error_last()->message);
	if (src->direct_io == 0) {
		/* Auto mode falls back to buffered reads where O_DIRECT is refused. */
		int fd = open(path, O_RDONLY | O_DIRECT);

		if (fd < 0) {
			ms__source_close(src);
			SKIP("the file system refuses O_DIRECT");
		}
		close(fd);
	}
	cr_assert_eq(src->direct_io, 1, "uncached file (%.0f%% resident) read through the cache",
	             100 * fraction);
	cr_assert_geq(src->read_alignment, 512);
	check_range(src, 0, 1 << 20);
	check_range(src, (uint64_t)size - 8192, 8192);
	ms__source_close(src);

	/* Forcing it off wins over the cache state. */
	evict_file(path);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), 0);
	cr_assert_eq(src->direct_io, 0);
	ms__source_close(src);
}

/* The open-time estimate samples the file's pages; it must still tell a half-cached file
 * from a cached one, as every page counted does. */
Test(source_file, the_sampled_residency_is_near_every_page_counted)
{
	size_t size = 96u << 20;
	char path[4096];
	double exact, estimate;
	int fd;

	make_file(path, sizeof(path), "half.bin", size);
	read_whole_file(path);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_float_eq(ms__resident_fraction(fd, size, true), 1.0, 1e-9);
	cr_assert_float_eq(ms__resident_fraction(fd, size, false), 1.0, 1e-9);
	/* Every other 8 MiB stretch out of the cache: about half, spread over the file. */
	cr_assert_eq(fsync(fd), 0);
	for (size_t at = 0; at < size; at += 16u << 20)
		(void)posix_fadvise(fd, (off_t)at, 8 << 20, POSIX_FADV_DONTNEED);
	exact = ms__resident_fraction(fd, size, false);
	if (exact > 0.75)
		SKIP("the file system kept %.0f%% of the file cached after POSIX_FADV_DONTNEED",
		     100 * exact);
	estimate = ms__resident_fraction(fd, size, true);
	cr_assert_float_eq(estimate, exact, 0.05, "sampled %.3f, every page %.3f", estimate, exact);
	/* A file smaller than the sample is counted page by page. */
	cr_assert_float_eq(ms__resident_fraction(fd, 1 << 20, true),
	                   ms__resident_fraction(fd, 1 << 20, false), 1e-9);
	close(fd);
}

typedef struct {
	ms__source *src;
	unsigned index;
	int failures;
} reader;

static void *read_stripes(void *arg)
{
	reader *r = arg;
	size_t stripe = 64 * 1024;
	unsigned char *buf = malloc(stripe), *expected = malloc(stripe);

	if (buf == NULL || expected == NULL) {
		r->failures++;
	} else {
		for (uint64_t off = r->index * stripe; off < r->src->size; off += 4 * stripe) {
			size_t len =
			    r->src->size - off < stripe ? (size_t)(r->src->size - off) : stripe;

			stgen_fill(expected, len, SEED, off);
			if (ms__source_read(r->src, buf, off, stripe) != 0 ||
			    memcmp(buf, expected, len) != 0)
				r->failures++;
		}
	}
	free(buf);
	free(expected);
	return NULL;
}

Test(source_file, concurrent_reads_on_one_source)
{
	size_t size = (4 << 20) + 999;
	char path[4096];
	ms__source *src = NULL;
	pthread_t threads[4];
	reader readers[4];

	make_file(path, sizeof(path), "f.bin", size);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), 0);
	for (unsigned i = 0; i < 4; i++) {
		readers[i] = (reader){.src = src, .index = i, .failures = 0};
		cr_assert_eq(pthread_create(&threads[i], NULL, read_stripes, &readers[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		cr_assert_eq(readers[i].failures, 0, "reader %u", i);
	}
	ms__source_close(src);
}

Test(source_file, truncated_after_open_is_an_io_error)
{
	size_t size = 64 * 1024;
	char path[4096];
	ms__source *src = NULL;
	unsigned char *buf = malloc(size);

	cr_assert_not_null(buf);
	make_file(path, sizeof(path), "g.bin", size);
	cr_assert_eq(ms__source_file_open(&src, path, MS_DIRECT_IO_OFF), 0);
	cr_assert_eq(truncate(path, 10000), 0);
	cr_assert_eq(src->size, size, "the source keeps the size it saw at open");

	/* A read that starts inside what is left but ends past the new end. */
	cr_assert_eq(ms__source_read(src, buf, 0, size), MS_EIO);
	cr_assert_eq(ms_error_last()->code, MS_EIO);
	cr_assert(strstr(ms_error_last()->message, "truncated") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert(strstr(ms_error_last()->message, path) != NULL, "%s", ms_error_last()->message);

	/* A read wholly past the new end. */
	cr_assert_eq(ms__source_read(src, buf, 20000, 4096), MS_EIO);
	cr_assert(strstr(ms_error_last()->message, "truncated") != NULL, "%s",
	          ms_error_last()->message);

	/* What is still there reads fine. */
	check_range(src, 0, 10000);
	ms__source_close(src);
	free(buf);
}

Test(source_file, open_survives_every_allocation_failure)
{
	char path[4096];
	ms__source *src = NULL;
	int rc = -1;

	make_file(path, sizeof(path), "h.bin", 4096);
	for (long n = 1; n < 100; n++) {
		long before = ms__alloc_count();

		ms__alloc_fail_at(n, 0);
		rc = ms__source_file_open(&src, path, MS_DIRECT_IO_AUTO);
		ms__alloc_fail_at(0, 0);
		if (rc == 0) {
			cr_assert_not_null(src);
			ms__source_close(src);
			if (ms__alloc_count() - before < n)
				break; /* the failure was never reached: every path is walked */
			continue;
		}
		cr_assert_eq(rc, MS_ENOMEM, "allocation %ld: %d %s", n, rc,
		             ms_error_last()->message);
		cr_assert_null(src);
		cr_assert(strstr(ms_error_last()->message, path) != NULL);
	}
	cr_assert_eq(rc, 0, "the walk ended without a successful open");
	cr_assert_eq(tu_leaks_found(), 0,
	             "a path that failed an allocation leaked (see the report above)");
}
