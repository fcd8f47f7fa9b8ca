/*
 * fetch.c - filling the node cache: ms_cache_fetch() and ms_cache_verify().
 *
 * A fetch lists its source (fetch_source.c: one object, a prefix, a local file or
 * directory), makes room within the budget, then fetches each file into a blob and
 * publishes the model (cache.c).
 *
 * One blob, one downloader. Each blob has a lock file; the process that takes it
 * exclusively (flock, so the kernel releases it when the process dies, however it dies)
 * downloads; the others poll every 250 ms, reporting the downloader's progress from its
 * state file, until the blob appears or the lock comes free (the downloader died: one of
 * them takes over and resumes).
 *
 * The download. The partial file is given its full size first (ftruncate, then fallocate):
 * tmpfs with huge=within_size hands out huge pages only to a file whose size is set before
 * it is written, and a full disk fails here, before any byte moves, rather than as SIGBUS
 * in the middle. The file is mapped, and `concurrency` threads read chunks of the source
 * straight into the mapping (one copy: network or disk to page cache). After each chunk a
 * byte of the state file is set, so a fetch killed at any point resumes with the chunks
 * already done. A state file from another boot is not trusted on a disk cache (unsynced
 * pages may have been lost), and never applies to a different ETag, size or chunk size.
 *
 * Verification, before the blob gets its final name: the size; the ETag, held by If-Match
 * on every read (so every byte is from one version of the object); for *.safetensors, the
 * header parsed and its tensors tiling the data exactly to the end of the file; with
 * verify_content, the MD5 of the bytes against a single-part ETag.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "cancel.h"
#include "engine.h"
#include "gate.h"
#include "location.h"
#include "cache.h"
#include "fetch_source.h"
#include "error.h"
#include "safetensors.h"
#include "source.h"

#define STATE_MAGIC "MSPART01"
#define TICK_MS     250

/* The state file: this header, then one byte per chunk (1 = written). */
typedef struct {
	char magic[8];
	uint64_t size;
	uint64_t chunk_size;
	uint64_t chunks;
	char boot_id[40];
	char etag[256]; /* the ETag as the store sent it, NUL-padded */
} state_header;

/* A fetch in progress, for the callback. */
typedef struct {
	ms_cache *cache;
	ms_fetch_fn fn;
	void *payload;
	ms_fetch_progress p;
	struct timespec start;
	uint64_t done_before;    /* bytes of files finished before the current one */
	const source_list *list; /* the source's files, and its client's counters */
	ms__gate *gate;          /* remote back ends only */
} fetch;

/* ---------------------------------------------------------------------------------------- */
/* Progress                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void report(fetch *f, ms_fetch_state state, const char *file)
{
	struct timespec now;

	if (file != NULL && f->p.bytes_done >= f->done_before)
		f->p.file_bytes_done = f->p.bytes_done - f->done_before;
	if (state == MS_FETCH_FILE_DONE)
		f->p.file_bytes_done = f->p.file_bytes_total;

	clock_gettime(CLOCK_MONOTONIC, &now);
	f->p.state = state;
	f->p.file = file;
	f->p.seconds =
	    (double)(now.tv_sec - f->start.tv_sec) + (double)(now.tv_nsec - f->start.tv_nsec) / 1e9;
	if (f->list != NULL) {
		ms__backend_counters k;

		ms__fetch_source_counters(f->list, &k);
		f->p.retries = k.retries;
		f->p.throttled = k.throttles;
		memcpy(f->p.retries_by_reason, k.retries_by_reason, sizeof(k.retries_by_reason));
	}
	if (f->gate != NULL) {
		ms__admission_stats st;

		ms__gate_stats(f->gate, &st);
		f->p.window = st.window;
		f->p.slot_waits = st.slot_waits;
		f->p.reads_in_flight = st.in_flight;
	}
	if (f->fn != NULL)
		f->fn(&f->p, f->payload);
}

/* ---------------------------------------------------------------------------------------- */
/* One blob                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void boot_id(char out[40])
{
	FILE *fp = fopen("/proc/sys/kernel/random/boot_id", "re");

	memset(out, 0, 40);
	if (fp != NULL) {
		if (fgets(out, 40, fp) == NULL)
			out[0] = '\0';
		fclose(fp);
	}
}

/* Counts the chunks a state file says are done (a waiter's view of another download). */
static uint64_t state_bytes_done(const ms_cache *c, const char *key)
{
	char path[PATH_MAX];
	state_header h;
	unsigned char buf[4096];
	uint64_t done = 0, chunk = 0;
	ssize_t n;
	int fd;

	if (ms__cache_blob_path(c, key, ".state", path, sizeof(path)) < 0 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (read(fd, &h, sizeof(h)) == (ssize_t)sizeof(h) && memcmp(h.magic, STATE_MAGIC, 8) == 0) {
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			for (ssize_t i = 0; i < n; i++, chunk++)
				if (buf[i])
					done += chunk + 1 < h.chunks
					            ? h.chunk_size
					            : h.size - chunk * h.chunk_size;
	}
	close(fd);
	return done;
}

/* One blob's download: the partial file mapped, and its resume state. */
typedef struct {
	unsigned char *map;
	int fd; /* the partial file */
	int state_fd;
	uint64_t size, chunk;
	uint64_t chunks;
} download;

/* 0 if the file system of `fd` has room for `size` bytes more than the file holds, else
 * ENOSPC (or the errno of fstatvfs). */
static int room_for(int fd, uint64_t size)
{
	struct statvfs fs;
	struct stat st;
	uint64_t held, free_bytes;

	if (fstatvfs(fd, &fs) != 0 || fstat(fd, &st) != 0)
		return errno;
	held = (uint64_t)st.st_blocks * 512;
	free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize;
	return size > held && size - held > free_bytes ? ENOSPC : 0;
}

/* Opens (resuming) or creates the partial and its state; maps the partial. */
static int prepare(ms_cache *c, const source_file *sf, uint64_t chunk, download *d,
                   unsigned char **done_out, int *partial_fd)
{
	char partial[PATH_MAX], state[PATH_MAX];
	state_header want = {0}, have;
	unsigned char *done = NULL;
	bool resume = false;
	int fd = -1, rc = 0, err;

	*done_out = NULL;
	*partial_fd = -1;
	memcpy(want.magic, STATE_MAGIC, 8);
	want.size = sf->size;
	want.chunk_size = chunk;
	want.chunks = (sf->size + want.chunk_size - 1) / want.chunk_size;
	boot_id(want.boot_id);
	snprintf(want.etag, sizeof(want.etag), "%s", sf->etag);
	if ((rc = ms__cache_blob_path(c, sf->key, ".partial", partial, sizeof(partial))) < 0 ||
	    (rc = ms__cache_blob_path(c, sf->key, ".state", state, sizeof(state))) < 0)
		return rc;
	done = ms__calloc(want.chunks > 0 ? want.chunks : 1, 1);
	if (done == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", sf->location);
	d->state_fd = open(state, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (d->state_fd < 0) {
		rc = ms__error_errno(errno, "%s", state);
		goto fail;
	}
	fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = ms__error_errno(errno, "%s", partial);
		goto fail;
	}
	/* Resume only what this exact download wrote, on this boot or on a volatile medium. */
	if (pread(d->state_fd, &have, sizeof(have), 0) == (ssize_t)sizeof(have) &&
	    memcmp(have.magic, want.magic, 8) == 0 && have.size == want.size &&
	    have.chunk_size == want.chunk_size && have.chunks == want.chunks &&
	    strncmp(have.etag, want.etag, sizeof(want.etag)) == 0 &&
	    (c->medium != MS_CACHE_DISK || strncmp(have.boot_id, want.boot_id, 40) == 0)) {
		struct stat st;

		resume =
		    fstat(fd, &st) == 0 && (uint64_t)st.st_size == want.size &&
		    pread(d->state_fd, done, want.chunks, sizeof(have)) == (ssize_t)want.chunks;
	}
	if (!resume) {
		memset(done, 0, want.chunks > 0 ? want.chunks : 1);
		/* Size first (huge pages on tmpfs), then reserve every block (no ENOSPC later). */
		if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)want.size) != 0 ||
		    ftruncate(d->state_fd, 0) != 0 ||
		    pwrite(d->state_fd, &want, sizeof(want), 0) != (ssize_t)sizeof(want) ||
		    (want.chunks > 0 &&
		     ftruncate(d->state_fd, (off_t)(sizeof(want) + want.chunks)) != 0)) {
			rc = ms__error_errno(errno, "%s", partial);
			goto fail;
		}
		/* On a disk, reserving the blocks costs little and keeps the file in one piece.
		 * On tmpfs it means zeroing every page, one thread, before the first byte
		 * moves: there the free space is checked now and each chunk's pages are
		 * allocated by the worker that fills it (sink_cache.c), in parallel with the
		 * network (interleaved bench runs from nginx: best of runs 2.55-2.60 GB/s
		 * against 2.35-2.37 with everything allocated first). */
		if (want.size > 0 && c->medium != MS_CACHE_DISK)
			err = room_for(fd, want.size);
		else if (want.size > 0)
			err = posix_fallocate(fd, 0, (off_t)want.size);
		else
			err = 0;
		if (err != 0 && err != EOPNOTSUPP && err != EINVAL) {
			rc = err == ENOSPC || err == EDQUOT
			         ? ms__error_set(
			               MS_ENOSPC,
			               "%s: no space in the cache %s for its %llu bytes: %s",
			               sf->location, c->dir, (unsigned long long)want.size,
			               strerror(err))
			         : ms__error_errno(err, "%s: reserving %llu bytes", partial,
			                           (unsigned long long)want.size);
			goto fail;
		}
	}
	if (want.size > 0) {
		d->map = mmap(NULL, want.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (d->map == MAP_FAILED) {
			d->map = NULL;
			rc = ms__error_errno(errno, "%s: mapping %llu bytes", partial,
			                     (unsigned long long)want.size);
			goto fail;
		}
	}
	d->size = want.size;
	d->chunk = want.chunk_size;
	d->chunks = want.chunks;
	*done_out = done;
	*partial_fd = fd;
	d->fd = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (d->state_fd >= 0)
		close(d->state_fd);
	d->state_fd = -1;
	/* Nothing half-made stays behind that a later fetch could trust. */
	unlink(partial);
	unlink(state);
	ms__free(done);
	return rc;
}

/* Checks the downloaded bytes of a *.safetensors file: header and exact tiling. */
static int check_safetensors(const unsigned char *data, uint64_t size, const char *what)
{
	static const unsigned char empty[8];
	ms__st_header *h = NULL;
	uint64_t header_size;
	int rc;

	rc = ms__st_prefix_parse(&header_size, size >= 8 ? data : empty, size, what);
	if (rc == 0)
		rc = ms__st_header_parse(&h, (const char *)data + 8, (size_t)header_size, size,
		                         what);
	ms__st_header_free(h);
	return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* MD5 of `data` against a single-part ETag ("hex32"); other ETags cannot be checked. */
static int check_md5(const unsigned char *data, uint64_t size, const char *etag, const char *what)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char hex[33], want[33];
	size_t n = strlen(etag);

	if (n != 34 || etag[0] != '"' || etag[33] != '"' || strchr(etag, '-') != NULL)
		return 0;
	memcpy(want, etag + 1, 32);
	want[32] = '\0';
	if (EVP_Digest(size > 0 ? data : (const unsigned char *)"", (size_t)size, md, &len,
	               EVP_md5(), NULL) != 1 ||
	    len != 16)
		return ms__error_set(MS_ERROR, "%s: MD5 failed", what);
	for (unsigned i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (strcasecmp(hex, want) != 0)
		return ms__error_set(MS_EIO, "%s: the bytes' MD5 %s does not match the ETag %s",
		                     what, hex, etag);
	return 0;
}

/* Checks the downloaded bytes before they are published. */
static int verify_bytes(const unsigned char *data, uint64_t size, const source_file *sf,
                        bool content)
{
	int rc = 0;

	if (ends_with(sf->path, ".safetensors"))
		rc = check_safetensors(data, size, sf->location);
	if (rc == 0 && content)
		rc = check_md5(data, size, sf->etag, sf->location);
	return rc;
}

static bool fetch_canceled(const fetch *f)
{
	return ms__cancel_fired(f->cache->opts.cancel);
}

/*
 * Runs the engine over the chunks still missing, into the partial file, reporting progress
 * every tick: bytes as they arrive, so that one long read shows movement.
 */
static int run_download(fetch *f, ms__source *src, download *d, const unsigned char *done,
                        uint64_t resumed)
{
	ms_cache *c = f->cache;
	uint64_t fetched_before = f->p.bytes_fetched;
	ms__plan plan;
	ms__sink *sink = NULL;
	ms__engine *e = NULL;
	ms__engine_options eo = {
	    .concurrency = (unsigned)c->opts.concurrency,
	    .chunk_size = d->chunk,
	    .alignment = 1,
	};
	bool canceled = false;
	int rc;

	if ((rc = ms__plan_chunks(&plan, d->size, d->chunk, done)) < 0)
		return rc;
	if ((rc = ms__sink_cache_new(&sink, d->map, d->state_fd, d->chunk, sizeof(state_header),
	                             c->medium != MS_CACHE_DISK ? d->fd : -1, c->dir)) < 0 ||
	    (rc = ms__engine_new(&e)) < 0)
		goto done;
	eo.sink = sink;
	if ((rc = ms__engine_start(e, &plan, &src, 1, NULL, &eo)) < 0)
		goto done;
	for (;;) {
		uint64_t now;

		rc = ms__engine_wait(e, TICK_MS);
		now = ms__engine_received(e);
		if (now > plan.bytes_total)
			now = plan.bytes_total;
		f->p.bytes_done = f->done_before + resumed + now;
		f->p.bytes_fetched = fetched_before + now;
		if (f->gate != NULL)
			ms__gate_tick(f->gate);
		if (rc != 1)
			break;
		if (!canceled && fetch_canceled(f)) {
			/* Abort what is in flight; the engine then answers MS_ECANCELED. */
			canceled = true;
			if (f->gate != NULL)
				ms__gate_cancel(f->gate);
			ms__engine_cancel(e);
		}
		report(f, MS_FETCH_DOWNLOADING, f->p.file);
	}
	/* A failed download ends the fetch: reads still waiting out an unavailable store
	 * stop now rather than keep the workers (and the join below) for their patience. */
	if (rc < 0 && f->gate != NULL)
		ms__gate_cancel(f->gate);
	if (rc == MS_ECANCELED || canceled)
		rc = ms__error_set(MS_ECANCELED,
		                   "%s: canceled; the %llu bytes fetched stay for the "
		                   "next fetch to resume",
		                   src->location,
		                   (unsigned long long)(resumed + ms__engine_received(e)));
done:
	ms__engine_free(e);
	ms__sink_free(sink);
	ms__plan_free(&plan);
	return rc;
}

/* Downloads, verifies and publishes one blob; the caller holds its lock. */
static int download_blob(fetch *f, const source_list *l, const source_file *sf)
{
	ms_cache *c = f->cache;
	download d = {.fd = -1, .state_fd = -1};
	ms__source *src = NULL;
	unsigned char *done = NULL;
	uint64_t resumed = 0, chunk;
	char partial[PATH_MAX], final[PATH_MAX], state[PATH_MAX];
	int fd = -1, rc;

	if ((rc = ms__fetch_open_source(&src, l, sf)) < 0)
		return rc;
	if (src->size != sf->size) {
		rc = ms__error_set(MS_EIO,
		                   "%s: its size changed from %llu to %llu bytes while it "
		                   "was being fetched",
		                   sf->location, (unsigned long long)sf->size,
		                   (unsigned long long)src->size);
		ms__source_close(src);
		return rc;
	}
	/* Object storage passes the node's admission control and waits out throttling. */
	if (f->gate != NULL && (rc = ms__gate_wrap(&src, f->gate, src)) < 0)
		return rc;
	/* Reads of the caller's size, or else what the source prefers (16 MiB ranged GETs for
	 * object storage, 8 MiB for files). */
	chunk = c->opts.chunk_size > 0     ? c->opts.chunk_size
	        : src->preferred_chunk > 0 ? src->preferred_chunk
	                                   : MS__CACHE_DEFAULT_CHUNK;
	if ((rc = prepare(c, sf, chunk, &d, &done, &fd)) < 0) {
		ms__source_close(src);
		return rc;
	}
	for (uint64_t i = 0; i < d.chunks; i++)
		if (done[i])
			resumed += i + 1 < d.chunks ? d.chunk : d.size - i * d.chunk;
	rc = run_download(f, src, &d, done, resumed);
	ms__source_close(src);
	if (rc < 0)
		goto done; /* the partial and its state stay: the next fetch resumes from them */
	report(f, MS_FETCH_VERIFYING, sf->path);
	if ((rc = verify_bytes(d.map, d.size, sf, c->opts.verify_content)) < 0)
		goto discard;
	if (c->medium == MS_CACHE_DISK && d.size > 0 && fdatasync(fd) != 0) {
		rc = ms__error_errno(errno, "%s: writing the fetched file", sf->path);
		goto done;
	}
	ms__cache_blob_path(c, sf->key, ".partial", partial, sizeof(partial));
	ms__cache_blob_path(c, sf->key, "", final, sizeof(final));
	ms__cache_blob_path(c, sf->key, ".state", state, sizeof(state));
	{
		ms__cache_blob_info info = {sf->location, sf->etag, sf->size, (int64_t)time(NULL)};

		if ((rc = ms__cache_blob_record(c, sf->key, &info)) < 0)
			goto done;
	}
	if (fchmod(fd, 0444) != 0 || rename(partial, final) != 0) {
		rc = ms__error_errno(errno, "%s: publishing %s", final, sf->path);
		goto done;
	}
	unlink(state);
	goto done;
discard:
	/* Bytes that fail verification are not worth resuming. */
	ms__cache_blob_path(c, sf->key, ".partial", partial, sizeof(partial));
	ms__cache_blob_path(c, sf->key, ".state", state, sizeof(state));
	unlink(partial);
	unlink(state);
done:
	if (d.map != NULL)
		munmap(d.map, d.size);
	if (fd >= 0)
		close(fd);
	if (d.state_fd >= 0)
		close(d.state_fd);
	ms__free(done);
	return rc;
}

static bool blob_present(const ms_cache *c, const source_file *sf)
{
	char path[PATH_MAX];
	struct stat st;

	return ms__cache_blob_path(c, sf->key, "", path, sizeof(path)) == 0 &&
	       stat(path, &st) == 0 && (uint64_t)st.st_size == sf->size;
}

/* Reads the downloader's pid from the lock file (it writes it there). */
static int lock_owner(int fd)
{
	char text[32] = "";
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);

	text[n > 0 ? n : 0] = '\0';
	return n > 0 ? (int)strtol(text, NULL, 10) : 0;
}

/*
 * Gets one file into the cache: already there, downloaded by this process, or by another
 * one while this one waits (taking over if that one dies).
 */
static int fetch_blob(fetch *f, const source_list *l, const source_file *sf, bool *from_cache)
{
	ms_cache *c = f->cache;
	char lock_path[PATH_MAX], pid[32];
	int fd, rc;

	*from_cache = false;
	if (blob_present(c, sf)) {
		ms__cache_touch(c, sf->key);
		*from_cache = true;
		return 0;
	}
	if ((rc = ms__cache_blob_path(c, sf->key, ".lock", lock_path, sizeof(lock_path))) < 0)
		return rc;
	fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return ms__error_errno(errno, "%s", lock_path);
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			rc = ms__error_errno(errno, "%s: lock", lock_path);
			close(fd);
			return rc;
		}
		if (blob_present(c, sf))
			break;
		if (fetch_canceled(f)) {
			rc = ms__error_set(
			    MS_ECANCELED,
			    "%s: canceled while waiting for process %d to download it",
			    sf->location, lock_owner(fd));
			close(fd);
			return rc;
		}
		f->p.waiting_pid = lock_owner(fd);
		f->p.bytes_done = f->done_before + state_bytes_done(c, sf->key);
		report(f, MS_FETCH_WAITING, sf->path);
		usleep(TICK_MS * 1000);
	}
	f->p.waiting_pid = 0;
	if (blob_present(c, sf)) {
		/* Another process finished it (while we waited, or just before we locked). */
		close(fd);
		ms__cache_touch(c, sf->key);
		*from_cache = true;
		return 0;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, strlen(pid), 0) < 0)
		rc = ms__error_errno(errno, "%s", lock_path);
	else
		rc = download_blob(f, l, sf);
	close(fd); /* releases the lock */
	return rc;
}

/* Hashes a complete blob and compares it with the 64 hex digits at `want`. */
static int check_blob_sha256(const ms_cache *c, const source_file *sf, const char *want,
                             const char *manifest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char path[PATH_MAX], hex[65];
	struct stat st;
	void *map = NULL;
	int fd, rc = 0;

	ms__cache_blob_path(c, sf->key, "", path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return ms__error_errno(errno, "%s", path);
	if (fstat(fd, &st) != 0 ||
	    (st.st_size > 0 &&
	     (map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED)) {
		rc = ms__error_errno(errno, "%s", path);
		close(fd);
		return rc;
	}
	if (EVP_Digest(st.st_size > 0 ? map : "", (size_t)st.st_size, md, &len, EVP_sha256(),
	               NULL) != 1)
		rc = ms__error_set(MS_ERROR, "%s: SHA-256 failed", sf->location);
	if (map != NULL && map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	close(fd);
	for (unsigned i = 0; rc == 0 && i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (rc == 0 && strncasecmp(hex, want, 64) != 0)
		rc = ms__error_set(MS_EIO, "%s: its SHA-256 %s is not the %.64s that %s lists",
		                   sf->location, hex, want, manifest);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* A sha256 manifest                                                                          */
/* ---------------------------------------------------------------------------------------- */

#define MANIFEST_MAX (1u << 20)

/* Reads a small object or file whole (a manifest): at most MANIFEST_MAX bytes. */
static int read_small(char **out, size_t *len, const char *location)
{
	ms__source *src = NULL;
	char *buf;
	int rc;

	*out = NULL;
	rc = ms__source_open(&src, location, NULL);
	if (rc < 0)
		return rc;
	if (src->size > MANIFEST_MAX) {
		rc = ms__error_set(MS_EFORMAT, "%s: a manifest of %llu bytes (at most %u)",
		                   location, (unsigned long long)src->size, MANIFEST_MAX);
		ms__source_close(src);
		return rc;
	}
	buf = ms__malloc((size_t)src->size + 1);
	if (buf == NULL) {
		ms__source_close(src);
		return ms__error_set(MS_ENOMEM, "%s: out of memory", location);
	}
	rc = src->size > 0 ? ms__source_read(src, buf, 0, (size_t)src->size) : 0;
	*len = (size_t)src->size;
	ms__source_close(src);
	if (rc < 0) {
		ms__free(buf);
		return rc;
	}
	buf[*len] = '\0';
	*out = buf;
	return 0;
}

/*
 * Checks the fetched files against a sha256sum-format manifest ("<64 hex>  <path>" or
 * "<64 hex> *<path>" per line, paths relative to the model): every file it lists must be
 * in the model with that SHA-256. Runs before the model is published.
 */
static int check_manifest(fetch *f, const source_list *l, const char *manifest)
{
	char *text = NULL, *line, *save = NULL;
	size_t len = 0, lineno = 0, checked = 0;
	int rc;

	if ((rc = read_small(&text, &len, manifest)) < 0)
		return rc;
	if (memchr(text, '\0', len) != NULL) {
		ms__free(text);
		return ms__error_set(MS_EFORMAT, "%s: a manifest must be text", manifest);
	}
	for (line = strtok_r(text, "\n", &save); line != NULL && rc == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		const source_file *sf = NULL;
		const char *path;
		size_t n = strlen(line);

		lineno++;
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		if (n < 67 || strspn(line, "0123456789abcdefABCDEF") != 64 || line[64] != ' ' ||
		    (line[65] != ' ' && line[65] != '*')) {
			rc = ms__error_set(
			    MS_EFORMAT,
			    "%s:%zu: not a sha256sum line (\"<64 hex digits>  <path>\")", manifest,
			    lineno);
			break;
		}
		path = line + 66;
		while (path[0] == '.' && path[1] == '/')
			path += 2;
		for (size_t i = 0; i < l->count && sf == NULL; i++)
			if (strcmp(l->files[i].path, path) == 0)
				sf = &l->files[i];
		if (sf == NULL) {
			rc = ms__error_set(MS_ENOTFOUND,
			                   "%s:%zu: lists %.200s, which the model lacks", manifest,
			                   lineno, path);
			break;
		}
		report(f, MS_FETCH_VERIFYING, sf->path);
		rc = check_blob_sha256(f->cache, sf, line, manifest);
		checked++;
	}
	if (rc == 0 && checked == 0)
		rc = ms__error_set(MS_EFORMAT, "%s: lists no files", manifest);
	ms__free(text);
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* The public calls                                                                           */
/* ---------------------------------------------------------------------------------------- */

int ms_cache_fetch(ms_cache *c, const char *source, const char *name, ms_fetch_fn fn, void *payload)
{
	return ms_cache_fetch_verified(c, source, name, NULL, fn, payload);
}

int ms_cache_fetch_verified(ms_cache *c, const char *source, const char *name, const char *manifest,
                            ms_fetch_fn fn, void *payload)
{
	fetch f = {.cache = c,
	           .fn = fn,
	           .payload = payload,
	           .p = {.struct_size = sizeof(ms_fetch_progress)}};
	source_list l;
	ms__cache_file *files = NULL;
	const char **keys = NULL;
	uint64_t missing = 0;
	int rc;

	if (c == NULL || source == NULL)
		return ms__error_set(MS_EINVAL, "ms_cache_fetch: cache or source is NULL");
	if (!ms__cache_name_ok(name))
		return ms__error_set(MS_EINVAL,
		                     "'%.40s' is not a model name (1-128 of A-Z a-z 0-9 . _ -, not "
		                     "starting with '.')",
		                     name != NULL ? name : "(null)");
	clock_gettime(CLOCK_MONOTONIC, &f.start);
	f.p.model = name;
	report(&f, MS_FETCH_RESOLVING, NULL);
	memset(&l, 0, sizeof(l));
	/* A remote store is fetched under the node's admission, its listing included. */
	if (ms__backend_of(source)->remote) {
		ms__admission_options ao = {
		    .max_connections = c->opts.node_connections > 0 ? c->opts.node_connections : 64,
		    .max_bytes_per_second = c->opts.node_bytes_per_second,
		    .max_window = (unsigned)c->opts.concurrency,
		    .adaptive = !c->opts.fixed_concurrency,
		};
		unsigned token;

		if ((rc = ms__gate_open(&f.gate, c->dir, &ao, c->opts.patience_seconds)) < 0 ||
		    (rc = ms__gate_enter(f.gate, &token)) < 0)
			goto done;
		rc = ms__fetch_list_source(&l, source, c->opts.cancel);
		ms__gate_leave(f.gate, token);
	} else {
		rc = ms__fetch_list_source(&l, source, c->opts.cancel);
	}
	if (rc < 0)
		goto done;
	f.list = &l;
	files = ms__calloc(l.count, sizeof(*files));
	keys = ms__calloc(l.count, sizeof(*keys));
	if (files == NULL || keys == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", source);
		goto done;
	}
	f.p.files_total = l.count;
	for (size_t i = 0; i < l.count; i++) {
		f.p.bytes_total += l.files[i].size;
		keys[i] = l.files[i].key;
		if (!blob_present(c, &l.files[i]))
			missing += l.files[i].size;
	}
	{
		size_t evicted = 0;

		rc = ms__cache_make_room(c, missing, keys, l.count, &evicted);
		f.p.models_evicted = (unsigned)evicted;
		if (rc < 0)
			goto done;
	}
	for (size_t i = 0; i < l.count; i++) {
		const source_file *sf = &l.files[i];
		bool cached;

		if (fetch_canceled(&f)) {
			rc = ms__error_set(MS_ECANCELED, "%s: canceled", source);
			goto done;
		}
		f.p.file = sf->path;
		f.p.file_bytes_total = sf->size;
		f.p.file_bytes_done = 0;
		if ((rc = fetch_blob(&f, &l, sf, &cached)) < 0)
			goto done;
		f.done_before += sf->size;
		f.p.bytes_done = f.done_before;
		f.p.files_done++;
		f.p.from_cache = cached;
		report(&f, MS_FETCH_FILE_DONE, sf->path);
		f.p.from_cache = 0;
		files[i] = (ms__cache_file){sf->path, sf->key, sf->size, sf->etag, sf->location};
	}
	if (manifest != NULL && (rc = check_manifest(&f, &l, manifest)) < 0)
		goto done;
	if ((rc = ms__cache_publish(c, name, source, files, l.count)) < 0)
		goto done;
	report(&f, MS_FETCH_DONE, NULL);
done:
	ms__gate_close(f.gate);
	ms__free(files);
	ms__free(keys);
	ms__fetch_source_free(&l);
	return rc;
}

int ms_cache_verify(ms_cache *c, const char *name, int content)
{
	char path[PATH_MAX], meta_path[PATH_MAX];
	const cJSON *item;
	cJSON *meta;
	int rc;

	if ((rc = ms_cache_model_path(path, sizeof(path), c, name)) < 0)
		return rc;
	snprintf(meta_path, sizeof(meta_path), "%s/models/.meta/%s.json", c->dir, name);
	if (access(meta_path, F_OK) != 0)
		return ms__error_set(MS_ENOTFOUND, "%s: no model '%s' in the cache", c->dir, name);
	if ((meta = ms__cache_read_json(meta_path)) == NULL)
		return ms_error_last()->code;
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(meta, "files"))
	{
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(item, "path");
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(item, "key");
		const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "size");
		const cJSON *etag = cJSON_GetObjectItemCaseSensitive(item, "etag");
		char blob[PATH_MAX], what[PATH_MAX + 8];
		source_file sf = {0};
		struct stat st;
		void *map = NULL;
		int fd;

		if (!cJSON_IsString(p) || !cJSON_IsString(k) || !cJSON_IsNumber(size) ||
		    strlen(k->valuestring) != MS__CACHE_KEY_LEN) {
			rc = ms__error_set(MS_EFORMAT, "%s: a damaged file entry", meta_path);
			break;
		}
		snprintf(what, sizeof(what), "%s/%s", path, p->valuestring);
		ms__cache_blob_path(c, k->valuestring, "", blob, sizeof(blob));
		if ((fd = open(blob, O_RDONLY | O_CLOEXEC)) < 0) {
			rc = ms__error_errno(errno, "%s: its cached file %s", what, blob);
			break;
		}
		if (fstat(fd, &st) != 0 || (double)st.st_size != size->valuedouble) {
			rc = ms__error_set(MS_EIO, "%s: %lld bytes in the cache, %.0f recorded",
			                   what, (long long)st.st_size, size->valuedouble);
			close(fd);
			break;
		}
		if (st.st_size > 0 && (map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED,
		                                  fd, 0)) == MAP_FAILED) {
			rc = ms__error_errno(errno, "%s: mapping", what);
			close(fd);
			break;
		}
		sf.path = p->valuestring;
		sf.location = what;
		sf.etag = cJSON_IsString(etag) ? etag->valuestring : "";
		rc = verify_bytes(map, (uint64_t)st.st_size, &sf, content);
		if (map != NULL)
			munmap(map, (size_t)st.st_size);
		close(fd);
		if (rc < 0)
			break;
	}
	cJSON_Delete(meta);
	return rc;
}
