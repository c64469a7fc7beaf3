"""Serving a library file: the bytes that were tagged, from a regular file, never through a link.

``GET /api/v1/library/files/{id}/audio`` used to serve whatever the recorded
path pointed to: a tagged file replaced by a symbolic link served the link's
target (``secret.txt``). Here the recorded path is opened with ``O_NOFOLLOW``
(a link in its last component is refused), the opened file must be a regular
file (not a FIFO, device or folder), the resolved path of what was opened must
still be the recorded file (same name, not under ``/proc``, ``/sys``, ``/dev``),
and its size and SHA-256 must be those recorded when it was tagged (a file swapped
or hard-linked in its place is refused). Only then are its bytes streamed, from
the descriptor that was checked.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

__all__ = ["NotServed", "open_tagged", "tagged_file_response"]

_CHUNK = 1 << 20
_PSEUDO = ("/proc/", "/sys/", "/dev/")


class NotServed(Exception):
    """The recorded file cannot be served; the message says why, in words, without OS error text."""


def open_tagged(path: str, *, size: int, content_hash: str | None) -> IO[bytes]:
    """Open the library file at ``path`` if it is still exactly what was tagged; returns it at offset 0.

    Raises:
        NotServed: missing, a link, not a regular file, or changed since it was tagged.
    """
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_CLOEXEC", 0)
    )
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise NotServed("it is no longer on disk") from None
    except OSError:
        raise NotServed("it cannot be opened as a plain file (a link, or not readable)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a folder with OS text
        os.close(fd)
        raise NotServed("it is not a plain file any more")
    f = os.fdopen(fd, "rb")
    try:
        _check(f, path, size, content_hash)
    except BaseException:
        f.close()
        raise
    return f


def _check(f: IO[bytes], path: str, size: int, content_hash: str | None) -> None:
    st = os.fstat(f.fileno())
    opened = os.path.realpath(f"/proc/self/fd/{f.fileno()}") if os.path.isdir("/proc/self/fd") else path
    if opened.startswith(_PSEUDO) or os.path.basename(opened) != os.path.basename(path):
        raise NotServed("it is not the file that was tagged")
    if st.st_size != size:
        raise NotServed("it changed since it was tagged (tag it again to play it)")
    if content_hash:
        digest = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != content_hash:
            raise NotServed("it changed since it was tagged (tag it again to play it)")
        f.seek(0)


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    with f:
        while chunk := f.read(_CHUNK):
            yield chunk


def tagged_file_response(path: str, *, size: int, content_hash: str | None) -> Any:
    """A streaming response with the checked file's bytes (see :func:`open_tagged`).

    Raises:
        NotServed: as :func:`open_tagged`.
    """
    from starlette.responses import StreamingResponse

    f = open_tagged(path, size=size, content_hash=content_hash)
    name = os.path.basename(path)
    headers = {
        "content-length": str(size),
        "content-disposition": f"attachment; filename*=utf-8''{quote(name)}",
        "x-content-type-options": "nosniff",
    }
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return StreamingResponse(_chunks(f), media_type=media, headers=headers)
