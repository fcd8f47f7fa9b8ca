/*
 * config.h - the YAML configuration file of `modelstream fetch` (usually a mounted
 * ConfigMap): what it holds once read, and the loader that checks it.
 *
 * The file is the lowest layer of configuration: command-line flags and environment
 * variables override what it says (DESIGN.md, "Configuration"), so every setting has an
 * "unset" value that the caller fills from the other layers. The format is documented at
 * the top of config.c and shown by tests/fixtures/config/example.yaml.
 *
 * Threads: the functions keep no state between calls; a cli_config belongs to one thread
 * at a time.
 */
#ifndef MS_CLI_CONFIG_H
#define MS_CLI_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Caps on what an outsider's file may hold. */
#define CLI_CONFIG_MODELS_MAX      256
#define CLI_CONFIG_FILE_MAX        (1024 * 1024) /* bytes of the file */
#define CLI_CONFIG_NAME_MAX        128           /* bytes of a model name */
#define CLI_CONFIG_VALUE_MAX       4096          /* bytes of a path, URL or address */
#define CLI_CONFIG_CONCURRENCY_MAX 256

typedef struct {
	char *name;   /* NULL when the file gives none (fetch derives one from the source) */
	char *source; /* "s3://bucket/dir/", "gs://...", a local path; never NULL */
	char *sha256_manifest; /* optional: path or URL of a sha256sum-format manifest; NULL */
} cli_model;

typedef struct {
	char *cache;      /* cache directory; NULL if unset */
	int64_t budget;   /* bytes, -1 if unset ("200G", "512MiB", 1073741824 accepted) */
	int concurrency;  /* 0 if unset; 1..256 */
	char *log_format; /* "text" or "json"; NULL if unset */
	char *listen;     /* "0.0.0.0:9090" style address for the health server; NULL if unset */
	cli_model *models;
	size_t model_count;
} cli_config;

/**
 * Reads and validates the configuration file at `path` into `out`.
 *
 * @param out       receives the settings; on success the caller frees it with
 *                  cli_config_free(). On failure it is left in the unset state and owns
 *                  nothing (freeing it anyway is harmless).
 * @param path      the file; it must be at most CLI_CONFIG_FILE_MAX bytes.
 * @param err       on failure, one line without control characters that names the file,
 *                  the line and column where there is one, and the key:
 *                  "config.yaml:12:3: 'budget' must be a size like 200G, not 'lots'".
 *                  Values are quoted only as short, escaped excerpts. May be NULL.
 * @param err_size  the size of `err`; the message is cut to fit (256 bytes is plenty).
 * @return 0, or -1 on any failure: the file cannot be read (the message then holds the
 *         errno text and the path), is too large, is not valid YAML, or breaks a rule.
 */
int cli_config_load(cli_config *out, const char *path, char *err, size_t err_size);

/**
 * The same as cli_config_load() for `len` bytes of `text` in memory (which need not be
 * NUL-terminated); `name` stands for the file in messages. For tests and the fuzzer.
 */
int cli_config_parse(cli_config *out, const char *name, const char *text, size_t len, char *err,
                     size_t err_size);

/** Frees what `c` owns and puts it back in the unset state; accepts NULL. */
void cli_config_free(cli_config *c);

#endif
