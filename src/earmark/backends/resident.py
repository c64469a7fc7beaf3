"""Give back the resident pages of read-only model files a runtime keeps mapped.

OpenVINO's CPU plugin maps the compiled model's blob (or the IR's ``.bin``) read-only,
copies the weights into its own layouts while it compiles and on each stream's first
run, and keeps the mapping for the model's life. Every page it read stays counted in
the server's resident memory: 109 MiB for the full-size audio tower, on top of the
plugin's own copies (bench/RESULTS.md, "Serving memory"). After each stream has run
once, the plugin reads few of those pages again (5 MiB measured), so they are dropped
with ``madvise(MADV_DONTNEED)``; a page read later comes back from the file, unchanged,
because the mapping is shared and read-only (no private copy can be lost). Linux only;
elsewhere, and on any failure, nothing is dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from pathlib import Path

__all__ = ["drop_mapped_pages"]

log = logging.getLogger("earmark")

_MADV_DONTNEED = 4


def drop_mapped_pages(folder: Path) -> int:
    """Drop the resident pages of read-only shared mappings of files under ``folder``; bytes covered."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        ranges = _read_only_ranges(Path("/proc/self/maps").read_text(), folder.resolve())
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        done = 0
        for start, end in ranges:
            if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
                done += end - start
        return done
    except (OSError, AttributeError, ValueError) as ex:  # no /proc, no libc: keep the pages
        log.debug("mapped model pages kept: %s", ex)
        return 0


def _read_only_ranges(maps: str, folder: Path) -> list[tuple[int, int]]:
    """Address ranges of ``r--s`` mappings (read-only, shared) of files under ``folder``."""
    out = []
    prefix = str(folder).rstrip("/") + "/"
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[1] != "r--s" or not parts[5].startswith(prefix):
            continue
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        out.append((lo, hi))
    return out
