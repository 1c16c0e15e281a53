"""A lean server-sent-events reader for provider streams.

The SDKs make the request (auth, base URL, status errors); on the hot path we read the body ourselves:
split on blank lines and hand back each event's `data`, with no per-chunk model objects. On the SDKs' aiohttp
transport the body is read from aiohttp's own stream reader, beneath the four async iterators (httpx2's
response, its timing wrapper, the SDK's transport stream, aiohttp's chunk iterator) each chunk would otherwise
pass through.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import orjson

from providers import errors
from providers.upstream import transport_error

Read = Callable[[], Awaitable[bytes]]  # the next chunk of the body; b"" at its end


def _aiohttp_read(response: httpx2.Response) -> Read | None:
    """aiohttp's own read of the body, when the SDK's aiohttp transport made `response` (else None)."""
    inner = getattr(response.stream, "_stream", None)  # httpx2's BoundAsyncStream around the transport's
    raw = getattr(inner, "_aiohttp_response", None)
    read = getattr(getattr(raw, "content", None), "readany", None)
    return read if callable(read) else None


def _httpx_read(response: httpx2.Response) -> Read:
    chunks = response.aiter_raw()

    async def read() -> bytes:
        try:
            return await anext(chunks)
        except StopAsyncIteration:
            return b""

    return read


def _aiohttp_errors() -> tuple[type[BaseException], ...]:
    aiohttp = sys.modules.get("aiohttp")  # loaded by the transport that made the response
    return (aiohttp.ClientError,) if aiohttp is not None else ()


def _block(block: bytes) -> tuple[bytes, bytes] | None:
    """One event of several lines as (event name, data); None when it has no data. The name is b"" when the
    stream does not name events."""
    name, data = b"", []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].strip()
    return (name, b"\n".join(data)) if data else None


class SDKEventStream:
    """The body of a streaming request the SDK sent, read as SSE events of JSON, failures mapped by the adapter.

    Shared by the adapters that let the SDK send the request (auth, base URL, error statuses) and read the
    body themselves. `aclose()` closes the upstream response at once.
    """

    def __init__(
        self,
        response: httpx2.Response,
        failures: tuple[type[BaseException], ...],
        map_error: Callable[[BaseException], errors.ProviderError],
        provider: str,
        model: str,
    ) -> None:
        self.response = response
        self._failures = failures
        self._map_error = map_error
        self._provider = provider
        self._model = model

    async def __aiter__(self) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        """One generator for the read, the split and the parse: on the per-token path, each layer of async
        iteration costs about as much as the work it wraps."""
        loads = orjson.loads
        read = _aiohttp_read(self.response)
        # Read from aiohttp itself, its failures arrive unmapped by the transport: a cut body, a reset.
        raw_failures = _aiohttp_errors() if read is not None else ()
        if read is None:
            read = _httpx_read(self.response)
        buf = b""
        try:
            while chunk := await read():
                buf = buf + chunk if buf else chunk
                if b"\r" in buf:  # CRLF streams (Gemini's live API) read the same as LF ones
                    buf = buf.replace(b"\r\n", b"\n")
                start = 0
                # Each event goes on as soon as it is found: a burst's first token does not wait for the rest.
                while (end := buf.find(b"\n\n", start)) >= 0:
                    block = buf[start:end]
                    start = end + 2
                    if block.startswith(b"data: ") and b"\n" not in block:
                        data = block[6:]  # the common case: one data line, no event name
                        if data != b"[DONE]":  # skipped, read to the end: the connection goes back to the pool
                            yield b"", loads(data)
                    elif (ev := _block(block)) is not None and ev[1] != b"[DONE]":
                        yield ev[0], loads(ev[1])
                buf = buf[start:] if start else buf
        except orjson.JSONDecodeError as exc:
            raise errors.ServerError(
                "upstream sent a malformed event", provider=self._provider, model=self._model
            ) from exc
        except raw_failures as exc:
            raise transport_error(exc, provider=self._provider, model=self._model) from exc
        except self._failures as exc:
            raise self._map_error(exc) from exc

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_sdk_stream(
    send: Callable[[], Awaitable[httpx2.Response]],
    failures: tuple[type[BaseException], ...],
    map_error: Callable[[BaseException], errors.ProviderError],
    *,
    provider: str,
    model: str,
) -> SDKEventStream:
    """Send the request through the SDK; its error statuses and transport failures come out mapped."""
    try:
        response = await send()
    except failures as exc:
        raise map_error(exc) from exc
    return SDKEventStream(response, failures, map_error, provider, model)
