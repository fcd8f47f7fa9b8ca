#!/usr/bin/env python3
"""modelstream's benchmark harness: side by side with the physical limit and with its peers.

`make bench` runs `python3 tests/bench/run_bench.py --build build`. The harness

  1. generates a model-like safetensors file of about 4 GiB once, with BUILD/mkmodel, into
     bench-data/ at the repository root, and reuses it while its recorded size still matches;
  2. runs every benchmark row K times (--repeat), each run a separate child process, so that its
     peak RSS can be read from os.wait4 (ru_maxrss); the kernel counts in it, as a maximum, the
     peak of the harness the child was forked from, so a trivial child is run after each run
     to measure that floor and a figure no higher than it is shown as an upper bound ("<=");
  3. prints a table (best and median GB/s, time to first tensor, peak RSS, CPU seconds per GB,
     ratio to memcpy) and the target ratios, and writes everything to bench-data/results.json.

The S3 rows (group "s3", `--only s3` selects them all) read the same file through Debian's nginx
on 127.0.0.1 (s3_bench.py): N parallel curls of 1/N of it each (the transport limit), modelstream
and Run:ai's S3 back end on s3://models/KEY, and `modelstream fetch` of the same object into a
node cache (on a tmpfs the harness mounts, and on disk) emptied before every run. nginx is
started before the first of them and stopped at the end, also on Ctrl-C, SIGTERM or an error.

"Hot" runs find the whole file in the page cache: residency is checked with fincore(1) right
before each one and the file is read through once, untimed, when pages are missing (our VMs page
idle memory out in the background, so a file cached a minute ago may not be any more). "Cold"
runs follow `sync; echo 3 > /proc/sys/vm/drop_caches`, which needs root; without it the cold rows
are skipped and say so.

Targets are reported, never asserted: the exit status is 0 when every run succeeded, even if a
target was missed, and 1 when any run failed. Only the Python standard library is used here.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import s3_bench  # sibling module: the nginx S3 endpoint
from benchutil import data_bytes

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "tests" / "bench"
MIB = 1 << 20
GIB = 1 << 30

# The generator's command line, fixed so that the cached file is the same on every machine:
# 15 tensors of 256 MiB (a large model's matrices) and 4000 of up to 64 KiB (norms and biases).
# The dtypes are those of real checkpoints, and ones every reader here knows: mkmodel's default
# (all of them) includes F4 and F6, which Run:ai and Python safetensors reject.
MKMODEL_ARGS = ["--seed", "7", "--small-count", "4000", "--small-max-bytes", "64K",
                "--large-count", "15", "--large-bytes", "256M", "--metadata",
                "--dtypes", "BF16,F16,F32"]
MODEL_NAME = "model.safetensors"
MODEL_STAMP = "model.json"

# memcpy_bench is built here rather than by make, so that the harness works from any build tree.
MEMCPY_CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]

# Peak RSS allowed over the memory limit before the limited-memory target counts as missed: the
# code, stacks, header and tensor table of a C process.
RSS_ALLOWANCE = 64 * MIB

RUN_TIMEOUT_SECONDS = 900


class BenchError(Exception):
    """A problem that stops the whole harness (as opposed to one failed run)."""


@dataclasses.dataclass
class Row:
    """One line of the table: a command run K times under the same conditions."""

    name: str
    description: str
    argv: list[str]
    cold: bool = False          # drop the page cache before each run (needs root)
    hugepages: bool = False     # run while --hugepages N huge pages are reserved
    devnull_stdout: bool = False  # the command's output is the data itself (cat)
    memory_limit: Optional[int] = None
    group: str = "local"        # "s3": needs the nginx endpoint; `--only s3` selects the group
    env: Optional[dict] = None  # the child's environment (None: the harness's own)
    # Several commands run at once, as one measurement (curl-parallel-N): the figure is the file
    # over the time from the first start to the last exit; CPU is their sum; peak RSS the
    # largest single process's (their sum is in each run as peak_rss_sum_bytes).
    parallel: Optional[list[list[str]]] = None
    parallel_lengths: Optional[list[int]] = None  # bytes each of them must download
    server: Optional[object] = None  # an NginxS3 whose CPU time is recorded for each run
    # A node cache (modelstream fetch): emptied before each run, untimed; the figure is the file
    # over the wall time, and a run counts only if it downloaded and published every byte.
    fetch_cache: Optional["FetchCache"] = None
    cpu: bool = True            # CPU seconds per GB means something (not for memcpy_bench)
    runs: list[dict] = dataclasses.field(default_factory=list)
    skipped: Optional[str] = None
    failed: bool = False
    error: Optional[str] = None  # why the row failed before any run (nginx did not start)

    def ok_runs(self) -> list[dict]:
        return [run for run in self.runs if run["ok"]]

    def best(self, key: str = "gbps") -> Optional[float]:
        values = [run[key] for run in self.ok_runs() if run.get(key) is not None]
        return max(values) if values else None

    def median(self, key: str = "gbps") -> Optional[float]:
        values = [run[key] for run in self.ok_runs() if run.get(key) is not None]
        return statistics.median(values) if values else None

    def peak_rss(self) -> Optional[int]:
        values = [run["peak_rss_bytes"] for run in self.ok_runs()]
        return max(values) if values else None

    def rss_floor(self) -> int:
        return max((run.get("rss_floor_bytes", 0) for run in self.runs), default=0)


# ---------------------------------------------------------------------------------------------
# Small helpers


def parse_size(text: str) -> int:
    """Bytes from '536870912', '512M', '4G' (binary multiples) or '-1'."""
    text = text.strip()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def fmt_gbps(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_seconds(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def fmt_cpu(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def fmt_mib(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / MIB:.0f} MiB"


def fmt_rss(value: Optional[int], floor: int) -> str:
    """A peak RSS, shown as an upper bound when it is no more than what every child inherits."""
    if value is not None and value <= floor:
        return "<= " + fmt_mib(value)
    return fmt_mib(value)


def fmt_ratio(numerator: Optional[float], denominator: Optional[float]) -> str:
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}"


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The machine: page cache, huge pages, memcpy_bench


def page_cache_fraction(path: Path) -> Optional[float]:
    """The fraction of path's bytes in the page cache (fincore), or None when it cannot tell."""
    fincore = shutil.which("fincore")
    if fincore is None:
        return None
    try:
        out = subprocess.run([fincore, "--bytes", "--noheadings", "--raw", "--output", "RES",
                              str(path)], capture_output=True, text=True, check=True).stdout
        return min(1.0, int(out.split()[0]) / max(1, path.stat().st_size))
    except (subprocess.CalledProcessError, ValueError, IndexError):
        return None


def warm_page_cache(path: Path) -> None:
    """Reads path once, untimed, so that the next run finds it in the page cache."""
    buffer = bytearray(MIB)  # small: this harness's peak RSS is every child's floor
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass


def drop_page_cache() -> None:
    """Writes dirty pages back, then drops the clean page cache, dentries and inodes."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n", encoding="ascii")


class PageCache:
    """Makes each run find the file hot or cold, as its row asks."""

    def __init__(self, path: Path):
        self.path = path
        self.maybe_cold = True  # only matters where fincore is missing

    def prepare(self, cold: bool) -> Optional[float]:
        """Returns the fraction of the file cached just before the run (None: unknown)."""
        if cold:
            drop_page_cache()
            self.maybe_cold = True
            return page_cache_fraction(self.path)
        fraction = page_cache_fraction(self.path)
        if (fraction is None and self.maybe_cold) or (fraction is not None and fraction < 1.0):
            warm_page_cache(self.path)
            self.maybe_cold = False
            fraction = page_cache_fraction(self.path)
        return fraction


@contextlib.contextmanager
def reserved_hugepages(count: int) -> Iterator[int]:
    """Sets vm.nr_hugepages to count for the duration, restoring the previous value afterwards,
    also on Ctrl-C, SIGTERM (turned into SystemExit by main) or an exception. Yields how many
    pages the kernel actually reserved, which is fewer than asked when memory is fragmented."""
    knob = Path("/proc/sys/vm/nr_hugepages")
    previous = int(knob.read_text(encoding="ascii"))
    try:
        knob.write_text(f"{count}\n", encoding="ascii")
        reserved = int(knob.read_text(encoding="ascii"))
        if reserved < count:
            log(f"run_bench: asked for {count} huge pages, the kernel reserved {reserved}")
        log(f"run_bench: vm.nr_hugepages {previous} -> {reserved}")
        yield reserved
    finally:
        knob.write_text(f"{previous}\n", encoding="ascii")
        log(f"run_bench: vm.nr_hugepages restored to {knob.read_text(encoding='ascii').strip()}")


def build_memcpy_bench(build: Path) -> Path:
    """Compiles tests/bench/memcpy_bench.c into BUILD/memcpy_bench unless it is up to date."""
    source = BENCH_DIR / "memcpy_bench.c"
    binary = build / "memcpy_bench"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    build.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CC", "cc")
    command = [compiler, *MEMCPY_CFLAGS, "-o", str(binary), str(source)]
    log("run_bench: " + " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"building memcpy_bench failed:\n{result.stderr}")
    return binary


# ---------------------------------------------------------------------------------------------
# The model file


def ensure_model(build: Path, data_dir: Path) -> Path:
    """Returns bench-data/model.safetensors, generating it with mkmodel unless a file made with
    the same arguments, and still of the size recorded when it was made, is already there."""
    model = data_dir / MODEL_NAME
    stamp = data_dir / MODEL_STAMP
    wanted = {"generator": "mkmodel", "args": MKMODEL_ARGS}
    if model.exists() and stamp.exists():
        try:
            recorded = json.loads(stamp.read_text(encoding="utf-8"))
        except ValueError:
            recorded = {}
        if ({k: recorded.get(k) for k in wanted} == wanted
                and recorded.get("bytes") == model.stat().st_size):
            return model

    mkmodel = build / "mkmodel"
    if not os.access(mkmodel, os.X_OK):
        raise BenchError(f"{mkmodel} is missing: build the project first (make), "
                         "or pass --file with a safetensors file to use instead")
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = data_dir / (MODEL_NAME + ".partial")
    command = [str(mkmodel), *MKMODEL_ARGS, str(partial)]
    log("run_bench: generating the benchmark model once (about 4 GiB): " + " ".join(command))
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise BenchError(f"mkmodel failed ({result.returncode}):\n{result.stderr}")
    size = partial.stat().st_size
    if not 3 * GIB <= size <= 5 * GIB:
        partial.unlink(missing_ok=True)
        raise BenchError(f"mkmodel wrote {size} bytes; expected about 4 GiB")
    # Renamed into place last, so an interrupted generation is never mistaken for a model.
    stamp.write_text(json.dumps({**wanted, "bytes": size}) + "\n", encoding="utf-8")
    partial.rename(model)
    log(f"run_bench: {model} ({size / GIB:.2f} GiB) in {time.perf_counter() - started:.0f} s")
    return model


# ---------------------------------------------------------------------------------------------
# Running one command


def last_json_line(text: str) -> Optional[dict]:
    """The last line of text that parses as a JSON object, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def add_cpu(run: dict, user: float, system: float) -> None:
    """Records a run's CPU time (user + system of the child and its waited-for descendants, as
    os.wait4 reports it) and its cost per 10^9 bytes delivered."""
    run["cpu_user_seconds"] = round(user, 6)
    run["cpu_system_seconds"] = round(system, 6)
    delivered = run.get("bytes")
    if run["ok"] and delivered:
        run["cpu_seconds_per_gb"] = (user + system) / (delivered / 1e9)
        if run.get("wall_seconds"):
            run["cpu_cores"] = (user + system) / run["wall_seconds"]


def machine_cpu_seconds() -> tuple[Optional[float], Optional[float]]:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq; not idle,
    iowait or steal), and of that the irq and softirq time, from /proc/stat. The first counts
    everything, including other processes; the second is mostly the loopback network's packet
    processing, which no process's own CPU time includes."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:8]]
    except (OSError, ValueError):
        return None, None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / ticks, (irq + softirq) / ticks


def cpu_snapshot(row: Row) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """(server, machine, irq) CPU seconds so far, for rows that run against a server."""
    if row.server is None:
        return None, None, None
    return (row.server.cpu_seconds(), *machine_cpu_seconds())


def add_server_cpu(run: dict, before: tuple, after: tuple) -> None:
    """The server's CPU time during the run (nginx's master and workers, from /proc), how many
    cores the whole machine kept busy, how many went to interrupts (loopback softirq), and what
    is left for other processes: a run on a busy machine shows it there."""
    for index, key in enumerate(("server_cpu", "machine_cpu", "irq_cpu")):
        if before[index] is None or after[index] is None:
            continue
        spent = after[index] - before[index]
        run[f"{key}_seconds"] = round(spent, 6)
        if run["ok"] and run.get("bytes"):
            run[f"{key}_seconds_per_gb"] = spent / (run["bytes"] / 1e9)
            run[f"{key}_cores"] = spent / run["wall_seconds"]
    parts = ("cpu_cores", "server_cpu_cores", "irq_cpu_cores")
    if run.get("machine_cpu_cores") is not None and all(run.get(k) is not None for k in parts):
        run["other_cpu_cores"] = max(0.0, run["machine_cpu_cores"]
                                     - sum(run[k] for k in parts))


def run_once(row: Row, file_bytes: int) -> dict:
    """Runs row.argv as a child process and returns what it reported, its wall time, its CPU
    time and its peak RSS. os.wait4 reaps the child itself, because it is the only call that
    hands back the child's own rusage (subprocess's wait would discard it)."""
    if row.parallel is not None:
        return run_parallel(row, file_bytes)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server_before = cpu_snapshot(row)
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(row.argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL if row.devnull_stdout else out,
                                    stderr=err, env=row.env)
        except OSError as error:  # a binary that is missing or not executable
            return {"ok": False, "exit_code": None, "error": str(error), "stderr_tail": "",
                    "peak_rss_bytes": None, "gbps": None, "seconds": None,
                    "ttft_seconds": None}
        # A run that hangs is killed, but never after it has been reaped: its pid could be reused.
        lock = threading.Lock()
        reaped = False

        def kill_on_timeout() -> None:
            with lock:
                if not reaped:
                    os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(RUN_TIMEOUT_SECONDS, kill_on_timeout)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Ctrl-C: the child got SIGINT too, but make sure it is gone before unwinding.
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
            raise
        finally:
            with lock:
                reaped = True
            timer.cancel()
        wall = time.perf_counter() - started
        server_after = cpu_snapshot(row)
        proc.returncode = os.waitstatus_to_exitcode(status)  # tells Popen the child is reaped

        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")

    run = {"ok": proc.returncode == 0, "exit_code": proc.returncode,
           "wall_seconds": round(wall, 6), "peak_rss_bytes": usage.ru_maxrss * 1024,
           "gbps": None, "seconds": None, "ttft_seconds": None}
    if row.devnull_stdout:
        # cat reports nothing: its figure is the whole file over its wall time.
        run.update(bytes=file_bytes, seconds=wall, gbps=file_bytes / wall / 1e9)
    elif row.fetch_cache is not None:
        fetch_report(run, row.fetch_cache, stdout, file_bytes, wall)
    else:
        report = last_json_line(stdout)
        if report is None or report.get("gbps") is None:
            run["ok"] = False
            run["error"] = "no JSON object with gbps on stdout"
        else:
            run["report"] = report
            for key in ("bytes", "seconds", "gbps", "ttft_seconds"):
                run[key] = report.get(key)
    add_cpu(run, usage.ru_utime, usage.ru_stime)
    add_server_cpu(run, server_before, server_after)
    if not run["ok"]:
        run["stderr_tail"] = stderr[-2000:]
        run["stdout_tail"] = stdout[-500:]
    return run


def run_parallel(row: Row, file_bytes: int) -> dict:
    """Runs every command of row.parallel at once (curl-parallel-N), each reaped with os.wait4
    for its own rusage. The figure is the file's size over the time from the first start to
    the last exit; CPU is the sum over the processes; peak RSS the largest single one (the sum
    is recorded too). Each command prints "HTTP_CODE BYTES" (curl -w), which must be 206 and
    the length of its range."""
    procs: list[subprocess.Popen] = []
    lock = threading.Lock()
    reaped: set[int] = set()

    def kill_unreaped() -> None:
        with lock:
            for proc in procs:
                if proc.pid not in reaped:
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGKILL)

    usages = []
    statuses = []
    server_before = cpu_snapshot(row)
    started = time.perf_counter()
    timer = threading.Timer(RUN_TIMEOUT_SECONDS, kill_unreaped)
    try:
        try:
            for argv in row.parallel:
                procs.append(subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              env=row.env))
        except OSError as error:
            kill_unreaped()
            for proc in procs:
                os.wait4(proc.pid, 0)
                reaped.add(proc.pid)
                proc.returncode = -signal.SIGKILL
            return {"ok": False, "exit_code": None, "error": str(error), "stderr_tail": "",
                    "peak_rss_bytes": None, "gbps": None, "seconds": None,
                    "ttft_seconds": None}
        timer.start()
        for proc in procs:  # reaped by pid: a wait for any child could reap nginx
            _, status, usage = os.wait4(proc.pid, 0)
            with lock:
                reaped.add(proc.pid)
            proc.returncode = os.waitstatus_to_exitcode(status)
            statuses.append(proc.returncode)
            usages.append(usage)
        wall = time.perf_counter() - started
    except BaseException:
        kill_unreaped()
        for proc in procs:
            if proc.pid not in reaped:
                with contextlib.suppress(OSError):
                    os.wait4(proc.pid, 0)
                reaped.add(proc.pid)
                proc.returncode = -signal.SIGKILL
        raise
    finally:
        timer.cancel()
    server_after = cpu_snapshot(row)

    problems = []
    for index, proc in enumerate(procs):
        stdout = proc.stdout.read().decode("utf-8", "replace").strip()
        stderr = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stdout.close()
        proc.stderr.close()
        expected = row.parallel_lengths[index] if row.parallel_lengths else None
        if proc.returncode != 0:
            problems.append(f"#{index} exit {proc.returncode}: {stderr[-300:]}")
        elif expected is not None and stdout != f"206 {expected}":
            problems.append(f"#{index} answered '{stdout}', expected '206 {expected}'")
    rss = [usage.ru_maxrss * 1024 for usage in usages]
    run = {"ok": not problems, "exit_code": next((code for code in statuses if code), 0),
           "wall_seconds": round(wall, 6), "peak_rss_bytes": max(rss),
           "peak_rss_sum_bytes": sum(rss), "processes": len(procs),
           "bytes": file_bytes, "seconds": wall, "gbps": file_bytes / wall / 1e9,
           "ttft_seconds": None}
    add_cpu(run, sum(usage.ru_utime for usage in usages),
            sum(usage.ru_stime for usage in usages))
    add_server_cpu(run, server_before, server_after)
    if problems:
        run["error"] = "; ".join(problems[:4])
        run["stderr_tail"] = ""
    return run


# ---------------------------------------------------------------------------------------------
# The rows


class TmpfsCopy:
    """The model in a tmpfs mounted with huge=within_size, the way a node cache holds it: the
    file is sized (fallocate) before its bytes are written, so that they land in 2 MiB pages.
    Mounted when the first "tmpfs" row runs, unmounted at the end however the run ends."""

    def __init__(self, model: Path):
        self.model = model
        self.dir = Path(tempfile.mkdtemp(prefix="ms-bench-tmpfs-"))
        self.path = self.dir / model.name
        self.mounted = False

    def __enter__(self) -> "TmpfsCopy":
        size = self.model.stat().st_size
        subprocess.run(["mount", "-t", "tmpfs", "-o",
                        f"huge=within_size,size={size // MIB + 64}m", "tmpfs", str(self.dir)],
                       check=True, capture_output=True, text=True)
        self.mounted = True
        with open(self.model, "rb") as src, open(self.path, "wb") as dst:
            os.posix_fallocate(dst.fileno(), 0, size)
            while True:
                chunk = src.read(64 * MIB)
                if not chunk:
                    break
                dst.write(chunk)
        return self

    def __exit__(self, *exc) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.dir)], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def meminfo_bytes(field: str) -> Optional[int]:
    """A /proc/meminfo figure in bytes (MemAvailable, ShmemHugePages, ...), or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


class FetchCache:
    """The node cache of the fetch rows, emptied before every run so that each run downloads
    the whole object: on "tmpfs", a tmpfs mounted with huge=within_size (what `modelstream cache
    prepare --medium tmpfs-huge` makes) for the harness's lifetime; on "disk", a directory in
    the data directory, where the fetch fdatasyncs the file before publishing it. The cache is
    always DIR/cache, so the command line is fixed; fresh() removes the last run's and makes an
    empty one. Set up when the first run needs it, removed (unmounted) at the end however the
    run ends."""

    def __init__(self, medium: str, parent: Path, key: str, size: int):
        self.medium = medium
        self.key = key  # the object's key: the file's name in the published model
        self.size = size  # the tmpfs's size in bytes
        # Named now but made on first use, so that rows which never run leave nothing behind.
        self.dir = parent / f"ms-bench-fetch-{medium}-{os.getpid()}"
        self.path = self.dir / "cache"
        self.entered = False
        self.mounted = False
        self.shmem_huge_before: Optional[int] = None

    def __enter__(self) -> "FetchCache":
        self.dir.mkdir(parents=True)
        if self.medium == "tmpfs":
            size_mib = -(-self.size // (2 * MIB)) * 2  # whole 2 MiB pages
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o",
                                      f"size={size_mib}m,huge=within_size", "tmpfs",
                                      str(self.dir)], capture_output=True, text=True, check=False)
            if mounted.returncode != 0:
                self.dir.rmdir()
                raise OSError(f"mount -t tmpfs {self.dir} failed: {mounted.stderr.strip()}")
            self.mounted = True
        self.entered = True
        return self

    def shortfall(self, file_bytes: int) -> Optional[str]:
        """Why a fetch of file_bytes cannot run here now (None when it can), asked when its row
        starts, with the last row's cache removed: on tmpfs, memory (the copy cannot be
        reclaimed, and the source file must stay in the page cache, which MemAvailable
        counts); on disk, free space."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.medium == "tmpfs":
            available = memory_available()
            if available is not None and available < 2 * file_bytes + GIB:
                return (f"the tmpfs cache needs the file's {file_bytes / GIB:.1f} GiB besides "
                        f"its page cache, and {available / GIB:.1f} GiB are available")
            return None
        free = shutil.disk_usage(self.dir).free
        if free < file_bytes + GIB:
            return (f"{self.dir} has {free / GIB:.1f} GiB free; the disk cache needs "
                    f"{(file_bytes + GIB) / GIB:.1f}")
        return None

    def fresh(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.medium == "disk":
            os.sync()  # nothing of the last run (or anything else) left to write back
        self.path.mkdir()
        self.shmem_huge_before = meminfo_bytes("ShmemHugePages")

    def published(self, report: dict) -> Optional[Path]:
        """The file the fetch published (DIR/models/NAME/KEY, a link to its blob), if any."""
        model_dir = report.get("path")
        if not isinstance(model_dir, str):
            return None
        path = Path(model_dir) / self.key
        return path if path.is_file() else None

    def huge_bytes(self) -> Optional[int]:
        """Shmem in huge pages gained since fresh(): on tmpfs, how much of the fetched file
        landed in 2 MiB pages (the machine's figure; other tmpfs users count too)."""
        after = meminfo_bytes("ShmemHugePages")
        if self.medium != "tmpfs" or after is None or self.shmem_huge_before is None:
            return None
        return max(0, after - self.shmem_huge_before)

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.mounted:
            if subprocess.run(["umount", str(self.dir)], capture_output=True,
                              check=False).returncode != 0:
                # Still busy (a fetch that has not quite gone): detach it, freed when idle.
                subprocess.run(["umount", "--lazy", str(self.dir)], capture_output=True,
                               check=False)
            self.mounted = False
        with contextlib.suppress(OSError):
            self.dir.rmdir()
        self.entered = False


def fetch_report(run: dict, cache: FetchCache, stdout: str, file_bytes: int,
                 wall: float) -> None:
    """A fetch run's figures from its JSON log (--log-format json: one object per line, the
    last one the "done" event). The run counts only if this process downloaded every byte
    (bytes_fetched: nothing came from an earlier cache) and the published file has the
    object's size. The figure is the file over the wall time, as for curl-parallel; the
    engine's own clock (without process start-up) is kept as engine_gbps."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    events.append(value)
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    failed = next((e for e in reversed(events) if e.get("event") == "error"), None)
    last_file = next((e for e in reversed(events) if e.get("event") == "file"), None)
    if not run["ok"]:
        if failed is not None:
            run["error"] = f"{failed.get('code')}: {failed.get('message')}"
        return
    problem = None
    if done is None:
        problem = "no \"done\" event in the JSON log on stdout"
    elif done.get("bytes_fetched") != file_bytes or done.get("bytes_total") != file_bytes:
        problem = (f"fetched {done.get('bytes_fetched')} of {done.get('bytes_total')} bytes; "
                   f"expected all {file_bytes} downloaded by this run")
    else:
        published = cache.published(done)
        if published is None or published.stat().st_size != file_bytes:
            problem = (f"{done.get('path')}/{cache.key}: not published with the object's "
                       f"{file_bytes} bytes")
    if problem is not None:
        run["ok"] = False
        run["error"] = problem
        return
    run["report"] = done
    run.update(bytes=file_bytes, seconds=wall, gbps=file_bytes / wall / 1e9)
    if done.get("seconds"):
        run["engine_seconds"] = done["seconds"]
        run["engine_gbps"] = file_bytes / done["seconds"] / 1e9
    if last_file is not None and last_file.get("window") is not None:
        run["final_window"] = last_file["window"]
    huge = cache.huge_bytes()
    if huge is not None:
        run["shmem_huge_bytes"] = huge
        run["huge_fraction"] = min(1.0, huge / file_bytes)


def make_rows(args: argparse.Namespace, build: Path, model: Path, memcpy: Path,
              server: Optional[s3_bench.NginxS3], tmpfs: Optional[TmpfsCopy] = None) -> list[Row]:
    """Every row, in the order they run: hot ones first (local, then S3), then the ones that drop
    the cache. server is the (not yet started) nginx endpoint of the S3 rows, None when nginx
    is missing."""
    file_bytes = model.stat().st_size
    modelstream = str(build / "modelstream")
    python = sys.executable
    conc = str(args.concurrency)
    limit = args.memory_limit
    threads = max(1, min(os.cpu_count() or 1, args.concurrency))

    def ms(limit_bytes: int) -> list[str]:
        return [modelstream, "stream", str(model), "--concurrency", conc,
                "--memory-limit", str(limit_bytes), "--json"]

    def runai(limit_bytes: int) -> list[str]:
        return [python, str(BENCH_DIR / "runai_bench.py"), str(model),
                "--concurrency", conc, "--memory-limit", str(limit_bytes)]

    rows = [
        Row("memcpy", f"memcpy of the file's size in 8 MiB pieces, {threads} thread(s), into "
            "prefaulted huge-page memory: the limit", [str(memcpy), "--threads", str(threads),
                                                      str(file_bytes)], cpu=False),
    ]
    if threads > 1:
        rows.append(Row("memcpy-1thread", "the same with one thread",
                        [str(memcpy), "--threads", "1", str(file_bytes)], cpu=False))
    rows += [
        Row("cat-hot", "cat FILE > /dev/null, file in page cache (read(2), 128 KiB buffer)",
            ["cat", str(model)], devnull_stdout=True),
        Row("modelstream-hot", "modelstream stream, unlimited memory", ms(-1)),
        Row("modelstream-hot-limited", f"modelstream stream, --memory-limit {limit}",
            ms(limit), memory_limit=limit),
        Row("modelstream-hot-small-pages", "modelstream stream, unlimited, arena on 4 KiB "
            "pages (--arena-pages small) instead of transparent huge pages",
            ms(-1) + ["--arena-pages", "small"]),
        Row("modelstream-hot-mapped", "modelstream stream --deliver mapped: zero copy, "
            "tensors point into the file's page-cache pages", ms(-1) + ["--deliver", "mapped"]),
    ]
    if tmpfs is not None:
        on_tmpfs = str(tmpfs.path)

        def ms_tmpfs(limit_bytes: int) -> list[str]:
            return [modelstream, "stream", on_tmpfs, "--concurrency", conc,
                    "--memory-limit", str(limit_bytes), "--json"]

        rows += [
            Row("cat-tmpfs", "cat FILE > /dev/null, FILE on tmpfs huge=within_size (a node "
                "cache)", ["cat", on_tmpfs], devnull_stdout=True, group="tmpfs"),
            Row("modelstream-tmpfs-mapped", "modelstream stream --deliver mapped of the "
                "tmpfs file: zero copy from its 2 MiB pages",
                ms_tmpfs(-1) + ["--deliver", "mapped"], group="tmpfs"),
            Row("modelstream-tmpfs-copy", "modelstream stream of the tmpfs file, copy "
                "delivery, unlimited", ms_tmpfs(-1), group="tmpfs"),
            Row("modelstream-tmpfs-limited", f"modelstream stream of the tmpfs file, copy "
                f"delivery, --memory-limit {limit} (the ring)", ms_tmpfs(limit),
                memory_limit=limit, group="tmpfs"),
        ]
    if args.hugepages:
        rows.append(Row("modelstream-hot-hugepages",
                        f"modelstream stream, unlimited, {args.hugepages} huge pages reserved",
                        ms(-1), hugepages=True))
    rows += [
        Row("runai-hot", "Run:ai Model Streamer, unlimited (RUNAI_STREAMER_MEMORY_LIMIT=-1)",
            runai(-1)),
        Row("runai-hot-limited", f"Run:ai Model Streamer, RUNAI_STREAMER_MEMORY_LIMIT={limit}",
            runai(limit), memory_limit=limit),
        Row("safetensors-hot", "Python safetensors safe_open (mmap) + clone of every tensor",
            [python, str(BENCH_DIR / "safetensors_bench.py"), str(model)]),
        Row("safetensors-pread-hot", "Python safetensors safe_open(backend=\"pread\")",
            [python, str(BENCH_DIR / "safetensors_bench.py"), str(model), "--backend",
             "pread"]),
    ]
    rows += make_s3_rows(args, build, model, server)
    rows += [
        Row("cat-cold", "cat FILE > /dev/null after dropping the page cache",
            ["cat", str(model)], cold=True, devnull_stdout=True),
        Row("modelstream-cold", "modelstream stream, unlimited, after dropping the page cache",
            ms(-1), cold=True),
        Row("runai-cold", "Run:ai Model Streamer, unlimited, after dropping the page cache",
            runai(-1), cold=True),
        Row("modelstream-cold-limited", f"modelstream stream, --memory-limit {limit}, after "
            "dropping the page cache", ms(limit), cold=True, memory_limit=limit),
        Row("runai-cold-limited", f"Run:ai Model Streamer, RUNAI_STREAMER_MEMORY_LIMIT={limit}, "
            "after dropping the page cache", runai(limit), cold=True, memory_limit=limit),
    ]
    return rows


def s3_skip_reasons(server: Optional[s3_bench.NginxS3]) -> tuple[Optional[str], Optional[str],
                                                                   Optional[str]]:
    """Why the S3 rows cannot run here: (all of them, curl's, Run:ai's); None where they can."""
    every = None if server is not None else \
        "nginx not found (scripts/deps.sh bench installs Debian's nginx)"
    curl = None if shutil.which("curl") else "curl not found (scripts/deps.sh bench installs it)"
    runai = None
    if importlib.util.find_spec("runai_model_streamer") is None:
        runai = "runai-model-streamer is not installed (scripts/deps.sh bench)"
    elif importlib.util.find_spec("runai_model_streamer_s3") is None:
        runai = ("runai-model-streamer-s3 is not installed (scripts/deps.sh bench installs the "
                 "version matching runai-model-streamer)")
    else:
        try:
            base = importlib.metadata.version("runai-model-streamer")
            s3 = importlib.metadata.version("runai-model-streamer-s3")
        except importlib.metadata.PackageNotFoundError as error:
            base = s3 = None
            runai = f"cannot tell the Run:ai package versions: {error}"
        if base is not None and base != s3:
            # libstreamers3.so is loaded by the base package's libstreamer.so: a mismatch is
            # an ABI gamble, not a measurement.
            runai = (f"runai-model-streamer {base} and runai-model-streamer-s3 {s3} differ; "
                     f"install runai-model-streamer-s3=={base}")
    return every, curl, runai


def memory_available() -> Optional[int]:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def make_s3_rows(args: argparse.Namespace, build: Path, model: Path,
                 server: Optional[s3_bench.NginxS3]) -> list[Row]:
    """The S3 rows: the file served by nginx on 127.0.0.1 as s3://models/KEY (s3_bench.py)."""
    file_bytes = model.stat().st_size
    modelstream = str(build / "modelstream")
    python = sys.executable
    conc = args.concurrency
    limit = args.memory_limit
    every, curl_skip, runai_skip = s3_skip_reasons(server)
    key = s3_bench.object_key(model)
    url = server.s3_url if server is not None else f"s3://{s3_bench.BUCKET}/{key}"
    http_url = server.http_url if server is not None else f"http://127.0.0.1/models/{key}"
    env = server.client_env() if server is not None else None
    # An unlimited run holds the whole file; leave a GiB for everything else.
    available = memory_available()
    unlimited_skip = None
    if available is not None and available < file_bytes + GIB:
        unlimited_skip = (f"an unlimited run needs the file's {file_bytes / GIB:.1f} GiB and "
                          f"{available / GIB:.1f} GiB are available")

    def ms(limit_bytes: int, concurrency: int = conc) -> list[str]:
        return [modelstream, "stream", url, "--concurrency", str(concurrency),
                "--memory-limit", str(limit_bytes), "--json"]

    def runai(limit_bytes: int) -> list[str]:
        return [python, str(BENCH_DIR / "runai_bench.py"), url, "--concurrency", str(conc),
                "--memory-limit", str(limit_bytes), "--expect-bytes", str(data_bytes(str(model)))]

    def row(name: str, description: str, argv: list[str], skip: Optional[str] = None,
            **kwargs) -> Row:
        made = Row(name, description, argv, group="s3", env=env, server=server, **kwargs)
        made.skipped = every or skip
        return made

    bounds = [file_bytes * i // conc for i in range(conc + 1)]
    curls = [["curl", "-sS", "--noproxy", "*", "-o", "/dev/null",
              "-w", "%{http_code} %{size_download}",
              "-r", f"{bounds[i]}-{bounds[i + 1] - 1}", http_url] for i in range(conc)]
    rows = [
        row(f"curl-parallel-{conc}", f"{conc} curl processes at once, each GETting 1/{conc} of "
            "the file (Range) into /dev/null: the transport limit", curls[0], curl_skip,
            parallel=curls, parallel_lengths=[bounds[i + 1] - bounds[i] for i in range(conc)]),
        row("modelstream-s3", f"modelstream stream {url}, --memory-limit {limit}", ms(limit),
            memory_limit=limit),
        row("modelstream-s3-unlimited", f"modelstream stream {url}, unlimited memory", ms(-1),
            unlimited_skip),
    ]
    rows += make_fetch_rows(args, modelstream, model, url, env, row)
    if args.hugepages:
        rows += [
            row("modelstream-s3-hugepages", f"modelstream stream {url}, --memory-limit {limit}, "
                f"{args.hugepages} huge pages reserved", ms(limit), memory_limit=limit,
                hugepages=True),
            row("modelstream-s3-unlimited-hugepages", f"modelstream stream {url}, unlimited, "
                f"{args.hugepages} huge pages reserved", ms(-1), unlimited_skip, hugepages=True),
        ]
    rows += [
        row("runai-s3", f"Run:ai Model Streamer's S3 back end on {url}, "
            f"RUNAI_STREAMER_MEMORY_LIMIT={limit}", runai(limit), runai_skip,
            memory_limit=limit),
        row("runai-s3-unlimited", f"Run:ai Model Streamer's S3 back end on {url}, unlimited",
            runai(-1), runai_skip or unlimited_skip),
    ]
    for concurrency in args.s3_sweep:
        rows.append(row(f"modelstream-s3-c{concurrency}", f"modelstream stream {url}, "
                        f"--concurrency {concurrency}, --memory-limit {limit}",
                        ms(limit, concurrency), memory_limit=limit))
    return rows


def make_fetch_rows(args: argparse.Namespace, modelstream: str, model: Path, url: str,
                    env: Optional[dict], row: Callable[..., Row]) -> list[Row]:
    """The fetch rows: `modelstream fetch` of the same object from the same nginx into a node
    cache emptied before every run, at the curl rows' concurrency: on tmpfs with
    huge=within_size (where a node cache lives; needs root to mount and the file's size in free
    memory besides its page cache) and on disk (the data directory's file system)."""
    file_bytes = model.stat().st_size
    conc = args.concurrency
    key = s3_bench.object_key(model)
    data_dir = Path(args.data).resolve()
    if env is not None:
        # Flags win over MODELSTREAM_* settings, but a node rate, a config file or a budget
        # left in the caller's environment would still change what is measured.
        env = {k: v for k, v in env.items() if not k.startswith("MODELSTREAM_")}
    tmpfs = FetchCache("tmpfs", Path(tempfile.gettempdir()), key, file_bytes + 256 * MIB)
    disk = FetchCache("disk", data_dir, key, file_bytes)
    # Memory and disk space are checked when each row starts (FetchCache.shortfall): the tmpfs
    # copy of the tmpfs rows, if they ran, is still mounted then.
    tmpfs_skip = None if os.geteuid() == 0 else "mounting tmpfs needs root"

    def fetch(cache: FetchCache, *extra: str) -> list[str]:
        # --log-format json rather than -q: the "done" event tells the harness that this run
        # downloaded every byte itself. The chunk size is fetch's default for object storage.
        return [modelstream, "fetch", url, "--cache", str(cache.path), "--concurrency",
                str(conc), "--log-format", "json", *extra]

    rows = [
        row("modelstream-fetch-tmpfs", f"modelstream fetch {url} --concurrency {conc} into a "
            "fresh node cache on tmpfs huge=within_size (adaptive window, at most "
            f"{conc} reads in flight)", fetch(tmpfs), tmpfs_skip, fetch_cache=tmpfs),
        row("modelstream-fetch-tmpfs-fixed", f"the same with --fixed-concurrency: {conc} reads "
            f"in flight throughout, as the {conc} curls", fetch(tmpfs, "--fixed-concurrency"),
            tmpfs_skip, fetch_cache=tmpfs),
        row("modelstream-fetch-disk", f"modelstream fetch {url} --concurrency {conc} into a "
            f"fresh node cache on disk ({data_dir}; the file is fdatasynced before it is "
            "published)", fetch(disk), fetch_cache=disk),
    ]
    for made in rows:
        made.env = env
    return rows


def select_rows(rows: list[Row], only: Optional[str]) -> list[Row]:
    """Keeps the rows that --only names: comma-separated names, shell patterns, or the group
    name "s3" (every S3 row)."""
    if not only:
        return rows
    patterns = [p.strip() for p in only.split(",") if p.strip()]

    def matches(row: Row, pattern: str) -> bool:
        return fnmatch.fnmatchcase(row.name, pattern) or row.group == pattern

    for pattern in patterns:
        if not any(matches(row, pattern) for row in rows):
            raise BenchError(f"--only: no row matches {pattern!r}; rows are "
                             + ", ".join(row.name for row in rows) + ", and the group s3")
    return [row for row in rows if any(matches(row, pattern) for pattern in patterns)]


def measure_rss_floor() -> int:
    """The peak RSS that a trivial child reports now. At exec the kernel folds the peak RSS of
    the memory the child had before (this harness's) into the child's ru_maxrss, as a maximum
    rather than a sum: a figure above this floor is exact, one at the floor only says "no more
    than this". The floor is the harness's own peak so far, so it is measured after every run."""
    run = run_once(Row("floor", "true(1)", ["true"], devnull_stdout=True), 0)
    return run["peak_rss_bytes"]


def run_row(row: Row, repeat: int, cache: PageCache, file_bytes: int) -> None:
    """Runs a row repeat times; stops at its first failure, which is then reported."""
    for index in range(repeat):
        if row.fetch_cache is not None:
            row.fetch_cache.fresh()  # untimed: the last run's cache removed, an empty one made
        cached = cache.prepare(row.cold)
        run = run_once(row, file_bytes)
        run["page_cache_fraction_before"] = cached
        # Measured after the run: the harness's peak only grows, so this covers what it passed on.
        run["rss_floor_bytes"] = measure_rss_floor()
        row.runs.append(run)
        state = "-" if cached is None else f"{cached * 100:.0f}%"
        if run["ok"]:
            cpu = ""
            if row.cpu and run.get("cpu_seconds_per_gb") is not None:
                cpu = (f", CPU {run['cpu_seconds_per_gb']:.2f} s/GB "
                       f"({run['cpu_cores']:.2f} cores")
                if run.get("server_cpu_cores") is not None:
                    cpu += f", nginx {run['server_cpu_cores']:.2f}"
                if run.get("irq_cpu_cores") is not None:
                    cpu += f", irq {run['irq_cpu_cores']:.2f}"
                if run.get("other_cpu_cores") is not None:
                    cpu += f", other {run['other_cpu_cores']:.2f}"
                if run.get("machine_cpu_cores") is not None:
                    cpu += f", machine {run['machine_cpu_cores']:.2f}"
                cpu += ")"
            log(f"  {row.name} [{index + 1}/{repeat}] {fmt_gbps(run['gbps'])} GB/s, "
                f"first tensor {fmt_seconds(run['ttft_seconds'])}, "
                f"peak RSS {fmt_mib(run['peak_rss_bytes'])}{cpu}, cached before {state}")
        else:
            row.failed = True
            log(f"  {row.name} [{index + 1}/{repeat}] FAILED (exit {run['exit_code']}): "
                f"{run.get('error', '')}\n{run.get('stderr_tail', '').rstrip()}")
            return


# ---------------------------------------------------------------------------------------------
# Reporting


def row_notes(row: Row) -> str:
    """The one thing worth knowing about a row's runs, beyond the table's columns."""
    if row.skipped:
        return f"skipped: {row.skipped}"
    if row.failed:
        return f"FAILED: {row.error}" if row.error else "FAILED"
    runs = row.ok_runs()
    if not runs:
        return ""
    report = runs[-1].get("report", {})
    if row.group == "s3":
        return s3_notes(row, report)
    if row.name.startswith("memcpy"):
        return (f"fresh 4K {fmt_gbps(row.median('gbps_fresh_4k'))}, fresh THP "
                f"{fmt_gbps(row.median('gbps_thp'))}, prefaulted 4K "
                f"{fmt_gbps(row.median('gbps_prefaulted_4k'))} GB/s (medians)")
    if "arena_huge_pages" in report:
        # hugetlb pages are not in RSS, so a huge-page arena is shown here instead.
        return f"arena huge pages {report['arena_huge_pages']}"
    if row.name.startswith("runai"):
        return (f"ring {report.get('ring_buffers')} x {fmt_mib(report.get('ring_buffer_bytes'))}"
                f", baseline RSS {fmt_mib(report.get('rss_baseline_bytes'))}")
    if row.name.startswith("safetensors"):
        return (f"{report.get('backend')}, force={report.get('force')}, baseline RSS "
                f"{fmt_mib(report.get('rss_baseline_bytes'))}")
    return ""


def s3_notes(row: Row, report: dict) -> str:
    """CPU use of client and server (on a 2-core machine their sum says whether a row is CPU
    bound), and what the row's program reported about its memory."""
    notes = []
    cores = row.median("cpu_cores")
    server = row.median("server_cpu_cores")
    machine = row.median("machine_cpu_cores")
    irq = row.median("irq_cpu_cores")
    other = row.median("other_cpu_cores")
    if cores is not None:
        shown = f"cores: client {cores:.2f}"
        if server is not None:
            shown += f", nginx {server:.2f}"
        if irq is not None:
            shown += f", irq {irq:.2f}"
        if other is not None:
            shown += f", other {other:.2f}"
        if machine is not None:
            shown += f" = {machine:.2f} of {os.cpu_count()}"
        notes.append(shown)
    if row.parallel is not None:
        # The sum over the processes would add up each one's inherited floor; not shown.
        notes.append("peak RSS: the largest single curl")
    if row.fetch_cache is not None:
        shown = ("cache: tmpfs huge=within_size" if row.fetch_cache.medium == "tmpfs"
                 else "cache: disk")
        huge = row.median("huge_fraction")
        if huge is not None:
            shown += f", {huge * 100:.0f}% in 2 MiB pages"
        notes.append(shown)
        engine = row.median("engine_gbps")
        if engine is not None:
            notes.append(f"engine's own clock {engine:.2f} GB/s (without start-up)")
        window = row.median("final_window")
        if window is not None:
            notes.append(f"window at the end {window:g}")
        # The fetch maps the cache file it writes: its pages count in its RSS.
        notes.append("peak RSS includes the mapped cache file")
    if "arena_pages" in report:
        notes.append(f"arena: {report['arena_pages']}")
    elif "arena_huge_pages" in report:
        notes.append(f"arena huge pages {report['arena_huge_pages']}")
    if row.name.startswith("runai"):
        streaming = row.median("cpu_seconds_per_gb_streaming")
        if streaming is not None:
            notes.append(f"{streaming:.2f} CPU s/GB while streaming (without start-up)")
        notes.append(f"baseline RSS {fmt_mib(report.get('rss_baseline_bytes'))}")
    return "; ".join(notes)


def lift_runai_streaming_cpu(row: Row) -> None:
    """runai_bench.py reports the CPU time of its timed section: per GB at the run level, so that
    the notes can show what the streaming cost without the interpreter's and torch's start."""
    for run in row.ok_runs():
        cpu = run.get("report", {}).get("cpu_seconds_streaming")
        if cpu is not None and run.get("bytes"):
            run["cpu_seconds_per_gb_streaming"] = cpu / (run["bytes"] / 1e9)


def lift_memcpy_variants(row: Row) -> None:
    """Copies memcpy_bench's extra figures to the run level so that best/median apply to them."""
    for run in row.ok_runs():
        report = run.get("report", {})
        for key in ("gbps_fresh_4k", "gbps_thp", "gbps_prefaulted_4k"):
            run[key] = report.get(key)


def print_table(rows: list[Row], memcpy: Optional[float], repeat: int) -> None:
    header = ("name", "GB/s best", "GB/s median", "first tensor", "peak RSS", "CPU s/GB",
              "x memcpy", "notes")
    lines = [header]
    for row in rows:
        lines.append((row.name, fmt_gbps(row.best()), fmt_gbps(row.median()),
                      fmt_seconds(row.median("ttft_seconds")),
                      fmt_rss(row.peak_rss(), row.rss_floor()),
                      fmt_cpu(row.median("cpu_seconds_per_gb")) if row.cpu else "-",
                      fmt_ratio(row.median(), memcpy), row_notes(row)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    print(f"\nresults: {repeat} run(s) per row; first tensor is the median, peak RSS the "
          "largest; x memcpy compares medians")
    print("peak RSS: a child reports at least this harness's own peak, so '<=' marks an upper "
          "bound; hugetlb pages are not counted in RSS")
    print("CPU s/GB: user + system seconds of the whole program (start-up included) per 10^9 "
          "bytes, median")
    if any(row.server is not None and row.ok_runs() for row in rows):
        print("S3 notes, cores busy (medians): client = the program, nginx = master + workers, "
              "irq = interrupts and softirq (loopback), other = the rest of the machine (other "
              "processes: should be ~0), = the whole machine")
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:-1], widths[1:])]
        print("  ".join(cells) + "  " + line[-1])
        if number == 0:
            print("  ".join("-" * width for width in widths) + "  " + "-" * 5)


def compute_targets(rows: dict[str, Row], limit: int) -> list[dict]:
    """The target ratios, from medians (best-of-K alongside). Reported, never asserted."""

    def gbps(name: str, best: bool = False) -> Optional[float]:
        row = rows.get(name)
        if row is None or row.failed:
            return None
        return row.best() if best else row.median()

    def target(label: str, num: str, den: str, goal: Optional[float]) -> dict:
        value = ratio(gbps(num), gbps(den))
        return {"target": label, "numerator": num, "denominator": den, "value": value,
                "best_of_runs": ratio(gbps(num, True), gbps(den, True)), "goal": goal,
                "met": None if value is None or goal is None else value >= goal}

    targets = [
        target("hot modelstream / memcpy", "modelstream-hot", "memcpy", 0.8),
        target("hot modelstream, reserved huge pages / memcpy", "modelstream-hot-hugepages",
               "memcpy", 0.8),
        target("hot limited modelstream / memcpy", "modelstream-hot-limited", "memcpy", 0.8),
        target("hot modelstream / hot Run:ai", "modelstream-hot", "runai-hot", 1.5),
        target("limited / unlimited modelstream", "modelstream-hot-limited",
               "modelstream-hot", 0.9),
    ]
    targets += [
        target("hot mapped delivery / hot cat", "modelstream-hot-mapped", "cat-hot", 5.0),
        target("hot limited (ring, copy) / hot cat", "modelstream-hot-limited", "cat-hot", 0.9),
        target("hot mapped / hot copy, unlimited", "modelstream-hot-mapped", "modelstream-hot",
               None),
        target("tmpfs mapped delivery / tmpfs cat", "modelstream-tmpfs-mapped", "cat-tmpfs",
               5.0),
        target("tmpfs limited (ring, copy) / tmpfs cat", "modelstream-tmpfs-limited",
               "cat-tmpfs", 0.9),
        target("tmpfs mapped / tmpfs copy, unlimited", "modelstream-tmpfs-mapped",
               "modelstream-tmpfs-copy", None),
    ]
    curl = next((name for name in rows if name.startswith("curl-parallel-")), "curl-parallel")
    targets += [
        target("S3 modelstream / curl-parallel", "modelstream-s3", curl, 0.9),
        target("S3 modelstream / S3 Run:ai", "modelstream-s3", "runai-s3", 1.5),
        target("S3 fetch to tmpfs / curl-parallel", "modelstream-fetch-tmpfs", curl, 0.95),
        target("S3 fetch to tmpfs, fixed conc. / curl-parallel",
               "modelstream-fetch-tmpfs-fixed", curl, 0.95),
    ]

    def peak_target(label: str, name: str) -> dict:
        row = rows.get(name)
        peak = row.peak_rss() if row is not None and not row.failed else None
        return {"target": label, "value": peak, "goal": limit + RSS_ALLOWANCE,
                "met": None if peak is None else peak <= limit + RSS_ALLOWANCE}

    targets.append(peak_target("limited modelstream peak RSS <= limit + 64 MiB",
                               "modelstream-hot-limited"))
    targets.append(peak_target("S3 limited modelstream peak RSS <= limit+64 MiB",
                               "modelstream-s3"))
    # For information: like-for-like cold comparisons, and what reserved huge pages buy.
    targets += [
        target("cold modelstream / cold cat", "modelstream-cold", "cat-cold", None),
        target("cold modelstream / cold Run:ai", "modelstream-cold", "runai-cold", None),
        target("cold limited modelstream / cold limited Run:ai", "modelstream-cold-limited",
               "runai-cold-limited", 1.5),
        target("THP / small-page arena, unlimited hot", "modelstream-hot",
               "modelstream-hot-small-pages", None),
        target("hot modelstream / hot cat", "modelstream-hot", "cat-hot", None),
        target("modelstream with / without reserved huge pages", "modelstream-hot-hugepages",
               "modelstream-hot", None),
        target("S3 unlimited modelstream / curl-parallel", "modelstream-s3-unlimited", curl,
               None),
        target("S3 modelstream, huge pages / curl-parallel", "modelstream-s3-hugepages", curl,
               None),
        target("S3 unlimited, huge pages / curl-parallel", "modelstream-s3-unlimited-hugepages",
               curl, None),
        target("S3 unlimited modelstream / S3 unlimited Run:ai", "modelstream-s3-unlimited",
               "runai-s3-unlimited", None),
        target("S3 / local (hot), limited modelstream", "modelstream-s3",
               "modelstream-hot-limited", None),
        target("S3 fetch to disk / curl-parallel", "modelstream-fetch-disk", curl, None),
        target("S3 fetch to tmpfs / S3 unlimited stream", "modelstream-fetch-tmpfs",
               "modelstream-s3-unlimited", None),
    ]
    return targets


def print_targets(targets: list[dict]) -> None:
    print("\ntargets (medians; best-of-runs in brackets) - reported, not asserted")
    for item in targets:
        label = item["target"]
        if "numerator" not in item:  # the peak-RSS target
            value = item["value"]
            shown = "-" if value is None else f"{fmt_mib(value)} vs {fmt_mib(item['goal'])}"
        else:
            value = item["value"]
            best = item["best_of_runs"]
            shown = "-" if value is None else f"{value:.2f}x [{best:.2f}x]"
            if item["goal"] is not None:
                shown += f"  goal >= {item['goal']:g}x"
        verdict = {True: "met", False: "MISSED", None: "n/a"}[item["met"]]
        if item.get("goal") is None:
            verdict = "info" if item["value"] is not None else "n/a"
        print(f"  {label:<48} {shown:<36} {verdict}")


def s3_settings(server: Optional[s3_bench.NginxS3], rows: list[Row]) -> Optional[dict]:
    """How the S3 rows were served, when any ran."""
    if server is None or not any(row.group == "s3" and row.runs for row in rows):
        return None
    versions = {}
    for name in ("runai-model-streamer", "runai-model-streamer-s3"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    nginx_version = None
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        nginx_version = subprocess.run([server.nginx, "-v"], capture_output=True, text=True,
                                       check=True).stderr.strip()
    env = server.client_env({})
    return {"nginx": server.nginx, "nginx_version": nginx_version, "url": server.s3_url,
            "endpoint": server.endpoint, "config": str(s3_bench.TEMPLATE),
            "client_env": {k: v for k, v in env.items()
                           if k.startswith(("AWS_", "RUNAI_"))}, "packages": versions}


def machine_info() -> dict:
    info = {"kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError):
        info["transparent_hugepage"] = Path(
            "/sys/kernel/mm/transparent_hugepage/enabled").read_text(encoding="ascii").strip()
    return info


# ---------------------------------------------------------------------------------------------


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from error
    if not values or any(not 1 <= value <= 256 for value in values):
        raise argparse.ArgumentTypeError("concurrencies must be 1-256")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark modelstream against memcpy, cat, Run:ai Model Streamer and "
                    "Python safetensors.")
    parser.add_argument("--build", default="build",
                        help="build directory holding modelstream and mkmodel (default: build)")
    parser.add_argument("--data", default=str(REPO / "bench-data"),
                        help="where the model and results.json go (default: bench-data/)")
    parser.add_argument("--file", help="benchmark this safetensors file instead of generating "
                                       "one with mkmodel")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="reader concurrency for modelstream and Run:ai (default 16)")
    parser.add_argument("--memory-limit", type=parse_size, default=512 * MIB,
                        help="memory limit of the limited rows, bytes or K/M/G (default 512M)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per row; best and median are reported (default 3)")
    parser.add_argument("--only", help="comma-separated row names or patterns, e.g. "
                                       "'memcpy,modelstream-*'; 's3' selects every S3 row")
    parser.add_argument("--hugepages", type=int, default=0, metavar="N",
                        help="also run modelstream hot and over S3 with N 2 MiB huge pages "
                             "reserved (vm.nr_hugepages), restored afterwards")
    parser.add_argument("--s3-sweep", type=concurrency_list, default=[], metavar="N,N,...",
                        help="also run modelstream-s3 at each of these concurrencies "
                             "(rows modelstream-s3-cN), e.g. 4,8,16,32")
    args = parser.parse_args()
    if args.concurrency < 1 or args.repeat < 1 or args.hugepages < 0:
        parser.error("--concurrency and --repeat must be >= 1, --hugepages >= 0")
    if args.memory_limit <= 0:
        parser.error("--memory-limit must be a positive number of bytes")
    return args


def main() -> int:
    args = parse_args()
    build = (REPO / args.build).resolve()
    data_dir = Path(args.data).resolve()
    is_root = os.geteuid() == 0
    if args.hugepages and not is_root:
        raise BenchError("--hugepages needs root (it writes /proc/sys/vm/nr_hugepages)")

    # SIGTERM and SIGHUP unwind like Ctrl-C, so that reserved huge pages are given back.
    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)

    model = Path(args.file).resolve() if args.file else ensure_model(build, data_dir)
    if not model.is_file():
        raise BenchError(f"{model}: no such file")
    memcpy = build_memcpy_bench(build)
    file_bytes = model.stat().st_size
    nginx = s3_bench.find_nginx()
    server = s3_bench.NginxS3(model, nginx) if nginx else None
    tmpfs = TmpfsCopy(model) if is_root else None  # mounting tmpfs needs root
    rows = select_rows(make_rows(args, build, model, memcpy, server, tmpfs), args.only)
    cache = PageCache(model)
    log(f"run_bench: {model} ({file_bytes / GIB:.2f} GiB), concurrency {args.concurrency}, "
        f"{args.repeat} run(s) per row")

    server_error = None
    with contextlib.ExitStack() as stack:  # stops nginx however the loop ends
        for row in rows:
            if row.skipped:
                log(f"  {row.name}: skipped ({row.skipped})")
                continue
            if row.cold and not is_root:
                row.skipped = "dropping the page cache needs root"
                log(f"  {row.name}: skipped ({row.skipped})")
                continue
            if row.group == "s3" and server is not None and server.proc is None \
                    and server_error is None:
                try:
                    stack.enter_context(server)
                    log(f"run_bench: nginx ({server.nginx}) serves {model.name} as "
                        f"{server.s3_url} at {server.endpoint}")
                except s3_bench.ServerError as error:
                    server_error = f"nginx did not start: {error}"
                    log(f"run_bench: {server_error}")
            if row.group == "tmpfs" and tmpfs is not None and not tmpfs.mounted:
                stack.enter_context(tmpfs)
                log(f"run_bench: the model copied to tmpfs huge=within_size at {tmpfs.path}")
            if row.fetch_cache is not None and not row.fetch_cache.entered \
                    and server_error is None:
                try:
                    stack.enter_context(row.fetch_cache)
                    log(f"run_bench: node cache for the fetch rows on {row.fetch_cache.medium} "
                        f"at {row.fetch_cache.path}")
                except OSError as error:
                    row.failed = True
                    row.error = str(error)
                    log(f"  {row.name}: FAILED ({row.error})")
                    continue
            if row.fetch_cache is not None and row.fetch_cache.entered:
                row.skipped = row.fetch_cache.shortfall(file_bytes)
                if row.skipped:
                    log(f"  {row.name}: skipped ({row.skipped})")
                    continue
            if row.group == "s3" and server_error is not None:
                row.failed = True
                row.error = server_error.splitlines()[0]
                log(f"  {row.name}: FAILED ({row.error})")
                continue
            if row.hugepages:
                with reserved_hugepages(args.hugepages) as reserved:
                    row.description += f" ({reserved} reserved)"
                    run_row(row, args.repeat, cache, file_bytes)
            else:
                run_row(row, args.repeat, cache, file_bytes)
            if row.name.startswith("memcpy"):
                lift_memcpy_variants(row)
            if row.name.startswith("runai"):
                lift_runai_streaming_cpu(row)

    by_name = {row.name: row for row in rows}
    memcpy_row = by_name.get("memcpy")
    memcpy_gbps = memcpy_row.median() if memcpy_row is not None else None
    print_table(rows, memcpy_gbps, args.repeat)
    targets = compute_targets(by_name, args.memory_limit)
    print_targets(targets)

    results = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": machine_info(),
        "settings": {"file": str(model), "file_bytes": file_bytes,
                     "concurrency": args.concurrency, "memory_limit": args.memory_limit,
                     "repeat": args.repeat, "hugepages": args.hugepages,
                     "s3": s3_settings(server, rows)},
        "rows": [{"name": row.name, "group": row.group, "description": row.description,
                  "command": row.parallel if row.parallel is not None else row.argv,
                  "cold": row.cold, "skipped": row.skipped, "failed": row.failed,
                  "error": row.error,
                  "median_cpu_seconds_per_gb": row.median("cpu_seconds_per_gb"),
                  "best_gbps": row.best(), "median_gbps": row.median(),
                  "median_ttft_seconds": row.median("ttft_seconds"),
                  "peak_rss_bytes": row.peak_rss(),
                  "ratio_to_memcpy": ratio(row.median(), memcpy_gbps), "runs": row.runs}
                 for row in rows],
        "targets": targets,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    results_path = data_dir / "results.json"
    results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults written to {results_path}")
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"run_bench: {error}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("run_bench: interrupted")
        sys.exit(130)
