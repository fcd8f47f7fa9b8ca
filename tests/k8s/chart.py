#!/usr/bin/env python3
"""Checks of the Helm chart (helm/modelstream), offline: no helm binary, no cluster.

    python3 tests/k8s/chart.py [--log FILE] [-v]

For every values file in helm/modelstream/ci/ it lints the chart strictly as Kubernetes
1.29 and 1.33 (Helm v4 SDK, through helm-python-sdk), renders it, and validates every
rendered object against the Kubernetes 1.29.0 and 1.33.0 OpenAPI schemas in strict mode
(kubernetes-validate: an unknown field is an error). The Prometheus Operator's objects
(ServiceMonitor, PodMonitor, PrometheusRule) have no schema there, so they are checked
against strict schemas of the fields this chart uses, and the alert rules with promtool
(syntax, and unit tests that each alert fires when it should and not otherwise). Then:
values the schema must refuse (typos, wrong types, bad names), and what the objects must
mean (the agent's memory with tmpfs-huge, the sidecar's restartPolicy and startupProbe,
credentials only by Secret reference, the config file's keys, ...), the templates used
from a parent chart, and manifests/ against a fresh render.

Prints "ok - ..." or "not ok - ..." per check and "N passed, M failed" last; exits 1 when
a check failed. A check that cannot run here (promtool missing) prints "ok - ... # SKIP"
and is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import podspec  # noqa: E402

import yaml  # noqa: E402

KUBE_VERSIONS = ["1.29.0", "1.33.0"]
CI_DIR = os.path.join(podspec.CHART, "ci")
CI_FILES = sorted(f for f in os.listdir(CI_DIR) if f.endswith("-values.yaml"))
MONITORING = "monitoring.coreos.com/v1"
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
SIZE_RE = re.compile(r"^[0-9]+([KkMmGgTt]i?B?)?$")
CONFIG_KEYS = {"cache", "budget", "concurrency", "log_format", "listen", "models"}
MODEL_KEYS = {"name", "source", "sha256_manifest"}
CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


class Results:
    def __init__(self, log, verbose: bool):
        self.passed = 0
        self.failed = 0
        self.log = log
        self.verbose = verbose

    def say(self, line: str) -> None:
        print(line, flush=True)
        if self.log:
            self.log.write(line + "\n")
            self.log.flush()

    def ok(self, name: str) -> None:
        self.passed += 1
        self.say(f"ok - {name}")

    def not_ok(self, name: str, why: str) -> None:
        self.failed += 1
        self.say(f"not ok - {name}")
        for line in str(why).rstrip().splitlines()[:40]:
            self.say(f"#   {line}")

    def skip(self, name: str, why: str) -> None:
        self.say(f"ok - {name} # SKIP {why}")

    def note(self, text: str) -> None:
        for line in text.splitlines():
            self.say(f"# {line}")

    def check(self, name: str, fn, *args) -> object:
        """Runs fn(*args); a falsy string or None passes, an AssertionError or any other
        exception fails with its message."""
        try:
            value = fn(*args)
        except AssertionError as e:
            self.not_ok(name, str(e) or "assertion failed")
            return None
        except Exception as e:  # a crash of the check is a failure, never a skip
            self.not_ok(name, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
            return None
        self.ok(name)
        return value


# ---------------------------------------------------------------------------------------
# Rendering and helpers
# ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def rendered_ci(ci_file: str) -> tuple:
    """(values, template texts, objects) of one ci file, rendered once."""
    values = podspec.values([os.path.join(CI_DIR, ci_file)])
    texts = podspec.render_templates([os.path.join(CI_DIR, ci_file)])
    return values, texts, podspec.objects_of(texts)


def effective(values: dict) -> dict:
    """User values merged over the chart's defaults (what the templates see)."""
    return podspec.chart().merge_values(values)


def containers_of(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def pods(objects: list[dict]) -> list[tuple[str, dict]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", podspec.pod_spec(o))
            for o in objects if o["kind"] in ("DaemonSet", "Deployment", "StatefulSet", "Job")]


def mount(c: dict, name: str) -> dict:
    for m in c.get("volumeMounts", []):
        if m["name"] == name:
            return m
    raise AssertionError(f"container {c['name']} has no volumeMount {name}")


def volume(spec: dict, name: str) -> dict:
    for v in spec.get("volumes", []):
        if v["name"] == name:
            return v
    raise AssertionError(f"pod has no volume {name}")


def env_of(c: dict) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


def quantity_mi(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Mi|Gi)", str(q))
    assert m, f"memory {q!r} is not in Mi or Gi"
    return int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1)


def expect_equal(what: str, got, want) -> None:
    assert got == want, f"{what}: got {got!r}, want {want!r}"


@contextlib.contextmanager
def captured_stderr_fd():
    """Captures what native code writes to file descriptor 2 (the Helm SDK logs there);
    yields a list that holds the text once the block has ended."""
    sys.stderr.flush()
    saved = os.dup(2)
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------
# Lint
# ---------------------------------------------------------------------------------------

def lint(values: dict, kube: str) -> tuple[dict, str]:
    import helm_python

    with captured_stderr_fd() as err:
        report = helm_python.lint(podspec.CHART, values, strict=True, namespace=podspec.NAMESPACE,
                                  kube_version="v" + kube)
    return report, err[0]


def check_lint(ci_file: str, kube: str, results: Results) -> None:
    values = podspec.values([os.path.join(CI_DIR, ci_file)])
    report, stderr = lint(values, kube)
    problems = list(report.get("errors") or [])
    problems += [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m["severity"] >= 2]
    # Helm v4's lint lets a template's `fail` pass and only logs it: count it here.
    problems += [line for line in stderr.splitlines() if "fail" in line and "message=" in line]
    assert not problems, "\n".join(problems)
    infos = sorted({m["error"] for m in report.get("messages", []) if m["severity"] == 1})
    if infos and results.verbose:
        results.note(f"lint info ({ci_file}, {kube}): " + "; ".join(infos))


# ---------------------------------------------------------------------------------------
# Schema validation of the rendered objects
# ---------------------------------------------------------------------------------------

def kubernetes_validator():
    import kubernetes_validate
    import kubernetes_validate.utils as kv_utils

    # The schemas are read from disk on every call; read each file once per run.
    if not hasattr(kv_utils.schema_contents, "cache_info"):
        kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)
    return kubernetes_validate


def check_kubernetes_schema(objects: list[dict], kube: str) -> None:
    kv = kubernetes_validator()
    problems = []
    core = [o for o in objects if o["apiVersion"] != MONITORING]
    assert core, "no object to validate"
    for obj in core:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kv.validate(obj, kube, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{what}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            problems.append(f"{what}: {e.message}")
    assert not problems, "\n".join(problems)


def _strict(properties: dict, required: list | None = None) -> dict:
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return schema


_STR = {"type": "string"}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
_META = _strict({"name": _STR, "namespace": _STR, "labels": _STRMAP, "annotations": _STRMAP},
                ["name", "namespace"])
_SELECTOR = _strict({"matchLabels": _STRMAP, "matchExpressions": {"type": "array"}})
_NS_SELECTOR = _strict({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}})
_RELABEL = _strict({
    "sourceLabels": {"type": "array", "items": _STR}, "separator": _STR, "targetLabel": _STR,
    "regex": _STR, "modulus": {"type": "integer"}, "replacement": _STR,
    "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                        "lowercase", "uppercase", "keepequal", "dropequal"]}})
_ENDPOINT = _strict({
    "port": _STR, "path": _STR, "scheme": {"enum": ["http", "https"]}, "interval": _DURATION,
    "scrapeTimeout": _DURATION, "honorLabels": {"type": "boolean"},
    "relabelings": {"type": "array", "items": _RELABEL},
    "metricRelabelings": {"type": "array", "items": _RELABEL}}, ["port"])
# Strict schemas of the Prometheus Operator's objects, limited to the fields of the CRDs
# (monitoring.coreos.com/v1) that this chart may write.
CRD_SCHEMAS = {
    "ServiceMonitor": _strict({
        "apiVersion": {"const": MONITORING}, "kind": {"const": "ServiceMonitor"}, "metadata": _META,
        "spec": _strict({"selector": _SELECTOR, "namespaceSelector": _NS_SELECTOR, "jobLabel": _STR,
                         "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}},
                        ["selector", "endpoints"])}, ["apiVersion", "kind", "metadata", "spec"]),
    "PodMonitor": _strict({
        "apiVersion": {"const": MONITORING}, "kind": {"const": "PodMonitor"}, "metadata": _META,
        "spec": _strict({"selector": _SELECTOR, "namespaceSelector": _NS_SELECTOR, "jobLabel": _STR,
                         "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}},
                        ["selector", "podMetricsEndpoints"])}, ["apiVersion", "kind", "metadata", "spec"]),
    "PrometheusRule": _strict({
        "apiVersion": {"const": MONITORING}, "kind": {"const": "PrometheusRule"}, "metadata": _META,
        "spec": _strict({"groups": {"type": "array", "minItems": 1, "items": _strict({
            "name": _STR, "interval": _DURATION,
            "rules": {"type": "array", "minItems": 1, "items": _strict({
                "alert": _STR, "record": _STR, "expr": _STR, "for": _DURATION,
                "keep_firing_for": _DURATION, "labels": _STRMAP, "annotations": _STRMAP},
                ["expr"])}}, ["name", "rules"])}}, ["groups"])},
        ["apiVersion", "kind", "metadata", "spec"]),
}


def check_crd_structure(objects: list[dict]) -> None:
    import jsonschema

    crds = [o for o in objects if o["apiVersion"] == MONITORING]
    assert crds, "no monitoring.coreos.com object rendered"
    problems = []
    for obj in crds:
        schema = CRD_SCHEMAS.get(obj["kind"])
        if schema is None:
            problems.append(f"{obj['kind']}: no structural schema in chart.py")
            continue
        for e in jsonschema.Draft7Validator(schema).iter_errors(obj):
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: "
                            f"{'.'.join(str(p) for p in e.path)}: {e.message}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------
# Alert rules with promtool
# ---------------------------------------------------------------------------------------

PROMTOOL_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'modelstream_healthy{namespace="modelstream",pod="stalled",node="n1"}'
        values: '0x20'
      - series: 'modelstream_healthy{namespace="modelstream",pod="fine",node="n2"}'
        values: '1x20'
      - series: 'modelstream_retries_total{namespace="modelstream",pod="storm",node="n1",reason="slowdown"}'
        values: '0+600x30'
      - series: 'modelstream_retries_total{namespace="modelstream",pod="calm",node="n2",reason="slowdown"}'
        values: '0+6x30'
      - series: 'modelstream_cache_size_bytes{namespace="modelstream",pod="full",node="n1"}'
        values: '95x30'
      - series: 'modelstream_cache_budget_bytes{namespace="modelstream",pod="full",node="n1"}'
        values: '100x30'
      - series: 'modelstream_cache_size_bytes{namespace="modelstream",pod="roomy",node="n2"}'
        values: '50x30'
      - series: 'modelstream_cache_budget_bytes{namespace="modelstream",pod="roomy",node="n2"}'
        values: '100x30'
      - series: 'modelstream_ready{namespace="modelstream",pod="stalled",node="n1"}'
        values: '0x40'
    alert_rule_test:
      - eval_time: 4m
        alertname: ModelstreamFetchStalled
        exp_alerts: []
      - eval_time: 6m
        alertname: ModelstreamFetchStalled
        exp_alerts:
          - exp_labels: {severity: warning, namespace: modelstream, pod: stalled, node: n1}
      - eval_time: 20m
        alertname: ModelstreamRetryStorm
        exp_alerts:
          - exp_labels: {severity: warning, namespace: modelstream, pod: storm, node: n1}
      - eval_time: 20m
        alertname: ModelstreamCacheNearBudget
        exp_alerts:
          - exp_labels: {severity: info, namespace: modelstream, pod: full, node: n1}
      - eval_time: 29m
        alertname: ModelstreamNotReady
        exp_alerts: []
      - eval_time: 35m
        alertname: ModelstreamNotReady
        exp_alerts:
          - exp_labels: {severity: warning, namespace: modelstream, pod: stalled, node: n1}
"""


def promtool_rules(objects: list[dict], tmp: str, annotations: bool) -> str:
    """The PrometheusRule's groups as a rule file; without annotations for the unit tests,
    which would otherwise have to repeat every annotation's text (`check rules` parses
    the annotations' templates)."""
    groups = copy.deepcopy(podspec.find(objects, "PrometheusRule")["spec"]["groups"])
    if not annotations:
        for group in groups:
            for rule in group["rules"]:
                rule.pop("annotations", None)
    path = os.path.join(tmp, "rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"groups": groups}, f)
    return path


def check_promtool(objects: list[dict], mode: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rules = promtool_rules(objects, tmp, annotations=mode == "check")
        if mode == "check":
            cmd = ["promtool", "check", "rules", rules]
        else:
            tests = os.path.join(tmp, "tests.yaml")
            with open(tests, "w") as f:
                f.write(PROMTOOL_TESTS)
            cmd = ["promtool", "test", "rules", tests]
        p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, f"{' '.join(cmd[:3])}: exit {p.returncode}\n{p.stdout}{p.stderr}"


# ---------------------------------------------------------------------------------------
# Negative tests: values the chart must refuse, with a message that names the key
# ---------------------------------------------------------------------------------------

MODEL = {"name": "llama", "source": "s3://models/llama/"}
NEGATIVE = [
    ("a typo in a key (cache.medum)", {"cache": {"medum": "disk"}},
     ["/cache", "medum", "not allowed"]),
    ("a wrong type (cache.sizeGiB: \"x\")", {"cache": {"sizeGiB": "x"}},
     ["/cache/sizeGiB", "want integer"]),
    ("an unknown medium (cache.medium: hugetlbfs)", {"cache": {"medium": "hugetlbfs"}},
     ["/cache/medium"]),
    ("a typo at the top level (modles)", {"modles": [MODEL]}, ["modles", "not allowed"]),
    ("a model name starting with '.'", {"models": [{"name": ".hidden", "source": "s3://b/x/"}]},
     ["/models/0/name"]),
    ("a model name with a '/'", {"models": [{"name": "a/b", "source": "s3://b/x/"}]},
     ["/models/0/name"]),
    ("a model name of 129 characters", {"models": [{"name": "a" * 129, "source": "s3://b/x/"}]},
     ["/models/0/name"]),
    ("a model without a source", {"models": [{"name": "llama"}]}, ["/models/0", "source"]),
    ("a source that is not s3:// or gs://", {"models": [{"name": "x", "source": "http://b/x/"}]},
     ["/models/0/source"]),
    ("a typo in a model (sha256_manifest, the file's spelling)",
     {"models": [dict(MODEL, sha256_manifest="s3://b/SUMS")]}, ["/models/0", "sha256_manifest"]),
    ("a size that is not a size (admission.nodeRate: fast)", {"admission": {"nodeRate": "fast"}},
     ["/admission/nodeRate"]),
    ("nodeConnections above 4096", {"admission": {"nodeConnections": 5000}},
     ["/admission/nodeConnections"]),
    ("concurrency 0", {"fetch": {"concurrency": 0}}, ["/fetch/concurrency"]),
    ("an unknown log format", {"fetch": {"logFormat": "xml"}}, ["/fetch/logFormat"]),
    ("a typo in agent.resources (limit)", {"agent": {"resources": {"limit": {"memory": "1Gi"}}}},
     ["/agent/resources", "limit"]),
    ("a typo in a probe (httpget)", {"agent": {"livenessProbe": {"httpget": {"path": "/x"}}}},
     ["/agent/livenessProbe", "httpget"]),
    ("a secret value in values (credentials.secretAccessKey)",
     {"credentials": {"secretAccessKey": "wJalrXUtnFEMI"}}, ["/credentials", "secretAccessKey"]),
    ("virtualAddressing as a string", {"storage": {"virtualAddressing": "yes"}},
     ["/storage/virtualAddressing"]),
    ("a relative hostPath", {"cache": {"hostPath": "var/cache"}}, ["/cache/hostPath"]),
    ("a bad duration in an alert (5 minutes)",
     {"metrics": {"prometheusRule": {"enabled": True, "stalledFor": "5 minutes"}}},
     ["/metrics/prometheusRule/stalledFor"]),
    ("a bad IRSA role", {"serviceAccount": {"roleArn": "modelstream-role"}}, ["/serviceAccount/roleArn"]),
    ("two models with one name", {"models": [MODEL, dict(MODEL, source="s3://models/other/")]},
     ["used twice", "llama"]),
    ("the example without a model", {"models": [MODEL], "example": {"enabled": True}},
     ["example.model"]),
    ("the example with a model not in models[]",
     {"models": [MODEL], "example": {"enabled": True, "model": "mistral"}},
     ["example.model", "mistral", "not one of models"]),
    ("a ServiceMonitor without the agent",
     {"agent": {"enabled": False}, "metrics": {"serviceMonitor": {"enabled": True}}},
     ["metrics.serviceMonitor.enabled", "agent.enabled"]),
]


def check_refused(values: dict, needles: list[str]) -> None:
    import helm_python

    try:
        podspec.chart().render(values, name=podspec.RELEASE, namespace=podspec.NAMESPACE,
                               is_install=True)
    except helm_python.HelmError as e:
        message = str(e)
        missing = [n for n in needles if n not in message]
        assert not missing, f"refused, but the message lacks {missing}: {message}"
        return
    raise AssertionError("rendered, but these values should be refused")


# ---------------------------------------------------------------------------------------
# What the objects mean
# ---------------------------------------------------------------------------------------

def agent_parts(objects: list[dict]) -> tuple[dict, dict, dict]:
    ds = podspec.find(objects, "DaemonSet")
    spec = podspec.pod_spec(ds)
    return spec, podspec.container(spec, "prepare-cache"), podspec.container(spec, "agent")


def check_agent_memory(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    _, _, agent = agent_parts(objects)
    resources = agent["resources"]
    if v["cache"]["medium"] == "tmpfs-huge":
        want = v["cache"]["sizeGiB"] * 1024 + v["agent"]["memoryOverheadMiB"]
        expect_equal("memory request (Mi)", quantity_mi(resources["requests"]["memory"]), want)
        expect_equal("memory limit (Mi)", quantity_mi(resources["limits"]["memory"]), want)
        want_cpu = (v["agent"].get("resources") or {}).get("requests", {}).get("cpu")
        expect_equal("cpu request", resources["requests"].get("cpu"), want_cpu)
    else:
        expect_equal("resources", resources, v["agent"]["resources"])


def check_prepare(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    spec, prepare, agent = agent_parts(objects)
    medium = v["cache"]["medium"]
    expect_equal("prepare args", prepare["args"],
                 ["cache", "prepare", "/cache", "--medium", medium,
                  "--size", f"{v['cache']['sizeGiB']}G", "--owner", "65532:65532"])
    sc = prepare["securityContext"]
    cache_mount = mount(prepare, "cache")
    expect_equal("prepare mountPath", cache_mount["mountPath"], "/cache")
    if medium == "tmpfs-huge":
        expect_equal("prepare privileged", sc.get("privileged"), True)
        expect_equal("prepare mountPropagation", cache_mount.get("mountPropagation"), "Bidirectional")
    else:
        expect_equal("prepare privileged", sc.get("privileged"), False)
        assert "mountPropagation" not in cache_mount, "Bidirectional only for tmpfs-huge"
        expect_equal("prepare capabilities", sc["capabilities"],
                     {"drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]})
    expect_equal("prepare runAsUser", sc.get("runAsUser"), 0)
    expect_equal("agent cache mountPropagation", mount(agent, "cache").get("mountPropagation"),
                 "HostToContainer")
    expect_equal("cache volume", volume(spec, "cache")["hostPath"],
                 {"path": v["cache"]["hostPath"], "type": "DirectoryOrCreate"})


def check_agent_args(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    spec, _, agent = agent_parts(objects)
    a = v["agent"]
    expect_equal("agent args", agent["args"],
                 ["serve", "--config", "/etc/modelstream/config.yaml", "--cache", "/cache",
                  "--listen", f"0.0.0.0:{a['port']}", "--evict-grace", str(a["evictGraceSeconds"]),
                  "--reconcile-every", str(a["reconcileSeconds"])])
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    expect_equal("agent ports", ports, {"metrics": a["port"]})
    expect_equal("liveness path", agent["livenessProbe"]["httpGet"]["path"], "/healthz")
    expect_equal("readiness path", agent["readinessProbe"]["httpGet"]["path"], "/readyz")
    sc = agent["securityContext"]
    for key, want in [("runAsUser", 65532), ("runAsNonRoot", True), ("readOnlyRootFilesystem", True),
                      ("allowPrivilegeEscalation", False)]:
        expect_equal(f"agent securityContext.{key}", sc.get(key), want)
    assert "privileged" not in sc or sc["privileged"] is False, "the agent must not be privileged"
    expect_equal("agent capabilities", sc.get("capabilities"), {"drop": ["ALL"]})
    env = env_of(agent)
    admission = v["admission"]
    expect_equal("MODELSTREAM_NODE_CONNECTIONS", env["MODELSTREAM_NODE_CONNECTIONS"].get("value"),
                 str(admission["nodeConnections"]))
    expect_equal("MODELSTREAM_FETCH_PATIENCE", env["MODELSTREAM_FETCH_PATIENCE"].get("value"),
                 str(admission["patienceSeconds"]))
    expect_equal("MODELSTREAM_LOG_FORMAT", env["MODELSTREAM_LOG_FORMAT"].get("value"), v["fetch"]["logFormat"])
    if admission["nodeRate"]:
        expect_equal("MODELSTREAM_NODE_RATE", env["MODELSTREAM_NODE_RATE"].get("value"), admission["nodeRate"])
    else:
        assert "MODELSTREAM_NODE_RATE" not in env, "MODELSTREAM_NODE_RATE set without admission.nodeRate"
    storage = v["storage"]
    for key, name in [("endpoint", "AWS_ENDPOINT_URL"), ("region", "AWS_REGION")]:
        if storage[key]:
            expect_equal(name, env[name].get("value"), storage[key])
        else:
            assert name not in env, f"{name} set without storage.{key}"
    if storage.get("virtualAddressing") is None:
        assert "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING" not in env
    else:
        expect_equal("RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING",
                     env["RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING"].get("value"),
                     "1" if storage["virtualAddressing"] else "0")
    annotations = podspec.find(objects, "DaemonSet")["spec"]["template"]["metadata"].get("annotations", {})
    assert not [k for k in annotations if k.startswith("checksum/")], \
        "the agent reconciles in place: no checksum annotation may restart it"


def check_config_mount(ci_file: str) -> None:
    _, _, objects = rendered_ci(ci_file)
    spec, _, agent = agent_parts(objects)
    m = mount(agent, "config")
    expect_equal("config mountPath", m["mountPath"], "/etc/modelstream")
    assert "subPath" not in m and "subPathExpr" not in m, \
        "a subPath mount is never updated by the kubelet"
    expect_equal("config readOnly", m.get("readOnly"), True)
    name = volume(spec, "config")["configMap"]["name"]
    cm = podspec.find(objects, "ConfigMap", name)
    assert "config.yaml" in cm["data"], f"ConfigMap {name} has no config.yaml"


def check_config_file(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    spec, _, _ = agent_parts(objects)
    cm = podspec.find(objects, "ConfigMap", volume(spec, "config")["configMap"]["name"])
    text = cm["data"]["config.yaml"]
    assert "&" not in re.sub(r"#.*", "", text) and "!!" not in text, "anchors and tags are refused"
    config = yaml.safe_load(text)
    assert isinstance(config, dict), "config.yaml is not a mapping"
    unknown = set(config) - CONFIG_KEYS
    assert not unknown, f"keys the binary refuses: {sorted(unknown)}"
    expect_equal("cache", config["cache"], "/cache")
    expect_equal("budget", config["budget"], f"{v['cache']['sizeGiB']}G")
    assert SIZE_RE.match(config["budget"]), f"budget {config['budget']!r}"
    assert 1 <= config["concurrency"] <= 256, "concurrency out of 1-256"
    expect_equal("concurrency", config["concurrency"], v["fetch"]["concurrency"])
    expect_equal("log_format", config["log_format"], v["fetch"]["logFormat"])
    expect_equal("listen", config["listen"], f"0.0.0.0:{v['agent']['port']}")
    models = config.get("models") or []
    expect_equal("model count", len(models), len(v["models"]))
    names = set()
    for want, got in zip(v["models"], models):
        assert not set(got) - MODEL_KEYS, f"model keys {sorted(set(got) - MODEL_KEYS)}"
        assert NAME_RE.match(got["name"]), f"model name {got['name']!r}"
        assert got["name"] not in names, f"model name {got['name']!r} twice"
        names.add(got["name"])
        expect_equal("model source", got["source"], want["source"])
        expect_equal("model sha256_manifest", got.get("sha256_manifest"), want.get("sha256Manifest"))


def check_credentials(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    creds = v["credentials"]
    agent_name = podspec.find(objects, "DaemonSet")["metadata"]["name"]
    for where, spec in pods(objects):
        for c in containers_of(spec):
            env = env_of(c)
            for name in CREDENTIAL_ENV & set(env):
                e = env[name]
                assert "value" not in e, f"{where} {c['name']}: {name} has a literal value"
                ref = e["valueFrom"]["secretKeyRef"]
                expect_equal(f"{name} Secret", ref["name"], creds["existingSecret"])
                assert where == f"DaemonSet/{agent_name}" and c["name"] == "agent", \
                    f"{where} {c['name']} gets {name}: only the agent fetches"
            for e in c.get("envFrom", []):
                raise AssertionError(f"{where} {c['name']}: envFrom {e}")
    _, _, agent = agent_parts(objects)
    env = env_of(agent)
    if creds["existingSecret"]:
        expect_equal("AWS_ACCESS_KEY_ID key", env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"],
                     creds["accessKeyIdKey"])
        expect_equal("AWS_SECRET_ACCESS_KEY key",
                     env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"],
                     creds["secretAccessKeyKey"])
        if creds["sessionTokenKey"]:
            expect_equal("AWS_SESSION_TOKEN key", env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["key"],
                         creds["sessionTokenKey"])
        else:
            assert "AWS_SESSION_TOKEN" not in env
    else:
        assert not CREDENTIAL_ENV & set(env), "credentials without credentials.existingSecret"
    assert not podspec.find_all(objects, "Secret"), "the chart must not hold a Secret"
    secretish = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret|secret_access|session_token|"
                           r"AWS_SECRET|AWS_SESSION|password", re.I)
    for cm in podspec.find_all(objects, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            hit = secretish.search(key + "\n" + text)
            assert not hit, f"ConfigMap {cm['metadata']['name']}/{key} holds {hit.group(0)!r}"
            if creds["existingSecret"]:
                for ref in (creds["existingSecret"], creds["accessKeyIdKey"], creds["secretAccessKeyKey"]):
                    assert ref not in text, f"ConfigMap {cm['metadata']['name']} names {ref!r}"


def workload_parts(objects: list[dict]) -> tuple[dict, dict, dict]:
    dep = podspec.find(objects, "Deployment")
    spec = podspec.pod_spec(dep)
    return dep, spec, podspec.container(spec, "vllm")


def check_workload_security(c: dict) -> None:
    sc = c["securityContext"]
    want = {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": True,
            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    expect_equal(f"{c['name']} securityContext", sc, want)
    m = mount(c, "modelstream-cache")
    expect_equal(f"{c['name']} cache mount", m,
                 {"name": "modelstream-cache", "mountPath": "/cache", "readOnly": True,
                  "mountPropagation": "HostToContainer"})
    expect_equal(f"{c['name']} /tmp", mount(c, "modelstream-tmp")["mountPath"], "/tmp")
    assert not CREDENTIAL_ENV & set(env_of(c)), f"{c['name']} gets credentials"


def check_sidecar(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    _, spec, app = workload_parts(objects)
    inits = spec["initContainers"]
    expect_equal("init containers", [c["name"] for c in inits], ["modelstream"])
    side = inits[0]
    port = v["sidecar"]["port"]
    expect_equal("restartPolicy", side.get("restartPolicy"), "Always")
    expect_equal("sidecar args", side["args"],
                 ["serve", "--cache", "/cache", "--wait-for", v["example"]["model"],
                  "--listen", f"0.0.0.0:{port}"])
    probe = side["startupProbe"]
    expect_equal("startupProbe httpGet", probe["httpGet"], {"path": "/readyz", "port": port})
    expect_equal("startupProbe periodSeconds", probe["periodSeconds"], 2)
    expect_equal("startupProbe failureThreshold", probe["failureThreshold"],
                 v["sidecar"]["startupFailureThreshold"])
    expect_equal("sidecar image", side["image"],
                 podspec.find(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"])
    assert side.get("resources", {}).get("limits", {}).get("memory"), "sidecar without a memory limit"
    check_workload_security(side)
    expect_equal("app cache mount", mount(app, "modelstream-cache"),
                 {"name": "modelstream-cache", "mountPath": "/cache", "readOnly": True,
                  "mountPropagation": "HostToContainer"})
    expect_equal("cache volume", volume(spec, "modelstream-cache")["hostPath"],
                 {"path": v["cache"]["hostPath"], "type": "DirectoryOrCreate"})
    assert "emptyDir" in volume(spec, "modelstream-tmp"), "modelstream-tmp is not an emptyDir"


def check_init_container(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    _, spec, _ = workload_parts(objects)
    inits = spec["initContainers"]
    expect_equal("init containers", [c["name"] for c in inits], ["modelstream-wait"])
    wait = inits[0]
    assert "restartPolicy" not in wait, "the init container must run to completion"
    assert "startupProbe" not in wait, "an init container has no probes"
    expect_equal("wait args", wait["args"],
                 ["wait", "--cache", "/cache", v["example"]["model"],
                  "--timeout", str(v["initContainer"]["timeoutSeconds"])])
    check_workload_security(wait)


def check_example_app(ci_file: str) -> None:
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    dep, spec, app = workload_parts(objects)
    ex = v["example"]
    expect_equal("replicas", dep["spec"]["replicas"], ex["replicas"])
    expect_equal("app image", app["image"], ex["image"])
    expect_equal("app command", app.get("command"), ex["command"] or None)
    model = ex["model"]
    if ex["command"] == ["vllm", "serve"]:
        expect_equal("vllm args", app["args"][:3],
                     [f"/cache/models/{model}", "--served-model-name", model])
    else:
        expect_equal("app args", app["args"], ex["args"])
    assert any(a == f"/cache/models/{model}" for a in app["args"]), "the app is not given the model"
    for key in ("nodeSelector", "tolerations"):
        if ex[key]:
            expect_equal(key, spec.get(key), ex[key])


def check_e2e(objects: list[dict]) -> None:
    spec, prepare, agent = agent_parts(objects)
    env = env_of(agent)
    for c in (prepare, agent):
        expect_equal(f"{c['name']} image", c["image"], "localhost/modelstream:0.3.0")
        expect_equal(f"{c['name']} pullPolicy", c["imagePullPolicy"], "Never")
    expect_equal("endpoint", env["AWS_ENDPOINT_URL"]["value"], "http://10.231.1.1:5000")
    expect_equal("region", env["AWS_REGION"]["value"], "us-east-1")
    expect_equal("secret", env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"], "modelstream-s3")
    expect_equal("agent memory", agent["resources"]["limits"]["memory"], "1536Mi")
    expect_equal("evict grace", agent["args"][agent["args"].index("--evict-grace") + 1], "2")
    expect_equal("reconcile", agent["args"][agent["args"].index("--reconcile-every") + 1], "1")
    cm = yaml.safe_load(podspec.find(objects, "ConfigMap")["data"]["config.yaml"])
    expect_equal("models", cm["models"], [{"name": "tiny-v1", "source": "s3://models/tiny-v1/"}])
    dep, pod, app = workload_parts(objects)
    expect_equal("replicas", dep["spec"]["replicas"], 3)
    expect_equal("app", {k: app.get(k) for k in ("image", "imagePullPolicy", "command", "args")},
                 {"image": "localhost/modelstream:0.3.0", "imagePullPolicy": "Never", "command": None,
                  "args": ["stream", "/cache/models/tiny-v1", "--checksum"]})
    for key in ("ports", "readinessProbe", "resources"):
        assert key not in app, f"the e2e app container has {key}"
    side = pod["initContainers"][0]
    expect_equal("sidecar image", (side["image"], side["imagePullPolicy"]), ("localhost/modelstream:0.3.0", "Never"))


def check_e2e_helper() -> None:
    objects = podspec.render(["ci/e2e-values.yaml"], {"example.replicas": 1, "agent": {"evictGraceSeconds": 5}})
    assert all(isinstance(o, dict) for o in objects)
    expect_equal("kinds", [o["kind"] for o in objects],
                 ["ServiceAccount", "ConfigMap", "Service", "DaemonSet", "Deployment"])
    expect_equal("replicas", podspec.find(objects, "Deployment")["spec"]["replicas"], 1)
    agent = podspec.container(podspec.pod_spec(podspec.find(objects, "DaemonSet")), "agent")
    expect_equal("evict grace", agent["args"][agent["args"].index("--evict-grace") + 1], "5")
    expect_equal("merge keeps the rest", agent["args"][agent["args"].index("--reconcile-every") + 1], "1")


def check_tmp_mounts(ci_file: str) -> None:
    _, _, objects = rendered_ci(ci_file)
    for where, spec in pods(objects):
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers_of(spec):
            if not (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
                continue
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, \
                f"{where} {c['name']}: read-only root without an emptyDir at /tmp"


def check_wiring(ci_file: str) -> None:
    """Selectors select, ports exist, names fit, namespaces and labels are set."""
    values, _, objects = rendered_ci(ci_file)
    v = effective(values)
    for o in objects:
        meta = o["metadata"]
        assert len(meta["name"]) <= 63, f"{o['kind']} name {meta['name']!r} over 63 characters"
        expect_equal(f"{o['kind']}/{meta['name']} namespace", meta.get("namespace"), podspec.NAMESPACE)
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            assert label in meta.get("labels", {}), f"{o['kind']}/{meta['name']} lacks label {label}"
    for kind in ("DaemonSet", "Deployment"):
        for o in podspec.find_all(objects, kind):
            selector = o["spec"]["selector"]["matchLabels"]
            labels = o["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), f"{kind} selector does not select its pods"
    ds = podspec.find(objects, "DaemonSet")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    svc = podspec.find(objects, "Service")
    assert svc["spec"]["selector"].items() <= pod_labels.items(), "Service does not select the agents"
    for dep in podspec.find_all(objects, "Deployment"):
        dep_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert not svc["spec"]["selector"].items() <= dep_labels.items(), "Service selects the example"
    expect_equal("Service port", [(p["name"], p["port"]) for p in svc["spec"]["ports"]],
                 [("metrics", v["agent"]["port"])])
    spec = podspec.pod_spec(ds)
    sa = spec["serviceAccountName"]
    if v["serviceAccount"]["create"]:
        account = podspec.find(objects, "ServiceAccount", sa)
        role = v["serviceAccount"]["roleArn"]
        annotations = account["metadata"].get("annotations", {})
        if role:
            expect_equal("IRSA annotation", annotations.get("eks.amazonaws.com/role-arn"), role)
        else:
            assert "eks.amazonaws.com/role-arn" not in annotations
    for monitor in podspec.find_all(objects, "ServiceMonitor"):
        sel = monitor["spec"]["selector"]["matchLabels"]
        assert sel.items() <= svc["metadata"]["labels"].items(), "ServiceMonitor does not select the Service"
        for ep in monitor["spec"]["endpoints"]:
            assert ep["port"] in [p["name"] for p in svc["spec"]["ports"]], f"no Service port {ep['port']}"
    for monitor in podspec.find_all(objects, "PodMonitor"):
        sel = monitor["spec"]["selector"]["matchLabels"]
        assert sel.items() <= pod_labels.items(), "PodMonitor does not select the agents"
        names = [p["name"] for c in spec["containers"] for p in c.get("ports", [])]
        for ep in monitor["spec"]["podMetricsEndpoints"]:
            assert ep["port"] in names, f"no container port {ep['port']}"
    if v["metrics"]["scrapeAnnotations"]:
        annotations = ds["spec"]["template"]["metadata"]["annotations"]
        expect_equal("scrape annotations",
                     {k: annotations.get(k) for k in ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")},
                     {"prometheus.io/scrape": "true", "prometheus.io/port": str(v["agent"]["port"]),
                      "prometheus.io/path": "/metrics"})


def check_image(ci_file: str, want: str) -> None:
    _, _, objects = rendered_ci(ci_file)
    images = {c["image"] for _, spec in pods(objects) for c in containers_of(spec) if c["name"] != "vllm"}
    expect_equal("images", images, {want})


def known_metrics() -> set[str]:
    """Metric names the binary serves, from cmd/modelstream/status.c when it is there,
    else from the README's table."""
    for path in ("cmd/modelstream/status.c", "README.md"):
        full = os.path.join(podspec.REPO, path)
        if os.path.exists(full):
            with open(full) as f:
                names = set(re.findall(r"\bmodelstream_[a-z_]+[a-z]", f.read()))
            names |= {n.replace("_{size,done}", "") for n in names}
            if names:
                return names
    raise AssertionError("no list of metrics to check against")


def used_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bmodelstream_[a-z_]+[a-z]", expr))


def check_dashboard(objects: list[dict]) -> None:
    cm = [o for o in podspec.find_all(objects, "ConfigMap") if "modelstream.json" in (o.get("data") or {})]
    assert len(cm) == 1, "no dashboard ConfigMap"
    expect_equal("dashboard label", cm[0]["metadata"]["labels"].get("grafana_dashboard"), "1")
    dash = json.loads(cm[0]["data"]["modelstream.json"])
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = set().union(*(used_metrics(e) for e in exprs))
    unknown = used - known_metrics()
    assert not unknown, f"metrics the binary does not serve: {sorted(unknown)}"
    joined = "\n".join(exprs)
    for needle in ("rate(modelstream_bytes_fetched_total", "modelstream_model_done_bytes",
                   "modelstream_model_size_bytes", "by (reason) (rate(modelstream_retries_total",
                   "modelstream_cache_size_bytes", "modelstream_cache_budget_bytes", "modelstream_ready"):
        assert needle in joined, f"no panel with {needle}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", f"panel {p['title']} has a fixed data source"


def check_rule_metrics(objects: list[dict]) -> None:
    rule = podspec.find(objects, "PrometheusRule")
    rules = rule["spec"]["groups"][0]["rules"]
    alerts = {r["alert"]: r for r in rules}
    assert {"ModelstreamFetchStalled", "ModelstreamRetryStorm", "ModelstreamCacheNearBudget"} <= set(alerts)
    expect_equal("stalled", (alerts["ModelstreamFetchStalled"]["expr"], alerts["ModelstreamFetchStalled"]["for"]),
                 ("modelstream_healthy == 0", "5m"))
    assert "rate(modelstream_retries_total[5m])" in alerts["ModelstreamRetryStorm"]["expr"]
    assert alerts["ModelstreamCacheNearBudget"]["expr"].startswith(
        "modelstream_cache_size_bytes / modelstream_cache_budget_bytes > 0.9")
    unknown = set().union(*(used_metrics(r["expr"]) for r in rules)) - known_metrics()
    assert not unknown, f"metrics the binary does not serve: {sorted(unknown)}"


def check_notes(ci_file: str) -> None:
    _, texts, _ = rendered_ci(ci_file)
    notes = [t for p, t in texts.items() if p.endswith("NOTES.txt")]
    assert notes, "no NOTES.txt"
    for needle in ("logs", "/progress", "modelstream.sidecar", "modelstream.cacheMount", "modelstream.volumes"):
        assert needle in notes[0], f"NOTES.txt does not mention {needle}"


def check_long_release_name() -> None:
    values = podspec.values([os.path.join(CI_DIR, "full-values.yaml")], {"fullnameOverride": ""})
    name = "r" * 53  # Helm's longest release name
    rendered = podspec.chart().render(values, name=name, namespace=podspec.NAMESPACE, is_install=True)
    for o in podspec.objects_of(rendered):
        assert len(o["metadata"]["name"]) <= 63, f"{o['kind']} {o['metadata']['name']!r}"
        for key in ("app.kubernetes.io/instance",):
            assert len(o["metadata"]["labels"][key]) <= 63


def check_default_image() -> None:
    _, _, objects = rendered_ci("default-values.yaml")
    app_version = podspec.chart().metadata["appVersion"]
    expect_equal("image", agent_parts(objects)[2]["image"], f"modelstream:{app_version}")


# ---------------------------------------------------------------------------------------
# The templates from a parent chart
# ---------------------------------------------------------------------------------------

PARENT_CHART = """\
apiVersion: v2
name: my-llm
version: 1.0.0
appVersion: "9.9.9"
dependencies:
  - name: modelstream
    version: 0.3.0
"""
PARENT_TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-server
spec:
  selector:
    matchLabels: {app: server}
  template:
    metadata:
      labels: {app: server}
    spec:
      initContainers:
        {{- include "modelstream.sidecar" (dict "root" $ "model" .Values.model) | nindent 8 }}
      containers:
        - name: server
          image: example/server:1
          args: ["/weights/models/{{ .Values.model }}"]
          volumeMounts:
            {{- include "modelstream.cacheMount" (dict "root" $ "mountPath" "/weights") | nindent 12 }}
      volumes:
        {{- include "modelstream.volumes" (dict "root" $) | nindent 8 }}
"""


def parent_chart(tmp: str, with_dependency: bool = True) -> str:
    root = os.path.join(tmp, "my-llm")
    os.makedirs(os.path.join(root, "templates"))
    with open(os.path.join(root, "Chart.yaml"), "w") as f:
        f.write(PARENT_CHART if with_dependency else PARENT_CHART.split("dependencies:")[0])
    with open(os.path.join(root, "templates", "server.yaml"), "w") as f:
        f.write(PARENT_TEMPLATE)
    if with_dependency:
        shutil.copytree(podspec.CHART, os.path.join(root, "charts", "modelstream"),
                        ignore=shutil.ignore_patterns("ci"))
    return root


def render_parent(root: str, values: dict) -> list[dict]:
    import helm_python

    with helm_python.Chart.load(root) as parent:
        return podspec.objects_of(parent.render(values, name="llm", namespace="serving", is_install=True))


def check_parent_chart(tmp: str) -> None:
    root = parent_chart(tmp)
    values = {"model": "llama", "modelstream": {
        "agent": {"enabled": False}, "models": [], "sidecar": {"port": 9300},
        "cache": {"hostPath": "/mnt/cache"}, "image": {"registry": "ghcr.io/acme"}}}
    objects = render_parent(root, values)
    expect_equal("kinds", [o["kind"] for o in objects], ["Deployment"])
    spec = podspec.pod_spec(objects[0])
    side = podspec.container(spec, "modelstream")
    expect_equal("sidecar image (the dependency's appVersion, not the parent's)", side["image"],
                 "ghcr.io/acme/modelstream:0.3.0")
    expect_equal("sidecar port", side["startupProbe"]["httpGet"]["port"], 9300)
    expect_equal("hostPath", volume(spec, "modelstream-cache")["hostPath"]["path"], "/mnt/cache")
    expect_equal("mountPath", mount(podspec.container(spec, "server"), "modelstream-cache")["mountPath"], "/weights")
    # With the agent in the same release, a model it does not fetch is refused.
    import helm_python

    try:
        render_parent(root, {"model": "mistral", "modelstream": {"models": [MODEL]}})
    except helm_python.HelmError as e:
        assert "not in models[]" in str(e) and "mistral" in str(e), str(e)
    else:
        raise AssertionError("a model the agent does not fetch was accepted")
    objects = render_parent(root, {"model": "llama", "modelstream": {"models": [MODEL]}})
    expect_equal("kinds with the agent", sorted(o["kind"] for o in objects),
                 ["ConfigMap", "DaemonSet", "Deployment", "Service", "ServiceAccount"])


def check_parent_without_dependency(tmp: str) -> None:
    import helm_python

    root = parent_chart(os.path.join(tmp, "bare"), with_dependency=False)
    try:
        render_parent(root, {"model": "llama"})
    except helm_python.HelmError as e:
        assert "has no dependency" in str(e) or "no template" in str(e), str(e)
    else:
        raise AssertionError("rendered without the modelstream dependency")


def check_old_kubernetes() -> None:
    """As Kubernetes 1.28 the sidecar template refuses (lint logs the template's fail);
    the init container works there."""
    values = podspec.values([os.path.join(CI_DIR, "full-values.yaml")])
    _, stderr = lint(values, "1.28.0")
    assert "need Kubernetes 1.29 or later" in stderr, f"no refusal as 1.28: {stderr!r}"
    values = podspec.values([os.path.join(CI_DIR, "init-container-values.yaml")])
    report, stderr = lint(values, "1.28.0")
    assert "message=" not in stderr and not report.get("errors"), f"init container as 1.28: {stderr} {report}"


# ---------------------------------------------------------------------------------------
# The chart's own files
# ---------------------------------------------------------------------------------------

def check_chart_yaml() -> None:
    meta = podspec.chart().metadata
    got = {k: meta.get(k) for k in ("apiVersion", "name", "version", "appVersion")}
    expect_equal("Chart.yaml", got, {"apiVersion": "v2", "name": "modelstream", "version": "0.3.0",
                                     "appVersion": "0.3.0"})


def load_schema() -> dict:
    with open(os.path.join(podspec.CHART, "values.schema.json")) as f:
        return json.load(f)


def check_schema_closed() -> None:
    """Every object of the schema that lists properties refuses any other."""
    schema = load_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path or "/")
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}/{i}")

    walk(schema, "")
    assert not open_objects, f"objects without additionalProperties: false: {open_objects}"


def schema_keys(schema: dict, node: dict, path: tuple = ()) -> list[tuple]:
    """Paths of the chart's own keys: the schema's properties, not entering the
    definitions of pass-through Kubernetes objects ($ref)."""
    keys = []
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        node = node["items"]
        path = path + (0,)
    for name, child in node.get("properties", {}).items():
        keys.append(path + (name,))
        if "$ref" not in child:
            keys += schema_keys(schema, child, path + (name,))
    return keys


def check_values_commented() -> None:
    """Every key of values.yaml that the chart defines has a comment above it (or on its
    line), and every such key of the schema (but `global`) is in values.yaml."""
    path = os.path.join(podspec.CHART, "values.yaml")
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    root = yaml.compose(text)
    located: dict[tuple, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for key, child in node.value:
                located[prefix + (key.value,)] = key.start_mark.line
                walk(child, prefix + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value[:1]:
                walk(child, prefix + (0,))

    walk(root, ())
    uncommented, missing = [], []
    for key in schema_keys(load_schema(), load_schema()):
        if key == ("global",):
            continue
        if key not in located:
            if 0 not in key:  # keys of list items (models[]) are documented in the comment
                missing.append(".".join(map(str, key)))
            continue
        line = located[key]
        above = lines[line - 1].strip() if line > 0 else ""
        if not above.startswith("#") and "#" not in lines[line]:
            uncommented.append(".".join(map(str, key)))
    assert not missing, f"schema keys missing from values.yaml: {missing}"
    assert not uncommented, f"keys without a comment: {uncommented}"


def check_defaults_in_schema() -> None:
    import jsonschema

    with open(os.path.join(podspec.CHART, "values.yaml")) as f:
        defaults = yaml.safe_load(f)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
              for e in jsonschema.Draft7Validator(load_schema()).iter_errors(defaults)]
    assert not errors, "\n".join(errors)


def check_manifests() -> None:
    import manifests

    stale = []
    for name in manifests.FILES:
        path = os.path.join(manifests.OUT, name)
        try:
            with open(path) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != manifests.render_file(name):
            stale.append(f"manifests/{name}" + (" is missing" if current is None else " differs"))
    assert not stale, "; ".join(stale) + " from a fresh render: run `make manifests`"


def check_manifests_valid() -> None:
    import manifests

    for name in manifests.FILES:
        with open(os.path.join(manifests.OUT, name)) as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        assert objects, f"manifests/{name} holds no object"
        for kube in KUBE_VERSIONS:
            check_kubernetes_schema(objects, kube)


# ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description="Checks of the Helm chart.")
    parser.add_argument("--log", help="also write the results to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="print lint's info messages")
    args = parser.parse_args()
    log = None
    if args.log:
        os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
        log = open(args.log, "w")
    r = Results(log, args.verbose)
    started = time.monotonic()
    try:
        run(r)
    except Exception as e:  # the harness itself broke: that is a failure too
        r.not_ok("chart checks ran to the end", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    r.note(f"{time.monotonic() - started:.1f} s")
    r.say(f"{r.passed} passed, {r.failed} failed")
    if log:
        log.close()
    return 1 if r.failed or not r.passed else 0


def run(r: Results) -> None:
    try:
        import helm_python

        r.note(f"Helm SDK {helm_python.helm_sdk_version()} (helm-python-sdk {helm_python.__version__}), "
               f"kubernetes-validate {__import__('kubernetes_validate').__version__}")
    except ImportError as e:
        r.not_ok("the Python packages are installed (scripts/deps.sh)", str(e))
        return

    r.check("Chart.yaml: apiVersion v2, modelstream 0.3.0, appVersion 0.3.0", check_chart_yaml)
    r.check("values.schema.json: every object refuses unknown keys", check_schema_closed)
    r.check("values.yaml: every key has a comment and is in the schema", check_values_commented)
    r.check("values.yaml: the defaults meet the schema (jsonschema, draft 7)", check_defaults_in_schema)

    for ci in CI_FILES:
        for kube in KUBE_VERSIONS:
            r.check(f"lint --strict, Kubernetes {kube}: ci/{ci}", check_lint, ci, kube, r)
    for ci in CI_FILES:
        rendered = r.check(f"render: ci/{ci}", lambda c: rendered_ci(c)[2] or None, ci)
        if rendered is None:
            continue
        for kube in KUBE_VERSIONS:
            r.check(f"kubernetes-validate --strict {kube}: ci/{ci} "
                    f"({', '.join(o['kind'] for o in rendered if o['apiVersion'] != MONITORING)})",
                    check_kubernetes_schema, rendered, kube)
        if any(o["apiVersion"] == MONITORING for o in rendered):
            r.check(f"structure of ServiceMonitor, PodMonitor, PrometheusRule: ci/{ci}",
                    check_crd_structure, rendered)

    _, _, full = rendered_ci("full-values.yaml")
    if shutil.which("promtool"):
        r.check("promtool check rules: the PrometheusRule", check_promtool, full, "check")
        r.check("promtool test rules: each alert fires when it should, and only then",
                check_promtool, full, "test")
    else:
        r.skip("promtool check/test rules", "promtool not installed (apt-get install prometheus)")
    r.check("PrometheusRule: the three alerts, on metrics the binary serves", check_rule_metrics, full)
    r.check("Grafana dashboard: valid JSON, the panels, metrics the binary serves", check_dashboard, full)

    for what, values, needles in NEGATIVE:
        r.check(f"refused: {what}", check_refused, values, needles)

    for ci in CI_FILES:
        r.check(f"agent memory: tmpfs-huge = sizeGiB GiB + overhead, disk = agent.resources: ci/{ci}",
                check_agent_memory, ci)
        r.check(f"prepare-cache: args, privilege and propagation for the medium: ci/{ci}", check_prepare, ci)
        r.check(f"agent: args, probes, env, unprivileged, no checksum annotation: ci/{ci}",
                check_agent_args, ci)
        r.check(f"ConfigMap mounted as a directory (no subPath) at /etc/modelstream: ci/{ci}",
                check_config_mount, ci)
        r.check(f"config.yaml: only keys the binary accepts, values from values: ci/{ci}",
                check_config_file, ci)
        r.check(f"credentials only by secretKeyRef, only to the agent, none in a ConfigMap: ci/{ci}",
                check_credentials, ci)
        r.check(f"read-only root file systems have a /tmp emptyDir: ci/{ci}", check_tmp_mounts, ci)
        r.check(f"selectors, ports, names, namespaces, labels, IRSA: ci/{ci}", check_wiring, ci)
        r.check(f"NOTES.txt: logs, /progress, the templates: ci/{ci}", check_notes, ci)
        values = effective(rendered_ci(ci)[0])
        if values["example"]["enabled"]:
            kind = "sidecar" if values["example"]["useSidecar"] else "init container"
            fn = check_sidecar if values["example"]["useSidecar"] else check_init_container
            r.check(f"example {kind}: args, probe, restartPolicy, securityContext, mounts: ci/{ci}", fn, ci)
            r.check(f"example app: image, command, args, model path: ci/{ci}", check_example_app, ci)

    r.check("e2e values: image, store, Secret, 1 GiB tmpfs, tiny-v1, 3 replicas of modelstream stream",
            check_e2e, rendered_ci("e2e-values.yaml")[2])
    r.check("podspec.render(values_files, set_values): dicts, merged values", check_e2e_helper)
    r.check("image: the chart's appVersion by default", check_default_image)
    r.check("image: registry and digest (full-values)", check_image, "full-values.yaml",
            "registry.example.com/ml/modelstream@sha256:"
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    r.check("names fit in 63 characters with a 53-character release name", check_long_release_name)
    r.check("lint as Kubernetes 1.28: the sidecar refuses, the init container works", check_old_kubernetes)
    with tempfile.TemporaryDirectory() as tmp:
        r.check("templates from a parent chart: this chart's image, port and hostPath; model checked",
                check_parent_chart, tmp)
        r.check("templates from a chart without the dependency: a clear error",
                check_parent_without_dependency, tmp)
    r.check("manifests-check: manifests/ equals a fresh render", check_manifests)
    r.check("manifests/: kubernetes-validate --strict 1.29.0 and 1.33.0", check_manifests_valid)


if __name__ == "__main__":
    sys.exit(main())
