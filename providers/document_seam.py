"""The seam of a structured (JSON) answer: the next model answers the original request from its start, so its
document is compared with the partial one character for character.

What it repeats of the partial is dropped (the client holds it already); where it first differs, the client is
told to keep what both documents share and drop the rest (`SeamReset`), and the new document goes on from there.
Nothing is ever held back: a repeat is known as one the moment it arrives. Same interface as `SeamAligner`.
"""

from __future__ import annotations

from providers.seam import SeamReset


class DocumentAligner:
    __slots__ = ("_pos", "done", "held_since", "partial", "reset")

    def __init__(self, partial: str) -> None:
        self.partial = partial
        self._pos = 0  # how much of the partial the new document has repeated
        self.done = False
        self.held_since = 0.0
        self.reset: SeamReset | None = None

    @property
    def holding(self) -> bool:
        return False

    def feed(self, text: str) -> str:
        if self.done:
            return text
        p, pos = self.partial, self._pos
        k = 0
        n = min(len(text), len(p) - pos)
        while k < n and text[k] == p[pos + k]:
            k += 1
        self._pos = pos + k
        if k == len(text) and self._pos < len(p):
            return ""  # all of it a repeat so far
        self.done = True
        if self._pos < len(p):
            self.reset = SeamReset(self._pos, len(p) - self._pos, "continuation_restarted")
        return text[k:]

    def expire(self) -> str:
        return ""

    def flush(self) -> str:
        """The new document ended (or a tool call began) while still repeating the partial: it was shorter."""
        if not self.done:
            self.done = True
            if self._pos < len(self.partial):
                self.reset = SeamReset(self._pos, len(self.partial) - self._pos, "continuation_restarted")
        return ""
