"""One person under several ids (issue 15): an `alias` joins an anonymous id or a second account
to a customer; events before and after count for one customer, what the store held follows the
surviving id, and erasure reaches every id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import text

from tenure.events.envelope import Event, make_event
from tenure.events.personal import id_of
from tenure.features.identity import resolve
from tenure.loyalty import ledger
from tenure.loyalty.contracts import Contract
from tenure.loyalty.ledger import member_account
from tenure.runtime.pipeline import Pipeline
from tenure.services.personal import erase
from tenure.services.views import customer_view
from tenure.store import ledger as ledger_store
from tenure.store import personal, queries, repo
from tenure.store.db import Store
from tests.fixtures.loyalty import CONTRACT
from tests.fixtures.population import EAGER
from tests.helpers import T0, closed, ev

DAY = dt.timedelta(days=1)


def history() -> list[Event]:
    """A person browsing as `anon-7` for a week, then signed in as `c-known`."""
    anon = [ev("usage", "anon-7", at=d + 0.3, minutes=5.0) for d in range(7)]
    anon.append(ev("purchase", "anon-7", at=3.5, amount=40.0))
    anon.append(ev("consent.granted", "anon-7", at=0.1, channel="email", purpose="marketing"))
    known = [ev("usage", "c-known", at=d + 0.6, minutes=2.0) for d in range(7, 30)]
    known.append(ev("payment.failed", "c-known", at=12.0, amount=9.0))
    known.append(ev("subscription.started", "c-known", at=7.1, plan="pro", mrr=20.0))
    return sorted(anon + known, key=lambda e: (e.occurred_at, e.event_id))


def alias(at: dt.datetime, previous: str = "anon-7", customer: str = "c-known") -> Event:
    return make_event(
        "alias",
        event_id=f"alias-{previous}-{customer}",
        customer_id=customer,
        occurred_at=at.isoformat(),
        payload={"previous_id": previous},
    )


def as_one(events: list[Event]) -> list[Event]:
    """The same history sent under one id."""
    return [
        msgspec.structs.replace(e, customer_id="c-known") if e.customer_id == "anon-7" else e
        for e in events
    ]


def run(path: Path, events: list[Event], batch_size: int) -> Store:
    store = Store(f"sqlite:///{path}")
    Pipeline(store, EAGER, clock=closed(events), batch_size=batch_size).run(iter(events), "t")
    return store


def file_bytes(path: Path) -> bytes:
    """A SQLite store's bytes on disk, its write-ahead log included."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def view(store: Store) -> dict[str, Any]:
    with store.reader() as conn:
        got = customer_view(conn, "c-known", as_of=T0 + 40 * DAY)
    assert got is not None
    return got


def decided(store: Store) -> list[tuple[Any, ...]]:
    with store.reader() as conn:
        rows = queries.decisions(conn, limit=10_000)
    return sorted((r["customer_id"], r["decided_at"], r["status"], r["action_id"]) for r in rows)


def test_chains_collapse_and_an_alias_to_oneself_changes_nothing() -> None:
    at = T0 + DAY
    events = [
        alias(at, "a", "b"),
        alias(at + DAY, "b", "c"),
        alias(at + 2 * DAY, "c", "c"),
        ev("usage", "a", at=5.0),
    ]
    got = resolve(events, {"z": "a"})
    assert [(m.previous, m.survivor) for m in got.merges] == [("a", "b"), ("b", "c")]
    assert got.survivor("a") == got.survivor("b") == got.survivor("z") == "c"
    assert got.events[-1].customer_id == "c" and got.sent_as[got.events[-1].event_id] == "a"


@pytest.mark.parametrize("batch_size", [5, 100_000])
def test_merged_ids_have_the_features_of_one_history(tmp_path: Path, batch_size: int) -> None:
    events = history()
    late = alias(events[-1].occurred_at + dt.timedelta(hours=1))  # after every event
    merged = run(tmp_path / "merged.db", [*events, late], batch_size)
    one = run(tmp_path / "one.db", as_one(events), batch_size)
    got, want = view(merged), view(one)
    for key in ("frequency", "spend_total", "usage_7d", "tenure_days", "windows", "consent"):
        assert got["features"][key] == want["features"][key], key
    assert got["features"]["plan"] == "pro"
    with merged.reader() as conn:
        assert queries.customer(conn, "anon-7") is None
        sent = conn.execute(text("select count(*) from events where sent_as = 'anon-7'")).scalar()
        assert sent == 9
        assert not [
            r for r in queries.decisions(conn, limit=10_000) if r["customer_id"] == "anon-7"
        ]
        assert repo.identities_of(conn, ["anon-7"]) == {"anon-7": "c-known"}
        kinds = [k for (k,) in conn.execute(text("select kind from audit order by seq"))]
        assert kinds.count("customer.merged") == 1
    # An event still sent with the old id counts for the customer.
    again = ev("purchase", "anon-7", at=31.0, amount=10.0)
    Pipeline(merged, EAGER, clock=closed([again]), batch_size=batch_size).run(iter([again]), "t")
    assert view(merged)["features"]["purchases_total"] == want["features"]["purchases_total"] + 1
    merged.close()
    one.close()


@pytest.mark.parametrize("batch_size", [3, 100_000])
def test_an_alias_before_the_history_decides_as_one_id(tmp_path: Path, batch_size: int) -> None:
    events = history()
    early = alias(T0 - dt.timedelta(hours=1))
    merged = run(tmp_path / "merged.db", [early, *events], batch_size)
    # The alias is an event of the customer's too: the one-id history has it (merging nothing).
    one = run(tmp_path / "one.db", [early, *as_one(events)], batch_size)
    assert decided(merged) == decided(one) and decided(one)
    assert view(merged)["features"] == view(one)["features"]
    merged.close()
    one.close()


def test_erasure_after_a_merge_reaches_both_ids(tmp_path: Path) -> None:
    events = history()
    profiles = [
        make_event(
            "profile.updated",
            event_id=f"p-{cid}",
            customer_id=cid,
            occurred_at=(T0 + dt.timedelta(days=d)).isoformat(),
            payload={"email": email, "name": name},
        )
        for cid, d, email, name in [
            ("anon-7", 1, "ada.anon@example.com", "Ada Anon"),
            ("c-known", 9, "ada@example.com", "Ada Lovelace"),
        ]
    ]
    path = tmp_path / "t.db"
    store = run(path, sorted([*events, *profiles], key=lambda e: e.occurred_at), 100_000)
    late = alias(events[-1].occurred_at + dt.timedelta(hours=1))
    Pipeline(store, EAGER, clock=closed([late])).run(iter([late]), "t")
    done = erase(store, "anon-7", "privacy desk")  # the old id finds the person
    assert done["customer_id"] == "c-known"
    with store.reader() as conn:
        assert all(v is None for v in personal.personal(conn, "c-known").values())
    store.close()
    data = file_bytes(path)
    for secret in (b"ada.anon@example.com", b"Ada Anon", b"ada@example.com", b"Ada Lovelace"):
        assert secret not in data, secret


def test_a_merged_ids_points_move_to_the_survivor_and_the_ledger_verifies(tmp_path: Path) -> None:
    contract = Contract.model_validate(CONTRACT)
    buys = [
        make_event(
            "purchase",
            event_id=f"buy-{cid}",
            customer_id=cid,
            occurred_at=(T0 + dt.timedelta(days=d)).isoformat(),
            partner_id="dealer-1",
            payload={"amount": amount, "currency": "EUR"},
        )
        for cid, d, amount in [("anon-7", 2, 200.0), ("c-known", 5, 100.0)]
    ]
    events = [*buys, alias(T0 + 6 * DAY)]
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    pipeline = Pipeline(store, EAGER, clock=closed(events), contracts=[contract])
    pipeline.run(iter(events), "t")
    with store.reader() as conn:
        survivor = ledger_store.account(conn, member_account("default", "c-known"))
        previous = ledger_store.account(conn, member_account("default", "anon-7"))
        assert (survivor.available, previous.available) == (150, 0)  # 0.5 a euro: 100 + 50
        assert ledger.verify(ledger_store.whole_book(conn)) is None
    store.close()


def test_an_email_id_is_kept_as_a_digest_found_by_its_address_and_erased(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    events = [
        ev("usage", "Ada@Example.com", at=float(d), event_id=f"u-{d}", minutes=3.0)
        for d in range(5)
    ]
    join = alias(T0 + 6 * DAY, "anon-7", "ada@example.com")
    events.append(msgspec.structs.replace(join, event_id="alias-1"))
    store = run(path, events, 2)
    with store.reader() as conn:
        found = customer_view(conn, "ADA@example.com", as_of=T0 + 10 * DAY)
        assert found is not None and found["customer_id"] == id_of("ada@example.com")
        assert found["personal"]["email"] == "ada@example.com"
        ids = {r["customer_id"] for r in queries.decisions(conn, limit=100)}
        assert ids == {id_of("ada@example.com")}
        assert repo.identities_of(conn, ["anon-7"]) == {"anon-7": id_of("ada@example.com")}
    store.close()
    stored = file_bytes(path)
    assert stored.count(b"ada@example.com") >= 1 and b"Ada@Example.com" not in stored
    store = Store(f"sqlite:///{path}")
    erase(store, "Ada@Example.com", "privacy desk")
    store.close()
    assert b"ada@example.com" not in file_bytes(path).lower()
