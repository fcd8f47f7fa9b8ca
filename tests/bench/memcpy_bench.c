/*
 * memcpy_bench: the physical limit that modelstream's hot-cache figures are compared with.
 *
 * Streaming a file that is already in the page cache comes down to the kernel copying pages into
 * the destination buffer, so a plain memcpy of the same number of bytes, in the same 8 MiB pieces
 * that a reader would ask for, is the ceiling. The destination's page faults are part of the real
 * cost on our VMs, which fault 4 KiB pages slowly, so four destinations are measured one after
 * another, each a fresh mapping released before the next:
 *
 *   prefaulted     huge pages (MADV_HUGEPAGE), every one written before the clock starts: memcpy
 *                  alone, the limit that the ratios in run_bench.py use;
 *   prefaulted_4k  the same with 4 KiB pages (MADV_NOHUGEPAGE): what TLB misses cost on their own;
 *   fresh_4k       a new mapping of 4 KiB pages: memcpy plus one page fault per 4 KiB;
 *   thp            a new mapping with MADV_HUGEPAGE: memcpy plus one fault per 2 MiB, with the
 *                  bytes that really got huge pages read back from /proc/self/smaps.
 *
 * The source is one mapping of BYTES with MADV_HUGEPAGE, written before any timing, so no
 * measurement reads cache-hot bytes and, like the kernel's direct map that page-cache reads copy
 * from, it is covered by large TLB entries. Pieces are handed out through an atomic counter, so
 * --threads N measures what N copying threads get out of the memory system together.
 *
 * Output: one JSON line on stdout. GB/s means 10^9 bytes per second.
 *
 * Usage: memcpy_bench [--threads N] BYTES     (BYTES may end in K, M or G: binary multiples)
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PIECE_BYTES ((size_t)8 << 20)
#define HUGE_BYTES  ((size_t)2 << 20)
#define MAX_THREADS 256

/* One copy run: the pieces of src that threads move to dst. */
struct copy_job {
	const unsigned char *src;
	unsigned char *dst;
	size_t bytes;
	size_t pieces;
	/*
	 * The next piece to copy. Relaxed order is enough: each piece is claimed by exactly one
	 * thread, and pthread_join orders every copy before the clock stops.
	 */
	atomic_size_t next;
};

/* A mapping as mmap returned it, and the aligned part of it that is used. */
struct region {
	void *map;
	size_t map_bytes;
	unsigned char *data;
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *copy_worker(void *arg)
{
	struct copy_job *job = arg;
	size_t piece;

	while ((piece = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed)) <
	       job->pieces) {
		size_t offset = piece * PIECE_BYTES;
		size_t length =
		    job->bytes - offset < PIECE_BYTES ? job->bytes - offset : PIECE_BYTES;

		memcpy(job->dst + offset, job->src + offset, length);
	}
	return NULL;
}

/* Copies bytes from src to dst with threads workers and returns the seconds it took, or -1. */
static double timed_copy(unsigned char *dst, const unsigned char *src, size_t bytes, int threads)
{
	struct copy_job job = {.src = src, .dst = dst, .bytes = bytes};
	pthread_t tids[MAX_THREADS];
	int started = 0;
	double start, elapsed;

	job.pieces = (bytes + PIECE_BYTES - 1) / PIECE_BYTES;
	atomic_init(&job.next, 0);

	start = now_seconds();
	while (started < threads && pthread_create(&tids[started], NULL, copy_worker, &job) == 0)
		started++;
	/* Whichever threads did start still finish the whole job between them. */
	for (int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	elapsed = now_seconds() - start;
	if (started < threads) {
		fprintf(stderr, "memcpy_bench: only %d of %d threads started\n", started, threads);
		return -1;
	}
	return elapsed;
}

/* Maps bytes of anonymous memory aligned to 2 MiB, with the given madvise advice (or none). */
static int region_map(struct region *out, size_t bytes, int advice)
{
	uintptr_t aligned;

	out->map_bytes = bytes + HUGE_BYTES;
	out->map =
	    mmap(NULL, out->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (out->map == MAP_FAILED) {
		fprintf(stderr, "memcpy_bench: mmap of %zu bytes: %s\n", out->map_bytes,
		        strerror(errno));
		out->map = NULL;
		return -1;
	}
	aligned = ((uintptr_t)out->map + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1);
	out->data = (unsigned char *)aligned;
	if (advice >= 0 && madvise(out->data, bytes, advice) != 0)
		fprintf(stderr, "memcpy_bench: madvise(%d): %s (measuring without it)\n", advice,
		        strerror(errno));
	return 0;
}

static void region_unmap(struct region *region)
{
	if (region->map != NULL)
		munmap(region->map, region->map_bytes);
	region->map = NULL;
}

/*
 * Returns the AnonHugePages bytes that /proc/self/smaps reports for the mapping starting at
 * start, or -1 when it cannot tell. Read back rather than assumed: MADV_HUGEPAGE is a request,
 * and fragmentation or THP set to "never" leaves 4 KiB pages behind it. start must be where the
 * madvise began, because the advice splits the mapping there.
 */
static long long anon_huge_bytes(const void *start)
{
	char line[512], prefix[64];
	long long kib = -1;
	bool inside = false;
	FILE *smaps = fopen("/proc/self/smaps", "r");

	if (smaps == NULL)
		return -1;
	snprintf(prefix, sizeof(prefix), "%" PRIxPTR "-", (uintptr_t)start);
	while (fgets(line, sizeof(line), smaps) != NULL) {
		if (strncmp(line, prefix, strlen(prefix)) == 0) {
			inside = true;
		} else if (inside && sscanf(line, "AnonHugePages: %lld kB", &kib) == 1) {
			break;
		}
	}
	fclose(smaps);
	return kib < 0 ? -1 : kib * 1024;
}

/* Parses a byte count with an optional K, M or G (binary) suffix; returns 0 when it is not one. */
static size_t parse_bytes(const char *text)
{
	char *end = NULL;
	unsigned long long value;
	unsigned shift = 0;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0 || end == text || text[0] == '-')
		return 0;
	switch (*end) {
	case 'K':
	case 'k':
		shift = 10, end++;
		break;
	case 'M':
	case 'm':
		shift = 20, end++;
		break;
	case 'G':
	case 'g':
		shift = 30, end++;
		break;
	default:
		break;
	}
	/* Half the address space at most, so that the mapping arithmetic cannot overflow either. */
	if (*end != '\0' || value > (SIZE_MAX / 2) >> shift)
		return 0;
	return (size_t)(value << shift);
}

static void usage(void)
{
	fprintf(stderr, "usage: memcpy_bench [--threads N] BYTES   (BYTES may end in K, M or G)\n");
}

/*
 * Measures one destination: maps it with advice, optionally writes every page first, copies src
 * into it and returns the seconds the copy took (-1 on failure). huge_bytes, when not NULL,
 * receives how many destination bytes ended up in transparent huge pages.
 */
static double measure(const unsigned char *src, size_t bytes, int threads, int advice,
                      bool prefault, long long *huge_bytes)
{
	struct region dst = {0};
	double seconds;

	if (region_map(&dst, bytes, advice) < 0)
		return -1;
	if (prefault)
		memset(dst.data, 0, bytes);
	seconds = timed_copy(dst.data, src, bytes, threads);
	if (huge_bytes != NULL)
		*huge_bytes = anon_huge_bytes(dst.data);
	region_unmap(&dst);
	return seconds;
}

static void print_result(const char *key, size_t bytes, double seconds)
{
	printf(",\"seconds%s\":%.6f,\"gbps%s\":%.3f", key, seconds, key,
	       (double)bytes / seconds / 1e9);
}

int main(int argc, char **argv)
{
	struct region src = {0};
	double prefaulted, prefaulted_4k, fresh_4k, thp;
	long long thp_bytes = -1;
	size_t bytes = 0;
	int threads = 1, rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			char *end = NULL;
			long n = strtol(argv[++i], &end, 10);

			if (*end != '\0' || n < 1 || n > MAX_THREADS) {
				usage();
				return 2;
			}
			threads = (int)n;
		} else if (bytes == 0) {
			bytes = parse_bytes(argv[i]);
			if (bytes == 0) {
				usage();
				return 2;
			}
		} else {
			usage();
			return 2;
		}
	}
	if (bytes == 0) {
		usage();
		return 2;
	}

	/* The source: written once, so every source page is present before any clock starts. */
	if (region_map(&src, bytes, MADV_HUGEPAGE) < 0)
		goto done;
	memset(src.data, 0x5a, bytes);

	prefaulted = measure(src.data, bytes, threads, MADV_HUGEPAGE, true, NULL);
	prefaulted_4k = measure(src.data, bytes, threads, MADV_NOHUGEPAGE, true, NULL);
	fresh_4k = measure(src.data, bytes, threads, MADV_NOHUGEPAGE, false, NULL);
	thp = measure(src.data, bytes, threads, MADV_HUGEPAGE, false, &thp_bytes);
	if (prefaulted <= 0 || prefaulted_4k <= 0 || fresh_4k <= 0 || thp <= 0)
		goto done;

	printf("{\"name\":\"memcpy\",\"bytes\":%zu,\"piece_bytes\":%zu,\"threads\":%d", bytes,
	       PIECE_BYTES, threads);
	print_result("", bytes, prefaulted);
	print_result("_prefaulted_4k", bytes, prefaulted_4k);
	print_result("_fresh_4k", bytes, fresh_4k);
	print_result("_thp", bytes, thp);
	printf(",\"thp_bytes\":%lld}\n", thp_bytes);
	rc = 0;
done:
	region_unmap(&src);
	return rc;
}
