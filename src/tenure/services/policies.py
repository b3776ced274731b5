"""The policy registry: register versions, move them through their lifecycle, load the live set."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection

from tenure.audit.chain import chain
from tenure.errors import ConfigError
from tenure.policy.lifecycle import PolicySet, Status, Transition, plan_transition
from tenure.policy.model import Policy, default_policy, parse_policy
from tenure.store import policies, repo


def register(conn: Connection, policy: Policy, author: str, now: dt.datetime) -> tuple[str, bool]:
    """Register a policy version as a draft; (version, newly registered)."""
    if not author.strip():
        raise ConfigError("--by must name the author")
    known = policies.registration(conn, policy.content_hash)
    if known is not None and known[1] is not None:
        return policy.content_hash, False
    repo.save_policy(
        conn, policy.content_hash, policy.id, policy.label, policy.model_dump(mode="json")
    )
    policies.set_author(conn, policy.content_hash, author.strip(), now)
    return policy.content_hash, True


def listing(conn: Connection) -> list[dict[str, Any]]:
    """Registered versions, newest first (versions only ever used ad hoc have no author)."""
    return policies.registered(conn)


def _resolve(conn: Connection, version: str) -> Any:
    if len(version) < 6:
        raise ConfigError("give at least 6 characters of the version (see `tenure policy list`)")
    rows = policies.registered_starting(conn, version)
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
    others = policies.registered_statuses(conn)
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
    policies.set_status(conn, plan.version, values)
    if plan.retired:
        policies.retire(conn, plan.retired, now)
    bodies = [{"kind": "policy.transition", **plan.to_record(), "at": now.isoformat()}]
    seq, head = repo.lock_audit_head(conn)
    records = chain(head, seq + 1, bodies)
    repo.append_audit(conn, records, [("policy.transition", plan.version)])
    return plan


def live_set(conn: Connection) -> PolicySet:
    """What `tenure run` decides with when given no --policy: the registry's active policy (or
    the built-in one), its canary and its shadows."""
    rows = policies.live_rows(conn)

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
