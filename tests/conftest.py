"""Shared fixtures: the tiny trained CLAP model, loaded through the real path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import TINY_MODEL

# No test may reach a model hub: a missing model must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own EARMARK_HOME: no test reads or writes the user's."""
    home = tmp_path_factory.mktemp("earmark-home")
    monkeypatch.setenv("EARMARK_HOME", str(home))
    monkeypatch.delenv("EARMARK_MODEL", raising=False)
    monkeypatch.delenv("EARMARK_DB", raising=False)
    for var in ("HF_HOME", "HF_HUB_CACHE"):  # never the user's model cache
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Folder of the tiny CLAP test model (knows beep, hum, noise, clicks, chirp, silence)."""
    assert (TINY_MODEL / "model.safetensors").is_file(), "run: python scripts/make_tiny_clap.py"
    return str(TINY_MODEL)


@pytest.fixture(scope="session")
def classifier(tiny_model: str):  # type: ignore[no-untyped-def]
    """One Classifier on the tiny model for the whole session (threads=1 keeps tests predictable)."""
    from earmark import Classifier

    return Classifier(tiny_model, threads=1)


# Tests run on the exact PyTorch backend unless they name another (EARMARK_TEST_BACKEND picks
# another for the whole suite). Set at import, so session-scoped fixtures get it too.
os.environ["EARMARK_BACKEND"] = os.environ.get("EARMARK_TEST_BACKEND", "torch")


@pytest.fixture(autouse=True)
def _pinned_backend(monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test starts on the suite's backend: ``auto`` would measure every backend on a model's
    first use in each test's fresh EARMARK_HOME (seconds per test); tests/test_backends.py covers it."""
    name = os.environ.get("EARMARK_TEST_BACKEND", "torch")
    monkeypatch.setenv("EARMARK_BACKEND", name)
    return name
