"""Errors only the server raises; they extend earmark's one tree (:mod:`earmark.errors`).

::

    EarmarkError
    ├── ServerBusy        the queue is full: 429 + Retry-After
    ├── RequestDeadline   a request ran past its deadline: 504
    ├── NotFound          no such library file, event or clip: 404
    ├── Unavailable       a feature this server was started without (no database) or not ready for: 503
    ├── ConfigError
    │   └── UnknownPack   a classifier pack name the server does not serve: 422
    └── AudioError
        └── NotAudio      an upload that is plainly something else (an image, a PDF...): 415
"""

from __future__ import annotations

from ..errors import AudioError, ConfigError, EarmarkError

__all__ = ["NotAudio", "NotFound", "RequestDeadline", "ServerBusy", "Unavailable", "UnknownPack"]


class ServerBusy(EarmarkError):
    """The server holds as many requests as it may; try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the server is busy; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RequestDeadline(EarmarkError):
    """A request took longer than the server's deadline."""


class NotFound(EarmarkError):
    """A request named a library file, event or clip that does not exist (by id, never by path)."""


class Unavailable(EarmarkError):
    """The server cannot answer this route now: started without what it needs, or still loading."""


class NotAudio(AudioError):
    """The upload is recognisably not audio."""


class UnknownPack(ConfigError):
    """A request named a classifier pack the server does not serve (clients name packs, never files)."""
