"""The seam through the real SDKs: the model that takes over misbehaves the ways models do, and the text the client
keeps (after any `seam` it was told to apply) is one answer, never a duplicate.

Every ordered provider pair x every misbehaviour x both continuation forms. The emulator answers the continuation
from what the request actually carried (its last assistant turn), so the prefill and instruction requests are
checked on the wire too.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from providers.backoff import Backoff
from providers.breaker import NoBreaker
from providers.continuation import continue_instruction
from providers.router import FallbackStarted, Router, SeamReset, SegmentEnded
from tests.emulators import Emulator, Script, split_words
from tests.support.fallback import PAIRS, QUESTION, REQUEST, OperatorKeys, chain_for, requests_for, turns
from tests.support.scripted import run

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")

PARTIAL = ("Foxes", " —", " small", " omnivores", " —", " hunt", " at", " dusk.", " They", " live", " in", " dens")
REST = (" dug", " under", " roots.")
HELD = "".join(PARTIAL)
WHOLE = HELD + "".join(REST)
# A continuation that starts the answer again and then writes it differently.
REWRITE = ("Foxes", " —", " small", " omnivores", " —", " sleep", " in", " dens", " by", " day.")
# One that repeats the last sentence, then writes it differently.
REWRITE_LAST = ("They", " live", " in", " burrows.")

# case: (what the continuation model answers, the text the client ends up with, the seam event it gets)
CASES: dict[str, tuple[Script, str, SeamReset | None]] = {
    "whole restart": (Script(echo="whole", text=REST), WHOLE, None),
    "whole restart, retyped": (Script(echo="whole", echo_loose=True, text=REST), WHOLE, None),
    "restart from the middle": (Script(echo="middle", text=REST), WHOLE, None),
    "restart from the middle, retyped": (Script(echo="middle", echo_loose=True, text=REST), WHOLE, None),
    "last sentence repeated": (Script(echo="last_sentence", text=REST), WHOLE, None),
    "rewrite": (
        Script(text=REWRITE),
        "".join(REWRITE),
        SeamReset(len("Foxes — small omnivores"), len(HELD) - len("Foxes — small omnivores"), "continuation_restarted"),
    ),
    "last sentence rewritten": (
        Script(text=REWRITE_LAST),
        HELD.removesuffix(" dens") + " burrows.",
        SeamReset(len(HELD) - len(" dens"), len(" dens"), "continuation_diverged"),
    ),
}


@pytest.fixture(scope="module")
def router(adapters: dict[str, Any]) -> Router:
    return Router(adapters, breaker=NoBreaker(), backoff=Backoff(max_retries=0), first_token_timeout_s=5.0)


@pytest.mark.parametrize("form", ["prefill", "instruction"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("p1", "p2"), PAIRS)
async def test_the_client_keeps_one_answer_whatever_the_continuation_does(
    emu: Emulator, router: Router, p1: str, p2: str, case: str, form: str
) -> None:
    emu.reset()
    first, second = chain_for(p1, p2)
    second = replace(second, supports_prefill=form == "prefill")
    answer, expected, reset = CASES[case]
    emu.script(Script(text=PARTIAL + REST, drop_after=len(PARTIAL)), model=first.upstream)
    emu.script(answer, model=second.upstream)

    async with asyncio.timeout(15):
        out = await run(router, [first, second], REQUEST, OperatorKeys())

    assert out.error is None, out.error
    assert out.text == expected  # what the client holds after applying every event
    assert out.text.count("dusk") <= 1 and out.text.count("Foxes") == 1  # never a duplicate
    (fb,) = out.of(FallbackStarted)
    assert (fb.mode, fb.chars_so_far) == ("continue", len(HELD))
    assert out.of(SeamReset) == ([reset] if reset else [])
    if reset is not None:
        assert out.events.index(fb) < out.events.index(reset)  # `seam` follows the `fallback` it belongs to

    (rec,) = requests_for(emu, second.upstream)
    if form == "prefill":
        assert turns(rec) == [("user", QUESTION), ("assistant", HELD)]
    else:
        assert turns(rec) == [("user", QUESTION), ("assistant", HELD), ("user", continue_instruction(HELD))]
    segs = [e.segment for e in out.events if isinstance(e, SegmentEnded)]
    assert [s.form for s in segs] == ["original", form]
    # Billing counts what reached the client from each model.
    assert segs[1].chars == len(expected) - (reset.keep_chars if reset else len(HELD))


async def test_the_instruction_quotes_where_the_answer_stopped_and_keeps_the_system_prompt(
    emu: Emulator, router: Router
) -> None:
    emu.reset()
    first, second = chain_for("anthropic", "openai")
    emu.script(Script(text=PARTIAL + REST, drop_after=len(PARTIAL)), model=first.upstream)
    emu.script(Script(text=REST), model=second.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys())
    assert out.text == WHOLE
    (rec,) = requests_for(emu, second.upstream)
    assert rec.body["messages"][0] == {"role": "system", "content": "Be brief."}  # the persona as it was
    instruction = rec.body["messages"][-1]["content"]
    assert '"…at dusk. They live in dens"' in instruction and len(instruction.split()) < 20


async def test_a_continuation_that_pauses_while_held_is_released_by_the_timer(emu: Emulator, router: Router) -> None:
    """The seam holds "They" (it may be the last sentence again); the upstream then goes quiet for longer than the
    hold: the held text reaches the client before the next token arrives."""
    emu.reset()
    first, second = chain_for("openai", "gemini")
    emu.script(Script(text=PARTIAL + REST, drop_after=len(PARTIAL)), model=first.upstream)
    emu.script(Script(text=(" They", " dig", " burrows."), delay=0.6), model=second.upstream)
    seen: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    async for ev in router.stream(REQUEST, [first, second], OperatorKeys()):
        text = getattr(ev, "text", None)
        if isinstance(text, str):
            seen.append((loop.time(), text))
    assert "".join(t for _, t in seen) == HELD + " They dig burrows."
    after = [(at, t) for at, t in seen if at >= seen[len(PARTIAL) - 1][0]][1:]
    # " They" went out on its own, before " dig" arrived 0.6 s later: the hold ended by its timer.
    assert after[0][1] == " They" and after[1][0] - after[0][0] > 0.2


@pytest.mark.parametrize("form", ["prefill", "instruction"])
async def test_a_long_answer_started_again_is_cut_whole_not_only_its_tail(
    emu: Emulator, router: Router, form: str
) -> None:
    """Over 200 characters, every sentence the same: the repeat is recognised from the answer's first word."""
    emu.reset()
    long = split_words("Foxes are small omnivores of the dog family. " * 6 + "They live in dens")
    first, second = chain_for("gemini", "anthropic")
    second = replace(second, supports_prefill=form == "prefill")
    emu.script(Script(text=long + REST, drop_after=len(long)), model=first.upstream)
    emu.script(Script(echo="whole", text=REST), model=second.upstream)
    out = await run(router, [first, second], REQUEST, OperatorKeys())
    assert len("".join(long)) > 250
    assert out.text == "".join(long + REST) and not out.of(SeamReset)
