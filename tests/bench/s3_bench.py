#!/usr/bin/env python3
"""A local S3-compatible endpoint for the benchmark's S3 rows: Debian's nginx on 127.0.0.1.

run_bench.py imports this module; it can also be run by hand to poke at the endpoint:

    python3 tests/bench/s3_bench.py serve bench-data/model.safetensors

starts the server, prints the environment a client needs (AWS_ENDPOINT_URL, keys, ...) and the
s3:// URL, and serves until Ctrl-C.

Why nginx. With `sendfile on` the server never copies a byte into user memory: the kernel moves
page-cache pages into the socket, and on loopback the client's recv() is the only copy of the
data. That makes it the transport limit on this machine, against which a streamer (which must
land every byte in memory of its own) is compared. nginx ignores the SigV4 Authorization and
x-amz-* headers, and answers HEAD (Content-Length, ETag), ranged GETs (206) and If-Match from
the file itself, which is all a read-only S3 client needs. Path-style addressing maps
s3://BUCKET/KEY to http://127.0.0.1:PORT/BUCKET/KEY, where DOCROOT/BUCKET/KEY is a symbolic link
to the file.

Everything nginx writes (pid file, error log, temp paths) lives in a temporary directory that
is removed when the server stops. The server is stopped with SIGTERM (then SIGKILL, workers
included) on exit, on an exception, on Ctrl-C, and if the harness itself dies (PR_SET_PDEATHSIG).
Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import getpass
import grp
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

BENCH_DIR = Path(__file__).resolve().parent
TEMPLATE = BENCH_DIR / "nginx.conf.in"
BUCKET = "models"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0

# Client-side settings that must not leak in from the caller's environment: a proxy would take
# the requests off loopback, a profile or config file could change the endpoint or credentials.
SCRUBBED_ENV = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CA_BUNDLE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "MODELSTREAM_S3_ANONYMOUS",
                "RUNAI_STREAMER_S3_UNSIGNED", "RUNAI_STREAMER_S3_ENDPOINT")


class ServerError(Exception):
    """nginx could not be started."""


def find_nginx() -> Optional[str]:
    """The nginx binary: on PATH (root's PATH has /usr/sbin; a user's may not), else the usual
    install locations."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def object_key(path: Path) -> str:
    """The object key the file is served under: its own name when that needs no URL escaping."""
    name = path.name
    return name if re.fullmatch(r"[A-Za-z0-9._-]+", name) else "model.safetensors"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (nginx binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _set_parent_death_signal() -> None:
    """Runs in the nginx child before exec: SIGTERM it if the harness dies without stopping it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _proc_stat(pid: int) -> Optional[list[str]]:
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


class NginxS3:
    """nginx serving one file as s3://models/KEY on 127.0.0.1. The port is chosen when the object
    is made, so clients' command lines can be built before the server starts."""

    def __init__(self, file: Path, nginx: str, workers: str = "auto",
                 access_log: bool = False):
        self.file = Path(file).resolve()
        self.nginx = nginx
        self.workers = workers
        self.access_log = access_log
        self.key = object_key(self.file)
        self.port = free_port()
        self.prefix: Optional[Path] = None
        self.proc: Optional[subprocess.Popen] = None
        self._workers: dict[int, str] = {}  # pid -> start time, to never signal a reused pid

    # Where clients go -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def s3_url(self) -> str:
        return f"s3://{BUCKET}/{self.key}"

    @property
    def http_url(self) -> str:
        return f"{self.endpoint}/{BUCKET}/{self.key}"

    def client_env(self, base: Optional[dict] = None) -> dict:
        """The environment of an S3 client run against this server: endpoint, static keys,
        region, path-style addressing (automatic for modelstream with a custom endpoint, asked
        for explicitly from Run:ai), no instance-metadata probe, no proxy, no shared files."""
        env = dict(os.environ if base is None else base)
        for name in SCRUBBED_ENV:
            env.pop(name, None)
        unused = str(Path(tempfile.gettempdir()) / "modelstream-bench-no-aws-config")
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": unused,
            "AWS_SHARED_CREDENTIALS_FILE": unused,
            "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        return env

    # Life cycle -------------------------------------------------------------------------------

    def _render(self, prefix: Path) -> Path:
        docroot = prefix / "www"
        (docroot / BUCKET).mkdir(parents=True)
        (prefix / "tmp").mkdir()
        (docroot / BUCKET / self.key).symlink_to(self.file)
        if os.geteuid() == 0:
            # A root master would run its workers as nobody, who may not be able to read the
            # file; run them as the user who owns the benchmark instead.
            user = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            user_line = f"user {user} {group};"
        else:
            user_line = "# not root: the workers run as " + getpass.getuser()
        values = {
            "WORKERS": self.workers,
            "USER": user_line,
            "PREFIX": str(prefix),
            "DOCROOT": str(docroot),
            "PORT": str(self.port),
            "ACCESS_LOG": f"{prefix}/access.log" if self.access_log else "off",
        }
        text = TEMPLATE.read_text(encoding="utf-8")
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        leftover = re.search(r"@[A-Z_]+@", text)
        if leftover:
            raise ServerError(f"{TEMPLATE}: no value for {leftover.group(0)}")
        conf = prefix / "nginx.conf"
        conf.write_text(text, encoding="utf-8")
        return conf

    def _log_tail(self) -> str:
        """The end of what nginx wrote, its last line first (the cause, as a rule)."""
        parts = []
        for name in ("stderr.log", "error.log"):
            with contextlib.suppress(OSError, TypeError):
                parts.append((self.prefix / name).read_text(encoding="utf-8",
                                                             errors="replace")[-1500:])
        text = "\n".join(part.rstrip() for part in parts if part.strip())
        lines = [line for line in text.splitlines() if line.strip()]
        return (lines[-1] + "\n" + text) if lines else "(nothing in its logs)"

    def _head(self) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("HEAD", f"/{BUCKET}/{self.key}")
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        finally:
            conn.close()

    def start(self) -> "NginxS3":
        """Starts nginx and waits until it answers HEAD for the object with the file's size."""
        if self.proc is not None:
            return self
        self.prefix = Path(tempfile.mkdtemp(prefix="modelstream-bench-nginx-"))
        try:
            conf = self._render(self.prefix)
            stderr = open(self.prefix / "stderr.log", "wb")  # pylint: disable=consider-using-with
            with stderr:
                self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                    [self.nginx, "-p", f"{self.prefix}/", "-c", str(conf),
                     "-e", f"{self.prefix}/error.log"],
                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                    start_new_session=True,  # Ctrl-C reaches the harness, which stops nginx
                    preexec_fn=_set_parent_death_signal)
            size = self.file.stat().st_size
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            last = "no answer"
            while True:
                if self.proc.poll() is not None:
                    raise ServerError(f"nginx exited with {self.proc.returncode}: "
                                      + self._log_tail())
                try:
                    status, headers = self._head()
                    if status == 200 and headers.get("content-length") == str(size):
                        if "etag" not in headers or "bytes" not in headers.get(
                                "accept-ranges", ""):
                            raise ServerError("nginx answers HEAD without ETag or "
                                              f"Accept-Ranges: bytes: {headers}")
                        break
                    last = f"HEAD answered {status} {headers}"
                except OSError as error:
                    last = str(error)
                if time.monotonic() > deadline:
                    raise ServerError(f"nginx did not serve {self.http_url} within "
                                      f"{START_TIMEOUT_SECONDS:.0f} s ({last}): "
                                      + self._log_tail())
                time.sleep(0.05)
            self._find_workers()
        except BaseException:
            self.stop()
            raise
        return self

    def _find_workers(self) -> None:
        """Records the master's children (the workers) with their start times."""
        if self.proc is None:
            return
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            fields = _proc_stat(int(entry.name))
            if fields and fields[1] == str(self.proc.pid):
                self._workers[int(entry.name)] = fields[19]

    def cpu_seconds(self) -> Optional[float]:
        """User + system CPU seconds of the master and its workers so far (workers that exited
        are in the master's cutime/cstime). Differences between two calls give a run's share."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self._find_workers()
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        master = _proc_stat(self.proc.pid)
        if master is None:
            return None
        total += sum(int(value) for value in master[11:15])  # utime stime cutime cstime
        for pid, started in list(self._workers.items()):
            fields = _proc_stat(pid)
            if fields is None or fields[19] != started:
                del self._workers[pid]
                continue
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def stop(self) -> None:
        """SIGTERM (nginx's fast shutdown), then SIGKILL for anything left; removes the files."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                self._find_workers()
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait()
            # Workers outlive a master that was killed: end the ones this server started.
            for pid, started in self._workers.items():
                fields = _proc_stat(pid)
                if fields is not None and fields[19] == started:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            self._workers.clear()
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def __enter__(self) -> "NginxS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve FILE as s3://models/KEY until Ctrl-C")
    serve.add_argument("file", type=Path)
    serve.add_argument("--access-log", action="store_true",
                       help="log every request (in the temporary directory; printed on exit)")
    args = parser.parse_args()
    nginx = find_nginx()
    if nginx is None:
        print("s3_bench: nginx not found (scripts/deps.sh bench installs it)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    server = NginxS3(args.file, nginx, access_log=args.access_log)
    try:
        with server:
            env = server.client_env({})
            for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                         "AWS_REGION", "AWS_EC2_METADATA_DISABLED",
                         "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"):
                print(f"export {name}={env[name]}")
            print(f"# {server.s3_url}  ({server.http_url}); Ctrl-C stops the server",
                  flush=True)
            try:
                while server.proc is not None and server.proc.poll() is None:
                    time.sleep(0.5)
            finally:
                if args.access_log and server.prefix is not None:
                    with contextlib.suppress(OSError):
                        sys.stderr.write((server.prefix / "access.log").read_text())
    except KeyboardInterrupt:
        return 130
    except ServerError as error:
        print(f"s3_bench: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
