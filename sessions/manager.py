"""Opens, finds, cancels and drains stream sessions; enforces per-user stream limits."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from providers.base import ChatRequest
from providers.catalog import Catalog, ModelSpec, UnknownModel
from providers.router import MidstreamPolicy, RefusalPolicy, Router
from providers.segments import KeyResolver
from sessions.allowance import Allowances
from sessions.errors import GatewayError, fail, stream_not_found
from sessions.events import Draining
from sessions.fit import ParamPolicy, fit
from sessions.follow import FollowedStream, LocalStream, RemoteStreams
from sessions.limits import MemoryUserLimiter, UserLimiter
from sessions.log import EventLog, MemoryEventLog
from sessions.observer import StreamObserver, StreamStart
from sessions.ports import BudgetGuard, KeyDirectory, LedgerSink, NoBudget, NullSpend, SpendPublisher
from sessions.registry import StreamRegistry
from sessions.stream import StreamSession

log = logging.getLogger("gateway.sessions")

# How often an abandoned stream asks whether a client on another instance still follows it.
WATCH_POLL_S = 2.0

# Builds a stream's event log from its stream id, user id and client id.
LogFactory = Callable[[str, str, str | None], EventLog]


@dataclass(slots=True, frozen=True)
class StartParams:
    client_id: str | None
    model: str
    fallbacks: tuple[str, ...] | None
    request: ChatRequest
    policy: MidstreamPolicy = "continue"
    on_refusal: RefusalPolicy = "error"
    # Fit the request to the chain first (`sessions.fit`); None: send it as it is.
    fit: ParamPolicy | None = None


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
        log_factory: LogFactory | None = None,
        limiter: UserLimiter | None = None,
        remote: RemoteStreams | None = None,
        streams: StreamRegistry | None = None,
        observer: StreamObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.router = router
        self.catalog = catalog
        self.keys = keys
        self.ledger = ledger
        self.spend = spend or NullSpend()
        self.budget = budget or NoBudget()
        self.limits = limits
        self._log_factory = log_factory or (
            lambda _sid, _uid, _cid: MemoryEventLog(limits.log_max_events, limits.log_max_bytes)
        )
        self.limiter = limiter or MemoryUserLimiter(
            limits.max_concurrent_streams, limits.starts_per_minute, clock=clock
        )
        self.remote = remote
        self.streams = streams if streams is not None else StreamRegistry()
        self.observer = observer
        self._allowances = Allowances()
        self._checks: set[asyncio.Task[None]] = set()
        # A running stream nobody follows is cancelled when its abandon timer fires (the resume window);
        # a finished stream is forgotten when its forget timer fires. Two maps so one never clobbers the other.
        self._abandon: dict[str, asyncio.TimerHandle] = {}
        self._forget_at: dict[str, asyncio.TimerHandle] = {}
        self.draining = False

    # -- starting -------------------------------------------------------------

    def resolve_chain(self, model: str, fallbacks: Sequence[str] | None) -> list[ModelSpec]:
        try:
            first = self.catalog.resolve(model)
            rest = fallbacks if fallbacks is not None else first.fallbacks
            chain = [first, *(self.catalog.resolve(m) for m in rest)]
        except UnknownModel as exc:
            raise fail("unknown_model", f"unknown model {exc.args[0]!r}") from None
        return list({m.id: m for m in chain}.values())  # drop repeats, keep order

    async def _usable_chain(self, user_id: str, params: StartParams, resolver: KeyResolver) -> list[ModelSpec]:
        """The chain without the models the user has no key for."""
        chain = self.resolve_chain(params.model, params.fallbacks)
        usable = [m for m in chain if await resolver.credential(m.provider) is not None]
        if not usable:
            raise fail(
                "no_key", f"no usable key for {chain[0].provider!r}: store one with PUT /v1/keys/{chain[0].provider}"
            )
        if usable[0].id != chain[0].id and chain[0].provider not in {m.provider for m in usable}:
            log.info("chain shortened", extra={"user_id": user_id, "model": chain[0].id, "using": usable[0].id})
        return usable

    async def start(self, user_id: str, params: StartParams) -> StreamSession:
        if self.draining:
            raise fail("draining", "the server is restarting; reconnect shortly")
        resolver = await self.keys.resolver_for(user_id)
        usable = await self._usable_chain(user_id, params, resolver)
        fitted = fit(params.request, usable, params.fit) if params.fit is not None else None
        if fitted is not None:
            usable = list(fitted.chain)
        remaining = await self.budget.remaining_usd(user_id)
        if remaining is not None and remaining <= 0:
            raise fail("budget_exceeded", "your spend cap is reached")
        share = self._allowances.share(user_id, remaining) if remaining is not None else None
        try:
            await self.limiter.admit(user_id)
        except GatewayError as exc:
            if share is not None:
                self._allowances.release(user_id)
            log.info("stream refused", extra={"user_id": user_id, "code": exc.code})
            raise
        sid = new_stream_id()
        try:
            watch = None
            if self.observer is not None:
                start = StreamStart(sid, user_id, tuple(usable), params.request, params.policy)
                watch = self.observer.stream(start)
            session = StreamSession(
                stream_id=sid,
                user_id=user_id,
                client_id=params.client_id,
                request=fitted.request if fitted is not None else params.request,
                chain=usable,
                fitted=fitted,
                policy=params.policy,
                on_refusal=params.on_refusal,
                router=self.router,
                keys=resolver,
                log=self._log_factory(sid, user_id, params.client_id),
                ledger=self.ledger,
                spend=self.spend,
                budget=share,
                on_end=self._ended,
                watch=watch,
            )
        except BaseException:
            self.limiter.release(user_id)
            if share is not None:
                self._allowances.release(user_id)
            raise
        self.streams.add(session)
        session.start()
        log.info(
            "stream start",
            extra={"stream_id": sid, "user_id": user_id, "model": usable[0].id, "provider": usable[0].provider},
        )
        return session

    # -- finding and attaching --------------------------------------------------

    def get(self, stream_id: str, user_id: str) -> StreamSession:
        s = self.streams.get(stream_id)
        # Another user's stream looks exactly like a missing one.
        if s is None or s.user_id != user_id:
            raise stream_not_found()
        return s

    async def find(self, stream_id: str, user_id: str) -> FollowedStream:
        """The user's stream to follow or stop: running here, or (with several instances) on another one."""
        s = self.streams.get(stream_id)
        if s is None and self.remote is not None:
            found = await self.remote.locate(stream_id, user_id)
            if found is not None:
                return found
        if s is None or s.user_id != user_id:
            raise stream_not_found()
        return LocalStream(s, self)

    def following(self, session: StreamSession) -> LocalStream:
        """A stream just started here, as something to follow."""
        return LocalStream(session, self)

    def attach(self, session: StreamSession) -> None:
        session.subscribers += 1
        timer = self._abandon.pop(session.id, None)
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
        self._abandon[session.id] = loop.call_later(window, self._abandoned, session)

    def _abandoned(self, session: StreamSession, was_watched: bool = False) -> None:
        self._abandon.pop(session.id, None)
        if session.subscribers > 0 or session.finished:
            return
        if self.remote is None:
            self._give_up(session)
            return
        task = asyncio.get_running_loop().create_task(self._abandon_unless_watched(session, was_watched))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _abandon_unless_watched(self, session: StreamSession, was_watched: bool) -> None:
        assert self.remote is not None
        watched = await self.remote.is_watched(session.id)
        if session.subscribers > 0 or session.finished or session.id in self._abandon:
            return  # someone came back here meanwhile
        loop = asyncio.get_running_loop()
        if watched:
            self._abandon[session.id] = loop.call_later(WATCH_POLL_S, self._abandoned, session, True)
        elif was_watched:
            # The client following from elsewhere just left: a full window to come back, as for a local one.
            self._abandon[session.id] = loop.call_later(self.limits.resume_window_s, self._abandoned, session)
        else:
            self._give_up(session)

    def _give_up(self, session: StreamSession) -> None:
        if session.cancel("disconnect"):
            log.info("stream abandoned", extra={"stream_id": session.id, "user_id": session.user_id})

    def _ended(self, session: StreamSession) -> None:
        self.limiter.release(session.user_id)
        if session.budget is not None:
            self._allowances.release(session.user_id)
        timer = self._abandon.pop(session.id, None)
        if timer is not None:
            timer.cancel()
        if session.cancel_reason == "disconnect":
            # Nobody came back within the window: the stream is over for good.
            self._forget(session.id)
            return
        # Keep the finished log for the resume window so a dropped client can still fetch the tail.
        loop = asyncio.get_running_loop()
        self._forget_at[session.id] = loop.call_later(max(self.limits.resume_window_s, 1.0), self._forget, session.id)

    def _forget(self, stream_id: str) -> None:
        timer = self._forget_at.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
        self.streams.remove(stream_id)

    def live_count(self, user_id: str | None = None) -> int:
        return self.streams.live_count(user_id)

    def live_sessions(self) -> list[StreamSession]:
        return self.streams.live()

    # -- shutdown ---------------------------------------------------------------

    def begin_drain(self) -> None:
        """From now on new streams are refused (and readiness fails); running ones carry on."""
        if not self.draining:
            self.draining = True
            log.info("draining", extra={"live_streams": self.live_count()})

    async def drain(self, deadline_s: float, *, reconnect_after_ms: int = 1000) -> int:
        """Refuse new streams, let running ones finish until the deadline, then stop the rest.

        The streams still running at the deadline get `server.draining` (with a reconnect hint), are cancelled
        and billed. Returns how many were stopped that way.
        """
        self.begin_drain()
        live = self.live_sessions()
        if live and deadline_s > 0:
            await asyncio.wait([asyncio.ensure_future(s.wait()) for s in live], timeout=deadline_s)
        stopped = 0
        for s in self.live_sessions():
            if s.task is None or s.task.done():
                continue
            s.emit(Draining(reconnect_after_ms, "the server is restarting; reconnect shortly"))
            stopped += s.cancel("drain")
        tasks = [s.task for s in self.streams.all() if s.task is not None and not s.task.done()]
        if tasks:
            await asyncio.wait(tasks)
        for timer in [*self._abandon.values(), *self._forget_at.values()]:
            timer.cancel()
        self._abandon.clear()
        self._forget_at.clear()
        if stopped:
            log.info("drain stopped streams", extra={"stopped": stopped})
        return stopped
