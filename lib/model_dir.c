/*
 * model_dir.c - the weights of a model directory, local or in a bucket (see model_dir.h).
 */
#include <string.h>

#include "error.h"
#include "model_dir.h"

#define SUFFIX ".safetensors"

static bool is_weights(const char *name)
{
	size_t n = strlen(name), k = strlen(SUFFIX);

	return n > k && strcmp(name + n - k, SUFFIX) == 0 && name[0] != '.';
}

int ms__model_dir_open(ms__listing *out, const char *location, const ms__open_options *o)
{
	int rc = ms__listing_collect(out, location, false, is_weights, o);

	if (rc == 0 && out->count == 0) {
		rc = ms__error_set(MS_ENOTFOUND, "%s: no *" SUFFIX " files in this %s", location,
		                   out->backend == &ms__backend_file ? "directory" : "prefix");
		ms__listing_free(out);
	}
	return rc;
}
