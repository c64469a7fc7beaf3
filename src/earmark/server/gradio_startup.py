"""Import Gradio without its type-stub generator, which is most of a cold start's page cost.

Gradio 6 regenerates a ``.pyi`` stub for each of its component classes every time it is
imported (``gradio.component_meta.create_or_modify_pyi``: the class's source read and parsed,
a Jinja template rendered, the stub compared, and written into site-packages when missing).
The stubs serve IDEs working on Gradio itself; nothing reads them at run time. On a 2-core
AMD EPYC that is 1.2 of the 2.9 s ``import gradio`` takes (bench/RESULTS.md, "Cold start").

:func:`skip_stub_generation` makes that one function a no-op in the module it is defined
in, before the module's classes are built; all else Gradio does at import runs as usual. If a
Gradio release renames or drops it, nothing is skipped and the page works the same.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["skip_stub_generation"]

_MODULE = "gradio.component_meta"
_FUNCTION = "create_or_modify_pyi"


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

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _no_stub(*args: Any, **kwargs: Any) -> None:
    return None
