"""Every error as `application/problem+json` (RFC 9457), naming the field or the rule that said
no; a 401 also says which scheme to answer with."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tenure.api.service import problem
from tenure.errors import TenureError

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Too Large",
}


async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
    """A route's HTTPException as a problem."""
    response = problem(exc.status_code, TITLES.get(exc.status_code, "Error"), str(exc.detail))
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A request that does not match its schema, with each field and why."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()
    ]
    return problem(422, "Invalid request", "the request does not match its schema", errors=errors)


async def refused(_: Request, exc: TenureError) -> JSONResponse:
    """A rule said no (a bad policy, a four-eyes rule, an unknown task): the message says why."""
    return problem(422, "Refused", str(exc))


def install(app: FastAPI) -> None:
    """Answer every error of `app` as a problem."""
    app.exception_handler(HTTPException)(http_error)
    app.exception_handler(RequestValidationError)(invalid)
    app.exception_handler(TenureError)(refused)
