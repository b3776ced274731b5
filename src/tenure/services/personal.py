"""Personal data at the edges: kept on ingest, shown per role, erased on request.

Clear values live only in `personal_data`; the event log keeps digests (events/personal.py) and
the audit chain never sees them. Erasing a customer deletes that row, drops the digests from
the customer's events, blanks rejected lines and delivery payloads that held a value, and
records the erasure (who, when, which fields; never the values) in the audit chain. Nothing
the audit chain or the ledger hashes or balances is touched, so both still verify.

The database file itself must forget too: SQLite keeps deleted bytes in free pages (and in its
write-ahead log) until they are reused, so an erasure ends with `VACUUM` and a truncating
checkpoint; PostgreSQL gets a `VACUUM` of the touched tables (dead row versions reclaimed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, select, update

from tenure.audit.chain import chain
from tenure.errors import InputError
from tenure.events.envelope import Event
from tenure.events.personal import SENSITIVE, personal_of
from tenure.store import repo
from tenure.store import schema as t
from tenure.store.db import Store
from tenure.store.repo import _among

ERASED_RAW = b'{"erased": "personal data removed on request"}'


def keep(conn: Connection, events: Sequence[Event]) -> int:
    """Store the personal values these events carry; per field, the newest (by event time)
    wins, so a late event never overwrites a newer value. Returns customers touched."""
    newest: dict[str, dict[str, tuple[dt.datetime, str]]] = {}
    for e in events:
        for field, value in personal_of(e).items():
            slot = newest.setdefault(e.customer_id, {})
            if field not in slot or slot[field][0] <= e.occurred_at:
                slot[field] = (e.occurred_at, value)
    if not newest:
        return 0
    p = t.personal_data.c
    current = {
        row.customer_id: row
        for row in conn.execute(
            select(t.personal_data).where(_among(conn, p.customer_id, list(newest)))
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for customer, fields in newest.items():
        row = current.get(customer)
        stamp = row.updated_at if row is not None else None
        values = {f: (getattr(row, f) if row is not None else None) for f in SENSITIVE}
        # One `updated_at` per customer: a field is replaced when its event is not older.
        for field, (at, value) in fields.items():
            if stamp is None or at >= stamp or values.get(field) is None:
                values[field] = value
        latest = max([at for at, _ in fields.values()] + ([stamp] if stamp else []))
        (inserts if row is None else updates).append(
            {"customer_id": customer, **values, "updated_at": latest}
        )
    # One statement each for new and known customers, whatever the batch holds.
    if inserts:
        conn.execute(t.personal_data.insert(), inserts)
    if updates:
        conn.execute(
            update(t.personal_data)
            .where(p.customer_id == bindparam("b_customer_id"))
            .values({c: bindparam(f"b_{c}") for c in (*SENSITIVE, "updated_at")}),
            [{f"b_{k}": v for k, v in u.items()} for u in updates],
        )
    return len(newest)


def personal(conn: Connection, customer_id: str) -> dict[str, str | None]:
    """A customer's personal values (all None when none are known or they were erased)."""
    row = conn.execute(
        select(t.personal_data).where(t.personal_data.c.customer_id == customer_id)
    ).first()
    return {f: (getattr(row, f) if row is not None else None) for f in SENSITIVE}


def _scrub(value: Any, secrets: Sequence[str]) -> tuple[Any, bool]:
    text = orjson.dumps(value).decode()
    found = any(s in text for s in secrets)
    for s in secrets:
        text = text.replace(orjson.dumps(s).decode()[1:-1], "[erased]")
    return orjson.loads(text), found


def erase(
    store: Store, customer_id: str, by: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Remove a customer's personal data everywhere it is kept; audited, idempotent."""
    if not by.strip():
        raise InputError("--by must name who asked for the erasure")
    now = now or dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        known = conn.execute(
            select(t.customers.c.customer_id).where(t.customers.c.customer_id == customer_id)
        ).first()
        values = personal(conn, customer_id)
        if known is None and not any(values.values()):
            raise InputError(f"no customer {customer_id!r}")
        secrets = [v for v in values.values() if v]
        conn.execute(delete(t.personal_data).where(t.personal_data.c.customer_id == customer_id))
        e = t.events.c
        events = 0
        for event_id, payload in conn.execute(
            select(e.event_id, e.payload).where(
                e.customer_id == customer_id, e.type == "profile.updated"
            )
        ).all():
            kept = {k: v for k, v in (payload or {}).items() if k not in SENSITIVE}
            if kept != payload:
                conn.execute(update(t.events).where(e.event_id == event_id).values(payload=kept))
                events += 1
        # A rejected line is raw input: it cannot be parsed to find the fields, so a line that
        # names the customer or holds one of the values is blanked (its reason is kept).
        needles = [orjson.dumps(customer_id), *(s.encode() for s in secrets)]
        r = t.rejects.c
        rejects = 0
        for reject_id, raw in conn.execute(select(r.id, r.raw)).all():
            if any(n in raw for n in needles):
                conn.execute(update(t.rejects).where(r.id == reject_id).values(raw=ERASED_RAW))
                rejects += 1
        scrubbed = 0
        if secrets:
            d = t.deliveries.c
            for key, payload in conn.execute(
                select(d.key, d.payload).where(d.customer_id == customer_id)
            ).all():
                clean, found = _scrub(payload, secrets)
                if found:
                    conn.execute(update(t.deliveries).where(d.key == key).values(payload=clean))
                    scrubbed += 1
        body = {
            "kind": "customer.erased",
            "customer_id": customer_id,
            "fields": sorted(f for f, v in values.items() if v),
            "by": by.strip(),
            "at": now.isoformat(),
        }
        seq, head = repo.lock_audit_head(conn)
        repo.append_audit(conn, chain(head, seq + 1, [body]), [("customer.erased", customer_id)])
    _forget_on_disk(store)
    return {
        "customer_id": customer_id,
        "fields_erased": body["fields"],
        "events_redacted": events,
        "rejects_blanked": rejects,
        "deliveries_scrubbed": scrubbed,
    }


def _forget_on_disk(store: Store) -> None:
    """Make the deleted bytes unrecoverable from the database files (see the module note)."""
    # On the driver's own connection: VACUUM cannot run in a transaction, and the engine's
    # connections always begin one (SQLite: BEGIN IMMEDIATE, see store/db.py).
    raw = store.engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        if store.engine.dialect.name == "sqlite":
            driver.execute("VACUUM")
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            driver.autocommit = True
            driver.execute("VACUUM personal_data, events, rejects, deliveries")
            driver.autocommit = False
    finally:
        raw.close()
