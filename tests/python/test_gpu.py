"""The package on a real GPU (skipped where torch sees none; tests/gpu/run.sh runs them on
the GPU machine): device="cuda:0" through each copy path gives every tensor on the device,
equal to what safetensors.torch gives on the CPU; held device tensors survive the stream;
errors name the device."""

from __future__ import annotations

import gc
import os

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device (tests/gpu/run.sh runs these on a GPU machine)",
                allow_module_level=True)

import modelstream  # noqa: E402
from modelstream import SafetensorsStreamer  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint safetensors.torch writes: bf16, fp16, fp32, int64 and float8 tensors,
    some large (several ring slots), some tiny, one empty."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(21)
    tensors = {"embed": torch.randn(4096, 1024, generator=g).bfloat16(),
               "empty": torch.empty(0, 8, dtype=torch.float16),
               "ids": torch.randint(0, 1 << 40, (777,), generator=g)}
    for i in range(40):
        tensors[f"layers.{i}.w"] = torch.randn(512, 96 + i, generator=g).half()
        tensors[f"layers.{i}.norm"] = torch.randn(96 + i, generator=g)
        if hasattr(torch, "float8_e4m3fn"):
            tensors[f"layers.{i}.q"] = torch.randn(64, 64, generator=g).to(torch.float8_e4m3fn)
    path = str(tmp_path_factory.mktemp("gpu") / "model.safetensors")
    save_file(tensors, path)
    return path


def same(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and \
        torch.equal(a.reshape(-1).view(torch.uint8).cpu(), b.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize("deliver", ["copy", "mapped"])
def test_every_tensor_on_the_device_equals_safetensors(checkpoint, deliver, monkeypatch):
    from safetensors.torch import load_file
    monkeypatch.setenv("MODELSTREAM_DELIVER", deliver)
    want = load_file(checkpoint)
    with SafetensorsStreamer() as s:
        s.stream_file(checkpoint, device="cuda:0")
        got = list(s.get_tensors())
        stats = s.stats()
    assert [n for n, _ in got] == [m.name for m in s.files_to_tensors_metadata[0]]
    for name, t in got:
        assert t.device == torch.device("cuda:0"), name
        assert same(t, want[name]), name
    assert stats["device"] == 0 and stats["bytes_to_device"] == s.total_size


def test_held_device_tensors_outlive_the_stream_and_the_ring(checkpoint, monkeypatch):
    """A small staging ring, every tensor held: the ring's slots are reused once each copy
    has completed, and no held device tensor changes."""
    from safetensors.torch import load_file
    monkeypatch.setenv("RUNAI_STREAMER_MEMORY_LIMIT", str(16 << 20))
    want = load_file(checkpoint)
    with SafetensorsStreamer() as s:
        s.stream_file(checkpoint, device="cuda:0")
        held = dict(s.get_tensors())
    gc.collect()
    torch.cuda.synchronize()
    for name, t in held.items():
        assert same(t, want[name]), name


def test_a_device_that_is_not_there_is_named(checkpoint):
    n = torch.cuda.device_count()
    with SafetensorsStreamer() as s:
        with pytest.raises(modelstream.NoDeviceError, match=f"cuda:{n}: no such device"):
            s.stream_file(checkpoint, device=f"cuda:{n}")


def test_the_vllm_weights_iterator_on_the_device(checkpoint):
    from safetensors.torch import load_file
    from modelstream import vllm_loader
    want = load_file(checkpoint)
    got = dict(vllm_loader.weights_iterator([checkpoint], device="cuda:0"))
    assert set(got) == set(want)
    for name, t in got.items():
        assert same(t, want[name]), name


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([os.path.abspath(__file__), "-q"]))
