"""Mid-answer fallback across real SDKs: every ordered provider pair x every mid-stream fault.

The router drives the OpenAI, Anthropic and Gemini adapters (official SDKs, unpatched) against the emulator.
For each case the client must read exactly the partial answer followed by the continuation, and the second
model must have been asked to continue in the form it accepts: an assistant prefill for Anthropic models
marked `supports_prefill`, otherwise the partial as an assistant turn plus the continue instruction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from providers.backoff import Backoff
from providers.breaker import NoBreaker
from providers.catalog import ModelSpec, spec_from_config
from providers.continuation import continue_instruction
from providers.events import TextDelta, ToolCallDelta
from providers.router import FallbackStarted, Router, Segment, SegmentEnded
from tests.conftest import Live
from tests.emulators import Emulator, RecordedRequest, Script, ToolCallScript
from tests.support.fallback import (
    CATALOG,
    PAIRS,
    QUESTION,
    REQUEST,
    OperatorKeys,
    chain_for,
    requests_for,
    turns,
)
from tests.support.scripted import Outcome, run

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

PARTIAL = ("Foxes", " —", " small", " omnivores")  # multi-byte on purpose
REST = (" that", " live", " on", " every", " continent.")
CONTINUATION = (" that", " live", " almost", " everywhere.")

STALL_S = 0.3
FAULTS: dict[str, tuple[Script, str]] = {
    "error_event": (Script(text=PARTIAL + REST, error_after=len(PARTIAL)), "server_error"),
    "dropped": (Script(text=PARTIAL + REST, drop_after=len(PARTIAL)), "connection_lost"),
    "stall": (Script(text=PARTIAL + REST, stall_after=len(PARTIAL)), "stalled"),
    "truncated": (Script(text=PARTIAL, no_finish=True), "truncated"),
}


@pytest.fixture
def router(emu: Emulator, adapters: dict[str, Any]) -> Router:
    emu.reset()
    return Router(
        adapters,
        breaker=NoBreaker(),
        backoff=Backoff(max_retries=0),
        first_token_timeout_s=5.0,
        inter_token_timeout_s=STALL_S,
    )


def assert_continuation(rec: RecordedRequest, spec: ModelSpec, partial: str) -> None:
    got = turns(rec)
    assert got[0] == ("user", QUESTION)
    if spec.supports_prefill:
        assert got[1:] == [("assistant", partial.rstrip())], got
    else:
        assert got[1:] == [("assistant", partial), ("user", continue_instruction(partial))], got


def text_after(out: Outcome, fb: FallbackStarted) -> str:
    i = out.events.index(fb)
    return "".join(e.text for e in out.events[i:] if isinstance(e, TextDelta))


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize(("p1", "p2"), PAIRS)
async def test_fallback_matrix(emu: Emulator, router: Router, p1: str, p2: str, fault: str) -> None:
    first, second = chain_for(p1, p2)
    script, reason = FAULTS[fault]
    emu.script(script, model=first.upstream)
    emu.script(Script(text=CONTINUATION), model=second.upstream)

    async with asyncio.timeout(15):
        out = await run(router, [first, second], REQUEST, OperatorKeys())

    assert out.error is None, out.error
    partial = "".join(PARTIAL)
    assert out.text == partial + "".join(CONTINUATION)  # nothing lost, nothing repeated
    (fb,) = out.of(FallbackStarted)
    assert (fb.from_model, fb.to_model, fb.reason, fb.mode) == (first.id, second.id, reason, "continue")
    assert fb.chars_so_far == len(partial)
    assert text_after(out, fb) == "".join(CONTINUATION)

    (rec1,) = requests_for(emu, first.upstream)
    (rec2,) = requests_for(emu, second.upstream)
    assert (rec1.provider, rec2.provider) == (p1, p2)
    assert turns(rec1) == [("user", QUESTION)]
    assert_continuation(rec2, second, partial)
    if fault == "stall":
        assert await emu.wait_disconnect(rec1)  # the stalled upstream was hung up on

    segs: list[Segment] = [e.segment for e in out.events if isinstance(e, SegmentEnded)]
    assert [(s.model, s.status, s.reason) for s in segs] == [(first.id, "failed", reason), (second.id, "ok", None)]
    assert segs[0].chars == len(partial) and segs[0].usage.output_tokens > 0
    assert segs[1].form == ("prefill" if second.supports_prefill else "instruction")
    assert segs[1].failover_ms is not None and segs[1].failover_ms >= 0


async def test_model_marked_as_rejecting_prefill_gets_the_instruction_form(emu: Emulator, router: Router) -> None:
    claude = spec_from_config(
        {"id": "claude-sonnet-4-5", "supports_prefill": False}, CATALOG.resolve("claude-sonnet-4-5")
    )
    first = CATALOG.resolve("gpt-5-mini")
    emu.script(Script(text=PARTIAL + REST, drop_after=len(PARTIAL)), model=first.upstream)
    emu.script(Script(text=CONTINUATION), model=claude.upstream)
    out = await run(router, [first, claude], REQUEST, OperatorKeys())
    assert out.text == "".join(PARTIAL + CONTINUATION)
    (rec,) = requests_for(emu, claude.upstream)
    assert turns(rec)[-2:] == [("assistant", "".join(PARTIAL)), ("user", continue_instruction("".join(PARTIAL)))]


async def test_prefill_refused_upstream_is_asked_again_in_instruction_form(emu: Emulator, router: Router) -> None:
    first, claude = CATALOG.resolve("gemini-2.5-flash"), CATALOG.resolve("claude-sonnet-4-5")
    emu.script(Script(text=PARTIAL + REST, error_after=len(PARTIAL)), model=first.upstream)
    emu.script(
        Script(status=400, error_message="This model does not support assistant message prefill."),
        Script(text=CONTINUATION),
        model=claude.upstream,
    )
    fresh = Router(router.providers, breaker=NoBreaker(), backoff=Backoff(max_retries=0))
    out = await run(fresh, [first, claude], REQUEST, OperatorKeys())
    assert out.text == "".join(PARTIAL + CONTINUATION)
    prefill, instruction = requests_for(emu, claude.upstream)
    assert turns(prefill)[-1] == ("assistant", "".join(PARTIAL))
    assert turns(instruction)[-2:] == [
        ("assistant", "".join(PARTIAL)),
        ("user", continue_instruction("".join(PARTIAL))),
    ]
    segs = [e.segment for e in out.events if isinstance(e, SegmentEnded)]
    assert [s.reason for s in segs] == ["server_error", "prefill_rejected", None]
    assert "claude-sonnet-4-5" in fresh.no_prefill


async def test_continuation_repeating_the_tail_is_trimmed_through_the_sdks(emu: Emulator, router: Router) -> None:
    first, second = CATALOG.resolve("claude-sonnet-4-5"), CATALOG.resolve("gemini-2.5-flash")
    emu.script(Script(text=PARTIAL + REST, drop_after=len(PARTIAL)), model=first.upstream)
    emu.script(Script(text=(" small", " omnivores", *CONTINUATION)), model=second.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys())
    assert out.text == "".join(PARTIAL + CONTINUATION)


async def test_prefill_never_ends_in_whitespace(emu: Emulator, router: Router) -> None:
    first, claude = CATALOG.resolve("gpt-5-mini"), CATALOG.resolve("claude-sonnet-4-5")
    partial = ("Foxes", " are", " small ")
    emu.script(Script(text=(*partial, "canids."), error_after=len(partial)), model=first.upstream)
    emu.script(Script(text=(" canids.",)), model=claude.upstream)
    out = await run(router, [first, claude], REQUEST, OperatorKeys())
    (rec,) = requests_for(emu, claude.upstream)
    assert turns(rec)[-1] == ("assistant", "Foxes are small")
    assert out.text == "Foxes are small canids."


@pytest.mark.parametrize(("p1", "p2"), [("openai", "anthropic"), ("anthropic", "gemini"), ("anthropic", "openai")])
async def test_tool_call_cut_in_half_is_restarted(emu: Emulator, router: Router, p1: str, p2: str) -> None:
    first, second = chain_for(p1, p2)
    cut = ToolCallScript(arguments=('{"ci', 'ty": "Pa', 'ris"}'))
    emu.script(Script(text=(), tool_call=cut, drop_after=2, finish="tool_calls"), model=first.upstream)
    whole = ToolCallScript(arguments=('{"city":', ' "Paris"}'))
    emu.script(Script(text=(), tool_call=whole, finish="tool_calls"), model=second.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys())
    assert out.error is None, out.error
    (fb,) = out.of(FallbackStarted)
    assert fb.mode == "restart"
    (rec2,) = requests_for(emu, second.upstream)
    assert turns(rec2) == [("user", QUESTION)]  # the original request: never continued as prose
    i = out.events.index(fb)
    before = [e for e in out.events[:i] if isinstance(e, ToolCallDelta)]
    after = [e for e in out.events[i:] if isinstance(e, ToolCallDelta)]
    assert before and "".join(e.arguments for e in before) != '{"city": "Paris"}'
    assert json.loads("".join(e.arguments for e in after)) == {"city": "Paris"}
    assert out.events[-1].finish_reason == "tool_calls"


# -- through the live gateway ------------------------------------------------------------------------------------


async def test_websocket_client_sees_one_coherent_answer_when_the_first_upstream_dies(
    live_factory: Callable[..., Any],
) -> None:
    async with Emulator() as openai_emu, Emulator() as anthropic_emu:
        live: Live = await live_factory(
            openai_base_url=openai_emu.openai_base_url,
            anthropic_base_url=anthropic_emu.anthropic_base_url,
            openai_api_key="sk-operator-openai",
            anthropic_api_key="sk-operator-anthropic",
            gateway_allow_operator_keys=True,
        )
        words = tuple(f" word{i}" for i in range(200))
        openai_emu.default(Script(text=("Here", *words), delay=0.02))
        anthropic_emu.default(Script(text=(" and", " that", " is", " all."), input_tokens=40))
        frames: list[dict[str, Any]] = []
        async with websockets.connect(f"{live.ws_url}/v1/ws", additional_headers=live.headers()) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "chat.start",
                        "id": "c1",
                        "model": "gpt-5-mini",
                        "fallbacks": ["claude-sonnet-4-5"],
                        "messages": [{"role": "user", "content": QUESTION}],
                    }
                )
            )
            async with asyncio.timeout(20):
                killed = False
                while True:
                    f = json.loads(await ws.recv())
                    if f.get("id") != "c1":
                        continue
                    frames.append(f)
                    if not killed and sum(x["type"] == "delta" for x in frames) == 5:
                        await openai_emu.stop()  # the first upstream dies mid-answer
                        killed = True
                    if f["type"] in ("done", "error"):
                        break

        assert frames[-1]["type"] == "done", frames[-1]
        (fb,) = [f for f in frames if f["type"] == "fallback"]
        assert (fb["from_model"], fb["to_model"], fb["mode"]) == ("gpt-5-mini", "claude-sonnet-4-5", "continue")
        i = frames.index(fb)
        before = "".join(f["text"] for f in frames[:i] if f["type"] == "delta")
        after = "".join(f["text"] for f in frames[i:] if f["type"] == "delta")
        assert fb["chars_so_far"] == len(before) and before.startswith("Here word0")
        assert after == " and that is all."
        # The second model was asked to continue exactly the text the client holds.
        (rec,) = anthropic_emu.requests
        assert turns(rec) == [("user", QUESTION), ("assistant", before.rstrip())]
        # One coherent answer: the words arrived in order, none twice, then the continuation.
        got = (before + after).split()
        n = len(before.split()) - 1
        assert got == ["Here", *[f"word{k}" for k in range(n)], "and", "that", "is", "all."]
        seq = [f["seq"] for f in frames]
        assert seq == sorted(seq) and len(set(seq)) == len(seq)
        done = frames[-1]
        assert [(s["model"], s["status"]) for s in done["segments"]] == [
            ("gpt-5-mini", "failed"),
            ("claude-sonnet-4-5", "ok"),
        ]
        assert done["segments"][0]["estimated"] is True and done["segments"][1]["failover_ms"] is not None
