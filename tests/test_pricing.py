"""Money: published prices for known usage, tiers, cached input, and the configuration override."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from gateway.upstreams import compatible_model_entries
from gateway.wiring import build_catalog
from providers.catalog import Catalog
from providers.events import Usage
from providers.pricing import cost_usd, estimate_tokens, is_priced
from tests.conftest import make_settings

M = 1_000_000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.build()


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        ("gpt-5-mini", Usage(M, M), "2.25"),
        ("gpt-5", Usage(M, M), "11.25"),
        ("gpt-5", Usage(M, 0, M), "0.125"),  # all input cached
        ("claude-sonnet-4-5", Usage(M // 10, M // 100), "0.45"),  # 100k in, 10k out: base tier
        ("claude-sonnet-4-5", Usage(300_000, 10_000), "2.025"),  # over 200k input: 6 / 22.50
        ("claude-opus-4-1", Usage(M, M), "90"),
        ("gemini-2.5-flash", Usage(M, M, M // 2), "2.665"),  # half the input cached at 0.03
        ("gemini-2.5-pro", Usage(100_000, 10_000), "0.225"),
        ("gemini-2.5-pro", Usage(300_000, 10_000, 100_000), "0.675"),  # over 200k: 2.50 / 0.25 / 15
    ],
)
def test_published_prices(catalog: Catalog, model: str, usage: Usage, expected: str) -> None:
    cost = cost_usd(catalog.resolve(model), usage)
    assert isinstance(cost, Decimal)
    assert cost == Decimal(expected)


def test_tier_applies_only_above_the_threshold(catalog: Catalog) -> None:
    spec = catalog.resolve("claude-sonnet-4-5")
    at = cost_usd(spec, Usage(200_000, 0))
    above = cost_usd(spec, Usage(200_001, 0))
    assert at == Decimal("0.6")
    assert above > at * 2 - Decimal("0.001")  # the whole prompt moves to the higher rate


def test_configuration_overrides_and_adds_prices(tmp_path: object) -> None:
    models = [
        {"id": "gpt-5-mini", "price": {"input": 1, "output": 3}},
        {
            "id": "house-model",
            "provider": "openai",
            "upstream": "house-model-v2",
            "price": {
                "input": "0.5",
                "output": "1.5",
                "cached_input": "0.05",
                "tier_threshold": 1000,
                "tier_input": 1,
                "tier_output": 3,
            },
        },
    ]
    settings = make_settings(tmp_path, gateway_models=json.dumps(models))  # type: ignore[arg-type]
    cat = build_catalog(settings)
    assert cost_usd(cat.resolve("gpt-5-mini"), Usage(M, M)) == Decimal(4)
    house = cat.resolve("house-model")
    assert is_priced(house)
    assert cost_usd(house, Usage(1000, 1000, 500)) == Decimal("0.001775")  # 500 x 0.5 + 500 x 0.05 + 1000 x 1.5
    assert cost_usd(house, Usage(2000, 1000)) == Decimal("0.005")  # tier rates above 1000 input tokens


def test_unknown_models_cost_zero_and_are_reported_unpriced(tmp_path: object) -> None:
    servers = [{"name": "local-llm", "base_url": "http://127.0.0.1:1/v1", "models": ["llama3.1:8b"]}]
    settings = make_settings(tmp_path, gateway_compatible_servers=json.dumps(servers))  # type: ignore[arg-type]
    assert compatible_model_entries(settings) == [{"id": "llama3.1:8b", "provider": "local-llm"}]
    spec = build_catalog(settings).resolve("llama3.1:8b")
    assert not is_priced(spec)
    assert cost_usd(spec, Usage(1000, 1000)) == 0


def test_output_estimate_from_text() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 25) == 25


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        # Prompts under 200k tokens: Claude's base tier.
        ("claude-sonnet-4-5", Usage(100_000, 0, 0, 0, 100_000), "0.375"),  # all written: 3.75 per 1M
        ("claude-sonnet-4-5", Usage(100_000, 0, 100_000), "0.03"),  # all read: 0.30 per 1M
        # 30k x 3 + 50k x 0.3 + 20k x 3.75 + 10k x 15
        ("claude-sonnet-4-5", Usage(100_000, 10_000, 50_000, 0, 20_000), "0.33"),
        ("claude-opus-4-1", Usage(10_000, 0, 0, 0, 10_000), "0.1875"),  # writes at 18.75 per 1M
        # One-hour writes cost twice the input price: 40k x 3.75 + 60k x 6.
        ("claude-sonnet-4-5", Usage(100_000, 0, 0, 0, 100_000, 60_000), "0.51"),
        # OpenAI and Gemini charge nothing extra to write their caches.
        ("gpt-5-mini", Usage(M, 0, 0, 0, M), "0.25"),
        ("gemini-2.5-flash", Usage(M, 0, 0, 0, M), "0.3"),
    ],
)
def test_cache_writes_and_reads_have_their_own_rates(catalog: Catalog, model: str, usage: Usage, expected: str) -> None:
    assert cost_usd(catalog.resolve(model), usage) == Decimal(expected)


def test_configured_cache_write_price(tmp_path: object) -> None:
    models = [
        {
            "id": "house-claude",
            "provider": "anthropic",
            "price": {"input": 2, "output": 10, "cached_input": "0.2", "cache_write_input": "2.5"},
        },
        {"id": "plain", "provider": "anthropic", "price": {"input": 2, "output": 10}},
        {
            "id": "tiered",
            "provider": "anthropic",
            "price": {
                "input": 1,
                "output": 1,
                "cache_write_input": 2,
                "tier_threshold": 1000,
                "tier_input": 3,
                "tier_cache_write_input": 5,
            },
        },
    ]
    cat = build_catalog(make_settings(tmp_path, gateway_models=json.dumps(models)))  # type: ignore[arg-type]
    usage = Usage(1000, 100, 200, 0, 300)  # 500 uncached, 200 read, 300 written
    assert cost_usd(cat.resolve("house-claude"), usage) == Decimal(
        "0.00279"
    )  # 500 x 2 + 200 x 0.2 + 300 x 2.5 + 100 x 10
    assert cost_usd(cat.resolve("plain"), usage) == Decimal("0.003")  # every input token at the input rate
    assert cost_usd(cat.resolve("tiered"), Usage(2000, 0, 0, 0, 1000)) == Decimal("0.008")  # 1000 x 3 + 1000 x 5
    # Without a one-hour price, an hour's writes cost what other writes cost; with one, that price.
    hour = Usage(1000, 100, 200, 0, 300, 100)
    assert cost_usd(cat.resolve("house-claude"), hour) == cost_usd(cat.resolve("house-claude"), usage)
    priced = [{**models[0], "price": {**models[0]["price"], "cache_write_1h_input": 4}}]  # type: ignore[dict-item]
    cat = build_catalog(make_settings(tmp_path, gateway_models=json.dumps(priced)))  # type: ignore[arg-type]
    assert cost_usd(cat.resolve("house-claude"), hour) == Decimal("0.00294")  # 200 x 2.5 + 100 x 4 instead
