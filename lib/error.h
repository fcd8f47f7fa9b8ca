/*
 * error.h - raising errors inside the library.
 *
 * Every failing path calls one of these once, at the place that knows the input and the
 * cause; callers above it pass the code through unchanged, so messages never become a
 * stack of "failed to ...". The message lives in a thread-local buffer read by
 * ms_error_last().
 */
#ifndef MS_ERROR_H
#define MS_ERROR_H

#include "modelstream.h"

/** The longest message kept, including the NUL; longer ones are cut. */
#define MS__ERROR_MAX 1024

/** Records `code` and a printf-style message for this thread; returns `code`. */
int ms__error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Records the error for errno value `errnum`: the code it maps to (ENOENT -> MS_ENOTFOUND,
 * EACCES/EPERM -> MS_EACCES, ENOMEM -> MS_ENOMEM, ENOSPC/EDQUOT -> MS_ENOSPC, EINVAL ->
 * MS_EINVAL, else MS_EIO) and the
 * message "<formatted>: <strerror(errnum)>". Returns the code.
 */
int ms__error_errno(int errnum, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Maps an errno value to an MS_E* code, as ms__error_errno() does. */
int ms__error_code_from_errno(int errnum);

/** Copies this thread's last error into `out` (for handing it to another thread). */
void ms__error_save(ms_error *out, char *buffer, size_t buffer_size);

/**
 * Writes `s` into `buffer` fit for a one-line message: control characters escaped as
 * \xNN and the result cut to the buffer with "..." when longer. Returns `buffer`.
 * For names that come from files, which may hold anything.
 */
const char *ms__printable(char *buffer, size_t buffer_size, const char *s);

/** A buffer size for ms__printable() in messages: long enough, never a paragraph. */
#define MS__PRINTABLE_MAX 96
/**
 * Hands a filled struct to the caller: copies `full` (`full_size` bytes, its first member
 * the unsigned struct_size) into `out`, as far as the caller's out->struct_size reaches,
 * so that a caller built against an older header gets the fields it knows. A struct_size
 * below `min_size` (the first version that had struct_size) is the caller's mistake.
 * Returns 0 or MS_EINVAL naming `what`.
 */
int ms__fill_sized(void *out, const void *full, size_t full_size, size_t min_size,
                   const char *what);

#endif
