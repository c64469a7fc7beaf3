"""Home Assistant MQTT discovery: the entities earmark announces, and their topics.

Per source (``<p>`` is the MQTT sink's ``topic_prefix``; names made topic-safe):

- a ``binary_sensor`` per rule, ON while an event of the rule is open
  (``<p>/<source>/<rule>/state``; the event messages are its attributes);
- a ``binary_sensor`` per alert label, ON while an event of that label is open
  (``<p>/<source>/label/<label>/state``);
- a ``sensor`` with the last label heard at or above its threshold and its score
  (``<p>/<source>/heard``, JSON: ``label``, ``score``, ``rule``, ``at_s``; a new label at once,
  the same one at most once per hop);
- a ``sensor`` with the audio level in dBFS, the loudest 100 ms of the latest window,
  updated at most once per hop (``<p>/<source>/level``), like Frigate's ``audio_dBFS``.

Every entity names ``<p>/status`` as its availability topic: ``online`` while earmark
runs, ``offline`` (the MQTT Last Will, published by the broker) when it dies.
Entities are announced with ``default_entity_id`` (``binary_sensor.earmark_kitchen_glass``):
Home Assistant 2025.10 deprecated ``object_id``, and 2026.4 drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Entities", "Topics", "discovery_configs", "entity_slug"]


def topic_name(name: str) -> str:
    """A name as one topic level: no ``/ + #``, spaces or other surprises."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


def entity_slug(*parts: str) -> str:
    """Parts joined as Home Assistant's object ids are: lowercase ``a-z0-9_``, no doubled or edge ``_``."""
    slug = re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower())
    return re.sub(r"_+", "_", slug).strip("_") or "earmark"


@dataclass(frozen=True, kw_only=True)
class Entities:
    """What is announced: ``(source, rule)`` and ``(source, alert label)`` pairs, and the sources."""

    rules: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: Entities | tuple[tuple[str, str], ...]) -> Entities:
        """Entities, or the older form: ``(source, rule)`` pairs only."""
        if isinstance(value, Entities):
            return value
        return cls(rules=tuple(value), sources=tuple(dict.fromkeys(s for s, _ in value)))


@dataclass(frozen=True)
class Topics:
    """The sink's topic names under ``prefix``."""

    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    def rule(self, source: str, rule: str, leaf: str) -> str:
        return f"{self.prefix}/{topic_name(source)}/{topic_name(rule)}/{leaf}"

    def label_state(self, source: str, label: str) -> str:
        return f"{self.prefix}/{topic_name(source)}/label/{topic_name(label)}/state"

    def heard(self, source: str) -> str:
        return f"{self.prefix}/{topic_name(source)}/heard"

    def level(self, source: str) -> str:
        return f"{self.prefix}/{topic_name(source)}/level"


def discovery_configs(
    topics: Topics, entities: Entities, discovery_prefix: str = "homeassistant"
) -> list[tuple[str, dict[str, Any]]]:
    """``(config topic, config)`` of every entity, to publish retained."""
    device = {
        "identifiers": [entity_slug(topics.prefix)],
        "name": f"earmark ({topics.prefix})",
        "manufacturer": "earmark",
        "model": "audio monitor",
    }
    base = {"availability_topic": topics.status, "device": device, "origin": {"name": "earmark"}}
    out: list[tuple[str, dict[str, Any]]] = []

    def add(component: str, parts: tuple[str, ...], config: dict[str, Any]) -> None:
        uid = "_".join(topic_name(x) for x in (topics.prefix, *parts))  # as earlier versions named them
        entity_id = f"{component}.{entity_slug(topics.prefix, *parts)}"
        config = {"unique_id": uid, "default_entity_id": entity_id, **config, **base}
        out.append((f"{discovery_prefix}/{component}/{uid}/config", config))

    for source, rule in entities.rules:
        on_off = {"payload_on": "ON", "payload_off": "OFF", "device_class": "sound"}
        add(
            "binary_sensor",
            (source, rule),
            {
                "name": f"{source} {rule}",
                "state_topic": topics.rule(source, rule, "state"),
                "json_attributes_topic": topics.rule(source, rule, "event"),
                **on_off,
            },
        )
    for source, label in entities.labels:
        add(
            "binary_sensor",
            (source, "label", label),
            {
                "name": f"{source} {label}",
                "state_topic": topics.label_state(source, label),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "sound",
            },
        )
    for source in entities.sources:
        add(
            "sensor",
            (source, "heard"),
            {
                "name": f"{source} last heard",
                "state_topic": topics.heard(source),
                "value_template": "{{ value_json.label }}",
                "json_attributes_topic": topics.heard(source),
                "icon": "mdi:ear-hearing",
            },
        )
        add(
            "sensor",
            (source, "level"),
            {
                "name": f"{source} audio level",
                "state_topic": topics.level(source),
                "unit_of_measurement": "dBFS",
                "state_class": "measurement",
                "suggested_display_precision": 1,
                "icon": "mdi:volume-high",
            },
        )
    return out
