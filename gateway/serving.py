"""Serving the app with uvicorn, with a graceful drain on SIGTERM.

uvicorn's own SIGTERM handling stops reading from connections and closes WebSockets with 1012 before the
lifespan shutdown runs, which would cut every running stream at once. So the gateway runs `uvicorn.Server`
itself with its own signal handlers: the signal starts the drain while uvicorn keeps serving (readiness now
fails, new streams are refused, running ones carry on), and only once the drain is over is uvicorn told to
exit. A drained exit is a clean exit: the process ends with status 0, not by re-raising the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator

import uvicorn

from gateway.services import Services

log = logging.getLogger("gateway.serving")

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def graceful_drain(services: Services) -> None:
    """Let running streams finish until the drain deadline, stop (and bill) the rest, flush the ledger."""
    settings = services.settings
    started = time.monotonic()
    live = services.sessions.live_count()
    stopped = await services.sessions.drain(settings.gateway_drain_deadline_s)
    await services.ledger.flush(final=True)
    log.info(
        "drained",
        extra={
            "streams_at_signal": live,
            "stopped_at_deadline": stopped,
            "ledger_backlog": services.ledger.backlog,
            "drain_ms": round((time.monotonic() - started) * 1000),
        },
    )


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services
        self.drain_task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in DRAIN_SIGNALS:
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            yield
        finally:
            for sig in DRAIN_SIGNALS:
                loop.remove_signal_handler(sig)

    def on_signal(self, sig: int) -> None:
        if self.drain_task is None:
            log.info(
                "shutdown signal: draining",
                extra={
                    "signal": signal.Signals(sig).name,
                    "deadline_s": self.services.settings.gateway_drain_deadline_s,
                },
            )
            # At once, before any await: readiness fails and new streams are refused from here on.
            self.services.sessions.begin_drain()
            self.drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(), name="drain")
        elif sig == signal.SIGINT:
            log.warning("second interrupt: stopping without waiting for streams")
            self.force_exit = True
            self.should_exit = True

    async def _drain_then_exit(self) -> None:
        try:
            await graceful_drain(self.services)
        finally:
            self.should_exit = True
