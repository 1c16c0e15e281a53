"""`python -m gateway`: run the gateway with uvicorn (uvloop, httptools), draining gracefully on SIGTERM; with
`WEB_CONCURRENCY` above 1, as several worker processes on one port under a small supervisor (gateway.workers)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys

from gateway.logs import configure_logging
from gateway.settings import Settings, SettingsError, load_settings
from gateway.workers import PER_WORKER_WITHOUT_REDIS, Supervisor, tag_logs, worker_command, worker_count

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

log = logging.getLogger("gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Streaming agent gateway")
    parser.add_argument("--host", default=None, help="bind address (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    # Set by the supervisor: run as worker i; or only make the files the workers share, then exit.
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.gateway_log_format or ("text" if settings.is_dev else "json"))
    if args.prepare_only:
        prepare_shared_files(settings)
        return 0
    workers = worker_count(settings)
    if args.worker_index is None and workers > 1:
        return supervise(settings, workers)
    if args.worker_index is not None:
        tag_logs(args.worker_index)
    return serve(settings, args.worker_index)


def supervise(settings: Settings, workers: int) -> int:
    if settings.port == 0:
        print("WEB_CONCURRENCY above 1 needs a fixed port: the workers all bind the same one", file=sys.stderr)
        return 2
    if settings.redis_url is None:
        log.warning(
            PER_WORKER_WITHOUT_REDIS,
            extra={"workers": workers, "also_per_worker": "tickets, kept responses, live spend"},
        )
    command = worker_command(settings.host, settings.port)
    # In a child of its own, so the supervisor never imports (and holds the memory of) the stores and keys.
    prepared = subprocess.run([*command, "--prepare-only"], check=False).returncode  # noqa: S603 - our own module
    if prepared != 0:
        return prepared
    return Supervisor(workers, command).run()


def prepare_shared_files(settings: Settings) -> None:
    """Files every worker would otherwise race to create on a fresh data dir: made once, before they start."""
    from gateway.crypto import KeyRing
    from gateway.stores.sqlite import SQLiteStore
    from gateway.wiring import load_dev_key

    settings.gateway_data_dir.mkdir(parents=True, exist_ok=True)
    if settings.is_dev and settings.gateway_dev_signing_key is None:
        load_dev_key(settings.gateway_data_dir)
    if settings.is_dev and settings.gateway_encryption_keys is None:
        KeyRing.load_or_create_dev(settings.gateway_data_dir)
    if settings.gateway_store == "sqlite":  # the schema, migrated once rather than by every worker at once

        async def migrate() -> None:
            store = SQLiteStore(settings.gateway_data_dir / "gateway.sqlite3")
            await store.open()
            await store.aclose()

        asyncio.run(migrate())


def serve(settings: Settings, worker: int | None) -> int:
    """One process: the whole gateway (a single process, or worker `worker` of several)."""
    import uvicorn

    from gateway.app import create_app
    from gateway.serving import GatewayServer
    from gateway.workers import reuse_port_socket

    try:
        app = create_app(settings, worker=worker)
    except SettingsError as exc:  # e.g. an OpenTelemetry exporter that is not installed
        print(exc, file=sys.stderr)
        return 2
    services = app.state.services
    if worker in (None, 0):  # the first worker speaks for them all
        url = f"http://{settings.host if ':' not in settings.host else f'[{settings.host}]'}:{settings.port}"
        print(f"Gateway on {url}  (chat: {url}/  dashboard: {url}/dashboard  protocol: docs/protocol.md)", flush=True)
        if settings.is_dev and settings.host in LOOPBACK and services.dev_token:
            print("Development token (send as Authorization: Bearer <token>):", flush=True)
            print(services.dev_token, flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=max(settings.gateway_max_frame_bytes * 4, 1 << 20),
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        # Streams are drained before uvicorn's shutdown starts (see gateway.serving); this only bounds the
        # closing of what is left (idle sockets, keep-alive connections).
        timeout_graceful_shutdown=3,
    )
    sockets = None if worker is None else [reuse_port_socket(settings.host, settings.port)]
    GatewayServer(config, services).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
