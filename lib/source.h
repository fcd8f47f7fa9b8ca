/*
 * source.h - where bytes come from: the back-end interface.
 *
 * A source is one object (a local file now; an S3 object later) that can say how big it
 * is and copy a byte range into caller memory. Nothing above this interface knows which
 * back end it has. Reads may run concurrently on one source from many threads.
 */
#ifndef MS_SOURCE_H
#define MS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"
#include "sink_mapped.h"

typedef struct ms__source ms__source;

typedef struct {
	/**
	 * Copies bytes [offset, offset + length) of the object into `dst`, stopping early only
	 * at the end of the object. `offset`, `length` and `dst` are multiples of the source's
	 * read_alignment. Returns 0 or an MS_E* code with the message set (naming the source).
	 * Called concurrently from several threads.
	 */
	int (*read_range)(ms__source *src, void *dst, uint64_t offset, size_t length);
	/** Releases the source. */
	void (*close)(ms__source *src);
	/**
	 * Optional, NULL where the bytes are not a local file: maps the whole object
	 * read-only for zero-copy delivery (see sink_mapped.h). Returns 0 or an MS_E* code.
	 */
	int (*map)(ms__source *src, ms__mapping *out);
	/** Optional with map: true if the bytes are in memory already (tmpfs, page cache). */
	bool (*in_memory)(ms__source *src);
	/**
	 * Optional: the bytes that have arrived so far for reads of this source, counted as
	 * they arrive (a read in progress included), for progress. NULL where a read is one
	 * system call: completed reads are counted by the engine.
	 */
	uint64_t (*received)(ms__source *src);
	/** Optional: aborts reads in flight and makes later ones fail with MS_ECANCELED. Any
	 * thread, at any time. */
	void (*cancel)(ms__source *src);
	/** Optional: congestion signals seen so far ("slow down" answers, timeouts), for
	 * admission control. */
	unsigned (*throttles)(ms__source *src);
} ms__source_ops;

struct ms__source {
	const ms__source_ops *ops;
	const char *location;  /* for messages: the path or URL as the user gave it */
	uint64_t size;         /* bytes */
	size_t read_alignment; /* offsets, lengths and buffers of reads align to this */
	int direct_io;         /* 1 if reads bypass the page cache */
	/* The read size this back end does best with when the caller sets none; 0: the
	 * streamer's default. Object storage wants larger reads than disks (fewer requests,
	 * each with its round trip and signature). */
	size_t preferred_chunk;
};

/** Opens a local file as a source. Returns 0 or MS_ENOTFOUND/MS_EACCES/MS_EIO/MS_ENOMEM. */
int ms__source_file_open(ms__source **out, const char *path, ms_direct_io direct_io);

static inline int ms__source_read(ms__source *src, void *dst, uint64_t offset, size_t length)
{
	return src->ops->read_range(src, dst, offset, length);
}

static inline uint64_t ms__source_received(ms__source *src)
{
	return src->ops->received != NULL ? src->ops->received(src) : 0;
}

static inline void ms__source_cancel(ms__source *src)
{
	if (src->ops->cancel != NULL)
		src->ops->cancel(src);
}

static inline unsigned ms__source_throttles(ms__source *src)
{
	return src->ops->throttles != NULL ? src->ops->throttles(src) : 0;
}

static inline void ms__source_close(ms__source *src)
{
	if (src != NULL)
		src->ops->close(src);
}

#endif
