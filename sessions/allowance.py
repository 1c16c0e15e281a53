"""One user's spend cap shared by all their streams running in this process.

A stream starts with what the budget guard says is left (`remaining`, which counts every stream that has
finished). While it runs it must also count its siblings: what they are spending right now and what those
that finished since it started have cost. Without this, N parallel streams could each spend the whole
remainder.
"""

from __future__ import annotations

from decimal import Decimal


class Allowance:
    __slots__ = ("finished_usd", "running", "streams")

    def __init__(self) -> None:
        self.running: dict[str, Decimal] = {}  # stream id -> its running cost (updated every few tokens)
        self.finished_usd = Decimal(0)  # total cost of the user's streams that finished here (only grows)
        self.streams = 0  # live streams holding this allowance


class Share:
    """A stream's view of its user's allowance: the cap it started with and what its siblings spend."""

    __slots__ = ("_allowance", "_finished_at_start", "remaining_usd")

    def __init__(self, allowance: Allowance, remaining_usd: Decimal) -> None:
        self._allowance = allowance
        self.remaining_usd = remaining_usd
        # Taken together with `remaining_usd`: streams that finish later are not in it and count below.
        self._finished_at_start = allowance.finished_usd

    def over(self, stream_id: str, running_usd: Decimal) -> bool:
        """Record this stream's running cost; True when the user's streams together reached the cap."""
        a = self._allowance
        a.running[stream_id] = running_usd
        spent = sum(a.running.values(), a.finished_usd - self._finished_at_start)
        return spent >= self.remaining_usd

    def finished(self, stream_id: str, cost_usd: Decimal) -> None:
        a = self._allowance
        a.running.pop(stream_id, None)
        a.finished_usd += cost_usd


class Allowances:
    """The per-user allowances of one process; an allowance lives while one of its user's streams does."""

    def __init__(self) -> None:
        self._by_user: dict[str, Allowance] = {}

    def share(self, user_id: str, remaining_usd: Decimal) -> Share:
        """Call in the same step as reading `remaining_usd` (no await between), so no finish falls between."""
        a = self._by_user.get(user_id)
        if a is None:
            a = self._by_user[user_id] = Allowance()
        a.streams += 1
        return Share(a, remaining_usd)

    def release(self, user_id: str) -> None:
        a = self._by_user.get(user_id)
        if a is None:
            return
        a.streams -= 1
        if a.streams <= 0:
            del self._by_user[user_id]

    def __len__(self) -> int:
        return len(self._by_user)
