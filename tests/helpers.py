"""Test helpers: synthetic sounds encoded to real files with ffmpeg."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from earmark import synth

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "tests" / "assets" / "tiny-clap"
LABELS = list(synth.SOUNDS)  # the tiny model's vocabulary

# ffmpeg output arguments per extension
CODECS: dict[str, list[str]] = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".ogg": ["-c:a", "libvorbis"],
    ".opus": ["-c:a", "libopus", "-b:a", "96k"],
    ".flac": ["-c:a", "flac"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".aiff": ["-c:a", "pcm_s16be"],
    ".webm": ["-c:a", "libopus"],
}


def earmark_env(home: Path) -> dict[str, str]:
    """Environment of an earmark subprocess: its own home, offline, this checkout's source, no key or model."""
    env = dict(
        os.environ,
        EARMARK_HOME=str(home),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("EARMARK_API_KEY", None)
    env.pop("EARMARK_MODEL", None)
    # set by a page this test process built (page_guard): the subprocess makes and removes its own
    env.pop("GRADIO_TEMP_DIR", None)
    return env


def encode(
    wave: np.ndarray,
    path: Path | str,
    *,
    rate: int = synth.RATE,
    out_rate: int | None = None,
    channels: int = 1,
    extra: list[str] | None = None,
) -> Path:
    """Write a float32 mono wave to ``path`` with ffmpeg; the format follows the extension.

    Args:
        wave: float32 samples at ``rate``.
        path: destination file.
        out_rate: resample to this rate in the file.
        channels: duplicate the signal into this many channels.
        extra: ffmpeg output arguments replacing the default codec choice.
    """
    path = Path(path)
    args = extra if extra is not None else CODECS.get(path.suffix.lower(), [])
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "f32le",
        "-ar",
        str(rate),
        "-ac",
        "1",
        "-i",
        "-",
    ]
    if channels != 1:
        cmd += ["-ac", str(channels)]
    if out_rate:
        cmd += ["-ar", str(out_rate)]
    cmd += [*args, str(path)]
    subprocess.run(cmd, input=np.asarray(wave, dtype=np.float32).tobytes(), check=True)
    return path


def sound_file(tmp: Path, kind: str, seconds: float, ext: str = ".wav", seed: int = 0) -> Path:
    """A synthetic sound of the tiny model's vocabulary, encoded to ``tmp/kind-seed.ext``."""
    return encode(synth.make(kind, seconds, seed=seed), tmp / f"{kind}-{seed}{ext}")


def labelled_folder(root: Path, spec: dict[str, list[np.ndarray]], ext: str = ".wav") -> Path:
    """A folder with one sub-folder per class: ``spec`` maps class name -> waves (48 kHz float32).

    Files are named ``<class>/<class>-<n><ext>``; returns ``root``.
    """
    for name, waves in spec.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for n, wave in enumerate(waves):
            encode(wave, root / name / f"{name}-{n}{ext}")
    return root


# --- web server (added by the web feature) ---------------------------------------------------------------

ARTIFACTS = ROOT / "test-artifacts"


class ServerProcess:
    """A real `earmark serve` (uvicorn on 127.0.0.1, a free port) in a subprocess, for tests.

    Args:
        args: extra command-line arguments (``--setting NAME VALUE``...).
        home: EARMARK_HOME for the server.
        model: model folder (default: the tiny test model).
        threads: ``--threads`` (default 1; None leaves serve's default).
    """

    def __init__(
        self,
        *args: str,
        home: Path,
        model: Path = TINY_MODEL,
        timeout_s: float = 90.0,
        nofile: int | None = None,
        threads: int | None = 1,
    ) -> None:
        import re
        import sys
        import threading
        import time

        env = earmark_env(home)
        self.log = home / "server.log"
        self._log_file = open(self.log, "wb")
        # one model thread unless asked (None: serve's default), as the `classifier` fixture: two OpenMP
        # threads on a busy 2-core machine stall
        cmd = [sys.executable, "-m", "earmark", "serve", "--model", str(model), "--port", "0"]
        cmd += ["--threads", str(threads)] if threads else []
        cmd += args

        def limit_files() -> None:  # nofile: the server's open-file limit (soft and hard)
            import resource

            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
            preexec_fn=limit_files if nofile else None,
        )
        self.lines: list[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        # a server that exits before announcing its URL fails at once, not at the deadline
        while not found.wait(0.5) and self.proc.poll() is None and time.monotonic() < deadline:
            pass
        if not found.is_set() or not self.wait_ready(deadline - time.monotonic()):
            self.stop()
            raise RuntimeError(f"earmark serve did not start; log:\n{self.log.read_text()[-3000:]}")

    def wait_ready(self, timeout_s: float) -> bool:
        import time

        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait; returns the exit code."""
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


def multipart_upload(
    fields: dict[str, str], filename: str, data: bytes, *, host: str = "test"
) -> tuple[bytes, bytes]:
    """(head, body) of ``POST /api/v1/classify`` as curl sends an upload (``Connection: close``)."""
    b = "earmarkboundary"
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    parts.append(
        f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {mimetypes.guess_type(filename)[0] or 'application/octet-stream'}\r\n\r\n"
    )
    body = "".join(parts).encode() + data + f"\r\n--{b}--\r\n".encode()
    head = (
        f"POST /api/v1/classify HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={b}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head, body


async def send_reading(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: bytes,
    body: bytes,
    *,
    turns: bool = False,
    timeout_s: float = 300,
) -> tuple[bytes, float]:
    """Send a request while reading its answer, as curl does: (the status line, seconds until it came).

    Args:
        turns: let the other clients of this process run after each 64 KB chunk, as clients on their own
            machines would. Without it ``drain()`` does not yield while the socket takes everything, so a
            client pushes its whole body before it reads: a client busy sending, which is what exposed
            the 429s lost to a reset (tests/test_server_live.py).

    Raises:
        OSError: the connection failed before a status line came.
        TimeoutError: none came within ``timeout_s`` (a hang guard).
    """
    start = time.perf_counter()
    writer.write(head)

    async def send_body() -> None:
        try:
            for i in range(0, len(body), 64 * 1024):
                writer.write(body[i : i + 64 * 1024])
                await writer.drain()
                if turns:
                    await asyncio.sleep(0)
        except OSError:
            pass  # the answer says why

    sender = asyncio.create_task(send_body())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
        return line, time.perf_counter() - start
    finally:
        await sender
