/*
 * backend_file.c - local paths as a back end of the location layer: files are opened as
 * sources (source_file.c), directories are listed by a walk of their own (no nftw, whose
 * callback takes no payload and would need a static), existence is a stat.
 *
 * Listing follows symbolic links to files (a Hugging Face snapshot is links into its blob
 * store) but does not descend into linked directories, so a loop of links cannot make a
 * walk endless. An object's ETag is a token of its inode, size and modification time, so
 * that it changes whenever the file could have.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "location.h"

/** Directories deeper than this are refused rather than walked. */
#define DEPTH_MAX 64

static void local_etag(char *out, size_t size, const struct stat *st)
{
	snprintf(out, size, "local-%llx-%llx-%llx.%09ld", (unsigned long long)st->st_ino,
	         (unsigned long long)st->st_size, (unsigned long long)st->st_mtim.tv_sec,
	         st->st_mtim.tv_nsec);
}

static const char *base_name(const char *path)
{
	size_t n = strlen(path);
	const char *slash;

	while (n > 1 && path[n - 1] == '/')
		n--;
	for (slash = path + n; slash > path && slash[-1] != '/'; slash--)
		;
	return slash;
}

/* Adds a file, or (for a listing that is not recursive) a sub-directory, to `l`. */
static int add(ms__listing *l, const char *name, const char *path, const struct stat *st, bool dir,
               const char *root)
{
	char etag[96];

	if (!dir)
		local_etag(etag, sizeof(etag), st);
	return ms__listing_add(l, name, path, dir ? NULL : etag, dir ? 0 : (uint64_t)st->st_size,
	                       dir, root);
}

/* Walks directory `dir` (whose names start with `prefix` relative to `root`). */
static int walk(ms__listing *l, const char *root, const char *dir, const char *prefix,
                bool recursive, unsigned depth)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (depth > DEPTH_MAX)
		return ms__error_set(MS_ELIMIT, "%s: directories nested more than %d deep", root,
		                     DEPTH_MAX);
	if ((d = opendir(dir)) == NULL)
		return errno == EACCES ? ms__error_set(MS_EACCES, "%s: cannot be read", dir)
		                       : ms__error_errno(errno, "%s", dir);
	while (rc == 0 && (errno = 0, e = readdir(d)) != NULL) {
		char path[PATH_MAX], name[PATH_MAX];
		struct stat st, lst;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path) ||
		    (size_t)snprintf(name, sizeof(name), "%s%s", prefix, e->d_name) >=
		        sizeof(name) - 1) {
			rc =
			    ms__error_set(MS_ELIMIT, "%s/%s: the path is too long", dir, e->d_name);
			break;
		}
		if (stat(path, &st) != 0) {
			if (errno == ENOENT)
				continue; /* a dangling link */
			rc = errno == EACCES ? ms__error_set(MS_EACCES, "%s: cannot be read", path)
			                     : ms__error_errno(errno, "%s", path);
			break;
		}
		if (S_ISREG(st.st_mode)) {
			rc = add(l, name, path, &st, false, root);
		} else if (S_ISDIR(st.st_mode)) {
			size_t k = strlen(name);

			name[k] = '/'; /* room was checked above */
			name[k + 1] = '\0';
			if (!recursive)
				rc = add(l, name, path, &st, true, root);
			else if (lstat(path, &lst) == 0 && !S_ISLNK(lst.st_mode))
				rc = walk(l, root, path, name, recursive, depth + 1);
		}
	}
	if (rc == 0 && errno != 0)
		rc = ms__error_errno(errno, "%s", dir);
	closedir(d);
	return rc;
}

static bool file_is_dir(const char *location)
{
	struct stat st;

	return stat(location, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_list(void **context, const char *location, bool recursive,
                     const ms__open_options *o, ms_list_fn fn, void *payload)
{
	ms__listing l = {0};
	struct stat st;
	char root[PATH_MAX];
	size_t n = strlen(location);
	int rc;

	(void)o;
	*context = NULL;
	if (stat(location, &st) != 0)
		return ms__error_errno(errno, "%s", location);
	if (S_ISDIR(st.st_mode)) {
		while (n > 1 && location[n - 1] == '/')
			n--;
		if (n >= sizeof(root))
			return ms__error_set(MS_ELIMIT, "%s: the path is too long", location);
		memcpy(root, location, n);
		root[n] = '\0';
		rc = walk(&l, root, root, "", recursive, 0);
	} else if (S_ISREG(st.st_mode)) {
		rc = add(&l, base_name(location), location, &st, false, location);
	} else {
		rc = ms__error_set(MS_EINVAL, "%s: neither a file nor a directory", location);
	}
	if (rc == 0)
		ms__listing_sort(&l);
	for (size_t i = 0; rc == 0 && i < l.count; i++) {
		const ms__entry *e = &l.entries[i];
		ms_object obj = {.location = e->location,
		                 .name = e->name,
		                 .size = e->size,
		                 .etag = e->is_prefix ? NULL : e->etag,
		                 .is_prefix = e->is_prefix};

		rc = fn(&obj, payload);
	}
	ms__listing_free(&l);
	return rc;
}

static int file_open(ms__source **out, const char *location, const ms__open_options *o)
{
	return ms__source_file_open(out, location, o->direct_io);
}

static int file_open_listed(ms__source **out, void *context, const ms_object *obj,
                            const ms__open_options *o)
{
	(void)context;
	return ms__source_file_open(out, obj->location, o->direct_io);
}

static int file_exists(const char *location, int *exists, uint64_t *size)
{
	struct stat st;

	if (stat(location, &st) == 0) {
		*exists = 1;
		if (size != NULL)
			*size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
		return 0;
	}
	if (errno == ENOENT || errno == ENOTDIR)
		return 0;
	return ms__error_errno(errno, "%s", location);
}

const ms__backend ms__backend_file = {
    .name = "local",
    .summary = "is read from the file system (pread, O_DIRECT for large uncached files)",
    .open = file_open,
    .is_dir = file_is_dir,
    .list = file_list,
    .open_listed = file_open_listed,
    .exists = file_exists,
};
