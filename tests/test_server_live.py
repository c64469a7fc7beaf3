"""`earmark serve` for real: uvicorn on 127.0.0.1, the tiny model, limits, probes, shutdown."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from earmark import synth
from earmark.cli import cli
from helpers import ServerProcess, encode, multipart_upload, send_reading, sound_file

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_serve_refuses_a_public_address_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EARMARK_API_KEY", raising=False)
    for host in ("0.0.0.0", "::", "192.168.1.20"):
        result = CliRunner().invoke(cli, ["serve", "--host", host, "--port", "0"])
        assert result.exit_code == 2
        assert f"refusing to listen on {host} without an API key" in result.output
        assert "--api-key" in result.output and "EARMARK_API_KEY" in result.output


def test_serve_says_what_to_do_when_the_model_cannot_be_had() -> None:
    result = CliRunner().invoke(cli, ["serve", "--model", "clap-htsat-fused", "--port", "0"])
    assert result.exit_code == 1
    assert "earmark model pull clap-htsat-fused" in result.output
    assert "earmark serve --model tests/assets/tiny-clap" in result.output


def test_page_and_api_on_a_real_port(served: ServerProcess, tmp_path: Path) -> None:
    assert re.match(r"http://127\.0\.0\.1:\d+$", served.url)
    assert httpx.get(served.url + "/ui/").status_code == 200
    beep = sound_file(tmp_path, "beep", 4, ".ogg")
    r = httpx.post(
        served.url + "/api/v1/classify",
        files={"file": (beep.name, beep.read_bytes())},
        data={"labels": "beep\nhum\nsilence"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["label"] == "beep"


def _slow_file(tmp: Path) -> Path:
    """Few bytes, many seconds: slow enough to decode that a queue of them stays full."""
    return encode(
        synth.make("noise", 90.0, seed=4),
        tmp / "slow.mp3",
        out_rate=8000,
        extra=["-c:a", "libmp3lame", "-b:a", "8k"],
    )


def test_overload_excess_requests_get_429_at_once(served: ServerProcess, tmp_path: Path) -> None:
    capacity = 4  # decode_workers 1 + max_queue 3, as the `served` fixture sets
    data = _slow_file(tmp_path).read_bytes()

    finished: list[int] = []  # statuses in the order the answers came back

    async def one(client: httpx.AsyncClient) -> tuple[int, httpx.Response]:
        form = {"labels": "noise, beep", "hop_s": "10"}  # few windows: the model part stays short
        r = await client.post("/api/v1/classify", files={"file": ("slow.mp3", data)}, data=form)
        finished.append(r.status_code)
        return r.status_code, r

    async def burst() -> list[tuple[int, httpx.Response]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=served.url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(4 * capacity)))

    results = asyncio.run(burst())
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 429}, statuses
    busy = [r for s, r in results if s == 429]
    assert statuses.count(200) >= capacity and len(busy) >= 2 * capacity
    # refused, not queued: every 429 came back while admitted requests were still being worked on
    # (a refused request that waited for a free place would have been served instead)
    assert finished.index(200) > max(i for i, s in enumerate(finished) if s == 429), finished
    for r in busy:
        assert r.json()["error"]["code"] == "server_busy" and int(r.headers["retry-after"]) >= 1
    assert all(r.json()["label"] == "noise" for s, r in results if s == 200)


def test_a_refused_upload_still_being_sent_reads_its_429(served: ServerProcess, tmp_path: Path) -> None:
    """Clients that upload as curl does (``Connection: close``, reading while still sending a 1 MB body)
    each get an answer: the server reads and drops a refused body before it closes, so the 429 is not
    lost to a reset (before, whole bursts of such clients saw only "Broken pipe")."""
    capacity = 4  # as the `served` fixture sets
    data = sound_file(tmp_path, "noise", 12).read_bytes()  # ~1.2 MB of WAV
    parts = urlsplit(served.url)
    head, body = multipart_upload({"labels": "noise, beep", "hop_s": "10"}, "noise.wav", data)

    async def one() -> str:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            line = (await send_reading(reader, writer, head, body))[0].decode(errors="replace")
        except OSError as ex:
            line = f"no answer: {type(ex).__name__}: {ex}"
        writer.close()
        return line.strip()

    async def burst() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(12 * capacity)))

    # the reset came in later bursts, once the server answered faster than the clients sent
    lines = [line for _ in range(3) for line in asyncio.run(burst())]
    statuses = [line.split()[1] if line.startswith("HTTP/1.1 ") else line for line in lines]
    assert all(s in ("200", "429") for s in statuses), f"every client reads its answer: {statuses}"
    assert statuses.count("429") >= 3 * 8 * capacity, statuses


def test_sixty_megabytes_get_413_before_the_body_is_read(served: ServerProcess) -> None:
    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    # a server that waited for the body would never answer: the socket's timeout is the hang guard
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.putrequest("POST", "/api/v1/classify")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(60_000_000))
    conn.endheaders()  # not one byte of the body is sent
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 413 and body["error"]["code"] == "upload_too_large"
    conn.close()
    # a client that sends it all anyway gets the same answer, as does one streaming without a length
    big = os.urandom(1_000_000) * 60
    r = httpx.post(served.url + "/api/v1/classify", files={"file": ("big.wav", big)}, data={"labels": "a, b"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"

    def stream():  # type: ignore[no-untyped-def]
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for i in range(60):
            yield big[i * 1_000_000 : (i + 1) * 1_000_000]
        yield b"\r\n--x--\r\n"

    r = httpx.post(
        served.url + "/api/v1/classify",
        content=stream(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"
    assert httpx.get(served.url + "/readyz").status_code == 200


def test_no_file_route_serves_what_it_should_not(served: ServerProcess) -> None:
    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    home = Path(served.log).parent
    example = home / "examples" / "beep.wav"
    root = Path(__file__).resolve().parents[1]

    def get(path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", path)  # sent as written: no client-side normalisation of ".." or "%2f"
        r = conn.getresponse()
        out = r.status, r.read()
        conn.close()
        return out

    # the route works: an example the page offers is served
    assert get(f"/ui/gradio_api/file={example}")[0] == 200
    probes = [
        "/ui/gradio_api/file=/etc/passwd",
        "/ui/gradio_api/file=%2Fetc%2Fpasswd",
        "/ui/gradio_api/file=..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/ui/gradio_api/file=../../../../etc/passwd",
        f"/ui/gradio_api/file={home}/examples/../server.log",
        f"/ui/gradio_api/file={home}/examples/..%2fserver.log",
        f"/ui/gradio_api/file={root}/pyproject.toml",
        "/ui/gradio_api/file=/proc/self/environ",
        "/ui/file=/etc/passwd",
        "/file=/etc/passwd",
        "/gradio_api/file=/etc/passwd",
        "/ui/static/../../../../../../etc/passwd",
        "/ui/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/ui/assets/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/ui/gradio_api/stream/..%2f..%2fetc%2fpasswd",
        "/docs/..%2f..%2f..%2fetc%2fpasswd",
        "/ui/favicon.ico/..%2f..%2f..%2fetc%2fpasswd",
    ]
    for probe in probes:
        status, body = get(probe)
        assert status in (400, 403, 404), (probe, status)
        assert b"root:" not in body and b"EARMARK_HOME" not in body and b"[project]" not in body, probe


def test_the_page_api_never_fetches_a_url(served: ServerProcess) -> None:
    value = {
        "path": "https://example.org/x.wav",
        "url": "https://example.org/x.wav",
        "meta": {"_type": "gradio.FileData"},
    }
    r = httpx.post(
        served.url + "/ui/gradio_api/call/classify",
        json={"data": [value, "a, b", 0.7, "This is {label}.", ""]},
    )
    # refused before Gradio sees it (earmark.server.page_guard)
    assert r.status_code == 400 and r.json()["error"]["code"] == "url_refused"
    assert "never fetches URLs" in r.json()["error"]["message"]


def test_sigterm_answers_everything_in_flight_then_exits_0(tmp_path: Path) -> None:
    server = ServerProcess(
        "--no-ui",
        "--setting",
        "decode_workers",
        "1",
        "--setting",
        "max_queue",
        "40",
        "--setting",
        "drain_delay_s",
        "5",
        home=tmp_path,
    )
    try:
        clip = encode(
            synth.make("hum", 30.0, seed=5),
            tmp_path / "hum.mp3",
            out_rate=8000,
            extra=["-c:a", "libmp3lame", "-b:a", "8k"],
        ).read_bytes()

        async def one(client: httpx.AsyncClient) -> int:
            form = {"labels": "hum, beep", "hop_s": "10"}
            r = await client.post("/api/v1/classify", files={"file": ("hum.mp3", clip)}, data=form)
            return r.status_code if r.status_code != 200 else (200 if r.json()["label"] == "hum" else -1)

        async def scenario() -> tuple[list[int], int]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
                tasks = [asyncio.create_task(one(client)) for _ in range(20)]
                deadline = time.monotonic() + 10
                while _queue_depth(await client.get("/metrics")) < 20:  # all 20 are inside the server
                    assert time.monotonic() < deadline, "the requests never all arrived"
                    await asyncio.sleep(0.02)
                server.proc.send_signal(signal.SIGTERM)
                # /readyz turns 503 within the 5 s drain delay; poll for it instead of guessing when
                ready = 200
                while ready == 200 and time.monotonic() < deadline + 30:
                    ready = (await client.get("/readyz")).status_code
                    await asyncio.sleep(0.02)
                return list(await asyncio.gather(*tasks)), ready

        statuses, ready_while_draining = asyncio.run(scenario())
        assert statuses == [200] * 20
        assert ready_while_draining == 503
        assert server.proc.wait(30) == 0
    finally:
        server.stop()


def _queue_depth(metrics: httpx.Response) -> float:
    m = re.search(r"^earmark_queue_requests (\S+)$", metrics.text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


# --- classifier packs (issue 5) ---


def _serve_in_process(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[object, list[object]]:
    """`earmark serve ARGS` on the tiny model, stopped just before uvicorn would listen: (result, apps)."""
    from earmark.cli import serve_cmd
    from helpers import TINY_MODEL

    apps: list[object] = []
    monkeypatch.setattr(serve_cmd, "_run", lambda app, *a, **k: apps.append(app))
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--model",
            str(TINY_MODEL),
            "--port",
            "0",
            "--threads",
            "1",
            "--setting",
            "decode_workers",
            "1",
            "--no-ui",
            *args,
        ],
    )
    return result, apps


def test_serve_names_its_packs_and_refuses_bad_ones(
    fitted_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, apps = _serve_in_process(
        monkeypatch, "--pack", str(fitted_pack), "--pack", f"again={fitted_pack}"
    )
    assert result.exit_code == 0, result.output
    assert sorted(apps[0].state.packs) == ["ab", "again"]  # type: ignore[attr-defined]
    # two packs under one name
    result, apps = _serve_in_process(monkeypatch, "--pack", str(fitted_pack), "--pack", f"ab={fitted_pack}")
    assert result.exit_code == 2 and not apps
    assert "two classifier packs are named 'ab'" in result.output and "--pack NAME=PATH" in result.output
    # a missing file, and a file that is not a pack
    result, apps = _serve_in_process(monkeypatch, "--pack", str(tmp_path / "gone.pack.json"))
    assert result.exit_code == 1 and not apps
    assert f"Error: --pack gone: cannot read classifier pack {tmp_path / 'gone.pack.json'}" in result.output
    (tmp_path / "thresholds.json").write_text("{}")
    result, apps = _serve_in_process(monkeypatch, "--pack", str(tmp_path / "thresholds.json"))
    assert result.exit_code == 1 and "is not a classifier pack" in result.output and not apps


def test_serve_refuses_a_pack_fitted_on_another_model(
    fitted_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(fitted_pack.read_text())
    doc["text"]["base64"] = doc["directions"]["base64"]  # what another model would compute for its labels
    other = tmp_path / "other.pack.json"
    other.write_text(json.dumps(doc))
    result, apps = _serve_in_process(monkeypatch, "--pack", str(fitted_pack), "--pack", str(other))
    assert result.exit_code == 1 and not apps  # the server never started
    assert "Error: classifier pack 'other': this classifier pack was fitted on" in result.output
    assert "computes different embeddings. Load it with --model" in result.output
