"""Where models come from: aliases, the model cache, pulling and importing.

A model is named by an alias (``clap-htsat-fused``), a hub id
(``laion/clap-htsat-fused``) or a local folder (``config.json`` +
weights + tokenizer + ``preprocessor_config.json``). Resolution never falls
back to another model: if the one asked for is not here and cannot be
downloaded, :class:`~earmark.errors.UnknownModelError` says what to run.

Cache: ``HF_HOME`` when set (shared with other Hugging Face tools), else
``$EARMARK_HOME/hub``. ``HF_HUB_OFFLINE=1`` never touches the network.
Imported folders live in ``$EARMARK_HOME/models/<name>``.

Imports no torch; ``huggingface_hub`` only when a download is needed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, UnknownModelError
from .paths import earmark_home, hub_cache

__all__ = [
    "ALIASES",
    "DEFAULT_MODEL",
    "ModelInfo",
    "import_model",
    "list_models",
    "model_info",
    "pull",
    "requested",
    "resolve",
]

DEFAULT_MODEL = "laion/clap-htsat-fused"

ALIASES: dict[str, str] = {
    "clap-htsat-fused": "laion/clap-htsat-fused",
    "clap-htsat-unfused": "laion/clap-htsat-unfused",
    "larger_clap_general": "laion/larger_clap_general",
    "larger_clap_music_and_speech": "laion/larger_clap_music_and_speech",
    "larger_clap_music": "laion/larger_clap_music",
}

REQUIRED_FILES = ("config.json", "preprocessor_config.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
# what `pull` fetches: enough to load, not every format the hub repo holds
PULL_PATTERNS = ["*.json", "*.txt", "model.safetensors*", "*.model"]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def canonical(name: str) -> str:
    """Alias -> hub id; anything else unchanged."""
    return ALIASES.get(name, name)


def requested(name: str | None = None) -> str:
    """The model asked for, by its canonical name: ``name``, else ``$EARMARK_MODEL``, else the default.

    The one place that reads ``EARMARK_MODEL``: backends, selection and resolution all ask here.
    """
    return canonical(_asked(name))


def _asked(name: str | None) -> str:
    return str(name or os.environ.get("EARMARK_MODEL") or DEFAULT_MODEL)


def _imported_dir(name: str) -> Path:
    return earmark_home() / "models" / name.replace("/", "--")


def check_folder(path: Path) -> None:
    """Raise ModelError unless ``path`` holds a loadable CLAP model."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise ModelError(f"{path} is not a complete CLAP model folder: missing {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as ex:
        raise ModelError(f"{path}/config.json is unreadable: {ex}") from None
    if config.get("model_type") != "clap":
        raise ModelError(f"{path} holds a {config.get('model_type')!r} model, not a CLAP model")


def resolve(name: str | None = None) -> Path:
    """The local folder of a model, downloading it into the cache if allowed.

    Args:
        name: alias, hub id or folder; default ``$EARMARK_MODEL`` or ``laion/clap-htsat-fused``.

    Raises:
        UnknownModelError: not here and not downloadable; the message says what to do.
        ModelError: a folder that is not a complete CLAP model.
    """
    name = _asked(name)
    local = Path(name).expanduser()
    if local.is_dir():
        check_folder(local)
        return local.resolve()
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise UnknownModelError(f"model folder {name} does not exist")
    repo = canonical(name)
    imported = _imported_dir(repo)
    if imported.is_dir():
        return imported
    return _from_hub(repo, download=not offline())


def _from_hub(repo: str, *, download: bool, progress: bool = False) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a base dependency
        raise ModelError("huggingface_hub is missing: pip install huggingface_hub") from None
    if not progress:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        path = snapshot_download(
            repo, cache_dir=hub_cache(), local_files_only=not download, allow_patterns=PULL_PATTERNS
        )
    except Exception as ex:  # hub errors have no common base worth naming; all mean "not available"
        raise UnknownModelError(_not_available(repo, ex, download)) from None
    folder = Path(path)
    check_folder(folder)
    return folder


def _not_available(repo: str, ex: Exception, tried_download: bool) -> str:
    alias = next((a for a, r in ALIASES.items() if r == repo), repo)
    how = (
        "could not be downloaded"
        if tried_download
        else "is not in the cache and HF_HUB_OFFLINE=1 forbids downloading"
    )
    reason = str(ex).strip().splitlines()[0][:200] if str(ex).strip() else type(ex).__name__
    return (
        f"model {repo!r} {how} ({reason}).\n"
        f"  - with internet access: earmark model pull {alias}\n"
        f"  - on an air-gapped machine: copy a downloaded model folder here and run "
        f"earmark model import FOLDER --name {alias}\n"
        f"  - or point at a folder directly: --model /path/to/folder (or EARMARK_MODEL=/path/to/folder)\n"
        f"  model cache: {hub_cache()}"
    )


def pull(name: str) -> Path:
    """Download a model into the cache (progress bars on) and return its folder."""
    return _from_hub(canonical(name), download=True, progress=True)


def import_model(folder: str | os.PathLike[str], name: str | None = None) -> tuple[str, Path]:
    """Copy a model folder into ``$EARMARK_HOME/models`` so it resolves by name offline.

    Returns:
        (name, destination folder).
    """
    src = Path(folder).expanduser()
    if not src.is_dir():
        raise ModelError(f"{src} is not a folder")
    check_folder(src)
    name = canonical(name or src.name)
    dest = _imported_dir(name)
    if dest.exists():
        raise ModelError(f"a model named {name!r} is already imported at {dest}; remove it first")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=False)
    tmp.rename(dest)  # atomic: a half-copied folder never resolves
    return name, dest


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What a local model is.

    Attributes:
        name: hub id or folder.
        path: folder on disk.
        size_bytes: total size of its files.
        fused: whether the audio tower uses feature fusion.
        sample_rate: audio rate it expects.
        window_s: audio seconds one forward pass sees.
        projection_dim: embedding size.
    """

    name: str
    path: Path
    size_bytes: int
    fused: bool
    sample_rate: int
    window_s: float
    projection_dim: int


def model_info(name: str | None = None) -> ModelInfo:
    path = resolve(name)
    config = json.loads((path / "config.json").read_text())
    pre = json.loads((path / "preprocessor_config.json").read_text())
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return ModelInfo(
        name=name or str(path),
        path=path,
        size_bytes=size,
        fused=bool(config.get("audio_config", {}).get("enable_fusion", False)),
        sample_rate=int(pre.get("sampling_rate", 48_000)),
        window_s=float(pre.get("max_length_s", 10)),
        projection_dim=int(config.get("projection_dim", 512)),
    )


def list_models() -> list[tuple[str, str, Path | None]]:
    """(name, hub id or 'imported', local folder or None) for aliases and imported models."""
    rows: list[tuple[str, str, Path | None]] = []
    for alias, repo in ALIASES.items():
        rows.append((alias, repo, _local_or_none(repo)))
    models_dir = earmark_home() / "models"
    if models_dir.is_dir():
        for d in sorted(models_dir.iterdir()):
            name = d.name.replace("--", "/")
            if d.is_dir() and not d.name.endswith(".partial") and name not in ALIASES.values():
                rows.append((name, "imported", d))
    return rows


def _local_or_none(repo: str) -> Path | None:
    imported = _imported_dir(repo)
    if imported.is_dir():
        return imported
    try:
        return _from_hub(repo, download=False)
    except (UnknownModelError, ModelError):
        return None
