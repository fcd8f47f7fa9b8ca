/*
 * modelstream.h - the public interface of libmodelstream.
 *
 * libmodelstream streams the tensors of safetensors files into memory as fast as the
 * storage allows. A streamer is given one or more files, reads each file's header, plans
 * coalesced reads of the selected tensors, and lets worker threads fill a buffer arena
 * while the caller takes tensors out in file order. This is the only public header;
 * everything else in the library is internal.
 *
 * Conventions, for every function here:
 *  - Functions return 0 on success or a negative MS_E* code. Codes are never renumbered.
 *    After a failure, ms_error_last() returns a one-line message that names the input and
 *    the cause; it never contains a secret.
 *  - Functions are named ms_<module>_<verb> (ms_streamer_next, ms_cache_fetch,
 *    ms_storage_list); the few without a module are process-wide (ms_version,
 *    ms_global_init, ms_strerror).
 *  - Out-parameters come first, named `out` (or `out_<what>` when there are several),
 *    followed by their size where they have one. On failure, `*out` is left NULL (or
 *    untouched where stated).
 *  - Structs the library fills for the caller (ms_stats, ms_file_info, ms_tensor,
 *    ms_cache_collected) begin with `struct_size`: the caller sets it with the struct's
 *    _INIT macro, the library fills only the fields that fit, so a program built against
 *    this header keeps working with a later library that appends fields. Structs the
 *    library hands out (ms_tensor from ms_streamer_next(), ms_fetch_progress,
 *    ms_cache_model) carry the size the library filled.
 *  - Option structs begin with `version`; a version newer than the library's is refused
 *    (MS_EINVAL), an older one is read as far as it goes.
 *  - Every _free function accepts NULL.
 *  - Thread rules, object by object: a streamer is used from one thread at a time, except
 *    ms_streamer_cancel(), ms_streamer_stats() and ms_tensor_release(), which any thread
 *    may call at any time (a garbage collector may release a tensor while the owner
 *    waits in ms_streamer_next());
 *    a cache (ms_cache) may be used by several threads at once, each fetch on its own
 *    thread; a hold belongs to the thread that made it; a cancellation token may be fired
 *    from any thread or signal handler; the storage calls (ms_storage_*) are independent
 *    and may run on any threads at once; back ends are registered before use and their
 *    functions are called from many threads at once.
 */
#ifndef MODELSTREAM_H
#define MODELSTREAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MS_BUILDING_LIBRARY) && defined(__GNUC__)
#define MS_EXTERN __attribute__((visibility("default")))
#else
#define MS_EXTERN
#endif

#define MS_VERSION_MAJOR  0
#define MS_VERSION_MINOR  3
#define MS_VERSION_PATCH  0
#define MS_VERSION_STRING "0.3.0"

/** The version of the library actually loaded, as "MAJOR.MINOR.PATCH". */
MS_EXTERN const char *ms_version(void);

/**
 * Initialises what the library shares process-wide (libcurl's global state, through
 * curl_global_init, once however often it is called). Call it once, early, before other
 * threads start, as libcurl asks of every program; the library also calls it from its
 * first use of the network, which is safe only while no other thread is using libcurl.
 * Returns 0 or MS_ERROR.
 */
MS_EXTERN int ms_global_init(void);

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/** Error codes. 0 is success; the values are stable and never renumbered. */
typedef enum {
	MS_OK = 0,
	MS_ERROR = -1,     /**< an error that fits no other code */
	MS_ENOMEM = -2,    /**< an allocation or a memory mapping failed */
	MS_EINVAL = -3,    /**< a bad argument or option */
	MS_ENOTFOUND = -4, /**< a file, key or tensor does not exist */
	MS_EACCES = -5,    /**< permission denied */
	MS_EIO = -6,       /**< reading failed (the OS reported an I/O error, or a short file) */
	MS_EFORMAT = -7,   /**< malformed input (a safetensors file, a server response) */
	MS_ELIMIT = -8,    /**< the memory limit cannot hold what is asked of it */
	MS_ECANCELED = -9, /**< ms_streamer_cancel() was called */
	MS_EUNSUPPORTED = -10, /**< the operation or input is valid but not supported here */
	MS_ESTATE = -11,       /**< the call is not valid in the object's current state */
	MS_ENOSPC = -12,       /**< no space left: a full disk, tmpfs or quota */
	MS_EUNAVAILABLE =
	    -13,        /**< the store could not be reached, or kept failing, after retries */
	MS_EBUSY = -14, /**< in use: a model that some process holds (ms_cache_hold_new()) */
	MS_ENODEVICE =
	    -15,           /**< no such device, or no driver for it (no NVIDIA driver for cuda:N) */
	MS_ITER_END = -31, /**< not an error: ms_streamer_next() has delivered every tensor */
} ms_error_code;

/** The last error raised on the calling thread. */
typedef struct {
	int code;            /**< the MS_E* code */
	const char *message; /**< one line, no trailing newline; never NULL */
} ms_error;

/**
 * The last error that a libmodelstream call made on this thread. The returned memory
 * belongs to the library and stays valid until the next failing call on this thread.
 * Never returns NULL: with no error yet, code is MS_OK and message is "no error".
 */
MS_EXTERN const ms_error *ms_error_last(void);

/** A short static description of an error code ("malformed input"). */
MS_EXTERN const char *ms_strerror(int code);

/* ---------------------------------------------------------------------------------------- */
/* Cancellation                                                                               */
/* ---------------------------------------------------------------------------------------- */

/**
 * A cancellation token for the long calls (ms_cache_fetch(), ms_storage_push(),
 * ms_storage_list()).
 * Fire it from any thread, or from a signal handler, and the call it was given to stops:
 * transfers in flight are aborted, backoffs end, and the call returns MS_ECANCELED within
 * about a quarter of a second. What was done stays done: a canceled fetch leaves its
 * partial download to be resumed, a canceled upload is aborted on the store. A token stays
 * fired; make a new one for the next call.
 */
typedef struct ms_cancel ms_cancel;

/** Creates a token that has not fired. Returns 0, MS_EINVAL or MS_ENOMEM. */
MS_EXTERN int ms_cancel_new(ms_cancel **out);

/** Fires the token. Any thread; async-signal-safe (one atomic store). Accepts NULL. */
MS_EXTERN void ms_cancel_fire(ms_cancel *c);

/** 1 once the token has fired, else 0 (also for NULL). Any thread. */
MS_EXTERN int ms_cancel_fired(const ms_cancel *c);

/** Frees the token; no call that was given it may still be running. Accepts NULL. */
MS_EXTERN void ms_cancel_free(ms_cancel *c);

/* ---------------------------------------------------------------------------------------- */
/* Data types                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/**
 * The element types of the safetensors format, as of its current specification. The
 * values are stable. Sub-byte types (F4, F6_*) report their element size in bits.
 */
typedef enum {
	MS_DTYPE_BOOL = 0,
	MS_DTYPE_U8,
	MS_DTYPE_I8,
	MS_DTYPE_U16,
	MS_DTYPE_I16,
	MS_DTYPE_F16,
	MS_DTYPE_BF16,
	MS_DTYPE_U32,
	MS_DTYPE_I32,
	MS_DTYPE_F32,
	MS_DTYPE_U64,
	MS_DTYPE_I64,
	MS_DTYPE_F64,
	MS_DTYPE_C64,     /**< complex of two F32 */
	MS_DTYPE_F8_E4M3, /**< "F8_E4M3" */
	MS_DTYPE_F8_E5M2, /**< "F8_E5M2" */
	MS_DTYPE_F8_E8M0, /**< "F8_E8M0", a scale type */
	MS_DTYPE_F4,      /**< "F4" (E2M1), 4 bits */
	MS_DTYPE_F6_E2M3, /**< "F6_E2M3", 6 bits */
	MS_DTYPE_F6_E3M2, /**< "F6_E3M2", 6 bits */
	MS_DTYPE_COUNT_
} ms_dtype;

/** The dtype's name as the safetensors header spells it ("BF16"), or NULL if unknown. */
MS_EXTERN const char *ms_dtype_name(ms_dtype dtype);

/** The size of one element in bits (16 for BF16, 4 for F4), or 0 if unknown. */
MS_EXTERN unsigned ms_dtype_bits(ms_dtype dtype);

/* ---------------------------------------------------------------------------------------- */
/* Streamer options                                                                           */
/* ---------------------------------------------------------------------------------------- */

/** How the streamer opens files. */
typedef enum {
	/** Use O_DIRECT for files that are mostly absent from the page cache (checked with
	 * mincore when a file is added), buffered reads for files that are cached. */
	MS_DIRECT_IO_AUTO = 0,
	MS_DIRECT_IO_OFF = 1, /**< always read through the page cache */
	MS_DIRECT_IO_ON = 2,  /**< always O_DIRECT; fails where the file system refuses it */
} ms_direct_io;

/** Which pages back the buffer arena. */
typedef enum {
	/** Reserved 2 MiB pages (MAP_HUGETLB) when vm.nr_hugepages has enough free, else
	 * transparent huge pages where the kernel allows them, else small pages. */
	MS_ARENA_PAGES_AUTO = 0,
	MS_ARENA_PAGES_SMALL = 1,       /**< 4 KiB pages only */
	MS_ARENA_PAGES_TRANSPARENT = 2, /**< transparent huge pages (madvise), else small */
	MS_ARENA_PAGES_RESERVED = 3,    /**< reserved huge pages only; MS_ENOMEM if too few */
} ms_arena_pages;

/** Where tensors are delivered. */
typedef enum {
	/** Copied into the streamer's arena: writable memory, bounded by memory_limit. */
	MS_DELIVER_COPY = 0,
	/**
	 * Zero copy: each tensor's `data` points into a read-only shared mapping of its file,
	 * which the workers populate ahead of the reader in file order. Nothing is copied, so
	 * a file in the page cache or on tmpfs (a node cache) is delivered at the speed of
	 * mapping it. The memory is the file's pages: read-only (writing to it faults), shared
	 * with every other reader, not bounded by memory_limit, and valid until
	 * ms_streamer_free(). Local files only: MS_EUNSUPPORTED for any other source.
	 */
	MS_DELIVER_MAPPED = 1,
	/** MAPPED when every file is local and already in memory (on tmpfs, or every page in
	 * the page cache, by mincore), else COPY. */
	MS_DELIVER_AUTO = 2,
} ms_deliver;

/** Unlimited memory: the arena holds every selected tensor at once. */
#define MS_MEMORY_UNLIMITED (-1)
/** The smallest arena that works: the size of the largest selected tensor. */
#define MS_MEMORY_MINIMUM           0

#define MS_STREAMER_OPTIONS_VERSION 4

/** The host: tensors are delivered in host memory (the default). */
#define MS_DEVICE_CPU (-1)

/**
 * Parses a device name as PyTorch spells it: "cpu" sets *out to MS_DEVICE_CPU; "cuda" and
 * "cuda:N" set it to N (0 for "cuda"). Returns 0, or MS_EINVAL naming the text. Whether
 * the device exists is checked by ms_streamer_new().
 */
MS_EXTERN int ms_device_parse(int *out, const char *text);

/** The default alignment of each tensor in the library's device arena, in bytes. */
#define MS_DEVICE_ALIGNMENT_DEFAULT 256

/**
 * Caller-provided device memory (ms_streamer_options.device_alloc): sets `*out_ptr` to a
 * device address (a CUdeviceptr) on device `device` with room for `t->size` bytes, into
 * which the library copies tensor `t`. Called once per selected tensor, in file order,
 * from a thread of the library, before that tensor's copy is issued; the memory stays
 * the caller's. Returns 0, or a negative MS_E* code, which stops the stream:
 * ms_streamer_next() then fails with that code and a message naming the tensor. The
 * address must be on `device` (the library checks, where the driver can tell).
 */
typedef struct ms_tensor ms_tensor;
typedef int (*ms_device_alloc_fn)(uint64_t *out_ptr, const ms_tensor *t, int device, void *payload);

/**
 * Options for ms_streamer_new(). Initialise with MS_STREAMER_OPTIONS_INIT or
 * ms_streamer_options_init(); fields are only ever appended, and `version` tells the
 * library which fields the caller knows.
 */
typedef struct {
	unsigned version;

	/** Worker threads reading in parallel, 1..256. 0 means the default (16). */
	unsigned concurrency;

	/**
	 * The arena's size, with RUNAI_STREAMER_MEMORY_LIMIT's meaning:
	 *  MS_MEMORY_UNLIMITED (-1): one block that holds every selected tensor; tensors stay
	 *      valid until ms_streamer_free(), and storage is never throttled by the caller.
	 *  MS_MEMORY_MINIMUM (0): a ring the size of the largest selected tensor.
	 *  N > 0: a ring of N bytes; N smaller than the largest selected tensor is an error
	 *      (MS_ELIMIT) reported by the first ms_streamer_next().
	 * In ring modes a tensor's memory is recycled only after ms_tensor_release().
	 */
	int64_t memory_limit;

	/** The size of one read request in bytes; 0 means the default (8 MiB). Small tensors
	 * are merged into reads of about this size, large ones are split into reads of it. */
	size_t chunk_size;

	/** O_DIRECT policy; see ms_direct_io. */
	ms_direct_io direct_io;

	/**
	 * Which tensors to stream: `select_count` patterns, each a shell glob (fnmatch(3),
	 * so a plain name matches only itself). A tensor is selected if any pattern matches
	 * its name. With select_count == 0 every tensor is selected. The strings are copied.
	 */
	const char *const *select;
	size_t select_count;

	/** Which pages back the arena; see ms_arena_pages. */
	ms_arena_pages arena_pages;

	/** Version 2: where tensors are delivered; see ms_deliver. */
	ms_deliver deliver;

	/**
	 * Version 3: node-wide admission control for object storage, shared with `fetch`
	 * and every other process that names the same directory (a node cache's): at most
	 * `node_connections` reads in flight on the node (0: 64) and `node_bytes_per_second`
	 * (0: no limit), with this streamer's reads adapting their window within that and
	 * waiting out "slow down" answers for up to `patience_seconds` (0: 600).
	 * NULL: no admission control (every read goes at once). The string is copied.
	 */
	const char *node_dir;
	unsigned node_connections;
	uint64_t node_bytes_per_second;
	unsigned patience_seconds;

	/**
	 * Version 4: where tensors go. MS_DEVICE_CPU (the default): host memory, as above.
	 * N >= 0: CUDA device N. Tensors are then delivered in device memory (ms_tensor's
	 * `device` and `device_ptr`; `data` is NULL): the workers read into a pinned host
	 * staging ring (or, with mapped delivery, the file's pages are registered with the
	 * driver and the copy engine reads them directly), and copies to the device run on
	 * several streams while the next reads are in flight. memory_limit then bounds the
	 * staging ring (MS_MEMORY_UNLIMITED: 512 MiB or twice the largest tensor, whichever
	 * is more, and never more than the selected tensors), not what the device holds. Needs the
	 * NVIDIA driver (libcuda.so.1, loaded at run time): without it, or without device N,
	 * ms_streamer_new() fails with MS_ENODEVICE ("cuda:0: no NVIDIA driver: libcuda.so.1 not
	 * found").
	 */
	int device;

	/** Version 4: each tensor's offset in the library's device arena is a multiple of
	 * this power of two; 0 means MS_DEVICE_ALIGNMENT_DEFAULT. */
	uint64_t device_alignment;

	/**
	 * Version 4: NULL (the default): the library allocates one device arena that holds
	 * every selected tensor, each at an aligned offset; it stays valid until
	 * ms_streamer_free(). Otherwise the caller's memory: see ms_device_alloc_fn.
	 */
	ms_device_alloc_fn device_alloc;
	void *device_alloc_payload;
} ms_streamer_options;

#define MS_STREAMER_OPTIONS_INIT                                                      \
	{                                                                             \
		.version = MS_STREAMER_OPTIONS_VERSION, .concurrency = 0,             \
		.memory_limit = MS_MEMORY_UNLIMITED, .chunk_size = 0,                 \
		.direct_io = MS_DIRECT_IO_AUTO, .select = NULL, .select_count = 0,    \
		.deliver = MS_DELIVER_COPY, .node_dir = NULL, .device = MS_DEVICE_CPU \
	}

/** Fills `opts` with the defaults, exactly as MS_STREAMER_OPTIONS_INIT does. */
MS_EXTERN void ms_streamer_options_init(ms_streamer_options *opts);

/**
 * Overrides fields of `opts` from the environment, for users coming from Run:ai Model
 * Streamer: RUNAI_STREAMER_CONCURRENCY, RUNAI_STREAMER_MEMORY_LIMIT (-1, 0 or bytes) and
 * RUNAI_STREAMER_CHUNK_BYTESIZE, then the same settings as MODELSTREAM_CONCURRENCY,
 * MODELSTREAM_MEMORY_LIMIT and MODELSTREAM_CHUNK_SIZE, which win. Variables that are unset
 * are ignored.
 *
 * Returns 0, or MS_EINVAL (and leaves `opts` unchanged) if a variable is set to something
 * that is not a number in range; the message names the variable and its value.
 * Reads the environment: do not call it while another thread changes the environment.
 */
MS_EXTERN int ms_streamer_options_from_env(ms_streamer_options *opts);

/* ---------------------------------------------------------------------------------------- */
/* Tensors and files                                                                          */
/* ---------------------------------------------------------------------------------------- */

/** The most dimensions a tensor may have; headers with more are rejected. */
#define MS_MAX_NDIM 32

/**
 * A tensor. Returned by ms_streamer_next() (with `data` set) and ms_streamer_tensor_at()
 * (with `data` NULL). All pointers belong to the streamer.
 */
struct ms_tensor {
	unsigned struct_size; /**< sizeof(ms_tensor) as the filler knew it; see the conventions */
	const char *name;     /**< UTF-8, NUL-terminated */
	ms_dtype dtype;
	const int64_t *shape; /**< `ndim` dimensions; NULL when ndim is 0 (a scalar) */
	size_t ndim;
	const void *data;     /**< `size` bytes, or NULL when not streamed */
	uint64_t size;        /**< bytes */
	size_t file_index;    /**< which added file it comes from, in the order added */
	uint64_t file_offset; /**< where its bytes start in that file */
	/* Since 0.3. Where the bytes are: MS_DEVICE_CPU (at `data`), or a CUDA device. */
	int device;
	uint64_t device_ptr; /**< on a device: the bytes' device address (a CUdeviceptr) */
};

#define MS_TENSOR_INIT                           \
	{                                        \
		.struct_size = sizeof(ms_tensor) \
	}

/** A file added to a streamer. All pointers belong to the streamer. */
typedef struct {
	unsigned struct_size;  /**< set by MS_FILE_INFO_INIT */
	const char *path;      /**< as given to ms_streamer_add() */
	uint64_t size;         /**< bytes */
	uint64_t header_size;  /**< the JSON header's length, excluding the 8-byte prefix */
	size_t tensor_count;   /**< tensors in the file, selected or not */
	size_t metadata_count; /**< entries of __metadata__ */
	int direct_io;         /**< 1 if reads of this file use O_DIRECT */
} ms_file_info;

#define MS_FILE_INFO_INIT                           \
	{                                           \
		.struct_size = sizeof(ms_file_info) \
	}

/* ---------------------------------------------------------------------------------------- */
/* The streamer                                                                               */
/* ---------------------------------------------------------------------------------------- */

/** A streaming session over one or more safetensors files. Opaque. */
typedef struct ms_streamer ms_streamer;

/**
 * Creates a streamer.
 *
 * @param out   receives the streamer; NULL on failure. Free it with ms_streamer_free().
 * @param opts  options, or NULL for the defaults. Copied; the caller keeps ownership.
 * @return 0, MS_EINVAL for a bad option (the message names it), MS_ENOMEM.
 */
MS_EXTERN int ms_streamer_new(ms_streamer **out, const ms_streamer_options *opts);

/**
 * Adds a safetensors file. Its header is read (one read of the first MiB; a larger header
 * costs one more) and validated now, so a broken file fails here with a message naming it.
 * Files are streamed in the order they are added. No file may be added after the first
 * ms_streamer_next().
 *
 * @return 0; MS_ENOTFOUND, MS_EACCES, MS_EIO (cannot open or read it); MS_EFORMAT (not a
 *         valid safetensors file, message says why); MS_ESTATE (streaming has started);
 *         MS_ENOMEM. On failure the streamer is unchanged and may still be used.
 */
MS_EXTERN int ms_streamer_add(ms_streamer *s, const char *path);

/**
 * Adds several files, as ms_streamer_add() on each in turn. Stops at the first failure;
 * files before it stay added.
 */
MS_EXTERN int ms_streamer_add_many(ms_streamer *s, const char *const *paths, size_t count);

/** The number of files added. */
MS_EXTERN size_t ms_streamer_file_count(const ms_streamer *s);

/**
 * Describes added file `file_index` into `out` (initialised with MS_FILE_INFO_INIT). The
 * strings stay valid until ms_streamer_free().
 * @return 0, or MS_EINVAL if file_index is out of range or out->struct_size is too small.
 */
MS_EXTERN int ms_streamer_file_info(ms_file_info *out, const ms_streamer *s, size_t file_index);

/**
 * Entry `i` of file `file_index`'s __metadata__, in the order the header lists them.
 * `*out_key` and `*out_value` stay valid until ms_streamer_free().
 * @return 0, MS_EINVAL (bad file_index), MS_ENOTFOUND (i past the end).
 */
MS_EXTERN int ms_streamer_metadata_at(const char **out_key, const char **out_value,
                                      const ms_streamer *s, size_t file_index, size_t i);

/**
 * Looks up `key` in file `file_index`'s __metadata__.
 * @return 0, MS_EINVAL (bad file_index), MS_ENOTFOUND (no such key).
 */
MS_EXTERN int ms_streamer_metadata_get(const char **out_value, const ms_streamer *s,
                                       size_t file_index, const char *key);

/** The number of tensors in all added files, selected or not. */
MS_EXTERN size_t ms_streamer_tensor_count(const ms_streamer *s);

/**
 * Describes tensor `i` (over all files, in file order) into `out` (initialised with
 * MS_TENSOR_INIT) without its data: `out->data` is NULL. The pointers in `*out` stay valid
 * until ms_streamer_free().
 * @return 0, or MS_EINVAL if i is out of range or out->struct_size is too small.
 */
MS_EXTERN int ms_streamer_tensor_at(ms_tensor *out, const ms_streamer *s, size_t i);

/**
 * Delivers the next selected tensor, in file order (the order of the files as added, and
 * within a file the order of the tensors' offsets). The first call starts the workers.
 * It returns as soon as this tensor's bytes are in memory; later tensors keep streaming
 * in the background.
 *
 * How long `*out` and its bytes stay valid:
 *  - memory_limit == MS_MEMORY_UNLIMITED: until ms_streamer_free(). ms_tensor_release()
 *    is accepted and does nothing.
 *  - a ring (memory_limit >= 0): until ms_tensor_release() on it, or ms_streamer_free().
 *    The engine never writes over a tensor that has not been released; if the caller holds
 *    so many tensors that the next one cannot fit, this call fails with MS_ELIMIT instead
 *    of waiting forever. Releasing in any order is allowed.
 *
 * On a device (options.device >= 0) the tensor is returned once its copy has completed:
 * the bytes are at `device_ptr` on `device`, visible to every stream, and `data` is NULL.
 * The staging memory they came through is recycled as soon as the copy completes, so
 * holding device tensors never blocks the stream; ms_tensor_release() is accepted and
 * frees nothing (the library's device arena lives until ms_streamer_free(); memory from
 * device_alloc is the caller's throughout).
 *
 * @param out  receives a pointer to the tensor, owned by the streamer.
 * @return 0 with a tensor; MS_ITER_END when every selected tensor has been delivered
 *         (and on every later call); MS_EIO (a read failed, or a file shrank since it
 *         was added), MS_ENOMEM, MS_ECANCELED, or MS_ELIMIT: the limit is below the
 *         largest selected tensor, the caller holds too much of the ring, or the arena
 *         is larger than the memory left to the process (MemAvailable, or its memory
 *         cgroup's limit; checked before mapping, so that the OOM killer does not end
 *         the stream halfway). After an error other than MS_ITER_END the streamer can
 *         only be freed.
 */
MS_EXTERN int ms_streamer_next(const ms_tensor **out, ms_streamer *s);

/**
 * As ms_streamer_next(), but waits at most `timeout_ms` milliseconds (at least 1) for the
 * next tensor: returns 1, with *out NULL and nothing consumed, when none was ready by
 * then. For callers that must stay responsive while a slow store delivers (an
 * interpreter that checks for Ctrl-C between calls). The first call still starts the
 * workers, which may take longer.
 * @return 0 with a tensor; 1 (not yet: call again); otherwise as ms_streamer_next().
 */
MS_EXTERN int ms_streamer_next_timeout(const ms_tensor **out, ms_streamer *s, unsigned timeout_ms);

/**
 * Gives a delivered tensor's memory back to the arena. Call it once per tensor; the
 * tensor and its data must not be used afterwards in ring modes.
 * @return 0, MS_EINVAL (NULL, not delivered by this streamer, or released twice).
 */
MS_EXTERN int ms_tensor_release(ms_streamer *s, const ms_tensor *t);

/**
 * Copies a delivered tensor's bytes into host memory the caller owns, so they outlive the
 * tensor. Does not release the tensor. A tensor on a device is copied back from it
 * (synchronously).
 * @return 0, MS_EINVAL if `t` has no data or dst_size < t->size (nothing is copied),
 *         MS_EIO if the device copy fails (the driver's words in the message).
 */
MS_EXTERN int ms_tensor_copy(void *dst, size_t dst_size, const ms_tensor *t);

/**
 * Asks the streamer to stop. Safe to call from any thread, at any time, any number of
 * times, while another thread is inside ms_streamer_next(). In-flight reads finish, no
 * new ones start, and ms_streamer_next() returns MS_ECANCELED from then on. The
 * streamer must still be freed by its owner.
 */
MS_EXTERN void ms_streamer_cancel(ms_streamer *s);

/** How bytes reach a device; see ms_stats.device_copy. */
typedef enum {
	MS_DEVICE_COPY_NONE = 0,   /**< host delivery: no device */
	MS_DEVICE_COPY_STAGED = 1, /**< read into a pinned staging ring, then copied */
	/** Zero copy on the host: the file's mapped pages (page cache, tmpfs node cache)
	 * are registered with the driver and the copy engine reads them directly. */
	MS_DEVICE_COPY_MAPPED = 2,
	/** The driver refused to pin the staging ring: copies go from pageable memory, at
	 * a fraction of the speed (ms_streamer_fallback() says why). */
	MS_DEVICE_COPY_PAGEABLE = 3,
} ms_device_copy;

/** Counters of one streamer; see ms_streamer_stats(). Times are nanoseconds. */
typedef struct {
	unsigned struct_size;             /**< set by MS_STATS_INIT */
	uint64_t bytes_total;             /**< bytes of the selected tensors */
	uint64_t bytes_read;              /**< bytes read from storage so far (with alignment) */
	uint64_t bytes_delivered;         /**< bytes of the tensors delivered so far */
	uint64_t tensors_total;           /**< selected tensors */
	uint64_t tensors_delivered;       /**< tensors delivered so far */
	uint64_t read_requests;           /**< read calls issued to storage */
	uint64_t arena_bytes;             /**< size of the buffer arena */
	int arena_huge_pages;             /**< 2: reserved huge pages; 1: transparent; 0: small */
	uint64_t time_to_first_tensor_ns; /**< from the first next() to the first tensor */
	uint64_t elapsed_ns;              /**< from the first next() to the last tensor, or now */
	/* What the streamer actually uses, resolved from the options and the sources (0 and
	 * MS_DELIVER_AUTO until the first ms_streamer_next()). */
	uint64_t chunk_size;  /**< bytes per read */
	unsigned concurrency; /**< reader threads */
	ms_deliver delivery;  /**< MS_DELIVER_COPY or MS_DELIVER_MAPPED */
	/* Since 0.3: the device path. */
	int device;                 /**< MS_DEVICE_CPU, or the CUDA device */
	ms_device_copy device_copy; /**< how bytes reach it (decided by the first next()) */
	unsigned copy_streams;      /**< streams the copies run on */
	uint64_t device_bytes;      /**< device memory the library allocated (its arena) */
	uint64_t bytes_to_device;   /**< bytes whose copy to the device has completed */
	uint64_t pageable_copies;   /**< copies from memory the driver did not pin */
	uint64_t pin_ns; /**< time spent pinning and unpinning the files' pages (mapped) */
} ms_stats;

#define MS_STATS_INIT                           \
	{                                       \
		.struct_size = sizeof(ms_stats) \
	}

/**
 * A snapshot of the streamer's counters into `out` (initialised with MS_STATS_INIT). May
 * be called from any thread while streaming; each field is read atomically but the fields
 * together are not a snapshot of one instant.
 * @return 0, or MS_EINVAL (NULL, or out->struct_size too small).
 */
MS_EXTERN int ms_streamer_stats(ms_stats *out, const ms_streamer *s);

/**
 * How this streamer delivers tensors: MS_DELIVER_COPY or MS_DELIVER_MAPPED (what
 * MS_DELIVER_AUTO chose). Decided by the first ms_streamer_next(); MS_DELIVER_AUTO before.
 * Same thread rules as ms_streamer_stats().
 */
MS_EXTERN ms_deliver ms_streamer_delivery(const ms_streamer *s);

/**
 * Why the device path is slower than it could be, as one line, or NULL when it is not:
 * "cuda:0: the driver refused to register the mapping of /cache/m.safetensors (operation
 * not supported); staging through a pinned ring instead". Valid until ms_streamer_free();
 * decided by the first ms_streamer_next(). Same thread rules as ms_streamer_stats().
 */
MS_EXTERN const char *ms_streamer_fallback(const ms_streamer *s);

/**
 * Stops the workers, releases every file and the arena, and frees the streamer. Any
 * tensor it delivered becomes invalid. Accepts NULL. Must not race with any other call
 * on `s` except that a ms_streamer_cancel() that has returned is fine.
 */
MS_EXTERN void ms_streamer_free(ms_streamer *s);

/* ---------------------------------------------------------------------------------------- */
/* Storage: listing, existence, uploads                                                     */
/* ---------------------------------------------------------------------------------------- */

/*
 * Locations are local paths or URLs: "s3://bucket/key" (AWS S3 and S3-compatible stores),
 * "gs://bucket/key" (Google Cloud Storage through its S3 interface), or a scheme of a
 * back end registered with ms_backend_register(). A URL whose key is empty or ends in '/'
 * is a prefix: a directory of objects. Credentials, endpoint and region come from the
 * environment and the AWS shared files, as the AWS CLI finds them (see the README).
 */

/** One object (or, in a listing that is not recursive, one sub-prefix). */
typedef struct {
	const char *location;      /**< the full URL of the object, "s3://bucket/dir/file" */
	const char *name;          /**< its key relative to the listed prefix, "file" or "sub/" */
	uint64_t size;             /**< bytes; 0 for a sub-prefix */
	const char *etag;          /**< as the store sent it, quotes kept; NULL if none */
	const char *last_modified; /**< "2026-11-25T21:00:00.000Z"; NULL if none */
	int is_prefix;             /**< 1 for a sub-prefix ("sub/"): non-recursive listings only */
} ms_object;

/**
 * Called once per object, in key order. Return 0 to go on; anything else stops the listing
 * and is returned by ms_storage_list().
 */
typedef int (*ms_list_fn)(const ms_object *object, void *payload);

/** ms_storage_list() flags. */
enum {
	MS_LIST_RECURSIVE = 1, /**< every object under the prefix, not only its direct children */
};

/**
 * Lists the objects under `prefix_url` ("s3://bucket/dir/", "s3://bucket", a local
 * directory, or a prefix of a registered scheme whose back end can list), following
 * every page of ListObjectsV2. Without MS_LIST_RECURSIVE, objects in sub-prefixes are
 * reported once per sub-prefix with is_prefix set, as `aws s3 ls` shows "PRE sub/".
 * Stops with MS_ECANCELED (a request in flight aborted) once `cancel` (may be NULL) fires.
 * @return 0; what `fn` returned when it stopped; MS_EINVAL (not a prefix URL; a URL that
 *         names an object must end in '/' to be listed); MS_ENOTFOUND (no such bucket);
 *         MS_EACCES; MS_EIO; MS_EFORMAT (a listing that does not parse); MS_ENOMEM.
 */
MS_EXTERN int ms_storage_list(const char *prefix_url, int flags, const ms_cancel *cancel,
                              ms_list_fn fn, void *payload);

/**
 * Says whether `location` (a local path, an object URL, or a registered scheme's location)
 * exists, and its size.
 * @param out_exists  set to 1 or 0.
 * @param out_size    if not NULL, the size in bytes when it exists.
 * @return 0 whether or not it exists; an error only when the answer is unknown (MS_EACCES:
 *         permission denied, which S3 also answers for a missing key without ListBucket;
 *         MS_EIO; MS_EINVAL).
 */
MS_EXTERN int ms_storage_exists(int *out_exists, uint64_t *out_size, const char *location);

/**
 * Downloads the object (or local file, or registered-scheme object) at `location` into
 * the local file `local`, which appears whole or not at all: the bytes go to
 * "<local>.partial.<pid>" and are renamed into place once all are written and synced.
 * Reads of 8 MiB in turn, with the store's retries; stops with MS_ECANCELED once `cancel`
 * (may be NULL) fires, leaving no partial file behind.
 * @return 0; MS_ENOTFOUND, MS_EACCES, MS_EUNAVAILABLE, MS_EIO (the source, named); the
 *         errno-derived code of a local write, naming `local`; MS_ECANCELED; MS_ENOMEM.
 */
MS_EXTERN int ms_storage_get(const char *location, const char *local, const ms_cancel *cancel);

/**
 * Explains how `location` would be reached, one "name: value (why)" line each: for
 * object storage the endpoint, region, addressing style, TLS and CA bundle, and the
 * credential source (walking the chain, which may ask STS or a metadata endpoint), never a
 * secret; for a local path, that it is one. Sends no request to the store itself.
 * Writes at most `size` bytes into `out`, NUL-terminated.
 * @return 0; the error of resolving the URL or the credentials (the lines resolved before
 *         it are written all the same, with "credentials: error: <message>").
 */
MS_EXTERN int ms_storage_explain(char *out, size_t size, const char *location);

/** Called as an upload progresses: `done` of `total` bytes of `location` are stored. */
typedef void (*ms_push_progress_fn)(const char *location, uint64_t done, uint64_t total,
                                    void *payload);

#define MS_PUSH_OPTIONS_VERSION 2

/** Options of ms_storage_push(). Start from MS_PUSH_OPTIONS_INIT or ms_push_options_init(). */
typedef struct {
	int version;                  /**< MS_PUSH_OPTIONS_VERSION */
	int concurrency;              /**< parts in flight at once; 0: 8 */
	uint64_t part_size;           /**< bytes per multipart part; 0: 16 MiB; at least 5 MiB */
	ms_push_progress_fn progress; /**< NULL for none; called from the uploading threads */
	void *progress_payload;
	/** Version 2: fired, the upload stops with MS_ECANCELED (a multipart upload is
	 * aborted on the store); NULL for none. */
	ms_cancel *cancel;
} ms_push_options;

#define MS_PUSH_OPTIONS_INIT                                    \
	{                                                       \
		MS_PUSH_OPTIONS_VERSION, 0, 0, NULL, NULL, NULL \
	}

/** Sets `opts` to the defaults. */
MS_EXTERN void ms_push_options_init(ms_push_options *opts);

/**
 * Uploads the local file or directory `local` to `url`. A file goes to the object `url`
 * names, or, when `url` ends in '/', to url + its base name. A directory goes, recursively,
 * to the prefix `url` (which must end in '/'), each file under its relative path: a model
 * directory with its weights, config and tokenizer. Files larger than a part are sent as
 * a multipart upload with `concurrency` parts in flight, each part signed with its SHA-256
 * so the store verifies every byte; a failed upload is aborted, leaving no parts behind.
 * @return 0; MS_ENOTFOUND/MS_EACCES for the local side or the bucket; MS_EINVAL; MS_EIO;
 *         MS_ENOMEM. The message names the file and the URL.
 */
MS_EXTERN int ms_storage_push(const char *local, const char *url, const ms_push_options *opts);

/* ---------------------------------------------------------------------------------------- */
/* The node cache                                                                             */
/* ---------------------------------------------------------------------------------------- */

/*
 * A directory that holds models fetched once per node for every process and pod on it:
 * DIR/models/NAME is a directory with the model's files under their own names (weights,
 * config, tokenizer), which any loader opens as plain files. Files appear there only once
 * complete and verified; a download killed half-way is resumed by the next fetch; when
 * many processes fetch the same model at once, one downloads and the others wait for it.
 * See the README's "The node cache" for the layout and the media it is tuned for.
 */
typedef struct ms_cache ms_cache;

/** What the cache directory is on, as detected by statfs and /proc/self/mountinfo. */
typedef enum {
	MS_CACHE_DISK = 0,       /**< any other file system: written through the page cache */
	MS_CACHE_TMPFS = 1,      /**< tmpfs without huge pages */
	MS_CACHE_TMPFS_HUGE = 2, /**< tmpfs with huge=within_size, always or advise */
} ms_cache_medium;

#define MS_CACHE_OPTIONS_VERSION 2

/** Options of ms_cache_open(). Start from MS_CACHE_OPTIONS_INIT. */
typedef struct {
	int version;         /**< MS_CACHE_OPTIONS_VERSION */
	uint64_t budget;     /**< bytes the cache may hold; 0 for no limit */
	int concurrency;     /**< reads in flight while fetching a file; 0: 16 */
	uint64_t chunk_size; /**< bytes per read; 0: 16 MiB from object storage, 8 MiB from files */
	int verify_content;  /**< 1: also hash every byte after download (MD5 against a
	                          single-part ETag); costs a pass over the data */
	/** Node-wide, shared by every process using this cache directory: reads in flight
	 * against object storage (0: 64), and bytes per second (0: no limit). */
	unsigned node_connections;
	uint64_t node_bytes_per_second;
	/** 1: keep `concurrency` reads in flight; 0 (default): adapt up to it, growing while
	 * more reads bring more throughput and halving on SlowDown, 503, 429 or timeouts. */
	int fixed_concurrency;
	/** Seconds a fetch waits out a store that keeps failing (503 SlowDown after every
	 * retry, refused connections) before it gives up with MS_EUNAVAILABLE; 0: 600. */
	unsigned patience_seconds;
	/** Version 2: fired, every fetch on this cache stops with MS_ECANCELED within a
	 * quarter of a second, leaving its partial downloads to be resumed; NULL for none.
	 * The token must outlive the cache. */
	ms_cancel *cancel;
} ms_cache_options;

#define MS_CACHE_OPTIONS_INIT                                          \
	{                                                              \
		MS_CACHE_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, NULL \
	}

/**
 * Opens (creating it if needed) the cache in directory `dir`, which must exist.
 * @return 0; MS_EUNSUPPORTED for hugetlbfs (it holds only files whose size is a multiple of
 *         the huge page size, which safetensors readers refuse: the message says to mount
 *         tmpfs with huge=within_size instead); MS_EACCES, MS_ENOTFOUND, MS_EINVAL, MS_ENOMEM.
 */
MS_EXTERN int ms_cache_open(ms_cache **out, const char *dir, const ms_cache_options *opts);

/** The medium detected. */
MS_EXTERN ms_cache_medium ms_cache_medium_of(const ms_cache *c);

/** "disk", "tmpfs" or "tmpfs (huge pages)". */
MS_EXTERN const char *ms_cache_medium_name(ms_cache_medium medium);

/** Closes the cache (the files stay). Accepts NULL. */
MS_EXTERN void ms_cache_free(ms_cache *c);

/** Why a request was retried, for ms_fetch_progress.retries_by_reason. */
enum {
	MS_RETRY_SLOWDOWN = 0,  /**< 503 SlowDown, 429 */
	MS_RETRY_SERVER_ERROR,  /**< 500, 502, 504 */
	MS_RETRY_CONNECTION,    /**< refused, reset, TLS handshake */
	MS_RETRY_TIMEOUT,       /**< a stall or a connect timeout */
	MS_RETRY_TRUNCATED,     /**< a body that ended early */
	MS_RETRY_EXPIRED_TOKEN, /**< credentials refreshed after ExpiredToken */
	MS_RETRY_CLOCK_SKEW,    /**< signed again with the server's clock */
	MS_RETRY_REASONS
};

/** Where a fetch stands. */
typedef enum {
	MS_FETCH_RESOLVING = 0,   /**< listing the source */
	MS_FETCH_DOWNLOADING = 1, /**< bytes are moving */
	MS_FETCH_WAITING = 2,     /**< another process is downloading a file this fetch needs */
	MS_FETCH_VERIFYING = 3,   /**< checking a file that has arrived */
	MS_FETCH_FILE_DONE = 4,   /**< `file` is complete and verified */
	MS_FETCH_DONE = 5,        /**< every file is there and the model is published */
} ms_fetch_state;

/** A snapshot of a fetch, given to the progress callback. */
typedef struct {
	unsigned struct_size; /**< the size the library filled: fields are only appended */
	const char *model;    /**< the model's name */
	const char *file;     /**< the file concerned, relative to the model; NULL if none */
	ms_fetch_state state;
	int from_cache;         /**< FILE_DONE: the file was already in the cache */
	uint64_t bytes_done;    /**< of the whole model, including files already cached */
	uint64_t bytes_total;   /**< the model's size */
	uint64_t bytes_fetched; /**< bytes this process downloaded */
	size_t files_done;
	size_t files_total;
	unsigned retries;    /**< requests retried so far */
	unsigned throttled;  /**< "slow down" answers (503, 429, SlowDown) and timeouts so far */
	unsigned window;     /**< reads in flight allowed now (adaptive concurrency) */
	uint64_t slot_waits; /**< reads that waited for a node-wide connection slot */
	unsigned reads_in_flight;  /**< reads this fetch has in flight now */
	unsigned models_evicted;   /**< models evicted from the cache to make room for this one */
	uint64_t file_bytes_done;  /**< of `file`, when there is one */
	uint64_t file_bytes_total; /**< `file`'s size */
	double seconds;            /**< since the fetch began */
	int waiting_pid;           /**< WAITING: the downloading process, 0 if unknown */
	/** So far, by MS_RETRY_*. Last, as its length grows with the reasons. */
	unsigned retries_by_reason[MS_RETRY_REASONS];
} ms_fetch_progress;

/** Called from the fetching thread on every event and about every 250 ms. */
typedef void (*ms_fetch_fn)(const ms_fetch_progress *progress, void *payload);

/**
 * Fetches `source` (an object, a prefix ending in '/', a local file or directory) into the
 * cache as model `name`: every file under the prefix, with its relative path. Each file is
 * downloaded with `concurrency` ranged reads into a file sized in full first, checked
 * (size; ETag unchanged thanks to If-Match on every read; safetensors headers parsed and
 * their tensors tiling the file exactly), and published atomically; then
 * DIR/models/NAME points at the whole set.
 * @param fn may be NULL.
 * @return 0; MS_EINVAL (a bad name); MS_ENOTFOUND/MS_EACCES/MS_EUNAVAILABLE from the
 *         store; MS_EFORMAT (a broken safetensors file: nothing is published); MS_ENOSPC
 *         (the disk, tmpfs or budget is full: no partial file is left that looks complete);
 *         MS_ENOMEM.
 */
MS_EXTERN int ms_cache_fetch(ms_cache *c, const char *source, const char *name, ms_fetch_fn fn,
                             void *payload);

/**
 * ms_cache_fetch(), and before publishing, checks the files against `manifest` (NULL for
 * none): a sha256sum-format list ("<64 hex digits>  <path>" per line, paths relative to
 * the model) at a URL or local path. Every file it lists must be in the model with that
 * SHA-256; files it does not list are not hashed.
 * @return as ms_cache_fetch(); MS_EIO naming the file and both hashes on a mismatch;
 *         MS_ENOTFOUND for a listed file the model lacks; MS_EFORMAT for a bad manifest.
 */
MS_EXTERN int ms_cache_fetch_verified(ms_cache *c, const char *source, const char *name,
                                      const char *manifest, ms_fetch_fn fn, void *payload);

/** Writes DIR/models/NAME into `out`. Returns 0 or MS_EINVAL (bad name, no room). */
MS_EXTERN int ms_cache_model_path(char *out, size_t size, const ms_cache *c, const char *name);

/** One model of the cache, for ms_cache_list(). */
typedef struct {
	unsigned struct_size; /**< the size the library filled */
	const char *name;
	const char *source;
	size_t files;
	uint64_t bytes;
	int complete;    /**< every blob it names is present */
	int64_t fetched; /**< when it was published, seconds since the epoch */
} ms_cache_model;

/** Calls `fn` for every model, in name order; a non-zero return stops and is returned. */
MS_EXTERN int ms_cache_list(ms_cache *c, int (*fn)(const ms_cache_model *model, void *payload),
                            void *payload);

/** Removes model `name` (its link and snapshot); its blobs go at the next collection. */
MS_EXTERN int ms_cache_remove(ms_cache *c, const char *name);

/**
 * Evicts model `name` if nobody uses it: no ms_cache_hold_new() on it in any process, pod
 * or container of the node, and none of its files open or mapped by a process this one can
 * see. Its link and snapshot go at once, its files at the next ms_cache_collect().
 * This is how a node agent retires a model that its configuration no longer lists.
 * @return 0; MS_EBUSY (held: nothing changed); MS_ENOTFOUND; MS_EINVAL (a bad name).
 */
MS_EXTERN int ms_cache_evict(ms_cache *c, const char *name);

/**
 * A hold on a published model. A process that reads a model from a node cache written by
 * another (a pod reading what the node agent fetched, through a read-only mount) holds it
 * for as long as it uses it, so that ms_cache_evict() and budget eviction leave it alone.
 * A hold is a shared flock(2) on the model's snapshot directory: it needs no write access,
 * works across containers and PID namespaces, and ends however its holder ends.
 */
typedef struct ms_cache_hold ms_cache_hold;

/**
 * Holds model `name` of the cache in directory `dir` (which may be mounted read-only; no
 * ms_cache_open() is needed). The hold is on the generation of the model published now.
 * @return 0; MS_ENOTFOUND when no model `name` is published there (yet); MS_EINVAL (a bad
 *         name); MS_EACCES; MS_ENOMEM. `*out` is NULL on failure.
 * Thread rules: a hold belongs to the thread that made it until it is freed.
 */
MS_EXTERN int ms_cache_hold_new(ms_cache_hold **out, const char *dir, const char *name);

/** The held model's directory (DIR/models/NAME). */
MS_EXTERN const char *ms_cache_hold_path(const ms_cache_hold *hold);

/** Releases the hold. Accepts NULL. */
MS_EXTERN void ms_cache_hold_free(ms_cache_hold *hold);

/** What ms_cache_collect() did. */
typedef struct {
	unsigned struct_size; /**< set by MS_CACHE_COLLECTED_INIT */
	size_t blobs_removed; /**< no model named them, or evicted for the budget */
	uint64_t bytes_freed;
	size_t partials_removed; /**< downloads nobody was continuing */
	size_t blobs_in_use;     /**< kept because a process holds them */
	size_t models_evicted;   /**< whole models evicted for the budget */
} ms_cache_collected;

#define MS_CACHE_COLLECTED_INIT                           \
	{                                                 \
		.struct_size = sizeof(ms_cache_collected) \
	}

/** The bytes the cache's files take (complete and partial), for monitoring. */
MS_EXTERN int ms_cache_usage(uint64_t *out, ms_cache *c);

/**
 * Collects garbage: blobs no model names and partial downloads no process holds, then
 * least-recently-used blobs until the cache is within its budget (never one in use).
 */
MS_EXTERN int ms_cache_collect(ms_cache_collected *out, ms_cache *c);

/**
 * Checks model `name` again: every file present with its recorded size, safetensors
 * headers valid, and with `content`, every byte hashed against a single-part ETag.
 * @return 0; MS_EFORMAT or MS_EIO naming the first file that fails; MS_ENOTFOUND.
 */
MS_EXTERN int ms_cache_verify(ms_cache *c, const char *name, int content);

/* ---------------------------------------------------------------------------------------- */
/* Back ends of your own                                                                      */
/* ---------------------------------------------------------------------------------------- */

#define MS_BACKEND_VERSION 2

/**
 * A source of bytes for locations "SCHEME://...": register one to stream from a store the
 * library does not know, without patching it. Every function returns 0 or an MS_E* code;
 * on failure it may call ms_error_raise() to give the message (otherwise the library
 * writes one naming the location and the code).
 */
typedef struct {
	int version;        /**< MS_BACKEND_VERSION */
	const char *scheme; /**< "myfs" for "myfs://..."; letters, digits, '+', '-', '.' */
	/** Opens `location`, setting *handle and *size (bytes). */
	int (*open)(void *data, const char *location, void **handle, uint64_t *size);
	/**
	 * Copies bytes [offset, offset + length) into dst; length never runs past the size.
	 * Called from several threads at once on one handle.
	 */
	int (*read)(void *handle, void *dst, uint64_t offset, size_t length);
	/** Releases the handle. */
	void (*close)(void *handle);
	void *data; /**< passed to open and to the functions below */

	/*
	 * Version 2, each optional (NULL): the rest of the storage interface, so that
	 * ms_storage_list(), ms_storage_exists(), ms_storage_push() and ms_cache_fetch()
	 * work on the scheme too.
	 * A prefix is a location ending in '/' ("myfs://models/llama/").
	 */
	/**
	 * Calls `fn` once per object under prefix `location`, in any order: `name` relative
	 * to the prefix ("sub/file.bin"), `size`, and `etag` (a version token; NULL if none)
	 * set; `location` may be NULL (the library composes prefix + name). A non-zero return
	 * of `fn` must be returned at once. Without it, prefixes cannot be listed or fetched.
	 */
	int (*list)(void *data, const char *location, ms_list_fn fn, void *payload);
	/** Sets *exists to 1 or 0 and, when it exists and `size` is not NULL, *size. Without
	 * it, existence is asked by opening the location. */
	int (*exists)(void *data, const char *location, int *exists, uint64_t *size);
	/** Stores `size` bytes as object `location`, replacing any. Without it,
	 * ms_storage_push() to the scheme fails with MS_EUNSUPPORTED. */
	int (*put)(void *data, const char *location, const void *bytes, uint64_t size);
} ms_backend;

/**
 * Registers `backend` (the struct is copied; `data` and the functions must stay valid until
 * it is unregistered). Up to 16 schemes. A struct of version 1 (without list, exists and
 * put) is accepted from callers built against the older header.
 * @return 0; MS_EINVAL for a bad struct or scheme, or "s3", "gs" or "file", which are
 *         built in; MS_ESTATE if the scheme is registered already; MS_ELIMIT when full.
 */
MS_EXTERN int ms_backend_register(const ms_backend *backend);

/** Removes the back end of `scheme`. Returns 0 or MS_ENOTFOUND. Not while it is in use. */
MS_EXTERN int ms_backend_unregister(const char *scheme);

/**
 * Sets the calling thread's last error to `code` and a printf-style message, and returns
 * `code`: for back ends to explain a failure ("myfs://x: server said no").
 */
MS_EXTERN int ms_error_raise(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif /* MODELSTREAM_H */
