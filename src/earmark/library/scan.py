"""Finding and fingerprinting files: the walk, content hashes, stat facts."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..audio.sniff import is_candidate

__all__ = ["PARTIAL_SUFFIX", "FileStat", "content_hash", "ordered_map", "stat_file", "walk_audio"]

T = TypeVar("T")
R = TypeVar("R")

# temporary names the filing code writes; never tagged, removed by recovery
PARTIAL_SUFFIX = ".earmark-partial"
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class FileStat:
    """What ``stat`` says about a file: enough to tell that it has not changed."""

    path: str
    size: int
    mtime_ns: int


def content_hash(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes (``sha256sum`` gives the same)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def stat_file(path: str) -> FileStat:
    st = os.stat(path, follow_symlinks=False)
    return FileStat(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)


def walk_audio(roots: Iterable[str | os.PathLike[str]], *, exclude: Iterable[Path] = ()) -> Iterator[str]:
    """Absolute paths of audio candidates under ``roots``, sorted, each once.

    Folders are walked recursively without following symlinks; symlinked files
    are skipped too (the file they point at is tagged where it lives). A root
    that is a file is taken as is. Folders in ``exclude`` (the sort-into
    folder) and the filer's temporary files are left out.

    Args:
        roots: files or folders.
        exclude: folders whose contents are never listed.
    """
    skip = {os.path.abspath(p) for p in exclude}
    seen: set[str] = set()
    for root in roots:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            if root not in seen and not os.path.islink(root):
                seen.add(root)
                yield root
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if os.path.join(folder, d) not in skip)
            for name in sorted(files):
                path = os.path.join(folder, name)
                if path in seen or name.endswith(PARTIAL_SUFFIX) or os.path.islink(path):
                    continue
                seen.add(path)
                if is_candidate(path):
                    yield path


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool with at most ``ahead`` results pending, in input order.

    Bounded so a million-file walk never queues a million futures (or decoded clips).
    """
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="earmark-lib") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
