#!/usr/bin/env bash
# End-to-end tests of s3:// streaming against the fault-injecting S3 endpoint
# (tests/support/s3fault.py) on 127.0.0.1: bytes identical to the local file under every
# fault the server can script, stalls cut, a replaced object refused, clear errors.
# Usage: tests/s3_tests.sh BUILD_DIR. Ends with "N passed, M failed".
set -u
build=$1
cli=$build/modelstream
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-s3-tests.XXXXXX")
. "$(dirname "$0")/lib.sh"
server=

creds_server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$creds_server" ] && kill "$creds_server" 2>/dev/null && wait "$creds_server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT


mkdir -p "$tmp/root/models"
model=$tmp/root/models/m.safetensors
"$build/mkmodel" --seed 3 --small-count 400 --large-count 3 --large-bytes 8M "$model" >/dev/null
python3 tests/support/s3fault.py --root "$tmp/root" --port 0 --port-file "$tmp/port" \
  --require-auth --etag stat >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port" 2>/dev/null)
[ -n "$port" ] || { echo "s3fault did not start"; cat "$tmp/server.log"; echo "0 passed, 1 failed"; exit 1; }

export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=AKIDMODELSTREAMTEST AWS_SECRET_ACCESS_KEY=do-not-print-this-secret
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL_S3
export MODELSTREAM_S3_STALL_SECONDS=2
control() { curl -s -X POST -d "$2" "http://127.0.0.1:$port/__control/$1" >/dev/null; }

want=$("$cli" stream "$model" --checksum --quiet | sha256sum)

check_same() {
  local name=$1; shift
  local got
  got=$("$cli" stream s3://models/m.safetensors --checksum --quiet "$@" 2>"$tmp/err" | sha256sum)
  if [ "$got" = "$want" ]; then pass "$name"; else fail "$name" "$(head -c 300 "$tmp/err")"; fi
}

check_same "s3:// streams the same bytes as the local file"
check_same "s3:// with a 16 MiB ring and one connection" --memory-limit 16M --concurrency 1
control script '[{"action":"slowdown","method":"GET","every":3,"times":6}]'
check_same "503 SlowDown is retried"
control script '[{"action":"error500","method":"GET","every":2,"times":5}]'
check_same "500 InternalError is retried"
control script '[{"action":"reset","method":"GET","ranged":true,"after_bytes":100000,"times":4}]'
check_same "a connection reset mid-body re-requests only what is missing"
control script '[{"action":"truncate","method":"GET","ranged":true,"after_bytes":5000,"times":4}]'
check_same "a truncated body is completed"
control script '[{"action":"stall","method":"GET","ranged":true,"after_bytes":1000,"seconds":30,"times":2}]'
start=$SECONDS
check_same "a stalled transfer is cut and retried"
[ $((SECONDS - start)) -lt 20 ] && pass "the stall did not hang the stream" ||
  fail "the stall did not hang the stream" "$((SECONDS - start)) s"
control script '[{"action":"skew","method":"GET","offset_seconds":3600,"times":1}]'
check_same "RequestTimeTooSkewed on a GET: the server's clock is learnt and the read retried"
control script '[{"action":"skew","method":"HEAD","offset_seconds":-3600,"times":1}]'
check_same "a skewed clock on the first HEAD is corrected from the Date header"
control script '[]'

# ExpiredToken: the credentials are fetched again and the request signed again, once.
control script '[{"action":"expired","method":"GET","times":1}]'
check_same "ExpiredToken: the credentials are refreshed and the read signed again"
control script '[{"action":"expired","method":"GET","times":1000}]'
control reset '{}'
"$cli" stream s3://models/m.safetensors --quiet --concurrency 1 >/dev/null 2>"$tmp/err"
rc=$?
gets=$(curl -s "http://127.0.0.1:$port/__control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"].get("GET", 0))')
if [ $rc -eq 5 ] && grep -q "ExpiredToken" "$tmp/err" && [ "$gets" -le 2 ]; then
  pass "a token that stays expired: one refresh, no retry storm, exit 5 ($gets GETs)"
else fail "a token that stays expired: one refresh, no retry storm, exit 5" "exit $rc, $gets GETs: $(cat "$tmp/err")"; fi

# Temporary credentials from a container endpoint: refreshed before they expire, in the
# middle of a download, and fetched again after an ExpiredToken.
python3 tests/support/creds_server.py --port 0 --port-file "$tmp/creds-port" --container-token bearer-never-printed \
  --key-id 'ASIAREFRESH{n}' --secret refreshed-secret-never-printed --expires-in 601 >"$tmp/creds.log" 2>&1 &
creds_server=$!
for _ in $(seq 50); do [ -s "$tmp/creds-port" ] && break; sleep 0.1; done
creds_port=$(cat "$tmp/creds-port")
echo bearer-never-printed >"$tmp/bearer"
container=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY
           AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$creds_port/creds"
           AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$tmp/bearer" MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=600)
creds_fetches() { curl -s "http://127.0.0.1:$creds_port/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["container"])'; }
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":0.3}]'
control reset '{}'
got=$("${container[@]}" "$cli" stream s3://models/m.safetensors --checksum --quiet --concurrency 2 \
  --chunk-size 1M 2>"$tmp/err" | sha256sum)
keys=$(curl -s "http://127.0.0.1:$port/__control/requests" | grep -oE 'ASIAREFRESH[0-9]+' | sort -u | wc -l)
if [ "$got" = "$want" ] && [ "$keys" -ge 2 ]; then
  pass "container credentials refreshed before expiry in the middle of a download ($keys key ids signed reads)"
else fail "container credentials refreshed before expiry in the middle of a download" "$keys key ids: $(head -c 300 "$tmp/err")"; fi
curl -s -X POST -d '{"expires_in": 3600}' "http://127.0.0.1:$creds_port/__config" >/dev/null
before=$(creds_fetches)
# (Forced refreshes are at most one a second: the ExpiredToken comes 1.2 s after the fetch.)
control script '[{"action":"delay","method":"GET","ranged":true,"seconds":1.2,"times":1},
                 {"action":"expired","method":"GET","ranged":true,"times":1}]'
got=$("${container[@]}" "$cli" stream s3://models/m.safetensors --checksum --quiet --concurrency 1 2>"$tmp/err" | sha256sum)
after=$(creds_fetches)
if [ "$got" = "$want" ] && [ $((after - before)) -eq 2 ]; then
  pass "ExpiredToken with container credentials: one forced fetch, then the read succeeds"
else fail "ExpiredToken with container credentials: one forced fetch, then the read succeeds" \
  "$((after - before)) fetches: $(head -c 300 "$tmp/err")"; fi
if grep -qE "bearer-never-printed|refreshed-secret-never-printed" "$tmp/err" "$tmp/creds.log"; then
  fail "container tokens and secrets stay out of every message"
else pass "container tokens and secrets stay out of every message"; fi
control script '[]'

# Retries are bounded: by attempts per request, and by the client's token budget.
control script '[{"action":"slowdown","method":"GET","times":100000}]'
control reset '{}'
"$cli" stream s3://models/m.safetensors --quiet --concurrency 8 >/dev/null 2>"$tmp/err"
rc=$?
gets=$(curl -s "http://127.0.0.1:$port/__control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"].get("GET", 0))')
if [ $rc -eq 7 ] && grep -q "503 SlowDown after 6 attempts" "$tmp/err" && [ "$gets" -le 48 ]; then
  pass "a store that always answers SlowDown: at most 6 attempts per read ($gets GETs, 8 readers)"
else fail "a store that always answers SlowDown: at most 6 attempts per read" "exit $rc, $gets GETs: $(cat "$tmp/err")"; fi
control reset '{}'
MODELSTREAM_S3_RETRY_BUDGET=10 "$cli" stream s3://models/m.safetensors --quiet --concurrency 1 >/dev/null 2>"$tmp/err"
rc=$?
gets=$(curl -s "http://127.0.0.1:$port/__control/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"].get("GET", 0))')
if [ $rc -eq 7 ] && grep -q "retry budget is spent" "$tmp/err" && [ "$gets" -eq 3 ]; then
  pass "a spent retry budget stops retrying (budget 10 = two retries, $gets GETs)"
else fail "a spent retry budget stops retrying" "exit $rc, $gets GETs: $(cat "$tmp/err")"; fi
control script '[]'

# Mixing a local path and an s3:// URL in one call.
"$cli" stream "$model" s3://models/m.safetensors --json >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '"files":2' "$tmp/out"; then pass "one stream mixes a local file and s3://"
else fail "one stream mixes a local file and s3://" "$(head -c 300 "$tmp/err")"; fi

# An object replaced while it is read: If-Match makes S3 refuse, the stream fails clearly.
cp "$model" "$tmp/root/models/swap.safetensors"
control script '[{"action":"swap","key":"swap.safetensors","method":"GET","nth":2}]'
"$cli" stream s3://models/swap.safetensors --quiet --concurrency 1 >/dev/null 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ] && grep -q "412" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then
  pass "an object replaced mid-read fails with 412, one line"
else fail "an object replaced mid-read fails with 412, one line" "exit $rc: $(cat "$tmp/err")"; fi
control script '[]'

expect() {
  local name=$1 want_rc=$2 needle=$3; shift 3
  "$@" >/dev/null 2>"$tmp/err"
  local rc=$?
  if [ $rc -eq "$want_rc" ] && grep -qF -- "$needle" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
     ! grep -q "do-not-print-this-secret" "$tmp/err"; then
    pass "$name"
  else
    fail "$name" "exit $rc: $(cat "$tmp/err")"
  fi
}
expect "a missing key exits 4 naming the URL" 4 "s3://models/none.safetensors" \
  "$cli" stream s3://models/none.safetensors
expect "a missing bucket exits 4" 4 "s3://nobucket/m.safetensors" \
  "$cli" stream s3://nobucket/m.safetensors
expect "no credentials exits 5 and says which variables" 5 "AWS_ACCESS_KEY_ID" \
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED=true \
  "$cli" stream s3://models/m.safetensors
expect "a secret key without its key id is a usage error" 2 "AWS_ACCESS_KEY_ID" \
  env -u AWS_ACCESS_KEY_ID "$cli" stream s3://models/m.safetensors
expect "an invalid bucket name exits 2" 2 "s3://Bad_Bucket/x" "$cli" stream s3://Bad_Bucket/x
expect "an endpoint that refuses connections fails after retries, naming it (exit 7)" 7 "127.0.0.1:1" \
  env AWS_ENDPOINT_URL=http://127.0.0.1:1 "$cli" stream s3://models/m.safetensors

# TLS: certificates are verified; a private CA is trusted through AWS_CA_BUNDLE.
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -days 2 -keyout "$tmp/tls.key" -out "$tmp/tls.pem" >/dev/null 2>&1
python3 tests/support/s3fault.py --root "$tmp/root" --port 0 --port-file "$tmp/tls-port" --require-auth \
  --etag stat --tls-cert "$tmp/tls.pem" --tls-key "$tmp/tls.key" >"$tmp/tls.log" 2>&1 &
tls_server=$!
for _ in $(seq 50); do [ -s "$tmp/tls-port" ] && break; sleep 0.1; done
tls_url=https://127.0.0.1:$(cat "$tmp/tls-port")
expect "an untrusted certificate fails at once, naming AWS_CA_BUNDLE" 1 "AWS_CA_BUNDLE" \
  env AWS_ENDPOINT_URL="$tls_url" "$cli" stream s3://models/m.safetensors
got=$(AWS_ENDPOINT_URL="$tls_url" AWS_CA_BUNDLE="$tmp/tls.pem" "$cli" stream s3://models/m.safetensors \
  --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want" ] && pass "https with a private CA from AWS_CA_BUNDLE streams the same bytes" ||
  fail "https with a private CA from AWS_CA_BUNDLE streams the same bytes" "$(head -c 300 "$tmp/err")"
kill "$tls_server" 2>/dev/null; wait "$tls_server" 2>/dev/null

# Credentials and endpoint from a profile in the shared files, none in the environment.
printf '[dev]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret-never-printed\n' \
  >"$tmp/credentials"
printf '[profile dev]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:%s\n' "$port" >"$tmp/config"
printf '[profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\nweb_identity_token_file = /nonexistent\n' \
  >>"$tmp/config"
got=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_ENDPOINT_URL AWS_PROFILE=dev \
  AWS_CONFIG_FILE="$tmp/config" AWS_SHARED_CREDENTIALS_FILE="$tmp/credentials" \
  "$cli" stream s3://models/m.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
if [ "$got" = "$want" ] && curl -s "http://127.0.0.1:$port/__control/requests" | grep -q AKIDFROMPROFILE; then
  pass "keys and endpoint from profile 'dev' of the shared files"
else fail "keys and endpoint from profile 'dev' of the shared files" "$(cat "$tmp/err")"; fi
expect "a web identity profile whose token file is missing says so, naming it" 5 "profile 'role'" \
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_PROFILE=role \
  AWS_CONFIG_FILE="$tmp/config" AWS_SHARED_CREDENTIALS_FILE="$tmp/credentials" \
  "$cli" stream s3://models/m.safetensors
if grep -q "profile-secret-never-printed" "$tmp/err"; then fail "profile secrets stay out of messages"
else pass "profile secrets stay out of messages"; fi

# Every request was signed, and the secret never crossed the wire.
curl -s "http://127.0.0.1:$port/__control/stats" >"$tmp/stats"
if python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["auth"]["rejected"]==0 and s["auth"]["ok"]>0 else 1)' "$tmp/stats"; then
  pass "every request carried a SigV4 Authorization header"
else fail "every request carried a SigV4 Authorization header" "$(cat "$tmp/stats")"; fi
curl -s "http://127.0.0.1:$port/__control/requests" >"$tmp/requests"
if grep -qE "do-not-print-this-secret|profile-secret-never-printed" "$tmp/requests"; then
  fail "the secret never crossed the wire"
else pass "the secret never crossed the wire"; fi

finish
