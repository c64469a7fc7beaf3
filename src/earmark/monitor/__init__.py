"""Live monitoring: audio streams -> sliding windows -> alert rules -> event log -> sinks.

    from earmark import Classifier
    from earmark.monitor import Monitor, load_config

    monitor = Monitor(load_config("monitor.yaml"), Classifier())
    monitor.run()          # until the sources end or monitor.request_stop()

Modules: :mod:`.config` (the YAML file), :mod:`.sources` (files, URLs, stdin,
microphone; reconnects), :mod:`.rules` (pure alert logic), :mod:`.events` (SQLite
event log and outbox), :mod:`.sinks` and :mod:`.mqtt` (delivery), :mod:`.runner`
(threads and the shared model), :mod:`.metrics` (Prometheus). Needs the
``monitor`` extra (PyYAML, paho-mqtt, httpx, prometheus-client; sounddevice for
the microphone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Monitor", "MonitorConfig", "load_config"]

if TYPE_CHECKING:
    from .config import MonitorConfig, load_config
    from .runner import Monitor


def __getattr__(name: str) -> Any:
    # lazy: importing the package costs nothing until a part of it is used
    if name in ("MonitorConfig", "load_config"):
        from . import config

        return getattr(config, name)
    if name == "Monitor":
        from .runner import Monitor

        return Monitor
    raise AttributeError(name)
