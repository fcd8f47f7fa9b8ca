"""A small kubelet: runs a pod spec rendered from the Helm chart as podman containers.

The fleet test must run what the chart renders, not a retyped copy of it. This module takes
a pod spec (the `spec.template.spec` of a rendered DaemonSet or Deployment) and does what
the kubelet does with it, as far as the test needs:

- init containers run in order, each to completion; one with `restartPolicy: Always` is a
  native sidecar: it is started and the next step waits until its startupProbe passes,
  polled with the probe's own initialDelaySeconds, periodSeconds, timeoutSeconds and
  failureThreshold;
- then the main containers start; `restart()` starts a dead one again, as the kubelet does
  for restartPolicy Always;
- each container becomes one `podman run` with its image, command (the entrypoint), args,
  env (value, secretKeyRef, fieldRef), volume mounts (hostPath, configMap, emptyDir; with
  readOnly and mountPropagation), securityContext (runAsUser/Group, readOnlyRootFilesystem,
  capabilities, privileged, allowPrivilegeEscalation) and memory limit;
- configMap volumes are laid out as the kubelet lays them out (`..data` -> a timestamped
  directory, keys as links through it), and updated the same way, with one rename;
- all containers of a pod share one network namespace (the pod's), where probes are sent.

What it does not do, because the test does not need it: pulling images, CPU limits, init
container back-off, preStop hooks, service accounts' tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PODMAN = [os.path.join(REPO, "scripts", "image.sh"), "podman"]


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float = 120):
    r = subprocess.run(PODMAN + list(args), capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}...: exit {r.returncode}: "
                           f"{(r.stderr or '').strip()[-600:]}")
    return r


def quantity_bytes(q: str) -> int:
    """Kubernetes memory quantity -> bytes (Mi, Gi, M, G, plain)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    q = str(q)
    for unit in sorted(units, key=len, reverse=True):
        if q.endswith(unit):
            return int(float(q[: -len(unit)]) * units[unit])
    return int(float(q))


class ConfigMapVolume:
    """A configMap volume's directory, written the way the kubelet's atomic writer does."""

    def __init__(self, path: str, data: dict[str, str]):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.update(data)

    def update(self, data: dict[str, str]) -> None:
        gen = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9}"
        gen_dir = os.path.join(self.path, gen)
        os.mkdir(gen_dir)
        os.chmod(gen_dir, 0o755)
        for key, value in data.items():
            with open(os.path.join(gen_dir, key), "w") as f:
                f.write(value)
            os.chmod(os.path.join(gen_dir, key), 0o644)
        tmp = os.path.join(self.path, "..data_tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(gen, tmp)
        old = os.readlink(os.path.join(self.path, "..data")) if os.path.islink(
            os.path.join(self.path, "..data")) else None
        os.rename(tmp, os.path.join(self.path, "..data"))
        for key in data:
            link = os.path.join(self.path, key)
            if not os.path.lexists(link):
                os.symlink(os.path.join("..data", key), link)
        if old is not None:
            shutil.rmtree(os.path.join(self.path, old), ignore_errors=True)


class Probe:
    """One httpGet probe of a container, sent inside the pod's network namespace."""

    def __init__(self, spec: dict, container: dict, netns: str):
        http = spec["httpGet"]
        port = http["port"]
        if isinstance(port, str):  # a named port
            port = next(p["containerPort"] for p in container.get("ports", [])
                        if p.get("name") == port)
        self.url = f"http://127.0.0.1:{port}{http.get('path', '/')}"
        self.initial_delay = spec.get("initialDelaySeconds", 0)
        self.period = spec.get("periodSeconds", 10)
        self.timeout = spec.get("timeoutSeconds", 1)
        self.failure_threshold = spec.get("failureThreshold", 3)
        self.netns = netns

    def once(self) -> int:
        """The HTTP status (0: no answer), as the kubelet sees it: 200-399 passes."""
        r = subprocess.run(["ip", "netns", "exec", self.netns, "curl", "-s", "-o", "/dev/null",
                            "-w", "%{http_code}", "--max-time", str(self.timeout), self.url],
                           capture_output=True, text=True)
        try:
            return int(r.stdout.strip() or 0)
        except ValueError:
            return 0


class Pod:
    """One pod: its spec, its network namespace, its volumes, its containers under podman."""

    def __init__(self, name: str, spec: dict, netns: str, workdir: str, *,
                 secrets: dict[str, dict[str, str]], config_maps: dict[str, dict[str, str]],
                 node_name: str, log: Callable[[str], None] = print):
        self.name = name
        self.spec = spec
        self.netns = netns
        self.workdir = workdir
        self.secrets = secrets
        self.node_name = node_name
        self.log = log
        self.volumes: dict[str, str] = {}
        self.config_map_volumes: dict[str, ConfigMapVolume] = {}
        self.started: dict[str, float] = {}  # container -> when it started (monotonic)
        self.ready_at: float | None = None  # when every startup gate had passed
        self.created = time.monotonic()
        self.probe_log: list[tuple[float, str, int]] = []  # (t, container, status)
        os.makedirs(workdir, exist_ok=True)
        for v in spec.get("volumes", []):
            self._make_volume(v, config_maps)

    # -- volumes ---------------------------------------------------------------------------
    def _make_volume(self, v: dict, config_maps: dict) -> None:
        name = v["name"]
        if "hostPath" in v:
            path = v["hostPath"]["path"]
            if v["hostPath"].get("type") == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)
            self.volumes[name] = path
        elif "emptyDir" in v:
            path = os.path.join(self.workdir, "volumes", name)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o1777)  # the kubelet makes emptyDir world-writable
            self.volumes[name] = path
        elif "configMap" in v:
            cm = v["configMap"]["name"]
            path = os.path.join(self.workdir, "volumes", name)
            self.config_map_volumes[cm] = ConfigMapVolume(path, config_maps[cm])
            self.volumes[name] = path
        else:
            raise ValueError(f"pod {self.name}: volume {name}: only hostPath, emptyDir and "
                             "configMap are translated")

    def update_config_map(self, name: str, data: dict[str, str]) -> None:
        """What the kubelet does when the ConfigMap object changes."""
        self.config_map_volumes[name].update(data)

    # -- one container -> podman run -------------------------------------------------------
    def container_name(self, container: dict) -> str:
        return f"{self.name}-{container['name']}"

    def _env(self, container: dict) -> list[str]:
        out = []
        for e in container.get("env", []):
            if "value" in e:
                value = str(e["value"])
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                secret = self.secrets.get(ref["name"])
                if secret is None or ref["key"] not in secret:
                    if ref.get("optional"):
                        continue
                    raise KeyError(f"pod {self.name}: secret {ref['name']} has no key "
                                   f"{ref['key']}")
                value = secret[ref["key"]]
            elif "fieldRef" in e.get("valueFrom", {}):
                field = e["valueFrom"]["fieldRef"]["fieldPath"]
                value = {"metadata.name": self.name, "spec.nodeName": self.node_name,
                         "metadata.namespace": "modelstream"}.get(field, "")
            else:
                raise ValueError(f"pod {self.name}: env {e['name']}: not translated")
            out += ["--env", f"{e['name']}={value}"]
        return out

    def _mounts(self, container: dict) -> list[str]:
        out = []
        for m in container.get("volumeMounts", []):
            opts = ["ro" if m.get("readOnly") else "rw"]
            propagation = m.get("mountPropagation", "None")
            if propagation == "Bidirectional":
                opts.append("rshared")
            elif propagation == "HostToContainer":
                opts.append("rslave")
            out += ["--volume", f"{self.volumes[m['name']]}:{m['mountPath']}:{','.join(opts)}"]
        return out

    def _security(self, container: dict) -> list[str]:
        pod_sc = self.spec.get("securityContext", {}) or {}
        sc = {**pod_sc, **(container.get("securityContext") or {})}
        out = []
        if "runAsUser" in sc:
            out += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
        if sc.get("readOnlyRootFilesystem"):
            out += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("privileged"):
            out += ["--privileged"]
        caps = sc.get("capabilities") or {}
        for c in caps.get("drop", []):
            out += ["--cap-drop", c]
        for c in caps.get("add", []):
            out += ["--cap-add", c]
        if sc.get("allowPrivilegeEscalation") is False:
            out += ["--security-opt", "no-new-privileges"]
        return out

    def _run_args(self, container: dict, detach: bool) -> list[str]:
        args = ["run", "--name", self.container_name(container),
                "--network", f"ns:/run/netns/{self.netns}", "--hostname", self.name]
        if detach:
            args.append("--detach")
        if container.get("imagePullPolicy") == "Never":
            args += ["--pull", "never"]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"]))]
        args += ["--stop-timeout", str(self.spec.get("terminationGracePeriodSeconds", 30))]
        args += self._env(container) + self._mounts(container) + self._security(container)
        command = container.get("command")
        if command:
            args += ["--entrypoint", json.dumps(command)]
        args.append(container["image"])
        args += [str(a) for a in container.get("args", [])]
        return args

    # -- the pod's life --------------------------------------------------------------------
    def wait_probe(self, container: dict, key: str, deadline: float) -> bool:
        spec = container.get(key)
        if not spec:
            return True
        probe = Probe(spec, container, self.netns)
        time.sleep(probe.initial_delay)
        failures = 0
        while time.monotonic() < deadline:
            status = probe.once()
            self.probe_log.append((time.monotonic(), container["name"], status))
            if 200 <= status < 400:
                return True
            failures += 1
            if failures >= probe.failure_threshold:
                self.log(f"{self.name}: {container['name']}: {key} failed {failures} times")
                return False
            time.sleep(probe.period)
        return False

    def start(self, timeout: float = 300, wait_main: bool = True) -> None:
        """Init containers in order (sidecars gated by their startupProbe), then the main
        containers. Raises if a step fails."""
        deadline = time.monotonic() + timeout
        for c in self.spec.get("initContainers", []):
            if c.get("restartPolicy") == "Always":
                podman(*self._run_args(c, detach=True))
                self.started[c["name"]] = time.monotonic()
                if not self.wait_probe(c, "startupProbe", deadline):
                    raise RuntimeError(f"pod {self.name}: sidecar {c['name']} never started: "
                                       f"{self.logs(c['name'])[-800:]}")
            else:
                r = podman(*self._run_args(c, detach=False), check=False,
                           timeout=max(1, deadline - time.monotonic()))
                self.started[c["name"]] = time.monotonic()
                if r.returncode != 0:
                    raise RuntimeError(f"pod {self.name}: init container {c['name']} exited "
                                       f"{r.returncode}: {(r.stdout + r.stderr)[-800:]}")
        self.ready_at = time.monotonic()
        for c in self.spec["containers"]:
            podman(*self._run_args(c, detach=True))
            self.started[c["name"]] = time.monotonic()

    def probe(self, container: str, key: str) -> int:
        """One round of a container's probe (readinessProbe, livenessProbe...) as its spec
        says; the HTTP status."""
        spec = next(c for c in self.spec["containers"] + self.spec.get("initContainers", [])
                    if c["name"] == container)
        return Probe(spec[key], spec, self.netns).once()

    def state(self, container: str) -> tuple[bool, int]:
        """(running, exit code) of a container."""
        r = podman("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}",
                   f"{self.name}-{container}", check=False)
        if r.returncode != 0:
            return False, -1
        running, code = r.stdout.split()
        return running == "true", int(code)

    def wait_exit(self, container: str, timeout: float = 120) -> int:
        r = podman("wait", f"{self.name}-{container}", timeout=timeout)
        return int(r.stdout.strip().splitlines()[-1])

    def restart(self, container: str) -> None:
        """Starts a dead container again (restartPolicy: Always)."""
        podman("start", f"{self.name}-{container}")
        self.started[container] = time.monotonic()

    def kill(self, container: str) -> None:
        podman("kill", "--signal", "KILL", f"{self.name}-{container}")

    def logs(self, container: str) -> str:
        r = podman("logs", f"{self.name}-{container}", check=False)
        return r.stdout + r.stderr

    def stdout(self, container: str) -> str:
        """What `kubectl logs` shows of the container's standard output alone."""
        r = subprocess.run(PODMAN + ["logs", f"{self.name}-{container}"], capture_output=True,
                           text=True)
        return r.stdout

    def cgroup_memory_stat(self, container: str) -> dict[str, int]:
        """The container's memory cgroup's memory.stat (v1 or v2)."""
        r = podman("inspect", "--format", "{{.State.Pid}}", f"{self.name}-{container}",
                   check=False)
        pid = r.stdout.strip()
        if not pid or pid == "0":
            return {}
        path = None
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, p = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    path = f"/sys/fs/cgroup/memory{p}"
                elif controllers == "" and path is None:
                    path = f"/sys/fs/cgroup{p}"
        stats = {}
        try:
            with open(os.path.join(path, "memory.stat")) as f:
                for line in f:
                    k, v = line.split()
                    stats[k] = int(v)
        except OSError:
            pass
        return stats

    def stop(self) -> None:
        """Deletes the pod: its containers get SIGTERM, then are removed."""
        names = [self.container_name(c) for c in
                 self.spec.get("initContainers", []) + self.spec["containers"]]
        podman("stop", "--ignore", "--time", "10", *names, check=False)
        podman("rm", "--ignore", "--force", *names, check=False)
