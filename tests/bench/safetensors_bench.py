#!/usr/bin/env python3
"""The Python safetensors package loading every tensor of one file: the everyday baseline.

Usage: safetensors_bench.py FILE [--backend mmap|pread] [--force clone|sum|none]

Prints one JSON line on stdout: bytes, tensors, seconds, gbps (10^9 bytes/s), ttft_seconds, and
which backend and forcing were used. run_bench.py runs this as a child process and reads its
peak RSS.

How it is measured. safe_open(FILE, framework="pt") and get_tensor for every name, in file order.
With the default "mmap" backend get_tensor returns a tensor over the file's mapping and reads
nothing: the bytes arrive only when something touches them. To compare like with like the bytes
are forced, and the output says how:

  clone  (default for mmap)  tensor.clone(): every byte read from the mapping and written into
         private memory that the process owns, which is where a streamer puts them too;
  sum    tensor.sum(): every byte read, nothing written (the speed then also depends on the dtype);
  none   (default for pread)  nothing more: right for "pread", whose get_tensor already reads the
         bytes into memory it allocated, and a lower bound for "mmap".

Each tensor is dropped once forced. Peak RSS under "mmap" includes the file pages mapped into
the process (shared with the page cache), so it approaches the file's size whatever the forcing.
The clock starts before safe_open and stops after the last tensor is forced.
"""

import argparse
import json
import os
import resource
import sys
import time

import torch
from safetensors import safe_open

from benchutil import rss_bytes  # noqa: E402 (sibling module)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="safetensors file to load")
    parser.add_argument("--backend", choices=("mmap", "pread"), default="mmap",
                        help="safetensors storage backend (default mmap)")
    parser.add_argument("--force", choices=("clone", "sum", "none"),
                        help="how to make the bytes be read (default: clone for mmap, "
                             "none for pread)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    force = args.force or ("clone" if args.backend == "mmap" else "none")
    baseline_rss = rss_bytes()  # the interpreter and torch, before any I/O
    total = 0
    tensors = 0
    ttft = None

    start = time.perf_counter()
    with safe_open(args.file, framework="pt", backend=args.backend) as handle:
        # File order, so that the mapping is read front to back as a streamer reads it.
        names = handle.offset_keys() if hasattr(handle, "offset_keys") else handle.keys()
        for name in names:
            tensor = handle.get_tensor(name)
            if force == "clone":
                tensor = tensor.clone()
            elif force == "sum":
                tensor.sum()
            if ttft is None:
                ttft = time.perf_counter() - start
            total += tensor.nbytes
            tensors += 1
            del tensor
        seconds = time.perf_counter() - start

    result = {
        "name": "safetensors",
        "file": args.file,
        "bytes": total,
        "tensors": tensors,
        "seconds": round(seconds, 6),
        "gbps": round(total / seconds / 1e9, 3),
        "ttft_seconds": round(ttft if ttft is not None else seconds, 6),
        "backend": args.backend,
        "force": force,
        "torch_threads": torch.get_num_threads(),
        "rss_baseline_bytes": baseline_rss,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "file_bytes": os.path.getsize(args.file),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
