"""Where earmark keeps its files: ``EARMARK_HOME`` and the folders under it.

Read from the environment on every call (not at import), so tests and
long-lived processes see a changed ``EARMARK_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["earmark_home", "hub_cache"]


def earmark_home() -> Path:
    """earmark's own folder: ``$EARMARK_HOME``, else ``$XDG_DATA_HOME/earmark`` or ``~/.local/share/earmark``."""
    if env := os.environ.get("EARMARK_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "earmark"


def hub_cache() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``, else ``$EARMARK_HOME/hub``."""
    # read the environment now, not huggingface_hub's import-time constants
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    if hf_home := os.environ.get("HF_HOME"):
        return Path(hf_home).expanduser() / "hub"
    return earmark_home() / "hub"
