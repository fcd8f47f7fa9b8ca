#!/usr/bin/env python3
"""Measurement side of tests/netns_tests.sh: wire counters and the figures of a shared-link run.

Two subcommands, standard library only:

  sample OUT PORT...
      Run inside the bridge's network namespace. Every 50 ms appends one line to OUT:
      "WALLCLOCK TX_BYTES(PORT1) TX_BYTES(PORT2) ... CPU_BUSY_JIFFIES CPU_TOTAL_JIFFIES", the
      bytes the bridge has sent down each node's port (from /proc/net/dev, which shows the
      reader's namespace) and the machine's CPU counters (/proc/stat, the whole VM). Stops on
      SIGTERM or SIGINT, after flushing.

  report --label L --link-bits R --samples FILE --ports P1,P2 --logs A.json,B.json [...]
      Reads the samplers' file and each node's `modelstream fetch --log-format json` output and
      prints the figures ("# ..." lines) and one line per check, "PASS text" or "FAIL text",
      for the shell to turn into ok / not ok. Exits 0 whatever the checks say (1 if the input
      cannot be read at all, which the shell reports as a failure).

Figures. Each node's start is the wall-clock time of its first JSON event minus that event's
"seconds" (the fetch's own clock), its end the time of its "done" event. The overlap window
runs from the last node's start to the first node's end: every node is fetching throughout.
  - wire: bytes the bridge sent to each node during the window (whole Ethernet frames, the
    unit the router's tbf meters, as the server sends wire-sized packets: gso_max_segs 1),
    linearly interpolated between 50 ms samples. Shares, and the
    aggregate against the link rate, come from these.
  - client view: each node's bytes_fetched from its progress lines, interpolated at the
    window's ends. bytes_fetched moves in whole chunks (8 MiB by default), so these shares
    are coarse; they are printed as a cross-check, not asserted on.
  - goodput: all the bytes the nodes stored divided by the makespan (first start to last
    end), ramp-up and tail included: the application-level aggregate.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import time

# TCP/IPv4 with timestamps over Ethernet (MTU 1500): 1448 payload bytes per 1514-byte frame,
# which is what the tbf counts. The best goodput a link can give is this fraction of its rate.
PAYLOAD_PER_FRAME = 1448 / 1514


# --- sample --------------------------------------------------------------------------------

def read_tx(ports):
    found = {}
    with open("/proc/net/dev", encoding="ascii") as f:
        for line in f.readlines()[2:]:
            name, _, rest = line.partition(":")
            fields = rest.split()
            found[name.strip()] = int(fields[8])  # transmit bytes
    return [found[p] for p in ports]


def read_cpu():
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


def sample(out, ports, interval=0.05):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with open(out, "w", encoding="ascii") as f:
        while True:
            busy, total = read_cpu()
            values = read_tx(ports)
            f.write("%.4f %s %d %d\n" % (time.time(), " ".join(map(str, values)), busy, total))
            f.flush()
            if stop:
                return 0
            time.sleep(interval)


# --- report --------------------------------------------------------------------------------

def parse_time(text):
    # "2026-11-25T23:58:48.931Z"
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def interp(series, t):
    """Linear interpolation in [(t, value), ...] sorted by t; clamped at the ends."""
    if not series:
        return 0.0
    if t <= series[0][0]:
        return float(series[0][1])
    for (t0, v0), (t1, v1) in zip(series, series[1:]):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return float(series[-1][1])


class Node:
    def __init__(self, path):
        self.path = path
        events = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    events.append(json.loads(line))
        timed = [e for e in events if "time" in e and "seconds" in e]
        done = [e for e in events if e.get("event") == "done"]
        if not timed or not done:
            raise ValueError("%s: no timed events or no done event" % path)
        self.start = parse_time(timed[0]["time"]) - timed[0]["seconds"]
        self.end = parse_time(done[-1]["time"])
        self.bytes = done[-1]["bytes_fetched"]
        self.throttled = done[-1].get("throttled", 0)
        self.retries = done[-1].get("retries", 0)
        self.series = [(self.start, 0)]
        self.in_flight = []
        self.flight_at = []
        for e in events:
            if e.get("event") in ("progress", "file") and "bytes_fetched" in e:
                self.series.append((parse_time(e["time"]), e["bytes_fetched"]))
                if e.get("event") == "progress" and "reads_in_flight" in e:
                    self.in_flight.append(e["reads_in_flight"])
                    self.flight_at.append((parse_time(e["time"]), e["reads_in_flight"]))
        self.series.append((self.end, self.bytes))


def mb(x):
    return x / 1e6


def report(a):
    ports = a.ports.split(",")
    nodes = [Node(p) for p in a.logs.split(",")]
    names = a.names.split(",") if a.names else ["node%d" % (i + 1) for i in range(len(nodes))]
    rows = []
    with open(a.samples, encoding="ascii") as f:
        for line in f:
            v = line.split()
            if len(v) == len(ports) + 3:
                rows.append([float(v[0])] + [int(x) for x in v[1:]])
    if len(rows) < 2:
        raise ValueError("%s: fewer than two samples" % a.samples)
    wire = [[(r[0], r[1 + i]) for r in rows] for i in range(len(ports))]
    cpu_busy = [(r[0], r[-2]) for r in rows]
    cpu_total = [(r[0], r[-1]) for r in rows]

    n = len(nodes)
    link_bytes = a.link_bits / 8.0
    t0 = max(x.start for x in nodes)
    t1 = min(x.end for x in nodes)
    first, last = min(x.start for x in nodes), max(x.end for x in nodes)
    skew_ms = (t0 - first) * 1000
    window = t1 - t0
    checks = []
    print("# %s: %d nodes on one %.0f Mbit/s link (%.2f MB/s), start skew %.1f ms, "
          "overlap window %.2f s of a %.2f s makespan"
          % (a.label, n, a.link_bits / 1e6, mb(link_bytes), skew_ms, window, last - first))
    if rows[0][0] > first or rows[-1][0] < last:
        checks.append((False, "%s: the wire samples cover the whole run" % a.label))
    if window < a.min_window:
        checks.append((False, "%s: every node fetched at once for at least %.0f s (only %.2f s)"
                       % (a.label, a.min_window, window)))
        for ok, text in checks:
            print(("PASS " if ok else "FAIL ") + text)
        return 0

    w_bytes = [interp(s, t1) - interp(s, t0) for s in wire]
    c_bytes = [interp(x.series, t1) - interp(x.series, t0) for x in nodes]
    w_total, c_total = sum(w_bytes), sum(c_bytes)
    app_total = sum(x.bytes for x in nodes)
    wire_all = sum(interp(s, last) - interp(s, first) for s in wire)
    busy = interp(cpu_busy, t1) - interp(cpu_busy, t0)
    total = interp(cpu_total, t1) - interp(cpu_total, t0)
    cpu = busy / total if total > 0 else float("nan")
    goodput = app_total / (last - first)

    print("# %-8s %9s %9s %8s %8s %10s %7s %7s %9s %s"
          % ("node", "wire MB/s", "share", "x fair", "client", "cl. share", "x fair",
             "run s", "in-flight", "options"))
    fair = 1.0 / n
    ratios = []
    for i, x in enumerate(nodes):
        ws = w_bytes[i] / w_total if w_total else 0.0
        cs = c_bytes[i] / c_total if c_total else 0.0
        ratios.append(ws / fair)
        inflight = ("%d-%d" % (min(x.in_flight), max(x.in_flight))) if x.in_flight else "-"
        print("# %-8s %9.2f %8.1f%% %8.2f %7.2f %9.1f%% %7.2f %7.2f %9s %s"
              % (names[i], mb(w_bytes[i] / window), ws * 100, ws / fair,
                 mb(c_bytes[i] / window), cs * 100, cs / fair, x.end - x.start, inflight,
                 (a.options.split(";")[i] if a.options else "")))
    util = w_total / window / link_bytes
    print("# aggregate during the window: wire %.2f MB/s = %.3f of the link rate; "
          "client view %.2f MB/s = %.3f (payload ceiling %.3f)"
          % (mb(w_total / window), util, mb(c_total / window), c_total / window / link_bytes,
             PAYLOAD_PER_FRAME))
    print("# goodput over the whole run: %.1f MB stored in %.2f s = %.2f MB/s = %.3f of the link "
          "rate (wire/payload overhead %.3f); CPU busy %.0f%% (whole VM, during the window)"
          % (mb(app_total), last - first, mb(goodput), goodput / link_bytes,
             wire_all / app_total if app_total else 0, cpu * 100))
    throttled = sum(x.throttled for x in nodes)
    retries = sum(x.retries for x in nodes)
    print("# throttled %d, retries %d; fairness min/max x fair %.2f/%.2f, Jain index %.4f"
          % (throttled, retries, min(ratios), max(ratios),
             sum(w_bytes) ** 2 / (n * sum(b * b for b in w_bytes)) if w_total else 0))

    checks.append((goodput >= a.min_goodput * link_bytes,
                   "%s: aggregate goodput %.2f MB/s >= %.2f x the %.2f MB/s link (%.3f)"
                   % (a.label, mb(goodput), a.min_goodput, mb(link_bytes),
                      goodput / link_bytes)))
    checks.append((util >= a.min_goodput,
                   "%s: link utilisation while all %d fetched >= %.2f (%.3f)"
                   % (a.label, n, a.min_goodput, util)))
    lo, hi = 1 - a.tolerance, 1 + a.tolerance
    shares = ", ".join("%s %.2f" % (names[i], r) for i, r in enumerate(ratios))
    checks.append((all(lo <= r <= hi for r in ratios),
                   "%s: every node's share within %.0f%% of fair (x fair: %s)"
                   % (a.label, a.tolerance * 100, shares)))
    if a.timeline:
        print_timeline(nodes, names, wire, first, last)
    for ok, text in checks:
        print(("PASS " if ok else "FAIL ") + text)
    return 0


def print_timeline(nodes, names, wire, first, last):
    """Per-second wire MB/s of each node, and its reads in flight at that second."""
    print("# timeline (s: wire MB/s [reads in flight] per node)")
    t = first
    while t < last:
        cells = []
        for i, x in enumerate(nodes):
            rate = (interp(wire[i], t + 1) - interp(wire[i], t)) / 1e6
            flight = [e for e in x.flight_at if t <= e[0] < t + 1]
            cells.append("%s %6.2f [%s]" % (names[i], rate, flight[0][1] if flight else "-"))
        print("#  %5.1f  %s" % (t - first, "  ".join(cells)))
        t += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("out")
    s.add_argument("ports", nargs="+")
    r = sub.add_parser("report")
    r.add_argument("--label", required=True)
    r.add_argument("--link-bits", type=float, required=True, help="the shaped rate, bits/s")
    r.add_argument("--samples", required=True)
    r.add_argument("--ports", required=True, help="bridge ports, in the order of --logs")
    r.add_argument("--logs", required=True, help="each node's JSON log, comma-separated")
    r.add_argument("--names", default="")
    r.add_argument("--options", default="", help="each node's options, ';'-separated")
    r.add_argument("--min-goodput", type=float, default=0.8)
    r.add_argument("--tolerance", type=float, default=0.2)
    r.add_argument("--min-window", type=float, default=3.0)
    r.add_argument("--timeline", action="store_true", help="also print per-second rates")
    a = ap.parse_args()
    if a.cmd == "sample":
        return sample(a.out, a.ports)
    try:
        return report(a)
    except (OSError, ValueError, KeyError) as e:
        print("FAIL %s: the run's logs could be read (%s)" % (a.label, e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
