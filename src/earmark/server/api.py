"""The app factory: REST API, metrics, health, and the Gradio page on one FastAPI app.

``create_app(classifier)`` returns the app; its lifespan starts the serving
engine (decode workers, model thread) and warms it, and ``/readyz`` turns 200
once that is done. Errors are translated once, here: every
:class:`~earmark.errors.EarmarkError` becomes ``{"error": {"code", "message"}}``
with its status; anything unexpected is logged and answered with a generic 500
that never echoes internals.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import (
    AudioError,
    ConfigError,
    DecoderUnavailable,
    DecodeTimeout,
    EarmarkError,
    LabelError,
    MissingExtraError,
    ModelError,
    StoreError,
)
from .errors import NotAudio, NotFound, RequestDeadline, ServerBusy, Unavailable, UnknownPack
from .settings import ServerSettings

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, RedirectResponse
    from starlette.exceptions import HTTPException
except ImportError:  # pragma: no cover - depends on the install
    raise MissingExtraError("earmark serve", "server") from None

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack
    from ..classify import Classifier
    from ..store import Database

__all__ = ["add_error_handlers", "create_app", "error_status"]

log = logging.getLogger("earmark")

# most specific first: the first match decides the status
_STATUS: tuple[tuple[type[EarmarkError], int, str], ...] = (
    (ServerBusy, 429, "server_busy"),
    (RequestDeadline, 504, "deadline"),
    (DecodeTimeout, 504, "decode_timeout"),
    (NotFound, 404, "not_found"),
    (Unavailable, 503, "unavailable"),
    (NotAudio, 415, "not_audio"),
    (AudioError, 422, "undecodable_audio"),
    (LabelError, 422, "invalid_labels"),
    (UnknownPack, 422, "unknown_pack"),
    (ConfigError, 422, "invalid_options"),
    (ModelError, 503, "model_unavailable"),
    (DecoderUnavailable, 503, "decoder_unavailable"),
    (StoreError, 503, "store_unavailable"),
    (MissingExtraError, 501, "missing_extra"),
    (EarmarkError, 400, "bad_request"),
)
# their messages may name server paths: clients get a summary, the log gets the detail
_PRIVATE = (ModelError, StoreError, MissingExtraError)

UiTab = tuple[str, Callable[[], None]]


def error_status(ex: EarmarkError) -> tuple[int, str]:
    """(HTTP status, error code) for an earmark error."""
    return next((status, code) for cls, status, code in _STATUS if isinstance(ex, cls))


def create_app(
    classifier: Classifier,
    *,
    db: Database | None = None,
    settings: ServerSettings = ServerSettings(),  # noqa: B008 - frozen, safe to share
    ui: bool = True,
    ui_tabs: Sequence[UiTab] = (),
    model_load_s: float | None = None,
    packs: Mapping[str, ClassifierPack] | None = None,
) -> FastAPI:
    """Build the earmark web app around one loaded classifier.

    Args:
        classifier: the model every route and the page share.
        db: the SQLite store for features that need one (library, events), or None.
        settings: limits, queue, batching and live settings (see :mod:`.settings`).
        ui: mount the Gradio page at ``/ui`` (``/`` redirects there).
        ui_tabs: extra page tabs, ``(title, build_fn)``; see :func:`earmark.server.ui.build_ui`.
        model_load_s: how long the model took to load, for ``/metrics``.
        packs: classifier packs clients may pick by name (``pack`` field, the page's
            Classifier choice), each checked here to run on ``classifier``'s model.

    Returns:
        The FastAPI app; run it with uvicorn (``earmark serve`` does).

    Raises:
        ConfigError: a pack was fitted on another model.
    """
    from .admission import AdmissionMiddleware
    from .compat import compat
    from .embeddings_routes import embeddings, embeddings_v1
    from .events_routes import router as events
    from .guards import ApiKeyMiddleware, BodyLimitMiddleware
    from .library_dups_routes import router as duplicates
    from .library_routes import router as library
    from .metrics import MetricsMiddleware, ServerMetrics
    from .routes import health, v1
    from .served_packs import check_packs

    settings.check()
    served = check_packs(classifier, packs or {})
    metrics = ServerMetrics()
    metrics.queue_capacity.set(settings.capacity)
    if model_load_s is not None:
        metrics.model_load_seconds.set(model_load_s)
    app = FastAPI(
        title="earmark",
        summary="Zero-shot audio classification with CLAP: audio + free-text labels -> confidence per label.",
        version=_version(),
        lifespan=_lifespan,
    )
    app.state.classifier = classifier
    app.state.db = db
    app.state.packs = served
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = None
    app.state.ready = False
    app.state.warmup = {"waiting_for": "the model engine to start"}
    app.state.draining = False
    for router in (health, v1, embeddings, embeddings_v1, compat, library, duplicates, events):
        app.include_router(router)
    if db is not None:  # the Library and Events tabs and routes read these tables: create them now
        _migrate(db)
    add_error_handlers(app)
    # outermost last: the key is checked first, then the body cap, then metrics see every answer
    page = _page_guard(app) if ui else None
    app.add_middleware(AdmissionMiddleware, capacity=settings.capacity)  # 429 before an upload is read
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if ui:
        _mount_ui(app, classifier, db, settings, [*_store_tabs(classifier, db), *ui_tabs], served)
        assert page is not None
        page.configure(app.state.page_blocks)
    return app


def _page_guard(app: FastAPI) -> Any:
    """The page's API held to the server's rules (:mod:`.page_guard`); Gradio's temp folder is ours."""
    from .page_guard import PageFiles, PageGuardMiddleware, page_temp_dir

    page_temp_dir()  # before the page is built: Gradio reads it when components are made
    files = PageFiles()
    app.add_middleware(PageGuardMiddleware, files=files, prefix="/ui")
    return files


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"error": {"code", "message"}}``: earmark errors with their status
    (:func:`error_status`), validation and HTTP errors alike, anything else a generic 500."""
    app.add_exception_handler(EarmarkError, _earmark_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)


def _migrate(db: Database) -> None:
    from ..library import migrate as migrate_library
    from ..monitor.events import MIGRATIONS as EVENT_MIGRATIONS

    migrate_library(db)
    db.migrate(EVENT_MIGRATIONS)


def _store_tabs(classifier: Classifier, db: Database | None) -> list[UiTab]:
    """The Library and Events tabs, when there is a database to show."""
    if db is None:
        return []
    from .events_tab import build_events_tab
    from .library_tab import build_library_tab
    from .ui import ui_text

    return [
        (ui_text("tab_library"), lambda: build_library_tab(classifier, db)),
        (ui_text("tab_events"), lambda: build_events_tab(db)),
    ]


def _mount_ui(
    app: FastAPI,
    classifier: Classifier,
    db: Database | None,
    settings: ServerSettings,
    tabs: Sequence[UiTab],
    packs: Mapping[str, ClassifierPack],
) -> None:
    from .ui import AppRunner, build_ui, mount_ui

    blocks = build_ui(classifier, db, extra_tabs=tabs, runner=AppRunner(app), settings=settings, packs=packs)
    mount_ui(app, blocks, settings, path="/ui")
    app.state.page_blocks = blocks

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    from .engine import ServingEngine

    state = app.state
    engine = ServingEngine(state.classifier, state.settings, observe=state.metrics.observe)
    factory = getattr(state, "runner_factory", None)
    if factory is not None:  # Ray Serve's batching in front of the stage's runner, before any use
        engine.runner = factory(engine)
    state.engine = engine
    state.metrics.queue_depth.set_function(lambda: engine.admission.held)
    warm = asyncio.create_task(_warm_up(app, engine))
    try:
        yield
    finally:
        state.draining = True
        state.metrics.ready.set(0)
        warm.cancel()
        await asyncio.to_thread(engine.close)


WARMUP_RETRY_MAX_S = 60.0


async def _warm_up(app: FastAPI, engine: Any) -> None:
    """Warm the engine, retrying with backoff until it works; ``/readyz`` shows where it is.

    A failed attempt never leaves the server 503 for good: it is logged with its
    reason, kept in ``app.state.warmup`` for ``/readyz``, and tried again.
    """
    timeout_s = app.state.settings.warmup_timeout_s
    attempt = 0
    while True:
        attempt += 1
        app.state.warmup = {
            "waiting_for": "warm-up: decode workers, one test decode, one model pass",
            "attempt": attempt,
        }
        try:
            await engine.warm_up(timeout_s)
            break
        except asyncio.CancelledError:
            raise
        except Exception as ex:  # any cause: say why, wait, try again
            delay = min(WARMUP_RETRY_MAX_S, 2.0 ** (attempt - 1))
            reason = str(ex) if isinstance(ex, EarmarkError) else f"{type(ex).__name__}: {ex}"
            log.error("warm-up attempt %d failed (%s); retrying in %g s", attempt, reason, delay)
            app.state.warmup = {
                "waiting_for": "warm-up retry",
                "attempt": attempt,
                "last_error": reason,
                "retry_in_s": delay,
            }
            await asyncio.sleep(delay)
    app.state.warmup = None
    app.state.ready = True
    app.state.metrics.ready.set(1)
    log.info("ready: model %s is warm (warm-up attempt %d)", engine.classifier.model_id, attempt)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def _earmark_error(request: Request, ex: EarmarkError) -> JSONResponse:
    status, code = error_status(ex)
    headers = {"Retry-After": str(ex.retry_after_s)} if isinstance(ex, ServerBusy) else None
    if isinstance(ex, _PRIVATE):
        log.error("%s %s: %s", request.method, request.url.path, ex)
        return _error(
            status, code, "the server cannot do this right now; the operator can see why in its log"
        )
    return _error(status, code, str(ex), headers)


async def _validation_error(request: Request, ex: RequestValidationError) -> JSONResponse:
    parts = []
    for err in ex.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return _error(422, "invalid_request", "; ".join(parts) or "invalid request")


async def _http_error(request: Request, ex: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}.get(ex.status_code, "http_error")
    detail = ex.detail if isinstance(ex.detail, str) else "request refused"
    return _error(ex.status_code, code, detail, dict(ex.headers) if ex.headers else None)


async def _internal_error(request: Request, ex: Exception) -> JSONResponse:
    ref = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=ex)
    return _error(500, "internal", f"internal error (reference {ref}); the details are in the server log")


def _version() -> str:
    from .. import __version__

    return __version__
