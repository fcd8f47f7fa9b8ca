#!/usr/bin/env python3
"""The peers loading one safetensors file onto a GPU, the way their users do it.

Usage: peers.py FILE --device cuda:0 --which safetensors|runai|fastsafetensors

Prints one JSON line: {"row", "bytes", "tensors", "seconds", "gbps"} or {"row", "error"}.
tests/gpu/run.sh runs each in a process of its own, after torch has been imported and CUDA
initialised (outside the clock, as for modelstream, whose clock starts at the first tensor
request):

  safetensors      safetensors.torch.load_file(FILE, device=DEVICE)
  runai            SafetensorsStreamer().stream_file(FILE), then each tensor .to(DEVICE), as
                   vLLM's runai_streamer load format does
  fastsafetensors  SafeTensorsFileLoader(SingleGroup(), DEVICE, nogds=True):
                   copy_files_to_device(), then get_tensor() of every name

The clock stops after torch.cuda.synchronize(), once every tensor is on the device.
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--which", required=True,
                    choices=("safetensors", "runai", "fastsafetensors"))
    a = ap.parse_args()
    row = {"row": a.which}
    try:
        import torch  # noqa: PLC0415 - timed apart
        torch.cuda.init()
        torch.empty(1, device=a.device)  # the context exists before the clock starts
        torch.cuda.synchronize()
        total, count = 0, 0
        t0 = time.perf_counter()
        if a.which == "safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415
            tensors = load_file(a.file, device=a.device)
        elif a.which == "runai":
            from runai_model_streamer import SafetensorsStreamer  # noqa: PLC0415
            tensors = {}
            with SafetensorsStreamer() as s:
                s.stream_file(a.file)
                for name, t in s.get_tensors():
                    tensors[name] = t.to(a.device)
        else:
            from fastsafetensors import SafeTensorsFileLoader, SingleGroup  # noqa: PLC0415
            loader = SafeTensorsFileLoader(SingleGroup(), a.device, nogds=True, set_numa=False)
            loader.add_filenames({0: [a.file]})
            fb = loader.copy_files_to_device()
            tensors = {k: fb.get_tensor(k) for k in fb.key_to_rank_lidx.keys()}
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        for t in tensors.values():
            total += t.numel() * t.element_size()
            count += 1
        row.update(bytes=total, tensors=count, seconds=round(seconds, 6),
                   gbps=round(total / 1e9 / seconds, 3))
    except Exception as e:  # noqa: BLE001 - a peer that cannot run is a row that says why
        row["error"] = f"{type(e).__name__}: {e}"[:300]
    print(json.dumps(row))
    sys.stdout.flush()
    os._exit(0)  # skip teardown: its time is not the load's


if __name__ == "__main__":
    sys.exit(main())
