"""Home Assistant over MQTT: discovery checked against Home Assistant's MQTT discovery schema, then
a real `earmark monitor` process and a real mosquitto broker: retained discovery, ON/OFF around an
event with refined times, level and last-heard sensors, and `offline` when the process is killed -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from earmark import synth
from earmark.monitor.homeassistant import Entities, Topics, discovery_configs, entity_slug
from helpers import ROOT, TINY_MODEL
from monitor_support import MqttCollector, free_port, mosquitto, wait_for

# -- Home Assistant's MQTT discovery schema (homeassistant/components/mqtt: schemas.py, entity.py,
# binary_sensor.py, sensor.py, as of 2025.10), transcribed: the keys each platform accepts, their
# types, and the checks it makes. `object_id` is deprecated since 2025.10 and removed in 2026.4.

_TOPIC = re.compile(r"^[^+#\0]+$")  # a publishable topic: no wildcards
_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")  # cv.entity_id
COMMON = {  # MQTT_ENTITY_COMMON_SCHEMA + availability
    "availability_topic": _TOPIC,
    "availability_mode": ("all", "any", "latest"),
    "payload_available": str,
    "payload_not_available": str,
    "device": dict,
    "origin": dict,
    "enabled_by_default": bool,
    "entity_category": ("config", "diagnostic"),
    "icon": re.compile(r"^[\w-]+:[\w-]+$"),
    "json_attributes_topic": _TOPIC,
    "json_attributes_template": str,
    "default_entity_id": _ENTITY_ID,
    "unique_id": str,
    "name": str,
    "state_topic": _TOPIC,
    "value_template": str,
    "qos": (0, 1, 2),
    "encoding": str,
    "expire_after": int,
    "force_update": bool,
}
PLATFORM = {
    "binary_sensor": {
        "payload_on": str,
        "payload_off": str,
        "off_delay": int,
        "device_class": ("sound", "occupancy", "problem", "running", "safety", "motion"),
    },
    "sensor": {
        "unit_of_measurement": str,
        "state_class": ("measurement", "measurement_angle", "total", "total_increasing"),
        "suggested_display_precision": int,
        "last_reset_value_template": str,
        "options": list,
    },
}


def ha_schema_problems(component: str, config: dict[str, Any]) -> list[str]:
    """What Home Assistant would reject or warn about in one discovery config."""
    allowed = {**COMMON, **PLATFORM[component]}
    problems = [f"unknown key {k!r}" for k in config if k not in allowed]
    if "object_id" in config:
        problems.append("object_id is deprecated (Home Assistant 2025.10) and ignored from 2026.4")
    for key, rule in allowed.items():
        if key not in config:
            continue
        value = config[key]
        ok = (
            isinstance(value, rule)
            if isinstance(rule, type)
            else value in rule
            if isinstance(rule, tuple)
            else isinstance(value, str) and bool(rule.match(value))
        )
        if not ok:
            problems.append(f"{key}={value!r} is not valid")
    for required in ("state_topic", "unique_id", "default_entity_id"):
        if required not in config:
            problems.append(f"{required} missing")
    if str(config.get("default_entity_id", "")).split(".")[0] != component:
        problems.append("default_entity_id must name the entity's own domain")
    device = config.get("device", {})
    if not (device.get("identifiers") or device.get("connections")):
        problems.append("device needs identifiers or connections")
    if "name" not in config.get("origin", {"name": ""}):
        problems.append("origin needs a name")
    if (
        component == "sensor"
        and config.get("state_class")
        and config.get("value_template", "").find("label") >= 0
    ):
        problems.append("a sensor with a state_class must have a numeric state")
    return problems


def test_discovery_configs_pass_home_assistants_schema() -> None:
    entities = Entities(
        rules=(("Front Door", "glass"),),
        labels=(("Front Door", "glass breaking"), ("Front Door", "dog")),
        sources=("Front Door",),
    )
    configs = discovery_configs(Topics("earmark"), entities)
    assert len(configs) == 1 + 2 + 2, "a rule, two labels, last heard and level"
    ids = set()
    for topic, config in configs:
        component = topic.split("/")[1]
        assert topic == f"homeassistant/{component}/{config['unique_id']}/config"
        assert ha_schema_problems(component, config) == [], (topic, config)
        ids.add(config["default_entity_id"])
    assert "binary_sensor.earmark_front_door_label_glass_breaking" in ids
    assert "sensor.earmark_front_door_level" in ids and "sensor.earmark_front_door_heard" in ids
    assert len(ids) == len(configs), "every entity gets its own id"
    assert ha_schema_problems("binary_sensor", {**configs[0][1], "object_id": "x"}), "the check bites"
    assert entity_slug("Büro", "__Glass  Break__") == "b_ro_glass_break"


# -- a real monitor process and a real broker ------------------------------------------------------


def retained_messages(port: int, topic: str, at_least: int) -> dict[str, bytes]:
    """What a client connecting now gets on ``topic``: only retained messages count."""
    import paho.mqtt.client as mqtt

    got: dict[str, bytes] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"late-{port}")
    client.on_connect = lambda c, u, f, r, p=None: c.subscribe(topic, qos=1)
    client.on_message = lambda c, u, m: got.update({m.topic: m.payload}) if m.retain else None
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: len(got) >= at_least, 20, f"{at_least} retained messages on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
    return dict(got)


@pytest.mark.server
@pytest.mark.kill
def test_home_assistant_sees_the_event_and_the_monitor_going_offline(tmp_path: Path) -> None:
    port = free_port()
    broker = mosquitto(port, tmp_path / "broker").start()
    collector = MqttCollector(port, "#")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"""\
sources:
  - name: yard
    stdin: {{sample_rate: 48000, format: f32le}}
    gate_dbfs: false
rules:
  - name: alarm
    labels: [beep]
    against: [hum, noise]
    threshold: 0.7
    k: 2
    n: 3
    max_quiet_s: 6
database: {tmp_path / "m.db"}
threads: 1
clips: {{enabled: false}}
sinks:
  - type: mqtt
    port: {port}
    homeassistant: true
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "earmark", "monitor", "--config", str(cfg), "-m", str(TINY_MODEL)],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None
    try:
        wave = synth.sequence([("noise", 14.0), ("beep", 12.0), ("noise", 30.0)], seed=0)
        proc.stdin.write(wave.astype("<f4").tobytes())
        proc.stdin.flush()
        label_topic = "earmark/yard/label/beep/state"

        def ended() -> bool:  # the end message, then the rule's state, then the label's state
            states = [p for t, p, _ in collector.messages if t == label_topic]
            return b"ON" in states and states[-1] == b"OFF"

        wait_for(ended, 180, "the label's sensor ON, then OFF", step_s=0.2)
        topics = collector.topics()
        assert topics["earmark/status"] == b"online"
        assert topics["earmark/yard/alarm/state"] == b"OFF", "the rule's sensor is OFF after the event"
        assert topics["earmark/yard/label/beep/state"] == b"OFF", "the label's sensor too"
        start, end = collector.events()
        assert (start["event"], end["event"]) == ("start", "end")
        assert abs(start["start_s"] - 14.0) <= 0.5, (
            f"the alert starts at {start['start_s']} s, the beep at 14"
        )
        assert abs(end["end_s"] - 26.0) <= 0.5, f"the event ends at {end['end_s']} s, the beep at 26"
        assert end["start_by"] == end["end_by"] == "refined"
        assert end["clock"] == "stream", "a pipe fed faster than real time is timed by stream position"
        level = float(topics["earmark/yard/level"])
        assert -60.0 < level <= 0.0, f"the level sensor is dBFS: {level}"
        heard = json.loads(topics["earmark/yard/heard"])
        assert heard["label"] in ("beep", "hum", "noise") and 0.7 <= heard["score"] <= 1.0, heard

        # a newcomer (Home Assistant starting later) gets the discovery configs: they are retained
        late = retained_messages(port, "homeassistant/#", 4)
        assert {t.split("/")[1] for t in late} == {"binary_sensor", "sensor"}, late
        for topic, payload in late.items():
            assert ha_schema_problems(topic.split("/")[1], json.loads(payload)) == [], topic

        os.kill(proc.pid, signal.SIGKILL)  # no goodbye: the broker publishes the Last Will
        proc.wait(30)
        wait_for(lambda: collector.statuses()[-1:] == [b"offline"], 60, "offline after kill -9")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.close()
        broker.stop()


@pytest.mark.server
def test_the_level_sensor_goes_out_at_most_once_per_hop(tmp_path: Path) -> None:
    """A burst of windows (a file read as fast as possible, a backlog) must not flood Home Assistant
    with level readings: one per hop; the last-heard sensor changes at once when the label does."""
    import time

    from earmark.monitor.mqtt import MqttOptions, MqttSink
    from earmark.monitor.rules import Rule
    from earmark.monitor.runner import WindowResult

    port = free_port()
    broker = mosquitto(port, tmp_path / "broker").start()
    collector = MqttCollector(port, "earmark/#")
    rule = Rule(name="alarm", labels=("beep",), against=("hum",), threshold=0.7)
    sinks = {
        hop: MqttSink(
            f"mqtt{hop:g}",
            MqttOptions(port=port, topic_prefix=f"earmark/h{hop:g}", client_id=f"level-{hop:g}"),
            rules=(rule,),
            hop_s=hop,
        )
        for hop in (600.0, 0.5)
    }
    try:
        for sink in sinks.values():
            sink.start()
            wait_for(sink._connected.is_set, 30, f"sink {sink.name} connected to mosquitto")

        def window(i: int, beep: float) -> WindowResult:
            probs = {"alarm": {"beep": beep, "hum": round(1 - beep, 3)}}
            return WindowResult(
                source="yard",
                start_s=2.0 * i,
                end_s=2.0 * i + 10,
                level_dbfs=-30.0 - i,
                skipped=False,
                probs=probs,
            )

        burst = [window(i, 0.9 if i in (3, 7) else 0.1) for i in range(20)]
        for w in burst:  # twenty windows, far quicker than one 600 s hop
            sinks[600.0].window(w)
        for w in burst[:3]:  # three windows, each more than one 0.5 s hop after the last
            sinks[0.5].window(w)
            time.sleep(0.6)
        wait_for(
            lambda: sum(t == "earmark/h0.5/yard/level" for t, _, _ in collector.messages) >= 3,
            30,
            "a level reading per hop",
        )
        wait_for(
            lambda: sum(t == "earmark/h600/yard/heard" for t, _, _ in collector.messages) >= 5,
            30,
            "every change of the label heard",
        )
        for sink in sinks.values():  # QoS 0 messages go out in order: wait for a later QoS 1 one
            sink.close()
        sinks.clear()
        wait_for(lambda: collector.statuses().count(b"offline") >= 2, 30, "both sinks said goodbye")
        levels = [p for t, p, _ in collector.messages if t == "earmark/h600/yard/level"]
        assert levels == [b"-30.0"], f"one level reading for a burst within one hop, got {levels}"
        slow = [p for t, p, _ in collector.messages if t == "earmark/h0.5/yard/level"]
        assert slow == [b"-30.0", b"-31.0", b"-32.0"], f"a reading for each hop, got {slow}"
        heard = [json.loads(p) for t, p, _ in collector.messages if t == "earmark/h600/yard/heard"]
        assert [(h["label"], h["at_s"]) for h in heard] == [
            ("hum", 10.0),
            ("beep", 16.0),
            ("hum", 18.0),
            ("beep", 24.0),
            ("hum", 26.0),
        ], f"a change of the label heard goes out at once, the same label once per hop: {heard}"
    finally:
        for sink in sinks.values():
            sink.close()
        collector.close()
        broker.stop()
