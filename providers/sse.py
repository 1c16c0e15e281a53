"""A lean server-sent-events reader for provider streams.

The SDKs make the request (auth, base URL, status errors); on the hot path we read the body ourselves:
split on blank lines and hand back each event's `data`, with no per-chunk model objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
    """(event name, data) for each event; the name is b"" when the stream does not name events."""
    buf = b""
    async for chunk in chunks:
        buf = buf + chunk if buf else chunk
        if b"\r" in buf:  # CRLF streams (Gemini's live API) read the same as LF ones
            buf = buf.replace(b"\r\n", b"\n")
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            if block.startswith(b"data: ") and b"\n" not in block:
                yield b"", block[6:]  # the common case: one data line, no event name
                continue
            name, data = b"", []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    name = line[6:].strip()
            if data:
                yield name, b"\n".join(data)
        buf = buf[start:] if start else buf
