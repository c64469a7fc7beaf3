"""earmark serve: the web page and REST API on one port, one model in memory."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from .common import BACKEND_META, load_classifier, model_options

log = logging.getLogger("earmark")

TINY_MODEL_HINT = (
    "  - to try the page now without the real model: earmark serve --model tests/assets/tiny-clap\n"
    "    (from a source checkout; or: make serve MODEL=tests/assets/tiny-clap). Its scores mean nothing\n"
    "    outside its six synthetic sounds: beep, hum, noise, clicks, chirp, silence."
)


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="EARMARK_HOST",
    help="Address to listen on. Anything but loopback needs an API key.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=7860,
    show_default=True,
    envvar="EARMARK_PORT",
    help="Port to listen on (0: any free port; the URL is printed).",
)
@model_options(threads_default="all cores for OpenVINO; else the cores left after the decode workers")
@click.option(
    "--api-key",
    default=None,
    envvar="EARMARK_API_KEY",
    show_envvar=True,
    help="Key every request must carry (Authorization: Bearer KEY; browsers: any user, key as password).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="EARMARK_DB",
    help="SQLite store for the library and events tabs (default: $EARMARK_HOME/earmark.db).",
)
@click.option(
    "--setting",
    "setting_pairs",
    type=(str, str),
    multiple=True,
    metavar="NAME VALUE",
    help="Change a server setting, e.g. --setting max_queue 64 (see docs/server.md).",
)
@click.option(
    "--pack",
    "pack_specs",
    multiple=True,
    metavar="[NAME=]PATH",
    help="Serve a classifier pack from 'earmark fit' (repeatable); clients pick it by NAME "
    "(default: the file name, ab.pack.json -> ab).",
)
@click.option("--no-ui", is_flag=True, help="REST API only, without the web page.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Serve on Ray Serve, one model per replica: alone, on a local Ray cluster started here; "
    "with ADDRESS (ray://HOST:10001, HOST:6379, auto), on that cluster (see docs/server.md).",
)
@click.option(
    "--replicas", type=click.IntRange(1), default=1, show_default=True, help="With --ray: replicas."
)
@click.option(
    "--max-replicas",
    type=click.IntRange(1),
    default=None,
    help="With --ray: autoscale between --replicas and this many by load.",
)
@click.option(
    "--replica-cpus",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="With --ray: CPUs per replica.",
)
@click.option(
    "--replica-gpus",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="With --ray: GPUs per replica (0.5: two replicas share one).",
)
@click.option(
    "--wait-for-model",
    is_flag=True,
    envvar="EARMARK_WAIT_FOR_MODEL",
    show_envvar=True,
    help="When the model is missing, listen anyway: /readyz answers 503 and says what is missing until it is "
    "there, then the model is loaded (the container image sets this).",
)
def serve_cmd(
    host: str,
    port: int,
    model: str | None,
    device: str | None,
    threads: int | None,
    api_key: str | None,
    db_path: Path | None,
    setting_pairs: tuple[tuple[str, str], ...],
    pack_specs: tuple[str, ...],
    no_ui: bool,
    ray_address: str | None,
    replicas: int,
    max_replicas: int | None,
    replica_cpus: float,
    replica_gpus: float,
    wait_for_model: bool,
) -> None:
    """Serve the web page (/ui) and REST API (/api/v1, /docs) on HOST:PORT.

    Stops gracefully on SIGTERM or Ctrl-C: /readyz turns 503, requests in
    flight are answered, then the process exits 0. Each --pack is loaded and
    checked against the model before the server starts.
    """
    from ..server.settings import ServerSettings, is_loopback, parse_setting

    settings = ServerSettings(api_key=api_key or None)
    for name, value in setting_pairs:
        settings = parse_setting(settings, name, value)
    if not is_loopback(host) and not settings.api_key:
        raise click.UsageError(
            f"refusing to listen on {host} without an API key: anyone who can reach this machine could use it.\n"
            "Set --api-key KEY (or EARMARK_API_KEY), or listen on 127.0.0.1."
        )
    pack_paths = _pack_paths(pack_specs)
    _check_port(host, port)  # before the slow model load: "port 7860 is in use", not uvicorn's errno
    if ray_address is not None:
        from ..server.ray_serve import RayServeOptions

        ray_options = RayServeOptions(
            address=None if ray_address == "local" else ray_address,
            host=host,
            port=port,
            replicas=replicas,
            max_replicas=max_replicas,
            replica_cpus=replica_cpus,
            replica_gpus=replica_gpus,
        )
        _load_packs(pack_paths)  # a bad file fails here, before any replica starts
        _serve_on_ray(model, device, threads, db_path, settings, pack_paths, not no_ui, ray_options)
        return
    # start-up (imports, model, page) makes objects by the million and frees few: no collections until
    # it is done (start to ready on 2 cores, page on: ~0.3 s less, bench/RESULTS.md "Cold start")
    with _collector_paused():
        from ..server.api import create_app  # checks the server extra before the slow model load
        from ..store import Database

        packs = _load_packs(pack_paths)  # a bad file fails before the slow model load
    if wait_for_model:  # may wait long, serving 503s: with the collector on
        port = _wait_for_model(model, host, port)
    with _collector_paused():
        ctx = click.get_current_context(silent=True)
        backend = ctx.meta.get(BACKEND_META) if ctx is not None else None  # click's context is per thread
        threads = threads or default_threads(
            settings.decode_workers, _planned_backend(backend, model, device)
        )
        # the model loads while the page's modules import: ONNX Runtime builds its session without the
        # GIL (start to ready 0.4 s less with onnx on 2 cores; OpenVINO's load gains nothing, loses nothing)
        with ThreadPoolExecutor(1, thread_name_prefix="earmark-load") as pool:
            loading = pool.submit(_load, model, device, threads, backend)
            if not no_ui:
                _import_page()
            classifier, load_s = loading.result()
        db = Database(db_path)
        app = create_app(classifier, db=db, settings=settings, ui=not no_ui, model_load_s=load_s, packs=packs)
        app.state.model_threads = threads  # said when serving starts
        # what start-up built lives as long as the server: out of the collector's reach, a first burst of
        # requests does not pay for full collections over all of it (bench_overload on a busy 2-core
        # machine: median 429 of a fresh server's first burst 104 ms instead of 263)
        gc.collect()
        gc.freeze()
    _run(app, host, port, settings, ui=not no_ui)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collections inside the block (as they were after it, even when it raises)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _check_port(host: str, port: int) -> None:
    """Exit with a plain message when HOST:PORT cannot be listened on (in use, or not this machine's)."""
    import errno
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as ex:
        raise click.ClickException(f"cannot listen on {host}: {ex}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(addr)
        except OSError as ex:
            if ex.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"port {port} is in use (another earmark serve?); stop it or choose another with --port"
                ) from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {ex.strerror or ex}") from None


def _serve_on_ray(
    model: str | None,
    device: str | None,
    threads: int | None,
    db_path: Path | None,
    settings: Any,
    pack_paths: dict[str, Path],
    ui: bool,
    options: Any,
) -> None:
    from ..server.ray_serve import ReplicaSpec, serve_on_ray
    from ..store import default_db_path

    ctx = click.get_current_context()
    spec = ReplicaSpec(
        model=model,
        device=device,
        threads=threads,
        backend=ctx.meta.get(BACKEND_META),
        settings=settings,
        pack_paths={name: str(path.resolve()) for name, path in pack_paths.items()},
        db_path=str(Path(db_path or default_db_path()).resolve()),
        ui=ui,
    )
    serve_on_ray(spec, options, announce=lambda line: click.echo(line))


def default_threads(decode_workers: int | None = None, backend: str | None = None) -> int:
    """Model threads when --threads is not given, for ``backend`` (None: not known before loading).

    OpenVINO: every core. Its streams are independent one-thread workers, and the second core gave
    1.54x the c=16 throughput next to two CPU hogs and 1.56-1.8x on a quiet machine (issue 17,
    bench/bench_serve_threads.py). Others: the cores left after the decode workers, at least 1. ONNX
    Runtime's threads synchronise per operator: two of them lost next to two hogs (0.85x), and on a
    busy 2-core machine two OpenMP threads beside a decoding process ran 9x slower per window than one
    (bench/RESULTS-serve.md).
    """
    cores = os.cpu_count() or 1
    if backend is not None and backend.startswith("openvino"):
        return cores
    if decode_workers is None:
        from ..server.settings import ServerSettings

        decode_workers = ServerSettings().decode_workers
    return max(1, cores - decode_workers)


def _planned_backend(name: str | None, model: str | None, device: str | None) -> str | None:
    """The backend the server will load (``auto``'s remembered choice at every core), if known now."""
    from ..backends.select import planned_backend

    return planned_backend(name, model, device, os.cpu_count() or 1)


def _import_page() -> None:
    """Import the page's modules (Gradio); without the page extra, ``create_app`` says so later."""
    from ..errors import MissingExtraError

    with contextlib.suppress(ImportError, MissingExtraError):
        from ..server import ui  # noqa: F401


def _wait_for_model(model: str | None, host: str, port: int) -> int:
    """--wait-for-model: the port to serve on once the model is there (at once when it is already)."""
    from ..errors import ModelError
    from ..models import resolve
    from ..server.waiting import wait_for_model

    try:
        resolve(model)
        return port
    except ModelError as ex:
        reason = str(ex)
    found = wait_for_model(model, host, port, reason)
    if found is None:
        raise SystemExit(0)  # stopped (SIGTERM, Ctrl-C) before the model came
    return found


def _pack_paths(specs: tuple[str, ...]) -> dict[str, Path]:
    """``--pack [NAME=]PATH`` values as name -> path; two packs under one name are a usage error."""
    from ..adapt.packs import pack_name

    paths: dict[str, Path] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        # a file whose own name holds "=" is a path, not NAME=PATH
        if sep and name.strip() and not Path(spec).is_file():
            name, path = name.strip(), Path(rest)
        else:
            path = Path(spec)
            name = pack_name(path)
        if name in paths:
            raise click.UsageError(
                f"two classifier packs are named {name!r} ({paths[name]} and {path}); "
                "name them apart with --pack NAME=PATH",
                ctx=click.get_current_context(silent=True),
            )
        paths[name] = path
    return paths


def _load_packs(paths: dict[str, Path]) -> dict[str, Any]:
    from ..adapt.packs import load_pack
    from ..errors import ConfigError

    packs = {}
    for name, path in paths.items():
        try:
            packs[name] = load_pack(path)
        except ConfigError as ex:
            raise click.ClickException(f"--pack {name}: {ex}") from None
    return packs


def _load(
    model: str | None, device: str | None, threads: int | None, backend: str | None
) -> tuple[Any, float]:
    from ..errors import UnknownModelError
    from ..models import resolve

    start = time.perf_counter()
    try:
        resolve(model)  # says what to do before the slow part (torch, transformers) starts
        classifier = load_classifier(model, device, threads, backend=backend)
    except UnknownModelError as ex:
        raise click.ClickException(f"{ex}\n{TINY_MODEL_HINT}") from None
    return classifier, time.perf_counter() - start


def _run(app: Any, host: str, port: int, settings: Any, *, ui: bool) -> None:
    import uvicorn

    from ..server.connections import (
        ConnectionGuard,
        accept_backlog,
        connection_cap,
        guarded_protocol,
        quiet_accept_errors,
        raise_fd_limit,
    )

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    quiet_accept_errors()
    fd_limit = raise_fd_limit()
    cap = connection_cap(settings.max_connections, fd_limit)
    guard = ConnectionGuard(cap, settings.header_timeout_s)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=level,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        http=guarded_protocol(guard),
        backlog=accept_backlog(cap, fd_limit),
        timeout_keep_alive=settings.keepalive_timeout_s,  # a float works (call_later)
    )
    server = _Server(config, app=app, ui=ui)
    # uvicorn re-raises the signal that stopped it once it is done; answered by no-ops, so the exit is 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()


class _Server:
    """uvicorn's Server, made lazily (uvicorn is imported inside the command) with two additions:
    the URL is printed once listening, and SIGTERM first marks the app draining."""

    def __new__(cls, config: Any, *, app: Any, ui: bool) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            _drain_timer: threading.Timer | None = None

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if self.started:
                    _announce(self, config.host, app, ui)

            def handle_exit(self, sig: int, frame: Any) -> None:
                app.state.draining = True
                app.state.metrics.ready.set(0)
                delay = app.state.settings.drain_delay_s
                if delay > 0 and self._drain_timer is None and not self.should_exit:
                    click.echo(f"draining: /readyz answers 503; stopping in {delay:g} s", err=True)
                    self._drain_timer = threading.Timer(delay, super().handle_exit, (sig, frame))
                    self._drain_timer.start()
                    return
                super().handle_exit(sig, frame)

        return Server(config)


def _announce(server: Any, host: str, app: Any, ui: bool) -> None:
    port = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    classifier = app.state.classifier
    threads = getattr(app.state, "model_threads", None)
    runs_on = classifier.backend.name + (f", {threads} model thread{'s' * (threads != 1)}" if threads else "")
    page = f"{base}/ui/" if ui else f"{base}/docs"
    click.echo(
        f"earmark is serving {classifier.model_id} ({runs_on}) at {page}  (API: {base}/api/v1, docs: {base}/docs)",
        err=False,
    )
    for name, pack in app.state.packs.items():
        click.echo(f"classifier pack {name}: {', '.join(pack.labels)}", err=False)


COMMANDS = [serve_cmd]
