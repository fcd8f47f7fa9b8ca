/*
 * streamer.c - the public streamer: files, their headers, the tensor table, selection.
 *
 * ms_streamer_add() opens a source, reads its head in one round trip and parses the
 * header, so that a broken file fails where it is named. The first ms_streamer_next()
 * selects tensors, builds the read plan and starts the engine; from then on the streamer
 * only hands out what the engine delivers.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fnmatch.h>
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "cache/gate.h"
#include "device.h"
#include "engine.h"
#include "error.h"
#include "plan.h"
#include "safetensors.h"
#include "source.h"
#include "location.h"
#include "model_dir.h"
#include "sink_cuda.h"

#define DEFAULT_CONCURRENCY 16
#define MAX_CONCURRENCY     256
#define DEFAULT_CHUNK_SIZE  (8u << 20)
#define MIN_CHUNK_SIZE      (64u << 10)
#define MAX_CHUNK_SIZE      (1u << 30)
/* Every extent's block starts on a page, with the same offset inside the page as its
 * bytes have in the file: tensors keep their file alignment in memory, and O_DIRECT
 * reads need no bounce buffer. */
#define READ_ALIGNMENT 4096
/* A device stream's staging ring when the caller sets no memory limit (or twice the
 * largest extent, if more). */
#define DEFAULT_STAGING (512u << 20)

typedef struct {
	ms__source *source;
	ms__st_header *header;
	size_t first_tensor; /* index of its first tensor in the table */
} file_entry;

struct ms_streamer {
	ms_streamer_options opts;
	ms_deliver delivery;   /* COPY or MAPPED once started; AUTO before */
	ms__mapping *mappings; /* MAPPED: one per file */
	ms__sink *sink;        /* where the engine's reads land; freed after the engine */
	ms__gate *gate;        /* node admission for object storage, or NULL */
	ms__device *device;    /* the device stage, or NULL for host delivery */
	char **select;         /* copies of opts.select */
	bool chunk_auto;       /* the caller set no chunk size: the sources may choose */

	file_entry *files;
	ms__source **sources; /* files[i].source, as the engine wants them */
	size_t file_count;
	size_t file_capacity;
	size_t source_capacity; /* grows apart from file_capacity: either growth may fail */

	ms_tensor *table; /* every tensor of every file, in file order */
	size_t table_count;
	size_t table_capacity;

	ms__engine *engine; /* exists from new() on, so that cancel() always has it */
	int started;
	atomic_bool resolved; /* start() succeeded: chunk size, concurrency, delivery final */
	int start_code;       /* a failed start, replayed by next() */
	char start_message[MS__ERROR_MAX];
	ms__plan plan;
	ms_tensor *delivered; /* plan.tensor_count entries: what next() hands out */
};

const char *ms_version(void)
{
	return MS_VERSION_STRING;
}

void ms_streamer_options_init(ms_streamer_options *opts)
{
	ms_streamer_options defaults = MS_STREAMER_OPTIONS_INIT;

	*opts = defaults;
}

/* Parses a whole decimal integer; returns 0 or -1. */
static int parse_int64(int64_t *out, const char *text)
{
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

typedef struct {
	const char *name;
	int64_t min;
	int64_t max;
	int64_t *value;
	int set;
} env_setting;

int ms_streamer_options_from_env(ms_streamer_options *opts)
{
	int64_t concurrency = opts->concurrency, limit = opts->memory_limit,
	        chunk = (int64_t)opts->chunk_size;
	/* Later entries win: our own names override Run:ai's. */
	env_setting settings[] = {
	    {"RUNAI_STREAMER_CONCURRENCY", 1, MAX_CONCURRENCY, &concurrency, 0},
	    {"RUNAI_STREAMER_MEMORY_LIMIT", -1, INT64_MAX, &limit, 0},
	    {"RUNAI_STREAMER_CHUNK_BYTESIZE", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, &chunk, 0},
	    {"MODELSTREAM_CONCURRENCY", 1, MAX_CONCURRENCY, &concurrency, 0},
	    {"MODELSTREAM_MEMORY_LIMIT", -1, INT64_MAX, &limit, 0},
	    {"MODELSTREAM_CHUNK_SIZE", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, &chunk, 0},
	};

	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const char *text = getenv(settings[i].name);
		int64_t v;

		if (text == NULL)
			continue;
		if (parse_int64(&v, text) != 0 || v < settings[i].min || v > settings[i].max)
			return ms__error_set(MS_EINVAL,
			                     "%s=%s: expected an integer from %lld to %lld",
			                     settings[i].name, text, (long long)settings[i].min,
			                     (long long)settings[i].max);
		*settings[i].value = v;
	}
	opts->concurrency = (unsigned)concurrency;
	opts->memory_limit = limit;
	opts->chunk_size = (size_t)chunk;
	return 0;
}

static int check_options(const ms_streamer_options *o)
{
	if (o->version == 0 || o->version > MS_STREAMER_OPTIONS_VERSION)
		return ms__error_set(
		    MS_EINVAL, "options version %u is not supported (this library knows 1 to %d)",
		    o->version, MS_STREAMER_OPTIONS_VERSION);
	if (o->concurrency > MAX_CONCURRENCY)
		return ms__error_set(MS_EINVAL, "concurrency %u is above the limit of %d",
		                     o->concurrency, MAX_CONCURRENCY);
	if (o->memory_limit < -1)
		return ms__error_set(
		    MS_EINVAL,
		    "memory limit %lld is invalid (use -1 for unlimited, 0 for the "
		    "largest tensor, or a size in bytes)",
		    (long long)o->memory_limit);
	if (o->chunk_size != 0 &&
	    (o->chunk_size < MIN_CHUNK_SIZE || o->chunk_size > MAX_CHUNK_SIZE))
		return ms__error_set(MS_EINVAL, "chunk size %zu is outside %u to %u bytes",
		                     o->chunk_size, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
	if ((unsigned)o->direct_io > MS_DIRECT_IO_ON)
		return ms__error_set(MS_EINVAL, "direct I/O mode %d is invalid", (int)o->direct_io);
	if ((unsigned)o->arena_pages > MS_ARENA_PAGES_RESERVED)
		return ms__error_set(MS_EINVAL, "arena pages mode %d is invalid",
		                     (int)o->arena_pages);
	if (o->version >= 2 && (unsigned)o->deliver > MS_DELIVER_AUTO)
		return ms__error_set(MS_EINVAL, "delivery mode %d is invalid", (int)o->deliver);
	if (o->version >= 3 && o->node_dir == NULL &&
	    (o->node_connections > 0 || o->node_bytes_per_second > 0))
		return ms__error_set(MS_EINVAL,
		                     "node_connections and node_bytes_per_second need node_dir, "
		                     "the directory whose budget the node shares");
	if (o->version >= 4 && o->device < MS_DEVICE_CPU)
		return ms__error_set(MS_EINVAL,
		                     "device %d is invalid (MS_DEVICE_CPU, or a CUDA device index)",
		                     o->device);
	if (o->version >= 4 && (o->device_alignment & (o->device_alignment - 1)) != 0)
		return ms__error_set(MS_EINVAL, "device alignment %llu is not a power of two",
		                     (unsigned long long)o->device_alignment);
	if (o->version >= 4 && o->device_alloc != NULL && o->device == MS_DEVICE_CPU)
		return ms__error_set(MS_EINVAL, "device_alloc needs a device (options.device)");
	if (o->select_count > 0 && o->select == NULL)
		return ms__error_set(MS_EINVAL, "select_count is %zu but select is NULL",
		                     o->select_count);
	for (size_t i = 0; i < o->select_count; i++)
		if (o->select[i] == NULL)
			return ms__error_set(MS_EINVAL, "select pattern %zu is NULL", i);
	return 0;
}

int ms_streamer_new(ms_streamer **out, const ms_streamer_options *opts)
{
	ms_streamer_options defaults = MS_STREAMER_OPTIONS_INIT;
	ms_streamer *s = NULL;
	int rc;

	if (out == NULL)
		return ms__error_set(MS_EINVAL, "ms_streamer_new: out is NULL");
	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	if ((rc = check_options(opts)) < 0)
		return rc;
	s = ms__calloc(1, sizeof(*s));
	if (s == NULL) {
		rc = ms__error_set(MS_ENOMEM, "out of memory creating a streamer");
		goto done;
	}
	atomic_init(&s->resolved, false);
	/* A caller built against an older header passed a shorter struct: copy only the
	 * fields its version has, and give the others their defaults. */
	s->opts = defaults;
	memcpy(&s->opts, opts,
	       opts->version >= 4   ? sizeof(*opts)
	       : opts->version == 3 ? offsetof(ms_streamer_options, device)
	       : opts->version == 2 ? offsetof(ms_streamer_options, node_dir)
	                            : offsetof(ms_streamer_options, deliver));
	s->opts.version = MS_STREAMER_OPTIONS_VERSION;
	s->opts.select = NULL;
	s->opts.node_dir = NULL;
	if (opts->version >= 3 && opts->node_dir != NULL) {
		ms__admission_options ao = {
		    .max_connections = opts->node_connections > 0 ? opts->node_connections : 64,
		    .max_bytes_per_second = opts->node_bytes_per_second,
		    .max_window =
		        s->opts.concurrency > 0 ? s->opts.concurrency : DEFAULT_CONCURRENCY,
		    .adaptive = true,
		};

		if ((rc = ms__gate_open(&s->gate, opts->node_dir, &ao, opts->patience_seconds)) < 0)
			goto done;
	}
	if (s->opts.device != MS_DEVICE_CPU) {
		ms__device_options dev = {
		    .index = s->opts.device,
		    .alignment = s->opts.device_alignment != 0 ? s->opts.device_alignment
		                                               : MS_DEVICE_ALIGNMENT_DEFAULT,
		    .alloc = s->opts.device_alloc,
		    .alloc_payload = s->opts.device_alloc_payload,
		};

		if ((rc = ms__device_open(&s->device, &dev)) < 0)
			goto done;
	}
	if (s->opts.concurrency == 0)
		s->opts.concurrency = DEFAULT_CONCURRENCY;
	s->chunk_auto = s->opts.chunk_size == 0;
	if (s->opts.chunk_size == 0)
		s->opts.chunk_size = DEFAULT_CHUNK_SIZE;
	/* Chunks are whole pages so that reads stay aligned for O_DIRECT. */
	s->opts.chunk_size =
	    (s->opts.chunk_size + READ_ALIGNMENT - 1) & ~(size_t)(READ_ALIGNMENT - 1);
	if (opts->select_count > 0) {
		s->select = ms__calloc(opts->select_count, sizeof(char *));
		if (s->select == NULL) {
			rc = ms__error_set(MS_ENOMEM, "out of memory creating a streamer");
			goto done;
		}
		for (size_t i = 0; i < opts->select_count; i++) {
			s->select[i] = ms__strdup(opts->select[i]);
			if (s->select[i] == NULL) {
				rc = ms__error_set(MS_ENOMEM, "out of memory creating a streamer");
				goto done;
			}
		}
	}
	if ((rc = ms__engine_new(&s->engine)) < 0)
		goto done;
	*out = s;
	s = NULL;
done:
	ms_streamer_free(s);
	return rc;
}

/* Reads bytes [0, length) of `src` into a new buffer aligned for the source's reads. The
 * block to free is returned in *out_block; the aligned bytes in *out. */
static int read_head(unsigned char **out, void **out_block, ms__source *src, uint64_t length)
{
	size_t align = src->read_alignment;
	size_t rounded = (size_t)((length + align - 1) / align * align);
	unsigned char *block;
	int rc;

	*out = NULL;
	*out_block = NULL;
	block = ms__malloc(rounded + align);
	if (block == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory reading its header",
		                     src->location);
	*out = (unsigned char *)(((uintptr_t)block + align - 1) / align * align);
	*out_block = block;
	rc = ms__source_read(src, *out, 0, rounded);
	if (rc < 0) {
		ms__free(block);
		*out = NULL;
		*out_block = NULL;
	}
	return rc;
}

static int load_header(ms__st_header **out, ms__source *src)
{
	static const unsigned char empty_prefix[8];
	uint64_t first = src->size < MS__ST_FIRST_READ ? src->size : MS__ST_FIRST_READ;
	unsigned char *head = NULL;
	void *block = NULL;
	uint64_t header_size;
	int rc;

	if (src->size < 8) /* reports the short file without reading it */
		return ms__st_prefix_parse(&header_size, empty_prefix, src->size, src->location);
	if ((rc = read_head(&head, &block, src, first)) < 0)
		return rc;
	if ((rc = ms__st_prefix_parse(&header_size, head, src->size, src->location)) < 0)
		goto done;
	if (8 + header_size > first) {
		/* A header larger than the first read: one more round trip, for all of it. */
		ms__free(block);
		if ((rc = read_head(&head, &block, src, 8 + header_size)) < 0)
			goto done;
	}
	rc = ms__st_header_parse(out, (const char *)head + 8, (size_t)header_size, src->size,
	                         src->location);
done:
	ms__free(block);
	return rc;
}

/* Reads the header of `src` and appends its tensors; takes ownership of `src`. */
static int add_source(ms_streamer *s, ms__source *src, const char *path)
{
	ms__st_header *header = NULL;
	int rc;

	/* Object storage shares the node's admission (the header's read included). */
	if (s->gate != NULL && ms__backend_of(path)->remote &&
	    (rc = ms__gate_wrap(&src, s->gate, src)) < 0)
		return rc;
	if ((rc = load_header(&header, src)) < 0)
		goto done;
	if (ms__grow((void **)&s->files, &s->file_capacity, s->file_count + 1, sizeof(*s->files)) !=
	        0 ||
	    ms__grow((void **)&s->sources, &s->source_capacity, s->file_count + 1,
	             sizeof(*s->sources)) != 0 ||
	    ms__grow((void **)&s->table, &s->table_capacity, s->table_count + header->tensor_count,
	             sizeof(*s->table)) != 0) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory adding %zu tensors", path,
		                   header->tensor_count);
		goto done;
	}
	for (size_t i = 0; i < header->tensor_count; i++) {
		const ms__st_tensor *t = &header->tensors[i];

		s->table[s->table_count + i] = (ms_tensor){
		    .struct_size = sizeof(ms_tensor),
		    .name = t->name,
		    .dtype = t->dtype,
		    .shape = t->shape,
		    .ndim = t->ndim,
		    .data = NULL,
		    .size = t->end - t->begin,
		    .file_index = s->file_count,
		    .file_offset = header->data_start + t->begin,
		    .device = MS_DEVICE_CPU,
		};
	}
	s->files[s->file_count] =
	    (file_entry){.source = src, .header = header, .first_tensor = s->table_count};
	s->sources[s->file_count] = src;
	s->file_count++;
	s->table_count += header->tensor_count;
	src = NULL;
	header = NULL;
done:
	ms__st_header_free(header);
	ms__source_close(src);
	return rc;
}

/* Adds every *.safetensors file of a directory or prefix, all or nothing. */
static int add_directory(ms_streamer *s, const char *path)
{
	ms__open_options o = {.direct_io = s->opts.direct_io};
	size_t files_before = s->file_count, tensors_before = s->table_count;
	bool gated = s->gate != NULL && ms__backend_of(path)->remote;
	ms__listing dir;
	unsigned token = 0;
	int rc;

	/* The listing is a request to the store like any read: it takes a place too. */
	if (gated && (rc = ms__gate_enter(s->gate, &token)) < 0)
		return rc;
	rc = ms__model_dir_open(&dir, path, &o);
	if (gated)
		ms__gate_leave(s->gate, token);

	for (size_t i = 0; rc == 0 && i < dir.count; i++) {
		ms__source *src = NULL;

		if ((rc = ms__listing_open(&src, &dir, i, &o)) == 0)
			rc = add_source(s, src, dir.entries[i].location);
	}
	/* The sources keep what they need of the listing (a reference to its client). */
	ms__listing_free(&dir);
	/* All or nothing: a bad shard takes the directory's other files back out. */
	for (size_t i = files_before; rc < 0 && i < s->file_count; i++) {
		ms__source_close(s->files[i].source);
		ms__st_header_free(s->files[i].header);
	}
	if (rc < 0) {
		s->file_count = files_before;
		s->table_count = tensors_before;
	}
	return rc;
}

int ms_streamer_add(ms_streamer *s, const char *path)
{
	ms__open_options o;
	ms__source *src = NULL;
	unsigned token = 0;
	bool gated;
	int rc;

	if (s == NULL || path == NULL)
		return ms__error_set(MS_EINVAL, "ms_streamer_add: streamer or path is NULL");
	if (s->started)
		return ms__error_set(MS_ESTATE,
		                     "%s: files cannot be added once streaming has started", path);
	if (ms__location_is_dir(path))
		return add_directory(s, path);
	o = (ms__open_options){.direct_io = s->opts.direct_io};
	/* Opening an object is a request (a HEAD): under the node's budget too. */
	gated = s->gate != NULL && ms__backend_of(path)->remote;
	if (gated && (rc = ms__gate_enter(s->gate, &token)) < 0)
		return rc;
	rc = ms__source_open(&src, path, &o);
	if (gated)
		ms__gate_leave(s->gate, token);
	if (rc < 0)
		return rc;
	return add_source(s, src, path);
}

int ms_streamer_add_many(ms_streamer *s, const char *const *paths, size_t count)
{
	int rc = 0;

	if (count > 0 && paths == NULL)
		return ms__error_set(MS_EINVAL, "ms_streamer_add_many: paths is NULL");
	for (size_t i = 0; i < count && rc == 0; i++)
		rc = ms_streamer_add(s, paths[i]);
	return rc;
}

size_t ms_streamer_file_count(const ms_streamer *s)
{
	return s == NULL ? 0 : s->file_count;
}

int ms_streamer_file_info(ms_file_info *out, const ms_streamer *s, size_t file_index)
{
	const file_entry *f;

	ms_file_info full;

	if (out == NULL || s == NULL || file_index >= s->file_count)
		return ms__error_set(MS_EINVAL, "file index %zu is out of range", file_index);
	f = &s->files[file_index];
	full = (ms_file_info){
	    .struct_size = sizeof(ms_file_info),
	    .path = f->source->location,
	    .size = f->source->size,
	    .header_size = f->header->header_size,
	    .tensor_count = f->header->tensor_count,
	    .metadata_count = f->header->metadata_count,
	    .direct_io = f->source->direct_io,
	};
	return ms__fill_sized(out, &full, sizeof(full), sizeof(ms_file_info),
	                      "ms_streamer_file_info");
}

int ms_streamer_metadata_at(const char **out_key, const char **out_value, const ms_streamer *s,
                            size_t file_index, size_t i)
{
	const ms__st_header *h;

	if (s == NULL || out_key == NULL || out_value == NULL || file_index >= s->file_count)
		return ms__error_set(MS_EINVAL, "file index %zu is out of range", file_index);
	h = s->files[file_index].header;
	if (i >= h->metadata_count)
		return ms__error_set(MS_ENOTFOUND, "%s: __metadata__ has no entry %zu",
		                     s->files[file_index].source->location, i);
	*out_key = h->metadata_keys[i];
	*out_value = h->metadata_values[i];
	return 0;
}

int ms_streamer_metadata_get(const char **out_value, const ms_streamer *s, size_t file_index,
                             const char *key)
{
	const ms__st_header *h;

	if (s == NULL || out_value == NULL || key == NULL || file_index >= s->file_count)
		return ms__error_set(MS_EINVAL, "file index %zu is out of range", file_index);
	h = s->files[file_index].header;
	for (size_t i = 0; i < h->metadata_count; i++) {
		if (strcmp(h->metadata_keys[i], key) == 0) {
			*out_value = h->metadata_values[i];
			return 0;
		}
	}
	return ms__error_set(MS_ENOTFOUND, "%s: __metadata__ has no key '%s'",
	                     s->files[file_index].source->location, key);
}

size_t ms_streamer_tensor_count(const ms_streamer *s)
{
	return s == NULL ? 0 : s->table_count;
}

int ms_streamer_tensor_at(ms_tensor *out, const ms_streamer *s, size_t i)
{
	if (out == NULL || s == NULL || i >= s->table_count)
		return ms__error_set(MS_EINVAL, "tensor index %zu is out of range", i);
	return ms__fill_sized(out, &s->table[i], sizeof(ms_tensor), sizeof(ms_tensor),
	                      "ms_streamer_tensor_at");
}

static int is_selected(const ms_streamer *s, const char *name)
{
	if (s->opts.select_count == 0)
		return 1;
	for (size_t i = 0; i < s->opts.select_count; i++)
		if (fnmatch(s->select[i], name, 0) == 0)
			return 1;
	return 0;
}

/* Without a chunk size from the caller, the largest that any source prefers. */
static void choose_chunk_size(ms_streamer *s)
{
	if (!s->chunk_auto)
		return;
	for (size_t i = 0; i < s->file_count; i++)
		if (s->sources[i]->preferred_chunk > s->opts.chunk_size)
			s->opts.chunk_size = s->sources[i]->preferred_chunk;
}

/* Decides how tensors are delivered, and maps the files for MS_DELIVER_MAPPED. */
static int choose_delivery(ms_streamer *s)
{
	ms_deliver want = s->opts.deliver;
	int rc;

	s->delivery = MS_DELIVER_COPY;
	if (want == MS_DELIVER_COPY)
		return 0;
	for (size_t i = 0; i < s->file_count; i++) {
		const ms__source *src = s->files[i].source;

		if (src->ops->map == NULL) {
			if (want == MS_DELIVER_AUTO)
				return 0;
			return ms__error_set(MS_EUNSUPPORTED,
			                     "%s: mapped delivery needs a local file (use copy "
			                     "delivery, or auto, for object storage)",
			                     src->location);
		}
		if (want == MS_DELIVER_AUTO && !src->ops->in_memory(s->files[i].source))
			return 0;
	}
	s->mappings = ms__calloc(s->file_count + 1, sizeof(*s->mappings));
	if (s->mappings == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory mapping %zu files", s->file_count);
	for (size_t i = 0; i < s->file_count; i++) {
		ms__source *src = s->files[i].source;

		if ((rc = src->ops->map(src, &s->mappings[i])) < 0) {
			if (want == MS_DELIVER_MAPPED)
				return rc;
			/* auto: a file that cannot be mapped is read as usual. */
			for (size_t j = 0; j < i; j++)
				ms__mapping_close(&s->mappings[j]);
			return 0;
		}
	}
	s->delivery = MS_DELIVER_MAPPED;
	return 0;
}

/* Mapped delivery to a device: the driver must pin the mappings, or the stream stages. */
static int device_mapped(ms_streamer *s)
{
	const char **names = ms__calloc(s->file_count + 1, sizeof(*names));
	int rc;

	if (names == NULL)
		return ms__error_set(MS_ENOMEM, "out of memory mapping %zu files", s->file_count);
	for (size_t i = 0; i < s->file_count; i++)
		names[i] = s->files[i].source->location;
	rc = ms__device_try_mapped(s->device, s->mappings, names, s->file_count);
	ms__free(names);
	if (rc == 1) {
		for (size_t i = 0; i < s->file_count; i++)
			ms__mapping_close(&s->mappings[i]);
		s->delivery = MS_DELIVER_COPY;
		rc = 0;
	}
	return rc;
}

/* Selects tensors, plans the reads, sizes the arena and starts the engine. */
static int start(ms_streamer *s)
{
	ms__plan_options plan_opts = {
	    .extent_target = s->opts.chunk_size,
	    .chunk_size = s->opts.chunk_size,
	    .alignment = READ_ALIGNMENT,
	};
	ms__engine_options engine_opts = {
	    .concurrency = s->opts.concurrency,
	    .chunk_size = s->opts.chunk_size,
	    .alignment = READ_ALIGNMENT,
	};
	int ring = s->opts.memory_limit >= 0;
	uint64_t ring_size;
	unsigned char *selected = NULL;
	size_t largest = SIZE_MAX;
	int rc = 0;

	if ((rc = choose_delivery(s)) < 0)
		goto done;
	if (s->device != NULL && s->delivery == MS_DELIVER_MAPPED && (rc = device_mapped(s)) < 0)
		goto done;
	if (s->delivery == MS_DELIVER_MAPPED) {
		/* The file's own pages: no arena, no ring, nothing for a limit to bound. */
		ring = 0;
	} else if (s->device != NULL) {
		/* A staging ring: bytes stay in it only until their copy has landed. */
		ring = 1;
	}
	selected = ms__calloc(s->table_count, 1);
	if (selected == NULL && s->table_count > 0) {
		rc = ms__error_set(MS_ENOMEM, "out of memory selecting tensors");
		goto done;
	}
	for (size_t i = 0; i < s->table_count; i++) {
		selected[i] = (unsigned char)is_selected(s, s->table[i].name);
		if (selected[i] &&
		    (largest == SIZE_MAX || s->table[i].size > s->table[largest].size))
			largest = i;
	}
	if (ring && s->opts.memory_limit > 0 && largest != SIZE_MAX &&
	    (uint64_t)s->opts.memory_limit < s->table[largest].size) {
		char printable[MS__PRINTABLE_MAX];

		rc = ms__error_set(
		    MS_ELIMIT,
		    "memory limit %lld bytes is smaller than tensor '%s' (%llu bytes) "
		    "in %s; raise it, or use 0 for the smallest limit that works",
		    (long long)s->opts.memory_limit,
		    ms__printable(printable, sizeof(printable), s->table[largest].name),
		    (unsigned long long)s->table[largest].size,
		    s->files[s->table[largest].file_index].source->location);
		goto done;
	}
	/* In a ring, several extents must fit at once or storage idles while the caller
	 * works: small tensors merge into extents of at most a quarter of the ring. */
	if (ring && s->opts.memory_limit > 0 &&
	    (uint64_t)s->opts.memory_limit / 4 < plan_opts.extent_target)
		plan_opts.extent_target = (uint64_t)s->opts.memory_limit / 4;
	if ((rc = ms__plan_build(&s->plan, s->table, s->table_count, selected, &plan_opts)) < 0)
		goto done;
	ring_size = (uint64_t)s->opts.memory_limit;
	if (s->device != NULL && s->opts.memory_limit < 0) {
		/* Room for two of the largest extents at least, so that one is read while the
		 * other is copied; never more than the whole selection. */
		ring_size = DEFAULT_STAGING;
		if (ring_size < 2 * s->plan.largest_span)
			ring_size = 2 * s->plan.largest_span;
		if (ring_size > s->plan.spans_total)
			ring_size = s->plan.spans_total;
	}
	if (ring_size < s->plan.largest_span)
		ring_size = s->plan.largest_span;
	s->delivered = ms__calloc(s->plan.tensor_count, sizeof(*s->delivered));
	if (s->delivered == NULL && s->plan.tensor_count > 0) {
		rc = ms__error_set(MS_ENOMEM, "out of memory starting to stream");
		goto done;
	}
	if (s->delivery == MS_DELIVER_MAPPED)
		rc = ms__sink_mapped_new(&s->sink, s->mappings);
	else
		rc = ms__sink_host_new(&s->sink, ring ? ring_size : s->plan.spans_total, ring,
		                       READ_ALIGNMENT, s->opts.arena_pages);
	if (rc < 0)
		goto done;
	if (s->device != NULL && s->delivery != MS_DELIVER_MAPPED) {
		void *base;
		size_t size;

		ms__sink_host_memory(s->sink, &base, &size);
		ms__device_pin_staging(s->device, base, size);
	}
	engine_opts.sink = s->sink;
	rc = ms__engine_start(s->engine, &s->plan, s->sources, s->file_count, s->table,
	                      &engine_opts);
	if (rc == 0 && s->device != NULL)
		rc = ms__device_start(s->device, s->engine, &s->plan, s->table,
		                      s->delivery == MS_DELIVER_MAPPED);
done:
	ms__free(selected);
	return rc;
}

/* next() and next_timeout(): `timeout_ms` < 0 waits for as long as it takes. */
static int next_tensor(const ms_tensor **out, ms_streamer *s, long timeout_ms)
{
	const void *data = NULL;
	size_t index;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || s == NULL)
		return ms__error_set(MS_EINVAL, "ms_streamer_next: out or streamer is NULL");
	if (!s->started) {
		s->started = 1;
		choose_chunk_size(s);
		if ((rc = start(s)) < 0) {
			ms_error saved;

			ms__error_save(&saved, s->start_message, sizeof(s->start_message));
			s->start_code = rc;
		} else {
			/* The chunk size, concurrency and delivery are final: stats may read them.
			 */
			atomic_store_explicit(&s->resolved, true, memory_order_release);
		}
	}
	if (s->start_code != 0)
		return ms__error_set(s->start_code, "%s", s->start_message);
	if (s->device != NULL) {
		uint64_t ptr;

		if ((rc = ms__device_next(s->device, timeout_ms, &index, &ptr)) != 0)
			return rc;
		s->delivered[index] = s->table[s->plan.tensors[index].table_index];
		s->delivered[index].device = ms__device_index(s->device);
		s->delivered[index].device_ptr = ptr;
		*out = &s->delivered[index];
		return 0;
	}
	rc = timeout_ms < 0 ? ms__engine_next(s->engine, &index, &data)
	                    : ms__engine_next_timed(s->engine, (unsigned)timeout_ms, &index, &data);
	if (rc != 0)
		return rc;
	s->delivered[index] = s->table[s->plan.tensors[index].table_index];
	s->delivered[index].data = data;
	*out = &s->delivered[index];
	return 0;
}

int ms_streamer_next(const ms_tensor **out, ms_streamer *s)
{
	return next_tensor(out, s, -1);
}

int ms_streamer_next_timeout(const ms_tensor **out, ms_streamer *s, unsigned timeout_ms)
{
	return next_tensor(out, s, timeout_ms > 0 ? (long)timeout_ms : 1);
}

int ms_tensor_release(ms_streamer *s, const ms_tensor *t)
{
	uintptr_t first, p = (uintptr_t)t;

	if (s == NULL || t == NULL || s->delivered == NULL)
		return ms__error_set(MS_EINVAL, "ms_tensor_release: no such delivered tensor");
	first = (uintptr_t)s->delivered;
	if (p < first || p >= first + s->plan.tensor_count * sizeof(*t) ||
	    (p - first) % sizeof(*t) != 0)
		return ms__error_set(MS_EINVAL,
		                     "ms_tensor_release: the tensor was not delivered by this "
		                     "streamer");
	if (s->device != NULL) /* its staging went back when its copy landed */
		return t->device == MS_DEVICE_CPU
		           ? ms__error_set(MS_EINVAL, "ms_tensor_release: no such delivered tensor")
		           : 0;
	return ms__engine_release(s->engine, (size_t)(t - s->delivered));
}

int ms_tensor_copy(void *dst, size_t dst_size, const ms_tensor *t)
{
	char printable[MS__PRINTABLE_MAX];

	bool on_device =
	    t != NULL &&
	    t->struct_size >= offsetof(ms_tensor, device_ptr) + sizeof(t->device_ptr) &&
	    t->device != MS_DEVICE_CPU;

	if (t == NULL || (!on_device && t->data == NULL && t->size > 0) ||
	    (on_device && t->device_ptr == 0 && t->size > 0))
		return ms__error_set(MS_EINVAL, "ms_tensor_copy: the tensor holds no data");
	if (dst == NULL || dst_size < t->size)
		return ms__error_set(MS_EINVAL,
		                     "ms_tensor_copy: tensor '%s' needs %llu bytes, the buffer "
		                     "holds %zu",
		                     ms__printable(printable, sizeof(printable), t->name),
		                     (unsigned long long)t->size, dst_size);
	if (on_device && t->size > 0)
		return ms__cuda_copy_back(dst, t->device, t->device_ptr, t->size);
	if (t->size > 0)
		memcpy(dst, t->data, (size_t)t->size);
	return 0;
}

void ms_streamer_cancel(ms_streamer *s)
{
	if (s != NULL) {
		ms__device_cancel(s->device);
		ms__engine_cancel(s->engine);
	}
}

int ms_streamer_stats(ms_stats *out, const ms_streamer *s)
{
	ms_stats full = {.struct_size = sizeof(ms_stats)};

	if (s == NULL)
		return ms__error_set(MS_EINVAL, "ms_streamer_stats: the streamer is NULL");
	ms__engine_stats(s->engine, &full);
	full.device = MS_DEVICE_CPU;
	if (s->device != NULL)
		ms__device_stats(s->device, &full);
	/* What the first next() resolved; the other fields are the engine's. */
	if (atomic_load_explicit(&s->resolved, memory_order_acquire)) {
		full.chunk_size = s->opts.chunk_size;
		full.concurrency = s->opts.concurrency;
		full.delivery = s->delivery;
	} else {
		full.delivery = MS_DELIVER_AUTO;
	}
	return ms__fill_sized(out, &full, sizeof(full), sizeof(ms_stats), "ms_streamer_stats");
}

ms_deliver ms_streamer_delivery(const ms_streamer *s)
{
	return s == NULL || !atomic_load_explicit(&s->resolved, memory_order_acquire)
	           ? MS_DELIVER_AUTO
	           : s->delivery;
}

const char *ms_streamer_fallback(const ms_streamer *s)
{
	return s == NULL || s->device == NULL ||
	               !atomic_load_explicit(&s->resolved, memory_order_acquire)
	           ? NULL
	           : ms__device_fallback(s->device);
}

void ms_streamer_free(ms_streamer *s)
{
	if (s == NULL)
		return;
	/* The copies in flight read the engine's memory: they land before it goes. */
	ms__device_free(s->device, s->engine);
	if (s->gate != NULL)
		ms__gate_cancel(s->gate); /* no read waits out its patience for a streamer gone */
	ms__engine_free(s->engine);       /* joins the workers before their sources close */
	ms__sink_free(s->sink);
	for (size_t i = 0; s->mappings != NULL && i < s->file_count; i++)
		ms__mapping_close(&s->mappings[i]);
	ms__free(s->mappings);
	for (size_t i = 0; i < s->file_count; i++) {
		ms__source_close(s->files[i].source);
		ms__st_header_free(s->files[i].header);
	}
	if (s->select != NULL)
		for (size_t i = 0; i < s->opts.select_count; i++)
			ms__free(s->select[i]);
	ms__free(s->select);
	ms__free(s->files);
	ms__free(s->sources);
	ms__free(s->table);
	ms__free(s->delivered);
	ms__plan_free(&s->plan);
	ms__gate_close(s->gate); /* after the sources it wraps */
	ms__free(s);
}
