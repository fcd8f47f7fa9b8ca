/*
 * test_error.c - the library's error plumbing (lib/error.c): errno values mapped to our
 * codes, printf-style messages kept on one line and cut to size without overflowing, the
 * copy a worker thread hands to the consumer, and ms__printable(), which makes names that
 * come from files safe to put in a one-line message.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "modelstream.h"

TestSuite(error, .timeout = 30);

/* True if `s` holds a byte that would break a one-line message. */
static int has_line_break(const char *s)
{
	return strchr(s, '\n') != NULL || strchr(s, '\r') != NULL;
}

Test(error, set_returns_code_and_formats)
{
	int rc = ms__error_set(MS_EFORMAT, "%s: tensor '%s' at %d", "model.safetensors", "w", 42);

	cr_assert_eq(rc, MS_EFORMAT);
	cr_assert_eq(ms_error_last()->code, MS_EFORMAT);
	cr_assert_str_eq(ms_error_last()->message, "model.safetensors: tensor 'w' at 42");

	/* A later error replaces the earlier one entirely. */
	cr_assert_eq(ms__error_set(MS_EIO, "short"), MS_EIO);
	cr_assert_eq(ms_error_last()->code, MS_EIO);
	cr_assert_str_eq(ms_error_last()->message, "short");
}

Test(error, errno_maps_to_codes)
{
	static const struct {
		int errnum;
		int code;
	} cases[] = {
	    {ENOENT, MS_ENOTFOUND}, {ENOTDIR, MS_ENOTFOUND}, {EACCES, MS_EACCES},
	    {EPERM, MS_EACCES},     {ENOMEM, MS_ENOMEM},     {EINVAL, MS_EINVAL},
	    {EIO, MS_EIO},          {ENOSPC, MS_ENOSPC},     {EBADF, MS_EIO},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(ms__error_code_from_errno(cases[i].errnum), cases[i].code, "errno %d",
		             cases[i].errnum);
		cr_assert_eq(ms__error_errno(cases[i].errnum, "f%zu", i), cases[i].code, "errno %d",
		             cases[i].errnum);
		cr_assert_eq(ms_error_last()->code, cases[i].code);
	}
}

Test(error, errno_message_names_input_and_cause)
{
	char expected[256];

	cr_assert_eq(ms__error_errno(ENOENT, "%s", "/models/a.safetensors"), MS_ENOTFOUND);
	snprintf(expected, sizeof(expected), "/models/a.safetensors: %s", strerror(ENOENT));
	cr_assert_str_eq(ms_error_last()->message, expected);

	cr_assert_eq(ms__error_errno(EACCES, "%s: open failed", "b"), MS_EACCES);
	snprintf(expected, sizeof(expected), "b: open failed: %s", strerror(EACCES));
	cr_assert_str_eq(ms_error_last()->message, expected);

	/* An errno value with no name still gives a message, not garbage. */
	cr_assert_eq(ms__error_errno(99999, "c"), MS_EIO);
	cr_assert(strncmp(ms_error_last()->message, "c: ", 3) == 0, "%s", ms_error_last()->message);
	cr_assert_gt(strlen(ms_error_last()->message), 3);
}

Test(error, newlines_become_spaces)
{
	ms__error_set(MS_EFORMAT, "line one\nline two\r\nthree %s", "x\ny");
	cr_assert_str_eq(ms_error_last()->message, "line one line two  three x y");
	cr_assert(!has_line_break(ms_error_last()->message));

	ms__error_errno(EIO, "a\nb");
	cr_assert(!has_line_break(ms_error_last()->message));
	cr_assert(strncmp(ms_error_last()->message, "a b: ", 5) == 0, "%s",
	          ms_error_last()->message);
}

Test(error, long_messages_are_cut_without_overflow)
{
	size_t n = 5 * MS__ERROR_MAX;
	char *long_text = malloc(n + 1);

	cr_assert_not_null(long_text);
	memset(long_text, 'a', n);
	long_text[n] = '\0';
	long_text[MS__ERROR_MAX + 10] = '\n'; /* past the cut: must not matter */

	ms__error_set(MS_EINVAL, "%s", long_text);
	cr_assert_eq(ms_error_last()->code, MS_EINVAL);
	cr_assert_eq(strlen(ms_error_last()->message), MS__ERROR_MAX - 1);
	cr_assert(strspn(ms_error_last()->message, "a") == MS__ERROR_MAX - 1);

	/* With an errno suffix: the formatted part alone already fills the buffer. */
	ms__error_errno(ENOENT, "%s", long_text);
	cr_assert_eq(ms_error_last()->code, MS_ENOTFOUND);
	cr_assert_eq(strlen(ms_error_last()->message), MS__ERROR_MAX - 1);

	/* The formatted part fits but the suffix does not: cut inside the suffix. */
	long_text[MS__ERROR_MAX - 4] = '\0';
	ms__error_errno(ENOENT, "%s", long_text);
	cr_assert_eq(strlen(ms_error_last()->message), MS__ERROR_MAX - 1);
	cr_assert(strncmp(ms_error_last()->message + MS__ERROR_MAX - 4, ": ", 2) == 0);
	cr_assert(!has_line_break(ms_error_last()->message));
	free(long_text);
}

Test(error, save_copies_for_another_thread)
{
	char buffer[64], small[8];
	ms_error saved;

	ms__error_set(MS_EIO, "disk on fire at offset %d", 4096);
	ms__error_save(&saved, buffer, sizeof(buffer));
	cr_assert_eq(saved.code, MS_EIO);
	cr_assert_eq(saved.message, buffer);
	cr_assert_str_eq(saved.message, "disk on fire at offset 4096");

	/* The copy is independent of later errors on this thread. */
	ms__error_set(MS_EINVAL, "something else");
	cr_assert_str_eq(saved.message, "disk on fire at offset 4096");

	/* A small buffer gets a cut, NUL-terminated copy. */
	ms__error_save(&saved, small, sizeof(small));
	cr_assert_eq(saved.code, MS_EINVAL);
	cr_assert_str_eq(saved.message, "somethi");
}

Test(error, printable_keeps_plain_text)
{
	char buf[MS__PRINTABLE_MAX];

	cr_assert_eq(ms__printable(buf, sizeof(buf), "model.layers.0.mlp.up_proj.weight"), buf);
	cr_assert_str_eq(buf, "model.layers.0.mlp.up_proj.weight");
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), ""), "");
	/* UTF-8 passes through untouched. */
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "caf\xc3\xa9 \xe2\x98\x83"),
	                 "caf\xc3\xa9 \xe2\x98\x83");
}

Test(error, printable_escapes_control_characters)
{
	char buf[MS__PRINTABLE_MAX];

	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "a\nb"), "a\\x0ab");
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "\r\t\x1b[31m"), "\\x0d\\x09\\x1b[31m");
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "del\x7f"), "del\\x7f");
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "\x01\x1f"), "\\x01\\x1f");
	/* The backslash itself is escaped, so that an escape in the output is unambiguous. */
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "a\\x0ab"), "a\\x5cx0ab");
	cr_assert(!has_line_break(buf));
}

Test(error, printable_cuts_long_text_with_dots)
{
	char buf[16];
	char guard_buf[32];
	char *long_text = malloc(1001);

	/* Short enough: no dots. */
	cr_assert_str_eq(ms__printable(buf, sizeof(buf), "abcdefg"), "abcdefg");
	/* Too long: cut, marked, and within the buffer. */
	ms__printable(buf, sizeof(buf), "abcdefghijklmnopqrstuvwxyz");
	cr_assert_lt(strlen(buf), sizeof(buf));
	cr_assert(strlen(buf) > 3 && strcmp(buf + strlen(buf) - 3, "...") == 0, "%s", buf);
	cr_assert(strncmp(buf, "abcdefg", 7) == 0, "%s", buf);

	/* A long run of escapes never writes past the buffer: check a guard after it. */
	cr_assert_not_null(long_text);
	memset(long_text, '\n', 1000);
	long_text[1000] = '\0';
	memset(guard_buf, 'Z', sizeof(guard_buf));
	ms__printable(guard_buf, 16, long_text);
	cr_assert_lt(strlen(guard_buf), 16);
	cr_assert(strcmp(guard_buf + strlen(guard_buf) - 3, "...") == 0, "%s", guard_buf);
	for (size_t i = 16; i < sizeof(guard_buf); i++)
		cr_assert_eq(guard_buf[i], 'Z', "byte %zu written past the buffer", i);
	/* Only whole escapes: the text before the dots is a sequence of \x0a. */
	cr_assert_eq((strlen(guard_buf) - 3) % 4, 0, "%s", guard_buf);

	/* The message-sized buffer also cuts a long name. */
	memset(long_text, 'n', 1000);
	{
		char msg[MS__PRINTABLE_MAX];

		ms__printable(msg, sizeof(msg), long_text);
		cr_assert_lt(strlen(msg), sizeof(msg));
		cr_assert(strcmp(msg + strlen(msg) - 3, "...") == 0);
	}
	free(long_text);
}

Test(error, printed_names_stay_one_line_in_messages)
{
	char buf[MS__PRINTABLE_MAX];

	ms__error_set(MS_EFORMAT, "f: tensor '%s': bad",
	              ms__printable(buf, sizeof(buf), "evil\n\x1b]0;title\x07name"));
	cr_assert_str_eq(ms_error_last()->message,
	                 "f: tensor 'evil\\x0a\\x1b]0;title\\x07name': bad");
}
