"""`tenure policy diff`: replay the same events through two policies and compare the decisions."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tenure.events.envelope import Event
from tenure.policy.decide import DEFAULT_GUARDRAILS
from tenure.policy.guardrails import GuardrailSettings
from tenure.policy.model import Policy
from tenure.runtime.clock import EventClock
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE, Pipeline
from tenure.store import repo
from tenure.store import schema as t
from tenure.store.db import Store


def _decisions(
    events: Sequence[Event],
    policy: Policy,
    root: Path,
    name: str,
    guardrails: GuardrailSettings,
    batch_size: int,
) -> dict[str, list[dict[str, Any]]]:
    store = Store(f"sqlite:///{root / f'{name}.db'}")
    try:
        Pipeline(
            store, policy, clock=EventClock(), batch_size=batch_size, guardrails=guardrails
        ).run(iter(events), f"diff:{name}")
        d = t.decisions.c
        with store.reader() as conn:
            rows = repo.rows(
                conn,
                select(
                    d.customer_id,
                    d.decided_at,
                    d.status,
                    d.action_id,
                    d.guardrail,
                    d.risk,
                    d.trigger_event_id,
                ).order_by(d.customer_id, d.decided_at, d.trigger_event_id),
            )
    finally:
        store.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        cid = r.pop("customer_id")
        r["decided_at"] = r["decided_at"].isoformat()
        out.setdefault(cid, []).append(r)
    return out


def _key(decisions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(d["decided_at"], d["status"], d["action_id"], d["guardrail"]) for d in decisions]


def diff(
    events: Sequence[Event],
    old: Policy,
    new: Policy,
    guardrails: GuardrailSettings = DEFAULT_GUARDRAILS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Customers whose decisions differ between the two policies, with both sets of decisions."""
    with tempfile.TemporaryDirectory(prefix="tenure-diff-") as tmp:
        a = _decisions(events, old, Path(tmp), "old", guardrails, batch_size)
        b = _decisions(events, new, Path(tmp), "new", guardrails, batch_size)
    differing = [
        {"customer_id": cid, "old": a.get(cid, []), "new": b.get(cid, [])}
        for cid in sorted(set(a) | set(b))
        if _key(a.get(cid, [])) != _key(b.get(cid, []))
    ]

    def counts(side: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        c = Counter(d["status"] for ds in side.values() for d in ds)
        return dict(sorted(c.items()))

    return {
        "old": {"policy_id": old.id, "policy_hash": old.content_hash, "decisions": counts(a)},
        "new": {"policy_id": new.id, "policy_hash": new.content_hash, "decisions": counts(b)},
        "customers": len({e.customer_id for e in events}),
        "differing": differing,
    }
