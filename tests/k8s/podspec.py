"""The one renderer of the Helm chart (helm/modelstream) for every test and tool.

Renders offline with the Helm v4 SDK that the `helm-python-sdk` package embeds (no helm
binary, no cluster), exactly as `helm install modelstream helm/modelstream -n modelstream
-f FILE...` would: the values files are merged in order (later ones win, maps merge, lists
are replaced, null removes a default), then the chart's defaults are applied and the
values are checked against values.schema.json.

    import podspec
    objects = podspec.render(["ci/e2e-values.yaml"], {"example.replicas": 1})
    agent = podspec.find(objects, "DaemonSet")
    pod = podspec.pod_spec(agent)

Values files are paths relative to the working directory, or else to the chart directory
(so "ci/e2e-values.yaml" works from anywhere).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(REPO, "helm", "modelstream")
RELEASE = "modelstream"
NAMESPACE = "modelstream"

# The order in which Helm installs kinds (a subset of Helm's InstallOrder); kinds it does
# not know (the monitoring CRDs' objects) come last.
KIND_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap",
    "StorageClass", "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition",
    "ClusterRole", "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role",
    "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler",
    "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
]

_chart = None


def chart():
    """The chart, loaded once per process."""
    global _chart
    if _chart is None:
        import helm_python

        _chart = helm_python.Chart.load(CHART)
    return _chart


def _resolve(path: str) -> str:
    if os.path.exists(path):
        return path
    in_chart = os.path.join(CHART, path)
    if os.path.exists(in_chart):
        return in_chart
    raise FileNotFoundError(f"values file {path!r} (not here, nor in {CHART})")


def merge(base: dict, override: dict) -> dict:
    """Merges values the way `helm -f a -f b` does: maps recursively, anything else
    (lists included) replaced; a None is kept, so that Helm removes that default."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _nest(set_values: dict) -> dict:
    """{"a.b": 1, "c": {"d": 2}} -> {"a": {"b": 1}, "c": {"d": 2}} (a '.' in a key can be
    escaped as '\\.')."""
    nested: dict = {}
    for key, value in set_values.items():
        parts = [p.replace("\0", ".") for p in key.replace("\\.", "\0").split(".")]
        branch: dict = {}
        leaf = branch
        for part in parts[:-1]:
            leaf[part] = {}
            leaf = leaf[part]
        leaf[parts[-1]] = value
        nested = merge(nested, branch)
    return nested


def values(values_files: list[str] | None = None, set_values: dict | None = None) -> dict:
    """The user values: the files merged in order, then set_values (dotted keys allowed)."""
    merged: dict = {}
    for path in values_files or []:
        with open(_resolve(path)) as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: values must be a mapping")
        merged = merge(merged, data)
    if set_values:
        merged = merge(merged, _nest(set_values))
    return merged


def render_templates(values_files: list[str] | None = None, set_values: dict | None = None,
                     release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included, empty templates left out).
    Raises helm_python.HelmError (HelmValuesError for values the schema refuses,
    HelmRenderError for a template's fail) with Helm's message."""
    rendered = chart().render(values(values_files, set_values), name=release,
                              namespace=namespace, is_install=True)
    return {path: text for path, text in rendered.items() if text.strip()}


def objects_of(rendered: dict[str, str]) -> list[dict]:
    """The Kubernetes objects of rendered templates, in Helm's install order."""
    objects = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                objects.append(doc)
    return sort_objects(objects)


def sort_objects(objects: list[dict]) -> list[dict]:
    def rank(obj: dict) -> tuple:
        kind = obj.get("kind", "")
        order = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        return (order, kind, obj.get("metadata", {}).get("name", ""))

    return sorted(objects, key=rank)


def render(values_files: list[str], set_values: dict | None = None) -> list[dict]:
    """The chart's objects (dicts) for release "modelstream" in namespace "modelstream"."""
    return objects_of(render_templates(values_files, set_values))


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of this kind (and name); raises KeyError when there is none or,
    without a name, more than one."""
    found = [o for o in objects
             if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise KeyError(f"{len(found)} {kind} objects named {name or '*'}")
    return found[0]


def find_all(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind]


def pod_spec(obj: dict) -> dict:
    """The pod spec of a DaemonSet, Deployment, StatefulSet, Job or Pod."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def container(spec: dict, name: str) -> dict:
    """A container or init container of a pod spec, by name."""
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c["name"] == name:
            return c
    raise KeyError(f"no container {name!r}")
