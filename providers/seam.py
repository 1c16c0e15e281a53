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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
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
        matches = list(_WORD.finditer(text))
        raw = [m.group() for m in matches]
        self.offsets = [m.start() for m in matches]  # where each word starts in the text
        self.starts = [0, *accumulate(len(w) for w in raw)][: len(raw)]  # each word's first normalized index
        self.raw = "".join(raw)
        self.low = _lower(self.raw)
        self.word_set = set(self.starts)

    def origin(self, i: int) -> int:
        """The index in the text of normalized character `i`."""
        w = bisect.bisect_right(self.starts, i) - 1
        return self.offsets[w] + (i - self.starts[w])

    def occurrences(self, probe: str, after: int) -> Iterator[int]:
        """Word starts past `after` where the partial reads as `probe` with room to spare, in order (C-speed hops)."""
        low, i = self.low, self.low.find(probe, after + 1)
        while 0 <= i < len(low) - len(probe):
            if i in self.word_set:
                yield i
            i = low.find(probe, i + 1)

    def ends_like(self, probe: str) -> Iterator[int]:
        """Word starts from which the rest of the partial is the beginning of `probe` (it reaches the partial's end)."""
        low = self.low
        first = bisect.bisect_left(self.starts, max(0, len(low) - len(probe)))
        for i in self.starts[first:]:
            if low[i : i + 8] == probe[: min(8, len(low) - i)] and probe.startswith(low[i:]):
                yield i

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

    Only the earliest word of the partial the continuation still reads as is followed, a few characters per token;
    the others are looked up (by substring search) when it breaks off, so a long or repetitive partial costs little.
    """

    __slots__ = (
        "_best",
        "_checked",
        "_clock",
        "_committed",
        "_complete",
        "_cut",
        "_fresh",
        "_i0",
        "_low",
        "_lows",
        "_n",
        "_p",
        "_pieces",
        "_raws",
        "_size",
        "_started",
        "_tail",
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
        self._pieces: list[str] = []  # the continuation so far, none of it sent yet
        self._size = 0
        self._lows: list[str] = []  # its letters and digits, lowercased, as they came
        self._raws: list[str] = []
        self._n = 0  # how many of those
        self._fresh = 0  # the first of `_lows` not yet checked against the partial
        self._low = ""  # `_lows` joined, when last needed
        self._started = False
        self._i0: int | None = None  # the earliest word of the partial the continuation still reads as
        self._checked = 0  # how much of the continuation `_i0` was checked against
        self._complete: int | None = None  # the earliest word from which it repeated the partial to its end
        self._best = (0, 0)  # (start, length) of the longest reading that broke off
        self._cut: int | None = None  # after a repeat: where in the continuation the new text begins
        self._committed = False
        self.done = False
        self.held_since = 0.0
        self.reset: SeamReset | None = None

    @property
    def holding(self) -> bool:
        return not self.done and self._size > 0 and not (self._committed and self._cut is None)

    @property
    def buf(self) -> str:
        return "".join(self._pieces)

    def feed(self, text: str) -> str:
        if not self._size:
            self.held_since = self._clock()
        self._pieces.append(text)
        self._size += len(text)
        joined = "".join(_WORD.findall(text))
        if joined:
            self._raws.append(joined)
            self._lows.append(_lower(joined))
            self._n += len(joined)
        return self._decide(final=False)

    def expire(self) -> str:
        """Held for `HOLD_S`: a repeat still in progress is dropped as it comes; anything else goes out now."""
        if self._cut is None and self._i0 is not None and self._significant(self._i0, self._n):
            self._committed = True
            return ""
        return self._decide(final=True)

    def flush(self) -> str:
        return self._decide(final=True)

    # -- following the continuation ----------------------------------------------------------------------------
    def _partial(self) -> _Partial:
        if self._p is None:
            self._p = _Partial(self.partial)
        return self._p

    def _probe(self) -> str:
        """The continuation's letters and digits so far, joined (only where a decision needs them all)."""
        if len(self._low) != self._n:
            self._low = "".join(self._lows)
        return self._low

    def _follow(self, p: _Partial) -> None:
        """Check the earliest reading against the new characters; when it breaks off, find the next one."""
        if not self._started:
            # Start from the words that begin like it, then read on as if the rest had just come.
            self._started = True
            head = self._probe()[:3]
            self._checked = len(head)
            self._i0 = next(p.occurrences(head, -1), None)
            new = self._probe()[self._checked :]
        else:
            new = "".join(self._lows[self._fresh :])
        self._fresh = len(self._lows)
        prev, n, size = self._checked, self._checked + len(new), len(p.low)
        self._checked = n
        i = self._i0
        if i is None:
            return
        seen = p.low[i + prev : i + n]
        if new.startswith(seen):
            if i + n >= size:  # it read as the partial to its end: the earliest complete repeat
                self._i0, self._complete = None, i if self._trims(i) else self._complete
            return
        self._note(i, prev + _common(seen, new))
        # The next earliest among the readings still alive before these characters came.
        self._i0 = None
        probe = self._probe()
        for j in p.occurrences(probe[:prev], i):
            seen = p.low[j + prev : j + n]
            if not probe.startswith(seen, prev):
                self._note(j, prev + _common(seen, probe[prev:]))
            elif j + n < size:
                self._i0 = j
                return

    def _note(self, i: int, m: int) -> None:
        if m > self._best[1]:
            self._best = (i, m)

    def _decide(self, final: bool) -> str:
        forced = final or self._size > self.limit
        if self._cut is not None:
            return self._join(forced)
        p = self._partial()
        n = self._n
        if n == 0 or not p.low:
            return self._release() if forced or (n and not p.low) else ""
        if not self._started and n < min(3, len(p.low)) and not forced:
            return ""
        self._follow(p)
        i0 = self._i0
        if i0 is not None and not forced:
            return ""  # still reads as the partial: may be a repeat
        complete = self._complete if self._complete is not None else self._first_complete(p, self._probe())
        if complete is not None:
            return self._trim(complete)
        if i0 is not None and self._significant(i0, n):
            if final:  # it ended while still repeating the partial: nothing of it is new
                return self._finish("")
            self._note(i0, n)
        if self._significant(*self._best):
            return self._diverge(*self._best)
        if self._committed:
            return self._finish("")
        return self._release()

    def _first_complete(self, p: _Partial, probe: str) -> int | None:
        return next((i for i in p.ends_like(probe) if self._trims(i)), None)

    def _exact(self, i: int, length: int) -> bool:
        return self._partial().raw[i : i + length] == "".join(self._raws)[:length]

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
        glued = not self._tail and self._pieces[:1] != [] and self._pieces[0][:1].isalnum()
        words, chars = RESTART_MIN if i == 0 or glued else DIVERGE_MIN
        if c - i < chars or p.words_between(i, c) < words:
            return False
        return self._exact(i, c - i) or c - i >= FUZZY_MIN

    # -- outcomes ----------------------------------------------------------------------------------------------
    def _trim(self, i: int) -> str:
        repeated = len(self._partial().low) - i
        self._cut = self._after(repeated)
        self.held_since = self._clock()
        return self._join(self._size > self.limit)

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
        return self._finish(self.buf[self._after(c - i) :])

    def _after(self, k: int) -> int:
        """Where in the continuation its `k`-th letter or digit ends."""
        seen = 0
        for m in _WORD.finditer(self.buf):
            if seen + len(m.group()) >= k:
                return m.start() + (k - seen)
            seen += len(m.group())
        return self._size

    def _finish(self, out: str) -> str:
        self.done = True
        self._pieces, self._size = [], 0
        return out


def _common(a: str, b: str) -> int:
    """The length of the common beginning of `a` and `b`."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
