"""While the model is missing: ``earmark serve --wait-for-model`` listens anyway and says what is missing.

A container started without weights (none baked in, none mounted, no network) should not die in a
restart loop with the reason buried in its log. With ``--wait-for-model`` (the image sets
``EARMARK_WAIT_FOR_MODEL=1``) ``earmark serve`` listens on its port at once: ``/livez`` answers 200,
``/readyz`` and every other path answer 503 with what is missing and what to do, and the model is
looked for again every few seconds (``earmark model pull`` or ``earmark model import`` run in the
container, or a hub download once the network is up, make it appear). Once it is there this small
server stops and ``earmark serve`` loads the model on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click

__all__ = ["POLL_S", "wait_for_model"]

log = logging.getLogger("earmark")

POLL_S = 10.0


def wait_for_model(
    model: str | None, host: str, port: int, reason: str, *, poll_s: float = POLL_S
) -> int | None:
    """Answer 503 (with ``reason``) on ``host:port`` until ``models.resolve(model)`` works.

    Args:
        model: alias, hub id or folder, as ``earmark serve --model`` got it.
        host: address to listen on.
        port: port to listen on (0: any free port).
        reason: why the model could not be loaded, shown on /readyz until the next look.
        poll_s: seconds between looks for the model.

    Returns:
        The port listened on once the model is there (for the real server to take over), or None when
        the server was stopped first (SIGTERM, Ctrl-C).
    """
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from .. import models
    from ..errors import ModelError

    state: dict[str, Any] = {"reason": reason, "looks": 1, "found": False}

    def body() -> dict[str, Any]:
        return {
            "status": "no model",
            "waiting_for": f"the model: {state['reason']}",
            "looks": state["looks"],
            "next_look_s": poll_s,
        }

    async def livez(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def unavailable(_request: Request) -> JSONResponse:
        return JSONResponse(body(), status_code=503, headers={"Retry-After": str(max(1, round(poll_s)))})

    async def look() -> None:
        while True:
            await asyncio.sleep(poll_s)
            try:
                await asyncio.to_thread(models.resolve, model)
            except ModelError as ex:
                if str(ex) != state["reason"]:
                    log.warning("still no model: %s", ex)
                state["reason"], state["looks"] = str(ex), state["looks"] + 1
                continue
            click.echo("the model is there now: loading it", err=True)
            state["found"] = True
            server.should_exit = True
            return

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(look())
        try:
            yield
        finally:
            task.cancel()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    app = Starlette(
        routes=[Route("/livez", livez), Route("/{path:path}", unavailable, methods=methods)],
        lifespan=lifespan,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = _Server(config, poll_s=poll_s, reason=reason)
    # uvicorn re-raises the signal that stopped it once it is done; answered by no-ops (as earmark serve)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    return server.port if state["found"] else None


class _Server:
    """uvicorn's Server (imported lazily) that says where it listens and keeps the port it got."""

    def __new__(cls, config: Any, *, poll_s: float, reason: str) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            port: int | None = None

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if self.started:
                    self.port = int(self.servers[0].sockets[0].getsockname()[1])
                    shown = f"[{config.host}]" if ":" in config.host else config.host
                    click.echo(
                        f"earmark has no model yet: {reason}\n"
                        f"listening on http://{shown}:{self.port} anyway: /readyz answers 503 and says what is "
                        f"missing; looking for the model again every {poll_s:g} s",
                        err=True,
                    )

        return Server(config)
