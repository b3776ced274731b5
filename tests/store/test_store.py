"""One contract for the store, run against SQLite and PostgreSQL so the backends cannot drift."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import select

from tenure.audit.chain import chain
from tenure.errors import StoreError
from tenure.store import queries, repo
from tenure.store import schema as t
from tenure.store.db import MIGRATIONS, Store, make_engine
from tests.helpers import ev

DAY_1 = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())


def test_migrations_are_idempotent(store_url: str) -> None:
    Store(store_url).close()
    store = Store(store_url)
    with store.reader() as conn:
        assert repo.lock_audit_head(conn) == (0, "0" * 64)
    store.close()


def test_event_log_keeps_the_first_copy_of_an_id(store_url: str) -> None:
    store = Store(store_url)
    first = ev("purchase", event_id="e-1", amount=10.0)
    again = ev("purchase", event_id="e-1", amount=99.0)
    with store.transaction() as conn:
        repo.insert_events(conn, [first, ev("usage", event_id="e-2", minutes=1.5)])
    with store.transaction() as conn:
        assert repo.existing_event_ids(conn, ["e-1", "e-2", "e-3"]) == {"e-1", "e-2"}
        repo.insert_events(conn, [again])
    with store.reader() as conn:
        rows = repo.rows(conn, select(t.events).order_by(t.events.c.event_id))
    assert [r["event_id"] for r in rows] == ["e-1", "e-2"]
    assert rows[0]["payload"]["amount"] == 10.0
    assert rows[0]["occurred_at"] == first.occurred_at
    assert rows[0]["occurred_at"].tzinfo is not None
    store.close()


def test_times_are_stored_in_utc_whatever_the_offset(store_url: str) -> None:
    store = Store(store_url)
    e = ev("usage", at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5))))
    with store.transaction() as conn:
        repo.insert_events(conn, [e])
    with store.reader() as conn:
        stored = conn.execute(select(t.events.c.occurred_at)).scalar_one()
    assert stored == e.occurred_at and stored.utcoffset() == dt.timedelta(0)
    store.close()


def test_customer_upsert_and_versions(store_url: str) -> None:
    store = Store(store_url)
    row = {
        "customer_id": "c-1",
        "state": {"daily": {"usage": {20500: [1, 2]}}},
        "memory": {"p": {"at_risk": True}},
        "version": 1,
        "last_seen": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        # Folded through the start of 1 March; next evaluated at its close.
        "through_s": DAY_1,
        "due_s": DAY_1 + 86_400,
    }
    with store.transaction() as conn:
        repo.upsert_customers(conn, [row])
    with store.reader() as conn:
        assert repo.due_customers(conn, DAY_1 + 86_399) == []
        assert repo.due_customers(conn, DAY_1 + 86_400) == ["c-1"]
    # Version 2 has walked to the close of 1 March, and nothing can come due without events.
    later = {**row, "version": 2, "memory": {}, "through_s": DAY_1 + 86_400, "due_s": None}
    with store.transaction() as conn:
        repo.upsert_customers(conn, [later])
    with store.reader() as conn:
        assert repo.customer_versions(conn, ["c-1", "c-2"]) == {"c-1": 2}
        state, memory, version = repo.load_customers(conn, ["c-1"])["c-1"]
        timed = repo.load_timed_customers(conn, ["c-1", "c-2"])
        assert repo.due_customers(conn, DAY_1 + 365 * 86_400) == []
    assert state == {"daily": {"usage": {"20500": [1, 2]}}} and memory == {} and version == 2
    assert list(timed) == ["c-1"] and timed["c-1"][2:] == (2, DAY_1 + 86_400)
    store.close()


def test_audit_append_moves_the_head(store_url: str) -> None:
    store = Store(store_url)
    with store.transaction() as conn:
        seq, head = repo.lock_audit_head(conn)
        recs = chain(head, seq + 1, [{"a": 1}, {"b": "é"}])
        repo.append_audit(conn, recs, [("decision", "d-1"), ("decision", "d-2")])
    with store.reader() as conn:
        assert repo.lock_audit_head(conn) == (2, recs[-1].hash)
        assert list(repo.audit_records(conn, page=1)) == recs
    store.close()


def test_outbox_idempotency_key_is_unique(store_url: str) -> None:
    store = Store(store_url)
    row = {
        "idempotency_key": "d-1:start",
        "decision_id": "d-1",
        "kind": "journey.start",
        "payload": {"x": 1},
        "created_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        "attempts": 0,
    }
    for _ in range(2):
        with store.transaction() as conn:
            repo.insert_outbox(conn, [row])
    with store.reader() as conn:
        assert repo.count(conn, t.outbox) == 1
    store.close()


def test_a_failed_transaction_leaves_nothing(store_url: str) -> None:
    store = Store(store_url)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        repo.insert_events(conn, [ev("usage", event_id="e-1")])
        raise RuntimeError("crash mid-batch")
    with store.reader() as conn:
        assert repo.count(conn, t.events) == 0
    store.close()


def test_unusable_url_is_a_store_error(tmp_path) -> None:
    with pytest.raises(StoreError):
        Store(f"sqlite:///{tmp_path}/missing-dir/x/tenure.db")


def _alembic(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _reject(line_no: int, raw: bytes, **digest: object) -> dict[str, object]:
    row = {"run_id": "r", "source": "s", "line_no": line_no, "field": "line", "reason": "line: x"}
    return {**row, "raw": raw, "raw_sha256": hashlib.sha256(raw).hexdigest(), **digest}


def test_a_rejects_input_digest_migration_keeps_older_rows_and_goes_both_ways(
    store_url: str,
) -> None:
    engine = make_engine(store_url)
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "0010")
    with engine.begin() as conn:
        conn.execute(t.rejects.insert().values(_reject(1, b"old")))  # the columns 0010 has
    store = Store(store_url)  # migrates to the newest revision
    whole = b"w" * 10_000
    digest = {"input_size": len(whole), "input_sha256": hashlib.sha256(whole).hexdigest()}
    with store.transaction() as conn:
        repo.insert_rejects(conn, [_reject(2, whole[:4096], **digest)])
    with store.reader() as conn:
        old, new = queries.rejects(conn)
    store.close()
    assert (old["raw"], old["input_size"], old["input_sha256"]) == ("old", None, None)
    assert (new["input_size"], new["input_sha256"]) == (10_000, digest["input_sha256"])
    with engine.begin() as conn:
        command.downgrade(_alembic(conn), "0010")
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("rejects")}
        assert "input_size" not in columns and "input_sha256" not in columns
        assert conn.execute(sa.select(sa.func.count()).select_from(t.rejects)).scalar_one() == 2
    with engine.begin() as conn:
        command.upgrade(_alembic(conn), "head")
    engine.dispose()
