/*
 * fake_cuda.c - a stand-in for libcuda.so.1 on machines without a GPU, loaded by the
 * library through MODELSTREAM_CUDA_DRIVER so that the driver paths run in CI: the number
 * of devices comes from FAKE_CUDA_DEVICES (default 1), and FAKE_CUDA_INIT_ERROR makes
 * cuInit fail with that result code.
 */
#include <stdio.h>
#include <stdlib.h>

int cuInit(unsigned int flags);
int cuDeviceGetCount(int *count);
int cuDeviceGet(int *device, int ordinal);
int cuDeviceGetName(char *name, int len, int dev);
int cuGetErrorString(int error, const char **text);

int cuInit(unsigned int flags)
{
	const char *e = getenv("FAKE_CUDA_INIT_ERROR");

	(void)flags;
	return e != NULL ? (int)strtol(e, NULL, 10) : 0;
}

int cuDeviceGetCount(int *count)
{
	const char *e = getenv("FAKE_CUDA_DEVICES");

	*count = e != NULL ? (int)strtol(e, NULL, 10) : 1;
	return 0;
}

int cuDeviceGet(int *device, int ordinal)
{
	*device = ordinal;
	return 0;
}

int cuDeviceGetName(char *name, int len, int dev)
{
	snprintf(name, (size_t)len, "Fake GPU %d", dev);
	return 0;
}

int cuGetErrorString(int error, const char **text)
{
	*text = error == 999 ? "unknown error" : error == 3 ? "initialization error" : NULL;
	return *text != NULL ? 0 : 1;
}
