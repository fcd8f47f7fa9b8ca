/*
 * test_location.c - the location layer (lib/location.c, backend_file.c): which back end a
 * location gets, and the one lister on local directories: full-name order, sub-directories
 * as prefixes when not recursive, links to files followed and linked directories not
 * entered, a file as a listing of itself, filters, limits and errors.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "location.h"
#include "support/testutil.h"

static void teardown(void)
{
	tu_tmpdir_remove();
}

TestSuite(location, .fini = teardown, .timeout = 30);

static void file(const char *name, const char *text)
{
	char path[4096];

	tu_path(path, sizeof(path), name);
	tu_write_file(path, text, strlen(text));
}

static void dir(const char *name)
{
	char path[4096];

	tu_path(path, sizeof(path), name);
	cr_assert_eq(mkdir(path, 0755), 0, "%s", path);
}

/* root/ a.txt  a/b.bin  a/c/d.bin  link.bin -> a.txt  loop -> .  dangling -> nowhere */
static const char *tree(void)
{
	char path[4096], target[4096];

	dir("root");
	dir("root/a");
	dir("root/a/c");
	file("root/a.txt", "aaa");
	file("root/a/b.bin", "bb");
	file("root/a/c/d.bin", "d");
	tu_path(path, sizeof(path), "root/link.bin");
	tu_path(target, sizeof(target), "root/a.txt");
	cr_assert_eq(symlink(target, path), 0);
	tu_path(path, sizeof(path), "root/loop");
	tu_path(target, sizeof(target), "root");
	cr_assert_eq(symlink(target, path), 0);
	tu_path(path, sizeof(path), "root/dangling");
	cr_assert_eq(symlink("/nonexistent/file", path), 0);
	tu_path(path, sizeof(path), "root");
	return strdup(path);
}

static bool only_bin(const char *name)
{
	size_t n = strlen(name);

	return n > 4 && strcmp(name + n - 4, ".bin") == 0;
}

Test(location, each_location_gets_its_back_end)
{
	cr_assert_eq(ms__backend_of("s3://bucket/key"), &ms__backend_s3);
	cr_assert_eq(ms__backend_of("GS://bucket/"), &ms__backend_s3);
	cr_assert_eq(ms__backend_of("/var/models/x.safetensors"), &ms__backend_file);
	cr_assert_eq(ms__backend_of("relative/dir/"), &ms__backend_file);
	cr_assert_neq(ms__backend_of("myfs://x"), &ms__backend_file,
	              "an unregistered scheme is refused, not looked for as a local path");
	cr_assert_eq(ms__backend_of("./myfs://x"), &ms__backend_file);
	cr_assert_eq(ms__backend_of("9p://x"), &ms__backend_file, "a scheme begins with a letter");
	cr_assert(ms__location_is_dir("s3://bucket"));
	cr_assert(ms__location_is_dir("s3://bucket/dir/"));
	cr_assert(!ms__location_is_dir("s3://bucket/dir/file"));
}

Test(location, recursive_listing_in_full_name_order)
{
	const char *root = tree();
	ms__listing l;

	cr_assert_eq(ms__listing_collect(&l, root, true, NULL, NULL), 0, "%s",
	             ms_error_last()->message);
	/* '.' sorts before '/': "a.txt" comes before what is inside "a/", as S3 lists keys. */
	cr_assert_eq(l.count, 4,
	             "a.txt, a/b.bin, a/c/d.bin, link.bin; not the loop or the "
	             "dangling link");
	cr_assert_str_eq(l.entries[0].name, "a.txt");
	cr_assert_str_eq(l.entries[1].name, "a/b.bin");
	cr_assert_str_eq(l.entries[2].name, "a/c/d.bin");
	cr_assert_str_eq(l.entries[3].name, "link.bin");
	cr_assert_eq(l.entries[3].size, 3, "a link to a file is listed with the file's size");
	cr_assert_str_neq(l.entries[0].etag, "", "local files get a version token");
	ms__listing_free(&l);
	free((void *)root);
}

static int count_prefixes(const ms_object *obj, void *payload)
{
	if (obj->is_prefix)
		(*(int *)payload)++;
	return 0;
}

Test(location, a_directory_not_recursive_shows_sub_directories_as_prefixes)
{
	const char *root = tree();
	ms__listing l;
	int n = 0;

	cr_assert_eq(ms__listing_collect(&l, root, false, NULL, NULL), 0);
	cr_assert_eq(l.count, 2, "the collector keeps objects, not prefixes");
	cr_assert_str_eq(l.entries[0].name, "a.txt");
	cr_assert_str_eq(l.entries[1].name, "link.bin");
	ms__listing_free(&l);
	/* The back end's own list reports the prefixes. */
	{
		void *context = NULL;
		ms__open_options o = {0};

		cr_assert_eq(ms__backend_file.list(&context, root, false, &o, count_prefixes, &n),
		             0);
	}
	cr_assert_eq(n, 2, "a/ and loop/ (a linked directory is shown, not entered)");
	free((void *)root);
}

Test(location, filters_limits_and_errors)
{
	const char *root = tree();
	char path[4096];
	ms__listing l;

	cr_assert_eq(ms__listing_collect(&l, root, true, only_bin, NULL), 0);
	cr_assert_eq(l.count, 3);
	ms__listing_free(&l);
	/* The limit every lister shares. */
	memset(&l, 0, sizeof(l));
	for (int i = 0; i < MS__LISTING_MAX; i++)
		cr_assert_eq(ms__listing_add(&l, "n", "loc", NULL, 1, false, "here"), 0);
	cr_assert_eq(ms__listing_add(&l, "n", "loc", NULL, 1, false, "here"), MS_ELIMIT);
	cr_assert_str_eq(ms_error_last()->message, "here: more than 100000 files");
	ms__listing_free(&l);
	/* A file is a listing of itself, under its base name. */
	tu_path(path, sizeof(path), "root/a/b.bin");
	cr_assert_eq(ms__listing_collect(&l, path, true, NULL, NULL), 0);
	cr_assert_eq(l.count, 1);
	cr_assert_str_eq(l.entries[0].name, "b.bin");
	cr_assert_str_eq(l.entries[0].location, path);
	ms__listing_free(&l);
	tu_path(path, sizeof(path), "root/none");
	cr_assert_eq(ms__listing_collect(&l, path, true, NULL, NULL), MS_ENOTFOUND);
	cr_assert(strstr(ms_error_last()->message, path) != NULL, "%s", ms_error_last()->message);
	free((void *)root);
}

/* A scheme that no back end claims is named as such, by every entry point, instead of
 * being looked for as a local path. */
Test(location, an_unknown_scheme_is_refused_by_name)
{
	const char *says = "az://c/m/: no back end reads az:// locations (local paths, s3://, "
	                   "gs:// and schemes registered with ms_backend_register())";
	ms_streamer_options opts = MS_STREAMER_OPTIONS_INIT;
	ms__listing l;
	ms_streamer *s = NULL;
	int exists = -1;

	cr_assert_eq(ms__listing_collect(&l, "az://c/m/", true, NULL, NULL), MS_EUNSUPPORTED);
	cr_assert_str_eq(ms_error_last()->message, says);
	cr_assert_eq(ms_storage_exists(&exists, NULL, "az://c/m/"), MS_EUNSUPPORTED);
	cr_assert_str_eq(ms_error_last()->message, says);
	cr_assert_eq(ms_storage_get("az://c/m/a.bin", "/nonexistent/a.bin", NULL), MS_EUNSUPPORTED);
	cr_assert(strstr(ms_error_last()->message, "az://c/m/a.bin: no back end reads az://") ==
	              ms_error_last()->message,
	          "%s", ms_error_last()->message);
	cr_assert_eq(ms_streamer_new(&s, &opts), 0);
	cr_assert_eq(ms_streamer_add(s, "az://c/m/a.safetensors"), MS_EUNSUPPORTED);
	cr_assert(strstr(ms_error_last()->message, "no back end reads az:// locations") != NULL,
	          "%s", ms_error_last()->message);
	ms_streamer_free(s);
	/* Not a scheme: a colon in a local name, or no letter first. */
	cr_assert_eq(ms__listing_collect(&l, "./az://c", true, NULL, NULL), MS_ENOTFOUND);
	cr_assert_eq(ms__listing_collect(&l, "1a://c", true, NULL, NULL), MS_ENOTFOUND);
}

/* ms_storage_get: the bytes, whole, under the name; nothing left behind on a failure. */
Test(location, get_copies_a_file_whole_or_not_at_all)
{
	char src[PATH_MAX], dst[PATH_MAX], partial[PATH_MAX + 32], missing[PATH_MAX];
	unsigned char *data = malloc(9u << 20), *back = malloc(9u << 20);
	FILE *f;
	ms_cancel *c = NULL;

	for (size_t i = 0; i < (9u << 20); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	tu_path(src, sizeof(src), "src.bin");
	tu_path(dst, sizeof(dst), "dst.bin");
	tu_path(missing, sizeof(missing), "missing.bin");
	tu_write_file(src, data, 9u << 20); /* more than one 8 MiB read */
	cr_assert_eq(ms_storage_get(src, dst, NULL), 0, "%s", ms_error_last()->message);
	f = fopen(dst, "rb");
	cr_assert_not_null(f);
	cr_assert_eq(fread(back, 1, 9u << 20, f), 9u << 20);
	fclose(f);
	cr_assert_eq(memcmp(data, back, 9u << 20), 0);
	cr_assert_eq(ms_storage_get(missing, dst, NULL), MS_ENOTFOUND);
	cr_assert(strstr(ms_error_last()->message, "missing.bin") != NULL, "%s",
	          ms_error_last()->message);
	cr_assert_eq(ms_cancel_new(&c), 0);
	ms_cancel_fire(c);
	unlink(dst);
	cr_assert_eq(ms_storage_get(src, dst, c), MS_ECANCELED);
	cr_assert_neq(access(dst, F_OK), 0, "a canceled get leaves no file");
	snprintf(partial, sizeof(partial), "%s.partial.%d", dst, (int)getpid());
	cr_assert_neq(access(partial, F_OK), 0, "nor its partial");
	ms_cancel_free(c);
	free(data);
	free(back);
	tu_tmpdir_remove();
}
