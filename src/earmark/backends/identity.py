"""Model identity: one fingerprint for what a model folder computes.

``model_fingerprint(folder)`` hashes

- the name and contents of every small config file (``config.json``,
  ``preprocessor_config.json``, tokenizer files),
- a digest of every weight file's *contents* (hub blobs are already named by
  their SHA-256, so that name is used; local files are hashed once and the
  digest remembered by path, size, modification time and inode in
  ``$EARMARK_HOME/cache/digests.json``),
- :data:`FEATURE_VERSION`, bumped whenever earmark changes how audio becomes
  model input (windowing, padding, log-mel features).

Every cache of derived data (stored window embeddings of ``tag`` and ``eval``)
keys on it, so weights replaced in the same folder, a changed config or a new
feature pipeline never reuse old vectors. Imports no numpy or torch: the
library computes it before deciding whether to load the model at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from pathlib import Path

from .. import paths

__all__ = ["FEATURE_VERSION", "model_fingerprint", "weights_digest"]

# bump when windows, padding or features change what the model sees for the same audio
FEATURE_VERSION = 1

_SMALL = (".json", ".txt", ".model")
_SMALL_MAX = 16 * 1024**2
_HEX64 = re.compile(r"[0-9a-f]{64}")
_lock = threading.Lock()
_memo: dict[str, str] = {}


def model_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A short hash of what a model folder computes (see the module docstring).

    Args:
        folder: a model folder (as :func:`earmark.models.resolve` returns).

    Returns:
        16 hex digits.
    """
    path = Path(folder)
    h = hashlib.sha256(f"earmark-features-v{FEATURE_VERSION}".encode())
    for name in sorted(os.listdir(path)):
        f = path / name
        if not f.is_file() or name.startswith("."):
            continue
        h.update(b"\0" + name.encode() + b"\0")
        if name.endswith(_SMALL) and f.stat().st_size < _SMALL_MAX:
            h.update(f.read_bytes())
        else:
            h.update(weights_digest(f).encode())
    return h.hexdigest()[:16]


def weights_digest(file: str | os.PathLike[str]) -> str:
    """SHA-256 of a (large) file's contents, computed once per version of the file.

    A hub cache links ``model.safetensors`` to a blob named by its SHA-256: that
    name is the digest. Other files are read once; the digest is remembered by
    (real path, size, mtime, inode), so a file replaced in place is read again.
    """
    real = Path(os.path.realpath(file))
    if _HEX64.fullmatch(real.name):
        return real.name
    st = real.stat()
    ident = f"{real}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    with _lock:
        if ident in _memo:
            return _memo[ident]
    known = _read_digests()
    digest = known.get(ident)
    if digest is None:
        h = hashlib.sha256()
        with open(real, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        known = {k: v for k, v in known.items() if not k.startswith(f"{real}:")}
        known[ident] = digest
        _write_digests(known)
    with _lock:
        _memo[ident] = digest
    return digest


def _digests_file() -> Path:
    return paths.earmark_home() / "cache" / "digests.json"


def _read_digests() -> dict[str, str]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(_digests_file().read_text())
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items()}
    return {}


def _write_digests(data: dict[str, str]) -> None:
    # best effort: a read-only home only means hashing again next time
    with contextlib.suppress(OSError):
        target = _digests_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".digests-{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, target)
