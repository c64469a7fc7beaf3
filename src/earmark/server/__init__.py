"""The web server: REST API and Gradio page on one FastAPI app, one model in memory.

``create_app(classifier)`` builds the app (see :mod:`earmark.server.api`);
``earmark serve`` runs it with uvicorn. Importing this package is light: FastAPI
and Gradio load when ``create_app`` or ``build_ui`` is first used.
"""

from __future__ import annotations

from typing import Any

from .settings import SETTINGS, ServerSettings

__all__ = ["SETTINGS", "ServerSettings", "build_ui", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .api import create_app

        return create_app
    if name == "build_ui":
        from .ui import build_ui

        return build_ui
    raise AttributeError(name)
