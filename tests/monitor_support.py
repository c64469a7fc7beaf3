"""Real parts for the monitor tests: a live HTTP audio stream process, a mosquitto broker,
a webhook receiver, an MQTT subscriber. Run as a script, this file is the stream server:

    python tests/monitor_support.py stream PORT [USER:PASSWORD]

It serves ``/live.wav``: an endless 16 kHz mono WAV of mains hum, paced at real time,
like an Icecast or camera HTTP stream; and ``/stall.wav``: one second of it, then nothing
while the connection stays open (a stalled camera).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def wait_for(predicate: Any, timeout_s: float, what: str, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


class Process:
    """A server process on a fixed port that a test can stop and start again."""

    def __init__(self, args: list[str], port: int) -> None:
        self.args, self.port = args, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        self.proc = subprocess.Popen(
            self.args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        atexit.register(self.stop)  # even when a test run ends while a background scenario still runs
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def stream_server(port: int, credentials: str | None = None) -> Process:
    args = [sys.executable, str(Path(__file__)), "stream", str(port)] + ([credentials] if credentials else [])
    return Process(args, port)


def mosquitto(port: int, folder: Path) -> Process:
    """mosquitto on 127.0.0.1:port with persistence in ``folder`` (sessions survive a restart)."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {folder}/\nautosave_interval 1\nlog_dest none\n"
    )
    return Process([MOSQUITTO, "-c", str(conf)], port)


class MqttCollector:
    """Subscribes to a topic filter with a persistent session, through broker restarts."""

    def __init__(self, port: int, topic: str = "#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{port}", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda c, u, f, r, p=None: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/event")]

    def statuses(self) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith("/status")]

    def topics(self) -> dict[str, bytes]:
        with self._lock:
            return {t: p for t, p, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that answers with scripted statuses and records each request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": body, "status": status, "time": time.monotonic()}
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _serve_stream(port: int, credentials: str | None) -> None:
    """Serve an endless real-time WAV of hum on /live.wav (Basic auth when credentials are given)."""
    import numpy as np

    from earmark import synth

    rate = 16_000
    hum = (synth.make("hum", 4.0, seed=1, rate=rate) * 32767).astype("<i2").tobytes()
    header = _wav_header(rate)
    expected = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            if expected and self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="stream"')
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.end_headers()
            self.wfile.write(header)
            if self.path.startswith("/stall"):
                self.wfile.write(hum[: 2 * rate])
                self.wfile.flush()
                time.sleep(3600)
                return
            step, pos, start = rate // 10 * 2, 0, time.monotonic()
            try:
                while True:
                    part = hum[pos % len(hum) : pos % len(hum) + step] or hum[:step]
                    self.wfile.write(part)
                    pos += len(part)
                    # real time: never more than 0.2 s ahead of the clock
                    ahead = start + pos / 2 / rate - time.monotonic() - 0.2
                    if ahead > 0:
                        time.sleep(ahead)
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, *args: Any) -> None:
            pass

    def orphaned() -> None:  # exit with the test process that started this server
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    del np


def _wav_header(rate: int) -> bytes:
    import struct

    size = 0x7FFFFFF0  # "endless": a size no stream reaches
    return (
        b"RIFF"
        + struct.pack("<I", size + 36)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "stream":
        _serve_stream(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        sys.exit(__doc__)
