"""Request limits, before any route reads a byte: a body over `MAX_BODY_BYTES` is a 413 and a
path or query holding a NUL character is a 400, each as `application/problem+json`.

A declared `Content-Length` over the limit is refused without reading the body; a body sent
without one (chunked) is counted as it streams and refused as soon as it passes the limit, so no
more than the limit is ever held.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

from tenure.api.service import problem

MAX_BODY_BYTES = 16 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is over the limit of {limit} bytes")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string") or b""
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


class RequestLimits:
    """ASGI middleware: the body limit and the NUL refusal for every route."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _has_nul(scope):
            detail = "the path or query holds a NUL character (%00)"
            await problem(400, "Bad Request", detail)(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            detail = f"the request body is {declared} bytes, over the limit of {limit} bytes"
            await problem(413, "Too Large", detail)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised into the route reading the body; its handler answers 413.
                    raise _too_large(limit)
            return message

        await self.app(scope, counted, send)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, refused with a 413 once it passes `limit` (also without the
    middleware: the declared length first, then counted while streaming)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
