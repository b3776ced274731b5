"""Cursor pagination for every list of the API: `?limit=` (1 to 1000, default 100) and
`?cursor=`, the opaque key of the last row of the previous page. When more rows remain, the
answer carries `Link: <...?cursor=X&limit=N>; rel="next"`; lists stay bare JSON arrays.

Keyset, not offset: a cursor names the last row's sort key (for decisions, `decided_at` and
`decision_id`), so rows inserted while someone pages move nothing from one page to the next and
each row is answered exactly once. `offset`, a cursor of another list or a damaged one, and a
query parameter the route does not take are each a 400 naming the parameter.

(No `from __future__ import annotations` here: FastAPI reads the dependency annotations.)
"""

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import HTTPException, Query, Request, Response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 1000  # characters; every real cursor is far shorter


@dataclass(frozen=True)
class Keyset:
    """A list's sort key: its name (a cursor of one list is refused by another) and the type of
    each value of the key, in order."""

    name: str
    types: tuple[type, ...]


def encode(keyset: Keyset, key: Sequence[Any]) -> str:
    """The opaque cursor naming `key` in `keyset`'s list."""
    values = [v.isoformat() if isinstance(v, dt.datetime) else v for v in key]
    return base64.urlsafe_b64encode(orjson.dumps([keyset.name, *values])).decode().rstrip("=")


def _value(kind: type, value: Any) -> Any:
    """One value of a decoded key, as `kind`; ValueError when it is not one."""
    if kind is dt.datetime and isinstance(value, str):
        found = dt.datetime.fromisoformat(value)
        if found.tzinfo is None:
            raise ValueError("a naive time")
        return found
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"not a {kind.__name__}")


def decode(keyset: Keyset, cursor: str) -> tuple[Any, ...]:
    """The key a cursor names; a 400 naming `cursor` when this list never gave it."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, *values = orjson.loads(raw)
        if name != keyset.name or len(values) != len(keyset.types):
            raise ValueError("another list's cursor")
        return tuple(_value(k, v) for k, v in zip(keyset.types, values, strict=True))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        detail = f"cursor: not a cursor of this list ({keyset.name}); start again without it"
        raise HTTPException(400, detail) from None


def _walk_query(dependant: Any) -> set[str]:
    """The query parameters of a route's dependant and of every dependency under it."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _walk_query(sub)
    return names


def _query_names(request: Request) -> frozenset[str] | None:
    """The query parameters the matched route takes (None: no route is known)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    return None if dependant is None else frozenset(_walk_query(dependant))


def refuse_unknown(request: Request) -> None:
    """A 400 for `offset` (page with the cursor) and for any query parameter the route does not
    take, naming them: a misspelt filter must not silently answer everything."""
    if "offset" in request.query_params:
        raise HTTPException(400, "offset: not supported; follow the Link header's next cursor")
    known = _query_names(request)
    unknown = sorted(set(request.query_params) - known) if known is not None else []
    if unknown:
        detail = f"{', '.join(unknown)}: not a parameter of this route (it takes {_list(known)})"
        raise HTTPException(400, detail)


def _list(names: frozenset[str] | None) -> str:
    return ", ".join(sorted(names or ())) or "none"


@dataclass(frozen=True)
class Page:
    """One page asked of a list: how many rows, after which key, and where the `Link` goes."""

    limit: int
    after: tuple[Any, ...] | None
    keyset: Keyset
    request: Request
    response: Response

    @property
    def ask(self) -> int:
        """How many rows to read: one more than shown tells whether another page remains."""
        return self.limit + 1

    def answer(self, rows: list[Any], key: Callable[[Any], Sequence[Any]]) -> list[Any]:
        """The rows of this page (of at most `ask` read), with a `Link` to the next when more
        remain."""
        shown = rows[: self.limit]
        if len(rows) > self.limit and shown:
            cursor = encode(self.keyset, key(shown[-1]))
            url = self.request.url.include_query_params(cursor=cursor, limit=self.limit)
            self.response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
        return shown

    def of(self, rows: list[Any], key: Callable[[Any], Sequence[Any]]) -> list[Any]:
        """This page of a list held whole and sorted ascending by `key` (a short one)."""
        after = self.after
        return self.answer([r for r in rows if after is None or tuple(key(r)) > after], key)


def paged(keyset: Keyset) -> Callable[..., Page]:
    """The dependency a list route takes: its `limit` and `cursor` as a `Page`."""

    def page(
        request: Request,
        response: Response,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Rows per page (at most 1000).")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            Query(
                max_length=MAX_CURSOR,
                description='Where to go on: the cursor of the `Link: <...>; rel="next"` header.',
            ),
        ] = None,
    ) -> Page:
        refuse_unknown(request)
        after = decode(keyset, cursor) if cursor is not None else None
        return Page(limit, after, keyset, request, response)

    return page
