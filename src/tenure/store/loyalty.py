"""The loyalty tables: accruals, cap usage, results, tiers, partner adjustments and the grants
and adjustments of members' points (proposals).

The queries behind `services.loyalty`; the ledger's own tables are in `store.ledger`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

# `Connection` is also the name services use for the store's connections (no sqlalchemy there).
from sqlalchemy import Connection, bindparam, select

from tenure.loyalty.tiers import Standing
from tenure.store import schema as t
from tenure.store.repo import _among, _insert

UsageKey = tuple[str, str, str]  # (contract, scope, period)


def accrued_event_ids(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of these events have already accrued."""
    a = t.loyalty_accruals.c
    return set(
        conn.execute(select(a.event_id).where(_among(conn, a.event_id, event_ids))).scalars()
    )


def lock_usage(conn: Connection, keys: Sequence[UsageKey]) -> dict[UsageKey, int]:
    """Cap usage for these (contract, scope, period) keys, created at zero and locked."""
    if not keys:
        return {}
    conn.execute(
        _insert(conn, t.contract_usage).on_conflict_do_nothing(),
        [{"contract_id": c, "scope": s, "period": p, "points": 0} for c, s, p in sorted(set(keys))],
    )
    u = t.contract_usage.c
    # Only the rows of these scopes and periods: the table grows by customer and month, and a
    # batch must neither read nor lock all of it.
    query = (
        select(u.contract_id, u.scope, u.period, u.points)
        .where(
            u.contract_id.in_(sorted({c for c, _, _ in keys})),
            u.period.in_(sorted({p for _, _, p in keys})),
            _among(conn, u.scope, sorted({s for _, s, _ in keys})),
        )
        .order_by(u.contract_id, u.scope, u.period)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    wanted = set(keys)
    return {(c, s, p): int(n) for c, s, p, n in conn.execute(query) if (c, s, p) in wanted}


def save_usage(conn: Connection, used: dict[UsageKey, int]) -> None:
    """Write the cap usage back (rows locked by `lock_usage`)."""
    if not used:
        return
    u = t.contract_usage.c
    conn.execute(
        t.contract_usage.update()
        .where(
            u.contract_id == bindparam("u_contract"),
            u.scope == bindparam("u_scope"),
            u.period == bindparam("u_period"),
        )
        .values(points=bindparam("u_points")),
        [
            {"u_contract": c, "u_scope": s, "u_period": p, "u_points": n}
            for (c, s, p), n in used.items()
        ],
    )


def insert_accruals(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record what each event earned (and what its caps refused)."""
    if rows:
        conn.execute(t.loyalty_accruals.insert(), rows)


def accrual(conn: Connection, event_id: str, lock: bool = False) -> Any | None:
    """The accrual row of one event (None: it never accrued); `lock`: until the transaction
    ends (a return updates what came back of it)."""
    a = t.loyalty_accruals.c
    query = select(t.loyalty_accruals).where(a.event_id == event_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def record_return(conn: Connection, event_id: str, returned: float, clawed: dict[str, int]) -> None:
    """What has come back of a purchase so far: its share returned, the points per funder."""
    a = t.loyalty_accruals.c
    conn.execute(
        t.loyalty_accruals.update()
        .where(a.event_id == event_id)
        .values(returned=returned, clawed=clawed)
    )


def event_payload(conn: Connection, event_id: str) -> dict[str, Any] | None:
    """An event's payload as stored (None: no such event)."""
    e = t.events.c
    row = conn.execute(select(e.payload).where(e.event_id == event_id)).first()
    return None if row is None else dict(row.payload or {})


def shares_by_event(
    conn: Connection, start: dt.datetime, end: dt.datetime
) -> list[tuple[str, dict[str, Any]]]:
    """(event id, shares per funder) of the accruals whose events fall in [start, end)."""
    a = t.loyalty_accruals.c
    query = select(a.event_id, a.shares).where(a.occurred_at >= start, a.occurred_at < end)
    return [(event_id, shares) for event_id, shares in conn.execute(query)]


def granted_by_customer(
    conn: Connection,
    customer_ids: Sequence[str],
    contract_ids: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
) -> list[tuple[str, int]]:
    """(customer, points granted) per accrual under these contracts, events in [start, end]."""
    a = t.loyalty_accruals.c
    query = select(a.customer_id, a.granted).where(
        _among(conn, a.customer_id, customer_ids),
        a.contract_id.in_(list(contract_ids)),
        a.occurred_at >= start,
        a.occurred_at <= end,
    )
    return [(customer, granted) for customer, granted in conn.execute(query)]


def accrued_customers(conn: Connection) -> set[str]:
    """Every customer with an accrual."""
    return set(conn.execute(select(t.loyalty_accruals.c.customer_id).distinct()).scalars())


def spend_events(
    conn: Connection,
    customer_ids: Sequence[str],
    types: Sequence[str],
    start: dt.datetime,
    end: dt.datetime,
) -> list[tuple[str, Any]]:
    """(customer, payload) of these customers' events of these types in [start, end]."""
    ev = t.events.c
    query = select(ev.customer_id, ev.payload).where(
        _among(conn, ev.customer_id, customer_ids),
        ev.type.in_(types),
        ev.occurred_at >= start,
        ev.occurred_at <= end,
    )
    return [(customer, payload) for customer, payload in conn.execute(query)]


def result_event_ids(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of these loyalty events already have a recorded outcome."""
    r = t.loyalty_results.c
    return set(
        conn.execute(select(r.event_id).where(_among(conn, r.event_id, event_ids))).scalars()
    )


def insert_results(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record each loyalty event's outcome."""
    if rows:
        conn.execute(t.loyalty_results.insert(), rows)


def standings(conn: Connection, programme: str, customer_ids: Sequence[str]) -> dict[str, Standing]:
    """These members' tier standings in a programme (absent: never evaluated)."""
    lt = t.loyalty_tiers.c
    query = select(t.loyalty_tiers).where(
        lt.programme == programme, _among(conn, lt.customer_id, customer_ids)
    )
    return {row.customer_id: Standing(row.tier, row.below_since) for row in conn.execute(query)}


def tiered_customers(conn: Connection, programme: str) -> set[str]:
    """Every member with a tier row in a programme."""
    lt = t.loyalty_tiers.c
    return set(conn.execute(select(lt.customer_id).where(lt.programme == programme)).scalars())


def upsert_tiers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write members' tier standings, replacing those already there."""
    if not rows:
        return
    lt = t.loyalty_tiers.c
    stmt = _insert(conn, t.loyalty_tiers)
    stmt = stmt.on_conflict_do_update(
        index_elements=[lt.programme, lt.customer_id],
        set_={
            "tier": stmt.excluded.tier,
            "below_since": stmt.excluded.below_since,
            "changed_at": stmt.excluded.changed_at,
        },
    )
    conn.execute(stmt, rows)


def insert_adjustment(conn: Connection, row: dict[str, Any]) -> None:
    """Record a proposed partner adjustment."""
    conn.execute(t.partner_adjustments.insert(), [row])


def lock_adjustment(conn: Connection, adjustment_id: str) -> Any | None:
    """One adjustment, locked until the transaction ends (None: no such adjustment)."""
    pa = t.partner_adjustments.c
    query = select(t.partner_adjustments).where(pa.adjustment_id == adjustment_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # two approvers at once: the second waits, then sees it
    return conn.execute(query).first()


def approve_adjustment(
    conn: Connection, adjustment_id: str, approver: str, now: dt.datetime
) -> None:
    """Mark an adjustment approved."""
    pa = t.partner_adjustments.c
    conn.execute(
        t.partner_adjustments.update()
        .where(pa.adjustment_id == adjustment_id)
        .values(status="approved", approved_by=approver, decided_at=now)
    )


def adjustments(conn: Connection, partner: str | None = None) -> list[dict[str, Any]]:
    """Adjustments, newest first."""
    pa = t.partner_adjustments.c
    query = select(t.partner_adjustments).order_by(pa.created_at.desc())
    if partner:
        query = query.where(pa.partner == partner)
    return [dict(r) for r in conn.execute(query).mappings()]


def approved_points(conn: Connection, partner: str, period: str) -> list[tuple[str, int]]:
    """(reference, points) of a partner's approved adjustments in a period."""
    pa = t.partner_adjustments.c
    query = select(pa.reference, pa.points).where(
        pa.partner == partner, pa.period == period, pa.status == "approved"
    )
    return [(reference, points) for reference, points in conn.execute(query)]


def insert_proposal(conn: Connection, row: dict[str, Any]) -> None:
    """Record a grant or adjustment of a member's points (posted at once, or proposed)."""
    conn.execute(t.ledger_proposals.insert(), [row])


def proposal(conn: Connection, proposal_id: str, lock: bool = False) -> dict[str, Any] | None:
    """One grant or adjustment (None: no such id); `lock`: until the transaction ends."""
    lp = t.ledger_proposals.c
    query = select(t.ledger_proposals).where(lp.proposal_id == proposal_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()  # two approvers at once: the second waits, then sees it
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def decide_proposal(
    conn: Connection,
    proposal_id: str,
    status: str,
    by: str,
    at: dt.datetime,
    note: str | None = None,
) -> None:
    """Mark a proposal posted or rejected, by whom and when."""
    lp = t.ledger_proposals.c
    conn.execute(
        t.ledger_proposals.update()
        .where(lp.proposal_id == proposal_id)
        .values(status=status, decided_by=by, decided_at=at, note=note)
    )


def proposals(
    conn: Connection,
    status: str | None = None,
    customer_id: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Grants and adjustments, newest first (of one status or customer when given)."""
    lp = t.ledger_proposals.c
    query = select(t.ledger_proposals).order_by(lp.created_at.desc(), lp.proposal_id.desc())
    if status:
        query = query.where(lp.status == status)
    if customer_id:
        query = query.where(lp.customer_id == customer_id)
    return [dict(r) for r in conn.execute(query.limit(limit)).mappings()]
