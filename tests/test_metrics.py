"""/metrics counts finished streams, tokens, cost and failovers, and is closed to strangers."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import websockets

from tests.conftest import Live
from tests.support.clients import user_msg


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _stream(live: Live, prompt: str) -> dict[str, Any]:
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        await ws.send(json.dumps({"type": "chat.start", "id": "m", "model": "mock", "messages": user_msg(prompt)}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] in ("done", "error") and frame.get("stream_id"):
                return dict(frame)


async def test_metrics_count_streams_tokens_and_failovers(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        before = (await client.get("/metrics")).text
        await _stream(live, "a [[mock tokens=10]]")
        done = await _stream(live, "b [[mock tokens=10 fail_after=4 only=mock]]")
        text = (await client.get("/metrics")).text
    assert (
        value(text, "gateway_streams_total", status="done", model="mock")
        - value(before, "gateway_streams_total", status="done", model="mock")
        == 2
    )
    assert value(text, "gateway_failovers_total", reason="server_error") >= 1
    out = value(text, "gateway_tokens_total", provider="mock", model="mock", kind="output")
    assert out >= 14
    assert value(text, "gateway_cost_usd_total", provider="mock", model="mock-backup") > 0
    assert value(text, "gateway_ttft_seconds_count") >= 2
    assert re.search(r"^gateway_active_streams \d", text, re.M)
    assert done["type"] == "done"


async def test_metrics_refuse_other_addresses_without_the_token(live_factory: Any) -> None:
    gw: Live = await live_factory(gateway_metrics_allow="10.9.9.9/32", gateway_metrics_token="scrape-secret")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get("/metrics")
        assert r.status_code == 403 and r.json()["error"]["code"] == "metrics_forbidden"
        assert (await client.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 403
        ok = await client.get("/metrics", headers={"authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200 and "gateway_streams_total" in ok.text
