/*
 * util.c - exit codes, sizes and error output shared by the subcommands.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelstream.h"

#include "cli.h"

const char cli_exit_codes_help[] =
    "Exit codes:\n"
    "  0    success\n"
    "  1    failure: an I/O error, or anything not listed below\n"
    "  2    usage: a bad command line, option or environment setting\n"
    "  3    bad input: a file is not a valid safetensors file (or other malformed input)\n"
    "  4    not found: a file does not exist\n"
    "  5    permission denied\n"
    "  6    memory: the limit is below the largest tensor, or the machine (or the\n"
    "       container) has too little memory left for the arena\n"
    "  7    storage unavailable: the store could not be reached, or kept failing (503\n"
    "       SlowDown, 5xx, resets, stalls) after retries\n"
    "  8    out of space: the cache's disk, tmpfs or quota is full\n"
    "  9    no such device: no NVIDIA driver, or no GPU of that number\n"
    "  130  interrupted by SIGINT or SIGTERM\n";

int cli_exit_code(int ms_code)
{
	switch (ms_code) {
	case MS_OK:
	case MS_ITER_END:
		return EXIT_OK;
	case MS_EINVAL:
		return EXIT_USAGE;
	case MS_EFORMAT:
		return EXIT_BAD_INPUT;
	case MS_ENOTFOUND:
		return EXIT_NOT_FOUND;
	case MS_EACCES:
		return EXIT_DENIED;
	case MS_ELIMIT:
		return EXIT_LIMIT;
	case MS_ECANCELED:
		return EXIT_CANCELED;
	case MS_EUNAVAILABLE:
		return EXIT_UNAVAILABLE;
	case MS_ENOSPC:
		return EXIT_NO_SPACE;
	case MS_ENODEVICE:
		return EXIT_NO_DEVICE;
	default:
		return EXIT_FAILURE_OTHER;
	}
}

int cli_fail(int rc)
{
	fprintf(stderr, "modelstream: %s\n", ms_error_last()->message);
	return cli_exit_code(rc);
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("modelstream: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

int cli_parse_size(int64_t *out, const char *text)
{
	char *end = NULL;
	long long v;
	int shift = 0;

	if (strcmp(text, "-1") == 0) {
		*out = -1;
		return 0;
	}
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || v < 0 || text[0] == '-' || text[0] == '+')
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	case 't':
	case 'T':
		shift = 40;
		end++;
		break;
	default:
		break;
	}
	if (shift != 0 && *end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0')
		return -1;
	if (shift != 0 && v > (INT64_MAX >> shift))
		return -1;
	*out = (int64_t)v << shift;
	return 0;
}

int cli_parse_uint(unsigned *out, const char *text, unsigned min, unsigned max)
{
	char *end = NULL;
	unsigned long v;

	errno = 0;
	if (text[0] == '-' || text[0] == '+')
		return -1;
	v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

const char *cli_format_bytes(char *buf, size_t size, uint64_t bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, size, "%.2f %s", v, units[u]);
	return buf;
}

const char *cli_escape(char *buf, size_t size, const char *s)
{
	size_t used = 0;

	for (; *s != '\0' && used + 5 < size; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '\n' || c == '\t') {
			buf[used++] = '\\';
			buf[used++] = c == '\n' ? 'n' : 't';
		} else if (c < 0x20 || c == 0x7f) {
			used += (size_t)snprintf(buf + used, size - used, "\\x%02x", c);
		} else {
			buf[used++] = (char)c;
		}
	}
	buf[used] = '\0';
	return buf;
}

int cli_option_error(const char *command, int optopt_value, const char *arg)
{
	if (optopt_value != 0 && arg != NULL && arg[0] == '-' && arg[1] != '-')
		return cli_usage_error("%s: unknown option '-%c' (see 'modelstream %s --help')",
		                       command, optopt_value, command);
	return cli_usage_error("%s: unknown option or missing value in '%s' (see 'modelstream %s "
	                       "--help')",
	                       command, arg != NULL ? arg : "", command);
}

/* The token SIGINT and SIGTERM fire. A handler may only do async-signal-safe things:
 * firing the token is one atomic store. */
static ms_cancel *signal_token;

static void on_stop_signal(int sig)
{
	(void)sig;
	ms_cancel_fire(signal_token);
}

ms_cancel *cli_cancel_on_signals(void)
{
	struct sigaction sa = {.sa_handler = on_stop_signal};

	if (signal_token == NULL && ms_cancel_new(&signal_token) < 0)
		return NULL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	return signal_token;
}
