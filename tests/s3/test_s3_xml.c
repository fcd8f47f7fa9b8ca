/*
 * test_s3_xml.c - the S3 and STS XML readers: the documents AWS sends (shaped after the
 * API reference and after moto's answers), every limit at and past its edge, error
 * documents made one line, the HTTP-200 Error of CompleteMultipartUpload, STS credentials
 * that never leak into a message, hostile bodies (not XML, truncated, DTDs and entity
 * bombs, depth bombs, huge text) through every parser, and allocation-failure walks.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "modelstream.h"
#include "s3/s3_xml.h"
#include "support/testutil.h"

#define WHAT "s3://bucket/models/"

static void teardown(void)
{
	ms__alloc_fail_at(0, 0);
}

/* The timeout guards against a parser that turns quadratic on the 16 MiB bodies. */
TestSuite(s3_xml, .fini = teardown, .timeout = 120);

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* The case under test, for failure messages. */
static const char *current_case = "";

/* Asserts the code, the last error, and that the message names WHAT and holds `part`. */
static void assert_error(int rc, int code, const char *part)
{
	const ms_error *e = ms_error_last();

	cr_assert_eq(rc, code, "%s: rc %d (%s), expected %d; message: %s", current_case, rc,
	             ms_strerror(rc), code, e->message);
	cr_assert_eq(e->code, code, "%s: ms_error_last()->code %d, expected %d", current_case,
	             e->code, code);
	cr_assert_eq(strncmp(e->message, WHAT ": ", strlen(WHAT ": ")), 0,
	             "%s: message \"%s\" does not start with the request", current_case,
	             e->message);
	cr_assert_not_null(strstr(e->message, part), "%s: message \"%s\" lacks \"%s\"",
	                   current_case, e->message, part);
	cr_assert_null(strchr(e->message, '\n'), "message is not one line: %s", e->message);
}

static void sb_printf(tu_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(tu_strbuf *b, const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	cr_assert(n >= 0 && (size_t)n < sizeof(line));
	tu_sb_append(b, line, (size_t)n);
}

static void sb_repeat(tu_strbuf *b, const char *s, size_t times)
{
	for (size_t i = 0; i < times; i++)
		tu_sb_puts(b, s);
}

/* A copy of exactly `len` bytes, so that AddressSanitizer sees any read past the end. */
static char *exact_copy(const char *text, size_t len)
{
	char *copy = malloc(len ? len : 1);

	cr_assert_not_null(copy);
	memcpy(copy, text, len);
	return copy;
}

static int list_parse(ms__s3_list *out, const char *xml, size_t len)
{
	char *copy = exact_copy(xml, len);
	int rc = ms__s3_list_parse(out, copy, len, WHAT);

	free(copy);
	return rc;
}

static ms__s3_list list_ok(const char *xml)
{
	ms__s3_list list;
	int rc = list_parse(&list, xml, strlen(xml));

	cr_assert_eq(rc, 0, "%s: rc %d: %s", current_case, rc, ms_error_last()->message);
	return list;
}

/* A listing page of `count` objects named "<prefix>NNNNN.safetensors" of size i * 1000. */
static char *listing_of(size_t count, bool truncated)
{
	tu_strbuf b = {0};

	tu_sb_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
	               "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name>");
	sb_printf(&b, "<Prefix>shards/</Prefix><KeyCount>%zu</KeyCount><MaxKeys>1000</MaxKeys>",
	          count);
	sb_printf(&b, "<IsTruncated>%s</IsTruncated>", truncated ? "true" : "false");
	for (size_t i = 0; i < count; i++)
		sb_printf(&b,
		          "<Contents><Key>shards/model-%05zu.safetensors</Key>"
		          "<LastModified>2026-11-25T21:56:40.000Z</LastModified>"
		          "<ETag>&quot;%032zx&quot;</ETag><Size>%zu</Size>"
		          "<StorageClass>STANDARD</StorageClass></Contents>",
		          i, i, i * 1000);
	if (truncated)
		tu_sb_puts(&b,
		           "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
		           "</NextContinuationToken>");
	tu_sb_puts(&b, "</ListBucketResult>");
	return b.text;
}

/* ---------------------------------------------------------------------------------------- */
/* Documents, shaped after the S3 API reference and after moto's answers                    */
/* ---------------------------------------------------------------------------------------- */

/* As the API reference prints it: indented, with the elements S3 adds since 2024. */
static const char list_three[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "    <Name>bucket</Name>\n"
    "    <Prefix/>\n"
    "    <KeyCount>3</KeyCount>\n"
    "    <MaxKeys>1000</MaxKeys>\n"
    "    <IsTruncated>false</IsTruncated>\n"
    "    <Contents>\n"
    "        <Key>config.json</Key>\n"
    "        <LastModified>2026-11-25T21:56:40.000Z</LastModified>\n"
    "        <ETag>\"599bab3ed2c697f1d26842727561fd94\"</ETag>\n"
    "        <ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>\n"
    "        <ChecksumType>FULL_OBJECT</ChecksumType>\n"
    "        <Size>662</Size>\n"
    "        <StorageClass>STANDARD</StorageClass>\n"
    "    </Contents>\n"
    "    <Contents>\n"
    "        <Key>model-00001-of-00002.safetensors</Key>\n"
    "        <LastModified>2026-11-25T21:57:02.000Z</LastModified>\n"
    "        <ETag>\"a6fe1e3a4a3c8a4d4a8cc8e6f0a8d0e1-596\"</ETag>\n"
    "        <Size>4999819336</Size>\n"
    "        <Owner>\n"
    "            <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>\n"
    "            <DisplayName>mtd@amazon.com</DisplayName>\n"
    "        </Owner>\n"
    "        <StorageClass>STANDARD</StorageClass>\n"
    "    </Contents>\n"
    "    <Contents>\n"
    "        <Key>model-00002-of-00002.safetensors</Key>\n"
    "        <LastModified>2026-11-25T21:58:11.000Z</LastModified>\n"
    "        <ETag>\"0c6f4d0bb1a0c4b9d0d7e6cba2ec1e49-485\"</ETag>\n"
    "        <Size>4066836400</Size>\n"
    "        <StorageClass>INTELLIGENT_TIERING</StorageClass>\n"
    "        <RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress></RestoreStatus>\n"
    "    </Contents>\n"
    "</ListBucketResult>\n";

/* What moto_server answered for a bucket with three keys: compact, in another order. */
static const char list_moto[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>false"
    "</IsTruncated><Contents><Key>models/a&amp;b&lt;c.safetensors</Key><LastModified>2026-11-"
    "25T21:56:40.000Z</LastModified><ETag>\"d41d8cd98f00b204e9800998ecf8427e\"</ETag><Size>0"
    "</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>models/sub/x.json"
    "</Key><LastModified>2026-11-25T21:56:40.000Z</LastModified><ETag>\"d41d8cd98f00b204e98009"
    "98ecf8427e\"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
    "<Contents><Key>top.txt</Key><LastModified>2026-11-25T21:56:40.000Z</LastModified><ETag>"
    "\"d41d8cd98f00b204e9800998ecf8427e\"</ETag><Size>0</Size><StorageClass>STANDARD"
    "</StorageClass></Contents><Name>bkt</Name><Prefix/><MaxKeys>1000</MaxKeys><KeyCount>3"
    "</KeyCount></ListBucketResult>";

static const char list_truncated[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>true"
    "</IsTruncated><Contents><Key>models/a.safetensors</Key><LastModified>2026-11-25T21:56:4"
    "0.000Z</LastModified><ETag>\"d41d8cd98f00b204e9800998ecf8427e\"</ETag><Size>5</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents><Name>bkt</Name><Prefix/><MaxKeys>1"
    "</MaxKeys><KeyCount>1</KeyCount><NextContinuationToken>846a14763a2f7feafbe8f4f48199d2a1"
    "</NextContinuationToken></ListBucketResult>";

/* moto's answer to delimiter=/&prefix=models/. */
static const char list_prefixes[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>false"
    "</IsTruncated><Contents><Key>models/config.json</Key><LastModified>2026-11-25T21:56:40"
    ".000Z</LastModified><ETag>\"d41d8cd98f00b204e9800998ecf8427e\"</ETag><Size>662</Size>"
    "<StorageClass>STANDARD</StorageClass></Contents><Name>bkt</Name><Prefix>models/</Prefix>"
    "<Delimiter>/</Delimiter><MaxKeys>1000</MaxKeys><CommonPrefixes><Prefix>models/llama/"
    "</Prefix></CommonPrefixes><CommonPrefixes><Prefix>models/a&amp;b/</Prefix>"
    "</CommonPrefixes><KeyCount>3</KeyCount></ListBucketResult>";

static const char list_empty[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name>"
    "<Prefix>nothing/here/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
    "<IsTruncated>false</IsTruncated></ListBucketResult>";

static const char error_no_such_key[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>"
    "nokey</Key><RequestId>WGuWBlJ8jmH0bgGaszN6N1XNxWbXXbw6zWrdxfASecbieGVoXJVT</RequestId>"
    "<HostId>9Gjjt1m+cjU4OPvX9O9/8RuvnG41MRb/18Oux2o5H5MY7ISNTlXN+Dz9IG62/ILVxhAGI0qyPfg="
    "</HostId></Error>";

static const char error_skewed[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request "
    "time and the current time is too large.</Message><RequestTime>20261125T204406Z"
    "</RequestTime><ServerTime>2026-11-25T21:00:00Z</ServerTime><MaxAllowedSkewMilliseconds>"
    "900000</MaxAllowedSkewMilliseconds><RequestId>4442587FB7D0A2F9</RequestId><HostId>"
    "t2PR5DsJ0CYm2wYvfNpDDJs1K7FNAxSSAg8AXQNo9gs=</HostId></Error>";

static const char initiate_ok[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>"
    "bkt</Bucket><Key>big</Key><UploadId>nEp5ntgrHOOb53CY4miX8PFg0eyuN4uQatOMPaI5zFFhHspaECK"
    "qvZw</UploadId></InitiateMultipartUploadResult>";

static const char complete_ok[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "  <Location>https://bucket.s3.us-east-1.amazonaws.com/models/model.safetensors</Location>\n"
    "  <Bucket>bucket</Bucket>\n"
    "  <Key>models/model.safetensors</Key>\n"
    "  <ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>\n"
    "  <ChecksumCRC64NVME>rNCmlS6mD0k=</ChecksumCRC64NVME>\n"
    "</CompleteMultipartUploadResult>";

/* The API reference's example of a CompleteMultipartUpload that failed after its 200. */
static const char complete_error[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "\n"
    "<Error>\n"
    "  <Code>InternalError</Code>\n"
    "  <Message>We encountered an internal error. Please try again.</Message>\n"
    "  <RequestId>656c76696e6727732072657175657374</RequestId>\n"
    "  <HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>\n"
    "</Error>";

#define SECRET "X4y9v6MLvUDg97jBWjiF/JGT3tX5xawEHAHpM5A5"
#define SESSION_TOKEN                                                                          \
	"FQoGZXIvYXdzEBYaDmX98Kqn8o5U8qJgLHt0pFFiXM92hS3Bny9ij9GJ16djbPqdflZLYDo6PlNwcosm9GFK" \
	"CFnbnxYsb0b2oHbdvqa1lqmH1zKAlmme5NusCl9RUHCZTJTCHR0FDfPaSPevEdfPPrNlMW/ebV4d+tbCOR8Y" \
	"+58M8F4D0TOXJx8dhAPZIiZckFjsJHkDEwAbFHV7KFSUFEvIZbksRWsvVGFWrEtPOXttbaiMh8LmOCCuRCm8"

/* moto's answer to AssumeRoleWithWebIdentity, with fractional seconds. */
static const char sts_web_identity[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIARZPUZDIKCWKBSIQU"
    "</AccessKeyId><SecretAccessKey>" SECRET "</SecretAccessKey><SessionToken>" SESSION_TOKEN
    "</SessionToken><Expiration>2026-11-25T22:56:47.506948Z</Expiration></Credentials>"
    "<AssumedRoleUser><AssumedRoleId>ARO123EXAMPLE123:s</AssumedRoleId><Arn>arn:aws:sts::"
    "123456789012:assumed-role/x/s</Arn></AssumedRoleUser><PackedPolicySize>6</PackedPolicy"
    "Size></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>10m9SoL6s1jJzHEMx9U"
    "jPIhHHVhvPKu0jNo4tmSSTdnJZvHFWbvF</RequestId></ResponseMetadata>"
    "</AssumeRoleWithWebIdentityResponse>";

/* The STS API reference's AssumeRole example, indented, whole seconds. */
static const char sts_assume_role[] =
    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "<AssumeRoleResult>\n"
    "  <SourceIdentity>Alice</SourceIdentity>\n"
    "  <AssumedRoleUser>\n"
    "    <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>\n"
    "    <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>\n"
    "  </AssumedRoleUser>\n"
    "  <Credentials>\n"
    "    <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>\n"
    "    <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n"
    "    <SessionToken>\n"
    "     AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQW\n"
    "    </SessionToken>\n"
    "    <Expiration>2026-11-25T21:00:00Z</Expiration>\n"
    "  </Credentials>\n"
    "  <PackedPolicySize>8</PackedPolicySize>\n"
    "</AssumeRoleResult>\n"
    "<ResponseMetadata>\n"
    "  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>\n"
    "</ResponseMetadata>\n"
    "</AssumeRoleResponse>";

static const char sts_error[] =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <Error>\n"
    "    <Type>Sender</Type>\n"
    "    <Code>InvalidIdentityToken</Code>\n"
    "    <Message>Couldn't retrieve verification key from your identity provider,  please "
    "reference AssumeRoleWithWebIdentity documentation for requirements</Message>\n"
    "  </Error>\n"
    "  <RequestId>2f3a1c6e-1d2b-4b7e-9a51-6d0c2f1e8a77</RequestId>\n"
    "</ErrorResponse>\n";

/* ---------------------------------------------------------------------------------------- */
/* Listings                                                                                 */
/* ---------------------------------------------------------------------------------------- */

Test(s3_xml, list_three_keys_as_the_api_reference_shows)
{
	ms__s3_list list = list_ok(list_three);

	cr_assert_str_eq(list.name, "bucket");
	cr_assert_str_eq(list.prefix, "", "an empty <Prefix/> is present and empty");
	cr_assert_eq(list.key_count, 3);
	cr_assert_eq(list.max_keys, 1000);
	cr_assert(!list.is_truncated);
	cr_assert_null(list.next_continuation_token);
	cr_assert_eq(list.object_count, 3);
	cr_assert_eq(list.common_prefix_count, 0);
	cr_assert(!list.service_error);
	cr_assert_str_eq(list.objects[0].key, "config.json");
	cr_assert_eq(list.objects[0].size, 662);
	cr_assert_str_eq(list.objects[0].etag, "\"599bab3ed2c697f1d26842727561fd94\"",
	                 "quotes are kept as sent");
	cr_assert_str_eq(list.objects[0].last_modified, "2026-11-25T21:56:40.000Z");
	cr_assert_str_eq(list.objects[1].key, "model-00001-of-00002.safetensors");
	cr_assert_eq(list.objects[1].size, 4999819336ULL, "sizes past 4 GiB");
	cr_assert_str_eq(list.objects[1].etag, "\"a6fe1e3a4a3c8a4d4a8cc8e6f0a8d0e1-596\"");
	cr_assert_str_eq(list.objects[2].key, "model-00002-of-00002.safetensors");
	cr_assert_eq(list.objects[2].size, 4066836400ULL);
	ms__s3_list_free(&list);
	cr_assert_null(list.objects);
	cr_assert_eq(list.object_count, 0);
}

Test(s3_xml, list_as_moto_sends_it)
{
	ms__s3_list list = list_ok(list_moto);

	cr_assert_str_eq(list.name, "bkt");
	cr_assert_eq(list.object_count, 3);
	cr_assert_str_eq(list.objects[0].key, "models/a&b<c.safetensors", "entities decoded");
	cr_assert_str_eq(list.objects[1].key, "models/sub/x.json");
	cr_assert_str_eq(list.objects[2].key, "top.txt");
	cr_assert_eq(list.objects[2].size, 0);
	cr_assert_eq(list.key_count, 3);
	ms__s3_list_free(&list);
}

Test(s3_xml, list_truncated_page_carries_its_token)
{
	ms__s3_list list = list_ok(list_truncated);

	cr_assert(list.is_truncated);
	cr_assert_str_eq(list.next_continuation_token, "846a14763a2f7feafbe8f4f48199d2a1");
	cr_assert_eq(list.object_count, 1);
	cr_assert_eq(list.objects[0].size, 5);
	cr_assert_eq(list.max_keys, 1);
	ms__s3_list_free(&list);
}

Test(s3_xml, list_truncated_without_token_is_refused)
{
	static const char *const docs[] = {
	    "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
	    "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken/>"
	    "</ListBucketResult>",
	};

	for (size_t i = 0; i < 2; i++) {
		ms__s3_list list;

		current_case = docs[i];
		assert_error(list_parse(&list, docs[i], strlen(docs[i])), MS_EFORMAT,
		             "malformed S3 response: IsTruncated is true but NextContinuationToken "
		             "is missing");
		cr_assert_null(list.objects);
		cr_assert_null(list.name);
	}
}

Test(s3_xml, list_of_a_thousand_keys)
{
	char *xml = listing_of(1000, true);
	ms__s3_list list = list_ok(xml);

	cr_assert_eq(list.object_count, 1000);
	cr_assert_eq(list.key_count, 1000);
	cr_assert(list.is_truncated);
	for (size_t i = 0; i < 1000; i++) {
		char key[64], etag[64];

		snprintf(key, sizeof(key), "shards/model-%05zu.safetensors", i);
		snprintf(etag, sizeof(etag), "\"%032zx\"", i);
		cr_assert_str_eq(list.objects[i].key, key);
		cr_assert_str_eq(list.objects[i].etag, etag);
		cr_assert_eq(list.objects[i].size, i * 1000);
	}
	ms__s3_list_free(&list);
	free(xml);
}

Test(s3_xml, list_entries_are_capped)
{
	char *at_cap = listing_of(MS__S3_LIST_ENTRIES_MAX, false);
	char *past_cap = listing_of(MS__S3_LIST_ENTRIES_MAX + 1, false);
	ms__s3_list list = list_ok(at_cap);

	cr_assert_eq(list.object_count, MS__S3_LIST_ENTRIES_MAX);
	ms__s3_list_free(&list);
	assert_error(list_parse(&list, past_cap, strlen(past_cap)), MS_EFORMAT,
	             "more than 1100 Contents and CommonPrefixes in one page");
	cr_assert_eq(list.object_count, 0);
	free(at_cap);
	free(past_cap);
}

Test(s3_xml, list_keys_with_entities_and_unicode)
{
	static const char xml[] =
	    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	    "<IsTruncated>false</IsTruncated>"
	    "<Contents><Key>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;</Key><Size>1</Size>"
	    "</Contents>"
	    "<Contents><Key>caf&#233;/&#x1F600;.bin</Key><Size>2</Size></Contents>"
	    "<Contents><Key>模型/ünïcødé.safetensors</Key><Size>3</Size></Contents>"
	    "<Contents><Key><![CDATA[raw <cdata> & more]]></Key><Size>4</Size></Contents>"
	    "<Contents><Key>  spaces kept  </Key><Size> 5 </Size></Contents>"
	    "<Contents><Key>tab&#9;and&#10;newline</Key><Size>6</Size></Contents>"
	    "</ListBucketResult>";
	ms__s3_list list = list_ok(xml);

	cr_assert_eq(list.object_count, 6);
	cr_assert_str_eq(list.objects[0].key, "a & b <c> \"d\" 'e'");
	cr_assert_str_eq(list.objects[1].key, "caf\xc3\xa9/\xf0\x9f\x98\x80.bin");
	cr_assert_str_eq(list.objects[2].key, "模型/ünïcødé.safetensors");
	cr_assert_str_eq(list.objects[3].key, "raw <cdata> & more");
	cr_assert_str_eq(list.objects[4].key, "  spaces kept  ", "keys are never trimmed");
	cr_assert_eq(list.objects[4].size, 5, "numbers are trimmed");
	cr_assert_str_eq(list.objects[5].key, "tab\tand\nnewline", "keys are data, kept whole");
	cr_assert_null(list.objects[0].etag, "absent ETag is NULL");
	cr_assert_null(list.objects[0].last_modified);
	ms__s3_list_free(&list);
}

Test(s3_xml, list_empty_page)
{
	ms__s3_list list = list_ok(list_empty);

	cr_assert_eq(list.object_count, 0);
	cr_assert_null(list.objects);
	cr_assert_eq(list.key_count, 0);
	cr_assert_str_eq(list.prefix, "nothing/here/");
	cr_assert(!list.is_truncated);
	ms__s3_list_free(&list);
}

Test(s3_xml, list_common_prefixes)
{
	ms__s3_list list = list_ok(list_prefixes);

	cr_assert_eq(list.object_count, 1);
	cr_assert_eq(list.common_prefix_count, 2);
	cr_assert_str_eq(list.common_prefixes[0], "models/llama/");
	cr_assert_str_eq(list.common_prefixes[1], "models/a&b/");
	cr_assert_str_eq(list.prefix, "models/", "the top-level Prefix is not a common prefix");
	ms__s3_list_free(&list);
}

/* A listing whose one key is `key_xml` (already escaped). */
static char *listing_with_key(const char *key_xml)
{
	tu_strbuf b = {0};

	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>");
	tu_sb_puts(&b, key_xml);
	tu_sb_puts(&b, "</Key><Size>1</Size></Contents></ListBucketResult>");
	return b.text;
}

Test(s3_xml, list_key_length_is_capped_at_1024_bytes)
{
	tu_strbuf plain = {0}, escaped = {0}, utf8 = {0};
	char *xml;
	ms__s3_list list;

	sb_repeat(&plain, "k", 1024);
	xml = listing_with_key(plain.text);
	list = list_ok(xml);
	cr_assert_eq(strlen(list.objects[0].key), 1024);
	ms__s3_list_free(&list);
	free(xml);

	tu_sb_puts(&plain, "k");
	xml = listing_with_key(plain.text);
	assert_error(list_parse(&list, xml, strlen(xml)), MS_EFORMAT, "Key longer than 1024 bytes");
	free(xml);

	/* The cap is on the decoded bytes: 1024 ampersands take 5120 bytes of XML. */
	sb_repeat(&escaped, "&amp;", 1024);
	xml = listing_with_key(escaped.text);
	list = list_ok(xml);
	cr_assert_eq(strlen(list.objects[0].key), 1024);
	cr_assert_eq(list.objects[0].key[1023], '&');
	ms__s3_list_free(&list);
	free(xml);
	tu_sb_puts(&escaped, "&amp;");
	xml = listing_with_key(escaped.text);
	assert_error(list_parse(&list, xml, strlen(xml)), MS_EFORMAT, "Key longer than 1024 bytes");
	free(xml);

	/* 341 three-byte characters are 1023 bytes; one more is 1026. */
	sb_repeat(&utf8, "模", 341);
	xml = listing_with_key(utf8.text);
	list = list_ok(xml);
	cr_assert_eq(strlen(list.objects[0].key), 1023);
	ms__s3_list_free(&list);
	free(xml);
	tu_sb_puts(&utf8, "模");
	xml = listing_with_key(utf8.text);
	assert_error(list_parse(&list, xml, strlen(xml)), MS_EFORMAT, "Key longer than 1024 bytes");
	free(xml);

	xml = listing_with_key("");
	assert_error(list_parse(&list, xml, strlen(xml)), MS_EFORMAT, "empty Key");
	free(xml);
	free(plain.text);
	free(escaped.text);
	free(utf8.text);
}

Test(s3_xml, list_sizes_are_validated)
{
	static const struct {
		const char *text;
		uint64_t value; /* UINT64_MAX: refused */
	} cases[] = {
	    {"0", 0},
	    {"00042", 42},
	    {"\n 42\t", 42},
	    {"9223372036854775807", 9223372036854775807ULL},
	    {"9223372036854775808", UINT64_MAX},
	    {"18446744073709551615", UINT64_MAX},
	    {"18446744073709551616", UINT64_MAX},
	    {"99999999999999999999999999", UINT64_MAX},
	    {"-1", UINT64_MAX},
	    {"+1", UINT64_MAX},
	    {"", UINT64_MAX},
	    {"   ", UINT64_MAX},
	    {"abc", UINT64_MAX},
	    {"12a", UINT64_MAX},
	    {"1.5", UINT64_MAX},
	    {"1e9", UINT64_MAX},
	    {"0x10", UINT64_MAX},
	    {"4 2", UINT64_MAX},
	    {"&#x661;", UINT64_MAX}, /* ARABIC-INDIC DIGIT ONE is not a digit here */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tu_strbuf b = {0};
		ms__s3_list list;
		int rc;

		current_case = cases[i].text;
		sb_printf(&b,
		          "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key>"
		          "<Size>%s</Size></Contents></ListBucketResult>",
		          cases[i].text);
		rc = list_parse(&list, b.text, b.len);
		if (cases[i].value == UINT64_MAX) {
			assert_error(rc, MS_EFORMAT,
			             "Size is not a decimal number up to 9223372036854775807");
		} else {
			cr_assert_eq(rc, 0, "%s: %s", cases[i].text, ms_error_last()->message);
			cr_assert_eq(list.objects[0].size, cases[i].value, "%s", cases[i].text);
			ms__s3_list_free(&list);
		}
		free(b.text);
	}
}

Test(s3_xml, list_structure_is_checked)
{
	static const struct {
		const char *xml;
		const char *message;
	} cases[] = {
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size>"
	     "</Contents></ListBucketResult>",
	     "Contents without Key"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key>"
	     "</Contents></ListBucketResult>",
	     "Contents without Size"},
	    {"<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>", "IsTruncated missing"},
	    {"<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>",
	     "IsTruncated is neither true nor false: \"yes\""},
	    {"<ListBucketResult><IsTruncated>TRUE</IsTruncated></ListBucketResult>",
	     "IsTruncated is neither true nor false"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes/>"
	     "</ListBucketResult>",
	     "CommonPrefixes without Prefix"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix/>"
	     "</CommonPrefixes></ListBucketResult>",
	     "empty CommonPrefixes/Prefix"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Key>b</Key>"
	     "<Size>1</Size></Contents></ListBucketResult>",
	     "more than one Key"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><IsTruncated>true</IsTruncated>"
	     "</ListBucketResult>",
	     "more than one IsTruncated"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>a/</Prefix>"
	     "<Prefix>b/</Prefix></CommonPrefixes></ListBucketResult>",
	     "more than one CommonPrefixes/Prefix"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a<b/>c</Key>"
	     "<Size>1</Size></Contents></ListBucketResult>",
	     "element <b> inside Key"},
	    {"<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>-3</KeyCount>"
	     "</ListBucketResult>",
	     "KeyCount is not a decimal number"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__s3_list list;

		current_case = cases[i].message;
		assert_error(list_parse(&list, cases[i].xml, strlen(cases[i].xml)), MS_EFORMAT,
		             cases[i].message);
		cr_assert_eq(list.object_count, 0);
		cr_assert_null(list.objects);
		cr_assert(!list.service_error);
	}
}

Test(s3_xml, list_bucket_name_is_capped)
{
	tu_strbuf b = {0};
	ms__s3_list list;

	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated><Name>");
	sb_repeat(&b, "b", MS__S3_XML_BUCKET_MAX);
	tu_sb_puts(&b, "</Name></ListBucketResult>");
	list = list_ok(b.text);
	cr_assert_eq(strlen(list.name), MS__S3_XML_BUCKET_MAX);
	ms__s3_list_free(&list);
	b.len = 0;
	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated><Name>");
	sb_repeat(&b, "b", MS__S3_XML_BUCKET_MAX + 1);
	tu_sb_puts(&b, "</Name></ListBucketResult>");
	current_case = "long bucket name";
	assert_error(list_parse(&list, b.text, b.len), MS_EFORMAT, "Name longer than 255 bytes");
	cr_assert_null(list.name);
	free(b.text);
}

Test(s3_xml, list_namespace_prefixes_and_unknown_elements)
{
	static const char xml[] =
	    "<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	    "<s3:IsTruncated>false</s3:IsTruncated>"
	    "<s3:FutureElement attr=\"x\"><Nested><Key>not a key</Key></Nested></s3:FutureElement>"
	    "<s3:Contents><s3:Key>k1</s3:Key><s3:Size>10</s3:Size>"
	    "<Owner><ID>abc</ID><DisplayName>me</DisplayName></Owner></s3:Contents>"
	    "<!-- a comment --><?pi data?>"
	    "<EncodingType>url</EncodingType><StartAfter>a</StartAfter>"
	    "</s3:ListBucketResult>";
	ms__s3_list list = list_ok(xml);

	cr_assert_eq(list.object_count, 1, "a Key outside Contents is no object");
	cr_assert_str_eq(list.objects[0].key, "k1");
	cr_assert_eq(list.objects[0].size, 10);
	ms__s3_list_free(&list);
}

Test(s3_xml, list_body_that_is_an_error_document)
{
	ms__s3_list list;
	int rc = list_parse(&list, error_no_such_key, strlen(error_no_such_key));

	current_case = "error body for a listing";
	assert_error(rc, MS_ENOTFOUND, WHAT ": NoSuchKey: The specified key does not exist.");
	cr_assert(list.service_error);
	cr_assert_str_eq(list.error.code, "NoSuchKey");
	cr_assert_null(list.objects);
	ms__s3_list_free(&list);
	ms__s3_list_free(NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Error documents                                                                          */
/* ---------------------------------------------------------------------------------------- */

static ms__s3_error error_ok(const char *xml)
{
	ms__s3_error error;
	char *copy = exact_copy(xml, strlen(xml));
	int rc = ms__s3_error_parse(&error, copy, strlen(xml), WHAT);

	free(copy);
	cr_assert_eq(rc, 0, "%s: rc %d: %s", current_case, rc, ms_error_last()->message);
	return error;
}

Test(s3_xml, error_documents_of_every_common_kind)
{
	static const struct {
		const char *xml;
		int http_status;
		const char *code;
		int expected;
		const char *message; /* a part of the raised message */
	} cases[] = {
	    {error_no_such_key, 404, "NoSuchKey", MS_ENOTFOUND,
	     "404 NoSuchKey: The specified key does not exist. (request id WGuWBlJ8jmH0bgGas"},
	    {"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code><Message>"
	     "The specified bucket does not exist</Message><BucketName>nobucket</BucketName>"
	     "<RequestId>TrKUPXXfQH1PM55q</RequestId><HostId>9Gjjt1m+cjU4</HostId></Error>",
	     404, "NoSuchBucket", MS_ENOTFOUND,
	     "404 NoSuchBucket: The specified bucket does not exist (request id TrKUPXXfQH1PM55q)"},
	    {"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>"
	     "Access Denied</Message><RequestId>656c76696e6727732072657175657374</RequestId>"
	     "<HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>",
	     403, "AccessDenied", MS_EACCES,
	     "403 AccessDenied: Access Denied (without s3:ListBucket permission a missing key is "
	     "also AccessDenied) (request id 656c"},
	    {"<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided "
	     "does not exist in our records.</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE"
	     "</AWSAccessKeyId><RequestId>3L137</RequestId><HostId>3L137</HostId></Error>",
	     403, "InvalidAccessKeyId", MS_EACCES,
	     "403 InvalidAccessKeyId: The AWS Access Key Id you provided does not exist"},
	    {"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we "
	     "calculated does not match the signature you provided. Check your key and signing "
	     "method.</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId><StringToSign>"
	     "AWS4-HMAC-SHA256\n20261125T210000Z\n20261125/us-east-1/s3/aws4_request\n"
	     "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972</StringToSign>"
	     "<SignatureProvided>f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
	     "</SignatureProvided><StringToSignBytes>41 57 53 34</StringToSignBytes>"
	     "<CanonicalRequest>GET\n/models/\nlist-type=2\nhost:bucket.s3.amazonaws.com\n\nhost\n"
	     "UNSIGNED-PAYLOAD</CanonicalRequest><CanonicalRequestBytes>47 45 54</CanonicalRequest"
	     "Bytes><RequestId>4442587FB7D0A2F9</RequestId><HostId>abc=</HostId></Error>",
	     403, "SignatureDoesNotMatch", MS_EACCES,
	     "403 SignatureDoesNotMatch: The request signature we calculated does not match"},
	    {"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message>"
	     "<Token-0>FQoGZXIvYXdzEBYaD</Token-0><RequestId>0FF1C3</RequestId></Error>",
	     400, "ExpiredToken", MS_EACCES, "400 ExpiredToken: The provided token has expired."},
	    {error_skewed, 403, "RequestTimeTooSkewed", MS_EACCES,
	     "403 RequestTimeTooSkewed: The difference between the request time and the current "
	     "time is too large. (the server's time is 2026-11-25T21:00:00Z, the request's "
	     "20261125T204406Z: check this machine's clock) (request id 4442587FB7D0A2F9)"},
	    {"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
	     "<RequestId>TX1</RequestId><HostId>h</HostId></Error>",
	     503, "SlowDown", MS_EIO, "503 SlowDown: Please reduce your request rate."},
	    {"<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to "
	     "access "
	     "must be addressed using the specified endpoint. Please send all future requests to "
	     "this endpoint.</Message><Endpoint>bucket.s3.eu-west-1.amazonaws.com</Endpoint>"
	     "<Bucket>bucket</Bucket><RequestId>R1</RequestId></Error>",
	     301, "PermanentRedirect", MS_EINVAL,
	     "(the bucket must be addressed at bucket.s3.eu-west-1.amazonaws.com)"},
	    {"<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is "
	     "malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>"
	     "eu-west-1</Region><RequestId>R2</RequestId></Error>",
	     400, "AuthorizationHeaderMalformed", MS_EINVAL, "(the bucket's region is eu-west-1)"},
	    {complete_error, 200, "InternalError", MS_EIO,
	     "200 InternalError: We encountered an internal error. Please try again."},
	    {"<Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the "
	     "object's storage class</Message></Error>",
	     403, "InvalidObjectState", MS_EACCES, "403 InvalidObjectState: The operation"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__s3_error error;

		current_case = cases[i].code;
		error = error_ok(cases[i].xml);
		cr_assert_str_eq(error.code, cases[i].code);
		assert_error(ms__s3_error_raise(&error, cases[i].http_status, WHAT),
		             cases[i].expected, cases[i].message);
		cr_assert_eq(ms__s3_error_to_code(error.code, cases[i].http_status),
		             cases[i].expected);
	}
}

Test(s3_xml, error_fields_of_the_special_cases)
{
	ms__s3_error error = error_ok(error_skewed);
	int64_t server_time;

	cr_assert_str_eq(error.server_time, "2026-11-25T21:00:00Z");
	cr_assert_str_eq(error.request_time, "20261125T204406Z");
	cr_assert_str_eq(error.request_id, "4442587FB7D0A2F9");
	cr_assert_eq(ms__s3_time_parse(&server_time, error.server_time, strlen(error.server_time)),
	             0);
	cr_assert_eq(server_time, 1795640400);

	error = error_ok("<Error><Code>NoSuchKey</Code><Message>m</Message>"
	                 "<Resource>/bucket/models/x.safetensors</Resource></Error>");
	cr_assert_str_eq(error.resource, "/bucket/models/x.safetensors");
	cr_assert_str_eq(error.request_id, "", "an absent field is empty");
	current_case = "no request id";
	assert_error(ms__s3_error_raise(&error, 404, WHAT), MS_ENOTFOUND,
	             WHAT ": 404 NoSuchKey: m");
	cr_assert_null(strstr(ms_error_last()->message, "request id"));
	assert_error(ms__s3_error_raise(&error, 0, WHAT), MS_ENOTFOUND, WHAT ": NoSuchKey: m");
}

Test(s3_xml, error_fields_are_one_line)
{
	/* Newlines, tabs, a character reference for a newline, C1 controls NEL (U+0085) and CSI
	 * (U+009B, which terminals obey), DEL, and whitespace around the text. */
	static const char xml[] = "<Error><Code>\n  AccessDenied\n</Code><Message>line one\nline "
	                          "two\tand&#10;three\xc2\x85"
	                          "four\xc2\x9b"
	                          "31mred\x7f!  </Message><RequestId>a&#13;b</RequestId></Error>";
	ms__s3_error error = error_ok(xml);

	cr_assert_str_eq(error.code, "AccessDenied");
	cr_assert_str_eq(error.message, "line one line two and three four 31mred !");
	cr_assert_str_eq(error.request_id, "a b");
	current_case = "one line";
	assert_error(ms__s3_error_raise(&error, 403, WHAT), MS_EACCES,
	             "403 AccessDenied: line one line two");
	cr_assert_null(strchr(ms_error_last()->message, '\r'));
}

Test(s3_xml, error_fields_that_are_too_long_are_cut)
{
	tu_strbuf b = {0};
	ms__s3_error error;
	size_t len;

	tu_sb_puts(&b, "<Error><Code>SlowDown</Code><Message>");
	sb_repeat(&b, "é", 2000); /* two bytes each: 4000 bytes */
	tu_sb_puts(&b, "</Message><RequestId>");
	sb_repeat(&b, "r", 5000);
	tu_sb_puts(&b, "</RequestId></Error>");
	error = error_ok(b.text);
	len = strlen(error.message);
	cr_assert_lt(len, sizeof(error.message));
	cr_assert_gt(len, sizeof(error.message) - 8);
	cr_assert_str_eq(error.message + len - 3, "...");
	cr_assert_eq((unsigned char)error.message[len - 5], 0xc3, "cut between characters");
	cr_assert_eq((unsigned char)error.message[len - 4], 0xa9);
	cr_assert_eq(strlen(error.request_id), sizeof(error.request_id) - 1);
	cr_assert_str_eq(error.request_id + sizeof(error.request_id) - 4, "...");
	free(b.text);
}

Test(s3_xml, error_documents_that_are_refused)
{
	static const struct {
		const char *xml;
		const char *message;
	} cases[] = {
	    {"<Error><Message>no code</Message></Error>", "Error without Code"},
	    {"<Error><Code></Code></Error>", "Error without Code"},
	    {"<Error><Code> \n </Code></Error>", "Error without Code"},
	    {"<ErrorResponse><Error><Message>m</Message></Error></ErrorResponse>",
	     "ErrorResponse without Code"},
	    {"<Error><Code>A</Code><Code>B</Code></Error>", "more than one Code"},
	    {"<Error><Code>A<x/></Code></Error>", "element <x> inside Code"},
	    {list_moto, "unexpected root element <ListBucketResult> (expected Error or "
	                "ErrorResponse)"},
	    {"<html><body>502 Bad Gateway</body></html>", "unexpected root element <html>"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms__s3_error error;

		current_case = cases[i].message;
		assert_error(ms__s3_error_parse(&error, cases[i].xml, strlen(cases[i].xml), WHAT),
		             MS_EFORMAT, cases[i].message);
		cr_assert_str_eq(error.code, "");
	}
}

Test(s3_xml, error_codes_without_a_mapping_follow_the_status)
{
	cr_assert_eq(ms__s3_error_to_code("SomethingNew", 403), MS_EACCES);
	cr_assert_eq(ms__s3_error_to_code("SomethingNew", 404), MS_ENOTFOUND);
	cr_assert_eq(ms__s3_error_to_code("SomethingNew", 500), MS_EIO);
	cr_assert_eq(ms__s3_error_to_code("SomethingNew", 0), MS_EIO);
	cr_assert_eq(ms__s3_error_to_code(NULL, 404), MS_ENOTFOUND);
	cr_assert_eq(ms__s3_error_to_code("NoSuchKey", 0), MS_ENOTFOUND, "the code decides");
	cr_assert_eq(ms__s3_error_to_code("InternalError", 200), MS_EIO);
}

Test(s3_xml, error_response_of_sts_through_the_s3_reader)
{
	ms__s3_error error = error_ok(sts_error);

	cr_assert_str_eq(error.code, "InvalidIdentityToken");
	cr_assert_str_eq(error.request_id, "2f3a1c6e-1d2b-4b7e-9a51-6d0c2f1e8a77");
	cr_assert_not_null(strstr(error.message, "identity provider,  please"));
}

/* ---------------------------------------------------------------------------------------- */
/* Multipart uploads                                                                        */
/* ---------------------------------------------------------------------------------------- */

Test(s3_xml, initiate_multipart_upload)
{
	static const char no_upload_id[] =
	    "<InitiateMultipartUploadResult><Bucket>b</Bucket><UploadId/>"
	    "</InitiateMultipartUploadResult>";
	ms__s3_initiate initiate;
	tu_strbuf b = {0};

	cr_assert_eq(ms__s3_initiate_parse(&initiate, initiate_ok, strlen(initiate_ok), WHAT), 0,
	             "%s", ms_error_last()->message);
	cr_assert_str_eq(initiate.upload_id,
	                 "nEp5ntgrHOOb53CY4miX8PFg0eyuN4uQatOMPaI5zFFhHspaECKqvZw");
	cr_assert(!initiate.service_error);

	current_case = "initiate without UploadId";
	assert_error(ms__s3_initiate_parse(&initiate, complete_ok, strlen(complete_ok), WHAT),
	             MS_EFORMAT,
	             "unexpected root element <CompleteMultipartUploadResult> (expected "
	             "InitiateMultipartUploadResult)");
	assert_error(ms__s3_initiate_parse(&initiate, no_upload_id, strlen(no_upload_id), WHAT),
	             MS_EFORMAT, "UploadId missing or empty");
	tu_sb_puts(&b, "<InitiateMultipartUploadResult><UploadId>");
	sb_repeat(&b, "u", MS__S3_UPLOAD_ID_MAX + 1);
	tu_sb_puts(&b, "</UploadId></InitiateMultipartUploadResult>");
	assert_error(ms__s3_initiate_parse(&initiate, b.text, b.len, WHAT), MS_EFORMAT,
	             "UploadId longer than 1024 bytes");
	cr_assert_str_eq(initiate.upload_id, "");
	free(b.text);
}

Test(s3_xml, complete_multipart_upload)
{
	static const char no_etag[] = "<CompleteMultipartUploadResult><Location>l</Location>"
	                              "</CompleteMultipartUploadResult>";
	ms__s3_complete complete;

	cr_assert_eq(ms__s3_complete_parse(&complete, complete_ok, strlen(complete_ok), WHAT), 0,
	             "%s", ms_error_last()->message);
	cr_assert_str_eq(complete.location,
	                 "https://bucket.s3.us-east-1.amazonaws.com/models/model.safetensors");
	cr_assert_str_eq(complete.etag, "\"3858f62230ac3c915f300c664312c11f-9\"");
	cr_assert(!complete.service_error);

	current_case = "complete without ETag";
	assert_error(ms__s3_complete_parse(&complete, no_etag, strlen(no_etag), WHAT), MS_EFORMAT,
	             "ETag missing or empty");
	cr_assert_str_eq(complete.location, "", "cleared on failure");
}

/* moto answers with the root CompleteMultipartUploadResponse; the fields are the same. */
Test(s3_xml, complete_with_motos_root)
{
	static const char moto[] =
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CompleteMultipartUploadResponse "
	    "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>http://models.s3."
	    "amazonaws.com/t</Location><Bucket>models</Bucket><Key>t</Key><ETag>\"cb8d7289925309a0"
	    "5b2db09b7709c264-1\"</ETag></CompleteMultipartUploadResponse>";
	ms__s3_complete complete;

	cr_assert_eq(ms__s3_complete_parse(&complete, moto, strlen(moto), WHAT), 0, "%s",
	             ms_error_last()->message);
	cr_assert_str_eq(complete.etag, "\"cb8d7289925309a05b2db09b7709c264-1\"");
	cr_assert_str_eq(complete.location, "http://models.s3.amazonaws.com/t");
}

Test(s3_xml, complete_that_failed_after_its_200)
{
	ms__s3_complete complete;
	int rc = ms__s3_complete_parse(&complete, complete_error, strlen(complete_error), WHAT);

	current_case = "200 with Error";
	assert_error(rc, MS_EIO,
	             WHAT ": InternalError: We encountered an internal error. Please try again. "
	                  "(request id 656c76696e6727732072657175657374)");
	cr_assert(complete.service_error);
	cr_assert_str_eq(complete.error.code, "InternalError");
	cr_assert_str_eq(complete.etag, "");
}

Test(s3_xml, complete_after_keepalive_whitespace)
{
	/* While S3 assembles the parts it sends whitespace; some proxies put it first. */
	static const char xml[] = "  \n\n\r\n\t     <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	                          "<CompleteMultipartUploadResult><ETag>\"e\"</ETag>"
	                          "</CompleteMultipartUploadResult>\n   ";
	ms__s3_complete complete;

	cr_assert_eq(ms__s3_complete_parse(&complete, xml, strlen(xml), WHAT), 0, "%s",
	             ms_error_last()->message);
	cr_assert_str_eq(complete.etag, "\"e\"");
}

/* ---------------------------------------------------------------------------------------- */
/* STS                                                                                      */
/* ---------------------------------------------------------------------------------------- */

static int sts_parse(ms__sts_credentials *out, const char *xml, size_t len)
{
	char *copy = exact_copy(xml, len);
	int rc = ms__sts_credentials_parse(out, copy, len, WHAT);

	free(copy);
	return rc;
}

Test(s3_xml, sts_assume_role_with_web_identity)
{
	ms__sts_credentials creds;

	cr_assert_eq(sts_parse(&creds, sts_web_identity, strlen(sts_web_identity)), 0, "%s",
	             ms_error_last()->message);
	cr_assert_str_eq(creds.access_key_id, "ASIARZPUZDIKCWKBSIQU");
	cr_assert_str_eq(creds.secret_access_key, SECRET);
	cr_assert_str_eq(creds.session_token, SESSION_TOKEN);
	cr_assert_eq(creds.expiration, 1795647407, "fractional seconds dropped");
	cr_assert(!creds.service_error);
	ms__sts_credentials_free(&creds);
	cr_assert_null(creds.secret_access_key);
	cr_assert_eq(creds.expiration, 0);
	ms__sts_credentials_free(NULL);
}

Test(s3_xml, sts_assume_role)
{
	ms__sts_credentials creds;

	cr_assert_eq(sts_parse(&creds, sts_assume_role, strlen(sts_assume_role)), 0, "%s",
	             ms_error_last()->message);
	cr_assert_str_eq(creds.access_key_id, "ASIAIOSFODNN7EXAMPLE");
	cr_assert_str_eq(creds.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
	/* Credentials are kept as sent; AWS never pads them, but the reference's example does. */
	cr_assert_not_null(strstr(creds.session_token, "AQoDYXdzEPT//////////wEXAMPLE"));
	cr_assert_eq(creds.expiration, 1795640400);
	ms__sts_credentials_free(&creds);
}

Test(s3_xml, sts_error_response)
{
	ms__sts_credentials creds;
	int rc = sts_parse(&creds, sts_error, strlen(sts_error));

	current_case = "sts error";
	assert_error(rc, MS_EACCES,
	             WHAT ": InvalidIdentityToken: Couldn't retrieve verification key from your "
	                  "identity provider,  please reference");
	cr_assert(strstr(ms_error_last()->message, "(request id 2f3a1c6e-") != NULL);
	cr_assert(creds.service_error);
	cr_assert_str_eq(creds.error.code, "InvalidIdentityToken");
	cr_assert_null(creds.secret_access_key);
	ms__sts_credentials_free(&creds);
}

/* An STS document whose Credentials hold `inner`. */
static char *sts_with(const char *inner)
{
	tu_strbuf b = {0};

	tu_sb_puts(&b, "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>"
	               "<Credentials>");
	tu_sb_puts(&b, inner);
	tu_sb_puts(&b, "</Credentials></AssumeRoleWithWebIdentityResult>"
	               "</AssumeRoleWithWebIdentityResponse>");
	return b.text;
}

#define AKI "<AccessKeyId>ASIA1</AccessKeyId>"
#define SAK "<SecretAccessKey>" SECRET "</SecretAccessKey>"
#define STK "<SessionToken>tok</SessionToken>"
#define EXP "<Expiration>2026-11-25T21:00:00Z</Expiration>"

Test(s3_xml, sts_documents_that_are_refused_never_show_the_secret)
{
	static const struct {
		const char *inner;
		const char *message;
	} cases[] = {
	    {SAK STK EXP, "AccessKeyId missing or empty"},
	    {AKI STK EXP, "SecretAccessKey missing or empty"},
	    {AKI SAK EXP, "SessionToken missing or empty"},
	    {AKI SAK STK, "Expiration missing"},
	    {AKI "<SecretAccessKey/>" STK EXP, "SecretAccessKey missing or empty"},
	    {AKI SAK SAK STK EXP, "more than one SecretAccessKey"},
	    {AKI SAK STK "<Expiration>tomorrow</Expiration>",
	     "Expiration is not an ISO 8601 UTC time: \"tomorrow\""},
	    {AKI SAK STK "<Expiration>2026-11-25T21:00:00+01:00</Expiration>",
	     "Expiration is not an ISO 8601 UTC time"},
	    {AKI "<SecretAccessKey>" SECRET "<b>" SECRET "</b></SecretAccessKey>" STK EXP,
	     "element <b> inside SecretAccessKey"},
	    {AKI "<SecretAccessKey>" SECRET SECRET SECRET SECRET SECRET SECRET SECRET
	         "</SecretAccessKey>" STK EXP,
	     "SecretAccessKey longer than 256 bytes"},
	    {AKI SAK STK EXP "<Extra>&undefined;</Extra>", "undefined entity"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *xml = sts_with(cases[i].inner);
		ms__sts_credentials creds;

		current_case = cases[i].message;
		assert_error(sts_parse(&creds, xml, strlen(xml)), MS_EFORMAT, cases[i].message);
		cr_assert_not_null(strstr(ms_error_last()->message, "malformed STS response"));
		cr_assert_null(strstr(ms_error_last()->message, "X4y9v6"), "secret in \"%s\"",
		               ms_error_last()->message);
		cr_assert_null(creds.access_key_id);
		cr_assert_null(creds.secret_access_key);
		cr_assert_null(creds.session_token);
		cr_assert(!creds.service_error);
		free(xml);
	}
	/* Every prefix of a valid document: a failure at any point shows no secret. */
	for (size_t len = 0; len < strlen(sts_web_identity); len++) {
		ms__sts_credentials creds;

		cr_assert_eq(sts_parse(&creds, sts_web_identity, len), MS_EFORMAT);
		cr_assert_null(strstr(ms_error_last()->message, "X4y9v6"), "secret in \"%s\"",
		               ms_error_last()->message);
		cr_assert_null(strstr(ms_error_last()->message, "FQoGZXIv"));
	}
}

Test(s3_xml, sts_result_must_match_its_response)
{
	static const char xml[] =
	    "<AssumeRoleResponse><AssumeRoleWithWebIdentityResult><Credentials>" AKI SAK STK EXP
	    "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleResponse>";
	ms__sts_credentials creds;

	current_case = "mismatched result";
	assert_error(sts_parse(&creds, xml, strlen(xml)), MS_EFORMAT, "Credentials missing");
}

Test(s3_xml, iso8601_times)
{
	static const struct {
		const char *text;
		int64_t value; /* -1: refused */
	} cases[] = {
	    {"2026-11-25T21:00:00Z", 1795640400},
	    {"2026-11-25T21:00:00.000Z", 1795640400},
	    {"2026-11-25T22:56:47.506948Z", 1795647407},
	    {"2026-11-25T22:56:47.123456789Z", 1795647407},
	    {"1970-01-01T00:00:00Z", 0},
	    {"2024-02-29T23:59:59Z", 1709251199},
	    {"2016-12-31T23:59:60Z", 1483228800},
	    {"9999-12-31T23:59:59Z", 253402300799LL},
	    {"2026-11-25T22:56:47.1234567890Z", -1},
	    {"2026-11-25T21:00:00.Z", -1},
	    {"2026-11-25T21:00:00", -1},
	    {"2026-11-25T21:00:00z", -1},
	    {"2026-11-25 21:00:00Z", -1},
	    {"2026-11-25T21:00:00+00:00", -1},
	    {"2026-11-25T21:00:00ZZ", -1},
	    {"2026-13-01T00:00:00Z", -1},
	    {"2026-00-01T00:00:00Z", -1},
	    {"2026-02-29T00:00:00Z", -1},
	    {"2100-02-29T00:00:00Z", -1},
	    {"2026-04-31T00:00:00Z", -1},
	    {"2026-11-00T00:00:00Z", -1},
	    {"2026-11-25T24:00:00Z", -1},
	    {"2026-11-25T23:60:00Z", -1},
	    {"2026-11-25T23:59:61Z", -1},
	    {"1969-12-31T23:59:59Z", -1},
	    {"+2026-11-25T21:00:00Z", -1},
	    {"20261125T210000Z", -1},
	    {"", -1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t value = 42;
		char *copy = exact_copy(cases[i].text, strlen(cases[i].text));
		int rc = ms__s3_time_parse(&value, copy, strlen(cases[i].text));

		free(copy);
		if (cases[i].value < 0) {
			cr_assert_eq(rc, -1, "%s was accepted", cases[i].text);
			cr_assert_eq(value, 42, "%s: *out untouched", cases[i].text);
		} else {
			cr_assert_eq(rc, 0, "%s was refused", cases[i].text);
			cr_assert_eq(value, cases[i].value, "%s: %lld", cases[i].text,
			             (long long)value);
		}
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Hostile bodies, through every parser                                                     */
/* ---------------------------------------------------------------------------------------- */

typedef enum { P_LIST, P_ERROR, P_INITIATE, P_COMPLETE, P_STS, P_COUNT } parser_kind;

static const char *const parser_names[P_COUNT] = {"list", "error", "initiate", "complete", "sts"};

/* Runs parser `p` on a private copy of the body; frees whatever it returned. */
static int parse_with(parser_kind p, const char *xml, size_t len)
{
	char *copy = exact_copy(xml, len);
	int rc = MS_ERROR;

	switch (p) {
	case P_LIST: {
		ms__s3_list out;

		rc = ms__s3_list_parse(&out, copy, len, WHAT);
		if (rc != 0)
			cr_assert_null(out.objects);
		ms__s3_list_free(&out);
		break;
	}
	case P_ERROR: {
		ms__s3_error out;

		rc = ms__s3_error_parse(&out, copy, len, WHAT);
		break;
	}
	case P_INITIATE: {
		ms__s3_initiate out;

		rc = ms__s3_initiate_parse(&out, copy, len, WHAT);
		break;
	}
	case P_COMPLETE: {
		ms__s3_complete out;

		rc = ms__s3_complete_parse(&out, copy, len, WHAT);
		break;
	}
	case P_STS: {
		ms__sts_credentials out;

		rc = ms__sts_credentials_parse(&out, copy, len, WHAT);
		if (rc != 0)
			cr_assert_null(out.secret_access_key);
		ms__sts_credentials_free(&out);
		break;
	}
	case P_COUNT:
		break;
	}
	free(copy);
	return rc;
}

static const char billion_laughs[] =
    "<?xml version=\"1.0\"?>\n"
    "<!DOCTYPE lolz [\n"
    " <!ENTITY lol \"lol\">\n"
    " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
    " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
    " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
    " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
    " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
    " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
    " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
    " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
    " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
    "]>\n"
    "<Error><Code>&lol9;</Code></Error>";

#define NUL_BODY "<Error><Code>A\0B</Code></Error>"

Test(s3_xml, hostile_bodies_through_every_parser)
{
	static const struct {
		const char *name;
		const char *xml;
		size_t len; /* 0: strlen */
		const char *message;
	} cases[] = {
	    {"empty", "", 0, "empty body"},
	    {"whitespace only", " \r\n\t ", 0, "empty body"},
	    {"not XML", "hello, world", 0, "syntax error at line 1"},
	    {"JSON", "{\"Code\": \"NoSuchKey\"}", 0, "not well-formed (invalid token)"},
	    {"HTML", "<!DOCTYPE html><html><body>502</body></html>", 0,
	     "DOCTYPE declarations are not accepted"},
	    {"billion laughs", billion_laughs, 0, "DOCTYPE declarations are not accepted"},
	    {"external entity",
	     "<?xml version=\"1.0\"?><!DOCTYPE Error [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
	     "<Error><Code>&xxe;</Code></Error>",
	     0, "DOCTYPE declarations are not accepted"},
	    {"external DTD", "<!DOCTYPE Error SYSTEM \"http://169.254.169.254/\"><Error/>", 0,
	     "DOCTYPE declarations are not accepted"},
	    {"parameter entity",
	     "<!DOCTYPE Error [<!ENTITY % p SYSTEM \"http://x/\"> %p;]><Error/>", 0,
	     "DOCTYPE declarations are not accepted"},
	    {"undefined entity", "<Error><Code>&lol9;</Code></Error>", 0, "undefined entity"},
	    {"unclosed root", "<Error><Code>NoSuchKey</Code>", 0, "no element found"},
	    {"mismatched tag", "<Error><Code>NoSuchKey</Message></Error>", 0, "mismatched tag"},
	    {"junk after root", "<Error><Code>A</Code></Error><Error/>", 0,
	     "junk after document element"},
	    {"NUL byte", NUL_BODY, sizeof(NUL_BODY) - 1, "not well-formed"},
	    {"invalid UTF-8", "<Error><Code>\xff\xfe</Code></Error>", 0, "not well-formed"},
	    {"overlong UTF-8", "<Error><Code>\xc0\xaf</Code></Error>", 0, "not well-formed"},
	    {"control character reference", "<Error><Code>&#1;</Code></Error>", 0,
	     "reference to invalid character number"},
	    {"unknown encoding", "<?xml version=\"1.0\" encoding=\"EBCDIC-XX\"?><Error/>", 0,
	     "unknown encoding"},
	    {"wrong root", "<ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>", 0,
	     "unexpected root element <ListAllMyBucketsResult>"},
	    {"C1 control in a name", "<Err\xc2\x85or/>", 0, "not well-formed"},
	    {"long root name",
	     "<RootNameThatGoesOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOn"
	     "AndOnAndOnAndOnAndOnAndOnAndOn/>",
	     0, "unexpected root element <RootNameThatGoesOnAndOn"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].xml);

		for (int p = 0; p < P_COUNT; p++) {
			char name[128];

			snprintf(name, sizeof(name), "%s via %s", cases[i].name, parser_names[p]);
			current_case = name;
			assert_error(parse_with((parser_kind)p, cases[i].xml, len), MS_EFORMAT,
			             cases[i].message);
			cr_assert_not_null(strstr(ms_error_last()->message, "malformed"));
		}
	}
}

Test(s3_xml, every_truncation_of_a_valid_body_is_refused)
{
	static const struct {
		parser_kind parser;
		const char *xml;
	} docs[] = {
	    {P_LIST, list_three},         {P_LIST, list_prefixes},   {P_ERROR, error_skewed},
	    {P_INITIATE, initiate_ok},    {P_COMPLETE, complete_ok}, {P_STS, sts_assume_role},
	    {P_COMPLETE, complete_error}, {P_ERROR, sts_error},
	};

	for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
		size_t full = strlen(docs[d].xml);
		int rc = parse_with(docs[d].parser, docs[d].xml, full);

		cr_assert(rc == 0 || (docs[d].parser == P_COMPLETE && rc == MS_EIO), "doc %zu: %s",
		          d, ms_error_last()->message);
		/* Cut anywhere before the root closes: never a success, never a crash. Trailing
		 * whitespace after the root may go without harm. */
		while (full > 0 && strchr(" \n", docs[d].xml[full - 1]) != NULL)
			full--;
		for (size_t len = 0; len < full; len++) {
			current_case = docs[d].xml;
			rc = parse_with(docs[d].parser, docs[d].xml, len);
			cr_assert_eq(rc, MS_EFORMAT, "doc %zu cut at %zu: rc %d (%s)", d, len, rc,
			             ms_error_last()->message);
		}
	}
}

Test(s3_xml, depth_bombs)
{
	tu_strbuf b = {0};

	/* Just past the cap, then far past it: refused at the cap, before expat goes deep. */
	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated>");
	sb_repeat(&b, "<a>", MS__S3_XML_DEPTH_MAX - 1);
	sb_repeat(&b, "</a>", MS__S3_XML_DEPTH_MAX - 1);
	tu_sb_puts(&b, "</ListBucketResult>");
	cr_assert_eq(parse_with(P_LIST, b.text, b.len), 0, "%s", ms_error_last()->message);
	b.len = 0;
	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated>");
	sb_repeat(&b, "<a>", MS__S3_XML_DEPTH_MAX);
	sb_repeat(&b, "</a>", MS__S3_XML_DEPTH_MAX);
	tu_sb_puts(&b, "</ListBucketResult>");
	current_case = "depth 17";
	assert_error(parse_with(P_LIST, b.text, b.len), MS_EFORMAT,
	             "elements nested deeper than 16");

	b.len = 0;
	sb_repeat(&b, "<Error>", 1000000);
	for (int p = 0; p < P_COUNT; p++) {
		current_case = parser_names[p];
		assert_error(
		    parse_with((parser_kind)p, b.text, p == P_LIST ? b.len : MS__S3_XML_SMALL_MAX),
		    MS_EFORMAT, "elements nested deeper than 16");
	}
	free(b.text);
}

Test(s3_xml, bodies_past_their_cap)
{
	char *big = malloc(MS__S3_XML_LIST_MAX + 1);
	ms__s3_error error;

	cr_assert_not_null(big);
	memset(big, ' ', MS__S3_XML_LIST_MAX + 1);
	big[0] = '<';
	current_case = "listing of 16 MiB + 1";
	assert_error(parse_with(P_LIST, big, MS__S3_XML_LIST_MAX + 1), MS_EFORMAT,
	             "body of 16777217 bytes is larger than the 16777216 accepted");
	current_case = "error of 64 KiB + 1";
	assert_error(ms__s3_error_parse(&error, big, MS__S3_XML_SMALL_MAX + 1, WHAT), MS_EFORMAT,
	             "body of 65537 bytes is larger than the 65536 accepted");
	free(big);
}

Test(s3_xml, ten_megabyte_text_nodes)
{
	tu_strbuf b = {0};
	ms__s3_list list;

	/* In a key: refused as soon as the key passes its cap. */
	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>");
	sb_repeat(&b, "0123456789", 1000000);
	tu_sb_puts(&b, "</Key><Size>1</Size></Contents></ListBucketResult>");
	current_case = "10 MB key";
	assert_error(list_parse(&list, b.text, b.len), MS_EFORMAT, "Key longer than 1024 bytes");

	/* In an element we skip: nothing is kept, and the body is within the listing cap. */
	b.len = 0;
	tu_sb_puts(&b, "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key>"
	               "<Size>1</Size><StorageClass>");
	sb_repeat(&b, "0123456789", 1000000);
	tu_sb_puts(&b, "</StorageClass></Contents></ListBucketResult>");
	cr_assert_eq(list_parse(&list, b.text, b.len), 0, "%s", ms_error_last()->message);
	cr_assert_eq(list.object_count, 1);
	ms__s3_list_free(&list);

	/* The other documents are capped far below 10 MB. */
	for (int p = P_ERROR; p < P_COUNT; p++) {
		current_case = parser_names[p];
		assert_error(parse_with((parser_kind)p, b.text, b.len), MS_EFORMAT,
		             "is larger than the 65536 accepted");
	}
	free(b.text);
}

/* ---------------------------------------------------------------------------------------- */
/* Allocation failures                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* A listing that grows both arrays past their first size, with entities, owners and
 * prefixes, so that the walk meets every allocation a real page makes. */
static char *walk_listing(void)
{
	tu_strbuf b = {0};

	tu_sb_puts(&b,
	           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://"
	           "s3.amazonaws.com/doc/2006-03-01/\"><Name>bucket</Name><Prefix>p/</Prefix>"
	           "<KeyCount>60</KeyCount><MaxKeys>60</MaxKeys><IsTruncated>true</IsTruncated>");
	for (int i = 0; i < 40; i++)
		sb_printf(&b,
		          "<Contents><Key>p/a&amp;b-%d</Key><LastModified>2026-11-25T21:56:40.000Z"
		          "</LastModified><ETag>\"%d\"</ETag><Size>%d</Size><Owner><ID>x</ID>"
		          "</Owner></Contents>",
		          i, i, i);
	for (int i = 0; i < 20; i++)
		sb_printf(&b, "<CommonPrefixes><Prefix>p/d%d/</Prefix></CommonPrefixes>", i);
	tu_sb_puts(&b, "<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>");
	return b.text;
}

/* Walks allocation n = 1, 2, ... of parser `p` on `xml` until it succeeds (or returns
 * `final_rc`, for bodies that are error documents). Every failing run must report
 * MS_ENOMEM with the request in the message. Returns how many runs failed. */
static long walk(parser_kind p, const char *xml, int final_rc, int sticky)
{
	long before = ms__alloc_count(), calls, n;
	int rc;

	rc = parse_with(p, xml, strlen(xml));
	cr_assert_eq(rc, final_rc, "%s: %s", parser_names[p], ms_error_last()->message);
	calls = ms__alloc_count() - before;
	for (n = 1;; n++) {
		ms__alloc_fail_at(n, sticky);
		rc = parse_with(p, xml, strlen(xml));
		ms__alloc_fail_at(0, 0);
		if (rc == final_rc)
			break;
		current_case = parser_names[p];
		assert_error(rc, MS_ENOMEM, WHAT ": out of memory");
		cr_assert_lt(n, 100000, "the walk does not end");
	}
	/* Every allocation failure is reported, so success means that n is past the last
	 * allocation of a parse. */
	cr_assert_eq(n, calls + 1, "%s: walked %ld of %ld allocations", parser_names[p], n - 1,
	             calls);
	cr_assert_eq(tu_leaks_found(), 0, "%s: leaks", parser_names[p]);
	return n - 1;
}

Test(s3_xml, allocation_failure_walks)
{
	char *listing = walk_listing();

	for (int sticky = 0; sticky <= 1; sticky++) {
		cr_assert_gt(walk(P_LIST, listing, 0, sticky), 60);
		cr_assert_gt(walk(P_ERROR, error_skewed, 0, sticky), 1);
		cr_assert_gt(walk(P_INITIATE, initiate_ok, 0, sticky), 1);
		cr_assert_gt(walk(P_COMPLETE, complete_ok, 0, sticky), 1);
		cr_assert_gt(walk(P_COMPLETE, complete_error, MS_EIO, sticky), 1);
		cr_assert_gt(walk(P_STS, sts_web_identity, 0, sticky), 4);
		cr_assert_gt(walk(P_STS, sts_error, MS_EACCES, sticky), 1);
	}
	free(listing);
}
