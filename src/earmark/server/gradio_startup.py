"""Gradio's start-up work that a mounted earmark page never uses, skipped: most of a cold start.

Measured on a 2-core AMD EPYC (bench/RESULTS.md, "Cold start"); each part leaves Gradio as it is
when a release renames or drops what it replaces, and the page works the same.

- **Type stubs** (:func:`skip_stub_generation`): Gradio 6 regenerates a ``.pyi`` stub for each
  component class on every import (``gradio.component_meta.create_or_modify_pyi``: the class's
  source read and parsed, a Jinja template rendered, the stub compared, and written into
  site-packages when missing). They serve IDEs working on Gradio itself; nothing reads them at
  run time. 1.2 of the 2.9 s ``import gradio`` took.
- **Event docstrings**: each component class renders each of its events' docstrings as a Jinja
  template whose only placeholder is ``{{ component }}`` (``EventListener.set_doc``, ~200
  templates compiled). The same text comes from a string replacement; a docstring with any other
  template syntax is still rendered by Jinja.
- **Apps nobody serves** (:func:`bare_apps`): see there.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

__all__ = ["bare_apps", "skip_stub_generation"]

_MODULE = "gradio.component_meta"
_FUNCTION = "create_or_modify_pyi"
_PLACEHOLDER = "{{ component }}"


def skip_stub_generation() -> None:
    """Call before ``import gradio``; a no-op once Gradio is imported or the hook is in place."""
    if _MODULE in sys.modules or any(isinstance(f, _SkipStubs) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _SkipStubs())


class _SkipStubs(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` as usual and replaces the generator once the module has run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        sys.meta_path.remove(self)  # once; and so that the search below finds the real module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if callable(getattr(module, _FUNCTION, None)):
                setattr(module, _FUNCTION, _no_stub)
            # gradio.events is imported by now, and no component class is built yet
            listener = getattr(sys.modules.get("gradio.events"), "EventListener", None)
            if listener is not None and callable(getattr(listener, "set_doc", None)):
                listener.set_doc = _set_doc_fast(listener.set_doc)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _no_stub(*args: Any, **kwargs: Any) -> None:
    return None


def render_doc(doc: str, component: str) -> str | None:
    """``doc`` as Jinja renders it with ``component``, when its only template syntax is the placeholder.

    None when it has other syntax (or a carriage return, which Jinja rewrites): Jinja must render it.
    Jinja also drops one trailing newline (``keep_trailing_newline`` is off by default).
    """
    rest = doc.replace(_PLACEHOLDER, "")
    if "\r" in doc or any(mark in rest for mark in ("{{", "{%", "{#")):
        return None
    out = doc.replace(_PLACEHOLDER, component)
    return out[:-1] if out.endswith("\n") else out


def _set_doc_fast(jinja_set_doc: Any) -> Any:
    def set_doc(self: Any, component: str) -> None:
        doc = self.listener.__doc__
        if not doc:
            return
        fast = render_doc(doc, component)
        if fast is None:
            jinja_set_doc(self, component)
        else:
            self.listener.__doc__ = fast

    return set_doc


@contextlib.contextmanager
def bare_apps() -> Iterator[None]:
    """While a page's Blocks is built and queued, each app Gradio makes for it is a bare one.

    Gradio 6 builds a whole FastAPI app for a Blocks (some 90 routes, each analysed by FastAPI:
    0.15 s here) in ``Blocks.__init__``, again in ``__exit__`` and again in ``queue()``, each one
    replacing the last as ``blocks.app``. A mounted page is served by the app
    ``gr.mount_gradio_app`` builds afterwards, so none of those three is ever served; the last is
    kept as ``blocks.app``, from which the page's queue reads session state and the root path.
    Here each of them is an ``App`` configured with the Blocks (``configure_app``, the state the
    queue reads), without routes or middleware. ``mount_gradio_app`` is called after this block
    and builds the app that serves, as usual.
    """
    try:
        from gradio import routes
    except ImportError:  # no page extra: nothing to build
        yield
        return
    app_class: Any = routes.App
    real = app_class.__dict__.get("create_app")
    if not isinstance(real, staticmethod) or not callable(getattr(app_class, "configure_app", None)):
        yield  # a Gradio this was not written for: build as it does
        return

    def bare(blocks: Any, app: Any = None, app_kwargs: dict[str, Any] | None = None, **_: Any) -> Any:
        made = app_class(**{k: v for k, v in (app_kwargs or {}).items() if k != "lifespan"})
        made.configure_app(blocks)
        return made

    app_class.create_app = staticmethod(bare)
    try:
        yield
    finally:
        app_class.create_app = real
