"""`python -m gateway.rotate_keys`: re-encrypt every stored provider key under the newest encryption key.

Rotation: append a new key to GATEWAY_ENCRYPTION_KEYS (`old:<b64>,new:<b64>`), deploy, run this, then drop
the old key. Rows are swapped with a compare-and-swap, so a key a user replaces meanwhile is left alone;
running it twice is harmless. Prints counts and, for rows it cannot decrypt, which row and why (never a key).
Exits 1 if any row failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field

from gateway.crypto import CryptoError, KeyRing, key_ring_for
from gateway.settings import SettingsError, load_settings
from gateway.stores.base import SecretStore, StoreError, StoreUnavailable
from gateway.wiring import build_store


@dataclass(slots=True)
class RotationReport:
    total: int = 0
    rotated: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    failed: list[str] = field(default_factory=list)


async def rotate(store: SecretStore, ring: KeyRing, *, dry_run: bool = False) -> RotationReport:
    report = RotationReport()
    for row in await store.all_secrets():
        report.total += 1
        try:
            if not ring.needs_rotation(row.ciphertext):
                report.current += 1
                continue
            token = ring.reencrypt(row.ciphertext, user_id=row.user_id, provider=row.provider)
        except CryptoError as exc:
            report.failed.append(f"user {row.user_id} provider {row.provider} key id {row.key_id!r}: {exc}")
            continue
        if dry_run or await store.replace_secret(row.user_id, row.provider, row.ciphertext, token, ring.current_kid):
            report.rotated += 1
        else:
            report.changed_meanwhile += 1
    return report


async def run(dry_run: bool) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        ring = key_ring_for(settings)
    except CryptoError as exc:
        print(f"encryption keys: {exc}", file=sys.stderr)
        return 2
    store = build_store(settings)
    await store.open()
    try:
        report = await rotate(store, ring, dry_run=dry_run)
    except (StoreError, StoreUnavailable) as exc:
        print(f"store: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.aclose()
    for line in report.failed:
        print(f"failed: {line}", file=sys.stderr)
    verb = "would be re-encrypted" if dry_run else "re-encrypted"
    print(
        f"{report.total} stored keys: {report.rotated} {verb}, {report.current} already under "
        f"{ring.current_kid!r}, {report.changed_meanwhile} changed meanwhile (left alone), {len(report.failed)} failed"
    )
    return 1 if report.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.rotate_keys", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="decrypt and re-encrypt in memory only")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.dry_run))


if __name__ == "__main__":
    sys.exit(main())
