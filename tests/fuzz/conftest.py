"""Fuzzing lane: collected only when EARMARK_FUZZ_SECONDS is set (``make fuzz``, ``make fuzz-ci``).

The whole budget is shared by the fuzz targets; each runs Hypothesis searches
back to back until its share is spent. A crash kills pytest (non-zero exit), a
hang trips the per-example watchdog (faulthandler prints every thread and exits
non-zero), and an exception outside a target's allowed types fails the test
with the smallest input Hypothesis can find.
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("EARMARK_FUZZ_SECONDS") else ["test_*.py"]
