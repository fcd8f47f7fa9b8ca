"""The Python package against the bytes in the files: every tensor's bytes, dtype and shape;
several files, directories and S3 prefixes; memory limits that never corrupt a held
tensor; errors as exceptions with the library's message; list_safetensors, pull_files."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import modelstream
from modelstream import SafetensorsStreamer
from conftest import read_reference

try:
    import torch
except ImportError:
    torch = None


def as_bytes(t) -> bytes:
    if torch is not None and isinstance(t, torch.Tensor):
        return t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
    return np.ascontiguousarray(t).tobytes()


def dtype_name(t) -> str:
    return str(t.dtype)


def in_file_order(path: str) -> list:
    """[(name, dtype, shape, bytes)] of the file, by data offset."""
    ref = read_reference(path)
    return [(n, *ref[n]) for n in sorted(ref, key=lambda n: ref[n][3])]


def check_all(got, paths) -> None:
    """`got` (pairs, or a dict when names are unique) against the files, in file order."""
    pairs = list(got.items()) if isinstance(got, dict) else list(got)
    want = [w for p in paths for w in in_file_order(p)]
    assert [n for n, _ in pairs] == [w[0] for w in want]
    for (name, t), (_, dtype, shape, data, _) in zip(pairs, want):
        assert as_bytes(t) == data, name
        if dtype not in ("F4", "F6_E2M3", "F6_E3M2"):
            assert tuple(t.shape) == shape, name


def test_every_tensor_equals_the_file(models):
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        got = dict(s.get_tensors())
    check_all(got, [models["small"]])
    assert len(got) == 302


def test_tensors_come_in_file_order(models):
    ref = read_reference(models["small"])
    with open(models["small"], "rb") as f:
        import json
        import struct
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    order = sorted((m["data_offsets"][0], k) for k, m in header.items() if k != "__metadata__")
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        names = [name for name, _ in s.get_tensors()]
    assert names == [k for _, k in order]
    assert len(ref) == len(names)


def test_tensor_metadata_as_runai_lists_it_even_after_the_stream(models):
    ref = read_reference(models["small"])
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        sum(1 for _ in s.get_tensors())
    meta = s.files_to_tensors_metadata  # read only now: still there, as with Run:ai
    assert list(meta) == [0]
    assert [m.name for m in meta[0]] == [n for n, _, _, _, _ in in_file_order(models["small"])]
    for m in meta[0]:
        dtype, shape, data, offset = ref[m.name]
        assert (m.dtype, tuple(m.shape), m.offsets.start, m.get_bytesize()) == \
            (dtype, shape, offset, len(data)), m.name
    assert s.total_size == sum(len(v[2]) for v in ref.values())


def test_several_files_and_a_directory(models):
    with SafetensorsStreamer() as s:
        s.stream_files([models["small"], models["other"]])
        got = list(s.get_tensors())
        assert sorted(s.files_to_tensors_metadata) == [0, 1]
        assert s.total_size == sum(len(v[2]) for v in read_reference(models["small"]).values()) \
            + sum(len(v[2]) for v in read_reference(models["other"]).values())
    check_all(got, [models["small"], models["other"]])
    with SafetensorsStreamer() as s:
        s.stream_file(models["dir"])  # a model directory: its *.safetensors in name order
        check_all(s.get_tensors(), [models["other"], models["small"],
                                    models["torchable"]])  # name order


def test_tensor_names_select(models):
    ref = read_reference(models["small"])
    pick = sorted(ref)[:5]
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"], tensor_names=pick)
        got = dict(s.get_tensors())
    assert sorted(got) == pick
    with SafetensorsStreamer() as s, pytest.raises(ValueError, match="not found in checkpoint"):
        s.stream_file(models["small"], tensor_names=["no.such.tensor"])


def test_tensors_outlive_the_streamer(models):
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        got = dict(s.get_tensors())
    del s
    gc.collect()
    check_all(got, [models["small"]])


def test_held_tensors_are_never_overwritten_under_a_memory_limit(models, monkeypatch):
    monkeypatch.setenv("RUNAI_STREAMER_MEMORY_LIMIT", str(2 << 20))
    ref = read_reference(models["small"])
    held = {}
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        with pytest.raises(modelstream.MemoryLimitError, match="memory limit"):
            for name, t in s.get_tensors():
                held[name] = t  # never dropped: the ring fills up
    assert held, "some tensors came before the limit"
    for name, t in held.items():
        assert as_bytes(t) == ref[name][2], f"{name} was overwritten while held"


def test_dropping_tensors_lets_a_small_ring_stream_everything(models, monkeypatch):
    monkeypatch.setenv("RUNAI_STREAMER_MEMORY_LIMIT", "0")  # the largest tensor
    ref = read_reference(models["small"])
    n = 0
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        for name, t in s.get_tensors():
            assert as_bytes(t) == ref[name][2]
            n += 1
            del t
    assert n == len(ref)


def test_errors_carry_the_librarys_message(models, tmp_path):
    missing = str(tmp_path / "nope.safetensors")
    with SafetensorsStreamer() as s:
        with pytest.raises(FileNotFoundError, match="nope.safetensors"):
            s.stream_file(missing)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    with SafetensorsStreamer() as s:
        with pytest.raises(modelstream.FormatError, match="bad.safetensors") as e:
            s.stream_file(str(bad))
    assert isinstance(e.value, ValueError) and e.value.code == -7
    for call in (lambda: modelstream.list_safetensors("az://c/llama/"),
                 lambda: SafetensorsStreamer().stream_file("az://c/llama/a.safetensors")):
        with pytest.raises(modelstream.UnsupportedError,
                           match="no back end reads az:// locations") as e:
            call()
        assert isinstance(e.value, ValueError)
    with SafetensorsStreamer() as s:
        with pytest.raises(modelstream.InvalidArgumentError, match="is not a device"):
            s.stream_file(models["small"], device="tpu:0")
    # In a child: a process loads its driver once, and another test may have loaded one.
    import subprocess
    import sys
    code = ("import modelstream, sys\n"
            "try:\n"
            "    modelstream.SafetensorsStreamer().stream_file(sys.argv[1], device='cuda:0')\n"
            "except modelstream.NoDeviceError as e:\n"
            "    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code, models["small"]], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, MODELSTREAM_CUDA_DRIVER="/nonexistent/libcuda.so.1"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == \
        "NoDeviceError cuda:0: no NVIDIA driver: /nonexistent/libcuda.so.1 not found"


def test_a_bad_setting_is_an_error(models, monkeypatch):
    monkeypatch.setenv("RUNAI_STREAMER_CONCURRENCY", "lots")
    with SafetensorsStreamer() as s:
        with pytest.raises(modelstream.InvalidArgumentError, match="RUNAI_STREAMER_CONCURRENCY"):
            s.stream_file(models["small"])


def test_s3(models, s3):
    with SafetensorsStreamer() as s:
        s.stream_file(s3 + "small.safetensors")
        got = dict(s.get_tensors())
    check_all(got, [models["small"]])
    with SafetensorsStreamer() as s:
        s.stream_files([s3, models["other"]])  # a prefix and a local file, mixed
        assert sum(1 for _ in s.get_tensors()) == 302 + 51 + 51


def test_list_safetensors(models, s3):
    assert modelstream.list_safetensors(models["dir"]) == sorted(
        os.path.join(models["dir"], f)
        for f in ("other.safetensors", "small.safetensors", "torchable.safetensors"))
    assert modelstream.list_safetensors(s3) == [s3 + "other.safetensors",
                                                s3 + "small.safetensors"]


def test_pull_files(s3, tmp_path):
    modelstream.pull_files(s3, str(tmp_path), ignore_pattern=["*.safetensors"])
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == \
        ["config.json", "tok/tokenizer.json"]
    assert (tmp_path / "config.json").read_bytes() == b'{"a": 1}'
    with pytest.raises(FileNotFoundError):
        modelstream.pull_files("s3://no-such-bucket/x/", str(tmp_path))


CTRL_C_SCRIPT = r"""
import sys, time
from modelstream import SafetensorsStreamer
with SafetensorsStreamer() as s:
    s.stream_file(sys.argv[1])
    print("streaming", flush=True)
    try:
        for name, t in s.get_tensors():
            pass
    except KeyboardInterrupt:
        print("interrupted %.2f" % time.monotonic(), flush=True)
        raise SystemExit(130)
print("finished", flush=True)
"""


def test_ctrl_c_cancels_a_stream(models, tmp_path):
    """A slow store (s3fault at 300 KB/s); SIGINT once tensors are flowing: the stream
    stops within a second with KeyboardInterrupt instead of finishing the download."""
    import signal
    import subprocess
    import sys
    import time
    from conftest import REPO
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    os.symlink(models["other"], root / "models" / "other.safetensors")
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "support", "s3fault.py"),
                               "--root", str(root), "--port", "0", "--port-file", str(port_file),
                               "--bandwidth", "300000"])
    try:
        for _ in range(100):
            if port_file.exists():
                break
            time.sleep(0.1)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
                   AWS_REGION="us-east-1",
                   AWS_ENDPOINT_URL=f"http://127.0.0.1:{port_file.read_text().strip()}")
        child = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT,
                                  "s3://models/other.safetensors"], env=env,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "streaming"
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().split()
        assert child.wait(timeout=10) == 130, "the child said: " + " ".join(line)
        assert line[0] == "interrupted" and float(line[1]) - sent < 1.0, line
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_real_checkpoint_equals_what_safetensors_gives(minilm):
    """all-MiniLM-L6-v2: every tensor's bytes, dtype and shape as the safetensors package
    loads them."""
    from safetensors.numpy import load_file
    want = load_file(minilm)
    with SafetensorsStreamer() as s:
        s.stream_file(minilm)
        got = dict(s.get_tensors())
    assert sorted(got) == sorted(want) and len(got) > 50
    for name, t in got.items():
        w = want[name]
        a = t.numpy() if torch is not None else t
        assert a.dtype == w.dtype and a.shape == w.shape and a.tobytes() == w.tobytes(), name


def test_mapped_delivery_gives_the_files_pages(models, monkeypatch):
    """MODELSTREAM_DELIVER=mapped: zero copy from the page cache, the same bytes; a bad
    value is one error naming it."""
    monkeypatch.setenv("MODELSTREAM_DELIVER", "mapped")
    with SafetensorsStreamer() as s:
        s.stream_file(models["small"])
        got = list(s.get_tensors())
        assert s.stats()["delivery"] == 1  # MS_DELIVER_MAPPED
        assert s.stats()["arena_bytes"] == 0
    check_all(got, [models["small"]])
    monkeypatch.setenv("MODELSTREAM_DELIVER", "sideways")
    with SafetensorsStreamer() as s, pytest.raises(modelstream.InvalidArgumentError,
                                                   match="MODELSTREAM_DELIVER=sideways"):
        s.stream_file(models["small"])


CUDA_CHILD = r"""
import ctypes, json, sys
import torch
import modelstream
from modelstream import _tensors
seen = []

class DeviceOnHost:
    uint8 = torch.uint8

    @staticmethod
    def as_tensor(obj, device):
        iface = obj.__cuda_array_interface__
        assert device == "cuda:0" and iface["version"] == 3 and iface["stream"] is None
        (n,), (ptr, _) = iface["shape"], iface["data"]
        seen.append(ptr)
        return torch.frombuffer(bytearray(ctypes.string_at(ptr, n)), dtype=torch.uint8)

    @staticmethod
    def empty(n, dtype, device):
        return torch.empty(n, dtype=dtype)

_tensors.torch = DeviceOnHost
with modelstream.SafetensorsStreamer() as s:
    s.stream_file(sys.argv[1], device="cuda:0")
    got = [(name, t.contiguous().view(torch.uint8).numpy().tobytes().hex(), list(t.shape))
           for name, t in s.get_tensors()]
    st = s.stats()
print(json.dumps({"tensors": got, "device": st["device"], "bytes": st["bytes_to_device"],
                  "total": s.total_size, "distinct": len(set(seen)), "seen": len(seen)}))
"""


def test_cuda_tensors_carry_the_devices_bytes(models):
    """device="cuda:0" through the GPU sink, on the stand-in driver (BUILD/tests/
    libfakecuda.so, whose device memory is host memory): each tensor torch is handed is
    the __cuda_array_interface__ of the tensor's bytes on the device, which equal the
    file's. torch cannot map device memory on a machine without a GPU, so the child's
    as_tensor reads the interface itself; tests/gpu/run.sh runs the real thing. A child
    process, since a process loads its driver once."""
    import json
    import subprocess
    import sys
    from conftest import BUILD
    fake = os.path.join(BUILD, "tests", "libfakecuda.so")
    if not os.path.exists(fake):
        pytest.skip(f"no stand-in driver at {fake} (make python-tests builds it)")
    if torch is None:
        pytest.skip("device tensors need torch")
    r = subprocess.run([sys.executable, "-c", CUDA_CHILD, models["torchable"]],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, MODELSTREAM_CUDA_DRIVER=fake))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    want = in_file_order(models["torchable"])
    assert [n for n, _, _ in out["tensors"]] == [w[0] for w in want]
    for (name, data, shape), (_, _, wshape, wdata, _) in zip(out["tensors"], want):
        assert bytes.fromhex(data) == wdata and tuple(shape) == wshape, name
    assert out["device"] == 0 and out["bytes"] == out["total"] > 0
    assert out["distinct"] == out["seen"] > 0  # each tensor its own device bytes


NUMPY_CHILD = r"""
import json, sys
sys.modules["torch"] = None  # as if torch were not installed
import numpy as np
import modelstream
out = []
with modelstream.SafetensorsStreamer() as s:
    s.stream_file(sys.argv[1])
    for name, a in s.get_tensors():
        assert isinstance(a, np.ndarray), type(a)
        out.append((name, str(a.dtype), list(a.shape), np.ascontiguousarray(a).tobytes().hex()))
print(json.dumps(out))
"""


def test_numpy_arrays_without_torch(models):
    """Without torch, numpy arrays in each tensor's shape; bf16 and float8 as ml_dtypes'
    types where it is installed, else their raw bits (uint16, uint8)."""
    import json
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", NUMPY_CHILD, models["torchable"]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = in_file_order(models["torchable"])
    assert [g[0] for g in got] == [w[0] for w in want]
    names = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "F16": "float16",
             "I32": "int32", "F32": "float32", "I64": "int64", "F64": "float64",
             "BF16": ("bfloat16", "uint16"), "F8_E4M3": ("float8_e4m3fn", "uint8"),
             "F8_E5M2": ("float8_e5m2", "uint8")}
    for (name, dtype, shape, data), (_, wdtype, wshape, wdata, _) in zip(got, want):
        assert bytes.fromhex(data) == wdata and tuple(shape) == wshape, name
        assert dtype in (names[wdtype] if isinstance(names[wdtype], tuple)
                         else (names[wdtype],)), (name, dtype, wdtype)
