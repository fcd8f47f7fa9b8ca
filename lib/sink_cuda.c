/*
 * sink_cuda.c - the only file of the library that knows CUDA exists.
 *
 * The driver API is loaded with dlopen("libcuda.so.1"), which the NVIDIA driver installs
 * wherever it is, so neither the build nor the image needs the CUDA toolkit. The entry
 * points are declared here with the driver's own signatures; where the toolkit's cuda.h is
 * at hand, `make cuda-check` compiles this file against it (MS__CUDA_CHECK) and a static
 * assertion holds every declaration to the header's.
 *
 * The names looked up are the versioned symbols the driver exports (cuMemAlloc_v2, ...):
 * cuda.h maps the plain names onto them with macros, which dlsym does not see.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "sink_cuda.h"

#ifdef MS__CUDA_CHECK
#include <cuda.h>
typedef CUresult cu_result;
typedef CUdevice cu_device;
typedef CUcontext cu_context;
typedef CUstream cu_stream;
typedef CUevent cu_event;
typedef CUdeviceptr cu_ptr;
typedef CUpointer_attribute cu_pointer_attribute;
#else
/* The driver's types, ABI-equal: CUresult and CUpointer_attribute are enums (ints),
 * CUdevice an int, CUdeviceptr an unsigned integer as wide as a pointer, and the handles
 * pointers to structs the driver keeps to itself. */
typedef int cu_result;
typedef int cu_device;
typedef struct cu_context_ *cu_context;
typedef struct cu_stream_ *cu_stream;
typedef struct cu_event_ *cu_event;
typedef uintptr_t cu_ptr;
typedef int cu_pointer_attribute;
#endif

#define CU_SUCCESS_                          0
#define CU_ERROR_OUT_OF_MEMORY_              2
#define CU_ERROR_NO_DEVICE_                  100
#define CU_ERROR_NOT_READY_                  600
#define CU_MEMHOSTREGISTER_PORTABLE_         0x01
#define CU_MEMHOSTREGISTER_READ_ONLY_        0x08
#define CU_STREAM_NON_BLOCKING_              0x1
#define CU_EVENT_DISABLE_TIMING_             0x2
#define CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL_ 9
#define DEFAULT_DRIVER                       "libcuda.so.1"

typedef cu_result (*cu_init_fn)(unsigned int flags);
typedef cu_result (*cu_device_get_count_fn)(int *count);
typedef cu_result (*cu_device_get_fn)(cu_device *device, int ordinal);
typedef cu_result (*cu_device_get_name_fn)(char *name, int len, cu_device dev);
typedef cu_result (*cu_get_error_string_fn)(cu_result error, const char **text);
typedef cu_result (*cu_primary_retain_fn)(cu_context *ctx, cu_device dev);
typedef cu_result (*cu_primary_release_fn)(cu_device dev);
typedef cu_result (*cu_ctx_push_fn)(cu_context ctx);
typedef cu_result (*cu_ctx_pop_fn)(cu_context *ctx);
typedef cu_result (*cu_mem_alloc_fn)(cu_ptr *dptr, size_t bytesize);
typedef cu_result (*cu_mem_free_fn)(cu_ptr dptr);
typedef cu_result (*cu_mem_get_info_fn)(size_t *free, size_t *total);
typedef cu_result (*cu_host_register_fn)(void *p, size_t bytesize, unsigned int flags);
typedef cu_result (*cu_host_unregister_fn)(void *p);
typedef cu_result (*cu_copy_htod_async_fn)(cu_ptr dst, const void *src, size_t bytes,
                                           cu_stream stream);
typedef cu_result (*cu_copy_dtoh_fn)(void *dst, cu_ptr src, size_t bytes);
typedef cu_result (*cu_stream_create_fn)(cu_stream *stream, unsigned int flags);
typedef cu_result (*cu_stream_destroy_fn)(cu_stream stream);
typedef cu_result (*cu_stream_sync_fn)(cu_stream stream);
typedef cu_result (*cu_event_create_fn)(cu_event *event, unsigned int flags);
typedef cu_result (*cu_event_record_fn)(cu_event event, cu_stream stream);
typedef cu_result (*cu_event_query_fn)(cu_event event);
typedef cu_result (*cu_event_sync_fn)(cu_event event);
typedef cu_result (*cu_event_destroy_fn)(cu_event event);
typedef cu_result (*cu_pointer_get_attribute_fn)(void *data, cu_pointer_attribute attribute,
                                                 cu_ptr ptr);

#ifdef MS__CUDA_CHECK
#define SAME_TYPE(fn, type)                                                 \
	_Static_assert(__builtin_types_compatible_p(__typeof__(&fn), type), \
	               #fn " is declared differently in cuda.h")
SAME_TYPE(cuInit, cu_init_fn);
SAME_TYPE(cuDeviceGetCount, cu_device_get_count_fn);
SAME_TYPE(cuDeviceGet, cu_device_get_fn);
SAME_TYPE(cuDeviceGetName, cu_device_get_name_fn);
SAME_TYPE(cuGetErrorString, cu_get_error_string_fn);
SAME_TYPE(cuDevicePrimaryCtxRetain, cu_primary_retain_fn);
SAME_TYPE(cuDevicePrimaryCtxRelease, cu_primary_release_fn);
SAME_TYPE(cuCtxPushCurrent, cu_ctx_push_fn);
SAME_TYPE(cuCtxPopCurrent, cu_ctx_pop_fn);
SAME_TYPE(cuMemAlloc, cu_mem_alloc_fn);
SAME_TYPE(cuMemFree, cu_mem_free_fn);
SAME_TYPE(cuMemGetInfo, cu_mem_get_info_fn);
SAME_TYPE(cuMemHostRegister, cu_host_register_fn);
SAME_TYPE(cuMemHostUnregister, cu_host_unregister_fn);
SAME_TYPE(cuMemcpyHtoDAsync, cu_copy_htod_async_fn);
SAME_TYPE(cuMemcpyDtoH, cu_copy_dtoh_fn);
SAME_TYPE(cuStreamCreate, cu_stream_create_fn);
SAME_TYPE(cuStreamDestroy, cu_stream_destroy_fn);
SAME_TYPE(cuStreamSynchronize, cu_stream_sync_fn);
SAME_TYPE(cuEventCreate, cu_event_create_fn);
SAME_TYPE(cuEventRecord, cu_event_record_fn);
SAME_TYPE(cuEventQuery, cu_event_query_fn);
SAME_TYPE(cuEventSynchronize, cu_event_sync_fn);
SAME_TYPE(cuEventDestroy, cu_event_destroy_fn);
SAME_TYPE(cuPointerGetAttribute, cu_pointer_get_attribute_fn);
_Static_assert(CU_SUCCESS_ == CUDA_SUCCESS && CU_ERROR_NO_DEVICE_ == CUDA_ERROR_NO_DEVICE &&
                   CU_ERROR_OUT_OF_MEMORY_ == CUDA_ERROR_OUT_OF_MEMORY &&
                   CU_ERROR_NOT_READY_ == CUDA_ERROR_NOT_READY,
               "the driver's result codes");
_Static_assert(CU_MEMHOSTREGISTER_PORTABLE_ == CU_MEMHOSTREGISTER_PORTABLE &&
                   CU_MEMHOSTREGISTER_READ_ONLY_ == CU_MEMHOSTREGISTER_READ_ONLY &&
                   CU_STREAM_NON_BLOCKING_ == CU_STREAM_NON_BLOCKING &&
                   CU_EVENT_DISABLE_TIMING_ == CU_EVENT_DISABLE_TIMING &&
                   CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL_ == CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
               "the driver's flags");
_Static_assert(sizeof(cu_ptr) == sizeof(uint64_t), "device addresses are 64 bits");
#endif

/* The loaded driver: written once under `once`, read-only afterwards. */
typedef struct {
	void *library;
	int code;         /* 0, or the MS_E* code every device check returns */
	char reason[256]; /* why the driver cannot be used, for that message */
	int count;        /* devices present */
	cu_init_fn init;
	cu_device_get_count_fn device_get_count;
	cu_device_get_fn device_get;
	cu_device_get_name_fn device_get_name;
	cu_get_error_string_fn get_error_string;
	cu_primary_retain_fn primary_retain;
	cu_primary_release_fn primary_release;
	cu_ctx_push_fn ctx_push;
	cu_ctx_pop_fn ctx_pop;
	cu_mem_alloc_fn mem_alloc;
	cu_mem_free_fn mem_free;
	cu_mem_get_info_fn mem_get_info;
	cu_host_register_fn host_register;
	cu_host_unregister_fn host_unregister;
	cu_copy_htod_async_fn copy_htod_async;
	cu_copy_dtoh_fn copy_dtoh;
	cu_stream_create_fn stream_create;
	cu_stream_destroy_fn stream_destroy;
	cu_stream_sync_fn stream_sync;
	cu_event_create_fn event_create;
	cu_event_record_fn event_record;
	cu_event_query_fn event_query;
	cu_event_sync_fn event_sync;
	cu_event_destroy_fn event_destroy;
	cu_pointer_get_attribute_fn pointer_get_attribute;
} driver;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static driver the_driver;

/* The driver's words for `rc`, or its number. */
static const char *describe(const driver *d, cu_result rc, char *buf, size_t size)
{
	const char *text = NULL;

	if (d->get_error_string != NULL && d->get_error_string(rc, &text) == CU_SUCCESS_ &&
	    text != NULL)
		return text;
	snprintf(buf, size, "CUDA error %d", (int)rc);
	return buf;
}

/* Looks `name` up into the function pointer at `slot`. POSIX makes data and function
 * pointers the same size for dlsym's sake; the bytes are copied, not the type converted. */
static void symbol(driver *d, const char *name, void *slot)
{
	void *p = dlsym(d->library, name);

	memcpy(slot, &p, sizeof(p));
	if (p == NULL && d->code == 0) {
		d->code = MS_ENODEVICE;
		snprintf(d->reason, sizeof(d->reason), "the driver lacks %s (too old?)", name);
	}
}

static void load(void)
{
	driver *d = &the_driver;
	const char *path = getenv("MODELSTREAM_CUDA_DRIVER");
	char buf[32];
	cu_result rc;

	if (path == NULL || path[0] == '\0')
		path = DEFAULT_DRIVER;
	d->library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (d->library == NULL) {
		d->code = MS_ENODEVICE;
		snprintf(d->reason, sizeof(d->reason), "no NVIDIA driver: %s not found", path);
		return;
	}
	_Static_assert(sizeof(void *) == sizeof(cu_init_fn), "dlsym's pointers");
	symbol(d, "cuInit", &d->init);
	symbol(d, "cuDeviceGetCount", &d->device_get_count);
	symbol(d, "cuDeviceGet", &d->device_get);
	symbol(d, "cuDeviceGetName", &d->device_get_name);
	symbol(d, "cuGetErrorString", &d->get_error_string);
	symbol(d, "cuDevicePrimaryCtxRetain", &d->primary_retain);
	symbol(d, "cuDevicePrimaryCtxRelease_v2", &d->primary_release);
	symbol(d, "cuCtxPushCurrent_v2", &d->ctx_push);
	symbol(d, "cuCtxPopCurrent_v2", &d->ctx_pop);
	symbol(d, "cuMemAlloc_v2", &d->mem_alloc);
	symbol(d, "cuMemFree_v2", &d->mem_free);
	symbol(d, "cuMemGetInfo_v2", &d->mem_get_info);
	symbol(d, "cuMemHostRegister_v2", &d->host_register);
	symbol(d, "cuMemHostUnregister", &d->host_unregister);
	symbol(d, "cuMemcpyHtoDAsync_v2", &d->copy_htod_async);
	symbol(d, "cuMemcpyDtoH_v2", &d->copy_dtoh);
	symbol(d, "cuStreamCreate", &d->stream_create);
	symbol(d, "cuStreamDestroy_v2", &d->stream_destroy);
	symbol(d, "cuStreamSynchronize", &d->stream_sync);
	symbol(d, "cuEventCreate", &d->event_create);
	symbol(d, "cuEventRecord", &d->event_record);
	symbol(d, "cuEventQuery", &d->event_query);
	symbol(d, "cuEventSynchronize", &d->event_sync);
	symbol(d, "cuEventDestroy_v2", &d->event_destroy);
	symbol(d, "cuPointerGetAttribute", &d->pointer_get_attribute);
	if (d->code != 0)
		return;
	if ((rc = d->init(0)) != CU_SUCCESS_) {
		d->code = MS_ENODEVICE;
		if (rc == CU_ERROR_NO_DEVICE_)
			snprintf(d->reason, sizeof(d->reason), "no such device, 0 present");
		else
			snprintf(d->reason, sizeof(d->reason),
			         "the NVIDIA driver did not start: %s",
			         describe(d, rc, buf, sizeof(buf)));
		return;
	}
	if ((rc = d->device_get_count(&d->count)) != CU_SUCCESS_) {
		d->code = MS_ENODEVICE;
		snprintf(d->reason, sizeof(d->reason), "cannot count the devices: %s",
		         describe(d, rc, buf, sizeof(buf)));
	}
}

int ms_device_parse(int *out, const char *text)
{
	char *end = NULL;
	long n;

	if (text == NULL)
		return ms__error_set(MS_EINVAL, "a device name is NULL");
	if (strcmp(text, "cpu") == 0) {
		*out = -1;
		return 0;
	}
	if (strcmp(text, "cuda") == 0) {
		*out = 0;
		return 0;
	}
	if (strncmp(text, "cuda:", 5) == 0 && text[5] >= '0' && text[5] <= '9') {
		n = strtol(text + 5, &end, 10);
		if (*end == '\0' && n <= 1023) {
			*out = (int)n;
			return 0;
		}
	}
	return ms__error_set(MS_EINVAL, "'%.40s' is not a device (cpu, cuda or cuda:N)", text);
}

int ms__cuda_device_check(int index)
{
	const driver *d;

	pthread_once(&once, load);
	d = &the_driver;
	if (d->code != 0)
		return ms__error_set(d->code, "cuda:%d: %s", index, d->reason);
	if (index < 0 || index >= d->count)
		return ms__error_set(MS_ENODEVICE, "cuda:%d: no such device, %d present", index,
		                     d->count);
	return 0;
}

int ms__cuda_device_count(void)
{
	pthread_once(&once, load);
	return the_driver.code == 0 ? the_driver.count : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Sessions                                                                                   */
/* ---------------------------------------------------------------------------------------- */

struct ms__cuda {
	const driver *d;
	int index;
	cu_device dev;
	cu_context ctx; /* the device's primary context, retained */
	char name[160];
	cu_stream *streams;
	unsigned stream_count;
	cu_event *events;
	unsigned event_count;
};

/* The loaded driver, or NULL with MS_ENODEVICE set for device `index`. */
static const driver *loaded(int index)
{
	return ms__cuda_device_check(index) == 0 ? &the_driver : NULL;
}

/* Makes `ctx` current on this thread for one call; pop() restores what was there. */
static int push(const driver *d, cu_context ctx, const char *name)
{
	char buf[32];
	cu_result rc = d->ctx_push(ctx);

	if (rc != CU_SUCCESS_)
		return ms__error_set(MS_EIO, "%s: cannot make its context current: %s", name,
		                     describe(d, rc, buf, sizeof(buf)));
	return 0;
}

static void pop(const driver *d)
{
	cu_context ignored;

	d->ctx_pop(&ignored);
}

/* MS_EIO "<name>: <what>: <the driver's words>" for a failed call. */
static int failed(const ms__cuda *c, cu_result rc, const char *what)
{
	char buf[32];

	return ms__error_set(rc == CU_ERROR_OUT_OF_MEMORY_ ? MS_ENOMEM : MS_EIO, "%s: %s: %s",
	                     c->name, what, describe(c->d, rc, buf, sizeof(buf)));
}

int ms__cuda_copy_back(void *dst, int device, uint64_t src, uint64_t size)
{
	const driver *d = loaded(device);
	cu_context ctx;
	char name[32], buf[32];
	cu_result rc;
	int err;

	if (d == NULL)
		return MS_ENODEVICE;
	snprintf(name, sizeof(name), "cuda:%d", device);
	if ((rc = d->primary_retain(&ctx, (cu_device)device)) != CU_SUCCESS_)
		return ms__error_set(MS_EIO, "%s: cannot open its context: %s", name,
		                     describe(d, rc, buf, sizeof(buf)));
	if ((err = push(d, ctx, name)) == 0) {
		rc = d->copy_dtoh(dst, (cu_ptr)src, (size_t)size);
		pop(d);
		if (rc != CU_SUCCESS_)
			err = ms__error_set(MS_EIO, "%s: copying %llu bytes back: %s", name,
			                    (unsigned long long)size,
			                    describe(d, rc, buf, sizeof(buf)));
	}
	d->primary_release((cu_device)device);
	return err;
}

int ms__cuda_open(ms__cuda **out, int index, unsigned streams, unsigned events)
{
	const driver *d = loaded(index);
	ms__cuda *c;
	char model[128] = "";
	cu_result rc;
	int err = 0;

	*out = NULL;
	if (d == NULL)
		return MS_ENODEVICE;
	if ((c = ms__calloc(1, sizeof(*c))) == NULL)
		return ms__error_set(MS_ENOMEM, "cuda:%d: out of memory", index);
	c->d = d;
	c->index = index;
	snprintf(c->name, sizeof(c->name), "cuda:%d", index);
	c->streams = ms__calloc(streams > 0 ? streams : 1, sizeof(*c->streams));
	c->events = ms__calloc(events > 0 ? events : 1, sizeof(*c->events));
	if (c->streams == NULL || c->events == NULL) {
		ms__free(c->streams);
		ms__free(c->events);
		ms__free(c);
		return ms__error_set(MS_ENOMEM, "cuda:%d: out of memory", index);
	}
	if ((rc = d->device_get(&c->dev, index)) != CU_SUCCESS_ ||
	    (rc = d->primary_retain(&c->ctx, c->dev)) != CU_SUCCESS_) {
		err = failed(c, rc, "cannot open its context");
		c->ctx = NULL;
		goto done;
	}
	if (d->device_get_name(model, (int)sizeof(model), c->dev) == CU_SUCCESS_ && model[0])
		snprintf(c->name, sizeof(c->name), "cuda:%d (%s)", index, model);
	if ((err = push(d, c->ctx, c->name)) < 0)
		goto done;
	for (; c->stream_count < (streams > 0 ? streams : 1); c->stream_count++)
		if ((rc = d->stream_create(&c->streams[c->stream_count],
		                           CU_STREAM_NON_BLOCKING_)) != CU_SUCCESS_) {
			err = failed(c, rc, "cannot create a copy stream");
			break;
		}
	for (; err == 0 && c->event_count < (events > 0 ? events : 1); c->event_count++)
		if ((rc = d->event_create(&c->events[c->event_count], CU_EVENT_DISABLE_TIMING_)) !=
		    CU_SUCCESS_) {
			err = failed(c, rc, "cannot create an event");
			break;
		}
	pop(d);
done:
	if (err < 0) {
		ms__cuda_close(c);
		return err;
	}
	*out = c;
	return 0;
}

const char *ms__cuda_name(const ms__cuda *c)
{
	return c->name;
}

int ms__cuda_memory(const ms__cuda *c, uint64_t *out_free, uint64_t *out_total)
{
	size_t free_bytes = 0, total = 0;
	cu_result rc;
	int err;

	if ((err = push(c->d, c->ctx, c->name)) < 0)
		return err;
	rc = c->d->mem_get_info(&free_bytes, &total);
	pop(c->d);
	if (rc != CU_SUCCESS_)
		return failed(c, rc, "cannot read its free memory");
	*out_free = free_bytes;
	*out_total = total;
	return 0;
}

int ms__cuda_alloc(ms__cuda *c, uint64_t *out, uint64_t size)
{
	cu_ptr p = 0;
	cu_result rc;
	int err;

	if ((err = push(c->d, c->ctx, c->name)) < 0)
		return err;
	rc = c->d->mem_alloc(&p, (size_t)size);
	pop(c->d);
	if (rc == CU_ERROR_OUT_OF_MEMORY_)
		return ms__error_set(MS_ELIMIT, "%s: out of device memory allocating %llu bytes",
		                     c->name, (unsigned long long)size);
	if (rc != CU_SUCCESS_)
		return failed(c, rc, "cannot allocate device memory");
	*out = (uint64_t)p;
	return 0;
}

void ms__cuda_free(ms__cuda *c, uint64_t ptr)
{
	if (ptr == 0 || push(c->d, c->ctx, c->name) < 0)
		return;
	c->d->mem_free((cu_ptr)ptr);
	pop(c->d);
}

int ms__cuda_pointer_device(const ms__cuda *c, int *out, uint64_t ptr)
{
	int ordinal = -1;

	*out = -1;
	if (push(c->d, c->ctx, c->name) < 0)
		return 0;
	if (c->d->pointer_get_attribute(&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL_,
	                                (cu_ptr)ptr) == CU_SUCCESS_)
		*out = ordinal;
	pop(c->d);
	return 0;
}

int ms__cuda_register(ms__cuda *c, const void *p, size_t size, bool read_only)
{
	unsigned flags =
	    CU_MEMHOSTREGISTER_PORTABLE_ | (read_only ? CU_MEMHOSTREGISTER_READ_ONLY_ : 0);
	char buf[32];
	cu_result rc;
	int err;

	if ((err = push(c->d, c->ctx, c->name)) < 0)
		return err;
	/* The driver takes a non-const pointer; with READ_ONLY it never writes through it. */
	rc = c->d->host_register((void *)(uintptr_t)p, size, flags);
	pop(c->d);
	if (rc != CU_SUCCESS_)
		return ms__error_set(MS_EUNSUPPORTED, "%s", describe(c->d, rc, buf, sizeof(buf)));
	return 0;
}

void ms__cuda_unregister(ms__cuda *c, const void *p)
{
	if (push(c->d, c->ctx, c->name) < 0)
		return;
	c->d->host_unregister((void *)(uintptr_t)p);
	pop(c->d);
}

int ms__cuda_copy(ms__cuda *c, uint64_t dst, const void *src, uint64_t size, unsigned stream)
{
	cu_result rc;
	int err;

	if ((err = push(c->d, c->ctx, c->name)) < 0)
		return err;
	rc = c->d->copy_htod_async((cu_ptr)dst, src, (size_t)size,
	                           c->streams[stream % c->stream_count]);
	pop(c->d);
	return rc == CU_SUCCESS_ ? 0 : failed(c, rc, "cannot queue a copy to the device");
}

int ms__cuda_record(ms__cuda *c, unsigned event, unsigned stream)
{
	cu_result rc;
	int err;

	if ((err = push(c->d, c->ctx, c->name)) < 0)
		return err;
	rc = c->d->event_record(c->events[event % c->event_count],
	                        c->streams[stream % c->stream_count]);
	pop(c->d);
	return rc == CU_SUCCESS_ ? 0 : failed(c, rc, "cannot record an event");
}

int ms__cuda_done(ms__cuda *c, unsigned event, bool wait)
{
	cu_event e = c->events[event % c->event_count];
	cu_result rc;
	int err;

	if ((err = push(c->d, c->ctx, c->name)) < 0)
		return err;
	rc = wait ? c->d->event_sync(e) : c->d->event_query(e);
	pop(c->d);
	if (rc == CU_ERROR_NOT_READY_)
		return 1;
	return rc == CU_SUCCESS_ ? 0 : failed(c, rc, "a copy to the device failed");
}

void ms__cuda_sync(ms__cuda *c)
{
	if (push(c->d, c->ctx, c->name) < 0)
		return;
	for (unsigned i = 0; i < c->stream_count; i++)
		c->d->stream_sync(c->streams[i]);
	pop(c->d);
}

void ms__cuda_close(ms__cuda *c)
{
	if (c == NULL)
		return;
	if (c->ctx != NULL && push(c->d, c->ctx, c->name) == 0) {
		for (unsigned i = 0; i < c->stream_count; i++)
			c->d->stream_sync(c->streams[i]);
		for (unsigned i = 0; i < c->event_count; i++)
			c->d->event_destroy(c->events[i]);
		for (unsigned i = 0; i < c->stream_count; i++)
			c->d->stream_destroy(c->streams[i]);
		pop(c->d);
	}
	if (c->ctx != NULL)
		c->d->primary_release(c->dev);
	ms__free(c->streams);
	ms__free(c->events);
	ms__free(c);
}
