/*
 * gpu_check.c - correctness on a real GPU (and, rehearsed, on the stand-in driver): the
 * bytes of every tensor on the device equal the file's, for several files of every dtype
 * with odd sizes and odd offsets, through every copy path (pinned staging, a ring smaller
 * than the model, the smallest ring, registered mappings), at several alignments, into the
 * library's arena and into the caller's buffers, and on two devices at once when there
 * are two. Each tensor is copied back with ms_tensor_copy() and compared byte for byte
 * with what stgen wrote.
 *
 * Usage: gpu_check DIR    (scratch space for the generated files)
 * Prints "ok - ..." / "not ok - ..." per case and "N passed, M failed"; exit 0 when none
 * failed. The driver is libcuda.so.1, or MODELSTREAM_CUDA_DRIVER.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelstream.h"
#include "sink_cuda.h"
#include "support/stgen.h"

typedef struct {
	char path[4096];
	uint64_t seed;
	uint64_t data_start;
} model;

typedef struct {
	ms__cuda *cuda;
	size_t calls;
	uint64_t ptrs[8192];
} buffers;

static int passed, failed;

static void report(int ok, const char *what, const char *why)
{
	if (ok) {
		printf("ok - %s\n", what);
		passed++;
	} else {
		printf("not ok - %s: %s\n", what, why);
		failed++;
	}
	fflush(stdout);
}

static int caller_alloc(uint64_t *out, const ms_tensor *t, int device, void *payload)
{
	buffers *b = payload;
	int rc;

	(void)device;
	if (b->calls == sizeof(b->ptrs) / sizeof(b->ptrs[0]))
		return MS_ENOMEM;
	if ((rc = ms__cuda_alloc(b->cuda, out, t->size > 0 ? t->size : 1)) < 0)
		return rc;
	b->ptrs[b->calls++] = *out;
	return 0;
}

/* Streams `files` with `o`; checks every byte. Returns 0, or -1 with `why` filled. */
static int check(model *files, size_t count, const ms_streamer_options *o, uint64_t alignment,
                 ms_device_copy want, char *why, size_t why_size)
{
	ms_streamer *s = NULL;
	const ms_tensor *t;
	ms_stats st = MS_STATS_INIT;
	unsigned char *back = NULL;
	size_t back_size = 0;
	int rc = -1;

	if (ms_streamer_new(&s, o) < 0)
		goto fail;
	for (size_t i = 0; i < count; i++) {
		ms_file_info info = MS_FILE_INFO_INIT;

		if (ms_streamer_add(s, files[i].path) < 0 || ms_streamer_file_info(&info, s, i) < 0)
			goto fail;
		files[i].data_start = 8 + info.header_size;
	}
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		const model *m = &files[t->file_index];

		if (t->size > back_size) {
			free(back);
			back_size = (size_t)t->size;
			if ((back = malloc(back_size)) == NULL) {
				snprintf(why, why_size, "out of memory");
				goto done;
			}
		}
		if (alignment > 0 && t->device_ptr % alignment != 0) {
			snprintf(why, why_size, "%s at %#llx is not %llu-aligned", t->name,
			         (unsigned long long)t->device_ptr, (unsigned long long)alignment);
			rc = -1;
			goto done;
		}
		if (ms_tensor_copy(back, back_size, t) < 0)
			goto fail;
		for (uint64_t i = 0; i < t->size; i++)
			if (back[i] != stgen_byte(m->seed, t->file_offset - m->data_start + i)) {
				snprintf(why, why_size, "%s: byte %llu of %llu differs", t->name,
				         (unsigned long long)i, (unsigned long long)t->size);
				rc = -1;
				goto done;
			}
		ms_tensor_release(s, t);
	}
	if (rc != MS_ITER_END)
		goto fail;
	ms_streamer_stats(&st, s);
	if (st.bytes_to_device != st.bytes_total || st.device_copy != want) {
		snprintf(why, why_size, "%llu of %llu bytes copied; copy path %d, expected %d (%s)",
		         (unsigned long long)st.bytes_to_device, (unsigned long long)st.bytes_total,
		         (int)st.device_copy, (int)want,
		         ms_streamer_fallback(s) ? ms_streamer_fallback(s) : "no fallback");
		rc = -1;
		goto done;
	}
	rc = 0;
	goto done;
fail:
	snprintf(why, why_size, "%s", ms_error_last()->message);
	rc = -1;
done:
	free(back);
	ms_streamer_free(s);
	return rc;
}

static int make(model *m, const char *dir, const char *name, uint64_t seed, size_t small,
                uint64_t small_max, size_t large, uint64_t large_bytes)
{
	stgen_spec spec = STGEN_SPEC_INIT;

	spec.seed = seed;
	spec.small_count = small;
	spec.small_max_bytes = small_max;
	spec.large_count = large;
	spec.large_bytes = large_bytes;
	snprintf(m->path, sizeof(m->path), "%s/%s", dir, name);
	m->seed = seed;
	return stgen_write(m->path, &spec);
}

int main(int argc, char **argv)
{
	model files[3];
	char why[1024], what[256];
	int devices;

	if (argc != 2) {
		fprintf(stderr, "usage: gpu_check DIR\n");
		return 2;
	}
	if (make(&files[0], argv[1], "a.safetensors", 1, 2000, 70001, 2, 50000017) != 0 ||
	    make(&files[1], argv[1], "b.safetensors", 2, 1, 1, 0, 0) != 0 ||
	    make(&files[2], argv[1], "c.safetensors", 3, 500, 4099, 3, 3000001) != 0) {
		perror("gpu_check: writing the test files");
		return 1;
	}
	if (ms__cuda_device_check(0) < 0) {
		printf("not ok - a GPU: %s\n0 passed, 1 failed\n", ms_error_last()->message);
		return 1;
	}
	devices = ms__cuda_device_count();
	{
		static const struct {
			const char *name;
			int64_t limit;
			uint64_t alignment;
			ms_deliver deliver;
			ms_device_copy want;
		} cases[] = {
		    {"pinned staging, default ring", MS_MEMORY_UNLIMITED, 0, MS_DELIVER_COPY,
		     MS_DEVICE_COPY_STAGED},
		    {"a 64 MiB ring, 4 KiB alignment", 64 << 20, 4096, MS_DELIVER_COPY,
		     MS_DEVICE_COPY_STAGED},
		    {"the smallest ring (the largest tensor)", MS_MEMORY_MINIMUM, 256,
		     MS_DELIVER_COPY, MS_DEVICE_COPY_STAGED},
		    {"registered mappings (zero copy on the host)", MS_MEMORY_UNLIMITED, 512,
		     MS_DELIVER_MAPPED, MS_DEVICE_COPY_MAPPED},
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;

			o.device = 0;
			o.memory_limit = cases[i].limit;
			o.device_alignment = cases[i].alignment;
			o.deliver = cases[i].deliver;
			snprintf(what, sizeof(what), "cuda:0, 3 files, every dtype: %s",
			         cases[i].name);
			report(check(files, 3, &o, cases[i].alignment ? cases[i].alignment : 256,
			             cases[i].want, why, sizeof(why)) == 0,
			       what, why);
		}
	}
	{
		static buffers b;
		ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;
		int ok;

		o.device = 0;
		o.device_alloc = caller_alloc;
		o.device_alloc_payload = &b;
		if (ms__cuda_open(&b.cuda, 0, 1, 1) < 0) {
			report(0, "cuda:0: the caller's buffers", ms_error_last()->message);
		} else {
			ok = check(files, 3, &o, 0, MS_DEVICE_COPY_STAGED, why, sizeof(why)) == 0;
			report(ok, "cuda:0: into the caller's buffers (cuMemAlloc per tensor)",
			       why);
			for (size_t i = 0; i < b.calls; i++)
				ms__cuda_free(b.cuda, b.ptrs[i]);
			ms__cuda_close(b.cuda);
		}
	}
	for (int d = 1; d < devices && d < 8; d++) {
		ms_streamer_options o = MS_STREAMER_OPTIONS_INIT;

		o.device = d;
		o.memory_limit = 32 << 20;
		snprintf(what, sizeof(what), "cuda:%d, 3 files, a 32 MiB ring", d);
		report(check(files, 3, &o, 256, MS_DEVICE_COPY_STAGED, why, sizeof(why)) == 0, what,
		       why);
	}
	if (devices < 2)
		printf("ok - two devices # SKIP %d present\n", devices);
	remove(files[0].path);
	remove(files[1].path);
	remove(files[2].path);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
