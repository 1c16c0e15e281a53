"""Load generator: N concurrent streams against the upstream directly or through the gateway.

Run: python -m bench.loadgen --mode gateway-sse --url http://127.0.0.1:8000 --token T --streams 50 --tokens 256

Modes: direct (the upstream's /v1/chat/completions), gateway-openai (the gateway's OpenAI-compatible endpoint),
gateway-sse (POST /v1/chat/stream), gateway-ws (one WebSocket per stream), idle-ws (open N authenticated sockets,
ping once, hold them until stdin closes). Prints one JSON object. Bounded: every run has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field

import aiohttp

MARK = b' tok"'  # every token carries this text on every path


@dataclass
class Result:
    ttft_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: int = 0
    wall_s: float = 0.0

    def summary(self) -> dict[str, float | int]:
        tt = sorted(self.ttft_ms)
        return {
            "streams": len(tt),
            "errors": self.errors,
            "tokens": self.tokens,
            "wall_s": round(self.wall_s, 4),
            "tokens_per_s": round(self.tokens / self.wall_s, 1) if self.wall_s else 0.0,
            "ttft_p50_ms": round(statistics.median(tt), 3) if tt else 0.0,
            "ttft_p99_ms": round(tt[min(len(tt) - 1, int(len(tt) * 0.99))], 3) if tt else 0.0,
        }


def body_for(mode: str, model: str, prompt: str, fallbacks: list[str]) -> dict[str, object]:
    msgs = [{"role": "user", "content": prompt}]
    if mode == "direct":
        return {"model": model, "stream": True, "stream_options": {"include_usage": True}, "messages": msgs}
    if mode == "gateway-openai":
        return {"model": model, "stream": True, "messages": msgs, "fallbacks": fallbacks}
    return {"model": model, "messages": msgs, "fallbacks": fallbacks}


async def one_http(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, object], res: Result
) -> None:
    start = time.perf_counter()
    first: float | None = None
    count = 0
    tail = b""
    async with session.post(url, json=body, headers=headers) as r:
        if r.status != 200:
            res.errors += 1
            await r.read()
            return
        async for chunk in r.content.iter_any():
            data = tail + chunk
            n = data.count(MARK)
            if n and first is None:
                first = time.perf_counter()
            count += n
            tail = data[-(len(MARK) - 1) :]
    res.tokens += count
    if first is not None:
        res.ttft_ms.append((first - start) * 1000)


async def one_ws(
    session: aiohttp.ClientSession, url: str, token: str, body: dict[str, object], res: Result, i: int
) -> None:
    async with session.ws_connect(url, headers={"authorization": f"Bearer {token}"}) as ws:
        start = time.perf_counter()
        await ws.send_str(json.dumps({"type": "chat.start", "id": f"s{i}", **body}))
        first: float | None = None
        count = 0
        async for msg in ws:
            data = msg.data.encode() if isinstance(msg.data, str) else b""
            n = data.count(MARK)
            if n and first is None:
                first = time.perf_counter()
            count += n
            if b'"type":"done"' in data or b'"type":"error"' in data:
                break
        res.tokens += count
        if first is not None:
            res.ttft_ms.append((first - start) * 1000)


async def run_streams(args: argparse.Namespace) -> dict[str, float | int]:
    res = Result()
    prompt = f"[[bench tokens={args.tokens} delay_ms={args.delay_ms}{args.extra}]]"
    fallbacks = [f for f in args.fallbacks.split(",") if f]
    body = body_for(args.mode, args.model, prompt, fallbacks)
    headers = {"authorization": f"Bearer {args.token}"} if args.token else {}
    path = {
        "direct": "/v1/chat/completions",
        "gateway-openai": "/v1/chat/completions",
        "gateway-sse": "/v1/chat/stream",
    }
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=args.deadline_s)) as session:
        sem = asyncio.Semaphore(args.concurrency)
        t0 = time.perf_counter()

        async def job(i: int) -> None:
            if args.rate > 0:  # steady arrivals: stream i starts i/rate seconds in
                await asyncio.sleep(max(0.0, t0 + i / args.rate - time.perf_counter()))
            async with sem:
                try:
                    if args.mode in ("gateway-ws", "gateway-ws-batch"):
                        query = "?batch=1" if args.mode == "gateway-ws-batch" else ""
                        url = args.url.replace("http", "ws", 1) + "/v1/ws" + query
                        await one_ws(session, url, args.token, body, res, i)
                    else:
                        await one_http(session, args.url + path[args.mode], headers, body, res)
                except (aiohttp.ClientError, TimeoutError):
                    res.errors += 1

        await asyncio.wait_for(asyncio.gather(*(job(i) for i in range(args.streams))), args.deadline_s)
        res.wall_s = time.perf_counter() - t0
    return res.summary()


async def idle_ws(args: argparse.Namespace) -> None:
    """Open N authenticated sockets, report, hold until stdin closes (the runner measures RSS meanwhile)."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        sockets = []
        sem = asyncio.Semaphore(200)

        async def open_one() -> None:
            async with sem:
                ws = await session.ws_connect(
                    args.url.replace("http", "ws", 1) + "/v1/ws",
                    headers={"authorization": f"Bearer {args.token}"},
                    autoping=True,
                    heartbeat=None,
                )
                await ws.send_str('{"type":"ping"}')
                await ws.receive()
                sockets.append(ws)

        results = await asyncio.gather(*(open_one() for _ in range(args.streams)), return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        print(json.dumps({"open": len(sockets), "failed": failed}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--mode",
        required=True,
        choices=["direct", "gateway-openai", "gateway-sse", "gateway-ws", "gateway-ws-batch", "idle-ws"],
    )
    p.add_argument("--url", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--model", default="bench")
    p.add_argument("--fallbacks", default="", help="comma-separated fallback models (gateway modes)")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.0, help="streams started per second (0: all at once)")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--extra", default="", help="more directive text, e.g. ' fail_after=32 only=bench'")
    p.add_argument("--deadline-s", type=float, default=120.0)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.mode == "idle-ws":
        asyncio.run(idle_ws(args))
    else:
        print(json.dumps(asyncio.run(run_streams(args))), flush=True)


if __name__ == "__main__":
    main()
