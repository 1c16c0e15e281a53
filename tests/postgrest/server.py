# ruff: noqa: S608  (identifiers are validated and quoted, values always bound: this builds SQL the way PostgREST does)
"""A PostgREST-compatible HTTP endpoint for tests, over the real Postgres.

It speaks the part of PostgREST's API that supabase-py sends for our store (and enough more for RLS tests):
`POST /rest/v1/rpc/<fn>` with named JSON arguments, and `GET/POST/PATCH/DELETE /rest/v1/<table>` with
`select` (columns and `::casts`), `<col>=<op>.<value>` filters, `order`, `limit` and `offset`.

Like PostgREST, each request is one transaction on a connection logged in as `authenticator`, which switches
to the role named by the bearer JWT (`anon` without one) and sets `request.jwt.claims`, so RLS policies and
grants decide what the caller may do. Errors come back in PostgREST's JSON shape and HTTP statuses.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import asyncpg
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ROLES = frozenset({"anon", "authenticated", "service_role"})
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CAST = re.compile(r"^[a-z_][a-z0-9_ ]*(\[\])?$")
OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "like", "ilike": "ilike"}
OBJECT_MEDIA = "application/vnd.pgrst.object+json"


def mint_key(secret: str, role: str, sub: str | None = None, ttl_s: int = 3600) -> str:
    """A Supabase-style API key or access token signed with the project's JWT secret."""
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "iss": "supabase-test", "iat": now, "exp": now + ttl_s}
    if sub is not None:
        claims.update(sub=sub, aud="authenticated")
    return jwt.encode(claims, secret, algorithm="HS256")


class ApiFailure(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> JSONResponse:
        body = {"code": self.code, "details": self.details, "hint": None, "message": self.message}
        return JSONResponse(body, status_code=self.status)


def _status_for(sqlstate: str, role: str) -> int:
    """PostgREST's mapping from SQLSTATE to HTTP status."""
    if sqlstate == "42501":
        return 401 if role == "anon" else 403
    if sqlstate in ("23503", "23505"):
        return 409
    if sqlstate in ("42883", "42P01"):
        return 404
    if sqlstate[:2] in ("08", "53", "57"):
        return 503
    if sqlstate[:2] in ("22", "23") or sqlstate == "P0001":
        return 400
    return 500


def _ident(name: str) -> str:
    if not IDENT.match(name):
        raise ApiFailure(400, "PGRST100", f"invalid identifier {name!r}")
    return '"' + name + '"'


def _text(value: Any) -> str | None:
    """A JSON argument as the text form Postgres casts from."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class PostgrestEmulator:
    def __init__(self, dsn: str, jwt_secret: str, *, schema: str = "public") -> None:
        self.dsn = dsn
        self.secret = jwt_secret
        self.schema = schema
        self.pool: asyncpg.Pool | None = None
        self.requests: list[tuple[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/rest/v1/rpc/{fn}", self.rpc, methods=["POST"]),
                Route("/rest/v1/{table}", self.table, methods=["GET", "POST", "PATCH", "DELETE"]),
            ]
        )

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, user="authenticator", min_size=1, max_size=8)

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    # -- plumbing ---------------------------------------------------------------------

    def _claims(self, request: Request) -> tuple[str, dict[str, Any]]:
        if "apikey" not in request.headers:
            raise ApiFailure(401, "PGRST301", "No API key found in request")
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not token or scheme.lower() != "bearer":
            return "anon", {"role": "anon"}
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.PyJWTError as exc:
            raise ApiFailure(401, "PGRST301", f"JWT invalid: {type(exc).__name__}") from None
        role = str(claims.get("role", "anon"))
        if role not in ROLES:
            raise ApiFailure(401, "PGRST301", f"role {role!r} is not allowed")
        return role, claims

    async def _run(self, request: Request, work: Any) -> Response:
        self.requests.append((request.method, request.url.path))
        try:
            role, claims = self._claims(request)
            assert self.pool is not None
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(f"set local role {role}")  # role is one of ROLES
                await conn.execute(
                    "select set_config('request.jwt.claims', $1, true), set_config('request.method', $2, true), "
                    "set_config('request.path', $3, true)",
                    json.dumps(claims),
                    request.method,
                    request.url.path,
                )
                result: Response = await work(conn, role)
                return result
        except ApiFailure as exc:
            return exc.response()
        except asyncpg.PostgresError as exc:
            code = exc.sqlstate or "XX000"
            return ApiFailure(_status_for(code, role), code, str(exc), getattr(exc, "detail", None)).response()

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ApiFailure(400, "PGRST102", "Empty or invalid json") from None

    # -- rpc ----------------------------------------------------------------------------

    async def rpc(self, request: Request) -> Response:
        fn = request.path_params["fn"]
        args = await self._body(request)
        if not isinstance(args, dict):
            return ApiFailure(400, "PGRST102", "rpc arguments must be a JSON object").response()

        async def work(conn: asyncpg.Connection, role: str) -> Response:
            rows = await conn.fetch(
                "select p.proargnames as names, p.proretset as setof, "
                "array(select format_type(t, null) from unnest(p.proargtypes) t) as types "
                "from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = $1 and p.proname = $2",
                self.schema,
                fn,
            )
            match = None
            for r in rows:
                names = list(r["names"] or [])[: len(r["types"])]
                if set(args) <= set(names):
                    match = (names, list(r["types"]), r["setof"])
                    break
            if match is None:
                raise ApiFailure(
                    404, "PGRST202", f"Could not find the function {self.schema}.{fn}({', '.join(sorted(args))})"
                )
            names, types, setof = match
            parts, values = [], []
            for name, value in args.items():
                values.append(_text(value))
                parts.append(f"{_ident(name)} => (${len(values)}::text)::{types[names.index(name)]}")
            call = f"{_ident(self.schema)}.{_ident(fn)}({', '.join(parts)})"
            if setof:
                sql = f"select coalesce(jsonb_agg(r), '[]'::jsonb)::text from {call} r"
            else:
                sql = f"select to_jsonb({call})::text"
            out = await conn.fetchval(sql, *values)
            return Response(out or "null", media_type="application/json")

        return await self._run(request, work)

    # -- tables -----------------------------------------------------------------------------

    async def _columns(self, conn: asyncpg.Connection, table: str) -> dict[str, str]:
        rows = await conn.fetch(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
            "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'v', 'm', 'p') "
            "and a.attnum > 0 and not a.attisdropped",
            self.schema,
            table,
        )
        if not rows:
            raise ApiFailure(404, "PGRST205", f"Could not find the table '{self.schema}.{table}' in the schema cache")
        return {r[0]: r[1] for r in rows}

    def _where(self, request: Request, columns: dict[str, str], values: list[Any]) -> str:
        clauses = []
        for key, raw in request.query_params.multi_items():
            if key in ("select", "order", "limit", "offset", "on_conflict", "columns"):
                continue
            if key not in columns:
                raise ApiFailure(400, "42703", f"column {self.schema}.{key} does not exist")
            op, _, value = raw.partition(".")
            col, typ = _ident(key), columns[key]
            if op in OPS:
                values.append(value)
                clauses.append(f"{col} {OPS[op]} (${len(values)}::text)::{typ}")
            elif op == "is":
                if value not in ("null", "true", "false"):
                    raise ApiFailure(400, "PGRST100", f"bad is. value {value!r}")
                clauses.append(f"{col} is {value}")
            elif op == "in":
                items = [v.strip().strip('"') for v in value.strip("()").split(",") if v.strip()]
                values.append(items)
                clauses.append(f"{col} = any((${len(values)}::text[])::{typ}[])")
            else:
                raise ApiFailure(400, "PGRST100", f"unsupported operator {op!r}")
        return (" where " + " and ".join(clauses)) if clauses else ""

    def _select_list(self, request: Request, columns: dict[str, str]) -> str:
        out = []
        for item in (request.query_params.get("select") or "*").split(","):
            name, _, cast = item.strip().partition("::")
            if name == "*":
                out.append("*")
                continue
            if name not in columns:
                raise ApiFailure(400, "42703", f"column {self.schema}.{name} does not exist")
            if cast and not CAST.match(cast):
                raise ApiFailure(400, "PGRST100", f"bad cast {cast!r}")
            out.append(f"{_ident(name)}::{cast} as {_ident(name)}" if cast else _ident(name))
        return ", ".join(out)

    def _tail(self, request: Request, columns: dict[str, str]) -> str:
        sql = ""
        order = request.query_params.get("order")
        if order:
            terms = []
            for term in order.split(","):
                name, *mods = term.split(".")
                if name not in columns:
                    raise ApiFailure(400, "42703", f"column {self.schema}.{name} does not exist")
                direction = " desc" if "desc" in mods else " asc"
                nulls = " nulls first" if "nullsfirst" in mods else " nulls last" if "nullslast" in mods else ""
                terms.append(_ident(name) + direction + nulls)
            sql += " order by " + ", ".join(terms)
        for key in ("limit", "offset"):
            v = request.query_params.get(key)
            if v is not None:
                if not v.isdigit():
                    raise ApiFailure(400, "PGRST100", f"bad {key}")
                sql += f" {key} {int(v)}"
        return sql

    def _answer(self, request: Request, rows_json: str | None, status: int = 200) -> Response:
        rows = json.loads(rows_json or "[]")
        if request.headers.get("accept", "").startswith(OBJECT_MEDIA):
            if len(rows) != 1:
                raise ApiFailure(406, "PGRST116", "Cannot coerce the result to a single JSON object")
            return Response(json.dumps(rows[0]), status_code=status, media_type="application/json")
        return Response(json.dumps(rows), status_code=status, media_type="application/json")

    async def table(self, request: Request) -> Response:
        table = request.path_params["table"]
        body = await self._body(request) if request.method in ("POST", "PATCH") else None
        wants_rows = "return=representation" in request.headers.get("prefer", "")

        async def work(conn: asyncpg.Connection, role: str) -> Response:
            columns = await self._columns(conn, table)
            target = f"{_ident(self.schema)}.{_ident(table)}"
            values: list[Any] = []
            if request.method == "GET":
                sql = (
                    f"select {self._select_list(request, columns)} from {target}"
                    f"{self._where(request, columns, values)}{self._tail(request, columns)}"
                )
                out = await conn.fetchval(f"select coalesce(json_agg(t), '[]'::json)::text from ({sql}) t", *values)
                return self._answer(request, out)
            if request.method == "POST":
                items = body if isinstance(body, list) else [body]
                names = sorted({k for item in items for k in item})
                for n in names:
                    if n not in columns:
                        raise ApiFailure(400, "PGRST204", f"Could not find the '{n}' column of '{table}'")
                cols = ", ".join(_ident(n) for n in names)
                values.append(json.dumps(items))
                sql = (
                    f"insert into {target} ({cols}) select {cols} from "
                    f"json_populate_recordset(null::{target}, $1::json) returning *"
                )
            elif request.method == "PATCH":
                if not isinstance(body, dict) or not body:
                    raise ApiFailure(400, "PGRST102", "PATCH needs a JSON object")
                sets = []
                for n, v in body.items():
                    if n not in columns:
                        raise ApiFailure(400, "PGRST204", f"Could not find the '{n}' column of '{table}'")
                    values.append(_text(v))
                    sets.append(f"{_ident(n)} = (${len(values)}::text)::{columns[n]}")
                sql = f"update {target} set {', '.join(sets)}{self._where(request, columns, values)} returning *"
            else:
                sql = f"delete from {target}{self._where(request, columns, values)} returning *"
            out = await conn.fetchval(
                f"with t as ({sql}) select coalesce(json_agg(t), '[]'::json)::text from t", *values
            )
            status = 201 if request.method == "POST" else 200
            if not wants_rows:
                return Response(status_code=201 if status == 201 else 204)
            return self._answer(request, out, status)

        return await self._run(request, work)
