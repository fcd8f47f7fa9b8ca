/*
 * stress_engine.c - a randomized stress run of the engine, built for ThreadSanitizer.
 *
 * Criterion's runner cannot start under ThreadSanitizer (its shared arena needs an
 * address range that TSan reserves), so the engine's concurrency gets this plain
 * program instead: many rounds with random concurrency, chunk size, memory limit and
 * hold/release patterns, every byte checked against stgen, plus cancel and free racing
 * with the workers from other threads. It prints one line per round and a closing
 * "N passed, M failed"; it exits 1 on any failure.
 *
 * Usage: stress_engine [ROUNDS] [SEED]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelstream.h"
#include "support/stgen.h"

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
			failures++;                                          \
			return -1;                                           \
		}                                                            \
	} while (0)

typedef struct {
	char path[512];
	stgen_spec spec;
	stgen_tensor *tensors;
	size_t count;
} model;

/* A small xorshift generator: the rounds are reproducible from the seed. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

static int check_bytes(const model *m, size_t index, const ms_tensor *t)
{
	const stgen_tensor *want = &m->tensors[index];
	unsigned char *expected;
	int same;

	CHECK(strcmp(t->name, want->name) == 0, "tensor %zu is %s, expected %s", index, t->name,
	      want->name);
	CHECK(t->size == want->end - want->begin, "%s: size", t->name);
	if (t->size == 0)
		return 0;
	expected = malloc(t->size);
	CHECK(expected != NULL, "malloc");
	stgen_fill(expected, t->size, m->spec.seed, want->begin);
	same = memcmp(expected, t->data, t->size) == 0;
	free(expected);
	CHECK(same, "%s: bytes differ", t->name);
	return 0;
}

typedef struct {
	ms_streamer *s;
	unsigned delay_us;
} cancel_job;

static void *cancel_after(void *arg)
{
	cancel_job *job = arg;
	ms_stats st = MS_STATS_INIT;

	usleep(job->delay_us);
	ms_streamer_stats(&st, job->s); /* stats are also allowed from any thread */
	ms_streamer_cancel(job->s);
	return NULL;
}

/* One round: stream the model, holding up to `window` tensors, maybe canceling. */
static int round_run(const model *m, uint64_t *rng)
{
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	const ms_tensor *held[16];
	size_t held_index[16];
	size_t window = 1 + next_random(rng) % 4, n = 0, delivered = 0;
	int cancel = next_random(rng) % 4 == 0;
	cancel_job job;
	pthread_t canceler;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	int rc;

	opts.concurrency = 1 + (unsigned)(next_random(rng) % 12);
	opts.chunk_size = (size_t)(64 * 1024) << (next_random(rng) % 6);
	switch (next_random(rng) % 3) {
	case 0:
		opts.memory_limit = MS_MEMORY_UNLIMITED;
		break;
	case 1:
		opts.memory_limit = MS_MEMORY_MINIMUM;
		window = 1; /* the minimum ring holds only one large tensor */
		break;
	default:
		/* Room for the window of the largest tensors, plus some. */
		opts.memory_limit =
		    (int64_t)((window + 3) * m->spec.large_bytes + (next_random(rng) % 4) * 65536);
		break;
	}
	/* A quarter of the rounds deliver zero-copy from the file's mapping. */
	opts.deliver = next_random(rng) % 4 == 0 ? MS_DELIVER_MAPPED : MS_DELIVER_COPY;
	printf("round: concurrency %u chunk %zu limit %lld window %zu%s%s\n", opts.concurrency,
	       opts.chunk_size, (long long)opts.memory_limit, window, cancel ? " cancel" : "",
	       opts.deliver == MS_DELIVER_MAPPED ? " mapped" : "");
	CHECK(ms_streamer_new(&s, &opts) == 0, "new: %s", ms_error_last()->message);
	CHECK(ms_streamer_add(s, m->path) == 0, "add: %s", ms_error_last()->message);
	if (cancel) {
		job.s = s;
		job.delay_us = (unsigned)(next_random(rng) % 3000);
		CHECK(pthread_create(&canceler, NULL, cancel_after, &job) == 0, "pthread_create");
	}
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		held[n] = t;
		held_index[n++] = delivered++;
		if (n == window) {
			/* Release in a shuffled order, checking each tensor first. */
			while (n > 0) {
				size_t pick = (size_t)(next_random(rng) % n);

				if (check_bytes(m, held_index[pick], held[pick]) != 0)
					break;
				CHECK(ms_tensor_release(s, held[pick]) == 0, "release");
				held[pick] = held[n - 1];
				held_index[pick] = held_index[n - 1];
				n--;
			}
		}
	}
	if (cancel)
		pthread_join(canceler, NULL);
	CHECK(rc == MS_ITER_END || (cancel && rc == MS_ECANCELED), "next: %d %s", rc,
	      ms_error_last()->message);
	if (rc == MS_ITER_END)
		CHECK(delivered == m->count, "delivered %zu of %zu", delivered, m->count);
	/* Free with tensors still held and, after a cancel, workers maybe still running. */
	ms_streamer_free(s);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 40;
	uint64_t rng = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ULL;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	model m = {.spec = STGEN_SPEC_INIT};
	int passed = 0, failed = 0;

	snprintf(m.path, sizeof(m.path), "%s/ms-stress-%d.safetensors", tmp, (int)getpid());
	m.spec.seed = 5;
	m.spec.small_count = 600;
	m.spec.small_max_bytes = 32 * 1024;
	m.spec.large_count = 4;
	m.spec.large_bytes = 1u << 20;
	if (stgen_write(m.path, &m.spec) != 0 || stgen_plan(&m.tensors, &m.count, &m.spec) != 0) {
		perror(m.path);
		return 1;
	}
	for (int i = 0; i < rounds; i++) {
		int before = failures;

		round_run(&m, &rng);
		if (failures == before)
			passed++;
		else
			failed++;
	}
	unlink(m.path);
	free(m.tensors);
	printf("stress_engine: %d passed, %d failed\n", passed, failed);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
