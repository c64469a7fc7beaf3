"""`earmark serve --ray ADDRESS` on a local Ray cluster the test starts (`ray start --head`, with
token authentication as Ray sets up by default): two replicas share the traffic, answer exactly what
the single-process server answers, a killed replica is replaced while requests keep being answered,
and a full replica answers 429 at once, as `earmark serve` does.

One earmark application per cluster at a time (it is named ``earmark``), so each class deploys its
own and stops it when its tests are done."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from earmark import synth
from helpers import ROOT, ServerProcess, encode, sound_file
from monitor_support import free_port

pytestmark = [pytest.mark.ray, pytest.mark.server]
pytest.importorskip("ray.serve")

LABELS = "beep, hum, noise, clicks"
HEADER = "x-earmark-replica"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A one-node Ray cluster with room for two 1-CPU replicas (and the proxy); its address.

    Token authentication on, with a token of its own: the `earmark serve` processes get it through
    ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN``, as docs/server.md tells users of such a cluster. Started
    with ``--block`` and stopped by signalling that process: ``ray stop`` would stop every Ray
    cluster on the machine."""
    home = tmp_path_factory.mktemp("ray-home")
    # its own temp dir (short: Ray's socket paths must fit 107 bytes): the cluster's address is not
    # written to /tmp/ray, where a later ray.init() of another test or program would find it
    temp_dir = tempfile.mkdtemp(prefix="earmark-ray-", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
            EARMARK_HOME=str(home),
            HF_HUB_OFFLINE="1",
        )
        port = free_port()
        log = open(home / "ray-start.log", "wb")  # noqa: SIM115 (open for the cluster's lifetime)
        head = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=3",
                "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats", f"--temp-dir={temp_dir}",
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300  # hang guard: the head's GCS accepts connections
            while True:
                assert head.poll() is None, (
                    f"ray start failed:\n{(home / 'ray-start.log').read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "the Ray head did not come up"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
                    break
                except OSError:
                    time.sleep(0.5)
            yield f"127.0.0.1:{port}"
        finally:
            head.send_signal(signal.SIGTERM)  # --block: stops the processes of this cluster only
            try:
                head.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()
            log.close()
            shutil.rmtree(temp_dir, ignore_errors=True)


def _serve(cluster: str, home: Path, *args: str, ui: bool = False) -> ServerProcess:
    return ServerProcess(
        "--ray", cluster, "--replica-cpus", "1", *([] if ui else ["--no-ui"]),
        "--setting", "decode_workers", "1", *args, home=home, timeout_s=600,
    )  # fmt: skip


def _stop(server: ServerProcess) -> None:
    assert server.stop(120) == 0, (
        f"earmark serve --ray did not stop cleanly:\n{server.log.read_text()[-3000:]}"
    )


def _classify(url: str, path: Path) -> httpx.Response:
    return httpx.post(
        url + "/api/v1/classify",
        files={"file": (path.name, path.read_bytes())},
        data={"labels": LABELS},
        timeout=120,
    )


def _replica_pids() -> list[int]:
    """Processes of the earmark Serve replicas (Ray names them ray::ServeReplica:earmark:...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ServeReplica:earmark" in cmdline:
                pids.append(int(entry.name))
    return pids


class TestTwoReplicas:
    @pytest.fixture(scope="class")
    def on_ray(self, cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        server = _serve(cluster, tmp_path_factory.mktemp("ray-serve-home"), "--replicas", "2")
        yield server
        _stop(server)

    @pytest.fixture(scope="class")
    def single(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        """`earmark serve` with the replicas' settings, in one process."""
        home = tmp_path_factory.mktemp("single-home")
        server = ServerProcess("--no-ui", "--setting", "decode_workers", "1", home=home)
        yield server
        _stop(server)

    def test_two_replicas_share_requests_and_answer_as_one_process(  # type: ignore[no-untyped-def]
        self, on_ray, single, classifier, tmp_path
    ) -> None:
        files = [sound_file(tmp_path, kind, 4) for kind in ("beep", "hum", "clicks", "noise")]
        expected = {f: _classify(single.url, f).json() for f in files}
        for f in files:
            library = classifier.classify(f.read_bytes(), LABELS, name=f.name).to_dict()
            assert expected[f] == {**library, "warnings": []}, f"{f.name}: the server answers as the library"
        assert [expected[f]["label"] for f in files] == ["beep", "hum", "clicks", "noise"]
        seen: set[str] = set()
        deadline = time.monotonic() + 300  # hang guard: both replicas must be up and chosen
        with ThreadPoolExecutor(8) as pool:
            while len(seen) < 2:
                assert time.monotonic() < deadline, f"requests only reached replicas {seen}"
                answers = pool.map(lambda f: _classify(on_ray.url, f), files * 2)
                for f, r in zip(files * 2, answers, strict=True):
                    assert r.status_code == 200, r.text
                    assert r.json() == expected[f], (
                        f"{f.name}: the replica's answer differs from the single-process server's"
                    )
                    seen.add(r.headers[HEADER])
        assert len(seen) == 2, f"two replicas answered: {seen}"

    def test_a_killed_replica_is_replaced_and_requests_are_still_answered(self, on_ray, tmp_path) -> None:  # type: ignore[no-untyped-def]
        beep = sound_file(tmp_path, "beep", 2)
        before = {_classify(on_ray.url, beep).headers[HEADER] for _ in range(6)}
        pids = _replica_pids()
        assert len(pids) == 2, f"expected two replica processes, found {pids}"
        os.kill(pids[0], signal.SIGKILL)
        failures, answered, streak = 0, set(), 0
        deadline = time.monotonic() + 300  # hang guard: Serve restarts the replica
        while not (streak >= 10 and answered - before):
            assert time.monotonic() < deadline, (
                f"no replacement replica answered; seen {answered}, before {before}"
            )
            r = _classify(on_ray.url, beep)
            if r.status_code == 200:
                streak += 1
                answered.add(r.headers[HEADER])
                assert r.json()["label"] == "beep"
            else:
                failures, streak = failures + 1, 0
            assert failures <= 3, (
                f"requests keep failing after a replica was killed: {r.status_code} {r.text[:300]}"
            )
            time.sleep(0.2)
        assert len(_replica_pids()) == 2, "Serve brought the replica count back to two"


class TestOneReplicaWithThePage:
    CAPACITY = 2  # decode_workers 1 + max_queue 1

    @pytest.fixture(scope="class")
    def small(self, cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        home = tmp_path_factory.mktemp("ray-small-home")
        server = _serve(cluster, home, "--replicas", "1", "--setting", "max_queue", "1", ui=True)
        yield server
        _stop(server)

    def test_the_page_is_served_by_the_replicas(self, small) -> None:  # type: ignore[no-untyped-def]
        assert any(f"{small.url}/ui/" in line for line in small.lines), f"announced: {small.lines}"
        page = httpx.get(small.url + "/ui/", timeout=120, follow_redirects=True)
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:300]
        assert page.headers[HEADER], "the page comes from a replica, through Serve's proxy"
        config = httpx.get(small.url + "/ui/config", timeout=120)
        assert config.status_code == 200 and config.json()["components"], "Gradio's app config loads"

    def test_a_full_replica_answers_429_with_retry_after(self, small, tmp_path) -> None:  # type: ignore[no-untyped-def]
        # few bytes, many seconds: each takes a while to decode, so the replica's queue stays full
        slow = encode(
            synth.make("noise", 90.0, seed=4),
            tmp_path / "slow.mp3",
            out_rate=8000,
            extra=["-c:a", "libmp3lame", "-b:a", "8k"],
        ).read_bytes()

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=small.url, timeout=300) as client:
                form = {"labels": "noise, beep", "hop_s": "10"}
                return await asyncio.gather(
                    *(
                        client.post("/api/v1/classify", files={"file": ("slow.mp3", slow)}, data=form)
                        for _ in range(6 * self.CAPACITY)
                    )
                )

        answers = asyncio.run(burst())
        statuses = [r.status_code for r in answers]
        assert set(statuses) <= {200, 429}, f"a full replica answers 200 or 429, nothing else: {statuses}"
        assert statuses.count(200) >= self.CAPACITY, f"the replica's queue was served: {statuses}"
        busy = [r for r in answers if r.status_code == 429]
        assert busy, f"past its bounded queue the replica refuses (429), as earmark serve: {statuses}"
        for r in busy:
            assert r.json()["error"]["code"] == "server_busy" and int(r.headers["retry-after"]) >= 1
        assert all(r.json()["label"] == "noise" for r in answers if r.status_code == 200)


def test_a_cluster_that_cannot_be_reached_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src"), EARMARK_HOME=str(tmp_path), RAY_USAGE_STATS_ENABLED="0"
    )
    with socket.socket() as held:  # bound, never listening: connections are refused, nothing else takes it
        held.bind(("127.0.0.1", 0))  # (Ray itself would retry such an address for many minutes)
        address = f"127.0.0.1:{held.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-m", "earmark", "serve", "--model", str(ROOT / "tests" / "assets" / "tiny-clap"),
             "--ray", address, "--no-ui"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 1, f"exit {done.returncode}: {done.stderr[-2000:]}"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: could not connect to the Ray cluster at {address}"), done.stderr[-2000:]
    assert f"ray status --address {address}" in last and "Traceback" not in done.stderr, (
        "the user is told what to check, in one line"
    )
