#!/usr/bin/env python3
"""The fleet test's object store: moto's S3 behind a byte counter.

Runs moto's WSGI application (the same one `moto_server` runs) under werkzeug's threaded
server, wrapped in a middleware that counts the body bytes of every answer to an S3 GET,
by client address and object key, so the test can say how many bytes each node took from
the origin. GET /__e2e/stats returns the counters as JSON; POST /__e2e/reset zeroes them.
Nothing else changes: every S3 request reaches moto as it came.

Usage: origin.py --host 10.231.1.1 --port 5000
"""
import argparse
import json
import threading
from collections import defaultdict

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, run_simple


class Counter:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.by_client = defaultdict(int)  # "10.231.0.11" -> bytes
            self.by_key = defaultdict(int)  # "/models/tiny-v1/model.safetensors" -> bytes
            self.gets = defaultdict(int)  # client -> ranged GETs answered

    def stats(self):
        with self.lock:
            return {
                "bytes_by_client": dict(self.by_client),
                "bytes_by_key": dict(self.by_key),
                "gets_by_client": dict(self.gets),
            }

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/__e2e/stats":
            body = json.dumps(self.stats()).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/__e2e/reset" and environ["REQUEST_METHOD"] == "POST":
            self.reset()
            start_response("204 No Content", [])
            return [b""]
        counted = environ["REQUEST_METHOD"] == "GET" and environ.get("QUERY_STRING", "") == ""
        client = environ.get("REMOTE_ADDR", "?")
        result = self.app(environ, start_response)
        if not counted:
            return result
        return self._count(result, client, path)

    def _count(self, result, client, path):
        n = 0
        try:
            for chunk in result:
                n += len(chunk)
                yield chunk
        finally:
            with self.lock:
                self.by_client[client] += n
                self.by_key[path] += n
                self.gets[client] += 1
            close = getattr(result, "close", None)
            if close is not None:
                close()


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args()
    app = Counter(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, request_handler=QuietHandler)


if __name__ == "__main__":
    main()
