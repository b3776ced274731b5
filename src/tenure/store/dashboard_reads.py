"""Reads behind the dashboard's pages that no other caller shares: task counts and queues, the
journey each decision runs, the newest accrual, budget spend per period."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from tenure.store import repo
from tenure.store import schema as t


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


def budgets(conn: Connection) -> list[dict[str, Any]]:
    """Spend per policy and period, by policy, newest period first."""
    b = t.budgets.c
    return repo.rows(conn, select(t.budgets).order_by(b.policy_id, b.period.desc()))
