"""From an upload to something a decode worker can read: bytes, or a private temporary file.

Small uploads travel to the worker as bytes; larger ones are copied to a
temporary file that is deleted when the request ends, so a full queue of big
uploads sits on disk, not in memory. The client's file name is only ever a
display name, never a path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import PurePath
from typing import Any

from ..audio.sniff import not_audio_kind
from ..errors import AudioError
from .decoding import Data
from .errors import NotAudio

__all__ = ["display_name", "source_from_bytes", "upload_source"]

IN_MEMORY_BYTES = 1 << 20
_CHUNK = 1 << 20


def display_name(filename: str | None, default: str = "upload") -> str:
    """A safe name to show: the last path component, printable, at most 120 characters."""
    name = PurePath((filename or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable())[:120]
    return name or default


def source_from_bytes(data: bytes, name: str) -> bytes:
    """Check that ``data`` may be audio; returns it.

    Raises:
        AudioError: the upload is empty.
        NotAudio: the upload is recognisably something else (415).
    """
    if not data:
        raise AudioError(name, "the file is empty (0 bytes)")
    kind = not_audio_kind(data[:64])
    if kind:
        raise NotAudio(name, f"is {kind}, not audio")
    return data


@asynccontextmanager
async def upload_source(upload: Any) -> AsyncIterator[tuple[Data, str]]:
    """Yield ``(bytes or temporary path, display name)`` for a Starlette ``UploadFile``.

    Raises:
        AudioError: empty upload.
        NotAudio: recognisably not audio.
    """
    name = display_name(upload.filename)
    head = await upload.read(IN_MEMORY_BYTES + 1)
    source_from_bytes(head[:64], name)
    if len(head) <= IN_MEMORY_BYTES:
        yield head, name
        return
    fd, path = tempfile.mkstemp(prefix="earmark-upload-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            while chunk := await upload.read(_CHUNK):
                f.write(chunk)
        yield path, name
    finally:
        os.unlink(path)
