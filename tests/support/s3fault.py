#!/usr/bin/env python3
"""s3fault: a small S3-compatible HTTP/1.1 endpoint with scripted fault injection.

It serves the files under a directory path-style (``ROOT/BUCKET/KEY`` is
``http://127.0.0.1:PORT/BUCKET/KEY``), listens on 127.0.0.1 only, and needs nothing
beyond the Python 3.11 standard library.

    python3 tests/support/s3fault.py --root DIR --port 0 --port-file FILE \\
        [--script rules.json] [--require-auth] [--bandwidth BYTES_PER_SEC] \\
        [--tls-cert CERT.pem --tls-key KEY.pem] \\
        [--etag md5|stat] [--max-connections N] [--idle-timeout S] [--verbose]

With ``--port 0`` a free port is bound and written (atomically, as "PORT\\n") to FILE,
so tests can run in parallel: wait until FILE exists, then read it.  SIGTERM or SIGINT
stops the server and the process exits with status 0.

S3 behaviour
------------
* ``GET``/``HEAD /bucket/key``: ``Range: bytes=a-b``, ``bytes=a-``, ``bytes=-n`` give 206 +
  ``Content-Range``; a start at or past the end gives 416 ``InvalidRange`` with
  ``Content-Range: bytes */SIZE``; multi-range or malformed ranges are ignored (200, the
  whole object, as S3 does).  ``ETag`` is the quoted md5 of the content (``--etag stat``:
  a stable token hashed from inode/size/mtime, for huge files), cached per
  (inode, size, mtime).  ``Last-Modified`` is the file's mtime.  ``If-Match`` /
  ``If-Unmodified-Since`` failing give 412 ``PreconditionFailed``; ``If-None-Match`` /
  ``If-Modified-Since`` give 304.  Symlinked files are served (handy for big models).
* ``GET /bucket?list-type=2``: ListObjectsV2 with prefix, delimiter, start-after,
  continuation-token, max-keys (capped at 1000), encoding-type=url, real pagination
  (``IsTruncated``, ``NextContinuationToken``, ``KeyCount``).  ``GET /bucket`` without
  list-type: ListObjects (v1, marker / NextMarker).  ``HEAD /bucket``, ``GET
  /bucket?location``, ``GET /`` (ListBuckets) also work.  Other methods: 405.
* Errors are S3 XML bodies (``NoSuchKey``, ``NoSuchBucket``, ``AccessDenied`` ...) with
  ``Content-Length`` so keep-alive survives them; HEAD responses carry no body.
* ``--require-auth``: a request without an ``Authorization`` header starting with
  ``AWS4-HMAC-SHA256`` (or a presigned ``X-Amz-Algorithm=AWS4-HMAC-SHA256`` query) gets
  403 ``AccessDenied`` (checked before any fault rule).  Signatures are never verified.  The headers of the last 1000
  requests are recorded either way (``GET /__control/requests``).
* ``--bandwidth N``: one token bucket (N bytes/s) shared by every connection paces the
  response bodies, like a slow link.
* Limits: request line 8 KiB (414), header block 64 KiB / 100 lines (431), request
  bodies over 1 MiB are not read (the connection is closed), ``--max-connections``
  (default 512) connection threads at once (the next ones get 503 SlowDown and are
  closed), ``--idle-timeout`` (default 60 s) per socket operation.

Control endpoints (never faulted, never need auth, not counted in the stats)
----------------------------------------------------------------------------
* ``POST /__control/script`` body: a script (below); replaces the rules, 400 if invalid.
* ``GET /__control/script``: the rules with their ``matched`` / ``fired`` counters.
* ``GET /__control/stats``: JSON counters: ``requests`` (by method), ``requests_total``,
  ``responses`` (by status), ``bytes_served`` (body bytes written, by "bucket/key"),
  ``bytes_served_total``, ``faults`` (fired, by action), ``connections_total``,
  ``connections_current``, ``connections_max`` (most at once), ``inflight_max`` (most
  requests at once; a request stops counting just before the last write of its answer,
  so that a client that sends its next request after reading a whole answer is never
  seen to overlap the two),
  ``rejected_connections``, ``auth`` ({"ok", "rejected"}), ``uptime_s``.
* ``POST /__control/reset``: zeroes the stats, the request log and every rule's counters
  (``matched``, ``fired``, ``times``, random stream, throttle bucket).  The rules stay;
  a body ``{"clear_script": true}`` also removes them.  Swapped objects stay swapped.
* ``GET /__control/requests``: the last 1000 requests: ``n``, ``method``, ``path``,
  ``headers`` ([[name, value], ...]), ``auth`` ("ok", "rejected" or "unchecked").
* ``GET /__control/health``: ``{"ok": true, "port": PORT}``.

Script format
-------------
A script is a JSON list of rules, or an object ``{"seed": N, "rules": [...]}`` (the seed,
default 0, drives ``probability``; each rule has its own stream, seeded from the seed and
its index, so a script replays identically).  For every S3 request the rules are tried
in order.  A rule *matches* when all its filters hold; its ``matched`` counter then goes
up and it *fires* when all its triggers hold.  ``delay`` and ``swap`` are modifiers: when
they fire, the next rules are still tried.  Any other action that fires is terminal:
it decides the response and the rules after it do not see (or count) that request.
A rule that has fired ``times`` times is inert.

Filters (all optional; a rule without filters matches every request):
  ``method``       "GET" or a list ["GET", "HEAD"]
  ``bucket``       glob (fnmatch, case sensitive)
  ``key``          glob or list of globs on the object key ("*" also matches "/");
                   a rule with ``key`` only matches object requests
  ``target``       "object", "list", "bucket" (HEAD bucket, location) or "service"
  ``range_start``  N (exactly) or [LO, HI] (inclusive, HI may be null): the first byte
                   asked for (0 without a Range header; suffix ranges are resolved);
                   only object requests match
  ``ranged``       true: only requests with a Range header; false: only without
  ``headers``      {"Name": glob | true (present) | false/null (absent)}
Triggers (all optional, all must hold):
  ``nth``          N or [N1, N2, ...]: the Nth matching request (1-based)
  ``every``        N: every Nth matching request (N, 2N, ...)
  ``probability``  p in [0, 1], drawn from the rule's seeded stream
  ``times``        fire at most this many times
Actions (``action``) and their parameters:
  ``slowdown``  503 SlowDown XML; ``retry_after`` (seconds) adds Retry-After
  ``error500``  500 InternalError XML
  ``error``     any XML error: ``status`` (500), ``code`` ("InternalError"),
                ``message``, ``retry_after``
  ``reset``     the normal response's headers + the first ``after_bytes`` (0) body bytes,
                then the socket is closed with SO_LINGER 0, so the peer gets a TCP RST
                (the server waits up to 1 s for those bytes to be acknowledged first)
  ``stall``     headers + ``after_bytes`` (0) bytes, then sleep ``seconds`` (5), then
                ``then``: "continue" (default; send the rest), "close" (FIN) or "reset"
  ``truncate``  the full Content-Length is announced but the connection is closed (FIN)
                after ``after_bytes`` (default: half the body) bytes
                For reset/stall/truncate ``after_bytes`` is clamped to body length - 1 so
                the fault is always visible; ``send_headers: false`` closes/resets (or
                stalls) before the status line instead.  They apply to whatever response
                the request gets (an object, a listing or an XML error).
  ``swap``      (modifier) replace the object's file atomically (new inode, so new
                ETag and Last-Modified; readers already streaming keep the old bytes).
                New content: ``data`` (UTF-8 string), ``data_hex``, ``from`` (a path
                relative to --root, e.g. "bucket/other"), or by default the old bytes
                XOR 0xFF (same size; b"swapped\\n" for an empty object).  ``when``:
                "after" (default: this request gets the old object, later ones the
                new one, so a later If-Match on the old ETag gets 412) or "before".
  ``skew``      403 RequestTimeTooSkewed XML with RequestTime and ServerTime;
                ``offset_seconds`` (0) shifts the server's clock (ServerTime and Date)
  ``expired``   400 ExpiredToken XML
  ``delay``     (modifier) sleep ``seconds`` (1) before answering
  ``throttle``  token bucket over all matching requests from all clients: ``rps`` R
                requests/s, ``burst`` (default R); a request finding no token gets
                503 SlowDown (``retry_after`` optional) and takes no token.  nth /
                every / probability do not apply to it; ``times`` caps the 503s.
Rules may carry a ``name`` or ``comment``; unknown fields are an error.

Example (``rules.json``)::

    {
      "seed": 42,
      "rules": [
        {"name": "first two GETs throttled", "action": "slowdown", "method": "GET",
         "key": "*.safetensors", "nth": [1, 2], "retry_after": 1},
        {"action": "reset", "key": "model-*.safetensors", "range_start": [0, 1048575],
         "after_bytes": 65536, "times": 1},
        {"action": "stall", "every": 10, "after_bytes": 4096, "seconds": 5,
         "then": "continue"},
        {"action": "truncate", "probability": 0.05, "after_bytes": 1000},
        {"action": "swap", "key": "model.safetensors", "nth": 3, "when": "after"},
        {"action": "delay", "method": "HEAD", "seconds": 0.2},
        {"action": "throttle", "rps": 50, "burst": 50}
      ]
    }

Python use: ``S3FaultServer(root, port=0, script=..., ...)`` is a ThreadingHTTPServer;
run ``serve_forever()`` in a thread and read ``server.server_address[1]``.
"""

import argparse
import base64
import bisect
import email.utils
import fnmatch
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import signal
import socket
import ssl
import stat as statmod
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape as xml_escape

HOST = "127.0.0.1"
MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 65536
MAX_CONTROL_BODY = 1 << 20
MAX_DISCARD_BODY = 1 << 20
MAX_LIST_KEYS = 1000
REQUEST_LOG_LEN = 1000
ETAG_CACHE_MAX = 100000
SEND_CHUNK = 1 << 20
TMP_PREFIX = ".s3fault-tmp-"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XOR_TABLE = bytes(255 - i for i in range(256))
DIGITS = re.compile(r"[0-9]+\Z")

ERRORS = {
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "SlowDown": (503, "Please reduce your request rate."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "AccessDenied": (403, "Access Denied"),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current time is too large."),
    "ExpiredToken": (400, "The provided token has expired."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "InvalidArgument": (400, "Invalid Argument"),
    "NotImplemented": (501, "A header or query you provided implies functionality that is not implemented."),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
}


class ScriptError(ValueError):
    pass


# --------------------------------------------------------------------------- helpers

def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def iso_date(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % (int(ts * 1000) % 1000)


def parse_http_date(value):
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return dt.timestamp()


def parse_range(header, size):
    """None: no usable range (serve 200); "unsat": 416; else (start, end) inclusive."""
    h = header.strip()
    if not h[:6].lower() == "bytes=":
        return None
    spec = h[6:].strip()
    if "," in spec:
        return None
    a, sep, b = spec.partition("-")
    if not sep:
        return None
    a, b = a.strip(), b.strip()
    if a == "":
        if not DIGITS.match(b):
            return None
        n = int(b)
        if n == 0 or size == 0:
            return "unsat"
        return (max(0, size - n), size - 1)
    if not DIGITS.match(a):
        return None
    start = int(a)
    if b == "":
        end = size - 1
    elif DIGITS.match(b):
        end = int(b)
        if end < start:
            return None
    else:
        return None
    if start >= size:
        return "unsat"
    return (start, min(end, size - 1))


def range_start_of(header, size_fn):
    """The first byte a request asks for (0 without Range), None if unknown."""
    if header is None:
        return 0
    h = header.strip()
    if h[:6].lower() != "bytes=":
        return 0
    spec = h[6:].split(",")[0].strip()
    a, _, b = spec.partition("-")
    a, b = a.strip(), b.strip()
    if DIGITS.match(a):
        return int(a)
    if a == "" and DIGITS.match(b):
        size = size_fn()
        if size is None:
            return None
        return max(0, size - int(b))
    return 0


def etag_matches(header, etag):
    """etag is unquoted hex; header an If-Match / If-None-Match value."""
    for item in header.split(","):
        item = item.strip()
        if item == "*":
            return True
        if item.startswith("W/"):
            item = item[2:]
        if item.strip('"') == etag:
            return True
    return False


def xml_doc(body):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode("utf-8")


def el(name, value):
    return "<%s>%s</%s>" % (name, xml_escape(str(value)), name)


class FileBody:
    def __init__(self, fobj, offset, length):
        self.fobj = fobj
        self.offset = offset
        self.length = length


class CappedReader:
    """Wraps rfile while headers are parsed: caps the whole header block."""

    def __init__(self, real, cap):
        self.real = real
        self.cap = cap
        self.used = 0

    def readline(self, limit=-1):
        line = self.real.readline(limit)
        self.used += len(line)
        if self.used > self.cap:
            raise http.client.LineTooLong("header block")
        return line

    def __getattr__(self, name):
        return getattr(self.real, name)


class TokenBucket:
    """Blocking bandwidth limiter (reservation style, fair across threads)."""

    def __init__(self, rate, burst):
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def consume(self, n, stop_event):
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            stop_event.wait(wait)


# --------------------------------------------------------------------------- stats

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.conn_current = 0
        self.inflight = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.requests = {}
            self.requests_total = 0
            self.responses = {}
            self.bytes_served = {}
            self.bytes_total = 0
            self.faults = {}
            self.conn_total = 0
            self.conn_max = self.conn_current
            self.inflight_max = self.inflight
            self.rejected = 0
            self.auth_ok = 0
            self.auth_rejected = 0
            self.started = time.time()

    def begin_request(self, method):
        with self.lock:
            self.requests[method] = self.requests.get(method, 0) + 1
            self.requests_total += 1
            self.inflight += 1
            self.inflight_max = max(self.inflight_max, self.inflight)

    def end_request(self):
        with self.lock:
            self.inflight -= 1

    def response(self, status):
        with self.lock:
            k = str(status)
            self.responses[k] = self.responses.get(k, 0) + 1

    def add_bytes(self, name, n):
        if n <= 0:
            return
        with self.lock:
            self.bytes_served[name] = self.bytes_served.get(name, 0) + n
            self.bytes_total += n

    def fault(self, kind):
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1

    def auth(self, ok):
        with self.lock:
            if ok:
                self.auth_ok += 1
            else:
                self.auth_rejected += 1

    def snapshot(self):
        with self.lock:
            return {
                "requests": dict(self.requests),
                "requests_total": self.requests_total,
                "responses": dict(self.responses),
                "bytes_served": dict(self.bytes_served),
                "bytes_served_total": self.bytes_total,
                "faults": dict(self.faults),
                "connections_total": self.conn_total,
                "connections_current": self.conn_current,
                "connections_max": self.conn_max,
                "inflight_max": self.inflight_max,
                "rejected_connections": self.rejected,
                "auth": {"ok": self.auth_ok, "rejected": self.auth_rejected},
                "uptime_s": round(time.time() - self.started, 3),
            }


# --------------------------------------------------------------------------- fault rules

COMMON_FIELDS = {"action", "name", "comment", "method", "bucket", "key", "target",
                 "range_start", "ranged", "headers", "nth", "every", "probability", "times"}
ACTION_PARAMS = {
    "slowdown": {"retry_after"},
    "error500": set(),
    "error": {"status", "code", "message", "retry_after"},
    "reset": {"after_bytes", "send_headers"},
    "stall": {"after_bytes", "seconds", "then", "send_headers"},
    "truncate": {"after_bytes", "send_headers"},
    "swap": {"data", "data_hex", "from", "when"},
    "skew": {"offset_seconds"},
    "expired": set(),
    "delay": {"seconds"},
    "throttle": {"rps", "burst", "retry_after"},
}
MODIFIERS = {"delay", "swap"}
BODY_FAULTS = {"reset", "stall", "truncate"}
TARGETS = {"object", "list", "bucket", "service"}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Rule:
    def __init__(self, d, index, seed):
        if not isinstance(d, dict):
            raise ScriptError("rule %d: not an object" % index)
        action = d.get("action")
        if action not in ACTION_PARAMS:
            raise ScriptError("rule %d: unknown action %r (one of %s)"
                              % (index, action, ", ".join(sorted(ACTION_PARAMS))))
        unknown = set(d) - COMMON_FIELDS - ACTION_PARAMS[action]
        if unknown:
            raise ScriptError("rule %d (%s): unknown field(s) %s" % (index, action, ", ".join(sorted(unknown))))
        self.index = index
        self.spec = dict(d)
        self.action = action
        self.name = d.get("name")

        def strlist(field, upper=False):
            v = d.get(field)
            if v is None:
                return None
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                raise ScriptError("rule %d: %s must be a string or a list of strings" % (index, field))
            return [x.upper() for x in v] if upper else v

        def num(field, default, lo=None, hi=None, integer=False):
            v = d.get(field, default)
            if v is None:
                return None
            if (integer and not _is_int(v)) or (not integer and not _is_num(v)):
                raise ScriptError("rule %d: %s must be %s" % (index, field, "an integer" if integer else "a number"))
            if lo is not None and v < lo:
                raise ScriptError("rule %d: %s must be >= %s" % (index, field, lo))
            if hi is not None and v > hi:
                raise ScriptError("rule %d: %s must be <= %s" % (index, field, hi))
            return v

        self.methods = strlist("method", upper=True)
        self.buckets = strlist("bucket")
        self.keys = strlist("key")
        self.target = d.get("target")
        if self.target is not None and self.target not in TARGETS:
            raise ScriptError("rule %d: target must be one of %s" % (index, ", ".join(sorted(TARGETS))))
        rs = d.get("range_start")
        if rs is None:
            self.range_lo = self.range_hi = None
        elif _is_int(rs):
            self.range_lo = self.range_hi = rs
        elif (isinstance(rs, list) and len(rs) == 2 and _is_int(rs[0])
              and (rs[1] is None or _is_int(rs[1]))):
            self.range_lo, self.range_hi = rs
        else:
            raise ScriptError("rule %d: range_start must be N or [LO, HI]" % index)
        self.ranged = d.get("ranged")
        if self.ranged is not None and not isinstance(self.ranged, bool):
            raise ScriptError("rule %d: ranged must be true or false" % index)
        self.headers = d.get("headers")
        if self.headers is not None:
            if not isinstance(self.headers, dict) or not all(
                    isinstance(v, (str, bool)) or v is None for v in self.headers.values()):
                raise ScriptError("rule %d: headers must map names to a glob, true, false or null" % index)
        nth = d.get("nth")
        if nth is None:
            self.nth = None
        else:
            if _is_int(nth):
                nth = [nth]
            if not isinstance(nth, list) or not nth or not all(_is_int(x) and x >= 1 for x in nth):
                raise ScriptError("rule %d: nth must be N >= 1 or a list of them" % index)
            self.nth = set(nth)
        self.every = num("every", None, lo=1, integer=True)
        self.probability = num("probability", None, lo=0, hi=1)
        self.times = num("times", None, lo=0, integer=True)

        # action parameters
        self.retry_after = num("retry_after", None, lo=0) if "retry_after" in ACTION_PARAMS[action] else None
        self.after_bytes = None
        self.send_headers = True
        if action in BODY_FAULTS:
            self.after_bytes = num("after_bytes", None if action == "truncate" else 0, lo=0, integer=True)
            sh = d.get("send_headers", True)
            if not isinstance(sh, bool):
                raise ScriptError("rule %d: send_headers must be true or false" % index)
            self.send_headers = sh
        self.seconds = None
        if action == "stall":
            self.seconds = num("seconds", 5, lo=0)
            self.then = d.get("then", "continue")
            if self.then not in ("continue", "close", "reset"):
                raise ScriptError("rule %d: then must be continue, close or reset" % index)
        if action == "delay":
            self.seconds = num("seconds", 1, lo=0)
        if action == "error":
            self.status = num("status", 500, lo=400, hi=599, integer=True)
            self.code = d.get("code", "InternalError")
            self.message = d.get("message", ERRORS.get(self.code, (0, "Error"))[1])
            if not isinstance(self.code, str) or not isinstance(self.message, str):
                raise ScriptError("rule %d: code and message must be strings" % index)
        if action == "skew":
            self.offset_seconds = num("offset_seconds", 0)
        if action == "throttle":
            self.rps = num("rps", None, integer=False)
            if self.rps is None or self.rps <= 0:
                raise ScriptError("rule %d: throttle needs rps > 0" % index)
            self.burst = num("burst", max(1.0, float(self.rps)), lo=1)
        if action == "swap":
            sources = [f for f in ("data", "data_hex", "from") if f in d]
            if len(sources) > 1:
                raise ScriptError("rule %d: give at most one of data, data_hex, from" % index)
            self.swap_data = None
            self.swap_from = None
            if "data" in d:
                if not isinstance(d["data"], str):
                    raise ScriptError("rule %d: data must be a string" % index)
                self.swap_data = d["data"].encode("utf-8")
            elif "data_hex" in d:
                try:
                    self.swap_data = bytes.fromhex(d["data_hex"])
                except (TypeError, ValueError):
                    raise ScriptError("rule %d: data_hex is not hex" % index)
            elif "from" in d:
                f = d["from"]
                if not isinstance(f, str) or not safe_components(f.split("/")):
                    raise ScriptError("rule %d: from must be a relative path under --root" % index)
                self.swap_from = f
            self.when = d.get("when", "after")
            if self.when not in ("after", "before"):
                raise ScriptError("rule %d: when must be after or before" % index)
        self.seed = seed
        self.reset()

    def reset(self):
        self.matched = 0
        self.fired = 0
        self.rng = random.Random("%s:%d" % (self.seed, self.index))
        if self.action == "throttle":
            self.tokens = float(self.burst)
            self.last = time.monotonic()

    def matches(self, ctx):
        if self.methods is not None and ctx.method not in self.methods:
            return False
        if self.target is not None and ctx.target != self.target:
            return False
        if self.buckets is not None:
            if ctx.bucket is None or not any(fnmatch.fnmatchcase(ctx.bucket, p) for p in self.buckets):
                return False
        if self.keys is not None:
            if ctx.key is None or not any(fnmatch.fnmatchcase(ctx.key, p) for p in self.keys):
                return False
        if self.ranged is not None and (ctx.range_header is not None) != self.ranged:
            return False
        if self.headers is not None:
            for name, want in self.headers.items():
                got = ctx.headers.get(name)
                if want is None or want is False:
                    if got is not None:
                        return False
                elif want is True:
                    if got is None:
                        return False
                elif got is None or not fnmatch.fnmatchcase(got, want):
                    return False
        if self.range_lo is not None:
            if ctx.key is None:
                return False
            start = ctx.range_start()
            if start is None or start < self.range_lo:
                return False
            if self.range_hi is not None and start > self.range_hi:
                return False
        return True

    def should_fire(self):
        if self.nth is not None and self.matched not in self.nth:
            return False
        if self.every is not None and self.matched % self.every != 0:
            return False
        if self.probability is not None and self.rng.random() >= self.probability:
            return False
        return True

    def take_token(self):
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rps)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def describe(self):
        out = dict(self.spec)
        out["index"] = self.index
        out["matched"] = self.matched
        out["fired"] = self.fired
        return out


def parse_script(script):
    if isinstance(script, dict):
        unknown = set(script) - {"seed", "rules", "comment"}
        if unknown:
            raise ScriptError("script: unknown field(s) %s" % ", ".join(sorted(unknown)))
        seed = script.get("seed", 0)
        rules = script.get("rules", [])
    elif isinstance(script, list):
        seed, rules = 0, script
    else:
        raise ScriptError("a script is a list of rules or {\"seed\": N, \"rules\": [...]}")
    if not isinstance(rules, list):
        raise ScriptError("rules must be a list")
    if not (_is_int(seed) or isinstance(seed, str)):
        raise ScriptError("seed must be an integer or a string")
    return seed, [Rule(r, i, seed) for i, r in enumerate(rules)]


class Decision:
    def __init__(self):
        self.delay = 0.0
        self.swaps = []
        self.terminal = None


class FaultEngine:
    def __init__(self, stats):
        self.stats = stats
        self.lock = threading.Lock()
        self.seed = 0
        self.rules = []

    def load(self, script):
        seed, rules = parse_script(script)
        with self.lock:
            self.seed, self.rules = seed, rules

    def reset(self, clear=False):
        with self.lock:
            if clear:
                self.rules = []
            for r in self.rules:
                r.reset()

    def describe(self):
        with self.lock:
            return {"seed": self.seed, "rules": [r.describe() for r in self.rules]}

    def evaluate(self, ctx):
        d = Decision()
        with self.lock:
            for r in self.rules:
                if r.times is not None and r.fired >= r.times:
                    continue
                if not r.matches(ctx):
                    continue
                r.matched += 1
                if r.action == "throttle":
                    fire = not r.take_token()
                else:
                    fire = r.should_fire()
                if not fire:
                    continue
                r.fired += 1
                self.stats.fault(r.action)
                if r.action == "delay":
                    d.delay += r.seconds
                elif r.action == "swap":
                    d.swaps.append(r)
                else:
                    d.terminal = r
                    break
        return d


class RequestContext:
    def __init__(self, method, bucket, key, target, headers, size_fn):
        self.method = method
        self.bucket = bucket
        self.key = key
        self.target = target
        self.headers = headers
        self.range_header = headers.get("Range")
        self._size_fn = size_fn
        self._start = False

    def range_start(self):
        if self._start is False:
            self._start = range_start_of(self.range_header, self._size_fn)
        return self._start


def safe_components(parts):
    for p in parts:
        if p in ("", ".", "..") or "\0" in p or p.startswith(TMP_PREFIX):
            return False
    return True


# --------------------------------------------------------------------------- server

class S3FaultServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() must not wait for idle keep-alive threads
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, root, port=0, script=None, require_auth=False, bandwidth=None,
                 etag_mode="md5", max_connections=512, idle_timeout=60.0, verbose=False):
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise ValueError("root %s is not a directory" % root)
        self.require_auth = require_auth
        self.etag_mode = etag_mode
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self.stats = Stats()
        self.faults = FaultEngine(self.stats)
        if script is not None:
            self.faults.load(script)
        self.bandwidth = None
        self.bw_chunk = SEND_CHUNK
        if bandwidth:
            self.bw_chunk = int(min(65536, max(1024, bandwidth // 50)))
            self.bandwidth = TokenBucket(bandwidth, self.bw_chunk)
        self.stopping = threading.Event()
        self.etags = {}
        self.etag_lock = threading.Lock()
        self.swap_lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.request_log = deque(maxlen=REQUEST_LOG_LEN)
        self.request_seq = 0
        self.host_id = base64.b64encode(os.urandom(24)).decode()
        super().__init__((HOST, port), S3Handler)

    # connection accounting / thread bound
    def process_request(self, request, client_address):
        st = self.stats
        with st.lock:
            over = st.conn_current >= self.max_connections
            if over:
                st.rejected += 1
            else:
                st.conn_current += 1
                st.conn_total += 1
                st.conn_max = max(st.conn_max, st.conn_current)
        if over:
            self._reject(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._conn_done()
            self.shutdown_request(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._conn_done()

    def _conn_done(self):
        with self.stats.lock:
            self.stats.conn_current -= 1

    def _reject(self, request):
        body = xml_doc("<Error>%s%s</Error>" % (el("Code", "SlowDown"), el("Message", "Too many connections.")))
        head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)).encode()
        try:
            request.settimeout(1.0)
            request.sendall(head + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, BrokenPipeError)):
            return
        sys.stderr.write("s3fault: error while handling a request from %s:\n" % (client_address,))
        traceback.print_exc(file=sys.stderr)

    # ETags
    def etag_for(self, fobj, st):
        ck = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self.etag_lock:
            e = self.etags.get(ck)
        if e is not None:
            return e
        if self.etag_mode == "stat":
            e = hashlib.md5(("%d:%d:%d:%d" % ck).encode()).hexdigest()
        else:
            h = hashlib.md5()
            fd = fobj.fileno()
            off = 0
            while off < st.st_size:
                b = os.pread(fd, min(SEND_CHUNK * 4, st.st_size - off), off)
                if not b:
                    break
                h.update(b)
                off += len(b)
            e = h.hexdigest()
        with self.etag_lock:
            if len(self.etags) >= ETAG_CACHE_MAX:
                self.etags.clear()
            self.etags[ck] = e
        return e

    def bucket_dir(self, bucket):
        if not bucket or bucket.startswith(".") or bucket.startswith("__") or "/" in bucket or "\0" in bucket:
            return None
        p = os.path.join(self.root, bucket)
        return p if os.path.isdir(p) else None

    def object_path(self, bucket, key):
        if not key:
            return None
        parts = key.split("/")
        if not safe_components(parts):
            return None
        return os.path.join(self.root, bucket, *parts)

    def list_keys(self, bdir):
        keys = []
        for dirpath, dirnames, filenames in os.walk(bdir):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
            rel = os.path.relpath(dirpath, bdir)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            for f in filenames:
                if f.startswith(TMP_PREFIX):
                    continue
                k = base + f
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    continue
                keys.append(k)
        keys.sort()
        return keys

    def swap_object(self, bucket, key, rule):
        path = self.object_path(bucket, key)
        if path is None or self.bucket_dir(bucket) is None:
            return False
        with self.swap_lock:
            d = os.path.dirname(path)
            tmp = os.path.join(d, TMP_PREFIX + uuid.uuid4().hex)
            try:
                with open(tmp, "wb") as out:
                    if rule.swap_data is not None:
                        out.write(rule.swap_data)
                    elif rule.swap_from is not None:
                        with open(os.path.join(self.root, *rule.swap_from.split("/")), "rb") as src:
                            while True:
                                b = src.read(SEND_CHUNK)
                                if not b:
                                    break
                                out.write(b)
                    else:
                        n = 0
                        with open(path, "rb") as src:
                            while True:
                                b = src.read(SEND_CHUNK)
                                if not b:
                                    break
                                out.write(b.translate(XOR_TABLE))
                                n += len(b)
                        if n == 0:
                            out.write(b"swapped\n")
                os.replace(tmp, path)
            except OSError as e:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                sys.stderr.write("s3fault: swap of %s/%s failed: %s\n" % (bucket, key, e))
                return False
        return True

    def record(self, entry):
        with self.log_lock:
            self.request_seq += 1
            entry["n"] = self.request_seq
            self.request_log.append(entry)

    def reset_all(self, clear_script=False):
        self.stats.reset()
        self.faults.reset(clear=clear_script)
        with self.log_lock:
            self.request_log.clear()


# --------------------------------------------------------------------------- handler

class S3Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmazonS3"
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def setup(self):
        self.timeout = self.server.idle_timeout
        super().setup()
        self._date_offset = 0.0
        self._fault = None

    def date_time_string(self, timestamp=None):
        if timestamp is None:
            timestamp = time.time() + self._date_offset
        return http_date(timestamp)

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write("s3fault %s - %s\n" % (self.address_string(), format % args))

    # bounded request line and header block
    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline = ""
                self.request_version = "HTTP/1.1"
                self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            self._date_offset = 0.0
            self._fault = None
            if not self.parse_request():
                return
            mname = "do_" + self.command
            if not hasattr(self, mname):
                self.send_error(501, "Unsupported method (%r)" % self.command)
                return
            getattr(self, mname)()
            if not self.wfile.closed:  # a reset closes it
                self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
        except (ConnectionError, OSError):
            self.close_connection = True

    def parse_request(self):
        real = self.rfile
        self.rfile = CappedReader(real, MAX_HEADER_BYTES)
        try:
            return super().parse_request()
        finally:
            self.rfile = real

    def do_GET(self):
        self._handle()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # ------------------------------------------------------------------ plumbing
    def _request_ids(self):
        return [("x-amz-request-id", uuid.uuid4().hex[:16].upper()),
                ("x-amz-id-2", self.server.host_id)]

    def _send(self, status, headers, body=b"", account=None, count=True):
        """Send one response; applies a pending body fault; never raises on I/O errors."""
        srv = self.server
        fault, self._fault = self._fault, None
        head = self.command == "HEAD"
        length = body.length if isinstance(body, FileBody) else len(body)
        todo = 0 if (head or status in (204, 304)) else length
        try:
            if fault is not None and not fault.send_headers:
                if fault.action == "stall":
                    self._sleep(fault.seconds)
                    if fault.then == "continue":
                        fault = None
                    else:
                        srv.stats.response("aborted")
                        self._abort("reset" if fault.then == "reset" else "close")
                        return
                else:
                    srv.stats.response("aborted")
                    self._abort("reset" if fault.action == "reset" else "close")
                    return
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if status != 304:
                self.send_header("Content-Length", str(length))
            if fault is None and todo == 0:
                self._end_inflight()  # the headers are the whole answer
            self.end_headers()
            if count:
                srv.stats.response(status)
            if fault is None:
                self._write_body(body, 0, todo, account)
                return
            if fault.after_bytes is None:
                n = todo // 2
            else:
                n = fault.after_bytes
            n = max(0, min(n, todo - 1)) if todo > 0 else 0
            self._write_body(body, 0, n, account, last=False)
            if fault.action == "reset":
                self._abort("reset")
            elif fault.action == "truncate":
                self._abort("close")
            else:  # stall
                self._sleep(fault.seconds)
                if fault.then == "continue":
                    self._write_body(body, n, todo - n, account)
                else:
                    self._abort("reset" if fault.then == "reset" else "close")
        except OSError:
            self.close_connection = True

    def _end_inflight(self):
        """The request stops counting as in flight: once, just before the last write of
        its response (so that a client, which cannot have the whole answer before that
        write, never seems to overlap it with the request it sends next)."""
        if getattr(self, "_inflight", False):
            self._inflight = False
            self.server.stats.end_request()

    def _write_body(self, body, off, count, account, last=True):
        if count <= 0:
            return
        srv = self.server
        sock = self.connection
        self.wfile.flush()
        if isinstance(body, FileBody):
            pos = body.offset + off
            end = pos + count
            if srv.bandwidth is None:
                while pos < end:
                    n = min(8 * SEND_CHUNK, end - pos)
                    if last and pos + n >= end:
                        self._end_inflight()
                    sent = sock.sendfile(body.fobj, pos, n)
                    if sent <= 0:
                        raise ConnectionError("sendfile sent nothing")
                    pos += sent
                    if account:
                        srv.stats.add_bytes(account, sent)
                return
            fd = body.fobj.fileno()
            while pos < end:
                n = min(srv.bw_chunk, end - pos)
                b = os.pread(fd, n, pos)
                if not b:
                    raise ConnectionError("file shrank while it was served")
                srv.bandwidth.consume(len(b), srv.stopping)
                if last and pos + len(b) >= end:
                    self._end_inflight()
                sock.sendall(b)
                pos += len(b)
                if account:
                    srv.stats.add_bytes(account, len(b))
            return
        mv = memoryview(body)[off:off + count]
        step = srv.bw_chunk if srv.bandwidth is not None else SEND_CHUNK
        for i in range(0, len(mv), step):
            piece = mv[i:i + step]
            if srv.bandwidth is not None:
                srv.bandwidth.consume(len(piece), srv.stopping)
            if last and i + step >= len(mv):
                self._end_inflight()
            sock.sendall(piece)
            if account:
                srv.stats.add_bytes(account, len(piece))

    def _sleep(self, seconds):
        if seconds and seconds > 0:
            self.server.stopping.wait(seconds)

    def _unsent(self):
        try:
            import fcntl
            import termios
            buf = fcntl.ioctl(self.connection.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
            return struct.unpack("i", buf)[0]
        except (ImportError, OSError, AttributeError):
            return 0

    def _abort(self, mode):
        """mode "reset": RST (SO_LINGER 0); "close": FIN after what was sent."""
        self.close_connection = True
        sock = self.connection
        try:
            self.wfile.flush()
        except OSError:
            pass
        if mode == "reset":
            deadline = time.monotonic() + 1.0
            while self._unsent() > 0 and time.monotonic() < deadline:
                time.sleep(0.002)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            for f in (self.rfile, self.wfile):
                try:
                    f.close()
                except OSError:
                    pass
            sock.close()
        else:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _error(self, code, status=None, message=None, resource=None, extra=None, headers=None):
        dstatus, dmsg = ERRORS.get(code, (500, "Error"))
        status = status or dstatus
        message = message or dmsg
        ids = self._request_ids()
        parts = [el("Code", code), el("Message", message)]
        for k, v in (extra or {}).items():
            parts.append(el(k, v))
        parts.append(el("Resource", resource if resource is not None else urlsplit(self.path).path))
        parts.append(el("RequestId", ids[0][1]))
        parts.append(el("HostId", ids[1][1]))
        body = xml_doc("<Error>" + "".join(parts) + "</Error>")
        hdrs = [("Content-Type", "application/xml")] + ids + list(headers or [])
        self._send(status, hdrs, body)

    def _xml(self, body):
        self._send(200, [("Content-Type", "application/xml")] + self._request_ids(), xml_doc(body))

    def _discard_body(self):
        """Read and drop a request body so keep-alive stays in step.  False: answered."""
        te = self.headers.get("Transfer-Encoding")
        if te and te.strip().lower() != "identity":
            self.close_connection = True
            return True
        cl = self.headers.get("Content-Length")
        if cl is None:
            return True
        if not DIGITS.match(cl.strip()):
            self.close_connection = True
            self._error("InvalidArgument", message="Bad Content-Length")
            return False
        n = int(cl)
        if n > MAX_DISCARD_BODY:
            self.close_connection = True
            return True
        while n > 0:
            b = self.rfile.read(min(n, 65536))
            if not b:
                self.close_connection = True
                break
            n -= len(b)
        return True

    def _read_control_body(self):
        cl = self.headers.get("Content-Length")
        if cl is None or not DIGITS.match(cl.strip()):
            return b""
        n = int(cl)
        if n > MAX_CONTROL_BODY:
            self.close_connection = True
            raise ValueError("control body too large")
        return self.rfile.read(n)

    # ------------------------------------------------------------------ control
    def _json(self, status, obj):
        body = json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n"
        self._send(status, [("Content-Type", "application/json")], body, count=False)

    def _control(self, path, query):
        srv = self.server
        what = path[len("/__control"):].strip("/")
        m = self.command
        try:
            raw = self._read_control_body() if m in ("POST", "PUT") else b""
            if not (m in ("POST", "PUT")):
                self._discard_body()
        except ValueError as e:
            return self._json(413, {"error": str(e)})
        if what == "stats" and m in ("GET", "HEAD"):
            return self._json(200, srv.stats.snapshot())
        if what == "script" and m in ("GET", "HEAD"):
            return self._json(200, srv.faults.describe())
        if what == "script" and m in ("POST", "PUT"):
            try:
                script = json.loads(raw.decode("utf-8") or "[]")
                srv.faults.load(script)
            except (ValueError, UnicodeDecodeError) as e:
                return self._json(400, {"error": str(e)})
            return self._json(200, {"ok": True, "rules": len(srv.faults.rules)})
        if what == "reset" and m == "POST":
            clear = False
            if raw.strip():
                try:
                    clear = bool(json.loads(raw.decode("utf-8")).get("clear_script", False))
                except (ValueError, AttributeError, UnicodeDecodeError) as e:
                    return self._json(400, {"error": "bad reset body: %s" % e})
            srv.reset_all(clear_script=clear)
            return self._json(200, {"ok": True})
        if what == "requests" and m in ("GET", "HEAD"):
            with srv.log_lock:
                log = list(srv.request_log)
            return self._json(200, {"requests": log})
        if what == "health" and m in ("GET", "HEAD"):
            return self._json(200, {"ok": True, "port": srv.server_address[1]})
        return self._json(404, {"error": "unknown control endpoint %s %s" % (m, path)})

    # ------------------------------------------------------------------ S3
    def _handle(self):
        parts = urlsplit(self.path)
        path = parts.path or "/"
        if path == "/__control" or path.startswith("/__control/"):
            return self._control(path, parts.query)
        if not self._discard_body():
            return
        srv = self.server
        srv.stats.begin_request(self.command)
        self._inflight = True
        swaps_after = []
        bucket = key = None
        try:
            query = parse_qs(parts.query, keep_blank_values=True)
            auth = self.headers.get("Authorization", "")
            alg = (query.get("X-Amz-Algorithm") or [""])[0]
            authed = auth.startswith("AWS4-HMAC-SHA256") or alg == "AWS4-HMAC-SHA256"
            srv.record({"t": round(time.time(), 6), "method": self.command, "path": self.path,
                        "headers": [[k, v] for k, v in self.headers.items()],
                        "auth": ("ok" if authed else "rejected") if srv.require_auth else "unchecked"})
            if srv.require_auth:
                srv.stats.auth(authed)
                if not authed:
                    return self._error("AccessDenied")

            segs = path[1:].split("/", 1)
            bucket = unquote(segs[0]) if segs[0] else None
            key = unquote(segs[1]) if len(segs) > 1 and segs[1] else None
            if bucket is None:
                target = "service"
            elif key is not None:
                target = "object"
            elif self.command == "GET" and not (set(query) & {"location"}):
                target = "list"
            else:
                target = "bucket"

            def size_fn():
                p = srv.object_path(bucket, key) if bucket and key else None
                try:
                    return os.stat(p).st_size if p else None
                except OSError:
                    return None

            ctx = RequestContext(self.command, bucket, key, target, self.headers, size_fn)
            dec = srv.faults.evaluate(ctx)
            if dec.delay:
                self._sleep(dec.delay)
            for r in dec.swaps:
                if key is None:
                    continue
                if r.when == "before":
                    srv.swap_object(bucket, key, r)
                else:
                    swaps_after.append(r)
            t = dec.terminal
            if t is not None:
                a = t.action
                if a in ("slowdown", "throttle"):
                    hdrs = [("Retry-After", "%g" % t.retry_after)] if t.retry_after is not None else []
                    return self._error("SlowDown", headers=hdrs)
                if a == "error500":
                    return self._error("InternalError")
                if a == "error":
                    hdrs = [("Retry-After", "%g" % t.retry_after)] if t.retry_after is not None else []
                    return self._error(t.code, status=t.status, message=t.message, headers=hdrs)
                if a == "expired":
                    return self._error("ExpiredToken", extra={"Token-0": "redacted"})
                if a == "skew":
                    self._date_offset = float(t.offset_seconds)
                    now = time.time() + self._date_offset
                    req_time = self.headers.get("X-Amz-Date") or self.headers.get("Date") or ""
                    return self._error("RequestTimeTooSkewed", extra={
                        "RequestTime": req_time,
                        "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                        "MaxAllowedSkewMilliseconds": 900000})
                if a in BODY_FAULTS:
                    self._fault = t

            # An "after" swap is applied by _object once the old file is open (so this
            # request still gets the old bytes) but before any byte is sent: a client
            # that reads the whole body and asks again must already see the swap.
            self._swaps_after = swaps_after
            if target == "service":
                return self._list_buckets()
            if target == "object":
                return self._object(bucket, key)
            return self._bucket(bucket, query)
        finally:
            self._end_inflight()
            for r in swaps_after:
                srv.swap_object(bucket, key, r)

    def _list_buckets(self):
        if self.command not in ("GET", "HEAD"):
            return self._error("MethodNotAllowed")
        srv = self.server
        out = []
        for name in sorted(os.listdir(srv.root)):
            if srv.bucket_dir(name) is None:
                continue
            try:
                mt = os.stat(os.path.join(srv.root, name)).st_mtime
            except OSError:
                continue
            out.append("<Bucket>%s%s</Bucket>" % (el("Name", name), el("CreationDate", iso_date(mt))))
        self._xml('<ListAllMyBucketsResult xmlns="%s"><Owner>%s%s</Owner><Buckets>%s</Buckets>'
                  "</ListAllMyBucketsResult>" % (S3_NS, el("ID", "s3fault"), el("DisplayName", "s3fault"),
                                                 "".join(out)))

    def _bucket(self, bucket, query):
        srv = self.server
        bdir = srv.bucket_dir(bucket)
        if bdir is None:
            return self._error("NoSuchBucket", extra={"BucketName": bucket})
        if self.command == "HEAD":
            return self._send(200, self._request_ids() + [("x-amz-bucket-region", "us-east-1")])
        if self.command != "GET":
            return self._error("MethodNotAllowed")
        if "location" in query:
            return self._xml('<LocationConstraint xmlns="%s"></LocationConstraint>' % S3_NS)
        unsupported = set(query) & {"acl", "policy", "versioning", "uploads", "versions", "tagging", "cors",
                                    "lifecycle", "website", "logging", "notification", "replication",
                                    "encryption", "object-lock", "accelerate", "requestPayment"}
        if unsupported:
            return self._error("NotImplemented")
        q = {k: v[0] for k, v in query.items()}
        lt = q.get("list-type")
        if lt not in (None, "2"):
            return self._error("InvalidArgument", message="Invalid list type")
        mk = q.get("max-keys", "1000")
        if not DIGITS.match(mk):
            return self._error("InvalidArgument", message="Provided max-keys not an integer or within integer range",
                               extra={"ArgumentName": "max-keys", "ArgumentValue": mk})
        max_keys = min(int(mk), MAX_LIST_KEYS)
        prefix = q.get("prefix", "")
        delim = q.get("delimiter", "")
        enc = q.get("encoding-type")
        if enc not in (None, "url"):
            return self._error("InvalidArgument", message="Invalid Encoding Method specified in Request")
        v2 = lt == "2"
        token = q.get("continuation-token")
        marker = None
        if v2:
            if token is not None:
                try:
                    marker = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
                    if not marker:
                        raise ValueError
                except (ValueError, UnicodeError):
                    return self._error("InvalidArgument", message="The continuation token provided is incorrect",
                                       extra={"ArgumentName": "continuation-token"})
            elif q.get("start-after"):
                marker = q["start-after"]
        elif q.get("marker"):
            marker = q["marker"]

        keys = srv.list_keys(bdir)
        i = bisect.bisect_left(keys, prefix)
        if marker is not None:
            i = max(i, bisect.bisect_right(keys, marker) if not delim else bisect.bisect_left(keys, marker))
        items = []  # (is_prefix, value)
        truncated = False
        for k in keys[i:]:
            if not k.startswith(prefix):
                break
            item, is_cp = k, False
            if delim:
                j = k.find(delim, len(prefix))
                if j >= 0:
                    item, is_cp = k[:j + len(delim)], True
            if marker is not None and item <= marker:
                continue
            if items and items[-1][1] == item:
                continue
            if len(items) >= max_keys:
                truncated = max_keys > 0
                break
            items.append((is_cp, item))

        def enc_v(s):
            return quote(s, safe="/~") if enc == "url" else s

        contents, cps = [], []
        for is_cp, v in items:
            if is_cp:
                cps.append("<CommonPrefixes>%s</CommonPrefixes>" % el("Prefix", enc_v(v)))
                continue
            p = srv.object_path(bucket, v)
            try:
                with open(p, "rb", buffering=0) as f:
                    st = os.fstat(f.fileno())
                    etag = srv.etag_for(f, st)
            except OSError:
                continue
            contents.append("<Contents>%s%s%s%s%s</Contents>" % (
                el("Key", enc_v(v)), el("LastModified", iso_date(st.st_mtime)), el("ETag", '"%s"' % etag),
                el("Size", st.st_size), el("StorageClass", "STANDARD")))
        last = items[-1][1] if items else None
        head = [el("Name", bucket), el("Prefix", enc_v(prefix))]
        if delim:
            head.append(el("Delimiter", enc_v(delim)))
        head.append(el("MaxKeys", max_keys))
        if enc:
            head.append(el("EncodingType", enc))
        head.append(el("IsTruncated", "true" if truncated else "false"))
        if v2:
            head.append(el("KeyCount", len(items)))
            if token is not None:
                head.append(el("ContinuationToken", token))
            if truncated and last is not None:
                head.append(el("NextContinuationToken",
                               base64.urlsafe_b64encode(last.encode("utf-8")).decode("ascii")))
            if q.get("start-after"):
                head.append(el("StartAfter", enc_v(q["start-after"])))
        else:
            head.append(el("Marker", enc_v(q.get("marker", ""))))
            if truncated and last is not None:
                head.append(el("NextMarker", enc_v(last)))
        self._xml('<ListBucketResult xmlns="%s">%s%s%s</ListBucketResult>'
                  % (S3_NS, "".join(head), "".join(contents), "".join(cps)))

    def _object(self, bucket, key):
        srv = self.server
        if self.command not in ("GET", "HEAD"):
            return self._error("MethodNotAllowed")
        if srv.bucket_dir(bucket) is None:
            return self._error("NoSuchBucket", extra={"BucketName": bucket})
        path = srv.object_path(bucket, key)
        fobj = None
        try:
            if path is not None:
                try:
                    fobj = open(path, "rb", buffering=0)
                except OSError:
                    fobj = None
            if fobj is not None:
                st = os.fstat(fobj.fileno())
                if not statmod.S_ISREG(st.st_mode):
                    fobj.close()
                    fobj = None
            if fobj is None:
                return self._error("NoSuchKey", extra={"Key": key})
            size = st.st_size
            etag = srv.etag_for(fobj, st)
            mtime = st.st_mtime
            base = [("ETag", '"%s"' % etag), ("Last-Modified", http_date(mtime))]
            h = self.headers
            im = h.get("If-Match")
            if im is not None and not etag_matches(im, etag):
                return self._error("PreconditionFailed", extra={"Condition": "If-Match"})
            pending, self._swaps_after = getattr(self, "_swaps_after", []), []
            for r in pending:
                srv.swap_object(bucket, key, r)
            del pending[:]
            ius = h.get("If-Unmodified-Since")
            if im is None and ius is not None:
                t = parse_http_date(ius)
                if t is not None and int(mtime) > t:
                    return self._error("PreconditionFailed", extra={"Condition": "If-Unmodified-Since"})
            inm = h.get("If-None-Match")
            if inm is not None and etag_matches(inm, etag):
                return self._send(304, base + self._request_ids())
            ims = h.get("If-Modified-Since")
            if inm is None and ims is not None:
                t = parse_http_date(ims)
                if t is not None and int(mtime) <= t:
                    return self._send(304, base + self._request_ids())
            hdrs = base + [("Accept-Ranges", "bytes"), ("Content-Type", "binary/octet-stream")] + self._request_ids()
            rh = h.get("Range")
            rng = parse_range(rh, size) if rh is not None else None
            if rng == "unsat":
                return self._error("InvalidRange", extra={"RangeRequested": rh, "ActualObjectSize": size},
                                   headers=[("Content-Range", "bytes */%d" % size)])
            if rng is None:
                return self._send(200, hdrs, FileBody(fobj, 0, size), account="%s/%s" % (bucket, key))
            start, end = rng
            hdrs.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
            return self._send(206, hdrs, FileBody(fobj, start, end - start + 1), account="%s/%s" % (bucket, key))
        finally:
            if fobj is not None:
                fobj.close()


# --------------------------------------------------------------------------- CLI

def write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="S3-compatible endpoint with fault injection (127.0.0.1 only).")
    ap.add_argument("--root", required=True, help="directory: ROOT/BUCKET/KEY")
    ap.add_argument("--port", type=int, default=0, help="0: pick a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically)")
    ap.add_argument("--script", help="JSON fault script")
    ap.add_argument("--require-auth", action="store_true", help="403 without AWS4-HMAC-SHA256 Authorization")
    ap.add_argument("--bandwidth", type=int, default=0, help="global body bandwidth cap, bytes/s")
    ap.add_argument("--etag", choices=("md5", "stat"), default="md5")
    ap.add_argument("--max-connections", type=int, default=512)
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--tls-cert", help="serve https with this PEM certificate (and --tls-key)")
    ap.add_argument("--tls-key", help="the certificate's PEM private key")
    a = ap.parse_args(argv)
    script = None
    if a.script:
        try:
            with open(a.script) as f:
                script = json.load(f)
            parse_script(script)
        except (OSError, ValueError) as e:
            sys.stderr.write("s3fault: bad --script %s: %s\n" % (a.script, e))
            return 2
    if a.bandwidth < 0 or a.max_connections < 1 or a.idle_timeout <= 0 or not (0 <= a.port < 65536):
        sys.stderr.write("s3fault: bad numeric option\n")
        return 2
    try:
        srv = S3FaultServer(a.root, port=a.port, script=script, require_auth=a.require_auth,
                            bandwidth=a.bandwidth or None, etag_mode=a.etag,
                            max_connections=a.max_connections, idle_timeout=a.idle_timeout, verbose=a.verbose)
        if a.tls_cert:
            # The handshake happens at accept; a client that refuses the certificate
            # makes accept fail, which socketserver ignores, and the server goes on.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(a.tls_cert, a.tls_key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    except (OSError, ValueError) as e:
        sys.stderr.write("s3fault: %s\n" % e)
        return 2
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    if a.port_file:
        write_port_file(a.port_file, port)
    if a.verbose:
        sys.stderr.write("s3fault: serving %s on http://%s:%d\n" % (srv.root, HOST, port))
    while not stop.wait(0.5):
        pass
    srv.stopping.set()
    srv.shutdown()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
