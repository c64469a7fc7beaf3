"""Filesystem helpers for the library tests: a read-only folder and a folder on another filesystem."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(kind: str, path: Path, options: str) -> bool:
    """Mount a small tmpfs (needs root, as in CI); False where mounting is not allowed."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", kind, "-o", options, kind, str(path)], capture_output=True)
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def read_only_folder(tmp: Path) -> Iterator[Path]:
    """A folder nobody can write into: chmod for normal users; a read-only tmpfs for root (which
    ignores permission bits)."""
    path = tmp / "read-only"
    if os.geteuid() != 0:
        path.mkdir()
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if not _mount("tmpfs", path, "ro,size=1m"):
        pytest.skip("running as root without permission to mount a read-only tmpfs")
    try:
        yield path
    finally:
        _umount(path)


@contextmanager
def other_filesystem(tmp: Path, size_mb: int = 512) -> Iterator[Path]:
    """A fresh folder on a different filesystem than ``tmp`` (/dev/shm, else a mounted tmpfs)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp).st_dev:
        path = shm / f"earmark-test-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    path = tmp / "other-fs"
    if not _mount("tmpfs", path, f"size={size_mb}m"):
        pytest.skip("no second filesystem here (no /dev/shm and no permission to mount a tmpfs)")
    try:
        yield path
    finally:
        _umount(path)
