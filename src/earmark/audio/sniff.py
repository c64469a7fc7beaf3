"""Is this file audio? Decided by its first bytes, not only by its name: the one rule.

Sound libraries are full of files whose extension lies (``take1`` with no
extension, ``.dat`` exports, ``.wav`` that is really an mp3). ``sniff`` reads
the first 64 bytes and recognises the containers FFmpeg decodes; a file is a
candidate (for ``classify DIR``, ``tag`` and ``eval``'s class folders alike)
when its content *or* its extension says audio, so a ``.wav`` that is really
text is still read (and reported as an error) rather than silently skipped.

Uploads to the server are the other way round: :func:`not_audio_kind` names
what is *plainly* not audio (images, archives, documents, text) so it is
refused before a decoder sees it; anything else goes to the decoder, which
has the last word. Pure: no decoding here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AUDIO_EXTENSIONS", "audio_files", "is_candidate", "not_audio_kind", "sniff"]

AUDIO_EXTENSIONS = frozenset(
    {
        ".wav",
        ".wave",
        ".bwf",
        ".rf64",
        ".mp3",
        ".mp2",
        ".ogg",
        ".oga",
        ".opus",
        ".flac",
        ".m4a",
        ".aac",
        ".mp4",
        ".aif",
        ".aiff",
        ".aifc",
        ".webm",
        ".mka",
        ".wma",
        ".caf",
        ".au",
        ".snd",
        ".amr",
        ".ac3",
        ".w64",
        ".wv",
        ".ape",
        ".spx",
    }
)

# container magic at offset 0 -> format name
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"OggS", "ogg"),
    (b"fLaC", "flac"),
    (b"ID3", "mp3"),
    (b"\x1a\x45\xdf\xa3", "matroska"),
    (b"caff", "caf"),
    (b".snd", "au"),
    (b"#!AMR", "amr"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
    (b"wvpk", "wavpack"),
    (b"MAC ", "ape"),
    (b"riff\x2e\x91\xcf\x11", "w64"),
)
_MP4_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"mp42", b"isom", b"mp41", b"dash", b"iso2", b"iso5", b"3gp")


def sniff(head: bytes) -> str | None:
    """The audio container a file's first bytes announce, or ``None``.

    Args:
        head: the first bytes of the file (64 are plenty).

    Returns:
        A short format name (``wav``, ``mp3``, ``ogg``...) or ``None``.
    """
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12].startswith(_MP4_AUDIO_BRANDS):
        return "mp4"
    if len(head) >= 4 and _mpeg_frame(head):
        return "mpeg"
    if len(head) >= 2 and head[0] == 0x0B and head[1] == 0x77:
        return "ac3"
    return None


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio (mp1/2/3) or ADTS AAC frame header, checked strictly enough to refuse noise."""
    b0, b1, b2 = head[0], head[1], head[2]
    if b0 != 0xFF or b1 & 0xE0 != 0xE0:
        return False
    if b1 & 0xF6 == 0xF0:  # ADTS: sync 12 bits, layer 00
        return (b2 >> 2) & 0x0F < 13  # valid sampling-frequency index
    version, layer = (b1 >> 3) & 0x03, (b1 >> 1) & 0x03
    bitrate, rate = b2 >> 4, (b2 >> 2) & 0x03
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


def is_candidate(path: str | os.PathLike[str]) -> bool:
    """True when a file should be tagged: its content or its extension says audio.

    Unreadable files with an audio extension count as candidates, so the run
    reports them instead of skipping them without a word.
    """
    p = Path(path)
    by_name = p.suffix.lower() in AUDIO_EXTENSIONS
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError:
        return by_name
    return by_name or sniff(head) is not None


def audio_files(folder: str | os.PathLike[str]) -> list[str]:
    """Audio candidates (:func:`is_candidate`) under ``folder``, recursively, in sorted order.

    Paths are joined onto ``folder`` as given (relative stays relative).
    """
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        out.extend(p for p in (os.path.join(root, f) for f in sorted(files)) if is_candidate(p))
    return out


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"MZ", "a program (Windows)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an office document"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def not_audio_kind(head: bytes) -> str | None:
    """What ``head`` (the first bytes of an upload) plainly is when it is not audio, else ``None``.

    Args:
        head: at least the first 16 bytes when the upload has them.

    Returns:
        A phrase such as ``"a PNG image"``, or ``None`` when it may be audio.
    """
    for magic, kind in _SIGNATURES:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    text = head.lstrip()
    if text[:1] in (b"<", b"{", b"[") and _is_text(head):
        return "text (HTML, XML or JSON)"
    if len(head) >= 16 and _is_text(head):
        return "plain text"
    return None


def _is_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sniffed bytes is still text
        try:
            decoded = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(c.isprintable() or c in "\r\n\t" for c in decoded)
