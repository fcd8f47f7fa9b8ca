# tests/lib.sh - what the shell suites share: the TAP-style result lines, the closing
# "N passed, M failed" line that CI reads, and small waits. Sourced by each suite:
#   . "$(dirname "$0")/lib.sh"
# A suite may redefine any of these after sourcing (cli.sh's fail also shows stderr).
# shellcheck shell=bash
passed=0
failed=0

pass() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "not ok - $1${2:+: $2}"; failed=$((failed + 1)); }
skip() { echo "ok - $1 # SKIP $2"; }

# Prints the closing line and exits: 0 when nothing failed.
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

# A TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# until_ok TIMEOUT_S COMMAND...: true once COMMAND succeeds, polling every 0.1 s.
until_ok() {
  local deadline=$((SECONDS + $1))
  shift
  while ! "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# wait_for_file TIMEOUT_S FILE: true once FILE exists and is not empty.
wait_for_file() { until_ok "$1" test -s "$2"; }
