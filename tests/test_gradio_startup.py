"""Gradio starts without the work a mounted page never uses (earmark.server.gradio_startup), and works the same."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("gradio")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_page_imports_gradio_without_writing_stubs_and_builds() -> None:
    # a fresh process, as `earmark serve` starts: the page's import puts the hook in place first
    code = """
import earmark.server.ui as ui
import gradio as gr
import gradio.component_meta as meta
from earmark.server.gradio_startup import _no_stub
with gr.Blocks() as page:
    gr.Textbox(label="labels").change(lambda x: x, inputs=None, outputs=None)
print(meta.create_or_modify_pyi is _no_stub, type(page).__name__, len(page.fns))
"""
    assert _run(code) == "True Blocks 1"  # the hook is in place; a page with an event builds


def test_a_gradio_startuped_before_earmark_is_left_alone() -> None:
    code = """
import sys
import gradio.component_meta as meta
before = meta.create_or_modify_pyi
from earmark.server.gradio_startup import _SkipStubs, skip_stub_generation
skip_stub_generation()
print(meta.create_or_modify_pyi is before, any(isinstance(f, _SkipStubs) for f in sys.meta_path))
"""
    assert _run(code) == "True False"


def test_event_docstrings_read_as_jinja_renders_them() -> None:
    import jinja2
    from gradio.events import EventListener, Events

    from earmark.server.gradio_startup import render_doc

    templates = [e.copy().listener.__doc__ for e in vars(Events).values() if isinstance(e, EventListener)]
    templates = [t for t in templates if t]
    assert len(templates) > 20 and all("{{ component }}" in t for t in templates[:5]), templates[:2]
    for doc in [*templates, "Triggered on the {{ component }}.\n", "ends without a newline"]:
        assert render_doc(doc, "Audio") == jinja2.Template(doc).render(component="Audio"), doc
    # other template syntax is left to Jinja itself
    assert render_doc("{% if x %}y{% endif %} {{ component }}", "Audio") is None
    assert render_doc("a\r\nb {{ component }}", "Audio") is None


def test_the_page_built_with_bare_apps_is_served_by_the_mounted_app() -> None:
    # in a fresh process: the apps made while building have no routes; the mounted one serves the page
    code = """
import gradio as gr
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gradio import routes
from earmark.server.gradio_startup import bare_apps
real = routes.App.create_app
with bare_apps():
    with gr.Blocks() as page:
        box = gr.Textbox()
        box.submit(lambda x: x[::-1], inputs=box, outputs=box)
    page.queue(max_size=3)
    assert routes.App.create_app is not real
print(routes.App.create_app is real, len(page.app.routes), page.app.get_blocks() is page)
app = gr.mount_gradio_app(FastAPI(), page, path="/ui")
with TestClient(app) as client:
    config = client.get("/ui/config").json()
print(len(config["dependencies"]), page._queue.max_size)
"""
    real, routes, same, deps, size = _run(code).split()
    assert (real, same) == ("True", "True"), "create_app not restored, or the kept app lost its Blocks"
    assert int(routes) <= 5, f"an app made while building has {routes} routes: Gradio built it whole"
    assert (deps, size) == ("1", "3"), "the mounted page lost its event or its queue bound"
