/*
 * test_sysmem.c - the memory left to the process: MemAvailable, lowered by a cgroup's
 * limit, read from files written by the test.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "support/testutil.h"
#include "sysmem.h"

TestSuite(sysmem, .fini = tu_tmpdir_remove, .timeout = 30);

static const char *file(const char *name, const char *text)
{
	static char paths[4][PATH_MAX];
	static int next;
	char *path = paths[next++ % 4];

	tu_path(path, PATH_MAX, name);
	tu_write_file(path, text, strlen(text));
	return path;
}

Test(sysmem, mem_available_alone)
{
	const char *meminfo = file("meminfo", "MemTotal:       24000000 kB\n"
	                                      "MemFree:         1000000 kB\n"
	                                      "MemAvailable:   20000000 kB\n");

	cr_assert_eq(ms__memory_available_from(meminfo, NULL, NULL, NULL), 20000000ULL * 1024);
}

Test(sysmem, cgroup_limit_lowers_it)
{
	const char *meminfo = file("meminfo", "MemAvailable:   20000000 kB\n");
	const char *limit = file("max", "4294967296\n");
	const char *usage = file("current", "1073741824\n");

	cr_assert_eq(ms__memory_available_from(meminfo, limit, usage, NULL), 3ULL << 30);
}

Test(sysmem, no_limit_and_unreadable_files_are_ignored)
{
	const char *meminfo = file("meminfo", "MemAvailable:   1000 kB\n");
	const char *max = file("max", "max\n");
	const char *v1_unlimited = file("v1", "9223372036854771712\n");
	const char *usage = file("current", "5\n");

	cr_assert_eq(ms__memory_available_from(meminfo, max, usage, NULL), 1000 * 1024);
	cr_assert_eq(ms__memory_available_from(meminfo, v1_unlimited, usage, NULL), 1000 * 1024);
	cr_assert_eq(ms__memory_available_from(meminfo, "/nonexistent", usage, NULL), 1000 * 1024);
	cr_assert_eq(ms__memory_available_from(NULL, NULL, NULL, NULL), 0, "unknown is 0");
}

Test(sysmem, usage_over_limit_leaves_nothing)
{
	const char *meminfo = file("meminfo", "MemAvailable:   1000 kB\n");
	const char *limit = file("max", "100\n");
	const char *usage = file("current", "200\n");

	cr_assert_eq(ms__memory_available_from(meminfo, limit, usage, NULL), 0);
}

Test(sysmem, page_cache_in_the_cgroup_does_not_count_as_used)
{
	const char *meminfo = file("meminfo", "MemAvailable:   20000000 kB\n");
	const char *limit = file("max", "8589934592\n");
	const char *usage = file("current", "8000000000\n");
	const char *v2 = file("stat", "anon 1000000000\nfile 7000000000\nkernel 1000\n");

	/* 8 GiB limit, 8 GB charged of which 7 GB is page cache: 7.59 GB left. */
	cr_assert_eq(ms__memory_available_from(meminfo, limit, usage, v2),
	             8589934592ULL - 1000000000ULL);
}

Test(sysmem, cgroup_v1_total_cache)
{
	const char *meminfo = file("meminfo", "MemAvailable:   20000000 kB\n");
	const char *limit = file("max", "4294967296\n");
	const char *usage = file("current", "4000000000\n");
	const char *v1 = file("stat", "cache 100\nrss 5\ntotal_cache 3000000000\n");

	cr_assert_eq(ms__memory_available_from(meminfo, limit, usage, v1),
	             4294967296ULL - 1000000000ULL);
}

Test(sysmem, this_machine_reports_something)
{
	cr_assert_gt(ms__memory_available(), 0, "/proc/meminfo is readable here");
}
