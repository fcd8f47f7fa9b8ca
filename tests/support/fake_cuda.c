/*
 * fake_cuda.c - a stand-in for libcuda.so.1 on machines without a GPU, loaded by the
 * library through MODELSTREAM_CUDA_DRIVER, so that the device paths run in CI.
 *
 * It keeps the driver's rules where the library could break them:
 *  - device memory is host memory handed out per device; a copy into memory of another
 *    device than the current context's, or on another device's stream, fails;
 *  - copies are asynchronous: each stream is a thread that runs its queue in order, after
 *    FAKE_CUDA_COPY_DELAY_US microseconds per copy, so staging recycled before its copy
 *    has run shows up as wrong bytes on the "device";
 *  - a copy from memory that is not registered is pageable: it waits for the stream and
 *    runs before the call returns, as the driver stages it;
 *  - registrations may not overlap, and read-only memory needs the READ_ONLY flag.
 *
 * Settings: FAKE_CUDA_DEVICES (default 1), FAKE_CUDA_INIT_ERROR (cuInit's result),
 * FAKE_CUDA_MEMORY (bytes per device, default 1 GiB), FAKE_CUDA_REGISTER_ERROR (what
 * cuMemHostRegister returns), FAKE_CUDA_REFUSE_READ_ONLY (what it returns for read-only
 * registrations alone), FAKE_CUDA_COPY_DELAY_US. fake_cuda_counters() reports what
 * happened, for the tests.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_cuda.h"

#define MAX_DEVICES 8
#define MAX_ITEMS   4096
#define STACK_DEPTH 16

enum {
	OK = 0,
	INVALID_VALUE = 1,
	OUT_OF_MEMORY = 2,
	INVALID_CONTEXT = 201,
	INVALID_HANDLE = 400,
	NOT_READY = 600,
	ALREADY_REGISTERED = 712,
	NOT_REGISTERED = 713
};

typedef struct {
	int device;
	int refs;
} context;

typedef struct {
	uintptr_t start;
	size_t size;
	int device;    /* allocations */
	int read_only; /* registrations */
} range;

typedef struct fake_event {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned long recorded, reached;
} fake_event;

typedef struct op {
	struct op *next;
	void *dst;
	const void *src;
	size_t n;
	fake_event *event;
	unsigned long generation;
} op;

typedef struct fake_stream {
	int device;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	op *head, *tail;
	int busy, quit;
} fake_stream;

int cuInit(unsigned int flags);
int cuDeviceGetCount(int *count);
int cuDeviceGet(int *device, int ordinal);
int cuDeviceGetName(char *name, int len, int dev);
int cuGetErrorString(int error, const char **text);
int cuDevicePrimaryCtxRetain(context **ctx, int dev);
int cuDevicePrimaryCtxRelease_v2(int dev);
int cuCtxPushCurrent_v2(context *ctx);
int cuCtxPopCurrent_v2(context **ctx);
int cuMemAlloc_v2(uintptr_t *ptr, size_t size);
int cuMemFree_v2(uintptr_t ptr);
int cuMemGetInfo_v2(size_t *free_bytes, size_t *total);
int cuMemHostRegister_v2(void *p, size_t size, unsigned int flags);
int cuMemHostUnregister(void *p);
int cuMemcpyHtoDAsync_v2(uintptr_t dst, const void *src, size_t n, fake_stream *s);
int cuMemcpyDtoH_v2(void *dst, uintptr_t src, size_t n);
int cuStreamCreate(fake_stream **out, unsigned int flags);
int cuStreamDestroy_v2(fake_stream *s);
int cuStreamSynchronize(fake_stream *s);
int cuEventCreate(fake_event **out, unsigned int flags);
int cuEventRecord(fake_event *e, fake_stream *s);
int cuEventQuery(fake_event *e);
int cuEventSynchronize(fake_event *e);
int cuEventDestroy_v2(fake_event *e);
int cuPointerGetAttribute(void *data, int attribute, uintptr_t ptr);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static context contexts[MAX_DEVICES];
static range allocations[MAX_ITEMS], registrations[MAX_ITEMS];
static size_t allocation_count, registration_count;
static size_t used[MAX_DEVICES];
static fake_cuda_counters counters;
static int busy_streams;
static __thread context *stack[STACK_DEPTH];
static __thread int depth;

static long setting(const char *name, long fallback)
{
	const char *e = getenv(name);

	return e != NULL && e[0] != '\0' ? strtol(e, NULL, 10) : fallback;
}

static int devices(void)
{
	return (int)setting("FAKE_CUDA_DEVICES", 1);
}

static context *current(void)
{
	return depth > 0 ? stack[depth - 1] : NULL;
}

void fake_cuda_get_counters(fake_cuda_counters *out)
{
	pthread_mutex_lock(&lock);
	*out = counters;
	out->live_allocations = allocation_count;
	out->live_registrations = registration_count;
	for (int i = 0; i < MAX_DEVICES; i++)
		out->retained_contexts += (size_t)contexts[i].refs;
	pthread_mutex_unlock(&lock);
}

int cuInit(unsigned int flags)
{
	(void)flags;
	return (int)setting("FAKE_CUDA_INIT_ERROR", 0);
}

int cuDeviceGetCount(int *count)
{
	*count = devices();
	return OK;
}

int cuDeviceGet(int *device, int ordinal)
{
	if (ordinal < 0 || ordinal >= devices())
		return 101; /* CUDA_ERROR_INVALID_DEVICE */
	*device = ordinal;
	return OK;
}

int cuDeviceGetName(char *name, int len, int dev)
{
	snprintf(name, (size_t)len, "Fake GPU %d", dev);
	return OK;
}

int cuGetErrorString(int error, const char **text)
{
	switch (error) {
	case 999:
		*text = "unknown error";
		break;
	case 3:
		*text = "initialization error";
		break;
	case 801:
		*text = "operation not supported";
		break;
	case INVALID_VALUE:
		*text = "invalid argument";
		break;
	case OUT_OF_MEMORY:
		*text = "out of memory";
		break;
	case ALREADY_REGISTERED:
		*text = "part or all of the requested memory range is already mapped";
		break;
	default:
		*text = NULL;
		break;
	}
	return *text != NULL ? OK : INVALID_VALUE;
}

int cuDevicePrimaryCtxRetain(context **ctx, int dev)
{
	if (dev < 0 || dev >= devices() || dev >= MAX_DEVICES)
		return 101;
	pthread_mutex_lock(&lock);
	contexts[dev].device = dev;
	contexts[dev].refs++;
	pthread_mutex_unlock(&lock);
	*ctx = &contexts[dev];
	return OK;
}

int cuDevicePrimaryCtxRelease_v2(int dev)
{
	int rc = OK;

	pthread_mutex_lock(&lock);
	if (dev < 0 || dev >= MAX_DEVICES || contexts[dev].refs == 0)
		rc = INVALID_CONTEXT;
	else
		contexts[dev].refs--;
	pthread_mutex_unlock(&lock);
	return rc;
}

int cuCtxPushCurrent_v2(context *ctx)
{
	if (ctx == NULL || ctx->refs == 0 || depth == STACK_DEPTH)
		return INVALID_CONTEXT;
	stack[depth++] = ctx;
	return OK;
}

int cuCtxPopCurrent_v2(context **ctx)
{
	if (depth == 0)
		return INVALID_CONTEXT;
	*ctx = stack[--depth];
	return OK;
}

/* The allocation holding [p, p + n), or NULL. Locked. */
static range *allocation_of(uintptr_t p, size_t n)
{
	for (size_t i = 0; i < allocation_count; i++)
		if (p >= allocations[i].start &&
		    p + n <= allocations[i].start + allocations[i].size)
			return &allocations[i];
	return NULL;
}

int cuMemAlloc_v2(uintptr_t *ptr, size_t size)
{
	context *c = current();
	void *p = NULL;
	int rc = OK;

	if (c == NULL)
		return INVALID_CONTEXT;
	pthread_mutex_lock(&lock);
	if (size == 0)
		rc = INVALID_VALUE;
	else if (used[c->device] + size > (size_t)setting("FAKE_CUDA_MEMORY", 1l << 30) ||
	         allocation_count == MAX_ITEMS || posix_memalign(&p, 256, size) != 0)
		rc = OUT_OF_MEMORY;
	if (rc == OK) {
		memset(p, 0xA5, size); /* not zeroes: bytes never copied must not pass */
		allocations[allocation_count++] =
		    (range){.start = (uintptr_t)p, .size = size, .device = c->device};
		used[c->device] += size;
		*ptr = (uintptr_t)p;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

int cuMemFree_v2(uintptr_t ptr)
{
	int rc = INVALID_VALUE;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < allocation_count; i++)
		if (allocations[i].start == ptr) {
			used[allocations[i].device] -= allocations[i].size;
			free((void *)ptr);
			allocations[i] = allocations[--allocation_count];
			rc = OK;
			break;
		}
	pthread_mutex_unlock(&lock);
	return rc;
}

int cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
	context *c = current();

	if (c == NULL)
		return INVALID_CONTEXT;
	pthread_mutex_lock(&lock);
	*total = (size_t)setting("FAKE_CUDA_MEMORY", 1l << 30);
	*free_bytes = *total - used[c->device];
	pthread_mutex_unlock(&lock);
	return OK;
}

/* True if every page of [p, p + n) is mapped writable, by /proc/self/maps. */
static int writable(uintptr_t p, size_t n)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	uintptr_t covered = p;

	if (f == NULL)
		return 1;
	while (covered < p + n && fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
			continue;
		if (covered >= lo && covered < hi) {
			if (perms[1] != 'w')
				break;
			covered = hi;
		}
	}
	fclose(f);
	return covered >= p + n;
}

int cuMemHostRegister_v2(void *p, size_t size, unsigned int flags)
{
	uintptr_t start = (uintptr_t)p;
	int rc = (int)setting("FAKE_CUDA_REGISTER_ERROR", 0);

	if (current() == NULL)
		return INVALID_CONTEXT;
	if (rc == OK && (flags & 0x08))
		rc = (int)setting("FAKE_CUDA_REFUSE_READ_ONLY", 0);
	if (rc != OK)
		return rc;
	if (size == 0 || start % 4096 != 0)
		return INVALID_VALUE;
	if (!(flags & 0x08) && !writable(start, size))
		return INVALID_VALUE; /* the driver needs READ_ONLY for read-only memory */
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < registration_count && rc == OK; i++)
		if (start < registrations[i].start + registrations[i].size &&
		    registrations[i].start < start + size)
			rc = ALREADY_REGISTERED;
	if (rc == OK && registration_count == MAX_ITEMS)
		rc = OUT_OF_MEMORY;
	if (rc == OK) {
		registrations[registration_count++] =
		    (range){.start = start, .size = size, .read_only = (flags & 0x08) != 0};
		counters.registrations++;
		counters.read_only_registrations += (flags & 0x08) != 0;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

int cuMemHostUnregister(void *p)
{
	int rc = NOT_REGISTERED;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < registration_count; i++)
		if (registrations[i].start == (uintptr_t)p) {
			registrations[i] = registrations[--registration_count];
			rc = OK;
			break;
		}
	pthread_mutex_unlock(&lock);
	return rc;
}

static int registered(const void *p, size_t n)
{
	int found = 0;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < registration_count && !found; i++)
		found = (uintptr_t)p >= registrations[i].start &&
		        (uintptr_t)p + n <= registrations[i].start + registrations[i].size;
	pthread_mutex_unlock(&lock);
	return found;
}

static void *stream_main(void *arg)
{
	fake_stream *s = arg;
	long delay = setting("FAKE_CUDA_COPY_DELAY_US", 0);

	pthread_mutex_lock(&s->lock);
	for (;;) {
		op *o;

		while (s->head == NULL && !s->quit)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->head == NULL)
			break;
		o = s->head;
		s->busy = 1;
		pthread_mutex_unlock(&s->lock);
		if (o->event != NULL) {
			pthread_mutex_lock(&o->event->lock);
			if (o->generation > o->event->reached)
				o->event->reached = o->generation;
			pthread_cond_broadcast(&o->event->cond);
			pthread_mutex_unlock(&o->event->lock);
		} else {
			pthread_mutex_lock(&lock);
			if (++busy_streams > (int)counters.most_streams_busy)
				counters.most_streams_busy = (size_t)busy_streams;
			pthread_mutex_unlock(&lock);
			if (delay > 0)
				usleep((useconds_t)delay);
			memcpy(o->dst, o->src, o->n);
			pthread_mutex_lock(&lock);
			busy_streams--;
			pthread_mutex_unlock(&lock);
		}
		pthread_mutex_lock(&s->lock);
		s->head = o->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->busy = 0;
		free(o);
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void enqueue(fake_stream *s, op *o)
{
	pthread_mutex_lock(&s->lock);
	if (s->tail != NULL)
		s->tail->next = o;
	else
		s->head = o;
	s->tail = o;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int cuStreamSynchronize(fake_stream *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->head != NULL || s->busy)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return OK;
}

int cuMemcpyHtoDAsync_v2(uintptr_t dst, const void *src, size_t n, fake_stream *s)
{
	context *c = current();
	range *a;
	op *o;

	if (c == NULL)
		return INVALID_CONTEXT;
	if (s == NULL || s->device != c->device)
		return INVALID_HANDLE;
	pthread_mutex_lock(&lock);
	a = allocation_of(dst, n);
	if (a != NULL && a->device != c->device)
		a = NULL;
	pthread_mutex_unlock(&lock);
	if (a == NULL || src == NULL)
		return INVALID_VALUE;
	if (!registered(src, n)) {
		/* Pageable: staged before the call returns, in stream order. */
		cuStreamSynchronize(s);
		memcpy((void *)dst, src, n);
		pthread_mutex_lock(&lock);
		counters.pageable_copies++;
		counters.bytes += n;
		pthread_mutex_unlock(&lock);
		return OK;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL)
		return OUT_OF_MEMORY;
	o->dst = (void *)dst;
	o->src = src;
	o->n = n;
	pthread_mutex_lock(&lock);
	counters.pinned_copies++;
	counters.bytes += n;
	pthread_mutex_unlock(&lock);
	enqueue(s, o);
	return OK;
}

int cuMemcpyDtoH_v2(void *dst, uintptr_t src, size_t n)
{
	context *c = current();
	range *a;

	if (c == NULL)
		return INVALID_CONTEXT;
	pthread_mutex_lock(&lock);
	a = allocation_of(src, n);
	if (a != NULL && a->device != c->device)
		a = NULL;
	pthread_mutex_unlock(&lock);
	if (a == NULL)
		return INVALID_VALUE;
	memcpy(dst, (const void *)src, n);
	return OK;
}

int cuStreamCreate(fake_stream **out, unsigned int flags)
{
	context *c = current();
	fake_stream *s;

	(void)flags;
	if (c == NULL)
		return INVALID_CONTEXT;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return OUT_OF_MEMORY;
	s->device = c->device;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (pthread_create(&s->thread, NULL, stream_main, s) != 0) {
		free(s);
		return OUT_OF_MEMORY;
	}
	pthread_mutex_lock(&lock);
	counters.live_streams++;
	pthread_mutex_unlock(&lock);
	*out = s;
	return OK;
}

int cuStreamDestroy_v2(fake_stream *s)
{
	cuStreamSynchronize(s);
	pthread_mutex_lock(&s->lock);
	s->quit = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
	pthread_mutex_lock(&lock);
	counters.live_streams--;
	pthread_mutex_unlock(&lock);
	return OK;
}

int cuEventCreate(fake_event **out, unsigned int flags)
{
	fake_event *e;

	(void)flags;
	if (current() == NULL)
		return INVALID_CONTEXT;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return OUT_OF_MEMORY;
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	pthread_mutex_lock(&lock);
	counters.live_events++;
	pthread_mutex_unlock(&lock);
	*out = e;
	return OK;
}

int cuEventRecord(fake_event *e, fake_stream *s)
{
	context *c = current();
	op *o;

	if (c == NULL)
		return INVALID_CONTEXT;
	if (s == NULL || s->device != c->device)
		return INVALID_HANDLE;
	if ((o = calloc(1, sizeof(*o))) == NULL)
		return OUT_OF_MEMORY;
	pthread_mutex_lock(&e->lock);
	o->generation = ++e->recorded;
	pthread_mutex_unlock(&e->lock);
	o->event = e;
	enqueue(s, o);
	return OK;
}

int cuEventQuery(fake_event *e)
{
	int rc;

	pthread_mutex_lock(&e->lock);
	rc = e->reached >= e->recorded ? OK : NOT_READY;
	pthread_mutex_unlock(&e->lock);
	return rc;
}

int cuEventSynchronize(fake_event *e)
{
	pthread_mutex_lock(&e->lock);
	while (e->reached < e->recorded)
		pthread_cond_wait(&e->cond, &e->lock);
	pthread_mutex_unlock(&e->lock);
	return OK;
}

int cuEventDestroy_v2(fake_event *e)
{
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	free(e);
	pthread_mutex_lock(&lock);
	counters.live_events--;
	pthread_mutex_unlock(&lock);
	return OK;
}

int cuPointerGetAttribute(void *data, int attribute, uintptr_t ptr)
{
	range *a;
	int rc = INVALID_VALUE;

	if (attribute != 9) /* CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL */
		return INVALID_VALUE;
	pthread_mutex_lock(&lock);
	if ((a = allocation_of(ptr, 1)) != NULL) {
		*(int *)data = a->device;
		rc = OK;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}
