"""Encryption of users' provider keys at rest: AES-256-GCM with a key id prefix.

A stored secret reads `<kid>:<base64url(nonce || ciphertext || tag)>`. Several keys may be configured
(`GATEWAY_ENCRYPTION_KEYS="k1:<b64>,k2:<b64>"`): all decrypt, the last one encrypts, so rotating is
"append a key, restart, run `python -m gateway.rotate_keys`, later drop the old key". The associated data
binds each ciphertext to its user and provider: a row copied to another user or provider fails to decrypt.

No error message or repr here ever contains key material, plaintext or ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from gateway.settings import Settings

KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NONCE_BYTES = 12
TAG_BYTES = 16
DEV_KEY_FILE = "encryption-keys"
_AAD_PREFIX = b"gateway/user-secret/v1\x00"


class CryptoError(Exception):
    """A secret could not be encrypted or decrypted. The message is safe to log and to show."""


class KeyConfigError(CryptoError):
    """GATEWAY_ENCRYPTION_KEYS (or the development key file) is not usable."""


class UnknownKeyId(CryptoError):
    def __init__(self, kid: str) -> None:
        super().__init__(f"secret was encrypted under key id {kid!r}, which is not configured")
        self.kid = kid


class MalformedSecret(CryptoError):
    pass


class DecryptionFailed(CryptoError):
    pass


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (Render's generated values are standard base64)."""
    t = text.strip()
    t += "=" * (-len(t) % 4)
    alphabet_ok = re.fullmatch(r"[A-Za-z0-9+/=]*|[A-Za-z0-9_\-=]*", t)
    if not alphabet_ok:
        raise ValueError("not base64")
    return base64.b64decode(t, altchars=b"-_" if ("-" in t or "_" in t) else None, validate=True)


def _aad(user_id: str, provider: str) -> bytes:
    return _AAD_PREFIX + user_id.encode() + b"\x00" + provider.encode()


class KeyRing:
    """Configured encryption keys, oldest first; the last one encrypts."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyConfigError("no encryption key configured")
        self._aeads: dict[str, AESGCM] = {}
        for n, (kid, key) in enumerate(keys, start=1):
            if not KID.match(kid):
                raise KeyConfigError(f"encryption key #{n}: key id must be 1-32 of A-Z a-z 0-9 _ -")
            if kid in self._aeads:
                raise KeyConfigError(f"encryption key #{n}: key id {kid!r} appears twice")
            if len(key) != 32:
                raise KeyConfigError(f"encryption key #{n} ({kid!r}) must be 32 bytes (256 bits), not {len(key)}")
            self._aeads[kid] = AESGCM(key)
        self.current_kid = keys[-1][0]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """`kid:base64,kid:base64` (last encrypts), or one bare base64 value (key id `k1`)."""
        entries = [e.strip() for e in spec.split(",") if e.strip()]
        if not entries:
            raise KeyConfigError("GATEWAY_ENCRYPTION_KEYS is empty")
        keys: list[tuple[str, bytes]] = []
        for n, entry in enumerate(entries, start=1):
            kid, sep, b64 = entry.partition(":")
            if not sep:
                if len(entries) > 1:
                    raise KeyConfigError(f"GATEWAY_ENCRYPTION_KEYS entry #{n} needs a key id: kid:base64")
                kid, b64 = "k1", entry
            try:
                key = _b64decode(b64)
            except (ValueError, binascii.Error):
                raise KeyConfigError(f"GATEWAY_ENCRYPTION_KEYS entry #{n} ({kid!r}) is not valid base64") from None
            keys.append((kid, key))
        return cls(keys)

    @classmethod
    def load_or_create_dev(cls, data_dir: Path) -> KeyRing:
        """Development only: a key generated once into the data dir, so `python -m gateway` needs no set-up."""
        path = data_dir / DEV_KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            line = "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode() + "\n"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(line)
        return cls.parse(path.read_text())

    @property
    def key_ids(self) -> list[str]:
        return list(self._aeads)

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={self.key_ids!r}, current={self.current_kid!r})"

    def encrypt(self, plaintext: str, *, user_id: str, provider: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aeads[self.current_kid].encrypt(nonce, plaintext.encode(), _aad(user_id, provider))
        return f"{self.current_kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    @staticmethod
    def key_id_of(token: str) -> str:
        kid, sep, _ = token.partition(":")
        if not sep or not KID.match(kid):
            raise MalformedSecret("stored secret has no key id prefix")
        return kid

    def needs_rotation(self, token: str) -> bool:
        return self.key_id_of(token) != self.current_kid

    def decrypt(self, token: str, *, user_id: str, provider: str) -> str:
        kid = self.key_id_of(token)
        aead = self._aeads.get(kid)
        if aead is None:
            raise UnknownKeyId(kid)
        try:
            blob = _b64decode(token.partition(":")[2])
        except (ValueError, binascii.Error):
            raise MalformedSecret("stored secret is not valid base64") from None
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise MalformedSecret("stored secret is too short")
        try:
            plain = aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(user_id, provider))
        except InvalidTag:
            raise DecryptionFailed(
                f"secret under key id {kid!r} failed authentication: it was altered, or it belongs to another "
                "user or provider"
            ) from None
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise DecryptionFailed("decrypted secret is not text") from None

    def reencrypt(self, token: str, *, user_id: str, provider: str) -> str:
        return self.encrypt(self.decrypt(token, user_id=user_id, provider=provider), user_id=user_id, provider=provider)


# Well-known key prefixes (they name the key type, not the key): shown so a user can tell keys apart.
_KNOWN_PREFIXES = ("sk-proj-", "sk-svcacct-", "sk-ant-", "sk-", "AIza", "gsk_", "xai-")


def mask(key: str) -> str:
    """A hint that lets a user recognise a key without revealing it: a well-known prefix and the last 4."""
    key = key.strip()
    prefix = next((p for p in _KNOWN_PREFIXES if key.startswith(p)), "") if len(key) >= 20 else ""
    tail = key[-4:] if len(key) >= 16 else ""
    return f"{prefix}…{tail}"


def key_ring_for(settings: Settings) -> KeyRing:
    """The configured keys; in development without any, a key generated into the data dir."""
    if settings.gateway_encryption_keys is not None:
        return KeyRing.parse(settings.gateway_encryption_keys.get_secret_value())
    if settings.is_dev:
        return KeyRing.load_or_create_dev(settings.gateway_data_dir)
    raise KeyConfigError("GATEWAY_ENCRYPTION_KEYS is required in production")
