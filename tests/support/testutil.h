/*
 * testutil.h - small helpers shared by the Criterion tests.
 */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/** A fresh directory under $TMPDIR (or /tmp) for this test; removed by tu_tmpdir_remove(). */
const char *tu_tmpdir(void);

/** Removes the directory made by tu_tmpdir() and everything in it. */
void tu_tmpdir_remove(void);

/** Returns "<tmpdir>/<name>" in a static buffer of the caller's (size PATH_MAX). */
void tu_path(char *out, size_t size, const char *name);

/** Writes `len` bytes to `path`; aborts the test on failure. */
void tu_write_file(const char *path, const void *data, size_t len);

/** Writes a safetensors file: the 8-byte prefix for `header`, the header, `data_len`
 * bytes of stgen content for `seed`. */
void tu_write_safetensors(const char *path, const char *header, uint64_t data_len, uint64_t seed);

/** A growable string for documents built in code; free `text` with free(). */
typedef struct {
	char *text;
	size_t len;
	size_t cap;
} tu_strbuf;

/** Appends `n` bytes of `s` (kept NUL-terminated); aborts the test if memory runs out. */
void tu_sb_append(tu_strbuf *b, const char *s, size_t n);

/** Appends the string `s`. */
void tu_sb_puts(tu_strbuf *b, const char *s);

/**
 * An environment for code that reads it through an ms__getenv_fn: `payload` is a
 * NULL-terminated array of "NAME=value" strings. Tests use it instead of setenv(), so
 * that they cannot disturb each other.
 */
const char *tu_table_getenv(const char *name, void *payload);

/**
 * Runs LeakSanitizer now, when the test is built with it, and returns nonzero if it found
 * a leak (0 without LeakSanitizer). Criterion does not fail a test whose process leaks
 * (the report at exit comes after the result), so allocation walks ask for a check.
 */
int tu_leaks_found(void);

/** Points the library at the stand-in CUDA driver built next to the test's binary
 * (libfakecuda.so), with `devices` devices; its path goes to `out` (size PATH_MAX). */
void tu_use_fake_cuda(char *out, size_t size, const char *devices);

#endif
