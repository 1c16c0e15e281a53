"""Builds the parts `create_app` needs from settings: providers, catalog, stores, auth."""

from __future__ import annotations

import httpx

from gateway.auth import DEV_ISSUER, Authenticator, HS256Verifier, JWKSCache, JWKSVerifier, load_dev_key
from gateway.settings import Settings
from gateway.stores.base import Store
from gateway.stores.sqlite import SQLiteStore
from gateway.upstreams import build_upstream_providers, compatible_model_entries
from providers.base import Provider
from providers.catalog import Catalog
from providers.mock import MockProvider


def build_catalog(settings: Settings) -> Catalog:
    return Catalog.build([*compatible_model_entries(settings), *settings.model_entries()])


def build_providers(settings: Settings) -> dict[str, Provider]:
    providers: dict[str, Provider] = build_upstream_providers(settings)
    if settings.gateway_mock_enabled:
        providers["mock"] = MockProvider(settings.gateway_mock_tokens, settings.gateway_mock_delay_ms)
    return providers


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
