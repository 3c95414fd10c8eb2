"""Memory readings of the current process for the benches' child processes."""

from __future__ import annotations

import resource
from pathlib import Path


def _status_mb(field: str) -> float | None:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return None


def peak_rss_mb() -> float:
    """This process's own peak resident set size, in MB.

    VmHWM, not getrusage's ru_maxrss: on Linux ru_maxrss survives fork and exec, so a child started by a parent
    that had grown (the bench's parent runs moto in-process) would report the parent's peak, not its own."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's current resident set size (VmRSS), in MB."""
    current = _status_mb("VmRSS")
    return current if current is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
