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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sink_cuda.h"

#ifdef MS__CUDA_CHECK
#include <cuda.h>
typedef CUresult cu_result;
typedef CUdevice cu_device;
#else
/* The driver's types, ABI-equal: CUresult is an enum (an int), CUdevice an int. */
typedef int cu_result;
typedef int cu_device;
#endif

#define CU_SUCCESS_         0
#define CU_ERROR_NO_DEVICE_ 100
#define DEFAULT_DRIVER      "libcuda.so.1"

typedef cu_result (*cu_init_fn)(unsigned int flags);
typedef cu_result (*cu_device_get_count_fn)(int *count);
typedef cu_result (*cu_device_get_fn)(cu_device *device, int ordinal);
typedef cu_result (*cu_device_get_name_fn)(char *name, int len, cu_device dev);
typedef cu_result (*cu_get_error_string_fn)(cu_result error, const char **text);

#ifdef MS__CUDA_CHECK
#define SAME_TYPE(fn, type)                                                 \
	_Static_assert(__builtin_types_compatible_p(__typeof__(&fn), type), \
	               #fn " is declared differently in cuda.h")
SAME_TYPE(cuInit, cu_init_fn);
SAME_TYPE(cuDeviceGetCount, cu_device_get_count_fn);
SAME_TYPE(cuDeviceGet, cu_device_get_fn);
SAME_TYPE(cuDeviceGetName, cu_device_get_name_fn);
SAME_TYPE(cuGetErrorString, cu_get_error_string_fn);
_Static_assert(CU_SUCCESS_ == CUDA_SUCCESS && CU_ERROR_NO_DEVICE_ == CUDA_ERROR_NO_DEVICE,
               "the driver's result codes");
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

int ms__device_parse(int *out, const char *text)
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
