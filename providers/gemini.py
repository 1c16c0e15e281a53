"""Gemini over the official `google-genai` SDK (Developer API, `streamGenerateContent?alt=sse`).

The SDK's API client builds the request (URL, API version, key header, timeout), sends it through our shared
`httpx2` pool and raises its own errors on error statuses; the streamed body is then read here with the shared
SSE reader, without an SDK model per chunk. The request body is built in `providers/gemini_body.py`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import anthropic
import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from providers import errors
from providers.base import ChatRequest, Credential
from providers.events import (
    Finish,
    FinishReason,
    LogprobsDelta,
    ProviderEvent,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from providers.gemini_body import build_body
from providers.sse import SDKEventStream, open_sdk_stream
from providers.upstream import (
    TRANSPORT_ERRORS,
    ClientCache,
    by_status,
    is_context_overflow,
    is_prefill_refusal,
    retry_after,
    transport_error,
)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}


# What a call or a stream may raise: the SDK's errors and the transport errors it lets through.
_FAILURES: tuple[type[BaseException], ...] = (genai_errors.APIError, *TRANSPORT_ERRORS)

# The SDK's API client keeps the HTTP response to itself; a response hook on our pool hands it to the
# stream that sent the request, which then reads the body directly.
_responses: ContextVar[list[httpx2.Response] | None] = ContextVar("gemini_responses", default=None)


async def _capture(response: httpx2.Response) -> None:
    sink = _responses.get()
    if sink is not None:
        sink.append(response)


def _make_pool(timeout: httpx2.Timeout, limits: httpx2.Limits) -> httpx2.AsyncClient:
    """An httpx2 client on aiohttp (the class the Anthropic and OpenAI SDKs ship for that): its C HTTP parser
    reads a stream for about a third of h11's CPU per chunk. google-genai takes any httpx2 client."""
    return anthropic.DefaultAioHttpClient(timeout=timeout, limits=limits, event_hooks={"response": [_capture]})


def _make_client(base_url: str, api_key: str, pool: httpx2.AsyncClient) -> genai.Client:
    # The SDK passes its own per-request timeout (none unless set), overriding the pool's: hand it the read
    # timeout, in milliseconds, so a silent upstream cannot hold a stream forever.
    read = pool.timeout.read
    options = genai_types.HttpOptions(
        base_url=base_url,
        api_version=API_VERSION,
        httpx_async_client=pool,
        timeout=int(read * 1000) if read is not None else None,
    )
    return genai.Client(api_key=api_key or "none", http_options=options)


async def _send(client: genai.Client, model: str, body: dict[str, Any]) -> httpx2.Response:
    """POST the stream request through the SDK's API client and hand back the open response.

    `async_request_streamed` is the lowest public method of the SDK's API client: it builds, signs and sends
    the request and raises on an error status, but would parse each chunk into dicts and back; its reader is
    closed unstarted and the body is read by the shared SSE reader instead.
    """
    sink: list[httpx2.Response] = []
    token = _responses.set(sink)
    resource = model if "/" in model else f"models/{model}"  # "tunedModels/x" and "models/x" name themselves
    try:
        chunks = await client._api_client.async_request_streamed(
            "post", f"{resource}:streamGenerateContent?alt=sse", body
        )
    finally:
        _responses.reset(token)
    await chunks.aclose()
    return sink[-1]


def _chunk_error(chunk: dict[str, Any], response: httpx2.Response) -> genai_errors.APIError:
    """An error chunk inside a 200 stream, as the SDK would have raised it."""
    error = chunk.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) else 500
    if 400 <= status < 500:
        return genai_errors.ClientError(status, chunk, response)
    return genai_errors.ServerError(status, chunk, response)


def _logprobs(result: dict[str, Any]) -> LogprobsDelta | None:
    chosen = result.get("chosenCandidates") or ()
    if not chosen:
        return None
    tops = result.get("topCandidates") or ()
    tokens = []
    for n, c in enumerate(chosen):
        alts = tops[n].get("candidates", ()) if n < len(tops) else ()
        top = tuple(TokenLogprob(a.get("token", ""), float(a.get("logProbability", 0.0))) for a in alts)
        tokens.append(TokenLogprob(c.get("token", ""), float(c.get("logProbability", 0.0)), None, top))
    return LogprobsDelta(tuple(tokens))


def _usage(meta: dict[str, Any]) -> Usage:
    thoughts = meta.get("thoughtsTokenCount") or 0
    return Usage(
        meta.get("promptTokenCount") or 0,
        (meta.get("candidatesTokenCount") or 0) + thoughts,  # thoughts are billed as output
        meta.get("cachedContentTokenCount") or 0,
        thoughts,
    )


def _finish(reason: str, calls: int) -> FinishReason:
    finish = _FINISH.get(reason, "other")
    return "tool_calls" if finish == "stop" and calls else finish  # Gemini says STOP after function calls too


class GeminiProvider:
    name = "gemini"

    def __init__(
        self, base_url: str | None = None, *, clients: ClientCache[genai.Client] | None = None, name: str = "gemini"
    ) -> None:
        self.name = name
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._clients = clients if clients is not None else ClientCache(_make_client, pool_factory=_make_pool)

    def body(self, request: ChatRequest, upstream_model: str = "") -> dict[str, Any]:
        return build_body(request, provider=self.name, model=upstream_model)

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        events = await self._open(request, upstream_model, credential)
        finish: FinishReason | None = None
        meta: dict[str, Any] | None = None
        raw_finish: str | None = None
        calls = 0
        want_logprobs = request.wants_logprobs
        answer = request.answer_tool
        try:
            async for _name, chunk in events:
                if "error" in chunk:
                    raise self._error(_chunk_error(chunk, events.response), upstream_model)
                # Usage is cumulative on every chunk: the last one counts.
                meta = chunk.get("usageMetadata") or meta
                candidates = chunk.get("candidates")
                if not candidates:
                    feedback = chunk.get("promptFeedback") or {}
                    if feedback.get("blockReason"):
                        raise self._blocked(feedback, upstream_model)
                    continue
                cand = candidates[0]
                for part in (cand.get("content") or {}).get("parts") or ():
                    text = part.get("text")
                    if text:
                        yield ReasoningDelta(text) if part.get("thought") else TextDelta(text)
                        continue
                    fc = part.get("functionCall")
                    if fc is not None:
                        args = json.dumps(fc.get("args") or {})
                        if answer is not None and fc.get("name") == answer:
                            yield TextDelta(args)  # the forced call carrying the answer: its arguments are it
                            continue
                        yield ToolCallDelta(calls, fc.get("id") or f"call_{calls}", fc.get("name") or "", args)
                        calls += 1
                if want_logprobs and cand.get("logprobsResult"):
                    lp = _logprobs(cand["logprobsResult"])
                    if lp is not None:
                        yield lp
                reason = cand.get("finishReason")
                if reason is not None:
                    finish, raw_finish = _finish(reason, calls), reason
        finally:
            # Runs on aclose() and on cancellation too: the upstream response is closed at once.
            await events.aclose()
        for ev in self._last(finish, raw_finish, meta, upstream_model):
            yield ev

    async def _open(self, request: ChatRequest, upstream_model: str, credential: Credential) -> SDKEventStream:
        client = self._clients.get(self.base_url, credential.api_key)
        body = self.body(request, upstream_model)
        return await open_sdk_stream(
            lambda: _send(client, upstream_model, body),
            _FAILURES,
            lambda exc: self._error(exc, upstream_model),
            provider=self.name,
            model=upstream_model,
        )

    def _last(
        self, finish: FinishReason | None, raw_finish: str | None, meta: dict[str, Any] | None, model: str
    ) -> tuple[ProviderEvent, ...]:
        """What ends the stream once its body is read: the usage (from the last chunk that had it), then the finish."""
        if finish is None:
            raise errors.Truncated("stream ended without a finish reason", provider=self.name, model=model)
        return (Finish(finish, raw_finish),) if meta is None else (_usage(meta), Finish(finish, raw_finish))

    def _blocked(self, feedback: dict[str, Any], model: str) -> errors.ContentRefused:
        """The prompt itself was blocked: no candidates, only the feedback's reason."""
        reason = str(feedback["blockReason"])
        return errors.ContentRefused(
            feedback.get("blockReasonMessage") or f"prompt blocked: {reason}",
            provider=self.name,
            model=model,
            provider_code=reason,
        )

    def _error(self, exc: BaseException, model: str) -> errors.ProviderError:
        kw: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, genai_errors.APIError):
            message = exc.message or str(exc)
            status = exc.code if isinstance(exc.code, int) else 500
            headers = getattr(exc.response, "headers", None)
            kw["provider_code"] = exc.status or str(status)
            if status == 429:
                wait = retry_after(headers) if headers is not None else None
                return errors.RateLimited(message, retry_after=wait or _retry_delay(exc.details), **kw)
            if status == 400 and "api key" in message.lower():
                return errors.AuthFailed(message, **kw)
            if status == 400 and is_prefill_refusal(message):
                return errors.PrefillRejected(message, **kw)
            if status == 400 and is_context_overflow(message):
                return errors.ContextLengthExceeded(message, **kw)
            return by_status(status, message, headers=headers, **kw)
        if isinstance(exc, TRANSPORT_ERRORS):
            return transport_error(exc, **kw)
        return errors.ServerError(f"{type(exc).__name__}: {exc}", **kw)

    async def aclose(self) -> None:
        await self._clients.aclose()


def _retry_delay(details: Any) -> float | None:
    """Gemini puts the wait in a RetryInfo detail: {"retryDelay": "7s"}."""
    error = details.get("error") if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None
