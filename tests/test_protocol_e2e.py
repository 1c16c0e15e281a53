"""The client protocol end to end, against a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import Live
from tests.support.clients import text_of, user_msg


async def recv_until_done(ws: Any, ids: set[str], timeout: float = 10) -> dict[str, list[dict[str, Any]]]:
    """Read frames until every id in `ids` got a terminal event; frames grouped by client id."""
    by_id: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    pending = set(ids)
    async with asyncio.timeout(timeout):
        while pending:
            frame = json.loads(await ws.recv())
            if frame.get("id") in by_id:
                by_id[frame["id"]].append(frame)
                if frame["type"] in ("done", "error") and frame.get("stream_id"):
                    pending.discard(frame["id"])
    return by_id


def check_stream_events(events: list[dict[str, Any]], client_id: str) -> None:
    assert events[0]["type"] == "stream.started"
    sid = events[0]["stream_id"]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert all(e["stream_id"] == sid and e["id"] == client_id for e in events)
    assert events[-1]["type"] == "done"


async def test_websocket_multiplexes_streams(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        for cid, n in (("a", 12), ("b", 7), ("c", 20)):
            await ws.send(
                json.dumps(
                    {
                        "type": "chat.start",
                        "id": cid,
                        "model": "mock",
                        "messages": user_msg(f"q {cid} [[mock tokens={n}]]"),
                    }
                )
            )
        got = await recv_until_done(ws, {"a", "b", "c"})
    for cid, n in (("a", 12), ("b", 7), ("c", 20)):
        events = got[cid]
        check_stream_events(events, cid)
        assert sum(1 for e in events if e["type"] == "delta") == n
        assert events[-1]["finish_reason"] == "stop"
        assert events[-1]["usage"]["output_tokens"] == n
        assert float(events[-1]["cost_usd"]) > 0
        assert [e["type"] for e in events if e["type"] == "usage"] == ["usage"]
    assert len({got[c][0]["stream_id"] for c in got}) == 3


async def test_websocket_batch_mode_sends_events_that_came_together_as_one_message(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws?batch=1", additional_headers=live.headers()) as ws:
        # No delay: the mock hands the tokens over in bursts, so most messages carry several events.
        for cid in ("a", "b"):
            msg = {
                "type": "chat.start",
                "id": cid,
                "model": "mock",
                "messages": user_msg(f"q {cid} [[mock tokens=300]]"),
            }
            await ws.send(json.dumps(msg))
        by_id: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        sizes: list[int] = []
        async with asyncio.timeout(10):
            while not all(ev and ev[-1]["type"] == "done" for ev in by_id.values()):
                msg = json.loads(await ws.recv())
                batch = msg if isinstance(msg, list) else [msg]
                sizes.append(len(batch))
                assert len({e["stream_id"] for e in batch}) == 1  # a batch never mixes streams
                for e in batch:
                    by_id[e["id"]].append(e)
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"  # replies stay plain objects
    for cid, events in by_id.items():
        check_stream_events(events, cid)  # every event, in seq order, none lost or repeated
        assert sum(1 for e in events if e["type"] == "delta") == 300
    assert max(sizes) > 1 and len(sizes) < 600


async def test_websocket_ping_and_cancel(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": "p1"}
        await ws.send(
            json.dumps(
                {
                    "type": "chat.start",
                    "id": "long",
                    "model": "mock",
                    "messages": user_msg("go [[mock tokens=5000 delay_ms=2]]"),
                }
            )
        )
        seen = 0
        while seen < 3:
            frame = json.loads(await ws.recv())
            seen += frame["type"] == "delta"
        await ws.send(json.dumps({"type": "chat.cancel", "id": "long"}))
        got = await recv_until_done(ws, {"long"})
    done = got["long"][-1]
    assert done["type"] == "done" and done["finish_reason"] == "cancelled"
    assert 3 <= done["usage"]["output_tokens"] < 5000
    await asyncio.sleep(0.3)
    await live.services.ledger.flush()
    rows = await _usage_rows(live)
    assert any(r[0] == done["stream_id"] and r[1] == "cancelled" for r in rows)


async def _usage_rows(live: Live) -> list[tuple[Any, ...]]:
    async with live.services.store.db.execute("select stream_id, status, output_tokens from stream_usage") as cur:
        return list(await cur.fetchall())


async def test_sse_stream_events_and_ids(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        events = await live.chat(client, "hello [[mock tokens=9]]")
    datas = [e.data for e in events]
    check_stream_events(datas, None)  # type: ignore[arg-type]
    sid = datas[0]["stream_id"]
    for e in events:
        assert e.event == e.data["type"]
        assert e.id == f"{sid}:{e.data['seq']}"
    assert len(text_of(datas).split()) == 9


async def test_sse_heartbeat_comment(live_factory: Any) -> None:
    gw: Live = await live_factory(gateway_sse_ping_s=0.2)
    comments = 0
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/stream",
            headers=gw.headers(),
            json={"model": "mock", "messages": user_msg("slow [[mock tokens=3 delay_ms=300]]")},
        ) as r,
    ):
        async for line in r.aiter_lines():
            comments += line.startswith(": ping")
    assert comments >= 2


async def test_sse_cancel_endpoint(live: Live) -> None:
    async with (
        httpx.AsyncClient(base_url=live.url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/stream",
            headers=live.headers(),
            json={"model": "mock", "messages": user_msg("long [[mock tokens=5000 delay_ms=2]]")},
        ) as r,
    ):
        sid = r.headers["x-stream-id"]
        lines = r.aiter_lines()
        async for line in lines:
            if line.startswith("event: delta"):
                break
        res = await client.post(f"/v1/streams/{sid}/cancel", headers=live.headers())
        assert res.status_code == 200 and res.json()["cancelled"] is True
        rest = [line async for line in lines]
    last_data = json.loads([x for x in rest if x.startswith("data: ")][-1][6:])
    assert last_data["type"] == "done" and last_data["finish_reason"] == "cancelled"


async def test_models_health_ready(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        r = await client.get("/v1/models", headers=live.headers())
        models = {m["id"]: m for m in r.json()["data"]}
        assert models["mock"]["available"] is True and models["mock"]["provider"] == "mock"
        assert (await client.get("/v1/models")).status_code == 401


async def test_http_errors_have_stable_codes(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        cases = [
            ({"model": "nope", "messages": user_msg("x")}, 404, "unknown_model"),
            ({"model": "mock"}, 422, "invalid_request"),
            ({"model": "gpt-5-mini", "messages": user_msg("x")}, 403, "no_key"),
        ]
        for body, status, code in cases:
            r = await client.post("/v1/chat/stream", headers=live.headers(), json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code)
        r = await client.post("/v1/chat/stream", headers=live.headers(), content=b"{not json")
        assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_json")
        r = await client.post("/v1/chat/stream", headers={"authorization": "Bearer nope"}, json={})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token")
        r = await client.post("/v1/streams/st_missing/cancel", headers=live.headers())
        assert (r.status_code, r.json()["error"]["code"]) == (404, "stream_not_found")
        big = {"model": "mock", "messages": user_msg("x" * 300_000)}
        r = await client.post("/v1/chat/stream", headers=live.headers(), json=big)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"id": "x"}', "invalid_frame"),
        ('{"type": "chat.launch", "id": "x"}', "unknown_type"),
        ('{"type": "chat.start", "id": "x", "model": "mock"}', "invalid_frame"),
        (
            '{"type": "chat.start", "id": "x", "model": "nope", "messages": [{"role": "user", "content": "q"}]}',
            "unknown_model",
        ),
        ('{"type": "chat.cancel", "id": "ghost"}', "stream_not_found"),
    ],
)
async def test_websocket_bad_frames_do_not_disturb_other_streams(live: Live, frame: str, code: str) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "chat.start",
                    "id": "ok",
                    "model": "mock",
                    "messages": user_msg("q [[mock tokens=40 delay_ms=2]]"),
                }
            )
        )
        await ws.send(frame)
        errors: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not events or events[-1]["type"] != "done":
                f = json.loads(await ws.recv())
                (events if f.get("stream_id") else errors).append(f)
    assert [e["code"] for e in errors] == [code]
    check_stream_events(events, "ok")
    assert sum(e["type"] == "delta" for e in events) == 40


async def test_websocket_oversized_frame_and_flood(live_factory: Any) -> None:
    gw: Live = await live_factory(gateway_max_frame_bytes=4096, gateway_ws_messages_per_second=5)
    async with websockets.connect(f"{gw.ws_url}/v1/ws", additional_headers=gw.headers()) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "chat.start",
                    "id": "ok",
                    "model": "mock",
                    "messages": user_msg("q [[mock tokens=30 delay_ms=5]]"),
                }
            )
        )
        await ws.send(json.dumps({"type": "ping", "pad": "x" * 10_000}))
        for _ in range(40):
            await ws.send(json.dumps({"type": "ping"}))
        codes: list[str] = []
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not events or events[-1]["type"] != "done":
                f = json.loads(await ws.recv())
                if f.get("stream_id"):
                    events.append(f)
                elif f["type"] == "error":
                    codes.append(f["code"])
    assert codes[0] == "frame_too_large"
    assert codes.count("rate_limited") >= 25
    check_stream_events(events, "ok")
    assert sum(e["type"] == "delta" for e in events) == 30


async def test_websocket_rejects_bad_token_with_close_code(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers={"authorization": "Bearer bad"}) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 4401


async def test_websocket_subprotocol_auth(live: Live) -> None:
    async with websockets.connect(f"{live.ws_url}/v1/ws", subprotocols=["bearer", live.token]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
