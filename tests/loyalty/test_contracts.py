"""Contracts: amendments by event time, co-funding splits, caps enforced with the posting."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from tenure.errors import ConfigError
from tenure.loyalty.contracts import parse_contract
from tenure.loyalty.ledger import funder_account, member_account, verify
from tenure.services.loyalty import accrue
from tenure.store import ledger
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT
from tests.helpers import ev

MARCH = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def purchase(event_id: str, day: int, amount: float, customer: str = "ann", line: str = "parts"):
    e = ev(
        "purchase",
        customer,
        at=MARCH + dt.timedelta(days=day),
        event_id=event_id,
        amount=amount,
        product_line=line,
    )
    return e.__class__(
        **{**{f: getattr(e, f) for f in e.__struct_fields__}, "partner_id": "dealer-1"}
    )


def test_a_contract_names_what_is_wrong():
    bad = {
        **CONTRACT,
        "versions": [
            {
                **CONTRACT["versions"][0],
                "earn": [
                    {
                        "id": "x",
                        "when": "true",
                        "points_per_unit": 1,
                        "funding": {"acme": 0.5, "stranger": 0.5},
                    }
                ],
            }
        ],
    }
    with pytest.raises(ConfigError, match="funders \\['stranger'\\] are not parties"):
        parse_contract(bad)
    with pytest.raises(ConfigError, match="sum to 1"):
        parse_contract(
            {
                **CONTRACT,
                "versions": [
                    {
                        **CONTRACT["versions"][0],
                        "earn": [
                            {
                                "id": "x",
                                "when": "true",
                                "points_per_unit": 1,
                                "funding": {"acme": 0.5},
                            }
                        ],
                    }
                ],
            }
        )


def test_an_amendment_mid_month_applies_by_event_time_also_out_of_order(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    contract = parse_contract(CONTRACT)
    after = purchase("after", 20, 100.0)  # 21 March: the amendment's rate
    before = purchase("before", 5, 100.0)  # 6 March: the original rate, arriving late
    accrue(store, [contract], [after], now=0.0)
    accrue(store, [contract], [before, after], now=0.0)  # `after` again: accrued once
    with store.reader() as conn:
        rows = {r.event_id: r for r in conn.execute(select(t.loyalty_accruals))}
        book = ledger.whole_book(conn)
    assert (rows["before"].rule_id, rows["before"].granted) == ("parts", 100)
    assert (rows["after"].rule_id, rows["after"].granted) == ("parts-v2", 200)
    assert rows["before"].shares == {"acme": 70, "dealer-1": 30}
    assert rows["after"].shares == {"acme": 100, "dealer-1": 100}
    assert book.account(member_account("default", "ann")).balance == 300
    assert book.account(funder_account("acme")).balance == -170
    assert book.account(funder_account("dealer-1")).balance == -130
    assert verify(book) is None
    store.close()


def test_a_cap_reached_mid_batch_stops_exactly_at_the_cap_and_records_the_rest(store_url):
    store = Store(store_url)
    contract = parse_contract(CONTRACT)
    events = [purchase(f"p{i}", 1 + i, 300.0) for i in range(5)]  # 300 points each, cap 1000
    summary = accrue(store, [contract], events, now=0.0)
    assert summary.points == 1000 and summary.refused_points == 500
    with store.reader() as conn:
        rows = [
            r
            for r in conn.execute(
                select(t.loyalty_accruals).order_by(t.loyalty_accruals.c.event_id)
            )
        ]
        book = ledger.whole_book(conn)
    assert [r.granted for r in rows] == [300, 300, 300, 100, 0]
    assert rows[3].refused_reason.startswith(
        "customer cap 1000 per month (2026-03): 900 already accrued"
    )
    assert "300 of 300 refused" in rows[4].refused_reason
    assert book.account(member_account("default", "ann")).balance == 1000
    assert verify(book) is None
    # Another customer has a cap of their own.
    accrue(store, [contract], [purchase("bo-1", 2, 300.0, customer="bo")], now=0.0)
    with store.reader() as conn:
        assert ledger.whole_book(conn).account(member_account("default", "bo")).balance == 300
    store.close()


def test_run_accrues_under_the_workspace_contracts(tmp_path):
    import json

    import orjson
    import yaml
    from typer.testing import CliRunner

    from tenure.cli import app

    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    lines = [
        {
            "event_id": f"e{i}",
            "type": "purchase",
            "customer_id": "ann",
            "partner_id": "dealer-2",
            "occurred_at": f"2026-03-{2 + i:02d}T10:00:00Z",
            "payload": {"amount": 400.0, "product_line": "parts"},
        }
        for i in range(3)
    ]
    history = tmp_path / "h.jsonl"
    history.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    runner = CliRunner()
    assert (
        runner.invoke(app, ["contract", "validate", str(ws / "contracts" / "acme.yaml")]).exit_code
        == 0
    )
    listed = json.loads(runner.invoke(app, ["contract", "list", "--json", "-w", str(ws)]).stdout)
    assert [c["id"] for c in listed] == ["acme-dealers"]
    for _ in range(2):  # the second run is all duplicates: nothing earns twice
        result = runner.invoke(app, ["run", "--events", str(history), "--json", "-w", str(ws)])
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["points_accrued"] == 0
    balance = json.loads(
        runner.invoke(app, ["ledger", "balance", "ann", "--json", "-w", str(ws)]).stdout
    )
    assert balance["posted"] == 1000  # 1200 earned, capped at 1000 a month
    assert runner.invoke(app, ["ledger", "verify", "-w", str(ws)]).exit_code == 0


def test_reconciling_a_statement_reports_exactly_the_three_differences(tmp_path):
    import json

    from typer.testing import CliRunner

    from tenure.cli import app
    from tenure.config import resolve

    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    import yaml

    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    store = Store(resolve(ws).database_url)
    contract = parse_contract(CONTRACT)
    # Four purchases at dealer-1 in March (dealer funds 30% of 100 = 30 points each).
    accrue(
        store,
        [contract],
        [purchase(f"p{i}", 1 + i, 100.0, customer=f"c{i}") for i in range(4)],
        0.0,
    )
    store.close()
    statement = tmp_path / "dealer-1-2026-03.csv"
    statement.write_text(
        "reference,points,note\n"
        "p0,30,ok\n"
        "p1,30,ok\n"
        "p2,35,the dealer thinks more\n"  # amount mismatch
        "p9,30,not in the ledger\n"  # extra line
    )  # p3 is missing from the statement
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "partner",
            "reconcile",
            "--partner",
            "dealer-1",
            "--statement",
            str(statement),
            "--period",
            "2026-03",
            "--json",
            "-w",
            str(ws),
        ],
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["matched"] == 2
    assert report["missing_in_ledger"] == [{"reference": "p9", "points": 30, "line": 5}]
    assert report["missing_in_statement"] == [{"reference": "p3", "points": 30}]
    assert report["mismatches"] == [
        {"reference": "p2", "statement_points": 35, "ledger_points": 30}
    ]
    settled = json.loads(
        runner.invoke(
            app, ["partner", "settlement", "--period", "2026-03", "--json", "-w", str(ws)]
        ).stdout
    )
    assert {(r["funder"], r["points"], r["owed"]) for r in settled} == {
        ("acme", 280, 2.8),
        ("dealer-1", 120, 1.2),
    }
    bad = runner.invoke(app, ["partner", "settlement", "--period", "March", "-w", str(ws)])
    assert bad.exit_code == 2 and "2026-03" in bad.output


def _event(event_type: str, event_id: str, day: float, customer: str = "ann", **payload):
    return ev(event_type, customer, at=MARCH + dt.timedelta(days=day), event_id=event_id, **payload)


@pytest.mark.parametrize(
    ("policy", "balance_after", "clawed"),
    [("within_balance", 0, 40), ("allow_negative", -60, 100), ("pending_only", 0, 40)],
)
def test_redemptions_and_returns_arrive_as_events(tmp_path, policy, balance_after, clawed):
    from tenure.policy.model import default_policy
    from tenure.runtime.pipeline import Pipeline

    data = {**CONTRACT, "versions": [{**CONTRACT["versions"][0], "returns": policy}]}
    contract = parse_contract(data)
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    events = [
        purchase("buy", 1, 100.0),  # 100 points
        _event("loyalty.redeem", "r1", 2, redemption_id="R1", points=60),
        _event("loyalty.redeem_confirmed", "r1ok", 3, redemption_id="R1"),
        _event("loyalty.redeem", "r2", 4, redemption_id="R2", points=500),  # more than available
        _event("loyalty.return", "ret", 5, purchase_event_id="buy"),
    ]
    for e in events:  # one batch each, in order, as they would arrive
        Pipeline(store, default_policy(), contracts=[contract]).run(iter([e]), "t")
    with store.reader() as conn:
        results = {
            r.event_id: (r.result, r.points) for r in conn.execute(select(t.loyalty_results))
        }
        book = ledger.whole_book(conn)
    assert results["r1"] == ("ok", 60) and results["r1ok"] == ("ok", 0)
    assert results["r2"][0] == "exceeds_available"
    assert results["ret"] == ("ok", clawed)
    assert book.account(member_account("default", "ann")).balance == balance_after
    assert book.account(funder_account("acme")).balance + book.account(
        funder_account("dealer-1")
    ).balance == -(100 - clawed)
    assert verify(book) is None
    store.close()


def test_a_disputed_line_is_adjusted_only_with_a_second_approver(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from tenure.cli import app
    from tenure.config import resolve

    ws = tmp_path / "ws"
    (ws / "contracts").mkdir(parents=True)
    (ws / "contracts" / "acme.yaml").write_text(yaml.safe_dump(CONTRACT))
    store = Store(resolve(ws).database_url)
    accrue(store, [parse_contract(CONTRACT)], [purchase("p2", 3, 100.0)], 0.0)
    store.close()
    statement = tmp_path / "s.csv"
    statement.write_text("reference,points\np2,35\n")
    runner = CliRunner()
    w = ["-w", str(ws)]
    reconcile = [
        "partner",
        "reconcile",
        "--partner",
        "dealer-1",
        "--statement",
        str(statement),
        "--period",
        "2026-03",
        "--json",
        *w,
    ]
    assert runner.invoke(app, reconcile).exit_code == 1
    proposed = runner.invoke(
        app,
        [
            "partner",
            "adjust",
            "--partner",
            "dealer-1",
            "--period",
            "2026-03",
            "--reference",
            "p2",
            "--points",
            "5",
            "--reason",
            "agreed with the dealer",
            "--by",
            "ana",
            *w,
        ],
    )
    assert proposed.exit_code == 0, proposed.output
    adj = json.loads(runner.invoke(app, ["partner", "adjustments", "--json", *w]).stdout)[0][
        "adjustment_id"
    ]
    own = runner.invoke(app, ["partner", "approve", adj, "--by", "ana", *w])
    assert own.exit_code == 2 and "someone else must approve" in own.output
    assert runner.invoke(app, ["partner", "approve", adj, "--by", "bo", *w]).exit_code == 0
    twice = runner.invoke(app, ["partner", "approve", adj, "--by", "cy", *w])
    assert twice.exit_code == 2 and "already approved" in twice.output
    assert runner.invoke(app, reconcile).exit_code == 0  # the statement now agrees
    assert runner.invoke(app, ["ledger", "verify", *w]).exit_code == 0


def test_a_redemption_must_pay_the_catalogue_price(tmp_path):
    from tenure.policy.model import default_policy
    from tenure.runtime.pipeline import Pipeline

    data = {
        **CONTRACT,
        "versions": [
            {**CONTRACT["versions"][0], "catalogue": [{"id": "oil-change", "points": 80}]}
        ],
    }
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    events = [
        purchase("buy", 1, 100.0),
        _event("loyalty.redeem", "cheap", 2, redemption_id="R1", points=50, item="oil-change"),
        _event("loyalty.redeem", "right", 3, redemption_id="R2", points=80, item="oil-change"),
    ]
    for e in events:
        Pipeline(store, default_policy(), contracts=[parse_contract(data)]).run(iter([e]), "t")
    with store.reader() as conn:
        results = {
            r.event_id: (r.result, r.detail) for r in conn.execute(select(t.loyalty_results))
        }
    assert results["cheap"] == (
        "refused",
        "item 'oil-change' costs 80 points in the catalogue, not 50",
    )
    assert results["right"][0] == "ok"
    store.close()


def test_the_author_cannot_approve_under_another_spelling(tmp_path):
    from tenure.config import resolve
    from tenure.services.loyalty import approve_adjustment, propose_adjustment

    ws = tmp_path / "ws"
    store = Store(resolve(ws).database_url)
    now = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    adj = propose_adjustment(
        store, [parse_contract(CONTRACT)], "dealer-1", "2026-03", "p1", 5, "x", "Alice ", now
    )
    with pytest.raises(Exception, match="someone else must approve"):
        approve_adjustment(store, adj, "alice", now)
    store.close()


def test_settlement_nets_returns_and_adjustments(tmp_path):
    from tenure.config import resolve
    from tenure.policy.model import default_policy
    from tenure.runtime.pipeline import Pipeline
    from tenure.services.loyalty import approve_adjustment, propose_adjustment, settlement

    contract = parse_contract(CONTRACT)
    store = Store(resolve(tmp_path / "ws").database_url)
    for e in [
        purchase("buy", 1, 100.0),
        purchase("buy2", 2, 100.0),
        _event("loyalty.return", "ret", 3, purchase_event_id="buy2"),
    ]:
        Pipeline(store, default_policy(), contracts=[contract]).run(iter([e]), "t")
    now = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    adj = propose_adjustment(
        store, [contract], "dealer-1", "2026-03", "buy", 5, "agreed", "ana", now
    )
    approve_adjustment(store, adj, "bo", now)
    with store.reader() as conn:
        rows = {r["funder"]: r["points"] for r in settlement(conn, [contract], "2026-03")}
    # buy: acme 70, dealer 30; buy2 returned in full; +5 moved from acme to the dealer.
    assert rows == {"acme": 65, "dealer-1": 35}
    store.close()
