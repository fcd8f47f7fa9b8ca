#!/usr/bin/env bash
# Runs the Criterion unit tests of one build directory, twice when we may:
#   1. with no huge pages reserved (the arena falls back to transparent or small pages);
#   2. with 2 MiB huge pages reserved through vm.nr_hugepages (the MAP_HUGETLB path),
#      restoring the previous value afterwards, also on failure or interrupt.
# Usage: tests/run-unit.sh BUILD_DIR TEST_BINARY...   (TEST_ONLY=engine picks one module)
# Writes BUILD_DIR/unit-results.txt: one "name passed failed" line per run, for summary.sh.
set -uo pipefail

build=$1; shift
results=$build/unit-results.txt
: > "$results"

hugepages_file=/proc/sys/vm/nr_hugepages
saved_hugepages=$(cat "$hugepages_file" 2>/dev/null || echo 0)
restore() { [ -w "$hugepages_file" ] && echo "$saved_hugepages" > "$hugepages_file" 2>/dev/null; }
trap restore EXIT
trap 'restore; exit 130' INT TERM

run_all() {
  local pass=$1; shift
  for bin in "$@"; do
    local name; name=$(basename "$bin")
    if [ -n "${TEST_ONLY:-}" ] && [ "$name" != "test_${TEST_ONLY}" ]; then continue; fi
    local log="$build/$name.$pass.log"
    echo "== $name ($pass)"
    "$bin" --jobs 2 2>&1 | tee "$log" | grep -vE '^\[----\]|^$' | tail -n 30
    local rc=${PIPESTATUS[0]}
    local line; line=$(grep -E 'Synthesis: Tested: ' "$log" | tail -1)
    local tested passing
    tested=$(sed -E 's/.*Tested: *([0-9]+).*/\1/' <<< "$line")
    passing=$(sed -E 's/.*Passing: *([0-9]+).*/\1/' <<< "$line")
    [ -n "$tested" ] || { tested=1; passing=0; }
    # A binary that crashed before its synthesis, or exited non-zero, counts as failing.
    if [ "$rc" -ne 0 ] && [ "$passing" = "$tested" ]; then passing=$((tested - 1)); fi
    echo "$name.$pass $passing $((tested - passing))" >> "$results"
  done
}

# A leak found by LeakSanitizer in a test's child process must fail that test: without
# abort_on_error the child still exits 0 and Criterion counts it as passing.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}abort_on_error=1
export MS_TEST_HUGEPAGES=none
echo 0 > "$hugepages_file" 2>/dev/null || true
run_all small-pages "$@"

# 1 GiB of huge pages covers the largest arena the tests map.
if [ -w "$hugepages_file" ] && echo 512 > "$hugepages_file" 2>/dev/null &&
   [ "$(cat "$hugepages_file")" -ge 64 ]; then
  export MS_TEST_HUGEPAGES=reserved
  run_all huge-pages "$@"
else
  echo "== huge pages cannot be reserved here (not root?); skipping the MAP_HUGETLB pass"
fi

failed=$(awk '{f += $3} END {print f + 0}' "$results")
passed=$(awk '{p += $2} END {print p + 0}' "$results")
echo "unit tests ($build): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
