#!/usr/bin/env bash
# End-to-end tests of `modelstream fetch` and the node cache, against the fault-injecting
# S3 endpoint (tests/support/s3fault.py) on 127.0.0.1 and real mounts made here: a plain
# directory, tmpfs with huge=within_size (huge pages proven from /proc/meminfo), a small
# tmpfs that fills up, and hugetlbfs. Single flight across 8 processes, kill -9 and resume,
# budgets and eviction, verification, progress logs.
# Usage: tests/cache_tests.sh BUILD_DIR. Ends with "N passed, M failed". Mounts need root.
set -u
build=$1
cli=$(cd "$build" && pwd)/modelstream
mkmodel=$(cd "$build" && pwd)/mkmodel
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-cache-tests.XXXXXX")
. "$(dirname "$0")/lib.sh"
server=
mounts=()
hugepages_before=

cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  jobs -p | xargs -r kill -9 2>/dev/null
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
  [ -n "$hugepages_before" ] && echo "$hugepages_before" >/proc/sys/vm/nr_hugepages
  rm -rf "$tmp"
}
trap cleanup EXIT


# The model: two shards of numpy-readable dtypes, a config and a tokenizer, in a bucket.
src=$tmp/root/models/llama
mkdir -p "$src/original"
dtypes=U8,I8,U16,I16,F16,U32,I32,F32,U64,I64,F64
"$mkmodel" --seed 11 --dtypes $dtypes --small-count 300 --large-count 2 --large-bytes 12M "$src/model-00001-of-00002.safetensors" >/dev/null
"$mkmodel" --seed 12 --dtypes $dtypes --small-count 200 --large-count 2 --large-bytes 8M "$src/model-00002-of-00002.safetensors" >/dev/null
echo '{"architectures": ["LlamaForCausalLM"]}' >"$src/config.json"
head -c 100000 /dev/urandom | base64 >"$src/tokenizer.json"
echo '{"dim": 4096}' >"$src/original/params.json"
model_bytes=$(find "$src" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
want=$(python3 tests/support/st_checksums.py "$src"/*.safetensors)

python3 tests/support/s3fault.py --root "$tmp/root" --port 0 --port-file "$tmp/port" --require-auth \
  >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDCACHETEST AWS_SECRET_ACCESS_KEY=cache-test-secret-never-printed
control() { curl -s -X POST -d "$2" "http://127.0.0.1:$port/__control/$1" >/dev/null; }
served() { # body bytes served since the last reset, all objects
  curl -s "http://127.0.0.1:$port/__control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_served_total"])'
}

# Checks that DIR/models/llama holds the model, read by Python (mmap) and by modelstream.
check_model() {
  local name=$1 dir=$2 got_py got_ms
  for f in config.json tokenizer.json original/params.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors; do
    cmp -s "$dir/models/llama/$f" "$src/$f" || { fail "$name" "$f differs"; return; }
  done
  got_py=$(python3 tests/support/st_checksums.py "$dir"/models/llama/*.safetensors 2>&1)
  got_ms=$("$cli" stream "$dir/models/llama/" --checksum --quiet 2>&1 | sort)
  if [ "$got_py" = "$want" ] && [ "$got_ms" = "$want" ]; then pass "$name"
  else fail "$name" "python or modelstream read different tensors"; fi
}

# --- a plain directory -------------------------------------------------------------------
mkdir -p "$tmp/plain"
control reset '{}'
if "$cli" fetch s3://models/llama/ --cache "$tmp/plain" >"$tmp/out" 2>"$tmp/err"; then
  pass "fetch of a model directory into a plain directory"
else fail "fetch of a model directory into a plain directory" "$(cat "$tmp/err")"; fi
check_model "the cached model reads back bit-identically (safe_open and modelstream stream)" "$tmp/plain"
[ "$(served)" -eq "$model_bytes" ] && pass "the origin served the model's bytes exactly once" ||
  fail "the origin served the model's bytes exactly once" "$(served) of $model_bytes"
grep -q "fetch llama: ready at $tmp/plain/models/llama: 5 files" "$tmp/out" &&
  grep -q "model-00001-of-00002.safetensors ready (.*fetched and verified)" "$tmp/out" &&
  pass "progress: a line per file and a summary" || fail "progress: a line per file and a summary" "$(cat "$tmp/out")"
control reset '{}'
"$cli" fetch s3://models/llama/ --cache "$tmp/plain" >"$tmp/out" 2>&1
[ "$(served)" -eq 0 ] && grep -q "already in the cache" "$tmp/out" &&
  pass "a second fetch is served from the cache (0 bytes from the origin)" ||
  fail "a second fetch is served from the cache" "$(served) bytes"
[ -L "$tmp/plain/models/llama" ] && [ "$(readlink "$tmp/plain/models/llama/config.json" | cut -c1-3)" = "../" ] &&
  pass "model links are relative (the cache works mounted elsewhere)" || fail "model links are relative"
cp -a "$tmp/plain" "$tmp/moved"
check_model "a copy of the cache at another path still reads back" "$tmp/moved"

# --- tmpfs with huge pages ---------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && mkdir -p "$tmp/thp" && mount -t tmpfs -o huge=within_size,size=256M tmpfs "$tmp/thp"; then
  mounts+=("$tmp/thp")
  before=$(awk '/^ShmemHugePages:/ {print $2}' /proc/meminfo)
  "$cli" fetch s3://models/llama/ --cache "$tmp/thp" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  after=$(awk '/^ShmemHugePages:/ {print $2}' /proc/meminfo)
  grep -q "(tmpfs (huge pages))" "$tmp/out" && [ $rc -eq 0 ] &&
    pass "tmpfs with huge=within_size is detected" || fail "tmpfs with huge=within_size is detected" "rc=$rc $(cat "$tmp/out" "$tmp/err")"
  # Each shard's size is set before it is written, so all but its last partial 2 MiB is huge.
  if [ $((after - before)) -ge 32768 ]; then
    pass "the cached files sit in huge pages (ShmemHugePages +$((after - before)) kB)"
  else fail "the cached files sit in huge pages" "ShmemHugePages $before -> $after kB"; fi
  check_model "the model in tmpfs reads back bit-identically (safe_open and modelstream stream)" "$tmp/thp"
else
  skip "tmpfs with huge pages" "needs root to mount"
fi

# --- a full tmpfs ------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && mkdir -p "$tmp/small" && mount -t tmpfs -o size=16M tmpfs "$tmp/small"; then
  mounts+=("$tmp/small")
  "$cli" fetch s3://models/llama/ --cache "$tmp/small" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ $rc -eq 8 ] && grep -q "s3://models/llama/model-0000[12]-of-00002.safetensors: no space in the cache" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
     [ ! -e "$tmp/small/models/llama" ] && ! ls "$tmp/small/blobs" | grep -qE '^[0-9a-f]{40}\.partial$'; then
    pass "a full tmpfs: exit 8, one line, no partial file and no model left"
  else fail "a full tmpfs: exit 8, one line, no partial file and no model left" "rc=$rc $(cat "$tmp/err"; ls "$tmp/small/blobs")"; fi
else
  skip "a full tmpfs" "needs root to mount"
fi

# --- hugetlbfs -----------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && mkdir -p "$tmp/huge"; then
  hugepages_before=$(cat /proc/sys/vm/nr_hugepages)
  echo 64 >/proc/sys/vm/nr_hugepages
  if mount -t hugetlbfs -o pagesize=2M none "$tmp/huge" 2>/dev/null; then
    mounts+=("$tmp/huge")
    "$cli" fetch s3://models/llama/ --cache "$tmp/huge" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -ne 0 ] && grep -q "is hugetlbfs" "$tmp/err" && grep -q "huge=within_size" "$tmp/err" &&
       [ -z "$(ls -A "$tmp/huge")" ]; then
      pass "hugetlbfs is refused with the reason and the tmpfs mount to use instead, leaving nothing"
    else fail "hugetlbfs is refused with the reason" "rc=$rc $(cat "$tmp/err")"; fi
  else
    skip "hugetlbfs" "cannot mount it here"
  fi
else
  skip "hugetlbfs" "needs root"
fi

# --- single flight: eight processes, one download ----------------------------------------
mkdir -p "$tmp/eight"
control reset '{}'
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.05}]'
pids=()
for i in $(seq 8); do
  "$cli" fetch s3://models/llama/ --cache "$tmp/eight" --chunk-size 1M --concurrency 4 \
    --progress-every 0.5 >"$tmp/eight-$i.out" 2>&1 &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
control script '[]'
[ "$ok" -eq 8 ] && pass "eight concurrent fetches of one model all succeed" ||
  fail "eight concurrent fetches of one model all succeed" "$ok of 8; $(cat "$tmp"/eight-*.out | grep modelstream: | head -3)"
[ "$(served)" -eq "$model_bytes" ] && pass "...and the origin served the model's bytes once ($model_bytes bytes)" ||
  fail "...and the origin served the model's bytes once" "$(served) of $model_bytes bytes"
grep -l "waiting for process" "$tmp"/eight-*.out >/dev/null && pass "waiters say whom they wait for, with its progress" ||
  fail "waiters say whom they wait for, with its progress"
check_model "the eight fetches left one verified model" "$tmp/eight"

# --- kill -9 mid-fetch, then resume ------------------------------------------------------
mkdir -p "$tmp/killed"
control reset '{}'
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.1}]'
# Watches for a model that is published before it is whole, or a blob that is short.
(
  while :; do
    if [ -e "$tmp/killed/models/llama" ] && ! cmp -s "$tmp/killed/models/llama/model-00002-of-00002.safetensors" "$src/model-00002-of-00002.safetensors"; then
      echo "model published before complete" >"$tmp/watch-failed"
    fi
    for b in "$tmp"/killed/blobs/*; do
      case $b in *.*) continue ;; esac
      [ -f "$b.json" ] || echo "blob $b without its record" >"$tmp/watch-failed"
    done
    sleep 0.02
  done
) &
watcher=$!
for delay in 0.4 0.9 1.3; do
  "$cli" fetch s3://models/llama/ --cache "$tmp/killed" --chunk-size 1M --concurrency 2 >/dev/null 2>&1 &
  victim=$!
  sleep $delay
  kill -9 $victim 2>/dev/null
  wait $victim 2>/dev/null
done
partials=$(ls "$tmp/killed/blobs" | grep -c '\.partial$')
[ ! -e "$tmp/killed/models/llama" ] && [ "$partials" -ge 1 ] &&
  pass "after kill -9: no model published, a partial download left to resume" ||
  fail "after kill -9: no model published, a partial download left to resume" "$partials partials"
"$cli" fetch s3://models/llama/ --cache "$tmp/killed" --chunk-size 1M --concurrency 2 >"$tmp/out" 2>&1
rc=$?
kill $watcher 2>/dev/null; wait $watcher 2>/dev/null
control script '[]'
[ $rc -eq 0 ] && pass "the next fetch completes" || fail "the next fetch completes" "$(cat "$tmp/out")"
total=$(served)
# Resumed, not restarted: at most the chunks in flight at each kill are fetched twice.
[ "$total" -le $((model_bytes + 3 * 2 * 1048576)) ] &&
  pass "...resuming what was there ($total bytes served for a $model_bytes-byte model over 4 runs)" ||
  fail "...resuming what was there" "$total bytes served for $model_bytes"
check_model "...and the model is bit-identical" "$tmp/killed"
[ ! -e "$tmp/watch-failed" ] && pass "no reader could see a partial file as complete" ||
  fail "no reader could see a partial file as complete" "$(cat "$tmp/watch-failed")"

# --- the downloader dies while another process waits: the waiter takes over -------------
mkdir -p "$tmp/takeover"
control reset '{}'
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.1}]'
"$cli" fetch s3://models/llama/ --cache "$tmp/takeover" --chunk-size 1M --concurrency 2 >/dev/null 2>&1 &
first=$!
sleep 0.5
"$cli" fetch s3://models/llama/ --cache "$tmp/takeover" --chunk-size 1M --concurrency 2 \
  --progress-every 0.2 >"$tmp/waiter.out" 2>&1 &
waiter=$!
sleep 0.6
kill -9 $first 2>/dev/null
wait $first 2>/dev/null
wait $waiter
rc=$?
control script '[]'
total=$(served)
if [ $rc -eq 0 ] && grep -q "waiting for process $first" "$tmp/waiter.out" &&
   [ "$total" -le $((model_bytes + 2 * 1048576)) ]; then
  pass "the downloader killed: its waiter takes over and resumes ($total bytes served for $model_bytes)"
else fail "the downloader killed: its waiter takes over" "rc=$rc, $total bytes; $(tail -3 "$tmp/waiter.out")"; fi
check_model "...and the model is bit-identical" "$tmp/takeover"

# --- a broken file at the source --------------------------------------------------------
mkdir -p "$tmp/root/models/broken" "$tmp/bad"
cp "$src/config.json" "$tmp/root/models/broken/"
head -c 5000 "$src/model-00001-of-00002.safetensors" >"$tmp/root/models/broken/model.safetensors"
"$cli" fetch s3://models/broken/ --cache "$tmp/bad" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 3 ] && grep -q "s3://models/broken/model.safetensors" "$tmp/err" && [ ! -e "$tmp/bad/models/broken" ] &&
  ! ls "$tmp/bad/blobs" | grep -q partial &&
  pass "a truncated safetensors file fails the fetch (exit 3), naming it; nothing is published" ||
  fail "a truncated safetensors file fails the fetch" "rc=$rc $(cat "$tmp/err")"

# --- budget and eviction -----------------------------------------------------------------
mkdir -p "$tmp/root/models/small" "$tmp/budget"
"$mkmodel" --seed 13 --dtypes $dtypes --small-count 10 --large-count 1 --large-bytes 4M "$tmp/root/models/small/model.safetensors" >/dev/null
"$cli" fetch s3://models/llama/ --cache "$tmp/budget" -q || fail "budget: first fetch"
"$cli" fetch s3://models/small/ --cache "$tmp/budget" --budget $((model_bytes + 1048576)) >"$tmp/out" 2>"$tmp/err"
rc=$?
"$cli" cache ls --cache "$tmp/budget" >"$tmp/ls"
if [ $rc -eq 0 ] && grep -q "^small " "$tmp/ls" && ! grep -q "^llama " "$tmp/ls" && [ ! -e "$tmp/budget/models/llama" ]; then
  pass "a budget evicts the least recently used model to make room"
else fail "a budget evicts the least recently used model to make room" "rc=$rc $(cat "$tmp/err" "$tmp/ls")"; fi
"$cli" fetch s3://models/llama/ --cache "$tmp/budget" -q
mkdir -p "$tmp/root/models/other"
"$mkmodel" --seed 14 --dtypes $dtypes --small-count 10 --large-count 1 --large-bytes 4M "$tmp/root/models/other/model.safetensors" >/dev/null
exec 7<"$tmp/budget/models/llama/model-00001-of-00002.safetensors"   # a reader holds one file
"$cli" fetch s3://models/other/ --cache "$tmp/budget" --budget $((model_bytes + 1048576)) >"$tmp/out" 2>"$tmp/err"
rc=$?
exec 7<&-
[ $rc -eq 8 ] && grep -q "budget" "$tmp/err" && [ -e "$tmp/budget/models/llama/config.json" ] &&
  pass "a file held open is never evicted: the fetch fails with exit 8 instead" ||
  fail "a file held open is never evicted" "rc=$rc $(cat "$tmp/err")"

# --- verify, rm, gc ----------------------------------------------------------------------
"$cli" cache verify llama --cache "$tmp/plain" --content >"$tmp/out" 2>&1 &&
  pass "cache verify --content: every byte matches its ETag" || fail "cache verify --content" "$(cat "$tmp/out")"
blob=$(readlink -f "$tmp/plain/models/llama/model-00002-of-00002.safetensors")
chmod u+w "$blob"
printf 'X' | dd of="$blob" bs=1 seek=9 conv=notrunc 2>/dev/null
"$cli" cache verify llama --cache "$tmp/plain" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 3 ] && grep -q "model-00002-of-00002.safetensors" "$tmp/err" &&
  pass "cache verify finds a damaged header (exit 3, naming the file)" || fail "cache verify finds a damaged header" "rc=$rc $(cat "$tmp/err")"
"$cli" cache rm llama --cache "$tmp/plain" >/dev/null && "$cli" cache gc --cache "$tmp/plain" >"$tmp/out" 2>&1
[ -z "$("$cli" cache ls --cache "$tmp/plain")" ] && grep -q "removed 5 files" "$tmp/out" &&
  [ -z "$(ls "$tmp/plain/blobs" | grep -v '\.lock$')" ] &&
  pass "cache rm then gc removes the model and its files" || fail "cache rm then gc" "$(cat "$tmp/out")"

# --- a config file, the environment over it, a sha256 manifest ---------------------------
mkdir -p "$tmp/cfg-cache" "$tmp/env-cache"
(cd "$src" && sha256sum model-00001-of-00002.safetensors config.json) >"$tmp/root/models/llama.sha256"
cat >"$tmp/fetch.yaml" <<YAML
cache: $tmp/cfg-cache
concurrency: 4
models:
  - name: from-config
    source: s3://models/llama/
    sha256_manifest: s3://models/llama.sha256
  - source: s3://models/small/
YAML
if "$cli" fetch --config "$tmp/fetch.yaml" >"$tmp/out" 2>"$tmp/err" &&
   [ -e "$tmp/cfg-cache/models/from-config/config.json" ] && [ -e "$tmp/cfg-cache/models/small/model.safetensors" ]; then
  pass "fetch --config fetches the file's models into the file's cache, verified against a manifest"
else fail "fetch --config" "$(cat "$tmp/err")"; fi
MODELSTREAM_CACHE_DIR=$tmp/env-cache "$cli" fetch --config "$tmp/fetch.yaml" -q 2>"$tmp/err" &&
  [ -e "$tmp/env-cache/models/small" ] && pass "MODELSTREAM_CACHE_DIR wins over the config file" ||
  fail "MODELSTREAM_CACHE_DIR wins over the config file" "$(cat "$tmp/err")"
printf 'cache: %s\nbudgt: 1G\n' "$tmp/cfg-cache" >"$tmp/bad.yaml"
"$cli" fetch --config "$tmp/bad.yaml" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] && grep -q "bad.yaml:2:1: unknown key 'budgt' (did you mean 'budget'?)" "$tmp/err" &&
  pass "a config file with a typo: exit 2, file:line:column and a suggestion" || fail "a config file with a typo" "rc=$rc $(cat "$tmp/err")"
sed 's/^[0-9a-f]\{8\}/00000000/' "$tmp/root/models/llama.sha256" >"$tmp/root/models/wrong.sha256"
mkdir -p "$tmp/manifest-cache"
"$cli" fetch s3://models/llama/ --cache "$tmp/manifest-cache" --manifest s3://models/wrong.sha256 >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "is not the 00000000" "$tmp/err" && [ ! -e "$tmp/manifest-cache/models/llama" ] &&
  pass "a file that does not match the manifest: the model is not published, one line with both hashes" ||
  fail "a file that does not match the manifest" "rc=$rc $(cat "$tmp/err")"

# --- admission control: a node-wide cap on reads in flight, a throttling origin ------------
mkdir -p "$tmp/capped-a" "$tmp/capped-b" "$tmp/capped-c"
control reset '{}'
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.05}]'
pids=()
for d in a b c; do   # three "pods" on one node: one cache directory would dedupe, so three
  "$cli" fetch s3://models/llama/ --cache "$tmp/capped-$d" --chunk-size 1M --concurrency 16 \
    --node-connections 4 -q 2>"$tmp/capped-$d.err" &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
control script '[]'
inflight=$(curl -s "http://127.0.0.1:$port/__control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["inflight_max"])')
echo "# node-wide cap 4: three fetchers of 16 reads each; at most $inflight requests in flight at the origin"
[ "$ok" -eq 3 ] && pass "three fetchers with --node-connections 4 all complete" || fail "three capped fetchers all complete" "$(cat "$tmp"/capped-*.err)"
# The cap holds per cache directory (each is a node here), so three nodes: at most 3 x 4.
[ "$inflight" -le 12 ] && pass "the node-wide cap bounds reads in flight ($inflight <= 3 nodes x 4)" ||
  fail "the node-wide cap bounds reads in flight" "$inflight in flight"
# `stream s3://` passes the same admission: three streams under one node budget of 4.
mkdir -p "$tmp/stream-node"
control reset '{}'
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.05}]'
pids=()
for i in 1 2 3; do
  "$cli" stream s3://models/llama/ --cache "$tmp/stream-node" --node-connections 4 \
    --chunk-size 1M --concurrency 16 --checksum --quiet >"$tmp/stream-$i.out" 2>"$tmp/stream-$i.err" &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
control script '[]'
stats=$(curl -s "http://127.0.0.1:$port/__control/stats")
inflight=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["inflight_max"])')
gets=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"].get("GET", 0))')
echo "# three streams of 16 reads each under --node-connections 4: $gets GETs, at most $inflight in flight at the origin"
[ "$ok" -eq 3 ] && [ "$(sort "$tmp/stream-1.out")" = "$want" ] && [ "$(sort "$tmp/stream-3.out")" = "$want" ] &&
  pass "three streams under one node budget all deliver every tensor intact" ||
  fail "three streams under one node budget" "ok=$ok $(cat "$tmp"/stream-*.err)"
[ "$inflight" -le 4 ] && [ "$gets" -ge 60 ] &&
  pass "stream s3:// shares the node budget: $inflight <= 4 reads in flight over 3 processes" ||
  fail "stream s3:// shares the node budget" "$inflight in flight, $gets GETs"
# The summary reports the read size the streamer used: 16 MiB for object storage.
"$cli" stream s3://models/llama/ --json 2>/dev/null >"$tmp/summary.json"
python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); sys.exit(d["chunk_size"] != 16 << 20 or d["concurrency"] != 16)' "$tmp/summary.json" &&
  pass "stream s3:// reports the chunk size and concurrency it used (16 MiB, 16)" ||
  fail "stream s3:// reports the chunk size it used" "$(cat "$tmp/summary.json")"
"$cli" stream s3://models/llama/ --node-connections 4 >/dev/null 2>"$tmp/err"; rc=$?
[ "$rc" -eq 2 ] && grep -q "need --cache DIR" "$tmp/err" &&
  pass "stream --node-connections without --cache: exit 2, says what is missing" ||
  fail "stream --node-connections without --cache" "rc=$rc $(cat "$tmp/err")"

mkdir -p "$tmp/shared-node"
control reset '{}'
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.05}]'
pids=()
for m in llama small other; do   # three models, one node (one cache), one cap
  "$cli" fetch s3://models/$m/ --cache "$tmp/shared-node" --chunk-size 1M --concurrency 16 \
    --node-connections 4 -q 2>"$tmp/shared-$m.err" &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
control script '[]'
inflight=$(curl -s "http://127.0.0.1:$port/__control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["inflight_max"])')
# The cap is on ranged reads; each process's listing and HEADs (one at a time) are outside it.
[ "$ok" -eq 3 ] && [ "$inflight" -le $((4 + 3)) ] &&
  pass "three processes sharing one node's cache keep to its 4 reads (max $inflight requests in flight, 3 of them metadata at most)" ||
  fail "three processes sharing one node's cache stay within 4 connections" "$ok ok, $inflight in flight"

# A throttling origin: SlowDown above 15 requests/s; six fetchers of different models.
for i in 1 2 3 4 5 6; do
  mkdir -p "$tmp/root/models/t$i"
  "$mkmodel" --seed $((20 + i)) --dtypes $dtypes --small-count 20 --large-count 1 --large-bytes 12M "$tmp/root/models/t$i/model.safetensors" >/dev/null
done
mkdir -p "$tmp/throttled"
control reset '{}'
control script '[{"action":"throttle","method":"GET","ranged":true,"rps":15,"burst":15}]'
start=$(date +%s.%N)
pids=()
for i in 1 2 3 4 5 6; do
  timeout 120 "$cli" fetch s3://models/t$i/ --cache "$tmp/throttled" --chunk-size 1M --concurrency 16 \
    --log-format json --progress-every 0.5 >"$tmp/t$i.json" 2>"$tmp/t$i.err" &
  pids+=($!)
done
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
elapsed=$(python3 -c "import time; print(round(time.time() - $start, 1))")
control script '[]'
stats=$(curl -s "http://127.0.0.1:$port/__control/stats")
refused=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["responses"].get("503", 0))' "$stats")
gets=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"].get("GET", 0))' "$stats")
chunks=$(find "$tmp/root/models" -path '*/t[1-6]/*' -type f -printf '%s\n' | awk '{s += int(($1 + 1048575) / 1048576)} END {print s}')
ideal=$(python3 -c "print(round($chunks / 15, 1))")
echo "# throttling origin (15 GETs/s): 6 fetchers, $chunks ranged GETs needed, $gets sent, $refused refused with 503 SlowDown; $elapsed s against an ideal of $ideal s"
[ "$ok" -eq 6 ] && pass "six fetchers against a throttling origin all complete, nobody hangs ($elapsed s, ideal $ideal s)" ||
  fail "six fetchers against a throttling origin all complete" "$ok of 6: $(cat "$tmp"/t*.err | head -3)"
# The log tells reads in flight from the window that allows them (they were one field,
# "reads_in_flight", holding the window).
python3 - "$tmp"/t*.json <<'PY' && pass "progress lines carry reads in flight and the window apart" ||
import json, sys
events = [json.loads(line) for f in sys.argv[1:] for line in open(f)]
progress = [e for e in events if e["event"] == "progress"]
assert progress, "no progress event"
assert all("window" in e and "reads_in_flight" in e for e in progress)
assert all(1 <= e["window"] <= 16 and 0 <= e["reads_in_flight"] <= 16 for e in progress)
assert any(e["reads_in_flight"] != e["window"] for e in progress)
PY
  fail "progress lines carry reads in flight and the window apart" "$(grep -h '"progress"' "$tmp"/t*.json | head -2)"
python3 - "$tmp" <<'PY' && pass "they backed off: windows were halved on SlowDown" || fail "they backed off on SlowDown"
import glob, json, sys
cut = 0
for path in glob.glob(sys.argv[1] + "/t[1-6].json"):
    events = [json.loads(l) for l in open(path) if l.startswith("{")]
    done = [e for e in events if e["event"] == "done"]
    assert done, path
    cut += sum(1 for e in events if e.get("throttled", 0) > 0)
assert cut > 0
PY

# --- logs --------------------------------------------------------------------------------
mkdir -p "$tmp/json"
"$cli" fetch s3://models/llama/ --cache "$tmp/json" --log-format json >"$tmp/out" 2>"$tmp/err"
python3 - "$tmp/out" <<'PY' && pass "--log-format json: one JSON object per line, file events and a done event" || fail "--log-format json" "$(head -3 "$tmp/out")"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
assert [e["event"] for e in events].count("file") == 5
done = events[-1]
assert done["event"] == "done" and done["files"] == 5 and done["bytes_fetched"] == done["bytes_total"]
PY
# --- a slow link: progress by bytes received, and SIGTERM in the middle of a fetch ---------
# A second server on the same bucket whose bodies all share 2 MB/s.
mkdir -p "$tmp/root/slow" "$tmp/slow-cache" "$tmp/term-cache"
head -c $((8 << 20)) /dev/urandom >"$tmp/root/slow/blob.bin"
python3 tests/support/s3fault.py --root "$tmp/root" --port 0 --port-file "$tmp/slow-port" \
  --bandwidth 2000000 >"$tmp/slow-server.log" 2>&1 &
for _ in $(seq 50); do [ -s "$tmp/slow-port" ] && break; sleep 0.1; done
slow=http://127.0.0.1:$(cat "$tmp/slow-port")
# One read of the whole 8 MiB object takes about 4 s: progress must move during it.
AWS_ENDPOINT_URL=$slow "$cli" fetch s3://slow/blob.bin --cache "$tmp/slow-cache" --name slow \
  --chunk-size 8M --concurrency 1 --progress-every 0.5 >"$tmp/slow.out" 2>&1; rc=$?
python3 - "$tmp/slow.out" >"$tmp/slow.check" 2>&1 <<'PY'
import re, sys
done, etas = [], []
for line in open(sys.argv[1]):
    m = re.search(r"downloading ([\d.]+) (B|KiB|MiB) of [\d.]+ MiB .*ETA ([^,]+),", line)
    if m:
        done.append(float(m.group(1)) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20}[m.group(2)])
        etas.append(m.group(3))
rising = sum(1 for a, b in zip(done, done[1:]) if b > a)
def seconds(e):
    m = re.fullmatch(r"(\d+)s|(\d+)m(\d+)s|([\d.]+)h", e)
    if not m:
        return None
    if m.group(1): return int(m.group(1))
    if m.group(2): return int(m.group(2)) * 60 + int(m.group(3))
    return float(m.group(4)) * 3600
bounded = all(e == "unknown" or (seconds(e) is not None and seconds(e) <= 60) for e in etas)
print(f"{len(done)} progress lines during one read, rising {rising} times, ETAs {etas}")
sys.exit(0 if rising >= 3 and bounded and any(e != "unknown" for e in etas) else 1)
PY
ok=$?
echo "# $(cat "$tmp/slow.check")"
[ "$rc" -eq 0 ] && [ "$ok" -eq 0 ] &&
  pass "one slow read in flight: progress rises during the read, with a bounded ETA" ||
  fail "progress during one slow read" "rc=$rc $(cat "$tmp/slow.check") $(tail -3 "$tmp/slow.out")"

# SIGTERM mid-fetch: stops within 1 s, exit 130, and the next fetch resumes.
AWS_ENDPOINT_URL=$slow "$cli" fetch s3://slow/blob.bin --cache "$tmp/term-cache" --name term \
  --chunk-size 1M --concurrency 2 -q >"$tmp/term.out" 2>&1 &
pid=$!
sleep 2.5
start=$(date +%s.%N)
kill -TERM "$pid"
wait "$pid"; rc=$?
took=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$(date +%s.%N)" "$start")
partials=$(find "$tmp/term-cache/blobs" -name '*.partial' | wc -l)
echo "# SIGTERM during a fetch: exit $rc after ${took}s, $partials partial file(s) left"
[ "$rc" -eq 130 ] && python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 1.0)" "$took" && [ "$partials" -eq 1 ] &&
  grep -q "canceled" "$tmp/term.out" &&
  pass "SIGTERM stops a fetch within 1 s (exit 130), leaving its partial download" ||
  fail "SIGTERM stops a fetch within 1 s" "rc=$rc took=$took partials=$partials $(cat "$tmp/term.out")"
control reset '{}'
"$cli" fetch s3://slow/blob.bin --cache "$tmp/term-cache" --name term --chunk-size 1M -q >"$tmp/term2.out" 2>&1; rc=$?
again=$(served)
echo "# the fetch after SIGTERM downloaded $again of $((8 << 20)) bytes"
[ "$rc" -eq 0 ] && [ "$again" -lt $((8 << 20)) ] && cmp -s "$tmp/term-cache/models/term/blob.bin" "$tmp/root/slow/blob.bin" &&
  pass "the fetch after SIGTERM resumes: only the missing chunks move, and the file is intact" ||
  fail "the fetch after SIGTERM resumes" "rc=$rc again=$again $(cat "$tmp/term2.out")"

# A tmpfs that fills up in the middle of a fetch (another writer takes the space after the
# fetch checked it): each chunk's pages are had before they are written, so the fetch fails
# with one line naming the cache (exit 8), not SIGBUS, and what it wrote stays resumable.
if [ "$(id -u)" -eq 0 ] && mkdir -p "$tmp/filling" && mount -t tmpfs -o size=12M tmpfs "$tmp/filling"; then
  mounts+=("$tmp/filling")
  AWS_ENDPOINT_URL=$slow "$cli" fetch s3://slow/blob.bin --cache "$tmp/filling" --name filling \
    --chunk-size 1M --concurrency 1 -q >"$tmp/filling.out" 2>&1 &
  pid=$!
  sleep 1.5
  dd if=/dev/zero of="$tmp/filling/hog" bs=1M count=8 2>/dev/null
  wait "$pid"; rc=$?
  partial=$(find "$tmp/filling/blobs" -name '*.partial' | wc -l)
  [ "$rc" -eq 8 ] && grep -q "no space left in the cache $tmp/filling" "$tmp/filling.out" &&
    [ "$(wc -l <"$tmp/filling.out")" -eq 1 ] && [ ! -e "$tmp/filling/models/filling" ] && [ "$partial" -eq 1 ] &&
    pass "a tmpfs that fills mid-fetch: exit 8, one line naming the cache, the partial kept, no model" ||
    fail "a tmpfs that fills mid-fetch" "rc=$rc partial=$partial $(cat "$tmp/filling.out")"
else
  skip "a tmpfs that fills mid-fetch" "needs root to mount"
fi

if grep -qF -e "cache-test-secret-never-printed" "$tmp"/*.out "$tmp/out" "$tmp/err"; then fail "no secret in any output"
else pass "no secret in any output"; fi

finish
