"""docs/protocol.md must match what the server emits: every event name and its fields (from the typed union in
sessions/events.py, which is also what a live gateway is checked against), every error code and kind."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import websockets

from gateway.errors import TABLE
from providers.events import TokenLogprob, Usage
from providers.segments import Segment
from sessions.errors import CODES, KINDS
from sessions.events import (
    EVENT_TYPES,
    Delta,
    Done,
    Draining,
    Error,
    Event,
    Fallback,
    Logprobs,
    Reasoning,
    Refused,
    Seam,
    SegmentUsage,
    Skipped,
    Started,
    StreamEncoder,
    ToolCallDelta,
    Tried,
    decode,
    encode_outside,
)
from tests.conftest import Live
from tests.support.clients import user_msg

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
COMMON = {"type", "stream_id", "id", "seq"}


SEGMENT = Segment(2, "mock-backup", "mock", "failed", "server_error", Usage(11, 3, 1, 2), True, Decimal("0.000017"))
SAMPLES: list[Event] = [
    Started("mock", "mock"),
    Delta(" the"),
    ToolCallDelta(0, "call_1", "get_weather", '{"city"'),
    Reasoning("First, the weather.", "sig", "data"),
    Logprobs((TokenLogprob(" the", -0.01, (32, 116, 104, 101), (TokenLogprob(" a", -4.6, (32, 97)),)),)),
    Fallback("mock", "mock-backup", "server_error", 9, "continue"),
    Seam(7, 2, "overlap"),
    SegmentUsage(SEGMENT),
    Done("stop", (SEGMENT,), (Skipped("mock-backup", "mock", "circuit_open"),), "\n\nHuman:"),
    Error(
        "all_models_failed",
        "every model failed",
        True,
        (Tried("mock", "server_error", "mock", 1, "500", "upstream failed"),),
        1.5,
        Refused("chat.start"),
    ),
    Draining(1000, "restarting"),
]


def union_fields() -> dict[str, list[str]]:
    """Each event type's fields, in wire order, from the union (every optional field set in the samples)."""
    assert {type(e) for e in SAMPLES} == set(EVENT_TYPES) == set(get_args(Event))
    enc = StreamEncoder("st_x", "c1")
    return {e.TYPE: [k for k in json.loads(enc.encode(1, e)) if k not in COMMON] for e in SAMPLES}


def events_table() -> str:
    rows = [f"| `{name}` | {', '.join(f'`{f}`' for f in fields)} |" for name, fields in union_fields().items()]
    return "\n".join(["| event | fields |", "|---|---|", *rows])


def test_the_event_table_in_the_docs_is_the_union() -> None:
    text = DOC.read_text()
    documented = text.split("<!-- events:begin -->\n", 1)[1].split("<!-- events:end -->", 1)[0].strip()
    assert documented == events_table(), "docs/protocol.md event table is stale; it should read:\n" + events_table()
    section = text.split("## Server → client events", 1)[1].split("\n## ", 1)[0]
    described = re.findall(r"^### `([a-z_.]+)`$", section, flags=re.M)
    assert described == list(union_fields()), "every event has its own section, in the union's order"


def test_every_event_decodes_back_to_the_same_bytes() -> None:
    enc = StreamEncoder("st_x", None)
    for seq, ev in enumerate(SAMPLES, 1):
        data = enc.encode(seq, ev)
        back = decode(data)
        assert type(back) is type(ev) and enc.encode(seq, back) == data, ev
    assert enc.delta(3, "hé") == enc.encode(3, Delta("hé"))
    outside = encode_outside(Error("resume_too_old", "gone"), "c1")
    assert json.loads(outside) == {
        "type": "error",
        "stream_id": None,
        "id": "c1",
        "code": "resume_too_old",
        "message": "gone",
        "retryable": False,
    }


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
    docs = {name: set(fields) for name, fields in union_fields().items()}
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
        # Sent only when they apply: a failure's attempts and wait, a refused frame, a stop sequence Claude named
        # (tests/test_messages_providers.py reads that one through the Messages face).
        assert docs[name] <= seen[name] | {"attempts", "retry_after_s", "frame", "stop_sequence"}, (
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


def test_the_documents_event_models_name_the_unions_fields() -> None:
    """The OpenAPI document's event models (`gateway.replies`) describe what the union encodes: the same fields
    for every event, each sample (every optional field set) valid against its model."""
    from gateway.replies import EVENT_DATA

    enc = StreamEncoder("st_x", "c1")
    for sample, (name, fields) in zip(SAMPLES, union_fields().items(), strict=True):
        model = EVENT_DATA[name]
        assert set(model.model_fields) == {*fields, *COMMON}, name
        model.model_validate_json(enc.encode(1, sample))


def test_each_api_face_page_is_linked_from_other_faces() -> None:
    section = DOC.read_text().split("## Other faces\n", 1)[1].split("\n## ", 1)[0]
    pages = sorted(p.name for p in DOC.parent.glob("api-*.md"))
    assert pages, "no docs/api-*.md found"
    assert sorted(re.findall(r"\]\((api-[a-z-]+\.md)\)", section)) == pages
