"""The page's Gradio API held to the server's own rules: uploaded files only, no URLs, one error shape.

Gradio checks the file paths a client names only in apps started with
``launch()``; an app attached with ``gr.mount_gradio_app`` never sets
``has_launched``, so without this module ``POST /ui/gradio_api/call/classify``
with ``{"path": "/dev/zero", "meta": {"_type": "gradio.FileData"}}`` made the
server read any path it was given, and ``GET /ui/gradio_api/file=https://...``
made it fetch a URL. Here:

- :func:`page_temp_dir` gives Gradio a private temporary folder of its own
  (``GRADIO_TEMP_DIR``, mode 0700, removed when the process exits) before the
  page is built, so uploads and result files never mix with other programs'.
- :meth:`PageFiles.configure` sets the mounted app up as ``launch()`` would
  (``has_launched``, allowed and blocked paths), so Gradio's own check runs.
- :class:`PageGuardMiddleware` checks every request under the page's path before
  Gradio sees it: a file a client names (``file=``, or a ``path`` in a body
  that parses as JSON, whatever content type it claims: only multipart uploads
  pass unread) must be a regular file inside the page's temporary folder (what
  Gradio received as an upload) or the bundled examples; URLs are refused;
  bodies are bounded in size and depth. Gradio's ``{"detail": ...}`` errors are
  answered in the server's ``{"error": {"code", "message"}}`` shape (``detail``
  is kept alongside for Gradio's own page script), never echoing a server path.
  A Gradio route that fails after its answer began (its event streams, asked
  for an unknown event or session) ends that answer cleanly with one log line,
  instead of a broken connection and a traceback per request.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .guards import json_error

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "PageFiles",
    "PageGuardMiddleware",
    "is_url",
    "page_temp_dir",
]

MAX_JSON_BYTES = 4_000_000
"""Largest JSON body the page's API reads (its calls carry file references, not files)."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of a JSON body the page's API reads (its calls nest 4 levels)."""

_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/(file=|file/|proxy=)(.*)$", re.DOTALL)
_URL = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.\-]*:/|//|\\\\)")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "not_found",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
    422: "invalid_request",
    429: "server_busy",
}
_STATUS_TEXT = {
    400: "the page refused this request",
    403: "no such file on this page",
    404: "no such file on this page",
    405: "this method is not allowed here",
    413: "the upload is too large",
    422: "the page could not read this request",
    429: "the server is busy; try again shortly",
}
_FILE_REFUSED = "no such file on this page: it accepts only files uploaded through it and its examples"
_URL_REFUSED = "the server never fetches URLs; upload the file itself"

_temp_dir: str | None = None

log = logging.getLogger("earmark")


def page_temp_dir() -> Path:
    """The page's private temporary folder, made once per process; Gradio is pointed at it.

    An operator's own ``GRADIO_TEMP_DIR`` is kept (and left in place at exit).
    Otherwise a fresh ``earmark-page-*`` folder (mode 0700) is made under the
    system's temporary folder and removed, with every upload and result copy in
    it, when the process exits. Call it before the page is built: Gradio reads
    the folder when its components are made.
    """
    global _temp_dir
    if _temp_dir is None:
        chosen = os.environ.get("GRADIO_TEMP_DIR")
        if chosen:
            Path(chosen).mkdir(parents=True, exist_ok=True)
            _temp_dir = chosen
        else:
            _temp_dir = tempfile.mkdtemp(prefix="earmark-page-")
            os.environ["GRADIO_TEMP_DIR"] = _temp_dir
            atexit.register(shutil.rmtree, _temp_dir, ignore_errors=True)
    return Path(_temp_dir)


def is_url(value: str) -> bool:
    """True for anything a fetcher would take as a URL: ``scheme:/...``, ``//host/...``, ``\\\\host\\...``."""
    return bool(_URL.match(value))


class PageFiles:
    """Which files the page's API may read or serve: uploads it received and the bundled examples."""

    def __init__(self) -> None:
        self._roots: tuple[str, ...] = ()

    def configure(self, blocks: Any) -> None:
        """Set a mounted Gradio app up as ``launch()`` would, and remember its allowed folders.

        Call after ``gr.mount_gradio_app`` (which sets ``allowed_paths``).
        """
        upload_dir = page_temp_dir()
        allowed = [str(p) for p in (getattr(blocks, "allowed_paths", None) or [])]
        blocked = [p.strip() for p in os.environ.get("GRADIO_BLOCKED_PATHS", "").split(",") if p.strip()]
        blocks.allowed_paths = allowed
        blocks.blocked_paths = blocked
        blocks.has_launched = True  # Gradio checks client-named paths only in launched apps
        self._roots = tuple(os.path.realpath(p) for p in (str(upload_dir), *allowed))

    @property
    def roots(self) -> tuple[str, ...]:
        return self._roots

    def allows(self, path: str) -> bool:
        """True when ``path`` is absolute and names a regular file inside one of the roots.

        The check is on the resolved path (symbolic links followed, ``..`` gone), and
        the answer is the same for a path that does not exist and one that is not
        allowed, so it tells a client nothing about the server's files.
        """
        if not path or "\x00" in path or not os.path.isabs(path) or not self._roots:
            return False
        real = os.path.realpath(path)
        if not any(_inside(real, root) for root in self._roots):
            return False
        try:
            return stat.S_ISREG(os.stat(real).st_mode)
        except (OSError, ValueError):
            return False


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def file_references(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Iterable[str]:
    """Every ``path`` string of a dict in a parsed JSON body (how Gradio names files).

    Raises:
        ValueError: the body nests deeper than ``max_depth``.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise ValueError("nested too deeply")
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str):
                yield path
            elif path is not None and not isinstance(path, str):
                yield ""  # a path that is not text is no upload either
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


class PageGuardMiddleware:
    """Checks requests to the page (under ``prefix``) before Gradio sees them; see the module docstring.

    Args:
        app: the ASGI app.
        files: which files the page may read and serve.
        prefix: where the page is mounted.
        max_json_bytes: largest JSON body read; bigger gets 413.
    """

    def __init__(
        self, app: Any, files: PageFiles, prefix: str = "/ui", max_json_bytes: int = MAX_JSON_BYTES
    ) -> None:
        self.app = app
        self.files = files
        self.prefix = prefix.rstrip("/")
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == self.prefix or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        sub = path[len(self.prefix) :]
        match = _FILE_ROUTE.match(sub)
        if match:
            kind, named = match.groups()
            if kind == "proxy=" or is_url(named):
                await json_error(send, 400, "url_refused", _URL_REFUSED)
                return
            if not self.files.allows(named if kind == "file=" else "/" + named.lstrip("/")):
                await json_error(send, 404, "not_found", _FILE_REFUSED)
                return
        kind = _content_type(scope)
        if scope.get("method") in _BODY_METHODS and not kind.startswith("multipart/"):
            # not just application/json: FastAPI parses a body without a content type, or any
            # "+json" one, as JSON, and Gradio's component server parses every non-multipart body
            receive = await self._checked_body(receive, send, _json_like(kind))
            if receive is None:
                return
        await _ended_cleanly(self.app, scope, receive, _error_shape(send))

    async def _checked_body(self, receive: Any, send: Any, json_like: bool = True) -> Any:
        """The body read, checked and replayed; ``None`` when a refusal was sent instead."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_json_bytes:
                limit = self.max_json_bytes / 1e6
                await json_error(
                    send, 413, "upload_too_large", f"the page reads JSON bodies up to {limit:g} MB"
                )
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal = self._refusal(body, json_like)
        if refusal is not None:
            await json_error(send, *refusal)
            return None
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                message: dict[str, Any] = await receive()
                return message
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _refusal(self, body: bytes, json_like: bool = True) -> tuple[int, str, str] | None:
        """Why the body is refused, or ``None``; a body that is not JSON passes unless it says it is."""
        if not body.strip():
            return None
        try:
            parsed = json.loads(body)
            paths = list(file_references(parsed))
        except RecursionError:
            return 400, "invalid_request", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels"
        except ValueError as ex:
            if str(ex) == "nested too deeply":
                return 400, "invalid_request", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels"
            if not json_like:
                return None  # a form or text body: Gradio reads no file reference from it
            return 400, "invalid_request", "the request body is not valid JSON"
        for named in paths:
            if is_url(named):
                return 400, "url_refused", _URL_REFUSED
            if not self.files.allows(named):
                return 400, "file_refused", _FILE_REFUSED
        return None


async def _ended_cleanly(app: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Runs ``app``; an error raised after its answer began ends that answer instead of the connection.

    Gradio's event streams (``GET .../call/{api}/{event_id}``, ``.../queue/data``) raise a 404
    for an unknown event or session after they have sent their ``event: error`` message;
    uvicorn can then only cut the connection and log a traceback. Here the answer is
    finished (the client reads what was sent) and the log gets one line. An error before
    the answer began goes on to the server's error handler as before.
    """
    started = ended = False

    async def tracked(message: dict[str, Any]) -> None:
        nonlocal started, ended
        if message["type"] == "http.response.start":
            started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            ended = True
        await send(message)

    try:
        await app(scope, receive, tracked)
    except Exception as ex:
        if not started or ended:
            raise
        from starlette.exceptions import HTTPException

        cause = ex.__cause__ or ex
        log.warning(
            "page: %s %s ended early: %s", scope.get("method"), scope.get("path"), type(cause).__name__
        )
        if not isinstance(cause, HTTPException):
            log.debug("page: the error that ended the answer early", exc_info=ex)
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:  # the client is gone: nothing left to finish
            pass


def _json_like(kind: str) -> bool:
    """Whether FastAPI reads a body of content type ``kind`` as JSON (none given counts)."""
    main, _, sub = kind.partition("/")
    return not kind or (main == "application" and (sub == "json" or sub.endswith("+json")))


def _content_type(scope: dict[str, Any]) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def _error_shape(send: Any) -> Any:
    """``send`` that rewrites Gradio's JSON errors (``{"detail": ...}``) into the server's error shape."""
    held: dict[str, Any] | None = None
    parts: list[bytes] = []

    async def shaped(message: dict[str, Any]) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            kind = dict(message.get("headers", ())).get(b"content-type", b"").split(b";")[0].strip()
            if message["status"] >= 400 and kind == b"application/json":
                held = message
                return
            await send(message)
            return
        if held is None or message["type"] != "http.response.body":
            await send(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = _reshaped(held["status"], b"".join(parts))
        headers: list[tuple[bytes, bytes]] = [
            (k, v)
            for k, v in held.get("headers", ())
            if k.lower() not in (b"content-length", b"content-type")
        ]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({**held, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return shaped


def _reshaped(status: int, body: bytes) -> bytes:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return body  # already in the server's shape
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    message = detail if isinstance(detail, str) and _safe_text(detail) else None
    message = message or _STATUS_TEXT.get(status, "the page refused this request")
    code = _STATUS_CODES.get(status, "internal" if status >= 500 else "http_error")
    return json.dumps({"error": {"code": code, "message": message}, "detail": message}).encode()


def _safe_text(text: str) -> bool:
    """Text that names no server path and no OS error (those stay in the log)."""
    return len(text) <= 200 and not any(s in text for s in ("/", "\\", "Errno", "Traceback"))
