#!/usr/bin/env bash
# scripts/gpu_carry.sh - what tests/gpu/run.sh needs on a GPU machine that cannot install
# anything: our build (modelstream, mkmodel, gpu_check, pcie_bench), the shared libraries
# they load that are not glibc's (their ldd closure: libcurl and its dependencies, cJSON,
# expat, libyaml, libwebsockets, OpenSSL), and the wheels of the peers for that machine's
# Python (3.12): Run:ai Model Streamer, fastsafetensors and what they need besides torch;
# and this repository's Python package as a wheel.
# Into gpu-carry/ (git-ignored), for the device tool's carry=["gpu-carry"], at most 64 MiB.
#
# Usage: scripts/gpu_carry.sh [PYTHON_VERSION]    (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
out=gpu-carry
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/wheels"
make -s -j"$(nproc)" gpu-tools
cp build/modelstream build/mkmodel build/tests/gpu/gpu_check build/tests/gpu/pcie_bench "$out/bin/"
# The closure, without the C library itself (the GPU machine's is newer, and must be its own).
for bin in "$out"/bin/*; do ldd "$bin"; done | awk '/=> \// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libresolv)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
pip download -q --no-deps --python-version "$py" --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out/wheels" runai-model-streamer==0.17.1 fastsafetensors==0.5.0 humanize typer click \
  rich shellingham typing-extensions markdown-it-py mdurl pygments numpy
# The Python package, as a wheel (py3-none-linux_x86_64: any Python 3 takes it).
make -s wheel >/dev/null
cp build/wheels/modelstream-*.whl "$out/wheels/"
echo "$(git rev-parse --short HEAD)$(git diff --quiet || echo +changes), $(date -u +%F) on $(. /etc/os-release; echo "$PRETTY_NAME")" >"$out/BUILT"
du -sh "$out" "$out"/*
size=$(du -sm "$out" | cut -f1)
[ "$size" -le 60 ] || { echo "gpu_carry: $out is $size MiB, over what the device tool carries" >&2; exit 1; }
