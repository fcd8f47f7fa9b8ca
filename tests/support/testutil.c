/*
 * testutil.c - temporary directories and files for tests.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LEAK_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LEAK_SANITIZER 1
#endif
#endif
#ifdef HAVE_LEAK_SANITIZER
#include <sanitizer/lsan_interface.h>
#endif

#include "stgen.h"
#include "testutil.h"

static char tmpdir_path[PATH_MAX];

const char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tmpdir_path[0] != '\0')
		return tmpdir_path;
	snprintf(tmpdir_path, sizeof(tmpdir_path), "%s/ms-test-XXXXXX", base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tmpdir_path), "mkdtemp failed");
	return tmpdir_path;
}

void tu_tmpdir_remove(void)
{
	char cmd[PATH_MAX + 16];

	if (tmpdir_path[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir_path);
	cr_assert_eq(system(cmd), 0);
	tmpdir_path[0] = '\0';
}

void tu_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", tu_tmpdir(), name);
}

void tu_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "cannot create %s", path);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

void tu_write_safetensors(const char *path, const char *header, uint64_t data_len, uint64_t seed)
{
	size_t n = strlen(header);
	unsigned char *buf = malloc(8 + n);

	cr_assert_not_null(buf);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(buf + 8, header, n);
	cr_assert_eq(stgen_write_raw(path, buf, 8 + n, data_len, seed), 0, "cannot write %s", path);
	free(buf);
}

int tu_leaks_found(void)
{
#ifdef HAVE_LEAK_SANITIZER
	return __lsan_do_recoverable_leak_check();
#else
	return 0;
#endif
}

void tu_sb_append(tu_strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->text = realloc(b->text, b->cap);
		cr_assert_not_null(b->text);
	}
	memcpy(b->text + b->len, s, n);
	b->len += n;
	b->text[b->len] = '\0';
}

void tu_sb_puts(tu_strbuf *b, const char *s)
{
	tu_sb_append(b, s, strlen(s));
}

const char *tu_table_getenv(const char *name, void *payload)
{
	const char *const *entry = payload;
	size_t n = strlen(name);

	for (; entry != NULL && *entry != NULL; entry++)
		if (strncmp(*entry, name, n) == 0 && (*entry)[n] == '=')
			return *entry + n + 1;
	return NULL;
}

void tu_use_fake_cuda(char *out, size_t size, const char *devices)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	cr_assert_gt(n, 0);
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	cr_assert_not_null(slash);
	*slash = '\0';
	snprintf(out, size, "%s/libfakecuda.so", exe);
	cr_assert_eq(access(out, R_OK), 0, "%s is built with the test", out);
	setenv("MODELSTREAM_CUDA_DRIVER", out, 1);
	setenv("FAKE_CUDA_DEVICES", devices, 1);
}
