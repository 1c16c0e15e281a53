"""All configuration, read from the environment (and `.env`), validated once at start.

Field names are the environment variable names (case-insensitive). Each field's description is its
documentation: `python -m gateway.settings_doc` writes docs/configuration.md from this class, and a test
keeps the two in step.
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
    gateway_env: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses development defaults: the development signing key, the mock as the "
        "only model, a missing `SUPABASE_URL` or `GATEWAY_ENCRYPTION_KEYS`.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on (also `--host`).")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (also `--port`; Render sets it).")
    log_level: str = Field("INFO", description="Log level: `DEBUG`, `INFO`, `WARNING` or `ERROR`.")
    gateway_log_format: Literal["text", "json"] | None = Field(
        None, description="The log line format; unset: json in production, text in development."
    )
    web_concurrency: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Worker processes serving the one port (Render's convention). Unset: 1 in development and "
        "without `REDIS_URL`; in production with Redis, the cores this process may use (its CPU affinity and "
        "cgroup quota), at most 8. With more than 1, a small supervisor starts the workers, each binding the port "
        "with `SO_REUSEPORT` and running the whole gateway with its own drain; it forwards SIGTERM and SIGINT, "
        "restarts a worker that dies (with backoff) and exits once all have. Without Redis, what several "
        "instances share through it is per worker (see README, Several instances).",
    )
    gateway_data_dir: Path = Field(
        Path("data"),
        description="Local files: the SQLite database, the ledger spool kept through a database outage, and "
        "(in development) the generated signing and encryption keys. Created at start.",
    )

    # -- auth -------------------------------------------------------------------
    supabase_url: str | None = Field(
        None,
        description="Your Supabase project URL (`https://<ref>.supabase.co`), required in production. Tokens "
        "are verified against its JWKS, their `iss` must be its `/auth/v1`, and the pages sign in through "
        "its Auth API.",
    )
    supabase_anon_key: str | None = Field(
        None,
        description="The project's publishable (anon) key, public by design: with it the chat page and the "
        "dashboard sign users in with Supabase Auth (email and password, or a magic link).",
    )
    supabase_jwt_secret: SecretStr | None = Field(
        None, description="The project's legacy HS256 JWT secret, if it still signs tokens with it."
    )
    gateway_dev_signing_key: SecretStr | None = Field(
        None,
        description="Development only: the key the gateway signs its own development tokens with; unset, "
        "one is generated into the data dir. Give several instances the same one.",
    )
    gateway_jwt_audience: str = Field("authenticated", description="The `aud` every token must carry.")
    gateway_jwks_cache_s: float = Field(
        600.0, gt=0, le=600, description="How long the JWKS is kept (at most 10 minutes, as Supabase's edge)."
    )
    gateway_jwks_cooldown_s: float = Field(
        30.0, ge=0, description="Least time between JWKS refetches caused by tokens with an unknown key id."
    )
    gateway_ticket_ttl_s: float = Field(
        60.0, gt=0, le=600, description="Lifetime of a single-use ticket for `EventSource` and WebSocket URLs."
    )
    gateway_ws_auth_timeout_s: float = Field(
        5.0, gt=0, description="Time a WebSocket opened without credentials has to send its `auth` frame."
    )

    # -- storage ----------------------------------------------------------------
    gateway_store: Literal["sqlite", "postgres", "supabase"] = Field(
        "sqlite",
        description="Where streams, keys and budgets are kept: `sqlite` (a file in the data dir), `postgres` "
        "(`DATABASE_URL`) or `supabase` (PostgREST with `SUPABASE_SERVICE_ROLE_KEY`).",
    )
    database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL for `GATEWAY_STORE=postgres` (a Supabase database URL works too)."
    )
    supabase_service_role_key: SecretStr | None = Field(
        None, description="The project's secret (service role) key, for `GATEWAY_STORE=supabase`."
    )
    gateway_encryption_keys: SecretStr | None = Field(
        None,
        description="Keys that encrypt users' provider keys (AES-256-GCM): `kid:<base64 32 bytes>` entries "
        "separated by commas, the last one encrypts; or one base64 value. Required in production; in "
        "development one is generated into the data dir.",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Run several instances as one: stream logs (resume anywhere), tickets, per-user limits, the "
        "circuit breaker and live spend are shared through Redis. Unset, everything stays in the process.",
    )
    gateway_redis_prefix: str = Field(
        "gateway", description="Prefix of every Redis key and channel, so several deployments can share one Redis."
    )

    # -- providers --------------------------------------------------------------
    gateway_allow_operator_keys: bool = Field(
        False,
        description="Serve users who have no key of their own with the operator's `OPENAI_API_KEY`, "
        "`ANTHROPIC_API_KEY` and `GEMINI_API_KEY`.",
    )
    openai_api_key: SecretStr | None = Field(
        None, description="The operator's OpenAI key (used only with `GATEWAY_ALLOW_OPERATOR_KEYS`)."
    )
    anthropic_api_key: SecretStr | None = Field(
        None, description="The operator's Anthropic key (used only with `GATEWAY_ALLOW_OPERATOR_KEYS`)."
    )
    gemini_api_key: SecretStr | None = Field(
        None, description="The operator's Gemini key (used only with `GATEWAY_ALLOW_OPERATOR_KEYS`)."
    )
    openai_base_url: str | None = Field(None, description="OpenAI API base URL (a proxy or an emulator).")
    anthropic_base_url: str | None = Field(None, description="Anthropic API base URL (a proxy or an emulator).")
    gemini_base_url: str | None = Field(None, description="Gemini API base URL (a proxy or an emulator).")
    gateway_models: str | None = Field(
        None,
        description="A JSON list of models adding to or overriding the catalog.",
        json_schema_extra={
            "details": "Each entry has an `id`; a new model also needs a `provider` (`openai`, `anthropic`, "
            "`gemini`, or a compatible server's name). Optional: `upstream` (the name sent to the provider, "
            "default the id), `context_window`, `fallbacks` and `aliases` (lists of model ids), `tier`, "
            "`supports_prefill`, `first_token_timeout` and `inter_token_timeout` (seconds), and `price` "
            "(USD per million tokens: `input`, `output`, optional `cached_input`, `tier_threshold`, "
            "`tier_input`, `tier_output`, `tier_cached_input`, `cache_write_input`, `tier_cache_write_input`, "
            "`cache_write_1h_input`, `tier_cache_write_1h_input`; an unset cache price costs what input costs, an "
            "unset one-hour write price what other writes cost). An entry with a catalog id changes only the "
            "fields it names:\n\n"
            "```sh\n"
            'GATEWAY_MODELS=\'[{"id": "gpt-5-mini", "first_token_timeout": 60},\n'
            '  {"id": "my-model", "provider": "openai", "upstream": "gpt-4.1-nano", '
            '"price": {"input": 0.1, "output": 0.4}}]\'\n'
            "```"
        },
    )
    gateway_compatible_servers: str | None = Field(
        None,
        description="A JSON list of OpenAI-compatible servers (vLLM, Ollama, OpenRouter, Groq, Azure-style "
        "URLs); each becomes a provider of its own name.",
        json_schema_extra={
            "details": "Each server has a `name` (not `openai`, `anthropic`, `gemini` or `mock`), a `base_url` "
            "and its `models` (ids, or objects shaped like `GATEWAY_MODELS` entries without `provider`). "
            "Optional: `api_key` or `api_key_env` (the name of an environment variable holding it), which serves "
            "every user who has not stored a key of their own for that server (without one, the server is "
            "called without a key); `key_header` "
            "(send the key in this header instead of `Authorization: Bearer`), `headers` (extra request "
            "headers), `max_tokens_field` (default `max_tokens`), `include_usage` (default true):\n\n"
            "```sh\n"
            'GATEWAY_COMPATIBLE_SERVERS=\'[{"name": "ollama", "base_url": "http://127.0.0.1:11434/v1", '
            '"models": ["llama3.1"]},\n'
            '  {"name": "groq", "base_url": "https://api.groq.com/openai/v1", '
            '"api_key_env": "GROQ_API_KEY",\n'
            '   "models": [{"id": "groq-llama", "upstream": "llama-3.1-8b-instant", '
            '"price": {"input": 0.05, "output": 0.08}}]}]\'\n'
            "```"
        },
    )
    gateway_strict_params: bool = Field(
        True,
        description="How the SDK faces (`POST /v1/chat/completions`) treat a request field the model (or the "
        "gateway) cannot take, such as `temperature` on a reasoning model: true refuses the request with 400 "
        "`unsupported_parameter` naming the field; false drops the field and reports it in the "
        "`x-gateway-dropped-params` header and the reply's `gateway.dropped_params`. A request may choose "
        "for itself with the extra body field `strict_params`. Either way a fallback model that cannot take what "
        "the request keeps is left out of the chain, named in `gateway.skipped` (`cannot_honour`).",
    )
    gateway_mock_enabled: bool = Field(
        True, description="Offer the built-in `mock` and `mock-backup` models (no keys, scriptable faults)."
    )
    gateway_mock_tokens: int = Field(
        32, ge=1, le=100_000, description="Words in a mock answer unless the prompt says otherwise."
    )
    gateway_mock_delay_ms: float = Field(20.0, ge=0, description="Delay between mock tokens, in milliseconds.")

    # -- limits -----------------------------------------------------------------
    gateway_max_concurrent_streams: int = Field(
        8, ge=1, description="Streams one user may run at once (on all instances, with Redis)."
    )
    gateway_starts_per_minute: int = Field(
        60, ge=1, description="Streams one user may start per minute (on all instances, with Redis)."
    )
    gateway_ws_messages_per_second: float = Field(
        20.0, gt=0, description="Frames per second a WebSocket may send (bursts of twice that)."
    )
    gateway_max_frame_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest request body or WebSocket frame, in bytes."
    )
    gateway_max_messages: int = Field(256, ge=1, description="Most messages in one chat request.")
    gateway_max_prompt_chars: int = Field(400_000, ge=1, description="Most characters in one chat request's messages.")
    gateway_resume_window_s: float = Field(
        60.0, ge=0, description="How long a stream whose client dropped keeps generating, waiting for a resume."
    )
    gateway_stream_log_max_events: int = Field(
        10_000, ge=16, description="Events of a stream kept for resuming (older ones answer `resume_too_old`)."
    )
    gateway_stream_log_max_bytes: int = Field(
        4 * 1024 * 1024, ge=4096, description="Bytes of a stream's events kept for resuming."
    )
    gateway_responses_ttl_s: float = Field(
        86_400.0,
        ge=0,
        description="How long a Responses API response is kept (for `previous_response_id`, `item_reference` and "
        "`GET /v1/responses/{id}`) unless the request said `store: false`; 0 keeps none and refuses `store: true`.",
    )
    gateway_responses_memory_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Without Redis: the most bytes of kept responses held in memory (the oldest go first).",
    )
    gateway_drain_deadline_s: float = Field(
        25.0,
        ge=0,
        description="On SIGTERM, how long running streams may finish (readiness fails at once; the rest are "
        "stopped with `server.draining` and billed, and the process exits 0).",
    )
    gateway_sse_ping_s: float = Field(15.0, gt=0, description="Seconds between SSE heartbeat comments.")
    gateway_first_token_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A model silent this long before its first token has stalled: the answer moves to the next "
        "model. A catalog entry may set its own (GPT-5 and Gemini 2.5, which think silently, have 120 s).",
    )
    gateway_inter_token_timeout_s: float = Field(
        30.0, gt=0, description="A model silent this long between tokens has stalled: the answer moves on."
    )
    gateway_request_deadline_s: float = Field(
        120.0, gt=0, description="Time retries and fallbacks have to get an answer started."
    )
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
    gateway_cors_origins: str = Field(
        "",
        description="Comma-separated origins whose browser apps may call the API (also checked against a "
        "WebSocket's `Origin`); the gateway's own pages need none.",
    )
    gateway_metrics_token: SecretStr | None = Field(
        None, description="A bearer token that may scrape `/metrics` from anywhere."
    )
    gateway_metrics_allow: str = Field(
        "127.0.0.1,::1", description="Addresses or networks (comma-separated) that may scrape `/metrics` without it."
    )

    # -- observability ----------------------------------------------------------
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        description="Send OpenTelemetry traces (a span per stream, a child span per attempt, GenAI conventions) "
        "to this OTLP collector, e.g. `http://collector:4318` (`/v1/traces` is added; "
        "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as it is). Unset: no tracing, at no cost. The SDK reads the "
        "other standard variables itself: `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (default "
        "`agent-gateway`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`; `OTEL_SDK_DISABLED=true` "
        "turns it off.",
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        "http/protobuf",
        description="How traces reach the collector (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` wins when set); `grpc` "
        "needs the `opentelemetry-exporter-otlp-proto-grpc` package installed beside the gateway.",
    )

    @field_validator("supabase_url", "openai_base_url", "anthropic_base_url", "gemini_base_url")
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
