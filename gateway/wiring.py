"""Builds the parts `create_app` needs from settings: providers, catalog, router, stores, keys, limits, auth."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from gateway.auth import DEV_ISSUER, Authenticator, HS256Verifier, JWKSVerifier
from gateway.crypto import key_ring_for
from gateway.jwks import JWKSCache
from gateway.keys import OperatorKeyDirectory, UserKeyDirectory
from gateway.response_store import MemoryResponseStore
from gateway.settings import Settings
from gateway.stores.base import SecretStore, Store
from gateway.stores.sqlite import SQLiteStore
from gateway.upstreams import build_upstream_providers, compatible_credentials, compatible_model_entries
from providers.backoff import Backoff
from providers.base import Provider
from providers.breaker import Breaker, MemoryBreaker
from providers.catalog import Catalog
from providers.mock import MockProvider
from providers.router import Router
from sessions.manager import Limits


def build_catalog(settings: Settings) -> Catalog:
    return Catalog.build([*compatible_model_entries(settings), *settings.model_entries()])


def build_providers(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = build_upstream_providers(settings)
    if settings.gateway_mock_enabled:
        providers["mock"] = MockProvider(settings.gateway_mock_tokens, settings.gateway_mock_delay_ms)
    return providers


def build_router(settings: Settings, providers: dict[str, Provider], shared_breaker: Breaker | None) -> Router:
    # One breaker for the whole process (with Redis, for every instance): every stream learns from every other
    # stream's failures.
    breaker = shared_breaker
    if breaker is None:
        breaker = MemoryBreaker(
            settings.gateway_breaker_min_requests,
            settings.gateway_breaker_failure_rate,
            settings.gateway_breaker_window_s,
            settings.gateway_breaker_cooldown_s,
        )
    return Router(
        providers,
        breaker=breaker,
        backoff=Backoff(max_retries=settings.gateway_retries),
        first_token_timeout_s=settings.gateway_first_token_timeout_s,
        inter_token_timeout_s=settings.gateway_inter_token_timeout_s,
        request_deadline_s=settings.gateway_request_deadline_s,
    )


def build_keys(settings: Settings, store: SecretStore) -> UserKeyDirectory:
    """Users' own keys first, then the operator's (where allowed, and for the compatible servers configured)."""
    operator = {
        "openai": settings.openai_api_key,
        "anthropic": settings.anthropic_api_key,
        "gemini": settings.gemini_api_key,
    }
    operator_keys = OperatorKeyDirectory(
        {p: k.get_secret_value() for p, k in operator.items() if k is not None},
        settings.gateway_allow_operator_keys,
        shared=compatible_credentials(settings),
    )
    return UserKeyDirectory(store, key_ring_for(settings), operator_keys)


def memory_responses(settings: Settings) -> MemoryResponseStore:
    ttl, most = settings.gateway_responses_ttl_s, settings.gateway_responses_memory_bytes
    return MemoryResponseStore(ttl_s=ttl, max_bytes=most)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_concurrent_streams=settings.gateway_max_concurrent_streams,
        starts_per_minute=settings.gateway_starts_per_minute,
        resume_window_s=settings.gateway_resume_window_s,
        log_max_events=settings.gateway_stream_log_max_events,
        log_max_bytes=settings.gateway_stream_log_max_bytes,
    )


def build_store(settings: Settings) -> Store:
    if settings.gateway_store == "postgres":
        if settings.database_url is None:
            raise ValueError("GATEWAY_STORE=postgres needs DATABASE_URL")
        from gateway.stores.postgres import PostgresStore  # imported only when chosen: each driver is large

        return PostgresStore(settings.database_url.get_secret_value())
    if settings.gateway_store == "supabase":
        if not settings.supabase_url or settings.supabase_service_role_key is None:
            raise ValueError("GATEWAY_STORE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
        from gateway.stores.supabase import SupabaseStore

        return SupabaseStore(settings.supabase_url, settings.supabase_service_role_key.get_secret_value())
    return SQLiteStore(settings.gateway_data_dir / "gateway.sqlite3")


def load_dev_key(data_dir: Path) -> str:
    """The development signing key, created once under the data dir so tokens survive restarts."""
    path = data_dir / "dev-signing-key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def build_auth(settings: Settings) -> Authenticator:
    verifiers = []
    if settings.supabase_jwt_secret is not None:
        verifiers.append(
            HS256Verifier(
                settings.supabase_jwt_secret.get_secret_value(), settings.jwt_issuer, settings.gateway_jwt_audience
            )
        )
    dev = None
    if settings.is_dev:
        key = (
            settings.gateway_dev_signing_key.get_secret_value()
            if settings.gateway_dev_signing_key is not None
            else load_dev_key(settings.gateway_data_dir)
        )
        dev = HS256Verifier(key, DEV_ISSUER, settings.gateway_jwt_audience)
    jwks = None
    if settings.jwt_issuer is not None:
        # Fetched lazily, on the first asymmetric token, so a legacy (HS256-only) project never calls it.
        cache = JWKSCache(
            f"{settings.jwt_issuer}/.well-known/jwks.json",
            httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False),
            max_age_s=settings.gateway_jwks_cache_s,
            refetch_cooldown_s=settings.gateway_jwks_cooldown_s,
        )
        jwks = JWKSVerifier(cache, settings.jwt_issuer, settings.gateway_jwt_audience)
    return Authenticator(verifiers, dev, jwks, remember_s=min(30.0, settings.gateway_jwks_cache_s))
