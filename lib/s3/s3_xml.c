/*
 * s3_xml.c - reading S3 and STS XML bodies with expat.
 *
 * Design. Every document is parsed by one state machine driven by expat's callbacks:
 *  - Element names are looked up in a small table of the names we know (a namespace prefix
 *    such as "s3:" is dropped; the parser runs without namespace processing, so a
 *    default xmlns is just an attribute) and pushed on a stack of at most
 *    MS__S3_XML_DEPTH_MAX entries. The stack is the element's path from the root.
 *  - A table of rules maps paths to slots. A slot is either a field (a leaf whose text we
 *    keep: /ListBucketResult/Contents/Key) or a record (a container whose fields are checked
 *    together when it closes: /ListBucketResult/Contents). Everything else is skipped, so
 *    new elements that AWS adds cost nothing.
 *  - A field's text is collected into one scratch buffer, capped at the field's own limit
 *    (1024 bytes for a key, 64 for a size); past the cap the document is refused, or for
 *    the fields of an error document, which only explain a failure, cut. A field must not
 *    contain elements, and no slot may appear twice where the format has it once.
 *  - When the field closes, its text is committed: validated (numbers, booleans, times) and
 *    copied out. When the document ends, the required fields are checked.
 * The first failure stops expat (XML_StopParser) and is the one reported.
 *
 * Safety. Bodies are capped before expat sees them; a DOCTYPE stops the parser at once, so
 * no entity can be declared, let alone expanded (billion laughs) or fetched (XXE); only
 * XML's five predefined entities and character references remain. Expat allocates through
 * the library's allocator, so the allocation-failure walks of the tests reach its paths too.
 * For STS bodies, which carry a secret, expat's allocator also zeroes every block before it
 * is freed, as does the parse context.
 */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <expat.h>

#include "alloc.h"
#include "error.h"
#include "s3_xml.h"

/* ---------------------------------------------------------------------------------------- */
/* Elements, slots and the rules that join them                                             */
/* ---------------------------------------------------------------------------------------- */

typedef enum {
	E_UNKNOWN = 0,
	E_LIST_BUCKET_RESULT,
	E_NAME,
	E_PREFIX,
	E_KEY_COUNT,
	E_MAX_KEYS,
	E_IS_TRUNCATED,
	E_NEXT_CONTINUATION_TOKEN,
	E_CONTENTS,
	E_KEY,
	E_SIZE,
	E_ETAG,
	E_LAST_MODIFIED,
	E_COMMON_PREFIXES,
	E_ERROR,
	E_ERROR_RESPONSE,
	E_CODE,
	E_MESSAGE,
	E_REQUEST_ID,
	E_RESOURCE,
	E_SERVER_TIME,
	E_REQUEST_TIME,
	E_ENDPOINT,
	E_REGION,
	E_INITIATE_RESULT,
	E_UPLOAD_ID,
	E_COMPLETE_RESULT,
	E_COMPLETE_RESPONSE, /* moto's root for the same document */
	E_LOCATION,
	E_WEB_IDENTITY_RESPONSE,
	E_WEB_IDENTITY_RESULT,
	E_ASSUME_ROLE_RESPONSE,
	E_ASSUME_ROLE_RESULT,
	E_CREDENTIALS,
	E_ACCESS_KEY_ID,
	E_SECRET_ACCESS_KEY,
	E_SESSION_TOKEN,
	E_EXPIRATION,
	E_COUNT
} element;

/* Names with their lengths, so that a lookup compares lengths before bytes: a document of
 * millions of unknown elements must not cost dozens of string comparisons each. */
#define ELEMENT_NAME(s)          \
	{                        \
		s, sizeof(s) - 1 \
	}

static const struct {
	const char *name;
	size_t len;
} element_names[E_COUNT] = {
    [E_UNKNOWN] = ELEMENT_NAME(""),
    [E_LIST_BUCKET_RESULT] = ELEMENT_NAME("ListBucketResult"),
    [E_NAME] = ELEMENT_NAME("Name"),
    [E_PREFIX] = ELEMENT_NAME("Prefix"),
    [E_KEY_COUNT] = ELEMENT_NAME("KeyCount"),
    [E_MAX_KEYS] = ELEMENT_NAME("MaxKeys"),
    [E_IS_TRUNCATED] = ELEMENT_NAME("IsTruncated"),
    [E_NEXT_CONTINUATION_TOKEN] = ELEMENT_NAME("NextContinuationToken"),
    [E_CONTENTS] = ELEMENT_NAME("Contents"),
    [E_KEY] = ELEMENT_NAME("Key"),
    [E_SIZE] = ELEMENT_NAME("Size"),
    [E_ETAG] = ELEMENT_NAME("ETag"),
    [E_LAST_MODIFIED] = ELEMENT_NAME("LastModified"),
    [E_COMMON_PREFIXES] = ELEMENT_NAME("CommonPrefixes"),
    [E_ERROR] = ELEMENT_NAME("Error"),
    [E_ERROR_RESPONSE] = ELEMENT_NAME("ErrorResponse"),
    [E_CODE] = ELEMENT_NAME("Code"),
    [E_MESSAGE] = ELEMENT_NAME("Message"),
    [E_REQUEST_ID] = ELEMENT_NAME("RequestId"),
    [E_RESOURCE] = ELEMENT_NAME("Resource"),
    [E_SERVER_TIME] = ELEMENT_NAME("ServerTime"),
    [E_REQUEST_TIME] = ELEMENT_NAME("RequestTime"),
    [E_ENDPOINT] = ELEMENT_NAME("Endpoint"),
    [E_REGION] = ELEMENT_NAME("Region"),
    [E_INITIATE_RESULT] = ELEMENT_NAME("InitiateMultipartUploadResult"),
    [E_UPLOAD_ID] = ELEMENT_NAME("UploadId"),
    [E_COMPLETE_RESULT] = ELEMENT_NAME("CompleteMultipartUploadResult"),
    [E_COMPLETE_RESPONSE] = ELEMENT_NAME("CompleteMultipartUploadResponse"),
    [E_LOCATION] = ELEMENT_NAME("Location"),
    [E_WEB_IDENTITY_RESPONSE] = ELEMENT_NAME("AssumeRoleWithWebIdentityResponse"),
    [E_WEB_IDENTITY_RESULT] = ELEMENT_NAME("AssumeRoleWithWebIdentityResult"),
    [E_ASSUME_ROLE_RESPONSE] = ELEMENT_NAME("AssumeRoleResponse"),
    [E_ASSUME_ROLE_RESULT] = ELEMENT_NAME("AssumeRoleResult"),
    [E_CREDENTIALS] = ELEMENT_NAME("Credentials"),
    [E_ACCESS_KEY_ID] = ELEMENT_NAME("AccessKeyId"),
    [E_SECRET_ACCESS_KEY] = ELEMENT_NAME("SecretAccessKey"),
    [E_SESSION_TOKEN] = ELEMENT_NAME("SessionToken"),
    [E_EXPIRATION] = ELEMENT_NAME("Expiration"),
};

typedef enum {
	S_NONE = 0,
	S_CONTENTS,
	S_COMMON_PREFIXES,
	S_CREDENTIALS,
	S_LIST_NAME,
	S_LIST_PREFIX,
	S_LIST_KEY_COUNT,
	S_LIST_MAX_KEYS,
	S_LIST_IS_TRUNCATED,
	S_LIST_NEXT_TOKEN,
	S_OBJECT_KEY,
	S_OBJECT_SIZE,
	S_OBJECT_ETAG,
	S_OBJECT_LAST_MODIFIED,
	S_COMMON_PREFIX,
	S_ERROR_CODE,
	S_ERROR_MESSAGE,
	S_ERROR_REQUEST_ID,
	S_ERROR_RESOURCE,
	S_ERROR_SERVER_TIME,
	S_ERROR_REQUEST_TIME,
	S_ERROR_ENDPOINT,
	S_ERROR_REGION,
	S_UPLOAD_ID,
	S_COMPLETE_LOCATION,
	S_COMPLETE_ETAG,
	S_ACCESS_KEY_ID,
	S_SECRET_ACCESS_KEY,
	S_SESSION_TOKEN,
	S_EXPIRATION,
	S_COUNT
} slot;

/* The seen-set is one 64-bit mask. */
_Static_assert(S_COUNT <= 64, "slots must fit the seen mask");

#define SLOT_BIT(s) (UINT64_C(1) << (s))

/* A record: a container, checked when it closes. */
#define F_RECORD 1u
/* May appear any number of times (Contents, CommonPrefixes). */
#define F_REPEAT 2u
/* Text past the cap is cut instead of refused: the fields of error documents only explain
 * a failure, and refusing a long message would hide the failure behind a format error. */
#define F_CUT 4u
/* The text is a credential: the scratch buffer is zeroed once it is copied out. */
#define F_SECRET 8u

/* Numbers and booleans, with room for the whitespace a pretty-printer may add. */
#define NUMBER_TEXT_MAX        64

#define ERROR_FIELD_CAP(field) (sizeof(((ms__s3_error *)0)->field) - 1)

typedef struct {
	const char *label; /* for messages */
	size_t cap;        /* the longest text kept, in bytes */
	unsigned flags;
} slot_info;

static const slot_info slot_infos[S_COUNT] = {
    [S_NONE] = {"", 0, 0},
    [S_CONTENTS] = {"Contents", 0, F_RECORD | F_REPEAT},
    [S_COMMON_PREFIXES] = {"CommonPrefixes", 0, F_RECORD | F_REPEAT},
    [S_CREDENTIALS] = {"Credentials", 0, F_RECORD},
    [S_LIST_NAME] = {"Name", MS__S3_XML_BUCKET_MAX, 0},
    [S_LIST_PREFIX] = {"Prefix", MS__S3_XML_KEY_MAX, 0},
    [S_LIST_KEY_COUNT] = {"KeyCount", NUMBER_TEXT_MAX, 0},
    [S_LIST_MAX_KEYS] = {"MaxKeys", NUMBER_TEXT_MAX, 0},
    [S_LIST_IS_TRUNCATED] = {"IsTruncated", NUMBER_TEXT_MAX, 0},
    [S_LIST_NEXT_TOKEN] = {"NextContinuationToken", MS__S3_TOKEN_MAX, 0},
    [S_OBJECT_KEY] = {"Key", MS__S3_XML_KEY_MAX, 0},
    [S_OBJECT_SIZE] = {"Size", NUMBER_TEXT_MAX, 0},
    [S_OBJECT_ETAG] = {"ETag", MS__S3_ETAG_MAX, 0},
    [S_OBJECT_LAST_MODIFIED] = {"LastModified", MS__S3_TIME_MAX, 0},
    [S_COMMON_PREFIX] = {"CommonPrefixes/Prefix", MS__S3_XML_KEY_MAX, 0},
    [S_ERROR_CODE] = {"Code", ERROR_FIELD_CAP(code), F_CUT},
    [S_ERROR_MESSAGE] = {"Message", ERROR_FIELD_CAP(message), F_CUT},
    [S_ERROR_REQUEST_ID] = {"RequestId", ERROR_FIELD_CAP(request_id), F_CUT},
    [S_ERROR_RESOURCE] = {"Resource", ERROR_FIELD_CAP(resource), F_CUT},
    [S_ERROR_SERVER_TIME] = {"ServerTime", ERROR_FIELD_CAP(server_time), F_CUT},
    [S_ERROR_REQUEST_TIME] = {"RequestTime", ERROR_FIELD_CAP(request_time), F_CUT},
    [S_ERROR_ENDPOINT] = {"Endpoint", ERROR_FIELD_CAP(endpoint), F_CUT},
    [S_ERROR_REGION] = {"Region", ERROR_FIELD_CAP(region), F_CUT},
    [S_UPLOAD_ID] = {"UploadId", MS__S3_UPLOAD_ID_MAX, 0},
    [S_COMPLETE_LOCATION] = {"Location", MS__S3_LOCATION_MAX, 0},
    [S_COMPLETE_ETAG] = {"ETag", MS__S3_ETAG_MAX, 0},
    [S_ACCESS_KEY_ID] = {"AccessKeyId", MS__STS_KEY_MAX, F_SECRET},
    [S_SECRET_ACCESS_KEY] = {"SecretAccessKey", MS__STS_KEY_MAX, F_SECRET},
    [S_SESSION_TOKEN] = {"SessionToken", MS__STS_TOKEN_MAX, F_SECRET},
    [S_EXPIRATION] = {"Expiration", MS__S3_TIME_MAX, 0},
};

/* The scratch buffer holds the longest field there is. */
#define TEXT_MAX MS__STS_TOKEN_MAX
_Static_assert(MS__S3_XML_KEY_MAX <= TEXT_MAX && MS__S3_TOKEN_MAX <= TEXT_MAX &&
                   MS__S3_LOCATION_MAX <= TEXT_MAX && MS__S3_UPLOAD_ID_MAX <= TEXT_MAX,
               "every field fits the scratch buffer");

/* The longest path a rule names. */
#define RULE_DEPTH 4

typedef struct {
	unsigned char path[RULE_DEPTH]; /* element ids from the root; E_UNKNOWN ends it */
	unsigned char slot;
} path_rule;

#define LBR E_LIST_BUCKET_RESULT
#define WIR E_WEB_IDENTITY_RESPONSE
#define WIS E_WEB_IDENTITY_RESULT
#define ARR E_ASSUME_ROLE_RESPONSE
#define ARS E_ASSUME_ROLE_RESULT
#define ERS E_ERROR_RESPONSE

static const path_rule rules[] = {
    {{LBR, E_NAME}, S_LIST_NAME},
    {{LBR, E_PREFIX}, S_LIST_PREFIX},
    {{LBR, E_KEY_COUNT}, S_LIST_KEY_COUNT},
    {{LBR, E_MAX_KEYS}, S_LIST_MAX_KEYS},
    {{LBR, E_IS_TRUNCATED}, S_LIST_IS_TRUNCATED},
    {{LBR, E_NEXT_CONTINUATION_TOKEN}, S_LIST_NEXT_TOKEN},
    {{LBR, E_CONTENTS}, S_CONTENTS},
    {{LBR, E_CONTENTS, E_KEY}, S_OBJECT_KEY},
    {{LBR, E_CONTENTS, E_SIZE}, S_OBJECT_SIZE},
    {{LBR, E_CONTENTS, E_ETAG}, S_OBJECT_ETAG},
    {{LBR, E_CONTENTS, E_LAST_MODIFIED}, S_OBJECT_LAST_MODIFIED},
    {{LBR, E_COMMON_PREFIXES}, S_COMMON_PREFIXES},
    {{LBR, E_COMMON_PREFIXES, E_PREFIX}, S_COMMON_PREFIX},

    /* S3's error document. */
    {{E_ERROR, E_CODE}, S_ERROR_CODE},
    {{E_ERROR, E_MESSAGE}, S_ERROR_MESSAGE},
    {{E_ERROR, E_REQUEST_ID}, S_ERROR_REQUEST_ID},
    {{E_ERROR, E_RESOURCE}, S_ERROR_RESOURCE},
    {{E_ERROR, E_SERVER_TIME}, S_ERROR_SERVER_TIME},
    {{E_ERROR, E_REQUEST_TIME}, S_ERROR_REQUEST_TIME},
    {{E_ERROR, E_ENDPOINT}, S_ERROR_ENDPOINT},
    {{E_ERROR, E_REGION}, S_ERROR_REGION},
    /* STS's, which wraps the same Error in ErrorResponse and puts RequestId outside it. */
    {{ERS, E_ERROR, E_CODE}, S_ERROR_CODE},
    {{ERS, E_ERROR, E_MESSAGE}, S_ERROR_MESSAGE},
    {{ERS, E_REQUEST_ID}, S_ERROR_REQUEST_ID},

    {{E_INITIATE_RESULT, E_UPLOAD_ID}, S_UPLOAD_ID},
    {{E_COMPLETE_RESULT, E_LOCATION}, S_COMPLETE_LOCATION},
    {{E_COMPLETE_RESULT, E_ETAG}, S_COMPLETE_ETAG},
    {{E_COMPLETE_RESPONSE, E_LOCATION}, S_COMPLETE_LOCATION},
    {{E_COMPLETE_RESPONSE, E_ETAG}, S_COMPLETE_ETAG},

    {{WIR, WIS, E_CREDENTIALS}, S_CREDENTIALS},
    {{WIR, WIS, E_CREDENTIALS, E_ACCESS_KEY_ID}, S_ACCESS_KEY_ID},
    {{WIR, WIS, E_CREDENTIALS, E_SECRET_ACCESS_KEY}, S_SECRET_ACCESS_KEY},
    {{WIR, WIS, E_CREDENTIALS, E_SESSION_TOKEN}, S_SESSION_TOKEN},
    {{WIR, WIS, E_CREDENTIALS, E_EXPIRATION}, S_EXPIRATION},
    {{ARR, ARS, E_CREDENTIALS}, S_CREDENTIALS},
    {{ARR, ARS, E_CREDENTIALS, E_ACCESS_KEY_ID}, S_ACCESS_KEY_ID},
    {{ARR, ARS, E_CREDENTIALS, E_SECRET_ACCESS_KEY}, S_SECRET_ACCESS_KEY},
    {{ARR, ARS, E_CREDENTIALS, E_SESSION_TOKEN}, S_SESSION_TOKEN},
    {{ARR, ARS, E_CREDENTIALS, E_EXPIRATION}, S_EXPIRATION},
};

/* ---------------------------------------------------------------------------------------- */
/* The parse context                                                                        */
/* ---------------------------------------------------------------------------------------- */

typedef enum { DOC_LIST, DOC_ERROR, DOC_INITIATE, DOC_COMPLETE, DOC_STS } document;

typedef struct {
	XML_Parser parser;
	document kind;
	const char *what;
	int rc;           /* the first failure: MS_EFORMAT or MS_ENOMEM; 0 until then */
	char reason[256]; /* why, for MS_EFORMAT */
	unsigned depth;   /* open elements */
	unsigned char elements[MS__S3_XML_DEPTH_MAX];
	unsigned char slots[MS__S3_XML_DEPTH_MAX];
	element root;
	slot field; /* the field whose text is being collected, or S_NONE */
	size_t text_len;
	bool text_cut; /* an F_CUT field had more text than its cap */
	uint64_t seen; /* SLOT_BIT of every slot met (fields of records reset per record) */

	/* The Contents or CommonPrefixes entry being read, until it closes. */
	char key[MS__S3_XML_KEY_MAX + 1];
	size_t key_len;
	uint64_t size;
	char etag[MS__S3_ETAG_MAX + 1];
	size_t etag_len;
	char last_modified[MS__S3_TIME_MAX + 1];
	size_t last_modified_len;
	size_t objects_capacity;
	size_t prefixes_capacity;

	/* The output; which of these are set depends on `kind`. `error` always is. */
	ms__s3_list *list;
	ms__s3_initiate *initiate;
	ms__s3_complete *complete;
	ms__sts_credentials *creds;
	ms__s3_error *error;

	char text[TEXT_MAX + 1];
} parse_context;

static void fail(parse_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first failure and stops expat; later failures (and the callbacks expat may
 * still make after XML_StopParser) are ignored. */
static void fail(parse_context *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx->rc != 0)
		return;
	ctx->rc = MS_EFORMAT;
	va_start(ap, fmt);
	vsnprintf(ctx->reason, sizeof(ctx->reason), fmt, ap);
	va_end(ap);
	if (ctx->parser != NULL)
		XML_StopParser(ctx->parser, XML_FALSE);
}

static void fail_oom(parse_context *ctx)
{
	if (ctx->rc != 0)
		return;
	ctx->rc = MS_ENOMEM;
	if (ctx->parser != NULL)
		XML_StopParser(ctx->parser, XML_FALSE);
}

/* ---------------------------------------------------------------------------------------- */
/* Small validators                                                                         */
/* ---------------------------------------------------------------------------------------- */

static bool is_xml_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Narrows [*text, *text + *len) to its content without XML whitespace around it. */
static void trim(const char **text, size_t *len)
{
	while (*len > 0 && is_xml_space((*text)[0])) {
		(*text)++;
		(*len)--;
	}
	while (*len > 0 && is_xml_space((*text)[*len - 1]))
		(*len)--;
}

/* A decimal number of digits only (no sign), at most `max`. Returns 0 or -1. */
static int parse_decimal(uint64_t *out, const char *text, size_t len, uint64_t max)
{
	uint64_t value = 0;

	trim(&text, &len);
	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned digit;

		if (text[i] < '0' || text[i] > '9')
			return -1;
		digit = (unsigned)(text[i] - '0');
		if (value > (max - digit) / 10)
			return -1;
		value = value * 10 + digit;
	}
	*out = value;
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int digits_value(const char *text, size_t count)
{
	int value = 0;

	for (size_t i = 0; i < count; i++)
		value = value * 10 + (text[i] - '0');
	return value;
}

static bool is_leap_year(int year)
{
	return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int ms__s3_time_parse(int64_t *out, const char *text, size_t len)
{
	/* 'd' is a digit; anything else stands for itself. */
	static const char layout[] = "dddd-dd-ddTdd:dd:dd";
	static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const size_t layout_len = sizeof(layout) - 1;
	int year, month, day, hour, minute, second, days;
	struct tm tm;
	size_t pos;
	time_t t;

	if (len < layout_len + 1)
		return -1;
	for (pos = 0; pos < layout_len; pos++) {
		if (layout[pos] == 'd' ? !is_digit(text[pos]) : text[pos] != layout[pos])
			return -1;
	}
	if (text[pos] == '.') {
		size_t start = ++pos;

		while (pos < len && is_digit(text[pos]))
			pos++;
		/* Nanoseconds at most: more digits than that are not a time anyone sends. */
		if (pos == start || pos - start > 9)
			return -1;
	}
	if (pos + 1 != len || text[pos] != 'Z')
		return -1;

	year = digits_value(text, 4);
	month = digits_value(text + 5, 2);
	day = digits_value(text + 8, 2);
	hour = digits_value(text + 11, 2);
	minute = digits_value(text + 14, 2);
	second = digits_value(text + 17, 2);
	if (year < 1970 || month < 1 || month > 12)
		return -1;
	days = month_days[month - 1] + (month == 2 && is_leap_year(year));
	/* A leap second (:60) is valid ISO 8601; timegm() carries it into the next minute. */
	if (day < 1 || day > days || hour > 23 || minute > 59 || second > 60)
		return -1;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*out = (int64_t)t;
	return 0;
}

/* The longest prefix of s[0, len) that does not end inside a UTF-8 sequence. */
static size_t utf8_boundary(const char *s, size_t len)
{
	size_t start = len, continuation = 0, need;
	unsigned char lead;

	while (start > 0 && continuation < 3 && ((unsigned char)s[start - 1] & 0xc0) == 0x80) {
		start--;
		continuation++;
	}
	if (start == 0)
		return len; /* not UTF-8 at all; expat never passes such text */
	lead = (unsigned char)s[start - 1];
	need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
	return continuation >= need ? len : start - 1;
}

/*
 * Copies an error document's field into a fixed buffer as one line: control characters
 * (C0, DEL, and C1, which some terminals obey) become spaces, whitespace around the text
 * goes, and text that does not fit is cut at a UTF-8 boundary and ends in "...".
 * `cut` says the text was already cut while it was collected.
 */
static void copy_line(char *dst, size_t dst_size, const char *src, size_t len, bool cut)
{
	size_t used = 0, i = 0;

	trim(&src, &len);
	for (i = 0; i < len && used + 1 < dst_size; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c < 0x20 || c == 0x7f) {
			dst[used++] = ' ';
		} else if (c == 0xc2 && i + 1 < len && (unsigned char)src[i + 1] >= 0x80 &&
		           (unsigned char)src[i + 1] <= 0x9f) {
			dst[used++] = ' ';
			i++;
		} else {
			dst[used++] = (char)c;
		}
	}
	if (i < len)
		cut = true;
	if (cut && dst_size >= 8) {
		if (used > dst_size - 4)
			used = dst_size - 4;
		used = utf8_boundary(dst, used);
		memcpy(dst + used, "...", 3);
		used += 3;
	}
	while (used > 0 && dst[used - 1] == ' ')
		used--;
	dst[used] = '\0';
}

/* ---------------------------------------------------------------------------------------- */
/* Committing fields and records                                                            */
/* ---------------------------------------------------------------------------------------- */

/* Copies the collected text into a new string at *dst (NULL before: duplicates are
 * refused when the element opens). */
static void set_string(parse_context *ctx, char **dst)
{
	*dst = ms__strndup(ctx->text, ctx->text_len);
	if (*dst == NULL)
		fail_oom(ctx);
}

static void set_number(parse_context *ctx, uint64_t *dst, uint64_t max)
{
	char shown[MS__PRINTABLE_MAX];

	if (parse_decimal(dst, ctx->text, ctx->text_len, max) != 0)
		fail(ctx, "%s is not a decimal number up to %llu: \"%s\"",
		     slot_infos[ctx->field].label, (unsigned long long)max,
		     ms__printable(shown, sizeof(shown), ctx->text));
}

/* Copies the collected text into a fixed buffer. Each such buffer is its slot's cap plus
 * one byte, and on_text() never collects more than the cap. */
static void set_fixed(parse_context *ctx, char *dst, size_t *len_out)
{
	memcpy(dst, ctx->text, ctx->text_len);
	dst[ctx->text_len] = '\0';
	if (len_out != NULL)
		*len_out = ctx->text_len;
}

static void set_error_field(parse_context *ctx, char *dst, size_t size)
{
	copy_line(dst, size, ctx->text, ctx->text_len, ctx->text_cut);
}

static void commit_field(parse_context *ctx)
{
	ms__s3_error *error = ctx->error;
	const slot_info *info = &slot_infos[ctx->field];
	char shown[MS__PRINTABLE_MAX];
	const char *text;
	size_t len;

	ctx->text[ctx->text_len] = '\0';
	/* Expat never passes a NUL (XML cannot hold one), but the strings we hand out are
	 * NUL-terminated, so one inside would silently cut a key: check rather than trust. */
	if (memchr(ctx->text, '\0', ctx->text_len) != NULL) {
		fail(ctx, "NUL character in %s", info->label);
		return;
	}
	switch (ctx->field) {
	case S_LIST_NAME:
		set_string(ctx, &ctx->list->name);
		break;
	case S_LIST_PREFIX:
		set_string(ctx, &ctx->list->prefix);
		break;
	case S_LIST_KEY_COUNT:
		set_number(ctx, &ctx->list->key_count, UINT64_MAX);
		break;
	case S_LIST_MAX_KEYS:
		set_number(ctx, &ctx->list->max_keys, UINT64_MAX);
		break;
	case S_LIST_IS_TRUNCATED:
		text = ctx->text;
		len = ctx->text_len;
		trim(&text, &len);
		if (len == 4 && memcmp(text, "true", 4) == 0)
			ctx->list->is_truncated = true;
		else if (len == 5 && memcmp(text, "false", 5) == 0)
			ctx->list->is_truncated = false;
		else
			fail(ctx, "IsTruncated is neither true nor false: \"%s\"",
			     ms__printable(shown, sizeof(shown), ctx->text));
		break;
	case S_LIST_NEXT_TOKEN:
		set_string(ctx, &ctx->list->next_continuation_token);
		break;
	case S_OBJECT_KEY:
	case S_COMMON_PREFIX:
		if (ctx->text_len == 0) {
			fail(ctx, "empty %s", info->label);
			break;
		}
		set_fixed(ctx, ctx->key, &ctx->key_len);
		break;
	case S_OBJECT_SIZE:
		set_number(ctx, &ctx->size, MS__S3_SIZE_MAX);
		break;
	case S_OBJECT_ETAG:
		set_fixed(ctx, ctx->etag, &ctx->etag_len);
		break;
	case S_OBJECT_LAST_MODIFIED:
		set_fixed(ctx, ctx->last_modified, &ctx->last_modified_len);
		break;
	case S_ERROR_CODE:
		set_error_field(ctx, error->code, sizeof(error->code));
		break;
	case S_ERROR_MESSAGE:
		set_error_field(ctx, error->message, sizeof(error->message));
		break;
	case S_ERROR_REQUEST_ID:
		set_error_field(ctx, error->request_id, sizeof(error->request_id));
		break;
	case S_ERROR_RESOURCE:
		set_error_field(ctx, error->resource, sizeof(error->resource));
		break;
	case S_ERROR_SERVER_TIME:
		set_error_field(ctx, error->server_time, sizeof(error->server_time));
		break;
	case S_ERROR_REQUEST_TIME:
		set_error_field(ctx, error->request_time, sizeof(error->request_time));
		break;
	case S_ERROR_ENDPOINT:
		set_error_field(ctx, error->endpoint, sizeof(error->endpoint));
		break;
	case S_ERROR_REGION:
		set_error_field(ctx, error->region, sizeof(error->region));
		break;
	case S_UPLOAD_ID:
		set_fixed(ctx, ctx->initiate->upload_id, NULL);
		break;
	case S_COMPLETE_LOCATION:
		set_fixed(ctx, ctx->complete->location, NULL);
		break;
	case S_COMPLETE_ETAG:
		set_fixed(ctx, ctx->complete->etag, NULL);
		break;
	case S_ACCESS_KEY_ID:
		set_string(ctx, &ctx->creds->access_key_id);
		break;
	case S_SECRET_ACCESS_KEY:
		set_string(ctx, &ctx->creds->secret_access_key);
		break;
	case S_SESSION_TOKEN:
		set_string(ctx, &ctx->creds->session_token);
		break;
	case S_EXPIRATION:
		text = ctx->text;
		len = ctx->text_len;
		trim(&text, &len);
		if (ms__s3_time_parse(&ctx->creds->expiration, text, len) != 0)
			fail(ctx, "Expiration is not an ISO 8601 UTC time: \"%s\"",
			     ms__printable(shown, sizeof(shown), ctx->text));
		break;
	default:
		break;
	}
	if (info->flags & F_SECRET)
		explicit_bzero(ctx->text, ctx->text_len);
}

/* Grows an array of `count` items of `item_size` bytes to hold one more, doubling up to
 * MS__S3_LIST_ENTRIES_MAX items. Returns the (maybe moved) array, or NULL with the old one
 * untouched. */
static void *grow_array(void *array, size_t *capacity, size_t count, size_t item_size)
{
	size_t new_capacity;
	void *grown;

	if (count < *capacity)
		return array;
	new_capacity = *capacity == 0 ? 16 : *capacity * 2;
	if (new_capacity > MS__S3_LIST_ENTRIES_MAX)
		new_capacity = MS__S3_LIST_ENTRIES_MAX;
	/* No overflow: at most 1100 items of a few dozen bytes. */
	grown = ms__realloc(array, new_capacity * item_size);
	if (grown == NULL)
		return NULL;
	*capacity = new_capacity;
	return grown;
}

/* A closed Contents becomes an object. Its three strings share one allocation, owned by
 * `key`, so that a 1000-key page costs 1000 allocations rather than 3000. */
static void object_append(parse_context *ctx)
{
	ms__s3_list *list = ctx->list;
	bool has_etag = (ctx->seen & SLOT_BIT(S_OBJECT_ETAG)) != 0;
	bool has_time = (ctx->seen & SLOT_BIT(S_OBJECT_LAST_MODIFIED)) != 0;
	ms__s3_object *objects, *object;
	size_t need;
	char *block;

	if (!(ctx->seen & SLOT_BIT(S_OBJECT_KEY))) {
		fail(ctx, "Contents without Key");
		return;
	}
	if (!(ctx->seen & SLOT_BIT(S_OBJECT_SIZE))) {
		fail(ctx, "Contents without Size");
		return;
	}
	objects = grow_array(list->objects, &ctx->objects_capacity, list->object_count,
	                     sizeof(*list->objects));
	if (objects == NULL) {
		fail_oom(ctx);
		return;
	}
	list->objects = objects;
	need = ctx->key_len + 1 + (has_etag ? ctx->etag_len + 1 : 0) +
	       (has_time ? ctx->last_modified_len + 1 : 0);
	block = ms__malloc(need);
	if (block == NULL) {
		fail_oom(ctx);
		return;
	}
	object = &list->objects[list->object_count++];
	memset(object, 0, sizeof(*object));
	object->size = ctx->size;
	object->key = block;
	memcpy(block, ctx->key, ctx->key_len + 1);
	block += ctx->key_len + 1;
	if (has_etag) {
		object->etag = block;
		memcpy(block, ctx->etag, ctx->etag_len + 1);
		block += ctx->etag_len + 1;
	}
	if (has_time) {
		object->last_modified = block;
		memcpy(block, ctx->last_modified, ctx->last_modified_len + 1);
	}
}

static void common_prefix_append(parse_context *ctx)
{
	ms__s3_list *list = ctx->list;
	char **prefixes, *copy;

	if (!(ctx->seen & SLOT_BIT(S_COMMON_PREFIX))) {
		fail(ctx, "CommonPrefixes without Prefix");
		return;
	}
	prefixes = grow_array(list->common_prefixes, &ctx->prefixes_capacity,
	                      list->common_prefix_count, sizeof(*list->common_prefixes));
	if (prefixes == NULL) {
		fail_oom(ctx);
		return;
	}
	list->common_prefixes = prefixes;
	copy = ms__strndup(ctx->key, ctx->key_len);
	if (copy == NULL) {
		fail_oom(ctx);
		return;
	}
	list->common_prefixes[list->common_prefix_count++] = copy;
}

static void record_start(parse_context *ctx, slot s)
{
	const uint64_t entry_fields = SLOT_BIT(S_OBJECT_KEY) | SLOT_BIT(S_OBJECT_SIZE) |
	                              SLOT_BIT(S_OBJECT_ETAG) | SLOT_BIT(S_OBJECT_LAST_MODIFIED) |
	                              SLOT_BIT(S_COMMON_PREFIX);

	if (s == S_CONTENTS || s == S_COMMON_PREFIXES) {
		if (ctx->list->object_count + ctx->list->common_prefix_count >=
		    MS__S3_LIST_ENTRIES_MAX) {
			fail(ctx, "more than %d Contents and CommonPrefixes in one page",
			     MS__S3_LIST_ENTRIES_MAX);
			return;
		}
		ctx->seen &= ~entry_fields;
	}
}

static void record_end(parse_context *ctx, slot s)
{
	if (s == S_CONTENTS)
		object_append(ctx);
	else if (s == S_COMMON_PREFIXES)
		common_prefix_append(ctx);
	/* Credentials are checked when the document ends, with the rest of it. */
}

/* ---------------------------------------------------------------------------------------- */
/* Expat callbacks                                                                          */
/* ---------------------------------------------------------------------------------------- */

static element element_lookup(const char *name)
{
	const char *colon = strrchr(name, ':');
	size_t len;

	/* Without namespace processing a prefixed name arrives as "s3:Key". */
	if (colon != NULL)
		name = colon + 1;
	len = strlen(name);
	for (int e = 1; e < E_COUNT; e++)
		if (element_names[e].len == len && memcmp(name, element_names[e].name, len) == 0)
			return (element)e;
	return E_UNKNOWN;
}

static slot rule_lookup(const parse_context *ctx)
{
	/* No rule names an unknown element: most skipped elements stop here. */
	if (ctx->elements[ctx->depth - 1] == E_UNKNOWN)
		return S_NONE;
	for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
		const path_rule *rule = &rules[r];
		unsigned depth = 0;

		while (depth < RULE_DEPTH && rule->path[depth] != E_UNKNOWN)
			depth++;
		if (depth == ctx->depth && memcmp(rule->path, ctx->elements, depth) == 0)
			return (slot)rule->slot;
	}
	return S_NONE;
}

static bool is_error_root(element e)
{
	return e == E_ERROR || e == E_ERROR_RESPONSE;
}

/* The root element each document expects, for the check and for messages. */
static const char *expected_root(document kind)
{
	switch (kind) {
	case DOC_LIST:
		return "ListBucketResult";
	case DOC_ERROR:
		return "Error or ErrorResponse";
	case DOC_INITIATE:
		return "InitiateMultipartUploadResult";
	case DOC_COMPLETE:
		return "CompleteMultipartUploadResult";
	case DOC_STS:
		return "AssumeRoleWithWebIdentityResponse or AssumeRoleResponse";
	}
	return "";
}

static bool root_accepted(document kind, element e)
{
	if (is_error_root(e))
		return true;
	switch (kind) {
	case DOC_LIST:
		return e == E_LIST_BUCKET_RESULT;
	case DOC_ERROR:
		return false;
	case DOC_INITIATE:
		return e == E_INITIATE_RESULT;
	case DOC_COMPLETE:
		return e == E_COMPLETE_RESULT || e == E_COMPLETE_RESPONSE;
	case DOC_STS:
		return e == E_WEB_IDENTITY_RESPONSE || e == E_ASSUME_ROLE_RESPONSE;
	}
	return false;
}

static void XMLCALL on_start(void *user, const XML_Char *name, const XML_Char **attributes)
{
	parse_context *ctx = user;
	char shown[MS__PRINTABLE_MAX];
	const slot_info *info;
	element e;
	slot s;

	(void)attributes;
	if (ctx->rc != 0)
		return;
	if (ctx->field != S_NONE) {
		fail(ctx, "element <%s> inside %s", ms__printable(shown, sizeof(shown), name),
		     slot_infos[ctx->field].label);
		return;
	}
	if (ctx->depth >= MS__S3_XML_DEPTH_MAX) {
		fail(ctx, "elements nested deeper than %d", MS__S3_XML_DEPTH_MAX);
		return;
	}
	e = element_lookup(name);
	ctx->elements[ctx->depth++] = (unsigned char)e;
	if (ctx->depth == 1) {
		if (!root_accepted(ctx->kind, e)) {
			fail(ctx, "unexpected root element <%s> (expected %s)",
			     ms__printable(shown, sizeof(shown), name), expected_root(ctx->kind));
			return;
		}
		ctx->root = e;
	}
	s = rule_lookup(ctx);
	ctx->slots[ctx->depth - 1] = (unsigned char)s;
	if (s == S_NONE)
		return;
	info = &slot_infos[s];
	if ((ctx->seen & SLOT_BIT(s)) && !(info->flags & F_REPEAT)) {
		fail(ctx, "more than one %s", info->label);
		return;
	}
	ctx->seen |= SLOT_BIT(s);
	if (info->flags & F_RECORD) {
		record_start(ctx, s);
	} else {
		ctx->field = s;
		ctx->text_len = 0;
		ctx->text_cut = false;
	}
}

static void XMLCALL on_end(void *user, const XML_Char *name)
{
	parse_context *ctx = user;
	slot s;

	(void)name;
	if (ctx->rc != 0 || ctx->depth == 0)
		return;
	s = (slot)ctx->slots[ctx->depth - 1];
	if (s != S_NONE) {
		if (slot_infos[s].flags & F_RECORD) {
			record_end(ctx, s);
		} else {
			commit_field(ctx);
			ctx->field = S_NONE;
		}
	}
	ctx->depth--;
}

static void XMLCALL on_text(void *user, const XML_Char *text, int len)
{
	parse_context *ctx = user;
	const slot_info *info;
	size_t room;

	if (ctx->rc != 0 || ctx->field == S_NONE || len <= 0)
		return;
	info = &slot_infos[ctx->field];
	room = info->cap - ctx->text_len;
	if ((size_t)len > room) {
		if (!(info->flags & F_CUT)) {
			fail(ctx, "%s longer than %zu bytes", info->label, info->cap);
			return;
		}
		memcpy(ctx->text + ctx->text_len, text, room);
		ctx->text_len += room;
		ctx->text_cut = true;
		return;
	}
	memcpy(ctx->text + ctx->text_len, text, (size_t)len);
	ctx->text_len += (size_t)len;
}

static void XMLCALL on_doctype(void *user, const XML_Char *name, const XML_Char *system_id,
                               const XML_Char *public_id, int has_internal_subset)
{
	(void)name;
	(void)system_id;
	(void)public_id;
	(void)has_internal_subset;
	fail(user, "DOCTYPE declarations are not accepted");
}

static void XMLCALL on_entity(void *user, const XML_Char *name, int is_parameter_entity,
                              const XML_Char *value, int value_length, const XML_Char *base,
                              const XML_Char *system_id, const XML_Char *public_id,
                              const XML_Char *notation_name)
{
	(void)name;
	(void)is_parameter_entity;
	(void)value;
	(void)value_length;
	(void)base;
	(void)system_id;
	(void)public_id;
	(void)notation_name;
	/* Unreachable while the DOCTYPE handler stops the parser first; kept so that no
	 * change there can ever let an entity through. */
	fail(user, "entity declarations are not accepted");
}

/* ---------------------------------------------------------------------------------------- */
/* Expat's memory                                                                           */
/* ---------------------------------------------------------------------------------------- */

static const XML_Memory_Handling_Suite plain_memory = {ms__malloc, ms__realloc, ms__free};

/* For STS bodies: expat copies the body (the secret with it) into its own buffers, so its
 * blocks are zeroed before they go back to the heap. malloc_usable_size() gives the whole
 * block, which covers whatever expat wrote into it. */
static void secret_free(void *ptr)
{
	if (ptr == NULL)
		return;
	explicit_bzero(ptr, malloc_usable_size(ptr));
	ms__free(ptr);
}

/* realloc() could move the block and free the old one unzeroed: move it by hand. */
static void *secret_realloc(void *ptr, size_t size)
{
	size_t old_size;
	void *grown;

	if (ptr == NULL)
		return ms__malloc(size);
	grown = ms__malloc(size);
	if (grown == NULL)
		return NULL;
	old_size = malloc_usable_size(ptr);
	memcpy(grown, ptr, old_size < size ? old_size : size);
	secret_free(ptr);
	return grown;
}

static const XML_Memory_Handling_Suite secret_memory = {ms__malloc, secret_realloc, secret_free};

/* ---------------------------------------------------------------------------------------- */
/* Driving a parse                                                                          */
/* ---------------------------------------------------------------------------------------- */

static const char *service_name(const parse_context *ctx)
{
	return ctx->kind == DOC_STS ? "STS" : "S3";
}

/* The checks that need the whole document. */
static void finish(parse_context *ctx)
{
	ms__sts_credentials *creds = ctx->creds;

	if (is_error_root(ctx->root)) {
		if (ctx->error->code[0] == '\0')
			fail(ctx, "%s without Code", element_names[ctx->root].name);
		return;
	}
	switch (ctx->kind) {
	case DOC_LIST:
		if (!(ctx->seen & SLOT_BIT(S_LIST_IS_TRUNCATED)))
			fail(ctx, "IsTruncated missing");
		else if (ctx->list->is_truncated && (ctx->list->next_continuation_token == NULL ||
		                                     ctx->list->next_continuation_token[0] == '\0'))
			fail(ctx, "IsTruncated is true but NextContinuationToken is missing");
		break;
	case DOC_ERROR:
		break;
	case DOC_INITIATE:
		if (ctx->initiate->upload_id[0] == '\0')
			fail(ctx, "UploadId missing or empty");
		break;
	case DOC_COMPLETE:
		if (ctx->complete->etag[0] == '\0')
			fail(ctx, "ETag missing or empty");
		break;
	case DOC_STS:
		if (!(ctx->seen & SLOT_BIT(S_CREDENTIALS)))
			fail(ctx, "Credentials missing");
		else if (creds->access_key_id == NULL || creds->access_key_id[0] == '\0')
			fail(ctx, "AccessKeyId missing or empty");
		else if (creds->secret_access_key == NULL || creds->secret_access_key[0] == '\0')
			fail(ctx, "SecretAccessKey missing or empty");
		else if (creds->session_token == NULL || creds->session_token[0] == '\0')
			fail(ctx, "SessionToken missing or empty");
		else if (!(ctx->seen & SLOT_BIT(S_EXPIRATION)))
			fail(ctx, "Expiration missing");
		break;
	}
}

/*
 * Parses `xml` into the outputs set in `ctx`. Returns 0; MS_EFORMAT or MS_ENOMEM, raised;
 * or, when the body is an error document and `ctx` does not expect one, that error's
 * mapped code, raised, with *service_error set.
 */
static int parse_document(parse_context *ctx, const char *xml, size_t len, size_t max,
                          bool *service_error)
{
	XML_Parser parser = NULL;
	enum XML_Status status;

	/* S3 may send whitespace before the document while it works on a multipart upload. */
	while (len > 0 && is_xml_space(xml[0])) {
		xml++;
		len--;
	}
	if (len == 0) {
		fail(ctx, "empty body");
		goto done;
	}
	if (len > max) {
		fail(ctx, "body of %zu bytes is larger than the %zu accepted", len, max);
		goto done;
	}
	/* No encoding forced (the XML declaration or UTF-8), no namespace processing. */
	parser =
	    XML_ParserCreate_MM(NULL, ctx->kind == DOC_STS ? &secret_memory : &plain_memory, NULL);
	if (parser == NULL) {
		fail_oom(ctx);
		goto done;
	}
	ctx->parser = parser;
	XML_SetUserData(parser, ctx);
	XML_SetElementHandler(parser, on_start, on_end);
	XML_SetCharacterDataHandler(parser, on_text);
	XML_SetStartDoctypeDeclHandler(parser, on_doctype);
	XML_SetEntityDeclHandler(parser, on_entity);
	XML_SetParamEntityParsing(parser, XML_PARAM_ENTITY_PARSING_NEVER);

	/* len <= max, far below INT_MAX. */
	status = XML_Parse(parser, xml, (int)len, XML_TRUE);
	if (ctx->rc == 0 && status != XML_STATUS_OK) {
		enum XML_Error code = XML_GetErrorCode(parser);

		if (code == XML_ERROR_NO_MEMORY)
			fail_oom(ctx);
		else
			fail(ctx, "%s at line %lu, column %lu", XML_ErrorString(code),
			     (unsigned long)XML_GetCurrentLineNumber(parser),
			     (unsigned long)XML_GetCurrentColumnNumber(parser));
	}
	if (ctx->rc == 0)
		finish(ctx);

done:
	XML_ParserFree(parser);
	ctx->parser = NULL;
	if (ctx->rc == MS_ENOMEM)
		return ms__error_set(MS_ENOMEM, "%s: out of memory", ctx->what);
	if (ctx->rc != 0)
		return ms__error_set(ctx->rc, "%s: malformed %s response: %s", ctx->what,
		                     service_name(ctx), ctx->reason);
	if (is_error_root(ctx->root) && ctx->kind != DOC_ERROR) {
		*service_error = true;
		return ms__s3_error_raise(ctx->error, 0, ctx->what);
	}
	return 0;
}

static parse_context *context_new(document kind, const char *what)
{
	parse_context *ctx = ms__calloc(1, sizeof(*ctx));

	if (ctx == NULL) {
		ms__error_set(MS_ENOMEM, "%s: out of memory", what);
		return NULL;
	}
	ctx->kind = kind;
	ctx->what = what;
	return ctx;
}

static void context_free(parse_context *ctx)
{
	if (ctx == NULL)
		return;
	/* The scratch buffer may have held a credential. */
	if (ctx->kind == DOC_STS)
		explicit_bzero(ctx, sizeof(*ctx));
	ms__free(ctx);
}

/* ---------------------------------------------------------------------------------------- */
/* The public face                                                                          */
/* ---------------------------------------------------------------------------------------- */

/*
 * The one body of every result parser: `out` is the result struct for `doc`. On failure
 * the result is released and cleared; when the body was an error document, its error and
 * service_error flag are kept, so the caller can tell "S3 said no" from "garbage".
 */
static int parse_result(document doc, void *out, const char *xml, size_t len, const char *what)
{
	parse_context *ctx = NULL;
	ms__s3_error *error = NULL, saved;
	bool *service_flag = NULL, service_error = false;
	size_t max = MS__S3_XML_SMALL_MAX;
	int rc;

	switch (doc) {
	case DOC_LIST:
		memset(out, 0, sizeof(ms__s3_list));
		error = &((ms__s3_list *)out)->error;
		service_flag = &((ms__s3_list *)out)->service_error;
		max = MS__S3_XML_LIST_MAX;
		break;
	case DOC_INITIATE:
		memset(out, 0, sizeof(ms__s3_initiate));
		error = &((ms__s3_initiate *)out)->error;
		service_flag = &((ms__s3_initiate *)out)->service_error;
		break;
	case DOC_COMPLETE:
		memset(out, 0, sizeof(ms__s3_complete));
		error = &((ms__s3_complete *)out)->error;
		service_flag = &((ms__s3_complete *)out)->service_error;
		break;
	default: /* DOC_STS; DOC_ERROR has a parser of its own */
		memset(out, 0, sizeof(ms__sts_credentials));
		error = &((ms__sts_credentials *)out)->error;
		service_flag = &((ms__sts_credentials *)out)->service_error;
		break;
	}
	ctx = context_new(doc, what != NULL ? what : doc == DOC_STS ? "STS" : "S3");
	if (ctx == NULL) {
		rc = MS_ENOMEM;
		goto done;
	}
	ctx->list = doc == DOC_LIST ? out : NULL;
	ctx->initiate = doc == DOC_INITIATE ? out : NULL;
	ctx->complete = doc == DOC_COMPLETE ? out : NULL;
	ctx->creds = doc == DOC_STS ? out : NULL;
	ctx->error = error;
	rc = parse_document(ctx, xml, len, max, &service_error);
	if (rc != 0) {
		saved = *error;
		if (doc == DOC_LIST)
			ms__s3_list_free(out);
		else if (doc == DOC_STS)
			ms__sts_credentials_free(out);
		else
			memset(out, 0,
			       doc == DOC_INITIATE ? sizeof(ms__s3_initiate)
			                           : sizeof(ms__s3_complete));
		if (service_error) {
			*service_flag = true;
			*error = saved;
		}
	}

done:
	context_free(ctx);
	return rc;
}

int ms__s3_list_parse(ms__s3_list *out, const char *xml, size_t len, const char *what)
{
	return parse_result(DOC_LIST, out, xml, len, what);
}

void ms__s3_list_free(ms__s3_list *list)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < list->object_count; i++)
		ms__free(list->objects[i].key); /* etag and last_modified share its block */
	ms__free(list->objects);
	for (size_t i = 0; i < list->common_prefix_count; i++)
		ms__free(list->common_prefixes[i]);
	ms__free(list->common_prefixes);
	ms__free(list->name);
	ms__free(list->prefix);
	ms__free(list->next_continuation_token);
	memset(list, 0, sizeof(*list));
}

int ms__s3_error_parse(ms__s3_error *out, const char *xml, size_t len, const char *what)
{
	parse_context *ctx = NULL;
	bool service_error = false;
	int rc;

	memset(out, 0, sizeof(*out));
	what = what != NULL ? what : "S3";
	ctx = context_new(DOC_ERROR, what);
	if (ctx == NULL) {
		rc = MS_ENOMEM;
		goto done;
	}
	ctx->error = out;
	rc = parse_document(ctx, xml, len, MS__S3_XML_SMALL_MAX, &service_error);
	if (rc != 0)
		memset(out, 0, sizeof(*out));

done:
	context_free(ctx);
	return rc;
}

int ms__s3_initiate_parse(ms__s3_initiate *out, const char *xml, size_t len, const char *what)
{
	return parse_result(DOC_INITIATE, out, xml, len, what);
}

int ms__s3_complete_parse(ms__s3_complete *out, const char *xml, size_t len, const char *what)
{
	return parse_result(DOC_COMPLETE, out, xml, len, what);
}

int ms__sts_credentials_parse(ms__sts_credentials *out, const char *xml, size_t len,
                              const char *what)
{
	return parse_result(DOC_STS, out, xml, len, what);
}

static void secret_string_free(char **s)
{
	if (*s == NULL)
		return;
	explicit_bzero(*s, strlen(*s));
	ms__free(*s);
	*s = NULL;
}

void ms__sts_credentials_free(ms__sts_credentials *creds)
{
	if (creds == NULL)
		return;
	secret_string_free(&creds->access_key_id);
	secret_string_free(&creds->secret_access_key);
	secret_string_free(&creds->session_token);
	memset(creds, 0, sizeof(*creds));
}

/* ---------------------------------------------------------------------------------------- */
/* Error codes and messages                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* S3's and STS's codes that decide our code whatever the HTTP status says. Codes missing
 * here (InternalError, SlowDown, ServiceUnavailable, ...) fall back on the status. */
static const struct {
	const char *name;
	int code;
} error_codes[] = {
    {"NoSuchKey", MS_ENOTFOUND},
    {"NoSuchBucket", MS_ENOTFOUND},
    {"NoSuchUpload", MS_ENOTFOUND},
    {"NoSuchVersion", MS_ENOTFOUND},
    {"AccessDenied", MS_EACCES},
    {"AllAccessDisabled", MS_EACCES},
    {"AccountProblem", MS_EACCES},
    {"InvalidAccessKeyId", MS_EACCES},
    {"InvalidClientTokenId", MS_EACCES},
    {"SignatureDoesNotMatch", MS_EACCES},
    {"ExpiredToken", MS_EACCES},
    {"ExpiredTokenException", MS_EACCES},
    {"InvalidToken", MS_EACCES},
    {"TokenRefreshRequired", MS_EACCES},
    {"InvalidSecurity", MS_EACCES},
    {"RequestTimeTooSkewed", MS_EACCES},
    {"InvalidIdentityToken", MS_EACCES},
    {"IDPRejectedClaim", MS_EACCES},
    {"RegionDisabledException", MS_EACCES},
    {"PermanentRedirect", MS_EINVAL},
    {"AuthorizationHeaderMalformed", MS_EINVAL},
    {"InvalidBucketName", MS_EINVAL},
    {"KeyTooLongError", MS_EINVAL},
};

int ms__s3_error_to_code(const char *code, int http_status)
{
	for (size_t i = 0; code != NULL && i < sizeof(error_codes) / sizeof(error_codes[0]); i++)
		if (strcmp(code, error_codes[i].name) == 0)
			return error_codes[i].code;
	if (http_status == 403)
		return MS_EACCES;
	if (http_status == 404)
		return MS_ENOTFOUND;
	return MS_EIO;
}

int ms__s3_error_raise(const ms__s3_error *error, int http_status, const char *what)
{
	char status[16] = "", hint[384] = "", request[160] = "";
	int code = ms__s3_error_to_code(error->code, http_status);

	if (http_status > 0)
		snprintf(status, sizeof(status), "%d ", http_status);
	/* The fields that say how to fix the three errors a configuration most often causes. */
	if (strcmp(error->code, "RequestTimeTooSkewed") == 0 && error->server_time[0] != '\0')
		snprintf(hint, sizeof(hint),
		         " (the server's time is %s, the request's %s: check "
		         "this machine's clock)",
		         error->server_time,
		         error->request_time[0] ? error->request_time : "unknown");
	else if (strcmp(error->code, "PermanentRedirect") == 0 && error->endpoint[0] != '\0')
		snprintf(hint, sizeof(hint), " (the bucket must be addressed at %s)",
		         error->endpoint);
	else if (strcmp(error->code, "AuthorizationHeaderMalformed") == 0 &&
	         error->region[0] != '\0')
		snprintf(hint, sizeof(hint), " (the bucket's region is %s)", error->region);
	else if (strcmp(error->code, "AccessDenied") == 0)
		snprintf(hint, sizeof(hint),
		         " (without s3:ListBucket permission a missing key is also AccessDenied)");
	else if (strcmp(error->code, "InvalidAccessKeyId") == 0)
		snprintf(hint, sizeof(hint),
		         " (this endpoint does not know the access key id: check "
		         "AWS_ACCESS_KEY_ID or the profile, and the endpoint)");
	else if (strcmp(error->code, "SignatureDoesNotMatch") == 0)
		snprintf(hint, sizeof(hint),
		         " (the secret key does not belong to the access key id, or a proxy "
		         "changed the request)");
	else if (strcmp(error->code, "ExpiredToken") == 0)
		snprintf(hint, sizeof(hint),
		         " (the session token has expired: renew AWS_SESSION_TOKEN or let the "
		         "credential source refresh it)");
	if (error->request_id[0] != '\0')
		snprintf(request, sizeof(request), " (request id %s)", error->request_id);
	return ms__error_set(code, "%s: %s%s%s%s%s%s", what != NULL ? what : "S3", status,
	                     error->code[0] != '\0' ? error->code : "error without a code",
	                     error->message[0] != '\0' ? ": " : "", error->message, hint, request);
}
