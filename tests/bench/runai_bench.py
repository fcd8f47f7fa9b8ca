#!/usr/bin/env python3
"""Run:ai Model Streamer on one safetensors file: the peer that modelstream is compared with.

Usage: runai_bench.py FILE [--concurrency N] [--memory-limit BYTES] [--borrowed]
       runai_bench.py s3://BUCKET/KEY --expect-bytes N [...]

Prints one JSON line on stdout: bytes, tensors, seconds, gbps (10^9 bytes/s), ttft_seconds, and
how the run was configured. run_bench.py runs this as a child process and reads its peak RSS.

How it is measured. The streamer is driven through its public API, the way vLLM drives it:
SafetensorsStreamer().stream_file(FILE), then get_tensors(). Its concurrency and memory limit come
from RUNAI_STREAMER_CONCURRENCY and RUNAI_STREAMER_MEMORY_LIMIT (-1 unlimited, 0 one tensor at a
time, N bytes), set here before the package is imported. What get_tensors yields was read off the
package's source (0.17):

  - The C++ workers read each tensor's bytes straight into a ring of numpy buffers (np.empty per
    slot, so pages are faulted in as the reads land), with O_DIRECT where the mount allows it and
    io_uring or libaio underneath. A tensor is yielded only after the library has reported its
    range complete, so when the loop below has seen the last tensor, every byte is in memory.
  - A yielded tensor is a view into that buffer (torch.from_numpy(...).view(dtype)), not a copy.
    The only copy the package makes is for a tensor whose address its dtype cannot use; that count
    is reported as unaligned_copies and is 0 for files whose tensors are suitably aligned.
  - By default (owned=True) a drained buffer is handed to the caller and a fresh one is allocated
    for the next request; --borrowed passes owned=False, which recycles the same buffers instead.
  - Seen with strace on a local ext4 file: every data read goes through O_DIRECT, submitted on
    one io_uring whose depth is the concurrency, and the file never enters the page cache. A
    "hot" run therefore reads the device just as a cold one does.
  - From s3://BUCKET/KEY (the runai-model-streamer-s3 package, whose libstreamers3.so is the AWS
    C++ SDK): the endpoint, keys and path-style addressing come from the environment
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/SECRET, RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=0), set
    by run_bench.py. Seen in nginx's access log: two HEADs, a 1 MiB GET of the header region, then
    ranged GETs of at most 8 MiB (most exactly 8 MiB, the rest the tail of a range), sent with
    absolute-form request targets ("GET http://HOST/BUCKET/KEY"). The clock and the
    touching are the same as for a file; --expect-bytes gives the size to check, which a URL
    cannot be opened for.

The clock starts just before the streamer is created (so thread and engine start-up count, as
they do for modelstream) and stops when the last tensor has been yielded and touched; the context
exit that joins the workers is reported separately as seconds_with_teardown, and the CPU time
of the timed section (all threads, without the interpreter's and torch's start-up) as
cpu_seconds_streaming. Each tensor is
touched by reading its first and last byte, which proves it is addressable without a second pass
over its bytes; nothing is cloned or summed. Tensors are dropped as soon as they are touched, like
a loader that copies each one into its model, so under a memory limit the ring can recycle.
"""

import argparse
import ctypes
import importlib.metadata
import json
import os
import resource
import sys
import time

from benchutil import data_bytes, rss_bytes  # noqa: E402 (sibling module)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="safetensors file, or s3://BUCKET/KEY, to stream")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="RUNAI_STREAMER_CONCURRENCY (default 16)")
    parser.add_argument("--memory-limit", type=int, default=-1,
                        help="RUNAI_STREAMER_MEMORY_LIMIT in bytes: -1 unlimited (default), "
                             "0 one tensor at a time")
    parser.add_argument("--borrowed", action="store_true",
                        help="stream with owned=False: views into recycled buffers")
    parser.add_argument("--expect-bytes", type=int,
                        help="tensor bytes the stream must deliver (default: read from FILE's "
                             "header; required for s3:// URLs)")
    args = parser.parse_args()
    if args.expect_bytes is None and "://" in args.file:
        parser.error("--expect-bytes is required for a URL")
    return args


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def package_version(name: str):
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    args = parse_args()

    # Read by the package (memory limit) and by libstreamer (concurrency) when a stream starts;
    # set before the import so that nothing can have read the defaults first.
    os.environ["RUNAI_STREAMER_CONCURRENCY"] = str(args.concurrency)
    os.environ["RUNAI_STREAMER_MEMORY_LIMIT"] = str(args.memory_limit)
    from runai_model_streamer import SafetensorsStreamer  # pylint: disable=import-outside-toplevel

    expected = args.expect_bytes if args.expect_bytes is not None else data_bytes(args.file)
    baseline_rss = rss_bytes()  # the interpreter, torch and the streamer's library, before any I/O
    total = 0
    tensors = 0
    checksum = 0
    ttft = None
    ring = None

    cpu_start = cpu_seconds()
    start = time.perf_counter()
    with SafetensorsStreamer() as streamer:
        streamer.stream_file(args.file, owned=not args.borrowed)
        for _name, tensor in streamer.get_tensors():
            nbytes = tensor.nbytes
            if nbytes:
                address = tensor.data_ptr()
                checksum += ctypes.c_ubyte.from_address(address).value
                checksum += ctypes.c_ubyte.from_address(address + nbytes - 1).value
            if ttft is None:
                ttft = time.perf_counter() - start
            total += nbytes
            tensors += 1
            del tensor
        seconds = time.perf_counter() - start
        cpu_streaming = cpu_seconds() - cpu_start
        unaligned = streamer.unaligned_copies
        try:
            # (rank, buffers, bytes per buffer): how the package sized its ring for this file.
            ring = streamer.file_streamer.ring_info()
        except AttributeError:
            ring = None
    seconds_with_teardown = time.perf_counter() - start

    if total != expected:
        print(f"runai_bench: streamed {total} bytes, expected {expected}", file=sys.stderr)
        return 1

    result = {
        "name": "runai",
        "file": args.file,
        "source": "s3" if args.file.startswith(("s3://", "gs://")) else "file",
        "version": package_version("runai-model-streamer"),
        "s3_version": package_version("runai-model-streamer-s3"),
        "bytes": total,
        "tensors": tensors,
        "seconds": round(seconds, 6),
        "gbps": round(total / seconds / 1e9, 3),
        "ttft_seconds": round(ttft if ttft is not None else seconds, 6),
        "seconds_with_teardown": round(seconds_with_teardown, 6),
        "cpu_seconds_streaming": round(cpu_streaming, 6),
        "concurrency": args.concurrency,
        "memory_limit": args.memory_limit,
        "owned": not args.borrowed,
        "unaligned_copies": unaligned,
        "ring_buffers": ring[1] if ring else None,
        "ring_buffer_bytes": ring[2] if ring else None,
        "rss_baseline_bytes": baseline_rss,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "touch": "first and last byte of each tensor",
        "checksum": checksum,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
