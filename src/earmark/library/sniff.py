"""Is this file audio? Decided by its first bytes, not only by its name.

Sound libraries are full of files whose extension lies (``take1`` with no
extension, ``.dat`` exports, ``.wav`` that is really an mp3). ``sniff`` reads
the first 64 bytes and recognises the containers FFmpeg decodes; a file is a
candidate for tagging when its content *or* its extension says audio, so a
``.wav`` that is really text is still tagged (and reported as an error) rather
than silently skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AUDIO_EXTENSIONS", "is_candidate", "sniff"]

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
