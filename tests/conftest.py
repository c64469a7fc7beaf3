"""Shared fixtures: the tiny trained CLAP model, loaded through the real path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from helpers import TINY_MODEL

# No test may reach a model hub: a missing model must fail fast and clearly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Session fixtures are built before any per-test home exists: never let them touch the user's home.
os.environ["EARMARK_HOME"] = tempfile.mkdtemp(prefix="earmark-test-home-")


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


@pytest.fixture(scope="session")
def nonsense_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(train, held, label map): 5 and 8 files per class of two classes whose labels ("class A",
    "class B") the tiny model never read, plus noise. Read-only for tests."""
    import json

    from earmark import synth
    from helpers import labelled_folder

    root = tmp_path_factory.mktemp("fewshot")
    kinds = {"class_a": "beep", "class_b": "hum", "noise": "noise"}
    train = labelled_folder(
        root / "train", {c: [synth.make(k, 1.0, seed=s) for s in range(5)] for c, k in kinds.items()}
    )
    held = labelled_folder(
        root / "held", {c: [synth.make(k, 1.0, seed=50 + s) for s in range(8)] for c, k in kinds.items()}
    )
    (root / "map.json").write_text(json.dumps({"class_a": "class A", "class_b": "class B"}))
    return train, held, root / "map.json"


@pytest.fixture(scope="session")
def fitted_pack(
    nonsense_sets: tuple[Path, Path, Path], tiny_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``ab.pack.json``: a classifier pack fitted by `earmark fit` on ``nonsense_sets`` (labels class A,
    class B, noise; calibrated to precision 0.9). Read-only for tests."""
    from click.testing import CliRunner

    from earmark.cli import cli

    train, _, label_map = nonsense_sets
    out = tmp_path_factory.mktemp("pack") / "ab.pack.json"
    result = CliRunner().invoke(
        cli,
        [
            "fit",
            str(train),
            "-o",
            str(out),
            "-m",
            tiny_model,
            "--threads",
            "1",
            "--label-map",
            str(label_map),
            "--target-precision",
            "0.9",
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def served(fitted_pack: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real `earmark serve` on the tiny model for the session (added by the web feature).

    Small queue (capacity 4) for the overload test; a short live window for the browser's Live tab test;
    the few-shot pack ``fitted_pack`` served as ``ab``.
    """
    from helpers import ServerProcess

    server = ServerProcess(
        "--setting",
        "decode_workers",
        "1",
        "--setting",
        "max_queue",
        "3",
        "--setting",
        "live_window_s",
        "3",
        "--setting",
        "live_every_s",
        "1",
        "--pack",
        str(fitted_pack),
        home=tmp_path_factory.mktemp("served-home"),
    )
    yield server
    server.stop()


# --- library tests (issue 3): a generated sound library, made once per session ---


@pytest.fixture(scope="session")
def sound_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(root, manifest): >= 200 encoded clips of the tiny model's sounds, mixed formats, odd names,
    nested folders and a few corrupt files. Read-only for tests: copy it before changing anything."""
    from library_data import make_library

    root = tmp_path_factory.mktemp("sound-library") / "library"
    root.mkdir()
    return root, make_library(root)


@pytest.fixture(scope="session")
def tagged_library(sound_library, classifier, tmp_path_factory):  # type: ignore[no-untyped-def]
    """(root, manifest, db path): the sound library tagged once with the tiny model's six labels."""
    from earmark.library import TagOptions, tag_paths
    from earmark.store import Database
    from helpers import LABELS

    root, manifest = sound_library
    db_path = tmp_path_factory.mktemp("tagged") / "library.db"
    db = Database(db_path)
    events = list(tag_paths(db, [root], TagOptions(labels=tuple(LABELS)), classifier))
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # so copying the one file copies everything
    db.close()
    return root, manifest, db_path, events


@pytest.fixture
def library_copy(tagged_library, tmp_path):  # type: ignore[no-untyped-def]
    """(root, manifest, db path): a private copy of the tagged library and its database to change."""
    import shutil

    from earmark.store import Database

    root, manifest, db_path, _ = tagged_library
    shutil.copytree(root, tmp_path / "library")
    shutil.copy(db_path, tmp_path / "library.db")
    db = Database(tmp_path / "library.db")
    with db.transaction() as c:  # the copy's records point at the copy
        c.execute(
            "UPDATE lib_files SET path = ? || substr(path, ?)",
            (str(tmp_path / "library"), len(str(root)) + 1),
        )
    db.close()
    return tmp_path / "library", manifest, tmp_path / "library.db"


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
