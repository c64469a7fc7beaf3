"""earmark serve: the web page and REST API on one port, one model in memory."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from .common import load_classifier, model_options

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
@model_options
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
) -> None:
    """Serve the web page (/ui) and REST API (/api/v1, /docs) on HOST:PORT.

    Stops gracefully on SIGTERM or Ctrl-C: /readyz turns 503, requests in
    flight are answered, then the process exits 0. --threads defaults to the
    cores left after the decode workers (at least 1). Each --pack is loaded and
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
    from ..server.api import create_app  # checks the server extra before the slow model load
    from ..store import Database

    # leave the decode workers their cores: on a busy 2-core machine two OpenMP threads next to a decoding
    # process ran 9x slower per window than one thread (bench/RESULTS-serve.md); re-measured with OpenVINO's
    # two streams (issue 17, bench/bench_serve_threads.py): 1 thread still gave 2x the c=16 throughput under load
    threads = threads or max(1, (os.cpu_count() or 1) - settings.decode_workers)
    packs = _load_packs(pack_paths)  # a bad file fails before the slow model load
    classifier, load_s = _load(model, device, threads)
    db = Database(db_path)
    app = create_app(classifier, db=db, settings=settings, ui=not no_ui, model_load_s=load_s, packs=packs)
    _run(app, host, port, settings, ui=not no_ui)


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


def _load(model: str | None, device: str | None, threads: int | None) -> tuple[Any, float]:
    from ..errors import UnknownModelError
    from ..models import resolve

    start = time.perf_counter()
    try:
        resolve(model)  # says what to do before the slow part (torch, transformers) starts
        classifier = load_classifier(model, device, threads)
    except UnknownModelError as ex:
        raise click.ClickException(f"{ex}\n{TINY_MODEL_HINT}") from None
    return classifier, time.perf_counter() - start


def _run(app: Any, host: str, port: int, settings: Any, *, ui: bool) -> None:
    import uvicorn

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=level,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
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
    model = app.state.classifier.model_id
    page = f"{base}/ui/" if ui else f"{base}/docs"
    click.echo(f"earmark is serving {model} at {page}  (API: {base}/api/v1, docs: {base}/docs)", err=False)
    for name, pack in app.state.packs.items():
        click.echo(f"classifier pack {name}: {', '.join(pack.labels)}", err=False)


COMMANDS = [serve_cmd]
