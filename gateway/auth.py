"""Verifying who a caller is: Supabase access tokens (and, in development, tokens we mint ourselves)."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

DEV_ISSUER = "gateway-dev"
DEV_USER_ID = "00000000-0000-4000-8000-000000000001"


@dataclass(slots=True, frozen=True)
class Principal:
    user_id: str
    role: str
    expires_at: float | None = None
    email: str | None = None

    @property
    def is_service(self) -> bool:
        return self.role == "service_role"


class AuthError(Exception):
    """A refused credential. `code` is stable; the message never echoes the token."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


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


@dataclass(slots=True)
class HS256Verifier:
    """Shared-secret tokens: Supabase's legacy JWT secret, or our development key."""

    secret: str
    issuer: str | None
    audience: str

    def verify(self, token: str) -> dict[str, object]:
        return jwt.decode(
            token,
            self.secret,
            algorithms=["HS256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "sub", "aud"]},
            leeway=5,
        )


def claims_to_principal(claims: dict[str, object]) -> Principal:
    role = str(claims.get("role", ""))
    if role == "anon" or (claims.get("is_anonymous") is True and role != "authenticated"):
        raise AuthError("anon_refused", "anonymous tokens cannot use the gateway", 403)
    if role not in ("authenticated", "service_role"):
        raise AuthError("invalid_role", "the token's role is not allowed", 403)
    sub = str(claims.get("sub", ""))
    try:
        uuid.UUID(sub)
    except ValueError:
        raise AuthError("invalid_token", "the token's subject is not a user id") from None
    exp = claims.get("exp")
    email = claims.get("email")
    return Principal(sub, role, float(exp) if isinstance(exp, int | float) else None, str(email) if email else None)


def map_jwt_error(exc: jwt.PyJWTError) -> AuthError:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return AuthError("token_expired", "the token has expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return AuthError("token_not_yet_valid", "the token is not valid yet")
    if isinstance(exc, jwt.InvalidAudienceError):
        return AuthError("invalid_audience", "the token is for another audience")
    if isinstance(exc, jwt.InvalidIssuerError):
        return AuthError("invalid_issuer", "the token is from another issuer")
    if isinstance(exc, jwt.InvalidSignatureError):
        return AuthError("invalid_signature", "the token's signature does not verify")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return AuthError("invalid_algorithm", "the token's algorithm is not accepted")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError("invalid_token", f"the token lacks the {exc.claim!r} claim")
    return AuthError("invalid_token", "the token is malformed")


class Authenticator:
    """Turns a bearer token into a Principal, trying each configured verifier."""

    def __init__(self, verifiers: list[HS256Verifier], dev_verifier: HS256Verifier | None = None) -> None:
        self._verifiers = verifiers
        self._dev = dev_verifier

    async def verify(self, token: str) -> Principal:
        if not token:
            raise AuthError("missing_token", "authentication required")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is malformed") from None
        if header.get("alg") != "HS256":
            raise AuthError("invalid_algorithm", "the token's algorithm is not accepted")
        candidates = list(self._verifiers)
        if self._dev is not None:
            candidates.append(self._dev)
        last: AuthError = AuthError("invalid_signature", "the token's signature does not verify")
        for v in candidates:
            try:
                return claims_to_principal(v.verify(token))
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                last = map_jwt_error(exc)
                if not isinstance(exc, jwt.InvalidIssuerError):
                    raise last from None
        raise last

    def mint_dev_token(
        self, user_id: str = DEV_USER_ID, ttl_s: int = 7 * 24 * 3600, role: str = "authenticated"
    ) -> str:
        if self._dev is None:
            raise RuntimeError("development tokens are only available in development mode")
        now = int(time.time())
        claims = {
            "sub": user_id,
            "role": role,
            "aud": self._dev.audience,
            "iss": self._dev.issuer,
            "iat": now,
            "exp": now + ttl_s,
            "email": "dev@localhost",
        }
        return jwt.encode(claims, self._dev.secret, algorithm="HS256")
