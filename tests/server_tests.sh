#!/usr/bin/env bash
# End-to-end tests of the health server (cmd/modelstream/server.c) over the simulated fetch
# of tests/server_driver, all on 127.0.0.1: every endpoint's status codes, content types and
# JSON schema during and after the fetch, /readyz flipping only at ready, /healthz turning
# 503 on a stall, a failed model, `promtool check metrics`, a real Prometheus scraping the
# driver every second and a PromQL query that sees bytes fetched rise to the model's size,
# websocket pushes, hostile clients (a 100 KB path, 300 idle connections, slowloris, more
# connections than the cap) after which /healthz still answers within a second, listen
# addresses, clean shutdown, and that no response or log shows the credentials in the
# driver's environment.
# Usage: tests/server_tests.sh BUILD_DIR   (runs BUILD_DIR/tests/server_driver, or
#        $SERVER_DRIVER). Needs curl, python3, promtool and prometheus (Debian: prometheus).
# Ends with "N passed, M failed".
set -u
build=$1
driver=${SERVER_DRIVER:-$build/tests/server_driver}
driver=$(cd "$(dirname "$driver")" && pwd)/$(basename "$driver")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-server-tests.XXXXXX")
. "$(dirname "$0")/lib.sh"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT

check() { # check NAME COMMAND...: passes when the command succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

[ -x "$driver" ] || { echo "server_tests: no driver at $driver"; echo "0 passed, 1 failed"; exit 1; }

# Credentials the driver puts in its model's source and failure message: never to be shown.
export AWS_SECRET_ACCESS_KEY="srvtest-secret-$RANDOM$RANDOM-never-shown"
export AWS_SESSION_TOKEN="srvtest-token-$RANDOM$RANDOM-never-shown"
MODEL_BYTES=$((96 * 1024 * 1024))
mkdir -p "$tmp/responses"
n_response=0

# get PORT PATH [curl options]: sets $code and saves headers and body for body(), header()
# and the secrets scan.
get() {
  local port=$1 path=$2; shift 2
  n_response=$((n_response + 1))
  code=$(curl -s --max-time 3 -D "$tmp/responses/$n_response.headers" -o "$tmp/responses/$n_response.body" \
    -w '%{http_code}' "$@" "http://127.0.0.1:$port$path")
}
body() { cat "$tmp/responses/$n_response.body"; }
header() { grep -i "^$1:" "$tmp/responses/$n_response.headers" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

# start_driver NAME ARGS...: starts the driver, sets $port and $dpid.
start_driver() {
  local name=$1; shift
  rm -f "$tmp/$name.port"
  "$driver" --port-file "$tmp/$name.port" "$@" >"$tmp/$name.log" 2>&1 &
  dpid=$!
  pids+=("$dpid")
  for _ in $(seq 100); do [ -s "$tmp/$name.port" ] && break; sleep 0.05; done
  port=$(cat "$tmp/$name.port" 2>/dev/null)
  [ -n "$port" ]
}

# stop_driver NAME: SIGTERM, and it must be gone, cleanly, within 3 s.
stop_driver() {
  local name=$1 rc
  kill -TERM "$dpid"
  for _ in $(seq 60); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$dpid" 2>/dev/null; then
    kill -9 "$dpid"; wait "$dpid" 2>/dev/null
    fail "$name: stops within 3 s of SIGTERM"
    return
  fi
  wait "$dpid"; rc=$?
  if [ "$rc" -eq 0 ] && grep -q 'server_driver: stopped' "$tmp/$name.log"; then
    pass "$name: SIGTERM stops the server cleanly (thread joined, exit 0)"
  else
    fail "$name: clean stop" "exit $rc; $(tail -3 "$tmp/$name.log")"
  fi
}

# healthz_fast PORT: /healthz answers 200 within one second.
healthz_fast() {
  local code
  code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://127.0.0.1:$1/healthz")
  [ "$code" = 200 ]
}

cat >"$tmp/schema.py" <<'PY'
# Checks a /progress document against the schema in cmd/modelstream/status.h.
import json, sys
doc = json.load(open(sys.argv[1]))
num = (int, float)
def opt(v, t): return v is None or isinstance(v, t)
assert doc["version"] == 1
assert isinstance(doc["ready"], bool) and isinstance(doc["healthy"], bool)
assert isinstance(doc["uptime_seconds"], num) and opt(doc["time_to_ready_seconds"], num)
states = {"queued", "resolving", "downloading", "waiting", "verifying", "ready", "failed"}
for m in doc["models"]:
    for k in ("name", "source", "cache_path"): assert isinstance(m[k], str), k
    assert m["state"] in states
    assert opt(m["error"], str) and (m["error"] is None) == (m["state"] != "failed")
    for k in ("bytes_done", "bytes_fetched", "rate_bytes_per_second", "retries", "throttled",
              "reads_in_flight", "concurrency_window", "seconds_since_progress"):
        assert isinstance(m[k], num) and m[k] >= 0, k
    assert opt(m["bytes_total"], num) and opt(m["eta_seconds"], num)
    for f in m["files"]:
        assert isinstance(f["path"], str) and f["state"] in states
        assert isinstance(f["bytes_done"], num) and opt(f["bytes_total"], num)
        assert isinstance(f["from_cache"], bool)
c = doc["counters"]
for k in ("bytes_fetched", "bytes_served_from_cache", "cache_hits", "cache_misses",
          "evictions", "throttle_waits"):
    assert isinstance(c[k], num), k
assert sorted(c["retries"]) == sorted(["slowdown", "server_error", "connection", "timeout",
                                        "truncated", "expired_token", "clock_skew", "other"])
assert isinstance(doc["active_connections"], num) and isinstance(doc["concurrency_window"], num)
assert isinstance(doc["cache"]["size_bytes"], num) and opt(doc["cache"]["budget_bytes"], num)
if len(sys.argv) > 2:  # an expression that must hold, e.g. "doc['ready']"
    assert eval(sys.argv[2]), sys.argv[2]
PY

# A websocket client with the standard library: connects, then records every text frame's
# time and the state of model "llama" until it sees ready or a time limit passes.
cat >"$tmp/wsclient.py" <<'PY'
import base64, json, os, socket, struct, sys, time
port, path, seconds, out = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    d = s.recv(4096)
    if not d: break
    buf += d
head, _, buf = buf.partition(b"\r\n\r\n")
status = head.split(b"\r\n")[0].decode(errors="replace")
log = open(out, "w")
frames = open(out + ".frames", "wb")  # every payload, for the secrets scan
log.write(f"status {status}\n"); log.flush()
if " 101 " not in status: sys.exit(0)
def need(n):
    global buf
    while len(buf) < n:
        d = s.recv(65536)
        if not d: raise EOFError
        buf += d
    r, buf = buf[:n], buf[n:]
    return r
end = time.time() + seconds
s.settimeout(1)
while time.time() < end:
    try:
        b0, b1 = need(2)
    except socket.timeout:
        continue
    except EOFError:
        break
    n = b1 & 0x7f
    if n == 126: n = struct.unpack(">H", need(2))[0]
    elif n == 127: n = struct.unpack(">Q", need(8))[0]
    payload = need(n)
    frames.write(payload + b"\n"); frames.flush()
    if b0 & 0x0f != 1: continue
    doc = json.loads(payload)
    llama = [m for m in doc["models"] if m["name"] == "llama"][0]
    log.write(f"{time.time():.3f} {llama['state']} {llama['bytes_done']} {doc['ready']}\n"); log.flush()
    if doc["ready"]: break
PY

# Polls /readyz and /progress together every 100 ms until ready (or 30 s): one line per poll.
cat >"$tmp/poller.py" <<'PY'
import json, sys, time, urllib.request, urllib.error
port, out = int(sys.argv[1]), open(sys.argv[2], "w")
end = time.time() + 30
while time.time() < end:
    try:
        code = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status
    except urllib.error.HTTPError as e:
        code = e.code
    doc = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/progress", timeout=2))
    llama = [m for m in doc["models"] if m["name"] == "llama"][0]
    # /readyz first, /progress after: a 200 must never come before the state says ready.
    out.write(f"{code} {llama['state']}\n"); out.flush()
    if code == 200: break
    time.sleep(0.1)
PY

# Hostile clients; each prints one line and exits 0 when the server behaved.
cat >"$tmp/hostile.py" <<'PY'
import select, socket, sys, time, urllib.request
kind, port = sys.argv[1], int(sys.argv[2])
def healthz_fast():
    t = time.time()
    code = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status
    return code == 200 and time.time() - t < 1
if kind == "longpath":
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        s.sendall(b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    except OSError:
        pass
    try:
        answer = s.recv(100)
    except OSError:
        answer = b""
    ok = not answer.startswith(b"HTTP/1.1 200")
    print(f"100 KB path answered {answer[:30]!r}; healthz after: {healthz_fast()}")
    sys.exit(0 if ok and healthz_fast() else 1)
if kind == "idle":
    count = int(sys.argv[3])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    time.sleep(0.5)
    during = healthz_fast()
    for s in socks: s.close()
    time.sleep(0.2)
    print(f"{count} idle connections: healthz during {during}, after {healthz_fast()}")
    sys.exit(0 if during and healthz_fast() else 1)
if kind == "slowloris":
    limit = float(sys.argv[3])  # the server's header timeout
    s = socket.create_connection(("127.0.0.1", port))
    t = time.time(); closed_after = None; ok = True
    for c in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 60:
        try:
            s.send(bytes([c]))
        except OSError:
            closed_after = time.time() - t; break
        if not healthz_fast(): ok = False
        r, _, _ = select.select([s], [], [], 1)
        if r and s.recv(100) == b"":
            closed_after = time.time() - t; break
    print(f"slowloris closed after {closed_after} s (header timeout {limit} s); healthz fast throughout: {ok}")
    sys.exit(0 if ok and closed_after is not None and closed_after <= limit + 2 and healthz_fast() else 1)
if kind == "cap":
    cap, extra = int(sys.argv[3]), int(sys.argv[4])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap + extra)]
    time.sleep(0.5)
    closed = 0
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if r and s.recv(1) == b"": closed += 1
    for s in socks: s.close()
    time.sleep(0.3)
    again = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap - 1)]
    time.sleep(0.3)
    refused_again = sum(1 for s in again if select.select([s], [], [], 0)[0])
    after = healthz_fast()
    for s in again: s.close()
    print(f"{cap + extra} connections with a cap of {cap}: {closed} closed at once; "
          f"after release {cap - 1} more, {refused_again} refused; healthz {after}")
    sys.exit(0 if closed == extra and refused_again == 0 and after else 1)
PY

# ---------------------------------------------------------------------------------------
# A fetch watched by everything at once: Prometheus, pollers, websockets and hostile clients.

if ! start_driver main --seconds 8 --bytes $MODEL_BYTES --header-timeout 4 --wait-file "$tmp/go"; then
  fail "the driver starts and reports its port" "$(cat "$tmp/main.log")"
  echo "$passed passed, $failed failed"; exit 1
fi
main_port=$port
main_pid=$dpid
pass "the driver starts on 127.0.0.1:0 and reports port $main_port"

# Before the fetch starts: the model is queued.
get $main_port /healthz
check "/healthz is 200 'ok' before the fetch" test "$code $(body)" = "200 ok"
get $main_port /readyz
check "/readyz is 503 with the first model not ready" test "$code $(body)" = "503 not ready: model cached is queued"
get $main_port /progress
check "/progress is 200 application/json" test "$code $(header content-type)" = "200 application/json"
check "/progress follows the schema while queued" python3 "$tmp/schema.py" "$tmp/responses/$n_response.body" "not doc['ready'] and doc['time_to_ready_seconds'] is None"
get $main_port /metrics
check "/metrics is 200 with content type exactly 'text/plain; version=0.0.4; charset=utf-8'" \
  test "$code|$(header content-type)" = "200|text/plain; version=0.0.4; charset=utf-8"
get $main_port /nope
check "an unknown path is 404" test "$code" = 404
get $main_port /metrics/extra
check "a path below an endpoint is 404" test "$code" = 404
for m in POST PUT DELETE PATCH OPTIONS; do
  get $main_port /healthz -X $m
  [ "$code" = 405 ] || { fail "$m is 405" "$code"; continue; }
  [ "$(header allow)" = "GET, HEAD" ] && pass "$m /healthz is 405 with Allow: GET, HEAD" || fail "$m: Allow header" "$(header allow)"
done
check "HEAD /metrics is 200 with the headers of GET and no body" python3 - $main_port <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=3)
c.request("HEAD", "/metrics")
r = c.getresponse()
assert r.status == 200 and r.getheader("content-type") == "text/plain; version=0.0.4; charset=utf-8"
assert int(r.getheader("content-length")) > 1000 and r.read() == b""
PY
get $main_port '/healthz?x=1'
check "a query string is ignored" test "$code" = 200

# A websocket upgrade on a path that has none is refused.
python3 "$tmp/wsclient.py" $main_port /metrics 2 "$tmp/ws-bad.log"
check "a websocket on /metrics is refused" bash -c "! grep -q ' 101 ' '$tmp/ws-bad.log'"

# Prometheus, scraping every second.
prom_ok=
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  prom_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: modelstream
    static_configs:
      - targets: ['127.0.0.1:$main_port']
EOF
  prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address=127.0.0.1:$prom_port >"$tmp/prometheus.log" 2>&1 &
  pids+=($!)
  promq() { curl -s --max-time 3 "http://127.0.0.1:$prom_port/api/v1/$1" --data-urlencode "query=$2" "${@:3}"; }
  for _ in $(seq 100); do
    promq query 'up{job="modelstream"}' | grep -q '"value":\[[0-9.]*,"1"\]' && { prom_ok=1; break; }
    sleep 0.2
  done
  [ -n "$prom_ok" ] && pass "Prometheus (127.0.0.1:$prom_port) scrapes the driver: up == 1" ||
    fail "Prometheus scrapes the driver" "$(tail -5 "$tmp/prometheus.log")"
else
  skip "Prometheus scrapes the driver" "no prometheus/promtool (apt-get install prometheus)"
fi

# Watchers, then the fetch.
python3 "$tmp/wsclient.py" $main_port /ws 25 "$tmp/ws.log" & pids+=($!); ws_pid=$!
python3 "$tmp/wsclient.py" $main_port /progress 25 "$tmp/ws-progress.log" & pids+=($!); ws2_pid=$!
sleep 0.3
python3 "$tmp/poller.py" $main_port "$tmp/poll.log" & pids+=($!); poll_pid=$!
fetch_start=$(date +%s.%N)
touch "$tmp/go"

# During the fetch.
sleep 2
get $main_port /progress
check "/progress follows the schema while downloading" python3 "$tmp/schema.py" "$tmp/responses/$n_response.body" \
  "[m for m in doc['models'] if m['name']=='llama'][0]['state'] == 'downloading' and 0 < doc['counters']['bytes_fetched'] < $MODEL_BYTES"
get $main_port /readyz
check "/readyz is 503 during the download, naming the model and its state" \
  bash -c "[ '$code' = 503 ] && grep -q '^not ready: model llama is downloading (' '$tmp/responses/$n_response.body'"
get $main_port /metrics
check "/metrics during the download: modelstream_ready 0" grep -q '^modelstream_ready 0$' "$tmp/responses/$n_response.body"
if command -v promtool >/dev/null; then
  check "promtool check metrics passes during the download" bash -c "promtool check metrics < '$tmp/responses/$n_response.body'"
fi
check "100 KB path: refused, and /healthz answers within 1 s" python3 "$tmp/hostile.py" longpath $main_port
check "300 idle connections: /healthz answers within 1 s while they are open" python3 "$tmp/hostile.py" idle $main_port 300

wait $poll_pid
check "/readyz and the model's state, polled: 503 before ready, 200 only once ready" python3 - "$tmp/poll.log" <<'PY'
import sys
lines = [l.split() for l in open(sys.argv[1])]
assert lines and lines[-1] == ["200", "ready"], lines[-3:]
assert all(code == "503" for code, state in lines[:-1]), lines
seen = [state for _, state in lines]
assert "downloading" in seen and "verifying" in seen, set(seen)
assert not any(state == "ready" and code == "503" for code, state in lines[1:-1])
print(f"{len(lines)} polls, states seen: {sorted(set(seen))}")
PY

# After the fetch.
get $main_port /readyz
check "/readyz is 200 'ready' after the fetch" test "$code $(body)" = "200 ready"
get $main_port /progress
check "/progress after the fetch: ready, time to ready, all bytes, files ready" python3 "$tmp/schema.py" "$tmp/responses/$n_response.body" \
  "doc['ready'] and doc['time_to_ready_seconds'] > 0 and doc['counters']['bytes_fetched'] == $MODEL_BYTES and doc['counters']['cache_hits'] == 1 and doc['counters']['cache_misses'] == 2 and all(f['state'] == 'ready' for m in doc['models'] for f in m['files'])"
get $main_port /metrics
cp "$tmp/responses/$n_response.body" "$tmp/metrics.txt"
check "/metrics after the fetch: bytes fetched, ready, time to ready, retries by reason" bash -c "
  grep -qx 'modelstream_bytes_fetched_total $MODEL_BYTES' '$tmp/metrics.txt' &&
  grep -qx 'modelstream_ready 1' '$tmp/metrics.txt' &&
  grep -q '^modelstream_time_to_ready_seconds [0-9]' '$tmp/metrics.txt' &&
  grep -q '^modelstream_retries_total{reason=\"slowdown\"} [1-9]' '$tmp/metrics.txt' &&
  grep -q '^modelstream_retries_total{reason=\"other\"} [1-9]' '$tmp/metrics.txt'"
if command -v promtool >/dev/null; then
  if promtool check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1; then
    pass "promtool check metrics passes after the fetch"
  else
    fail "promtool check metrics" "$(head -5 "$tmp/promtool.out")"
  fi
fi

wait $ws_pid $ws2_pid
check "websocket /ws: pushes every second and on changes, through to ready" python3 - "$tmp/ws.log" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
assert " 101 " in lines[0], lines[0]
frames = [l.split() for l in lines[1:]]
states = [f[1] for f in frames]
assert len(frames) >= 8, len(frames)
assert frames[-1][3] == "True" and states[-1] == "ready", frames[-1]
assert "downloading" in states and "verifying" in states, set(states)
done = [int(f[2]) for f in frames]
assert done == sorted(done), "bytes never go back"
gaps = [float(b[0]) - float(a[0]) for a, b in zip(frames, frames[1:])]
assert max(gaps) < 1.6, max(gaps)
print(f"{len(frames)} frames, largest gap {max(gaps):.2f} s")
PY
check "websocket on /progress (Upgrade) also pushes, through to ready" bash -c "grep -q ' 101 ' '$tmp/ws-progress.log' && tail -1 '$tmp/ws-progress.log' | grep -q 'ready .* True$'"

if [ -n "$prom_ok" ]; then
  sleep 2.5 # two more scrapes after ready
  fetch_end=$(date +%s.%N)
  promq query_range modelstream_bytes_fetched_total --data-urlencode "start=$fetch_start" \
    --data-urlencode "end=$fetch_end" --data-urlencode step=1 >"$tmp/prom-range.json"
  promq query modelstream_bytes_fetched_total >"$tmp/prom-now.json"
  check "PromQL over Prometheus' API: bytes fetched rises to the model's size ($MODEL_BYTES)" \
    python3 - "$tmp/prom-range.json" "$tmp/prom-now.json" $MODEL_BYTES <<'PY'
import json, sys
rng, now, size = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
assert rng["status"] == "success" and now["status"] == "success"
values = [float(v) for _, v in rng["data"]["result"][0]["values"]]
assert values == sorted(values), values
assert values[0] < size and values[-1] == size, values
assert len({v for v in values if 0 < v < size}) >= 3, values
assert float(now["data"]["result"][0]["value"][1]) == size
print("values:", [int(v) for v in values])
PY
  promq query 'modelstream_model_ready{model="llama"}' >"$tmp/prom-ready.json"
  check "PromQL: modelstream_model_ready{model=\"llama\"} is 1" grep -q '"value":\[[0-9.]*,"1"\]' "$tmp/prom-ready.json"
fi

check "slowloris (a header byte a second): closed by the header timeout, /healthz fast throughout" \
  python3 "$tmp/hostile.py" slowloris $main_port 4
check "after every hostile client, /healthz answers within 1 s" healthz_fast $main_port

# Clean stop while a websocket and idle connections are open.
python3 "$tmp/wsclient.py" $main_port /ws 30 "$tmp/ws-open.log" & pids+=($!)
python3 -c 'import socket,sys,time; s=[socket.create_connection(("127.0.0.1",int(sys.argv[1]))) for _ in range(5)]; time.sleep(30)' $main_port & pids+=($!)
sleep 0.5
dpid=$main_pid
stop_driver main
lws_lines=$(grep -c '^modelstream: http: ' "$tmp/main.log")
other_lines=$(grep -vc '^modelstream: http: \|^server_driver: ' "$tmp/main.log")
check "libwebsockets logs: prefixed 'modelstream: http: ', at most 6 lines after the hostile clients ($lws_lines)" \
  test "$lws_lines" -le 6 -a "$other_lines" -eq 0

# ---------------------------------------------------------------------------------------
# A stalled fetch turns /healthz unhealthy.

if start_driver stall --seconds 4 --stall-at 0.3 --deadline 2; then
  sleep 1.2
  get $port /healthz
  check "stalled fetch: /healthz is 200 before the deadline" test "$code" = 200
  for _ in $(seq 40); do grep -q 'stalled at' "$tmp/stall.log" && break; sleep 0.1; done
  sleep 2.5
  get $port /healthz
  check "stalled fetch: /healthz turns 503 'stalled: model llama made no progress for N s'" \
    bash -c "[ '$code' = 503 ] && grep -Eq '^stalled: model llama made no progress for [2-9] s$' '$tmp/responses/$n_response.body'"
  get $port /readyz
  check "stalled fetch: /readyz stays 503" test "$code" = 503
  get $port /metrics
  check "stalled fetch: modelstream_healthy 0 in /metrics" grep -qx 'modelstream_healthy 0' "$tmp/responses/$n_response.body"
  get $port /progress
  check "stalled fetch: /progress says healthy false" python3 "$tmp/schema.py" "$tmp/responses/$n_response.body" "not doc['healthy']"
  stop_driver stall
else
  fail "the stall driver starts" "$(cat "$tmp/stall.log")"
fi

# ---------------------------------------------------------------------------------------
# A failed fetch: /readyz says why, without the credentials in the message.

if start_driver failed --fail --seconds 1 --bytes 1048576; then
  for _ in $(seq 60); do grep -q 'server_driver: failed' "$tmp/failed.log" && break; sleep 0.1; done
  get $port /readyz
  want="503 not ready: model llama failed: GET https://s3.example.com/models/llama/model.safetensors failed: 403 AccessDenied"
  [ "$code $(body)" = "$want" ] && pass "failed fetch: /readyz is 503 with the redacted error" ||
    fail "failed fetch: /readyz is 503 with the redacted error" "$code $(body)"
  get $port /progress
  check "failed fetch: /progress has state failed and the error" python3 "$tmp/schema.py" "$tmp/responses/$n_response.body" \
    "[m for m in doc['models'] if m['name']=='llama'][0]['error'].endswith('403 AccessDenied')"
  get $port /healthz
  check "failed fetch: /healthz stays 200 (a failure is not a stall)" test "$code" = 200
  stop_driver failed
else
  fail "the failing driver starts" "$(cat "$tmp/failed.log")"
fi

# ---------------------------------------------------------------------------------------
# The connection cap.

if start_driver cap --max-connections 20; then
  check "cap of 20: 10 more connections are closed at once, the slots come back, /healthz fast" \
    python3 "$tmp/hostile.py" cap $port 20 10
  stop_driver cap
else
  fail "the capped driver starts" "$(cat "$tmp/cap.log")"
fi

# ---------------------------------------------------------------------------------------
# Listen addresses.

if start_driver any4 --listen 0.0.0.0:0; then
  get $port /healthz
  check "--listen 0.0.0.0:0 serves on 127.0.0.1 (an IPv4-only socket)" test "$code" = 200
  check "--listen 0.0.0.0:0 listens on IPv4 only" bash -c "! ss -ltnH 2>/dev/null | grep -q '\\[::\\]:$port ' "
  stop_driver any4
else
  fail "--listen 0.0.0.0:0" "$(cat "$tmp/any4.log")"
fi
if [ -s /proc/net/if_inet6 ] && python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
  if start_driver v6 --listen '[::1]:0'; then
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://[::1]:$port/healthz")
    check "--listen [::1]:0 serves over IPv6" test "$code" = 200
    stop_driver v6
  else
    fail "--listen [::1]:0" "$(cat "$tmp/v6.log")"
  fi
else
  skip "--listen [::1]:0" "no IPv6 loopback here"
fi
for bad in "nonsense" "127.0.0.1" "127.0.0.1:99999" "localhost:0" "[::1:0" "::1:0"; do
  "$driver" --port-file "$tmp/bad.port" --listen "$bad" >"$tmp/bad.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && grep -q "the address must be\|the host must be an IP" "$tmp/bad.log"; then
    pass "--listen '$bad' is refused with a message"
  else
    fail "--listen '$bad' is refused" "exit $rc: $(cat "$tmp/bad.log")"
  fi
done
busy=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(5)' $busy &
holder=$!
sleep 0.3
# libwebsockets 4.1 leaks 72 bytes when it cannot create its context: not ours to fix, so
# LeakSanitizer (in a sanitizer build) is told to let that one pass.
echo 'leak:libwebsockets.so' >"$tmp/lsan.supp"
LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp \
  "$driver" --port-file "$tmp/busy.port" --listen 127.0.0.1:$busy >"$tmp/busy.log" 2>&1
rc=$?
kill $holder 2>/dev/null; wait $holder 2>/dev/null
check "a port in use: exit non-zero with 'cannot listen (Address already in use)'" \
  bash -c "[ $rc -ne 0 ] && grep -q '127.0.0.1:$busy: cannot listen (Address already in use)' '$tmp/busy.log'"

# ---------------------------------------------------------------------------------------
# The real thing: `modelstream serve` and `fetch --listen` over a real fetch from the
# fault-injecting S3 server (every ranged GET delayed, so the fetch lasts a few seconds),
# scraped by a real Prometheus; `modelstream wait` gates on it.

cli=$(cd "$build" && pwd)/modelstream
mkmodel=$(cd "$build" && pwd)/mkmodel
mkdir -p "$tmp/root/models/real" "$tmp/cache-serve" "$tmp/cache-fetch"
"$mkmodel" --seed 31 --small-count 100 --large-count 2 --large-bytes 12M "$tmp/root/models/real/model.safetensors" >/dev/null
echo '{"architectures": ["Test"]}' >"$tmp/root/models/real/config.json"
real_bytes=$(find "$tmp/root/models/real" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
python3 "$(dirname "$0")/support/s3fault.py" --root "$tmp/root" --port 0 --port-file "$tmp/s3port" \
  --script <(echo '[{"action":"slowdown","method":"GET","ranged":true,"times":2},
                    {"action":"delay","method":"GET","ranged":true,"seconds":0.4}]') >"$tmp/s3fault.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/s3port" ] && break; sleep 0.1; done
real_env=(env AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$tmp/s3port") AWS_REGION=us-east-1
          AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=AKIDSERVER
          AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY")
listen_port() { # the port a modelstream process printed in its log
  local p
  for _ in $(seq 100); do
    p=$(grep -o '(port [0-9]*)' "$1" 2>/dev/null | head -1 | tr -dc '0-9')
    [ -n "$p" ] && { echo "$p"; return; }
    sleep 0.1
  done
}

# Prometheus first, on the port serve will take, so that it scrapes from the first second.
serve_port=$(free_port)
if command -v prometheus >/dev/null; then
  prom2_port=$(free_port)
  sed "s/127.0.0.1:$main_port/127.0.0.1:$serve_port/" "$tmp/prometheus.yml" >"$tmp/prometheus-serve.yml"
  prometheus --config.file="$tmp/prometheus-serve.yml" --storage.tsdb.path="$tmp/tsdb-serve" \
    --web.listen-address=127.0.0.1:$prom2_port >"$tmp/prometheus-serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$prom2_port/-/ready" && break
    sleep 0.1
  done
fi
"${real_env[@]}" "$cli" serve s3://models/real/ --cache "$tmp/cache-serve" --listen 127.0.0.1:$serve_port \
  --chunk-size 1M --concurrency 2 >"$tmp/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
check "serve listens on the port it was given" test "$(listen_port "$tmp/serve.log")" = "$serve_port"
"$cli" wait "http://127.0.0.1:$serve_port" --timeout 60 --interval 0.2 >"$tmp/wait.log" 2>&1 &
wait_pid=$!
# /readyz is 503 while files are missing, and the model is not in the cache meanwhile.
early=$(curl -s -o "$tmp/early.body" -w '%{http_code}' "http://127.0.0.1:$serve_port/readyz")
check "during the fetch /readyz is 503 naming the model and its state" \
  bash -c "[ '$early' = 503 ] && grep -q 'model real is' '$tmp/early.body'"
wait $wait_pid
rc=$?
check "modelstream wait returns 0 once the model is ready" bash -c "[ $rc -eq 0 ] && grep -q 'is ready after' '$tmp/wait.log'"
check "...and had seen /readyz answer 503 first" grep -q 'answers 503' "$tmp/wait.log"
check "/readyz is 200 only once the files are verified and published" \
  bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$serve_port/readyz)\" = 200 ] && cmp -s '$tmp/cache-serve/models/real/model.safetensors' '$tmp/root/models/real/model.safetensors'"
curl -s "http://127.0.0.1:$serve_port/progress" >"$tmp/real-progress.json"
check "/progress after the fetch: ready, every byte, both files" python3 -c "
import json, sys
d = json.load(open('$tmp/real-progress.json'))
m = [m for m in d['models'] if m['name'] == 'real'][0]
assert d['ready'] and m['state'] == 'ready' and m['bytes_total'] == $real_bytes and m['bytes_fetched'] == $real_bytes
assert sorted(f['path'] for f in m['files']) == ['config.json', 'model.safetensors']
assert all(f['bytes_done'] == f['bytes_total'] for f in m['files'])
"
if command -v prometheus >/dev/null; then
  promq2() { curl -s --max-time 3 "http://127.0.0.1:$prom2_port/api/v1/$1" --data-urlencode "query=$2" "${@:3}"; }
  seen=
  for _ in $(seq 50); do
    promq2 query 'max_over_time(modelstream_bytes_fetched_total[5m])' >"$tmp/pq.json"
    grep -q "\"$real_bytes\"" "$tmp/pq.json" && { seen=1; break; }
    sleep 0.2
  done
  promq2 query 'modelstream_bytes_fetched_total[5m]' >"$tmp/pq-range.json"
  values=$(python3 -c "
import json
r = json.load(open('$tmp/pq-range.json'))['data']['result']
v = sorted({float(x[1]) for x in r[0]['values']}) if r else []
print(len(v), int(v[-1]) if v else 0)")
  check "a real Prometheus scraping serve during the fetch sees bytes fetched rise to the model size ($values distinct values, last)" \
    bash -c "[ -n '$seen' ] && [ \$(echo $values | cut -d' ' -f1) -ge 3 ] && [ \$(echo $values | cut -d' ' -f2) -eq $real_bytes ]"
  curl -s "http://127.0.0.1:$serve_port/metrics" >"$tmp/real-metrics.txt"
  check "promtool check metrics passes on serve's /metrics" bash -c "promtool check metrics <'$tmp/real-metrics.txt'"
  check "serve's /metrics counts the two SlowDown retries by reason, and the cache's size" python3 -c "
import re
m = open('$tmp/real-metrics.txt').read()
slow = float(re.search(r'^modelstream_retries_total\{reason=\"slowdown\"\} (\S+)$', m, re.M).group(1))
size = float(re.search(r'^modelstream_cache_size_bytes (\S+)$', m, re.M).group(1))
hits = float(re.search(r'^modelstream_cache_misses_total (\S+)$', m, re.M).group(1))
assert slow == 2 and size >= $real_bytes and hits == 2, (slow, size, hits)
"
fi
sleep 1
check "serve keeps answering after the fetch (a sidecar must not exit)" kill -0 $serve_pid
kill -TERM $serve_pid
t0=$(date +%s.%N)
wait $serve_pid
rc=$?
check "serve exits 0 on SIGTERM, promptly" python3 -c "import sys, time; sys.exit(0 if $rc == 0 and time.time() - $t0 < 3 else 1)"

# fetch --listen: the init container's own server, gone when the fetch is done.
"${real_env[@]}" "$cli" fetch s3://models/real/ --cache "$tmp/cache-fetch" --listen 127.0.0.1:0 \
  --chunk-size 1M --concurrency 2 --log-format text >"$tmp/fetch-listen.log" 2>&1 &
fetch_pid=$!
fetch_port=$(listen_port "$tmp/fetch-listen.log")
codes=""
while kill -0 $fetch_pid 2>/dev/null; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$fetch_port/readyz")
  case $codes in *"$code") ;; *) codes="$codes $code" ;; esac
  sleep 0.1
done
wait $fetch_pid
rc=$?
# (An init container's readiness is its exit: its server goes with it, so a 200 is rarely seen.)
check "fetch --listen: /readyz answered 503 while the fetch ran (seen:$codes), then the fetch exits 0" \
  bash -c "[ $rc -eq 0 ] && echo '$codes' | grep -q '503'"
cat "$tmp/serve.log" "$tmp/fetch-listen.log" >"$tmp/real.log"

# ---------------------------------------------------------------------------------------
# Secrets: in no response, header or body, and in no log.

if grep -rqF -e "$AWS_SECRET_ACCESS_KEY" -e "$AWS_SESSION_TOKEN" "$tmp/responses" "$tmp"/*.log "$tmp"/*.frames "$tmp/metrics.txt"; then
  fail "no response or log shows AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN"
else
  pass "no response or log shows AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN ($n_response responses, websocket frames and logs checked)"
fi

finish
