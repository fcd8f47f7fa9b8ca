/*
 * s3_config.c - reading ~/.aws/config and ~/.aws/credentials.
 *
 * The parser walks the file text line by line without copying lines: a line is a span of
 * the buffer, and only the values of known keys are copied out. Its state is the section
 * being filled and the last "key = value" line, because a more-indented line that follows
 * a key with an empty value belongs to that key's sub-section (botocore's nested form).
 * Every rejection names the path and line number only: a line of a credentials file is
 * as likely as not to hold a secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"
#include "s3_config.h"

/* How the key is spelt in a file, and whether it lives in the "s3 =" sub-section. */
typedef struct {
	const char *name;
	const char *display_name;
	bool in_s3_section;
} key_spec;

static const key_spec key_specs[MS__AWS_KEY_COUNT_] = {
    [MS__AWS_ACCESS_KEY_ID] = {"aws_access_key_id", "aws_access_key_id", false},
    [MS__AWS_SECRET_ACCESS_KEY] = {"aws_secret_access_key", "aws_secret_access_key", false},
    [MS__AWS_SESSION_TOKEN] = {"aws_session_token", "aws_session_token", false},
    [MS__AWS_REGION] = {"region", "region", false},
    [MS__AWS_ENDPOINT_URL] = {"endpoint_url", "endpoint_url", false},
    [MS__AWS_S3_ENDPOINT_URL] = {"endpoint_url", "s3.endpoint_url", true},
    [MS__AWS_S3_ADDRESSING_STYLE] = {"addressing_style", "s3.addressing_style", true},
    [MS__AWS_CA_BUNDLE] = {"ca_bundle", "ca_bundle", false},
    [MS__AWS_IGNORE_CONFIGURED_ENDPOINT_URLS] = {"ignore_configured_endpoint_urls",
                                                 "ignore_configured_endpoint_urls", false},
    [MS__AWS_SERVICES] = {"services", "services", false},
    [MS__AWS_ROLE_ARN] = {"role_arn", "role_arn", false},
    [MS__AWS_SOURCE_PROFILE] = {"source_profile", "source_profile", false},
    [MS__AWS_CREDENTIAL_SOURCE] = {"credential_source", "credential_source", false},
    [MS__AWS_ROLE_SESSION_NAME] = {"role_session_name", "role_session_name", false},
    [MS__AWS_EXTERNAL_ID] = {"external_id", "external_id", false},
    [MS__AWS_WEB_IDENTITY_TOKEN_FILE] = {"web_identity_token_file", "web_identity_token_file",
                                         false},
    [MS__AWS_CREDENTIAL_PROCESS] = {"credential_process", "credential_process", false},
    [MS__AWS_SSO_SESSION] = {"sso_session", "sso_session", false},
    [MS__AWS_SSO_START_URL] = {"sso_start_url", "sso_start_url", false},
};

/* A piece of the file text; not NUL-terminated. */
typedef struct {
	const char *text;
	size_t length;
} span;

typedef enum {
	SECTION_NONE = 0, /* before the first header: a key here is an error */
	SECTION_PROFILE,
	SECTION_SERVICES,
	SECTION_SKIPPED, /* [sso-session x], [plugins], ...: checked, not kept */
} section_kind;

typedef struct {
	ms__aws_config *cfg;
	ms__aws_file_kind kind;
	const char *path;
	size_t line_number;
	size_t section_headers;
	section_kind section;
	size_t section_index; /* into cfg->profiles or cfg->services; arrays may move */
	/* The last "key = value" line, which more-indented lines may continue. */
	bool in_property;
	size_t property_indent;
	bool property_opens_section; /* its value was empty: indented lines are a sub-section */
	bool property_is_s3;         /* ... and it was "s3 =" */
} parser;

const char *ms__getenv_default(const char *name, void *payload)
{
	(void)payload;
	return getenv(name);
}

const char *ms__getenv(ms__getenv_fn fn, void *payload, const char *name)
{
	const char *value = (fn != NULL ? fn : ms__getenv_default)(name, payload);

	return value != NULL && value[0] != '\0' ? value : NULL;
}

const char *ms__aws_key_name(ms__aws_key key)
{
	if ((unsigned)key >= MS__AWS_KEY_COUNT_)
		return "?";
	return key_specs[key].display_name;
}

/* Secrets share these strings with harmless values, so every value is wiped alike. */
static void wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	ms__free(s);
}

static void profile_clear(ms__aws_profile *p)
{
	ms__free(p->name);
	for (size_t k = 0; k < MS__AWS_KEY_COUNT_; k++)
		wipe_free(p->values[k]);
	memset(p, 0, sizeof(*p));
}

void ms__aws_config_free(ms__aws_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->profile_count; i++)
		profile_clear(&cfg->profiles[i]);
	for (size_t i = 0; i < cfg->service_count; i++)
		profile_clear(&cfg->services[i]);
	ms__free(cfg->profiles);
	ms__free(cfg->services);
	ms__free(cfg->config_path);
	ms__free(cfg->credentials_path);
	ms__free(cfg->profile_name);
	ms__free(cfg);
}

int ms__aws_config_new(ms__aws_config **out)
{
	*out = ms__calloc(1, sizeof(**out));
	if (*out == NULL)
		return ms__error_set(MS_ENOMEM, "AWS config: out of memory");
	return 0;
}

static const ms__aws_profile *find_in(const ms__aws_profile *list, size_t count, const char *name)
{
	for (size_t i = 0; i < count; i++)
		if (strcmp(list[i].name, name) == 0)
			return &list[i];
	return NULL;
}

const ms__aws_profile *ms__aws_config_find(const ms__aws_config *cfg, const char *name)
{
	return find_in(cfg->profiles, cfg->profile_count, name);
}

const ms__aws_profile *ms__aws_config_find_services(const ms__aws_config *cfg, const char *name)
{
	return find_in(cfg->services, cfg->service_count, name);
}

const char *ms__aws_config_path(const ms__aws_config *cfg, ms__aws_file_kind kind)
{
	const char *path = NULL;

	if (cfg != NULL)
		path = kind == MS__AWS_FILE_CONFIG        ? cfg->config_path
		       : kind == MS__AWS_FILE_CREDENTIALS ? cfg->credentials_path
		                                          : NULL;
	return path != NULL ? path : "";
}

/* ---------------------------------------------------------------------------------------- */
/* Parsing                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static span trim(span s)
{
	while (s.length > 0 && is_blank(s.text[0])) {
		s.text++;
		s.length--;
	}
	while (s.length > 0 && is_blank(s.text[s.length - 1]))
		s.length--;
	return s;
}

/* Cuts an inline comment: '#' or ';' after a blank, as the AWS SDKs read values. */
static span cut_comment(span s)
{
	for (size_t i = 1; i < s.length; i++)
		if ((s.text[i] == '#' || s.text[i] == ';') && is_blank(s.text[i - 1]))
			return trim((span){s.text, i});
	return s;
}

static bool span_equals(span s, const char *word)
{
	return strlen(word) == s.length && memcmp(s.text, word, s.length) == 0;
}

/* The message names the file and line only: the line itself may hold a secret. */
static int syntax_error(const parser *p, const char *reason)
{
	return ms__error_set(MS_EINVAL, "%s:%zu: %s", p->path, p->line_number, reason);
}

/* Returns the index of the section called `name` in the list, adding it when new. */
static int section_find_or_add(size_t *out, ms__aws_profile **list, size_t *count, span name,
                               const char *path)
{
	ms__aws_profile *grown = NULL;

	for (size_t i = 0; i < *count; i++) {
		if (span_equals(name, (*list)[i].name)) {
			*out = i;
			return 0;
		}
	}
	/* One more each time: the header cap bounds the count, and the quadratic copying of
	 * 4096 small structs costs less than a second pass over the file to count them. */
	grown = ms__realloc(*list, (*count + 1) * sizeof(**list));
	if (grown == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", path);
	*list = grown;
	memset(&grown[*count], 0, sizeof(grown[*count]));
	grown[*count].name = ms__strndup(name.text, name.length);
	if (grown[*count].name == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", path);
	*out = (*count)++;
	return 0;
}

/* Strips one pair of matching quotes, as botocore's shlex.split() of the header does. */
static span unquote(span s)
{
	if (s.length >= 2 && (s.text[0] == '"' || s.text[0] == '\'') &&
	    s.text[s.length - 1] == s.text[0])
		return (span){s.text + 1, s.length - 2};
	return s;
}

static bool has_blank(span s)
{
	for (size_t i = 0; i < s.length; i++)
		if (is_blank(s.text[i]))
			return true;
	return false;
}

/* "profile dev" -> "dev" when `s` is "<word> <name>" with a single name; else false. */
static bool split_prefixed(span *out, span s, const char *word)
{
	size_t n = strlen(word);
	span name;

	if (s.length <= n || memcmp(s.text, word, n) != 0 || !is_blank(s.text[n]))
		return false;
	name = trim((span){s.text + n, s.length - n});
	if (name.length >= 2 && (name.text[0] == '"' || name.text[0] == '\''))
		name = unquote(name);
	else if (has_blank(name))
		return false; /* "[profile a b]": botocore ignores it */
	if (name.length == 0)
		return false;
	*out = name;
	return true;
}

static int parse_section_header(parser *p, span line)
{
	const char *close = memchr(line.text, ']', line.length);
	span name, after, profile_name;
	int rc = 0;

	p->section = SECTION_SKIPPED;
	if (close == NULL)
		return syntax_error(p, "a section header without its closing ']'");
	after = trim((span){close + 1, line.length - (size_t)(close + 1 - line.text)});
	if (after.length > 0 && after.text[0] != '#' && after.text[0] != ';')
		return syntax_error(p, "text after the closing ']' of a section header");
	name = trim((span){line.text + 1, (size_t)(close - line.text - 1)});
	if (name.length == 0)
		return syntax_error(p, "an empty section name");
	if (++p->section_headers > MS__AWS_SECTIONS_MAX)
		return ms__error_set(MS_EINVAL, "%s:%zu: more than %d sections in one file",
		                     p->path, p->line_number, MS__AWS_SECTIONS_MAX);

	if (p->kind == MS__AWS_FILE_CREDENTIALS) {
		/* The credentials file names profiles bare: "[dev]", never "[profile dev]". */
		profile_name = name;
	} else if (span_equals(name, "default")) {
		profile_name = name;
	} else if (split_prefixed(&profile_name, name, "profile")) {
		/* "[profile default]" is the same profile as "[default]". */
	} else if (split_prefixed(&profile_name, name, "services")) {
		rc = section_find_or_add(&p->section_index, &p->cfg->services,
		                         &p->cfg->service_count, profile_name, p->path);
		if (rc == 0)
			p->section = SECTION_SERVICES;
		return rc;
	} else {
		return 0; /* [sso-session x], [plugins], [preview]: not ours */
	}
	rc = section_find_or_add(&p->section_index, &p->cfg->profiles, &p->cfg->profile_count,
	                         profile_name, p->path);
	if (rc != 0)
		return rc;
	p->section = SECTION_PROFILE;
	if (p->kind == MS__AWS_FILE_CREDENTIALS)
		p->cfg->profiles[p->section_index].in_credentials = true;
	else
		p->cfg->profiles[p->section_index].in_config = true;
	return 0;
}

static int store_value(parser *p, span key, span value, bool in_s3_section)
{
	ms__aws_profile *section;
	char *copy = NULL;
	size_t k;

	if (p->section == SECTION_PROFILE)
		section = &p->cfg->profiles[p->section_index];
	else if (p->section == SECTION_SERVICES)
		section = &p->cfg->services[p->section_index];
	else
		return 0;
	for (k = 0; k < MS__AWS_KEY_COUNT_; k++)
		if (key_specs[k].in_s3_section == in_s3_section &&
		    strlen(key_specs[k].name) == key.length &&
		    strncasecmp(key_specs[k].name, key.text, key.length) == 0)
			break;
	if (k == MS__AWS_KEY_COUNT_)
		return 0; /* a key we have no use for */
	/* A [services x] section serves only to give s3 an endpoint. */
	if (p->section == SECTION_SERVICES && k != MS__AWS_S3_ENDPOINT_URL)
		return 0;
	if (value.length > 0) {
		copy = ms__strndup(value.text, value.length);
		if (copy == NULL)
			return ms__error_set(MS_ENOMEM, "%s: out of memory", p->path);
	}
	/* A later value replaces an earlier one, an empty one included, as in botocore. */
	wipe_free(section->values[k]);
	section->values[k] = copy;
	section->origins[k] = copy != NULL ? p->kind : MS__AWS_FILE_NONE;
	return 0;
}

/* A more-indented line under "key =": one "key = value" of the sub-section. */
static int parse_sub_section_line(parser *p, span line)
{
	const char *equals = memchr(line.text, '=', line.length);
	span key, value;

	if (!p->property_opens_section)
		return syntax_error(p, "an indented line continues a value; only a key with an "
		                       "empty value may be followed by indented lines");
	if (equals == NULL)
		return syntax_error(p, "a line of a sub-section without '='");
	key = trim((span){line.text, (size_t)(equals - line.text)});
	value =
	    cut_comment(trim((span){equals + 1, line.length - (size_t)(equals + 1 - line.text)}));
	if (key.length == 0)
		return syntax_error(p, "a line with no key before '='");
	if (!p->property_is_s3)
		return 0; /* "sts =", "dynamodb =": other services' settings */
	return store_value(p, key, value, true);
}

static int parse_property(parser *p, span line, size_t indent)
{
	const char *equals = memchr(line.text, '=', line.length);
	const char *colon = memchr(line.text, ':', line.length);
	const char *delimiter = equals;
	span key, value;

	/* configparser splits at the first '=' or ':', whichever comes first. */
	if (colon != NULL && (delimiter == NULL || colon < delimiter))
		delimiter = colon;
	if (delimiter == NULL)
		return syntax_error(p, "a line that is neither a section header, a 'key = value' "
		                       "pair nor a comment");
	if (p->section == SECTION_NONE)
		return syntax_error(p, "a key before the first section header");
	key = trim((span){line.text, (size_t)(delimiter - line.text)});
	value = cut_comment(
	    trim((span){delimiter + 1, line.length - (size_t)(delimiter + 1 - line.text)}));
	if (key.length == 0)
		return syntax_error(p, "a line with no key before its '=' or ':'");
	p->in_property = true;
	p->property_indent = indent;
	p->property_opens_section = value.length == 0;
	p->property_is_s3 = key.length == 2 && strncasecmp(key.text, "s3", 2) == 0;
	if (p->property_is_s3)
		return 0; /* its keys come on the indented lines below */
	return store_value(p, key, value, false);
}

static int parse_line(parser *p, span raw)
{
	size_t indent = 0;
	span line;

	while (indent < raw.length && is_blank(raw.text[indent]))
		indent++;
	line = trim((span){raw.text + indent, raw.length - indent});
	/* Blank lines and comments neither end nor continue a sub-section. */
	if (line.length == 0 || line.text[0] == '#' || line.text[0] == ';')
		return 0;
	if (p->in_property && indent > p->property_indent)
		return parse_sub_section_line(p, line);
	p->in_property = false;
	if (line.text[0] == '[')
		return parse_section_header(p, line);
	return parse_property(p, line, indent);
}

static int check_line_bytes(const parser *p, span line)
{
	for (size_t i = 0; i < line.length; i++) {
		unsigned char c = (unsigned char)line.text[i];

		/* A control byte is never part of a valid value, and letting one through could
		 * put it in an HTTP header later. */
		if (c == '\0')
			return syntax_error(p, "a NUL byte (is this a text file?)");
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return syntax_error(p, "a control character (is this a text file?)");
	}
	return 0;
}

int ms__aws_config_parse(ms__aws_config *cfg, ms__aws_file_kind kind, const char *path,
                         const char *text, size_t len)
{
	parser p = {.cfg = cfg, .kind = kind, .path = path};
	size_t pos = 0;
	int rc = 0;

	if (kind != MS__AWS_FILE_CONFIG && kind != MS__AWS_FILE_CREDENTIALS)
		return ms__error_set(MS_EINVAL, "%s: unknown kind of AWS file", path);
	if (len > MS__AWS_FILE_MAX)
		return ms__error_set(MS_EINVAL,
		                     "%s: larger than %d bytes, the most read from an "
		                     "AWS config or credentials file",
		                     path, MS__AWS_FILE_MAX);
	/* Windows editors start UTF-8 files with a byte order mark; the AWS CLI copes. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		pos = 3;
	while (pos < len) {
		const char *start = text + pos;
		const char *newline = memchr(start, '\n', len - pos);
		span line = {start, newline != NULL ? (size_t)(newline - start) : len - pos};

		pos += line.length + (newline != NULL);
		p.line_number++;
		if (line.length > 0 && line.text[line.length - 1] == '\r')
			line.length--;
		if (line.length > MS__AWS_LINE_MAX)
			return ms__error_set(MS_EINVAL, "%s:%zu: a line longer than %d bytes", path,
			                     p.line_number, MS__AWS_LINE_MAX);
		rc = check_line_bytes(&p, line);
		if (rc == 0)
			rc = parse_line(&p, line);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Frees a buffer that held a file's text, wiping it: the text holds the secrets too. */
static void wipe_free_buffer(char *buffer, size_t capacity)
{
	if (buffer == NULL)
		return;
	explicit_bzero(buffer, capacity);
	ms__free(buffer);
}

/*
 * Reads at most MS__AWS_FILE_MAX + 1 bytes of `fd`, so that a file over the cap is seen
 * as such even when it grows or is a pipe. The buffer grows by copying rather than
 * realloc(), which would free the old block without wiping it.
 */
static int read_capped(char **out, size_t *out_len, size_t *out_capacity, int fd, const char *path)
{
	char *buffer = NULL;
	size_t capacity = 4096, len = 0;
	int rc = 0;

	buffer = ms__malloc(capacity);
	if (buffer == NULL) {
		rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	for (;;) {
		ssize_t n;

		if (len == capacity) {
			size_t bigger = capacity * 2;
			char *grown;

			if (capacity > MS__AWS_FILE_MAX)
				break; /* over the cap: the caller says so */
			if (bigger > (size_t)MS__AWS_FILE_MAX + 1)
				bigger = (size_t)MS__AWS_FILE_MAX + 1;
			grown = ms__malloc(bigger);
			if (grown == NULL) {
				rc = ms__error_set(MS_ENOMEM, "%s: out of memory", path);
				goto done;
			}
			memcpy(grown, buffer, len);
			wipe_free_buffer(buffer, capacity);
			buffer = grown;
			capacity = bigger;
		}
		n = read(fd, buffer + len, capacity - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = ms__error_errno(errno, "%s: read failed", path);
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
done:
	if (rc != 0) {
		wipe_free_buffer(buffer, capacity);
		buffer = NULL;
		len = capacity = 0;
	}
	*out = buffer;
	*out_len = len;
	*out_capacity = capacity;
	return rc;
}

static int read_and_parse(ms__aws_config *cfg, ms__aws_file_kind kind)
{
	const char *path = kind == MS__AWS_FILE_CONFIG ? cfg->config_path : cfg->credentials_path;
	ms__aws_file_status *status =
	    kind == MS__AWS_FILE_CONFIG ? &cfg->config_status : &cfg->credentials_status;
	char *text = NULL;
	size_t len = 0, capacity = 0;
	int fd = -1, rc = 0;

	if (path == NULL) {
		*status = MS__AWS_FILE_NOT_LOOKED;
		goto done;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* The AWS CLI treats a file it cannot read as empty: credentials may well come
		 * from the environment instead. The status lets `doctor` point it out. */
		if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
			*status = MS__AWS_FILE_MISSING;
		else if (errno == EACCES || errno == EPERM)
			*status = MS__AWS_FILE_UNREADABLE;
		else
			rc = ms__error_errno(errno, "%s", path);
		goto done;
	}
	/* /dev/null and pipes are fine (AWS_CONFIG_FILE=/dev/null turns the file off); a
	 * directory is treated as missing, as botocore's isfile() check does. */
	{
		struct stat st;

		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
			*status = MS__AWS_FILE_MISSING;
			goto done;
		}
	}
	rc = read_capped(&text, &len, &capacity, fd, path);
	if (rc != 0)
		goto done;
	*status = MS__AWS_FILE_READ;
	rc = ms__aws_config_parse(cfg, kind, path, text, len);
done:
	wipe_free_buffer(text, capacity);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* "<home>/<rest>" in a new string, or the error. */
static int join_path(char **out, const char *home, const char *rest, const char *what)
{
	size_t len = strlen(home) + 1 + strlen(rest);

	*out = NULL;
	if (len >= PATH_MAX)
		return ms__error_set(MS_EINVAL, "%s: path longer than %d bytes", what, PATH_MAX);
	*out = ms__malloc(len + 1);
	if (*out == NULL)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", what);
	snprintf(*out, len + 1, "%s/%s", home, rest);
	return 0;
}

/* Picks a file's path: the option, the variable ("~/" expanded), else $HOME/.aws/<name>. */
static int locate(char **out, const char *option, const char *variable, const char *name,
                  const ms__aws_config_options *opts)
{
	const char *home = ms__getenv(opts->getenv, opts->getenv_payload, "HOME");
	const char *path = option != NULL && option[0] != '\0'
	                       ? option
	                       : ms__getenv(opts->getenv, opts->getenv_payload, variable);
	char rest[32];

	*out = NULL;
	if (path != NULL) {
		if (path[0] == '~' && path[1] == '/' && home != NULL)
			return join_path(out, home, path + 2, variable);
		if (strlen(path) >= PATH_MAX)
			return ms__error_set(MS_EINVAL, "%s: path longer than %d bytes", variable,
			                     PATH_MAX);
		*out = ms__strdup(path);
		return *out != NULL ? 0 : ms__error_set(MS_ENOMEM, "%s: out of memory", variable);
	}
	if (home == NULL)
		return 0; /* no file to look for: not an error in a bare container */
	snprintf(rest, sizeof(rest), ".aws/%s", name);
	return join_path(out, home, rest, "HOME");
}

static int select_profile(ms__aws_config *cfg, const ms__aws_config_options *opts)
{
	const char *name = NULL;
	char printable[MS__PRINTABLE_MAX];

	if (opts->profile != NULL && opts->profile[0] != '\0') {
		name = opts->profile;
		cfg->profile_why = "option";
	} else if ((name = ms__getenv(opts->getenv, opts->getenv_payload, "AWS_PROFILE")) != NULL) {
		cfg->profile_why = "AWS_PROFILE";
	} else if ((name = ms__getenv(opts->getenv, opts->getenv_payload, "AWS_DEFAULT_PROFILE")) !=
	           NULL) {
		cfg->profile_why = "AWS_DEFAULT_PROFILE";
	} else {
		name = "default";
		cfg->profile_why = "default";
	}
	cfg->profile_name = ms__strdup(name);
	if (cfg->profile_name == NULL)
		return ms__error_set(MS_ENOMEM, "AWS config: out of memory");
	cfg->profile = ms__aws_config_find(cfg, name);
	/* A missing "default" is normal (credentials from the environment); a missing named
	 * profile is a typo the AWS CLI also refuses. */
	if (cfg->profile == NULL && strcmp(name, "default") != 0)
		return ms__error_set(
		    MS_ENOTFOUND, "AWS profile '%s' (from %s) is in neither %s nor %s",
		    ms__printable(printable, sizeof(printable), name), cfg->profile_why,
		    cfg->config_path != NULL ? cfg->config_path : "(no config file)",
		    cfg->credentials_path != NULL ? cfg->credentials_path
		                                  : "(no credentials file)");
	return 0;
}

int ms__aws_config_load(ms__aws_config **out, const ms__aws_config_options *opts)
{
	static const ms__aws_config_options defaults = {0};
	ms__aws_config *cfg = NULL;
	int rc;

	*out = NULL;
	if (opts == NULL)
		opts = &defaults;
	rc = ms__aws_config_new(&cfg);
	if (rc != 0)
		goto done;
	rc = locate(&cfg->config_path, opts->config_file, "AWS_CONFIG_FILE", "config", opts);
	if (rc == 0)
		rc = locate(&cfg->credentials_path, opts->credentials_file,
		            "AWS_SHARED_CREDENTIALS_FILE", "credentials", opts);
	/* The credentials file is read second so that its values win, as in botocore. */
	if (rc == 0)
		rc = read_and_parse(cfg, MS__AWS_FILE_CONFIG);
	if (rc == 0)
		rc = read_and_parse(cfg, MS__AWS_FILE_CREDENTIALS);
	if (rc == 0)
		rc = select_profile(cfg, opts);
done:
	if (rc != 0) {
		ms__aws_config_free(cfg);
		cfg = NULL;
	}
	*out = cfg;
	return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Credentials                                                                               */
/* ---------------------------------------------------------------------------------------- */

static const char *origin_path(const ms__aws_config *cfg, const ms__aws_profile *p, ms__aws_key key)
{
	const char *path = ms__aws_config_path(cfg, p->origins[key]);

	return path[0] != '\0' ? path : "the AWS config";
}

int ms__aws_profile_credentials_kind(ms__aws_credentials_kind *out, const ms__aws_config *cfg,
                                     const ms__aws_profile *p)
{
	char name[MS__PRINTABLE_MAX];
	const char *const *v;
	bool has_key_pair, key_pair_from_credentials;

	*out = MS__AWS_CREDENTIALS_NONE;
	if (p == NULL)
		return 0;
	v = (const char *const *)p->values;
	ms__printable(name, sizeof(name), p->name);
	has_key_pair = v[MS__AWS_ACCESS_KEY_ID] != NULL && v[MS__AWS_SECRET_ACCESS_KEY] != NULL;
	key_pair_from_credentials =
	    has_key_pair && p->origins[MS__AWS_ACCESS_KEY_ID] == MS__AWS_FILE_CREDENTIALS &&
	    p->origins[MS__AWS_SECRET_ACCESS_KEY] == MS__AWS_FILE_CREDENTIALS;

	if (v[MS__AWS_ROLE_ARN] != NULL) {
		if (v[MS__AWS_WEB_IDENTITY_TOKEN_FILE] != NULL) {
			*out = MS__AWS_CREDENTIALS_WEB_IDENTITY;
			return 0;
		}
		*out = MS__AWS_CREDENTIALS_ASSUME_ROLE;
		if ((v[MS__AWS_SOURCE_PROFILE] != NULL) == (v[MS__AWS_CREDENTIAL_SOURCE] != NULL))
			return ms__error_set(MS_EINVAL,
			                     "profile '%s' in %s: role_arn needs exactly one of "
			                     "source_profile, credential_source or "
			                     "web_identity_token_file",
			                     name, origin_path(cfg, p, MS__AWS_ROLE_ARN));
		return 0;
	}
	if (v[MS__AWS_SSO_SESSION] != NULL || v[MS__AWS_SSO_START_URL] != NULL) {
		*out = MS__AWS_CREDENTIALS_SSO;
		return ms__error_set(
		    MS_EUNSUPPORTED,
		    "profile '%s' uses IAM Identity Center (SSO), which modelstream "
		    "cannot log in to; export the credentials that `aws configure "
		    "export-credentials --profile %s --format env` prints",
		    name, name);
	}
	if (v[MS__AWS_ACCESS_KEY_ID] != NULL || v[MS__AWS_SECRET_ACCESS_KEY] != NULL) {
		ms__aws_key present = v[MS__AWS_ACCESS_KEY_ID] != NULL ? MS__AWS_ACCESS_KEY_ID
		                                                       : MS__AWS_SECRET_ACCESS_KEY;

		if (!has_key_pair)
			return ms__error_set(MS_EINVAL, "profile '%s' in %s has %s but not %s",
			                     name, origin_path(cfg, p, present),
			                     ms__aws_key_name(present),
			                     ms__aws_key_name(present == MS__AWS_ACCESS_KEY_ID
			                                          ? MS__AWS_SECRET_ACCESS_KEY
			                                          : MS__AWS_ACCESS_KEY_ID));
		/* botocore asks the credentials file before credential_process, and the
		 * config file's keys after it. */
		if (key_pair_from_credentials || v[MS__AWS_CREDENTIAL_PROCESS] == NULL) {
			*out = MS__AWS_CREDENTIALS_STATIC;
			return 0;
		}
	}
	if (v[MS__AWS_CREDENTIAL_PROCESS] != NULL) {
		*out = MS__AWS_CREDENTIALS_PROCESS;
		return ms__error_set(
		    MS_EUNSUPPORTED,
		    "profile '%s' in %s uses credential_process, which modelstream "
		    "does not run; export the credentials that `aws configure "
		    "export-credentials --profile %s --format env` prints",
		    name, origin_path(cfg, p, MS__AWS_CREDENTIAL_PROCESS), name);
	}
	return 0;
}
