"""Outcomes and lift: did treated customers churn less than the control group?

Each decision gets an outcome from the events after it: `churned` when the customer cancelled within
the outcome window, `saved` when the window passed without a cancellation, `unknown` while the
window is still open. Treated customers (an action was decided) are compared with the global control
group (customers the same policy would have treated but the control group held back).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tenure.policy.experiments import Evidence, cell, segment_key

Outcome = Literal["saved", "churned", "unknown"]
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class Decided:
    """What lift needs of one decision."""

    customer_id: str
    decided_at: dt.datetime
    policy_id: str
    policy_hash: str
    action_id: str | None  # None for a control-group customer
    cost: float
    risk: float = 0.0
    segment: str | None = None  # the customer's segment when decided
    segment_known: bool = False  # False for records older than the segment's recording


def outcome(
    decided_at: dt.datetime,
    cancellations: Sequence[dt.datetime],
    observed_until: dt.datetime,
    window_days: float,
) -> Outcome:
    """The outcome of one decision given the customer's cancellation times."""
    end = decided_at + dt.timedelta(days=window_days)
    # A cancellation after `observed_until` is not known yet (evidence as of an instant).
    seen_until = min(end, observed_until)
    if any(decided_at < c <= seen_until for c in cancellations):
        return "churned"
    return "saved" if observed_until >= end else "unknown"


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def difference_ci(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of p2 - p1 by Newcombe's hybrid score method (two Wilson intervals)."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p2 - p1
    return (
        d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


def _rate(outcomes: list[Outcome]) -> dict[str, Any]:
    known = [o for o in outcomes if o != "unknown"]
    churned = sum(1 for o in known if o == "churned")
    low, high = wilson(churned, len(known))
    return {
        "customers": len(outcomes),
        "known": len(known),
        "churned": churned,
        "churn_rate": round(churned / len(known), 4) if known else None,
        "ci95": [round(low, 4), round(high, 4)] if known else None,
    }


def report(
    decisions: Iterable[Decided],
    cancellations: Mapping[str, Sequence[dt.datetime]],
    observed_until: dt.datetime,
    window_days: float = 30.0,
) -> list[dict[str, Any]]:
    """Treated against control churn per policy version and action, with 95% intervals."""
    control: dict[str, list[Outcome]] = {}
    treated: dict[tuple[str, str, str], list[tuple[Outcome, float]]] = {}
    for d in decisions:
        o = outcome(d.decided_at, cancellations.get(d.customer_id, ()), observed_until, window_days)
        if d.action_id is None:
            control.setdefault(d.policy_hash, []).append(o)
        else:
            treated.setdefault((d.policy_id, d.policy_hash, d.action_id), []).append((o, d.cost))
    rows = []
    for (policy_id, policy_hash, action_id), items in sorted(treated.items()):
        t = _rate([o for o, _ in items])
        c = _rate(control.get(policy_hash, []))
        cost = sum(cost for _, cost in items)
        # Cost per saved customer compares like with like: the cost of the treated customers
        # whose outcome is known, against the savings measured on them.
        known_cost = sum(cost for o, cost in items if o != "unknown")
        lift: dict[str, Any] = {
            "churn_reduction": None,
            "ci95": None,
            "uplift": None,
            "saved": None,
            "cost_per_saved": None,
        }
        if t["known"] and c["known"]:
            reduction = c["churn_rate"] - t["churn_rate"]
            low, high = difference_ci(t["churned"], t["known"], c["churned"], c["known"])
            saved = reduction * t["known"]
            lift = {
                # Absolute, in churn-rate points; `uplift` is relative, as in policies: the share
                # of would-be churners kept.
                "churn_reduction": round(reduction, 4),
                "ci95": [round(low, 4), round(high, 4)],
                "uplift": round(reduction / c["churn_rate"], 4) if c["churn_rate"] else None,
                "saved": round(saved, 2),
                "cost_per_saved": round(known_cost / saved, 2) if saved > 0 else None,
            }
        rows.append(
            {
                "policy_id": policy_id,
                "policy_version": policy_hash[:12],
                "action_id": action_id,
                "treated": t,
                "control": c,
                "cost": round(cost, 2),
                "lift": lift,
            }
        )
    return rows


def evidence_by_policy(
    decisions: Iterable[Decided],
    cancellations: Mapping[str, Sequence[dt.datetime]],
    observed_until: dt.datetime,
    window_days: float = 30.0,
    segments: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Known outcomes per policy id as experiment evidence: per arm, overall and per segment."""
    counts: dict[str, dict[str, list[int]]] = {}
    for d in decisions:
        o = outcome(d.decided_at, cancellations.get(d.customer_id, ()), observed_until, window_days)
        if o != "unknown":
            _count_outcome(counts, d, o, segments)
    return _evidence(counts)


def _count_outcome(
    counts: dict[str, dict[str, list[int]]],
    d: Decided,
    o: Outcome,
    segments: Mapping[str, str | None] | None,
) -> None:
    """Add one known outcome to the counts per policy and arm (overall and in its cell)."""
    arm = d.action_id or "control"
    segment = d.segment if d.segment_known else (segments or {}).get(d.customer_id)
    where = cell(segment, d.risk)
    for key in {segment_key(arm, None), segment_key(arm, where)}:
        k_n = counts.setdefault(d.policy_id, {}).setdefault(key, [0, 0])
        k_n[0] += o == "churned"
        k_n[1] += 1


def _evidence(counts: Mapping[str, Mapping[str, list[int]]]) -> dict[str, Any]:
    return {
        pid: Evidence({k: (v[0], v[1]) for k, v in arms.items()}) for pid, arms in counts.items()
    }


def known_at(d: Decided, cancellations: Sequence[dt.datetime], window_days: float) -> dt.datetime:
    """When the decision's outcome becomes known: its first cancellation within
    the window (churned), else the window's end (saved). Before it, `outcome` says unknown."""
    end = d.decided_at + dt.timedelta(days=window_days)
    within = [c for c in cancellations if d.decided_at < c <= end]
    return min(within) if within else end


@dataclass
class History:
    """The decisions and cancellations outcomes come from, growing as a run decides.

    `evidence_at(t)` is what was known at instant `t`: decisions made before it and the
    cancellations up to it, so a policy learns in event time and a run resumed half-way
    decides as an uninterrupted one would. An outcome known by `t` is final (a decision's
    `known_at` comes after it is made), so the counts grow as `t` moves forward: each outcome
    is counted once, when `t` passes its `known_at`, and the counts are made again from scratch
    only when a cancellation changes when outcomes become known or `t` moves back. Instants are
    many (every customer's day closes and silence timers); outcomes become known rarely.
    """

    decided: list[Decided]
    cancellations: dict[str, list[dt.datetime]]
    segments: dict[str, str | None]
    window_days: float = 30.0
    _evidence: dict[str, Any] | None = None
    # Each decision's (`known_at`, index into `decided`), in order.
    _known: list[tuple[dt.datetime, int]] = field(default_factory=list)
    _count: int = 0  # how many of `_known` are in `_counts`
    _counts: dict[str, dict[str, list[int]]] | None = None
    _of_customer: dict[str, list[int]] = field(default_factory=dict)  # indexes into `decided`
    _added: list[str] = field(default_factory=list)  # customers cancelled since `savepoint`

    def __post_init__(self) -> None:
        self._index()

    def _index(self) -> None:
        self._of_customer = {}
        for i, d in enumerate(self.decided):
            self._of_customer.setdefault(d.customer_id, []).append(i)
        self._known = sorted((self._known_at(d), i) for i, d in enumerate(self.decided))
        self._forget()

    def savepoint(self) -> int:
        """Mark what is known now, before a batch learns from what it decides and sees; a
        batch that does not commit goes back to it (`rollback`). One mark at a time: a new one
        replaces the last."""
        self._added = []
        return len(self.decided)

    def rollback(self, point: int) -> None:
        """Forget the decisions and cancellations added since `savepoint` returned `point`."""
        for customer_id in reversed(self._added):
            times = self.cancellations[customer_id]
            times.pop()
            if not times:
                del self.cancellations[customer_id]
        self._added = []
        del self.decided[point:]
        self._index()

    def _known_at(self, d: Decided) -> dt.datetime:
        return known_at(d, self.cancellations.get(d.customer_id, ()), self.window_days)

    def add_decision(self, d: Decided) -> None:
        """A decision made (treated or held back)."""
        i = len(self.decided)
        self._of_customer.setdefault(d.customer_id, []).append(i)
        self.decided.append(d)
        entry = (self._known_at(d), i)
        at = bisect.bisect_right(self._known, entry)
        self._known.insert(at, entry)
        if at < self._count:
            self._forget()  # known before the instant counted up to: count again

    def add_cancellation(self, customer_id: str, at: dt.datetime) -> None:
        """A cancellation seen: it may settle some of the customer's outcomes earlier."""
        mine = self._of_customer.get(customer_id, ())
        before = [self._known_at(self.decided[i]) for i in mine]
        self.cancellations.setdefault(customer_id, []).append(at)
        self._added.append(customer_id)
        for old, i in zip(before, mine, strict=True):
            new = self._known_at(self.decided[i])
            if new != old:
                del self._known[bisect.bisect_left(self._known, (old, i))]
                bisect.insort(self._known, (new, i))
        self._forget()

    def _forget(self) -> None:
        self._evidence, self._counts, self._count = None, None, 0

    def evidence_at(self, at: dt.datetime) -> dict[str, Any]:
        """Evidence per policy id as of `at`."""
        count = bisect.bisect_right(self._known, (at, len(self.decided)))
        if self.window_days <= 0:
            # Known at the instant of the decision itself: counted only after it (`before`).
            return self._from_scratch(at)
        if self._evidence is not None and count == self._count:
            return self._evidence  # the same outcomes are known: the same evidence
        if self._counts is None or count < self._count:
            self._counts, self._count = {}, 0
        for _, i in self._known[self._count : count]:
            d = self.decided[i]
            o = outcome(
                d.decided_at, self.cancellations.get(d.customer_id, ()), at, self.window_days
            )
            _count_outcome(self._counts, d, o, self.segments)
        self._count = count
        self._evidence = _evidence(self._counts)
        return self._evidence

    def _from_scratch(self, at: dt.datetime) -> dict[str, Any]:
        before = [d for d in self.decided if d.decided_at < at]
        return (
            evidence_by_policy(before, self.cancellations, at, self.window_days, self.segments)
            if before
            else {}
        )
