/*
 * cli.h - what the subcommands of `modelstream` share: exit codes, size parsing and
 * formatting, and error reporting.
 */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"

/* Exit codes an operator can act on; documented in the README and in --help. */
enum {
	EXIT_OK = 0,
	EXIT_FAILURE_OTHER = 1, /* an I/O error or anything not listed below */
	EXIT_USAGE = 2,         /* bad command line or setting */
	EXIT_BAD_INPUT = 3,     /* the file is not valid safetensors */
	EXIT_NOT_FOUND = 4,     /* a file does not exist */
	EXIT_DENIED = 5,        /* permission denied */
	EXIT_LIMIT = 6,         /* too little memory: the limit, or the machine's */
	EXIT_UNAVAILABLE = 7,   /* the store could not be reached, or kept failing, after retries */
	EXIT_NO_SPACE = 8,      /* no space left in the cache (disk, tmpfs, quota or budget) */
	EXIT_NO_DEVICE = 9,     /* no NVIDIA driver, or no such GPU */
	EXIT_CANCELED = 130,    /* interrupted (SIGINT/SIGTERM) */
};

/** The exit-code table, for --help texts. */
extern const char cli_exit_codes_help[];

/** Maps a libmodelstream error code to an exit code. */
int cli_exit_code(int ms_code);

/** Prints "modelstream: <the library's last message>" and returns the exit code for rc. */
int cli_fail(int rc);

/**
 * Makes SIGINT and SIGTERM fire a cancellation token instead of killing the process, so a
 * long command (fetch, push, ls) stops within a second, cleanly, and exits 130. Returns the
 * token (the same one on every call), or NULL when it cannot be made.
 */
ms_cancel *cli_cancel_on_signals(void);

/** Prints "modelstream: <formatted>" to stderr and returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/**
 * Parses a byte size: digits with an optional suffix K, M, G, T (powers of 1024, with an
 * optional "i" and/or "B": 512M, 512MiB, 4G) or "-1". Returns 0 or -1.
 */
int cli_parse_size(int64_t *out, const char *text);

/** Parses an unsigned integer in [min, max]; returns 0 or -1. */
int cli_parse_uint(unsigned *out, const char *text, unsigned min, unsigned max);

/**
 * Copies `s` into `buf` on one line: newline, tab and other control characters become
 * \n, \t, \xNN. Names in files may hold anything; output lines must stay lines.
 */
const char *cli_escape(char *buf, size_t size, const char *s);

/** Reports a getopt error for `command` (an unknown option, a missing value) in one line. */
int cli_option_error(const char *command, int optopt_value, const char *arg);

/** Formats `bytes` as "1.50 GiB" into buf. Returns buf. */
const char *cli_format_bytes(char *buf, size_t size, uint64_t bytes);

int cmd_inspect(int argc, char **argv);
int cmd_stream(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_exists(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_cache_prepare(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
