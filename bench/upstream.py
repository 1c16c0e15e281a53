"""A fast OpenAI-style upstream for benchmarks: pre-encoded Chat Completions SSE chunks over raw asyncio.

Run: python -m bench.upstream --port 9100

Each request's prompt may carry ``[[bench tokens=256 delay_ms=20 fail_after=N]]`` (tokens streamed, delay between
tokens, drop the connection after N tokens). Everything per token is one pre-built bytes write, so the emulator
spends about a microsecond per token and is never the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass

_DIRECTIVE = re.compile(rb"\[\[bench([^\]]*)\]\]")


def _chunk(payload: bytes) -> bytes:
    """One HTTP chunk (chunked transfer encoding) holding one SSE event."""
    data = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
)
_ROLE = _chunk(
    b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
)
_TOKEN = _chunk(
    b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}'
)
_FINISH = _chunk(
    b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
)
_DONE = _chunk(b"[DONE]") + b"0\r\n\r\n"


def _usage(tokens: int) -> bytes:
    return _chunk(
        b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[],'
        b'"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}' % (tokens, tokens + 8)
    )


@dataclass(slots=True)
class Plan:
    tokens: int = 256
    delay_ms: float = 0.0
    fail_after: int | None = None
    only: str | None = None  # fail only requests for this model


_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')


def parse_plan(body: bytes) -> Plan:
    plan = Plan()
    m = _DIRECTIVE.search(body)
    if m:
        for item in m.group(1).decode().split():
            key, _, value = item.partition("=")
            if key == "tokens":
                plan.tokens = int(value)
            elif key == "delay_ms":
                plan.delay_ms = float(value)
            elif key == "fail_after":
                plan.fail_after = int(value)
            elif key == "only":
                plan.only = value
    if plan.only is not None:
        model = _MODEL.search(body)
        if model is None or model.group(1).decode() != plan.only:
            plan.fail_after = None
    return plan


class Stats:
    """What the runner reads from /stats: request arrival and connection-drop times (monotonic ns)."""

    def __init__(self) -> None:
        self.requests = 0
        self.drops: list[int] = []
        self.arrivals: list[int] = []


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats, tickers: Tickers) -> None:
        self.stats = stats
        self.tickers = tickers
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.busy:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < head_end + 4 + length:
                return
            body = self.buf[head_end + 4 : head_end + 4 + length]
            self.buf = self.buf[head_end + 4 + length :]
            self.handle(head.split(" ", 2)[1], body)

    def handle(self, path: str, body: bytes) -> None:
        t = self.transport
        assert t is not None
        if path.startswith("/stats"):
            payload = json.dumps(
                {"requests": self.stats.requests, "drops": self.stats.drops, "arrivals": self.stats.arrivals}
            ).encode()
            t.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(payload), payload)
            )
            return
        self.stats.requests += 1
        self.stats.arrivals.append(time.monotonic_ns())
        plan = parse_plan(body)
        self.busy = True
        t.write(_HEAD + _ROLE)
        if plan.delay_ms <= 0 and plan.fail_after is None:
            t.write(_TOKEN * plan.tokens + _FINISH + _usage(plan.tokens) + _DONE)
            self.done()
            return
        self.tickers.for_delay(plan.delay_ms / 1000).add(SlowStream(self, plan))

    def done(self) -> None:
        self.busy = False
        if self.buf:
            self.data_received(b"")


class SlowStream:
    """One paced response: a token per tick, then the end (or a dropped connection)."""

    __slots__ = ("plan", "proto", "sent")

    def __init__(self, proto: UpstreamProtocol, plan: Plan) -> None:
        self.proto, self.plan, self.sent = proto, plan, 0

    def step(self) -> bool:
        t = self.proto.transport
        if t is None or t.is_closing():
            return False
        plan = self.plan
        if plan.fail_after is not None and self.sent == plan.fail_after:
            self.proto.stats.drops.append(time.monotonic_ns())
            t.abort()  # no terminating chunk: the client sees a broken stream
            return False
        if self.sent == plan.tokens:
            t.write(_FINISH + _usage(plan.tokens) + _DONE)
            self.proto.done()
            return False
        t.write(_TOKEN)
        self.sent += 1
        return True


class Ticker:
    """One timer for every stream with the same pace: a token each for all of them per tick."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.streams: list[SlowStream] = []
        self.running = False

    def add(self, stream: SlowStream) -> None:
        if self.delay <= 0:
            while stream.step():  # a fault after N tokens with no pacing: all at once
                pass
            return
        self.streams.append(stream)
        if not self.running:
            self.running = True
            asyncio.get_running_loop().call_later(self.delay, self.tick)

    def tick(self) -> None:
        self.streams = [s for s in self.streams if s.step()]
        if self.streams:
            asyncio.get_running_loop().call_later(self.delay, self.tick)
        else:
            self.running = False


class Tickers:
    def __init__(self) -> None:
        self._by_delay: dict[float, Ticker] = {}

    def for_delay(self, delay: float) -> Ticker:
        ticker = self._by_delay.get(delay)
        if ticker is None:
            ticker = self._by_delay[delay] = Ticker(delay)
        return ticker


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    tickers = Tickers()
    server = await loop.create_server(lambda: UpstreamProtocol(stats, tickers), host, port, backlog=4096)
    print(f"bench upstream on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
