#!/usr/bin/env python3
"""Prints "<sha256>  <name>" for every tensor of safetensors files, read with Python's
safetensors.safe_open (which mmaps the file), sorted, for comparison with
`modelstream stream --checksum | sort`. Usage: st_checksums.py FILE..."""
import hashlib
import sys

from safetensors import safe_open

lines = []
for path in sys.argv[1:]:
    with safe_open(path, framework="numpy") as f:
        for name in f.keys():
            lines.append("%s  %s" % (hashlib.sha256(f.get_tensor(name).tobytes()).hexdigest(), name))
print("\n".join(sorted(lines)))
