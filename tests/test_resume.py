"""Stop versus disconnect: a stop closes the upstream at once and bills the partial output; a disconnect
keeps the stream generating for the resume window, and a resumed client gets exactly what it missed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from gateway.auth import DEV_USER_ID
from tests.conftest import Live
from tests.support.clients import SSEEvent, collect_sse, iter_sse, text_of, user_msg
from tests.support.probe import ClosingProbe

Frames = list[dict[str, Any]]


def install_probe(gw: Live) -> ClosingProbe:
    probe = ClosingProbe(gw.services.providers["mock"])
    gw.services.providers["mock"] = probe  # the router reads this same mapping
    return probe


async def ledger_rows(gw: Live) -> dict[str, dict[str, Any]]:
    """The ledger as the SQLite file has it, read independently of the gateway's own store object."""
    await gw.services.ledger.flush()
    path = gw.services.settings.gateway_data_dir / "gateway.sqlite3"
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("select stream_id, status, output_tokens, finish_reason from stream_usage").fetchall()
    return {r["stream_id"]: dict(r) for r in rows}


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := predicate()):
            await asyncio.sleep(0.01)
    return result


async def reference_text(gw: Live, prompt: str) -> str:
    """The uninterrupted answer to the same prompt (the mock is deterministic in the prompt's text)."""
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        events = await collect_sse(
            client,
            "POST",
            "/v1/chat/stream",
            headers=gw.headers(),
            json={"model": "mock", "messages": user_msg(prompt)},
        )
    return text_of([e.data for e in events])


def check_exact(first: Frames, rest: Frames, expected_text: str) -> None:
    seqs = [f["seq"] for f in first + rest]
    assert seqs == list(range(1, len(seqs) + 1)), f"gap or repeat: {seqs}"
    assert (first + rest)[-1]["type"] == "done"
    assert text_of(first + rest) == expected_text


async def ws_start(ws: Any, cid: str, prompt: str) -> None:
    await ws.send(json.dumps({"type": "chat.start", "id": cid, "model": "mock", "messages": user_msg(prompt)}))


async def ws_read(ws: Any, n: int | None = None, timeout: float = 15) -> Frames:
    """Stream frames until `n` of them or the terminal event."""
    out: Frames = []
    async with asyncio.timeout(timeout):
        while n is None or len(out) < n:
            f = json.loads(await ws.recv())
            if not f.get("stream_id"):
                raise AssertionError(f"unexpected frame {f}")
            out.append(f)
            if f["type"] in ("done", "error"):
                break
    return out


async def ticket(client: httpx.AsyncClient, token: str) -> str:
    r = await client.post("/v1/tickets", headers={"authorization": f"Bearer {token}"})
    value: str = r.json()["ticket"]
    return value


# -- resume ---------------------------------------------------------------------------------------------------------


async def test_sse_client_dropped_after_k_events_resumes_exactly(live: Live) -> None:
    prompt = "tell me about resuming [[mock tokens=60 delay_ms=8]]"
    expected = await reference_text(live, prompt)
    k = 9
    sid, last_id, first = await live.chat_then_drop(prompt, k)  # the browser tab loses its connection
    assert last_id == f"{sid}:{k}"
    await asyncio.sleep(0.1)  # the stream goes on without anyone reading
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        # As a page would: a fresh ticket, the EventSource's Last-Event-ID.
        t = await ticket(client, live.token)
        rest_events = await collect_sse(
            client, "GET", f"/v1/streams/{sid}/events?ticket={t}", headers={"last-event-id": last_id}
        )
    rest = [e.data for e in rest_events]
    assert all(e.id == f"{sid}:{e.data['seq']}" for e in rest_events)
    check_exact(first, rest, expected)


async def test_websocket_client_dropped_after_k_events_resumes_exactly(live: Live) -> None:
    prompt = "what does a socket do [[mock tokens=60 delay_ms=8]]"
    expected = await reference_text(live, prompt)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws_start(ws, "c1", prompt)
        first = await ws_read(ws, 7)
    sid = first[0]["stream_id"]
    await asyncio.sleep(0.1)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        t = await ticket(client, live.token)
    async with websockets.connect(f"{live.ws_url}/v1/ws?ticket={t}") as ws:
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": sid, "last_seq": first[-1]["seq"]}))
        rest = await ws_read(ws)
        assert all(f["id"] == "c1" and f["stream_id"] == sid for f in rest)
        # The resumed stream answers to its client id on the new socket too.
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": sid, "last_seq": 0}))
        replay = await ws_read(ws)
    check_exact(first, rest, expected)
    assert replay == first + rest  # a replay from the start is the whole stream, byte for byte


async def test_stream_started_over_sse_resumes_over_websocket(live: Live) -> None:
    prompt = "cross transport [[mock tokens=30 delay_ms=8]]"
    expected = await reference_text(live, prompt)
    _sid, _last, first = await live.chat_then_drop(prompt, 4)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": first[0]["stream_id"], "last_seq": 4}))
        rest = await ws_read(ws)
    check_exact(first, rest, expected)


async def test_another_user_cannot_resume(live: Live) -> None:
    intruder = live.services.auth.mint_dev_token(user_id=str(uuid.uuid4()))
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws_start(ws, "mine", "private [[mock tokens=200 delay_ms=5]]")
        first = await ws_read(ws, 3)
    sid = first[0]["stream_id"]
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers(intruder)) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": sid, "last_seq": 0, "id": "r"}))
        err = json.loads(await ws.recv())
        assert (err["type"], err["code"], err["stream_id"]) == ("error", "stream_not_found", None)
        await ws.send(json.dumps({"type": "chat.cancel", "id": "mine"}))
        assert json.loads(await ws.recv())["code"] == "stream_not_found"
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        for path in (f"/v1/streams/{sid}/events", f"/v1/streams/{sid}/cancel"):
            method = "GET" if path.endswith("events") else "POST"
            r = await client.request(method, path, headers=live.headers(intruder))
            assert (r.status_code, r.json()["error"]["code"]) == (404, "stream_not_found")
        t = await ticket(client, intruder)
        r = await client.get(f"/v1/streams/{sid}/events?ticket={t}")
        assert (r.status_code, r.json()["error"]["code"]) == (404, "stream_not_found")
    # The owner's stream was not disturbed.
    assert live.services.sessions.get(sid, DEV_USER_ID).cancel_reason is None


async def test_after_the_window_the_stream_is_cancelled_and_billed(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_resume_window_s=0.3)
    probe = install_probe(gw)
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws_start(ws, "gone", "abandoned [[mock tokens=5000 delay_ms=4]]")
        first = await ws_read(ws, 5)
        dropped = time.monotonic()
    sid = first[0]["stream_id"]
    closed = (await probe.wait_closed())[0]
    assert closed.how == "CancelledError"
    assert closed.at - dropped >= 0.3  # it kept generating through the window
    assert 0 < closed.deltas < 5000
    rows = await ledger_rows(gw)
    assert rows[sid]["status"] == "cancelled" and rows[sid]["finish_reason"] == "cancelled"
    assert rows[sid]["output_tokens"] >= closed.deltas - 1
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": sid, "last_seq": 4}))
        assert json.loads(await ws.recv())["code"] == "stream_not_found"


async def test_resume_within_the_window_keeps_the_stream(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_resume_window_s=0.5)
    probe = install_probe(gw)
    prompt = "come back soon [[mock tokens=150 delay_ms=5]]"
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws_start(ws, "back", prompt)
        first = await ws_read(ws, 3)
    await asyncio.sleep(0.2)
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": first[0]["stream_id"], "last_seq": 3}))
        rest = await ws_read(ws)
    assert rest[-1]["type"] == "done" and rest[-1]["finish_reason"] == "stop"
    assert probe.closed[0].how == "finished"
    check_exact(first, rest, await reference_text(gw, prompt))


async def test_zero_window_cancels_on_disconnect(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_resume_window_s=0)
    probe = install_probe(gw)
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws_start(ws, "z", "bye [[mock tokens=5000 delay_ms=4]]")
        first = await ws_read(ws, 4)
    closed = (await probe.wait_closed())[0]
    assert closed.how == "CancelledError"
    rows = await ledger_rows(gw)
    assert rows[first[0]["stream_id"]]["status"] == "cancelled"


async def test_a_finished_stream_can_still_be_fetched_within_the_window(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws_start(ws, "f", "short [[mock tokens=40 delay_ms=2]]")
        first = await ws_read(ws, 2)
    sid = first[0]["stream_id"]
    await wait_for(lambda: live.services.sessions.get(sid, DEV_USER_ID).finished)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        events = await collect_sse(client, "GET", f"/v1/streams/{sid}/events?after=2", headers=live.headers())
    check_exact(first, [e.data for e in events], await reference_text(live, "short [[mock tokens=40]]"))


async def test_resume_from_too_far_back_is_refused(live_factory: Callable[..., Any]) -> None:
    gw: Live = await live_factory(gateway_stream_log_max_events=16)
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws_start(ws, "big", "long answer [[mock tokens=100 delay_ms=1]]")
        first = await ws_read(ws, 2)
    sid = first[0]["stream_id"]
    session = await wait_for(lambda: (s := gw.services.sessions.get(sid, DEV_USER_ID)).finished and s)
    last = session.log.last_seq
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": sid, "last_seq": 2, "id": "r"}))
        err = json.loads(await ws.recv())
        assert (err["type"], err["code"]) == ("error", "resume_too_old")
        await ws.send(json.dumps({"type": "chat.resume", "stream_id": sid, "last_seq": last - 5}))
        tail = await ws_read(ws)
        assert [f["seq"] for f in tail] == list(range(last - 4, last + 1))
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        r = await client.get(f"/v1/streams/{sid}/events", headers={**gw.headers(), "last-event-id": f"{sid}:2"})
        assert (r.status_code, r.json()["error"]["code"]) == (410, "resume_too_old")


# -- stop -----------------------------------------------------------------------------------------------------------


async def test_chat_cancel_closes_the_upstream_at_once_and_bills_the_partial_output(live: Live) -> None:
    probe = install_probe(live)
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws_start(ws, "other", "keep going [[mock tokens=30 delay_ms=5]]")
        await ws_start(ws, "stop", "stop me [[mock tokens=5000 delay_ms=3]]")
        seen: dict[str, Frames] = {"other": [], "stop": []}
        async with asyncio.timeout(10):
            while sum(f["type"] == "delta" for f in seen["stop"]) < 5:
                f = json.loads(await ws.recv())
                seen[f["id"]].append(f)
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "chat.cancel", "id": "stop"}))
        async with asyncio.timeout(10):
            while not all(s and s[-1]["type"] == "done" for s in seen.values()):
                f = json.loads(await ws.recv())
                seen[f["id"]].append(f)
    stop_sid = seen["stop"][0]["stream_id"]
    closed = next(c for c in await probe.wait_closed(2) if c.how != "finished")
    assert closed.how == "CancelledError"
    assert closed.at - sent < 0.2, f"upstream closed {closed.at - sent:.3f}s after the stop"
    done = seen["stop"][-1]
    assert done["finish_reason"] == "cancelled"
    assert done["usage"]["output_tokens"] >= 5 and done["usage"]["output_tokens"] < 5000
    assert seen["other"][-1]["finish_reason"] == "stop"  # the other stream on the socket carried on
    assert sum(f["type"] == "delta" for f in seen["other"]) == 30
    rows = await ledger_rows(live)
    assert rows[stop_sid]["status"] == "cancelled"
    assert rows[stop_sid]["output_tokens"] == done["usage"]["output_tokens"]


async def test_http_cancel_closes_the_upstream_at_once(live: Live) -> None:
    probe = install_probe(live)
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "messages": user_msg("stop over http [[mock tokens=5000 delay_ms=3]]")},
        ) as r,
    ):
        sid = r.headers["x-stream-id"]
        events: Frames = []
        async for ev in iter_sse(r):
            if isinstance(ev, SSEEvent):
                events.append(ev.data)
                if len(events) == 4:
                    sent = time.monotonic()
                    res = await client.post(f"/v1/streams/{sid}/cancel", headers=live.headers())
                    assert res.json() == {"stream_id": sid, "cancelled": True, "status": "cancelling"}
    closed = (await probe.wait_closed())[0]
    assert closed.how == "CancelledError" and closed.at - sent < 0.2
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "cancelled"
    rows = await ledger_rows(live)
    assert rows[sid]["status"] == "cancelled" and rows[sid]["output_tokens"] == events[-1]["usage"]["output_tokens"]
