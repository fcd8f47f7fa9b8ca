/*
 * sink_cuda.h - CUDA devices, as the rest of the library sees them: by index, with no CUDA
 * type in sight. Everything that knows CUDA exists is in sink_cuda.c, which loads the
 * driver API (libcuda.so.1) at run time, so the library needs no CUDA toolkit to build
 * and images need no CUDA runtime.
 *
 * Thread rules: any thread; the driver is loaded once per process.
 */
#ifndef MS_SINK_CUDA_H
#define MS_SINK_CUDA_H

/**
 * Parses a device name: "cpu" sets *out to -1; "cuda" and "cuda:N" set it to N (0 for
 * "cuda"). Returns 0 or MS_EINVAL naming the text.
 */
int ms__device_parse(int *out, const char *text);

/**
 * Checks that CUDA device `index` can be used: the driver loads and initialises and the
 * device exists. Returns 0, or MS_ENODEVICE with one line: "cuda:0: no NVIDIA driver:
 * libcuda.so.1 not found", "cuda:3: no such device, 1 present", or the driver's own words.
 * MODELSTREAM_CUDA_DRIVER names another driver library (tests use a fake one).
 */
int ms__cuda_device_check(int index);

/** The number of CUDA devices (0 without a driver), for messages and tests. */
int ms__cuda_device_count(void);

#endif
