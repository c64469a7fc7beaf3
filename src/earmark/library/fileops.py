"""Careful file primitives: copy with fsync and hash check, place without overwriting.

Nothing here touches the database; :mod:`earmark.library.journal` records each
step before these run. The rules that make a crash at any instant harmless:

- a copy is written to a temporary ``.earmark-partial`` name beside the
  destination, fsynced, re-read and hashed, and only then linked into place;
- placing never replaces: ``os.link`` fails if the name exists (``rename``
  would silently overwrite), with a checked rename only where links are not
  supported;
- a source is deleted only after its copy is in place and verified.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

from ..errors import FilingError
from .scan import PARTIAL_SUFFIX, content_hash

__all__ = [
    "NameTaken",
    "copy_verified",
    "fsync_dir",
    "partial_path",
    "place",
    "remove_quietly",
    "same_filesystem",
]

_BLOCK = 1 << 20


class NameTaken(Exception):
    """The destination name appeared since it was planned; pick another."""


def partial_path(dst: str, op_id: int) -> str:
    """The temporary name a copy is written under (hidden, beside the destination)."""
    d = Path(dst)
    return str(d.with_name(f".{d.name}.{op_id}{PARTIAL_SUFFIX}"))


def fsync_dir(folder: str) -> None:
    """Make a folder's new or removed entries durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the entry is still written
    finally:
        os.close(fd)


def same_filesystem(path: str, folder: str) -> bool:
    return os.stat(path).st_dev == os.stat(folder).st_dev


def copy_verified(src: str, tmp: str, expected_hash: str) -> None:
    """Copy ``src`` to ``tmp``, fsync it, then re-read and compare hashes.

    Raises:
        FilingError: the source changed since it was hashed, or the copy reads
            back differently; ``tmp`` is removed, ``src`` untouched.
    """
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "xb") as fout:
            while block := fin.read(_BLOCK):
                h.update(block)
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
        if h.hexdigest() != expected_hash:
            raise FilingError(f"{src} changed since it was tagged; re-run `earmark tag` first")
        if content_hash(tmp) != expected_hash:
            raise FilingError(f"the copy of {src} at {tmp} reads back differently (disk error?)")
    except BaseException:
        remove_quietly(tmp)
        raise


def place(path: str, dst: str) -> None:
    """Give ``path``'s file the name ``dst`` too, never replacing an existing file.

    ``path`` usually keeps its name (a hard link); where links are not supported
    it is renamed instead, so callers remove ``path`` with ``remove_quietly``.

    Raises:
        NameTaken: ``dst`` exists.
        OSError: anything else (cross-device, read-only, permissions...).
    """
    try:
        os.link(path, dst)
    except FileExistsError:
        raise NameTaken(dst) from None
    except OSError as ex:
        if ex.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # no hard links here (FAT, some network shares): rename after a check; the
        # window between the two is the only place a racing writer could lose a file
        if os.path.lexists(dst):
            raise NameTaken(dst) from None
        os.rename(path, dst)
    fsync_dir(os.path.dirname(dst))


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
