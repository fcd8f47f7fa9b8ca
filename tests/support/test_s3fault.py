#!/usr/bin/env python3
"""Self-test of tests/support/s3fault.py: starts the server (as the CLI does) on free
ports in a temporary directory and checks its S3 behaviour and every fault kind with
botocore/boto3 and raw http.client.  Prints "N passed, M failed" last; exit 1 on failure.

    python3 tests/support/test_s3fault.py [-v] [TestName ...]
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import xml.etree.ElementTree as ET

# Traffic goes to 127.0.0.1 only: no proxies, no instance-metadata lookups.
for _v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_v, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402
from botocore.config import Config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "s3fault.py")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MiB = 1 << 20


class Server:
    def __init__(self, root, *args):
        self.tmp = tempfile.mkdtemp(prefix="s3fault-port-")
        self.port_file = os.path.join(self.tmp, "port")
        self.stderr = open(os.path.join(self.tmp, "stderr"), "w+")
        self.proc = subprocess.Popen([sys.executable, SERVER, "--root", root, "--port", "0",
                                      "--port-file", self.port_file] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + 15
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stderr.seek(0)
                raise RuntimeError("s3fault did not start: " + self.stderr.read())
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        self.url = "http://127.0.0.1:%d" % self.port

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def control(self, method, what, body=None):
        c = self.conn()
        data = None if body is None else json.dumps(body).encode()
        c.request(method, "/__control/" + what, body=data,
                  headers={"Content-Type": "application/json"} if data is not None else {})
        r = c.getresponse()
        out = json.loads(r.read())
        c.close()
        return r.status, out

    def script(self, rules, seed=0):
        st, out = self.control("POST", "script", {"seed": seed, "rules": rules})
        assert st == 200, out
        st, _ = self.control("POST", "reset")
        assert st == 200

    def stats(self):
        return self.control("GET", "stats")[1]

    def stop(self):
        """SIGTERM; returns the exit status.  self.log keeps what the server wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        else:
            rc = self.proc.returncode
        self.stderr.seek(0)
        self.log = self.stderr.read()
        self.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc


def s3client(port, attempts=1, read_timeout=10):
    cfg = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": attempts, "mode": "standard"},
                 read_timeout=read_timeout, connect_timeout=5, signature_version="s3v4", proxies={})
    return boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:%d" % port, region_name="us-east-1",
        aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", config=cfg)


def raw_get(srv, path, headers=None, method="GET", timeout=10):
    c = srv.conn(timeout)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def error_code(body):
    return ET.fromstring(body).findtext("Code")


ROOT = None
MAIN = None
DATA = None       # 1 MiB + 17 bytes of pseudo-random content: bkt/data.bin
BIG = None        # 4 MiB: bkt/big.bin


def setUpModule():
    global ROOT, MAIN, DATA, BIG
    ROOT = tempfile.mkdtemp(prefix="s3fault-root-")
    b = os.path.join(ROOT, "bkt")
    os.makedirs(os.path.join(b, "dir", "sub"))
    DATA = hashlib.sha256(b"seed").digest() * ((MiB + 17) // 32 + 1)
    DATA = DATA[:MiB + 17]
    BIG = os.urandom(4 * MiB)
    with open(os.path.join(b, "data.bin"), "wb") as f:
        f.write(DATA)
    with open(os.path.join(b, "big.bin"), "wb") as f:
        f.write(BIG)
    with open(os.path.join(b, "small.txt"), "wb") as f:
        f.write(b"hello world\n")
    open(os.path.join(b, "empty"), "wb").close()
    for name in ("dir/a", "dir/b", "dir/sub/c"):
        with open(os.path.join(b, *name.split("/")), "wb") as f:
            f.write(name.encode())
    m = os.path.join(ROOT, "many")
    os.makedirs(m)
    for i in range(2500):
        with open(os.path.join(m, "k%05d" % i), "wb") as f:
            f.write(b"%d" % i)
    MAIN = Server(ROOT)


def tearDownModule():
    if MAIN is not None:
        MAIN.stop()
    shutil.rmtree(ROOT, ignore_errors=True)


class Base(unittest.TestCase):
    def setUp(self):
        MAIN.script([])

    def assertConnError(self, fn):
        try:
            fn()
        except (ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected) as e:
            return e
        self.fail("no connection error")


class TestBasics(Base):
    def test_get_whole_object_boto(self):
        s3 = s3client(MAIN.port)
        r = s3.get_object(Bucket="bkt", Key="data.bin")
        self.assertEqual(r["Body"].read(), DATA)
        self.assertEqual(r["ETag"], '"%s"' % hashlib.md5(DATA).hexdigest())
        self.assertEqual(r["ContentLength"], len(DATA))
        self.assertIsNotNone(r["LastModified"])

    def test_ranges_raw(self):
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=10-19"})
        self.assertEqual(r.status, 206)
        self.assertEqual(body, DATA[10:20])
        self.assertEqual(r.getheader("Content-Range"), "bytes 10-19/%d" % len(DATA))
        self.assertEqual(r.getheader("Content-Length"), "10")
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=%d-" % (len(DATA) - 5)})
        self.assertEqual((r.status, body), (206, DATA[-5:]))
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=-7"})
        self.assertEqual((r.status, body), (206, DATA[-7:]))
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=100-99999999"})
        self.assertEqual((r.status, body), (206, DATA[100:]))
        self.assertEqual(r.getheader("Content-Range"), "bytes 100-%d/%d" % (len(DATA) - 1, len(DATA)))
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=%d-" % len(DATA)})
        self.assertEqual(r.status, 416)
        self.assertEqual(error_code(body), "InvalidRange")
        self.assertEqual(r.getheader("Content-Range"), "bytes */%d" % len(DATA))
        r, body = raw_get(MAIN, "/bkt/empty", {"Range": "bytes=0-"})
        self.assertEqual(r.status, 416)
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=0-1,5-6"})  # multi: ignored
        self.assertEqual((r.status, len(body)), (200, len(DATA)))

    def test_ranges_boto(self):
        s3 = s3client(MAIN.port)
        r = s3.get_object(Bucket="bkt", Key="data.bin", Range="bytes=1000-2999")
        self.assertEqual(r["Body"].read(), DATA[1000:3000])
        self.assertEqual(r["ContentRange"], "bytes 1000-2999/%d" % len(DATA))
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.get_object(Bucket="bkt", Key="data.bin", Range="bytes=%d-" % (len(DATA) + 1))
        self.assertEqual(cm.exception.response["Error"]["Code"], "InvalidRange")

    def test_head_and_keepalive(self):
        c = MAIN.conn()
        for _ in range(3):
            c.request("HEAD", "/bkt/data.bin")
            r = c.getresponse()
            self.assertEqual(r.read(), b"")
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.getheader("Content-Length")), len(DATA))
            self.assertEqual(r.getheader("ETag"), '"%s"' % hashlib.md5(DATA).hexdigest())
            self.assertTrue(r.getheader("Last-Modified").endswith("GMT"))
            c.request("GET", "/bkt/small.txt")
            r = c.getresponse()
            self.assertEqual(r.read(), b"hello world\n")
            c.request("GET", "/bkt/missing")  # errors keep the connection too
            r = c.getresponse()
            self.assertEqual((r.status, error_code(r.read())), (404, "NoSuchKey"))
        c.close()
        self.assertEqual(MAIN.stats()["connections_total"], 1 + 1)  # + the stats call's
        h = s3client(MAIN.port).head_object(Bucket="bkt", Key="small.txt")
        self.assertEqual(h["ContentLength"], 12)

    def test_if_match(self):
        etag = '"%s"' % hashlib.md5(DATA).hexdigest()
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=0-3", "If-Match": etag})
        self.assertEqual((r.status, body), (206, DATA[:4]))
        r, body = raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=0-3", "If-Match": '"0123"'})
        self.assertEqual(r.status, 412)
        self.assertEqual(error_code(body), "PreconditionFailed")
        self.assertEqual(ET.fromstring(body).findtext("Condition"), "If-Match")
        r, _ = raw_get(MAIN, "/bkt/data.bin", {"If-None-Match": etag})
        self.assertEqual(r.status, 304)
        s3 = s3client(MAIN.port)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.get_object(Bucket="bkt", Key="data.bin", IfMatch='"nope"')
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 412)
        self.assertEqual(cm.exception.response["Error"]["Code"], "PreconditionFailed")

    def test_not_found(self):
        s3 = s3client(MAIN.port)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.get_object(Bucket="bkt", Key="nope")
        self.assertEqual(cm.exception.response["Error"]["Code"], "NoSuchKey")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.get_object(Bucket="nobucket", Key="x")
        self.assertEqual(cm.exception.response["Error"]["Code"], "NoSuchBucket")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.list_objects_v2(Bucket="nobucket")
        self.assertEqual(cm.exception.response["Error"]["Code"], "NoSuchBucket")
        for bad in ("/bkt/../bkt/small.txt", "/bkt/dir", "/bkt/dir//a", "/bkt/%2e%2e/bkt/small.txt"):
            r, body = raw_get(MAIN, bad)
            self.assertEqual(r.status, 404, bad)
        s3.head_bucket(Bucket="bkt")
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        self.assertEqual(names, ["bkt", "many"])

    def test_pagination(self):
        s3 = s3client(MAIN.port)
        pages = list(s3.get_paginator("list_objects_v2").paginate(
            Bucket="many", PaginationConfig={"PageSize": 1000}))
        self.assertEqual([p["KeyCount"] for p in pages], [1000, 1000, 500])
        self.assertEqual([p["IsTruncated"] for p in pages], [True, True, False])
        self.assertIn("NextContinuationToken", pages[0])
        self.assertNotIn("NextContinuationToken", pages[2])
        keys = [o["Key"] for p in pages for o in p["Contents"]]
        self.assertEqual(keys, ["k%05d" % i for i in range(2500)])
        self.assertEqual(pages[0]["Contents"][7]["Size"], 1)
        # raw XML shape, max-keys capped at 1000
        r, body = raw_get(MAIN, "/many?list-type=2&max-keys=5000")
        x = ET.fromstring(body)
        self.assertEqual(x.tag, NS + "ListBucketResult")
        self.assertEqual(x.findtext(NS + "IsTruncated"), "true")
        self.assertEqual(x.findtext(NS + "KeyCount"), "1000")
        self.assertEqual(x.findtext(NS + "MaxKeys"), "1000")
        tok = x.findtext(NS + "NextContinuationToken")
        r, body = raw_get(MAIN, "/many?list-type=2&max-keys=1000&continuation-token=" + tok)
        x = ET.fromstring(body)
        self.assertEqual(x.findtext(NS + "ContinuationToken"), tok)
        self.assertEqual(x.find(NS + "Contents").findtext(NS + "Key"), "k01000")
        # prefix, start-after, delimiter, v1 marker
        r = s3.list_objects_v2(Bucket="many", Prefix="k024", StartAfter="k02450")
        self.assertEqual([o["Key"] for o in r["Contents"]], ["k%05d" % i for i in range(2451, 2500)])
        r = s3.list_objects_v2(Bucket="bkt", Delimiter="/")
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["dir/"])
        self.assertEqual([o["Key"] for o in r["Contents"]], ["big.bin", "data.bin", "empty", "small.txt"])
        r = s3.list_objects_v2(Bucket="bkt", Prefix="dir/", Delimiter="/", MaxKeys=2)
        self.assertEqual([o["Key"] for o in r["Contents"]], ["dir/a", "dir/b"])
        self.assertTrue(r["IsTruncated"])
        r = s3.list_objects_v2(Bucket="bkt", Prefix="dir/", Delimiter="/", MaxKeys=2,
                               ContinuationToken=r["NextContinuationToken"])
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["dir/sub/"])
        self.assertFalse(r["IsTruncated"])
        pages = list(s3.get_paginator("list_objects").paginate(Bucket="many", PaginationConfig={"PageSize": 1000}))
        self.assertEqual([len(p["Contents"]) for p in pages], [1000, 1000, 500])


class TestFaults(Base):
    def test_slowdown(self):
        MAIN.script([{"action": "slowdown", "key": "small.txt", "nth": 1, "retry_after": 2}])
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3client(MAIN.port).get_object(Bucket="bkt", Key="small.txt")
        self.assertEqual(cm.exception.response["Error"]["Code"], "SlowDown")
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"], "2")
        self.assertEqual(MAIN.stats()["faults"], {"slowdown": 1})
        # with retries the client gets through: 2 GETs, 1 fault
        MAIN.script([{"action": "slowdown", "key": "small.txt", "nth": 1}])
        r = s3client(MAIN.port, attempts=3).get_object(Bucket="bkt", Key="small.txt")
        self.assertEqual(r["Body"].read(), b"hello world\n")
        st = MAIN.stats()
        self.assertEqual((st["requests"]["GET"], st["faults"]["slowdown"]), (2, 1))
        self.assertEqual(st["responses"], {"503": 1, "200": 1})

    def test_error500_skew_expired_error(self):
        # a terminal fault hides the request from later rules, so chain them with times
        MAIN.script([{"action": "error500", "times": 1}, {"action": "skew", "times": 1},
                     {"action": "expired", "times": 1},
                     {"action": "error", "times": 1, "status": 502, "code": "BadGateway", "message": "bg"}])
        r, body = raw_get(MAIN, "/bkt/small.txt")
        self.assertEqual((r.status, error_code(body)), (500, "InternalError"))
        r, body = raw_get(MAIN, "/bkt/small.txt", {"X-Amz-Date": "20000101T000000Z"})
        self.assertEqual((r.status, error_code(body)), (403, "RequestTimeTooSkewed"))
        x = ET.fromstring(body)
        self.assertTrue(x.findtext("ServerTime").endswith("Z"))
        self.assertEqual(x.findtext("RequestTime"), "20000101T000000Z")
        r, body = raw_get(MAIN, "/bkt/small.txt")
        self.assertEqual((r.status, error_code(body)), (400, "ExpiredToken"))
        r, body = raw_get(MAIN, "/bkt/small.txt")
        self.assertEqual((r.status, error_code(body)), (502, "BadGateway"))
        r, body = raw_get(MAIN, "/bkt/small.txt")
        self.assertEqual((r.status, body), (200, b"hello world\n"))
        self.assertEqual(MAIN.stats()["faults"], {"error500": 1, "skew": 1, "expired": 1, "error": 1})
        MAIN.script([{"action": "expired"}])
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3client(MAIN.port).get_object(Bucket="bkt", Key="small.txt")
        self.assertEqual(cm.exception.response["Error"]["Code"], "ExpiredToken")

    def test_reset(self):
        MAIN.script([{"action": "reset", "key": "data.bin", "after_bytes": 1000, "times": 1}])
        c = MAIN.conn()
        c.request("GET", "/bkt/data.bin")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        got = bytearray()

        def read_all():
            while True:
                b = r.read1(65536)
                if not b:
                    raise http.client.IncompleteRead(bytes(got))
                got.extend(b)

        e = self.assertConnError(read_all)
        self.assertIsInstance(e, ConnectionResetError)
        self.assertEqual(bytes(got), DATA[:1000])
        c.close()
        # boto3 sees it too (as a read error), and times: 1 lets the next one through
        MAIN.script([{"action": "reset", "key": "data.bin", "after_bytes": 10, "times": 1}])
        s3 = s3client(MAIN.port)
        with self.assertRaises(Exception) as cm:
            s3.get_object(Bucket="bkt", Key="data.bin")["Body"].read()
        self.assertNotIsInstance(cm.exception, botocore.exceptions.ClientError)
        self.assertEqual(s3.get_object(Bucket="bkt", Key="data.bin")["Body"].read(), DATA)
        self.assertEqual(MAIN.stats()["faults"], {"reset": 1})
        # before the status line
        MAIN.script([{"action": "reset", "send_headers": False}])
        c = MAIN.conn()
        c.request("GET", "/bkt/small.txt")
        self.assertConnError(c.getresponse)
        c.close()

    def test_stall(self):
        MAIN.script([{"action": "stall", "key": "data.bin", "after_bytes": 100, "seconds": 2.5, "then": "close"}])
        c = MAIN.conn(timeout=1)
        c.request("GET", "/bkt/data.bin")
        r = c.getresponse()
        self.assertEqual(r.read(100), DATA[:100])
        t0 = time.time()
        with self.assertRaises(TimeoutError):
            r.read(1)
        self.assertLess(time.time() - t0, 2.0)
        c.close()
        # stall then continue: a patient client gets everything
        MAIN.script([{"action": "stall", "key": "small.txt", "after_bytes": 5, "seconds": 0.5}])
        t0 = time.time()
        r, body = raw_get(MAIN, "/bkt/small.txt", timeout=5)
        self.assertEqual(body, b"hello world\n")
        self.assertGreaterEqual(time.time() - t0, 0.45)
        self.assertEqual(MAIN.stats()["faults"], {"stall": 1})

    def test_truncate(self):
        MAIN.script([{"action": "truncate", "key": "data.bin", "after_bytes": 5000}])
        c = MAIN.conn()
        c.request("GET", "/bkt/data.bin", headers={"Range": "bytes=0-9999"})
        r = c.getresponse()
        self.assertEqual(r.getheader("Content-Length"), "10000")
        with self.assertRaises(http.client.IncompleteRead) as cm:
            r.read()
        self.assertEqual(cm.exception.partial, DATA[:5000])
        c.close()
        st = MAIN.stats()
        self.assertEqual(st["faults"], {"truncate": 1})
        self.assertEqual(st["bytes_served"], {"bkt/data.bin": 5000})

    def test_swap(self):
        path = os.path.join(ROOT, "bkt", "swapme")
        orig = b"original content " * 100
        with open(path, "wb") as f:
            f.write(orig)
        old = '"%s"' % hashlib.md5(orig).hexdigest()
        MAIN.script([{"action": "swap", "key": "swapme", "nth": 1}])
        r, body = raw_get(MAIN, "/bkt/swapme", {"Range": "bytes=0-99", "If-Match": old})
        self.assertEqual((r.status, body), (206, orig[:100]))  # served before the swap
        r, body = raw_get(MAIN, "/bkt/swapme", {"Range": "bytes=100-199", "If-Match": old})
        self.assertEqual((r.status, error_code(body)), (412, "PreconditionFailed"))
        new = bytes(b ^ 0xFF for b in orig)
        r, body = raw_get(MAIN, "/bkt/swapme", {"Range": "bytes=100-199"})
        self.assertEqual((r.status, body), (206, new[100:200]))
        self.assertEqual(r.getheader("ETag"), '"%s"' % hashlib.md5(new).hexdigest())
        s3 = s3client(MAIN.port)
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.get_object(Bucket="bkt", Key="swapme", IfMatch=old, Range="bytes=0-9")
        self.assertEqual(cm.exception.response["Error"]["Code"], "PreconditionFailed")
        # explicit data, swapped before serving; temp files never show in listings
        MAIN.script([{"action": "swap", "key": "swapme", "data": "v3", "when": "before", "times": 1}])
        self.assertEqual(s3.get_object(Bucket="bkt", Key="swapme")["Body"].read(), b"v3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]]
        self.assertEqual([k for k in keys if "s3fault" in k], [])
        self.assertEqual(MAIN.stats()["faults"], {"swap": 1})
        os.unlink(path)

    def test_delay_and_matching(self):
        MAIN.script([{"action": "delay", "method": "HEAD", "seconds": 0.4},
                     {"action": "error500", "key": "dir/*", "range_start": [100, None]},
                     {"action": "error500", "key": "data.bin", "ranged": True, "every": 3},
                     {"action": "error500", "key": "small.txt", "headers": {"X-Test": "y*"}}])
        t0 = time.time()
        r, _ = raw_get(MAIN, "/bkt/small.txt", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(time.time() - t0, 0.35)
        self.assertEqual(raw_get(MAIN, "/bkt/dir/a", {"Range": "bytes=0-1"})[0].status, 206)
        self.assertEqual(raw_get(MAIN, "/bkt/dir/a", {"Range": "bytes=100-"})[0].status, 500)
        statuses = [raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=0-0"})[0].status for _ in range(6)]
        self.assertEqual(statuses, [206, 206, 500, 206, 206, 500])
        self.assertEqual(raw_get(MAIN, "/bkt/data.bin")[0].status, 200)  # not ranged
        self.assertEqual(raw_get(MAIN, "/bkt/small.txt", {"X-Test": "yes"})[0].status, 500)
        self.assertEqual(raw_get(MAIN, "/bkt/small.txt", {"X-Test": "no"})[0].status, 200)
        rules = MAIN.control("GET", "script")[1]["rules"]
        self.assertEqual([(r["matched"], r["fired"]) for r in rules], [(1, 1), (1, 1), (6, 2), (1, 1)])

    def test_probability_seeded(self):
        def run():
            MAIN.script([{"action": "error500", "key": "small.txt", "probability": 0.3}], seed=7)
            return [raw_get(MAIN, "/bkt/small.txt")[0].status for _ in range(40)]

        a, b = run(), run()
        self.assertEqual(a, b)
        self.assertTrue(3 <= a.count(500) <= 25, a)

    def test_throttle(self):
        rps = 20
        MAIN.script([{"action": "throttle", "rps": rps}])
        results = []
        lock = threading.Lock()

        def worker():
            c = MAIN.conn()
            mine = []
            for _ in range(30):
                c.request("HEAD", "/bkt/small.txt")
                r = c.getresponse()
                r.read()
                mine.append(r.status)
            c.close()
            with lock:
                results.extend(mine)

        t0 = time.time()
        ts = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.time() - t0
        n503 = results.count(503)
        allowed = rps + rps * elapsed + 2
        self.assertGreater(n503, 0)
        self.assertLessEqual(results.count(200), allowed)
        self.assertEqual(MAIN.stats()["faults"]["throttle"], n503)
        # at a quarter of the rate: no 503 at all
        MAIN.script([{"action": "throttle", "rps": rps}])
        c = MAIN.conn()
        low = []
        for _ in range(8):
            c.request("HEAD", "/bkt/small.txt")
            r = c.getresponse()
            r.read()
            low.append(r.status)
            time.sleep(1.0 / (rps / 4))
        c.close()
        self.assertEqual(low, [200] * 8)
        # boto3 sees SlowDown on the throttled ones
        MAIN.script([{"action": "throttle", "rps": 0.5, "burst": 1}])
        s3 = s3client(MAIN.port)
        s3.head_object(Bucket="bkt", Key="small.txt")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            s3.get_object(Bucket="bkt", Key="small.txt")
        self.assertEqual(cm.exception.response["Error"]["Code"], "SlowDown")


class TestControl(Base):
    def test_stats_reset_and_script(self):
        MAIN.script([{"action": "error500", "method": "HEAD", "times": 1}])
        raw_get(MAIN, "/bkt/small.txt", method="HEAD")
        raw_get(MAIN, "/bkt/small.txt", method="HEAD")
        raw_get(MAIN, "/bkt/data.bin", {"Range": "bytes=0-99"})
        # The server counts a body's bytes once it has sent them all, which can be just
        # after the client has read them: give its thread a moment.
        deadline = time.time() + 2
        st = MAIN.stats()
        while st["bytes_served"] != {"bkt/data.bin": 100} and time.time() < deadline:
            time.sleep(0.02)
            st = MAIN.stats()
        self.assertEqual(st["requests"], {"HEAD": 2, "GET": 1})
        self.assertEqual(st["faults"], {"error500": 1})
        self.assertEqual(st["bytes_served"], {"bkt/data.bin": 100})
        self.assertEqual(st["responses"], {"500": 1, "200": 1, "206": 1})
        self.assertGreaterEqual(st["connections_max"], 1)
        for k in ("connections_total", "connections_current", "inflight_max", "requests_total"):
            self.assertIn(k, st)
        self.assertEqual(MAIN.control("POST", "reset")[0], 200)
        st = MAIN.stats()
        self.assertEqual((st["requests"], st["faults"], st["bytes_served"]), ({}, {}, {}))
        # reset restarts the rule's counters; its times allows one more fault
        self.assertEqual(raw_get(MAIN, "/bkt/small.txt", method="HEAD")[0].status, 500)
        # bad scripts are refused and leave the old one in place
        for bad in ([{"action": "explode"}], [{"action": "reset", "afterbytes": 3}], {"rules": 3},
                    [{"action": "slowdown", "nth": 0}], [{"action": "throttle"}]):
            st, out = MAIN.control("POST", "script", bad)
            self.assertEqual(st, 400, bad)
            self.assertIn("error", out)
        self.assertEqual(len(MAIN.control("GET", "script")[1]["rules"]), 1)
        self.assertEqual(MAIN.control("POST", "reset", {"clear_script": True})[0], 200)
        self.assertEqual(MAIN.control("GET", "script")[1]["rules"], [])
        self.assertEqual(MAIN.control("GET", "health")[1]["port"], MAIN.port)
        log = MAIN.control("GET", "requests")[1]["requests"]
        self.assertEqual(log, [])

    def test_concurrency_stat(self):
        MAIN.script([{"action": "delay", "seconds": 0.5}])
        ts = [threading.Thread(target=raw_get, args=(MAIN, "/bkt/small.txt")) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        st = MAIN.stats()
        self.assertGreaterEqual(st["connections_max"], 6)
        self.assertGreaterEqual(st["inflight_max"], 6)

    def test_limits(self):
        c = MAIN.conn()
        c.putrequest("GET", "/bkt/" + "x" * 10000)
        c.endheaders()
        self.assertEqual(c.getresponse().status, 414)
        c.close()
        c = MAIN.conn()
        c.putrequest("GET", "/bkt/small.txt")
        for i in range(40):
            c.putheader("X-Pad-%d" % i, "p" * 2000)
        c.endheaders()
        self.assertEqual(c.getresponse().status, 431)
        c.close()
        r, body = raw_get(MAIN, "/bkt/small.txt", method="DELETE")
        self.assertEqual((r.status, error_code(body)), (405, "MethodNotAllowed"))


class TestAuth(unittest.TestCase):
    def test_require_auth(self):
        srv = Server(ROOT, "--require-auth")
        try:
            r, body = raw_get(srv, "/bkt/small.txt")
            self.assertEqual((r.status, error_code(body)), (403, "AccessDenied"))
            r, body = raw_get(srv, "/bkt/small.txt", {"Authorization": "AWS AKID:sig"})
            self.assertEqual(r.status, 403)
            s3 = s3client(srv.port)
            self.assertEqual(s3.get_object(Bucket="bkt", Key="small.txt")["Body"].read(), b"hello world\n")
            url = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "small.txt"})
            r, body = raw_get(srv, url[len(srv.url):])
            self.assertEqual(r.status, 200)
            st = srv.stats()
            self.assertEqual(st["auth"], {"ok": 2, "rejected": 2})
            log = srv.control("GET", "requests")[1]["requests"]
            self.assertEqual([e["auth"] for e in log], ["rejected", "rejected", "ok", "ok"])
            hdrs = {k.lower(): v for k, v in log[2]["headers"]}
            self.assertTrue(hdrs["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/"))
            self.assertIn("x-amz-date", hdrs)
        finally:
            self.assertEqual(srv.stop(), 0)
            self.assertNotIn("Traceback", srv.log)


class TestBandwidth(unittest.TestCase):
    def test_bandwidth(self):
        script = os.path.join(ROOT, "rules.json")  # also covers --script (not a bucket: a file)
        with open(script, "w") as f:
            json.dump([{"action": "slowdown", "key": "small.txt", "nth": 1}], f)
        srv = Server(ROOT, "--bandwidth", str(2 * MiB), "--script", script)
        try:
            s3 = s3client(srv.port)
            t0 = time.time()
            body = s3.get_object(Bucket="bkt", Key="big.bin")["Body"].read()
            dt = time.time() - t0
            self.assertEqual(body, BIG)
            self.assertTrue(1.5 <= dt <= 4.0, dt)
            # the cap is global: two 1 MiB ranges in parallel still take about 1 s
            out = []
            ts = [threading.Thread(target=lambda a=a: out.append(raw_get(
                srv, "/bkt/big.bin", {"Range": "bytes=%d-%d" % (a, a + MiB - 1)})[1])) for a in (0, 2 * MiB)]
            t0 = time.time()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            dt = time.time() - t0
            self.assertEqual(sorted(len(b) for b in out), [MiB, MiB])
            self.assertTrue(0.7 <= dt <= 2.5, dt)
            with self.assertRaises(botocore.exceptions.ClientError):
                s3.get_object(Bucket="bkt", Key="small.txt")
        finally:
            self.assertEqual(srv.stop(), 0)
            self.assertNotIn("Traceback", srv.log)
            os.unlink(script)




class TestZShutdown(unittest.TestCase):
    """Runs last (classes load in name order): SIGTERM with a keep-alive connection open."""

    def test_sigterm_clean(self):
        global MAIN
        c = MAIN.conn()
        c.request("GET", "/bkt/small.txt")
        c.getresponse().read()  # the connection stays open, its thread waits for more
        t0 = time.time()
        srv, MAIN = MAIN, None
        self.assertEqual(srv.stop(), 0)
        self.assertLess(time.time() - t0, 5)
        c.close()
        self.assertNotIn("Traceback", srv.log)


def main():
    argv = [a for a in sys.argv[1:] if a != "-v"]
    verbosity = 2 if "-v" in sys.argv[1:] else 1
    loader = unittest.TestLoader()
    if argv:
        suite = loader.loadTestsFromNames(argv, sys.modules[__name__])
    else:
        suite = loader.loadTestsFromModule(sys.modules[__name__])
    t0 = time.time()
    res = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stdout).run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    passed = res.testsRun - failed - len(res.skipped)
    sys.stdout.write("(%.1f s)\n" % (time.time() - t0))
    sys.stdout.write("%d passed, %d failed\n" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
