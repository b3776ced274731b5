"""Every route of the service against every role; policies, tasks, loyalty and partners over
HTTP, with the four-eyes rules holding there too; personal data masked and erased; a partner's
token reaching no other partner's rows on any route, by a rule of the reads themselves (on
SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenure.api.app import create_app
from tenure.api.auth import ROLES, Caller, create_token, scope
from tenure.config import resolve
from tenure.loyalty.contracts import parse_contract
from tenure.loyalty.ledger import member_account
from tenure.policy.model import default_policy
from tenure.runtime.clock import FixedClock
from tenure.services import loyalty
from tenure.store import acts, service_reads
from tenure.store import schema as t
from tenure.store.db import Store
from tenure.store.service_reads import EVERYONE, OutOfScope, Scope
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


def serve(tmp_path, url: str | None = None):
    """The service of a workspace with the shared contract and a token per role and person."""
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(SHARED))
    settings = resolve(ws, url)
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
    # Live time after the test events' days have closed: their instants are decided at once.
    clock = FixedClock(dt.datetime(2026, 3, 10, 3, tzinfo=dt.UTC))
    with TestClient(create_app(settings, clock)) as client:
        yield client, tokens, settings


@pytest.fixture
def service(tmp_path):
    yield from serve(tmp_path)


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
    ("POST", "/v1/loyalty/{programme}/members/{customer_id}/grants"): (
        "/v1/loyalty/default/members/ann/grants",
        {"points": 1, "reason": "role check", "key": "role"},
        {"operator"},
    ),
    ("POST", "/v1/loyalty/{programme}/members/{customer_id}/adjustments"): (
        "/v1/loyalty/default/members/ann/adjustments",
        {"points": 1, "reason": "role check", "key": "role-adjust"},
        {"operator"},
    ),
    ("GET", "/v1/loyalty/proposals"): ("/v1/loyalty/proposals", None, {"operator", "auditor"}),
    ("POST", "/v1/loyalty/proposals/{proposal_id}/approve"): (
        "/v1/loyalty/proposals/p-none/approve",
        None,
        {"operator"},
    ),
    ("POST", "/v1/loyalty/proposals/{proposal_id}/reject"): (
        "/v1/loyalty/proposals/p-none/reject",
        {"reason": "no"},
        {"operator"},
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
    ("GET", "/v1/tokens"): ("/v1/tokens", None, set()),
    ("POST", "/v1/tokens"): ("/v1/tokens", {"role": "auditor", "name": "over-http"}, set()),
    ("DELETE", "/v1/tokens/{token_id}"): ("/v1/tokens/tok-none", None, set()),
}

# Routes whose credential is a signed token in the path, not a bearer token (any role's token
# changes nothing): the unsubscribe links (tests/channels/test_messages.py).
PUBLIC = {("GET", "/v1/unsubscribe/{token}"), ("POST", "/v1/unsubscribe/{token}")}


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
    assert routes == set(ROUTES) | PUBLIC


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
    # A refusal is a 409 problem naming the ledger's rule, and stays one when resent.
    assert (
        refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    )
    problem = refused.json()
    assert problem["rule"] == "exceeds_available" and problem["type"].endswith(":exceeds_available")
    assert "exceeds_available" in problem["title"] and problem["redemption_id"] == "r-2"
    resent = client.post("/v1/loyalty/redemptions", json=too_much, headers=auth(tokens["ingest"]))
    assert resent.status_code == 409 and resent.json()["event"] == "duplicate"
    nothing_held = client.post(
        "/v1/loyalty/redemptions/r-none/confirm",
        json={"customer_id": "ann"},
        headers=auth(tokens["operator"]),
    )
    assert nothing_held.status_code == 409
    assert nothing_held.json()["rule"] == "pending_transfer_not_found"
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
    # A partner sees only what it funds; staff see every funder of the partner's contract.
    assert {r["funder"]: r["points"] for r in owed} == {"dealer-1": 30}
    everyone = client.get(
        "/v1/partners/dealer-1/settlement?period=2026-03", headers=auth(tokens["operator"])
    ).json()
    assert {r["funder"]: r["points"] for r in everyone} == {"acme": 70, "dealer-1": 30}
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


# What belongs to dealer-2 and its OEM (a funder, an account, a transfer or lot id): none may
# reach a dealer-1 token in any answer. (The contract's id, acme-dealers, is dealer-1's too.)
THEIRS = ("dealer-2", "d2-customer", '"acme"', ":acme")
# Each route that names a partner or a customer, aimed at dealer-2's (the others as in ROUTES).
AT_DEALER_2 = {
    ("GET", "/v1/customers/{customer_id}"): "/v1/customers/d2-customer",
    ("DELETE", "/v1/customers/{customer_id}/personal-data"): (
        "/v1/customers/d2-customer/personal-data"
    ),
    ("GET", "/v1/loyalty/{programme}/members/{customer_id}"): (
        "/v1/loyalty/default/members/d2-customer"
    ),
    ("GET", "/v1/loyalty/{programme}/members/{customer_id}/history"): (
        "/v1/loyalty/default/members/d2-customer/history"
    ),
    ("POST", "/v1/partners/{partner}/reconciliation"): (
        "/v1/partners/dealer-2/reconciliation?period=2026-03"
    ),
    ("GET", "/v1/partners/{partner}/settlement"): (
        "/v1/partners/dealer-2/settlement?period=2026-03"
    ),
    ("GET", "/v1/partners/adjustments"): "/v1/partners/adjustments?partner=dealer-2",
    ("POST", "/v1/partners/{partner}/adjustments"): "/v1/partners/dealer-2/adjustments",
}
# dealer-1's own reads: answered, with only dealer-1's rows and fields.
OWN = [
    "/v1/customers/ann",
    "/v1/loyalty/default/members/ann",
    "/v1/loyalty/default/members/ann/history",
    "/v1/partners/dealer-1/settlement?period=2026-03",
]


def dealer_2_data(client, tokens) -> None:
    """ann buys at dealer-1; d2-customer buys at dealer-2 and returns part of it; an approved
    adjustment moves dealer-2's funding: rows of dealer-2 and acme in every partner table."""
    d2 = purchase(2, customer="d2-customer", amount=300.0, partner="dealer-2")
    returned = {
        "event_id": "ret-2",
        "type": "loyalty.return",
        "customer_id": "d2-customer",
        "partner_id": "dealer-2",
        "occurred_at": "2026-03-03T12:00:00Z",
        "payload": {"purchase_event_id": "p2"},
    }
    events = [purchase(1), d2, returned]
    sent = client.post("/v1/events", json=events, headers=auth(tokens["ingest"])).json()
    assert [r["status"] for r in sent["results"]] == ["accepted"] * 3, sent["results"]
    adjustment = client.post(
        "/v1/partners/dealer-2/adjustments",
        json={"period": "2026-03", "reference": "p2", "points": 7, "reason": "dispute"},
        headers=auth(tokens["olga"]),
    ).json()["adjustment_id"]
    approved = client.post(
        f"/v1/partners/adjustments/{adjustment}/approve", headers=auth(tokens["bob"])
    )
    assert approved.status_code == 200, approved.text


def test_a_partner_token_reaches_no_other_partners_rows_on_any_route(service):
    client, tokens, _ = service
    dealer_2_data(client, tokens)
    staff = client.get(
        "/v1/partners/dealer-2/settlement?period=2026-03", headers=auth(tokens["auditor"])
    )
    assert {"acme", "dealer-2"} <= {r["funder"] for r in staff.json()}  # the rows exist
    paths = client.get("/openapi.json").json()["paths"]
    routes = [(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1/") for m in ops]
    routes = [r for r in routes if r not in PUBLIC]
    assert routes and set(routes) == set(ROUTES)
    dealer_1 = auth(tokens["partner"])
    for method, route in routes:
        path, body, _ = ROUTES[(method, route)]
        r = _call(client, method, AT_DEALER_2.get((method, route), path), body, dealer_1)
        assert r.status_code == 403, (method, route, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    for path in OWN:
        r = client.get(path, headers=dealer_1)
        assert r.status_code == 200, (path, r.text)
        assert not [x for x in THEIRS if x in r.text], (path, r.text)
    owed = client.get(OWN[-1], headers=dealer_1).json()
    assert owed and {r["funder"] for r in owed} == {"dealer-1"}
    member = client.get(OWN[1], headers=dealer_1).json()
    assert [lot["lot"] for lot in member["lots"]] == ["accrue:p1:dealer-1"]
    assert set(client.get(OWN[0], headers=dealer_1).json()) == {"customer_id", "loyalty"}


@pytest.fixture
def both_stores(tmp_path, store_url):
    """The service, with dealer-2's data, on SQLite and on PostgreSQL."""
    for client, tokens, _ in serve(tmp_path, store_url):
        dealer_2_data(client, tokens)
        yield client


def test_a_caller_becomes_a_scope_in_one_place():
    contracts = [parse_contract(SHARED)]
    assert scope(Caller("tok-1", "auditor", None, "a"), contracts) is EVERYONE
    dealer = scope(Caller("tok-2", "partner", "dealer-1", "d"), contracts)
    assert dealer == Scope("dealer-1", frozenset({"loyalty"}))
    # A partner token without a partner sees nothing, rather than everything.
    assert scope(Caller("tok-3", "partner", None, "x"), contracts).partner == ""


def test_settlement_in_a_partners_scope_is_only_what_it_funds(both_stores):
    client = both_stores
    contracts = client.app.state.service.contracts
    with client.app.state.store.reader() as conn:
        everyone = service_reads.settlement(conn, contracts, "2026-03", EVERYONE)
        assert everyone == loyalty.settlement(conn, contracts, "2026-03")
        assert {r["funder"] for r in everyone} == {"acme", "dealer-1", "dealer-2"}
        for partner in ("acme", "dealer-1", "dealer-2", "dealer-9"):
            own = service_reads.settlement(conn, contracts, "2026-03", Scope(partner))
            assert own == [r for r in everyone if r["funder"] == partner], partner
        # A partner's own page: its contract's rows, but only those it funds.
        page = service_reads.settlement(conn, contracts, "2026-03", Scope("dealer-1"), "dealer-1")
        assert [r["funder"] for r in page] == ["dealer-1"]
        with pytest.raises(OutOfScope, match="cannot act for dealer-2"):
            service_reads.settlement(conn, contracts, "2026-03", Scope("dealer-1"), "dealer-2")


def test_adjustments_and_a_members_ledger_in_a_partners_scope(both_stores):
    client = both_stores
    with client.app.state.store.reader() as conn:
        assert [a["partner"] for a in service_reads.adjustments(conn, EVERYONE)] == ["dealer-2"]
        assert service_reads.adjustments(conn, Scope("dealer-1")) == []
        assert len(service_reads.adjustments(conn, Scope("acme"))) == 1  # the OEM is party
        with pytest.raises(OutOfScope):
            service_reads.adjustments(conn, Scope("dealer-1"), "dealer-2")
        account = member_account("default", "d2-customer")
        every = service_reads.member_history(conn, EVERYONE, account, "d2-customer")
        assert {r["kind"] for r in every} == {"accrue", "clawback"}
        own = service_reads.member_history(conn, Scope("dealer-2"), account, "d2-customer")
        assert own and all("funder:dealer-2" in (r["debit"], r["credit"]) for r in own)
        assert service_reads.member_history(conn, Scope("dealer-1"), account, "d2-customer") == []
        with pytest.raises(OutOfScope, match="not a customer of dealer-1"):
            service_reads.require_customer(conn, Scope("dealer-1"), "d2-customer")
        with pytest.raises(OutOfScope, match="does not share 'score'"):
            service_reads.require_customer(conn, Scope("dealer-1", frozenset()), "ann", ["score"])
