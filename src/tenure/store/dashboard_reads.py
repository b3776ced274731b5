"""Reads behind the dashboard's pages that no other caller shares: task counts and queues, the
journey each decision runs, the newest month to settle, budget spend per period, the lists the
pages page through by keyset (customers, a customer's events, decisions, journeys, dead letters,
a member's ledger, partner adjustments), and the window of recently seen customers the
worth-saving list scores."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from tenure.store import repo
from tenure.store import schema as t
from tenure.store.service_reads import _keyset  # the keyset every JSON API list pages by


def task_counts(conn: Connection) -> dict[str, int]:
    """How many tasks there are in each status."""
    s = t.tasks.c.status
    return dict(conn.execute(select(s, func.count()).group_by(s)).all())


def task_queues(conn: Connection) -> list[str]:
    """Every queue a task has been put on, sorted."""
    return sorted(conn.execute(select(t.tasks.c.queue).distinct()).scalars())


def journey_ids(conn: Connection, decision_ids: Sequence[str]) -> dict[str, str]:
    """The journey each of these decisions runs (decisions without one are left out)."""
    if not decision_ids:
        return {}
    j = t.journeys.c
    query = select(j.decision_id, j.journey_id).where(j.decision_id.in_(decision_ids))
    return dict(conn.execute(query).all())


def newest_accrual(conn: Connection) -> dt.datetime | None:
    """When the newest accrual happened (event time), or None when there is none."""
    return conn.execute(select(func.max(t.loyalty_accruals.c.occurred_at))).scalar()


def newest_period(conn: Connection) -> str | None:
    """The newest month (YYYY-MM) a settlement has rows for: of the newest accrual that granted
    points (one refused whole by a cap funds nothing), or of an approved adjustment; None when
    there is neither."""
    a, pa = t.loyalty_accruals.c, t.partner_adjustments.c
    accrued = conn.execute(select(func.max(a.occurred_at)).where(a.granted > 0)).scalar()
    adjusted = conn.execute(select(func.max(pa.period)).where(pa.status == "approved")).scalar()
    months = [m for m in (accrued and f"{accrued:%Y-%m}", adjusted) if m]
    return max(months, default=None)


def budgets(conn: Connection) -> list[dict[str, Any]]:
    """Spend per policy and period, by policy, newest period first."""
    b = t.budgets.c
    return repo.rows(conn, select(t.budgets).order_by(b.policy_id, b.period.desc()))


# ---------------------------------------------------------------- the dashboard's lists (keyset)


def customers_page(
    conn: Connection, prefix: str, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Customers whose id starts with `prefix`, in id order, after the key (customer_id)."""
    c = t.customers.c
    query = select(c.customer_id, c.last_seen)
    if prefix and conn.dialect.name == "sqlite":
        # A range on the key: SQLite's LIKE is case-insensitive and skips the index.
        beyond = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        query = query.where(c.customer_id >= prefix, c.customer_id < beyond)
    elif prefix:
        query = query.where(c.customer_id.startswith(prefix, autoescape=True))
    return repo.rows(conn, _keyset(query, ((c.customer_id, False),), after, limit))


def events_page(
    conn: Connection, customer_id: str, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """A customer's events newest first (event time), after the key (occurred_at, event_id)."""
    e = t.events.c
    query = select(
        e.event_id, e.type, e.occurred_at, e.source, e.partner_id, e.payload, e.context
    ).where(e.customer_id == customer_id)
    order = ((e.occurred_at, True), (e.event_id, False))
    return repo.rows(conn, _keyset(query, order, after, limit))


@dataclass(frozen=True)
class DecisionFilter:
    """Which decisions a list shows (None: any); times bound `decided_at` as [since, until)."""

    status: str | None = None
    policy_id: str | None = None
    mode: str | None = None
    customer_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def decisions_page(
    conn: Connection, where: DecisionFilter, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Decisions newest first, after the key (decided_at, decision_id), without their records."""
    d = t.decisions.c
    query = select(
        d.decision_id,
        d.decided_at,
        d.customer_id,
        d.status,
        d.mode,
        d.action_id,
        d.channel,
        d.guardrail,
        d.reason,
        d.policy_id,
        d.policy_hash,
        d.risk,
    )
    for column, value in (
        (d.status, where.status),
        (d.policy_id, where.policy_id),
        (d.mode, where.mode),
        (d.customer_id, where.customer_id),
    ):
        if value:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(d.decided_at >= where.since)
    if where.until is not None:
        query = query.where(d.decided_at < where.until)
    order = ((d.decided_at, True), (d.decision_id, False))
    return repo.rows(conn, _keyset(query, order, after, limit))


@dataclass(frozen=True)
class JourneyFilter:
    """Which journeys a list shows (None: any); times bound `started_at` as [since, until)."""

    status: str | None = None
    journey_id: str | None = None
    step: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def journeys_page(
    conn: Connection, where: JourneyFilter, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Journeys newest first, after the key (started_at, decision_id), without their state."""
    j = t.journeys.c
    query = select(
        j.decision_id,
        j.customer_id,
        j.journey_id,
        j.action_id,
        j.channel,
        j.status,
        j.step,
        j.outcome,
        j.started_at,
        j.updated_at,
        j.ends_by,
    )
    for column, value in ((j.status, where.status), (j.journey_id, where.journey_id)):
        if value:
            query = query.where(column == value)
    if where.step:
        query = query.where(j.step == where.step)
    if where.since is not None:
        query = query.where(j.started_at >= where.since)
    if where.until is not None:
        query = query.where(j.started_at < where.until)
    order = ((j.started_at, True), (j.decision_id, False))
    return repo.rows(conn, _keyset(query, order, after, limit))


def deliveries_page(
    conn: Connection,
    statuses: Sequence[str],
    channel: str | None,
    limit: int,
    after: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Deliveries in these states, the most recently changed first, after the key
    (updated_at, key); without their payloads."""
    d = t.deliveries.c
    query = select(
        d.key,
        d.decision_id,
        d.customer_id,
        d.kind,
        d.channel,
        d.status,
        d.attempts,
        d.last_error,
        d.created_at,
        d.updated_at,
    ).where(d.status.in_(list(statuses)))
    if channel:
        query = query.where(d.channel == channel)
    order = ((d.updated_at, True), (d.key, False))
    return repo.rows(conn, _keyset(query, order, after, limit))


def delivery_counts(conn: Connection) -> dict[tuple[str, str], int]:
    """How many deliveries are dead or held, per (channel, status)."""
    d = t.deliveries.c
    query = (
        select(d.channel, d.status, func.count())
        .where(d.status.in_(("dead", "held")))
        .group_by(d.channel, d.status)
    )
    return {(channel or "", status): int(n) for channel, status, n in conn.execute(query)}


def dead_keys(conn: Connection, channel: str, limit: int) -> list[str]:
    """Keys of a channel's dead letters, oldest first (at most `limit`)."""
    d = t.deliveries.c
    query = (
        select(d.key)
        .where(d.status == "dead", d.channel == channel)
        .order_by(d.updated_at, d.key)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


# ---------------------------------------------------------------- customers worth saving


def recent_customers(
    conn: Connection,
    scan: int,
    programme: str,
    tier: str | None = None,
    partner: str | None = None,
) -> list[str]:
    """The `scan` most recently seen customers (of a tier, and with an event at a partner, when
    given), newest first: the window the worth-saving list scores."""
    c, lt, e = t.customers.c, t.loyalty_tiers.c, t.events.c
    query = select(c.customer_id).where(c.version > 0)
    if tier:
        placed = select(lt.customer_id).where(
            lt.programme == programme, lt.tier == tier, lt.customer_id == c.customer_id
        )
        query = query.where(placed.exists())
    if partner:
        # By the (customer_id, occurred_at) index: one probe per customer looked at.
        there = select(e.event_id).where(e.customer_id == c.customer_id, e.partner_id == partner)
        query = query.where(there.exists())
    query = query.order_by(c.last_seen.desc().nulls_last(), c.customer_id).limit(scan)
    return list(conn.execute(query).scalars())


def tiers_of(conn: Connection, programme: str, customer_ids: Sequence[str]) -> dict[str, str]:
    """The tier of each of these customers placed in a programme."""
    if not customer_ids:
        return {}
    lt = t.loyalty_tiers.c
    query = select(lt.customer_id, lt.tier).where(
        lt.programme == programme, lt.customer_id.in_(list(customer_ids))
    )
    return dict(conn.execute(query).all())


def tier_names(conn: Connection, programme: str) -> list[str]:
    """The tiers members of a programme are placed in, sorted."""
    lt = t.loyalty_tiers.c
    query = select(lt.tier).where(lt.programme == programme).distinct()
    return sorted(conn.execute(query).scalars())


def ledger_page(
    conn: Connection, account_id: str, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Transfers that debit or credit an account, newest first, after the key (at,
    transfer_id)."""
    tr = t.ledger_transfers.c
    query = select(t.ledger_transfers).where((tr.debit == account_id) | (tr.credit == account_id))
    order = ((tr.at, True), (tr.transfer_id, True))
    return repo.rows(conn, _keyset(query, order, after, limit))


def adjustments_page(
    conn: Connection, limit: int, after: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Partner adjustments, newest first, after the key (created_at, adjustment_id)."""
    pa = t.partner_adjustments.c
    order = ((pa.created_at, True), (pa.adjustment_id, False))
    return repo.rows(conn, _keyset(select(t.partner_adjustments), order, after, limit))
