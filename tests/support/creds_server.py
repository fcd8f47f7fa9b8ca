#!/usr/bin/env python3
"""A loopback credentials server for tests/creds_tests.sh (standard library only).

It plays three parts on one 127.0.0.1 port:

  * container credentials (ECS, EKS Pod Identity): GET --container-path, which requires an
    Authorization header equal to --container-token (401 otherwise);
  * EC2 instance metadata, IMDSv2 only: PUT /latest/api/token (with the
    X-aws-ec2-metadata-token-ttl-seconds header) hands out a session token; every GET under
    /latest/meta-data/ without a valid X-aws-ec2-metadata-token gets 401; the role listing
    and the role's credentials follow;
  * a minimal STS that answers AssumeRoleWithWebIdentity at POST --sts-path, recording a
    hash of every web identity token it sees, so that a test can prove that the token file
    is read again on each refresh (moto records no tokens).

Every set of credentials handed out has Expiration = now + --expires-in seconds, and the
access key id comes from --key-id with "{n}" replaced by the fetch number, so a test can
see a refresh happen. GET /__stats returns the fetch counts per part as JSON;
POST /__config with a JSON object changes expires_in, key_id, secret or status (an HTTP
status that every credentials response gets instead, 0 for none) while running.

--blackhole-port-file F also opens a second listening socket that never accepts, and
writes its port to F: connections to it hang, as they do to an unreachable IMDS.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IMDS_ROLES = "/latest/meta-data/iam/security-credentials/"


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.key_id = args.key_id
        self.secret = args.secret
        self.session_token = args.session_token
        self.expires_in = args.expires_in
        self.status = 0
        if args.creds_file:
            with open(args.creds_file) as f:
                data = json.load(f)
            self.key_id = data.get("AccessKeyId", self.key_id)
            self.secret = data.get("SecretAccessKey", self.secret)
            self.session_token = data.get("Token", self.session_token)
        self.container_path = args.container_path
        self.container_token = args.container_token
        self.imds_role = args.imds_role
        self.sts_path = args.sts_path
        self.imds_tokens = set()
        self.stats = {"container": 0, "container_rejected": 0, "imds_token": 0,
                      "imds_roles": 0, "imds": 0, "imds_rejected": 0, "sts": 0,
                      "sts_tokens": []}

    def credentials(self, part):
        with self.lock:
            self.stats[part] += 1
            n = self.stats[part]
            expiration = datetime.now(timezone.utc) + timedelta(seconds=self.expires_in)
            return {
                "AccessKeyId": self.key_id.replace("{n}", "%04d" % n),
                "SecretAccessKey": self.secret,
                "Token": self.session_token,
                "Expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "creds_server/1"

    def log_message(self, fmt, *args):  # quiet: tests read stdout
        pass

    @property
    def state(self):
        return self.server.state

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        s = self.state
        path = self.path.split("?", 1)[0]
        if path == "/__stats":
            with s.lock:
                return self.reply(200, json.dumps(s.stats))
        if path == s.container_path:
            if s.container_token is not None and \
                    self.headers.get("Authorization") != s.container_token:
                with s.lock:
                    s.stats["container_rejected"] += 1
                return self.reply(401, '{"code":"Unauthorized","message":"bad token"}')
            if s.status:
                return self.reply(s.status, '{"code":"Failure"}')
            return self.reply(200, json.dumps(s.credentials("container")))
        if path.startswith("/latest/meta-data/"):
            if self.headers.get("X-aws-ec2-metadata-token") not in s.imds_tokens:
                with s.lock:
                    s.stats["imds_rejected"] += 1
                return self.reply(401, "", "text/plain")
            if path == IMDS_ROLES:
                with s.lock:
                    s.stats["imds_roles"] += 1
                return self.reply(200, s.imds_role + "\n", "text/plain")
            if path == IMDS_ROLES + s.imds_role:
                if s.status:
                    return self.reply(s.status, "", "text/plain")
                creds = s.credentials("imds")
                creds.update({"Code": "Success", "Type": "AWS-HMAC",
                              "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                           time.gmtime())})
                return self.reply(200, json.dumps(creds), "text/plain")
        return self.reply(404, "", "text/plain")

    def do_PUT(self):
        s = self.state
        self.body()
        if self.path == "/latest/api/token":
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.reply(400, "", "text/plain")
            token = "imds-token-%d-%f" % (len(s.imds_tokens), time.time())
            with s.lock:
                s.imds_tokens.add(token)
                s.stats["imds_token"] += 1
            return self.reply(200, token, "text/plain")
        return self.reply(404, "", "text/plain")

    def do_POST(self):
        s = self.state
        body = self.body()
        if self.path == "/__config":
            change = json.loads(body or b"{}")
            with s.lock:
                for key in ("expires_in", "key_id", "secret", "status"):
                    if key in change:
                        setattr(s, key, change[key])
            return self.reply(200, "{}")
        if self.path == s.sts_path:
            form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
            if form.get("Action") != ["AssumeRoleWithWebIdentity"] or \
                    "WebIdentityToken" not in form or "RoleArn" not in form:
                return self.reply(400, sts_error("InvalidAction", "unsupported"), "text/xml")
            token = form["WebIdentityToken"][0]
            with s.lock:
                s.stats["sts_tokens"].append(hashlib.sha256(token.encode()).hexdigest()[:16])
            creds = s.credentials("sts")
            return self.reply(200, sts_response(creds, form["RoleArn"][0]), "text/xml")
        return self.reply(404, "", "text/plain")


def sts_error(code, message):
    return ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
            "<Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
            "<RequestId>creds-server</RequestId></ErrorResponse>" % (code, message))


def sts_response(creds, role_arn):
    return ('<AssumeRoleWithWebIdentityResponse '
            'xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey>"
            "<SessionToken>%s</SessionToken><Expiration>%s</Expiration>"
            "</Credentials><AssumedRoleUser><Arn>%s/s</Arn><AssumedRoleId>AROA:s"
            "</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult>"
            "<ResponseMetadata><RequestId>creds-server</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
            % (creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"],
               creds["Expiration"], role_arn))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--container-path", default="/creds")
    ap.add_argument("--container-token", help="the Authorization header required")
    ap.add_argument("--imds-role", default="modelstream-node")
    ap.add_argument("--sts-path", default="/sts")
    ap.add_argument("--key-id", default="ASIACREDSERVER{n}")
    ap.add_argument("--secret", default="creds-server-secret")
    ap.add_argument("--session-token", default="creds-server-session-token")
    ap.add_argument("--creds-file", help="JSON with AccessKeyId, SecretAccessKey, Token")
    ap.add_argument("--expires-in", type=int, default=3600)
    ap.add_argument("--blackhole-port-file")
    args = ap.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args)
    blackhole = None
    if args.blackhole_port_file:
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(1)  # never accepted: connects complete, requests hang
        with open(args.blackhole_port_file + ".tmp", "w") as f:
            f.write(str(blackhole.getsockname()[1]))
        os.replace(args.blackhole_port_file + ".tmp", args.blackhole_port_file)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
