"""The container image, built and run for real with rootful podman (scripts/podman_setup.sh).

Builds the image once per session (reused while the build inputs are unchanged: the image carries
their digest as a label), then checks what a user of ``docker run`` / ``podman run`` sees: the
server becomes ready with the tiny model mounted read-only, classifies a beep, runs as a non-root
user, refuses a non-loopback bind without an API key, passes its HEALTHCHECK; and the compose stack
(mosquitto + ``earmark monitor``), started here with ``podman run`` on the host network, publishes
an event for a beep in a file. Skips with the reason when podman cannot be installed or run.
The image size and what takes it are written to test-artifacts/image.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from earmark import synth
from helpers import LABELS, ROOT, TINY_MODEL, encode
from monitor_support import MqttCollector, free_port, wait_for

pytestmark = pytest.mark.image

IMAGE = os.environ.get("EARMARK_TEST_IMAGE", "localhost/earmark:test")
MOSQUITTO_IMAGE = "localhost/earmark-mosquitto:test"
CONTEXT_LABEL = "org.earmark.context-digest"
SIZE_TARGET = 1.5 * 2**30  # the CPU image
API_KEY = "image-test-" + uuid.uuid4().hex
BUILD_TIMEOUT_S = 1500  # hang guard for a cold build (pip downloads), not a speed target
READY_TIMEOUT_S = 240
BAKED_MODEL_DIR = "tests/assets/tiny-clap"


# -- podman ---------------------------------------------------------------------------------------


class Podman:
    """Rootful podman with this machine's containers.conf (runc, ulimits) from scripts/podman_setup.sh."""

    def __init__(self, env: dict[str, str], sudo: list[str]) -> None:
        self.env, self.sudo = env, sudo

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.sudo, "env", f"CONTAINERS_CONF={self.env['CONTAINERS_CONF']}", "podman", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])}... exited {proc.returncode}:\n{proc.stderr[-3000:]}"
            )
        return proc

    def logs(self, name: str) -> str:
        proc = self.run("logs", name, check=False)
        return (proc.stdout + proc.stderr)[-4000:]

    def rm(self, *names: str) -> None:
        # -v: their anonymous volumes too (the image's VOLUMEs), or every run leaves two behind
        self.run("rm", "-f", "-v", "-t", "5", *names, check=False, timeout=60)


def _setup_env() -> tuple[dict[str, str], list[str]]:
    """Run scripts/podman_setup.sh (installs podman when missing, makes the local base); skip when it cannot."""
    if shutil.which("podman") is None and shutil.which("apt-get") is None:
        pytest.skip("podman is not installed and this is not a Debian machine to install it on (apt-get)")
    sudo: list[str] = []
    if os.geteuid() != 0:
        if (
            shutil.which("sudo") is None
            or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode
        ):
            pytest.skip("the image tests need rootful podman: run as root or with passwordless sudo")
        sudo = ["sudo", "-n"]
    try:
        proc = subprocess.run(
            [*sudo, str(ROOT / "scripts" / "podman_setup.sh")], capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/podman_setup.sh did not finish in 15 minutes (installing podman or debootstrap)")
    if proc.returncode != 0:
        pytest.skip(f"podman cannot be set up here (scripts/podman_setup.sh): {proc.stderr.strip()[-600:]}")
    env = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    probe = subprocess.run(
        [
            *sudo,
            "env",
            f"CONTAINERS_CONF={env['CONTAINERS_CONF']}",
            "podman",
            "run",
            "--rm",
            "--network",
            "host",
            env["BASE_IMAGE"],
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.skip(f"podman is installed but cannot run a container here: {probe.stderr.strip()[-600:]}")
    return env, sudo


def context_digest() -> str:
    """sha256 of what goes into the image: Dockerfile, .dockerignore, docker/, pyproject, README, src/ and
    the tiny model (baked in: MODEL_DIR)."""
    h = hashlib.sha256()
    files = [ROOT / "Dockerfile", ROOT / ".dockerignore", ROOT / "pyproject.toml", ROOT / "README.md"]
    for folder in ("docker", "src", "tests/assets/tiny-clap"):
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _label(podman: Podman, image: str) -> str | None:
    proc = podman.run("image", "inspect", "--format", "{{json .Labels}}", image, check=False)
    if proc.returncode != 0:
        return None
    return (json.loads(proc.stdout or "null") or {}).get(CONTEXT_LABEL)


@pytest.fixture(scope="session")
def podman() -> Podman:
    env, sudo = _setup_env()
    return Podman(env, sudo)


@pytest.fixture(scope="session")
def image(podman: Podman) -> str:
    """The image built by scripts/build_image.sh, or the one already built from the same inputs."""
    digest = context_digest()
    if _label(podman, IMAGE) == digest:
        return IMAGE
    env = {**os.environ, **podman.env, "IMAGE": IMAGE}
    cmd = [*podman.sudo, "env", *(f"{k}={v}" for k, v in podman.env.items()), f"IMAGE={IMAGE}"]
    cmd += [str(ROOT / "scripts" / "build_image.sh"), "--label", f"{CONTEXT_LABEL}={digest}"]
    # the tiny model baked in, so the build-time `earmark model prepare` runs too (see test_baked_model_...)
    cmd += ["--build-arg", f"MODEL_DIR={BAKED_MODEL_DIR}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"make image failed:\n{(proc.stdout + proc.stderr)[-5000:]}"
    assert _label(podman, IMAGE) == digest, "the built image does not carry its context digest"
    return IMAGE


@pytest.fixture(scope="session")
def mosquitto_image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    dockerfile = ROOT / "docker" / "mosquitto.Dockerfile"
    digest = hashlib.sha256(dockerfile.read_bytes() + podman.env["BASE_IMAGE"].encode()).hexdigest()
    if _label(podman, MOSQUITTO_IMAGE) == digest:
        return MOSQUITTO_IMAGE
    context = tmp_path_factory.mktemp("mosquitto-context")  # nothing but the Dockerfile
    podman.run(
        "build",
        "--network",
        "host",
        "--format",
        "docker",
        "--build-arg",
        f"BASE_IMAGE={podman.env['BASE_IMAGE']}",
        "--label",
        f"{CONTEXT_LABEL}={digest}",
        "-t",
        MOSQUITTO_IMAGE,
        "-f",
        str(dockerfile),
        str(context),
        timeout=600,
    )
    return MOSQUITTO_IMAGE


# -- helpers --------------------------------------------------------------------------------------


def http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as ex:
        body = ex.read()
        try:
            return ex.code, json.loads(body or b"null")
        except ValueError:
            return ex.code, body.decode(errors="replace")


def multipart(fields: dict[str, str], file_path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_path.name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + file_path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def running(podman: Podman, name: str) -> bool:
    proc = podman.run("inspect", "--format", "{{.State.Running}}", name, check=False)
    return proc.stdout.strip() == "true"


@pytest.fixture(scope="module")
def server(podman: Podman, image: str) -> Iterator[tuple[str, str]]:
    """The image's default command (earmark serve --host 0.0.0.0) with the tiny model mounted read-only."""
    name, port = f"earmark-test-{uuid.uuid4().hex[:8]}", free_port()
    podman.run(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-v",
        f"{TINY_MODEL}:/model:ro",
        "-e",
        "EARMARK_MODEL=/model",
        "-e",
        f"EARMARK_API_KEY={API_KEY}",
        "-e",
        f"EARMARK_PORT={port}",
        "-e",
        "EARMARK_THREADS=1",
        image,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert running(podman, name), f"the container stopped before it was ready:\n{podman.logs(name)}"
            try:
                status, body = http(f"{base}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not ready after {READY_TIMEOUT_S} s:\n{podman.logs(name)}"
            time.sleep(0.5)
        yield name, base
    finally:
        podman.rm(name)


@pytest.fixture(scope="module")
def beep_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(synth.make("beep", 10.0, seed=3), tmp_path_factory.mktemp("beep") / "beep.wav")


# -- the image ------------------------------------------------------------------------------------


def test_ready_with_the_tiny_model_mounted_and_classifies_a_beep(
    server: tuple[str, str], beep_wav: Path
) -> None:
    name, base = server
    status, body = http(f"{base}/readyz")
    assert status == 200 and body["status"] == "ready", f"/readyz said {status} {body}"
    data, ctype = multipart({"labels": ",".join(LABELS)}, beep_wav)
    status, body = http(f"{base}/api/v1/packs")  # a GET: the server answers 401 before reading a body
    assert status == 401, f"a request without the API key got {status}, not 401: {body}"
    status, body = http(
        f"{base}/api/v1/classify",
        data=data,
        headers={"Content-Type": ctype, "Authorization": f"Bearer {API_KEY}"},
    )
    assert status == 200, f"classify answered {status}: {body}"
    top = max(body["scores"], key=body["scores"].get)
    assert top == "beep", f"the container's top label for a beep is {top!r}: {body}"


def test_runs_as_a_non_root_user(podman: Podman, server: tuple[str, str]) -> None:
    name, _ = server
    status = podman.run("exec", name, "cat", "/proc/1/status").stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid != "0", "earmark serve runs as root in the container"
    user = podman.run("exec", name, "id", "-un").stdout.strip()
    assert user == "earmark", f"the image's user is {user!r}"


def test_healthcheck_passes(podman: Podman, server: tuple[str, str], image: str) -> None:
    name, _ = server
    config = json.loads(
        podman.run("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image).stdout
    )
    assert config and "/usr/local/lib/earmark/healthcheck.py" in " ".join(config["Test"]), (
        f"the image has no HEALTHCHECK on /readyz: {config}"
    )
    proc = podman.run("healthcheck", "run", name, check=False)
    assert proc.returncode == 0, f"HEALTHCHECK failed on a ready server: {proc.stdout} {proc.stderr}"


def test_non_loopback_bind_without_an_api_key_refuses_to_start(podman: Podman, image: str) -> None:
    proc = podman.run(
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        f"{TINY_MODEL}:/model:ro",
        "-e",
        "EARMARK_MODEL=/model",
        "-e",
        f"EARMARK_PORT={free_port()}",
        image,
        check=False,
        timeout=180,
    )
    assert proc.returncode != 0, f"the server started on 0.0.0.0 without an API key:\n{proc.stdout}"
    assert "without an API key" in proc.stderr, f"the refusal does not say why:\n{proc.stderr[-2000:]}"


def test_api_key_from_a_secret_file(podman: Podman, image: str, tmp_path: Path) -> None:
    secret = tmp_path / "earmark_api_key"
    secret.write_text("from-the-secret-file\n")
    secret.chmod(0o644)
    proc = podman.run(
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        f"{secret}:/run/secrets/earmark_api_key:ro",
        image,
        "sh",
        "-c",
        'test "$EARMARK_API_KEY" = from-the-secret-file && echo key-ok',
        check=False,
    )
    assert proc.stdout.strip() == "key-ok", f"the secret file did not become EARMARK_API_KEY: {proc.stderr}"


def test_without_a_model_the_container_starts_and_readyz_says_what_is_missing(
    podman: Podman, image: str
) -> None:
    """No weights (the default hub model, offline): the container keeps running, /readyz answers 503
    naming the missing model, and the HEALTHCHECK fails with that reason (EARMARK_WAIT_FOR_MODEL=1)."""
    name, port = f"earmark-nomodel-{uuid.uuid4().hex[:8]}", free_port()
    podman.run(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        "HF_HUB_OFFLINE=1",
        "-e",
        "EARMARK_MODEL=laion/clap-htsat-fused",
        "-e",
        f"EARMARK_API_KEY={API_KEY}",
        "-e",
        f"EARMARK_PORT={port}",
        image,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert running(podman, name), f"the container without a model stopped:\n{podman.logs(name)}"
            try:
                status, body = http(f"http://127.0.0.1:{port}/readyz")
                break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"nothing listens after {READY_TIMEOUT_S} s:\n{podman.logs(name)}"
            )
            time.sleep(0.5)
        assert status == 503, f"/readyz without a model answered {status}: {body}"
        assert body["status"] == "no model" and "laion/clap-htsat-fused" in body["waiting_for"], (
            f"/readyz does not name the missing model: {body}"
        )
        health = podman.run("healthcheck", "run", name, check=False)
        assert health.returncode != 0, "the HEALTHCHECK passes without a model"
        assert "laion/clap-htsat-fused" in podman.logs(name), (
            f"the log does not say why:\n{podman.logs(name)}"
        )
    finally:
        podman.rm(name)


def test_baked_model_is_the_default_and_prepared_at_build_time(podman: Podman, image: str) -> None:
    """The test image is built with MODEL_DIR=tests/assets/tiny-clap: it becomes the default model and
    `earmark model prepare` left its ONNX export and backend choice in EARMARK_HOME."""
    proc = podman.run(
        "run",
        "--rm",
        "--network",
        "none",
        image,
        "sh",
        "-c",
        'echo "model=$EARMARK_MODEL"; ls /var/lib/earmark/cache/*/; cat /var/lib/earmark/cache/*/records.json',
    )
    out = proc.stdout
    assert "model=/opt/earmark/model" in out, f"the baked model is not the default: {out[-2000:]}"
    assert "audio.onnx" in out and "reference.npz" in out, (
        f"no build-time export in EARMARK_HOME: {out[-2000:]}"
    )
    records = json.loads(out[out.index("{") :])
    assert records["choices"], f"no backend was chosen at build time: {records}"


def test_image_size_is_reported_and_under_target(podman: Podman, image: str) -> None:
    size = int(podman.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    proc = podman.run(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "du -sm /opt/venv/lib/python3*/site-packages/* | sort -rn | head -n 12; du -sm /usr /opt/venv",
    )
    biggest = [line.split(None, 1) for line in proc.stdout.splitlines() if line.strip()]
    report = {"image": image, "bytes": size, "gib": round(size / 2**30, 3), "largest_mib": biggest}
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "image.json").write_text(json.dumps(report, indent=1))
    print(f"\nimage {image}: {size / 2**30:.2f} GiB; largest: {biggest[:6]}")
    assert size < SIZE_TARGET, f"the CPU image is {size / 2**30:.2f} GiB (target < 1.5 GiB): {biggest}"


# -- the compose stack, started with podman run ---------------------------------------------------


def test_monitor_container_publishes_a_beep_to_the_mosquitto_container(
    podman: Podman, image: str, mosquitto_image: str, tmp_path: Path
) -> None:
    """compose.yaml's mosquitto + monitor services, run as `podman run --network host` containers:
    the monitor reads a file with a beep and its event reaches the broker container."""
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    wave = synth.sequence([("silence", 10.0), ("beep", 12.0), ("silence", 10.0)], seed=4)
    beep = encode(wave, tmp_path / "beep.flac")
    (tmp_path / "monitor.yaml").write_text(f"""\
hop_s: 2
threads: 1
sources:
  - name: doorbell
    file: /audio/beep.flac
    realtime: false
rules:
  - name: beep
    labels: [beep]
    against: [hum, noise, clicks, chirp, silence]
    threshold: 0.75
    k: 3
    n: 3
clips: {{dir: /data/clips, format: flac}}
sinks:
  - type: mqtt
    host: 127.0.0.1
    port: {port}
    topic_prefix: earmark/test
  - type: stdout
""")
    for path in tmp_path.iterdir():
        path.chmod(0o644)
    tag = uuid.uuid4().hex[:8]
    broker, monitor, volume = f"earmark-mosquitto-{tag}", f"earmark-monitor-{tag}", f"earmark-data-{tag}"
    collector = None
    try:
        podman.run(
            "run",
            "-d",
            "--name",
            broker,
            "--network",
            "host",
            "-v",
            f"{tmp_path / 'mosquitto.conf'}:/mosquitto/config/mosquitto.conf:ro",
            mosquitto_image,
        )
        wait_for(lambda: _listening(port), 30, f"the mosquitto container on port {port}", step_s=0.2)
        collector = MqttCollector(port, "earmark/test/#")
        proc = podman.run(
            "run",
            "--name",
            monitor,
            "--network",
            "host",
            "-v",
            f"{TINY_MODEL}:/model:ro",
            "-v",
            f"{tmp_path / 'monitor.yaml'}:/config/monitor.yaml:ro",
            "-v",
            f"{beep}:/audio/beep.flac:ro",
            "-v",
            f"{volume}:/data",
            image,
            "earmark",
            "monitor",
            "--config",
            "/config/monitor.yaml",
            "-m",
            "/model",
            check=False,
            timeout=300,
        )
        assert proc.returncode == 0, f"earmark monitor exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        wait_for(
            lambda: bool(collector and collector.events()), 30, "the beep event on the broker", step_s=0.2
        )
        events = collector.events()
        assert events[0]["rule"] == "beep" and events[0]["source"] == "doorbell", f"published: {events}"
    finally:
        if collector is not None:
            collector.close()
        podman.rm(monitor, broker)
        podman.run("volume", "rm", "-f", volume, check=False)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
