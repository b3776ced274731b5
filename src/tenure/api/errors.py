"""Every error as `application/problem+json` (RFC 9457), naming the field or the rule that said
no: a route's refusal, a path or method that matches nothing (404, 405), a request that does not
match its schema (422), a read outside the caller's partner scope (403), and anything unexpected
(500: a short title, no stack trace, and the request's correlation id, which every log line of
the request carries too). A 401 also says which scheme to answer with."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tenure.api.service import problem
from tenure.errors import TenureError
from tenure.observe.logs import get_logger
from tenure.store.service_reads import OutOfScope

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Too Large",
}
log = get_logger("tenure.api")


async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
    """A route's HTTPException, or the router's 404 and 405, as a problem."""
    response = problem(exc.status_code, TITLES.get(exc.status_code, "Error"), str(exc.detail))
    # Kept: a 405's Allow, and whatever else a route asked for.
    response.headers.update(exc.headers or {})
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A request that does not match its schema, with each field and why."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
    ]
    return problem(422, "Invalid request", "the request does not match its schema", errors=errors)


async def out_of_scope(_: Request, exc: OutOfScope) -> JSONResponse:
    """A partner asked for another partner's rows."""
    return problem(403, TITLES[403], str(exc))


async def refused(_: Request, exc: TenureError) -> JSONResponse:
    """A rule said no (a bad policy, a four-eyes rule, an unknown task): the message says why."""
    return problem(422, "Refused", str(exc))


class Crashes:
    """ASGI middleware: an unexpected exception becomes a 500 problem naming the request's
    correlation id, and is logged with its stack trace (the body never carries one).

    Installed inside the request observer, so the id is still bound and the answer still gets
    the `X-Correlation-ID` header; outside it, Starlette's own handler would answer after both
    are gone."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("unexpected error", method=scope["method"], path=scope["path"])
            if started:  # too late for another answer: the server closes the connection
                raise
            rid = structlog.contextvars.get_contextvars().get("request_id")
            response = problem(
                500,
                "Internal Server Error",
                "something unexpected went wrong; the correlation id finds it in the logs",
                correlation_id=rid,
            )
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Answer every error of `app` as a problem. Called before the request observer is added,
    so that `Crashes` runs inside it."""
    # Starlette's HTTPException: FastAPI's is a subclass, and the router's 404 and 405 are not.
    app.exception_handler(HTTPException)(http_error)
    app.exception_handler(RequestValidationError)(invalid)
    app.exception_handler(OutOfScope)(out_of_scope)  # a TenureError: the nearest class wins
    app.exception_handler(TenureError)(refused)
    app.add_middleware(Crashes)
