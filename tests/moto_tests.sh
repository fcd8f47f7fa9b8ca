#!/usr/bin/env bash
# End-to-end tests of object storage against a real S3 implementation: moto_server on
# 127.0.0.1 with authentication on (INITIAL_NO_AUTH_ACTION_COUNT), so every request is
# signed and checked. Covers credentials from the environment, a profile, web identity
# through moto's STS, and wrong keys; missing objects and buckets; `ls` over more than one
# page; `push` (one PUT and multipart) then `stream`, bit-identical; interoperation with
# awscli both ways; model directories; one `stream` mixing local paths and s3:// URLs;
# `exists` and `doctor`; and that no secret appears in any output.
# Usage: tests/moto_tests.sh BUILD_DIR. Ends with "N passed, M failed".
set -u
build=$1
cli=$(cd "$build" && pwd)/modelstream
mkmodel=$(cd "$build" && pwd)/mkmodel
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-moto-tests.XXXXXX")
. "$(dirname "$0")/lib.sh"
server=
creds_server=

cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$creds_server" ] && kill "$creds_server" 2>/dev/null && wait "$creds_server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT


port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
INITIAL_NO_AUTH_ACTION_COUNT=3 python3 tests/support/moto_server.py -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null && break
  sleep 0.1
done
endpoint=http://127.0.0.1:$port
if ! python3 tests/support/moto_setup.py --endpoint "$endpoint" >"$tmp/setup.json" 2>"$tmp/setup.err"; then
  echo "moto setup failed:"; cat "$tmp/setup.err" "$tmp/moto.log" | tail -20
  fail "moto_server with authentication starts"; finish
fi
key_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key_id"])' <"$tmp/setup.json")
secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <"$tmp/setup.json")
role_arn=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["role_arn"])' <"$tmp/setup.json")

# Every case runs in a clean environment: only what it sets.
mkdir -p "$tmp/home"
run() {
  env -i PATH="$PATH" HOME="$tmp/home" AWS_EC2_METADATA_DISABLED=true "$@"
}
creds=(AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret" AWS_ENDPOINT_URL="$endpoint"
       AWS_REGION=us-east-1)
ms() { run "${creds[@]}" "$cli" "$@"; }
awscli() { run "${creds[@]}" aws --endpoint-url "$endpoint" "$@"; }
outputs=$tmp/all-output
: >"$outputs"
# Runs a command, keeping its stdout in $tmp/out and stderr in $tmp/err (and both in
# $outputs for the secret check); returns its status.
capture() {
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  cat "$tmp/out" "$tmp/err" >>"$outputs"
  return $rc
}
checksums() { "$cli" stream "$@" --checksum --quiet; }

# Small models: moto reads the whole object for every ranged GET.
mkdir -p "$tmp/model"
"$mkmodel" --seed 5 --small-count 200 --large-count 2 --large-bytes 2M "$tmp/model/model-00001-of-00002.safetensors" >/dev/null
"$mkmodel" --seed 6 --small-count 100 --large-count 1 --large-bytes 7M "$tmp/model/model-00002-of-00002.safetensors" >/dev/null
echo '{"architectures": ["Test"]}' >"$tmp/model/config.json"
echo '{"model": "tokenizer"}' >"$tmp/model/tokenizer.json"
one=$tmp/model/model-00001-of-00002.safetensors
two=$tmp/model/model-00002-of-00002.safetensors
want_one=$(checksums "$one" | sha256sum)
want_two=$(checksums "$two" | sha256sum)
want_both=$(checksums "$one" "$two" | sha256sum)

# --- push, then stream: one PUT and a multipart upload --------------------------------
if capture ms push "$one" s3://models/single/one.safetensors; then
  pass "push of a small file (one PUT)"
else
  fail "push of a small file (one PUT)" "$(head -c 300 "$tmp/err")"
fi
got=$(ms stream s3://models/single/one.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_one" ] && pass "push then stream is bit-identical (env credentials)" ||
  fail "push then stream is bit-identical (env credentials)" "$(head -c 300 "$tmp/err")"
if capture ms push "$two" s3://models/multi/two.safetensors --part-size 5M --concurrency 3 &&
  grep -q "uploaded s3://models/multi/two.safetensors" "$tmp/err"; then
  pass "push of a 7+ MiB file as a 2-part multipart upload"
else
  fail "push of a 7+ MiB file as a 2-part multipart upload" "$(head -c 300 "$tmp/err")"
fi
got=$(ms stream s3://models/multi/two.safetensors --checksum --quiet --memory-limit 8M --concurrency 4 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_two" ] && pass "multipart push then ranged stream through an 8 MiB ring is bit-identical" ||
  fail "multipart push then ranged stream through an 8 MiB ring is bit-identical" "$(head -c 300 "$tmp/err")"
awscli s3 cp s3://models/multi/two.safetensors "$tmp/back.safetensors" >/dev/null 2>"$tmp/err"
cmp -s "$tmp/back.safetensors" "$two" && pass "awscli downloads what modelstream pushed, byte for byte" ||
  fail "awscli downloads what modelstream pushed, byte for byte" "$(head -c 300 "$tmp/err")"
# SIGTERM during a multipart push: exit 130 at once, and the upload is aborted on the store
# (no parts left behind to be billed).
truncate -s 400M "$tmp/big.bin"   # sparse: made at once, 80 parts of 5 MiB
# A simple command, not the ms function, so that $! is the process itself (env execs it).
env -i PATH="$PATH" HOME="$tmp/home" AWS_EC2_METADATA_DISABLED=true "${creds[@]}" \
  "$cli" push "$tmp/big.bin" s3://models/big/big.bin --part-size 5M --concurrency 1 --quiet \
  >"$tmp/out" 2>"$tmp/err" &
pusher=$!
sleep 0.7
kill -TERM "$pusher" 2>/dev/null
wait "$pusher"; rc=$?
uploads=$(awscli s3api list-multipart-uploads --bucket models --output json 2>/dev/null |
  python3 -c 'import json,sys; t=sys.stdin.read().strip(); print(len(json.loads(t).get("Uploads", [])) if t else 0)')
if [ "$rc" -eq 0 ]; then
  skip "SIGTERM during a multipart push aborts it" "the push finished within 0.7 s"
else
  [ "$rc" -eq 130 ] && [ "$uploads" = 0 ] && grep -q "canceled" "$tmp/err" &&
    pass "SIGTERM during a multipart push: exit 130, the upload aborted on the store" ||
    fail "SIGTERM during a multipart push aborts it" "rc=$rc uploads=$uploads $(head -c 300 "$tmp/err")"
fi
rm -f "$tmp/big.bin"
awscli s3 cp "$one" s3://models/bycli/one.safetensors >/dev/null 2>"$tmp/err"
got=$(ms stream s3://models/bycli/one.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_one" ] && pass "modelstream streams what awscli uploaded" ||
  fail "modelstream streams what awscli uploaded" "$(head -c 300 "$tmp/err")"
run "${creds[@]}" aws configure set default.s3.multipart_threshold 5MB >/dev/null 2>&1
awscli s3 cp "$two" s3://models/bycli/two-mp.safetensors >/dev/null 2>"$tmp/err"
got=$(ms stream s3://models/bycli/two-mp.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_two" ] && pass "modelstream streams an awscli multipart upload (ETag with -N)" ||
  fail "modelstream streams an awscli multipart upload (ETag with -N)" "$(head -c 300 "$tmp/err")"
rm -f "$tmp/home/.aws/config"

# --- model directories ------------------------------------------------------------------
if capture ms push "$tmp/model" s3://models/llama/ --quiet; then
  pass "push of a model directory"
else
  fail "push of a model directory" "$(head -c 300 "$tmp/err")"
fi
capture ms ls s3://models/llama/
if [ "$(awk '{print $NF}' "$tmp/out" | sort | tr '\n' ' ')" = "config.json model-00001-of-00002.safetensors model-00002-of-00002.safetensors tokenizer.json " ]; then
  pass "ls shows every file of the pushed directory"
else
  fail "ls shows every file of the pushed directory" "$(cat "$tmp/out" "$tmp/err" | head -c 400)"
fi
got=$(ms stream s3://models/llama/ --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_both" ] && pass "stream of a prefix streams its *.safetensors in name order" ||
  fail "stream of a prefix streams its *.safetensors in name order" "$(head -c 300 "$tmp/err")"
got=$(checksums "$tmp/model" | sha256sum)
[ "$got" = "$want_both" ] && pass "stream of a local model directory matches" ||
  fail "stream of a local model directory matches"
got=$(ms stream "$one" s3://models/llama/model-00002-of-00002.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_both" ] && pass "one stream mixes a local path and an s3:// URL" ||
  fail "one stream mixes a local path and an s3:// URL" "$(head -c 300 "$tmp/err")"
capture ms stream s3://models/many/ --quiet
rc=$?
[ $rc -eq 4 ] && grep -q "no \*.safetensors files in this prefix" "$tmp/err" &&
  pass "a prefix without weights is exit 4 with a clear message" ||
  fail "a prefix without weights is exit 4 with a clear message" "rc=$rc $(head -c 300 "$tmp/err")"

# --- listing over pages -----------------------------------------------------------------
capture ms ls s3://models/many/ --recursive
n=$(wc -l <"$tmp/out")
[ "$n" -eq 1051 ] && pass "ls --recursive follows continuation tokens past 1000 keys (1051)" ||
  fail "ls --recursive follows continuation tokens past 1000 keys (1051)" "got $n lines; $(head -c 300 "$tmp/err")"
capture ms ls s3://models/many/
if [ "$(wc -l <"$tmp/out")" -eq 1051 ] && grep -qE '^ +PRE sub/$' "$tmp/out" &&
  ! grep -q inner "$tmp/out"; then
  pass "ls without --recursive shows a sub-prefix once, as PRE"
else
  fail "ls without --recursive shows a sub-prefix once, as PRE" "$(tail -n 3 "$tmp/out")"
fi
capture ms ls s3://models/many/ --json
python3 - "$tmp/out" <<'PY' && pass "ls --json is an array with name, url, size, etag" || fail "ls --json is an array with name, url, size, etag"
import json, sys
a = json.load(open(sys.argv[1]))
o = [x for x in a if x["name"] == "obj-00003"][0]
assert o["url"] == "s3://models/many/obj-00003" and o["size"] == 3 and o["etag"].startswith('"') and not o["prefix"]
assert [x for x in a if x["name"] == "sub/"][0]["prefix"]
PY
capture ms ls s3://models/many/obj-00001
[ $? -eq 2 ] && grep -q "end it with '/'" "$tmp/err" && pass "ls of an object URL is a usage error with a hint" ||
  fail "ls of an object URL is a usage error with a hint" "$(cat "$tmp/err")"

# --- exists -----------------------------------------------------------------------------
capture ms exists s3://models/single/one.safetensors
[ $? -eq 0 ] && grep -q "exists (" "$tmp/out" && pass "exists: an object" || fail "exists: an object" "$(cat "$tmp/out" "$tmp/err")"
capture ms exists s3://models/single/nothing
[ $? -eq 4 ] && grep -q "not found" "$tmp/out" && pass "exists: a missing key is exit 4" || fail "exists: a missing key is exit 4"
capture ms exists s3://models/llama/
[ $? -eq 0 ] && pass "exists: a prefix with objects" || fail "exists: a prefix with objects" "$(cat "$tmp/err")"

# --- errors -----------------------------------------------------------------------------
capture ms stream s3://models/single/missing.safetensors
rc=$?
[ $rc -eq 4 ] && grep -q "s3://models/single/missing.safetensors" "$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
  pass "a missing key: exit 4, one line naming the URL" || fail "a missing key: exit 4, one line naming the URL" "rc=$rc $(cat "$tmp/err")"
capture ms ls s3://no-such-bucket/
rc=$?
[ $rc -eq 4 ] && grep -q "NoSuchBucket" "$tmp/err" && pass "a missing bucket: NoSuchBucket, exit 4" ||
  fail "a missing bucket: NoSuchBucket, exit 4" "rc=$rc $(cat "$tmp/err")"
capture run AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="wrong-secret-do-not-print" AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 \
  "$cli" ls s3://models/single/
rc=$?
[ $rc -eq 5 ] && grep -q "SignatureDoesNotMatch" "$tmp/err" && grep -q "secret key does not belong" "$tmp/err" &&
  pass "a wrong secret: SignatureDoesNotMatch with a hint, exit 5" || fail "a wrong secret: SignatureDoesNotMatch with a hint, exit 5" "rc=$rc $(cat "$tmp/err")"
capture run AWS_ACCESS_KEY_ID=AKIAUNKNOWNKEY000000 AWS_SECRET_ACCESS_KEY="$secret" AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 \
  "$cli" stream s3://models/single/one.safetensors
rc=$?
[ $rc -eq 5 ] && grep -q "InvalidAccessKeyId" "$tmp/err" && pass "an unknown key id: InvalidAccessKeyId, exit 5" ||
  fail "an unknown key id: InvalidAccessKeyId, exit 5" "rc=$rc $(cat "$tmp/err")"
capture run AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 "$cli" stream s3://models/single/one.safetensors
rc=$?
[ $rc -eq 5 ] && grep -q "no credentials" "$tmp/err" && pass "no credentials at all: exit 5, says what was looked for" ||
  fail "no credentials at all: exit 5, says what was looked for" "rc=$rc $(cat "$tmp/err")"
capture ms push "$tmp/model" s3://models/nodir
[ $? -eq 2 ] && grep -q "end the URL with '/'" "$tmp/err" && pass "push of a directory to an object URL is refused" ||
  fail "push of a directory to an object URL is refused" "$(cat "$tmp/err")"
capture ms push "$tmp/model/none" s3://models/x
[ $? -eq 4 ] && pass "push of a missing local file is exit 4" || fail "push of a missing local file is exit 4" "$(cat "$tmp/err")"

# --- credentials from a profile and from web identity -----------------------------------
mkdir -p "$tmp/aws"
printf '[dev]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key_id" "$secret" >"$tmp/aws/credentials"
printf '[profile dev]\nregion = us-east-1\nendpoint_url = %s\n' "$endpoint" >"$tmp/aws/config"
got=$(run AWS_PROFILE=dev AWS_CONFIG_FILE="$tmp/aws/config" AWS_SHARED_CREDENTIALS_FILE="$tmp/aws/credentials" \
  "$cli" stream s3://models/single/one.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_one" ] && pass "credentials and endpoint from profile 'dev' of the shared files" ||
  fail "credentials and endpoint from profile 'dev' of the shared files" "$(head -c 300 "$tmp/err")"
echo "header.payload.signature-not-a-real-jwt" >"$tmp/token"
webid=(AWS_WEB_IDENTITY_TOKEN_FILE="$tmp/token" AWS_ROLE_ARN="$role_arn" AWS_ROLE_SESSION_NAME=modelstream-test
       AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1)
got=$(run "${webid[@]}" "$cli" stream s3://models/single/one.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_one" ] && pass "web identity: AssumeRoleWithWebIdentity at moto's STS, then signed reads" ||
  fail "web identity: AssumeRoleWithWebIdentity at moto's STS, then signed reads" "$(head -c 300 "$tmp/err")"
capture run "${webid[@]}" "$cli" doctor s3://models/single/one.safetensors
if [ $? -eq 0 ] && grep -q "^credentials: web identity" "$tmp/out" && grep -q "^endpoint: $endpoint (AWS_ENDPOINT_URL)" "$tmp/out" &&
  grep -q "^access: ok" "$tmp/out"; then
  pass "doctor names the endpoint, its source and the credential source"
else
  fail "doctor names the endpoint, its source and the credential source" "$(cat "$tmp/out" "$tmp/err")"
fi
capture ms stream s3://models/single/one.safetensors --verbose --quiet
grep -q "^credentials: environment" "$tmp/err" && pass "stream --verbose says where the credentials came from" ||
  fail "stream --verbose says where the credentials came from" "$(cat "$tmp/err")"

# --- container credentials and IMDSv2 from a loopback endpoint -------------------------
# tests/support/creds_server.py hands out temporary credentials of the moto role, as the
# ECS agent, EKS Pod Identity or EC2's metadata service hand out a role's.
python3 -c 'import json,sys; json.dump(json.load(sys.stdin)["role_credentials"], sys.stdout)' <"$tmp/setup.json" >"$tmp/role.json"
role_secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["SecretAccessKey"])' <"$tmp/role.json")
python3 tests/support/creds_server.py --port 0 --port-file "$tmp/creds-port" --container-token pod-identity-bearer \
  --creds-file "$tmp/role.json" >"$tmp/creds.log" 2>&1 &
creds_server=$!
for _ in $(seq 50); do [ -s "$tmp/creds-port" ] && break; sleep 0.1; done
creds_port=$(cat "$tmp/creds-port")
echo pod-identity-bearer >"$tmp/bearer"
got=$(env -i PATH="$PATH" HOME="$tmp/home" AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 \
  AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$creds_port/creds" AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$tmp/bearer" \
  "$cli" stream s3://models/single/one.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_one" ] && pass "container credentials (EKS Pod Identity) from a loopback endpoint, then signed reads" ||
  fail "container credentials (EKS Pod Identity) from a loopback endpoint, then signed reads" "$(head -c 300 "$tmp/err")"
got=$(env -i PATH="$PATH" HOME="$tmp/home" AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$creds_port" \
  "$cli" stream s3://models/single/one.safetensors --checksum --quiet 2>"$tmp/err" | sha256sum)
[ "$got" = "$want_one" ] && pass "EC2 instance metadata (IMDSv2) from a loopback endpoint, then signed reads" ||
  fail "EC2 instance metadata (IMDSv2) from a loopback endpoint, then signed reads" "$(head -c 300 "$tmp/err")"
capture env -i PATH="$PATH" HOME="$tmp/home" AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$creds_port" "$cli" doctor s3://models/single/
grep -q "^credentials: EC2 instance metadata (IMDSv2)" "$tmp/out" && grep -q "^access: ok" "$tmp/out" &&
  pass "doctor names IMDSv2 as the credential source" || fail "doctor names IMDSv2 as the credential source" "$(cat "$tmp/out" "$tmp/err")"

# --- no secret anywhere -----------------------------------------------------------------
if grep -qF -e "$secret" -e "wrong-secret-do-not-print" -e "not-a-real-jwt" -e "pod-identity-bearer" -e "$role_secret" "$outputs"; then
  fail "no secret key or token appears in any output"
else
  pass "no secret key or token appears in any output ($(wc -l <"$outputs") lines checked)"
fi
finish
