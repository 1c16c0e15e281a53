"""Opens, finds, cancels and drains stream sessions; enforces per-user stream limits."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from providers.base import ChatRequest
from providers.catalog import Catalog, ModelSpec, UnknownModel
from providers.router import MidstreamPolicy, Router
from sessions.log import EventLog, MemoryEventLog
from sessions.ports import BudgetGuard, KeyDirectory, LedgerSink, NoBudget, NullSpend, SpendPublisher
from sessions.stream import StreamSession

log = logging.getLogger("gateway.sessions")


class SessionError(Exception):
    """A stream could not be started or found. `code` is stable and documented."""

    def __init__(self, code: str, message: str, *, status: int = 400, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable


@dataclass(slots=True, frozen=True)
class StartParams:
    client_id: str | None
    model: str
    fallbacks: tuple[str, ...] | None
    request: ChatRequest
    policy: MidstreamPolicy = "continue"


@dataclass(slots=True, frozen=True)
class Limits:
    max_concurrent_streams: int = 8
    starts_per_minute: int = 60
    resume_window_s: float = 60.0
    log_max_events: int = 10_000
    log_max_bytes: int = 4 * 1024 * 1024


def new_stream_id() -> str:
    return "st_" + secrets.token_urlsafe(12)


class SessionManager:
    def __init__(
        self,
        *,
        router: Router,
        catalog: Catalog,
        keys: KeyDirectory,
        ledger: LedgerSink,
        spend: SpendPublisher | None = None,
        budget: BudgetGuard | None = None,
        limits: Limits = Limits(),
        log_factory: Callable[[str], EventLog] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.catalog = catalog
        self.keys = keys
        self.ledger = ledger
        self.spend = spend or NullSpend()
        self.budget = budget or NoBudget()
        self.limits = limits
        self._log_factory = log_factory or (lambda _sid: MemoryEventLog(limits.log_max_events, limits.log_max_bytes))
        self._clock = clock
        self._sessions: dict[str, StreamSession] = {}
        self._live_by_user: dict[str, int] = defaultdict(int)
        self._starts: dict[str, deque[float]] = defaultdict(deque)
        self._reapers: dict[str, asyncio.TimerHandle] = {}
        self.draining = False

    # -- starting -------------------------------------------------------------

    def resolve_chain(self, model: str, fallbacks: Sequence[str] | None) -> list[ModelSpec]:
        try:
            first = self.catalog.resolve(model)
            rest = fallbacks if fallbacks is not None else first.fallbacks
            chain = [first, *(self.catalog.resolve(m) for m in rest)]
        except UnknownModel as exc:
            raise SessionError("unknown_model", f"unknown model {exc.args[0]!r}", status=404) from None
        return list({m.id: m for m in chain}.values())  # drop repeats, keep order

    async def start(self, user_id: str, params: StartParams) -> StreamSession:
        if self.draining:
            raise SessionError("draining", "the server is restarting; reconnect shortly", status=503, retryable=True)
        chain = self.resolve_chain(params.model, params.fallbacks)
        resolver = await self.keys.resolver_for(user_id)
        usable = [m for m in chain if await resolver.credential(m.provider) is not None]
        if not usable:
            raise SessionError(
                "no_key",
                f"no usable key for {chain[0].provider!r}: store one with PUT /v1/keys/{chain[0].provider}",
                status=403,
            )
        if usable[0].id != chain[0].id and chain[0].provider not in {m.provider for m in usable}:
            log.info("chain shortened", extra={"user_id": user_id, "model": chain[0].id, "using": usable[0].id})
        self._check_rate(user_id)
        if self._live_by_user[user_id] >= self.limits.max_concurrent_streams:
            raise SessionError(
                "too_many_streams",
                f"at most {self.limits.max_concurrent_streams} concurrent streams",
                status=429,
                retryable=True,
            )
        remaining = await self.budget.remaining_usd(user_id)
        if remaining is not None and remaining <= 0:
            raise SessionError("budget_exceeded", "your spend cap is reached", status=402)
        sid = new_stream_id()
        session = StreamSession(
            stream_id=sid,
            user_id=user_id,
            client_id=params.client_id,
            request=params.request,
            chain=usable,
            policy=params.policy,
            router=self.router,
            keys=resolver,
            log=self._log_factory(sid),
            ledger=self.ledger,
            spend=self.spend,
            budget_usd=remaining,
            on_end=self._ended,
        )
        self._sessions[sid] = session
        self._live_by_user[user_id] += 1
        session.start()
        log.info(
            "stream start",
            extra={"stream_id": sid, "user_id": user_id, "model": usable[0].id, "provider": usable[0].provider},
        )
        return session

    def _check_rate(self, user_id: str) -> None:
        now = self._clock()
        q = self._starts[user_id]
        while q and q[0] <= now - 60:
            q.popleft()
        if len(q) >= self.limits.starts_per_minute:
            raise SessionError(
                "rate_limited", f"at most {self.limits.starts_per_minute} streams a minute", status=429, retryable=True
            )
        q.append(now)

    # -- finding and attaching --------------------------------------------------

    def get(self, stream_id: str, user_id: str) -> StreamSession:
        s = self._sessions.get(stream_id)
        # Another user's stream looks exactly like a missing one.
        if s is None or s.user_id != user_id:
            raise SessionError("stream_not_found", "no such stream", status=404)
        return s

    def attach(self, session: StreamSession) -> None:
        session.subscribers += 1
        timer = self._reapers.pop(session.id, None)
        if timer is not None:
            timer.cancel()

    def detach(self, session: StreamSession) -> None:
        """A subscriber went away. With nobody left, keep generating for the resume window, then stop."""
        session.subscribers -= 1
        if session.subscribers > 0 or session.finished:
            return
        window = self.limits.resume_window_s
        if window <= 0:
            session.cancel("disconnect")
            return
        loop = asyncio.get_running_loop()
        self._reapers[session.id] = loop.call_later(window, self._abandon, session)

    def _abandon(self, session: StreamSession) -> None:
        self._reapers.pop(session.id, None)
        if session.subscribers == 0:
            session.cancel("disconnect")

    def _ended(self, session: StreamSession) -> None:
        self._live_by_user[session.user_id] -= 1
        if self._live_by_user[session.user_id] <= 0:
            del self._live_by_user[session.user_id]
        # Keep the finished log around for the resume window so a dropped client can fetch the tail.
        loop = asyncio.get_running_loop()
        timer = self._reapers.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        self._reapers[session.id] = loop.call_later(max(self.limits.resume_window_s, 1.0), self._forget, session.id)

    def _forget(self, stream_id: str) -> None:
        self._reapers.pop(stream_id, None)
        self._sessions.pop(stream_id, None)

    def live_count(self, user_id: str | None = None) -> int:
        if user_id is None:
            return sum(self._live_by_user.values())
        return self._live_by_user.get(user_id, 0)

    def live_sessions(self) -> list[StreamSession]:
        return [s for s in self._sessions.values() if not s.finished]

    # -- shutdown ---------------------------------------------------------------

    async def drain(self, deadline_s: float) -> None:
        """Refuse new streams, let running ones finish until the deadline, then tell the rest to reconnect."""
        self.draining = True
        live = self.live_sessions()
        if live:
            await asyncio.wait([asyncio.ensure_future(s.wait()) for s in live], timeout=deadline_s)
        for s in self.live_sessions():
            s.emit("server.draining", {"reconnect_after_ms": 1000, "message": "the server is restarting"})
            s.cancel("drain")
        tasks = [s.task for s in self._sessions.values() if s.task is not None and not s.task.done()]
        if tasks:
            await asyncio.wait(tasks)
        for timer in self._reapers.values():
            timer.cancel()
        self._reapers.clear()
