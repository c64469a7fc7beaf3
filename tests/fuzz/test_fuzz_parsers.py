"""Fuzz the request parsers: what a client's text, JSON and small files go through before any work.

Each parser may refuse an input only with the server's own errors (an
:class:`~earmark.errors.EarmarkError` subclass, translated to a 4xx), never with
anything else (a 500), and what it accepts must be safe to use.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earmark.audio.sniff import not_audio_kind
from earmark.errors import EarmarkError
from earmark.labels import MAX_TEMPLATE_CHARS, check_templates, parse_labels
from earmark.monitor.events import parse_since
from earmark.server.compat import _audio_payload
from earmark.server.page_guard import PageFiles, PageGuardMiddleware
from earmark.server.settings import SETTINGS, ServerSettings, parse_setting
from earmark.server.ui_live import read_wav
from earmark.server.uploads import display_name
from fuzz.harness import TARGETS, budget_s, run_for, watchdog

PARSERS = 8
FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(["path", "meta", "data", "url", "x"]), inner, max_size=5)
    ),
    max_leaves=40,
)


def _share() -> float:
    return budget_s(TARGETS * PARSERS)


def refuses_cleanly(fn: Any, *args: Any) -> Any:
    with watchdog():
        try:
            return fn(*args)
        except EarmarkError:
            return None


def test_fuzz_labels() -> None:
    @FUZZ
    @given(st.text(max_size=3000) | st.lists(st.text(max_size=300), max_size=50))
    def search(value: Any) -> None:
        labels = refuses_cleanly(parse_labels, value)
        if labels is not None:
            assert 2 <= len(labels) and all(label.strip() for label in labels)

    run_for(_share(), search)


def test_fuzz_templates() -> None:
    pieces = st.sampled_from(
        ["{label}", "{", "}", "{{", "}}", "{label:>9}", "{0}", "{label!r}", "{x}", "a", " "]
    )

    @FUZZ
    @given(
        st.lists(st.lists(pieces, max_size=12).map("".join) | st.text(max_size=250), min_size=0, max_size=20)
    )
    def search(templates: list[str]) -> None:
        ok = refuses_cleanly(check_templates, templates)
        if ok is not None:
            for t in ok:  # accepted: filling it in costs no more than its own length plus the label's
                assert len(t.format(label="x" * 200)) <= MAX_TEMPLATE_CHARS + 200 * t.count("{label}")

    run_for(_share(), search)


def test_fuzz_settings() -> None:
    @FUZZ
    @given(st.sampled_from([*SETTINGS, "nope", ""]), st.text(max_size=30))
    def search(name: str, value: str) -> None:
        refuses_cleanly(parse_setting, ServerSettings(), name, value)

    run_for(_share(), search)


def test_fuzz_predict_payload() -> None:
    @FUZZ
    @given(json_values | st.text(max_size=200).map(lambda s: "data:audio/wav;base64," + s))
    def search(item: Any) -> None:
        refuses_cleanly(_audio_payload, item)

    run_for(_share(), search)


def test_fuzz_page_json_bodies() -> None:
    guard = PageGuardMiddleware(None, PageFiles())

    @FUZZ
    @given(json_values.map(json.dumps).map(str.encode) | st.binary(max_size=300))
    def search(body: bytes) -> None:
        with watchdog():
            refusal = guard._refusal(body)
        assert refusal is None or 400 <= refusal[0] < 500

    run_for(_share(), search)


def test_fuzz_live_wav_chunks() -> None:
    header = st.sampled_from([b"RIFF\x00\x00\x00\x00WAVEfmt ", b"RIFF\xff\xff\xff\xffWAVE", b""])

    @FUZZ
    @given(header, st.binary(max_size=600))
    def search(head: bytes, rest: bytes) -> None:
        refuses_cleanly(read_wav, head + rest)

    run_for(_share(), search)


def test_fuzz_sniff_and_names() -> None:
    @FUZZ
    @given(st.binary(max_size=80), st.text(max_size=300))
    def search(head: bytes, filename: str) -> None:
        with watchdog():
            kind = not_audio_kind(head)
            name = display_name(filename)
        assert kind is None or isinstance(kind, str)
        assert "/" not in name and "\\" not in name and 0 < len(name) <= 120

    run_for(_share(), search)


def test_fuzz_since() -> None:
    @FUZZ
    @given(st.text(max_size=40))
    def search(text: str) -> None:
        refuses_cleanly(parse_since, text)

    run_for(_share(), search)
