"""OpenAI Chat Completions over the official `openai` SDK; also any OpenAI-compatible server.

The compatible kind (vLLM, Ollama, OpenRouter, Groq, Together, Azure-style URLs) is the same adapter
with its own name, base URL and a few dialect switches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
import openai
import orjson

from providers import errors
from providers.base import ChatRequest, Credential, ToolSpec
from providers.events import (
    Finish,
    FinishReason,
    LogprobsDelta,
    ProviderEvent,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from providers.openai_body import request_options, to_messages, tool
from providers.sse import SDKEventStream, open_sdk_stream
from providers.upstream import (
    TRANSPORT_ERRORS,
    ClientCache,
    by_status,
    is_context_overflow,
    is_prefill_refusal,
    refused,
    transport_error,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
# The codes OpenAI (and Azure OpenAI) give a request its content policy refused.
_REFUSAL_CODES = ("invalid_prompt", "content_filter", "content_policy_violation")


# What a call or a stream may raise: the SDK's errors and the transport errors it lets through.
_FAILURES: tuple[type[BaseException], ...] = (openai.OpenAIError, *TRANSPORT_ERRORS)


def _make_client(base_url: str, api_key: str, pool: httpx2.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=api_key or "none", base_url=base_url, max_retries=0, http_client=pool, timeout=pool.timeout
    )


def _aiohttp_pool(timeout: httpx2.Timeout, limits: httpx2.Limits) -> httpx2.AsyncClient:
    """The SDK's own aiohttp transport: its C HTTP parser reads a stream for a fraction of h11's cost."""
    return openai.DefaultAioHttpClient(timeout=timeout, limits=limits)


class OpenAIProvider:
    """Streams Chat Completions with `stream_options.include_usage`."""

    def __init__(
        self,
        name: str = "openai",
        base_url: str | None = None,
        *,
        clients: ClientCache[openai.AsyncOpenAI] | None = None,
        max_tokens_field: str = "max_completion_tokens",
        include_usage: bool = True,
        default_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        key_header: str | None = None,
    ) -> None:
        self.name = name
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._clients = clients if clients is not None else ClientCache(_make_client, pool_factory=_aiohttp_pool)
        self._max_tokens_field = max_tokens_field
        self._include_usage = include_usage
        self._default_key = default_key
        self._extra_headers: dict[str, Any] = dict(extra_headers or {})
        # Azure-style servers read the key from their own header; the bearer header is then left out.
        self._key_header = key_header
        if key_header:
            self._extra_headers["Authorization"] = openai.omit
        self._official = name == "openai"

    def params(self, request: ChatRequest, upstream_model: str, api_key: str = "") -> dict[str, Any]:
        p: dict[str, Any] = {"model": upstream_model, "messages": to_messages(request), "stream": True}
        if self._include_usage:
            p["stream_options"] = {"include_usage": True}
        if request.max_tokens is not None:
            p[self._max_tokens_field] = request.max_tokens
        tools = [tool(t) for t in request.tools]
        rf = request.response_format
        if rf is not None and request.answer_tool is not None:
            tools.append(tool(ToolSpec(rf.name, rf.tool_description(), rf.tool_schema())))
        if tools:
            p["tools"] = tools
        p.update(request_options(request, official=self._official, provider=self.name, model=upstream_model))
        if self._key_header:
            p["extra_headers"] = {**self._extra_headers, self._key_header: api_key}
        elif self._extra_headers:
            p["extra_headers"] = self._extra_headers
        return p

    async def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]:
        events = await self._open(request, upstream_model, credential)
        finish: FinishReason | None = None
        raw_finish: str | None = None
        usage: Usage | None = None
        want_logprobs = request.wants_logprobs
        answer = _AnswerCall(request.answer_tool) if request.answer_tool is not None else None
        try:
            async for _name, chunk in events:
                if "error" in chunk and not chunk.get("choices"):
                    raise self._event_error(chunk, upstream_model)
                u = chunk.get("usage")
                if u:
                    usage = _usage(u)
                choices = chunk.get("choices")
                if not choices:
                    continue
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content")
                    if content:
                        yield TextDelta(content)
                    calls = delta.get("tool_calls")
                    if calls:
                        for tc in calls:
                            fn = tc.get("function") or {}
                            args = fn.get("arguments") or ""
                            if answer is not None and answer.owns(tc, fn):
                                if args:
                                    yield TextDelta(args)
                                continue
                            yield ToolCallDelta(tc.get("index", 0), tc.get("id"), fn.get("name"), args)
                    refusal = delta.get("refusal")
                    if refusal:
                        yield TextDelta(refusal)
                if want_logprobs:
                    lp = choice.get("logprobs")
                    if lp and lp.get("content"):
                        yield LogprobsDelta(tuple(_token_logprob(e) for e in lp["content"]))
                reason = choice.get("finish_reason")
                if reason is not None:
                    finish, raw_finish = _finish(reason, answer), reason
        finally:
            # Runs on aclose() and on cancellation too: the upstream response is closed at once.
            await events.aclose()
        for ev in self._last(finish, raw_finish, usage, upstream_model):
            yield ev

    async def _open(self, request: ChatRequest, upstream_model: str, credential: Credential) -> SDKEventStream:
        key = credential.api_key or self._default_key or ""
        # With a key header, one SDK client serves every key (the key travels per request).
        client = self._clients.get(self.base_url, "" if self._key_header else key)
        params = self.params(request, upstream_model, key)
        headers = params.pop("extra_headers", None)
        # The SDK sends the request (auth, base URL, headers) and raises its own errors on error statuses.
        # Our body is already in wire form, so it goes through the client's `post` rather than the typed
        # `create` (whose parameter transform costs more than half a millisecond per request), and the
        # stream is read here without a model object per chunk.
        return await open_sdk_stream(
            lambda: client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                content=orjson.dumps(params),  # not the SDK's stdlib json
                options={"headers": headers} if headers else {},
                stream=True,
            ),
            _FAILURES,
            lambda exc: self._error(exc, upstream_model),
            provider=self.name,
            model=upstream_model,
        )

    def _last(
        self, finish: FinishReason | None, raw_finish: str | None, usage: Usage | None, model: str
    ) -> tuple[ProviderEvent, ...]:
        """What ends the stream once its body is read: the usage (if the server sent it), then the finish."""
        if finish is None:
            raise errors.Truncated("stream ended without a finish reason", provider=self.name, model=model)
        return (Finish(finish, raw_finish),) if usage is None else (usage, Finish(finish, raw_finish))

    def _event_error(self, body: dict[str, Any], model: str) -> errors.ProviderError:
        """An error event inside a 200 stream: no status, only the body's type and code."""
        message, code = _body_error(body, "upstream error")
        kind = f"{code or ''} {_body_type(body)} {message}".lower()
        kw: dict[str, Any] = {"provider": self.name, "model": model, "provider_code": code or _body_type(body) or None}
        if "rate_limit" in kind:
            return errors.RateLimited(message, **kw)
        if "overload" in kind:
            return errors.Overloaded(message, **kw)
        if "invalid_request" in kind:
            return self._bad_request(message, code, kw)
        return errors.ServerError(message, **kw)

    def _bad_request(self, message: str, code: str | None, kw: dict[str, Any]) -> errors.ProviderError:
        """A 400 told apart by the body: a refused prefill, a prompt too long, a refusal, or the caller's fault."""
        if is_prefill_refusal(message):
            return errors.PrefillRejected(message, **kw)
        if is_context_overflow(message, code):
            return errors.ContextLengthExceeded(message, **kw)
        if code in _REFUSAL_CODES:
            return errors.ContentRefused(message, **kw)
        return errors.BadRequest(message, **kw)

    def _error(self, exc: BaseException, model: str) -> errors.ProviderError:
        kw: dict[str, Any] = {"provider": self.name, "model": model}
        if isinstance(exc, openai.APITimeoutError):
            if refused(exc):
                # The aiohttp transport reports a refused connection as a connect timeout.
                return errors.ConnectionLost("connection to upstream refused", **kw)
            return errors.UpstreamTimeout("upstream timed out", **kw)
        if isinstance(exc, openai.APIConnectionError):
            return errors.ConnectionLost("connection to upstream lost", **kw)
        if isinstance(exc, openai.APIStatusError):
            message, code = _body_error(exc.body, exc.message)
            kw["provider_code"] = code or _body_type(exc.body) or str(exc.status_code)
            if exc.status_code == 429 and code == "insufficient_quota":
                return errors.AuthFailed(message, **kw)
            if exc.status_code == 400:
                return self._bad_request(message, code, kw)
            return by_status(exc.status_code, message, headers=exc.response.headers, **kw)
        if isinstance(exc, openai.APIError):
            return self._event_error(
                exc.body if isinstance(exc.body, dict) else {"error": {"message": exc.message}}, model
            )
        if isinstance(exc, TRANSPORT_ERRORS):
            return transport_error(exc, **kw)
        return errors.ServerError(f"{type(exc).__name__}: {exc}", **kw)

    async def aclose(self) -> None:
        await self._clients.aclose()


def _usage(u: dict[str, Any]) -> Usage:
    prompt = u.get("prompt_tokens_details") or {}
    completion = u.get("completion_tokens_details") or {}
    return Usage(
        u.get("prompt_tokens") or 0,
        u.get("completion_tokens") or 0,
        prompt.get("cached_tokens") or 0,
        completion.get("reasoning_tokens") or 0,
    )


def _finish(reason: str, answer: _AnswerCall | None) -> FinishReason:
    finish = _FINISH.get(reason, "other")
    if finish == "tool_calls" and answer is not None and answer.index is not None:
        return "stop"  # the forced call was the answer
    return finish


class _AnswerCall:
    """Picks out the forced call whose arguments are the answer (its first piece names it, the rest share
    its index), so they stream as text."""

    __slots__ = ("index", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.index: int | None = None

    def owns(self, tc: dict[str, Any], fn: dict[str, Any]) -> bool:
        index: int = tc.get("index", 0)
        if self.index is None and fn.get("name") == self.name:
            self.index = index
        return index == self.index


def _token_logprob(entry: dict[str, Any]) -> TokenLogprob:
    raw = entry.get("bytes")
    return TokenLogprob(
        entry.get("token", ""),
        float(entry.get("logprob", 0.0)),
        tuple(raw) if raw is not None else None,
        tuple(_token_logprob(t) for t in entry.get("top_logprobs") or ()),
    )


def _body_error(body: object, fallback: str) -> tuple[str, str | None]:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code")
            return str(inner.get("message") or fallback), str(code) if code is not None else None
    return fallback, None


def _body_type(body: object) -> str:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("type") or "")
    return ""
