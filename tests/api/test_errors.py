"""Every error is application/problem+json: a path or a method that matches nothing, a request
that does not match its schema, and an unexpected failure (500, with the request's correlation
id and no stack trace in the body; the stack trace goes to the log, under the same id)."""

from __future__ import annotations

import datetime as dt
import io

import orjson
import pytest
from fastapi.testclient import TestClient

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.observe.logs import configure_logging
from tenure.store.db import Store

PROBLEM = "application/problem+json"


@pytest.fixture
def client(tmp_path):
    settings = resolve(tmp_path / "ws")
    store = Store(settings.database_url)
    with store.transaction() as conn:
        token = create_token(conn, "admin", None, "root", dt.datetime.now(dt.UTC))[1]
    store.close()
    app = create_app(settings)

    def broken() -> None:
        raise RuntimeError("the secret internals of a failure")

    app.add_api_route("/v1/broken", broken, methods=["GET"])
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def is_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank"
    return body


def test_an_unmatched_path_is_a_problem(client):
    for path in ("/v1/nothing-here", "/nothing", "/dashboard/nothing"):
        body = is_problem(client.get(path), 404)
        assert body["title"] == "Not Found"


def test_an_unmatched_method_is_a_problem_that_says_which_are_allowed(client):
    r = client.put("/v1/events", json=[])
    body = is_problem(r, 405)
    assert body["title"] == "Method Not Allowed" and r.headers["allow"] == "POST"


def test_a_request_that_does_not_match_its_schema_is_a_problem(client):
    body = is_problem(client.get("/v1/decisions", params={"limit": "many"}), 422)
    assert [e["field"] for e in body["errors"]] == ["query.limit"]


def test_an_unexpected_error_is_a_500_problem_with_the_correlation_id_and_no_trace(client):
    captured = io.StringIO()
    configure_logging("info", "json", captured)
    try:
        r = client.get("/v1/broken", headers={"X-Correlation-ID": "req-500"})
        anonymous = client.get("/v1/broken")
    finally:
        configure_logging()
    body = is_problem(r, 500)
    assert body["title"] == "Internal Server Error" and body["correlation_id"] == "req-500"
    assert r.headers["x-correlation-id"] == "req-500"
    assert "secret internals" not in r.text and "Traceback" not in r.text
    # Without an id of the caller's, the one the service made up is in the body and the header.
    made_up = is_problem(anonymous, 500)["correlation_id"]
    assert made_up and made_up == anonymous.headers["x-correlation-id"]
    lines = [orjson.loads(x) for x in captured.getvalue().splitlines()]
    (failure,) = [x for x in lines if x.get("request_id") == "req-500" and "exception" in x]
    assert "secret internals" in failure["exception"]
    (request,) = [x for x in lines if x.get("event") == "request" and x["request_id"] == "req-500"]
    assert request["status"] == 500
