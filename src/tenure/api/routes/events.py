"""Events in: a batch is parsed, deduplicated and decided before the response returns.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Request

from tenure.api.auth import Caller
from tenure.api.contract import events_body
from tenure.api.limits import read_body
from tenure.api.service import MAX_EVENTS, Service


def router(svc: Service) -> APIRouter:
    """The event routes of one service."""
    api = APIRouter(prefix="/v1", tags=["events"])

    # The body is read raw (streamed under the size limit), so the contract describes it here.
    @api.post("/events", openapi_extra=events_body())
    async def post_events(
        request: Request, who: Annotated[Caller, Depends(svc.guard("ingest"))]
    ) -> dict[str, Any]:
        """A batch of events: per event accepted, duplicate or rejected (with the reason), and
        the decisions they caused, decided before the response returns."""
        raw = await read_body(request)  # at most the body limit is ever held
        try:
            # msgspec rather than orjson: orjson reads an integer past 64 bits as a float, so an
            # event a file's line is refused for ("integer out of range") would be kept altered.
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from None
        except RecursionError:  # the decoder stops at the interpreter's recursion limit
            raise HTTPException(400, "the body is nested too deep to read") from None
        items = body.get("events") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise HTTPException(400, 'send a JSON array of events, or {"events": [...]}')
        if len(items) > MAX_EVENTS:
            raise HTTPException(413, f"at most {MAX_EVENTS} events per request")
        return svc.ingest(items)

    return api
