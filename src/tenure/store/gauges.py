"""The grouped counts the Prometheus gauges show, read in one transaction at scrape time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from tenure.store import schema as t


@dataclass(frozen=True)
class StoreCounts:
    """What the store holds, grouped the way the gauges label it."""

    journeys: dict[str, int]  # status -> count
    deliveries: list[tuple[str, str | None, str, int, int]]  # kind, channel, status, n, attempts
    channels: list[dict[str, Any]]  # each channel's breaker row
    transfers: list[tuple[str, str, int, int]]  # kind, status, n, points
    budgets: list[tuple[str, str, float]]  # policy, latest period, spent
    decisions: list[tuple[str, str, str, int]]  # mode, status, guardrail ("" for none), n


def store_counts(conn: Connection) -> StoreCounts:
    """Every count the store gauges need."""
    j, d, x, dc = t.journeys.c, t.deliveries.c, t.ledger_transfers.c, t.decisions.c
    journeys = dict(conn.execute(select(j.status, func.count()).group_by(j.status)).all())
    deliveries = conn.execute(
        select(
            d.kind, d.channel, d.status, func.count(), func.coalesce(func.sum(d.attempts), 0)
        ).group_by(d.kind, d.channel, d.status)
    ).all()
    channels = [dict(r) for r in conn.execute(select(t.channel_state)).mappings().all()]
    transfers = conn.execute(
        select(x.kind, x.status, func.count(), func.coalesce(func.sum(x.amount), 0)).group_by(
            x.kind, x.status
        )
    ).all()
    decisions = conn.execute(
        select(dc.mode, dc.status, func.coalesce(dc.guardrail, ""), func.count()).group_by(
            dc.mode, dc.status, dc.guardrail
        )
    ).all()
    return StoreCounts(
        journeys,
        [tuple(r) for r in deliveries],  # type: ignore[misc]
        channels,
        [tuple(r) for r in transfers],  # type: ignore[misc]
        _latest_budgets(conn),
        [tuple(r) for r in decisions],  # type: ignore[misc]
    )


def _latest_budgets(conn: Connection) -> list[tuple[str, str, float]]:
    b = t.budgets.c
    latest = (
        select(b.policy_id, func.max(b.period).label("period")).group_by(b.policy_id).subquery()
    )
    rows = conn.execute(
        select(b.policy_id, b.period, b.spent).join(
            latest, (b.policy_id == latest.c.policy_id) & (b.period == latest.c.period)
        )
    ).all()
    return [(p, period, float(spent)) for p, period, spent in rows]
