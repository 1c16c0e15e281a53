"""Money: what a usage costs, as Decimal USD.

The catalog's own price (operator configuration) wins; otherwise the `genai-prices` database,
which carries tiered prices. Unknown models cost zero and are reported as unpriced.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from providers.catalog import ModelSpec, Price
from providers.events import Usage

log = logging.getLogger("gateway.pricing")

_MILLION = Decimal(1_000_000)
_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}


def _pick(tiered: bool, tier: Decimal | None, base: Decimal | None, fallback: Decimal) -> Decimal:
    if tiered and tier is not None:
        return tier
    return fallback if base is None else base


def _from_price(price: Price, usage: Usage) -> Decimal:
    tiered = price.tier_threshold is not None and usage.input_tokens > price.tier_threshold
    inp = _pick(tiered, price.tier_input, price.input, price.input)
    out = _pick(tiered, price.tier_output, price.output, price.output)
    # Unpriced cache reads or writes cost what plain input costs (in the same tier).
    cached = _pick(tiered, price.tier_cached_input, price.cached_input, inp)
    written = _pick(tiered, price.tier_cache_write_input, price.cache_write_input, inp)
    hour = _pick(tiered, price.tier_cache_write_1h_input, price.cache_write_1h_input, written)
    reads, writes = usage.cached_input_tokens, usage.cache_write_input_tokens
    long = min(writes, usage.cache_write_1h_input_tokens)
    uncached = max(0, usage.input_tokens - reads - writes)
    total = uncached * inp + reads * cached + (writes - long) * written + long * hour + usage.output_tokens * out
    return total / _MILLION


@lru_cache(maxsize=256)
def _known(upstream: str, provider: str) -> bool:
    try:
        calc_price(GPUsage(input_tokens=1), model_ref=upstream, provider_id=_PROVIDER_IDS.get(provider, provider))
    except LookupError:
        return False
    return True


def cost_usd(spec: ModelSpec, usage: Usage) -> Decimal:
    """Cost of `usage` on `spec`. Input tokens include cache reads and writes, each billed at its own rate."""
    if spec.price is not None:
        return _from_price(spec.price, usage)
    if not _known(spec.upstream, spec.provider):
        return Decimal(0)
    calc = calc_price(
        GPUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cached_input_tokens or None,
            cache_write_tokens=usage.cache_write_input_tokens or None,
            cache_write_1h_tokens=min(usage.cache_write_1h_input_tokens, usage.cache_write_input_tokens) or None,
            output_tokens=usage.output_tokens,
        ),
        model_ref=spec.upstream,
        provider_id=_PROVIDER_IDS.get(spec.provider, spec.provider),
    )
    return Decimal(calc.total_price)


def is_priced(spec: ModelSpec) -> bool:
    return spec.price is not None or _known(spec.upstream, spec.provider)


def estimate_tokens(text: str) -> int:
    """Tokens in text when the provider never said: about four characters a token."""
    return (len(text) + 3) // 4
