"""A loopback TCP proxy that can cut every open connection at once: a real, forced network drop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ")


class DropProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.request_lines: list[str] = []  # the request line of every HTTP request seen
        self.drops = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._server is not None:
            await self._server.wait_closed()

    def drop_all(self) -> int:
        """Reset every open connection, both sides, as a network failure would."""
        n = 0
        for client, upstream in list(self._pairs):
            for w in (client, upstream):
                w.transport.abort()
            n += 1
        self._pairs.clear()
        self.drops += 1
        return n

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer, sniff=True)),
            asyncio.create_task(self._pipe(up_reader, writer, sniff=False)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
                self._tasks.discard(t)
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, sniff: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if sniff and data.startswith(METHODS):
                    self.request_lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                writer.write(data)
                await writer.drain()


@asynccontextmanager
async def drop_proxy(upstream_url: str) -> AsyncIterator[DropProxy]:
    proxy = DropProxy(int(upstream_url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()
