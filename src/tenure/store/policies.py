"""Reads and writes of the policy registry table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from tenure.store import repo
from tenure.store import schema as t


def registration(conn: Connection, policy_hash: str) -> tuple[str, str | None] | None:
    """A version's status and author (None: never stored)."""
    p = t.policies.c
    row = conn.execute(select(p.status, p.author).where(p.policy_hash == policy_hash)).first()
    return None if row is None else (row.status, row.author)


def set_author(conn: Connection, policy_hash: str, author: str, now: dt.datetime) -> None:
    """Mark a stored version as registered by `author`."""
    p = t.policies.c
    conn.execute(
        update(t.policies)
        .where(p.policy_hash == policy_hash)
        .values(author=author, registered_at=now, changed_at=now)
    )


def registered(conn: Connection) -> list[dict[str, Any]]:
    """Registered versions, newest first (versions only ever used ad hoc have no author)."""
    p = t.policies.c
    query = (
        select(
            p.policy_hash,
            p.policy_id,
            p.label,
            p.status,
            p.canary_percent,
            p.author,
            p.approved_by,
            p.registered_at,
            p.changed_at,
        )
        .where(p.author.is_not(None))
        .order_by(p.registered_at.desc(), p.policy_hash)
    )
    return repo.rows(conn, query)


def registered_starting(conn: Connection, prefix: str) -> list[Any]:
    """Registered versions whose hash starts with `prefix`."""
    p = t.policies.c
    query = select(t.policies).where(p.policy_hash.startswith(prefix), p.author.is_not(None))
    return list(conn.execute(query).all())


def registered_statuses(conn: Connection) -> dict[str, tuple[str, str]]:
    """Each registered version's policy id and status, by version."""
    p = t.policies.c
    query = select(p.policy_hash, p.policy_id, p.status).where(p.author.is_not(None))
    return {r.policy_hash: (r.policy_id, r.status) for r in conn.execute(query)}


def set_status(conn: Connection, policy_hash: str, values: dict[str, Any]) -> None:
    """Change a version's status columns."""
    p = t.policies.c
    conn.execute(update(t.policies).where(p.policy_hash == policy_hash).values(**values))


def retire(conn: Connection, hashes: Sequence[str], now: dt.datetime) -> None:
    """Retire these versions."""
    p = t.policies.c
    conn.execute(
        update(t.policies)
        .where(p.policy_hash.in_(list(hashes)))
        .values(status="retired", changed_at=now)
    )


def live_rows(conn: Connection) -> list[tuple[Any, str, float | None]]:
    """Content, status and canary share of the registered active, canary and shadow versions."""
    p = t.policies.c
    rows = conn.execute(
        select(p.content, p.status, p.canary_percent).where(
            p.author.is_not(None), p.status.in_(("active", "canary", "shadow"))
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]
