/*
 * pcie_bench.c - the limit every GPU figure is measured against: host-to-device copies of
 * a 1 GiB buffer, in 64 MiB copies alternating between two streams, from pinned memory
 * (cuMemHostRegister, the copy engine's peak) and from the same memory unpinned (pageable,
 * what a loader that copies from ordinary memory gets). Through the library's own driver
 * layer (lib/sink_cuda.c), so it runs wherever the library does.
 *
 * Usage: pcie_bench [DEVICE [MIB]]      (default 0 and 1024)
 * Prints one JSON line per row: {"row": "pinned_peak"|"pageable", "gbps": ..., "seconds": ...}
 * (the best of 5 passes; 10^9 bytes per second). Exit 0, or 1 with one line on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "modelstream.h"
#include "sink_cuda.h"

#define PIECE  (64u << 20)
#define PASSES 5

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The best of PASSES copies of `size` bytes at `host` to `dev`; -1 on a failure. */
static double best_seconds(ms__cuda *c, uint64_t dev, const unsigned char *host, size_t size)
{
	double best = -1;

	for (int pass = 0; pass < PASSES; pass++) {
		double t0 = now(), t;

		for (size_t off = 0, i = 0; off < size; off += PIECE, i++)
			if (ms__cuda_copy(c, dev + off, host + off,
			                  size - off < PIECE ? size - off : PIECE,
			                  (unsigned)(i % 2)) < 0)
				return -1;
		if (ms__cuda_record(c, 0, 0) < 0 || ms__cuda_record(c, 1, 1) < 0 ||
		    ms__cuda_done(c, 0, true) < 0 || ms__cuda_done(c, 1, true) < 0)
			return -1;
		t = now() - t0;
		if (best < 0 || t < best)
			best = t;
	}
	return best;
}

int main(int argc, char **argv)
{
	int device = argc > 1 ? atoi(argv[1]) : 0;
	size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 1024) << 20;
	ms__cuda *c = NULL;
	uint64_t dev = 0;
	unsigned char *host;
	double pinned, pageable;

	host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
	            -1, 0);
	if (host == MAP_FAILED) {
		host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (host == MAP_FAILED) {
			perror("pcie_bench: mmap");
			return 1;
		}
		madvise(host, size, MADV_HUGEPAGE);
	}
	memset(host, 0x5a, size);
	if (ms__cuda_open(&c, device, 2, 2) < 0 || ms__cuda_alloc(c, &dev, size) < 0) {
		fprintf(stderr, "pcie_bench: %s\n", ms_error_last()->message);
		return 1;
	}
	pageable = best_seconds(c, dev, host, size);
	if (ms__cuda_register(c, host, size, false) < 0) {
		fprintf(stderr, "pcie_bench: %s: cannot pin %zu bytes: %s\n", ms__cuda_name(c),
		        size, ms_error_last()->message);
		return 1;
	}
	pinned = best_seconds(c, dev, host, size);
	ms__cuda_unregister(c, host);
	if (pinned < 0 || pageable < 0) {
		fprintf(stderr, "pcie_bench: %s\n", ms_error_last()->message);
		return 1;
	}
	printf("{\"row\": \"pinned_peak\", \"device\": \"%s\", \"bytes\": %zu, \"seconds\": %.6f, "
	       "\"gbps\": %.3f}\n",
	       ms__cuda_name(c), size, pinned, (double)size / 1e9 / pinned);
	printf("{\"row\": \"pageable\", \"device\": \"%s\", \"bytes\": %zu, \"seconds\": %.6f, "
	       "\"gbps\": %.3f}\n",
	       ms__cuda_name(c), size, pageable, (double)size / 1e9 / pageable);
	ms__cuda_free(c, dev);
	ms__cuda_close(c);
	munmap(host, size);
	return 0;
}
