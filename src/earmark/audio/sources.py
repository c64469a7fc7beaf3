"""Opening a source for PyAV: size checks, file objects, FIFOs, and what a WAV header promises.

Private helpers of :mod:`earmark.audio`. Limits are checked on what is really
there (bytes on disk or read), never on header fields.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import AudioError

if TYPE_CHECKING:
    from . import AudioLimits, Source

HEAD_BYTES = 4096  # enough for the chunk headers before a WAV's "data" chunk
TAIL_BYTES = 65536 + 27  # holds the start of an Ogg file's last page (pages are < 64 KiB)


def is_url(s: str) -> bool:
    """Whether a string names a network stream (``scheme://...``) rather than a local path."""
    head = s.split("?")[0][:16]
    return "://" in head and not head.startswith("file:")


def size_text(n: int) -> str:
    """A byte count for messages: "12.3 MB", or "4,096 bytes" below a megabyte."""
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n:,} bytes"


class _Capped(io.RawIOBase):
    """A read-only, non-seekable file wrapper that refuses to read past ``max_bytes``.

    For file objects that cannot seek and for FIFOs/devices, whose size is only
    known by reading; it also counts bytes so an empty input is named as such.
    """

    def __init__(self, f: BinaryIO, max_bytes: int | None, name: str) -> None:
        super().__init__()
        self._f, self._max, self._name = f, max_bytes, name
        self._read1 = getattr(f, "read1", None)
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        n = n if n is not None and n >= 0 else 1 << 20
        # read1: what is there now (a live pipe), not wait until n bytes have arrived
        data = (self._read1(n) if self._read1 else self._f.read(n)) or b""
        self.count += len(data)
        if self._max is not None and self.count > self._max:
            raise AudioError(self._name, f"is over the {size_text(self._max)} limit")
        return data


def _check_size(size: int, name: str, limits: AudioLimits) -> None:
    if size == 0:
        raise AudioError(name, "the file is empty (0 bytes)")
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise AudioError(name, f"is {size_text(size)}, over the {size_text(limits.max_bytes)} limit")


class Target:
    """What ``av.open`` gets for a source, plus what we know about it beforehand."""

    def __init__(
        self, obj: Any, *, head: bytes = b"", tail: bytes = b"", capped: _Capped | None = None
    ) -> None:
        self.obj, self.head, self.tail, self.capped = obj, head, tail, capped

    def truncation(self) -> str | None:
        """What the first and last bytes say about a truncated file, if anything."""
        if self.head[:4] == b"OggS" and not ogg_finished(self.tail):
            return "the file stops in the middle of its stream (truncated?)"
        return None


def _file_object(f: Any, name: str, limits: AudioLimits) -> Target:
    if getattr(f, "seekable", lambda: False)():
        here = f.tell()
        size = f.seek(0, io.SEEK_END) - here
        f.seek(here)
        _check_size(size, name, limits)
        return Target(f)
    capped = _Capped(f, limits.max_bytes, name)
    return Target(capped, capped=capped)


def _path(path: str, name: str, limits: AudioLimits, stack: ExitStack) -> Target:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise AudioError(name, "is a folder, not an audio file")
        f = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
    except FileNotFoundError:
        raise AudioError(name, "no such file") from None
    except OSError as ex:
        raise AudioError(name, f"cannot read it ({ex.strerror or ex})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device: only reading tells the size
        capped = _Capped(f, limits.max_bytes, name)
        return Target(capped, capped=capped)
    _check_size(st.st_size, name, limits)
    head = f.read(HEAD_BYTES)
    f.seek(max(0, st.st_size - TAIL_BYTES))
    tail = f.read(TAIL_BYTES)
    # "file:" so that a name such as "concat:a|b" or "pipe:0" is a file, not an FFmpeg protocol
    return Target("file:" + os.path.abspath(path), head=head, tail=tail)


def _target(source: Source, name: str, limits: AudioLimits, stack: ExitStack) -> Target:
    if isinstance(source, (bytes, bytearray, memoryview)):
        _check_size(len(source), name, limits)
        data = memoryview(source)
        return Target(io.BytesIO(source), head=bytes(data[:HEAD_BYTES]), tail=bytes(data[-TAIL_BYTES:]))
    if not isinstance(source, (str, os.PathLike)):
        return _file_object(source, name, limits)
    path = os.fsdecode(os.fspath(source))
    if is_url(path):
        return Target(path)
    return _path(path, name, limits, stack)


@contextmanager
def opened(
    source: Source, name: str, limits: AudioLimits, timeout_s: float | None
) -> Iterator[tuple[Any, Target]]:
    """Open a source with PyAV; yields ``(container, target)`` and closes both after."""
    import av

    with ExitStack() as stack:
        target = _target(source, name, limits, stack)
        try:
            container = av.open(target.obj, mode="r", timeout=timeout_s)
        except av.error.EOFError:
            if target.capped is not None and target.capped.count == 0:
                raise AudioError(name, "the file is empty (0 bytes)") from None
            raise AudioError(name, "ends before its header is complete (truncated)") from None
        except av.error.FFmpegError as ex:
            raise AudioError(name, f"is not audio that FFmpeg can read ({ffmpeg_reason(ex)})") from None
        except (OSError, ValueError) as ex:  # the reason in words, never an OS message naming a path
            raise AudioError(
                name, f"cannot open it ({getattr(ex, 'strerror', None) or 'unreadable'})"
            ) from None
        stack.callback(container.close)
        yield container, target


def ffmpeg_reason(ex: Exception) -> str:
    """An FFmpeg error in a few plain words."""
    text = str(getattr(ex, "strerror", None) or ex).rstrip(".").lower()
    if "invalid data" in text:
        return "unknown format or damaged data"
    return text


def wav_promised_s(head: bytes) -> float | None:
    """Seconds of audio a PCM WAV header promises, from its ``data`` size.

    FFmpeg quietly trims a ``data`` size larger than the file, so this is how a
    truncated WAV (or one whose header lies) is noticed. ``None`` when the head
    is not a PCM/float WAV (compressed WAVs such as ADPCM carry no exact rate),
    or the size is a streaming writer's placeholder (0 or 0xFFFFFFFF).
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, bytes_per_s = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        body = head[pos + 8 : pos + 8 + min(size, 40)]
        if chunk == b"fmt " and len(body) >= 16:
            tag = int.from_bytes(body[0:2], "little")
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = int.from_bytes(body[24:26], "little")
            rate, align = int.from_bytes(body[4:8], "little"), int.from_bytes(body[12:14], "little")
            bytes_per_s = rate * align if tag in (1, 3) else 0  # PCM or IEEE float only
        elif chunk == b"data":
            if size in (0, 0xFFFFFFFF) or bytes_per_s <= 0:
                return None
            return size / bytes_per_s
        pos += 8 + size + (size & 1)
    return None


def ogg_finished(tail: bytes) -> bool:
    """Whether the last Ogg page in ``tail`` is a complete end-of-stream page.

    FFmpeg silently drops a torn last page, so a cut Ogg/Opus file is noticed
    here: a finished stream's last page carries the end-of-stream flag and all
    the bytes its segment table announces.
    """
    i = tail.rfind(b"OggS\x00")
    if i < 0 or i + 27 > len(tail):
        return False
    n_segments = tail[i + 26]
    table = tail[i + 27 : i + 27 + n_segments]
    complete = len(table) == n_segments and i + 27 + n_segments + sum(table) <= len(tail)
    return bool(tail[i + 5] & 0x04) and complete
