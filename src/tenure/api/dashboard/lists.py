"""Every list of the dashboard: a page at a time by keyset cursor, and the whole list as CSV.

A page asks `?cursor=` (the opaque key of the last row shown, made by `api/paging.py`, as the
JSON API's cursors are) and `?limit=` (1 to 500, default 50); a link to the next page is shown
when more rows remain. Keyset, not offset: rows written while someone pages move nothing from one
page to the next, and a page costs the same at row 50 as at row 50,000. A cursor of another list
or a damaged one is a 400 page that says to start again.

`?format=csv` answers the whole list as its filters select it (from the start, whatever the
cursor), read in chunks by the same keyset and streamed, so an export of a long list holds no
more than one chunk in memory. Cells that a spreadsheet would run as a formula (=, +, -, @ at the
start of a text) are quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import URL

from tenure.api.dashboard.common import HEADERS, Pages
from tenure.api.paging import Keyset, decode, encode
from tenure.store.db import Connection

PAGE = 50
MAX_PAGE = 500
CHUNK = 1000  # rows per read while exporting
FORMATS = ("html", "csv")

Row = dict[str, Any]
Reader = Callable[[Connection, int, tuple[Any, ...] | None], list[Row]]


@dataclass(frozen=True)
class Listing:
    """One list: its sort key, how rows after a key are read (in key order, at most n), and the
    columns its CSV has (a header and how a row gives the cell)."""

    name: str  # the CSV file's name, and what the list is called
    keyset: Keyset
    read: Reader
    key: Callable[[Row], Sequence[Any]]
    columns: Sequence[tuple[str, Callable[[Row], Any]]]
    chunk: int = CHUNK


@dataclass(frozen=True)
class Shown:
    """One page of a list as a template shows it."""

    rows: list[Row]
    limit: int
    next_url: str | None  # the page after this one, when more rows remain
    first_url: str | None  # the first page, when this is not it
    csv_url: str


def held(rows: Sequence[Row], key: Callable[[Row], Sequence[Any]]) -> Reader:
    """A reader of a short list held whole, sorted ascending by `key`."""
    ordered = sorted(rows, key=lambda r: tuple(key(r)))

    def read(_: Connection, n: int, after: tuple[Any, ...] | None) -> list[Row]:
        return [r for r in ordered if after is None or tuple(key(r)) > after][:n]

    return read


def _url(url: URL, **changes: Any) -> str:
    """A list's path and query with some parameters set (None: removed)."""
    url = url.remove_query_params([k for k, v in changes.items() if v is None])
    url = url.include_query_params(**{k: v for k, v in changes.items() if v is not None})
    return f"{url.path}?{url.query}" if url.query else url.path


def page_of(
    pages: Pages,
    request: Request,
    listing: Listing,
    cursor: str | None,
    limit: int,
    where: str | None = None,
) -> Shown:
    """The page of `listing` after `cursor`, its links made from the request's URL (or `where`,
    the list's own, when a form posted elsewhere shows it); HTTPException 400 for a cursor it
    never gave."""
    limit = min(max(limit, 1), MAX_PAGE)
    after = decode(listing.keyset, cursor) if cursor else None
    with pages.store.reader() as conn:
        rows = listing.read(conn, limit + 1, after)
    shown = rows[:limit]
    following = encode(listing.keyset, listing.key(shown[-1])) if rows[limit:] else None
    url = URL(where) if where else request.url
    return Shown(
        shown,
        limit,
        _url(url, cursor=following) if following else None,
        _url(url, cursor=None) if cursor else None,
        _url(url, cursor=None, limit=None, format="csv"),
    )


def cell(value: Any) -> Any:
    """A value as a CSV cell: times in ISO 8601, structures as JSON, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _lines(pages: Pages, listing: Listing) -> Iterator[str]:
    """The CSV text of the whole list, a chunk of rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([name for name, _ in listing.columns])
    yield flush()
    after: tuple[Any, ...] | None = None
    while True:
        # A reader per chunk: a long export holds no transaction open between chunks.
        with pages.store.reader() as conn:
            rows = listing.read(conn, listing.chunk, after)
        for row in rows:
            writer.writerow([cell(value(row)) for _, value in listing.columns])
        yield flush()
        if len(rows) < listing.chunk:
            return
        after = tuple(listing.key(rows[-1]))


def export(pages: Pages, listing: Listing) -> Response:
    """The whole list as a CSV download."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", listing.name)  # nothing that could end the header
    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{name}.csv"'}
    return StreamingResponse(
        _lines(pages, listing), media_type="text/csv; charset=utf-8", headers=headers
    )


def answer(
    pages: Pages,
    request: Request,
    who: Any,
    listing: Listing,
    paging: tuple[str | None, int, str],
    render: Callable[[Shown], Response],
    where: str | None = None,
) -> Response:
    """A list page: the CSV of the whole list for `format=csv`, else the page `paging`'s
    (cursor, limit) asks for, rendered (its links from `where` when given, as `page_of`'s); a
    400 page for a cursor or format it does not know."""
    cursor, limit, form = paging
    if form not in FORMATS:
        text = f"format is html or csv, not {form[:20]!r}."
        return pages.message(request, who, 400, "No such format", text)
    if form == "csv":
        return export(pages, listing)
    try:
        shown = page_of(pages, request, listing, cursor, limit, where)
    except HTTPException:
        text = (
            f"That cursor is not one of this list's ({listing.name}): "
            "open the list's first page again."
        )
        return pages.message(request, who, 400, "Not a cursor of this list", text)
    return render(shown)
