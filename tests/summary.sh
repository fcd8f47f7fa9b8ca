#!/usr/bin/env bash
# Adds up the results of every test run of `make test` and prints the closing line.
# Usage: tests/summary.sh BUILD_DIR...
set -uo pipefail
passed=0; failed=0
for dir in "$@"; do
  if [ -f "$dir/unit-results.txt" ]; then
    p=$(awk '{s += $2} END {print s + 0}' "$dir/unit-results.txt")
    f=$(awk '{s += $3} END {print s + 0}' "$dir/unit-results.txt")
    passed=$((passed + p)); failed=$((failed + f))
  fi
  for log in "$dir"/crosscheck.log "$dir"/cli-tests.log "$dir"/stress.log "$dir"/valgrind.log "$dir"/s3fault.log "$dir"/s3-tests.log "$dir"/moto-tests.log "$dir"/creds-tests.log "$dir"/cache-tests.log "$dir"/netns-tests.log "$dir"/server-tests.log "$dir"/agent-tests.log \
             "$dir"/chart-tests.log "$dir"/image-tests.log "$dir"/e2e.log "$dir"/device-stress.log "$dir"/gpu-rehearsal.log "$dir"/python-tests.log "$dir"/vllm-tests.log; do
    [ -f "$log" ] || continue
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    [ -n "$line" ] || { failed=$((failed + 1)); continue; }
    passed=$((passed + $(awk '{print $1}' <<< "$line")))
    failed=$((failed + $(awk '{print $3}' <<< "$line")))
  done
done
echo "all tests: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
