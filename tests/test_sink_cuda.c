/*
 * test_sink_cuda.c - CUDA devices without a GPU (lib/sink_cuda.c): device names, the
 * one-line errors when there is no driver or no such device, and the driver's own words
 * when it does not start. The driver is a stand-in (build/tests/libfakecuda.so, named by
 * MODELSTREAM_CUDA_DRIVER); the library loads it once per process, and Criterion runs
 * every test in a process of its own.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modelstream.h"
#include "sink_cuda.h"
#include "support/testutil.h"

TestSuite(cuda, .timeout = 30);

/* Points the library at the fake driver next to this test's binary. */
static void use_fake_driver(const char *devices, const char *init_error)
{
	char path[PATH_MAX];

	tu_use_fake_cuda(path, sizeof(path), devices);
	if (init_error != NULL)
		setenv("FAKE_CUDA_INIT_ERROR", init_error, 1);
}

Test(cuda, device_names)
{
	int d = 99;

	cr_assert_eq(ms_device_parse(&d, "cpu"), 0);
	cr_assert_eq(d, -1);
	cr_assert_eq(ms_device_parse(&d, "cuda"), 0);
	cr_assert_eq(d, 0);
	cr_assert_eq(ms_device_parse(&d, "cuda:3"), 0);
	cr_assert_eq(d, 3);
	for (size_t i = 0; i < 6; i++) {
		static const char *const bad[] = {"gpu",     "cuda:",  "cuda:-1",
		                                  "cuda:1x", "CUDA:0", "cuda:99999"};

		cr_assert_eq(ms_device_parse(&d, bad[i]), MS_EINVAL, "%s", bad[i]);
		cr_assert(strstr(ms_error_last()->message, "is not a device (cpu, cuda or cuda:N)"),
		          "%s", ms_error_last()->message);
	}
}

Test(cuda, no_driver_is_one_line_and_a_code)
{
	setenv("MODELSTREAM_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1);
	cr_assert_eq(ms__cuda_device_check(0), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message,
	                 "cuda:0: no NVIDIA driver: /nonexistent/libcuda.so.1 not found");
	cr_assert_str_eq(ms_strerror(MS_ENODEVICE), "no such device");
	cr_assert_eq(ms__cuda_device_count(), 0);
}

/* The default name, on a machine without the driver (CI): the message the issue asks for. */
Test(cuda, no_driver_by_its_default_name)
{
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);

	if (lib != NULL) {
		dlclose(lib);
		cr_skip_test("this machine has an NVIDIA driver");
	}
	unsetenv("MODELSTREAM_CUDA_DRIVER");
	cr_assert_eq(ms__cuda_device_check(0), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message,
	                 "cuda:0: no NVIDIA driver: libcuda.so.1 not found");
}

Test(cuda, no_such_device_says_how_many_there_are)
{
	use_fake_driver("1", NULL);
	cr_assert_eq(ms__cuda_device_check(0), 0, "%s", ms_error_last()->message);
	cr_assert_eq(ms__cuda_device_count(), 1);
	cr_assert_eq(ms__cuda_device_check(3), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message, "cuda:3: no such device, 1 present");
}

Test(cuda, two_devices)
{
	use_fake_driver("2", NULL);
	cr_assert_eq(ms__cuda_device_check(0), 0);
	cr_assert_eq(ms__cuda_device_check(1), 0);
	cr_assert_eq(ms__cuda_device_check(2), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message, "cuda:2: no such device, 2 present");
}

Test(cuda, a_driver_that_does_not_start_says_why)
{
	use_fake_driver("1", "3"); /* CUDA_ERROR_NOT_INITIALIZED */
	cr_assert_eq(ms__cuda_device_check(0), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message,
	                 "cuda:0: the NVIDIA driver did not start: initialization error");
}

Test(cuda, no_device_at_all)
{
	use_fake_driver("0", "100"); /* CUDA_ERROR_NO_DEVICE, as cuInit reports it */
	cr_assert_eq(ms__cuda_device_check(0), MS_ENODEVICE);
	cr_assert_str_eq(ms_error_last()->message, "cuda:0: no such device, 0 present");
}
