/*
 * sysmem.c - reading the memory left to this process from /proc and the cgroup tree.
 *
 * Every read is best effort: a file that is missing or unreadable only means that limit
 * is unknown, and an unknown limit never blocks anything.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sysmem.h"

/* Reads one number from a cgroup file; "max" and failures give UINT64_MAX. */
static uint64_t read_number(const char *path)
{
	char text[64] = "";
	uint64_t v = UINT64_MAX;
	FILE *f;

	if (path == NULL || (f = fopen(path, "re")) == NULL)
		return UINT64_MAX;
	if (fgets(text, sizeof(text), f) != NULL && sscanf(text, "%" SCNu64, &v) != 1)
		v = UINT64_MAX;
	fclose(f);
	return v;
}

static uint64_t read_mem_available(const char *meminfo)
{
	char line[256];
	uint64_t kib = 0;
	FILE *f;

	if (meminfo == NULL || (f = fopen(meminfo, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

/* The page cache charged to the cgroup: reclaimable, so not really used. */
static uint64_t read_cgroup_cache(const char *stat)
{
	char line[256], name[64];
	uint64_t v, cache = 0;
	FILE *f;

	if (stat == NULL || (f = fopen(stat, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%63s %" SCNu64, name, &v) != 2)
			continue;
		/* v2 says "file"; v1 says "cache", and "total_cache" with children. */
		if (strcmp(name, "file") == 0 || strcmp(name, "total_cache") == 0 ||
		    (strcmp(name, "cache") == 0 && cache == 0))
			cache = v;
	}
	fclose(f);
	return cache;
}

uint64_t ms__memory_available_from(const char *meminfo, const char *limit, const char *usage,
                                   const char *stat)
{
	uint64_t available = read_mem_available(meminfo);
	uint64_t max = read_number(limit), used = read_number(usage);
	uint64_t cache = read_cgroup_cache(stat);

	/* Page cache counts as usage in both cgroup versions, but the kernel reclaims it
	 * before failing an allocation: a model just read through the cache must not make
	 * its own arena look too big. */
	if (used != UINT64_MAX)
		used = used > cache ? used - cache : 0;

	/* cgroup v1 reports "no limit" as a huge page-aligned number, not "max". */
	if (max != UINT64_MAX && max < (UINT64_MAX >> 2) && used != UINT64_MAX) {
		uint64_t room = max > used ? max - used : 0;

		if (available == 0 || room < available)
			available = room;
	}
	return available;
}

uint64_t ms__memory_available(void)
{
	char line[512], limit[600], usage[600], stat[600];
	const char *v2 = NULL, *v1 = NULL;
	char v2_path[512] = "", v1_path[512] = "";
	FILE *f = fopen("/proc/self/cgroup", "re");

	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "0::", 3) == 0) {
			snprintf(v2_path, sizeof(v2_path), "%s", line + 3);
			v2 = v2_path;
		} else if (strstr(line, ":memory:") != NULL) {
			snprintf(v1_path, sizeof(v1_path), "%s", strstr(line, ":memory:") + 8);
			v1 = v1_path;
		}
	}
	if (f != NULL)
		fclose(f);
	if (v1 != NULL) {
		snprintf(limit, sizeof(limit), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", v1);
		snprintf(usage, sizeof(usage), "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", v1);
		snprintf(stat, sizeof(stat), "/sys/fs/cgroup/memory%s/memory.stat", v1);
	} else if (v2 != NULL) {
		snprintf(limit, sizeof(limit), "/sys/fs/cgroup%s/memory.max", v2);
		snprintf(usage, sizeof(usage), "/sys/fs/cgroup%s/memory.current", v2);
		snprintf(stat, sizeof(stat), "/sys/fs/cgroup%s/memory.stat", v2);
	} else {
		return ms__memory_available_from("/proc/meminfo", NULL, NULL, NULL);
	}
	return ms__memory_available_from("/proc/meminfo", limit, usage, stat);
}
