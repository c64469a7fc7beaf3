"""The MQTT sink (paho-mqtt): event topics, retained availability with a Last Will, Home Assistant discovery.

Topics (``<p>`` is ``topic_prefix``, names made topic-safe):

- ``<p>/status``: ``online`` / ``offline``, retained; the broker publishes
  ``offline`` itself if earmark vanishes (Last Will).
- ``<p>/<source>/<rule>/event``: each event message as JSON (QoS 1).
- ``<p>/<source>/<rule>/state``: ``ON`` while an event of the rule is open, ``OFF`` after, retained.
- with ``homeassistant: true``, ``<discovery_prefix>/binary_sensor/<id>/config``
  (retained) makes each rule on each source a Home Assistant binary_sensor.

The client connects in the background and keeps reconnecting, so a broker that
is down at start never stops detection; messages wait in the outbox meanwhile.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import MissingExtraError
from .events import OutboxItem
from .sinks import SinkError, public_payload

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


def topic_name(name: str) -> str:
    """A name as one topic level: no ``/ + #``, spaces or other surprises."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


class MqttSink:
    """Publishes event messages to an MQTT broker.

    Args:
        name: the sink's name (keys its outbox rows).
        options: see :class:`MqttOptions`.
        entities: ``(source, rule)`` pairs announced to Home Assistant.
    """

    def __init__(self, name: str, options: MqttOptions, entities: tuple[tuple[str, str], ...] = ()) -> None:
        self.name, self.options, self.entities = name, options, entities
        self.prefix = options.topic_prefix.rstrip("/")
        self.status_topic = f"{self.prefix}/status"
        self._client: Any = None
        self._connected = threading.Event()
        self._open: dict[tuple[str, str], set[str]] = {}

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
            for source, rule in self.entities:
                topic, config = self.discovery(source, rule)
                client.publish(topic, json.dumps(config), qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if self._connected.is_set():
            log.warning("sink %s: lost the broker (%s); reconnecting", self.name, reason)
        self._connected.clear()

    def topic(self, source: str, rule: str, leaf: str) -> str:
        return f"{self.prefix}/{topic_name(source)}/{topic_name(rule)}/{leaf}"

    def discovery(self, source: str, rule: str) -> tuple[str, dict[str, Any]]:
        """The Home Assistant discovery topic and config of one rule on one source."""
        uid = f"{topic_name(self.prefix)}_{topic_name(source)}_{topic_name(rule)}"
        config = {
            "name": f"{source} {rule}",
            "unique_id": uid,
            "object_id": uid,
            "state_topic": self.topic(source, rule, "state"),
            "json_attributes_topic": self.topic(source, rule, "event"),
            "availability_topic": self.status_topic,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "sound",
            "device": {
                "identifiers": [topic_name(self.prefix)],
                "name": f"earmark ({self.prefix})",
                "manufacturer": "earmark",
            },
        }
        return f"{self.options.discovery_prefix}/binary_sensor/{uid}/config", config

    def send(self, item: OutboxItem) -> None:
        if not self._connected.is_set():
            raise SinkError("broker not connected")
        p = item.payload
        key = (p["source"], p["rule"])
        open_ids = self._open.setdefault(key, set())
        (open_ids.add if item.kind == "start" else open_ids.discard)(item.event_id)
        state = "ON" if open_ids else "OFF"
        self._publish(self.topic(*key, "event"), json.dumps(public_payload(p), sort_keys=True), retain=False)
        self._publish(self.topic(*key, "state"), state, retain=True)

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
