"""Reads and writes of the act layer: journeys, deliveries, human tasks and channel state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, case, desc, func, select, update

from tenure.journeys.inputs import JourneyStart, OutboxMessage, outbox_kind, outbox_payload
from tenure.store import schema as t
from tenure.store.repo import _among, _insert
from tenure.times import from_epoch

OPEN_JOURNEY = ("pending", "running")


# Epoch seconds as an aware UTC time (what the store's time columns take).
utc = from_epoch


# ---------------------------------------------------------------- deliveries


def claim_delivery(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The delivery row for `row['key']`, created as `pending` when there is none yet."""
    conn.execute(_insert(conn, t.deliveries).on_conflict_do_nothing(), [row])
    query = select(t.deliveries).where(t.deliveries.c.key == row["key"])
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return dict(conn.execute(query).mappings().one())


def update_delivery(conn: Connection, key: str, **values: Any) -> None:
    """Change a delivery's status, attempts, error."""
    conn.execute(update(t.deliveries).where(t.deliveries.c.key == key).values(**values))


def deliveries(
    conn: Connection, status: Sequence[str], channel: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Deliveries in these states (oldest first), optionally of one channel."""
    d = t.deliveries.c
    query = select(t.deliveries).where(d.status.in_(list(status)))
    if channel:
        query = query.where(d.channel == channel)
    return [
        dict(r) for r in conn.execute(query.order_by(d.created_at, d.key).limit(limit)).mappings()
    ]


def delivery(conn: Connection, key: str) -> dict[str, Any] | None:
    """One delivery by key."""
    row = conn.execute(select(t.deliveries).where(t.deliveries.c.key == key)).mappings().first()
    return dict(row) if row else None


# ---------------------------------------------------------------- channel state


def channel_state(conn: Connection, channel: str) -> dict[str, Any]:
    """A channel's breaker and rate window, locked for this transaction (created closed)."""
    conn.execute(
        _insert(conn, t.channel_state).on_conflict_do_nothing(),
        [{"channel": channel, "circuit": "closed", "failures": 0, "window_count": 0}],
    )
    query = select(t.channel_state).where(t.channel_state.c.channel == channel)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return dict(conn.execute(query).mappings().one())


def save_channel_state(conn: Connection, channel: str, **values: Any) -> None:
    """Write a channel's breaker or window."""
    conn.execute(
        update(t.channel_state).where(t.channel_state.c.channel == channel).values(**values)
    )


def channel_states(conn: Connection) -> list[dict[str, Any]]:
    """Every channel's breaker state."""
    query = select(t.channel_state).order_by(t.channel_state.c.channel)
    return [dict(r) for r in conn.execute(query).mappings()]


# ---------------------------------------------------------------- journeys


def insert_journeys(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record journeys as started (a second dispatcher inserting the same one changes nothing)."""
    if rows:
        conn.execute(_insert(conn, t.journeys).on_conflict_do_nothing(), rows)


def update_journey(conn: Connection, decision_id: str, **values: Any) -> None:
    """Record where a journey stands."""
    conn.execute(update(t.journeys).where(t.journeys.c.decision_id == decision_id).values(**values))


def journey(conn: Connection, decision_id: str) -> dict[str, Any] | None:
    """One journey row."""
    row = (
        conn.execute(select(t.journeys).where(t.journeys.c.decision_id == decision_id))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def journeys_query(status: str | None = None, customer_id: str | None = None) -> Any:
    """Journeys, optionally of one status or customer; unordered (a list or a page orders)."""
    j = t.journeys.c
    query = select(t.journeys)
    if status:
        query = query.where(j.status == status)
    if customer_id:
        query = query.where(j.customer_id == customer_id)
    return query


def journeys(
    conn: Connection, status: str | None = None, customer_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Journeys, newest first."""
    j = t.journeys.c
    query = journeys_query(status, customer_id)
    query = query.order_by(desc(j.started_at), j.decision_id).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def journeys_of(conn: Connection, customer_ids: Sequence[str], since: dt.datetime) -> list[Any]:
    """Open journeys of these customers, and closed ones updated since `since` (for caps)."""
    if not customer_ids:
        return []
    j = t.journeys.c
    query = select(
        j.decision_id, j.customer_id, j.status, j.listens, j.sends, j.started_at, j.ends_by
    ).where(
        _among(conn, j.customer_id, customer_ids),
        j.status.in_(OPEN_JOURNEY) | (j.updated_at >= since),
    )
    return list(conn.execute(query))


def journey_counts(conn: Connection) -> dict[str, Any]:
    """Journeys by status and by outcome."""
    j = t.journeys.c
    by_status = dict(conn.execute(select(j.status, func.count()).group_by(j.status)).all())
    by_outcome = dict(
        conn.execute(
            select(j.outcome, func.count()).where(j.outcome.is_not(None)).group_by(j.outcome)
        ).all()
    )
    return {"status": by_status, "outcome": by_outcome}


# ---------------------------------------------------------------- tasks


def insert_task(conn: Connection, row: dict[str, Any]) -> None:
    """Open a task (the same task id twice is one task)."""
    conn.execute(_insert(conn, t.tasks).on_conflict_do_nothing(), [row])


def task(conn: Connection, task_id: str) -> dict[str, Any] | None:
    """One task."""
    row = conn.execute(select(t.tasks).where(t.tasks.c.task_id == task_id)).mappings().first()
    return dict(row) if row else None


def tasks_query(status: str | None = "open", queue: str | None = None) -> Any:
    """Tasks, optionally of one status or queue; unordered (a list or a page orders)."""
    c = t.tasks.c
    query = select(t.tasks)
    if status:
        query = query.where(c.status == status)
    if queue:
        query = query.where(c.queue == queue)
    return query


def tasks(
    conn: Connection, status: str | None = "open", queue: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Tasks, oldest first."""
    c = t.tasks.c
    query = tasks_query(status, queue)
    return [
        dict(r)
        for r in conn.execute(query.order_by(c.created_at, c.task_id).limit(limit)).mappings()
    ]


def close_task(conn: Connection, task_id: str, **values: Any) -> int:
    """Resolve or expire an open task; 0 when it was not open."""
    c = t.tasks.c
    result = conn.execute(
        update(t.tasks).where(c.task_id == task_id, c.status == "open").values(**values)
    )
    return int(result.rowcount or 0)


# ---------------------------------------------------------------- outbox


MAX_DISPATCH_ATTEMPTS = 100  # a row failing this often is parked (still pending, not retried)


def pending_outbox(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """Outbox rows not yet dispatched (and not parked), oldest first."""
    o = t.outbox.c
    query = (
        select(t.outbox)
        .where(o.dispatched_at.is_(None), o.attempts < MAX_DISPATCH_ATTEMPTS)
        .order_by(o.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def mark_dispatched(conn: Connection, ids: Sequence[int], at: dt.datetime) -> None:
    """Mark outbox rows as handed over."""
    if ids:
        o = t.outbox.c
        conn.execute(
            update(t.outbox)
            .where(o.id.in_(list(ids)))
            .values(dispatched_at=at, attempts=o.attempts + 1)
        )


def note_attempt(conn: Connection, ids: Sequence[int]) -> None:
    """Count a failed dispatch attempt of these outbox rows."""
    if ids:
        o = t.outbox.c
        conn.execute(update(t.outbox).where(o.id.in_(list(ids))).values(attempts=o.attempts + 1))


def release_budget(conn: Connection, policy_id: str, period: str, amount: float) -> None:
    """Give back reserved budget (never below zero)."""
    b = t.budgets.c
    # One statement: a reservation the pipeline makes meanwhile is never overwritten.
    conn.execute(
        update(t.budgets)
        .where(b.policy_id == policy_id, b.period == period)
        .values(spent=case((b.spent > amount, b.spent - amount), else_=0.0))
    )


# ---------------------------------------------------------------- rows of typed messages


def outbox_row(
    message: OutboxMessage, key: str, decision_id: str, at: dt.datetime
) -> dict[str, Any]:
    """The outbox row carrying `message` under its idempotency key."""
    return {
        "idempotency_key": key,
        "decision_id": decision_id,
        "kind": outbox_kind(message),
        "payload": outbox_payload(message),
        "created_at": at,
        "attempts": 0,
    }


def journey_row(start: JourneyStart, at: dt.datetime) -> dict[str, Any]:
    """The journeys-table row of a journey the decision starts (status pending)."""
    return {
        "decision_id": start.decision_id,
        "customer_id": start.customer_id,
        "journey_id": start.journey["id"],
        "journey_hash": start.journey_hash,
        "action_id": start.action_id,
        "channel": start.channel,
        "status": "pending",
        "listens": start.listens,
        "sends": [],
        "started_at": at,
        "updated_at": at,
        "ends_by": at + dt.timedelta(seconds=start.journey_horizon_s),
    }


def decision_times(conn: Connection) -> dict[str, dt.datetime]:
    """When each decision was made, by decision id."""
    d = t.decisions.c
    return dict(conn.execute(select(d.decision_id, d.decided_at)).all())  # type: ignore[arg-type]


def any_open_journey(conn: Connection) -> bool:
    """Whether any journey is still pending or running."""
    j = t.journeys.c
    return conn.execute(select(j.decision_id).where(j.status.in_(OPEN_JOURNEY))).first() is not None


def granted(conn: Connection, keys: list[str]) -> list[tuple[str, int]]:
    """The grants among `keys` still standing, with the points each gave (0 for an offer)."""
    d = t.deliveries.c
    rows = conn.execute(
        select(d.key, d.payload).where(d.key.in_(keys), d.status == "granted")
    ).all()
    return [(key, int((payload or {}).get("points") or 0)) for key, payload in rows]


def revoke_granted(conn: Connection, keys: list[str], at: dt.datetime) -> None:
    """Mark the standing grants among `keys` revoked."""
    d = t.deliveries.c
    conn.execute(
        t.deliveries.update()
        .where(d.key.in_(keys), d.status == "granted")
        .values(status="revoked", updated_at=at)
    )


def start_live(
    conn: Connection, decision_id: str, decided: dt.datetime, at: dt.datetime, horizon_s: float
) -> bool:
    """A journey decided in the past (a replayed history, a backlog) that starts at wall time
    `at`: its window is extended to `at + horizon`, so live events reach it (the pipeline
    signals a journey the events in its window) and its listed end agrees with its waits, which
    run in wall time. The history's own events after the decision still reach it too. Only the
    first start moves it; whether it was moved."""
    j = t.journeys.c
    span = dt.timedelta(seconds=horizon_s)
    moved = conn.execute(
        update(t.journeys)
        .where(j.decision_id == decision_id, j.ends_by == decided + span)
        .values(ends_by=at + span)
    )
    return bool(moved.rowcount)
