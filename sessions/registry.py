"""The streams of this process by id: running ones, and finished ones kept for the resume window.

Made before the session manager and everything that needs to reach a stream by id (a stop that another
instance forwards, the metrics), so each gets it in its constructor.
"""

from __future__ import annotations

import logging

from sessions.stream import StreamSession

log = logging.getLogger("gateway.sessions")


class StreamRegistry:
    def __init__(self) -> None:
        self._by_id: dict[str, StreamSession] = {}

    def add(self, session: StreamSession) -> None:
        self._by_id[session.id] = session

    def get(self, stream_id: str) -> StreamSession | None:
        return self._by_id.get(stream_id)

    def remove(self, stream_id: str) -> None:
        self._by_id.pop(stream_id, None)

    def all(self) -> list[StreamSession]:
        return list(self._by_id.values())

    def live(self) -> list[StreamSession]:
        return [s for s in self._by_id.values() if not s.finished]

    def live_count(self, user_id: str | None = None) -> int:
        return sum(1 for s in self._by_id.values() if not s.finished and (user_id is None or s.user_id == user_id))

    def cancel_local(self, stream_id: str, user_id: str) -> bool:
        """Stop a stream of this instance for its user (a stop sent to another instance lands here)."""
        s = self._by_id.get(stream_id)
        if s is None or s.user_id != user_id or not s.cancel("client"):
            return False
        log.info("stream stopped from another instance", extra={"stream_id": stream_id, "user_id": user_id})
        return True
