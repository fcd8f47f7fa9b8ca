#!/usr/bin/env bash
# The source checks of STYLE.md: lib/ never uses the unbounded string functions, never
# prints and never exits; nothing uses atoi.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
banned='\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets)[[:space:]]*\('
silent='\b(printf|fprintf|puts|fputs|perror|exit|abort|_exit)[[:space:]]*\('

check() {
  local what=$1 pattern=$2; shift 2
  local hits
  hits=$(grep -rnE "$pattern" "$@" --include='*.c' --include='*.h' | grep -vE '^\S+:[0-9]+:\s*(\*|//)')
  if [ -n "$hits" ]; then
    echo "style-check: $what:"
    echo "$hits" | sed 's/^/  /'
    status=1
  fi
}
check "unbounded or unsafe string functions" "$banned" lib cmd
check "the library must not print or exit" "$silent" lib
# Every source file opens with a comment saying what it is for.
for f in $(git ls-files 'lib/*.[ch]' 'cmd/*.[ch]' 2>/dev/null || find lib cmd -name '*.[ch]'); do
  head -1 "$f" | grep -q '^/\*' || { echo "style-check: $f does not open with a comment"; status=1; }
done
[ $status -eq 0 ] && echo "style-check: ok"
exit $status
