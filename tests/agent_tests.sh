#!/usr/bin/env bash
# The node agent and the pods that read its cache, as processes on this machine:
#  - `serve --config` reconciles when its ConfigMap changes the way the kubelet changes one
#    (a new timestamped directory, then a rename of the `..data` link): a model added is
#    fetched, a model removed is evicted after --evict-grace once no reader holds it, a
#    broken file is reported once and the previous configuration kept, models in the cache
#    that the file does not list are retired at start;
#  - `serve --wait-for` (the native sidecar) waits on a read-only view of the cache, holds
#    the model, and answers /readyz 200 only once it is published;
#  - `wait --cache` (the init container) waits, and times out with exit 7 and a reason;
#  - `cache prepare` mounts tmpfs with huge pages (root), is idempotent, hands the cache to
#    its owner, and refuses what it cannot do with one line.
# Usage: tests/agent_tests.sh BUILD_DIR. Ends with "N passed, M failed".
set -u
build=$1
cli=$(cd "$build" && pwd)/modelstream
mkmodel=$(cd "$build" && pwd)/mkmodel
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-agent-tests.XXXXXX")
. "$(dirname "$0")/lib.sh"
pids=()
mounts=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
readyz() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz"; }
is_ready() { [ "$(readyz "$1")" = 200 ]; }

for v in v1 v2 v3; do
  mkdir -p "$tmp/src/$v"
  "$mkmodel" --seed ${#v} --small-count 30 --large-count 2 --large-bytes 3M "$tmp/src/$v/model.safetensors" >/dev/null
  echo "{\"version\": \"$v\"}" >"$tmp/src/$v/config.json"
done

# A ConfigMap volume as the kubelet writes it: config.yaml -> ..data/config.yaml, and
# ..data -> a timestamped directory, replaced with one rename.
cm=$tmp/configmap
mkdir -p "$cm"
configmap() { # configmap YAML: publishes a new version of the file atomically
  local gen="..$(date +%s%N)"
  mkdir "$cm/$gen" && printf '%s\n' "$1" >"$cm/$gen/config.yaml"
  ln -sfn "$gen" "$cm/..data_tmp" && mv -T "$cm/..data_tmp" "$cm/..data"
  [ -L "$cm/config.yaml" ] || ln -s ..data/config.yaml "$cm/config.yaml"
}
models_yaml() { # models_yaml NAME...
  printf 'cache: %s\nmodels:\n' "$tmp/cache"
  for n in "$@"; do printf '  - name: %s\n    source: %s/\n' "$n" "$tmp/src/$n"; done
}

mkdir -p "$tmp/cache"
# A model already in the cache that the configuration will not list: retired at start.
"$cli" fetch "$tmp/src/v3/" --cache "$tmp/cache" --name v3 --quiet
configmap "$(models_yaml v1)"
port=$(free_port)
"$cli" serve --config "$cm/config.yaml" --listen "127.0.0.1:$port" --reconcile-every 0.2 \
  --evict-grace 1 >"$tmp/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
if until_ok 20 is_ready "$port" && cmp -s "$tmp/cache/models/v1/model.safetensors" "$tmp/src/v1/model.safetensors"; then
  pass "the agent fetches its configured model and turns ready"
else fail "the agent fetches its configured model and turns ready" "$(tail -5 "$tmp/agent.log")"; fi
# The link goes first and the log line follows the collection of the files: wait for both
# (once in CI the line was checked between the two and not there yet).
if until_ok 10 test ! -e "$tmp/cache/models/v3"; then
  until_ok 10 grep -q "model v3 evicted: no longer configured and no pod holds it" "$tmp/agent.log" &&
    pass "a cached model the configuration does not list is evicted at start" ||
    fail "a cached model the configuration does not list is evicted at start" "$(cat "$tmp/agent.log")"
else fail "a cached model the configuration does not list is evicted at start" "v3 is still there: $(tail -3 "$tmp/agent.log")"; fi

# The sidecar sees the cache read-only, as a pod does.
ro=$tmp/ro
mkdir -p "$ro"
if [ "$(id -u)" -eq 0 ] && mount --bind "$tmp/cache" "$ro" 2>/dev/null && mount -o remount,bind,ro "$ro"; then
  mounts+=("$ro")
  view=$ro
  how="a read-only bind mount"
else
  view=$tmp/cache
  how="the cache itself (not root: no read-only mount)"
fi
sport=$(free_port)
"$cli" serve --cache "$view" --wait-for v1 --listen "127.0.0.1:$sport" >"$tmp/sidecar.log" 2>&1 &
sidecar=$!
pids+=("$sidecar")
# /readyz turns 200 a moment before the line is written: wait for both.
if until_ok 10 is_ready "$sport" && until_ok 5 grep -q "model v1 is ready at $view/models/v1 after .* s; held while this pod runs" "$tmp/sidecar.log"; then
  pass "the sidecar holds the published model through $how and is ready"
else fail "the sidecar holds the published model through $how and is ready" "$(cat "$tmp/sidecar.log")"; fi

# A sidecar for a model not published yet: 503 naming it, then 200 once the agent has it.
wport=$(free_port)
"$cli" serve --cache "$view" --wait-for v2 --listen "127.0.0.1:$wport" >"$tmp/sidecar2.log" 2>&1 &
sidecar2=$!
pids+=("$sidecar2")
sleep 0.5
body=$(curl -s "http://127.0.0.1:$wport/readyz")
[ "$(readyz "$wport")" = 503 ] && [[ $body == *v2* ]] && pass "a sidecar answers 503 naming the model it waits for" ||
  fail "a sidecar answers 503 naming the model it waits for" "$body"

# The init container's wait: a timeout says why, with exit 7.
"$cli" wait --cache "$view" v2 --timeout 1 --interval 0.2 >"$tmp/wait.out" 2>"$tmp/wait.err"
rc=$?
[ $rc -eq 7 ] && grep -q "model v2 is not in the cache after 1 s" "$tmp/wait.err" &&
  pass "wait --cache times out with exit 7 and names the model" ||
  fail "wait --cache times out with exit 7 and names the model" "rc=$rc $(cat "$tmp/wait.err")"
"$cli" wait --cache "$view" v2 --interval 0.2 >"$tmp/wait2.out" 2>&1 &
waiter=$!
pids+=("$waiter")

# The rolling update: the ConfigMap goes from v1 to v2.
configmap "$(models_yaml v2)"
if until_ok 20 test -e "$tmp/cache/models/v2/model.safetensors" && until_ok 5 is_ready "$wport"; then
  pass "a model added to the ConfigMap is fetched, and its waiting sidecar turns ready"
else fail "a model added to the ConfigMap is fetched, and its waiting sidecar turns ready" "$(tail -5 "$tmp/agent.log")"; fi
if wait "$waiter" && grep -q "wait: model v2 is ready at" "$tmp/wait2.out"; then
  pass "wait --cache returns 0 once the model is published"
else fail "wait --cache returns 0 once the model is published" "$(cat "$tmp/wait2.out")"; fi
sleep 2 # past the grace: v1 is still held by the first sidecar
if until_ok 5 grep -q "model v1 is no longer configured but a pod holds it; kept" "$tmp/agent.log" && [ -e "$tmp/cache/models/v1" ]; then
  pass "a removed model that a pod holds is kept"
else fail "a removed model that a pod holds is kept" "$(cat "$tmp/agent.log")"; fi
v1_blobs=$(readlink -f "$tmp/cache/models/v1/model.safetensors")
kill "$sidecar"
wait "$sidecar" 2>/dev/null
src=$?
[ $src -eq 0 ] && pass "the sidecar exits 0 on SIGTERM" || fail "the sidecar exits 0 on SIGTERM" "exit $src"
if until_ok 10 test ! -e "$tmp/cache/models/v1" && until_ok 5 test ! -e "$v1_blobs"; then
  pass "once released, the removed model is evicted and its files freed"
else fail "once released, the removed model is evicted and its files freed" "$(tail -3 "$tmp/agent.log")"; fi
cmp -s "$tmp/cache/models/v2/config.json" "$tmp/src/v2/config.json" && [ "$(readyz "$port")" = 200 ] &&
  pass "the agent stays ready with the new model" || fail "the agent stays ready with the new model"

# A broken file: said once, previous configuration kept.
configmap "$(printf 'cache: %s\nmodles: []\n' "$tmp/cache")"
sleep 1
n=$(grep -c "unknown key 'modles'" "$tmp/agent.log")
[ "$n" -eq 1 ] && grep -q "keeping the previous configuration" "$tmp/agent.log" && [ -e "$tmp/cache/models/v2" ] &&
  [ "$(readyz "$port")" = 200 ] && pass "a broken ConfigMap is reported once and the previous models kept" ||
  fail "a broken ConfigMap is reported once and the previous models kept" "$n reports; $(tail -3 "$tmp/agent.log")"
kill "$agent"
wait "$agent"
rc=$?
[ $rc -eq 0 ] && pass "the agent exits 0 on SIGTERM" || fail "the agent exits 0 on SIGTERM" "exit $rc"
kill "$sidecar2" 2>/dev/null

# JSON logs carry the reconcile events.
rm -rf "$tmp/cache" && mkdir -p "$tmp/cache"
configmap "$(models_yaml v1)"
port=$(free_port)
"$cli" serve --config "$cm/config.yaml" --listen "127.0.0.1:$port" --reconcile-every 0.2 \
  --evict-grace 0 --log-format json >"$tmp/agent.json" 2>&1 &
agent=$!
pids+=("$agent")
until_ok 20 is_ready "$port"
configmap "$(models_yaml v2)"
until_ok 20 grep -q '"event":"evicted"' "$tmp/agent.json"
kill "$agent"; wait "$agent" 2>/dev/null
if python3 - "$tmp/agent.json" <<'EOF'; then
import json, sys
events = [json.loads(line)["event"] for line in open(sys.argv[1])]
need = ["listening", "done", "serving", "reconcile", "retiring", "evicted"]
missing = [e for e in need if e not in events]
sys.exit(1 if missing else 0)
EOF
  pass "--log-format json: every line is JSON, with reconcile, retiring and evicted events"
else fail "--log-format json: every line is JSON, with reconcile, retiring and evicted events" "$(head -c 600 "$tmp/agent.json")"; fi

# Usage errors.
"$cli" fetch "$tmp/src/v1/" --cache "$tmp/cache" --wait-for v1 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "is an option of .modelstream serve." "$tmp/err" && pass "--wait-for is refused by fetch" ||
  fail "--wait-for is refused by fetch" "$(cat "$tmp/err")"
"$cli" serve --cache "$tmp/cache" --wait-for v1 "$tmp/src/v1/" >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "give no SOURCE" "$tmp/err" && pass "--wait-for with a SOURCE is a usage error" ||
  fail "--wait-for with a SOURCE is a usage error" "$(cat "$tmp/err")"

# --- cache prepare ------------------------------------------------------------------------
"$cli" cache prepare "$tmp/p" --medium tmpfs-huge >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "needs --size" "$tmp/err" && pass "cache prepare: tmpfs-huge needs --size" ||
  fail "cache prepare: tmpfs-huge needs --size" "$(cat "$tmp/err")"
"$cli" cache prepare "$tmp/p" --medium hugetlbfs >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "safetensors readers" "$tmp/err" && pass "cache prepare: hugetlbfs is refused with the reason" ||
  fail "cache prepare: hugetlbfs is refused with the reason" "$(cat "$tmp/err")"
if [ "$(id -u)" -ne 0 ]; then
  skip "cache prepare mounts tmpfs with huge pages, owned by the agent" "needs root"
  skip "cache prepare is idempotent and resizes" "needs root"
  skip "cache prepare --medium disk hands the directory to its owner" "needs root"
else
  p=$tmp/prepared
  if "$cli" cache prepare "$p" --medium tmpfs-huge --size 64M --owner 65532:65532 >"$tmp/out" 2>"$tmp/err"; then
    mounts+=("$p")
    opts=$(findmnt -n -o FSTYPE,OPTIONS --target "$p")
    owner=$(stat -c %u:%g "$p")
    [[ $opts == tmpfs*huge=within_size* ]] && [[ $opts == *size=65536k* ]] && [ "$owner" = 65532:65532 ] &&
      grep -q "tmpfs huge=within_size, size 64M (mounted), owned by 65532:65532" "$tmp/out" &&
      pass "cache prepare mounts tmpfs with huge pages, owned by the agent" ||
      fail "cache prepare mounts tmpfs with huge pages, owned by the agent" "$opts $owner $(cat "$tmp/out")"
    echo keep >"$p/file"
    "$cli" cache prepare "$p" --medium tmpfs-huge --size 128M --owner 65532:65532 >"$tmp/out" 2>"$tmp/err"
    opts=$(findmnt -n -o OPTIONS --target "$p")
    [ "$(cat "$p/file")" = keep ] && [[ $opts == *size=131072k* ]] && [ "$(stat -c %u "$p/file")" = 65532 ] &&
      [ "$(findmnt -n --target "$p" | wc -l)" -eq 1 ] &&
      pass "cache prepare is idempotent and resizes, keeping the files" ||
      fail "cache prepare is idempotent and resizes, keeping the files" "$opts $(cat "$tmp/out" "$tmp/err")"
  else
    fail "cache prepare mounts tmpfs with huge pages, owned by the agent" "$(cat "$tmp/err")"
    fail "cache prepare is idempotent and resizes, keeping the files" "no mount"
  fi
  d=$tmp/disk
  mkdir -p "$d/blobs" && touch "$d/blobs/x"
  "$cli" cache prepare "$d" --medium disk --owner 65532:65532 >"$tmp/out" 2>"$tmp/err" &&
    [ "$(stat -c %u:%g "$d/blobs/x")" = 65532:65532 ] && pass "cache prepare --medium disk hands the directory to its owner" ||
    fail "cache prepare --medium disk hands the directory to its owner" "$(cat "$tmp/err")"
  # Without CAP_SYS_ADMIN the mount is refused with what to do.
  if command -v capsh >/dev/null 2>&1 || command -v setpriv >/dev/null 2>&1; then
    setpriv --inh-caps=-all --bounding-set=-sys_admin "$cli" cache prepare "$tmp/nocap" --medium tmpfs-huge \
      --size 16M >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 5 ] && grep -q "needs CAP_SYS_ADMIN; in Kubernetes, run it in a privileged init container" "$tmp/err" &&
      pass "cache prepare without CAP_SYS_ADMIN: exit 5 and what to do" ||
      fail "cache prepare without CAP_SYS_ADMIN: exit 5 and what to do" "rc=$rc $(cat "$tmp/err")"
  fi
fi
# SIGTERM while the agent fetches: it stops within 1 s, exits 0, and leaves the partial
# download for the next start to resume. The origin gives every body 1 MB/s.
mkdir -p "$tmp/slowroot/bucket" "$tmp/slowcache"
head -c $((6 << 20)) /dev/urandom >"$tmp/slowroot/bucket/blob.bin"
python3 "$(dirname "$0")/support/s3fault.py" --root "$tmp/slowroot" --port 0 --port-file "$tmp/slowport" \
  --bandwidth 1000000 >/dev/null 2>&1 &
pids+=($!)
wait_for_file 10 "$tmp/slowport"
printf 'cache: %s\nmodels:\n  - name: slow\n    source: s3://bucket/blob.bin\n' "$tmp/slowcache" >"$tmp/slow.yaml"
AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$tmp/slowport") AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_ACCESS_KEY_ID=AKIDAGENT AWS_SECRET_ACCESS_KEY=agent-secret \
  "$cli" serve --config "$tmp/slow.yaml" --listen "127.0.0.1:$(free_port)" --chunk-size 1M \
  >"$tmp/slow-agent.log" 2>&1 &
slowagent=$!
pids+=("$slowagent")
has_partial() { [ -n "$(find "$tmp/slowcache/blobs" -name '*.partial' 2>/dev/null)" ]; }
if until_ok 10 has_partial; then
  sleep 1
  start=$(date +%s%N)
  kill -TERM "$slowagent"
  wait "$slowagent"; rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  echo "# SIGTERM during the agent's fetch: exit $rc after ${ms} ms"
  [ $rc -eq 0 ] && [ $ms -lt 1000 ] && has_partial &&
    pass "SIGTERM during the agent's fetch: exit 0 within 1 s, the partial download kept" ||
    fail "SIGTERM during the agent's fetch" "rc=$rc ${ms}ms $(tail -3 "$tmp/slow-agent.log")"
else
  fail "SIGTERM during the agent's fetch" "no partial download appeared: $(tail -3 "$tmp/slow-agent.log")"
fi
finish
