#!/usr/bin/env python3
"""Runs moto_server (same arguments) with one defect of its signature check fixed.

With authentication on, moto 5 recomputes each request's SigV4 signature from the URL as
its web framework hands it over, with the query string already percent-decoded. botocore
then canonicalises "prefix=models/" as it stands, where AWS (and every SDK, botocore
included, when it signs) canonicalises "prefix=models%2F". So every ListObjectsV2 with a
'/' in its prefix or delimiter fails with SignatureDoesNotMatch, for boto3 as for us.
This wrapper encodes each query name and value the AWS way before moto computes the
signature.

A second defect: STS AssumeRoleWithWebIdentity is an unsigned call (the web identity token
is the proof), and moto exempts such calls only for JSON protocols (X-Amz-Target); STS
speaks the query protocol, so moto fails the call with a KeyError on the missing
Authorization header (HTTP 500). The wrapper lets that one unsigned action through, as AWS
does. Nothing else changes.
"""
import sys
from urllib.parse import parse_qsl, quote, urlsplit

from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam import access_control
from moto.server import main

_create = access_control.IAMRequestBase._create_aws_request


def _create_canonical(self):
    request = _create(self)
    parts = urlsplit(request.url)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(quote(k, safe="-_.~") + "=" + quote(v, safe="-_.~") for k, v in pairs)
        request.url = parts.path + "?" + query
    return request


access_control.IAMRequestBase._create_aws_request = _create_canonical

_authenticate = ActionAuthenticatorMixin._authenticate_and_authorize_action
UNSIGNED_ACTIONS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")


def _authenticate_unless_unsigned(self, iam_request_cls, resource="*"):
    if "Authorization" not in self.headers:
        action = (getattr(self, "querystring", None) or {}).get("Action", [None])[0]
        if action in UNSIGNED_ACTIONS:
            return
    return _authenticate(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_unless_unsigned

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
