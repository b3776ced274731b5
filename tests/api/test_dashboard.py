"""The dashboard through HTTP: sign-in, every page for the roles that may see it, redirects and
403s for the rest, CSRF on forms, resolving a task, and the lift chart's interval bars."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenure.api import charts
from tenure.api.app import create_app
from tenure.api.auth import ROLES, create_token, start_session
from tenure.api.dashboard import COOKIE, csrf_token
from tenure.store import acts
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.dashboard import build_workspace


def open_tasks_by_hand(store: Store, customers: int = 2) -> list[dict[str, Any]]:
    """What the dispatcher and the journey's first step do (the browser test runs them for real
    on Temporal): a running journey per decided call, and its save-desk task."""
    with store.transaction() as conn:
        d = t.decisions.c
        decided = conn.execute(
            select(d.decision_id, d.customer_id, d.decided_at)
            .where(d.status == "action")
            .order_by(d.decision_id)
            .limit(customers)
        ).all()
        for decision_id, customer_id, at in decided:
            acts.insert_journeys(
                conn,
                [
                    {
                        "decision_id": decision_id,
                        "customer_id": customer_id,
                        "journey_id": "save-desk",
                        "journey_hash": "test",
                        "action_id": "call",
                        "channel": "email",
                        "status": "running",
                        "step": "call",
                        "listens": [],
                        "sends": [],
                        "started_at": at,
                        "updated_at": at,
                    }
                ],
            )
            acts.insert_task(
                conn,
                {
                    "task_id": f"{decision_id}:call:1",
                    "decision_id": decision_id,
                    "customer_id": customer_id,
                    "queue": "save-desk",
                    "reason": "high-value customer asked to cancel",
                    "status": "open",
                    "created_at": at,
                    "due_at": at + dt.timedelta(days=1),
                },
            )
        return acts.tasks(conn)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory):
    ws = tmp_path_factory.mktemp("dash") / "ws"
    settings = build_workspace(ws)
    store = Store(settings.database_url)
    tasks = open_tasks_by_hand(store)
    tokens = {}
    with store.transaction() as conn:
        for role in ROLES:
            partner = "dealer-1" if role == "partner" else None
            tokens[role] = create_token(conn, role, partner, "", dt.datetime.now(dt.UTC))[1]
    with TestClient(create_app(settings)) as client:
        yield client, tokens, store, tasks
    store.close()


def login(client: TestClient, data: dict[str, str], **kwargs: Any):
    """Post the sign-in form as a browser does: from the sign-in page, with its form token."""
    page = client.get("/dashboard/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.post("/dashboard/login", data={**data, "csrf": csrf}, **kwargs)


def signed_in(client: TestClient, token: str) -> TestClient:
    client.cookies.clear()
    response = login(client, {"token": token, "next": "/dashboard"}, follow_redirects=False)
    assert response.status_code in (303, 401, 403), response.text
    return client


def form_token(client: TestClient) -> str:
    """The CSRF token of the client's session, as its pages' forms carry it."""
    return csrf_token(client.cookies[COOKIE])


def session_of(store: Store, token: str) -> str:
    """A session for any token, whatever its role (sign-in refuses the roles pages refuse)."""
    with store.transaction() as conn:
        return start_session(conn, token, dt.datetime.now(dt.UTC))[0]


def a_decision(store: Store) -> tuple[str, str]:
    with store.reader() as conn:
        d = t.decisions.c
        row = conn.execute(
            select(d.decision_id, d.customer_id).where(d.status == "action").limit(1)
        ).one()
    return row.decision_id, row.customer_id


READ_PAGES = [
    "/dashboard",
    "/dashboard/customers?q=c-00",
    "/dashboard/customers/c-001",
    "/dashboard/policies",
    "/dashboard/partners",
    "/dashboard/tasks",
]


def test_signing_in_sets_a_strict_httponly_cookie_and_a_bad_token_is_refused(dashboard):
    client, tokens, _, _ = dashboard
    client.cookies.clear()
    response = login(client, {"token": tokens["operator"]}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    client.cookies.clear()
    wrong = login(client, {"token": "tnr_nonsense"})
    assert wrong.status_code == 401 and "Unknown or revoked token" in wrong.text
    partner = login(client, {"token": tokens["partner"]})
    assert partner.status_code == 403 and "cannot use the dashboard" in partner.text
    # `next` only ever leads back into the dashboard.
    away = login(
        client,
        {"token": tokens["auditor"], "next": "https://elsewhere.example/"},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/dashboard"


@pytest.mark.parametrize("path", READ_PAGES)
def test_pages_render_for_readers_and_refuse_everyone_else(dashboard, path):
    client, tokens, store, _ = dashboard
    client.cookies.clear()
    anonymous = client.get(path, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/dashboard/login?next=")
    for role in ROLES:
        client.cookies.clear()
        client.cookies.set(COOKIE, session_of(store, tokens[role]), path="/dashboard")
        response = client.get(path, follow_redirects=False)
        if role in ("admin", "operator", "auditor"):
            assert response.status_code == 200, (role, response.text)
            assert response.headers["content-type"].startswith("text/html")
            assert "script" not in response.headers["content-security-policy"]
            assert "<script" not in response.text
        else:
            assert response.status_code == 403, role
            assert "may not open this page" in response.text
    client.cookies.clear()
    client.cookies.set(COOKIE, "tnr_revoked-or-unknown", path="/dashboard")
    assert client.get(path, follow_redirects=False).status_code == 303


def test_overview_shows_rates_suppressions_journeys_and_budget_burn(dashboard):
    client, tokens, _, _ = dashboard
    page = signed_in(client, tokens["auditor"]).get("/dashboard").text
    assert "Event rate" in page and "events per day" in page
    assert "control_group" in page and "budget" in page  # suppressions by guardrail
    assert "journeys by state" in page and "running" in page
    assert 'class="spent"' in page and "save-desk 2026-02" in page  # the burn chart's bars


def test_customer_search_by_prefix_and_the_customer_page(dashboard):
    client, tokens, store, _ = dashboard
    client = signed_in(client, tokens["operator"])
    found = client.get("/dashboard/customers", params={"q": "c-00"}).text
    assert re.findall(r'class="customer" href="/dashboard/customers/([^"]+)"', found) == [
        f"c-{i:03d}" for i in range(1, 10)
    ]
    assert "No customer id starts" in client.get("/dashboard/customers?q=zz").text
    # Wildcards are not wildcards.
    assert "No customer id starts" in client.get("/dashboard/customers?q=c-%25").text
    decision_id, customer = a_decision(store)
    page = client.get(f"/dashboard/customers/{customer}").text
    for section in ("Risk, and why", "Decisions", "Journeys", "Ledger", "Event timeline"):
        assert section in page
    assert f"/dashboard/decisions/{decision_id}" in page
    assert "subscription.cancel_requested" in page and "product_line=parts" in page
    assert "raises risk" in page or "lowers risk" in page
    assert client.get("/dashboard/customers/nobody").status_code == 404


def test_a_decision_shows_its_reason_explanation_and_candidates(dashboard):
    client, tokens, store, _ = dashboard
    decision_id, customer = a_decision(store)
    page = signed_in(client, tokens["auditor"]).get(f"/dashboard/decisions/{decision_id}").text
    assert "Reason:" in page and "Why this risk" in page
    assert "Candidates and guardrail verdicts" in page and "chosen" in page
    assert re.search(r'<td class="n">-?[\d,]+\.\d\d</td>', page)  # expected net value
    assert "save-desk" in page and customer in page
    assert client.get("/dashboard/decisions/d-none").status_code == 404


def test_policies_page_has_versions_lifecycle_and_the_lift_chart(dashboard):
    client, tokens, _, _ = dashboard
    page = signed_in(client, tokens["admin"]).get("/dashboard/policies").text
    assert "call customers who ask to cancel" in page
    assert "draft → <b>active</b>" in page and "by bo" in page
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count('class="ci"') == 1 and 'class="estimate"' in svg
    assert "95% interval" in svg


def test_partners_page_settles_and_reconciles_a_statement(dashboard):
    client, tokens, store, _ = dashboard
    client = signed_in(client, tokens["auditor"])
    page = client.get("/dashboard/partners", params={"period": "2026-01"}).text
    assert "Settlement 2026-01" in page and "acme-dealers" in page and "dealer-1" in page
    csrf = form_token(client)
    with store.reader() as conn:
        funded = conn.execute(select(t.loyalty_accruals.c.event_id).limit(1)).scalar_one()
    statement = f"reference,points\n{funded},1\nnot-ours,5\n"
    form = {"partner": "dealer-1", "period": "2026-01", "statement": statement, "csrf": csrf}
    result = client.post("/dashboard/partners/reconcile", data=form).text
    assert "points differ" in result and "not in the ledger" in result
    assert "not on the statement" in result
    refused = client.post("/dashboard/partners/reconcile", data={**form, "csrf": "forged"})
    assert refused.status_code == 403 and "Form refused" in refused.text
    # A token with characters compare_digest refuses as text is refused the same way, not a 500.
    accented = client.post("/dashboard/partners/reconcile", data={**form, "csrf": "forgé"})
    assert accented.status_code == 403 and "Form refused" in accented.text


def test_resolving_a_task_needs_an_operator_and_the_session_csrf_token(dashboard):
    client, tokens, store, tasks = dashboard
    task = tasks[0]["task_id"]
    form = {"task_id": task, "resolution": "saved", "by": "Ann"}
    # An auditor reads the queue but cannot resolve.
    auditor = signed_in(client, tokens["auditor"])
    assert "an operator resolves it" in auditor.get("/dashboard/tasks").text
    denied = auditor.post("/dashboard/tasks/resolve", data={**form, "csrf": form_token(auditor)})
    assert denied.status_code == 403
    operator = signed_in(client, tokens["operator"])
    page = operator.get("/dashboard/tasks").text
    assert task in page and "<option>saved</option>" in page and "<option>lost</option>" in page
    forged = operator.post("/dashboard/tasks/resolve", data={**form, "csrf": "x" * 64})
    assert forged.status_code == 403
    done = operator.post(
        "/dashboard/tasks/resolve",
        data={**form, "csrf": form_token(operator)},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "resolved=" in done.headers["location"]
    assert "its journey continues" in operator.get(done.headers["location"]).text
    again = operator.post("/dashboard/tasks/resolve", data={**form, "csrf": form_token(operator)})
    assert again.status_code == 409 and "already resolved" in again.text
    with store.reader() as conn:
        row = acts.task(conn, task)
        signal = conn.execute(
            select(t.outbox.c.kind, t.outbox.c.payload).where(
                t.outbox.c.idempotency_key == f"{task}:resolved"
            )
        ).one()
    assert row["status"] == "resolved" and row["resolution"] == "saved"
    assert row["resolved_by"].startswith("Ann (tok-")
    assert signal.kind == "journey.signal"
    assert signal.payload["observation"]["resolution"] == "saved"


def test_signing_out_needs_the_form_token(dashboard):
    client, tokens, _, _ = dashboard
    client = signed_in(client, tokens["operator"])
    assert client.post("/dashboard/logout", data={"csrf": "nope"}).status_code == 403
    out = client.post(
        "/dashboard/logout", data={"csrf": form_token(client)}, follow_redirects=False
    )
    assert out.status_code == 303 and 'tenure_dashboard=""' in out.headers["set-cookie"]


def test_the_interval_chart_draws_an_error_bar_per_measured_row_and_escapes_labels():
    svg = charts.intervals(
        [
            charts.Interval("p1 · <offer>", 0.05, -0.01, 0.11),
            charts.Interval("p2 · call", -0.02, -0.06, 0.02),
            charts.Interval("p3 · sms", None, note="no outcome yet"),
        ],
        "lift",
    )
    assert svg.count('class="ci"') == 2 and svg.count('class="estimate"') == 2
    assert "&lt;offer&gt;" in svg and "<offer>" not in svg
    assert "no outcome yet" in svg
    # The zero line sits between the two estimates, the bars span their intervals.
    zero = float(re.search(r'class="zero" x1="([\d.]+)"', svg).group(1))
    dots = [float(x) for x in re.findall(r'class="estimate" cx="([\d.]+)"', svg)]
    assert dots[1] < zero < dots[0]
