"""Attacks on `earmark serve`, each sent as written to a real uvicorn on 127.0.0.1 (issue 16).

Every probe must be answered with a refusal (a 4xx in the documented
``{"error": {"code", "message"}}`` shape), and ``/livez`` must still answer
afterwards: a hang check, retried for a while so a loaded machine does not fail
it, while a server stuck on the attack never answers at all.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from helpers import ServerProcess

pytestmark = pytest.mark.server

FILEDATA = {"_type": "gradio.FileData"}
LIVEZ_WITHIN_S = 1.0
HANG_WINDOW_S = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("security-home")
    proc = ServerProcess(home=home)
    yield proc
    proc.stop()


def assert_alive(server: ServerProcess, after: str) -> None:
    """``/livez`` answers within 1 s at least once in a generous window (a hang never does)."""
    deadline = time.monotonic() + HANG_WINDOW_S
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, f"the server died after {after}"
        try:
            if httpx.get(server.url + "/livez", timeout=LIVEZ_WITHIN_S).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"/livez stopped answering after {after}: one request took the server down")


def raw_request(
    server: ServerProcess, method: str, path: str, body: bytes | None = None, streams: bool = False
) -> tuple[int, bytes]:
    """A request sent exactly as written: no client-side normalisation of ``..`` or ``%2f``.

    With ``streams``, an event stream (Gradio's heartbeat never ends) is answered by its
    status and an empty body: its body is events, never a file.
    """
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"content-type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    if streams and (r.getheader("content-type") or "").startswith("text/event-stream"):
        out = r.status, b""
    else:
        out = r.status, r.read()
    conn.close()
    return out


def assert_refused(
    status: int, body: bytes, what: str, codes: tuple[int, ...] = (400, 403, 404)
) -> dict[str, Any]:
    assert status in codes, f"{what}: answered {status}, not a refusal"
    doc = json.loads(body)
    assert set(doc["error"]) == {"code", "message"}, (
        f"{what}: the error is not in the documented shape: {doc}"
    )
    return doc


def page_call(
    server: ServerProcess, value: Any, template: str = "This is a sound of {label}."
) -> httpx.Response:
    return httpx.post(
        server.url + "/ui/gradio_api/call/classify",
        json={"data": [value, "beep, hum", 0.7, template, None]},
        timeout=30,
    )


# --- 1. server paths through the page's API -----------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/dev/zero", "/etc/passwd", "/etc/shadow", "/root", "/proc/self/environ", "../../etc/passwd", ""]
)
def test_the_page_api_never_reads_a_server_path(server: ServerProcess, path: str) -> None:
    r = page_call(server, {"path": path, "meta": FILEDATA})
    doc = assert_refused(r.status_code, r.content, f"page call with path {path!r}", (400,))
    assert doc["error"]["code"] == "file_refused"
    assert "Errno" not in r.text and (not path or path not in r.text), "the refusal names no server path"
    assert_alive(server, f"a page call naming {path!r}")


def test_a_server_path_leaves_no_copy_in_the_page_folder(server: ServerProcess) -> None:
    page_call(server, {"path": "/etc/passwd", "meta": FILEDATA})
    folders = list(Path("/tmp").glob("earmark-page-*")) + list(Path(server.log).parent.glob("**/passwd"))
    copies = [p for folder in folders for p in folder.rglob("passwd")]
    assert copies == [], f"the server copied /etc/passwd into {copies}"


def test_an_upload_through_the_page_still_classifies(server: ServerProcess) -> None:
    example = Path(server.log).parent / "examples" / "beep.wav"
    up = httpx.post(server.url + "/ui/gradio_api/upload", files={"files": ("b.wav", example.read_bytes())})
    assert up.status_code == 200, up.text
    r = page_call(server, {"path": up.json()[0], "meta": FILEDATA})
    assert r.status_code == 200, r.text
    events = httpx.get(server.url + f"/ui/gradio_api/call/classify/{r.json()['event_id']}", timeout=60).text
    assert "event: complete" in events and 'data-label=\\"beep\\"' in events, events[:500]


def test_the_page_folder_is_private_and_removed_at_exit(tmp_path: Path) -> None:
    """Uploads live in the server's own 0700 folder, gone (with every copy in it) after SIGTERM."""
    import stat

    own = ServerProcess(home=tmp_path)
    try:
        example = Path(own.log).parent / "examples" / "beep.wav"
        up = httpx.post(own.url + "/ui/gradio_api/upload", files={"files": ("b.wav", example.read_bytes())})
        assert up.status_code == 200, up.text
        uploaded = Path(up.json()[0])
        folder = next(p for p in uploaded.parents if p.name.startswith("earmark-page-"))
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, f"{folder} is readable by other users"
    finally:
        code = own.stop()
    assert code == 0, f"earmark serve exited {code} on SIGTERM"
    assert not folder.exists(), f"the page's uploads were left behind in {folder}"


# --- 2. no URL fetching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ui/gradio_api/file=http://127.0.0.1:9/x.wav",
        "/ui/gradio_api/file=https://127.0.0.1:9/x.wav",
        "/ui/gradio_api/file=HTTP://127.0.0.1:9/x.wav",
        "/ui/gradio_api/file=http%3A%2F%2F127.0.0.1%3A9%2Fx.wav",
        "/ui/gradio_api/file=//127.0.0.1:9/x.wav",
        "/ui/gradio_api/proxy=http://127.0.0.1:9/x.wav",
        "/ui/gradio_api/file/http://127.0.0.1:9/x.wav",
    ],
)
def test_no_route_fetches_a_url(server: ServerProcess, path: str) -> None:
    status, body = raw_request(server, "GET", path)
    doc = assert_refused(status, body, path)
    assert doc["error"]["code"] in ("url_refused", "not_found"), doc
    assert_alive(server, path)


def test_the_page_api_never_fetches_a_url_named_as_a_file(server: ServerProcess) -> None:
    r = page_call(server, {"path": "http://127.0.0.1:9/x.wav", "meta": FILEDATA})
    assert (
        assert_refused(r.status_code, r.content, "page call with a URL", (400,))["error"]["code"]
        == "url_refused"
    )
    assert_alive(server, "a page call naming a URL as its file")


def test_no_url_probe_reaches_a_listener(server: ServerProcess) -> None:
    """Every way to name a URL, aimed at a live listener on 127.0.0.1: it must never be connected to."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    hits: list[str] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            hits.append(conn.recv(200).decode("latin-1").split("\r\n")[0])
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/x.wav"
    try:
        for path in (
            f"/ui/gradio_api/file={url}",
            f"/ui/gradio_api/proxy={url}",
            f"/ui/gradio_api/file/{url}",
        ):
            status, _ = raw_request(server, "GET", path)
            assert status >= 400, f"{path} answered {status}"
        page_call(server, {"path": url, "meta": FILEDATA})
        page_call(server, {"path": url, "url": url, "meta": FILEDATA})
        httpx.post(server.url + "/api/predict", json={"data": [url, "beep, hum"]}, timeout=30)
        httpx.post(
            server.url + "/api/predict", json={"data": [{"name": "x", "data": url}, "beep, hum"]}, timeout=30
        )
        httpx.post(server.url + "/api/v1/classify", data={"labels": "beep, hum", "file": url}, timeout=30)
        assert_alive(server, "URL probes")
    finally:
        done.set()
        thread.join(5)
        listener.close()
    assert hits == [], f"the server fetched a client-named URL: {hits}"


def test_gradio_errors_come_in_the_documented_shape(server: ServerProcess) -> None:
    status, body = raw_request(server, "GET", "/ui/gradio_api/file=/etc/passwd")
    assert_refused(status, body, "file=/etc/passwd")
    assert b"/etc/passwd" not in body, "the refusal does not echo the path"
    status, body = raw_request(server, "GET", "/ui/gradio_api/no-such-route")
    assert_refused(status, body, "an unknown page route")
    assert_alive(server, "file=/etc/passwd and an unknown page route")


# --- 3. templates: {label} only ---------------------------------------------------------------------

HUGE_TEMPLATES = [
    "{label}{label:>10000000}",
    "{label!r}{label}",
    "{label} {0}",
    "{label.__class__}",
    "x" * 300 + "{label}",
]


@pytest.fixture(scope="module")
def beep_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from helpers import sound_file

    return sound_file(tmp_path_factory.mktemp("beep"), "beep", 2.0).read_bytes()


@pytest.mark.parametrize("template", HUGE_TEMPLATES)
def test_the_api_refuses_a_template_with_more_than_label(
    server: ServerProcess, beep_wav: bytes, template: str
) -> None:
    r = httpx.post(
        server.url + "/api/v1/classify",
        files={"file": ("b.wav", beep_wav)},
        data={"labels": "beep, hum", "template": template},
        timeout=60,
    )
    doc = assert_refused(r.status_code, r.content, f"template {template[:30]!r}", (422,))
    assert doc["error"]["code"] == "invalid_options" and "template" in doc["error"]["message"]
    r = httpx.post(server.url + "/api/v1/embed", data={"texts": ["beep"], "template": template}, timeout=60)
    assert_refused(r.status_code, r.content, f"embed template {template[:30]!r}", (422,))
    assert_alive(server, f"template {template[:30]!r}")


def page_refused(events: str, reason: str) -> bool:
    """What the user sees on the page for a refused input: the error block in the result area with the
    reason in words (Gradio's own error event would be a red pill that vanishes), and no scores."""
    if "event: error" in events:
        return reason in events
    return 'data-error=\\"true\\"' in events and reason in events and "em-error" in events


def test_the_page_refuses_a_huge_template(server: ServerProcess) -> None:
    example = Path(server.log).parent / "examples" / "beep.wav"
    up = httpx.post(server.url + "/ui/gradio_api/upload", files={"files": ("b.wav", example.read_bytes())})
    r = page_call(server, {"path": up.json()[0], "meta": FILEDATA}, template="{label}{label:>10000000}")
    assert r.status_code == 200, r.text
    events = httpx.get(server.url + f"/ui/gradio_api/call/classify/{r.json()['event_id']}", timeout=60).text
    assert page_refused(events, "{label} placeholder"), events[:500]
    assert_alive(server, "a huge template on the page")


def test_the_cli_refuses_a_huge_template(tmp_path: Path, tiny_model: str) -> None:
    from click.testing import CliRunner

    from earmark.cli import cli
    from helpers import sound_file

    clip = sound_file(tmp_path, "beep", 2.0)
    args = ["classify", str(clip), "-l", "beep, hum", "-m", tiny_model, "--threads", "1", "--json"]
    r = CliRunner().invoke(cli, [*args, "--template", "{label}{label:>10000000}"])
    assert r.exit_code == 1 and "may only use the {label} placeholder" in r.output, r.output


# --- 4. bounded windows per request -----------------------------------------------------------------


@pytest.fixture(scope="module")
def long_mp3(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """200 s of audio in a few hundred KB: 761 windows at a 0.25 s hop (over the 600 allowed)."""
    import subprocess

    out = tmp_path_factory.mktemp("long") / "long.mp3"
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
    ]
    subprocess.run([*cmd, "-t", "200", "-c:a", "libmp3lame", "-b:a", "8k", str(out)], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("hop", ["0.0001", "0.00001", "0.001", "0.2", "-1", "nan", "inf"])
def test_a_tiny_hop_is_refused_before_any_work(server: ServerProcess, long_mp3: bytes, hop: str) -> None:
    for route, data in (("/api/v1/classify", {"labels": "beep, hum"}), ("/api/v1/embed", {})):
        r = httpx.post(
            server.url + route,
            files={"file": ("long.mp3", long_mp3)},
            data={**data, "hop_s": hop},
            timeout=60,
        )
        doc = assert_refused(r.status_code, r.content, f"{route} hop_s={hop}", (422,))
        assert "hop_s" in doc["error"]["message"], doc
    assert_alive(server, f"hop_s={hop}")


def test_too_many_windows_are_refused(server: ServerProcess, long_mp3: bytes) -> None:
    r = httpx.post(
        server.url + "/api/v1/classify",
        files={"file": ("long.mp3", long_mp3)},
        data={"labels": "beep, hum", "hop_s": "0.25", "window_s": "0.5"},
        timeout=120,
    )
    doc = assert_refused(r.status_code, r.content, "761 windows", (422,))
    assert "max_windows" in doc["error"]["message"], doc
    assert_alive(server, "a request for 761 windows")


def test_the_cli_refuses_a_tiny_hop(tmp_path: Path, tiny_model: str) -> None:
    from click.testing import CliRunner

    from earmark.cli import cli
    from helpers import sound_file

    clip = sound_file(tmp_path, "beep", 2.0)
    r = CliRunner().invoke(
        cli, ["classify", str(clip), "-l", "beep, hum", "-m", tiny_model, "--hop-s", "0.001"]
    )
    assert r.exit_code == 1 and "hop_s must be between 0.25" in r.output, r.output


@pytest.mark.parametrize("hop", ["0.001", "0", "-1", "nan", "11"])
def test_library_tagging_refuses_a_tiny_hop(tmp_path: Path, tiny_model: str, hop: str) -> None:
    from click.testing import CliRunner

    from earmark.cli import cli
    from helpers import sound_file

    (tmp_path / "in").mkdir()
    sound_file(tmp_path / "in", "beep", 2.0)
    db = tmp_path / "lib.sqlite"
    args = [
        "tag",
        str(tmp_path / "in"),
        "-l",
        "beep, hum",
        "--db",
        str(db),
        "-m",
        tiny_model,
        "--threads",
        "1",
    ]
    r = CliRunner().invoke(cli, [*args, "--hop-s", hop])
    assert r.exit_code != 0 and "hop_s must be between 0.25" in r.output, (
        f"earmark tag --hop-s {hop} did not refuse before any work: {r.output}"
    )


# --- 5. connections: header deadline, connection cap, quiet log ------------------------------------------


def _open_partial(url: str, n: int) -> list[Any]:
    """``n`` connections that start a request and never finish its headers."""
    import socket

    parts = urlsplit(url)
    out = []
    for _ in range(n):
        try:
            s = socket.create_connection((parts.hostname, parts.port), timeout=10)
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            out.append(s)
        except OSError:
            break  # the backlog is full: the point is made
    return out


def _closed_by_server(sock: Any, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        while data := sock.recv(4096):
            if b"HTTP/1.1 408" in data or b"HTTP/1.1 503" in data:
                return True
        return True
    except TimeoutError:
        return False
    except OSError:
        return True  # reset by the server


@pytest.fixture(scope="module")
def low_fd_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with 512 open files at most, a 3 s header deadline, a cap asked above what fits, room for
    one request at a time."""
    home = tmp_path_factory.mktemp("fd-home")
    settings = ["--setting", "max_connections", "5000", "--setting", "header_timeout_s", "3", "--no-ui"]
    settings += ["--setting", "decode_workers", "1", "--setting", "max_queue", "0"]  # capacity 1 (admission)
    proc = ServerProcess(*settings, home=home, nofile=512)
    yield proc
    proc.stop()


def test_partial_headers_cannot_exhaust_the_server(low_fd_server: ServerProcess) -> None:
    socks = _open_partial(low_fd_server.url, 1500)
    try:
        assert len(socks) > 600, "the attack opened more connections than the server may hold"
        assert_alive(low_fd_server, f"{len(socks)} connections that never finish their headers")
        closed = sum(_closed_by_server(s, 30) for s in socks[:200])
        assert closed == 200, f"only {closed} of 200 half-open connections were closed by the header deadline"
    finally:
        for s in socks:
            s.close()
    assert_alive(low_fd_server, "the half-open connections")
    log = low_fd_server.log.read_text(errors="replace")
    assert len(log) < 200_000, f"the log grew to {len(log)} bytes under the attack"
    assert log.count("Too many open files") <= 3 and log.count("connection limit") <= 3, log[-2000:]


def test_a_slow_loris_is_cut_off(low_fd_server: ServerProcess) -> None:
    import socket

    parts = urlsplit(low_fd_server.url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=10)
    try:
        s.sendall(b"GET /livez HTTP/1.1\r\n")
        s.settimeout(0.5)
        deadline = time.monotonic() + 60
        answer = b""
        while time.monotonic() < deadline:
            try:
                s.sendall(b"X-A: b\r\n")  # a header line every half second, never the end
                chunk = s.recv(4096)
                answer += chunk
                if not chunk:
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        assert time.monotonic() < deadline, "a connection trickling headers was never cut off"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        s.close()
    assert_alive(low_fd_server, "a slow-loris connection")


def test_an_idle_kept_alive_connection_is_closed(low_fd_server: ServerProcess) -> None:
    parts = urlsplit(low_fd_server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", "/livez")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    assert conn.sock is not None
    assert _closed_by_server(conn.sock, 60), "an idle kept-alive connection stayed open"
    conn.close()


# --- 6. non-finite audio ----------------------------------------------------------------------------------


def float_wav(samples: Any, rate: int = 16000) -> bytes:
    """A 32-bit IEEE float WAV, which can carry NaN and infinity."""
    import struct

    import numpy as np

    data = np.asarray(samples, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    chunks = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(chunks)) + chunks


def broken_floats(kind: str) -> bytes:
    import numpy as np

    x = (np.sin(np.arange(32000) / 5) * 0.5).astype("f4")
    x[1000:1010] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e30}[kind]
    return float_wav(x)


@pytest.mark.parametrize("kind", ["nan", "inf", "-inf", "huge"])
def test_non_finite_audio_is_refused_on_every_route(server: ServerProcess, kind: str) -> None:
    import base64

    clip = broken_floats(kind)
    r = httpx.post(
        server.url + "/api/v1/classify",
        files={"file": ("x.wav", clip)},
        data={"labels": "beep, hum"},
        timeout=60,
    )
    doc = assert_refused(r.status_code, r.content, f"{kind} WAV to /api/v1/classify", (422,))
    assert doc["error"]["code"] == "undecodable_audio" and "NaN" not in r.text.replace("NaN or", ""), r.text
    r = httpx.post(server.url + "/api/predict", files={"file": ("x.wav", clip)}, data={"labels": "beep, hum"})
    assert_refused(r.status_code, r.content, f"{kind} WAV to /api/predict", (422,))
    url = "data:audio/wav;base64," + base64.b64encode(clip).decode()
    r = httpx.post(server.url + "/api/predict", json={"data": [url, "beep, hum"]}, timeout=60)
    assert_refused(r.status_code, r.content, f"{kind} WAV to /api/predict as JSON", (422,))
    r = httpx.post(server.url + "/api/v1/embed", files={"file": ("x.wav", clip)}, timeout=60)
    assert_refused(r.status_code, r.content, f"{kind} WAV to /api/v1/embed", (422,))
    assert_alive(server, f"a {kind} float WAV")


@pytest.mark.parametrize("kind", ["nan", "huge"])
def test_the_page_refuses_non_finite_audio(server: ServerProcess, kind: str) -> None:
    up = httpx.post(
        server.url + "/ui/gradio_api/upload", files={"files": ("x.wav", broken_floats(kind))}, timeout=60
    )
    assert up.status_code == 200, up.text
    r = page_call(server, {"path": up.json()[0], "meta": FILEDATA})
    assert r.status_code == 200, r.text
    events = httpx.get(server.url + f"/ui/gradio_api/call/classify/{r.json()['event_id']}", timeout=60).text
    reason = "NaN or infinite samples" if kind == "nan" else "far outside the audio range"
    assert page_refused(events, reason), f"the page showed a result for a {kind} float WAV: {events[:500]}"
    assert_alive(server, f"a {kind} float WAV on the page")


def test_the_cli_never_prints_nan(tmp_path: Path, tiny_model: str) -> None:
    from click.testing import CliRunner

    from earmark.cli import cli

    clip = tmp_path / "nan.wav"
    clip.write_bytes(broken_floats("nan"))
    r = CliRunner().invoke(cli, ["classify", str(clip), "-l", "beep, hum", "-m", tiny_model, "--json"])
    assert r.exit_code != 0, f"a NaN file is not a success: {r.output}"
    assert "NaN or infinite samples" in r.output and ": NaN" not in r.output, r.output


# --- 7. overload, library files, monitor restarts, nested JSON, errors in words ----------------------------


def test_a_full_server_refuses_an_upload_before_reading_it(low_fd_server: ServerProcess) -> None:
    """Capacity 1: one upload stalls mid-body; the next gets 429 from its headers alone, body never sent."""
    import socket

    parts = urlsplit(low_fd_server.url)
    head = (
        b"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 5000000\r\n\r\n"
    )
    first = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        first.sendall(head + b"--b\r\n")  # holds the one place, never finishes its body
        time.sleep(0.5)  # order, not speed: let the server see it first
        second = socket.create_connection((parts.hostname, parts.port), timeout=30)
        try:
            second.sendall(head)  # headers only: a 429 that waited for the body would never come
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = second.recv(4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            second.close()
    finally:
        first.close()
    assert answer.startswith(b"HTTP/1.1 429"), (
        f"the excess upload was not refused at its headers: {answer[:200]!r}"
    )
    assert b"retry-after:" in answer.lower() and b'"server_busy"' in answer
    assert_alive(low_fd_server, "an overload")


@pytest.fixture(scope="module")
def library_server(tmp_path_factory: pytest.TempPathFactory, classifier: Any) -> Any:
    """A server over a tagged two-file library: (server, {name: path})."""
    from earmark.library import TagOptions, tag_paths
    from earmark.store import Database
    from helpers import LABELS, sound_file

    home = tmp_path_factory.mktemp("lib-home")
    root = home / "library"
    root.mkdir()
    files = {
        n: sound_file(root, kind, 1.0)
        for n, kind in (("a", "beep"), ("b", "hum"), ("c", "noise"), ("d", "clicks"))
    }
    db = Database(home / "library.db")
    list(tag_paths(db, [root], TagOptions(labels=tuple(LABELS)), classifier))
    ids = {
        n: db.conn.execute("SELECT id FROM lib_files WHERE path=?", (str(p),)).fetchone()[0]
        for n, p in files.items()
    }
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    proc = ServerProcess("--db", str(home / "library.db"), "--no-ui", home=home)
    yield proc, files, ids, home
    proc.stop()


def test_library_audio_serves_only_the_tagged_regular_file(library_server: Any) -> None:
    import os

    server, files, ids, home = library_server
    secret = home / "secret.txt"
    secret.write_text("root:x:0:0:the secret\n")

    def get(name: str) -> httpx.Response:
        return httpx.get(server.url + f"/api/v1/library/files/{ids[name]}/audio", timeout=30)

    r = get("a")
    assert r.status_code == 200 and r.content == files["a"].read_bytes(), "a tagged file plays"
    files["a"].unlink()
    files["a"].symlink_to(secret)  # the tagged file replaced by a link
    files["b"].unlink()
    os.mkfifo(files["b"])  # by a FIFO: opening it must not hang
    files["c"].unlink()
    files["c"].mkdir()  # by a folder
    files["d"].write_bytes(secret.read_bytes())  # by other bytes under the same name
    for name in ("a", "b", "c", "d"):
        r = get(name)
        doc = assert_refused(r.status_code, r.content, f"library file {name} swapped", (404,))
        assert b"secret" not in r.content and "Errno" not in doc["error"]["message"], doc
        assert_alive(server, f"library file {name} swapped")


def test_deeply_nested_json_is_a_4xx(server: ServerProcess) -> None:
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    for route in ("/api/predict", "/ui/gradio_api/call/classify", "/ui/gradio_api/queue/join"):
        status, body = raw_request(server, "POST", route, b'{"data": ' + deep + b"}")
        assert_refused(status, body, f"nested JSON to {route}", (400, 413, 422))
        assert_alive(server, f"nested JSON to {route}")


def test_monitor_restart_queues_the_end_of_an_interrupted_event_for_every_sink(tmp_path: Path) -> None:
    from earmark.monitor.events import EventLog
    from earmark.monitor.runner import payload
    from earmark.store import Database

    sinks = ["mqtt", "jsonl"]
    db = Database(tmp_path / "events.db")
    log = EventLog(db)
    row = {"id": "e1", "source": "door", "rule": "r", "label": "bark", "status": "open", "start_s": 1.0}
    row |= {"started_at": "2026-01-01T00:00:00Z", "peak": 0.9}
    log.open_event(row, payload("start", row), sinks)
    for sink in sinks:  # the start was delivered; then the monitor was killed
        head = log.head(sink)
        assert head is not None
        log.delivered(head.seq)
    db.close()
    restarted = EventLog(Database(tmp_path / "events.db"))  # what the next monitor start does
    assert restarted.close_stale(sinks, lambda r: payload("end", r)) == 1
    event = restarted.get("e1")
    assert event is not None and event["status"] == "closed" and event["closed_by"] == "interrupted"
    for sink in sinks:
        head = restarted.head(sink)
        assert head is not None and head.kind == "end" and head.payload["closed_by"] == "interrupted", sink
        assert head.payload["end"], "the end message says when the restart closed it"


def test_decode_errors_are_in_words_and_name_no_server_path(server: ServerProcess) -> None:
    import struct

    data = b"\0" * 32000
    fmt = struct.pack("<HHIIHH", 0x1234, 1, 16000, 32000, 2, 16)  # a format tag no decoder knows
    chunks = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    clip = b"RIFF" + struct.pack("<I", len(chunks)) + chunks
    r = httpx.post(
        server.url + "/api/v1/classify",
        files={"file": ("odd.wav", clip)},
        data={"labels": "a, b"},
        timeout=60,
    )
    doc = assert_refused(r.status_code, r.content, "a WAV with no decoder", (415, 422))
    message = doc["error"]["message"]
    assert "cannot decode" in message and "Error)" not in message, f"say what is wrong in words: {message}"
    example_dir = Path(server.log).parent
    for probe in ("/root", str(example_dir), "/etc"):
        r = page_call(server, {"path": probe, "meta": FILEDATA})
        assert "Errno" not in r.text and probe not in r.text, r.text


# --- path traversal on every route, Gradio's included -------------------------------------------------------

TRAVERSALS = [
    "../../../../../../etc/passwd",
    "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\..\\etc\\passwd",
    "/proc/self/environ",
    "1/../../../../etc/passwd",
]
ROUTES = [
    "/api/v1/library/files/{}/audio",
    "/api/v1/library/files/{}",
    "/api/v1/library/similar/{}",
    "/api/v1/events/{}",
    "/api/v1/events/{}/clip",
    "/api/v1/{}",
    "/docs/{}",
    "/{}",
    "/ui/gradio_api/file={}",
    "/ui/gradio_api/file/{}",
    "/ui/file={}",
    "/ui/gradio_api/proxy={}",
    "/ui/static/{}",
    "/ui/assets/{}",
    "/ui/svelte/{}",
    "/ui/gradio_api/stream/{}",
    "/ui/gradio_api/stream/a/b/c/{}",
    "/ui/gradio_api/custom_component/x/client/y/{}",
    "/ui/pwa_icon/{}",
    "/ui/monitoring/{}",
    "/ui/favicon.ico/{}",
    "/ui/{}",
    "/ui/gradio_api/call/classify/{}",
    "/ui/gradio_api/heartbeat/{}",
    "/ui/gradio_api/run-history/records/a/b/assets/{}",
]


@pytest.mark.parametrize("route", ROUTES)
def test_no_route_serves_a_file_by_traversal(server: ServerProcess, route: str) -> None:
    for probe in TRAVERSALS:
        path = route.format(probe)
        status, body = raw_request(server, "GET", path, streams=True)
        assert status < 500, f"{path}: {status}"
        assert b"root:x:0:0" not in body and b"EARMARK_HOME" not in body and b"PATH=" not in body, path
        if status >= 400 and body.startswith(b"{"):
            assert set(json.loads(body)) >= {"error"}, (
                f"{path}: an error outside the documented shape: {body[:200]!r}"
            )
    assert_alive(server, f"path traversal on {route}")


@pytest.mark.parametrize(
    "path", ["/ui/gradio_api/call/classify/no-such-event", "/ui/gradio_api/queue/data?session_hash=no-such"]
)
def test_an_unknown_event_stream_ends_cleanly(server: ServerProcess, path: str) -> None:
    status, body = raw_request(server, "GET", path)  # IncompleteRead here: the server cut the stream
    assert status == 200 and b"404" in body, f"{path}: the stream does not say the event is unknown: {body!r}"
    log = Path(server.log).read_text(errors="replace")
    assert "response already started" not in log, "the log got a traceback for an unknown event id"
    assert_alive(server, path)


@pytest.mark.parametrize(
    "content_type", [None, "application/merge-patch+json", "text/plain", "application/x-www-form-urlencoded"]
)
def test_no_content_type_lets_a_server_path_past_the_guard(
    server: ServerProcess, content_type: str | None
) -> None:
    """FastAPI reads a body with no content type, or a "+json" one, as JSON: the guard reads it the same."""
    body = json.dumps(
        {
            "data": [
                {"path": "/etc/passwd", "meta": FILEDATA},
                "beep, hum",
                0.7,
                "This is a sound of {label}.",
                None,
            ]
        }
    ).encode()
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(
        "POST",
        "/ui/gradio_api/call/classify",
        body=body,
        headers={"content-type": content_type} if content_type else {},
    )
    r = conn.getresponse()
    status, answer = r.status, r.read()
    conn.close()
    doc = assert_refused(status, answer, f"page call with /etc/passwd as {content_type}", (400,))
    assert doc["error"]["code"] == "file_refused", doc
    assert_alive(server, f"a page call as {content_type}")


LIBRARY_ROUTES = [r for r in ROUTES if r.startswith("/api/")] + [
    "/api/v1/library/review/{}",
    "/api/v1/library/search?q={}",
    "/api/v1/events?since={}",
]


def test_no_library_route_serves_a_file_by_traversal(library_server: Any) -> None:
    """The library and events routes exist only with --db: probed on a server over a tagged library."""
    server = library_server[0]
    for route in LIBRARY_ROUTES:
        for probe in TRAVERSALS:
            path = route.format(probe)
            status, body = raw_request(server, "GET", path)
            assert status < 500, f"{path}: {status}"
            assert b"root:x:0:0" not in body and b"PATH=" not in body, f"{path} served a server file"
            if status >= 400:
                assert set(json.loads(body)) >= {"error"}, f"{path}: {body[:200]!r}"
        assert_alive(server, f"path traversal on {route}")


def test_deeply_nested_json_to_a_library_route_is_a_4xx(library_server: Any) -> None:
    server, _, ids, _ = library_server
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    route = f"/api/v1/library/review/{ids['a']}"
    status, body = raw_request(server, "POST", route, b'{"decision": ' + deep + b"}")
    assert_refused(status, body, f"nested JSON to {route}", (400, 413, 422))
    assert_alive(server, f"nested JSON to {route}")
