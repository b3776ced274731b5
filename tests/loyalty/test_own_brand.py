"""Own-brand loyalty: a programme with no partners earns, caps and expires like a contract; a
grant above the threshold waits for a second person; returns claw back in proportion; the
history shows one line per business operation. `ledger verify` passes throughout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from tenure.cli import app
from tenure.config import resolve
from tenure.errors import ConfigError, InputError
from tenure.events.envelope import Event
from tenure.loyalty.contracts import parse_contract, parse_programme
from tenure.loyalty.ledger import funder_account, goodwill_account, member_account, verify
from tenure.policy.model import default_policy
from tenure.runtime.pipeline import Pipeline
from tenure.services.grants import Terms, approve, proposals, propose, reject
from tenure.services.loyalty import member_history
from tenure.store import ledger
from tenure.store import schema as t
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT, SHOP
from tests.helpers import ev

MARCH = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
ANN = member_account("default", "ann")
SHOP_FUNDS = funder_account("shop")


def at(day: float) -> dt.datetime:
    return MARCH + dt.timedelta(days=day)


def feed(store: Store, contracts: list[Any], events: list[Event]) -> None:
    """Each event its own batch, in order, as they would arrive, through the real pipeline."""
    for e in events:
        Pipeline(store, default_policy(), contracts=contracts).run(iter([e]), "t")


def sound(store: Store) -> Any:
    """The whole book, after checking every invariant (what `ledger verify` checks)."""
    with store.reader() as conn:
        book = ledger.whole_book(conn)
        sums = ledger.entry_sums(conn)
    assert verify(book) is None
    assert set(sums.values()) <= {0}
    return book


def results(store: Store) -> dict[str, tuple[str, int, str | None]]:
    with store.reader() as conn:
        rows = conn.execute(select(t.loyalty_results))
        return {r.event_id: (r.result, r.points, r.detail) for r in rows}


def test_an_own_brand_programme_earns_without_a_partner_with_caps_and_expiry(store_url):
    store = Store(store_url)
    shop = parse_programme(SHOP)
    events = [
        ev("purchase", "ann", at=at(1), event_id="p1", amount=120.0),
        # 100 dollars at 0.9: the earn rule sees 90 euros, as the parser recorded the rate.
        ev("purchase", "ann", at=at(2), event_id="p2", amount=100.0, currency="USD", __rate__=0.9),
        ev("subscription.renewed", "ann", at=at(3), event_id="renew", plan="pro", mrr=20.0),
        ev("usage", "ann", at=at(3.5), event_id="u1", minutes=4.0),  # no rule: nothing
        ev("purchase", "ann", at=at(4), event_id="p4", amount=900.0),  # the cap takes 740 of it
    ]
    at_dealer = ev("purchase", "ann", at=at(5), event_id="p5", amount=50.0)
    events.append(at_dealer.__class__(**{**_fields(at_dealer), "partner_id": "dealer-9"}))
    feed(store, [shop], events)
    with store.reader() as conn:
        rows = {r.event_id: r for r in conn.execute(select(t.loyalty_accruals))}
    assert {k: r.granted for k, r in rows.items()} == {"p1": 120, "p2": 90, "renew": 50, "p4": 740}
    assert rows["p4"].refused_reason.startswith("customer cap 1000 per month (2026-03)")
    assert {r.partner_id for r in rows.values()} == {"shop"}  # funded by, and at, the brand
    book = sound(store)
    assert book.account(ANN).balance == 1000
    assert book.account(SHOP_FUNDS).balance == -1000
    year_end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    assert {lot.expires_at for lot in book.lots.values()} == {year_end}
    store.close()


def _fields(e: Event) -> dict[str, Any]:
    return {f: getattr(e, f) for f in e.__struct_fields__}


def test_a_workspace_programme_file_earns_through_tenure_run(tmp_path):
    ws = tmp_path / "ws"
    (ws / "programmes").mkdir(parents=True)
    (ws / "programmes" / "shop.yaml").write_text(yaml.safe_dump(SHOP))
    lines = [
        {
            "event_id": f"e{i}",
            "type": "purchase",
            "customer_id": "ann",
            "occurred_at": f"2026-03-{2 + i:02d}T10:00:00Z",
            "payload": {"amount": 40.0},
        }
        for i in range(3)
    ]
    history = tmp_path / "h.jsonl"
    history.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    runner = CliRunner()
    w = ["-w", str(ws)]
    valid = runner.invoke(app, ["contract", "validate", str(ws / "programmes" / "shop.yaml")])
    assert valid.exit_code == 0 and "programme 'shop-points' is valid" in valid.stdout
    listed = json.loads(runner.invoke(app, ["contract", "list", "--json", *w]).stdout)
    assert [(c["id"], c["kind"], c["oem"]) for c in listed] == [
        ("shop-points", "own-brand", "shop")
    ]
    for _ in range(2):  # the second run is all duplicates: nothing earns twice
        result = runner.invoke(app, ["run", "--events", str(history), "--json", *w])
        assert result.exit_code == 0, result.output
    balance = json.loads(runner.invoke(app, ["ledger", "balance", "ann", "--json", *w]).stdout)
    assert balance["posted"] == 120
    assert runner.invoke(app, ["ledger", "verify", *w]).exit_code == 0


def test_programme_files_name_what_is_wrong():
    with pytest.raises(ConfigError, match="exactly one"):
        parse_programme({**SHOP, "versions": [{**SHOP["versions"][0], "earn": [{"id": "x"}]}]})
    dealer_funded = {"id": "x", "points_per_unit": 1, "funding": {"shop": 0.5, "dealer": 0.5}}
    with pytest.raises(ConfigError, match="not parties"):
        parse_programme({**SHOP, "versions": [{**SHOP["versions"][0], "earn": [dealer_funded]}]})
    returns_earn = {"id": "x", "types": ["loyalty.return"], "points": 5}
    with pytest.raises(ConfigError, match="cannot earn on"):
        parse_programme({**SHOP, "versions": [{**SHOP["versions"][0], "earn": [returns_earn]}]})
    with pytest.raises(ConfigError, match="at least one dealer"):
        parse_contract({**CONTRACT, "dealers": []})
    # A partner's contract never covers an event with no partner; the brand's programme does.
    assert not parse_contract(CONTRACT).covers(None)
    assert parse_programme(SHOP).covers(None) and parse_programme(SHOP).covers("shop")
    assert not parse_programme(SHOP).covers("dealer-1")


def test_the_four_eyes_threshold_is_set_per_programme_in_tenure_yaml(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tenure.yaml").write_text("programmes:\n  default: {four_eyes_above: 100}\n")
    assert resolve(ws).four_eyes_above == {"default": 100}
    (ws / "tenure.yaml").write_text("programmes:\n  default: {four_eyes_above: -1}\n")
    with pytest.raises(ConfigError, match="four_eyes_above must be a whole number"):
        resolve(ws)


NOW = dt.datetime(2026, 4, 1, 9, tzinfo=dt.UTC)


def _audit(store: Store) -> list[dict[str, Any]]:
    with store.reader() as conn:
        rows = conn.execute(select(t.audit.c.body).order_by(t.audit.c.seq)).scalars()
        return [json.loads(b) for b in rows]


def test_a_grant_above_the_threshold_waits_for_a_second_person(store_url):
    store = Store(store_url)
    terms = Terms([parse_programme(SHOP)], {"default": 500})
    small = propose(store, terms, "grant", "default", "ann", 300, "late delivery", "ana", NOW)
    assert small["status"] == "posted"
    big = propose(store, terms, "grant", "default", "ann", 800, "lost parcel", "ana", NOW)
    assert big["status"] == "proposed"
    with store.reader() as conn:
        assert ledger.account(conn, ANN).balance == 300  # the big one waits
        assert [p["proposal_id"] for p in proposals(conn)] == [big["proposal_id"]]
    with pytest.raises(InputError, match="someone else must approve"):
        approve(store, terms, big["proposal_id"], " ANA ", NOW)
    done = approve(store, terms, big["proposal_id"], "bo", NOW)
    assert (done["status"], done["decided_by"]) == ("posted", "bo")
    with pytest.raises(InputError, match="already posted by bo"):
        approve(store, terms, big["proposal_id"], "cy", NOW)
    book = sound(store)
    assert book.account(ANN).balance == 1100
    assert book.account(goodwill_account("default")).balance == -1100
    # Granted points lapse like the programme's earned points: at the end of the year.
    year_end = dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    assert {lot.expires_at for lot in book.lots.values()} == {year_end}
    kinds = [(a["kind"], a.get("status"), a["by"]) for a in _audit(store)]
    assert kinds == [
        ("ledger.grant", "posted", "ana"),
        ("ledger.grant", "proposed", "ana"),
        ("ledger.approve", None, "bo"),
    ]
    assert all(a["reason"] for a in _audit(store) if a["kind"] == "ledger.grant")
    store.close()


def test_adjustments_go_both_ways_and_never_below_what_is_available(store_url):
    store = Store(store_url)
    terms = Terms((), {"default": 500})
    propose(store, terms, "grant", "default", "ann", 400, "welcome", "ana", NOW)
    cut = propose(store, terms, "adjust", "default", "ann", -150, "double grant", "ana", NOW)
    assert cut["status"] == "posted"
    too_much = propose(store, terms, "adjust", "default", "ann", -600, "fraud", "ana", NOW)
    with pytest.raises(InputError, match="fewer than 600 points available"):
        approve(store, terms, too_much["proposal_id"], "bo", NOW)
    with store.reader() as conn:  # the refusal posted nothing and left it waiting
        assert ledger.account(conn, ANN).balance == 250
        assert proposals(conn)[0]["status"] == "proposed"
    gone = reject(store, too_much["proposal_id"], "bo", "not proven", NOW)
    assert gone["status"] == "rejected"
    with pytest.raises(InputError, match="already rejected by bo"):
        approve(store, terms, too_much["proposal_id"], "cy", NOW)
    for bad, match in [
        (dict(kind="grant", points=-5), "above zero"),
        (dict(kind="adjust", points=0), "zero points"),
        (dict(kind="grant", points=5, reason=" "), "needs a --reason"),
        (dict(kind="grant", points=5, programme="nope"), "no programme 'nope'"),
    ]:
        args = {"programme": "default", "reason": "r", **bad}
        with pytest.raises(InputError, match=match):
            propose(
                store,
                terms,
                args["kind"],
                args["programme"],
                "ann",
                args["points"],
                args["reason"],
                "ana",
                NOW,
            )
    sound(store)
    store.close()


def test_a_resent_key_answers_the_same_grant(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    terms = Terms()
    first = propose(store, terms, "grant", "default", "ann", 50, "sorry", "ana", NOW, key="k-1")
    again = propose(store, terms, "grant", "default", "ann", 50, "sorry", "ana", NOW, key="k-1")
    assert again["proposal_id"] == first["proposal_id"]
    with pytest.raises(InputError, match="was used for another grant"):
        propose(store, terms, "grant", "default", "bo", 50, "sorry", "ana", NOW, key="k-1")
    assert sound(store).account(ANN).balance == 50
    store.close()


def test_ledger_grant_approve_and_proposals_from_the_cli(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tenure.yaml").write_text("programmes:\n  default: {four_eyes_above: 500}\n")
    runner = CliRunner()
    w = ["-w", str(ws)]
    grant = ["ledger", "grant", "ann", "800", "--reason", "service recovery", "--by", "ana"]
    waiting = runner.invoke(app, [*grant, "--json", *w])
    assert waiting.exit_code == 0, waiting.output
    proposal = json.loads(waiting.stdout)
    assert proposal["status"] == "proposed"
    listed = json.loads(runner.invoke(app, ["ledger", "proposals", "--json", *w]).stdout)
    assert [p["proposal_id"] for p in listed] == [proposal["proposal_id"]]
    no_reason = runner.invoke(app, ["ledger", "grant", "ann", "10", "--by", "ana", *w])
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    own = runner.invoke(app, ["ledger", "approve", proposal["proposal_id"], "--by", "ana", *w])
    assert own.exit_code == 2 and "someone else must approve" in own.output
    ok = runner.invoke(app, ["ledger", "approve", proposal["proposal_id"], "--by", "bo", *w])
    assert ok.exit_code == 0, ok.output
    fix = ["ledger", "adjust", "ann", "-100", "--reason", "typo", "--by", "bo", *w]
    assert runner.invoke(app, fix).exit_code == 0
    balance = json.loads(runner.invoke(app, ["ledger", "balance", "ann", "--json", *w]).stdout)
    assert balance["posted"] == 700
    assert runner.invoke(app, ["ledger", "verify", *w]).exit_code == 0
    assert runner.invoke(app, ["audit", "verify", *w]).exit_code == 0
    every = json.loads(
        runner.invoke(app, ["ledger", "proposals", "--status", "all", "--json", *w]).stdout
    )
    assert sorted((p["kind"], p["status"]) for p in every) == [
        ("adjust", "posted"),
        ("grant", "posted"),
    ]


def _purchase(event_id: str, day: float, amount: float, items: int = 1, **kw: Any) -> Event:
    return ev("purchase", "ann", at=at(day), event_id=event_id, amount=amount, items=items, **kw)


def _return(event_id: str, day: float, purchase: str, **part: Any) -> Event:
    return ev(
        "loyalty.return", "ann", at=at(day), event_id=event_id, purchase_event_id=purchase, **part
    )


def test_partial_returns_claw_back_in_proportion_and_never_more_than_the_purchase(store_url):
    store = Store(store_url)
    shop = parse_programme(SHOP)
    feed(
        store,
        [shop],
        [
            _purchase("buy", 1, 200.0, items=4),  # 200 points
            _return("r-amount", 2, "buy", amount=50.0),  # a quarter: 50
            _return("r-item", 3, "buy", items=1),  # another quarter: 50
            _return("r-more", 4, "buy", amount=150.0),  # 75% asked, only half is left: 100
            _return("r-again", 5, "buy"),  # nothing left to return
        ],
    )
    got = results(store)
    assert got["r-amount"][:2] == ("ok", 50) and got["r-item"][:2] == ("ok", 50)
    assert got["r-more"][:2] == ("ok", 100)
    assert got["r-again"] == ("skipped", 0, "purchase buy has already come back in full")
    assert "amount 50 of 200" in got["r-amount"][2]
    book = sound(store)
    assert book.account(ANN).balance == 0 and book.account(SHOP_FUNDS).balance == 0
    store.close()


def test_three_thirds_give_back_exactly_what_was_earned_split_like_the_funding(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    acme = parse_contract(CONTRACT)
    buy = _purchase("buy", 1, 100.0, items=3, product_line="parts")
    buy = buy.__class__(**{**_fields(buy), "partner_id": "dealer-1"})  # acme 70, dealer 30
    thirds = [_return(f"r{i}", 2 + i, "buy", items=1) for i in range(3)]
    feed(store, [acme], [buy, *thirds])
    assert [results(store)[f"r{i}"][1] for i in range(3)] == [33, 33, 34]
    book = sound(store)
    assert book.account(ANN).balance == 0
    assert book.account(funder_account("acme")).balance == 0
    assert book.account(funder_account("dealer-1")).balance == 0
    store.close()


def test_a_partial_return_in_the_purchases_currency_and_within_the_balance(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    shop = parse_programme(SHOP)
    feed(
        store,
        [shop],
        [
            _purchase("buy", 1, 100.0, currency="USD", __rate__=0.9),  # 90 points
            ev("loyalty.redeem", "ann", at=at(2), event_id="spend", redemption_id="R", points=80),
            _return("half", 3, "buy", amount=50.0),  # 45 asked, 10 left to take
            _return("rest", 4, "buy", amount=50.0),  # 45 asked, nothing left to take
        ],
    )
    got = results(store)
    assert got["half"][:2] == ("ok", 10)
    assert got["half"][2].startswith("amount 50 of 100: 10 of 45 points clawed back")
    assert got["rest"][:2] == ("skipped", 0)  # the goods came back; the points were spent
    with store.reader() as conn:
        row = conn.execute(select(t.loyalty_accruals)).one()
    assert (row.returned, row.clawed) == (1.0, {"shop": 10})
    sound(store)
    store.close()


def test_the_history_shows_one_line_per_business_operation(store_url):
    store = Store(store_url)
    acme = parse_contract(CONTRACT)
    buy = _purchase("buy", 1, 1000.0, product_line="parts")
    buy = buy.__class__(**{**_fields(buy), "partner_id": "dealer-1"})  # two funders, 1000 pts
    redeem = "loyalty.redeem"
    feed(
        store,
        [acme],
        [
            buy,
            ev(redeem, "ann", at=at(2), event_id="h1", redemption_id="R1", points=800),
            ev("loyalty.redeem_confirmed", "ann", at=at(3), event_id="c1", redemption_id="R1"),
            ev(redeem, "ann", at=at(4), event_id="h2", redemption_id="R2", points=100),
            ev("loyalty.redeem_cancelled", "ann", at=at(5), event_id="x2", redemption_id="R2"),
            _return("ret", 6, "buy", amount=100.0),  # a tenth: 100 asked, 200 available
        ],
    )
    propose(store, Terms(), "grant", "default", "ann", 20, "apology", "ana", at(7))
    with store.reader() as conn:
        lines = member_history(conn, "default", "ann")
        top = member_history(conn, "default", "ann", limit=2)
    summary = [
        (r["kind"], r["points"], r["status"], [p["phase"] for p in r["phases"]]) for r in lines
    ]
    assert summary == [
        ("grant", 20, "posted", ["posted"]),
        ("clawback", -100, "posted", ["posted"]),
        ("redeem", -100, "voided", ["held", "voided"]),
        ("redeem", -800, "posted", ["held", "posted"]),
        ("accrue", 1000, "posted", ["posted"]),
    ]
    assert [r["net"] for r in lines] == [20, -100, 0, -800, 1000]
    assert len(lines[1]["transfers"]) == 2 and len(lines[4]["transfers"]) == 2  # two funders
    assert top == lines[:2]
    book = sound(store)
    assert book.account(ANN).balance == 1000 - 800 - 100 + 20
    store.close()


def test_a_hold_long_before_its_post_still_makes_one_line(tmp_path):
    from tenure.loyalty.ledger import Request, redemption_account

    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    early = [Request("hold", "redeem", ANN, redemption_account("default"), 5, at=0.5, pending=True)]
    many = [
        Request(f"a{i}", "accrue", SHOP_FUNDS, ANN, 10, at=float(i), ref=f"e{i}")
        for i in range(250)
    ]
    ledger.post_requests(store, many[:1] + early + many[1:], 250.0)
    ledger.post_requests(store, [Request("post", "post", pending_id="hold", at=300.0)], 300.0)
    with store.reader() as conn:
        (line,) = member_history(conn, "default", "ann", limit=1)
        assert len(member_history(conn, "default", "ann", limit=500)) == 251
    assert (line["transfers"], line["status"]) == (["hold", "post"], "posted")
    assert [p["phase"] for p in line["phases"]] == ["held", "posted"]
    store.close()


def test_a_cli_history_line_per_operation(tmp_path: Path):
    ws = tmp_path / "ws"
    store = Store(resolve(ws).database_url)
    feed(
        store,
        [parse_programme(SHOP)],
        [
            _purchase("buy", 1, 900.0),
            ev("loyalty.redeem", "ann", at=at(2), event_id="h", redemption_id="R", points=800),
            ev("loyalty.redeem_confirmed", "ann", at=at(3), event_id="c", redemption_id="R"),
        ],
    )
    store.close()
    shown = CliRunner().invoke(app, ["ledger", "history", "ann", "-w", str(ws)])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count("-800") == 1 and "held" in shown.stdout and "posted" in shown.stdout


def test_a_purchase_returned_before_partial_returns_counts_as_returned_in_full(store_url):
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from tenure.store.db import MIGRATIONS, make_engine

    engine = make_engine(store_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0015")
        accrual = {
            "customer_id": "ann",
            "partner_id": "dealer-1",
            "occurred_at": MARCH,
            "contract_id": "acme-dealers",
            "version_from": MARCH,
            "rule_id": "parts",
            "requested": 100,
            "granted": 100,
            "shares": {"acme": 70, "dealer-1": 30},
        }
        columns = [c for c in t.loyalty_accruals.c if c.name not in ("returned", "clawed")]
        table = sa.table("loyalty_accruals", *(sa.column(c.name, c.type) for c in columns))
        conn.execute(table.insert(), [{**accrual, "event_id": e} for e in ("kept", "gone")])
        transfer = {"kind": "clawback", "debit": ANN, "credit": funder_account("acme")}
        transfer |= {"amount": 70, "at": 1.0, "status": "posted", "payload_hash": "x"}
        transfer |= {"lots": [], "unbacked": 0, "ref": "ret"}
        conn.execute(t.ledger_transfers.insert(), [{**transfer, "transfer_id": "return:gone:acme"}])
    engine.dispose()
    store = Store(store_url)  # migrates to the newest revision
    with store.reader() as conn:
        rows = conn.execute(select(t.loyalty_accruals.c.event_id, t.loyalty_accruals.c.returned))
        assert dict(rows.all()) == {"kept": 0.0, "gone": 1.0}
    store.close()


def test_history_pages_go_on_from_the_last_line_without_gaps_or_repeats(tmp_path):
    from tenure.loyalty.ledger import Request, redemption_account

    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    out = redemption_account("default")
    requests = [Request("a", "accrue", SHOP_FUNDS, ANN, 1000, at=0.0, ref="buy")]
    requests += [
        Request(f"h{i}", "redeem", ANN, out, 1, at=1.0 + i, pending=True) for i in range(9)
    ]
    requests += [
        Request(f"g{i}", "adjust", SHOP_FUNDS, ANN, 2, at=5.0, ref=f"g{i}") for i in range(6)
    ]
    requests += [Request(f"p{i}", "post", pending_id=f"h{i}", at=20.0 - i) for i in range(0, 9, 2)]
    ledger.post_requests(store, requests, 30.0)
    with store.reader() as conn:
        whole = member_history(conn, "default", "ann", limit=500)
        pages, after = [], None
        while True:
            page = member_history(conn, "default", "ann", limit=4, after=after)
            pages += page
            if len(page) < 4:
                break
            after = (page[-1]["last"], page[-1]["operation"])
    assert len(whole) == 1 + 9 + 6
    assert [r["operation"] for r in pages] == [r["operation"] for r in whole]
    assert whole[0]["phases"][0]["phase"] == "held" and whole[0]["last"] == 20.0
    store.close()
