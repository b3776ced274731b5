"""The dashboard through HTTP: sign-in, every page for the roles that may see it, redirects and
403s for the rest, CSRF on forms, resolving a task, the lift chart's interval bars; the signed-in
person in the header, the partner page's month; and every list: filters, keyset paging to the
end exactly once, CSV export; retrying a dead letter, promoting a policy with four eyes."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenure.api import charts
from tenure.api.app import create_app
from tenure.api.auth import ROLES, create_token, start_session
from tenure.api.dashboard import COOKIE, csrf_token, lists
from tenure.policy.model import parse_policy
from tenure.services import policies
from tenure.services.loyalty import propose_adjustment
from tenure.store import acts, dashboard_reads, repo
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.dashboard import (
    SAVE_DESK,
    T0,
    build_workspace,
    dead_letters,
    draft,
    place_tiers,
    trained_models,
)


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
    dead_letters(store, 3)
    place_tiers(store, {"c-002": "gold", "c-003": "gold", "c-005": "silver"})
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
    "/dashboard/saving",
    "/dashboard/customers?q=c-00",
    "/dashboard/customers/c-001",
    "/dashboard/events?customer=c-001",
    "/dashboard/decisions",
    "/dashboard/journeys",
    "/dashboard/deliveries",
    "/dashboard/policies",
    "/dashboard/partners",
    "/dashboard/tasks",
]
# Who may open each page besides admin, operator and auditor.
ALSO = {"/dashboard/policies": ("policy-author", "approver")}


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
        if role in ("admin", "operator", "auditor", *ALSO.get(path, ())):
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


# ---------------------------------------------------------------- who, and which month


def named(client: TestClient, store: Store, role: str, name: str) -> TestClient:
    """The client signed in with a new token of `role` held by `name`."""
    with store.transaction() as conn:
        token = create_token(conn, role, None, name, dt.datetime.now(dt.UTC))[1]
    return signed_in(client, token)


def test_the_header_names_the_signed_in_person_not_the_token(dashboard):
    client, _, store, _ = dashboard
    page = named(client, store, "operator", "Olga Operator").get("/dashboard").text
    header = page[page.index("<header>") : page.index("</header>")]
    assert "<b>Olga Operator</b>" in header and "operator" in header
    assert not re.search(r">\s*tok-", header)  # the id is only a tooltip


def test_policy_people_sign_in_to_the_policies_page_alone(dashboard):
    client, tokens, _, _ = dashboard
    client.cookies.clear()
    response = login(client, {"token": tokens["approver"]}, follow_redirects=False)
    assert response.headers["location"] == "/dashboard/policies"
    page = client.get("/dashboard/policies").text
    assert 'href="/dashboard/decisions"' not in page  # the nav offers only what opens
    assert client.get("/dashboard/decisions").status_code == 403


def test_the_partners_page_opens_on_the_newest_month_with_something_to_settle(dashboard):
    client, tokens, store, _ = dashboard
    # A purchase in May whose points a cap refused whole: it funds nothing to settle.
    with store.transaction() as conn:
        conn.execute(
            t.loyalty_accruals.insert(),
            [
                {
                    "event_id": "refused-in-may",
                    "customer_id": "c-001",
                    "partner_id": "dealer-1",
                    "occurred_at": dt.datetime(2026, 5, 2, tzinfo=dt.UTC),
                    "contract_id": "acme-dealers",
                    "version_from": dt.datetime(2026, 3, 15, tzinfo=dt.UTC),
                    "rule_id": "parts-v2",
                    "requested": 40,
                    "granted": 0,
                    "refused_reason": "customer cap",
                    "shares": {},
                }
            ],
        )
    page = signed_in(client, tokens["auditor"]).get("/dashboard/partners").text
    assert "Settlement 2026-03" in page and "Nothing funded" not in page
    assert 'href="/dashboard/partners?period=2026-02"' in page  # the month before
    assert 'href="/dashboard/partners?period=2026-04"' in page  # and after


# ---------------------------------------------------------------- lists: paging and CSV


def walk(client: TestClient, url: str, pattern: str) -> tuple[list[str], int]:
    """Every row of a list, following its next-page links to the end: (the rows' ids as
    `pattern` finds them, the number of pages)."""
    found, pages = [], 0
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text
        found += re.findall(pattern, page.text)
        pages += 1
        following = re.search(r'class="next-page" rel="next" href="([^"]+)"', page.text)
        url = following.group(1).replace("&amp;", "&") if following else ""
    return found, pages


def csv_rows(client: TestClient, url: str) -> list[dict[str, str]]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.text)))


CUSTOMER_ROW = r'class="customer" href="/dashboard/customers/([^"]+)"'


def test_the_customer_search_pages_past_its_first_page_and_exports(dashboard):
    client, tokens, _, _ = dashboard
    client = signed_in(client, tokens["operator"])
    everyone = [f"c-{i:03d}" for i in range(1, 41)]
    found, pages = walk(client, "/dashboard/customers?q=c-&limit=7", CUSTOMER_ROW)
    assert found == everyone and pages == 6  # each exactly once, in id order
    exported = csv_rows(client, "/dashboard/customers?q=c-&format=csv")
    assert [r["customer_id"] for r in exported] == everyone
    # A cursor of another list, a damaged one, an unknown format: a page saying so.
    first = client.get("/dashboard/decisions?limit=1").text
    cursor = re.search(r"cursor=([^&\"]+)", first).group(1)
    other = client.get(f"/dashboard/customers?q=c-&cursor={cursor}")
    assert other.status_code == 400 and "Not a cursor of this list" in other.text
    assert client.get("/dashboard/customers?cursor=%%%").status_code == 400
    assert client.get("/dashboard/customers?format=xml").status_code == 400


def test_a_customers_whole_timeline_pages_from_the_customer_page(dashboard):
    client, tokens, _, _ = dashboard
    client = signed_in(client, tokens["auditor"])
    page = client.get("/dashboard/customers/c-004").text
    assert 'id="all-events" href="/dashboard/events?customer=c-004"' in page
    found, pages = walk(client, "/dashboard/events?customer=c-004&limit=3", r'<tr class="event">')
    exported = csv_rows(client, "/dashboard/events?customer=c-004&format=csv")
    assert len(found) == len(exported) == 7 and pages == 3
    assert exported[0]["type"] == "subscription.cancelled"  # newest first
    profile = next(r for r in exported if r["type"] == "profile.updated")
    assert json.loads(profile["payload"]) == {"segment": "enterprise"}
    assert {r["partner_id"] for r in exported} == {"", "dealer-2"}


def test_the_task_queue_pages_and_exports(dashboard):
    client, tokens, _, tasks = dashboard
    client = signed_in(client, tokens["auditor"])
    row = r'<tr class="task" data-task="([^"]+)">'
    found, pages = walk(client, "/dashboard/tasks?status=all&limit=1", row)
    assert found == [k["task_id"] for k in tasks] and pages == 2  # oldest first
    exported = csv_rows(client, "/dashboard/tasks?status=all&format=csv")
    assert [r["task_id"] for r in exported] == found
    assert {r["queue"] for r in exported} == {"save-desk"}


def test_csv_cells_a_spreadsheet_would_run_are_defused():
    assert lists.cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and lists.cell("-1") == "'-1"
    assert lists.cell(-1.5) == -1.5 and lists.cell(None) == ""
    assert lists.cell({"a": 1}) == '{"a":1}'


# ---------------------------------------------------------------- worth saving


SAVING_ROW = r'<tr class="saving" data-customer="([^"]+)">'


def test_customers_most_worth_saving_are_ranked_by_risk_times_value(dashboard):
    client, tokens, _, _ = dashboard
    client = signed_in(client, tokens["operator"])
    rows = csv_rows(client, "/dashboard/saving?format=csv")
    assert len(rows) == 41  # 40 and z-late, scored now
    worth = [float(r["worth"]) for r in rows]
    assert worth == sorted(worth, reverse=True)
    for r in rows:
        assert float(r["worth"]) == pytest.approx(float(r["risk"]) * float(r["value"]), abs=1e-3)
    found, pages = walk(client, "/dashboard/saving?limit=15", SAVING_ROW)
    assert found == [r["customer_id"] for r in rows] and pages == 3
    # Filters: a segment (a register of the state), a tier, a partner.
    smb = csv_rows(client, "/dashboard/saving?format=csv&segment=smb")
    assert smb and {r["segment"] for r in smb} == {"smb"}
    assert len(smb) == 20
    gold = walk(client, "/dashboard/saving?tier=gold", SAVING_ROW)[0]
    assert sorted(gold) == ["c-002", "c-003"]
    dealer_2 = walk(client, "/dashboard/saving?partner=dealer-2", SAVING_ROW)[0]
    assert sorted(dealer_2) == [f"c-{n + 1:03d}" for n in range(40) if n % 4 == 3]
    page = client.get("/dashboard/saving?segment=smb&tier=silver").text
    assert re.findall(SAVING_ROW, page) == ["c-005"] and "<option selected>smb</option>" in page


# ---------------------------------------------------------------- decisions


DECISION_ROW = r'<tr class="decision-row" data-decision="([^"]+)">'


def decision_rows(store: Store) -> list[Any]:
    with store.reader() as conn:
        d = t.decisions.c
        return conn.execute(select(d.decision_id, d.status, d.decided_at, d.mode)).all()


def test_decisions_filter_by_status_policy_mode_and_days_and_page(dashboard):
    client, tokens, store, _ = dashboard
    client = signed_in(client, tokens["auditor"])
    every = decision_rows(store)
    found, pages = walk(client, "/dashboard/decisions?limit=7", DECISION_ROW)
    assert sorted(found) == sorted(r.decision_id for r in every) and len(set(found)) == len(found)
    assert pages == -(-len(every) // 7)
    suppressed = walk(client, "/dashboard/decisions?status=suppressed&mode=live", DECISION_ROW)[0]
    assert sorted(suppressed) == sorted(
        r.decision_id for r in every if r.status == "suppressed" and r.mode == "live"
    )
    assert walk(client, "/dashboard/decisions?policy=no-such-policy", DECISION_ROW)[0] == []
    # A range of days, both ends included (UTC).
    day = min(r.decided_at for r in every).date().isoformat()
    on_day = walk(client, f"/dashboard/decisions?since={day}&until={day}", DECISION_ROW)[0]
    assert sorted(on_day) == sorted(
        r.decision_id for r in every if r.decided_at.date().isoformat() == day
    )
    assert walk(client, "/dashboard/decisions?until=2025-12-31", DECISION_ROW)[0] == []
    exported = csv_rows(client, f"/dashboard/decisions?format=csv&status=action&since={day}")
    assert exported and {r["status"] for r in exported} == {"action"}
    bad = client.get("/dashboard/decisions?since=yesterday")
    assert bad.status_code == 400 and "from must be a day" in bad.text
    assert client.get("/dashboard/decisions?status=maybe").status_code == 400


# ---------------------------------------------------------------- journeys


JOURNEY_ROW = r'<tr class="journey" data-decision="([^"]+)">'


def test_journeys_filter_by_state_step_and_age(dashboard):
    client, tokens, store, tasks = dashboard
    with store.transaction() as conn:  # what the worker records as their first step runs
        for k in tasks:
            acts.update_journey(conn, k["decision_id"], status="running", step="call")
        started = {j["decision_id"]: j["started_at"] for j in acts.journeys(conn, limit=1000)}
    every = set(started)
    client = signed_in(client, tokens["operator"])
    running = {k["decision_id"] for k in tasks}
    assert set(walk(client, "/dashboard/journeys?status=running", JOURNEY_ROW)[0]) == running
    pending = walk(client, "/dashboard/journeys?status=pending&limit=4", JOURNEY_ROW)[0]
    assert sorted(pending) == sorted(every - running)
    assert walk(client, "/dashboard/journeys?status=completed", JOURNEY_ROW)[0] == []
    assert set(walk(client, "/dashboard/journeys?step=call", JOURNEY_ROW)[0]) == running
    assert walk(client, "/dashboard/journeys?step=thank", JOURNEY_ROW)[0] == []
    # Age counts to event time (the newest event, day 75 after T0).
    newest = T0 + dt.timedelta(days=75)
    for older, younger in ((40, 50), (50, None), (0, 10)):
        url = f"/dashboard/journeys?older={older}&younger={younger or ''}"
        expected = {
            d
            for d, at in started.items()
            if older <= (newest - at).days and (younger is None or (newest - at).days < younger)
        }
        assert sorted(walk(client, url, JOURNEY_ROW)[0]) == sorted(expected), url
    assert walk(client, "/dashboard/journeys?older=1000", JOURNEY_ROW)[0] == []
    exported = csv_rows(client, "/dashboard/journeys?format=csv&step=call")
    assert {r["decision_id"] for r in exported} == running
    assert all(40 < float(r["age_days"]) < 50 for r in exported)
    assert client.get("/dashboard/journeys?older=soon").status_code == 400


# ---------------------------------------------------------------- dead letters


LETTER_ROW = r'<tr class="letter" data-key="([^"]+)">'


def test_an_operator_retries_a_dead_letter_through_the_open_circuit(dashboard):
    client, tokens, store, _ = dashboard
    with store.reader() as conn:
        dead = [r["key"] for r in acts.deliveries(conn, ["dead"])]
    auditor = signed_in(client, tokens["auditor"])
    page = auditor.get("/dashboard/deliveries").text
    assert sorted(re.findall(LETTER_ROW, page)) == sorted(dead) and len(dead) == 3
    assert 'data-channel="email"' in page and "open" in page and "an operator retries it" in page
    exported = csv_rows(auditor, "/dashboard/deliveries?format=csv")
    assert [r["last_error"] for r in exported] == ["HTTP 503 from the ESP"] * 3
    form = {"key": dead[0], "csrf": form_token(auditor)}
    assert auditor.post("/dashboard/deliveries/retry", data=form).status_code == 403
    operator = signed_in(client, tokens["operator"])
    forged = operator.post("/dashboard/deliveries/retry", data={**form, "csrf": "x" * 64})
    assert forged.status_code == 403 and "Form refused" in forged.text
    done = operator.post(
        "/dashboard/deliveries/retry",
        data={**form, "csrf": form_token(operator)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "Retried 1: 1 delivered" in operator.get(done.headers["location"]).text
    with store.reader() as conn:
        assert acts.delivery(conn, dead[0])["status"] == "delivered"
        assert acts.channel_state(conn, "email")["circuit"] == "closed"  # the trial went through
    outbox = client.app.state.service.settings.workspace / "outbox" / "email.jsonl"
    assert dead[0] in outbox.read_text()
    again = operator.post(
        "/dashboard/deliveries/retry", data={**form, "csrf": form_token(operator)}
    )
    assert again.status_code == 409 and "Nothing to retry" in again.text
    # The rest of the channel's dead letters, with one press.
    both = operator.post(
        "/dashboard/deliveries/retry", data={"channel": "email", "csrf": form_token(operator)}
    )
    assert "Retried 2: 2 delivered, 0 still dead" in both.text
    assert "No dead letters" in operator.get("/dashboard/deliveries").text


# ---------------------------------------------------------------- policy promotion


def test_promoting_a_policy_takes_a_second_person(dashboard):
    client, tokens, store, _ = dashboard
    version = draft(store, "ana")
    form = {"version": version, "to": "active"}
    # Ana wrote it: her approver token cannot make it decide for real.
    ana = named(client, store, "approver", "ana")
    refused = ana.post("/dashboard/policies/promote", data={**form, "csrf": form_token(ana)})
    assert refused.status_code == 409 and "ana wrote this version" in refused.text
    # A policy author may only shadow or retire; an operator may not move versions at all.
    author = named(client, store, "policy-author", "cy")
    page = author.get("/dashboard/policies").text
    assert "<option>shadow</option>" in page and "<option>active</option>" not in page
    going = author.post("/dashboard/policies/promote", data={**form, "csrf": form_token(author)})
    assert going.status_code == 409 and "needs an approver" in going.text
    operator = signed_in(client, tokens["operator"])
    assert "Move as" not in operator.get("/dashboard/policies").text
    denied = operator.post(
        "/dashboard/policies/promote", data={**form, "csrf": form_token(operator)}
    )
    assert denied.status_code == 403
    bo = named(client, store, "approver", "bo")
    forged = bo.post("/dashboard/policies/promote", data={**form, "csrf": "forged"})
    assert forged.status_code == 403
    done = bo.post(
        "/dashboard/policies/promote",
        data={**form, "csrf": form_token(bo)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    page = bo.get(done.headers["location"]).text
    assert f"Version {version[:12]} moved" in page and "draft → <b>active</b>" in page
    with store.reader() as conn:
        listed = {v["policy_hash"]: v for v in policies.listing(conn)}
    assert listed[version]["status"] == "active" and listed[version]["approved_by"] == "bo"
    others = [v["status"] for h, v in listed.items() if h != version]
    assert others.count("retired") == 1 and "active" not in others  # the one it replaced
    live = client.app.state.service.pipeline.policies.active  # the service decides with it now
    assert live.content_hash == version


def test_policy_versions_page_and_export(dashboard):
    client, tokens, store, _ = dashboard
    policy = parse_policy({**SAVE_DESK.model_dump(mode="json"), "label": "call on day one"})
    with store.transaction() as conn:
        policies.register(conn, policy, "dee", T0)
        listed = [v["policy_hash"] for v in policies.listing(conn)]
    assert len(listed) >= 2
    client = signed_in(client, tokens["auditor"])
    row = r'<tr class="version" data-version="([^"]+)">'
    found, pages = walk(client, "/dashboard/policies?limit=1", row)
    assert found == listed and pages == len(listed)  # newest first, each once
    exported = csv_rows(client, "/dashboard/policies?format=csv")
    assert [r["policy_hash"] for r in exported] == listed
    first = next(r for r in exported if r["label"] == "call customers who ask to cancel")
    assert any(tr["to"] == "active" for tr in json.loads(first["lifecycle"]))


def test_a_customers_ledger_pages_and_exports(dashboard):
    client, tokens, store, _ = dashboard
    client = signed_in(client, tokens["auditor"])
    with store.reader() as conn:
        ledger = dashboard_reads.ledger_page(conn, "member:default:c-004", 100)
    assert len(ledger) >= 2
    row = r'<tr class="transfer" data-transfer="([^"]+)">'
    found, pages = walk(client, "/dashboard/customers/c-004?limit=1", row)
    assert found == [r["transfer_id"] for r in ledger] and pages == len(ledger)  # newest first
    exported = csv_rows(client, "/dashboard/customers/c-004?format=csv")
    assert [r["transfer_id"] for r in exported] == found
    assert all(int(r["points"]) > 0 for r in exported if r["kind"] == "accrual")


def test_the_partners_settlement_and_adjustments_page_and_export(dashboard):
    client, tokens, store, _ = dashboard
    contracts = client.app.state.service.contracts
    made = [
        propose_adjustment(
            store, contracts, "dealer-1", "2026-01", f"ref-{i}", 5 + i, "dispute", "ana", T0
        )
        for i in range(3)
    ]
    client = signed_in(client, tokens["auditor"])
    row = r'<tr class="adjustment" data-adjustment="([^"]+)">'
    found, pages = walk(client, "/dashboard/partners?table=adjustments&limit=2", row)
    assert set(made) <= set(found) and len(found) == len(set(found)) and pages >= 2
    exported = csv_rows(client, "/dashboard/partners?table=adjustments&format=csv")
    assert [r["adjustment_id"] for r in exported] == found
    assert {r["reason"] for r in exported if r["adjustment_id"] in made} == {"dispute"}
    owed = r'<tr class="owed"><td><code>([^<]+)</code></td><td>([^<]+)</td>'
    url = "/dashboard/partners?period=2026-01&table=settlement&limit=1"
    found, pages = walk(client, url, owed)
    assert len(found) >= 2 and pages == len(found) and found == sorted(found)
    exported = csv_rows(client, "/dashboard/partners?period=2026-01&table=settlement&format=csv")
    assert [(r["contract"], r["funder"]) for r in exported] == found
    assert {r["period"] for r in exported} == {"2026-01"}
    # A cursor or an export must say which table it is for.
    assert client.get("/dashboard/partners?format=csv").status_code == 400
    assert client.get("/dashboard/partners?table=nope").status_code == 400


# ---------------------------------------------------------------- models


def test_models_show_backtest_reliability_and_drift_and_an_admin_promotes(dashboard):
    client, tokens, store, _ = dashboard
    v1, v2 = trained_models(store)
    auditor = signed_in(client, tokens["auditor"])
    page = auditor.get("/dashboard/models").text
    assert re.findall(r'<tr class="model" data-version="([^"]+)">', page) == [v2, v1]
    assert "AUC" in page and "Brier" in page and "Make active" not in page
    chart = page[page.index('id="reliability"') :]
    assert chart.count('class="bin"') >= 2 and 'class="diagonal"' in chart
    drift = auditor.get(f"/dashboard/models?drift={v1}").text
    assert f"Drift of {v1}" in drift and "<code>score</code>" in drift and "PSI" in drift
    exported = csv_rows(auditor, "/dashboard/models?format=csv")
    assert [r["version"] for r in exported] == [v2, v1] and float(exported[0]["auc"]) > 0
    form = {"version": v1}
    operator = signed_in(client, tokens["operator"])
    denied = operator.post("/dashboard/models/promote", data={**form, "csrf": form_token(operator)})
    assert denied.status_code == 403
    admin = signed_in(client, tokens["admin"])
    assert "Make active" in admin.get("/dashboard/models").text
    assert admin.post("/dashboard/models/promote", data={**form, "csrf": "no"}).status_code == 403
    unknown = admin.post(
        "/dashboard/models/promote", data={"version": "v9", "csrf": form_token(admin)}
    )
    assert unknown.status_code == 409 and "no model version" in unknown.text
    done = admin.post(
        "/dashboard/models/promote",
        data={**form, "csrf": form_token(admin)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert f"{v1} is the active model now" in admin.get(done.headers["location"]).text
    with store.reader() as conn:
        assert {m["version"]: m["status"] for m in repo.models(conn)}[v1] == "active"
    # The service scores with it at once, and so do the dashboard's pages.
    assert client.app.state.service.knowledge.scorer.version == v1
    assert f"{v1})" in admin.get("/dashboard/customers/c-001").text  # "churn risk (model v1)"


# ---------------------------------------------------------------- charts


END_LABEL = re.compile(
    r'<text x="([\d.]+)" y="[\d.]+" font-size="(\d+)"[^>]*text-anchor="end">'
    r"(?:<title>([^<]*)</title>)?([^<]*)</text>"
)


def labels_fit(svg: str) -> list[tuple[str, str | None]]:
    """Every right-aligned label of a chart, asserting each starts inside it: (shown, whole)."""
    found = []
    for x, size, whole, shown in END_LABEL.findall(svg):
        assert float(x) - charts.text_width(html.unescape(shown), float(size)) >= 0, shown
        found.append((html.unescape(shown), html.unescape(whole) if whole else None))
    return found


def test_chart_labels_are_never_clipped():
    lift = "save-desk-for-enterprise 80529afd · call-them-back"  # 35 characters fitted
    svg = charts.intervals([charts.Interval(lift, 0.05, -0.01, 0.11)], "lift", unit="points")
    assert (lift, None) in labels_fit(svg)
    huge = "x" * 400
    shortened = labels_fit(charts.intervals([charts.Interval(huge, 0.1, 0.0, 0.2)], "lift"))
    assert any(whole == huge and shown.endswith("…") for shown, whole in shortened)
    label = "frequency_cap_email_7_days"  # 18 characters fitted
    assert (label, None) in labels_fit(charts.bars([(label, 12_345.0)], "suppressions"))
    burnt = charts.burn([("save-desk-for-enterprise 2026-02", 140.0, 100.0)], "burn")
    assert ("save-desk-for-enterprise 2026-02", None) in labels_fit(burnt)
    # The figures right of the bars end inside the chart too.
    width = float(re.search(r'viewBox="0 0 ([\d.]+)', burnt).group(1))
    x = float(re.search(r'<text x="([\d.]+)" y="[\d.]+" font-size="12">140 of 100', burnt)[1])
    assert x + charts.text_width("140 of 100") <= width


def test_the_policies_lift_chart_labels_fit(dashboard):
    client, tokens, _, _ = dashboard
    page = signed_in(client, tokens["auditor"]).get("/dashboard/policies").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert any(shown.startswith("save-desk ") for shown, _ in labels_fit(svg))
