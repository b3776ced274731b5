"""Reads and writes of personal data: the `personal_data` table, and the places erasure must
reach (profile events' payloads, rejected lines, delivery payloads). See services/personal.py
for what erasure means and why the files are vacuumed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, select, update

from tenure.events.envelope import EPOCH, Event
from tenure.events.personal import SENSITIVE, personal_of
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


def keep_email_ids(conn: Connection, emails: dict[str, str]) -> None:
    """The address behind each email id (kept as its digest everywhere else), as the
    customer's email when none is known yet: erasing the customer erases it."""
    p = t.personal_data.c
    have = {
        row.customer_id: row.email
        for row in conn.execute(
            select(p.customer_id, p.email).where(_among(conn, p.customer_id, list(emails)))
        )
    }
    # Stamped as old as can be: any profile event's own values are newer and win.
    new = [
        {"customer_id": cid, "email": email, "updated_at": EPOCH}
        for cid, email in emails.items()
        if cid not in have
    ]
    if new:
        conn.execute(t.personal_data.insert(), new)
    for cid, email in emails.items():
        if cid in have and have[cid] is None:
            conn.execute(update(t.personal_data).where(p.customer_id == cid).values(email=email))


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


def customer_known(conn: Connection, customer_id: str) -> bool:
    """Whether the workspace has a state for this customer."""
    c = t.customers.c
    return (
        conn.execute(select(c.customer_id).where(c.customer_id == customer_id)).first() is not None
    )


def delete_personal(conn: Connection, customer_id: str) -> None:
    """Drop the customer's row of clear values."""
    conn.execute(delete(t.personal_data).where(t.personal_data.c.customer_id == customer_id))


def redact_profile_events(conn: Connection, customer_id: str) -> int:
    """Drop the personal fields' digests from the customer's profile events; how many changed."""
    e = t.events.c
    changed = 0
    rows = conn.execute(
        select(e.event_id, e.payload).where(
            e.customer_id == customer_id, e.type == "profile.updated"
        )
    ).all()
    for event_id, payload in rows:
        kept = {k: v for k, v in (payload or {}).items() if k not in SENSITIVE}
        if kept != payload:
            conn.execute(update(t.events).where(e.event_id == event_id).values(payload=kept))
            changed += 1
    return changed


def blank_rejects(conn: Connection, needles: Sequence[bytes]) -> int:
    """Blank every rejected line holding one of `needles` (its reason is kept); how many."""
    r = t.rejects.c
    blanked = 0
    for reject_id, raw in conn.execute(select(r.id, r.raw)).all():
        if any(n in raw for n in needles):
            conn.execute(update(t.rejects).where(r.id == reject_id).values(raw=ERASED_RAW))
            blanked += 1
    return blanked


def scrub_deliveries(conn: Connection, customer_id: str, secrets: Sequence[str]) -> int:
    """Replace the values in the customer's delivery payloads; how many payloads held one."""
    d = t.deliveries.c
    scrubbed = 0
    rows = conn.execute(select(d.key, d.payload).where(d.customer_id == customer_id)).all()
    for key, payload in rows:
        clean, found = _scrub(payload, secrets)
        if found:
            conn.execute(update(t.deliveries).where(d.key == key).values(payload=clean))
            scrubbed += 1
    return scrubbed


def forget_on_disk(store: Store) -> None:
    """Make deleted bytes unrecoverable from the database files (VACUUM, WAL truncation)."""
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
