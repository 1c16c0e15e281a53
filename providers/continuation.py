"""What the next model is asked when it takes over a partial answer, in the form the model accepts.

- `prefill`: the original messages, then the partial answer as the assistant's own unfinished turn (trailing
  whitespace removed: several providers refuse a prefill ending in it). The model writes on from there.
- `instruction`: the original messages, the partial answer as the assistant's turn, then one short user turn
  asking to continue after its last words (quoted, so the model knows exactly where it stopped). System prompts
  and personas stay where they were: nothing is rewritten, only two turns are appended.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from providers.base import ChatRequest, Message

ContinuationForm = Literal["prefill", "instruction"]

# How many of the partial answer's last words the instruction quotes: enough to anchor, few tokens.
QUOTED_WORDS = 6


def continue_instruction(partial: str) -> str:
    """The user turn of the instruction form: where to resume, and not to repeat or restart."""
    words = partial.split()
    if not words:
        return "Continue your reply."
    tail = " ".join(words[-QUOTED_WORDS:])
    if len(words) > QUOTED_WORDS:
        tail = "…" + tail
    return f'Continue your reply exactly after "{tail}", without repeating it or starting over.'


def continuation_request(original: ChatRequest, partial: str, form: ContinuationForm) -> ChatRequest:
    """The original messages plus the partial answer, in the form the target model accepts."""
    msgs = list(original.messages)
    last = msgs[-1] if msgs else None
    if last is not None and last.role == "assistant" and not last.tool_calls:
        # The caller prefilled the answer itself: the partial text extends that turn.
        msgs.pop()
        partial = last.text() + partial
    if form == "prefill":
        # The seam absorbs the whitespace the continuation brings back.
        body = partial.rstrip()
        if body:
            msgs.append(Message("assistant", body))
    else:
        if partial.strip():
            msgs.append(Message("assistant", partial))
        msgs.append(Message("user", continue_instruction(partial)))
    return replace(original, messages=tuple(msgs))
