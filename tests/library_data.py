"""A generated sound library for the library tests: real encoded files of the tiny model's sounds.

``make_library(root)`` writes 216 clips (6 sounds x 36: wav, mp3, ogg, flac,
m4a, opus, aiff, webm), nested folders, unicode and space-filled names, a few
long multi-window clips, plus corrupt files, a wav hidden behind a ``.dat``
name, and non-audio files. Encoding runs ffmpeg in parallel; short clips keep
it to a few seconds. The manifest says what each file is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from earmark import synth
from helpers import CODECS, LABELS

FORMATS = [".wav", ".mp3", ".ogg", ".flac", ".m4a", ".opus", ".aiff", ".webm"]
FOLDERS = ["", "field recordings/2019", "Café ünïcødé", "日本語 フォルダ/deep/er", "spaces  in  names"]
CORRUPT = {  # name -> bytes: each must come out as status "error"
    "broken/random bytes.mp3": os.urandom(4000),
    "broken/empty.wav": b"",
    "broken/text pretending.flac": b"this is not audio at all\n" * 50,
    "broken/header only.wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
}
IGNORED = {"notes/readme.txt": b"field notes\n", "notes/cover.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 100}


def _jobs(root: Path) -> list[tuple[str, str, float, int]]:
    jobs = []
    for i in range(216):
        kind = LABELS[i % len(LABELS)]
        ext = FORMATS[(i // len(LABELS)) % len(FORMATS)]
        folder = FOLDERS[i % len(FOLDERS)]
        seconds = 12.0 if i % 50 == 7 else 1.0 + (i % 3) * 0.5  # a few multi-window clips
        name = f"{kind} take {i:03d}{ext}" if i % 2 else f"{kind}_{i:03d}{ext}"
        jobs.append((str(Path(folder) / name), kind, seconds, i))
    return jobs


def _encode_group(root: Path, group: list[tuple[str, str, float, int]], tmp: Path) -> None:
    """One ffmpeg process for several clips (inputs from raw files, one output each): process
    start-up dominates encoding such short clips."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    outs: list[str] = []
    for n, (rel, kind, seconds, seed) in enumerate(group):
        raw = tmp / f"{seed}.f32"
        raw.write_bytes(synth.make(kind, seconds, seed=seed).tobytes())
        cmd += ["-f", "f32le", "-ar", str(synth.RATE), "-ac", "1", "-i", str(raw)]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        outs += ["-map", f"{n}:a", *CODECS[path.suffix], str(path)]
    subprocess.run(cmd + outs, check=True)


def make_library(root: Path) -> dict[str, str]:
    """Write the library under ``root``; returns {relative path: sound kind or 'error'} (audio files only)."""
    manifest: dict[str, str] = {}
    jobs = _jobs(root)
    groups = [jobs[i : i + 18] for i in range(0, len(jobs), 18)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool,
    ):
        list(pool.map(lambda g: _encode_group(root, g, Path(tmp)), groups))
    manifest.update({rel: kind for rel, kind, _, _ in jobs})
    # a wav whose name does not say audio: found by content
    shutil.copy(root / jobs[0][0], root / "field recordings" / "take without extension.dat")
    manifest["field recordings/take without extension.dat"] = jobs[0][1]
    for rel, data in {**CORRUPT, **IGNORED}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest.update({rel: "error" for rel in CORRUPT})
    (root.parent / f"{root.name}.manifest.json").write_text(json.dumps(manifest, ensure_ascii=False))
    return manifest


def tree_hashes(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (to prove a tree did not change)."""
    from earmark.library.scan import content_hash

    return {str(p.relative_to(root)): content_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}
