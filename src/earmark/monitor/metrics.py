"""Prometheus metrics of a monitor (prometheus-client, extra ``monitor``).

Each :class:`MonitorMetrics` has its own registry, so several monitors (or
tests) in one process never collide; :meth:`MonitorMetrics.serve` exposes it on
``127.0.0.1`` by default.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingExtraError

__all__ = ["MonitorMetrics"]

SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class MonitorMetrics:
    """Counters, gauges and histograms of windows, events, sinks and sources."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            raise MissingExtraError("earmark monitor", "monitor") from None
        r = self.registry = CollectorRegistry()
        p = "earmark_monitor_"
        self.windows = Counter(p + "windows", "Windows classified.", ["source"], registry=r)
        self.skipped = Counter(
            p + "windows_skipped", "Windows not classified.", ["source", "reason"], registry=r
        )
        self.scores = Histogram(
            p + "score",
            "Probabilities of alert labels per window.",
            ["rule", "label"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.events = Counter(p + "events", "Events opened.", ["source", "rule", "label"], registry=r)
        self.suppressed = Counter(
            p + "events_suppressed", "Triggers inside a cooldown.", ["source", "rule"], registry=r
        )
        self.delivered = Counter(p + "sink_delivered", "Messages a sink took.", ["sink"], registry=r)
        self.sink_failures = Counter(p + "sink_failures", "Failed delivery attempts.", ["sink"], registry=r)
        self.outbox_dropped = Counter(
            p + "outbox_dropped", "Messages dropped from a full outbox.", ["sink"], registry=r
        )
        self.reconnects = Counter(
            p + "source_reconnects", "Times a source dropped and reconnected.", ["source"], registry=r
        )
        self.source_up = Gauge(p + "source_up", "1 while a source delivers audio.", ["source"], registry=r)
        self.processing = Histogram(
            p + "processing_seconds",
            "Model and rule time per window.",
            ["source"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.rtf = Gauge(
            p + "realtime_factor",
            "Processing time per second of audio (1 = just keeping up).",
            ["source"],
            registry=r,
        )
        self.lag = Gauge(p + "queue_windows", "Windows waiting for the model.", registry=r)

    def value(self, name: str, **labels: str) -> float:
        """A current sample value (0 when never set), e.g. ``value("windows_total", source="a")``."""
        v = self.registry.get_sample_value("earmark_monitor_" + name, labels or None)
        return float(v or 0.0)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Expose ``/metrics`` over HTTP; returns the server (``.shutdown()`` to stop)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
