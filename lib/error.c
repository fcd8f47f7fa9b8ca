/*
 * error.c - error codes, their descriptions, and the thread-local last error.
 *
 * Each thread has its own last error, so concurrent streamers never see each other's
 * messages. Worker threads save their error with ms__error_save() and the streamer
 * replays it on the caller's thread.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

typedef struct {
	ms_error public_error;
	char message[MS__ERROR_MAX];
} thread_error;

static _Thread_local thread_error last_error = {
    .public_error = {.code = MS_OK, .message = "no error"},
};

const char *ms_strerror(int code)
{
	switch (code) {
	case MS_OK:
		return "no error";
	case MS_ERROR:
		return "error";
	case MS_ENOMEM:
		return "out of memory";
	case MS_EINVAL:
		return "invalid argument";
	case MS_ENOTFOUND:
		return "not found";
	case MS_EACCES:
		return "permission denied";
	case MS_EIO:
		return "I/O error";
	case MS_EFORMAT:
		return "malformed input";
	case MS_ELIMIT:
		return "memory limit too small";
	case MS_ECANCELED:
		return "canceled";
	case MS_EUNSUPPORTED:
		return "not supported";
	case MS_ESTATE:
		return "invalid in this state";
	case MS_ENOSPC:
		return "out of space";
	case MS_EUNAVAILABLE:
		return "storage unavailable";
	case MS_EBUSY:
		return "in use";
	case MS_ENODEVICE:
		return "no such device";
	case MS_ITER_END:
		return "end of iteration";
	default:
		return "unknown error";
	}
}

const ms_error *ms_error_last(void)
{
	return &last_error.public_error;
}

static void error_vset(int code, const char *suffix, const char *fmt, va_list ap)
{
	int n = vsnprintf(last_error.message, sizeof(last_error.message), fmt, ap);

	if (n < 0)
		n = 0;
	if (suffix != NULL && (size_t)n < sizeof(last_error.message))
		snprintf(last_error.message + n, sizeof(last_error.message) - (size_t)n, ": %s",
		         suffix);
	/* A message is one line whatever the input held; newlines would split log records. */
	for (char *p = last_error.message; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	last_error.public_error.code = code;
	last_error.public_error.message = last_error.message;
}

int ms__error_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	error_vset(code, NULL, fmt, ap);
	va_end(ap);
	return code;
}

int ms__error_code_from_errno(int errnum)
{
	switch (errnum) {
	case ENOENT:
	case ENOTDIR:
		return MS_ENOTFOUND;
	case EACCES:
	case EPERM:
		return MS_EACCES;
	case ENOMEM:
		return MS_ENOMEM;
	case ENOSPC:
	case EDQUOT:
		return MS_ENOSPC;
	case EINVAL:
		return MS_EINVAL;
	default:
		return MS_EIO;
	}
}

int ms__error_errno(int errnum, const char *fmt, ...)
{
	char reason[128];
	int code = ms__error_code_from_errno(errnum);
	va_list ap;

	/* strerror_r (GNU flavour) may return a static string instead of filling reason. */
	const char *text = strerror_r(errnum, reason, sizeof(reason));

	va_start(ap, fmt);
	error_vset(code, text, fmt, ap);
	va_end(ap);
	return code;
}

void ms__error_save(ms_error *out, char *buffer, size_t buffer_size)
{
	snprintf(buffer, buffer_size, "%s", last_error.public_error.message);
	out->code = last_error.public_error.code;
	out->message = buffer;
}

const char *ms__printable(char *buffer, size_t buffer_size, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t used = 0;

	if (buffer_size < 8) {
		if (buffer_size > 0)
			buffer[0] = '\0';
		return buffer;
	}
	/* Leave room for an escape sequence, "...", and the NUL. */
	for (; *s != '\0' && used + 8 < buffer_size; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || c == '\\') {
			buffer[used++] = '\\';
			buffer[used++] = 'x';
			buffer[used++] = hex[c >> 4];
			buffer[used++] = hex[c & 15];
		} else {
			buffer[used++] = (char)c;
		}
	}
	if (*s != '\0') {
		/* Cut before a partial UTF-8 sequence, then mark the cut. */
		while (used > 0 && ((unsigned char)buffer[used - 1] & 0xc0) == 0x80)
			used--;
		if (used > 0 && (unsigned char)buffer[used - 1] >= 0xc0)
			used--;
		for (int i = 0; i < 3; i++)
			buffer[used++] = '.';
	}
	buffer[used] = '\0';
	return buffer;
}

int ms__fill_sized(void *out, const void *full, size_t full_size, size_t min_size, const char *what)
{
	unsigned want;

	if (out == NULL)
		return ms__error_set(MS_EINVAL, "%s: out is NULL", what);
	memcpy(&want, out, sizeof(want));
	if (want < min_size)
		return ms__error_set(MS_EINVAL,
		                     "%s: struct_size is %u; initialise the struct with its _INIT "
		                     "macro",
		                     what, want);
	memcpy(out, full, want < full_size ? want : full_size);
	want = (unsigned)(want < full_size ? want : full_size);
	memcpy(out, &want, sizeof(want));
	return 0;
}
