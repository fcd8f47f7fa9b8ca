/*
 * stream_tensors.c - the smallest complete use of libmodelstream: stream every tensor of
 * the files on the command line with a 256 MiB ring and print a line per tensor.
 *
 *   cc stream_tensors.c $(pkg-config --cflags --libs modelstream) -o stream_tensors
 *   ./stream_tensors model-00001-of-00002.safetensors model-00002-of-00002.safetensors
 */
#include <stdio.h>

#include <modelstream.h>

int main(int argc, char **argv)
{
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	const ms_tensor *t;
	unsigned long long total = 0;
	int rc;

	opts.memory_limit = 256 << 20;
	if ((rc = ms_streamer_options_from_env(&opts)) < 0 ||
	    (rc = ms_streamer_new(&s, &opts)) < 0 ||
	    (rc = ms_streamer_add_many(s, (const char *const *)argv + 1, (size_t)(argc - 1))) < 0)
		goto done;
	while ((rc = ms_streamer_next(&t, s)) == 0) {
		printf("%s %s %llu bytes (file %zu)\n", t->name, ms_dtype_name(t->dtype),
		       (unsigned long long)t->size, t->file_index);
		total += t->size;
		ms_tensor_release(s, t);
	}
done:
	if (rc < 0 && rc != MS_ITER_END) {
		fprintf(stderr, "stream_tensors: %s\n", ms_error_last()->message);
		ms_streamer_free(s);
		return 1;
	}
	printf("%llu bytes\n", total);
	ms_streamer_free(s);
	return 0;
}
