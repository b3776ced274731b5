"""Point-in-time training sets: features exactly as they were at each cut-off, labels from after it.

Features come from replaying the same `apply()` the pipeline uses over the events strictly before
the cut-off, so a model is trained on what the pipeline would have seen then and nothing later.
Labels look only at the horizon that follows the cut-off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tenure.events.envelope import Event
from tenure.features.snapshot import Features, snapshot
from tenure.features.state import DAY_S, CustomerState, apply_all

Churn = Literal["no-activity", "cancelled"]
CHURN_DEFINITIONS: tuple[Churn, ...] = ("no-activity", "cancelled")
_ACTIVITY = frozenset({"usage", "purchase"})


@dataclass(frozen=True, slots=True)
class Example:
    """One customer at one cut-off: the features then, and what happened in the horizon after."""

    customer_id: str
    cutoff: dt.datetime
    features: Features
    churned: bool
    purchases_after: int  # distinct purchase days in the horizon (the BG/NBD convention)


def _label(after: list[Event], churn: Churn) -> bool:
    if churn == "no-activity":
        return not any(e.type in _ACTIVITY for e in after)
    return any(e.type == "subscription.cancelled" for e in after)


def training_set(
    events: Iterable[Event],
    cutoffs: Sequence[dt.datetime],
    horizon_days: float,
    churn: Churn = "no-activity",
) -> list[Example]:
    """Examples for every customer known before each cut-off and not already cancelled then."""
    if churn not in CHURN_DEFINITIONS:
        raise ValueError(f"unknown churn definition {churn!r}: use one of {CHURN_DEFINITIONS}")
    if horizon_days <= 0:
        raise ValueError("the horizon must be a positive number of days")
    by_customer: dict[str, list[Event]] = {}
    for e in events:
        by_customer.setdefault(e.customer_id, []).append(e)
    horizon = dt.timedelta(days=horizon_days)
    ordered_cutoffs = sorted(cutoffs)
    out: list[Example] = []
    for cid in sorted(by_customer):
        history = sorted(by_customer[cid], key=lambda e: (e.occurred_at, e.event_id))
        state = CustomerState(cid)
        used = 0
        for cutoff in ordered_cutoffs:
            # Fold in only what happened strictly before the cut-off; order-independence of
            # apply_all makes this incremental fold equal to a replay from scratch.
            upto = used
            while upto < len(history) and history[upto].occurred_at < cutoff:
                upto += 1
            state = apply_all(state, history[used:upto])
            used = upto
            if state.first_seen is None:
                continue
            features = snapshot(state, cutoff)
            if features.subscription_status == "cancelled":
                continue
            end = cutoff + horizon
            after = [e for e in history[used:] if e.occurred_at < end]
            purchase_days = {
                int(e.occurred_at.timestamp()) // DAY_S for e in after if e.type == "purchase"
            }
            out.append(Example(cid, cutoff, features, _label(after, churn), len(purchase_days)))
    return out


def rolling_cutoffs(
    first: dt.datetime,
    last: dt.datetime,
    horizon_days: float,
    step_days: float = 14.0,
    warmup_days: float = 28.0,
) -> list[dt.datetime]:
    """Cut-offs every `step_days` from `first + warmup` while a full horizon still follows."""
    out = []
    at = first + dt.timedelta(days=warmup_days)
    while at + dt.timedelta(days=horizon_days) <= last:
        out.append(at)
        at += dt.timedelta(days=step_days)
    return out
