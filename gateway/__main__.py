"""`python -m gateway`: run the gateway with uvicorn (uvloop, httptools), draining gracefully on SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.serving import GatewayServer
from gateway.settings import SettingsError, load_settings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Streaming agent gateway")
    parser.add_argument("--host", default=None, help="bind address (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
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
    try:
        app = create_app(settings)
    except SettingsError as exc:  # e.g. an OpenTelemetry exporter that is not installed
        print(exc, file=sys.stderr)
        return 2
    services = app.state.services
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
    GatewayServer(config, services).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
