"""The `modelstream` load format for vLLM: `vllm serve MODEL --load-format modelstream`.

Installing this package registers it: vLLM calls every `vllm.general_plugins` entry point
in each of its processes, and ours (`register`) adds a model loader for the format. MODEL is
a local directory (the node cache's, say) or a Hugging Face repository id (downloaded by
vLLM's own code first).

vLLM takes an s3:// or gs:// MODEL only with its own format names (runai_streamer among
them), so the same loader also serves `--load-format runai_streamer` where Run:ai Model
Streamer is not installed, or wherever MODELSTREAM_VLLM_RUNAI=1: replacing the
runai-model-streamer package by this one in an image then changes no flag.

`--model-loader-extra-config` takes the keys the runai_streamer format takes, with the
same meaning, and modelstream's own:
  concurrency   (int > 0)   readers per file, as RUNAI_STREAMER_CONCURRENCY
  memory_limit  (int >= -1) bytes of host staging, as RUNAI_STREAMER_MEMORY_LIMIT
  distributed   (bool)      accepted; each rank streams the files itself
  deliver       ("copy", "mapped", "auto")  as MODELSTREAM_DELIVER: "mapped" hands vLLM
                the page cache's or the node cache's pages without a copy
  cache_dir     (str)       as MODELSTREAM_CACHE_DIR: the node cache whose admission
                budget object-storage reads share
  device        ("cpu" or "cuda")  where tensors are streamed; "cuda" streams into the
                current GPU (pinned staging), then vLLM copies each tensor into its
                parameter on the device. It needs device memory for the whole checkpoint
                beside the model's own, so "cpu" is the default.

Unlike runai_streamer, nothing is cloned: every yielded tensor owns its memory (see
streamer.py), so the loader passes `owned` tensors straight to the model's load_weights.

This module imports vLLM only inside `register()`; `weights_iterator` and
`prepare_weights` are the parts vLLM's loader calls, usable (and tested) without vLLM.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from .streamer import SafetensorsStreamer, _is_url, list_safetensors

LOAD_FORMAT = "modelstream"

# extra-config key -> (check, environment variable, how the value is written there)
_EXTRA = {
    "concurrency": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                    "RUNAI_STREAMER_CONCURRENCY", "a positive integer"),
    "memory_limit": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -1,
                     "RUNAI_STREAMER_MEMORY_LIMIT", "an integer >= -1"),
    "deliver": (lambda v: v in ("copy", "mapped", "auto"), "MODELSTREAM_DELIVER",
                'one of "copy", "mapped", "auto"'),
    "cache_dir": (lambda v: isinstance(v, str) and v != "", "MODELSTREAM_CACHE_DIR",
                  "a directory"),
    "distributed": (lambda v: isinstance(v, bool), None, "a bool"),
    "device": (lambda v: v in ("cpu", "cuda"), None, '"cpu" or "cuda"'),
}


def parse_extra_config(extra: Optional[dict]) -> Tuple[Dict[str, str], str]:
    """Checks --model-loader-extra-config: (environment updates, device). Every value is
    checked before any is applied, so a bad key changes nothing. Raises ValueError naming
    the key and what it takes."""
    extra = dict(extra or {})
    unknown = sorted(set(extra) - set(_EXTRA))
    if unknown:
        raise ValueError(f"modelstream load format: unknown extra config keys {unknown}; "
                         f"it takes {sorted(_EXTRA)}")
    env: Dict[str, str] = {}
    for key, value in extra.items():
        ok, var, wanted = _EXTRA[key]
        if not ok(value):
            raise ValueError(f"modelstream load format: {key} must be {wanted}, "
                             f"got {value!r}")
        if var is not None:
            env[var] = str(value)
    return env, extra.get("device", "cpu")


def prepare_weights(model: str, download: Optional[Callable[[str], str]] = None) -> List[str]:
    """The checkpoint's *.safetensors files: those in the directory or under the prefix
    `model` (any URL: the library says which schemes it reads), or, for anything else (a
    Hugging Face id), in the directory `download(model)` returns. Raises RuntimeError when
    there are none."""
    if os.path.isdir(model) or _is_url(model):
        folder = model
    elif download is not None:
        folder = download(model)
    else:
        raise RuntimeError(f"{model}: not a directory or a URL")
    files = list_safetensors(folder)
    if not files:
        raise RuntimeError(f"Cannot find any safetensors model weights with `{model}`")
    return files


def weights_iterator(files: List[str], device: str = "cpu",
                     progress: Optional[Callable] = None) -> Iterator[Tuple[str, object]]:
    """(name, tensor) for every tensor of `files`, in file order: what vLLM's
    model.load_weights() consumes. `progress(iterable, total)` may wrap the tensors (a
    tqdm bar). The tensors are owned: vLLM needs no clone."""
    with SafetensorsStreamer() as streamer:
        streamer.stream_files(files, device=device, owned=True)
        tensors = streamer.get_tensors()
        if progress is not None:
            total = sum(len(m) for m in streamer.files_to_tensors_metadata.values())
            tensors = progress(tensors, total)
        yield from tensors


_registered = False


def serves_runai_format() -> bool:
    """Whether the plugin also serves vLLM's `runai_streamer` format: MODELSTREAM_VLLM_RUNAI
    =1 yes, =0 no; unset, only where Run:ai Model Streamer is not installed (there vLLM's
    own loader for the format cannot run at all)."""
    setting = os.environ.get("MODELSTREAM_VLLM_RUNAI", "")
    if setting not in ("", "0", "1"):
        raise ValueError(f"MODELSTREAM_VLLM_RUNAI={setting}: expected 0 or 1")
    if setting:
        return setting == "1"
    import importlib.util
    return importlib.util.find_spec("runai_model_streamer") is None


def register() -> None:
    """The `vllm.general_plugins` entry point: registers the modelstream load format with
    vLLM's model-loader registry, and, where serves_runai_format() says so, the
    runai_streamer format too, with this package's pull_files and list_safetensors for the
    config and tokenizer files vLLM fetches from object storage itself. vLLM accepts an
    s3:// or gs:// model only with its own format names, which is why the second exists.
    Safe to call more than once (vLLM calls it in every process it starts)."""
    global _registered
    if _registered:
        return
    from vllm.model_executor.model_loader import register_model_loader

    loader = _loader_class()
    register_model_loader(LOAD_FORMAT)(loader)
    if serves_runai_format():
        from vllm.transformers_utils import runai_utils

        from .streamer import pull_files
        register_model_loader("runai_streamer")(loader)
        runai_utils.runai_pull_files = pull_files
        runai_utils.runai_list_safetensors = list_safetensors
    _registered = True


def _loader_class():
    from vllm.model_executor.model_loader.base_loader import BaseModelLoader

    class ModelStreamLoader(BaseModelLoader):
        """Loads safetensors weights from local disks, S3 and GCS with modelstream."""

        def __init__(self, load_config):
            super().__init__(load_config)
            env, self._device = parse_extra_config(load_config.model_loader_extra_config)
            os.environ.update(env)

        def _download(self, model: str, revision: Optional[str]) -> str:
            from vllm.model_executor.model_loader.weight_utils import \
                download_weights_from_hf
            return download_weights_from_hf(model, self.load_config.download_dir,
                                            ["*.safetensors"], revision,
                                            ignore_patterns=self.load_config.ignore_patterns)

        def _files(self, model_config) -> List[str]:
            model = getattr(model_config, "model_weights", None) or model_config.model
            revision = getattr(model_config, "revision", None)
            return prepare_weights(model, lambda m: self._download(m, revision))

        def _device_name(self) -> str:
            if self._device == "cpu":
                return "cpu"
            from vllm.platforms import current_platform
            return f"cuda:{current_platform.current_device()}"

        def _progress(self):
            if not getattr(self.load_config, "use_tqdm_on_load", False):
                return None
            from tqdm import tqdm
            return lambda it, total: tqdm(it, total=total, mininterval=2,
                                          desc="Loading safetensors using modelstream")

        def download_model(self, model_config) -> None:
            self._files(model_config)

        def get_all_weights(self, model_config, model) -> Iterator[Tuple[str, object]]:
            yield from weights_iterator(self._files(model_config), self._device_name(),
                                        self._progress())

        def load_weights(self, model, model_config) -> None:
            model.load_weights(self.get_all_weights(model_config, model))

    return ModelStreamLoader
