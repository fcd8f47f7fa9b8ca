#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_s3_xml.c into tests/fuzz/corpus_s3_xml/.

Each seed is one selector byte, which picks the reader (0 listing, 1 error document,
2 InitiateMultipartUploadResult, 3 CompleteMultipartUploadResult, 4 STS credentials,
5 ISO 8601 time), followed by the body. The bodies copy the shapes that S3, STS and moto
send, so that the fuzzer starts from documents that pass every check, plus nasty ones that
each stop at a different check. Seeds are small (under 8 KiB) and the same every run.
Files named seed-* belong to this script and are rewritten; regression seeds that the
fuzzer found (regress-*) are left alone.

Usage: tests/fuzz/make_s3_xml_corpus.py [--out DIR]
"""
import argparse
import os

LIST, ERROR, INITIATE, COMPLETE, STS, TIME = range(6)
MAX_SEED = 8192

DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
S3NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
STSNS = ' xmlns="https://sts.amazonaws.com/doc/2011-06-15/"'


def contents(key, size, etag='"d41d8cd98f00b204e9800998ecf8427e"',
             modified="2026-11-25T21:56:40.000Z", extra=""):
    return ("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag>"
            "<Size>%s</Size>%s<StorageClass>STANDARD</StorageClass></Contents>"
            % (key, modified, etag, size, extra))


def listing(body, truncated=False, token=None, prefix="<Prefix/>"):
    tail = "<NextContinuationToken>%s</NextContinuationToken>" % token if token else ""
    return (DECL + "<ListBucketResult%s><Name>bucket</Name>%s<KeyCount>3</KeyCount>"
            "<MaxKeys>1000</MaxKeys><IsTruncated>%s</IsTruncated>%s%s</ListBucketResult>"
            % (S3NS, prefix, "true" if truncated else "false", body, tail))


def error(code, message, extra=""):
    return (DECL + "<Error><Code>%s</Code><Message>%s</Message>%s<RequestId>4442587FB7D0A2F9"
            "</RequestId><HostId>9Gjjt1m+cjU4OPvX9O9/8RuvnG41MRb/18Oux2o5H5MY=</HostId></Error>"
            % (code, message, extra))


def sts(action, expiration="2026-11-25T22:56:47.506948Z", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"):
    return ("<%sResponse%s><%sResult><Credentials><AccessKeyId>ASIARZPUZDIKCWKBSIQU</AccessKeyId>"
            "<SecretAccessKey>%s</SecretAccessKey><SessionToken>FQoGZXIvYXdzEBYaDmX98Kqn8o5U8q"
            "JgLHt0pFFiXM92hS3Bny9ij9GJ16djbPqdflZLYDo6PlNwcosm9GFK=</SessionToken>"
            "<Expiration>%s</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>"
            "ARO123EXAMPLE123:s</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/x/s"
            "</Arn></AssumedRoleUser><PackedPolicySize>6</PackedPolicySize></%sResult>"
            "<ResponseMetadata><RequestId>10m9SoL6s1jJzHEMx9</RequestId></ResponseMetadata>"
            "</%sResponse>" % (action, STSNS, action, secret, expiration, action, action))


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(' <!ENTITY lol%d "%s">\n' % (i, ("&lol%s;" % ("" if i == 1 else i - 1)) * 10)
              for i in range(1, 10))
    + ']>\n<Error><Code>&lol9;</Code></Error>')

SEEDS = {
    # Listings.
    "list-three": (LIST, listing(contents("config.json", 662)
                                 + contents("model-00001-of-00002.safetensors", 4999819336,
                                            '"a6fe1e3a4a3c8a4d4a8cc8e6f0a8d0e1-596"',
                                            extra="<Owner><ID>75aa57f0</ID><DisplayName>m"
                                                  "</DisplayName></Owner>")
                                 + contents("model-00002-of-00002.safetensors", 4066836400))),
    "list-truncated": (LIST, listing(contents("models/a.safetensors", 5), True,
                                     "846a14763a2f7feafbe8f4f48199d2a1")),
    "list-prefixes": (LIST, listing(contents("models/config.json", 662)
                                    + "<CommonPrefixes><Prefix>models/llama/</Prefix></CommonPrefixes>"
                                    "<CommonPrefixes><Prefix>models/a&amp;b/</Prefix></CommonPrefixes>",
                                    prefix="<Prefix>models/</Prefix><Delimiter>/</Delimiter>")),
    "list-empty": (LIST, listing("", prefix="<Prefix>nothing/</Prefix>").replace(
        "<KeyCount>3</KeyCount>", "<KeyCount>0</KeyCount>")),
    "list-entities": (LIST, listing(
        contents("a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos;", 1)
        + contents("caf&#233;/&#x1F600;.bin", 2)
        + contents("模型/ünïcødé.safetensors", 3)
        + contents("<![CDATA[raw <cdata> & more]]>", 4))),
    "list-key-1024": (LIST, listing(contents("k" * 1024, 18446744073709551615 // 2))),
    "list-namespace-prefix": (LIST, '<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/'
                              'doc/2006-03-01/"><s3:IsTruncated>false</s3:IsTruncated>'
                              "<s3:Contents><s3:Key>k1</s3:Key><s3:Size>10</s3:Size>"
                              "</s3:Contents></s3:ListBucketResult>"),
    "list-30-keys": (LIST, listing("".join(contents("shards/model-%05d.safetensors" % i, i * 1000)
                                           for i in range(30)), True, "tok")),
    "list-bad-size": (LIST, listing(contents("k", "-1"))),
    "list-truncated-no-token": (LIST, listing(contents("k", 1), True)),
    # Error documents.
    "error-no-such-key": (ERROR, error("NoSuchKey", "The specified key does not exist.",
                                       "<Key>nokey</Key>")),
    "error-skewed": (ERROR, error("RequestTimeTooSkewed", "The difference between the request "
                                  "time and the current time is too large.",
                                  "<RequestTime>20261125T204406Z</RequestTime><ServerTime>"
                                  "2026-11-25T21:00:00Z</ServerTime>")),
    "error-signature": (ERROR, error("SignatureDoesNotMatch", "The request signature we "
                                     "calculated does not match.",
                                     "<StringToSign>AWS4-HMAC-SHA256\n20261125T210000Z</StringToSign>"
                                     "<CanonicalRequest>GET\n/\n\nhost:b\n</CanonicalRequest>")),
    "error-redirect": (ERROR, error("PermanentRedirect", "Use the endpoint.",
                                    "<Endpoint>bucket.s3.eu-west-1.amazonaws.com</Endpoint>"
                                    "<Region>eu-west-1</Region><Resource>/bucket</Resource>")),
    "error-controls": (ERROR, error("AccessDenied", "line\none\ttab&#10;\u0085nel\u009bcsi\x7f "
                                    + "é" * 300)),
    "error-sts": (ERROR, "<ErrorResponse%s><Error><Type>Sender</Type><Code>InvalidIdentityToken"
                  "</Code><Message>Couldn't retrieve verification key</Message></Error>"
                  "<RequestId>2f3a1c6e</RequestId></ErrorResponse>" % STSNS),
    # Multipart uploads.
    "initiate": (INITIATE, DECL + "<InitiateMultipartUploadResult%s><Bucket>bkt</Bucket><Key>big"
                 "</Key><UploadId>nEp5ntgrHOOb53CY4miX8PFg0eyuN4uQatOMPaI5zFFhHspaECKqvZw"
                 "</UploadId></InitiateMultipartUploadResult>" % S3NS),
    "complete": (COMPLETE, DECL + "<CompleteMultipartUploadResult%s><Location>https://bucket.s3."
                 "amazonaws.com/big</Location><Bucket>bucket</Bucket><Key>big</Key><ETag>"
                 '"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>'
                 % S3NS),
    "complete-200-error": (COMPLETE, "   \n" + DECL + "\n<Error><Code>InternalError</Code><Message>"
                           "We encountered an internal error. Please try again.</Message>"
                           "<RequestId>656c76696e6727732072657175657374</RequestId></Error>"),
    # STS.
    "sts-web-identity": (STS, sts("AssumeRoleWithWebIdentity")),
    "sts-assume-role": (STS, sts("AssumeRole", "2026-11-25T21:00:00Z")),
    "sts-error": (STS, "<ErrorResponse%s><Error><Type>Sender</Type><Code>ExpiredTokenException"
                  "</Code><Message>Token expired</Message></Error><RequestId>r</RequestId>"
                  "</ErrorResponse>" % STSNS),
    "sts-bad-expiration": (STS, sts("AssumeRole", "2026-02-30T21:00:00Z")),
    # Times.
    "time-fraction": (TIME, "2026-11-25T22:56:47.506948Z"),
    "time-leap-second": (TIME, "2016-12-31T23:59:60Z"),
    # Hostile bodies.
    "hostile-billion-laughs": (ERROR, BILLION_LAUGHS),
    "hostile-xxe": (STS, '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM '
                    '"file:///etc/passwd">]><AssumeRoleResponse>&xxe;</AssumeRoleResponse>'),
    "hostile-depth": (LIST, "<ListBucketResult>" + "<a>" * 40 + "</a>" * 40 + "</ListBucketResult>"),
    "hostile-not-xml": (COMPLETE, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "hostile-truncated": (LIST, listing(contents("k", 1))[:150]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "corpus_s3_xml"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for old in os.listdir(args.out):
        if old.startswith("seed-"):
            os.remove(os.path.join(args.out, old))
    for name, (selector, body) in sorted(SEEDS.items()):
        data = bytes([selector]) + body.encode("utf-8")
        assert len(data) <= MAX_SEED, (name, len(data))
        with open(os.path.join(args.out, "seed-" + name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(SEEDS), args.out))


if __name__ == "__main__":
    main()
