/*
 * source_file.c - local files as a source: pread(2), with O_DIRECT where it pays off.
 *
 * Reading a file that is already in the page cache is a memory copy, and O_DIRECT would
 * throw that away and go to the device. Reading a file that is not cached through the
 * page cache costs an extra copy and evicts other data. So in auto mode the file is
 * mapped (not touched) and mincore(2), on a sample of its pages, tells how much of it is
 * resident: a large file that is mostly absent is read with O_DIRECT, anything else
 * through the cache. A file on tmpfs is memory: it is never measured, and read buffered.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "source.h"

/* O_DIRECT needs offsets, lengths and buffers aligned to the logical block size; 4096
 * covers every device we meet (512-byte and 4K sectors). */
#define DIRECT_ALIGNMENT 4096
/* Below this, the cost of a cold buffered read does not matter. */
#define DIRECT_MIN_FILE_SIZE (64ULL << 20)

typedef struct {
	ms__source base;
	int fd;
	char *path;
	double resident; /* the fraction of every page in the page cache; < 0: not measured */
} file_source;

static int file_read_range(ms__source *src, void *dst, uint64_t offset, size_t length)
{
	file_source *f = (file_source *)src;
	char *p = dst;
	uint64_t end = offset + length;

	if (end > src->size)
		end = src->size;
	while (offset < end) {
		ssize_t n = pread(f->fd, p, length, (off_t)offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return ms__error_errno(errno, "%s: read of %zu bytes at offset %llu failed",
			                       f->path, length, (unsigned long long)offset);
		}
		if (n == 0)
			return ms__error_set(MS_EIO,
			                     "%s: file ended at offset %llu, before its size of "
			                     "%llu bytes (was it truncated while being read?)",
			                     f->path, (unsigned long long)offset,
			                     (unsigned long long)src->size);
		p += n;
		offset += (uint64_t)n;
		length -= (size_t)n;
	}
	return 0;
}

static void file_close(ms__source *src)
{
	file_source *f = (file_source *)src;

	if (f->fd >= 0)
		close(f->fd);
	ms__free(f->path);
	ms__free(f);
}

static int file_map(ms__source *src, ms__mapping *out)
{
	file_source *f = (file_source *)src;

	return ms__mapping_open(out, f->fd, src->size, f->path);
}

/* On tmpfs, or every page in the page cache (each one looked at, once). */
static bool file_in_memory(ms__source *src)
{
	file_source *f = (file_source *)src;

	if (ms__on_tmpfs(f->fd))
		return true;
	if (f->resident < 0)
		f->resident = ms__resident_fraction(f->fd, src->size, false);
	return f->resident >= 1.0;
}

static const ms__source_ops file_ops = {
    .read_range = file_read_range,
    .close = file_close,
    .map = file_map,
    .in_memory = file_in_memory,
};

int ms__source_file_open(ms__source **out, const char *path, ms_direct_io direct_io)
{
	file_source *f = NULL;
	struct stat st;
	int use_direct = direct_io == MS_DIRECT_IO_ON;
	int rc = 0;

	*out = NULL;
	f = ms__calloc(1, sizeof(*f));
	if (f != NULL) {
		f->fd = -1;
		f->resident = -1;
	}
	if (f == NULL || (f->path = ms__strdup(path)) == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		rc = ms__error_errno(errno, "%s", path);
		goto done;
	}
	if (fstat(f->fd, &st) != 0) {
		rc = ms__error_errno(errno, "%s: stat failed", path);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = ms__error_set(MS_EFORMAT, "%s: not a regular file", path);
		goto done;
	}
	if (direct_io == MS_DIRECT_IO_AUTO && (uint64_t)st.st_size >= DIRECT_MIN_FILE_SIZE &&
	    !ms__on_tmpfs(f->fd))
		use_direct = ms__resident_fraction(f->fd, (uint64_t)st.st_size, true) < 0.5;
	if (use_direct) {
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);

		if (fd >= 0) {
			close(f->fd);
			f->fd = fd;
		} else if (direct_io == MS_DIRECT_IO_ON) {
			rc = ms__error_errno(errno, "%s: O_DIRECT open failed (try direct I/O off)",
			                     path);
			goto done;
		} else {
			use_direct = 0;
		}
	}
	f->base.ops = &file_ops;
	f->base.location = f->path;
	f->base.size = (uint64_t)st.st_size;
	f->base.read_alignment = use_direct ? DIRECT_ALIGNMENT : 1;
	f->base.direct_io = use_direct;
	*out = &f->base;
	f = NULL;
done:
	if (f != NULL)
		file_close(&f->base);
	return rc;
}
