"""Prometheus metrics of one app: requests, durations, queue, batch sizes, model load time.

Each app has its own registry, so several apps in one process (tests) never
share counters. Names follow Prometheus' conventions: units in the name
(``_seconds``, ``_requests``, ``_windows``), durations ``..._duration_seconds``,
counters ``..._total``. Requests are labelled by the route that answered them
(its path template, such as ``/api/v1/library/similar/{file_id}``), never by
raw paths, so a scanner cannot blow up the number of series: the page is
``/ui``, and a path no route answers is ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["MetricsMiddleware", "ServerMetrics", "route_label"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED = "unmatched"


def route_label(scope: dict[str, Any]) -> str:
    """The metrics label of a request, once the app has routed it: the route's path template."""
    path = scope.get("path", "")
    if path == "/ui" or path.startswith("/ui/"):  # the Gradio page's own routes, mounted at /ui
        return "/ui"
    route = scope.get("route") or _match(scope)
    template = getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


def _match(scope: dict[str, Any]) -> Any:
    """The app's route for this request, for those its router does not name in the scope (docs...)."""
    from starlette.routing import Match

    app = scope.get("app")
    partial = None
    for route in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


class ServerMetrics:
    """The app's collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "earmark_requests_total", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "earmark_request_duration_seconds",
            "Time to answer a request",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("earmark_queue_requests", "Requests held by the engine now", registry=r)
        self.queue_capacity = Gauge(
            "earmark_queue_capacity_requests", "Requests the engine may hold", registry=r
        )
        self.rejected = Counter(
            "earmark_rejected_requests_total", "Requests refused with 429 (queue full)", registry=r
        )
        self.batch_size = Histogram(
            "earmark_batch_size_windows",
            "Audio windows per model batch",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "earmark_batch_duration_seconds", "Model time per batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.decode_seconds = Histogram(
            "earmark_decode_duration_seconds",
            "Time to decode one upload",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_load_seconds = Gauge(
            "earmark_model_load_duration_seconds", "Time the model took to load", registry=r
        )
        self.ready = Gauge("earmark_ready", "1 when the model is loaded, warm and not draining", registry=r)

    def observe(self, kind: str, *values: float) -> None:
        """Engine hook: ``("batch", size, seconds)`` or ``("decode", seconds)``."""
        if kind == "batch":
            self.batch_size.observe(values[0])
            self.batch_seconds.observe(values[1])
        elif kind == "decode":
            self.decode_seconds.observe(values[0])

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by route and status, and times it."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = route_label(scope)  # after the app ran: the router has put the route in the scope
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            if status == 429:
                self.metrics.rejected.inc()
