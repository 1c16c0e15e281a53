"""The README's endpoint table names every route the app serves, and no route it does not serve."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import BaseRoute, WebSocketRoute

from gateway.app import create_app
from gateway.errors import all_routes
from tests.conftest import make_settings

README = Path(__file__).resolve().parent.parent / "README.md"
# Served, but not endpoints anyone calls: the pages' assets and Swagger UI's own helper page.
NOT_LISTED = {"/static/{}", "/docs/oauth2-redirect"}


def normalized(path: str) -> str:
    """`/v1/models/{model_id:path}` and `/v1/models/{id}` alike as `/v1/models/{}`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def listed() -> set[tuple[str, str]]:
    """(method, path) for each endpoint the table's first column names, e.g. `PUT/GET/DELETE /v1/keys/{provider}`."""
    text = README.read_text()
    table = text.split("| endpoint | what |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    out: set[tuple[str, str]] = set()
    for row in table.splitlines():
        first = row.split(" | ", 1)[0]
        for methods, path in re.findall(r"`([A-Z/]+) (/[^`]*)`", first):
            out |= {(m, normalized(path)) for m in methods.split("/")}
    return out


def methods_of(route: BaseRoute) -> set[str]:
    if isinstance(route, WebSocketRoute):
        return {"GET"}  # the handshake
    return set(getattr(route, "methods", None) or ()) - {"HEAD"}


def served(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(make_settings(tmp_path))
    out: set[tuple[str, str]] = set()
    for route in all_routes(app.routes):
        path = normalized(getattr(route, "path", ""))
        if path not in NOT_LISTED:
            out |= {(m, path) for m in methods_of(route)}
    return out


def test_the_table_lists_exactly_the_routes_served(tmp_path: Path) -> None:
    table, routes = listed(), served(tmp_path)
    assert len(table) > 20  # the table was found and read
    assert routes - table == set(), "served but missing from the README's endpoint table"
    assert table - routes == set(), "in the README's endpoint table but not served"
