"""The Gradio page: Classify and Live tabs (plus tabs other features add), in English and Chinese.

``build_ui(classifier)`` returns a ``gr.Blocks``; :func:`mount_ui` mounts it on
the FastAPI app with what the page needs in its ``<head>``: the microphone
script (:file:`mic.js`), the stylesheet and the interface text. Handlers go
through a *runner*: the app's serving engine when mounted by ``create_app``
(shared queue, batching, isolated decoding), or the classifier directly when
the page runs on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from ..paths import earmark_home
from ..types import ClassifyOptions, Prediction
from .errors import ServerBusy
from .gradio_startup import bare_apps, skip_stub_generation
from .i18n import MESSAGES
from .settings import ServerSettings

skip_stub_generation()  # before Gradio's first import: ~40 % of it (see the module)
try:
    import gradio as gr
except ImportError:  # pragma: no cover - depends on the install
    raise MissingExtraError("the web page", "ui") from None

if TYPE_CHECKING:
    import numpy as np

    from ..adapt.packs import ClassifierPack
    from ..classify import Classifier
    from ..store import Database

__all__ = ["AppRunner", "DirectRunner", "build_ui", "gradio_types", "mount_ui", "page_assets", "ui_text"]

KEY_PREFIX = "earmark_"
MIC_JS = (Path(__file__).with_name("mic.js")).read_text(encoding="utf-8")

CSS = """
.em-summary .em-answer, .em-live .em-answer { font-size: 1.8em; font-weight: 700; }
.em-uncertain { color: #b45309; }
.em-p { font-size: 0.6em; font-weight: 500; opacity: 0.8; }
.em-level { font-size: 0.45em; font-weight: 400; opacity: 0.7; margin-left: 1em; }
.em-detail, .em-meta { opacity: 0.8; margin: 0.2em 0; }
.em-warning { background: #fef3c7; color: #78350f; border-left: 4px solid #d97706; padding: 0.5em 0.8em; margin: 0.5em 0; }
.em-error { color: #b91c1c; font-size: 1em; }
.em-bars { display: flex; flex-direction: column; gap: 3px; }
.em-bar-row { display: grid; grid-template-columns: 11em 1fr 4.5em; align-items: center; gap: 0.5em; opacity: 0.75; }
.em-bar-row.em-top { opacity: 1; font-weight: 600; }
.em-bar-label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.em-bar-track { position: relative; height: 0.9em; background: rgba(127,127,127,0.15); border-radius: 3px; }
.em-bar-fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 3px; }
.em-bar-threshold { position: absolute; top: -3px; bottom: -3px; width: 2px; background: #111; opacity: 0.6; }
.em-bar-value { text-align: right; font-variant-numeric: tabular-nums; }
.em-timeline-svg, .em-live-svg { width: 100%; height: auto; }
.em-lane-label, .em-tick { font-size: 11px; fill: currentColor; }
.em-segments, .em-live-table { width: 100%; font-variant-numeric: tabular-nums; }
.em-legend { display: flex; flex-wrap: wrap; gap: 0.3em 1.2em; list-style: none; padding: 0; margin: 0.3em 0; font-size: 0.9em; }
.em-legend li { display: flex; align-items: center; gap: 0.35em; }
.em-swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; }
.em-swatch-faint { background: currentColor; opacity: 0.3; }
.em-live-row.em-uncertain td { opacity: 0.75; font-style: italic; }
.em-skipped { color: #b45309; }
"""


def page_assets() -> dict[str, Any]:
    """What the page needs beyond its components: ``head`` (mic script), ``css``, ``i18n``.

    Pass them to ``gr.mount_gradio_app`` or ``Blocks.launch`` when using the page on its own.
    """
    # keys get a prefix: Gradio's own translations use plain words ("audio", "file"...) as namespaces
    translations = {lang: {KEY_PREFIX + k: v for k, v in table.items()} for lang, table in MESSAGES.items()}
    translations["zh"] = translations["zh-CN"]  # browsers that say only "zh"
    return {"head": f"<script>{MIC_JS}</script>", "css": CSS, "i18n": gr.I18n(**translations)}


def ui_text(key: str) -> Any:
    """Interface text that the browser shows in its language (a key of :data:`~.i18n.MESSAGES`)."""
    from gradio.i18n import I18nData

    return I18nData(KEY_PREFIX + key)


def gradio_types(fn: Any) -> Any:
    """Annotations as classes: Gradio fills ``gr.Request``/``gr.SelectData`` parameters by their type,
    and a string annotation (``from __future__ import annotations``) naming a local import is not resolved."""
    known = {"gr.Request": gr.Request, "gr.SelectData": gr.SelectData}
    fn.__annotations__ = {
        k: known.get(v, v) if isinstance(v, str) else v for k, v in fn.__annotations__.items()
    }
    return fn


class DirectRunner:
    """Handlers call the classifier in a thread (the page on its own, without the serving engine)."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    @property
    def sample_rate(self) -> int:
        return self.classifier.sample_rate

    def options(self, **overrides: Any) -> ClassifyOptions:
        return self.classifier.resolve_options(None, **overrides)

    async def classify(
        self,
        data: Any,
        labels: Any,
        options: ClassifyOptions,
        *,
        name: str,
        pack: ClassifierPack | None = None,
    ) -> Prediction:
        fn = partial(self.classifier.classify, data, labels, name=name, options=options, pack=pack)
        return await asyncio.to_thread(fn)

    async def classify_samples(
        self,
        samples: np.ndarray,
        labels: Any,
        options: ClassifyOptions,
        *,
        name: str,
        pack: ClassifierPack | None = None,
    ) -> Prediction:
        fn = partial(
            self.classifier.classify,
            samples,
            labels,
            input_rate=self.sample_rate,
            name=name,
            options=options,
            pack=pack,
        )
        return await asyncio.to_thread(fn)


class AppRunner:
    """Handlers go through the app's serving engine (started by the app's lifespan)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def _engine(self) -> Any:
        engine = self.app.state.engine
        if engine is None:
            raise ServerBusy(1)  # still starting
        return engine

    @property
    def sample_rate(self) -> int:
        return int(self.app.state.classifier.sample_rate)

    def options(self, **overrides: Any) -> ClassifyOptions:
        return self.app.state.classifier.resolve_options(None, **overrides)  # type: ignore[no-any-return]

    async def classify(
        self,
        data: Any,
        labels: Any,
        options: ClassifyOptions,
        *,
        name: str,
        pack: ClassifierPack | None = None,
    ) -> Prediction:
        return await self._engine().classify(data, labels, options, name=name, pack=pack)  # type: ignore[no-any-return]

    async def classify_samples(
        self,
        samples: np.ndarray,
        labels: Any,
        options: ClassifyOptions,
        *,
        name: str,
        pack: ClassifierPack | None = None,
    ) -> Prediction:
        prediction: Prediction = await self._engine().classify_samples(
            samples, labels, options, name=name, pack=pack
        )
        return prediction


def build_ui(
    classifier: Classifier,
    db: Database | None = None,
    extra_tabs: Sequence[tuple[str, Callable[[], None]]] = (),
    *,
    runner: Any = None,
    settings: ServerSettings | None = None,
    packs: Mapping[str, ClassifierPack] | None = None,
) -> gr.Blocks:
    """The page: Classify and Live tabs, then ``extra_tabs``.

    Args:
        classifier: the model the page uses.
        db: the store, for tabs that need one (passed on by whoever builds them).
        extra_tabs: ``(title, build_fn)`` pairs; ``build_fn()`` is called inside
            its ``gr.Tab`` and adds that tab's components and events.
        runner: how handlers classify (default: the classifier directly, in a thread).
        settings: live window/cadence and concurrency (default :class:`ServerSettings`).
        packs: classifier packs the Classify and Live tabs offer by name (checked to run on
            ``classifier``'s model by whoever loaded them: ``create_app`` does).

    Returns:
        The ``gr.Blocks``; mount it with :func:`mount_ui` (``create_app`` does).
    """
    from .ui_classify import build_classify_tab, make_examples
    from .ui_live import build_live_tab

    settings = settings or ServerSettings()
    runner = runner or DirectRunner(classifier)
    i18n = ui_text
    examples = make_examples(earmark_home() / "examples")
    # the apps Gradio makes while building are never served: mount_ui builds the one that is
    with bare_apps():
        with gr.Blocks(title="earmark", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
            gr.Markdown(i18n("title"), elem_id="em-title")
            gr.Markdown(i18n("intro"))
            with gr.Tabs():
                with gr.Tab(i18n("tab_classify"), id="classify"):
                    build_classify_tab(runner, settings, i18n, examples, packs or {})
                # rendered with the page: the microphone loads its recorder before anyone presses record
                with gr.Tab(i18n("tab_live"), id="live", render_children=True):
                    build_live_tab(runner, settings, i18n, packs or {})
                for title, build_fn in extra_tabs:
                    with gr.Tab(title):
                        build_fn()
            gr.Markdown(f"model: `{classifier.model_id}`", elem_id="em-model")
            # Gradio's "Use via API" panel lists the page's internal events; the API to use is the REST one
            gr.Markdown(i18n("api_links"), elem_id="em-api")
        # Gradio's own queue is bounded too: past it the page says the queue is full
        blocks.queue(max_size=4 * settings.capacity + 4 * settings.live_sessions)
    _refuse_url_fetches(blocks.blocks.values())
    blocks.earmark_examples_dir = str(earmark_home() / "examples")
    built: gr.Blocks = blocks
    return built


def _refuse_url_fetches(components: Iterable[Any]) -> None:
    """Gradio downloads a file value given as a URL; the server never fetches what a client names."""
    for component in components:
        for name in ("move_resource_to_block_cache", "async_move_resource_to_block_cache"):
            if hasattr(component, name):
                setattr(component, name, _guarded(getattr(component, name)))


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value.split("?")[0][:16]


def _guarded(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    message = "the server never fetches URLs; upload the file itself"
    if asyncio.iscoroutinefunction(original):

        async def acheck(value: Any) -> Any:
            if _is_url(value):
                raise gr.Error(message)
            return await original(value)

        return acheck

    def check(value: Any) -> Any:
        if _is_url(value):
            raise gr.Error(message)
        return original(value)

    return check


def mount_ui(app: Any, blocks: gr.Blocks, settings: ServerSettings, *, path: str = "/ui") -> Any:
    """Mount the page on ``app`` at ``path``, with its head script, styles and translations."""
    examples_dir = getattr(blocks, "earmark_examples_dir", None)
    return gr.mount_gradio_app(
        app,
        blocks,
        path=path,
        # Gradio's non-queued calls (picking an example) build file URLs from root_path alone:
        # without it the example's player asks /gradio_api/file=... instead of /ui/gradio_api/file=...
        root_path=path,
        footer_links=["settings"],  # no Gradio API panel: the page links the REST API docs instead
        run_history=False,
        allowed_paths=[examples_dir] if examples_dir else None,
        max_file_size=settings.max_upload_bytes,
        show_error=True,
        **page_assets(),
    )
