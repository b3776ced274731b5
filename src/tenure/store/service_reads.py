"""Reads behind the JSON API: a partner's customers, what an ingested batch decided and posted,
and whether the store answers at all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from tenure.store import schema as t


def ping(conn: Connection) -> None:
    """One trivial statement; raises when the store does not answer."""
    conn.execute(select(1))


def is_partner_customer(conn: Connection, customer_id: str, partner: str | None) -> bool:
    """Whether the customer has any event at this partner."""
    e = t.events.c
    found = conn.execute(
        select(e.event_id).where(e.customer_id == customer_id, e.partner_id == partner).limit(1)
    ).first()
    return found is not None


def decisions_triggered_by(conn: Connection, event_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The records of the non-shadow decisions these events triggered."""
    d = t.decisions.c
    query = select(d.record).where(d.trigger_event_id.in_(event_ids), d.mode != "shadow")
    return list(conn.execute(query).scalars().all())


def loyalty_result(conn: Connection, event_id: str) -> tuple[str, int, str | None] | None:
    """(result, points, detail) the ledger recorded for a loyalty event, or None."""
    r = t.loyalty_results.c
    row = conn.execute(select(r.result, r.points, r.detail).where(r.event_id == event_id)).first()
    return None if row is None else (row.result, row.points, row.detail)
