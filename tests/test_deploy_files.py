"""The deployment files, read without a container engine (the fast lane): compose.yaml wires serve,
mosquitto and the monitor as docs/deploy.md says, the monitor's mounted config loads and points at
the broker service, and the Dockerfile keeps the promises a `docker run` user relies on.
tests/test_image.py builds and runs them for real where podman works."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from earmark.monitor.config import load_config
from helpers import ROOT


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source, from `source:target[:mode]` volume lines."""
    out = {}
    for line in service.get("volumes", []):
        source, target, *_ = line.split(":")
        out[target] = source
    return out


def test_compose_runs_serve_mosquitto_and_monitor_on_shared_volumes() -> None:
    services = _compose()["services"]
    assert {"serve", "mosquitto", "monitor"} <= set(services), f"compose.yaml services: {sorted(services)}"
    serve, monitor = services["serve"], services["monitor"]
    assert any(p.endswith(":7860") for p in serve["ports"]), f"serve does not publish 7860: {serve['ports']}"
    assert "EARMARK_API_KEY" in serve["environment"], (
        "serve has no API key: it would refuse to listen on 0.0.0.0"
    )
    assert monitor["command"][:4] == ["earmark", "monitor", "--config", "/config/monitor.yaml"], monitor[
        "command"
    ]
    assert "mosquitto" in monitor["depends_on"], "the monitor does not wait for the broker"
    for name, service in (("serve", serve), ("monitor", monitor)):
        mounts = _mounts(service)
        assert mounts.get("/var/lib/earmark") == "earmark-home", (
            f"{name} does not share the model cache: {mounts}"
        )
        assert mounts.get("/data") == "earmark-data", f"{name} does not share the data volume: {mounts}"
    config_source = _mounts(monitor)["/config/monitor.yaml"]
    assert (ROOT / config_source).resolve() == ROOT / "examples" / "compose" / "home-security.yaml", (
        config_source
    )


def test_the_monitor_config_in_compose_loads_and_publishes_to_the_broker_service() -> None:
    config = load_config(ROOT / "examples" / "compose" / "home-security.yaml")
    mqtt = [s.options for s in config.sinks if s.type == "mqtt"]
    assert mqtt and mqtt[0].host == "mosquitto", (
        f"the monitor's MQTT sink does not point at the service: {mqtt}"
    )
    conf = (ROOT / "examples" / "compose" / "mosquitto.conf").read_text()
    assert re.search(rf"^listener {mqtt[0].port}\b", conf, re.M), (
        f"the broker does not listen on {mqtt[0].port}"
    )
    assert config.clips.dir == Path("/data/clips"), f"clips go to {config.clips.dir}, not the shared volume"
    mosquitto = _compose()["services"]["mosquitto"]
    assert "/mosquitto/config/mosquitto.conf" in _mounts(mosquitto), "the broker's config is not mounted"


def test_dockerfile_keeps_its_promises() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]  # the runtime stage
    for line, why in [
        (r"^ARG BASE_IMAGE=\S+", "the base image is a build argument"),
        (r"^USER earmark$", "the server runs as a non-root user"),
        (r"^EXPOSE 7860$", "the page's port"),
        (r'^VOLUME \["/var/lib/earmark", "/data"\]$', "volumes for the model cache and the data"),
        (r"^HEALTHCHECK .*\n.*healthcheck\.py", "a HEALTHCHECK on /readyz"),
        (r'^CMD \["earmark", "serve", "--host", "0.0.0.0"\]$', "earmark serve on all addresses by default"),
        (r"EARMARK_WAIT_FOR_MODEL=1", "without a model the server starts and /readyz says what is missing"),
    ]:
        assert re.search(line, text if line.startswith("^ARG") else final, re.M), (
            f"Dockerfile: {why} ({line})"
        )
    assert "ARG PIP_CERT" in text and "PIP_CERT" not in final, (
        "the build-time CA bundle must not stay in the runtime image"
    )
    assert "server,ui,monitor" in text, "the image installs the server, ui and monitor extras"
