"""The HTTP service: auth and roles, events in with per-event outcomes, customers, probes."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from fastapi.testclient import TestClient

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.runtime.clock import FixedClock
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT


@pytest.fixture
def service(tmp_path):
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    contract = {
        **CONTRACT,
        "versions": [{**CONTRACT["versions"][0], "sharing": {"dealer-1": ["loyalty"]}}],
    }
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(contract))
    settings = resolve(ws)
    store = Store(settings.database_url)
    tokens = {}
    with store.transaction() as conn:
        now = dt.datetime.now(dt.UTC)
        for role in ("ingest", "operator", "auditor", "approver"):
            tokens[role] = create_token(conn, role, None, "", now)[1]
        tokens["dealer-1"] = create_token(conn, "partner", "dealer-1", "", now)[1]
        tokens["dealer-2"] = create_token(conn, "partner", "dealer-2", "", now)[1]
    store.close()
    # Live time after the test events' days have closed: their instants are decided at once.
    clock = FixedClock(dt.datetime(2026, 3, 10, 3, tzinfo=dt.UTC))
    with TestClient(create_app(settings, clock)) as client:
        yield client, tokens


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def event(i: int, customer: str = "ann", type_: str = "purchase", **payload):
    return {
        "event_id": f"e{i}",
        "type": type_,
        "customer_id": customer,
        "partner_id": "dealer-1",
        "occurred_at": f"2026-03-{1 + i:02d}T10:00:00Z",
        "payload": payload or {"amount": 50.0},
    }


def test_probes_and_openapi_need_no_token(service):
    client, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert "/v1/events" in client.get("/openapi.json").json()["paths"]


def test_no_token_is_401_and_a_wrong_role_is_403_as_problem_json(service):
    client, tokens = service
    missing = client.post("/v1/events", json=[])
    assert (
        missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
    )
    assert missing.json()["title"] == "Unauthorized"
    assert client.post("/v1/events", json=[], headers=auth("tnr_nonsense")).status_code == 401
    forbidden = client.post("/v1/events", json=[], headers=auth(tokens["operator"]))
    assert forbidden.status_code == 403 and "operator" in forbidden.json()["detail"]


def test_events_in_per_event_outcomes_and_decisions_back(service):
    client, tokens = service
    batch = [
        event(1),
        event(2, type_="subscription.cancel_requested", payload=None) | {"payload": {}},
        event(1),  # the same event again in the batch
        {
            "event_id": "bad",
            "type": "purchase",
            "customer_id": "ann",
            "occurred_at": "yesterday",
            "payload": {},
        },
    ]
    r = client.post("/v1/events", json=batch, headers=auth(tokens["ingest"]))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "accepted", "duplicate", "rejected"]
    assert results[3]["field"] == "occurred_at"
    decisions = r.json()["decisions"]
    assert decisions and {d["trigger_event_id"] for d in decisions} == {"e2"}
    assert decisions[0]["customer_id"] == "ann"
    assert decisions[0]["status"] in ("action", "suppressed")
    # Sent again: everything that was accepted is now a duplicate.
    again = client.post("/v1/events", json={"events": batch[:2]}, headers=auth(tokens["ingest"]))
    assert [x["status"] for x in again.json()["results"]] == ["duplicate", "duplicate"]
    assert "tenure_events_total" in client.get("/metrics").text
    bad = client.post("/v1/events", content=b"{not json", headers=auth(tokens["ingest"]))
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"


def test_customers_by_role_and_partner_scope(service):
    client, tokens = service
    client.post("/v1/events", json=[event(1, "ann", amount=200.0)], headers=auth(tokens["ingest"]))
    seen = client.get("/v1/customers/ann", headers=auth(tokens["operator"])).json()
    assert (
        seen["loyalty"]["posted"] == 100
        and "score" in seen
        and seen["score"]["contributions"] is not None
    )
    assert client.get("/v1/customers/nobody", headers=auth(tokens["auditor"])).status_code == 404
    assert client.get("/v1/customers/ann", headers=auth(tokens["approver"])).status_code == 403
    # dealer-1's contract shares only the loyalty block; dealer-2 has no claim on ann.
    partner = client.get("/v1/customers/ann", headers=auth(tokens["dealer-1"])).json()
    assert set(partner) == {"customer_id", "loyalty"}
    assert client.get("/v1/customers/ann", headers=auth(tokens["dealer-2"])).status_code == 403
