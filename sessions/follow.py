"""What a client follows: a stream's events, however far away the stream runs.

Every face follows any `FollowedStream` the same way, through the pump (`sessions.pump`): check the cursor, hold
it while following its log, stop it.
A stream running in this process is a `LocalStream`; a stream owned by another instance is found through
`RemoteStreams` (with several instances sharing state), which also tells an owner whether a client elsewhere
is following one of its streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from sessions.log import EventLog
from sessions.stream import StreamSession


class FollowedStream(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def client_id(self) -> str | None: ...

    @property
    def log(self) -> EventLog: ...

    def following(self) -> AbstractAsyncContextManager[None]:
        """Held while a client follows: the stream is not abandoned meanwhile."""
        ...

    async def stop(self) -> bool:
        """Stop generating (the partial output is billed). False when it had already finished."""
        ...


class RemoteStreams(Protocol):
    async def locate(self, stream_id: str, user_id: str) -> FollowedStream | None:
        """The user's stream when another instance runs it (or ran it recently), else None."""
        ...

    async def is_watched(self, stream_id: str) -> bool:
        """Whether a client on another instance follows this (local) stream right now."""
        ...


class Subscriptions(Protocol):
    def attach(self, session: StreamSession) -> None: ...

    def detach(self, session: StreamSession) -> None: ...


class LocalStream:
    __slots__ = ("_subs", "session")

    def __init__(self, session: StreamSession, subscriptions: Subscriptions) -> None:
        self.session = session
        self._subs = subscriptions

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def client_id(self) -> str | None:
        return self.session.client_id

    @property
    def log(self) -> EventLog:
        return self.session.log

    def following(self) -> AbstractAsyncContextManager[None]:
        return self._following()

    @asynccontextmanager
    async def _following(self) -> AsyncIterator[None]:
        self._subs.attach(self.session)
        try:
            yield
        finally:
            self._subs.detach(self.session)

    async def stop(self) -> bool:
        return self.session.cancel("client")
