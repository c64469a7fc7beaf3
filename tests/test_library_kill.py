"""kill -9 at random points, then resume: nothing lost, duplicated or half-written.

Real subprocesses (``python -m earmark tag ... --move``) are killed with SIGKILL
in 10 runs, each kind of moment covered more than once: while the model loads
and tags, while files are being moved, while undo puts them back, and during
the copy of a 200 MB file to another filesystem. After each kill the original files must all still exist somewhere;
after each resume the multiset of file hashes in source + destination must be
exactly the original one, with no ``.earmark-partial`` leftovers, and the
database consistent with the disk. Kill times come from a seeded RNG
(``EARMARK_KILL_SEED``) so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from earmark import synth
from earmark.library.scan import content_hash
from helpers import LABELS, ROOT, TINY_MODEL, encode
from library_data import tree_hashes
from library_fs import other_filesystem

SEED = int(os.environ.get("EARMARK_KILL_SEED", "20260101"))


class Runner:
    """Starts earmark commands as real processes and kills them at chosen moments."""

    def __init__(self, tmp: Path, db: Path) -> None:
        self.tmp, self.db = tmp, db
        self.env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
        self.n = 0

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.n += 1
        log = self.tmp / f"stderr-{self.n}.txt"
        cmd = [sys.executable, "-m", "earmark", *args, "--db", str(self.db)]
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        return proc, log

    def run(self, *args: str) -> str:
        proc, log = self.start(*args)
        assert proc.wait(timeout=120) == 0, log.read_text()
        return log.read_text()

    def kill_when(self, args: tuple[str, ...], ready: Callable[[], bool], delay_s: float) -> bool:
        """Start, wait until ``ready()`` (progress seen in the database), sleep ``delay_s``, SIGKILL.

        Progress, not wall time, picks the moment, so the kills land mid-run on a fast
        machine and a slow one alike. Returns True if the process was killed mid-run.
        """
        proc, log = self.start(*args)
        deadline = time.monotonic() + 120
        while proc.poll() is None and not ready() and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay_s)
        if proc.poll() is not None:
            assert proc.returncode == 0, log.read_text()
            return False
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True

    def count(self, sql: str) -> int:
        """A number from the database as the running process left it (0 before it exists)."""
        if not self.db.exists():
            return 0
        try:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
            try:
                return int(conn.execute(sql).fetchone()[0] or 0)
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return 0  # tables not created yet


TAGGED = "SELECT count(*) FROM lib_files WHERE status IS NOT NULL"
OPS = "SELECT count(*) FROM lib_ops WHERE run_id=(SELECT max(id) FROM lib_runs)"


def tag_args(src: Path, out: Path) -> tuple[str, ...]:
    return (
        "tag",
        str(src),
        "-l",
        ",".join(LABELS),
        "-m",
        str(TINY_MODEL),
        "--threads",
        "1",
        "--sort-into",
        str(out),
        "--move",
    )


def leftovers(*roots: Path) -> list[Path]:
    return [p for r in roots if r.exists() for p in r.rglob("*") if ".earmark-" in p.name]


def nothing_lost(original: dict[str, str], *roots: Path) -> None:
    """True at any instant, even right after a kill: every original file is somewhere, whole."""
    present = {h for r in roots if r.exists() for p, h in tree_hashes(r).items() if ".earmark-" not in p}
    assert set(original.values()) <= present


def exactly_original(original: dict[str, str], src: Path, out: Path) -> None:
    """After a completed run: the same files, each once, no temporary files."""
    assert Counter(h for r in (src, out) if r.exists() for h in tree_hashes(r).values()) == Counter(
        original.values()
    )
    assert not leftovers(src, out)


def db_consistent(db: Path) -> None:
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM lib_ops WHERE state='planned'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM lib_runs WHERE state='running'").fetchone()[0] == 0
    for path, digest in conn.execute("SELECT path, content_hash FROM lib_files WHERE status<>'error'"):
        assert os.path.isfile(path) and content_hash(path) == digest, path
    for path, digest in conn.execute(
        "SELECT p.path, f.content_hash FROM lib_placements p JOIN lib_files f ON f.id=p.file_id"
    ):
        assert content_hash(path) == digest, path
    conn.close()


def undo_all(runner: Runner, rng: random.Random, kill: bool) -> None:
    """Undo every tag run that moved files, newest first; optionally kill -9 the first undo midway."""
    conn = sqlite3.connect(runner.db)
    runs = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT run_id FROM lib_ops o JOIN lib_runs r ON r.id=o.run_id"
            " WHERE o.state='done' AND r.kind='tag' ORDER BY run_id DESC"
        )
    ]
    conn.close()
    if kill and runs:
        n = runner.count("SELECT count(*) FROM lib_ops WHERE state='done'") // 2
        target = rng.randint(0, max(0, n - 1))
        runner.kill_when(("undo", *map(str, runs)), lambda: runner.count(OPS) > target, rng.uniform(0, 0.01))
    if runs:
        runner.run("undo", *map(str, runs))


def big_wav(path: Path, junk_mb: int = 200) -> None:
    """A 200 MB wav that decodes in milliseconds: a sparse JUNK chunk before 1 s of beep."""
    pcm = (synth.make("beep", 1.0, seed=3) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 48000, 96000, 2, 16)
    junk = junk_mb * 1024 * 1024
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + junk + 8 + len(pcm)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"JUNK" + struct.pack("<I", junk))
        f.seek(junk, 1)
        f.write(b"data" + struct.pack("<I", len(pcm)) + pcm)


def small_library(sound_library: tuple[Path, dict[str, str]], dest: Path, n: int = 36) -> None:
    root, manifest = sound_library
    picked = [rel for i, rel in enumerate(manifest) if i % 6 == 0][: n - 2] + [
        r for r in manifest if "broken" in r
    ][:2]
    for rel in picked:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)


@pytest.mark.slow
@pytest.mark.kill
def test_kill_9_at_random_points_then_resume(sound_library, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    src, out = tmp_path / "src", tmp_path / "out"
    small_library(sound_library, src)
    original = tree_hashes(src)
    runner = Runner(tmp_path, tmp_path / "library.db")
    kills = 0
    n = len([h for rel, h in original.items() if "broken" not in rel])
    # 1. three kills in a row while the model loads and tags (each run resumes the previous one)
    for _ in range(3):
        target = rng.randint(min(runner.count(TAGGED), n), n)  # a resumed run may already be past n
        kills += runner.kill_when(
            tag_args(src, out), lambda t=target: runner.count(TAGGED) >= t, rng.uniform(0, 0.02)
        )
        nothing_lost(original, src, out)
    runner.run(*tag_args(src, out))
    exactly_original(original, src, out)
    db_consistent(runner.db)
    undo_all(runner, rng, kill=False)
    assert tree_hashes(src) == original
    # 2. four kills while files are moved (tagging is stored now) and two while undo puts them back
    for i in range(4):
        target = rng.randint(0, n - 1)
        kills += runner.kill_when(
            tag_args(src, out), lambda t=target: runner.count(OPS) > t, rng.uniform(0, 0.01)
        )
        nothing_lost(original, src, out)
        runner.run(*tag_args(src, out))
        exactly_original(original, src, out)
        db_consistent(runner.db)
        undo_all(runner, rng, kill=i % 2 == 0)
        assert tree_hashes(src) == original and not leftovers(src, out)
        db_consistent(runner.db)
    assert kills >= 6, f"only {kills} of 7 runs were killed mid-run (seed {SEED})"


@pytest.mark.slow
@pytest.mark.kill
def test_kill_9_during_a_large_cross_filesystem_copy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED + 1)
    src = tmp_path / "src"
    src.mkdir()
    big_wav(src / "huge field recording.wav")
    for i, kind in enumerate(("hum", "clicks")):
        encode(synth.make(kind, 1.5, seed=i), src / f"small {kind}.ogg")
    original = tree_hashes(src)
    runner = Runner(tmp_path, tmp_path / "library.db")
    with other_filesystem(tmp_path) as other:
        out = other / "out"
        mid_copy = 0
        for _ in range(3):
            proc, log = runner.start(*tag_args(src, out))
            while not leftovers(out) and proc.poll() is None:
                time.sleep(0.002)  # wait until a copy is being written
            time.sleep(rng.uniform(0.0, 0.05))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                mid_copy += bool(leftovers(out))
            nothing_lost(original, src, out)
            runner.run(*tag_args(src, out))
            exactly_original(original, src, out)
            db_consistent(runner.db)
            undo_all(runner, rng, kill=False)
            assert tree_hashes(src) == original and not leftovers(src, out)
        assert mid_copy >= 2, "the kills missed the copies"
