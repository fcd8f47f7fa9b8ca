#!/usr/bin/env bash
# The device stage under the build's sanitizer (ThreadSanitizer in check-sanitizers): the
# command streams one model to the stand-in GPU (build/tests/libfakecuda.so, whose copies
# run on their own threads, slowed down so that they overlap the reads) through a large
# ring, a ring smaller than the model and registered pages, and must print the host path's
# checksums each time with no sanitizer report (which makes the command exit non-zero).
#
# Usage: tests/device_stress.sh BUILD_DIR
set -u
build=$(cd "${1:?usage: tests/device_stress.sh BUILD_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-devstress-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"

"$build/mkmodel" --seed 7 --small-count 800 --small-max-bytes 20000 --large-count 4 \
  --large-bytes 900K "$tmp/m.safetensors" >/dev/null || exit 1
"$build/modelstream" stream --checksum --quiet "$tmp/m.safetensors" >"$tmp/host.sums" || exit 1
for flags in "" "--memory-limit 1M --concurrency 8" "--deliver mapped"; do
  # shellcheck disable=SC2086 # split on purpose
  MODELSTREAM_CUDA_DRIVER=$build/tests/libfakecuda.so FAKE_CUDA_COPY_DELAY_US=100 \
    "$build/modelstream" stream --checksum --quiet --device cuda:0 $flags \
    "$tmp/m.safetensors" >"$tmp/dev.sums" 2>"$tmp/err"
  rc=$?
  if [ $rc -eq 0 ] && cmp -s "$tmp/host.sums" "$tmp/dev.sums"; then
    pass "device stage (${flags:-staged}): the host path's checksums, no sanitizer report"
  else
    fail "device stage (${flags:-staged})" "exit $rc; $(grep -m1 -E 'WARNING|ERROR|modelstream:' "$tmp/err")"
  fi
done
finish
