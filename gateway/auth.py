"""Verifying who a caller is: Supabase access tokens (and, in development, tokens we mint ourselves)."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from gateway.jwks import ASYMMETRIC_ALGORITHMS, JWKSCache
from sessions.errors import GatewayError, fail

if TYPE_CHECKING:
    from jwt.types import Options

DEV_ISSUER = "gateway-dev"
DEV_USER_ID = "00000000-0000-4000-8000-000000000001"

MAX_TOKEN_CHARS = 16_384
LEEWAY_S = 5


@dataclass(slots=True, frozen=True)
class Principal:
    user_id: str
    role: str
    expires_at: float | None = None
    email: str | None = None

    @property
    def is_service(self) -> bool:
        return self.role == "service_role"

    @property
    def has_user(self) -> bool:
        """False for the project's service-role key, which stands for the project, not for a user."""
        return bool(self.user_id)


_REQUIRED_CLAIMS = ["exp", "sub", "aud"]


# Supabase's legacy `service_role` API key is a JWT signed with the project's secret but not an access token:
# no `sub`, no `aud`, and `iss` "supabase". It is accepted as the service role, with no user.
SERVICE_KEY_ISSUER = "supabase"


def looks_like_service_key(token: str) -> bool:
    """Only routes the token to the service-key check; nothing is trusted before its signature verifies."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(claims, dict) and claims.get("role") == "service_role" and "sub" not in claims


def _decode_options(issuer: str | None) -> Options:
    # nbf and iat are checked whenever present; exp, sub, aud (and iss when we know the issuer) must be there.
    return {"require": [*_REQUIRED_CLAIMS, "iss"] if issuer else list(_REQUIRED_CLAIMS)}


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
            options=_decode_options(self.issuer),
            leeway=LEEWAY_S,
        )

    def verify_service_key(self, token: str) -> dict[str, object]:
        claims: dict[str, object] = jwt.decode(
            token,
            self.secret,
            algorithms=["HS256"],
            options={"require": ["exp", "role"], "verify_aud": False},
            leeway=LEEWAY_S,
        )
        if claims.get("iss") not in (SERVICE_KEY_ISSUER, self.issuer):
            raise jwt.InvalidIssuerError("not this project's service key")
        return claims


@dataclass(slots=True)
class JWKSVerifier:
    """Asymmetric tokens (ES256, RS256) signed by a key from the project's JWKS."""

    jwks: JWKSCache
    issuer: str
    audience: str

    async def verify(self, token: str, header: dict[str, Any]) -> dict[str, object]:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise fail("invalid_token", "the token names no signing key (kid)")
        key = await self.jwks.key(kid)
        if key.algorithm_name != header.get("alg"):
            # The key decides the algorithm, never the token's header.
            raise fail("invalid_algorithm", "the token's algorithm does not match its key")
        return jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
            audience=self.audience,
            issuer=self.issuer,
            options=_decode_options(self.issuer),
            leeway=LEEWAY_S,
        )

    async def aclose(self) -> None:
        await self.jwks.aclose()


def claims_to_principal(claims: dict[str, object]) -> Principal:
    role = str(claims.get("role", ""))
    if role == "anon" or (claims.get("is_anonymous") is True and role != "authenticated"):
        raise fail("anon_refused", "anonymous tokens cannot use the gateway")
    if role not in ("authenticated", "service_role"):
        raise fail("invalid_role", "the token's role is not allowed")
    sub = str(claims.get("sub", ""))
    try:
        uuid.UUID(sub)
    except ValueError:
        raise fail("invalid_token", "the token's subject is not a user id") from None
    exp = claims.get("exp")
    email = claims.get("email")
    return Principal(sub, role, float(exp) if isinstance(exp, int | float) else None, str(email) if email else None)


def map_jwt_error(exc: jwt.PyJWTError) -> GatewayError:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return fail("token_expired", "the token has expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return fail("token_not_yet_valid", "the token is not valid yet")
    if isinstance(exc, jwt.InvalidAudienceError):
        return fail("invalid_audience", "the token is for another audience")
    if isinstance(exc, jwt.InvalidIssuerError):
        return fail("invalid_issuer", "the token is from another issuer")
    if isinstance(exc, jwt.InvalidSignatureError):
        return fail("invalid_signature", "the token's signature does not verify")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return fail("invalid_algorithm", "the token's algorithm is not accepted")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return fail("invalid_token", f"the token lacks the {exc.claim!r} claim")
    return fail("invalid_token", "the token is malformed")


# Every code `Authenticator.verify` can raise (the OpenAPI document lists them on each route that verifies).
VERIFY_CODES = (
    "missing_token",
    "invalid_token",
    "token_expired",
    "token_not_yet_valid",
    "invalid_signature",
    "invalid_algorithm",
    "invalid_audience",
    "invalid_issuer",
    "unknown_key",
    "anon_refused",
    "invalid_role",
    "auth_unavailable",
)


class Authenticator:
    """Turns a bearer token into a Principal.

    The token's `alg` header only picks which verifier may try it: HS256 goes to the shared secrets (Supabase's
    legacy secret, the development key), ES256/RS256 to the JWKS. Each verifier then decodes with its own
    fixed algorithm list, so `none` and HS/RS confusion are refused by construction.
    """

    def __init__(
        self,
        verifiers: list[HS256Verifier],
        dev_verifier: HS256Verifier | None = None,
        jwks: JWKSVerifier | None = None,
        *,
        remember_s: float = 0.0,
        remember_max: int = 4096,
    ) -> None:
        self._verifiers = verifiers
        self._dev = dev_verifier
        self._jwks = jwks
        # Tokens verified lately, so a client opening many streams pays for one signature check. Kept no
        # longer than the JWKS cache may keep a key, so a withdrawn key stops working just as soon.
        self._remember_s = remember_s
        self._remember_max = remember_max
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    @property
    def jwks(self) -> JWKSVerifier | None:
        return self._jwks

    async def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            until, principal = hit
            if time.monotonic() < until and (principal.expires_at is None or time.time() < principal.expires_at):
                return principal
            del self._verified[token]
        principal = await self._verify(token)
        if self._remember_s > 0:
            self._verified[token] = (time.monotonic() + self._remember_s, principal)
            if len(self._verified) > self._remember_max:
                self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        if not token:
            raise fail("missing_token", "authentication required")
        if len(token) > MAX_TOKEN_CHARS:
            raise fail("invalid_token", "the token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise fail("invalid_token", "the token is malformed") from None
        alg = header.get("alg")
        if alg in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
            try:
                return claims_to_principal(await self._jwks.verify(token, header))
            except jwt.PyJWTError as exc:
                raise map_jwt_error(exc) from None
        if alg == "HS256" and self._verifiers and looks_like_service_key(token):
            return self._service_key(token)
        candidates = [*self._verifiers, *([self._dev] if self._dev is not None else [])]
        if alg != "HS256" or not candidates:
            raise fail("invalid_algorithm", "the token's algorithm is not accepted")
        last: GatewayError = fail("invalid_signature", "the token's signature does not verify")
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

    def _service_key(self, token: str) -> Principal:
        """The project's service-role key, checked against the project's secrets (never the development key)."""
        for v in self._verifiers:
            try:
                claims = v.verify_service_key(token)
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise map_jwt_error(exc) from None
            exp = claims.get("exp")
            return Principal("", "service_role", float(exp) if isinstance(exp, int | float) else None)
        raise fail("invalid_signature", "the token's signature does not verify")

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()

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
