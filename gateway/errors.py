"""One error body for every HTTP failure: {"error": {"code", "message"}} with a stable code."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from gateway.auth import AuthError
from gateway.schemas import InputTooLarge
from sessions.log import ResumeTooOld
from sessions.manager import SessionError


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_auth(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    async def on_session(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SessionError)
        return error_response(exc.status, exc.code, exc.message)

    async def on_too_large(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InputTooLarge)
        return error_response(413, exc.code, exc.message)

    async def on_resume(_: Request, exc: Exception) -> JSONResponse:
        return error_response(410, ResumeTooOld.code, str(exc))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail))

    app.add_exception_handler(AuthError, on_auth)
    app.add_exception_handler(SessionError, on_session)
    app.add_exception_handler(InputTooLarge, on_too_large)
    app.add_exception_handler(ResumeTooOld, on_resume)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
