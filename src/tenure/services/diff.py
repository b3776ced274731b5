"""`tenure policy diff`: replay the same events through two policies and compare the decisions."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenure.events.envelope import Event
from tenure.policy.model import Policy
from tenure.runtime.clock import EventClock
from tenure.runtime.engine import Engine, Learned, learned
from tenure.runtime.pipeline import DEFAULT_BATCH_SIZE
from tenure.store import queries
from tenure.store.db import Store


def _decisions(
    engine: Engine,
    knowledge: Learned,
    events: Sequence[Event],
    policy: Policy,
    root: Path,
    name: str,
    batch_size: int,
) -> dict[str, list[dict[str, Any]]]:
    store = Store(f"sqlite:///{root / f'{name}.db'}")
    try:
        engine.pipeline(
            policy, clock=EventClock(), batch_size=batch_size, into=store, knowledge=knowledge
        ).run(iter(events), f"diff:{name}")
        with store.reader() as conn:
            rows = queries.decision_outcomes(conn)
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
    engine: Engine,
    events: Sequence[Event],
    old: Policy,
    new: Policy,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Customers whose decisions differ between the two policies, with both sets of decisions.

    Both replay into scratch stores with the workspace's journeys, contracts, guardrails, scorer
    and learned evidence, so each side decides as `tenure run` would.
    """
    knowledge = learned(engine.store)
    with tempfile.TemporaryDirectory(prefix="tenure-diff-") as tmp:
        a = _decisions(engine, knowledge, events, old, Path(tmp), "old", batch_size)
        b = _decisions(engine, knowledge, events, new, Path(tmp), "new", batch_size)
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
