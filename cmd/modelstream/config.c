/*
 * config.c - reads the YAML configuration file of `modelstream fetch`.
 *
 * The file (tests/fixtures/config/example.yaml is a complete one):
 *
 *   cache: /var/cache/modelstream     # the node-shared cache directory
 *   budget: 200G                      # bytes the cache may hold: 200G, 512MiB, 1073741824
 *   concurrency: 16                   # parallel downloads, 1 to 256
 *   log_format: text                  # text or json
 *   listen: 0.0.0.0:9090              # address of the health server
 *   models:                           # at most 256
 *     - name: llama-3-8b              # optional; fetch derives one from the source
 *       source: s3://models/llama-3-8b/
 *     - source: s3://models/mistral/model.safetensors
 *       sha256_manifest: s3://models/mistral/SHA256SUMS   # optional, sha256sum format
 *
 * Every key is optional except a model's `source`; a key given no value (`budget:` or
 * `budget: ~`, as a template that renders nothing leaves it) is unset, and so is an
 * empty file or one that holds only comments. Sizes are a whole number of bytes or one
 * with a suffix K, M, G or T (powers of 1024, in either case), optionally followed by "i"
 * and/or "B": 512M, 512MiB and 512MB are all 512 * 2^20. Model names become directory
 * names: 1 to 128 letters, digits, '.', '_' and '-', not starting with '.', unique.
 * `listen` is host:port, where host is empty, a name, an IPv4 address or a bracketed IPv6
 * one ([::]:9090).
 *
 * The file is an outsider's input (a ConfigMap), so the reader is strict and bounded: the
 * top level must be a mapping; unknown and duplicate keys are errors (an unknown key
 * suggests the known one it is closest to); values may not hold control characters; the
 * file is at most 1 MiB, a value 4096 bytes. Anchors, aliases and tags are refused rather
 * than expanded, so a "billion laughs" file costs nothing. The reader walks libyaml's
 * event stream along the one shape it accepts (mapping -> models list -> model mapping),
 * failing at the first node that does not fit, so nesting never goes deeper than that
 * and nothing is ever skipped over.
 *
 * Every failure is one line, "file:line:column: what is wrong", that names the key and
 * quotes at most a short, escaped excerpt of the value. Our allocations go through the
 * library's front end (lib/alloc.h), so tests can fail each one in turn; libyaml's own
 * go to malloc.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "alloc.h"

#include "config.h"

/* Characters of a value quoted in a message; longer values end in "...". */
#define EXCERPT_CHARS 32
/* Characters of the file name in a message. */
#define NAME_CHARS 200
/* Big enough for any excerpt: each character escapes to at most 6 bytes. */
#define EXCERPT_SIZE (NAME_CHARS * 6 + 8)
/* Keys longer than this get no "did you mean". */
#define SUGGEST_MAX 32
/* host:port is at most a DNS name, a colon and five digits. */
#define LISTEN_MAX 261

/* What a key holds, for the reader and for messages ("'budget' must be <what>"). */
typedef enum {
	VALUE_STRING,
	VALUE_SIZE,
	VALUE_CONCURRENCY,
	VALUE_LOG_FORMAT,
	VALUE_LISTEN,
	VALUE_MODELS,
	VALUE_NAME,
} value_kind;

typedef struct {
	const char *key;
	value_kind kind;
	const char *what;
} key_spec;

enum { TOP_CACHE, TOP_BUDGET, TOP_CONCURRENCY, TOP_LOG_FORMAT, TOP_LISTEN, TOP_MODELS, TOP_COUNT };

static const key_spec top_keys[TOP_COUNT] = {
    [TOP_CACHE] = {"cache", VALUE_STRING, "a directory path"},
    [TOP_BUDGET] = {"budget", VALUE_SIZE, "a size like 200G"},
    [TOP_CONCURRENCY] = {"concurrency", VALUE_CONCURRENCY, "a whole number from 1 to 256"},
    [TOP_LOG_FORMAT] = {"log_format", VALUE_LOG_FORMAT, "'text' or 'json'"},
    [TOP_LISTEN] = {"listen", VALUE_LISTEN, "an address like 0.0.0.0:9090"},
    [TOP_MODELS] = {"models", VALUE_MODELS, "a list of models"},
};

enum { MODEL_NAME, MODEL_SOURCE, MODEL_MANIFEST, MODEL_COUNT };

static const key_spec model_keys[MODEL_COUNT] = {
    [MODEL_NAME] = {"name", VALUE_NAME, "a name like llama-3-8b"},
    [MODEL_SOURCE] = {"source", VALUE_STRING, "a path or URL like s3://bucket/dir/"},
    [MODEL_MANIFEST] = {"sha256_manifest", VALUE_STRING, "a path or URL"},
};

_Static_assert(CLI_CONFIG_CONCURRENCY_MAX == 256, "top_keys says 1 to 256");
_Static_assert(CLI_CONFIG_MODELS_MAX < 1000000, "messages number models with %zu");

/* One parse: libyaml's state, the current event, and where a message goes. */
typedef struct {
	yaml_parser_t parser;
	yaml_event_t event;
	bool have_event;
	const char *name;
	const char *text;
	size_t len;
	char *err;
	size_t err_size;
	size_t name_lines[CLI_CONFIG_MODELS_MAX]; /* line of each model's name, for messages */
} reader;

/* ---------------------------------------------------------------------------------------- */
/* Messages                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Decodes one UTF-8 character of s[0, len); returns its length, or 0 if it is malformed. */
static size_t utf8_decode(const unsigned char *s, size_t len, unsigned long *cp)
{
	size_t n;
	unsigned long v;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		v = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		v = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		v = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
	    (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/*
 * Writes s[0, len) into buf as printable text on one line: at most `chars` characters of
 * it, then "..." if there was more. Control characters (C0, DEL, C1), the Unicode line and
 * paragraph separators and malformed UTF-8 become escapes, so that a message stays one
 * line however hostile the file.
 */
static const char *escape(char *buf, size_t size, const char *s, size_t len, size_t chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t used = 0, i = 0, count = 0;

	while (i < len && used + 6 + 4 < size) {
		unsigned long cp = 0;
		size_t n = utf8_decode(p + i, len - i, &cp);

		if (count == chars)
			break;
		if (n == 0) {
			used += (size_t)snprintf(buf + used, size - used, "\\x%02x", p[i]);
			i++;
		} else if (cp == '\n' || cp == '\t' || cp == '\r') {
			buf[used++] = '\\';
			buf[used++] = cp == '\n' ? 'n' : cp == '\t' ? 't' : 'r';
			i++;
		} else if (cp < 0x20 || cp == 0x7f) {
			used += (size_t)snprintf(buf + used, size - used, "\\x%02lx", cp);
			i++;
		} else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
			used += (size_t)snprintf(buf + used, size - used, "\\u%04lx", cp);
			i += n;
		} else {
			memcpy(buf + used, p + i, n);
			used += n;
			i += n;
		}
		count++;
	}
	if (i < len) {
		memcpy(buf + used, "...", 3);
		used += 3;
	}
	buf[used] = '\0';
	return buf;
}

/* Cuts a UTF-8 character that truncation split off the end of the NUL-terminated s. */
static void trim_partial_utf8(char *s)
{
	size_t len = strlen(s), start = len;
	unsigned long cp;

	while (start > 0 && len - start < 4 && ((unsigned char)s[start - 1] & 0xc0) == 0x80)
		start--;
	if (start > 0 && (unsigned char)s[start - 1] >= 0xc0)
		start--;
	else if (start == len)
		return;
	if (utf8_decode((const unsigned char *)s + start, len - start, &cp) != len - start)
		s[start] = '\0';
}

/* Writes "<name>: " or "<name>:<line>:<column>: " and the message into r->err. */
__attribute__((format(printf, 3, 0))) static void vreport(reader *r, const yaml_mark_t *mark,
                                                          const char *fmt, va_list ap)
{
	char name[EXCERPT_SIZE];
	int used;

	if (r->err == NULL || r->err_size == 0)
		return;
	escape(name, sizeof(name), r->name, strlen(r->name), NAME_CHARS);
	if (mark != NULL)
		used = snprintf(r->err, r->err_size, "%s:%zu:%zu: ", name, mark->line + 1,
		                mark->column + 1);
	else
		used = snprintf(r->err, r->err_size, "%s: ", name);
	if (used >= 0 && (size_t)used < r->err_size)
		vsnprintf(r->err + used, r->err_size - (size_t)used, fmt, ap);
	trim_partial_utf8(r->err);
}

/* Reports a failure at `mark` (NULL: the file as a whole); returns -1. */
__attribute__((format(printf, 3, 4))) static int fail(reader *r, const yaml_mark_t *mark,
                                                      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(r, mark, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_memory(reader *r)
{
	return fail(r, NULL, "out of memory");
}

/* The current event's scalar (or any text) as an excerpt for a message. */
static const char *excerpt(char *buf, size_t size, const unsigned char *s, size_t len)
{
	return escape(buf, size, (const char *)s, len, EXCERPT_CHARS);
}

/* What an event starts, for "must be X, not <this>". */
static const char *node_kind(const yaml_event_t *e)
{
	switch (e->type) {
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_SEQUENCE_START_EVENT:
		return "a list";
	case YAML_SCALAR_EVENT:
		return "a string";
	default:
		return "nothing";
	}
}

/*
 * The byte offset in the input of libyaml's character index (libyaml counts characters,
 * after a byte order mark), for UTF-8 input; len if it is past the end.
 */
static size_t byte_offset(const reader *r, size_t char_index)
{
	const unsigned char *p = (const unsigned char *)r->text;
	size_t i = 0;

	if (r->len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
		i = 3;
	for (; i < r->len; i++) {
		if ((p[i] & 0xc0) == 0x80)
			continue;
		if (char_index == 0)
			return i;
		char_index--;
	}
	return r->len;
}

/*
 * Reports the first malformed UTF-8 sequence of the input. libyaml names the byte where it
 * noticed the problem, which for a cut sequence is the harmless byte after it; the start
 * of the sequence is what a person can find in an editor. `fallback` is libyaml's place.
 */
static int invalid_utf8(reader *r, const yaml_mark_t *fallback)
{
	const unsigned char *t = (const unsigned char *)r->text;
	yaml_mark_t mark = {0};
	size_t i = 0;

	while (i < r->len) {
		unsigned long cp;
		size_t n = utf8_decode(t + i, r->len - i, &cp);

		if (n == 0)
			return fail(r, &mark,
			            "not valid UTF-8 (byte 0x%02x); save the file as UTF-8", t[i]);
		if (cp == '\n') {
			mark.line++;
			mark.column = 0;
		} else {
			mark.column++;
		}
		i += n;
	}
	return fail(r, fallback, "not valid UTF-8; save the file as UTF-8");
}

/* Turns libyaml's failure into a message. */
static int syntax_error(reader *r)
{
	const yaml_parser_t *p = &r->parser;
	yaml_mark_t mark = {0};

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return fail_memory(r);
	case YAML_READER_ERROR: {
		/* The reader gives a byte offset, not a mark: count lines and characters. */
		size_t end = p->problem_offset < r->len ? p->problem_offset : r->len;
		const unsigned char *t = (const unsigned char *)r->text;

		for (size_t i = 0; i < end; i++) {
			if (t[i] == '\n') {
				mark.line++;
				mark.column = 0;
			} else if ((t[i] & 0xc0) != 0x80) {
				mark.column++;
			}
		}
		if (p->problem != NULL && p->encoding == YAML_UTF8_ENCODING &&
		    (strstr(p->problem, "UTF-8") != NULL || strstr(p->problem, "Unicode") != NULL))
			return invalid_utf8(r, &mark);
		if (p->problem != NULL && strstr(p->problem, "control characters") != NULL &&
		    p->problem_value < 0x80)
			return fail(r, &mark, "control character 0x%02x is not allowed in YAML",
			            (unsigned)p->problem_value);
		if (p->problem != NULL && strstr(p->problem, "control characters") != NULL)
			return fail(r, &mark, "character U+%04X is not allowed in YAML",
			            (unsigned)p->problem_value);
		return fail(r, &mark, "unreadable text: %s", p->problem ? p->problem : "?");
	}
	case YAML_SCANNER_ERROR:
	case YAML_PARSER_ERROR: {
		const char *problem = p->problem != NULL ? p->problem : "syntax error";
		size_t at;

		if (p->encoding == YAML_UTF8_ENCODING) {
			at = byte_offset(r, p->problem_mark.index);
			if (at < r->len && r->text[at] == '\t')
				return fail(r, &p->problem_mark,
				            "a tab character where YAML allows only spaces (indent "
				            "with spaces)");
		}
		if (p->context != NULL)
			return fail(r, &p->problem_mark, "invalid YAML: %s (%s at line %zu)",
			            problem, p->context, p->context_mark.line + 1);
		return fail(r, &p->problem_mark, "invalid YAML: %s", problem);
	}
	default:
		return fail(r, NULL, "invalid YAML");
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Events                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Refuses what this format never needs: anchors, aliases and tags. */
static int check_event(reader *r)
{
	const yaml_event_t *e = &r->event;
	const unsigned char *anchor = NULL, *tag = NULL;
	char text[EXCERPT_SIZE];

	switch (e->type) {
	case YAML_ALIAS_EVENT:
		return fail(r, &e->start_mark,
		            "YAML aliases ('*%s') are not supported; write the value out",
		            excerpt(text, sizeof(text), e->data.alias.anchor,
		                    strlen((const char *)e->data.alias.anchor)));
	case YAML_SCALAR_EVENT:
		anchor = e->data.scalar.anchor;
		tag = e->data.scalar.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = e->data.sequence_start.anchor;
		tag = e->data.sequence_start.tag;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = e->data.mapping_start.anchor;
		tag = e->data.mapping_start.tag;
		break;
	default:
		return 0;
	}
	if (anchor != NULL)
		return fail(r, &e->start_mark, "YAML anchors ('&%s') are not supported",
		            excerpt(text, sizeof(text), anchor, strlen((const char *)anchor)));
	if (tag != NULL)
		return fail(r, &e->start_mark, "YAML tags ('%s') are not supported",
		            excerpt(text, sizeof(text), tag, strlen((const char *)tag)));
	return 0;
}

/* Moves to the next event; libyaml's failures and refused features become messages. */
static int next(reader *r)
{
	if (r->have_event) {
		yaml_event_delete(&r->event);
		r->have_event = false;
	}
	if (!yaml_parser_parse(&r->parser, &r->event))
		return syntax_error(r);
	r->have_event = true;
	return check_event(r);
}

/* Whether the current event is YAML's null: an empty or ~/null plain scalar. */
static bool is_null(const reader *r)
{
	const yaml_event_t *e = &r->event;
	const char *v = (const char *)e->data.scalar.value;
	size_t len = e->data.scalar.length;

	if (e->type != YAML_SCALAR_EVENT || e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return len == 0 || (len == 1 && v[0] == '~') ||
	       (len == 4 && (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 ||
	                     memcmp(v, "NULL", 4) == 0));
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/*
 * Optimal string alignment distance (edits and swaps of neighbours), ignoring ASCII case;
 * both strings at most SUGGEST_MAX bytes.
 */
static size_t edit_distance(const char *a, size_t a_len, const char *b, size_t b_len)
{
	size_t d[SUGGEST_MAX + 1][SUGGEST_MAX + 1];

	for (size_t i = 0; i <= a_len; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= b_len; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= a_len; i++) {
		for (size_t j = 1; j <= b_len; j++) {
			size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
			size_t best = d[i - 1][j - 1] + cost;

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
			    lower(a[i - 2]) == lower(b[j - 1]) && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[a_len][b_len];
}

/*
 * Reads the current event as a key of `keys`: returns its index, or -1 after reporting a
 * key that is not a string, unknown, or given before (`lines` holds, per key, the line it
 * was first seen on plus one, or 0).
 */
static int read_key(reader *r, const key_spec *keys, int count, size_t *lines, const char *where)
{
	const yaml_event_t *e = &r->event;
	const char *key;
	size_t len, best_distance = 3;
	int best = -1;
	char text[EXCERPT_SIZE];

	if (e->type != YAML_SCALAR_EVENT)
		return fail(r, &e->start_mark, "keys%s must be strings, not %s", where,
		            node_kind(e));
	key = (const char *)e->data.scalar.value;
	len = e->data.scalar.length;
	for (int k = 0; k < count; k++) {
		if (strlen(keys[k].key) != len || memcmp(keys[k].key, key, len) != 0)
			continue;
		if (lines[k] != 0)
			return fail(r, &e->start_mark,
			            "duplicate key '%s'%s (first given at line %zu)", keys[k].key,
			            where, lines[k]);
		lines[k] = e->start_mark.line + 1;
		return k;
	}
	excerpt(text, sizeof(text), e->data.scalar.value, len);
	if (len <= SUGGEST_MAX) {
		for (int k = 0; k < count; k++) {
			size_t distance = edit_distance(key, len, keys[k].key, strlen(keys[k].key));

			if (distance < best_distance) {
				best_distance = distance;
				best = k;
			}
		}
	}
	if (best >= 0)
		return fail(r, &e->start_mark, "unknown key '%s'%s (did you mean '%s'?)", text,
		            where, keys[best].key);
	if (count == TOP_COUNT)
		return fail(
		    r, &e->start_mark,
		    "unknown key '%s' (the keys are cache, budget, concurrency, log_format, "
		    "listen and models)",
		    text);
	return fail(r, &e->start_mark,
	            "unknown key '%s'%s (a model has name, source and sha256_manifest)", text,
	            where);
}

/* ---------------------------------------------------------------------------------------- */
/* Values                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Parses a size: digits, then optionally K/M/G/T (any case), then optionally "i", "B". */
static int parse_size(int64_t *out, const char *s, size_t len)
{
	size_t i = 0;
	int shift = 0;
	uint64_t v = 0;

	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		return -1;
	if (i < len) {
		switch (s[i]) {
		case 'k':
		case 'K':
			shift = 10;
			break;
		case 'm':
		case 'M':
			shift = 20;
			break;
		case 'g':
		case 'G':
			shift = 30;
			break;
		case 't':
		case 'T':
			shift = 40;
			break;
		default:
			break;
		}
		if (shift != 0)
			i++;
	}
	if (shift != 0 && i < len && s[i] == 'i')
		i++;
	if (i < len && s[i] == 'B')
		i++;
	if (i != len || v > ((uint64_t)INT64_MAX >> shift))
		return -1;
	*out = (int64_t)(v << shift);
	return 0;
}

/* Parses a whole number from 1 to 256: digits only, no sign, no leading zeros. */
static int parse_concurrency(int *out, const char *s, size_t len)
{
	int v = 0;

	if (len == 0 || len > 3 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > CLI_CONFIG_CONCURRENCY_MAX)
		return -1;
	*out = v;
	return 0;
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* host:port: host empty, a name or IPv4 address, or [IPv6]; port 1 to 65535. */
static bool valid_listen(const char *s, size_t len)
{
	const char *colon = NULL;
	size_t host_len, port_len;
	unsigned long port = 0;

	if (len > LISTEN_MAX)
		return false;
	for (size_t i = len; i > 0; i--) {
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	}
	if (colon == NULL)
		return false;
	host_len = (size_t)(colon - s);
	port_len = len - host_len - 1;
	if (port_len == 0 || port_len > 5)
		return false;
	for (size_t i = 0; i < port_len; i++) {
		if (colon[1 + i] < '0' || colon[1 + i] > '9')
			return false;
		port = port * 10 + (unsigned long)(colon[1 + i] - '0');
	}
	if (port == 0 || port > 65535)
		return false;
	if (host_len >= 2 && s[0] == '[' && s[host_len - 1] == ']') {
		if (host_len == 2)
			return false;
		for (size_t i = 1; i + 1 < host_len; i++) {
			char c = s[i];

			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			      (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
				return false;
		}
		return true;
	}
	for (size_t i = 0; i < host_len; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '.' || c == '-'))
			return false;
	}
	return true;
}

/*
 * Whether s[0, len) holds a control character: C0, DEL, C1, or the Unicode line and
 * paragraph separators (YAML line breaks, like C1's NEL), the last three as UTF-8.
 */
static bool has_control(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return true;
		if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
			return true;
		if (p[i] == 0xe2 && i + 2 < len && p[i + 1] == 0x80 &&
		    (p[i + 2] == 0xa8 || p[i + 2] == 0xa9))
			return true;
	}
	return false;
}

/*
 * Reads the value of `spec` (the next event) and stores it: strings into *string, sizes
 * and numbers into *number. A null leaves the destination unset; `models` is read by the
 * caller. Returns 0, 1 for a null, or -1 after reporting.
 */
static int read_scalar(reader *r, const key_spec *spec, char **string, int64_t *number)
{
	const yaml_event_t *e;
	const char *value;
	size_t len;
	char text[EXCERPT_SIZE];

	if (next(r) != 0)
		return -1;
	e = &r->event;
	if (e->type != YAML_SCALAR_EVENT)
		return fail(r, &e->start_mark, "'%s' must be %s, not %s", spec->key, spec->what,
		            node_kind(e));
	if (is_null(r))
		return 1;
	value = (const char *)e->data.scalar.value;
	len = e->data.scalar.length;
	excerpt(text, sizeof(text), e->data.scalar.value, len);
	if (len == 0)
		return fail(r, &e->start_mark, "'%s' must not be empty", spec->key);
	if (len > CLI_CONFIG_VALUE_MAX)
		return fail(r, &e->start_mark, "'%s' is longer than %d bytes ('%s')", spec->key,
		            CLI_CONFIG_VALUE_MAX, text);
	if (has_control(value, len))
		return fail(r, &e->start_mark, "'%s' must not contain control characters ('%s')",
		            spec->key, text);
	switch (spec->kind) {
	case VALUE_SIZE:
		if (parse_size(number, value, len) != 0)
			return fail(r, &e->start_mark, "'%s' must be %s, not '%s'", spec->key,
			            spec->what, text);
		return 0;
	case VALUE_CONCURRENCY: {
		int concurrency;

		if (parse_concurrency(&concurrency, value, len) != 0)
			return fail(r, &e->start_mark, "'%s' must be %s, not '%s'", spec->key,
			            spec->what, text);
		*number = concurrency;
		return 0;
	}
	case VALUE_LOG_FORMAT:
		if (!(len == 4 && (memcmp(value, "text", 4) == 0 || memcmp(value, "json", 4) == 0)))
			return fail(r, &e->start_mark, "'%s' must be %s, not '%s'", spec->key,
			            spec->what, text);
		break;
	case VALUE_LISTEN:
		if (!valid_listen(value, len))
			return fail(r, &e->start_mark, "'%s' must be %s or [::]:9090, not '%s'",
			            spec->key, spec->what, text);
		break;
	case VALUE_NAME:
		if (len > CLI_CONFIG_NAME_MAX)
			return fail(r, &e->start_mark,
			            "model name '%s' is longer than %d characters", text,
			            CLI_CONFIG_NAME_MAX);
		for (size_t i = 0; i < len; i++)
			if (!is_name_char(value[i]) || (i == 0 && value[i] == '.'))
				return fail(
				    r, &e->start_mark,
				    "model name '%s' may hold only letters, digits, '.', '_' "
				    "and '-', and may not start with '.'",
				    text);
		break;
	default:
		break;
	}
	*string = ms__strndup(value, len);
	return *string != NULL ? 0 : fail_memory(r);
}

/* Reads one model; the current event is its MAPPING_START. `index` counts from 0. */
static int read_model(reader *r, cli_config *c, size_t index)
{
	cli_model *m = &c->models[index];
	size_t lines[MODEL_COUNT] = {0};
	yaml_mark_t start = r->event.start_mark;

	for (;;) {
		int64_t unused = 0;
		char **dest;
		int k, rc;

		if (next(r) != 0)
			return -1;
		if (r->event.type == YAML_MAPPING_END_EVENT)
			break;
		k = read_key(r, model_keys, MODEL_COUNT, lines, " in a model");
		if (k < 0)
			return -1;
		dest = k == MODEL_NAME     ? &m->name
		       : k == MODEL_SOURCE ? &m->source
		                           : &m->sha256_manifest;
		rc = read_scalar(r, &model_keys[k], dest, &unused);
		if (rc < 0)
			return -1;
		if (rc == 1 && k == MODEL_SOURCE)
			return fail(r, &r->event.start_mark, "'source' must not be empty");
		if (rc == 0 && k == MODEL_NAME) {
			r->name_lines[index] = r->event.start_mark.line + 1;
			for (size_t i = 0; i < index; i++) {
				if (c->models[i].name != NULL &&
				    strcmp(c->models[i].name, m->name) == 0)
					return fail(r, &r->event.start_mark,
					            "model name '%s' is already used by model %zu "
					            "(line %zu)",
					            m->name, i + 1, r->name_lines[i]);
			}
		}
	}
	if (m->source == NULL)
		return fail(r, &start, "model %zu has no 'source' (where to fetch it from)",
		            index + 1);
	return 0;
}

/* Reads the value of `models`: a list of mappings (or null). */
static int read_models(reader *r, cli_config *c)
{
	size_t capacity = 0;

	if (next(r) != 0)
		return -1;
	if (is_null(r))
		return 0;
	if (r->event.type != YAML_SEQUENCE_START_EVENT)
		return fail(r, &r->event.start_mark, "'models' must be %s, not %s",
		            top_keys[TOP_MODELS].what, node_kind(&r->event));
	for (;;) {
		if (next(r) != 0)
			return -1;
		if (r->event.type == YAML_SEQUENCE_END_EVENT)
			return 0;
		if (r->event.type != YAML_MAPPING_START_EVENT)
			return fail(
			    r, &r->event.start_mark,
			    "each entry of 'models' must be a mapping with a 'source', not %s",
			    node_kind(&r->event));
		if (c->model_count == CLI_CONFIG_MODELS_MAX)
			return fail(r, &r->event.start_mark, "'models' lists more than %d models",
			            CLI_CONFIG_MODELS_MAX);
		if (c->model_count == capacity) {
			size_t grown = capacity == 0 ? 8 : capacity * 2;
			cli_model *models = ms__realloc(c->models, grown * sizeof(*models));

			if (models == NULL)
				return fail_memory(r);
			c->models = models;
			capacity = grown;
		}
		memset(&c->models[c->model_count], 0, sizeof(c->models[0]));
		c->model_count++;
		if (read_model(r, c, c->model_count - 1) != 0)
			return -1;
	}
}

/* Reads the top-level mapping; the current event is its MAPPING_START. */
static int read_settings(reader *r, cli_config *c)
{
	size_t lines[TOP_COUNT] = {0};

	for (;;) {
		int64_t number = 0;
		char **dest = NULL;
		int k, rc;

		if (next(r) != 0)
			return -1;
		if (r->event.type == YAML_MAPPING_END_EVENT)
			return 0;
		k = read_key(r, top_keys, TOP_COUNT, lines, "");
		if (k < 0)
			return -1;
		switch (k) {
		case TOP_MODELS:
			if (read_models(r, c) != 0)
				return -1;
			continue;
		case TOP_CACHE:
			dest = &c->cache;
			break;
		case TOP_LOG_FORMAT:
			dest = &c->log_format;
			break;
		case TOP_LISTEN:
			dest = &c->listen;
			break;
		default:
			break;
		}
		rc = read_scalar(r, &top_keys[k], dest, &number);
		if (rc < 0)
			return -1;
		if (rc == 0 && k == TOP_BUDGET)
			c->budget = number;
		if (rc == 0 && k == TOP_CONCURRENCY)
			c->concurrency = (int)number;
	}
}

/* Reads the stream: nothing, or one document whose root is a mapping or null. */
static int read_stream(reader *r, cli_config *c)
{
	if (next(r) != 0) /* STREAM_START */
		return -1;
	if (next(r) != 0)
		return -1;
	if (r->event.type == YAML_STREAM_END_EVENT)
		return 0; /* empty, or only comments */
	if (next(r) != 0) /* the root, after DOCUMENT_START */
		return -1;
	if (r->event.type == YAML_MAPPING_START_EVENT) {
		if (read_settings(r, c) != 0)
			return -1;
	} else if (!is_null(r)) {
		char text[EXCERPT_SIZE] = "";

		if (r->event.type == YAML_SCALAR_EVENT)
			excerpt(text, sizeof(text), r->event.data.scalar.value,
			        r->event.data.scalar.length);
		return fail(r, &r->event.start_mark,
		            "the top level must be a mapping of settings like 'cache: "
		            "/var/cache/modelstream', not %s%s%s%s",
		            node_kind(&r->event), text[0] ? " ('" : "", text, text[0] ? "')" : "");
	}
	if (next(r) != 0) /* DOCUMENT_END */
		return -1;
	if (next(r) != 0)
		return -1;
	if (r->event.type != YAML_STREAM_END_EVENT)
		return fail(r, &r->event.start_mark,
		            "only one YAML document is allowed (found a second '---')");
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Entry points                                                                             */
/* ---------------------------------------------------------------------------------------- */

static void config_reset(cli_config *c)
{
	memset(c, 0, sizeof(*c));
	c->budget = -1;
}

void cli_config_free(cli_config *c)
{
	if (c == NULL)
		return;
	ms__free(c->cache);
	ms__free(c->log_format);
	ms__free(c->listen);
	for (size_t i = 0; i < c->model_count; i++) {
		ms__free(c->models[i].name);
		ms__free(c->models[i].source);
		ms__free(c->models[i].sha256_manifest);
	}
	ms__free(c->models);
	config_reset(c);
}

int cli_config_parse(cli_config *out, const char *name, const char *text, size_t len, char *err,
                     size_t err_size)
{
	reader *r = NULL;
	int rc = -1;

	config_reset(out);
	if (err != NULL && err_size > 0)
		err[0] = '\0';
	if (name == NULL)
		name = "configuration";
	if (text == NULL && len == 0)
		text = ""; /* libyaml asserts on a NULL input */
	r = ms__calloc(1, sizeof(*r));
	if (r == NULL) {
		reader fallback = {.name = name, .err = err, .err_size = err_size};

		return fail_memory(&fallback);
	}
	r->name = name;
	r->text = text;
	r->len = len;
	r->err = err;
	r->err_size = err_size;
	if (len > CLI_CONFIG_FILE_MAX) {
		fail(r, NULL, "larger than 1 MiB, the limit for a configuration file");
		goto done;
	}
	if (!yaml_parser_initialize(&r->parser)) {
		fail_memory(r);
		goto done;
	}
	yaml_parser_set_input_string(&r->parser, (const unsigned char *)text, len);
	rc = read_stream(r, out);
	if (r->have_event)
		yaml_event_delete(&r->event);
	yaml_parser_delete(&r->parser);

done:
	if (rc != 0)
		cli_config_free(out);
	ms__free(r);
	return rc;
}

/* "<path>: <what>: <strerror>" for errno `code`. */
static int fail_errno(const char *path, const char *what, int code, char *err, size_t err_size)
{
	reader r = {.name = path, .err = err, .err_size = err_size};
	char buf[256];

	return fail(&r, NULL, "%s: %s", what, strerror_r(code, buf, sizeof(buf)));
}

int cli_config_load(cli_config *out, const char *path, char *err, size_t err_size)
{
	char *text = NULL;
	size_t len = 0;
	int fd = -1, rc = -1;

	config_reset(out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail_errno(path, "cannot open the configuration file", errno, err, err_size);
		goto done;
	}
	/* One byte past the cap tells a file at the cap from one over it. */
	text = ms__malloc(CLI_CONFIG_FILE_MAX + 1);
	if (text == NULL) {
		fail_errno(path, "cannot read the configuration file", ENOMEM, err, err_size);
		goto done;
	}
	while (len <= CLI_CONFIG_FILE_MAX) {
		ssize_t n = read(fd, text + len, CLI_CONFIG_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail_errno(path, "cannot read the configuration file", errno, err,
			           err_size);
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	rc = cli_config_parse(out, path, text, len, err, err_size);

done:
	ms__free(text);
	if (fd >= 0)
		close(fd);
	return rc;
}
