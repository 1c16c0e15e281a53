"""One loopback HTTP/1.1 server speaking the OpenAI, Anthropic and Gemini streaming APIs.

Raw asyncio rather than a web framework: faults need byte-level control (a chunked body cut without its
terminating chunk, a stall that notices the client leaving at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from tests.emulators import wire
from tests.emulators.answers import shape
from tests.emulators.refusals import refusal
from tests.emulators.script import RecordedRequest, Script, echo_of, partial_answer, split_words

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Site Overloaded",
}
_SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "api-key"}
_STALL_LIMIT_S = 600.0  # a stalled response ends by itself eventually, so a forgotten test cannot hang forever

Renderer = Callable[[Script, str, Any, bool], list[wire.Event]]


class _Disconnected(Exception):
    pass


class _Conn:
    """One TCP connection: buffered reads, so the disconnect watcher never loses request bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        self.reader = reader
        self.writer = writer
        self.number = number
        self.buf = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        data = await self.reader.read(65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def read_until(self, sep: bytes, limit: int = 1 << 20) -> bytes | None:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            if len(self.buf) > limit or not await self.fill():
                return None

    async def read_exact(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            if not await self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class Emulator:
    """Scriptable upstream. Use as ``async with Emulator() as emu:``; point SDKs at `openai_base_url` etc.

    Scripting (the adapter never knows): ``emu.script(Script(...), model="gpt-5-mini")`` queues behaviours that the
    next matching requests consume in order (a model-specific queue first, then the shared one);
    ``emu.default(Script(...))`` sets what unscripted requests get. ``emu.default(Script(...), key="sk-a")`` answers
    every request made with that API key so, before anything else (one user's key being rate limited or refused).
    Everything received is in `requests`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Script] = deque()
        self._model_queues: dict[str, deque[Script]] = {}
        self._defaults: dict[str | None, Script] = {}
        self._key_defaults: dict[str, Script] = {}
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._connections = 0
        self._changed: asyncio.Event | None = None

    # -- scripting ---------------------------------------------------------------------------------------------
    def script(self, *scripts: Script, model: str | None = None) -> None:
        queue = self._queue if model is None else self._model_queues.setdefault(model, deque())
        queue.extend(scripts)

    def default(self, script: Script | None, model: str | None = None, *, key: str | None = None) -> None:
        if key is not None:
            if script is None:
                self._key_defaults.pop(key, None)
            else:
                self._key_defaults[key] = script
        elif script is None:
            self._defaults.pop(model, None)
        else:
            self._defaults[model] = script

    def reset(self) -> None:
        self._queue.clear()
        self._model_queues.clear()
        self._defaults.clear()
        self._key_defaults.clear()
        self.requests.clear()

    def _next_script(self, model: str | None, key: str | None = None) -> Script:
        if key is not None and key in self._key_defaults:
            return self._key_defaults[key]
        if model is not None and self._model_queues.get(model):
            return self._model_queues[model].popleft()
        if self._queue:
            return self._queue.popleft()
        return self._defaults.get(model) or self._defaults.get(None) or Script()

    # -- observation -------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    @property
    def gemini_base_url(self) -> str:
        return self.url

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    @property
    def connections(self) -> int:
        """How many TCP connections clients have opened so far."""
        return self._connections

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Wait until `predicate()` holds (re-checked whenever a request starts, ends or disconnects)."""
        assert self._changed is not None, "emulator not started"
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    async def wait_disconnect(self, request: RecordedRequest | None = None, timeout: float = 2.0) -> bool:
        def seen() -> bool:
            target = request or (self.requests[-1] if self.requests else None)
            return target is not None and target.disconnected

        return await self.wait_for(seen, timeout)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> Emulator:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    # -- HTTP --------------------------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self._connections += 1
        conn = _Conn(reader, writer, self._connections)
        try:
            while await self._one_request(conn):
                pass
        except (ConnectionError, _Disconnected, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections; ending quietly keeps asyncio from logging each one.
            pass
        finally:
            self._conns.discard(task)
            writer.transport.abort()

    async def _one_request(self, conn: _Conn) -> bool:
        head = await conn.read_until(b"\r\n\r\n")
        if head is None:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raw = await self._read_chunked(conn)
        else:
            raw = await conn.read_exact(int(headers.get("content-length", "0") or 0))
        if raw is None:
            return False
        path, _, query = target.partition("?")
        path = unquote(path)
        if path.startswith("/_emulator/"):
            await self._admin(conn, method, path, raw)
            return True
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        provider, model = _route(path, body)
        key = _key_of(headers)
        rec = RecordedRequest(
            provider=provider,
            method=method,
            path=path,
            query=query,
            headers={k: v for k, v in headers.items() if k not in _SECRET_HEADERS},
            body=body,
            model=model,
            key_suffix=key[-4:] if key else None,
            connection=conn.number,
            started=asyncio.get_running_loop().time(),
        )
        self.requests.append(rec)
        self._notify()
        if provider == "unknown":
            await self._plain(conn, 404, {"error": {"message": f"no such path {path}"}})
            return True
        script = self._next_script(model, key)
        refused = refusal(provider, body, model)
        if refused is not None:
            rec.script, rec.rejected = script, refused[0]
            await self._plain(conn, 400, refused[1])
            rec.completed = True
            self._notify()
            return True
        rec.script = script = shape(provider, script, body)
        return await self._respond(conn, rec, script)

    async def _read_chunked(self, conn: _Conn) -> bytes | None:
        out = bytearray()
        while True:
            size_line = await conn.read_until(b"\r\n")
            if size_line is None:
                return None
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await conn.read_until(b"\r\n")
                return bytes(out)
            chunk = await conn.read_exact(size + 2)
            if chunk is None:
                return None
            out += chunk[:-2]

    async def _plain(self, conn: _Conn, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(data)}",
            f"request-id: {wire.REQUEST_ID}",
        ]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await conn.writer.drain()

    async def _admin(self, conn: _Conn, method: str, path: str, raw: bytes) -> None:
        """HTTP scripting for an emulator in another process (bench): POST /_emulator/script etc."""
        try:
            payload = json.loads(raw) if raw else {}
            if path == "/_emulator/script" and method == "POST":
                items = payload.get("scripts", [payload.get("script", {})])
                self.script(*(Script.from_dict(s) for s in items), model=payload.get("model"))
            elif path == "/_emulator/default" and method == "POST":
                raw_script = payload.get("script")
                self.default(None if raw_script is None else Script.from_dict(raw_script), payload.get("model"))
            elif path == "/_emulator/reset" and method == "POST":
                self.reset()
            elif path == "/_emulator/requests" and method == "GET":
                rows = [
                    {
                        "provider": r.provider,
                        "path": r.path,
                        "model": r.model,
                        "body": r.body,
                        "completed": r.completed,
                        "rejected": r.rejected,
                        "disconnected": r.disconnected,
                        "tokens_sent": r.tokens_sent,
                    }
                    for r in self.requests
                ]
                await self._plain(conn, 200, {"requests": rows})
                return
            else:
                await self._plain(conn, 404, {"error": "unknown admin path"})
                return
        except (ValueError, TypeError, AttributeError) as exc:
            await self._plain(conn, 400, {"error": str(exc)})
            return
        await self._plain(conn, 200, {"ok": True})

    async def _respond(self, conn: _Conn, rec: RecordedRequest, script: Script) -> bool:
        if script.first_delay:
            # Silence before the headers; a client that gives up meanwhile is noticed at once.
            watcher = asyncio.create_task(self._watch(conn, rec))
            try:
                await asyncio.wait({watcher}, timeout=script.first_delay)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if rec.disconnected:
                return False
        script = self._resolve(rec, script)
        if script.status is not None and script.status != 200:
            message = script.error_message or _default_message(script.status, str(script.status))
            body = _ERROR_BODIES[rec.provider](script.status, message)
            return await self._error_reply(conn, rec, script, script.status, body)
        if script.error_kind == "context_length" or (script.error_kind == "refusal" and rec.provider == "openai"):
            status, body = (
                wire.CONTEXT_LENGTH_ERRORS[rec.provider]
                if script.error_kind == "context_length"
                else wire.OPENAI_REFUSAL
            )
            return await self._error_reply(conn, rec, script, status, body)

        fault_at = next((n for n in (script.error_after, script.drop_after, script.stall_after) if n is not None), None)
        complete = not script.no_finish and fault_at is None
        if script.error_kind == "refusal" and rec.provider == "gemini":
            events = wire.gemini_blocked(script, rec.model or "")
        else:
            events = _RENDERERS[rec.provider](script, rec.model or "", rec.body, complete)
        head = [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream; charset=utf-8",
            "transfer-encoding: chunked",
            "cache-control: no-cache",
            f"request-id: {wire.REQUEST_ID}",
        ]
        conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        watcher = asyncio.create_task(self._watch(conn, rec))
        try:
            await conn.writer.drain()
            ended = await self._stream_events(conn, rec, script, events, fault_at)
        except (ConnectionError, _Disconnected):
            self._mark_disconnected(rec)
            return False
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._notify()
        return ended

    def _resolve(self, rec: RecordedRequest, script: Script) -> Script:
        """The script with what depends on the request filled in: an echoed partial answer, a refusal stop."""
        if script.echo is not None:
            echoed = echo_of(partial_answer(rec.provider, rec.body), script.echo, script.echo_loose)
            script = replace(script, text=(*split_words(echoed), *script.pieces()))
        if script.error_kind == "refusal" and rec.provider == "anthropic":
            script = replace(script, text=(), finish="content_filter")
        return script

    async def _error_reply(
        self, conn: _Conn, rec: RecordedRequest, script: Script, status: int, body: dict[str, Any]
    ) -> bool:
        extra = {}
        if script.retry_after is not None:
            extra["retry-after"] = f"{script.retry_after:g}"
        await self._plain(conn, status, body, extra)
        rec.completed = True
        self._notify()
        return True

    async def _stream_events(
        self, conn: _Conn, rec: RecordedRequest, script: Script, events: list[wire.Event], fault_at: int | None
    ) -> bool:
        """Writes the events; returns whether the connection stays usable."""
        for is_token, data in events:
            if is_token:
                if fault_at is not None and rec.tokens_sent == fault_at:
                    break
                if script.delay:
                    await asyncio.sleep(script.delay)
                rec.tokens_sent += 1
            await self._write_event(conn, rec, data, script.byte_split)
        if fault_at is not None:  # reached it, or the script had fewer tokens than that
            return await self._fault(conn, rec, script)
        conn.writer.write(b"0\r\n\r\n")
        await conn.writer.drain()
        rec.completed = True
        return True

    async def _write_event(self, conn: _Conn, rec: RecordedRequest, data: bytes, split: int | None) -> None:
        self._check(rec)
        rec.events.append(data)
        if split is None:
            conn.writer.write(b"%x\r\n%b\r\n" % (len(data), data))
            await conn.writer.drain()
            return
        for i in range(0, len(data), split):
            piece = data[i : i + split]
            conn.writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await conn.writer.drain()
            # A short pause so the pieces reach the client as separate reads.
            await asyncio.sleep(0.002)

    async def _fault(self, conn: _Conn, rec: RecordedRequest, script: Script) -> bool:
        if script.error_after is not None:
            message = script.error_message or _default_message(script.error_status, "mid-stream error")
            await self._write_event(conn, rec, _ERROR_EVENTS[rec.provider](script.error_status, message), None)
            conn.writer.write(b"0\r\n\r\n")
            await conn.writer.drain()
            rec.completed = True
            return True
        if script.drop_after is not None:
            # Chunked framing left open: the client sees the connection die mid-body, not a clean end.
            conn.writer.transport.abort()
            return False
        # Stall: hold the connection until the client gives up (the watcher cancels us).
        deadline = asyncio.get_running_loop().time() + _STALL_LIMIT_S
        while asyncio.get_running_loop().time() < deadline:
            self._check(rec)
            await asyncio.sleep(0.05)
        conn.writer.transport.abort()
        return False

    def _check(self, rec: RecordedRequest) -> None:
        if rec.disconnected:
            raise _Disconnected

    async def _watch(self, conn: _Conn, rec: RecordedRequest) -> None:
        # An HTTP/1.1 client sends nothing while a response streams: EOF here means it hung up.
        while await conn.fill():
            pass
        self._mark_disconnected(rec)
        self._notify()

    def _mark_disconnected(self, rec: RecordedRequest) -> None:
        if not rec.disconnected and not rec.completed:
            rec.disconnected = True
            rec.disconnected_at = asyncio.get_running_loop().time()
            self._notify()


def _default_message(status: int, what: str) -> str:
    if status in (503, 529):
        return "That model is currently overloaded with other requests (emulated)."
    if status == 429:
        return "Rate limit reached for requests (emulated)."
    return f"emulated {what}"


def _route(path: str, body: Any) -> tuple[str, str | None]:
    model = body.get("model") if isinstance(body, dict) else None
    if path.endswith("/chat/completions"):
        return "openai", model
    if path.endswith("/messages"):
        return "anthropic", model
    if ":streamGenerateContent" in path and "/models/" in path:
        return "gemini", path.rsplit("/models/", 1)[1].split(":", 1)[0]
    return "unknown", model


def _key_of(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:]
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or headers.get("api-key")


_RENDERERS: dict[str, Renderer] = {
    "openai": wire.openai_events,
    "anthropic": wire.anthropic_events,
    "gemini": wire.gemini_events,
}
_ERROR_BODIES: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "openai": wire.openai_error_body,
    "anthropic": wire.anthropic_error_body,
    "gemini": wire.gemini_error_body,
}
_ERROR_EVENTS: dict[str, Callable[[int, str], bytes]] = {
    "openai": wire.openai_error_event,
    "anthropic": wire.anthropic_error_event,
    "gemini": wire.gemini_error_event,
}
