"""Grants and adjustments over the API (issue 16): a reason always, posted at once up to the
programme's four-eyes threshold, else waiting for another person; every step audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tenure.api.app import create_app
from tenure.api.auth import create_token
from tenure.config import resolve
from tenure.store.db import Store

MEMBER = "/v1/loyalty/default/members/c-1"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tenure.yaml").write_text("programmes: {default: {four_eyes_above: 500}}\n")
    settings = resolve(ws)
    store = Store(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        tokens = {n: create_token(conn, "operator", None, n, now)[1] for n in ("olga", "omar")}
    store.close()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}


def test_a_grant_above_the_threshold_waits_for_someone_else(api) -> None:
    client, auth = api
    small = client.post(f"{MEMBER}/grants", json={"points": 100, "reason": "late parcel"},
                        headers=auth["olga"])  # fmt: skip
    assert small.status_code == 201, small.text
    assert small.json()["status"] == "posted"
    big = client.post(f"{MEMBER}/grants", json={"points": 800, "reason": "service recovery"},
                      headers=auth["olga"])  # fmt: skip
    assert big.status_code == 202 and big.json()["status"] == "proposed"
    proposal = big.json()["proposal_id"]
    waiting = client.get("/v1/loyalty/proposals", headers=auth["omar"]).json()
    assert [p["proposal_id"] for p in waiting] == [proposal]
    mine = client.post(f"/v1/loyalty/proposals/{proposal}/approve", headers=auth["olga"])
    assert mine.status_code == 422 and "someone else" in mine.json()["detail"]
    theirs = client.post(f"/v1/loyalty/proposals/{proposal}/approve", headers=auth["omar"])
    assert theirs.status_code == 200 and theirs.json()["status"] == "posted"
    balance = client.get(MEMBER, headers=auth["omar"]).json()
    assert balance["available"] == 900
    no_reason = client.post(f"{MEMBER}/grants", json={"points": 5, "reason": ""},
                            headers=auth["olga"])  # fmt: skip
    assert no_reason.status_code == 422
    down = client.post(f"{MEMBER}/adjustments", json={"points": -50, "reason": "double grant"},
                       headers=auth["omar"])  # fmt: skip
    assert down.status_code == 201
    assert client.get(MEMBER, headers=auth["omar"]).json()["available"] == 850
