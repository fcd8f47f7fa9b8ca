"""Helpers shared by the benchmark drivers (imported from their own directory)."""


def rss_bytes() -> int:
    """This process's resident set size now, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1
