"""The one error tree of earmark.

Every failure the library expects is an ``EarmarkError``; each front end (CLI,
REST API, web page) translates it once into its own words::

    EarmarkError
    ├── AudioError          a source that cannot be read as audio (names the source and why)
    │   └── DecodeTimeout   decoding ran past its wall-clock deadline
    ├── DecoderUnavailable  the isolated decoder cannot take work (worker did not start, pool closed)
    ├── LabelError          an empty, tiny, huge or otherwise unusable label list
    ├── ModelError          a model that cannot be loaded
    │   └── UnknownModelError   not in the cache and not downloadable: says what to run
    ├── MissingExtraError   an optional dependency is not installed: says which extra
    ├── ConfigError         a bad option or configuration file (names the key)
    │   └── RuleError       a bad monitoring rule
    ├── StoreError          the SQLite store is unusable
    └── FilingError         a file operation could not be done safely (the source is left intact)
"""

from __future__ import annotations

__all__ = [
    "AudioError",
    "ConfigError",
    "DecodeTimeout",
    "DecoderUnavailable",
    "EarmarkError",
    "FilingError",
    "LabelError",
    "MissingExtraError",
    "ModelError",
    "RuleError",
    "StoreError",
    "UnknownModelError",
]


class EarmarkError(Exception):
    """Base class of every error earmark raises on purpose."""


class AudioError(EarmarkError):
    """The input cannot be used as audio; the message names the source and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class DecodeTimeout(AudioError):
    """Decoding took longer than its deadline (a hostile or huge file)."""


class DecoderUnavailable(EarmarkError):
    """The isolated audio decoder cannot take work: its worker process did not start, or the pool is closed.

    Not the audio's fault: the same file may decode once the decoder is back.
    """


class LabelError(EarmarkError):
    """The candidate labels are unusable."""


class ModelError(EarmarkError):
    """The model cannot be loaded."""


class UnknownModelError(ModelError):
    """The model is not available locally and cannot be downloaded."""


class MissingExtraError(EarmarkError):
    """An optional dependency is missing (``extra`` names the extra; empty for a base dependency)."""

    def __init__(self, what: str, extra: str) -> None:
        if extra:
            super().__init__(f"{what} needs an optional dependency: pip install 'earmark[{extra}]'")
        else:  # a base dependency went missing: the install is broken
            super().__init__(
                f"{what} needs a dependency earmark installs: pip install --force-reinstall earmark"
            )
        self.extra = extra


class ConfigError(EarmarkError):
    """A bad option or configuration value."""


class RuleError(ConfigError):
    """A monitoring rule is invalid."""


class StoreError(EarmarkError):
    """The SQLite store cannot be used."""


class FilingError(EarmarkError):
    """Copying, moving or restoring a file could not be done safely; nothing was lost."""
