"""Gradio is imported without its type-stub generator (earmark.server.gradio_import), and works the same."""

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
from earmark.server.gradio_import import _no_stub
with gr.Blocks() as page:
    gr.Textbox(label="labels").change(lambda x: x, inputs=None, outputs=None)
print(meta.create_or_modify_pyi is _no_stub, type(page).__name__, len(page.fns))
"""
    assert _run(code) == "True Blocks 1"  # the hook is in place; a page with an event builds


def test_a_gradio_imported_before_earmark_is_left_alone() -> None:
    code = """
import sys
import gradio.component_meta as meta
before = meta.create_or_modify_pyi
from earmark.server.gradio_import import _SkipStubs, skip_stub_generation
skip_stub_generation()
print(meta.create_or_modify_pyi is before, any(isinstance(f, _SkipStubs) for f in sys.meta_path))
"""
    assert _run(code) == "True False"
