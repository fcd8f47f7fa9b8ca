#!/usr/bin/env bash
# End-to-end tests of the AWS credential chain (lib/s3/s3_creds.c) through tests/creds_probe,
# against real servers on 127.0.0.1 that this script starts and stops: moto_server as STS
# (one open, one with IAM auth on, so that it refuses unknown keys) and
# tests/support/creds_server.py for container credentials, IMDSv2 and a token-recording STS.
# Every case runs with a clean environment (env -i, PATH and a scratch HOME only).
# Usage: tests/creds_tests.sh BUILD_DIR. Prints "ok - NAME" / "not ok - NAME: detail" per
# check and ends with "N passed, M failed"; exits 1 if any check failed.
set -u
build=$1
probe_bin=$(cd "$(dirname "$build/tests/creds_probe")" && pwd)/creds_probe
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-creds-tests.XXXXXX")
. "$(dirname "$0")/lib.sh"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

check() { # check NAME CONDITION-EXIT-STATUS [DETAIL]
  if [ "$2" -eq 0 ]; then pass "$1"; else fail "$1" "${3:-}"; fi
}
give_up() { echo "$1"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }

[ -x "$probe_bin" ] || give_up "no $probe_bin: build it first"
command -v moto_server >/dev/null || give_up "moto_server is not installed"

# The secrets of every case: none may ever appear in any output.
ENV_SECRET=env-secret-never-printed
PROFILE_SECRET=profile-secret-never-printed
SERVER_SECRET=server-secret-never-printed
SERVER_SESSION=server-session-token-never-printed
CONTAINER_TOKEN="Bearer container-token-never-printed"
WEB_TOKEN=web-identity-token-never-printed-1
WEB_TOKEN2=web-identity-token-never-printed-2
ROLE=arn:aws:iam::123456789012:role/modelstream

# ---- servers --------------------------------------------------------------------------
start_moto() { # start_moto NAME [ENV...]: sets the variable NAME to the port
  local name=$1; shift
  env "$@" moto_server -H 127.0.0.1 -p 0 >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  local port=
  for _ in $(seq 100); do
    port=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$tmp/$name.log" 2>/dev/null | head -1 | cut -d: -f3)
    [ -n "$port" ] && curl -s -o /dev/null "http://127.0.0.1:$port/moto-api/" && break
    port=
    sleep 0.1
  done
  [ -n "$port" ] || give_up "moto_server ($name) did not start: $(tail -5 "$tmp/$name.log")"
  printf -v "$name" '%s' "$port"
}
start_moto moto
start_moto moto_auth INITIAL_NO_AUTH_ACTION_COUNT=0

python3 "$here/support/creds_server.py" --port 0 --port-file "$tmp/cs.port" \
  --blackhole-port-file "$tmp/blackhole.port" --container-token "$CONTAINER_TOKEN" \
  --secret "$SERVER_SECRET" --session-token "$SERVER_SESSION" --key-id 'ASIASERVER{n}' \
  >"$tmp/creds_server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/cs.port" ] && [ -s "$tmp/blackhole.port" ] && break; sleep 0.1; done
cs=$(cat "$tmp/cs.port" 2>/dev/null)
blackhole=$(cat "$tmp/blackhole.port" 2>/dev/null)
[ -n "$cs" ] && [ -n "$blackhole" ] || give_up "creds_server did not start: $(cat "$tmp/creds_server.log")"
# A port with nothing listening: bound, then closed.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

server_stat() { curl -s "http://127.0.0.1:$cs/__stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
server_config() { curl -s -X POST -d "$1" "http://127.0.0.1:$cs/__config" >/dev/null; }
sha12() { printf '%s' "$1" | sha256sum | cut -c1-12; }

# ---- files ----------------------------------------------------------------------------
home=$tmp/home            # no shared files at all
mkdir -p "$home/.aws" "$tmp/profiles"
printf '%s' "$WEB_TOKEN" >"$tmp/web-token"
printf '%s\n' "$CONTAINER_TOKEN" >"$tmp/container-token"
cat >"$tmp/profiles/credentials" <<EOF
[static]
aws_access_key_id = AKIDPROFILESTATIC
aws_secret_access_key = $PROFILE_SECRET
[src]
aws_access_key_id = AKIDPROFILESOURCE
aws_secret_access_key = $PROFILE_SECRET
EOF
cat >"$tmp/profiles/config" <<EOF
[profile role]
role_arn = $ROLE
source_profile = src
role_session_name = modelstream-test
[profile chained]
role_arn = arn:aws:iam::123456789012:role/second
source_profile = role
[profile webid]
role_arn = $ROLE
web_identity_token_file = $tmp/web-token
[profile ecs]
role_arn = $ROLE
credential_source = EcsContainer
[profile loop-a]
role_arn = $ROLE
source_profile = loop-b
[profile loop-b]
role_arn = $ROLE
source_profile = loop-a
EOF
PROFILES=(AWS_CONFIG_FILE="$tmp/profiles/config" AWS_SHARED_CREDENTIALS_FILE="$tmp/profiles/credentials")

# probe NAME [VAR=value...] -- [probe arguments...]: runs the probe in a clean environment;
# its output is in $tmp/NAME.out and .err, its exit status in $rc, its run time in $ms.
probe() {
  local name=$1; shift
  local vars=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do vars+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local start end
  start=$(date +%s%N)
  env -i PATH="$PATH" HOME="$home" "${vars[@]}" "$probe_bin" "s3://bucket/$name" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  end=$(date +%s%N)
  ms=$(((end - start) / 1000000))
  cat "$tmp/$name.out" "$tmp/$name.err" >>"$tmp/all-output"
}
field() { sed -n "s/^$2: //p" "$tmp/$1.out" | head -1; }
err() { cat "$tmp/$1.err"; }
one_line_error() { # one_line_error NAME NEEDLE...: exit 1, one line, naming the URL and each needle
  [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/$1.err")" -eq 1 ] && grep -qF "s3://bucket/$1: " "$tmp/$1.err" || return 1
  local needle
  for needle in "${@:2}"; do grep -qF -- "$needle" "$tmp/$1.err" || return 1; done
}

# ---- environment ----------------------------------------------------------------------
probe env AWS_ACCESS_KEY_ID=AKIDENVIRONMENT01 AWS_SECRET_ACCESS_KEY=$ENV_SECRET AWS_SESSION_TOKEN=env-session
[ $rc -eq 0 ] && [ "$(field env kind)" = 1 ] && [ "$(field env access_key_id)" = AKIDENVIRONMENT01 ] &&
  [ "$(field env secret_sha256)" = "$(sha12 "$ENV_SECRET")" ] && [ "$(field env session_token)" = yes ] &&
  [ "$(field env describe)" = "environment (AWS_ACCESS_KEY_ID AKID...)" ]
check "environment keys, described with 4 characters of the key id" $? "$(err env)"

before=$(server_stat container)
probe env_first AWS_ACCESS_KEY_ID=AKIDENVIRONMENT02 AWS_SECRET_ACCESS_KEY=$ENV_SECRET \
  AWS_WEB_IDENTITY_TOKEN_FILE="$tmp/web-token" AWS_ROLE_ARN=$ROLE AWS_PROFILE=static "${PROFILES[@]}" \
  AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$cs/creds" \
  AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$cs"
[ $rc -eq 0 ] && [ "$(field env_first kind)" = 1 ] && [ "$(field env_first access_key_id)" = AKIDENVIRONMENT02 ] &&
  [ "$(server_stat container)" = "$before" ] && [ "$(field env_first fetches)" = 0 ]
check "the environment beats web identity, profile, container and IMDS (nothing fetched)" $? "$(err env_first)"

probe env_half AWS_ACCESS_KEY_ID=AKIDENVIRONMENT03
one_line_error env_half AWS_SECRET_ACCESS_KEY
check "AWS_ACCESS_KEY_ID without its secret is a clear error" $? "$(err env_half)"

# ---- web identity from the environment ----------------------------------------------------
probe webid AWS_WEB_IDENTITY_TOKEN_FILE="$tmp/web-token" AWS_ROLE_ARN=$ROLE \
  AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto"
[ $rc -eq 0 ] && [ "$(field webid kind)" = 2 ] && [ "$(field webid session_token)" = yes ] &&
  [ "$(field webid fetches)" = 1 ] && grep -q '^access_key_id: ASIA' "$tmp/webid.out" &&
  grep -qF "describe: web identity: role $ROLE, token file $tmp/web-token, STS http://127.0.0.1:$moto" "$tmp/webid.out"
check "web identity from the environment: AssumeRoleWithWebIdentity at moto" $? "$(err webid)"

# The token file is read again on each refresh: the STS stub records a hash of each token.
# Refresh window 4000 s > the 3600 s lifetime, so every get refreshes.
printf '%s' "$WEB_TOKEN" >"$tmp/rotating-token"
( sleep 1; printf '%s' "$WEB_TOKEN2" >"$tmp/rotating-token.new"; mv "$tmp/rotating-token.new" "$tmp/rotating-token" ) &
rotator=$!
probe webid_rotate AWS_WEB_IDENTITY_TOKEN_FILE="$tmp/rotating-token" AWS_ROLE_ARN=$ROLE \
  AWS_ENDPOINT_URL_STS="http://127.0.0.1:$cs/sts" MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=4000 \
  -- --refresh-loop 1 2
wait $rotator
tokens=$(server_stat sts_tokens)
# Three calls: the provider's first fetch and the probe's first get (both before the
# rotation, 1 s in), then the get 2 s later.
h1=$(printf '%s' "$WEB_TOKEN" | sha256sum | cut -c1-16)
h2=$(printf '%s' "$WEB_TOKEN2" | sha256sum | cut -c1-16)
want="['$h1', '$h1', '$h2']"
[ $rc -eq 0 ] && [ "$tokens" = "$want" ]
check "web identity: the token file is read again on refresh (STS saw the rotated token)" $? \
  "$tokens vs $want: $(err webid_rotate)"

probe webid_missing AWS_WEB_IDENTITY_TOKEN_FILE="$tmp/no-such-token" AWS_ROLE_ARN=$ROLE \
  AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto"
one_line_error webid_missing "$tmp/no-such-token" "No such file" "AWS_ROLE_ARN $ROLE"
check "web identity: a missing token file names the file and the role" $? "$(err webid_missing)"

probe webid_norole AWS_WEB_IDENTITY_TOKEN_FILE="$tmp/web-token"
one_line_error webid_norole AWS_ROLE_ARN
check "web identity without AWS_ROLE_ARN says so" $? "$(err webid_norole)"

# ---- profiles -------------------------------------------------------------------------
probe profile_static AWS_PROFILE=static "${PROFILES[@]}"
[ $rc -eq 0 ] && [ "$(field profile_static kind)" = 3 ] &&
  [ "$(field profile_static access_key_id)" = AKIDPROFILESTATIC ] &&
  [ "$(field profile_static describe)" = "profile 'static' in $tmp/profiles/credentials" ]
check "profile with static keys" $? "$(err profile_static)"

probe profile_role AWS_PROFILE=role "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto"
[ $rc -eq 0 ] && [ "$(field profile_role kind)" = 4 ] && [ "$(field profile_role fetches)" = 1 ] &&
  grep -q '^access_key_id: ASIA' "$tmp/profile_role.out" &&
  grep -qF "assumed with profile 'src' in $tmp/profiles/credentials" "$tmp/profile_role.out"
check "profile role_arn + source_profile: AssumeRole at moto signed with the source's keys" $? "$(err profile_role)"

probe profile_chain AWS_PROFILE=chained "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto"
[ $rc -eq 0 ] && [ "$(field profile_chain kind)" = 4 ] && [ "$(field profile_chain fetches)" = 2 ]
check "a chain of two source_profile roles makes two AssumeRole calls" $? "$(err profile_chain)"

probe profile_webid AWS_PROFILE=webid "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto"
[ $rc -eq 0 ] && [ "$(field profile_webid kind)" = 5 ] && [ "$(field profile_webid session_token)" = yes ]
check "profile role_arn + web_identity_token_file" $? "$(err profile_webid)"

before=$(server_stat container)
probe profile_ecs AWS_PROFILE=ecs "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto" \
  AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$cs/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
[ $rc -eq 0 ] && [ "$(field profile_ecs kind)" = 4 ] && [ "$(server_stat container)" = $((before + 1)) ] &&
  [ "$(field profile_ecs fetches)" = 2 ]
check "profile credential_source = EcsContainer: container keys sign AssumeRole" $? "$(err profile_ecs)"

probe profile_cycle AWS_PROFILE=loop-a "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto"
one_line_error profile_cycle "cycle" "loop-"
check "a source_profile cycle is refused" $? "$(err profile_cycle)"

probe sts_refused AWS_PROFILE=role "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$moto_auth"
one_line_error sts_refused "STS AssumeRole at http://127.0.0.1:$moto_auth" "403 InvalidClientTokenId" "profile 'role'"
check "an STS refusal is one line with the STS error code" $? "$(err sts_refused)"

probe sts_down AWS_PROFILE=role "${PROFILES[@]}" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$closed"
one_line_error sts_down "STS AssumeRole at http://127.0.0.1:$closed" "3 attempts"
check "an STS that cannot be reached is named, after 3 attempts" $? "$(err sts_down)"

# ---- container credentials ---------------------------------------------------------------
before=$(server_stat container)
probe container_file AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$cs/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$tmp/container-token"
[ $rc -eq 0 ] && [ "$(field container_file kind)" = 6 ] &&
  [ "$(field container_file secret_sha256)" = "$(sha12 "$SERVER_SECRET")" ] &&
  [ "$(field container_file describe)" = "container credentials from http://127.0.0.1:$cs/creds" ] &&
  [ "$(server_stat container)" = $((before + 1)) ]
check "container credentials with AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" $? "$(err container_file)"

probe container_env AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$cs/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
[ $rc -eq 0 ] && [ "$(field container_env kind)" = 6 ] && [ "$(field container_env session_token)" = yes ]
check "container credentials with AWS_CONTAINER_AUTHORIZATION_TOKEN" $? "$(err container_env)"

probe container_401 AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$cs/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer wrong-token-never-printed"
one_line_error container_401 "container credentials from http://127.0.0.1:$cs/creds: HTTP 401" &&
  ! grep -q never-printed "$tmp/container_401.err"
check "a refused container token: HTTP 401, one line, without the token" $? "$(err container_401)"

probe container_host AWS_CONTAINER_CREDENTIALS_FULL_URI="http://198.51.100.7:$cs/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
one_line_error container_host "FULL_URI" "198.51.100.7" && [ "$ms" -lt 1000 ]
check "a FULL_URI over http to a host that is not allowed is refused without connecting" $? "$(err container_host)"

probe container_named AWS_CONTAINER_CREDENTIALS_FULL_URI="http://metadata.example:$cs/creds"
one_line_error container_named "metadata.example"
check "a FULL_URI over http to a host name other than localhost is refused" $? "$(err container_named)"

probe container_localhost AWS_CONTAINER_CREDENTIALS_FULL_URI="http://localhost:$cs/creds" \
  AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN"
[ $rc -eq 0 ] && [ "$(field container_localhost kind)" = 6 ]
check "a FULL_URI to http://localhost is allowed" $? "$(err container_localhost)"

# ---- IMDSv2 ---------------------------------------------------------------------------
token_before=$(server_stat imds_token); imds_before=$(server_stat imds)
probe imds AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$cs/"
[ $rc -eq 0 ] && [ "$(field imds kind)" = 7 ] &&
  [ "$(field imds describe)" = "EC2 instance metadata (IMDSv2) at http://127.0.0.1:$cs, role 'modelstream-node'" ] &&
  [ "$(server_stat imds_token)" = $((token_before + 1)) ] && [ "$(server_stat imds)" = $((imds_before + 1)) ] &&
  [ "$(server_stat imds_rejected)" = 0 ]
check "IMDSv2 from a loopback endpoint: token, role, credentials" $? "$(err imds)"

probe imds_disabled AWS_EC2_METADATA_DISABLED=true AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$blackhole"
one_line_error imds_disabled "no credentials: looked for AWS_ACCESS_KEY_ID" "AWS_EC2_METADATA_DISABLED" \
  "profile 'default' in $home/.aws/config (missing)" "MODELSTREAM_S3_ANONYMOUS=1" && [ "$ms" -lt 1000 ]
check "AWS_EC2_METADATA_DISABLED=true: 'no credentials' at once, listing what was looked for" $? \
  "${ms} ms: $(err imds_disabled)"

probe imds_closed AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$closed"
one_line_error imds_closed "no credentials" "http://127.0.0.1:$closed" "2 attempts"
check "IMDS on a closed port: 'no credentials' naming the endpoint" $? "$(err imds_closed)"

# A bound hang guard, not a timing measurement: 2 attempts of 1 s each, then the message.
probe imds_blackhole AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$blackhole"
one_line_error imds_blackhole "no credentials" "timed out" && [ "$ms" -lt 5000 ]
check "IMDS that never answers gives up after 2 attempts of 1 s" $? "${ms} ms: $(err imds_blackhole)"

probe imds_one AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$blackhole" \
  AWS_METADATA_SERVICE_TIMEOUT=0.3 AWS_METADATA_SERVICE_NUM_ATTEMPTS=1
one_line_error imds_one "timed out" "(1 attempt)" && [ "$ms" -lt 3000 ]
check "AWS_METADATA_SERVICE_TIMEOUT and _NUM_ATTEMPTS are obeyed" $? "${ms} ms: $(err imds_one)"

probe imds_bad_timeout AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$cs" AWS_METADATA_SERVICE_TIMEOUT=soon
one_line_error imds_bad_timeout AWS_METADATA_SERVICE_TIMEOUT
check "a malformed AWS_METADATA_SERVICE_TIMEOUT is named" $? "$(err imds_bad_timeout)"

# ---- refresh --------------------------------------------------------------------------
CONTAINER=(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$cs/creds" AWS_CONTAINER_AUTHORIZATION_TOKEN="$CONTAINER_TOKEN")

server_config '{"expires_in": 300}'
before=$(server_stat container)
probe refresh_window "${CONTAINER[@]}" -- --refresh-loop 3 0.1
keys=$(grep -c '^get .*access_key_id ASIASERVER' "$tmp/refresh_window.out")
distinct=$(sed -n 's/^get [0-9]*: access_key_id \([^ ]*\).*/\1/p' "$tmp/refresh_window.out" | sort -u | wc -l)
[ $rc -eq 0 ] && [ "$(server_stat container)" = $((before + 5)) ] && [ "$keys" = 3 ] && [ "$distinct" = 3 ] &&
  grep -q '^get 3: .* fetches 5$' "$tmp/refresh_window.out"
check "credentials expiring within the 600 s window are refreshed on every get (server counted 5)" $? \
  "$(cat "$tmp/refresh_window.out") $(err refresh_window)"

before=$(server_stat container)
probe refresh_small_window "${CONTAINER[@]}" MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=60 -- --refresh-loop 3 0.1
[ $rc -eq 0 ] && [ "$(server_stat container)" = $((before + 1)) ] && grep -q '^get 3: .* fetches 1$' "$tmp/refresh_small_window.out"
check "MODELSTREAM_CREDENTIALS_REFRESH_SECONDS=60: 300 s credentials are kept" $? "$(err refresh_small_window)"

server_config '{"expires_in": 603}'
before=$(server_stat container)
probe refresh_expiry "${CONTAINER[@]}" -- --refresh-loop 2 4
[ $rc -eq 0 ] && [ "$(server_stat container)" = $((before + 3)) ] && grep -q '^get 1: .* fetches 2$' "$tmp/refresh_expiry.out"
check "credentials are refreshed once fewer than 600 s remain (603 s, then 4 s later)" $? \
  "$(cat "$tmp/refresh_expiry.out") $(err refresh_expiry)"

server_config '{"expires_in": 3600}'
before=$(server_stat container)
probe refresh_none "${CONTAINER[@]}" -- --refresh-loop 3 0
[ $rc -eq 0 ] && [ "$(server_stat container)" = $((before + 1)) ]
check "fresh credentials are not fetched again" $? "$(err refresh_none)"

before=$(server_stat container)
probe refresh_forced "${CONTAINER[@]}" -- --refresh-loop 3 0 --force
[ $rc -eq 0 ] && [ "$(server_stat container)" = $((before + 1)) ] && grep -q '^get 3: .* fetches 1$' "$tmp/refresh_forced.out"
check "forced refreshes within a second of a fetch do not fetch again" $? "$(cat "$tmp/refresh_forced.out")"

before=$(server_stat container)
probe refresh_forced_later "${CONTAINER[@]}" -- --refresh-loop 1 1.2 --force
[ $rc -eq 0 ] && [ "$(server_stat container)" = $((before + 2)) ]
check "a forced refresh a second later fetches" $? "$(cat "$tmp/refresh_forced_later.out")"

# Credentials already expired, and the source now failing: the refresh's error comes back.
server_config '{"expires_in": 0}'
( sleep 0.5; server_config '{"status": 500}' ) &
changer=$!
probe refresh_failing "${CONTAINER[@]}" -- --refresh-loop 1 1.1
wait $changer
server_config '{"expires_in": 3600, "status": 0}'
one_line_error refresh_failing "container credentials from http://127.0.0.1:$cs/creds: HTTP 500"
check "a failed refresh of expired credentials returns the source's error" $? \
  "$(cat "$tmp/refresh_failing.out") $(err refresh_failing)"

# ---- secrets --------------------------------------------------------------------------
leaks=$(grep -F -e "$ENV_SECRET" -e "$PROFILE_SECRET" -e "$SERVER_SECRET" -e "$SERVER_SESSION" \
  -e "container-token-never-printed" -e "$WEB_TOKEN" -e "$WEB_TOKEN2" -e "wrong-token-never-printed" \
  -e "env-session" "$tmp/all-output")
[ -z "$leaks" ] && [ -s "$tmp/all-output" ]
check "no secret, session token or bearer token appears in any output" $? "$leaks"

finish
