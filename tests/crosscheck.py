#!/usr/bin/env python3
"""Cross-checks modelstream against Python's safetensors package, byte for byte.

The safetensors package is the format's reference reader, so whatever it returns for a
file is taken as the truth. This script makes a few model-like files with mkmodel, reads
each with the package, and checks that `modelstream stream --checksum` prints the same
SHA-256 for every tensor, in data-offset order, whatever the memory limit, concurrency or
selection; and that `modelstream inspect --json` reports the same dtypes, shapes, offsets
and metadata.

The package's deserialize() is used rather than safe_open(): it hands back every tensor's
raw bytes whatever its dtype, while safe_open() must build numpy or torch arrays, and
neither library can hold all of BF16, the F8 types, F4 and the F6 types. deserialize()
returns tensors in no particular order, so the order comes from the header's offsets.

Usage: python3 tests/crosscheck.py --modelstream BUILD/modelstream --mkmodel BUILD/mkmodel
       [--workdir DIR] [--case NAME]...

Prints one line per check and ends with "N passed, M failed"; exits 1 if any check
failed, 2 on a usage error. Files are deleted as soon as their case is done.
"""

import argparse
import fnmatch
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

try:
    import safetensors
    from safetensors import safe_open
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("crosscheck: the Python package 'safetensors' is needed (pip install safetensors)")

# A modelstream or mkmodel run that takes longer than this has hung.
RUN_TIMEOUT_S = 300


class Case:
    """One generated file and the selections to try on it."""

    def __init__(self, name, mkmodel_args, selects):
        self.name = name
        self.mkmodel_args = mkmodel_args
        self.selects = selects


# Together about 1 GiB of writing, never more than 0.7 GiB on disk at once, and well
# under a minute when modelstream hashes at a few hundred MB/s.
CASES = [
    # The realistic shape: thousands of small tensors, a few of hundreds of MiB, spread
    # among them, in every dtype.
    Case(
        "mixed",
        ["--seed", "7", "--small-count", "3000", "--small-max-bytes", "64K",
         "--large-count", "3", "--large-bytes", "192M", "--sorted"],
        ["*.mlp.*", "model.layers.1?.self_attn.*_proj.bias", "lm_head.weight"],
    ),
    # Every dtype among the large tensors as well (3 MiB is a whole number of elements
    # of each, the 6-bit types included), and a header in random order.
    Case(
        "all-dtypes",
        ["--seed", "11", "--small-count", "1500", "--small-max-bytes", "16K",
         "--large-count", "20", "--large-bytes", "3M", "--shuffle"],
        ["*norm*", "model.layers.[0-4].*"],
    ),
    # Only the sub-byte types, whose element counts and byte sizes differ.
    Case(
        "sub-byte",
        ["--seed", "13", "--small-count", "400", "--small-max-bytes", "4K",
         "--large-count", "2", "--large-bytes", "6M", "--dtypes", "F4,F6_E2M3,F6_E3M2"],
        ["*.self_attn.*"],
    ),
    # Only the dtypes numpy can hold, no metadata, header in file order.
    Case(
        "numpy-dtypes",
        ["--seed", "3", "--small-count", "2000", "--large-count", "2",
         "--large-bytes", "24M", "--no-metadata",
         "--dtypes", "BOOL,U8,I8,U16,I16,F16,U32,I32,F32,U64,I64,F64,C64"],
        ["*.mlp.*_proj.weight"],
    ),
    # A header of more than 1 MiB, past what a reader fetches in its first round trip.
    Case(
        "big-header",
        ["--seed", "5", "--small-count", "12000", "--small-max-bytes", "512",
         "--large-count", "0", "--shuffle"],
        ["*.mlp.*"],
    ),
    # The least a file can hold.
    Case(
        "one-tensor",
        ["--seed", "2", "--small-count", "1", "--large-count", "0"],
        ["model.*"],
    ),
]


class Results:
    """Counts checks and prints one line for each."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, label, problem):
        """Records a check: `problem` is None when it passed, else why it failed."""
        if problem is None:
            self.passed += 1
            print(f"ok    {label}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {label}: {problem}", flush=True)
        return problem is None


class Tensor:
    def __init__(self, name, dtype, shape, begin, end, sha256):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.begin = begin
        self.end = end
        self.sha256 = sha256


class Reference:
    """What the safetensors package says a file holds."""

    def __init__(self, path):
        self.path = path
        self.size = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read()
        (self.header_size,) = struct.unpack("<Q", data[:8])
        data_start = 8 + self.header_size
        header = json.loads(data[8:data_start])
        header.pop("__metadata__", None)

        # The package is strict (gaps, overlaps, sizes that do not match the shape), so a
        # file it loads is valid, and the bytes it returns are the truth.
        loaded = dict(safetensors.deserialize(data))
        if set(loaded) != set(header):
            raise ValueError("safetensors and the JSON header list different tensors")

        self.tensors = []
        for name, entry in header.items():
            begin, end = entry["data_offsets"]
            raw = bytes(loaded[name]["data"])
            # The offsets come from our own reading of the header; they must frame the
            # very bytes the package returned, or the order derived from them is wrong.
            if raw != data[data_start + begin:data_start + end]:
                raise ValueError(f"{name}: safetensors' bytes differ from the file at "
                                 f"[{begin}, {end})")
            if loaded[name]["dtype"] != entry["dtype"]:
                raise ValueError(f"{name}: safetensors reads dtype "
                                 f"{loaded[name]['dtype']}, the header {entry['dtype']}")
            self.tensors.append(Tensor(name, loaded[name]["dtype"],
                                       list(loaded[name]["shape"]), begin, end,
                                       hashlib.sha256(raw).hexdigest()))
        del data, loaded
        # File order; stgen never writes empty tensors, so no two share a begin.
        self.tensors.sort(key=lambda t: (t.begin, t.end))

        with safe_open(path, framework="numpy") as f:
            self.metadata = f.metadata() or {}
            if sorted(f.keys()) != sorted(t.name for t in self.tensors):
                raise ValueError("safe_open and deserialize list different tensors")

    def largest(self):
        return max((t.end - t.begin for t in self.tensors), default=0)


def run(argv):
    """Runs a command; returns (exit status, stdout, stderr), or a failure reason."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {RUN_TIMEOUT_S} s"
    except OSError as e:
        return None, None, f"could not run {argv[0]}: {e}"
    return p.returncode, p.stdout, p.stderr


def command_problem(argv):
    """Runs argv; returns (stdout, None) or (None, why it failed)."""
    rc, out, err = run(argv)
    if rc is None:
        return None, err
    if rc != 0:
        tail = " | ".join(err.strip().splitlines()[-3:]) or "nothing on stderr"
        return None, f"exit status {rc}: {tail}"
    return out, None


def compare_lines(expected, out):
    """Compares sha256sum-style lines; returns None or the first difference."""
    got = out.split("\n")
    if got and got[-1] == "":
        got.pop()
    else:
        return "the output does not end with a newline"
    want = [f"{t.sha256}  {t.name}" for t in expected]
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            return f"line {i + 1}: expected {w!r}, got {g!r}"
    if len(want) != len(got):
        return f"expected {len(want)} lines, got {len(got)}"
    return None


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_stream(results, label, ms, ref, extra, expected):
    out, problem = command_problem([ms, "stream", ref.path, "--checksum"] + extra)
    if problem is None:
        problem = compare_lines(expected, out)
    results.check(f"{label}: stream --checksum {' '.join(extra)}".rstrip()
                  + f" ({plural(len(expected), 'tensor')})", problem)


def inspect_problem(ms, ref):
    """Runs inspect --json and compares it with the reference; returns None or why not."""
    out, problem = command_problem([ms, "inspect", ref.path, "--json"])
    if problem is not None:
        return problem
    try:
        doc = json.loads(out)
    except ValueError as e:
        return f"the output is not JSON: {e}"
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list):
        return "the output has no \"tensors\" list"
    for key, want in (("path", ref.path), ("size", ref.size),
                      ("header_size", ref.header_size)):
        if doc.get(key) != want:
            return f"{key}: expected {want!r}, got {doc.get(key)!r}"
    if (doc.get("metadata") or {}) != ref.metadata:
        return f"metadata: expected {ref.metadata!r}, got {doc.get('metadata')!r}"
    got = doc["tensors"]
    if len(got) != len(ref.tensors):
        return f"expected {len(ref.tensors)} tensors, got {len(got)}"
    for i, (t, g) in enumerate(zip(ref.tensors, got)):
        if not isinstance(g, dict):
            return f"tensor {i}: not an object"
        want = {"name": t.name, "dtype": t.dtype, "shape": t.shape,
                "offsets": [t.begin, t.end], "size": t.end - t.begin}
        for key, value in want.items():
            if g.get(key) != value:
                return f"tensor {i} ({t.name}): {key}: expected {value!r}, got {g.get(key)!r}"
    return None


def run_case(results, case, ms, mk, workdir):
    path = os.path.join(workdir, f"crosscheck-{case.name}.safetensors")
    label = case.name
    started = time.monotonic()
    try:
        _, problem = command_problem([mk] + case.mkmodel_args + [path])
        if not results.check(f"{label}: mkmodel {' '.join(case.mkmodel_args)}", problem):
            return
        try:
            ref = Reference(path)
            problem = None
        except (ValueError, KeyError, TypeError, safetensors.SafetensorError) as e:
            problem = f"the reference reader rejects the file: {e}"
        if not results.check(f"{label}: safetensors loads it", problem):
            return

        results.check(f"{label}: inspect --json ({plural(len(ref.tensors), 'tensor')})",
                      inspect_problem(ms, ref))
        largest = ref.largest()
        for extra in ([], ["--memory-limit", "0"], ["--memory-limit", str(3 * largest)],
                      ["--concurrency", "1"], ["--concurrency", "8"],
                      ["--concurrency", "8", "--memory-limit", "0"]):
            check_stream(results, label, ms, ref, extra, ref.tensors)
        for glob in case.selects:
            chosen = [t for t in ref.tensors if fnmatch.fnmatchcase(t.name, glob)]
            if not chosen:
                results.check(f"{label}: --select {glob}", "the glob matches no tensor; "
                              "the case is wrong")
                continue
            check_stream(results, label, ms, ref, ["--select", glob], chosen)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        print(f"      {label}: {time.monotonic() - started:.1f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(
        description="Cross-checks modelstream's output against Python's safetensors.")
    parser.add_argument("--modelstream", required=True, help="the modelstream binary")
    parser.add_argument("--mkmodel", required=True, help="the mkmodel binary")
    parser.add_argument("--workdir", help="where to write the files (default: a new "
                        "temporary directory, removed at the end)")
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES],
                        help="run only this case (may be repeated)")
    args = parser.parse_args()

    for tool in (args.modelstream, args.mkmodel):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            parser.error(f"{tool} is not an executable file")
    # Paths are given to the tools as they are; make them work from any directory.
    ms = os.path.abspath(args.modelstream)
    mk = os.path.abspath(args.mkmodel)

    made_workdir = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="crosscheck-") if made_workdir else args.workdir
    os.makedirs(workdir, exist_ok=True)

    print(f"safetensors {safetensors.__version__}; files in {workdir}", flush=True)
    results = Results()
    try:
        for case in CASES:
            if args.case is None or case.name in args.case:
                run_case(results, case, ms, mk, workdir)
    finally:
        if made_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
