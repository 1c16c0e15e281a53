"""Graceful shutdown of a real `python -m gateway` process: SIGTERM mid-stream.

Readiness fails at once and new work is refused; short streams finish; long ones get `server.draining` and are
cancelled at the deadline; the process exits 0 in time; every stream is in the ledger (the SQLite file).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.clients import SSEEvent, iter_sse, user_msg
from tests.support.process import start_gateway
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 2.0

pytestmark = pytest.mark.slow


async def sse_stream(url: str, token: str, prompt: str, out: list[dict[str, Any]], started: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST",
            f"{url}/v1/chat/stream",
            headers={"authorization": f"Bearer {token}"},
            json={"model": "mock", "messages": user_msg(prompt)},
        ) as r,
    ):
        assert r.status_code == 200
        async for ev in iter_sse(r):
            if isinstance(ev, SSEEvent):
                out.append(ev.data)
                if ev.data["type"] == "delta":
                    started.set()


async def ws_streams(ws: Any, out: dict[str, list[dict[str, Any]]], started: asyncio.Event) -> tuple[int, str] | None:
    """Collect frames by client id until the server closes the socket; its close code."""
    try:
        while True:
            f = json.loads(await ws.recv())
            out.setdefault(f.get("id") or "?", []).append(f)
            if all(any(e["type"] == "delta" for e in evs) for evs in out.values()) and len(out) == 2:
                started.set()
    except websockets.ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else None


async def test_sigterm_drains_streams_and_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    proc, token, log_path = await start_gateway(tmp_path / "data", port, GATEWAY_DRAIN_DEADLINE_S=str(DEADLINE_S))
    url, headers = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {token}"}
    try:
        # Two streams over SSE and two on one socket: in each pair one ends before the deadline, one cannot.
        sse_short: list[dict[str, Any]] = []
        sse_long: list[dict[str, Any]] = []
        ws_frames: dict[str, list[dict[str, Any]]] = {}
        flags = [asyncio.Event() for _ in range(3)]
        tasks = [
            asyncio.create_task(sse_stream(url, token, "s [[mock tokens=12 delay_ms=60]]", sse_short, flags[0])),
            asyncio.create_task(sse_stream(url, token, "l [[mock tokens=3000 delay_ms=10]]", sse_long, flags[1])),
        ]
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/ws", additional_headers=headers)
        for cid, prompt in (
            ("short", "ws s [[mock tokens=12 delay_ms=60]]"),
            ("long", "ws l [[mock tokens=3000 delay_ms=10]]"),
        ):
            await ws.send(json.dumps({"type": "chat.start", "id": cid, "model": "mock", "messages": user_msg(prompt)}))
        ws_task = asyncio.create_task(ws_streams(ws, ws_frames, flags[2]))
        async with asyncio.timeout(20):
            for f in flags:
                await f.wait()

        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            async with asyncio.timeout(1.0):  # at once
                while (ready := await client.get("/readyz")).status_code != 503:
                    await asyncio.sleep(0.02)
            assert ready.json() == {"status": "draining"}
            r = await client.post(
                "/v1/chat/stream", headers=headers, json={"model": "mock", "messages": user_msg("late")}
            )
            assert (r.status_code, r.json()["error"]["code"]) == (503, "draining")
            assert r.json()["error"]["message"]
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws", additional_headers=headers) as late:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await late.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1012

        async with asyncio.timeout(DEADLINE_S + 15):
            await asyncio.gather(*tasks)
            close = await ws_task
            code = await proc.wait()
        exited = time.monotonic() - signalled
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    logs = log_path.read_text()
    assert code == 0, logs
    assert exited <= DEADLINE_S + 5, f"exit took {exited:.1f}s"  # Render kills 5 s after a 25 s drain
    assert close is not None and close[0] == 1012  # the idle socket is closed once the drain is over

    streams = {
        "sse short": sse_short,
        "sse long": sse_long,
        "ws short": ws_frames["short"],
        "ws long": ws_frames["long"],
    }
    for name in ("sse short", "ws short"):
        evs = streams[name]
        assert evs[-1]["type"] == "done" and evs[-1]["finish_reason"] == "stop", name
        assert sum(e["type"] == "delta" for e in evs) == 12 and "server.draining" not in {e["type"] for e in evs}
    for name in ("sse long", "ws long"):
        evs = streams[name]
        kinds = [e["type"] for e in evs]
        assert "server.draining" in kinds and kinds[-1] == "done", (name, kinds[-4:])
        after = kinds[kinds.index("server.draining") :]
        assert "delta" not in after, (name, after)  # the upstream was stopped with the notice
        notice = evs[kinds.index("server.draining")]
        assert notice["reconnect_after_ms"] > 0 and evs[-1]["finish_reason"] == "cancelled"
        assert 0 < evs[-1]["usage"]["output_tokens"] < 3000

    with sqlite3.connect(tmp_path / "data" / "gateway.sqlite3") as db:
        rows = dict(db.execute("select stream_id, status from stream_usage").fetchall())
        tokens = dict(db.execute("select stream_id, output_tokens from stream_usage").fetchall())
    for name, evs in streams.items():
        sid = evs[0]["stream_id"]
        assert rows.get(sid) == ("done" if "short" in name else "cancelled"), (name, rows)
        assert tokens[sid] == evs[-1]["usage"]["output_tokens"]
    assert len(rows) == 4
