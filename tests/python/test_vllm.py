"""The vLLM side: the calls vLLM's runai_streamer load format makes on a streamer, the
`modelstream` load format's weights iterator and extra config, its plugin entry point, and,
where vLLM is installed, its registration and weights through vLLM's own registry."""

from __future__ import annotations

import gc
import inspect
import json
import os
import subprocess
import sys
import types

import pytest

import modelstream
from modelstream import vllm_loader
from conftest import REPO
from test_streamer import as_bytes, check_all, in_file_order

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A checkpoint directory as vLLM is given one: two shards that safetensors.torch
    writes (distinct names, the dtypes of real weights), their index and a config."""
    from safetensors.torch import save_file
    d = tmp_path_factory.mktemp("vllm-model")
    g = torch.Generator().manual_seed(12)
    weight_map = {}
    for shard in (1, 2):
        tensors = {}
        for layer in range(4 * (shard - 1), 4 * shard):
            for i, (part, dtype) in enumerate((("q_proj", torch.bfloat16),
                                               ("k_proj", torch.float16),
                                               ("norm", torch.float32))):
                shape = (64, 32 + layer) if part != "norm" else (32 + layer,)
                tensors[f"model.layers.{layer}.{part}.weight"] = \
                    torch.randn(shape, generator=g).to(dtype)
        name = f"model-0000{shard}-of-00002.safetensors"
        save_file(tensors, str(d / name))
        weight_map.update({n: name for n in tensors})
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (d / "config.json").write_text("{}")
    return str(d)


def shards(model_dir):
    return [os.path.join(model_dir, f"model-0000{i}-of-00002.safetensors") for i in (1, 2)]


def test_the_calls_vllm_makes_on_a_streamer(model_dir):
    """vLLM's runai_safetensors_weights_iterator (weight_utils.py), step by step: it looks
    for `owned` in stream_files' signature to skip its clone, streams with device= and
    is_distributed=, sums files_to_tensors_metadata for its progress bar, and keeps each
    tensor past the next one (load_weights may hold them)."""
    files = modelstream.list_safetensors(model_dir)
    assert files == shards(model_dir)
    with modelstream.SafetensorsStreamer() as streamer:
        owned = "owned" in inspect.signature(streamer.stream_files).parameters
        assert owned  # so vLLM yields our tensors as they are, without clone()
        streamer.stream_files(files, device="cpu", is_distributed=False, owned=True)
        total = sum(len(m) for m in streamer.files_to_tensors_metadata.values())
        got = [(name, t) for name, t in streamer.get_tensors()]
    assert len(got) == total
    gc.collect()
    check_all(got, files)


def test_the_weights_iterator_of_the_load_format(model_dir):
    files = vllm_loader.prepare_weights(model_dir)
    seen = []

    def progress(it, total):
        seen.append(total)
        return it
    got = list(vllm_loader.weights_iterator(files, "cpu", progress))
    assert seen == [len(got)]
    assert all(isinstance(t, torch.Tensor) for _, t in got)
    check_all(got, files)


def test_the_weights_iterator_over_s3(models, s3):
    files = vllm_loader.prepare_weights(s3)
    assert files == [s3 + "other.safetensors", s3 + "small.safetensors"]
    check_all(list(vllm_loader.weights_iterator(files)), [models["other"], models["small"]])


def test_no_weights_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="Cannot find any safetensors model weights"):
        vllm_loader.prepare_weights(str(tmp_path))
    with pytest.raises(RuntimeError, match="not a directory or a URL"):
        vllm_loader.prepare_weights("org/no-such-repo")
    with pytest.raises(modelstream.UnsupportedError, match="no back end reads az://"):
        vllm_loader.prepare_weights("az://container/llama/")


def test_extra_config_is_checked_before_anything_applies():
    env, device = vllm_loader.parse_extra_config({"concurrency": 8, "memory_limit": -1,
                                                  "distributed": True, "deliver": "mapped"})
    assert env == {"RUNAI_STREAMER_CONCURRENCY": "8", "RUNAI_STREAMER_MEMORY_LIMIT": "-1",
                   "MODELSTREAM_DELIVER": "mapped"}
    assert device == "cpu"
    assert vllm_loader.parse_extra_config(None) == ({}, "cpu")
    for bad, says in (({"concurrency": 0}, "concurrency must be a positive integer"),
                      ({"concurrency": True}, "concurrency must be a positive integer"),
                      ({"memory_limit": -2}, "memory_limit must be an integer >= -1"),
                      ({"deliver": "fast"}, "deliver must be one of"),
                      ({"device": "cuda:1"}, 'device must be "cpu" or "cuda"'),
                      ({"chunk": 1}, r"unknown extra config keys \['chunk'\]")):
        with pytest.raises(ValueError, match=says):
            vllm_loader.parse_extra_config(bad)


def test_when_the_plugin_serves_runai_streamer(monkeypatch):
    import importlib.util
    monkeypatch.delenv("MODELSTREAM_VLLM_RUNAI", raising=False)
    assert vllm_loader.serves_runai_format() == \
        (importlib.util.find_spec("runai_model_streamer") is None)
    for value, want in (("1", True), ("0", False)):
        monkeypatch.setenv("MODELSTREAM_VLLM_RUNAI", value)
        assert vllm_loader.serves_runai_format() is want
    monkeypatch.setenv("MODELSTREAM_VLLM_RUNAI", "yes")
    with pytest.raises(ValueError, match="MODELSTREAM_VLLM_RUNAI=yes: expected 0 or 1"):
        vllm_loader.serves_runai_format()


def test_the_plugin_entry_point_is_installed():
    """What vLLM's load_general_plugins() finds: the installed package's entry point."""
    from importlib.metadata import entry_points
    found = [e for e in entry_points(group="vllm.general_plugins") if e.name == "modelstream"]
    assert [e.value for e in found] == ["modelstream.vllm_loader:register"]
    assert found[0].load() is vllm_loader.register


def test_read_only_pages_raise_no_warning(models):
    """Mapped delivery hands torch read-only pages; the package says nothing about it on
    stderr (pytest's own warning capture would hide that, so a child process runs it)."""
    code = ("import modelstream, sys\n"
            "with modelstream.SafetensorsStreamer() as s:\n"
            "    s.stream_file(sys.argv[1])\n"
            "    n = sum(1 for _ in s.get_tensors())\n"
            "print(n)\n")
    r = subprocess.run([sys.executable, "-W", "default", "-c", code, models["torchable"]],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, MODELSTREAM_DELIVER="mapped"))
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == len(in_file_order(models["torchable"]))
    assert "not writable" not in r.stderr, r.stderr


# ---- with vLLM installed: its registry, its plugin loading, its own iterator ----

def _vllm():
    """vLLM, or a skip where it is not installed; `make vllm-tests` runs in the virtual
    environment that has it and sets MODELSTREAM_NEED_VLLM, so that there a missing vLLM
    fails instead."""
    if os.environ.get("MODELSTREAM_NEED_VLLM"):
        import vllm
        return vllm
    return pytest.importorskip("vllm", reason="vLLM is not installed (make vllm-tests)")


def test_vllm_loads_the_plugin_and_its_registry_gives_our_loader(model_dir):
    _vllm()
    from vllm.config.load import LoadConfig
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    loader = get_model_loader(LoadConfig(load_format="modelstream",
                                         model_loader_extra_config={"concurrency": 4}))
    assert type(loader).__name__ == "ModelStreamLoader"
    config = types.SimpleNamespace(model=model_dir, revision=None, model_weights=None)
    loader.download_model(config)
    got = list(loader.get_all_weights(config, None))
    check_all(got, shards(model_dir))

    class Model:  # what vLLM's models do with the iterator: copy into their parameters
        def load_weights(self, weights):
            self.params = [(name, t.clone()) for name, t in weights]
    m = Model()
    loader.load_weights(m, config)
    check_all(m.params, shards(model_dir))


def test_an_s3_model_through_vllms_own_model_config(model_dir, s3):
    """`vllm serve s3://...` without Run:ai Model Streamer: vLLM's ModelConfig fetches the
    config through the runai_utils functions the plugin provides, and the runai_streamer
    format it insists on for object storage is this loader, streaming the weights."""
    _vllm()
    import boto3
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    from vllm.config import ModelConfig
    from vllm.config.load import LoadConfig
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.transformers_utils import runai_utils
    assert runai_utils.runai_pull_files is modelstream.pull_files
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for f in shards(model_dir):
        client.upload_file(f, "models", "tiny/" + os.path.basename(f))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "num_hidden_layers": 2, "num_key_value_heads": 4, "vocab_size": 256,
              "max_position_embeddings": 128, "torch_dtype": "bfloat16"}
    client.put_object(Bucket="models", Key="tiny/config.json", Body=json.dumps(config))
    mc = ModelConfig(model="s3://models/tiny/", tokenizer="s3://models/tiny/")
    assert mc.model_weights == "s3://models/tiny/"
    assert os.listdir(mc.model) == ["config.json"]  # pulled by our pull_files
    loader = get_model_loader(LoadConfig(load_format="runai_streamer"))
    assert type(loader).__name__ == "ModelStreamLoader"
    check_all(list(loader.get_all_weights(mc, None)), shards(model_dir))


def test_runai_streamer_stays_vllms_when_told(tmp_path):
    _vllm()
    code = ("import modelstream.vllm_loader as v\n"
            "v.register()\n"
            "from vllm.config.load import LoadConfig\n"
            "from vllm.model_executor.model_loader import get_model_loader\n"
            "print(type(get_model_loader(LoadConfig(load_format='runai_streamer'))).__name__,"
            " type(get_model_loader(LoadConfig(load_format='modelstream'))).__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, MODELSTREAM_VLLM_RUNAI="0"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["RunaiModelStreamerLoader", "ModelStreamLoader"]


def test_vllms_own_runai_iterator_runs_on_our_streamer(model_dir, monkeypatch):
    """vLLM's runai_safetensors_weights_iterator, unchanged, with our SafetensorsStreamer
    in place of Run:ai's: the drop-in at vLLM's call site."""
    _vllm()
    from vllm.model_executor.model_loader import weight_utils
    monkeypatch.setattr(weight_utils, "SafetensorsStreamer", modelstream.SafetensorsStreamer)
    got = list(weight_utils.runai_safetensors_weights_iterator(shards(model_dir), False))
    check_all(got, shards(model_dir))


def test_the_readme_names_the_load_format():
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert "--load-format modelstream" in readme
