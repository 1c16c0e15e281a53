"""The request shape every provider receives and the interface every adapter implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from providers.events import ProviderEvent

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(slots=True, frozen=True)
class TextPart:
    text: str


@dataclass(slots=True, frozen=True)
class ImagePart:
    """An image by URL; `data:` URLs carry inline base64 data."""

    url: str


ContentPart = TextPart | ImagePart


@dataclass(slots=True, frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(slots=True, frozen=True)
class Message:
    role: Role
    content: str | tuple[ContentPart, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # for role == "tool"

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(slots=True, frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True, frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()

    def system_prompt(self) -> str | None:
        parts = [m.text() for m in self.messages if m.role == "system"]
        return "\n\n".join(parts) if parts else None

    def turns(self) -> tuple[Message, ...]:
        return tuple(m for m in self.messages if m.role != "system")


@dataclass(slots=True, frozen=True)
class Credential:
    """What an adapter needs to call upstream for one user. Never logged."""

    api_key: str
    source: Literal["user", "operator", "none"] = "user"

    def __repr__(self) -> str:  # keep keys out of tracebacks and logs
        return f"Credential(source={self.source!r}, api_key=<redacted>)"


class Provider(Protocol):
    """One upstream API. `stream` yields normalized events and raises `ProviderError` subclasses.

    Closing the returned iterator (``aclose``) must close the upstream HTTP response at once.
    """

    name: str

    def stream(
        self, request: ChatRequest, upstream_model: str, credential: Credential
    ) -> AsyncIterator[ProviderEvent]: ...

    async def aclose(self) -> None: ...
