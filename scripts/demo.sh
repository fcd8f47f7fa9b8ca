#!/usr/bin/env bash
# The main job on a built-in default: generate a model-like safetensors file (about
# 1.5 GiB: a few thousand small tensors and a few large ones), inspect it, and stream it
# into host memory unlimited, with a 256 MiB ring, and selecting one layer. Cleans up.
# Usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/modelstream-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
model=$work/model.safetensors
ms=$build/modelstream

step() { printf '\n== %s\n' "$*"; }

step "generating a model-like file (3000 small tensors, 5 x 256 MiB)"
"$build/mkmodel" --seed 7 --small-count 3000 --small-max-bytes 64K --large-count 5 \
  --large-bytes 256M --metadata "$model"

step "modelstream inspect (the header only; first lines)"
"$ms" inspect "$model" > "$work/inspect.txt"
head -n 30 "$work/inspect.txt"

step "modelstream stream: unlimited memory (tensors stay valid until the end)"
"$ms" stream "$model"

step "modelstream stream --memory-limit 256M: a 256 MiB ring, recycled as tensors are released"
"$ms" stream "$model" --memory-limit 256M

step "modelstream stream --select 'model.layers.1.*' --checksum: one layer, SHA-256 per tensor"
"$ms" stream "$model" --select 'model.layers.1.*' --checksum

step "done: the same tensors, three ways; see 'modelstream --help' for more"
