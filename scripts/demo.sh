#!/usr/bin/env bash
# The main job on a built-in default, start to finish: a local S3-compatible server holding
# a generated model (two safetensors shards, a config and a tokenizer), `modelstream fetch`
# into a temporary node cache with its progress, a second fetch served from the cache,
# `stream` from the cache into host memory, and a closing summary. Cleans up after itself.
# Usage: scripts/demo.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/modelstream-demo.XXXXXX")
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ms=$build/modelstream
model=$work/bucket/models/llama-demo
step() { printf '\n== %s\n' "$*"; }

step "a model in a bucket: two shards (3000 small tensors, 4 x 128 MiB), config, tokenizer"
mkdir -p "$model"
"$build/mkmodel" --seed 7 --small-count 2000 --large-count 2 --large-bytes 128M "$model/model-00001-of-00002.safetensors"
"$build/mkmodel" --seed 8 --small-count 1000 --large-count 2 --large-bytes 128M "$model/model-00002-of-00002.safetensors"
echo '{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}' >"$model/config.json"
head -c 2000000 /dev/urandom | base64 >"$model/tokenizer.json"

step "a local S3-compatible endpoint on 127.0.0.1 (tests/support/s3fault.py), signed requests only"
python3 "$here/tests/support/s3fault.py" --root "$work/bucket" --port 0 --port-file "$work/port" \
  --require-auth --etag stat >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$work/port") AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo-secret AWS_EC2_METADATA_DISABLED=true
echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"

step "modelstream doctor s3://models/llama-demo/ (how it is reached, and why)"
"$ms" doctor s3://models/llama-demo/

step "modelstream ls s3://models/llama-demo/"
"$ms" ls s3://models/llama-demo/

step "modelstream fetch s3://models/llama-demo/ --cache CACHE (what the init container runs)"
mkdir -p "$work/cache"
"$ms" fetch s3://models/llama-demo/ --cache "$work/cache" --progress-every 1

step "the same fetch again: every file is already in the node cache"
"$ms" fetch s3://models/llama-demo/ --cache "$work/cache"

step "what the application container sees: CACHE/models/llama-demo"
ls -l "$work/cache/models/llama-demo/" | sed "s|$work|WORK|g"

step "modelstream stream CACHE/models/llama-demo/ (every shard, in order, into host memory)"
"$ms" stream "$work/cache/models/llama-demo/"

step "modelstream cache ls"
"$ms" cache ls --cache "$work/cache" | sed "s|$work|WORK|g"

step "done: fetched once into the node cache, verified, published atomically, streamed from it"
echo "Next: 'modelstream fetch --help', 'modelstream cache --help', 'make test'."
