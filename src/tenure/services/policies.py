"""The policy registry: register versions, move them through their lifecycle, load the live set."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select, update

from tenure.audit.chain import chain
from tenure.errors import ConfigError
from tenure.policy.lifecycle import PolicySet, Status, Transition, plan_transition
from tenure.policy.model import Policy, default_policy, parse_policy
from tenure.store import repo
from tenure.store import schema as t


def register(conn: Connection, policy: Policy, author: str, now: dt.datetime) -> tuple[str, bool]:
    """Register a policy version as a draft; (version, newly registered)."""
    if not author.strip():
        raise ConfigError("--by must name the author")
    p = t.policies.c
    row = conn.execute(
        select(p.status, p.author).where(p.policy_hash == policy.content_hash)
    ).first()
    if row is not None and row.author is not None:
        return policy.content_hash, False
    repo.save_policy(
        conn, policy.content_hash, policy.id, policy.label, policy.model_dump(mode="json")
    )
    conn.execute(
        update(t.policies)
        .where(p.policy_hash == policy.content_hash)
        .values(author=author.strip(), registered_at=now, changed_at=now)
    )
    return policy.content_hash, True


def listing(conn: Connection) -> list[dict[str, Any]]:
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


def _resolve(conn: Connection, version: str) -> Any:
    p = t.policies.c
    if len(version) < 6:
        raise ConfigError("give at least 6 characters of the version (see `tenure policy list`)")
    rows = conn.execute(
        select(t.policies).where(p.policy_hash.startswith(version), p.author.is_not(None))
    ).all()
    if not rows:
        raise ConfigError(f"no registered policy version {version!r} (see `tenure policy list`)")
    if len(rows) > 1:
        raise ConfigError(f"version {version!r} is ambiguous; give more characters")
    return rows[0]


def promote(
    conn: Connection, version: str, to: str, by: str, percent: float | None, now: dt.datetime
) -> Transition:
    """Move a version to a new status; every change (and what it retires) is an audit record."""
    row = _resolve(conn, version)
    p = t.policies.c
    others = {
        r.policy_hash: (r.policy_id, r.status)
        for r in conn.execute(
            select(p.policy_hash, p.policy_id, p.status).where(p.author.is_not(None))
        )
    }
    plan = plan_transition(
        row.policy_hash,
        row.policy_id,
        row.author,
        row.status,
        to,
        by,  # type: ignore[arg-type]
        percent,
        others,
    )
    values: dict[str, Any] = {
        "status": plan.to_status,
        "changed_at": now,
        "canary_percent": plan.percent,
    }
    if plan.to_status == "active":
        values["approved_by"] = plan.by
    conn.execute(update(t.policies).where(p.policy_hash == plan.version).values(**values))
    if plan.retired:
        conn.execute(
            update(t.policies)
            .where(p.policy_hash.in_(plan.retired))
            .values(status="retired", changed_at=now)
        )
    bodies = [{"kind": "policy.transition", **plan.to_record(), "at": now.isoformat()}]
    seq, head = repo.lock_audit_head(conn)
    records = chain(head, seq + 1, bodies)
    repo.append_audit(conn, records, [("policy.transition", plan.version)])
    return plan


def live_set(conn: Connection) -> PolicySet:
    """What `tenure run` decides with when given no --policy: the registry's active policy (or
    the built-in one), its canary and its shadows."""
    p = t.policies.c
    rows = conn.execute(
        select(p.content, p.status, p.canary_percent).where(
            p.author.is_not(None), p.status.in_(("active", "canary", "shadow"))
        )
    ).all()

    def load(content: Any) -> Policy:
        return parse_policy(content, "registered policy")

    by_status: dict[Status, list[tuple[Policy, float | None]]] = {}
    for content, status, percent in rows:
        by_status.setdefault(status, []).append((load(content), percent))
    active = by_status.get("active", [(default_policy(), None)])[0][0]
    canary = by_status.get("canary", [])
    shadows = tuple(
        sorted((pol for pol, _ in by_status.get("shadow", [])), key=lambda x: x.content_hash)
    )
    return PolicySet(
        active,
        canary[0][0] if canary else None,
        float(canary[0][1] or 0.0) if canary else 0.0,
        shadows,
    )
