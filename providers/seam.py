"""The seam between a failed model's partial answer and the next model's continuation.

`continuation_request` builds what the next model is asked; `SeamTrimmer` cleans the first characters
of its answer (a repeated tail, doubled whitespace) before they reach the client.
"""

from __future__ import annotations

from typing import Literal

from providers.base import ChatRequest, Message

ContinuationForm = Literal["prefill", "instruction"]

CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it exactly where it stops, without repeating "
    "any of it and without any preamble."
)

# How far back in the partial text a repeated tail is looked for, and how much of the continuation
# may be held back while deciding. Bounded so the seam costs a few microseconds once, then nothing.
TAIL_CHARS = 200
LOOKAHEAD_CHARS = 96
# A shorter match is too likely to be a coincidence ("a" followed by "a ...") to cut.
MIN_OVERLAP = 4


def continuation_request(original: ChatRequest, partial: str, form: ContinuationForm) -> ChatRequest:
    """The original messages plus the partial answer, in the form the target model accepts."""
    msgs = list(original.messages)
    last = msgs[-1] if msgs else None
    if last is not None and last.role == "assistant" and not last.tool_calls:
        # The caller prefilled the answer itself: the partial text extends that turn.
        msgs.pop()
        partial = last.text() + partial
    if form == "prefill":
        # Several providers refuse a prefill ending in whitespace; the seam trimmer absorbs the
        # whitespace the continuation then brings back.
        body = partial.rstrip()
        if body:
            msgs.append(Message("assistant", body))
    else:
        if partial.strip():
            msgs.append(Message("assistant", partial))
        msgs.append(Message("user", CONTINUE_INSTRUCTION))
    return original.with_messages(tuple(msgs))


def _word_starts(tail: str) -> list[int]:
    """Positions in `tail` where a repeated stretch may begin: the start, or a word boundary."""
    out = [0]
    for i in range(1, len(tail)):
        if tail[i].isspace() != tail[i - 1].isspace() or not tail[i].isalnum():
            out.append(i)
    return out


class SeamTrimmer:
    """Holds back the first characters of a continuation until it is clear whether they repeat the tail.

    `feed(text)` returns what may go to the client now ("" while deciding); `done` turns True once the
    decision is made, after which the router stops calling it. `flush()` decides with what it has.
    """

    __slots__ = ("_buf", "_candidates", "_partial_ws", "_tail", "done")

    def __init__(self, partial: str) -> None:
        # A prefill had its trailing whitespace removed; compare against the text without it.
        self._tail = partial.rstrip()[-TAIL_CHARS:]
        self._partial_ws = partial != partial.rstrip()
        self._candidates = [p for p in _word_starts(self._tail) if len(self._tail) - p >= MIN_OVERLAP]
        self._buf = ""
        self.done = False

    def feed(self, text: str) -> str:
        self._buf += text
        probe = self._buf.lstrip() if self._partial_ws else self._buf
        if not probe:
            return ""  # only whitespace so far: it may belong to the seam
        tail = self._tail
        # Still ambiguous while some tail suffix is longer than what we hold and starts with it.
        growing = any(len(tail) - p > len(probe) and tail.startswith(probe, p) for p in self._candidates)
        if growing and len(self._buf) < LOOKAHEAD_CHARS:
            return ""
        return self.flush()

    def flush(self) -> str:
        self.done = True
        buf, tail = self._buf, self._tail
        lead = len(buf) - len(buf.lstrip()) if self._partial_ws else 0
        probe = buf[lead:]
        cut = 0
        for p in self._candidates:  # earliest start = longest overlap
            k = len(tail) - p
            if probe.startswith(tail[p:]) and k >= MIN_OVERLAP:
                cut = k
                break
        out = probe[cut:]
        self._buf = ""
        if self._partial_ws:
            # The client already holds the whitespace at the seam; a second run of it would show.
            out = out.lstrip()
            if not out:
                # All of it was repeat or whitespace: the overlap is settled, the seam whitespace not yet.
                self._candidates = []
                self.done = False
        return out
