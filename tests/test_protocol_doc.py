"""docs/protocol.md must match what the server emits: every event name and its fields."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import websockets

from tests.conftest import Live
from tests.support.clients import user_msg

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
COMMON = {"type", "stream_id", "id", "seq"}


def documented_events() -> dict[str, set[str]]:
    text = DOC.read_text()
    section = text.split("## Server → client events", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for m in re.finditer(r"### `([a-z_.]+)`\nFields: (.+)\n", section):
        out[m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
    return out


def documented_codes() -> set[str]:
    table = DOC.read_text().split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return {
        c
        for line in table.splitlines()
        if line.startswith("| `")
        for c in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }


async def _collect(ws: Any, cid: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while True:
            f = json.loads(await ws.recv())
            if f.get("id") == cid and f.get("stream_id"):
                out.append(f)
                if f["type"] in ("done", "error"):
                    return out


async def test_emitted_events_match_the_documentation(live: Live) -> None:
    docs = documented_events()
    seen: dict[str, set[str]] = {}
    scripts = {
        "plain": "q [[mock tokens=5]]",
        "fallback": "q [[mock tokens=6 fail_after=3 only=mock]]",
        "tool": "q [[mock tool=get_weather]]",
        "failed": "q [[mock fail_after=0 fail=bad_request]]",
        "rewritten": "q [[mock tokens=8 fail_after=5 only=mock on_continue=rewrite]]",
    }
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        for cid, prompt in scripts.items():
            await ws.send(json.dumps({"type": "chat.start", "id": cid, "model": "mock", "messages": user_msg(prompt)}))
            for ev in await _collect(ws, cid):
                seen.setdefault(ev["type"], set()).update(set(ev) - COMMON)
    for name, fields in seen.items():
        assert name in docs, f"event {name!r} is not documented"
        assert fields <= docs[name], f"{name}: undocumented fields {fields - docs[name]}"
    for name in ("stream.started", "delta", "tool_call.delta", "fallback", "seam", "usage", "done", "error"):
        assert name in seen, f"{name} was not exercised"
        assert docs[name] <= seen[name] | {"attempts"}, (
            f"{name}: documented fields never sent {docs[name] - seen[name]}"
        )


def test_error_codes_used_in_code_are_documented() -> None:
    root = DOC.parent.parent
    codes: set[str] = set()
    pattern = re.compile(
        r"""(?:SessionError|AuthError|InputTooLarge|error_response|self\.error)\(\s*(?:\d+,\s*)?"([a-z_]+)\""""
    )
    for path in [*root.glob("gateway/**/*.py"), *root.glob("sessions/**/*.py")]:
        codes.update(pattern.findall(path.read_text()))
    codes.update({"budget_exceeded", "all_models_failed"})
    missing = codes - documented_codes()
    assert not missing, f"codes not in docs/protocol.md: {sorted(missing)}"
