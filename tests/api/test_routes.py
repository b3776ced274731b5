"""Every route of the service against every role; policies, tasks, loyalty and partners over
HTTP, with the four-eyes rules holding there too; personal data masked and erased."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenure.api.app import create_app
from tenure.api.auth import ROLES, create_token
from tenure.config import resolve
from tenure.policy.model import default_policy
from tenure.store import acts
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT

SHARED = {
    **CONTRACT,
    "versions": [{**v, "sharing": {"dealer-1": ["loyalty"]}} for v in CONTRACT["versions"]],
}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def purchase(i: int, customer: str = "ann", amount: float = 200.0, partner: str = "dealer-1"):
    return {
        "event_id": f"p{i}",
        "type": "purchase",
        "customer_id": customer,
        "partner_id": partner,
        "occurred_at": f"2026-03-{1 + i:02d}T10:00:00Z",
        "payload": {"amount": amount, "product_line": "parts"},
    }


def profile(i: int, customer: str = "ann", **personal: str):
    return {
        "event_id": f"pr{i}",
        "type": "profile.updated",
        "customer_id": customer,
        "partner_id": "dealer-1",
        "occurred_at": f"2026-03-{1 + i:02d}T09:00:00Z",
        "payload": {"timezone": "Europe/Berlin", **personal},
    }


@pytest.fixture
def service(tmp_path):
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(SHARED))
    settings = resolve(ws)
    store = Store(settings.database_url)
    tokens: dict[str, str] = {}
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        for role in ROLES:
            partner = "dealer-1" if role == "partner" else None
            tokens[role] = create_token(conn, role, partner, f"{role}-person", now)[1]
        tokens["dealer-2"] = create_token(conn, "partner", "dealer-2", "d2", now)[1]
        tokens["alice"] = create_token(conn, "policy-author", None, "alice", now)[1]
        tokens["alice-approver"] = create_token(conn, "approver", None, "alice", now)[1]
        tokens["bob"] = create_token(conn, "approver", None, "bob", now)[1]
        tokens["olga"] = create_token(conn, "operator", None, "olga", now)[1]
    store.close()
    with TestClient(create_app(settings)) as client:
        yield client, tokens, settings


# Every /v1 route: (method, route path) -> (a concrete path, a body, the roles allowed).
# Admin may call everything. A route missing here fails `test_the_table_covers_every_route`.
ROUTES = {
    ("POST", "/v1/events"): ("/v1/events", [], {"ingest"}),
    ("GET", "/v1/customers/{customer_id}"): (
        "/v1/customers/ann",
        None,
        {"operator", "auditor", "partner"},
    ),
    ("DELETE", "/v1/customers/{customer_id}/personal-data"): (
        "/v1/customers/nobody/personal-data",
        None,
        set(),
    ),
    ("GET", "/v1/decisions"): ("/v1/decisions", None, {"operator", "auditor"}),
    ("GET", "/v1/decisions/{decision_id}"): ("/v1/decisions/d-x", None, {"operator", "auditor"}),
    ("GET", "/v1/policies"): (
        "/v1/policies",
        None,
        {"policy-author", "approver", "operator", "auditor"},
    ),
    ("GET", "/v1/policies/schema"): (
        "/v1/policies/schema",
        None,
        {"policy-author", "approver", "operator", "auditor"},
    ),
    ("POST", "/v1/policies"): ("/v1/policies", {"id": ""}, {"policy-author"}),
    ("POST", "/v1/policies/{version}/promote"): (
        "/v1/policies/abcdef/promote",
        {"to": "shadow"},
        {"policy-author", "approver"},
    ),
    ("GET", "/v1/journeys"): ("/v1/journeys", None, {"operator", "auditor"}),
    ("GET", "/v1/journeys/{decision_id}"): ("/v1/journeys/d-x", None, {"operator", "auditor"}),
    ("GET", "/v1/tasks"): ("/v1/tasks", None, {"operator"}),
    ("POST", "/v1/tasks/{task_id}/resolve"): (
        "/v1/tasks/t-x/resolve",
        {"resolution": "saved"},
        {"operator"},
    ),
    ("GET", "/v1/loyalty/{programme}/members/{customer_id}"): (
        "/v1/loyalty/default/members/ann",
        None,
        {"operator", "auditor", "partner"},
    ),
    ("GET", "/v1/loyalty/{programme}/members/{customer_id}/history"): (
        "/v1/loyalty/default/members/ann/history",
        None,
        {"operator", "auditor", "partner"},
    ),
    ("POST", "/v1/loyalty/redemptions"): (
        "/v1/loyalty/redemptions",
        {"customer_id": "ann", "redemption_id": "r-role", "points": 1},
        {"ingest", "operator"},
    ),
    ("POST", "/v1/loyalty/redemptions/{redemption_id}/{step}"): (
        "/v1/loyalty/redemptions/r-none/cancel",
        {"customer_id": "ann"},
        {"ingest", "operator"},
    ),
    ("POST", "/v1/partners/{partner}/reconciliation"): (
        "/v1/partners/dealer-1/reconciliation?period=2026-03",
        "reference,points\n",
        {"operator", "auditor", "partner"},
    ),
    ("GET", "/v1/partners/{partner}/settlement"): (
        "/v1/partners/dealer-1/settlement?period=2026-03",
        None,
        {"operator", "auditor", "partner"},
    ),
    ("GET", "/v1/partners/adjustments"): (
        "/v1/partners/adjustments",
        None,
        {"operator", "auditor", "approver"},
    ),
    ("POST", "/v1/partners/{partner}/adjustments"): (
        "/v1/partners/dealer-9/adjustments",
        {"period": "2026-03", "reference": "x", "points": 5, "reason": "dispute"},
        {"operator"},
    ),
    ("POST", "/v1/partners/adjustments/{adjustment_id}/approve"): (
        "/v1/partners/adjustments/adj-x/approve",
        None,
        {"approver"},
    ),
}


def _call(client, method, path, body, headers=None):
    if isinstance(body, str):
        headers = {**(headers or {}), "Content-Type": "text/csv"}
        return client.request(method, path, content=body, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def test_the_table_covers_every_route(service):
    client, _, _ = service
    paths = client.get("/openapi.json").json()["paths"]
    routes = {
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1/")
        for method in operations
    }
    assert routes == set(ROUTES)


def test_every_role_against_every_route(service):
    client, tokens, _ = service
    seeded = client.post("/v1/events", json=[purchase(1)], headers=auth(tokens["ingest"]))
    assert seeded.status_code == 200
    for (method, _), (path, body, allowed) in ROUTES.items():
        assert _call(client, method, path, body).status_code == 401, path
        for role in ROLES:
            r = _call(client, method, path, body, auth(tokens[role]))
            if role in allowed or role == "admin":
                assert r.status_code not in (401, 403), (method, path, role, r.text)
                assert r.status_code < 500, (method, path, role, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code)
                assert r.headers["content-type"] == "application/problem+json"


def test_a_partner_sees_only_its_customers_and_shared_fields(service):
    client, tokens, _ = service
    client.post("/v1/events", json=[purchase(1)], headers=auth(tokens["ingest"]))
    own = client.get("/v1/customers/ann", headers=auth(tokens["partner"]))
    assert own.status_code == 200 and set(own.json()) == {"customer_id", "loyalty"}
    # Another partner's customer, and a field outside the contract's sharing scope.
    other = client.get("/v1/customers/ann", headers=auth(tokens["dealer-2"]))
    assert other.status_code == 403 and "not a customer of dealer-2" in other.json()["detail"]
    asked = client.get("/v1/customers/ann?fields=score", headers=auth(tokens["partner"]))
    assert asked.status_code == 403 and "'score'" in asked.json()["detail"]
    fine = client.get("/v1/customers/ann?fields=loyalty", headers=auth(tokens["partner"]))
    assert set(fine.json()) == {"customer_id", "loyalty"}
    balance = client.get("/v1/loyalty/default/members/ann", headers=auth(tokens["dealer-2"]))
    assert balance.status_code == 403
    theirs = client.get(
        "/v1/partners/dealer-2/settlement?period=2026-03", headers=auth(tokens["partner"])
    )
    assert theirs.status_code == 403


def test_policies_upload_and_promotion_keep_four_eyes(service):
    client, tokens, _ = service
    doc = default_policy().model_dump(mode="json") | {"id": "stricter", "label": "risk 0.5"}
    doc["trigger"] = {**doc["trigger"], "risk_at_least": 0.5}
    up = client.post("/v1/policies", json=doc, headers=auth(tokens["alice"]))
    assert up.status_code == 201 and up.json()["status"] == "draft"
    version = up.json()["version"]
    bad = client.post("/v1/policies", json={"id": "x"}, headers=auth(tokens["alice"]))
    assert bad.status_code == 422 and "actions" in bad.json()["detail"]

    def promote(token: str, **move):
        return client.post(
            f"/v1/policies/{version[:12]}/promote", json=move, headers=auth(tokens[token])
        )

    assert promote("alice", to="shadow").json()["to"] == "shadow"
    assert promote("alice", to="active").status_code == 422  # an author's token cannot
    # Alice holding an approver token is still Alice: four eyes means another person.
    own = promote("alice-approver", to="active")
    assert own.status_code == 422 and "someone else" in own.json()["detail"]
    live = promote("bob", to="active")
    assert live.status_code == 200 and live.json()["by"] == "bob"
    listed = client.get("/v1/policies", headers=auth(tokens["auditor"])).json()
    assert [(p["policy_id"], p["status"], p["approved_by"]) for p in listed] == [
        ("stricter", "active", "bob")
    ]
    # The service decides with the promoted version at once.
    cancel = {
        "event_id": "c1",
        "type": "subscription.cancel_requested",
        "customer_id": "zed",
        "occurred_at": "2026-03-02T10:00:00Z",
        "payload": {},
    }
    decided = client.post("/v1/events", json=[cancel], headers=auth(tokens["ingest"])).json()
    assert {d["policy_id"] for d in decided["decisions"]} == {"stricter"}
    with client.app.state.store.reader() as conn:
        kinds = conn.execute(select(t.audit.c.kind)).scalars().all()
    assert kinds.count("policy.transition") == 2


def test_tasks_listed_and_resolved_by_the_caller(service):
    client, tokens, _ = service
    store = client.app.state.store
    with store.transaction() as conn:
        acts.insert_task(
            conn,
            {
                "task_id": "t-1",
                "decision_id": "d-1",
                "customer_id": "ann",
                "queue": "save-desk",
                "reason": "high value, cancelling",
                "status": "open",
                "created_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            },
        )
    listed = client.get("/v1/tasks", headers=auth(tokens["olga"])).json()
    assert [x["task_id"] for x in listed] == ["t-1"]
    done = client.post(
        "/v1/tasks/t-1/resolve", json={"resolution": "saved"}, headers=auth(tokens["olga"])
    )
    assert done.status_code == 200 and done.json()["resolved_by"] == "olga"
    again = client.post(
        "/v1/tasks/t-1/resolve", json={"resolution": "lost"}, headers=auth(tokens["olga"])
    )
    assert again.status_code == 422 and "already resolved" in again.json()["detail"]
    assert client.get("/v1/tasks", headers=auth(tokens["olga"])).json() == []
    empty = client.post(
        "/v1/tasks/t-1/resolve", json={"resolution": ""}, headers=auth(tokens["olga"])
    )
    assert empty.status_code == 422


def test_redeem_over_the_api_posts_once_and_refuses_overdraw(service):
    client, tokens, _ = service
    client.post("/v1/events", json=[purchase(1, amount=100.0)], headers=auth(tokens["ingest"]))
    before = client.get("/v1/loyalty/default/members/ann", headers=auth(tokens["operator"]))
    assert before.json()["available"] == 100
    body = {"customer_id": "ann", "redemption_id": "r-1", "points": 60}
    first = client.post("/v1/loyalty/redemptions", json=body, headers=auth(tokens["operator"]))
    assert first.status_code == 200 and first.json()["result"] == "ok", first.text
    again = client.post("/v1/loyalty/redemptions", json=body, headers=auth(tokens["operator"]))
    assert again.json()["event"] == "duplicate" and again.json()["result"] == "ok"
    too_much = {"customer_id": "ann", "redemption_id": "r-2", "points": 60}
    refused = client.post("/v1/loyalty/redemptions", json=too_much, headers=auth(tokens["ingest"]))
    assert refused.json()["result"] not in ("ok", "exists")
    confirm = client.post(
        "/v1/loyalty/redemptions/r-1/confirm",
        json={"customer_id": "ann"},
        headers=auth(tokens["operator"]),
    )
    assert confirm.json()["result"] == "ok"
    after = client.get("/v1/loyalty/default/members/ann", headers=auth(tokens["partner"])).json()
    assert after["posted"] == 40 and after["available"] == 40
    history = client.get(
        "/v1/loyalty/default/members/ann/history", headers=auth(tokens["auditor"])
    ).json()
    assert len(history) >= 2


def test_partner_statement_settlement_and_adjustment_four_eyes(service):
    client, tokens, _ = service
    client.post("/v1/events", json=[purchase(1, amount=100.0)], headers=auth(tokens["ingest"]))
    statement = "reference,points\np1,30\nextra,5\n"
    rec = client.post(
        "/v1/partners/dealer-1/reconciliation?period=2026-03",
        content=statement,
        headers={**auth(tokens["partner"]), "Content-Type": "text/csv"},
    )
    assert rec.status_code == 200, rec.text
    report = rec.json()
    assert report["matched"] == 1 and not report["clean"]
    assert [x["reference"] for x in report["missing_in_ledger"]] == ["extra"]
    broken = client.post(
        "/v1/partners/dealer-1/reconciliation?period=2026-03",
        content="ref,pts\n",
        headers={**auth(tokens["partner"]), "Content-Type": "text/csv"},
    )
    assert broken.status_code == 422 and "header" in broken.json()["detail"]
    owed = client.get(
        "/v1/partners/dealer-1/settlement?period=2026-03", headers=auth(tokens["partner"])
    ).json()
    assert {r["funder"]: r["points"] for r in owed} == {"acme": 70, "dealer-1": 30}
    adj = client.post(
        "/v1/partners/dealer-1/adjustments",
        json={"period": "2026-03", "reference": "extra", "points": 5, "reason": "late line"},
        headers=auth(tokens["olga"]),
    )
    assert adj.status_code == 201, adj.text
    adjustment = adj.json()["adjustment_id"]
    with client.app.state.store.transaction() as conn:
        olga_approver = create_token(conn, "approver", None, "olga", dt.datetime.now(dt.UTC))[1]
    own = client.post(f"/v1/partners/adjustments/{adjustment}/approve", headers=auth(olga_approver))
    assert own.status_code == 422
    ok = client.post(f"/v1/partners/adjustments/{adjustment}/approve", headers=auth(tokens["bob"]))
    assert ok.status_code == 200 and ok.json()["approved_by"] == "bob"
    twice = client.post(
        f"/v1/partners/adjustments/{adjustment}/approve", headers=auth(tokens["bob"])
    )
    assert twice.status_code == 422


def test_personal_data_masked_by_role_and_kept_out_of_log_and_audit(service):
    client, tokens, _ = service
    sent = client.post(
        "/v1/events",
        json=[profile(1, name="Ann Example", email="ann@example.com", phone="+49 151 2345678")],
        headers=auth(tokens["ingest"]),
    )
    assert sent.json()["results"][0]["status"] == "accepted"
    clear = client.get("/v1/customers/ann", headers=auth(tokens["operator"])).json()
    assert clear["personal"] == {
        "name": "Ann Example",
        "email": "ann@example.com",
        "phone": "+49 151 2345678",
    }
    masked = client.get("/v1/customers/ann", headers=auth(tokens["auditor"])).json()
    assert masked["personal"] == {"name": "A***", "email": "a***@example.com", "phone": "***78"}
    with client.app.state.store.reader() as conn:
        payload = conn.execute(select(t.events.c.payload)).scalar_one()
        audit = " ".join(conn.execute(select(t.audit.c.body)).scalars())
    assert payload["email"].startswith("sha256:") and "ann@example.com" not in str(payload)
    assert "ann@example.com" not in audit and "Ann Example" not in audit
    wrong = client.post(
        "/v1/events", json=[profile(2, email="not-an-address")], headers=auth(tokens["ingest"])
    )
    assert wrong.json()["results"][0]["field"] == "payload.email"
