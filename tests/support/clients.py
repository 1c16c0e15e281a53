"""Small protocol clients used by the end-to-end tests: an SSE reader over httpx and a WebSocket reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SSEEvent:
    event: str
    id: str | None
    data: dict[str, Any]


async def iter_sse(response: httpx.Response) -> AsyncIterator[SSEEvent | str]:
    """Parse an event stream; yields SSEEvent for events and the comment text for `:` lines."""
    event, eid, data = "message", None, []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SSEEvent(event, eid, json.loads("\n".join(data)))
            event, eid, data = "message", None, []
        elif line.startswith(":"):
            yield line[1:].strip()
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "id":
                eid = value
            elif field == "data":
                data.append(value)


async def collect_sse(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> list[SSEEvent]:
    out: list[SSEEvent] = []
    async with client.stream(method, url, **kw) as r:
        assert r.status_code == 200, (r.status_code, await r.aread())
        assert r.headers["content-type"].startswith("text/event-stream")
        async for ev in iter_sse(r):
            if isinstance(ev, SSEEvent):
                out.append(ev)
    return out


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def user_msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
