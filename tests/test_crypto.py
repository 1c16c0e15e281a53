"""Encryption of stored provider keys: round trip, rotation, wrong key id, tampering, swapped rows.

Every failure must say clearly what went wrong and never carry key material (the encryption keys, the
plaintext provider key, or the ciphertext).
"""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest

from gateway.crypto import (
    CryptoError,
    DecryptionFailed,
    KeyConfigError,
    KeyRing,
    MalformedSecret,
    UnknownKeyId,
    mask,
)
from gateway.stores.sqlite import SQLiteStore

USER_A = "7d3c1a52-0a43-4f5e-9a55-0c8f3b1b2a01"
USER_B = "3b9f2f10-5d7e-4b5b-8e0e-2f4d8c6a7b02"
SECRET = "sk-proj-THIS-IS-THE-USERS-PROVIDER-KEY-1234abcd"


def b64key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode()


def spec(*kids: tuple[str, int]) -> str:
    return ",".join(f"{kid}:{b64key(seed)}" for kid, seed in kids)


def assert_clean(exc: BaseException, *material: str) -> None:
    text = f"{exc}|{exc!r}|{exc.args!r}"
    for m in material:
        assert m not in text, "key material leaked into an error"
    for seed in range(1, 6):
        assert b64key(seed) not in text and b64key(seed).rstrip("=") not in text


def test_round_trip_and_format() -> None:
    ring = KeyRing.parse(spec(("k1", 1)))
    token = ring.encrypt(SECRET, user_id=USER_A, provider="openai")
    assert token.startswith("k1:")
    assert SECRET not in token
    assert ring.decrypt(token, user_id=USER_A, provider="openai") == SECRET
    # A fresh nonce each time: the same key never encrypts to the same text.
    assert ring.encrypt(SECRET, user_id=USER_A, provider="openai") != token


def test_newest_key_encrypts_and_every_key_decrypts() -> None:
    old = KeyRing.parse(spec(("k1", 1)))
    token_old = old.encrypt(SECRET, user_id=USER_A, provider="openai")
    ring = KeyRing.parse(spec(("k1", 1), ("k2", 2)))
    assert ring.current_kid == "k2" and ring.key_ids == ["k1", "k2"]
    token_new = ring.encrypt(SECRET, user_id=USER_A, provider="openai")
    assert token_new.startswith("k2:")
    assert ring.decrypt(token_old, user_id=USER_A, provider="openai") == SECRET
    assert ring.needs_rotation(token_old) and not ring.needs_rotation(token_new)
    rotated = ring.reencrypt(token_old, user_id=USER_A, provider="openai")
    assert rotated.startswith("k2:")
    assert KeyRing.parse(spec(("k2", 2))).decrypt(rotated, user_id=USER_A, provider="openai") == SECRET


def test_wrong_key_id_is_a_clear_error() -> None:
    token = KeyRing.parse(spec(("old", 1))).encrypt(SECRET, user_id=USER_A, provider="openai")
    ring = KeyRing.parse(spec(("new", 2)))
    with pytest.raises(UnknownKeyId) as info:
        ring.decrypt(token, user_id=USER_A, provider="openai")
    assert "'old'" in str(info.value) and "not configured" in str(info.value)
    assert_clean(info.value, SECRET, token.partition(":")[2])


def test_same_key_id_but_a_different_key_fails_authentication() -> None:
    token = KeyRing.parse(spec(("k1", 1))).encrypt(SECRET, user_id=USER_A, provider="openai")
    with pytest.raises(DecryptionFailed) as info:
        KeyRing.parse(spec(("k1", 3))).decrypt(token, user_id=USER_A, provider="openai")
    assert_clean(info.value, SECRET, token.partition(":")[2])


@pytest.mark.parametrize("position", [0, 5, 12, 20, -1])
def test_tampered_ciphertext_fails(position: int) -> None:
    ring = KeyRing.parse(spec(("k1", 1)))
    token = ring.encrypt(SECRET, user_id=USER_A, provider="openai")
    kid, _, payload = token.partition(":")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[position] ^= 0x01
    forged = kid + ":" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(DecryptionFailed) as info:
        ring.decrypt(forged, user_id=USER_A, provider="openai")
    assert "altered" in str(info.value)
    assert_clean(info.value, SECRET, payload, forged)


def test_a_row_copied_to_another_user_or_provider_fails() -> None:
    ring = KeyRing.parse(spec(("k1", 1)))
    token = ring.encrypt(SECRET, user_id=USER_A, provider="openai")
    for user, provider in ((USER_B, "openai"), (USER_A, "anthropic")):
        with pytest.raises(DecryptionFailed) as info:
            ring.decrypt(token, user_id=user, provider=provider)
        assert "another user or provider" in str(info.value)
        assert_clean(info.value, SECRET, token)


@pytest.mark.parametrize("token", ["", "no-prefix-at-all", "k1:", "k1:@@@@", "k1:AAAA", "bad kid!:AAAA"])
def test_malformed_secrets(token: str) -> None:
    ring = KeyRing.parse(spec(("k1", 1)))
    with pytest.raises(CryptoError) as info:
        ring.decrypt(token, user_id=USER_A, provider="openai")
    assert isinstance(info.value, MalformedSecret | DecryptionFailed)


def test_a_single_bare_base64_value_is_key_k1() -> None:
    # What Render's `generateValue: true` produces: 256 random bits, base64.
    value = base64.b64encode(os.urandom(32)).decode()
    ring = KeyRing.parse(value)
    assert ring.key_ids == ["k1"]
    assert ring.decrypt(ring.encrypt("x" * 40, user_id=USER_A, provider="gemini"), user_id=USER_A, provider="gemini")
    assert KeyRing.parse(value.rstrip("=")).key_ids == ["k1"]  # unpadded too
    assert KeyRing.parse(base64.urlsafe_b64encode(os.urandom(32)).decode()).key_ids == ["k1"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " , ",
        "k1:" + base64.b64encode(b"short").decode(),
        "k1:not base64 at all!!",
        spec(("k1", 1)) + "," + b64key(2),  # a bare value among several
        spec(("k1", 1), ("k1", 2)),
        "bad id:" + b64key(1),
    ],
)
def test_bad_key_configuration_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(KeyConfigError) as info:
        KeyRing.parse(bad)
    text = str(info.value)
    assert "GATEWAY_ENCRYPTION_KEYS" in text or "key" in text
    for part in bad.split(","):
        b64 = part.partition(":")[2] or part
        if len(b64) > 8:
            assert b64 not in text


def test_repr_shows_ids_only() -> None:
    ring = KeyRing.parse(spec(("k1", 1), ("k2", 2)))
    assert repr(ring) == "KeyRing(key_ids=['k1', 'k2'], current='k2')"


def test_development_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    a = KeyRing.load_or_create_dev(tmp_path)
    token = a.encrypt(SECRET, user_id=USER_A, provider="openai")
    b = KeyRing.load_or_create_dev(tmp_path)
    assert b.decrypt(token, user_id=USER_A, provider="openai") == SECRET
    mode = stat.S_IMODE((tmp_path / "encryption-keys").stat().st_mode)
    assert mode == 0o600


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwxyz0123456789wxyz", "sk-proj-…wxyz"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz9876", "sk-ant-…9876"),
        ("AIzaSyA-abcdefghijklmnopqrstuvwxyz5555", "AIza…5555"),
        ("unknownvendor-abcdefghijklmnopqrstuvwxyz7777", "…7777"),
        ("short-key-1", "…"),
    ],
)
def test_mask(key: str, hint: str) -> None:
    assert mask(key) == hint
    assert len(hint) < len(key) // 2 or len(key) < 16


# -- the re-encryption command --------------------------------------------------------------


async def test_rotate_keys_command_reencrypts_every_row_under_the_newest_key(tmp_path: Path) -> None:
    import asyncio

    store = SQLiteStore(tmp_path / "gateway.sqlite3")
    await store.open()
    old = KeyRing.parse(spec(("k1", 1)))
    secrets_by_row = {}
    for n in range(5):
        user = f"00000000-0000-4000-8000-00000000000{n}"
        for provider in ("openai", "anthropic"):
            plain = f"sk-{provider}-{n}-SECRETVALUE-{n * 7919}"
            secrets_by_row[(user, provider)] = plain
            await store.put_secret(
                user, provider, old.encrypt(plain, user_id=user, provider=provider), "k1", mask(plain)
            )
    await store.aclose()

    env = {
        **os.environ,
        "GATEWAY_ENV": "development",
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_STORE": "sqlite",
        "GATEWAY_ENCRYPTION_KEYS": spec(("k1", 1), ("k2", 2)),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.rotate_keys",
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    output = out.decode() + err.decode()
    assert "10 re-encrypted" in output
    for plain in secrets_by_row.values():
        assert plain not in output

    store = SQLiteStore(tmp_path / "gateway.sqlite3")
    await store.open()
    try:
        rows = await store.all_secrets()
        assert len(rows) == 10 and {r.key_id for r in rows} == {"k2"}
        only_new = KeyRing.parse(spec(("k2", 2)))
        for r in rows:
            assert r.ciphertext.startswith("k2:")
            assert (
                only_new.decrypt(r.ciphertext, user_id=r.user_id, provider=r.provider)
                == secrets_by_row[(r.user_id, r.provider)]
            )
    finally:
        await store.aclose()

    # Running it again changes nothing.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.rotate_keys",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and "0 re-encrypted" in out.decode()


async def test_rotate_keys_reports_rows_it_cannot_decrypt_and_exits_nonzero(tmp_path: Path) -> None:
    import asyncio

    store = SQLiteStore(tmp_path / "gateway.sqlite3")
    await store.open()
    lost = KeyRing.parse(spec(("gone", 4)))
    await store.put_secret(USER_A, "openai", lost.encrypt(SECRET, user_id=USER_A, provider="openai"), "gone", "…")
    good = KeyRing.parse(spec(("k1", 1)))
    await store.put_secret(USER_B, "openai", good.encrypt(SECRET, user_id=USER_B, provider="openai"), "k1", "…")
    await store.aclose()
    env = {
        **os.environ,
        "GATEWAY_ENV": "development",
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_ENCRYPTION_KEYS": spec(("k1", 1), ("k2", 2)),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.rotate_keys",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode() + err.decode()
    assert proc.returncode == 1
    assert "1 re-encrypted" in text and "1 failed" in text
    assert "'gone'" in text and USER_A in text
    assert SECRET not in text
    for seed in range(1, 5):
        assert b64key(seed) not in text
