"""The published contract (issue "An API contract", item 6): a bearer security scheme on every
guarded operation, the event envelope behind `POST /v1/events`, every error an operation can
answer documented as `application/problem+json`, every reference resolving; and `/docs` served
from the package, fetching nothing from elsewhere."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.store.db import Store

PROBLEM = "application/problem+json"
PROBES = {"/healthz", "/readyz", "/metrics"}
# Needs no bearer token: the signed token in the path is the credential.
UNSUBSCRIBE = "/v1/unsubscribe/{token}"


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = resolve(tmp_path / "ws")
    store = Store(settings.database_url)
    with store.transaction() as conn:
        token = create_token(conn, "admin", None, "root", dt.datetime.now(dt.UTC))[1]
    store.close()
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs(v)


def test_every_guarded_operation_names_the_bearer_scheme(client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, method, op in operations(doc):
        expected = None if path in {*PROBES, UNSUBSCRIBE} else [{"bearer": []}]
        assert op.get("security") == expected, (method, path)
    # The guard still answers for itself: the same 401 problem as before.
    r = client.get("/v1/decisions", headers={"Authorization": "Basic eDp5"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"] == "a bearer token is needed (tenure tokens create)"


def test_every_error_is_documented_as_a_problem(client) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["components"]["schemas"]["Problem"]["required"]) == {"type", "title", "status"}
    for path, method, op in operations(doc):
        statuses = {int(s) for s in op["responses"]}
        assert {400, 500} <= statuses, (method, path)
        if path not in {*PROBES, UNSUBSCRIBE}:
            assert {401, 403} <= statuses, (method, path)
        if "{" in path:
            assert 404 in statuses, (method, path)
        if "requestBody" in op:
            assert {413, 422} <= statuses, (method, path)
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["description"], (method, path, status)
                assert response["content"] == {
                    PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, status)
    redeem = doc["paths"]["/v1/loyalty/redemptions"]["post"]["responses"]
    assert "409" in redeem
    assert "503" in doc["paths"]["/readyz"]["get"]["responses"]


def test_the_event_body_is_the_envelope_and_every_reference_resolves(client) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]
    assert body["required"] is True
    batch, wrapped = body["content"]["application/json"]["schema"]["oneOf"]
    assert batch["items"] == {"$ref": "#/components/schemas/Event"}
    assert wrapped["properties"]["events"] == batch
    schemas = doc["components"]["schemas"]
    assert "PurchaseEvent" in schemas and "$defs" not in str(schemas["Event"])
    for ref in set(refs(doc)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    assert "HTTPValidationError" not in schemas


def test_docs_are_served_from_the_package_and_fetch_nothing_from_elsewhere(client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", r.text), re.findall(r"https?://\S+", r.text)
    assert 'fetch("openapi.json"' in r.text
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "'sha256-" in policy
    assert client.get("/redoc").status_code == 404
    assert "/docs" not in client.get("/openapi.json").json()["paths"]
