/*
 * cache.c - the node cache: opening it on the right medium, keys, publishing models
 * atomically, listing, removing, collecting garbage, eviction and verification.
 * Downloads are in fetch.c. The layout is described in cache.h.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "cache.h"
#include "error.h"
#include "s3/s3_sigv4.h"

#define HUGETLBFS_MAGIC 0x958458f6
#define TMPFS_MAGIC     0x01021994
#define MARKER          "modelstream cache 1\n"
#define META_MAX        (16u << 20)

/* snprintf for paths: a cut result is caught by the open or stat that follows (or the
 * caller checks the return), so the compiler's truncation analysis does not apply. */
static int pathf(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int pathf(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	return n;
}

const char *ms_cache_medium_name(ms_cache_medium medium)
{
	switch (medium) {
	case MS_CACHE_TMPFS:
		return "tmpfs";
	case MS_CACHE_TMPFS_HUGE:
		return "tmpfs (huge pages)";
	default:
		return "disk";
	}
}

int ms__cache_key(char out[MS__CACHE_KEY_LEN + 1], const char *source, const char *etag,
                  uint64_t size)
{
	char hex[65], text[64];
	size_t n = strlen(source), m = etag != NULL ? strlen(etag) : 0;
	char *all = ms__malloc(n + m + sizeof(text) + 2);
	int rc;

	out[0] = '\0';
	/* A key made of anything but the hash would name another file's blob: fail instead. */
	if (all == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", source);
	pathf(text, sizeof(text), "%llu", (unsigned long long)size);
	memcpy(all, source, n);
	all[n] = '\n';
	if (m > 0)
		memcpy(all + n + 1, etag, m);
	all[n + 1 + m] = '\n';
	memcpy(all + n + m + 2, text, strlen(text));
	rc = ms__sha256_hex(hex, all, n + m + 2 + strlen(text));
	ms__free(all);
	if (rc < 0)
		return rc;
	memcpy(out, hex, MS__CACHE_KEY_LEN);
	out[MS__CACHE_KEY_LEN] = '\0';
	return 0;
}

bool ms__cache_name_ok(const char *name)
{
	size_t n = name != NULL ? strlen(name) : 0;

	if (n == 0 || n > MS__CACHE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '.' && name[i] != '_' &&
		    name[i] != '-')
			return false;
	return true;
}

int ms__cache_blob_path(const ms_cache *c, const char *key, const char *suffix, char *out,
                        size_t size)
{
	if ((size_t)pathf(out, size, "%s/blobs/%s%s", c->dir, key, suffix) >= size)
		return ms__error_set(MS_EINVAL, "%s: the cache path is too long", c->dir);
	return 0;
}

/* Finds the mount holding `path` in /proc/self/mountinfo: tmpfs with huge pages or not. */
static ms_cache_medium tmpfs_medium(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], best_huge = 0;
	size_t best = 0;

	if (f == NULL)
		return MS_CACHE_TMPFS;
	while (fgets(line, sizeof(line), f) != NULL) {
		char mount[PATH_MAX], *dash, type[64], options[2048];
		size_t n;

		/* id parent major:minor root MOUNT options ... - type source superoptions */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mount) != 1)
			continue;
		dash = strstr(line, " - ");
		if (dash == NULL || sscanf(dash + 3, "%63s %*s %2047s", type, options) != 2)
			continue;
		n = strlen(mount);
		if (strcmp(type, "tmpfs") != 0 || strncmp(path, mount, n) != 0 ||
		    (path[n] != '/' && path[n] != '\0' && strcmp(mount, "/") != 0) || n < best)
			continue;
		best = n;
		best_huge = strstr(options, "huge=within_size") != NULL ||
		            strstr(options, "huge=always") != NULL ||
		            strstr(options, "huge=advise") != NULL;
	}
	fclose(f);
	return best_huge ? MS_CACHE_TMPFS_HUGE : MS_CACHE_TMPFS;
}

static int make_dir(const ms_cache *c, const char *sub)
{
	char path[PATH_MAX];

	pathf(path, sizeof(path), "%s/%s", c->dir, sub);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return ms__error_errno(errno, "%s: cannot create the cache's %s directory", c->dir,
		                       sub);
	return 0;
}

int ms_cache_open(ms_cache **out, const char *dir, const ms_cache_options *opts)
{
	static const ms_cache_options defaults = MS_CACHE_OPTIONS_INIT;
	char real[PATH_MAX], marker[PATH_MAX];
	struct statfs fs;
	struct stat st;
	ms_cache *c;
	int rc, fd;

	*out = NULL;
	if (dir == NULL)
		return ms__error_set(MS_EINVAL, "ms_cache_open: dir is NULL");
	if (opts == NULL)
		opts = &defaults;
	if (opts->version < 1 || opts->version > MS_CACHE_OPTIONS_VERSION)
		return ms__error_set(MS_EINVAL,
		                     "ms_cache_open: options of version %d (this library knows "
		                     "1 to %d)",
		                     opts->version, MS_CACHE_OPTIONS_VERSION);
	if (opts->concurrency < 0 || opts->concurrency > 256)
		return ms__error_set(MS_EINVAL, "%s: concurrency %d is not 1-256", dir,
		                     opts->concurrency);
	if (stat(dir, &st) != 0)
		return ms__error_errno(errno, "%s: the cache directory", dir);
	if (!S_ISDIR(st.st_mode))
		return ms__error_set(MS_EINVAL, "%s: the cache must be a directory", dir);
	if (realpath(dir, real) == NULL || statfs(real, &fs) != 0)
		return ms__error_errno(errno, "%s", dir);
	if ((unsigned long)fs.f_type == HUGETLBFS_MAGIC)
		return ms__error_set(
		    MS_EUNSUPPORTED,
		    "%s: is hugetlbfs, which holds only files whose size is a multiple of the "
		    "huge page size, and safetensors readers refuse a padded file; mount tmpfs "
		    "with huge pages instead (mount -t tmpfs -o huge=within_size,size=SIZE tmpfs "
		    "%s)",
		    dir, dir);
	c = ms__calloc(1, sizeof(*c));
	if (c == NULL || (c->dir = ms__strdup(real)) == NULL) {
		ms__free(c);
		return ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
	}
	c->dir_fd = -1;
	/* A caller built against an older header passes a shorter struct: copy what it has. */
	c->opts = defaults;
	memcpy(&c->opts, opts,
	       opts->version == 1 ? offsetof(ms_cache_options, cancel) : sizeof(*opts));
	c->opts.version = MS_CACHE_OPTIONS_VERSION;
	if (c->opts.concurrency == 0)
		c->opts.concurrency = MS__CACHE_DEFAULT_CONCURRENCY;
	c->medium = (unsigned long)fs.f_type == TMPFS_MAGIC ? tmpfs_medium(real) : MS_CACHE_DISK;
	if ((rc = make_dir(c, "blobs")) < 0 || (rc = make_dir(c, "models")) < 0 ||
	    (rc = make_dir(c, "models/.snapshots")) < 0 || (rc = make_dir(c, "models/.meta")) < 0)
		goto fail;
	pathf(marker, sizeof(marker), "%s/.modelstream-cache", c->dir);
	fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, MARKER, strlen(MARKER)) < 0) {
			rc = ms__error_errno(errno, "%s", marker);
			close(fd);
			goto fail;
		}
		close(fd);
	}
	c->dir_fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->dir_fd < 0) {
		rc = ms__error_errno(errno, "%s", c->dir);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	ms_cache_free(c);
	return rc;
}

ms_cache_medium ms_cache_medium_of(const ms_cache *c)
{
	return c->medium;
}

void ms_cache_free(ms_cache *c)
{
	if (c == NULL)
		return;
	if (c->dir_fd >= 0)
		close(c->dir_fd);
	ms__free(c->dir);
	ms__free(c);
}

int ms_cache_model_path(char *out, size_t size, const ms_cache *c, const char *name)
{
	if (!ms__cache_name_ok(name))
		return ms__error_set(MS_EINVAL,
		                     "'%.40s' is not a model name (1-128 of A-Z a-z 0-9 . _ -, not "
		                     "starting with '.')",
		                     name != NULL ? name : "(null)");
	if ((size_t)pathf(out, size, "%s/models/%s", c->dir, name) >= size)
		return ms__error_set(MS_EINVAL, "%s: the model path is too long", c->dir);
	return 0;
}

static void sync_dir(const ms_cache *c, const char *path)
{
	int fd;

	if (c->medium != MS_CACHE_DISK)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int ms__cache_write_atomic(const ms_cache *c, const char *path, const char *text, size_t len)
{
	char tmp[PATH_MAX + 32], *slash;
	size_t done = 0;
	int fd, rc = 0;

	pathf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return ms__error_errno(errno, "%s", tmp);
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = ms__error_errno(errno, "%s", tmp);
			break;
		}
		done += (size_t)n;
	}
	if (rc == 0 && c->medium == MS_CACHE_DISK && fsync(fd) != 0)
		rc = ms__error_errno(errno, "%s", tmp);
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = ms__error_errno(errno, "%s", path);
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	slash = strrchr(tmp, '/');
	if (slash != NULL) {
		*slash = '\0';
		sync_dir(c, tmp);
	}
	return 0;
}

/* Writes a cJSON document atomically; takes ownership of `doc`. */
static int write_json(const ms_cache *c, const char *path, cJSON *doc)
{
	char *text = doc != NULL ? cJSON_Print(doc) : NULL;
	int rc;

	cJSON_Delete(doc);
	if (text == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", path);
	rc = ms__cache_write_atomic(c, path, text, strlen(text));
	cJSON_free(text);
	return rc;
}

/* Reads and parses a JSON file of ours; NULL with the error raised on failure. */
cJSON *ms__cache_read_json(const char *path)
{
	struct stat st;
	cJSON *doc = NULL;
	char *text;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		ms__error_errno(errno, "%s", path);
		return NULL;
	}
	if (fstat(fd, &st) != 0 || st.st_size > (off_t)META_MAX) {
		ms__error_set(MS_EFORMAT, "%s: unreadable or larger than %u bytes", path, META_MAX);
		close(fd);
		return NULL;
	}
	text = ms__malloc((size_t)st.st_size + 1);
	n = text != NULL ? read(fd, text, (size_t)st.st_size) : -1;
	close(fd);
	if (n == st.st_size) {
		text[n] = '\0';
		doc = cJSON_Parse(text);
		if (doc == NULL)
			ms__error_set(MS_EFORMAT, "%s: not valid JSON (a damaged cache record)",
			              path);
	} else {
		ms__error_set(text == NULL ? MS_ENOMEM : MS_EIO, "%s: cannot be read", path);
	}
	ms__free(text);
	return doc;
}

int ms__cache_blob_record(const ms_cache *c, const char *key, const ms__cache_blob_info *info)
{
	char path[PATH_MAX];
	cJSON *doc = cJSON_CreateObject();
	int rc;

	if ((rc = ms__cache_blob_path(c, key, ".json", path, sizeof(path))) < 0) {
		cJSON_Delete(doc);
		return rc;
	}
	if (doc == NULL || cJSON_AddStringToObject(doc, "source", info->source) == NULL ||
	    cJSON_AddStringToObject(doc, "etag", info->etag != NULL ? info->etag : "") == NULL ||
	    cJSON_AddNumberToObject(doc, "size", (double)info->size) == NULL ||
	    cJSON_AddNumberToObject(doc, "fetched_at", (double)info->fetched_at) == NULL) {
		cJSON_Delete(doc);
		return ms__error_set(MS_ENOMEM, "%s: out of memory", path);
	}
	return write_json(c, path, doc);
}

void ms__cache_touch(const ms_cache *c, const char *key)
{
	char path[PATH_MAX];

	if (ms__cache_blob_path(c, key, ".json", path, sizeof(path)) == 0)
		utimensat(AT_FDCWD, path, NULL, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Publishing                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Holds DIR/.lock exclusively while the layout of models changes; returns the fd or < 0. */
static int lock_layout(const ms_cache *c)
{
	char path[PATH_MAX];
	int fd;

	pathf(path, sizeof(path), "%s/.lock", c->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return ms__error_errno(errno, "%s", path);
	while (flock(fd, LOCK_EX) != 0)
		if (errno != EINTR) {
			int rc = ms__error_errno(errno, "%s: lock", path);

			close(fd);
			return rc;
		}
	return fd;
}

/* The meta file's file list equals `files` (same paths and keys, in order). */
static bool same_files(const cJSON *meta, const ms__cache_file *files, size_t count)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(meta, "files"), *f;
	size_t i = 0;

	if (!cJSON_IsArray(list) || (size_t)cJSON_GetArraySize(list) != count)
		return false;
	cJSON_ArrayForEach(f, list)
	{
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(f, "key");

		if (!cJSON_IsString(path) || !cJSON_IsString(key) ||
		    strcmp(path->valuestring, files[i].path) != 0 ||
		    strcmp(key->valuestring, files[i].key) != 0)
			return false;
		i++;
	}
	return true;
}

/* Creates the directories above `path` (relative to `root`). */
static int make_parents(const char *root, const char *path)
{
	char full[PATH_MAX];
	size_t base = strlen(root) + 1;

	if ((size_t)pathf(full, sizeof(full), "%s/%s", root, path) >= sizeof(full))
		return ms__error_set(MS_EINVAL, "%s/%s: too long", root, path);
	for (char *p = full + base; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(full, 0755) != 0 && errno != EEXIST)
			return ms__error_errno(errno, "%s", full);
		*p = '/';
	}
	return 0;
}

/* Removes a directory tree of links and directories (a snapshot). Best effort. */
static void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		char child[PATH_MAX];

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		pathf(child, sizeof(child), "%s/%s", path, e->d_name);
		if (e->d_type == DT_DIR)
			remove_tree(child);
		else
			unlink(child);
	}
	closedir(d);
	rmdir(path);
}

static cJSON *model_meta(const char *name, const char *source, const char *snapshot,
                         const ms__cache_file *files, size_t count)
{
	cJSON *doc = cJSON_CreateObject(), *list;

	if (doc == NULL || cJSON_AddStringToObject(doc, "name", name) == NULL ||
	    cJSON_AddStringToObject(doc, "source", source) == NULL ||
	    cJSON_AddStringToObject(doc, "snapshot", snapshot) == NULL ||
	    cJSON_AddNumberToObject(doc, "fetched_at", (double)time(NULL)) == NULL ||
	    (list = cJSON_AddArrayToObject(doc, "files")) == NULL)
		goto oom;
	for (size_t i = 0; i < count; i++) {
		cJSON *f = cJSON_CreateObject();

		if (f == NULL || !cJSON_AddItemToArray(list, f) ||
		    cJSON_AddStringToObject(f, "path", files[i].path) == NULL ||
		    cJSON_AddStringToObject(f, "key", files[i].key) == NULL ||
		    cJSON_AddNumberToObject(f, "size", (double)files[i].size) == NULL ||
		    cJSON_AddStringToObject(f, "etag", files[i].etag ? files[i].etag : "") ==
		        NULL ||
		    cJSON_AddStringToObject(f, "source", files[i].source) == NULL)
			goto oom;
	}
	return doc;
oom:
	cJSON_Delete(doc);
	return NULL;
}

int ms__cache_publish(ms_cache *c, const char *name, const char *source,
                      const ms__cache_file *files, size_t count)
{
	char meta_path[PATH_MAX], link_path[PATH_MAX], snap[PATH_MAX], gen[MS__CACHE_NAME_MAX + 48];
	char tmp_link[PATH_MAX], target[PATH_MAX + 64], old[PATH_MAX];
	struct timespec now;
	struct stat st;
	cJSON *meta;
	ssize_t old_len;
	int lock, rc = 0;

	pathf(meta_path, sizeof(meta_path), "%s/models/.meta/%s.json", c->dir, name);
	pathf(link_path, sizeof(link_path), "%s/models/%s", c->dir, name);
	if ((lock = lock_layout(c)) < 0)
		return lock;
	if (lstat(link_path, &st) == 0 && !S_ISLNK(st.st_mode)) {
		rc = ms__error_set(MS_EINVAL, "%s: exists and is not the cache's link; remove it",
		                   link_path);
		goto done;
	}
	/* Already published with exactly these blobs: nothing to do. */
	meta = access(meta_path, F_OK) == 0 ? ms__cache_read_json(meta_path) : NULL;
	if (meta != NULL && same_files(meta, files, count) && stat(link_path, &st) == 0) {
		cJSON_Delete(meta);
		goto done;
	}
	cJSON_Delete(meta);
	clock_gettime(CLOCK_REALTIME, &now);
	pathf(gen, sizeof(gen), "%s.%llx%05d", name,
	      (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec,
	      (int)getpid() % 100000);
	pathf(snap, sizeof(snap), "%s/models/.snapshots/%s", c->dir, gen);
	if (mkdir(snap, 0755) != 0) {
		rc = ms__error_errno(errno, "%s", snap);
		goto done;
	}
	for (size_t i = 0; i < count && rc == 0; i++) {
		char link[PATH_MAX], up[PATH_MAX];
		size_t depth = 3, used = 0; /* snapshot, .snapshots, models: up to DIR */

		for (const char *p = files[i].path; *p != '\0'; p++)
			depth += *p == '/';
		for (size_t d = 0; d < depth && used + 4 < sizeof(up); d++)
			used += (size_t)pathf(up + used, sizeof(up) - used, "../");
		pathf(target, sizeof(target), "%sblobs/%s", up, files[i].key);
		pathf(link, sizeof(link), "%s/%s", snap, files[i].path);
		if ((rc = make_parents(snap, files[i].path)) == 0 && symlink(target, link) != 0)
			rc = ms__error_errno(errno, "%s", link);
	}
	if (rc == 0) {
		meta = model_meta(name, source, gen, files, count);
		rc = meta != NULL ? write_json(c, meta_path, meta)
		                  : ms__error_set(MS_ENOMEM, "%s: out of memory", meta_path);
	}
	if (rc < 0) {
		remove_tree(snap);
		goto done;
	}
	/* Swap the link in one rename, then drop the snapshot it pointed at before. */
	old_len = readlink(link_path, old, sizeof(old) - 1);
	pathf(tmp_link, sizeof(tmp_link), "%s/models/.%s.tmp%d", c->dir, name, (int)getpid());
	pathf(target, sizeof(target), ".snapshots/%s", gen);
	unlink(tmp_link);
	if (symlink(target, tmp_link) != 0 || rename(tmp_link, link_path) != 0) {
		rc = ms__error_errno(errno, "%s", link_path);
		unlink(tmp_link);
		remove_tree(snap);
		goto done;
	}
	sync_dir(c, snap);
	pathf(tmp_link, sizeof(tmp_link), "%s/models", c->dir);
	sync_dir(c, tmp_link);
	if (old_len > 0) {
		old[old_len] = '\0';
		if (strncmp(old, ".snapshots/", 11) == 0 && strchr(old + 11, '/') == NULL) {
			pathf(snap, sizeof(snap), "%s/models/%s", c->dir, old);
			remove_tree(snap);
		}
	}
done:
	close(lock);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Use, eviction and collection                                                               */
/* ---------------------------------------------------------------------------------------- */

/* True if some process we can see has `path` open or mapped. */
static bool open_anywhere(const char *path)
{
	DIR *proc = opendir("/proc");
	struct dirent *e;
	bool found = false;
	size_t n = strlen(path);

	if (proc == NULL)
		return false;
	while (!found && (e = readdir(proc)) != NULL) {
		char dir[64], link[PATH_MAX], line[PATH_MAX + 256];
		DIR *fds;
		FILE *maps;
		struct dirent *f;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pathf(dir, sizeof(dir), "/proc/%s/fd", e->d_name);
		if ((fds = opendir(dir)) != NULL) {
			while (!found && (f = readdir(fds)) != NULL) {
				char fd_path[PATH_MAX];
				ssize_t len;

				pathf(fd_path, sizeof(fd_path), "%s/%s", dir, f->d_name);
				len = readlink(fd_path, link, sizeof(link) - 1);
				if (len > 0) {
					link[len] = '\0';
					found = strcmp(link, path) == 0;
				}
			}
			closedir(fds);
		}
		pathf(dir, sizeof(dir), "/proc/%s/maps", e->d_name);
		if (!found && (maps = fopen(dir, "re")) != NULL) {
			while (!found && fgets(line, sizeof(line), maps) != NULL) {
				size_t len = strlen(line);

				if (len > 0 && line[len - 1] == '\n')
					line[--len] = '\0';
				found = len >= n && strcmp(line + len - n, path) == 0;
			}
			fclose(maps);
		}
	}
	closedir(proc);
	return found;
}

bool ms__cache_blob_in_use(const ms_cache *c, const char *key)
{
	char path[PATH_MAX];
	int fd;
	bool held;

	if (ms__cache_blob_path(c, key, ".lock", path, sizeof(path)) < 0)
		return true;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		held = flock(fd, LOCK_EX | LOCK_NB) != 0;
		close(fd);
		if (held)
			return true;
	}
	if (ms__cache_blob_path(c, key, "", path, sizeof(path)) < 0)
		return true;
	return open_anywhere(path) ||
	       (ms__cache_blob_path(c, key, ".partial", path, sizeof(path)) == 0 &&
	        open_anywhere(path));
}

typedef struct {
	char key[MS__CACHE_KEY_LEN + 1];
	uint64_t size;
	struct timespec used;
} blob_entry;

static bool is_key(const char *s, size_t n)
{
	if (n != MS__CACHE_KEY_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Lists complete blobs (and, into *partial_bytes, the size of partials). */
static int list_blobs(const ms_cache *c, blob_entry **out, size_t *count, uint64_t *partial_bytes)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	*count = 0;
	*partial_bytes = 0;
	pathf(dir, sizeof(dir), "%s/blobs", c->dir);
	if ((d = opendir(dir)) == NULL)
		return ms__error_errno(errno, "%s", dir);
	while ((e = readdir(d)) != NULL && rc == 0) {
		const char *dot = strchr(e->d_name, '.');
		size_t n = dot != NULL ? (size_t)(dot - e->d_name) : strlen(e->d_name);
		struct stat st, meta;
		char path[PATH_MAX];

		if (!is_key(e->d_name, n) || fstatat(dirfd(d), e->d_name, &st, 0) != 0)
			continue;
		if (dot != NULL && strcmp(dot, ".partial") == 0)
			*partial_bytes += (uint64_t)st.st_blocks * 512;
		if (dot != NULL)
			continue;
		if (ms__grow((void **)out, &cap, *count + 1, sizeof(**out)) < 0) {
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
			break;
		}
		memcpy((*out)[*count].key, e->d_name, MS__CACHE_KEY_LEN + 1);
		(*out)[*count].size = (uint64_t)st.st_size;
		pathf(path, sizeof(path), "%s.json", e->d_name);
		(*out)[*count].used =
		    fstatat(dirfd(d), path, &meta, 0) == 0 ? meta.st_mtim : st.st_mtim;
		(*count)++;
	}
	closedir(d);
	if (rc < 0) {
		ms__free(*out);
		*out = NULL;
	}
	return rc;
}

/* -1, 0 or 1 as `a` is before, at or after `b`. */
static int compare_time(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	if (a.tv_nsec != b.tv_nsec)
		return a.tv_nsec < b.tv_nsec ? -1 : 1;
	return 0;
}

static int by_use(const void *a, const void *b)
{
	const blob_entry *x = a, *y = b;
	int c = compare_time(x->used, y->used);

	return c != 0 ? c : strcmp(x->key, y->key);
}

static void remove_blob(const ms_cache *c, const char *key)
{
	char path[PATH_MAX];

	if (ms__cache_blob_path(c, key, "", path, sizeof(path)) == 0)
		unlink(path);
	if (ms__cache_blob_path(c, key, ".json", path, sizeof(path)) == 0)
		unlink(path);
	/* The lock file stays: a process may be about to lock it, and a new inode under the
	 * same name would let two processes download the same blob. */
}

/* A published model, for eviction: its name, keys and when it was last used. */
typedef struct {
	char name[MS__CACHE_NAME_MAX + 1];
	char (*keys)[MS__CACHE_KEY_LEN + 1];
	size_t key_count;
	struct timespec used;
} model_entry;

static void models_free(model_entry *m, size_t count)
{
	for (size_t i = 0; i < count; i++)
		ms__free(m[i].keys);
	ms__free(m);
}

/* Reads every model's keys. Layout locked. */
static int list_models(const ms_cache *c, model_entry **out, size_t *count)
{
	char dir[PATH_MAX];
	DIR *d;
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	*count = 0;
	pathf(dir, sizeof(dir), "%s/models/.meta", c->dir);
	if ((d = opendir(dir)) == NULL)
		return ms__error_errno(errno, "%s", dir);
	while (rc == 0 && (e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		size_t n = strlen(e->d_name), k = 0;
		const cJSON *files, *f;
		cJSON *meta;
		model_entry *m;

		if (n <= 5 || n - 5 > MS__CACHE_NAME_MAX || e->d_name[0] == '.' ||
		    strcmp(e->d_name + n - 5, ".json") != 0)
			continue;
		pathf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if ((meta = ms__cache_read_json(path)) == NULL)
			continue;
		if (ms__grow((void **)out, &cap, *count + 1, sizeof(**out)) < 0) {
			cJSON_Delete(meta);
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
			break;
		}
		m = &(*out)[(*count)++];
		memset(m, 0, sizeof(*m));
		memcpy(m->name, e->d_name, n - 5);
		files = cJSON_GetObjectItemCaseSensitive(meta, "files");
		m->keys = ms__calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(*m->keys));
		if (m->keys == NULL)
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
		cJSON_ArrayForEach(f, files)
		{
			const cJSON *key = cJSON_GetObjectItemCaseSensitive(f, "key");

			if (m->keys != NULL && cJSON_IsString(key) &&
			    is_key(key->valuestring, strlen(key->valuestring)))
				memcpy(m->keys[k++], key->valuestring, MS__CACHE_KEY_LEN + 1);
		}
		m->key_count = k;
		cJSON_Delete(meta);
	}
	closedir(d);
	if (rc < 0) {
		models_free(*out, *count);
		*out = NULL;
		*count = 0;
	}
	return rc;
}

static bool kept(const char *key, const char *const *keep, size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(keep[i], key) == 0)
			return true;
	return false;
}

static bool named_by(const model_entry *models, size_t count, const char *key, size_t skip)
{
	for (size_t i = 0; i < count; i++)
		for (size_t k = 0; i != skip && k < models[i].key_count; k++)
			if (strcmp(models[i].keys[k], key) == 0)
				return true;
	return false;
}

static int by_model_use(const void *a, const void *b)
{
	const model_entry *x = a, *y = b;
	int c = compare_time(x->used, y->used);

	return c != 0 ? c : strcmp(x->name, y->name);
}

static void unpublish(const ms_cache *c, const char *name)
{
	char path[PATH_MAX];

	pathf(path, sizeof(path), "%s/models/%s", c->dir, name);
	unlink(path);
	pathf(path, sizeof(path), "%s/models/.meta/%s.json", c->dir, name);
	unlink(path);
}

/*
 * Evicts until used + needed fits the budget. Files no model names go first, least recently
 * used first; then whole models, least recently used first, never one with a file in use
 * (a loader that has opened one shard will open the next) or one this fetch needs.
 * Layout locked.
 */
static int evict(ms_cache *c, uint64_t needed, const char *const *keep, size_t keep_count,
                 ms_cache_collected *stats)
{
	blob_entry *blobs = NULL;
	model_entry *models = NULL;
	size_t count = 0, model_count = 0, held = 0;
	uint64_t used = 0, partial = 0;
	int rc;

	if (c->opts.budget == 0)
		return 0;
	if ((rc = list_blobs(c, &blobs, &count, &partial)) < 0)
		return rc;
	if ((rc = list_models(c, &models, &model_count)) < 0) {
		ms__free(blobs);
		return rc;
	}
	used = partial;
	for (size_t i = 0; i < count; i++) {
		used += blobs[i].size;
		for (size_t m = 0; m < model_count; m++)
			for (size_t k = 0; k < models[m].key_count; k++)
				if (strcmp(models[m].keys[k], blobs[i].key) == 0 &&
				    compare_time(blobs[i].used, models[m].used) > 0)
					models[m].used = blobs[i].used;
	}
	/* An empty cache lists nothing: qsort must not be given the NULL array then. */
	if (count > 1)
		qsort(blobs, count, sizeof(*blobs), by_use);
	if (model_count > 1)
		qsort(models, model_count, sizeof(*models), by_model_use);
	for (size_t i = 0; i < count && used + needed > c->opts.budget; i++) {
		if (kept(blobs[i].key, keep, keep_count) ||
		    named_by(models, model_count, blobs[i].key, SIZE_MAX))
			continue;
		if (ms__cache_blob_in_use(c, blobs[i].key)) {
			held++;
			continue;
		}
		remove_blob(c, blobs[i].key);
		used -= blobs[i].size;
		if (stats != NULL) {
			stats->blobs_removed++;
			stats->bytes_freed += blobs[i].size;
		}
		blobs[i].size = 0;
	}
	for (size_t m = 0; m < model_count && used + needed > c->opts.budget; m++) {
		bool busy = false;
		int hold = -1;

		for (size_t k = 0; k < models[m].key_count && !busy; k++)
			busy = kept(models[m].keys[k], keep, keep_count) ||
			       ms__cache_blob_in_use(c, models[m].keys[k]);
		/* A reader in another pod holds the model (ms_cache_hold_new). */
		if (!busy && (hold = ms__cache_model_lock(c, models[m].name)) == -2)
			busy = true;
		if (busy) {
			held++;
			continue;
		}
		unpublish(c, models[m].name);
		if (hold >= 0)
			close(hold);
		if (stats != NULL)
			stats->models_evicted++;
		for (size_t k = 0; k < models[m].key_count; k++) {
			if (named_by(models, model_count, models[m].keys[k], m))
				continue;
			for (size_t i = 0; i < count; i++)
				if (blobs[i].size > 0 &&
				    strcmp(blobs[i].key, models[m].keys[k]) == 0) {
					remove_blob(c, blobs[i].key);
					used -= blobs[i].size;
					if (stats != NULL) {
						stats->blobs_removed++;
						stats->bytes_freed += blobs[i].size;
					}
					blobs[i].size = 0;
				}
		}
		models[m].key_count = 0; /* gone: names nothing now */
	}
	if (stats != NULL)
		stats->blobs_in_use += held;
	ms__free(blobs);
	models_free(models, model_count);
	if (used + needed > c->opts.budget)
		return ms__error_set(
		    MS_ENOSPC,
		    "%s: the cache budget of %llu bytes cannot hold %llu more bytes: "
		    "%llu are held, by %zu models or files in use or needed by "
		    "this fetch",
		    c->dir, (unsigned long long)c->opts.budget, (unsigned long long)needed,
		    (unsigned long long)used, held);
	return 0;
}

int ms__cache_make_room(ms_cache *c, uint64_t needed, const char *const *keep, size_t count,
                        size_t *models_evicted)
{
	ms_cache_collected stats = {0};
	int lock, rc;

	*models_evicted = 0;
	if (c->opts.budget == 0)
		return 0;
	if ((lock = lock_layout(c)) < 0)
		return lock;
	rc = evict(c, needed, keep, count, &stats);
	close(lock);
	*models_evicted = stats.models_evicted;
	return rc;
}

int ms_cache_usage(uint64_t *bytes, ms_cache *c)
{
	blob_entry *blobs = NULL;
	size_t count = 0;
	uint64_t partial = 0;
	int rc;

	*bytes = 0;
	if ((rc = list_blobs(c, &blobs, &count, &partial)) < 0)
		return rc;
	*bytes = partial;
	for (size_t i = 0; i < count; i++)
		*bytes += blobs[i].size;
	ms__free(blobs);
	return 0;
}

/* Removes snapshot directories no model link points at. Layout locked. */
static void collect_snapshots(const ms_cache *c)
{
	char dir[PATH_MAX], models[PATH_MAX];
	DIR *d;
	struct dirent *e;

	pathf(dir, sizeof(dir), "%s/models/.snapshots", c->dir);
	pathf(models, sizeof(models), "%s/models", c->dir);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char link[PATH_MAX], target[PATH_MAX], path[PATH_MAX];
		const char *dot = strrchr(e->d_name, '.');
		ssize_t n;

		if (e->d_name[0] == '.' || dot == NULL)
			continue;
		pathf(link, sizeof(link), "%s/%.*s", models, (int)(dot - e->d_name), e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			if (strcmp(target + (strncmp(target, ".snapshots/", 11) == 0 ? 11 : 0),
			           e->d_name) == 0)
				continue;
		}
		pathf(path, sizeof(path), "%s/%s", dir, e->d_name);
		remove_tree(path);
	}
	closedir(d);
}

int ms_cache_collect(ms_cache_collected *out, ms_cache *c)
{
	ms_cache_collected stats = MS_CACHE_COLLECTED_INIT;
	blob_entry *blobs = NULL;
	model_entry *models = NULL;
	char dir[PATH_MAX];
	size_t count = 0, model_count = 0;
	uint64_t partial = 0;
	DIR *d;
	struct dirent *e;
	int lock, rc;

	if ((lock = lock_layout(c)) < 0)
		return lock;
	if ((rc = list_models(c, &models, &model_count)) < 0 ||
	    (rc = list_blobs(c, &blobs, &count, &partial)) < 0)
		goto done;
	for (size_t i = 0; i < count; i++) {
		if (named_by(models, model_count, blobs[i].key, SIZE_MAX))
			continue;
		if (ms__cache_blob_in_use(c, blobs[i].key)) {
			stats.blobs_in_use++;
			continue;
		}
		remove_blob(c, blobs[i].key);
		stats.blobs_removed++;
		stats.bytes_freed += blobs[i].size;
	}
	/* Partial downloads that no process is continuing. */
	pathf(dir, sizeof(dir), "%s/blobs", c->dir);
	if ((d = opendir(dir)) != NULL) {
		while ((e = readdir(d)) != NULL) {
			const char *dot = strchr(e->d_name, '.');
			char key[MS__CACHE_KEY_LEN + 1];

			if (dot == NULL || strcmp(dot, ".partial") != 0 ||
			    !is_key(e->d_name, (size_t)(dot - e->d_name)))
				continue;
			memcpy(key, e->d_name, MS__CACHE_KEY_LEN);
			key[MS__CACHE_KEY_LEN] = '\0';
			if (ms__cache_blob_in_use(c, key))
				continue;
			{
				char path[PATH_MAX];

				ms__cache_blob_path(c, key, ".partial", path, sizeof(path));
				unlink(path);
				ms__cache_blob_path(c, key, ".state", path, sizeof(path));
				unlink(path);
			}
			stats.partials_removed++;
		}
		closedir(d);
	}
	collect_snapshots(c);
	rc = evict(c, 0, NULL, 0, &stats);
done:
	models_free(models, model_count);
	ms__free(blobs);
	close(lock);
	if (out != NULL && rc == 0)
		rc = ms__fill_sized(out, &stats, sizeof(stats), sizeof(stats), "ms_cache_collect");
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Listing, removing, verifying                                                               */
/* ---------------------------------------------------------------------------------------- */

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ms_cache_list(ms_cache *c, int (*fn)(const ms_cache_model *model, void *payload), void *payload)
{
	char dir[PATH_MAX];
	char **names = NULL;
	size_t count = 0, cap = 0;
	DIR *d;
	struct dirent *e;
	int rc = 0;

	pathf(dir, sizeof(dir), "%s/models/.meta", c->dir);
	if ((d = opendir(dir)) == NULL)
		return ms__error_errno(errno, "%s", dir);
	while (rc == 0 && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);

		if (n <= 5 || strcmp(e->d_name + n - 5, ".json") != 0 || e->d_name[0] == '.')
			continue;
		if (ms__grow((void **)&names, &cap, count + 1, sizeof(*names)) < 0) {
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
			break;
		}
		if ((names[count] = ms__strdup(e->d_name)) == NULL)
			rc = ms__error_set(MS_ENOMEM, "%s: out of memory", dir);
		else
			count++;
	}
	closedir(d);
	if (count > 0)
		qsort(names, count, sizeof(*names), compare_strings);
	for (size_t i = 0; i < count; i++) {
		char path[PATH_MAX];
		cJSON *meta;
		const cJSON *f, *source, *fetched;
		ms_cache_model m = {.struct_size = sizeof(ms_cache_model)};

		if (rc != 0)
			goto next;
		pathf(path, sizeof(path), "%s/%s", dir, names[i]);
		if ((meta = ms__cache_read_json(path)) == NULL)
			goto next;
		names[i][strlen(names[i]) - 5] = '\0';
		source = cJSON_GetObjectItemCaseSensitive(meta, "source");
		fetched = cJSON_GetObjectItemCaseSensitive(meta, "fetched_at");
		m.name = names[i];
		m.source = cJSON_IsString(source) ? source->valuestring : "";
		m.fetched = cJSON_IsNumber(fetched) ? (int64_t)fetched->valuedouble : 0;
		m.complete = 1;
		cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(meta, "files"))
		{
			const cJSON *k = cJSON_GetObjectItemCaseSensitive(f, "key");
			const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
			char blob[PATH_MAX];

			m.files++;
			m.bytes += cJSON_IsNumber(size) ? (uint64_t)size->valuedouble : 0;
			if (!cJSON_IsString(k) || !is_key(k->valuestring, strlen(k->valuestring)) ||
			    ms__cache_blob_path(c, k->valuestring, "", blob, sizeof(blob)) < 0 ||
			    access(blob, R_OK) != 0)
				m.complete = 0;
		}
		rc = fn(&m, payload);
		cJSON_Delete(meta);
	next:
		ms__free(names[i]);
	}
	ms__free(names);
	return rc;
}

/* Unpublishes model `name` (link, record, snapshot); with `if_unused`, only when no process
 * holds it or has one of its files open. */
static int remove_model(ms_cache *c, const char *name, bool if_unused)
{
	char link[PATH_MAX], meta[PATH_MAX], snap[PATH_MAX];
	model_entry *models = NULL;
	size_t model_count = 0;
	bool have_snap;
	int lock, hold = -1, rc = 0;

	if ((rc = ms_cache_model_path(link, sizeof(link), c, name)) < 0)
		return rc;
	pathf(meta, sizeof(meta), "%s/models/.meta/%s.json", c->dir, name);
	if ((lock = lock_layout(c)) < 0)
		return lock;
	have_snap = ms__cache_snapshot_of(c->dir, name, snap, sizeof(snap)) == 0;
	if (!have_snap && faccessat(AT_FDCWD, link, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
	    access(meta, F_OK) != 0) {
		rc = ms__error_set(MS_ENOTFOUND, "%s: no model '%s' in the cache", c->dir, name);
		goto done;
	}
	if (if_unused) {
		if ((hold = ms__cache_model_lock(c, name)) == -2) {
			rc = ms__error_set(MS_EBUSY, "%s: model '%s' is held by a reader", c->dir,
			                   name);
			goto done;
		}
		if ((rc = list_models(c, &models, &model_count)) < 0)
			goto done;
		for (size_t m = 0; m < model_count; m++) {
			if (strcmp(models[m].name, name) != 0)
				continue;
			for (size_t k = 0; k < models[m].key_count; k++)
				if (ms__cache_blob_in_use(c, models[m].keys[k])) {
					rc = ms__error_set(
					    MS_EBUSY, "%s: model '%s' has a file open in a process",
					    c->dir, name);
					goto done;
				}
		}
	}
	unlink(link);
	unlink(meta);
	if (have_snap)
		remove_tree(snap);
done:
	models_free(models, model_count);
	if (hold >= 0)
		close(hold);
	close(lock);
	return rc;
}

int ms_cache_remove(ms_cache *c, const char *name)
{
	return remove_model(c, name, false);
}

int ms_cache_evict(ms_cache *c, const char *name)
{
	return remove_model(c, name, true);
}
