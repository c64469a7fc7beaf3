"""The MQTT sink (paho-mqtt): event topics, retained availability with a Last Will, Home Assistant discovery.

Topics (``<p>`` is ``topic_prefix``, names made topic-safe):

- ``<p>/status``: ``online`` / ``offline``, retained; the broker publishes
  ``offline`` itself if earmark vanishes (Last Will).
- ``<p>/<source>/<rule>/event``: each event message as JSON (QoS 1).
- ``<p>/<source>/<rule>/state``: ``ON`` while an event of the rule is open, ``OFF`` after, retained.
- ``<p>/<source>/label/<label>/state``: ``ON`` while an event of that alert label is open, retained.
- ``<p>/<source>/heard``: the last label heard at or above its threshold, with its score (JSON):
  a new label at once, the same one at most once per hop.
- ``<p>/<source>/level``: the audio level in dBFS, at most once per hop.
- with ``homeassistant: true``, retained discovery configs under ``<discovery_prefix>``
  make these Home Assistant entities (:mod:`earmark.monitor.homeassistant`).

The client connects in the background and keeps reconnecting, so a broker that
is down at start never stops detection; messages wait in the outbox meanwhile.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MissingExtraError
from .events import OutboxItem
from .homeassistant import Entities, Topics, discovery_configs, topic_name
from .sinks import SinkError, public_payload

if TYPE_CHECKING:
    from .rules import Rule
    from .runner import WindowResult

__all__ = ["MqttOptions", "MqttSink", "topic_name"]

log = logging.getLogger("earmark")


@dataclass(frozen=True, kw_only=True)
class MqttOptions:
    """Connection and topics of the MQTT sink.

    Attributes:
        host: broker host.
        port: broker port.
        username: login, if the broker wants one.
        password: its password.
        tls: connect with TLS (system CA store).
        client_id: MQTT client id (default ``earmark-<hostname>``).
        topic_prefix: first level of every topic.
        qos: QoS of event messages (1: at least once).
        keepalive_s: MQTT keepalive.
        publish_timeout_s: how long a message may wait for the broker's acknowledgement.
        homeassistant: publish Home Assistant discovery configs.
        discovery_prefix: Home Assistant's discovery prefix.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    client_id: str = ""
    topic_prefix: str = "earmark"
    qos: int = 1
    keepalive_s: int = 30
    publish_timeout_s: float = 5.0
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"


class MqttSink:
    """Publishes event messages to an MQTT broker.

    Args:
        name: the sink's name (keys its outbox rows).
        options: see :class:`MqttOptions`.
        entities: what is announced to Home Assistant (or ``(source, rule)`` pairs).
        rules: the rules, for the last-heard sensor's thresholds.
        hop_s: the monitor's hop: the level and last-heard sensors update at most this often.
    """

    def __init__(
        self,
        name: str,
        options: MqttOptions,
        entities: Entities | tuple[tuple[str, str], ...] = (),
        *,
        rules: tuple[Rule, ...] = (),
        hop_s: float = 2.0,
    ) -> None:
        self.name, self.options = name, options
        self.entities = Entities.of(entities)
        self.prefix = options.topic_prefix.rstrip("/")
        self.topics = Topics(self.prefix)
        self.status_topic = self.topics.status
        self.rules, self.hop_s = {r.name: r for r in rules}, hop_s
        self._client: Any = None
        self._connected = threading.Event()
        self._open: dict[tuple[str, str], set[str]] = {}
        self._label_open: dict[tuple[str, str], set[str]] = {}
        self._last_window: dict[str, float] = {}  # source -> monotonic time of its last level update
        self._last_heard: dict[str, str] = {}  # source -> the label its heard sensor shows

    def start(self) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise MissingExtraError("the MQTT sink", "monitor") from None
        o = self.options
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=o.client_id or f"earmark-{socket.gethostname()}"
        )
        if o.username:
            client.username_pw_set(o.username, o.password)
        if o.tls:
            client.tls_set()
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(o.host, o.port, keepalive=o.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("sink %s: broker refused the connection: %s", self.name, reason)
            return
        log.info("sink %s: connected to %s:%d", self.name, self.options.host, self.options.port)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        if self.options.homeassistant:
            for topic, config in discovery_configs(self.topics, self.entities, self.options.discovery_prefix):
                client.publish(topic, json.dumps(config), qos=1, retain=True)
            for source, label in self.entities.labels:  # known state at start: nothing heard
                if not self._label_open.get((source, label)):
                    client.publish(self.topics.label_state(source, label), "OFF", qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if self._connected.is_set():
            log.warning("sink %s: lost the broker (%s); reconnecting", self.name, reason)
        self._connected.clear()

    def topic(self, source: str, rule: str, leaf: str) -> str:
        return self.topics.rule(source, rule, leaf)

    def discovery(self, source: str, rule: str) -> tuple[str, dict[str, Any]]:
        """The Home Assistant discovery topic and config of one rule on one source."""
        only = Entities(rules=((source, rule),))
        return discovery_configs(self.topics, only, self.options.discovery_prefix)[0]

    def send(self, item: OutboxItem) -> None:
        if not self._connected.is_set():
            raise SinkError("broker not connected")
        p = item.payload
        key = (p["source"], p["rule"])
        change = set.add if item.kind == "start" else set.discard
        open_ids = self._open.setdefault(key, set())
        label_ids = self._label_open.setdefault((p["source"], p["label"]), set())
        change(open_ids, item.event_id)
        change(label_ids, item.event_id)
        self._publish(self.topic(*key, "event"), json.dumps(public_payload(p), sort_keys=True), retain=False)
        self._publish(self.topic(*key, "state"), "ON" if open_ids else "OFF", retain=True)
        label_topic = self.topics.label_state(p["source"], p["label"])
        self._publish(label_topic, "ON" if label_ids else "OFF", retain=True)

    def window(self, result: WindowResult) -> None:
        """Level and last-heard sensors from one analysed window (model thread: never waits).

        Both go out at most once per hop of wall-clock time, even when windows come in a burst
        (a file read as fast as possible, a backlog after a stall); a change of the label heard
        goes out at once.
        """
        client, now = self._client, time.monotonic()
        if client is None or not self._connected.is_set():
            return
        source, heard = result.source, self._heard(result)
        last = self._last_window.get(source)
        due = last is None or now - last >= self.hop_s * 0.9
        if heard is not None and (due or heard["label"] != self._last_heard.get(source)):
            self._last_heard[source] = heard["label"]
            client.publish(self.topics.heard(source), json.dumps(heard), qos=0, retain=True)
        if due:
            self._last_window[source] = now
            client.publish(self.topics.level(source), f"{result.level_dbfs:.1f}", qos=0, retain=False)

    def _heard(self, result: WindowResult) -> dict[str, Any] | None:
        best: dict[str, Any] | None = None
        for rule_name, probs in result.probs.items():
            rule = self.rules.get(rule_name)
            for label, p in probs.items():
                threshold = rule.threshold_for(label) if rule is not None else 0.5
                if p >= threshold and (best is None or p > best["score"]):
                    best = {"label": label, "score": round(p, 3), "rule": rule_name, "at_s": result.end_s}
        return best

    def _publish(self, topic: str, payload: str, *, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=self.options.qos, retain=retain)
        try:
            info.wait_for_publish(self.options.publish_timeout_s)
        except (RuntimeError, ValueError) as ex:
            raise SinkError(f"publish to {topic} failed: {ex}") from None
        if self.options.qos and not info.is_published():
            raise SinkError(f"broker did not acknowledge {topic} within {self.options.publish_timeout_s:g} s")

    def close(self) -> None:
        client = self._client
        if client is None:
            return
        if self._connected.is_set():
            try:
                client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2.0)
            except (RuntimeError, ValueError):
                pass
        client.disconnect()
        client.loop_stop()
