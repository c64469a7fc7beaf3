"""Recognise uploads that are plainly not audio, from their first bytes (pure).

Only well-known non-audio signatures are named; anything else goes to the
decoder, which has the last word. Containers that may carry audio (RIFF/AVI,
MP4, Matroska, Ogg) are never refused here.
"""

from __future__ import annotations

__all__ = ["not_audio_kind"]

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
