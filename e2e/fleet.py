#!/usr/bin/env python3
"""The fleet test: three nodes, a node agent and three pods on each, the real image.

Topology (network namespaces made here; no traffic leaves the machine):

  [srv]  the origin: moto's S3 behind a byte counter (e2e/origin.py), 10.231.1.1:5000
    |    veth
  [rtr]  router, its port to the nodes shaped with tbf to --rate-mbit; Prometheus runs here
    |    veth          and scrapes every agent at NODE_IP:9090
  [br]   bridge --- [n1] 10.231.0.11  cache: tmpfs huge=within_size (mounted by the agent)
                --- [n2] 10.231.0.12  cache: disk (a host directory)
                --- [n3] 10.231.0.13  cache: tmpfs huge=within_size
  each node's pods have a network namespace of their own ([n1-p1]...), loopback only: the
  kubelet's probes reach them there.

Every container is the real image under podman (scripts/image.sh podman), started from the
pod specs that the Helm chart renders with helm/modelstream/ci/e2e-values.yaml (one render
per node: its cache directory and medium), translated by e2e/kubelet.py, not retyped.

What it checks:
  - the origin serves each node the model once: bytes by client = model size per node, not
    per pod (a node whose agent is killed mid-fetch may fetch the chunks it had in flight
    again, and no more);
  - every pod reads bit-identical tensors (`modelstream stream --checksum` stands in for
    vLLM) equal to the source files;
  - /readyz gates each pod: the app container starts only once the sidecar's startupProbe
    passed, and pods that started before the model was there saw 503 first;
  - the agent on node 2, killed with SIGKILL mid-fetch, is started again (restartPolicy
    Always) and resumes;
  - on tmpfs the cache's pages are charged to the agent's memory cgroup, not the pods';
  - a rolling update from v1 to v2 through the ConfigMap: the agents prefetch v2, pods are
    replaced one by one, v1 stays while a v1 pod holds it and is evicted once none does;
  - the containers' stdout reads as the README says, and holds no secret;
  - a real Prometheus scrapes every agent.
It ends with a summary (per node: bytes from the origin; per pod: time to ready; retries,
throttling) and "N passed, M failed".

Usage: e2e/fleet.py --build BUILD_DIR [--rate-mbit 80] [--keep DIR]. Needs root, podman,
the image (make image), iproute2, tc, prometheus, curl, moto.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "k8s"))
sys.path.insert(0, HERE)

import kubelet  # noqa: E402
import podspec  # noqa: E402

PREFIX = "mse2e"
ORIGIN = "10.231.1.1"
NODES = [("n1", "10.231.0.11", "tmpfs-huge"), ("n2", "10.231.0.12", "disk"),
         ("n3", "10.231.0.13", "tmpfs-huge")]
KILLED_NODE = "n2"
ACCESS_KEY = "AKIDE2EFLEET"
SECRET_KEY = "e2e-fleet-secret-never-printed"
CHUNK = 16 << 20  # the agent's read size from object storage

passed = 0
failed = 0


def check(ok: bool, what: str, why: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok - {what}", flush=True)
    else:
        failed += 1
        print(f"not ok - {what}" + (f": {why}" if why else ""), flush=True)
    return ok


def sh(*cmd: str, check_rc: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def in_ns(name: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns(name), *cmd, **kw)


def http_get(netns: str, url: str, timeout: float = 3) -> tuple[int, str]:
    r = in_ns(netns, "curl", "-s", "--max-time", str(timeout), "-w", "\n%{http_code}", url,
              check_rc=False)
    body, _, code = r.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


class Fleet:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.cli = os.path.join(self.build, "modelstream")
        self.tmp = tempfile.mkdtemp(prefix="ms-e2e-")
        self.hosts = os.path.join(self.tmp, "hosts")
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.pods: list[kubelet.Pod] = []
        self.agents: dict[str, kubelet.Pod] = {}
        self.gone: list[kubelet.Pod] = []  # pods deleted, for the summary
        self.shared_mount = False
        self.log_lines: list[str] = []
        self.stop_monitor = threading.Event()

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log_lines.append(f"{stamp} {text}")
        if self.args.verbose:
            print(f"# {text}", flush=True)

    # -- the network ---------------------------------------------------------------------
    def mkns(self, name: str) -> None:
        sh("ip", "netns", "add", ns(name))
        self.namespaces.append(ns(name))
        sh("ip", "-n", ns(name), "link", "set", "dev", "lo", "up")

    def network(self) -> None:
        for n in ["srv", "rtr", "br"]:
            self.mkns(n)
        sh("ip", "-n", ns("br"), "link", "add", "name", "br0", "type", "bridge")
        sh("ip", "-n", ns("rtr"), "link", "add", "name", "es", "type", "veth", "peer", "name",
           "eth0", "netns", ns("srv"))
        sh("ip", "-n", ns("rtr"), "link", "add", "name", "en", "type", "veth", "peer", "name",
           "upl", "netns", ns("br"))
        rate = self.args.rate_mbit
        in_ns("rtr", "tc", "qdisc", "add", "dev", "en", "root", "handle", "1:", "tbf", "rate",
              f"{rate}mbit", "burst", "256kb", "latency", "20ms")
        for cmd in [
            ["ip", "-n", ns("srv"), "addr", "add", f"{ORIGIN}/24", "dev", "eth0"],
            ["ip", "-n", ns("srv"), "link", "set", "dev", "eth0", "gso_max_segs", "1", "up"],
            ["ip", "-n", ns("srv"), "route", "add", "default", "via", "10.231.1.254"],
            ["ip", "-n", ns("rtr"), "addr", "add", "10.231.1.254/24", "dev", "es"],
            ["ip", "-n", ns("rtr"), "addr", "add", "10.231.0.254/24", "dev", "en"],
            ["ip", "-n", ns("rtr"), "link", "set", "dev", "es", "up"],
            ["ip", "-n", ns("rtr"), "link", "set", "dev", "en", "up"],
            ["ip", "-n", ns("br"), "link", "set", "dev", "br0", "up"],
            ["ip", "-n", ns("br"), "link", "set", "dev", "upl", "master", "br0", "up"],
        ]:
            sh(*cmd)
        in_ns("srv", "sysctl", "-qw", "net.ipv4.tcp_congestion_control=reno")
        in_ns("rtr", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for node, ip, _ in NODES:
            self.mkns(node)
            sh("ip", "-n", ns("br"), "link", "add", "name", node, "type", "veth", "peer",
               "name", "eth0", "netns", ns(node))
            sh("ip", "-n", ns("br"), "link", "set", "dev", node, "master", "br0", "up")
            sh("ip", "-n", ns(node), "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns(node), "link", "set", "dev", "eth0", "up")
            sh("ip", "-n", ns(node), "route", "add", "default", "via", "10.231.0.254")

    # -- the origin and the models -------------------------------------------------------
    def origin(self) -> None:
        log = open(os.path.join(self.tmp, "origin.log"), "w")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns("srv"), sys.executable, os.path.join(HERE, "origin.py"),
             "--host", ORIGIN, "--port", "5000"], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while http_get("srv", f"http://{ORIGIN}:5000/__e2e/stats")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the origin did not start: " + open(log.name).read()[-500:])
            time.sleep(0.2)
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{ORIGIN}:5000",
               "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_EC2_METADATA_DISABLED": "true"}
        in_ns("srv", sys.executable, "-c",
              "import boto3; boto3.client('s3').create_bucket(Bucket='models')", env=env)
        self.models = {}
        mkmodel = os.path.join(self.build, "mkmodel")
        for i, name in enumerate(["tiny-v1", "tiny-v2"]):
            d = os.path.join(self.tmp, "models", name)
            os.makedirs(d)
            for shard in (1, 2):
                sh(mkmodel, "--seed", str(10 * i + shard), "--small-count", "200",
                   "--large-count", "2", "--large-bytes", f"{5 + shard}M",
                   os.path.join(d, f"model-0000{shard}-of-00002.safetensors"))
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"architectures": ["LlamaForCausalLM"], "version": name}, f)
            in_ns("srv", self.cli, "push", d + "/", f"s3://models/{name}/", "--quiet", env=env)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            checksums = sh(self.cli, "stream", d + "/", "--checksum", "--quiet").stdout
            self.models[name] = {"dir": d, "size": size, "checksums": checksums}
        in_ns("srv", "curl", "-s", "-X", "POST", f"http://{ORIGIN}:5000/__e2e/reset")

    def origin_stats(self) -> dict:
        return json.loads(http_get("srv", f"http://{ORIGIN}:5000/__e2e/stats")[1])

    # -- Prometheus ----------------------------------------------------------------------
    def prometheus(self) -> None:
        prom = shutil.which("prometheus") or "/usr/bin/prometheus"
        d = os.path.join(self.tmp, "prometheus")
        os.makedirs(d)
        targets = ", ".join(f"'{ip}:9090'" for _, ip, _ in NODES)
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: modelstream-agent\n"
                    f"    static_configs:\n      - targets: [{targets}]\n")
        log = open(os.path.join(d, "log"), "w")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns("rtr"), prom, f"--config.file={d}/prometheus.yml",
             f"--storage.tsdb.path={d}/data", "--web.listen-address=127.0.0.1:9099"],
            stdout=log, stderr=subprocess.STDOUT))

    def prom_query(self, query: str) -> list:
        q = urllib.parse.quote(query)
        code, body = http_get("rtr", f"http://127.0.0.1:9099/api/v1/query?query={q}")
        if code != 200:
            return []
        return json.loads(body)["data"]["result"]

    # -- rendering -----------------------------------------------------------------------
    def render(self, node: str, medium: str, model: str) -> dict:
        overrides = {
            "cache": {"medium": medium, "hostPath": os.path.join(self.hosts, node, "cache")},
            "models": [{"name": model, "source": f"s3://models/{model}/"}],
            "example": {"model": model, "args": ["stream", f"/cache/models/{model}", "--checksum"]},
        }
        objects = podspec.render(["ci/e2e-values.yaml"], overrides)
        cm = podspec.find(objects, "ConfigMap")
        return {
            "agent": podspec.pod_spec(podspec.find(objects, "DaemonSet")),
            "app": podspec.pod_spec(podspec.find(objects, "Deployment")),
            "replicas": podspec.find(objects, "Deployment")["spec"]["replicas"],
            "config_maps": {cm["metadata"]["name"]: cm["data"]},
        }

    def secrets(self) -> dict:
        return {"modelstream-s3": {"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                   "AWS_SECRET_ACCESS_KEY": SECRET_KEY}}

    # -- pods ----------------------------------------------------------------------------
    def new_pod(self, node: str, name: str, spec: dict, config_maps: dict,
                own_netns: bool) -> kubelet.Pod:
        netns = node
        if own_netns:
            self.mkns(f"{node}-{name}")
            netns = f"{node}-{name}"
        pod = kubelet.Pod(f"{PREFIX}-{node}-{name}", spec, ns(netns),
                          os.path.join(self.tmp, "pods", node, name), secrets=self.secrets(),
                          config_maps=config_maps, node_name=node, log=self.log)
        pod.node = node
        pod.short = name
        pod.netns_short = netns
        self.pods.append(pod)
        return pod

    def delete_pod(self, pod: kubelet.Pod) -> None:
        pod.stop()
        if pod.netns_short != pod.node:
            sh("ip", "netns", "del", ns(pod.netns_short), check_rc=False)
            self.namespaces.remove(ns(pod.netns_short))
        self.pods.remove(pod)
        self.gone.append(pod)

    def monitor(self) -> None:
        """restartPolicy Always for the agents: a dead agent container is started again."""
        while not self.stop_monitor.wait(0.5):
            for node, pod in list(self.agents.items()):
                if "agent" not in pod.started:
                    continue
                running, code = pod.state("agent")
                if not running:
                    self.log(f"{node}: agent exited {code}; restarting it (restartPolicy Always)")
                    pod.restarts = getattr(pod, "restarts", 0) + 1
                    try:
                        pod.restart("agent")
                    except RuntimeError as e:
                        self.log(f"{node}: restart failed: {e}")

    def agent_progress(self, node: str) -> dict:
        code, body = http_get(node, "http://127.0.0.1:9090/progress", timeout=1)
        return json.loads(body) if code == 200 else {}

    # -- the scenario --------------------------------------------------------------------
    def run(self) -> None:
        os.makedirs(self.hosts)
        # Bidirectional mount propagation needs a shared mount at the source, as on a node.
        sh("mount", "--bind", self.hosts, self.hosts)
        self.shared_mount = True
        sh("mount", "--make-rshared", self.hosts)
        self.network()
        self.origin()
        self.prometheus()
        v1, v2 = "tiny-v1", "tiny-v2"
        size1 = self.models[v1]["size"]
        renders = {node: self.render(node, medium, v1) for node, _, medium in NODES}
        check(all(r["replicas"] == 3 for r in renders.values()),
              "the chart renders a node agent DaemonSet and the example Deployment (3 replicas) "
              "for every node")
        threading.Thread(target=self.monitor, daemon=True).start()

        # Agents and pods start at once, as in a scale-up: the pods' sidecars wait.
        t0 = time.monotonic()
        starters = []
        for node, _, _ in NODES:
            r = renders[node]
            agent = self.new_pod(node, "agent", r["agent"], r["config_maps"], own_netns=False)
            self.agents[node] = agent
            starters.append(threading.Thread(target=self._start, args=(agent,)))
            for i in range(r["replicas"]):
                pod = self.new_pod(node, f"v1-{i}", r["app"], r["config_maps"], own_netns=True)
                pod.model = v1
                starters.append(threading.Thread(target=self._start, args=(pod,)))
        for t in starters:
            t.start()
        killed_at = self._kill_mid_fetch(KILLED_NODE, size1)
        for t in starters:
            t.join(timeout=240)
        apps = [p for p in self.pods if p.short.startswith("v1-")]
        for p in apps:
            p.exit_code = p.wait_exit("vllm", timeout=120) if "vllm" in p.started else -1
        self.check_phase(apps, v1, t0, first=True)
        check(killed_at is not None and getattr(self.agents[KILLED_NODE], "restarts", 0) >= 1,
              f"the agent on {KILLED_NODE}, killed with SIGKILL mid-fetch "
              f"({killed_at or 0:.0%} done), was restarted and finished",
              f"killed at {killed_at}, restarts {getattr(self.agents[KILLED_NODE], 'restarts', 0)}")
        stats = self.origin_stats()
        self.bytes_v1 = dict(stats["bytes_by_client"])
        for node, ip, medium in NODES:
            got = stats["bytes_by_client"].get(ip, 0)
            if node == KILLED_NODE:
                check(size1 <= got <= size1 + 4 * CHUNK,
                      f"{node} ({medium}, agent killed): the origin served the model once plus "
                      f"at most the reads in flight at the kill ({got} bytes, model {size1})")
            else:
                check(got == size1, f"{node} ({medium}): the origin served the model's bytes "
                      f"exactly once for 3 pods ({got} bytes, model {size1})")
        probes = {n: (a.probe("agent", "readinessProbe"), a.probe("agent", "livenessProbe"))
                  for n, a in self.agents.items()}
        check(all(r == 200 and l == 200 for r, l in probes.values()),
              "every agent passes the readinessProbe (/readyz) and livenessProbe (/healthz) "
              "the chart gives it", str(probes))
        self.check_memory_charge(v1)
        self.check_prometheus(size1)

        # The rolling update: the ConfigMap first, then the pods one by one.
        r2 = {node: self.render(node, medium, v2) for node, _, medium in NODES}
        t_update = time.monotonic()
        for node, _, _ in NODES:
            for cm, data in r2[node]["config_maps"].items():
                self.agents[node].update_config_map(cm, data)
        prefetched = self.wait_until(lambda: all(
            os.path.exists(os.path.join(self.hosts, n, "cache", "models", v2))
            for n, _, _ in NODES), 120)
        check(prefetched, f"every agent prefetched {v2} after the ConfigMap changed "
              f"({time.monotonic() - t_update:.1f} s)")
        check(all(os.path.exists(os.path.join(self.hosts, n, "cache", "models", v1))
                  for n, _, _ in NODES),
              f"{v1} stays in every cache while v1 pods hold it")
        new_apps = []
        evicted_after = {}
        for node, _, _ in NODES:
            old = [p for p in self.pods if p.node == node and p.short.startswith("v1-")]
            for i, old_pod in enumerate(old):
                pod = self.new_pod(node, f"v2-{i}", r2[node]["app"], r2[node]["config_maps"],
                                   own_netns=True)
                pod.model = v2
                self._start(pod)
                pod.exit_code = pod.wait_exit("vllm", timeout=120) if "vllm" in pod.started else -1
                new_apps.append(pod)
                if i == len(old) - 1:
                    check(os.path.exists(os.path.join(self.hosts, node, "cache", "models", v1)),
                          f"{node}: {v1} is still there before its last pod goes")
                stop_at = time.monotonic()
                self.delete_pod(old_pod)
            gone = self.wait_until(lambda: not os.path.exists(
                os.path.join(self.hosts, node, "cache", "models", v1)), 30)
            evicted_after[node] = time.monotonic() - stop_at
            check(gone, f"{node}: {v1} evicted once its last pod was gone "
                  f"({evicted_after[node]:.1f} s after, grace 2 s)")
        self.check_phase(new_apps, v2, t_update, first=False)
        stats = self.origin_stats()
        for node, ip, _ in NODES:
            got = stats["bytes_by_client"].get(ip, 0) - self.bytes_v1.get(ip, 0)
            check(got == self.models[v2]["size"],
                  f"{node}: the update took {v2} from the origin once ({got} bytes)")
        self.check_logs()
        self.summary(stats)

    def _start(self, pod: kubelet.Pod) -> None:
        try:
            pod.start(timeout=240)
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            pod.error = str(e)
            self.log(f"{pod.name}: {e}")

    def wait_until(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        return cond()

    def _kill_mid_fetch(self, node: str, size: int):
        """Kills the node's agent with SIGKILL once it has fetched part of the model."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            p = self.agent_progress(node)
            for m in p.get("models", []):
                done = m.get("bytes_done") or 0
                if 0.15 * size <= done <= 0.7 * size:
                    self.agents[node].kill("agent")
                    self.log(f"{node}: killed the agent at {done} of {size} bytes")
                    return done / size
            time.sleep(0.05)
        return None

    def explain_failed_pod(self, pod, model: str) -> None:
        """Prints what a failed app container saw, for the next person to read the log: its
        probes, its sidecar's log, the node cache as the host sees it and as the pod does."""
        print(f"# {pod.name}: probes (s after creation, container, status): " + ", ".join(
            f"{t - pod.created:.1f} {c} {st}" for t, c, st in pod.probe_log))
        print(f"# {pod.name}: started: " + ", ".join(
            f"{c} {t - pod.created:.1f}" for c, t in pod.started.items()))
        for line in pod.logs("modelstream").strip().splitlines()[-8:]:
            print(f"# {pod.name}: sidecar: {line[:300]}")
        cache = os.path.join(self.hosts, pod.node, "cache")
        r = subprocess.run(["ls", "-laR", os.path.join(cache, "models"),
                            os.path.join(cache, "blobs")], capture_output=True, text=True)
        for line in (r.stdout + r.stderr).splitlines()[:60]:
            print(f"# host {pod.node}: {line}")
        r = subprocess.run(["grep", f" {cache}", "/proc/self/mountinfo"], capture_output=True,
                           text=True)
        for line in r.stdout.splitlines()[:10]:
            print(f"# host mountinfo: {line}")
        for line in self.agents[pod.node].logs("agent").strip().splitlines()[-12:]:
            print(f"# {pod.node} agent: {line[:300]}")

    def check_phase(self, apps, model: str, t0: float, first: bool) -> None:
        want = self.models[model]["checksums"]
        errors = [f"{p.name}: {getattr(p, 'error', '')}" for p in apps if hasattr(p, "error")]
        check(not errors, f"all {len(apps)} {model} pods started (init containers, sidecar "
              "startupProbe, app container)", "; ".join(errors)[:800])
        same = [p for p in apps if p.exit_code == 0 and
                "".join(sorted(p.stdout("vllm").splitlines(True))) ==
                "".join(sorted(want.splitlines(True)))]
        check(len(same) == len(apps), f"every {model} pod read tensors bit-identical to the "
              f"source ({len(same)} of {len(apps)}, {len(want.splitlines())} tensors each)",
              "; ".join(f"{p.name}: exit {p.exit_code}: {p.logs('vllm').strip()[-300:]}"
                        for p in apps if p not in same))
        for p in apps:
            if p not in same:
                self.explain_failed_pod(p, model)
        gated = [p for p in apps if p.ready_at is not None and "vllm" in p.started and
                 p.started["vllm"] >= p.ready_at and
                 any(c == "modelstream" and s == 200 for _, c, s in p.probe_log)]
        check(len(gated) == len(apps), f"{model}: each app container started only after its "
              "sidecar's startupProbe on /readyz answered 200", f"{len(gated)} of {len(apps)}")
        if first:
            waited = [p for p in apps if any(s == 503 for _, c, s in p.probe_log)]
            check(len(waited) >= 1, f"{model}: pods that started before the model was there "
                  f"were held back by a 503 ({len(waited)} of {len(apps)})")
        for p in apps:
            p.time_to_ready = (p.ready_at or 0) - p.created

    def check_memory_charge(self, model: str) -> None:
        node = "n1"
        agent = self.agents[node]
        agent_stat = agent.cgroup_memory_stat("agent")
        size = self.models[model]["size"]
        pods = [p for p in self.pods if p.node == node and p.short.startswith("v1-")]
        pod_shmem = max((p.cgroup_memory_stat("modelstream").get("shmem", 0) for p in pods),
                        default=0)
        shmem = agent_stat.get("shmem", 0)  # cgroup v1 and v2 both name it so
        if not agent_stat:
            check(False, f"{node} (tmpfs-huge): the cache's pages are charged to the agent",
                  "no memory cgroup found for the agent container")
            return
        check(shmem >= size and pod_shmem < size // 10,
              f"{node} (tmpfs-huge): the cache's pages are charged to the agent's memory cgroup "
              f"({shmem} bytes of shmem), not the pods' (at most {pod_shmem})")

    def check_prometheus(self, size: int) -> None:
        ok = self.wait_until(lambda: len(self.prom_query("up == 1")) == len(NODES), 20)
        check(ok, f"Prometheus scrapes all {len(NODES)} agents (up == 1)",
              str(self.prom_query("up")))
        def fetched():
            res = self.prom_query("modelstream_model_done_bytes")
            return len([r for r in res if float(r["value"][1]) == size]) == len(NODES)
        check(self.wait_until(fetched, 20),
              "Prometheus sees every agent's model complete (modelstream_model_done_bytes)",
              str(self.prom_query("modelstream_model_done_bytes"))[:400])

    def check_logs(self) -> None:
        agent_out = {n: p.stdout("agent") for n, p in self.agents.items()}
        all_out = "".join(agent_out.values()) + "".join(
            p.logs(c["name"]) for p in self.pods
            for c in p.spec.get("initContainers", []) + p.spec["containers"]
            if c["name"] in p.started)
        a = agent_out["n1"]
        patterns = [
            r"cache prepare: /cache: tmpfs huge=within_size, size 1G",
            r"serve: health, progress and metrics on 0\.0\.0\.0:9090",
            r"fetch tiny-v1: from s3://models/tiny-v1/ into /cache \(tmpfs \(huge pages\)\)",
            r"fetch tiny-v1: ready at /cache/models/tiny-v1: 3 files, .* in .* s",
            r"serve: /etc/modelstream/config.yaml changed: 1 models configured",
            r"serve: model tiny-v1 is no longer configured; evicted once no pod holds it",
            r"fetch tiny-v2: ready at /cache/models/tiny-v2: 3 files",
            r"serve: model tiny-v1 evicted: no longer configured and no pod holds it",
        ]
        prep = self.agents["n1"].logs("prepare-cache")
        missing = [pat for pat in patterns if not re.search(pat, a + prep)]
        check(not missing, "the agent's stdout (kubectl logs) reads as the README says",
              "missing: " + "; ".join(missing) + "\n" + a[-1500:])
        side = next((p for p in self.pods if p.short.startswith("v2-")), None)
        s = side.stdout("modelstream") if side else ""
        check(re.search(r"serve: model tiny-v2 is ready at /cache/models/tiny-v2 after .* s; "
                        r"held while this pod runs", s) is not None,
              "the sidecar's stdout says when its model is ready", s[-400:])
        check(SECRET_KEY not in all_out and "AKIDE2EFLEET" not in all_out,
              "no credential in any container's output")

    def summary(self, stats: dict) -> None:
        print("# --- fleet summary ---")
        for node, ip, medium in NODES:
            metrics = http_get(node, "http://127.0.0.1:9090/metrics")[1]
            retries = sum(float(m) for m in re.findall(
                r'^modelstream_retries_total\{[^}]*\} (\S+)', metrics, re.M))
            waits = re.search(r"^modelstream_throttle_waits_total (\S+)", metrics, re.M)
            print(f"# {node} ({medium}): {stats['bytes_by_client'].get(ip, 0)} bytes from the "
                  f"origin in {stats['gets_by_client'].get(ip, 0)} GETs "
                  f"(v1 {self.bytes_v1.get(ip, 0)}, models {self.models['tiny-v1']['size']} + "
                  f"{self.models['tiny-v2']['size']}); agent restarts "
                  f"{getattr(self.agents[node], 'restarts', 0)}; retries {retries:.0f}; "
                  f"throttle waits {waits.group(1) if waits else '?'}")
        pods = [p for p in self.pods + self.gone if hasattr(p, "time_to_ready")]
        for p in sorted(pods, key=lambda p: p.name):
            when = ("first pods on the node, started with the agent (waited for the download)"
                    if p.short.startswith("v1-") else
                    "a later pod: its model was already in the node cache")
            print(f"# pod {p.name}: time to ready {p.time_to_ready:.1f} s ({when})")

    def cleanup(self) -> None:
        self.stop_monitor.set()
        for pod in list(self.pods):
            try:
                pod.stop()
            except Exception:  # noqa: BLE001
                pass
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        for n in self.namespaces:
            sh("ip", "netns", "del", n, check_rc=False)
        if self.args.keep:
            os.makedirs(self.args.keep, exist_ok=True)
            with open(os.path.join(self.args.keep, "fleet.log"), "w") as f:
                f.write("\n".join(self.log_lines) + "\n")
        if self.shared_mount:
            sh("umount", "-R", "-l", self.hosts, check_rc=False)
        # tmpfs mounted by the agents' prepare containers under the shared mount
        for line in open("/proc/self/mountinfo"):
            point = line.split()[4]
            if point.startswith(self.tmp):
                sh("umount", "-l", point, check_rc=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--rate-mbit", type=int, default=80)
    ap.add_argument("--keep", help="a directory for the harness's log")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    os.environ["B"] = os.path.abspath(args.build)  # scripts/image.sh: the private podman store
    missing = [t for t in ("ip", "tc", "podman", "curl") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        why = "needs root (network namespaces, tc, mounts)" if os.geteuid() != 0 else \
            f"missing {', '.join(missing)} (scripts/deps.sh installs them)"
        print(f"ok - the fleet test # SKIP {why}")
        print("0 passed, 0 failed")
        return 0
    # The image the pods run: built once, then found up to date (scripts/image.sh).
    r = subprocess.run([os.path.join(REPO, "scripts", "image.sh"), "build"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"not ok - the image builds: {(r.stdout + r.stderr).strip()[-800:]}")
        print("0 passed, 1 failed")
        return 1
    fleet = Fleet(args)
    start = time.monotonic()
    try:
        fleet.run()
    except Exception as e:  # noqa: BLE001 - a broken run is a failed check, with the cause
        check(False, "the fleet test ran to the end", f"{type(e).__name__}: {e}")
        for line in fleet.log_lines[-30:]:
            print(f"# {line}")
    finally:
        fleet.cleanup()
    print(f"# e2e took {time.monotonic() - start:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
