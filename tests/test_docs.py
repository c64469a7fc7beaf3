"""Docs stay true: the CLI reference matches the commands' --help."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_cli_reference_is_current() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
