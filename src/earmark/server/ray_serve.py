"""``earmark serve --ray``: the same app as a Ray Serve application, one model per replica.

Each replica builds exactly what ``earmark serve`` builds (:func:`earmark.server.api.create_app`:
REST API, page, metrics, the engine's bounded queue answering 429) around its own model. Two
things differ:

- **Batching is Serve's.** The engine's windows go through :class:`ServeBatchedRunner`:
  ``@serve.batch`` gathers the windows of concurrent requests (up to the runner's batch, waiting
  at most ``max_wait_ms``), and the stage's model runner embeds them at its fixed batch shape,
  so a window's embedding does not depend on its batch or on which replica ran it.
- **Answers say who answered**: the ``X-Earmark-Replica`` header names the Serve replica.

Serve's proxy spreads requests over the replicas, restarts a replica that dies, and scales the
count between ``min_replicas`` and ``max_replicas`` by load when autoscaling is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import ConfigError, MissingExtraError
from ..stage import BatchPolicy, ModelRunner
from .settings import ServerSettings, is_loopback

if TYPE_CHECKING:
    from ..backends import Backend

T = TypeVar("T")

__all__ = ["RayServeOptions", "ReplicaSpec", "ServeBatchedRunner", "deployment", "serve_on_ray"]

log = logging.getLogger("earmark")

APP_NAME = "earmark"
REPLICA_HEADER = "x-earmark-replica"
# handed to every replica, so it loads the same model the same way as this process would
FORWARDED_ENV = ("EARMARK_", "HF_", "TRANSFORMERS_", "OMP_NUM_THREADS")


@dataclass(frozen=True, kw_only=True)
class ReplicaSpec:
    """What each replica builds: the arguments of ``earmark serve``, resolved in the driver.

    Attributes:
        model: model alias, hub id or folder (a folder must exist on every node).
        device: ``auto``, ``cpu``, ``cuda``...
        threads: model threads per replica (default: its CPUs minus the decode workers, at least 1).
        backend: backend name (default: ``$EARMARK_BACKEND`` or ``auto``).
        settings: the server settings (queue, limits, batching) of every replica.
        pack_paths: classifier packs, name -> path (on every node).
        db_path: the SQLite store for the library and events routes (a path on every node), or None.
        ui: mount the page.
    """

    model: str | None = None
    device: str | None = None
    threads: int | None = None
    backend: str | None = None
    settings: ServerSettings = field(default_factory=ServerSettings)
    pack_paths: dict[str, str] = field(default_factory=dict)
    db_path: str | None = None
    ui: bool = True


@dataclass(frozen=True, kw_only=True)
class RayServeOptions:
    """How the application is deployed.

    Attributes:
        address: Ray cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); None starts
            a local cluster for this process.
        host: where Serve's HTTP proxy listens.
        port: its port (0: a free one, chosen here).
        replicas: replicas to start with (without autoscaling: always).
        max_replicas: above ``replicas``: autoscale between the two by ongoing requests.
        replica_cpus: CPUs reserved per replica.
        replica_gpus: GPUs per replica (fractions share a GPU).
    """

    address: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_replicas: int | None = None
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0

    def check(self) -> None:
        """Raises ConfigError for a count or resource that cannot work."""
        if self.replicas < 1:
            raise ConfigError("--replicas must be at least 1")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigError("--max-replicas must be at least --replicas")
        if self.replica_cpus <= 0 or self.replica_gpus < 0:
            raise ConfigError("--replica-cpus must be positive and --replica-gpus not negative")


class ServeBatchedRunner(ModelRunner):
    """The classifier's model runner with Serve's batching in front: ``@serve.batch`` gathers the
    windows of concurrent requests on the replica's event loop, then the runner embeds them at its
    fixed shape (so a window's embedding depends neither on its batch nor on its replica).

    Only :meth:`submit` differs; everything else is the wrapped runner's (one model queue).
    """

    def __init__(self, inner: ModelRunner, loop: asyncio.AbstractEventLoop, *, wait_s: float) -> None:
        # no super().__init__: this object owns no thread and no queue, ``inner`` does
        from ray import serve

        self.inner, self._loop = inner, loop
        self._serve_batch = serve.batch(max_batch_size=inner.batch, batch_wait_timeout_s=wait_s)(
            self._embed_rows
        )

    @property
    def backend(self) -> Backend:  # type: ignore[override]
        return self.inner.backend

    @property
    def policy(self) -> BatchPolicy:  # type: ignore[override]
        return self.inner.policy

    @property
    def batch(self) -> int:
        return self.inner.batch

    def submit(self, features: np.ndarray) -> list[Future[np.ndarray]]:
        """From any thread: each window goes through Serve's batching on the replica's loop."""
        return [asyncio.run_coroutine_threadsafe(self._serve_batch(row), self._loop) for row in features]

    async def _embed_rows(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        futures = self.inner.submit(np.stack(rows))
        return [await asyncio.wrap_future(f) for f in futures]

    def call(self, fn: Callable[[], T]) -> Future[T]:
        return self.inner.call(fn)

    def embed_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return self.inner.embed_windows(windows)

    def observe(self, fn: Callable[[int, float], None]) -> Callable[[], None]:
        return self.inner.observe(fn)

    def producing(self) -> AbstractContextManager[None]:  # type: ignore[override]
        return self.inner.producing()

    def close(self) -> None:
        pass  # the classifier's runner is closed by its owner


def build_replica_app(spec: ReplicaSpec) -> Any:
    """The FastAPI app of one replica: ``create_app`` around a model loaded here, Serve batching."""
    from ..adapt.packs import load_pack
    from ..classify import Classifier
    from ..store import Database
    from .api import create_app

    settings = spec.settings
    threads = spec.threads or max(1, int(_replica_cpus()) - settings.decode_workers)
    start = time.perf_counter()
    classifier = Classifier(
        spec.model, device=spec.device, threads=threads, backend=spec.backend, throughput=True
    )
    load_s = time.perf_counter() - start
    packs = {name: load_pack(path) for name, path in spec.pack_paths.items()}
    db = Database(spec.db_path) if spec.db_path else None
    app = create_app(classifier, db=db, settings=settings, ui=spec.ui, model_load_s=load_s, packs=packs)
    app.state.runner_factory = _serve_runner
    app.add_middleware(ReplicaHeader, replica=_replica_id())
    return app


def _serve_runner(engine: Any) -> ServeBatchedRunner:
    return ServeBatchedRunner(
        engine.runner, asyncio.get_running_loop(), wait_s=engine.settings.max_wait_ms / 1000
    )


class ReplicaHeader:
    """Pure ASGI middleware: every HTTP answer names the replica that gave it."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, named_send)


def _replica_id() -> str:
    from ray import serve

    return str(serve.get_replica_context().replica_id.unique_id)


def _replica_cpus() -> float:
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")  # type: ignore[no-untyped-call]
    return float(cpus) if cpus else float(os.cpu_count() or 1)


class EarmarkReplica:
    """The Serve deployment's class: builds the app at replica start (``__serve_build_asgi_app__``)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        self._spec = spec

    def __serve_build_asgi_app__(self) -> Any:
        return build_replica_app(self._spec)


def deployment(spec: ReplicaSpec, options: RayServeOptions) -> Any:
    """The bound Serve application: the ingress deployment with replicas and resources set."""
    from ray import serve

    capacity = spec.settings.capacity
    config: dict[str, Any] = {
        "name": "EarmarkReplica",
        "ray_actor_options": {
            "num_cpus": options.replica_cpus,
            "num_gpus": options.replica_gpus,
            "runtime_env": {"env_vars": _forwarded_env()},
        },
        # room for the engine's whole queue plus probes: past its capacity the engine answers 429
        # itself, as `earmark serve` does, instead of Serve holding requests in a queue of its own
        "max_ongoing_requests": capacity + 8,
        "health_check_period_s": 5,
    }
    if options.max_replicas and options.max_replicas > options.replicas:
        config["autoscaling_config"] = {
            "min_replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": max(1, spec.settings.decode_workers * 2),
        }
    else:
        config["num_replicas"] = options.replicas
    cls = serve.deployment(**config)(serve.ingress()(EarmarkReplica))
    return cls.bind(spec)


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (for ``--port 0``: Serve's proxy needs a number)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_on_ray(
    spec: ReplicaSpec,
    options: RayServeOptions,
    *,
    announce: Callable[[str], None] = print,
    ready_timeout_s: float = 600.0,
) -> None:
    """Deploy the app on Ray Serve, print its URL once a replica is ready, run until SIGTERM/SIGINT.

    On exit the application is deleted; a local cluster this call started is shut down with it.

    Raises:
        MissingExtraError: Ray Serve is not installed.
        ConfigError: bad replica options, or the cluster cannot be reached.
    """
    options.check()
    try:
        from ray import serve
    except ImportError:
        raise MissingExtraError("earmark serve --ray", "ray") from None
    port = options.port or free_port(options.host)
    _connect(options.address)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": options.host, "port": port})
        host, port = _proxy_address(options.host, port, api_key=spec.settings.api_key)
        serve.run(deployment(spec, options), name=APP_NAME, route_prefix="/", blocking=False)
        base = f"http://{host}:{port}"
        _wait_ready(base, ready_timeout_s, stop)
        page = f"{base}/ui/" if spec.ui else f"{base}/docs"
        count = (
            f"{options.replicas}-{options.max_replicas}" if options.max_replicas else str(options.replicas)
        )
        announce(
            f"earmark is serving {spec.model or 'the default model'} at {page}  "
            f"(API: {base}/api/v1, docs: {base}/docs; Ray Serve, {count} replicas)"
        )
        while not stop.wait(1.0):
            pass
    finally:
        _shut_down(local=options.address is None)


def _proxy_address(host: str, port: int, *, api_key: str | None) -> tuple[str, int]:
    """Where Serve's HTTP proxy listens: where asked, unless Serve already runs on the cluster
    (an earlier ``earmark serve --ray`` or another Serve application), whose address stays.

    Raises:
        ConfigError: that address is not loopback and no API key is set (the rule of ``--host``).
    """
    from ray.serve.context import _get_global_client

    try:
        client = _get_global_client()
        config = client.http_config if client is not None else None
        actual = (str(config.host), int(config.port)) if config is not None else (host, port)
    except Exception:  # noqa: BLE001 - a private API: without it, trust the asked address
        return host, port
    if actual != (host, port):
        log.warning(
            "Ray Serve already runs on this cluster and listens on %s:%d; --host/--port only apply "
            "where Serve starts (serve shutdown, or `ray stop` on a cluster of your own, resets it)",
            *actual,
        )
        if not is_loopback(actual[0]) and not api_key:
            raise ConfigError(
                f"Ray Serve on this cluster listens on {actual[0]}, not loopback: set --api-key KEY "
                "(or EARMARK_API_KEY)"
            )
    return actual


AUTH_HINT = (
    "A cluster with token authentication (Ray's default where ~/.ray/auth_token exists) needs "
    "RAY_AUTH_MODE=token here, with its token in ~/.ray/auth_token, RAY_AUTH_TOKEN or "
    "RAY_AUTH_TOKEN_PATH."
)


def _connect(address: str | None) -> None:
    """``ray.init``: a local cluster (None) or the one at ``address``.

    Raises:
        ConfigError: the cluster cannot be reached or refuses this process (what to check).
    """
    import ray

    if address is not None:
        _check_reachable(address)
    try:
        # "local": a new cluster of its own, never one found in RAY_ADDRESS or /tmp/ray (a stale or
        # another user's `ray start`), which is what ray.init(address=None) would join
        ray.init(address=address or "local", log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError) as ex:
        if address is None:
            raise ConfigError(f"could not start a local Ray cluster: {ex}") from None
        raise ConfigError(
            f"could not connect to the Ray cluster at {address}: {ex}. Check that it is running "
            f"(`ray status --address {address}`). {AUTH_HINT}"
        ) from None


REACH_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """Fail fast where nothing answers at ``HOST:PORT`` (or ``ray://HOST:PORT``): ``ray.init``
    would retry for many minutes. ``auto`` and addresses without a port are left to Ray.

    Raises:
        ConfigError: nothing accepts a connection there within ``REACH_TIMEOUT_S``.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as ex:
        raise ConfigError(
            f"could not connect to the Ray cluster at {address}: {ex.strerror or ex}. Check the "
            f"address and that the cluster is running (`ray status --address {address}`)."
        ) from None


SHUTDOWN_TIMEOUT_S = 60.0


def _shut_down(*, local: bool) -> None:
    """Delete the application (and stop a local cluster), giving up after ``SHUTDOWN_TIMEOUT_S``:
    when the cluster's own processes are gone already (a signal to the whole process group), Ray's
    calls would wait for them for ever."""
    import ray
    from ray import serve

    def clean() -> None:
        try:
            serve.delete(APP_NAME)
            if local:
                serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()

    cleaner = threading.Thread(target=clean, name="earmark-ray-shutdown", daemon=True)
    cleaner.start()
    cleaner.join(SHUTDOWN_TIMEOUT_S)
    if cleaner.is_alive():
        log.warning("Ray did not shut down within %g s; leaving it", SHUTDOWN_TIMEOUT_S)


def _wait_ready(base: str, timeout_s: float, stop: threading.Event) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ConfigError(f"no replica became ready within {timeout_s:g} s; see the Ray logs")
        stop.wait(0.5)
