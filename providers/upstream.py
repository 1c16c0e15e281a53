"""What the three adapters share: SDK client caching over shared connection pools, and error helpers.

Keys differ per user, so an SDK client is made per (base URL, key) and kept in a bounded LRU; every
client for one base URL rides on the same `httpx2.AsyncClient`, so a new user's key costs an object,
not a connection pool.
"""

from __future__ import annotations

import email.utils
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import httpx2

from providers import errors

T = TypeVar("T")

# Connect and write are bounded; reads are not cut here: stall detection belongs to the router,
# and a long silent reasoning phase is legitimate.
DEFAULT_TIMEOUT = httpx2.Timeout(connect=10.0, read=600.0, write=30.0, pool=30.0)
DEFAULT_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=30.0)


class ModelNotFound(errors.ProviderError):
    """The upstream does not know the model (a catalog or access problem): another model may work."""

    code = "model_not_found"


class ClientCache(Generic[T]):
    """SDK clients per (base URL, key): bounded LRU over one shared HTTP pool per base URL."""

    def __init__(
        self,
        factory: Callable[[str, str, httpx2.AsyncClient], T],
        *,
        max_clients: int = 512,
        timeout: httpx2.Timeout = DEFAULT_TIMEOUT,
        limits: httpx2.Limits = DEFAULT_LIMITS,
        pool_factory: Callable[[httpx2.Timeout, httpx2.Limits], httpx2.AsyncClient] | None = None,
    ) -> None:
        self._factory = factory
        self._pool_factory = pool_factory
        self._max = max_clients
        self._timeout = timeout
        self._limits = limits
        self._clients: OrderedDict[tuple[str, str], T] = OrderedDict()
        self._pools: dict[str, httpx2.AsyncClient] = {}

    def pool(self, base_url: str) -> httpx2.AsyncClient:
        pool = self._pools.get(base_url)
        if pool is None:
            if self._pool_factory is not None:
                pool = self._pool_factory(self._timeout, self._limits)
            else:
                pool = httpx2.AsyncClient(timeout=self._timeout, limits=self._limits)
            self._pools[base_url] = pool
        return pool

    def get(self, base_url: str, api_key: str) -> T:
        # The cache key holds a digest, so no extra copy of the raw key lives in this map.
        slot = (base_url, hashlib.sha256(api_key.encode()).hexdigest())
        client = self._clients.get(slot)
        if client is not None:
            self._clients.move_to_end(slot)
            return client
        client = self._factory(base_url, api_key, self.pool(base_url))
        self._clients[slot] = client
        if len(self._clients) > self._max:
            # Evicted SDK clients own nothing: the pool they used stays open for the others.
            self._clients.popitem(last=False)
        return client

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def pools(self) -> int:
        return len(self._pools)

    async def aclose(self) -> None:
        self._clients.clear()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def by_status(
    status: int,
    message: str,
    *,
    provider: str,
    model: str,
    headers: Mapping[str, str] | None = None,
    provider_code: str | None = None,
) -> errors.ProviderError:
    """The common HTTP status -> error mapping; adapters refine it from the body first."""
    kw: dict[str, Any] = {"provider": provider, "model": model, "provider_code": provider_code or str(status)}
    if status == 429:
        return errors.RateLimited(message, retry_after=retry_after(headers), **kw)
    if status in (401, 403):
        return errors.AuthFailed(message, **kw)
    if status == 404:
        return ModelNotFound(message, **kw)
    if status in (408, 504):
        # The upstream answered, quickly, that it timed out: as fast to retry as any 5xx.
        return errors.UpstreamTimeout(message, fast=True, **kw)
    if status in (503, 529):
        return errors.Overloaded(message, **kw)
    if status >= 500 or status == 409:
        return errors.ServerError(message, **kw)
    if 400 <= status < 500:
        return errors.BadRequest(message, **kw)
    return errors.ServerError(message, **kw)


def is_prefill_refusal(message: str) -> bool:
    text = message.lower()
    return "prefill" in text or ("final assistant content" in text and "whitespace" not in text)


# How each upstream words a prompt that does not fit: OpenAI (and the servers copying its wording), Anthropic's
# "prompt is too long" and its input-plus-max_tokens check, Gemini's input token count.
_CONTEXT_WORDING = (
    "maximum context length",
    "context_length_exceeded",
    "prompt is too long",
    "exceed context limit",
    "exceeds the context window",
    "exceeds the maximum number of tokens",
)


def is_context_overflow(message: str, code: str | None = None) -> bool:
    if code == "context_length_exceeded":
        return True
    text = message.lower()
    return any(w in text for w in _CONTEXT_WORDING)


def refused(exc: BaseException) -> bool:
    """Whether a connection was refused somewhere down the cause chain. The SDKs' aiohttp transport reports a
    refused connection as a connect timeout; callers want to tell the two apart."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; bound it anyway
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def transport_error(exc: BaseException, *, provider: str, model: str) -> errors.ProviderError:
    """Raw transport failures the SDKs let through (a cut connection mid-body, a timeout)."""
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return errors.UpstreamTimeout(f"upstream timed out: {type(exc).__name__}", provider=provider, model=model)
    return errors.ConnectionLost(f"connection lost: {type(exc).__name__}", provider=provider, model=model)


# Exceptions a stream may raise from below the SDK: httpx2's transport errors and socket-level ones.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx2.TransportError, httpx2.StreamError, OSError, TimeoutError)


def split_data_url(url: str) -> tuple[str, str] | None:
    """`data:image/png;base64,AAAA` -> ("image/png", "AAAA"); None for anything else."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")] or "application/octet-stream", data


def guess_image_type(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for ext, mime in ((".png", "image/png"), (".gif", "image/gif"), (".webp", "image/webp")):
        if path.endswith(ext):
            return mime
    return "image/jpeg"
