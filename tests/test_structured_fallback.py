"""A structured answer that fails mid-way, across real SDKs: every ordered provider pair.

JSON under a schema cannot be continued (constrained decoding starts again at the document's root), so the next
model is asked the original request and the seam aligns its document with what the client holds: the repeated
part is cut, and a document that goes another way comes with a seam reset. Either way the text the client keeps
is one document that parses against the schema.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from providers.backoff import Backoff
from providers.base import ResponseFormat
from providers.breaker import NoBreaker
from providers.document_seam import DocumentAligner
from providers.router import FallbackStarted, Router
from providers.seam import SeamReset
from tests.emulators import Emulator, Script
from tests.emulators.answers import pieces
from tests.support.fallback import PAIRS, REQUEST, OperatorKeys, chain_for, requests_for, turns
from tests.support.scripted import run

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "facts"],
    "additionalProperties": False,
}
ASKED = replace(REQUEST, response_format=ResponseFormat.json_schema("fox", SCHEMA))
FOX = {"name": "red fox", "facts": ["small omnivore", "lives on every continent but Antarctica", "hunts at dusk"]}
OTHER = {"name": "arctic fox", "facts": ["white in winter"]}


@pytest.fixture
def router(emu: Emulator, adapters: dict[str, Any]) -> Router:
    emu.reset()
    return Router(adapters, breaker=NoBreaker(), backoff=Backoff(max_retries=0), first_token_timeout_s=5.0)


def valid(text: str) -> dict[str, Any]:
    doc = json.loads(text)
    assert set(doc) == {"name", "facts"} and isinstance(doc["facts"], list), doc
    return dict(doc)


@pytest.mark.parametrize(("p1", "p2"), PAIRS)
async def test_a_document_cut_mid_way_is_finished_by_the_next_model(
    emu: Emulator, router: Router, p1: str, p2: str
) -> None:
    first, second = chain_for(p1, p2)
    cut = len(pieces(FOX)) // 2
    emu.script(Script(json=FOX, drop_after=cut), model=first.upstream)
    emu.script(Script(json=FOX), model=second.upstream)

    async with asyncio.timeout(15):
        out = await run(router, [first, second], ASKED, OperatorKeys())

    assert out.error is None, out.error
    assert valid(out.text) == FOX  # the repeated half was cut: one document, not one and a half
    (fb,) = out.of(FallbackStarted)
    assert fb.mode == "continue" and fb.chars_so_far > 0
    assert not out.of(SeamReset)
    (rec2,) = requests_for(emu, second.upstream)
    # Asked the original request: no partial document as a prefill, no instruction to continue.
    assert turns(rec2) == turns(requests_for(emu, first.upstream)[0])


@pytest.mark.parametrize(("p1", "p2"), [("openai", "anthropic"), ("anthropic", "gemini"), ("gemini", "openai")])
async def test_a_different_document_from_the_next_model_replaces_the_partial_one(
    emu: Emulator, router: Router, p1: str, p2: str
) -> None:
    first, second = chain_for(p1, p2)
    emu.script(Script(json=FOX, drop_after=len(pieces(FOX)) // 2), model=first.upstream)
    emu.script(Script(json=OTHER), model=second.upstream)

    async with asyncio.timeout(15):
        out = await run(router, [first, second], ASKED, OperatorKeys())

    assert out.error is None, out.error
    assert valid(out.text) == OTHER  # what the client keeps after the seam reset
    (reset,) = out.of(SeamReset)
    assert reset.keep_chars < len(json.dumps(FOX))


def test_the_document_seam_cuts_the_repeat_and_resets_where_the_documents_part() -> None:
    same = DocumentAligner('{"a":1,')
    assert [same.feed(t) for t in ('{"a"', ":1,", '"b":2}')] == ["", "", '"b":2}']
    assert same.reset is None and same.done

    other = DocumentAligner('{"a":1,"b"')
    assert [other.feed(t) for t in ('{"a":', "2}")] == ["", "2}"]
    assert other.reset == SeamReset(5, 5, "continuation_restarted")

    shorter = DocumentAligner('{"a":1,"b":')
    assert shorter.feed('{"a":1') == "" and shorter.flush() == ""
    assert shorter.reset == SeamReset(6, 5, "continuation_restarted")
    assert not shorter.holding
