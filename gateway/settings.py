"""All configuration, read from the environment (and `.env`), validated once at start.

Field names are the environment variable names (case-insensitive). render.yaml declares each of them;
a test keeps the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False)

    # -- process ---------------------------------------------------------------
    gateway_env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "INFO"
    gateway_log_format: Literal["text", "json"] | None = None  # default: json in production, text in development
    gateway_log_prompts: bool = False
    gateway_data_dir: Path = Path("data")
    gateway_public_url: str | None = None

    # -- auth -------------------------------------------------------------------
    supabase_url: str | None = None
    supabase_jwt_secret: SecretStr | None = None
    gateway_dev_signing_key: SecretStr | None = None  # development only; generated into the data dir when unset
    gateway_jwt_audience: str = "authenticated"
    gateway_jwks_cache_s: float = Field(600.0, gt=0, le=600)  # Supabase's edge caches 10 min: never longer
    gateway_jwks_cooldown_s: float = Field(30.0, ge=0)  # least time between refetches for unknown kids
    gateway_ticket_ttl_s: float = Field(60.0, gt=0, le=600)
    gateway_ws_auth_timeout_s: float = Field(5.0, gt=0)  # time for a first `auth` frame

    # -- storage ----------------------------------------------------------------
    gateway_store: Literal["sqlite", "postgres", "supabase"] = "sqlite"
    database_url: SecretStr | None = None
    supabase_service_role_key: SecretStr | None = None
    gateway_encryption_keys: SecretStr | None = None  # "kid1:base64key,kid2:base64key"; the last one encrypts
    redis_url: SecretStr | None = None
    gateway_redis_prefix: str = "gateway"  # key and channel prefix, so several deployments can share one Redis

    # -- providers --------------------------------------------------------------
    gateway_allow_operator_keys: bool = False
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    gemini_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
    gemini_base_url: str | None = None
    gateway_models: str | None = None  # JSON list of model entries, adding to or overriding the catalog
    gateway_compatible_servers: str | None = None  # JSON list of OpenAI-compatible servers
    gateway_mock_enabled: bool = True
    gateway_mock_tokens: int = Field(32, ge=1, le=100_000)
    gateway_mock_delay_ms: float = Field(20.0, ge=0)

    # -- limits -----------------------------------------------------------------
    gateway_max_concurrent_streams: int = Field(8, ge=1)
    gateway_starts_per_minute: int = Field(60, ge=1)
    gateway_ws_messages_per_second: float = Field(20.0, gt=0)
    gateway_max_frame_bytes: int = Field(256 * 1024, ge=1024)
    gateway_max_messages: int = Field(256, ge=1)
    gateway_max_prompt_chars: int = Field(400_000, ge=1)
    gateway_resume_window_s: float = Field(60.0, ge=0)
    gateway_stream_log_max_events: int = Field(10_000, ge=16)
    gateway_stream_log_max_bytes: int = Field(4 * 1024 * 1024, ge=4096)
    gateway_drain_deadline_s: float = Field(25.0, ge=0)
    gateway_sse_ping_s: float = Field(15.0, gt=0)
    gateway_first_token_timeout_s: float = Field(30.0, gt=0)
    gateway_inter_token_timeout_s: float = Field(30.0, gt=0)
    gateway_request_deadline_s: float = Field(120.0, gt=0)
    gateway_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of the same model after a fast failure (429, 5xx, 529, a reset before the first "
        "token) before the next model is asked; a stall or a silent upstream moves on at once.",
    )
    gateway_breaker_min_requests: int = Field(
        10,
        ge=1,
        description="Attempts of one model that must have ended within the window before its circuit may open.",
    )
    gateway_breaker_failure_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of those attempts that failed with a provider-wide fault (5xx, 529, timeouts, stalls, "
        "dropped or truncated streams; never a 429 or a refused key) that opens the circuit.",
    )
    gateway_breaker_window_s: float = Field(30.0, gt=0, description="The window over which attempts are counted.")
    gateway_breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open circuit skips the model; then one probe request is let through."
    )

    # -- edge -------------------------------------------------------------------
    gateway_cors_origins: str = ""  # comma-separated allowlist; also checked against WebSocket Origin
    gateway_metrics_token: SecretStr | None = None
    gateway_metrics_allow: str = "127.0.0.1,::1"

    @field_validator("supabase_url", "openai_base_url", "anthropic_base_url", "gemini_base_url", "gateway_public_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return v.rstrip("/") if v else v

    @field_validator("gateway_models", "gateway_compatible_servers")
    @classmethod
    def _json_list(cls, v: str | None) -> str | None:
        if v:
            try:
                parsed = json.loads(v)
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON list: {exc}") from None
            if not isinstance(parsed, list):
                raise ValueError("must be a JSON list")
        return v

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.gateway_env != "production":
            return self
        problems = []
        if self.gateway_dev_signing_key is not None:
            problems.append("GATEWAY_DEV_SIGNING_KEY is for development only")
        if not self.supabase_url:
            # Also with only the legacy secret: the URL names the issuer every token's `iss` must match.
            problems.append("set SUPABASE_URL (the tokens' issuer and JWKS) to verify users")
        if self.gateway_store == "postgres" and not self.database_url:
            problems.append("GATEWAY_STORE=postgres needs DATABASE_URL")
        if self.gateway_store == "supabase" and not (self.supabase_url and self.supabase_service_role_key):
            problems.append("GATEWAY_STORE=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY")
        if not self.gateway_encryption_keys:
            problems.append("GATEWAY_ENCRYPTION_KEYS is required to store users' provider keys")
        real = any(k is not None for k in (self.openai_api_key, self.anthropic_api_key, self.gemini_api_key))
        if self.gateway_mock_enabled and not (self.gateway_encryption_keys or real):
            problems.append("a production gateway needs real providers, not only the mock")
        if problems:
            raise ValueError("production settings refused: " + "; ".join(problems))
        return self

    # -- derived ----------------------------------------------------------------
    @property
    def is_dev(self) -> bool:
        return self.gateway_env == "development"

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.gateway_cors_origins.split(",") if o.strip()]

    @property
    def jwt_issuer(self) -> str | None:
        return f"{self.supabase_url}/auth/v1" if self.supabase_url else None

    def model_entries(self) -> list[dict[str, Any]]:
        return list(json.loads(self.gateway_models)) if self.gateway_models else []

    def compatible_servers(self) -> list[dict[str, Any]]:
        return list(json.loads(self.gateway_compatible_servers)) if self.gateway_compatible_servers else []


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with errors turned into one readable message."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
