/*
 * sysmem.h - how much memory this process can still take.
 *
 * An arena larger than the memory left does not fail when it is mapped (Linux
 * overcommits); it fails later, when the OOM killer ends the process mid-stream, or in a
 * container when the cgroup's limit is hit. Asking first turns that into a clear error.
 */
#ifndef MS_SYSMEM_H
#define MS_SYSMEM_H

#include <stdint.h>

/**
 * Bytes this process can still allocate: MemAvailable from /proc/meminfo, lowered to the
 * room left under its memory cgroup's limit (v2 memory.max - memory.current, or v1
 * memory.limit_in_bytes - memory.usage_in_bytes), where the cgroup's page cache (from
 * memory.stat) does not count as used, since the kernel reclaims it first. 0 when
 * nothing can be read.
 */
uint64_t ms__memory_available(void);

/**
 * The same from explicit files, for tests: `meminfo` in /proc/meminfo's format, `limit`
 * and `usage` each holding one number ("max" for no limit), `stat` in memory.stat's
 * format. Any path may be NULL.
 */
uint64_t ms__memory_available_from(const char *meminfo, const char *limit, const char *usage,
                                   const char *stat);

#endif
