/*
 * s3_config.h - the AWS shared config and credentials files, read the way the AWS CLI
 * reads them.
 *
 * Users who already run `aws s3 ls` expect modelstream to find the same profile, region,
 * endpoint and keys without being told again. This module reads ~/.aws/config and
 * ~/.aws/credentials (or the files that AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE
 * name) into a table of profiles, and picks the profile that the options, AWS_PROFILE or
 * AWS_DEFAULT_PROFILE name ("default" otherwise). It does no network I/O and starts no
 * process: credential_process, SSO and role assumption are recognised and reported, and
 * left to the modules that can act on them.
 *
 * The dialect is botocore's (Python configparser): sections "[default]" and "[profile
 * NAME]" in the config file, "[NAME]" in the credentials file; "key = value" or "key:
 * value"; keys in any case; full-line comments starting with '#' or ';', and inline
 * comments after whitespace (as the AWS SDKs read them); a key with an empty value followed
 * by more-indented "key = value" lines is a sub-section ("s3 =\n  addressing_style =
 * path"). Where one profile appears in both files, the credentials file wins key by key,
 * as in botocore. Sections of other kinds ([sso-session x], [plugins]) are checked for
 * syntax and skipped; [services x] sections are kept for their s3 endpoint_url, which the
 * AWS SDKs apply to profiles that name them with `services = x`.
 *
 * Both files come from outside the process, so each has hard caps (MS__AWS_FILE_MAX,
 * MS__AWS_LINE_MAX, MS__AWS_SECTIONS_MAX). A syntax error names the file and the line
 * number only, never the line, because the line may hold a secret. Every value is wiped
 * with explicit_bzero() when it is replaced or freed, and so is the text of each file.
 *
 * Environment variables are read through an ms__getenv_fn accessor, so tests give each
 * case its own environment without touching the process's.
 *
 * Thread rules: a loaded ms__aws_config is never changed again, so any number of threads
 * may read it at once; ms__aws_config_free() must come after the last reader.
 */
#ifndef MS_S3_CONFIG_H
#define MS_S3_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "modelstream.h"

/** The largest config or credentials file read (1 MiB); a larger one is an error. */
#define MS__AWS_FILE_MAX (1024 * 1024)
/** The longest line, in bytes without the newline: room for the longest session tokens. */
#define MS__AWS_LINE_MAX (16 * 1024)
/** The most section headers one file may hold, so that lookups stay cheap. */
#define MS__AWS_SECTIONS_MAX 4096

/**
 * Reads environment variable `name`; returns its value or NULL when it is unset. The
 * returned string must stay valid until the call that asked for it returns.
 */
typedef const char *(*ms__getenv_fn)(const char *name, void *payload);

/** The process environment: getenv(name); `payload` is unused. */
const char *ms__getenv_default(const char *name, void *payload);

/**
 * Reads `name` through `fn` (ms__getenv_default when NULL) and returns NULL for a variable
 * that is unset or set to the empty string, as botocore treats both the same.
 */
const char *ms__getenv(ms__getenv_fn fn, void *payload, const char *name);

/** The keys modelstream understands; every other key is read and ignored. */
typedef enum {
	MS__AWS_ACCESS_KEY_ID = 0,               /* aws_access_key_id */
	MS__AWS_SECRET_ACCESS_KEY,               /* aws_secret_access_key (secret) */
	MS__AWS_SESSION_TOKEN,                   /* aws_session_token (secret) */
	MS__AWS_REGION,                          /* region */
	MS__AWS_ENDPOINT_URL,                    /* endpoint_url */
	MS__AWS_S3_ENDPOINT_URL,                 /* s3 =\n endpoint_url = ... */
	MS__AWS_S3_ADDRESSING_STYLE,             /* s3 =\n addressing_style = path|virtual|auto */
	MS__AWS_CA_BUNDLE,                       /* ca_bundle */
	MS__AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, /* ignore_configured_endpoint_urls */
	MS__AWS_SERVICES,                        /* services: names a [services x] section */
	MS__AWS_ROLE_ARN,                        /* role_arn */
	MS__AWS_SOURCE_PROFILE,                  /* source_profile */
	MS__AWS_CREDENTIAL_SOURCE,               /* credential_source */
	MS__AWS_ROLE_SESSION_NAME,               /* role_session_name */
	MS__AWS_EXTERNAL_ID,                     /* external_id */
	MS__AWS_WEB_IDENTITY_TOKEN_FILE,         /* web_identity_token_file */
	MS__AWS_CREDENTIAL_PROCESS,              /* credential_process (never run) */
	MS__AWS_SSO_SESSION,                     /* sso_session (not supported) */
	MS__AWS_SSO_START_URL,                   /* sso_start_url (not supported) */
	MS__AWS_KEY_COUNT_
} ms__aws_key;

/** The key's spelling in the files ("s3.endpoint_url" for the sub-section keys). */
const char *ms__aws_key_name(ms__aws_key key);

/** Which file a value came from. */
typedef enum {
	MS__AWS_FILE_NONE = 0,
	MS__AWS_FILE_CONFIG,      /* ~/.aws/config */
	MS__AWS_FILE_CREDENTIALS, /* ~/.aws/credentials */
} ms__aws_file_kind;

/** What became of one file when it was looked for. */
typedef enum {
	MS__AWS_FILE_NOT_LOOKED = 0, /* no path: HOME unset and no variable names it */
	MS__AWS_FILE_READ,           /* read and parsed */
	MS__AWS_FILE_MISSING,        /* no such file: not an error, as in the AWS CLI */
	MS__AWS_FILE_UNREADABLE,     /* exists but cannot be opened (permissions); skipped */
} ms__aws_file_status;

/** One profile (or one [services x] section), merged from both files. */
typedef struct {
	char *name;
	char *values[MS__AWS_KEY_COUNT_];              /* NULL when unset or empty */
	ms__aws_file_kind origins[MS__AWS_KEY_COUNT_]; /* where each value came from */
	bool in_config;                                /* a section in the config file */
	bool in_credentials;                           /* a section in the credentials file */
} ms__aws_profile;

/** Everything read from the two files; build with ms__aws_config_load(). */
typedef struct {
	ms__aws_profile *profiles; /* in order of first appearance */
	size_t profile_count;
	ms__aws_profile *services; /* [services x] sections */
	size_t service_count;
	char *config_path; /* NULL when not looked for */
	char *credentials_path;
	ms__aws_file_status config_status;
	ms__aws_file_status credentials_status;
	/** The selected profile's name, and why it was selected: "option", "AWS_PROFILE",
	 * "AWS_DEFAULT_PROFILE" or "default" (static strings). */
	char *profile_name;
	const char *profile_why;
	/** The selected profile, or NULL when it is "default" and neither file has it. */
	const ms__aws_profile *profile;
} ms__aws_config;

typedef struct {
	ms__getenv_fn getenv; /* NULL: the process environment */
	void *getenv_payload;
	/** The profile to select, above AWS_PROFILE (a --profile flag); NULL for none. */
	const char *profile;
	/** Paths that override the variables and $HOME/.aws/...; NULL for none. */
	const char *config_file;
	const char *credentials_file;
} ms__aws_config_options;

/**
 * Finds, reads and parses both files and selects the profile.
 *
 * Files are located by the options, then AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE
 * (a leading "~/" is expanded with HOME), then $HOME/.aws/config and
 * $HOME/.aws/credentials. A missing or unreadable file counts as empty, as in the AWS CLI;
 * the status fields say which happened.
 *
 * @param out   receives the new config; NULL on failure.
 * @param opts  may be NULL for all defaults.
 * @return 0; MS_EINVAL for a file over a cap or with a syntax error (the message gives the
 *         path and line number, never the line); MS_ENOTFOUND when a profile other than
 *         "default" was asked for and neither file has it; MS_EIO when reading fails
 *         half-way; MS_ENOMEM.
 */
int ms__aws_config_load(ms__aws_config **out, const ms__aws_config_options *opts);

/** An empty config, for ms__aws_config_parse(). Returns 0 or MS_ENOMEM. */
int ms__aws_config_new(ms__aws_config **out);

/**
 * Parses `len` bytes of `text` (need not be NUL-terminated) as a file of `kind` and merges
 * it into `cfg`, later values replacing earlier ones. `path` names the file in messages.
 * Does not select a profile. On failure `cfg` keeps what was merged before the error and
 * must still be freed.
 *
 * @return 0; MS_EINVAL (over a cap, or a syntax error: "<path>:<line>: <reason>");
 *         MS_ENOMEM.
 */
int ms__aws_config_parse(ms__aws_config *cfg, ms__aws_file_kind kind, const char *path,
                         const char *text, size_t len);

/** The profile called `name`, or NULL. */
const ms__aws_profile *ms__aws_config_find(const ms__aws_config *cfg, const char *name);

/** The [services `name`] section, or NULL. */
const ms__aws_profile *ms__aws_config_find_services(const ms__aws_config *cfg, const char *name);

/** The path of the file of `kind` that `cfg` read ("" when none), for messages. */
const char *ms__aws_config_path(const ms__aws_config *cfg, ms__aws_file_kind kind);

/** Frees `cfg`, wiping every value first. Accepts NULL. */
void ms__aws_config_free(ms__aws_config *cfg);

/** How a profile obtains credentials, in botocore's order of precedence. */
typedef enum {
	MS__AWS_CREDENTIALS_NONE = 0,     /* nothing in the profile */
	MS__AWS_CREDENTIALS_STATIC,       /* aws_access_key_id + aws_secret_access_key */
	MS__AWS_CREDENTIALS_ASSUME_ROLE,  /* role_arn + source_profile or credential_source */
	MS__AWS_CREDENTIALS_WEB_IDENTITY, /* role_arn + web_identity_token_file */
	MS__AWS_CREDENTIALS_SSO,          /* sso_session or sso_start_url: not supported */
	MS__AWS_CREDENTIALS_PROCESS,      /* credential_process: not supported */
} ms__aws_credentials_kind;

/**
 * Says how profile `p` (of `cfg`, for the file names in messages) obtains credentials,
 * in botocore's order: role_arn first, then SSO, then static keys, then
 * credential_process. `p` may be NULL (MS__AWS_CREDENTIALS_NONE).
 *
 * @return 0; MS_EUNSUPPORTED for SSO and credential_process (*out is still set, and the
 *         message says what to do instead); MS_EINVAL for an incomplete profile (a key id
 *         without its secret, a role_arn with nothing to assume it from).
 */
int ms__aws_profile_credentials_kind(ms__aws_credentials_kind *out, const ms__aws_config *cfg,
                                     const ms__aws_profile *p);

#endif
