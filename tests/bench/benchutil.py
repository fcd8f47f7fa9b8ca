"""Helpers shared by the benchmark drivers (imported from their own directory)."""

import os
import struct


def rss_bytes() -> int:
    """This process's resident set size now, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def data_bytes(path: str) -> int:
    """Bytes of tensor data in a local safetensors file: its size less the 8-byte length and
    the header."""
    with open(path, "rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
    return os.path.getsize(path) - 8 - header_length
