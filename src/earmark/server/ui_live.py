"""The Live tab: the browser microphone streams; every few seconds the newest window is classified.

Chunks arrive about every second as small WAV files written by the page: int16
mono at 48 kHz when the browser's voice processing is on, other rates and
channel counts (stereo, float) when it is off, as :file:`mic.js` asks. They are
parsed here in pure numpy (never handed to a native decoder in the server
process), resampled to the model's rate and kept in a rolling buffer.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np

from .. import audio as _audio
from ..audio.pcm import check_finite
from ..errors import AudioError, EarmarkError
from .errors import ServerBusy
from .i18n import pick_language, t
from .settings import ServerSettings
from .ui_packs import labels_and_pack, on_pack_change, pack_choice
from .ui_render import LiveResult, live_html, warnings_html

if TYPE_CHECKING:
    from ..adapt.packs import ClassifierPack

__all__ = ["LiveState", "build_live_tab", "read_wav"]

MAX_CHUNK_BYTES = 8 * 1024 * 1024
# how often the page sends microphone audio: each chunk is one upload and one call, so not too often
STREAM_EVERY_S = 1.0
MAX_HISTORY = 200
_DTYPES = {(1, 8): "u1", (1, 16): "<i2", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}


def read_wav(data: bytes, name: str = "microphone") -> tuple[int, np.ndarray]:
    """Parse a PCM or float WAV into ``(rate, samples (n, channels))``; nothing else is accepted.

    Raises:
        AudioError: not a WAV of a supported sample format, or too big for a live chunk.
    """
    if len(data) > MAX_CHUNK_BYTES:
        raise AudioError(name, "a live chunk is larger than 8 MB")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(name, "a live chunk must be a WAV file")
    fmt: tuple[int, ...] | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + size]  # a streaming writer may leave size unset: take what is there
        if cid == b"fmt " and len(body) >= 16:
            fmt = struct.unpack("<HHIIHH", body[:16])
            if (
                fmt[0] == 0xFFFE and len(body) >= 26
            ):  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the sub-format
                fmt = (int.from_bytes(body[24:26], "little"), *fmt[1:])
        elif cid == b"data":
            if fmt is None:
                raise AudioError(name, "the WAV chunk has no format header")
            return _samples(fmt, body, name)
        pos += 8 + size + (size & 1)
    raise AudioError(name, "the WAV chunk has no audio data")


def _samples(fmt: tuple[int, ...], body: bytes, name: str) -> tuple[int, np.ndarray]:
    tag, channels, rate, _, _, bits = fmt
    if not 1 <= channels <= 8:
        raise AudioError(name, f"has {channels} channels; 1 to 8 are supported")
    if bits == 24 and tag == 1:
        raw = np.frombuffer(body[: len(body) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)).astype(np.int32)
    elif (tag, bits) in _DTYPES:
        dtype = np.dtype(_DTYPES[(tag, bits)])
        x = np.frombuffer(body[: len(body) // dtype.itemsize * dtype.itemsize], dtype)
    else:
        raise AudioError(name, f"WAV sample format {tag}/{bits}-bit is not supported for live audio")
    x = x[: x.size // channels * channels].reshape(-1, channels)
    if x.dtype.kind == "f":
        x = x.astype(np.float32)
        check_finite(x, name)  # NaN, infinite or absurd float samples: refused as for files, never patched
    return int(rate), x


@dataclass
class LiveState:
    """One microphone session (one per browser tab): the rolling window and the answers so far.

    The page streams chunks about every second. Each chunk is only appended here,
    so the stream is answered at once and no chunk waits behind the model. When
    ``live_every_s`` of new audio has come and the model is free, the newest
    window is classified in the background; the next chunk shows the answer.
    A model slower than real time never builds a backlog: the windows it could
    not take in time are skipped (and counted, and shown), never queued.
    """

    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    heard_s: float = 0.0
    next_at_s: float = 0.0
    history: list[LiveResult] = field(default_factory=list)
    skipped: int = 0
    last_at_s: float | None = None
    task: asyncio.Task[Any] | None = field(default=None, repr=False)
    task_at_s: float = 0.0
    task_level: float = -120.0
    error: str | None = None
    warnings: str = ""

    def push(self, samples: np.ndarray, rate: int, window_s: float) -> None:
        keep = int(window_s * rate)
        self.buffer = np.concatenate([self.buffer, samples])[-keep:]
        self.heard_s += samples.size / rate

    def level_dbfs(self) -> float:
        rms = float(np.sqrt(np.mean(np.square(self.buffer, dtype=np.float64)))) if self.buffer.size else 0.0
        return float(20 * np.log10(max(rms, 1e-6)))

    @property
    def classified_s(self) -> float:
        """Seconds of audio (from the start of the stream) up to the end of the newest classified window."""
        return self.history[-1].at_s if self.history else 0.0

    def due(self, every_s: float) -> bool:
        """A window is due (enough new audio) and the model is free for it."""
        return self.task is None and self.heard_s + 1e-6 >= max(self.next_at_s, every_s)

    def start(self, work: Any, every_s: float) -> asyncio.Task[Any]:
        """Classify the newest window in the background; windows passed over meanwhile count as skipped."""
        if self.last_at_s is not None:
            self.skipped += max(0, int((self.heard_s - self.last_at_s + 1e-6) / every_s) - 1)
        self.last_at_s = self.heard_s
        self.next_at_s = self.heard_s + every_s
        self.task_at_s, self.task_level = self.heard_s, self.level_dbfs()
        self.task = asyncio.ensure_future(work)
        return self.task

    def collect(self, lang: str) -> bool:
        """Take the background answer (or its error) if it is ready; True when there is news to show."""
        task = self.task
        if task is None or not task.done():
            return False
        self.task = None
        try:
            p = task.result()
        except ServerBusy as ex:
            self.error = t("busy", lang, s=ex.retry_after_s)
            return True
        except EarmarkError as ex:
            self.error = t("error", lang, reason=str(ex))
            return True
        self.error, self.warnings = None, warnings_html(p.labels, lang)
        self.history = [
            *self.history[-(MAX_HISTORY - 1) :],
            LiveResult(
                at_s=round(self.task_at_s, 1),
                top=p.top.label,
                probability=p.top.probability,
                uncertain=p.uncertain,
                level_dbfs=round(self.task_level, 1),
                labels=p.labels,
            ),
        ]
        return True


def chunk_samples(path: str, model_rate: int) -> np.ndarray:
    """A streamed chunk file as float32 mono at the model's rate."""
    rate, x = read_wav(Path(path).read_bytes())
    if x.shape[0] == 0:
        return np.zeros(0, np.float32)
    return _audio.decode(x, input_rate=rate, sample_rate=model_rate, name="microphone")


def make_handler(
    runner: Any,
    settings: ServerSettings,
    packs: Mapping[str, ClassifierPack] | None = None,
    *,
    wait: bool = False,
) -> Callable[..., Any]:
    """The stream handler: buffer each chunk; every ``live_every_s`` of audio, classify the newest window.

    ``wait=True`` awaits each classification before answering (scripts and tests):
    the page never waits, so the stream keeps real time.
    """

    async def on_chunk(
        path: str | None,
        labels: str,
        threshold: float,
        state: LiveState | None,
        choice: str | None,
        request: gr.Request,
    ) -> tuple[Any, LiveState]:
        lang = pick_language(request.headers.get("accept-language") if request else None)
        state = state if isinstance(state, LiveState) else LiveState()
        if not path:
            return gr.skip(), state
        try:
            state.push(chunk_samples(path, runner.sample_rate), runner.sample_rate, settings.live_window_s)
        except AudioError as ex:
            return _message(t("error", lang, reason=str(ex))), state
        news = state.collect(lang)
        if state.due(settings.live_every_s):
            try:
                label_set, pack = labels_and_pack(packs or {}, choice, labels)
                opts = runner.options(
                    threshold=threshold, window_s=settings.live_window_s, hop_s=settings.live_window_s
                )
            except EarmarkError as ex:
                state.next_at_s = state.heard_s + settings.live_every_s
                state.error, news = t("error", lang, reason=str(ex)), True
            else:
                work = runner.classify_samples(
                    state.buffer.copy(), label_set, opts, name="microphone", pack=pack
                )
                task = state.start(work, settings.live_every_s)
                if wait:
                    await asyncio.wait({task})
                    news = state.collect(lang) or news
        if not news:
            return gr.skip(), state
        return _panel(state, lang, settings), state

    return on_chunk


def _panel(state: LiveState, lang: str, settings: ServerSettings) -> str:
    note = _message(state.error) if state.error else state.warnings
    return note + live_html(
        state.history,
        lang,
        window_s=settings.live_window_s,
        every_s=settings.live_every_s,
        heard_s=state.heard_s,
        skipped=state.skipped,
    )


def _message(text: str) -> str:
    from html import escape

    return f'<div class="em-live em-error" role="alert">{escape(text)}</div>'


def build_live_tab(
    runner: Any, settings: ServerSettings, i18n: Any, packs: Mapping[str, ClassifierPack]
) -> None:
    """Components and events of the Live tab (call inside ``gr.Tab``); ``packs`` adds the Classifier choice."""
    gr.Markdown(i18n("live_intro"))
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown(i18n("live_mic"), elem_classes="em-caption")
            mic = gr.Audio(
                sources=["microphone"],
                streaming=True,
                type="filepath",
                label="microphone",
                show_label=False,
                elem_id="em-live-mic",
            )
            pack, pack_note = pack_choice(packs, i18n, elem_id="em-live-pack")
            labels = gr.Textbox(
                label=i18n("labels"),
                lines=2,
                value="speech, music, dog barking, silence",
                elem_id="em-live-labels",
            )
            threshold = gr.Slider(
                0, 1, value=0.7, step=0.01, label=i18n("threshold"), elem_id="em-live-threshold"
            )
            clear = gr.Button(i18n("live_clear"), elem_id="em-live-clear", size="sm")
            gr.Markdown(i18n("live_stream_note"))
        with gr.Column(scale=2):
            panel = gr.HTML(elem_id="em-live-panel")
    state = gr.State(None)
    on_pack_change(pack, pack_note, labels, [], packs)
    mic.stream(
        make_handler(runner, settings, packs),
        [mic, labels, threshold, state, pack],
        [panel, state],
        stream_every=STREAM_EVERY_S,
        time_limit=None,
        concurrency_limit=settings.live_sessions,
        show_progress="hidden",
        api_name="live_chunk",
    )
    # a new recording starts a new window; the history stays until cleared
    mic.start_recording(_restart, [state], [state], show_progress="hidden", api_visibility="private")
    clear.click(_clear, None, [panel, state], show_progress="hidden", api_visibility="private")


def _clear() -> tuple[str, None]:
    return "", None


def _restart(state: LiveState | None) -> LiveState | None:
    if isinstance(state, LiveState):
        return LiveState(history=state.history)
    return state
