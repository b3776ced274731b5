"""Hostile requests (issue 13), on SQLite and PostgreSQL: a deep, NUL-holding or far-future
event, or one with an integer past 64 bits, is a rejected item of a 200; a NUL in a path or query
is a 400 and a body over the limit a 413, both as problem+json, the 413 without reading past the
limit."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tenure.store import queries
from tests.fixtures.hostile import CUSTOM, event, serve, workspace

LIMIT = 16 * 1024 * 1024  # the body limit
MiB = 1024 * 1024


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The service on each backend."""
    yield from serve(workspace(tmp_path / "ws", store_url))


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The service on SQLite (for what no backend sees)."""
    yield from serve(workspace(tmp_path / "ws"))


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_hostile_events_are_rejected_items(api: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = api
    now = dt.datetime.now(dt.UTC)
    items = [
        event("ok", occurred_at=now.isoformat()),
        event("deep-500", type=CUSTOM, payload={"v": deep(500)}),
        event("deep-70", type=CUSTOM, payload={"v": deep(70)}),
        event("nul", customer_id="c\x00"),
        event("nul-key", type=CUSTOM, payload={"a\x00": 1}),
        event("esc", customer_id="\x1b]8;;http://evil\x1b\\"),
        event("future", occurred_at="2150-01-01T00:00:00Z"),
        event("ahead", occurred_at=(now + dt.timedelta(days=2)).isoformat()),
        "x" * (2 * MiB),
    ]
    response = client.post("/v1/events", json=items, headers={"Authorization": auth["ingest"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] + ["rejected"] * (len(items) - 1)
    fields = [r["field"] for r in results[1:]]
    assert fields == [
        "payload",
        "payload",
        "customer_id",
        "payload",
        "customer_id",
        "occurred_at",
        "occurred_at",
        "payload",  # a line that long cannot hold a payload under the limit
    ]
    assert "nested deeper than 64" in results[1]["reason"]
    assert "the clock" in results[7]["reason"]
    with client.app.state.store.reader() as conn:
        kept = [r["raw"] for r in queries.rejects(conn, limit=100)]
    assert len(kept) == len(items) - 1 and max(map(len, kept)) <= 4096


def test_integers_past_64_bits_are_rejected_items_not_floats(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = api
    numbers = [2**63 - 1, -(2**63), 2**63, 2**64, -(2**63) - 1, 10**30]
    items = [event(f"n-{i}", type=CUSTOM, payload={"n": n}) for i, n in enumerate(numbers)]
    response = client.post("/v1/events", json=items, headers={"Authorization": auth["ingest"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 2 + ["rejected"] * 4
    for r in results[2:]:
        assert r["field"] == "payload.n" and "64 bits" in r["reason"], r


def test_a_body_nested_past_the_decoder_is_a_400(lite: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = lite
    body = b"[" * 5000 + b"]" * 5000
    response = client.post("/v1/events", content=body, headers={"Authorization": auth["ingest"]})
    problem(response, 400)


PATHS = [
    "/v1/customers/%00",
    "/v1/customers/c%00x?fields=features",
    "/v1/customers/ann?fields=features%00",
    "/v1/decisions/d%00",
    "/v1/journeys?customer=%00",
    "/v1/loyalty/default/members/%00",
]


def test_a_nul_in_a_path_or_query_is_a_problem_not_a_500(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = api
    for path in PATHS:
        body = problem(client.get(path, headers={"Authorization": auth["admin"]}), 400)
        assert "NUL" in body["detail"], path


def test_a_declared_body_over_the_limit_is_refused_unread(
    lite: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = lite
    headers = {"Authorization": auth["ingest"], "Content-Type": "application/json"}
    response = client.post("/v1/events", content=b" " * (LIMIT + 1), headers=headers)
    assert "over the limit" in problem(response, 413)["detail"]


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(
    lite: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = lite
    status, body, consumed = asyncio.run(stream_post(client.app, auth["ingest"], 100 * MiB))
    assert status == 413, body
    assert orjson.loads(body)["status"] == 413
    assert consumed <= LIMIT + MiB  # never the 100 MB offered


async def stream_post(app: Any, authorization: str, size: int) -> tuple[int, bytes, int]:
    """POST /v1/events with a chunked body of `size` bytes (1 MiB a message, made as read)."""
    consumed = 0

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        if consumed >= size:
            return {"type": "http.disconnect"}
        chunk = b" " * min(MiB, size - consumed)
        consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": consumed < size}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", authorization.encode()),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, consumed


@pytest.mark.parametrize("source", [{}, ["pos"]])
def test_a_source_of_the_wrong_type_is_a_rejected_item(
    lite: tuple[TestClient, dict[str, str]], source: Any
) -> None:
    client, auth = lite
    items = [event("ok"), event("odd-source", source=source)]
    response = client.post("/v1/events", json=items, headers={"Authorization": auth["ingest"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected"]
    assert results[1]["field"] == "source"
