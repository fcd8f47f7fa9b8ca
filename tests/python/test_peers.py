"""modelstream against the packages it stands in for, with torch: every tensor as
safetensors.torch.load_file gives it (bytes, dtype, shape; bf16 and float8 included), and
one user script, unchanged but for its import, printing the same on Run:ai Model Streamer
and on modelstream. Skipped where torch (or runai-model-streamer) is not installed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from modelstream import SafetensorsStreamer  # noqa: E402


def test_torch_tensors_equal_safetensors_torch(models, minilm):
    from safetensors.torch import load_file
    for path in (models["torchable"], minilm):
        want = load_file(path)
        with SafetensorsStreamer() as s:
            s.stream_file(path)
            got = dict(s.get_tensors())
        assert sorted(got) == sorted(want)
        for name, t in got.items():
            w = want[name]
            assert isinstance(t, torch.Tensor) and t.dtype == w.dtype and t.shape == w.shape, name
            assert t.contiguous().view(torch.uint8).numpy().tobytes() == \
                w.contiguous().view(torch.uint8).numpy().tobytes(), name


USER_SCRIPT = r"""
import hashlib, sys
from PACKAGE import SafetensorsStreamer
with SafetensorsStreamer() as streamer:
    streamer.stream_files(sys.argv[1:])
    for name, tensor in streamer.get_tensors():
        data = tensor.contiguous().view(-1).view(__import__("torch").uint8).numpy().tobytes()
        print(name, str(tensor.dtype), tuple(tensor.shape), hashlib.sha256(data).hexdigest())
"""


def test_one_user_script_runs_unchanged_on_both_packages(models, minilm):
    pytest.importorskip("runai_model_streamer")
    outputs = {}
    for package in ("runai_model_streamer", "modelstream"):
        r = subprocess.run([sys.executable, "-c", USER_SCRIPT.replace("PACKAGE", package),
                            models["torchable"], minilm], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, RUNAI_STREAMER_MEMORY_LIMIT="-1"))
        assert r.returncode == 0, f"{package}: {r.stderr[-800:]}"
        # Run:ai yields the files' tensors interleaved as their reads complete; modelstream
        # in file order. A loader keyed by name sees the same either way.
        outputs[package] = sorted(r.stdout.splitlines())
    assert len(outputs["modelstream"]) > 300
    assert outputs["modelstream"] == outputs["runai_model_streamer"]
