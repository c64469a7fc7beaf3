"""Facts about the machine a benchmark ran on, for the RESULTS files (shared by bench/*.py)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (what `platform` knows where that is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def uptime() -> str:
    """`uptime`'s line: the load averages at the time."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
