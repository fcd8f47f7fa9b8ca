#!/usr/bin/env bash
# Regenerates the SigV4 test vectors with botocore and compares them with the committed
# tests/fixtures/sigv4_vectors.json, so that a change in botocore's signing, or an edit
# to the generator that was not followed by regenerating, is noticed. Skips (exit 0)
# where botocore is not installed; exits 1 on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."

committed=tests/fixtures/sigv4_vectors.json
if ! python3 -c 'import botocore' >/dev/null 2>&1; then
  echo "check_sigv4_vectors: skipped (botocore is not installed; pip install botocore)"
  exit 0
fi

fresh=$(mktemp "${TMPDIR:-/tmp}/sigv4_vectors.XXXXXX")
trap 'rm -f "$fresh"' EXIT
python3 tests/support/sigv4_vectors.py --output "$fresh"

if ! diff -u "$committed" "$fresh"; then
  echo "check_sigv4_vectors: $committed differs from what botocore" \
       "$(python3 -c 'import botocore; print(botocore.__version__)') produces now (diff above)."
  echo "  If the generator changed on purpose, regenerate and commit the result:"
  echo "    python3 tests/support/sigv4_vectors.py --output $committed"
  echo "  If botocore changed, find out why before regenerating: our signer must change too."
  exit 1
fi
echo "check_sigv4_vectors: ok ($(grep -c '"canonical_request"' "$committed") vectors match botocore" \
     "$(python3 -c 'import botocore; print(botocore.__version__)'))"
