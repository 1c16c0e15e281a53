"""docs/protocol.md must match what the server emits: every event name and its fields."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import websockets

from gateway.errors import TABLE
from sessions.errors import CODES, KINDS
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


def _tables(section: str) -> list[list[list[str]]]:
    """The markdown tables of a section, as rows of cells (header and rule lines dropped)."""
    body = DOC.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    tables: list[list[list[str]]] = []
    for block in re.split(r"\n\s*\n", body):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if len(lines) > 2:
            tables.append([[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]])
    return tables


def documented_codes() -> dict[str, str]:
    """code -> kind, from the code table of "Errors"."""
    out: dict[str, str] = {}
    for cells in _tables("Errors")[1]:
        kinds = re.findall(r"`([a-z_]+)`", cells[1])
        for code in re.findall(r"`([a-z_]+)`", cells[0]):
            out[code] = kinds[0]
    return out


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
    }
    async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
        for cid, prompt in scripts.items():
            await ws.send(json.dumps({"type": "chat.start", "id": cid, "model": "mock", "messages": user_msg(prompt)}))
            for ev in await _collect(ws, cid):
                seen.setdefault(ev["type"], set()).update(set(ev) - COMMON)
    for name, fields in seen.items():
        assert name in docs, f"event {name!r} is not documented"
        assert fields <= docs[name], f"{name}: undocumented fields {fields - docs[name]}"
    for name in ("stream.started", "delta", "tool_call.delta", "fallback", "usage", "done", "error"):
        assert name in seen, f"{name} was not exercised"
        assert docs[name] <= seen[name] | {"attempts"}, (
            f"{name}: documented fields never sent {docs[name] - seen[name]}"
        )


def test_error_codes_used_in_code_are_documented() -> None:
    root = DOC.parent.parent
    codes: set[str] = set()
    pattern = re.compile(r"""(?:\bfail|self\.error)\(\s*"([a-z_]+)\"""")
    for path in [*root.glob("gateway/**/*.py"), *root.glob("sessions/**/*.py")]:
        codes.update(pattern.findall(path.read_text()))
    codes.update({"budget_exceeded", "all_models_failed", "midstream_failed", "bad_request", "http_error"})
    assert codes <= set(CODES), f"codes used but not in sessions.errors.CODES: {sorted(codes - set(CODES))}"
    documented = documented_codes()
    assert documented == CODES, (
        f"docs/protocol.md and CODES differ: {sorted(set(documented.items()) ^ set(CODES.items()))}"
    )


def test_the_kind_table_is_the_one_the_edge_uses() -> None:
    rows = {re.sub(r"`", "", c[0]): c for c in _tables("Errors")[0]}
    assert set(rows) == set(KINDS) == set(TABLE)
    for kind, row in TABLE.items():
        status, close, openai_type = rows[kind][1], rows[kind][2], rows[kind][3].strip("`")
        assert (int(status), None if close == "–" else int(close), openai_type) == (
            row.status,
            row.close,
            row.openai,
        ), kind
