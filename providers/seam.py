"""The seam between a failed model's partial answer and the next model's continuation.

A continuation does not always continue. Asked to go on, a model may start the answer again from the top, restart
from a sentence in the middle, repeat the last few words, or write a different answer altogether. `SeamAligner`
compares the continuation's first characters with the *whole* partial answer the client holds, ignoring case,
whitespace and punctuation, and decides once:

- a repeat of the partial, from its start or from any word inside it, up to its end: the repeat is cut and only
  what follows reaches the client (nothing to tell it: the text it holds stays valid);
- a repeat that turns into something else before reaching the end (a rewrite): `reset` says how much of its text
  the client keeps (up to the last word both versions share) and how much it drops; the continuation's own words
  follow from there;
- anything else: the continuation is new text and goes out as it is.

While undecided it holds the continuation back: never more than the partial's length plus `MARGIN` characters, and
never longer than `HOLD_S` for text that may be new (the router arms a timer and calls `expire()`). Whitespace and
punctuation where the two texts meet are not doubled.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

SeamReason = Literal["continuation_restarted", "continuation_diverged"]

# Longest time text that may be new is held back, and how far past the partial's length the hold may grow.
HOLD_S = 0.25
MARGIN = 64
# A repeated tail shorter than this (letters and digits) is too likely a coincidence ("a" then "a cat") to cut.
MIN_REPEAT = 4
# A repeat that differs in case must be at least this long ("the fox." then "The fox ran" is not one).
FUZZY_MIN = 12
# A rewrite is only recognised once it shared this much with the partial: (words, letters and digits) from the
# start of the answer, or from inside it when the continuation's first word is glued to the partial's last (no
# continuation starts that way); more from inside it otherwise, where a shared phrase is likelier to be chance.
RESTART_MIN = (2, 8)
DIVERGE_MIN = (3, 15)

_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class SeamReset:
    """The client keeps the first `keep_chars` characters of the answer and drops the `discard_chars` after them."""

    keep_chars: int
    discard_chars: int
    reason: SeamReason


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    # A few characters lower to two ("İ"); keep those as they are so positions still line up.
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class _Partial:
    """The partial answer's letters and digits (raw and lowercased), where its words start, and a map back."""

    __slots__ = ("low", "offsets", "raw", "starts", "word_set")

    def __init__(self, text: str) -> None:
        raw: list[str] = []
        self.starts: list[int] = []  # normalized index of each word's first character
        self.offsets: list[int] = []  # where each word starts in the text
        n = 0
        for m in _WORD.finditer(text):
            word = m.group()
            self.starts.append(n)
            self.offsets.append(m.start())
            raw.append(word)
            n += len(word)
        self.raw = "".join(raw)
        self.low = _lower(self.raw)
        self.word_set = set(self.starts)

    def origin(self, i: int) -> int:
        """The index in the text of normalized character `i`."""
        w = bisect.bisect_right(self.starts, i) - 1
        return self.offsets[w] + (i - self.starts[w])

    def candidates(self, probe: str) -> list[int]:
        """Word starts from which the partial reads as `probe` (or as its beginning, where the partial ends first)."""
        low, n, out = self.low, len(probe), []
        head = probe[:8]  # hop between occurrences at C speed, then check each
        i = low.find(head)
        while i >= 0:
            if i in self.word_set and probe.startswith(low[i : i + n]):
                out.append(i)
            i = low.find(head, i + 1)
        for i in range(max(0, len(low) - len(head) + 1), len(low)):  # the last few, shorter than the head
            if i in self.word_set and probe.startswith(low[i:]):
                out.append(i)
        return out

    def cut_back(self, d: int) -> int:
        """The start of the word holding normalized index `d` (or `d` itself when a word starts there)."""
        if d >= len(self.low) or d in self.word_set:
            return d
        return self.starts[bisect.bisect_right(self.starts, d) - 1]

    def words_between(self, i: int, c: int) -> int:
        return bisect.bisect_left(self.starts, c) - bisect.bisect_left(self.starts, i)


def seam_join(tail: str, run: str) -> str:
    """What of `run` (the continuation's whitespace and punctuation where it meets the partial) is still new, when
    the partial already ends with `tail`: its dots, commas and spaces are not written twice."""
    if not tail:
        return run
    if run.startswith(tail):
        out = run[len(tail) :]
    else:
        marks = [c for c in tail if not c.isspace()]
        kept: list[str] = []
        j = 0
        for c in run:
            if j < len(marks) and c == marks[j]:
                j += 1
            else:
                kept.append(c)
        out = "".join(kept) if j == len(marks) else run
    return out.lstrip() if tail[-1].isspace() else out


class SeamAligner:
    """Aligns one continuation against the partial answer. Feed it the continuation's text until `done`.

    `feed(text)` and `expire()` return the text for the client now ("" while undecided); `flush()` decides with what
    it has (the continuation ended, or a tool call began). Once `reset` is set the router tells the client and
    clears it. `holding` says whether text that may be new is held (the timer runs from `held_since`).
    """

    __slots__ = (
        "_best",
        "_clock",
        "_committed",
        "_cut",
        "_live",
        "_low",
        "_p",
        "_pos",
        "_raw",
        "_tail",
        "buf",
        "done",
        "held_since",
        "limit",
        "partial",
        "reset",
    )

    def __init__(self, partial: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.partial = partial
        self.limit = len(partial) + MARGIN
        stripped = len(partial)
        while stripped and not partial[stripped - 1].isalnum():
            stripped -= 1
        self._tail = partial[stripped:]  # the whitespace and punctuation the partial ends with
        self._clock = clock
        self._p: _Partial | None = None
        self.buf = ""  # the continuation so far, none of it sent yet
        self._low = ""  # its letters and digits, lowercased
        self._raw = ""
        self._pos: list[int] = []  # where each of those is in `buf`
        self._live: list[int] | None = None  # word starts of the partial the continuation still reads as
        self._best = (0, 0)  # (start, length) of the longest such reading that broke off
        self._cut: int | None = None  # after a repeat: where in `buf` the new text begins
        self._committed = False
        self.done = False
        self.held_since = 0.0
        self.reset: SeamReset | None = None

    @property
    def holding(self) -> bool:
        return not self.done and bool(self.buf) and not (self._committed and self._cut is None)

    def feed(self, text: str) -> str:
        if not self.buf:
            self.held_since = self._clock()
        base = len(self.buf)
        self.buf += text
        low: list[str] = []
        raw: list[str] = []
        for j, c in enumerate(text):
            if c.isalnum():
                raw.append(c)
                low.append(c)
                self._pos.append(base + j)
        if raw:
            self._raw += "".join(raw)
            self._low += _lower("".join(low))
        return self._decide(final=False)

    def expire(self) -> str:
        """Held for `HOLD_S`: a repeat still in progress is dropped as it comes; anything else goes out now."""
        if self._cut is None and self._low and self._reading():
            self._committed = True
            return ""
        return self._decide(final=True)

    def flush(self) -> str:
        return self._decide(final=True)

    # -- deciding ----------------------------------------------------------------------------------------------
    def _partial(self) -> _Partial:
        if self._p is None:
            self._p = _Partial(self.partial)
        return self._p

    def _decide(self, final: bool) -> str:
        forced = final or len(self.buf) > self.limit
        if self._cut is not None:
            return self._join(forced)
        n = len(self._low)
        p = self._partial()
        if n == 0 or not p.low:
            return self._release() if forced or (n and not p.low) else ""
        if self._live is None:
            if n < min(3, len(p.low)) and not forced:
                return ""
            # Start from every word that begins like the continuation, so the narrowing sees how far each reads.
            self._live = p.candidates(self._low[:3])
        self._narrow(p)
        size = len(p.low)
        complete = [i for i in self._live if i + n >= size and self._trims(i)]
        growing = [i for i in self._live if i + n < size]
        if complete and (forced or not any(g < complete[0] for g in growing)):
            return self._trim(complete[0])
        if growing and not forced:
            return ""
        if growing and final and self._significant(growing[0], n):
            # The continuation ended while still repeating the partial: nothing of it is new.
            self.done, self.buf = True, ""
            return ""
        if growing and self._significant(growing[0], n) and n > self._best[1]:
            self._best = (growing[0], n)
        if self._significant(*self._best):
            return self._diverge(*self._best)
        if self._committed:
            self.done, self.buf = True, ""
            return ""
        return self._release()

    def _narrow(self, p: _Partial) -> None:
        """Drop the readings the new characters broke, remembering the longest one."""
        probe, low, n = self._low, p.low, len(self._low)
        alive: list[int] = []
        for i in self._live or ():
            seen = low[i : i + n]
            if probe.startswith(seen):
                alive.append(i)
                continue
            m = 0
            for a, b in zip(seen, probe, strict=False):
                if a != b:
                    break
                m += 1
            if m > self._best[1] or (m == self._best[1] and i < self._best[0]):
                self._best = (i, m)
        self._live = alive

    def _reading(self) -> bool:
        """Whether the continuation still reads as the partial from a word that makes it a likely repeat."""
        p = self._partial()
        if self._live is None:
            self._live = p.candidates(self._low[:3])
            self._narrow(p)
        n = len(self._low)
        return any(i + n < len(p.low) and self._significant(i, n) for i in self._live)

    def _exact(self, i: int, length: int) -> bool:
        p = self._partial()
        return p.raw[i : i + length] == self._raw[:length]

    def _trims(self, i: int) -> bool:
        """Whether a repeat of the partial from `i` to its end is long enough to be cut."""
        length = len(self._partial().low) - i
        if i > 0 and length < MIN_REPEAT:
            return False
        return self._exact(i, length) or length >= FUZZY_MIN

    def _significant(self, i: int, m: int) -> bool:
        """Whether sharing `m` characters from word `i` with the partial makes the continuation a rewrite of it."""
        p = self._partial()
        c = p.cut_back(i + m)
        glued = not self._tail and self.buf[:1].isalnum()
        words, chars = RESTART_MIN if i == 0 or glued else DIVERGE_MIN
        if c - i < chars or p.words_between(i, c) < words:
            return False
        return self._exact(i, c - i) or c - i >= FUZZY_MIN

    # -- outcomes ----------------------------------------------------------------------------------------------
    def _trim(self, i: int) -> str:
        repeated = len(self._partial().low) - i
        self._cut = self._pos[repeated - 1] + 1
        self.held_since = self._clock()
        return self._join(len(self.buf) > self.limit)

    def _join(self, forced: bool) -> str:
        """After a repeat: wait for the continuation's next word, then join the punctuation in between."""
        assert self._cut is not None
        rest = self.buf[self._cut :]
        k = next((j for j, c in enumerate(rest) if c.isalnum()), -1)
        if k < 0 and not forced:
            return ""
        if k < 0:
            k = len(rest)
        return self._finish(seam_join(self._tail, rest[:k]) + rest[k:])

    def _release(self) -> str:
        buf = self.buf
        k = next((j for j, c in enumerate(buf) if c.isalnum()), len(buf))
        return self._finish(seam_join(self._tail, buf[:k]) + buf[k:])

    def _diverge(self, i: int, m: int) -> str:
        p = self._partial()
        c = p.cut_back(i + m)
        keep = p.origin(c - 1) + 1
        self.reset = SeamReset(
            keep, len(self.partial) - keep, "continuation_restarted" if i == 0 else "continuation_diverged"
        )
        return self._finish(self.buf[self._pos[c - i - 1] + 1 :])

    def _finish(self, out: str) -> str:
        self.done, self.buf = True, ""
        return out
