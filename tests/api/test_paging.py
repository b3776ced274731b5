"""Cursor pagination on every list of the API (issue "An API contract", item 6): `?limit=` and
`?cursor=`, a `Link: <...>; rel="next"` while rows remain, keyset so that rows inserted while
someone pages move nothing; `offset`, a bad cursor and an unknown parameter refused with a 400
naming it. The typed client pages through 2,500 decisions 100 at a time and gets each once
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.api.client import ApiError, Client
from tenure.api.routes.customers import FIELDS
from tenure.config import resolve
from tenure.policy.model import default_policy
from tenure.runtime.clock import FixedClock
from tenure.store import acts, repo
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
PROBLEM = "application/problem+json"


def decision_row(i: int, at: dt.datetime, customer: str = "c-1") -> dict[str, Any]:
    """A stored decision as the pipeline writes one (only what the lists read)."""
    return {
        "decision_id": f"d-{i:05d}",
        "customer_id": customer,
        "decided_at": at,
        "status": "none",
        "reason": "below the risk threshold",
        "risk": 0.1,
        "policy_id": "default",
        "policy_hash": "h" * 64,
        "trigger_event_id": f"e-{i}",
        "mode": "live",
        "audit_seq": i,
        "record": {"scorer": "baseline", "scorer_version": "1", "explanation": []},
    }


def journey_row(i: int) -> dict[str, Any]:
    at = START + dt.timedelta(hours=i // 2)  # two journeys per instant: the id breaks the tie
    return {
        "decision_id": f"d-j{i}",
        "customer_id": f"c-{i}",
        "journey_id": "winback",
        "journey_hash": "j" * 64,
        "status": "running",
        "listens": [],
        "sends": [],
        "started_at": at,
        "updated_at": at,
    }


def task_row(i: int) -> dict[str, Any]:
    return {
        "task_id": f"t-{i}",
        "decision_id": f"d-t{i}",
        "customer_id": f"c-{i}",
        "queue": "save-desk",
        "reason": "high value",
        "status": "open",
        "created_at": START + dt.timedelta(minutes=i // 2),
    }


@pytest.fixture
def api(tmp_path, store_url) -> Iterator[tuple[TestClient, Store]]:
    """The service as admin, with a contract (points, settlement, adjustments to list), on
    SQLite and PostgreSQL."""
    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    settings = resolve(ws, store_url)
    store = Store(settings.database_url)
    with store.transaction() as conn:
        token = create_token(conn, "admin", None, "root", dt.datetime.now(dt.UTC))[1]
    clock = FixedClock(dt.datetime(2026, 3, 10, 3, tzinfo=dt.UTC))
    with TestClient(create_app(settings, clock)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, store
    store.close()


def seed_every_list(client: TestClient, store: Store) -> None:
    """At least three rows in every list, with ties in each time key."""
    purchases = [
        {
            "event_id": f"p{i}",
            "type": "purchase",
            "customer_id": "ann",
            "partner_id": "dealer-1",
            "occurred_at": f"2026-03-0{1 + i}T10:00:00Z",
            "payload": {"amount": 100.0, "product_line": "parts"},
        }
        for i in range(3)
    ]
    assert client.post("/v1/events", json=purchases).status_code == 200
    for i in range(3):
        doc = default_policy().model_dump(mode="json") | {"id": f"p-{i}", "label": f"v{i}"}
        assert client.post("/v1/policies", json=doc).status_code == 201
        adjustment = {"period": "2026-03", "reference": f"p{i}", "points": 1 + i, "reason": "x"}
        assert client.post("/v1/partners/dealer-1/adjustments", json=adjustment).status_code == 201
        grant = {"points": 600 + i, "reason": "goodwill"}  # above the threshold: waits
        assert client.post("/v1/loyalty/default/members/ann/grants", json=grant).status_code == 202
    with store.transaction() as conn:
        repo.insert_decisions(conn, [decision_row(i, START) for i in range(3)])
        acts.insert_journeys(conn, [journey_row(i) for i in range(3)])
        for i in range(3):
            acts.insert_task(conn, task_row(i))
            create_token(conn, "auditor", None, f"a{i}", START)


LIST_ROUTES = {
    "/v1/decisions",
    "/v1/journeys",
    "/v1/tasks",
    "/v1/policies",
    "/v1/tokens",
    "/v1/partners/adjustments",
    "/v1/partners/{partner}/settlement",
    "/v1/loyalty/{programme}/members/{customer_id}/history",
    "/v1/loyalty/proposals",
}
LISTS = (  # each of LIST_ROUTES, as called
    "/v1/decisions",
    "/v1/journeys",
    "/v1/tasks",
    "/v1/policies",
    "/v1/tokens",
    "/v1/partners/adjustments",
    "/v1/partners/dealer-1/settlement?period=2026-03",
    "/v1/loyalty/default/members/ann/history",
    "/v1/loyalty/proposals?status=all",
)


def walk(client: TestClient, path: str, limit: int) -> tuple[list[Any], int]:
    """Every row of a list, following `Link` from the first page; and how many pages."""
    joiner = "&" if "?" in path else "?"
    url: str | None = f"{path}{joiner}limit={limit}"
    rows: list[Any] = []
    pages = 0
    while url is not None:
        r = client.get(url)
        assert r.status_code == 200, (url, r.text)
        rows += r.json()
        pages += 1
        url = r.links.get("next", {}).get("url")
    return rows, pages


def test_every_list_takes_a_cursor_and_documents_its_link(api) -> None:
    client, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    lists = {
        path
        for path, ops in paths.items()
        if "get" in ops
        and ops["get"]["responses"]["200"]["content"]
        .get("application/json", {})  # an unsubscribe page is HTML
        .get("schema", {})
        .get("type")
        == "array"
    }
    assert lists == LIST_ROUTES
    for path in lists:
        op = paths[path]["get"]
        names = {p["name"] for p in op["parameters"]}
        assert {"limit", "cursor"} <= names, path
        assert "Link" in op["responses"]["200"]["headers"], path
        assert "400" in op["responses"], path


def test_every_list_pages_each_row_exactly_once(api) -> None:
    client, store = api
    seed_every_list(client, store)
    for path in LISTS:
        whole = client.get(path + ("&" if "?" in path else "?") + "limit=1000")
        assert "link" not in whole.headers, path  # all of it fits: no next page
        everything = whole.json()
        assert len(everything) >= 2, (path, everything)
        for limit in (1, 2):
            rows, pages = walk(client, path, limit)
            assert rows == everything, (path, limit)
            assert pages == -(-len(everything) // limit), (path, limit)


def test_the_link_keeps_the_filters_and_the_limit(api) -> None:
    client, store = api
    seed_every_list(client, store)
    r = client.get("/v1/tasks?status=open&queue=save-desk&limit=1")
    link = r.headers["link"]
    assert link.startswith("</v1/tasks?") and link.endswith('>; rel="next"')
    for part in ("status=open", "queue=save-desk", "limit=1", "cursor="):
        assert part in link, link


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("offset=100", "offset"),
        ("limit=10&offset=0", "offset"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=", "cursor"),
        ("sort=risk", "sort"),
        ("custmer_id=ann", "custmer_id"),
    ],
)
def test_offset_a_bad_cursor_and_an_unknown_parameter_are_400s_naming_it(api, query, named):
    client, _ = api
    r = client.get(f"/v1/decisions?{query}")
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["detail"].startswith(named), r.json()


def test_a_cursor_of_another_list_is_refused(api) -> None:
    client, store = api
    seed_every_list(client, store)
    link = client.get("/v1/tasks?limit=1").links["next"]["url"]
    cursor = link.split("cursor=")[1].split("&")[0]
    r = client.get(f"/v1/journeys?cursor={cursor}")
    assert r.status_code == 400 and "cursor" in r.json()["detail"]
    assert client.get("/v1/decisions?limit=0").status_code == 422
    assert client.get("/v1/decisions?limit=1001").status_code == 422


def test_unknown_fields_of_a_customer_are_refused_naming_them(api) -> None:
    client, store = api
    seed_every_list(client, store)
    r = client.get("/v1/customers/ann?fields=loyalty,scor,colour")
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert "'scor'" in r.json()["detail"] and "'colour'" in r.json()["detail"]
    assert client.get("/v1/customers/ann?field=loyalty").status_code == 400
    # The declared fields are exactly those of a customer's view.
    assert tuple(client.get("/v1/customers/ann").json()) == FIELDS
    assert set(client.get("/v1/customers/ann?fields=score").json()) == {"customer_id", "score"}


def test_the_client_pages_2500_decisions_100_at_a_time_each_exactly_once(api) -> None:
    client, store = api
    # 2,500 decisions at 250 instants: ten share each time, so the id must break ties.
    rows = [decision_row(i, START + dt.timedelta(seconds=i // 10)) for i in range(2500)]
    with store.transaction() as conn:
        repo.insert_decisions(conn, rows)
    api_client = Client(http=client)
    pages = api_client.pages("/v1/decisions", limit=100)
    seen = [d["decision_id"] for d in next(pages)]
    # While someone pages: a newer decision (before the cursor) never shows; an older one (not
    # reached yet) shows once; nothing already answered moves.
    later = decision_row(9001, START + dt.timedelta(days=1))
    older = decision_row(9002, START - dt.timedelta(days=1))
    with store.transaction() as conn:
        repo.insert_decisions(conn, [later, older])
    counts = [len(seen)]
    for page in pages:
        counts.append(len(page))
        seen += [d["decision_id"] for d in page]
    assert counts == [100] * 25 + [1]
    assert len(seen) == len(set(seen)) == 2501
    assert set(seen) == {r["decision_id"] for r in rows} | {"d-09002"}
    # Newest first, the id breaking ties.
    expected = sorted(
        [*rows, older], key=lambda r: (-r["decided_at"].timestamp(), r["decision_id"])
    )
    assert seen == [r["decision_id"] for r in expected]
    # The typed iterator: each of the 2,502 exactly once.
    every = list(api_client.decisions(page_size=100))
    assert len(every) == len({d["decision_id"] for d in every}) == 2502
    assert every[0]["decision_id"] == "d-09001" and every[0]["risk"] == 0.1
    assert api_client.decision("d-00007")["scorer"] == "baseline"
    with pytest.raises(ApiError) as refused:
        list(api_client.pages("/v1/decisions", offset=100))
    assert refused.value.status == 400 and "offset" in refused.value.problem["detail"]
