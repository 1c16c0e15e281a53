"""One way from a stream (or any source of batches) to a client, for every face.

A face is an encoder (what it sends for a batch of events, for a follow that cannot go on, and at the end) and a
channel (how that reaches the client, and what runs beside it: a heartbeat, a disconnect listener). `follow`
owns the rest, once for all of them:

- the cursor: `source.check()` first, so a cursor whose events are gone is refused before anything is sent;
- holding the stream while it is followed (`source.open()`: a local stream is not abandoned meanwhile, a remote
  one is watched), and letting go after;
- the end: the log ends (`encoder.end()`), or the follow cannot go on (a `GatewayError` from the log:
  `encoder.failed()`), or the client goes away (a channel watcher returns, or `send` raises `ChannelClosed`):
  then `on_disconnect` says whether the stream goes on for the resume window ("detach") or stops ("cancel").

The per-token path is `encoder.events(batch)` then `channel.send(out)`: no validation, no parsing, no task
switch beyond the one the log's wake-up already costs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal, Protocol, TypeVar

from sessions.errors import GatewayError
from sessions.follow import FollowedStream
from sessions.log import LogEntry

OnDisconnect = Literal["detach", "cancel"]
Watcher = Callable[[], Awaitable[None]]

Item = TypeVar("Item")
Item_co = TypeVar("Item_co", covariant=True)
Item_contra = TypeVar("Item_contra", contravariant=True)
Out = TypeVar("Out")
Out_co = TypeVar("Out_co", covariant=True)
Out_contra = TypeVar("Out_contra", contravariant=True)


class ChannelClosed(Exception):
    """The client went away while something was being sent to it."""


class Source(Protocol[Item_co]):
    async def check(self) -> None:
        """Raise a GatewayError if the follow cannot even begin (a cursor whose events are gone)."""
        ...

    def open(self) -> AbstractAsyncContextManager[AsyncIterator[Sequence[Item_co]]]:
        """Held while the client follows; yields the batches to send."""
        ...

    async def stop(self) -> None:
        """Stop what is being followed (the partial output is billed)."""
        ...


class FaceEncoder(Protocol[Item_contra, Out_co]):
    def events(self, batch: Sequence[Item_contra]) -> Out_co | None:
        """What to send for a batch of events (None: nothing now)."""
        ...

    def failed(self, error: GatewayError) -> Out_co | None:
        """What to send when the follow cannot go on (the events are gone, the stream's owner is lost)."""
        ...

    def end(self) -> Out_co | None:
        """What to send last, after the last batch (or after `failed`)."""
        ...


class Channel(Protocol[Out_contra]):
    async def refuse(self, error: GatewayError) -> None:
        """Answer with the error instead of following."""
        ...

    async def begin(self) -> None: ...

    async def send(self, out: Out_contra) -> None:
        """Raises ChannelClosed when the client is gone."""
        ...

    def watchers(self) -> Sequence[Watcher]:
        """Run beside the forwarding; the follow ends when one of them returns (the client went away)."""
        ...

    async def finish(self, completed: bool) -> None:
        """After the follow; `completed` is False when the client went away first."""
        ...


async def follow(
    source: Source[Item],
    encoder: FaceEncoder[Item, Out],
    channel: Channel[Out],
    *,
    on_disconnect: OnDisconnect = "detach",
    until: Sequence[Watcher] = (),
) -> bool:
    """Follow `source` to the client until it ends, the follow fails, or the client goes away (or one of
    `until` returns). True when everything up to the end was handed to the channel."""
    try:
        await source.check()
    except GatewayError as err:
        await channel.refuse(err)
        return False
    async with source.open() as batches:
        await channel.begin()

        async def forward() -> None:
            events, send = encoder.events, channel.send
            try:
                async for batch in batches:
                    out = events(batch)
                    if out is not None:
                        await send(out)
            except GatewayError as err:
                out = encoder.failed(err)
                if out is not None:
                    await send(out)
            out = encoder.end()
            if out is not None:
                await send(out)

        completed = await run_until_first(forward, *channel.watchers(), *until)
        if not completed and on_disconnect == "cancel":
            with contextlib.suppress(GatewayError):
                await source.stop()
    await channel.finish(completed)
    return completed


async def run_until_first(first: Watcher, *others: Watcher) -> bool:
    """Run the coroutines until one ends, then stop the rest; True when `first` finished on its own (not
    cancelled, not failed). Alone, `first` runs in the calling task."""
    if not others:
        try:
            await first()
        except ChannelClosed:
            return False
        return True
    tasks = [asyncio.ensure_future(w()) for w in (first, *others)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return tasks[0] in done and not tasks[0].cancelled() and tasks[0].exception() is None
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, ChannelClosed, OSError):
                await t


class StreamSource:
    """A stream (here or on another instance) from a cursor: the source every stream face follows."""

    __slots__ = ("after_seq", "stream")

    def __init__(self, stream: FollowedStream, after_seq: int = 0) -> None:
        self.stream = stream
        self.after_seq = after_seq

    async def check(self) -> None:
        await self.stream.log.check_cursor(self.after_seq)

    def open(self) -> AbstractAsyncContextManager[AsyncIterator[Sequence[LogEntry]]]:
        return self._open()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[AsyncIterator[Sequence[LogEntry]]]:
        async with self.stream.following():
            yield self.stream.log.follow(self.after_seq)

    async def stop(self) -> None:
        await self.stream.stop()
