#!/usr/bin/env python3
"""Generates tests/fixtures/sigv4_vectors.json: SigV4 test vectors signed by botocore.

Each vector holds the inputs of one ms__sigv4_request (method, host, path, raw query,
headers, payload, region, service, time, credentials) and what botocore makes of them:
the canonical request, the string to sign, the Authorization header and the other headers
it adds. tests/test_s3_sigv4.c signs the same inputs in C and compares byte for byte;
tests/check_sigv4_vectors.sh regenerates this file and fails if the committed copy drifts.

How botocore is driven, so that it signs exactly what our signer is given:
  - The clock is frozen by replacing botocore.auth.get_current_datetime, the one function
    that SigV4Auth.add_auth() reads the time from (botocore 1.43).
  - The raw query is decoded here (split on '&', skip empty pairs, split each at the first
    '=', percent-decode with '+' kept as a literal plus) and handed to botocore as
    request.params, which botocore encodes and sorts itself. That is what our signer does
    with the same raw query.
  - The path goes into the URL already encoded; S3SigV4Auth signs it as it is, SigV4Auth
    (other services) encodes it once more.
  - The canonical request and the string to sign are recorded by overriding the two
    methods that compute them and returning what the real ones return.

Usage: tests/support/sigv4_vectors.py [--output FILE]   (default: standard output)
"""

import argparse
import datetime
import hashlib
import json
import sys
from unittest import mock
from urllib.parse import unquote

import botocore
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = (
    "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+example/token+with=padding=="
)
T_2024 = 1704164645  # 2024-01-02T03:04:05Z
T_LEAP = 1709251199  # 2024-02-29T23:59:59Z, the last second of a leap day
T_2100 = 4102444800  # 2100-01-01T00:00:00Z, past 2038
VHOST = "my-bucket.s3.us-east-1.amazonaws.com"

# Each case: the inputs of one request. "scheme" only picks the URL botocore sees (its
# S3 signer looks at https for payload signing); "body" is hashed into payload_sha256;
# "unsigned_payload" makes botocore send UNSIGNED-PAYLOAD, as a client configured with
# s3={'payload_signing_enabled': False} does.
CASES = [
    dict(name="get_range", method="GET", host=VHOST,
         path="/models/llama/model-00001-of-00004.safetensors",
         headers=[["Range", "bytes=0-8388607"]]),
    dict(name="head_path_style", method="HEAD", host="s3.eu-west-1.amazonaws.com",
         path="/my-bucket/model.safetensors", region="eu-west-1"),
    dict(name="get_if_match", method="GET", host=VHOST, path="/model.safetensors",
         headers=[["If-Match", '"9b2cf535f27731c974343645a3985328"'],
                  ["Range", "bytes=8388608-16777215"]]),
    dict(name="list_objects_v2", method="GET", host=VHOST, path="/",
         query="list-type=2&prefix=models%2Fllama%203%2F&delimiter=%2F&max-keys=1000"
               "&continuation-token=1ueGcxLPRx1Tr%2FXYExHnhbYLgveDs2J%2FwQ%3D%3D"),
    dict(name="list_objects_v2_raw_and_lowercase_escapes", method="GET", host=VHOST,
         path="/", query="prefix=caf%c3%a9/~user/a+b=c&delimiter=/&list-type=2"
                         "&start-after=x%2a!'()&encoding-type=url&fetch-owner"),
    dict(name="query_sorted_after_encoding", method="GET", host=VHOST, path="/",
         query="b=1&a-b=3&a%20b=2&A=4&a=5&a=0&x-id=GetObject&empty=&&z"),
    dict(name="key_with_space_unicode_plus_equals_tilde", method="GET", host=VHOST,
         path="/dir%20one/caf%C3%A9%20%E2%9C%93/a%2Bb%3Dc~d/%F0%9F%A6%99.safetensors",
         headers=[["Range", "bytes=0-0"]]),
    dict(name="key_with_slashes_path_style", method="HEAD", host="s3.us-west-2.amazonaws.com",
         path="/my.bucket/a/b/./c/../d//e", region="us-west-2"),
    dict(name="session_token", method="GET", host=VHOST, path="/model.safetensors",
         headers=[["Range", "bytes=100-199"]], session_token=TOKEN),
    dict(name="put_with_payload_hash", method="PUT", host=VHOST, path="/uploads/out.bin",
         headers=[["Content-Type", "application/octet-stream"],
                  ["x-amz-meta-origin", "modelstream"]],
         body="hello, world\n"),
    dict(name="unsigned_payload", method="GET", host=VHOST, path="/model.safetensors",
         headers=[["Range", "bytes=0-1048575"]], unsigned_payload=True),
    dict(name="header_values_trimmed", method="GET", host=VHOST, path="/x",
         headers=[["X-Amz-Meta-Note", "  a   b\t\t c \t"], ["x-amz-meta-empty", ""],
                  ["Content-Type", "\ttext/plain;  charset=utf-8 "]]),
    dict(name="minio_host_with_port", method="GET", host="127.0.0.1:9000", scheme="http",
         path="/bucket/model.safetensors", headers=[["Range", "bytes=0-1023"]],
         access_key="minioadmin", secret_key="minioadmin"),
    dict(name="leap_day_other_region", method="GET", host="s3.ap-southeast-2.amazonaws.com",
         path="/b/k", region="ap-southeast-2", time=T_LEAP),
    dict(name="far_future", method="HEAD", host=VHOST, path="/k", time=T_2100),
    dict(name="sts_post", method="POST", host="sts.amazonaws.com", path="/", service="sts",
         headers=[["Content-Type", "application/x-www-form-urlencoded; charset=utf-8"]],
         body="Action=AssumeRole&Version=2011-06-15"
              "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdemo"
              "&RoleSessionName=modelstream",
         session_token=TOKEN),
    dict(name="non_s3_path_encoded_twice", method="GET", host="sts.amazonaws.com",
         path="/some%20path/x+y~z/", service="sts", query="Action=GetCallerIdentity"
         "&Version=2011-06-15"),
]


def decode_query(raw):
    """The raw query as (name, value) pairs, decoded the way our signer reads it."""
    pairs = []
    for part in raw.split("&"):
        if part == "":
            continue
        name, _, value = part.partition("=")
        pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
    return pairs


def recording(signer_class):
    """A subclass of signer_class that keeps the canonical request and string to sign."""

    class Recording(signer_class):
        def canonical_request(self, request):
            self.recorded_canonical_request = super().canonical_request(request)
            return self.recorded_canonical_request

        def string_to_sign(self, request, canonical_request):
            self.recorded_string_to_sign = super().string_to_sign(request, canonical_request)
            return self.recorded_string_to_sign

    return Recording


def vector(case):
    v = {
        "name": case["name"],
        "method": case["method"],
        "host": case["host"],
        "path": case["path"],
        "query": case.get("query", ""),
        "headers": case.get("headers", []),
        "region": case.get("region", "us-east-1"),
        "service": case.get("service", "s3"),
        "time": case.get("time", T_2024),
        "access_key_id": case.get("access_key", ACCESS_KEY),
        "secret_access_key": case.get("secret_key", SECRET_KEY),
        "session_token": case.get("session_token"),
        "body": case.get("body"),
        "payload_sha256": "UNSIGNED-PAYLOAD" if case.get("unsigned_payload") else None,
    }
    url = "%s://%s%s" % (case.get("scheme", "https"), v["host"], v["path"])
    request = AWSRequest(
        method=v["method"],
        url=url,
        headers=dict(v["headers"]),
        data=v["body"].encode() if v["body"] is not None else None,
        params=decode_query(v["query"]),
    )
    if case.get("unsigned_payload"):
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    credentials = Credentials(v["access_key_id"], v["secret_access_key"], v["session_token"])
    base = botocore.auth.S3SigV4Auth if v["service"] == "s3" else botocore.auth.SigV4Auth
    signer = recording(base)(credentials, v["service"], v["region"])
    now = datetime.datetime.fromtimestamp(v["time"], tz=datetime.timezone.utc)
    with mock.patch.object(botocore.auth, "get_current_datetime",
                           lambda *a, **k: now.replace(tzinfo=None)):
        signer.add_auth(request)

    if v["body"] is not None:
        # Kept so a reader can see what the C test hashes with ms__sha256_hex().
        v["body_sha256"] = hashlib.sha256(v["body"].encode()).hexdigest()
    v["expected"] = {
        "canonical_request": signer.recorded_canonical_request,
        "string_to_sign": signer.recorded_string_to_sign,
        "authorization": request.headers["Authorization"],
        "x_amz_date": request.headers["X-Amz-Date"],
        "x_amz_content_sha256": request.headers.get("X-Amz-Content-SHA256", ""),
        "x_amz_security_token": request.headers.get("X-Amz-Security-Token"),
    }
    return v


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", help="write here instead of standard output")
    args = parser.parse_args()
    document = {
        "generator": "tests/support/sigv4_vectors.py",
        "vectors": [vector(case) for case in CASES],
    }
    text = json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    if args.output:
        with open(args.output, "w", encoding="ascii") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
