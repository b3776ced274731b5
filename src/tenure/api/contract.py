"""The API's contract as published at /openapi.json, completed past what FastAPI writes alone:
the bearer security scheme (from the guards), the event envelope's JSON Schema behind
`POST /v1/events`, every error an operation can answer (each `application/problem+json` with the
`Problem` schema), and the `Link` header of every list.

Which errors an operation can answer follows from what it is, the same rules the service keeps:
any request may be a 400 (a NUL in its path or query) or a 500; a guarded one a 401 or 403; one
with a path parameter a 404; one with a body a 413; one with parameters or a body a 422
(a request off its schema, or a rule of the service saying no); a list a 400 for a bad cursor,
`offset` or an unknown parameter. A route adds what is its own (a refused redemption's 409, the
readiness probe's 503) with `problems(...)`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tenure.api.service import MAX_EVENTS, PROBLEM
from tenure.events.envelope import json_schema

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
EVENT_REF = {"$ref": "#/components/schemas/Event"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document: every error of the API is one.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {
            "type": "string",
            "description": "about:blank, or urn:tenure:rule:<rule> for a refusal by a named rule.",
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What was wrong, naming the field or rule."},
        "rule": {"type": "string", "description": "The rule that refused the operation."},
        "errors": {
            "type": "array",
            "description": "For a request off its schema: each field and why.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "correlation_id": {
            "type": ["string", "null"],
            "description": "For a 500: the id the request's log lines carry.",
        },
    },
}
WHY = {
    400: "A NUL in the path or query, a body that is not JSON, or for a list: `offset`, an "
    "invalid cursor or a parameter it does not take (named in `detail`).",
    401: "No bearer token, or one unknown, revoked or expired.",
    403: "The token's role may not do this, or the rows belong to another partner.",
    404: "Nothing has this id.",
    409: "A rule refused the operation; `type` and `rule` name it.",
    413: "The body is over 16 MiB (or holds more than the events a request may carry).",
    422: "The request does not match its schema (each field in `errors`), or a rule of the "
    "service said no (named in `detail`).",
    500: "Something unexpected: `correlation_id` finds it in the logs.",
    503: "The store does not answer.",
}
LINK = {
    "Link": {
        "description": 'When more rows remain: `<...?cursor=X&limit=N>; rel="next"`.',
        "schema": {"type": "string"},
    }
}


def problem_response(status: int) -> dict[str, Any]:
    """An error response as the contract documents it."""
    return {"description": WHY[status], "content": {PROBLEM: {"schema": PROBLEM_REF}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own error responses, for its `responses=`."""
    return {status: problem_response(status) for status in statuses}


def events_body() -> dict[str, Any]:
    """`POST /v1/events`' request body, for the route's `openapi_extra` (the route reads the raw
    body itself, so FastAPI cannot infer it)."""
    batch = {"type": "array", "items": EVENT_REF, "maxItems": MAX_EVENTS}
    wrapped = {"type": "object", "required": ["events"], "properties": {"events": batch}}
    return {
        "requestBody": {
            "required": True,
            "description": 'A JSON array of events, or `{"events": [...]}`. Each item is '
            "checked on its own: a malformed one is a `rejected` result with its field and "
            "reason, not a refusal of the batch.",
            "content": {"application/json": {"schema": {"oneOf": [batch, wrapped]}}},
        }
    }


def _event_schemas(extra_types: tuple[str, ...]) -> dict[str, Any]:
    """The envelope's JSON Schema as components: `Event` and each variant it refers to."""
    text = _rerooted(json_schema(extra_types))
    defs = text.pop("$defs", {})
    text.pop("$schema", None)  # the document's dialect is the OpenAPI document's own
    return {"Event": text, **defs}


def _rerooted(value: Any) -> Any:
    """`value` with its `#/$defs/` references pointing into `#/components/schemas/`."""
    if isinstance(value, dict):
        return {k: _rerooted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rerooted(v) for v in value]
    if isinstance(value, str) and value.startswith("#/$defs/"):
        return "#/components/schemas/" + value.removeprefix("#/$defs/")
    return value


def _statuses(path: str, op: dict[str, Any]) -> list[int]:
    """The errors an operation can answer, by what it is (see the module's docstring)."""
    guarded = bool(op.get("security"))
    parameters = op.get("parameters", [])
    found = [400, 500]
    if guarded:
        found += [401, 403]
    if "{" in path:
        found.append(404)
    if "requestBody" in op:
        found.append(413)
    if parameters or "requestBody" in op:
        found.append(422)
    return found


def _complete(path: str, op: dict[str, Any]) -> None:
    """One operation with every error it can answer, each a problem document."""
    responses = op.setdefault("responses", {})
    for status in _statuses(path, op):
        responses.setdefault(str(status), problem_response(status))
    for status in [s for s in responses if s.isdigit() and int(s) >= 400]:
        # FastAPI's own 422 (and a route's extra) may say application/json: ours is a problem.
        why = WHY.get(int(status), "An error.")
        responses[status] = {"description": why, "content": {PROBLEM: {"schema": PROBLEM_REF}}}
    if any(p.get("name") == "cursor" for p in op.get("parameters", [])):
        ok = next(s for s in responses if s.startswith("2"))
        responses[ok].setdefault("headers", {}).update(LINK)


def document(app: FastAPI, extra_types: tuple[str, ...] = ()) -> dict[str, Any]:
    """The app's OpenAPI document, complete (made once, then kept)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # what FastAPI says a 422 holds; ours is a Problem
    added = {"Problem": PROBLEM_SCHEMA, **_event_schemas(extra_types)}
    clash = sorted(set(added) & set(schemas))
    if clash:
        raise RuntimeError(f"OpenAPI components named twice: {clash}")
    schemas.update(added)
    for path, operations in doc["paths"].items():
        for op in operations.values():
            _complete(path, op)
    app.openapi_schema = doc
    return doc
