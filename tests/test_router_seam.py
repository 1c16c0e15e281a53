"""The seam between a partial answer and its continuation, and the one-timer stall watchdog."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from providers.base import ChatRequest, Message
from providers.continuation import continuation_request, continue_instruction
from providers.seam import MARGIN, SeamAligner
from providers.watchdog import Watchdog, monotonic

REQ = ChatRequest((Message("user", "Q"),), max_tokens=50, temperature=0.2, stop=("END",))


def test_prefill_form_strips_trailing_whitespace() -> None:
    r = continuation_request(REQ, "Foxes are \n", "prefill")
    assert r.messages == (Message("user", "Q"), Message("assistant", "Foxes are"))
    assert (r.max_tokens, r.temperature, r.stop) == (50, 0.2, ("END",))


def test_instruction_form_keeps_the_partial_verbatim() -> None:
    r = continuation_request(REQ, "Foxes are ", "instruction")
    assert r.messages == (
        Message("user", "Q"),
        Message("assistant", "Foxes are "),
        Message("user", continue_instruction("Foxes are ")),
    )


def test_a_callers_own_prefill_is_extended_not_duplicated() -> None:
    req = ChatRequest((Message("user", "Q"), Message("assistant", "Answer: ")))
    assert continuation_request(req, "Foxes", "prefill").messages == (
        Message("user", "Q"),
        Message("assistant", "Answer: Foxes"),
    )


def feed_all(partial: str, pieces: list[str]) -> tuple[str, list[str]]:
    t = SeamAligner(partial)
    out: list[str] = []
    for p in pieces:
        if t.done:
            out.append(p)
            continue
        got = t.feed(p)
        if got:
            out.append(got)
    if not t.done:
        out.append(t.flush())
    return partial + "".join(out), out


@pytest.mark.parametrize(
    ("partial", "pieces", "whole"),
    [
        ("The quick brown", [" fox"], "The quick brown fox"),
        ("The quick brown", [" brown", " fox"], "The quick brown fox"),
        ("The quick brown", ["brown", " fox"], "The quick brown fox"),
        ("The quick brown", [" quick", " brown", " fox"], "The quick brown fox"),
        ("The quick brown", ["The", " quick", " brown", " fox"], "The quick brown fox"),
        ("The quick ", ["quick", " brown"], "The quick brown"),
        ("The quick ", [" brown"], "The quick brown"),
        ("The quick ", [" ", " brown"], "The quick brown"),
        ("The qui", ["ck brown"], "The quick brown"),  # cut mid-word: nothing to trim
        ("I see a", [" a", " cat"], "I see a a cat"),  # too short to call a repeat
        ("Line one.\n", ["\nLine two."], "Line one.\nLine two."),
    ],
)
def test_trimming(partial: str, pieces: list[str], whole: str) -> None:
    assert feed_all(partial, pieces)[0] == whole


def test_a_clear_continuation_is_released_at_once() -> None:
    t = SeamAligner("The quick brown")
    assert t.feed(" fox") == " fox" and t.done


def test_holding_back_is_bounded() -> None:
    tail = "word " * 60
    t = SeamAligner(tail)
    held = 0
    while not t.done:
        assert t.feed("word ") == "" or t.done
        held += 5
    assert held <= len(tail) + MARGIN + 5  # never more than the partial, a margin, and the piece that decided


class CountingLoop:
    """Delegates to the real loop, counting timers armed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.armed = 0

    def time(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, cb: Any) -> asyncio.TimerHandle:
        self.armed += 1
        return self._loop.call_later(delay, cb)


async def test_watchdog_arms_one_timer_per_timeout_period_not_per_token() -> None:
    loop = CountingLoop(asyncio.get_running_loop())
    task = asyncio.current_task()
    assert task is not None
    wd = Watchdog(loop, task, 0.05)  # type: ignore[arg-type]
    end = loop.time() + 0.2
    tokens = 0
    while loop.time() < end:  # a fast upstream: a token every millisecond
        wd.since = monotonic()
        await asyncio.sleep(0.001)
        wd.since = 0.0
        tokens += 1
    wd.stop()
    assert tokens > 50
    assert not wd.fired
    assert loop.armed <= 10  # about one per 50 ms period


async def test_watchdog_cancels_a_stalled_wait_and_absorbs_its_cancellation() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    wd = Watchdog(loop, task, 0.03)
    wd.since = monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(1)
    assert wd.fired
    assert wd.absorb()
    assert task.cancelling() == 0
    wd.stop()
