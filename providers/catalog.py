"""The model catalog: what each model id means, where it runs and what it falls back to.

Built from defaults plus operator configuration (JSON), so new models need no code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from providers.capabilities import (
    CLAUDE,
    CLAUDE_OPUS_4_1,
    GEMINI_FLASH,
    GEMINI_PRO,
    MOCK,
    OPENAI_REASONING,
    Capabilities,
    default_capabilities,
)
from providers.capability_config import capabilities_from_config


@dataclass(slots=True, frozen=True)
class Price:
    """USD per million tokens; above `tier_threshold` input tokens the `tier_` prices apply where given.

    Cache reads cost `cached_input` and cache writes `cache_write_input`; either unset costs `input`. One-hour
    writes cost `cache_write_1h_input`, unset: what other writes cost.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    tier_threshold: int | None = None
    tier_input: Decimal | None = None
    tier_output: Decimal | None = None
    tier_cached_input: Decimal | None = None
    cache_write_input: Decimal | None = None
    tier_cache_write_input: Decimal | None = None
    cache_write_1h_input: Decimal | None = None
    tier_cache_write_1h_input: Decimal | None = None


@dataclass(slots=True, frozen=True)
class ModelSpec:
    id: str
    provider: str  # provider instance name: "openai", "anthropic", "gemini", "mock", or a compatible server
    upstream: str  # the model name sent upstream
    context_window: int | None = None  # tokens; None: unknown (counts as larger than any other when falling back)
    supports_prefill: bool = False
    fallbacks: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    tier: str = "default"
    first_token_timeout: float | None = None  # seconds; None = router default
    inter_token_timeout: float | None = None
    price: Price | None = None  # overrides the price database
    # What the model can honour of a request; None: its family's defaults (see providers/capabilities.py).
    capabilities: Capabilities | None = None


# GPT-5 and Gemini 2.5 think before they write and stream nothing meanwhile: a silent minute is not a stall.
REASONING_FIRST_TOKEN_S = 120.0

_DEFAULTS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "gpt-5-mini",
        "openai",
        "gpt-5-mini",
        400_000,
        False,
        fallbacks=("claude-sonnet-4-5", "gemini-2.5-flash"),
        aliases=("openai", "gpt-mini"),
        first_token_timeout=REASONING_FIRST_TOKEN_S,
        capabilities=OPENAI_REASONING,
    ),
    ModelSpec(
        "gpt-5",
        "openai",
        "gpt-5",
        400_000,
        False,
        fallbacks=("claude-opus-4-1", "gemini-2.5-pro"),
        tier="advanced",
        first_token_timeout=REASONING_FIRST_TOKEN_S,
        capabilities=OPENAI_REASONING,
    ),
    ModelSpec(
        "claude-sonnet-4-5",
        "anthropic",
        "claude-sonnet-4-5",
        200_000,
        True,
        fallbacks=("gpt-5-mini", "gemini-2.5-flash"),
        aliases=("claude", "sonnet"),
        capabilities=replace(CLAUDE, thinking_budget=(1024, 63_999)),  # 64k output tokens
    ),
    ModelSpec(
        "claude-opus-4-1",
        "anthropic",
        "claude-opus-4-1",
        200_000,
        True,
        fallbacks=("gpt-5", "gemini-2.5-pro"),
        aliases=("opus",),
        tier="advanced",
        capabilities=CLAUDE_OPUS_4_1,  # 32k output tokens
    ),
    ModelSpec(
        "gemini-2.5-flash",
        "gemini",
        "gemini-2.5-flash",
        1_048_576,
        False,
        fallbacks=("gpt-5-mini", "claude-sonnet-4-5"),
        aliases=("gemini", "flash"),
        first_token_timeout=REASONING_FIRST_TOKEN_S,
        capabilities=GEMINI_FLASH,
    ),
    ModelSpec(
        "gemini-2.5-pro",
        "gemini",
        "gemini-2.5-pro",
        1_048_576,
        False,
        fallbacks=("gpt-5", "claude-opus-4-1"),
        aliases=("gemini-pro",),
        tier="advanced",
        first_token_timeout=REASONING_FIRST_TOKEN_S,
        capabilities=GEMINI_PRO,
    ),
    # The built-in mock: deterministic text, no key, a nominal price so spend dashboards move in demos.
    ModelSpec(
        "mock",
        "mock",
        "mock",
        32_000,
        True,
        fallbacks=("mock-backup",),
        price=Price(Decimal("1"), Decimal("2"), Decimal("0.1")),
        capabilities=MOCK,
    ),
    ModelSpec(
        "mock-backup",
        "mock",
        "mock-backup",
        32_000,
        True,
        price=Price(Decimal("1"), Decimal("2"), Decimal("0.1")),
        capabilities=MOCK,
    ),
)


class UnknownModel(KeyError):
    pass


@dataclass(slots=True)
class Catalog:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, extra: Iterable[Mapping[str, Any]] = (), *, include_defaults: bool = True) -> Catalog:
        cat = cls()
        if include_defaults:
            for spec in _DEFAULTS:
                cat.add(spec)
        for entry in extra:
            cat.add(spec_from_config(entry, cat.models.get(str(entry.get("id", "")))))
        return cat

    def add(self, spec: ModelSpec) -> None:
        self.models[spec.id] = spec
        for alias in spec.aliases:
            self._aliases[alias] = spec.id

    def resolve(self, name: str) -> ModelSpec:
        spec = self.models.get(name) or self.models.get(self._aliases.get(name, ""))
        if spec is None:
            raise UnknownModel(name)
        return spec

    def __iter__(self) -> Any:
        return iter(self.models.values())


def _price(raw: Mapping[str, Any] | None) -> Price | None:
    if not raw:
        return None

    def dec(key: str) -> Decimal | None:
        v = raw.get(key)
        return None if v is None else Decimal(str(v))

    inp, out = dec("input"), dec("output")
    if inp is None or out is None:
        raise ValueError("a model price needs 'input' and 'output' (USD per 1M tokens)")
    threshold = raw.get("tier_threshold")
    return Price(
        inp,
        out,
        dec("cached_input"),
        int(threshold) if threshold is not None else None,
        dec("tier_input"),
        dec("tier_output"),
        dec("tier_cached_input"),
        dec("cache_write_input"),
        dec("tier_cache_write_input"),
        dec("cache_write_1h_input"),
        dec("tier_cache_write_1h_input"),
    )


def spec_from_config(raw: Mapping[str, Any], base: ModelSpec | None = None) -> ModelSpec:
    """A model from operator JSON. Fields left out keep the defaults (or the model being overridden)."""
    if "id" not in raw:
        raise ValueError("each configured model needs an 'id'")
    if base is None:
        if "provider" not in raw:
            raise ValueError(f"model {raw['id']!r} needs a 'provider'")
        base = ModelSpec(str(raw["id"]), str(raw["provider"]), str(raw.get("upstream", raw["id"])))
    changes: dict[str, Any] = {}
    for key in ("provider", "upstream", "tier"):
        if key in raw:
            changes[key] = str(raw[key])
    for key in ("context_window",):
        if key in raw:
            changes[key] = int(raw[key])
    for key in ("first_token_timeout", "inter_token_timeout"):
        if key in raw:
            changes[key] = float(raw[key])
    if "supports_prefill" in raw:
        changes["supports_prefill"] = bool(raw["supports_prefill"])
    for key in ("fallbacks", "aliases"):
        if key in raw:
            changes[key] = tuple(str(x) for x in raw[key])
    if "price" in raw:
        changes["price"] = _price(raw["price"])
    if "provider" in changes or "upstream" in changes:
        # Another model behind the id: what the old one could honour says nothing about it.
        changes["capabilities"] = None
    if "capabilities" in raw:
        caps = raw["capabilities"]
        if not isinstance(caps, Mapping):
            raise ValueError(f"model {raw['id']!r}: 'capabilities' must be an object")
        spec = replace(base, **changes)
        start = spec.capabilities or default_capabilities(spec.provider, spec.upstream)
        changes["capabilities"] = capabilities_from_config(caps, start)
    return replace(base, **changes)
